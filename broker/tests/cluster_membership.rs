//! Three brokers on their own loopback addresses (127.0.0.11-13) form one cluster through
//! the metadata raft group: every broker's Metadata and DescribeCluster list all three and
//! name the same controller. kill -9 of the controller: the other two elect a new one
//! within seconds, and once the killed broker's session runs out it is fenced (dropped from
//! the broker lists); restarted, it registers again and every broker lists it.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{free_port, Broker, BrokerOptions, NetClient};
use rill_net::kafka_protocol::messages::DescribeClusterRequest;

const HOSTS: [&str; 3] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
const CONFIG: &str =
    "metrics_listen = \"\"\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";

/// (broker ids, controller id) as `broker` answers DescribeCluster.
fn cluster_of(broker: &Broker) -> (BTreeSet<i32>, i32) {
    let mut net = NetClient::connect(broker.addr());
    let r = net.send(&DescribeClusterRequest::default());
    assert_eq!(r.error_code, 0, "DescribeCluster: {r:?}");
    (
        r.brokers.iter().map(|b| b.broker_id.0).collect(),
        r.controller_id.0,
    )
}

/// Waits until every broker in `brokers` (by index) answers with exactly `want` and one
/// common controller; returns the controller.
fn wait_agreed(brokers: &[Broker], alive: &[usize], want: &BTreeSet<i32>, within: Duration) -> i32 {
    let started = Instant::now();
    loop {
        let views: Vec<(BTreeSet<i32>, i32)> =
            alive.iter().map(|&i| cluster_of(&brokers[i])).collect();
        let controller = views[0].1;
        if controller >= 1 && views.iter().all(|(b, c)| b == want && *c == controller) {
            return controller;
        }
        assert!(
            started.elapsed() < within,
            "brokers {alive:?} did not agree on brokers {want:?} and one controller within {within:?}: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_brokers_form_a_cluster_and_survive_losing_the_controller() {
    let raft_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let quorum: String = HOSTS
        .iter()
        .zip(&raft_ports)
        .enumerate()
        .map(|(i, (h, p))| format!("{}@{h}:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut brokers: Vec<Broker> = HOSTS
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let mut o = BrokerOptions::with_config(CONFIG);
            o.shards = 1;
            o.host = host.to_string();
            o.extra_args = vec![
                "--node-id".into(),
                (i + 1).to_string(),
                "--controller-quorum".into(),
                quorum.clone(),
            ];
            Broker::start_with(&format!("cluster-{}", i + 1), o)
        })
        .collect();
    let all: BTreeSet<i32> = [1, 2, 3].into();
    let started = Instant::now();
    let controller = wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    eprintln!(
        "cluster formed in {:?}, controller {controller}",
        started.elapsed()
    );

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
    // Its session runs out: fenced, no longer listed.
    let without: BTreeSet<i32> = all.iter().copied().filter(|&b| b != controller).collect();
    wait_agreed(&brokers, &survivors, &without, Duration::from_secs(15));
    eprintln!("broker {controller} fenced after {:?}", killed.elapsed());

    // Back: it registers again.
    brokers[dead].restart();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    for b in &mut brokers {
        b.assert_alive();
    }
}
