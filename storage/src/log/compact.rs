//! Log compaction (`cleanup.policy=compact`): keeping the latest record of every key.
//!
//! The log is split as Kafka splits it. Below the *first dirty offset* lies the clean
//! section, compacted by earlier passes; from there to the *first uncleanable offset*
//! (the active segment, the high watermark the caller passes, and `min.compaction.lag.ms`)
//! lies the dirty section; the rest is never touched. A pass, when the dirty share of the
//! cleanable log reaches `min.cleanable.dirty.ratio` (or a dirty record is older than
//! `max.compaction.lag.ms`):
//!
//! 1. maps every key of the dirty section to its last offset, in a [`KeyMap`] bounded by
//!    the caller's byte limit (if it fills, the pass maps a prefix of the dirty section
//!    and the next pass goes on from there);
//! 2. rewrites every closed segment from the log start to the end of what was mapped,
//!    keeping a record unless a later record of its key was mapped, dropping keyless
//!    records, and dropping tombstones once they have been in the clean section for
//!    `delete.retention.ms`. Offsets never change (a rewritten batch keeps its base
//!    offset and last offset delta, so gaps appear and producer sequences stay);
//!    consecutive segments whose sizes add up to at most `segment.bytes` become one.
//!
//! Each group of segments is written to `<base>.log.cleaned`, synced, then swapped in on
//! its own (as Kafka's cleaner does; a crash between two groups leaves the first ones
//! compacted, itself a compaction of the log):
//! the group's aborted transactions, concatenated, go to `<base>.txnindex.cleaned` (when
//! there are any), a `cleaner.swap` file names the group, the group's first segment is
//! replaced by rename (atomic), then its `.txnindex` (renamed over, or removed when the
//! group has none), the others are discarded, and the swap file goes. An open finds a
//! swap file and finishes or undoes that step (a `.log.cleaned` file still there means
//! the rename never happened: it is removed with the `.txnindex.cleaned` and the old
//! segments stay; otherwise the `.txnindex` step is redone), so a crash at any point
//! leaves the records and the aborted transactions as they were before the clean or
//! after it.
//!
//! The cleaner holds no lock while it reads, maps and writes; appends and fetches go
//! on, and it pauses for them every `BACKGROUND_SLICE` of work. The swap takes only the
//! log's layout lock (retention and truncation take it too, appends and flushes do not)
//! and checks that no retention, truncation or earlier swap changed the segments it read
//! (a *layout generation*); if one did, the pass drops its output and ends. Readers that
//! opened a segment before a swap finish on the old file; one that waited across a swap
//! starts again on the new layout.
//!
//! A batch that loses every record goes, unless it is an idempotent producer's last batch
//! (the caller names them, [`ProducerLastOffsets`]): then its header stays, without records
//! (Kafka's RETAIN_EMPTY), so the producer's last sequence and epoch stay in the log and a
//! replica or a restart that rebuilds producer state from the log still knows the producer.
//!
//! Transactions (see [`txn`]): the records of aborted transactions are not mapped and go;
//! a transaction's end marker stays while any batch of the transaction does, and goes
//! `delete.retention.ms` after it entered the clean section once none does. A cleaned
//! segment's aborted-transaction index holds the entries of the ABORT markers it keeps.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::*;
use crate::backend::{align_down, align_up};
use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::records::{self, RecordsCodec};
use crate::txn::AbortedTxn;
use txn::{TxnWalk, Walked};

mod txn;

/// The last offset of each active idempotent producer's latest batch, by producer id: the
/// batches the cleaner keeps, at least as an empty header (see the module docs). For a
/// producer whose epoch no data batch holds, its last transaction marker's offset: that
/// marker is kept whole.
pub type ProducerLastOffsets = HashMap<i64, i64>;

/// The cleaner's progress, beside the segments.
const CLEANER_FILE: &str = "cleaner.checkpoint";
const CLEANER_MAGIC: &[u8; 4] = b"RLCC";
const CLEANER_VERSION: u32 = 1;
/// A swap in progress: the bases of the group being replaced (see [`Swap`]).
const SWAP_FILE: &str = "cleaner.swap";
const SWAP_MAGIC: &[u8; 4] = b"RLCS";
/// Version 1 names the bases only (written before segments had aborted-transaction
/// indexes); version 2 says first whether the cleaned segment has one.
const SWAP_VERSION: u32 = 2;
/// The name a cleaned segment is written under before it is swapped in.
const CLEANED_SUFFIX: &str = ".log.cleaned";
/// The name a cleaned segment's aborted-transaction index is written under.
const TXN_CLEANED_SUFFIX: &str = ".txnindex.cleaned";

/// What `cleaner.swap` says: the group being replaced, and whether its cleaned segment
/// has a `.txnindex` (when not, the first segment's goes), so recovery can finish the
/// `.txnindex` step without guessing whether a missing `.txnindex.cleaned` was renamed.
#[derive(Debug, PartialEq, Eq)]
struct Swap {
    bases: Vec<i64>,
    has_txn_index: bool,
}

impl Swap {
    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(8 + 8 * self.bases.len());
        p.extend_from_slice(&u64::from(self.has_txn_index).to_le_bytes());
        for b in &self.bases {
            p.extend_from_slice(&b.to_le_bytes());
        }
        crate::checkpoint::seal(SWAP_MAGIC, SWAP_VERSION, &p)
    }

    fn decode(buf: &[u8]) -> Result<Swap, String> {
        let words = |p: &[u8]| -> Vec<i64> {
            p.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        };
        if buf.get(4..8) == Some(&1u32.to_le_bytes()[..]) {
            let p = crate::checkpoint::unseal(SWAP_MAGIC, 1, buf)?;
            return Ok(Swap {
                bases: words(p),
                has_txn_index: false,
            });
        }
        let p = crate::checkpoint::unseal(SWAP_MAGIC, SWAP_VERSION, buf)?;
        let w = words(p);
        let (flags, bases) = w.split_first().ok_or("swap file without its flags")?;
        Ok(Swap {
            bases: bases.to_vec(),
            has_txn_index: flags & 1 != 0,
        })
    }
}

/// Bytes the cleaner reads from a segment at a time. Small on purpose: the cleaner runs
/// at queue depth one, and a request path's write or fdatasync queued on the same disk
/// waits behind the cleaner's request in flight. With 4 MiB reads and 1 MiB writes the
/// produce ack p99 (acks=all) doubled while the cleaner worked; with 256 KiB it stayed
/// within noise of an idle cleaner, for a third less cleaner throughput
/// (`benches/compaction.sh`).
pub const CLEANER_READ_BYTES: usize = 256 << 10;
/// Bytes of a cleaned segment the cleaner collects before it writes them (see
/// [`CLEANER_READ_BYTES`]).
pub const CLEANER_WRITE_BYTES: usize = 256 << 10;
/// How long unused I/O budget is kept: a cleaner idle for longer starts its next pass
/// with at most this much of its rate to spend at once.
const THROTTLE_CREDIT: Duration = Duration::from_secs(1);
/// Shortest pause the throttle takes; below it the debt is carried to the next batch.
const THROTTLE_MIN_PAUSE: Duration = Duration::from_millis(1);
/// Bytes one key of the [`KeyMap`] is counted as (a 16-byte hash, an 8-byte offset, the
/// hash table's own overhead).
pub const KEY_MAP_ENTRY_BYTES: usize = 32;
/// Past cleans remembered for tombstone ages; older ones are merged into the next.
const CLEAN_HISTORY_MAX: usize = 32;
/// Most bytes one batch's records may decompress to in the cleaner.
pub const CLEANER_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// The cleaner's I/O budget (Kafka's `log.cleaner.io.max.bytes.per.second`): the bytes
/// it reads and writes are paced to a rate, so a backlog of cleaning is spread out
/// instead of taking the disk. One per shard, kept across passes and partitions.
pub struct CleanerThrottle {
    /// `None`: no limit.
    bytes_per_sec: Option<u64>,
    since: Instant,
    spent: u64,
}

impl CleanerThrottle {
    pub fn new(bytes_per_sec: Option<u64>) -> CleanerThrottle {
        CleanerThrottle {
            bytes_per_sec: bytes_per_sec.filter(|&r| r > 0),
            since: Instant::now(),
            spent: 0,
        }
    }

    pub fn unlimited() -> CleanerThrottle {
        CleanerThrottle::new(None)
    }

    /// Counts `n` bytes of I/O done at `now`; the pause that brings the rate since the
    /// budget's start back to the limit, if one is due.
    fn spend(&mut self, n: u64, now: Instant) -> Option<Duration> {
        let rate = self.bytes_per_sec?;
        let elapsed = now.saturating_duration_since(self.since);
        let allowed = Duration::from_secs_f64(self.spent as f64 / rate as f64);
        if elapsed > allowed + THROTTLE_CREDIT {
            // Idle for long: keep only THROTTLE_CREDIT of unused budget.
            self.since = now.checked_sub(THROTTLE_CREDIT).unwrap_or(now);
            self.spent = 0;
        }
        self.spent += n;
        let due = Duration::from_secs_f64(self.spent as f64 / rate as f64);
        let elapsed = now.saturating_duration_since(self.since);
        let pause = due.saturating_sub(elapsed);
        (pause >= THROTTLE_MIN_PAUSE).then_some(pause)
    }
}

/// Keys of the dirty section mapped to the last offset each appears at, as 128-bit
/// hashes (two independent 64-bit SipHashes; a collision would need ~2^64 keys).
/// Bounded: [`KeyMap::put`] refuses keys past `max_entries`.
pub struct KeyMap {
    map: HashMap<u128, i64>,
    max_entries: usize,
}

fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x5bd1_e995u32.hash(&mut b);
    key.hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

impl KeyMap {
    /// A map of at most `bytes_max` bytes (see [`KEY_MAP_ENTRY_BYTES`]).
    pub fn new(bytes_max: usize) -> KeyMap {
        KeyMap {
            map: HashMap::new(),
            max_entries: (bytes_max / KEY_MAP_ENTRY_BYTES).max(1),
        }
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    /// Room for `n` more keys.
    fn has_room(&self, n: usize) -> bool {
        self.len() + n <= self.max_entries
    }
    fn put(&mut self, key: &[u8], offset: i64) {
        self.map.insert(key_hash(key), offset);
    }
    /// The last offset mapped for `key`.
    fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&key_hash(key)).copied()
    }
}

/// What a partition's compaction looks like (for `rill topic describe` and metrics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionStatus {
    /// Offsets below this have been compacted.
    pub first_dirty_offset: i64,
    /// Bytes of closed segments the cleaner may rewrite.
    pub cleanable_bytes: u64,
    /// Of those, bytes not yet compacted.
    pub dirty_bytes: u64,
    /// `dirty_bytes / cleanable_bytes` (0 when nothing is cleanable).
    pub dirty_ratio: f64,
    /// When the last pass ended (ms since the epoch).
    pub last_clean_ms: Option<i64>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanOutcome {
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Batches that lost every record but stay as an empty header (a producer's last).
    pub empty_batches_kept: u64,
    /// Records of aborted transactions removed (counted in `records_removed` too).
    pub aborted_records_removed: u64,
    /// Transaction markers removed (no batch of their transaction left).
    pub markers_removed: u64,
    /// The first dirty offset after the pass.
    pub first_dirty_offset: i64,
}

/// The cleaner's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CleanerState {
    pub(super) first_dirty_offset: i64,
    /// `(end, when)` of past passes, oldest first: offsets below `end` were in the clean
    /// section at `when` (ms). A tombstone's age counts from the first such entry.
    history: Vec<(i64, i64)>,
}

impl CleanerState {
    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(16 + 16 * self.history.len());
        p.extend_from_slice(&self.first_dirty_offset.to_le_bytes());
        p.extend_from_slice(&(self.history.len() as u64).to_le_bytes());
        for (end, when) in &self.history {
            p.extend_from_slice(&end.to_le_bytes());
            p.extend_from_slice(&when.to_le_bytes());
        }
        crate::checkpoint::seal(CLEANER_MAGIC, CLEANER_VERSION, &p)
    }
    fn decode(buf: &[u8]) -> Result<CleanerState, String> {
        let p = crate::checkpoint::unseal(CLEANER_MAGIC, CLEANER_VERSION, buf)?;
        let word = |i: usize| -> Result<i64, String> {
            p.get(i * 8..i * 8 + 8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| "cleaner checkpoint cut short".to_string())
        };
        let n = word(1)? as usize;
        if n > CLEAN_HISTORY_MAX {
            return Err(format!("{n} history entries"));
        }
        let mut history = Vec::with_capacity(n);
        for i in 0..n {
            history.push((word(2 + 2 * i)?, word(3 + 2 * i)?));
        }
        Ok(CleanerState {
            first_dirty_offset: word(0)?,
            history,
        })
    }
    /// When offset `o` first lay in the clean section (None: not yet).
    fn cleaned_since(&self, o: i64) -> Option<i64> {
        self.history
            .iter()
            .find(|(end, _)| o < *end)
            .map(|(_, t)| *t)
    }
    fn record(&mut self, end: i64, when: i64) {
        if self.history.last().is_some_and(|(e, _)| *e >= end) {
            return;
        }
        self.history.push((end, when));
        if self.history.len() > CLEAN_HISTORY_MAX {
            // Offsets of the oldest entry take the next one's later time: their
            // tombstones live a little longer, never shorter.
            self.history.remove(0);
        }
    }
    /// Forgets what lies past a truncation to `end`.
    pub(super) fn truncate(&mut self, end: i64) {
        self.first_dirty_offset = self.first_dirty_offset.min(end);
    }
}

/// A closed segment as the cleaner sees it.
#[derive(Debug, Clone, Copy)]
struct SegInfo {
    base: i64,
    next: i64,
    size: u64,
    max_ts: i64,
    /// Newest timestamp of its first batch (its oldest data).
    first_ts: i64,
}

/// Reads a segment file batch by batch, CRC-checked.
struct SegmentBatches<F> {
    file: Rc<Handle<F>>,
    path: PathBuf,
    pos: u64,
    size: u64,
    buf: Bytes,
    at: usize,
}

impl<F: SegmentFile> SegmentBatches<F> {
    async fn next(&mut self) -> StorageResult<Option<(BatchHeader, Bytes)>> {
        loop {
            let avail = &self.buf[self.at..];
            let mut need = CLEANER_READ_BYTES;
            if avail.len() >= HEADER_BYTES {
                let h = BatchHeader::parse(avail)?;
                let n = h.total_bytes();
                if avail.len() >= n {
                    let b = self.buf.slice(self.at..self.at + n);
                    let h = batch::validate(&b)?;
                    self.at += n;
                    return Ok(Some((h, b)));
                }
                need = need.max(n);
            }
            if self.pos >= self.size {
                if avail.is_empty() {
                    return Ok(None);
                }
                warn!(path = %self.path.display(), "segment ends inside a batch; the cleaner leaves this log alone");
                return Err(StorageError::CorruptBatch {
                    reason: "closed segment ends inside a batch",
                });
            }
            let len = (need as u64).min(self.size - self.pos) as usize;
            let chunk = self.file.get().read_at(self.pos, len).await?;
            if chunk.is_empty() {
                return Err(StorageError::CorruptBatch {
                    reason: "closed segment shorter than recorded",
                });
            }
            let mut joined = BytesMut::with_capacity(avail.len() + chunk.len());
            joined.extend_from_slice(avail);
            joined.extend_from_slice(&chunk);
            self.pos += chunk.len() as u64;
            self.buf = joined.freeze();
            self.at = 0;
        }
    }
}

/// Writes a cleaned segment: batches collected and written a page-aligned chunk at a
/// time, the last page padded, then cut to size and synced.
struct CleanedWriter<F: SegmentFile> {
    file: F,
    pending: Vec<u8>,
    written: u64,
    size: u64,
    index: SegmentIndex,
    base: i64,
    interval: u64,
}

impl<F: SegmentFile> CleanedWriter<F> {
    async fn push(&mut self, h: &BatchHeader, data: &[u8]) -> StorageResult<()> {
        self.index.on_batch(
            (h.base_offset - self.base) as u32,
            self.size as u32,
            data.len() as u32,
            h.max_timestamp,
            self.interval,
        );
        self.pending.extend_from_slice(data);
        self.size += data.len() as u64;
        if self.pending.len() >= CLEANER_WRITE_BYTES {
            let n = align_down(self.pending.len() as u64) as usize;
            self.write(n, n).await?;
        }
        Ok(())
    }
    /// Writes the first `n` pending bytes as `len` (>= n, aligned) bytes, zero-padded.
    async fn write(&mut self, n: usize, len: usize) -> StorageResult<()> {
        let mut buf = self.file.alloc(len);
        buf[..n].copy_from_slice(&self.pending[..n]);
        buf[n..].fill(0);
        self.file.write_at(buf, self.written).await?;
        self.pending.drain(..n);
        self.written += n as u64;
        Ok(())
    }
    async fn finish(mut self) -> StorageResult<(u64, SegmentIndex)> {
        let n = self.pending.len();
        if n > 0 {
            self.write(n, align_up(n as u64) as usize).await?;
        }
        self.file.truncate(self.size).await?;
        self.file.sync().await?;
        self.file.close().await?;
        Ok((self.size, self.index))
    }
}

impl<B: Backend> PartitionLog<B> {
    /// Finishes or undoes a swap a crash interrupted, removes cleaned segments never
    /// swapped in, and loads the cleaner's progress. Runs at open, before the segments
    /// are listed.
    pub(super) async fn recover_cleaner(backend: &B, dir: &Path) -> StorageResult<CleanerState> {
        let swap_path = dir.join(SWAP_FILE);
        if let Some(buf) = backend.read_small(&swap_path).await? {
            match Swap::decode(&buf) {
                Ok(swap) => Self::recover_swap(backend, dir, &swap).await?,
                Err(reason) => {
                    // Written atomically, so it is whole or absent; damaged means
                    // the disk is at fault. The old segments are there unless the
                    // rename ran, and then nothing else was removed yet.
                    warn!(path = %swap_path.display(), %reason, "compaction swap file damaged; ignoring it");
                }
            }
            backend.sync_dir(dir).await?;
            backend.remove_file(&swap_path).await?;
        }
        for name in backend.list_dir(dir).await? {
            if name.ends_with(CLEANED_SUFFIX) || name.ends_with(TXN_CLEANED_SUFFIX) {
                backend.remove_file(&dir.join(&name)).await?;
            }
        }
        let path = dir.join(CLEANER_FILE);
        Ok(match backend.read_small(&path).await? {
            None => CleanerState::default(),
            Some(buf) => CleanerState::decode(&buf).unwrap_or_else(|reason| {
                warn!(path = %path.display(), %reason, "cleaner checkpoint damaged; the next clean starts over from the log start");
                CleanerState::default()
            }),
        })
    }

    /// Finishes or undoes the swap of `swap`'s group (see the module docs).
    async fn recover_swap(backend: &B, dir: &Path, swap: &Swap) -> StorageResult<()> {
        let Some((first, rest)) = swap.bases.split_first() else {
            return Ok(());
        };
        let log_cleaned = format!("{first:020}{CLEANED_SUFFIX}");
        let txn_cleaned = format!("{first:020}{TXN_CLEANED_SUFFIX}");
        let names = backend.list_dir(dir).await?;
        if names.contains(&log_cleaned) {
            // The rename never happened: the old segments and their indexes are whole.
            backend.remove_file(&dir.join(&log_cleaned)).await?;
            backend.remove_file(&dir.join(&txn_cleaned)).await?;
            info!(dir = %dir.display(), base = first, "undid a compaction swap a crash interrupted before it began");
            return Ok(());
        }
        // The cleaned segment replaced the first: its aborted-transaction index follows
        // (unless that was done already), and the rest go.
        let cleaned = names.contains(&txn_cleaned);
        Self::swap_txn_index(backend, dir, *first, swap.has_txn_index, cleaned).await?;
        for b in rest {
            discard_segment_files(backend, dir, *b).await?;
        }
        info!(dir = %dir.display(), base = first, merged = rest.len(), "finished a compaction swap a crash interrupted");
        Ok(())
    }

    /// The swap's `.txnindex` step, right after the `.log` rename: the cleaned segment's
    /// index replaces the first segment's (`cleaned`: its `.txnindex.cleaned` is still
    /// there; when not, a crash came after the rename), or when the group has none, the
    /// first segment's goes.
    async fn swap_txn_index(
        backend: &B,
        dir: &Path,
        base: i64,
        has_txn_index: bool,
        cleaned: bool,
    ) -> StorageResult<()> {
        let index = dir.join(segment_name(base, "txnindex"));
        match (has_txn_index, cleaned) {
            (false, _) => backend.remove_file(&index).await,
            (true, true) => {
                let from = dir.join(format!("{base:020}{TXN_CLEANED_SUFFIX}"));
                backend.rename(&from, &index).await
            }
            (true, false) => Ok(()),
        }
    }

    pub(super) async fn write_cleaner_state(&self) -> StorageResult<()> {
        let buf = self.cleaner.borrow().encode();
        self.backend
            .write_small_atomic(&self.dir.join(CLEANER_FILE), &buf)
            .await
    }

    /// The closed segments from the log start, with their timestamps.
    async fn closed_segments(&self) -> StorageResult<Vec<SegInfo>> {
        let bases: Vec<i64> = self.state.borrow().closed.keys().copied().collect();
        let mut out = Vec::with_capacity(bases.len());
        for b in bases {
            self.ensure_index(b).await?;
            let s = self.state.borrow();
            let Some(g) = s.closed.get(&b) else { continue };
            let times = g.index.as_ref().map(|i| i.times.as_slice()).unwrap_or(&[]);
            out.push(SegInfo {
                base: b,
                next: g.next_offset,
                size: g.size,
                max_ts: g.max_timestamp.unwrap_or(i64::MAX),
                first_ts: times.first().map_or(i64::MAX, |t| t.timestamp_ms),
            });
        }
        Ok(out)
    }

    /// The segments a pass may rewrite (closed, wholly below `upper_bound`, and past
    /// `min.compaction.lag.ms`), and the first dirty offset within them.
    async fn cleanable(&self, upper_bound: i64) -> StorageResult<(Vec<SegInfo>, i64)> {
        let cfg = self.config.borrow().clone();
        let now = (self.clock)();
        let lag_edge = now.saturating_sub(cfg.min_compaction_lag_ms as i64);
        let mut segs = self.closed_segments().await?;
        let stop = segs
            .iter()
            .position(|g| {
                g.next > upper_bound || (cfg.min_compaction_lag_ms > 0 && g.max_ts > lag_edge)
            })
            .unwrap_or(segs.len());
        segs.truncate(stop);
        let first_dirty = self
            .cleaner
            .borrow()
            .first_dirty_offset
            .max(self.log_start_offset());
        Ok((segs, first_dirty))
    }

    /// The partition's compaction figures, with the high watermark as `upper_bound`.
    pub async fn compaction_status(&self, upper_bound: i64) -> StorageResult<CompactionStatus> {
        self.check_open()?;
        let (segs, first_dirty) = self.cleanable(upper_bound).await?;
        let cleanable_bytes: u64 = segs.iter().map(|g| g.size).sum();
        let dirty_bytes: u64 = segs
            .iter()
            .filter(|g| g.next > first_dirty)
            .map(|g| g.size)
            .sum();
        Ok(CompactionStatus {
            first_dirty_offset: first_dirty,
            cleanable_bytes,
            dirty_bytes,
            dirty_ratio: if cleanable_bytes == 0 {
                0.0
            } else {
                dirty_bytes as f64 / cleanable_bytes as f64
            },
            last_clean_ms: self.cleaner.borrow().history.last().map(|(_, t)| *t),
        })
    }

    /// One compaction pass if the partition is due (see the module docs); `None` when
    /// it is not compacted, not due, or the pass gave way to a concurrent change.
    /// `upper_bound` is the high watermark: nothing at or past it is compacted.
    /// `key_map_bytes_max` bounds the key map; `codec` reads compressed batches;
    /// `throttle` paces the pass's reads and writes; `producers` names the batches kept even
    /// when they lose every record.
    pub async fn clean(
        &self,
        upper_bound: i64,
        key_map_bytes_max: usize,
        codec: &dyn RecordsCodec,
        throttle: &mut CleanerThrottle,
        producers: &ProducerLastOffsets,
    ) -> StorageResult<Option<CleanOutcome>> {
        let _one = self.clean_lock.lock().await;
        self.check_open()?;
        let cfg = self.config.borrow().clone();
        if !cfg.cleanup_compact {
            return Ok(None);
        }
        let now = (self.clock)();
        let mut generation = self.state.borrow().layout_gen;
        let (segs, first_dirty) = self.cleanable(upper_bound).await?;
        let dirty: Vec<SegInfo> = segs
            .iter()
            .filter(|g| g.next > first_dirty)
            .copied()
            .collect();
        let Some(oldest_dirty) = dirty.first() else {
            return Ok(None);
        };
        let cleanable_bytes: u64 = segs.iter().map(|g| g.size).sum();
        let dirty_bytes: u64 = dirty.iter().map(|g| g.size).sum();
        let ratio = dirty_bytes as f64 / cleanable_bytes.max(1) as f64;
        let overdue = cfg
            .max_compaction_lag_ms
            .is_some_and(|lag| oldest_dirty.first_ts < now.saturating_sub(lag as i64));
        if ratio < cfg.min_cleanable_dirty_ratio && !overdue {
            return Ok(None);
        }
        let mut outcome = CleanOutcome {
            segments_before: segs.len(),
            ..CleanOutcome::default()
        };

        // The aborted transactions of everything below the bound, active segment included
        // (a transaction in a closed segment may end in the active one). Collected after
        // `generation` was read: a change of the segments since fails the swap.
        let aborted = self
            .collect_aborted_txns(self.log_start_offset(), upper_bound)
            .await?;

        // 1. Map the dirty section's keys, leaving out aborted records.
        let mut map = KeyMap::new(key_map_bytes_max);
        let mut mapped_end = first_dirty;
        let walk_start = oldest_dirty.base;
        let in_walk: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|e| e.last_offset >= walk_start)
            .copied()
            .collect();
        let mut txns = TxnWalk::new(&in_walk);
        'map: for g in &dirty {
            let mut rd = self.segment_batches(g).await?;
            while let Some((h, data)) = rd.next().await? {
                outcome.bytes_read += data.len() as u64;
                let walked = txns.walk(&h, &data);
                if h.last_offset() < first_dirty {
                    continue;
                }
                if !map.has_room(h.record_count as usize + 1) {
                    break 'map;
                }
                if walked == (Walked::Data { aborted: false }) {
                    match records::records_section(&data, &h, codec, CLEANER_DECOMPRESSED_BYTES_MAX)
                    {
                        Ok(body) => {
                            for r in records::parse(&h, &body)? {
                                if let Some(k) = r.key {
                                    map.put(k, r.offset);
                                }
                            }
                        }
                        Err(reason) => {
                            // Its keys stay unmapped: older records of them are kept.
                            debug!(dir = %self.dir.display(), offset = h.base_offset, %reason, "cleaner cannot read a batch's records; keeping it whole");
                        }
                    }
                }
                mapped_end = h.last_offset() + 1;
                self.pace(throttle, data.len()).await;
            }
            mapped_end = mapped_end.max(g.next);
        }
        if mapped_end <= first_dirty {
            warn!(dir = %self.dir.display(), key_map_bytes_max,
                "the cleaner's key map cannot hold one batch's keys; raise the key map size");
            return Ok(None);
        }

        // 2. Rewrite the segments up to what was mapped, grouped by size.
        let targets: Vec<SegInfo> = segs
            .iter()
            .filter(|g| g.base < mapped_end)
            .copied()
            .collect();
        let mut groups: Vec<Vec<SegInfo>> = Vec::new();
        for g in targets {
            match groups.last_mut() {
                Some(cur)
                    if cur.iter().map(|x| x.size).sum::<u64>() + g.size <= cfg.segment_bytes
                        && g.next - cur[0].base <= i32::MAX as i64 =>
                {
                    cur.push(g)
                }
                _ => groups.push(vec![g]),
            }
        }
        let horizon = now.saturating_sub(cfg.delete_retention_ms as i64);
        // One walk over every group: a transaction may start in one and end in the next.
        let mut txns = TxnWalk::new(&aborted);
        for group in &groups {
            if !self
                .clean_group(
                    group,
                    &map,
                    producers,
                    &mut txns,
                    horizon,
                    codec,
                    throttle,
                    &mut generation,
                    &mut outcome,
                )
                .await?
            {
                debug!(dir = %self.dir.display(), "the log changed under the cleaner; it tries again next time");
                return Ok(None);
            }
        }
        {
            let mut c = self.cleaner.borrow_mut();
            c.first_dirty_offset = mapped_end;
            c.record(mapped_end, now);
        }
        self.write_cleaner_state().await?;
        outcome.first_dirty_offset = mapped_end;
        outcome.segments_after = self.state.borrow().closed.len();
        info!(dir = %self.dir.display(), segments_before = outcome.segments_before, segments_after = outcome.segments_after,
            bytes_read = outcome.bytes_read, bytes_written = outcome.bytes_written,
            records_removed = outcome.records_removed, tombstones_removed = outcome.tombstones_removed,
            aborted_records_removed = outcome.aborted_records_removed, markers_removed = outcome.markers_removed,
            first_dirty_offset = mapped_end, "log compacted");
        Ok(Some(outcome))
    }

    /// Between two batches of a pass: pauses as the I/O budget asks, or long enough for
    /// the shard's requests (see [`Backend::yield_now`]) after `bytes` of I/O.
    async fn pace(&self, throttle: &mut CleanerThrottle, bytes: usize) {
        match throttle.spend(bytes as u64, Instant::now()) {
            Some(pause) => self.backend.sleep(pause).await,
            None => self.backend.yield_now().await,
        }
    }

    async fn segment_batches(&self, g: &SegInfo) -> StorageResult<SegmentBatches<B::File>> {
        let path = self.dir.join(segment_name(g.base, "log"));
        let file = self.open_budgeted(&path, false).await?;
        Ok(SegmentBatches {
            file,
            path,
            pos: 0,
            size: g.size,
            buf: Bytes::new(),
            at: 0,
        })
    }

    /// Rewrites `group` into one segment and swaps it in. False if the log's segments
    /// changed since layout `generation` (nothing swapped, the output removed); after a
    /// swap, `generation` is the new layout's.
    #[allow(clippy::too_many_arguments)]
    async fn clean_group(
        &self,
        group: &[SegInfo],
        map: &KeyMap,
        producers: &ProducerLastOffsets,
        txns: &mut TxnWalk,
        horizon: i64,
        codec: &dyn RecordsCodec,
        throttle: &mut CleanerThrottle,
        generation: &mut u64,
        outcome: &mut CleanOutcome,
    ) -> StorageResult<bool> {
        let base = group[0].base;
        let cleaned_path = self.dir.join(format!("{base:020}{CLEANED_SUFFIX}"));
        self.backend.remove_file(&cleaned_path).await?;
        let file = self.backend.open_segment(&cleaned_path, true).await?;
        let mut out = CleanedWriter {
            file,
            pending: Vec::with_capacity(CLEANER_WRITE_BYTES + (64 << 10)),
            written: 0,
            size: 0,
            index: SegmentIndex::default(),
            base,
            interval: self.config.borrow().index_interval_bytes,
        };
        let cleaner = self.cleaner.borrow().clone();
        // The entries of the ABORT markers kept, in order: the cleaned segment's index.
        let mut aborted = Vec::new();
        for g in group {
            let mut rd = self.segment_batches(g).await?;
            while let Some((h, data)) = rd.next().await? {
                outcome.bytes_read += data.len() as u64;
                let walked = txns.walk(&h, &data);
                let kept = match walked {
                    Walked::Marker { needed, entry } => {
                        let expired = cleaner
                            .cleaned_since(h.last_offset())
                            .is_some_and(|t| t < horizon);
                        // A producer's last record (a marker that bumped its epoch) stays.
                        let last_of_producer =
                            producers.get(&h.producer_id) == Some(&h.last_offset());
                        if needed || !expired || last_of_producer {
                            aborted.extend(entry);
                            Some(data.clone())
                        } else {
                            outcome.markers_removed += 1;
                            None
                        }
                    }
                    Walked::OtherControl => Some(data.clone()),
                    Walked::Data { aborted } => self.filter_batch(
                        &h, &data, aborted, map, producers, &cleaner, horizon, codec, outcome,
                    )?,
                };
                let mut io = data.len();
                if let Some(b) = kept {
                    let h2 = if b.len() == data.len() {
                        h
                    } else {
                        BatchHeader::parse(&b)?
                    };
                    out.push(&h2, &b).await?;
                    io += b.len();
                }
                self.pace(throttle, io).await;
            }
        }
        let (size, index) = out.finish().await?;
        outcome.bytes_written += size;

        // Swap it in, unless the segments changed meanwhile. Only the layout lock: appends
        // and flushes go on during the renames and fsyncs below.
        let _layout = self.layout_lock.lock().await;
        let unchanged = {
            let s = self.state.borrow();
            !s.is_closed
                && s.layout_gen == *generation
                && group
                    .iter()
                    .all(|g| s.closed.get(&g.base).is_some_and(|c| c.size == g.size))
        };
        if !unchanged {
            self.backend.remove_file(&cleaned_path).await?;
            return Ok(false);
        }
        let has_txn_index = !aborted.is_empty();
        let first_had_txn_index = self
            .state
            .borrow()
            .closed
            .get(&base)
            .is_some_and(|g| g.has_txn_index);
        if has_txn_index {
            let txn_cleaned = self.dir.join(format!("{base:020}{TXN_CLEANED_SUFFIX}"));
            self.backend
                .write_small_atomic(&txn_cleaned, &crate::txn::encode_index(&aborted))
                .await?;
        }
        let swap = Swap {
            bases: group.iter().map(|g| g.base).collect(),
            has_txn_index,
        };
        let swap_path = self.dir.join(SWAP_FILE);
        self.backend
            .write_small_atomic(&swap_path, &swap.encode())
            .await?;
        // The old index would describe the new file wrongly: it goes first (a missing
        // index is rebuilt from the segment).
        self.backend
            .remove_file(&self.dir.join(segment_name(base, "index")))
            .await?;
        self.backend
            .remove_file(&self.dir.join(segment_name(base, "timeindex")))
            .await?;
        self.backend
            .rename(&cleaned_path, &self.dir.join(segment_name(base, "log")))
            .await?;
        if has_txn_index || first_had_txn_index {
            // The `.log` rename is made durable first: were the `.txnindex` step durable
            // without it, recovery would undo the swap and find the first segment's own
            // index already replaced.
            self.backend.sync_dir(&self.dir).await?;
            Self::swap_txn_index(&self.backend, &self.dir, base, has_txn_index, true).await?;
        }
        self.backend.sync_dir(&self.dir).await?;
        for g in &group[1..] {
            discard_segment_files(&self.backend, &self.dir, g.base).await?;
        }
        self.backend.sync_dir(&self.dir).await?;
        self.write_index_files(base, &index).await?;
        {
            let mut s = self.state.borrow_mut();
            for g in group {
                s.closed.remove(&g.base);
            }
            let max_ts = index.times.last().map_or(-1, |t| t.timestamp_ms);
            s.closed.insert(
                base,
                Segment {
                    base_offset: base,
                    next_offset: group[group.len() - 1].next,
                    size,
                    max_timestamp: Some(max_ts),
                    index: Some(index),
                    aborted: Some(aborted),
                    has_txn_index,
                },
            );
            if s.stream
                .as_ref()
                .is_some_and(|st| group.iter().any(|g| g.base == st.segment_base))
            {
                s.stream = None;
            }
            s.layout_gen += 1;
            *generation = s.layout_gen;
        }
        self.backend.remove_file(&swap_path).await?;
        Ok(true)
    }

    /// What of data batch `data` stays: `None` drops it, otherwise the batch (itself when
    /// every record stays). `aborted`: it belongs to an aborted transaction, so none of its
    /// records does.
    #[allow(clippy::too_many_arguments)]
    fn filter_batch(
        &self,
        h: &BatchHeader,
        data: &Bytes,
        aborted: bool,
        map: &KeyMap,
        producers: &ProducerLastOffsets,
        cleaner: &CleanerState,
        horizon: i64,
        codec: &dyn RecordsCodec,
        outcome: &mut CleanOutcome,
    ) -> StorageResult<Option<Bytes>> {
        let body;
        let recs = if aborted {
            // Its records go whatever they hold; the header alone may stay (below).
            let n = h.record_count.max(0) as u64;
            outcome.records_removed += n;
            outcome.aborted_records_removed += n;
            Vec::new()
        } else {
            body = match records::records_section(data, h, codec, CLEANER_DECOMPRESSED_BYTES_MAX) {
                Ok(b) => b,
                Err(_) => return Ok(Some(data.clone())),
            };
            records::parse(h, &body)?
        };
        let mut kept = Vec::with_capacity(recs.len());
        for r in &recs {
            let Some(k) = r.key else {
                outcome.records_removed += 1;
                continue;
            };
            if map.get(k).is_some_and(|last| r.offset < last) {
                outcome.records_removed += 1;
                continue;
            }
            if !r.has_value && cleaner.cleaned_since(r.offset).is_some_and(|t| t < horizon) {
                outcome.tombstones_removed += 1;
                continue;
            }
            kept.push(*r);
        }
        if kept.is_empty() {
            // The batch goes, unless it holds an active producer's last sequence: then
            // its header stays (a snapshot beside the log is not replicated, and can be
            // lost; the log is what a replica or a rebuild reads).
            let last_of_producer =
                h.producer_id >= 0 && producers.get(&h.producer_id) == Some(&h.last_offset());
            if last_of_producer && h.record_count == 0 {
                return Ok(Some(data.clone())); // kept empty by an earlier pass
            }
            if last_of_producer {
                outcome.empty_batches_kept += 1;
                return Ok(Some(Bytes::from(records::empty(data, h))));
            }
            return Ok(None);
        }
        if kept.len() == recs.len() {
            return Ok(Some(data.clone()));
        }
        let rebuilt = records::rebuild(data, h, &kept, codec).map_err(|reason| {
            warn!(dir = %self.dir.display(), offset = h.base_offset, %reason, "cleaner could not rebuild a batch");
            StorageError::CorruptBatch {
                reason: "a compacted batch could not be compressed again",
            }
        })?;
        Ok(Some(Bytes::from(rebuilt)))
    }
}

#[cfg(test)]
mod tests;
