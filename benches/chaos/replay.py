#!/usr/bin/env python3
"""Restart a finished chaos run's brokers from copies of their data, with no faults and no
clients, and watch whether every partition gets back in sync; for each replica left out
of a partition's ISR, ask the leader what it answers that follower's next fetch (Fetch v12
with the follower's log end and the epoch of its last batch, read from its files).

    sudo python3 benches/chaos/replay.py target/chaos/.../seed-6 [--seconds 60]

The run's data directories must have been kept (they are when a run found violations, or
with --keep-data). The copies go to RUN_DIR/replay-TIME; the evidence is not touched. The
brokers get the run's addresses again (the metadata raft log holds them), so use the
run's --subnet and --tag (defaults: 60, cx) and do not replay while that run is going.
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hosts import Broker, TestNet  # noqa: E402
from kafkawire import metadata, replica_fetch  # noqa: E402
from replicas import headers  # noqa: E402

TOPIC = "chaos"


def follower_position(data_dir, partition):
    """(log end, epoch of the last batch) of a replica's copy, from its files."""
    d = os.path.join(data_dir, f"{TOPIC}-{partition}")
    if not os.path.isdir(d):
        return 0, -1
    h = headers(d)
    return (h[-1][3] + 1, h[-1][4]) if h else (0, -1)


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("run_dir")
    a.add_argument("--seconds", type=float, default=60)
    a.add_argument("--binary", default=None)
    a.add_argument("--subnet", type=int, default=60)
    a.add_argument("--tag", default="cx")
    args = a.parse_args()
    run = os.path.abspath(args.run_dir)
    summary = {}
    if os.path.exists(os.path.join(run, "summary.json")):
        summary = json.load(open(os.path.join(run, "summary.json")))
    binary = args.binary or summary.get("binary")
    n = len([d for d in os.listdir(run) if d.startswith("broker-") and
             os.path.isdir(os.path.join(run, d))])
    if n < 3 or not binary:
        sys.exit("replay: needs a run directory with its brokers' data and a --binary")
    scratch = os.path.join(run, "replay-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(scratch)
    for i in range(1, n + 1):
        shutil.copytree(os.path.join(run, f"broker-{i}"), os.path.join(scratch, f"broker-{i}"))
    shutil.copy(os.path.join(run, "rill.toml"), scratch)
    net = TestNet(args.tag, args.subnet, n)
    voters = min(3, n)
    quorum = ",".join(f"{i + 1}@{net.host(i)}:9093" for i in range(voters))
    brokers = []
    try:
        net.create()
        t0 = time.monotonic()
        brokers = [Broker(i, net, binary, scratch, os.path.join(scratch, "rill.toml"), quorum,
                          i < voters) for i in range(n)]
        for b in brokers:
            b.start(t0)
        last = None
        while time.monotonic() - t0 < args.seconds:
            time.sleep(2)
            try:
                m = metadata(brokers[0].addr, [TOPIC], timeout=1.5)
            except Exception as e:
                print(f"t+{time.monotonic() - t0:5.1f}s metadata: {e}")
                continue
            parts = m["topics"].get(TOPIC, {}).get("partitions", {})
            view = {p: (x["leader"], x["leader_epoch"], tuple(sorted(x["isr"])),
                        tuple(x["replicas"])) for p, x in sorted(parts.items())}
            if view != last:
                print(f"t+{time.monotonic() - t0:5.1f}s " + "  ".join(
                    f"p{p}: leader {ld} epoch {e} isr {list(isr)}"
                    for p, (ld, e, isr, _r) in view.items()), flush=True)
                last = view
            for p, (ld, e, isr, reps) in view.items():
                for r in reps:
                    if r in isr or ld < 1:
                        continue
                    end, epoch = follower_position(brokers[r - 1].data_dir, p)
                    try:
                        ans = replica_fetch(brokers[ld - 1].addr, TOPIC, p, r, end, epoch,
                                            current_leader_epoch=e)
                    except Exception as ex:
                        ans = f"{type(ex).__name__}: {ex}"
                    leader_end, leader_epoch = follower_position(brokers[ld - 1].data_dir, p)
                    print(f"   p{p}: follower {r} (log end {end}, last epoch {epoch}) out of "
                          f"the ISR; leader {ld} (log end {leader_end}, last batch epoch "
                          f"{leader_epoch}, leader epoch {e}) answers its fetch: {ans}",
                          flush=True)
    finally:
        for b in brokers:
            b.terminate(15)
        net.remove()
    print(f"replay: brokers' logs and data in {scratch}")


if __name__ == "__main__":
    main()
