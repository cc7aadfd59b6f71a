#!/usr/bin/env bash
# Does retention stall appends? Runs `rill broker` binaries side by side, alternating, at a
# fixed produce rate with retention deleting segments every second (retention.bytes
# 512 MiB, segment.bytes 128 MiB, as benches/loadgen.sh configures it), and prints each
# run's ack latency and the median p99 per binary.
#
#   RATE=480000 RUNS=3 bash benches/retention_stall.sh OLD_BINARY NEW_BINARY
#   bash benches/retention_stall.sh target/release/rill          # one binary
#
# To compare with a build from before a change: `git worktree add /tmp/old <commit>`,
# `cargo build --release -p rill-broker` there, and pass /tmp/old/target/release/rill.
# The broker runs on CPU 0 with one shard, rill-loadgen on CPU 1. 1 KiB records, 8
# partitions, acks=1; each run writes RATE KiB/s for DURATION s and removes its data.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
[ $# -ge 1 ] || { echo "usage: $0 BROKER_BINARY..." >&2; exit 2; }
RATE=${RATE:-480000}
RUNS=${RUNS:-3}
DURATION=${DURATION:-25}
PORT=${PORT:-19492}
DIR=${BENCH_DIR:-$PWD/target/bench-retention}
cargo build --release -p rill-loadgen
LG=target/release/rill-loadgen
mkdir -p "$DIR"
: > "$DIR/results.txt"
for run in $(seq "$RUNS"); do
  for bin in "$@"; do
    d="$DIR/run"
    rm -rf "$d"; mkdir -p "$d/data"
    single_shard_toml "$d/rill.toml"
    taskset -c 0 "$bin" broker --config "$d/rill.toml" --data-dir "$d/data" \
      --listen 127.0.0.1:$PORT --shards 1 > "$d/broker.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    taskset -c 1 $LG --cores 1 --report-dir "$d/report" --bootstrap 127.0.0.1:$PORT \
      --topic t --create-topic --record-bytes 1024 --rate "$RATE" --partitions 8 \
      --batch-bytes 131072 --max-inflight 16 --linger-ms 5 --acks 1 --producers 2 \
      --consumers 2 --duration "$DURATION" --warmup 2 > "$d/loadgen.out" 2>&1 || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    deleted=$(grep -c "retention deleted" "$d/broker.log" || true)
    python3 - "$d/report/summary.json" "$bin" "$deleted" >> "$DIR/results.txt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
a = s["ack"]
print(sys.argv[2], round(s["throughput"]["produce_records_per_s"]), a["p50_ms"], a["p99_ms"], a["p999_ms"], a["max_ms"], sys.argv[3])
PY
    tail -n 1 "$DIR/results.txt"
    rm -rf "$d/data"
  done
done
python3 - "$DIR/results.txt" <<'PY'
import sys, statistics, collections
by = collections.defaultdict(list)
for line in open(sys.argv[1]):
    b, rate, p50, p99, p999, mx, deleted = line.split()
    by[b].append((float(rate), float(p99), float(p999), int(deleted)))
print("binary | runs | rec/s | ack p99 ms (median) | ack p99.9 ms (median) | retention deletions per run")
for b, rs in by.items():
    med = lambda i: statistics.median(r[i] for r in rs)
    print(f"{b} | {len(rs)} | {med(0):.0f} | {med(1):.1f} | {med(2):.1f} | {med(3):.0f}")
PY
