#!/usr/bin/env python3
"""The kafka-python side of Rill's client matrix (broker/tests/client_python.rs).

Reads commands from stdin, one per line, arguments separated by tabs, and answers each with
its output lines and "@@exit CODE" ("@@pause LABEL" waits for one stdin line). The commands and
their output lines are those of the Java program (tests/clients/java/.../Scenarios.java and
Admins.java), so the Rust checks are shared. Exit code 3: kafka-python has no API for it.

Set RILL_CLIENT_LOG=debug for kafka-python's debug log on stderr.
"""
import logging
import os
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)
from kafka.structs import OffsetAndMetadata

WAIT_S = 60


class Unsupported(Exception):
    pass


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pause(label):
    out(f"@@pause {label}")
    if sys.stdin.readline() == "":
        raise RuntimeError(f"stdin closed during pause {label}")


def value(label, i):
    return f"{label}-v-{i};" * 4


def produce(a):
    """produce BOOTSTRAP TOPIC CODEC PARTITION COUNT LABEL: idempotent, acks=all."""
    bootstrap, topic, codec, partition, count, label = a[:6]
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
        request_timeout_ms=20000,
        max_block_ms=20000,
    )
    try:
        futs = [
            p.send(
                topic,
                key=f"{label}-k-{i}".encode(),
                value=value(label, i).encode(),
                partition=int(partition),
                headers=[("seq", str(i).encode()), ("client", b"kafka-python")],
            )
            for i in range(int(count))
        ]
        p.flush(timeout=WAIT_S)
        offsets = [f.get(timeout=WAIT_S).offset for f in futs]
    finally:
        p.close(timeout=10)
    if offsets != list(range(offsets[0], offsets[0] + len(offsets))):
        raise RuntimeError(f"offsets not dense: {offsets}")
    out(f"produced {partition} {offsets[0]} {offsets[-1]}")


def rec_line(r):
    hs = ";".join(f"{k}={v.decode()}" for k, v in r.headers) or "-"
    key = "-" if r.key is None else r.key.decode()
    val = "-" if r.value is None else r.value.decode()
    return f"rec {r.partition} {r.offset} {key} {val} {hs}"


def consume(a):
    """consume BOOTSTRAP TOPIC PARTITIONS COUNT: assign from the beginning, no group."""
    bootstrap, topic, partitions, count = a[0], a[1], int(a[2]), int(a[3])
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got = 0
        deadline = time.monotonic() + WAIT_S
        settle = None
        while True:
            if got >= count and settle is None:
                settle = time.monotonic() + 1
            if settle is not None and time.monotonic() > settle:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumed {got} of {count} records")
            for _tp, recs in c.poll(timeout_ms=200).items():
                for r in recs:
                    out(rec_line(r))
                    got += 1
        ends = c.end_offsets(tps)
        for tp in tps:
            out(f"end {tp.partition} {ends[tp]}")
        out(f"consumed {got}")
    finally:
        c.close()


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.got = {}
        self.dups = []

    def add(self, who, r):
        with self.lock:
            pos = f"{r.partition}/{r.offset}"
            if pos in self.got:
                self.dups.append(f"{pos} read by {self.got[pos]} and {who}")
            else:
                self.got[pos] = f"{who} {r.key.decode()} {r.value.decode()}"

    def size(self):
        with self.lock:
            return len(self.got)

    def reset(self):
        with self.lock:
            self.got = {}

    def check(self, what, want):
        with self.lock:
            if self.dups:
                raise RuntimeError(f"{what}: consumed twice: {self.dups[:10]}")
            for pos, kv in want.items():
                got = self.got.get(pos)
                if got is None or not got.endswith(" " + kv):
                    raise RuntimeError(f"{what}: at {pos} got {got!r}, want {kv!r}")
            if len(self.got) != len(want):
                raise RuntimeError(f"{what}: consumed {len(self.got)} records, want {len(want)}")


class Member(threading.Thread):
    """Polls one consumer on its own thread; commits after every batch it reads."""

    def __init__(self, bootstrap, topic, group, name, ledger):
        super().__init__(daemon=True)
        self.name_ = name
        self.topic = topic
        self.ledger = ledger
        self.consumed = 0
        self.assigned = []
        self.error = None
        self.stopping = threading.Event()
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=500,
            fetch_max_wait_ms=200,
        )
        # Know the topic's partitions before joining: a member that joins first gets an
        # empty assignment ("No partition metadata"), rejoins at once when its metadata
        # arrives, and after that double rebalance kafka-python 2.x was seen to stop
        # heartbeating (CI, session 9: the member's session expired, it never fetched).
        deadline = time.monotonic() + WAIT_S
        while not self.consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no metadata for {topic} within {WAIT_S} s")
            time.sleep(0.05)
        self.consumer.subscribe([topic])

    def run(self):
        try:
            while not self.stopping.is_set():
                n = 0
                for _tp, recs in self.consumer.poll(timeout_ms=100).items():
                    for r in recs:
                        self.ledger.add(self.name_, r)
                        n += 1
                if n:
                    self.consumed += n
                    self.consumer.commit()
                self.assigned = sorted(tp.partition for tp in self.consumer.assignment())
            self.consumer.commit()
            self.consumer.close()  # leaves the group
        except Exception as e:  # reported by the scenario
            self.error = repr(e)

    def stop(self):
        self.stopping.set()
        self.join(30)
        if self.is_alive():
            raise RuntimeError(f"{self.name_} did not close within 30 s")
        if self.error:
            raise RuntimeError(f"{self.name_}: {self.error}")


def wait_for(what, cond, members):
    deadline = time.monotonic() + WAIT_S
    while not cond():
        for m in members:
            if m.error:
                raise RuntimeError(f"{m.name_}: {m.error}")
        if time.monotonic() > deadline:
            state = {m.name_: m.assigned for m in members}
            raise RuntimeError(f"{what}: not within {WAIT_S} s ({state})")
        time.sleep(0.05)


def produce_spread(bootstrap, topic, partitions, label, count):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    want = {}
    try:
        futs = []
        for i in range(count):
            k, v = f"{label}-k-{i}", f"{label}-v-{i}"
            futs.append((k, v, p.send(topic, key=k.encode(), value=v.encode(), partition=i % partitions)))
        p.flush(timeout=WAIT_S)
        for k, v, f in futs:
            md = f.get(timeout=WAIT_S)
            want[f"{md.partition}/{md.offset}"] = f"{k} {v}"
    finally:
        p.close(timeout=10)
    return want


def plist(ps):
    return ",".join(str(p) for p in sorted(ps)) or "-"


def group(a):
    """group BOOTSTRAP TOPIC PARTITIONS GROUP PROTOCOL: see Scenarios.group (Java)."""
    bootstrap, topic, partitions, group_id, protocol = a[0], a[1], int(a[2]), a[3], a[4]
    if protocol != "classic":
        raise Unsupported("kafka-python speaks only the classic group protocol")
    everything = list(range(partitions))
    ledger = Ledger()
    m1 = Member(bootstrap, topic, group_id, "kafka-python-m1", ledger)
    m2 = Member(bootstrap, topic, group_id, "kafka-python-m2", ledger)
    m1.start()
    m2.start()
    wait_for(
        "two members own disjoint partitions covering the topic",
        lambda: m1.assigned and m2.assigned and sorted(m1.assigned + m2.assigned) == everything,
        [m1, m2],
    )
    for m in (m1, m2):
        out(f"member {m.name_} assigned {plist(m.assigned)}")
    pause("balanced")
    want = produce_spread(bootstrap, topic, partitions, "phase1", 200)
    wait_for("every phase1 record consumed", lambda: ledger.size() >= len(want), [m1, m2])
    time.sleep(0.5)
    ledger.check("two members", want)
    for m in (m1, m2):
        out(f"member {m.name_} consumed {m.consumed}")
    m1.stop()
    wait_for("kafka-python-m2 takes every partition", lambda: m2.assigned == everything, [m2])
    out(f"member kafka-python-m2 assigned {plist(m2.assigned)}")
    pause("takeover")
    ledger.reset()
    want = produce_spread(bootstrap, topic, partitions, "phase2", 100)
    wait_for("every phase2 record consumed", lambda: ledger.size() >= len(want), [m2])
    time.sleep(0.5)
    ledger.check("survivor", want)
    m2.stop()
    pause("empty")
    ledger.reset()
    want = produce_spread(bootstrap, topic, partitions, "phase3", 20)
    m3 = Member(bootstrap, topic, group_id, "kafka-python-m3", ledger)
    m3.start()
    wait_for("kafka-python-m3 reads the new records", lambda: ledger.size() >= len(want), [m3])
    time.sleep(1)
    ledger.check("resumed member", want)
    out(f"member kafka-python-m3 consumed {m3.consumed}")
    m3.stop()


def kvs(args):
    return dict(x.split("=", 1) for x in args)


def resource(kind, name, configs=None):
    t = ConfigResourceType.BROKER if kind == "broker" else ConfigResourceType.TOPIC
    return ConfigResource(t, name, configs=configs)


def raise_errors(results):
    """kafka-python answers per-partition errors as error classes; raise any that is not NoError."""
    for k, v in results.items():
        if isinstance(v, type) and v.__name__ != "NoError":
            raise RuntimeError(f"{k}: {v.__name__}")


def admin(name, a):
    adm = KafkaAdminClient(bootstrap_servers=a[0], request_timeout_ms=20000)
    try:
        if name == "admin-create-topic":
            adm.create_topics([NewTopic(a[1], int(a[2]), 1, topic_configs=kvs(a[3:]))])
            out(f"created {a[1]}")
        elif name == "admin-list-topics":
            for t in sorted(adm.list_topics()):
                if not t.startswith("__"):
                    out(f"topic {t}")
        elif name == "admin-describe-topic":
            for t in adm.describe_topics([a[1]]):
                if t["error_code"]:
                    raise RuntimeError(f"describe topic: error {t['error_code']}")
                out(f"topic {t['name']} id {t['topic_id']} internal {t['is_internal']}")
                for p in sorted(t["partitions"], key=lambda p: p["partition_index"]):
                    out(
                        f"partition {p['partition_index']} leader {p['leader_id']} replicas "
                        f"{','.join(map(str, p['replica_nodes']))} isr {','.join(map(str, p['isr_nodes']))}"
                    )
        elif name == "admin-create-partitions":
            adm.create_partitions({a[1]: NewPartitions(int(a[2]))})
            out(f"partitions {a[1]} {a[2]}")
        elif name == "admin-delete-topic":
            adm.delete_topics([a[1]])
            out(f"deleted {a[1]}")
        elif name == "admin-describe-configs":
            res = adm.describe_configs([resource(a[1], a[2])], config_filter="all")
            for _kind, by_name in res.items():
                for _n, entries in by_name.items():
                    for k, e in entries.items():
                        out(f"config {k}={e['value']} {e['config_source']}")
        elif name == "admin-alter-configs":
            configs = {k: (v or None) for k, v in kvs(a[3:]).items()}
            res = adm.alter_configs([resource(a[1], a[2], configs)], incremental=True)
            for _kind, by_name in res.items():
                for n, status in by_name.items():
                    if status != "OK":
                        raise RuntimeError(f"alter configs {n}: {status}")
            out("altered")
        elif name == "admin-list-offsets":
            topic, partitions, spec = a[1], int(a[2]), a[3]
            specs = {"earliest": OffsetSpec.EARLIEST, "latest": OffsetSpec.LATEST, "max-timestamp": OffsetSpec.MAX_TIMESTAMP}
            s = specs.get(spec, None)
            s = int(spec) if s is None else s
            res = adm.list_partition_offsets({TopicPartition(topic, p): s for p in range(partitions)})
            for p in range(partitions):
                o = res[TopicPartition(topic, p)]
                out(f"offset {p} {o.offset} {o.timestamp}")
        elif name == "admin-delete-records":
            tp = TopicPartition(a[1], int(a[2]))
            res = adm.delete_records({tp: int(a[3])})
            if res[tp]["error_code"]:
                raise RuntimeError(f"delete records: error {res[tp]['error_code']}")
            out(f"low-watermark {a[2]} {res[tp]['low_watermark']}")
        elif name == "admin-list-groups":
            for g in adm.list_groups():
                out(f"group {g['group_id']} {g.get('group_type') or '-'} {g.get('group_state') or '-'}")
        elif name == "admin-describe-group":
            g = adm.describe_groups([a[1]])[a[1]]
            if g.get("error"):
                raise RuntimeError(f"describe group: {g['error']}")
            out(f"group {g['group_id']} state {g['group_state']} type {g['protocol_type'] or '-'} members {len(g['members'])}")
            for m in g["members"]:
                out(f"member {m.get('client_id')} ?")
        elif name == "admin-list-group-offsets":
            res = adm.list_group_offsets({a[1]: None})[a[1]]
            for tp, om in sorted(res.items()):
                out(f"committed {tp.topic} {tp.partition} {om.offset}")
        elif name == "admin-alter-group-offsets":
            offs = {TopicPartition(a[2], int(p)): OffsetAndMetadata(int(o), "", -1) for p, o in kvs(a[3:]).items()}
            raise_errors(adm.alter_group_offsets(a[1], offs))
            out("altered")
        elif name == "admin-delete-group-offsets":
            raise_errors(adm.delete_group_offsets(a[1], [TopicPartition(a[2], int(p)) for p in a[3:]]))
            out("deleted")
        elif name == "admin-delete-group":
            res = adm.delete_groups([a[1]])
            if res.get(a[1]) != "OK":
                raise RuntimeError(f"delete group: {res}")
            out(f"deleted {a[1]}")
        elif name == "admin-describe-cluster":
            c = adm.describe_cluster()
            out(f"cluster {c['cluster_id']} controller {c['controller_id']}")
            for b in c["brokers"]:
                out(f"node {b['broker_id']} {b['host']}:{b['port']}")
        else:
            # kafka-python also has describe_log_dirs, describe_producers, elect_leaders,
            # list_transactions: the Java and Go programs cover those apis.
            raise Unsupported(f"{name}: not in this program")
    finally:
        adm.close()


def run(words):
    name, a = words[0], words[1:]
    if name == "produce":
        return produce(a)
    if name == "consume":
        return consume(a)
    if name == "group":
        return group(a)
    return admin(name, a)


def main():
    level = logging.DEBUG if os.environ.get("RILL_CLIENT_LOG") == "debug" else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    out("@@ready")
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        code = 0
        try:
            run(line.split("\t"))
        except Unsupported as e:
            out(f"error unsupported: {e}")
            code = 3
        except Exception as e:
            logging.exception("command %r failed", line)
            out(f"error {type(e).__name__}: {str(e).replace(chr(10), ' ')}")
            code = 1
        out(f"@@exit {code}")


if __name__ == "__main__":
    main()
