#!/usr/bin/env bash
# local-cluster.sh: a Rill cluster on this machine, one broker per loopback address
# (127.0.0.11, 127.0.0.12, ...: the kernel routes all of 127/8 to lo, so each broker is
# its own "host" with no setup). For trying a cluster and for the cluster tests.
#
#   deploy/local-cluster.sh start  [--brokers 3] [--dir ./rill-cluster] [--binary PATH]
#                                  [--port 9092] [--first-host 11] [--shards 1]
#   deploy/local-cluster.sh add N  [--dir ./rill-cluster] [same --binary/--port/--first-host]
#   deploy/local-cluster.sh status [--dir ./rill-cluster]
#   deploy/local-cluster.sh stop   [--dir ./rill-cluster]
#
# Broker N (1-based) listens for clients on 127.0.0.<first-host+N-1>:<port> and for raft
# traffic on the same address at <port+1>; the brokers `start` runs are the voters (1, 3
# or 5). `add N` starts broker N (beyond them) as a learner that joins the running cluster.
# Data, logs and pid files go under --dir. `stop` sends SIGTERM to the pids it started
# (SIGKILL after 15 s) and nothing else.
set -euo pipefail

cmd=${1:-}
[ -n "$cmd" ] && shift
added=
if [ "$cmd" = add ]; then added=${1:-}; [ -n "$added" ] && shift; fi
brokers=3
dir=./rill-cluster
binary=
port=9092
first=11
shards=1
while [ $# -gt 0 ]; do
  case "$1" in
    --brokers) brokers=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --first-host) first=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    *) echo "local-cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

die() { echo "local-cluster.sh: $*" >&2; exit 1; }
host_of() { echo "127.0.0.$((first + $1 - 1))"; }

find_binary() {
  if [ -n "$binary" ]; then echo "$binary"; return; fi
  local here; here=$(cd "$(dirname "$0")/.." && pwd)
  for b in "$here/target/release/rill" "$here/target/debug/rill"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  command -v rill || die "no rill binary: build it (cargo build --release) or pass --binary"
}

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

start() {
  case "$brokers" in 1|3|5) ;; *) die "--brokers must be 1, 3 or 5 (all are voters)" ;; esac
  local rill; rill=$(find_binary)
  mkdir -p "$dir"
  local quorum="" i
  for i in $(seq 1 "$brokers"); do
    quorum+="${quorum:+,}$i@$(host_of "$i"):$((port + 1))"
  done
  echo "$quorum" >"$dir/quorum"
  for i in $(seq 1 "$brokers"); do
    launch "$rill" "$i" "$quorum"
  done
  for i in $(seq 1 "$brokers"); do
    wait_listening "$i"
  done
  echo "cluster of $brokers brokers started (quorum $quorum); data and logs in $dir"
  echo "try: $rill cluster info --bootstrap $(host_of 1):$port"
}

launch() { # binary, node id, quorum, extra args...
  local rill=$1 i=$2 quorum=$3; shift 3
  local pidf="$dir/broker-$i.pid"
  if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    die "broker $i is already running (pid $(cat "$pidf")); stop it first"
  fi
  "$rill" broker --node-id "$i" --controller-quorum "$quorum" \
    --listen "$(host_of "$i"):$port" --data-dir "$dir/broker-$i" \
    --shards "$shards" --metrics-listen "" "$@" \
    </dev/null >"$dir/broker-$i.log" 2>&1 &
  echo $! >"$pidf"
}

wait_listening() {
  local i=$1 waited=0
  until listening "$(host_of "$i")" "$port"; do
    kill -0 "$(cat "$dir/broker-$i.pid")" 2>/dev/null \
      || die "broker $i exited; see $dir/broker-$i.log: $(tail -n 5 "$dir/broker-$i.log")"
    [ $waited -ge 300 ] && die "broker $i did not listen on $(host_of "$i"):$port within 30 s"
    sleep 0.1; waited=$((waited + 1))
  done
}

add() {
  [[ "$added" =~ ^[0-9]+$ ]] && [ "$added" -ge 1 ] || die "add needs a broker number: add 4"
  [ -f "$dir/quorum" ] || die "no cluster started from $dir (run start first)"
  local quorum; quorum=$(cat "$dir/quorum")
  case ",$quorum" in *",$added@"*) die "broker $added is a voter; start runs it" ;; esac
  local rill; rill=$(find_binary)
  launch "$rill" "$added" "$quorum" --raft-listen "$(host_of "$added"):$((port + 1))"
  wait_listening "$added"
  echo "broker $added started on $(host_of "$added"):$port; it joins the cluster as a learner"
}

status() {
  local i any=0
  for pidf in "$dir"/broker-*.pid; do
    [ -f "$pidf" ] || continue
    any=1
    i=$(basename "$pidf" .pid)
    if kill -0 "$(cat "$pidf")" 2>/dev/null; then
      echo "$i: running (pid $(cat "$pidf"))"
    else
      echo "$i: not running"
    fi
  done
  [ $any = 1 ] || echo "no brokers started from $dir"
}

stop() {
  local pids=() pidf
  for pidf in "$dir"/broker-*.pid; do
    [ -f "$pidf" ] || continue
    local pid; pid=$(cat "$pidf")
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; pids+=("$pid"); fi
    rm -f "$pidf"
  done
  local waited=0 pid
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ $waited -ge 150 ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
      sleep 0.1; waited=$((waited + 1))
    done
  done
  echo "stopped ${#pids[@]} broker(s)"
}

case "$cmd" in
  start) start ;;
  add) add ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start|add N|status|stop [options] (see the top of this file)" >&2; exit 2 ;;
esac
