//! One partition's log: the [`PartitionLog`] type, the state its parts share,
//! and what belongs to no single part (accessors, config, stats, close, delete,
//! segment file names, budgeted file handles, index and checkpoint writes).
//!
//! Owned by exactly one shard and used from that shard's tasks only (it is
//! `!Send`). Methods take `&self` so concurrent produce, fetch and flush tasks
//! can share it through an `Rc`; state lives in a `RefCell` that is borrowed
//! only between awaits, never across one. Two FIFO async locks order the rest:
//! `append_lock` keeps offsets in arrival order (pipelined produce requests
//! of one connection must not overtake each other), `io_lock` lets one task at
//! a time write the tail, sync, roll or truncate, which is also what turns
//! concurrent `sync` calls into one fdatasync (group commit).
//!
//! The methods live by concern, one `impl` block of [`PartitionLog`] a file:
//! - `recovery`: opening a log, which is recovering its active segment;
//! - `append`: assigning offsets, the tail cache, rolling segments;
//! - `flush`: write-behind, preallocation, `flush`, `write_through`, `sync`
//!   and the recovery points they leave;
//! - `reader`: reads, the read-ahead stream, timestamp lookups, index loading;
//! - `retention`: retention, DeleteRecords, truncation;
//! - `aborted`: the aborted-transaction index read_committed fetches collect.
//!
//! The state structs stay here with private fields: every part sees the same
//! state, nothing outside the log does, and what one part needs from another
//! is a `pub(super)` method, so the seams show.

mod aborted;
mod append;
mod compact;
mod flush;
mod reader;
mod recovery;
mod retention;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::backend::{Backend, SegmentFile};
use crate::checkpoint::{Checkpoint, CleanShutdown};
use crate::config::LogConfig;
use crate::epochs::LeaderEpochs;
use crate::error::{StorageError, StorageResult};
use crate::index::SegmentIndex;
use crate::txn::AbortedTxn;

pub use compact::{CleanOutcome, CleanerThrottle, CompactionStatus, KeyMap, ProducerLastOffsets};
use flush::{trim_tail, InflightWrite};
use reader::ReadStream;
pub use retention::RetentionOutcome;

const CHECKPOINT_FILE: &str = "partition.checkpoint";
/// The active segment's [`crate::checkpoint::RecoveryPoint`].
const RECOVERY_POINT_FILE: &str = "partition.recovery";
/// Present when the last clean close did not know the active segment's aborted
/// transactions (see `aborted`), so the next open does not take them as complete.
const TXN_UNKNOWN_FILE: &str = "partition.txnunknown";

fn segment_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Write-behind bytes a shard keeps in flight across its logs before a
/// flush holds back: enough to keep a fast device's queue full (fio's 8 x
/// 1 MiB), and within [`crate::backend::dma::SHARD_IO_MEMORY_BYTES`] with
/// room for reads, so write buffers come from the registered DMA arena.
pub const SHARD_INFLIGHT_WRITE_BYTES_MAX: u64 = 32 << 20;

/// Shard-wide limits shared by that shard's logs: open segment files, and
/// write-behind bytes in flight (so 1,000 partitions flushing at once queue
/// their writes instead of allocating 1,000 write buffers).
#[derive(Debug)]
pub struct FileBudget {
    open: Cell<usize>,
    /// Most segment files the shard may hold open (`open_files_max`).
    pub open_files_max: usize,
    inflight_write: Cell<u64>,
    /// Most write-behind bytes in flight that a flush may add to.
    pub inflight_write_bytes_max: u64,
}

impl FileBudget {
    pub fn new(open_files_max: usize) -> Rc<FileBudget> {
        Rc::new(FileBudget {
            open: Cell::new(0),
            open_files_max,
            inflight_write: Cell::new(0),
            inflight_write_bytes_max: SHARD_INFLIGHT_WRITE_BYTES_MAX,
        })
    }
    pub fn open_files(&self) -> usize {
        self.open.get()
    }
    /// Write-behind bytes in flight across the shard's logs.
    pub fn inflight_write_bytes(&self) -> u64 {
        self.inflight_write.get()
    }
    fn acquire(&self) -> StorageResult<()> {
        if self.open.get() >= self.open_files_max {
            return Err(StorageError::TooManyOpenFiles {
                limit: self.open_files_max,
            });
        }
        self.open.set(self.open.get() + 1);
        Ok(())
    }
    fn release(&self) {
        self.open.set(self.open.get().saturating_sub(1));
    }
}

/// An open file that gives its budget slot back when the last handle drops.
struct Handle<F> {
    file: Option<F>,
    budget: Rc<FileBudget>,
}

impl<F> Drop for Handle<F> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            self.budget.release();
        }
    }
}

impl<F> Handle<F> {
    fn get(&self) -> &F {
        self.file.as_ref().expect("file handle used after close")
    }
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    /// True when the flush policy asks the caller to sync now.
    pub sync_due: bool,
}

/// Whole batches read from the log.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    pub batches: Vec<Bytes>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl LogRead {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
    /// One contiguous buffer (copies unless there is a single batch chunk).
    pub fn concat(&self) -> Bytes {
        match self.batches.len() {
            0 => Bytes::new(),
            1 => self.batches[0].clone(),
            _ => {
                let mut out = BytesMut::with_capacity(self.bytes());
                for b in &self.batches {
                    out.extend_from_slice(b);
                }
                out.freeze()
            }
        }
    }
}

/// Figures for metrics and the memory benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    pub segments: usize,
    pub size_bytes: u64,
    pub tail_cache_bytes: usize,
    pub read_cache_bytes: usize,
    pub index_heap_bytes: usize,
    /// Aborted-transaction lists held: the active segment's and closed ones' cached.
    pub aborted_txn_heap_bytes: usize,
}

struct Segment {
    base_offset: i64,
    /// One past the last offset stored (for the active segment: log end).
    next_offset: i64,
    /// Logical bytes, including any not yet written for the active segment.
    size: u64,
    /// Largest batch max timestamp; `None` until the index is loaded.
    max_timestamp: Option<i64>,
    index: Option<SegmentIndex>,
    /// Transactions aborted by ABORT markers in this segment, by marker offset (see
    /// `aborted`): always `Some` for the active segment; for a closed one a cache, loaded
    /// from `<base>.txnindex` on first use and dropped by `trim_caches`.
    aborted: Option<Vec<AbortedTxn>>,
    /// `<base>.txnindex` exists (from the directory listing at open, then kept up to
    /// date), so a closed segment without aborted transactions costs no read.
    has_txn_index: bool,
}

impl Segment {
    /// A new, empty active segment at `base`.
    fn empty(base: i64) -> Segment {
        Segment {
            base_offset: base,
            next_offset: base,
            size: 0,
            max_timestamp: Some(-1),
            index: Some(SegmentIndex::default()),
            aborted: Some(Vec::new()),
            has_txn_index: false,
        }
    }
}

struct Active<F> {
    seg: Segment,
    file: Rc<Handle<F>>,
    /// Logical bytes on disk (contiguous prefix).
    written: u64,
    /// The bytes of the partially filled last page on disk: [align_down(written), written).
    tail_page: Vec<u8>,
    created_ms: i64,
    /// Whole-page writes submitted and not yet reaped, in file order, contiguous
    /// from `align_down(written)`. They cover bytes the tail cache still holds,
    /// so readers never need them; `written` moves only when the oldest is reaped.
    inflight: VecDeque<InflightWrite>,
    /// File size as far as this log made it (writes and preallocation).
    allocated: u64,
    /// Preallocation failed once (file system without fallocate, or full):
    /// write past the end instead, which is slower but works.
    preallocate_failed: bool,
    /// A started fallocate, to this size.
    preallocating: Option<(u64, PendingIo)>,
    /// The last batch appended (`None` when unknown, after a clean open).
    last_batch: Option<BatchMark>,
    /// Position of the recovery point recorded for this segment (0: none).
    recovery_position: u64,
    /// `seg.aborted` is complete: false after an unclean open until the broker restores
    /// it (see `aborted`).
    aborted_known: bool,
}

impl<F> Active<F> {
    fn new(seg: Segment, file: Rc<Handle<F>>, size: u64, tail_page: Vec<u8>, now: i64) -> Self {
        Active {
            seg,
            file,
            written: size,
            tail_page,
            created_ms: now,
            inflight: VecDeque::new(),
            allocated: size,
            preallocate_failed: false,
            preallocating: None,
            last_batch: None,
            recovery_position: 0,
            // A segment started by a roll or a truncation is empty, or a closed one whose
            // `.txnindex` was sealed whole.
            aborted_known: true,
        }
    }
}

/// Where a batch lies in the active segment and what identifies it: enough to
/// check on open that a recovery point still matches the file.
#[derive(Debug, Clone, Copy)]
struct BatchMark {
    position: u64,
    bytes: u32,
    crc: u32,
    last_offset: i64,
}

/// The active segment as [`PartitionLog::seal_active`] left it.
struct Sealed {
    size: u64,
    base: i64,
    index: SegmentIndex,
    /// One past its last offset: the log end.
    next_offset: i64,
    /// Its aborted transactions, as written to `<base>.txnindex` (none: no file).
    aborted: Vec<AbortedTxn>,
}

/// What [`PartitionLog::write_out`] wrote: everything below `until` (bytes)
/// and `covered` (offsets), ending with batch `last`.
struct WrittenOut {
    covered: i64,
    until: u64,
    last: Option<BatchMark>,
}

type PendingIo = Pin<Box<dyn Future<Output = StorageResult<()>>>>;

/// An appended batch held in memory: until it is on disk (the write-behind
/// copies from here) and after, within `tail_cache_bytes_max`, for readers of
/// recent offsets.
struct TailBatch {
    base_offset: i64,
    last_offset: i64,
    position: u64,
    data: Bytes,
}

struct State<F> {
    closed: BTreeMap<i64, Segment>,
    active: Active<F>,
    log_start_offset: i64,
    durable_offset: i64,
    tail: VecDeque<TailBatch>,
    tail_bytes: usize,
    stream: Option<ReadStream<F>>,
    unsynced_messages: u64,
    unsynced_bytes: u64,
    first_unsynced_ms: Option<i64>,
    is_closed: bool,
    /// Bytes of the active segment the open's recovery scan covered.
    recovery_scanned_bytes: u64,
    /// Where each leader epoch starts in this log.
    epochs: LeaderEpochs,
    /// Bumped whenever closed segments change (retention, truncation, a compaction
    /// swap), so a cleaner pass that read them knows its output is stale.
    layout_gen: u64,
    /// [`TXN_UNKNOWN_FILE`] exists.
    txn_unknown_marker: bool,
}

impl<F> State<F> {
    fn log_end_offset(&self) -> i64 {
        self.active.seg.next_offset
    }
    fn unwritten_bytes(&self) -> u64 {
        self.active.seg.size - self.active.written
    }
}

/// One partition's log.
pub struct PartitionLog<B: Backend> {
    backend: B,
    dir: PathBuf,
    config: RefCell<LogConfig>,
    state: RefCell<State<B::File>>,
    append_lock: async_lock::Mutex<()>,
    io_lock: async_lock::Mutex<()>,
    /// Serializes checkpoint writes (they share a temporary file), so retention can
    /// write one without holding the append and I/O locks.
    checkpoint_lock: async_lock::Mutex<()>,
    /// One compaction pass at a time.
    clean_lock: async_lock::Mutex<()>,
    /// Closed segments change under it, one change at a time: a compaction swap, retention,
    /// DeleteRecords, truncation. Taken before `append_lock` and `io_lock`; a swap takes it
    /// alone, so its renames and fsyncs never hold up appends and flushes.
    layout_lock: async_lock::Mutex<()>,
    /// The cleaner's progress (see `compact`).
    cleaner: RefCell<compact::CleanerState>,
    budget: Rc<FileBudget>,
    clock: Rc<dyn Fn() -> i64>,
    /// See [`PartitionLog::opened_clean`].
    opened_clean: bool,
}

impl<B: Backend> PartitionLog<B> {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    /// One past the last offset appended (Kafka's log end offset).
    pub fn log_end_offset(&self) -> i64 {
        self.state.borrow().log_end_offset()
    }

    /// Base offset of the active segment (the one appends go to).
    pub fn active_base_offset(&self) -> i64 {
        self.state.borrow().active.seg.base_offset
    }

    /// Whether the active segment's aborted-transaction list is known whole: true when
    /// this log was opened after a clean shutdown (whose close wrote the list to the
    /// active segment's `.txnindex`, read back at open). False after a crash, when that
    /// file was damaged, and for a new log (no checkpoint yet): the list then holds at
    /// most what the segment's last seal wrote, and the broker restores it from its
    /// producer-state replay with [`PartitionLog::restore_active_aborted_txns`] before
    /// the first append or read_committed fetch.
    pub fn opened_clean(&self) -> bool {
        self.opened_clean
    }

    /// Bytes of whole batches that recovery CRC-checked when this log was
    /// opened (0 after a clean shutdown; what follows the recovery point
    /// after a crash).
    pub fn recovery_scanned_bytes(&self) -> u64 {
        self.state.borrow().recovery_scanned_bytes
    }

    /// The leader-epoch history: where each epoch that wrote to this log starts.
    pub fn leader_epochs(&self) -> LeaderEpochs {
        self.state.borrow().epochs.clone()
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` in this log and the
    /// offset where it ends (see [`LeaderEpochs::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let s = self.state.borrow();
        s.epochs.end_offset_for(epoch, s.log_end_offset())
    }

    /// Offsets below this have been synced to disk.
    pub fn durable_offset(&self) -> i64 {
        self.state.borrow().durable_offset
    }

    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Applies new settings (topic config change); takes effect on the next
    /// append, flush or retention pass.
    pub fn set_config(&self, config: LogConfig) -> StorageResult<()> {
        config.validate()?;
        *self.config.borrow_mut() = config;
        Ok(())
    }

    pub fn stats(&self) -> LogStats {
        let s = self.state.borrow();
        let aborted_bytes = |g: &Segment| {
            g.aborted
                .as_ref()
                .map_or(0, |l| l.capacity() * std::mem::size_of::<AbortedTxn>())
        };
        let mut index_heap_bytes = s.active.seg.index.as_ref().map_or(0, |i| i.heap_bytes());
        let mut aborted_txn_heap_bytes = aborted_bytes(&s.active.seg);
        for seg in s.closed.values() {
            index_heap_bytes += seg.index.as_ref().map_or(0, |i| i.heap_bytes());
            aborted_txn_heap_bytes += aborted_bytes(seg);
        }
        LogStats {
            segments: s.closed.len() + 1,
            size_bytes: s.closed.values().map(|g| g.size).sum::<u64>() + s.active.seg.size,
            tail_cache_bytes: s.tail_bytes,
            read_cache_bytes: s.stream.as_ref().map_or(0, |c| c.buffered_bytes()),
            index_heap_bytes,
            aborted_txn_heap_bytes,
        }
    }

    fn check_open(&self) -> StorageResult<()> {
        if self.state.borrow().is_closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// Opens a segment file against the shard's open-file budget.
    async fn open_budgeted(&self, path: &Path, create: bool) -> StorageResult<Rc<Handle<B::File>>> {
        open_budgeted(&self.backend, &self.budget, path, create).await
    }

    async fn write_index_files(&self, base: i64, index: &SegmentIndex) -> StorageResult<()> {
        self.backend
            .write_small_atomic(
                &self.dir.join(segment_name(base, "index")),
                &index.encode_offsets(),
            )
            .await?;
        self.backend
            .write_small_atomic(
                &self.dir.join(segment_name(base, "timeindex")),
                &index.encode_times(),
            )
            .await
    }

    /// Makes the active segment file exact and durable (drops the zero padding
    /// of the last page) and writes its index files and its aborted-transaction
    /// index: what a roll does before the next segment starts (so a closed segment
    /// never lacks its entries, even after a crash) and a close before its
    /// clean-shutdown checkpoint. Caller has written the segment out and holds
    /// `io_lock`.
    async fn seal_active(&self) -> StorageResult<Sealed> {
        let (file, sealed, had_txn_index) = {
            let s = self.state.borrow();
            let a = &s.active;
            let sealed = Sealed {
                size: a.seg.size,
                base: a.seg.base_offset,
                index: a.seg.index.clone().unwrap_or_default(),
                next_offset: a.seg.next_offset,
                aborted: a.seg.aborted.clone().unwrap_or_default(),
            };
            (a.file.clone(), sealed, a.seg.has_txn_index)
        };
        file.get().truncate(sealed.size).await?;
        file.get().sync().await?;
        self.write_index_files(sealed.base, &sealed.index).await?;
        if had_txn_index || !sealed.aborted.is_empty() {
            let present =
                aborted::store_txn_index(&self.backend, &self.dir, sealed.base, &sealed.aborted)
                    .await?;
            self.state.borrow_mut().active.seg.has_txn_index = present;
        }
        Ok(sealed)
    }

    async fn write_checkpoint(&self, clean: Option<CleanShutdown>) -> StorageResult<()> {
        let _one = self.checkpoint_lock.lock().await;
        if clean.is_none() && self.state.borrow().is_closed {
            // Retention finishing after a close: the close's checkpoint already has
            // the new log start (and must stay the clean one); after a delete the
            // directory is gone.
            return Ok(());
        }
        let cp = {
            let mut s = self.state.borrow_mut();
            // A log start that moved up (retention, DeleteRecords) moves the epochs' start.
            let start = s.log_start_offset;
            s.epochs.truncate_from_start(start);
            Checkpoint {
                log_start_offset: s.log_start_offset,
                recovery_point: s.durable_offset,
                clean_shutdown: clean,
                leader_epochs: s.epochs.entries().to_vec(),
            }
        };
        self.backend
            .write_small_atomic(&self.dir.join(CHECKPOINT_FILE), &cp.encode())
            .await
    }

    /// Writes a small file of the partition's own beside its segments, atomically and
    /// durably: state kept with the log, such as its idempotent producers. Names ending in
    /// `.log`, `.index`, `.timeindex`, `.txnindex`, `.deleted` or `.cleaned`, and names
    /// starting with `partition.` or `cleaner.`, are the log's own and refused.
    pub async fn write_aux(&self, name: &str, data: &[u8]) -> StorageResult<()> {
        self.check_open()?;
        assert!(
            !name.contains('/')
                && !name.starts_with("partition.")
                && ![
                    ".log",
                    ".index",
                    ".timeindex",
                    ".txnindex",
                    ".txnindex.cleaned",
                    ".deleted",
                    ".cleaned"
                ]
                .iter()
                .any(|e| name.ends_with(e))
                && !name.starts_with("cleaner."),
            "aux file name {name:?} collides with the log's own files"
        );
        self.backend
            .write_small_atomic(&self.dir.join(name), data)
            .await
    }

    /// A file written by [`PartitionLog::write_aux`] (None when there is none).
    pub async fn read_aux(&self, name: &str) -> StorageResult<Option<Vec<u8>>> {
        self.backend.read_small(&self.dir.join(name)).await
    }

    /// Clean shutdown: syncs, trims the padding, writes the active index and
    /// a checkpoint that lets the next open skip the recovery scan.
    pub async fn close(&self) -> StorageResult<()> {
        let _order = self.append_lock.lock().await;
        let _io = self.io_lock.lock().await;
        if self.state.borrow().is_closed {
            return Ok(());
        }
        self.write_out().await?;
        let Sealed {
            size,
            base,
            next_offset: leo,
            ..
        } = self.seal_active().await?;
        self.mark_aborted_known().await?;
        self.state.borrow_mut().durable_offset = leo;
        self.write_checkpoint(Some(CleanShutdown {
            log_end_offset: leo,
            active_base_offset: base,
            active_segment_bytes: size,
        }))
        .await?;
        let mut s = self.state.borrow_mut();
        s.is_closed = true;
        s.tail.clear();
        s.tail_bytes = 0;
        s.stream = None;
        Ok(())
    }

    /// Drops in-memory caches (tail cache beyond unwritten data, read-ahead,
    /// closed-segment indexes and aborted-transaction lists) of an idle partition
    /// to bound shard memory.
    pub fn trim_caches(&self) {
        let mut s = self.state.borrow_mut();
        trim_tail(&mut s, 0);
        s.tail.shrink_to_fit();
        s.stream = None;
        for g in s.closed.values_mut() {
            g.index = None;
            g.aborted = None;
            // max_timestamp stays: it is small and retention needs it.
        }
    }

    /// Deletes the partition: closes it and removes its directory.
    pub async fn delete(&self) -> StorageResult<()> {
        {
            let _order = self.append_lock.lock().await;
            let _io = self.io_lock.lock().await;
            let mut s = self.state.borrow_mut();
            s.is_closed = true;
            s.tail.clear();
            s.stream = None;
        }
        self.backend.discard(&self.dir).await
    }
}

async fn open_budgeted<B: Backend>(
    backend: &B,
    budget: &Rc<FileBudget>,
    path: &Path,
    create: bool,
) -> StorageResult<Rc<Handle<B::File>>> {
    budget.acquire()?;
    match backend.open_segment(path, create).await {
        Ok(f) => Ok(Rc::new(Handle {
            file: Some(f),
            budget: budget.clone(),
        })),
        Err(e) => {
            budget.release();
            Err(e)
        }
    }
}

/// The files of a segment, the log first: a segment is listed by its `.log`, so a crash
/// part way through a removal leaves orphans of the others (open removes an orphan
/// `.txnindex`, which a segment later created under the same base would otherwise take
/// for its own; index files are only trusted beside a matching checkpoint).
const SEGMENT_EXTS: [&str; 4] = ["log", "index", "timeindex", "txnindex"];

/// Hands a segment's files to the reaper (see [`crate::reaper`]): their names go now,
/// their space is freed off the shard. For segments below the log start only: a crash
/// before the renames are durable brings the old names back, and open removes them again.
/// A file the segment lacks (most have no `.txnindex`) is skipped: both backends take a
/// missing path as already gone.
async fn discard_segment_files<B: Backend>(
    backend: &B,
    dir: &Path,
    base: i64,
) -> StorageResult<()> {
    for ext in SEGMENT_EXTS {
        backend.discard(&dir.join(segment_name(base, ext))).await?;
    }
    Ok(())
}

/// The `.index` and `.timeindex` files of segment `base` as stored (`None`: missing).
async fn read_index_files<B: Backend>(
    backend: &B,
    dir: &Path,
    base: i64,
) -> StorageResult<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    let offsets = backend
        .read_small(&dir.join(segment_name(base, "index")))
        .await?;
    let times = backend
        .read_small(&dir.join(segment_name(base, "timeindex")))
        .await?;
    Ok((offsets, times))
}

/// Removes a segment's files (a missing one is fine, as for [`discard_segment_files`]).
async fn remove_segment_files<B: Backend>(backend: &B, dir: &Path, base: i64) -> StorageResult<()> {
    for ext in SEGMENT_EXTS {
        backend
            .remove_file(&dir.join(segment_name(base, ext)))
            .await?;
    }
    Ok(())
}

/// What the tests of every part of the log share: how they open a log, and
/// what they need to name for it.
#[cfg(test)]
mod test_support {
    pub(super) use super::*;
    pub(super) use crate::backend::memory::MemoryBackend;
    pub(super) use crate::batch::{self, build, BatchHeader, CheckedBatch};
    pub(super) use futures_lite::future::block_on;

    pub(super) fn open(be: &MemoryBackend, cfg: LogConfig) -> PartitionLog<MemoryBackend> {
        block_on(PartitionLog::open(
            be.clone(),
            PathBuf::from("/mem/t-0"),
            cfg,
            FileBudget::new(16),
        ))
        .unwrap()
    }

    /// Rolls the (non-empty) active segment as a full one would; returns the new base.
    pub(super) fn roll(log: &PartitionLog<MemoryBackend>) -> i64 {
        block_on(async {
            let _order = log.append_lock.lock().await;
            let _io = log.io_lock.lock().await;
            log.roll().await.unwrap();
        });
        log.active_base_offset()
    }

    /// Appends producer `pid`'s ABORT marker and records the transaction it ends, as the
    /// broker does (LSO: one past the marker unless given); returns the entry.
    pub(super) fn append_abort(
        log: &PartitionLog<MemoryBackend>,
        pid: i64,
        first_offset: i64,
        lso: Option<i64>,
    ) -> AbortedTxn {
        use crate::txn::{build_marker, ControlKind, EndTxnMarker};
        let marker = EndTxnMarker {
            kind: ControlKind::Abort,
            coordinator_epoch: 0,
        };
        let b = CheckedBatch::check(Bytes::from(build_marker(pid, 0, marker, 1))).unwrap();
        let at = block_on(log.append(b, 0)).unwrap().base_offset;
        let txn = AbortedTxn {
            producer_id: pid,
            first_offset,
            last_offset: at,
            last_stable_offset: lso.unwrap_or(at + 1),
        };
        log.add_aborted_txn(txn);
        txn
    }

    /// Every aborted transaction of the log (a read_committed fetch of all of it).
    pub(super) fn all_aborted(log: &PartitionLog<MemoryBackend>) -> Vec<AbortedTxn> {
        block_on(log.collect_aborted_txns(log.log_start_offset(), i64::MAX)).unwrap()
    }

    /// The entries stored in `/mem/t-0`'s segment `base`'s `.txnindex` (None: no file).
    pub(super) fn stored_aborted(be: &MemoryBackend, base: i64) -> Option<Vec<AbortedTxn>> {
        let path = PathBuf::from(format!("/mem/t-0/{base:020}.txnindex"));
        be.file_bytes(&path)
            .map(|b| crate::txn::decode_index(&b, base).unwrap())
    }
}
