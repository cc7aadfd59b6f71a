//! One consumer's logic, without I/O: [`ConsumerCore`] builds Fetch requests for its
//! partitions and turns answers into end-to-end latencies (now minus the intended send time
//! in each record's stamp), consumed counts and error counts.
//!
//! Partitions come from an [`Assignment`] the load generator makes itself (round-robin over
//! the consumers, like `assign()` calls), or, with `--group`, from the consumer group
//! (`crate::group`): the fetch loop only needs the partitions and their starting offsets,
//! whoever decides them; a group member runs one `ConsumerCore` per generation.
//! A `ConsumerCore` belongs to the one task that fetches for it.

use bytes::Bytes;
use rill_net::client::decode_record_batches;
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;

use crate::batch::{scan_uncompressed, Scan};
use crate::payload::Stamp;
use crate::schedule::Nanos;
use crate::stats::{ErrorKind, PartitionCounters, Recorder};

/// Where a consumer's partitions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Partitions chosen by the load generator (`assign()`); no group coordinator involved.
    Assigned(Vec<i32>),
}

impl Assignment {
    /// The partitions this consumer reads.
    pub fn partitions(&self) -> &[i32] {
        match self {
            Assignment::Assigned(p) => p,
        }
    }
}

/// Splits `partitions` over `consumers` round-robin; with more consumers than partitions
/// the extra consumers get nothing (as in a consumer group).
pub fn assign_round_robin(partitions: i32, consumers: usize) -> Vec<Assignment> {
    let mut out = vec![Vec::new(); consumers];
    if consumers == 0 {
        return Vec::new();
    }
    for p in 0..partitions {
        out[p as usize % consumers].push(p);
    }
    out.into_iter().map(Assignment::Assigned).collect()
}

/// Fetch sizing and waiting.
#[derive(Debug, Clone, Copy)]
pub struct FetchSettings {
    /// Longest the broker holds a fetch waiting for data.
    pub max_wait_ms: i32,
    /// Largest response asked for.
    pub max_bytes: i32,
    /// Largest share of one partition.
    pub partition_max_bytes: i32,
    /// Kafka's isolation level: 0 read_uncommitted, 1 read_committed.
    pub isolation_level: i8,
}

#[derive(Debug, Clone)]
struct PartitionState {
    partition: i32,
    next_offset: i64,
}

/// Kafka's OFFSET_OUT_OF_RANGE error code.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// What one fetch answer amounted to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// Records of this run consumed.
    pub records: u64,
    /// Partition answers with an error code (the caller backs off before fetching again).
    pub errors: u64,
}

/// The state of one consumer's fetching from one broker.
#[derive(Debug)]
pub struct ConsumerCore {
    topic: TopicName,
    run_tag: u32,
    settings: FetchSettings,
    parts: Vec<PartitionState>,
}

impl ConsumerCore {
    /// A consumer of `partitions` (with the offsets to start at) of `topic`, counting the
    /// records stamped with `run_tag`.
    pub fn new(
        topic: &str,
        run_tag: u32,
        settings: FetchSettings,
        partitions: &[(i32, i64)],
    ) -> ConsumerCore {
        ConsumerCore {
            topic: TopicName(StrBytes::from_string(topic.to_string())),
            run_tag,
            settings,
            parts: partitions
                .iter()
                .map(|&(partition, next_offset)| PartitionState {
                    partition,
                    next_offset,
                })
                .collect(),
        }
    }

    /// The partitions read and the next offset of each.
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.parts
            .iter()
            .map(|p| (p.partition, p.next_offset))
            .collect()
    }

    /// The next Fetch request (sessionless: every partition every time).
    pub fn fetch_request(&self) -> FetchRequest {
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.settings.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(self.settings.max_bytes)
            .with_isolation_level(self.settings.isolation_level)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(self.topic.clone())
                .with_partitions(
                    self.parts
                        .iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p.partition)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(p.next_offset)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(self.settings.partition_max_bytes)
                        })
                        .collect(),
                )])
    }

    /// Handles an answer received at `now`. Records below a partition's next offset (a
    /// batch starts before the offset asked for) are skipped; records without this run's
    /// stamp are counted as foreign. Undecodable record data is an error for the caller.
    pub fn on_response(
        &mut self,
        response: &FetchResponse,
        now: Nanos,
        stats: &mut Recorder,
    ) -> Result<FetchOutcome, String> {
        let mut outcome = FetchOutcome::default();
        if response.error_code != 0 {
            stats.error(ErrorKind::Fetch(response.error_code), 1);
            outcome.errors += 1;
            return Ok(outcome);
        }
        for topic in &response.responses {
            for data in &topic.partitions {
                let Some(state) = self
                    .parts
                    .iter_mut()
                    .find(|p| p.partition == data.partition_index)
                else {
                    continue;
                };
                if data.error_code == OFFSET_OUT_OF_RANGE
                    && data.log_start_offset > state.next_offset
                {
                    // Retention deleted what this consumer had not read yet: go on from
                    // the log start, as auto.offset.reset=earliest does, and count the gap.
                    stats.error(ErrorKind::Fetch(data.error_code), 1);
                    stats.skipped(
                        state.partition as usize,
                        (data.log_start_offset - state.next_offset) as u64,
                    );
                    state.next_offset = data.log_start_offset;
                    continue;
                }
                if data.error_code != 0 {
                    stats.error(ErrorKind::Fetch(data.error_code), 1);
                    outcome.errors += 1;
                    continue;
                }
                let Some(records) = &data.records else {
                    continue;
                };
                outcome.records += consume(state, records, self.run_tag, now, stats)?;
            }
        }
        Ok(outcome)
    }

    /// Whether every partition has been read (or lost to retention) up to what producers
    /// had acknowledged.
    pub fn caught_up(&self, counters: &PartitionCounters) -> bool {
        self.parts.iter().all(|p| {
            let i = p.partition as usize;
            counters.consumed(i) + counters.skipped(i) >= counters.acked(i)
        })
    }

    /// Records acknowledged but not (yet) consumed, over this consumer's partitions.
    pub fn missing(&self, counters: &PartitionCounters) -> u64 {
        self.parts
            .iter()
            .map(|p| {
                let i = p.partition as usize;
                counters
                    .acked(i)
                    .saturating_sub(counters.consumed(i) + counters.skipped(i))
            })
            .sum()
    }
}

fn consume(
    state: &mut PartitionState,
    records: &Bytes,
    run_tag: u32,
    now: Nanos,
    stats: &mut Recorder,
) -> Result<u64, String> {
    let partition = state.partition;
    let mut mine = 0;
    let mut foreign = 0;
    let mut handle = |offset: i64, key: Option<&[u8]>, value: Option<&[u8]>| {
        if offset < state.next_offset {
            return;
        }
        state.next_offset = offset + 1;
        match value.and_then(Stamp::read) {
            Some(s) if s.run_tag == run_tag => {
                let bytes = value.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len);
                stats.consumed(partition as usize, s.intended_ns, bytes as u64, now);
                mine += 1;
            }
            _ => foreign += 1,
        }
    };
    let bad = |e: String| format!("partition {partition}: {e}");
    // Uncompressed batches are scanned in place; from the first compressed one on,
    // rill-net decodes (and decompresses).
    let scan = scan_uncompressed(records, |r| handle(r.offset, r.key, r.value)).map_err(bad)?;
    if let Scan::CompressedAt(at) = scan {
        let rest = records.slice(at..);
        for r in decode_record_batches(&rest).map_err(|e| bad(e.to_string()))? {
            handle(r.offset, r.key.as_deref(), r.value.as_deref());
        }
    }
    stats.foreign(foreign);
    Ok(mine)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
    use rill_net::kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, PartitionData,
    };

    use super::*;

    #[test]
    fn round_robin_assignment() {
        let a = assign_round_robin(5, 2);
        assert_eq!(a[0].partitions(), &[0, 2, 4]);
        assert_eq!(a[1].partitions(), &[1, 3]);
        let a = assign_round_robin(1, 3);
        assert_eq!(a[2].partitions(), &[] as &[i32]);
    }

    fn stamped(tag: u32, intended_ns: u64) -> ProduceRecord {
        let mut v = vec![0u8; 40];
        Stamp {
            run_tag: tag,
            producer: 0,
            sequence: 0,
            intended_ns,
        }
        .write(&mut v);
        ProduceRecord {
            value: Some(Bytes::from(v)),
            ..Default::default()
        }
    }

    /// A consumer of topic "t" (2 partitions) reading `from` (partition, offset), its
    /// counters and its recorder.
    fn consumer(from: &[(i32, i64)]) -> (Arc<PartitionCounters>, Recorder, ConsumerCore) {
        let counters = Arc::new(PartitionCounters::new(2));
        let stats = Recorder::new(0, Nanos::MAX, counters.clone());
        let settings = FetchSettings {
            max_wait_ms: 100,
            max_bytes: 1 << 20,
            partition_max_bytes: 1 << 20,
            isolation_level: 0,
        };
        (counters, stats, ConsumerCore::new("t", 7, settings, from))
    }

    #[test]
    fn fetches_at_the_isolation_level_asked_for() {
        let (_, _, c) = consumer(&[(0, 0)]);
        assert_eq!(c.fetch_request().isolation_level, 0);
        let settings = FetchSettings {
            isolation_level: 1,
            ..c.settings
        };
        let committed = ConsumerCore::new("t", 7, settings, &[(0, 0)]);
        assert_eq!(committed.fetch_request().isolation_level, 1);
    }

    #[test]
    fn counts_latency_from_the_stamp_and_skips_what_was_read() {
        let (counters, mut stats, mut c) = consumer(&[(1, 101)]);
        let req = c.fetch_request();
        assert_eq!(req.topics[0].partitions[0].fetch_offset, 101);
        // A batch at base offset 100 (offsets 100..=103): one before our position, one
        // foreign record, two of ours.
        let records = vec![
            stamped(7, 1_000_000),
            stamped(7, 2_000_000),
            stamped(99, 0),
            stamped(7, 3_000_000),
        ];
        let mut batch = encode_record_batch(&records, &BatchOptions::default())
            .unwrap()
            .to_vec();
        batch[..8].copy_from_slice(&100i64.to_be_bytes());
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_partitions(vec![
                    PartitionData::default()
                        .with_partition_index(1)
                        .with_records(Some(Bytes::from(batch))),
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_error_code(3),
                ])]);
        let out = c.on_response(&response, 10_000_000, &mut stats).unwrap();
        assert_eq!(
            out,
            FetchOutcome {
                records: 2,
                errors: 0
            }
        );
        assert_eq!(c.positions(), vec![(1, 104)]);
        assert_eq!(stats.totals.consumed_records, 2);
        assert_eq!(stats.totals.foreign_records, 1);
        // 10 ms - 2 ms and 10 ms - 3 ms.
        assert!(stats.e2e.equivalent(stats.e2e.max(), 8_000));
        assert!(stats.e2e.equivalent(stats.e2e.min(), 7_000));
        assert_eq!(counters.consumed(1), 2);
        assert!(c.caught_up(&counters));
        assert_eq!(c.missing(&counters), 0);
        // A compressed batch after an uncompressed one: scanned, then decoded by rill-net.
        #[cfg(feature = "gzip")]
        {
            let plain =
                encode_record_batch(&[stamped(7, 4_000_000)], &BatchOptions::default()).unwrap();
            let mut data = plain.to_vec();
            data[..8].copy_from_slice(&104i64.to_be_bytes());
            let gz = encode_record_batch(
                &[stamped(7, 5_000_000), stamped(7, 6_000_000)],
                &BatchOptions {
                    compression: rill_net::kafka_protocol::records::Compression::Gzip,
                    ..BatchOptions::default()
                },
            )
            .unwrap();
            let mut gz = gz.to_vec();
            gz[..8].copy_from_slice(&105i64.to_be_bytes());
            data.extend_from_slice(&gz);
            let response =
                FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(1)
                        .with_records(Some(Bytes::from(data)))])]);
            let out = c.on_response(&response, 10_000_000, &mut stats).unwrap();
            assert_eq!(out.records, 3);
            assert_eq!(c.positions(), vec![(1, 107)]);
            assert_eq!(stats.totals.consumed_records, 5);
        }
        let err = FetchResponse::default().with_error_code(15);
        let out = c.on_response(&err, 0, &mut stats).unwrap();
        assert_eq!(out.errors, 1);
        assert_eq!(stats.errors["fetch COORDINATOR_NOT_AVAILABLE (15)"], 1);
    }

    #[test]
    fn retention_overtaking_the_consumer_moves_it_to_the_log_start_and_counts_the_gap() {
        let (counters, mut stats, mut c) = consumer(&[(0, 10), (1, 50)]);
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_partitions(vec![
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_error_code(OFFSET_OUT_OF_RANGE)
                        .with_log_start_offset(250),
                    // Out of range at the other end (past the log end): not a gap.
                    PartitionData::default()
                        .with_partition_index(1)
                        .with_error_code(OFFSET_OUT_OF_RANGE)
                        .with_log_start_offset(0),
                ])]);
        let out = c.on_response(&response, 0, &mut stats).unwrap();
        assert_eq!(out.errors, 1, "only the unexplained out-of-range backs off");
        assert_eq!(c.positions(), vec![(0, 250), (1, 50)]);
        assert_eq!(counters.skipped(0), 240);
        assert_eq!(counters.skipped(1), 0);
        assert_eq!(
            stats.errors["records deleted by retention before consumed"],
            240
        );
        assert_eq!(stats.errors["fetch OFFSET_OUT_OF_RANGE (1)"], 2);
    }
}
