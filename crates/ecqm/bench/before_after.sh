#!/usr/bin/env bash
# Throughput of two phm-ecqm binaries over the same phm-synth patients, alternated in one run
# (before, after, before, after, …) so both see the same machine state; then checks that both
# wrote the same results.
#
#   crates/ecqm/bench/before_after.sh BEFORE_BIN AFTER_BIN [N=20000] [RUNS=3]
#
# Build BEFORE_BIN from the old commit (e.g. `git worktree add /tmp/old <commit>` and
# `cargo build --release -p ecqm --bin phm-ecqm` there). env: THREADS (2), SHARED (../shared).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
before=${1:?before binary}; after=${2:?after binary}
n=${3:-20000}; runs=${4:-3}
shared=${SHARED:-$root/../shared}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
cargo build -q --release -p synth --bin phm-synth --manifest-path "$root/Cargo.toml"
"$root/target/release/phm-synth" --patients "$n" --seed 1 --out "$dir/patients" --quiet
for i in $(seq "$runs"); do
  for v in before after; do
    bin=$before; [ "$v" = after ] && bin=$after
    s=$(date +%s.%N)
    "$bin" eval --measure "$shared/ecqm/measures" --patients "$dir/patients" \
      --out "$dir/$v.jsonl" --threads "${THREADS:-2}" --quiet
    e=$(date +%s.%N)
    python3 -c "import sys; n=sum(1 for _ in open('$dir/$v.jsonl')); t=$e-$s; print(f'$v run $i: {n:,} evaluations in {t:.2f} s = {n/t:,.0f} /s')"
  done
done
cmp -s "$dir/before.jsonl" "$dir/after.jsonl" && echo "results identical" || { echo "results differ"; exit 1; }
