//! phm-ecqm side of `bench/compare.sh`: every shared official case with its own
//! measure, period 2025-01-01..2025-12-31, on one thread.
//!
//! ```text
//! cargo run -p ecqm --release --example official_rate -- ../shared/ecqm [REPS]
//! ```
//! Prints JSON lines: load+prepare time, then rates for evaluation of pre-converted
//! patients and for conversion (parsed Bundle -> engine data) + evaluation, each the
//! best of REPS (default 20) passes over all cases, and how many cases agree with the
//! expected population counts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ecqm::engine::{patient_data, MeasurePackage};
use ecqm::patients::{PatientItem, PatientRecord};
use ecqm::{EvalOptions, Period};
use serde_json::Value as Json;

// as in phm-ecqm
#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().and_then(|e| e.to_str()) == Some("json"));
    v.sort();
    v
}

/// group id -> populations, from a result or an expected file
fn groups(j: &Json) -> Vec<(String, Json)> {
    let mut v: Vec<(String, Json)> = j["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            (
                g["id"].as_str().unwrap_or("").to_string(),
                g["populations"].clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("../shared/ecqm"));
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let period = Period::new("2025-01-01", "2025-12-31").expect("period");
    let opts = EvalOptions::default();

    let t = Instant::now();
    let mut measures = Vec::new();
    for f in files(&dir.join("measures")) {
        let m = MeasurePackage::load(&f)
            .and_then(|p| p.prepare(&period))
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        measures.push(m);
    }
    let load_s = t.elapsed().as_secs_f64();

    // (measure index, record, expected)
    let mut cases: Vec<(usize, PatientRecord, Json)> = Vec::new();
    for (mi, m) in measures.iter().enumerate() {
        for f in files(&dir.join("cases").join(&m.def.name)) {
            let rec = PatientItem::File(f.clone()).load().expect("case");
            let exp_path = dir
                .join("expected")
                .join(&m.def.name)
                .join(f.file_name().unwrap());
            let exp: Json =
                serde_json::from_slice(&std::fs::read(exp_path).expect("expected")).expect("json");
            cases.push((mi, rec, exp));
        }
    }
    println!(
        "{{\"engine\":\"phm-ecqm\",\"measures\":{},\"cases\":{},\"load_prepare_s\":{load_s:.3}}}",
        measures.len(),
        cases.len()
    );

    let data: Vec<_> = cases
        .iter()
        .map(|(_, r, _)| patient_data(r.resources.clone()).expect("convert"))
        .collect();
    let mut agree = 0;
    for ((mi, rec, exp), d) in cases.iter().zip(&data) {
        if let Ok(r) = measures[*mi].evaluate_data(d, &rec.id, opts) {
            let got = serde_json::to_value(&r).expect("json");
            if groups(&got) == groups(exp) {
                agree += 1;
            }
        }
    }

    let mut best_eval = f64::MAX;
    let mut best_conv = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        for ((mi, rec, _), d) in cases.iter().zip(&data) {
            let _ = std::hint::black_box(measures[*mi].evaluate_data(d, &rec.id, opts));
        }
        best_eval = best_eval.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for (mi, rec, _) in &cases {
            let d = patient_data(rec.resources.clone()).expect("convert");
            let _ = std::hint::black_box(measures[*mi].evaluate_data(&d, &rec.id, opts));
        }
        best_conv = best_conv.min(t.elapsed().as_secs_f64());
    }
    let n = cases.len() as f64;
    println!(
        "{{\"method\":\"phm-ecqm evaluate (pre-converted)\",\"cases\":{},\"seconds\":{best_eval:.4},\"rate\":{:.0},\"matches_expected\":{agree}}}",
        cases.len(),
        n / best_eval
    );
    println!(
        "{{\"method\":\"phm-ecqm convert+evaluate\",\"cases\":{},\"seconds\":{best_conv:.4},\"rate\":{:.0}}}",
        cases.len(),
        n / best_conv
    );
}
