#!/usr/bin/env bash
# Issue 15 asks that each failure it lists be a regression test that fails on the code
# before its work (commit 5ae9884). This runs those tests, the integration tests of
# broker/tests, twice from the same test executables: once against the `rill` binary of
# this checkout and once against the `rill` binary of OLD, and writes what happened to
# benches/results/old-code-regressions.md.
#
#   bash benches/old-code-regressions.sh [OLD_COMMIT]      (default 5ae9884)
#
# The tests find the broker through env!("CARGO_BIN_EXE_rill"), the path
# $REG_TARGET/debug/rill compiled into them; the old broker is copied over that path for
# the second pass and the test build's own put back afterwards (also on error or Ctrl-C). No broker
# code is changed or rebuilt for the old pass: both passes use the same test code.
#
# Environment (all optional):
#   REG_TARGET    cargo target dir for this checkout's tests (default target/regressions;
#                 not target/, so a build or benchmark using target/debug/rill is not disturbed)
#   OLD_TARGET    cargo target dir for the old broker (default target/regressions-old)
#   OLD_WT        a worktree of OLD (default target/regressions-old-src; made if missing)
#   TEST_TIMEOUT  seconds each test may take per run (default 600)
#   PROFILE       debug or release: how both brokers are built (default debug; the test
#                 executables are debug builds either way, they are only the clients)
#   OLD_BIN       a ready `rill` of OLD to use instead of building one (say which in the report)
#   OLD_RUNS      runs of each test against the old broker, stopping at the first failure
#                 (default 1; some defects are races, e.g. the double free)
#   NEW_RUNS      runs of each test against the new broker, all of which must pass (default 1)
#   ONLY          a regex: run only the tests whose name matches
#   OUT           the table (default benches/results/old-code-regressions.md)
#   RILL_TEST_DIR where the tests put broker data (default $REG_TARGET/test-data: real disk)
# Builds run one after the other (two debug builds: this checkout's tests, the old broker).
# The Java test needs broker/tests/clients/java built (.ci/run does it; so does this script
# when mvn is there); a test whose client is missing says SKIPPED and is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OLD=${1:-5ae9884}
REG_TARGET=${REG_TARGET:-$ROOT/target/regressions}
OLD_TARGET=${OLD_TARGET:-$ROOT/target/regressions-old}
OLD_WT=${OLD_WT:-$ROOT/target/regressions-old-src}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
PROFILE=${PROFILE:-debug}
OLD_RUNS=${OLD_RUNS:-1}
NEW_RUNS=${NEW_RUNS:-1}
case $PROFILE in
  debug) PROFILE_FLAG=() ;;
  release) PROFILE_FLAG=(--release) ;;
  *) echo "PROFILE is debug or release, not $PROFILE" >&2; exit 2 ;;
esac
ONLY=${ONLY:-.}
export RILL_TEST_DIR=${RILL_TEST_DIR:-$REG_TARGET/test-data}
OUT=${OUT:-benches/results/old-code-regressions.md}
LOGS=$REG_TARGET/$(basename "$OUT" .md)-logs

# The tests: "test target::test function|the issue-15 failure it covers|what the old
# broker's failure means (read from the runs; see the table's last column)".
TESTS=(
  "produce_order::pipelined_large_records_keep_their_order|Records pipelined to one partition over one connection appended out of order under load (500 KB records)|Catches the defect only if the old broker inverts an order in this run: it is a race under load, so a pass on old is no proof the defect was absent."
  "cross_thread_stress::cross_thread_handoffs_survive_sustained_load|Broker aborts with glibc 'double free detected in tcache 2' (glommio foreign wake)|Catches the defect only if the old broker aborts in this run (a race); a pass on old is no proof the defect was absent."
  "cluster_restart_offsets::a_restarted_broker_never_answers_a_latest_offset_below_what_was_acknowledged|Restarted broker answers ListOffsets latest below acknowledged offsets (0 for up to 2.2 s); high watermark not checkpointed; a broker restarted within the session timeout is not fenced and keeps leading at its old epoch|FAIL on old is the defect either way; the message says which assertion tripped: a latest offset below the acknowledged one (checked first: the restarted broker answered from an unknown high watermark), or the restarted broker leading again at its old epoch (not fenced as a new incarnation)."
  "cluster_divergence::a_deposed_leader_truncates_to_where_its_log_diverges|No leader-epoch history: a deposed leader keeps its cut-off suffix, two replicas hold different records at the same offsets|FAIL on old is the defect: the deposed leader kept its cut-off suffix."
  "client_java_truncation::the_java_consumer_is_told_its_log_was_truncated|current_leader_epoch never checked, ListOffsets always epoch 0, no OffsetForLeaderEpoch: clients cannot detect truncation (KIP-320)|FAIL on old is NOT the defect: the old broker refuses the topic config unclean.leader.election.enable (added by issue 15), so CreateTopics fails (assert!(created[0].is_ok())) before the scenario. The assertion that would catch the defect is the one expecting LogTruncationException; the KIP-320 defect itself is shown failing on old by cluster_acks_all_isr_shrink::list_offsets_and_fetch_check_and_answer_the_leader_epoch."
  "cluster_frozen_high_watermark::a_replica_far_behind_joins_the_isr_only_once_it_holds_what_was_acknowledged|A leader restarted within the session timeout keeps leading with high watermark 0, and a replica far behind joins the ISR at that frozen value and can be elected|FAIL on old is the defect: acknowledged records missing after the replica that rejoined led. A race on old (1 run of 2 failed)."
  "cluster_kill_all::acks_all_survives_kill_9_of_every_broker_at_once|A follower counts a batch once it is in memory: kill -9 of the leader and followers together loses records acknowledged with acks=all|Catches the defect only if a killed follower had reported a batch still in its memory (a 5 ms window); a pass on old is no proof the defect was absent."
  "cluster_kill_all::acks_all_survives_kill_9_of_every_broker_when_followers_restart_first|A follower counts a batch once it is in memory: kill -9 of the leader and followers together loses records acknowledged with acks=all (here the followers restart first and one leads while the old leader is down; 3 rounds)|FAIL on old is the defect: acknowledged records missing after a follower led. A race (about 2 rounds in 5 on old), so a pass on old is no proof the defect was absent."
  "cluster_kill_all::acks_all_survives_kill_9_of_every_broker_with_followers_syncing|Same, with replica_fsync = true (the fdatasync-on-followers setting issue 15 adds)|FAIL on old is NOT the defect: the old broker refuses the config key replica_fsync (added by issue 15) and does not start. The run without it (row above) is the one that could catch the defect."
  "cluster_follower_behind_log_start::a_follower_behind_the_leaders_log_start_restarts_there_and_catches_up|A follower that falls behind the leader's log start (retention) never catches up|FAIL on old is the defect: the follower never rejoins the ISR."
  "cluster_replica_impostor::a_client_posing_as_a_follower_cannot_move_the_high_watermark|replica_id in Fetch taken on trust: a client can raise the high watermark by claiming to be a replica|FAIL on old is the defect: the impostor's fetch is taken and moves the high watermark."
  "cluster_admin_after_controller_death::admin_requests_go_on_after_the_controller_dies|After kill -9 of the controller, librdkafka admin requests hang (clients keep sending to the dead controller)|FAIL on old is the defect: CreateTopics timed out (the client, refreshing metadata at librdkafka's default pace, kept sending to the dead controller)."
  "cluster_admin_after_controller_death::admin_requests_go_on_while_the_controller_is_paused|Same, with the controller paused (SIGSTOP) rather than killed: a client told the frozen broker is the controller waits out its request timeout|FAIL on old is the defect: CreateTopics timed out after 30 s."
  "cluster_forming_id::a_forming_clusters_brokers_never_answer_with_a_provisional_id|While a cluster forms, brokers answer Metadata with a provisional cluster id of their own|FAIL on old is the defect: a client saw two cluster ids."
  "idempotence::a_retry_far_behind_the_log_end_is_still_recognised_after_restarts|Producer state rebuilt from a capped tail of the log, not completely (issue 15: 'rebuilt completely (snapshots beside the log)')|FAIL on old is the defect: the old broker rebuilt producer state from a capped tail, so the retry was stored again."
  "cluster_acks_all_isr_shrink::acks_all_answers_not_enough_replicas_after_append_and_retries_wait_too|min.insync.replicas checked only before the append, never NOT_ENOUGH_REPLICAS_AFTER_APPEND; an idempotent retry of an appended but unreplicated batch answered at once|FAIL on old is the defect (both parts: the retry answered at once, and success with the ISR shrunk to the leader)."
  "cluster_acks_all_isr_shrink::list_offsets_and_fetch_check_and_answer_the_leader_epoch|current_leader_epoch never checked in Fetch or ListOffsets; ListOffsets always answers epoch 0 (KIP-320)|FAIL on old is the defect: current_leader_epoch ignored, epoch 0 answered."
  "idempotence::retries_are_deduplicated_across_restarts|(existed before issue 15) idempotent retries across restarts|Control (test older than issue 15): expected to pass on old."
  "kill9_acks_all::kill9_during_acks_all_loses_no_acknowledged_record|(existed before issue 15) kill -9 of a single broker during acks=all; the double-free abort was once seen here|Control (test older than issue 15): expected to pass on old."
  "cluster_reassign::partitions_move_onto_a_new_broker_with_their_data|Cancelling a reassignment refills the ISR with every original replica|Test unchanged since before issue 15: its cancel happens while every original replica is in sync, where the old refill is harmless, so it cannot catch the defect (the fix, ecd5999, is tested in raft/src/metadata.rs unit tests only)."
  "cluster_reassign_cancel::a_cancel_that_would_leave_only_lagging_replicas_in_sync_is_refused|Cancelling a reassignment refills the ISR with every original replica (here: only the added replica is in sync, the original one is down and behind)|FAIL on old is the defect: the cancel is taken and the lagging original replica is put back as the whole ISR."
  "cluster_network_cut::a_broker_cut_off_is_fenced_its_leaderships_move_and_it_rejoins|(existed before issue 15) a broker cut off the network is fenced and rejoins|Control (test older than issue 15): expected to pass on old."
  "list_offsets::offsets_by_time_earliest_latest_and_after_delete_records|(existed before issue 15; ListOffsets by time, earliest, latest)|Control (test older than issue 15; only its timestamps changed): expected to pass on old."
)

log() { printf '== %s\n' "$*" >&2; }

old_sha=$(git rev-parse --verify "$OLD^{commit}")
new_sha=$(git rev-parse HEAD)
dirty=$(git status --porcelain --untracked-files=no -- broker storage net raft Cargo.toml Cargo.lock | head -1)

# ---- builds, one after the other
log "tests of this checkout ($new_sha), target dir $REG_TARGET"
mkdir -p "$REG_TARGET" "$LOGS" "$RILL_TEST_DIR"
CARGO_TARGET_DIR=$REG_TARGET cargo test -p rill-broker --tests --no-run --message-format=json 2>"$LOGS/build-new.log" \
  | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' >"$LOGS/executables" || { tail -30 "$LOGS/build-new.log" >&2; exit 1; }
# The path compiled into the tests (env!("CARGO_BIN_EXE_rill")): each pass puts its broker here.
TEST_BIN=$REG_TARGET/debug/rill
[ -x "$TEST_BIN" ] || { echo "no $TEST_BIN after the build" >&2; exit 1; }
cp -p "$TEST_BIN" "$LOGS/rill.test-build"
restore() { cp -p "$LOGS/rill.test-build" "$TEST_BIN"; }
trap restore EXIT
NEW_BIN=$TEST_BIN
if [ "$PROFILE" = release ]; then
  log "this checkout's broker, release build"
  CARGO_TARGET_DIR=$REG_TARGET cargo build --release -p rill-broker 2>"$LOGS/build-new-release.log" \
    || { tail -30 "$LOGS/build-new-release.log" >&2; exit 1; }
  NEW_BIN=$REG_TARGET/release/rill
fi
cp -p "$NEW_BIN" "$LOGS/rill.new"

if [ -n "${OLD_BIN:-}" ]; then
  old_built="given as OLD_BIN=$OLD_BIN, not built here"
else
  if [ "$(git -C "$OLD_WT" rev-parse HEAD 2>/dev/null || true)" != "$old_sha" ]; then
    log "worktree of $OLD at $OLD_WT"
    git worktree add --detach "$OLD_WT" "$old_sha" >&2
  fi
  log "old broker ($old_sha, $PROFILE build), target dir $OLD_TARGET"
  (cd "$OLD_WT" && CARGO_TARGET_DIR=$OLD_TARGET cargo build "${PROFILE_FLAG[@]}" -p rill-broker 2>"$LOGS/build-old.log") \
    || { tail -30 "$LOGS/build-old.log" >&2; exit 1; }
  OLD_BIN=$OLD_TARGET/$PROFILE/rill
  old_built="$PROFILE build of $old_sha"
fi
cp -p "$OLD_BIN" "$LOGS/rill.old"

# The Java client programs (as .ci/run builds them), when missing and mvn is there.
JAVA=broker/tests/clients/java
if [ ! -f "$JAVA/target/classes/rill/clients/Runner.class" ] && command -v mvn >/dev/null 2>&1; then
  log "Java client programs (mvn)"
  mvn -q -B -f "$JAVA/pom.xml" dependency:copy-dependencies package >"$LOGS/mvn.log" 2>&1 \
    || echo "warning: could not build the Java client programs (see $LOGS/mvn.log)" >&2
fi

# ---- the two passes

# run_one LABEL NAME EXE FN LOG: one run of one test against whatever is at $TEST_BIN;
# prints pass, FAIL, timeout, skipped or missing.
run_one() {
  local label=$1 name=$2 exe=$3 fn=$4 logf=$5 rc
  log "$label: $name (up to ${TEST_TIMEOUT}s)"
  set +e
  # timeout signals its whole process group, so brokers the test spawned go too.
  timeout -k 15 "$TEST_TIMEOUT" "$exe" --exact "$fn" --test-threads=1 --nocapture >"$logf" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo timeout
  elif grep -q '## SKIPPED' "$logf"; then
    echo skipped
  elif [ "$rc" -eq 0 ] && grep -q 'test result: ok. 1 passed' "$logf"; then
    echo pass
  elif [ "$rc" -eq 0 ]; then
    echo missing
  else
    echo FAIL
  fi
}

# run_pass LABEL RUNS: every chosen test against whatever binary is at $TEST_BIN, up to
# RUNS times each (stopping at the first run that does not pass).
run_pass() {
  local label=$1 runs=$2 entry name target fn exe status i
  for entry in "${TESTS[@]}"; do
    name=${entry%%|*}
    [[ $name =~ $ONLY ]] || continue
    target=${name%%::*}
    fn=${name#*::}
    exe=$(awk -v t="$target" '$1 == t { print $2 }' "$LOGS/executables")
    local logf="$LOGS/$label-$target-$fn.log"
    if [ -z "$exe" ]; then
      echo "no test executable for $target" >"$logf"
      echo "$label $name missing" >>"$LOGS/status"
      continue
    fi
    for ((i = 1; i <= runs; i++)); do
      status=$(run_one "$label" "$name" "$exe" "$fn" "$logf")
      [ "$status" = pass ] || break
    done
    if [ "$runs" -gt 1 ]; then
      if [ "$status" = pass ]; then status="pass($runs/$runs)"; else status="$status(run$i)"; fi
    fi
    echo "$label $name $status" >>"$LOGS/status"
    log "$label: $name: $status"
  done
}

: >"$LOGS/status"
cp -p "$LOGS/rill.new" "$TEST_BIN"
log "pass 1: the new broker ($NEW_BIN, $new_sha), at $TEST_BIN"
run_pass new "$NEW_RUNS"
cp -p "$LOGS/rill.old" "$TEST_BIN"
log "pass 2: the old broker ($OLD_BIN, $old_built), at $TEST_BIN"
run_pass old "$OLD_RUNS"
restore
trap - EXIT

# ---- the table
python3 - "$LOGS" "$OUT" "$old_sha" "$new_sha" "${dirty:+ (with uncommitted changes)}" "$TEST_TIMEOUT" \
    "$PROFILE" "$old_built" "$OLD_RUNS" "$NEW_RUNS" "${TESTS[@]}" <<'PY'
import os, re, sys, datetime, subprocess
logs, out, old_sha, new_sha, dirty, timeout, profile, old_built, old_runs, new_runs = sys.argv[1:11]
tests = [t.split("|") for t in sys.argv[11:]]
status = {}
for line in open(os.path.join(logs, "status")):
    label, name, st = line.split()
    status[(label, name)] = st

def why(label, name):
    """The first panic message of a failed run (a few lines), and any setting the broker refused."""
    target, fn = name.split("::")
    path = os.path.join(logs, f"{label}-{target}-{fn}.log")
    if not os.path.exists(path):
        return ""
    text = open(path, errors="replace").read()
    msg = ""
    m = re.search(r"panicked at [^\n]*\n(.*?)(?:\nnote: |\nstack backtrace|\n\n|\Z)", text, re.S)
    if m:
        lines = [l.strip() for l in m.group(1).strip().splitlines() if l.strip()]
        msg = " / ".join(lines[:4])
    msg = re.sub(r"\s+", " ", msg)
    # A setting the old broker does not know: said first, as it is why the test stopped.
    key = re.search(r"unknown field `([^`]+)`", text)
    arg = re.search(r"unexpected argument '([^']+)'", text)
    if key:
        msg = f"**the old broker refused the config key `{key.group(1)}`** (unknown field): " + msg
    elif arg:
        msg = f"**the old broker refused the argument `{arg.group(1)}`**: " + msg
    if len(msg) > 480:
        msg = msg[:480] + " …"
    return msg.replace("|", "\\|")

rows = []
for name, failure, reading in tests:
    new = status.get(("new", name))
    old = status.get(("old", name))
    if new is None and old is None:
        continue
    cell = why("old", name) if old and not old.startswith(("pass", "skipped")) else ""
    if old and old.startswith("timeout"):
        cell = f"(no answer within {timeout} s) " + cell
    rows.append(f"| `{name}` | {failure} | {new} | {old} | {cell} | {reading} |")

def rustc():
    return subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()

with open(out, "w") as f:
    f.write(f"""# Issue 15's regression tests against the code before it

Made by `bash benches/old-code-regressions.sh {old_sha[:7]}` on {datetime.date.today()}
({os.cpu_count()} cores, {rustc()}). The same test executables, built from
{new_sha[:7]}{dirty}, ran first against that commit's `rill` ({profile} build) and then against
the `rill` of {old_sha[:7]} ({old_built}), each copied over the path the tests start
(`CARGO_BIN_EXE_rill`). Each test had {timeout} s per run; against the new broker each ran
{new_runs} time(s), against the old broker up to {old_runs} time(s), stopping at the first
failure (pass(n/n): every run passed; FAIL(runk): run k failed). "old's failure" is the first panic
message of the old run; the last column says whether that is the defect issue 15
describes or only a setting the old broker does not know. Logs of both passes:
`$REG_TARGET/{os.path.basename(logs)}/`.

| test | issue-15 failure it covers | new | old | old's failure (assertion message) | reading |
|---|---|---|---|---|---|
""")
    f.write("\n".join(rows) + "\n")
print(open(out).read())
PY
