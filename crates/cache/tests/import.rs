//! Import: atomic replace, clear errors with line numbers, kill -9 safety.

mod common;

use cache::{Cache, CacheError, ImportProgress};
use common::{fingerprint, gen, key};
use std::io::{BufRead, Write};
use std::path::Path;

fn previous_panel(path: &Path, k: &cache::CacheKey) -> String {
    let mut c = Cache::open(path, k).unwrap();
    let (_, lines) = gen::panel(12, 7);
    common::import_lines(&mut c, &lines);
    assert_eq!(c.patient_count().unwrap(), 12);
    fingerprint(&c)
}

#[test]
fn import_ndjson_directory_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (patients, lines) = gen::panel(1500, 3);
    // Split into two files; the importer reads *.ndjson sorted by name.
    let (a, b) = lines.split_at(lines.len() / 2);
    gen::write_ndjson(&data.path().join("a.ndjson"), a);
    gen::write_ndjson(&data.path().join("b.ndjson"), b);
    std::fs::write(data.path().join("notes.txt"), "ignored").unwrap();

    let mut c = Cache::open(dir.path().join("c.db"), &key()).unwrap();
    let mut events: Vec<ImportProgress> = Vec::new();
    let s = c.import_ndjson(data.path(), |p| events.push(p)).unwrap();
    assert_eq!(s.resources as usize, lines.len());
    assert_eq!(s.patients as usize, patients.len());
    assert_eq!(s.practitioners as usize, gen::PRACTITIONERS);
    assert_eq!(s.groups as usize, gen::PRACTITIONERS);
    assert_eq!(s.organizations, 1);
    assert_eq!(c.patient_count().unwrap(), 1500);
    // Progress: every 1000 resources, monotonic, total known, then done.
    assert!(events.len() >= lines.len() / 1000);
    assert!(events.windows(2).all(|w| w[0].resources < w[1].resources));
    assert!(events.iter().all(|e| e.total == Some(lines.len() as u64)));
    let last = events.last().unwrap();
    assert!(last.done);
    assert_eq!(last.resources as usize, lines.len());
    assert!(events[..events.len() - 1].iter().all(|e| !e.done));
}

#[test]
fn import_replaces_the_previous_panel() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::open(dir.path().join("c.db"), &key()).unwrap();
    let (_, a) = gen::panel(30, 1);
    common::import_lines(&mut c, &a);
    c.set_setting("keep", "me").unwrap();
    // Load the in-memory panel so the next import must invalidate it.
    assert_eq!(c.panel(&Default::default()).unwrap().total, 30);
    let (pb, b) = gen::panel(10, 2);
    let s = common::import_lines(&mut c, &b);
    assert_eq!(s.patients, 10);
    assert_eq!(c.patient_count().unwrap(), 10);
    let page = c
        .panel(&cache::PanelQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.total, 10);
    let mut names: Vec<_> = page.rows.iter().map(|r| r.name.clone()).collect();
    names.sort();
    let mut expected: Vec<_> = pb
        .iter()
        .map(|p| format!("{}, {}", p.family, p.given))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(c.setting("keep").unwrap().as_deref(), Some("me"));
}

/// Imports a file built from `lines` and expects an error; the cache must be unchanged.
fn assert_rejected(lines: &str, check: impl Fn(&CacheError)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let before = previous_panel(&path, &k);
    let file = dir.path().join("bad.ndjson");
    std::fs::write(&file, lines).unwrap();
    let mut c = Cache::open(&path, &k).unwrap();
    let err = c.import_ndjson(&file, |_| {}).unwrap_err();
    check(&err);
    // No PHI from the file in the message.
    let msg = err.to_string();
    for word in [
        "Quillfeather",
        "Brambleton",
        "Alinta",
        "Corisande",
        "birthDate",
    ] {
        assert!(!msg.contains(word), "error message leaks content: {msg}");
    }
    assert_eq!(fingerprint(&c), before, "cache changed by a failed import");
    drop(c);
    let c = Cache::open(&path, &k).unwrap();
    assert_eq!(fingerprint(&c), before, "cache changed after reopen");
}

fn good_lines(n: usize) -> Vec<String> {
    gen::panel(n, 11).1
}

#[test]
fn malformed_line_names_file_and_line_and_changes_nothing() {
    let mut lines = good_lines(40);
    assert!(lines.len() > 300);
    lines.insert(
        250,
        r#"{"resourceType":"Patient","id":"bad","name":[{"family":"Quillfeather"#.to_owned() + "}",
    );
    let text = lines.join("\n") + "\n";
    assert_rejected(&text, |e| match e {
        CacheError::Ndjson { file, line, reason } => {
            assert_eq!(file, "bad.ndjson");
            assert_eq!(*line, 251);
            assert!(!reason.is_empty());
            assert!(e.to_string().starts_with("bad.ndjson: line 251: "), "{e}");
        }
        other => panic!("expected Ndjson error, got {other:?}"),
    });
}

#[test]
fn truncated_file_is_rejected_with_its_last_line() {
    let lines = good_lines(20);
    let mut text = lines.join("\n");
    // Cut the last record in half (no trailing newline), as a partial download would.
    let cut = text.len() - lines.last().unwrap().len() / 2;
    text.truncate(cut);
    assert_rejected(&text, |e| match e {
        CacheError::Ndjson { line, .. } => assert_eq!(*line as usize, lines.len()),
        other => panic!("expected Ndjson error, got {other:?}"),
    });
}

#[test]
fn invalid_resources_are_rejected_with_line_numbers() {
    let mut lines = good_lines(5);
    let n = lines.len();
    lines.push(
        r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}"#.into(),
    );
    assert_rejected(&(lines.join("\n") + "\n"), |e| match e {
        CacheError::Ndjson { line, reason, .. } => {
            assert_eq!(*line as usize, n + 1);
            assert!(reason.contains("without a Patient subject"), "{reason}");
        }
        other => panic!("{other:?}"),
    });

    let mut lines = good_lines(5);
    let dup = lines
        .iter()
        .find(|l| l.contains(r#""resourceType":"Patient""#))
        .unwrap()
        .clone();
    lines.push(dup);
    let n = lines.len();
    assert_rejected(&(lines.join("\n") + "\n"), |e| match e {
        CacheError::Ndjson { line, reason, .. } => {
            assert_eq!(*line as usize, n);
            assert_eq!(reason, "duplicate Patient id");
        }
        other => panic!("{other:?}"),
    });

    let mut lines = good_lines(5);
    lines.push(r#"{"resourceType":"Patient","name":[{"family":"X"}]}"#.into());
    assert_rejected(&(lines.join("\n") + "\n"), |e| {
        assert!(e.to_string().contains("Patient without an id"), "{e}")
    });

    // Valid JSON, wrong FHIR type for an element.
    let mut lines = good_lines(5);
    lines.insert(
        3,
        r#"{"resourceType":"Patient","id":"z","birthDate":19700101}"#.into(),
    );
    assert_rejected(&(lines.join("\n") + "\n"), |e| match e {
        CacheError::Ndjson { line, .. } => assert_eq!(*line, 4),
        other => panic!("{other:?}"),
    });

    // A clinical resource for a patient that is not in the import.
    let mut lines = good_lines(5);
    lines.push(r#"{"resourceType":"Encounter","id":"e9","status":"finished","subject":{"reference":"Patient/nobody"}}"#.into());
    assert_rejected(&(lines.join("\n") + "\n"), |e| {
        assert!(matches!(e, CacheError::Import(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("1 clinical resource(s) refer to patients"),
            "{e}"
        );
    });
}

#[test]
fn missing_path_and_empty_directory_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::open(dir.path().join("c.db"), &key()).unwrap();
    assert!(matches!(
        c.import_ndjson(&dir.path().join("nope"), |_| {}),
        Err(CacheError::Io { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        c.import_ndjson(empty.path(), |_| {}),
        Err(CacheError::Import(_))
    ));
}

const CHILD_ENV: &str = "PHM_CACHE_KILL9_CHILD";

/// Child half of the kill -9 test: imports slowly, reporting progress on stdout.
fn kill9_child(spec: &str) {
    let (db, ndjson) = spec.split_once('\n').unwrap();
    let mut hex = String::new();
    std::io::stdin().read_line(&mut hex).unwrap();
    let k = cache::CacheKey::from_hex(hex.trim()).unwrap();
    let mut c = Cache::open(db, &k).unwrap();
    // Small page cache: dirty pages spill into the WAL before commit.
    c.set_page_cache_kib(256).unwrap();
    let mut out = std::io::stdout();
    let _ = c.import_ndjson(Path::new(ndjson), |p| {
        writeln!(out, "progress {}", p.resources).unwrap();
        out.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
    });
    // Reaching here means the parent did not kill us: report it.
    writeln!(out, "finished").unwrap();
}

#[test]
fn kill_9_mid_import_keeps_the_previous_panel() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        kill9_child(&spec);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let before = previous_panel(&path, &k);
    // Uncommitted pages go to the WAL (import in place) or to the replacement
    // file `c.db.import` (import by swap): watch both.
    let wal = dir.path().join("c.db-wal");
    let fresh = dir.path().join("c.db.import");
    let on_disk = || {
        [&wal, &fresh]
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
    };
    let wal_before = on_disk();

    let data = tempfile::tempdir().unwrap();
    let big = data.path().join("big.ndjson");
    let (_, lines) = gen::panel(3000, 5);
    gen::write_ndjson(&big, &lines);

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_9_mid_import_keeps_the_previous_panel",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}\n{}", path.display(), big.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", k.to_hex()).unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0u64;
    let mut wal_mid = 0;
    for line in stdout.lines() {
        let line = line.unwrap();
        assert_ne!(line, "finished", "the import finished before it was killed");
        if let Some(n) = line.strip_prefix("progress ") {
            seen = n.parse().unwrap();
            wal_mid = on_disk();
            // Well into the import, with uncommitted pages already in the WAL.
            if seen >= 15_000 && wal_mid > wal_before + 256 * 1024 {
                break;
            }
        }
    }
    assert!(seen >= 15_000 && seen < lines.len() as u64, "seen {seen}");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(wal_mid > wal_before, "the import never reached the WAL");

    // The cache opens and holds exactly the previous panel.
    let mut c = Cache::open(&path, &k).unwrap();
    assert_eq!(fingerprint(&c), before);
    // And a later import still works.
    let (_, small) = gen::panel(4, 9);
    common::import_lines(&mut c, &small);
    assert_eq!(c.patient_count().unwrap(), 4);
}

/// An import builds a replacement file and swaps it in: accounts, the audit
/// trail (chain intact, appends continue it) and settings are carried over,
/// a leftover replacement file from a killed import is ignored, and nothing
/// of the replacement remains afterwards.
#[test]
fn import_keeps_accounts_audit_and_settings() {
    use access::{Action, AuditEntry, Outcome, PurposeOfUse, Role};
    let entry = |i: u32| AuditEntry {
        at: format!("2026-11-{:02}T10:00:00.000Z", i),
        user: "alice".into(),
        role: Some(Role::CareManager),
        purpose: Some(PurposeOfUse::Treatment),
        action: Action::ViewPanel,
        patient_ids: vec![format!("p{i}")],
        query: None,
        outcome: Outcome::Allowed,
        detail: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let mut c = Cache::open(&path, &k).unwrap();
    common::import_lines(&mut c, &gen::panel(5, 1).1);
    c.create_account("alice", "Alice", Role::CareManager, "correct horse battery")
        .unwrap();
    c.set_setting("keep", "me").unwrap();
    for i in 1..=3 {
        c.audit_append(entry(i)).unwrap();
    }
    // Garbage where a killed import would have left its replacement file.
    std::fs::write(dir.path().join("c.db.import"), b"leftover").unwrap();
    common::import_lines(&mut c, &gen::panel(7, 2).1);
    assert_eq!(c.patient_count().unwrap(), 7);
    assert_eq!(c.audit_verify().unwrap(), 3);
    assert_eq!(c.audit_append(entry(4)).unwrap().seq, 4);
    assert_eq!(c.account("alice").unwrap().unwrap().display_name, "Alice");
    assert_eq!(c.setting("keep").unwrap().as_deref(), Some("me"));
    assert!(c.setting("last_import_at").unwrap().is_some());
    assert!(!dir.path().join("c.db.import").exists());
    drop(c);
    let c = Cache::open(&path, &k).unwrap();
    assert_eq!(c.audit_verify().unwrap(), 4);
    assert_eq!(c.patient_count().unwrap(), 7);
}

/// With a second connection open on the cache, the file cannot be replaced:
/// the import runs in place (one transaction) and both connections see it.
#[test]
fn import_with_another_connection_open_runs_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let mut a = Cache::open(&path, &k).unwrap();
    common::import_lines(&mut a, &gen::panel(5, 1).1);
    let b = Cache::open(&path, &k).unwrap();
    assert_eq!(b.patient_count().unwrap(), 5);
    common::import_lines(&mut a, &gen::panel(8, 2).1);
    assert_eq!(a.patient_count().unwrap(), 8);
    assert_eq!(b.patient_count().unwrap(), 8);
    assert!(!dir.path().join("c.db.import").exists());
    drop(b);
    drop(a);
    assert_eq!(Cache::open(&path, &k).unwrap().patient_count().unwrap(), 8);
}
