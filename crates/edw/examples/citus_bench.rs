//! The read side on one node and on a Citus cluster, in one run (not a test): a coordinator
//! and W workers on this machine; a phm-synth population loaded, matched, attributed, measured
//! and refreshed on the coordinator while its tables are local (one node), the five quality
//! queries and person reads timed; then `migrate --citus` (timed) and the same timings on the
//! distributed form. Prints a Markdown table with the ratio cluster / one node.
//!
//!   cargo run --release -p edw --example citus_bench -- --patients 20000 [--workers 2] [--runs 5]
mod support;

use std::time::Instant;

#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

/// Median seconds of one read per person over `persons` (after one warm-up pass).
fn person_reads(c: &mut postgres::Client, sql: &str, persons: &[i64]) -> f64 {
    let statement = c.prepare(sql).expect("prepare the person read");
    for p in persons {
        c.query(&statement, &[p]).expect("person read");
    }
    let mut t: Vec<f64> = persons
        .iter()
        .map(|p| {
            let s = Instant::now();
            c.query(&statement, &[p]).expect("person read");
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// (name, median seconds, rows) of the five queries and the person read.
fn timings(
    c: &mut postgres::Client,
    distributed: bool,
    persons: &[i64],
    runs: usize,
) -> Vec<(String, f64, usize)> {
    let mut out: Vec<(String, f64, usize)> = edw::quality::queries(c)
        .expect("queries")
        .into_iter()
        .map(|(name, sql)| {
            let (s, n) = edw::quality::time_query(c, &sql, runs).expect("query");
            (name.to_string(), s, n)
        })
        .collect();
    let read = edw::quality::person_read(distributed);
    out.push((
        format!("one person's read (median of {})", persons.len()),
        person_reads(c, &read, persons),
        0,
    ));
    out
}

fn main() {
    allocator::tune();
    let args = support::Args::from_env();
    let patients: u64 = args.num("--patients", 20_000);
    let workers: usize = args.num("--workers", 2);
    let runs: usize = args.num("--runs", 5);
    let mut cluster = testkit::citus::CitusCluster::start(workers).expect("cluster");
    let url = cluster.create_db("bench").expect("database");
    let mut c = edw::connect(&url).expect("connect");
    edw::migrate::migrate(&mut c).expect("migrate");

    let dir = tempfile::tempdir().expect("temp dir");
    let g = synth::Generator::new(synth::SynthConfig::new(patients, 1)).expect("synth");
    synth::write_ndjson_dir(&g, dir.path(), 2, &mut |_| {}).expect("synth write");
    let mut opts = edw::ingest::Options::new("synth");
    opts.progress = false;
    opts.workers = 2;
    opts.url = Some(url.clone());
    let t = Instant::now();
    edw::ingest::ingest(&mut c, &[dir.path().to_path_buf()], &opts).expect("ingest");
    eprintln!("citus_bench: ingest {:.1} s", t.elapsed().as_secs_f64());
    drop(dir);
    edw::matching::run(&mut c, &edw::matching::Params::default()).expect("match");
    edw::attribute::run(&mut c, Some("2025-12-31")).expect("attribute");
    let pkgs =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ecqm/measures");
    let t = Instant::now();
    edw::measure::run(&mut c, &pkgs, 2025).expect("measure");
    eprintln!("citus_bench: measure {:.1} s", t.elapsed().as_secs_f64());
    edw::etl::run(&mut c).expect("etl");
    c.batch_execute("VACUUM ANALYZE").expect("vacuum");
    let persons: Vec<i64> = c
        .query(
            "SELECT id FROM edw.person ORDER BY md5(id::text) LIMIT 200",
            &[],
        )
        .expect("persons")
        .iter()
        .map(|r| r.get(0))
        .collect();

    let one_node = timings(&mut c, false, &persons, runs);
    let t = Instant::now();
    edw::migrate::migrate_citus(&mut c).expect("migrate --citus");
    let convert_s = t.elapsed().as_secs_f64();
    c.batch_execute("ANALYZE").expect("analyze");
    let cluster_t = timings(&mut c, true, &persons, runs);

    println!(
        "`cargo run --release -p edw --example citus_bench -- --patients {patients} --workers {workers} --runs {runs}`: \
         a coordinator and {workers} workers on this machine (32 shards); `migrate --citus` of the loaded \
         warehouse took {convert_s:.1} s.\n"
    );
    println!("| read | one node (local tables) | cluster | cluster / one node | rows |\n|---|---|---|---|---|");
    for ((name, a, n), (_, b, _)) in one_node.iter().zip(&cluster_t) {
        let rows = if name.starts_with("one person") {
            "–".to_string()
        } else {
            n.to_string()
        };
        println!(
            "| {name} | {:.2} ms | {:.2} ms | ×{:.2} | {rows} |",
            a * 1e3,
            b * 1e3,
            b / a
        );
    }
    drop(cluster);
}
