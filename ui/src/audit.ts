import { api, errorText, type AuditEntry, type AuditFilter } from "./api";
import { clear, h } from "./dom";

/** The privacy officer's view: who looked at which patient, and a chain check. */
export function auditView(onError: (e: unknown) => void): HTMLElement {
  const user = h("input", { id: "audit-user", type: "search", placeholder: "User", "aria-label": "User" });
  const patient = h("input", { id: "audit-patient", type: "search", placeholder: "Patient id", "aria-label": "Patient id" });
  const action = h(
    "select",
    { id: "audit-action", "aria-label": "Action" },
    h("option", { value: "" }, "Any action"),
    ...["view_panel", "view_timeline", "view_audit", "verify_audit", "login", "logout"].map((a) => h("option", { value: a }, a)),
  );
  const outcome = h(
    "select",
    { id: "audit-outcome", "aria-label": "Outcome" },
    h("option", { value: "" }, "Any outcome"),
    h("option", { value: "allowed" }, "allowed"),
    h("option", { value: "denied" }, "denied"),
    h("option", { value: "error" }, "error"),
  );
  const search = h("button", { id: "audit-search", type: "button" }, "Search");
  const verify = h("button", { id: "audit-verify", type: "button", class: "secondary" }, "Verify chain");
  const verifyResult = h("span", { id: "audit-verify-result", class: "muted" });
  const tbody = h("tbody");
  const table = h(
    "table",
    { id: "audit-table", class: "audit" },
    h("thead", {}, h("tr", {}, ...["#", "Time (UTC)", "User", "Role", "Purpose", "Action", "Patients / query", "Outcome"].map((c) => h("th", {}, c)))),
    tbody,
  );

  const filter = (): AuditFilter => ({
    user: user.value.trim() || null,
    patientId: patient.value.trim() || null,
    action: action.value || null,
    outcome: outcome.value || null,
    from: null,
    to: null,
    limit: 500,
  });

  const render = (rows: AuditEntry[]) => {
    clear(tbody);
    for (const r of rows) {
      tbody.append(
        h(
          "tr",
          { class: `audit-row outcome-${r.outcome}`, "data-seq": r.seq, "data-action": r.action },
          h("td", {}, String(r.seq)),
          h("td", {}, r.at),
          h("td", { class: "audit-user" }, r.user),
          h("td", {}, r.role),
          h("td", {}, r.purpose),
          h("td", { class: "audit-action" }, r.action),
          h("td", { class: "audit-patients" }, r.patients.length > 0 ? r.patients.join(", ") : (r.query ?? "")),
          h("td", {}, r.outcome),
        ),
      );
    }
    if (rows.length === 0) tbody.append(h("tr", {}, h("td", { colspan: "8", class: "muted" }, "No matching records.")));
  };

  const load = () => api.auditList(filter()).then(render, (e: unknown) => onError(e));
  search.addEventListener("click", () => void load());
  for (const input of [user, patient]) input.addEventListener("keydown", (ev) => ev.key === "Enter" && void load());
  verify.addEventListener("click", () => {
    verifyResult.textContent = "Verifying…";
    api.auditVerify().then(
      (v) => {
        verifyResult.className = v.ok ? "ok" : "error";
        verifyResult.textContent = v.ok
          ? `Chain intact: ${v.checked} records verified.`
          : `Chain broken at record #${v.brokenAt}: ${v.reason ?? "altered"}.`;
      },
      (e: unknown) => {
        verifyResult.className = "error";
        verifyResult.textContent = errorText(e);
      },
    );
  });

  void load();
  return h(
    "section",
    { id: "audit-view", class: "view" },
    h("div", { class: "toolbar" }, user, patient, action, outcome, search, verify, verifyResult),
    h("div", { class: "audit-scroll" }, table),
  );
}
