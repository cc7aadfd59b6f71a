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

/// Commit or abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnResult {
    Commit,
    Abort,
}

impl TxnResult {
    fn prepare_state(self) -> TxnStatus {
        match self {
            TxnResult::Commit => TxnStatus::PrepareCommit,
            TxnResult::Abort => TxnStatus::PrepareAbort,
        }
    }
}

/// Who ends the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOrigin {
    /// EndTxn: the epoch must be the current one (TV2: or a retry's).
    Client,
    /// The coordinator's fencing abort (InitProducerId while Ongoing, a timeout): the epoch
    /// may be newer than the current one (`isFromClient = false`).
    Coordinator,
}

/// An EndTxn, or the coordinator's abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub result: TxnResult,
    pub origin: EndOrigin,
}

/// What EndTxn leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Begin and write this Prepare* transition. Once durable, [`prepare_complete`] (it
    /// stays pending while the markers go out) and answer NONE; TV2 answers the producer id
    /// and epoch of that Complete* transition (Kafka 4.3's `newPreSendMetadata`: after an
    /// epoch overflow, the new producer id at epoch 0).
    Write(Transit),
    /// The transaction already ended this way (a retry): NONE without a write, with this
    /// producer id and epoch (TV1 answers -1 and -1, as Kafka).
    Done {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// TV2: the epoch is exhausted, the Prepare* carries the next producer id: call again
    /// with one allocated.
    NeedProducerId,
}

/// EndTxn with the client's (or, for the coordinator's own abort, the server's) transaction
/// version: [`prepare_end_v2`] if it bumps epochs, else [`prepare_end_v1`] (Kafka's
/// `endTransaction` dispatch).
pub fn prepare_end(
    meta: Option<&TxnMeta>,
    request: &EndRequest,
    version: TxnVersion,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<EndOutcome, ErrorCode> {
    if version.bumps_epoch() {
        prepare_end_v2(meta, request, new_producer_id, now_ms)
    } else {
        prepare_end_v1(meta, request, now_ms)
    }
}

/// The checks both versions make on a pending fence: only the coordinator's abort may
/// follow it. Kafka lets any request through there and then fails the transition (or lets
/// a client's abort take the fence's place); in Rill the fence and its abort are begun in
/// one step, so this never answers, but it keeps the rule total.
fn fence_follows(meta: &TxnMeta, request: &EndRequest) -> Result<(), ErrorCode> {
    if meta.pending_fence()
        && (request.origin == EndOrigin::Client || request.result == TxnResult::Commit)
    {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    Ok(())
}

/// EndTxn v0-4 (TV0/TV1, `endTransactionWithTV1`): unknown id or another producer id →
/// INVALID_PRODUCER_ID_MAPPING; from the client another epoch, from the coordinator an
/// older one → PRODUCER_FENCED; a pending transition (other than the fence this abort
/// completes) → CONCURRENT_TRANSACTIONS; then by state:
/// - Ongoing → PrepareCommit/PrepareAbort at the same epoch (a fence: the fencing epoch,
///   last epoch -1);
/// - CompleteCommit + commit, CompleteAbort + abort → [`EndOutcome::Done`] (a retry);
/// - PrepareCommit + commit, PrepareAbort + abort → CONCURRENT_TRANSACTIONS;
/// - any other mix, and Empty → INVALID_TXN_STATE.
pub fn prepare_end_v1(
    meta: Option<&TxnMeta>,
    request: &EndRequest,
    now_ms: i64,
) -> Result<EndOutcome, ErrorCode> {
    let meta = meta.ok_or(ErrorCode::InvalidProducerIdMapping)?;
    if meta.producer_id != request.producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    let fenced = (request.origin == EndOrigin::Client
        && request.producer_epoch != meta.producer_epoch)
        || request.producer_epoch < meta.producer_epoch;
    if fenced {
        return Err(ErrorCode::ProducerFenced);
    }
    if meta.pending.is_some() && !meta.pending_fence() {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    fence_follows(meta, request)?;
    let done = EndOutcome::Done {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
    };
    use TxnResult::{Abort, Commit};
    match (meta.state, request.result) {
        (TxnStatus::Ongoing, result) => {
            let mut t = meta.transit(result.prepare_state());
            if meta.pending_fence() {
                t.producer_epoch = request.producer_epoch;
                t.last_producer_epoch = NO_PRODUCER_EPOCH;
                t.fenced_epoch = Some(request.producer_epoch);
            }
            t.next_producer_id = NO_PRODUCER_ID;
            t.last_update_ms = now_ms;
            t.client_version = TxnVersion::V0;
            Ok(EndOutcome::Write(t))
        }
        (TxnStatus::CompleteCommit, Commit) | (TxnStatus::CompleteAbort, Abort) => Ok(done),
        (TxnStatus::PrepareCommit, Commit) | (TxnStatus::PrepareAbort, Abort) => {
            Err(ErrorCode::ConcurrentTransactions)
        }
        (
            TxnStatus::CompleteCommit
            | TxnStatus::CompleteAbort
            | TxnStatus::PrepareCommit
            | TxnStatus::PrepareAbort
            | TxnStatus::Empty,
            _,
        ) => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::Dead | TxnStatus::PrepareEpochFence, _) => Err(illegal_state()),
    }
}

/// EndTxn v5 (TV2, Kafka's `endTransaction`): every Prepare* write bumps the epoch
/// (`last_producer_epoch` = the old one) and the client continues with the bumped one, so a
/// retry is recognised by `request epoch + 1 == stored epoch` (or, across an epoch
/// overflow, the previous producer id at `i16::MAX - 1` while the new one is at 0). Unknown
/// id or another producer id (but that overflow retry) → INVALID_PRODUCER_ID_MAPPING; an
/// epoch that is neither current nor an allowed retry → PRODUCER_FENCED; a pending
/// transition → CONCURRENT_TRANSACTIONS; then (PF = PRODUCER_FENCED, ITS =
/// INVALID_TXN_STATE, EB = a Prepare* write with a bump):
///
/// | state          | abort retry | abort current | commit retry | commit current |
/// |----------------|-------------|---------------|--------------|----------------|
/// | Empty          | PF          | EB            | PF           | ITS            |
/// | CompleteAbort  | NONE        | EB            | ITS          | ITS            |
/// | CompleteCommit | ITS         | EB            | NONE         | ITS            |
///
/// Ongoing → EB; PrepareCommit + commit retry, PrepareAbort + abort retry →
/// CONCURRENT_TRANSACTIONS, the other mix ITS (and the current epoch PF). An exhausted
/// epoch makes the Prepare* carry a new producer id ([`EndOutcome::NeedProducerId`] until
/// one is given), installed at epoch 0 by Complete*. A fencing abort bumps from the
/// fencing epoch and allocates nothing.
pub fn prepare_end_v2(
    meta: Option<&TxnMeta>,
    request: &EndRequest,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<EndOutcome, ErrorCode> {
    let meta = meta.ok_or(ErrorCode::InvalidProducerIdMapping)?;
    let fencing = meta.pending_fence();
    let epoch = i32::from(request.producer_epoch);
    let current = i32::from(meta.producer_epoch);
    let retry_on_overflow = !fencing
        && meta.previous_producer_id == request.producer_id
        && request.producer_epoch == i16::MAX - 1
        && meta.producer_epoch == 0;
    let retry_on_bump = !fencing && current == epoch + 1;
    let valid_epoch = if fencing {
        (request.origin == EndOrigin::Coordinator || epoch == current) && epoch >= current
    } else {
        match meta.state {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => retry_on_bump,
            TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                retry_on_bump || retry_on_overflow || epoch == current
            }
            TxnStatus::Ongoing
            | TxnStatus::Empty
            | TxnStatus::Dead
            | TxnStatus::PrepareEpochFence => epoch == current,
        }
    };
    let retry = retry_on_bump || retry_on_overflow;
    if meta.producer_id != request.producer_id && !retry_on_overflow {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    if !valid_epoch {
        return Err(ErrorCode::ProducerFenced);
    }
    if meta.pending.is_some() && !fencing {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    fence_follows(meta, request)?;

    // Kafka's generateTxnTransitMetadataForTxnCompletion + prepareAbortOrCommit (TV2).
    let write = |state: TxnStatus, nothing_added: bool| -> Result<EndOutcome, ErrorCode> {
        let next_producer_id = if !fencing && meta.epoch_exhausted() {
            match new_producer_id {
                Some(id) => id,
                None => return Ok(EndOutcome::NeedProducerId),
            }
        } else {
            NO_PRODUCER_ID
        };
        let base = if fencing {
            request.producer_epoch
        } else {
            meta.producer_epoch
        };
        let bumped = if base < i16::MAX {
            base + 1
        } else if state == TxnStatus::PrepareAbort {
            // Already broken: Kafka lets the abort through without overflowing.
            base
        } else {
            // No producer is ever given i16::MAX; Kafka's transition fails on the overflow.
            return Err(ErrorCode::ProducerFenced);
        };
        let mut t = meta.transit(state);
        t.producer_epoch = bumped;
        t.last_producer_epoch = base;
        t.fenced_epoch = fencing.then_some(base);
        t.start_ms = if nothing_added { now_ms } else { meta.start_ms };
        t.next_producer_id = next_producer_id;
        t.last_update_ms = now_ms;
        t.client_version = TxnVersion::V2;
        Ok(EndOutcome::Write(t))
    };
    let done = EndOutcome::Done {
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
    };
    use TxnResult::{Abort, Commit};
    match (meta.state, request.result) {
        (TxnStatus::Ongoing, result) => write(result.prepare_state(), false),
        (TxnStatus::CompleteCommit, Commit) if retry => Ok(done),
        (TxnStatus::CompleteCommit, Commit) => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::CompleteCommit, Abort) if retry => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::CompleteCommit, Abort) => write(TxnStatus::PrepareAbort, true),
        (TxnStatus::CompleteAbort, Abort) if retry => Ok(done),
        (TxnStatus::CompleteAbort, Abort) => write(TxnStatus::PrepareAbort, true),
        (TxnStatus::CompleteAbort, Commit) => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::PrepareCommit, Commit) | (TxnStatus::PrepareAbort, Abort) => {
            Err(ErrorCode::ConcurrentTransactions)
        }
        (TxnStatus::PrepareCommit, Abort) | (TxnStatus::PrepareAbort, Commit) => {
            Err(ErrorCode::InvalidTxnState)
        }
        (TxnStatus::Empty, Abort) => write(TxnStatus::PrepareAbort, true),
        (TxnStatus::Empty, Commit) => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::Dead | TxnStatus::PrepareEpochFence, _) => Err(illegal_state()),
    }
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
mod tests {
    use super::*;
    use crate::txn::wire::{decode_value, encode_value};
    use TxnStatus::*;

    const PID: i64 = 1000;
    const NEW_PID: i64 = 2000;
    const NOW: i64 = 1_700_000_000_000;
    const MAX_TIMEOUT: i32 = 900_000;

    fn parts(list: &[(&str, i32)]) -> BTreeSet<TxnPartition> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    /// A durable state: `state` at `epoch`, as the tests need it.
    fn meta(state: TxnStatus, epoch: i16) -> TxnMeta {
        let open = !matches!(state, Empty);
        TxnMeta {
            transactional_id: "txn".into(),
            producer_id: PID,
            previous_producer_id: PID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: 60_000,
            state,
            partitions: if matches!(state, Ongoing | PrepareCommit | PrepareAbort) {
                parts(&[("orders", 0), ("orders", 1)])
            } else {
                BTreeSet::new()
            },
            start_ms: if open { NOW - 500 } else { -1 },
            last_update_ms: NOW - 100,
            client_version: TxnVersion::V0,
            pending: None,
            has_failed_epoch_fence: false,
        }
    }

    fn v2(mut m: TxnMeta) -> TxnMeta {
        m.client_version = TxnVersion::V2;
        m
    }

    fn init(expected: Option<(i64, i16)>) -> InitRequest {
        InitRequest {
            timeout_ms: 30_000,
            expected,
            max_timeout_ms: MAX_TIMEOUT,
        }
    }

    fn end(epoch: i16, result: TxnResult) -> EndRequest {
        EndRequest {
            producer_id: PID,
            producer_epoch: epoch,
            result,
            origin: EndOrigin::Client,
        }
    }

    /// Begin and complete `t`, as the coordinator does once the write is durable.
    fn apply(m: &mut TxnMeta, t: Transit) {
        m.begin(t.clone());
        m.complete(&t);
    }

    fn write_of_init(o: Result<InitOutcome, ErrorCode>) -> Transit {
        match o {
            Ok(InitOutcome::Write(t)) => t,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn write_of_end(o: Result<EndOutcome, ErrorCode>) -> Transit {
        match o {
            Ok(EndOutcome::Write(t)) => t,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn write_of_add(o: Result<AddOutcome, ErrorCode>) -> Transit {
        match o {
            Ok(AddOutcome::Write(t)) => t,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    // ---- InitProducerId ----

    #[test]
    fn init_of_a_new_id_allocates_a_producer_id_at_epoch_zero() {
        assert_eq!(
            prepare_init(None, "txn", &init(None), None, NOW),
            Ok(InitOutcome::NeedProducerId)
        );
        let Ok(InitOutcome::Create { mut meta, transit }) =
            prepare_init(None, "txn", &init(Some((7, 3))), Some(PID), NOW)
        else {
            panic!("a new id is created");
        };
        assert_eq!(
            (meta.producer_id, meta.producer_epoch, meta.state),
            (PID, -1, Empty)
        );
        assert_eq!(meta.transactional_id, "txn");
        assert_eq!(
            (transit.producer_id, transit.producer_epoch, transit.state),
            (PID, 0, Empty)
        );
        assert_eq!(transit.timeout_ms, 30_000);
        apply(&mut meta, transit);
        assert_eq!((meta.producer_epoch, meta.state), (0, Empty));
        assert!(meta.pending.is_none());
    }

    #[test]
    fn init_refuses_a_timeout_out_of_range_before_anything_else() {
        for timeout_ms in [0, -1, MAX_TIMEOUT + 1] {
            let request = InitRequest {
                timeout_ms,
                ..init(None)
            };
            assert_eq!(
                prepare_init(None, "txn", &request, Some(PID), NOW),
                Err(ErrorCode::InvalidTransactionTimeout)
            );
            let mut busy = meta(Empty, 3);
            busy.pending = Some(busy.transit(Ongoing));
            assert_eq!(
                prepare_init(Some(&busy), "txn", &request, None, NOW),
                Err(ErrorCode::InvalidTransactionTimeout)
            );
        }
        let at_max = InitRequest {
            timeout_ms: MAX_TIMEOUT,
            ..init(None)
        };
        assert!(prepare_init(None, "txn", &at_max, Some(PID), NOW).is_ok());
    }

    #[test]
    fn init_with_a_pending_transition_or_a_prepare_state_is_concurrent() {
        let mut m = meta(Empty, 3);
        let t = write_of_init(prepare_init(Some(&m), "txn", &init(None), None, NOW));
        m.begin(t);
        assert_eq!(
            prepare_init(Some(&m), "txn", &init(None), None, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
        for state in [PrepareCommit, PrepareAbort] {
            assert_eq!(
                prepare_init(Some(&meta(state, 3)), "txn", &init(None), None, NOW),
                Err(ErrorCode::ConcurrentTransactions)
            );
        }
    }

    #[test]
    fn init_from_empty_or_complete_bumps_the_epoch() {
        for state in [Empty, CompleteCommit, CompleteAbort] {
            let mut m = meta(state, 3);
            m.client_version = TxnVersion::V2;
            let t = write_of_init(prepare_init(Some(&m), "txn", &init(None), None, NOW));
            assert_eq!(
                (t.producer_id, t.producer_epoch, t.last_producer_epoch),
                (PID, 4, -1)
            );
            assert_eq!((t.state, t.start_ms, t.last_update_ms), (Empty, -1, NOW));
            assert!(t.partitions.is_empty());
            assert_eq!(t.timeout_ms, 30_000, "the request's timeout");
            assert_eq!(t.client_version, TxnVersion::V2, "kept, as Kafka");
            apply(&mut m, t);
            assert_eq!((m.state, m.producer_epoch), (Empty, 4));
        }
    }

    #[test]
    fn init_with_the_expected_epoch_bumps_and_a_retry_does_not() {
        let mut m = meta(CompleteCommit, 3);
        let first = write_of_init(prepare_init(
            Some(&m),
            "txn",
            &init(Some((PID, 3))),
            None,
            NOW,
        ));
        assert_eq!((first.producer_epoch, first.last_producer_epoch), (4, 3));
        apply(&mut m, first);
        // The response was lost; the client retries with the epoch it had.
        let retry = write_of_init(prepare_init(
            Some(&m),
            "txn",
            &init(Some((PID, 3))),
            None,
            NOW,
        ));
        assert_eq!((retry.producer_epoch, retry.last_producer_epoch), (4, 3));
        apply(&mut m, retry);
        // Another epoch is a zombie's.
        assert_eq!(
            prepare_init(Some(&m), "txn", &init(Some((PID, 2))), None, NOW),
            Err(ErrorCode::ProducerFenced)
        );
        // A producer without an expected epoch clears the last one: the retry is fenced.
        let fresh = write_of_init(prepare_init(Some(&m), "txn", &init(None), None, NOW));
        assert_eq!((fresh.producer_epoch, fresh.last_producer_epoch), (5, -1));
        apply(&mut m, fresh);
        assert_eq!(
            prepare_init(Some(&m), "txn", &init(Some((PID, 3))), None, NOW),
            Err(ErrorCode::ProducerFenced)
        );
    }

    #[test]
    fn init_with_another_expected_producer_id_is_fenced_unless_no_epoch_was_given() {
        let m = meta(Empty, 3);
        assert_eq!(
            prepare_init(Some(&m), "txn", &init(Some((PID + 1, 3))), None, NOW),
            Err(ErrorCode::ProducerFenced)
        );
        // A cached id whose first write never became durable (epoch -1) takes anyone.
        let unwritten = TxnMeta::new("txn".into(), PID, 30_000, NOW);
        let t = write_of_init(prepare_init(
            Some(&unwritten),
            "txn",
            &init(Some((PID + 1, 9))),
            None,
            NOW,
        ));
        assert_eq!(
            (t.producer_id, t.producer_epoch, t.last_producer_epoch),
            (PID, 0, -1)
        );
    }

    #[test]
    fn expected_producer_needs_both_or_neither() {
        assert_eq!(expected_producer(-1, -1), Ok(None));
        assert_eq!(expected_producer(5, 2), Ok(Some((5, 2))));
        assert_eq!(expected_producer(-1, 2), Err(ErrorCode::InvalidRequest));
        assert_eq!(expected_producer(5, -1), Err(ErrorCode::InvalidRequest));
    }

    #[test]
    fn init_with_an_exhausted_epoch_rotates_the_producer_id() {
        let exhausted = i16::MAX - 1;
        for expected in [None, Some((PID, exhausted))] {
            let mut m = meta(CompleteCommit, exhausted);
            assert_eq!(
                prepare_init(Some(&m), "txn", &init(expected), None, NOW),
                Ok(InitOutcome::NeedProducerId)
            );
            let t = write_of_init(prepare_init(
                Some(&m),
                "txn",
                &init(expected),
                Some(NEW_PID),
                NOW,
            ));
            let last = if expected.is_some() { exhausted } else { -1 };
            assert_eq!(
                (t.producer_id, t.producer_epoch, t.last_producer_epoch),
                (NEW_PID, 0, last)
            );
            assert_eq!((t.previous_producer_id, t.state), (PID, Empty));
            apply(&mut m, t);
            assert_eq!((m.producer_id, m.producer_epoch), (NEW_PID, 0));
            if expected.is_some() {
                // The response was lost: the retry names the old id at the exhausted epoch.
                let retry = write_of_init(prepare_init(
                    Some(&m),
                    "txn",
                    &init(Some((PID, exhausted))),
                    None,
                    NOW,
                ));
                assert_eq!((retry.producer_id, retry.producer_epoch), (NEW_PID, 0));
            } else {
                assert_eq!(
                    prepare_init(Some(&m), "txn", &init(Some((PID, exhausted))), None, NOW),
                    Err(ErrorCode::ProducerFenced)
                );
            }
        }
        // One below the limit is an ordinary bump, to the last usable epoch.
        let m = meta(Empty, i16::MAX - 2);
        let t = write_of_init(prepare_init(
            Some(&m),
            "txn",
            &init(None),
            Some(NEW_PID),
            NOW,
        ));
        assert_eq!((t.producer_id, t.producer_epoch), (PID, i16::MAX - 1));
    }

    #[test]
    fn init_at_an_exhausted_epoch_answers_a_retry_of_the_last_bump() {
        // Bumped from MAX-2 to MAX-1, answer lost: the retry expects MAX-2 (Kafka throws
        // here; Rill answers the retry as below the limit).
        let mut m = meta(Empty, i16::MAX - 1);
        m.last_producer_epoch = i16::MAX - 2;
        let t = write_of_init(prepare_init(
            Some(&m),
            "txn",
            &init(Some((PID, i16::MAX - 2))),
            None,
            NOW,
        ));
        assert_eq!((t.producer_id, t.producer_epoch), (PID, i16::MAX - 1));
        assert_eq!(
            prepare_init(Some(&m), "txn", &init(Some((PID, 5))), None, NOW),
            Err(ErrorCode::ProducerFenced)
        );
    }

    /// A second InitProducerId while a transaction is Ongoing (the old producer is a
    /// zombie): fence, abort with the fencing epoch, CONCURRENT_TRANSACTIONS; after the
    /// abort completes, the retry gets its own bump.
    #[test]
    fn init_while_ongoing_fences_the_zombie_then_bumps() {
        for version in [TxnVersion::V0, TxnVersion::V2] {
            let mut m = meta(Ongoing, 5);
            let Ok(InitOutcome::Fence(fence)) =
                prepare_init(Some(&m), "txn", &init(None), None, NOW)
            else {
                panic!("an Ongoing transaction is fenced");
            };
            assert_eq!((fence.state, fence.producer_epoch), (PrepareEpochFence, 6));
            m.begin(fence.clone());
            // Everyone else waits meanwhile, the zombie included.
            assert_eq!(
                prepare_add(Some(&m), PID, 5, &parts(&[("x", 0)]), TxnVersion::V0, NOW),
                Err(ErrorCode::ConcurrentTransactions)
            );
            let abort = EndRequest {
                producer_id: fence.producer_id,
                producer_epoch: fence.producer_epoch,
                result: TxnResult::Abort,
                origin: EndOrigin::Coordinator,
            };
            let t = write_of_end(prepare_end(Some(&m), &abort, version, None, NOW));
            assert_eq!(t.state, PrepareAbort);
            assert_eq!(t.fenced_epoch, Some(6));
            assert_eq!(
                t.partitions, m.partitions,
                "the markers go to every partition"
            );
            let expect_epoch = if version.bumps_epoch() {
                assert_eq!((t.producer_epoch, t.last_producer_epoch), (7, 6));
                7
            } else {
                assert_eq!((t.producer_epoch, t.last_producer_epoch), (6, -1));
                6
            };
            m.begin(t.clone());
            m.complete(&t);
            assert_eq!((m.state, m.producer_epoch), (PrepareAbort, expect_epoch));
            // The zombie is fenced.
            assert_eq!(
                prepare_end(Some(&m), &end(5, TxnResult::Commit), version, None, NOW),
                Err(ErrorCode::ProducerFenced)
            );
            assert_eq!(
                prepare_add(Some(&m), PID, 5, &parts(&[("x", 0)]), TxnVersion::V0, NOW),
                Err(ErrorCode::ProducerFenced)
            );
            // The new producer retries while the markers go out.
            let complete = prepare_complete(&m, NOW).unwrap();
            m.begin(complete.clone());
            assert_eq!(
                prepare_init(Some(&m), "txn", &init(None), None, NOW),
                Err(ErrorCode::ConcurrentTransactions)
            );
            m.complete(&complete);
            assert_eq!(m.state, CompleteAbort);
            let bump = write_of_init(prepare_init(Some(&m), "txn", &init(None), None, NOW));
            assert_eq!(bump.producer_epoch, expect_epoch + 1);
            apply(&mut m, bump);
            assert_eq!((m.state, m.producer_epoch), (Empty, expect_epoch + 1));
        }
    }

    #[test]
    fn a_fence_whose_abort_failed_keeps_its_epoch_and_does_not_bump_again() {
        let mut m = meta(Ongoing, 5);
        let fence = prepare_fence(&m).unwrap();
        m.begin(fence.clone());
        let abort = EndRequest {
            producer_id: PID,
            producer_epoch: fence.producer_epoch,
            result: TxnResult::Abort,
            origin: EndOrigin::Coordinator,
        };
        let t = write_of_end(prepare_end_v1(Some(&m), &abort, NOW));
        m.begin(t);
        m.abandon();
        assert!(m.pending.is_none());
        assert_eq!(
            (m.state, m.producer_epoch, m.has_failed_epoch_fence),
            (Ongoing, 6, true)
        );
        // The zombie stays fenced here.
        assert_eq!(
            prepare_add(Some(&m), PID, 5, &parts(&[("x", 0)]), TxnVersion::V0, NOW),
            Err(ErrorCode::ProducerFenced)
        );
        // The timeout tries again: same epoch.
        let again = prepare_fence(&m).unwrap();
        assert_eq!(again.producer_epoch, 6);
        m.begin(again.clone());
        let t = write_of_end(prepare_end_v1(Some(&m), &abort, NOW));
        assert_eq!((t.producer_epoch, t.fenced_epoch), (6, Some(6)));
        apply(&mut m, t);
        assert_eq!(
            (m.state, m.producer_epoch, m.has_failed_epoch_fence),
            (PrepareAbort, 6, false)
        );
    }

    #[test]
    fn an_abandoned_ordinary_write_changes_nothing() {
        let mut m = meta(Ongoing, 5);
        let before = m.clone();
        let t = write_of_end(prepare_end_v1(Some(&m), &end(5, TxnResult::Commit), NOW));
        m.begin(t);
        m.abandon();
        assert_eq!(m, before);
    }

    #[test]
    fn fence_needs_an_ongoing_transaction_and_nothing_pending() {
        assert_eq!(
            prepare_fence(&meta(Empty, 1)),
            Err(ErrorCode::InvalidTxnState)
        );
        let mut m = meta(Ongoing, i16::MAX);
        assert_eq!(
            prepare_fence(&m).unwrap().producer_epoch,
            i16::MAX,
            "no overflow"
        );
        m.pending = Some(m.transit(Ongoing));
        assert_eq!(prepare_fence(&m), Err(ErrorCode::ConcurrentTransactions));
    }

    #[test]
    fn a_timed_out_transaction_is_found_once_past_its_timeout() {
        let mut m = meta(Ongoing, 1);
        let deadline = m.start_ms + i64::from(m.timeout_ms);
        assert!(!m.timed_out(deadline));
        assert!(m.timed_out(deadline + 1));
        m.pending = Some(m.transit(Ongoing));
        assert!(
            !m.timed_out(deadline + 1),
            "not while a transition is pending"
        );
        assert!(!meta(Empty, 1).timed_out(i64::MAX));
    }

    // ---- AddPartitionsToTxn / AddOffsetsToTxn ----

    #[test]
    fn add_checks_the_id_then_pending_then_producer_then_state() {
        let p = parts(&[("orders", 5)]);
        assert_eq!(
            prepare_add(None, PID, 1, &p, TxnVersion::V0, NOW),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let m = meta(Empty, 1);
        assert_eq!(
            prepare_add(Some(&m), PID + 1, 1, &p, TxnVersion::V0, NOW),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        assert_eq!(
            prepare_add(Some(&m), PID, 0, &p, TxnVersion::V0, NOW),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            prepare_add(Some(&m), PID, 2, &p, TxnVersion::V0, NOW),
            Err(ErrorCode::ProducerFenced)
        );
        // Pending comes before the producer checks: across a TV2 overflow the client
        // already uses the new producer id, still pending.
        let mut busy = meta(PrepareCommit, 1);
        busy.pending = Some(busy.transit(CompleteCommit));
        assert_eq!(
            prepare_add(Some(&busy), NEW_PID, 0, &p, TxnVersion::V2, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
        for state in [PrepareCommit, PrepareAbort] {
            assert_eq!(
                prepare_add(Some(&meta(state, 1)), PID, 1, &p, TxnVersion::V0, NOW),
                Err(ErrorCode::ConcurrentTransactions)
            );
        }
        // No epoch was ever handed out for this id.
        let unwritten = TxnMeta::new("txn".into(), PID, 30_000, NOW);
        assert_eq!(
            prepare_add(Some(&unwritten), PID, -1, &p, TxnVersion::V0, NOW),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn add_to_an_ongoing_transaction_writes_only_new_partitions() {
        let mut m = meta(Ongoing, 1);
        assert_eq!(
            prepare_add(
                Some(&m),
                PID,
                1,
                &parts(&[("orders", 1)]),
                TxnVersion::V0,
                NOW
            ),
            Ok(AddOutcome::AlreadyIn)
        );
        let t = write_of_add(prepare_add(
            Some(&m),
            PID,
            1,
            &parts(&[("orders", 1), ("audit", 0)]),
            TxnVersion::V0,
            NOW,
        ));
        assert_eq!(
            t.partitions,
            parts(&[("audit", 0), ("orders", 0), ("orders", 1)])
        );
        assert_eq!(t.start_ms, m.start_ms, "the transaction started earlier");
        assert_eq!((t.state, t.last_update_ms), (Ongoing, NOW));
        apply(&mut m, t);
        assert_eq!(m.partitions.len(), 3);
    }

    #[test]
    fn add_from_empty_or_complete_starts_a_transaction() {
        for state in [Empty, CompleteCommit, CompleteAbort] {
            let mut m = meta(state, 1);
            let t = write_of_add(prepare_add(
                Some(&m),
                PID,
                1,
                &parts(&[("orders", 3)]),
                TxnVersion::V2,
                NOW,
            ));
            assert_eq!((t.state, t.start_ms), (Ongoing, NOW));
            assert_eq!(t.partitions, parts(&[("orders", 3)]));
            assert_eq!(t.client_version, TxnVersion::V2, "the client's version");
            assert_eq!(t.producer_epoch, 1, "an add never bumps");
            apply(&mut m, t);
            assert_eq!(m.state, Ongoing);
        }
    }

    // ---- Verification (KIP-890 part 1) ----

    #[test]
    fn verify_answers_per_partition_without_a_write() {
        let m = meta(Ongoing, 1);
        let asked = parts(&[("orders", 0), ("orders", 9)]);
        let answer = verify(Some(&m), PID, 1, &asked).unwrap();
        assert_eq!(answer[&("orders".to_string(), 0)], ErrorCode::None);
        assert_eq!(
            answer[&("orders".to_string(), 9)],
            ErrorCode::TransactionAbortable
        );
        assert_eq!(answer.len(), 2);
        // Nothing open: every partition is abortable.
        let empty = verify(Some(&meta(CompleteCommit, 1)), PID, 1, &asked).unwrap();
        assert!(empty
            .values()
            .all(|c| *c == ErrorCode::TransactionAbortable));
        // A pending transition does not matter.
        let mut busy = meta(Ongoing, 1);
        busy.pending = Some(busy.transit(PrepareCommit));
        assert_eq!(
            verify(Some(&busy), PID, 1, &asked).unwrap()[&("orders".to_string(), 0)],
            ErrorCode::None
        );
        assert_eq!(
            verify(None, PID, 1, &asked),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        assert_eq!(
            verify(Some(&m), PID + 1, 1, &asked),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        assert_eq!(
            verify(Some(&m), PID, 0, &asked),
            Err(ErrorCode::ProducerFenced)
        );
        for state in [PrepareCommit, PrepareAbort] {
            assert_eq!(
                verify(Some(&meta(state, 1)), PID, 1, &asked),
                Err(ErrorCode::ConcurrentTransactions)
            );
        }
    }

    // ---- EndTxn TV1 ----

    #[test]
    fn end_v1_table() {
        use TxnResult::{Abort, Commit};
        let done = Ok(EndOutcome::Done {
            producer_id: -1,
            producer_epoch: -1,
        });
        let cases: [(TxnStatus, TxnResult, Result<EndOutcome, ErrorCode>); 10] = [
            (CompleteCommit, Commit, done.clone()),
            (CompleteCommit, Abort, Err(ErrorCode::InvalidTxnState)),
            (CompleteAbort, Abort, done),
            (CompleteAbort, Commit, Err(ErrorCode::InvalidTxnState)),
            (
                PrepareCommit,
                Commit,
                Err(ErrorCode::ConcurrentTransactions),
            ),
            (PrepareCommit, Abort, Err(ErrorCode::InvalidTxnState)),
            (PrepareAbort, Abort, Err(ErrorCode::ConcurrentTransactions)),
            (PrepareAbort, Commit, Err(ErrorCode::InvalidTxnState)),
            (Empty, Commit, Err(ErrorCode::InvalidTxnState)),
            (Empty, Abort, Err(ErrorCode::InvalidTxnState)),
        ];
        for (state, result, expected) in cases {
            assert_eq!(
                prepare_end_v1(Some(&meta(state, 4)), &end(4, result), NOW),
                expected,
                "{state:?} {result:?}"
            );
        }
        for (result, state) in [(Commit, PrepareCommit), (Abort, PrepareAbort)] {
            let mut m = meta(Ongoing, 4);
            m.client_version = TxnVersion::V2;
            let t = write_of_end(prepare_end_v1(Some(&m), &end(4, result), NOW));
            assert_eq!(t.state, state);
            assert_eq!(
                (t.producer_id, t.producer_epoch),
                (PID, 4),
                "TV1 never bumps"
            );
            assert_eq!((t.start_ms, t.last_update_ms), (m.start_ms, NOW));
            assert_eq!(t.partitions, m.partitions);
            assert_eq!(t.client_version, TxnVersion::V0);
            assert_eq!(t.fenced_epoch, None);
            apply(&mut m, t);
            assert_eq!(m.state, state);
        }
    }

    #[test]
    fn end_v1_checks_the_producer_before_the_state() {
        let m = meta(Ongoing, 4);
        assert_eq!(
            prepare_end_v1(None, &end(4, TxnResult::Commit), NOW),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let other = EndRequest {
            producer_id: PID + 1,
            ..end(4, TxnResult::Commit)
        };
        assert_eq!(
            prepare_end_v1(Some(&m), &other, NOW),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        for epoch in [3, 5] {
            assert_eq!(
                prepare_end_v1(Some(&m), &end(epoch, TxnResult::Commit), NOW),
                Err(ErrorCode::ProducerFenced)
            );
        }
        // The coordinator may use a newer epoch, never an older one.
        let coordinator = |epoch| EndRequest {
            origin: EndOrigin::Coordinator,
            ..end(epoch, TxnResult::Abort)
        };
        assert_eq!(
            prepare_end_v1(Some(&m), &coordinator(3), NOW),
            Err(ErrorCode::ProducerFenced)
        );
        assert!(prepare_end_v1(Some(&m), &coordinator(5), NOW).is_ok());
        let mut busy = meta(Ongoing, 4);
        busy.pending = Some(busy.transit(Ongoing));
        assert_eq!(
            prepare_end_v1(Some(&busy), &end(4, TxnResult::Commit), NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
        // A pending fence is followed by the coordinator's abort only.
        let mut fencing = meta(Ongoing, 4);
        fencing.begin(prepare_fence(&fencing).unwrap());
        assert_eq!(
            prepare_end_v1(Some(&fencing), &end(4, TxnResult::Abort), NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
    }

    #[test]
    fn complete_after_prepare_clears_the_partitions_and_keeps_the_epoch() {
        for (prepare, complete) in [
            (PrepareCommit, CompleteCommit),
            (PrepareAbort, CompleteAbort),
        ] {
            let mut m = meta(prepare, 4);
            let t = prepare_complete(&m, NOW).unwrap();
            assert_eq!(t.state, complete);
            assert!(t.partitions.is_empty());
            assert_eq!((t.producer_id, t.producer_epoch), (PID, 4));
            assert_eq!((t.start_ms, t.last_update_ms), (m.start_ms, NOW));
            apply(&mut m, t);
            assert_eq!(m.state, complete);
            let stored = m.transit(m.state).to_stored();
            assert_eq!(
                stored.partitions,
                Some(vec![]),
                "Complete* writes an empty list"
            );
        }
        assert_eq!(
            prepare_complete(&meta(Ongoing, 4), NOW),
            Err(ErrorCode::InvalidTxnState)
        );
        let mut busy = meta(PrepareCommit, 4);
        busy.pending = Some(prepare_complete(&busy, NOW).unwrap());
        assert_eq!(
            prepare_complete(&busy, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
    }

    // ---- EndTxn TV2 ----

    /// Kafka's TV2 table for Empty, CompleteAbort and CompleteCommit (retry: the request's
    /// epoch is one below the stored one).
    #[test]
    fn end_v2_table() {
        use TxnResult::{Abort, Commit};
        #[derive(Debug)]
        enum Want {
            Fenced,
            Invalid,
            None,
            Bump,
        }
        let cases = [
            (Empty, Abort, true, Want::Fenced),
            (Empty, Abort, false, Want::Bump),
            (Empty, Commit, true, Want::Fenced),
            (Empty, Commit, false, Want::Invalid),
            (CompleteAbort, Abort, true, Want::None),
            (CompleteAbort, Abort, false, Want::Bump),
            (CompleteAbort, Commit, true, Want::Invalid),
            (CompleteAbort, Commit, false, Want::Invalid),
            (CompleteCommit, Abort, true, Want::Invalid),
            (CompleteCommit, Abort, false, Want::Bump),
            (CompleteCommit, Commit, true, Want::None),
            (CompleteCommit, Commit, false, Want::Invalid),
        ];
        for (state, result, retry, want) in cases {
            let mut m = v2(meta(state, 8));
            let epoch = if retry { 7 } else { 8 };
            let got = prepare_end_v2(Some(&m), &end(epoch, result), None, NOW);
            let what = format!("{state:?} {result:?} retry={retry}");
            match want {
                Want::Fenced => assert_eq!(got, Err(ErrorCode::ProducerFenced), "{what}"),
                Want::Invalid => assert_eq!(got, Err(ErrorCode::InvalidTxnState), "{what}"),
                Want::None => assert_eq!(
                    got,
                    Ok(EndOutcome::Done {
                        producer_id: PID,
                        producer_epoch: 8
                    }),
                    "{what}"
                ),
                Want::Bump => {
                    let t = write_of_end(got);
                    assert_eq!(t.state, PrepareAbort, "{what}");
                    assert_eq!((t.producer_epoch, t.last_producer_epoch), (9, 8), "{what}");
                    assert_eq!(t.start_ms, NOW, "nothing was added: starts now ({what})");
                    assert!(t.partitions.is_empty(), "{what}");
                    assert_eq!(t.client_version, TxnVersion::V2, "{what}");
                    apply(&mut m, t);
                    let c = prepare_complete(&m, NOW).unwrap();
                    apply(&mut m, c);
                    assert_eq!((m.state, m.producer_epoch), (CompleteAbort, 9), "{what}");
                }
            }
        }
    }

    #[test]
    fn end_v2_bumps_at_prepare_and_answers_retries() {
        use TxnResult::{Abort, Commit};
        for (result, prepare, complete) in [
            (Commit, PrepareCommit, CompleteCommit),
            (Abort, PrepareAbort, CompleteAbort),
        ] {
            let mut m = v2(meta(Ongoing, 8));
            let t = write_of_end(prepare_end_v2(Some(&m), &end(8, result), None, NOW));
            assert_eq!(t.state, prepare);
            assert_eq!(
                (t.producer_id, t.producer_epoch, t.last_producer_epoch),
                (PID, 9, 8)
            );
            assert_eq!(t.start_ms, m.start_ms);
            assert_eq!(t.next_producer_id, -1);
            apply(&mut m, t);
            // A retry while the markers go out: wait.
            assert_eq!(
                prepare_end_v2(Some(&m), &end(8, result), None, NOW),
                Err(ErrorCode::ConcurrentTransactions)
            );
            let other = match result {
                Commit => Abort,
                Abort => Commit,
            };
            assert_eq!(
                prepare_end_v2(Some(&m), &end(8, other), None, NOW),
                Err(ErrorCode::InvalidTxnState)
            );
            // The bumped epoch is not a retry of anything in Prepare*.
            assert_eq!(
                prepare_end_v2(Some(&m), &end(9, result), None, NOW),
                Err(ErrorCode::ProducerFenced)
            );
            let c = prepare_complete(&m, NOW).unwrap();
            assert_eq!(
                (c.state, c.producer_id, c.producer_epoch),
                (complete, PID, 9)
            );
            m.begin(c.clone());
            assert_eq!(
                prepare_end_v2(Some(&m), &end(8, result), None, NOW),
                Err(ErrorCode::ConcurrentTransactions)
            );
            m.complete(&c);
            assert_eq!(
                prepare_end_v2(Some(&m), &end(8, result), None, NOW),
                Ok(EndOutcome::Done {
                    producer_id: PID,
                    producer_epoch: 9
                })
            );
            // An older epoch is a zombie's.
            assert_eq!(
                prepare_end_v2(Some(&m), &end(6, result), None, NOW),
                Err(ErrorCode::ProducerFenced)
            );
        }
        assert_eq!(
            prepare_end_v2(None, &end(1, Commit), None, NOW),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let other = EndRequest {
            producer_id: PID + 1,
            ..end(8, Commit)
        };
        assert_eq!(
            prepare_end_v2(Some(&v2(meta(Ongoing, 8))), &other, None, NOW),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn end_v2_with_an_exhausted_epoch_rotates_the_producer_id_at_complete() {
        let exhausted = i16::MAX - 1;
        let mut m = v2(meta(Ongoing, exhausted));
        let commit = end(exhausted, TxnResult::Commit);
        assert_eq!(
            prepare_end_v2(Some(&m), &commit, None, NOW),
            Ok(EndOutcome::NeedProducerId)
        );
        let t = write_of_end(prepare_end_v2(Some(&m), &commit, Some(NEW_PID), NOW));
        assert_eq!((t.producer_id, t.producer_epoch), (PID, i16::MAX));
        assert_eq!(
            (t.last_producer_epoch, t.next_producer_id),
            (exhausted, NEW_PID)
        );
        apply(&mut m, t);
        let c = prepare_complete(&m, NOW).unwrap();
        assert_eq!(
            (c.producer_id, c.producer_epoch),
            (NEW_PID, 0),
            "the EndTxn answer"
        );
        assert_eq!(
            (c.previous_producer_id, c.last_producer_epoch),
            (PID, exhausted)
        );
        assert_eq!(c.next_producer_id, -1);
        apply(&mut m, c);
        assert_eq!(
            (m.state, m.producer_id, m.producer_epoch),
            (CompleteCommit, NEW_PID, 0)
        );
        // The response was lost: the retry names the old id at the exhausted epoch.
        assert_eq!(
            prepare_end_v2(Some(&m), &commit, None, NOW),
            Ok(EndOutcome::Done {
                producer_id: NEW_PID,
                producer_epoch: 0
            })
        );
        // The next transaction runs on the new id.
        let next = EndRequest {
            producer_id: NEW_PID,
            ..end(0, TxnResult::Abort)
        };
        let t = write_of_end(prepare_end_v2(Some(&m), &next, None, NOW));
        assert_eq!(
            (t.producer_id, t.producer_epoch, t.next_producer_id),
            (NEW_PID, 1, -1)
        );
    }

    #[test]
    fn end_v2_fencing_abort_bumps_from_the_fencing_epoch_and_allocates_nothing() {
        let mut m = v2(meta(Ongoing, i16::MAX - 1));
        let fence = prepare_fence(&m).unwrap();
        assert_eq!(fence.producer_epoch, i16::MAX);
        m.begin(fence.clone());
        let abort = EndRequest {
            producer_id: PID,
            producer_epoch: fence.producer_epoch,
            result: TxnResult::Abort,
            origin: EndOrigin::Coordinator,
        };
        // At i16::MAX the abort goes through without overflowing, and needs no new id.
        let t = write_of_end(prepare_end_v2(Some(&m), &abort, None, NOW));
        assert_eq!(
            (t.producer_epoch, t.last_producer_epoch),
            (i16::MAX, i16::MAX)
        );
        assert_eq!((t.next_producer_id, t.fenced_epoch), (-1, Some(i16::MAX)));
        apply(&mut m, t);
        assert_eq!((m.state, m.producer_epoch), (PrepareAbort, i16::MAX));
        let c = prepare_complete(&m, NOW).unwrap();
        apply(&mut m, c);
        // The client's retry of InitProducerId then rotates the producer id.
        assert_eq!(
            prepare_init(Some(&m), "txn", &init(None), None, NOW),
            Ok(InitOutcome::NeedProducerId)
        );
        // A commit at i16::MAX would overflow: nobody holds that epoch.
        let broken = v2(meta(Ongoing, i16::MAX));
        assert_eq!(
            prepare_end_v2(
                Some(&broken),
                &end(i16::MAX, TxnResult::Commit),
                Some(NEW_PID),
                NOW
            ),
            Err(ErrorCode::ProducerFenced)
        );
    }

    // ---- Expiry ----

    #[test]
    fn dead_only_for_an_idle_finished_id() {
        const EXPIRY: i64 = 7 * 24 * 3_600_000;
        let m = meta(CompleteCommit, 2);
        let idle_since = m.last_update_ms;
        assert_eq!(prepare_dead(&m, idle_since + EXPIRY - 1, EXPIRY), None);
        let t = prepare_dead(&m, idle_since + EXPIRY, EXPIRY).unwrap();
        assert_eq!((t.state, t.producer_epoch), (Dead, 2));
        assert!(t.is_tombstone() && t.partitions.is_empty());
        let mut m2 = meta(Empty, 2);
        m2.begin(t.clone());
        assert_eq!(
            prepare_init(Some(&m2), "txn", &init(None), None, NOW),
            Err(ErrorCode::ConcurrentTransactions),
            "requests wait for the tombstone"
        );
        for state in [Ongoing, PrepareCommit, PrepareAbort] {
            assert_eq!(
                prepare_dead(&meta(state, 2), i64::MAX, EXPIRY),
                None,
                "{state:?}"
            );
        }
        assert_eq!(prepare_dead(&m2, i64::MAX, EXPIRY), None, "pending");
    }

    // ---- The validity of transitions ----

    #[test]
    fn valid_previous_states_are_kafkas() {
        let all = [
            Empty,
            Ongoing,
            PrepareCommit,
            PrepareAbort,
            CompleteCommit,
            CompleteAbort,
            Dead,
            PrepareEpochFence,
        ];
        // Kafka 4.x's TransactionState, row by row: the target, then where it may come from.
        let kafka: [(TxnStatus, &[TxnStatus]); 8] = [
            (Empty, &[Empty, CompleteCommit, CompleteAbort]),
            (Ongoing, &[Ongoing, Empty, CompleteCommit, CompleteAbort]),
            (PrepareCommit, &[Ongoing]),
            (
                PrepareAbort,
                &[
                    Ongoing,
                    PrepareEpochFence,
                    Empty,
                    CompleteCommit,
                    CompleteAbort,
                ],
            ),
            (CompleteCommit, &[PrepareCommit]),
            (CompleteAbort, &[PrepareAbort]),
            (Dead, &[Empty, CompleteAbort, CompleteCommit]),
            (PrepareEpochFence, &[Ongoing]),
        ];
        for (to, from) in kafka {
            for s in all {
                assert_eq!(
                    valid_previous(to).contains(&s),
                    from.contains(&s),
                    "{s:?} -> {to:?}"
                );
            }
        }
    }

    /// `complete` refuses every transition the table does not allow, whatever else the
    /// transit says.
    #[test]
    fn complete_refuses_every_invalid_previous_state() {
        let all = [
            Empty,
            Ongoing,
            PrepareCommit,
            PrepareAbort,
            CompleteCommit,
            CompleteAbort,
            Dead,
            PrepareEpochFence,
        ];
        let mut refused = 0;
        for from in all {
            for to in all {
                if valid_previous(to).contains(&from) {
                    continue;
                }
                let mut m = meta(from, 3);
                let t = m.transit(to);
                m.pending = Some(t.clone());
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.complete(&t)));
                let message = outcome
                    .expect_err(&format!("{from:?} -> {to:?} must panic"))
                    .downcast::<String>()
                    .map(|s| *s)
                    .unwrap_or_default();
                assert!(
                    message.contains("is not a valid previous state"),
                    "{from:?} -> {to:?}: {message}"
                );
                refused += 1;
            }
        }
        assert_eq!(refused, 64 - 19, "Kafka's table allows 19 pairs");
    }

    #[test]
    #[should_panic(expected = "CompleteCommit is not a valid previous state of PrepareCommit")]
    fn complete_from_an_invalid_previous_state_panics() {
        let mut m = meta(CompleteCommit, 3);
        let t = m.transit(PrepareCommit);
        m.pending = Some(t.clone());
        m.complete(&t);
    }

    #[test]
    #[should_panic(expected = "is not a valid previous state of CompleteAbort")]
    fn begin_from_an_invalid_previous_state_panics() {
        let mut m = meta(Ongoing, 3);
        let t = m.transit(CompleteAbort);
        m.begin(t);
    }

    #[test]
    #[should_panic(expected = "with nothing pending")]
    fn complete_without_a_pending_transition_panics() {
        let mut m = meta(Ongoing, 3);
        let t = write_of_end(prepare_end_v1(Some(&m), &end(3, TxnResult::Commit), NOW));
        m.complete(&t);
    }

    #[test]
    #[should_panic(expected = "is pending")]
    fn complete_of_another_transition_than_the_pending_one_panics() {
        let mut m = meta(Ongoing, 3);
        let commit = write_of_end(prepare_end_v1(Some(&m), &end(3, TxnResult::Commit), NOW));
        let abort = write_of_end(prepare_end_v1(Some(&m), &end(3, TxnResult::Abort), NOW));
        m.begin(commit);
        m.complete(&abort);
    }

    #[test]
    #[should_panic(expected = "while Ongoing is pending")]
    fn beginning_a_second_transition_panics() {
        let mut m = meta(Empty, 3);
        let add = write_of_add(prepare_add(
            Some(&m),
            PID,
            3,
            &parts(&[("a", 0)]),
            TxnVersion::V0,
            NOW,
        ));
        m.begin(add.clone());
        m.begin(add);
    }

    #[test]
    #[should_panic(expected = "unexpected transition")]
    fn complete_with_an_epoch_the_rules_do_not_allow_panics() {
        let mut m = meta(Ongoing, 3);
        let mut t = write_of_end(prepare_end_v1(Some(&m), &end(3, TxnResult::Commit), NOW));
        t.producer_epoch = 4;
        m.begin(t.clone());
        m.complete(&t);
    }

    #[test]
    #[should_panic(expected = "never completed to Dead")]
    fn complete_to_dead_panics() {
        let mut m = meta(Empty, 3);
        let t = prepare_dead(&m, i64::MAX, 0).unwrap();
        m.begin(t.clone());
        m.complete(&t);
    }

    #[test]
    #[should_panic(expected = "PrepareEpochFence is never completed")]
    fn complete_to_prepare_epoch_fence_panics() {
        let mut m = meta(Ongoing, 3);
        let t = prepare_fence(&m).unwrap();
        m.begin(t.clone());
        m.complete(&t);
    }

    #[test]
    #[should_panic(expected = "never written as a value")]
    fn a_tombstone_has_no_stored_value() {
        prepare_dead(&meta(Empty, 1), i64::MAX, 0)
            .unwrap()
            .to_stored();
    }

    // ---- Storage ----

    /// Every kind of state survives to_stored, value v1 bytes and from_stored, but the last
    /// epoch (not stored, -1 after a load, as Kafka).
    #[test]
    fn stored_state_round_trips_through_value_v1() {
        let mut ongoing = v2(meta(Ongoing, 8));
        ongoing.partitions = parts(&[("b", 2), ("a", 1), ("b", 0)]);
        ongoing.last_producer_epoch = 7;
        let mut rotated = meta(CompleteCommit, 0);
        rotated.previous_producer_id = PID - 1;
        let mut prepare = v2(meta(PrepareCommit, i16::MAX));
        prepare.next_producer_id = NEW_PID;
        let mut v1 = meta(Empty, 0);
        v1.client_version = TxnVersion::V1;
        for original in [ongoing, rotated, prepare, v1, meta(CompleteAbort, 3)] {
            let stored = original.transit(original.state).to_stored();
            let stored = StoredTxn {
                previous_producer_id: original.previous_producer_id,
                ..stored
            };
            let bytes = encode_value(&stored, 1);
            let decoded = decode_value(&bytes).unwrap();
            assert_eq!(decoded, stored);
            let loaded = TxnMeta::from_stored("txn".into(), decoded).unwrap();
            let expected = TxnMeta {
                last_producer_epoch: -1,
                ..original.clone()
            };
            assert_eq!(loaded, expected, "{:?}", original.state);
        }
    }

    #[test]
    fn to_stored_groups_partitions_by_topic_and_writes_null_when_empty() {
        let mut m = meta(Ongoing, 2);
        m.partitions = parts(&[("b", 2), ("a", 1), ("b", 0)]);
        let stored = m.transit(Ongoing).to_stored();
        assert_eq!(
            stored.partitions,
            Some(vec![
                TxnPartitions {
                    topic: "a".into(),
                    partitions: vec![1]
                },
                TxnPartitions {
                    topic: "b".into(),
                    partitions: vec![0, 2]
                },
            ])
        );
        assert_eq!(stored.previous_producer_id, PID);
        assert_eq!(stored.next_producer_epoch, -1);
        assert_eq!(meta(Empty, 2).transit(Empty).to_stored().partitions, None);
    }

    /// The transition written is the state loaded: a write then a load (a coordinator
    /// change) gives the state `complete` gave, but the last epoch.
    #[test]
    fn a_completed_transition_and_its_loaded_record_agree() {
        let mut m = v2(meta(Ongoing, 8));
        let t = write_of_end(prepare_end_v2(
            Some(&m),
            &end(8, TxnResult::Commit),
            None,
            NOW,
        ));
        let bytes = encode_value(&t.to_stored(), 1);
        apply(&mut m, t);
        let loaded = TxnMeta::from_stored("txn".into(), decode_value(&bytes).unwrap()).unwrap();
        assert_eq!(
            loaded,
            TxnMeta {
                last_producer_epoch: -1,
                ..m
            }
        );
    }

    #[test]
    fn from_stored_ignores_an_empty_states_partitions() {
        let mut stored = meta(Ongoing, 1).transit(Ongoing).to_stored();
        stored.status = Empty;
        stored.start_ms = -1;
        let m = TxnMeta::from_stored("txn".into(), stored).unwrap();
        assert!(m.partitions.is_empty());
    }

    #[test]
    fn from_stored_refuses_what_kafka_never_writes() {
        let good = meta(CompleteAbort, 1).transit(CompleteAbort).to_stored();
        let bad = [
            (
                StoredTxn {
                    status: Dead,
                    ..good.clone()
                },
                "status Dead",
            ),
            (
                StoredTxn {
                    status: PrepareEpochFence,
                    ..good.clone()
                },
                "status PrepareEpochFence",
            ),
            (
                StoredTxn {
                    producer_id: -1,
                    ..good.clone()
                },
                "producer id -1",
            ),
            (
                StoredTxn {
                    producer_epoch: -1,
                    ..good.clone()
                },
                "producer epoch -1",
            ),
            (
                StoredTxn {
                    start_ms: -1,
                    ..good.clone()
                },
                "no start time",
            ),
            (
                StoredTxn {
                    client_transaction_version: 3,
                    ..good.clone()
                },
                "client transaction version 3",
            ),
        ];
        for (stored, what) in bad {
            let err = TxnMeta::from_stored("txn".into(), stored).unwrap_err();
            assert!(err.contains(what) && err.contains("\"txn\""), "{err}");
        }
        assert!(TxnMeta::from_stored("txn".into(), good).is_ok());
    }

    // ---- Versions ----

    #[test]
    fn old_versions_get_invalid_producer_epoch_for_producer_fenced() {
        let fenced = ErrorCode::ProducerFenced;
        let old = ErrorCode::InvalidProducerEpoch;
        for (api, first) in [
            (TxnApi::InitProducerId, 4),
            (TxnApi::AddPartitionsToTxn, 2),
            (TxnApi::AddOffsetsToTxn, 2),
            (TxnApi::EndTxn, 2),
        ] {
            assert_eq!(error_for_version(fenced, api, first - 1), old, "{api:?}");
            assert_eq!(error_for_version(fenced, api, first), fenced, "{api:?}");
            assert_eq!(
                error_for_version(ErrorCode::ConcurrentTransactions, api, 0),
                ErrorCode::ConcurrentTransactions
            );
        }
    }

    #[test]
    fn transaction_versions_from_requests_and_levels() {
        assert_eq!(TxnVersion::for_add_partitions(3), TxnVersion::V0);
        assert_eq!(TxnVersion::for_add_partitions(4), TxnVersion::V2);
        assert_eq!(TxnVersion::for_end_txn(4), TxnVersion::V0);
        assert_eq!(TxnVersion::for_end_txn(5), TxnVersion::V2);
        for v in [TxnVersion::V0, TxnVersion::V1, TxnVersion::V2] {
            assert_eq!(TxnVersion::from_level(v.level()), Some(v));
        }
        assert_eq!(TxnVersion::from_level(3), None);
        assert_eq!(TxnVersion::from_level(-1), None);
        assert!(!TxnVersion::V1.bumps_epoch() && TxnVersion::V2.bumps_epoch());
        assert_eq!(TxnVersion::V0.log_value_version(), 0);
        assert_eq!(TxnVersion::V1.log_value_version(), 1);
        assert!(!epoch_exhausted(i16::MAX - 2) && epoch_exhausted(i16::MAX - 1));
    }
}
