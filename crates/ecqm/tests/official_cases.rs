//! Ratchet over the official eCQM test cases in `shared/ecqm`: every measure
//! over each of its cases with the real cql engine, compared with
//! `expected/` by the scorer's rules. Fails when the number of passing cases
//! falls below `tests/ratchet.txt` (raise it as the engine improves).
//!
//! `PHM_SHARED` overrides the location of `shared/`. Set
//! `PHM_ECQM_RESULTS=path` to keep the results JSONL.

#[path = "support/scoring.rs"]
mod scoring;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ecqm::engine::MeasurePackage;
use ecqm::patients::PatientItem;
use ecqm::EvalOptions;
use rayon::prelude::*;
use scoring::compare;
use serde_json::Value as Json;

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

struct MeasureOutcome {
    name: String,
    passed: usize,
    total: usize,
    lines: Vec<String>,
    mismatches: Vec<String>,
    errors: Vec<String>,
}

fn run_measure(ecqm_dir: &Path, bundle: &Path) -> MeasureOutcome {
    let name = bundle.file_stem().unwrap().to_string_lossy().to_string();
    let cases = json_files(&ecqm_dir.join("cases").join(&name));
    let mut out = MeasureOutcome {
        name: name.clone(),
        passed: 0,
        total: cases.len(),
        lines: vec![],
        mismatches: vec![],
        errors: vec![],
    };
    let prepared = MeasurePackage::load(bundle).and_then(|p| {
        let period = p.default_period()?;
        p.prepare(&period)
    });
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            out.errors.push(format!("load/prepare: {e}"));
            return out;
        }
    };
    let results: Vec<(String, Result<ecqm::PatientResult, String>)> = cases
        .par_iter()
        .map(|case| {
            let cid = case.file_stem().unwrap().to_string_lossy().to_string();
            let r = PatientItem::File(case.clone())
                .load()
                .and_then(|rec| prepared.evaluate(&rec, EvalOptions::default()))
                .map_err(|e| e.to_string());
            (cid, r)
        })
        .collect();
    for (cid, r) in results {
        let exp_path = ecqm_dir
            .join("expected")
            .join(&name)
            .join(format!("{cid}.json"));
        let expected: Json = match std::fs::read(&exp_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(e) => e,
            None => {
                out.errors.push(format!("{cid}: no readable expected file"));
                continue;
            }
        };
        match r {
            Ok(res) => {
                out.lines.push(serde_json::to_string(&res).unwrap());
                match compare(&expected, &res) {
                    Ok(()) => out.passed += 1,
                    Err(m) => out.mismatches.push(format!("{cid}: {m}")),
                }
            }
            Err(e) => out.errors.push(format!("{cid}: {e}")),
        }
    }
    out
}

#[test]
fn official_cases_ratchet() {
    let ecqm_dir = shared_dir().join("ecqm");
    let measures = json_files(&ecqm_dir.join("measures"));
    assert!(
        !measures.is_empty(),
        "no measure bundles under {} (set PHM_SHARED)",
        ecqm_dir.display()
    );
    let t0 = Instant::now();
    // Measures one after the other (each bundle's libraries are large);
    // cases in parallel.
    let outcomes: Vec<MeasureOutcome> =
        measures.iter().map(|m| run_measure(&ecqm_dir, m)).collect();
    let secs = t0.elapsed().as_secs_f64();

    let (mut passed, mut total) = (0, 0);
    println!("\n{:<70} {:>7}", "measure", "passed");
    for o in &outcomes {
        println!("{:<70} {:>3}/{:<3}", o.name, o.passed, o.total);
        passed += o.passed;
        total += o.total;
    }
    println!("{:<70} {:>3}/{:<3}  ({secs:.1}s)", "TOTAL", passed, total);

    // Most frequent engine errors (for the cql engineer).
    let mut errs: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        for e in &o.errors {
            let msg = e.split_once(": ").map(|x| x.1).unwrap_or(e);
            let key: String = msg.chars().take(160).collect();
            *errs.entry(key).or_default() += 1;
        }
    }
    let mut errs: Vec<_> = errs.into_iter().collect();
    errs.sort_by_key(|e| std::cmp::Reverse(e.1));
    if !errs.is_empty() {
        println!("\nerrors by frequency:");
        for (e, n) in errs.iter().take(25) {
            println!("{n:>5}  {e}");
        }
    }
    println!("\nfirst mismatches:");
    for o in &outcomes {
        for m in o.mismatches.iter().take(3) {
            println!("  {}: {m}", o.name);
        }
    }

    let results_path = std::env::var_os("PHM_ECQM_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ecqm-official-{}.jsonl", std::process::id()))
        });
    let all: Vec<&String> = outcomes.iter().flat_map(|o| &o.lines).collect();
    let mut text = String::new();
    for l in all {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&results_path, text).unwrap();
    println!("\nresults: {}", results_path.display());
    let scorer = ecqm_dir.join("score");
    if scorer.exists() {
        if let Ok(o) = std::process::Command::new("python3")
            .arg(&scorer)
            .arg(&results_path)
            .output()
        {
            let s = String::from_utf8_lossy(&o.stdout);
            let last = s.lines().last().unwrap_or("");
            println!("scorer: {last}");
        }
    }
    if std::env::var_os("PHM_ECQM_RESULTS").is_none() {
        let _ = std::fs::remove_file(&results_path);
    }

    let ratchet: usize =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ratchet.txt"))
            .expect("tests/ratchet.txt")
            .trim()
            .parse()
            .expect("ratchet.txt holds a number");
    assert!(
        passed >= ratchet,
        "official cases: {passed} passed, below the ratchet of {ratchet}"
    );
    if passed > ratchet {
        println!("ratchet: {passed} passed > {ratchet} in tests/ratchet.txt; raise it");
    }
}

/// The measurement period is a real parameter: moving it ten years back
/// changes who is in the initial population.
#[test]
fn measurement_period_is_applied() {
    let ecqm_dir = shared_dir().join("ecqm");
    let name = "CervicalCancerScreeningFHIR";
    let pkg = MeasurePackage::load(&ecqm_dir.join(format!("measures/{name}.json"))).unwrap();
    let cases = json_files(&ecqm_dir.join("cases").join(name));
    let ip_count = |start: &str, end: &str| {
        let m = pkg
            .prepare(&ecqm::Period::new(start, end).unwrap())
            .unwrap();
        cases
            .iter()
            .filter(|c| {
                let rec = PatientItem::File(c.to_path_buf()).load().unwrap();
                let r = m.evaluate(&rec, EvalOptions::default()).unwrap();
                r.groups[0]
                    .populations
                    .is(ecqm::PopulationCode::InitialPopulation)
            })
            .count()
    };
    let now = ip_count("2025-01-01", "2025-12-31");
    let then = ip_count("2015-01-01", "2015-12-31");
    assert!(now > 0);
    assert_ne!(now, then, "IP with the 2015 period should differ");
}
