//! Deterministic synthetic FHIR R4 population for PHM Workstation.
//!
//! [`Generator`] produces a primary-care population whose codes come from the
//! CMS eCQM value sets ([`codes`]), so the twelve measures find them; some
//! patients meet each measure and some do not. Output is a pure function of
//! the [`SynthConfig`]: patient `i` depends only on (seed, i), so patients can
//! be generated in any order or in parallel. [`write_ndjson_dir`] writes the
//! Bulk Data layout (one `<Type>.ndjson` per resource type, [`OUTPUT_TYPES`]).
//! ServiceRequest, DeviceRequest, AllergyIntolerance, AdverseEvent,
//! MedicationDispense and DiagnosticReport have no struct in the `fhir` crate and
//! are generated as [`fhir::Resource::Other`] JSON, after a patient's other
//! resources and from a random stream of their own (so adding them changed no
//! other type's output).
//!
//! ```
//! use synth::{Generator, SynthConfig};
//!
//! let g = Generator::new(SynthConfig { providers: 2, ..SynthConfig::new(100, 42) })?;
//! let reference = g.reference_resources(); // Organizations, Practitioners, Groups
//! let first = g.patient(0); // Patient first, then its clinical resources
//! assert_eq!(first[0].resource_type(), "Patient");
//! assert_eq!(g.patient(0), first); // deterministic
//! let everything = g.resources().count();
//! assert!(everything > reference.len() + 100);
//! # Ok::<(), synth::ConfigError>(())
//! ```

pub mod codes;
mod generator;
pub mod names;
pub mod rng;
mod write;

pub use generator::{
    ConfigError, Generator, Resources, SynthConfig, HOSPITAL_ID, PATIENTS_PER_PROVIDER, PAYERS,
    PROVIDERS_PER_CLINIC,
};
pub use write::{write_ndjson_dir, write_ndjson_part, WriteStats, OUTPUT_TYPES, RAW_TYPES};
