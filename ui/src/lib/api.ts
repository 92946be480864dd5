// Typed wrappers over the Tauri commands (src-tauri/src/lib.rs). Every type
// here is generated from the Rust DTOs into ../bindings (see
// crates/workstation/tests/ts_bindings.rs); none is declared by hand.
// Every data command is checked for role and audited in Rust; the UI only
// mirrors what Rust allows.
import { invoke } from "@tauri-apps/api/core";
import type { AccountChange } from "../bindings/AccountChange";
import type { AccountOptions } from "../bindings/AccountOptions";
import type { AccountRow } from "../bindings/AccountRow";
import type { AppMode } from "../bindings/AppMode";
import type { NewAccount } from "../bindings/NewAccount";
import type { ActionOutcome } from "../bindings/ActionOutcome";
import type { ActionRequest } from "../bindings/ActionRequest";
import type { AuditFilter } from "../bindings/AuditFilter";
import type { AuditRow } from "../bindings/AuditRow";
import type { AuditVerification } from "../bindings/AuditVerification";
import type { CodeChoice } from "../bindings/CodeChoice";
import type { Dashboard } from "../bindings/Dashboard";
import type { DashboardQuery } from "../bindings/DashboardQuery";
import type { DrillPage } from "../bindings/DrillPage";
import type { DrillQuery } from "../bindings/DrillQuery";
import type { EvaluationStatus } from "../bindings/EvaluationStatus";
import type { ExportOptions } from "../bindings/ExportOptions";
import type { ExportRequest } from "../bindings/ExportRequest";
import type { ExportResult } from "../bindings/ExportResult";
import type { Facets } from "../bindings/Facets";
import type { PanelPage } from "../bindings/PanelPage";
import type { PanelQuery } from "../bindings/PanelQuery";
import type { PatientGaps } from "../bindings/PatientGaps";
import type { PopulationDrillQuery } from "../bindings/PopulationDrillQuery";
import type { PopulationView } from "../bindings/PopulationView";
import type { Purpose } from "../bindings/Purpose";
import type { PurposeOfUse } from "../bindings/PurposeOfUse";
import type { SessionInfo } from "../bindings/SessionInfo";
import type { StartupStatus } from "../bindings/StartupStatus";
import type { SyncSettings } from "../bindings/SyncSettings";
import type { SyncStatus } from "../bindings/SyncStatus";
import type { Timeline } from "../bindings/Timeline";
import type { WorklistFacets } from "../bindings/WorklistFacets";
import type { WorklistPage } from "../bindings/WorklistPage";
import type { WorklistQuery } from "../bindings/WorklistQuery";
import type { WsError } from "../bindings/WsError";

export const api = {
  startupStatus: () => invoke<StartupStatus>("startup_status"),
  appMode: () => invoke<AppMode>("app_mode"),
  createFirstAdministrator: (username: string, displayName: string, passphrase: string) =>
    invoke<AppMode>("create_first_administrator", { username, displayName, passphrase }),
  listAccounts: () => invoke<AccountRow[]>("list_accounts"),
  accountOptions: () => invoke<AccountOptions>("account_options"),
  createAccount: (account: NewAccount) => invoke<AccountRow>("create_account", { account }),
  updateAccount: (change: AccountChange) => invoke<AccountRow>("update_account", { change }),
  setAccountDisabled: (username: string, disabled: boolean) => invoke<AccountRow>("set_account_disabled", { username, disabled }),
  unlockAccount: (username: string) => invoke<AccountRow>("unlock_account", { username }),
  resetAccountPassphrase: (username: string, temporary: string) => invoke<AccountRow>("reset_account_passphrase", { username, temporary }),
  changeOwnPassphrase: (current: string, next: string) => invoke<SessionInfo>("change_own_passphrase", { current, next }),
  purposes: () => invoke<Purpose[]>("purposes"),
  session: () => invoke<SessionInfo | null>("current_session"),
  login: (username: string, passphrase: string) => invoke<SessionInfo>("login", { username, passphrase }),
  setPurpose: (purpose: PurposeOfUse) => invoke<SessionInfo>("set_purpose", { purpose }),
  logout: () => invoke<void>("logout"),
  lock: () => invoke<void>("lock"),
  facets: () => invoke<Facets>("panel_facets"),
  panel: (query: PanelQuery) => invoke<PanelPage>("panel_query", { query }),
  timeline: (patientId: string) => invoke<Timeline>("patient_timeline", { patientId }),
  auditList: (filter: AuditFilter) => invoke<AuditRow[]>("audit_list", { filter }),
  auditVerify: () => invoke<AuditVerification>("audit_verify"),
  evaluationStatus: () => invoke<EvaluationStatus>("evaluation_status"),
  worklist: (query: WorklistQuery) => invoke<WorklistPage>("worklist", { query }),
  worklistFacets: () => invoke<WorklistFacets>("worklist_facets"),
  saveWorklistView: (name: string, query: WorklistQuery) => invoke<void>("save_worklist_view", { name, query }),
  deleteWorklistView: (name: string) => invoke<void>("delete_worklist_view", { name }),
  patientGaps: (patientId: string) => invoke<PatientGaps>("patient_gaps", { patientId }),
  worklistAction: (request: ActionRequest) => invoke<ActionOutcome[]>("worklist_action", { request }),
  setMeasurementPeriod: (choice: string) => invoke<void>("set_measurement_period", { choice }),
  valueSetCodes: (url: string, search: string) => invoke<CodeChoice[]>("value_set_codes", { url, search }),
  syncStatus: () => invoke<SyncStatus>("sync_status"),
  saveSyncSettings: (settings: SyncSettings) => invoke<SyncStatus>("save_sync_settings", { settings }),
  syncNow: () => invoke<SyncStatus>("sync_now"),
  saveSyncJwks: (path: string) => invoke<void>("save_sync_jwks", { path }),
  dashboard: (query: DashboardQuery) => invoke<Dashboard>("dashboard", { query }),
  dashboardPatients: (query: DrillQuery) => invoke<DrillPage>("dashboard_patients", { query }),
  setDashboardTarget: (measureId: string, target: number | null) => invoke<void>("set_dashboard_target", { measureId, target }),
  exportOptions: () => invoke<ExportOptions>("export_options"),
  exportReport: (request: ExportRequest) => invoke<ExportResult>("export_report", { request }),
  population: () => invoke<PopulationView>("population"),
  populationPatients: (query: PopulationDrillQuery) => invoke<DrillPage>("population_patients", { query }),
  diagnostics: () => invoke<string>("diagnostics"),
};

/** Whether a rejected command's reason is a `WsError` from Rust. */
export function isWsError(e: unknown): e is WsError {
  return typeof e === "object" && e !== null && typeof (e as WsError).code === "string" && typeof (e as WsError).message === "string";
}

/** An error from Rust: always a plain sentence, never a stack trace or PHI. */
export function errorText(e: unknown): string {
  if (typeof e === "string") return e;
  if (isWsError(e)) return e.message;
  if (e instanceof Error) return e.message;
  return "Something went wrong.";
}

/** The error's stable code from Rust (e.g. "session_locked", "denied"). */
export function errorCode(e: unknown): string | null {
  return isWsError(e) ? e.code : null;
}
