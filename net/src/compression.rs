//! The record batch codecs, for a broker that recompresses what producers send (the topic
//! config `compression.type`): the records section of a RecordBatch v2 is the same bytes
//! whatever the codec, so recompressing a batch is decompressing that section and
//! compressing it again; no record is decoded.
//!
//! Unlike kafka-protocol's decompressors, [`decompress`] is bounded: the data comes from
//! clients, and a few KiB of zstd or gzip can claim gigabytes. Output past `limit_bytes` is
//! refused before it is allocated (snappy blocks declare their length and are checked
//! first; the streaming codecs stop reading one byte past the limit). The formats are
//! Kafka's: gzip, xerial-framed snappy (raw snappy is read too, as Kafka does), the LZ4
//! frame format with independent blocks and no content checksum (what Kafka's own LZ4
//! stream writes), zstd frames. Pure functions; any thread may call them.

use kafka_protocol::records::Compression;

/// Why a codec failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The data decompresses to more than the caller allows.
    #[error("the records decompress to more than {limit_bytes} bytes")]
    TooLarge {
        /// The limit that was hit.
        limit_bytes: usize,
    },
    /// The data is not valid for its codec (or the codec failed).
    #[error("{codec:?} data is corrupt: {reason}")]
    Corrupt {
        /// The codec.
        codec: Compression,
        /// What went wrong.
        reason: String,
    },
    /// This build has the codec turned off (the crate's `gzip`, `snappy`, `lz4`, `zstd`
    /// features).
    #[error("{codec:?} support is not built in")]
    NotBuilt {
        /// The codec.
        codec: Compression,
    },
}

/// Decompresses a batch's records section `data` (compressed with `codec`), refusing
/// output larger than `limit_bytes`.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    limit_bytes: usize,
) -> Result<Vec<u8>, CodecError> {
    match codec {
        Compression::None => {
            if data.len() > limit_bytes {
                return Err(CodecError::TooLarge { limit_bytes });
            }
            Ok(data.to_vec())
        }
        #[cfg(feature = "gzip")]
        Compression::Gzip => {
            read_bounded(codec, flate2::read::MultiGzDecoder::new(data), limit_bytes)
        }
        #[cfg(feature = "snappy")]
        Compression::Snappy => snappy::decompress(data, limit_bytes),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, limit_bytes)
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, limit_bytes)
        }
        #[allow(unreachable_patterns)]
        codec => Err(CodecError::NotBuilt { codec }),
    }
}

/// Compresses records `raw` with `codec` at `level` (`None`: the codec's default, which is
/// Kafka's: gzip 6, lz4 9, zstd 3; snappy has no levels).
#[allow(unused_variables)] // `level` with every codec feature off
pub fn compress(codec: Compression, level: Option<i32>, raw: &[u8]) -> Result<Vec<u8>, CodecError> {
    match codec {
        Compression::None => Ok(raw.to_vec()),
        #[cfg(feature = "gzip")]
        Compression::Gzip => {
            use std::io::Write;
            let level = level.map_or(6, |l| l.clamp(1, 9) as u32);
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 2),
                flate2::Compression::new(level),
            );
            encoder.write_all(raw).map_err(|e| corrupt(codec, e))?;
            encoder.finish().map_err(|e| corrupt(codec, e))
        }
        #[cfg(feature = "snappy")]
        Compression::Snappy => snappy::compress(raw),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => {
            use std::io::Write;
            let level = level.map_or(9, |l| l.clamp(1, 17) as u32);
            let mut encoder = lz4::EncoderBuilder::new()
                .level(level)
                .block_mode(lz4::BlockMode::Independent)
                .block_size(lz4::BlockSize::Max64KB)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::with_capacity(raw.len() / 2))
                .map_err(|e| corrupt(codec, e))?;
            encoder.write_all(raw).map_err(|e| corrupt(codec, e))?;
            let (out, result) = encoder.finish();
            result.map_err(|e| corrupt(codec, e))?;
            Ok(out)
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            zstd::bulk::compress(raw, level.unwrap_or(3)).map_err(|e| corrupt(codec, e))
        }
        #[allow(unreachable_patterns)]
        codec => Err(CodecError::NotBuilt { codec }),
    }
}

#[allow(dead_code)] // with every codec feature off
fn corrupt(codec: Compression, e: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt {
        codec,
        reason: e.to_string(),
    }
}

/// Reads a decoder to its end, or to one byte past `limit_bytes` (then refuses).
#[allow(dead_code)] // with every streaming codec feature off
fn read_bounded(
    codec: Compression,
    decoder: impl std::io::Read,
    limit_bytes: usize,
) -> Result<Vec<u8>, CodecError> {
    use std::io::Read;
    let mut out = Vec::new();
    decoder
        .take(limit_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if out.len() > limit_bytes {
        return Err(CodecError::TooLarge { limit_bytes });
    }
    Ok(out)
}

#[cfg(feature = "snappy")]
mod snappy {
    //! Kafka's snappy: the xerial stream framing (a magic header, then blocks each with a
    //! big-endian u32 length), or raw snappy when the header is absent.

    use super::{corrupt, CodecError, Compression};

    const MAGIC_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    /// xerial's block size, which Kafka's Java producer uses.
    const BLOCK_BYTES: usize = 32 * 1024;

    fn block(out: &mut Vec<u8>, compressed: &[u8], limit_bytes: usize) -> Result<(), CodecError> {
        let c = Compression::Snappy;
        let n = snap::raw::decompress_len(compressed).map_err(|e| corrupt(c, e))?;
        if out.len().saturating_add(n) > limit_bytes {
            return Err(CodecError::TooLarge { limit_bytes });
        }
        let start = out.len();
        out.resize(start + n, 0);
        let written = snap::raw::Decoder::new()
            .decompress(compressed, &mut out[start..])
            .map_err(|e| corrupt(c, e))?;
        out.truncate(start + written);
        Ok(())
    }

    pub(super) fn decompress(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        let Some(mut rest) = data.strip_prefix(MAGIC_HEADER.as_slice()) else {
            block(&mut out, data, limit_bytes)?;
            return Ok(out);
        };
        while !rest.is_empty() {
            let Some((len, after)) = rest.split_first_chunk::<4>() else {
                return Err(corrupt(Compression::Snappy, "a block length is cut short"));
            };
            let len = u32::from_be_bytes(*len) as usize;
            if len > after.len() {
                return Err(corrupt(
                    Compression::Snappy,
                    format!(
                        "a block of {len} bytes overruns the {} that remain",
                        after.len()
                    ),
                ));
            }
            block(&mut out, &after[..len], limit_bytes)?;
            rest = &after[len..];
        }
        Ok(out)
    }

    pub(super) fn compress(raw: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(MAGIC_HEADER.len() + raw.len() / 2);
        out.extend_from_slice(MAGIC_HEADER);
        let mut encoder = snap::raw::Encoder::new();
        for chunk in raw.chunks(BLOCK_BYTES) {
            let compressed = encoder
                .compress_vec(chunk)
                .map_err(|e| corrupt(Compression::Snappy, e))?;
            out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
            out.extend_from_slice(&compressed);
        }
        Ok(out)
    }
}

#[cfg(all(
    test,
    feature = "gzip",
    feature = "snappy",
    feature = "lz4",
    feature = "zstd"
))]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::compression::{self as theirs, Compressor, Decompressor};

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 997).to_le_bytes())
            .collect()
    }

    /// kafka-protocol's encoder for `codec` (the reference other clients agree with).
    fn their_compress(codec: Compression, raw: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let fill = |b: &mut BytesMut| -> anyhow::Result<()> {
            b.extend_from_slice(raw);
            Ok(())
        };
        match codec {
            Compression::None => out.extend_from_slice(raw),
            Compression::Gzip => theirs::Gzip::compress(&mut out, fill).unwrap(),
            Compression::Snappy => theirs::Snappy::compress(&mut out, fill).unwrap(),
            Compression::Lz4 => theirs::Lz4::compress(&mut out, fill).unwrap(),
            Compression::Zstd => theirs::Zstd::compress(&mut out, fill).unwrap(),
        }
        out.to_vec()
    }

    fn their_decompress(codec: Compression, data: &[u8]) -> Vec<u8> {
        let mut buf = Bytes::from(data.to_vec());
        let take = |b: &mut Bytes| -> anyhow::Result<Vec<u8>> { Ok(b.to_vec()) };
        match codec {
            Compression::None => data.to_vec(),
            Compression::Gzip => theirs::Gzip::decompress(&mut buf, take).unwrap(),
            Compression::Snappy => theirs::Snappy::decompress(&mut buf, take).unwrap(),
            Compression::Lz4 => theirs::Lz4::decompress(&mut buf, take).unwrap(),
            Compression::Zstd => theirs::Zstd::decompress(&mut buf, take).unwrap(),
        }
    }

    #[test]
    fn every_codec_round_trips_with_kafka_protocol_both_ways() {
        let raw = sample();
        for codec in CODECS {
            for level in [None, Some(1), Some(9)] {
                let ours = compress(codec, level, &raw).unwrap();
                assert_eq!(their_decompress(codec, &ours), raw, "{codec:?} {level:?}");
                assert_eq!(decompress(codec, &ours, raw.len()).unwrap(), raw);
            }
            let theirs = their_compress(codec, &raw);
            assert_eq!(
                decompress(codec, &theirs, raw.len()).unwrap(),
                raw,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn output_past_the_limit_is_refused() {
        // 64 MiB of zeros compress to a few KiB (a "zip bomb" for a small limit).
        let raw = vec![0u8; 64 << 20];
        for codec in CODECS {
            let small = compress(codec, None, &raw).unwrap();
            assert_eq!(
                decompress(codec, &small, 1 << 20),
                Err(CodecError::TooLarge {
                    limit_bytes: 1 << 20
                }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let mut rng = 0x1234_5678_u64;
        for codec in CODECS.into_iter().skip(1) {
            for len in [0usize, 1, 7, 64, 1000] {
                let junk: Vec<u8> = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng as u8
                    })
                    .collect();
                match decompress(codec, &junk, 1 << 20) {
                    Ok(_) | Err(CodecError::Corrupt { .. }) | Err(CodecError::TooLarge { .. }) => {}
                    Err(e) => panic!("{codec:?}: {e}"),
                }
            }
            // A snappy stream header followed by a block length past the end.
            let mut cut = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            cut.extend_from_slice(&1000u32.to_be_bytes());
            assert!(matches!(
                decompress(Compression::Snappy, &cut, 1 << 20),
                Err(CodecError::Corrupt { .. })
            ));
        }
    }
}
