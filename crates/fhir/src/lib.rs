//! FHIR R4 JSON for PHM Workstation: serde types for the resources the product
//! uses, a streaming NDJSON reader (Bulk Data layout), partial-date helpers and
//! a minimal structural validator.
//!
//! Error messages from this crate never quote resource content (PHI): they name
//! a line, a column, an element path or a category only.
//!
//! ```
//! use fhir::{NdjsonReader, Resource};
//!
//! let ndjson = "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"birthDate\":\"1960-06-15\"}\n\
//!               {\"resourceType\":\"Condition\",\"id\":\"c1\",\"subject\":{\"reference\":\"Patient/p1\"},\
//!                \"code\":{\"coding\":[{\"system\":\"http://hl7.org/fhir/sid/icd-10-cm\",\"code\":\"I10\"}]}}\n";
//!
//! // Parsed resources with their 1-based line numbers.
//! for item in NdjsonReader::new(ndjson.as_bytes()).resources() {
//!     let (line, resource) = item?;
//!     assert_eq!(resource.subject_patient_id(), Some("p1"), "line {line}");
//!     if let Resource::Patient(p) = &resource {
//!         assert_eq!(p.age_on("2025-12-31".parse()?), Some(65));
//!     }
//! }
//!
//! // Raw line text (zero-copy) for staging, parsed on demand.
//! let mut reader = NdjsonReader::new(ndjson.as_bytes());
//! while let Some(record) = reader.next_record() {
//!     let record = record?;
//!     let resource = record.parse()?;
//!     assert!(fhir::validate(&resource).is_empty(), "{}", record.line_no);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod datatypes;
pub mod date;
pub mod ndjson;
mod resource;
mod resources;
pub mod validate;

pub use datatypes::*;
pub use date::{age_in_years, parse_date, parse_date_time, Date, DateError, DateTime, Precision};
pub use ndjson::{
    write_ndjson_line, NdjsonError, NdjsonErrorKind, NdjsonLine, NdjsonReader, NdjsonRecord,
};
pub use resource::{bundle_resources, ParseError, ParseErrorKind, Resource, KNOWN_RESOURCE_TYPES};
pub use resources::*;
pub use validate::{validate, IssueKind, ValidationIssue};

/// Used by `skip_serializing_if` so that empty optional elements are omitted.
#[doc(hidden)]
pub trait IsEmpty {
    fn is_empty(&self) -> bool;
}

impl<T> IsEmpty for Option<T> {
    fn is_empty(&self) -> bool {
        self.is_none()
    }
}

impl<T> IsEmpty for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

/// Declares a FHIR element struct: camelCase JSON, every field optional
/// (`Option`/`Vec`), defaulted when absent and omitted when empty.
macro_rules! fhir_element {
    ($(#[$m:meta])* $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $(
                $(#[$fm])*
                #[serde(default, skip_serializing_if = "crate::IsEmpty::is_empty")]
                pub $field: $ty,
            )*
        }
    };
}
pub(crate) use fhir_element;
