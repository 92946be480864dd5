//! Ingest only, with the per-phase profile (see `edw::ingest::PHASES`):
//!
//!   cargo run --release -p edw --example ingest_profile -- --patients 20000 [--dir DIR]
//!
//! `--serial` turns off validation on a helper thread; `--chunk N` sets the merge chunk;
//! `--workers N` merges chunks of each file in N sessions (default 1).
//! With `--dir` an existing phm-synth output is used (and kept) instead of generating one.
//! `--citus` loads into an empty warehouse distributed over a coordinator + 2 workers.
mod support;

use std::time::Instant;

#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn main() {
    allocator::tune();
    let args = support::Args::from_env();
    let patients: u64 = args.num("--patients", 20_000);
    let (_pg, _cluster, url) = if args.flag("--citus") {
        let mut cluster = testkit::citus::CitusCluster::start(2).expect("citus");
        let url = cluster.create_db("prof").expect("db");
        (None, Some(cluster), url)
    } else {
        let pg = testkit::pgharness::PgHarness::start().expect("postgres");
        let url = pg.create_db("prof").expect("db");
        (Some(pg), None, url)
    };
    let mut c = edw::connect(&url).expect("connect");
    if _cluster.is_some() {
        edw::migrate::migrate_citus(&mut c).expect("migrate --citus");
    } else {
        edw::migrate::migrate(&mut c).expect("migrate");
    }
    let (dir, keep) = match args.get("--dir") {
        Some(d) => (std::path::PathBuf::from(d), true),
        None => {
            let dir = std::env::temp_dir().join(format!("edw-prof-{}", std::process::id()));
            let g = synth::Generator::new(synth::SynthConfig::new(patients, 1)).expect("synth");
            synth::write_ndjson_dir(&g, &dir, 2, &mut |_| {}).expect("synth write");
            (dir, false)
        }
    };
    let mut opts = edw::ingest::Options::new("synth");
    opts.chunk = args.num("--chunk", opts.chunk);
    opts.pipeline = !args.flag("--serial");
    opts.progress = args.flag("--progress");
    opts.workers = args.num("--workers", 1);
    opts.url = Some(url.clone());
    edw::ingest::reset_profile();
    let t = Instant::now();
    let reps = edw::ingest::ingest(&mut c, std::slice::from_ref(&dir), &opts).expect("ingest");
    let secs = t.elapsed().as_secs_f64();
    let lines: i64 = reps.iter().map(|r| r.lines).sum();
    let loaded: i64 = reps.iter().map(|r| r.loaded).sum();
    println!(
        "{lines} lines ({loaded} loaded) in {secs:.1} s = {:.0} resources/s",
        loaded as f64 / secs
    );
    for (name, s) in edw::ingest::PHASES.iter().zip(edw::ingest::profile()) {
        println!("  {name:<42} {s:>7.1} s  {:>5.1} %", 100.0 * s / secs);
    }
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
