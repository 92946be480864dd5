//! FHIR R4 general-purpose datatypes.

use crate::fhir_element;
use serde_json::Value;

fhir_element!(
    /// A code from a code system.
    Coding {
        system: Option<String>,
        version: Option<String>,
        code: Option<String>,
        display: Option<String>,
        user_selected: Option<bool>,
    }
);

fhir_element!(
    /// A concept given by one or more codings and/or text.
    CodeableConcept {
        coding: Vec<Coding>,
        text: Option<String>,
    }
);

fhir_element!(
    /// A reference to another resource, e.g. `Patient/123`.
    Reference {
        reference: Option<String>,
        r#type: Option<String>,
        identifier: Option<Box<Identifier>>,
        display: Option<String>,
    }
);

fhir_element!(
    /// A time range; `start` and `end` are FHIR dateTime strings.
    Period {
        start: Option<String>,
        end: Option<String>,
    }
);

fhir_element!(
    /// A measured amount (also used for Age, Duration, SimpleQuantity).
    Quantity {
        value: Option<f64>,
        comparator: Option<String>,
        unit: Option<String>,
        system: Option<String>,
        code: Option<String>,
    }
);

fhir_element!(
    /// A set of ordered quantities.
    Range {
        low: Option<Quantity>,
        high: Option<Quantity>,
    }
);

fhir_element!(
    /// A ratio of two quantities.
    Ratio {
        numerator: Option<Quantity>,
        denominator: Option<Quantity>,
    }
);

fhir_element!(
    /// A person's name.
    HumanName {
        r#use: Option<String>,
        text: Option<String>,
        family: Option<String>,
        given: Vec<String>,
        prefix: Vec<String>,
        suffix: Vec<String>,
        period: Option<Period>,
    }
);

fhir_element!(
    /// A business identifier (MRN, NPI, member id, ...).
    Identifier {
        r#use: Option<String>,
        r#type: Option<CodeableConcept>,
        system: Option<String>,
        value: Option<String>,
        period: Option<Period>,
        assigner: Option<Box<Reference>>,
    }
);

fhir_element!(
    /// A postal address.
    Address {
        r#use: Option<String>,
        r#type: Option<String>,
        text: Option<String>,
        line: Vec<String>,
        city: Option<String>,
        district: Option<String>,
        state: Option<String>,
        postal_code: Option<String>,
        country: Option<String>,
        period: Option<Period>,
    }
);

fhir_element!(
    /// A phone number, e-mail address, ...
    ContactPoint {
        system: Option<String>,
        value: Option<String>,
        r#use: Option<String>,
        rank: Option<u32>,
        period: Option<Period>,
    }
);

fhir_element!(
    /// An extension (minimal: the common `value[x]` choices and nesting).
    Extension {
        url: Option<String>,
        extension: Vec<Extension>,
        value_string: Option<String>,
        value_code: Option<String>,
        value_boolean: Option<bool>,
        value_integer: Option<i64>,
        value_decimal: Option<f64>,
        value_date: Option<String>,
        value_date_time: Option<String>,
        value_uri: Option<String>,
        value_coding: Option<Coding>,
        value_codeable_concept: Option<CodeableConcept>,
        value_quantity: Option<Quantity>,
        value_period: Option<Period>,
        value_reference: Option<Reference>,
    }
);

fhir_element!(
    /// Resource metadata.
    Meta {
        version_id: Option<String>,
        last_updated: Option<String>,
        source: Option<String>,
        profile: Vec<String>,
        security: Vec<Coding>,
        tag: Vec<Coding>,
    }
);

fhir_element!(
    /// Dosage instructions (minimal; timing and dose/rate kept as raw JSON).
    Dosage {
        sequence: Option<i64>,
        text: Option<String>,
        timing: Option<Value>,
        as_needed_boolean: Option<bool>,
        route: Option<CodeableConcept>,
        dose_and_rate: Vec<Value>,
    }
);

fhir_element!(
    /// A text note.
    Annotation {
        author_string: Option<String>,
        author_reference: Option<Reference>,
        time: Option<String>,
        text: Option<String>,
    }
);

impl Coding {
    /// A coding with system, code and display.
    pub fn new(system: &str, code: &str, display: &str) -> Self {
        Coding {
            system: Some(system.to_owned()),
            code: Some(code.to_owned()),
            display: Some(display.to_owned()),
            ..Default::default()
        }
    }
}

impl CodeableConcept {
    /// A concept with a single coding.
    pub fn from_coding(coding: Coding) -> Self {
        CodeableConcept {
            coding: vec![coding],
            text: None,
        }
    }

    /// Whether any coding has this system and code.
    pub fn has_code(&self, system: &str, code: &str) -> bool {
        self.coding
            .iter()
            .any(|c| c.system.as_deref() == Some(system) && c.code.as_deref() == Some(code))
    }
}

impl Reference {
    /// A reference of the form `Type/id`.
    pub fn to(resource_type: &str, id: &str) -> Self {
        Reference {
            reference: Some(format!("{resource_type}/{id}")),
            ..Default::default()
        }
    }

    /// The `(type, id)` of a literal reference: `Type/id`, `Type/id/_history/v`
    /// or an absolute URL ending in one of those. `None` for contained (`#x`),
    /// `urn:` references and malformed ones.
    pub fn type_and_id(&self) -> Option<(&str, &str)> {
        parse_reference(self.reference.as_deref()?)
    }

    /// The id when this references a resource of type `resource_type`.
    pub fn id_of(&self, resource_type: &str) -> Option<&str> {
        match self.type_and_id() {
            Some((t, id)) if t == resource_type => Some(id),
            _ => None,
        }
    }
}

/// Splits a literal reference into `(type, id)`; see [`Reference::type_and_id`].
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let mut parts: Vec<&str> = reference.rsplitn(5, '/').collect();
    parts.reverse();
    // Drop a trailing `_history/<v>`.
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    if parts.len() < 2 {
        return None;
    }
    let id = parts[parts.len() - 1];
    let ty = parts[parts.len() - 2];
    let ty = ty.rsplit('/').next().unwrap_or(ty);
    if is_resource_type_name(ty) && is_valid_id(id) {
        Some((ty, id))
    } else {
        None
    }
}

/// A resource type name: an upper-case ASCII letter followed by ASCII letters.
pub fn is_resource_type_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b[0].is_ascii_uppercase() && b.iter().all(u8::is_ascii_alphabetic)
}

/// A FHIR id: 1–64 characters of `[A-Za-z0-9\-\.]`.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
