//! One partition's log: segments, tail cache, write-behind, recovery,
//! retention and truncation.
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
//! Write path: an append copies the batch once (rewriting `baseOffset` and
//! `partitionLeaderEpoch`) into the tail cache. Once a whole write chunk of
//! pages is waiting, it is copied into an aligned buffer and its direct write
//! submitted without waiting (write-behind): appends go on while the disk
//! writes, with up to `write_buffer_bytes_max` per log and
//! [`SHARD_INFLIGHT_WRITE_BYTES_MAX`] per shard in flight. Completed writes are
//! reaped in file order, which is when `written` moves. A sync drains them and
//! also writes the partial last page, zero padded, which the next write
//! rewrites. The active segment file is grown ahead of the writes
//! (fallocate), because a size-extending direct write is serialized by the
//! file system and handed to an io_uring worker thread. Readers of recent
//! offsets are served from the tail cache without I/O; older data comes from
//! disk through a read-ahead of aligned reads kept in flight, copied once
//! from the DMA buffers into the `Bytes` a read returns.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use crate::backend::{align_down, align_up, Backend, SegmentFile};
use crate::batch::{self, BatchHeader, BatchWalker};
use crate::checkpoint::{Checkpoint, CleanShutdown, RecoveryPoint};
use crate::config::{FlushPolicy, LogConfig};
use crate::error::{StorageError, StorageResult};
use crate::index::SegmentIndex;

const CHECKPOINT_FILE: &str = "partition.checkpoint";
/// The active segment's [`RecoveryPoint`].
const RECOVERY_POINT_FILE: &str = "partition.recovery";
/// Bytes read per step while scanning a segment during recovery.
const RECOVERY_READ_BYTES: usize = 8 << 20;

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
        }
    }

    /// Where the next whole-page write starts.
    fn submit_pos(&self) -> u64 {
        self.inflight
            .back()
            .map_or(align_down(self.written), |w| w.end)
    }

    fn inflight_bytes(&self) -> u64 {
        self.inflight.iter().map(|w| w.bytes).sum()
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

/// What [`PartitionLog::write_out`] wrote: everything below `until` (bytes)
/// and `covered` (offsets), ending with batch `last`.
struct WrittenOut {
    covered: i64,
    until: u64,
    last: Option<BatchMark>,
}

type PendingIo = Pin<Box<dyn Future<Output = StorageResult<()>>>>;

/// One direct write of the write-behind in flight: `bytes` ending at `end`.
struct InflightWrite {
    end: u64,
    bytes: u64,
    fut: PendingIo,
    _permit: WritePermit,
}

/// Bytes counted against the shard's in-flight write budget until dropped.
/// Taken before the first await of a submission, so concurrent flushes of
/// many partitions cannot all pass the check before any of them counts.
struct WritePermit {
    budget: Rc<FileBudget>,
    bytes: u64,
}

impl WritePermit {
    fn new(budget: &Rc<FileBudget>, bytes: u64) -> Self {
        let b = &budget.inflight_write;
        b.set(b.get() + bytes);
        WritePermit {
            budget: budget.clone(),
            bytes,
        }
    }
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        let b = &self.budget.inflight_write;
        b.set(b.get().saturating_sub(self.bytes));
    }
}

/// Smallest and largest step by which an active segment file is grown ahead
/// of its writes. The step follows the segment's size (a busy partition
/// grows in large steps, 1,000 quiet ones do not each reserve 64 MiB of disk).
const PREALLOCATE_STEP_BYTES_MIN: u64 = 1 << 20;
const PREALLOCATE_STEP_BYTES_MAX: u64 = 64 << 20;

struct TailBatch {
    base_offset: i64,
    last_offset: i64,
    position: u64,
    data: Bytes,
}

/// A disk read's buffer, as the backend returned it (no copy).
type ReadPart = Box<dyn std::ops::Deref<Target = [u8]>>;
type PendingRead = Pin<Box<dyn Future<Output = StorageResult<ReadPart>>>>;

/// Read-ahead parts: at least this many per `read_ahead_bytes` (fio keeps 8
/// reads in flight to reach the device's rate), each a power of two (the
/// DMA arena is a buddy allocator) between these sizes.
const READ_AHEAD_PARTS: u64 = 8;
const READ_PART_BYTES_MIN: u64 = 64 << 10;
const READ_PART_BYTES_MAX: u64 = 1 << 20;

/// An aligned disk read of a stream; bytes `[pos, valid_end)` of it hold log
/// data (the rest lies past what was written when it was issued, or past
/// the end of the file).
struct StreamPart<T> {
    pos: u64,
    valid_end: u64,
    data: T,
}

/// A sequential reader's read-ahead: up to `read_ahead_bytes` of aligned
/// disk reads kept in flight ahead of the consumer, so the device queue never
/// drains while the shard copies what already arrived. Batches are copied
/// once, from the DMA buffers straight into the `Bytes` a read returns.
struct ReadStream<F> {
    segment_base: i64,
    /// File for closed segments (kept open while the stream lives).
    file: Rc<Handle<F>>,
    /// Position of the next batch not yet returned.
    pos: u64,
    /// First offset not yet returned from the stream.
    next_offset: i64,
    /// Reads that completed, by position (they may overlap where a read was
    /// repeated because the active segment grew).
    ready: VecDeque<StreamPart<ReadPart>>,
    /// Reads in flight, in issue order.
    parts: VecDeque<StreamPart<PendingRead>>,
    /// Where the next read starts (aligned).
    next_pos: u64,
    /// End of the valid bytes of the reads issued so far.
    issued_end: u64,
}

impl<F> ReadStream<F> {
    fn buffered_bytes(&self) -> usize {
        self.ready.iter().map(|r| r.data.len()).sum()
    }

    /// End of the valid bytes contiguous from `pos` in completed reads.
    fn covered_end(&self) -> u64 {
        let mut end = self.pos;
        for r in &self.ready {
            if r.pos <= end && r.valid_end > end {
                end = r.valid_end;
            }
        }
        end
    }

    /// Copies file bytes `[at, at + len)`, which completed reads cover.
    fn copy_out(&self, mut at: u64, len: u64, mut put: impl FnMut(&[u8])) {
        let end = at + len;
        while at < end {
            let r = self
                .ready
                .iter()
                .rev()
                .find(|r| r.pos <= at && at < r.valid_end)
                .expect("read-ahead covers what it reported");
            let stop = end.min(r.valid_end);
            put(&r.data[(at - r.pos) as usize..(stop - r.pos) as usize]);
            at = stop;
        }
    }
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
    budget: Rc<FileBudget>,
    clock: Rc<dyn Fn() -> i64>,
}

impl<B: Backend> PartitionLog<B> {
    /// Opens (or creates) the log in `dir`, recovering after a crash:
    /// only the active segment is scanned, from its recovery point when one
    /// can be trusted (what was synced before it is not re-read), every
    /// batch's CRC is checked and a torn or corrupt tail is truncated.
    pub async fn open(
        backend: B,
        dir: impl Into<PathBuf>,
        config: LogConfig,
        budget: Rc<FileBudget>,
    ) -> StorageResult<Self> {
        Self::open_with_clock(backend, dir, config, budget, Rc::new(system_now_ms)).await
    }

    /// [`PartitionLog::open`] with an injected wall clock (milliseconds).
    pub async fn open_with_clock(
        backend: B,
        dir: impl Into<PathBuf>,
        config: LogConfig,
        budget: Rc<FileBudget>,
        clock: Rc<dyn Fn() -> i64>,
    ) -> StorageResult<Self> {
        config.validate()?;
        let dir = dir.into();
        backend.create_dir_all(&dir).await?;
        let names = backend.list_dir(&dir).await?;
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log"))
            .filter_map(|n| n.parse::<i64>().ok())
            .collect();
        bases.sort_unstable();
        let cp_path = dir.join(CHECKPOINT_FILE);
        let checkpoint = match backend.read_small(&cp_path).await? {
            None => None,
            Some(buf) => match Checkpoint::decode(&buf) {
                Ok(c) => Some(c),
                Err(reason) => {
                    warn!(path = %cp_path.display(), %reason, "partition checkpoint damaged; recovering from the segments");
                    None
                }
            },
        };
        let mut log_start_offset = checkpoint
            .as_ref()
            .map(|c| c.log_start_offset)
            .unwrap_or_else(|| bases.first().copied().unwrap_or(0));
        // Segments wholly below the log start were being deleted when we stopped.
        while bases.len() > 1 && bases[1] <= log_start_offset {
            let b = bases.remove(0);
            discard_segment_files(&backend, &dir, b).await?;
        }
        // Files handed to the reaper before a crash or restart.
        for name in names.iter().filter(|n| crate::reaper::is_deleted_name(n)) {
            backend.discard(&dir.join(name)).await?;
        }
        let now = clock();
        let active_base = match bases.last() {
            Some(b) => *b,
            None => {
                bases.push(log_start_offset);
                log_start_offset
            }
        };
        log_start_offset = log_start_offset.max(bases[0]);
        let mut closed = BTreeMap::new();
        for w in bases.windows(2) {
            let path = dir.join(segment_name(w[0], "log"));
            let file = backend.open_segment(&path, false).await?;
            let size = file.size().await?;
            file.close().await?;
            closed.insert(
                w[0],
                Segment {
                    base_offset: w[0],
                    next_offset: w[1],
                    size,
                    max_timestamp: None,
                    index: None,
                },
            );
        }
        let path = dir.join(segment_name(active_base, "log"));
        let file = open_budgeted(&backend, &budget, &path, true).await?;
        let file_bytes = file.get().size().await?;
        let clean = checkpoint
            .as_ref()
            .and_then(|c| c.clean_shutdown.clone())
            .filter(|c| {
                c.active_base_offset == active_base && c.active_segment_bytes <= file_bytes
            });
        let mut recovered = None;
        if let Some(c) = &clean {
            let off = backend
                .read_small(&dir.join(segment_name(active_base, "index")))
                .await?;
            let tim = backend
                .read_small(&dir.join(segment_name(active_base, "timeindex")))
                .await?;
            if let (Some(o), Some(t)) = (off, tim) {
                let next_rel = (c.log_end_offset - active_base) as u64;
                if let Some(idx) =
                    SegmentIndex::decode(&o, &t, c.active_segment_bytes, next_rel.max(1))
                {
                    recovered = Some((c.active_segment_bytes, c.log_end_offset, idx));
                }
            }
        }
        let mut recovery_position = 0;
        let mut scanned_bytes = 0;
        let mut last_batch = None;
        let (size, next_offset, index) = match recovered {
            Some(r) => r,
            None => {
                let start = match trusted_recovery_point(
                    &backend,
                    &dir,
                    file.get(),
                    active_base,
                    file_bytes,
                )
                .await?
                {
                    Some(start) => {
                        recovery_position = start.position;
                        start
                    }
                    None => ScanStart::segment_start(active_base),
                };
                if file_bytes > start.position {
                    info!(path = %path.display(), bytes = file_bytes, from = start.position,
                        "partition was not closed cleanly; recovering: checking every batch after the recovery point");
                }
                let cfg_interval = config.index_interval_bytes;
                let from = start.position;
                let found = scan_segment(
                    file.get(),
                    &path,
                    active_base,
                    file_bytes,
                    cfg_interval,
                    start,
                )
                .await?;
                scanned_bytes = found.size - from;
                last_batch = found.last;
                (found.size, found.next_offset, found.index)
            }
        };
        if file_bytes != size {
            if clean.is_none() {
                info!(path = %path.display(), truncated_bytes = file_bytes - size, valid_bytes = size,
                    "recovery cut the active segment after its last whole batch (zero padding, a torn write, or the corrupt batch reported above)");
            }
            file.get().truncate(size).await?;
        }
        file.get().sync().await?;
        let tail_page = if size % crate::backend::ALIGN_BYTES != 0 {
            let start = align_down(size);
            file.get()
                .read_at(start, (size - start) as usize)
                .await?
                .to_vec()
        } else {
            Vec::new()
        };
        let max_timestamp = index.times.last().map(|t| t.timestamp_ms).unwrap_or(-1);
        let log = PartitionLog {
            backend,
            dir,
            config: RefCell::new(config),
            state: RefCell::new(State {
                closed,
                active: Active::new(
                    Segment {
                        base_offset: active_base,
                        next_offset,
                        size,
                        max_timestamp: Some(max_timestamp),
                        index: Some(index),
                    },
                    file,
                    size,
                    tail_page,
                    now,
                ),
                log_start_offset: log_start_offset.min(next_offset),
                durable_offset: next_offset,
                recovery_scanned_bytes: scanned_bytes,
                tail: VecDeque::new(),
                tail_bytes: 0,
                stream: None,
                unsynced_messages: 0,
                unsynced_bytes: 0,
                first_unsynced_ms: None,
                is_closed: false,
            }),
            append_lock: async_lock::Mutex::new(()),
            io_lock: async_lock::Mutex::new(()),
            checkpoint_lock: async_lock::Mutex::new(()),
            budget,
            clock,
        };
        {
            let mut s = log.state.borrow_mut();
            s.active.last_batch = last_batch;
            s.active.recovery_position = recovery_position;
        }
        // The whole segment was synced above: after a long scan, record a
        // recovery point so the next crash does not repeat it.
        let interval = log.config.borrow().recovery_point_interval_bytes;
        if last_batch.is_some() && size >= recovery_position + interval {
            let out = WrittenOut {
                covered: next_offset,
                until: size,
                last: last_batch,
            };
            log.write_recovery_point(&out).await?;
        }
        // From here on a crash must rescan: drop the clean-shutdown marker.
        log.write_checkpoint(None).await?;
        debug!(dir = %log.dir.display(), log_start_offset, next_offset, "partition log opened");
        Ok(log)
    }

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

    /// Bytes of whole batches that recovery CRC-checked when this log was
    /// opened (0 after a clean shutdown; what follows the recovery point
    /// after a crash).
    pub fn recovery_scanned_bytes(&self) -> u64 {
        self.state.borrow().recovery_scanned_bytes
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
        let mut index_heap_bytes = s.active.seg.index.as_ref().map_or(0, |i| i.heap_bytes());
        for seg in s.closed.values() {
            index_heap_bytes += seg.index.as_ref().map_or(0, |i| i.heap_bytes());
        }
        LogStats {
            segments: s.closed.len() + 1,
            size_bytes: s.closed.values().map(|g| g.size).sum::<u64>() + s.active.seg.size,
            tail_cache_bytes: s.tail_bytes,
            read_cache_bytes: s.stream.as_ref().map_or(0, |c| c.buffered_bytes()),
            index_heap_bytes,
        }
    }

    fn check_open(&self) -> StorageResult<()> {
        if self.state.borrow().is_closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// Validates `batch` (header, length, CRC-32C), assigns its offsets and
    /// adds it to the log. Durable only after [`PartitionLog::sync`] covers it.
    pub async fn append(&self, batch: Bytes, leader_epoch: i32) -> StorageResult<AppendInfo> {
        self.append_as(batch, Some(leader_epoch)).await
    }

    /// A replication follower's append: `batch` already carries the leader's offsets and
    /// leader epoch, which are kept. Its base offset must be this log's end offset; a
    /// batch that does not continue the log is refused with
    /// [`StorageError::NonContiguousAppend`] and changes nothing.
    pub async fn append_replica(&self, batch: Bytes) -> StorageResult<AppendInfo> {
        self.append_as(batch, None).await
    }

    /// `leader_epoch`: Some for a leader's append (offsets assigned here), None for a
    /// follower's (offsets and epoch kept from the batch).
    async fn append_as(
        &self,
        batch: Bytes,
        leader_epoch: Option<i32>,
    ) -> StorageResult<AppendInfo> {
        let limit = self.config.borrow().batch_bytes_max;
        if batch.len() > limit {
            return Err(StorageError::BatchTooLarge {
                bytes: batch.len(),
                limit_bytes: limit,
            });
        }
        let header = batch::validate(&batch)?;
        let _order = self.append_lock.lock().await;
        self.check_open()?;
        if leader_epoch.is_none() {
            let end = self.log_end_offset();
            if header.base_offset != end {
                return Err(StorageError::NonContiguousAppend {
                    base_offset: header.base_offset,
                    log_end_offset: end,
                });
            }
        }
        let leader_epoch = leader_epoch.unwrap_or(header.partition_leader_epoch);
        let cfg = self.config.borrow().clone();
        let len = batch.len() as u64;
        if self.state.borrow().unwritten_bytes() + len > cfg.write_buffer_bytes_max as u64 {
            // Back-pressure: wait for the oldest writes until the batch fits.
            let _io = self.io_lock.lock().await;
            while self.state.borrow().unwritten_bytes() + len > cfg.write_buffer_bytes_max as u64 {
                self.submit_pages(true, false).await?;
                if !self.reap_one(true).await? {
                    break; // only the partial last page is left unwritten
                }
            }
        }
        if self.roll_due(len, header.last_offset_delta, &cfg) {
            let _io = self.io_lock.lock().await;
            self.roll().await?;
        }
        let buf = BytesMut::from(&batch[..]);
        let now = (self.clock)();
        let (info, chunk_ready) = self.add_to_tail(buf, &header, leader_epoch, now, &cfg);
        if chunk_ready {
            if let Some(_io) = self.io_lock.try_lock() {
                self.submit_pages(false, true).await?;
            }
        } else if self.state.borrow().active.inflight.front().is_some() {
            // Reap completed writes so their buffers go back to the arena
            // and the shard's in-flight budget to the other partitions.
            if let Some(_io) = self.io_lock.try_lock() {
                while self.reap_one(false).await? {}
            }
        }
        Ok(info)
    }

    /// The synchronous part of an append: assigns offsets, indexes the batch
    /// and adds it to the tail. Also says whether a whole write chunk waits.
    fn add_to_tail(
        &self,
        mut buf: BytesMut,
        header: &BatchHeader,
        leader_epoch: i32,
        now: i64,
        cfg: &LogConfig,
    ) -> (AppendInfo, bool) {
        let len = buf.len() as u64;
        let mut s = self.state.borrow_mut();
        let base = s.log_end_offset();
        batch::set_base_offset(&mut buf, base);
        batch::set_partition_leader_epoch(&mut buf, leader_epoch);
        let data = buf.freeze();
        let last = base + header.last_offset_delta as i64;
        let active = &mut s.active;
        let position = active.seg.size;
        let rel = (base - active.seg.base_offset) as u32;
        let max_ts = header.max_timestamp;
        if let Some(idx) = active.seg.index.as_mut() {
            idx.on_batch(
                rel,
                position as u32,
                len as u32,
                max_ts,
                cfg.index_interval_bytes,
            );
        }
        active.last_batch = Some(BatchMark {
            position,
            bytes: len as u32,
            crc: header.crc,
            last_offset: last,
        });
        active.seg.size += len;
        active.seg.next_offset = last + 1;
        active.seg.max_timestamp = Some(active.seg.max_timestamp.unwrap_or(-1).max(max_ts));
        s.tail.push_back(TailBatch {
            base_offset: base,
            last_offset: last,
            position,
            data,
        });
        s.tail_bytes += len as usize;
        s.unsynced_messages += header.record_count.max(1) as u64;
        s.unsynced_bytes += len;
        s.first_unsynced_ms.get_or_insert(now);
        trim_tail(&mut s, cfg.tail_cache_bytes_max);
        // Write-behind: once a whole chunk of pages is waiting, start writing
        // it without waiting for it, so the disk works while producers copy.
        // A task that holds `io_lock` (a sync, a roll) writes it out anyway.
        let chunk_ready =
            align_down(s.active.seg.size) >= s.active.submit_pos() + cfg.write_chunk_bytes as u64;
        let sync_due = match cfg.flush {
            FlushPolicy::EveryAppend => true,
            FlushPolicy::Threshold {
                messages,
                bytes,
                interval_ms,
            } => {
                s.unsynced_messages >= messages
                    || s.unsynced_bytes >= bytes
                    || s.first_unsynced_ms
                        .is_some_and(|t| now.saturating_sub(t) as u64 >= interval_ms)
            }
        };
        let info = AppendInfo {
            base_offset: base,
            last_offset: last,
            log_start_offset: s.log_start_offset,
            sync_due,
        };
        (info, chunk_ready)
    }

    fn roll_due(&self, len: u64, last_delta: i32, cfg: &LogConfig) -> bool {
        let s = self.state.borrow();
        let a = &s.active;
        if a.seg.size == 0 {
            return false;
        }
        let too_big = a.seg.size + len > cfg.segment_bytes;
        let rel_overflow =
            (a.seg.next_offset - a.seg.base_offset) + last_delta as i64 >= u32::MAX as i64;
        let too_old = cfg
            .segment_ms
            .is_some_and(|ms| (self.clock)().saturating_sub(a.created_ms) >= ms as i64);
        too_big || rel_overflow || too_old
    }

    /// Whether the flush policy wants a sync now (interval elapsed).
    pub fn sync_due(&self) -> bool {
        let s = self.state.borrow();
        if s.durable_offset >= s.log_end_offset() {
            return false;
        }
        match self.config.borrow().flush {
            FlushPolicy::EveryAppend => true,
            FlushPolicy::Threshold {
                messages,
                bytes,
                interval_ms,
            } => {
                s.unsynced_messages >= messages
                    || s.unsynced_bytes >= bytes
                    || s.first_unsynced_ms
                        .is_some_and(|t| (self.clock)().saturating_sub(t) as u64 >= interval_ms)
            }
        }
    }

    /// Bytes appended but not yet written to disk (in flight included).
    pub fn unwritten_bytes(&self) -> u64 {
        self.state.borrow().unwritten_bytes()
    }

    /// Bytes appended whose write has not been started: what a
    /// [`PartitionLog::flush`] would submit now (whole pages, at most).
    pub fn unsubmitted_bytes(&self) -> u64 {
        let s = self.state.borrow();
        s.active.seg.size - s.active.submit_pos().max(s.active.written)
    }

    /// Starts writing whole pages of unwritten data (no sync) and returns
    /// without waiting for them; earlier writes that completed are reaped.
    /// Lets a shard keep the disk busy between syncs: a shard that calls this
    /// for many partitions has all their writes in flight at once.
    pub async fn flush(&self) -> StorageResult<()> {
        let _io = self.io_lock.lock().await;
        self.check_open()?;
        self.submit_pages(true, true).await
    }

    /// Writes everything appended before this call to the segment file, the
    /// partial last page included, without fdatasync: what was written
    /// survives a crash of the process (kill -9), not a power loss. This is
    /// what `acks=1` waits for. Calls that arrive while a write runs are
    /// covered by the next one together, like [`PartitionLog::sync`].
    pub async fn write_through(&self) -> StorageResult<()> {
        let _io = self.io_lock.lock().await;
        self.check_open()?;
        if self.state.borrow().unwritten_bytes() == 0 {
            return Ok(());
        }
        self.write_out().await.map(|_| ())
    }

    /// Makes everything appended before this call durable and returns the
    /// durable offset. Calls that arrive while a sync runs are covered by
    /// the next one together (group commit).
    pub async fn sync(&self) -> StorageResult<i64> {
        let target = self.log_end_offset();
        let _io = self.io_lock.lock().await;
        self.check_open()?;
        if self.state.borrow().durable_offset >= target {
            return Ok(self.durable_offset());
        }
        self.sync_locked().await
    }

    /// The body of [`PartitionLog::sync`]; caller holds `io_lock`.
    async fn sync_locked(&self) -> StorageResult<i64> {
        let out = self.write_out().await?;
        let file = self.state.borrow().active.file.clone();
        file.get().sync().await?;
        let record = {
            let mut s = self.state.borrow_mut();
            s.durable_offset = s.durable_offset.max(out.covered);
            if out.covered >= s.log_end_offset() {
                s.unsynced_messages = 0;
                s.unsynced_bytes = 0;
                s.first_unsynced_ms = None;
            }
            let interval = self.config.borrow().recovery_point_interval_bytes;
            out.until >= s.active.recovery_position + interval
        };
        if record {
            self.write_recovery_point(&out).await?;
        }
        Ok(self.durable_offset())
    }

    /// Records that recovery may start at `out.until` of the active segment,
    /// which the caller has just synced: first the index files (so the
    /// recovery point never names entries that are not on disk), then the
    /// recovery point itself. Caller holds `io_lock`.
    async fn write_recovery_point(&self, out: &WrittenOut) -> StorageResult<()> {
        let Some(last) = out.last else {
            return Ok(());
        };
        assert_eq!(
            last.position + last.bytes as u64,
            out.until,
            "recovery point not at the end of its last batch"
        );
        assert_eq!(
            last.last_offset + 1,
            out.covered,
            "recovery point offset not after its last batch"
        );
        let (base, index) = {
            let s = self.state.borrow();
            let a = &s.active;
            (a.seg.base_offset, a.seg.index.clone().unwrap_or_default())
        };
        let rel_next = out.covered - base;
        let rp = RecoveryPoint {
            active_base_offset: base,
            next_offset: out.covered,
            position: out.until,
            offset_entries: index
                .offsets
                .partition_point(|e| (e.position as u64) < out.until)
                as u32,
            time_entries: index
                .times
                .partition_point(|e| (e.relative_offset as i64) < rel_next)
                as u32,
            last_batch_position: last.position,
            last_batch_crc: last.crc,
        };
        self.write_index_files(base, &index).await?;
        self.backend
            .write_small_atomic(&self.dir.join(RECOVERY_POINT_FILE), &rp.encode())
            .await?;
        let mut s = self.state.borrow_mut();
        if s.active.seg.base_offset == base {
            s.active.recovery_position = out.until;
        }
        Ok(())
    }

    /// Completes the oldest in-flight write: waits for it if `wait`, else
    /// takes it only if it is done. Returns whether one completed. After a
    /// failed write the others are waited out and the next write starts over
    /// from `written`. Caller holds `io_lock`.
    async fn reap_one(&self, wait: bool) -> StorageResult<bool> {
        let Some(mut w) = self.state.borrow_mut().active.inflight.pop_front() else {
            return Ok(false);
        };
        let done = if wait {
            Some(w.fut.as_mut().await)
        } else {
            futures_lite::future::poll_once(w.fut.as_mut()).await
        };
        match done {
            None => {
                self.state.borrow_mut().active.inflight.push_front(w);
                Ok(false)
            }
            Some(Ok(())) => {
                let cache_max = self.config.borrow().tail_cache_bytes_max;
                let mut s = self.state.borrow_mut();
                assert!(
                    w.end > s.active.written && w.end % crate::backend::ALIGN_BYTES == 0,
                    "write-behind reaped out of order: end {} written {}",
                    w.end,
                    s.active.written
                );
                s.active.written = w.end;
                s.active.tail_page.clear();
                trim_tail(&mut s, cache_max);
                Ok(true)
            }
            Some(Err(e)) => {
                loop {
                    let next = self.state.borrow_mut().active.inflight.pop_front();
                    match next {
                        Some(mut w) => {
                            let _ = w.fut.as_mut().await;
                        }
                        None => break,
                    }
                }
                Err(e)
            }
        }
    }

    /// Submits direct writes of unwritten whole pages in `write_chunk_bytes`
    /// pieces (a shorter last piece only if `short_ok`) without waiting for
    /// them, except to keep the bytes in flight within
    /// `write_buffer_bytes_max`. With `within_shard_budget` it stops instead
    /// where the shard's in-flight budget would be exceeded (the pages stay
    /// for a later flush); callers that must write everything pass false.
    /// Caller holds `io_lock`.
    async fn submit_pages(&self, short_ok: bool, within_shard_budget: bool) -> StorageResult<()> {
        let (chunk, inflight_max) = {
            let c = self.config.borrow();
            (c.write_chunk_bytes as u64, c.write_buffer_bytes_max as u64)
        };
        loop {
            while self.reap_one(false).await? {}
            let (start, stop, inflight) = {
                let s = self.state.borrow();
                let a = &s.active;
                (a.submit_pos(), align_down(a.seg.size), a.inflight_bytes())
            };
            if stop <= start {
                return Ok(());
            }
            let len = chunk.min(stop - start);
            if len < chunk && !short_ok {
                return Ok(());
            }
            // Within the budget (a flush), power-of-two lengths: the DMA arena
            // is a buddy allocator, so a 272 KiB buffer would take 512 KiB of
            // it (and then overflow to page-faulting heap buffers). The rest
            // waits to grow into a larger write rather than going out as a
            // small one: the device's cost is per request. A drain writes it
            // all, in as few writes as it can.
            let short = len < chunk;
            let len = if within_shard_budget {
                1u64 << len.ilog2()
            } else {
                len
            };
            if inflight > 0 && inflight + len > inflight_max {
                self.reap_one(true).await?;
                continue;
            }
            if within_shard_budget
                && self.budget.inflight_write.get() + len > self.budget.inflight_write_bytes_max
            {
                return Ok(());
            }
            let permit = WritePermit::new(&self.budget, len);
            self.ensure_allocated(start + len).await?;
            let mut fut: PendingIo = {
                let s = self.state.borrow();
                let a = &s.active;
                let mut buf = a.file.get().alloc(len as usize);
                fill(&mut buf, start, a, &s.tail, start + len);
                let file = a.file.clone();
                Box::pin(async move { file.get().write_at(buf, start).await })
            };
            // Poll once so the write is queued to the device now.
            if let Some(r) = futures_lite::future::poll_once(&mut fut).await {
                fut = Box::pin(async move { r });
            }
            self.state
                .borrow_mut()
                .active
                .inflight
                .push_back(InflightWrite {
                    end: start + len,
                    bytes: len,
                    fut,
                    _permit: permit,
                });
            if short && within_shard_budget {
                return Ok(());
            }
        }
    }

    /// Grows the active segment file ahead of a write that ends at `end`, so
    /// the write does not extend the file. The next step is started before
    /// it is needed (once the writes are within half a step of the end) and
    /// not waited for, so appends rarely wait on fallocate. Caller holds
    /// `io_lock`.
    async fn ensure_allocated(&self, end: u64) -> StorageResult<()> {
        loop {
            self.settle_preallocation(false).await;
            let (file, allocated, step, cap, pending) = {
                let s = self.state.borrow();
                let a = &s.active;
                if a.preallocate_failed {
                    return Ok(());
                }
                let step = a
                    .seg
                    .size
                    .clamp(PREALLOCATE_STEP_BYTES_MIN, PREALLOCATE_STEP_BYTES_MAX);
                // Not past the segment's roll size unless this write already is.
                let cap = align_up(self.config.borrow().segment_bytes);
                let pending = a.preallocating.is_some();
                (a.file.clone(), a.allocated, step, cap, pending)
            };
            if end <= allocated {
                if !pending && end + step / 2 > allocated && allocated < cap {
                    self.start_preallocation(&file, (allocated + step).min(cap))
                        .await;
                }
                return Ok(());
            }
            if pending {
                self.settle_preallocation(true).await;
                continue;
            }
            let target = align_up(end.max(allocated + step)).min(cap.max(end));
            self.start_preallocation(&file, target).await;
            self.settle_preallocation(true).await;
            return Ok(());
        }
    }

    /// Starts growing the active segment file to `target` without waiting.
    async fn start_preallocation(&self, file: &Rc<Handle<B::File>>, target: u64) {
        let f = file.clone();
        let mut fut: PendingIo = Box::pin(async move { f.get().preallocate(target).await });
        // Poll once so the fallocate is queued now.
        if let Some(r) = futures_lite::future::poll_once(&mut fut).await {
            fut = Box::pin(async move { r });
        }
        self.state.borrow_mut().active.preallocating = Some((target, fut));
    }

    /// Takes the result of a started preallocation: waits for it if `wait`,
    /// else only if it is done. A failure switches preallocation off for
    /// this segment (writes then extend the file, slower but correct).
    async fn settle_preallocation(&self, wait: bool) {
        let Some((target, mut fut)) = self.state.borrow_mut().active.preallocating.take() else {
            return;
        };
        let done = if wait {
            Some(fut.as_mut().await)
        } else {
            futures_lite::future::poll_once(fut.as_mut()).await
        };
        let mut s = self.state.borrow_mut();
        match done {
            None => s.active.preallocating = Some((target, fut)),
            Some(Ok(())) => s.active.allocated = s.active.allocated.max(target),
            Some(Err(e)) => {
                debug!(dir = %self.dir.display(), error = %e, "preallocation failed; writing past the end of the file instead");
                s.active.preallocate_failed = true;
            }
        }
    }

    /// Writes every unwritten byte of the active segment, the zero-padded
    /// partial last page included, and waits for all of it. Caller holds
    /// `io_lock`.
    async fn write_out(&self) -> StorageResult<WrittenOut> {
        let out = self.write_out_all().await?;
        // A fallocate still running could grow the file again after a seal
        // or truncation that follows this: finish it first.
        self.settle_preallocation(true).await;
        Ok(out)
    }

    /// The body of [`PartitionLog::write_out`].
    async fn write_out_all(&self) -> StorageResult<WrittenOut> {
        self.submit_pages(true, false).await?;
        while self.reap_one(true).await? {}
        let chunk = self.config.borrow().write_chunk_bytes as u64;
        let end = self.state.borrow().active.seg.size;
        self.ensure_allocated(align_up(end)).await?;
        let (file, writes, out, new_tail_page) = {
            let s = self.state.borrow();
            let a = &s.active;
            assert!(a.inflight.is_empty(), "partial write with writes in flight");
            let until = a.seg.size;
            let out = WrittenOut {
                covered: s.log_end_offset(),
                until,
                last: a.last_batch,
            };
            if until <= a.written {
                return Ok(out);
            }
            let start = align_down(a.written);
            let stop = align_up(until);
            let mut writes = Vec::new();
            let mut pos = start;
            while pos < stop {
                let len = chunk.min(stop - pos);
                let mut buf = a.file.get().alloc(len as usize);
                fill(&mut buf, pos, a, &s.tail, until);
                writes.push((pos, buf));
                pos += len;
            }
            let page = align_down(until);
            let mut new_tail_page = vec![0u8; (until - page) as usize];
            if !new_tail_page.is_empty() {
                fill(&mut new_tail_page, page, a, &s.tail, until);
            }
            (a.file.clone(), writes, out, new_tail_page)
        };
        // Non-overlapping chunks may complete in any order; all must finish
        // before `written` moves, so a reader never sees a hole.
        let mut futs = Vec::with_capacity(writes.len());
        for (pos, buf) in writes {
            futs.push(file.get().write_at(buf, pos));
        }
        futures_util::future::try_join_all(futs).await?;
        let mut s = self.state.borrow_mut();
        s.active.written = out.until;
        s.active.tail_page = new_tail_page;
        let cache_max = self.config.borrow().tail_cache_bytes_max;
        trim_tail(&mut s, cache_max);
        Ok(out)
    }
}

/// Copies the log bytes of file range `[pos, pos + buf.len())` into `buf`:
/// the on-disk partial page first, then tail batches, zeros past `until`.
fn fill<F>(buf: &mut [u8], pos: u64, a: &Active<F>, tail: &VecDeque<TailBatch>, until: u64) {
    let end = (pos + buf.len() as u64).min(until);
    // Buffers come unzeroed: the padding after the data must read as zeros
    // (recovery stops at a zero batch length).
    buf[(end.max(pos) - pos) as usize..].fill(0);
    let page = align_down(a.written);
    let copy = |buf: &mut [u8], src: &[u8], src_pos: u64| {
        let lo = src_pos.max(pos);
        let hi = (src_pos + src.len() as u64).min(end);
        if lo < hi {
            buf[(lo - pos) as usize..(hi - pos) as usize]
                .copy_from_slice(&src[(lo - src_pos) as usize..(hi - src_pos) as usize]);
        }
    };
    copy(buf, &a.tail_page, page);
    // Tail batches are sorted by position: start at the first one that can overlap.
    let first = tail.partition_point(|t| t.position + (t.data.len() as u64) <= pos);
    for t in tail.range(first..) {
        if t.position >= end {
            break;
        }
        copy(buf, &t.data, t.position);
    }
}

/// Drops cached tail batches that are on disk, oldest first, while the
/// cache is over its limit. Unwritten batches always stay.
fn trim_tail<F>(s: &mut State<F>, cache_max: usize) {
    while s.tail_bytes > cache_max {
        match s.tail.front() {
            Some(t) if t.position + t.data.len() as u64 <= s.active.written => {
                s.tail_bytes -= t.data.len();
                s.tail.pop_front();
            }
            _ => break,
        }
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

/// Hands a segment's files to the reaper (see [`crate::reaper`]): their names go now,
/// their space is freed off the shard. For segments below the log start only: a crash
/// before the renames are durable brings the old names back, and open removes them again.
async fn discard_segment_files<B: Backend>(
    backend: &B,
    dir: &Path,
    base: i64,
) -> StorageResult<()> {
    for ext in ["log", "index", "timeindex"] {
        backend.discard(&dir.join(segment_name(base, ext))).await?;
    }
    Ok(())
}

async fn remove_segment_files<B: Backend>(backend: &B, dir: &Path, base: i64) -> StorageResult<()> {
    for ext in ["log", "index", "timeindex"] {
        backend
            .remove_file(&dir.join(segment_name(base, ext)))
            .await?;
    }
    Ok(())
}

/// The recovery point of active segment `base`, if it can be trusted: it
/// decodes, names this segment, lies inside the file, its index prefix
/// decodes, and the batch it says ends at its position is there, whole, with
/// the recorded CRC and last offset. Anything else means a full scan.
async fn trusted_recovery_point<B: Backend>(
    backend: &B,
    dir: &Path,
    file: &B::File,
    base: i64,
    file_bytes: u64,
) -> StorageResult<Option<ScanStart>> {
    let path = dir.join(RECOVERY_POINT_FILE);
    let Some(buf) = backend.read_small(&path).await? else {
        return Ok(None);
    };
    let rp = match RecoveryPoint::decode(&buf) {
        Ok(rp) => rp,
        Err(reason) => {
            warn!(path = %path.display(), %reason, "recovery point damaged; scanning the whole active segment");
            return Ok(None);
        }
    };
    if rp.active_base_offset != base {
        return Ok(None); // left from an earlier segment
    }
    let distrust = |reason: &str| {
        warn!(path = %path.display(), position = rp.position, next_offset = rp.next_offset, reason,
            "recovery point does not match the segment; scanning the whole active segment");
        Ok(None)
    };
    if rp.position > file_bytes
        || rp.last_batch_position >= rp.position
        || rp.next_offset <= base
        || rp.position - rp.last_batch_position > i32::MAX as u64
    {
        return distrust("outside the segment file");
    }
    let off = backend
        .read_small(&dir.join(segment_name(base, "index")))
        .await?;
    let tim = backend
        .read_small(&dir.join(segment_name(base, "timeindex")))
        .await?;
    let (Some(off), Some(tim)) = (off, tim) else {
        return distrust("index files missing");
    };
    let (o_len, t_len) = (
        rp.offset_entries as usize * 8,
        rp.time_entries as usize * 12,
    );
    if off.len() < o_len || tim.len() < t_len {
        return distrust("index files shorter than recorded");
    }
    let next_rel = (rp.next_offset - base) as u64;
    let Some(index) = SegmentIndex::decode(&off[..o_len], &tim[..t_len], rp.position, next_rel)
    else {
        return distrust("index prefix damaged");
    };
    let len = (rp.position - rp.last_batch_position) as usize;
    let last = file.read_at(rp.last_batch_position, len).await?;
    match batch::validate(&last) {
        Ok(h)
            if h.total_bytes() == len
                && h.crc == rp.last_batch_crc
                && h.last_offset() + 1 == rp.next_offset => {}
        _ => return distrust("last batch differs"),
    }
    Ok(Some(ScanStart {
        position: rp.position,
        next_offset: rp.next_offset,
        index,
    }))
}

/// Where a segment scan starts: the segment start, or a recovery point with
/// the index of what lies before it.
struct ScanStart {
    position: u64,
    next_offset: i64,
    index: SegmentIndex,
}

impl ScanStart {
    fn segment_start(base_offset: i64) -> Self {
        ScanStart {
            position: 0,
            next_offset: base_offset,
            index: SegmentIndex::default(),
        }
    }
}

/// What a segment scan found: valid bytes, next offset, the index, and the
/// last whole batch.
struct Scanned {
    size: u64,
    next_offset: i64,
    index: SegmentIndex,
    last: Option<BatchMark>,
}

/// Reads a segment from `start`, checking every batch's CRC, and returns
/// what it found. Stops at the first torn, corrupt or out-of-order batch.
async fn scan_segment<F: SegmentFile>(
    file: &F,
    path: &Path,
    base_offset: i64,
    file_bytes: u64,
    interval_bytes: u64,
    start: ScanStart,
) -> StorageResult<Scanned> {
    let mut index = start.index;
    let mut pos = start.position;
    let mut next_offset = start.next_offset;
    let mut last = None;
    let mut carry = BytesMut::new();
    let mut read_pos = start.position;
    loop {
        if read_pos >= file_bytes {
            break;
        }
        let want = RECOVERY_READ_BYTES.min((file_bytes - read_pos) as usize);
        let chunk = read_concurrent(file, read_pos, want, 1 << 20).await?;
        if chunk.is_empty() {
            break;
        }
        read_pos += chunk.len() as u64;
        carry.extend_from_slice(&chunk);
        let mut walker = BatchWalker::new(&carry, true);
        let mut bad = false;
        for (at, h) in walker.by_ref() {
            if h.base_offset < next_offset {
                bad = true;
                warn!(path = %path.display(), position = pos + at as u64, base_offset = h.base_offset,
                    expected_at_least = next_offset, "batch offsets go backwards; truncating here");
                pos += at as u64;
                break;
            }
            let rel = (h.base_offset - base_offset) as u32;
            index.on_batch(
                rel,
                (pos + at as u64) as u32,
                h.total_bytes() as u32,
                h.max_timestamp,
                interval_bytes,
            );
            next_offset = h.last_offset() + 1;
            last = Some(BatchMark {
                position: pos + at as u64,
                bytes: h.total_bytes() as u32,
                crc: h.crc,
                last_offset: h.last_offset(),
            });
        }
        if bad {
            return Ok(Scanned {
                size: pos,
                next_offset,
                index,
                last,
            });
        }
        let consumed = walker.position();
        let stop = walker.stopped_at().map(|e| e.to_string());
        pos += consumed as u64;
        let _ = carry.split_to(consumed);
        if let Some(reason) = stop {
            let all_zero = carry.iter().all(|b| *b == 0);
            if !all_zero {
                warn!(path = %path.display(), position = pos, %reason, "corrupt batch in the active segment; truncating here");
            }
            break;
        }
        if carry.len() > 64 << 20 {
            // A "batch" larger than any we accept: the length field is garbage.
            break;
        }
    }
    Ok(Scanned {
        size: pos,
        next_offset,
        index,
        last,
    })
}

impl<B: Backend> PartitionLog<B> {
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

    /// Makes a segment file exact and durable (drops the zero padding of the
    /// last page) and writes its index files.
    async fn seal_segment(
        &self,
        file: &Handle<B::File>,
        size: u64,
        base: i64,
        index: &SegmentIndex,
    ) -> StorageResult<()> {
        file.get().truncate(size).await?;
        file.get().sync().await?;
        self.write_index_files(base, index).await
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
            let s = self.state.borrow();
            Checkpoint {
                log_start_offset: s.log_start_offset,
                recovery_point: s.durable_offset,
                clean_shutdown: clean,
                leader_epochs: Vec::new(),
            }
        };
        self.backend
            .write_small_atomic(&self.dir.join(CHECKPOINT_FILE), &cp.encode())
            .await
    }

    /// Closes the active segment and starts a new one at the log end.
    /// Caller holds `io_lock` (and `append_lock` when called from append).
    async fn roll(&self) -> StorageResult<()> {
        let covered = self.write_out().await?.covered;
        let (file, size, base, index, next) = {
            let s = self.state.borrow();
            let a = &s.active;
            (
                a.file.clone(),
                a.seg.size,
                a.seg.base_offset,
                a.seg.index.clone().unwrap_or_default(),
                a.seg.next_offset,
            )
        };
        // Drop the zero padding of the last page: closed segments are exact.
        self.seal_segment(&file, size, base, &index).await?;
        let path = self.dir.join(segment_name(next, "log"));
        let new_file = self.open_budgeted(&path, true).await?;
        self.backend.sync_dir(&self.dir).await?;
        let now = (self.clock)();
        let mut s = self.state.borrow_mut();
        let mut old_index = index;
        old_index.shrink();
        let old = std::mem::replace(
            &mut s.active,
            Active::new(
                Segment {
                    base_offset: next,
                    next_offset: next,
                    size: 0,
                    max_timestamp: Some(-1),
                    index: Some(SegmentIndex::default()),
                },
                new_file,
                0,
                Vec::new(),
                now,
            ),
        );
        s.closed.insert(
            base,
            Segment {
                base_offset: base,
                next_offset: next,
                size,
                max_timestamp: old.seg.max_timestamp,
                index: Some(old_index),
            },
        );
        s.durable_offset = s.durable_offset.max(covered);
        s.tail.clear();
        s.tail_bytes = 0;
        info!(dir = %self.dir.display(), segment = next, previous_bytes = size, "segment rolled");
        Ok(())
    }

    /// Loads (or rebuilds) the index of closed segment `base` if needed.
    async fn ensure_index(&self, base: i64) -> StorageResult<()> {
        let (size, next) = {
            let s = self.state.borrow();
            match s.closed.get(&base) {
                Some(seg) if seg.index.is_none() => (seg.size, seg.next_offset),
                _ => return Ok(()),
            }
        };
        let o = self
            .backend
            .read_small(&self.dir.join(segment_name(base, "index")))
            .await?;
        let t = self
            .backend
            .read_small(&self.dir.join(segment_name(base, "timeindex")))
            .await?;
        let decoded = match (o, t) {
            (Some(o), Some(t)) => SegmentIndex::decode(&o, &t, size, (next - base) as u64),
            _ => None,
        };
        let index = match decoded {
            Some(i) => i,
            None => {
                let path = self.dir.join(segment_name(base, "log"));
                warn!(path = %path.display(), "segment index missing or damaged; rebuilding it");
                let file = self.backend.open_segment(&path, false).await?;
                let interval = self.config.borrow().index_interval_bytes;
                let start = ScanStart::segment_start(base);
                let idx = scan_segment(&file, &path, base, size, interval, start)
                    .await?
                    .index;
                file.close().await?;
                self.write_index_files(base, &idx).await?;
                idx
            }
        };
        let mut s = self.state.borrow_mut();
        if let Some(seg) = s.closed.get_mut(&base) {
            seg.max_timestamp = Some(index.times.last().map_or(-1, |t| t.timestamp_ms));
            seg.index = Some(index);
        }
        Ok(())
    }

    /// Reads whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (at least one batch, even a larger one, as Kafka does so
    /// a consumer never gets stuck). Empty at the log end.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> StorageResult<LogRead> {
        self.check_open()?;
        let (lso, leo) = {
            let s = self.state.borrow();
            (s.log_start_offset, s.log_end_offset())
        };
        if offset < lso || offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: lso,
                log_end_offset: leo,
            });
        }
        let mut out = LogRead {
            batches: Vec::new(),
            log_start_offset: lso,
            log_end_offset: leo,
        };
        if offset == leo {
            return Ok(out);
        }
        // Recent data: straight from the tail cache, no I/O, no copy.
        {
            let s = self.state.borrow();
            if s.tail.front().is_some_and(|t| t.base_offset <= offset) {
                let i = s.tail.partition_point(|t| t.last_offset < offset);
                let mut total = 0usize;
                for t in s.tail.range(i..) {
                    if total > 0 && total + t.data.len() > max_bytes {
                        break;
                    }
                    total += t.data.len();
                    out.batches.push(t.data.clone());
                }
                return Ok(out);
            }
        }
        let seg_base = {
            let s = self.state.borrow();
            if offset >= s.active.seg.base_offset {
                s.active.seg.base_offset
            } else {
                match s.closed.range(..=offset).next_back() {
                    Some((b, _)) => *b,
                    None => return Ok(out),
                }
            }
        };
        self.ensure_index(seg_base).await?;
        let (start_pos, limit, active) = {
            let s = self.state.borrow();
            let rel = (offset - seg_base) as u32;
            if seg_base == s.active.seg.base_offset {
                let pos = s
                    .active
                    .seg
                    .index
                    .as_ref()
                    .map_or(0, |i| i.position_for(rel)) as u64;
                (pos, s.active.written, true)
            } else {
                let seg = &s.closed[&seg_base];
                let pos = seg.index.as_ref().map_or(0, |i| i.position_for(rel)) as u64;
                (pos, seg.size, false)
            }
        };
        // Continue the sequential stream if this read picks up where it
        // stopped; otherwise start a new one at the indexed position.
        let reuse = {
            let s = self.state.borrow();
            s.stream.as_ref().is_some_and(|st| {
                st.segment_base == seg_base && st.pos >= start_pos && offset >= st.next_offset
            })
        };
        let mut st = if reuse {
            self.state
                .borrow_mut()
                .stream
                .take()
                .expect("checked above")
        } else {
            self.state.borrow_mut().stream = None;
            let file = if active {
                self.state.borrow().active.file.clone()
            } else {
                let path = self.dir.join(segment_name(seg_base, "log"));
                self.open_budgeted(&path, false).await?
            };
            ReadStream {
                segment_base: seg_base,
                file,
                pos: start_pos,
                next_offset: offset,
                ready: VecDeque::new(),
                parts: VecDeque::new(),
                next_pos: align_down(start_pos),
                issued_end: align_down(start_pos),
            }
        };
        let read_ahead = self.config.borrow().read_ahead_bytes as u64;
        let part_bytes = (read_ahead / READ_AHEAD_PARTS)
            .clamp(READ_PART_BYTES_MIN, READ_PART_BYTES_MAX)
            .next_power_of_two();
        let depth = (read_ahead / part_bytes).max(1) as usize;
        let mut total = 0usize;
        let mut full = false;
        let mut data = BytesMut::new();
        let mut ranges = Vec::new();
        loop {
            let header_end = st.pos + batch::HEADER_BYTES as u64;
            if !self
                .stream_fill(&mut st, header_end, limit, part_bytes, depth)
                .await?
            {
                break;
            }
            let mut head = [0u8; batch::HEADER_BYTES];
            let mut at = 0;
            st.copy_out(st.pos, head.len() as u64, |b| {
                head[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            });
            let Ok(h) = BatchHeader::parse(&head) else {
                break; // not a batch: what the caller gets ends here
            };
            let len = h.total_bytes();
            if st.pos + len as u64 > limit {
                break;
            }
            if h.last_offset() < offset {
                st.pos += len as u64; // before the offset asked for
                continue;
            }
            if total > 0 && total + len > max_bytes {
                full = true;
                break;
            }
            let batch_end = st.pos + len as u64;
            if !self
                .stream_fill(&mut st, batch_end, limit, part_bytes, depth)
                .await?
            {
                break;
            }
            if data.capacity() - data.len() < len {
                // Once: what this read returns at most, so no batch is copied twice.
                let most = (max_bytes - total).min((limit - st.pos) as usize);
                data.reserve(len.max(most));
            }
            let at = data.len();
            st.copy_out(st.pos, len as u64, |b| data.extend_from_slice(b));
            ranges.push(at..at + len);
            total += len;
            st.pos += len as u64;
            st.next_offset = h.last_offset() + 1;
            if total >= max_bytes {
                full = true;
                break;
            }
        }
        let data = data.freeze();
        out.batches
            .extend(ranges.into_iter().map(|r| data.slice(r)));
        if active {
            self.state.borrow_mut().stream = Some(st);
            // Reached what is on disk of the active segment: go on from the tail.
            if !full {
                let s = self.state.borrow();
                let next = match out.batches.last() {
                    Some(b) => BatchHeader::parse(b)?.last_offset() + 1,
                    None => offset,
                };
                let i = s.tail.partition_point(|t| t.last_offset < next);
                for t in s.tail.range(i..) {
                    if t.base_offset > next && !out.batches.is_empty() {
                        break; // not contiguous with what we read: let the next fetch ask
                    }
                    if total > 0 && total + t.data.len() > max_bytes {
                        break;
                    }
                    total += t.data.len();
                    out.batches.push(t.data.clone());
                }
            }
        } else {
            self.state.borrow_mut().stream = Some(st);
        }
        Ok(out)
    }

    /// Makes the stream's completed reads cover `[st.pos, need)`, issuing
    /// aligned reads of `part_bytes` so that `depth` stay in flight, and
    /// waiting for them in order. False if `need` lies past `limit` (what is
    /// on disk) or the file ends first.
    async fn stream_fill(
        &self,
        st: &mut ReadStream<B::File>,
        need: u64,
        limit: u64,
        part_bytes: u64,
        depth: usize,
    ) -> StorageResult<bool> {
        if need > limit {
            return Ok(false);
        }
        loop {
            while st.ready.front().is_some_and(|r| r.valid_end <= st.pos) {
                st.ready.pop_front();
            }
            if st.covered_end() >= need {
                return Ok(true);
            }
            // Keep `depth` reads in flight. A read that stopped at the old
            // end of the active segment is repeated from its last page once
            // more has been written.
            while st.parts.len() < depth && st.issued_end < limit {
                let pos = st.next_pos;
                let valid_end = (pos + part_bytes).min(limit);
                let file = st.file.clone();
                let mut fut: PendingRead = Box::pin(async move {
                    let data = file.get().read_aligned(pos, part_bytes as usize).await?;
                    Ok(Box::new(data) as ReadPart)
                });
                // Poll once so the read is queued to the device now.
                if let Some(r) = futures_lite::future::poll_once(&mut fut).await {
                    let r = r?;
                    fut = Box::pin(async move { Ok(r) });
                }
                st.parts.push_back(StreamPart {
                    pos,
                    valid_end,
                    data: fut,
                });
                st.issued_end = valid_end;
                st.next_pos = if valid_end < pos + part_bytes {
                    align_down(valid_end)
                } else {
                    pos + part_bytes
                };
            }
            let Some(part) = st.parts.pop_front() else {
                return Ok(false);
            };
            let data = part.data.await?;
            let valid_end = part.valid_end.min(part.pos + data.len() as u64);
            if valid_end <= part.pos {
                return Ok(false); // end of file
            }
            st.ready.push_back(StreamPart {
                pos: part.pos,
                valid_end,
                data,
            });
        }
    }
}

/// Reads `len` bytes at `pos` as concurrent `chunk`-sized reads, which keeps
/// the device queue deep for large sequential reads. Short at end of file.
async fn read_concurrent<F: SegmentFile>(
    file: &F,
    pos: u64,
    len: usize,
    chunk: usize,
) -> StorageResult<Bytes> {
    if len <= chunk {
        return file.read_at(pos, len).await;
    }
    let mut futs = Vec::new();
    let mut at = 0usize;
    while at < len {
        let n = chunk.min(len - at);
        futs.push(file.read_at(pos + at as u64, n));
        at += n;
    }
    let parts = futures_util::future::try_join_all(futs).await?;
    let mut out = BytesMut::with_capacity(len);
    for p in parts {
        let short = p.len() < chunk;
        out.extend_from_slice(&p);
        if short {
            break;
        }
    }
    Ok(out.freeze())
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

impl<B: Backend> PartitionLog<B> {
    /// Deletes whole segments past `retention.ms` (by their newest batch
    /// timestamp) or beyond `retention.bytes`, oldest first, and moves the
    /// log start offset. An expired active segment is rolled first.
    pub async fn enforce_retention(&self) -> StorageResult<RetentionOutcome> {
        let order = self.append_lock.lock().await;
        let io = self.io_lock.lock().await;
        self.check_open()?;
        let cfg = self.config.borrow().clone();
        let now = (self.clock)();
        let expired = |ts: i64| {
            cfg.retention_ms
                .is_some_and(|ms| ts < now.saturating_sub(ms as i64))
        };
        // An active segment that has expired as a whole is rolled so it can go.
        let roll_active = {
            let s = self.state.borrow();
            s.active.seg.size > 0 && expired(s.active.seg.max_timestamp.unwrap_or(i64::MAX))
        };
        if roll_active {
            self.roll().await?;
        }
        let mut victims = Vec::new();
        let bases: Vec<i64> = self.state.borrow().closed.keys().copied().collect();
        let mut total: u64 = {
            let s = self.state.borrow();
            s.closed.values().map(|g| g.size).sum::<u64>() + s.active.seg.size
        };
        for base in bases {
            self.ensure_index(base).await?;
            let (size, max_ts) = {
                let s = self.state.borrow();
                let g = &s.closed[&base];
                (g.size, g.max_timestamp.unwrap_or(i64::MAX))
            };
            let by_time = expired(max_ts);
            let by_size = cfg.retention_bytes.is_some_and(|max| total - size >= max);
            if !(by_time || by_size) {
                break;
            }
            total -= size;
            victims.push(base);
        }
        let outcome = self.drop_segments(&victims);
        // Appends and flushes go on while the checkpoint is written (an fsync of a file
        // and of the directory, milliseconds under load): readers already see the new
        // log start, and the files go only once the checkpoint names it.
        drop(io);
        drop(order);
        self.remove_dropped_segments(&victims, outcome).await
    }

    /// Removes closed segments `bases` (oldest first), checkpointing the new
    /// log start offset before the files go, so a crash in between only
    /// leaves files that the next open deletes.
    async fn delete_segments(&self, bases: &[i64]) -> StorageResult<RetentionOutcome> {
        let outcome = self.drop_segments(bases);
        self.remove_dropped_segments(bases, outcome).await
    }

    /// Takes closed segments `bases` (oldest first) out of the log and moves the log
    /// start past them; their files stay until [`Self::remove_dropped_segments`].
    fn drop_segments(&self, bases: &[i64]) -> RetentionOutcome {
        let mut outcome = RetentionOutcome::default();
        if bases.is_empty() {
            outcome.log_start_offset = self.log_start_offset();
            return outcome;
        }
        {
            let mut s = self.state.borrow_mut();
            for b in bases {
                if let Some(g) = s.closed.remove(b) {
                    outcome.segments_deleted += 1;
                    outcome.bytes_deleted += g.size;
                }
                if s.stream.as_ref().is_some_and(|c| c.segment_base == *b) {
                    s.stream = None;
                }
            }
            let first = s
                .closed
                .keys()
                .next()
                .copied()
                .unwrap_or(s.active.seg.base_offset);
            s.log_start_offset = s.log_start_offset.max(first);
            outcome.log_start_offset = s.log_start_offset;
        }
        outcome
    }

    /// Makes the log start of a [`Self::drop_segments`] durable, then hands the dropped
    /// segments' files to the reaper.
    async fn remove_dropped_segments(
        &self,
        bases: &[i64],
        outcome: RetentionOutcome,
    ) -> StorageResult<RetentionOutcome> {
        if bases.is_empty() {
            return Ok(outcome);
        }
        // The checkpoint names the new log start before any file goes, so the renames
        // need no directory sync: segments below the start are removed on open.
        self.write_checkpoint(None).await?;
        for b in bases {
            discard_segment_files(&self.backend, &self.dir, *b).await?;
        }
        info!(dir = %self.dir.display(), segments = outcome.segments_deleted, bytes = outcome.bytes_deleted,
            log_start_offset = outcome.log_start_offset, "retention deleted segments");
        Ok(outcome)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the
    /// log end) and deletes segments wholly below it.
    pub async fn delete_records(&self, offset: i64) -> StorageResult<i64> {
        let _order = self.append_lock.lock().await;
        let _io = self.io_lock.lock().await;
        self.check_open()?;
        // The checkpoint must never name a log start past durable data, or a
        // crash could leave the start beyond the recovered end.
        self.sync_locked().await?;
        let victims: Vec<i64> = {
            let mut s = self.state.borrow_mut();
            let leo = s.log_end_offset();
            if offset > leo || offset < 0 {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: s.log_start_offset,
                    log_end_offset: leo,
                });
            }
            s.log_start_offset = s.log_start_offset.max(offset);
            let lso = s.log_start_offset;
            s.closed
                .values()
                .filter(|g| g.next_offset <= lso)
                .map(|g| g.base_offset)
                .collect()
        };
        self.delete_segments(&victims).await?;
        self.write_checkpoint(None).await?;
        Ok(self.log_start_offset())
    }

    /// Removes every batch whose last offset is at or past `offset` (a
    /// replication follower truncating to the leader's epoch boundary).
    /// Returns the new log end offset.
    pub async fn truncate_to(&self, offset: i64) -> StorageResult<i64> {
        let _order = self.append_lock.lock().await;
        let _io = self.io_lock.lock().await;
        self.check_open()?;
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        // Put everything on disk first so truncation works on files only.
        self.write_out().await?;
        // A recovery point past the cut would vouch for bytes that are about
        // to go: remove it durably before any segment file changes.
        self.backend
            .remove_file(&self.dir.join(RECOVERY_POINT_FILE))
            .await?;
        self.backend.sync_dir(&self.dir).await?;
        let active_base = self.state.borrow().active.seg.base_offset;
        let doomed: Vec<i64> = {
            let s = self.state.borrow();
            s.closed.keys().copied().filter(|b| *b >= offset).collect()
        };
        // Find the segment that keeps data: the last one starting below `offset`.
        let keep_base = {
            let s = self.state.borrow();
            if active_base < offset {
                Some(active_base)
            } else {
                s.closed.range(..offset).next_back().map(|(b, _)| *b)
            }
        };
        let new_active_base = keep_base.unwrap_or(offset);
        if new_active_base != active_base {
            // The active segment goes; the kept one (if any) becomes active.
            {
                let mut s = self.state.borrow_mut();
                s.tail.clear();
                s.tail_bytes = 0;
            }
            for b in &doomed {
                self.state.borrow_mut().closed.remove(b);
                remove_segment_files(&self.backend, &self.dir, *b).await?;
            }
            let path = self.dir.join(segment_name(new_active_base, "log"));
            let handle = self.open_budgeted(&path, true).await?;
            if keep_base.is_some() {
                self.ensure_index(new_active_base).await?;
            }
            let (size, next, index) = {
                let mut s = self.state.borrow_mut();
                match s.closed.remove(&new_active_base) {
                    Some(g) => (g.size, g.next_offset, g.index.unwrap_or_default()),
                    None => (0, new_active_base, SegmentIndex::default()),
                }
            };
            remove_segment_files(&self.backend, &self.dir, active_base).await?;
            // The kept segment's index files now describe an active segment: drop them.
            self.backend
                .remove_file(&self.dir.join(segment_name(new_active_base, "index")))
                .await?;
            self.backend
                .remove_file(&self.dir.join(segment_name(new_active_base, "timeindex")))
                .await?;
            let now = (self.clock)();
            {
                let mut s = self.state.borrow_mut();
                let max_ts = index.times.last().map_or(-1, |t| t.timestamp_ms);
                s.active = Active::new(
                    Segment {
                        base_offset: new_active_base,
                        next_offset: next,
                        size,
                        max_timestamp: Some(max_ts),
                        index: Some(index),
                    },
                    handle,
                    size,
                    Vec::new(),
                    now,
                );
                if keep_base.is_none() {
                    s.log_start_offset = offset;
                }
            }
            self.backend.sync_dir(&self.dir).await?;
        }
        // Now cut the active segment at the first batch reaching `offset`.
        let (file, base, start_pos, size) = {
            let s = self.state.borrow();
            let a = &s.active;
            let rel = (offset.max(a.seg.base_offset) - a.seg.base_offset) as u32;
            let pos = a.seg.index.as_ref().map_or(0, |i| i.position_for(rel)) as u64;
            (a.file.clone(), a.seg.base_offset, pos, a.seg.size)
        };
        let data = file
            .get()
            .read_at(start_pos, (size - start_pos) as usize)
            .await?;
        let mut cut = size;
        let mut new_next = self.log_end_offset();
        for (at, h) in BatchWalker::new(&data, false) {
            if h.last_offset() >= offset {
                cut = start_pos + at as u64;
                new_next = h.base_offset;
                break;
            }
        }
        if cut == size && new_next >= offset {
            new_next = offset.max(base);
        }
        file.get().truncate(cut).await?;
        file.get().sync().await?;
        let tail_page = if cut % crate::backend::ALIGN_BYTES != 0 {
            let p = align_down(cut);
            file.get().read_at(p, (cut - p) as usize).await?.to_vec()
        } else {
            Vec::new()
        };
        {
            let mut s = self.state.borrow_mut();
            let rel = (new_next - base).max(0) as u32;
            let a = &mut s.active;
            a.seg.size = cut;
            a.seg.next_offset = new_next.max(base);
            if let Some(i) = a.seg.index.as_mut() {
                i.truncate(rel, cut as u32);
                a.seg.max_timestamp = Some(i.times.last().map_or(-1, |t| t.timestamp_ms));
            }
            assert!(a.inflight.is_empty(), "truncation with writes in flight");
            a.written = cut;
            a.allocated = cut;
            a.last_batch = None;
            a.recovery_position = 0;
            a.tail_page = tail_page;
            s.tail.clear();
            s.tail_bytes = 0;
            s.stream = None;
            let leo = s.log_end_offset();
            s.durable_offset = leo;
            s.log_start_offset = s.log_start_offset.min(leo);
        }
        self.write_checkpoint(None).await?;
        info!(dir = %self.dir.display(), offset, log_end_offset = self.log_end_offset(), "log truncated");
        Ok(self.log_end_offset())
    }

    /// ListOffsets by timestamp: the first record whose timestamp is at least
    /// `timestamp_ms`, as (offset, timestamp). Exact for uncompressed batches;
    /// for a compressed batch, its base offset and max timestamp.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> StorageResult<Option<(i64, i64)>> {
        self.check_open()?;
        let bases: Vec<i64> = self.state.borrow().closed.keys().copied().collect();
        let mut start: Option<i64> = None;
        for b in bases {
            self.ensure_index(b).await?;
            let s = self.state.borrow();
            let g = &s.closed[&b];
            if g.max_timestamp.unwrap_or(-1) >= timestamp_ms {
                let rel = g
                    .index
                    .as_ref()
                    .map_or(0, |i| i.relative_offset_for_time(timestamp_ms));
                start = Some(b + rel as i64);
                break;
            }
        }
        if start.is_none() {
            let s = self.state.borrow();
            let a = &s.active.seg;
            if a.max_timestamp.unwrap_or(-1) >= timestamp_ms {
                let rel = a
                    .index
                    .as_ref()
                    .map_or(0, |i| i.relative_offset_for_time(timestamp_ms));
                start = Some(a.base_offset + rel as i64);
            }
        }
        let Some(mut at) = start else { return Ok(None) };
        at = at.max(self.log_start_offset());
        loop {
            let r = self.read(at, 1 << 20).await?;
            if r.batches.is_empty() {
                return Ok(None);
            }
            for b in &r.batches {
                let h = BatchHeader::parse(b)?;
                if h.max_timestamp >= timestamp_ms && h.last_offset() >= at {
                    let found = batch::first_record_at_or_after(b, timestamp_ms)
                        .unwrap_or((h.base_offset, h.max_timestamp));
                    return Ok(Some((found.0.max(self.log_start_offset()), found.1)));
                }
                at = h.last_offset() + 1;
            }
        }
    }

    /// ListOffsets MAX_TIMESTAMP: the record with the largest timestamp.
    pub async fn max_timestamp_offset(&self) -> StorageResult<Option<(i64, i64)>> {
        self.check_open()?;
        let bases: Vec<i64> = self.state.borrow().closed.keys().copied().collect();
        let mut best: Option<(i64, i64)> = None; // (ts, segment base)
        for b in bases {
            self.ensure_index(b).await?;
            let ts = self.state.borrow().closed[&b].max_timestamp.unwrap_or(-1);
            if ts >= 0 && best.is_none_or(|(t, _)| ts > t) {
                best = Some((ts, b));
            }
        }
        {
            let s = self.state.borrow();
            let ts = s.active.seg.max_timestamp.unwrap_or(-1);
            if s.active.seg.size > 0 && ts >= 0 && best.is_none_or(|(t, _)| ts > t) {
                best = Some((ts, s.active.seg.base_offset));
            }
        }
        let Some((ts, _)) = best else { return Ok(None) };
        // The first batch whose max timestamp equals the maximum.
        Ok(match self.offset_for_timestamp(ts).await? {
            Some((_, _)) => {
                let mut at = self.offset_for_timestamp(ts).await?.map_or(0, |f| f.0);
                let mut result = None;
                'outer: loop {
                    let r = self.read(at, 1 << 20).await?;
                    if r.batches.is_empty() {
                        break;
                    }
                    for b in &r.batches {
                        let h = BatchHeader::parse(b)?;
                        if h.max_timestamp == ts {
                            result = Some(
                                batch::max_timestamp_record(b).unwrap_or((h.last_offset(), ts)),
                            );
                            break 'outer;
                        }
                        at = h.last_offset() + 1;
                    }
                }
                result
            }
            None => None,
        })
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
        let (file, size, base, index, leo) = {
            let s = self.state.borrow();
            let a = &s.active;
            (
                a.file.clone(),
                a.seg.size,
                a.seg.base_offset,
                a.seg.index.clone().unwrap_or_default(),
                s.log_end_offset(),
            )
        };
        self.seal_segment(&file, size, base, &index).await?;
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
    /// closed-segment indexes) of an idle partition to bound shard memory.
    pub fn trim_caches(&self) {
        let mut s = self.state.borrow_mut();
        trim_tail(&mut s, 0);
        s.tail.shrink_to_fit();
        s.stream = None;
        for g in s.closed.values_mut() {
            g.index = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::batch::build;
    use futures_lite::future::block_on;

    fn open(be: &MemoryBackend, cfg: LogConfig) -> PartitionLog<MemoryBackend> {
        block_on(PartitionLog::open(
            be.clone(),
            PathBuf::from("/mem/t-0"),
            cfg,
            FileBudget::new(16),
        ))
        .unwrap()
    }

    #[test]
    fn a_follower_copy_keeps_the_leaders_offsets_and_epochs_and_refuses_gaps() {
        let be = MemoryBackend::new();
        let leader = open(&be, LogConfig::default());
        let follower = block_on(PartitionLog::open(
            be.clone(),
            PathBuf::from("/mem/f-0"),
            LogConfig::default(),
            FileBudget::new(16),
        ))
        .unwrap();
        block_on(async {
            leader
                .append(Bytes::from(build::sized(200, 3, 1)), 4)
                .await
                .unwrap();
            leader
                .append(Bytes::from(build::sized(200, 2, 2)), 7)
                .await
                .unwrap();
            let read = leader.read(0, 1 << 20).await.unwrap();
            assert_eq!(read.batches.len(), 2);
            // The second batch alone does not continue the empty follower log.
            let err = follower
                .append_replica(read.batches[1].clone())
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    StorageError::NonContiguousAppend {
                        base_offset: 3,
                        log_end_offset: 0
                    }
                ),
                "{err:?}"
            );
            assert_eq!(follower.log_end_offset(), 0);
            for b in &read.batches {
                follower.append_replica(b.clone()).await.unwrap();
            }
            assert_eq!(follower.log_end_offset(), 5);
            let copy = follower.read(0, 1 << 20).await.unwrap();
            assert_eq!(
                copy.batches, read.batches,
                "byte-identical, epochs included"
            );
            let epochs: Vec<i32> = copy
                .batches
                .iter()
                .map(|b| BatchHeader::parse(b).unwrap().partition_leader_epoch)
                .collect();
            assert_eq!(epochs, vec![4, 7]);
            // A replayed batch is refused too.
            assert!(follower
                .append_replica(read.batches[0].clone())
                .await
                .is_err());
        });
    }

    #[test]
    fn write_through_reaches_the_file_without_a_sync() {
        let be = MemoryBackend::new();
        let log = open(&be, LogConfig::default());
        block_on(async {
            let batch = build::sized(300, 2, 5);
            log.append(Bytes::from(batch.clone()), 0).await.unwrap();
            let syncs = be.sync_count();
            log.write_through().await.unwrap();
            assert_eq!(be.sync_count(), syncs, "write_through must not fdatasync");
            assert_eq!(log.unwritten_bytes(), 0);
            let file = be
                .file_bytes(Path::new("/mem/t-0/00000000000000000000.log"))
                .unwrap();
            // Only baseOffset and the leader epoch differ from what was appended.
            assert_eq!(&file[16..batch.len()], &batch[16..]);
        });
    }

    #[test]
    fn flushes_of_many_logs_stay_within_the_shard_write_budget() {
        let be = MemoryBackend::new();
        be.set_write_yields(100); // a slow disk: writes stay in flight
        let budget = FileBudget::new(64);
        let cfg = LogConfig {
            write_chunk_bytes: 1 << 20,
            write_buffer_bytes_max: 64 << 20,
            ..LogConfig::default()
        };
        block_on(async {
            let mut logs = Vec::new();
            for p in 0..4 {
                let dir = PathBuf::from(format!("/mem/b-{p}"));
                let log = PartitionLog::open(be.clone(), dir, cfg.clone(), budget.clone())
                    .await
                    .unwrap();
                logs.push(log);
            }
            let batch = Bytes::from(build::sized(100_000, 2, 5));
            // Over the shard budget in total: each log alone would submit it all.
            let per_log = SHARD_INFLIGHT_WRITE_BYTES_MAX / 2 / 100_000;
            for log in &logs {
                for _ in 0..per_log {
                    log.append(batch.clone(), 0).await.unwrap();
                }
            }
            for log in &logs {
                log.flush().await.unwrap();
                assert!(budget.inflight_write_bytes() <= budget.inflight_write_bytes_max);
            }
            assert!(
                logs.iter().any(|l| l.unsubmitted_bytes() >= 4096),
                "the budget held some pages back"
            );
            for log in &logs {
                log.sync().await.unwrap();
                assert_eq!(log.unwritten_bytes(), 0);
            }
            assert_eq!(budget.inflight_write_bytes(), 0, "every permit returned");
            // What the write-behind wrote is what was appended, in order.
            for log in &logs {
                let r = log.read(0, usize::MAX).await.unwrap();
                assert_eq!(r.batches.len() as u64, per_log);
                for (i, b) in r.batches.iter().enumerate() {
                    let h = batch::validate(b).unwrap();
                    assert_eq!(h.base_offset, 2 * i as i64);
                }
            }
        });
    }

    #[test]
    fn preallocated_space_is_cut_on_close_and_by_recovery_after_a_crash() {
        let be = MemoryBackend::new();
        let seg = Path::new("/mem/t-0/00000000000000000000.log");
        let cfg = LogConfig {
            write_chunk_bytes: 8192,
            ..LogConfig::default()
        };
        let batch = Bytes::from(build::sized(3000, 1, 5));
        block_on(async {
            let log = open(&be, cfg.clone());
            for _ in 0..10 {
                log.append(batch.clone(), 0).await.unwrap();
            }
            log.sync().await.unwrap();
            let file = be.file_bytes(seg).unwrap();
            assert!(
                file.len() as u64 >= PREALLOCATE_STEP_BYTES_MIN,
                "segment grown ahead of its writes"
            );
            log.close().await.unwrap();
            assert_eq!(
                be.file_bytes(seg).unwrap().len(),
                10 * batch.len(),
                "closed exact"
            );
        });
        block_on(async {
            let log = open(&be, cfg.clone());
            for _ in 0..5 {
                log.append(batch.clone(), 0).await.unwrap();
            }
            log.sync().await.unwrap();
            for _ in 0..5 {
                log.append(batch.clone(), 0).await.unwrap();
            }
            log.flush().await.unwrap();
            std::mem::forget(log);
        });
        be.crash(3);
        block_on(async {
            let log = open(&be, cfg.clone());
            let leo = log.log_end_offset();
            assert!((15..=20).contains(&leo), "synced batches kept: {leo}");
            let r = log.read(0, usize::MAX).await.unwrap();
            assert_eq!(r.batches.len() as i64, leo);
            for b in &r.batches {
                batch::validate(b).unwrap();
            }
        });
    }

    #[test]
    fn a_sequential_reader_of_the_active_segment_rereads_what_was_written_since() {
        let be = MemoryBackend::new();
        let cfg = LogConfig {
            tail_cache_bytes_max: 0, // every read below goes to the file
            read_ahead_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let log = open(&be, cfg);
        let batch_n = |n: i64| Bytes::from(build::sized(700 + (n as usize * 13) % 500, 1, n));
        block_on(async {
            let mut next = 0i64;
            let mut appended = 0i64;
            for round in 0..20 {
                for _ in 0..7 {
                    log.append(batch_n(appended), 0).await.unwrap();
                    appended += 1;
                }
                log.write_through().await.unwrap();
                // Small reads: the stream stops mid-part, at the old end of
                // what was written, and must not serve stale bytes after it.
                loop {
                    let r = log.read(next, 1500 + round * 100).await.unwrap();
                    if r.batches.is_empty() {
                        break;
                    }
                    for b in &r.batches {
                        let h = batch::validate(b).unwrap();
                        assert_eq!(h.base_offset, next);
                        assert_eq!(&b[16..], &batch_n(next)[16..]);
                        next += 1;
                    }
                }
                assert_eq!(next, appended);
            }
        });
    }

    #[test]
    fn a_read_returns_at_least_one_batch_whatever_the_limit() {
        let be = MemoryBackend::new();
        let log = open(&be, LogConfig::default());
        block_on(async {
            for i in 0..3 {
                log.append(Bytes::from(build::sized(1000, 1, i)), 0)
                    .await
                    .unwrap();
            }
            let r = log.read(1, 10).await.unwrap();
            assert_eq!(r.batches.len(), 1);
            assert_eq!(BatchHeader::parse(&r.batches[0]).unwrap().base_offset, 1);
            assert_eq!(r.log_end_offset, 3);
            assert!(log.read(3, 10).await.unwrap().batches.is_empty());
            assert!(matches!(
                log.read(4, 10).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
        });
    }

    #[test]
    fn retention_by_bytes_and_delete_records_move_the_log_start() {
        let be = MemoryBackend::new();
        let cfg = LogConfig {
            segment_bytes: 8192,
            retention_bytes: Some(16384),
            retention_ms: None,
            ..LogConfig::default()
        };
        let log = open(&be, cfg);
        block_on(async {
            for i in 0..40 {
                log.append(Bytes::from(build::sized(1000, 1, i)), 0)
                    .await
                    .unwrap();
            }
            let out = log.enforce_retention().await.unwrap();
            assert!(out.segments_deleted > 0);
            assert!(log.stats().size_bytes <= 16384 + 8192);
            let start = log.log_start_offset();
            assert!(start > 0 && start == out.log_start_offset);
            let low = log.delete_records(start + 2).await.unwrap();
            assert_eq!(low, start + 2);
            assert!(matches!(
                log.read(start, 1 << 20).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            let r = log.read(start + 2, 1 << 20).await.unwrap();
            assert_eq!(
                BatchHeader::parse(&r.batches[0]).unwrap().base_offset,
                start + 2
            );
        });
    }
}
