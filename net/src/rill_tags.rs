//! Rill's own tagged fields in Kafka messages. Flexible versions (KIP-482) let a message
//! carry tagged fields its reader does not know, which the reader skips; Rill's tags start
//! at 10000, far above the ones Apache Kafka assigns, so Kafka's clients and tools read
//! these messages unchanged and Rill's own CLI reads the extra figures.

/// DescribeLogDirs (v2+), per partition: the share of the partition's cleanable log the
/// log cleaner has not compacted yet (its dirty ratio), as the cleaner last saw it. An
/// `f64`, 8 bytes big-endian; only on compacted partitions.
pub const LOG_DIR_DIRTY_RATIO: i32 = 10_000;
/// DescribeLogDirs (v2+), per partition: when the log cleaner last compacted the partition,
/// milliseconds since the Unix epoch, an `i64`, 8 bytes big-endian; absent if it never did.
pub const LOG_DIR_LAST_CLEAN_MS: i32 = 10_001;

/// The 8 bytes of a tagged `f64` or `i64` field, if it has exactly 8.
pub fn eight_bytes(v: &[u8]) -> Option<[u8; 8]> {
    v.try_into().ok()
}
