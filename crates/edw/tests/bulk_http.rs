//! Bulk Data Group export over HTTPS (`phm-edw serve` on a real PostgreSQL, SMART
//! tokens): kick-off by GET and POST, polling, the manifest, Range downloads that resume
//! byte-exactly, DELETE, 403 for a Group not granted, another client's job is 404,
//! the PHI access log.
mod common;

use common::bulk::*;
use common::smart::*;
use testkit::pgharness::PgHarness;

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn group_export_over_https() {
    let pg = PgHarness::start().unwrap();
    let admin = pg.create_db("bulk_http").unwrap();
    let mut c = edw::connect(&admin).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let data = TempDir::new("bulk-http-data");
    testkit::testdata::write_dataset(&data.0, 60, 11).unwrap();
    edw::ingest::ingest(
        &mut c,
        std::slice::from_ref(&data.0),
        &edw::ingest::Options::new("ehr"),
    )
    .unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    c.batch_execute("CREATE ROLE phm_bulk_server LOGIN IN ROLE edw_api")
        .unwrap();
    let srv = Server::start(&pg.url_as("phm_bulk_server", "bulk_http"), &[]);
    let group = one(
        &mut c,
        "SELECT g.id FROM edw.patient_group g JOIN edw.care_team ct ON ct.id = g.ref_id
         WHERE g.kind = 'care_team' AND ct.source_id = 'ct1'",
    );
    let other = one(
        &mut c,
        "SELECT min(id) FROM edw.patient_group WHERE kind = 'practitioner'",
    );
    let org1_members = one(
        &mut c,
        &format!(
            "SELECT count(DISTINCT m.person_id) FROM edw.patient_group_member m
             JOIN edw.source_patient sp ON sp.person_id = m.person_id
             JOIN edw.organization o ON o.id = sp.org_id WHERE m.group_id = {group} AND o.source_id = 'org1'"
        ),
    );
    let (client_a, _ka, tok) = client_with_token(&srv, &admin, "org1", &[group]);
    let (_client_b, _kb, tok_b) = client_with_token(&srv, &admin, "org1", &[group]);

    // Refusals: headers, unknown and not-granted Groups, bad parameters.
    let path = format!("/fhir/Group/{group}/$export");
    let r = call(
        &srv,
        "GET",
        &path,
        &tok,
        &[("Accept", "application/fhir+json")],
        None,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    let r = call(
        &srv,
        "GET",
        &path,
        &tok,
        &[("Accept", "text/html"), ("Prefer", "respond-async")],
        None,
    );
    assert_eq!(r.status, 400);
    let r = call(&srv, "GET", "/fhir/Group/987654/$export", &tok, &KICK, None);
    assert_eq!(r.status, 404);
    let r = call(
        &srv,
        "GET",
        &format!("/fhir/Group/{other}/$export"),
        &tok,
        &KICK,
        None,
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    let r = call(
        &srv,
        "GET",
        &format!("{path}?_type=Bogus"),
        &tok,
        &KICK,
        None,
    );
    assert_eq!(r.status, 400);
    let r = call(
        &srv,
        "GET",
        &format!("{path}?_typeFilter=Observation%3Fdate%3Dgt2020"),
        &tok,
        &KICK,
        None,
    );
    assert_eq!(r.status, 400);
    let r = call(
        &srv,
        "GET",
        &format!("{path}?_since=yesterday"),
        &tok,
        &KICK,
        None,
    );
    assert_eq!(r.status, 400);
    let r = call(&srv, "GET", &path, "not-a-token", &KICK, None);
    assert_eq!(r.status, 401);

    // GET kick-off, polling, manifest.
    let r = call(
        &srv,
        "GET",
        &format!("{path}?_outputFormat=application%2Ffhir%2Bndjson"),
        &tok,
        &KICK,
        None,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let status_url = r.header("content-location").unwrap().to_string();
    assert!(
        status_url.starts_with(&format!("{}/fhir/bulk/status/", srv.base)),
        "{status_url}"
    );
    assert!(
        status_url.rsplit('/').next().unwrap().len() >= 32,
        "unguessable job id"
    );
    let (done, waiting) = poll(&srv, &status_url, &tok);
    for w in &waiting {
        assert!(w.header("retry-after").unwrap().parse::<u64>().is_ok());
        assert!(w.header("x-progress").unwrap().ends_with(" patients"));
    }
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    assert!(done.header("expires").unwrap().ends_with("GMT"));
    let m = done.json();
    let manifest: protocol::bulk::Manifest = serde_json::from_value(m.clone()).unwrap();
    assert!(manifest.requires_access_token);
    assert_eq!(
        manifest.request,
        format!(
            "{}{path}?_outputFormat=application%2Ffhir%2Bndjson",
            srv.base
        )
    );
    assert!(manifest.transaction_time.ends_with('Z'));
    assert!(manifest.deleted.is_empty() && manifest.error.is_empty());
    let types: Vec<&str> = manifest
        .output
        .iter()
        .map(|f| f.resource_type.as_str())
        .collect();
    for t in [
        "Group",
        "Patient",
        "Encounter",
        "Observation",
        "Practitioner",
        "Organization",
    ] {
        assert!(types.contains(&t), "{types:?}");
    }
    let mut patients = 0;
    let mut biggest: Option<(String, Vec<u8>)> = None;
    for f in &manifest.output {
        assert!(f.url.starts_with(&format!("{}/fhir/bulk/files/", srv.base)));
        let r = call(&srv, "GET", &f.url, &tok, &[], None);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/fhir+ndjson"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert_eq!(text.lines().count() as u64, f.count.unwrap(), "{}", f.url);
        if f.resource_type == "Patient" {
            patients += text.lines().count() as i64;
        }
        if biggest.as_ref().is_none_or(|b| b.1.len() < r.body.len()) {
            biggest = Some((f.url.clone(), r.body));
        }
    }
    assert_eq!(patients, org1_members);

    // Range: a broken download resumes byte-exactly.
    let (url, full) = biggest.unwrap();
    let cut = full.len() / 3;
    let r = call(
        &srv,
        "GET",
        &url,
        &tok,
        &[("Range", &format!("bytes={cut}-"))],
        None,
    );
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes {cut}-{}/{}", full.len() - 1, full.len())
    );
    let mut resumed = full[..cut].to_vec();
    resumed.extend(&r.body);
    assert_eq!(resumed, full);
    let r = call(&srv, "GET", &url, &tok, &[("Range", "bytes=5-14")], None);
    assert_eq!((r.status, r.body.as_slice()), (206, &full[5..15]));
    let r = call(
        &srv,
        "GET",
        &url,
        &tok,
        &[("Range", &format!("bytes={}-", full.len()))],
        None,
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes */{}", full.len())
    );

    // Another client (same organisation, same Group) cannot read the job or its files.
    assert_eq!(
        call(&srv, "GET", &status_url, &tok_b, &[], None).status,
        404
    );
    assert_eq!(call(&srv, "GET", &url, &tok_b, &[], None).status, 404);
    assert_eq!(
        call(&srv, "DELETE", &status_url, &tok_b, &[], None).status,
        404
    );

    // POST kick-off with Parameters: only the types asked for.
    let params = protocol::bulk::ExportRequest {
        since: None,
        types: vec!["Patient".into(), "Condition".into()],
        type_filters: vec![],
    }
    .to_parameters()
    .to_string();
    let mut h = KICK.to_vec();
    h.push(("Content-Type", "application/fhir+json"));
    let r = call(&srv, "POST", &path, &tok, &h, Some(&params));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let status2 = r.header("content-location").unwrap().to_string();
    assert_ne!(status2, status_url);
    let (done2, _) = poll(&srv, &status2, &tok);
    assert_eq!(done2.status, 200);
    let m2: protocol::bulk::Manifest = serde_json::from_value(done2.json()).unwrap();
    let mut t2: Vec<&str> = m2.output.iter().map(|f| f.resource_type.as_str()).collect();
    t2.dedup();
    assert_eq!(t2, vec!["Condition", "Patient"]);
    // Incremental: nothing changed since the first export, so only the Group (not
    // asked for here) would come: no output.
    let r = call(
        &srv,
        "GET",
        &format!("{path}?_type=Patient&_since={}", manifest.transaction_time),
        &tok,
        &KICK,
        None,
    );
    assert_eq!(r.status, 202);
    let (done3, _) = poll(&srv, r.header("content-location").unwrap(), &tok);
    let m3: protocol::bulk::Manifest = serde_json::from_value(done3.json()).unwrap();
    assert!(m3.output.is_empty(), "{:?}", m3.output);

    // DELETE: the files go, the status and files are 404 afterwards.
    let job = status_url.rsplit('/').next().unwrap().to_string();
    let dir = srv.state.join("exports").join(&job);
    assert!(dir.exists(), "{}", dir.display());
    assert_eq!(
        call(&srv, "DELETE", &status_url, &tok, &[], None).status,
        202
    );
    assert_eq!(call(&srv, "GET", &status_url, &tok, &[], None).status, 404);
    assert_eq!(call(&srv, "GET", &url, &tok, &[], None).status, 404);
    assert!(!dir.exists());
    assert_eq!(
        call(&srv, "DELETE", &status_url, &tok, &[], None).status,
        404
    );

    // The PHI access log: kick-offs with their parameters, the refusal, the completed
    // export's patient count, downloads.
    let q = |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(
        q(
            &mut c,
            &format!("SELECT count(*) FROM audit.phi_access WHERE actor = '{client_a}' AND action = 'export' AND outcome = 403 AND resource_id = '{other}'")
        ),
        1
    );
    assert_eq!(
        q(
            &mut c,
            &format!("SELECT count(*) FROM audit.phi_access WHERE actor = '{client_a}' AND action = 'export' AND outcome = 202")
        ),
        3
    );
    assert_eq!(
        q(
            &mut c,
            &format!("SELECT count(*) FROM audit.phi_access WHERE actor = '{client_a}' AND action = 'export' AND outcome = 202
                      AND detail->'types' = '[\"Patient\", \"Condition\"]'::jsonb")
        ),
        1
    );
    assert_eq!(
        q(
            &mut c,
            &format!("SELECT min((detail->>'patients')::bigint) FROM audit.phi_access WHERE actor = '{client_a}' AND action = 'export-complete'")
        ),
        org1_members
    );
    assert!(
        q(
            &mut c,
            &format!("SELECT count(*) FROM audit.phi_access WHERE actor = '{client_a}' AND action = 'download' AND outcome IN (200, 206)")
        ) >= manifest.output.len() as i64 + 2
    );
}

#[test]
fn cancel_a_running_export() {
    // A Group big enough that the export is still running when cancelled.
    let pg = PgHarness::start().unwrap();
    let admin = pg.create_db("bulk_cancel").unwrap();
    let mut c = edw::connect(&admin).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let data = TempDir::new("bulk-cancel-data");
    testkit::testdata::write_dataset(&data.0, 30, 5).unwrap();
    edw::ingest::ingest(
        &mut c,
        std::slice::from_ref(&data.0),
        &edw::ingest::Options::new("ehr"),
    )
    .unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    c.batch_execute("CREATE ROLE phm_cancel_server LOGIN IN ROLE edw_api")
        .unwrap();
    let srv = Server::start(&pg.url_as("phm_cancel_server", "bulk_cancel"), &[]);
    let group = one(&mut c, "SELECT min(group_id) FROM edw.patient_group_member");
    let (_id, _k, tok) = client_with_token(&srv, &admin, "org1", &[group]);
    // Hold the export's kick-off clock behind a source write in progress: the job
    // stays running until the lock is released.
    let mut blocker = edw::connect(&admin).unwrap();
    let mut tx = blocker.transaction().unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1)",
        &[&edw::measure::SOURCE_WRITE_LOCK],
    )
    .unwrap();
    let r = call(
        &srv,
        "GET",
        &format!("/fhir/Group/{group}/$export"),
        &tok,
        &KICK,
        None,
    );
    assert_eq!(r.status, 202);
    let status_url = r.header("content-location").unwrap().to_string();
    let s = call(&srv, "GET", &status_url, &tok, &[], None);
    assert_eq!(s.status, 202);
    assert!(s.header("x-progress").is_some() && s.header("retry-after").is_some());
    assert_eq!(
        call(&srv, "DELETE", &status_url, &tok, &[], None).status,
        202
    );
    assert_eq!(call(&srv, "GET", &status_url, &tok, &[], None).status, 404);
    tx.rollback().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(call(&srv, "GET", &status_url, &tok, &[], None).status, 404);
    let job = status_url.rsplit('/').next().unwrap();
    assert!(!srv.state.join("exports").join(job).exists());
    assert_eq!(
        one(
            &mut c,
            &format!(
                "SELECT count(*) FROM edw.bulk_job WHERE id = '{job}' AND status = 'cancelled'"
            )
        ),
        1
    );
}
