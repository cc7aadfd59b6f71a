//! Taking data out of the log: retention by time and size, DeleteRecords, and
//! a follower's truncation to the leader's epoch boundary.
//!
//! Retention and DeleteRecords only ever drop whole closed segments from the
//! front: the log start moves in memory first (readers see it at once), then
//! a checkpoint names it, and only then are the files handed to the reaper,
//! so a crash in between leaves files that the next open removes, never a log
//! start past what is on disk. Truncation cuts from the end instead, and first
//! removes the recovery point that would vouch for the bytes it cuts. A
//! segment's `.txnindex` goes with it; truncation also cuts the active
//! segment's aborted transactions and the file that holds them.

use tracing::info;

use super::*;
use crate::backend::align_down;
use crate::batch::BatchWalker;

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
        let _layout = self.layout_lock.lock().await;
        let order = self.append_lock.lock().await;
        let io = self.io_lock.lock().await;
        self.check_open()?;
        let cfg = self.config.borrow().clone();
        if !cfg.cleanup_delete {
            // cleanup.policy=compact: the cleaner keeps the log small, nothing expires.
            return Ok(RetentionOutcome {
                log_start_offset: self.log_start_offset(),
                ..RetentionOutcome::default()
            });
        }
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
            s.layout_gen += 1;
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
        let _layout = self.layout_lock.lock().await;
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

    /// A follower that fell behind its leader's log start (retention deleted what it
    /// needs next): drops the whole log and starts it again, empty, at `offset` (Kafka's
    /// `truncateFullyAndStartAt`). The new empty segment is created and the checkpoint
    /// names the new log start before the old files go, so a crash in between leaves old
    /// segments below the log start, which the next open removes.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> StorageResult<()> {
        let _layout = self.layout_lock.lock().await;
        let _order = self.append_lock.lock().await;
        let _io = self.io_lock.lock().await;
        self.check_open()?;
        self.write_out().await?;
        self.backend
            .remove_file(&self.dir.join(RECOVERY_POINT_FILE))
            .await?;
        let old: Vec<i64> = {
            let s = self.state.borrow();
            s.closed
                .keys()
                .copied()
                .chain(std::iter::once(s.active.seg.base_offset))
                .collect()
        };
        let path = self.dir.join(segment_name(offset, "log"));
        let handle = self.open_budgeted(&path, true).await?;
        handle.get().truncate(0).await?;
        handle.get().sync().await?;
        // A segment of the old log may have had this base: its aborted transactions go.
        self.backend
            .remove_file(&self.dir.join(segment_name(offset, "txnindex")))
            .await?;
        self.backend.sync_dir(&self.dir).await?;
        {
            let now = (self.clock)();
            let mut s = self.state.borrow_mut();
            s.closed.clear();
            s.active = Active::new(Segment::empty(offset), handle, 0, Vec::new(), now);
            s.log_start_offset = offset;
            s.durable_offset = offset;
            s.tail.clear();
            s.tail_bytes = 0;
            s.stream = None;
            s.epochs = LeaderEpochs::default();
            s.layout_gen += 1;
        }
        self.cleaner.borrow_mut().truncate(offset);
        self.write_checkpoint(None).await?;
        self.write_cleaner_state().await?;
        for base in old.into_iter().filter(|b| *b != offset) {
            remove_segment_files(&self.backend, &self.dir, base).await?;
        }
        info!(dir = %self.dir.display(), offset, "log emptied to restart at the leader's log start");
        Ok(())
    }

    /// Removes every batch whose last offset is at or past `offset` (a
    /// replication follower truncating to the leader's epoch boundary).
    /// Returns the new log end offset.
    pub async fn truncate_to(&self, offset: i64) -> StorageResult<i64> {
        let _layout = self.layout_lock.lock().await;
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
            let mut aborted = Vec::new();
            if keep_base.is_some() {
                self.ensure_index(new_active_base).await?;
                // Cut below, with the `.txnindex` it keeps (see `cut_active_aborted`).
                aborted = self.closed_aborted(new_active_base).await?;
            }
            let (size, next, index, has_txn_index) = {
                let mut s = self.state.borrow_mut();
                match s.closed.remove(&new_active_base) {
                    Some(g) => (
                        g.size,
                        g.next_offset,
                        g.index.unwrap_or_default(),
                        g.has_txn_index,
                    ),
                    None => (0, new_active_base, SegmentIndex::default(), false),
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
                        aborted: Some(aborted),
                        has_txn_index,
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
                // A batch that starts past `offset` lies after a gap (compaction): the log
                // then ends at `offset` itself, as Kafka's truncation leaves it.
                new_next = h.base_offset.min(offset);
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
            s.epochs.truncate_from_end(leo);
            s.layout_gen += 1;
        }
        self.cut_active_aborted(offset).await?;
        let leo = self.log_end_offset();
        let dirty_moved = {
            let mut c = self.cleaner.borrow_mut();
            let before = c.first_dirty_offset;
            c.truncate(leo);
            before != c.first_dirty_offset
        };
        self.write_checkpoint(None).await?;
        if dirty_moved {
            self.write_cleaner_state().await?;
        }
        info!(dir = %self.dir.display(), offset, log_end_offset = self.log_end_offset(), "log truncated");
        Ok(self.log_end_offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::test_support::*;

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
                log.append(
                    CheckedBatch::check(Bytes::from(build::sized(1000, 1, i))).unwrap(),
                    0,
                )
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
