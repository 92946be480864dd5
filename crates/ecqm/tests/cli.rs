//! End-to-end runs of the `phm-ecqm` binary on shared cases: bundle-file
//! input, the same patients as NDJSON, and each report kind.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

const MEASURE: &str = "CervicalCancerScreeningFHIR";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ecqm-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phm-ecqm"))
        .args(args)
        .output()
        .expect("run phm-ecqm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn lines(p: &Path) -> Vec<Json> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes the cases of MEASURE as phm-synth style NDJSON (one file per type).
fn cases_as_ndjson(cases: &Path, out: &Path) -> usize {
    let mut files: std::collections::BTreeMap<String, String> = Default::default();
    let mut n = 0;
    for e in std::fs::read_dir(cases).unwrap().flatten() {
        let b: Json = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        let entries = b["entry"].as_array().unwrap();
        let pid = entries[0]["resource"]["id"].as_str().unwrap().to_string();
        n += 1;
        for en in entries {
            let mut r = en["resource"].clone();
            let rt = r["resourceType"].as_str().unwrap().to_string();
            // NDJSON grouping relies on references: point them at this patient
            // (the shared cases have a few dangling subject references).
            for k in ["subject", "patient", "beneficiary"] {
                if r.get(k).is_some() {
                    r[k] = serde_json::json!({"reference": format!("Patient/{pid}")});
                }
            }
            let f = files.entry(rt).or_default();
            f.push_str(&r.to_string());
            f.push('\n');
        }
    }
    for (rt, text) in files {
        std::fs::write(out.join(format!("{rt}.ndjson")), text).unwrap();
    }
    n
}

#[test]
fn eval_bundles_and_ndjson_agree_with_expected() {
    let ecqm = shared_dir().join("ecqm");
    let measure = ecqm.join(format!("measures/{MEASURE}.json"));
    let cases = ecqm.join(format!("cases/{MEASURE}"));
    let d = tmp("eval");
    let results = d.join("results.jsonl");
    let summary = d.join("summary.json");
    let (code, err) = run(&[
        "eval",
        "--measure",
        measure.to_str().unwrap(),
        "--patients",
        cases.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
        "--report",
        "summary",
        "--report-out",
        summary.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("patient-measure evaluations"),
        "progress/summary on stderr: {err}"
    );
    let got = lines(&results);
    let n_cases = std::fs::read_dir(&cases).unwrap().count();
    assert_eq!(got.len(), n_cases);
    let mut passed = 0;
    for r in &got {
        assert_eq!(r["measure"], MEASURE);
        let exp: Json = serde_json::from_slice(
            &std::fs::read(ecqm.join(format!(
                "expected/{MEASURE}/{}.json",
                r["case"].as_str().unwrap()
            )))
            .unwrap(),
        )
        .unwrap();
        if exp["groups"][0]["populations"] == r["groups"][0]["populations"] {
            passed += 1;
        }
    }
    assert_eq!(passed, n_cases, "every {MEASURE} case matches");

    // Summary counts equal the sum of the results.
    let s: Json = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let rep = &s["entry"][0]["resource"];
    assert_eq!(rep["type"], "summary");
    let ip: u64 = got
        .iter()
        .map(|r| {
            r["groups"][0]["populations"]["initial-population"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(rep["group"][0]["population"][0]["count"], ip);

    // The same patients as NDJSON give the same results (in id order).
    let nd = d.join("ndjson");
    std::fs::create_dir_all(&nd).unwrap();
    assert_eq!(cases_as_ndjson(&cases, &nd), n_cases);
    let results2 = d.join("results2.jsonl");
    let (code, err) = run(&[
        "eval",
        "--measure",
        measure.to_str().unwrap(),
        "--patients",
        nd.to_str().unwrap(),
        "--out",
        results2.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut a: Vec<String> = got.iter().map(|v| v.to_string()).collect();
    let mut b: Vec<String> = lines(&results2).iter().map(|v| v.to_string()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // Individual reports and gaps.
    for kind in ["individual", "gaps", "subject-list", "worklist"] {
        let rep = d.join(format!("{kind}.out"));
        let (code, err) = run(&[
            "eval",
            "--measure",
            measure.to_str().unwrap(),
            "--patients",
            cases.to_str().unwrap(),
            "--out",
            d.join("r.jsonl").to_str().unwrap(),
            "--report",
            kind,
            "--report-out",
            rep.to_str().unwrap(),
            "--period-start",
            "2025-01-01",
            "--period-end",
            "2025-12-31",
            "--as-of",
            "2026-02-01",
            "--improvement-notation",
            "decrease",
            "--improvement-notation",
            &format!("{MEASURE}=increase"),
            "--quiet",
        ]);
        assert_eq!(code, 0, "{kind}: {err}");
        match kind {
            "individual" => {
                let reps = lines(&rep);
                assert_eq!(reps.len(), n_cases);
                assert!(reps.iter().all(|r| r["type"] == "individual"));
            }
            "gaps" => {
                let bundles = lines(&rep);
                assert!(!bundles.is_empty());
                for b in &bundles {
                    assert_eq!(b["type"], "document");
                    assert_eq!(b["entry"][0]["resource"]["resourceType"], "Composition");
                }
                let statuses: Vec<String> = bundles
                    .iter()
                    .flat_map(|b| b["entry"].as_array().unwrap().clone())
                    .filter(|e| e["resource"]["resourceType"] == "DetectedIssue")
                    .map(|e| {
                        e["resource"]["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]
                            ["code"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                assert!(statuses.iter().any(|s| s == "open-gap"));
                assert!(statuses.iter().any(|s| s == "closed-gap"));
            }
            "worklist" => {
                let rows = lines(&rep);
                assert!(rows.iter().any(|r| r["status"] == "open-gap"));
                assert!(rows
                    .iter()
                    .all(|r| r["reason"].is_string() && r["measure"] == MEASURE));
            }
            _ => {
                let s: Json = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
                assert_eq!(s["entry"][0]["resource"]["type"], "subject-list");
            }
        }
    }
}

#[test]
fn clear_errors_for_bad_input() {
    let d = tmp("bad");
    let bad = d.join("bad.json");
    std::fs::write(&bad, "{\"resourceType\":\"Bundle\",\"entry\":[]}").unwrap();
    let (code, err) = run(&[
        "eval",
        "--measure",
        bad.to_str().unwrap(),
        "--patients",
        d.to_str().unwrap(),
        "--out",
        d.join("o.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no Measure"), "{err}");
    // One unreadable patient among good ones: exit 3, the others written,
    // the error names the file, not its content.
    let ecqm = shared_dir().join("ecqm");
    let cases = d.join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    for e in std::fs::read_dir(ecqm.join(format!("cases/{MEASURE}")))
        .unwrap()
        .flatten()
        .take(2)
    {
        std::fs::copy(e.path(), cases.join(e.file_name())).unwrap();
    }
    std::fs::write(cases.join("zz-broken.json"), "{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Encounter\",\"id\":\"SECRET\"}}]}").unwrap();
    let out = d.join("partial.jsonl");
    let (code, err) = run(&[
        "eval",
        "--measure",
        ecqm.join(format!("measures/{MEASURE}.json"))
            .to_str()
            .unwrap(),
        "--patients",
        cases.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("zz-broken.json") && err.contains("no Patient"),
        "{err}"
    );
    assert!(!err.contains("SECRET"), "{err}");
    assert_eq!(lines(&out).len(), 2);

    let (code, err) = run(&["eval", "--measure"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: a value is required for '--measure"),
        "{err}"
    );
    let (code, err) = run(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
}

#[test]
fn help_for_every_subcommand() {
    for (args, shows) in [
        (&["--help"][..], "eval"),
        (&["-h"][..], "compact"),
        (&["eval", "--help"][..], "--improvement-notation"),
        (&["eval", "-h"][..], "--program-year"),
        (&["compact", "--help"][..], "--measure"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_phm-ecqm"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: phm-ecqm"), "{args:?}: {text}");
        assert!(text.contains(shows), "{args:?}: {text}");
    }
}

#[test]
fn bad_arguments_exit_2_in_clap_style() {
    for (args, says) in [
        (&[][..], "Usage: phm-ecqm <COMMAND>"),
        (
            &["eval", "--bogus"][..],
            "error: unexpected argument '--bogus'",
        ),
        (
            &["eval", "--measure", "m", "--patients", "p"][..],
            "--out <FILE>",
        ),
        (
            &[
                "eval",
                "--measure",
                "m",
                "--patients",
                "p",
                "--out",
                "o",
                "--report",
                "nope",
            ][..],
            "invalid value 'nope' for '--report <KIND>'",
        ),
        (
            &[
                "eval",
                "--measure",
                "m",
                "--patients",
                "p",
                "--out",
                "o",
                "--threads",
                "x",
            ][..],
            "invalid value 'x' for '--threads <N>'",
        ),
        (
            &[
                "eval",
                "--measure",
                "m",
                "--patients",
                "p",
                "--out",
                "o",
                "--period-start",
                "2025-01-01",
            ][..],
            "error: give both --period-start and --period-end, or neither",
        ),
        (
            &[
                "eval",
                "--measure",
                "m",
                "--patients",
                "p",
                "--out",
                "o",
                "--report",
                "summary",
            ][..],
            "error: --report and --report-out go together",
        ),
        (
            &[
                "eval",
                "--measure",
                "m",
                "--patients",
                "p",
                "--out",
                "o",
                "--tin",
                "1",
            ][..],
            "go with --report qrda3",
        ),
        (&["compact", "--measure", "m"][..], "--out <FILE.json.gz>"),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
