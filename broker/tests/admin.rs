//! Topic administration through rdkafka's AdminClient (and `rill_net` for
//! IncrementalAlterConfigs, which rdkafka does not expose): create, describe, alter (full and
//! incremental), delete and re-create a topic; grow it with CreatePartitions; and every
//! refusal with its Kafka error code, leaving nothing half-done behind.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{admin_options, assign, block_on, Broker, NetClient};
use rdkafka::admin::{
    AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use rill_net::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use rill_net::kafka_protocol::messages::IncrementalAlterConfigsRequest;
use rill_net::kafka_protocol::protocol::StrBytes;

/// Every topic config the broker documents, with Kafka's default.
const DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
    ("segment.ms", "604800000"),
    ("flush.messages", "9223372036854775807"),
    ("flush.ms", "9223372036854775807"),
];

type Described = HashMap<String, (Option<String>, ConfigSource)>;

fn describe(broker: &Broker, topic: &str) -> Described {
    let admin = broker.admin();
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()))
            .unwrap_or_else(|e| panic!("DescribeConfigs {topic}: {e}"));
    assert_eq!(results.len(), 1);
    let resource = results
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|code| panic!("DescribeConfigs {topic}: {code:?}"));
    resource
        .entries
        .into_iter()
        .map(|e| (e.name, (e.value, e.source)))
        .collect()
}

/// Asserts `key` is `value`, set on the topic (`dynamic`) or left at its default.
fn assert_config(d: &Described, key: &str, value: &str, dynamic: bool) {
    let (v, source) = d
        .get(key)
        .unwrap_or_else(|| panic!("DescribeConfigs does not list {key}: {d:?}"));
    assert_eq!(v.as_deref(), Some(value), "value of {key}");
    if dynamic {
        assert_eq!(
            *source,
            ConfigSource::DynamicTopic,
            "source of {key} (set on the topic)"
        );
    } else {
        assert_ne!(
            *source,
            ConfigSource::DynamicTopic,
            "source of {key} (not set on the topic)"
        );
    }
}

fn incremental(net: &mut NetClient, topic: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(false)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_config_operation(*op)
                            .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let response = net.send(&request);
    assert_eq!(response.responses.len(), 1, "{response:?}");
    assert_eq!(response.responses[0].resource_name.as_str(), topic);
    response.responses[0].error_code
}

/// AlterConfigs (replace the topic's whole set) through `rill_net`; returns the error code.
fn alter_configs_raw(net: &mut NetClient, topic: &str, configs: &[(&str, &str)]) -> i16 {
    use rill_net::kafka_protocol::messages::alter_configs_request;
    use rill_net::kafka_protocol::messages::AlterConfigsRequest;
    let request = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    let response = net.send(&request);
    assert_eq!(response.responses.len(), 1, "{response:?}");
    response.responses[0].error_code
}

const SET: i8 = 0;
const DELETE: i8 = 1;

fn topic_listed(broker: &Broker, topic: &str) -> bool {
    let consumer = broker.consumer(&[]);
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata for all topics");
    md.topics().iter().any(|t| t.name() == topic)
}

fn produce(broker: &Broker, topic: &str, partition: i32, value: &str) -> i64 {
    let producer = broker.producer("all", &[]);
    let r = FutureRecord::<(), _>::to(topic)
        .payload(value)
        .partition(partition);
    block_on(
        producer
            .send_result(r)
            .map_err(|(e, _)| e)
            .expect("enqueue"),
    )
    .expect("delivery cancelled")
    .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"))
    .offset
}

#[test]
fn create_describe_alter_delete_recreate() {
    let mut broker = Broker::start("admin-lifecycle");
    let topic = "admin-lifecycle";
    broker.create_topic(
        topic,
        3,
        &[
            ("retention.ms", "3600000"),
            ("segment.bytes", "1048576"),
            ("message.timestamp.type", "LogAppendTime"),
        ],
    );
    let d = describe(&broker, topic);
    assert_config(&d, "retention.ms", "3600000", true);
    assert_config(&d, "segment.bytes", "1048576", true);
    assert_config(&d, "message.timestamp.type", "LogAppendTime", true);
    for (key, default) in DEFAULTS {
        if !["retention.ms", "segment.bytes", "message.timestamp.type"].contains(key) {
            assert_config(&d, key, default, false);
        }
    }

    // AlterConfigs replaces the whole set: what it does not name goes back to the default.
    let admin = broker.admin();
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("retention.ms", "7200000");
    let results = block_on(admin.alter_configs([&alter], &admin_options()))
        .unwrap_or_else(|e| panic!("AlterConfigs: {e}"));
    assert_eq!(results.len(), 1);
    if let Err((_, code)) = &results[0] {
        panic!("AlterConfigs {topic}: {code:?}");
    }
    let d = describe(&broker, topic);
    assert_config(&d, "retention.ms", "7200000", true);
    assert_config(&d, "segment.bytes", "1073741824", false);
    assert_config(&d, "message.timestamp.type", "CreateTime", false);

    // IncrementalAlterConfigs changes only what it names.
    let mut net = broker.net();
    let code = incremental(
        &mut net,
        topic,
        &[
            ("max.message.bytes", SET, Some("5000")),
            ("retention.ms", DELETE, None),
        ],
    );
    assert_eq!(code, 0, "IncrementalAlterConfigs SET + DELETE");
    let d = describe(&broker, topic);
    assert_config(&d, "max.message.bytes", "5000", true);
    assert_config(&d, "retention.ms", "604800000", false);

    // A bad entry refuses the whole resource: the good entry beside it is not applied.
    for (ops, what) in [
        (
            vec![
                ("max.message.bytes", SET, Some("6000")),
                ("no.such.config", SET, Some("1")),
            ],
            "unknown key",
        ),
        (
            vec![
                ("max.message.bytes", SET, Some("6000")),
                ("cleanup.policy", SET, Some("compress")),
            ],
            "cleanup.policy=compress (no such policy)",
        ),
        (
            vec![
                ("max.message.bytes", SET, Some("6000")),
                ("retention.ms", SET, Some("soon")),
            ],
            "non-numeric retention.ms",
        ),
    ] {
        let code = incremental(&mut net, topic, &ops);
        assert_eq!(
            code, 40,
            "IncrementalAlterConfigs with {what}: INVALID_CONFIG"
        );
    }
    assert_config(&describe(&broker, topic), "max.message.bytes", "5000", true);
    assert_eq!(
        incremental(
            &mut net,
            "no-such-topic",
            &[("retention.ms", SET, Some("1000"))]
        ),
        3,
        "IncrementalAlterConfigs on an unknown topic: UNKNOWN_TOPIC_OR_PARTITION"
    );

    // AlterConfigs refusals, on the wire: rdkafka 0.38's alter_configs drops per-resource
    // errors (it reports every resource as Ok), so it cannot see them.
    for (key, value) in [("no.such.config", "1"), ("cleanup.policy", "compress")] {
        assert_eq!(
            alter_configs_raw(
                &mut net,
                topic,
                &[("max.message.bytes", "7000"), (key, value)]
            ),
            40,
            "AlterConfigs {key}={value}: INVALID_CONFIG"
        );
    }
    assert_eq!(
        alter_configs_raw(&mut net, "no-such-topic", &[("retention.ms", "1000")]),
        3,
        "AlterConfigs on an unknown topic: UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_config(&describe(&broker, topic), "max.message.bytes", "5000", true);

    // Delete, then the same name comes back empty and with default configs.
    for p in 0..3 {
        assert_eq!(produce(&broker, topic, p, "before delete"), 0);
    }
    let results = block_on(admin.delete_topics(&[topic], &admin_options()))
        .unwrap_or_else(|e| panic!("DeleteTopics: {e}"));
    assert_eq!(results, vec![Ok(topic.to_string())], "DeleteTopics {topic}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while topic_listed(&broker, topic) {
        assert!(
            Instant::now() < deadline,
            "deleted topic still listed in Metadata"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its partition directories are gone, renamed away at once and removed by the reaper.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<String> = std::fs::read_dir(broker.data_dir())
            .expect("list the data directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{topic}-")))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted topic's directories are still there: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let results = block_on(admin.delete_topics(&[topic], &admin_options()))
        .unwrap_or_else(|e| panic!("DeleteTopics: {e}"));
    assert_eq!(
        results,
        vec![Err((
            topic.to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))],
        "deleting a deleted topic"
    );

    broker.create_topic(topic, 2, &[]);
    for p in 0..2 {
        assert_eq!(
            broker.watermarks(topic, p),
            (0, 0),
            "re-created partition {p} is empty"
        );
    }
    let d = describe(&broker, topic);
    assert_config(&d, "max.message.bytes", "1048588", false);
    assert_config(&d, "retention.ms", "604800000", false);
    assert_eq!(produce(&broker, topic, 1, "after re-create"), 0);
    broker.assert_alive();
}

#[test]
fn create_partitions_grows_the_topic_and_the_new_partition_takes_records() {
    let mut broker = Broker::start("admin-grow");
    let topic = "admin-grow";
    broker.create_topic(topic, 2, &[]);
    for p in 0..2 {
        assert_eq!(produce(&broker, topic, p, &format!("old-{p}")), 0);
    }
    let admin = broker.admin();
    let results =
        block_on(admin.create_partitions([&NewPartitions::new(topic, 5)], &admin_options()))
            .unwrap_or_else(|e| panic!("CreatePartitions: {e}"));
    assert_eq!(
        results,
        vec![Ok(topic.to_string())],
        "CreatePartitions to 5"
    );
    broker.wait_for_topic(topic, 5);

    for p in 2..5 {
        assert_eq!(
            produce(&broker, topic, p, &format!("new-{p}")),
            0,
            "first record of {p}"
        );
    }
    for p in 0..5 {
        assert_eq!(
            broker.watermarks(topic, p),
            (0, 1),
            "watermarks of partition {p}"
        );
    }
    let consumer = broker.consumer(&[]);
    assign(&consumer, topic, &[0, 1, 2, 3, 4], Offset::Beginning);
    let mut got: Vec<(i32, String)> =
        common::consume_exactly(&consumer, 5, Duration::from_secs(20))
            .into_iter()
            .map(|r| (r.partition, String::from_utf8(r.value.unwrap()).unwrap()))
            .collect();
    got.sort();
    let want: Vec<(i32, String)> = (0..5)
        .map(|p| {
            (
                p,
                if p < 2 {
                    format!("old-{p}")
                } else {
                    format!("new-{p}")
                },
            )
        })
        .collect();
    assert_eq!(got, want);

    // Shrinking, or "growing" to the same count, is refused and changes nothing.
    for count in [3, 5] {
        let results = block_on(
            admin.create_partitions([&NewPartitions::new(topic, count)], &admin_options()),
        )
        .unwrap_or_else(|e| panic!("CreatePartitions: {e}"));
        assert_eq!(
            results,
            vec![Err((
                topic.to_string(),
                RDKafkaErrorCode::InvalidPartitions
            ))],
            "CreatePartitions to {count} (topic has 5)"
        );
    }
    let results = block_on(
        admin.create_partitions([&NewPartitions::new("no-such-topic", 3)], &admin_options()),
    )
    .unwrap_or_else(|e| panic!("CreatePartitions: {e}"));
    assert_eq!(
        results,
        vec![Err((
            "no-such-topic".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))],
        "CreatePartitions on an unknown topic"
    );
    broker.wait_for_topic(topic, 5);
    broker.assert_alive();
}

#[test]
fn create_topics_refusals_have_kafka_error_codes() {
    let mut broker = Broker::start("admin-errors");
    broker.create_topic("exists", 1, &[]);
    let admin = broker.admin();
    let long_name = "x".repeat(250);
    let cases: Vec<(NewTopic, RDKafkaErrorCode, &str)> = vec![
        (
            NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
            "name with a space and '!'",
        ),
        (
            NewTopic::new("..", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
            "name '..'",
        ),
        (
            NewTopic::new(&long_name, 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
            "name of 250 characters",
        ),
        (
            NewTopic::new("exists", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::TopicAlreadyExists,
            "existing name",
        ),
        (
            NewTopic::new("rf3", 1, TopicReplication::Fixed(3)),
            RDKafkaErrorCode::InvalidReplicationFactor,
            "replication factor 3 on one node",
        ),
        (
            NewTopic::new("unknown-key", 1, TopicReplication::Fixed(1)).set("no.such.config", "1"),
            RDKafkaErrorCode::InvalidConfig,
            "unknown config key",
        ),
        (
            NewTopic::new("compressed", 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compress"),
            RDKafkaErrorCode::InvalidConfig,
            "cleanup.policy=compress (no such policy)",
        ),
        (
            NewTopic::new("bad-value", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon"),
            RDKafkaErrorCode::InvalidConfig,
            "non-numeric retention.ms",
        ),
        (
            NewTopic::new("zero-partitions", 0, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidPartitions,
            "zero partitions",
        ),
    ];
    for (new, want, what) in &cases {
        let results = block_on(admin.create_topics([new], &admin_options()))
            .unwrap_or_else(|e| panic!("CreateTopics ({what}): request failed: {e}"));
        assert_eq!(results.len(), 1, "{what}");
        match &results[0] {
            Err((_, code)) => assert_eq!(code, want, "CreateTopics with {what}"),
            Ok(name) => panic!("CreateTopics with {what} was accepted ({name})"),
        }
    }
    for name in [
        "rf3",
        "unknown-key",
        "compressed",
        "bad-value",
        "zero-partitions",
    ] {
        assert!(
            !topic_listed(&broker, name),
            "refused topic {name} exists anyway"
        );
    }

    // Replication factor -1 means the broker default (1 here) and is accepted.
    let results = block_on(admin.create_topics(
        [&NewTopic::new("rf-default", 2, TopicReplication::Fixed(-1))],
        &admin_options(),
    ))
    .unwrap_or_else(|e| panic!("CreateTopics rf -1: {e}"));
    assert_eq!(
        results,
        vec![Ok("rf-default".to_string())],
        "replication factor -1"
    );
    broker.wait_for_topic("rf-default", 2);

    // validate_only checks but creates nothing.
    let results = block_on(admin.create_topics(
        [&NewTopic::new(
            "validate-only",
            2,
            TopicReplication::Fixed(1),
        )],
        &admin_options().validate_only(true),
    ))
    .unwrap_or_else(|e| panic!("CreateTopics validate_only: {e}"));
    assert_eq!(results, vec![Ok("validate-only".to_string())]);
    assert!(
        !topic_listed(&broker, "validate-only"),
        "validate_only CreateTopics created the topic"
    );

    // Deleting an unknown topic.
    let results = block_on(admin.delete_topics(&["never-was"], &admin_options()))
        .unwrap_or_else(|e| panic!("DeleteTopics: {e}"));
    assert_eq!(
        results,
        vec![Err((
            "never-was".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
    broker.assert_alive();
}
