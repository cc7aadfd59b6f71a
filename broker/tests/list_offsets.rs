//! ListOffsets: by timestamp (rdkafka's offsets_for_times), earliest and latest (watermarks
//! and raw -2/-1), max timestamp (raw -3, ListOffsets v7); then DeleteRecords moves the low
//! watermark and everything that reads the log start follows it.

mod common;

use std::time::Duration;

use common::{admin_options, assign, block_on, topic_name, Broker, NetClient, OP_TIMEOUT};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use rill_net::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use rill_net::kafka_protocol::messages::{ApiKey, ListOffsetsRequest};

const TOPIC: &str = "list-offsets";
const RECORDS: i64 = 20;
/// Partition 1's record with the largest timestamp (not the last one).
const MAX_TS_OFFSET: i64 = 13;
/// How far after the base partition 1's largest timestamp is.
const MAX_TS_AFTER_BASE: i64 = 10_000_000;

/// Record `i`'s timestamp in `partition`.
fn ts(base: i64, partition: i32, i: i64) -> i64 {
    if partition == 1 && i == MAX_TS_OFFSET {
        base + MAX_TS_AFTER_BASE
    } else {
        base + i * 1000
    }
}

/// Raw ListOffsets for one partition at `timestamp`: (error, timestamp, offset).
fn list_offset(net: &mut NetClient, partition: i32, timestamp: i64) -> (i16, i64, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let response = net.send(&request);
    let parts: Vec<_> = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .collect();
    assert_eq!(parts.len(), 1, "ListOffsets answered {response:?}");
    (parts[0].error_code, parts[0].timestamp, parts[0].offset)
}

fn offset_for_time(broker: &Broker, partition: i32, timestamp: i64) -> Offset {
    let consumer = broker.consumer(&[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, partition, Offset::Offset(timestamp))
        .expect("add partition");
    let result = consumer
        .offsets_for_times(tpl, OP_TIMEOUT)
        .unwrap_or_else(|e| panic!("offsets_for_times {partition} @ {timestamp}: {e}"));
    let elem = result
        .find_partition(TOPIC, partition)
        .expect("partition in the answer");
    elem.error()
        .unwrap_or_else(|e| panic!("offsets_for_times {partition} @ {timestamp}: {e}"));
    elem.offset()
}

#[test]
fn offsets_by_time_earliest_latest_and_after_delete_records() {
    let mut broker = Broker::start("list-offsets");
    broker.create_topic(TOPIC, 2, &[]);
    // Recent, so no retention pass may delete them (retention.ms defaults to 7 days), and
    // the newest (MAX_TS_AFTER_BASE later) still in the past: Kafka 4's default
    // message.timestamp.after.max.ms refuses records more than an hour ahead.
    let base_ts = common::now_ms() - 4 * 3_600_000;
    let max_ts = base_ts + MAX_TS_AFTER_BASE;
    let producer = broker.producer("all", &[]);
    for p in 0..2 {
        let mut futures = Vec::new();
        for i in 0..RECORDS {
            let v = format!("p{p}-{i}");
            let r = FutureRecord::<(), _>::to(TOPIC)
                .payload(&v)
                .partition(p)
                .timestamp(ts(base_ts, p, i));
            futures.push(
                producer
                    .send_result(r)
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
        }
        for (i, f) in futures.into_iter().enumerate() {
            let d = block_on(f)
                .expect("delivery cancelled")
                .unwrap_or_else(|(e, _)| panic!("record {p}/{i}: {e}"));
            assert_eq!(d.offset, i as i64, "offset of record {i} in partition {p}");
        }
    }

    for p in 0..2 {
        assert_eq!(
            broker.watermarks(TOPIC, p),
            (0, RECORDS),
            "watermarks of {p}"
        );
    }

    // By timestamp: the first offset whose timestamp is at or after the target.
    for (target, want) in [
        (base_ts - 1, Offset::Offset(0)),
        (base_ts, Offset::Offset(0)),
        (base_ts + 1, Offset::Offset(1)),
        (base_ts + 5_500, Offset::Offset(6)),
        (base_ts + 19_000, Offset::Offset(19)),
        (base_ts + 19_001, Offset::End),
    ] {
        assert_eq!(
            offset_for_time(&broker, 0, target),
            want,
            "offsets_for_times on partition 0 at {target} (base {base_ts})"
        );
    }
    // Partition 1: record 13 is far in the future, so it is the first at or after it.
    assert_eq!(
        offset_for_time(&broker, 1, base_ts + 15_000),
        Offset::Offset(MAX_TS_OFFSET),
        "offsets_for_times on partition 1 (record 13 has the largest timestamp)"
    );

    let mut net = broker.net();
    assert!(
        net.version(ApiKey::ListOffsets) >= 7,
        "ListOffsets v7 (max timestamp) is not offered"
    );
    for p in 0..2 {
        let (code, _, offset) = list_offset(&mut net, p, -2);
        assert_eq!((code, offset), (0, 0), "earliest of {p}");
        let (code, _, offset) = list_offset(&mut net, p, -1);
        assert_eq!((code, offset), (0, RECORDS), "latest of {p}");
    }
    assert_eq!(
        list_offset(&mut net, 0, -3),
        (0, base_ts + 19_000, 19),
        "max timestamp of partition 0 (error, timestamp, offset)"
    );
    assert_eq!(
        list_offset(&mut net, 1, -3),
        (0, max_ts, MAX_TS_OFFSET),
        "max timestamp of partition 1 (error, timestamp, offset)"
    );

    // DeleteRecords: partition 0 before offset 5, partition 1 entirely.
    let admin = broker.admin();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(5))
        .unwrap();
    tpl.add_partition_offset(TOPIC, 1, Offset::End).unwrap();
    let result = block_on(admin.delete_records(&tpl, &admin_options()))
        .unwrap_or_else(|e| panic!("DeleteRecords: {e}"));
    for (p, low) in [(0, 5), (1, RECORDS)] {
        let elem = result.find_partition(TOPIC, p).expect("partition answered");
        elem.error()
            .unwrap_or_else(|e| panic!("DeleteRecords on partition {p}: {e}"));
        assert_eq!(
            elem.offset(),
            Offset::Offset(low),
            "new low watermark of {p}"
        );
    }
    assert_eq!(
        broker.watermarks(TOPIC, 0),
        (5, RECORDS),
        "after DeleteRecords"
    );
    assert_eq!(
        broker.watermarks(TOPIC, 1),
        (RECORDS, RECORDS),
        "after DeleteRecords"
    );
    assert_eq!(
        list_offset(&mut net, 0, -2).2,
        5,
        "earliest after DeleteRecords"
    );
    assert_eq!(
        list_offset(&mut net, 1, -2).2,
        RECORDS,
        "earliest after DeleteRecords"
    );
    assert_eq!(
        list_offset(&mut net, 0, -1).2,
        RECORDS,
        "latest after DeleteRecords"
    );
    assert_eq!(
        offset_for_time(&broker, 0, base_ts),
        Offset::Offset(5),
        "a timestamp inside the deleted range finds the new log start"
    );
    // Fetching below the log start is out of range.
    let below = net.fetch_once(TOPIC, 0, 2);
    assert_eq!(
        below.error_code, 1,
        "fetch below the log start: OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(net.fetch_once(TOPIC, 0, 5).log_start_offset, 5);

    // Deleting past the high watermark is refused.
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset(TOPIC, 0, Offset::Offset(RECORDS + 100))
        .unwrap();
    let result = block_on(admin.delete_records(&beyond, &admin_options()));
    let refused = match result {
        Err(e) => common::error_code(&e),
        Ok(tpl) => tpl
            .find_partition(TOPIC, 0)
            .and_then(|e| e.error().err())
            .and_then(|e| common::error_code(&e)),
    };
    assert_eq!(
        refused,
        Some(RDKafkaErrorCode::OffsetOutOfRange),
        "DeleteRecords past the high watermark"
    );
    assert_eq!(
        broker.watermarks(TOPIC, 0),
        (5, RECORDS),
        "a refused delete changes nothing"
    );

    // A consumer from the beginning starts at the new log start.
    let consumer = broker.consumer(&[]);
    assign(&consumer, TOPIC, &[0], Offset::Beginning);
    let first = common::consume_at_least(&consumer, 1, Duration::from_secs(20));
    assert_eq!(first[0].offset, 5, "first record after DeleteRecords");
    assert_eq!(first[0].value.as_deref(), Some(&b"p0-5"[..]));
    broker.assert_alive();
}
