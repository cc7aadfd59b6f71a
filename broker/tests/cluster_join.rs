//! A fourth broker joins a running 3-voter cluster as a learner (`--raft-listen`, its
//! node id not in `--controller-quorum`): every broker then lists four brokers and one
//! controller, new replicated topics are placed on it too, and a Kafka client produces
//! through it and consumes what it leads from another broker. The learner follows a new
//! controller after the old one is killed, a restarted voter reaches it again (its raft
//! address is in the metadata log), and a restarted learner comes back as a member.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::{
    produce_each_partition, settled_topic_metadata, start_cluster, start_learner, wait_agreed,
    wait_one_cluster_id,
};
use common::{block_on, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};

const HOSTS: [&str; 3] = ["127.0.0.31", "127.0.0.32", "127.0.0.33"];
const LEARNER_HOST: &str = "127.0.0.34";
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";
const TOPIC: &str = "joined";
const PARTITIONS: i32 = 8;

fn produce(broker: &Broker, label: &str, per_partition: usize) {
    produce_each_partition(broker, TOPIC, PARTITIONS, label, per_partition);
}

#[test]
fn a_fourth_broker_joins_as_a_learner_and_takes_replicas() {
    let mut brokers = start_cluster("cluster-join", &HOSTS, CONFIG);
    let three: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &three, Duration::from_secs(20));
    let cluster_id = wait_one_cluster_id(&brokers, &[0, 1, 2]);

    let started = std::time::Instant::now();
    brokers.push(start_learner(
        "cluster-join-4",
        &brokers[0],
        4,
        LEARNER_HOST,
        CONFIG,
    ));
    let four: BTreeSet<i32> = [1, 2, 3, 4].into();
    let controller = wait_agreed(&brokers, &[0, 1, 2, 3], &four, Duration::from_secs(20));
    eprintln!("broker 4 joined in {:?}", started.elapsed());
    assert_eq!(
        wait_one_cluster_id(&brokers, &[0, 1, 2, 3]),
        cluster_id,
        "the learner reports another cluster id"
    );
    assert!(
        three.contains(&controller),
        "a learner became controller: {controller}"
    );

    // Created through the learner (forwarded to the controller), placed over all four.
    let admin = brokers[3].admin();
    let new = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3));
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "CreateTopics through the learner: {r:?}");
    let t = settled_topic_metadata(&brokers[3], TOPIC, PARTITIONS as usize);
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    let mut holds: BTreeMap<i32, usize> = BTreeMap::new();
    for p in &t.partitions {
        *leads.entry(p.leader_id.0).or_default() += 1;
        for r in &p.replica_nodes {
            *holds.entry(r.0).or_default() += 1;
        }
    }
    assert_eq!(
        holds.keys().copied().collect::<BTreeSet<i32>>(),
        four,
        "replicas not spread over the four brokers: {holds:?}"
    );
    assert_eq!(
        holds.values().sum::<usize>(),
        3 * PARTITIONS as usize,
        "{holds:?}"
    );
    assert!(
        leads.get(&4).is_some_and(|&n| n >= 1),
        "broker 4 leads nothing: {leads:?}"
    );
    for b in &brokers[..3] {
        settled_topic_metadata(b, TOPIC, PARTITIONS as usize);
    }

    // A client bootstrapping from the learner produces to every partition's leader, and
    // another broker's clients read it all back.
    produce(&brokers[3], "one", 5);
    let consumer = brokers[0].consumer(&[]);
    common::assign(
        &consumer,
        TOPIC,
        &(0..PARTITIONS).collect::<Vec<_>>(),
        rdkafka::Offset::Beginning,
    );
    let got = common::consume_exactly(&consumer, 5 * PARTITIONS as usize, Duration::from_secs(30));
    assert_eq!(got.len(), 5 * PARTITIONS as usize);
    drop(consumer);

    // The controller dies: the learner follows the new one.
    let dead = (controller - 1) as usize;
    brokers[dead].kill9();
    let alive: Vec<usize> = (0..4).filter(|&i| i != dead).collect();
    let rest: BTreeSet<i32> = four.iter().copied().filter(|&b| b != controller).collect();
    let new_controller = wait_agreed(&brokers, &alive, &rest, Duration::from_secs(20));
    assert_ne!(new_controller, controller);
    assert_ne!(new_controller, 4, "a learner became controller");

    // The voter comes back and reaches the learner (its address is in the log).
    brokers[dead].restart();
    wait_agreed(&brokers, &[0, 1, 2, 3], &four, Duration::from_secs(20));

    // The learner restarts: it is a member already and comes back as one.
    brokers[3].kill9();
    let voters_only: BTreeSet<i32> = three.clone();
    wait_agreed(&brokers, &[0, 1, 2], &voters_only, Duration::from_secs(20));
    brokers[3].restart();
    wait_agreed(&brokers, &[0, 1, 2, 3], &four, Duration::from_secs(20));
    let log = brokers[3].stderr_of_start(2);
    assert!(
        !log.contains("asking the voters to add"),
        "the restarted learner asked to join again"
    );
    produce(&brokers[3], "two", 2);
    for b in &mut brokers {
        b.assert_alive();
    }
}
