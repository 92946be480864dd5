//! `phm-synth`: write a deterministic synthetic FHIR R4 population as Bulk
//! Data NDJSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use synth::{write_ndjson_dir, Generator, SynthConfig, OUTPUT_TYPES};

const USAGE: &str = "usage: phm-synth --patients N --seed S --out DIR [--as-of YYYY-MM-DD] [--providers K] [--threads T (default: all cores)] [--quiet]";

struct Args {
    cfg: SynthConfig,
    out: PathBuf,
    threads: usize,
    quiet: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut patients = None;
    let mut seed = None;
    let mut out = None;
    let mut cfg = SynthConfig::new(0, 0);
    // Output does not depend on the thread count, so use the machine.
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut quiet = false;
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--patients" => {
                patients = Some(
                    value("--patients")?
                        .parse::<u64>()
                        .map_err(|_| "--patients must be a whole number")?,
                )
            }
            "--seed" => {
                seed = Some(
                    value("--seed")?
                        .parse::<u64>()
                        .map_err(|_| "--seed must be a whole number")?,
                )
            }
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--as-of" => {
                cfg.as_of = value("--as-of")?
                    .parse()
                    .map_err(|_| "--as-of must be a date YYYY-MM-DD")?
            }
            "--providers" => {
                cfg.providers = value("--providers")?
                    .parse()
                    .map_err(|_| "--providers must be a whole number")?
            }
            "--threads" => {
                threads = value("--threads")?
                    .parse()
                    .map_err(|_| "--threads must be a whole number")?
            }
            "--quiet" => quiet = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    cfg.patients = patients.ok_or("--patients is required")?;
    cfg.seed = seed.ok_or("--seed is required")?;
    Ok(Args {
        cfg,
        out: out.ok_or("--out is required")?,
        threads: threads.max(1),
        quiet,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("phm-synth: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
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
