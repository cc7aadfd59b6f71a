#!/usr/bin/env python3
"""Run a kafka-python consumer group against a Rill broker (used by second_client.rs).

Usage: kafka_python_group_check.py BOOTSTRAP TOPIC PARTITIONS COUNT GROUP

Produces COUNT/2 records, starts two KafkaConsumers in GROUP (subscribe, auto commit every
200 ms), each polling on its own thread, waits until their assignments are disjoint and
cover all PARTITIONS, produces the other COUNT/2, and checks that together they consumed
every record exactly once (key, value, position). Both close (final commit, LeaveGroup);
the group's committed offsets must then equal the end offsets. Finally 50 more records
are produced and a new member of the group must read exactly those (it resumes at the
committed offsets). Prints "kafka-python group ok: N records" and exits 0, or exits 1
saying what differed. Every wait is bounded.
"""
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def fail(msg):
    print(f"kafka-python group check FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def produce(bootstrap, topic, partitions, label, start, count):
    """Produces records start..start+count; returns {(partition, offset): (key, value)}."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=20000,
        max_block_ms=20000,
    )
    futures = []
    for i in range(start, start + count):
        p = i % partitions
        key = f"{label}-key-{i}".encode()
        value = f"{label}-value-{i}".encode()
        futures.append((p, key, value, producer.send(topic, key=key, value=value, partition=p)))
    producer.flush(timeout=30)
    out = {}
    for p, key, value, fut in futures:
        md = fut.get(timeout=30)
        if md.partition != p:
            fail(f"{key!r} went to partition {md.partition}, asked for {p}")
        out[(p, md.offset)] = (key, value)
    producer.close(timeout=10)
    return out


def new_member(bootstrap, group, name):
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=name,
        enable_auto_commit=True,
        auto_commit_interval_ms=200,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=200,
    )


class Member(threading.Thread):
    """Polls one consumer on its own thread until stopped, then closes it."""

    def __init__(self, bootstrap, topic, group, name, ledger):
        super().__init__(daemon=True)
        self.name_ = name
        self.consumer = new_member(bootstrap, group, name)
        self.consumer.subscribe([topic])
        self.ledger = ledger
        self.stop = threading.Event()
        self.assigned = set()
        self.error = None
        self.closed = False

    def run(self):
        try:
            while not self.stop.is_set():
                batch = self.consumer.poll(timeout_ms=200)
                for tp, records in batch.items():
                    for r in records:
                        self.ledger.add(self.name_, tp.partition, r.offset, r.key, r.value)
                self.assigned = {tp.partition for tp in self.consumer.assignment()}
            self.consumer.close()
            self.closed = True
        except Exception as e:  # reported by the main thread
            self.error = repr(e)


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.got = {}
        self.duplicates = []

    def add(self, who, partition, offset, key, value):
        with self.lock:
            pos = (partition, offset)
            if pos in self.got:
                self.duplicates.append(f"{pos} read by {self.got[pos][0]} and again by {who}")
            else:
                self.got[pos] = (who, key, value)

    def snapshot(self):
        with self.lock:
            return dict(self.got), list(self.duplicates)


def wait(what, timeout, pred, members):
    deadline = time.monotonic() + timeout
    while not pred():
        for m in members:
            if m.error:
                fail(f"{m.name_}: {m.error}")
        if time.monotonic() > deadline:
            state = {m.name_: sorted(m.assigned) for m in members}
            fail(f"{what}: not within {timeout} s (assignments {state})")
        time.sleep(0.05)


def check_exact(label, got, duplicates, expected):
    if duplicates:
        fail(f"{label}: records consumed twice: {duplicates[:10]}")
    if set(got) != set(expected):
        fail(
            f"{label}: consumed positions differ: missing {sorted(set(expected) - set(got))[:10]}, "
            f"extra {sorted(set(got) - set(expected))[:10]}"
        )
    for pos, (key, value) in expected.items():
        if got[pos][1:] != (key, value):
            fail(f"{label}: record at {pos}: got {got[pos]!r}, want {(key, value)!r}")


def main():
    bootstrap, topic, partitions, count, group = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        sys.argv[5],
    )
    half = count // 2
    expected = produce(bootstrap, topic, partitions, "before", 0, half)

    ledger = Ledger()
    members = [Member(bootstrap, topic, group, f"py-member-{i}", ledger) for i in (1, 2)]
    for m in members:
        m.start()
    everything = set(range(partitions))
    wait(
        "two members own disjoint partitions covering the topic",
        45,
        lambda: all(m.assigned for m in members)
        and not (members[0].assigned & members[1].assigned)
        and (members[0].assigned | members[1].assigned) == everything,
        members,
    )
    expected.update(produce(bootstrap, topic, partitions, "after", half, count - half))
    wait("every record consumed", 45, lambda: len(ledger.snapshot()[0]) >= count, members)
    time.sleep(1)  # anything extra or duplicated shows up now
    got, duplicates = ledger.snapshot()
    check_exact("group of two", got, duplicates, expected)
    readers = {who for who, _, _ in got.values()}
    if len(readers) != 2:
        fail(f"only {readers} consumed anything")
    for who in readers:
        own = next(m.assigned for m in members if m.name_ == who)
        strays = [pos for pos, (w, _, _) in got.items() if w == who and pos[0] not in own]
        if strays:
            fail(f"{who} consumed partitions it does not own: {strays[:5]}")

    for m in members:
        m.stop.set()
    for m in members:
        m.join(timeout=30)
        if m.is_alive() or not m.closed:
            fail(f"{m.name_} did not close within 30 s ({m.error})")

    # The group's committed offsets are the end of every partition.
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = probe.end_offsets(tps)
    for tp in tps:
        committed = probe.committed(tp)
        if committed != ends[tp]:
            fail(f"committed offset of partition {tp.partition} is {committed}, end is {ends[tp]}")
    probe.close(autocommit=False)

    # A new member resumes at the committed offsets: it reads exactly the new records.
    more = produce(bootstrap, topic, partitions, "resume", count, 50)
    ledger2 = Ledger()
    resumer = Member(bootstrap, topic, group, "py-member-3", ledger2)
    resumer.start()
    wait("the new member read the new records", 45, lambda: len(ledger2.snapshot()[0]) >= 50, [resumer])
    time.sleep(1)
    got2, duplicates2 = ledger2.snapshot()
    check_exact("resumed member", got2, duplicates2, more)
    resumer.stop.set()
    resumer.join(timeout=30)
    if resumer.is_alive() or not resumer.closed:
        fail(f"py-member-3 did not close within 30 s ({resumer.error})")
    print(f"kafka-python group ok: {count} records")


if __name__ == "__main__":
    main()
