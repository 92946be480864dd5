//! What the UI sends and receives (camelCase JSON). Kept apart from the
//! cache's own types so the screen contract changes only on purpose.
//!
//! Every type here derives `ts_rs::TS`; its TypeScript binding is committed in
//! `ui/src/bindings/`, which the UI imports instead of declaring its own types.
//! After changing a type, regenerate them with
//! `PHM_UPDATE_BINDINGS=1 cargo test -p workstation --test ts_bindings`;
//! without the variable that test fails, naming the file, when they differ.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct StartupStatus {
    /// `starting`, `generating`, `ready` or `failed`.
    pub phase: String,
    pub done: u64,
    pub total: u64,
    pub message: String,
    pub panel_size: u64,
}

impl StartupStatus {
    pub fn starting(message: &str) -> StartupStatus {
        StartupStatus {
            phase: "starting".into(),
            message: message.into(),
            ..Default::default()
        }
    }

    pub fn generating(done: u64, total: u64) -> StartupStatus {
        StartupStatus {
            phase: "generating".into(),
            done,
            total,
            message: format!("Creating the demo panel: {done} of {total} patients…"),
            panel_size: 0,
        }
    }

    pub fn ready(panel_size: u64) -> StartupStatus {
        StartupStatus {
            phase: "ready".into(),
            done: 1,
            total: 1,
            message: format!("Ready: {panel_size} patients in the local cache."),
            panel_size,
        }
    }

    pub fn failed(e: &crate::WsError) -> StartupStatus {
        StartupStatus {
            phase: "failed".into(),
            message: e.message.clone(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub username: String,
    pub display_name: String,
    pub role: access::Role,
    pub role_label: String,
    #[ts(as = "Option<access::PurposeOfUse>")]
    pub purpose: Option<String>,
    pub purpose_label: Option<String>,
    /// Action ids the role allows, so the screen shows only what Rust will permit.
    pub permissions: Vec<access::Action>,
    pub idle_timeout_secs: u64,
    /// Signed in with a passphrase an administrator set: the new passphrase comes first.
    pub must_change_passphrase: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct Purpose {
    #[ts(as = "access::PurposeOfUse")]
    pub code: String,
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub enum SortKey {
    #[default]
    Name,
    Age,
    Sex,
    Provider,
    LastVisit,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct PanelQuery {
    pub name: Option<String>,
    pub age_min: Option<u32>,
    pub age_max: Option<u32>,
    pub sex: Option<String>,
    /// Practitioner id of the primary care provider.
    pub provider: Option<String>,
    /// An active condition's code or part of its name.
    pub condition: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PanelRow {
    pub id: String,
    pub name: String,
    pub age: Option<u32>,
    pub sex: String,
    pub provider: Option<String>,
    pub conditions: Vec<String>,
    pub last_visit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PanelPage {
    pub rows: Vec<PanelRow>,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct Provider {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct Facets {
    pub providers: Vec<Provider>,
    pub conditions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct Vital {
    pub date: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    /// The FHIR resource id (links a care gap's evidence to its event).
    pub resource_id: Option<String>,
    pub date: Option<String>,
    pub kind: String,
    pub display: String,
    pub code: Option<String>,
    pub value: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub patient_id: String,
    pub name: String,
    pub birth_date: Option<String>,
    pub age: Option<u32>,
    pub sex: String,
    pub provider: Option<String>,
    pub latest_blood_pressure: Option<Vital>,
    pub latest_hba1c: Option<Vital>,
    pub latest_bmi: Option<Vital>,
    /// Newest first.
    pub events: Vec<TimelineEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub patient_id: Option<String>,
    #[ts(as = "Option<access::Action>")]
    pub action: Option<String>,
    #[ts(as = "Option<access::Outcome>")]
    pub outcome: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub user: String,
    pub role: String,
    pub purpose: String,
    #[ts(as = "access::Action")]
    pub action: String,
    pub patients: Vec<String>,
    pub query: Option<String>,
    #[ts(as = "access::Outcome")]
    pub outcome: String,
    /// What happened, in words (`wrong passphrase`, `created account …`).
    pub detail: Option<String>,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    pub ok: bool,
    pub checked: u64,
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

/// Where the workstation syncs from. The private key never leaves Rust (it is in the
/// OS keyring); only the public JWKS is shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct SyncSettings {
    /// The EDW's FHIR base URL, e.g. `https://127.0.0.1:8443/fhir`.
    pub server_url: String,
    /// The client id `phm-edw client add` printed.
    pub client_id: String,
    /// A PEM certificate to trust for the server (a self-signed EDW); empty: the
    /// public web roots only.
    pub ca_pem: String,
    /// Background sync every this many minutes while signed in (0: only "Sync now").
    pub interval_minutes: u32,
}

/// A worklist action the EDW refused, kept for the user to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct RefusedAction {
    pub id: String,
    pub kind: String,
    pub patient_id: String,
    pub created_at: String,
    pub reason: String,
}

/// What the status line and the sync screen show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub configured: bool,
    pub running: bool,
    /// `idle`, `connecting`, `exporting`, `downloading`, `applying`, `sending`,
    /// `evaluating`, `done`, `failed`, `offline`.
    pub phase: String,
    pub message: String,
    pub resources: u64,
    pub bytes: u64,
    pub total_resources: Option<u64>,
    /// RFC 3339, the end of the last complete sync.
    pub last_synced_at: Option<String>,
    pub last_error: Option<String>,
    /// False after the last attempt could not reach the server.
    pub offline: bool,
    /// Actions waiting to be written back.
    pub pending_actions: u64,
    pub refused_actions: Vec<RefusedAction>,
    pub settings: SyncSettings,
    /// The workstation's public key set, for `phm-edw client add --jwks FILE`.
    pub public_jwks: String,
}

// ---------------------------------------------------------------------------------------------
// Quality dashboards (see `dashboard.rs`)
// ---------------------------------------------------------------------------------------------

/// Population counts summed over patients (one measure group, or a slice of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PopulationTally {
    pub initial_population: u64,
    pub denominator: u64,
    pub denominator_exclusion: u64,
    pub denominator_exception: u64,
    pub numerator: u64,
    pub numerator_exclusion: u64,
}

/// What the dashboard shows: one measure's detail when `measure` is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct DashboardQuery {
    pub measure: Option<String>,
}

/// One measure group on the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct MeasureRow {
    pub measure_id: String,
    pub group_id: String,
    /// `CMS125`.
    pub short_name: String,
    pub title: String,
    /// The short name, with the group when the measure has several.
    pub label: String,
    /// `increase` or `decrease` (lower is better).
    pub improvement: String,
    pub counts: PopulationTally,
    /// (numerator − numerator exclusions) / (denominator − exclusions − exceptions), 0..=1;
    /// `None` when that denominator is 0 or the group is not a proportion.
    pub rate: Option<f64>,
    /// The user-set target (0..=1).
    pub target: Option<f64>,
    /// Whether the rate meets the target (at least it; at most it for `decrease`).
    pub meets_target: Option<bool>,
    /// Open (or, while the period runs, prospective) gaps.
    pub open_gaps: u64,
    /// The rate now minus the rate at the end of the previous month (−1..=1); `None` when
    /// either is unknown (nothing was stored then, or an empty denominator).
    pub change_since_last_month: Option<f64>,
}

/// A measure group's numbers for one provider or one care team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct BreakdownRow {
    /// The practitioner's or the care team's (Group's) id.
    pub id: String,
    pub label: String,
    pub group_id: String,
    pub counts: PopulationTally,
    pub rate: Option<f64>,
    pub open_gaps: u64,
}

/// A chart rendered in Rust (SVG text: no fixed size, `<title>` and `<desc>`), with the same
/// data in the rows it was drawn from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ChartSvg {
    pub title: String,
    pub svg: String,
    /// For a chart of a measure's breakdown: what its bars are (a click on bar `i`, marked
    /// `data-bar="i"` in the SVG, lists the patients of `ids[i]`).
    pub bars: Option<ChartBars>,
}

/// The breakdown rows a chart's bars stand for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ChartBars {
    pub group_id: String,
    /// `provider` or `careTeam`.
    pub kind: String,
    /// The breakdown row id of each bar, in bar order.
    pub ids: Vec<String>,
}

/// One measure's detail: its groups, by provider and by care team, with charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct MeasureDetail {
    pub measure_id: String,
    pub short_name: String,
    pub title: String,
    pub groups: Vec<MeasureRow>,
    pub by_provider: Vec<BreakdownRow>,
    pub by_care_team: Vec<BreakdownRow>,
    /// One per group: by provider, then by care team.
    pub charts: Vec<ChartSvg>,
    /// Per group and stratifier, the counts and rate of each stratum (empty when the measure
    /// defines no evaluable stratifier).
    pub strata: Vec<StratumRow>,
    /// One per group and stratifier: the rate by stratum.
    pub strata_charts: Vec<ChartSvg>,
    /// Per group, each month of the measurement period so far.
    pub trend: Vec<TrendPoint>,
    /// One per proportion group with a rate in some month: the rate by month.
    pub trend_charts: Vec<ChartSvg>,
}

/// One measure group's results as stored at the end of one month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    pub group_id: String,
    /// `2026-03`.
    pub month: String,
    /// The day the results are from: the month's last, or today for the month under way.
    pub as_of: String,
    /// `None` when nothing was stored on that day (before the first evaluation).
    pub counts: Option<PopulationTally>,
    pub rate: Option<f64>,
}

/// The quality dashboard for the session's patients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// Whose numbers: `All patients`, `Your patients`, `Your care teams' panels`.
    pub scope: String,
    pub patients_in_scope: u64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub period_over: bool,
    /// When the stored results were last computed.
    pub evaluated_at: Option<String>,
    /// Every measure group, in short-name order.
    pub measures: Vec<MeasureRow>,
    /// Across all measures: summed counts and open gaps.
    pub total: PopulationTally,
    pub total_open_gaps: u64,
    pub measures_with_target: u64,
    pub measures_meeting_target: u64,
    /// Rate per measure group against its target.
    pub chart: ChartSvg,
    /// Why there is no trend by month (`None` once there is one).
    pub trend_note: Option<String>,
    pub detail: Option<MeasureDetail>,
}

/// The patients behind one dashboard number.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct DrillQuery {
    pub measure_id: String,
    pub group_id: String,
    /// A population code (`initial-population`, `denominator`, `denominator-exclusion`,
    /// `denominator-exception`, `numerator`, `numerator-exclusion`), `performance-not-met` or
    /// `open-gap`.
    pub population: String,
    /// Only this provider's patients (practitioner id).
    pub provider: Option<String>,
    /// Only this care team's patients (Group id).
    pub care_team: Option<String>,
    pub offset: u32,
    /// Default 100, at most 1000.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct DrillRow {
    pub patient_id: String,
    pub name: String,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub provider: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct DrillPage {
    pub rows: Vec<DrillRow>,
    pub total: u64,
    pub offset: u32,
    pub limit: u32,
}

/// What an export writes (see `Workstation::export`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// QRDA Category III XML for a CMS program year (2025 or 2026).
    #[default]
    Qrda3,
    /// One FHIR Bundle (collection) holding one summary MeasureReport per measure.
    MeasureReportSummary,
    /// One FHIR Bundle (collection) holding one subject-list MeasureReport per measure
    /// (the patients of each population as contained Lists).
    MeasureReportSubjectList,
    /// CSV: one row per patient × measure × group for the patients in the group's initial
    /// population, with the population flags.
    CsvMeasureResults,
    /// CSV: the rows of a worklist view (a saved view or the given filters), every page.
    CsvWorklist,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct ExportRequest {
    pub kind: ExportKind,
    /// QRDA III only: the CMS program year whose implementation guide the file follows,
    /// 2025 or 2026.
    pub program_year: Option<u32>,
    /// The measurement period (1 January – 31 December of this year); default the app's
    /// measurement year (the year of the panel's latest data, or the chosen setting).
    pub measurement_year: Option<i32>,
    /// Measure ids (or CMS short names such as `CMS122`); empty for every shipped measure.
    /// Not used by `csv_worklist`.
    pub measures: Vec<String>,
    /// `csv_worklist`: the name of one of the user's saved views...
    pub saved_view: Option<String>,
    /// ...or else these filters (the whole result, not one page).
    pub worklist: Option<crate::WorklistQuery>,
    /// The file to write: an absolute path in an existing, writable folder.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ExportResult {
    pub kind: ExportKind,
    pub path: String,
    pub bytes: u64,
    /// SHA-256 of the file written, lowercase hex (also in the audit record).
    pub sha256: String,
    /// The measures exported (none for a worklist).
    pub measures: Vec<String>,
    /// Patients evaluated (measure exports) or listed (worklist).
    pub patients: u64,
    /// Data rows (CSV) or MeasureReports / measures (FHIR, QRDA).
    pub rows: u64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    /// Things worth knowing that did not stop the export (e.g. a program year that differs
    /// from the measurement period).
    pub warnings: Vec<String>,
    /// Whether the patients were evaluated for this export (the stored results were not
    /// current for its year) rather than read from the stored results.
    pub evaluated_now: bool,
}

/// What the export screen offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ExportOptions {
    pub measures: Vec<crate::Choice>,
    pub program_years: Vec<u32>,
    pub measurement_year: i32,
    pub saved_views: Vec<String>,
}

/// One stratum of a measure group's stratifier: the populations of the patients whose
/// stratifier value is `value` (the engine's summary MeasureReport `stratum`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct StratumRow {
    pub group_id: String,
    /// `Measure.group.stratifier.id`.
    pub stratifier_id: String,
    /// The stratifier's text (its code's text, or its criteria expression).
    pub stratifier: String,
    /// The stratum's value as text (`MeasureReport...stratum.value.text`).
    pub value: String,
    pub counts: PopulationTally,
    pub rate: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Population page (see `dashboard/population.rs`)
// ---------------------------------------------------------------------------------------------

/// One bar (and table row) of a population chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PopulationBucket {
    /// What a drill-down asks for (`PopulationDrillQuery::key`): an age band (`18-34`), a sex
    /// (`female`, `unknown`), a condition's name, a month (`2025-03`), a practitioner id (empty
    /// for no primary-care provider).
    pub key: String,
    pub label: String,
    /// The charted number: patients, or visits for `visits`.
    pub count: u64,
    /// The distinct patients behind it (equal to `count` except for visits).
    pub patients: u64,
}

/// One chart of the population page with its numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PopulationSection {
    /// `age`, `sex`, `condition`, `visits` or `provider`.
    pub dimension: String,
    /// What `count` counts: `Patients` or `Visits`.
    pub unit: String,
    pub rows: Vec<PopulationBucket>,
    /// Bars in `rows` order; each drawn bar carries `data-bar` = its row index.
    pub chart: ChartSvg,
}

/// The population page for the patients the session may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PopulationView {
    /// Whose patients: `All patients`, `Your patients`, `Your care teams' panels`.
    pub scope: String,
    pub patients_in_scope: u64,
    /// The day ages are computed on (YYYY-MM-DD).
    pub as_of: String,
    /// Age bands, sex, the 10 most common active conditions, visits per month over the last
    /// 12 months of data, patients per primary-care provider.
    pub sections: Vec<PopulationSection>,
}

/// The patients behind one number of the population page.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct PopulationDrillQuery {
    /// `age`, `sex`, `condition`, `visits` or `provider`.
    pub dimension: String,
    /// A [`PopulationBucket::key`].
    pub key: String,
    pub offset: u32,
    /// Default 100, at most 1000.
    pub limit: u32,
}
