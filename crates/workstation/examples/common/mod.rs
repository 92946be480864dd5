//! Setup shared by the workstation benchmarks (`care_gaps_bench`, `dashboard_bench`): a
//! generated demo panel of `PATIENTS` (first argument) in a new SQLCipher cache in a temporary
//! folder, opened by a [`Workstation`] whose clock can be moved.

#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cache::{Cache, CacheKey};
use workstation::{Config, Workstation};

/// The demo panel, its cache and the workstation over it.
pub struct Bench {
    pub patients: u64,
    /// Kept for the benchmark's life: the cache lives in it.
    pub dir: tempfile::TempDir,
    pub key: CacheKey,
    pub config: Config,
    pub ws: Workstation,
}

impl Bench {
    /// The number of patients from the first argument (default `default`), the demo panel
    /// generated into a new cache (timed and printed).
    pub fn from_args(default: u64) -> Bench {
        let patients: u64 = std::env::args()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::generate().unwrap();
        let cache = Cache::open(dir.path().join("cache.db"), &key).unwrap();
        let mut config = Config::new(dir.path());
        config.demo = true;
        config.demo_patients = patients;
        let t = Instant::now();
        let now = Arc::new(AtomicI64::new(access::time::now_unix_ms()));
        let ws = Workstation::with_cache(
            cache,
            &config,
            &|_| {},
            Box::new(move || now.load(Ordering::SeqCst)),
        )
        .unwrap();
        println!(
            "demo panel of {patients}: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Bench {
            patients,
            dir,
            key,
            config,
            ws,
        }
    }

    /// A second connection to the same cache (as the app's other threads would open it).
    pub fn open_cache(&self) -> Cache {
        Cache::open(self.dir.path().join("cache.db"), &self.key).unwrap()
    }
}

/// The 95th percentile (nearest rank below) of `v`; NaN when empty.
pub fn p95(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

/// The median of `v`; NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
