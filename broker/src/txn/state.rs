//! The transaction coordinator's state machine, sans-I/O: one [`TxnMeta`] per transactional
//! id, and pure functions that turn a request (or a timer) into a [`Transit`], the state the
//! id moves to once that transition is durable in `__transaction_state`, or into the answer
//! Kafka gives without a write. Kafka's `TransactionMetadata` and the request logic of its
//! `TransactionCoordinator` (`handleInitProducerId`, `handleAddPartitionsToTransaction`,
//! `handleVerifyPartitionsInTransaction`, `endTransactionWithTV1`, `endTransaction` for
//! TV2) are the reference; `broker/docs/transactions.md` 1.4, 1.5 and 1.9 sum them up.
//!
//! How the coordinator uses it (design 2.4), all of one step with no await in between:
//! compute the transition (`prepare_*`), [`TxnMeta::begin`] it (it becomes `pending`, so
//! every other request meanwhile gets CONCURRENT_TRANSACTIONS), write
//! [`Transit::to_stored`]; once the write is durable and the coordinator epoch unchanged,
//! [`TxnMeta::complete`] applies it; if the write failed, [`TxnMeta::abandon`] drops it.
//!
//! The life of a transaction:
//! - InitProducerId: Empty/Complete* → Empty at the next epoch (or a new producer id when
//!   the epoch is exhausted); while Ongoing the producer is fenced first ([`prepare_fence`]
//!   then an abort with the bumped epoch) and the client retries;
//! - AddPartitionsToTxn/AddOffsetsToTxn (and, with TV2, the implicit add of Produce v12 and
//!   TxnOffsetCommit v5): → Ongoing;
//! - EndTxn: Ongoing → PrepareCommit/PrepareAbort (TV2 bumps the epoch here, and may abort
//!   with nothing added), then markers, then [`prepare_complete`]: → CompleteCommit/Abort;
//! - expiry of an idle id: Empty/Complete* → Dead, written as a tombstone ([`prepare_dead`]).
//!
//! Timestamps are milliseconds since the epoch, as Kafka stores them.

// The coordinator that calls this (increment 3 of the design) comes next; until then only
// the tests below use it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use rill_net::ErrorCode;

use super::wire::{StoredTxn, TxnPartitions, TxnStatus};

mod end;

pub use end::{prepare_end, EndOrigin, EndOutcome, EndRequest, TxnResult};
#[cfg(test)]
use end::{prepare_end_v1, prepare_end_v2};

/// No producer id (Kafka's `RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch (Kafka's `RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A partition in a transaction: topic name and partition index.
pub type TxnPartition = (String, i32);

/// Whether `epoch` is the last one a producer id may use: Kafka never hands out
/// `i16::MAX`, so that the coordinator can always fence the holder of `i16::MAX - 1` by one
/// more bump; the next bump rotates in a new producer id instead.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The transaction version a client speaks (Kafka's `TransactionVersion`, feature
/// `transaction.version`). From requests only V0 and V2 are ever derived (as Kafka does:
/// AddPartitionsToTxn v4+ and EndTxn v5+ mean TV2, anything older TV0); V1 is the server
/// level that switches the record value to version 1 and is what a stored record may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnVersion {
    /// Classic transactions, value version 0 records.
    V0,
    /// Flexible (version 1) state records; no change to the protocol.
    V1,
    /// KIP-890 part 2: every EndTxn bumps the epoch; no AddPartitionsToTxn from the client.
    V2,
}

impl TxnVersion {
    /// The feature level (the `ClientTransactionVersion` field of a record).
    pub fn level(self) -> i16 {
        match self {
            TxnVersion::V0 => 0,
            TxnVersion::V1 => 1,
            TxnVersion::V2 => 2,
        }
    }

    /// The version of a feature level; None for a level Kafka does not define (Kafka's
    /// `fromFeatureLevel` refuses it too).
    pub fn from_level(level: i16) -> Option<TxnVersion> {
        match level {
            0 => Some(TxnVersion::V0),
            1 => Some(TxnVersion::V1),
            2 => Some(TxnVersion::V2),
            _ => None,
        }
    }

    /// Whether EndTxn bumps the epoch (`supportsEpochBump`).
    pub fn bumps_epoch(self) -> bool {
        self >= TxnVersion::V2
    }

    /// The client's version as AddPartitionsToTxn (and the implicit add) of `api_version`
    /// tells it (`transactionVersionForAddPartitionsToTxn`: above v3, TV2).
    pub fn for_add_partitions(api_version: i16) -> TxnVersion {
        if api_version > 3 {
            TxnVersion::V2
        } else {
            TxnVersion::V0
        }
    }

    /// The client's version as EndTxn of `api_version` tells it (`transactionVersionForEndTxn`:
    /// above v4, TV2).
    pub fn for_end_txn(api_version: i16) -> TxnVersion {
        if api_version > 4 {
            TxnVersion::V2
        } else {
            TxnVersion::V0
        }
    }

    /// The `__transaction_state` value version a server at this level writes
    /// (`transactionLogValueVersion`: TV0 writes 0, TV1 and later 1).
    pub fn log_value_version(self) -> i16 {
        if self >= TxnVersion::V1 {
            1
        } else {
            0
        }
    }
}

/// The states a transaction may move to `to` from (Kafka's `validPreviousStates`). Kafka
/// 4.x lets PrepareAbort follow Empty and Complete* too: a TV2 client that does not know
/// whether its transaction started may always abort (the EndTxn TV2 table).
pub fn valid_previous(to: TxnStatus) -> &'static [TxnStatus] {
    use TxnStatus::*;
    match to {
        Empty => &[Empty, CompleteCommit, CompleteAbort],
        Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
        PrepareCommit => &[Ongoing],
        PrepareAbort => &[
            Ongoing,
            PrepareEpochFence,
            Empty,
            CompleteCommit,
            CompleteAbort,
        ],
        CompleteCommit => &[PrepareCommit],
        CompleteAbort => &[PrepareAbort],
        Dead => &[Empty, CompleteAbort, CompleteCommit],
        PrepareEpochFence => &[Ongoing],
    }
}

/// A transition's target: everything a transactional id's state becomes once the record
/// is durable (Kafka's `TxnTransitMetadata`). Fields not named by a rule keep the current
/// value, as Kafka's `TransitionData` copies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transit {
    pub producer_id: i64,
    /// The producer id before this transition (Kafka records it on every transition, so
    /// right after a rotation it names the old id, which a retry may still use).
    pub previous_producer_id: i64,
    /// TV2 only: the producer id allocated at Prepare* when the epoch was exhausted, to be
    /// installed (epoch 0) by Complete*; -1 otherwise.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (an InitProducerId or TV2 EndTxn retry is recognised by
    /// it); -1 when unknown.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnStatus,
    pub partitions: BTreeSet<TxnPartition>,
    /// When the transaction started (its first partition, or a TV2 abort with none); -1
    /// when no transaction is open.
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_version: TxnVersion,
    /// Some(e) on an abort the coordinator started to fence the producer (InitProducerId
    /// while Ongoing, or a timeout): `e` is the fencing epoch, never handed to a client.
    /// Kafka bumps the in-memory epoch to `e` before writing this; here the metadata keeps
    /// its epoch until [`TxnMeta::complete`] (or [`TxnMeta::abandon`]), which must know.
    pub fenced_epoch: Option<i16>,
}

impl Transit {
    /// Whether this transition is written as a tombstone (a null value) rather than
    /// [`Transit::to_stored`]: the id expired.
    pub fn is_tombstone(&self) -> bool {
        self.state == TxnStatus::Dead
    }

    /// The record value of this transition's target (Kafka's `valueToBytes`): partitions
    /// null when Empty, grouped by topic otherwise (an empty list after Complete*). The
    /// next producer epoch is always -1: it belongs to KIP-939 two-phase commit, which Rill
    /// does not serve.
    ///
    /// Panics on Dead (a tombstone, see [`Transit::is_tombstone`]) and PrepareEpochFence
    /// (never written: the fence is written as the abort that follows it).
    pub fn to_stored(&self) -> StoredTxn {
        assert!(
            !matches!(self.state, TxnStatus::Dead | TxnStatus::PrepareEpochFence),
            "a {:?} transition is never written as a value",
            self.state
        );
        let partitions = if self.state == TxnStatus::Empty {
            None
        } else {
            let mut grouped: Vec<TxnPartitions> = Vec::new();
            for (topic, partition) in &self.partitions {
                match grouped.last_mut() {
                    Some(last) if last.topic == *topic => last.partitions.push(*partition),
                    _ => grouped.push(TxnPartitions {
                        topic: topic.clone(),
                        partitions: vec![*partition],
                    }),
                }
            }
            Some(grouped)
        };
        StoredTxn {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            next_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: self.timeout_ms,
            status: self.state,
            partitions,
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_version.level(),
        }
    }

    fn is_prepare(&self) -> bool {
        matches!(
            self.state,
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
        )
    }
}

/// One transactional id's state in the coordinator's cache (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub transactional_id: String,
    pub producer_id: i64,
    /// See [`Transit::previous_producer_id`].
    pub previous_producer_id: i64,
    /// See [`Transit::next_producer_id`].
    pub next_producer_id: i64,
    /// -1 only for an id created by InitProducerId whose first write is not durable yet.
    pub producer_epoch: i16,
    /// See [`Transit::last_producer_epoch`]; not stored, so -1 after a load (as Kafka: a
    /// retry that spans a coordinator change is fenced).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnStatus,
    pub partitions: BTreeSet<TxnPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_version: TxnVersion,
    /// The transition written but not durable yet; while set, every request that would
    /// write answers CONCURRENT_TRANSACTIONS. A PrepareEpochFence here is the first step of
    /// a fence, replaced by its abort in the same step ([`TxnMeta::begin`]).
    pub pending: Option<Transit>,
    /// A fencing abort failed to be written: the in-memory epoch is already the fencing one
    /// (never handed out), so the next fence does not bump it again (Kafka's
    /// `hasFailedEpochFence`).
    pub has_failed_epoch_fence: bool,
}

impl TxnMeta {
    /// A transactional id InitProducerId sees for the first time, with the producer id
    /// allocated for it: Empty at epoch -1 until the first write (which bumps it to 0)
    /// is durable. Kafka caches it before that write, and so does Rill.
    pub fn new(transactional_id: String, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMeta {
            transactional_id,
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: TxnVersion::V0,
            pending: None,
            has_failed_epoch_fence: false,
        }
    }

    /// The state a loaded record describes (Kafka's `TransactionLog.read`): the last
    /// producer epoch is not stored and starts at -1; the partitions of an Empty record are
    /// ignored. Refuses, by name, what Kafka never writes (Dead is a tombstone,
    /// PrepareEpochFence is never written, a negative producer id or epoch, an open or
    /// finished transaction without a start time, an unknown transaction version), so that
    /// no later transition trips an assertion on data read from the log.
    pub fn from_stored(transactional_id: String, stored: StoredTxn) -> Result<TxnMeta, String> {
        let refuse = |what: String| {
            Err(format!(
                "transactional id {transactional_id:?}: a stored state with {what}"
            ))
        };
        if matches!(
            stored.status,
            TxnStatus::Dead | TxnStatus::PrepareEpochFence
        ) {
            return refuse(format!("status {:?}", stored.status));
        }
        if stored.producer_id < 0 {
            return refuse(format!("producer id {}", stored.producer_id));
        }
        if stored.producer_epoch < 0 {
            return refuse(format!("producer epoch {}", stored.producer_epoch));
        }
        if stored.status != TxnStatus::Empty && stored.start_ms == -1 {
            return refuse(format!("status {:?} but no start time", stored.status));
        }
        let Some(client_version) = TxnVersion::from_level(stored.client_transaction_version) else {
            return refuse(format!(
                "client transaction version {}",
                stored.client_transaction_version
            ));
        };
        let mut partitions = BTreeSet::new();
        if stored.status != TxnStatus::Empty {
            for topic in stored.partitions.into_iter().flatten() {
                for p in topic.partitions {
                    partitions.insert((topic.topic.clone(), p));
                }
            }
        }
        Ok(TxnMeta {
            transactional_id,
            producer_id: stored.producer_id,
            previous_producer_id: stored.previous_producer_id,
            next_producer_id: stored.next_producer_id,
            producer_epoch: stored.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: stored.timeout_ms,
            state: stored.status,
            partitions,
            start_ms: stored.start_ms,
            last_update_ms: stored.last_update_ms,
            client_version,
            pending: None,
            has_failed_epoch_fence: false,
        })
    }

    /// Whether this producer's epoch is exhausted (see [`epoch_exhausted`]).
    pub fn epoch_exhausted(&self) -> bool {
        epoch_exhausted(self.producer_epoch)
    }

    /// Whether the transaction ran past its timeout and nothing is pending: the coordinator
    /// fences and aborts it (Kafka's `timedOutTransactions`: Ongoing with
    /// `start + timeout < now`).
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.pending.is_none()
            && self.state == TxnStatus::Ongoing
            && self.start_ms.saturating_add(i64::from(self.timeout_ms)) < now_ms
    }

    /// Whether the id may be expired now (Kafka's `shouldExpire`, with no pending
    /// transition): Empty or Complete*, untouched for `expiration_ms`.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.pending.is_none()
            && matches!(
                self.state,
                TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
            )
            && self.last_update_ms <= now_ms.saturating_sub(expiration_ms)
    }

    /// The epoch a fence moves to: one more, unless a fence already failed to be written
    /// (its epoch is already in memory) or the epoch is `i16::MAX` (Kafka logs that as a
    /// bug and does not overflow).
    fn fence_epoch(&self) -> i16 {
        if self.has_failed_epoch_fence || self.producer_epoch == i16::MAX {
            self.producer_epoch
        } else {
            self.producer_epoch + 1
        }
    }

    /// Whether the pending transition is the first step of a fence.
    fn pending_fence(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.state == TxnStatus::PrepareEpochFence)
    }

    /// A transition to `state` that changes nothing else yet (Kafka's `TransitionData`).
    fn transit(&self, state: TxnStatus) -> Transit {
        Transit {
            producer_id: self.producer_id,
            previous_producer_id: self.producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            state,
            partitions: self.partitions.clone(),
            start_ms: self.start_ms,
            last_update_ms: self.last_update_ms,
            client_version: self.client_version,
            fenced_epoch: None,
        }
    }

    /// Makes `transit` the pending transition (Kafka's `prepareTransitionTo` checks): no
    /// other may be pending, except the PrepareEpochFence a fencing abort replaces; the
    /// target must be a valid successor of the current state; the producer id must be set
    /// and the epoch too (but for Dead). Violations are bugs of the caller: panics.
    pub fn begin(&mut self, transit: Transit) {
        if let Some(p) = &self.pending {
            assert!(
                p.state == TxnStatus::PrepareEpochFence
                    && transit.state == TxnStatus::PrepareAbort
                    && transit.fenced_epoch.is_some(),
                "transactional id {:?}: preparing {:?} while {:?} is pending",
                self.transactional_id,
                transit.state,
                p.state
            );
        }
        assert!(
            valid_previous(transit.state).contains(&self.state),
            "transactional id {:?}: {:?} is not a valid previous state of {:?}",
            self.transactional_id,
            self.state,
            transit.state
        );
        assert!(
            transit.producer_id >= 0,
            "transactional id {:?}: illegal new producer id {}",
            self.transactional_id,
            transit.producer_id
        );
        assert!(
            transit.state == TxnStatus::Dead || transit.producer_epoch >= 0,
            "transactional id {:?}: illegal new producer epoch {}",
            self.transactional_id,
            transit.producer_epoch
        );
        self.pending = Some(transit);
    }

    /// The pending transition's write failed: drop it. A fencing abort leaves its epoch in
    /// memory, as Kafka (which bumped it before the write) does: the zombie stays fenced on
    /// this coordinator, and the next fence does not bump again (`has_failed_epoch_fence`).
    pub fn abandon(&mut self) {
        if let Some(Transit {
            fenced_epoch: Some(epoch),
            ..
        }) = self.pending.take()
        {
            self.producer_epoch = epoch;
            self.last_producer_epoch = NO_PRODUCER_EPOCH;
            self.has_failed_epoch_fence = true;
        }
    }

    /// Applies `transit`, now durable (Kafka's `completeTransitionTo`), and clears
    /// `pending`. Panics, naming the id and both states, unless `transit` is the pending
    /// transition, follows a valid previous state and changes only what its kind may:
    /// - Empty (InitProducerId): same epoch, one more, or 0 with a new producer id; no
    ///   partitions; no start time;
    /// - Ongoing (add): same producer id and epoch; partitions only added; same timeout;
    /// - Prepare* (EndTxn): same producer id and epoch (TV2: the epoch it bumped from; a
    ///   fence: the fencing epoch); same partitions and timeout; same start time, but for a
    ///   TV2 abort of Empty/Complete*;
    /// - Complete*: same producer id and epoch (TV2 overflow: epoch 0, the last epoch kept,
    ///   the old id as previous); same timeout; a start time;
    /// - PrepareEpochFence is never written (its abort is) and Dead is removed from the
    ///   cache instead, so completing either is a bug.
    pub fn complete(&mut self, transit: &Transit) {
        let id = &self.transactional_id;
        let Some(pending) = &self.pending else {
            panic!(
                "transactional id {id:?}: completing {:?} with nothing pending",
                transit.state
            );
        };
        assert!(
            pending == transit,
            "transactional id {id:?}: completing {transit:?} while {pending:?} is pending"
        );
        assert!(
            valid_previous(transit.state).contains(&self.state),
            "transactional id {id:?}: {:?} is not a valid previous state of {:?}",
            self.state,
            transit.state
        );
        let valid = match transit.state {
            TxnStatus::Empty => {
                let bump = i32::from(transit.producer_epoch) == i32::from(self.producer_epoch) + 1
                    || (transit.producer_epoch == 0 && transit.producer_id != self.producer_id);
                (transit.producer_epoch == self.producer_epoch || bump)
                    && transit.partitions.is_empty()
                    && transit.start_ms == -1
            }
            TxnStatus::Ongoing => {
                self.valid_epoch(transit)
                    && transit.partitions.is_superset(&self.partitions)
                    && transit.timeout_ms == self.timeout_ms
            }
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
                let empty_abort = transit.state == TxnStatus::PrepareAbort
                    && matches!(
                        self.state,
                        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
                    );
                // Only TV2 aborts what never started (Kafka checks it through the start time).
                let from_ok = !empty_abort || transit.client_version.bumps_epoch();
                from_ok
                    && self.valid_epoch(transit)
                    && transit.partitions == self.partitions
                    && transit.timeout_ms == self.timeout_ms
                    && (transit.start_ms == self.start_ms || empty_abort)
            }
            TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                self.valid_epoch(transit)
                    && transit.timeout_ms == self.timeout_ms
                    && transit.start_ms != -1
            }
            TxnStatus::PrepareEpochFence => panic!(
                "transactional id {id:?}: PrepareEpochFence is never completed (its abort is)"
            ),
            TxnStatus::Dead => panic!(
                "transactional id {id:?}: an expired id is removed from the cache, never \
                 completed to Dead"
            ),
        };
        assert!(
            valid,
            "transactional id {id:?}: unexpected transition from {self:?} to {transit:?}"
        );
        let t = transit.clone();
        self.producer_id = t.producer_id;
        self.previous_producer_id = t.previous_producer_id;
        self.next_producer_id = t.next_producer_id;
        self.producer_epoch = t.producer_epoch;
        self.last_producer_epoch = t.last_producer_epoch;
        self.timeout_ms = t.timeout_ms;
        self.state = t.state;
        self.partitions = t.partitions;
        self.start_ms = t.start_ms;
        self.last_update_ms = t.last_update_ms;
        self.client_version = t.client_version;
        self.pending = None;
        // Whatever was durable before, this write made memory and log agree again.
        self.has_failed_epoch_fence = false;
    }

    /// Kafka's `validProducerEpoch`, plus the fence Kafka folds into the metadata first.
    fn valid_epoch(&self, t: &Transit) -> bool {
        let v2 = t.client_version.bumps_epoch();
        let complete = matches!(
            t.state,
            TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
        );
        if v2 && complete && t.producer_epoch == 0 {
            // Epoch overflow: the new producer id took over at epoch 0.
            return t.last_producer_epoch == self.last_producer_epoch
                && t.previous_producer_id == self.producer_id;
        }
        if t.is_prepare() {
            if let Some(fence) = t.fenced_epoch {
                let base = if v2 {
                    t.last_producer_epoch
                } else {
                    t.producer_epoch
                };
                let last_ok = v2 || t.last_producer_epoch == NO_PRODUCER_EPOCH;
                return fence == self.fence_epoch()
                    && base == fence
                    && last_ok
                    && t.producer_id == self.producer_id;
            }
            if v2 {
                return t.last_producer_epoch == self.producer_epoch
                    && t.producer_id == self.producer_id;
            }
        }
        t.producer_epoch == self.producer_epoch && t.producer_id == self.producer_id
    }
}

/// The answer to a state in which Kafka's coordinator throws `IllegalStateException`
/// ("should never have transitioned to this state"): the request fails with
/// UNKNOWN_SERVER_ERROR instead of the broker panicking.
fn illegal_state() -> ErrorCode {
    ErrorCode::UnknownServerError
}

/// The (producer id, epoch) an InitProducerId request expects (v3+): None for (-1, -1), an
/// error when only one of them is -1 (Kafka answers INVALID_REQUEST).
pub fn expected_producer(
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Option<(i64, i16)>, ErrorCode> {
    match (producer_id, producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => Ok(None),
        (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => Err(ErrorCode::InvalidRequest),
        (id, epoch) => Ok(Some((id, epoch))),
    }
}

/// A transactional InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRequest {
    pub timeout_ms: i32,
    /// The producer id and epoch the client had (v3+, see [`expected_producer`]).
    pub expected: Option<(i64, i16)>,
    /// `transaction_max_timeout_ms`.
    pub max_timeout_ms: i32,
}

/// What InitProducerId leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// A producer id must be allocated first: call again with one (Rill's allocation is
    /// asynchronous; the state may have moved meanwhile, so the rules run again).
    NeedProducerId,
    /// The id is new: cache `meta` (epoch -1, Kafka caches it before the write), begin
    /// `transit` on it and go on as [`InitOutcome::Write`].
    Create { meta: TxnMeta, transit: Transit },
    /// Begin and write `transit` (Empty); once durable answer its producer id and epoch.
    Write(Transit),
    /// A transaction is Ongoing: begin this PrepareEpochFence, then abort with its
    /// producer id and epoch as the coordinator ([`prepare_end`] with
    /// [`EndOrigin::Coordinator`], the server's transaction version) and begin and write
    /// that abort; answer CONCURRENT_TRANSACTIONS once it is durable (or its error), so the
    /// client retries and gets its own bump after the abort completed.
    Fence(Transit),
}

/// InitProducerId for a transactional id (`handleInitProducerId` and
/// `prepareInitProducerIdTransit`), `existing` being its cached state if any:
/// - a timeout ≤ 0 or above the maximum → INVALID_TRANSACTION_TIMEOUT;
/// - a new id → a new producer id at epoch 0;
/// - a pending transition → CONCURRENT_TRANSACTIONS;
/// - an expected (id, epoch) is accepted only if no epoch was handed out yet, the id is
///   the current one, or it is the previous one with an exhausted epoch (a retry after a
///   rotation); else PRODUCER_FENCED;
/// - PrepareCommit/PrepareAbort → CONCURRENT_TRANSACTIONS;
/// - Empty/Complete*: an exhausted epoch (and the expected epoch, if any, the current one)
///   → a new producer id at epoch 0 (the last epoch recorded when one was expected);
///   otherwise the next epoch: expected the current epoch (or none) → bump; expected the
///   last epoch → a retry of a bump that succeeded, rewritten without a bump; else
///   PRODUCER_FENCED;
/// - Ongoing → [`InitOutcome::Fence`].
pub fn prepare_init(
    existing: Option<&TxnMeta>,
    transactional_id: &str,
    request: &InitRequest,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<InitOutcome, ErrorCode> {
    if request.timeout_ms <= 0 || request.timeout_ms > request.max_timeout_ms {
        return Err(ErrorCode::InvalidTransactionTimeout);
    }
    let Some(meta) = existing else {
        let Some(producer_id) = new_producer_id else {
            return Ok(InitOutcome::NeedProducerId);
        };
        let meta = TxnMeta::new(
            transactional_id.to_string(),
            producer_id,
            request.timeout_ms,
            now_ms,
        );
        // A fresh id (epoch -1) accepts any expected id and epoch, and bumps to 0.
        let transit = increment_epoch(&meta, request, now_ms)?;
        return Ok(InitOutcome::Create { meta, transit });
    };
    if meta.pending.is_some() {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    if let Some((pid, epoch)) = request.expected {
        let valid = meta.producer_epoch == NO_PRODUCER_EPOCH
            || pid == meta.producer_id
            || (pid == meta.previous_producer_id && epoch_exhausted(epoch));
        if !valid {
            return Err(ErrorCode::ProducerFenced);
        }
    }
    match meta.state {
        TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
            Err(ErrorCode::ConcurrentTransactions)
        }
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
            let expected_current = request
                .expected
                .is_none_or(|(_, epoch)| epoch == meta.producer_epoch);
            if meta.epoch_exhausted() && expected_current {
                let Some(producer_id) = new_producer_id else {
                    return Ok(InitOutcome::NeedProducerId);
                };
                // prepareProducerIdRotation
                let mut t = meta.transit(TxnStatus::Empty);
                t.producer_id = producer_id;
                t.producer_epoch = 0;
                t.last_producer_epoch = if request.expected.is_some() {
                    meta.producer_epoch
                } else {
                    NO_PRODUCER_EPOCH
                };
                t.timeout_ms = request.timeout_ms;
                t.partitions.clear();
                t.start_ms = -1;
                t.last_update_ms = now_ms;
                return Ok(InitOutcome::Write(t));
            }
            increment_epoch(meta, request, now_ms).map(InitOutcome::Write)
        }
        TxnStatus::Ongoing => prepare_fence(meta).map(InitOutcome::Fence),
        TxnStatus::Dead | TxnStatus::PrepareEpochFence => Err(illegal_state()),
    }
}

/// Kafka's `prepareIncrementProducerEpoch`. Kafka throws (UNKNOWN_SERVER_ERROR) when the
/// epoch is exhausted here, which happens only when the expected epoch is not the current
/// one; Rill applies the same retry/fenced rule as below the limit instead (a retry of the
/// bump to `i16::MAX - 1` gets that epoch again, anything else PRODUCER_FENCED).
fn increment_epoch(
    meta: &TxnMeta,
    request: &InitRequest,
    now_ms: i64,
) -> Result<Transit, ErrorCode> {
    let mut t = meta.transit(TxnStatus::Empty);
    match request.expected {
        None if !meta.epoch_exhausted() => {
            t.producer_epoch = meta.producer_epoch + 1;
            t.last_producer_epoch = NO_PRODUCER_EPOCH;
        }
        Some((_, epoch))
            if !meta.epoch_exhausted()
                && (meta.producer_epoch == NO_PRODUCER_EPOCH || epoch == meta.producer_epoch) =>
        {
            t.producer_epoch = meta.producer_epoch + 1;
            t.last_producer_epoch = meta.producer_epoch;
        }
        Some((_, epoch)) if epoch == meta.last_producer_epoch => {
            // A retry of a bump that succeeded: the producer that bumped is still the last
            // one (a new InitProducerId without an expected epoch clears the last epoch).
        }
        _ => return Err(ErrorCode::ProducerFenced),
    }
    t.timeout_ms = request.timeout_ms;
    t.partitions.clear();
    t.start_ms = -1;
    t.last_update_ms = now_ms;
    Ok(t)
}

/// What AddPartitionsToTxn/AddOffsetsToTxn (or the implicit add of TV2) leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// Begin and write this transition (Ongoing); answer NONE once durable.
    Write(Transit),
    /// Every partition is already in the Ongoing transaction: NONE without a write.
    AlreadyIn,
}

/// AddPartitionsToTxn v0-3 / AddOffsetsToTxn (and the TV2 implicit add), in Kafka 4.x's
/// order: unknown id → INVALID_PRODUCER_ID_MAPPING; a pending transition →
/// CONCURRENT_TRANSACTIONS (first: across a TV2 epoch overflow the client already uses the
/// new producer id, which is still pending); another producer id →
/// INVALID_PRODUCER_ID_MAPPING; another epoch → PRODUCER_FENCED; Prepare* →
/// CONCURRENT_TRANSACTIONS; Ongoing with every partition in → [`AddOutcome::AlreadyIn`];
/// else → Ongoing with the partitions added (the start time set when a transaction starts,
/// from Empty/Complete*) and the client's transaction version.
pub fn prepare_add(
    meta: Option<&TxnMeta>,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &BTreeSet<TxnPartition>,
    version: TxnVersion,
    now_ms: i64,
) -> Result<AddOutcome, ErrorCode> {
    let meta = meta.ok_or(ErrorCode::InvalidProducerIdMapping)?;
    if meta.pending.is_some() {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    if meta.producer_id != producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    if meta.producer_epoch != producer_epoch {
        return Err(ErrorCode::ProducerFenced);
    }
    if meta.producer_epoch == NO_PRODUCER_EPOCH {
        // The id's first InitProducerId is not durable: no client was given this producer
        // id. Kafka fails the transition with an internal error; the mapping does not exist.
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    let start_ms = match meta.state {
        TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
            return Err(ErrorCode::ConcurrentTransactions)
        }
        TxnStatus::Ongoing if partitions.is_subset(&meta.partitions) => {
            return Ok(AddOutcome::AlreadyIn)
        }
        TxnStatus::Ongoing => meta.start_ms,
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => now_ms,
        TxnStatus::Dead | TxnStatus::PrepareEpochFence => return Err(illegal_state()),
    };
    let mut t = meta.transit(TxnStatus::Ongoing);
    t.partitions.extend(partitions.iter().cloned());
    t.start_ms = start_ms;
    t.last_update_ms = now_ms;
    t.client_version = version;
    Ok(AddOutcome::Write(t))
}

/// AddPartitionsToTxn v4+ with VerifyOnly (KIP-890 part 1, a partition leader asking before
/// it appends a transactional batch), never a write: unknown id or another producer id →
/// INVALID_PRODUCER_ID_MAPPING; another epoch → PRODUCER_FENCED; Prepare* →
/// CONCURRENT_TRANSACTIONS (all for every partition); else per partition NONE if it is in
/// the transaction, TRANSACTION_ABORTABLE if not. A pending transition is not checked, as
/// Kafka: partitions enter the set only once durable and leave it only with the markers.
pub fn verify(
    meta: Option<&TxnMeta>,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &BTreeSet<TxnPartition>,
) -> Result<BTreeMap<TxnPartition, ErrorCode>, ErrorCode> {
    let meta = meta.ok_or(ErrorCode::InvalidProducerIdMapping)?;
    if meta.producer_id != producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    if meta.producer_epoch != producer_epoch {
        return Err(ErrorCode::ProducerFenced);
    }
    if matches!(
        meta.state,
        TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
    ) {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    Ok(partitions
        .iter()
        .map(|p| {
            let code = if meta.partitions.contains(p) {
                ErrorCode::None
            } else {
                ErrorCode::TransactionAbortable
            };
            (p.clone(), code)
        })
        .collect())
}

/// The first step of fencing an Ongoing transaction's producer (Kafka's
/// `prepareFenceProducerEpoch`, for InitProducerId while Ongoing and for a timeout):
/// PrepareEpochFence at the next epoch (or the same, see `has_failed_epoch_fence`). Never
/// written: begin it, then begin and write the coordinator's abort at its epoch
/// ([`prepare_end`] with [`EndOrigin::Coordinator`]). A pending transition →
/// CONCURRENT_TRANSACTIONS; a state other than Ongoing → INVALID_TXN_STATE.
pub fn prepare_fence(meta: &TxnMeta) -> Result<Transit, ErrorCode> {
    if meta.pending.is_some() {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    if meta.state != TxnStatus::Ongoing {
        return Err(ErrorCode::InvalidTxnState);
    }
    let mut t = meta.transit(TxnStatus::PrepareEpochFence);
    t.producer_epoch = meta.fence_epoch();
    Ok(t)
}

/// After a Prepare* is durable (or found on load): the Complete* transition the markers
/// lead to (Kafka's `prepareComplete`). Begin it at once, so requests meanwhile get
/// CONCURRENT_TRANSACTIONS, send the markers, then write it. The partitions are cleared;
/// with TV2 and a next producer id, that id takes over at epoch 0 (the last epoch stays the
/// one the client last saw, `i16::MAX - 1`). A pending transition →
/// CONCURRENT_TRANSACTIONS; a state other than Prepare* → INVALID_TXN_STATE.
pub fn prepare_complete(meta: &TxnMeta, now_ms: i64) -> Result<Transit, ErrorCode> {
    if meta.pending.is_some() {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    let state = match meta.state {
        TxnStatus::PrepareCommit => TxnStatus::CompleteCommit,
        TxnStatus::PrepareAbort => TxnStatus::CompleteAbort,
        _ => return Err(ErrorCode::InvalidTxnState),
    };
    let mut t = meta.transit(state);
    // `>= 0` rather than `!= -1`: a loaded record is untrusted, and a negative id must not
    // become the producer id (it would trip `begin`).
    if meta.client_version.bumps_epoch() && meta.next_producer_id >= 0 {
        t.producer_id = meta.next_producer_id;
        t.producer_epoch = 0;
    }
    t.next_producer_id = NO_PRODUCER_ID;
    t.partitions.clear();
    t.last_update_ms = now_ms;
    Ok(t)
}

/// The expiry of an idle transactional id (Kafka's `removeExpiredTransactionalIds` and
/// `prepareDead`): when [`TxnMeta::expired`], Dead with no partitions, written as a
/// tombstone; once durable the id is removed from the cache (never completed). None when
/// the id may not expire now.
pub fn prepare_dead(meta: &TxnMeta, now_ms: i64, expiration_ms: i64) -> Option<Transit> {
    if !meta.expired(now_ms, expiration_ms) {
        return None;
    }
    let mut t = meta.transit(TxnStatus::Dead);
    t.partitions.clear();
    Some(t)
}

/// The transactional requests whose old versions do not know PRODUCER_FENCED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnApi {
    InitProducerId,
    AddPartitionsToTxn,
    AddOffsetsToTxn,
    EndTxn,
}

/// The code to send for `code` in a response to `api` at `version`: PRODUCER_FENCED is
/// INVALID_PRODUCER_EPOCH for InitProducerId below v4 and AddPartitionsToTxn,
/// AddOffsetsToTxn and EndTxn below v2 (those clients predate the code; Kafka's KafkaApis
/// maps it the same way).
pub fn error_for_version(code: ErrorCode, api: TxnApi, version: i16) -> ErrorCode {
    let first_knowing = match api {
        TxnApi::InitProducerId => 4,
        TxnApi::AddPartitionsToTxn | TxnApi::AddOffsetsToTxn | TxnApi::EndTxn => 2,
    };
    if code == ErrorCode::ProducerFenced && version < first_knowing {
        ErrorCode::InvalidProducerEpoch
    } else {
        code
    }
}

#[cfg(test)]
mod tests;
