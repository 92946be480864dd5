//! `phm-edw serve` over HTTPS with SMART Backend Services, against a real PostgreSQL:
//! tokens (RS384, ES384, JWKS inline and by URL) and every refusal, Groups and
//! row-level security per organisation, worklist write-back, audit chain ingest.
mod common;

use base64::Engine;
use common::smart::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use testkit::pgharness::PgHarness;

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn j(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| panic!("not JSON: {s}"))
}

struct Env {
    pg: PgHarness,
    admin: String,
    /// The server's login role: member of edw_api, no superuser, no BYPASSRLS.
    serve_db: String,
    _data: TempDir,
}

fn setup(name: &str) -> Env {
    let pg = PgHarness::start().unwrap();
    let admin = pg.create_db(name).unwrap();
    let mut c = edw::connect(&admin).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let data = TempDir::new("smart-data");
    testkit::testdata::write_dataset(&data.0, 40, 11).unwrap();
    edw::ingest::ingest(
        &mut c,
        std::slice::from_ref(&data.0),
        &edw::ingest::Options::new("ehr"),
    )
    .unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    c.batch_execute(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'phm_server') THEN
             CREATE ROLE phm_server LOGIN IN ROLE edw_api;
           END IF; END $$;",
    )
    .unwrap();
    let serve_db = pg.url_as("phm_server", name);
    Env {
        pg,
        admin,
        serve_db,
        _data: data,
    }
}

/// (group id, members in org1, members in org2), biggest mixed group first.
fn groups(c: &mut postgres::Client) -> Vec<(i64, i64, i64)> {
    c.query(
        "SELECT m.group_id,
                count(*) FILTER (WHERE o.source_id = 'org1'),
                count(*) FILTER (WHERE o.source_id = 'org2')
         FROM edw.patient_group_member m
         JOIN edw.source_patient sp ON sp.person_id = m.person_id
         JOIN edw.organization o ON o.id = sp.org_id
         GROUP BY m.group_id
         ORDER BY least(count(*) FILTER (WHERE o.source_id = 'org1'),
                        count(*) FILTER (WHERE o.source_id = 'org2')) DESC, m.group_id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// A person of `org` in group `g` (or not in it, when `member` is false).
fn person(c: &mut postgres::Client, org: &str, g: i64, member: bool) -> Option<i64> {
    c.query_opt(
        "SELECT sp.person_id FROM edw.source_patient sp JOIN edw.organization o ON o.id = sp.org_id
         WHERE o.source_id = $1
           AND EXISTS (SELECT 1 FROM edw.patient_group_member m
                       WHERE m.person_id = sp.person_id AND m.group_id = $2) = $3
         ORDER BY sp.person_id LIMIT 1",
        &[&org, &g, &member],
    )
    .unwrap()
    .map(|r| r.get(0))
}

fn oauth_error(body: &str) -> String {
    j(body)["error"].as_str().unwrap_or("").to_string()
}

/// An HTTPS static file server (`openssl s_server -WWW`) for a JWKS by URL, with its
/// own self-signed certificate for 127.0.0.1.
struct JwksServer {
    child: std::process::Child,
    port: u16,
    ca: std::path::PathBuf,
    dir: TempDir,
}
impl Drop for JwksServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
impl JwksServer {
    fn start() -> JwksServer {
        let dir = TempDir::new("jwks-https");
        let (cert, key) = (dir.0.join("c.pem"), dir.0.join("k.pem"));
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let port = testkit::pgharness::free_port().unwrap();
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-WWW",
                "-quiet",
                "-accept",
                &port.to_string(),
                "-cert",
            ])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed().as_secs() < 20, "s_server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        JwksServer {
            child,
            port,
            ca: cert,
            dir,
        }
    }
    fn publish(&self, jwks: &Value) -> String {
        std::fs::write(self.dir.0.join("jwks.json"), jwks.to_string()).unwrap();
        format!("https://127.0.0.1:{}/jwks.json", self.port)
    }
}

#[test]
fn smart_backend_services_groups_rls_actions_and_audit() {
    let env = setup("smart");
    let mut c = edw::connect(&env.admin).unwrap();
    let gs = groups(&mut c);
    let (g, n1, n2) = gs[0];
    assert!(
        n1 > 0 && n2 > 0,
        "a Group with patients of both orgs: {gs:?}"
    );
    let other_group = gs.iter().map(|x| x.0).find(|x| *x != g).unwrap();
    let jwks_srv = JwksServer::start();
    let ca = jwks_srv.ca.to_string_lossy().to_string();
    let srv = Server::start(&env.serve_db, &["--jwks-ca", &ca]);
    let tmp = TempDir::new("smart-keys");

    // Discovery and metadata need no token.
    for p in [
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
    ] {
        let (st, body) = srv.get(p, None);
        assert_eq!(st, 200, "{p}");
        let v = j(&body);
        assert_eq!(v["token_endpoint"], srv.token_url());
        assert_eq!(
            v["token_endpoint_auth_methods_supported"],
            json!(["private_key_jwt"])
        );
        assert_eq!(
            v["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS384", "ES384"])
        );
        assert_eq!(v["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(v["capabilities"], json!(["client-confidential-asymmetric"]));
        assert!(v["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("system/*.rs")));
    }
    let (st, body) = srv.get("/fhir/metadata", None);
    assert_eq!(st, 200);
    let m = j(&body);
    assert_eq!(m["resourceType"], "CapabilityStatement");
    assert_eq!(m["fhirVersion"], "4.0.1");
    assert_eq!(
        m["instantiates"][0],
        "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
    );
    assert_eq!(
        m["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"],
        srv.token_url()
    );

    // Without a token: 401 before any clinical query, audited.
    assert_eq!(srv.get("/fhir/Group", None).0, 401);
    assert_eq!(srv.get("/fhir/Group", Some("not-a-token")).0, 401);

    // ES384 client of org1, granted Group g.
    let es = Es384Key::generate();
    let es_id = register_client(&env.admin, "ws-es", "org1", &[g], &es.jwks());
    let claims = Claims::new(&es_id, &srv.token_url());
    let (st, body) = srv.token_request(&es.assertion(&claims), "system/*.rs system/*.write launch");
    assert_eq!(st, 200, "{body}");
    let t = j(&body);
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(t["expires_in"], 300);
    assert_eq!(t["scope"], "system/*.rs");
    let es_token = t["access_token"].as_str().unwrap().to_string();
    // The same assertion again: replayed jti.
    let (st, body) = srv.token_request(&es.assertion(&claims), "system/*.rs");
    assert_eq!(
        (st, oauth_error(&body).as_str()),
        (401, "invalid_client"),
        "{body}"
    );
    // Nothing grantable.
    let (st, body) = srv.token_request(
        &es.assertion(&Claims::new(&es_id, &srv.token_url())),
        "system/*.write",
    );
    assert_eq!((st, oauth_error(&body).as_str()), (400, "invalid_scope"));

    // RS384 (openssl key) client of org1.
    let rsa = RsaKey::generate(&tmp.0);
    let rs_id = register_client(&env.admin, "ws-rs", "org1", &[g], &rsa.jwks());
    let _rs_token = srv.token(&rs_id, &rsa, "system/*.read");

    // Refusals: each one 401 invalid_client.
    let fresh = |id: &str| Claims::new(id, &srv.token_url());
    let wrong_key = Es384Key {
        kid: es.kid.clone(),
        ..Es384Key::generate()
    };
    let mut cases: Vec<(&str, String)> = vec![
        ("wrong key", wrong_key.assertion(&fresh(&es_id))),
        ("unknown client", es.assertion(&fresh("no-such-client"))),
        (
            "RS256",
            rsa.with_alg(Algorithm::RS256).assertion(&fresh(&rs_id)),
        ),
        (
            "HS256",
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &fresh(&rs_id),
                &jsonwebtoken::EncodingKey::from_secret(rsa.n.as_bytes()),
            )
            .unwrap(),
        ),
        (
            "none",
            format!(
                "{}.{}.",
                B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
                B64.encode(serde_json::to_vec(&fresh(&es_id)).unwrap())
            ),
        ),
    ];
    let mut c1 = fresh(&es_id);
    c1.exp = now() + 300 + 120;
    cases.push(("exp too far ahead", es.assertion(&c1)));
    let mut c2 = fresh(&es_id);
    c2.exp = now() - 120;
    cases.push(("expired", es.assertion(&c2)));
    let mut c3 = fresh(&es_id);
    c3.aud = format!("{}/other", srv.base);
    cases.push(("aud wrong", es.assertion(&c3)));
    let mut c4 = fresh(&es_id);
    c4.sub = "someone-else".into();
    cases.push(("sub != iss", es.assertion(&c4)));
    for (what, a) in &cases {
        let (st, body) = srv.token_request(a, "system/*.rs");
        assert_eq!(st, 401, "{what}: {body}");
        assert_eq!(oauth_error(&body), "invalid_client", "{what}");
        assert!(!body.contains("Patient"), "{what}");
    }
    // Clock skew inside the 60 s allowance is accepted, both ways.
    let mut ahead = fresh(&es_id);
    ahead.exp = now() + 300 + 30;
    assert_eq!(
        srv.token_request(&es.assertion(&ahead), "system/*.rs").0,
        200
    );
    let mut behind = fresh(&es_id);
    behind.exp = now() - 30;
    assert_eq!(
        srv.token_request(&es.assertion(&behind), "system/*.rs").0,
        200
    );
    // Wrong grant type / form.
    let form = |gt: &str| {
        srv.agent
            .post(srv.token_url())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(format!("grant_type={gt}&scope=system%2F*.rs"))
            .unwrap()
    };
    let mut r = form("password");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        oauth_error(&r.body_mut().read_to_string().unwrap()),
        "unsupported_grant_type"
    );
    assert_eq!(form("client_credentials").status().as_u16(), 400);

    // JWKS by URL (fetched over HTTPS, trusted through --jwks-ca).
    let url_key = Es384Key::generate();
    let url = jwks_srv.publish(&url_key.jwks());
    let out = Command::new(bin())
        .args([
            "client",
            "add",
            "--db",
            &env.admin,
            "--name",
            "ws-url",
            "--org",
            "org2",
            "--jwks-url",
            &url,
            "--group",
            &g.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let url_token = srv.token(&url_id, &url_key, "system/*.rs");

    // A JWKS with a private key or a small RSA key is refused at registration.
    let mut private = es.jwks();
    private["keys"][0]["d"] = json!(B64.encode([1u8; 48]));
    let f = tmp.0.join("private.json");
    std::fs::write(&f, private.to_string()).unwrap();
    let out = Command::new(bin())
        .args([
            "client",
            "add",
            "--db",
            &env.admin,
            "--name",
            "x",
            "--org",
            "org1",
            "--group",
            &g.to_string(),
            "--jwks",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("private"));

    // Groups: only the granted one, counting the organisation's own patients.
    let (st, body) = srv.get("/fhir/Group", Some(&es_token));
    assert_eq!(st, 200, "{body}");
    let b = j(&body);
    assert_eq!(b["type"], "searchset");
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    let grp = &b["entry"][0]["resource"];
    assert_eq!(grp["id"], g.to_string());
    assert_eq!(grp["type"], "person");
    assert_eq!(grp["actual"], true);
    assert_eq!(grp["quantity"], n1, "org1 sees its own members only");
    let (_, body) = srv.get("/fhir/Group", Some(&url_token));
    assert_eq!(
        j(&body)["entry"][0]["resource"]["quantity"],
        n2,
        "org2's view"
    );
    assert_eq!(srv.get(&format!("/fhir/Group/{g}"), Some(&es_token)).0, 200);
    // A Group not granted: 403.
    assert_eq!(
        srv.get(&format!("/fhir/Group/{other_group}"), Some(&es_token))
            .0,
        403
    );

    // Patients: RLS + granted Groups.
    let p1 = person(&mut c, "org1", g, true).unwrap();
    let p2 = person(&mut c, "org2", g, true).unwrap();
    let (st, body) = srv.get(&format!("/fhir/Patient/{p1}"), Some(&es_token));
    assert_eq!(st, 200, "{body}");
    assert_eq!(j(&body)["id"], p1.to_string());
    assert_eq!(
        srv.get(&format!("/fhir/Patient/{p2}"), Some(&es_token)).0,
        404,
        "another org's patient"
    );
    assert_eq!(
        srv.get(&format!("/fhir/Patient/{p2}"), Some(&url_token)).0,
        200
    );
    assert_eq!(
        srv.get(&format!("/fhir/Patient/{p1}"), Some(&url_token)).0,
        404
    );
    if let Some(p3) = person(&mut c, "org1", g, false) {
        assert_eq!(
            srv.get(&format!("/fhir/Patient/{p3}"), Some(&es_token)).0,
            404,
            "not in the Group"
        );
    }

    // Worklist actions: created, duplicate, conflict (409), refused.
    let action = |id: &str, pid: i64, note: &str| {
        json!({"id": id, "patient_id": pid.to_string(), "kind": "outreach",
            "measure_id": "CMS122", "group_id": "Group_1",
            "created_at": "2026-01-05T10:00:00Z", "username": "caremanager",
            "body": {"note": note}})
    };
    let a1 = "0b7e5f0e-4a3b-4c52-9d8e-0f6a3c2b1a01";
    let a2 = "0b7e5f0e-4a3b-4c52-9d8e-0f6a3c2b1a02";
    let batch = json!({"workstation_id": es_id, "actions": [
        action(a1, p1, "called"), action(a2, p2, "called")]});
    let (st, body) = srv.post_json("/api/actions", Some(&es_token), &batch.to_string());
    assert_eq!(st, 200, "{body}");
    let r = j(&body);
    assert_eq!(r["results"][0]["status"], "created");
    assert_eq!(r["results"][1]["status"], "refused");
    assert!(r["results"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("Group"));
    let (st, body) = srv.post_json("/api/actions", Some(&es_token), &batch.to_string());
    assert_eq!(st, 200);
    assert_eq!(j(&body)["results"][0]["status"], "duplicate");
    let changed = json!({"workstation_id": es_id, "actions": [
        action(a1, p1, "left a message"),
        action("not-a-uuid", p1, "x")]});
    let (st, body) = srv.post_json("/api/actions", Some(&es_token), &changed.to_string());
    assert_eq!(st, 409, "{body}");
    let r = j(&body);
    assert_eq!(r["results"][0]["status"], "conflict");
    assert_eq!(r["results"][1]["status"], "refused");
    // Another client cannot write for this workstation.
    assert_eq!(
        srv.post_json("/api/actions", Some(&url_token), &batch.to_string())
            .0,
        403
    );
    assert_eq!(
        one(
            &mut c,
            &format!("SELECT count(*) FROM edw.worklist_action WHERE action_id = '{a1}'")
        ),
        1
    );
    assert_eq!(one(&mut c, "SELECT count(*) FROM edw.worklist_action"), 1);
    let row = c
        .query_one(
            "SELECT client_id, username, measure_id, body->>'note', length(payload_sha256)
             FROM edw.worklist_action",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), es_id);
    assert_eq!(row.get::<_, String>(1), "caremanager");
    assert_eq!(row.get::<_, String>(2), "CMS122");
    assert_eq!(row.get::<_, String>(3), "called");
    assert_eq!(row.get::<_, i32>(4), 64);

    // Audit chain ingest.
    let chain = audit_chain(8, &p1.to_string());
    let seg = |recs: &[access::audit::AuditRecord]| {
        protocol::audit::segment_bundle(&es_id, recs).to_string()
    };
    let (st, body) = srv.get("/api/audit/head", Some(&es_token));
    assert_eq!((st, j(&body)["seq"].clone()), (200, json!(0)));
    let (st, body) = srv.post_json("/api/audit", Some(&es_token), &seg(&chain[..3]));
    assert_eq!(st, 200, "{body}");
    assert_eq!(j(&body)["seq"], 3);
    assert_eq!(j(&body)["hash"], chain[2].hash);
    // Re-sent: idempotent; overlapping and continuing: accepted.
    assert_eq!(
        srv.post_json("/api/audit", Some(&es_token), &seg(&chain[..3]))
            .0,
        200
    );
    let (st, body) = srv.post_json("/api/audit", Some(&es_token), &seg(&chain[1..5]));
    assert_eq!(st, 200, "{body}");
    assert_eq!(j(&body)["seq"], 5);
    // Broken: altered content.
    let mut bad = chain[5..7].to_vec();
    bad[0].user = "mallory".into();
    let (st, body) = srv.post_json("/api/audit", Some(&es_token), &seg(&bad));
    assert_eq!(st, 409, "{body}");
    assert_eq!(j(&body)["resourceType"], "OperationOutcome");
    // Broken: a gap.
    assert_eq!(
        srv.post_json("/api/audit", Some(&es_token), &seg(&chain[6..8]))
            .0,
        409
    );
    // Rewound: another chain over the held positions.
    let other: Vec<access::audit::AuditRecord> = {
        use access::audit::{AuditEntry, Outcome, GENESIS_HASH};
        use access::role::Action;
        vec![
            AuditEntry::now("x", None, None, Action::Login, Outcome::Allowed).seal(1, GENESIS_HASH),
        ]
    };
    let (st, body) = srv.post_json("/api/audit", Some(&es_token), &seg(&other));
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("rewound"), "{body}");
    // Another workstation's segment: 403.
    let foreign = protocol::audit::segment_bundle("someone-else", &chain[5..6]).to_string();
    assert_eq!(
        srv.post_json("/api/audit", Some(&es_token), &foreign).0,
        403
    );
    let (_, body) = srv.get("/api/audit/head", Some(&es_token));
    assert_eq!(j(&body)["seq"], 5);
    assert_eq!(
        srv.post_json("/api/audit", Some(&es_token), &seg(&chain[5..]))
            .0,
        200
    );
    let alerts: Vec<(String, i64)> = c
        .query("SELECT kind, seq FROM audit.chain_alert ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        alerts,
        vec![
            ("broken".into(), 6),
            ("broken".into(), 7),
            ("rewound".into(), 1)
        ]
    );
    assert_eq!(
        one(
            &mut c,
            &format!(
                "SELECT count(*) FROM audit.workstation_chain WHERE workstation_id = '{es_id}'"
            )
        ),
        8
    );

    // Revocation: the token stops working at once, new assertions are refused.
    let out = Command::new(bin())
        .args(["client", "revoke", "--db", &env.admin, &es_id])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(srv.get("/fhir/Group", Some(&es_token)).0, 401);
    let (st, body) = srv.token_request(&es.assertion(&fresh(&es_id)), "system/*.rs");
    assert_eq!((st, oauth_error(&body).as_str()), (401, "invalid_client"));
    let out = Command::new(bin())
        .args(["client", "list", "--db", &env.admin])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(list
        .lines()
        .any(|l| l.starts_with(&es_id) && !l.ends_with("revoked=-")));

    // Every refusal is in the PHI access log, and no token is stored in clear.
    let audited = |sql: &str| one(&mut edw::connect(&env.admin).unwrap(), sql);
    assert_eq!(
        audited("SELECT count(*) FROM audit.phi_access WHERE action = 'token' AND outcome >= 400"),
        (2 + cases.len() + 2 + 1) as i64,
        "replay, invalid_scope, the refusal cases, two form errors, after revocation"
    );
    assert!(
        audited(
            "SELECT count(*) FROM audit.phi_access WHERE actor = 'anonymous' AND outcome = 401"
        ) >= 3
    );
    // Group not granted, writing for another workstation, a foreign audit segment, and
    // the three refused actions.
    assert_eq!(
        audited("SELECT count(*) FROM audit.phi_access WHERE outcome = 403"),
        6
    );
    assert_eq!(
        audited("SELECT count(*) FROM audit.phi_access WHERE resource_type = 'WorklistAction' AND outcome = 409"),
        1
    );
    assert_eq!(audited("SELECT count(*) FROM audit.phi_access WHERE resource_type = 'AuditEvent' AND outcome = 409"), 3);
    assert_eq!(
        audited(&format!("SELECT count(*) FROM auth.access_token WHERE encode(token_sha256, 'escape') LIKE '%{}%'", &url_token[..10])),
        0
    );
    // The server log holds no patient ids or names.
    let log = std::fs::read_to_string(&srv.stderr_path).unwrap();
    assert!(!log.contains(&format!("Patient/{p1}")), "{log}");
    drop(env.pg);
}

#[test]
fn plain_http_only_on_loopback_and_the_self_signed_certificate_is_reused() {
    let out = Command::new(bin())
        .args([
            "serve",
            "--db",
            "host=/nonexistent user=x",
            "--addr",
            "0.0.0.0:0",
            "--plain-http",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    // HTTPS by default: a certificate is made once (0600 in a 0700 dir) and reused.
    let dir = TempDir::new("reuse");
    let state = dir.0.join("state");
    let nodb = "host=/nonexistent user=x dbname=x";
    let s1 = Server::start_in(nodb, &[], &state);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state.join("tls/key.pem")), 0o600);
    assert_eq!(mode(&state.join("tls")), 0o700);
    assert_eq!(mode(&state), 0o700);
    let log = std::fs::read_to_string(&s1.stderr_path).unwrap();
    assert!(log.contains("SHA-256") && log.contains("made a"), "{log}");
    // Serving, but not ready without a database.
    assert_eq!(s1.get("/ready", None).0, 503);
    let c1 = std::fs::read(s1.cert()).unwrap();
    drop(s1);
    let s2 = Server::start_in(nodb, &[], &state);
    assert_eq!(std::fs::read(s2.cert()).unwrap(), c1, "certificate reused");
    let log = std::fs::read_to_string(&s2.stderr_path).unwrap();
    assert!(log.contains("using the"), "{log}");
    drop(s2);
    // Plain HTTP on loopback works when asked for.
    let port = testkit::pgharness::free_port().unwrap();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--db",
            "host=/nonexistent user=x",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--plain-http",
        ])
        .arg("--state-dir")
        .arg(dir.0.join("plain"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let ok = loop {
        if let Ok(mut r) = ureq::get(format!("http://127.0.0.1:{port}/health")).call() {
            break r.body_mut().read_to_string().unwrap() == "ok\n";
        }
        if t0.elapsed().as_secs() > 20 {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok);
}

#[test]
fn postgres_connections_honour_sslmode() {
    let pg = PgHarness::start_with_ssl().unwrap();
    let base = pg.tcp_url("postgres").unwrap();
    let ssl_of = |url: &str| -> Result<bool, String> {
        let mut c = edw::serve::pg::connect_sync(url).map_err(|e| e.0)?;
        Ok(c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0))
    };
    assert_eq!(ssl_of(&format!("{base} sslmode=require")), Ok(true));
    assert_eq!(ssl_of(&format!("{base} sslmode=prefer")), Ok(true));
    assert_eq!(ssl_of(&format!("{base} sslmode=disable")), Ok(false));
    let root = pg.ssl_cert();
    assert_eq!(
        ssl_of(&format!(
            "{base} sslmode=verify-full sslrootcert={}",
            root.display()
        )),
        Ok(true)
    );
    // URL form too.
    let port = pg.port().unwrap();
    assert_eq!(
        ssl_of(&format!(
            "postgresql://app@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
            root.display()
        )),
        Ok(true)
    );
    // verify-full against another certificate fails.
    let other = PgHarness::start_with_ssl().unwrap();
    assert!(ssl_of(&format!(
        "{base} sslmode=verify-full sslrootcert={}",
        other.ssl_cert().display()
    ))
    .is_err());
    // A server without TLS: require fails clearly, prefer and disable connect.
    let plain = PgHarness::start_with_tcp().unwrap();
    let pbase = format!(
        "host=127.0.0.1 port={} user=app dbname=postgres",
        plain.port().unwrap()
    );
    let e = ssl_of(&format!("{pbase} sslmode=require")).unwrap_err();
    assert!(
        e.to_lowercase().contains("tls") || e.to_lowercase().contains("ssl"),
        "{e}"
    );
    assert_eq!(ssl_of(&format!("{pbase} sslmode=prefer")), Ok(false));
    assert_eq!(ssl_of(&format!("{pbase} sslmode=disable")), Ok(false));
}
