import type { Action } from "../bindings/Action";
import { session } from "./session.svelte";

/** Every screen, with its parameters. App.svelte shows exactly one; leaving a
 * route destroys its component and with it every listener, timer and observer. */
export type Route =
  | { name: "startup" }
  | { name: "login"; message: string | null }
  | { name: "purpose" }
  | { name: "first-run" }
  | { name: "change-passphrase"; forced: boolean }
  | { name: "accounts" }
  | { name: "panel" }
  | { name: "worklist" }
  | { name: "dashboard" }
  | { name: "exports" }
  | { name: "patient"; patientId: string; from?: "panel" | "worklist" | "dashboard" }
  | { name: "audit" }
  | { name: "sync" };

export type RouteName = Route["name"];

/** Screens inside the signed-in shell, with the permission each needs. */
const SHELL: Partial<Record<RouteName, Action>> = {
  panel: "view_panel",
  worklist: "view_worklist",
  dashboard: "view_measures",
  exports: "export_reports",
  patient: "view_timeline",
  audit: "view_audit",
  sync: "sync",
  accounts: "manage_accounts",
};

export function inShell(route: Route): boolean {
  return route.name in SHELL || route.name === "change-passphrase";
}

class Router {
  current = $state<Route>({ name: "startup" });
}

export const router = new Router();

/** Where the session belongs now: sign-in, purpose of use, or its first permitted screen. */
export function home(message: string | null = null): Route {
  const s = session.current;
  if (!s) return { name: "login", message };
  if (s.mustChangePassphrase) return { name: "change-passphrase", forced: true };
  // The administrator sees no patient data: no purpose of use to declare.
  if (session.can("manage_accounts")) return { name: "accounts" };
  if (!s.purpose) return { name: "purpose" };
  if (session.can("view_worklist")) return { name: "worklist" };
  return session.can("view_panel") ? { name: "panel" } : { name: "audit" };
}

/** Shows `route`, or the session's home when it may not be shown (no session,
 * no purpose, or a role without the permission; Rust would refuse anyway). */
export function navigate(route: Route): void {
  const needed = SHELL[route.name];
  const needsPurpose = needed !== "manage_accounts";
  if (needed && ((needsPurpose && !session.current?.purpose) || !session.can(needed))) {
    router.current = home();
    return;
  }
  router.current = route;
}

/** Ends the session on screen and shows sign-in with `message`. */
export function endSession(message: string | null): void {
  session.end();
  router.current = { name: "login", message };
}
