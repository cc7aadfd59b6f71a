#!/usr/bin/env python3
"""Produce and consume with kafka-python against a Rill broker (used by second_client.rs).

Usage: kafka_python_check.py BOOTSTRAP TOPIC PARTITIONS COUNT

Produces COUNT keyed records with headers (acks=all) round-robin over PARTITIONS, checks
every delivery's offset is dense per partition, then reads every partition from the
beginning with assign() (no consumer group) and checks key, value, headers and offset of
each record. Prints "kafka-python ok: N records" and exits 0, or exits 1 saying what differed.
Every wait is bounded.
"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def fail(msg):
    print(f"kafka-python check FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    bootstrap, topic, partitions, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=20000,
        max_block_ms=20000,
    )
    expected = {}
    futures = []
    for i in range(count):
        p = i % partitions
        key = f"py-key-{i}".encode()
        value = (f"py-value-{i}-" * (1 + i % 7)).encode()
        headers = [("seq", str(i).encode()), ("lang", b"python")]
        futures.append((i, p, key, value, headers, producer.send(topic, key=key, value=value, headers=headers, partition=p)))
    producer.flush(timeout=30)
    next_offset = [0] * partitions
    for i, p, key, value, headers, fut in futures:
        md = fut.get(timeout=30)
        if md.partition != p:
            fail(f"record {i} went to partition {md.partition}, asked for {p}")
        if md.offset != next_offset[p]:
            fail(f"record {i}: offset {md.offset} in partition {p}, expected {next_offset[p]}")
        next_offset[p] += 1
        expected[(p, md.offset)] = (key, value, headers)
    producer.close(timeout=10)

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=30000,
        fetch_max_wait_ms=200,
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = {}
    deadline = time.monotonic() + 45
    while len(got) < count:
        if time.monotonic() > deadline:
            fail(f"consumed {len(got)} of {count} records within 45 s")
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                if (tp.partition, r.offset) in got:
                    fail(f"offset {tp.partition}/{r.offset} consumed twice")
                got[(tp.partition, r.offset)] = (r.key, r.value, list(r.headers))
    end = consumer.end_offsets(tps)
    consumer.close()
    for tp in tps:
        if end[tp] != next_offset[tp.partition]:
            fail(f"end offset of partition {tp.partition} is {end[tp]}, expected {next_offset[tp.partition]}")
    if set(got) != set(expected):
        fail(f"consumed positions differ: missing {sorted(set(expected) - set(got))[:10]}, extra {sorted(set(got) - set(expected))[:10]}")
    for pos, want in expected.items():
        if got[pos] != want:
            fail(f"record at {pos}: got {got[pos]!r}, want {want!r}")
    print(f"kafka-python ok: {count} records")


if __name__ == "__main__":
    main()
