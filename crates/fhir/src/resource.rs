//! The `Resource` enum and fast parsing of one JSON resource.

use crate::datatypes::Reference;
use crate::resources::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// Resource types parsed into typed structs; others become [`Resource::Other`].
pub const KNOWN_RESOURCE_TYPES: [&str; 11] = [
    "Patient",
    "Practitioner",
    "Organization",
    "Group",
    "Encounter",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationRequest",
    "Immunization",
    "Coverage",
];

/// A FHIR R4 resource. JSON form carries `resourceType`.
// Unboxed variants keep matching simple for consumers; resources are
// processed one or a few at a time, so the size spread costs little.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Patient(Patient),
    Practitioner(Practitioner),
    Organization(Organization),
    Group(Group),
    Encounter(Encounter),
    Condition(Condition),
    Observation(Observation),
    Procedure(Procedure),
    MedicationRequest(MedicationRequest),
    Immunization(Immunization),
    Coverage(Coverage),
    /// Any other resource type, kept as raw JSON (an object with a string `resourceType`).
    Other(Value),
}

/// Why a resource could not be parsed. Carries positions and categories only,
/// never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Not valid JSON; `column` is 1-based within the record.
    MalformedJson { column: usize },
    /// The JSON ends before the record is complete.
    Truncated,
    /// Valid JSON, but an element has the wrong JSON type for FHIR R4
    /// (e.g. a number where a string is required).
    InvalidElement { column: usize },
    /// The record is JSON but not an object.
    NotAnObject,
    /// The object has no `resourceType`.
    MissingResourceType,
    /// `resourceType` is not a string naming a resource type.
    InvalidResourceType,
    /// A well-formed resource type this parser was asked not to accept.
    UnsupportedResourceType,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::MalformedJson { column } => {
                write!(f, "malformed JSON at column {column}")
            }
            ParseErrorKind::Truncated => f.write_str("truncated record"),
            // Column 0: parsed from an in-memory JSON value, no position known.
            ParseErrorKind::InvalidElement { column: 0 } => {
                f.write_str("element of the wrong type for FHIR R4")
            }
            ParseErrorKind::InvalidElement { column } => {
                write!(
                    f,
                    "element of the wrong type for FHIR R4 at column {column}"
                )
            }
            ParseErrorKind::NotAnObject => f.write_str("record is not a JSON object"),
            ParseErrorKind::MissingResourceType => f.write_str("missing resourceType"),
            ParseErrorKind::InvalidResourceType => f.write_str("invalid resourceType"),
            ParseErrorKind::UnsupportedResourceType => f.write_str("unsupported resourceType"),
        }
    }
}

/// A resource parse error (no line number; see [`crate::NdjsonError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
}

impl From<ParseErrorKind> for ParseError {
    fn from(kind: ParseErrorKind) -> Self {
        ParseError { kind }
    }
}

/// Maps a serde_json error to a category; its message (which may quote
/// values) is dropped on purpose.
pub(crate) fn classify_json_error(e: &serde_json::Error) -> ParseErrorKind {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => ParseErrorKind::Truncated,
        Category::Syntax | Category::Io => ParseErrorKind::MalformedJson { column: e.column() },
        Category::Data => ParseErrorKind::InvalidElement { column: e.column() },
    }
}

impl Resource {
    /// Parses one JSON resource. Known types become typed variants, any other
    /// well-formed type becomes [`Resource::Other`].
    pub fn from_json_str(json: &str) -> Result<Resource, ParseError> {
        Self::parse(json, true)
    }

    /// Like [`Resource::from_json_str`] but rejects types outside
    /// [`KNOWN_RESOURCE_TYPES`] with [`ParseErrorKind::UnsupportedResourceType`].
    pub fn from_json_str_known(json: &str) -> Result<Resource, ParseError> {
        Self::parse(json, false)
    }

    pub(crate) fn parse(json: &str, allow_other: bool) -> Result<Resource, ParseError> {
        match scan_resource_type(json.as_bytes()) {
            Some(ty) => {
                if let Some(r) = Self::parse_typed(ty, json)? {
                    return Ok(r);
                }
                if !crate::is_resource_type_name(ty) {
                    return Err(ParseErrorKind::InvalidResourceType.into());
                }
                if !allow_other {
                    // Still report malformed JSON first: it is the more useful error.
                    serde_json::from_str::<serde::de::IgnoredAny>(json)
                        .map_err(|e| ParseError::from(classify_json_error(&e)))?;
                    return Err(ParseErrorKind::UnsupportedResourceType.into());
                }
                let v: Value = serde_json::from_str(json)
                    .map_err(|e| ParseError::from(classify_json_error(&e)))?;
                Ok(Resource::Other(v))
            }
            // Slow path: let serde_json find the syntax error or the real shape.
            None => {
                let v: Value = serde_json::from_str(json)
                    .map_err(|e| ParseError::from(classify_json_error(&e)))?;
                Self::from_value_inner(v, allow_other)
            }
        }
    }

    fn parse_typed(ty: &str, json: &str) -> Result<Option<Resource>, ParseError> {
        fn p<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, ParseError> {
            serde_json::from_str(json).map_err(|e| ParseError::from(classify_json_error(&e)))
        }
        Ok(Some(match ty {
            "Patient" => Resource::Patient(p(json)?),
            "Practitioner" => Resource::Practitioner(p(json)?),
            "Organization" => Resource::Organization(p(json)?),
            "Group" => Resource::Group(p(json)?),
            "Encounter" => Resource::Encounter(p(json)?),
            "Condition" => Resource::Condition(p(json)?),
            "Observation" => Resource::Observation(p(json)?),
            "Procedure" => Resource::Procedure(p(json)?),
            "MedicationRequest" => Resource::MedicationRequest(p(json)?),
            "Immunization" => Resource::Immunization(p(json)?),
            "Coverage" => Resource::Coverage(p(json)?),
            _ => return Ok(None),
        }))
    }

    /// Converts a JSON value (e.g. a Bundle entry's `resource`).
    pub fn from_value(v: Value) -> Result<Resource, ParseError> {
        Self::from_value_inner(v, true)
    }

    fn from_value_inner(v: Value, allow_other: bool) -> Result<Resource, ParseError> {
        fn t<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ParseError> {
            // serde_json::Value errors have no position.
            serde_json::from_value(v)
                .map_err(|_| ParseError::from(ParseErrorKind::InvalidElement { column: 0 }))
        }
        let obj = v.as_object().ok_or(ParseErrorKind::NotAnObject)?;
        let ty = match obj.get("resourceType") {
            None => return Err(ParseErrorKind::MissingResourceType.into()),
            Some(Value::String(s)) if crate::is_resource_type_name(s) => s.as_str(),
            Some(_) => return Err(ParseErrorKind::InvalidResourceType.into()),
        };
        Ok(match ty {
            "Patient" => Resource::Patient(t(v)?),
            "Practitioner" => Resource::Practitioner(t(v)?),
            "Organization" => Resource::Organization(t(v)?),
            "Group" => Resource::Group(t(v)?),
            "Encounter" => Resource::Encounter(t(v)?),
            "Condition" => Resource::Condition(t(v)?),
            "Observation" => Resource::Observation(t(v)?),
            "Procedure" => Resource::Procedure(t(v)?),
            "MedicationRequest" => Resource::MedicationRequest(t(v)?),
            "Immunization" => Resource::Immunization(t(v)?),
            "Coverage" => Resource::Coverage(t(v)?),
            _ if allow_other => Resource::Other(v),
            _ => return Err(ParseErrorKind::UnsupportedResourceType.into()),
        })
    }

    /// Serializes to compact JSON (`resourceType` first).
    pub fn to_json_string(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The resource type name, e.g. `"Patient"`.
    pub fn resource_type(&self) -> &str {
        match self {
            Resource::Patient(_) => "Patient",
            Resource::Practitioner(_) => "Practitioner",
            Resource::Organization(_) => "Organization",
            Resource::Group(_) => "Group",
            Resource::Encounter(_) => "Encounter",
            Resource::Condition(_) => "Condition",
            Resource::Observation(_) => "Observation",
            Resource::Procedure(_) => "Procedure",
            Resource::MedicationRequest(_) => "MedicationRequest",
            Resource::Immunization(_) => "Immunization",
            Resource::Coverage(_) => "Coverage",
            Resource::Other(v) => v.get("resourceType").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// The logical id, if present.
    pub fn id(&self) -> Option<&str> {
        match self {
            Resource::Patient(r) => r.id.as_deref(),
            Resource::Practitioner(r) => r.id.as_deref(),
            Resource::Organization(r) => r.id.as_deref(),
            Resource::Group(r) => r.id.as_deref(),
            Resource::Encounter(r) => r.id.as_deref(),
            Resource::Condition(r) => r.id.as_deref(),
            Resource::Observation(r) => r.id.as_deref(),
            Resource::Procedure(r) => r.id.as_deref(),
            Resource::MedicationRequest(r) => r.id.as_deref(),
            Resource::Immunization(r) => r.id.as_deref(),
            Resource::Coverage(r) => r.id.as_deref(),
            Resource::Other(v) => v.get("id").and_then(Value::as_str),
        }
    }

    /// The date that places this resource on a patient timeline, as written:
    /// Patient.birthDate, Encounter.period.start, Condition onset (dateTime,
    /// period start) or recordedDate, Observation effective (dateTime, period
    /// start, instant) or issued, Procedure performed (dateTime, period start),
    /// MedicationRequest.authoredOn, Immunization.occurrenceDateTime or
    /// recorded, Coverage.period.start. `None` for other types or when absent.
    pub fn clinical_date(&self) -> Option<&str> {
        fn start(p: &Option<crate::Period>) -> Option<&str> {
            p.as_ref()?.start.as_deref()
        }
        match self {
            Resource::Patient(p) => p.birth_date.as_deref(),
            Resource::Encounter(e) => start(&e.period),
            Resource::Condition(c) => c
                .onset_date_time
                .as_deref()
                .or_else(|| start(&c.onset_period))
                .or(c.recorded_date.as_deref()),
            Resource::Observation(o) => o
                .effective_date_time
                .as_deref()
                .or_else(|| start(&o.effective_period))
                .or(o.effective_instant.as_deref())
                .or(o.issued.as_deref()),
            Resource::Procedure(p) => p
                .performed_date_time
                .as_deref()
                .or_else(|| start(&p.performed_period)),
            Resource::MedicationRequest(m) => m.authored_on.as_deref(),
            Resource::Immunization(i) => {
                i.occurrence_date_time.as_deref().or(i.recorded.as_deref())
            }
            Resource::Coverage(c) => start(&c.period),
            _ => None,
        }
    }

    /// [`Resource::clinical_date`] parsed; `None` when absent or malformed.
    pub fn clinical_date_time(&self) -> Option<crate::DateTime> {
        crate::parse_date_time(self.clinical_date()?).ok()
    }

    /// The reference naming the patient this resource is about:
    /// `subject` (Encounter, Condition, Observation, Procedure,
    /// MedicationRequest, and other types' `subject`), `patient` (Immunization
    /// and others) or `beneficiary` (Coverage). `None` for Patient and
    /// non-clinical resources.
    pub fn patient_reference(&self) -> Option<&Reference> {
        match self {
            Resource::Encounter(r) => r.subject.as_ref(),
            Resource::Condition(r) => r.subject.as_ref(),
            Resource::Observation(r) => r.subject.as_ref(),
            Resource::Procedure(r) => r.subject.as_ref(),
            Resource::MedicationRequest(r) => r.subject.as_ref(),
            Resource::Immunization(r) => r.patient.as_ref(),
            Resource::Coverage(r) => r.beneficiary.as_ref(),
            _ => None,
        }
    }

    /// The id of the Patient this resource belongs to: its own id for a
    /// Patient; for clinical resources the id in a `Patient/<id>` reference from
    /// subject / patient / beneficiary. `None` when there is no such reference
    /// or it points at something other than a Patient.
    pub fn subject_patient_id(&self) -> Option<&str> {
        match self {
            Resource::Patient(p) => p.id.as_deref(),
            Resource::Other(v) => ["subject", "patient", "beneficiary"].iter().find_map(|k| {
                let reference = v.get(*k)?.get("reference")?.as_str()?;
                match crate::parse_reference(reference) {
                    Some(("Patient", id)) => Some(id),
                    _ => None,
                }
            }),
            _ => self.patient_reference()?.id_of("Patient"),
        }
    }
}

/// The resources of a FHIR Bundle's `entry[].resource`, in order (e.g. the
/// eCQM test-case bundles). Entries without a resource are skipped.
pub fn bundle_resources(json: &str) -> Result<Vec<Resource>, ParseError> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| ParseError::from(classify_json_error(&e)))?;
    match v.get("resourceType") {
        Some(Value::String(t)) if t == "Bundle" => {}
        Some(_) => return Err(ParseErrorKind::UnsupportedResourceType.into()),
        None if v.is_object() => return Err(ParseErrorKind::MissingResourceType.into()),
        None => return Err(ParseErrorKind::NotAnObject.into()),
    }
    let Value::Object(mut bundle) = v else {
        return Err(ParseErrorKind::NotAnObject.into());
    };
    let entries = match bundle.remove("entry") {
        Some(Value::Array(entries)) => entries,
        None => Vec::new(),
        Some(_) => return Err(ParseErrorKind::InvalidElement { column: 0 }.into()),
    };
    entries
        .into_iter()
        .filter_map(|mut e| e.get_mut("resource").map(Value::take))
        .map(Resource::from_value)
        .collect()
}

/// Serialization helper: internally tagged, so `resourceType` is written first
/// without buffering.
#[derive(Serialize)]
#[serde(tag = "resourceType")]
enum TaggedRef<'a> {
    Patient(&'a Patient),
    Practitioner(&'a Practitioner),
    Organization(&'a Organization),
    Group(&'a Group),
    Encounter(&'a Encounter),
    Condition(&'a Condition),
    Observation(&'a Observation),
    Procedure(&'a Procedure),
    MedicationRequest(&'a MedicationRequest),
    Immunization(&'a Immunization),
    Coverage(&'a Coverage),
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tagged = match self {
            Resource::Patient(r) => TaggedRef::Patient(r),
            Resource::Practitioner(r) => TaggedRef::Practitioner(r),
            Resource::Organization(r) => TaggedRef::Organization(r),
            Resource::Group(r) => TaggedRef::Group(r),
            Resource::Encounter(r) => TaggedRef::Encounter(r),
            Resource::Condition(r) => TaggedRef::Condition(r),
            Resource::Observation(r) => TaggedRef::Observation(r),
            Resource::Procedure(r) => TaggedRef::Procedure(r),
            Resource::MedicationRequest(r) => TaggedRef::MedicationRequest(r),
            Resource::Immunization(r) => TaggedRef::Immunization(r),
            Resource::Coverage(r) => TaggedRef::Coverage(r),
            Resource::Other(v) => return v.serialize(s),
        };
        tagged.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Resource {
    /// Generic path (buffers through `serde_json::Value`); prefer
    /// [`Resource::from_json_str`] for raw JSON text.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Resource::from_value(v).map_err(serde::de::Error::custom)
    }
}

macro_rules! impl_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Resource {
            fn from(r: $t) -> Self { Resource::$t(r) }
        }
    )*};
}
impl_from!(
    Patient,
    Practitioner,
    Organization,
    Group,
    Encounter,
    Condition,
    Observation,
    Procedure,
    MedicationRequest,
    Immunization,
    Coverage
);

/// Finds the top-level `"resourceType"` string value without a full parse.
/// Returns `None` when absent, not a string, escaped, or the JSON is not a
/// well-formed enough object to tell; the caller then falls back to a full
/// parse that produces the precise error.
fn scan_resource_type(b: &[u8]) -> Option<&str> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key_start, key_end, next) = scan_string(b, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if &b[key_start..key_end] == b"resourceType" {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (s, e, _) = scan_string(b, i)?;
            let v = &b[s..e];
            if v.contains(&b'\\') {
                return None;
            }
            return std::str::from_utf8(v).ok();
        }
        i = skip_value(b, i)?;
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `b[i]` is an opening quote; returns (content start, content end, index after closing quote).
fn scan_string(b: &[u8], i: usize) -> Option<(usize, usize, usize)> {
    let start = i + 1;
    let mut j = start;
    loop {
        let k = memchr::memchr2(b'"', b'\\', &b[j..])? + j;
        if b[k] == b'\\' {
            j = k + 2;
            if j > b.len() {
                return None;
            }
        } else {
            return Some((start, k, k + 1));
        }
    }
}

/// Skips one JSON value starting at `b[i]` (coarsely: tracks strings and nesting).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => scan_string(b, i).map(|(_, _, n)| n),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = scan_string(b, j)?.2;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_top_level_type_after_nested_one() {
        let j = r#"{"contained":[{"resourceType":"Medication"}], "id":"x", "resourceType" : "Patient"}"#;
        assert_eq!(scan_resource_type(j.as_bytes()), Some("Patient"));
        assert_eq!(
            scan_resource_type(br#"{"a":"q\"resourceType\"","resourceType":"Group"}"#),
            Some("Group")
        );
        assert_eq!(scan_resource_type(b"[1]"), None);
        assert_eq!(scan_resource_type(br#"{"id":1}"#), None);
    }
}
