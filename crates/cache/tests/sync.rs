//! Sync apply on real SQLCipher files: a full then an incremental apply equals importing the
//! final state from scratch; deletions land; a failure mid-apply leaves the previous state;
//! the staging store holds no plaintext.

mod common;

use cache::{
    Cache, CacheError, CacheKey, StagedFile, SyncApply, SyncFileKind, SyncLine, SyncStage,
};
use common::{gen, key};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Every clinical table's rows (row ids left out), sorted, as text.
fn content(path: &Path, k: &CacheKey) -> String {
    let c = common::raw_conn(path, k);
    let mut out = String::new();
    for (table, cols) in [
        ("patients", "*"),
        ("practitioners", "*"),
        ("organizations", "*"),
        ("groups", "*"),
        ("group_members", "*"),
        ("panel_row", "*"),
        (
            "events",
            "patient_id, kind, resource_id, date, ts, end_date, code_system, code, display,
             value_num, value2_num, value_text, unit, status, raw",
        ),
        (
            "other_resources",
            "resource_type, resource_id, patient_id, raw",
        ),
    ] {
        let mut stmt = c.prepare(&format!("SELECT {cols} FROM {table}")).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                let mut s = String::new();
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    s.push_str(&format!("{v:?}|"));
                }
                Ok(s)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        out.push_str(&format!("== {table} ({})\n", rows.len()));
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

/// What the app shows: panel page, timelines (row ids left out), groups.
fn shown(c: &Cache) -> String {
    let page = c
        .panel(&cache::PanelQuery {
            limit: 1000,
            sort: cache::PanelSort::Id,
            as_of: Some("2026-01-01".into()),
            ..Default::default()
        })
        .unwrap();
    let mut s = format!("{} patients\n", c.patient_count().unwrap());
    for r in &page.rows {
        s.push_str(&format!("{r:?}\n"));
        let mut t = c.timeline(&r.patient_id, &[]).unwrap().unwrap();
        for e in &mut t.events {
            e.id = 0;
        }
        let mut evs: Vec<String> = t.events.iter().map(|e| format!("{e:?}")).collect();
        evs.sort();
        s.push_str(&format!(
            "{:?} {:?} {:?}\n{}\n",
            t.latest_bp,
            t.latest_hba1c,
            t.latest_bmi,
            evs.join("\n")
        ));
    }
    s.push_str(&format!("{:?}\n", c.groups().unwrap()));
    s
}

/// Imports `lines` as an NDJSON file (the raw JSON stored as written, as a sync stores it).
fn import_as_file(c: &mut Cache, lines: &[String]) {
    let f = tempfile::NamedTempFile::new().unwrap();
    gen::write_ndjson(f.path(), lines);
    c.import_ndjson(f.path(), |_| {}).unwrap();
}

/// assert_eq for long texts: shows the first differing line only.
#[track_caller]
fn assert_same(left: &str, right: &str) {
    if left != right {
        let (l, r): (Vec<&str>, Vec<&str>) = (left.lines().collect(), right.lines().collect());
        let i = (0..l.len().max(r.len()))
            .find(|&i| l.get(i) != r.get(i))
            .unwrap_or(0);
        let cut = |s: Option<&&str>| s.map(|s| s.chars().take(400).collect::<String>());
        panic!(
            "differ at line {i}:\n  left: {:?}\n right: {:?}",
            cut(l.get(i)),
            cut(r.get(i))
        );
    }
}

fn type_id(line: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (
        v["resourceType"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

fn out_lines(group: usize, lines: &[String]) -> Vec<Result<SyncLine, CacheError>> {
    let file: Arc<str> = Arc::from(format!("group {group} output"));
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Ok(SyncLine {
                group,
                kind: SyncFileKind::Output,
                file: file.clone(),
                line_no: i as u64 + 1,
                text: l.clone(),
            })
        })
        .collect()
}

fn delete_line(group: usize, entries: &[(String, String)]) -> Result<SyncLine, CacheError> {
    let entry: Vec<serde_json::Value> = entries
        .iter()
        .map(|(t, id)| serde_json::json!({"request": {"method": "DELETE", "url": format!("{t}/{id}")}}))
        .collect();
    Ok(SyncLine {
        group,
        kind: SyncFileKind::Deleted,
        file: Arc::from("deleted"),
        line_no: 1,
        text: serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entry})
            .to_string(),
    })
}

fn plan(full: bool, t: &str) -> SyncApply {
    SyncApply {
        full,
        groups: vec![("all".into(), t.into())],
        report: Some("{}".into()),
    }
}

/// State A, and state B derived from it: some patients changed (new name, other data), some
/// deleted, some new, a practitioner renamed, Groups re-exported with the new membership.
fn states() -> (Vec<String>, Vec<String>, Vec<String>) {
    let (pa, a) = gen::panel(80, 11);
    let mut rng = gen::Rng::new(99);
    let mut pb: Vec<gen::GenPatient> = Vec::new();
    let mut b_clinical: Vec<String> = Vec::new();
    let mut rng_a = gen::Rng::new(11);
    // Regenerate A's per-patient lines with the same rng so unchanged patients are identical.
    let _: Vec<_> = (0..80).map(|i| gen::patient(i, &mut rng_a)).collect();
    for (i, p) in pa.iter().enumerate() {
        let mut lines = Vec::new();
        gen::patient_lines(p, &mut rng_a, &mut lines);
        if (10..15).contains(&i) {
            continue; // deleted in B
        }
        if i % 9 == 0 {
            // Changed: new name, flags and values (some resources vanish, others appear).
            let mut q = gen::patient(i, &mut rng);
            q.family = format!("Renamed{i}");
            q.diabetic = !p.diabetic;
            let mut l2 = Vec::new();
            gen::patient_lines(&q, &mut rng, &mut l2);
            b_clinical.extend(l2);
            pb.push(q);
        } else {
            b_clinical.extend(lines);
            pb.push(gen::patient(i, &mut gen::Rng::new(0)));
            let last = pb.last_mut().unwrap();
            last.id = p.id.clone();
            last.pcp_id = p.pcp_id.clone();
        }
    }
    for i in 80..86 {
        let q = gen::patient(i, &mut rng);
        gen::patient_lines(&q, &mut rng, &mut b_clinical);
        pb.push(q);
    }
    let mut b = gen::reference_lines(&pb);
    // Practitioner 3 renamed.
    for l in &mut b {
        if l.contains(r#""id":"pr3""#) {
            *l = l.replace("Doctor3", "Doctora3");
        }
    }
    b.extend(b_clinical);
    // The changed lines: in B and not identical in A.
    let a_set: std::collections::HashSet<&String> = a.iter().collect();
    let changed: Vec<String> = b.iter().filter(|l| !a_set.contains(l)).cloned().collect();
    (a, b, changed)
}

fn deletions(a: &[String], b: &[String]) -> Vec<(String, String)> {
    let b_ids: std::collections::HashSet<(String, String)> = b.iter().map(|l| type_id(l)).collect();
    let mut deleted_patients = std::collections::HashSet::new();
    let mut out = Vec::new();
    for l in a {
        let (t, id) = type_id(l);
        if !b_ids.contains(&(t.clone(), id.clone())) {
            if t == "Patient" {
                deleted_patients.insert(id.clone());
                out.push((t, id));
            } else {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let pid = v["subject"]["reference"]
                    .as_str()
                    .or(v["patient"]["reference"].as_str())
                    .map(|r| r.trim_start_matches("Patient/").to_owned());
                // A deleted patient's resources go with them (not listed).
                if pid.is_some_and(|p| deleted_patients.contains(&p) || is_deleted(a, b, &p)) {
                    continue;
                }
                out.push((t, id));
            }
        }
    }
    out
}

fn is_deleted(_a: &[String], b: &[String], pid: &str) -> bool {
    !b.iter()
        .any(|l| l.starts_with(r#"{"resourceType":"Patient""#) && type_id(l).1 == pid)
}

#[test]
fn full_then_incremental_equals_import_from_scratch() {
    let (a, b, changed) = states();
    let dels = deletions(&a, &b);
    assert!(dels.iter().any(|(t, _)| t == "Patient"));
    assert!(
        dels.iter().any(|(t, _)| t != "Patient"),
        "some single resources deleted"
    );

    let k = key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut c = Cache::open(&path, &k).unwrap();
    assert!(c.set_sync_server("https://edw.example/", "app").unwrap());
    let full = c
        .apply_sync(
            &plan(true, "2026-01-01T00:00:00Z"),
            out_lines(0, &a),
            |_| {},
        )
        .unwrap();
    assert!(full.full);
    assert_eq!(full.changed_patients.len(), 80);

    // The same state imported directly.
    let dir_a = tempfile::tempdir().unwrap();
    let mut ca = Cache::open(dir_a.path().join("a.db"), &k).unwrap();
    import_as_file(&mut ca, &a);
    assert_same(&content(&path, &k), &content(ca.path(), &k));
    assert_same(&shown(&c), &shown(&ca));
    // Load the in-memory panel so the incremental apply must refresh it.
    assert_eq!(c.panel(&Default::default()).unwrap().total, 80);

    let mut lines = out_lines(0, &changed);
    lines.push(delete_line(0, &dels));
    let inc = c
        .apply_sync(&plan(false, "2026-01-02T00:00:00Z"), lines, |_| {})
        .unwrap();
    assert!(!inc.full);
    assert_eq!(
        inc.removed_patients,
        (10..15).map(|i| format!("p{i}")).collect::<Vec<_>>()
    );
    assert!(inc.changed_patients.contains(&"p9".to_owned()));
    assert!(inc.changed_patients.contains(&"p85".to_owned()));
    assert!(!inc.changed_patients.contains(&"p1".to_owned()));
    assert!(!inc
        .changed_patients
        .iter()
        .any(|p| inc.removed_patients.contains(p)));

    let dir_b = tempfile::tempdir().unwrap();
    let mut cb = Cache::open(dir_b.path().join("b.db"), &k).unwrap();
    import_as_file(&mut cb, &b);
    assert_same(&content(&path, &k), &content(cb.path(), &k));
    assert_same(&shown(&c), &shown(&cb));
    assert_eq!(c.panel(&Default::default()).unwrap().total, 81);
    assert!(c.timeline("p12", &[]).unwrap().is_none());

    let st = c.sync_state().unwrap();
    assert_eq!(st.groups.len(), 1);
    assert_eq!(st.groups[0].transaction_time, "2026-01-02T00:00:00Z");
    assert!(st.last_synced_at.is_some() && st.last_error.is_none());
    // Reopened: the same.
    drop(c);
    let c = Cache::open(&path, &k).unwrap();
    assert_same(&shown(&c), &shown(&cb));
}

#[test]
fn full_sync_of_overlapping_groups_keeps_each_resource_once() {
    let (_, a) = gen::panel(40, 3);
    // Two exports: everything, and again the first half of the patients' lines plus the
    // reference resources (a patient in two Groups, shared resources in both).
    let half: Vec<String> = a[..a.len() / 2].to_vec();
    let mut lines = out_lines(0, &a);
    lines.extend(out_lines(1, &half));
    let k = key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut c = Cache::open(&path, &k).unwrap();
    c.set_sync_server("https://edw.example/", "app").unwrap();
    let p = SyncApply {
        full: true,
        groups: vec![("g1".into(), "t1".into()), ("g2".into(), "t2".into())],
        report: None,
    };
    c.apply_sync(&p, lines, |_| {}).unwrap();
    let mut ca = Cache::open(dir.path().join("a.db"), &k).unwrap();
    import_as_file(&mut ca, &a);
    assert_same(&content(&path, &k), &content(ca.path(), &k));
    assert_eq!(c.sync_state().unwrap().groups.len(), 2);
}

#[test]
fn a_failure_mid_apply_leaves_the_previous_state() {
    let (a, b, changed) = states();
    let k = key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut c = Cache::open(&path, &k).unwrap();
    c.set_sync_server("https://edw.example/", "app").unwrap();
    c.apply_sync(&plan(true, "t1"), out_lines(0, &a), |_| {})
        .unwrap();
    let before = (
        content(&path, &k),
        shown(&c),
        c.sync_state().unwrap().groups,
    );

    // Incremental: the download fails after half the lines.
    let mut lines = out_lines(0, &changed);
    lines.truncate(changed.len() / 2);
    lines.push(Err(CacheError::Import("download interrupted".into())));
    let e = c.apply_sync(&plan(false, "t2"), lines, |_| {}).unwrap_err();
    assert!(e.to_string().contains("download interrupted"));
    assert_eq!(
        (
            content(&path, &k),
            shown(&c),
            c.sync_state().unwrap().groups
        ),
        before
    );

    // Incremental: a malformed line.
    let mut lines = out_lines(0, &changed);
    lines.insert(
        3,
        out_lines(0, &["{\"resourceType\":\"Patient\",".into()]).remove(0),
    );
    let e = c.apply_sync(&plan(false, "t2"), lines, |_| {}).unwrap_err();
    assert!(matches!(e, CacheError::Ndjson { .. }), "{e}");
    assert_eq!(
        (
            content(&path, &k),
            shown(&c),
            c.sync_state().unwrap().groups
        ),
        before
    );

    // Incremental: an event for a patient nobody has.
    let orphan = r#"{"resourceType":"Observation","id":"zz","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/nobody"}}"#;
    let e = c
        .apply_sync(
            &plan(false, "t2"),
            out_lines(0, &[orphan.to_owned()]),
            |_| {},
        )
        .unwrap_err();
    assert!(e.to_string().contains("refer to patients"), "{e}");
    assert_eq!(
        (
            content(&path, &k),
            shown(&c),
            c.sync_state().unwrap().groups
        ),
        before
    );

    // Full: fails half-way.
    let mut lines = out_lines(0, &b);
    lines.truncate(b.len() / 2);
    lines.push(Err(CacheError::Import("download interrupted".into())));
    c.apply_sync(&plan(true, "t3"), lines, |_| {}).unwrap_err();
    assert_eq!(
        (
            content(&path, &k),
            shown(&c),
            c.sync_state().unwrap().groups
        ),
        before
    );
    // No leftover files beside the cache but the cache's own.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("c.db") && !n.contains("import")),
        "{names:?}"
    );
}

#[test]
fn changing_server_forgets_the_transaction_times() {
    let k = key();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::open(dir.path().join("c.db"), &k).unwrap();
    let (_, a) = gen::panel(5, 1);
    assert!(c
        .apply_sync(&plan(true, "t"), out_lines(0, &a), |_| {})
        .is_err());
    c.set_sync_server("https://a/", "x").unwrap();
    c.apply_sync(&plan(true, "t"), out_lines(0, &a), |_| {})
        .unwrap();
    assert!(!c.set_sync_server("https://a/", "x").unwrap());
    assert_eq!(c.sync_state().unwrap().groups.len(), 1);
    c.record_sync_error("the server is unreachable").unwrap();
    assert_eq!(
        c.sync_state().unwrap().last_error.as_deref(),
        Some("the server is unreachable")
    );
    assert!(c.set_sync_server("https://b/", "x").unwrap());
    assert!(c.sync_state().unwrap().groups.is_empty());
}

#[test]
fn deleted_entries_read_relative_and_absolute_urls() {
    let b = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Patient/p1"}},
        {"request": {"method": "DELETE", "url": "https://s/fhir/Observation/o-1/_history/2"}},
        {"request": {"method": "PUT", "url": "Patient/p2"}}
    ]});
    assert_eq!(
        cache::deleted_entries(&b.to_string()).unwrap(),
        vec![
            ("Patient".to_owned(), "p1".to_owned()),
            ("Observation".to_owned(), "o-1".to_owned())
        ]
    );
    assert!(cache::deleted_entries(r#"{"resourceType":"Patient"}"#).is_err());
}

#[test]
fn staging_round_trips_and_holds_no_plaintext() {
    let sqlite_tmp = tempfile::tempdir().unwrap();
    std::env::set_var("SQLITE_TMPDIR", sqlite_tmp.path());
    let (patients, lines) = gen::panel(150, 8);
    let mut needles: Vec<String> = Vec::new();
    for p in &patients {
        needles.push(p.family.clone());
        needles.push(p.birth_date.clone());
    }
    needles.sort();
    needles.dedup();

    let k = key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let _c = Cache::open(&path, &k).unwrap();
    let mut st = SyncStage::open(&path, &k).unwrap();
    assert!(st.staged().unwrap().is_none());
    st.begin(
        "https://edw.example/",
        "app",
        true,
        &[("g1".into(), None), ("g2".into(), Some("t0".into()))],
    )
    .unwrap();
    st.set_status_url("g1", "https://edw.example/status/1")
        .unwrap();
    st.set_manifest(
        "g1",
        r#"{"transactionTime":"t1"}"#,
        &[
            StagedFile::new(
                SyncFileKind::Output,
                "Patient",
                "https://edw.example/f/1",
                Some(3),
            ),
            StagedFile::new(
                SyncFileKind::Deleted,
                "Bundle",
                "https://edw.example/f/2",
                None,
            ),
        ],
    )
    .unwrap();
    let mut expected = Vec::new();
    for chunk in lines.chunks(100) {
        let mut data = Vec::new();
        for l in chunk {
            data.extend_from_slice(l.as_bytes());
            data.push(b'\n');
        }
        st.append("g1", 0, &data, chunk.len() as u64, false)
            .unwrap();
        expected.extend(data);
    }
    st.append("g1", 0, &[], 0, true).unwrap();
    let s = st.staged().unwrap().unwrap();
    assert!(s.full);
    assert_eq!(s.exports.len(), 2);
    assert_eq!(
        s.exports[0].status_url.as_deref(),
        Some("https://edw.example/status/1")
    );
    assert_eq!(s.exports[1].since.as_deref(), Some("t0"));
    let f = &s.exports[0].files[0];
    assert_eq!(
        (f.bytes as usize, f.lines as usize, f.complete),
        (expected.len(), lines.len(), true)
    );
    assert!(!s.exports[0].files[1].complete);
    let mut back = Vec::new();
    st.read_file("g1", 0, |d| {
        back.extend_from_slice(d);
        Ok(())
    })
    .unwrap();
    assert_eq!(back, expected);

    // Scan every file in the cache's directory and SQLite's temp directory.
    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    for d in [dir.path(), sqlite_tmp.path()] {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            for n in &needles {
                if memchr::memmem::find(&bytes, n.as_bytes()).is_some() {
                    *hits.entry(p.display().to_string()).or_default() += 1;
                }
            }
        }
    }
    assert!(hits.is_empty(), "plaintext found: {hits:?}");
    // The control: the same scan finds them in the plain bytes.
    assert!(needles
        .iter()
        .all(|n| memchr::memmem::find(&expected, n.as_bytes()).is_some()));

    // Re-opened: still there; reset and clear.
    drop(st);
    let mut st = SyncStage::open(&path, &k).unwrap();
    assert_eq!(
        st.staged().unwrap().unwrap().exports[0].files[0].lines as usize,
        lines.len()
    );
    st.reset_file("g1", 0).unwrap();
    assert_eq!(st.staged().unwrap().unwrap().exports[0].files[0].bytes, 0);
    st.clear().unwrap();
    assert!(st.staged().unwrap().is_none());
    // A wrong key does not open it.
    drop(st);
    assert!(matches!(
        SyncStage::open(&path, &key()).unwrap_err(),
        CacheError::WrongKey
    ));
}
