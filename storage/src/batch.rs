//! Kafka RecordBatch v2 header: the on-disk format of every segment.
//!
//! A `.log` file is a sequence of batches stored exactly as producers sent
//! them, except for `baseOffset` and `partitionLeaderEpoch`, which the broker
//! owns and which Kafka deliberately left outside the CRC so they can be
//! rewritten without re-checksumming. Records inside a batch are never decoded
//! on the append or read path; only the uncompressed-record walk used by
//! timestamp lookup looks inside.
//!
//! Layout (big-endian):
//! ```text
//! 0  baseOffset i64          8  batchLength i32       12 partitionLeaderEpoch i32
//! 16 magic i8                17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16          23 lastOffsetDelta i32   27 baseTimestamp i64
//! 35 maxTimestamp i64        43 producerId i64        51 producerEpoch i16
//! 53 baseSequence i32        57 recordCount i32       61 records...
//! ```

use bytes::{Bytes, BytesMut};

use crate::error::{StorageError, StorageResult};

/// Bytes before the records: the fixed part of a v2 batch.
pub const HEADER_BYTES: usize = 61;
/// `baseOffset` and `batchLength` together: `batchLength` counts from here.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Offset of the first CRC-covered byte (attributes).
const CRC_START: usize = 21;
pub(crate) const MAGIC_V2: i8 = 2;

/// The fixed header fields of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batchLength` field; the whole batch is this + 12.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// Compression codec from the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the fixed header from the first [`HEADER_BYTES`] of `buf`.
    /// Checks only what can be checked without the body: sizes and magic.
    pub fn parse(buf: &[u8]) -> StorageResult<BatchHeader> {
        if buf.len() < HEADER_BYTES {
            return Err(StorageError::CorruptBatch {
                reason: "shorter than the 61-byte RecordBatch v2 header",
            });
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        };
        if h.magic != MAGIC_V2 {
            return Err(StorageError::UnsupportedMagic { magic: h.magic });
        }
        if (h.batch_length as i64) < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i64 {
            return Err(StorageError::CorruptBatch {
                reason: "batchLength smaller than the header",
            });
        }
        if h.last_offset_delta < 0 || h.record_count < 0 {
            return Err(StorageError::CorruptBatch {
                reason: "negative lastOffsetDelta or recordCount",
            });
        }
        Ok(h)
    }

    /// Total bytes of this batch including `baseOffset` and `batchLength`.
    pub fn total_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD_BYTES
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression(&self) -> Compression {
        match self.attributes & 0x07 {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// Bit 3: 1 means the broker stamped LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Checks one complete batch: header sanity, exact length, CRC-32C.
/// `buf` must hold exactly one batch.
///
/// A batch without records is valid here: the log cleaner leaves one (the header only) where
/// an idempotent producer's last batch lost every record, so its sequence and epoch stay
/// in the log, as Kafka's cleaner does. Clients may not send one; the produce path refuses
/// that (and the other batches only a broker writes) with INVALID_RECORD.
pub fn validate(buf: &[u8]) -> StorageResult<BatchHeader> {
    let h = BatchHeader::parse(buf)?;
    if h.total_bytes() != buf.len() {
        return Err(StorageError::CorruptBatch {
            reason: "batchLength does not match the bytes received",
        });
    }
    if h.record_count as i64 > h.last_offset_delta as i64 + 1 {
        return Err(StorageError::CorruptBatch {
            reason: "recordCount larger than lastOffsetDelta + 1",
        });
    }
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    if crc != h.crc {
        return Err(StorageError::CrcMismatch {
            stored: h.crc,
            computed: crc,
        });
    }
    Ok(h)
}

/// One record batch whose header, length and CRC-32C were checked: the type is the proof, so the
/// log does not check again.
///
/// The owner shard checks a produced batch once, when it arrives, and needs the header there
/// anyway (producer state, timestamps); the log takes the same check as given instead of
/// computing the CRC of every batch a second time.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    bytes: Bytes,
    header: BatchHeader,
}

impl CheckedBatch {
    /// Checks `bytes` as [`validate`] does: exactly one whole batch, a sane header, the CRC-32C.
    pub fn check(bytes: Bytes) -> StorageResult<CheckedBatch> {
        let header = validate(&bytes)?;
        Ok(CheckedBatch { bytes, header })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Bytes of the whole batch, `baseOffset` and `batchLength` included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a batch holds at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Re-stamps the batch with LogAppendTime `now_ms`, as [`set_log_append_time`] does: the
    /// CRC is recomputed over the stamped bytes, so the batch stays valid without another check
    /// (the bytes were checked before they changed, and only the two stamped fields did).
    pub fn with_log_append_time(self, now_ms: i64) -> CheckedBatch {
        // No copy when nothing else shares the bytes; a slice of a request buffer is copied.
        let mut buf = self
            .bytes
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        set_log_append_time(&mut buf, now_ms);
        let bytes = buf.freeze();
        let header = BatchHeader::parse(&bytes).expect("re-stamping kept the header parseable");
        assert!(
            header.is_log_append_time() && header.max_timestamp == now_ms,
            "LogAppendTime stamp not in the re-parsed header"
        );
        CheckedBatch { bytes, header }
    }
}

/// Rewrites `baseOffset` in place (outside the CRC).
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites `partitionLeaderEpoch` in place (outside the CRC).
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
    buf[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps LogAppendTime: sets the timestamp-type attribute bit and
/// `maxTimestamp`, then recomputes the CRC (both fields are covered by it).
pub fn set_log_append_time(buf: &mut [u8], now_ms: i64) {
    let attrs = be_i16(buf, 21) | 0x08;
    buf[21..23].copy_from_slice(&attrs.to_be_bytes());
    buf[35..43].copy_from_slice(&now_ms.to_be_bytes());
    set_crc(buf);
}

/// Writes the CRC-32C of the batch in `buf` (attributes to the end), after its covered
/// bytes were written or changed.
pub fn set_crc(buf: &mut [u8]) {
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Walks a byte range batch by batch, yielding `(position, header)`.
/// Stops (returns `None`) at the first position that does not hold a whole
/// parseable batch; [`BatchWalker::stopped_at`] tells why it stopped.
pub struct BatchWalker<'a> {
    buf: &'a [u8],
    pos: usize,
    verify_crc: bool,
    stop: Option<StorageError>,
}

impl<'a> BatchWalker<'a> {
    pub fn new(buf: &'a [u8], verify_crc: bool) -> Self {
        BatchWalker {
            buf,
            pos: 0,
            verify_crc,
            stop: None,
        }
    }

    /// Position just after the last whole batch yielded.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Why the walk ended early, if it did not end exactly at the buffer end
    /// or at an incomplete batch (`None` means clean end or partial tail).
    pub fn stopped_at(&self) -> Option<&StorageError> {
        self.stop.as_ref()
    }
}

impl Iterator for BatchWalker<'_> {
    type Item = (usize, BatchHeader);
    fn next(&mut self) -> Option<Self::Item> {
        if self.stop.is_some() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        if rest.len() < HEADER_BYTES {
            return None;
        }
        let h = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.stop = Some(e);
                return None;
            }
        };
        if h.total_bytes() > rest.len() {
            return None; // incomplete: caller reads more or treats as torn
        }
        if self.verify_crc {
            if let Err(e) = validate(&rest[..h.total_bytes()]) {
                self.stop = Some(e);
                return None;
            }
        }
        let at = self.pos;
        self.pos += h.total_bytes();
        Some((at, h))
    }
}

/// A zig-zag varint (Kafka's record fields) at `*pos`, which moves past it.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    // zig-zag
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// For an uncompressed batch, the offset of the first record whose timestamp
/// is at least `target_ms`, with that timestamp. `None` if no record
/// qualifies or the batch is compressed (the caller then answers at batch
/// granularity, which is what a compressed batch allows without inflating).
pub fn first_record_at_or_after(batch: &[u8], target_ms: i64) -> Option<(i64, i64)> {
    let h = BatchHeader::parse(batch).ok()?;
    if h.compression() != Compression::None || h.is_log_append_time() {
        return None;
    }
    let mut pos = HEADER_BYTES;
    for _ in 0..h.record_count {
        let len = read_varint(batch, &mut pos)?;
        let start = pos;
        pos += 1; // attributes
        let ts_delta = read_varint(batch, &mut pos)?;
        let off_delta = read_varint(batch, &mut pos)?;
        let ts = h.base_timestamp + ts_delta;
        if ts >= target_ms {
            return Some((h.base_offset + off_delta, ts));
        }
        pos = start.checked_add(usize::try_from(len).ok()?)?;
    }
    None
}

/// For an uncompressed batch, the offset of the record holding the batch's
/// largest timestamp (the first one if several share it).
pub fn max_timestamp_record(batch: &[u8]) -> Option<(i64, i64)> {
    let h = BatchHeader::parse(batch).ok()?;
    if h.compression() != Compression::None || h.is_log_append_time() {
        return None;
    }
    let mut pos = HEADER_BYTES;
    let mut best: Option<(i64, i64)> = None;
    for _ in 0..h.record_count {
        let len = read_varint(batch, &mut pos)?;
        let start = pos;
        pos += 1;
        let ts_delta = read_varint(batch, &mut pos)?;
        let off_delta = read_varint(batch, &mut pos)?;
        let ts = h.base_timestamp + ts_delta;
        if best.is_none_or(|(_, b)| ts > b) {
            best = Some((h.base_offset + off_delta, ts));
        }
        pos = start.checked_add(usize::try_from(len).ok()?)?;
    }
    best
}

/// Builds a valid uncompressed v2 batch. Used by tests and benchmarks of
/// this crate and the broker's; the production path never builds batches.
pub mod build {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// One record: key, value, timestamp (absolute ms).
    pub struct Rec<'a> {
        pub key: Option<&'a [u8]>,
        pub value: &'a [u8],
        pub timestamp_ms: i64,
    }

    /// Encodes `records` as one batch with `baseOffset` 0.
    pub fn batch(records: &[Rec<'_>]) -> Vec<u8> {
        assert!(!records.is_empty(), "a batch holds at least one record");
        let base_ts = records[0].timestamp_ms;
        let max_ts = records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(base_ts);
        let mut body = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut rec = Vec::new();
            rec.push(0u8); // attributes
            put_varint(&mut rec, r.timestamp_ms - base_ts);
            put_varint(&mut rec, i as i64);
            match r.key {
                Some(k) => {
                    put_varint(&mut rec, k.len() as i64);
                    rec.extend_from_slice(k);
                }
                None => put_varint(&mut rec, -1),
            }
            put_varint(&mut rec, r.value.len() as i64);
            rec.extend_from_slice(r.value);
            put_varint(&mut rec, 0); // headers
            put_varint(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        let batch_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32;
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes()); // crc placeholder
        out.extend_from_slice(&0i16.to_be_bytes()); // attributes
        out.extend_from_slice(&((records.len() - 1) as i32).to_be_bytes());
        out.extend_from_slice(&base_ts.to_be_bytes());
        out.extend_from_slice(&max_ts.to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        out.extend_from_slice(&(records.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
        set_crc(&mut out);
        out
    }

    /// A batch of `count` records whose values fill it to about `bytes`.
    pub fn sized(bytes: usize, count: usize, timestamp_ms: i64) -> Vec<u8> {
        let count = count.max(1);
        let per = bytes.saturating_sub(HEADER_BYTES) / count;
        let value_len = per.saturating_sub(12).max(1);
        let value = vec![0xabu8; value_len];
        let recs: Vec<Rec<'_>> = (0..count)
            .map(|_| Rec {
                key: None,
                value: &value,
                timestamp_ms,
            })
            .collect();
        batch(&recs)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn built_batch_validates_and_offsets_rewrite_outside_crc() {
        let mut b = batch(&[
            Rec {
                key: Some(b"k"),
                value: b"v1",
                timestamp_ms: 1000,
            },
            Rec {
                key: None,
                value: b"v2",
                timestamp_ms: 1005,
            },
        ]);
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.max_timestamp, 1005);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.partition_leader_epoch, 7);
    }

    #[test]
    fn flipped_body_byte_fails_crc() {
        let mut b = sized(500, 3, 1);
        let n = b.len();
        b[n - 3] ^= 0x40;
        assert!(matches!(
            validate(&b),
            Err(StorageError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn length_mismatch_and_bad_magic_are_rejected() {
        let b = sized(200, 1, 1);
        assert!(validate(&b[..b.len() - 1]).is_err());
        let mut m = b.clone();
        m[16] = 1;
        assert!(matches!(
            validate(&m),
            Err(StorageError::UnsupportedMagic { magic: 1 })
        ));
        assert!(validate(&b[..30]).is_err());
    }

    #[test]
    fn log_append_time_restamps_and_keeps_crc_valid() {
        let mut b = sized(200, 2, 5);
        set_log_append_time(&mut b, 99_999);
        let h = validate(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
    }

    #[test]
    fn a_checked_batch_carries_the_header_validate_finds_and_refuses_what_it_refuses() {
        let b = sized(300, 3, 7);
        let checked = CheckedBatch::check(Bytes::from(b.clone())).unwrap();
        assert_eq!(*checked.header(), validate(&b).unwrap());
        assert_eq!(checked.len(), b.len());
        assert!(!checked.is_empty());
        assert_eq!(checked.bytes()[..], b[..]);
        assert_eq!(checked.into_bytes()[..], b[..]);
        let mut bad = b.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        assert!(matches!(
            CheckedBatch::check(Bytes::from(bad)),
            Err(StorageError::CrcMismatch { .. })
        ));
        assert!(CheckedBatch::check(Bytes::copy_from_slice(&b[..b.len() - 1])).is_err());
    }

    #[test]
    fn a_checked_batch_restamped_with_log_append_time_still_validates() {
        let original = Bytes::from(sized(200, 2, 5));
        // Shared bytes (as a slice of a produce request is) are copied, not stamped in place.
        let checked = CheckedBatch::check(original.clone()).unwrap();
        let stamped = checked.with_log_append_time(99_999);
        let h = validate(stamped.bytes()).unwrap();
        assert_eq!(h, *stamped.header(), "the header kept matches the bytes");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
        assert_eq!(h.record_count, 2);
        assert!(!validate(&original).unwrap().is_log_append_time());
        // Bytes nothing else shares are stamped in place, with the same result.
        let unique = CheckedBatch::check(Bytes::from(sized(200, 2, 5))).unwrap();
        assert_eq!(
            unique.with_log_append_time(99_999).bytes()[..],
            stamped.bytes()[..]
        );
    }

    #[test]
    fn walker_stops_at_zero_padding_and_partial_tail() {
        let mut buf = Vec::new();
        buf.extend(sized(300, 2, 1));
        buf.extend(sized(400, 3, 2));
        let whole = buf.len();
        buf.extend(vec![0u8; 100]);
        let mut w = BatchWalker::new(&buf, true);
        assert_eq!(w.by_ref().count(), 2);
        assert_eq!(w.position(), whole);
        assert!(w.stopped_at().is_some(), "zero padding is not a batch");
        let partial = &buf[..whole - 10];
        let mut w = BatchWalker::new(partial, true);
        assert_eq!(w.by_ref().count(), 1);
        assert!(w.stopped_at().is_none());
    }

    #[test]
    fn record_timestamp_lookup_inside_uncompressed_batch() {
        let mut b = batch(&[
            Rec {
                key: None,
                value: b"a",
                timestamp_ms: 100,
            },
            Rec {
                key: None,
                value: b"b",
                timestamp_ms: 300,
            },
            Rec {
                key: None,
                value: b"c",
                timestamp_ms: 200,
            },
        ]);
        set_base_offset(&mut b, 10);
        assert_eq!(first_record_at_or_after(&b, 150), Some((11, 300)));
        assert_eq!(first_record_at_or_after(&b, 100), Some((10, 100)));
        assert_eq!(first_record_at_or_after(&b, 301), None);
        assert_eq!(max_timestamp_record(&b), Some((11, 300)));
    }
}
