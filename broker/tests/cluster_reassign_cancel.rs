//! Cancelling a reassignment keeps the ISR honest (issue 15): when only an added replica
//! is in sync (the original one is down and behind), the cancel is refused; putting the
//! original replica back in the ISR would let it lead without what the added one
//! acknowledged.
//!
//! Five brokers: voters 1-3, learners 4 and 5. A partition held by broker 2 alone moves to
//! [4, 5] while 5 is down, so the move stays in progress; 4 catches up and joins the ISR.
//! Broker 2 is killed: 4 leads alone and acknowledges more records with acks=all. Then the
//! move is cancelled. Before issue 15 the controller took the cancel, put broker 2 back as
//! the only replica and member of the ISR, and broker 2 came back leading its old log
//! without the records broker 4 acknowledged.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::placement_of;
use common::cluster::{settled_topic_metadata, start_cluster, start_learner, wait_agreed};
use common::produce_in_order;
use common::{admin_options, assign, block_on, by_position, consume_exactly, tool_available};
use common::{kafka_python_reassign, wait_until};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::Offset;

const HOSTS: [&str; 3] = ["127.0.0.131", "127.0.0.132", "127.0.0.133"];
const LEARNERS: [&str; 2] = ["127.0.0.134", "127.0.0.135"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 4000\n";
const TOPIC: &str = "cancelled";
const BEFORE: usize = 50;
const AFTER: usize = 50;

#[test]
fn a_cancel_that_would_leave_only_lagging_replicas_in_sync_is_refused() {
    if !tool_available(
        "kafka-python with partition reassignment",
        Command::new("python3").args([
            "-c",
            "from kafka.admin import KafkaAdminClient as A; A.alter_partition_reassignments",
        ]),
        "pip install -U kafka-python",
        "this test",
    ) {
        return;
    }
    let mut brokers = start_cluster("reassign-cancel", &HOSTS, CONFIG);
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(20),
    );
    for (i, host) in LEARNERS.iter().enumerate() {
        let id = 4 + i as i32;
        let b = start_learner(
            &format!("reassign-cancel-{id}"),
            &brokers[0],
            id,
            host,
            CONFIG,
        );
        brokers.push(b);
    }
    wait_agreed(
        &brokers,
        &[0, 1, 2, 3, 4],
        &[1, 2, 3, 4, 5].into(),
        Duration::from_secs(30),
    );
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1));
    let r = block_on(admin.create_topics([&new], &admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "CreateTopics: {r:?}");
    for b in &brokers {
        settled_topic_metadata(b, TOPIC, 1);
    }
    // Onto broker 2 alone (a move, not a creation with an assignment, so that the broker
    // of before issue 15 runs this too).
    let bootstrap = brokers[0].bootstrap();
    if placement_of(&brokers[0], TOPIC, 0).0 != [2] {
        assert_eq!(
            kafka_python_reassign(&["alter", &bootstrap, TOPIC, "0", "2"]),
            "ok"
        );
    }
    wait_until(
        Duration::from_secs(30),
        "the partition on broker 2 alone",
        || {
            let (replicas, leader, isr) = placement_of(&brokers[0], TOPIC, 0);
            (replicas == [2] && leader == 2 && isr == [2].into()).then_some(())
        },
    );
    produce_in_order(
        &brokers[0].producer("all", &[]),
        TOPIC,
        0,
        (0..BEFORE).map(|i| format!("before-{i}")),
    );

    // Broker 5 down: a move onto [4, 5] stays in progress.
    brokers[4].terminate();
    wait_agreed(
        &brokers,
        &[0, 1, 2, 3],
        &[1, 2, 3, 4].into(),
        Duration::from_secs(20),
    );
    assert_eq!(
        kafka_python_reassign(&["alter", &bootstrap, TOPIC, "0", "4,5"]),
        "ok"
    );
    wait_until(
        Duration::from_secs(30),
        "broker 4 in the ISR of the moving partition",
        || {
            placement_of(&brokers[0], TOPIC, 0)
                .2
                .contains(&4)
                .then_some(())
        },
    );

    // The original replica dies; the added one leads alone and acknowledges more.
    brokers[1].kill9();
    let (_, leader, isr) = wait_until(Duration::from_secs(30), "broker 4 leading alone", || {
        let p = placement_of(&brokers[0], TOPIC, 0);
        (p.1 == 4 && p.2 == [4].into()).then_some(p)
    });
    eprintln!("leader {leader}, isr {isr:?}");
    produce_in_order(
        &brokers[0].producer("all", &[]),
        TOPIC,
        0,
        (0..AFTER).map(|i| format!("after-{i}")),
    );

    // Cancelling now would hand the partition back to broker 2 without those records.
    let answer = kafka_python_reassign(&["cancel", &bootstrap, TOPIC, "0"]);
    let (replicas, leader, isr) = placement_of(&brokers[0], TOPIC, 0);
    assert!(
        answer.starts_with("error "),
        "the cancel was taken ({answer}) although only the added replica 4 was in sync: \
         replicas {replicas:?}, leader {leader}, isr {isr:?}"
    );
    assert!(
        isr.iter().all(|b| *b == 4),
        "a lagging replica is back in the ISR: {isr:?}"
    );

    // Broker 2 back: every acknowledged record is still served, at its offset.
    brokers[1].restart();
    wait_agreed(
        &brokers,
        &[0, 1, 2, 3],
        &[1, 2, 3, 4].into(),
        Duration::from_secs(30),
    );
    let consumer = brokers[0].consumer(&[]);
    assign(&consumer, TOPIC, &[0], Offset::Beginning);
    let got = by_position(&consume_exactly(
        &consumer,
        BEFORE + AFTER,
        Duration::from_secs(30),
    ));
    for (i, label) in (0..BEFORE)
        .map(|i| (i, format!("before-{i}")))
        .chain((0..AFTER).map(|i| (BEFORE + i, format!("after-{i}"))))
    {
        let rec = got
            .get(&(0, i as i64))
            .unwrap_or_else(|| panic!("acknowledged record {label} (offset {i}) is gone"));
        assert_eq!(
            rec.value.as_deref(),
            Some(label.as_bytes()),
            "at offset {i}"
        );
    }
}
