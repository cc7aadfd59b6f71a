//! Transactions written by hand to one partition (`txn_*.rs` tests): a raw client produces
//! transactional batches with a transactional id and ends them with WriteTxnMarkers, as a
//! transaction coordinator does, and reads the partition back at either isolation level.

use bytes::Bytes;
use rill_net::client::{decode_record_batches, encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use rill_net::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_net::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use super::{now_ms, topic_name, NetClient};

pub fn code_of(code: i16) -> ErrorCode {
    ErrorCode::from_code(code).unwrap_or_else(|| panic!("unknown error code {code}"))
}

/// InitProducerId for transactional id `id` at `version` naming `expected` (v3+):
/// (error, producer id, epoch).
pub fn init(
    net: &mut NetClient,
    version: i16,
    id: &str,
    timeout_ms: i32,
    expected: (i64, i16),
) -> (ErrorCode, i64, i16) {
    let r = net.send_at(
        version,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.into()))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(expected.0))
            .with_producer_epoch(expected.1),
    );
    (code_of(r.error_code), r.producer_id.0, r.producer_epoch)
}

/// A new producer id or epoch for transactional id `id`, which must be given.
pub fn init_ok(net: &mut NetClient, id: &str) -> (i64, i16) {
    let (code, pid, epoch) = init(net, 4, id, 60_000, (-1, -1));
    assert_eq!(code, ErrorCode::None, "InitProducerId {id}");
    (pid, epoch)
}

/// AddPartitionsToTxn v3 (a producer's own) of `partitions` of `topic` to `p`'s
/// transaction `id`: each partition's code, in the order asked.
pub fn add_partitions(
    net: &mut NetClient,
    id: &str,
    p: &Producer,
    topic: &str,
    partitions: &[i32],
) -> Vec<ErrorCode> {
    use rill_net::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    let r = net.send_at(
        3,
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_v3_and_below_producer_id(ProducerId(p.id))
            .with_v3_and_below_producer_epoch(p.epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions.to_vec())]),
    );
    partitions
        .iter()
        .map(|want| {
            let part = r.results_by_topic_v3_and_below[0]
                .results_by_partition
                .iter()
                .find(|x| x.partition_index == *want)
                .unwrap_or_else(|| panic!("no answer for partition {want}: {r:?}"));
            code_of(part.partition_error_code)
        })
        .collect()
}

/// EndTxn v3 of `p`'s transaction `id`.
pub fn end_txn(net: &mut NetClient, id: &str, p: &Producer, commit: bool) -> ErrorCode {
    end_txn_at(net, 3, id, p, commit).0
}

/// EndTxn v`version` of `p`'s transaction `id`: the error, and the producer id and epoch
/// the answer names (v5, transactions v2: the ones to go on with).
pub fn end_txn_at(
    net: &mut NetClient,
    version: i16,
    id: &str,
    p: &Producer,
    commit: bool,
) -> (ErrorCode, i64, i16) {
    let r = net.send_at(
        version,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_producer_id(ProducerId(p.id))
            .with_producer_epoch(p.epoch)
            .with_committed(commit),
    );
    (code_of(r.error_code), r.producer_id.0, r.producer_epoch)
}

/// Transactional id `id` as DescribeTransactions answers it through `net`.
pub fn describe_txn(
    net: &mut NetClient,
    id: &str,
) -> describe_transactions_response::TransactionState {
    let d = net.send_at(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.into()))]),
    );
    d.transaction_states
        .into_iter()
        .next()
        .expect("one id asked, one answered")
}

/// A producer's identity and next sequence.
#[derive(Debug, Clone, Copy)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub seq: i32,
}

/// What reading the partition at one isolation level answered: high watermark, last stable
/// offset, aborted transactions (producer id, first offset; None when not read_committed),
/// record values, and the offset after the last batch returned.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub aborted: Option<Vec<(i64, i64)>>,
    pub values: Vec<String>,
    pub next: Option<i64>,
}

/// One partition of `topic` (0 unless made with [`TxnPartition::of`]), through one
/// connection to its leader.
pub struct TxnPartition {
    pub net: NetClient,
    pub topic: String,
    pub partition: i32,
}

impl TxnPartition {
    pub fn new(net: NetClient, topic: &str) -> TxnPartition {
        TxnPartition::of(net, topic, 0)
    }

    /// Partition `partition` of `topic` (through its leader's connection `net`).
    pub fn of(net: NetClient, topic: &str, partition: i32) -> TxnPartition {
        TxnPartition {
            net,
            topic: topic.to_string(),
            partition,
        }
    }

    /// A new idempotent producer id (epoch 0).
    pub fn init_producer(&mut self) -> Producer {
        let init = self.net.send(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        );
        assert_eq!(init.error_code, 0, "InitProducerId: {init:?}");
        Producer {
            id: init.producer_id.0,
            epoch: init.producer_epoch,
            seq: 0,
        }
    }

    /// Produces `values` as one batch of `p` (acks=all), transactional or not, with or
    /// without the request's transactional id: (error, base offset). Produce v11, the
    /// classic transaction protocol (from v12, transactions v2, the leader itself adds the
    /// partition to the transaction at its coordinator).
    pub fn produce(
        &mut self,
        p: &mut Producer,
        values: &[String],
        transactional: bool,
        transactional_id: Option<&str>,
    ) -> (ErrorCode, i64) {
        self.produce_at(Some(11), p, values, transactional, transactional_id)
    }

    /// [`TxnPartition::produce`] at Produce `version` (None: the highest both speak).
    pub fn produce_at(
        &mut self,
        version: Option<i16>,
        p: &mut Producer,
        values: &[String],
        transactional: bool,
        transactional_id: Option<&str>,
    ) -> (ErrorCode, i64) {
        let records: Vec<ProduceRecord> = values
            .iter()
            .map(|v| ProduceRecord {
                value: Some(Bytes::from(v.clone())),
                timestamp_ms: now_ms(),
                ..Default::default()
            })
            .collect();
        let batch = encode_record_batch(
            &records,
            &BatchOptions {
                producer_id: p.id,
                producer_epoch: p.epoch,
                base_sequence: p.seq,
                transactional,
                ..BatchOptions::default()
            },
        )
        .expect("encode a batch");
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_transactional_id(
                transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.into()))),
            )
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(self.partition)
                    .with_records(Some(batch))])]);
        let response = match version {
            Some(v) => self.net.send_at(v, &request),
            None => self.net.send(&request),
        };
        let part = &response.responses[0].partition_responses[0];
        let code = code_of(part.error_code);
        if code == ErrorCode::None && p.id >= 0 {
            p.seq += values.len() as i32;
        }
        (code, part.base_offset)
    }

    /// A batch of no producer: (error, base offset).
    pub fn produce_plain(&mut self, values: &[String]) -> (ErrorCode, i64) {
        let mut none = Producer {
            id: -1,
            epoch: -1,
            seq: -1,
        };
        self.produce(&mut none, values, false, None)
    }

    /// A transactional batch of `p` that must be accepted: its base offset.
    pub fn txn_produce(&mut self, p: &mut Producer, values: &[String]) -> i64 {
        self.txn_produce_as(p, values, "raw-txn")
    }

    /// [`TxnPartition::txn_produce`] with transactional id `id`.
    pub fn txn_produce_as(&mut self, p: &mut Producer, values: &[String], id: &str) -> i64 {
        let (code, offset) = self.produce(p, values, true, Some(id));
        assert_eq!(code, ErrorCode::None, "transactional produce");
        offset
    }

    /// WriteTxnMarkers for the partition: the partition's error.
    pub fn marker(&mut self, p: &Producer, commit: bool, coordinator_epoch: i32) -> ErrorCode {
        let response = self
            .net
            .send(&WriteTxnMarkersRequest::default().with_markers(
                vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(p.id))
                .with_producer_epoch(p.epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(topic_name(&self.topic))
                    .with_partition_indexes(vec![self.partition])])],
            ));
        let m = &response.markers[0];
        assert_eq!(m.producer_id.0, p.id);
        code_of(m.topics[0].partitions[0].error_code)
    }

    /// One Fetch of the partition from `offset` at `isolation` (1: read_committed); the
    /// partition's error, or what it returned.
    pub fn try_fetch(&mut self, offset: i64, isolation: i8) -> Result<Seen, ErrorCode> {
        let response = self.net.send(
            &FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(16 << 20)
                .with_isolation_level(isolation)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&self.topic))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(self.partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(8 << 20)])]),
        );
        let p = &response.responses[0].partitions[0];
        if p.error_code != 0 {
            return Err(code_of(p.error_code));
        }
        let records = p.records.clone().unwrap_or_default();
        Ok(Seen {
            high_watermark: p.high_watermark,
            last_stable_offset: p.last_stable_offset,
            aborted: p.aborted_transactions.as_ref().map(|list| {
                list.iter()
                    .map(|t| (t.producer_id.0, t.first_offset))
                    .collect()
            }),
            values: decode_record_batches(&records)
                .expect("decode fetched batches")
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                .collect(),
            next: next_offset(&records),
        })
    }

    /// Reads from 0 until nothing more comes (a read may stop at a segment's end): what a
    /// consumer reading the whole partition at `isolation` is told, aborted transactions
    /// sorted.
    pub fn try_fetch_all(&mut self, isolation: i8) -> Result<Seen, ErrorCode> {
        let mut all = self.try_fetch(0, isolation)?;
        let mut offset = 0;
        while let Some(next) = all.next.filter(|n| *n > offset) {
            offset = next;
            let more = self.try_fetch(offset, isolation)?;
            all.values.extend(more.values);
            if let (Some(list), Some(more)) = (&mut all.aborted, more.aborted) {
                for t in more {
                    if !list.contains(&t) {
                        list.push(t);
                    }
                }
            }
            all.last_stable_offset = more.last_stable_offset;
            all.high_watermark = more.high_watermark;
            all.next = more.next;
        }
        if let Some(list) = &mut all.aborted {
            list.sort();
        }
        Ok(all)
    }

    pub fn fetch_all(&mut self, isolation: i8) -> Seen {
        self.try_fetch_all(isolation)
            .unwrap_or_else(|e| panic!("fetch at isolation {isolation}: {e}"))
    }

    /// Waits (up to 20 s) until the last stable offset reaches the high watermark (an
    /// ended transaction's marker is in and replicated); returns it.
    pub fn settled(&mut self) -> i64 {
        let last = std::cell::Cell::new((0, 0));
        super::wait_until_saying(
            std::time::Duration::from_secs(20),
            || {
                last.set((self.latest(0), self.latest(1)));
                let (hw, lso) = last.get();
                (hw == lso).then_some(hw)
            },
            || {
                format!(
                    "high watermark and last stable offset stayed {:?}",
                    last.get()
                )
            },
        )
    }

    /// ListOffsets latest at `isolation`, retried while a new leader does not know its high
    /// watermark yet (OFFSET_NOT_AVAILABLE, which clients retry).
    pub fn latest(&mut self, isolation: i8) -> i64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match self.try_latest(isolation) {
                Err(ErrorCode::OffsetNotAvailable) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Err(e) => panic!("ListOffsets at isolation {isolation}: {e}"),
                Ok(offset) => return offset,
            }
        }
    }

    fn try_latest(&mut self, isolation: i8) -> Result<i64, ErrorCode> {
        let response = self.net.send(
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(&self.topic))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(self.partition)
                        .with_timestamp(-1)])]),
        );
        let p = &response.topics[0].partitions[0];
        if p.error_code != 0 {
            return Err(code_of(p.error_code));
        }
        Ok(p.offset)
    }
}

/// The offset after the last batch in fetched `records` (control batches included).
fn next_offset(records: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut next = None;
    while at + 27 <= records.len() {
        let base = i64::from_be_bytes(records[at..at + 8].try_into().unwrap());
        let len = i32::from_be_bytes(records[at + 8..at + 12].try_into().unwrap()) as usize;
        let delta = i32::from_be_bytes(records[at + 23..at + 27].try_into().unwrap());
        if at + 12 + len > records.len() {
            break;
        }
        next = Some(base + i64::from(delta) + 1);
        at += 12 + len;
    }
    next
}

/// `n` values of about 2 KiB (a 16 KiB segment rolls every few batches).
pub fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}-{i}-{}", "x".repeat(2000)))
        .collect()
}

/// Values without their padding, for messages.
pub fn short(vs: &[String]) -> Vec<String> {
    vs.iter()
        .map(|v| v.split('-').take(2).collect::<Vec<_>>().join("-"))
        .collect()
}

/// What a series of transactions left in a partition: the committed values (and plain
/// ones), every value, the aborted transactions (sorted) and the last stable offset.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub committed: Vec<String>,
    pub all: Vec<String>,
    pub aborted: Vec<(i64, i64)>,
    pub last_stable_offset: i64,
}

/// Interleaved transactions of `a` and `b` over several 16 KiB segments: committed,
/// aborted, with a plain record among them; `a` leaves the last one open.
pub fn write_transactions(c: &mut TxnPartition, a: &mut Producer, b: &mut Producer) -> Written {
    let mut w = Written::default();
    let a1 = values("a1", 2);
    let a1_at = c.txn_produce(a, &a1);
    let (code, _) = c.produce_plain(&values("p", 1));
    assert_eq!(code, ErrorCode::None);
    let seen = c.fetch_all(1);
    assert_eq!(
        (
            seen.last_stable_offset,
            seen.values.len(),
            seen.aborted.as_deref()
        ),
        (a1_at, 0, Some(&[][..])),
        "an open transaction holds read_committed readers at its first offset"
    );
    assert_eq!(
        c.fetch_all(0).values.len(),
        3,
        "read_uncommitted sees it all"
    );
    assert_eq!((c.latest(1), c.latest(0)), (a1_at, a1_at + 3));
    // B opens one, A commits (the LSO moves to B's first offset), B aborts.
    let b1 = values("b1", 1);
    let b1_at = c.txn_produce(b, &b1);
    assert_eq!(c.marker(a, true, 0), ErrorCode::None);
    assert_eq!(c.latest(1), b1_at);
    assert_eq!(c.marker(b, false, 0), ErrorCode::None);
    w.committed.extend(a1.iter().cloned().chain(values("p", 1)));
    w.all.extend(a1.into_iter().chain(values("p", 1)).chain(b1));
    w.aborted.push((b.id, b1_at));
    for round in 0..3 {
        let ax = values(&format!("a{}", round + 2), 3);
        let ax_at = c.txn_produce(a, &ax);
        let bx = values(&format!("b{}", round + 2), 2);
        c.txn_produce(b, &bx);
        assert_eq!(c.marker(b, true, 0), ErrorCode::None);
        assert_eq!(c.marker(a, false, 0), ErrorCode::None);
        w.committed.extend(bx.clone());
        w.all.extend(ax.into_iter().chain(bx));
        w.aborted.push((a.id, ax_at));
    }
    let open = values("open", 1);
    w.last_stable_offset = c.txn_produce(a, &open);
    w.all.extend(open);
    w.aborted.sort();
    w
}

/// Checks what read_committed and read_uncommitted readers of the whole partition see
/// against `w`.
pub fn check_state(c: &mut TxnPartition, w: &Written, when: &str) {
    let seen = c.fetch_all(1);
    assert_eq!(seen.last_stable_offset, w.last_stable_offset, "{when}: LSO");
    assert_eq!(
        c.latest(1),
        w.last_stable_offset,
        "{when}: ListOffsets read_committed"
    );
    let mut want = w.aborted.clone();
    want.sort();
    assert_eq!(
        seen.aborted.as_deref(),
        Some(&want[..]),
        "{when}: aborted transactions from offset 0"
    );
    let read_all = c.fetch_all(0);
    assert_eq!(
        short(&read_all.values),
        short(&w.all),
        "{when}: read_uncommitted"
    );
    assert_eq!(
        read_all.aborted, None,
        "{when}: read_uncommitted gets no list"
    );
}
