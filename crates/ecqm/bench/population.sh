#!/usr/bin/env bash
# phm-ecqm over N phm-synth patients x the 12 shared measures, 1 and 2 threads, with
# wall/CPU time and peak RSS (/usr/bin/time -v). Deletes the generated data afterwards
# unless KEEP=1.
#
#   crates/ecqm/bench/population.sh N [DIR] [extra phm-ecqm args...]
#
# env: CARGO_TARGET_DIR (default target/perf), THREADS (default "1 2"), SHARED (../shared).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
n=${1:?patients}
dir=${2:-/tmp/phm-synth-$n}
shift $(( $# >= 2 ? 2 : 1 ))
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/perf}
shared=${SHARED:-$root/../shared}
bin=$CARGO_TARGET_DIR/release
cargo build -q --release -p ecqm --bin phm-ecqm -p synth --bin phm-synth
echo "== df: $(df -h "$(dirname "$dir")" | tail -1)"
if [ ! -d "$dir" ]; then
  t0=$(date +%s.%N)
  "$bin/phm-synth" --patients "$n" --seed 1 --out "$dir" --quiet
  echo "== generated $n patients in $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s: $(du -sh "$dir" | cut -f1)"
fi
for t in ${THREADS:-1 2}; do
  echo "== $n patients x 12 measures, --threads $t; $(uptime)"
  /usr/bin/time -v "$bin/phm-ecqm" eval --measure "$shared/ecqm/measures" --patients "$dir" \
    --out "$dir.results.$t.jsonl" --threads "$t" --quiet "$@" 2> "$dir.time.$t" || true
  python3 - "$dir.time.$t" "$dir.results.$t.jsonl" <<'PY'
import sys, re
t = open(sys.argv[1]).read()
def g(k):
    for line in t.splitlines():
        if line.strip().startswith(k):
            return line.rsplit(": ", 1)[1].strip()
    return "?"
wall = g("Elapsed (wall clock) time")
p = [float(x) for x in wall.split(":")]
secs = p[-1] + 60 * p[-2] + (3600 * p[-3] if len(p) > 2 else 0)
n = sum(1 for _ in open(sys.argv[2]))
u, s = float(g("User time")), float(g("System time"))
print(f"   evaluations {n:,}  wall {secs:.1f}s = {n/secs:,.0f}/s  CPU user {u:.1f}s + sys {s:.1f}s = "
      f"{n/(u+s):,.0f}/CPU-s  peak RSS {int(g('Maximum resident set size'))/1024:,.0f} MiB  exit {g('Exit status')}")
PY
done
if cmp -s "$dir.results.1.jsonl" "$dir.results.2.jsonl" 2>/dev/null; then echo "== 1- and 2-thread results identical"; fi
[ "${KEEP:-0}" = 1 ] || rm -rf "$dir" "$dir".results.* "$dir".time.*
