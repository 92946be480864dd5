//! `phm-edw measure` through the EDW equals the ecqm engine run directly on the same NDJSON.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn package() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/ecqm/measures/DiabetesGlycemicStatusAssessmentGreaterThan9PercentFHIR.json")
}

/// A migrated EDW with `patients` phm-synth patients (written under `dir`) ingested
/// as source "synth" and matched.
fn loaded_edw(
    db: &str,
    dir: &Path,
    patients: u64,
    seed: u64,
) -> (testkit::pgharness::PgHarness, postgres::Client) {
    let pg = testkit::pgharness::PgHarness::start().unwrap();
    let url = pg.create_db(db).unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let g = synth::Generator::new(synth::SynthConfig::new(patients, seed)).unwrap();
    synth::write_ndjson_dir(&g, dir, 1, &mut |_| {}).unwrap();
    let opts = edw::ingest::Options::new("synth");
    edw::ingest::ingest(&mut c, &[dir.to_path_buf()], &opts).unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    (pg, c)
}

#[test]
fn measure_results_from_edw_match_direct_engine_run() {
    let pkg = package();
    assert!(
        pkg.exists(),
        "shared eCQM package missing: {}",
        pkg.display()
    );
    let tmp = std::env::temp_dir().join(format!("edw-measure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (_pg, mut c) = loaded_edw("m", &tmp, 120, 9);
    // Chunks of 7 persons: results must not depend on where chunks split.
    let rep = edw::measure::run_in_chunks(&mut c, &pkg, 2025, 7, &Default::default()).unwrap();
    assert_eq!(rep.errors, 0);
    assert_eq!(rep.persons, 120);

    // Direct: the engine on the NDJSON files.
    let m = ecqm::engine::MeasurePackage::load(&pkg).unwrap();
    let prepared = m
        .prepare(&ecqm::Period::new("2025-01-01", "2025-12-31").unwrap())
        .unwrap();
    let src = ecqm::PatientSource::open(&tmp).unwrap();
    let mut direct: HashMap<(String, String), i32> = HashMap::new();
    src.for_each_batch(&ecqm::ReadOptions::default(), |items| {
        for it in items {
            let rec = it.load()?;
            let r = prepared.evaluate(&rec, ecqm::EvalOptions::default())?;
            for (code, b) in &r.groups[0].populations.0 {
                direct.insert((rec.id.clone(), code.code().to_string()), *b as i32);
            }
        }
        Ok(())
    })
    .unwrap();
    let mut via_edw: HashMap<(String, String), i32> = HashMap::new();
    for r in c
        .query(
            "SELECT sp.source_id, mr.population, mr.count FROM edw.measure_result mr
             JOIN edw.source_patient sp ON sp.person_id = mr.person_id",
            &[],
        )
        .unwrap()
    {
        via_edw.insert((r.get(0), r.get(1)), r.get(2));
    }
    // Stored: every population of each person in the initial population (nothing for
    // the others, on a first run).
    let in_ip: std::collections::HashSet<String> = direct
        .iter()
        .filter(|(k, v)| k.1 == "initial-population" && **v == 1)
        .map(|(k, _)| k.0.clone())
        .collect();
    direct.retain(|k, _| in_ip.contains(&k.0));
    assert_eq!(via_edw.len(), direct.len());
    assert_eq!(via_edw, direct);
    let ip = direct
        .iter()
        .filter(|(k, v)| k.1 == "initial-population" && **v == 1)
        .count();
    assert!(
        ip > 0,
        "synthetic population has no one in the initial population"
    );

    // Stored results back out: `results` lines equal the direct run (every person, zeros
    // included), the summary MeasureReport's counts are the sums, the subject list
    // names the numerator's patients, and one individual report per person in the IP.
    let mut out = Vec::new();
    let n = edw::results::write_results(&mut c, 2025, Some("122FHIR"), &mut out).unwrap();
    assert_eq!(n, 120);
    let mut all: HashMap<(String, String), i32> = HashMap::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for (code, n) in v["groups"][0]["populations"].as_object().unwrap() {
            all.insert(
                (v["case"].as_str().unwrap().into(), code.clone()),
                n.as_i64().unwrap() as i32,
            );
        }
    }
    let totals = |m: &HashMap<(String, String), i32>, code: &str| -> i64 {
        m.iter()
            .filter(|(k, _)| k.1 == code)
            .map(|(_, v)| *v as i64)
            .sum()
    };
    assert_eq!(all.len(), 120 * 4);
    for (k, v) in &direct {
        assert_eq!(all.get(k), Some(v), "{k:?}");
    }
    let report = |c: &mut postgres::Client, kind| {
        let mut out = Vec::new();
        let n = edw::results::write_report(c, 2025, "122FHIR", kind, &mut out).unwrap();
        (n, String::from_utf8(out).unwrap())
    };
    let (_, summary) = report(&mut c, edw::results::ReportType::Summary);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["type"], "summary");
    for p in summary["group"][0]["population"].as_array().unwrap() {
        let code = p["code"]["coding"][0]["code"].as_str().unwrap();
        assert_eq!(p["count"].as_i64().unwrap(), totals(&all, code), "{code}");
    }
    let (_, list) = report(&mut c, edw::results::ReportType::SubjectList);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["type"], "subject-list");
    let (individual, text) = report(&mut c, edw::results::ReportType::Individual);
    assert_eq!(individual as i64, totals(&all, "initial-population"));
    assert_eq!(text.lines().count(), individual);
    assert!(edw::results::write_report(
        &mut c,
        2025,
        "no-such-measure",
        edw::results::ReportType::Summary,
        &mut Vec::new()
    )
    .unwrap_err()
    .0
    .contains("no stored results"));
    // Idempotent: a second run changes nothing.
    let before: i64 = c
        .query_one("SELECT max(change_no) FROM edw.measure_result", &[])
        .unwrap()
        .get(0);
    edw::measure::run(&mut c, &pkg, 2025).unwrap();
    let after: i64 = c
        .query_one("SELECT max(change_no) FROM edw.measure_result", &[])
        .unwrap()
        .get(0);
    assert_eq!(before, after);

    // Gap status follows the improvement notation. The package's coding says
    // "decrease" with the display "increase": it is ignored and `increase`
    // assumed; an explicit override by CMS id flips it.
    let count =
        |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    let open = "SELECT count(*) FROM edw.care_gap WHERE status = 'open'";
    let total = count(&mut c, "SELECT count(*) FROM edw.care_gap");
    let met = count(
        &mut c,
        "SELECT count(*) FROM edw.care_gap g JOIN edw.measure_result r
           ON r.person_id = g.person_id AND r.measure_id = g.measure_id
          AND r.period_start = g.period_start AND r.population = 'numerator' AND r.count = 1",
    );
    assert!(
        met > 0 && met < total,
        "both gap states occur ({met} of {total})"
    );
    assert_eq!(count(&mut c, open), total - met);
    let overrides = edw::measure::parse_improvement_overrides("122FHIR=decrease").unwrap();
    edw::measure::run_in_chunks(&mut c, &pkg, 2025, 50, &overrides).unwrap();
    assert_eq!(count(&mut c, open), met);
    assert!(edw::measure::parse_improvement_overrides("122FHIR=sideways").is_err());
    assert!(edw::measure::parse_improvement_overrides("122FHIR").is_err());
    let _ = std::fs::remove_dir_all(&tmp);
}

type Snapshot = (
    Vec<(i64, String, String, String, i32)>,
    Vec<(i64, String, String, String)>,
);

fn snapshot(c: &mut postgres::Client) -> Snapshot {
    let results = c
        .query(
            "SELECT person_id, measure_id, group_id, population, count FROM edw.measure_result ORDER BY 1, 2, 3, 4",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let gaps = c
        .query(
            "SELECT person_id, measure_id, group_id, status FROM edw.care_gap ORDER BY 1, 2, 3",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    (results, gaps)
}

#[test]
fn incremental_runs_reevaluate_only_changed_persons_and_equal_a_full_run() {
    let pkg = package();
    let tmp = std::env::temp_dir().join(format!("edw-measure-inc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (_pg, mut c) = loaded_edw("mi", &tmp.join("a"), 150, 4);
    let opts = edw::ingest::Options::new("synth");
    let run = |c: &mut postgres::Client, full: bool| {
        let o = edw::measure::Options {
            chunk: 16,
            full,
            ..Default::default()
        };
        edw::measure::run_with(c, &pkg, 2025, &o).unwrap()
    };

    let first = run(&mut c, false);
    assert_eq!((first.mode, first.persons, first.errors), ("full", 150, 0));
    let again = run(&mut c, false);
    assert_eq!((again.mode, again.persons), ("incremental", 0));

    // A person with a gap (in the denominator) is re-sent with a birth date that puts
    // them outside the measure's age range.
    let (pid, raw): (i64, String) = {
        let r = c
            .query_one(
                "SELECT g.person_id, l.raw FROM edw.care_gap g
                 JOIN edw.source_patient sp ON sp.person_id = g.person_id
                 JOIN staging.raw_line l ON l.batch_id = sp.batch_id AND l.line_no = sp.line_no
                 WHERE g.status IN ('open', 'closed') ORDER BY g.person_id LIMIT 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let mut patient: serde_json::Value = serde_json::from_str(&raw).unwrap();
    patient["birthDate"] = serde_json::json!("1921-03-04");
    std::fs::create_dir_all(tmp.join("b")).unwrap();
    std::fs::write(tmp.join("b/Patient.ndjson"), format!("{patient}\n")).unwrap();
    edw::ingest::ingest(&mut c, &[tmp.join("b")], &opts).unwrap();

    let changed = run(&mut c, false);
    assert_eq!((changed.mode, changed.persons), ("incremental", 1));
    let status: String = c
        .query_one(
            "SELECT status FROM edw.care_gap WHERE person_id = $1",
            &[&pid],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "not-applicable");
    let members: i64 = c
        .query_one(
            "SELECT count(*) FROM edw.measure_result WHERE person_id = $1 AND count <> 0",
            &[&pid],
        )
        .unwrap()
        .get(0);
    assert_eq!(members, 0, "left every population");

    // A hospice order (a ServiceRequest: kept in edw.resource) for another person in the
    // denominator excludes them; revoking it brings the gap back. Each change
    // re-evaluates that one person.
    let (other, other_src, before): (i64, String, String) = {
        let r = c
            .query_one(
                "SELECT g.person_id, sp.source_id, g.status FROM edw.care_gap g
                 JOIN edw.source_patient sp ON sp.person_id = g.person_id
                 WHERE g.status IN ('open', 'closed') AND g.person_id <> $1 ORDER BY g.person_id LIMIT 1",
                &[&pid],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let order = |status: &str, subject: &str| {
        serde_json::json!({"resourceType": "ServiceRequest", "id": "hospice-order-1",
            "status": status, "intent": "order",
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99377"}]},
            "subject": {"reference": format!("Patient/{subject}")},
            "authoredOn": "2025-05-01T10:00:00Z"})
    };
    let gap_of = |c: &mut postgres::Client, person: i64| -> String {
        c.query_one(
            "SELECT status FROM edw.care_gap WHERE person_id = $1",
            &[&person],
        )
        .unwrap()
        .get(0)
    };
    let send_order = |c: &mut postgres::Client, dir: &str, status: &str, subject: &str| {
        std::fs::create_dir_all(tmp.join(dir)).unwrap();
        // A file already loaded is skipped: each sending is a file of its own.
        let mut o = order(status, subject);
        o["note"] = serde_json::json!([{"text": format!("sent in {dir}")}]);
        std::fs::write(
            tmp.join(dir).join("ServiceRequest.ndjson"),
            format!("{o}\n"),
        )
        .unwrap();
        edw::ingest::ingest(c, &[tmp.join(dir)], &opts).unwrap();
    };
    for (dir, status, expect) in [
        ("c", "active", "not-applicable"),
        ("d", "revoked", before.as_str()),
    ] {
        send_order(&mut c, dir, status, &other_src);
        let r = run(&mut c, false);
        assert_eq!((r.mode, r.persons), ("incremental", 1), "order {status}");
        assert_eq!(gap_of(&mut c, other), expect, "order {status}");
    }

    // The active order, then the same order sent again about a third person: the one who
    // lost it is evaluated again too, though none of their rows changed.
    let (third, third_src): (i64, String) = {
        let r = c
            .query_one(
                "SELECT g.person_id, sp.source_id FROM edw.care_gap g
                 JOIN edw.source_patient sp ON sp.person_id = g.person_id
                 WHERE g.status IN ('open', 'closed') AND g.person_id NOT IN ($1, $2)
                 ORDER BY g.person_id LIMIT 1",
                &[&pid, &other],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let third_before = gap_of(&mut c, third);
    send_order(&mut c, "e", "active", &other_src);
    assert_eq!(run(&mut c, false).persons, 1);
    assert_eq!(gap_of(&mut c, other), "not-applicable");
    send_order(&mut c, "f", "active", &third_src);
    let moved = run(&mut c, false);
    assert_eq!((moved.mode, moved.persons), ("incremental", 2));
    assert_eq!(gap_of(&mut c, other), before, "the order left them");
    assert_eq!(gap_of(&mut c, third), "not-applicable");
    assert_ne!(third_before, "not-applicable");

    // Same state as evaluating everyone again.
    let incremental = snapshot(&mut c);
    let full = run(&mut c, true);
    assert_eq!((full.mode, full.persons), ("full", 150));
    assert_eq!(snapshot(&mut c), incremental);
    assert_eq!(run(&mut c, false).persons, 0);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Rewrites every Retrieve of `from` in the package's libraries to retrieve `to`.
fn retarget_retrieves(bundle: &mut serde_json::Value, from: &str, to: &str) -> usize {
    use base64::Engine;
    fn walk(v: &mut serde_json::Value, from: &str, to: &str, n: &mut usize) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("type").and_then(|t| t.as_str()) == Some("Retrieve")
                    && m.get("dataType").and_then(|t| t.as_str()) == Some(from)
                {
                    m.insert("dataType".into(), serde_json::Value::String(to.into()));
                    *n += 1;
                }
                m.values_mut().for_each(|x| walk(x, from, to, n));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, from, to, n)),
            _ => {}
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut n = 0;
    for e in bundle["entry"].as_array_mut().unwrap() {
        for c in e["resource"]["content"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if c["contentType"] == "application/elm+json" {
                let mut elm: serde_json::Value =
                    serde_json::from_slice(&b64.decode(c["data"].as_str().unwrap()).unwrap())
                        .unwrap();
                walk(&mut elm, from, to, &mut n);
                c["data"] = serde_json::Value::String(b64.encode(elm.to_string()));
            }
        }
    }
    n
}

#[test]
fn a_package_retrieving_a_type_the_edw_does_not_feed_is_refused_by_name() {
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(package()).unwrap()).unwrap();
    let n = retarget_retrieves(
        &mut bundle,
        "{http://hl7.org/fhir}ServiceRequest",
        "{http://hl7.org/fhir}PractitionerRole",
    );
    assert!(n > 0, "the package retrieves ServiceRequest");
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("changed.json");
    std::fs::write(&pkg, bundle.to_string()).unwrap();
    let pg = testkit::pgharness::PgHarness::start().unwrap();
    let url = pg.create_db("refuse").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let e = edw::measure::run(&mut c, &pkg, 2025).unwrap_err();
    assert!(e.0.contains("retrieves PractitionerRole"), "{e}");
    let runs: i64 = c
        .query_one("SELECT count(*) FROM edw.measure_run", &[])
        .unwrap()
        .get(0);
    assert_eq!(runs, 0, "refused before anything is recorded");
}
