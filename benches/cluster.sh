#!/usr/bin/env bash
# Cluster metadata benchmark (issue 7): how fast the metadata raft group commits, and how
# long a 3-broker cluster takes to elect a new controller and to fence a broker after
# kill -9 of the controller; against the disk's fdatasync rate (fio, same run) and the
# configured raft election timeout and broker session. Medians of RUNS runs to
# benches/results/cluster.md (pasted into RESULTS.md).
#
#   bash benches/cluster.sh        # RUNS=3, ROUNDS=3 kills per run, data under target/bench-data
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-3}
DIR=${BENCH_DIR:-$PWD/target/bench-data}/cluster
OUT=benches/results/cluster.md
command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio; }
cargo build --release -p rill-broker -p rill-benches
RILL=target/release/rill
BENCH=target/release/cluster_bench
mkdir -p "$DIR" benches/results
RAW=$(mktemp)
trap 'rm -rf "$DIR"' EXIT

for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS"
  fio_sync "$DIR" >> "$RAW"
  $BENCH commits 10 "$DIR/raft" | grep ^RESULT >> "$RAW"
  $BENCH failover "$RILL" "$DIR/brokers" "$ROUNDS" | grep ^RESULT >> "$RAW"
done

python3 - "$RAW" "$OUT" "$RUNS" "$ROUNDS" <<'PY'
import sys, statistics, collections, datetime, platform
raw, out, runs, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
vals = collections.defaultdict(list)
for line in open(raw):
    p = line.split()
    if p[0] == "RESULT":
        vals[p[1]].append(float(p[2]))
    else:
        vals[p[0]].append(float(p[1]))
m = {k: statistics.median(v) for k, v in vals.items()}
# The cluster_bench settings: raft tick 100 ms x 10 election ticks (randomized up to 2x),
# broker heartbeats every 300 ms, session 3000 ms.
election_ms, session_ms = 1000.0, 3000.0
lines = [
    f"## Cluster metadata (issue 7): raft commits and controller failover, {datetime.date.today()}",
    "",
    f"Command: `RUNS={runs} ROUNDS={rounds} bash benches/cluster.sh` (medians over all runs; fio on the same file system in the same run).",
    f"Machine: {platform.machine()}, kernel {platform.release()}. Three raft members on one machine (one disk, loopback TCP): every commit is an fdatasync on two of the three.",
    "",
    "| machine limit | median |",
    "|---|---|",
    f"| 4 KiB write + fdatasync, iodepth 1 (fio) | {m['fio_sync_iops']:.0f} syncs/s |",
    "",
    "| workload | median | ratio |",
    "|---|---|---|",
    f"| metadata commits, 3 rill-raft members, 256 proposals outstanding | {m['metadata_commits_per_s']:.0f} commits/s | **{m['metadata_commits_per_s'] / m['fio_sync_iops']:.2f}x** the fdatasync rate (entries share syncs) |",
    f"| 3 brokers started to all agreeing on members and controller | {m['cluster_form_ms']:.0f} ms | **{m['cluster_form_ms'] / election_ms:.2f}x** the election timeout ({election_ms:.0f} ms) |",
    f"| kill -9 of the controller to a new controller named by both survivors | {m['controller_elect_ms']:.0f} ms | **{m['controller_elect_ms'] / election_ms:.2f}x** the election timeout ({election_ms:.0f}-{2*election_ms:.0f} ms randomized) |",
    f"| kill -9 of the controller to the dead broker fenced (gone from Metadata) | {m['broker_fence_ms']:.0f} ms | **{m['broker_fence_ms'] / session_ms:.2f}x** the broker session ({session_ms:.0f} ms) |",
    f"| kill -9 of the controller to every partition it led (12-partition topic, replication factor 3) led by a survivor | {m['leaders_moved_ms']:.0f} ms | **{m['leaders_moved_ms'] / session_ms:.2f}x** the broker session ({session_ms:.0f} ms) |",
    "",
    "Leadership moves when the dead broker is fenced (the controller moves its partitions in the same raft entry), so it follows the session timeout; followers keep copies of the data (benches/replication.sh measures their cost).",
    "",
    "All runs: " + "; ".join(f"{k}={v}" for k, v in sorted(vals.items())),
    "",
]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
