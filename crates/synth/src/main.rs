//! `phm-synth`: write a deterministic synthetic FHIR R4 population as Bulk
//! Data NDJSON.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use synth::{write_ndjson_dir, Generator, SynthConfig, OUTPUT_TYPES};

/// Write a deterministic synthetic FHIR R4 population as Bulk Data NDJSON
/// (one `<Type>.ndjson` file per resource type).
#[derive(Parser)]
#[command(name = "phm-synth", args_override_self = true)]
struct Cli {
    /// Number of patients.
    #[arg(long, value_name = "N")]
    patients: u64,
    /// Random seed (same seed, same population).
    #[arg(long, value_name = "S")]
    seed: u64,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Reference date of the population (default: the generator's).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    as_of: Option<fhir::Date>,
    /// Providers per clinic organisation (default: the generator's).
    #[arg(long, value_name = "K")]
    providers: Option<u32>,
    /// Worker threads (default: all cores; the output does not depend on it).
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// No progress or summary on stderr.
    #[arg(long)]
    quiet: bool,
}

fn parse_date(s: &str) -> Result<fhir::Date, String> {
    s.parse()
        .map_err(|_| "must be a date YYYY-MM-DD".to_string())
}

struct Args {
    cfg: SynthConfig,
    out: PathBuf,
    threads: usize,
    quiet: bool,
}

impl From<Cli> for Args {
    fn from(cli: Cli) -> Args {
        let mut cfg = SynthConfig::new(cli.patients, cli.seed);
        if let Some(as_of) = cli.as_of {
            cfg.as_of = as_of;
        }
        if let Some(providers) = cli.providers {
            cfg.providers = providers;
        }
        // Output does not depend on the thread count, so use the machine.
        let threads = cli
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Args {
            cfg,
            out: cli.out,
            threads: threads.max(1),
            quiet: cli.quiet,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::from(Cli::parse());
    let g = match Generator::new(args.cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("phm-synth: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let total = args.cfg.patients.max(1);
    let mut last_pct = 0;
    let quiet = args.quiet;
    let mut progress = |done: u64| {
        let pct = done * 100 / total;
        if !quiet && pct >= last_pct + 10 {
            last_pct = pct - pct % 10;
            eprintln!("phm-synth: {pct}% ({done} patients)");
        }
    };
    match write_ndjson_dir(&g, &args.out, args.threads, &mut progress) {
        Ok(stats) => {
            let secs = started.elapsed().as_secs_f64();
            if !quiet {
                for (t, n) in OUTPUT_TYPES.iter().zip(stats.resources) {
                    eprintln!("  {t:<18} {n}");
                }
                eprintln!(
                    "phm-synth: {} patients, {} resources, {:.1} MB in {:.2} s ({:.0} patients/s)",
                    stats.patients,
                    stats.total_resources(),
                    stats.bytes as f64 / 1e6,
                    secs,
                    stats.patients as f64 / secs.max(1e-9)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("phm-synth: writing {}: {e}", args.out.display());
            ExitCode::FAILURE
        }
    }
}
