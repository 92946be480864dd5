// Hides the extra console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use phm_workstation_lib::cli::{self, Command};

// The local care-gap evaluation allocates many small values; mimalloc makes it markedly
// faster than the system allocator (as in `phm-ecqm` and `phm-edw`).
#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn main() {
    // The command line first: `--version` and `--help` need no window and no display.
    let options = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Print(text)) => {
            print!("{text}");
            return;
        }
        Err(message) => {
            eprintln!("phm-workstation: {message}");
            std::process::exit(2);
        }
    };
    allocator::tune();
    phm_workstation_lib::run(options);
}
