//! HTTPS API basics: /health, /ready, and the audited FHIR Patient read with a SMART
//! access token (see tests/smart.rs for the token endpoint, RLS, actions and audit).
mod common;

use common::smart::*;
use testkit::pgharness::PgHarness;

#[test]
fn serve_health_ready_and_authenticated_audited_patient_read() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("api").unwrap();
    let srv = Server::start(&url, &[]);
    assert_eq!(srv.get("/health", None).0, 200);
    // Not migrated: not ready.
    assert_eq!(srv.get("/ready", None).0, 503);
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    assert_eq!(srv.get("/ready", None).0, 200);

    let tmp = TempDir::new("api");
    testkit::testdata::write_dataset(&tmp.0, 5, 3).unwrap();
    edw::ingest::ingest(
        &mut c,
        std::slice::from_ref(&tmp.0),
        &edw::ingest::Options::new("ehr"),
    )
    .unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    // p0 (org1) and the Group it is in.
    let (pid, birth, group): (i64, String, i64) = {
        let r = c
            .query_one(
                "SELECT sp.person_id, sp.birth_date::text, min(m.group_id)
                 FROM edw.source_patient sp JOIN edw.patient_group_member m ON m.person_id = sp.person_id
                 WHERE sp.source_id = 'p0' GROUP BY 1, 2",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let (client_id, _key, token) = client_with_token(&srv, &url, "org1", &[group]);

    let path = format!("/fhir/Patient/{pid}");
    assert_eq!(srv.get(&path, None).0, 401);
    assert_eq!(srv.get(&path, Some("wrong-token-0123456789")).0, 401);
    let (st, body) = srv.get(&path, Some(&token));
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["resourceType"], "Patient");
    assert_eq!(v["id"], pid.to_string());
    assert_eq!(v["birthDate"], birth.as_str());
    assert_eq!(v["identifier"].as_array().unwrap().len(), 2);
    assert_eq!(srv.get("/fhir/Patient/999999", Some(&token)).0, 404);
    assert_eq!(srv.get("/fhir/Patient/not-a-number", Some(&token)).0, 404);

    let audit: Vec<(String, i32)> = c
        .query(
            "SELECT actor, outcome FROM audit.phi_access WHERE resource_type = 'Patient' ORDER BY id",
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
            (client_id.clone(), 200),
            (client_id.clone(), 404),
            (client_id, 404),
        ]
    );
    // The old static-token route is gone.
    assert_eq!(
        srv.post_json("/worklist-actions", Some(&token), "{}").0,
        404
    );
    // Rows land in a monthly partition, not the default one.
    let in_default: i64 = c
        .query_one("SELECT count(*) FROM audit.phi_access_default", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0);
}
