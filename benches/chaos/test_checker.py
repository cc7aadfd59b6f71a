#!/usr/bin/env python3
"""The checker on synthetic runs, without root or a broker: a clean run passes, and every
corruption the self-test makes is flagged. `python3 benches/chaos/test_checker.py`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checker  # noqa: E402
import txnwork  # noqa: E402
from chaos import self_test  # noqa: E402


def synthetic(partitions=3, per_partition=40, producers=2):
    acks, ack_times, final, seen = [], [], {}, {}
    instances = {}
    t = 0.0
    for p in range(partitions):
        final[p] = {"low": 0, "high": per_partition, "complete": True, "error": None,
                    "records": {}}
    seq = {k: 0 for k in range(producers)}
    for o in range(per_partition):
        for p in range(partitions):
            k = (o + p) % producers
            name = f"p{k}.0"
            v = f"{name}:{seq[k]}:{p}:".encode() + b"x" * 20
            seq[k] += 1
            instances[name] = seq[k]
            final[p]["records"][o] = v
            seen[(p, o)] = v
            t += 0.01
            acks.append((p, o, v))
            ack_times.append(t)
    latest = [(t + 1.0, p, per_partition, 1, 0) for p in range(partitions)]
    consumers = [{"name": "c0", "seen": dict(seen), "conflicts": []}]
    extra = {"latest": latest, "ack_times": ack_times}
    return acks, consumers, final, instances, extra


def main():
    acks, consumers, final, instances, extra = synthetic()
    v, figures = checker.check(acks, consumers, final, instances, **extra)
    assert v.total() == 0, f"a clean synthetic run has violations: {v.summary()}"
    tried, failures = self_test(acks, consumers, final, instances, extra)
    assert not failures, failures
    assert len(tried) >= 10, tried
    # An ack without an offset must still be found in its partition.
    lost = acks + [(0, None, b"p0.0:99999:0:")]
    v, _ = checker.check(lost, consumers, final, dict(instances, **{"p0.0": 100000}), **extra)
    assert v.count.get("a_acked_record_lost") == 1, v.summary()
    # A latest offset below an earlier ack is flagged; one asked before the ack is not.
    t_end = extra["ack_times"][-1]
    late = dict(extra, latest=extra["latest"] + [(t_end + 2, 0, 1, 1, 0)])
    v, _ = checker.check(acks, consumers, final, instances, **late)
    assert v.count.get("f_latest_offset_below_ack") == 1, v.summary()
    early = dict(extra, latest=extra["latest"] + [(0.0, 0, 0, 1, 0)])
    v, _ = checker.check(acks, consumers, final, instances, **early)
    assert v.total() == 0, v.summary()
    print(f"checker: clean run passes; {len(tried)} corruptions flagged: {', '.join(tried)}")
    tried, failures = txnwork.self_test(checker.Violations)
    assert not failures, failures
    print(f"transactional checker: clean run passes; {len(tried)} corruptions flagged: "
          f"{', '.join(tried)}")


if __name__ == "__main__":
    main()
