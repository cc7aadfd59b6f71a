//! Replicas of a compacted topic. A follower that was away while its leader compacted
//! copies the compacted log (offsets with gaps where records were removed), rejoins the
//! ISR, and, when the leader dies, leads with the latest record of every key at the offset
//! it was acknowledged with. A follower's append used to require each batch to start at
//! its log end, so a compacted leader's first gap stopped replication for good.

mod common;

use std::time::Duration;

use common::cluster::{
    agreed_cluster_with_topic, leader_follower_bystander, settled_topic_metadata, wait_topic,
};
use common::keyed::{latest, send, wait_compacted};
use common::Broker;
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use rill_net::kafka_protocol::messages::{
    describe_producers_request, fetch_request::FetchPartition, fetch_request::FetchTopic,
    DescribeProducersRequest, FetchRequest, TopicName,
};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_storage::batch::BatchHeader;

const HOSTS: [&str; 3] = ["127.0.0.151", "127.0.0.152", "127.0.0.153"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 2000\nlog_cleaner_backoff_ms = 200\n";
const TOPIC: &str = "compacted-replicas";

/// Polls `broker`'s metadata of `topic` until `ok` holds (at most 60 s).
fn wait_for(
    broker: &Broker,
    topic: &str,
    what: &str,
    ok: impl Fn(&MetadataResponseTopic) -> bool,
) -> MetadataResponseTopic {
    wait_topic(broker, topic, what, Duration::from_secs(60), ok)
}

/// Node id to index in the cluster's brokers.
fn idx(node: i32) -> usize {
    (node - 1) as usize
}

/// A cluster of three on `hosts` with `topic` (one partition, RF 2, compacted, 16 KiB
/// segments, cleaned at any dirty ratio), its follower paused and out of the ISR: the
/// brokers, the leader's and the follower's node ids, and the bystander's index.
fn cluster_with_follower_away(
    name: &str,
    hosts: &[&str],
    topic: &str,
) -> (Vec<Broker>, i32, i32, usize) {
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(2))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "16384")
        .set("min.cleanable.dirty.ratio", "0.01");
    let brokers = agreed_cluster_with_topic(name, hosts, CONFIG, &new);
    let t = settled_topic_metadata(&brokers[0], topic, 1);
    let (leader, follower, bystander) = leader_follower_bystander(&t, 0);
    brokers[idx(follower)].pause(true);
    wait_for(
        &brokers[bystander],
        topic,
        "the paused follower leaves the ISR",
        |t| t.partitions[0].isr_nodes.len() == 1,
    );
    (brokers, leader, follower, bystander)
}

/// The follower comes back, copies the compacted log and rejoins the ISR; then the leader
/// dies (kill -9) and the follower leads.
fn follower_back_then_leader_dies(
    brokers: &mut [Broker],
    topic: &str,
    (leader, follower, bystander): (i32, i32, usize),
) {
    brokers[idx(follower)].pause(false);
    wait_for(
        &brokers[bystander],
        topic,
        "the follower copies the compacted log and rejoins the ISR",
        |t| t.partitions[0].isr_nodes.len() == 2,
    );
    brokers[idx(leader)].kill9();
    wait_for(&brokers[bystander], topic, "the follower leads", |t| {
        t.partitions[0].leader_id.0 == follower
    });
}

#[test]
fn a_follower_copies_a_compacted_leader_and_leads_with_the_latest_value_of_every_key() {
    // The follower is away while the leader takes 3,000 values of 50 keys (in batches of
    // ten, so whole batches go and leave gaps), tombstones of five, and records that push
    // them out of the active segment, and compacts them.
    let (mut brokers, leader, follower, bystander) =
        cluster_with_follower_away("compaction-replicas", &HOSTS, TOPIC);
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

    // Back, the follower copies the compacted log and rejoins the ISR; the leader dies;
    // the follower leads with the same records at the same offsets.
    follower_back_then_leader_dies(&mut brokers, TOPIC, (leader, follower, bystander));
    wait_compacted(
        &brokers[bystander],
        TOPIC,
        &expected,
        Duration::from_secs(30),
    );
}

const PRODUCER_HOSTS: [&str; 3] = ["127.0.0.154", "127.0.0.155", "127.0.0.156"];
const PRODUCER_TOPIC: &str = "compacted-producer";

/// DescribeProducers of partition 0 of `PRODUCER_TOPIC` at `broker`: (producer id, epoch,
/// last sequence) of each.
fn producers_at(broker: &Broker) -> Vec<(i64, i16, i32)> {
    let r = broker.net().send_at(
        0,
        &DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(TopicName(StrBytes::from_static_str(PRODUCER_TOPIC)))
                .with_partition_indexes(vec![0]),
        ]),
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "DescribeProducers at broker: {p:?}");
    p.active_producers
        .iter()
        .map(|a| (a.producer_id.0, a.producer_epoch as i16, a.last_sequence))
        .collect()
}

/// The record batches of partition 0 at `broker` from offset 0, as their headers.
fn batch_headers(broker: &Broker) -> Vec<BatchHeader> {
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(8 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(PRODUCER_TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(8 << 20)])]);
    let r = broker.net().send_at(12, &fetch);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "Fetch at the leader: {p:?}");
    let mut records = p.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    while records.len() >= 61 {
        let h = BatchHeader::parse(&records).expect("a batch header");
        out.push(h);
        let _ = records.split_to(h.total_bytes().min(records.len()));
    }
    out
}

/// An idempotent producer whose records were all compacted away stays known. The cleaner
/// keeps its last batch as a header without records (Kafka's RETAIN_EMPTY), so a follower
/// that copies the compacted log and then leads reports the producer (DescribeProducers)
/// with the epoch and last sequence the old leader reported, and a consumer reads past the
/// empty batch. Before, the batch went with its records: producer state lived only in
/// snapshots beside the leader's log, which are not replicated, so the new leader rebuilt
/// it from a log without the producer.
#[test]
fn an_idempotent_producer_whose_records_were_compacted_away_stays_known_to_a_new_leader() {
    // The follower is away while an idempotent producer writes ten keys, other records
    // supersede every one of them and fill closed segments, and the leader compacts.
    let (mut brokers, leader, follower, bystander) =
        cluster_with_follower_away("compaction-producer", &PRODUCER_HOSTS, PRODUCER_TOPIC);
    let idempotent = brokers[bystander].producer("all", &[("enable.idempotence", "true")]);
    let first: Vec<(String, Option<String>)> = (0..10)
        .map(|i| (format!("key-{i}"), Some(format!("first-{i}"))))
        .collect();
    let mut sent: Vec<_> = first
        .clone()
        .into_iter()
        .zip(send(&idempotent, PRODUCER_TOPIC, &first))
        .collect();
    let before = producers_at(&brokers[idx(leader)]);
    assert_eq!(before.len(), 1, "one idempotent producer: {before:?}");
    assert_eq!(before[0].2, 9, "ten records, sequences 0..=9: {before:?}");
    let pid = before[0].0;

    let plain =
        brokers[bystander].producer("1", &[("linger.ms", "5"), ("batch.num.messages", "10")]);
    for recs in [
        (0..2000)
            .map(|i| {
                (
                    format!("key-{}", i % 10),
                    Some(format!("later-{i}-{}", "x".repeat(150))),
                )
            })
            .collect::<Vec<_>>(),
        (0..40)
            .map(|i| (format!("filler-{i}"), Some("f".repeat(1000))))
            .collect(),
    ] {
        let offsets = send(&plain, PRODUCER_TOPIC, &recs);
        sent.extend(recs.into_iter().zip(offsets));
    }
    let expected = latest(&sent);
    assert!(
        expected.keys().all(|&o| o >= 10),
        "every record of the idempotent producer is superseded"
    );
    // librdkafka's consumer reads the compacted partition, the empty batch included.
    wait_compacted(
        &brokers[idx(leader)],
        PRODUCER_TOPIC,
        &expected,
        Duration::from_secs(60),
    );
    let headers = batch_headers(&brokers[idx(leader)]);
    let kept: Vec<&BatchHeader> = headers.iter().filter(|h| h.producer_id == pid).collect();
    assert_eq!(
        kept.len(),
        1,
        "the producer's last batch stays, alone of its batches: {kept:?}"
    );
    assert_eq!(
        (
            kept[0].record_count,
            kept[0].last_offset(),
            kept[0].base_sequence + kept[0].last_offset_delta
        ),
        (0, sent[9].1, 9),
        "as an empty header ending at the producer's last offset and sequence: {:?}",
        kept[0]
    );

    // Back, the follower copies the compacted log; the leader dies; the follower leads
    // and knows the producer as the old leader did.
    follower_back_then_leader_dies(&mut brokers, PRODUCER_TOPIC, (leader, follower, bystander));
    assert_eq!(
        producers_at(&brokers[idx(follower)]),
        before,
        "the new leader, whose log came from the compacted leader, knows the idempotent producer"
    );
    wait_compacted(
        &brokers[idx(follower)],
        PRODUCER_TOPIC,
        &expected,
        Duration::from_secs(30),
    );
}
