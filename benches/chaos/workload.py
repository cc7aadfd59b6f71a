"""The chaos workload: idempotent acks=all producers writing unique, checkable values, and
consumers reading every partition continuously from the beginning.

A value is `<producer>.<instance>:<seq>:<partition>:` padded to the configured size:
`producer.instance` names one idempotent producer (a new instance, with a new producer
id, replaces one that hit a fatal error), `seq` counts that instance's records (in send
order, over all partitions) and `partition` is where it was sent. The harness never sends
a value twice: a record that failed is not retried by the harness, so every copy of a value
beyond the first in the log is a duplicate made below the application.
"""

import logging
import threading
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)



def client_logger(path):
    log = logging.getLogger(f"rdkafka:{path}")
    if not log.handlers:
        h = logging.FileHandler(path)
        h.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.DEBUG)  # librdkafka debug lines arrive at DEBUG
        log.propagate = False
    return log


COMMON = {
    "socket.connection.setup.timeout.ms": 3000,
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 2000,
    "metadata.max.age.ms": 6000,
}


class ProducerWorker(threading.Thread):
    """One idempotent acks=all producer at `rate` records/s, recording every delivery
    report: acks (partition, offset, value) and failures (value, error)."""

    def __init__(self, k, bootstrap, topic, partitions, rate, value_bytes, t0, stop, logger,
                 events, max_in_flight=5):
        super().__init__(name=f"producer-{k}", daemon=True)
        self.max_in_flight = max_in_flight
        self.k, self.bootstrap, self.topic = k, bootstrap, topic
        self.partitions, self.rate, self.value_bytes = partitions, rate, value_bytes
        self.t0, self.stop, self.logger, self.events = t0, stop, logger, events
        self.acks = []       # (partition, offset or None if not told, value bytes, t)
        self.failed = []     # (value bytes, error name, t)
        self.sent = 0
        self.fatal = []      # (instance, error, t)
        self.unresolved = 0  # neither acked nor failed when the producer was closed
        self.instance = 0
        self.refused = {}    # error name -> produce() calls the client refused locally
        self.sent_by_instance = {}  # instance name -> records sent (its seqs are 0..n-1)
        self.lock = threading.Lock()

    def now(self):
        return time.monotonic() - self.t0

    def on_delivery(self, err, msg):
        with self.lock:
            if err is None:
                self.acks.append((msg.partition(), msg.offset(), msg.value(), self.now()))
            else:
                self.failed.append((msg.value(), err.name(), self.now()))

    def make(self):
        fatal = threading.Event()

        def on_error(err):
            # librdkafka reports a fatal error as _FATAL (the cause is in its text).
            if err.fatal() or err.code() == KafkaError._FATAL:
                fatal.set()
                with self.lock:
                    self.fatal.append((f"p{self.k}.{self.instance}", err.str(), self.now()))
                self.events(f"producer p{self.k}.{self.instance} fatal error: {err.str()}")

        conf = dict(COMMON)
        conf.update({
            "bootstrap.servers": self.bootstrap,
            "client.id": f"chaos-p{self.k}.{self.instance}",
            "enable.idempotence": True,
            "acks": "all",
            "max.in.flight.requests.per.connection": self.max_in_flight,
            "linger.ms": 5,
            "message.timeout.ms": 30000,
            "request.timeout.ms": 5000,
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 1000,
            "queue.buffering.max.messages": 20000,
            "error_cb": on_error,
            "logger": self.logger,
            # The idempotent producer's state changes (producer id, epoch bumps and why)
            # go to clients.log: the evidence when a duplicate or a loss is found.
            "debug": "eos",
        })
        return Producer(conf), fatal

    def run(self):
        seq = 0
        interval = 1.0 / self.rate
        while not self.stop.is_set():
            p, fatal = self.make()
            name = f"p{self.k}.{self.instance}"
            next_at = time.monotonic()
            while not self.stop.is_set() and not fatal.is_set():
                now = time.monotonic()
                if now < next_at:
                    p.poll(min(next_at - now, 0.05))
                    continue
                part = seq % self.partitions
                head = f"{name}:{seq}:{part}:".encode()
                value = head + b"x" * max(0, self.value_bytes - len(head))
                try:
                    p.produce(self.topic, value, partition=part, on_delivery=self.on_delivery)
                except BufferError:
                    p.poll(0.1)
                    continue  # not enqueued: the same value is tried again
                except KafkaException as e:
                    # Not enqueued (e.g. the client was told the topic does not exist, by
                    # a broker that did not know it yet): counted, retried with the same
                    # value after a pause.
                    err = e.args[0]
                    if hasattr(err, "code") and err.code() == KafkaError._FATAL:
                        p.poll(0)  # serve the error callback, which records the cause
                        if not fatal.is_set():
                            with self.lock:
                                self.fatal.append((name, str(err), self.now()))
                            fatal.set()
                        break
                    key = err.name() if hasattr(err, "name") else str(e)
                    with self.lock:
                        if key not in self.refused:
                            self.events(f"producer {name} produce() refused: {e}")
                        self.refused[key] = self.refused.get(key, 0) + 1
                    p.poll(0.2)
                    continue
                seq += 1
                self.sent += 1
                self.sent_by_instance[name] = seq
                next_at += interval
                if next_at < time.monotonic() - 1.0:
                    next_at = time.monotonic()  # do not burst to make up for a stall
                p.poll(0)
            # Stop (or a fatal error): deliver what can still be delivered, bounded.
            left = p.flush(30.0 if self.stop.is_set() else 5.0)
            with self.lock:
                self.unresolved += left
            if fatal.is_set() and not self.stop.is_set():
                self.instance += 1
                seq = 0


class ConsumerWorker(threading.Thread):
    """Reads every partition from the beginning, continuously, recording the first value
    seen at each (partition, offset) and every later read of that offset that differs.
    With `rewind_s`, goes back to the beginning every so often to read it all again."""

    def __init__(self, k, bootstrap, topic, partitions, t0, stop, logger, events, rewind_s=0,
                 debug="topic,metadata"):
        super().__init__(name=f"consumer-{k}", daemon=True)
        self.debug = debug
        self.k, self.bootstrap, self.topic, self.partitions = k, bootstrap, topic, partitions
        self.t0, self.stop, self.logger, self.events = t0, stop, logger, events
        self.rewind_s = rewind_s
        self.seen = {}        # (partition, offset) -> (value, t)
        self.conflicts = []   # (partition, offset, first value, t first, other value, t)
        self.reads = 0
        self.rewinds = 0
        self.errors = {}      # error name -> count
        self.error_samples = []
        self.position = {}    # partition -> next offset
        self.lock = threading.Lock()

    def now(self):
        return time.monotonic() - self.t0

    def assign_all(self, c):
        c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                  for p in range(self.partitions)])

    def run(self):
        conf = dict(COMMON)
        conf.update({
            "bootstrap.servers": self.bootstrap,
            "client.id": f"chaos-c{self.k}",
            "group.id": f"chaos-reader-{self.k}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 500,
            "logger": self.logger,
            # Partition leaders and metadata changes go to clients.log (with --fetch-debug
            # every fetch too): the evidence when a consumer stops advancing.
            "debug": self.debug,
        })
        c = Consumer(conf)
        try:
            self.assign_all(c)
            last_rewind = time.monotonic()
            while not self.stop.is_set():
                if self.rewind_s and time.monotonic() - last_rewind > self.rewind_s:
                    self.assign_all(c)
                    self.rewinds += 1
                    last_rewind = time.monotonic()
                for m in c.consume(num_messages=500, timeout=0.5):
                    self.record(m)
        finally:
            c.close()

    def record(self, m):
        err = m.error()
        t = self.now()
        if err is not None:
            with self.lock:
                self.errors[err.name()] = self.errors.get(err.name(), 0) + 1
                if len(self.error_samples) < 50:
                    self.error_samples.append((t, m.partition(), err.str()))
            return
        key = (m.partition(), m.offset())
        v = m.value()
        with self.lock:
            self.reads += 1
            self.position[key[0]] = key[1] + 1
            first = self.seen.get(key)
            if first is None:
                self.seen[key] = (v, t)
            elif first[0] != v:
                self.conflicts.append((key[0], key[1], first[0], first[1], v, t))


def final_read(bootstrap, topic, partitions, logger, deadline_s=90.0):
    """A fresh consumer reads every partition from its start to its high watermark (asked
    of the leader at the start). Returns {partition: {"low", "high", "records": {offset:
    value}, "complete": bool, "error": str|None}}."""
    conf = dict(COMMON)
    conf.update({
        "bootstrap.servers": bootstrap,
        "client.id": "chaos-final",
        "group.id": "chaos-final-read",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "logger": logger,
    })
    c = Consumer(conf)
    out = {}
    end = time.monotonic() + deadline_s
    try:
        for p in range(partitions):
            low = high = None
            err = None
            while time.monotonic() < end:
                try:
                    low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5,
                                                        cached=False)
                    break
                except KafkaException as e:
                    err = str(e)
                    time.sleep(0.5)
            out[p] = {"low": low, "high": high, "records": {}, "complete": False,
                      "error": None if high is not None else f"no watermarks: {err}"}
        todo = {p for p in out if out[p]["high"] is not None and out[p]["high"] > out[p]["low"]}
        for p in out:
            if p not in todo and out[p]["high"] is not None:
                out[p]["complete"] = True
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(todo)])
        while todo and time.monotonic() < end:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    o = out[m.partition()] if m.partition() in out else None
                    if o is not None and o["error"] is None:
                        o["error"] = m.error().str()
                    continue
                o = out[m.partition()]
                o["records"][m.offset()] = m.value()
                if m.offset() >= o["high"] - 1:
                    o["complete"] = True
                    todo.discard(m.partition())
    finally:
        c.close()
    return out


class OffsetsWatcher(threading.Thread):
    """Twice a second, asks each partition's current leader for its latest offset (the high
    watermark): every reachable broker's Metadata is read, the newest leader epoch any of
    them knows names the leader, and that broker is asked ListOffsets with that epoch
    (KIP-320), so a deposed leader that has not heard of its deposition is never the one
    asked, and a broker not at that epoch answers an error, not an offset. Records (t
    asked, partition, latest, leader, epoch). Once an offset is acknowledged with acks=all
    the high watermark has passed it, so no later answer of the current leader may be
    lower: the checker holds the samples against the acks."""

    def __init__(self, brokers, topic, partitions, t0, stop, period_s=0.5):
        super().__init__(name="offsets-watcher", daemon=True)
        self.brokers, self.topic, self.partitions = brokers, topic, partitions
        self.t0, self.stop, self.period_s = t0, stop, period_s
        self.samples = []  # (t, partition, latest, leader id, leader epoch)
        self.errors = {}   # error code (or exception name) -> count

    def count(self, key):
        self.errors[key] = self.errors.get(key, 0) + 1

    def run(self):
        from kafkawire import list_offsets, metadata
        by_id = {b.id: b for b in self.brokers}
        while not self.stop.is_set():
            t = time.monotonic() - self.t0
            newest = {}  # partition -> (epoch, leader)
            for b in self.brokers:
                try:
                    m = metadata(b.addr, [self.topic], timeout=0.5)
                except Exception:
                    continue
                tp = m["topics"].get(self.topic)
                for p, x in (tp or {}).get("partitions", {}).items():
                    if x["leader"] >= 0 and (p not in newest or x["leader_epoch"] > newest[p][0]):
                        newest[p] = (x["leader_epoch"], x["leader"])
            by_leader = {}
            for p, (epoch, leader) in newest.items():
                by_leader.setdefault(leader, {})[p] = epoch
            for leader, parts in by_leader.items():
                b = by_id.get(leader)
                if b is None:
                    continue
                try:
                    answers = list_offsets(b.addr, self.topic, parts, timeout=1.0)
                except Exception as e:
                    self.count(type(e).__name__)
                    continue
                for p, (err, offset, epoch) in answers.items():
                    if err:
                        self.count(f"error {err}")
                    else:
                        self.samples.append((t, p, offset, leader, parts[p]))
            self.stop.wait(self.period_s)
