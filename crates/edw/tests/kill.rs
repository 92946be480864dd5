//! kill -9 during ingest, then re-run == one clean run.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::pgharness::PgHarness;

fn phm_edw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_phm-edw"))
        .args(args)
        .output()
        .unwrap()
}

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn killed_ingest_then_rerun_equals_clean_run() {
    let pg = PgHarness::start().unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let w = testkit::testdata::write_dataset(&tmp, 2500, 7).unwrap();
    // A few bad lines too, so the quarantine is part of the comparison.
    let enc = tmp.join("Encounter.ndjson");
    let mut data = std::fs::read(&enc).unwrap();
    data.extend_from_slice(b"not json\n{\"resourceType\":\"Encounter\",\"id\":\"zz\"}\n");
    std::fs::write(&enc, data).unwrap();
    // Types without a typed table (edw.resource): an order and a device request per
    // patient, shared Medications, and one allergy of an unknown patient (quarantined).
    let patients: Vec<String> = std::fs::read_to_string(tmp.join("Patient.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut extra: Vec<(&str, String)> = Vec::new();
    let mut sr = String::new();
    let mut dr = String::new();
    for (i, p) in patients.iter().enumerate() {
        sr += &format!(
            "{}\n",
            serde_json::json!({"resourceType": "ServiceRequest", "id": format!("sr{i}"),
            "status": "active", "intent": "order", "subject": {"reference": format!("Patient/{p}")},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "306206005"}]}, "authoredOn": "2025-02-03"})
        );
        if i % 2 == 0 {
            dr += &format!(
                "{}\n",
                serde_json::json!({"resourceType": "DeviceRequest", "id": format!("dr{i}"),
                "status": "active", "intent": "order", "subject": {"reference": format!("Patient/{p}")},
                "codeCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "58938008"}]},
                "authoredOn": "2025-03-04T09:00:00Z", "medicationReference": {"reference": format!("Medication/m{}", i % 5)}})
            );
        }
    }
    extra.push(("ServiceRequest", sr));
    extra.push(("DeviceRequest", dr));
    extra.push((
        "Medication",
        (0..5)
            .map(|i| format!("{}\n", serde_json::json!({"resourceType": "Medication", "id": format!("m{i}"),
                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617318"}]}})))
            .collect(),
    ));
    extra.push((
        "AllergyIntolerance",
        format!(
            "{}\n",
            serde_json::json!({"resourceType": "AllergyIntolerance", "id": "a1",
            "patient": {"reference": "Patient/nobody"}})
        ),
    ));
    for (t, text) in &extra {
        std::fs::write(tmp.join(format!("{t}.ndjson")), text).unwrap();
    }
    let dir = tmp.to_str().unwrap();

    // Clean run.
    let clean = pg.create_db("clean").unwrap();
    assert!(phm_edw(&["migrate", "--db", &clean]).status.success());
    let out = phm_edw(&[
        "ingest", dir, "--source", "ehr", "--db", &clean, "--chunk", "500",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lines/s") && stderr.contains("quarantined"),
        "progress on stderr: {stderr}"
    );

    // Killed run: kill -9 once the merge is under way (some but not all batches merged).
    let killed = pg.create_db("killed").unwrap();
    assert!(phm_edw(&["migrate", "--db", &killed]).status.success());
    let mut c = edw::connect(&killed).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_phm-edw"))
        .args([
            "ingest", dir, "--source", "ehr", "--db", &killed, "--chunk", "500",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let n = one(&mut c, "SELECT count(*) FROM edw.encounter");
        if n > 1000 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "ingest made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let merged = one(
        &mut c,
        "SELECT count(*) FROM staging.load_batch WHERE status = 'merged'",
    );
    let files = (w.per_type.len() + extra.len()) as i64;
    assert!(
        merged < files,
        "kill came too late: {merged}/{files} files merged"
    );
    let partial = one(&mut c, "SELECT count(*) FROM edw.encounter");
    assert!(partial < w.per_type.iter().find(|t| t.0 == "Encounter").unwrap().1 as i64);

    // Another --chunk on the re-run: a started batch keeps the chunk size it began with.
    let out = phm_edw(&[
        "ingest", dir, "--source", "ehr", "--db", &killed, "--chunk", "700",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cc = edw::connect(&clean).unwrap();
    assert_eq!(
        edw::stats::table_counts(&mut c).unwrap(),
        edw::stats::table_counts(&mut cc).unwrap()
    );
    assert_eq!(
        edw::stats::checksums(&mut c).unwrap(),
        edw::stats::checksums(&mut cc).unwrap()
    );
    assert_eq!(one(&mut c, "SELECT count(*) FROM edw.quarantine"), 3);
    let shared = one(
        &mut c,
        "SELECT count(*) FROM edw.resource WHERE source_patient_id IS NULL",
    );
    assert_eq!(shared, 5);
    let kept = one(&mut c, "SELECT count(*) FROM edw.resource");
    assert_eq!(
        kept,
        (patients.len() + patients.len().div_ceil(2) + 5) as i64
    );
    assert_eq!(edw::stats::orphans(&mut c).unwrap(), vec![]);
    assert_eq!(
        one(&mut c, "SELECT (sum(line_count) - sum(loaded_count) - sum(quarantined_count))::bigint FROM staging.load_batch"),
        0
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
