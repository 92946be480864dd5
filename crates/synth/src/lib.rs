//! Deterministic synthetic FHIR R4 population for PHM Workstation.
//!
//! [`Generator`] produces a primary-care population whose codes come from the
//! CMS eCQM value sets ([`codes`]), so the twelve measures find them; some
//! patients meet each measure and some do not. Output is a pure function of
//! the [`SynthConfig`]: patient `i` depends only on (seed, i), so patients can
//! be generated in any order or in parallel. [`write_ndjson_dir`] writes the
//! Bulk Data layout (one `<Type>.ndjson` per resource type).

pub mod codes;
mod generator;
mod names;
mod rng;
mod write;

pub use generator::{
    ConfigError, Generator, Resources, SynthConfig, HOSPITAL_ID, PATIENTS_PER_PROVIDER, PAYERS,
    PROVIDERS_PER_CLINIC,
};
pub use write::{write_ndjson_dir, WriteStats, OUTPUT_TYPES};
