# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run). Each measurement is bounded in time.

# fio_sync DIR: the disk's write + fdatasync rate on DIR's file system (4 KiB, iodepth 1),
# printed as `fio_sync_iops N` and `fio_sync_ms M` lines (one write + fdatasync cycle;
# fio's clat leaves the sync out).
fio_sync() {
  local dir=$1
  timeout -k 5 120 fio --name=sync4k --directory="$dir" --rw=write --bs=4k --iodepth=1 --direct=1 --fdatasync=1 \
      --ioengine=sync --size=256M --runtime=10 --time_based --output-format=json > "$dir/fio.json"
  python3 - "$dir/fio.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print("fio_sync_iops", j["iops"])
print("fio_sync_ms", 1000.0 / j["iops"])
PY
  rm -f "$dir"/sync4k.* "$dir/fio.json"
}

# fio_seqwrite DIR: the disk's sequential write bandwidth on DIR's file system (1 MiB
# direct writes, io_uring, iodepth 8, 1 GiB, fsync at the end; the job benches/loadgen.sh
# runs), printed as a `fio_seqwrite_MBps N` line (1 MB = 10^6 bytes).
fio_seqwrite() {
  local dir=$1 kib
  kib=$(timeout -k 5 300 fio --name=seqwrite --directory="$dir" --output-format=terse --rw=write --bs=1M --iodepth=8 \
          --direct=1 --ioengine=io_uring --size=1G --end_fsync=1 | awk -F';' '{print $48}')
  rm -f "$dir"/seqwrite.*
  echo "fio_seqwrite_MBps $(python3 -c "print($kib * 1024 / 1e6)")"
}

# iperf3_loopback SERVER_CPU CLIENT_CPU PORT DIR: loopback TCP bandwidth, server and client
# pinned (5 s), printed as an `iperf3_loopback_MBps N` line. The one-off server's pid is in
# LIB_IPERF_PID while it runs, for the caller's exit trap.
LIB_IPERF_PID=
iperf3_loopback() {
  local scpu=$1 ccpu=$2 port=$3 dir=$4
  taskset -c "$scpu" iperf3 -s -1 -p "$port" > "$dir/iperf-server.log" 2>&1 &
  LIB_IPERF_PID=$!
  for _ in $(seq 100); do
    ss -ltn "sport = :$port" | grep -q LISTEN && break
    sleep 0.1
  done
  if ! timeout -k 5 60 taskset -c "$ccpu" iperf3 -c 127.0.0.1 -p "$port" -t 5 -J > "$dir/iperf.json"; then
    kill "$LIB_IPERF_PID" 2>/dev/null || true
    wait "$LIB_IPERF_PID" 2>/dev/null || true
    LIB_IPERF_PID=
    echo "iperf3 client to 127.0.0.1:$port failed ($dir/iperf.json, $dir/iperf-server.log)" >&2
    return 1
  fi
  wait "$LIB_IPERF_PID" 2>/dev/null || true
  LIB_IPERF_PID=
  python3 -c "import json,sys; print('iperf3_loopback_MBps', json.load(open(sys.argv[1]))['end']['sum_received']['bits_per_second'] / 8e6)" "$dir/iperf.json"
}

# single_shard_toml FILE: the rill.toml of the single-broker benchmarks (loadgen.sh, ab.sh,
# retention_stall.sh): no metrics listener, and disk use bounded (a max-rate run writes tens
# of GB), each partition keeping at most 512 MiB in 128 MiB segments, checked every second.
single_shard_toml() {
  cat > "$1" <<TOML
retention_check_interval_ms = 1000
metrics_listen = ""
[topic_defaults]
"retention.bytes" = 536870912
"segment.bytes" = 134217728
TOML
}

# start_shard0_broker BINARY DIR PORT NAME: a one-shard broker on CPU 0 with DIR/rill.toml and
# a fresh DIR/data, listening on 127.0.0.1:PORT, its output in DIR/broker-NAME.log; sets
# BROKER_PID. Exits the script when nothing listens within 20 s.
start_shard0_broker() {
  local bin=$1 dir=$2 port=$3 name=$4 up=
  rm -rf "$dir/data" "$dir/report"
  mkdir -p "$dir/data"
  taskset -c 0 "$bin" broker --config "$dir/rill.toml" --data-dir "$dir/data" --listen 127.0.0.1:$port \
    --shards 1 > "$dir/broker-$name.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=1; break; }
    sleep 0.1
  done
  [ -n "$up" ] || { cat "$dir/broker-$name.log"; echo "broker $bin did not listen within 20 s" >&2; exit 1; }
}

# drop_caches: empty the page cache (as root; a no-op otherwise), so a read is cold.
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

# fio_kbps NAME FIELD FIO-ARGS...: runs fio job NAME in the caller's $DIR and appends
# `fio_NAME_MBps N` to the caller's $RAW (FIELD: the terse field, 48 = write KB/s,
# 7 = read KB/s; 1 MB = 10^6 bytes).
fio_kbps() {
  local name=$1 field=$2; shift 2
  local v; v=$(fio --name="$name" --directory="$DIR" --output-format=terse "$@" | awk -F';' -v f="$field" '{print $f}')
  echo "fio_${name}_MBps $(python3 -c "print($v*1024/1e6)")" >> "$RAW"
  rm -f "$DIR/$name".*
}
