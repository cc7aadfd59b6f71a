//! Idempotent producers (KIP-98): per partition, the last batches of each producer id, so a
//! retried batch is answered with its original offset instead of being appended twice, and a
//! gap in the sequence is refused. Owned by the partition's shard.
//!
//! The table lives in memory and is bounded (`limits.producers_per_partition_max`, least
//! recently used evicted). Like Kafka's producer snapshots, it is written beside the log
//! (`producer.snapshot`, with the offset it covers) every so many records and when the
//! partition closes; after a restart the first idempotent produce loads it and replays the
//! batches after it (the whole log when there is no usable snapshot), so a retry that
//! crosses a restart is still answered with its first offset. Followers keep it in step
//! with the batches they copy once it was rebuilt (the log cleaner's first pass does that),
//! and write the snapshot too.
//!
//! The log cleaner keeps each remembered producer's last batch, as a header without
//! records when compaction empties it ([`ProducerTable::last_offsets`]), so a replica that
//! copies a compacted log, or a rebuild without a snapshot, still finds the producer.
//!
//! Transactions (KIP-98, Kafka's `ProducerStateManager`): a producer's first transactional
//! batch opens its transaction at that batch's offset; its end marker (commit or abort,
//! written for the transaction coordinator) closes it. The open transactions and those
//! whose marker is not yet below the high watermark give the first unstable offset, below
//! which read_committed consumers may read ([`ProducerTable::last_stable_offset`]). A
//! producer with an open transaction is never evicted.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rill_net::ErrorCode;
use rill_storage::batch::BatchHeader;
use rill_storage::txn::AbortedTxn;
use rkyv::{Archive, Deserialize, Serialize};

use crate::errors::KafkaError;

/// Batches remembered per producer, as Kafka does (a producer has at most 5 in flight).
const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recent {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug)]
struct Entry {
    epoch: i16,
    recent: VecDeque<Recent>,
    last_used: u64,
    /// The max timestamp of its last batch (DescribeProducers' last timestamp).
    last_timestamp: i64,
    /// The first offset of its open transaction.
    txn_first_offset: Option<i64>,
    /// The epoch of the transaction coordinator that wrote its last marker (-1: none).
    coordinator_epoch: i32,
    /// The offset of its last marker, while no data batch of its epoch followed it (a
    /// marker that bumped the epoch is then the only record of that epoch in the log). Not
    /// in the snapshot: the snapshot keeps the epoch itself.
    last_marker: Option<i64>,
}

impl Entry {
    fn new(epoch: i16) -> Entry {
        Entry {
            epoch,
            recent: VecDeque::with_capacity(RECENT_BATCHES),
            last_used: 0,
            last_timestamp: -1,
            txn_first_offset: None,
            coordinator_epoch: -1,
            last_marker: None,
        }
    }

    /// A newer epoch starts the producer over: its remembered batches no longer count.
    fn bump(&mut self, epoch: i16) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.recent.clear();
        }
    }
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// The epoch of the coordinator that wrote its last marker (-1: none).
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction (-1: none).
    pub current_txn_start_offset: i64,
}

/// A transaction an end marker closed: what the aborted-transaction index records of an
/// aborted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
    /// The last stable offset as of the marker (Kafka's `lastStableOffset(completedTxn)`):
    /// the first offset of the earliest transaction of another producer still open, else
    /// the offset after the marker.
    pub last_stable_offset: i64,
}

/// An end-transaction marker to check and record, as WriteTxnMarkers names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerWrite {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
}

/// A verification of a producer's transaction with its coordinator (KIP-890 part 1, Kafka's
/// `VerificationGuard`): started when the producer has no open transaction here, gone
/// when an end marker of the producer lands (its transaction ended meanwhile) or when the
/// transaction opens. An append that needed one must still find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    pub producer_id: i64,
    pub epoch: i16,
    pub id: u64,
}

/// What a transactional batch needs before it may be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The producer's transaction at this epoch is open here: append.
    NotNeeded,
    /// The coordinator already said this partition is in the transaction, and no marker
    /// of the producer landed since: append with the guard.
    Verified(Guard),
    /// Ask the coordinator, then append with the guard.
    Needed(Guard),
}

/// What to do with a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Not a duplicate and in sequence: append it.
    Append,
    /// Already stored: answer with its original base offset.
    Duplicate { base_offset: i64 },
}

/// The producer states of one partition.
#[derive(Debug)]
pub struct ProducerTable {
    max: usize,
    entries: HashMap<i64, Entry>,
    clock: u64,
    /// Open transactions: first offset -> producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Completed transactions whose marker may still be above the high watermark: first
    /// offset -> marker offset. Pruned as the high watermark passes their markers; at most
    /// one per producer entry's lifetime in flight, so bounded by the entries.
    unreplicated: BTreeMap<i64, i64>,
    /// Verifications in progress (or done, `true`) by producer id: (epoch, guard id,
    /// verified). At most `max`; the oldest goes first (its append is then refused and the
    /// client retries). Not in the snapshot: a guard lives for one round trip.
    verifying: HashMap<i64, (i16, u64, bool)>,
    next_guard: u64,
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"RILP";
/// 3: each producer's open transaction and coordinator epoch; a version-2 (or older) file
/// is treated as no snapshot, so the log is replayed with its markers.
const SNAPSHOT_VERSION: u32 = 3;
/// The snapshot file beside the partition's segments.
pub const SNAPSHOT_FILE: &str = "producer.snapshot";

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq, Eq)]
struct StoredProducer {
    producer_id: i64,
    epoch: i16,
    /// (first sequence, last sequence, base offset), oldest first.
    recent: Vec<(i32, i32, i64)>,
    last_used: u64,
    last_timestamp: i64,
    /// First offset of the open transaction, -1 for none.
    txn_first_offset: i64,
    coordinator_epoch: i32,
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq, Eq)]
struct StoredTable {
    /// The table holds every batch below this offset.
    offset: i64,
    clock: u64,
    producers: Vec<StoredProducer>,
    /// The log's active segment then, and the transactions aborted in it below `offset`
    /// (producer id, first offset, marker offset, last stable offset): that segment's
    /// index lives in memory until the segment rolls, so after a crash the snapshot and
    /// the markers after it rebuild it.
    active_base: i64,
    active_aborted: Vec<(i64, i64, i64, i64)>,
}

/// The log's active segment and its aborted transactions, as a snapshot recorded them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveAborted {
    pub base: i64,
    pub entries: Vec<AbortedTxn>,
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX back to 0.
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerTable {
    pub fn new(max: usize) -> ProducerTable {
        ProducerTable {
            max,
            entries: HashMap::new(),
            clock: 0,
            ongoing: BTreeMap::new(),
            unreplicated: BTreeMap::new(),
            verifying: HashMap::new(),
            next_guard: 0,
        }
    }

    /// Whether producer `producer_id`'s transaction at `epoch` is open here.
    pub fn has_ongoing(&self, producer_id: i64, epoch: i16) -> bool {
        self.entries
            .get(&producer_id)
            .is_some_and(|e| e.txn_first_offset.is_some() && e.epoch == epoch)
    }

    /// What a transactional batch of `producer_id` at `epoch` needs before it may be
    /// appended ([`Verification`]); starts a verification (a new guard) when none runs
    /// for that epoch.
    pub fn verification(&mut self, producer_id: i64, epoch: i16) -> Verification {
        if self.has_ongoing(producer_id, epoch) {
            return Verification::NotNeeded;
        }
        if let Some(&(e, id, verified)) = self.verifying.get(&producer_id) {
            if e == epoch {
                let guard = Guard {
                    producer_id,
                    epoch,
                    id,
                };
                return if verified {
                    Verification::Verified(guard)
                } else {
                    Verification::Needed(guard)
                };
            }
        }
        if self.verifying.len() >= self.max && !self.verifying.contains_key(&producer_id) {
            if let Some((&oldest, _)) = self.verifying.iter().min_by_key(|(_, v)| v.1) {
                self.verifying.remove(&oldest);
            }
        }
        self.next_guard += 1;
        self.verifying
            .insert(producer_id, (epoch, self.next_guard, false));
        Verification::Needed(Guard {
            producer_id,
            epoch,
            id: self.next_guard,
        })
    }

    /// The coordinator answered that the partition is in `g`'s transaction: later batches
    /// of that epoch need not ask again while the guard lasts.
    pub fn mark_verified(&mut self, g: Guard) {
        if let Some(v) = self.verifying.get_mut(&g.producer_id) {
            if v.0 == g.epoch && v.1 == g.id {
                v.2 = true;
            }
        }
    }

    /// Whether a batch verified with `g` may still be appended: its transaction is open
    /// here, or the verified guard is still in place (no end marker landed since).
    pub fn guard_holds(&self, g: Guard) -> bool {
        self.has_ongoing(g.producer_id, g.epoch)
            || self.verifying.get(&g.producer_id) == Some(&(g.epoch, g.id, true))
    }

    /// Decides what to do with a batch from a client (batches without a producer id always
    /// append).
    pub fn check(&self, h: &BatchHeader) -> Result<Check, KafkaError> {
        if h.producer_id < 0 {
            return Ok(Check::Append);
        }
        let Some(e) = self.entries.get(&h.producer_id) else {
            if self.entries.len() >= self.max && self.ongoing.len() >= self.max {
                // Every remembered producer has an open transaction: none may be evicted.
                return Err(KafkaError::new(
                    ErrorCode::ConcurrentTransactions,
                    format!(
                        "this partition already has {} producers with open transactions \
                         (limits.producers_per_partition_max); retry once some complete",
                        self.ongoing.len()
                    ),
                ));
            }
            return Ok(Check::Append);
        };
        if !h.is_transactional() && e.txn_first_offset.is_some() && h.producer_epoch >= e.epoch {
            return Err(KafkaError::new(
                ErrorCode::InvalidTxnState,
                format!(
                    "producer {} sent a non-transactional batch while its transaction is open",
                    h.producer_id
                ),
            ));
        }
        if h.producer_epoch < e.epoch {
            return Err(KafkaError::new(
                ErrorCode::InvalidProducerEpoch,
                format!(
                    "producer {} epoch {} is older than the current epoch {}",
                    h.producer_id, h.producer_epoch, e.epoch
                ),
            ));
        }
        if h.producer_epoch > e.epoch {
            return if h.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(out_of_order(h, 0))
            };
        }
        let last = last_seq(h);
        if let Some(r) = e
            .recent
            .iter()
            .find(|r| r.first_seq == h.base_sequence && r.last_seq == last)
        {
            return Ok(Check::Duplicate {
                base_offset: r.base_offset,
            });
        }
        let expected = e.recent.back().map_or(0, |r| next_seq(r.last_seq));
        if h.base_sequence == expected {
            return Ok(Check::Append);
        }
        if e.recent
            .iter()
            .any(|r| r.first_seq <= h.base_sequence && h.base_sequence <= r.last_seq)
        {
            return Err(KafkaError::new(
                ErrorCode::DuplicateSequenceNumber,
                format!(
                    "producer {} sequence {} overlaps a stored batch with other bounds",
                    h.producer_id, h.base_sequence
                ),
            ));
        }
        Err(out_of_order(h, expected))
    }

    /// Decides what to do with a coordinator's own batch (Kafka's origin COORDINATOR): no
    /// sequence to check, only that its producer epoch is not older than the producer's.
    pub fn check_coordinator(&self, h: &BatchHeader) -> Result<Check, KafkaError> {
        match self.entries.get(&h.producer_id) {
            Some(e) if h.producer_id >= 0 && h.producer_epoch < e.epoch => Err(KafkaError::new(
                ErrorCode::InvalidProducerEpoch,
                format!(
                    "producer {} epoch {} is older than the current epoch {}",
                    h.producer_id, h.producer_epoch, e.epoch
                ),
            )),
            _ => Ok(Check::Append),
        }
    }

    /// The table as a snapshot file's bytes, covering every batch below `offset`, with the
    /// log's active segment's aborted transactions.
    pub fn snapshot(&self, offset: i64, active: &ActiveAborted) -> Vec<u8> {
        let mut producers: Vec<StoredProducer> = self
            .entries
            .iter()
            .map(|(id, e)| StoredProducer {
                producer_id: *id,
                epoch: e.epoch,
                recent: e
                    .recent
                    .iter()
                    .map(|r| (r.first_seq, r.last_seq, r.base_offset))
                    .collect(),
                last_used: e.last_used,
                last_timestamp: e.last_timestamp,
                txn_first_offset: e.txn_first_offset.unwrap_or(-1),
                coordinator_epoch: e.coordinator_epoch,
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        let stored = StoredTable {
            offset,
            clock: self.clock,
            producers,
            active_base: active.base,
            active_aborted: active
                .entries
                .iter()
                .map(|t| {
                    (
                        t.producer_id,
                        t.first_offset,
                        t.last_offset,
                        t.last_stable_offset,
                    )
                })
                .collect(),
        };
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&stored)
            .expect("serializing producer state into memory cannot fail");
        rill_storage::checkpoint::seal(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, &payload)
    }

    /// A table from snapshot bytes, with the offset it covers and the active segment's
    /// aborted transactions then; the error says what is wrong.
    pub fn restore(
        max: usize,
        bytes: &[u8],
    ) -> Result<(ProducerTable, i64, ActiveAborted), String> {
        let payload = rill_storage::checkpoint::unseal(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, bytes)?;
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let stored = rkyv::from_bytes::<StoredTable, rkyv::rancor::Error>(&aligned)
            .map_err(|e| e.to_string())?;
        let mut table = ProducerTable::new(max);
        table.clock = stored.clock;
        // Producers with an open transaction first: they may not be left out.
        let mut producers = stored.producers;
        producers.sort_by_key(|p| (p.txn_first_offset < 0, p.producer_id));
        let keep = max.max(producers.iter().filter(|p| p.txn_first_offset >= 0).count());
        for p in producers.into_iter().take(keep) {
            if p.txn_first_offset >= 0 {
                table.ongoing.insert(p.txn_first_offset, p.producer_id);
            }
            table.entries.insert(
                p.producer_id,
                Entry {
                    epoch: p.epoch,
                    recent: p
                        .recent
                        .into_iter()
                        .rev()
                        .take(RECENT_BATCHES)
                        .rev()
                        .map(|(first_seq, last_seq, base_offset)| Recent {
                            first_seq,
                            last_seq,
                            base_offset,
                        })
                        .collect(),
                    last_used: p.last_used,
                    last_timestamp: p.last_timestamp,
                    txn_first_offset: (p.txn_first_offset >= 0).then_some(p.txn_first_offset),
                    coordinator_epoch: p.coordinator_epoch,
                    last_marker: None,
                },
            );
        }
        let active = ActiveAborted {
            base: stored.active_base,
            entries: stored
                .active_aborted
                .into_iter()
                .map(
                    |(producer_id, first_offset, last_offset, last_stable_offset)| AbortedTxn {
                        producer_id,
                        first_offset,
                        last_offset,
                        last_stable_offset,
                    },
                )
                .collect(),
        };
        Ok((table, stored.offset, active))
    }

    /// Forgets everything (a rebuild starts from nothing).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.ongoing.clear();
        self.unreplicated.clear();
        self.verifying.clear();
    }

    /// Makes room for one more producer: evicts the least recently used one without an
    /// open transaction (when every one has one, the table grows: only a follower copying
    /// its leader's log gets here, and the leader refused producers beyond the limit).
    fn make_room(&mut self, producer_id: i64) {
        if self.entries.contains_key(&producer_id) || self.entries.len() < self.max {
            return;
        }
        if let Some((&oldest, _)) = self
            .entries
            .iter()
            .filter(|(_, e)| e.txn_first_offset.is_none())
            .min_by_key(|(_, e)| e.last_used)
        {
            self.entries.remove(&oldest);
        }
    }

    /// Remembers an appended batch (a control batch goes to [`ProducerTable::record_marker`]).
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_id < 0 {
            return;
        }
        self.clock += 1;
        self.make_room(h.producer_id);
        let e = self
            .entries
            .entry(h.producer_id)
            .or_insert_with(|| Entry::new(h.producer_epoch));
        e.bump(h.producer_epoch);
        if h.is_transactional() && e.txn_first_offset.is_none() {
            e.txn_first_offset = Some(base_offset);
            self.ongoing.insert(base_offset, h.producer_id);
            self.verifying.remove(&h.producer_id);
        }
        if e.recent.len() == RECENT_BATCHES {
            e.recent.pop_front();
        }
        e.recent.push_back(Recent {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset,
        });
        e.last_used = self.clock;
        e.last_timestamp = h.max_timestamp;
        e.last_marker = None;
    }

    /// The last offset of each remembered producer's latest batch: the batches the log
    /// cleaner keeps even when compaction empties them, so that the producer's sequence and
    /// epoch stay in the log (a producer evicted from the table is no longer active, as in
    /// Kafka once its id expires). A producer with no data batch of its epoch is named by
    /// its last marker, which holds that epoch (Kafka keeps it too).
    pub fn last_offsets(&self) -> rill_storage::ProducerLastOffsets {
        self.entries
            .iter()
            .filter_map(|(&id, e)| {
                let Some(r) = e.recent.back() else {
                    return e.last_marker.map(|m| (id, m));
                };
                let span = (r.last_seq as i64 - r.first_seq as i64).rem_euclid(i32::MAX as i64 + 1);
                Some((id, r.base_offset + span))
            })
            .collect()
    }

    /// The producers remembered, by id (read-only, for DescribeProducers).
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .entries
            .iter()
            .map(|(&producer_id, e)| ActiveProducer {
                producer_id,
                epoch: e.epoch,
                last_sequence: e.recent.back().map_or(-1, |r| r.last_seq),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Whether an end marker may be written for `m` (Kafka's `appendEndTxnMarker` checks for
    /// a coordinator's marker): not for an epoch older than the producer's, nor from a
    /// coordinator older than the one that wrote its last marker. A marker for a producer
    /// this partition never saw (its transaction wrote elsewhere) is allowed.
    pub fn check_marker(&self, m: &MarkerWrite) -> Result<(), KafkaError> {
        let Some(e) = self.entries.get(&m.producer_id) else {
            return Ok(());
        };
        if m.producer_epoch < e.epoch {
            return Err(KafkaError::new(
                ErrorCode::InvalidProducerEpoch,
                format!(
                    "marker for producer {} at epoch {} is older than its epoch {}",
                    m.producer_id, m.producer_epoch, e.epoch
                ),
            ));
        }
        if m.coordinator_epoch < e.coordinator_epoch {
            return Err(KafkaError::new(
                ErrorCode::TransactionCoordinatorFenced,
                format!(
                    "marker for producer {} from coordinator epoch {} is older than the epoch \
                     {} of its last marker",
                    m.producer_id, m.coordinator_epoch, e.coordinator_epoch
                ),
            ));
        }
        Ok(())
    }

    /// Records an end marker appended at `offset`; returns the transaction it closed (none
    /// when the producer had no open transaction here: a retried marker, or a transaction
    /// that wrote nothing to this partition).
    pub fn record_marker(&mut self, m: &MarkerWrite, offset: i64) -> Option<CompletedTxn> {
        self.clock += 1;
        self.make_room(m.producer_id);
        let e = self
            .entries
            .entry(m.producer_id)
            .or_insert_with(|| Entry::new(m.producer_epoch));
        e.bump(m.producer_epoch);
        e.coordinator_epoch = m.coordinator_epoch;
        e.last_used = self.clock;
        e.last_marker = Some(offset);
        // The transaction a verification saw may be the one this marker ends.
        self.verifying.remove(&m.producer_id);
        let first_offset = e.txn_first_offset.take()?;
        self.ongoing.remove(&first_offset);
        // Kafka's lastStableOffset(completedTxn): the earliest open transaction of another
        // producer (this one's is gone from `ongoing` already), else past the marker.
        let last_stable_offset = self.ongoing.keys().next().copied().unwrap_or(offset + 1);
        self.unreplicated.insert(first_offset, offset);
        Some(CompletedTxn {
            producer_id: m.producer_id,
            first_offset,
            last_offset: offset,
            aborted: !m.commit,
            last_stable_offset,
        })
    }

    /// The first offset a read_committed reader may not pass on account of transactions:
    /// the first offset of the earliest open transaction or of a completed one whose marker
    /// is not yet below the high watermark `hw` (those are forgotten here).
    pub fn first_unstable_offset(&mut self, hw: i64) -> Option<i64> {
        self.unreplicated.retain(|_, marker| *marker >= hw);
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The last stable offset at high watermark `hw`: read_committed consumers read below it.
    pub fn last_stable_offset(&mut self, hw: i64) -> i64 {
        self.first_unstable_offset(hw).map_or(hw, |f| f.min(hw))
    }
}

fn out_of_order(h: &BatchHeader, expected: i32) -> KafkaError {
    KafkaError::new(
        ErrorCode::OutOfOrderSequenceNumber,
        format!(
            "producer {} sent sequence {} but {} was expected",
            h.producer_id, h.base_sequence, expected
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: count,
        }
    }

    fn txn_header(producer_id: i64, epoch: i16, base_sequence: i32, count: i32) -> BatchHeader {
        BatchHeader {
            attributes: 0x10,
            ..header(producer_id, epoch, base_sequence, count)
        }
    }

    fn marker(
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> MarkerWrite {
        MarkerWrite {
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
        }
    }

    #[test]
    fn a_transaction_holds_the_stable_offset_until_its_marker_is_below_the_high_watermark() {
        let mut t = ProducerTable::new(10);
        assert_eq!(t.last_stable_offset(5), 5);
        t.record(&txn_header(7, 0, 0, 2), 10); // 10..=11
        t.record(&txn_header(7, 0, 2, 3), 12); // 12..=14
        assert_eq!(t.last_stable_offset(15), 10);
        assert_eq!(t.active()[0].current_txn_start_offset, 10);
        let done = t.record_marker(&marker(7, 0, 3, true), 15).unwrap();
        assert_eq!(
            done,
            CompletedTxn {
                producer_id: 7,
                first_offset: 10,
                last_offset: 15,
                aborted: false,
                last_stable_offset: 16,
            }
        );
        assert_eq!(t.active()[0].current_txn_start_offset, -1);
        assert_eq!(t.active()[0].coordinator_epoch, 3);
        // The marker is not replicated yet: its transaction still holds readers back.
        assert_eq!(t.last_stable_offset(15), 10);
        assert_eq!(t.last_stable_offset(16), 16);
        // Once past, it is forgotten even if the high watermark is asked about lower.
        assert_eq!(t.last_stable_offset(12), 12);
        // A second marker (a coordinator's retry) closes nothing.
        assert_eq!(t.record_marker(&marker(7, 0, 3, true), 16), None);
    }

    #[test]
    fn a_verification_guard_lasts_until_a_marker_of_its_producer() {
        let mut t = ProducerTable::new(2);
        // No open transaction: a guard is needed, and a second ask joins it.
        let Verification::Needed(g) = t.verification(7, 0) else {
            panic!("a producer with no open transaction needs a verification");
        };
        assert_eq!(t.verification(7, 0), Verification::Needed(g));
        assert!(!t.guard_holds(g), "not verified yet");
        t.mark_verified(g);
        assert!(t.guard_holds(g));
        assert_eq!(t.verification(7, 0), Verification::Verified(g));
        // The transaction ended before the verified batch got its turn: the guard is gone.
        t.record_marker(&marker(7, 0, 0, false), 5);
        assert!(!t.guard_holds(g));
        let Verification::Needed(g2) = t.verification(7, 0) else {
            panic!("after a marker the producer is asked about again");
        };
        assert_ne!(g2.id, g.id);
        t.mark_verified(g);
        assert!(
            !t.guard_holds(g2),
            "an old guard's answer does not verify a new one"
        );
        t.mark_verified(g2);
        t.record(&txn_header(7, 0, 0, 1), 6);
        // Open now: later batches need nothing, and the guard still lets its batch in.
        assert_eq!(t.verification(7, 0), Verification::NotNeeded);
        assert!(t.guard_holds(g2));
        // Another epoch is another transaction.
        let Verification::Needed(old) = t.verification(7, 1) else {
            panic!("a new epoch needs its own verification");
        };
        // Bounded (2 here): a third guard evicts the oldest.
        let Verification::Needed(a) = t.verification(8, 0) else {
            panic!()
        };
        let Verification::Needed(b) = t.verification(9, 0) else {
            panic!()
        };
        for g in [old, a, b] {
            t.mark_verified(g);
        }
        assert!(!t.guard_holds(old) && t.guard_holds(a) && t.guard_holds(b));
        assert_eq!(t.verifying.len(), 2);
    }

    #[test]
    fn an_abort_records_the_earliest_open_transaction_of_another_producer() {
        let mut t = ProducerTable::new(10);
        t.record(&txn_header(1, 0, 0, 1), 100);
        t.record(&txn_header(2, 0, 0, 1), 101);
        t.record(&txn_header(3, 0, 0, 1), 102);
        let a = t.record_marker(&marker(2, 0, 0, false), 103).unwrap();
        assert!(a.aborted);
        assert_eq!((a.first_offset, a.last_stable_offset), (101, 100));
        let b = t.record_marker(&marker(1, 0, 0, false), 104).unwrap();
        assert_eq!((b.first_offset, b.last_stable_offset), (100, 102));
        let c = t.record_marker(&marker(3, 0, 0, false), 105).unwrap();
        assert_eq!((c.first_offset, c.last_stable_offset), (102, 106));
        assert_eq!(t.last_stable_offset(200), 200);
    }

    #[test]
    fn markers_from_old_epochs_and_old_coordinators_are_refused() {
        let mut t = ProducerTable::new(10);
        // A producer this partition never saw: its marker is fine.
        assert!(t.check_marker(&marker(9, 0, 0, true)).is_ok());
        t.record(&txn_header(7, 2, 0, 1), 0);
        t.record_marker(&marker(7, 2, 5, false), 1);
        assert_eq!(
            t.check_marker(&marker(7, 1, 5, true)).unwrap_err().code,
            ErrorCode::InvalidProducerEpoch
        );
        assert_eq!(
            t.check_marker(&marker(7, 2, 4, true)).unwrap_err().code,
            ErrorCode::TransactionCoordinatorFenced
        );
        assert!(t.check_marker(&marker(7, 3, 5, true)).is_ok());
        // A marker at a newer epoch starts the producer over.
        t.record_marker(&marker(7, 3, 6, true), 2);
        assert_eq!(
            t.check(&txn_header(7, 2, 1, 1)).unwrap_err().code,
            ErrorCode::InvalidProducerEpoch
        );
    }

    #[test]
    fn a_plain_batch_inside_an_open_transaction_is_refused() {
        let mut t = ProducerTable::new(10);
        t.record(&txn_header(7, 0, 0, 1), 0);
        assert_eq!(
            t.check(&header(7, 0, 1, 1)).unwrap_err().code,
            ErrorCode::InvalidTxnState
        );
        assert_eq!(t.check(&txn_header(7, 0, 1, 1)).unwrap(), Check::Append);
        t.record_marker(&marker(7, 0, 0, true), 1);
        assert_eq!(t.check(&header(7, 0, 1, 1)).unwrap(), Check::Append);
    }

    #[test]
    fn producers_with_open_transactions_are_never_evicted_and_survive_a_snapshot() {
        let mut t = ProducerTable::new(2);
        t.record(&txn_header(1, 0, 0, 1), 0);
        t.record(&txn_header(2, 0, 0, 1), 1);
        assert_eq!(
            t.check(&header(3, 0, 0, 1)).unwrap_err().code,
            ErrorCode::ConcurrentTransactions
        );
        t.record_marker(&marker(1, 0, 4, true), 2);
        assert_eq!(t.check(&header(3, 0, 0, 1)).unwrap(), Check::Append);
        t.record(&header(3, 0, 0, 1), 3);
        let ids: Vec<i64> = t.active().iter().map(|p| p.producer_id).collect();
        assert_eq!(
            ids,
            vec![2, 3],
            "the producer without an open transaction went"
        );
        let active = ActiveAborted {
            base: 2,
            entries: vec![AbortedTxn {
                producer_id: 9,
                first_offset: 1,
                last_offset: 3,
                last_stable_offset: 1,
            }],
        };
        let (mut back, offset, active_back) =
            ProducerTable::restore(2, &t.snapshot(4, &active)).unwrap();
        assert_eq!((offset, &active_back), (4, &active));
        assert_eq!(back.last_stable_offset(4), 1);
        let p2 = back.active()[0];
        assert_eq!((p2.producer_id, p2.current_txn_start_offset), (2, 1));
        let done = back.record_marker(&marker(2, 0, 4, false), 4).unwrap();
        assert_eq!(done.first_offset, 1);
        // Kafka's DescribeProducers coordinator epoch of producer 1 went with it.
        assert_eq!(
            back.active()
                .iter()
                .find(|p| p.producer_id == 2)
                .unwrap()
                .coordinator_epoch,
            4
        );
    }

    #[test]
    fn retries_are_answered_with_the_original_offset() {
        let mut t = ProducerTable::new(10);
        let a = header(7, 0, 0, 3);
        assert_eq!(t.check(&a).unwrap(), Check::Append);
        t.record(&a, 100);
        let b = header(7, 0, 3, 2);
        assert_eq!(t.check(&b).unwrap(), Check::Append);
        t.record(&b, 103);
        assert_eq!(t.check(&a).unwrap(), Check::Duplicate { base_offset: 100 });
        assert_eq!(t.check(&b).unwrap(), Check::Duplicate { base_offset: 103 });
    }

    #[test]
    fn gaps_old_epochs_and_overlaps_are_refused() {
        let mut t = ProducerTable::new(10);
        let a = header(7, 1, 0, 3);
        t.record(&a, 0);
        assert_eq!(
            t.check(&header(7, 1, 5, 1)).unwrap_err().code,
            ErrorCode::OutOfOrderSequenceNumber
        );
        assert_eq!(
            t.check(&header(7, 0, 3, 1)).unwrap_err().code,
            ErrorCode::InvalidProducerEpoch
        );
        assert_eq!(
            t.check(&header(7, 1, 1, 1)).unwrap_err().code,
            ErrorCode::DuplicateSequenceNumber
        );
        // A new epoch starts again at 0.
        assert_eq!(t.check(&header(7, 2, 0, 1)).unwrap(), Check::Append);
        assert!(t.check(&header(7, 2, 4, 1)).is_err());
        // Unknown producers and plain batches append.
        assert_eq!(t.check(&header(8, 0, 42, 1)).unwrap(), Check::Append);
        assert_eq!(t.check(&header(-1, -1, -1, 1)).unwrap(), Check::Append);
    }

    #[test]
    fn a_snapshot_restores_the_table_and_rejects_damage() {
        let mut t = ProducerTable::new(10);
        t.record(&header(7, 1, 0, 3), 100);
        t.record(&header(7, 1, 3, 2), 103);
        t.record(&header(9, 0, 0, 1), 105);
        let bytes = t.snapshot(106, &ActiveAborted::default());
        let (back, offset, _) = ProducerTable::restore(10, &bytes).unwrap();
        assert_eq!(offset, 106);
        assert_eq!(
            back.check(&header(7, 1, 3, 2)).unwrap(),
            Check::Duplicate { base_offset: 103 }
        );
        assert_eq!(back.check(&header(9, 0, 1, 1)).unwrap(), Check::Append);
        assert_eq!(
            back.check(&header(7, 0, 5, 1)).unwrap_err().code,
            ErrorCode::InvalidProducerEpoch
        );
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x10;
        assert!(ProducerTable::restore(10, &bad).is_err());
    }

    #[test]
    fn sequences_wrap_and_the_table_is_bounded() {
        let mut t = ProducerTable::new(2);
        let a = header(1, 0, i32::MAX - 1, 2);
        t.record(&a, 0);
        assert_eq!(t.check(&header(1, 0, 0, 1)).unwrap(), Check::Append);
        t.record(&header(2, 0, 0, 1), 2);
        t.record(&header(3, 0, 0, 1), 3);
        assert_eq!(t.entries.len(), 2);
        let ids: Vec<i64> = t.active().iter().map(|p| p.producer_id).collect();
        assert_eq!(ids, vec![2, 3]);
        assert!(
            !t.entries.contains_key(&1),
            "least recently used producer evicted"
        );
    }

    #[test]
    fn last_offsets_name_each_producers_latest_batch_across_a_sequence_wrap() {
        let mut t = ProducerTable::new(10);
        t.record(&header(1, 0, 0, 3), 10); // offsets 10..=12
        t.record(&header(1, 0, 3, 2), 20); // 20..=21: the latest
        t.record(&header(2, 0, i32::MAX - 1, 4), 30); // sequences wrap: 30..=33
        t.record(&header(3, 1, 5, 1), 40);
        t.record(&header(3, 2, 0, 2), 50); // a new epoch starts over: 50..=51
        let mut last: Vec<(i64, i64)> = t.last_offsets().into_iter().collect();
        last.sort();
        assert_eq!(last, vec![(1, 21), (2, 33), (3, 51)]);
        // A marker that bumps producer 3's epoch leaves no data batch of the new epoch: the
        // marker is its last record, until a batch of that epoch comes.
        let bump = |commit| MarkerWrite {
            producer_id: 3,
            producer_epoch: 3,
            coordinator_epoch: 0,
            commit,
        };
        t.record_marker(&bump(false), 60);
        assert_eq!(t.last_offsets().get(&3), Some(&60));
        t.record(&header(3, 3, 0, 1), 61);
        assert_eq!(t.last_offsets().get(&3), Some(&61));
        // A marker of the same epoch after data leaves the data batch the last.
        t.record_marker(&bump(true), 62);
        assert_eq!(t.last_offsets().get(&3), Some(&61));
    }
}
