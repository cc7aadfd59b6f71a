//! Partition reassignment (AlterPartitionReassignments / ListPartitionReassignments)
//! driven by kafka-python's admin client against 3 voters and a fourth broker that joined
//! as a learner:
//! - a move onto a broker that is down stays listed as ongoing (the new replica cannot
//!   catch up) until it is cancelled, which restores the old replicas;
//! - with the fourth broker up, a partition moves onto it with its data: the new replica
//!   copies the log from the leader, joins the ISR, the controller completes the move, and
//!   a Kafka client reads every record at its old offset from the new replicas;
//! - bad targets get the Kafka error codes.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{four_brokers_with_topic, placement_of, produce_each_partition, wait_agreed};
use common::{
    assign, by_position, consume_exactly, kafka_python_reassign, tool_available, wait_until,
};
use rdkafka::Offset;

const HOSTS: [&str; 3] = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];
const LEARNER_HOST: &str = "127.0.0.54";
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 4000\n";
const TOPIC: &str = "moving";
const PARTITIONS: i32 = 2;
const PER_PARTITION: usize = 400;
const INSTALL_HINT: &str = "pip install -U kafka-python";

#[test]
fn partitions_move_onto_a_new_broker_with_their_data() {
    if !tool_available(
        "kafka-python with partition reassignment",
        Command::new("python3").args([
            "-c",
            "from kafka.admin import KafkaAdminClient as A; A.alter_partition_reassignments",
        ]),
        INSTALL_HINT,
        "this test",
    ) {
        return;
    }
    let mut brokers = four_brokers_with_topic(
        "cluster-reassign",
        &HOSTS,
        LEARNER_HOST,
        CONFIG,
        TOPIC,
        PARTITIONS,
    );
    let four: BTreeSet<i32> = [1, 2, 3, 4].into();
    let bootstrap = brokers[0].bootstrap();
    produce_each_partition(&brokers[0], TOPIC, PARTITIONS, "before", PER_PARTITION);

    // Bad targets.
    // (Kafka codes: 39 INVALID_REPLICA_ASSIGNMENT, 3 UNKNOWN_TOPIC_OR_PARTITION,
    // 85 NO_REASSIGNMENT_IN_PROGRESS.)
    for (args, code) in [
        (["alter", &bootstrap, TOPIC, "0", "1,1"], 39),
        (["alter", &bootstrap, TOPIC, "0", "1,9"], 39),
        (["alter", &bootstrap, TOPIC, "7", "1,2"], 3),
        (["cancel", &bootstrap, TOPIC, "1", ""], 85),
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let out = kafka_python_reassign(&args);
        assert!(
            out.starts_with(&format!("error {code} ")),
            "{args:?}: {out}"
        );
    }
    assert_eq!(
        kafka_python_reassign(&["list", &bootstrap]),
        "",
        "nothing is moving yet"
    );

    // The partition broker 4 does not hold (4 replicas over 4 brokers: it holds one).
    let q: i32 = (0..PARTITIONS)
        .find(|p| !placement_of(&brokers[0], TOPIC, *p).0.contains(&4))
        .expect("broker 4 holds a replica of every partition");
    let qs = q.to_string();
    let (before, leader_before, _) = placement_of(&brokers[0], TOPIC, q);
    let keep = *before.last().unwrap();
    let target = vec![4, keep];
    let target_arg = format!("4,{keep}");

    // A move onto a broker that is down stays ongoing until cancelled.
    brokers[3].terminate();
    // Fenced: clients no longer see it (they would try to connect to it).
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(20),
    );
    assert_eq!(
        kafka_python_reassign(&["alter", &bootstrap, TOPIC, &qs, &target_arg]),
        "ok"
    );
    let listed = kafka_python_reassign(&["list", &bootstrap]);
    let removed: Vec<String> = before
        .iter()
        .filter(|b| !target.contains(b))
        .map(|b| b.to_string())
        .collect();
    assert_eq!(
        listed,
        format!(
            "{TOPIC} {q} replicas=4,{keep},{} adding=4 removing={}",
            removed.join(","),
            removed.join(",")
        ),
        "ongoing reassignment not listed as expected"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        kafka_python_reassign(&["list", &bootstrap]),
        listed,
        "a move onto a stopped broker completed"
    );
    assert_eq!(
        kafka_python_reassign(&["cancel", &bootstrap, TOPIC, &qs]),
        "ok"
    );
    assert_eq!(kafka_python_reassign(&["list", &bootstrap]), "");
    wait_until(Duration::from_secs(10), "the old replicas back", || {
        let r = placement_of(&brokers[0], TOPIC, q);
        (r.0.iter().collect::<BTreeSet<_>>() == before.iter().collect()).then_some(())
    });

    // Broker 4 back: the partition moves onto it with its data.
    brokers[3].restart();
    wait_agreed(&brokers, &[0, 1, 2, 3], &four, Duration::from_secs(20));
    let started = Instant::now();
    assert_eq!(
        kafka_python_reassign(&["alter", &bootstrap, TOPIC, &qs, &target_arg]),
        "ok"
    );
    let (now, leader, isr) = wait_until(
        Duration::from_secs(30),
        "the partition on its target replicas, all in sync",
        || {
            let r = placement_of(&brokers[0], TOPIC, q);
            (r.0 == target && r.2 == target.iter().copied().collect::<BTreeSet<i32>>()).then_some(r)
        },
    );
    eprintln!(
        "partition {q}: {before:?} (leader {leader_before}) -> {now:?} (leader {leader}, isr {isr:?}) in {:?}",
        started.elapsed()
    );
    assert!(
        target.contains(&leader),
        "leader {leader} not in {target:?}"
    );
    assert_eq!(
        kafka_python_reassign(&["list", &bootstrap]),
        "",
        "the move is still listed"
    );

    // Every record is served by the new replicas at its old offset; new ones go there too.
    produce_each_partition(&brokers[3], TOPIC, PARTITIONS, "after", 10);
    let consumer = brokers[3].consumer(&[]);
    assign(&consumer, TOPIC, &[q], Offset::Beginning);
    let got = by_position(&consume_exactly(
        &consumer,
        PER_PARTITION + 10,
        Duration::from_secs(30),
    ));
    for i in 0..PER_PARTITION {
        let rec = got
            .get(&(q, i as i64))
            .unwrap_or_else(|| panic!("record {i} of partition {q} is missing after the move"));
        assert_eq!(
            rec.value.as_deref(),
            Some(format!("before-{q}-{i}").as_bytes()),
            "at offset {i}"
        );
    }
    for i in 0..10 {
        let rec = got.get(&(q, (PER_PARTITION + i) as i64)).unwrap();
        assert_eq!(
            rec.value.as_deref(),
            Some(format!("after-{q}-{i}").as_bytes())
        );
    }
}
