//! Rill's promise for acks=all in a cluster, at least Kafka's: a record acknowledged with
//! acks=all survives kill -9 of every broker at once. The leader answers once every in-sync
//! replica holds the batch, and a follower says it holds a batch only once it is in its
//! files (or fdatasync'd, with `replica_fsync`), never while it is only in its memory.
//!
//! Idempotent acks=all producers write while all three brokers are killed at the same
//! moment; after they restart, every acknowledged record is read back at the offset it was
//! acknowledged with. Run once with followers writing to their files and once with
//! `replica_fsync = true`.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{settled_topic_metadata, start_cluster, topic_metadata, wait_agreed};
use common::{assign, block_on, by_position, consume_at_least, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

const TOPIC: &str = "kill-all";
const PARTITIONS: i32 = 3;

fn run(hosts: [&str; 3], name: &str, extra: &str) {
    let config = format!(
        "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 4000\n{extra}"
    );
    let mut brokers = start_cluster(name, &hosts, &config);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))
        .set("min.insync.replicas", "2");
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "{r:?}");
    for b in &brokers {
        settled_topic_metadata(b, TOPIC, PARTITIONS as usize);
    }
    // Producers write until the brokers are gone; every acknowledgement is kept.
    let acked: Arc<Mutex<Vec<(i32, i64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|n| {
            let producer = brokers[n].producer(
                "all",
                &[
                    ("enable.idempotence", "true"),
                    ("message.timeout.ms", "5000"),
                ],
            );
            let (acked, stop) = (acked.clone(), stop.clone());
            thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let mut batch = Vec::new();
                    for _ in 0..20 {
                        let value = format!("p{n}-{i:06}");
                        let p = (i % PARTITIONS as usize) as i32;
                        let r = FutureRecord::<(), _>::to(TOPIC)
                            .partition(p)
                            .payload(&value);
                        match producer.send_result(r) {
                            Ok(f) => batch.push((value, f)),
                            Err(_) => break,
                        }
                        i += 1;
                    }
                    for (value, f) in batch {
                        if let Ok(Ok(d)) = block_on(f) {
                            acked.lock().unwrap().push((d.partition, d.offset, value));
                        }
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(2500));
    // kill -9 of every broker at the same moment.
    Broker::kill9_all(&mut brokers);
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.join().expect("a producer thread panicked");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} records acknowledged before the kill",
        acked.len()
    );
    for b in &mut brokers {
        b.restart();
    }
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(30));
    // Every partition led again, then everything read back from the start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while topic_metadata(&brokers[0], TOPIC)
        .partitions
        .iter()
        .any(|p| p.leader_id.0 < 0)
    {
        assert!(
            Instant::now() < deadline,
            "partitions without a leader after the restart"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let last: Vec<i64> = (0..PARTITIONS)
        .map(|p| {
            acked
                .iter()
                .filter(|(q, _, _)| *q == p)
                .map(|(_, o, _)| *o + 1)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let consumer = brokers[0].consumer(&[]);
    assign(
        &consumer,
        TOPIC,
        &(0..PARTITIONS).collect::<Vec<_>>(),
        Offset::Beginning,
    );
    // Read every partition at least up to its last acknowledged offset.
    let mut recs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = vec![0i64; PARTITIONS as usize];
    while (0..PARTITIONS as usize).any(|p| next[p] < last[p]) {
        assert!(
            Instant::now() < deadline,
            "read up to {next:?} of {last:?} (last acknowledged offsets + 1) within 60 s"
        );
        for r in consume_at_least(&consumer, 1, Duration::from_secs(60)) {
            next[r.partition as usize] = next[r.partition as usize].max(r.offset + 1);
            recs.push(r);
        }
    }
    let stored = by_position(&recs);
    let mut lost = Vec::new();
    for (p, o, value) in &acked {
        match stored.get(&(*p, *o)) {
            Some(r) if r.value.as_deref() == Some(value.as_bytes()) => {}
            other => lost.push((*p, *o, value.clone(), other.map(|r| r.value.clone()))),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records are not at their offset after kill -9 of every broker: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    for b in &mut brokers {
        b.assert_alive();
    }
}

#[test]
fn acks_all_survives_kill_9_of_every_broker_at_once() {
    run(["127.0.0.81", "127.0.0.82", "127.0.0.83"], "kill-all", "");
}

#[test]
fn acks_all_survives_kill_9_of_every_broker_with_followers_syncing() {
    run(
        ["127.0.0.84", "127.0.0.85", "127.0.0.86"],
        "kill-all-fsync",
        "replica_fsync = true\n",
    );
}
