//! Kafka's topic and broker configs against the real broker: every key Kafka 4.4 defines is
//! accepted by CreateTopics and described back; a bad value or an unknown key fails only its
//! own topic in a CreateTopics of several; `compression.type` recompresses what producers
//! send (checked on the stored batches, records unchanged) and follows a change of the
//! config, and a batch that would decompress past `max.decompressed.message.bytes` is
//! refused with RECORD_LIST_TOO_LARGE; `message.timestamp.after.max.ms` refuses a batch
//! from the future with INVALID_TIMESTAMP and stores nothing; the replication throttles
//! that `kafka-reassign-partitions` sets and clears are kept on brokers and topics.

mod common;

use std::collections::BTreeMap;

use common::{batch_codecs, block_on, read_all, Broker, NetClient};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rill_net::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use rill_net::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

const TOPIC_RESOURCE: i8 = 2;
const BROKER_RESOURCE: i8 = 4;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Every topic config Kafka 4.4 defines, with a valid value other than Kafka's default
/// where that is allowed (`remote.storage.enable` only takes false without tiered storage).
const KAFKA_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("compression.gzip.level", "5"),
    ("compression.lz4.level", "10"),
    ("compression.type", "zstd"),
    ("compression.zstd.level", "5"),
    ("delete.retention.ms", "3600000"),
    ("errors.deadletterqueue.group.enable", "true"),
    ("file.delete.delay.ms", "1000"),
    ("flush.messages", "1000"),
    ("flush.ms", "1000"),
    ("follower.replication.throttled.replicas", "0:1"),
    ("index.interval.bytes", "8192"),
    ("leader.replication.throttled.replicas", "*"),
    ("local.retention.bytes", "1000000"),
    ("local.retention.ms", "60000"),
    ("max.compaction.lag.ms", "600000"),
    ("max.decompressed.message.bytes", "10485760"),
    ("max.message.bytes", "2000000"),
    ("message.timestamp.after.max.ms", "60000"),
    ("message.timestamp.before.max.ms", "86400000"),
    ("message.timestamp.type", "CreateTime"),
    ("min.cleanable.dirty.ratio", "0.3"),
    ("min.compaction.lag.ms", "1000"),
    ("min.insync.replicas", "1"),
    ("preallocate", "true"),
    ("remote.copy.lag.bytes", "1000"),
    ("remote.copy.lag.ms", "1000"),
    ("remote.log.copy.disable", "true"),
    ("remote.log.delete.on.disable", "true"),
    ("remote.storage.enable", "false"),
    ("retention.bytes", "100000000"),
    ("retention.ms", "86400000"),
    ("segment.bytes", "10485760"),
    ("segment.index.bytes", "1048576"),
    ("segment.jitter.ms", "1000"),
    ("segment.ms", "3600000"),
    ("unclean.leader.election.enable", "true"),
];

fn creatable(name: &str, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        )
}

/// The configs DescribeConfigs shows for a resource, by name.
fn described(net: &mut NetClient, resource_type: i8, name: &str) -> BTreeMap<String, String> {
    let r = net.send(&DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(None),
    ]));
    assert_eq!(r.results[0].error_code, 0, "{r:?}");
    r.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// IncrementalAlterConfigs of one resource; its error code.
fn alter(net: &mut NetClient, resource_type: i8, name: &str, ops: &[(&str, Option<&str>)]) -> i16 {
    let configs = ops
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(if v.is_some() { 0 } else { 1 })
                .with_value(v.map(s))
        })
        .collect();
    let r = net.send(
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(configs),
        ]),
    );
    r.responses[0].error_code
}

#[test]
fn every_kafka_topic_config_is_accepted_and_bad_ones_fail_only_their_topic() {
    let broker = Broker::start("topic-configs-all");
    let mut net = broker.net();
    let r = net.send(
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                creatable("all-kafka-configs", KAFKA_TOPIC_CONFIGS),
                creatable(
                    "bad-key",
                    &[("retention.ms", "1000"), ("no.such.config", "1")],
                ),
                creatable("bad-value", &[("compression.zstd.level", "99")]),
                creatable("tiered", &[("remote.storage.enable", "true")]),
                creatable("compacted", &[("cleanup.policy", "compact")]),
                creatable("plain", &[("unclean.leader.election.enable", "false")]),
            ]),
    );
    let codes: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.error_code))
        .collect();
    let invalid = ErrorCode::InvalidConfig.code();
    assert_eq!(
        codes,
        vec![
            ("all-kafka-configs".to_string(), 0),
            ("bad-key".to_string(), invalid),
            ("bad-value".to_string(), invalid),
            ("tiered".to_string(), invalid),
            ("compacted".to_string(), 0),
            ("plain".to_string(), 0),
        ]
    );
    for t in &r.topics[1..4] {
        assert!(t.error_message.is_some(), "{} says why", &*t.name.0);
    }
    let d = described(&mut net, TOPIC_RESOURCE, "all-kafka-configs");
    for (k, v) in KAFKA_TOPIC_CONFIGS {
        assert_eq!(d.get(*k).map(String::as_str), Some(*v), "{k}");
    }
    assert_eq!(d.len(), KAFKA_TOPIC_CONFIGS.len(), "{d:?}");
}

#[test]
fn compression_type_recompresses_what_producers_send() {
    let broker = Broker::start("topic-configs-recompress");
    let mut net = broker.net();
    let t = "recompressed";
    broker.create_topic(t, 1, &[("compression.type", "zstd")]);
    let send = |codec: &str, from: usize| {
        let producer = broker.producer("all", &[("compression.type", codec), ("linger.ms", "20")]);
        let futures: Vec<_> = (from..from + 50)
            .map(|i| {
                let value = format!("value-{i}-{}", "x".repeat(100));
                let key = format!("k{i}");
                producer
                    .send_result(FutureRecord::to(t).key(&key).payload(&value).partition(0))
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
            })
            .collect();
        for f in futures {
            block_on(f)
                .expect("delivery cancelled")
                .unwrap_or_else(|(e, _)| panic!("{codec} produce failed: {e}"));
        }
    };
    send("none", 0);
    let codecs = batch_codecs(&net.fetch_once(t, 0, 0).records);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == 4),
        "stored {codecs:?}"
    );

    // The topic now asks for no compression: lz4 batches are stored uncompressed.
    assert_eq!(
        alter(
            &mut net,
            TOPIC_RESOURCE,
            t,
            &[("compression.type", Some("uncompressed"))]
        ),
        0
    );
    send("lz4", 50);
    let codecs = batch_codecs(&net.fetch_once(t, 0, 50).records);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == 0),
        "stored {codecs:?}"
    );

    // Every record reads back as sent, whatever it was stored as.
    let recs = read_all(&broker, t, &[0], 100);
    for i in 0..100usize {
        let r = &recs[&(0, i as i64)];
        assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(
            r.value.as_deref(),
            Some(format!("value-{i}-{}", "x".repeat(100)).as_bytes())
        );
    }
}

#[test]
fn a_batch_from_the_future_is_refused_with_invalid_timestamp() {
    let broker = Broker::start("topic-configs-timestamps");
    let t = "clock-checked";
    broker.create_topic(t, 1, &[("message.timestamp.after.max.ms", "60000")]);
    let producer = broker.producer("1", &[("retries", "0")]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let send = |ts: i64| {
        let r = FutureRecord::<(), _>::to(t)
            .payload("v")
            .partition(0)
            .timestamp(ts);
        block_on(
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("delivery cancelled")
        .map(|_| ())
        .map_err(|(e, _)| e)
    };
    match send(now_ms + 3_600_000) {
        Err(KafkaError::MessageProduction(code)) => {
            assert_eq!(code, RDKafkaErrorCode::InvalidTimestamp)
        }
        other => panic!("a record an hour ahead: {other:?}"),
    }
    assert_eq!(broker.watermarks(t, 0), (0, 0), "nothing stored");
    send(now_ms + 1_000).expect("a second ahead is within the bound");
    send(now_ms - 86_400_000).expect("any age is allowed by default");
    assert_eq!(broker.watermarks(t, 0), (0, 2));
}

#[test]
fn replication_throttles_are_kept_and_cleared_on_brokers_and_topics() {
    let broker = Broker::start("topic-configs-throttles");
    let mut net = broker.net();
    broker.create_topic("throttled", 1, &[]);
    let md = net.send(&MetadataRequest::default().with_topics(Some(Vec::new())));
    let node = md.brokers[0].node_id.0.to_string();
    let rates = [
        "leader.replication.throttled.rate",
        "follower.replication.throttled.rate",
        "replica.alter.log.dirs.io.max.bytes.per.second",
    ];
    let set: Vec<(&str, Option<&str>)> = rates.iter().map(|k| (*k, Some("1048576"))).collect();
    assert_eq!(alter(&mut net, BROKER_RESOURCE, &node, &set), 0);
    let d = described(&mut net, BROKER_RESOURCE, &node);
    for k in rates {
        assert_eq!(d.get(k).map(String::as_str), Some("1048576"), "{k}");
    }
    assert_eq!(
        alter(
            &mut net,
            BROKER_RESOURCE,
            &node,
            &[("leader.replication.throttled.rate", Some("-5"))]
        ),
        ErrorCode::InvalidConfig.code(),
        "a negative rate"
    );
    let replicas = [
        ("leader.replication.throttled.replicas", Some("0:1")),
        ("follower.replication.throttled.replicas", Some("*")),
    ];
    assert_eq!(alter(&mut net, TOPIC_RESOURCE, "throttled", &replicas), 0);
    assert_eq!(
        alter(
            &mut net,
            TOPIC_RESOURCE,
            "throttled",
            &[("leader.replication.throttled.replicas", Some("zero:one"))]
        ),
        ErrorCode::InvalidConfig.code()
    );
    // What `kafka-reassign-partitions --verify` does once a move is done.
    let clear: Vec<(&str, Option<&str>)> = rates.iter().map(|k| (*k, None)).collect();
    assert_eq!(alter(&mut net, BROKER_RESOURCE, &node, &clear), 0);
    let cleared = [
        ("leader.replication.throttled.replicas", None),
        ("follower.replication.throttled.replicas", None),
    ];
    assert_eq!(alter(&mut net, TOPIC_RESOURCE, "throttled", &cleared), 0);
    let d = described(&mut net, BROKER_RESOURCE, &node);
    for k in rates {
        assert_eq!(
            d.get(k).map(String::as_str),
            Some("9223372036854775807"),
            "{k}"
        );
    }
    let t = described(&mut net, TOPIC_RESOURCE, "throttled");
    assert_eq!(t["leader.replication.throttled.replicas"], "");
}

#[test]
fn a_batch_that_decompresses_past_the_topic_limit_is_refused_and_nothing_is_stored() {
    use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
    use rill_net::kafka_protocol::records::Compression;
    let broker = Broker::start("topic-configs-bomb");
    let t = "bounded";
    broker.create_topic(
        t,
        1,
        &[
            ("compression.type", "lz4"),
            ("max.decompressed.message.bytes", "1048576"),
        ],
    );
    let mut net = broker.net();
    // 8 MiB of zeros that zstd packs into a few hundred bytes.
    let bomb = encode_record_batch(
        &[ProduceRecord {
            value: Some(bytes::Bytes::from(vec![0u8; 8 << 20])),
            timestamp_ms: common::now_ms(),
            ..Default::default()
        }],
        &BatchOptions {
            compression: Compression::Zstd,
            ..BatchOptions::default()
        },
    )
    .expect("encode");
    assert!(
        bomb.len() < 64 << 10,
        "the batch itself is small: {}",
        bomb.len()
    );
    let (code, _) = net.produce_batch(t, 0, 1, bomb);
    assert_eq!(code, ErrorCode::RecordListTooLarge.code());
    assert_eq!(broker.watermarks(t, 0), (0, 0), "nothing stored");
    // The broker goes on: a normal batch to the same topic is recompressed and stored.
    let (code, offset) = net.produce_values(t, 0, &[b"fine"]);
    assert_eq!((code, offset), (0, 0));
    let stored = batch_codecs(&net.fetch_once(t, 0, 0).records);
    assert_eq!(stored, vec![3], "stored as lz4");
}
