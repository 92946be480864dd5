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
    // phm-synth emits no CareTeam: group practitioners into teams of 4 so that
    // attribution (and query (b), open gaps by care team) has teams to report.
    let teams_dir = dir.with_extension("teams");
    std::fs::create_dir_all(&teams_dir).expect("teams dir");
    let pracs: Vec<String> = c
        .query(
            "SELECT source_id FROM edw.practitioner WHERE source = 'synth' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let teams: Vec<String> = pracs
        .chunks(4)
        .enumerate()
        .map(|(i, ch)| {
            serde_json::json!({"resourceType": "CareTeam", "id": format!("bench-team-{i}"),
                "name": format!("Team {i}"),
                "participant": ch.iter().map(|p| serde_json::json!({"member": {"reference": format!("Practitioner/{p}")}})).collect::<Vec<_>>()})
            .to_string()
        })
        .collect();
    std::fs::write(teams_dir.join("CareTeam.ndjson"), teams.join("\n") + "\n").expect("teams");
    edw::ingest::ingest(&mut c, std::slice::from_ref(&teams_dir), &opts).expect("teams ingest");
    let _ = std::fs::remove_dir_all(&teams_dir);
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
    // eCQM: the 12 shared packages over every person, then the star picks up the results.
    let pkgs =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ecqm/measures");
    let t = Instant::now();
    let mr = edw::measure::run(&mut c, &pkgs, 2025).expect("measure");
    let measure_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let e3 = edw::etl::run(&mut c).expect("etl 3");
    let etl3_s = t.elapsed().as_secs_f64();
    c.batch_execute("VACUUM ANALYZE").expect("analyze");
    let runs: usize = get("--runs")
        .map(|v| v.parse().expect("--runs N"))
        .unwrap_or(5);
    let mut qrows = String::new();
    let mut plans = String::new();
    for (name, sql) in edw::quality::queries(&mut c).expect("queries") {
        let (median, rows) = edw::quality::time_query(&mut c, &sql, runs).expect("query");
        qrows.push_str(&format!("| {name} | {rows} | {:.1} ms |\n", median * 1e3));
        let plan = edw::quality::explain(&mut c, &sql).expect("explain");
        plans.push_str(&format!("### {name}\n\n`{sql}`\n\n```\n{plan}\n```\n\n"));
    }
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
| measure ({} measures x {} persons, period 2025: {} population rows, {} open gaps, {} errors) | {measure_s:.1} s |\n\
| star ETL after measure ({} measure-result facts, {} care-gap facts) | {etl3_s:.1} s |\n\
| database size | {size} |\n\n\
1 M patients is a benchmark run of the same command (`--patients 1000000`), never a test.\n\n\
## Quality-team queries (`migrations/edw/0008_quality_queries.sql`)\n\n\
Median of {runs} runs after one warm-up, after `VACUUM ANALYZE`, each run fetching all rows.\n\n\
| query | rows | median |\n|---|---|---|\n{qrows}\n## Plans (EXPLAIN, costs off)\n\n{plans}",
        loaded as f64 / ingest_s,
        m.records,
        m.candidate_pairs,
        a.attributed,
        e.patient_versions_added,
        e.encounters,
        e.observations,
        e2.encounters + e2.observations + e2.patient_versions_added,
        mr.measures,
        mr.persons,
        mr.results,
        mr.open_gaps,
        mr.errors,
        e3.measure_results,
        e3.care_gaps,
    );
    println!("{report}");
    if let Some(o) = out {
        std::fs::write(&o, &report).expect("write report");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
