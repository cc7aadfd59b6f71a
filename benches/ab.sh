#!/usr/bin/env bash
# Two broker binaries at max rate, alternating which goes first (A B, B A, A B, ...), so a
# drift of the machine over the run (page cache, disk, other tenants) does not favour the
# binary that always runs second, as it can in loadgen.sh's side-by-side mode. The same
# workload as benches/loadgen.sh's max runs (one shard on CPU 0, rill-loadgen on CPU 1,
# 8 partitions, acks=1, 2 producers + 2 consumers, 2 s warm-up then 10 s measured).
#
#   bash benches/ab.sh OLD_BINARY NEW_BINARY          # PAIRS=6 per record size
#   PAIRS=4 SIZES=1024 ACKS=all bash benches/ab.sh /path/old target/release/rill
#
# Prints every run and, per record size, the medians and NEW/OLD. Each run is bounded by
# rill-loadgen's duration and a 60 s timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
[ $# = 2 ] || { echo "usage: bash benches/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$1 NEW=$2
PAIRS=${PAIRS:-6}
SIZES=${SIZES:-1024 100}
ACKS=${ACKS:-1}
PORT=${PORT:-19492}
DIR=${BENCH_DIR:-$PWD/target/bench-ab}
LG=${LOADGEN:-target/release/rill-loadgen}
for b in "$OLD" "$NEW" "$LG"; do [ -x "$b" ] || { echo "$b is not executable" >&2; exit 2; }; done
mkdir -p "$DIR"
single_shard_toml "$DIR/rill.toml"
BROKER_PID=
stop_broker() {
  if [ -n "$BROKER_PID" ]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
  fi
}
trap stop_broker EXIT
RAW=$DIR/runs.txt
: > "$RAW"
one() { # name binary size
  start_shard0_broker "$2" "$DIR" "$PORT" "$1"
  local rc=0
  timeout 60 taskset -c 1 "$LG" --cores 1 --report-dir "$DIR/report" --bootstrap 127.0.0.1:$PORT \
    --topic max-$3 --create-topic --record-bytes "$3" --rate max --partitions 8 --batch-bytes 131072 \
    --max-inflight 16 --linger-ms 5 --acks "$ACKS" --producers 2 --consumers 2 --duration 10 --warmup 2 \
    > "$DIR/loadgen.out" 2>&1 || rc=$?
  stop_broker
  # rill-loadgen exits 1 for a run with problems (e.g. consumers overtaken by retention):
  # kept and flagged, as in loadgen.sh; 2 or more means it could not run.
  if [ "$rc" -ge 2 ]; then tail -5 "$DIR/loadgen.out"; echo "rill-loadgen failed against $2" >&2; exit 1; fi
  local r flag=
  [ "$rc" = 0 ] || flag=" problems"
  r=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['throughput']['produce_records_per_s']))" "$DIR/report/summary.json")
  echo "$3 $1 $r$flag" | tee -a "$RAW"
}
for size in $SIZES; do
  for i in $(seq "$PAIRS"); do
    if [ $((i % 2)) = 1 ]; then one old "$OLD" "$size"; one new "$NEW" "$size"
    else one new "$NEW" "$size"; one old "$OLD" "$size"; fi
  done
done
python3 - "$RAW" "$PAIRS" "$ACKS" "$OLD" "$NEW" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    size, name, r = line.split()[:3]
    runs.setdefault(size, {}).setdefault(name, []).append(int(r))
print(f"acks={sys.argv[3]}, {sys.argv[2]} pairs per size, alternating order; old={sys.argv[4]} new={sys.argv[5]}")
flagged = sum(1 for line in open(sys.argv[1]) if line.split()[3:])
print(f"runs with problems (kept, counted): {flagged}")
print("| records | old median rec/s | new median rec/s | new / old | old runs | new runs |")
print("|---|---|---|---|---|---|")
for size, r in runs.items():
    o, n = statistics.median(r["old"]), statistics.median(r["new"])
    print(f"| {size} B | {o/1e3:.0f}k | {n/1e3:.0f}k | **{n/o:.2f}x** | {', '.join(f'{x/1e3:.0f}k' for x in r['old'])} | {', '.join(f'{x/1e3:.0f}k' for x in r['new'])} |")
PY
