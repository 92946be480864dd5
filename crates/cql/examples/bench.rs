//! Throughput: every case of every measure, all groups per evaluate call, N rounds on T threads.
//! Usage: cargo run --release --example bench [ROUNDS] [THREADS]
use cql::{datetime::parse_datetime, LibrarySet, Parameters, PatientData, Value};
use std::path::PathBuf;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(20);
    let threads = args.get(1).copied().unwrap_or(2);
    let shared = std::env::var("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let ecqm = shared.join("ecqm");
    let mp = Value::interval(
        Value::DateTime(parse_datetime("2025-01-01T00:00:00.000Z", 0).unwrap()),
        Value::DateTime(parse_datetime("2025-12-31T23:59:59.999Z", 0).unwrap()),
        true,
        true,
    );
    let mut work = Vec::new();
    for e in std::fs::read_dir(ecqm.join("measures")).unwrap() {
        let path = e.unwrap().path();
        let m = path.file_stem().unwrap().to_string_lossy().to_string();
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let measure = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == "Measure")
            .unwrap()
            .clone();
        let t0 = std::time::Instant::now();
        let set = LibrarySet::from_measure_bundle(&bundle).unwrap();
        let prepared = set
            .prepare(
                measure["library"][0].as_str().unwrap(),
                Parameters::new().with("Measurement Period", mp.clone()),
            )
            .unwrap();
        let prep_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let mut exprs: Vec<String> = Vec::new();
        for g in measure["group"].as_array().unwrap() {
            for p in g["population"].as_array().unwrap() {
                let e = p["criteria"]["expression"].as_str().unwrap().to_string();
                if !exprs.contains(&e) {
                    exprs.push(e);
                }
            }
        }
        let mut patients = Vec::new();
        for c in std::fs::read_dir(ecqm.join("cases").join(&m)).unwrap() {
            let cb: serde_json::Value =
                serde_json::from_slice(&std::fs::read(c.unwrap().path()).unwrap()).unwrap();
            patients.push(PatientData::from_bundle(&cb).unwrap());
        }
        println!("{m}: load+prepare {prep_ms:.0} ms");
        work.push((prepared, exprs, patients));
    }
    let total: usize = work.iter().map(|w| w.2.len()).sum::<usize>() * rounds;
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let work = &work;
            s.spawn(move || {
                for r in 0..rounds {
                    if r % threads != t {
                        continue;
                    }
                    for (p, exprs, pats) in work {
                        let refs: Vec<&str> = exprs.iter().map(|s| s.as_str()).collect();
                        for pd in pats {
                            let _ = p.evaluate(pd, &refs);
                        }
                    }
                }
            });
        }
    });
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{total} patient-measure evaluations in {dt:.2} s on {threads} threads: {:.0}/s",
        total as f64 / dt
    );
}
