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
//! cluster loaded through its distributed writers, side by side; `--slices S` writes and
//! ingests the population in S slices (1 M patients), `--form one|cluster`, `--save FILE` and
//! `--baseline FILE` run the two sides separately.
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

/// The synthetic population, written in slices (each slice's files ingested, then deleted;
/// the Groups last) so that 1 M patients never need their ~24 GB of NDJSON on disk at once.
struct Population {
    generator: synth::Generator,
    patients: u64,
    slices: u64,
}

impl Population {
    /// Writes slice `k` into `dir`; `None` after the last.
    fn write_slice(&self, k: u64, dir: &std::path::Path) -> Option<()> {
        let slices = self.slices;
        if k >= slices + u64::from(slices > 1) {
            return None;
        }
        let per = self.patients.div_ceil(slices);
        let range = (k * per).min(self.patients)..((k + 1) * per).min(self.patients);
        let is_group = |r: &fhir::Resource| r.resource_type() == "Group";
        let keep = |r: &fhir::Resource| match (slices, k) {
            (1, _) => true,
            (_, 0) => !is_group(r),
            (s, k) if k == s => is_group(r),
            _ => false,
        };
        synth::write_ndjson_part(&self.generator, dir, range, &keep, 2, &mut |_| {})
            .expect("synth write");
        Some(())
    }
}

/// The writers, timed: ingest (2 sessions; the slices' ingest times summed), match,
/// attribute, measure (full), the first ETL, a second source's copies of 1 % of the patients
/// (ingest, match, incremental measure, ETL).
fn write_steps(url: &str, population: &Population) -> Vec<(String, f64)> {
    let mut c = edw::connect(url).expect("connect");
    let mut out = Vec::new();
    let work = tempfile::tempdir().expect("temp dir");
    let copies = work.path().join("copies");
    let ingest = |source: &str, dir: &std::path::Path, c: &mut postgres::Client| {
        let mut opts = edw::ingest::Options::new(source);
        opts.progress = false;
        opts.workers = 2;
        opts.url = Some(url.to_string());
        edw::ingest::ingest(c, &[dir.to_path_buf()], &opts).expect("ingest");
    };
    let mut ingest_s = 0.0;
    for k in 0.. {
        let dir = work.path().join(format!("slice-{k}"));
        if population.write_slice(k, &dir).is_none() {
            break;
        }
        append_copies(&dir, &copies);
        let t = Instant::now();
        ingest("synth", &dir, &mut c);
        ingest_s += t.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&dir).expect("remove the slice");
        eprintln!("citus_bench: slice {k} ingested, {ingest_s:.1} s so far");
    }
    eprintln!("citus_bench: ingest {ingest_s:.1} s");
    out.push(("ingest".to_string(), ingest_s));
    let mut time = |name: &str, f: &mut dyn FnMut(&mut postgres::Client)| {
        let t = Instant::now();
        f(&mut c);
        let s = t.elapsed().as_secs_f64();
        eprintln!("citus_bench: {name} {s:.1} s");
        out.push((name.to_string(), s));
    };
    let matching = |c: &mut postgres::Client| {
        edw::matching::run(c, &edw::matching::Params::default()).expect("match");
    };
    time("match", &mut |c| matching(c));
    time("attribute", &mut |c| {
        edw::attribute::run(c, Some("2025-12-31")).expect("attribute");
    });
    time("measure (full)", &mut |c| {
        edw::measure::run(c, &measures(), 2025).expect("measure");
        for (name, s) in edw::measure::PHASES.iter().zip(edw::measure::profile()) {
            eprintln!("citus_bench:   measure: {name} {s:.1} s");
        }
    });
    time("etl (first run)", &mut |c| {
        edw::etl::run(c).expect("etl");
    });
    time(
        "ingest of a second source (1 % of the patients again)",
        &mut |c| ingest("copies", &copies, c),
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

/// A second source with copies of every 100th patient of a slice (same identifiers, ids of
/// their own) and their encounters, appended to `out`'s files.
fn append_copies(data: &std::path::Path, out: &std::path::Path) {
    use std::io::{BufRead, Write};
    std::fs::create_dir_all(out).expect("copies dir");
    if !data.join("Patient.ndjson").exists() {
        return; // the Groups' slice
    }
    let append = |name: &str| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out.join(name))
            .expect("copies file");
        std::io::BufWriter::new(f)
    };
    let mut ids = std::collections::HashSet::new();
    let mut w = append("Patient.ndjson");
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
    let mut w = append("Encounter.ndjson");
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

/// One form's figures: the writers' steps and the five queries (name, seconds, rows).
#[derive(serde::Serialize, serde::Deserialize)]
struct Half {
    commit: String,
    patients: u64,
    steps: Vec<(String, f64)>,
    queries: Vec<(String, f64, usize)>,
}

/// The writers then the queries on one form: a plain PostgreSQL server (`one`) or a
/// coordinator and `workers` workers.
fn half(form: &str, population: &Population, workers: usize, runs: usize) -> Half {
    let (url, server): (String, Box<dyn std::any::Any>) = if form == "one" {
        let single = testkit::pgharness::PgHarness::start().expect("one node");
        let url = single.create_db("bench").expect("database");
        edw::migrate::migrate(&mut edw::connect(&url).unwrap()).expect("migrate");
        (url, Box::new(single))
    } else {
        let mut cluster = testkit::citus::CitusCluster::start(workers).expect("cluster");
        let url = cluster.create_db("bench").expect("database");
        edw::migrate::migrate_citus(&mut edw::connect(&url).unwrap()).expect("migrate --citus");
        (url, Box::new(cluster))
    };
    let steps = write_steps(&url, population);
    let mut c = edw::connect(&url).unwrap();
    c.batch_execute("VACUUM ANALYZE").expect("vacuum");
    let queries = timings(&mut c, form != "one", &[], runs);
    drop(c);
    drop(server);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Half {
        commit,
        patients: population.patients,
        steps,
        queries,
    }
}

/// `--writes`: every writer on one node (a plain PostgreSQL server) and on the cluster, side
/// by side, then the five quality queries on both. `--form one|cluster` runs one side and
/// `--save FILE` keeps its figures; `--baseline FILE` gives the cluster's run the one-node
/// figures of an earlier run (when both sides do not fit in one sitting).
fn writes(args: &support::Args, patients: u64, workers: usize, runs: usize) {
    let population = Population {
        generator: synth::Generator::new(synth::SynthConfig::new(patients, 1)).expect("synth"),
        patients,
        slices: args.num("--slices", 1u64).max(1),
    };
    let form = args.get("--form").unwrap_or_else(|| "both".into());
    let save = |h: &Half, suffix: &str| {
        if let Some(path) = args.get("--save") {
            let path = format!("{path}{suffix}");
            std::fs::write(&path, serde_json::to_string_pretty(h).unwrap()).expect("save");
            eprintln!("citus_bench: figures saved in {path}");
        }
    };
    let one = match (form.as_str(), args.get("--baseline")) {
        ("one" | "both", _) => {
            let h = half("one", &population, workers, runs);
            save(&h, if form == "both" { ".one" } else { "" });
            Some(h)
        }
        ("cluster", Some(path)) => {
            let text = std::fs::read_to_string(&path).expect("read the baseline");
            Some(serde_json::from_str::<Half>(&text).expect("a saved one-node run"))
        }
        ("cluster", None) => None,
        _ => {
            eprintln!("--form takes one, cluster or both");
            std::process::exit(2)
        }
    };
    if form == "one" {
        return;
    }
    let dist = half("cluster", &population, workers, runs);
    save(&dist, if form == "both" { ".cluster" } else { "" });
    let Some(one) = one else { return };
    assert_eq!(
        one.patients, patients,
        "the baseline is of another population"
    );

    println!(
        "`cargo run --release -p edw --example citus_bench -- --writes --patients {patients} --slices {} --workers {workers} --runs {runs}`: \
         one node (Debian's PostgreSQL 15 alone; commit {}), then a coordinator and {workers} workers on this machine \
         (32 shards; commit {}).\n",
        population.slices, one.commit, dist.commit
    );
    println!("| step | one node | cluster | cluster / one node |\n|---|---|---|---|");
    for ((name, a), (_, b)) in one.steps.iter().zip(&dist.steps) {
        println!("| {name} | {a:.1} s | {b:.1} s | ×{:.2} |", b / a);
    }
    for ((name, a, n), (_, b, m)) in one.queries.iter().zip(&dist.queries) {
        assert_eq!(n, m, "{name}: rows differ");
        println!(
            "| {name} ({n} rows) | {:.2} ms | {:.2} ms | ×{:.2} |",
            a * 1e3,
            b * 1e3,
            b / a
        );
    }
}

fn main() {
    allocator::tune();
    let args = support::Args::from_env();
    let patients: u64 = args.num("--patients", 20_000);
    let workers: usize = args.num("--workers", 2);
    let runs: usize = args.num("--runs", 5);
    if args.flag("--writes") {
        writes(&args, patients, workers, runs);
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
