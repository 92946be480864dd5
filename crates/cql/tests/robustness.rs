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
