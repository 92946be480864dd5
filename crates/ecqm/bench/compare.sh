#!/usr/bin/env bash
# phm-ecqm vs fqm-execution 1.8.6 on the 515 shared official cases (each case with its
# own measure, period 2025-01-01..2025-12-31), in one run. Prints both rates and the ratio.
#
#   crates/ecqm/bench/compare.sh [SHARED_ECQM_DIR]     (default ../shared/ecqm from the repo root)
#
# env: CARGO_TARGET_DIR (default target/perf), FQM_DIR (npm install dir, default
#      $CARGO_TARGET_DIR/fqm-bench, gitignored under target/), REPS (phm-ecqm passes, default 20),
#      SKIP_FQM=1 (phm-ecqm only).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
shared=${1:-$root/../shared/ecqm}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/perf}
fqm_dir=${FQM_DIR:-$CARGO_TARGET_DIR/fqm-bench}
reps=${REPS:-20}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== machine: $(nproc) cores; $(uptime)"
echo "== phm-ecqm (release, 1 thread)"
cargo build -q --release -p ecqm --example official_rate --bin phm-ecqm
"$CARGO_TARGET_DIR/release/examples/official_rate" "$shared" "$reps" | tee "$out/phm.jsonl"
# end to end with the binary: load + prepare each bundle, read the case files, evaluate, write JSONL
start=$(date +%s.%N)
n=0
for m in "$shared"/measures/*.json; do
  name=$(basename "$m" .json)
  "$CARGO_TARGET_DIR/release/phm-ecqm" eval --measure "$m" --patients "$shared/cases/$name" \
    --period-start 2025-01-01 --period-end 2025-12-31 --out "$out/$name.jsonl" --threads 1 --quiet 2>/dev/null
  n=$((n + $(wc -l < "$out/$name.jsonl")))
done
end=$(date +%s.%N)
python3 -c "import json,sys; n=$n; s=$end-$start; print(json.dumps({'method':'phm-ecqm CLI end to end (12 processes: load+prepare+read+evaluate+write)','cases':n,'seconds':round(s,3),'rate':round(n/s,1)}))" | tee -a "$out/phm.jsonl"

if [ "${SKIP_FQM:-0}" != 1 ]; then
  echo "== fqm-execution 1.8.6 (node $(node --version 2>/dev/null || echo missing))"
  if [ ! -d "$fqm_dir/node_modules/fqm-execution" ]; then
    mkdir -p "$fqm_dir"
    (cd "$fqm_dir" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --no-audit --no-fund fqm-execution@1.8.6 >/dev/null)
  fi
  NODE_PATH="$fqm_dir/node_modules" node --max-old-space-size=4096 "$root/crates/ecqm/bench/fqm-bench.js" "$shared" | tee "$out/fqm.jsonl"
fi

python3 - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
rows = [json.loads(l) for f in ("phm.jsonl", "fqm.jsonl") if os.path.exists(os.path.join(d, f))
        for l in open(os.path.join(d, f)) if l.strip()]
rates = {r["method"]: r["rate"] for r in rows if "rate" in r}
lp = next((r["load_prepare_s"] for r in rows if "load_prepare_s" in r), None)
conv = next((r for r in rows if r.get("method") == "phm-ecqm convert+evaluate"), None)
if lp is not None and conv:
    # same work as one fqm-execution call per measure: load + prepare the 12 bundles included
    rates["phm-ecqm load+prepare+convert+evaluate (in process)"] = round(conv["cases"] / (lp + conv["seconds"]), 1)
print("== summary (patient-measure evaluations per second, 1 thread)")
for k, v in rates.items():
    print(f"  {k:<85} {v:>12,.1f}/s")
fqm = {k: v for k, v in rates.items() if k in ("calculate", "calculateRaw")}
if fqm:
    best_k = max(fqm, key=fqm.get)
    for k, v in rates.items():
        if k.startswith("phm-ecqm"):
            print(f"  ratio {k} / fqm-execution {best_k}: {v / fqm[best_k]:,.0f}x")
PY
