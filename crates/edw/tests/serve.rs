//! HTTP API: /health, /ready, bearer-protected FHIR Patient read, audited.
use edw::pgharness::PgHarness;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    request(port, "GET", path, token, "")
}

fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.get(9..12)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

#[test]
fn serve_health_ready_and_authenticated_audited_patient_read() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("api").unwrap();
    let token = "test-token-0123456789abcdef";
    let port = edw::pgharness::free_port().unwrap();
    let bin = env!("CARGO_BIN_EXE_phm-edw");

    // Without a token the server refuses to start.
    let out = Command::new(bin)
        .args([
            "serve",
            "--db",
            &url,
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env_remove("PHM_EDW_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PHM_EDW_TOKEN"));

    let _srv = Server(
        Command::new(bin)
            .args([
                "serve",
                "--db",
                &url,
                "--addr",
                &format!("127.0.0.1:{port}"),
            ])
            .env("PHM_EDW_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while get(port, "/health", None).is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(port, "/health", None).unwrap().0, 200);
    // Not migrated: not ready.
    assert_eq!(get(port, "/ready", None).unwrap().0, 503);
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    assert_eq!(get(port, "/ready", None).unwrap().0, 200);

    let tmp = std::env::temp_dir().join(format!("edw-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    edw::testdata::write_dataset(&tmp, 5, 3).unwrap();
    edw::ingest::ingest(
        &mut c,
        std::slice::from_ref(&tmp),
        &edw::ingest::Options::new("ehr"),
    )
    .unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    let (pid, birth): (i64, String) = {
        let r = c
            .query_one(
                "SELECT person_id, birth_date::text FROM edw.source_patient WHERE source_id = 'p0'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let path = format!("/fhir/Patient/{pid}");
    assert_eq!(get(port, &path, None).unwrap().0, 401);
    assert_eq!(
        get(port, &path, Some("wrong-token-0123456789")).unwrap().0,
        401
    );
    let (st, body) = get(port, &path, Some(token)).unwrap();
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["resourceType"], "Patient");
    assert_eq!(v["id"], pid.to_string());
    assert_eq!(v["birthDate"], birth.as_str());
    assert_eq!(v["identifier"].as_array().unwrap().len(), 2);
    assert_eq!(
        get(port, "/fhir/Patient/999999", Some(token)).unwrap().0,
        404
    );
    assert_eq!(
        get(port, "/fhir/Patient/not-a-number", Some(token))
            .unwrap()
            .0,
        404
    );

    let audit: Vec<(String, i32)> = c
        .query(
            "SELECT actor, outcome FROM audit.phi_access ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        audit,
        vec![
            ("anonymous".to_string(), 401),
            ("anonymous".to_string(), 401),
            ("static-token".to_string(), 200),
            ("static-token".to_string(), 404),
            ("static-token".to_string(), 404),
        ]
    );
    // Worklist write-back: validated, idempotent per (workstation, event), audited.
    let good = format!(
        r#"{{"workstation_id":"ws-1","event_id":"ev-1","person_id":{pid},"action":"outreach-called","acted_at":"2026-01-05T10:00:00Z"}}"#
    );
    assert_eq!(
        request(port, "POST", "/worklist-actions", None, &good)
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        request(port, "POST", "/worklist-actions", Some(token), &good)
            .unwrap()
            .0,
        201
    );
    assert_eq!(
        request(port, "POST", "/worklist-actions", Some(token), &good)
            .unwrap()
            .0,
        200
    );
    let (st, body) = request(
        port,
        "POST",
        "/worklist-actions",
        Some(token),
        r#"{"workstation_id":"ws-1"}"#,
    )
    .unwrap();
    assert_eq!(st, 400);
    assert!(body.contains("required"), "{body}");
    assert_eq!(
        request(port, "POST", "/worklist-actions", Some(token), "{")
            .unwrap()
            .0,
        400
    );
    let bad_time = good
        .replace("2026-01-05T10:00:00Z", "2026-01-05T10:00:00")
        .replace("ev-1", "ev-2");
    assert_eq!(
        request(port, "POST", "/worklist-actions", Some(token), &bad_time)
            .unwrap()
            .0,
        400
    );
    let nobody = good
        .replace(&format!(":{pid},"), ":999999,")
        .replace("ev-1", "ev-3");
    assert_eq!(
        request(port, "POST", "/worklist-actions", Some(token), &nobody)
            .unwrap()
            .0,
        404
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM edw.worklist_action", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let writes: i64 = c
        .query_one(
            "SELECT count(*) FROM audit.phi_access WHERE action = 'write'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(writes, 4, "401, 201, 200, 404 audited");
    // Rows land in a monthly partition, not the default one.
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM audit.phi_access_default", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0);
    let _ = std::fs::remove_dir_all(&tmp);
}
