//! Getting appended bytes to disk: write-behind, preallocation, `flush`,
//! `write_through`, `sync`, and the recovery points a sync leaves behind.
//!
//! Once a whole write chunk of pages is waiting in the tail cache, it is
//! copied into an aligned buffer and its direct write submitted without
//! waiting (write-behind): appends go on while the disk writes, with up to
//! `write_buffer_bytes_max` per log and [`SHARD_INFLIGHT_WRITE_BYTES_MAX`] per
//! shard in flight. Completed writes are reaped in file order, which is when
//! `written` moves. A sync drains them and also writes the partial last page,
//! zero padded, which the next write rewrites. The active segment file is
//! grown ahead of the writes (fallocate), because a size-extending direct
//! write is serialized by the file system and handed to an io_uring worker
//! thread. Everything here that touches the file runs under `io_lock`.

use tracing::debug;

use super::*;
use crate::backend::{align_down, align_up};
use crate::checkpoint::RecoveryPoint;
use crate::config::FlushPolicy;

/// One direct write of the write-behind in flight: `bytes` ending at `end`.
pub(super) struct InflightWrite {
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

impl<F> Active<F> {
    /// Where the next whole-page write starts.
    pub(super) fn submit_pos(&self) -> u64 {
        self.inflight
            .back()
            .map_or(align_down(self.written), |w| w.end)
    }

    fn inflight_bytes(&self) -> u64 {
        self.inflight.iter().map(|w| w.bytes).sum()
    }
}

impl<F> State<F> {
    /// Whether `policy` wants the unsynced appends synced now. The clock is
    /// read only when the interval is what decides.
    pub(super) fn sync_due(&self, policy: FlushPolicy, now: impl FnOnce() -> i64) -> bool {
        match policy {
            FlushPolicy::EveryAppend => true,
            FlushPolicy::Threshold {
                messages,
                bytes,
                interval_ms,
            } => {
                self.unsynced_messages >= messages
                    || self.unsynced_bytes >= bytes
                    || self
                        .first_unsynced_ms
                        .is_some_and(|t| now().saturating_sub(t) as u64 >= interval_ms)
            }
        }
    }
}

impl<B: Backend> PartitionLog<B> {
    /// Whether the flush policy wants a sync now (interval elapsed).
    pub fn sync_due(&self) -> bool {
        let s = self.state.borrow();
        if s.durable_offset >= s.log_end_offset() {
            return false;
        }
        s.sync_due(self.config.borrow().flush, || (self.clock)())
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
    pub(super) async fn sync_locked(&self) -> StorageResult<i64> {
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
    pub(super) async fn write_recovery_point(&self, out: &WrittenOut) -> StorageResult<()> {
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
    pub(super) async fn reap_one(&self, wait: bool) -> StorageResult<bool> {
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
    pub(super) async fn submit_pages(
        &self,
        short_ok: bool,
        within_shard_budget: bool,
    ) -> StorageResult<()> {
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
    pub(super) async fn write_out(&self) -> StorageResult<WrittenOut> {
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
pub(super) fn trim_tail<F>(s: &mut State<F>, cache_max: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::test_support::*;

    #[test]
    fn write_through_reaches_the_file_without_a_sync() {
        let be = MemoryBackend::new();
        let log = open(&be, LogConfig::default());
        block_on(async {
            let batch = build::sized(300, 2, 5);
            let checked = CheckedBatch::check(Bytes::from(batch.clone())).unwrap();
            log.append(checked, 0).await.unwrap();
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
            let batch = CheckedBatch::check(Bytes::from(build::sized(100_000, 2, 5))).unwrap();
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
        let batch = CheckedBatch::check(Bytes::from(build::sized(3000, 1, 5))).unwrap();
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
}
