#!/usr/bin/env bash
# The brief chaos run of `.ci/run` (issue 15), runnable alone:
#
#   bash benches/chaos/ci.sh                       # target/debug/rill, seed 1
#   CHAOS_BINARY=/path/to/rill CHAOS_SEED=3 bash benches/chaos/ci.sh
#
# The checker's self-test (no root needed), then one seeded run: 3 brokers on test hosts,
# 75 s of faults under idempotent acks=all producers and consumers, the checker, and
# --self-test (the checker must flag corrupted copies of what the run recorded). About
# 90 s on 2 cores. Exit status: 0 passed (or skipped outside CI), 1 otherwise.
#
# It fails on what the checker calls a violation (a lost acknowledged record, two answers
# for one offset, replicas that differ, a broker crash, ...). The run uses one produce
# request in flight per connection, so the one client duplicate known to happen with more
# (librdkafka re-sends after an epoch bump, confluentinc/librdkafka#4953) cannot fail it. A
# run that could not set up its cluster, overran its bound or hit a harness error is not a
# verdict on the broker: it is tried once more, and fails only if that fails too.
set -uo pipefail
cd "$(dirname "$0")/../.."
SEED=${CHAOS_SEED:-1}
BINARY=${CHAOS_BINARY:-target/debug/rill}
DURATION=${CHAOS_DURATION:-75}
OUT=target/chaos/ci-seed-$SEED

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null 2>&1 || ! ip netns list >/dev/null 2>&1; then
  echo "################################################################"
  echo "## SKIPPED: the chaos run needs root and iproute2 (ip netns);"
  echo "## replication under faults was NOT checked."
  echo "################################################################"
  [ -z "${CI:-}" ] || exit 1
  exit 0
fi
if [ ! -x "$BINARY" ]; then
  echo "chaos: no broker binary at $BINARY (the tests build target/debug/rill; or set CHAOS_BINARY)"
  exit 1
fi
# The harness's client; .ci/run installs it too. Debian's Python refuses plain pip
# installs (PEP 668): then into the system site-packages, which is what CI machines are for.
if ! python3 -c "import confluent_kafka as c, sys; sys.exit(c.version()[0] != '2.11.1')" 2>/dev/null; then
  python3 -m pip install -q "confluent-kafka==2.11.1" \
    || python3 -m pip install -q --break-system-packages "confluent-kafka==2.11.1" \
    || { echo "chaos: cannot install confluent-kafka 2.11.1"; exit 1; }
fi

python3 benches/chaos/test_checker.py || exit 1

mkdir -p target/chaos
run() {
  rm -rf "$OUT"
  # The harness ends the run itself at --hard-limit (duration + 300 s) and removes its
  # namespaces and brokers on every exit; timeout is the last resort.
  timeout -k 10 $((DURATION + 360)) python3 benches/chaos/chaos.py --seed "$SEED" \
    --duration "$DURATION" --brokers 3 --max-in-flight 1 --binary "$BINARY" \
    --run-dir "$OUT" --self-test >target/chaos-ci.log 2>&1
}
report() {
  grep -E '^\[chaos|^chaos' target/chaos-ci.log
  [ -f "$OUT/summary.json" ] || return 0
  python3 - "$OUT/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"chaos: seed {s['seed']}: {s['faults_applied']} faults {s['faults_by_kind']}, "
      f"{s['acked']} acked, {s['violations_total']} violations, self-test "
      f"{'passed' if s.get('self_test', {}).get('passed') else 'FAILED'}")
for v in s["violations"]:
    print(f"  {v['kind']} x{v['count']}: {json.dumps(v['examples'][:3])}")
PY
}

start=$SECONDS
run
rc=$?
report
if [ "$rc" != 0 ] && [ "$rc" != 1 ]; then
  echo "chaos: no verdict (exit $rc: 2 setup failed, 3 overran, 4 harness error, 124 killed); once more"
  tail -n 20 target/chaos-ci.log
  run
  rc=$?
  report
fi
echo "chaos: exit $rc after $((SECONDS - start)) s"
if [ "$rc" != 0 ]; then
  echo "chaos: FAILED (exit $rc; seed $SEED); run directory $OUT, output target/chaos-ci.log"
  tail -n 20 target/chaos-ci.log
  exit 1
fi
echo "chaos: passed"
