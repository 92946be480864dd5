//! Quick check of the engine on the official measures: evaluates the population expressions for each case
//! and compares with the expected counts. Usage: cargo run --release --example measures [MEASURE] [-v]
use cql::{datetime::parse_datetime, LibrarySet, Parameters, PatientData, Value};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v");
    let only: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let shared = std::env::var("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let ecqm = shared.join("ecqm");
    let mut names: Vec<String> = std::fs::read_dir(ecqm.join("measures"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    names.sort();
    let mp = Value::interval(
        Value::DateTime(parse_datetime("2025-01-01T00:00:00.000Z", 0).unwrap()),
        Value::DateTime(parse_datetime("2025-12-31T23:59:59.999Z", 0).unwrap()),
        true,
        true,
    );
    let (mut tp, mut tt) = (0, 0);
    let mut total_evals = 0usize;
    let mut total_time = 0f64;
    for m in names {
        if !only.is_empty() && !only.iter().any(|o| m.contains(o.as_str())) {
            continue;
        }
        let bundle: serde_json::Value = serde_json::from_slice(
            &std::fs::read(ecqm.join("measures").join(format!("{m}.json"))).unwrap(),
        )
        .unwrap();
        let set = LibrarySet::from_measure_bundle(&bundle).unwrap();
        let measure = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == "Measure")
            .unwrap();
        let lib_url = measure["library"][0].as_str().unwrap();
        let prepared = match set.prepare(
            lib_url,
            Parameters::new().with("Measurement Period", mp.clone()),
        ) {
            Ok(p) => p,
            Err(e) => {
                println!("{m}: prepare failed: {e}");
                continue;
            }
        };
        // groups -> population code -> expression
        let groups: Vec<Vec<(String, String)>> = measure["group"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                g["population"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["code"]["coding"][0]["code"].as_str().unwrap().to_string(),
                            p["criteria"]["expression"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .collect();
        let mut cases: Vec<_> = std::fs::read_dir(ecqm.join("cases").join(&m))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        cases.sort();
        let (mut pass, mut total) = (0, 0);
        let mut patients = Vec::new();
        for c in &cases {
            let cb: serde_json::Value = serde_json::from_slice(&std::fs::read(c).unwrap()).unwrap();
            patients.push((
                c.file_stem().unwrap().to_string_lossy().to_string(),
                PatientData::from_bundle(&cb).unwrap(),
            ));
        }
        let t0 = std::time::Instant::now();
        for (id, pd) in &patients {
            total += 1;
            let exp: serde_json::Value = serde_json::from_slice(
                &std::fs::read(ecqm.join("expected").join(&m).join(format!("{id}.json"))).unwrap(),
            )
            .unwrap();
            let mut ok = true;
            let mut msgs = Vec::new();
            for (gi, g) in groups.iter().enumerate() {
                let exprs: Vec<&str> = g.iter().map(|(_, e)| e.as_str()).collect();
                match prepared.evaluate(pd, &exprs) {
                    Ok(vals) => {
                        if verbose
                            && only.len() > 1
                            && only.iter().any(|o| id.starts_with(o.as_str()))
                        {
                            for (i, (c, e)) in g.iter().enumerate() {
                                println!("    {c} [{e}] = {}", vals[i].to_json());
                            }
                            let names = prepared.expression_names();
                            let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                            for (n, v) in names
                                .iter()
                                .zip(prepared.evaluate(pd, &refs).unwrap_or_default())
                            {
                                let j = v.to_json().to_string();
                                println!("      {n} = {}", &j[..j.len().min(300)]);
                            }
                        }
                        // proportion rules: denominator etc. only when IP
                        let mut got = std::collections::HashMap::new();
                        let val = |code: &str| {
                            g.iter()
                                .position(|(c, _)| c == code)
                                .map(|i| vals[i].is_true())
                                .unwrap_or(false)
                        };
                        let ip = val("initial-population");
                        let den = ip && val("denominator");
                        let denex = den && val("denominator-exclusion");
                        let num = den && !denex && val("numerator");
                        let denexcep = den && !denex && !num && val("denominator-exception");
                        got.insert("initial-population", ip);
                        got.insert("denominator", den);
                        got.insert("denominator-exclusion", denex);
                        got.insert("numerator", num);
                        got.insert("denominator-exception", denexcep);
                        let pops = &exp["groups"][gi]["populations"];
                        for (k, v) in pops.as_object().unwrap() {
                            let g = got.get(k.as_str()).copied().unwrap_or(false) as i64;
                            if v.as_i64() != Some(g) {
                                ok = false;
                                msgs.push(format!("g{gi} {k}: expected {v} got {g}"));
                            }
                        }
                    }
                    Err(e) => {
                        ok = false;
                        msgs.push(format!("error: {e}"));
                    }
                }
            }
            if ok {
                pass += 1;
            } else if verbose {
                println!("  FAIL {id}: {}", msgs.join("; "));
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        total_evals += patients.len() * groups.len();
        total_time += dt;
        println!(
            "{m}: {pass}/{total}  ({:.0} patient-measure evals/s)",
            (patients.len() * groups.len()) as f64 / dt
        );
        tp += pass;
        tt += total;
    }
    println!(
        "TOTAL {tp}/{tt}; {:.0} evals/s single thread",
        total_evals as f64 / total_time
    );
}
