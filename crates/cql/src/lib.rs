//! ELM (CQL) engine: loads ELM JSON libraries, compiles them once into an executable form, and
//! evaluates expression definitions per patient.
//!
//! ```ignore
//! let set = cql::LibrarySet::from_measure_bundle(&bundle)?;
//! let prepared = set.prepare("https://madie.cms.gov/Library/X", cql::Parameters::new())?;
//! let patient = cql::PatientData::from_bundle(&case)?;
//! let values = prepared.evaluate(&patient, &["Initial Population", "Numerator"])?;
//! ```

#![allow(clippy::needless_range_loop, clippy::type_complexity)]

pub mod analysis;
pub mod datetime;
mod engine;
pub mod fhir;
pub mod interval;
pub mod ops;
mod regex;
pub mod render;
pub mod units;
pub mod value;

pub use analysis::{DataRequirement, DateWindow, DefId, DefineGraph, NamedCode, NamedValueSet};
pub use engine::{LibrarySet, PatientMemo, Prepared, Session};

pub use value::{Code, Concept, Interval, Quantity, Value};

use std::collections::HashMap;
use std::sync::Arc;

/// An engine error. Messages never contain patient data values.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{msg}")]
pub struct CqlError {
    pub msg: String,
}

impl CqlError {
    pub fn new(msg: impl Into<String>) -> CqlError {
        CqlError { msg: msg.into() }
    }
}

/// The result of anything in the engine that can fail.
pub(crate) type CqlResult<T> = Result<T, CqlError>;

/// Fails with `msg`.
pub(crate) fn fail<T>(msg: impl Into<String>) -> CqlResult<T> {
    Err(CqlError::new(msg))
}

/// The context of one evaluation request, passed to every operator ([`ops::apply`]).
///
/// CQL defines `Now()`, `Today()` and `TimeOfDay()` by the start timestamp of the *evaluation
/// request*: the same value however often, and wherever, they are called within it. Here one
/// evaluation request is one evaluation of one patient (or of the Unfiltered context):
/// - one [`Prepared::evaluate`] or [`Prepared::evaluate_unfiltered`] call;
/// - one [`Session`] (its `evaluate` calls share memoized definitions, so they share the timestamp);
/// - one [`PatientMemo`] (every session that shares its memo, e.g. all measures of one patient).
///
/// The timestamp is read from the system clock (UTC, millisecond precision) when the request
/// starts, unless given explicitly with [`EvalContext::at`] and the `*_in` variants
/// ([`Prepared::evaluate_in`], [`Prepared::session_in`], [`Prepared::evaluate_unfiltered_in`],
/// [`PatientMemo::new_in`]), e.g. to pin a test, rerun a past evaluation, or give a whole batch
/// one timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalContext {
    /// always at millisecond precision
    now: datetime::DateTime,
}

impl EvalContext {
    /// A context timestamped with the system clock, now (UTC).
    pub fn from_clock() -> EvalContext {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        EvalContext {
            now: datetime::DateTime::new(datetime::components_from_ms(ms), 0, datetime::MS),
        }
    }

    /// A context timestamped `now`. Its timezone offset is the request's (`Today()` and
    /// `TimeOfDay()` are its date and time as written); components below its precision are taken
    /// as their minimum, so `Now()` is always at millisecond precision.
    pub fn at(now: datetime::DateTime) -> EvalContext {
        EvalContext {
            now: now.fill_min(),
        }
    }

    /// `Now()`: the request's timestamp.
    pub fn now(&self) -> datetime::DateTime {
        self.now
    }

    /// `Today()`: the date of the request's timestamp.
    pub fn today(&self) -> datetime::Date {
        self.now.date()
    }

    /// `TimeOfDay()`: the time of the request's timestamp.
    pub fn time_of_day(&self) -> datetime::Time {
        let c = self.now.c;
        datetime::Time {
            c: [c[3], c[4], c[5], c[6]],
            prec: datetime::MS,
        }
    }
}

/// Parameter values by name; absent parameters take their ELM default.
#[derive(Clone, Debug, Default)]
pub struct Parameters {
    pub(crate) values: HashMap<String, Value>,
}

impl Parameters {
    pub fn new() -> Parameters {
        Parameters::default()
    }
    pub fn with(mut self, name: &str, value: Value) -> Parameters {
        self.values.insert(name.to_string(), value);
        self
    }
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

/// One patient's resources, indexed by resourceType for retrieves.
#[derive(Clone, Debug, Default)]
pub struct PatientData {
    pub(crate) by_type: HashMap<String, Arc<Vec<Value>>>,
}

impl PatientData {
    /// From a FHIR Bundle (any type): every entry's resource.
    pub fn from_bundle(bundle: &serde_json::Value) -> Result<PatientData, CqlError> {
        let entries = bundle
            .get("entry")
            .and_then(|e| e.as_array())
            .ok_or_else(|| CqlError::new("patient bundle has no entry array"))?;
        let resources = entries
            .iter()
            .filter_map(|e| e.get("resource").cloned())
            .collect();
        PatientData::from_resources(resources)
    }

    pub fn from_resources(resources: Vec<serde_json::Value>) -> Result<PatientData, CqlError> {
        let mut by: HashMap<String, Vec<Value>> = HashMap::new();
        for r in &resources {
            let Some(rt) = r.get("resourceType").and_then(|t| t.as_str()) else {
                return Err(CqlError::new("a resource has no resourceType"));
            };
            let node = fhir::Node::new(fhir::J::from_json(r), None);
            by.entry(rt.to_string())
                .or_default()
                .push(Value::Resource(node));
        }
        Ok(PatientData {
            by_type: by.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        })
    }

    /// From resources already parsed into [`fhir::J`] (e.g. `serde_json::from_str::<fhir::J>` of
    /// NDJSON lines, with no intermediate `serde_json::Value`). Same result as `from_resources`.
    pub fn from_nodes(resources: Vec<fhir::J>) -> Result<PatientData, CqlError> {
        let mut by: HashMap<String, Vec<Value>> = HashMap::new();
        for r in resources {
            let Some(rt) = r.get("resourceType").and_then(|t| t.str()) else {
                return Err(CqlError::new("a resource has no resourceType"));
            };
            let rt = rt.to_string();
            by.entry(rt)
                .or_default()
                .push(Value::Resource(fhir::Node::new(r, None)));
        }
        Ok(PatientData {
            by_type: by.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        })
    }

    /// Resources of one type.
    pub fn resources(&self, resource_type: &str) -> Option<&Arc<Vec<Value>>> {
        self.by_type.get(resource_type)
    }
}
