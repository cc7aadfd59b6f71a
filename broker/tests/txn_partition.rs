//! Transactions in a partition, without a coordinator yet (issue 17, increment 2): a raw
//! client writes transactional batches (Produce with a transactional id) and ends them
//! with WriteTxnMarkers, as a coordinator or `kafka-transactions.sh abort` does. A
//! read_committed Fetch stops at the last stable offset and lists the aborted
//! transactions across segment rolls; librdkafka's read_committed consumer sees exactly
//! the committed records and a read_uncommitted one sees all; ListOffsets honours the
//! isolation level; markers from an old producer epoch or an old coordinator are fenced;
//! and all of it is the same after kill -9 and after a clean restart.

mod common;

use bytes::Bytes;
use common::*;
use rdkafka::Offset;
use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
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

const TOPIC: &str = "txn";

fn code_of(code: i16) -> ErrorCode {
    ErrorCode::from_code(code).unwrap_or_else(|| panic!("unknown error code {code}"))
}

/// A producer's identity and next sequence.
struct Producer {
    id: i64,
    epoch: i16,
    seq: i32,
}

fn init_producer(net: &mut NetClient) -> Producer {
    let init = net.send(
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

fn records(values: &[String]) -> Vec<ProduceRecord> {
    values
        .iter()
        .map(|v| ProduceRecord {
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Vec::new(),
            timestamp_ms: now_ms(),
        })
        .collect()
}

/// Produces `values` as one batch of `p` (transactional or not, with or without the
/// request's transactional id); returns (error, base offset).
fn produce(
    net: &mut NetClient,
    p: &mut Producer,
    values: &[String],
    transactional: bool,
    transactional_id: Option<&str>,
) -> (ErrorCode, i64) {
    let batch = encode_record_batch(
        &records(values),
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
            .with_name(topic_name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response = net.send(&request);
    let part = &response.responses[0].partition_responses[0];
    let code = code_of(part.error_code);
    if code == ErrorCode::None {
        p.seq += values.len() as i32;
    }
    (code, part.base_offset)
}

fn txn_produce(net: &mut NetClient, p: &mut Producer, values: &[String]) -> i64 {
    let (code, offset) = produce(net, p, values, true, Some("raw-txn"));
    assert_eq!(code, ErrorCode::None, "transactional produce of {values:?}");
    offset
}

/// WriteTxnMarkers for partition 0; the partition's error.
fn marker(net: &mut NetClient, p: &Producer, commit: bool, coordinator_epoch: i32) -> ErrorCode {
    let response = net.send(&WriteTxnMarkersRequest::default().with_markers(
        vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(p.id))
            .with_producer_epoch(p.epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partition_indexes(vec![0])])],
    ));
    let m = &response.markers[0];
    assert_eq!(m.producer_id.0, p.id);
    code_of(m.topics[0].partitions[0].error_code)
}

/// What a Fetch of partition 0 from `offset` at `isolation` answered: high watermark,
/// last stable offset, aborted transactions (producer id, first offset), record values.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    high_watermark: i64,
    last_stable_offset: i64,
    aborted: Option<Vec<(i64, i64)>>,
    values: Vec<String>,
    /// The offset after the last batch returned.
    next: Option<i64>,
}

fn fetch(net: &mut NetClient, offset: i64, isolation: i8) -> Seen {
    let response = net.send(
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(16 << 20)
            .with_isolation_level(isolation)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(TOPIC))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)])]),
    );
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch at isolation {isolation}: {p:?}");
    let records = p.records.clone().unwrap_or_default();
    Seen {
        next: next_offset(&records),
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        aborted: p.aborted_transactions.as_ref().map(|list| {
            list.iter()
                .map(|t| (t.producer_id.0, t.first_offset))
                .collect()
        }),
        values: rill_net::client::decode_record_batches(&records)
            .expect("decode fetched batches")
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect(),
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

/// Fetches from 0 until nothing more comes (a read may stop at a segment's end): what a
/// consumer reading the whole partition at `isolation` is told.
fn fetch_all(net: &mut NetClient, isolation: i8) -> Seen {
    let mut offset = 0;
    let mut all = fetch(net, 0, isolation);
    let mut seen_records = all.values.len();
    while let Some(next) = all.next.filter(|n| *n > offset) {
        offset = next;
        let more = fetch(net, offset, isolation);
        seen_records += more.values.len();
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
    assert_eq!(seen_records, all.values.len());
    all
}

fn latest(net: &mut NetClient, isolation: i8) -> i64 {
    let response = net.send(
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]),
    );
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets: {p:?}");
    p.offset
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    // About 2 KiB each, so a 16 KiB segment rolls every few batches.
    (0..n)
        .map(|i| format!("{prefix}-{i}-{}", "x".repeat(2000)))
        .collect()
}

fn short(vs: &[String]) -> Vec<String> {
    vs.iter()
        .map(|v| v.split('-').take(2).collect::<Vec<_>>().join("-"))
        .collect()
}

/// The transactions of the main test, up to the state checked after each restart.
struct Written {
    committed: Vec<String>,
    all: Vec<String>,
    aborted: Vec<(i64, i64)>,
    last_stable_offset: i64,
}

fn write_transactions(net: &mut NetClient, a: &mut Producer, b: &mut Producer) -> Written {
    let mut committed = Vec::new();
    let mut all = Vec::new();
    // A opens a transaction; a plain record follows it.
    let a1 = values("a1", 2);
    let a1_at = txn_produce(net, a, &a1);
    assert_eq!(a1_at, 0);
    let (code, _) = produce(
        net,
        &mut Producer {
            id: -1,
            epoch: -1,
            seq: -1,
        },
        &values("p", 1),
        false,
        None,
    );
    assert_eq!(code, ErrorCode::None);
    let seen = fetch(net, 0, 1);
    assert_eq!(
        (
            seen.last_stable_offset,
            seen.values.len(),
            seen.aborted.as_deref()
        ),
        (0, 0, Some(&[][..])),
        "an open transaction holds read_committed readers at its first offset"
    );
    assert_eq!(
        fetch(net, 0, 0).values.len(),
        3,
        "read_uncommitted sees it all"
    );
    assert_eq!((latest(net, 1), latest(net, 0)), (0, 3));
    // B opens one, A commits (LSO moves to B's first offset), B aborts.
    let b1 = values("b1", 1);
    let b1_at = txn_produce(net, b, &b1);
    assert_eq!(marker(net, a, true, 0), ErrorCode::None);
    assert_eq!(latest(net, 1), b1_at);
    assert_eq!(marker(net, b, false, 0), ErrorCode::None);
    committed.extend(a1.clone());
    committed.extend(values("p", 1));
    all.extend(a1);
    all.extend(values("p", 1));
    all.extend(b1);
    let mut aborted = vec![(b.id, b1_at)];
    // Over several segments: interleaved transactions, aborted and committed.
    for round in 0..3 {
        let ax = values(&format!("a{}", round + 2), 3);
        let ax_at = txn_produce(net, a, &ax);
        let bx = values(&format!("b{}", round + 2), 2);
        txn_produce(net, b, &bx);
        assert_eq!(marker(net, b, true, 0), ErrorCode::None);
        assert_eq!(marker(net, a, false, 0), ErrorCode::None);
        committed.extend(bx.clone());
        all.extend(ax);
        all.extend(bx);
        aborted.push((a.id, ax_at));
    }
    // A leaves one open.
    let open = values("open", 1);
    let open_at = txn_produce(net, a, &open);
    all.extend(open);
    Written {
        committed,
        all,
        aborted,
        last_stable_offset: open_at,
    }
}

fn check_state(net: &mut NetClient, w: &Written, when: &str) {
    let seen = fetch_all(net, 1);
    assert_eq!(seen.last_stable_offset, w.last_stable_offset, "{when}: LSO");
    assert_eq!(
        latest(net, 1),
        w.last_stable_offset,
        "{when}: ListOffsets read_committed"
    );
    // Kafka returns the aborted transactions of what it read; the client drops their records.
    let mut aborted = seen.aborted.clone().expect("read_committed gets a list");
    aborted.sort();
    let mut want = w.aborted.clone();
    want.sort();
    assert_eq!(aborted, want, "{when}: aborted transactions from offset 0");
    let read_all = fetch_all(net, 0);
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

#[test]
fn read_committed_stops_at_open_transactions_and_drops_aborted_ones_across_restarts() {
    let mut broker = Broker::start("txn-partition");
    broker.create_topic(TOPIC, 1, &[("segment.bytes", "16384")]);
    let mut net = broker.net();
    let mut a = init_producer(&mut net);
    let mut b = init_producer(&mut net);
    let w = write_transactions(&mut net, &mut a, &mut b);
    let segments = std::fs::read_dir(broker.data_dir().join(format!("{TOPIC}-0")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".txnindex")
        })
        .count();
    assert!(
        segments >= 2,
        "aborts went to {segments} closed segments' indexes"
    );
    check_state(&mut net, &w, "written");

    // librdkafka drops the aborted records and stops before the open transaction.
    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    assign(&consumer, TOPIC, &[0], Offset::Beginning);
    let recs = consume_exactly(&consumer, w.committed.len(), OP_TIMEOUT);
    let got: Vec<String> = recs
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        short(&got),
        short(&w.committed),
        "librdkafka read_committed"
    );
    let uncommitted = broker.consumer(&[("isolation.level", "read_uncommitted")]);
    assign(&uncommitted, TOPIC, &[0], Offset::Beginning);
    assert_eq!(
        consume_exactly(&uncommitted, w.all.len(), OP_TIMEOUT).len(),
        w.all.len()
    );

    // Fencing: an older coordinator, an older producer epoch.
    assert_eq!(
        marker(&mut net, &a, true, 5),
        ErrorCode::None,
        "commits the open one"
    );
    assert_eq!(
        marker(&mut net, &a, true, 4),
        ErrorCode::TransactionCoordinatorFenced
    );
    let old = Producer {
        id: a.id,
        epoch: a.epoch,
        seq: 0,
    };
    a.epoch += 1;
    a.seq = 0;
    assert_eq!(
        marker(&mut net, &a, false, 5),
        ErrorCode::None,
        "a newer epoch"
    );
    assert_eq!(
        marker(&mut net, &old, true, 5),
        ErrorCode::InvalidProducerEpoch
    );
    // A transactional batch needs the request's transactional id; a plain batch of a
    // producer inside its transaction is refused.
    let (code, _) = produce(&mut net, &mut a, &values("noid", 1), true, None);
    assert_eq!(code, ErrorCode::TransactionalIdAuthorizationFailed);
    let reopened = txn_produce(&mut net, &mut a, &values("again", 1));
    let (code, _) = produce(&mut net, &mut a, &values("plain", 1), false, None);
    assert_eq!(code, ErrorCode::InvalidTxnState);
    assert_eq!(marker(&mut net, &a, false, 5), ErrorCode::None);
    let mut w = w;
    w.committed.extend(values("open", 1));
    w.all.extend(values("again", 1));
    w.aborted.push((a.id, reopened));
    w.last_stable_offset = broker.watermarks(TOPIC, 0).1;
    check_state(&mut net, &w, "after the fencing checks");

    // The same after kill -9 (the active segment's aborts are only in memory and in the
    // producer snapshot) and after a clean restart.
    let c = b_and_open(&mut net, &mut b, &mut w);
    drop(net);
    broker.kill9();
    broker.restart();
    let mut net = broker.net();
    check_state(&mut net, &w, "after kill -9");
    broker.terminate();
    broker.restart();
    let mut net = broker.net();
    check_state(&mut net, &w, "after a clean restart");
    // The transaction left open before the crash is still open, and can end.
    assert_eq!(marker(&mut net, &c, false, 6), ErrorCode::None);
    w.aborted.push((c.id, w.last_stable_offset));
    w.last_stable_offset = broker.watermarks(TOPIC, 0).1;
    check_state(&mut net, &w, "after ending the transaction left open");
    broker.terminate();
}

/// B aborts one more transaction in the active segment, and a third producer leaves one
/// open across the restarts.
fn b_and_open(net: &mut NetClient, b: &mut Producer, w: &mut Written) -> Producer {
    let bx = values("b-last", 2);
    let at = txn_produce(net, b, &bx);
    assert_eq!(marker(net, b, false, 5), ErrorCode::None);
    w.all.extend(bx);
    w.aborted.push((b.id, at));
    let mut c = init_producer(net);
    let cx = values("c-open", 1);
    let c_at = txn_produce(net, &mut c, &cx);
    w.all.extend(cx);
    w.last_stable_offset = c_at;
    c
}
