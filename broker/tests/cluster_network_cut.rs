//! A broker cut off the network (its own network namespace's link taken down: the process
//! keeps running, nothing reaches it) is fenced by the controller once its heartbeats stop
//! arriving, and the partitions it led get new leaders among the others; when the link
//! comes back it heartbeats again, is unfenced and listed by every broker, without a
//! restart. Brokers run on test hosts of their own (network namespaces on a bridge).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::block_on;
use common::cluster::{settled_topic_metadata, start_cluster_in, topic_metadata, wait_agreed};
use common::netns::test_net_or_skip;
use rdkafka::admin::{NewTopic, TopicReplication};

const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";
const TOPIC: &str = "cut";

#[test]
fn a_broker_cut_off_is_fenced_its_leaderships_move_and_it_rejoins() {
    let Some(net) = test_net_or_skip("nc", 31, 3, "fencing of a broker cut off the network") else {
        return;
    };
    let hosts: Vec<String> = (0..3).map(|i| net.host(i)).collect();
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let namespaces: Vec<String> = (0..3).map(|i| net.namespace(i)).collect();
    let mut brokers = start_cluster_in("cluster-cut", &host_refs, &namespaces, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 6, TopicReplication::Fixed(3));
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "{r:?}");
    let before = settled_topic_metadata(&brokers[0], TOPIC, 6);
    let victim = 3;
    assert!(
        before.partitions.iter().any(|p| p.leader_id.0 == victim),
        "broker {victim} leads nothing: {before:?}"
    );

    net.cut((victim - 1) as usize);
    let cut_at = Instant::now();
    let rest: BTreeSet<i32> = [1, 2].into();
    wait_agreed(&brokers, &[0, 1], &rest, Duration::from_secs(20));
    let fenced_after = cut_at.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = topic_metadata(&brokers[0], TOPIC);
        if t.partitions.iter().all(|p| rest.contains(&p.leader_id.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaders did not move off the cut broker: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "cut broker fenced after {fenced_after:?}, leaders moved after {:?}",
        cut_at.elapsed()
    );
    assert!(
        brokers[(victim - 1) as usize].is_running(),
        "the cut broker should still run"
    );

    net.heal((victim - 1) as usize);
    let healed_at = Instant::now();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(30));
    eprintln!(
        "back in the cluster {:?} after the link came up",
        healed_at.elapsed()
    );
    for b in &mut brokers {
        b.assert_alive();
    }
    drop(brokers);
    drop(net);
}
