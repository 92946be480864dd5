//! EDW benchmark (not a test): a throwaway PostgreSQL, a phm-synth population, then
//! timed ingest, matching, attribution and star ETL. Writes a Markdown report.
//!
//!   cargo run --release -p edw --example bench -- --patients 10000 [--out docs/bench-edw.md]
mod support;

use std::time::Instant;

// Parsing and validation allocate many small values (as in phm-edw).
#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn main() {
    allocator::tune();
    let args = support::Args::from_env();
    let patients: u64 = args.num("--patients", 10_000);
    let out = args.get("--out");
    let pg = testkit::pgharness::PgHarness::start().expect("postgres");
    let url = pg.create_db("bench").expect("db");
    let mut c = edw::connect(&url).expect("connect");
    edw::migrate::migrate(&mut c).expect("migrate");
    let base = std::env::temp_dir().join(format!("edw-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    // --slices S: generate and ingest S slices of patients one after the other (each
    // its own files, deleted once loaded), then the Groups, so that 1 M patients never
    // need ~24 GB of NDJSON on disk at once. Slice 0 is kept for the re-ingest check.
    let slices: u64 = args.num("--slices", 1).max(1);
    let g = synth::Generator::new(synth::SynthConfig::new(patients, 1)).expect("synth");
    let mut opts = edw::ingest::Options::new("synth");
    opts.progress = true;
    opts.workers = args.num("--workers", 2);
    opts.url = Some(url.clone());
    let (mut synth_s, mut ingest_s, mut resources, mut loaded) = (0.0, 0.0, 0u64, 0i64);
    let per = patients.div_ceil(slices);
    let is_group = |r: &fhir::Resource| r.resource_type() == "Group";
    for k in 0..slices + usize::from(slices > 1) as u64 {
        let dir = base.join(format!("slice-{k}"));
        let range = (k * per).min(patients)..((k + 1) * per).min(patients);
        let keep = |r: &fhir::Resource| match (slices, k) {
            (1, _) => true,
            (_, 0) => !is_group(r),
            (s, k) if k == s => is_group(r),
            _ => false,
        };
        let t = Instant::now();
        let stats =
            synth::write_ndjson_part(&g, &dir, range, &keep, 2, &mut |_| {}).expect("synth write");
        synth_s += t.elapsed().as_secs_f64();
        resources += stats.total_resources();
        let t = Instant::now();
        let reps = edw::ingest::ingest(&mut c, std::slice::from_ref(&dir), &opts).expect("ingest");
        ingest_s += t.elapsed().as_secs_f64();
        loaded += reps.iter().map(|r| r.loaded).sum::<i64>();
        if k > 0 {
            let _ = std::fs::remove_dir_all(&dir);
        }
        eprintln!(
            "bench: slice {k}: {resources} resources so far, ingest {:.0} resources/s overall",
            loaded as f64 / ingest_s
        );
    }
    eprintln!(
        "bench: ingest {loaded} resources in {ingest_s:.1} s = {:.0} resources/s",
        loaded as f64 / ingest_s
    );
    // Only the load (to time ingest changes at scale without the later steps).
    if args.flag("--ingest-only") {
        return;
    }
    let dir = base.join("slice-0");
    let t = Instant::now();
    let again = edw::ingest::ingest(&mut c, std::slice::from_ref(&dir), &opts).expect("re-ingest");
    assert!(again.iter().all(|r| r.already_loaded));
    let reingest_s = t.elapsed().as_secs_f64();
    eprintln!("bench: re-ingest {reingest_s:.1} s");
    let _ = std::fs::remove_dir_all(&dir);
    // phm-synth emits no CareTeam: group practitioners into teams of 4 so that
    // attribution (and query (b), open gaps by care team) has teams to report.
    let teams_dir = base.join("teams");
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
    let m = edw::matching::run(
        &mut c,
        &edw::matching::Params {
            progress: true,
            ..Default::default()
        },
    )
    .expect("match");
    let match_s = t.elapsed().as_secs_f64();
    eprintln!("bench: match {match_s:.1} s");
    // The nightly maintenance after a load: freshly loaded pages get their hint bits
    // and visibility map here rather than by autovacuum in the middle of later steps.
    let t = Instant::now();
    c.batch_execute("VACUUM ANALYZE")
        .expect("vacuum after load");
    let vacuum_s = t.elapsed().as_secs_f64();
    eprintln!("bench: vacuum analyze after load {vacuum_s:.1} s");
    let t = Instant::now();
    let a = edw::attribute::run(&mut c, Some("2025-12-31")).expect("attribute");
    let attr_s = t.elapsed().as_secs_f64();
    eprintln!("bench: attribute {attr_s:.1} s");
    let t = Instant::now();
    let e = edw::etl::run_with_progress(&mut c, true).expect("etl");
    let etl_s = t.elapsed().as_secs_f64();
    eprintln!("bench: star ETL (first) {etl_s:.1} s");
    let t = Instant::now();
    let e2 = edw::etl::run_with_progress(&mut c, true).expect("etl 2");
    let etl2_s = t.elapsed().as_secs_f64();
    eprintln!("bench: star ETL (no changes) {etl2_s:.1} s");
    // eCQM: the 12 shared packages over every person, then the star picks up the results.
    let pkgs =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ecqm/measures");
    let mopts = edw::measure::Options {
        progress: true,
        ..Default::default()
    };
    let t = Instant::now();
    let mr = edw::measure::run_with(&mut c, &pkgs, 2025, &mopts).expect("measure");
    let measure_s = t.elapsed().as_secs_f64();
    eprintln!("bench: measure {measure_s:.1} s");
    let mprof = edw::measure::profile();
    let t = Instant::now();
    let mr2 = edw::measure::run_with(&mut c, &pkgs, 2025, &mopts).expect("measure again");
    let measure2_s = t.elapsed().as_secs_f64();
    eprintln!("bench: measure again {measure2_s:.1} s");
    // 1 % of source patient records changed (as when matching moves them): the next
    // run re-evaluates only their persons.
    let touched = c
        .execute(
            "UPDATE edw.source_patient SET change_no = nextval('edw.change_seq') WHERE id % 100 = 0",
            &[],
        )
        .unwrap();
    let t = Instant::now();
    let mr3 = edw::measure::run_with(&mut c, &pkgs, 2025, &mopts).expect("measure changed");
    let measure3_s = t.elapsed().as_secs_f64();
    eprintln!("bench: measure after 1 % changed {measure3_s:.1} s");
    let mprof_txt: String = edw::measure::PHASES
        .iter()
        .zip(mprof)
        .map(|(n, s)| format!("{n} {s:.1} s"))
        .collect::<Vec<_>>()
        .join(", ");
    let t = Instant::now();
    let e3 = edw::etl::run_with_progress(&mut c, true).expect("etl 3");
    let etl3_s = t.elapsed().as_secs_f64();
    eprintln!("bench: star ETL after measure {etl3_s:.1} s");
    c.batch_execute("VACUUM ANALYZE").expect("analyze");
    let runs: usize = args.num("--runs", 5);
    let q = edw::quality::measure_all(&mut c, runs).expect("queries");
    let (qrows, plans, size, sizes) = (q.rows, q.plans, q.database_size, q.largest);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let report = format!(
        "# EDW benchmark\n\n\
Command: `cargo run --release -p edw --example bench -- --patients {patients} --slices {slices} --workers {}`\n\n\
Machine: {cpus} cores, PostgreSQL 15 from Debian in a temp dir\n\
(`fsync=off`, unix socket; see `crates/testkit/src/pgharness.rs`; extra settings: `{}`). Synthetic data from `phm-synth` (seed 1).\n\n\
| step | figure |\n|---|---|\n\
| phm-synth | {patients} patients, {resources} resources, {synth_s:.1} s |\n\
| ingest (stage COPY + validate + 3NF merge) | {loaded} resources in {ingest_s:.1} s = **{:.0} resources/s** |\n\
| re-ingest of the same files (no-op) | {reingest_s:.2} s |\n\
| match ({} records, {} candidate pairs) | {match_s:.1} s |\n\
| VACUUM ANALYZE after load and match | {vacuum_s:.1} s |\n\
| attribute ({} attributed) | {attr_s:.1} s |\n\
| star ETL, first run ({} patient versions, {} encounter facts, {} observation facts) | {etl_s:.1} s |\n\
| star ETL, incremental run with no changes | {etl2_s:.2} s ({} rows) |\n\
| measure ({} measures x {} persons, period 2025: {} population rows, {} open gaps, {} errors) | {measure_s:.1} s |\n\
| measure phases (first run) | {mprof_txt} |\n\
| measure again, nothing changed ({} run, {} persons) | {measure2_s:.2} s |\n\
| measure after {touched} source records (1 %) changed ({} run, {} persons) | {measure3_s:.2} s |\n\
| star ETL after measure ({} measure-result facts, {} care-gap facts) | {etl3_s:.1} s |\n\
| database size | {size} |\n\n\
Largest relations:\n\n{sizes}\n\
1 M patients is a benchmark run of the same command (`--patients 1000000`), never a test.\n\n\
## Quality-team queries (`migrations/edw/0008_quality_queries.sql`)\n\n\
Median of {runs} runs after one warm-up, after `VACUUM ANALYZE`, each run fetching all rows.\n\n\
| query | rows | median |\n|---|---|---|\n{qrows}\n## Plans (EXPLAIN, costs off)\n\n{plans}",
        opts.workers,
        std::env::var("PGHARNESS_SETTINGS").unwrap_or_else(|_| "none".into()),
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
        mr2.mode,
        mr2.persons,
        mr3.mode,
        mr3.persons,
        e3.measure_results,
        e3.care_gaps,
    );
    println!("{report}");
    if let Some(o) = out {
        std::fs::write(&o, &report).expect("write report");
    }
    let _ = std::fs::remove_dir_all(&base);
}
