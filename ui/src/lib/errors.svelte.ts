import { errorCode, errorText } from "./api";
import { endSession } from "./router.svelte";

/** The dismissible error banner above every screen. */
export const banner = $state<{ message: string | null }>({ message: null });

/** Errors that end the session send the user back to sign-in; others show in the banner. */
export function reportError(e: unknown): void {
  const code = errorCode(e);
  if (code === "session_locked" || code === "not_signed_in") {
    endSession(errorText(e));
    return;
  }
  banner.message = errorText(e);
}
