//! What crosses the wire between a workstation and the EDW, and nothing else: the
//! server knows nothing of the cache's tables, the client nothing of PostgreSQL.
//! Names follow the specifications (SMART App Launch 2.x Backend Services, FHIR Bulk
//! Data Access 2.0), so a field here is the field on the wire.

pub mod actions;
pub mod audit;
pub mod bulk;
pub mod smart;

/// A FHIR OperationOutcome with one issue: the body of every refusal.
pub fn operation_outcome(code: &str, diagnostics: &str) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
    })
}

/// The diagnostics of an OperationOutcome body, if it is one (for error messages).
pub fn outcome_diagnostics(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("resourceType")?.as_str()? != "OperationOutcome" {
        return None;
    }
    let issues = v.get("issue")?.as_array()?;
    let texts: Vec<String> = issues
        .iter()
        .filter_map(|i| {
            i.get("diagnostics")
                .or_else(|| i.get("details").and_then(|d| d.get("text")))
                .and_then(|d| d.as_str())
                .map(str::to_owned)
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}
