//! Per-partition log configuration: the storage half of Kafka's topic configs.

use crate::error::{StorageError, StorageResult};

/// When appended data is made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every append is synced before it is reported durable (`flush.messages=1`).
    EveryAppend,
    /// Sync once `messages` appends or `bytes` are unsynced, or `interval_ms`
    /// after the first unsynced append, whichever comes first. The broker's
    /// shard drives the interval by calling [`crate::PartitionLog::sync`].
    Threshold {
        messages: u64,
        bytes: u64,
        interval_ms: u64,
    },
}

/// Sizes and ages that shape one partition log. Units are last in each name.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll to a new segment once the active one reaches this size.
    pub segment_bytes: u64,
    /// Roll to a new segment once the active one is this old (None: never).
    pub segment_ms: Option<u64>,
    /// Delete segments whose newest record is older than this (None: keep).
    pub retention_ms: Option<u64>,
    /// Delete oldest segments while the log is larger than this (None: keep).
    pub retention_bytes: Option<u64>,
    /// One sparse offset/time index entry per this many bytes of log.
    pub index_interval_bytes: u64,
    /// Largest batch accepted (`max.message.bytes`).
    pub batch_bytes_max: usize,
    /// Unwritten bytes that make an append write them out first (back-pressure).
    pub write_buffer_bytes_max: usize,
    /// Largest single write submitted to the disk; a flush larger than this
    /// is split into concurrent writes of this size.
    pub write_chunk_bytes: usize,
    /// Recently appended bytes kept in memory to serve tailing readers.
    pub tail_cache_bytes_max: usize,
    /// Bytes read per disk read when serving older data (read-ahead).
    pub read_ahead_bytes: usize,
    /// Synced bytes of the active segment after which a sync also records a
    /// recovery point (index files plus a small file): recovery after a crash
    /// then scans at most this much plus what was not synced.
    pub recovery_point_interval_bytes: u64,
    pub flush: FlushPolicy,
    /// `cleanup.policy` has `delete`: retention by time and size removes old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` has `compact`: the cleaner keeps the latest record per key.
    pub cleanup_compact: bool,
    /// `min.cleanable.dirty.ratio`: share of the cleanable log not yet compacted that
    /// makes the cleaner take the partition.
    pub min_cleanable_dirty_ratio: f64,
    /// `delete.retention.ms`: how long a tombstone stays once it has been compacted.
    pub delete_retention_ms: u64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted.
    pub min_compaction_lag_ms: u64,
    /// `max.compaction.lag.ms`: a record older than this not yet compacted makes the
    /// partition due whatever its dirty ratio (None: no bound).
    pub max_compaction_lag_ms: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            index_interval_bytes: 4096,
            batch_bytes_max: 1_048_588,
            write_buffer_bytes_max: 4 << 20,
            write_chunk_bytes: 1 << 20,
            tail_cache_bytes_max: 1 << 20,
            read_ahead_bytes: 1 << 20,
            recovery_point_interval_bytes: 32 << 20,
            flush: FlushPolicy::Threshold {
                messages: u64::MAX,
                bytes: u64::MAX,
                interval_ms: u64::MAX,
            },
            cleanup_delete: true,
            cleanup_compact: false,
            min_cleanable_dirty_ratio: 0.5,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
        }
    }
}

/// Smallest segment we allow: a segment must hold at least one page.
pub const SEGMENT_BYTES_MIN: u64 = 4096;

impl LogConfig {
    /// Checks every field and names the first bad one.
    pub fn validate(&self) -> StorageResult<()> {
        let bad = |field, reason: &str| {
            Err(StorageError::InvalidConfig {
                field,
                reason: reason.to_string(),
            })
        };
        if self.segment_bytes < SEGMENT_BYTES_MIN || self.segment_bytes > i32::MAX as u64 {
            return bad("segment_bytes", "must be between 4096 and 2147483647");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes", "must be positive");
        }
        if self.batch_bytes_max < crate::batch::HEADER_BYTES {
            return bad(
                "batch_bytes_max",
                "must hold at least a batch header (61 bytes)",
            );
        }
        if self.write_chunk_bytes < 4096 || !self.write_chunk_bytes.is_multiple_of(4096) {
            return bad("write_chunk_bytes", "must be a positive multiple of 4096");
        }
        if self.write_buffer_bytes_max < self.batch_bytes_max {
            return bad("write_buffer_bytes_max", "must be at least batch_bytes_max");
        }
        if self.read_ahead_bytes < 4096 {
            return bad("read_ahead_bytes", "must be at least 4096");
        }
        if self.recovery_point_interval_bytes == 0 {
            return bad("recovery_point_interval_bytes", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return bad("min_cleanable_dirty_ratio", "must be between 0 and 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        LogConfig::default().validate().unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        type Break = fn(&mut LogConfig);
        let cases: Vec<(&str, Break)> = vec![
            ("segment_bytes", |c| c.segment_bytes = 100),
            ("segment_bytes", |c| c.segment_bytes = 1 << 40),
            ("index_interval_bytes", |c| c.index_interval_bytes = 0),
            ("batch_bytes_max", |c| c.batch_bytes_max = 10),
            ("write_chunk_bytes", |c| c.write_chunk_bytes = 5000),
            ("write_buffer_bytes_max", |c| {
                c.write_buffer_bytes_max = c.batch_bytes_max - 1
            }),
            ("read_ahead_bytes", |c| c.read_ahead_bytes = 1),
            ("recovery_point_interval_bytes", |c| {
                c.recovery_point_interval_bytes = 0
            }),
            ("min_cleanable_dirty_ratio", |c| {
                c.min_cleanable_dirty_ratio = 1.5
            }),
        ];
        for (field, breaks) in cases {
            let mut c = LogConfig::default();
            breaks(&mut c);
            match c.validate() {
                Err(StorageError::InvalidConfig { field: named, .. }) => {
                    assert_eq!(named, field)
                }
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
