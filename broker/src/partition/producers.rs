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

use std::collections::{HashMap, VecDeque};

use rill_net::ErrorCode;
use rill_storage::batch::BatchHeader;
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
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
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
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"RILP";
/// 2: each producer's last timestamp (DescribeProducers); a version-1 file is replayed.
const SNAPSHOT_VERSION: u32 = 2;
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
}

#[derive(Archive, Serialize, Deserialize, Debug, PartialEq, Eq)]
struct StoredTable {
    /// The table holds every batch below this offset.
    offset: i64,
    clock: u64,
    producers: Vec<StoredProducer>,
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
        }
    }

    /// Decides what to do with a batch (batches without a producer id always append).
    pub fn check(&self, h: &BatchHeader) -> Result<Check, KafkaError> {
        if h.producer_id < 0 {
            return Ok(Check::Append);
        }
        let Some(e) = self.entries.get(&h.producer_id) else {
            return Ok(Check::Append);
        };
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

    /// The table as a snapshot file's bytes, covering every batch below `offset`.
    pub fn snapshot(&self, offset: i64) -> Vec<u8> {
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
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        let stored = StoredTable {
            offset,
            clock: self.clock,
            producers,
        };
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&stored)
            .expect("serializing producer state into memory cannot fail");
        rill_storage::checkpoint::seal(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, &payload)
    }

    /// A table from snapshot bytes, with the offset it covers; the error says what is wrong.
    pub fn restore(max: usize, bytes: &[u8]) -> Result<(ProducerTable, i64), String> {
        let payload = rill_storage::checkpoint::unseal(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, bytes)?;
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let stored = rkyv::from_bytes::<StoredTable, rkyv::rancor::Error>(&aligned)
            .map_err(|e| e.to_string())?;
        let mut table = ProducerTable::new(max);
        table.clock = stored.clock;
        for p in stored.producers.into_iter().take(max) {
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
                },
            );
        }
        Ok((table, stored.offset))
    }

    /// Forgets everything (a rebuild starts from nothing).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Remembers an appended batch.
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_id < 0 {
            return;
        }
        self.clock += 1;
        if !self.entries.contains_key(&h.producer_id) && self.entries.len() >= self.max {
            if let Some((&oldest, _)) = self.entries.iter().min_by_key(|(_, e)| e.last_used) {
                self.entries.remove(&oldest);
            }
        }
        let e = self.entries.entry(h.producer_id).or_insert_with(|| Entry {
            epoch: h.producer_epoch,
            recent: VecDeque::with_capacity(RECENT_BATCHES),
            last_used: 0,
            last_timestamp: -1,
        });
        if h.producer_epoch > e.epoch {
            e.epoch = h.producer_epoch;
            e.recent.clear();
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
    }

    /// The last offset of each remembered producer's latest batch: the batches the log
    /// cleaner keeps even when compaction empties them, so that the producer's sequence and
    /// epoch stay in the log (a producer evicted from the table is no longer active, as in
    /// Kafka once its id expires).
    pub fn last_offsets(&self) -> rill_storage::ProducerLastOffsets {
        self.entries
            .iter()
            .filter_map(|(&id, e)| {
                let r = e.recent.back()?;
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
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
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
        let bytes = t.snapshot(106);
        let (back, offset) = ProducerTable::restore(10, &bytes).unwrap();
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
    }
}
