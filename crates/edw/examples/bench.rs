//! EDW benchmark (not a test): a throwaway PostgreSQL, a phm-synth population, then
//! timed ingest, matching, attribution and star ETL. Writes a Markdown report.
//!
//!   cargo run --release -p edw --example bench -- --patients 10000 [--out docs/bench-edw.md]
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let patients: u64 = get("--patients")
        .map(|v| v.parse().expect("--patients N"))
        .unwrap_or(10_000);
    let out = get("--out");
    let pg = edw::pgharness::PgHarness::start().expect("postgres");
    let url = pg.create_db("bench").expect("db");
    let mut c = edw::connect(&url).expect("connect");
    edw::migrate::migrate(&mut c).expect("migrate");
    let dir = std::env::temp_dir().join(format!("edw-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let g = synth::Generator::new(synth::SynthConfig::new(patients, 1)).expect("synth");
    let stats = synth::write_ndjson_dir(&g, &dir, 2, &mut |_| {}).expect("synth write");
    let synth_s = t.elapsed().as_secs_f64();
    let resources = stats.total_resources();

    let mut opts = edw::ingest::Options::new("synth");
    opts.progress = true;
    let t = Instant::now();
    let reps = edw::ingest::ingest(&mut c, std::slice::from_ref(&dir), &opts).expect("ingest");
    let ingest_s = t.elapsed().as_secs_f64();
    let loaded: i64 = reps.iter().map(|r| r.loaded).sum();
    let t = Instant::now();
    let again = edw::ingest::ingest(&mut c, std::slice::from_ref(&dir), &opts).expect("re-ingest");
    assert!(again.iter().all(|r| r.already_loaded));
    let reingest_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let m = edw::matching::run(&mut c, &edw::matching::Params::default()).expect("match");
    let match_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let a = edw::attribute::run(&mut c, Some("2025-12-31")).expect("attribute");
    let attr_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let e = edw::etl::run(&mut c).expect("etl");
    let etl_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let e2 = edw::etl::run(&mut c).expect("etl 2");
    let etl2_s = t.elapsed().as_secs_f64();
    let size: String = c
        .query_one(
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
            &[],
        )
        .unwrap()
        .get(0);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let report = format!(
        "# EDW benchmark\n\n\
Command: `cargo run --release -p edw --example bench -- --patients {patients}`\n\n\
Machine: {cpus} cores (shared with other builds while measured), PostgreSQL 15 from Debian in a temp dir\n\
(`fsync=off`, unix socket; see `crates/edw/src/pgharness.rs`). Synthetic data from `phm-synth` (seed 1).\n\n\
| step | figure |\n|---|---|\n\
| phm-synth | {patients} patients, {resources} resources, {synth_s:.1} s |\n\
| ingest (stage COPY + validate + 3NF merge) | {loaded} resources in {ingest_s:.1} s = **{:.0} resources/s** |\n\
| re-ingest of the same files (no-op) | {reingest_s:.2} s |\n\
| match ({} records, {} candidate pairs) | {match_s:.1} s |\n\
| attribute ({} attributed) | {attr_s:.1} s |\n\
| star ETL, first run ({} patient versions, {} encounter facts, {} observation facts) | {etl_s:.1} s |\n\
| star ETL, incremental run with no changes | {etl2_s:.2} s ({} rows) |\n\
| database size | {size} |\n\n\
1 M patients is a benchmark run of the same command (`--patients 1000000`), never a test.\n",
        loaded as f64 / ingest_s,
        m.records,
        m.candidate_pairs,
        a.attributed,
        e.patient_versions_added,
        e.encounters,
        e.observations,
        e2.encounters + e2.observations + e2.patient_versions_added,
    );
    println!("{report}");
    if let Some(o) = out {
        std::fs::write(&o, &report).expect("write report");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
