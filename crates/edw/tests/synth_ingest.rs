//! Ingest of phm-synth output (the project's generator) with injected bad lines.
use edw::ingest::{ingest, Options};
use std::io::Write;

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn synth_population_loads_reconciles_and_reloads_as_noop() {
    let pg = testkit::pgharness::PgHarness::start().unwrap();
    let url = pg.create_db("s").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-synth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let g = synth::Generator::new(synth::SynthConfig::new(200, 5)).unwrap();
    let stats = synth::write_ndjson_dir(&g, &tmp, 1, &mut |_| {}).unwrap();
    let per = |t: &str| -> i64 {
        stats.resources[synth::OUTPUT_TYPES.iter().position(|x| *x == t).unwrap()] as i64
    };
    // Inject bad lines into three files.
    let bad: &[(&str, &str, &str)] = &[
        (
            "Observation",
            r#"{"resourceType":"Observation","id":"bad-1","status":"final","subject":{"reference":"Patient/x"}}"#,
            "code",
        ),
        ("Observation", "{oops", "invalid JSON"),
        (
            "Condition",
            r#"{"resourceType":"Condition","id":"bad-2","code":{"coding":[{"system":"http://snomed.info/sct","code":"1"}]},"subject":{"reference":"Patient/not-there"}}"#,
            "unresolved reference subject",
        ),
        (
            "Patient",
            r#"{"resourceType":"Patient","id":"bad-3","birthDate":"1990-13-01"}"#,
            "birthDate",
        ),
    ];
    for (file, line, _) in bad {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(tmp.join(format!("{file}.ndjson")))
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
    // Two sessions: the clinical types merge in parallel.
    let opts = Options {
        workers: 2,
        url: Some(url.clone()),
        ..Options::new("synth")
    };
    let reps = ingest(&mut c, std::slice::from_ref(&tmp), &opts).unwrap();
    let lines: i64 = reps.iter().map(|r| r.lines).sum();
    let loaded: i64 = reps.iter().map(|r| r.loaded).sum();
    let quarantined: i64 = reps.iter().map(|r| r.quarantined).sum();
    assert_eq!(lines, stats.total_resources() as i64 + bad.len() as i64);
    assert_eq!(
        quarantined,
        bad.len() as i64,
        "only the injected lines are quarantined"
    );
    assert_eq!(loaded, stats.total_resources() as i64);
    assert_eq!(edw::stats::orphans(&mut c).unwrap(), vec![]);
    for (file, _, reason) in bad {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM edw.quarantine WHERE file_name = $1 AND reason LIKE '%' || $2 || '%'",
                &[&format!("{file}.ndjson"), reason],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{file}: {reason}");
    }
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.source_patient"),
        per("Patient")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.encounter"),
        per("Encounter")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.observation"),
        per("Observation")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.condition"),
        per("Condition")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.procedure"),
        per("Procedure")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.medication_request"),
        per("MedicationRequest")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.immunization"),
        per("Immunization")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.coverage"),
        per("Coverage")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.practitioner"),
        per("Practitioner")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.organization"),
        per("Organization")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.source_group"),
        per("Group")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.source_group_member"),
        per("Patient")
    );

    let m = edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    assert_eq!(m.persons as i64, per("Patient"), "{}", m.summary());
    let a = edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    assert!(a.attributed > 0);

    let counts = edw::stats::table_counts(&mut c).unwrap();
    let sums = edw::stats::checksums(&mut c).unwrap();
    let again = ingest(&mut c, std::slice::from_ref(&tmp), &opts).unwrap();
    assert!(again.iter().all(|r| r.already_loaded));
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    assert_eq!(edw::stats::table_counts(&mut c).unwrap(), counts);
    assert_eq!(edw::stats::checksums(&mut c).unwrap(), sums);
    let _ = std::fs::remove_dir_all(&tmp);
}
