//! No PHI on disk in plaintext: the cache file, its -wal/-shm and any other
//! file in its directory (and SQLite's temp directory) contain none of the
//! imported patients' names or birth dates, while the same scan finds them
//! all in a plain-SQLite copy.

mod common;

use access::{Action, AuditEntry, Outcome, PurposeOfUse, Role};
use cache::{
    Cache, LocalResource, OutboxEntry, PanelQuery, PanelSort, PatientEvaluation, PopulationCounts,
    StoredGap, StoredResult, WorkChange, WorklistQuery,
};
use common::gen;
use std::path::Path;

fn scan_dir(dir: &Path, needles: &[String]) -> Vec<(String, String)> {
    let mut hits = Vec::new();
    let finders: Vec<_> = needles
        .iter()
        .map(|n| memchr::memmem::Finder::new(n.as_bytes()))
        .collect();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if !p.is_file() {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        for (n, f) in needles.iter().zip(&finders) {
            if f.find(&bytes).is_some() {
                hits.push((
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    n.clone(),
                ));
            }
        }
    }
    hits
}

/// The workload: import, query, timeline, audit. Returns the cache still open.
fn workload(mut c: Cache, lines: &[String], patients: &[gen::GenPatient]) -> Cache {
    common::import_lines(&mut c, lines);
    for sort in [PanelSort::Name, PanelSort::Age, PanelSort::Conditions] {
        let page = c
            .panel(&PanelQuery {
                name: Some("e".into()),
                sort,
                limit: 500,
                ..Default::default()
            })
            .unwrap();
        assert!(page.total > 0);
    }
    for p in patients.iter().take(20) {
        c.timeline(&p.id, &[]).unwrap().unwrap();
        c.audit_append(
            AuditEntry::now(
                "alice",
                Some(Role::Clinician),
                Some(PurposeOfUse::Treatment),
                Action::ViewTimeline,
                Outcome::Allowed,
            )
            .with_patients([p.id.clone()])
            .with_query(format!("{{\"name\":\"{}\"}}", p.family)),
        )
        .unwrap();
    }
    // Care gaps, their evidence, worklist actions with notes and recorded resources: the new
    // tables carry names and dates too (here on purpose), and must be as unreadable.
    for p in patients.iter().take(20) {
        let said = format!("{}, {} born {}", p.family, p.given, p.birth_date);
        c.store_evaluations(
            &[PatientEvaluation {
                patient_id: p.id.clone(),
                data_hash: "h".into(),
                results: vec![StoredResult {
                    measure_id: "M".into(),
                    group_id: "g".into(),
                    counts: PopulationCounts {
                        ip: 1,
                        denom: 1,
                        ..Default::default()
                    },
                    strata: Some(serde_json::json!([["s1", said]]).to_string()),
                    sde: Some(serde_json::json!([["sde-sex", said]]).to_string()),
                }],
                gaps: vec![StoredGap {
                    measure_id: "M".into(),
                    group_id: "g".into(),
                    status: "open".into(),
                    why_open: serde_json::json!([{ "name": "n", "text": said }]).to_string(),
                    evidence: "[]".into(),
                }],
            }],
            "setup",
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        let action = format!("00000000-0000-4000-8000-{:012}", p.id.len());
        c.record_action(
            &OutboxEntry {
                id: format!("{action}-{}", p.id),
                created_at: "2026-01-02T00:00:00Z".into(),
                username: "alice".into(),
                kind: "outreach".into(),
                patient_id: p.id.clone(),
                measure_id: Some("M".into()),
                group_id: Some("g".into()),
                body: serde_json::json!({ "note": said }).to_string(),
            },
            Some(&WorkChange {
                outreach: Some(format!("call: reached {said}")),
                ..Default::default()
            }),
            Some(&LocalResource {
                id: format!("r-{}", p.id),
                patient_id: p.id.clone(),
                resource_type: "Observation".into(),
                raw: serde_json::json!({ "resourceType": "Observation", "note": said }).to_string(),
            }),
        )
        .unwrap();
    }
    let page = c.worklist(&WorklistQuery::default(), None).unwrap();
    assert!(page.total >= 20);
    c
}

#[test]
fn no_names_or_birth_dates_in_any_file_while_open() {
    // SQLite temp files (if any were made) would go here; scan it too.
    let sqlite_tmp = tempfile::tempdir().unwrap();
    std::env::set_var("SQLITE_TMPDIR", sqlite_tmp.path());

    let (patients, lines) = gen::panel(200, 42);
    let mut needles: Vec<String> = Vec::new();
    for p in &patients {
        needles.push(p.family.clone());
        needles.push(p.birth_date.clone());
        needles.push(format!("{}, {}", p.family, p.given));
    }
    needles.sort();
    needles.dedup();

    // Real path: key from the OS keyring.
    let store =
        cache::KeyStore::with_service(&format!("phm-workstation-test-phi-{}", std::process::id()))
            .unwrap();
    let key = store
        .load_or_create("phi-scan")
        .expect("OS keyring (see tests/keyring.rs)");
    let enc_dir = tempfile::tempdir().unwrap();
    let enc = workload(
        Cache::open(enc_dir.path().join("cache.db"), &key).unwrap(),
        &lines,
        &patients,
    );
    store.delete("phi-scan").unwrap();

    // Control: the same workload on plain SQLite must expose every needle.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = workload(
        Cache::open_plaintext_for_benchmark(plain_dir.path().join("cache.db")).unwrap(),
        &lines,
        &patients,
    );

    // Scan while both are open (WAL and SHM exist), then again after close.
    let files: Vec<_> = std::fs::read_dir(enc_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        files.iter().any(|f| f.to_string_lossy().ends_with("-wal")),
        "{files:?}"
    );
    check(
        enc_dir.path(),
        plain_dir.path(),
        sqlite_tmp.path(),
        &needles,
        "open",
    );
    drop(enc);
    drop(plain);
    check(
        enc_dir.path(),
        plain_dir.path(),
        sqlite_tmp.path(),
        &needles,
        "closed",
    );
}

fn check(enc: &Path, plain: &Path, tmp: &Path, needles: &[String], phase: &str) {
    let enc_hits = scan_dir(enc, needles);
    assert!(
        enc_hits.is_empty(),
        "{phase}: plaintext PHI found in the encrypted cache: {} hits, e.g. in {:?}",
        enc_hits.len(),
        enc_hits.first().map(|h| &h.0)
    );
    assert!(
        scan_dir(tmp, needles).is_empty(),
        "{phase}: PHI in SQLite temp files"
    );
    let plain_hits = scan_dir(plain, needles);
    let mut found: Vec<&String> = plain_hits.iter().map(|h| &h.1).collect();
    found.sort();
    found.dedup();
    assert_eq!(
        found.len(),
        needles.len(),
        "{phase}: the scan must find every needle in the plaintext control"
    );
}
