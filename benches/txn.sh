#!/usr/bin/env bash
# Transaction benchmark (issue 17): one broker shard, PRODUCERS=4 producers of Rill's own
# client (benches/src/bin/txn_bench.rs), acks=all, 1 KiB records in batches of 100, one
# request at a time per producer. Per run: transactional produce (transactions of 1,000
# records, the classic protocol and transactions v2) against idempotent produce of the same
# batches, and committed transactions per second with transactions of one record (both
# protocols), against the disk's write + fdatasync rate (fio, 4 KiB, queue depth 1)
# measured in the same run. Medians of RUNS runs to
# benches/results/transactions.md (pasted into RESULTS.md).
#
#   bash benches/txn.sh             # RUNS=3 SECONDS=10, data under target/bench-data/txn
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
RUNS=${RUNS:-3}
SECS=${SECONDS_PER_CASE:-10}
DIR=${BENCH_DIR:-$PWD/target/bench-data}/txn
OUT=${OUT:-benches/results/transactions.md}
PORT=${PORT:-19493}
command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio; }
cargo build --release -p rill-broker -p rill-benches
RILL=${RILL:-target/release/rill}
BENCH=target/release/txn_bench
mkdir -p "$DIR" benches/results
RAW=$(mktemp)
printf 'transaction_state_partitions = 4\n' > "$DIR/rill.toml"

broker_pid=
stop_broker() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true; broker_pid=; }
trap stop_broker EXIT
start_broker() {
  stop_broker
  rm -rf "$DIR/data"
  $RILL broker --config "$DIR/rill.toml" --data-dir "$DIR/data" --listen 127.0.0.1:$PORT \
    --shards 1 --metrics-listen "" > "$DIR/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 100); do grep -q "rill broker ready" "$DIR/broker.log" 2>/dev/null && return; sleep 0.1; done
  echo "txn.sh: the broker did not start; see $DIR/broker.log" >&2; exit 1
}

for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS"
  fio_sync "$DIR" >> "$RAW"
  for mode in idempotent transactional transactional-v2; do
    start_broker
    $BENCH 127.0.0.1:$PORT produce $mode "$SECS" 1000 | tee -a "$RAW"
  done
  for v in v1 v2; do
    start_broker
    $BENCH 127.0.0.1:$PORT commits "$SECS" $v | tee -a "$RAW"
  done
  stop_broker
done

python3 - "$RAW" "$OUT" "$RUNS" "$SECS" "$(git rev-parse --short HEAD)" <<'PY'
import sys, statistics
raw, out, runs, secs, rev = sys.argv[1:]
vals = {}
for line in open(raw):
    parts = line.split()
    if len(parts) == 3 and parts[0] == "RESULT":
        vals.setdefault(parts[1], []).append(float(parts[2]))
    elif len(parts) == 2 and parts[0] == "fio_sync_iops":
        vals.setdefault("fio_sync_iops", []).append(float(parts[1]))
med = {k: statistics.median(v) for k, v in vals.items()}
runs_of = lambda k: ", ".join(f"{x:.0f}" for x in vals[k])
idem, txn = med["idempotent_records_per_s"], med["transactional_records_per_s"]
txn2 = med["transactional_v2_records_per_s"]
commits, commits2, fio = med["commits_per_s"], med["commits_v2_per_s"], med["fio_sync_iops"]
rows = [
    "| figure | median | runs | ratio |",
    "|---|---|---|---|",
    f"| idempotent produce, records/s | {idem:.0f} | {runs_of('idempotent_records_per_s')} | |",
    f"| transactional produce (1,000-record transactions), records/s | {txn:.0f} | {runs_of('transactional_records_per_s')} | **{txn/idem:.2f}x** idempotent |",
    f"| the same, transactions v2 (KIP-890), records/s | {txn2:.0f} | {runs_of('transactional_v2_records_per_s')} | **{txn2/idem:.2f}x** idempotent |",
    f"| committed transactions/s (1 record each) | {commits:.0f} | {runs_of('commits_per_s')} | **{commits/fio:.2f}x** fio write+fdatasync |",
    f"| the same, transactions v2, transactions/s | {commits2:.0f} | {runs_of('commits_v2_per_s')} | **{commits2/fio:.2f}x** fio write+fdatasync |",
    f"| fio write+fdatasync (4 KiB, depth 1), IOPS | {fio:.0f} | {runs_of('fio_sync_iops')} | |",
]
text = (f"### Transactions, {runs} runs of {secs} s per case, {rev}\n\n"
        f"Command: `RUNS={runs} SECONDS_PER_CASE={secs} bash benches/txn.sh`; one broker shard, 4 producers "
        f"(Rill's own client, one request at a time each), acks=all, 1 KiB records in batches of 100.\n\n"
        + "\n".join(rows) + "\n")
with open(out, "a") as f:
    f.write(text + "\n")
print(text)
PY
