//! Opening a log, which is recovering it: what the directory holds, the
//! clean-shutdown shortcut, the recovery point that may be trusted, the scan
//! of the active segment and the cut of its torn tail.
//!
//! Only the active segment is ever scanned: closed segments were sealed
//! (synced, exact, indexed) when they rolled. After a clean close the
//! checkpoint and the active index say everything and nothing is read. After
//! a crash the scan starts at the last recovery point whose batch is still
//! there, whole and with the recorded CRC, so what was synced before it is not
//! re-read; every batch after it is CRC-checked and the first torn, corrupt or
//! out-of-order one ends the log. [`scan_segment`] also rebuilds a closed
//! segment's index when its files are missing (see `reader`). The active
//! segment's aborted-transaction list is read back from the `.txnindex` its
//! last seal wrote (see `aborted`).

use std::collections::HashSet;

use tracing::{debug, info, warn};

use super::aborted::load_active_aborted;
use super::*;
use crate::backend::align_down;
use crate::batch::{self, BatchWalker};
use crate::checkpoint::RecoveryPoint;

/// Bytes read per step while scanning a segment during recovery.
const RECOVERY_READ_BYTES: usize = 8 << 20;

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
        let cleaner = Self::recover_cleaner(&backend, &dir).await?;
        let names = backend.list_dir(&dir).await?;
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log"))
            .filter_map(|n| n.parse::<i64>().ok())
            .collect();
        bases.sort_unstable();
        let txn_bases = Self::txn_index_bases(&backend, &dir, &names, &bases).await?;
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
                    aborted: None,
                    has_txn_index: txn_bases.contains(&w[0]),
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
            if let (Some(o), Some(t)) = read_index_files(&backend, &dir, active_base).await? {
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
        let clean_open = recovered.is_some();
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
        // Epochs that start at or past the recovered end never got their batch.
        let mut epochs = checkpoint
            .as_ref()
            .map(|c| LeaderEpochs::from_entries(&c.leader_epochs))
            .unwrap_or_default();
        epochs.truncate_from_end(next_offset);
        let has_txn = txn_bases.contains(&active_base);
        let txn_unknown_marker = names.iter().any(|n| n == TXN_UNKNOWN_FILE);
        let opened_clean = clean_open && !txn_unknown_marker;
        let aborted =
            load_active_aborted(&backend, &dir, active_base, has_txn, next_offset).await?;
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
                        aborted: Some(aborted.entries),
                        has_txn_index: aborted.present,
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
                epochs,
                layout_gen: 0,
                txn_unknown_marker,
            }),
            append_lock: async_lock::Mutex::new(()),
            io_lock: async_lock::Mutex::new(()),
            checkpoint_lock: async_lock::Mutex::new(()),
            clean_lock: async_lock::Mutex::new(()),
            layout_lock: async_lock::Mutex::new(()),
            cleaner: RefCell::new(cleaner),
            budget,
            clock,
            opened_clean: opened_clean && aborted.intact,
        };
        {
            let mut s = log.state.borrow_mut();
            s.active.last_batch = last_batch;
            s.active.recovery_position = recovery_position;
            // An empty segment has no aborted transaction to miss.
            s.active.aborted_known = log.opened_clean || size == 0;
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
        let (start, end, missing) = {
            let s = log.state.borrow();
            (s.log_start_offset, s.log_end_offset(), s.epochs.is_empty())
        };
        if missing && end > start {
            // A log written before epochs were kept (or whose checkpoint was lost).
            log.rebuild_epochs().await?;
        }
        // From here on a crash must rescan: drop the clean-shutdown marker.
        log.write_checkpoint(None).await?;
        debug!(dir = %log.dir.display(), log_start_offset, next_offset, "partition log opened");
        Ok(log)
    }
}

impl<B: Backend> PartitionLog<B> {
    /// The segments of `bases` the listing `names` shows a `.txnindex` for. Orphans (an
    /// index whose segment is gone: a crash between removing a segment's files) are
    /// removed, so a segment created later under that base does not take one for its own.
    async fn txn_index_bases(
        backend: &B,
        dir: &Path,
        names: &[String],
        bases: &[i64],
    ) -> StorageResult<HashSet<i64>> {
        let mut found = HashSet::new();
        for name in names {
            let Some(base) = name
                .strip_suffix(".txnindex")
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if bases.binary_search(&base).is_ok() {
                found.insert(base);
            } else {
                warn!(path = %dir.join(name).display(), "aborted-transaction index without its segment; removing it");
                backend.remove_file(&dir.join(name)).await?;
            }
        }
        Ok(found)
    }

    /// Rebuilds the leader-epoch history from the batch headers of the whole log, for a
    /// log whose checkpoint has none (written before epochs were kept, or lost).
    async fn rebuild_epochs(&self) -> StorageResult<()> {
        let (mut at, end) = (self.log_start_offset(), self.log_end_offset());
        let mut epochs = LeaderEpochs::default();
        while at < end {
            let read = self.read(at, RECOVERY_READ_BYTES).await?;
            if read.batches.is_empty() {
                break;
            }
            for b in &read.batches {
                let h = batch::BatchHeader::parse(b)?;
                epochs.assign(h.partition_leader_epoch, h.base_offset.max(at));
                at = at.max(h.last_offset() + 1);
            }
        }
        info!(dir = %self.dir.display(), epochs = epochs.entries().len(),
            "leader-epoch history rebuilt from the log's batches");
        self.state.borrow_mut().epochs = epochs;
        Ok(())
    }
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
    let (Some(off), Some(tim)) = read_index_files(backend, dir, base).await? else {
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
pub(super) struct ScanStart {
    position: u64,
    next_offset: i64,
    index: SegmentIndex,
}

impl ScanStart {
    pub(super) fn segment_start(base_offset: i64) -> Self {
        ScanStart {
            position: 0,
            next_offset: base_offset,
            index: SegmentIndex::default(),
        }
    }
}

/// What a segment scan found: valid bytes, next offset, the index, and the
/// last whole batch.
pub(super) struct Scanned {
    size: u64,
    next_offset: i64,
    pub(super) index: SegmentIndex,
    last: Option<BatchMark>,
}

/// Reads a segment from `start`, checking every batch's CRC, and returns
/// what it found. Stops at the first torn, corrupt or out-of-order batch.
pub(super) async fn scan_segment<F: SegmentFile>(
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
