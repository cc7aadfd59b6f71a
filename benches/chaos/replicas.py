"""(e) replicas agree: after the final heal, once every replica is in sync and the writes have
stopped, the brokers are stopped cleanly and each partition's copies are compared batch by
batch from their segment files (RecordBatch v2, the same bytes Kafka writes): every replica
must hold the same batches (base offset, last offset, CRC) at the same offsets.

Consumers read only from leaders, so without this a follower holding a different suffix
would go unseen until it led.
"""

import os
import struct


def batches(partition_dir):
    """[(base_offset, last_offset, leader_epoch, crc)] of the segment files, in order."""
    out = []
    if not os.path.isdir(partition_dir):
        return None
    for _seg, _data, _i, base, last, epoch, crc in _batches(partition_dir):
        out.append((base, last, epoch, crc))
    return out


def _batches(partition_dir):
    """Yields (segment, its bytes, position, base, last, leader_epoch, crc) for every whole
    batch of a partition's segment files, in order; a segment ends at zero padding of its
    last page or at a torn tail."""
    for seg in sorted(f for f in os.listdir(partition_dir) if f.endswith(".log")):
        with open(os.path.join(partition_dir, seg), "rb") as fh:
            data = fh.read()
        i = 0
        while i + 61 <= len(data):
            base, length, epoch, magic, crc, _attrs, last_delta = struct.unpack_from(
                ">qiibIhi", data, i)
            if length <= 0 or magic != 2 or i + 12 + length > len(data):
                break
            yield seg, data, i, base, base + last_delta, epoch, crc
            i += 12 + length


def headers(partition_dir):
    """Every batch header of a partition's segment files, for a person reading evidence:
    [(segment, position, base, last, leader_epoch, crc, producer_id, producer_epoch,
    base_sequence, records)]."""
    out = []
    for seg, data, i, base, last, epoch, crc in _batches(partition_dir):
        pid, pepoch, seq, count = struct.unpack_from(">qhii", data, i + 43)
        out.append((seg, i, base, last, epoch, crc, pid, pepoch, seq, count))
    return out


def compare(data_dirs, topic, placement, violations):
    """data_dirs: {broker id: dir}; placement: {partition: [replica ids]}. Adds
    e_replicas_differ violations; returns the number of partitions compared."""
    compared = 0
    for p, replicas in sorted(placement.items()):
        copies = {}
        for r in replicas:
            copies[r] = batches(os.path.join(data_dirs[r], f"{topic}-{p}"))
        missing = [r for r, c in copies.items() if c is None]
        if missing:
            violations.add("e_replica_missing", partition=p, brokers=missing)
            continue
        compared += 1
        ref_id = replicas[0]
        ref = copies[ref_id]
        for r in replicas[1:]:
            c = copies[r]
            if [b[:2] + b[3:] for b in c] == [b[:2] + b[3:] for b in ref]:
                if [b[2] for b in c] != [b[2] for b in ref]:
                    violations.add("e_replica_epochs_differ", partition=p, brokers=[ref_id, r])
                continue
            k = next((k for k, (x, y) in enumerate(zip(ref, c)) if x != y), min(len(ref), len(c)))
            violations.add(
                "e_replicas_differ", partition=p, brokers=[ref_id, r],
                batches=[len(ref), len(c)],
                ends=[ref[-1][1] + 1 if ref else 0, c[-1][1] + 1 if c else 0],
                first_difference_at_batch=k,
                batch_a=ref[k] if k < len(ref) else None,
                batch_b=c[k] if k < len(c) else None,
                note="(base offset, last offset, leader epoch, crc)")
    return compared


if __name__ == "__main__":
    # python3 benches/chaos/replicas.py RUN_DIR/broker-1/chaos-3 [FROM_OFFSET [TO_OFFSET]]
    import sys
    lo = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    hi = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 62
    print("segment position base last leader_epoch crc producer_id producer_epoch "
          "base_sequence records")
    for h in headers(sys.argv[1]):
        if h[3] >= lo and h[2] <= hi:
            print(*h)
