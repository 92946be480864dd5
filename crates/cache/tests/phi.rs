//! No PHI on disk in plaintext: the cache file, its -wal/-shm and any other
//! file in its directory (and SQLite's temp directory) contain none of the
//! imported patients' names or birth dates, while the same scan finds them
//! all in a plain-SQLite copy.

mod common;

use access::{Action, AuditEntry, Outcome, PurposeOfUse, Role};
use cache::{Cache, PanelQuery, PanelSort};
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
