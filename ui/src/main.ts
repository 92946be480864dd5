import { api, errorCode, errorText, type SessionInfo } from "./api";
import { auditView } from "./audit";
import { clear, h } from "./dom";
import { panelView } from "./panel";
import { timelineView } from "./timeline";

const app = document.getElementById("app")!;
let session: SessionInfo | null = null;
let panelCache: HTMLElement | null = null;

function banner(message: string): void {
  const existing = document.getElementById("error-banner");
  existing?.remove();
  const close = h("button", { type: "button", class: "link", "aria-label": "Dismiss" }, "×");
  const el = h("div", { id: "error-banner", role: "alert", class: "banner error" }, h("span", { id: "error-text" }, message), close);
  close.addEventListener("click", () => el.remove());
  document.body.prepend(el);
}

/** Errors that end the session send the user back to sign-in. */
function onError(e: unknown): void {
  const code = errorCode(e);
  if (code === "session_locked" || code === "not_signed_in") {
    session = null;
    panelCache = null;
    void showLogin(errorText(e));
    return;
  }
  banner(errorText(e));
}

async function showStartup(): Promise<void> {
  const bar = h("progress", { id: "startup-progress", max: "100", value: "0" });
  const text = h("p", { id: "startup-text", class: "muted" }, "Opening the encrypted cache…");
  clear(app);
  app.append(h("main", { class: "center" }, h("h1", {}, "PHM Workstation"), bar, text));
  for (;;) {
    let status;
    try {
      status = await api.startupStatus();
    } catch (e) {
      text.textContent = errorText(e);
      return;
    }
    if (status.total > 0) bar.value = Math.floor((100 * status.done) / status.total);
    text.textContent = status.message;
    if (status.phase === "ready") break;
    if (status.phase === "failed") {
      text.className = "error";
      return;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  session = await api.session().catch(() => null);
  if (session?.purpose) showShell("panel");
  else if (session) void showPurpose();
  else void showLogin(null);
}

async function showLogin(message: string | null): Promise<void> {
  const user = h("input", { id: "login-user", autocomplete: "username", required: true, autofocus: true });
  const pass = h("input", { id: "login-pass", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { id: "login-error", class: "error", role: "alert" }, message ?? "");
  const submit = h("button", { id: "login-submit", type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card", id: "login-form" },
    h("h1", {}, "PHM Workstation"),
    h("label", {}, "User name", user),
    h("label", {}, "Passphrase", pass),
    submit,
    error,
    h("p", { class: "muted small" }, "Demo accounts: caremanager, clinician, quality, privacy — passphrase “demo-” + user name."),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    api.login(user.value.trim(), pass.value).then(
      (s) => {
        session = s;
        pass.value = "";
        void showPurpose();
      },
      (e: unknown) => {
        submit.disabled = false;
        pass.value = "";
        error.textContent = errorText(e);
        pass.focus();
      },
    );
  });
  clear(app);
  app.append(h("main", { class: "center" }, form));
  user.focus();
}

async function showPurpose(): Promise<void> {
  const purposes = await api.purposes();
  const select = h("select", { id: "purpose-select", "aria-label": "Purpose of use" }, ...purposes.map((p) => h("option", { value: p.code }, p.label)));
  const submit = h("button", { id: "purpose-submit", type: "submit" }, "Continue");
  const form = h(
    "form",
    { class: "card", id: "purpose-form" },
    h("h1", {}, "Purpose of use"),
    h("p", {}, `Signed in as ${session?.displayName ?? ""} (${session?.roleLabel ?? ""}). Why are you accessing patient data in this session? It is recorded with every access.`),
    select,
    submit,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    api.setPurpose(select.value).then((s) => {
      session = s;
      showShell(s.permissions.includes("view_panel") ? "panel" : "audit");
    }, onError);
  });
  clear(app);
  app.append(h("main", { class: "center" }, form));
  select.focus();
}

type Tab = "panel" | "audit";

function showShell(tab: Tab): void {
  if (!session) return;
  const content = h("div", { class: "content", id: "content" });
  const nav = h("nav", { class: "tabs" });
  const tabs: { key: Tab; label: string; permission: string }[] = [
    { key: "panel", label: "Panel", permission: "view_panel" },
    { key: "audit", label: "Audit trail", permission: "view_audit" },
  ];
  // Rust enforces roles; hiding tabs only keeps the screen honest about them.
  for (const t of tabs) {
    const b = h("button", { id: `nav-${t.key}`, type: "button", class: t.key === tab ? "tab active" : "tab", hidden: !session.permissions.includes(t.permission) }, t.label);
    b.addEventListener("click", () => showShell(t.key));
    nav.append(b);
  }
  const lock = h("button", { id: "lock", type: "button", class: "secondary", title: "Lock (Ctrl+L)" }, "Lock");
  lock.addEventListener("click", () => void api.lock().finally(() => onError({ code: "session_locked", message: "Locked. Sign in to continue." })));
  const logout = h("button", { id: "logout", type: "button", class: "secondary" }, "Sign out");
  logout.addEventListener("click", () => {
    void api.logout().finally(() => {
      session = null;
      panelCache = null;
      void showLogin(null);
    });
  });
  const who = h("span", { id: "who", class: "muted" }, `${session.displayName} · ${session.roleLabel} · ${session.purposeLabel ?? ""}`);
  clear(app);
  app.append(h("header", { class: "appbar" }, h("strong", {}, "PHM Workstation"), nav, who, lock, logout), content);

  if (tab === "panel") {
    panelCache ??= panelView(openPatient, onError);
    content.append(panelCache);
  } else {
    content.append(auditView(onError));
  }

  function openPatient(id: string): void {
    const back = () => {
      clear(content);
      if (panelCache) content.append(panelCache);
    };
    clear(content);
    content.append(timelineView(id, back, onError));
  }
}

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey && ev.key.toLowerCase() === "l" && session) {
    ev.preventDefault();
    document.getElementById("lock")?.click();
  }
});
window.addEventListener("unhandledrejection", (ev) => onError(ev.reason));

// Lock the screen after the idle timeout even if no command runs; Rust enforces
// the same timeout on every command regardless of what the screen does.
let lastActivity = Date.now();
for (const ev of ["keydown", "mousedown", "mousemove", "wheel"]) {
  document.addEventListener(ev, () => (lastActivity = Date.now()), { passive: true });
}
window.setInterval(() => {
  if (session && Date.now() - lastActivity > session.idleTimeoutSecs * 1000) {
    void api.lock().finally(() => onError({ code: "session_locked", message: "The session was locked after a period of inactivity. Sign in again to continue." }));
  }
}, 15_000);

void showStartup();
