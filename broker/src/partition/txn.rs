//! Transactions in one partition (issue 17, increment 2 of `broker/docs/transactions.md`):
//! end markers written for a transaction coordinator (WriteTxnMarkers), the last stable
//! offset read_committed consumers stop at, and the aborted transactions they are told of
//! so they drop those records. Leaders and followers keep the same state: every replica
//! records each transactional batch and marker in its producer table and each abort in its
//! log's aborted-transaction index, so a new leader answers as the old one did.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::ErrorCode;
use rill_storage::batch::{BatchHeader, CheckedBatch};
use rill_storage::txn::{self as log_txn, AbortedTxn, ControlKind, EndTxnMarker};
use rill_storage::Backend;

use super::producers::{ActiveAborted, CompletedTxn, Guard, MarkerWrite, Verification};
use super::{Partition, Produced};
use crate::errors::KafkaError;
use crate::fifo::FifoLock;
use crate::runtime;

impl From<CompletedTxn> for AbortedTxn {
    fn from(t: CompletedTxn) -> AbortedTxn {
        AbortedTxn {
            producer_id: t.producer_id,
            first_offset: t.first_offset,
            last_offset: t.last_offset,
            last_stable_offset: t.last_stable_offset,
        }
    }
}

/// The producer-table form of the end marker a control batch holds (None for an empty
/// control batch or a control type Kafka does not define).
pub(super) fn marker_of(h: &BatchHeader, batch: &[u8]) -> Option<MarkerWrite> {
    let m = log_txn::parse_marker(batch)?;
    Some(MarkerWrite {
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        coordinator_epoch: m.coordinator_epoch,
        commit: m.kind == ControlKind::Commit,
    })
}

/// A produce's place in its producer's lane ([`Partition::produce_verified`]); the lane
/// goes from the partition's map once no produce holds or waits for it.
struct LaneHold<'a> {
    lanes: &'a RefCell<HashMap<i64, Rc<FifoLock>>>,
    producer_id: i64,
    lane: Option<Rc<FifoLock>>,
}

impl Drop for LaneHold<'_> {
    fn drop(&mut self) {
        drop(self.lane.take());
        let mut lanes = self.lanes.borrow_mut();
        if lanes
            .get(&self.producer_id)
            .is_some_and(|l| Rc::strong_count(l) == 1)
        {
            lanes.remove(&self.producer_id);
        }
    }
}

impl<B: Backend> Partition<B> {
    /// A client's produce of transactional batches with partition verification (KIP-890
    /// part 1, Kafka's `transaction.partition.verification.enable`): when the producer's
    /// transaction at the batches' epoch is not open here, `verify(producer_id, epoch)`
    /// asks its coordinator whether this partition is in it before the append, and the
    /// append happens only if no end marker of the producer landed meanwhile. So a late
    /// batch of a transaction that ended (or one sent to a partition never added) is
    /// refused instead of opening a transaction that no marker will ever close.
    ///
    /// The produces of one producer id keep the order they were called in (their place in
    /// the append order is taken after the verification, one after another); other
    /// producers' appends never wait for it.
    pub fn produce_verified<F, Fut>(
        &self,
        batches: Vec<CheckedBatch>,
        acks: i16,
        replica_lag_max: Duration,
        verify: F,
    ) -> impl Future<Output = Result<Produced, KafkaError>> + '_
    where
        F: FnOnce(i64, i16) -> Fut + 'static,
        Fut: Future<Output = Result<(), KafkaError>> + 'static,
    {
        let producer = batches
            .iter()
            .map(|b| b.header())
            .find(|h| h.is_transactional() && h.producer_id >= 0)
            .map(|h| (h.producer_id, h.producer_epoch));
        // The place in the producer's lane is taken now, in call order.
        let lane = producer.map(|(producer_id, _)| {
            let lane = self
                .txn_lanes
                .borrow_mut()
                .entry(producer_id)
                .or_insert_with(|| Rc::new(FifoLock::new()))
                .clone();
            let place = lane.lock();
            let hold = LaneHold {
                lanes: &self.txn_lanes,
                producer_id,
                lane: Some(lane),
            };
            (hold, place)
        });
        async move {
            let (Some((producer_id, epoch)), Some((hold, place))) = (producer, lane) else {
                return self.produce(batches, acks, replica_lag_max).await;
            };
            let in_lane = place.await;
            self.ensure_producers().await;
            let v = self.producers.borrow_mut().verification(producer_id, epoch);
            let guard = match v {
                Verification::NotNeeded => None,
                Verification::Verified(g) => Some(g),
                Verification::Needed(g) => {
                    verify(producer_id, epoch).await?;
                    self.producers.borrow_mut().mark_verified(g);
                    Some(g)
                }
            };
            // The place in the append order is taken before the next produce of this
            // producer leaves the lane.
            let how = super::AppendAs {
                guard,
                ..super::AppendAs::default()
            };
            let produced = self.produce_as(batches, acks, replica_lag_max, how);
            drop(in_lane);
            drop(hold);
            produced.await
        }
    }

    /// In append turn: a verified batch may be appended only while its guard holds.
    pub(super) fn guard_holds(&self, g: Guard) -> Result<(), KafkaError> {
        if self.producers.borrow().guard_holds(g) {
            return Ok(());
        }
        tracing::debug!(topic = %self.topic, partition = self.index, producer_id = g.producer_id, epoch = g.epoch, "a verified transactional batch lost its guard before its turn");
        Err(KafkaError::new(
            ErrorCode::InvalidTxnState,
            format!(
                "the transaction of producer {} at epoch {} ended while its batch to {}-{} \
                 waited for its turn; the batch was not appended",
                g.producer_id, g.epoch, self.topic, self.index
            ),
        ))
    }

    /// Makes the producer table the log's state (a rebuild after a restart or truncation),
    /// in append order.
    pub(super) async fn ensure_producers(&self) {
        if self.producers_rebuilt.get() {
            return;
        }
        let _turn = self.appends.lock().await;
        if !self.producers_rebuilt.get() {
            self.rebuild_producers().await;
        }
    }

    /// Whether an append of a batch like `h` needs the producer table first: a
    /// transactional batch or marker changes the transactions and the aborted index, and
    /// after an unclean open the active segment's aborted index is known only once the
    /// table was rebuilt (a roll would seal it as it is).
    pub(super) fn append_needs_producers(&self, h: &BatchHeader) -> bool {
        !self.producers_rebuilt.get()
            && (h.producer_id >= 0 || h.is_transactional() || !self.log.opened_clean())
    }

    /// Records a batch just appended at `base_offset` in the producer table, and an abort
    /// marker in the log's aborted-transaction index. No await between the append and
    /// this, so no roll seals the segment in between.
    pub(super) fn record_appended(&self, h: &BatchHeader, batch: &[u8], base_offset: i64) {
        if h.is_control() {
            if let Some(m) = marker_of(h, batch) {
                let done = self.producers.borrow_mut().record_marker(&m, base_offset);
                if let Some(t) = done.filter(|t| t.aborted) {
                    self.log.add_aborted_txn(t.into());
                }
            }
        } else if h.producer_id >= 0 {
            self.producers.borrow_mut().record(h, base_offset);
        }
    }

    /// The active segment's aborted transactions as a producer snapshot records them.
    pub(super) fn active_aborted(&self) -> ActiveAborted {
        ActiveAborted {
            base: self.log.active_base_offset(),
            entries: self.log.active_aborted_txns(),
        }
    }

    /// The last stable offset: read_committed consumers read below it. None until the
    /// producer table is the log's state (see [`Partition::ensure_producers`]).
    pub fn last_stable_offset(&self) -> Option<i64> {
        if !self.producers_rebuilt.get() {
            return None;
        }
        let hw = self.high_watermark();
        let lso = self.producers.borrow_mut().last_stable_offset(hw);
        Some(lso.max(self.log.log_start_offset()))
    }

    /// The last stable offset, rebuilding the producer table first if a restart or a
    /// truncation emptied it.
    pub async fn stable_offset(&self) -> i64 {
        self.ensure_producers().await;
        self.last_stable_offset()
            .expect("the producer table was just rebuilt")
    }

    /// The aborted transactions a read_committed fetch from `from` that returned records
    /// below `upper` must report.
    pub async fn aborted_transactions(
        &self,
        from: i64,
        upper: i64,
    ) -> Result<Vec<AbortedTxn>, KafkaError> {
        self.log
            .collect_aborted_txns(from, upper)
            .await
            .map_err(KafkaError::from)
    }

    /// WriteTxnMarkers for this partition: appends the end marker of producer
    /// `m.producer_id`'s transaction (commit or abort), as leader, in append order, and
    /// waits until it is on every in-sync replica (markers are written with acks=all).
    pub async fn write_txn_marker(
        &self,
        m: MarkerWrite,
        replica_lag_max: Duration,
    ) -> Result<(), KafkaError> {
        let (last_offset, epoch) = self.append_marker(m).await?;
        self.await_replication(last_offset, epoch, replica_lag_max)
            .await
    }

    /// [`Partition::write_txn_marker`] up to the wait for the in-sync replicas: the marker
    /// appended in turn and synced here; its offset and the leader epoch it was appended at.
    pub(super) async fn append_marker(&self, m: MarkerWrite) -> Result<(i64, i32), KafkaError> {
        let (last_offset, epoch) = {
            let _turn = self.appends.lock().await;
            let epoch = self.leader_epoch_for_append(-1)?;
            if !self.producers_rebuilt.get() {
                self.rebuild_producers().await;
            }
            self.producers.borrow().check_marker(&m)?;
            let kind = if m.commit {
                ControlKind::Commit
            } else {
                ControlKind::Abort
            };
            let marker = EndTxnMarker {
                kind,
                coordinator_epoch: m.coordinator_epoch,
            };
            let bytes =
                log_txn::build_marker(m.producer_id, m.producer_epoch, marker, runtime::now_ms());
            let batch = CheckedBatch::check(Bytes::from(bytes)).map_err(KafkaError::from)?;
            let header = *batch.header();
            let data = batch.bytes().clone();
            let info = self
                .log
                .append(batch, epoch)
                .await
                .map_err(KafkaError::from)?;
            self.record_appended(&header, &data, info.base_offset);
            self.snapshot_producers(false).await;
            let end = self.log.log_end_offset();
            self.replica.borrow_mut().advance(end);
            self.notify();
            (info.last_offset, epoch)
        };
        let started = Instant::now();
        self.log.sync().await.map_err(KafkaError::from)?;
        self.metrics.synced(started.elapsed());
        Ok((last_offset, epoch))
    }
}
