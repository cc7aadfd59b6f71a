"""The transactional workload of the chaos harness (issue 17): consume-transform-produce with
exactly-once, and its checker.

A `TxnWorker` is a read_committed consumer in group `chaos-eos` reading the input topic (what
the idempotent producers write) and a transactional producer: each batch it polls becomes one
transaction that writes one output record per input record to `chaos-out` (same partition,
value `<in partition>:<in offset>:` followed by the input value) and sends the consumer's
positions to the transaction. On an error that asks for it the transaction is aborted and the
consumer goes back to the group's committed offsets; on a fatal one (fenced, or a state the
client cannot leave) producer and consumer are made anew. After the faults and the input stop,
the worker runs on until it has consumed the whole input (bounded), then stops.

The checker (`check`) reads the output at read_committed and the group's committed offsets:
every input record below the committed offset of its partition is reflected by exactly one
output record, and nothing else is there: no duplicate (an input reflected twice), no lost
output (an input below the committed offset without its output), no output for an input past
the committed offset (output committed without its offsets), no output naming an input that
is not in the input topic or holds another value.
"""

import threading
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)

from workload import COMMON

OUT_TOPIC = "chaos-out"
GROUP = "chaos-eos"
# Input records one transaction carries at most.
BATCH_MAX = 200
# Bound of one client call that waits for the cluster (init, commit, abort, offsets).
CALL_TIMEOUT_S = 20


def output_value(partition, offset, value):
    return f"{partition}:{offset}:".encode() + value


def parse_output(v):
    """(input partition, input offset, input value) of an output value; None if malformed."""
    try:
        p, o, rest = v.split(b":", 2)
        return int(p), int(o), rest
    except ValueError:
        return None


class TxnWorker(threading.Thread):
    def __init__(self, k, bootstrap, topic, partitions, t0, stop, logger, events):
        super().__init__(name=f"txn-{k}", daemon=True)
        self.k, self.bootstrap, self.topic, self.partitions = k, bootstrap, topic, partitions
        self.t0, self.stop, self.logger, self.events = t0, stop, logger, events
        self.committed_txns = 0
        self.aborted_txns = 0
        self.instances = 0
        self.errors = {}       # "<call>: <error name>" -> count
        self.samples = []      # (t, call, error text), at most 50
        self.position = {}     # partition -> next offset, as of the last commit
        self.drain_to = None   # {partition: high watermark}: stop once the positions reach it
        self.drained = threading.Event()
        self.lock = threading.Lock()

    def now(self):
        return time.monotonic() - self.t0

    def count(self, call, err):
        name = err.name() if hasattr(err, "name") else type(err).__name__
        key = f"{call}: {name}"
        with self.lock:
            self.errors[key] = self.errors.get(key, 0) + 1
            if len(self.samples) < 50:
                self.samples.append((round(self.now(), 2), call, str(err)))

    def make(self):
        conf = dict(COMMON)
        conf.update({
            "bootstrap.servers": self.bootstrap,
            "client.id": f"chaos-eos-c{self.k}.{self.instances}",
            "group.id": GROUP,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "logger": self.logger,
        })
        c = Consumer(conf)
        c.subscribe([self.topic])
        conf = dict(COMMON)
        conf.update({
            "bootstrap.servers": self.bootstrap,
            "client.id": f"chaos-eos-p{self.k}.{self.instances}",
            "transactional.id": f"chaos-eos-{self.k}",
            "transaction.timeout.ms": 10000,
            "message.timeout.ms": 10000,
            "request.timeout.ms": 5000,
            "linger.ms": 5,
            "logger": self.logger,
            "debug": "eos",
        })
        p = Producer(conf)
        return c, p

    def rewind(self, c):
        """The consumer back to the group's committed offsets (where the aborted
        transaction's input starts again)."""
        assignment = c.assignment()
        if not assignment:
            return
        for attempt in range(10):
            try:
                committed = c.committed(assignment, timeout=CALL_TIMEOUT_S)
                break
            except KafkaException as e:
                err = e.args[0]
                if err.fatal() or not err.retriable() and err.code() != KafkaError.NOT_COORDINATOR:
                    raise
                self.count("committed (retried)", err)
                if attempt == 9:
                    raise
                time.sleep(0.5)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            c.seek(tp)

    def run(self):
        while not self.stop.is_set():
            c, p = self.make()
            try:
                self.loop(c, p)
                return  # stopped, or drained
            except KafkaException as e:
                err = e.args[0]
                self.count("start over", err)
                self.events(f"txn worker {self.k}.{self.instances}: starts over with new "
                            f"clients after {err}")
            finally:
                self.close(c, p)
            self.instances += 1
            if not self.stop.is_set():
                time.sleep(0.5)

    def close(self, c, p):
        try:
            p.abort_transaction(5)
        except Exception:
            pass
        try:
            c.close()
        except Exception:
            pass

    def loop(self, c, p):
        """Transactions until stopped; raises KafkaException on a fatal error."""
        while True:
            try:
                p.init_transactions(CALL_TIMEOUT_S)
                break
            except KafkaException as e:
                err = e.args[0]
                self.count("init_transactions", err)
                if err.fatal() or self.stop.is_set():
                    raise
                time.sleep(0.5)
        while not self.stop.is_set():
            if self.drain_to is not None and all(
                    self.position.get(q, 0) >= h for q, h in self.drain_to.items()):
                self.drained.set()
                return
            msgs = [m for m in c.consume(num_messages=BATCH_MAX, timeout=0.5)
                    if m.error() is None]
            if not msgs:
                continue
            try:
                p.begin_transaction()
                for m in msgs:
                    p.produce(OUT_TOPIC, output_value(m.partition(), m.offset(), m.value()),
                              partition=m.partition())
                positions = [tp for tp in c.position(c.assignment()) if tp.offset >= 0]
                p.send_offsets_to_transaction(positions, c.consumer_group_metadata(),
                                              CALL_TIMEOUT_S)
                self.commit(p)
                self.committed_txns += 1
                for tp in positions:
                    self.position[tp.partition] = tp.offset
            except KafkaException as e:
                err = e.args[0]
                if err.fatal():
                    raise
                self.count("transaction", err)
                # Abortable, or a state the call left unknown (a timeout): abort and consume
                # again from the committed offsets.
                self.abort(p)
                self.aborted_txns += 1
                self.rewind(c)

    def commit(self, p):
        """commit_transaction, called again while the error says it may be retried."""
        for _ in range(10):
            try:
                p.commit_transaction(CALL_TIMEOUT_S)
                return
            except KafkaException as e:
                err = e.args[0]
                if err.retriable() and not err.fatal() and not err.txn_requires_abort():
                    self.count("commit (retried)", err)
                    continue
                raise
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit retried 10 times"))

    def abort(self, p):
        for _ in range(10):
            try:
                p.abort_transaction(CALL_TIMEOUT_S)
                return
            except KafkaException as e:
                err = e.args[0]
                if err.fatal():
                    raise
                if err.code() == KafkaError._STATE:
                    return  # no transaction to abort (it failed before it began)
                self.count("abort (retried)", err)
                if not err.retriable():
                    raise
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "abort retried 10 times"))


def read_committed_all(bootstrap, topic, partitions, logger, deadline_s=60.0):
    """Every record of every partition at read_committed, from the start to the end each
    partition reports (the last stable offset): {partition: {offset: value}}, and the
    partitions not read to their end in time."""
    conf = dict(COMMON)
    conf.update({
        "bootstrap.servers": bootstrap,
        "client.id": "chaos-eos-final",
        "group.id": "chaos-eos-final-read",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "logger": logger,
    })
    c = Consumer(conf)
    out = {p: {} for p in range(partitions)}
    todo = set(range(partitions))
    end = time.monotonic() + deadline_s
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        while todo and time.monotonic() < end:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(m.partition())
                    continue
                out[m.partition()][m.offset()] = m.value()
    finally:
        c.close()
    return out, sorted(todo)


def group_committed(bootstrap, topic, partitions, logger):
    """The group's committed offsets of the input topic: {partition: offset} (absent: none)."""
    conf = dict(COMMON)
    conf.update({"bootstrap.servers": bootstrap, "group.id": GROUP, "logger": logger,
                 "enable.auto.commit": False})
    c = Consumer(conf)
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)],
                          timeout=CALL_TIMEOUT_S)
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}
    finally:
        c.close()


def check(final_in, out, committed, violations):
    """final_in: {partition: {offset: value}} of the input; out: {partition: {offset: value}}
    of the output at read_committed; committed: {partition: offset}. Adds violations
    (kinds `t_*`) and returns figures."""
    reflected = {}  # (in partition, in offset) -> [(out partition, out offset)]
    for op, recs in sorted(out.items()):
        for oo, v in sorted(recs.items()):
            parsed = parse_output(v)
            if parsed is None:
                violations.add("t_output_malformed", out=[op, oo], value=v[:60].decode(
                    errors="replace"))
                continue
            ip, io, value = parsed
            reflected.setdefault((ip, io), []).append((op, oo))
            src = final_in.get(ip, {}).get(io)
            if src is None:
                violations.add("t_output_without_input", out=[op, oo], input=[ip, io])
            elif src != value:
                violations.add("t_output_of_another_value", out=[op, oo], input=[ip, io],
                               input_value=src[:40].decode(errors="replace"),
                               output_value=value[:40].decode(errors="replace"))
            if io >= committed.get(ip, 0):
                violations.add("t_output_past_committed_offset", out=[op, oo], input=[ip, io],
                               committed=committed.get(ip))
    for key, places in sorted(reflected.items()):
        if len(places) > 1:
            violations.add("t_duplicate_output", input=list(key), outputs=places)
    lost = 0
    for ip, recs in sorted(final_in.items()):
        upto = committed.get(ip, 0)
        for io in sorted(recs):
            if io < upto and (ip, io) not in reflected:
                lost += 1
                violations.add("t_lost_output", input=[ip, io], committed=upto)
    return {
        "txn_input_records": sum(len(r) for r in final_in.values()),
        "txn_output_records": sum(len(r) for r in out.values()),
        "txn_inputs_reflected": len(reflected),
        "txn_committed_offsets": dict(sorted(committed.items())),
    }


def self_test(violations_cls):
    """The checker on a synthetic clean run and on one corruption of each kind: returns the
    kinds tried and the failures (a corruption not flagged, or a clean run flagged)."""
    import copy
    final_in = {p: {o: f"p0.0:{o}:{p}:".encode() for o in range(20)} for p in range(2)}
    out = {p: {100 + o: output_value(p, o, v) for o, v in recs.items() if o < 15}
           for p, recs in final_in.items()}
    committed = {0: 15, 1: 15}
    failures, tried = [], []
    v = violations_cls()
    check(final_in, out, committed, v)
    if v.total():
        failures.append(f"clean run flagged: {v.summary()}")

    def corrupt(kind, f):
        o2 = copy.deepcopy(out)
        c2 = dict(committed)
        f(o2, c2)
        v = violations_cls()
        check(final_in, o2, c2, v)
        tried.append(kind)
        if not v.count.get(kind):
            failures.append(f"{kind} not flagged: {v.summary()}")

    corrupt("t_duplicate_output", lambda o, c: o[0].__setitem__(500, o[0][100]))
    corrupt("t_lost_output", lambda o, c: o[1].pop(103))
    corrupt("t_output_past_committed_offset", lambda o, c: c.__setitem__(0, 10))
    corrupt("t_output_without_input", lambda o, c: o[0].__setitem__(501, output_value(
        0, 77, b"p0.0:77:0:")))
    corrupt("t_output_of_another_value", lambda o, c: o[1].__setitem__(104, output_value(
        1, 4, b"other")))
    corrupt("t_output_malformed", lambda o, c: o[1].__setitem__(502, b"garbage"))
    return tried, failures
