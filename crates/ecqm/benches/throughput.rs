//! Throughput of the measure layer + cql engine (`harness = false`).
//!
//! ```text
//! cargo bench -p ecqm --bench throughput                       # shared cases
//! PHM_BENCH_NDJSON=/tmp/synth cargo bench -p ecqm --bench throughput   # + phm-synth NDJSON
//! PHM_BENCH_REPLICAS=20 ...   # population = official cases replicated N times (default 10)
//! ```
//! Prints: measure load time; the 515 official cases each with its own
//! measure (patient-measure evaluations/s); then a population (phm-synth
//! NDJSON when given, else the official cases replicated with fresh ids)
//! against all twelve measures on one and on two threads; peak RSS.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ecqm::engine::{patient_data, MeasurePackage, PreparedMeasure};
use ecqm::patients::{PatientItem, PatientRecord, PatientSource, ReadOptions};
use ecqm::EvalOptions;
use rayon::prelude::*;
use serde_json::Value as Json;

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().and_then(|e| e.to_str()) == Some("json"));
    v.sort();
    v
}

/// Evaluates every patient against every measure; returns (evaluations, failures).
fn run_population(
    measures: &[PreparedMeasure],
    patients: &[PatientRecord],
    opts: EvalOptions,
) -> (u64, u64) {
    patients
        .par_iter()
        .map(|rec| {
            let Ok(data) = patient_data(rec.resources.clone()) else {
                return (0, measures.len() as u64);
            };
            let mut ok = 0;
            let mut bad = 0;
            for m in measures {
                match m.evaluate_data(&data, &rec.id, opts) {
                    Ok(_) => ok += 1,
                    Err(_) => bad += 1,
                }
            }
            (ok, bad)
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("thread pool")
        .install(f)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let ecqm_dir = shared_dir().join("ecqm");
    let t = Instant::now();
    let mut measures = Vec::new();
    for f in files(&ecqm_dir.join("measures")) {
        match MeasurePackage::load(&f).and_then(|p| {
            let period = p.default_period()?;
            p.prepare(&period)
        }) {
            Ok(m) => measures.push(m),
            Err(e) => eprintln!("skipping {}: {e}", f.display()),
        }
    }
    println!(
        "loaded and prepared {} measures in {:.2}s",
        measures.len(),
        t.elapsed().as_secs_f64()
    );

    // Official cases, each with its own measure.
    let mut cases: Vec<(usize, PatientRecord)> = Vec::new();
    for (mi, m) in measures.iter().enumerate() {
        for f in files(&ecqm_dir.join("cases").join(&m.def.name)) {
            if let Ok(r) = PatientItem::File(f).load() {
                cases.push((mi, r));
            }
        }
    }
    for threads in [1, 2] {
        let t = Instant::now();
        let (ok, bad) = with_threads(threads, || {
            cases
                .par_iter()
                .map(|(mi, rec)| {
                    match patient_data(rec.resources.clone()).and_then(|d| {
                        measures[*mi].evaluate_data(&d, &rec.id, EvalOptions::default())
                    }) {
                        Ok(_) => (1u64, 0u64),
                        Err(_) => (0, 1),
                    }
                })
                .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        let s = t.elapsed().as_secs_f64();
        println!(
            "official cases, own measure, {threads} thread(s): {} evaluations ({bad} failed) in {s:.3}s = {:.0} patient-measures/s",
            ok + bad,
            (ok + bad) as f64 / s
        );
    }

    // Population against all measures.
    let population: Vec<PatientRecord> = if let Some(dir) = std::env::var_os("PHM_BENCH_NDJSON") {
        let src = PatientSource::open(Path::new(&dir)).expect("PHM_BENCH_NDJSON");
        let mut v = Vec::new();
        src.for_each_batch(&ReadOptions::default(), |batch| {
            v.extend(batch.iter().filter_map(|i| i.load().ok()));
            Ok(())
        })
        .expect("reading NDJSON");
        println!(
            "population: {} phm-synth patients from {}",
            v.len(),
            Path::new(&dir).display()
        );
        v
    } else {
        let replicas: usize = std::env::var("PHM_BENCH_REPLICAS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        let mut v = Vec::new();
        for k in 0..replicas {
            for (_, r) in &cases {
                let mut r = r.clone();
                r.id = format!("{}-r{k}", r.id);
                if let Some(Json::Object(p)) = r.resources.first_mut() {
                    p.insert("id".into(), Json::String(r.id.clone()));
                }
                v.push(r);
            }
        }
        println!(
            "population: official cases replicated {replicas}x = {} patients (set PHM_BENCH_NDJSON for phm-synth data)",
            v.len()
        );
        v
    };
    for single_pass in [false, true] {
        let opts = EvalOptions {
            single_pass,
            ..EvalOptions::default()
        };
        for threads in [1, 2] {
            let t = Instant::now();
            let (ok, bad) = with_threads(threads, || run_population(&measures, &population, opts));
            let s = t.elapsed().as_secs_f64();
            println!(
                "population x {} measures, {threads} thread(s), {}: {} evaluations ({bad} failed) in {s:.2}s = {:.0} patient-measures/s",
                measures.len(),
                if single_pass { "single pass" } else { "staged (IP first)" },
                ok + bad,
                (ok + bad) as f64 / s
            );
        }
    }
    // Per measure, one thread, data conversion excluded: where the time goes.
    let data: Vec<_> = population
        .iter()
        .filter_map(|r| {
            patient_data(r.resources.clone())
                .ok()
                .map(|d| (r.id.clone(), d))
        })
        .collect();
    for m in &measures {
        let t = Instant::now();
        let ok = with_threads(1, || {
            data.par_iter()
                .filter(|(id, d)| m.evaluate_data(d, id, EvalOptions::default()).is_ok())
                .count()
        });
        let s = t.elapsed().as_secs_f64();
        println!(
            "  {:<70} {:>8.0} patients/s ({} ok)",
            m.def.name,
            data.len() as f64 / s,
            ok
        );
    }
    println!("peak RSS: {:.0} MiB", peak_rss_mib());
}
