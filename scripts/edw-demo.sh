#!/usr/bin/env bash
# A local EDW for the app to sync from, in one command: PostgreSQL in a data directory,
# N synthetic patients loaded, matched, attributed and measured, the app registered as a
# SMART Backend Services client, and `phm-edw serve` on https://127.0.0.1:PORT.
#
#   bash scripts/edw-demo.sh [--patients 5000] [--port 8443] [--dir DIR] [--jwks FILE]
#
# --jwks is the app's public key set (Sync screen: "Save to file"); by default the file the
# app writes beside its cache. Ctrl-C stops the server; the database stays in DIR and a
# second run reuses it (delete DIR to start over).
set -euo pipefail
cd "$(dirname "$0")/.."

patients=5000
port=8443
dir="${PHM_EDW_DEMO_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/phm-edw-demo}"
jwks="${XDG_DATA_HOME:-$HOME/.local/share}/org.phm.workstation/workstation-jwks.json"
while [ $# -gt 0 ]; do
  case "$1" in
    --patients) patients="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --jwks) jwks="$2"; shift 2 ;;
    *) echo "usage: $0 [--patients N] [--port P] [--dir DIR] [--jwks FILE]" >&2; exit 2 ;;
  esac
done

if ! dpkg-query -W -f='${Status}' postgresql-15 2>/dev/null | grep -q "install ok installed"; then
  echo "== installing PostgreSQL 15"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15
fi
pgbin=/usr/lib/postgresql/15/bin
echo "== building phm-edw and phm-synth (release)"
cargo build --release --quiet -p edw --bin phm-edw -p synth --bin phm-synth
edw=target/release/phm-edw

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
# initdb refuses to run as root: the cluster belongs to the postgres user then.
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); chown postgres "$dir"; fi
if [ ! -d "$dir/pg" ]; then
  echo "== creating the database cluster in $dir/pg"
  "${as_pg[@]}" "$pgbin/initdb" -D "$dir/pg" -A trust -U edw -E UTF8 --locale C >/dev/null
fi
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
  -o "-c listen_addresses='' -k $dir -c max_connections=60" start >/dev/null
trap '"${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null' EXIT
admin="host=$dir user=edw dbname=postgres"
db="host=$dir user=edw dbname=edw"
if ! "$pgbin/psql" "$admin" -Atc "SELECT 1 FROM pg_database WHERE datname = 'edw'" | grep -q 1; then
  "$pgbin/psql" "$admin" -qc "CREATE DATABASE edw"
fi
"$edw" migrate --db "$db"

loaded=$("$pgbin/psql" "$db" -Atc "SELECT count(*) FROM edw.source_patient")
if [ "$loaded" = 0 ]; then
  echo "== generating and loading $patients synthetic patients"
  target/release/phm-synth --patients "$patients" --seed 20251231 --out "$dir/synth"
  "$edw" ingest "$dir/synth" --source demo --db "$db"
  "$edw" match --db "$db"
  "$edw" attribute --db "$db"
  if [ -d ../shared/ecqm/measures ]; then
    "$edw" measure --db "$db" --period 2025 --package ../shared/ecqm/measures
  else
    echo "(../shared/ecqm/measures not found: measures not run)"
  fi
  rm -rf "$dir/synth"
fi

# The app's client: registered once, with every attributed panel of the largest organisation.
client_file="$dir/client-id"
if [ ! -s "$client_file" ]; then
  if [ -f "$jwks" ]; then
    org=$("$pgbin/psql" "$db" -Atc "SELECT org_id FROM edw.source_patient WHERE org_id IS NOT NULL
                                    GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    groups=$("$pgbin/psql" "$db" -Atc "SELECT string_agg(id::text, ' ' ORDER BY id) FROM (
        SELECT DISTINCT g.id FROM edw.patient_group g JOIN edw.patient_group_member m ON m.group_id = g.id
        JOIN edw.source_patient s ON s.person_id = m.person_id WHERE s.org_id = $org AND g.kind = 'practitioner') x")
    group_args=()
    for g in $groups; do group_args+=(--group "$g"); done
    "$edw" client add --db "$db" --name "PHM Workstation (demo)" --org "$org" --jwks "$jwks" \
      "${group_args[@]}" | tail -n 1 > "$client_file"
  else
    echo "note: no app public key at $jwks — open the app's Sync screen, save its public key"
    echo "      to that file (or pass --jwks FILE), and run this script again to register the app."
  fi
fi

echo
echo "== EDW ready"
echo "   server URL:  https://127.0.0.1:$port/fhir"
[ -s "$client_file" ] && echo "   client id:   $(cat "$client_file")"
echo "   certificate: $dir/state/tls/cert.pem  (made on the server's first start; paste it into"
echo "                the app's Sync screen as the certificate to trust)"
echo
# The server logs in as a role with no rights of its own beyond edw_api: each request runs as
# its client's organisation role, so row-level security applies to everything it reads.
"$pgbin/psql" "$db" -qc "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'phm_edw_serve')
  THEN CREATE ROLE phm_edw_serve LOGIN IN ROLE edw_api; END IF; END \$\$"
"$edw" serve --db "host=$dir user=phm_edw_serve dbname=edw" --addr "127.0.0.1:$port" --state-dir "$dir/state"
