#!/usr/bin/env python3
"""The aiokafka side of Rill's client matrix (broker/tests/client_python.rs).

Reads commands from stdin, one per line, arguments separated by tabs, and answers each with
its output lines and "@@exit CODE" ("@@pause LABEL" waits for one stdin line). The commands and
their output lines are those of the Java program (tests/clients/java/.../Scenarios.java and
Admins.java), so the Rust checks are shared. Exit code 3: aiokafka has no API for it.

Set RILL_CLIENT_LOG=debug for aiokafka's debug log on stderr.
"""
import asyncio
import logging
import os
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

WAIT_S = 60


class Unsupported(Exception):
    pass


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def read_line():
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return None if line == "" else line.rstrip("\n")


async def pause(label):
    out(f"@@pause {label}")
    if await read_line() is None:
        raise RuntimeError(f"stdin closed during pause {label}")


def value(label, i):
    return f"{label}-v-{i};" * 4


async def produce(a):
    """produce BOOTSTRAP TOPIC CODEC PARTITION COUNT LABEL: idempotent, acks=all."""
    bootstrap, topic, codec, partition, count, label = a[:6]
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
        request_timeout_ms=20000,
    )
    await p.start()
    try:
        futs = []
        for i in range(int(count)):
            futs.append(
                await p.send(
                    topic,
                    key=f"{label}-k-{i}".encode(),
                    value=value(label, i).encode(),
                    partition=int(partition),
                    headers=[("seq", str(i).encode()), ("client", b"aiokafka")],
                )
            )
        offsets = [(await asyncio.wait_for(f, WAIT_S)).offset for f in futs]
    finally:
        await p.stop()
    if offsets != list(range(offsets[0], offsets[0] + len(offsets))):
        raise RuntimeError(f"offsets not dense: {offsets}")
    out(f"produced {partition} {offsets[0]} {offsets[-1]}")


def rec_line(r):
    hs = ";".join(f"{k}={v.decode()}" for k, v in r.headers) or "-"
    key = "-" if r.key is None else r.key.decode()
    val = "-" if r.value is None else r.value.decode()
    return f"rec {r.partition} {r.offset} {key} {val} {hs}"


async def consume(a):
    """consume BOOTSTRAP TOPIC PARTITIONS COUNT: assign from the beginning, no group."""
    bootstrap, topic, partitions, count = a[0], a[1], int(a[2]), int(a[3])
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
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
            for _tp, recs in (await c.getmany(timeout_ms=200)).items():
                for r in recs:
                    out(rec_line(r))
                    got += 1
        ends = await c.end_offsets(tps)
        for tp in tps:
            out(f"end {tp.partition} {ends[tp]}")
        out(f"consumed {got}")
    finally:
        await c.stop()


class Member:
    """One group member polling on its own task; commits after every batch it reads."""

    def __init__(self, bootstrap, topic, group, name, ledger):
        self.name = name
        self.topic = topic
        self.ledger = ledger
        self.consumed = 0
        self.error = None
        self.stopping = False
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=500,
            fetch_max_wait_ms=200,
        )
        self.task = None

    @property
    def assigned(self):
        return sorted(tp.partition for tp in self.consumer.assignment())

    async def start(self):
        await self.consumer.start()
        self.consumer.subscribe([self.topic])
        self.task = asyncio.create_task(self.run())

    async def run(self):
        try:
            while not self.stopping:
                batch = await self.consumer.getmany(timeout_ms=100)
                n = 0
                for _tp, recs in batch.items():
                    for r in recs:
                        self.ledger.add(self.name, r)
                        n += 1
                if n:
                    self.consumed += n
                    await self.consumer.commit()
        except Exception as e:  # reported by the scenario
            self.error = repr(e)

    async def stop(self):
        self.stopping = True
        await asyncio.wait_for(self.task, 30)
        await self.consumer.commit()
        await self.consumer.stop()  # leaves the group
        if self.error:
            raise RuntimeError(f"{self.name}: {self.error}")


class Ledger:
    def __init__(self):
        self.got = {}
        self.dups = []

    def add(self, who, r):
        pos = f"{r.partition}/{r.offset}"
        if pos in self.got:
            self.dups.append(f"{pos} read by {self.got[pos]} and {who}")
        else:
            self.got[pos] = f"{who} {r.key.decode()} {r.value.decode()}"

    def check(self, what, want):
        if self.dups:
            raise RuntimeError(f"{what}: consumed twice: {self.dups[:10]}")
        for pos, kv in want.items():
            got = self.got.get(pos)
            if got is None or not got.endswith(" " + kv):
                raise RuntimeError(f"{what}: at {pos} got {got!r}, want {kv!r}")
        if len(self.got) != len(want):
            raise RuntimeError(f"{what}: consumed {len(self.got)} records, want {len(want)}")


async def wait_for(what, cond, members):
    deadline = time.monotonic() + WAIT_S
    while not cond():
        for m in members:
            if m.error:
                raise RuntimeError(f"{m.name}: {m.error}")
        if time.monotonic() > deadline:
            state = {m.name: m.assigned for m in members}
            raise RuntimeError(f"{what}: not within {WAIT_S} s ({state})")
        await asyncio.sleep(0.05)


async def produce_spread(bootstrap, topic, partitions, label, count):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    want = {}
    try:
        futs = []
        for i in range(count):
            k, v = f"{label}-k-{i}", f"{label}-v-{i}"
            futs.append((k, v, await p.send(topic, key=k.encode(), value=v.encode(), partition=i % partitions)))
        for k, v, f in futs:
            md = await asyncio.wait_for(f, WAIT_S)
            want[f"{md.partition}/{md.offset}"] = f"{k} {v}"
    finally:
        await p.stop()
    return want


def plist(ps):
    return ",".join(str(p) for p in sorted(ps)) or "-"


async def group(a):
    """group BOOTSTRAP TOPIC PARTITIONS GROUP PROTOCOL: see Scenarios.group (Java)."""
    bootstrap, topic, partitions, group_id, protocol = a[0], a[1], int(a[2]), a[3], a[4]
    if protocol != "classic":
        raise Unsupported("aiokafka speaks only the classic group protocol")
    everything = list(range(partitions))
    ledger = Ledger()
    m1 = Member(bootstrap, topic, group_id, "aiokafka-m1", ledger)
    m2 = Member(bootstrap, topic, group_id, "aiokafka-m2", ledger)
    await m1.start()
    await m2.start()
    await wait_for(
        "two members own disjoint partitions covering the topic",
        lambda: m1.assigned and m2.assigned and sorted(m1.assigned + m2.assigned) == everything,
        [m1, m2],
    )
    for m in (m1, m2):
        out(f"member {m.name} assigned {plist(m.assigned)}")
    await pause("balanced")
    want = await produce_spread(bootstrap, topic, partitions, "phase1", 200)
    await wait_for("every phase1 record consumed", lambda: len(ledger.got) >= len(want), [m1, m2])
    await asyncio.sleep(0.5)
    ledger.check("two members", want)
    for m in (m1, m2):
        out(f"member {m.name} consumed {m.consumed}")
    await m1.stop()
    await wait_for("aiokafka-m2 takes every partition", lambda: m2.assigned == everything, [m2])
    out(f"member aiokafka-m2 assigned {plist(m2.assigned)}")
    await pause("takeover")
    ledger.got.clear()
    want = await produce_spread(bootstrap, topic, partitions, "phase2", 100)
    await wait_for("every phase2 record consumed", lambda: len(ledger.got) >= len(want), [m2])
    await asyncio.sleep(0.5)
    ledger.check("survivor", want)
    await m2.stop()
    await pause("empty")
    ledger.got.clear()
    want = await produce_spread(bootstrap, topic, partitions, "phase3", 20)
    m3 = Member(bootstrap, topic, group_id, "aiokafka-m3", ledger)
    await m3.start()
    await wait_for("aiokafka-m3 reads the new records", lambda: len(ledger.got) >= len(want), [m3])
    await asyncio.sleep(1)
    ledger.check("resumed member", want)
    out(f"member aiokafka-m3 consumed {m3.consumed}")
    await m3.stop()


def kvs(args):
    return dict(x.split("=", 1) for x in args)


def resource(kind, name):
    return ConfigResource(ConfigResourceType.BROKER if kind == "broker" else ConfigResourceType.TOPIC, name)


def check_errors(responses):
    """Raises on any error code in an admin response (any nesting of lists and tuples)."""
    for resp in responses if isinstance(responses, list) else [responses]:
        for name in ("topic_errors", "resources", "results", "topics"):
            for item in getattr(resp, name, None) or []:
                if isinstance(item, tuple) and len(item) > 1 and isinstance(item[1], int) and item[1] != 0:
                    raise RuntimeError(f"{type(resp).__name__}: {item}")


async def admin(name, a):
    adm = AIOKafkaAdminClient(bootstrap_servers=a[0], request_timeout_ms=20000)
    await adm.start()
    try:
        if name == "admin-create-topic":
            resp = await adm.create_topics([NewTopic(a[1], int(a[2]), 1, topic_configs=kvs(a[3:]))])
            check_errors(resp)
            out(f"created {a[1]}")
        elif name == "admin-list-topics":
            for t in sorted(await adm.list_topics()):
                if not t.startswith("__"):
                    out(f"topic {t}")
        elif name == "admin-describe-topic":
            for t in await adm.describe_topics([a[1]]):
                if t["error_code"]:
                    raise RuntimeError(f"describe topic: error {t['error_code']}")
                out(f"topic {t['topic']} id - internal {t['is_internal']}")
                for p in sorted(t["partitions"], key=lambda p: p["partition"]):
                    out(
                        f"partition {p['partition']} leader {p['leader']} replicas "
                        f"{','.join(map(str, p['replicas']))} isr {','.join(map(str, p['isr']))}"
                    )
        elif name == "admin-create-partitions":
            resp = await adm.create_partitions({a[1]: NewPartitions(int(a[2]))})
            check_errors(resp)
            out(f"partitions {a[1]} {a[2]}")
        elif name == "admin-delete-topic":
            resp = await adm.delete_topics([a[1]])
            check_errors(resp)
            out(f"deleted {a[1]}")
        elif name == "admin-describe-configs":
            for resp in await adm.describe_configs([resource(a[1], a[2])]):
                for res in resp.resources:
                    if res[0]:
                        raise RuntimeError(f"describe configs: error {res[0]} {res[1]}")
                    for entry in res[4]:
                        out(f"config {entry[0]}={entry[1]} -")
        elif name == "admin-alter-configs":
            # aiokafka has only the legacy AlterConfigs (the whole set is replaced).
            configs = {k: v for k, v in kvs(a[3:]).items() if v}
            resps = await adm.alter_configs([ConfigResource(resource(a[1], a[2]).resource_type, a[2], configs=configs)])
            for resp in resps:
                for r in resp.resources:
                    if r[0]:
                        raise RuntimeError(f"alter configs: error {r[0]} {r[1]}")
            out("altered")
        elif name == "admin-list-offsets":
            topic, partitions, spec = a[1], int(a[2]), a[3]
            if spec == "max-timestamp":
                raise Unsupported("aiokafka has no max-timestamp ListOffsets")
            c = AIOKafkaConsumer(bootstrap_servers=a[0], group_id=None)
            await c.start()
            try:
                tps = [TopicPartition(topic, p) for p in range(partitions)]
                if spec == "earliest":
                    res = {tp: (o, -1) for tp, o in (await c.beginning_offsets(tps)).items()}
                elif spec == "latest":
                    res = {tp: (o, -1) for tp, o in (await c.end_offsets(tps)).items()}
                else:
                    found = await c.offsets_for_times({tp: int(spec) for tp in tps})
                    res = {tp: (o.offset, o.timestamp) if o else (-1, -1) for tp, o in found.items()}
                for tp in tps:
                    out(f"offset {tp.partition} {res[tp][0]} {res[tp][1]}")
            finally:
                await c.stop()
        elif name == "admin-delete-records":
            tp = TopicPartition(a[1], int(a[2]))
            res = await adm.delete_records({tp: RecordsToDelete(before_offset=int(a[3]))})
            out(f"low-watermark {a[2]} {res[tp]}")
        elif name == "admin-list-groups":
            for g in await adm.list_consumer_groups():
                out(f"group {g[0]} {g[1] or '-'} ?")
        elif name == "admin-describe-group":
            for resp in await adm.describe_consumer_groups([a[1]]):
                for g in resp.groups:
                    if g[0]:
                        raise RuntimeError(f"describe group: error {g[0]}")
                    out(f"group {g[1]} state {g[2]} type {g[3] or '-'} members {len(g[5])}")
        elif name == "admin-list-group-offsets":
            res = await adm.list_consumer_group_offsets(a[1])
            for tp, om in sorted(res.items()):
                out(f"committed {tp.topic} {tp.partition} {om.offset}")
        elif name == "admin-describe-cluster":
            c = await adm.describe_cluster()
            out(f"cluster {c['cluster_id']} controller {c['controller_id']}")
            for b in c["brokers"]:
                out(f"node {b['node_id']} {b['host']}:{b['port']}")
        else:
            raise Unsupported(f"{name}: aiokafka has no API for it")
    finally:
        await adm.close()


async def run(words):
    name, a = words[0], words[1:]
    if name == "produce":
        return await produce(a)
    if name == "consume":
        return await consume(a)
    if name == "group":
        return await group(a)
    return await admin(name, a)


async def main():
    level = logging.DEBUG if os.environ.get("RILL_CLIENT_LOG") == "debug" else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    out("@@ready")
    while True:
        line = await read_line()
        if line is None:
            break
        if not line:
            continue
        code = 0
        try:
            await asyncio.wait_for(run(line.split("\t")), 240)
        except Unsupported as e:
            out(f"error unsupported: {e}")
            code = 3
        except Exception as e:
            logging.exception("command %r failed", line)
            out(f"error {type(e).__name__}: {str(e).replace(chr(10), ' ')}")
            code = 1
        out(f"@@exit {code}")


if __name__ == "__main__":
    asyncio.run(main())
