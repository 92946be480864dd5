//! The workstation on a real SQLCipher cache holding a generated demo panel, with a
//! clock the test controls; shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use cache::{Cache, CacheKey};
use workstation::{Config, Workstation};

pub struct Fixture {
    pub ws: Workstation,
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub key: CacheKey,
    /// The workstation's clock (Unix ms), which the test may set.
    pub clock: Arc<AtomicI64>,
}

/// A new encrypted cache with a demo panel of `patients` (not evaluated yet).
pub fn demo_workstation(patients: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let key = CacheKey::generate().unwrap();
    let cache = Cache::open(&path, &key).unwrap();
    let mut config = Config::new(dir.path());
    config.demo = true;
    config.demo_patients = patients;
    let now = Arc::new(AtomicI64::new(access::time::now_unix_ms()));
    let clock = now.clone();
    let ws = Workstation::with_cache(
        cache,
        &config,
        &|_| {},
        Box::new(move || now.load(Ordering::SeqCst)),
    )
    .unwrap();
    Fixture {
        ws,
        dir,
        path,
        key,
        clock,
    }
}

/// The fixture's SQLCipher file opened directly with its key (to read or alter what the
/// workstation stored, outside its commands).
pub fn rusqlite_open(f: &Fixture) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(&f.path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\"; PRAGMA cipher_page_size = {}; PRAGMA cipher_hmac_algorithm = {};",
        f.key.to_hex(),
        cache::PAGE_SIZE,
        cache::HMAC_ALGORITHM
    ))
    .unwrap();
    c
}
