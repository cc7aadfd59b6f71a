#!/usr/bin/env python3
"""The chaos results table of one batch of runs (benches/chaos.sh): one row per seed (faults
by kind, acknowledged records, violations), totals, the exact command. Appended to
benches/results/chaos.md and written into the "Chaos" section of benches/RESULTS.md.

    python3 benches/chaos/table.py target/chaos/batch-... --command "..." \\
        [--results benches/results/chaos.md] [--update benches/RESULTS.md]
"""

import argparse
import collections
import datetime
import json
import os
import platform
import re


LOST = {"a_acked_record_lost", "a_two_acks_one_offset"}
DISAGREE = {"b_offset_read_two_ways", "b_read_record_vanished", "e_replicas_differ",
            "e_replica_epochs_differ", "e_replica_missing", "f_latest_offset_below_ack"}
CRASH = {"broker_crashed", "broker_log_panic_or_abort", "broker_unclean_exit"}


def classify(s):
    """One run's violations in the table's columns: lost acknowledged records, offset
    disagreements, broker crashes, duplicates (those copied under a later producer epoch
    are the client's re-sends, librdkafka#4953)."""
    count = {v["kind"]: v["count"] for v in s["violations"]}
    out = {"lost": sum(c for k, c in count.items() if k in LOST),
           "disagreements": sum(c for k, c in count.items() if k in DISAGREE),
           "crashes": sum(c for k, c in count.items() if k in CRASH),
           "duplicates": count.get("c_duplicate", 0),
           "txn_violations": sum(c for k, c in count.items() if k.startswith("t_"))}
    attr = s.get("duplicate_attribution", [])
    out["dup_client"] = sum(1 for d in attr if d["cause"].startswith("a later producer epoch"))
    out["dup_broker"] = sum(1 for d in attr if d["cause"].startswith("one producer epoch"))
    return out


def describe_binary(path, commit=None):
    """The broker binary, with the commit it was built from: as the run recorded it, else
    as a `<binary>.commit` file beside it names it now."""
    if not path:
        return "?"
    if not commit:
        try:
            with open(path + ".commit") as fh:
                commit = fh.read().strip()
        except OSError:
            pass
    return f"`{path}` (built from {commit})" if commit else f"`{path}`"


def dup_cell(c):
    if not c["duplicates"]:
        return "0"
    parts = [f"{c['dup_client']} client re-send" if c["dup_client"] else "",
             f"{c['dup_broker']} stored twice by the broker" if c["dup_broker"] else ""]
    rest = c["duplicates"] - c["dup_client"] - c["dup_broker"]
    parts.append(f"{rest} unattributed" if rest > 0 else "")
    return f"{c['duplicates']} ({', '.join(x for x in parts if x)})"


def main():
    a = argparse.ArgumentParser()
    a.add_argument("batch")
    a.add_argument("--command", required=True)
    a.add_argument("--results")
    a.add_argument("--update")
    args = a.parse_args()
    rows, kinds, tot = [], collections.Counter(), collections.Counter()
    anomalies = collections.Counter()
    durations, clients, binaries = set(), set(), set()
    for line in open(os.path.join(args.batch, "runs")):
        seed, n, rc = line.split()
        tot["runs"] += 1
        path = os.path.join(args.batch, f"seed-{seed}", "summary.json")
        if not os.path.exists(path):
            tot["no_summary"] += 1
            rows.append(f"| {seed} | {n} | - | - | - | - | - | - | - | - | - | - | no summary (exit {rc}: "
                        f"`{args.batch}/seed-{seed}.out`) |")
            continue
        s = json.load(open(path))
        durations.add(s["duration_s"])
        clients.add(f"{s.get('client', 'client ?')}, max.in.flight {s.get('max_in_flight', '?')}")
        binaries.add(describe_binary(s.get("binary"), s.get("binary_commit")))
        k = {x: c for x, c in s["faults_by_kind"].items() if not x.startswith("target:")}
        kinds.update(s["faults_by_kind"])
        tot["faults"] += s["faults_applied"]
        tot["acked"] += s["acked"]
        tot["violations"] += s["violations_total"]
        tot["crashes"] += len(s.get("broker_crashes", []))
        for key, val in s.get("anomalies", {}).items():
            anomalies[key] += sum(val.values()) if isinstance(val, dict) else val
        viol = ", ".join(f"{v['kind']} x{v['count']}" for v in s["violations"]) or "0"
        cls = classify(s)
        for key, val in cls.items():
            tot[key] += val
        sync = s["in_sync_after_heal_s"]
        workers = s.get("txn_workers")
        if workers is None:
            txn = "-"
        else:
            committed = sum(w["committed"] for w in workers)
            aborted = sum(w["aborted"] for w in workers)
            tot["txn_committed"] += committed
            tot["txn_aborted"] += aborted
            tot["txn_inputs"] += s.get("txn_inputs_reflected", 0)
            tot["txn_runs"] += 1
            txn = (f"{committed} committed, {aborted} aborted; {s.get('txn_inputs_reflected', 0)} "
                   f"inputs reflected; {cls['txn_violations']} violations")
        rows.append(f"| {seed} | {n} | {s['faults_applied']} | "
                    f"{', '.join(f'{x} {c}' for x, c in sorted(k.items()))} | {s['acked']} | "
                    f"{s['failed']} | {'-' if sync is None else f'{sync:.1f} s'} | "
                    f"{cls['lost']} | {cls['disagreements']} | {cls['crashes']} | "
                    f"{dup_cell(cls)} | {txn} | {viol} |")
    by_kind = ", ".join(f"{x} {c}" for x, c in sorted(kinds.items())
                        if not x.startswith("target:"))
    targets = ", ".join(f"{x[7:]} {c}" for x, c in sorted(kinds.items())
                        if x.startswith("target:"))
    dur = "/".join(f"{d:.0f}" for d in sorted(durations)) or "?"
    kind = ("with kill -9 of every broker at once" if "--allow-kill-all" in args.command
            else "faults that keep a metadata quorum")
    lines = [
        f"### {kind.capitalize()}: {tot['runs']} seeded runs of {dur} s, "
        f"{datetime.date.today()}",
        "",
        f"Command: `{args.command}` (run directories: `{args.batch}`). "
        f"Client: {'; '.join(sorted(clients)) or '?'}. "
        f"Broker: {'; '.join(sorted(binaries)) or '?'}.",
        "",
        f"**{tot['runs']} runs, {tot['faults']} faults, {tot['acked']} acknowledged records, "
        f"{tot['lost']} acknowledged records lost, {tot['disagreements']} offset "
        f"disagreements, {tot['crashes']} broker crashes, {tot['duplicates']} duplicates"
        + (f" ({tot['dup_client']} of them client re-sends after an epoch bump, "
           f"librdkafka#4953)" if tot["duplicates"] else "")
        + (f"; transactional consume-transform-produce: {tot['txn_committed']} transactions "
           f"committed, {tot['txn_aborted']} aborted, {tot['txn_inputs']} input records "
           f"reflected, {tot['txn_violations']} output violations" if tot["txn_runs"] else "")
        + f"; {tot['violations']} violations in all**"
        + (f" ({tot['no_summary']} runs without a summary)" if tot["no_summary"] else "")
        + f". Faults by kind: {by_kind}; targets: {targets}.",
        "",
        "| seed | brokers | faults | by kind | acked | failed (not acked) | in sync after heal "
        "| lost | disagreements | crashes | duplicates | transactions (t) | violations |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "lost: acknowledged records not at their offset with their value (a); disagreements: "
        "an offset read two ways, a read record gone, replicas' files differing, a leader's "
        "latest offset below an earlier ack (b, e, f); "
        "crashes: a broker exiting on its own, a panic or abort in its log, an unclean stop; "
        "duplicates (c): a client re-send after an epoch bump (librdkafka#4953, see "
        "[benches/chaos/README.md](chaos/README.md)) or the broker storing a batch twice; "
        "transactions (t): the consume-transform-produce worker's transactions, the input records "
        "its read_committed output reflects, and output violations (lost, duplicated, past the "
        "committed offsets, not matching the input, not readable to its end).",
        "",
    ]
    anomalies = {k: v for k, v in anomalies.items() if v}
    if anomalies:
        lines += ["Anomalies (client-visible, not data-safety violations): " +
                  ", ".join(f"{k} {v}" for k, v in sorted(anomalies.items())) + ".", ""]
    text = "\n".join(lines)
    intro = "\n".join([
        "## Chaos (issue 15)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}. "
        "`benches/chaos.sh` runs seeds of `benches/chaos/chaos.py`: brokers in network "
        "namespaces on a bridge, 3 metadata voters (more brokers are learners), heartbeat "
        "200 ms, session 2000 ms, replica lag 3000 ms; a topic of 6 partitions, RF 3, "
        "min.insync.replicas 2; 3 idempotent acks=all producers (300 records/s in all), 2 "
        "consumers reading from the start (one rewinds every 20 s), a ListOffsets watcher; "
        "what is checked: [benches/chaos/README.md](chaos/README.md). A violation is any "
        "of (a)-(f) there, a broker crash, or not in sync within 60 s of the final heal.",
        "",
    ])
    if args.results:
        with open(args.results, "a") as fh:
            fh.write(text + "\n")
    if args.update:
        body = open(args.update).read()
        m = re.search(r"^## Chaos \(issue 15\).*?(?=^## |\Z)", body, re.S | re.M)
        subs = {}
        if m:
            for part in re.split(r"^(?=### )", m.group(0), flags=re.M)[1:]:
                title = part.split("\n", 1)[0]
                subs[title.split(":")[0]] = part.rstrip("\n") + "\n"
        subs[f"### {kind.capitalize()}"] = text
        section = intro + "\n" + "\n".join(subs[k].rstrip("\n") + "\n" for k in sorted(subs))
        if m:
            body = body[:m.start()] + section + "\n" + body[m.end():]
        else:
            body = body.rstrip("\n") + "\n\n" + section
        with open(args.update, "w") as fh:
            fh.write(body)
    print(text)


if __name__ == "__main__":
    main()
