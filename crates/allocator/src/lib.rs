//! The allocator for the binaries that parse and evaluate many small values (`phm-ecqm`,
//! `phm-edw`) and for the benchmarks: each sets `#[global_allocator] static GLOBAL: MiMalloc`
//! and calls [`tune`] first thing in `main`. A crate of its own so that the libraries
//! (`ecqm`, `edw`) neither choose nor export a global allocator.

pub use mimalloc::MiMalloc;

/// mimalloc returns freed pages to the OS after 10 ms by default; every batch then re-faults
/// (and the kernel re-zeroes) the same memory: ≈ 10 % of CPU on phm-synth data. A 1 s delay
/// keeps it for the next batch; peak RSS is unchanged. `MIMALLOC_PURGE_DELAY` still wins.
pub fn tune() {
    extern "C" {
        fn mi_version() -> std::os::raw::c_int;
        fn mi_option_get(option: std::os::raw::c_int) -> std::os::raw::c_long;
        fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
    }
    // `mi_option_purge_delay` in mimalloc 3.x's `mi_option_t` (its default is 10)
    const PURGE_DELAY: std::os::raw::c_int = 16;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: plain option getters/setters of the linked mimalloc; the index is used only for
    // the 3.x layout and only while it holds that option's default value.
    unsafe {
        if (300..400).contains(&mi_version()) && mi_option_get(PURGE_DELAY) == 10 {
            mi_option_set(PURGE_DELAY, 1000);
        }
    }
}
