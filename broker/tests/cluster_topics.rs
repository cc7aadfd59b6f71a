//! Topics in a 3-broker cluster: CreateTopics on any broker places a replication-factor-3
//! topic through the metadata raft group, and every broker's Metadata shows each partition
//! with three replicas, the ISR and a leader, leaders spread over the brokers. An rdkafka
//! producer bootstrapped on one broker writes to every partition (each at its leader; the
//! others answer NOT_LEADER_OR_FOLLOWER) and a consumer reads it all back; CreatePartitions
//! and AlterConfigs on one broker reach every broker. kill -9 of a
//! broker: once it is fenced, its partitions get new leaders (leader epoch bumped) and the
//! producer keeps going. DeleteTopics removes the topic everywhere.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{
    produce_each_partition, settled_topic_metadata, start_cluster, topic_metadata, wait_agreed,
};
use common::{block_on, Broker, NetClient};
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use rill_net::ErrorCode;

const HOSTS: [&str; 3] = ["127.0.0.14", "127.0.0.15", "127.0.0.16"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";
const TOPIC: &str = "spread";
const PARTITIONS: i32 = 6;
const GROWN: i32 = 8;

/// partition -> (leader, epoch, replicas, isr)
type Placement = BTreeMap<i32, (i32, i32, Vec<i32>, Vec<i32>)>;

fn placement(t: &MetadataResponseTopic) -> Placement {
    t.partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                (
                    p.leader_id.0,
                    p.leader_epoch,
                    p.replica_nodes.iter().map(|b| b.0).collect(),
                    p.isr_nodes.iter().map(|b| b.0).collect(),
                ),
            )
        })
        .collect()
}

fn produce(broker: &Broker, label: &str, per_partition: usize) {
    produce_each_partition(broker, TOPIC, PARTITIONS, label, per_partition);
}

#[test]
fn replicated_topics_are_placed_by_the_cluster_and_leaders_move_off_a_dead_broker() {
    let mut brokers = start_cluster("cluster-topics", &HOSTS, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));

    let admin = brokers[1].admin();
    let new = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3));
    let results =
        block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(results[0].is_ok(), "CreateTopics: {results:?}");

    // Every broker agrees on the placement: three replicas, full ISR, leaders spread.
    let placed = placement(&settled_topic_metadata(
        &brokers[1],
        TOPIC,
        PARTITIONS as usize,
    ));
    for (i, b) in brokers.iter().enumerate() {
        let mut seen = placement(&topic_metadata(b, TOPIC));
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen != placed && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            seen = placement(&topic_metadata(b, TOPIC));
        }
        assert_eq!(seen, placed, "broker {} sees another placement", i + 1);
    }
    assert_eq!(placed.len(), PARTITIONS as usize, "{placed:?}");
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    for (p, (leader, _, replicas, isr)) in &placed {
        let set: BTreeSet<i32> = replicas.iter().copied().collect();
        assert_eq!(set, all, "partition {p} replicas {replicas:?}");
        assert_eq!(
            isr.iter().copied().collect::<BTreeSet<i32>>(),
            all,
            "partition {p} isr {isr:?}"
        );
        assert!(set.contains(leader), "partition {p} leader {leader}");
        *leads.entry(*leader).or_default() += 1;
    }
    assert_eq!(
        leads.len(),
        3,
        "leaders not spread over the brokers: {placed:?}"
    );
    eprintln!("placement: {placed:?}");

    // A broker that does not lead a partition refuses writes to it.
    let (p0_leader, ..) = placed[&0];
    let other = (1..=3).find(|b| *b != p0_leader).unwrap();
    let mut net = NetClient::connect(brokers[(other - 1) as usize].addr());
    let (code, _) = net.produce_values(TOPIC, 0, &[b"not here"]);
    assert_eq!(
        code,
        ErrorCode::NotLeaderOrFollower.code(),
        "produce to a follower"
    );

    produce(&brokers[0], "first", 10);
    let consumer = brokers[2].consumer(&[]);
    common::assign(
        &consumer,
        TOPIC,
        &(0..PARTITIONS).collect::<Vec<_>>(),
        rdkafka::Offset::Beginning,
    );
    let got = common::consume_exactly(&consumer, 60, Duration::from_secs(30));
    assert_eq!(got.len(), 60);
    drop(consumer);

    // More partitions and a config change, asked of one broker, reach every broker.
    let grow = rdkafka::admin::NewPartitions::new(TOPIC, GROWN as usize);
    let r = block_on(admin.create_partitions([&grow], &common::admin_options()))
        .expect("CreatePartitions");
    assert!(r[0].is_ok(), "CreatePartitions: {r:?}");
    let alter = rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(TOPIC))
        .set("retention.ms", "12345678");
    let r =
        block_on(admin.alter_configs([&alter], &common::admin_options())).expect("AlterConfigs");
    assert!(r[0].is_ok(), "AlterConfigs: {r:?}");
    for b in &brokers {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = placement(&topic_metadata(b, TOPIC));
            let described = block_on(b.admin().describe_configs(
                [&rdkafka::admin::ResourceSpecifier::Topic(TOPIC)],
                &common::admin_options(),
            ))
            .expect("DescribeConfigs");
            let retention = described[0]
                .as_ref()
                .ok()
                .and_then(|c| c.get("retention.ms").and_then(|e| e.value.clone()));
            let grown = t.len() == GROWN as usize && t.values().all(|(_, _, r, _)| r.len() == 3);
            if grown && retention.as_deref() == Some("12345678") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: partitions {t:?}, retention.ms {retention:?}",
                b.bootstrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let placed = placement(&topic_metadata(&brokers[0], TOPIC));

    // kill -9 a broker that leads partitions (not the one clients bootstrap from).
    let victim = *leads
        .keys()
        .find(|b| **b != 1)
        .expect("a leader besides broker 1");
    brokers[(victim - 1) as usize].kill9();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != (victim - 1) as usize).collect();
    let rest: BTreeSet<i32> = all.iter().copied().filter(|&b| b != victim).collect();
    wait_agreed(&brokers, &survivors, &rest, Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    let moved = loop {
        let now = placement(&topic_metadata(&brokers[survivors[0]], TOPIC));
        if now.values().all(|(leader, ..)| rest.contains(leader)) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "leaders did not move off broker {victim}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for (p, (leader, epoch, _, isr)) in &moved {
        let (old_leader, old_epoch, ..) = &placed[p];
        if *old_leader == victim {
            assert!(
                epoch > old_epoch,
                "partition {p}: new leader {leader} kept epoch {epoch}"
            );
        }
        assert!(
            !isr.contains(&victim),
            "partition {p}: dead broker still in ISR {isr:?}"
        );
    }
    eprintln!("after broker {victim} died: {moved:?}");
    produce(&brokers[0], "after", 5);

    // Back, and the topic is deleted everywhere.
    brokers[(victim - 1) as usize].restart();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let results =
        block_on(admin.delete_topics(&[TOPIC], &common::admin_options())).expect("DeleteTopics");
    assert!(results[0].is_ok(), "DeleteTopics: {results:?}");
    for b in &brokers {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = topic_metadata(b, TOPIC);
            if t.error_code == ErrorCode::UnknownTopicOrPartition.code() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still lists {TOPIC}: {t:?}",
                b.bootstrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for b in &mut brokers {
        b.assert_alive();
    }
}
