//! Log compaction (`cleanup.policy=compact`) against the real broker, with librdkafka as
//! the client: a consumer reading a compacted topic from the start gets the latest value of
//! every key at the offset it was acknowledged with, tombstones while `delete.retention.ms`
//! keeps them and not after, the same after kill -9 and a restart; a record without a key
//! is refused with INVALID_RECORD and the batch's other partitions are unaffected.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{assign, block_on, Broker, BrokerOptions, Rec};
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

const TOPIC: &str = "compacted";

fn broker(name: &str) -> Broker {
    Broker::start_with(
        name,
        BrokerOptions {
            config_toml: Some("log_cleaner_backoff_ms = 200\n".into()),
            ..BrokerOptions::default()
        },
    )
}

/// Sends `(key, value)` records (value None: a tombstone) to partition 0 and returns each
/// one's offset.
fn send(producer: &FutureProducer, topic: &str, recs: &[(String, Option<String>)]) -> Vec<i64> {
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
fn read_to_end(broker: &Broker, topic: &str) -> Vec<Rec> {
    let consumer: BaseConsumer = broker.consumer(&[("enable.partition.eof", "true")]);
    assign(&consumer, topic, &[0], Offset::Beginning);
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
fn wait_compacted(
    broker: &Broker,
    expected: &BTreeMap<i64, (String, Option<String>)>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let read = read_to_end(broker, TOPIC);
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
fn latest(sent: &[((String, Option<String>), i64)]) -> BTreeMap<i64, (String, Option<String>)> {
    let mut by_key: BTreeMap<&str, (i64, &Option<String>)> = BTreeMap::new();
    for ((k, v), o) in sent {
        by_key.insert(k, (*o, v));
    }
    by_key
        .into_iter()
        .map(|(k, (o, v))| (o, (k.to_string(), v.clone())))
        .collect()
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_of_every_key_at_its_offset() {
    let mut broker = broker("compaction-latest");
    broker.create_topic(
        TOPIC,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "16384"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let producer = broker.producer("all", &[("linger.ms", "5")]);
    let mut sent = Vec::new();
    let mut batch = |recs: Vec<(String, Option<String>)>| {
        let offsets = send(&producer, TOPIC, &recs);
        sent.extend(recs.into_iter().zip(offsets));
    };
    // 3,000 values over 50 keys, then tombstones for five of them, then records of keys of
    // their own that push all of that out of the active segment (never compacted).
    batch(
        (0..3000)
            .map(|i| {
                (
                    format!("key-{}", i % 50),
                    Some(format!("value-{i}-{}", "x".repeat(150))),
                )
            })
            .collect(),
    );
    batch((0..5).map(|k| (format!("key-{k}"), None)).collect());
    batch(
        (0..40)
            .map(|i| (format!("filler-{i}"), Some("f".repeat(1000))))
            .collect(),
    );
    let expected = latest(&sent);
    assert_eq!(expected.len(), 90);
    wait_compacted(&broker, &expected, Duration::from_secs(60));

    // A record without a key is refused, and nothing of it is stored.
    let keyless = block_on(
        producer
            .send_result(
                FutureRecord::<str, str>::to(TOPIC)
                    .payload("no key")
                    .partition(0),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue"),
    )
    .expect("delivery cancelled");
    match keyless {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord), _)) => {}
        other => panic!("a keyless record to a compacted topic: {other:?}"),
    }

    // Kill -9 and a restart: the compacted segments read the same.
    broker.kill9();
    broker.restart();
    wait_compacted(&broker, &expected, Duration::from_secs(30));

    // With delete.retention.ms=0 the tombstones go at the next pass (new records make
    // one due).
    let admin = broker.admin();
    // (AlterConfigs replaces the topic's whole config: every key is given again.)
    let alter = AlterConfig::new(ResourceSpecifier::Topic(TOPIC))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "16384")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "0");
    let r = block_on(admin.alter_configs(&[alter], &AdminOptions::new())).expect("alter configs");
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let producer = broker.producer("all", &[("linger.ms", "5")]);
    let more: Vec<(String, Option<String>)> = (0..40)
        .map(|i| (format!("filler-b-{i}"), Some("g".repeat(1000))))
        .collect();
    let offsets = send(&producer, TOPIC, &more);
    let mut expected: BTreeMap<i64, (String, Option<String>)> = expected
        .into_iter()
        .filter(|(_, (_, v))| v.is_some())
        .collect();
    expected.extend(offsets.into_iter().zip(more));
    wait_compacted(&broker, &expected, Duration::from_secs(60));
}
