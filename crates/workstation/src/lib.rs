//! The workstation's service layer: everything a Tauri command does, testable
//! without a window. Each data command checks the session (signed in, not idle,
//! purpose chosen), checks the role in Rust, runs one cache query and writes
//! exactly one audit record — allowed, denied or error alike.

mod accounts;
pub mod closure;
pub mod dashboard;
mod demo;
mod diagnostics;
mod dto;
mod error;
pub mod evaluation;
mod export;
mod queries;
mod sync;
mod worklist;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use access::{Action, AuditEntry, IdlePolicy, LockoutPolicy, Outcome, PurposeOfUse, Role};
use cache::{Cache, CacheKey, KeyStore, LoginResult};

pub use accounts::{AccountChange, AccountOptions, AccountRow, AppMode, NewAccount};
pub use diagnostics::*;
pub use dto::*;
pub use error::{action_label, WsError};
pub use export::{neutralize_cell, MEASURE_RESULT_COLUMNS, WORKLIST_COLUMNS};
pub use sync::JWKS_FILE;
pub use worklist::*;

/// Where the cache lives and how the app behaves; read from the environment
/// by the app, built directly by tests.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Demo mode (`phm-workstation --demo`): the demo accounts with their known passphrases
    /// and a generated synthetic panel, in a cache of their own (`demo-cache.db`). Off, no
    /// account or patient is ever created by the app itself.
    pub demo: bool,
    /// Patients in the generated demo panel on first launch.
    pub demo_patients: u64,
    pub demo_seed: u64,
    pub idle_timeout: Duration,
    pub lockout: LockoutPolicy,
    /// Improvement-notation overrides (`PHM_IMPROVEMENT_NOTATION`, default
    /// [`evaluation::SHIPPED_IMPROVEMENT_OVERRIDES`]).
    pub improvement: ecqm::ImprovementOverrides,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            demo: false,
            demo_patients: 2_000,
            demo_seed: 20_251_231,
            idle_timeout: Duration::from_secs(15 * 60),
            lockout: LockoutPolicy::default(),
            improvement: ecqm::ImprovementOverrides::parse(
                evaluation::SHIPPED_IMPROVEMENT_OVERRIDES,
            )
            .unwrap_or_default(),
        }
    }

    /// `PHM_DATA_DIR`, `PHM_DEMO_PATIENTS`, `PHM_IDLE_MINUTES`; `default_dir` is the OS data dir.
    pub fn from_env(default_dir: Option<PathBuf>) -> Config {
        let dir = std::env::var_os("PHM_DATA_DIR")
            .map(PathBuf::from)
            .or(default_dir)
            .unwrap_or_else(|| PathBuf::from("phm-data"));
        let mut c = Config::new(dir);
        if let Some(n) = env_u64("PHM_DEMO_PATIENTS") {
            c.demo_patients = n;
        }
        if let Some(Ok(o)) = std::env::var("PHM_IMPROVEMENT_NOTATION")
            .ok()
            .map(|s| ecqm::ImprovementOverrides::parse(&s))
        {
            c.improvement = o;
        }
        if let Some(m) = env_u64("PHM_IDLE_MINUTES") {
            c.idle_timeout = Duration::from_secs(m.max(1) * 60);
        }
        c
    }

    /// The encrypted cache: the demo's own file in demo mode, so a real installation's cache
    /// never holds the demo's accounts or synthetic patients.
    pub fn cache_path(&self) -> PathBuf {
        self.data_dir.join(if self.demo {
            "demo-cache.db"
        } else {
            "cache.db"
        })
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The signed-in user. One session at a time: this is a single-user desktop.
#[derive(Debug, Clone)]
struct Session {
    username: String,
    display_name: String,
    role: Role,
    purpose: Option<PurposeOfUse>,
    /// On the monotonic clock: the wall clock may jump (sleep, NTP, the user).
    last_activity_ms: i64,
    /// Signed in with a passphrase an administrator set: nothing else until it is changed.
    must_change: bool,
    /// The patients this session may see (`None`: all), fixed at sign-in.
    scope: Option<std::sync::Arc<cache::PatientScope>>,
}

/// Milliseconds since the epoch; replaceable so idle-lock tests need no sleeping.
pub type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// Milliseconds on a clock that never goes back (since the process started).
pub fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

pub struct Workstation {
    cache: Mutex<Cache>,
    session: Mutex<Option<Session>>,
    idle: IdlePolicy,
    lockout: LockoutPolicy,
    /// Wall clock: lockouts (stored), audit times, dates.
    clock: Clock,
    /// Monotonic clock: the idle lock.
    monotonic: Clock,
    /// Demo mode (see [`Config::demo`]).
    demo: bool,
    improvement: ecqm::ImprovementOverrides,
    /// The measures prepared for the current measurement period.
    measures: Mutex<Option<evaluation::EvalContext>>,
    eval_status: Mutex<EvaluationStatus>,
    /// One evaluation run at a time; a second waits, then runs with the newest settings.
    eval_lock: Mutex<()>,
    sync: Mutex<sync::SyncRuntime>,
}

/// The demo accounts, one per role: (user name, display name, role). Only in demo mode.
pub const DEMO_ACCOUNTS: [(&str, &str, Role); 5] = [
    ("caremanager", "Casey Care (demo)", Role::CareManager),
    ("clinician", "Dr. Robin Clinic (demo)", Role::Clinician),
    ("quality", "Quinn Quality (demo)", Role::QualityAnalyst),
    ("privacy", "Pat Privacy (demo)", Role::PrivacyOfficer),
    ("administrator", "Alex Admin (demo)", Role::Administrator),
];

/// The demo passphrase of a demo account.
pub fn demo_passphrase(username: &str) -> String {
    format!("demo-{username}")
}

pub fn purposes() -> Vec<Purpose> {
    PurposeOfUse::ALL
        .iter()
        .map(|p| Purpose {
            code: p.code().into(),
            label: p.display().into(),
        })
        .collect()
}

/// The keyring account naming one cache file's key.
fn key_account(path: &Path) -> String {
    let abs = std::fs::canonicalize(path.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|_| path.to_path_buf());
    let name = path.file_name().unwrap_or("cache.db".as_ref());
    format!("cache:{}", abs.join(name).display())
}

/// Loads the cache key, or makes one for a new cache. An existing cache without
/// its key is an error: making a new key would lock the data out for good.
fn cache_key(path: &Path) -> Result<CacheKey, WsError> {
    cache::init_keyring_backend().map_err(keyring_error)?;
    let store = KeyStore::new().map_err(keyring_error)?;
    let account = key_account(path);
    match store.load(&account).map_err(keyring_error)? {
        Some(key) => Ok(key),
        None if path.exists() => Err(WsError::new(
            "missing_key",
            "The local cache exists but its key is not in this computer's keyring, so it cannot \
             be opened. The file was left untouched.",
        )),
        None => store.create(&account).map_err(keyring_error),
    }
}

fn keyring_error(e: cache::KeyError) -> WsError {
    WsError::new("keyring", format!("The OS keyring could not be used: {e}."))
}

impl Workstation {
    /// Opens (or creates) the encrypted cache, seeds the demo accounts and, when
    /// the cache holds no panel, generates the demo panel with progress.
    pub fn open(config: &Config, progress: &dyn Fn(StartupStatus)) -> Result<Workstation, WsError> {
        progress(StartupStatus::starting("Opening the encrypted cache…"));
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            WsError::new(
                "io",
                format!("The data folder could not be created ({}).", e.kind()),
            )
        })?;
        let path = config.cache_path();
        let key = cache_key(&path)?;
        let cache = Cache::open(&path, &key)?;
        Workstation::with_clocks(
            cache,
            config,
            progress,
            Box::new(access::time::now_unix_ms),
            Box::new(monotonic_ms),
        )
    }

    /// As [`Workstation::open`] on an already opened cache, with a test's clock driving both
    /// the wall clock and the idle lock.
    pub fn with_cache(
        cache: Cache,
        config: &Config,
        progress: &dyn Fn(StartupStatus),
        clock: Clock,
    ) -> Result<Workstation, WsError> {
        let clock = std::sync::Arc::new(clock);
        let wall = clock.clone();
        Workstation::with_clocks(
            cache,
            config,
            progress,
            Box::new(move || wall()),
            Box::new(move || clock()),
        )
    }

    /// As [`Workstation::open`] on an already opened cache, with a wall clock and a monotonic
    /// clock. In demo mode ([`Config::demo`]) the demo accounts and, in an empty cache, the
    /// synthetic panel are created; otherwise nothing is.
    pub fn with_clocks(
        cache: Cache,
        config: &Config,
        progress: &dyn Fn(StartupStatus),
        clock: Clock,
        monotonic: Clock,
    ) -> Result<Workstation, WsError> {
        let mut cache = cache;
        if config.demo {
            demo::prepare(&mut cache, config, progress)?;
        }
        Ok(Workstation {
            cache: Mutex::new(cache),
            session: Mutex::new(None),
            idle: IdlePolicy {
                timeout: config.idle_timeout,
            },
            lockout: config.lockout,
            clock,
            monotonic,
            demo: config.demo,
            improvement: config.improvement.clone(),
            measures: Mutex::new(None),
            eval_status: Mutex::new(EvaluationStatus {
                phase: "idle".into(),
                ..Default::default()
            }),
            eval_lock: Mutex::new(()),
            sync: Mutex::new(sync::SyncRuntime::default()),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions),
        // so a poisoned lock is safe to reuse.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn session_slot(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn panel_size(&self) -> u64 {
        self.cache().patient_count().unwrap_or(0)
    }

    fn info(&self, s: &Session) -> SessionInfo {
        SessionInfo {
            username: s.username.clone(),
            display_name: s.display_name.clone(),
            role: s.role,
            role_label: s.role.display_name().into(),
            purpose: s.purpose.map(|p| p.code().into()),
            purpose_label: s.purpose.map(|p| p.display().into()),
            permissions: if s.must_change {
                Vec::new()
            } else {
                s.role.allowed_actions()
            },
            idle_timeout_secs: self.idle.timeout.as_secs(),
            must_change_passphrase: s.must_change,
        }
    }

    /// The current session, unless there is none or it has gone idle.
    pub fn current_session(&self) -> Option<SessionInfo> {
        let now = (self.monotonic)();
        let mut slot = self.session_slot();
        let s = slot.as_ref()?;
        if self.idle.is_expired(s.last_activity_ms, now) {
            *slot = None;
            return None;
        }
        Some(self.info(s))
    }

    fn audit(&self, entry: AuditEntry) -> Result<(), WsError> {
        self.cache().audit_append(entry).map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit append failed");
            WsError::new(
                "audit",
                "The access could not be recorded in the audit trail, so it was not performed.",
            )
        })
    }

    pub fn login(&self, username: &str, passphrase: &str) -> Result<SessionInfo, WsError> {
        let now = (self.clock)();
        let result = self
            .cache()
            .authenticate(username, passphrase, now, &self.lockout)?;
        let entry = |outcome, detail: &str| {
            AuditEntry::now(username, None, None, Action::Login, outcome).with_detail(detail)
        };
        let started = (self.monotonic)();
        match result {
            LoginResult::Success(account) => {
                let scope = Workstation::scope_for(&self.cache(), &account.username, account.role)?;
                let s = Session {
                    username: account.username.clone(),
                    display_name: account.display_name.clone(),
                    role: account.role,
                    purpose: None,
                    last_activity_ms: started,
                    must_change: account.must_change_passphrase,
                    scope,
                };
                let mut e = AuditEntry::now(
                    &s.username,
                    Some(s.role),
                    None,
                    Action::Login,
                    Outcome::Allowed,
                );
                e.detail = Some("signed in".into());
                self.audit(e)?;
                let info = self.info(&s);
                *self.session_slot() = Some(s);
                tracing::info!(role = %account.role, "signed in");
                Ok(info)
            }
            LoginResult::WrongPassphrase { locked_until } => {
                self.audit(entry(Outcome::Denied, "wrong passphrase"))?;
                match locked_until {
                    Some(until) => Err(locked_message(until, now)),
                    None => Err(WsError::bad_credentials()),
                }
            }
            LoginResult::UnknownUser => {
                // What was typed may be a passphrase in the wrong field: the trail keeps a
                // keyed hash of it, never the text.
                let secret = self.cache().install_secret()?;
                let label = access::unknown_user_label(&secret, username);
                self.audit(
                    AuditEntry::now(&label, None, None, Action::Login, Outcome::Denied)
                        .with_detail("unknown user"),
                )?;
                Err(WsError::bad_credentials())
            }
            LoginResult::Locked { until } => {
                self.audit(entry(Outcome::Denied, "account locked"))?;
                Err(locked_message(until, now))
            }
            LoginResult::Disabled => {
                self.audit(entry(Outcome::Denied, "account disabled"))?;
                Err(WsError::new(
                    "disabled",
                    "This account is disabled. Ask your administrator.",
                ))
            }
        }
    }

    /// Records the purpose of use for the rest of the session.
    pub fn set_purpose(&self, code: &str) -> Result<SessionInfo, WsError> {
        let purpose = PurposeOfUse::from_code(code)
            .ok_or_else(|| WsError::invalid("Unknown purpose of use."))?;
        let now = (self.monotonic)();
        let mut slot = self.session_slot();
        let s = slot.as_mut().ok_or_else(WsError::not_signed_in)?;
        if self.idle.is_expired(s.last_activity_ms, now) {
            *slot = None;
            return Err(WsError::locked());
        }
        s.purpose = Some(purpose);
        s.last_activity_ms = now;
        Ok(self.info(s))
    }

    pub fn logout(&self) {
        *self.session_slot() = None;
    }

    /// Locks the screen at once (as the idle timeout would).
    pub fn lock(&self) {
        self.logout();
    }

    /// The gate every data command passes: a live session with a purpose, and a
    /// role that allows `action`. A refusal is audited here.
    fn authorize(&self, action: Action) -> Result<Session, WsError> {
        let now = (self.monotonic)();
        let mut slot = self.session_slot();
        let Some(s) = slot.as_mut() else {
            return Err(WsError::not_signed_in());
        };
        if self.idle.is_expired(s.last_activity_ms, now) {
            let entry = AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                action,
                Outcome::Denied,
            )
            .with_detail("session locked after inactivity");
            *slot = None;
            drop(slot);
            self.audit(entry)?;
            return Err(WsError::locked());
        }
        if s.must_change {
            let entry = AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                action,
                Outcome::Denied,
            )
            .with_detail("passphrase must be changed first");
            drop(slot);
            self.audit(entry)?;
            return Err(WsError::must_change_passphrase());
        }
        if !access::allows(s.role, action) {
            let entry = AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                action,
                Outcome::Denied,
            )
            .with_detail("role does not allow this action");
            let role = s.role;
            drop(slot);
            self.audit(entry)?;
            tracing::warn!(role = %role, action = ?action, "refused by role");
            return Err(WsError::denied(role, action));
        }
        if action.returns_phi() && s.purpose.is_none() {
            return Err(WsError::no_purpose());
        }
        s.last_activity_ms = now;
        Ok(s.clone())
    }

    /// Runs an authorized command and writes its one audit record.
    fn audited<T>(
        &self,
        action: Action,
        query: Option<String>,
        run: impl FnOnce(&Cache, &Session) -> Result<T, WsError>,
        patients: impl FnOnce(&T) -> Vec<String>,
    ) -> Result<T, WsError> {
        let s = self.authorize(action)?;
        let base = |outcome| {
            let e = AuditEntry::now(&s.username, Some(s.role), s.purpose, action, outcome);
            match &query {
                Some(q) => e.with_query(q.clone()),
                None => e,
            }
        };
        let result = run(&self.cache(), &s);
        match &result {
            Ok(value) => self.audit(base(Outcome::Allowed).with_patients(patients(value)))?,
            Err(e) => self.audit(base(Outcome::Error).with_detail(e.code))?,
        }
        result
    }

    pub fn panel_facets(&self) -> Result<Facets, WsError> {
        self.audited(
            Action::ViewPanel,
            Some("panel facets".into()),
            |c, _| queries::facets(c),
            |_| Vec::new(),
        )
    }

    pub fn panel_query(&self, q: &PanelQuery) -> Result<PanelPage, WsError> {
        let query = serde_json::to_string(q).unwrap_or_default();
        self.audited(
            Action::ViewPanel,
            Some(query),
            |c, s| queries::panel(c, q, s.scope.as_deref().map(|s| &s.patients)),
            |page| page.rows.iter().map(|r| r.id.clone()).collect(),
        )
    }

    /// One patient's timeline; a patient outside the caller's panel is refused and audited.
    pub fn patient_timeline(&self, patient_id: &str) -> Result<Timeline, WsError> {
        let s = self.authorize(Action::ViewTimeline)?;
        self.check_in_panel(&s, Action::ViewTimeline, patient_id)?;
        let id = patient_id.to_owned();
        self.audited(
            Action::ViewTimeline,
            None,
            |c, _| queries::timeline(c, patient_id),
            move |_| vec![id],
        )
    }

    pub fn audit_list(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, WsError> {
        let query = serde_json::to_string(f).unwrap_or_default();
        self.audited(
            Action::ViewAudit,
            Some(query),
            |c, _| queries::audit_list(c, f),
            |rows| {
                let mut ids: Vec<String> = rows
                    .iter()
                    .flat_map(|r| r.patients.iter().cloned())
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            },
        )
    }

    pub fn audit_verify(&self) -> Result<AuditVerification, WsError> {
        self.audited(
            Action::VerifyAudit,
            None,
            |c, _| queries::audit_verify(c),
            |_| Vec::new(),
        )
    }
}

fn locked_message(until_ms: i64, now_ms: i64) -> WsError {
    let left = (until_ms - now_ms).max(0);
    let wait = if left < 60_000 {
        format!("{} more second(s)", (left + 999) / 1000)
    } else {
        format!("{} more minute(s)", (left + 59_999) / 60_000)
    };
    WsError::new(
        "account_locked",
        format!(
            "Too many failed attempts: this account is locked for {wait}. Each further failure \
             makes the wait longer."
        ),
    )
}
