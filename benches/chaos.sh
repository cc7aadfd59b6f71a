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

python3 -c "import confluent_kafka" 2>/dev/null \
  || python3 -m pip install -q "confluent-kafka==2.6.1"
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

python3 - "$BATCH" "$OUT" "$DURATION" "$RUNS" "$SEED0" "$BROKERS" "$BINARY" "$EXTRA" <<'PY'
import collections, datetime, json, os, platform, re, sys
batch, out, duration, runs, seed0, brokers, binary, extra = sys.argv[1:9]
rows, kinds, tot = [], collections.Counter(), collections.Counter()
for line in open(os.path.join(batch, "runs")):
    seed, n, rc = line.split()
    path = os.path.join(batch, f"seed-{seed}", "summary.json")
    if not os.path.exists(path):
        rows.append(f"| {seed} | {n} | - | - | - | - | - | no summary (exit {rc}: see {batch}/seed-{seed}.out) |")
        tot["runs"] += 1
        tot["no_summary"] += 1
        continue
    s = json.load(open(path))
    k = {x: c for x, c in s["faults_by_kind"].items() if not x.startswith("target:")}
    kinds.update(s["faults_by_kind"])
    tot["runs"] += 1
    tot["faults"] += s["faults_applied"]
    tot["acked"] += s["acked"]
    tot["violations"] += s["violations_total"]
    viol = ", ".join(f"{v['kind']} x{v['count']}" for v in s["violations"]) or "0"
    sync = s["in_sync_after_heal_s"]
    rows.append(f"| {seed} | {n} | {s['faults_applied']} | "
                f"{', '.join(f'{a} {c}' for a, c in sorted(k.items()))} | {s['acked']} | "
                f"{s['failed']} | {'-' if sync is None else f'{sync:.1f} s'} | {viol} |")
cmd = (f"RUNS={runs} DURATION={duration} SEED0={seed0} BROKERS=\"{brokers}\" "
       f"BINARY={binary}{' EXTRA=\"' + extra + '\"' if extra else ''} bash benches/chaos.sh")
by_kind = ", ".join(f"{a} {c}" for a, c in sorted(kinds.items()) if not a.startswith("target:"))
targets = ", ".join(f"{a[7:]} {c}" for a, c in sorted(kinds.items()) if a.startswith("target:"))
lines = [
    f"## Chaos (issue 15): {tot['runs']} seeded runs of {float(duration):.0f} s, {datetime.date.today()}",
    "",
    f"Command: `{cmd}` (run directories: `{batch}`).",
    f"Machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}. "
    "Brokers in network namespaces on a bridge, 3 metadata voters (more brokers are learners), "
    "heartbeat 200 ms, session 2000 ms, replica lag 3000 ms; topic of 6 partitions, RF 3, "
    "min.insync.replicas 2; 3 idempotent acks=all producers (300 records/s in all), 2 consumers "
    "reading from the start (one rewinds every 20 s), a ListOffsets watcher.",
    "",
    f"**{tot['runs']} runs, {tot['faults']} faults, {tot['acked']} acknowledged records, "
    f"{tot['violations']} violations**{' (' + str(tot['no_summary']) + ' runs without a summary)' if tot['no_summary'] else ''}. "
    f"Faults by kind: {by_kind}; targets: {targets}.",
    "",
    "| seed | brokers | faults | by kind | acked | failed (unacked) | in sync after heal | violations |",
    "|---|---|---|---|---|---|---|---|",
    *rows,
    "",
]
text = "\n".join(lines)
with open(out, "a") as fh:
    fh.write(text + "\n")
res = "benches/RESULTS.md"
body = open(res).read()
section = text.replace("## Chaos (issue 15)", "## Chaos (issue 15)", 1)
m = re.search(r"^## Chaos \(issue 15\).*?(?=^## |\Z)", body, re.S | re.M)
if m:
    body = body[:m.start()] + section + "\n" + body[m.end():]
else:
    body = body.rstrip("\n") + "\n\n" + section + "\n"
open(res, "w").write(body)
print(text)
PY
exit "$status"
