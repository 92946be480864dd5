//! FHIR R4 JSON for PHM Workstation: serde types for the resources the product
//! uses, a streaming NDJSON reader (Bulk Data layout), partial-date helpers and
//! a minimal structural validator.
//!
//! Error messages from this crate never quote resource content (PHI): they name
//! a line, a column, an element path or a category only.

mod datatypes;
pub mod date;
pub mod ndjson;
mod resource;
mod resources;
pub mod validate;

pub use datatypes::*;
pub use date::{age_in_years, parse_date, parse_date_time, Date, DateError, DateTime, Precision};
pub use ndjson::{write_ndjson_line, NdjsonError, NdjsonLine, NdjsonReader, NdjsonRecord};
pub use resource::{ParseError, ParseErrorKind, Resource, KNOWN_RESOURCE_TYPES};
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
