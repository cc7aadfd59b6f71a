//! A follower applying what it fetched from its leader: whole batches appended with the
//! leader's offsets and epochs, the leader's high watermark taken, and the log cut back to
//! exactly where it diverges from the leader's (the leader names the epoch and end offset,
//! the follower's own epoch history says where that is here; KIP-101, KIP-279, KIP-595).
//! A follower that fell behind the leader's log start empties its log and restarts there.

use bytes::Bytes;
use rill_net::ErrorCode;
use rill_storage::batch::CheckedBatch;
use rill_storage::Backend;
use tracing::{debug, warn};

use super::{batch_len, Partition};

/// One partition of a leader's Fetch response.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    pub error: ErrorCode,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// The leader says this follower's log diverges: (epoch, end offset) there.
    pub diverging: Option<(i32, i64)>,
    pub records: Bytes,
}

/// What a follower's Fetch asked of one partition. Its answer is applied only while the
/// partition still follows that leader, in that epoch, from that offset: an answer that
/// arrives after leadership moved, or after another answer changed the log, describes a
/// log that is no longer this one (Kafka's fetcher drops it the same way). Applied anyway,
/// a late diverging-epoch answer from before a truncation cut away records the ISR had
/// since acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchAsked {
    pub leader: i32,
    pub leader_epoch: i32,
    pub fetch_offset: i64,
}

/// Why a fetched partition could not be applied (the fetcher backs off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotApplied;

impl<B: Backend> Partition<B> {
    /// What this partition's next Fetch from `leader` asks; None unless this replica
    /// follows `leader` (its placement may lag the image the fetcher read).
    pub fn fetch_asked(&self, leader: i32) -> Option<FetchAsked> {
        let r = self.replica.borrow();
        let p = r.placement();
        (p.leader == leader && !r.is_leader()).then(|| FetchAsked {
            leader,
            leader_epoch: p.leader_epoch,
            fetch_offset: self.log.log_end_offset(),
        })
    }

    /// The epoch of the last batch this follower holds (-1 when it holds none): the leader
    /// checks it against its own history.
    pub fn last_fetched_epoch(&self) -> i32 {
        self.log.leader_epochs().latest().map_or(-1, |(e, _)| e)
    }

    /// Where to cut this log when the leader says it diverges at (`epoch`, `end_offset`),
    /// and whether that settles it (else the follower fetches again and may cut more), as
    /// Kafka's fetcher decides it.
    fn truncation_point(&self, epoch: i32, end_offset: i64) -> (i64, bool) {
        let end = self.log.log_end_offset();
        if end_offset < 0 {
            // The leader knows no epoch history: fall back to its high watermark.
            return (self.high_watermark().min(end), true);
        }
        if epoch < 0 {
            return (end_offset.min(end), true);
        }
        let (mine, mine_end) = self.log.end_offset_for_epoch(epoch);
        if mine < 0 {
            (end_offset.min(end), true)
        } else if mine != epoch {
            (mine_end.min(end), false)
        } else {
            (mine_end.min(end_offset).min(end), true)
        }
    }

    /// Cuts the log back to `offset` (it never held what the leader did there).
    async fn truncate(&self, offset: i64, why: &str) -> Result<(), NotApplied> {
        let (topic, partition) = (&*self.topic, self.index);
        let from = self.log.log_end_offset();
        warn!(
            topic,
            partition,
            from,
            to = offset,
            why,
            "truncating the follower log"
        );
        // The producer table may hold batches of the cut suffix: rebuilt before next use
        // (invalid from here, even if the truncation fails half-way).
        self.producers_rebuilt.set(false);
        if let Err(e) = self.log.truncate_to(offset).await {
            warn!(topic, partition, error = %e, "cannot truncate the follower log");
            return Err(NotApplied);
        }
        self.replica
            .borrow_mut()
            .truncated(self.log.log_end_offset());
        self.void_producer_snapshot().await;
        Ok(())
    }

    /// Appends one partition's fetched batches, the answer to `asked`. `Ok(true)` when the
    /// log changed; `Ok(false)` also when the answer is stale (see [`FetchAsked`]). Runs in
    /// append order, so two answers (of an old and a new leader) never change the log at
    /// once.
    pub async fn append_fetched(
        &self,
        asked: FetchAsked,
        f: FetchedPartition,
    ) -> Result<bool, NotApplied> {
        let (topic, partition) = (&*self.topic, self.index);
        let _turn = self.appends.lock().await;
        let now = self.fetch_asked(asked.leader);
        if now != Some(asked) {
            debug!(
                topic,
                partition,
                ?asked,
                ?now,
                "dropping a stale fetch answer: leadership or the log moved since it was asked"
            );
            return Ok(false);
        }
        match f.error {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                let end = self.log.log_end_offset();
                if f.log_start_offset > end {
                    // Retention at the leader deleted what this follower needs next.
                    self.producers_rebuilt.set(false);
                    if let Err(e) = self
                        .log
                        .truncate_fully_and_start_at(f.log_start_offset)
                        .await
                    {
                        warn!(topic, partition, error = %e, "cannot restart the follower log at the leader's log start");
                        return Err(NotApplied);
                    }
                    self.replica.borrow_mut().truncated(f.log_start_offset);
                    self.void_producer_snapshot().await;
                    return Ok(true);
                }
                if end > f.high_watermark && f.high_watermark >= 0 {
                    // Past the leader's log end without a diverging epoch to say where: what
                    // is past the leader's high watermark was never acknowledged to acks=all
                    // producers.
                    self.truncate(f.high_watermark, "the follower log runs past the leader's")
                        .await?;
                    return Ok(true);
                }
                debug!(
                    topic,
                    partition,
                    log_end = end,
                    "offset out of range at the leader; fetching again"
                );
                return Err(NotApplied);
            }
            other => {
                debug!(topic, partition, error = ?other, "replica fetch error for a partition");
                return Err(NotApplied);
            }
        }
        if let Some((epoch, end_offset)) = f.diverging {
            let (offset, _settled) = self.truncation_point(epoch, end_offset);
            // Unsettled: the next fetch names the epoch this log now ends with, and the
            // leader says again where that one diverges.
            self.truncate(offset, "the leader's log diverges from this one")
                .await?;
            return Ok(true);
        }
        let mut records = f.records;
        let mut grew = false;
        // A partial batch at the end of a size-limited response is left for the next fetch.
        while let Ok(len) = batch_len(&records) {
            let appended = match CheckedBatch::check(records.split_to(len)) {
                Ok(batch) => {
                    let header = *batch.header();
                    let data = batch.bytes().clone();
                    // Transactions and the aborted index must be the log's before a
                    // transactional batch or marker lands (see `append_needs_producers`).
                    if self.append_needs_producers(&header) {
                        self.rebuild_producers().await;
                    }
                    self.log.append_replica(batch).await.map(|_| (header, data))
                }
                Err(e) => Err(e),
            };
            match appended {
                Ok((header, data)) => {
                    grew = true;
                    // Kept in step, as the leader keeps it, once rebuilt: a follower's
                    // cleaner needs it, and so does this broker when it leads next.
                    #[cfg(test)]
                    let skip = self.follower_skips_txn_state.get() && header.is_transactional();
                    #[cfg(not(test))]
                    let skip = false;
                    if self.producers_rebuilt.get() && !skip {
                        self.record_appended(&header, &data, header.base_offset);
                    }
                }
                Err(e) => {
                    warn!(topic, partition, error = %e, "cannot append a replicated batch");
                    return Err(NotApplied);
                }
            }
        }
        if grew {
            self.snapshot_producers(false).await;
            // The next fetch tells the leader this follower holds everything below its log
            // end: it must, in its files (or synced, with replica_fsync), not only in memory.
            let durable = if self.replica_fsync {
                self.log.sync().await.map(|_| ())
            } else {
                self.log.write_through().await
            };
            if let Err(e) = durable {
                warn!(topic, partition, error = %e, "cannot write out a replicated batch");
                return Err(NotApplied);
            }
        }
        let end = self.log.log_end_offset();
        self.replica
            .borrow_mut()
            .leader_high_watermark(f.high_watermark, end);
        // What the leader deleted (DeleteRecords, retention) goes here too, as far as this
        // replica's high watermark, so a later leader never serves it again.
        let start = f.log_start_offset.min(self.high_watermark());
        if start > self.log.log_start_offset() {
            match self.log.delete_records(start).await {
                Ok(now) => debug!(
                    topic,
                    partition,
                    log_start_offset = now,
                    "follower log start follows the leader's"
                ),
                Err(e) => {
                    warn!(topic, partition, error = %e, "cannot move the follower log start to the leader's");
                    return Err(NotApplied);
                }
            }
        }
        if grew {
            self.data.notify(usize::MAX);
        }
        Ok(grew)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::Arc;

    use bytes::Bytes;
    use futures_lite::future::block_on;
    use rill_net::ErrorCode;
    use rill_storage::batch::{build, set_base_offset, set_partition_leader_epoch, CheckedBatch};
    use rill_storage::{FileBudget, MemoryBackend, PartitionLog};
    use uuid::Uuid;

    use super::{FetchAsked, FetchedPartition};
    use crate::config::topic::{BrokerDefaults, TopicSettings};
    use crate::config::StorageSettings;
    use crate::metadata::Placement;
    use crate::metrics::ShardMetrics;
    use crate::partition::{FetchAt, Fetched, Opening, Partition, Reader};

    fn placement(leader: i32, epoch: i32) -> Placement {
        Placement {
            leader,
            leader_epoch: epoch,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            partition_epoch: epoch,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// A batch of `records` records as a leader at `epoch` stored it at `base`.
    fn batch(base: i64, epoch: i32, records: usize) -> Bytes {
        let recs: Vec<build::Rec<'_>> = (0..records)
            .map(|_| build::Rec {
                key: None,
                value: b"v",
                timestamp_ms: 1_700_000_000_000,
            })
            .collect();
        let mut b = build::batch(&recs);
        set_base_offset(&mut b, base);
        set_partition_leader_epoch(&mut b, epoch);
        Bytes::from(b)
    }

    fn answer(records: Bytes) -> FetchedPartition {
        FetchedPartition {
            error: ErrorCode::None,
            high_watermark: 0,
            log_start_offset: 0,
            diverging: None,
            records,
        }
    }

    /// A partition of broker `me` on a fresh in-memory disk, placed as `placement` says.
    fn open(me: i32, placement: Placement) -> (Partition<MemoryBackend>, TopicSettings) {
        let settings = TopicSettings::resolve(&BrokerDefaults::default(), &[]).unwrap();
        let log = block_on(PartitionLog::open(
            MemoryBackend::new(),
            "/p-0",
            settings.log_config(&StorageSettings::default()),
            FileBudget::new(8),
        ))
        .unwrap();
        let metrics = Rc::new(ShardMetrics::default());
        let p = Partition::new(
            log,
            Opening {
                topic: Arc::from("t"),
                index: 0,
                topic_id: Uuid::from_u128(1),
                settings: settings.clone(),
                placement,
                me,
                producers_max: 10,
                metrics: &metrics,
                high_watermark: 0,
                replica_fsync: false,
            },
        );
        (p, settings)
    }

    #[test]
    fn a_produce_waiting_on_a_deposed_leader_is_not_acknowledged() {
        // Chaos seed 21: a leader cut off for 1.4 s took acks=all produces; it was deposed
        // while they waited, cut them away as a follower of the new leader, took that
        // leader's high watermark past their offsets, and then answered them as
        // acknowledged: the records were lost and their offsets acknowledged twice.
        let (p, settings) = open(1, placement(1, 1));
        let produced = CheckedBatch::check(batch(0, 0, 3)).unwrap();
        let (_, last, epoch) = block_on(p.append_durably(vec![produced], -1)).unwrap();
        assert_eq!((last, epoch), (2, 1));
        assert!(
            p.replication_outcome(last, epoch).is_none(),
            "waits for the followers"
        );
        // Broker 3 leads at epoch 2 with other records; this broker follows it, cuts its
        // log back and takes its high watermark.
        p.apply(&settings, &placement(3, 2), &StorageSettings::default());
        let asked = p.fetch_asked(3).unwrap();
        let mut diverging = answer(Bytes::new());
        diverging.diverging = Some((0, 0));
        assert_eq!(block_on(p.append_fetched(asked, diverging)), Ok(true));
        let asked = p.fetch_asked(3).unwrap();
        assert_eq!(asked.fetch_offset, 0, "cut back to the divergence");
        let mut theirs = answer(batch(0, 2, 5));
        theirs.high_watermark = 5;
        assert_eq!(block_on(p.append_fetched(asked, theirs)), Ok(true));
        assert_eq!(p.high_watermark(), 5);
        let outcome = p.replication_outcome(last, epoch);
        assert_eq!(
            outcome.map(|r| r.map_err(|e| e.code)),
            Some(Err(ErrorCode::NotLeaderOrFollower)),
            "a produce of a deposed leader answered from the new leader's high watermark"
        );
    }

    #[test]
    fn a_produce_waiting_for_its_turn_checks_leadership_and_epoch_in_its_turn() {
        // Issue 15: a batch was stamped with the leader epoch read when its request
        // started, and leadership was not checked again under the append, so a produce
        // that waited for its turn (behind a follower's append, another produce or a
        // budget) while leadership moved appended at a stale epoch, or as a follower.
        let (p, settings) = open(1, placement(1, 1));
        let first = CheckedBatch::check(batch(0, 0, 3)).unwrap();
        block_on(async {
            // Deposed while it waits: nothing is appended, NOT_LEADER_OR_FOLLOWER.
            let turn = p.appends.lock().await;
            let mut waiting = std::pin::pin!(p.append_durably(vec![first.clone()], -1));
            assert!(
                futures_lite::future::poll_once(&mut waiting)
                    .await
                    .is_none(),
                "waits for its turn"
            );
            p.apply(&settings, &placement(3, 2), &StorageSettings::default());
            drop(turn);
            let r = waiting.await.map(|(_, last, epoch)| (last, epoch));
            assert_eq!(
                r.map_err(|e| e.code),
                Err(ErrorCode::NotLeaderOrFollower),
                "a produce that waited while this broker was deposed"
            );
            assert_eq!(
                p.log().log_end_offset(),
                0,
                "nothing appended as a follower"
            );

            // Leader again at epoch 3 while it waits: stamped with epoch 3, not 1.
            p.apply(&settings, &placement(1, 3), &StorageSettings::default());
            let turn = p.appends.lock().await;
            let mut waiting = std::pin::pin!(p.append_durably(vec![first.clone()], -1));
            assert!(futures_lite::future::poll_once(&mut waiting)
                .await
                .is_none());
            p.apply(&settings, &placement(1, 4), &StorageSettings::default());
            drop(turn);
            let (_, last, epoch) = waiting.await.expect("appended");
            assert_eq!((last, epoch), (2, 4));
            let read = p.log().read(0, 1 << 20).await.unwrap();
            let stamped = rill_storage::batch::BatchHeader::parse(&read.batches[0])
                .unwrap()
                .partition_leader_epoch;
            assert_eq!(stamped, 4, "the batch carries the epoch of its turn");
        });
    }

    #[test]
    fn a_write_pinned_to_a_leader_epoch_is_refused_at_any_other() {
        // A coordinator writes its state records at the leader epoch it loaded them at
        // (`produce_at`): one that lost the leadership and leads again at a later epoch
        // reloaded meanwhile, and a write decided from the old state must not land.
        let (p, settings) = open(1, placement(1, 1));
        let pinned = |epoch| super::super::AppendAs {
            leader_epoch: Some(epoch),
            ..Default::default()
        };
        let one = CheckedBatch::check(batch(0, 0, 3)).unwrap();
        p.apply(&settings, &placement(1, 3), &StorageSettings::default());
        let refused = block_on(p.append_durably_from(vec![one.clone()], -1, pinned(1)));
        assert_eq!(
            refused.map(|_| ()).map_err(|e| e.code),
            Err(ErrorCode::NotLeaderOrFollower)
        );
        assert_eq!(p.log().log_end_offset(), 0, "nothing appended");
        let (_, last, epoch) =
            block_on(p.append_durably_from(vec![one], -1, pinned(3))).expect("appended");
        assert_eq!((last, epoch), (2, 3));
    }

    #[test]
    fn a_late_answer_from_a_leader_no_longer_followed_is_dropped() {
        // The partition simulator found this too (seed 173): a follower of a new leader
        // applied a late answer of the old one (a diverging epoch) and cut its log below
        // what the new leader had counted it holding; the new leader then took it into
        // the ISR with a high watermark past its log end.
        let (p, settings) = open(2, placement(1, 1));
        let asked = p.fetch_asked(1).unwrap();
        assert_eq!(
            block_on(p.append_fetched(asked, answer(batch(0, 1, 5)))),
            Ok(true)
        );
        assert_eq!(p.fetch_asked(1).unwrap().fetch_offset, 5);
        // Broker 3 leads now, at epoch 2.
        p.apply(&settings, &placement(3, 2), &StorageSettings::default());
        assert_eq!(p.fetch_asked(1), None);
        let late = FetchAsked {
            leader: 1,
            leader_epoch: 1,
            fetch_offset: 5,
        };
        let mut diverging = answer(Bytes::new());
        diverging.diverging = Some((0, 2));
        assert_eq!(block_on(p.append_fetched(late, diverging)), Ok(false));
        let asked = p.fetch_asked(3).unwrap();
        assert_eq!(
            asked.fetch_offset, 5,
            "not cut back by the old leader's answer"
        );
        // An answer to a fetch from an offset the log no longer ends at is dropped too.
        let moved = FetchAsked {
            fetch_offset: 3,
            ..asked
        };
        assert_eq!(
            block_on(p.append_fetched(moved, answer(batch(3, 2, 2)))),
            Ok(false)
        );
        assert_eq!(
            block_on(p.append_fetched(asked, answer(batch(5, 2, 2)))),
            Ok(true)
        );
        assert_eq!(p.fetch_asked(3).unwrap().fetch_offset, 7);
    }

    #[test]
    fn a_new_leader_says_where_older_epochs_end_before_it_appends_in_its_own() {
        // Found by the partition simulator (seed 2569): a new leader at epoch 2 that had
        // not appended yet answered a follower whose log ended in epoch 1 that it knew no
        // such epoch; the follower fell back to its own high watermark, which lagged, and
        // cut records below the leader's high watermark although it was in the ISR.
        let (p, settings) = open(3, placement(1, 0));
        let asked = p.fetch_asked(1).unwrap();
        assert_eq!(
            block_on(p.append_fetched(asked, answer(batch(0, 0, 10)))),
            Ok(true)
        );
        p.apply(&settings, &placement(3, 2), &StorageSettings::default());
        assert!(p.is_leader());
        let at = FetchAt {
            offset: 15,
            max_bytes: 1 << 20,
            current_leader_epoch: 2,
            last_fetched_epoch: 1,
        };
        assert_eq!(
            block_on(p.fetch(Reader::Follower(2), at)).unwrap(),
            Fetched::Diverging {
                epoch: 0,
                end_offset: 10
            }
        );
        assert_eq!(p.offset_for_leader_epoch(2, 1).unwrap(), (0, 10));
        assert_eq!(p.offset_for_leader_epoch(2, 0).unwrap(), (0, 10));
        assert_eq!(p.offset_for_leader_epoch(2, 2).unwrap(), (2, 10));
        assert_eq!(
            p.offset_for_leader_epoch(2, 3).unwrap(),
            (-1, -1),
            "not issued"
        );
    }
}
