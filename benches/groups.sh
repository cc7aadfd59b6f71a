#!/usr/bin/env bash
# Consumer group benchmark (issue 6): OffsetCommit rate of one broker shard and the time a
# new group of 10, 100 and 1,000 members takes to get its assignment (classic protocol and
# KIP-848), against the disk's
# fdatasync rate measured by fio in the same run. Medians of RUNS runs to
# benches/results/groups.md (pasted into RESULTS.md).
#
#   bash benches/groups.sh             # RUNS=3, data under target/bench-data/groups
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
RUNS=${RUNS:-3}
DIR=${BENCH_DIR:-$PWD/target/bench-data}/groups
OUT=${OUT:-benches/results/groups.md}
PORT=${PORT:-19492}
command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio; }
cargo build --release -p rill-broker -p rill-benches
RILL=${RILL:-target/release/rill}  # another build for an A/B run
BENCH=target/release/group_bench
mkdir -p "$DIR" benches/results
RAW=$(mktemp)
# Every group on one offsets partition of one shard; no initial delay, so the time is
# the protocol's, not a configured wait.
cat > "$DIR/rill.toml" <<TOML
offsets_topic_partitions = 1
group_initial_rebalance_delay_ms = 0
consumer_group_heartbeat_interval_ms = 100
TOML

broker_pid=
stop_broker() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true; broker_pid=; }
trap stop_broker EXIT

for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS"
  fio_sync "$DIR" >> "$RAW"
  rm -rf "$DIR/data"
  $RILL broker --config "$DIR/rill.toml" --data-dir "$DIR/data" --listen 127.0.0.1:$PORT \
    --shards 1 --metrics-listen "" > "$DIR/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  $BENCH 127.0.0.1:$PORT commits 10 | grep ^RESULT >> "$RAW"
  for n in 10 100 1000; do
    $BENCH 127.0.0.1:$PORT rebalance $n | grep ^RESULT >> "$RAW"
    $BENCH 127.0.0.1:$PORT rebalance848 $n | grep ^RESULT >> "$RAW"
  done
  stop_broker
done

python3 - "$RAW" "$OUT" "$RUNS" <<'PY'
import sys, statistics, collections, datetime, platform
raw, out, runs = sys.argv[1], sys.argv[2], sys.argv[3]
vals = collections.defaultdict(list)
for line in open(raw):
    p = line.split()
    if p[0] == "RESULT":
        vals[p[1]].append(float(p[2]))
    else:
        vals[p[0]].append(float(p[1]))
m = {k: statistics.median(v) for k, v in vals.items()}
lines = [
    f"## Consumer groups (issue 6): one broker shard vs the disk's sync rate, {datetime.date.today()}",
    "",
    f"Command: `RUNS={runs} bash benches/groups.sh` (medians of {runs} runs; fio on the same file system in the same run).",
    f"Machine: {platform.machine()}, kernel {platform.release()}. Broker: `rill broker --shards 1`, every group on one `__consumer_offsets` partition, `group_initial_rebalance_delay_ms = 0`.",
    "",
    "| machine limit | median |",
    "|---|---|",
    f"| 4 KiB write + fdatasync, iodepth 1 (fio) | {m['fio_sync_iops']:.0f} syncs/s, {m['fio_sync_ms']:.3f} ms per write + fdatasync |",
    "",
    "| workload | median | ratio |",
    "|---|---|---|",
    f"| OffsetCommit, one partition per commit, {64} in flight on one connection (each fdatasync'd before its answer) | {m['offset_commits_per_s']:.0f} commits/s | **{m['offset_commits_per_s'] / m['fio_sync_iops']:.2f}x** the fdatasync rate |",
]
for n in (10, 100, 1000):
    k = f"rebalance_{n}_ms"
    lines.append(f"| new group of {n} members: first JoinGroup to the last member's assignment | {m[k]:.1f} ms | **{m[k] / m['fio_sync_ms']:.1f}x** one write + fdatasync |")
for n in (10, 100, 1000):
    k = f"rebalance848_{n}_ms"
    if k in m:
        lines.append(f"| KIP-848 group of {n} members joining at once (ConsumerGroupHeartbeat, uniform assignor) until stable, each member owning one partition | {m[k]:.1f} ms | **{m[k] / 100.0:.1f}x** the 100 ms heartbeat interval, **{m[k] / m['fio_sync_ms']:.0f}x** one write + fdatasync |")
lines += ["", "A KIP-848 group converges one heartbeat at a time (revoke, then assign what others released), so its time is counted in heartbeat intervals (`consumer_group_heartbeat_interval_ms = 100` here; Kafka's default is 5000).", ""]
lines += ["", "All runs: " + "; ".join(f"{k}={v}" for k, v in sorted(vals.items())), ""]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
