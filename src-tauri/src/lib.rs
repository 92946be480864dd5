//! The Tauri shell: window, state and thin commands. Each command asks the
//! `workstation` library, which checks the role, writes the audit record and
//! returns plain-language errors; nothing here touches data directly.

pub mod cli;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

pub use cli::RunOptions;
use tauri::{Manager, State};
use workstation::{
    ActionOutcome, ActionRequest, AuditFilter, AuditRow, AuditVerification, EvaluationStatus,
    Facets, PanelPage, PanelQuery, PatientGaps, Purpose, SessionInfo, StartupStatus, SyncSettings,
    SyncStatus, Timeline, WorklistFacets, WorklistPage, WorklistQuery, Workstation, WsError,
};

/// Shared between the startup thread and the commands.
#[derive(Default)]
struct AppState {
    workstation: OnceLock<Workstation>,
    startup: Arc<Mutex<StartupStatus>>,
    /// The configuration `setup` built (data folder, demo mode), for the diagnostics.
    config: OnceLock<workstation::Config>,
}

impl AppState {
    fn ws(&self) -> Result<&Workstation, WsError> {
        self.workstation.get().ok_or_else(WsError::starting)
    }
}

#[tauri::command]
fn startup_status(state: State<'_, AppState>) -> StartupStatus {
    state.startup.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Plain text for support (`workstation::diagnostics`): versions, counts, the sync summary,
/// the data folder and the end of the newest log. It holds no PHI, so anyone may copy it,
/// signed in or not, even while the cache is opening or when it failed to open (when
/// support is needed most); it reads no patient's data and is therefore not audited.
#[tauri::command(async)]
fn diagnostics(state: State<'_, AppState>) -> Result<String, WsError> {
    let config = state.config.get().ok_or_else(WsError::starting)?;
    let startup = state.startup.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(workstation::diagnostics(
        env!("CARGO_PKG_VERSION"),
        config,
        &startup,
        state.workstation.get(),
    ))
}

#[tauri::command]
fn purposes() -> Vec<Purpose> {
    workstation::purposes()
}

#[tauri::command(async)]
fn current_session(state: State<'_, AppState>) -> Result<Option<SessionInfo>, WsError> {
    Ok(state.ws()?.current_session())
}

#[tauri::command(async)]
fn login(
    state: State<'_, AppState>,
    username: String,
    passphrase: String,
) -> Result<SessionInfo, WsError> {
    state.ws()?.login(&username, &passphrase)
}

#[tauri::command(async)]
fn set_purpose(state: State<'_, AppState>, purpose: String) -> Result<SessionInfo, WsError> {
    state.ws()?.set_purpose(&purpose)
}

#[tauri::command(async)]
fn logout(state: State<'_, AppState>) -> Result<(), WsError> {
    state.ws()?.logout();
    Ok(())
}

#[tauri::command(async)]
fn lock(state: State<'_, AppState>) -> Result<(), WsError> {
    state.ws()?.lock();
    Ok(())
}

#[tauri::command(async)]
fn panel_facets(state: State<'_, AppState>) -> Result<Facets, WsError> {
    state.ws()?.panel_facets()
}

#[tauri::command(async)]
fn panel_query(state: State<'_, AppState>, query: PanelQuery) -> Result<PanelPage, WsError> {
    state.ws()?.panel_query(&query)
}

#[tauri::command(async)]
fn patient_timeline(state: State<'_, AppState>, patient_id: String) -> Result<Timeline, WsError> {
    state.ws()?.patient_timeline(&patient_id)
}

#[tauri::command(async)]
fn audit_list(state: State<'_, AppState>, filter: AuditFilter) -> Result<Vec<AuditRow>, WsError> {
    state.ws()?.audit_list(&filter)
}

#[tauri::command(async)]
fn audit_verify(state: State<'_, AppState>) -> Result<AuditVerification, WsError> {
    state.ws()?.audit_verify()
}

#[tauri::command(async)]
fn evaluation_status(state: State<'_, AppState>) -> Result<EvaluationStatus, WsError> {
    Ok(state.ws()?.evaluation_status())
}

#[tauri::command(async)]
fn worklist(state: State<'_, AppState>, query: WorklistQuery) -> Result<WorklistPage, WsError> {
    state.ws()?.worklist(&query)
}

#[tauri::command(async)]
fn worklist_facets(state: State<'_, AppState>) -> Result<WorklistFacets, WsError> {
    state.ws()?.worklist_facets()
}

#[tauri::command(async)]
fn save_worklist_view(
    state: State<'_, AppState>,
    name: String,
    query: WorklistQuery,
) -> Result<(), WsError> {
    state.ws()?.save_worklist_view(&name, &query)
}

#[tauri::command(async)]
fn delete_worklist_view(state: State<'_, AppState>, name: String) -> Result<(), WsError> {
    state.ws()?.delete_worklist_view(&name)
}

#[tauri::command(async)]
fn patient_gaps(state: State<'_, AppState>, patient_id: String) -> Result<PatientGaps, WsError> {
    state.ws()?.patient_gaps(&patient_id)
}

#[tauri::command(async)]
fn worklist_action(
    state: State<'_, AppState>,
    request: ActionRequest,
) -> Result<Vec<ActionOutcome>, WsError> {
    state.ws()?.worklist_action(&request)
}

#[tauri::command(async)]
fn value_set_codes(
    state: State<'_, AppState>,
    url: String,
    search: String,
) -> Result<Vec<workstation::CodeChoice>, WsError> {
    state.ws()?.value_set_codes(&url, &search)
}

/// Stores the choice, then re-evaluates the panel off the UI thread (progress through
/// `evaluation_status`).
#[tauri::command(async)]
fn set_measurement_period(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    choice: String,
) -> Result<(), WsError> {
    state.ws()?.set_measurement_period(&choice)?;
    std::thread::spawn(move || {
        if let Ok(ws) = app.state::<AppState>().ws() {
            let _ = ws.evaluate_panel(&|_| {});
        }
    });
    Ok(())
}

#[tauri::command(async)]
fn sync_status(state: State<'_, AppState>) -> Result<SyncStatus, WsError> {
    state.ws()?.sync_status()
}

#[tauri::command(async)]
fn save_sync_settings(
    state: State<'_, AppState>,
    settings: SyncSettings,
) -> Result<SyncStatus, WsError> {
    state.ws()?.save_sync_settings(&settings)
}

#[tauri::command(async)]
fn save_sync_jwks(state: State<'_, AppState>, path: String) -> Result<(), WsError> {
    state.ws()?.save_sync_jwks(&path)
}

/// Starts a sync off the UI thread; progress through `sync_status`.
#[tauri::command(async)]
fn sync_now(app: tauri::AppHandle, state: State<'_, AppState>) -> Result<SyncStatus, WsError> {
    let ws = state.ws()?;
    if ws.begin_sync()? {
        spawn_sync(app);
    }
    ws.sync_status()
}

#[tauri::command(async)]
fn dashboard(
    state: State<'_, AppState>,
    query: workstation::DashboardQuery,
) -> Result<workstation::Dashboard, WsError> {
    state.ws()?.dashboard(&query)
}

#[tauri::command(async)]
fn dashboard_patients(
    state: State<'_, AppState>,
    query: workstation::DrillQuery,
) -> Result<workstation::DrillPage, WsError> {
    state.ws()?.dashboard_patients(&query)
}

#[tauri::command(async)]
fn set_dashboard_target(
    state: State<'_, AppState>,
    measure_id: String,
    target: Option<f64>,
) -> Result<(), WsError> {
    state.ws()?.set_dashboard_target(&measure_id, target)
}

/// Writes a QRDA III, FHIR MeasureReport or CSV export (quality analyst only; audited with
/// the file's SHA-256).
#[tauri::command(async)]
fn export_report(
    state: State<'_, AppState>,
    request: workstation::ExportRequest,
) -> Result<workstation::ExportResult, WsError> {
    state.ws()?.export(&request)
}

#[tauri::command(async)]
fn export_options(state: State<'_, AppState>) -> Result<workstation::ExportOptions, WsError> {
    state.ws()?.export_options()
}

/// The population page for the session's patients (the dashboard's roles; audited).
#[tauri::command(async)]
fn population(state: State<'_, AppState>) -> Result<workstation::PopulationView, WsError> {
    state.ws()?.population()
}

/// The patients behind one number of the population page (audited with their ids).
#[tauri::command(async)]
fn population_patients(
    state: State<'_, AppState>,
    query: workstation::PopulationDrillQuery,
) -> Result<workstation::DrillPage, WsError> {
    state.ws()?.population_patients(&query)
}

fn spawn_sync(app: tauri::AppHandle) {
    std::thread::spawn(move || {
        if let Ok(ws) = app.state::<AppState>().ws() {
            let _ = ws.run_sync();
        }
    });
}

// ---- Accounts (crates/workstation/src/accounts.rs) ----

#[tauri::command(async)]
fn app_mode(state: State<'_, AppState>) -> Result<workstation::AppMode, WsError> {
    state.ws()?.app_mode()
}

#[tauri::command(async)]
fn create_first_administrator(
    state: State<'_, AppState>,
    username: String,
    display_name: String,
    passphrase: String,
) -> Result<workstation::AppMode, WsError> {
    state
        .ws()?
        .create_first_administrator(&username, &display_name, &passphrase)
}

#[tauri::command(async)]
fn list_accounts(state: State<'_, AppState>) -> Result<Vec<workstation::AccountRow>, WsError> {
    state.ws()?.list_accounts()
}

#[tauri::command(async)]
fn account_options(state: State<'_, AppState>) -> Result<workstation::AccountOptions, WsError> {
    state.ws()?.account_options()
}

#[tauri::command(async)]
fn create_account(
    state: State<'_, AppState>,
    account: workstation::NewAccount,
) -> Result<workstation::AccountRow, WsError> {
    state.ws()?.create_account(&account)
}

#[tauri::command(async)]
fn update_account(
    state: State<'_, AppState>,
    change: workstation::AccountChange,
) -> Result<workstation::AccountRow, WsError> {
    state.ws()?.update_account(&change)
}

#[tauri::command(async)]
fn set_account_disabled(
    state: State<'_, AppState>,
    username: String,
    disabled: bool,
) -> Result<workstation::AccountRow, WsError> {
    state.ws()?.set_account_disabled(&username, disabled)
}

#[tauri::command(async)]
fn unlock_account(
    state: State<'_, AppState>,
    username: String,
) -> Result<workstation::AccountRow, WsError> {
    state.ws()?.unlock_account(&username)
}

#[tauri::command(async)]
fn reset_account_passphrase(
    state: State<'_, AppState>,
    username: String,
    temporary: String,
) -> Result<workstation::AccountRow, WsError> {
    state.ws()?.reset_account_passphrase(&username, &temporary)
}

#[tauri::command(async)]
fn change_own_passphrase(
    state: State<'_, AppState>,
    current: String,
    next: String,
) -> Result<SessionInfo, WsError> {
    state.ws()?.change_own_passphrase(&current, &next)
}

/// Background sync while someone who may sync is signed in, every N minutes (settings).
fn schedule_syncs(app: tauri::AppHandle) {
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let state = app.state::<AppState>();
        let Ok(ws) = state.ws() else { continue };
        if ws.sync_due() && ws.begin_sync().unwrap_or(false) {
            let _ = ws.run_sync();
        }
    });
}

/// Logs to stderr and to `<data dir>/logs/` (rotated daily, [`workstation::LOG_MAX_FILES`]
/// files kept), filtered by `PHM_LOG` (default `info`). Log lines never hold PHI: codes,
/// counts and kinds only. Without a writable log folder, stderr only (and a warning).
fn init_logging(data_dir: &Path) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PHM_LOG").unwrap_or_else(|_| "info".into());
    let dir = workstation::log_dir(data_dir);
    let file = std::fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix(workstation::LOG_FILE_PREFIX)
                .filename_suffix(workstation::LOG_FILE_SUFFIX)
                .max_log_files(workstation::LOG_MAX_FILES)
                .build(&dir)
                .map_err(|e| e.to_string())
        });
    let (file_layer, file_error) = match file {
        // Written in place (a few lines a minute): nothing lost at exit, no writer thread.
        Ok(appender) => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(appender)
                    .boxed(),
            ),
            None,
        ),
        Err(e) => (None, Some(e)),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(file_layer)
        .try_init();
    if let Some(e) = file_error {
        tracing::warn!(error = %e, "no log file; logging to stderr only");
    }
}

/// Opens the window. `options` comes from the command line ([`cli::parse`]).
pub fn run(options: RunOptions) {
    tauri::Builder::default()
        .manage(AppState::default())
        .setup(move |app| {
            let mut config = workstation::Config::from_env(app.path().app_data_dir().ok());
            config.demo = options.demo;
            // Logging starts here, where the data folder is known (the one the cache uses).
            init_logging(&config.data_dir);
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                demo = config.demo,
                "started"
            );
            let _ = app.state::<AppState>().config.set(config.clone());
            let handle = app.handle().clone();
            schedule_syncs(handle.clone());
            // Opening the cache (and generating the demo panel on first launch) runs off the
            // UI thread; the window polls `startup_status` and shows the progress bar.
            std::thread::spawn(move || {
                let state = handle.state::<AppState>();
                let progress = state.startup.clone();
                let report = move |s: StartupStatus| {
                    if let Ok(mut slot) = progress.lock() {
                        *slot = s;
                    }
                };
                match Workstation::open(&config, &report) {
                    Ok(ws) => {
                        let size = ws.panel_size();
                        tracing::info!(patients = size, "cache opened");
                        let _ = state.workstation.set(ws);
                        report(StartupStatus::ready(size));
                        // Care gaps: evaluate the patients whose data changed (all, the first
                        // time); the worklist shows the stored results meanwhile.
                        if let Some(ws) = state.workstation.get() {
                            let _ = ws.evaluate_panel(&|_| {});
                        }
                    }
                    Err(e) => {
                        tracing::error!(code = e.code, "startup failed");
                        report(StartupStatus::failed(&e));
                    }
                }
            });
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            startup_status,
            diagnostics,
            purposes,
            current_session,
            login,
            set_purpose,
            logout,
            lock,
            panel_facets,
            panel_query,
            patient_timeline,
            audit_list,
            audit_verify,
            evaluation_status,
            worklist,
            worklist_facets,
            save_worklist_view,
            delete_worklist_view,
            patient_gaps,
            worklist_action,
            set_measurement_period,
            value_set_codes,
            sync_status,
            save_sync_settings,
            save_sync_jwks,
            sync_now,
            dashboard,
            dashboard_patients,
            set_dashboard_target,
            export_report,
            export_options,
            population,
            population_patients,
            app_mode,
            create_first_administrator,
            list_accounts,
            account_options,
            create_account,
            update_account,
            set_account_disabled,
            unlock_account,
            reset_account_passphrase,
            change_own_passphrase,
        ])
        .run(tauri::generate_context!())
        .expect("the application window could not be started");
}
