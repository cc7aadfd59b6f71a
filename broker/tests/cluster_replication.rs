//! Partition data is replicated: followers fetch from the leader, acks=all is answered once
//! the in-sync replicas hold the batch, and when the leader is killed (-9) the new leader
//! serves every acknowledged record at its original offset. The killed broker comes back
//! as a follower, copies what it missed, and rejoins the ISR.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{settled_topic_metadata, start_cluster, topic_metadata, wait_agreed};
use common::{assign, block_on, by_position, consume_exactly, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

const HOSTS: [&str; 3] = ["127.0.0.41", "127.0.0.42", "127.0.0.43"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 4000\n";
const TOPIC: &str = "replicated";
const PARTITIONS: i32 = 3;
const PER_PARTITION: usize = 300;

/// Produces `per_partition` records to every partition with acks=all; returns
/// (partition, offset, value) of each acknowledged record.
fn produce_all(broker: &Broker, label: &str) -> Vec<(i32, i64, String)> {
    let producer = broker.producer("all", &[("enable.idempotence", "true")]);
    let mut futures = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let value = format!("{label}-{p}-{i}");
            let f = producer
                .send_result(
                    FutureRecord::<(), _>::to(TOPIC)
                        .partition(p)
                        .payload(value.as_bytes()),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue {value}: {e}"));
            futures.push((value, f));
        }
    }
    futures
        .into_iter()
        .map(|(value, f)| match block_on(f) {
            Ok(Ok(d)) => (d.partition, d.offset, value),
            other => panic!("{value} not acknowledged: {other:?}"),
        })
        .collect()
}

/// The (leader, isr) of every partition as `broker` answers Metadata.
fn placement(broker: &Broker) -> Vec<(i32, BTreeSet<i32>)> {
    topic_metadata(broker, TOPIC)
        .partitions
        .iter()
        .map(|p| {
            (
                p.leader_id.0,
                p.isr_nodes.iter().map(|b| b.0).collect::<BTreeSet<i32>>(),
            )
        })
        .collect()
}

/// Polls `broker` until `ok` holds for the placement, at most `within`.
fn wait_placement(
    broker: &Broker,
    within: Duration,
    what: &str,
    ok: impl Fn(&[(i32, BTreeSet<i32>)]) -> bool,
) -> Vec<(i32, BTreeSet<i32>)> {
    let deadline = Instant::now() + within;
    loop {
        let now = placement(broker);
        if now.len() == PARTITIONS as usize && ok(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn acknowledged_records_survive_the_leaders_kill9_and_the_old_leader_catches_up() {
    let mut brokers = start_cluster("cluster-replication", &HOSTS, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));

    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))
        .set("min.insync.replicas", "2");
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "CreateTopics: {r:?}");
    settled_topic_metadata(&brokers[0], TOPIC, PARTITIONS as usize);
    for b in &brokers {
        settled_topic_metadata(b, TOPIC, PARTITIONS as usize);
    }

    let first = produce_all(&brokers[0], "first");
    // Every replica stays in sync while the followers fetch.
    let before = wait_placement(&brokers[0], Duration::from_secs(10), "all in sync", |p| {
        p.iter().all(|(_, isr)| *isr == all)
    });
    // Kill the broker that leads partition 0 (it may lead others too).
    let victim = before[0].0;
    let vi = (victim - 1) as usize;
    brokers[vi].kill9();
    let survivor = (0..3).find(|i| *i != vi).unwrap();
    let after = wait_placement(
        &brokers[survivor],
        Duration::from_secs(15),
        "leaders moved off the killed broker and it left the ISR",
        |p| {
            p.iter()
                .all(|(l, isr)| *l > 0 && *l != victim && !isr.contains(&victim))
        },
    );
    eprintln!("before {before:?}, after killing {victim}: {after:?}");

    // The new leaders serve every acknowledged record, at the offset it was acknowledged at.
    let consumer = brokers[survivor].consumer(&[]);
    assign(&consumer, TOPIC, &[0, 1, 2], Offset::Beginning);
    let got = by_position(&consume_exactly(
        &consumer,
        first.len(),
        Duration::from_secs(30),
    ));
    for (p, o, value) in &first {
        let rec = got
            .get(&(*p, *o))
            .unwrap_or_else(|| panic!("acknowledged {value} at {p}/{o} is missing"));
        assert_eq!(rec.value.as_deref(), Some(value.as_bytes()), "at {p}/{o}");
    }
    drop(consumer);

    // acks=all still works with two in-sync replicas (min.insync.replicas = 2).
    let second = produce_all(&brokers[survivor], "second");

    // The killed broker returns, copies what it missed and rejoins every ISR.
    brokers[vi].restart();
    wait_placement(
        &brokers[survivor],
        Duration::from_secs(30),
        "the restarted broker back in every ISR",
        |p| p.iter().all(|(_, isr)| *isr == all),
    );
    // Leadership moves back to the preferred replicas, which now include the restarted
    // broker: everything is still there, through whichever broker leads.
    eprintln!(
        "after the restart: {:?}, watermarks {:?}",
        placement(&brokers[vi]),
        (0..PARTITIONS)
            .map(|p| brokers[vi].watermarks(TOPIC, p))
            .collect::<Vec<_>>()
    );
    let consumer = brokers[vi].consumer(&[]);
    assign(&consumer, TOPIC, &[0, 1, 2], Offset::Beginning);
    let got = by_position(&consume_exactly(
        &consumer,
        first.len() + second.len(),
        Duration::from_secs(30),
    ));
    for (p, o, value) in first.iter().chain(&second) {
        let rec = got
            .get(&(*p, *o))
            .unwrap_or_else(|| panic!("acknowledged {value} at {p}/{o} is missing"));
        assert_eq!(rec.value.as_deref(), Some(value.as_bytes()), "at {p}/{o}");
    }
}

/// With one broker of three down and min.insync.replicas = 3, acks=all is refused with
/// NOT_ENOUGH_REPLICAS before anything is appended (the next acks=1 record gets offset 0),
/// and acks=1 is still taken.
#[test]
fn acks_all_is_refused_below_min_insync_replicas() {
    let mut brokers = start_cluster("cluster-replication-min-isr", &HOSTS_MIN_ISR, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let admin = brokers[0].admin();
    let new =
        NewTopic::new("strict", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "3");
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "CreateTopics: {r:?}");
    let t = settled_topic_metadata(&brokers[0], "strict", 1);
    let leader = t.partitions[0].leader_id.0;
    let follower = (1..=3).find(|b| *b != leader).unwrap();
    brokers[(follower - 1) as usize].kill9();
    let li = (leader - 1) as usize;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = topic_metadata(&brokers[li], "strict");
        let isr: BTreeSet<i32> = t.partitions[0].isr_nodes.iter().map(|b| b.0).collect();
        if !isr.contains(&follower) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker {follower} still in the ISR: {isr:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let producer = brokers[li].producer("all", &[("message.timeout.ms", "5000"), ("retries", "0")]);
    let r = block_on(
        producer
            .send_result(
                FutureRecord::<(), _>::to("strict")
                    .partition(0)
                    .payload("x"),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue: {e}")),
    );
    let err = match r {
        Ok(Err((e, _))) => e.to_string(),
        other => panic!("acks=all with 2 of min 3 in-sync replicas: {other:?}"),
    };
    assert!(
        err.contains("NotEnoughReplicas") || err.contains("Not enough in-sync replicas"),
        "{err}"
    );
    // acks=1 is still taken.
    let producer = brokers[li].producer("1", &[]);
    let r = block_on(
        producer
            .send_result(
                FutureRecord::<(), _>::to("strict")
                    .partition(0)
                    .payload("y"),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue: {e}")),
    );
    assert!(
        matches!(&r, Ok(Ok(d)) if d.partition == 0 && d.offset == 0),
        "acks=1: {r:?}"
    );
}

const HOSTS_MIN_ISR: [&str; 3] = ["127.0.0.44", "127.0.0.45", "127.0.0.46"];
