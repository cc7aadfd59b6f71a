//! Produce a few thousand records with keys, headers and explicit timestamps at acks=all into a
//! 4-partition topic (two shards, so partitions live on both), then read everything back by
//! `assign` and compare it field by field, offset by offset.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{assign, block_on, by_position, consume_exactly, Broker, Rec};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, Timestamp};

const TOPIC: &str = "produce-consume";
const PARTITIONS: i32 = 4;
const RECORDS: usize = 3000;

/// Key, value, headers and timestamp of one record.
type Fields = (
    Vec<u8>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
    i64,
);

/// Record `i`'s fields, timestamps counted from `base_ts`.
fn expected(base_ts: i64, i: usize) -> Fields {
    let key = format!("key-{i}").into_bytes();
    // Every 500th is a tombstone, every 333rd is empty, the rest vary in size.
    let value = if i % 500 == 7 {
        None
    } else if i % 333 == 5 {
        Some(Vec::new())
    } else {
        let len = (i * 37) % 1500 + 1;
        Some((0..len).map(|j| ((i + j) % 251) as u8).collect())
    };
    let headers = vec![
        ("seq".to_string(), Some(i.to_string().into_bytes())),
        ("null-header".to_string(), None),
        ("dup".to_string(), Some(b"a".to_vec())),
        ("dup".to_string(), Some(b"b".to_vec())),
    ];
    // Not monotonic: the broker must keep each record's own timestamp.
    let ts = base_ts + ((i * 7919) % 100_000) as i64;
    (key, value, headers, ts)
}

#[test]
fn produce_then_consume_everything_back_exactly() {
    let broker = Broker::start("produce-consume");
    // Recent, so no retention pass may delete them (retention.ms defaults to 7 days).
    let base_ts = common::now_ms() - 3_600_000;
    broker.create_topic(TOPIC, PARTITIONS, &[]);

    let producer = broker.producer("all", &[("batch.num.messages", "200")]);
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let (key, value, headers, ts) = expected(base_ts, i);
        let mut owned = OwnedHeaders::new();
        for (k, v) in &headers {
            owned = owned.insert(Header {
                key: k,
                value: v.as_ref(),
            });
        }
        let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(TOPIC)
            .key(&key)
            .headers(owned)
            .timestamp(ts);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        let future = producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("enqueue record {i}: {e}"));
        deliveries.push(future);
    }

    // (partition, offset) -> record index, from the delivery reports.
    let mut delivered: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (i, future) in deliveries.into_iter().enumerate() {
        let Ok(delivery) = block_on(future) else {
            panic!("delivery future of record {i} was cancelled");
        };
        let (partition, offset) = match delivery {
            Ok(d) => (d.partition, d.offset),
            Err((e, _)) => panic!("record {i} was not delivered: {e}"),
        };
        assert!(
            (0..PARTITIONS).contains(&partition),
            "record {i} delivered to partition {partition}"
        );
        if let Some(other) = delivered.insert((partition, offset), i) {
            panic!("records {other} and {i} were both acknowledged at {partition}/{offset}");
        }
    }

    // Offsets are dense from 0 in every partition, and the watermarks agree.
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for &(p, o) in delivered.keys() {
        per_partition.entry(p).or_default().push(o);
    }
    assert!(
        per_partition.len() >= 2,
        "the keys should spread over several partitions: {:?}",
        per_partition.keys().collect::<Vec<_>>()
    );
    for p in 0..PARTITIONS {
        let offsets = per_partition.get(&p).cloned().unwrap_or_default();
        let dense: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, dense,
            "offsets of partition {p} are not dense from 0"
        );
        assert_eq!(
            broker.watermarks(TOPIC, p),
            (0, offsets.len() as i64),
            "watermarks of partition {p}"
        );
    }

    let consumer = broker.consumer(&[]);
    assign(&consumer, TOPIC, &[0, 1, 2, 3], Offset::Beginning);
    let got = consume_exactly(&consumer, RECORDS, Duration::from_secs(45));
    let got = by_position(&got);
    for (&(p, o), &i) in &delivered {
        let (key, value, headers, ts) = expected(base_ts, i);
        let want = Rec {
            topic: TOPIC.to_string(),
            partition: p,
            offset: o,
            key: Some(key),
            value,
            headers,
            timestamp: Timestamp::CreateTime(ts),
        };
        let have = got
            .get(&(p, o))
            .unwrap_or_else(|| panic!("record {i} ({p}/{o}) was not consumed"));
        assert_eq!(have, &want, "record {i} at {p}/{o} came back different");
    }
    let mut broker = broker;
    broker.assert_alive();
}
