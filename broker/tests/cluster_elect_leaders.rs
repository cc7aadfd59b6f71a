//! ElectLeaders on a three-broker cluster whose controller does not move leadership back on
//! its own (`auto_leader_rebalance = false`): the preferred replica's broker is killed, so
//! another replica leads; while it is down a preferred election answers
//! PREFERRED_LEADER_NOT_AVAILABLE; once it is back in the ISR the election moves the
//! leadership to it through the metadata raft group (a new leader epoch, seen by every
//! broker), and a second one answers ELECTION_NOT_NEEDED, as does an unclean one while
//! the leader is alive.

mod common;

use std::time::Duration;

use common::cluster::{
    settled_topic_metadata, start_cluster, topic_metadata, wait_agreed, wait_topic,
};
use common::{block_on, topic_name, Broker};
use rill_net::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use rill_net::kafka_protocol::messages::{elect_leaders_request, ElectLeadersRequest};
use rill_net::ErrorCode;

const HOSTS: [&str; 3] = ["127.0.0.91", "127.0.0.92", "127.0.0.93"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 4000\nauto_leader_rebalance = false\n";
const TOPIC: &str = "elected";

/// One election of partition 0 sent to `broker`; the partition's error code.
fn elect(broker: &Broker, election_type: i8) -> i16 {
    let r = broker.net().send_at(
        2,
        &ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_timeout_ms(30_000)
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
            )
            .with_topic(topic_name(TOPIC))
            .with_partitions(vec![0])])),
    );
    assert_eq!(r.error_code, 0, "{r:?}");
    r.replica_election_results[0].partition_result[0].error_code
}

/// Polls `broker`'s metadata of the topic until `ok` holds (at most 30 s).
fn wait_for(
    broker: &Broker,
    what: &str,
    ok: impl Fn(&MetadataResponseTopic) -> bool,
) -> MetadataResponseTopic {
    wait_topic(broker, TOPIC, what, Duration::from_secs(30), ok)
}

#[test]
fn a_preferred_election_moves_leadership_back_once_the_preferred_replica_caught_up() {
    let mut brokers = start_cluster("elect", &HOSTS, CONFIG);
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(20),
    );
    let admin = brokers[0].admin();
    let new = rdkafka::admin::NewTopic::new(TOPIC, 1, rdkafka::admin::TopicReplication::Fixed(3));
    let created =
        block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(created[0].is_ok(), "{created:?}");
    let before = settled_topic_metadata(&brokers[0], TOPIC, 1);
    let p = &before.partitions[0];
    let preferred = p.replica_nodes[0].0;
    assert_eq!(
        p.leader_id.0, preferred,
        "a new partition is led by its preferred replica"
    );
    assert_eq!(elect(&brokers[0], 0), ErrorCode::ElectionNotNeeded.code());

    // The preferred replica's broker dies: another in-sync replica takes over.
    let down = (preferred - 1) as usize;
    let other = (down + 1) % 3;
    brokers[down].kill9();
    let moved = wait_for(&brokers[other], "a new leader after the kill", |t| {
        let l = t.partitions[0].leader_id.0;
        l >= 0 && l != preferred
    });
    assert_eq!(
        elect(&brokers[other], 0),
        ErrorCode::PreferredLeaderNotAvailable.code(),
        "the preferred replica is down"
    );

    // Back and caught up, it does not lead again by itself (auto_leader_rebalance off)...
    brokers[down].restart();
    wait_for(
        &brokers[other],
        "the preferred replica back in the ISR",
        |t| t.partitions[0].isr_nodes.iter().any(|b| b.0 == preferred),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let still = topic_metadata(&brokers[other], TOPIC);
    assert_ne!(still.partitions[0].leader_id.0, preferred, "{still:?}");
    // ...until ElectLeaders asks for it.
    assert_eq!(elect(&brokers[other], 0), 0, "the preferred election");
    for b in brokers.iter() {
        let after = wait_for(b, "every broker sees the preferred leader", |t| {
            t.partitions[0].leader_id.0 == preferred
        });
        assert!(
            after.partitions[0].leader_epoch > moved.partitions[0].leader_epoch,
            "a new leader epoch: {after:?}"
        );
    }
    assert_eq!(
        elect(&brokers[other], 0),
        ErrorCode::ElectionNotNeeded.code()
    );
    assert_eq!(
        elect(&brokers[other], 1),
        ErrorCode::ElectionNotNeeded.code(),
        "unclean, leader alive"
    );
}
