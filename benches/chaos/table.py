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


def main():
    a = argparse.ArgumentParser()
    a.add_argument("batch")
    a.add_argument("--command", required=True)
    a.add_argument("--results")
    a.add_argument("--update")
    args = a.parse_args()
    rows, kinds, tot = [], collections.Counter(), collections.Counter()
    anomalies = collections.Counter()
    durations, clients = set(), set()
    for line in open(os.path.join(args.batch, "runs")):
        seed, n, rc = line.split()
        tot["runs"] += 1
        path = os.path.join(args.batch, f"seed-{seed}", "summary.json")
        if not os.path.exists(path):
            tot["no_summary"] += 1
            rows.append(f"| {seed} | {n} | - | - | - | - | - | no summary (exit {rc}: "
                        f"`{args.batch}/seed-{seed}.out`) |")
            continue
        s = json.load(open(path))
        durations.add(s["duration_s"])
        clients.add(f"{s.get('client', 'client ?')}, max.in.flight {s.get('max_in_flight', '?')}")
        k = {x: c for x, c in s["faults_by_kind"].items() if not x.startswith("target:")}
        kinds.update(s["faults_by_kind"])
        tot["faults"] += s["faults_applied"]
        tot["acked"] += s["acked"]
        tot["violations"] += s["violations_total"]
        tot["crashes"] += len(s.get("broker_crashes", []))
        for key, val in s.get("anomalies", {}).items():
            anomalies[key] += sum(val.values()) if isinstance(val, dict) else val
        viol = ", ".join(f"{v['kind']} x{v['count']}" for v in s["violations"]) or "0"
        sync = s["in_sync_after_heal_s"]
        rows.append(f"| {seed} | {n} | {s['faults_applied']} | "
                    f"{', '.join(f'{x} {c}' for x, c in sorted(k.items()))} | {s['acked']} | "
                    f"{s['failed']} | {'-' if sync is None else f'{sync:.1f} s'} | {viol} |")
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
        f"Client: {'; '.join(sorted(clients)) or '?'}.",
        "",
        f"**{tot['runs']} runs, {tot['faults']} faults, {tot['acked']} acknowledged records, "
        f"{tot['violations']} violations, {tot['crashes']} broker crashes**"
        + (f" ({tot['no_summary']} runs without a summary)" if tot["no_summary"] else "")
        + f". Faults by kind: {by_kind}; targets: {targets}.",
        "",
        "| seed | brokers | faults | by kind | acked | failed (not acked) | in sync after heal | violations |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
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
