//! The records inside a RecordBatch v2, for the one part of storage that must look at
//! them: compaction, which keeps the latest record per key.
//!
//! A record is `length varint, attributes i8, timestampDelta varlong, offsetDelta varint,
//! keyLength varint, key, valueLength varint, value, headers`. Offsets and timestamps are
//! deltas from the batch header, so a record's bytes can be copied into a rebuilt batch
//! with the same base offset and base timestamp unchanged: [`rebuild`] keeps the header's
//! base offset, last offset delta (the producer's sequence numbers derive from it, as in
//! Kafka), producer fields and codec, and recomputes the length, count, max timestamp and
//! CRC. Compressed records sections go through a [`RecordsCodec`] the caller supplies
//! (the codecs live with the wire protocol, not here).

use crate::batch::{
    read_varint, set_crc, BatchHeader, Compression, HEADER_BYTES, LOG_OVERHEAD_BYTES,
};
use crate::error::{StorageError, StorageResult};

/// Decompresses and compresses a batch's records section (the bytes after the 61-byte
/// header), for the codecs of the batch attributes' low bits.
pub trait RecordsCodec {
    /// The records section `data` compressed with `codec`, uncompressed, refusing output
    /// past `limit_bytes`.
    fn decompress(
        &self,
        codec: Compression,
        data: &[u8],
        limit_bytes: usize,
    ) -> Result<Vec<u8>, String>;
    /// `raw` records compressed with `codec` (at the codec's default level).
    fn compress(&self, codec: Compression, raw: &[u8]) -> Result<Vec<u8>, String>;
}

/// A codec for uncompressed batches only: compressed ones are reported as not readable,
/// and the cleaner then keeps them whole.
pub struct NoCodec;

impl RecordsCodec for NoCodec {
    fn decompress(&self, codec: Compression, _: &[u8], _: usize) -> Result<Vec<u8>, String> {
        Err(format!("{codec:?} is not readable without a codec"))
    }
    fn compress(&self, codec: Compression, _: &[u8]) -> Result<Vec<u8>, String> {
        Err(format!("{codec:?} is not writable without a codec"))
    }
}

/// One record of a batch, borrowed from its (uncompressed) records section.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The record's absolute offset (base offset + offset delta).
    pub offset: i64,
    /// Its absolute timestamp (base timestamp + delta; for LogAppendTime batches the
    /// header's max timestamp is the true one).
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    /// False for a tombstone (a null value).
    pub has_value: bool,
    /// The record's whole encoding, length prefix included.
    pub raw: &'a [u8],
}

fn corrupt(reason: &'static str) -> StorageError {
    StorageError::CorruptBatch { reason }
}

/// The records of `header`'s batch in `records` (its records section, uncompressed).
pub fn parse<'a>(header: &BatchHeader, records: &'a [u8]) -> StorageResult<Vec<Record<'a>>> {
    let mut out = Vec::with_capacity(header.record_count.max(0) as usize);
    let mut pos = 0usize;
    for _ in 0..header.record_count {
        let start = pos;
        let len = read_varint(records, &mut pos).ok_or(corrupt("record length unreadable"))?;
        let body = pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| body.checked_add(l))
            .filter(|e| *e <= records.len())
            .ok_or(corrupt("record length past the batch end"))?;
        pos += 1; // attributes
        let ts_delta =
            read_varint(records, &mut pos).ok_or(corrupt("record timestamp unreadable"))?;
        let off_delta =
            read_varint(records, &mut pos).ok_or(corrupt("record offset unreadable"))?;
        let key_len =
            read_varint(records, &mut pos).ok_or(corrupt("record key length unreadable"))?;
        let key = if key_len < 0 {
            None
        } else {
            let k = records
                .get(pos..pos + key_len as usize)
                .filter(|_| pos + key_len as usize <= end)
                .ok_or(corrupt("record key past the record end"))?;
            pos += key_len as usize;
            Some(k)
        };
        let value_len =
            read_varint(records, &mut pos).ok_or(corrupt("record value length unreadable"))?;
        if pos > end {
            return Err(corrupt("record fields past the record end"));
        }
        out.push(Record {
            offset: header.base_offset + off_delta,
            timestamp_ms: header.base_timestamp + ts_delta,
            key,
            has_value: value_len >= 0,
            raw: &records[start..end],
        });
        pos = end;
    }
    Ok(out)
}

/// The records section of `batch` uncompressed (borrowed when it is not compressed).
pub fn records_section<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    codec: &dyn RecordsCodec,
    limit_bytes: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    let body = &batch[HEADER_BYTES..header.total_bytes()];
    match header.compression() {
        Compression::None => Ok(std::borrow::Cow::Borrowed(body)),
        c => codec
            .decompress(c, body, limit_bytes)
            .map(std::borrow::Cow::Owned),
    }
}

/// A batch like `original` holding only `kept` records (encodings from [`parse`] of it,
/// in order, at least one), compressed as `original` was.
pub fn rebuild(
    original: &[u8],
    header: &BatchHeader,
    kept: &[Record<'_>],
    codec: &dyn RecordsCodec,
) -> Result<Vec<u8>, String> {
    let mut raw = Vec::with_capacity(kept.iter().map(|r| r.raw.len()).sum());
    for r in kept {
        raw.extend_from_slice(r.raw);
    }
    assert!(
        !kept.is_empty(),
        "a rebuilt batch keeps at least one record"
    );
    let body = match header.compression() {
        Compression::None => raw,
        c => codec.compress(c, &raw)?,
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&original[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let batch_length = (out.len() - LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    if !header.is_log_append_time() {
        let max_ts = kept
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .unwrap_or(header.base_timestamp);
        out[35..43].copy_from_slice(&max_ts.to_be_bytes());
    }
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    set_crc(&mut out);
    Ok(out)
}

/// The header of `original` alone, without records: what the cleaner keeps of an
/// idempotent producer's last batch once every record of it is compacted away (Kafka's
/// `DefaultRecordBatch.writeEmptyHeader`). Base offset, last offset delta, leader epoch,
/// producer id, epoch and base sequence stay, so the producer's last sequence and epoch
/// can still be read from the log; the timestamps are the original's max timestamp and
/// the attributes keep only the timestamp type and the transactional and control flags
/// (no compression, no delete horizon).
pub fn empty(original: &[u8], header: &BatchHeader) -> Vec<u8> {
    let mut out = original[..HEADER_BYTES].to_vec();
    let batch_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = header.attributes & (0x08 | 0x10 | 0x20);
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[27..35].copy_from_slice(&header.max_timestamp.to_be_bytes());
    out[35..43].copy_from_slice(&header.max_timestamp.to_be_bytes());
    out[57..61].copy_from_slice(&0i32.to_be_bytes());
    set_crc(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build, validate};

    #[test]
    fn parse_and_rebuild_keep_offsets_keys_and_a_valid_crc() {
        let recs = [
            build::Rec {
                key: Some(b"a"),
                value: b"1",
                timestamp_ms: 100,
            },
            build::Rec {
                key: None,
                value: b"2",
                timestamp_ms: 105,
            },
            build::Rec {
                key: Some(b"b"),
                value: b"3",
                timestamp_ms: 103,
            },
        ];
        let mut b = build::batch(&recs);
        crate::batch::set_base_offset(&mut b, 40);
        let h = validate(&b).unwrap();
        let body = records_section(&b, &h, &NoCodec, usize::MAX).unwrap();
        let parsed = parse(&h, &body).unwrap();
        assert_eq!(
            parsed.iter().map(|r| (r.offset, r.key)).collect::<Vec<_>>(),
            vec![(40, Some(&b"a"[..])), (41, None), (42, Some(&b"b"[..]))]
        );
        assert!(parsed.iter().all(|r| r.has_value));
        let kept = [parsed[0], parsed[2]];
        let out = rebuild(&b, &h, &kept, &NoCodec).unwrap();
        let h2 = validate(&out).unwrap();
        assert_eq!(
            (h2.base_offset, h2.last_offset(), h2.record_count),
            (40, 42, 2)
        );
        assert_eq!(h2.max_timestamp, 103);
        let again = parse(&h2, &out[HEADER_BYTES..]).unwrap();
        assert_eq!(
            again
                .iter()
                .map(|r| (r.offset, r.timestamp_ms))
                .collect::<Vec<_>>(),
            vec![(40, 100), (42, 103)]
        );
        let one = rebuild(&b, &h, &[parsed[1]], &NoCodec).unwrap();
        let h3 = validate(&one).unwrap();
        assert_eq!(
            (h3.record_count, h3.last_offset(), h3.max_timestamp),
            (1, 42, 105)
        );
    }

    #[test]
    fn a_record_running_past_its_batch_is_refused() {
        let mut b = build::batch(&[build::Rec {
            key: Some(b"key"),
            value: b"value",
            timestamp_ms: 1,
        }]);
        let h = validate(&b).unwrap();
        let n = b.len();
        b[HEADER_BYTES] = 0x7e; // record length 63: past the end
        assert!(parse(&h, &b[HEADER_BYTES..n]).is_err());
    }
}
