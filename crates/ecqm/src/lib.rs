//! eCQM measure layer for PHM Workstation.
//!
//! - [`package`]: parse a FHIR measure bundle into a [`MeasureDef`].
//! - [`populations`]: proportion/cohort membership rules and per-patient
//!   evaluation over an [`Evaluator`] (the cql engine in production).
//! - [`patients`]: read patients from Bundle files or NDJSON.
//! - [`compact`]: the packages' compact, shippable form (ELM JSON and expansions, gzipped).
//! - [`gaps`]: the care-gap rule and improvement-notation overrides.
//! - [`evidence`]: care-gap evidence derived from the ELM (why open, which data, what would
//!   close it).
//! - [`qrda3`]: QRDA Category III for the CMS program years 2025 and 2026.
//! - [`report`]: MeasureReports (individual, subject-list, summary) and the
//!   DEQM gaps-in-care Bundle.

pub mod compact;
pub mod engine;
pub mod error;
pub mod evidence;
pub mod gaps;
pub mod package;
pub mod patients;
pub mod period;
pub mod populations;
pub mod qrda3;
pub mod report;

/// The engine's version (part of `phm-edw measure`'s run fingerprint).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use error::{EcqmError, Result};
pub use evidence::{DefineValue, EvidenceResource, GroupEvidence, Requirement};
pub use gaps::{gap_status, GapStatus, ImprovementOverrides};
pub use package::{
    parse_measure_bundle, GroupDef, ImprovementNotation, MeasureDef, PopulationCode,
};
pub use patients::{PatientItem, PatientRecord, PatientSource, ReadOptions};
pub use period::Period;
pub use populations::{
    evaluate_patient, EvalOptions, Evaluator, GroupResult, Memberships, PatientResult,
};
pub use report::{gaps_bundle, individual_report, ReportContext, Summary};
