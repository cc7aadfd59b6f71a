//! Storage errors. The broker maps these to Kafka error codes in one place.

use std::path::PathBuf;

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("corrupt record batch: {reason}")]
    CorruptBatch { reason: &'static str },
    #[error("record batch CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch magic {magic} is not supported (only v2); upgrade the client")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch of {bytes} bytes exceeds the limit of {limit_bytes} bytes (max.message.bytes)")]
    BatchTooLarge { bytes: usize, limit_bytes: usize },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error(
        "I/O error on {path}: {source}; check that the disk is present, writable and not full"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata file {path} is damaged: {reason}")]
    BadMetadata { path: PathBuf, reason: String },
    #[error("invalid log configuration: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("too many open segment files: limit {limit} (open_files_max)")]
    TooManyOpenFiles { limit: usize },
    #[error("replicated batch at offset {base_offset} does not continue the log, which ends at {log_end_offset}")]
    NonContiguousAppend {
        base_offset: i64,
        log_end_offset: i64,
    },
    #[error("the partition log was closed")]
    Closed,
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}
