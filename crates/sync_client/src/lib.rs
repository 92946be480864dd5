//! The workstation's sync client: FHIR Bulk Data Access 2.0 Group export, authorised with
//! SMART Backend Services (`client_credentials` + an ES384 `private_key_jwt` assertion),
//! over HTTPS (ureq + rustls on ring), into the encrypted cache.
//!
//! Blocking; the app runs [`sync_now`] on a background thread.
//!
//! * **Discovery**: `{fhir}/.well-known/smart-configuration` (then `{origin}/.well-known/…`).
//! * **Token**: cached until 30 s before expiry; a 401 on any call fetches a new one once.
//! * **Export**: one per Group (`GET {fhir}/Group` when none are configured), kicked off by
//!   POST Parameters (GET on 405), polled honouring `Retry-After` (capped, with jitter) and
//!   reporting `X-Progress`; 429/5xx/connection resets retried with backoff.
//! * **Download and apply overlap**: a downloader thread stages whole lines in the cache's
//!   encrypted staging store ([`cache::SyncStage`]) and feeds them through a bounded channel
//!   to the apply ([`cache::Cache::apply_sync`]), which commits all or nothing.
//! * **Resumable**: status URLs, manifests and staged bytes survive a kill; the next run
//!   resumes the same export (`Range: bytes=N-` from the last whole line) if the server still
//!   has it, and starts a new one otherwise. After applying, the status URLs are `DELETE`d.
//!
//! Errors ([`SyncError`]) are plain and carry no PHI.

mod engine;
mod http;
pub mod keys;
mod testhook;
mod writeback;

use std::time::Duration;

pub use engine::sync_now;
pub use http::check_url;
pub use keys::KeyPair;
pub use writeback::{send_actions, ship_audit, ActionsReport};

/// Where and as whom to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// The server: its FHIR base (`https://host/fhir`), or its root (`https://host:8443`,
    /// when the URL has no path the FHIR base is `{root}/fhir`).
    pub base_url: String,
    /// The client id the server registered for this workstation.
    pub client_id: String,
    /// A PEM CA certificate to trust besides the public web roots (a self-signed server).
    pub ca_pem: Option<String>,
    /// Allow `http://` — only to loopback, for local testing.
    pub allow_plain_http: bool,
    /// The Groups to sync; `None`: every Group the server lets this client see.
    pub groups: Option<Vec<String>>,
    /// The scope asked for.
    pub scope: String,
    /// Retries of one request (connection failures, 429, 5xx).
    pub max_retries: u32,
    /// Longest wait honoured from a `Retry-After`.
    pub max_retry_after: Duration,
    /// Longest time without a byte from the server.
    pub read_timeout: Duration,
    /// Whether this run may replace the whole panel (a first sync, or a changed set of
    /// Groups). When false such a run stops with [`SyncError::FullSyncNeeded`] before
    /// anything is staged, so the caller can first make sure nothing else writes the cache.
    pub allow_full: bool,
}

impl SyncConfig {
    pub fn new(base_url: &str, client_id: &str) -> SyncConfig {
        SyncConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            ca_pem: None,
            allow_plain_http: false,
            groups: None,
            scope: protocol::smart::WORKSTATION_SCOPE.to_owned(),
            max_retries: 6,
            max_retry_after: Duration::from_secs(120),
            read_timeout: Duration::from_secs(60),
            allow_full: true,
        }
    }

    /// The FHIR base URL (see [`SyncConfig::base_url`]).
    pub fn fhir_base(&self) -> String {
        let b = self.base_url.trim_end_matches('/');
        let after_scheme = b.split_once("://").map_or(b, |(_, r)| r);
        if after_scheme.contains('/') {
            b.to_owned()
        } else {
            format!("{b}/fhir")
        }
    }
}

/// What a sync is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPhase {
    Connecting,
    /// The server prepares the export (polling).
    Exporting,
    /// Downloading and applying.
    Downloading,
    /// Download finished; the apply is completing.
    Applying,
    Done,
}

/// Progress, for the app's status line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncProgress {
    pub phase: SyncPhase,
    /// Resources applied so far.
    pub resources: u64,
    /// Bytes downloaded so far (this run).
    pub bytes: u64,
    /// The manifests' total count, when every file has one.
    pub total_resources: Option<u64>,
    /// The server's `X-Progress` while exporting.
    pub server_progress: Option<String>,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncReport {
    pub groups: Vec<String>,
    /// First sync (or a new set of Groups): the panel was replaced.
    pub full: bool,
    /// An interrupted sync was resumed (its export and staged bytes reused).
    pub resumed: bool,
    /// Resources stored.
    pub resources: u64,
    /// Resources removed by the `deleted` files.
    pub deleted: u64,
    /// Bytes downloaded in this run.
    pub bytes: u64,
    /// Bytes reused from the staging store (downloaded by an interrupted run).
    pub bytes_reused: u64,
    /// The latest manifest `transactionTime` (the next `_since`).
    pub transaction_time: Option<String>,
    /// Patients whose data changed (re-evaluate their care gaps).
    pub changed_patients: Vec<String>,
    pub removed_patients: Vec<String>,
    /// The server's OperationOutcome diagnostics from `error` files (not fatal).
    pub errors: Vec<String>,
    pub elapsed_ms: u64,
}

/// Why a sync failed: plain, PHI-free.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("offline: {0}")]
    Offline(String),
    #[error("the connection to the server failed: {0}")]
    Transient(String),
    #[error("the server's certificate is not trusted or TLS failed: {0}")]
    Tls(String),
    #[error("the server refused this workstation's credentials: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Unauthorized {
        error: String,
        description: Option<String>,
    },
    #[error("the server refused access{}", .0.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Forbidden(Option<String>),
    #[error("the server answered {status}{}", diagnostics.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Server {
        status: u16,
        diagnostics: Option<String>,
    },
    #[error("the server's answer does not follow FHIR Bulk Data: {0}")]
    Protocol(String),
    #[error("the export's files are no longer on the server")]
    Expired,
    #[error("cache: {0}")]
    Cache(#[from] cache::CacheError),
    #[error("settings: {0}")]
    Config(String),
    #[error("key: {0}")]
    Key(String),
    #[error("cancelled")]
    Cancelled,
    #[error("this sync would replace the whole panel")]
    FullSyncNeeded,
}

impl SyncError {
    /// Worth retrying the same request.
    pub fn is_transient(&self) -> bool {
        matches!(self, SyncError::Transient(_))
    }

    /// The server could not be reached at all (the app shows "offline").
    pub fn is_offline(&self) -> bool {
        matches!(self, SyncError::Offline(_) | SyncError::Transient(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_base_and_url_rules() {
        assert_eq!(
            SyncConfig::new("https://h:8443/", "c").fhir_base(),
            "https://h:8443/fhir"
        );
        assert_eq!(
            SyncConfig::new("https://h/r4", "c").fhir_base(),
            "https://h/r4"
        );
        let mut c = SyncConfig::new("https://h", "c");
        assert!(check_url(&c, "https://x/y").is_ok());
        assert!(check_url(&c, "http://127.0.0.1:1/y").is_err());
        c.allow_plain_http = true;
        assert!(check_url(&c, "http://127.0.0.1:1/y").is_ok());
        assert!(check_url(&c, "http://[::1]:1/y").is_ok());
        assert!(check_url(&c, "http://localhost/y").is_ok());
        assert!(check_url(&c, "http://example.org/y").is_err());
        assert!(check_url(&c, "ftp://x").is_err());
    }

    #[test]
    fn errors_read_plainly() {
        let e = SyncError::Unauthorized {
            error: "invalid_client".into(),
            description: Some("unknown client".into()),
        };
        assert_eq!(
            e.to_string(),
            "the server refused this workstation's credentials: invalid_client (unknown client)"
        );
        assert_eq!(
            SyncError::Server {
                status: 500,
                diagnostics: None
            }
            .to_string(),
            "the server answered 500"
        );
    }
}
