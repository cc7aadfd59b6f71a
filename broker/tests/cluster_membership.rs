//! Three brokers on their own loopback addresses (127.0.0.11-13) form one cluster through
//! the metadata raft group: every broker's Metadata and DescribeCluster list all three and
//! name the same controller and cluster id. kill -9 of the controller: the other two elect a new one
//! within seconds and creating a topic works again, and once the killed broker's session
//! runs out it is fenced (dropped from the broker lists); restarted, it registers again and
//! every broker lists it.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{cluster_of, start_cluster, wait_agreed, wait_one_cluster_id};
use common::Broker;

const HOSTS: [&str; 3] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
const CONFIG: &str =
    "metrics_listen = \"\"\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";

#[test]
fn three_brokers_form_a_cluster_and_survive_losing_the_controller() {
    let mut brokers: Vec<Broker> = start_cluster("cluster", &HOSTS, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    let started = Instant::now();
    let controller = wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    eprintln!(
        "cluster formed in {:?}, controller {controller}",
        started.elapsed()
    );
    let cluster_id = wait_one_cluster_id(&brokers, &[0, 1, 2]);

    // The controller dies.
    let dead = (controller - 1) as usize;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    brokers[dead].kill9();
    let killed = Instant::now();
    let started = Instant::now();
    let new_controller = loop {
        let views: Vec<(BTreeSet<i32>, i32)> =
            survivors.iter().map(|&i| cluster_of(&brokers[i])).collect();
        let c = views[0].1;
        if c >= 1 && c != controller && views.iter().all(|(_, vc)| *vc == c) {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no new controller within 10 s of killing {controller}: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "new controller {new_controller} after {:?}",
        killed.elapsed()
    );
    // Topic creation works again through the new controller.
    let admin = brokers[survivors[0]].admin();
    let new = rdkafka::admin::NewTopic::new(
        "after-failover",
        2,
        rdkafka::admin::TopicReplication::Fixed(2),
    );
    let r = common::block_on(admin.create_topics([&new], &common::admin_options()))
        .expect("CreateTopics after the controller died");
    assert!(
        r[0].is_ok(),
        "CreateTopics after the controller died: {r:?}"
    );
    eprintln!("topic created {:?} after the kill", killed.elapsed());
    // Its session runs out: fenced, no longer listed.
    let without: BTreeSet<i32> = all.iter().copied().filter(|&b| b != controller).collect();
    wait_agreed(&brokers, &survivors, &without, Duration::from_secs(15));
    eprintln!("broker {controller} fenced after {:?}", killed.elapsed());

    // Back: it registers again.
    brokers[dead].restart();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    assert_eq!(
        wait_one_cluster_id(&brokers, &[0, 1, 2]),
        cluster_id,
        "the cluster id changed across a controller failover"
    );
    for b in &mut brokers {
        b.assert_alive();
    }
}
