import type { AppMode } from "../bindings/AppMode";

/** What the app runs as (demo mode, a new installation), as Rust reported it at start. */
class Mode {
  current = $state<AppMode | null>(null);

  get demo(): boolean {
    return this.current?.demo ?? false;
  }
}

export const mode = new Mode();
