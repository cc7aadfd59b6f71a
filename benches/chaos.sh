#!/usr/bin/env bash
# Chaos runs (issue 15): RUNS seeds of benches/chaos/chaos.py, each DURATION seconds of
# faults and workload against a cluster on test hosts (network namespaces; needs root and
# iproute2). Appends a table (faults by kind, acknowledged records, violations) to
# benches/results/chaos.md and writes it into the "Chaos" section of benches/RESULTS.md.
#
#   sudo bash benches/chaos.sh                      # RUNS=5 DURATION=150, seeds 1..RUNS
#   RUNS=3 DURATION=120 SEED0=100 BROKERS="3 5" BINARY=target/debug/rill bash benches/chaos.sh
#
# BROKERS is cycled over the seeds. The run directories (broker logs, events, acks, reads,
# summary.json; the brokers' data too when a run found violations) stay under
# target/chaos/<batch>/. Exit status: 0 when no run found a violation, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
DURATION=${DURATION:-150}
SEED0=${SEED0:-1}
BROKERS=${BROKERS:-"3 5"}
BINARY=${BINARY:-}
EXTRA=${EXTRA:-}
OUT=benches/results/chaos.md
BATCH=target/chaos/batch-$(date +%Y%m%d-%H%M%S)
mkdir -p "$BATCH" benches/results

python3 -c "import confluent_kafka as c, sys; sys.exit(c.version()[0] != '2.11.1')" 2>/dev/null \
  || python3 -m pip install -q "confluent-kafka==2.11.1"
[ -n "$BINARY" ] || for b in target/release/rill target/debug/rill; do
  [ -x "$b" ] && { BINARY=$b; break; }
done
[ -n "$BINARY" ] || { echo "chaos.sh: no rill binary; build one or set BINARY" >&2; exit 2; }

read -r -a sizes <<<"$BROKERS"
status=0
for i in $(seq 0 $((RUNS - 1))); do
  seed=$((SEED0 + i))
  n=${sizes[$((i % ${#sizes[@]}))]}
  echo "== chaos run $((i + 1))/$RUNS: seed $seed, $n brokers, ${DURATION}s"
  set +e
  # shellcheck disable=SC2086
  python3 benches/chaos/chaos.py --seed "$seed" --duration "$DURATION" --brokers "$n" \
    --binary "$BINARY" --run-dir "$BATCH/seed-$seed" $EXTRA >"$BATCH/seed-$seed.out" 2>&1
  rc=$?
  set -e
  grep -E '^\[chaos|^chaos' "$BATCH/seed-$seed.out" | grep -E 'FAULT|CRASH|NOT IN SYNC|in sync|VIOLATION|refused|fatal|SKIPPED|failed|ERROR' || true
  echo "   exit $rc"
  echo "$seed $n $rc" >>"$BATCH/runs"
  [ "$rc" = 0 ] || status=1
done

python3 benches/chaos/table.py "$BATCH" --results "$OUT" --update benches/RESULTS.md \
  --command "RUNS=$RUNS DURATION=$DURATION SEED0=$SEED0 BROKERS=\"$BROKERS\" BINARY=$BINARY${EXTRA:+ EXTRA=\"$EXTRA\"} bash benches/chaos.sh"
exit "$status"
