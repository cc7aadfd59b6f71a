//! While a cluster forms, no client is told a cluster id other than the cluster's: a broker
//! that does not know the id yet (no quorum of the metadata raft voters so far) holds its
//! clients' requests until it does. Before, the first broker of a forming cluster answered
//! Metadata at once with a provisional id of its own, so a client briefly saw two clusters.
//! Meanwhile the waiting broker says in its log what it waits for.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::cluster::wait_one_cluster_id;
use common::{free_port, Broker, BrokerOptions, NetClient};
use rill_net::kafka_protocol::messages::MetadataRequest;

const HOSTS: [&str; 3] = ["127.0.0.71", "127.0.0.72", "127.0.0.73"];
const CONFIG: &str =
    "metrics_listen = \"\"\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";

fn voter(i: usize, quorum: &str) -> BrokerOptions {
    let mut o = BrokerOptions::with_config(CONFIG);
    o.shards = 1;
    o.host = HOSTS[i].to_string();
    o.extra_args = vec![
        "--node-id".into(),
        (i + 1).to_string(),
        "--controller-quorum".into(),
        quorum.to_string(),
    ];
    o
}

#[test]
fn a_forming_clusters_brokers_never_answer_with_a_provisional_id() {
    let raft_port = free_port();
    let quorum = HOSTS
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{}@{h}:{raft_port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let first = Broker::start_with("forming-1", voter(0, &quorum));
    // Alone, it cannot know the cluster's id: a client's request waits.
    let addr = first.addr();
    let asked = Instant::now();
    let client = thread::spawn(move || {
        let mut net = NetClient::connect(addr);
        let r = net.send(&MetadataRequest::default().with_topics(None));
        (
            r.cluster_id.map(|c| c.to_string()).unwrap_or_default(),
            asked.elapsed(),
        )
    });
    // And it says what it waits for (issue 15: a restarted broker once waited 5 minutes
    // after "metadata raft member started" without a word of why).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !first
        .stderr_of_start(1)
        .contains("the metadata raft member is waiting for a quorum of the metadata raft voters")
    {
        assert!(
            Instant::now() < deadline,
            "a broker without a quorum did not say within 15 s what it waits for\n{}",
            first.log_tail(1)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let mut brokers = vec![first];
    for i in 1..3 {
        brokers.push(Broker::start_with(
            &format!("forming-{}", i + 1),
            voter(i, &quorum),
        ));
    }
    let (seen, waited) = client.join().expect("the client thread panicked");
    let cluster_id = wait_one_cluster_id(&brokers, &[0, 1, 2]);
    assert_eq!(
        seen, cluster_id,
        "the first broker answered with another cluster id than the cluster's"
    );
    assert!(
        waited >= Duration::from_millis(1000),
        "the first broker answered after {waited:?}, before the cluster could have an id"
    );
    for b in &mut brokers {
        b.assert_alive();
    }
}
