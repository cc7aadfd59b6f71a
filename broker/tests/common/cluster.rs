//! Cluster helpers: several `rill broker` processes on their own loopback addresses
//! (127.0.0.x), voters of the metadata raft group (and learners that join it), and the checks that read
//! what each broker says about the cluster (DescribeCluster, Metadata).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rill_net::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use rill_net::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use rill_net::kafka_protocol::messages::{DescribeClusterRequest, MetadataRequest};

use super::{free_port, topic_name, Broker, BrokerOptions, NetClient};

/// A cluster of three (as [`start_cluster`]) once every broker agrees on its members and
/// controller, with `topic` created through broker 1's admin client.
pub fn agreed_cluster_with_topic(
    name: &str,
    hosts: &[&str],
    config: &str,
    topic: &rdkafka::admin::NewTopic<'_>,
) -> Vec<Broker> {
    let brokers = start_cluster(name, hosts, config);
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(20),
    );
    let admin = brokers[0].admin();
    let r = super::block_on(admin.create_topics([topic], &super::admin_options()))
        .expect("CreateTopics");
    assert!(r[0].is_ok(), "{r:?}");
    brokers
}

/// Starts one broker per host (node ids 1..), one shard each, all voters; `config` is
/// their rill.toml. Does not wait for the cluster to form.
pub fn start_cluster(name: &str, hosts: &[&str], config: &str) -> Vec<Broker> {
    start_cluster_in(name, hosts, &[], config)
}

/// [`start_cluster`] with broker i in network namespace `namespaces[i]` (if given).
pub fn start_cluster_in(
    name: &str,
    hosts: &[&str],
    namespaces: &[String],
    config: &str,
) -> Vec<Broker> {
    let raft_port = free_port();
    let quorum: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{}@{h}:{raft_port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let mut o = BrokerOptions::with_config(config);
            o.shards = 1;
            o.host = host.to_string();
            o.netns = namespaces.get(i).cloned();
            o.extra_args = vec![
                "--node-id".into(),
                (i + 1).to_string(),
                "--controller-quorum".into(),
                quorum.clone(),
            ];
            Broker::start_with(&format!("{name}-{}", i + 1), o)
        })
        .collect()
}

/// Starts broker `node_id` on `host` as a learner of the cluster `member` belongs to
/// (same `--controller-quorum`, its own `--raft-listen`); it joins the running cluster.
#[allow(dead_code)]
pub fn start_learner(
    name: &str,
    member: &Broker,
    node_id: i32,
    host: &str,
    config: &str,
) -> Broker {
    let args = &member.options().extra_args;
    let quorum = args
        .iter()
        .position(|a| a == "--controller-quorum")
        .map(|i| args[i + 1].clone())
        .expect("a cluster member has --controller-quorum");
    let mut o = BrokerOptions::with_config(config);
    o.shards = 1;
    o.host = host.to_string();
    o.extra_args = vec![
        "--node-id".into(),
        node_id.to_string(),
        "--controller-quorum".into(),
        quorum,
        "--raft-listen".into(),
        format!("{host}:{}", free_port()),
    ];
    Broker::start_with(name, o)
}

/// Three voters on `hosts` (node ids 1-3) and broker 4 on `learner_host`, joined as a
/// learner; once all four agree, creates `topic` (`partitions`, replication factor 2)
/// and waits until every broker lists it.
#[allow(dead_code)]
pub fn four_brokers_with_topic(
    name: &str,
    hosts: &[&str; 3],
    learner_host: &str,
    config: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Broker> {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let mut brokers = start_cluster(name, hosts, config);
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(20),
    );
    brokers.push(start_learner(
        &format!("{name}-4"),
        &brokers[0],
        4,
        learner_host,
        config,
    ));
    wait_agreed(
        &brokers,
        &[0, 1, 2, 3],
        &[1, 2, 3, 4].into(),
        Duration::from_secs(20),
    );
    let admin = brokers[0].admin();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(2));
    let r = super::block_on(admin.create_topics([&new], &super::admin_options()))
        .expect("CreateTopics");
    assert!(r[0].is_ok(), "CreateTopics: {r:?}");
    for b in &brokers {
        settled_topic_metadata(b, topic, partitions as usize);
    }
    brokers
}

/// Produces `per_partition` records (`{label}-{p}-{i}`) to each of `partitions` partitions
/// of `topic` with rdkafka bootstrapped from `broker` (acks=1), and waits until every one
/// is delivered; rdkafka sends each partition's records to its leader.
#[allow(dead_code)]
pub fn produce_each_partition(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    label: &str,
    per_partition: usize,
) {
    use rdkafka::producer::FutureRecord;
    let producer = broker.producer("1", &[]);
    let mut futures = Vec::new();
    for p in 0..partitions {
        for i in 0..per_partition {
            let value = format!("{label}-{p}-{i}");
            let f = producer
                .send_result(
                    FutureRecord::<(), _>::to(topic)
                        .partition(p)
                        .payload(value.as_bytes()),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue {value}: {e}"));
            futures.push((value, f));
        }
    }
    for (value, f) in futures {
        match super::block_on(f) {
            Ok(Ok(_)) => {}
            other => panic!("{value} not delivered: {other:?}"),
        }
    }
}

/// (broker ids, controller id) as `broker` answers DescribeCluster.
pub fn cluster_of(broker: &Broker) -> (BTreeSet<i32>, i32) {
    let mut net = NetClient::connect(broker.addr());
    let r = net.send(&DescribeClusterRequest::default());
    assert_eq!(r.error_code, 0, "DescribeCluster: {r:?}");
    (
        r.brokers.iter().map(|b| b.broker_id.0).collect(),
        r.controller_id.0,
    )
}

/// Waits until the brokers at `alive` (indexes) all answer with exactly `want` and one
/// common controller; returns the controller.
pub fn wait_agreed(
    brokers: &[Broker],
    alive: &[usize],
    want: &BTreeSet<i32>,
    within: Duration,
) -> i32 {
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

/// `topic` as `broker` answers Metadata (no auto-creation).
pub fn topic_metadata(broker: &Broker, topic: &str) -> MetadataResponseTopic {
    let mut net = NetClient::connect(broker.addr());
    let r = net.send(
        &MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false),
    );
    r.topics
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("Metadata of {topic} from {}: no topic", broker.bootstrap()))
}

/// Metadata of `topic` from `broker` polled until it has no error and `ok` holds (failing
/// with `what` and the last answer after `within`).
pub fn wait_topic(
    broker: &Broker,
    topic: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(&MetadataResponseTopic) -> bool,
) -> MetadataResponseTopic {
    let deadline = Instant::now() + within;
    loop {
        let t = topic_metadata(broker, topic);
        if t.error_code == 0 && ok(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: {t:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// For a partition of two replicas on a cluster of three brokers with ids 1-3: its leader,
/// its follower, and the index (in the test's broker list) of the third broker.
pub fn leader_follower_bystander(t: &MetadataResponseTopic, partition: usize) -> (i32, i32, usize) {
    let p = &t.partitions[partition];
    let leader = p.leader_id.0;
    let follower = p
        .replica_nodes
        .iter()
        .map(|r| r.0)
        .find(|r| *r != leader)
        .expect("two replicas");
    let bystander = (1..=3)
        .find(|n| *n != leader && *n != follower)
        .expect("a third broker");
    (leader, follower, (bystander - 1) as usize)
}

/// Metadata of `topic` from `broker` once it lists `partitions` partitions (polled, at most
/// 10 s). CreateTopics is answered by the controller once committed; the other brokers
/// learn the topic from the metadata log a moment later, as in Kafka.
#[allow(dead_code)]
pub fn settled_topic_metadata(
    broker: &Broker,
    topic: &str,
    partitions: usize,
) -> MetadataResponseTopic {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = topic_metadata(broker, topic);
        if t.error_code == 0 && t.partitions.len() == partitions {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{} does not list {partitions} partitions of {topic}: {t:?}",
            broker.bootstrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cluster id each broker reports (DescribeCluster), polled (bounded) until they are
/// all the same; returns it.
pub fn wait_one_cluster_id(brokers: &[Broker], alive: &[usize]) -> String {
    let started = Instant::now();
    loop {
        let ids: BTreeSet<String> = alive
            .iter()
            .map(|&i| {
                let mut net = NetClient::connect(brokers[i].addr());
                net.send(&DescribeClusterRequest::default())
                    .cluster_id
                    .to_string()
            })
            .collect();
        if ids.len() == 1 {
            return ids.into_iter().next().expect("one id");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "brokers report different cluster ids: {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (replicas, leader, ISR) of `partition` of `topic` as `broker`'s metadata says.
#[allow(dead_code)]
pub fn placement_of(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> (Vec<i32>, i32, BTreeSet<i32>) {
    let t = topic_metadata(broker, topic);
    let p = &t.partitions[partition as usize];
    (
        p.replica_nodes.iter().map(|b| b.0).collect(),
        p.leader_id.0,
        p.isr_nodes.iter().map(|b| b.0).collect(),
    )
}
