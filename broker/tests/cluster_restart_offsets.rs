//! A broker killed (-9) and restarted within the session timeout never tells a client that
//! the latest offset of a partition is below what was already acknowledged: it starts from
//! its checkpointed high watermark, and while a leader does not know its high watermark yet
//! it answers OFFSET_NOT_AVAILABLE (retriable), as Kafka does. Before the checkpoint, a
//! restarted broker answered ListOffsets with 0 for up to 2.2 s in chaos runs.
//!
//! The restart is a new incarnation of the broker (KIP-380): its log may have lost what it
//! had not synced, so it does not keep leading at the old leader epoch; the controller hands
//! its leadership to another in-sync replica (a new epoch) before it may lead again.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{agreed_cluster_with_topic, settled_topic_metadata, topic_metadata};
use common::produce_in_order;
use common::Broker;
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use rill_net::kafka_protocol::messages::ListOffsetsRequest;
use rill_net::ErrorCode;

const HOSTS: [&str; 3] = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 6000\nreplica_lag_time_max_ms = 4000\n";
const TOPIC: &str = "restart-offsets";
const RECORDS: usize = 200;

/// ListOffsets latest of partition 0 at `broker`: the offset, or the error.
fn latest(broker: &Broker) -> Result<i64, ErrorCode> {
    let mut net = broker.net();
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(common::topic_name(TOPIC))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let r = net.send(&request);
    let p = &r.topics[0].partitions[0];
    match ErrorCode::from_code(p.error_code) {
        Some(ErrorCode::None) => Ok(p.offset),
        Some(code) => Err(code),
        None => panic!("unknown error code {}", p.error_code),
    }
}

#[test]
fn a_restarted_broker_never_answers_a_latest_offset_below_what_was_acknowledged() {
    let mut brokers = agreed_cluster_with_topic(
        "restart-offsets",
        &HOSTS,
        CONFIG,
        &NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)),
    );
    let placed = settled_topic_metadata(&brokers[0], TOPIC, 1);
    let leader = placed.partitions[0].leader_id.0;
    let epoch_before = placed.partitions[0].leader_epoch;
    let l = (leader - 1) as usize;
    let producer = brokers[(l + 1) % 3].producer("all", &[]);
    produce_in_order(&producer, TOPIC, 0, (0..RECORDS).map(|i| format!("r{i}")));
    assert_eq!(latest(&brokers[l]), Ok(RECORDS as i64));
    // Long enough for a high-watermark checkpoint, short of the session timeout.
    std::thread::sleep(Duration::from_millis(1500));
    brokers[l].kill9();
    brokers[l].restart();
    let until = Instant::now() + Duration::from_secs(4);
    let mut answers = Vec::new();
    while Instant::now() < until {
        let a = latest(&brokers[l]);
        if let Ok(offset) = a {
            assert!(
                offset >= RECORDS as i64,
                "the restarted broker answered latest offset {offset} with {RECORDS} records acknowledged (answers so far: {answers:?})"
            );
        }
        answers.push(a);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(answers.len() > 20, "only {} answers", answers.len());
    eprintln!(
        "answers after the restart: {} ok, errors {:?}",
        answers.iter().filter(|a| a.is_ok()).count(),
        answers
            .iter()
            .filter_map(|a| a.err())
            .map(|c| c.name())
            .collect::<BTreeSet<_>>()
    );
    // The restarted incarnation did not go on leading at the old epoch.
    let other = (l + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let p = &topic_metadata(&brokers[other], TOPIC).partitions[0];
        if p.leader_epoch > epoch_before && p.leader_id.0 > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker {leader} restarted and still leads at epoch {epoch_before}: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for b in &mut brokers {
        b.assert_alive();
    }
}
