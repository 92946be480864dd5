//! Errors of the measure layer. Messages name files, measures, expressions and
//! resource types, never patient data.

use thiserror::Error;

/// Everything that can go wrong while loading a measure package, reading
/// patients or evaluating a measure.
#[derive(Debug, Error)]
pub enum EcqmError {
    /// The measure bundle is not usable (missing Measure, library not found, ...).
    #[error("malformed measure package: {0}")]
    Package(String),
    /// The measure uses a feature this layer does not implement.
    #[error("unsupported measure feature: {0}")]
    Unsupported(String),
    /// Patient input could not be read or grouped.
    #[error("patient input: {0}")]
    Patients(String),
    /// The CQL engine failed (load, prepare or evaluate).
    #[error("cql engine: {0}")]
    Engine(String),
    /// A population or stratifier expression returned something unusable.
    #[error("expression \"{expression}\": {message}")]
    Expression { expression: String, message: String },
    /// Invalid argument (period, option).
    #[error("invalid argument: {0}")]
    Argument(String),
    /// I/O on a named path.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl EcqmError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        EcqmError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = EcqmError> = std::result::Result<T, E>;
