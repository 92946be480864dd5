//! Every embedded code tied to a value set must be in that value set's
//! expansion in the official measure bundles (shared/ecqm/measures).

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use synth::codes;

fn shared_dir() -> PathBuf {
    match std::env::var_os("PHM_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// OID → (title, {(system, code) → display}).
type Expansions = HashMap<String, (String, HashMap<(String, String), String>)>;

fn expansions() -> Expansions {
    let mut out = Expansions::new();
    let dir = shared_dir().join("ecqm/measures");
    for f in std::fs::read_dir(&dir).expect("shared measure bundles present") {
        let path = f.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bundle: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let r = &entry["resource"];
            if r["resourceType"] != "ValueSet" {
                continue;
            }
            let url = r["url"].as_str().unwrap();
            let oid = url.rsplit('/').next().unwrap().to_string();
            let slot = out.entry(oid).or_insert_with(|| {
                (
                    r["title"].as_str().unwrap_or("").to_string(),
                    HashMap::new(),
                )
            });
            for c in r["expansion"]["contains"].as_array().into_iter().flatten() {
                slot.1.insert(
                    (
                        c["system"].as_str().unwrap().to_string(),
                        c["code"].as_str().unwrap().to_string(),
                    ),
                    c["display"].as_str().unwrap_or("").to_string(),
                );
            }
        }
    }
    out
}

#[test]
fn embedded_codes_are_in_their_value_sets() {
    let vs = expansions();
    assert!(vs.len() > 100, "only {} value sets found", vs.len());
    let mut checked = 0;
    for concept in codes::ALL {
        let Some(oid) = concept.value_set else {
            continue;
        };
        let (title, members) = vs
            .get(oid)
            .unwrap_or_else(|| panic!("value set {oid} not in the bundles"));
        assert_eq!(title, concept.name, "{oid}");
        for c in concept.codes {
            let display = members
                .get(&(c.system.to_string(), c.code.to_string()))
                .unwrap_or_else(|| panic!("{} {} not in {title} ({oid})", c.system, c.code));
            assert_eq!(display, c.display, "{} display", c.code);
            checked += 1;
        }
    }
    assert!(checked >= 60, "{checked}");
}

#[test]
fn codes_without_value_set_are_not_claimed_by_unrelated_exclusions() {
    // Codes outside the value sets must not accidentally fall into an exclusion
    // value set (which would silently drop patients from measures).
    let vs = expansions();
    let exclusions = [
        "Chronic Kidney Disease, Stage 5",
        "End Stage Renal Disease",
        "Bipolar Disorder",
        "Hospice Diagnosis",
        "Palliative Care Diagnosis",
    ];
    let mut excluded = HashSet::new();
    for (title, members) in vs.values() {
        if exclusions.contains(&title.as_str()) {
            excluded.extend(members.keys().cloned());
        }
    }
    for concept in codes::ALL.iter().filter(|c| c.value_set.is_none()) {
        for c in concept.codes {
            assert!(
                !excluded.contains(&(c.system.to_string(), c.code.to_string())),
                "{} is an exclusion code",
                c.code
            );
        }
    }
}
