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

/// The codes in the generated ServiceRequests, DeviceRequests,
/// AllergyIntolerances (statin) and AdverseEvents are in the value sets the
/// measures retrieve them with.
#[test]
fn generated_order_allergy_and_event_codes_are_in_the_measure_value_sets() {
    let vs = expansions();
    let members = |title: &str| -> HashSet<(String, String)> {
        let sets: Vec<_> = vs.values().filter(|(t, _)| t == title).collect();
        assert!(!sets.is_empty(), "no value set {title}");
        sets.iter().flat_map(|(_, m)| m.keys().cloned()).collect()
    };
    let service_request = [
        "Hospice Care Ambulatory",
        "Palliative Care Intervention",
        "Referral for Adult Depression",
        "Referral for Adolescent Depression",
        "Referrals Where Weight Assessment May Occur",
        "Follow Up for Above Normal BMI",
        "Follow Up for Below Normal BMI",
    ]
    .iter()
    .flat_map(|t| members(t))
    .collect::<HashSet<_>>();
    let mut reason_set: HashSet<(String, String)> = members("Overweight or Obese");
    reason_set.extend(members("Underweight"));
    // The depression referral's reason is the CQL's direct code.
    let positive = &codes::DEPRESSION_SCREEN_POSITIVE.codes[0];
    reason_set.insert((positive.system.into(), positive.code.into()));
    let frailty = members("Frailty Device");
    let statin = members("Statin Allergen");
    let muscle = members("Statin Associated Muscle Symptoms");

    let codings = |v: &Value| -> Vec<(String, String)> {
        v["coding"]
            .as_array()
            .unwrap_or_else(|| panic!("no coding in {v}"))
            .iter()
            .map(|c| {
                (
                    c["system"].as_str().unwrap().to_string(),
                    c["code"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let g = synth::Generator::new(synth::SynthConfig::new(1500, 13)).unwrap();
    let mut checked: HashMap<String, usize> = HashMap::new();
    for i in 0..1500 {
        for r in g.patient(i) {
            let fhir::Resource::Other(v) = &r else {
                continue;
            };
            let ty = r.resource_type();
            match ty {
                "ServiceRequest" => {
                    for c in codings(&v["code"]) {
                        assert!(service_request.contains(&c), "ServiceRequest {c:?}");
                    }
                    for reason in v["reasonCode"].as_array().into_iter().flatten() {
                        for c in codings(reason) {
                            assert!(reason_set.contains(&c), "reason {c:?}");
                        }
                    }
                }
                "DeviceRequest" => {
                    for c in codings(&v["codeCodeableConcept"]) {
                        assert!(frailty.contains(&c), "DeviceRequest {c:?}");
                    }
                }
                "AdverseEvent" => {
                    for c in codings(&v["event"]) {
                        assert!(statin.contains(&c), "AdverseEvent {c:?}");
                    }
                }
                "AllergyIntolerance" => {
                    let code = codings(&v["code"]);
                    let reaction = codings(&v["reaction"][0]["manifestation"][0]);
                    // A statin intolerance has a statin-associated muscle symptom;
                    // other allergies are outside the statin value sets.
                    let is_statin = code.iter().any(|c| statin.contains(c));
                    assert_eq!(is_statin, reaction.iter().any(|c| muscle.contains(c)));
                    if !is_statin {
                        continue;
                    }
                }
                _ => continue,
            }
            *checked.entry(ty.to_string()).or_default() += 1;
        }
    }
    for t in [
        "ServiceRequest",
        "DeviceRequest",
        "AdverseEvent",
        "AllergyIntolerance",
    ] {
        assert!(checked.get(t).copied().unwrap_or(0) > 3, "{t}: {checked:?}");
    }
}
