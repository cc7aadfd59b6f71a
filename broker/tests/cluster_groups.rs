//! Consumer groups in a 3-broker cluster: `__consumer_offsets` is a cluster topic and the
//! leader of a group's partition of it coordinates the group. Two rdkafka members
//! bootstrapped on different brokers find the same coordinator (FindCoordinator on every
//! broker names it), share a replication-factor-3 topic and read each record once; a
//! broker that is not the coordinator answers the group's requests with NOT_COORDINATOR.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::block_on;
use common::cluster::{start_cluster, wait_agreed};
use common::groups::{close_bounded, TestGroup};
use common::NetClient;
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::{FindCoordinatorRequest, GroupId, HeartbeatRequest};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

const HOSTS: [&str; 3] = ["127.0.0.17", "127.0.0.18", "127.0.0.19"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\noffsets_topic_partitions = 3\ngroup_initial_rebalance_delay_ms = 0\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";
const TOPIC: &str = "shared-in-cluster";
const GROUP: &str = "cluster-readers";

#[test]
fn one_coordinator_per_group_across_the_cluster() {
    let brokers = start_cluster("cluster-groups", &HOSTS, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 6, TopicReplication::Fixed(3));
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "{r:?}");

    // Every broker names the same coordinator.
    let coordinators: BTreeSet<i32> = brokers
        .iter()
        .map(|b| {
            let mut net = NetClient::connect(b.addr());
            let r = net.send_at(
                3,
                &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(GROUP)),
            );
            assert_eq!(
                r.error_code,
                0,
                "FindCoordinator on {}: {r:?}",
                b.bootstrap()
            );
            r.node_id.0
        })
        .collect();
    assert_eq!(
        coordinators.len(),
        1,
        "brokers disagree on the coordinator: {coordinators:?}"
    );
    let coordinator = *coordinators.iter().next().unwrap();
    let other = brokers
        .iter()
        .find(|b| b.bootstrap() != brokers[(coordinator - 1) as usize].bootstrap())
        .unwrap();
    let mut net = NetClient::connect(other.addr());
    let hb = net.send(
        &HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_generation_id(1)
            .with_member_id(StrBytes::from_static_str("m")),
    );
    assert_eq!(hb.error_code, ErrorCode::NotCoordinator.code(), "{hb:?}");

    let mut group = TestGroup::new(TOPIC);
    group.add("a", brokers[0].group_consumer(GROUP, "a", &[]));
    group.add("c", brokers[2].group_consumer(GROUP, "c", &[]));
    group.wait_balanced(6, Duration::from_secs(30));
    group.produce(&brokers[1], 6, "rec", 300);
    group.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    for name in ["a", "c"] {
        let c = group.remove(name);
        close_bounded(c, name, Duration::from_secs(30));
    }
}
