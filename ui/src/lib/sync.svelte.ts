// The sync status shared by the app bar's chip and the sync screen: polled from
// Rust while a screen shows it (faster while a sync runs).
import type { SyncStatus } from "../bindings/SyncStatus";
import { api } from "./api";
import { panel } from "./panel.svelte";
import { worklist } from "./worklist.svelte";

class SyncState {
  current = $state.raw<SyncStatus | null>(null);
  private watchers = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  /** Polls while at least one caller watches; returns the function that stops watching. */
  watch(): () => void {
    this.watchers += 1;
    if (this.watchers === 1) this.poll();
    return () => {
      this.watchers -= 1;
      if (this.watchers === 0 && this.timer !== null) {
        clearTimeout(this.timer);
        this.timer = null;
      }
    };
  }

  set(s: SyncStatus): void {
    const before = this.current?.lastSyncedAt;
    this.current = s;
    // A sync finished: the lists on screen show the previous panel until fetched again.
    if (before !== undefined && s.lastSyncedAt !== before) {
      panel.invalidate();
      worklist.invalidate();
    }
  }

  private poll(): void {
    api.syncStatus().then(
      (s) => {
        this.set(s);
        this.schedule(s.running ? 500 : 5000);
      },
      () => this.schedule(10000),
    );
  }

  private schedule(ms: number): void {
    if (this.watchers === 0) return;
    this.timer = setTimeout(() => this.poll(), ms);
  }
}

export const sync = new SyncState();

/** "5 minutes ago"-style text for an RFC 3339 time. */
export function ago(iso: string | null): string {
  if (!iso) return "never";
  const secs = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (secs < 60) return "just now";
  const mins = Math.round(secs / 60);
  if (mins < 60) return `${mins} min ago`;
  const hours = Math.round(mins / 60);
  if (hours < 48) return `${hours} h ago`;
  return new Date(iso).toLocaleDateString();
}
