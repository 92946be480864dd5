//! Test-only fault points, inert unless their environment variables are set. The process
//! tests (`tests/edw_*.rs`) use them to stop `phm-sync` at a named moment and kill it
//! there with SIGKILL, and to skew the assertion clock. No production code path sets them.
//!
//! * `PHM_SYNC_TEST_PAUSE_AT=<point>:<n>`: the n-th time (1-based) `<point>` is passed,
//!   print `phm-sync test: paused at <point>:<n>` on stderr and sleep until killed.
//! * `PHM_SYNC_TEST_CLOCK_SKEW_SECS=<i64>`: added to the clock the client assertion uses.
//! * `PHM_SYNC_TEST_BATCH_BYTES=<n>`: stage downloads in batches of about n bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Pause {
    point: String,
    n: u64,
    seen: AtomicU64,
}

fn pause() -> Option<&'static Pause> {
    static P: OnceLock<Option<Pause>> = OnceLock::new();
    P.get_or_init(|| {
        let v = std::env::var("PHM_SYNC_TEST_PAUSE_AT").ok()?;
        let (point, n) = v.rsplit_once(':')?;
        Some(Pause {
            point: point.to_owned(),
            n: n.parse().ok()?,
            seen: AtomicU64::new(0),
        })
    })
    .as_ref()
}

/// Passes the named point (see the module docs).
pub(crate) fn point(name: &str) {
    if let Some(p) = pause() {
        if p.point == name && p.seen.fetch_add(1, Ordering::SeqCst) + 1 == p.n {
            eprintln!("phm-sync test: paused at {name}:{}", p.n);
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}

/// Seconds added to the assertion clock.
pub(crate) fn clock_skew_secs() -> i64 {
    static S: OnceLock<i64> = OnceLock::new();
    *S.get_or_init(|| {
        std::env::var("PHM_SYNC_TEST_CLOCK_SKEW_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// The staging batch size, `default` unless overridden.
pub(crate) fn batch_bytes(default: usize) -> usize {
    static B: OnceLock<Option<usize>> = OnceLock::new();
    B.get_or_init(|| {
        std::env::var("PHM_SYNC_TEST_BATCH_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
    })
    .unwrap_or(default)
    .max(1)
}
