#!/usr/bin/env bash
# Inside a private session bus: start an unlocked Secret Service keyring (password $1),
# wait until it owns its bus name, then run the rest of the command line.
# Why wait: a client calling before the daemon has claimed org.freedesktop.secrets can get
# a second, auto-activated and locked daemon, which tries to prompt and drops the call.
set -euo pipefail
password=$1
shift
echo -n "$password" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
for _ in $(seq 100); do
  if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null |
    grep -q 'boolean true'; then
    exec "$@"
  fi
  sleep 0.1
done
echo "keyring-session: gnome-keyring-daemon did not start" >&2
exit 1
