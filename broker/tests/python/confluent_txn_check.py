"""Transactions through confluent-kafka (Python on librdkafka) against a real broker.

    confluent_txn_check.py BOOTSTRAP TOPIC OUT_TOPIC GROUP

1. A transactional producer commits 10 records to TOPIC, then aborts 10 more.
2. A read_committed consumer in GROUP reads TOPIC and a consume-transform-produce loop writes
   each record upper-cased to OUT_TOPIC, sending the consumer's offsets to the transaction
   (send_offsets_to_transaction) before committing it.
3. A read_committed consumer sees exactly the committed records of TOPIC, a read_uncommitted
   one all 20; OUT_TOPIC holds the 10 transformed records.
4. A second producer with the same transactional.id fences the first: the first one's next
   transaction fails with a fatal error.

Prints one `ok <step>` line per step and exits 0; any difference raises (exit 1) with what was
seen. The test reads the group's committed offsets back through the broker itself.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

BOOTSTRAP, TOPIC, OUT, GROUP = sys.argv[1:5]
TIMEOUT = 30


def producer(txn_id):
    p = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 60000,
            "linger.ms": 5,
        }
    )
    p.init_transactions(TIMEOUT)
    return p


def produce_all(p, topic, values):
    for v in values:
        p.produce(topic, value=v.encode(), key=v.encode(), partition=0)
    p.flush(TIMEOUT)


def read_all(topic, isolation, expect, group=None):
    """Values of partition 0 of `topic` from the start, until `expect` came and the end."""
    c = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": group or f"reader-{topic}-{isolation}-{time.time()}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + TIMEOUT
    eof = False
    while time.time() < deadline and not (eof and len(got) >= expect):
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof = True
                continue
            raise KafkaException(m.error())
        eof = False
        got.append(m.value().decode())
    c.close()
    return got


committed = [f"committed-{i}" for i in range(10)]
aborted = [f"aborted-{i}" for i in range(10)]

p = producer("confluent-txn")
p.begin_transaction()
produce_all(p, TOPIC, committed)
p.commit_transaction(TIMEOUT)
p.begin_transaction()
produce_all(p, TOPIC, aborted)
p.abort_transaction(TIMEOUT)
print("ok commit-and-abort", flush=True)

# Consume-transform-produce with the input offsets in the transaction.
c = Consumer(
    {
        "bootstrap.servers": BOOTSTRAP,
        "group.id": GROUP,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
)
c.subscribe([TOPIC])
seen = []
deadline = time.time() + TIMEOUT
while len(seen) < len(committed) and time.time() < deadline:
    m = c.poll(0.2)
    if m is None:
        continue
    if m.error():
        raise KafkaException(m.error())
    seen.append(m.value().decode())
assert seen == committed, f"the group's read_committed consumer read {seen}"
p.begin_transaction()
produce_all(p, OUT, [v.upper() for v in seen])
p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), TIMEOUT)
p.commit_transaction(TIMEOUT)
c.close()
print("ok consume-transform-produce", flush=True)

got = read_all(TOPIC, "read_committed", len(committed))
assert got == committed, f"read_committed read {got}"
got = read_all(TOPIC, "read_uncommitted", len(committed) + len(aborted))
assert got == committed + aborted, f"read_uncommitted read {got}"
got = read_all(OUT, "read_committed", len(committed))
assert got == [v.upper() for v in committed], f"{OUT} holds {got}"
print("ok isolation-levels", flush=True)

# A newer instance with the same transactional.id fences the first.
newer = producer("confluent-txn")
try:
    p.begin_transaction()
    produce_all(p, TOPIC, ["zombie"])
    p.commit_transaction(TIMEOUT)
    raise AssertionError("the fenced producer committed a transaction")
except KafkaException as e:
    err = e.args[0]
    assert err.fatal() or err.code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    ), f"the fenced producer got {err}"
    print(f"fenced: {err.name()}", flush=True)
newer.begin_transaction()
produce_all(newer, TOPIC, ["after-fence"])
newer.commit_transaction(TIMEOUT)
got = read_all(TOPIC, "read_committed", len(committed) + 1)
assert got == committed + ["after-fence"], f"after the fence read_committed read {got}"
print("ok fencing", flush=True)
