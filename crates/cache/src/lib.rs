//! The workstation's encrypted local cache.
//!
//! * [`KeyStore`]: a random 256-bit key per cache, kept in the OS keyring.
//! * [`Cache::open`]: SQLCipher database; the key is checked before anything
//!   is written, then WAL, in-memory temp store, foreign keys.
//! * Migrations from `migrations/cache/NNNN_name.sql`, embedded at build time.
//! * Import of FHIR resources / NDJSON in one transaction (replaces the panel).
//! * Panel, timeline and patient summary queries; accounts; the audit trail.
//! * Stored care gaps and results, the in-memory worklist, the outbox of worklist actions.
//! * Panel sync from the EDW: sync state, staging of downloads, atomic full/incremental apply.
//!
//! No PHI or key material appears in errors or logs from this crate: errors
//! name files, line numbers, counts and categories only.

mod accounts;
mod audit;
mod db;
mod gaps;
mod import;
mod key;
mod migrate;
mod population;
mod query;
mod results;
mod sync;
mod worklist;

pub use accounts::{Account, LoginResult};
pub use audit::AuditFilter;
pub use db::{Cache, HMAC_ALGORITHM, PAGE_SIZE};
pub use gaps::{
    EvalRun, GapWork, GroupInfo, LocalResource, MeasurePackageRow, OutboxEntry, PatientEvaluation,
    PatientGap, PatientResources, PopulationCounts, StoredGap, StoredResult, WorkChange,
};
pub use import::{ImportProgress, ImportSummary, PROGRESS_EVERY};
pub use key::{
    init_keyring_backend, CacheKey, KeyError, KeyStore, KeyringBackend, KEYRING_SERVICE,
};
pub use migrate::{MIGRATIONS, SCHEMA_VERSION};
pub use population::PopulationPatient;
pub use query::{
    BloodPressure, EventKind, Measurement, PanelPage, PanelQuery, PanelRow, PanelSort,
    PatientSummary, SortDir, Timeline, TimelineEvent,
};
pub use results::{HistoryRow, ResultRow, ResultTally};
pub use sync::{
    deleted_entries, stage_path, GroupSyncState, StagedExport, StagedFile, StagedSync, SyncApplied,
    SyncApply, SyncFileKind, SyncLine, SyncStage, SyncState,
};
pub use worklist::{
    OutreachFilter, PatientScope, WorklistPage, WorklistQuery, WorklistRow, WorklistSort,
    MAX_WORKLIST_PAGE,
};

/// Errors from the cache. Messages never contain PHI or key material.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the cache could not be opened with the stored key")]
    WrongKey,
    #[error("the cache file is not encrypted (plain SQLite); refusing to use it")]
    NotEncrypted,
    #[error("the cache schema (version {found}) is newer than this app supports (version {supported}); update the app")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("cache migration {version} failed: {reason}")]
    Migration { version: i64, reason: String },
    #[error("{file}: line {line}: {reason}")]
    Ndjson {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("import rejected: {0}")]
    Import(String),
    #[error("could not read {file}: {reason}")]
    Io { file: String, reason: String },
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("account error: {0}")]
    Account(String),
    #[error(transparent)]
    Passphrase(#[from] access::PassphraseError),
    #[error(transparent)]
    AuditChain(#[from] access::ChainBreak),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("database error: {0}")]
    Db(String),
}

impl From<rusqlite::Error> for CacheError {
    fn from(e: rusqlite::Error) -> Self {
        CacheError::Db(db_error_message(&e))
    }
}

/// A database error message without values: SQLite's own messages for
/// constraint failures name columns, not values; rusqlite's conversion errors
/// can carry values, so those are reduced to their category.
pub(crate) fn db_error_message(e: &rusqlite::Error) -> String {
    use rusqlite::Error as E;
    match e {
        E::SqliteFailure(code, msg) => match msg {
            Some(m) => format!("{:?}: {m}", code.code),
            None => format!("{:?}", code.code),
        },
        E::FromSqlConversionFailure(i, ty, _) => format!("column {i} has unexpected {ty} value"),
        E::IntegralValueOutOfRange(i, _) => format!("column {i} out of range"),
        E::InvalidColumnType(i, name, ty) => format!("column {i} ({name}) has type {ty}"),
        E::QueryReturnedNoRows => "no rows".into(),
        E::ToSqlConversionFailure(_) => "a value could not be converted".into(),
        // Remaining variants describe API misuse (parameter names, counts), not data.
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    /// The app keeps the cache in a `Mutex` in Tauri state: it must be `Send`.
    #[test]
    fn cache_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<crate::Cache>();
        assert_send::<crate::CacheError>();
    }
}
