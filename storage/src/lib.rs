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
//!
//! # Layout
//!
//! - [`log`]: [`PartitionLog`], by concern in `log/{mod, recovery, append,
//!   flush, reader, retention}.rs`; the one room with state, and the only one
//!   that uses the others together.
//! - [`batch`]: the RecordBatch v2 header and its CRC-32C, the on-disk format,
//!   and [`batch::CheckedBatch`], a batch checked once that the log takes as is.
//! - [`index`]: a segment's sparse offset and time indexes.
//! - [`txn`]: transactions' end markers and the aborted-transaction index entries, in
//!   Kafka's formats (bytes in, values out; nothing uses them yet but their tests).
//! - [`records`]: records inside a batch, for the cleaner (parse, rebuild, empty).
//! - [`checkpoint`]: the rkyv partition checkpoint and recovery point.
//! - [`config`]: [`LogConfig`], a partition's storage settings.
//! - [`backend`]: the I/O the log needs: io_uring direct I/O, or in memory.
//! - [`reaper`]: the thread that frees dropped files off the shards.
//! - [`error`]: [`StorageError`], every fallible call's error.
//!
//! Dependencies point one way, towards the leaves: `log` uses them all;
//! `backend` hands dropped files to `reaper`; `config` asks `batch` for the
//! header size; all return `error`. None of them knows the log; `batch`,
//! `index` and `checkpoint` are bytes in, values out, and only `backend` and
//! `reaper` touch files.

pub mod backend;
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod epochs;
pub mod error;
pub mod index;
pub mod log;
pub mod reaper;
pub mod records;
pub mod txn;

pub use backend::{dma::DmaBackend, memory::MemoryBackend, Backend, SegmentFile};
pub use config::{FlushPolicy, LogConfig};
pub use error::{StorageError, StorageResult};
pub use log::{
    AppendInfo, CleanOutcome, CleanerThrottle, CompactionStatus, FileBudget, LogRead, LogStats,
    PartitionLog, ProducerLastOffsets, RetentionOutcome,
};
