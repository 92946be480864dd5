//! Panel sync with the EDW: settings, the workstation's key pair, the background schedule
//! and one sync run — actions written back first (so what was done offline reaches the
//! EDW even when the download then fails), then the panel (FHIR Bulk Data, applied
//! atomically), then the audit trail shipped and anchored, then care gaps re-evaluated
//! for the changed patients only. The network and the cache's side are in `sync_client`
//! and `cache`; this module decides when and as whom.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use access::{Action, AuditEntry, Outcome};
use cache::{Cache, KeyStore};
use sync_client::{KeyPair, SyncConfig, SyncError, SyncPhase, SyncProgress, SyncReport};

use crate::{keyring_error, RefusedAction, SyncSettings, SyncStatus, Workstation, WsError};

const SERVER_KEY: &str = "sync.server_url";
const CLIENT_KEY: &str = "sync.client_id";
const CA_KEY: &str = "sync.ca_pem";
const INTERVAL_KEY: &str = "sync.interval_minutes";
/// Background sync interval when none is set.
const DEFAULT_INTERVAL_MINUTES: u32 = 15;
/// The public key set, written beside the cache for `phm-edw client add --jwks`.
pub const JWKS_FILE: &str = "workstation-jwks.json";

/// What the app shows while no sync runs, and the bookkeeping of the schedule.
#[derive(Default)]
pub(crate) struct SyncRuntime {
    pub(crate) running: bool,
    pub(crate) phase: String,
    pub(crate) message: String,
    pub(crate) resources: u64,
    pub(crate) bytes: u64,
    pub(crate) total: Option<u64>,
    pub(crate) offline: bool,
    /// Monotonic time of the last attempt (the schedule is not fooled by clock changes).
    pub(crate) last_attempt: Option<std::time::Instant>,
    pub(crate) cancel: Arc<AtomicBool>,
    /// The last full status, shown while a sync holds the cache.
    pub(crate) last: Option<SyncStatus>,
}

/// The keyring account keeping the audit head the EDW acknowledged, outside the cache, so
/// a cache file restored from an older copy is detected.
fn audit_anchor_account(cache: &Cache) -> String {
    format!("audit-anchor:{}", crate::key_account(cache.path()))
}

fn keystore() -> Result<KeyStore, WsError> {
    cache::init_keyring_backend().map_err(keyring_error)?;
    KeyStore::new().map_err(keyring_error)
}

/// The workstation's key pair: made on first use, private key in the OS keyring; its
/// public JWKS is (re)written beside the cache. One caller at a time (two first uses at
/// once would make two keys), and the key is kept in memory after the first read, so the
/// status line's polling does not ask the keyring each time. Called without the cache
/// lock held: a slow keyring never stalls the app's other commands.
fn sync_key(cache_path: &Path) -> Result<KeyPair, WsError> {
    static KEYS: std::sync::Mutex<Vec<(std::path::PathBuf, Vec<u8>)>> =
        std::sync::Mutex::new(Vec::new());
    let damaged = || {
        WsError::new(
            "sync_key",
            "The workstation's sync key in the keyring is damaged.",
        )
    };
    let mut known = KEYS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, pkcs8)) = known.iter().find(|(p, _)| p == cache_path) {
        return KeyPair::from_pkcs8(pkcs8).map_err(|_| damaged());
    }
    let store = keystore()?;
    let account = format!("sync-key:{}", crate::key_account(cache_path));
    let key = match store.load_secret(&account).map_err(keyring_error)? {
        Some(pkcs8) => KeyPair::from_pkcs8(&pkcs8).map_err(|_| damaged())?,
        None => {
            let k = KeyPair::generate()
                .map_err(|_| WsError::new("sync_key", "A sync key could not be made."))?;
            store
                .store_secret(&account, k.pkcs8())
                .map_err(keyring_error)?;
            k
        }
    };
    if let Some(dir) = cache_path.parent() {
        let text = serde_json::to_string_pretty(&key.jwks()).unwrap_or_default();
        let path = dir.join(JWKS_FILE);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let _ = std::fs::write(path, text);
        }
    }
    known.push((cache_path.to_path_buf(), key.pkcs8().to_vec()));
    Ok(key)
}

/// The audit head acknowledged by the EDW, as kept in the keyring.
pub(crate) fn audit_anchor(cache: &Cache) -> Option<(i64, String)> {
    let bytes = keystore()
        .ok()?
        .load_secret(&audit_anchor_account(cache))
        .ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let (seq, hash) = text.split_once(' ')?;
    Some((seq.parse().ok()?, hash.to_owned()))
}

fn read_settings(cache: &Cache) -> Result<SyncSettings, WsError> {
    Ok(SyncSettings {
        server_url: cache.setting(SERVER_KEY)?.unwrap_or_default(),
        client_id: cache.setting(CLIENT_KEY)?.unwrap_or_default(),
        ca_pem: cache.setting(CA_KEY)?.unwrap_or_default(),
        interval_minutes: cache
            .setting(INTERVAL_KEY)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_INTERVAL_MINUTES),
    })
}

fn configured(s: &SyncSettings) -> bool {
    !s.server_url.trim().is_empty() && !s.client_id.trim().is_empty()
}

fn config_of(s: &SyncSettings) -> SyncConfig {
    let mut cfg = SyncConfig::new(s.server_url.trim(), s.client_id.trim());
    if !s.ca_pem.trim().is_empty() {
        cfg.ca_pem = Some(s.ca_pem.clone());
    }
    cfg
}

fn plain(e: &SyncError) -> String {
    match e {
        SyncError::Offline(_) | SyncError::Transient(_) => {
            "The server could not be reached. Everything keeps working from this computer; \
             actions wait and are sent when it is back."
                .into()
        }
        other => {
            let t = other.to_string();
            let mut c = t.chars();
            match c.next() {
                Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
                None => t,
            }
        }
    }
}

impl Workstation {
    fn sync_runtime(&self) -> std::sync::MutexGuard<'_, SyncRuntime> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session, if it may sync — checked without counting as activity, so the
    /// status line's polling never keeps an idle session open.
    fn sync_session(&self) -> Result<crate::Session, WsError> {
        self.current_session().ok_or_else(WsError::not_signed_in)?;
        let s = self
            .session_slot()
            .clone()
            .ok_or_else(WsError::not_signed_in)?;
        if !access::allows(s.role, Action::Sync) {
            return Err(WsError::denied(s.role, Action::Sync));
        }
        Ok(s)
    }

    /// The sync state for the status line and the sync screen.
    pub fn sync_status(&self) -> Result<SyncStatus, WsError> {
        self.sync_session()?;
        self.status_now()
    }

    fn status_now(&self) -> Result<SyncStatus, WsError> {
        // A sync replacing the whole panel holds the cache: answer from the runtime then,
        // so the progress keeps showing.
        let cache = match self.cache.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let rt = self.sync_runtime();
                let mut st = rt.last.clone().unwrap_or_default();
                st.running = rt.running;
                st.phase = rt.phase.clone();
                st.message = rt.message.clone();
                st.resources = rt.resources;
                st.bytes = rt.bytes;
                st.total_resources = rt.total;
                return Ok(st);
            }
        };
        let (settings, state, pending, path) = (
            read_settings(&cache)?,
            cache.sync_state()?,
            cache.outbox_pending()?,
            cache.path().to_path_buf(),
        );
        drop(cache);
        let jwks = sync_key(&path)
            .map(|k| serde_json::to_string_pretty(&k.jwks()).unwrap_or_default())
            .unwrap_or_default();
        let mut rt = self.sync_runtime();
        let refused: Vec<RefusedAction> = pending
            .iter()
            .filter_map(|(e, _, err)| {
                let reason = err.as_deref()?;
                reason.starts_with("The server").then(|| RefusedAction {
                    id: e.id.clone(),
                    kind: e.kind.clone(),
                    patient_id: e.patient_id.clone(),
                    created_at: e.created_at.clone(),
                    reason: reason.to_owned(),
                })
            })
            .collect();
        let status = SyncStatus {
            configured: configured(&settings),
            running: rt.running,
            phase: if rt.phase.is_empty() {
                "idle".into()
            } else {
                rt.phase.clone()
            },
            message: rt.message.clone(),
            resources: rt.resources,
            bytes: rt.bytes,
            total_resources: rt.total,
            last_synced_at: state.last_synced_at,
            last_error: state.last_error,
            offline: rt.offline,
            pending_actions: (pending.len() - refused.len()) as u64,
            refused_actions: refused,
            settings,
            public_jwks: jwks,
        };
        rt.last = Some(status.clone());
        Ok(status)
    }

    /// Saves where to sync from (audited). A changed server or client makes the next
    /// sync a full one.
    pub fn save_sync_settings(&self, s: &SyncSettings) -> Result<SyncStatus, WsError> {
        let session = self.authorize(Action::Sync)?;
        let url = s.server_url.trim();
        if !url.is_empty() {
            sync_client::check_url(&SyncConfig::new(url, "x"), url)
                .map_err(|e| WsError::invalid(plain(&e)))?;
        }
        if !s.ca_pem.trim().is_empty() && !s.ca_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(WsError::invalid(
                "The certificate to trust must be a PEM certificate (-----BEGIN CERTIFICATE-----).",
            ));
        }
        if s.interval_minutes > 1440 {
            return Err(WsError::invalid(
                "Background sync runs at most once a day apart (1440 minutes).",
            ));
        }
        {
            let cache = self.cache();
            cache.set_setting(SERVER_KEY, url)?;
            cache.set_setting(CLIENT_KEY, s.client_id.trim())?;
            cache.set_setting(CA_KEY, s.ca_pem.trim())?;
            cache.set_setting(INTERVAL_KEY, &s.interval_minutes.to_string())?;
        }
        self.audit(
            AuditEntry::now(
                &session.username,
                Some(session.role),
                session.purpose,
                Action::Sync,
                Outcome::Allowed,
            )
            .with_detail("sync settings changed"),
        )?;
        self.status_now()
    }

    /// Writes the public key set to `path` (for `phm-edw client add --jwks`).
    pub fn save_sync_jwks(&self, path: &str) -> Result<(), WsError> {
        self.sync_session()?;
        let cache_path = self.cache().path().to_path_buf();
        let key = sync_key(&cache_path)?;
        let text = serde_json::to_string_pretty(&key.jwks()).unwrap_or_default();
        std::fs::write(Path::new(path), text).map_err(|e| {
            WsError::new(
                "io",
                format!("The public key could not be written there ({}).", e.kind()),
            )
        })
    }

    /// Claims the right to run a sync now (the caller then runs [`Workstation::run_sync`] on
    /// a background thread). Refused when not signed in or not configured; `false` when a
    /// sync is already running.
    pub fn begin_sync(&self) -> Result<bool, WsError> {
        let s = self.authorize(Action::Sync)?;
        let settings = read_settings(&self.cache())?;
        if !configured(&settings) {
            return Err(WsError::invalid(
                "Enter the server and the client id first (Sync screen).",
            ));
        }
        let _ = s;
        let mut rt = self.sync_runtime();
        if rt.running {
            return Ok(false);
        }
        rt.running = true;
        rt.phase = "connecting".into();
        rt.message = "Connecting to the server…".into();
        rt.resources = 0;
        rt.bytes = 0;
        rt.total = None;
        rt.last_attempt = Some(std::time::Instant::now());
        rt.cancel = Arc::new(AtomicBool::new(false));
        Ok(true)
    }

    /// Whether the background schedule should start a sync now: someone who may sync is
    /// signed in, a server is configured, no sync runs and the interval has passed.
    pub fn sync_due(&self) -> bool {
        let Ok(_) = self.sync_session() else {
            return false;
        };
        let Ok(settings) = read_settings(&self.cache()) else {
            return false;
        };
        if !configured(&settings) || settings.interval_minutes == 0 {
            return false;
        }
        let rt = self.sync_runtime();
        !rt.running
            && rt.last_attempt.is_none_or(|t| {
                t.elapsed() >= std::time::Duration::from_secs(60 * settings.interval_minutes as u64)
            })
    }

    /// Stops a running sync at its next step (nothing half-applied stays).
    pub fn cancel_sync(&self) {
        self.sync_runtime().cancel.store(true, Ordering::Relaxed);
    }

    fn sync_progress(&self, phase: &str, message: String) {
        let mut rt = self.sync_runtime();
        rt.phase = phase.into();
        rt.message = message;
    }

    /// One sync, after [`Workstation::begin_sync`] returned `true`. Blocking.
    pub fn run_sync(&self) -> Result<SyncStatus, WsError> {
        let result = self.sync_inner();
        {
            let mut rt = self.sync_runtime();
            rt.running = false;
            match &result {
                Ok(report) => {
                    rt.offline = false;
                    rt.phase = "done".into();
                    rt.message = format!(
                        "Synced: {} resources{}, {} removed.",
                        report.resources,
                        if report.full { " (whole panel)" } else { "" },
                        report.deleted
                    );
                }
                Err((offline, e)) => {
                    rt.offline = *offline;
                    rt.phase = if *offline { "offline" } else { "failed" }.into();
                    rt.message = e.message.clone();
                }
            }
        }
        if let Err((offline, e)) = &result {
            if !offline {
                let _ = self.cache().record_sync_error(&e.message);
            }
        }
        self.status_now()
    }

    fn sync_inner(&self) -> Result<SyncReport, (bool, WsError)> {
        let fail = |e: SyncError| (e.is_offline(), WsError::new("sync", plain(&e)));
        let ws = |e: WsError| (false, e);
        let session = self.sync_session().map_err(ws)?;
        let (settings, cache_path, mut second) = {
            let cache = self.cache();
            let settings = read_settings(&cache).map_err(ws)?;
            let second = cache.second_connection().map_err(|e| ws(e.into()))?;
            (settings, cache.path().to_path_buf(), second)
        };
        let key = sync_key(&cache_path).map_err(ws)?;
        let cancel = self.sync_runtime().cancel.clone();
        let mut cfg = config_of(&settings);
        cfg.allow_full = false;

        // 1. What was done here reaches the EDW first.
        self.sync_progress("sending", "Sending worklist actions…".into());
        let actions = sync_client::send_actions(&second, &cfg, &key, &cancel).map_err(fail)?;

        // 2. The panel: on a second connection, so the app keeps reading while it downloads;
        //    a run that replaces the whole panel holds the app's connection instead, so
        //    nothing written meanwhile can be lost in the swap.
        let mut progress = |p: SyncProgress| {
            let mut rt = self.sync_runtime();
            rt.phase = match p.phase {
                SyncPhase::Connecting => "connecting",
                SyncPhase::Exporting => "exporting",
                SyncPhase::Downloading => "downloading",
                SyncPhase::Applying => "applying",
                SyncPhase::Done => "applying",
            }
            .into();
            rt.resources = p.resources;
            rt.bytes = p.bytes;
            rt.total = p.total_resources;
            rt.message = match p.phase {
                SyncPhase::Connecting => "Connecting to the server…".into(),
                SyncPhase::Exporting => format!(
                    "The server is preparing the panel{}…",
                    p.server_progress
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                ),
                SyncPhase::Downloading | SyncPhase::Applying | SyncPhase::Done => format!(
                    "Downloading: {} resources, {:.1} MB…",
                    p.resources,
                    p.bytes as f64 / 1_048_576.0
                ),
            };
        };
        let report = match sync_client::sync_now(&mut second, &cfg, &key, &mut progress, &cancel) {
            Err(SyncError::FullSyncNeeded) => {
                drop(second);
                cfg.allow_full = true;
                let mut main = self.cache();
                sync_client::sync_now(&mut main, &cfg, &key, &mut progress, &cancel)
                    .map_err(fail)?
            }
            Ok(r) => {
                drop(second);
                // The app's connection reopens to drop what it kept in memory.
                let mut main = self.cache();
                let fresh = main.second_connection().map_err(|e| ws(e.into()))?;
                *main = fresh;
                r
            }
            Err(e) => return Err(fail(e)),
        };

        // 3. Who may see what follows the new panel; the sync itself is audited.
        {
            let cache = self.cache();
            if self.demo {
                crate::demo::link_accounts(&cache).map_err(ws)?;
            }
            self.refresh_session_scope(&cache).map_err(ws)?;
        }
        self.audit(
            AuditEntry::now(
                &session.username,
                Some(session.role),
                session.purpose,
                Action::Sync,
                Outcome::Allowed,
            )
            .with_detail(format!(
                "synced {} resources ({} patients changed, {} removed, {}); actions sent {}, refused {}",
                report.resources,
                report.changed_patients.len(),
                report.removed_patients.len(),
                if report.full { "full" } else { "incremental" },
                actions.created + actions.duplicate,
                actions.refused
            )),
        )
        .map_err(ws)?;

        // 4. The audit trail, anchored where a restored cache file cannot reach.
        self.sync_progress("sending", "Sending the audit trail…".into());
        let head = {
            let cache = self.cache();
            sync_client::ship_audit(&cache, &cfg, &key, &cancel).map_err(fail)?
        };
        if let Ok(store) = keystore() {
            let account = audit_anchor_account(&self.cache());
            let _ = store.store_secret(&account, format!("{} {}", head.seq, head.hash).as_bytes());
        }

        // 5. Care gaps of the patients whose data changed.
        self.sync_progress("evaluating", "Updating care gaps…".into());
        if report.full {
            self.evaluate_panel(&|_| {}).map_err(ws)?;
        } else {
            self.evaluate_patients(
                &report.changed_patients,
                !report.removed_patients.is_empty(),
            )
            .map_err(ws)?;
        }
        Ok(report)
    }
}
