//! What the broker does to produced batches before they travel to their partition's owner,
//! on the connection's shard: the topic's timestamp bounds (KIP-937) and its
//! `compression.type` when that is not `producer`.
//!
//! Recompression never decodes a record: a batch's records section is the same bytes
//! whatever the codec, so it is decompressed (bounded: by the topic's
//! `max.decompressed.message.bytes` and [`DECOMPRESSED_BATCH_BYTES_MAX`]), compressed with
//! the topic's codec and level (`rill_net::compression`), and the header gets the new
//! codec bits, length and CRC. Offsets, timestamps and producer fields stay as sent, so
//! idempotent retries still match. The new batch is checked again before it goes on.
//!
//! Timestamps are read from the batch header, as everything on this path is: a CreateTime
//! batch whose newest timestamp (`maxTimestamp`) is further ahead of the broker's clock
//! than `message.timestamp.after.max.ms`, or whose first timestamp (`baseTimestamp`) is
//! further behind than `message.timestamp.before.max.ms`, is refused with
//! INVALID_TIMESTAMP. Producers stamp records in order, so the first timestamp is the
//! oldest; Kafka, which decodes every record, would also catch a batch whose later records
//! are older than its first.

use bytes::{BufMut, Bytes, BytesMut};
use rill_net::compression::{self, CodecError};
use rill_net::kafka_protocol::records::Compression;
use rill_net::ErrorCode;
use rill_storage::batch::{BatchHeader, CheckedBatch, HEADER_BYTES};
use rill_storage::records;

use crate::partition::codec::{wire_codec, WireCodec};

use crate::config::topic::{Recompress, TimestampType, TopicSettings};
use crate::errors::KafkaError;

/// Most bytes one batch may decompress to on this path, whatever the topic allows: the
/// decompressed copy is held in memory while it is compressed again.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 256 << 20;

/// Offset of the batch length field, and of the first byte the CRC covers (attributes).
const BATCH_LENGTH_AT: usize = 8;
const ATTRIBUTES_AT: usize = 21;
/// Bytes the batch length does not count (base offset, the length itself).
const LOG_OVERHEAD_BYTES: usize = 12;

/// Applies `settings` of the topic to one produce partition's batches at `now_ms`.
pub fn prepare(
    batches: Vec<CheckedBatch>,
    topic: &str,
    settings: &TopicSettings,
    now_ms: i64,
) -> Result<Vec<CheckedBatch>, KafkaError> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        check_timestamps(b.header(), topic, settings, now_ms)?;
        out.push(match settings.recompress {
            Recompress::To(codec, level) if wants(b.header(), codec) => {
                let limit = usize::try_from(settings.decompressed_bytes_max)
                    .unwrap_or(usize::MAX)
                    .min(DECOMPRESSED_BATCH_BYTES_MAX);
                recompress(&b, codec, level, limit)?
            }
            _ => b,
        });
    }
    Ok(out)
}

/// Whether a batch needs recompressing to `codec` (control batches stay as they are).
fn wants(h: &BatchHeader, codec: Compression) -> bool {
    !h.is_control() && codec_of(h) != codec
}

fn codec_of(h: &BatchHeader) -> Compression {
    wire_codec(h.compression())
}

/// Indexes (counted across `batches`, as Kafka's `record_errors` count within the batch)
/// of the records without a key: a compacted topic refuses them (INVALID_RECORD, KIP-467).
/// Compressed batches are decompressed, bounded as recompression is.
pub fn keyless_records(
    batches: &[CheckedBatch],
    settings: &TopicSettings,
) -> Result<Vec<i32>, KafkaError> {
    let limit = usize::try_from(settings.decompressed_bytes_max)
        .unwrap_or(usize::MAX)
        .min(DECOMPRESSED_BATCH_BYTES_MAX);
    let mut out = Vec::new();
    let mut index = 0i32;
    for b in batches {
        let h = b.header();
        if h.is_control() {
            continue;
        }
        let body = records::records_section(b.bytes(), h, &WireCodec, limit)
            .map_err(|reason| KafkaError::new(ErrorCode::CorruptMessage, reason))?;
        let recs = records::parse(h, &body)
            .map_err(|e| KafkaError::new(ErrorCode::CorruptMessage, e.to_string()))?;
        for r in recs {
            if r.key.is_none() {
                out.push(index);
            }
            index += 1;
        }
    }
    Ok(out)
}

fn check_timestamps(
    h: &BatchHeader,
    topic: &str,
    s: &TopicSettings,
    now_ms: i64,
) -> Result<(), KafkaError> {
    if s.timestamp_type != TimestampType::CreateTime || h.is_control() {
        return Ok(());
    }
    let latest = now_ms.saturating_add(s.timestamp_after_max_ms);
    if h.max_timestamp > latest {
        return Err(KafkaError::new(
            ErrorCode::InvalidTimestamp,
            format!(
                "a record's timestamp {} is {} ms ahead of the broker's clock ({now_ms}); topic \
                 {topic} allows {} ms (message.timestamp.after.max.ms): check the producer's clock",
                h.max_timestamp,
                h.max_timestamp - now_ms,
                s.timestamp_after_max_ms
            ),
        ));
    }
    let earliest = now_ms.saturating_sub(s.timestamp_before_max_ms);
    if h.base_timestamp >= 0 && h.base_timestamp < earliest {
        return Err(KafkaError::new(
            ErrorCode::InvalidTimestamp,
            format!(
                "a record's timestamp {} is {} ms behind the broker's clock ({now_ms}); topic \
                 {topic} allows {} ms (message.timestamp.before.max.ms)",
                h.base_timestamp,
                now_ms - h.base_timestamp,
                s.timestamp_before_max_ms
            ),
        ));
    }
    Ok(())
}

/// `batch` with its records compressed with `codec` at `level`.
fn recompress(
    batch: &CheckedBatch,
    codec: Compression,
    level: Option<i32>,
    limit_bytes: usize,
) -> Result<CheckedBatch, KafkaError> {
    let h = batch.header();
    let bytes: &Bytes = batch.bytes();
    let records = compression::decompress(codec_of(h), &bytes[HEADER_BYTES..], limit_bytes)
        .map_err(|e| codec_error(e, "decompress"))?;
    let packed =
        compression::compress(codec, level, &records).map_err(|e| codec_error(e, "compress"))?;
    let total = HEADER_BYTES + packed.len();
    let batch_length = i32::try_from(total - LOG_OVERHEAD_BYTES).map_err(|_| {
        KafkaError::new(
            ErrorCode::MessageTooLarge,
            format!("the recompressed batch of {total} bytes is too large"),
        )
    })?;
    let mut out = BytesMut::with_capacity(total);
    out.extend_from_slice(&bytes[..HEADER_BYTES]);
    out.put_slice(&packed);
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (h.attributes & !0x07) | codec as i16;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    rill_storage::batch::set_crc(&mut out);
    // Checked again like any produced batch: the rewrite must leave a valid batch.
    let rewritten = CheckedBatch::check(out.freeze()).map_err(KafkaError::from)?;
    let r = rewritten.header();
    assert!(
        r.record_count == h.record_count
            && r.base_timestamp == h.base_timestamp
            && r.producer_id == h.producer_id
            && r.base_sequence == h.base_sequence
            && codec_of(r) == codec,
        "recompression changed more than the codec of a batch"
    );
    Ok(rewritten)
}

fn codec_error(e: CodecError, what: &str) -> KafkaError {
    match e {
        CodecError::TooLarge { limit_bytes } => KafkaError::new(
            ErrorCode::RecordListTooLarge,
            format!(
                "a batch decompresses to more than {limit_bytes} bytes (the topic's \
                 max.decompressed.message.bytes, at most {DECOMPRESSED_BATCH_BYTES_MAX}); send \
                 smaller batches"
            ),
        ),
        CodecError::Corrupt { .. } => KafkaError::new(
            ErrorCode::CorruptMessage,
            format!("cannot {what} the batch's records: {e}"),
        ),
        CodecError::NotBuilt { .. } => KafkaError::new(
            ErrorCode::UnsupportedCompressionType,
            format!("cannot {what} the batch's records: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::topic::BrokerDefaults;
    use rill_net::client::{decode_record_batches, encode_record_batch};

    fn settings(configs: &[(&str, &str)]) -> TopicSettings {
        let configs: Vec<(String, String)> = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TopicSettings::resolve(&BrokerDefaults::default(), &configs).unwrap()
    }

    fn batch(codec: Compression, timestamp_ms: i64) -> CheckedBatch {
        let records: Vec<rill_net::client::ProduceRecord> = (0..50)
            .map(|i| rill_net::client::ProduceRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 200])),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                timestamp_ms: timestamp_ms + i,
            })
            .collect();
        let options = rill_net::client::BatchOptions {
            compression: codec,
            ..Default::default()
        };
        CheckedBatch::check(encode_record_batch(&records, &options).unwrap()).unwrap()
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn batches_are_recompressed_to_the_topic_codec_records_unchanged() {
        let codecs = [
            ("uncompressed", Compression::None),
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ];
        for (_, from) in codecs {
            let original = batch(from, NOW);
            let want = decode_record_batches(original.bytes()).unwrap();
            for (name, to) in codecs {
                let s = settings(&[("compression.type", name)]);
                let out = prepare(vec![original.clone()], "t", &s, NOW).unwrap();
                assert_eq!(codec_of(out[0].header()), to, "{from:?} -> {name}");
                assert_eq!(decode_record_batches(out[0].bytes()).unwrap(), want);
            }
            // `producer` keeps the very bytes.
            let kept = prepare(vec![original.clone()], "t", &settings(&[]), NOW).unwrap();
            assert_eq!(kept[0].bytes(), original.bytes());
        }
    }

    #[test]
    fn a_batch_too_large_to_decompress_is_refused() {
        let s = settings(&[
            ("compression.type", "gzip"),
            ("max.decompressed.message.bytes", "1000"),
        ]);
        let e = prepare(vec![batch(Compression::Zstd, NOW)], "t", &s, NOW).unwrap_err();
        assert_eq!(e.code, ErrorCode::RecordListTooLarge);
    }

    #[test]
    fn timestamps_outside_the_topic_bounds_are_invalid() {
        let s = settings(&[
            ("message.timestamp.after.max.ms", "1000"),
            ("message.timestamp.before.max.ms", "60000"),
        ]);
        prepare(vec![batch(Compression::None, NOW - 59_000)], "t", &s, NOW).unwrap();
        let ahead = prepare(vec![batch(Compression::None, NOW + 5_000)], "t", &s, NOW);
        assert_eq!(ahead.unwrap_err().code, ErrorCode::InvalidTimestamp);
        let behind = prepare(vec![batch(Compression::Lz4, NOW - 120_000)], "t", &s, NOW);
        assert_eq!(behind.unwrap_err().code, ErrorCode::InvalidTimestamp);
        // Kafka's default allows an hour ahead and any age.
        let d = settings(&[]);
        prepare(vec![batch(Compression::None, 0)], "t", &d, NOW).unwrap();
        let e = prepare(
            vec![batch(Compression::None, NOW + 3_700_000)],
            "t",
            &d,
            NOW,
        );
        assert_eq!(e.unwrap_err().code, ErrorCode::InvalidTimestamp);
        // LogAppendTime topics stamp their own time: nothing to check.
        let lat = settings(&[
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.after.max.ms", "0"),
        ]);
        prepare(vec![batch(Compression::None, NOW + 5_000)], "t", &lat, NOW).unwrap();
    }
}
