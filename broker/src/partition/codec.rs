//! The record codecs (`rill_net::compression`) in the shape storage's log cleaner takes
//! them, and the mapping between storage's codec ids and the wire protocol's.

use rill_net::compression;
use rill_net::kafka_protocol::records::Compression;
use rill_storage::batch as storage_batch;
use rill_storage::records::RecordsCodec;

/// The wire protocol's codec for storage's.
pub fn wire_codec(c: storage_batch::Compression) -> Compression {
    match c {
        storage_batch::Compression::None => Compression::None,
        storage_batch::Compression::Gzip => Compression::Gzip,
        storage_batch::Compression::Snappy => Compression::Snappy,
        storage_batch::Compression::Lz4 => Compression::Lz4,
        storage_batch::Compression::Zstd => Compression::Zstd,
    }
}

/// The record codecs for storage's log cleaner, which reads and rewrites compressed
/// batches of compacted topics (at each codec's default level, as Kafka's cleaner).
pub struct WireCodec;

impl RecordsCodec for WireCodec {
    fn decompress(
        &self,
        codec: storage_batch::Compression,
        data: &[u8],
        limit_bytes: usize,
    ) -> Result<Vec<u8>, String> {
        compression::decompress(wire_codec(codec), data, limit_bytes).map_err(|e| e.to_string())
    }
    fn compress(&self, codec: storage_batch::Compression, raw: &[u8]) -> Result<Vec<u8>, String> {
        compression::compress(wire_codec(codec), None, raw).map_err(|e| e.to_string())
    }
}
