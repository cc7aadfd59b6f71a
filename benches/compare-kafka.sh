#!/usr/bin/env bash
# Rill vs Apache Kafka side by side (issue 14). In one run: the machine's limits (fio
# sequential write and write + fdatasync, iperf3 loopback, rill-loadgen's own dry-run
# ceiling), then the standard rill-loadgen workloads of benches/loadgen.sh against Apache
# Kafka 4.4 (from Maven Central's jars, benches/kafka.sh) and against Rill, one broker at a
# time on the same cores and disk:
#   records 1 KiB and 100 B; max rate (throughput), then a fixed rate of half the lower of
#   the two maxima (ack latency p50/p99/p99.9 and end-to-end produce -> consume latency);
#   acks=1 and acks=all; replication factor 1 on one node and 3 on a three-node cluster
#   (127.0.0.71-73; Rill's nodes with --node-id/--controller-quorum as benches/replication.sh
#   starts them, Kafka's in KRaft combined mode).
# Kafka runs with its defaults (no fsync per append) and, for acks=all, also with the
# topic config flush.messages=1, which makes every append durable before it is
# acknowledged, as Rill's acks=all is (see "Durability" in the output).
# Then kafka-producer-perf-test (org.apache.kafka.tools.ProducerPerformance) as a second,
# independent load tool against both, for 1 KiB records at max rate with acks=1 and
# acks=all, beside rill-loadgen with the same producer settings (one producer, no
# consumer); then both tools at one fixed rate (AGREE_RATE records/s, low enough that the
# Java producer's own thread is not the limit) against Kafka and against Rill: on Kafka
# they must agree on the median ack latency within AGREE_TOL or 1 ms (the perf test's
# resolution), and the table shows Rill/Kafka as each tool sees it. (At max rate on a
# small machine each tool measures its own core: the perf test's one producer thread
# reaches about the same rate against both brokers, so maxima are reported, not compared.)
# Medians of RUNS runs go to benches/results/kafka.md, with the exact command; a summary
# replaces the "Rill vs Apache Kafka" section of benches/RESULTS.md.
#
#   bash benches/compare-kafka.sh                        # RUNS=3, 10 s measured per run (~80 min)
#   RILL=/path/rill LOADGEN=/path/rill-loadgen bash benches/compare-kafka.sh
#   SMOKE=1 bash benches/compare-kafka.sh                # ~13 min: proves the script, measures nothing
#
# SMOKE=1: RUNS=1, DURATION=3, WARMUP=1, BROKER_WARMUP=3, PERF_WARMUP=2, SIZES=1024 unless
# set; kafka.md is headed "SMOKE RUN, not a measurement" and RESULTS.md is left alone (the
# section it would get goes to $BENCH_DIR/RESULTS-section.md).
#
# Knobs (environment): RUNS (3), DURATION (10 s measured), WARMUP (2 s), SIZES ("1024 100"),
# ACKS_LIST ("1 all"), NODES_LIST ("1 3": 1 node with RF 1, 3 nodes with RF 3), PARTITIONS (8),
# KAFKA_FSYNC (1: also Kafka with flush.messages=1 for acks=all), PERF (1: the
# kafka-producer-perf-test cases), AGREE_TOL (0.20), AGREE_RATE (20000), AGREE_LINGER_MS (5, the
# Java producer's default linger.ms, for both tools in the agreement check), AGREE_ONLY (0; 1: only
# the agreement check, no max-rate, half-rate or dry-run workloads), BROKER_WARMUP (15 s unmeasured after
# every broker start), PERF_WARMUP (5 s of the perf test's records left out), BROKER_CPUS (0: every broker process,
# Rill's or Kafka's, is pinned there), LOADGEN_CPU (1: rill-loadgen and the perf test),
# RILL and LOADGEN (binaries; both unset: cargo build --release), RETENTION_BYTES and
# SEGMENT_BYTES (per partition, both brokers), RILL_TOML_EXTRA (top-level rill.toml lines),
# KAFKA_PROPS_EXTRA (server.properties lines), BENCH_DIR (target/bench-kafka: both
# brokers' data, on the same file system), RESULTS (1: update benches/RESULTS.md; 0: leave
# it), and benches/kafka.sh's KAFKA_* settings.
# Every step is bounded in time (rill-loadgen, the perf test, the CLI, fio, iperf3, broker
# starts and stops), and every process the script starts is stopped on exit, also on
# failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# The exact command, for the report: every knob set in the environment, then the script.
KNOBS="SMOKE RUNS DURATION WARMUP SIZES ACKS_LIST NODES_LIST PARTITIONS BATCH_BYTES MAX_INFLIGHT LINGER_MS
  PRODUCERS CONSUMERS KAFKA_FSYNC PERF PERF_SIZE AGREE_TOL AGREE_RATE AGREE_ONLY DRY BROKER_WARMUP PERF_WARMUP BROKER_CPUS LOADGEN_CPU
  RILL_PORT RETENTION_BYTES SEGMENT_BYTES RILL_TOML_EXTRA BENCH_DIR RESULTS OUT AGREE_LINGER_MS RILL LOADGEN KAFKA_VERSION KAFKA_LIB
  KAFKA_DIR KAFKA_PORT KAFKA_HOSTS KAFKA_HEAP_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_PROPS_EXTRA JAVA"
COMMAND=
for k in $KNOBS; do
  if [ -n "${!k+x}" ]; then
    v=${!k}
    case $v in *[!A-Za-z0-9_./:=,+-]*) v=\'${v//\'/\'\\\'\'}\' ;; esac
    COMMAND+="$k=$v "
  fi
done
COMMAND+="bash benches/compare-kafka.sh"
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  RUNS=${RUNS:-1} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1} BROKER_WARMUP=${BROKER_WARMUP:-3}
  PERF_WARMUP=${PERF_WARMUP:-2} SIZES=${SIZES:-1024}
fi
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SIZES=${SIZES:-1024 100}
RESULTS=${RESULTS:-1}
ACKS_LIST=${ACKS_LIST:-1 all}
NODES_LIST=${NODES_LIST:-1 3}
PARTITIONS=${PARTITIONS:-8}
BATCH_BYTES=${BATCH_BYTES:-131072}
MAX_INFLIGHT=${MAX_INFLIGHT:-16}
LINGER_MS=${LINGER_MS:-5}
PRODUCERS=${PRODUCERS:-2}
CONSUMERS=${CONSUMERS:-2}
KAFKA_FSYNC=${KAFKA_FSYNC:-1}
PERF=${PERF:-1}
PERF_SIZE=${PERF_SIZE:-1024}
AGREE_TOL=${AGREE_TOL:-0.20}
AGREE_RATE=${AGREE_RATE:-20000}
AGREE_LINGER_MS=${AGREE_LINGER_MS:-5}
AGREE_ONLY=${AGREE_ONLY:-0}
DRY=${DRY:-1}
[ "$AGREE_ONLY" = 1 ] && DRY=0 PERF=1
BROKER_WARMUP=${BROKER_WARMUP:-15}
PERF_WARMUP=${PERF_WARMUP:-5}
BROKER_CPUS=${BROKER_CPUS:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
RILL_PORT=${RILL_PORT:-19692}
RETENTION_BYTES=${RETENTION_BYTES:-268435456}
SEGMENT_BYTES=${SEGMENT_BYTES:-67108864}
RILL_TOML_EXTRA=${RILL_TOML_EXTRA:-}
DIR=${BENCH_DIR:-$ROOT/target/bench-kafka}
OUT=${OUT:-benches/results/kafka.md}
RESULTS_OUT=$ROOT/benches/RESULTS.md
{ [ "$SMOKE" = 1 ] || [ "$RESULTS" != 1 ]; } && RESULTS_OUT=$DIR/RESULTS-section.md

export KAFKA_DIR=${KAFKA_DIR:-$DIR/kafka}
export KAFKA_CPUS=$BROKER_CPUS
export KAFKA_RETENTION_BYTES=$RETENTION_BYTES KAFKA_SEGMENT_BYTES=$SEGMENT_BYTES
# shellcheck source=benches/lib.sh
source benches/lib.sh
# shellcheck source=benches/kafka.sh
source benches/kafka.sh
read -r -a HOSTS <<< "$KAFKA_HOSTS"

die() { echo "compare-kafka.sh: $*" >&2; exit 1; }
# bounded LIMIT CMD...: CMD under `timeout` (SIGTERM after LIMIT s, SIGKILL 10 s later), run
# in the background and waited for, so that on Ctrl-C or SIGTERM the exit trap runs at once
# and stops it (bash runs traps only between foreground commands).
CHILD=
bounded() {
  local limit=$1 rc=0; shift
  timeout -k 10 "$limit" "$@" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  return $rc
}
# The rill CLI (it speaks the Kafka protocol, so it serves both brokers), bounded.
rill_cli() { timeout -k 5 60 "$RILL" "$@"; }
# fio and iperf3 as benches/loadgen.sh gets them.
command -v fio >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio; }
command -v iperf3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3; }
for tool in fio iperf3 taskset timeout python3 ss; do
  command -v $tool >/dev/null || die "$tool not found (apt-get install fio iperf3 util-linux coreutils python3 iproute2)"
done
[ "$(nproc)" -gt "$LOADGEN_CPU" ] || die "LOADGEN_CPU=$LOADGEN_CPU but this machine has $(nproc) CPUs"
[[ $AGREE_RATE =~ ^[1-9][0-9]*$ ]] || die "AGREE_RATE=$AGREE_RATE is not a rate in records/s (a whole number above 0, e.g. 20000)"
if [ -z "${RILL:-}" ] && [ -z "${LOADGEN:-}" ]; then
  cargo build --release -p rill-broker -p rill-loadgen
fi
RILL=$(realpath "${RILL:-target/release/rill}")
LOADGEN=$(realpath "${LOADGEN:-target/release/rill-loadgen}")
[ -x "$RILL" ] || die "RILL=$RILL is not an executable; build it (cargo build --release -p rill-broker) or point RILL at one"
[ -x "$LOADGEN" ] || die "LOADGEN=$LOADGEN is not an executable; build it (cargo build --release -p rill-loadgen) or point LOADGEN at one"
kafka_check_java
kafka_fetch

mkdir -p "$DIR" benches/results
# A busy machine makes every figure noise: say so now, and in the report.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$SMOKE" != 1 ] && python3 -c "import sys; sys.exit(0 if float('${LOAD_START%% *}') > 1.5 else 1)"; then
  echo "compare-kafka.sh: warning: load average $LOAD_START before the run; on $(nproc) cores other work will distort the figures" >&2
fi
# Disk: every workload gets a fresh topic, deleted after it; a topic holds at most about
# RETENTION_BYTES + 2 segments per partition replica. fio needs 1.3 GB besides.
max_nodes=$(for n in $NODES_LIST; do echo "$n"; done | sort -n | tail -1)
need=$(( PARTITIONS * max_nodes * (RETENTION_BYTES + 2 * SEGMENT_BYTES) / 1000000 + 1500 ))
free=$(df -Pm "$DIR" | awk 'NR == 2 {print $4}')
[ "$free" -ge "$need" ] || die "$DIR has $free MB free, a run needs about $need MB; free some space, lower RETENTION_BYTES/SEGMENT_BYTES or PARTITIONS, or set BENCH_DIR to a larger file system"

RUNDIR=$DIR/runs
rm -rf "$RUNDIR" "$DIR/rill" "$KAFKA_DIR/data"
mkdir -p "$RUNDIR" "$DIR/rill"
RAW=$DIR/limits.txt
: > "$RAW"
export RUST_BACKTRACE=0

# --- Rill ----------------------------------------------------------------------------
# The same disk bounds as Kafka's (benches/kafka.sh writes the same two topic defaults and
# a one-second retention check).
cat > "$DIR/rill.toml" <<TOML
metrics_listen = ""
retention_check_interval_ms = 1000
$RILL_TOML_EXTRA
[topic_defaults]
"retention.bytes" = $RETENTION_BYTES
"segment.bytes" = $SEGMENT_BYTES
TOML
RILL_PIDS=()
RILL_BOOTSTRAP=
rill_start() { # N: one node on 127.0.0.1 or three on $KAFKA_HOSTS, one shard each, pinned
  local n=$1 i quorum="" hosts
  rm -rf "$DIR/rill/data"
  if [ "$n" = 1 ]; then hosts=(127.0.0.1); else hosts=("${HOSTS[@]:0:$n}"); fi
  for i in "${!hosts[@]}"; do quorum+="${quorum:+,}$((i + 1))@${hosts[$i]}:$((RILL_PORT + 1))"; done
  for i in "${!hosts[@]}"; do
    mkdir -p "$DIR/rill/data/$((i + 1))"
    local cluster=()
    [ "$n" = 1 ] || cluster=(--node-id $((i + 1)) --controller-quorum "$quorum")
    taskset -c "$BROKER_CPUS" "$RILL" broker --config "$DIR/rill.toml" --data-dir "$DIR/rill/data/$((i + 1))" \
      --listen "${hosts[$i]}:$RILL_PORT" --shards 1 "${cluster[@]}" > "$DIR/rill/broker-$((i + 1)).log" 2>&1 &
    RILL_PIDS+=($!)
  done
  RILL_BOOTSTRAP=$(for h in "${hosts[@]}"; do printf '%s:%s,' "$h" "$RILL_PORT"; done)
  RILL_BOOTSTRAP=${RILL_BOOTSTRAP%,}
  for _ in $(seq 600); do
    for i in "${!RILL_PIDS[@]}"; do
      kill -0 "${RILL_PIDS[$i]}" 2>/dev/null || { tail -n 20 "$DIR/rill/broker-$((i + 1)).log" >&2; die "Rill broker $((i + 1)) exited while starting (log above)"; }
    done
    if rill_cli cluster info --bootstrap "${hosts[0]}:$RILL_PORT" --output json 2>/dev/null \
        | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if len(d['brokers']) == $n and d.get('controller') is not None else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$DIR"/rill/broker-*.log >&2
  die "Rill ($n node(s)) did not serve within 60 s (logs above)"
}
rill_stop() { # SIGTERM, then SIGKILL to what is left after 30 s
  local p left
  for p in "${RILL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 300); do
    left=
    for p in "${RILL_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && left+=" $p"; done
    [ -n "$left" ] || break
    sleep 0.1
  done
  if [ -n "$left" ]; then
    echo "compare-kafka.sh: Rill pids$left still running 30 s after SIGTERM; SIGKILL" >&2
    for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  for p in "${RILL_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  RILL_PIDS=()
  RILL_BOOTSTRAP=
}

cleanup() {
  set +e
  if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; fi
  [ -n "$LIB_IPERF_PID" ] && kill "$LIB_IPERF_PID" 2>/dev/null
  rill_stop
  kafka_stop
  rm -rf "$DIR/rill/data" "$KAFKA_DIR/data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- one broker at a time --------------------------------------------------------------
SYSTEM=       # rill or kafka: what is running
BOOTSTRAP=
broker_start() { # SYSTEM N
  SYSTEM=$1
  echo "== [${SECONDS} s] starting $1 with $2 node(s)"
  if [ "$1" = rill ]; then rill_start "$2"; BOOTSTRAP=$RILL_BOOTSTRAP
  else kafka_start "$2" || die "Apache Kafka did not start (logs in $KAFKA_DIR/logs)"; BOOTSTRAP=$KAFKA_BOOTSTRAP; fi
}
broker_stop() {
  if [ "$SYSTEM" = rill ]; then rill_stop; else kafka_stop; fi
  SYSTEM=
}
broker_pids() {
  case $SYSTEM in rill) echo "${RILL_PIDS[@]}" ;; kafka) kafka_pids ;; esac
}
broker_ticks() { # utime + stime of every broker process, in clock ticks
  local t=0 p
  for p in $(broker_pids); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $t
}
TICKS=$(getconf CLK_TCK)

# Variants: rill, kafka (Kafka's defaults), kafkasync (Kafka, topic flush.messages=1).
variant_system() { [ "$1" = rill ] && echo rill || echo kafka; }
variants_of() { # SYSTEM ACKS
  if [ "$1" = rill ]; then echo rill
  elif [ "$2" = all ] && [ "$KAFKA_FSYNC" = 1 ]; then echo kafka kafkasync
  else echo kafka; fi
}

# topic_create NAME RF VARIANT: a fresh topic through the Kafka protocol (the rill CLI
# speaks only that, so it serves both brokers), then wait until every partition has a
# leader and RF in-sync replicas.
topic_create() {
  local name=$1 rf=$2 variant=$3 cfg=() first=${BOOTSTRAP%%,*}
  [ "$variant" = kafkasync ] && cfg=(--config flush.messages=1)
  rill_cli topic create "$name" --partitions "$PARTITIONS" --replication-factor "$rf" "${cfg[@]}" \
      --bootstrap "$first" > /dev/null || die "creating topic $name (RF $rf) on $SYSTEM at $first failed"
  for _ in $(seq 300); do
    if rill_cli topic describe "$name" --bootstrap "$first" --output json 2>/dev/null | python3 -c "
import json, sys
d = json.load(sys.stdin)
ok = len(d['partitions']) == $PARTITIONS and all(p['leader'] >= 0 and len(p['isr']) == $rf for p in d['partitions'])
sys.exit(0 if ok else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  die "topic $name on $SYSTEM ($first): not every partition had a leader and $rf in-sync replicas within 30 s"
}
topic_delete() { rill_cli topic delete "$1" --bootstrap "${BOOTSTRAP%%,*}" > /dev/null 2>&1 || echo "warning: could not delete topic $1 on $SYSTEM" >&2; }

# loadgen NAME ARGS...: rill-loadgen pinned to LOADGEN_CPU, bounded in time; the report goes
# to $RUNDIR/NAME, the brokers' CPU (cores) over the invocation to NAME.cpu. A run with
# problems (exit 1) is kept and flagged; one that could not run stops the benchmark.
loadgen() {
  local name=$1; shift
  local d=${LG_DIR:-$RUNDIR}/$name rc=0 before after t0 t1
  before=$(broker_ticks); t0=$(date +%s.%N)
  bounded $((WARMUP + DURATION + 120)) taskset -c "$LOADGEN_CPU" "$LOADGEN" --cores 1 \
    --report-dir "$d" "$@" > "$d.out" 2> "$d.err" || rc=$?
  after=$(broker_ticks); t1=$(date +%s.%N)
  python3 -c "import sys; print((int(sys.argv[1]) - int(sys.argv[2])) / int(sys.argv[3]) / (float(sys.argv[5]) - float(sys.argv[4])))" \
    "$after" "$before" "$TICKS" "$t0" "$t1" > "$d.cpu"
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    die "rill-loadgen ($name) did not finish within $((WARMUP + DURATION + 120)) s; $SYSTEM may be stuck (see $d.out, $d.err)"
  elif [ $rc -ge 2 ]; then
    cat "$d.err" >&2; die "rill-loadgen could not run ($name; output in $d.out, $d.err)"
  fi
  grep -E "^throughput" "$d.out" | sed "s/^/   $name: /" || true
  [ $rc = 0 ] || echo "   $name: finished with problems (exit 1; see $d.out)"
}
rate_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1] + '/summary.json'))['throughput']['produce_records_per_s'])" "$RUNDIR/$1"; }
# pp_rate_of NAME: the steady-state rate kafka-producer-perf-test reported (0 if none).
pp_rate_of() { python3 -c "import re,sys; m=re.search(r'steady state records sent, ([\d.]+) records/sec', open(sys.argv[1]).read()); print(m.group(1) if m else 0)" "$RUNDIR/$1.out" 2>/dev/null || echo 0; }

# perf_test NAME TOPIC ACKS RATE_HINT [THROUGHPUT]: kafka-producer-perf-test, pinned like
# rill-loadgen, with the producer settings of rill-loadgen's runs; it sends RATE_HINT x
# (PERF_WARMUP + DURATION) records (RATE_HINT: what rill-loadgen reached with the same
# settings, or the fixed rate) and reports the steady state after the first RATE_HINT x
# PERF_WARMUP (a fresh JVM compiles its hot paths during the first seconds, so its warm-up
# is longer than rill-loadgen's). THROUGHPUT: records/s it holds to (-1, the default: as
# fast as it can). LINGER: its linger.ms (default LINGER_MS).
perf_test() {
  local name=$1 topic=$2 acks=$3 hint=$4 throughput=${5:--1} linger=${6:-$LINGER_MS} n w rc=0 limit=$((3 * (PERF_WARMUP + DURATION) + 90))
  n=$(python3 -c "print(max(20000, int($hint * ($PERF_WARMUP + $DURATION))))")
  w=$(python3 -c "print(max(2000, int($hint * $PERF_WARMUP)))")
  # shellcheck disable=SC2086 # the JVM options are a list of words
  bounded $limit taskset -c "$LOADGEN_CPU" "$JAVA" -Xmx512M $KAFKA_JVM_PERFORMANCE_OPTS \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$KAFKA_LIB/*" org.apache.kafka.tools.ProducerPerformance \
    --bootstrap-server "$BOOTSTRAP" --topic "$topic" --num-records "$n" --warmup-records "$w" \
    --throughput "$throughput" --record-size "$PERF_SIZE" \
    --command-property acks="$acks" batch.size="$BATCH_BYTES" linger.ms="$linger" \
      max.in.flight.requests.per.connection="$MAX_INFLIGHT" enable.idempotence=false compression.type=none \
    > "$RUNDIR/$name.out" 2> "$RUNDIR/$name.err" || rc=$?
  if [ $rc != 0 ]; then
    echo "   $name: kafka-producer-perf-test exited $rc$( [ $rc = 124 ] && echo " (timed out after $limit s)"); see $RUNDIR/$name.err" >&2
    echo "$rc" > "$RUNDIR/$name.failed"
  fi
  grep "steady state records sent" "$RUNDIR/$name.out" | sed "s/^/   $name: /" || true
}

# broker_warmup N: a closed-loop run of BROKER_WARMUP s on a scratch topic right after a
# start, measured by nobody: a JVM just started runs interpreted code and compiles its hot
# paths on the broker's one core, which would otherwise land in the first workload.
broker_warmup() {
  local n=$1
  [ "$BROKER_WARMUP" -gt 0 ] || return 0
  mkdir -p "$DIR/warm"
  topic_create warmup "$n" "$SYSTEM"
  LG_DIR=$DIR/warm loadgen "warm-$SYSTEM-$n" --bootstrap "$BOOTSTRAP" --topic warmup --record-bytes 1024 \
    --rate max --acks 1 --partitions "$PARTITIONS" --batch-bytes "$BATCH_BYTES" --max-inflight "$MAX_INFLIGHT" \
    --linger-ms "$LINGER_MS" --producers "$PRODUCERS" --consumers "$CONSUMERS" --duration "$BROKER_WARMUP" --warmup 0
  topic_delete warmup
}

# max_phase N RUN: every workload at max rate on SYSTEM, then the perf-test cases.
max_phase() {
  local n=$1 run=$2 size acks v name topic
  for size in $SIZES; do
    [ "$AGREE_ONLY" != 1 ] || break
    for acks in $ACKS_LIST; do
      for v in $(variants_of "$SYSTEM" "$acks"); do
        name=max-$size-$acks-$n-$v-$run
        topic=${name}
        topic_create "$topic" "$n" "$v"
        loadgen "$name" --bootstrap "$BOOTSTRAP" --topic "$topic" --record-bytes "$size" --rate max \
          --acks "$acks" "${COMMON[@]}"
        topic_delete "$topic"
      done
    done
  done
  [ "$PERF" = 1 ] || return 0
  for acks in $ACKS_LIST; do
    for v in $(variants_of "$SYSTEM" "$acks"); do
      if [ "$AGREE_ONLY" != 1 ]; then
        # rill-loadgen with the perf test's shape: one producer, no consumer.
        name=lgm-$PERF_SIZE-$acks-$n-$v-$run
        topic_create "$name" "$n" "$v"
        loadgen "$name" --bootstrap "$BOOTSTRAP" --topic "$name" --record-bytes "$PERF_SIZE" --rate max \
          --acks "$acks" "${PRODUCER_ONLY[@]}"
        topic_delete "$name"
        name=pp-$PERF_SIZE-$acks-$n-$v-$run
        topic_create "$name" "$n" "$v"
        perf_test "$name" "$name" "$acks" "$(rate_of "lgm-$PERF_SIZE-$acks-$n-$v-$run")"
        topic_delete "$name"
      fi
      # The agreement check: both tools at one fixed rate, AGREE_RATE, on Kafka and on
      # Rill, compared by ack latency. The rate is fixed in records/s, the same for both
      # brokers whichever runs first, and low enough that the Java producer's own thread is
      # not the limit (at half its max it adds about 2 ms of its own, against either
      # broker). Both linger the same (AGREE_LINGER_MS, default 5, the Java producer's
      # default): each holds a part-filled batch until linger.ms or batch.size, so both put
      # the same requests on the broker. Without lingering they do not: rill-loadgen sends
      # what is due every 100 us (about 10,000 small requests a second at 20k records/s)
      # while the perf test's throttle sends in 2 ms bursts that the Java producer packs
      # into a few requests, and a broker that pays per request answers the two differently.
      [ "$v" != kafkasync ] || continue
      local fixed=$AGREE_RATE
      name=lgf-$PERF_SIZE-$acks-$n-$v-$run
      topic_create "$name" "$n" "$v"
      loadgen "$name" --bootstrap "$BOOTSTRAP" --topic "$name" --record-bytes "$PERF_SIZE" --rate "$fixed" \
        --acks "$acks" "${PRODUCER_AGREE[@]}"
      topic_delete "$name"
      name=ppf-$PERF_SIZE-$acks-$n-$v-$run
      topic_create "$name" "$n" "$v"
      perf_test "$name" "$name" "$acks" "$fixed" "$fixed" "$AGREE_LINGER_MS"
      topic_delete "$name"
    done
  done
}

# half_phase N RUN: every workload at half of the lower max of the two brokers compared
# (Rill and Kafka: kind `half`; Rill and Kafka with flush.messages=1: kind `halfsync`), so
# both carry the same load and their latencies compare.
half_phase() {
  local n=$1 run=$2 size acks v kind rate name peer
  for size in $SIZES; do
    for acks in $ACKS_LIST; do
      for kind in half halfsync; do
        peer=kafka; [ $kind = halfsync ] && peer=kafkasync
        [ $kind = half ] || { [ "$acks" = all ] && [ "$KAFKA_FSYNC" = 1 ]; } || continue
        rate=$(python3 -c "print(max(1, int(min($(rate_of "max-$size-$acks-$n-rill-$run"), $(rate_of "max-$size-$acks-$n-$peer-$run")) / 2)))")
        for v in $(variants_of "$SYSTEM" "$acks"); do
          [ "$v" = rill ] || [ "$v" = $peer ] || continue
          name=$kind-$size-$acks-$n-$v-$run
          topic_create "$name" "$n" "$v"
          loadgen "$name" --bootstrap "$BOOTSTRAP" --topic "$name" --record-bytes "$size" --rate "$rate" \
            --acks "$acks" "${COMMON[@]}"
          topic_delete "$name"
        done
      done
    done
  done
}

COMMON=(--partitions "$PARTITIONS" --batch-bytes "$BATCH_BYTES" --max-inflight "$MAX_INFLIGHT"
        --linger-ms "$LINGER_MS" --producers "$PRODUCERS" --consumers "$CONSUMERS"
        --duration "$DURATION" --warmup "$WARMUP")
PRODUCER_ONLY=(--partitions "$PARTITIONS" --batch-bytes "$BATCH_BYTES" --max-inflight "$MAX_INFLIGHT"
        --linger-ms "$LINGER_MS" --producers 1 --consumers 0 --duration "$DURATION" --warmup "$WARMUP")
PRODUCER_AGREE=(--partitions "$PARTITIONS" --batch-bytes "$BATCH_BYTES" --max-inflight "$MAX_INFLIGHT"
        --linger-ms "$AGREE_LINGER_MS" --producers 1 --consumers 0 --duration "$DURATION" --warmup "$WARMUP")

for run in $(seq "$RUNS"); do
  echo "== [${SECONDS} s] run $run/$RUNS: machine limits"
  {
    fio_seqwrite "$DIR"
    fio_sync "$DIR"
    iperf3_loopback "$BROKER_CPUS" "$LOADGEN_CPU" $((RILL_PORT + 7)) "$DIR"
  } >> "$RAW"
  tail -n 4 "$RAW" | sed 's/^/   /'
  if [ "$DRY" = 1 ]; then
    for size in $SIZES; do
      SYSTEM=none loadgen "dry-$size-x-x-x-$run" --dry-run --record-bytes "$size" --batch-bytes "$BATCH_BYTES" --duration 5 --warmup 1
    done
  fi
  # Which broker goes first alternates between runs, so a drift of the machine's speed
  # during the run does not favour one.
  order="rill kafka"; [ $((run % 2)) = 0 ] && order="kafka rill"
  for n in $NODES_LIST; do
    for system in $order; do
      broker_start "$system" "$n"
      broker_warmup "$n"
      echo "== [${SECONDS} s] run $run/$RUNS: $n node(s), $system, max rate"
      max_phase "$n" "$run"
      broker_stop
    done
    [ "$AGREE_ONLY" != 1 ] || continue
    for system in $order; do
      broker_start "$system" "$n"
      broker_warmup "$n"
      echo "== [${SECONDS} s] run $run/$RUNS: $n node(s), $system, half rate"
      half_phase "$n" "$run"
      broker_stop
    done
  done
done

# --- the tables -------------------------------------------------------------------------
RILL_VERSION=$("$RILL" --version 2>/dev/null || echo unknown) KAFKA_VERSION=$KAFKA_VERSION \
SMOKE=$SMOKE COMMAND=$COMMAND RESULTS_OUT=$RESULTS_OUT LOAD_START=$LOAD_START \
BROKER_WARMUP=$BROKER_WARMUP PERF_WARMUP=$PERF_WARMUP AGREE_RATE=$AGREE_RATE \
KAFKA_HEAP_OPTS=$KAFKA_HEAP_OPTS KAFKA_JVM_PERFORMANCE_OPTS=$KAFKA_JVM_PERFORMANCE_OPTS \
python3 - "$RAW" "$RUNDIR" "$OUT" "$RUNS" "$DURATION" "$WARMUP" "$PARTITIONS" "$BATCH_BYTES" "$MAX_INFLIGHT" \
  "$LINGER_MS" "$PRODUCERS" "$CONSUMERS" "$AGREE_TOL" "$BROKER_CPUS" "$LOADGEN_CPU" "$RETENTION_BYTES" \
  "$SEGMENT_BYTES" "$PERF_SIZE" "$DIR/rill.toml" "$KAFKA_DIR/run" "$AGREE_LINGER_MS" <<'PY'
import sys, os, re, json, glob, statistics, collections, datetime, platform, subprocess
(raw, rundir, out, runs, duration, warmup, partitions, batch, inflight, linger, producers, consumers,
 tol, broker_cpus, loadgen_cpu, retention, segment, perf_size, rill_toml, kafka_run, agree_linger) = sys.argv[1:]
tol = float(tol)
agree_rate = int(os.environ["AGREE_RATE"])
med = statistics.median
lim = collections.defaultdict(list)
for line in open(raw):
    k, v = line.split()
    lim[k].append(float(v))
disk, net, syncs = (med(lim[k]) if lim[k] else float("nan") for k in ("fio_seqwrite_MBps", "iperf3_loopback_MBps", "fio_sync_iops"))

# Runs: <kind>-<size>-<acks>-<nodes>-<variant>-<run>
runs_by = collections.defaultdict(list)
for path in glob.glob(os.path.join(rundir, "*", "summary.json")):
    d = os.path.dirname(path)
    kind, size, acks, nodes, variant, _ = os.path.basename(d).split("-")
    s = json.load(open(path))
    try:
        s["broker_cpu"] = float(open(d + ".cpu").read())
    except (OSError, ValueError):
        s["broker_cpu"] = float("nan")
    runs_by[(kind, size, acks, nodes, variant)].append(s)
pp_by = collections.defaultdict(list)
ppfail = collections.defaultdict(int)
pat = re.compile(r"(\d+) steady state records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")
for path in glob.glob(os.path.join(rundir, "pp-*.out")) + glob.glob(os.path.join(rundir, "ppf-*.out")):
    kind, size, acks, nodes, variant, _ = os.path.basename(path)[:-4].split("-")
    m = pat.search(open(path).read())
    key = (size, acks, nodes, variant) if kind == "pp" else ("fixed", size, acks, nodes, variant)
    if m:
        pp_by[key].append({"rate": float(m.group(2)), "avg": float(m.group(4)), "p50": float(m.group(6)), "p99": float(m.group(8))})
    else:
        ppfail[key] += 1

def m(key, f):
    vals = [v for v in (f(s) for s in runs_by.get(key, [])) if v is not None]
    return med(vals) if vals else float("nan")
rate = lambda s: s["throughput"]["produce_records_per_s"]
mbps = lambda s: s["throughput"]["produce_mb_per_s"]
ack = lambda q: (lambda s: (s.get("ack") or {}).get(q + "_ms"))
cpu = lambda s: s["broker_cpu"]
def fr(v):
    if v != v: return "-"
    return f"{v/1e6:.2f}M" if v >= 1e6 else f"{v/1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"
def ms(v):
    return "-" if v != v else (f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}")
def c2(v):
    return "-" if v != v else f"{v:.2f}"
def x(v):
    return "-" if v != v else f"{v:.2f}x"
def clean(key):
    rs = runs_by.get(key, [])
    return f"{sum(1 for s in rs if not s['problems'])}/{len(rs)}"

sizes = sorted({k[1] for k in runs_by if k[0] != "dry"}, key=lambda s: -int(s))
acks_list = [a for a in ("1", "all") if any(k[2] == a for k in runs_by)]
nodes_list = sorted({k[3] for k in runs_by if k[0] != "dry"})
peers = [("kafka", "half", "Kafka")]
if any(k[4] == "kafkasync" for k in runs_by):
    peers.append(("kafkasync", "halfsync", "Kafka flush.messages=1"))
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
smoke = os.environ["SMOKE"] == "1"
command = os.environ["COMMAND"]
title = f"## Rill vs Apache Kafka (issue 14), {datetime.date.today()}" + (": SMOKE RUN, not a measurement" if smoke else "")
lines = [
    title,
    "",
] + ([
    f"**Smoke run, not a measurement**: `{command}` ran every step once with short durations to prove the script works end to end; "
    "its figures say nothing about either broker. The measurement is the same script without SMOKE=1, on a quiet machine.",
    "",
] if smoke else []) + [
    f"Command: `{command}` (medians of {runs} runs; Kafka and Rill one after the other "
    "on the same cores and disk, which one goes first alternating between runs; the machine's limits measured in the same run).",
    f"Machine: {platform.machine()}, {cores} cores, kernel {platform.release()}; load average {os.environ['LOAD_START']} at the start, {' '.join(load)} at the end. "
    f"Rill: `{os.environ['RILL_VERSION']}`. Apache Kafka {os.environ['KAFKA_VERSION']} (KRaft, combined broker + controller, "
    f"from Maven Central's jars), Java `{subprocess.run(['java', '-version'], capture_output=True, text=True).stderr.splitlines()[0]}`, "
    f"`{os.environ['KAFKA_HEAP_OPTS']} {os.environ['KAFKA_JVM_PERFORMANCE_OPTS']}`.",
    f"Pinning: every broker process (Rill `--shards 1`, or Kafka's JVM) on CPU {broker_cpus}, three of them for the three-node "
    f"clusters; rill-loadgen (`--cores 1`) and kafka-producer-perf-test on CPU {loadgen_cpu}. Three nodes listen on 127.0.0.71-73; one node on 127.0.0.1.",
    f"Workload (rill-loadgen): {partitions} partitions, {producers} producers + {consumers} consumers, batch {batch} B, linger {linger} ms, "
    f"max in flight {inflight} per connection, random values, no keys, no compression; {warmup} s warm-up then {duration} s measured; "
    "a fresh topic per workload, deleted after it. "
    f"Every broker start is followed by {os.environ['BROKER_WARMUP']} s of unmeasured load (a JVM just started is still compiling its hot paths). `max`: closed loop; `half`: a fixed rate, half of the lower max of the two brokers "
    "compared in the same run, so both carry the same load.",
    f"Both brokers keep at most {int(retention) >> 20} MiB per partition in {int(segment) >> 20} MiB segments, checked every second.",
    "",
    "| machine limit (same run) | median |",
    "|---|---|",
    f"| disk sequential write (fio, 1 MiB direct, io_uring, iodepth 8) | {disk:.0f} MB/s |",
    f"| disk write + fdatasync (fio, 4 KiB, iodepth 1) | {syncs:.0f} syncs/s |",
    f"| loopback TCP (iperf3, server on CPU {broker_cpus}, client on CPU {loadgen_cpu}) | {net:.0f} MB/s |",
]
for size in sizes:
    key = ("dry", size, "x", "x", "x")
    if key in runs_by:
        lines.append(f"| rill-loadgen ceiling, {size} B records (dry run, 1 core) | {fr(m(key, rate))} rec/s |")
limit, limit_name = (disk, "disk") if disk <= net else (net, "loopback")
e2e = lambda q: (lambda s: (s.get("e2e") or {}).get(q + "_ms"))
crate = lambda s: s["throughput"]["consume_records_per_s"]
def div(a, b):
    return a / b if b else float("nan")
def lat3(key, f):
    return " / ".join(ms(m(key, f(q))) for q in ("p50", "p99", "p999"))
lines += [
    "",
    "### Throughput: rill-loadgen at max rate (closed loop)",
    "",
    f"Rill/Kafka above 1 favours Rill. `/ {limit_name}`: produced MB/s times the replication factor (bytes every replica writes "
    f"to this one {limit_name}) divided by the {limit_name} limit above (the lower of the two). Consumed: what the "
    f"{consumers} consumers read in the same window. CPU: cores all broker processes used over the invocation.",
    "",
    "| RF | records | acks | Kafka run as | Rill rec/s | Kafka rec/s | **Rill/Kafka** | Rill / " + limit_name + " | Kafka / " + limit_name +
    " | consumed rec/s Rill / Kafka | broker CPU Rill / Kafka | clean runs Rill / Kafka |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]
summary = []  # one row per throughput row, with the latency ratios at the fixed rate, for RESULTS.md
for nodes in nodes_list:
    rf = int(nodes)
    for size in sizes:
        for acks in acks_list:
            for peer, halfkind, peer_name in peers:
                if peer == "kafkasync" and acks != "all":
                    continue
                rk, kk = ("max", size, acks, nodes, "rill"), ("max", size, acks, nodes, peer)
                if rk not in runs_by and kk not in runs_by:
                    continue
                r, k = m(rk, rate), m(kk, rate)
                lines.append(
                    f"| {rf} | {size} B | {acks} | {peer_name} | {fr(r)} | {fr(k)} | **{x(div(r, k))}** | "
                    f"{x(m(rk, mbps) * rf / limit)} | {x(m(kk, mbps) * rf / limit)} | {fr(m(rk, crate))} / {fr(m(kk, crate))} | "
                    f"{c2(m(rk, cpu))} / {c2(m(kk, cpu))} | {clean(rk)} / {clean(kk)} |")
                hr, hk = (halfkind, size, acks, nodes, "rill"), (halfkind, size, acks, nodes, peer)
                summary.append(
                    f"| {rf} | {size} B | {acks} | {peer_name} | {fr(r)} / {fr(k)} | **{x(div(r, k))}** | "
                    f"{ms(m(hr, ack('p99')))} / {ms(m(hk, ack('p99')))} | **{x(div(m(hr, ack('p99')), m(hk, ack('p99'))))}** | "
                    f"**{x(div(m(hr, ack('p999')), m(hk, ack('p999'))))}** | "
                    f"{ms(m(hr, e2e('p99')))} / {ms(m(hk, e2e('p99')))} | **{x(div(m(hr, e2e('p99')), m(hk, e2e('p99'))))}** |")
lines += [
    "",
    "### Latency: rill-loadgen at the same fixed rate (open loop)",
    "",
    "Both brokers get the same rate: half of the lower of their two maxima in this run. Latencies in ms, below 1 favours Rill. "
    "ack: produce request sent (at each record's intended send time, so a broker that falls behind is charged its queue) "
    "to acknowledgement. e2e: the same start to the record's arrival at a consumer (produce -> consume).",
    "",
    "| RF | records | acks | Kafka run as | rate | achieved Rill / Kafka | Rill ack p50 / p99 / p99.9 | Kafka ack p50 / p99 / p99.9 | "
    "**ack p99 Rill/Kafka** | **ack p99.9 Rill/Kafka** | Rill e2e p50 / p99 | Kafka e2e p50 / p99 | **e2e p99 Rill/Kafka** | clean runs Rill / Kafka |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for nodes in nodes_list:
    rf = int(nodes)
    for size in sizes:
        for acks in acks_list:
            for peer, halfkind, peer_name in peers:
                if peer == "kafkasync" and acks != "all":
                    continue
                rk, kk = (halfkind, size, acks, nodes, "rill"), (halfkind, size, acks, nodes, peer)
                if rk not in runs_by and kk not in runs_by:
                    continue
                target = m(rk, lambda s: s["setup"].get("target_records_per_s"))
                lines.append(
                    f"| {rf} | {size} B | {acks} | {peer_name} | {fr(target)}/s | {fr(m(rk, rate))} / {fr(m(kk, rate))} | "
                    f"{lat3(rk, ack)} | {lat3(kk, ack)} | **{x(div(m(rk, ack('p99')), m(kk, ack('p99'))))}** | "
                    f"**{x(div(m(rk, ack('p999')), m(kk, ack('p999'))))}** | "
                    f"{ms(m(rk, e2e('p50')))} / {ms(m(rk, e2e('p99')))} | {ms(m(kk, e2e('p50')))} / {ms(m(kk, e2e('p99')))} | "
                    f"**{x(div(m(rk, e2e('p99')), m(kk, e2e('p99'))))}** | {clean(rk)} / {clean(kk)} |")
verdicts = []

if pp_by or ppfail:
    lines += [
        "",
        f"### kafka-producer-perf-test, a second load tool ({perf_size} B records, max rate)",
        "",
        "`org.apache.kafka.tools.ProducerPerformance` (Kafka's `kafka-producer-perf-test`, Java producer, one producer, "
        f"`batch.size={batch} linger.ms={linger} max.in.flight.requests.per.connection={inflight} enable.idempotence=false compression.type=none`, "
        f"steady state after a warm-up of as many records as rill-loadgen sent in {os.environ['PERF_WARMUP']} s, then as many as it sent in {duration} s) beside rill-loadgen with the same shape "
        f"(`--producers 1 --consumers 0`, same batch, linger and in flight). At max rate each tool measures its own ceiling as much as the broker's: "
        "the perf test's one producer thread on one core reaches about the same rate against both brokers. The perf test's latencies are its own "
        "(send call to acknowledgement, closed loop: they include its queue of unsent records).",
        "",
        "| RF | acks | broker | perf-test rec/s | rill-loadgen rec/s | rill-loadgen / perf-test | perf-test p50 / p99 ms | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"rill": "Rill", "kafka": "Kafka", "kafkasync": "Kafka flush.messages=1"}
    for nodes in nodes_list:
        for acks in acks_list:
            for v in ("rill", "kafka", "kafkasync"):
                key = (perf_size, acks, nodes, v)
                lk = ("lgm", perf_size, acks, nodes, v)
                if key not in pp_by and key not in ppfail and lk not in runs_by:
                    continue
                pr = med([p["rate"] for p in pp_by[key]]) if pp_by[key] else float("nan")
                lr = m(lk, rate)
                ratio = div(lr, pr)
                p50 = med([p["p50"] for p in pp_by[key]]) if pp_by[key] else float("nan")
                p99 = med([p["p99"] for p in pp_by[key]]) if pp_by[key] else float("nan")
                failed = f", {ppfail[key]} failed" if ppfail[key] else ""
                lines.append(f"| {nodes} | {acks} | {names[v]} | {fr(pr)} | {fr(lr)} | {x(ratio)} | {ms(p50)} / {ms(p99)} | {len(pp_by[key])}{failed} |")
    # The agreement check: both tools at one fixed rate, by median ack latency; the verdict
    # on Kafka, Rill beside it.
    lines += [
        "",
        f"### Agreement of the two tools at one fixed rate, {perf_size} B records",
        "",
        f"Both tools in the shape above, each holding the same rate, {agree_rate} records/s, against each broker: low enough that "
        "neither tool's own core is the limit (at half of its max, the Java producer's one thread adds about 2 ms of its own against "
        "either broker, which earlier runs of this script showed). Each measures ack latency its own way: the perf test from its send "
        "call to the acknowledgement, in whole milliseconds (its mean is not biased by that: both ends of each interval are cut to the "
        "millisecond); rill-loadgen from each record's intended send time, in microseconds. They agree on Kafka when their median ack "
        f"latencies differ by at most {tol:.0%} of the perf test's or 1 ms (its resolution), whichever is larger, and both held the rate "
        f"(at least 95% of it); judged on one node only (three Kafka nodes share one core here, three JVMs on CPU {broker_cpus}: shown, not judged). Both run with linger.ms={agree_linger} here and hold a part-filled batch until linger.ms or batch.size, so both put "
        "the same requests on the broker (without lingering they do not: rill-loadgen sends what is due every 100 us, the perf test in 2 ms bursts).",
        "",
        "| RF | acks | broker | perf-test rec/s | rill-loadgen rec/s | perf-test ack p50 / mean / p99 ms | rill-loadgen ack p50 / mean / p99 ms | p50 difference | runs | agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen = {}
    for nodes in nodes_list:
        for acks in acks_list:
            for v in ("kafka", "rill"):
                key = ("fixed", perf_size, acks, nodes, v)
                lk = ("lgf", perf_size, acks, nodes, v)
                if key not in pp_by and key not in ppfail and lk not in runs_by:
                    continue
                pps = pp_by.get(key, [])
                pq = lambda q, pps=pps: med([p[q] for p in pps]) if pps else float("nan")
                lq = lambda q, lk=lk: m(lk, ack(q))
                seen[(nodes, acks, v)] = (pq, lq)
                pr, lr = pq("rate"), m(lk, rate)
                diff = abs(lq("p50") - pq("p50"))
                held = pr >= 0.95 * agree_rate and lr >= 0.95 * agree_rate
                ok = diff == diff and diff <= max(tol * pq("p50"), 1.0) and held and ppfail[key] == 0 and bool(pps)
                # The verdict is on one node. Three Kafka nodes share one core here (three
                # JVMs on CPU 0, ack p99 several times one node's at this rate): an overloaded
                # broker, where the tools are shown but not judged.
                judged = v == "kafka" and nodes == "1"
                if judged:
                    verdicts.append((f"RF {nodes} acks={acks}", ok, lq("p50"), pq("p50")))
                failed = f", {ppfail[key]} failed" if ppfail[key] else ""
                verdict = ("**PASS**" if ok else "**FAIL**") if judged else ("(agrees)" if ok else "(differs)")
                lines.append(
                    f"| {nodes} | {acks} | {names[v]} | {fr(pr)} | {fr(lr)} | {ms(pq('p50'))} / {ms(pq('avg'))} / {ms(pq('p99'))} | "
                    f"{ms(lq('p50'))} / {ms(lq('mean'))} / {ms(lq('p99'))} | {ms(diff)} ms | {len(pps)}{failed} | {verdict} |")
    lines += ["", f"Rill/Kafka as each tool sees it at {agree_rate} records/s (medians; below 1 favours Rill):", "",
              "| RF | acks | perf-test mean Rill/Kafka | rill-loadgen mean Rill/Kafka | perf-test p99 Rill/Kafka | rill-loadgen p99 Rill/Kafka |",
              "|---|---|---|---|---|---|"]
    for nodes in nodes_list:
        for acks in acks_list:
            if (nodes, acks, "kafka") not in seen or (nodes, acks, "rill") not in seen:
                continue
            (kp, kl), (rp, rl) = seen[(nodes, acks, "kafka")], seen[(nodes, acks, "rill")]
            lines.append(f"| {nodes} | {acks} | **{x(div(rp('avg'), kp('avg')))}** | **{x(div(rl('mean'), kl('mean')))}** | "
                         f"**{x(div(rp('p99'), kp('p99')))}** | **{x(div(rl('p99'), kl('p99')))}** |")
    lines += ["", "Rill/Kafka as each tool sees it (max rate, medians):", "",
              "| RF | acks | Kafka run as | perf-test Rill/Kafka | rill-loadgen (same shape) Rill/Kafka |", "|---|---|---|---|---|"]
    for nodes in nodes_list:
        for acks in acks_list:
            for peer, _, peer_name in peers:
                if peer == "kafkasync" and acks != "all":
                    continue
                pr = lambda v: med([p["rate"] for p in pp_by[(perf_size, acks, nodes, v)]]) if pp_by[(perf_size, acks, nodes, v)] else float("nan")
                lr = lambda v: m(("lgm", perf_size, acks, nodes, v), rate)
                lines.append(f"| {nodes} | {acks} | {peer_name} | **{x(pr('rill') / pr(peer))}** | **{x(lr('rill') / lr(peer))}** |")
    overall = bool(verdicts) and all(ok for _, ok, _, _ in verdicts)
    lines += ["", f"Agreement of rill-loadgen and kafka-producer-perf-test on Kafka, median ack latency at {agree_rate} records/s "
              f"(within {tol:.0%} or 1 ms): **{'PASS' if overall else 'FAIL'}** ("
              + ", ".join(f"{n}: rill-loadgen {ms(lg)} ms, perf-test {ms(pp)} ms, {'PASS' if ok else 'FAIL'}" for n, ok, lg, pp in verdicts) + ")."]

kprops = ""
for f in sorted(glob.glob(os.path.join(kafka_run, "server-1.properties"))):
    kprops = "".join(l for l in open(f) if l.strip() and not l.startswith("#") and not l.startswith(("node.id", "listeners", "advertised", "controller.quorum", "log.dirs")))
lines += [
    "",
    "### Durability: what each acknowledgement means in these runs",
    "",
    "- acks=1: both answer once the leader has the batch in its log file (page cache for Kafka, Rill's segment file); "
    "it survives kill -9 of the broker, not a power loss. Neither fsyncs.",
    "- acks=all, Rill: answered once the batch is fdatasync'd on the leader (group commit: one fdatasync for every append waiting) "
    "and, with RF 3, every in-sync follower has it in its files (followers do not fsync: `replica_fsync = false`, the default).",
    "- acks=all, Kafka (its defaults): answered once every in-sync replica has the batch in its page cache; nothing is fsync'd "
    "(`log.flush.interval.messages` and `flush.messages` unset), so on one node acks=all is no more durable than acks=1.",
    "- acks=all, Kafka with `flush.messages=1` (topic config): every append is fsync'd (`FileChannel.force`) before it is acknowledged, "
    "one per partition append, without group commit, so the leader's durability matches Rill's acks=all; on RF 3 followers also fsync "
    "every append they copy, which is stronger than Rill's default (Rill's equivalent is `replica_fsync = true`, not run here).",
    "",
    "Rill's config (`rill.toml`):",
    "",
    "```toml",
    open(rill_toml).read().strip(),
    "```",
    "",
    "Kafka's settings that differ from its defaults (node 1 of the last cluster started; every node has the same apart from "
    "listeners, node id, voters and log dir, omitted here; a one-node cluster gives its internal topics replication factor 1 "
    "and min.isr 1):",
    "",
    "```properties",
    kprops.strip(),
    "```",
    "",
    "All runs: " + ", ".join(f"{k}={[round(v, 1) for v in vs]}" for k, vs in sorted(lim.items())) + "; "
    + "; ".join(f"{'-'.join(k)}: {[round(rate(s)) for s in v]}" for k, v in sorted(runs_by.items()))
    + ("; " + "; ".join(f"pp-{'-'.join(k)}: {[round(p['rate']) for p in v]}" for k, v in sorted(pp_by.items())) if pp_by else ""),
]
problems = sorted({f"{'-'.join(k)}: {p}" for k, v in runs_by.items() for s in v for p in s["problems"]})
if problems:
    lines += ["", "Problems reported by runs: " + "; ".join(problems)]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

# The summary for benches/RESULTS.md: its section is replaced (or added at the end); a smoke
# run or RESULTS=0 writes the section alone to another file instead.
agree = [l for l in lines if l.startswith("Agreement of rill-loadgen")]
section = [
    title,
    "",
    f"Command: `{command}` (medians of {runs} runs; full tables, Kafka's settings, what each acknowledgement means "
    "and every run's figures in `benches/results/kafka.md`).",
    f"Machine: {platform.machine()}, {cores} cores, load average {os.environ['LOAD_START']} at the start, {' '.join(load)} at the end; disk {disk:.0f} MB/s sequential, "
    f"{syncs:.0f} fdatasyncs/s; loopback {net:.0f} MB/s. Rill (`--shards 1`) or Apache Kafka {os.environ['KAFKA_VERSION']} "
    f"(KRaft combined, {os.environ['KAFKA_HEAP_OPTS']}, G1), one at a time, every broker process pinned to CPU {broker_cpus}; "
    f"rill-loadgen on CPU {loadgen_cpu} ({producers} producers + {consumers} consumers, {partitions} partitions, "
    f"{warmup} s warm-up + {duration} s measured). Three nodes: RF 3 on 127.0.0.71-73, all on the same core and disk.",
    "",
    "Throughput at max rate; latencies (ms, Rill / Kafka) at the same fixed rate for both, half the lower max. "
    "Ratios are Rill/Kafka: above 1 for throughput and below 1 for latency favour Rill. "
    "`Kafka flush.messages=1` fsyncs every append before acknowledging it, as Rill's acks=all does; plain Kafka never fsyncs.",
    "",
    "| RF | records | acks | Kafka run as | max rec/s Rill / Kafka | **throughput** | ack p99 Rill / Kafka | **ack p99** | **ack p99.9** | e2e p99 Rill / Kafka | **e2e p99** |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
] + summary + ([""] + agree if agree else []) + ([""] + ["Problems reported by runs: " + "; ".join(problems)] if problems else [])
results_out = os.environ["RESULTS_OUT"]
text = "\n".join(section) + "\n"
if results_out.endswith("benches/RESULTS.md") and os.path.exists(results_out):
    doc = open(results_out).read()
    start = doc.find("## Rill vs Apache Kafka (issue 14)")
    if start >= 0:
        end = doc.find("\n## ", start + 1)
        doc = doc[:start] + text + ("\n" + doc[end + 1:] if end >= 0 else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    open(results_out, "w").write(doc)
else:
    open(results_out, "w").write(text)
print(f"\nsummary section written to {results_out}")
if verdicts:
    print()
    for n, ok, lg, pp in verdicts:
        print(f"agreement rill-loadgen vs kafka-producer-perf-test on Kafka, {n}: ack p50 {lg:.2f} ms vs {pp:.0f} ms -> {'PASS' if ok else 'FAIL'} (within {tol:.0%} or 1 ms)")
PY
echo "benchmark took ${SECONDS} s; tables in $OUT"
