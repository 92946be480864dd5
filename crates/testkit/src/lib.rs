//! Scaffolding for tests and benchmarks, a dev-dependency only: shipped crates never link it.
//!
//! - [`pgharness`]: Debian's PostgreSQL started in a temp dir (the EDW's tests, the sync and
//!   end-to-end tests, the EDW benchmarks).
//! - [`citus`]: a Citus coordinator and workers on this machine, built on `pgharness`.
//! - [`testdata`]: a small synthetic FHIR data set with known duplicates and bad lines, for
//!   the EDW's ingest, matching and serving tests.

pub mod citus;
pub mod pgharness;
pub mod testdata;
