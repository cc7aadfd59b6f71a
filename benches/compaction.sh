#!/usr/bin/env bash
# Log compaction (issue 16), in the same run, RUNS times, medians to
# benches/results/compaction.md:
#   1. the cleaner's throughput on 512 MiB of keyed records (storage_bench compact) as a
#      ratio to fio's sequential read and write on the same file system;
#   2. produce ack latency on a compacted topic while the cleaner works, against the same
#      workload with the cleaner idle: one broker (one shard, CPU 0), rill-loadgen (CPU 1)
#      at a fixed rate of keyed 1 KiB records over 100,000 keys, 6 partitions in 8 MiB
#      segments, so segments keep closing and the cleaner keeps taking them.
#
#   bash benches/compaction.sh            # RUNS=3, data under target/bench-compaction
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
RUNS=${RUNS:-3}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
RATE=${RATE:-20000}
DIR=${BENCH_DIR:-$PWD/target/bench-compaction}
OUT=${OUT:-benches/results/compaction.md}
HOST=127.0.0.71
PORT=${PORT:-19592}
METRICS=$HOST:$((PORT + 1))
command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio; }
cargo build --release -p rill-benches -p rill-broker -p rill-loadgen
BENCH=$PWD/target/release/storage_bench
RILL=${RILL:-$PWD/target/release/rill}
LG=$PWD/target/release/rill-loadgen
rm -rf "$DIR"
mkdir -p "$DIR/runs" benches/results
RAW=$DIR/raw
export RUST_BACKTRACE=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)


BROKER=
start_broker() { # backoff_ms
  rm -rf "$DIR/data"
  mkdir -p "$DIR/data"
  cat > "$DIR/rill.toml" <<TOML
metrics_listen = "$METRICS"
log_cleaner_backoff_ms = $1
[topic_defaults]
"cleanup.policy" = "compact"
"segment.bytes" = 8388608
"min.cleanable.dirty.ratio" = "0.1"
TOML
  taskset -c 0 "$RILL" broker --config "$DIR/rill.toml" --data-dir "$DIR/data" --shards 1 \
    --listen "$HOST:$PORT" > "$DIR/broker.log" 2>&1 &
  BROKER=$!
  for _ in $(seq 100); do
    "$RILL" cluster info --bootstrap "$HOST:$PORT" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the broker did not start within 10 s" >&2; tail -n 20 "$DIR/broker.log" >&2; exit 1
}
stop_broker() {
  [ -n "$BROKER" ] || return 0
  kill "$BROKER" 2>/dev/null || true; wait "$BROKER" 2>/dev/null || true; BROKER=
}
trap 'stop_broker; rm -rf "$DIR/data" "$DIR/log"' EXIT

produce() { # name
  local out=$DIR/runs/$1 rc=0
  taskset -c 1 "$LG" --cores 1 --bootstrap "$HOST:$PORT" --topic "$1" --create-topic --partitions 6 \
    --acks all --record-bytes 1024 --key-distribution uniform --key-count 100000 --rate "$RATE" \
    --producers 2 --consumers 0 --duration "$DURATION" --warmup "$WARMUP" \
    --report-dir "$out" > "$out.out" 2> "$out.err" || rc=$?
  if [ $rc -ge 2 ]; then cat "$out.err" >&2; echo "rill-loadgen could not run ($1)" >&2; exit 1; fi
  tail -n 3 "$out.out"
}
cleaner_metric() { # name
  curl -s "http://$METRICS/metrics" | awk -v n="$1" '$1 ~ "^"n {s += $2} END {print s + 0}'
}

for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS"
  fio_kbps seqwrite 48 --rw=write --bs=1M --iodepth=8 --direct=1 --ioengine=io_uring --size=1G --end_fsync=1
  fio --name=seqread --directory="$DIR" --rw=write --bs=1M --direct=1 --size=1G --output-format=terse >/dev/null
  drop_caches
  fio_kbps seqread 7 --rw=read --bs=1M --iodepth=8 --direct=1 --ioengine=io_uring --size=1G
  rm -rf "$DIR/log"; "$BENCH" compact "$DIR/log" | grep ^RESULT | cut -d' ' -f2-3 >> "$RAW"; rm -rf "$DIR/log"
  # Cleaner on and off, alternating which goes first.
  for k in 0 1; do
    mode=$(( (k + run) % 2 ))
    if [ $mode = 0 ]; then name=on; backoff=1000; else name=off; backoff=86400000; fi
    start_broker $backoff
    produce "$name-$run"
    echo "cleaner_passes_$name $(cleaner_metric rill_log_cleaner_passes_total)" >> "$RAW"
    echo "cleaner_read_MB_$name $(python3 -c "print($(cleaner_metric rill_log_cleaner_read_bytes_total)/1e6)")" >> "$RAW"
    stop_broker
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RAW" "$DIR/runs" "$OUT" "$RUNS" "$RATE" "$DURATION" "$LOAD_START" "$LOAD_END" <<'PY'
import sys, json, glob, os, statistics, collections, datetime, platform, subprocess
raw, rundir, out, runs, rate, duration, load_start, load_end = sys.argv[1:]
vals = collections.defaultdict(list)
for line in open(raw):
    k, v = line.split()[:2]
    vals[k].append(float(v))
acks = collections.defaultdict(lambda: collections.defaultdict(list))
for path in glob.glob(os.path.join(rundir, "*", "summary.json")):
    mode = os.path.basename(os.path.dirname(path)).split("-")[0]
    s = json.load(open(path))
    for q in ("p50", "p99", "p999"):
        acks[mode][q].append((s.get("ack") or {}).get(q + "_ms"))
    acks[mode]["tp"].append(s["throughput"]["produce_records_per_s"])
    acks[mode]["problems"].append(len(s.get("problems") or []))
med = statistics.median
m = {k: med(v) for k, v in vals.items()}
a = {mode: {q: med([x for x in v if x is not None]) for q, v in d.items()} for mode, d in acks.items()}
lines = [
    f"## Compaction (issue 16): the log cleaner vs fio, and ack latency while it works, {datetime.date.today()}",
    "",
    f"Command: `RUNS={runs} bash benches/compaction.sh` (medians of {runs} runs; fio, the cleaner and the broker on the same file system, same run).",
    f"Machine: {platform.machine()}, {subprocess.run(['nproc'],capture_output=True,text=True).stdout.strip()} cores, kernel {platform.release()}; "
    f"load average (1/5/15 min) {load_start} at the start, {load_end} at the end.",
    "",
    "| figure | value | limit | ratio |",
    "|---|---|---|---|",
    f"| cleaner: cleanable log compacted per second | {m['compact_cleanable_MBps']:.0f} MB/s | {m['fio_seqread_MBps']:.0f} MB/s (fio seqread) | **{m['compact_cleanable_MBps']/m['fio_seqread_MBps']:.2f}x** |",
    f"| cleaner: bytes read + written per second | {m['compact_io_MBps']:.0f} MB/s | {m['fio_seqread_MBps']:.0f} MB/s read, {m['fio_seqwrite_MBps']:.0f} MB/s write (fio) | **{m['compact_io_MBps']/m['fio_seqread_MBps']:.2f}x** of seqread |",
    f"| ack p99 with the cleaner working / idle | {a['on']['p99']:.2f} ms / {a['off']['p99']:.2f} ms | 1.2x (issue 16) | **{a['on']['p99']/a['off']['p99']:.2f}x** |",
    f"| ack p50 with the cleaner working / idle | {a['on']['p50']:.2f} ms / {a['off']['p50']:.2f} ms | | **{a['on']['p50']/a['off']['p50']:.2f}x** |",
    "",
    f"- The pass: {m['compact_cleanable_MiB']:.0f} MiB of closed 64 MiB segments (512 MiB written: 1 KiB values, 16 a batch, uniformly over 100,000 keys), "
    f"{m['compact_secs']:.1f} s, keeping {m['compact_kept_share']*100:.0f}% of the bytes; the cleaner reads the dirty part twice (key map, then rewrite) and writes what it keeps.",
    f"- Latency runs: one broker (1 shard, CPU 0), rill-loadgen on CPU 1, {int(float(rate))//1000}k rec/s of 1 KiB keyed records over 100,000 keys, acks=all, 6 partitions in 8 MiB segments, "
    f"{duration} s measured, no consumer. Cleaner working: `log_cleaner_backoff_ms = 1000`, it ran {m['cleaner_passes_on']:.0f} passes reading {m['cleaner_read_MB_on']:.0f} MB per run (median); "
    f"idle: `log_cleaner_backoff_ms = 86400000` ({m['cleaner_passes_off']:.0f} passes). Throughput {a['on']['tp']/1e3:.1f}k vs {a['off']['tp']/1e3:.1f}k rec/s; runs with problems: {a['on']['problems']:.0f} / {a['off']['problems']:.0f} (median).",
    "",
    "All runs: " + ", ".join(f"{k}={v}" for k, v in sorted(vals.items())),
]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
