// Hides the extra console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

// The local care-gap evaluation allocates many small values; mimalloc makes it markedly
// faster than the system allocator (as in `phm-ecqm` and `phm-edw`).
#[global_allocator]
static GLOBAL: ecqm::allocator::MiMalloc = ecqm::allocator::MiMalloc;

fn main() {
    ecqm::allocator::tune();
    phm_workstation_lib::run();
}
