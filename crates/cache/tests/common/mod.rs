#![allow(dead_code)]

pub mod gen;

use cache::{Cache, CacheKey};
use std::collections::BTreeMap;
use std::path::Path;

pub fn key() -> CacheKey {
    CacheKey::generate().expect("random key")
}

/// Every file in `dir`: name -> (length, SipHash of the bytes).
pub fn snapshot(dir: &Path) -> BTreeMap<String, (usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            m.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                (bytes.len(), h.finish()),
            );
        }
    }
    m
}

/// Copies every file of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Parses NDJSON lines and imports them with `import_resources`.
pub fn import_lines(cache: &mut Cache, lines: &[String]) -> cache::ImportSummary {
    let resources: Vec<fhir::Resource> = lines
        .iter()
        .map(|l| fhir::Resource::from_json_str(l).expect("valid test resource"))
        .collect();
    cache.import_resources(resources, |_| {}).expect("import")
}

/// A raw SQLCipher connection to the cache file (for tampering in tests).
pub fn raw_conn(path: &Path, key: &CacheKey) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\"; PRAGMA cipher_page_size = {}; PRAGMA cipher_hmac_algorithm = {};",
        key.to_hex(),
        cache::PAGE_SIZE,
        cache::HMAC_ALGORITHM
    ))
    .unwrap();
    c
}

/// Everything observable about the clinical content, for before/after comparisons.
pub fn fingerprint(cache: &Cache) -> String {
    let page = cache
        .panel(&cache::PanelQuery {
            limit: 1000,
            sort: cache::PanelSort::Id,
            as_of: Some("2026-01-01".into()),
            ..Default::default()
        })
        .unwrap();
    let mut s = format!(
        "{} patients, {} events\n",
        cache.patient_count().unwrap(),
        cache.event_count().unwrap()
    );
    for r in &page.rows {
        s.push_str(&format!("{r:?}\n"));
        let t = cache.timeline(&r.patient_id, &[]).unwrap().unwrap();
        s.push_str(&format!("{t:?}\n"));
    }
    s
}
