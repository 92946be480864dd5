import type { Action } from "../bindings/Action";
import type { SessionInfo } from "../bindings/SessionInfo";

/** The signed-in user as Rust reported it. Rust enforces roles on every
 * command; the screen only uses this to show what Rust will permit. */
class Session {
  current = $state<SessionInfo | null>(null);
  #onEnd: (() => void)[] = [];

  can(action: Action): boolean {
    return this.current?.permissions.includes(action) ?? false;
  }

  /** Registers what must be forgotten when the session ends (cached PHI, screen state). */
  onEnd(forget: () => void): void {
    this.#onEnd.push(forget);
  }

  /** Forgets the session on this side (Rust has ended it, or is being told to). */
  end(): void {
    this.current = null;
    for (const forget of this.#onEnd) forget();
  }
}

export const session = new Session();
