#!/usr/bin/env bash
# Broker CPU time per record at a fixed rate, for two broker binaries, alternating which goes
# first (A B, B A, ...). At max rate a run's throughput moves with everything else on the
# machine (this one's max-rate A/B runs spread by 10-30%); at a fixed rate both binaries do
# the same work, and the CPU the broker process used for it (utime + stime from
# /proc/PID/stat over the measured window) says what each record cost it. No hardware
# counters needed (this machine's VM has none, so instructions per record cannot be read).
# Same shape as benches/ab.sh: one shard on CPU 0, rill-loadgen on CPU 1, 8 partitions,
# acks=1, 2 producers + 2 consumers.
#
#   bash benches/cpu-per-record.sh OLD_BINARY NEW_BINARY     # PAIRS=3, 100 B at 2M rec/s and 1 KiB at 400k
#   PAIRS=5 CASES="100:2000000" bash benches/cpu-per-record.sh /path/old target/release/rill
#   READ_COMMITTED=1 bash benches/cpu-per-record.sh OLD NEW    # consumers at read_committed
#
# Prints every run and, per case, the medians and NEW/OLD. Each run is bounded by
# rill-loadgen's duration and a 60 s timeout.
# shellcheck source=benches/lib.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
[ $# = 2 ] || { echo "usage: bash benches/cpu-per-record.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$1 NEW=$2
PAIRS=${PAIRS:-3}
CASES=${CASES:-100:2000000 1024:400000}
PORT=${PORT:-19494}
MEASURE=${MEASURE:-8}
READ_COMMITTED=${READ_COMMITTED:-0}
ISOLATION=()
[ "$READ_COMMITTED" = 1 ] && ISOLATION=(--read-committed)
DIR=${BENCH_DIR:-$PWD/target/bench-cpu}
LG=${LOADGEN:-target/release/rill-loadgen}
for b in "$OLD" "$NEW" "$LG"; do [ -x "$b" ] || { echo "$b is not executable" >&2; exit 2; }; done
mkdir -p "$DIR"
single_shard_toml "$DIR/rill.toml"
BROKER_PID= LG_PID=
stop_all() {
  for p in $LG_PID $BROKER_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  BROKER_PID= LG_PID=
}
trap stop_all EXIT
RAW=$DIR/runs.txt
: > "$RAW"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
one() { # name binary size rate
  start_shard0_broker "$2" "$DIR" "$PORT" "$1"
  timeout 60 taskset -c 1 "$LG" --cores 1 --report-dir "$DIR/report" --bootstrap 127.0.0.1:$PORT \
    --topic fixed-$3 --create-topic --record-bytes "$3" --rate "$4" --partitions 8 --batch-bytes 131072 \
    --max-inflight 16 --linger-ms 5 --acks 1 --producers 2 --consumers 2 --duration $((MEASURE + 4)) \
    --warmup 2 "${ISOLATION[@]}" > "$DIR/loadgen.out" 2>&1 &
  LG_PID=$!
  sleep 4
  local t0 t1
  t0=$(ticks "$BROKER_PID")
  sleep "$MEASURE"
  t1=$(ticks "$BROKER_PID")
  local rc=0
  wait "$LG_PID" || rc=$?
  LG_PID=
  stop_all
  if [ "$rc" -ge 2 ]; then tail -5 "$DIR/loadgen.out"; echo "rill-loadgen failed against $2" >&2; exit 1; fi
  local achieved
  achieved=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['throughput']['produce_records_per_s']))" "$DIR/report/summary.json")
  python3 -c "
import os, sys
t0, t1, rate, achieved = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hz = os.sysconf('SC_CLK_TCK'); cpu = (t1 - t0) / hz
print(f'{sys.argv[5]} {sys.argv[6]} {cpu / ($MEASURE * rate) * 1e9:.0f} {cpu / $MEASURE:.2f} {achieved}')
" "$t0" "$t1" "$4" "$achieved" "$3" "$1" | tee -a "$RAW"
}
for c in $CASES; do
  size=${c%%:*} rate=${c##*:}
  for i in $(seq "$PAIRS"); do
    if [ $((i % 2)) = 1 ]; then one old "$OLD" "$size" "$rate"; one new "$NEW" "$size" "$rate"
    else one new "$NEW" "$size" "$rate"; one old "$OLD" "$size" "$rate"; fi
  done
done
python3 - "$RAW" "$PAIRS" "$OLD" "$NEW" "$CASES" "$READ_COMMITTED" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    size, name, ns, cores, achieved = line.split()
    runs.setdefault(size, {}).setdefault(name, []).append((int(ns), float(cores), int(achieved)))
rates = dict(c.split(":") for c in sys.argv[5].split())
print(f"{sys.argv[2]} pairs per case, alternating order; old={sys.argv[3]} new={sys.argv[4]}; "
      f"consumers at {'read_committed' if sys.argv[6] == '1' else 'read_uncommitted'}")
print("| records | rate | old ns CPU/record | new ns CPU/record | new / old | old runs | new runs |")
print("|---|---|---|---|---|---|---|")
for size, by in runs.items():
    o = statistics.median(r[0] for r in by["old"])
    n = statistics.median(r[0] for r in by["new"])
    print(f"| {size} B | {int(rates[size]):,}/s | {o:.0f} | {n:.0f} | **{n / o:.2f}x** | "
          f"{', '.join(str(r[0]) for r in by['old'])} | {', '.join(str(r[0]) for r in by['new'])} |")
PY
