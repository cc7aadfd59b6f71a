//! Only the cluster's brokers fetch as replicas. A follower's fetch offset moves the
//! leader's high watermark, so a client that claims a follower's replica id in Fetch could
//! make consumers see records no other replica holds (and acks=all answer for them). A
//! follower's fetcher presents the cluster's broker token (kept in the metadata raft log,
//! never sent to clients); a fetch naming a replica id without it gets
//! CLUSTER_AUTHORIZATION_FAILED and changes nothing.

mod common;

use std::time::Duration;

use common::cluster::{agreed_cluster_with_topic, settled_topic_metadata};
use common::produce_in_order;
use common::{topic_name, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use rill_net::kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest};
use rill_net::ErrorCode;

const HOSTS: [&str; 3] = ["127.0.0.91", "127.0.0.92", "127.0.0.93"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 60000\nreplica_lag_time_max_ms = 60000\n";
const TOPIC: &str = "impostor";

fn produce(broker: &Broker, acks: &str, n: usize) {
    produce_in_order(
        &broker.producer(acks, &[]),
        TOPIC,
        0,
        (0..n).map(|i| format!("v{i}")),
    );
}

fn high_watermark(broker: &Broker) -> i64 {
    let r = broker.net().send(
        &ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]),
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets: {p:?}");
    p.offset
}

#[test]
fn a_client_posing_as_a_follower_cannot_move_the_high_watermark() {
    let mut brokers = agreed_cluster_with_topic(
        "impostor",
        &HOSTS,
        CONFIG,
        &NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)),
    );
    let p = settled_topic_metadata(&brokers[0], TOPIC, 1).partitions[0].clone();
    let leader = (p.leader_id.0 - 1) as usize;
    let follower = (leader + 1) % 3;
    produce(&brokers[leader], "all", 10);
    assert_eq!(high_watermark(&brokers[leader]), 10);
    // One follower stops fetching (paused, still in the ISR): the high watermark stays.
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(brokers[follower].pid() as libc::pid_t, libc::SIGSTOP);
    }
    produce(&brokers[leader], "1", 20);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(high_watermark(&brokers[leader]), 10);
    // A client claims to be that follower, holding everything.
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId((follower + 1) as i32))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(30)
                .with_partition_max_bytes(1 << 20)])]);
    let answer = brokers[leader].net().send(&fetch);
    assert_eq!(
        answer.error_code,
        ErrorCode::ClusterAuthorizationFailed.code(),
        "a fetch posing as broker {} was taken: {answer:?}",
        follower + 1
    );
    assert_eq!(
        high_watermark(&brokers[leader]),
        10,
        "the high watermark moved past what the paused follower holds"
    );
    // SAFETY: as above.
    unsafe {
        libc::kill(brokers[follower].pid() as libc::pid_t, libc::SIGCONT);
    }
    // The real follower catches up and the high watermark reaches the log end.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while high_watermark(&brokers[leader]) < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "the follower did not catch up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for b in &mut brokers {
        b.assert_alive();
    }
}
