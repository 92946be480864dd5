//! PHM central EDW on PostgreSQL: migrations, NDJSON ingest, patient matching,
//! attribution, star-schema ETL and a small authenticated HTTP API.

pub mod attribute;
pub mod bulk;
pub mod etl;
pub mod ingest;
pub mod matching;
pub mod measure;
pub mod migrate;
pub mod quality;
pub mod results;
pub mod review;
pub mod serve;
pub mod stats;
pub mod validate;

/// Error type: messages never contain patient data (only counts, line numbers,
/// resource types/ids, file names and database error texts without row values).
#[derive(Debug)]
pub struct Error(pub String);

impl Error {
    pub fn msg(s: impl Into<String>) -> Self {
        Error(s.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Error {}

/// Database error text without the DETAIL (which can echo row values = PHI).
pub fn db_err(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error(format!("database: {}", db_err(&e)))
    }
}
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(format!("io: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The 3NF tables whose rows hang off a source patient and come from one source line.
pub(crate) const CLINICAL_TABLES: [&str; 7] = [
    "encounter",
    "condition",
    "observation",
    "procedure",
    "medication_request",
    "immunization",
    "coverage",
];

/// Connect with the sync client (URL or key=value connection string).
pub fn connect(db: &str) -> Result<postgres::Client> {
    postgres::Client::connect(db, postgres::NoTls)
        .map_err(|e| Error::msg(format!("cannot connect to the database: {}", db_err(&e))))
}
