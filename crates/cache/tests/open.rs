//! Opening the encrypted cache: wrong key, plaintext files, migrations.

mod common;

use cache::{Cache, CacheError, SCHEMA_VERSION};
use common::{gen, key, raw_conn, snapshot};

#[test]
fn wrong_key_is_refused_and_leaves_every_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let k = key();
    {
        let mut c = Cache::open(&path, &k).unwrap();
        let (_, lines) = gen::panel(20, 1);
        common::import_lines(&mut c, &lines);
    }
    let before = snapshot(dir.path());
    assert!(before.contains_key("cache.db"));
    let before_len = before["cache.db"].0;
    assert!(before_len > 4096);

    let wrong = key();
    match Cache::open(&path, &wrong) {
        Err(CacheError::WrongKey) => {}
        other => panic!("expected WrongKey, got {other:?}"),
    }
    let e = Cache::open(&path, &wrong).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the cache could not be opened with the stored key"
    );
    // Byte for byte, and no new -wal/-shm/journal files.
    assert_eq!(snapshot(dir.path()), before);

    // The right key still works and sees the data.
    let c = Cache::open(&path, &k).unwrap();
    assert_eq!(c.patient_count().unwrap(), 20);
}

#[test]
fn wrong_key_with_pending_wal_changes_nothing() {
    // A cache left with a WAL (no checkpoint on close) must not be recovered
    // or rewritten by a wrong-key open either.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let k = key();
    let c = Cache::open(&path, &k).unwrap();
    c.set_setting("x", "y").unwrap();
    // Copy the files while the cache is open (WAL holds the last commit).
    let copy = tempfile::tempdir().unwrap();
    common::copy_dir(dir.path(), copy.path());
    drop(c);
    let copied = copy.path().join("cache.db");
    let before = snapshot(copy.path());
    assert!(
        before.keys().any(|n| n.ends_with("-wal")),
        "{:?}",
        before.keys()
    );
    assert!(matches!(
        Cache::open(&copied, &key()),
        Err(CacheError::WrongKey)
    ));
    assert_eq!(snapshot(copy.path()), before);
    // And the right key recovers the committed setting from the WAL.
    let c = Cache::open(&copied, &k).unwrap();
    assert_eq!(c.setting("x").unwrap().as_deref(), Some("y"));
}

#[test]
fn garbage_file_is_wrong_key_and_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    let before = snapshot(dir.path());
    assert!(matches!(
        Cache::open(&path, &key()),
        Err(CacheError::WrongKey)
    ));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn plaintext_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    drop(Cache::open_plaintext_for_benchmark(&path).unwrap());
    assert_eq!(&std::fs::read(&path).unwrap()[..16], b"SQLite format 3\0");
    let before = snapshot(dir.path());
    assert!(matches!(
        Cache::open(&path, &key()),
        Err(CacheError::NotEncrypted)
    ));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn new_cache_is_encrypted_and_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let c = Cache::open(&path, &key()).unwrap();
    assert!(c.is_encrypted());
    assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(c.cipher_version().unwrap().unwrap().starts_with('4'));
    drop(c);
    let head = std::fs::read(&path).unwrap();
    assert_ne!(&head[..16], b"SQLite format 3\0");
}

#[test]
fn migrations_are_idempotent_and_keep_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let k = key();
    {
        let mut c = Cache::open(&path, &k).unwrap();
        let (_, lines) = gen::panel(5, 2);
        common::import_lines(&mut c, &lines);
        c.set_setting("theme", "dark").unwrap();
    }
    let schema = |k: &cache::CacheKey| -> Vec<String> {
        let conn = raw_conn(&path, k);
        let mut st = conn
            .prepare("SELECT type || ' ' || name || ' ' || coalesce(sql,'') FROM sqlite_master ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let s1 = schema(&k);
    for _ in 0..3 {
        let c = Cache::open(&path, &k).unwrap();
        assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(c.patient_count().unwrap(), 5);
        assert_eq!(c.setting("theme").unwrap().as_deref(), Some("dark"));
    }
    assert_eq!(schema(&k), s1);
}

#[test]
fn newer_schema_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let k = key();
    drop(Cache::open(&path, &k).unwrap());
    raw_conn(&path, &k)
        .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    match Cache::open(&path, &k) {
        Err(e @ CacheError::SchemaTooNew { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("newer than this app supports"), "{msg}");
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn settings_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path().join("c.db"), &key()).unwrap();
    assert_eq!(c.setting("a").unwrap(), None);
    c.set_setting("a", "1").unwrap();
    c.set_setting("a", "2").unwrap();
    assert_eq!(c.setting("a").unwrap().as_deref(), Some("2"));
}

#[test]
fn right_key_open_succeeds_while_another_connection_writes_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let k = key();
    drop(Cache::open(&path, &k).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, k, stop) = (path.clone(), k.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = Cache::open(&path, &k).unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.set_setting("n", &i.to_string()).unwrap();
                if i.is_multiple_of(20) {
                    c.checkpoint().unwrap();
                }
                i += 1;
            }
            i
        })
    };
    for _ in 0..40 {
        let c = Cache::open(&path, &k).expect("the right key must open during writes");
        assert!(c.setting("n").is_ok());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
}
