//! CQL specification conformance: runs every test in shared/cql-spec/elm/*.json and enforces a ratchet on
//! the number of passing tests (tests/spec-ratchet.txt). Set SPEC_VERBOSE=1 to list failures,
//! SPEC_ONLY=<library> to run one library.

use cql::{value::equivalent, LibrarySet, Parameters};
use serde_json::{json, Value as Json};
use std::path::PathBuf;

fn shared() -> PathBuf {
    std::env::var("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// Test ids that the corpus itself marks as flawed (sections "Invalid CQL", "Invalid Translation",
/// "Incorrect Expected Output" of skip-list.txt).
fn flawed_tests(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("skip-list.txt")).unwrap_or_default();
    let mut out = Vec::new();
    let mut on = false;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            on = matches!(
                h.trim(),
                "Invalid CQL (does not translate)"
                    | "Invalid Translation (translates, but translates wrong)"
                    | "Incorrect Expected Output"
            );
            continue;
        }
        if !on || line.trim().is_empty() {
            continue;
        }
        let id = if let Some(rest) = line.strip_prefix('"') {
            rest.split('"').next().unwrap_or("").to_string()
        } else {
            line.split_whitespace().next().unwrap_or("").to_string()
        };
        out.push(id);
    }
    out
}

struct Case {
    id: String,
    expr_def: Option<String>,
    out_def: Option<String>,
    invalid: bool,
}

#[test]
fn spec_conformance() {
    let dir = shared().join("cql-spec");
    let flawed = flawed_tests(&dir);
    let verbose = std::env::var("SPEC_VERBOSE").is_ok();
    let only = std::env::var("SPEC_ONLY").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("elm"))
        .expect("cql-spec/elm")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut tp, mut tf, mut ts) = (0, 0, 0);
    for f in files {
        let libname = f.file_stem().unwrap().to_string_lossy().to_string();
        if only.as_ref().is_some_and(|o| o != &libname) {
            continue;
        }
        let mut elm: Json = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let defs = elm["library"]["statements"]["def"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut new_defs = defs.clone();
        let mut cases = Vec::new();
        let mut n = 0;
        for d in &defs {
            let group = d["name"].as_str().unwrap_or("");
            let Some(elements) = d["expression"]["element"].as_array() else {
                continue;
            };
            if d["expression"]["type"] != "Tuple" {
                continue;
            }
            for t in elements {
                let tname = t["name"].as_str().unwrap_or("");
                let id = format!("{libname}.{group}.{tname}");
                let fields = t["value"]["element"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let get = |k: &str| {
                    fields
                        .iter()
                        .find(|e| e["name"] == k)
                        .map(|e| e["value"].clone())
                };
                let mut case = Case {
                    id: id.clone(),
                    expr_def: None,
                    out_def: None,
                    invalid: false,
                };
                if get("skipped").is_some() || flawed.contains(&id) || get("expression").is_none() {
                    cases.push(case);
                    continue;
                }
                n += 1;
                let en = format!("__expr_{n}");
                new_defs.push(json!({"name": en, "context": "Unfiltered", "accessLevel": "Public", "expression": get("expression").unwrap()}));
                case.expr_def = Some(en);
                if let Some(o) = get("output") {
                    let on = format!("__out_{n}");
                    new_defs.push(json!({"name": on, "context": "Unfiltered", "accessLevel": "Public", "expression": o}));
                    case.out_def = Some(on);
                } else if get("invalid").is_some() {
                    case.invalid = true;
                }
                cases.push(case);
            }
        }
        elm["library"]["statements"]["def"] = Json::Array(new_defs);
        let main = elm["library"]["identifier"]["id"]
            .as_str()
            .unwrap_or(&libname)
            .to_string();
        let set = LibrarySet::from_elm_json(&[elm]).expect("load");
        let prepared = match set.prepare(&main, Parameters::new()) {
            Ok(p) => p,
            Err(e) => panic!("{libname}: prepare failed: {e}"),
        };
        let (mut p, mut fl, mut sk) = (0, 0, 0);
        for c in &cases {
            let Some(en) = &c.expr_def else {
                sk += 1;
                continue;
            };
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                prepared.evaluate_unfiltered(en)
            }));
            let got = match got {
                Ok(r) => r,
                Err(_) => {
                    fl += 1;
                    if verbose {
                        println!("  PANIC {}", c.id);
                    }
                    continue;
                }
            };
            let ok = if c.invalid {
                got.is_err()
            } else if let Some(on) = &c.out_def {
                match (&got, prepared.evaluate_unfiltered(on)) {
                    (Ok(g), Ok(o)) => equivalent(g, &o),
                    _ => false,
                }
            } else {
                got.is_ok()
            };
            if ok {
                p += 1;
            } else {
                fl += 1;
                if verbose {
                    let exp = c.out_def.as_ref().map(|o| {
                        prepared
                            .evaluate_unfiltered(o)
                            .map(|v| v.to_json().to_string())
                            .unwrap_or_else(|e| format!("ERR {e}"))
                    });
                    let g = got
                        .map(|v| v.to_json().to_string())
                        .unwrap_or_else(|e| format!("ERR {e}"));
                    println!(
                        "  FAIL {}: got {} expected {}",
                        c.id,
                        g,
                        exp.unwrap_or_else(|| "an error".into())
                    );
                }
            }
        }
        println!("{libname}: {p} passed, {fl} failed, {sk} skipped");
        tp += p;
        tf += fl;
        ts += sk;
    }
    println!("spec total: {tp} passed, {tf} failed, {ts} skipped");
    if only.is_none() {
        let ratchet: usize = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/spec-ratchet.txt"),
        )
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
        assert!(
            tp >= ratchet,
            "spec conformance regressed: {tp} passing < ratchet {ratchet}"
        );
    }
}
