#!/usr/bin/env bash
# Runs every test of PHM Workstation: formatting, lints, UI type check, unit and integration
# tests (real SQLCipher, real PostgreSQL in a temp dir, real keyring) and the end-to-end
# tests that drive the real app window under Xvfb through tauri-driver; then builds the .deb,
# installs it with apt and starts the installed app (scripts/package.sh, scripts/check-package.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
# Citus into Debian's PostgreSQL 15, for the EDW's cluster tests (idempotent; about a minute).
bash ../shared/citus/install

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== UI type check"
(cd ui && npm run check)
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
if [ -n "${CI:-}" ]; then
  # A fresh machine builds once: incremental caches only cost disk there.
  export CARGO_INCREMENTAL=0
fi
# Examples are checked by clippy above and run as benchmarks, not linked here (disk).
TARGETS=(--lib --bins --tests)
cargo test --workspace "${TARGETS[@]}" --no-run --quiet
# The process tests start the phm-edw this build made (not a second build with other features).
PHM_EDW_BIN="$(pwd)/target/debug/phm-edw"
export PHM_EDW_BIN
test -x "$PHM_EDW_BIN"
# A throwaway, unlocked Secret Service keyring on a private session bus.
XDG_DATA_HOME="$(mktemp -d)"
export XDG_DATA_HOME
dbus-run-session -- bash scripts/keyring-session.sh ci cargo test --workspace "${TARGETS[@]}" --no-fail-fast
echo "== doc tests"
cargo test --workspace --doc --quiet
echo "== package"
if [ -n "${CI:-}" ]; then
  # The tests are done: a fresh CI machine gives the debug build's disk to the release build.
  rm -rf target/debug
fi
bash scripts/package.sh
# The .deb just built: dependencies, contents, apt install, the installed app's --version and start.
bash scripts/check-package.sh
