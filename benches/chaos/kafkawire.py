"""A minimal Kafka wire client for the chaos harness's own questions to one chosen broker.

librdkafka decides itself which broker answers a request and caches what it learns; the
harness needs to ask *this* broker what *it* believes (who is the controller, who leads a
partition, which replicas are in sync), with a hard timeout, whether or not the others are
reachable. Two requests are enough: Metadata v7 (brokers, controller, and per partition the
leader, its epoch, the replicas and the ISR) and DescribeCluster v0 (brokers and controller).
"""

import socket
import struct

FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
DESCRIBE_CLUSTER = 60


class WireError(Exception):
    pass


class Reader:
    def __init__(self, data: bytes):
        self.b = data
        self.i = 0

    def take(self, n):
        if self.i + n > len(self.b):
            raise WireError(f"short response: need {n} bytes at {self.i} of {len(self.b)}")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def array(self, item):
        n = self.i32()
        return [] if n < 0 else [item() for _ in range(n)]

    def uvarint(self):
        shift = v = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
            if shift > 35:
                raise WireError("varint too long")

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def compact_array(self, item):
        n = self.uvarint()
        return [] if n == 0 else [item() for _ in range(n - 1)]

    def tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def _string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _request(addr, api_key, version, body, flexible, timeout, correlation=1):
    header = struct.pack(">hhi", api_key, version, correlation) + _string("rill-chaos")
    if flexible:
        header += b"\x00"  # no tagged fields
    frame = header + body
    with socket.create_connection(addr, timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _recv(s, 4))[0]
        if size < 4 or size > 64 << 20:
            raise WireError(f"bad response size {size}")
        r = Reader(_recv(s, size))
    if r.i32() != correlation:
        raise WireError("correlation id mismatch")
    if flexible:
        r.tagged_fields()
    return r


def _recv(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise WireError("connection closed")
        out += chunk
    return out


def metadata(addr, topics=None, timeout=2.0):
    """Metadata v7 from the broker at addr=(host, port): a dict with brokers, controller,
    cluster_id and topics {name: {error, partitions: {p: {...}}}}."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(_string(t) for t in topics)
    body += b"\x00"  # allow_auto_topic_creation = false
    r = _request(addr, METADATA, 7, body, False, timeout)
    r.i32()  # throttle
    brokers = r.array(lambda: (r.i32(), r.string(), r.i32(), r.string()))
    cluster_id = r.string()
    controller = r.i32()

    def partition():
        err = r.i16()
        index = r.i32()
        leader = r.i32()
        epoch = r.i32()
        replicas = r.array(r.i32)
        isr = r.array(r.i32)
        offline = r.array(r.i32)
        return index, {"error": err, "leader": leader, "leader_epoch": epoch,
                       "replicas": replicas, "isr": isr, "offline": offline}

    def topic():
        err = r.i16()
        name = r.string()
        r.i8()  # is_internal
        parts = dict(r.array(partition))
        return name, {"error": err, "partitions": parts}

    topics_out = dict(r.array(topic))
    return {"brokers": sorted(b[0] for b in brokers), "controller": controller,
            "cluster_id": cluster_id, "topics": topics_out}


def describe_cluster(addr, timeout=2.0):
    """DescribeCluster v0 from the broker at addr: {error, controller, brokers, cluster_id}."""
    body = b"\x00" + b"\x00"  # include_cluster_authorized_operations = false; no tags
    r = _request(addr, DESCRIBE_CLUSTER, 0, body, True, timeout)
    r.i32()  # throttle
    err = r.i16()
    r.compact_string()  # error message
    cluster_id = r.compact_string()
    controller = r.i32()

    def broker():
        bid = r.i32()
        r.compact_string()
        r.i32()
        r.compact_string()
        r.tagged_fields()
        return bid

    brokers = r.compact_array(broker)
    return {"error": err, "controller": controller, "brokers": sorted(brokers),
            "cluster_id": cluster_id}


def list_offsets(addr, topic, partitions, timeout=2.0, timestamp=-1):
    """ListOffsets v4 (latest by default) from the broker at addr for `partitions`
    {partition: current_leader_epoch}: {partition: (error, offset, leader_epoch)}. With the
    current leader epoch (KIP-320) a broker that is not at that epoch answers FENCED or
    UNKNOWN_LEADER_EPOCH instead of an offset."""
    body = struct.pack(">ib", -1, 0)  # replica_id (a client), read_uncommitted
    body += struct.pack(">i", 1) + _string(topic) + struct.pack(">i", len(partitions))
    for p, epoch in sorted(partitions.items()):
        body += struct.pack(">iiq", p, epoch, timestamp)
    r = _request(addr, LIST_OFFSETS, 4, body, False, timeout)
    r.i32()  # throttle
    out = {}

    def partition():
        index = r.i32()
        err = r.i16()
        r.take(8)  # timestamp
        offset = struct.unpack(">q", r.take(8))[0]
        epoch = r.i32()
        out[index] = (err, offset, epoch)

    def topic_():
        r.string()
        r.array(partition)

    r.array(topic_)
    return out


def replica_fetch(addr, topic, partition, replica_id, fetch_offset, last_fetched_epoch,
                  current_leader_epoch=-1, timeout=3.0, max_wait_ms=0):
    """Fetch v12 as follower `replica_id` would send it (fetch offset and the epoch of the
    last batch it holds, KIP-595's LastFetchedEpoch): what the leader answers, for a person
    finding why a follower does not catch up. Returns {error, high_watermark,
    log_start_offset, diverging_epoch: (epoch, end_offset) or None, records_bytes}."""
    def cstr(s):
        b = s.encode()
        return _uvarint(len(b) + 1) + b

    part = struct.pack(">iiqiqi", partition, current_leader_epoch, fetch_offset,
                       last_fetched_epoch, -1, 1 << 20) + b"\x00"
    body = struct.pack(">iiiibii", replica_id, max_wait_ms, 0, 1 << 20, 0, 0, -1)
    body += _uvarint(2) + cstr(topic) + _uvarint(2) + part + b"\x00"
    body += _uvarint(1)  # forgotten topics: none
    body += cstr("")     # rack
    body += b"\x00"
    r = _request(addr, FETCH, 12, body, True, timeout)
    r.i32()  # throttle
    top_err = r.i16()
    r.i32()  # session id
    out = {"top_error": top_err}

    def partition_():
        d = {"partition": r.i32(), "error": r.i16(), "high_watermark": r.i64(),
             "last_stable_offset": r.i64(), "log_start_offset": r.i64(),
             "diverging_epoch": None}
        r.compact_array(lambda: (r.i64(), r.i64(), r.tagged_fields()))  # aborted txns
        d["preferred_read_replica"] = r.i32()
        n = r.uvarint()
        d["records_bytes"] = max(0, n - 1)
        if n > 1:
            r.take(n - 1)
        for _ in range(r.uvarint()):
            tag, size = r.uvarint(), r.uvarint()
            if tag == 0:
                sub = Reader(r.take(size))
                d["diverging_epoch"] = (sub.i32(), sub.i64())
            else:
                r.take(size)
        out.setdefault("partitions", []).append(d)

    def topic_():
        r.compact_string()
        r.compact_array(partition_)
        r.tagged_fields()

    r.compact_array(topic_)
    return out


def _uvarint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
