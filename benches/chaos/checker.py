"""The chaos checker: what the producers were told, what the consumers saw during the run and
what a fresh consumer reads after the final heal, held against Kafka's promises.

(a) no acknowledged record lost: every ack is found at exactly its acknowledged offset, with
    its value, in the final read;
(b) no two reads of one offset returned different records: over every consumer, every
    rewind and the final read; and no record a consumer was given vanished (its offset no
    longer in the log);
(c) no duplicates: each value the harness sent is in the log at most once, and nothing is
    in the log that the harness did not send;
(d) offsets contiguous: from the log start to the high watermark every offset holds a
    record (no transactions, no compaction: no holes are expected), every record sits in
    the partition it was sent to, and one producer's records to one partition are in the
    order it sent them (offsets, and acked offsets, rise with its sequence);
(f) the latest offset, asked during the run of each partition's current leader (the
    newest leader epoch any broker knows, named in the request as KIP-320 has it), never
    below an offset acknowledged before the question was asked: an ack means the high
    watermark passed the record, and Kafka's leaders answer OFFSET_NOT_AVAILABLE rather
    than a high watermark they do not know yet (KIP-207).
(e), replicas agreeing byte for byte, is in replicas.py (it reads the brokers' files).

Pure functions over plain data, so the same checks run on a live run, on a saved run
directory (`chaos.py --check-only DIR`) and on the corrupted copies of the self-test.
"""

import bisect
from collections import defaultdict


DETAILS_MAX = 25


def parse_value(v: bytes):
    """(producer_instance, seq, partition) of a value the harness wrote, or None."""
    try:
        head = v.split(b":", 3)
        return head[0].decode(), int(head[1]), int(head[2])
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def show(v):
    if v is None:
        return None
    head = v[:48] if isinstance(v, (bytes, bytearray)) else v
    return head.decode(errors="replace").rstrip("x") if isinstance(head, bytes) else head


class Violations:
    def __init__(self):
        self.count = defaultdict(int)
        self.details = defaultdict(list)

    def add(self, kind, **detail):
        self.count[kind] += 1
        if len(self.details[kind]) < DETAILS_MAX:
            self.details[kind].append(detail)

    def total(self):
        return sum(self.count.values())

    def summary(self):
        return [{"kind": k, "count": self.count[k], "examples": self.details[k]}
                for k in sorted(self.count)]


def check(acks, consumers, final, instances, latest=None, ack_times=None):
    """acks: [(partition, offset, value)]; consumers: [{"name", "seen": {(p, o): value},
    "conflicts": [(p, o, v1, t1, v2, t2)]}]; final: {p: {"low", "high", "records": {o: v},
    "complete", "error"}}; instances: {producer instance name: records sent}.
    Returns (violations, figures)."""
    v = Violations()
    figures = {}

    # The final read must be whole, or the checks below would pass on missing data.
    for p, f in sorted(final.items()):
        if not f["complete"] or f["high"] is None:
            v.add("final_read_incomplete", partition=p, low=f["low"], high=f["high"],
                  read=len(f["records"]), error=f["error"])
    figures["final_records"] = sum(len(f["records"]) for f in final.values())

    # (a) every ack at its offset with its value.
    seen_ack = {}
    values_in = {p: set(f["records"].values()) for p, f in final.items()}
    no_offset = 0
    for p, o, val in acks:
        f = final.get(p)
        if o is None:
            # Acknowledged without an offset (librdkafka reports a batch the broker calls a
            # DUPLICATE_SEQUENCE_NUMBER as delivered, offset unknown): it must still be in
            # the partition. (c) checks it is there only once.
            no_offset += 1
            if val not in values_in.get(p, ()):
                v.add("a_acked_record_lost", partition=p, offset=None, acked=show(val),
                      found=None, reason="acknowledged without an offset; not in the "
                      "final read of its partition")
            continue
        got = None if f is None else f["records"].get(o)
        if got != val:
            reason = ("offset below the log start" if f and f["low"] is not None and o < f["low"]
                      else "offset at or above the high watermark"
                      if f and f["high"] is not None and o >= f["high"]
                      else "offset missing from the final read" if got is None
                      else "another record at the acknowledged offset")
            v.add("a_acked_record_lost", partition=p, offset=o, acked=show(val),
                  found=show(got), reason=reason,
                  low=f and f["low"], high=f and f["high"])
        other = seen_ack.get((p, o))
        if other is not None and other != val:
            v.add("a_two_acks_one_offset", partition=p, offset=o, first=show(other),
                  second=show(val))
        seen_ack[(p, o)] = val
    figures["acked"] = len(acks)
    figures["acked_without_offset"] = no_offset

    # (b) one record per offset, over every read.
    for c in consumers:
        for p, o, v1, t1, v2, t2 in c["conflicts"]:
            v.add("b_offset_read_two_ways", partition=p, offset=o, reader=c["name"],
                  first=show(v1), first_t=round(t1, 3), then=show(v2), then_t=round(t2, 3))
    union = {}
    for c in consumers:
        for (p, o), val in c["seen"].items():
            prev = union.get((p, o))
            if prev is not None and prev[0] != val:
                v.add("b_offset_read_two_ways", partition=p, offset=o, reader=c["name"],
                      first=show(prev[0]), first_reader=prev[1], then=show(val))
            elif prev is None:
                union[(p, o)] = (val, c["name"])
            f = final.get(p)
            if f is None:
                continue
            got = f["records"].get(o)
            if got is None:
                if f["complete"]:
                    v.add("b_read_record_vanished", partition=p, offset=o, reader=c["name"],
                          read=show(val), low=f["low"], high=f["high"])
            elif got != val:
                v.add("b_offset_read_two_ways", partition=p, offset=o, reader=c["name"],
                      first=show(val), then=show(got), then_reader="final read")
    figures["consumer_reads_distinct"] = len(union)

    # (c) every value at most once, and only values the harness sent.
    where = defaultdict(set)
    for p, f in final.items():
        for o, val in f["records"].items():
            where[val].add((p, o))
    for (p, o), (val, _) in union.items():
        where[val].add((p, o))
    for val, places in where.items():
        parsed = parse_value(val)
        if parsed is None or parsed[0] not in instances or parsed[1] >= instances[parsed[0]]:
            for p, o in sorted(places):
                v.add("c_record_never_sent", partition=p, offset=o, value=show(val))
        if len(places) > 1:
            v.add("c_duplicate", value=show(val), places=sorted(places))

    # (d) no holes, right partition, producer order kept.
    for p, f in sorted(final.items()):
        if f["low"] is None or f["high"] is None or not f["complete"]:
            continue
        holes = [o for o in range(f["low"], f["high"]) if o not in f["records"]]
        if holes:
            v.add("d_offset_hole", partition=p, first_missing=holes[:10], missing=len(holes),
                  low=f["low"], high=f["high"])
        last = {}  # instance -> (seq, offset)
        for o in sorted(f["records"]):
            parsed = parse_value(f["records"][o])
            if parsed is None:
                continue
            inst, seq, sent_to = parsed
            if sent_to != p:
                v.add("d_wrong_partition", partition=p, offset=o, value=show(f["records"][o]))
            prev = last.get(inst)
            if prev is not None and seq <= prev[0]:
                v.add("d_producer_order", partition=p, instance=inst, offset=o, seq=seq,
                      earlier_offset=prev[1], earlier_seq=prev[0])
            last[inst] = (seq, o)
    by_instance = defaultdict(list)
    for p, o, val in acks:
        parsed = parse_value(val)
        if parsed is not None and o is not None:
            by_instance[(parsed[0], p)].append((parsed[1], o))
    for (inst, p), lst in sorted(by_instance.items()):
        lst.sort()
        for (s1, o1), (s2, o2) in zip(lst, lst[1:]):
            if o2 <= o1:
                v.add("d_acked_order", partition=p, instance=inst, seq=s1, offset=o1,
                      later_seq=s2, later_offset=o2)
    # (f) the latest offset never below an earlier ack.
    if latest is not None and ack_times is not None:
        by_p = defaultdict(list)
        for (p, o, _val), t in zip(acks, ack_times):
            if o is not None:
                by_p[p].append((t, o + 1))
        prefix = {}  # partition -> (ack times, running max of acked end, its ack time)
        for p, lst in by_p.items():
            lst.sort()
            times, best, best_t, m, mt = [], [], [], 0, None
            for t, end in lst:
                if end > m:
                    m, mt = end, t
                times.append(t)
                best.append(m)
                best_t.append(mt)
            prefix[p] = (times, best, best_t)
        figures["latest_offset_samples"] = len(latest)
        for t, p, high, *who in sorted(latest):
            if p not in prefix:
                continue
            times, best, best_t = prefix[p]
            k = bisect.bisect_left(times, t) - 1  # the last ack strictly before t
            if k >= 0 and high < best[k]:
                v.add("f_latest_offset_below_ack", partition=p, asked_t=round(t, 3),
                      latest=high, acked_end=best[k], acked_t=round(best_t[k], 3),
                      leader_and_epoch_asked=who)
    return v, figures
