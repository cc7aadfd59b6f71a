//! `rill-storage`: the partition log every other part of Rill stands on.
//!
//! A [`PartitionLog`] is one topic-partition's directory of segments. Each
//! segment is a `.log` of Kafka RecordBatch v2 bytes stored exactly as
//! produced (only `baseOffset` and `partitionLeaderEpoch` are rewritten, both
//! outside the CRC), with a sparse `.index` and `.timeindex`, the same layout
//! Kafka uses. A small rkyv [`checkpoint`] holds the log start offset and the
//! clean-shutdown marker; a [`checkpoint::RecoveryPoint`] says where crash
//! recovery of the active segment may start.
//!
//! I/O goes through the [`backend::Backend`] trait: [`backend::dma::DmaBackend`]
//! (glommio, io_uring, `O_DIRECT`) in production and
//! [`backend::memory::MemoryBackend`] in tests. Every log is owned by one
//! shard; nothing here is `Send`, by design (thread-per-core).

pub mod backend;
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod index;
pub mod log;
pub mod reaper;

pub use backend::{dma::DmaBackend, memory::MemoryBackend, Backend, SegmentFile};
pub use config::{FlushPolicy, LogConfig};
pub use error::{StorageError, StorageResult};
pub use log::{AppendInfo, FileBudget, LogRead, LogStats, PartitionLog, RetentionOutcome};
