#!/usr/bin/env bash
# Apache Kafka from Maven Central's jars, for side-by-side benchmarks (issue 14). No Kafka
# distribution is installed: benches/kafka/pom.xml copies kafka_2.13 (the broker) and
# kafka-tools with every dependency to target/kafka/lib-$KAFKA_VERSION, and everything
# runs with `java -cp`. Sourced by benches/compare-kafka.sh, or run by hand:
#
#   bash benches/kafka.sh fetch                 # the jars (mvn, Maven Central)
#   bash benches/kafka.sh start 1               # one node on 127.0.0.1:$KAFKA_PORT
#   bash benches/kafka.sh start 3               # three nodes on $KAFKA_HOSTS
#   bash benches/kafka.sh bootstrap             # the running cluster's bootstrap list
#   bash benches/kafka.sh stop                  # SIGTERM, then SIGKILL after $KAFKA_STOP_TIMEOUT s
#   bash benches/kafka.sh tool CLASS ARGS...    # any Kafka main class, e.g.
#     bash benches/kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:19592 --list
#     bash benches/kafka.sh tool org.apache.kafka.tools.ProducerPerformance --help
#
# Each node is KRaft in combined mode (process.roles=broker,controller, static voters),
# formatted with kafka.tools.StorageTool (what `kafka-storage.sh format` runs), started
# with kafka.Kafka under `taskset -c $KAFKA_CPUS` with the JVM options of Kafka's own
# scripts (kafka-server-start.sh: -Xmx1G -Xms1G; kafka-run-class.sh: G1, 20 ms pause
# target). Its data and logs live in $KAFKA_DIR (default target/bench-kafka/kafka, the
# same file system as Rill's bench data). Kafka's settings are Kafka's defaults except
# the ones written by kafka_write_props below (listeners, replication factors of the
# internal topics on one node, retention sized for a benchmark, $KAFKA_PROPS_EXTRA).
#
# Environment: KAFKA_VERSION (4.4.0), KAFKA_LIB, KAFKA_DIR, KAFKA_CPUS (0), KAFKA_PORT
# (19592; the controller listens on +1), KAFKA_HOSTS (three loopback addresses for the
# 3-node cluster), KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_PROPS_EXTRA
# (server.properties lines added to every node), KAFKA_START_TIMEOUT (180 s),
# KAFKA_STOP_TIMEOUT (30 s), KAFKA_TOOL_TIMEOUT (300 s: any one tool run), JAVA (java).

KAFKA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
KAFKA_LIB=${KAFKA_LIB:-$KAFKA_ROOT/target/kafka/lib-$KAFKA_VERSION}
KAFKA_DIR=${KAFKA_DIR:-$KAFKA_ROOT/target/bench-kafka/kafka}
KAFKA_CPUS=${KAFKA_CPUS:-0}
KAFKA_PORT=${KAFKA_PORT:-19592}
KAFKA_HOSTS=${KAFKA_HOSTS:-127.0.0.71 127.0.0.72 127.0.0.73}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}
KAFKA_PROPS_EXTRA=${KAFKA_PROPS_EXTRA:-}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-180}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_TOOL_TIMEOUT=${KAFKA_TOOL_TIMEOUT:-300}
JAVA=${JAVA:-java}
# Benchmark disk bounds, as Rill's bench config: each partition keeps at most this much,
# checked every second, and a deleted segment's file goes after one second (Kafka's
# default waits a minute, which at disk speed is tens of GB).
KAFKA_RETENTION_BYTES=${KAFKA_RETENTION_BYTES:-268435456}
KAFKA_SEGMENT_BYTES=${KAFKA_SEGMENT_BYTES:-67108864}
KAFKA_BOOTSTRAP=

# kafka_fetch: the jars, once (Maven keeps its own cache in ~/.m2).
kafka_fetch() {
  if [ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ] && [ -f "$KAFKA_LIB/kafka-tools-$KAFKA_VERSION.jar" ]; then
    return 0
  fi
  command -v mvn >/dev/null || { echo "kafka.sh: mvn not found; install Maven (apt-get install maven) to fetch Kafka's jars" >&2; return 1; }
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIB" >&2
  mvn -q -B -Dstyle.color=never -f "$KAFKA_ROOT/benches/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      -Dkafka.lib="$KAFKA_LIB" dependency:copy-dependencies >&2 \
    || { echo "kafka.sh: mvn could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (is Maven Central reachable?)" >&2; return 1; }
  [ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ] \
    || { echo "kafka.sh: mvn ran but $KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar is missing" >&2; return 1; }
}

kafka_check_java() {
  local v
  v=$("$JAVA" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}') \
    || { echo "kafka.sh: $JAVA not found; Kafka $KAFKA_VERSION needs Java 17 or later" >&2; return 1; }
  [ "${v%%.*}" -ge 17 ] 2>/dev/null \
    || { echo "kafka.sh: $JAVA is version $v; Kafka $KAFKA_VERSION's broker needs Java 17 or later" >&2; return 1; }
}

# kafka_tool CLASS ARGS...: one of Kafka's command-line classes (what the bin/*.sh scripts
# run), with the heap kafka-run-class.sh gives tools and warnings only on stderr.
kafka_tool() {
  local class=$1; shift
  # shellcheck disable=SC2086 # the heap options are a list of words
  timeout -k 5 "$KAFKA_TOOL_TIMEOUT" "$JAVA" ${KAFKA_TOOL_HEAP_OPTS:--Xmx512M} -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$KAFKA_LIB/*" "$class" "$@"
}

kafka_hosts() { # N: the N node addresses
  if [ "$1" = 1 ]; then echo 127.0.0.1; else echo "$KAFKA_HOSTS" | tr -s ' ' | cut -d' ' -f1-"$1"; fi
}

# kafka_write_props ID HOST VOTERS N FILE: one node's server.properties.
kafka_write_props() {
  local id=$1 host=$2 voters=$3 n=$4 file=$5
  local internal_rf=$(( n < 3 ? n : 3 ))
  cat > "$file" <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://$host:$KAFKA_PORT,CONTROLLER://$host:$((KAFKA_PORT + 1))
advertised.listeners=PLAINTEXT://$host:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data/$id
# Internal topics: Kafka's defaults want 3 replicas, which one node cannot give.
offsets.topic.replication.factor=$internal_rf
transaction.state.log.replication.factor=$internal_rf
transaction.state.log.min.isr=$(( internal_rf < 2 ? 1 : 2 ))
share.coordinator.state.topic.replication.factor=$internal_rf
share.coordinator.state.topic.min.isr=$(( internal_rf < 2 ? 1 : 2 ))
group.initial.rebalance.delay.ms=0
# Disk bounds for a benchmark (Rill's bench config has the same two topic defaults).
log.retention.bytes=$KAFKA_RETENTION_BYTES
log.segment.bytes=$KAFKA_SEGMENT_BYTES
log.retention.check.interval.ms=1000
log.segment.delete.delay.ms=1000
# Everything else, durability included, is Kafka's default: no fsync per append
# (log.flush.interval.messages and log.flush.interval.ms unset), page cache only.
$KAFKA_PROPS_EXTRA
PROPS
}

kafka_pids() { cat "$KAFKA_DIR"/run/*.pid 2>/dev/null || true; }

# kafka_alive PID: a JVM running kafka.Kafka started by this script (never another process
# that took a stale pid).
kafka_alive() {
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q "kafka.Kafka $KAFKA_DIR/"
}

# kafka_start N: format and start an N-node cluster (1 or 3), wait until every node serves,
# and set KAFKA_BOOTSTRAP. Any Kafka of this $KAFKA_DIR still running is stopped first.
kafka_start() {
  local n=$1 i host id voters="" cluster_id node_log deadline pid
  case $n in 1|3) ;; *) echo "kafka.sh: start takes 1 or 3 nodes, not '$n'" >&2; return 2 ;; esac
  kafka_check_java && kafka_fetch || return 1
  kafka_stop
  rm -rf "$KAFKA_DIR/data" "$KAFKA_DIR/run"
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/run" "$KAFKA_DIR/logs"
  local hosts
  read -r -a hosts <<< "$(kafka_hosts "$n")"
  for i in "${!hosts[@]}"; do
    voters+="${voters:+,}$((i + 1))@${hosts[$i]}:$((KAFKA_PORT + 1))"
  done
  # A cluster id is a base64url UUID without padding (what `kafka-storage random-uuid` prints);
  # like Kafka's Uuid.randomUuid, never one starting with '-', which the tool's argument
  # parser would take for an option (about one start in 64 failed that way).
  cluster_id=$(python3 -c "
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('=')
    if not s.startswith('-'):
        break
print(s)")
  local formats=()
  for i in "${!hosts[@]}"; do
    id=$((i + 1))
    kafka_write_props "$id" "${hosts[$i]}" "$voters" "$n" "$KAFKA_DIR/run/server-$id.properties"
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/run/server-$id.properties" \
      > "$KAFKA_DIR/logs/format-$id.log" 2>&1 &
    formats+=($!)
  done
  for pid in "${formats[@]}"; do
    wait "$pid" || { cat "$KAFKA_DIR"/logs/format-*.log >&2; echo "kafka.sh: kafka.tools.StorageTool format failed (logs above)" >&2; return 1; }
  done
  for i in "${!hosts[@]}"; do
    id=$((i + 1))
    node_log=$KAFKA_DIR/logs/node-$id.log
    # The properties path stays the last argument: kafka_alive recognises the JVM by it.
    # shellcheck disable=SC2086 # the JVM options are lists of words
    taskset -c "$KAFKA_CPUS" "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS \
      -Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dorg.slf4j.simpleLogger.showDateTime=true \
      -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
      -Dkafka.logs.dir="$KAFKA_DIR/logs" -cp "$KAFKA_LIB/*" \
      kafka.Kafka "$KAFKA_DIR/run/server-$id.properties" > "$node_log" 2>&1 &
    echo $! > "$KAFKA_DIR/run/node-$id.pid"
  done
  # A node logs "Kafka Server started" once its broker is registered and unfenced.
  deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  for i in "${!hosts[@]}"; do
    id=$((i + 1))
    pid=$(cat "$KAFKA_DIR/run/node-$id.pid")
    until grep -q "Kafka Server started" "$KAFKA_DIR/logs/node-$id.log"; do
      if ! kafka_alive "$pid"; then
        tail -n 30 "$KAFKA_DIR/logs/node-$id.log" >&2
        echo "kafka.sh: Kafka node $id exited while starting (log above, all in $KAFKA_DIR/logs)" >&2
        kafka_stop; return 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        tail -n 30 "$KAFKA_DIR/logs/node-$id.log" >&2
        echo "kafka.sh: Kafka node $id did not start within ${KAFKA_START_TIMEOUT} s (KAFKA_START_TIMEOUT; log above)" >&2
        kafka_stop; return 1
      fi
      sleep 0.2
    done
  done
  KAFKA_BOOTSTRAP=$(for h in "${hosts[@]}"; do printf '%s:%s,' "$h" "$KAFKA_PORT"; done)
  KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP%,}
  echo "$KAFKA_BOOTSTRAP" > "$KAFKA_DIR/run/bootstrap"
}

# kafka_stop: SIGTERM to every node (a clean shutdown), SIGKILL to what is left after
# $KAFKA_STOP_TIMEOUT s (a combined node that lost its quorum can wait a long time).
kafka_stop() {
  local pid left deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  for pid in $(kafka_pids); do
    kafka_alive "$pid" && kill -TERM "$pid" 2>/dev/null
  done
  while :; do
    left=
    for pid in $(kafka_pids); do kafka_alive "$pid" && left+=" $pid"; done
    [ -z "$left" ] && break
    if [ $SECONDS -ge $deadline ]; then
      echo "kafka.sh: Kafka pids$left still running ${KAFKA_STOP_TIMEOUT} s after SIGTERM; SIGKILL" >&2
      for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$KAFKA_DIR"/run/*.pid "$KAFKA_DIR/run/bootstrap"
  KAFKA_BOOTSTRAP=
}

# Run as a command (not sourced).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case ${1:-} in
    fetch) kafka_fetch; echo "$KAFKA_LIB" ;;
    start) kafka_start "${2:-1}"; echo "$KAFKA_BOOTSTRAP" ;;
    stop) kafka_stop ;;
    bootstrap) cat "$KAFKA_DIR/run/bootstrap" 2>/dev/null || { echo "kafka.sh: no Kafka running from $KAFKA_DIR" >&2; exit 1; } ;;
    tool) shift; kafka_fetch; kafka_tool "$@" ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2 ;;
  esac
fi
