#!/usr/bin/env bash
# Replication cost: a 3-broker cluster on one machine (127.0.0.61-63, one shard each) and
# rill-loadgen producing to three topics side by side in the same run:
#   rf1-all  replication factor 1, acks=all  (the peer: no follower in the path)
#   rf3-all  replication factor 3, acks=all  (answered once both followers fetched it)
#   rf3-one  replication factor 3, acks=1    (answered by the leader; followers copy behind)
# each at max throughput and at a fixed rate. Medians of RUNS runs, with ratios to the
# rf1-all peer, go to benches/results/replication.md. Three brokers and the load generator
# share this machine's cores, so the figures are relative, not a cluster's capacity.
#
#   bash benches/replication.sh            # RUNS=3, 8 s measured per run
#   RILLS="old=/path/to/old/rill new=target/release/rill" bash benches/replication.sh
#                                          # several broker binaries, alternating in each run
#
# CPUs: BROKER_CPUS gives each broker its CPU (default "0 1 0": two per core with the load
# generator on LOADGEN_CPU=1, so both cores carry two processes). BROKER_CPUS=same runs
# every broker under the full mask, where each pins its shard to the first CPU: all three
# on CPU 0, the shape of the figures before 2026-12-03.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
RATE=${RATE:-20000}
SIZE=${SIZE:-1024}
PARTITIONS=${PARTITIONS:-6}
DIR=${BENCH_DIR:-$PWD/target/bench-replication}
OUT=${OUT:-benches/results/replication.md}
HOSTS=(127.0.0.61 127.0.0.62 127.0.0.63)
PORT=${PORT:-19492}
RAFT_PORT=$((PORT + 1))

cargo build --release -p rill-broker -p rill-loadgen
RILLS=${RILLS:-rill=${RILL:-$PWD/target/release/rill}}
read -r -a BINS <<< "$RILLS"
BROKER_CPUS=${BROKER_CPUS:-0 1 0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
if [ "$BROKER_CPUS" = same ]; then CPUS=(- - -); LG_PIN=(); else read -r -a CPUS <<< "$BROKER_CPUS"; LG_PIN=(taskset -c "$LOADGEN_CPU"); fi
LG=$PWD/target/release/rill-loadgen
rm -rf "$DIR"
mkdir -p "$DIR/runs" benches/results
export RUST_BACKTRACE=0
QUORUM="1@${HOSTS[0]}:$RAFT_PORT,2@${HOSTS[1]}:$RAFT_PORT,3@${HOSTS[2]}:$RAFT_PORT"
cat > "$DIR/rill.toml" <<TOML
metrics_listen = ""
retention_check_interval_ms = 1000
[topic_defaults]
"retention.bytes" = 268435456
"segment.bytes" = 67108864
TOML

PIDS=()
start_cluster() { # RILL
  local rill=$1 pin
  rm -rf "$DIR/data"
  for i in 0 1 2; do
    mkdir -p "$DIR/data/$((i + 1))"
    pin=()
    [ "${CPUS[$i]}" = - ] || pin=(taskset -c "${CPUS[$i]}")
    "${pin[@]}" "$rill" broker --config "$DIR/rill.toml" --data-dir "$DIR/data/$((i + 1))" --shards 1 \
      --listen "${HOSTS[$i]}:$PORT" --node-id $((i + 1)) --controller-quorum "$QUORUM" \
      > "$DIR/broker-$((i + 1)).log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 200); do
    if "$rill" cluster info --bootstrap "${HOSTS[0]}:$PORT" 2>/dev/null | grep -q "^controller  [1-3]"; then
      n=$("$rill" cluster info --bootstrap "${HOSTS[0]}:$PORT" --output json | python3 -c "import json,sys; print(len(json.load(sys.stdin)['brokers']))")
      [ "$n" = 3 ] && return 0
    fi
    sleep 0.1
  done
  echo "the cluster did not form within 20 s" >&2
  tail -n 20 "$DIR"/broker-*.log >&2
  exit 1
}
stop_cluster() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_cluster; rm -rf "$DIR/data"' EXIT

loadgen() { # binary name rf acks rate
  local bin=$1 name=$2 rf=$3 acks=$4 rate=$5 rc=0 out
  out=$DIR/runs/$bin/$name
  mkdir -p "$DIR/runs/$bin"
  "${LG_PIN[@]}" "$LG" --cores 1 --bootstrap "${HOSTS[0]}:$PORT" --topic "$name" --create-topic --partitions $PARTITIONS \
    --replication-factor "$rf" --acks "$acks" --record-bytes $SIZE --rate "$rate" \
    --producers 2 --consumers 1 --duration $DURATION --warmup $WARMUP \
    --report-dir "$out" > "$out.out" 2> "$out.err" || rc=$?
  if [ $rc -ge 2 ]; then cat "$out.err" >&2; echo "rill-loadgen could not run ($bin: $name)" >&2; exit 1; fi
  tail -n 4 "$out.out"
}

for run in $(seq "$RUNS"); do
  # Each run starts with the next binary, so none always goes first on a warm disk.
  for k in $(seq 0 $((${#BINS[@]} - 1))); do
    bin=${BINS[$(( (k + run - 1) % ${#BINS[@]} ))]}
    name=${bin%%=*}
    echo "== run $run/$RUNS: $name"
    start_cluster "${bin#*=}"
    for rate in max $RATE; do
      for cfg in "rf1-all 1 all" "rf3-all 3 all" "rf3-one 3 1"; do
        set -- $cfg
        loadgen "$name" "$1-$rate-$run" "$2" "$3" "$rate"
      done
    done
    stop_cluster
  done
done

python3 - "$DIR/runs" "$OUT" "$RUNS" "$RATE" "$SIZE" "$PARTITIONS" "$DURATION" "$RILLS" "$BROKER_CPUS" "$LOADGEN_CPU" <<'PY'
import sys, json, glob, os, statistics, collections, datetime, platform, subprocess
rundir, out, runs, rate, size, partitions, duration, rills, broker_cpus, loadgen_cpu = sys.argv[1:]
bins = [b.split("=", 1)[0] for b in rills.split()]
by = collections.defaultdict(list)
for path in glob.glob(os.path.join(rundir, "*", "*", "summary.json")):
    name = os.path.basename(os.path.dirname(path))
    binary = os.path.basename(os.path.dirname(os.path.dirname(path)))
    cfg, r, _ = name.rsplit("-", 2)
    by[(binary, cfg, r)].append(json.load(open(path)))
med = statistics.median
def m(b, cfg, r, f):
    vals = [v for v in (f(s) for s in by[(b, cfg, r)]) if v is not None]
    return med(vals) if vals else float("nan")
tp = lambda s: s["throughput"]["produce_records_per_s"]
p = lambda q: (lambda s: (s.get("ack") or {}).get(q + "_ms"))
if broker_cpus == "same":
    shape = "every broker under the full CPU mask (each pins its shard to CPU 0), rill-loadgen on one core"
else:
    shape = f"brokers pinned to CPUs {broker_cpus.split()} in turn, rill-loadgen to CPU {loadgen_cpu}"
env = "RUNS=%s" % runs + ("" if len(bins) == 1 else ' RILLS="%s"' % rills) + ("" if broker_cpus == "0 1 0" else ' BROKER_CPUS="%s"' % broker_cpus)
lines = [
    f"## Replication: replication factor 3 vs 1 on one machine, {datetime.date.today()}",
    "",
    f"Command: `{env} bash benches/replication.sh` (medians of {runs} runs; the three topics run one after the other on the same 3-broker cluster in each run"
    + ("" if len(bins) == 1 else "; each run starts a fresh cluster of each binary in turn, rotating which goes first") + ").",
    f"Machine: {platform.machine()}, {subprocess.run(['nproc'],capture_output=True,text=True).stdout.strip()} cores, kernel {platform.release()}. "
    f"Three brokers (one shard each) and rill-loadgen share the cores ({shape}); loopback TCP, one disk.",
    f"Workload: {size} B random values, {partitions} partitions, 2 producers + 1 consumer, {duration} s measured; `max` = as fast as acknowledged, then a fixed {int(rate)//1000}k rec/s.",
    "",
    "| binary | topic | rate | produced rec/s | / rf1-all | ack p50 ms | ack p99 ms | p99 / rf1-all | clean runs |",
    "|---|---|---|---|---|---|---|---|---|",
]
for b in bins:
    for r in ("max", rate):
        base_tp = m(b, "rf1-all", r, tp)
        base_p99 = m(b, "rf1-all", r, p("p99"))
        for cfg in ("rf1-all", "rf3-all", "rf3-one"):
            t = m(b, cfg, r, tp)
            p50, p99 = m(b, cfg, r, p("p50")), m(b, cfg, r, p("p99"))
            clean = sum(1 for s in by[(b, cfg, r)] if not s.get("problems"))
            lines.append(f"| {b} | {cfg} | {r} | {t/1e3:.1f}k | **{t/base_tp:.2f}x** | {p50:.1f} | {p99:.1f} | **{p99/base_p99:.2f}x** | {clean}/{len(by[(b, cfg, r)])} |")
lines += ["", "RF 3 writes each record three times on this one disk and runs three brokers on two cores, so the max-rate ratio is an upper bound on replication's cost; at a fixed rate, acks=all waits for both followers' next fetch (one more round trip plus their append), and acks=1 costs nothing over RF 1."]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
