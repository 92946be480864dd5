//! The read side on one node and on a Citus cluster, in one run (not a test): a coordinator
//! and W workers on this machine; a phm-synth population loaded, matched, attributed, measured
//! and refreshed on the coordinator while its tables are local (one node), the five quality
//! queries and person reads timed; then `migrate --citus` (timed) and the same timings on the
//! distributed form. Prints a Markdown table with the ratio cluster / one node.
//!
//!   cargo run --release -p edw --example citus_bench -- --patients 20000 [--workers 2] [--runs 5]
//!
//! With `--writes`: every writer (ingest, match, attribute, measure, ETL, then a second
//! source's copies of 1 % of the patients through the incremental paths) on one node and on a
//! cluster loaded through its distributed writers, side by side.
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
    if persons.is_empty() {
        return out;
    }
    let read = edw::quality::person_read(distributed);
    out.push((
        format!("one person's read (median of {})", persons.len()),
        person_reads(c, &read, persons),
        0,
    ));
    out
}

fn measures() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ecqm/measures")
}

/// The writers, timed: ingest (2 sessions), match, attribute, measure (full), the first ETL,
/// a second source's copies of 1 % of the patients (ingest, match, incremental measure, ETL).
fn write_steps(url: &str, data: &std::path::Path, copies: &std::path::Path) -> Vec<(String, f64)> {
    let mut c = edw::connect(url).expect("connect");
    let mut out = Vec::new();
    let mut time = |name: &str, f: &mut dyn FnMut(&mut postgres::Client)| {
        let t = Instant::now();
        f(&mut c);
        let s = t.elapsed().as_secs_f64();
        eprintln!("citus_bench: {name} {s:.1} s");
        out.push((name.to_string(), s));
    };
    let ingest = |source: &str, dir: &std::path::Path, c: &mut postgres::Client| {
        let mut opts = edw::ingest::Options::new(source);
        opts.progress = false;
        opts.workers = 2;
        opts.url = Some(url.to_string());
        edw::ingest::ingest(c, &[dir.to_path_buf()], &opts).expect("ingest");
    };
    let matching = |c: &mut postgres::Client| {
        edw::matching::run(c, &edw::matching::Params::default()).expect("match");
    };
    time("ingest", &mut |c| ingest("synth", data, c));
    time("match", &mut |c| matching(c));
    time("attribute", &mut |c| {
        edw::attribute::run(c, Some("2025-12-31")).expect("attribute");
    });
    time("measure (full)", &mut |c| {
        edw::measure::run(c, &measures(), 2025).expect("measure");
    });
    time("etl (first run)", &mut |c| {
        edw::etl::run(c).expect("etl");
    });
    time(
        "ingest of a second source (1 % of the patients again)",
        &mut |c| ingest("copies", copies, c),
    );
    time("match (the copies join their persons)", &mut |c| {
        matching(c)
    });
    time("measure (incremental)", &mut |c| {
        let r = edw::measure::run(c, &measures(), 2025).expect("measure");
        assert_eq!(r.mode, "incremental");
    });
    time("etl (incremental)", &mut |c| {
        edw::etl::run(c).expect("etl");
    });
    out
}

/// A second source with copies of every 100th patient (same identifiers, ids of its own) and
/// their encounters.
fn write_copies(data: &std::path::Path, out: &std::path::Path) {
    use std::io::{BufRead, Write};
    std::fs::create_dir_all(out).expect("copies dir");
    let mut ids = std::collections::HashSet::new();
    let mut w = std::io::BufWriter::new(std::fs::File::create(out.join("Patient.ndjson")).unwrap());
    let lines = std::io::BufReader::new(std::fs::File::open(data.join("Patient.ndjson")).unwrap());
    for (i, l) in lines.lines().enumerate() {
        if i % 100 != 0 {
            continue;
        }
        let mut p: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
        let id = p["id"].as_str().unwrap().to_string();
        p["id"] = format!("c-{id}").into();
        p.as_object_mut().unwrap().remove("managingOrganization");
        writeln!(w, "{p}").unwrap();
        ids.insert(format!("Patient/{id}"));
    }
    w.flush().unwrap();
    let mut w =
        std::io::BufWriter::new(std::fs::File::create(out.join("Encounter.ndjson")).unwrap());
    let lines =
        std::io::BufReader::new(std::fs::File::open(data.join("Encounter.ndjson")).unwrap());
    for l in lines.lines() {
        let mut e: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
        let subject = e["subject"]["reference"].as_str().unwrap_or("").to_string();
        if !ids.contains(&subject) {
            continue;
        }
        e["id"] = format!("c-{}", e["id"].as_str().unwrap()).into();
        e["subject"]["reference"] = subject.replace("Patient/", "Patient/c-").into();
        let o = e.as_object_mut().unwrap();
        for k in [
            "serviceProvider",
            "participant",
            "location",
            "diagnosis",
            "reasonReference",
        ] {
            o.remove(k);
        }
        writeln!(w, "{e}").unwrap();
    }
    w.flush().unwrap();
}

/// `--writes`: every writer on one node (a plain PostgreSQL server) and on the cluster, side
/// by side, then the five quality queries on both.
fn writes(patients: u64, workers: usize, runs: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("synth");
    let g = synth::Generator::new(synth::SynthConfig::new(patients, 1)).expect("synth");
    synth::write_ndjson_dir(&g, &data, 2, &mut |_| {}).expect("synth write");
    let copies = dir.path().join("copies");
    write_copies(&data, &copies);

    let single = testkit::pgharness::PgHarness::start().expect("one node");
    let one_url = single.create_db("bench").expect("database");
    edw::migrate::migrate(&mut edw::connect(&one_url).unwrap()).expect("migrate");
    let one = write_steps(&one_url, &data, &copies);
    let mut one_c = edw::connect(&one_url).unwrap();
    one_c.batch_execute("VACUUM ANALYZE").expect("vacuum");
    let one_q = timings(&mut one_c, false, &[], runs);
    drop(one_c);
    drop(single);

    let mut cluster = testkit::citus::CitusCluster::start(workers).expect("cluster");
    let url = cluster.create_db("bench").expect("database");
    edw::migrate::migrate_citus(&mut edw::connect(&url).unwrap()).expect("migrate --citus");
    let dist = write_steps(&url, &data, &copies);
    let mut c = edw::connect(&url).unwrap();
    c.batch_execute("VACUUM ANALYZE").expect("vacuum");
    let dist_q = timings(&mut c, true, &[], runs);

    println!(
        "`cargo run --release -p edw --example citus_bench -- --writes --patients {patients} --workers {workers} --runs {runs}`: \
         one node (Debian's PostgreSQL 15 alone), then a coordinator and {workers} workers on this machine (32 shards).\n"
    );
    println!("| step | one node | cluster | cluster / one node |\n|---|---|---|---|");
    for ((name, a), (_, b)) in one.iter().zip(&dist) {
        println!("| {name} | {a:.1} s | {b:.1} s | ×{:.2} |", b / a);
    }
    for ((name, a, n), (_, b, m)) in one_q.iter().zip(&dist_q) {
        if name.starts_with("one person") {
            continue;
        }
        assert_eq!(n, m, "{name}: rows differ");
        println!(
            "| {name} ({n} rows) | {:.2} ms | {:.2} ms | ×{:.2} |",
            a * 1e3,
            b * 1e3,
            b / a
        );
    }
    drop(cluster);
}

fn main() {
    allocator::tune();
    let args = support::Args::from_env();
    let patients: u64 = args.num("--patients", 20_000);
    let workers: usize = args.num("--workers", 2);
    let runs: usize = args.num("--runs", 5);
    if args.flag("--writes") {
        writes(patients, workers, runs);
        return;
    }
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
