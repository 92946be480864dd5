//! Engine-error scan: evaluates every expression of every measure on systematic variants of the test
//! cases (date-only timestamps, choice types switched, open periods, missing statuses) and counts
//! evaluation errors by message. Usage: cargo run --release --example variants
use cql::{LibrarySet, Parameters, PatientData};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn walk(v: &mut Json, f: &dyn Fn(&mut serde_json::Map<String, Json>)) {
    match v {
        Json::Object(m) => {
            f(m);
            for (_, x) in m.iter_mut() {
                walk(x, f);
            }
        }
        Json::Array(a) => a.iter_mut().for_each(|x| walk(x, f)),
        _ => {}
    }
}

fn variants(r: &Json) -> Vec<Json> {
    let mut out = Vec::new();
    let mut a = r.clone();
    walk(&mut a, &|m| {
        for (_, v) in m.iter_mut() {
            if let Json::String(s) = v {
                if s.len() > 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' {
                    *s = s[..10].to_string();
                }
            }
        }
    });
    out.push(a);
    let mut b = r.clone();
    walk(&mut b, &|m| {
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            if let Some(base) = k.strip_suffix("DateTime") {
                let v = m.remove(&k).unwrap();
                m.insert(
                    format!("{base}Period"),
                    serde_json::json!({"start": v.clone(), "end": v}),
                );
            } else if let Some(base) = k.strip_suffix("Period") {
                if base.is_empty() {
                    continue;
                }
                let v = m.remove(&k).unwrap();
                if let Some(s) = v.get("start") {
                    m.insert(format!("{base}DateTime"), s.clone());
                }
            }
        }
    });
    out.push(b);
    let mut c = r.clone();
    walk(&mut c, &|m| {
        m.remove("end");
        m.remove("status");
    });
    out.push(c);
    out
}

fn main() {
    let shared = std::env::var("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let ecqm = shared.join("ecqm");
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut evals = 0;
    for e in std::fs::read_dir(ecqm.join("measures")).unwrap() {
        let path = e.unwrap().path();
        let m = path.file_stem().unwrap().to_string_lossy().to_string();
        let bundle: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let p = LibrarySet::from_measure_bundle(&bundle)
            .unwrap()
            .prepare(&m, Parameters::new())
            .unwrap();
        let names = p.expression_names();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        for c in std::fs::read_dir(ecqm.join("cases").join(&m)).unwrap() {
            let cb: Json =
                serde_json::from_slice(&std::fs::read(c.unwrap().path()).unwrap()).unwrap();
            for v in variants(&cb) {
                let Ok(pd) = PatientData::from_bundle(&v) else {
                    continue;
                };
                for n in &refs {
                    evals += 1;
                    if let Err(e) = p.evaluate(&pd, &[n]) {
                        *errors.entry(format!("{m}: {n}: {e}")).or_default() += 1;
                    }
                }
            }
        }
    }
    println!(
        "{evals} expression evaluations, {} distinct errors",
        errors.len()
    );
    for (e, n) in errors {
        println!("{n:6}  {}", &e[..e.len().min(300)]);
    }
}
