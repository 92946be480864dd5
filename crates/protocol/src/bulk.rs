//! FHIR Bulk Data Access 2.0: the kick-off parameters and the completion manifest.

use serde::{Deserialize, Serialize};

/// The only output format: newline-delimited FHIR JSON.
pub const NDJSON: &str = "application/fhir+ndjson";
/// `Prefer` header of every kick-off request.
pub const PREFER_ASYNC: &str = "respond-async";

/// The completion manifest (200 from the status URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// FHIR instant: the server's time when the export's data was fixed. The next
    /// incremental export passes it as `_since`.
    pub transaction_time: String,
    pub request: String,
    pub requires_access_token: bool,
    #[serde(default)]
    pub output: Vec<ManifestFile>,
    /// Bundles (type transaction) of DELETE entries for resources removed since `_since`.
    #[serde(default)]
    pub deleted: Vec<ManifestFile>,
    /// OperationOutcome NDJSON files.
    #[serde(default)]
    pub error: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// The parameters of a Group export, from a GET query string or a POST `Parameters` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    /// FHIR instant; only resources changed after it (and the full history of
    /// patients who joined the Group after it).
    pub since: Option<String>,
    /// Resource types to include; empty means all.
    pub types: Vec<String>,
    /// `_typeFilter` values, each `Type?search-params`.
    pub type_filters: Vec<String>,
}

impl ExportRequest {
    /// The POST kick-off body: a FHIR Parameters resource.
    pub fn to_parameters(&self) -> serde_json::Value {
        let mut p = vec![serde_json::json!({"name": "_outputFormat", "valueString": NDJSON})];
        if let Some(s) = &self.since {
            p.push(serde_json::json!({"name": "_since", "valueInstant": s}));
        }
        for t in &self.types {
            p.push(serde_json::json!({"name": "_type", "valueString": t}));
        }
        for f in &self.type_filters {
            p.push(serde_json::json!({"name": "_typeFilter", "valueString": f}));
        }
        serde_json::json!({"resourceType": "Parameters", "parameter": p})
    }

    /// Reads a POST kick-off `Parameters` body. Comma-separated `_type` values are split.
    pub fn from_parameters(v: &serde_json::Value) -> Result<ExportRequest, String> {
        if v.get("resourceType").and_then(|x| x.as_str()) != Some("Parameters") {
            return Err("the body must be a FHIR Parameters resource".into());
        }
        let mut r = ExportRequest::default();
        for p in v
            .get("parameter")
            .and_then(|x| x.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let name = p.get("name").and_then(|x| x.as_str()).unwrap_or("");
            let value = ["valueString", "valueInstant", "valueDateTime", "valueCode"]
                .iter()
                .find_map(|k| p.get(*k).and_then(|x| x.as_str()));
            match (name, value) {
                ("_since", Some(s)) => r.since = Some(s.to_string()),
                ("_type", Some(s)) => r.types.extend(
                    s.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from),
                ),
                ("_typeFilter", Some(s)) => r.type_filters.push(s.to_string()),
                ("_outputFormat", Some(s)) => check_output_format(s)?,
                ("_outputFormat" | "_since" | "_type" | "_typeFilter", None) => {
                    return Err(format!("parameter {name} has no value"))
                }
                (other, _) => return Err(format!("parameter {other:?} is not supported")),
            }
        }
        Ok(r)
    }
}

/// `_outputFormat` values the IG says a server must accept for NDJSON.
pub fn check_output_format(s: &str) -> Result<(), String> {
    match s {
        NDJSON | "application/ndjson" | "ndjson" => Ok(()),
        other => Err(format!(
            "_outputFormat {other:?} is not supported (only {NDJSON})"
        )),
    }
}

/// Parses `Retry-After` given in seconds (the form this server sends); an HTTP-date
/// or garbage gives `None`, and the caller uses its own backoff.
pub fn retry_after_secs(v: &str) -> Option<u64> {
    v.trim().parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_round_trip_and_split_types() {
        let r = ExportRequest {
            since: Some("2026-01-02T03:04:05.000Z".into()),
            types: vec!["Patient".into(), "Observation".into()],
            type_filters: vec!["Observation?category=laboratory".into()],
        };
        assert_eq!(
            ExportRequest::from_parameters(&r.to_parameters()).unwrap(),
            r
        );
        let v = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient, Condition"}]});
        assert_eq!(
            ExportRequest::from_parameters(&v).unwrap().types,
            vec!["Patient", "Condition"]
        );
        let bad = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "_outputFormat", "valueString": "text/csv"}]});
        assert!(ExportRequest::from_parameters(&bad).is_err());
        let unknown = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/1"}}]});
        assert!(ExportRequest::from_parameters(&unknown).is_err());
    }

    #[test]
    fn manifest_uses_the_ig_field_names() {
        let m: Manifest = serde_json::from_str(
            r#"{"transactionTime":"2026-01-01T00:00:00Z","request":"x","requiresAccessToken":true,
                "output":[{"type":"Patient","url":"https://s/f/1.ndjson","count":3}],"error":[]}"#,
        )
        .unwrap();
        assert_eq!(m.output[0].resource_type, "Patient");
        assert_eq!(m.output[0].count, Some(3));
        assert!(m.deleted.is_empty());
    }
}
