#!/usr/bin/env bash
# Builds PHM Workstation and opens it on the built-in demo panel (no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cargo build --release --bin phm-workstation
# Without a desktop session (a bare root shell), give the app a session bus and an unlocked keyring.
if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  exec dbus-run-session -- bash scripts/keyring-session.sh demo target/release/phm-workstation --demo
fi
exec target/release/phm-workstation --demo
