//! The append path: assigning a batch its offsets, copying it into the tail
//! cache and indexing it, and rolling to a new segment when the active one is
//! full or old.
//!
//! Batches arrive as [`CheckedBatch`]: the caller has checked the header and
//! CRC-32C once (it needs the header anyway), so the log does not compute the
//! CRC a second time. An append copies the batch once (rewriting `baseOffset` and
//! `partitionLeaderEpoch`, both outside the CRC) into the tail cache and
//! returns; getting it to disk is `flush`'s business. An append only starts a
//! write itself when a whole write chunk waits and no other task holds
//! `io_lock`, so producers never queue behind a sync; it waits for the disk
//! only when `write_buffer_bytes_max` of unwritten bytes holds it back.

use tracing::{info, warn};

use super::*;
use crate::backend::align_down;
use crate::batch::{self, BatchHeader, CheckedBatch};

impl<B: Backend> PartitionLog<B> {
    /// Assigns offsets to `batch` and adds it to the log, stamped with
    /// `leader_epoch`. Durable only after [`PartitionLog::sync`] covers it.
    pub async fn append(
        &self,
        batch: CheckedBatch,
        leader_epoch: i32,
    ) -> StorageResult<AppendInfo> {
        self.append_as(batch, Some(leader_epoch)).await
    }

    /// A replication follower's append: `batch` already carries the leader's offsets and
    /// leader epoch, which are kept. Its base offset must be at least this log's end
    /// offset (past it when the leader's log is compacted: offsets compaction removed are
    /// gaps, as in Kafka); a batch that overlaps the log is refused with
    /// [`StorageError::NonContiguousAppend`] and changes nothing.
    pub async fn append_replica(&self, batch: CheckedBatch) -> StorageResult<AppendInfo> {
        self.append_as(batch, None).await
    }

    /// `leader_epoch`: Some for a leader's append (offsets assigned here), None for a
    /// follower's (offsets and epoch kept from the batch).
    async fn append_as(
        &self,
        batch: CheckedBatch,
        leader_epoch: Option<i32>,
    ) -> StorageResult<AppendInfo> {
        let limit = self.config.borrow().batch_bytes_max;
        if batch.len() > limit {
            return Err(StorageError::BatchTooLarge {
                bytes: batch.len(),
                limit_bytes: limit,
            });
        }
        let header = *batch.header();
        let _order = self.append_lock.lock().await;
        self.check_open()?;
        if leader_epoch.is_none() {
            let end = self.log_end_offset();
            if header.base_offset < end {
                return Err(StorageError::NonContiguousAppend {
                    base_offset: header.base_offset,
                    log_end_offset: end,
                });
            }
        }
        let replica = leader_epoch.is_none();
        let leader_epoch = leader_epoch.unwrap_or(header.partition_leader_epoch);
        // The first batch of a new leader epoch: its start goes into the history, durably,
        // before the batch itself (a crash in between leaves an entry at the log end, which
        // the next open drops).
        let new_epoch = {
            let mut s = self.state.borrow_mut();
            let end = s.log_end_offset();
            s.epochs.assign(leader_epoch, end)
        };
        if new_epoch {
            self.write_checkpoint(None).await?;
        }
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
        let buf = BytesMut::from(&batch.bytes()[..]);
        let now = (self.clock)();
        // A leader's batch goes at the log end; a follower's keeps the leader's offsets.
        let base = match replica {
            true => header.base_offset,
            false => self.log_end_offset(),
        };
        let (info, chunk_ready) = self.add_to_tail(buf, &header, base, leader_epoch, now, &cfg);
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
        base: i64,
        leader_epoch: i32,
        now: i64,
        cfg: &LogConfig,
    ) -> (AppendInfo, bool) {
        let len = buf.len() as u64;
        let mut s = self.state.borrow_mut();
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
        let sync_due = s.sync_due(cfg.flush, || now);
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

    /// Closes the active segment and starts a new one at the log end.
    /// Caller holds `io_lock` (and `append_lock` when called from append).
    pub(super) async fn roll(&self) -> StorageResult<()> {
        if !self.state.borrow().active.aborted_known {
            warn!(dir = %self.dir.display(),
                "rolling a segment whose aborted transactions were not restored since an unclean open; read_committed fetches may miss some of them");
        }
        let covered = self.write_out().await?.covered;
        // Closed segments are exact: no zero padding after the last batch.
        let Sealed {
            size,
            base,
            index,
            next_offset: next,
            aborted,
        } = self.seal_active().await?;
        let path = self.dir.join(segment_name(next, "log"));
        let new_file = self.open_budgeted(&path, true).await?;
        self.backend.sync_dir(&self.dir).await?;
        let now = (self.clock)();
        let mut s = self.state.borrow_mut();
        let mut old_index = index;
        old_index.shrink();
        let old = std::mem::replace(
            &mut s.active,
            Active::new(Segment::empty(next), new_file, 0, Vec::new(), now),
        );
        assert_eq!(
            old.seg.aborted.as_ref().map_or(0, Vec::len),
            aborted.len(),
            "an aborted transaction was added while its segment was being sealed"
        );
        s.closed.insert(
            base,
            Segment {
                base_offset: base,
                next_offset: next,
                size,
                max_timestamp: old.seg.max_timestamp,
                index: Some(old_index),
                has_txn_index: old.seg.has_txn_index,
                aborted: Some(aborted),
            },
        );
        s.durable_offset = s.durable_offset.max(covered);
        s.tail.clear();
        s.tail_bytes = 0;
        info!(dir = %self.dir.display(), segment = next, previous_bytes = size, "segment rolled");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::test_support::*;

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
                .append(
                    CheckedBatch::check(Bytes::from(build::sized(200, 3, 1))).unwrap(),
                    4,
                )
                .await
                .unwrap();
            leader
                .append(
                    CheckedBatch::check(Bytes::from(build::sized(200, 2, 2))).unwrap(),
                    7,
                )
                .await
                .unwrap();
            let read = leader.read(0, 1 << 20).await.unwrap();
            assert_eq!(read.batches.len(), 2);
            for b in &read.batches {
                follower
                    .append_replica(CheckedBatch::check(b.clone()).unwrap())
                    .await
                    .unwrap();
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
            // A replayed batch (it overlaps the log) is refused.
            let err = follower
                .append_replica(CheckedBatch::check(read.batches[0].clone()).unwrap())
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    StorageError::NonContiguousAppend {
                        base_offset: 0,
                        log_end_offset: 5
                    }
                ),
                "{err:?}"
            );
        });
    }
}
