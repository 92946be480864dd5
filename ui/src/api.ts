// Typed wrappers over the Tauri commands. Every data command is checked for
// role and audited in Rust; the UI only mirrors what Rust allows.
import { invoke } from "@tauri-apps/api/core";

export type Role = "care_manager" | "clinician" | "quality_analyst" | "privacy_officer";

export interface StartupStatus {
  phase: "starting" | "generating" | "ready" | "failed";
  done: number;
  total: number;
  message: string;
  panelSize: number;
}

export interface SessionInfo {
  username: string;
  displayName: string;
  role: Role;
  roleLabel: string;
  purpose: string | null;
  purposeLabel: string | null;
  permissions: string[];
  idleTimeoutSecs: number;
}

export interface Purpose {
  code: string;
  label: string;
}

export type SortKey = "name" | "age" | "sex" | "provider" | "lastVisit";

export interface PanelQuery {
  name: string | null;
  ageMin: number | null;
  ageMax: number | null;
  sex: string | null;
  provider: string | null;
  condition: string | null;
  sort: SortKey;
  descending: boolean;
  offset: number;
  limit: number;
}

export interface PanelRow {
  id: string;
  name: string;
  age: number | null;
  sex: string;
  provider: string | null;
  conditions: string[];
  lastVisit: string | null;
}

export interface PanelPage {
  rows: PanelRow[];
  total: number;
}

export interface Facets {
  providers: { id: string; name: string }[];
  conditions: string[];
}

export interface Vital {
  date: string | null;
  value: string;
}

export interface TimelineEvent {
  date: string | null;
  kind: string;
  display: string;
  code: string | null;
  value: string | null;
  status: string | null;
}

export interface Timeline {
  patientId: string;
  name: string;
  birthDate: string | null;
  age: number | null;
  sex: string;
  provider: string | null;
  latestBloodPressure: Vital | null;
  latestHba1c: Vital | null;
  latestBmi: Vital | null;
  events: TimelineEvent[];
}

export interface AuditFilter {
  user: string | null;
  patientId: string | null;
  action: string | null;
  outcome: string | null;
  from: string | null;
  to: string | null;
  limit: number;
}

export interface AuditEntry {
  seq: number;
  at: string;
  user: string;
  role: string;
  purpose: string;
  action: string;
  patients: string[];
  query: string | null;
  outcome: string;
  hash: string;
}

export interface AuditVerification {
  ok: boolean;
  checked: number;
  brokenAt: number | null;
  reason: string | null;
}

/** An error from Rust: always a plain sentence, never a stack trace or PHI. */
export function errorText(e: unknown): string {
  if (typeof e === "string") return e;
  if (e && typeof e === "object" && "message" in e) return String((e as { message: unknown }).message);
  return "Something went wrong.";
}

export const api = {
  startupStatus: () => invoke<StartupStatus>("startup_status"),
  purposes: () => invoke<Purpose[]>("purposes"),
  session: () => invoke<SessionInfo | null>("current_session"),
  login: (username: string, passphrase: string) => invoke<SessionInfo>("login", { username, passphrase }),
  setPurpose: (purpose: string) => invoke<SessionInfo>("set_purpose", { purpose }),
  logout: () => invoke<void>("logout"),
  lock: () => invoke<void>("lock"),
  facets: () => invoke<Facets>("panel_facets"),
  panel: (query: PanelQuery) => invoke<PanelPage>("panel_query", { query }),
  timeline: (patientId: string) => invoke<Timeline>("patient_timeline", { patientId }),
  auditList: (filter: AuditFilter) => invoke<AuditEntry[]>("audit_list", { filter }),
  auditVerify: () => invoke<AuditVerification>("audit_verify"),
};

/** The error's stable code from Rust (e.g. "session_locked", "denied"). */
export function errorCode(e: unknown): string | null {
  if (e && typeof e === "object" && "code" in e) return String((e as { code: unknown }).code);
  return null;
}
