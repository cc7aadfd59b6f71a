//! Replicas of a compacted topic: a follower that was away while its leader compacted
//! copies the compacted log (offsets with gaps where records were removed), rejoins the
//! ISR, and, when the leader dies, leads with the latest record of every key at the offset
//! it was acknowledged with. A follower's append used to require each batch to start at
//! its log end, so a compacted leader's first gap stopped replication for good.

mod common;

use std::time::Duration;

use common::cluster::{
    leader_follower_bystander, settled_topic_metadata, start_cluster, wait_agreed, wait_topic,
};
use common::keyed::{latest, send, wait_compacted};
use common::{block_on, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::metadata_response::MetadataResponseTopic;

const HOSTS: [&str; 3] = ["127.0.0.151", "127.0.0.152", "127.0.0.153"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 2000\nlog_cleaner_backoff_ms = 200\n";
const TOPIC: &str = "compacted-replicas";

/// Polls `broker`'s metadata of the topic until `ok` holds (at most 60 s).
fn wait_for(
    broker: &Broker,
    what: &str,
    ok: impl Fn(&MetadataResponseTopic) -> bool,
) -> MetadataResponseTopic {
    wait_topic(broker, TOPIC, what, Duration::from_secs(60), ok)
}

#[test]
fn a_follower_copies_a_compacted_leader_and_leads_with_the_latest_value_of_every_key() {
    let mut brokers = start_cluster("compaction-replicas", &HOSTS, CONFIG);
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(20),
    );
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(2))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "16384")
        .set("min.cleanable.dirty.ratio", "0.01");
    let created =
        block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(created[0].is_ok(), "{created:?}");
    let t = settled_topic_metadata(&brokers[0], TOPIC, 1);
    let (leader, follower, bystander) = leader_follower_bystander(&t, 0);
    let idx = |node: i32| (node - 1) as usize;

    // The follower is away while the leader takes 3,000 values of 50 keys (in batches of
    // ten, so whole batches go and leave gaps), tombstones of five, and records that push
    // them out of the active segment, and compacts them.
    brokers[idx(follower)].pause(true);
    wait_for(
        &brokers[bystander],
        "the paused follower leaves the ISR",
        |t| t.partitions[0].isr_nodes.len() == 1,
    );
    let producer =
        brokers[bystander].producer("1", &[("linger.ms", "5"), ("batch.num.messages", "10")]);
    let mut sent = Vec::new();
    for recs in [
        (0..3000)
            .map(|i| {
                (
                    format!("key-{}", i % 50),
                    Some(format!("value-{i}-{}", "x".repeat(150))),
                )
            })
            .collect::<Vec<_>>(),
        (0..5).map(|k| (format!("key-{k}"), None)).collect(),
        (0..40)
            .map(|i| (format!("filler-{i}"), Some("f".repeat(1000))))
            .collect(),
    ] {
        let offsets = send(&producer, TOPIC, &recs);
        sent.extend(recs.into_iter().zip(offsets));
    }
    let expected = latest(&sent);
    assert_eq!(expected.len(), 90);
    wait_compacted(
        &brokers[bystander],
        TOPIC,
        &expected,
        Duration::from_secs(60),
    );

    // Back, the follower copies the compacted log and rejoins the ISR.
    brokers[idx(follower)].pause(false);
    wait_for(
        &brokers[bystander],
        "the follower copies the compacted log and rejoins the ISR",
        |t| t.partitions[0].isr_nodes.len() == 2,
    );

    // The leader dies; the follower leads with the same records at the same offsets.
    brokers[idx(leader)].kill9();
    wait_for(&brokers[bystander], "the follower leads", |t| {
        t.partitions[0].leader_id.0 == follower
    });
    wait_compacted(
        &brokers[bystander],
        TOPIC,
        &expected,
        Duration::from_secs(30),
    );
}
