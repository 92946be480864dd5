use edw::ingest::{ingest, Options};
use std::io::Write;
use std::path::{Path, PathBuf};
use testkit::pgharness::PgHarness;

fn append(path: &Path, lines: &[&[u8]]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    for l in lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

fn count_lines(dir: &Path) -> i64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        n += data.iter().filter(|b| **b == b'\n').count() as i64;
    }
    n
}

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn ingest_quarantines_every_bad_line_and_reingest_is_a_noop() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("i").unwrap();
    let mut c = edw::connect(&url).unwrap();
    // Not migrated yet: a clear error.
    let tmp = std::env::temp_dir().join(format!("edw-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let w = testkit::testdata::write_dataset(&tmp, 200, 42).unwrap();
    let e = ingest(&mut c, std::slice::from_ref(&tmp), &Options::new("ehr-a")).unwrap_err();
    assert!(e.0.contains("not migrated"), "{e}");
    edw::migrate::migrate(&mut c).unwrap();

    // Injected bad lines: (file, line bytes, expected reason fragment).
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("Encounter", br#"{"resourceType":"Encounter","id":"bad1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"}}"#.to_vec(), "missing required element subject.reference"),
        ("Encounter", br#"{"resourceType":"Encounter","id":"bad2","status":"done","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"}}"#.to_vec(), "status: code"),
        ("Encounter", br#"{"resourceType":"Encounter","id":"bad3","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/nobody"}}"#.to_vec(), "unresolved reference subject"),
        ("Encounter", br#"{"resourceType":"Encounter","id":"bad4","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2021-02-30"}}"#.to_vec(), "not a FHIR date"),
        ("Encounter", br#"{"resourceType":"Encounter","id":"e0-0","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"}}"#.to_vec(), "duplicate resource id in file"),
        ("Encounter", br#"{"resourceType":"Encounter","id":"bad9","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}}"#.to_vec(), "coding needs both system and code"),
        ("Observation", b"{\"resourceType\":\"Observation\",\"id\":\"x\"".to_vec(), "invalid JSON"),
        ("Observation", b"".to_vec(), "empty line"),
        ("Observation", br#"{"resourceType":"Observation","id":"bad5","status":"final","code":{"coding":[{"system":"LOINC","code":"1-8"}]},"subject":{"reference":"Patient/p1"}}"#.to_vec(), "absolute URI"),
        ("Observation", br#"{"resourceType":"Observation","id":"bad6","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1-8"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01T10:00:00"}"#.to_vec(), "time zone"),
        ("Observation", b"{\"resourceType\":\"Observation\",\"id\":\"u\xff\xfe\"}".to_vec(), "not valid UTF-8"),
        ("Observation", br#"{"resourceType":"Bundle","id":"b1"}"#.to_vec(), "unsupported resource type"),
        ("Observation", br#"{"id":"nt"}"#.to_vec(), "missing resourceType"),
        ("Patient", br#"{"resourceType":"Patient","id":"bad7","gender":"F","birthDate":"1980-01-01"}"#.to_vec(), "gender"),
        ("Condition", br#"{"resourceType":"Condition","id":"bad8","subject":{"reference":"Patient/p2"}}"#.to_vec(), "missing required element code"),
    ];
    let mut expected: Vec<(String, i64, &str)> = Vec::new();
    for (file, line, reason) in &bad {
        let path = tmp.join(format!("{file}.ndjson"));
        append(&path, &[line]);
        let n = std::fs::read(&path)
            .unwrap()
            .iter()
            .filter(|b| **b == b'\n')
            .count() as i64;
        expected.push((format!("{file}.ndjson"), n, reason));
    }
    let input_lines = count_lines(&tmp);
    assert_eq!(input_lines, w.total as i64 + bad.len() as i64);

    let reps = ingest(&mut c, std::slice::from_ref(&tmp), &Options::new("ehr-a")).unwrap();
    let lines: i64 = reps.iter().map(|r| r.lines).sum();
    let loaded: i64 = reps.iter().map(|r| r.loaded).sum();
    let quarantined: i64 = reps.iter().map(|r| r.quarantined).sum();
    assert_eq!(lines, input_lines);
    assert_eq!(lines, loaded + quarantined, "counts reconcile");
    assert_eq!(quarantined, bad.len() as i64);
    assert_eq!(edw::stats::orphans(&mut c).unwrap(), vec![]);
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.quarantine"),
        bad.len() as i64
    );
    for (file, line_no, reason) in &expected {
        let got: String = c
            .query_one(
                "SELECT reason FROM edw.quarantine WHERE file_name = $1 AND line_no = $2",
                &[file, line_no],
            )
            .unwrap_or_else(|e| panic!("{file}:{line_no} not quarantined: {e}"))
            .get(0);
        assert!(
            got.contains(reason),
            "{file}:{line_no}: reason {got:?} lacks {reason:?}"
        );
    }
    // Reasons carry no patient data (the invalid date's digits are masked).
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM edw.quarantine WHERE reason LIKE '%2021%'"
        ),
        0
    );

    // Per-table reconciliation with the generator's line counts.
    let per: std::collections::HashMap<String, usize> = w.per_type.iter().cloned().collect();
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.source_patient"),
        per["Patient"] as i64
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.encounter"),
        per["Encounter"] as i64
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.observation"),
        per["Observation"] as i64
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.condition"),
        per["Condition"] as i64
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.immunization"),
        per["Immunization"] as i64
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.coverage"),
        per["Coverage"] as i64
    );
    assert_eq!(one(&mut c, "SELECT count(*) FROM edw.care_team_member"), 4);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM edw.encounter WHERE practitioner_id IS NULL"
        ),
        0
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM edw.source_patient WHERE org_id IS NULL"
        ),
        0
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.patient_identifier"),
        2 * per["Patient"] as i64
    );
    assert!(
        one(
            &mut c,
            "SELECT count(*) FROM edw.observation WHERE value_num IS NOT NULL AND ref_high = 120"
        ) > 0
    );

    // Re-ingest: every file recognised, nothing changes.
    let before = edw::stats::table_counts(&mut c).unwrap();
    let sums = edw::stats::checksums(&mut c).unwrap();
    let reps2 = ingest(&mut c, std::slice::from_ref(&tmp), &Options::new("ehr-a")).unwrap();
    assert!(reps2.iter().all(|r| r.already_loaded));
    // The same content under another file name is the same batch too.
    let copy = tmp.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(
        tmp.join("Patient.ndjson"),
        copy.join("Patient-again.ndjson"),
    )
    .unwrap();
    let r3 = ingest(&mut c, std::slice::from_ref(&copy), &Options::new("ehr-a")).unwrap();
    assert!(r3[0].already_loaded);
    assert_eq!(edw::stats::table_counts(&mut c).unwrap(), before);
    assert_eq!(edw::stats::checksums(&mut c).unwrap(), sums);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn changed_patient_closes_old_address_and_updates_row() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("i").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-hist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut rng = testkit::testdata::Rng::seeded(1);
    let mut p = testkit::testdata::random_person(&mut rng, 1);
    let f1: PathBuf = tmp.join("Patient-1.ndjson");
    let v1 = testkit::testdata::patient_json(&p, "p1", None, "https://ehr.example.org/mrn", false);
    std::fs::write(&f1, format!("{v1}\n")).unwrap();
    ingest(&mut c, &[f1], &Options::new("s")).unwrap();
    p.line = "1 New Street".into();
    let f2 = tmp.join("Patient-2.ndjson");
    let v2 = testkit::testdata::patient_json(&p, "p1", None, "https://ehr.example.org/mrn", false);
    std::fs::write(&f2, format!("{v2}\n")).unwrap();
    let ch1 = one(&mut c, "SELECT change_no FROM edw.source_patient");
    ingest(&mut c, &[f2], &Options::new("s")).unwrap();
    assert_eq!(one(&mut c, "SELECT count(*) FROM edw.source_patient"), 1);
    assert!(one(&mut c, "SELECT change_no FROM edw.source_patient") > ch1);
    assert_eq!(one(&mut c, "SELECT count(*) FROM edw.patient_address"), 2);
    assert_eq!(one(&mut c, "SELECT count(*) FROM edw.patient_address WHERE valid_to IS NULL AND line = '1 New Street'"), 1);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM edw.patient_address WHERE valid_to IS NOT NULL"
        ),
        1
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// One file holding every type (reference types first), merged by three sessions in
/// small chunks, equals the same file merged by one session in one chunk: duplicates
/// resolve in line order (the first valid line wins, whichever session merges it) and
/// no chunk of clinical lines runs before the patients it references have committed.
#[test]
fn mixed_file_in_parallel_sessions_equals_one_session() {
    let pg = PgHarness::start().unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-mixed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let w = testkit::testdata::write_dataset(&tmp.join("parts"), 300, 9).unwrap();
    let files = edw::ingest::collect_files(&[tmp.join("parts")]).unwrap();
    let mut all = Vec::new();
    for f in &files {
        all.extend(std::fs::read(f).unwrap());
    }
    let enc = |id: &str, extra: &str| {
        format!(
            r#"{{"resourceType":"Encounter","id":"{id}","status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"}},"subject":{{"reference":"Patient/p1"}}{extra}}}"#
        )
    };
    let obs = |id: &str, extra: &str| {
        format!(
            r#"{{"resourceType":"Observation","id":"{id}","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"1-8"}}]}},"subject":{{"reference":"Patient/p1"}}{extra}}}"#
        )
    };
    let extra = [
        // Invalid first occurrence, valid second (far apart: other chunks, other sessions).
        enc("dup-a", r#","status":"done""#),
        obs("per1", r#","effectivePeriod":{"start":"2025-02-30"}"#),
        obs(
            "per2",
            r#","effectivePeriod":{"start":"2025-03-01","end":"2025-02-01"}"#,
        ),
    ];
    for l in &extra {
        all.extend_from_slice(l.as_bytes());
        all.push(b'\n');
    }
    // Filler so the second occurrences land many chunks later.
    let filler: Vec<String> = (0..400).map(|i| obs(&format!("fill{i}"), "")).collect();
    for l in &filler {
        all.extend_from_slice(l.as_bytes());
        all.push(b'\n');
    }
    for l in [
        enc("dup-a", ""),
        enc("dup-a", r#","period":{"start":"2025-01-01"}"#),
        obs("fill7", r#","valueString":"x""#),
    ] {
        all.extend_from_slice(l.as_bytes());
        all.push(b'\n');
    }
    let file = tmp.join("all.ndjson");
    std::fs::write(&file, &all).unwrap();
    let lines = all.iter().filter(|b| **b == b'\n').count() as i64;
    assert_eq!(lines, w.total as i64 + 3 + 400 + 3);

    let load = |db: &str, workers: usize, chunk: usize| {
        let url = pg.create_db(db).unwrap();
        let mut c = edw::connect(&url).unwrap();
        edw::migrate::migrate(&mut c).unwrap();
        let mut o = Options::new("ehr");
        o.workers = workers;
        o.chunk = chunk;
        o.url = Some(url.clone());
        let reps = ingest(&mut c, std::slice::from_ref(&file), &o).unwrap();
        assert_eq!(reps[0].lines, lines);
        assert_eq!(reps[0].loaded + reps[0].quarantined, lines);
        c
    };
    let mut one_session = load("one", 1, 100_000);
    let mut three = load("three", 3, 37);
    assert_eq!(
        one(&mut three, "SELECT count(*) FROM staging.merged_chunk"),
        (lines + 36) / 37
    );
    for c in [&mut one_session, &mut three] {
        assert_eq!(edw::stats::orphans(c).unwrap(), vec![]);
        let reasons: Vec<String> = c
            .query(
                "SELECT resource_id || ': ' || reason FROM edw.quarantine ORDER BY line_no",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].starts_with("dup-a: status: code"), "{reasons:?}");
        assert!(
            reasons[1].starts_with("per1: effectivePeriod.start"),
            "{reasons:?}"
        );
        assert!(
            reasons[2].contains("per2: effectivePeriod: end before start"),
            "{reasons:?}"
        );
        assert!(
            reasons[3].starts_with("dup-a: duplicate resource id in file (first at line"),
            "{reasons:?}"
        );
        assert!(reasons[4].starts_with("fill7: duplicate"), "{reasons:?}");
        // The first valid occurrences were loaded.
        let first: i64 = c
            .query_one(
                "SELECT count(*) FROM edw.encounter WHERE source_id = 'dup-a' AND period_start IS NULL",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(first, 1);
        assert_eq!(
            one(c, "SELECT count(*) FROM edw.observation WHERE source_id = 'fill7' AND value_string IS NULL"),
            1
        );
    }
    assert_eq!(
        edw::stats::table_counts(&mut three).unwrap(),
        edw::stats::table_counts(&mut one_session).unwrap()
    );
    assert_eq!(
        edw::stats::checksums(&mut three).unwrap(),
        edw::stats::checksums(&mut one_session).unwrap()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A source's Group: members are its Patient references (history suffixes and
/// repeats resolved, other member types ignored); a Group with a member the source
/// never sent is quarantined whole; a changed Group replaces its members.
#[test]
fn group_members_resolve_to_source_patients() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("g").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-group-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut rng = testkit::testdata::Rng::seeded(3);
    let mut pats = String::new();
    for i in 1..=3 {
        let p = testkit::testdata::random_person(&mut rng, i);
        let id = format!("p{i}");
        pats +=
            &testkit::testdata::patient_json(&p, &id, None, "https://ehr.example.org/mrn", false)
                .to_string();
        pats.push('\n');
    }
    std::fs::write(tmp.join("Patient.ndjson"), pats).unwrap();
    let group = |id: &str, members: &[&str]| {
        let m: Vec<String> = members
            .iter()
            .map(|r| format!(r#"{{"entity":{{"reference":"{r}"}}}}"#))
            .collect();
        format!(
            r#"{{"resourceType":"Group","id":"{id}","type":"person","actual":true,"member":[{}]}}"#,
            m.join(",")
        )
    };
    let g1 = group(
        "panel",
        &[
            "Patient/p1",
            "Patient/p2/_history/4",
            "Practitioner/x",
            "Patient/p1",
        ],
    );
    let g2 = group("broken", &["Patient/p3", "Patient/nobody"]);
    std::fs::write(tmp.join("Group.ndjson"), format!("{g1}\n{g2}\n")).unwrap();
    ingest(&mut c, std::slice::from_ref(&tmp), &Options::new("s")).unwrap();
    let members = |c: &mut postgres::Client, g: &str| -> Vec<String> {
        c.query(
            "SELECT sp.source_id FROM edw.source_group_member m
             JOIN edw.source_group g ON g.id = m.group_id
             JOIN edw.source_patient sp ON sp.id = m.source_patient_id
             WHERE g.source_id = $1 ORDER BY 1",
            &[&g],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert_eq!(members(&mut c, "panel"), ["p1", "p2"]);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM edw.source_group WHERE source_id = 'broken'"
        ),
        0
    );
    let reason: String = c
        .query_one(
            "SELECT reason FROM edw.quarantine WHERE resource_type = 'Group' AND resource_id = 'broken'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        reason.contains("unresolved reference member.entity"),
        "{reason}"
    );

    // The panel changes in a later file: members are replaced, not added to.
    let changed = tmp.join("later");
    std::fs::create_dir_all(&changed).unwrap();
    std::fs::write(
        changed.join("Group.ndjson"),
        format!("{}\n", group("panel", &["Patient/p3", "urn:uuid:p1"])),
    )
    .unwrap();
    ingest(&mut c, std::slice::from_ref(&changed), &Options::new("s")).unwrap();
    assert_eq!(members(&mut c, "panel"), ["p3"]);
    assert!(edw::stats::orphans(&mut c).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&tmp);
}
