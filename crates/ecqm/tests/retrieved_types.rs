//! The FHIR resource types a measure retrieves, read from the packages' ELM in `shared/ecqm`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ecqm::engine::MeasurePackage;

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn set(types: &[&str]) -> BTreeSet<String> {
    types.iter().map(|t| t.to_string()).collect()
}

#[test]
fn measures_retrieve_plain_fhir_types() {
    let dir = shared_dir().join("ecqm/measures");
    if !dir.is_dir() {
        eprintln!("skipping: {} not found", dir.display());
        return;
    }
    let packages = MeasurePackage::load_all(&dir).unwrap();
    assert_eq!(packages.len(), 12);
    let mut all = BTreeSet::new();
    for p in &packages {
        let types = p.retrieved_types().unwrap();
        assert!(
            types.iter().all(|t| !t.is_empty()
                && t.starts_with(|c: char| c.is_ascii_uppercase())
                && t.chars().all(|c| c.is_ascii_alphanumeric())),
            "{}: {types:?}",
            p.def.name
        );
        assert!(
            types.contains("Patient") && types.contains("Encounter"),
            "{}",
            p.def.name
        );
        all.extend(types);
    }
    assert_eq!(
        all,
        set(&[
            "AdverseEvent",
            "AllergyIntolerance",
            "Condition",
            "Coverage",
            "DeviceRequest",
            "Encounter",
            "Location",
            "Medication",
            "MedicationRequest",
            "Observation",
            "Patient",
            "Procedure",
            "ServiceRequest",
        ])
    );

    let by_name = |n: &str| packages.iter().find(|p| p.def.name == n).unwrap();
    let cbp = by_name("ControllingHighBloodPressureFHIR");
    assert_eq!(
        cbp.retrieved_types().unwrap(),
        set(&[
            "Condition",
            "Coverage",
            "DeviceRequest",
            "Encounter",
            "MedicationRequest",
            "Observation",
            "Patient",
            "Procedure",
            "ServiceRequest",
        ])
    );
    // Location and Medication come only from Kidney Health Evaluation's libraries
    let ked = by_name("KidneyHealthEvaluationFHIR")
        .retrieved_types()
        .unwrap();
    assert!(ked.contains("Location") && ked.contains("Medication"));
    let statin = by_name("StatinTherapyforthePreventionandTreatmentofCardiovascularDiseaseFHIR")
        .retrieved_types()
        .unwrap();
    assert!(statin.contains("AdverseEvent") && statin.contains("AllergyIntolerance"));

    // the prepared measure reports the same
    let prepared = cbp.prepare(&cbp.default_period().unwrap()).unwrap();
    assert_eq!(prepared.retrieved_types(), &cbp.retrieved_types().unwrap());
}
