//! Uncompressed RecordBatch v2 on the hot path: built record by record in wire format as
//! records are generated ([`BatchBuilder`]), and scanned without materialising records on
//! the consumer side ([`scan_uncompressed`]).
//!
//! Why not `rill_net::client::encode_record_batch` / `decode_record_batches` for everything:
//! they go through kafka-protocol's `Record` (a `Bytes` clone per key and value, a header
//! map per record), which costs more per record than the broker spends per record, and the
//! tool must never be what is measured. So uncompressed batches, the common benchmark case,
//! are written here the way Kafka's own `MemoryRecordsBuilder` does: each record appended in
//! its final form, the header filled in once at the end. The output is byte-for-byte what
//! `encode_record_batch` produces (a test holds the two together), and compressed batches
//! still go through `rill-net`. Pure code; a builder belongs to the producer that fills it.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the batch header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Offset where the CRC-covered part of a batch starts (the attributes).
const CRC_START: usize = 21;
/// Attribute bit of control batches.
const CONTROL_BIT: i16 = 1 << 5;

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

/// Appends records to one uncompressed batch in wire format.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: i32,
    first_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch with room for about `capacity` bytes.
    pub fn new(capacity: usize) -> BatchBuilder {
        let mut buf = BytesMut::with_capacity(capacity.max(BATCH_HEADER_BYTES + 64));
        buf.put_bytes(0, BATCH_HEADER_BYTES);
        BatchBuilder {
            buf,
            count: 0,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// Records appended.
    pub fn count(&self) -> usize {
        self.count as usize
    }

    /// Encoded size so far, header included.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record whose value is the concatenation of `value_parts`. Timestamps must
    /// not decrease within a batch (the first is the batch's base timestamp).
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value_parts: &[&[u8]]) {
        if self.count == 0 {
            self.first_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let ts_delta = timestamp_ms - self.first_timestamp;
        let offset_delta = i64::from(self.count);
        let value_len: usize = value_parts.iter().map(|p| p.len()).sum();
        let key_len = key.map_or(-1, |k| k.len() as i64);
        let body = 1
            + varint_len(ts_delta)
            + varint_len(offset_delta)
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value_len as i64)
            + value_len
            + 1;
        self.buf.reserve(body + 5);
        put_varint(&mut self.buf, body as i64);
        self.buf.put_u8(0); // attributes
        put_varint(&mut self.buf, ts_delta);
        put_varint(&mut self.buf, offset_delta);
        put_varint(&mut self.buf, key_len);
        if let Some(k) = key {
            self.buf.put_slice(k);
        }
        put_varint(&mut self.buf, value_len as i64);
        for p in value_parts {
            self.buf.put_slice(p);
        }
        put_varint(&mut self.buf, 0); // no headers
        self.count += 1;
    }

    /// The finished batch: base offset 0, no producer id, no sequence, CRC-32C filled in.
    pub fn finish(mut self) -> Bytes {
        let batch_length = (self.buf.len() - 12) as i32;
        let mut h = &mut self.buf[..BATCH_HEADER_BYTES];
        h.put_i64(0); // base offset
        h.put_i32(batch_length);
        h.put_i32(-1); // partition leader epoch
        h.put_i8(2); // magic
        h.put_u32(0); // CRC, below
        h.put_i16(0); // attributes: no compression, create time
        h.put_i32(self.count - 1); // last offset delta
        h.put_i64(self.first_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(-1); // producer id
        h.put_i16(-1); // producer epoch
        h.put_i32(-1); // base sequence
        h.put_i32(self.count);
        let crc = crc32c::crc32c(&self.buf[CRC_START..]);
        self.buf[17..21].copy_from_slice(&crc.to_be_bytes());
        self.buf.freeze()
    }
}

/// One record seen by [`scan_uncompressed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRecord<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Key bytes (`None` for a null key).
    pub key: Option<&'a [u8]>,
    /// Value bytes (`None` for a null value).
    pub value: Option<&'a [u8]>,
}

/// What [`scan_uncompressed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Every complete batch was uncompressed and has been visited.
    Done,
    /// A compressed batch starts at this byte offset: decode from there with `rill-net`.
    CompressedAt(usize),
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<i64, String> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at).ok_or("record ends inside a varint")?;
            self.at += 1;
            z |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn bytes(&mut self, len: i64) -> Result<Option<&'a [u8]>, String> {
        if len < 0 {
            return Ok(None);
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.at.checked_add(l))
            .ok_or("record field length overflows")?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or("record field runs past its record")?;
        self.at = end;
        Ok(Some(s))
    }
}

/// Visits the records of the uncompressed batches in a Fetch partition's `records`, in
/// order, skipping control batches and ignoring a truncated trailing batch (as Kafka
/// clients do). Stops at the first compressed batch and says where it starts. The CRC is
/// not checked: the broker checked it on the way in, and this is the load generator's own
/// data coming back.
pub fn scan_uncompressed(
    data: &[u8],
    mut visit: impl FnMut(ScannedRecord<'_>),
) -> Result<Scan, String> {
    let mut pos = 0;
    while data.len() - pos >= BATCH_HEADER_BYTES {
        let b = &data[pos..];
        let base_offset = i64::from_be_bytes(b[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
        let total =
            12 + usize::try_from(length).map_err(|_| format!("negative batch length {length}"))?;
        if total > b.len() {
            break;
        }
        if total < BATCH_HEADER_BYTES {
            return Err(format!("batch length {length} below the header size"));
        }
        if b[16] != 2 {
            return Err(format!(
                "record batch magic {} (only v2 is supported)",
                b[16]
            ));
        }
        let attributes = i16::from_be_bytes([b[21], b[22]]);
        if attributes & 0x7 != 0 {
            return Ok(Scan::CompressedAt(pos));
        }
        let count = i32::from_be_bytes(b[57..61].try_into().expect("4 bytes"));
        if attributes & CONTROL_BIT == 0 {
            let mut r = Reader {
                b: &b[BATCH_HEADER_BYTES..total],
                at: 0,
            };
            for _ in 0..count.max(0) {
                let len = r.varint()?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| r.at.checked_add(l))
                    .ok_or("bad record length")?;
                if end > r.b.len() {
                    return Err("record runs past its batch".into());
                }
                let mut rec = Reader {
                    b: &r.b[..end],
                    at: r.at,
                };
                rec.at += 1; // attributes
                let _ts_delta = rec.varint()?;
                let offset_delta = rec.varint()?;
                let key_len = rec.varint()?;
                let key = rec.bytes(key_len)?;
                let value_len = rec.varint()?;
                let value = rec.bytes(value_len)?;
                visit(ScannedRecord {
                    offset: base_offset + offset_delta,
                    key,
                    value,
                });
                r.at = end; // headers are skipped with the rest of the record
            }
        }
        pos += total;
    }
    Ok(Scan::Done)
}

#[cfg(test)]
mod tests {
    use rill_net::client::{
        decode_record_batches, encode_record_batch, BatchOptions, ProduceRecord,
    };

    use super::*;

    fn random_records(rng: &mut fastrand::Rng, n: usize) -> Vec<(i64, Option<Vec<u8>>, Vec<u8>)> {
        let mut ts = 1_700_000_000_000 + rng.i64(0..1000);
        (0..n)
            .map(|_| {
                ts += rng.i64(0..3);
                let key = rng
                    .bool()
                    .then(|| (0..rng.usize(0..20)).map(|_| rng.u8(..)).collect());
                let value = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
                (ts, key, value)
            })
            .collect()
    }

    #[test]
    fn builder_matches_rill_net_byte_for_byte() {
        let mut rng = fastrand::Rng::with_seed(5);
        for round in 0..200 {
            let n = 1 + rng.usize(0..if round % 10 == 0 { 2000 } else { 50 });
            let records = random_records(&mut rng, n);
            let mut b = BatchBuilder::new(64);
            for (ts, key, value) in &records {
                // Split the value in two parts, as the generator does (stamp + payload).
                let cut = rng.usize(0..=value.len());
                b.push(*ts, key.as_deref(), &[&value[..cut], &value[cut..]]);
            }
            assert_eq!(b.count(), n);
            let size = b.size();
            let ours = b.finish();
            assert_eq!(ours.len(), size);
            let theirs: Vec<ProduceRecord> = records
                .iter()
                .map(|(ts, key, value)| ProduceRecord {
                    key: key.clone().map(Bytes::from),
                    value: Some(Bytes::from(value.clone())),
                    headers: Vec::new(),
                    timestamp_ms: *ts,
                })
                .collect();
            let theirs = encode_record_batch(&theirs, &BatchOptions::default()).unwrap();
            assert_eq!(ours, theirs, "round {round}");
        }
    }

    #[test]
    fn scan_matches_rill_net_decoding() {
        let mut rng = fastrand::Rng::with_seed(6);
        let mut data = BytesMut::new();
        let mut base = 100i64;
        for _ in 0..20 {
            let n = 1 + rng.usize(0..40);
            let records = random_records(&mut rng, n);
            let mut b = BatchBuilder::new(64);
            for (ts, key, value) in &records {
                b.push(*ts, key.as_deref(), &[value]);
            }
            let mut batch = BytesMut::from(&b.finish()[..]);
            batch[..8].copy_from_slice(&base.to_be_bytes());
            base += records.len() as i64;
            data.extend_from_slice(&batch);
        }
        let whole = data.len();
        data.extend_from_slice(&data.clone()[..40]); // truncated trailing batch
        let data = data.freeze();
        let expected = decode_record_batches(&data).unwrap();
        let mut seen = Vec::new();
        let scan = scan_uncompressed(&data, |r| {
            seen.push((
                r.offset,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
            ))
        })
        .unwrap();
        assert_eq!(scan, Scan::Done);
        assert_eq!(seen.len(), expected.len());
        for (s, e) in seen.iter().zip(&expected) {
            assert_eq!(s.0, e.offset);
            assert_eq!(s.1.as_deref(), e.key.as_deref());
            assert_eq!(s.2.as_deref(), e.value.as_deref());
        }
        assert!(whole > 0);
    }

    #[test]
    fn scan_refuses_garbage_and_stops_at_compression() {
        let mut b = BatchBuilder::new(64);
        b.push(1, None, &[b"hello"]);
        let good = b.finish();
        // A record length pointing past the batch.
        let mut bad = BytesMut::from(&good[..]);
        bad[BATCH_HEADER_BYTES] = 0x7e;
        assert!(scan_uncompressed(&bad, |_| {}).is_err());
        // Compressed attribute: handed back to the caller.
        let mut gz = BytesMut::from(&good[..]);
        gz[22] = 1;
        assert_eq!(
            scan_uncompressed(&gz, |_| {}).unwrap(),
            Scan::CompressedAt(0)
        );
        // Every truncation of a valid batch is either ignored or refused, never a panic.
        for cut in 0..good.len() {
            let _ = scan_uncompressed(&good[..cut], |_| {});
        }
    }
}
