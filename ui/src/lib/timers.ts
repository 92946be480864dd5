/** A debounced call that can be cancelled (a screen cancels it when it is left). */
export interface Debounced<A extends unknown[]> {
  (...args: A): void;
  cancel(): void;
  /** Runs the pending call now, if any. */
  flush(): void;
}

export function debounce<A extends unknown[]>(fn: (...args: A) => void, ms: number): Debounced<A> {
  let timer: number | undefined;
  let pending: A | null = null;
  const call = (...args: A) => {
    pending = args;
    window.clearTimeout(timer);
    timer = window.setTimeout(run, ms);
  };
  const run = () => {
    timer = undefined;
    const args = pending;
    pending = null;
    if (args) fn(...args);
  };
  call.cancel = () => {
    window.clearTimeout(timer);
    timer = undefined;
    pending = null;
  };
  call.flush = () => {
    window.clearTimeout(timer);
    run();
  };
  return call;
}

/**
 * Calls `onIdle` once no key, mouse or wheel activity has been seen for
 * `timeoutMs` (checked every 15 s). Returns the teardown that removes the
 * listeners and the timer. Rust enforces the same timeout on every command
 * regardless of what the screen does.
 */
export function watchIdle(timeoutMs: number, onIdle: () => void): () => void {
  let last = Date.now();
  const seen = () => (last = Date.now());
  const events = ["keydown", "mousedown", "mousemove", "wheel"] as const;
  for (const ev of events) document.addEventListener(ev, seen, { passive: true });
  const timer = window.setInterval(() => {
    if (Date.now() - last > timeoutMs) onIdle();
  }, 15_000);
  return () => {
    for (const ev of events) document.removeEventListener(ev, seen);
    window.clearInterval(timer);
  };
}
