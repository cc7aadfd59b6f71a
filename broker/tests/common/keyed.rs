//! Keyed records for compaction tests: sending keys, values and tombstones, reading a
//! partition to its end, and waiting until it holds exactly the latest record per key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

use super::{assign, block_on, Broker, Rec};

/// Sends `(key, value)` records (value None: a tombstone) to partition 0 and returns each
/// one's offset.
pub fn send(producer: &FutureProducer, topic: &str, recs: &[(String, Option<String>)]) -> Vec<i64> {
    let futures: Vec<_> = recs
        .iter()
        .map(|(k, v)| {
            let mut r = FutureRecord::<String, String>::to(topic)
                .key(k)
                .partition(0);
            if let Some(v) = v {
                r = r.payload(v);
            }
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    futures
        .into_iter()
        .map(|f| {
            block_on(f)
                .expect("delivery cancelled")
                .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"))
                .offset
        })
        .collect()
}

/// Every record of partition 0 from the start to the partition's end.
pub fn read_to_end(broker: &Broker, topic: &str) -> Vec<Rec> {
    read_partition_to_end(broker, topic, 0)
}

/// Every record of `partition` from the start to the partition's end.
pub fn read_partition_to_end(broker: &Broker, topic: &str, partition: i32) -> Vec<Rec> {
    let consumer: BaseConsumer = broker.consumer(&[("enable.partition.eof", "true")]);
    assign(&consumer, topic, &[partition], Offset::Beginning);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no end of partition within 30 s");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => out.push(Rec::from_message(&m)),
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("consumer error after {} records: {e}", out.len()),
        }
    }
}

/// Reads until the partition holds exactly the records `expected` (by offset) names,
/// failing with what it read last after `timeout`.
pub fn wait_compacted(
    broker: &Broker,
    topic: &str,
    expected: &BTreeMap<i64, (String, Option<String>)>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let read = read_to_end(broker, topic);
        let got: BTreeMap<i64, (String, Option<String>)> = read
            .iter()
            .map(|r| {
                let key = String::from_utf8(r.key.clone().expect("a key")).unwrap();
                let value = r.value.clone().map(|v| String::from_utf8(v).unwrap());
                (r.offset, (key, value))
            })
            .collect();
        if &got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted to the {} records expected within {timeout:?}: read {} records; first difference: {:?}",
            expected.len(),
            got.len(),
            got.iter()
                .zip(expected.iter())
                .find(|(a, b)| a != b)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The latest record of every key among `sent` (with their offsets).
pub fn latest(sent: &[((String, Option<String>), i64)]) -> BTreeMap<i64, (String, Option<String>)> {
    let mut by_key: BTreeMap<&str, (i64, &Option<String>)> = BTreeMap::new();
    for ((k, v), o) in sent {
        by_key.insert(k, (*o, v));
    }
    by_key
        .into_iter()
        .map(|(k, (o, v))| (o, (k.to_string(), v.clone())))
        .collect()
}
