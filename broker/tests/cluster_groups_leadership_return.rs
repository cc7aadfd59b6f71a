//! A group coordinator that loses its `__consumer_offsets` partition and later leads it
//! again serves what was committed meanwhile. A broker paused (SIGSTOP) past its session
//! loses its leaderships; the group's offsets are committed at the new leader; once the
//! paused broker is back in sync, the controller moves leadership back to it (the
//! preferred replica). It must then answer OffsetFetch with the new leader's commits, not
//! with what it held in memory before the pause: Kafka's coordinator unloads a partition's
//! groups when it resigns and loads them again from the log when it is elected.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{agreed_cluster_with_topic, wait_topic};
use common::{Broker, NetClient};
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;

const HOSTS: [&str; 3] = ["127.0.0.157", "127.0.0.158", "127.0.0.159"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\noffsets_topic_partitions = 1\ngroup_initial_rebalance_delay_ms = 0\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 2000\n";
const TOPIC: &str = "leadership-return";
const GROUP: &str = "returning-coordinator";
const OFFSETS: &str = "__consumer_offsets";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The node FindCoordinator at `broker` names for the group, once it names one.
fn coordinator(broker: &Broker) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = NetClient::connect(broker.addr())
            .send_at(3, &FindCoordinatorRequest::default().with_key(s(GROUP)));
        if r.error_code == 0 {
            return r.node_id.0;
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator for the group: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Commits `offset` for partition 0 of the topic, as a consumer without a group
/// membership does (generation -1), at `broker`, until the coordinator takes it.
fn commit(broker: &Broker, offset: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = NetClient::connect(broker.addr()).send_at(
            8,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(s(""))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(TOPIC)))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(offset),
                        ]),
                ]),
        );
        let code = r.topics[0].partitions[0].error_code;
        if code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "committing {offset} at {}: error {code}",
            broker.bootstrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The offset `broker` answers OffsetFetch with for partition 0 of the topic.
fn fetched(broker: &Broker) -> (i16, i64) {
    let r = NetClient::connect(broker.addr()).send_at(
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partition_indexes(vec![0]),
            ])),
    );
    let p = &r.topics[0].partitions[0];
    (r.error_code.max(p.error_code), p.committed_offset)
}

#[test]
fn a_coordinator_leading_its_offsets_partition_again_serves_what_was_committed_meanwhile() {
    let mut brokers = agreed_cluster_with_topic(
        "groups-return",
        &HOSTS,
        CONFIG,
        &NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)),
    );

    // The first coordinator takes a commit of 10.
    let first = coordinator(&brokers[0]);
    let a = (first - 1) as usize;
    let other = (a + 1) % 3;
    commit(&brokers[a], 10);
    assert_eq!(fetched(&brokers[a]), (0, 10));

    // Paused past its session, it loses the offsets partition; the new coordinator takes
    // a commit of 20.
    brokers[a].pause(true);
    wait_topic(
        &brokers[other],
        OFFSETS,
        "another broker leads the offsets partition",
        Duration::from_secs(60),
        |t| {
            let l = t.partitions[0].leader_id.0;
            l >= 1 && l != first
        },
    );
    let second = coordinator(&brokers[other]);
    assert_ne!(second, first);
    let b = (second - 1) as usize;
    commit(&brokers[b], 20);
    assert_eq!(fetched(&brokers[b]), (0, 20));

    // Back and in sync, the preferred replica leads the offsets partition again.
    brokers[a].pause(false);
    wait_topic(
        &brokers[other],
        OFFSETS,
        "the first coordinator leads the offsets partition again",
        Duration::from_secs(60),
        |t| t.partitions[0].leader_id.0 == first,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = fetched(&brokers[a]);
        if seen.0 == 0 || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        seen,
        (0, 20),
        "the coordinator leading its offsets partition again answered from before it lost it"
    );
    for b in &mut brokers {
        b.assert_alive();
    }
}
