//! Malformed input never panics; unsupported ELM gives a clear error naming node type, library and locator.

use cql::{LibrarySet, Parameters, PatientData};
use serde_json::json;
use std::path::PathBuf;

fn shared() -> PathBuf {
    std::env::var("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
fn unsupported_node_error_names_type_library_locator() {
    let lib = json!({"library": {
    "identifier": {"id": "T", "version": "1"},
    "statements": {"def": [
        {"name": "X", "context": "Unfiltered", "expression": {"type": "FrobnicateQuux", "locator": "3:5-3:20"}},
        {"name": "Y", "context": "Unfiltered", "expression": {"type": "Add", "operand": [
            {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": "1"},
            {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": "2"}]}}
    ]}}});
    let set = LibrarySet::from_elm_json(&[lib]).unwrap();
    let p = set.prepare("T", Parameters::new()).unwrap();
    let e = p.evaluate_unfiltered("X").unwrap_err().to_string();
    assert!(
        e.contains("FrobnicateQuux") && e.contains("library T") && e.contains("3:5-3:20"),
        "{e}"
    );
    // the rest of the library still works
    assert_eq!(p.evaluate_unfiltered("Y").unwrap().to_json(), json!(3));
    assert!(p.evaluate_unfiltered("Nope").is_err());
}

#[test]
fn malformed_documents_are_errors() {
    assert!(LibrarySet::from_elm_json(&[json!({"nothing": 1})]).is_err());
    assert!(LibrarySet::from_measure_bundle(&json!({"resourceType": "Bundle"})).is_err());
    let bad_b64 = json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Library", "content": [{"contentType": "application/elm+json", "data": "!!!"}]}}]});
    assert!(LibrarySet::from_measure_bundle(&bad_b64).is_err());
    assert!(
        PatientData::from_bundle(&json!({"entry": [{"resource": {"id": "no-type"}}]})).is_err()
    );
    // odd but well-formed ELM: wrong field types everywhere
    let lib = json!({"library": {"identifier": {"id": "W"}, "statements": {"def": [
        {"name": "A", "expression": {"type": "Interval", "low": 5, "high": "x"}},
        {"name": "B", "expression": {"type": "Query", "source": "nope"}},
        {"name": "C", "expression": {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": "99999999999"}},
        {"name": "D", "expression": {"type": "DateTime", "year": {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": "2020"}, "month": {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": "13"}}},
        {"name": "E", "expression": {"type": "FunctionRef", "name": "Missing", "libraryName": "Nowhere"}}
    ]}}});
    match LibrarySet::from_elm_json(&[lib])
        .unwrap()
        .prepare("W", Parameters::new())
    {
        Ok(p) => {
            for n in ["A", "B", "C", "D", "E"] {
                let _ = p.evaluate_unfiltered(n);
            }
            assert!(p.evaluate_unfiltered("D").is_err());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Every expression of two real measures against patients with wrong-typed and missing data.
#[test]
fn garbage_patient_data_does_not_panic() {
    let dir = shared().join("ecqm/measures");
    let weird = vec![
        json!({"resourceType": "Patient", "id": "p", "birthDate": 12, "gender": {"x": 1}, "extension": "no"}),
        json!({"resourceType": "Patient", "id": "p2", "birthDate": "not-a-date"}),
        json!({"resourceType": "Encounter", "id": "e", "status": "finished", "period": "2025", "type": [{"coding": "x"}], "class": 5}),
        json!({"resourceType": "Encounter", "id": "e2", "status": "finished", "period": {"start": "2025-13-45", "end": true},
               "type": [{"coding": [{"system": 1, "code": ["99213"]}]}]}),
        json!({"resourceType": "Observation", "id": "o", "status": "final", "effectiveDateTime": {"a": 1}, "valueQuantity": {"value": "high"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "component": 3}),
        json!({"resourceType": "Condition", "id": "c", "onsetPeriod": [], "clinicalStatus": "active", "code": null}),
        json!({"resourceType": "MedicationRequest", "id": "m", "doNotPerform": "yes", "authoredOn": 2025, "dosageInstruction": [{"timing": {"repeat": {"frequency": "x"}}}]}),
        json!({"resourceType": "Coverage", "id": "cv", "period": {"start": null}}),
    ];
    let patients = vec![
        PatientData::from_resources(vec![]).unwrap(),
        PatientData::from_resources(weird.clone()).unwrap(),
        PatientData::from_resources(weird.into_iter().skip(1).collect()).unwrap(),
    ];
    for m in [
        "ControllingHighBloodPressureFHIR",
        "StatinTherapyforthePreventionandTreatmentofCardiovascularDiseaseFHIR",
    ] {
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{m}.json"))).unwrap()).unwrap();
        let set = LibrarySet::from_measure_bundle(&bundle).unwrap();
        let p = set
            .prepare(
                &format!("https://madie.cms.gov/Library/{m}"),
                Parameters::new(),
            )
            .unwrap();
        let names = p.expression_names();
        for pd in &patients {
            for n in &names {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    p.evaluate(pd, &[n.as_str()])
                }));
                assert!(r.is_ok(), "panic evaluating {m}.{n}");
                if let Ok(Err(e)) = r {
                    // errors never carry patient values
                    assert!(
                        !e.to_string().contains("not-a-date") && !e.to_string().contains("99213"),
                        "{e}"
                    );
                }
            }
        }
    }
}

fn mutate(v: &mut serde_json::Value, kind: u8) {
    match v {
        serde_json::Value::Object(m) => {
            let ty = m
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_string();
            match (kind, ty.as_str()) {
                (0, "Literal") => {
                    m.insert("type".into(), json!("Null"));
                }
                (1, "Literal")
                    if m.get("valueType")
                        .and_then(|t| t.as_str())
                        .is_some_and(|t| t.ends_with("Integer")) =>
                {
                    m.insert("value".into(), json!("2147483647"));
                }
                (2, _) => {
                    if let Some(serde_json::Value::Array(ops)) = m.get_mut("operand") {
                        ops.reverse();
                    }
                }
                _ => {}
            }
            for (_, x) in m.iter_mut() {
                mutate(x, kind);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| mutate(x, kind)),
        _ => {}
    }
}

/// The spec corpus with systematic mutations (nulls everywhere, extreme integers, swapped operands):
/// evaluation may fail, but never panics.
#[test]
fn mutated_spec_expressions_do_not_panic() {
    let dir = shared().join("cql-spec/elm");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let mut elm: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        // one definition per test expression, so that one failure does not hide the others
        let mut defs = Vec::new();
        for d in elm["library"]["statements"]["def"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            for t in d["expression"]["element"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                for x in t["value"]["element"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    if x["name"] == "expression" {
                        defs.push(json!({"name": format!("t{}", defs.len()), "context": "Unfiltered", "expression": x["value"]}));
                    }
                }
            }
        }
        elm["library"]["statements"]["def"] = serde_json::Value::Array(defs);
        for kind in 0..3u8 {
            let mut m = elm.clone();
            mutate(&mut m["library"]["statements"], kind);
            let id = m["library"]["identifier"]["id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let set = LibrarySet::from_elm_json(&[m]).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Ok(p) = set.prepare(&id, Parameters::new()) {
                    for n in p.expression_names() {
                        let _ = p.evaluate_unfiltered(&n);
                    }
                }
            }));
            assert!(r.is_ok(), "panic in {} with mutation {kind}", f.display());
        }
    }
}
