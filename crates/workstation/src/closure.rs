//! Gap-closure evidence as a FHIR R4 resource of the type the measure's ELM retrieves, with the
//! provenance of the information (patient-reported or an outside record) as a `meta.tag`.
//! Which element holds the patient, the code and the date is FHIR's, per resource type.

use serde_json::{json, Map, Value as Json};

use crate::worklist::ClosureEvidence;
use crate::WsError;

/// The code system of the provenance tag on resources recorded in the app.
pub const PROVENANCE_SYSTEM: &str =
    "https://phm-workstation.example/fhir/CodeSystem/information-source";

/// FHIR R4 observation-category codes.
pub const OBSERVATION_CATEGORIES: [&str; 9] = [
    "laboratory",
    "imaging",
    "vital-signs",
    "survey",
    "exam",
    "procedure",
    "social-history",
    "therapy",
    "activity",
];

/// `(patient element, date element, status)` per resource type the app can record.
fn shape(resource_type: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match resource_type {
        "Observation" => ("subject", "effectiveDateTime", "final"),
        "Procedure" => ("subject", "performedDateTime", "completed"),
        "DiagnosticReport" => ("subject", "effectiveDateTime", "final"),
        "Immunization" => ("patient", "occurrenceDateTime", "completed"),
        "Encounter" => ("subject", "period", "finished"),
        "Condition" => ("subject", "onsetDateTime", ""),
        "MedicationRequest" => ("subject", "authoredOn", "active"),
        "ServiceRequest" => ("subject", "authoredOn", "completed"),
        "MedicationDispense" => ("subject", "whenHandedOver", "completed"),
        _ => return None,
    })
}

/// The resource recording `e` for `patient_id` (id `id`).
pub fn resource(
    resource_type: &str,
    id: &str,
    patient_id: &str,
    e: &ClosureEvidence,
) -> Result<Json, WsError> {
    let (patient_element, date_element, status) = shape(resource_type).ok_or_else(|| {
        WsError::invalid(format!(
            "Evidence of this kind ({resource_type}) cannot be recorded in the app yet."
        ))
    })?;
    let mut coding = Map::new();
    coding.insert("system".into(), json!(e.system));
    coding.insert("code".into(), json!(e.code));
    if let Some(d) = &e.display {
        coding.insert("display".into(), json!(d));
    }
    let concept = json!({"coding": [coding]});
    let mut r = Map::new();
    r.insert("resourceType".into(), json!(resource_type));
    r.insert("id".into(), json!(id));
    r.insert(
        "meta".into(),
        json!({"tag": [{"system": PROVENANCE_SYSTEM, "code": e.source}]}),
    );
    if !status.is_empty() {
        r.insert("status".into(), json!(status));
    }
    let code_element = match resource_type {
        "Immunization" => "vaccineCode",
        "MedicationRequest" | "MedicationDispense" => "medicationCodeableConcept",
        "Encounter" => "type",
        _ => "code",
    };
    let code_value = if resource_type == "Encounter" {
        json!([concept])
    } else {
        concept
    };
    r.insert(code_element.into(), code_value);
    r.insert(
        patient_element.into(),
        json!({"reference": format!("Patient/{patient_id}")}),
    );
    let date_value = if date_element == "period" {
        json!({"start": e.date, "end": e.date})
    } else {
        json!(e.date)
    };
    r.insert(date_element.into(), date_value);
    match resource_type {
        "Condition" => {
            r.insert(
                "clinicalStatus".into(),
                json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}),
            );
            r.insert(
                "verificationStatus".into(),
                json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]}),
            );
            r.insert("recordedDate".into(), json!(e.date));
        }
        "MedicationRequest" | "ServiceRequest" => {
            r.insert("intent".into(), json!("order"));
        }
        "Encounter" => {
            r.insert(
                "class".into(),
                json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}),
            );
        }
        _ => {}
    }
    if let Some(c) = e.category.as_deref().filter(|c| !c.is_empty()) {
        if resource_type != "Observation" || !OBSERVATION_CATEGORIES.contains(&c) {
            return Err(WsError::invalid(
                "Choose the kind of observation from the list.",
            ));
        }
        r.insert(
            "category".into(),
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": c}]}]),
        );
    }
    if let Some(v) = e.value {
        if resource_type != "Observation" {
            return Err(WsError::invalid("Only an observation can carry a value."));
        }
        let unit = e.unit.clone().unwrap_or_default();
        let mut q = Map::new();
        q.insert("value".into(), json!(v));
        if !unit.is_empty() {
            q.insert("unit".into(), json!(unit));
            q.insert("system".into(), json!("http://unitsofmeasure.org"));
            q.insert("code".into(), json!(unit));
        }
        r.insert("valueQuantity".into(), Json::Object(q));
    }
    Ok(Json::Object(r))
}
