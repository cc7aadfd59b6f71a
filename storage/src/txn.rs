//! Transactions in the log, in Kafka's formats (issue 17, increment 1 of
//! `broker/docs/transactions.md`): the end-transaction marker (a control batch of one
//! record) that ends a transaction in every partition it wrote to, and the entries of the
//! aborted-transaction index (`<base>.txnindex`) kept beside a segment, which read_committed
//! fetches return so clients drop aborted records.
//!
//! Pure encoding and decoding: nothing here writes a file or knows a request. The layouts
//! are checked against bytes written by Kafka 4.4's own `MemoryRecords` and
//! `TransactionIndex` (the tests' golden bytes).

use crate::batch::{read_varint, set_crc, BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
use crate::error::{StorageError, StorageResult};

/// Batch attributes of a marker: transactional (0x10) and control (0x20).
const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;
/// Version of the control record key and of the marker value Kafka writes and reads.
const CONTROL_RECORD_VERSION: i16 = 0;
/// Bytes of one aborted-transaction index entry: version (2), producer id, first offset,
/// last offset, last stable offset (8 each).
pub const TXN_INDEX_ENTRY_BYTES: usize = 34;
/// Version of an index entry.
const TXN_INDEX_VERSION: i16 = 0;

/// How a transaction ended (the control record key's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Abort,
    Commit,
}

impl ControlKind {
    fn code(self) -> i16 {
        match self {
            ControlKind::Abort => 0,
            ControlKind::Commit => 1,
        }
    }
}

/// An end-transaction marker: commit or abort, and the epoch of the transaction
/// coordinator that wrote it (a marker of an older coordinator is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub kind: ControlKind,
    pub coordinator_epoch: i32,
}

/// The marker batch for producer `producer_id` at `producer_epoch`, at base offset 0 and
/// partition leader epoch -1 (the log sets both when it appends, as for any batch).
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp_ms: i64,
) -> Vec<u8> {
    // The one record: length, attributes, timestamp delta 0, offset delta 0, key (version,
    // type), value (version, coordinator epoch), no headers. Every varint here is one byte.
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_RECORD_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.kind.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&CONTROL_RECORD_VERSION.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut record = vec![0u8, 0, 0, zigzag1(key.len())];
    record.extend_from_slice(&key);
    record.push(zigzag1(value.len()));
    record.extend_from_slice(&value);
    record.push(0); // headers
    let mut out = Vec::with_capacity(HEADER_BYTES + 1 + record.len());
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES + 1 + record.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    out.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence: markers have none
    out.extend_from_slice(&1i32.to_be_bytes()); // records
    out.push(zigzag1(record.len()));
    out.extend_from_slice(&record);
    set_crc(&mut out);
    out
}

/// A small length as its one-byte zig-zag varint.
fn zigzag1(n: usize) -> u8 {
    debug_assert!(n < 64, "a marker's lengths fit one varint byte");
    (n as u8) << 1
}

/// The marker a control batch holds: `None` for a batch that is not a control batch, an
/// empty one (the cleaner may leave the header of a producer's last marker), or one whose
/// record is not an end-transaction marker Kafka defines (a newer control type is skipped,
/// as Kafka's consumers skip it).
pub fn parse_marker(batch: &[u8]) -> Option<EndTxnMarker> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() || h.record_count < 1 || batch.len() < h.total_bytes() {
        return None;
    }
    let mut pos = HEADER_BYTES;
    let len = usize::try_from(read_varint(batch, &mut pos)?).ok()?;
    let end = pos.checked_add(len)?;
    if end > h.total_bytes() {
        return None;
    }
    pos += 1; // attributes
    read_varint(batch, &mut pos)?; // timestamp delta
    read_varint(batch, &mut pos)?; // offset delta
    let key = take(batch, &mut pos, end)?;
    let value = take(batch, &mut pos, end)?;
    if key.len() < 4 || i16::from_be_bytes([key[0], key[1]]) != CONTROL_RECORD_VERSION {
        return None;
    }
    let kind = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlKind::Abort,
        1 => ControlKind::Commit,
        _ => return None,
    };
    // Kafka reads the value's version 0 fields and ignores any it does not know after them.
    if value.len() < 6 {
        return None;
    }
    Some(EndTxnMarker {
        kind,
        coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
    })
}

/// A length-prefixed field of a record (key or value) ending before `end`.
fn take<'a>(batch: &'a [u8], pos: &mut usize, end: usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_varint(batch, pos)?).ok()?;
    let stop = pos.checked_add(len)?;
    if stop > end {
        return None;
    }
    let field = &batch[*pos..stop];
    *pos = stop;
    Some(field)
}

/// One aborted transaction of a partition, as its segment's index holds it: the producer,
/// the transaction's first offset, its abort marker's offset (`last_offset`), and the last
/// stable offset when the marker was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

/// Index entries as the file's bytes, in order.
pub fn encode_index(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TXN_INDEX_ENTRY_BYTES);
    for e in entries {
        out.extend_from_slice(&TXN_INDEX_VERSION.to_be_bytes());
        out.extend_from_slice(&e.producer_id.to_be_bytes());
        out.extend_from_slice(&e.first_offset.to_be_bytes());
        out.extend_from_slice(&e.last_offset.to_be_bytes());
        out.extend_from_slice(&e.last_stable_offset.to_be_bytes());
    }
    out
}

/// The entries of an index file of the segment starting at `base_offset`. A torn last
/// entry (a crash while it was written) is left out, as Kafka's reader leaves it; an entry
/// of an unknown version, one whose marker lies below the segment, or markers out of order
/// make the file corrupt (the caller rebuilds it from the segment).
pub fn decode_index(bytes: &[u8], base_offset: i64) -> StorageResult<Vec<AbortedTxn>> {
    let corrupt = |reason| Err(StorageError::CorruptBatch { reason });
    let mut out: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / TXN_INDEX_ENTRY_BYTES);
    for e in bytes.chunks_exact(TXN_INDEX_ENTRY_BYTES) {
        let at = |i: usize| i64::from_be_bytes(e[i..i + 8].try_into().expect("8 bytes"));
        if i16::from_be_bytes([e[0], e[1]]) != TXN_INDEX_VERSION {
            return corrupt("aborted-transaction index entry of an unknown version");
        }
        let txn = AbortedTxn {
            producer_id: at(2),
            first_offset: at(10),
            last_offset: at(18),
            last_stable_offset: at(26),
        };
        if txn.last_offset < base_offset {
            return corrupt("aborted-transaction index entry below its segment");
        }
        if out.last().is_some_and(|p| p.last_offset >= txn.last_offset) {
            return corrupt("aborted-transaction index entries out of order");
        }
        out.push(txn);
    }
    Ok(out)
}

/// What a read_committed fetch from `fetch_offset` up to `upper_bound` (the last stable
/// offset, or the end of what it returns) must be told of, from one segment's entries:
/// the transactions that overlap that range, and whether the search is done (an entry
/// whose last stable offset reaches `upper_bound` proves no later segment holds one that
/// started before it); when not done the caller goes on with the next segment's entries.
pub fn collect_aborted(
    entries: &[AbortedTxn],
    fetch_offset: i64,
    upper_bound: i64,
) -> (Vec<AbortedTxn>, bool) {
    let mut out = Vec::new();
    for e in entries {
        if e.last_offset >= fetch_offset && e.first_offset < upper_bound {
            out.push(*e);
        }
        if e.last_stable_offset >= upper_bound {
            return (out, true);
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{set_base_offset, set_partition_leader_epoch, validate};

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Written by Kafka 4.4.0's `MemoryRecords.withEndTransactionMarker(1234, 1700000000123,
    // 7, 4242, 3, COMMIT with coordinator epoch 11)` and `(99, 1700000000456, 2, 77, 0,
    // ABORT with coordinator epoch 0)` (jshell over the kafka-clients jar).
    const KAFKA_COMMIT: &str = "00000000000004d2000000420000000702c3e4d1800030000000000000018bcfe5687b0000018bcfe5687b00000000000010920003ffffffff000000012000000008000000010c00000000000b00";
    const KAFKA_ABORT: &str = "0000000000000063000000420000000202bc4fab6f0030000000000000018bcfe569c80000018bcfe569c8000000000000004d0000ffffffff000000012000000008000000000c00000000000000";
    // A `TransactionIndex` file of Kafka 4.4.0 after appending (4242, 100, 250, lso 90)
    // and (77, 260, 300, lso 260).
    const KAFKA_TXN_INDEX: &str = "00000000000000001092000000000000006400000000000000fa000000000000005a0000000000000000004d0000000000000104000000000000012c0000000000000104";

    #[test]
    fn markers_are_the_bytes_kafka_writes_and_read_back() {
        let cases = [
            (
                KAFKA_COMMIT,
                1234,
                7,
                4242,
                3,
                ControlKind::Commit,
                11,
                1_700_000_000_123,
            ),
            (
                KAFKA_ABORT,
                99,
                2,
                77,
                0,
                ControlKind::Abort,
                0,
                1_700_000_000_456,
            ),
        ];
        for (kafka, base, leader_epoch, pid, epoch, kind, coordinator_epoch, ts) in cases {
            let marker = EndTxnMarker {
                kind,
                coordinator_epoch,
            };
            let mut b = build_marker(pid, epoch, marker, ts);
            set_base_offset(&mut b, base);
            set_partition_leader_epoch(&mut b, leader_epoch);
            assert_eq!(b, unhex(kafka), "{kind:?}");
            let h = validate(&b).expect("a valid batch");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (pid, epoch, -1)
            );
            assert_eq!(parse_marker(&unhex(kafka)), Some(marker));
        }
    }

    #[test]
    fn what_is_not_a_marker_parses_as_none() {
        let commit = unhex(KAFKA_COMMIT);
        // A data batch.
        let data = crate::batch::build::batch(&[crate::batch::build::Rec {
            key: Some(b"k"),
            value: b"v",
            timestamp_ms: 1,
        }]);
        assert_eq!(parse_marker(&data), None);
        // An empty control batch (the cleaner's header of a producer's last marker).
        let empty = crate::records::empty(&commit, &BatchHeader::parse(&commit).unwrap());
        assert_eq!(parse_marker(&empty), None);
        // A control type Kafka does not define here (2), and a record cut short.
        let mut other = commit.clone();
        other[HEADER_BYTES + 8] = 2;
        assert_eq!(parse_marker(&other), None);
        for cut in HEADER_BYTES..commit.len() {
            let mut short = commit[..cut].to_vec();
            let len = (short.len() - LOG_OVERHEAD_BYTES) as i32;
            short[8..12].copy_from_slice(&len.to_be_bytes());
            assert_eq!(parse_marker(&short), None, "cut at {cut}");
        }
    }

    #[test]
    fn the_index_is_kafkas_file_and_collects_as_kafka_does() {
        let entries = vec![
            AbortedTxn {
                producer_id: 4242,
                first_offset: 100,
                last_offset: 250,
                last_stable_offset: 90,
            },
            AbortedTxn {
                producer_id: 77,
                first_offset: 260,
                last_offset: 300,
                last_stable_offset: 260,
            },
        ];
        let bytes = encode_index(&entries);
        assert_eq!(bytes, unhex(KAFKA_TXN_INDEX));
        assert_eq!(decode_index(&bytes, 0).unwrap(), entries);
        // A torn last entry is left out; damage is refused.
        assert_eq!(
            decode_index(&bytes[..bytes.len() - 5], 0).unwrap(),
            entries[..1]
        );
        let mut bad = bytes.clone();
        bad[1] = 1;
        assert!(decode_index(&bad, 0).is_err(), "unknown version");
        assert!(
            decode_index(&bytes, 251).is_err(),
            "an entry below the segment"
        );
        let mut swapped = encode_index(&[entries[1]]);
        swapped.extend_from_slice(&encode_index(&[entries[0]]));
        assert!(decode_index(&swapped, 0).is_err(), "out of order");

        // Fetch 0..200: the first overlaps; the second starts past the bound, and its LSO
        // (260) reaches it, so no later segment can hold one that started before 200.
        assert_eq!(
            collect_aborted(&entries, 0, 200),
            (entries[..1].to_vec(), true)
        );
        // Fetch 255..280: only the second overlaps, and its LSO (260) is below the bound,
        // so the next segment must be searched too.
        assert_eq!(
            collect_aborted(&entries, 255, 280),
            (entries[1..].to_vec(), false)
        );
        // Up to 260: the second starts at 260 (not below the bound) and its LSO reaches it.
        assert_eq!(
            collect_aborted(&entries, 0, 260),
            (entries[..1].to_vec(), true)
        );
        // Past both: nothing, not done.
        assert_eq!(collect_aborted(&entries, 301, 400), (vec![], false));
    }
}
