//! Transactions in one partition (issue 17, increment 2 of `broker/docs/transactions.md`):
//! end markers written for a transaction coordinator (WriteTxnMarkers), the last stable
//! offset read_committed consumers stop at, and the aborted transactions they are told of
//! so they drop those records. Leaders and followers keep the same state: every replica
//! records each transactional batch and marker in its producer table and each abort in its
//! log's aborted-transaction index, so a new leader answers as the old one did.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_storage::batch::{BatchHeader, CheckedBatch};
use rill_storage::txn::{self as log_txn, AbortedTxn, ControlKind, EndTxnMarker};
use rill_storage::Backend;

use super::producers::{ActiveAborted, CompletedTxn, MarkerWrite};
use super::Partition;
use crate::errors::KafkaError;
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

impl<B: Backend> Partition<B> {
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
