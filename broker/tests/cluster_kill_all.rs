//! Rill's promise for acks=all in a cluster, at least Kafka's: a record acknowledged with
//! acks=all survives kill -9 of every broker at once. The leader answers once every in-sync
//! replica holds the batch, and a follower says it holds a batch only once it is in its
//! files (or fdatasync'd, with `replica_fsync`), never while it is only in its memory.
//!
//! Idempotent acks=all producers write while all three brokers are killed at the same
//! moment; after they restart, every acknowledged record is read back at the offset it was
//! acknowledged with. Run once with followers writing to their files and once with
//! `replica_fsync = true`.
//!
//! A third run restarts the followers of partition 0 first and its leader only seconds
//! later, three times over: a cluster that lets a follower lead again from what it held
//! only in memory (before its write reached the file) loses the records acknowledged in
//! the last milliseconds before the kill, and the leader, restarting behind it, cuts its
//! copy of them away. The code before issue 15 (5ae9884) failed it in 3 runs of 3, losing
//! 1 to 28 acknowledged records in 3 of the 8 rounds played; a race, so not every run of it
//! must fail.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{settled_topic_metadata, start_cluster, topic_metadata, wait_agreed};
use common::{acked_not_read_back, block_on, wait_until, Acked, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;

const TOPIC: &str = "kill-all";
const PARTITIONS: i32 = 3;
/// Records each producer keeps unanswered.
const IN_FLIGHT_MAX: usize = 100;

/// Which brokers start again after the kill, in what order.
#[derive(Clone, Copy, PartialEq)]
enum Restart {
    /// All three at once.
    All,
    /// The two followers of partition 0 first (a metadata quorum), its leader seconds later.
    FollowersFirst,
}

fn run(hosts: [&str; 3], name: &str, extra: &str, order: Restart, rounds: usize) {
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
    let mut acked = Vec::new();
    for round in 1..=rounds {
        // Every partition led with all three in sync before each kill.
        let leader0 = wait_until(
            Duration::from_secs(30),
            "every partition led with all three replicas in sync",
            || {
                let t = topic_metadata(&brokers[0], TOPIC);
                let settled = t.partitions.len() == PARTITIONS as usize
                    && t.partitions
                        .iter()
                        .all(|p| p.leader_id.0 >= 1 && p.isr_nodes.len() == 3);
                settled.then(|| t.partitions[0].leader_id.0)
            },
        );
        let this_round = produce_until_killed(&mut brokers, round);
        assert!(
            this_round.len() > 100,
            "round {round}: only {} records acknowledged before the kill",
            this_round.len()
        );
        acked.extend(this_round);
        let mut led_meanwhile = None;
        if order == Restart::FollowersFirst {
            let followers: Vec<usize> = (0..3).filter(|i| *i as i32 + 1 != leader0).collect();
            for &i in &followers {
                brokers[i].restart();
            }
            // Partition 0's leader stays down for the session timeout and more: a cluster
            // that elects a follower meanwhile must have given it everything it acknowledged.
            let deadline = Instant::now() + Duration::from_secs(6);
            while Instant::now() < deadline {
                let l = topic_metadata(&brokers[followers[0]], TOPIC)
                    .partitions
                    .first()
                    .map_or(-1, |p| p.leader_id.0);
                if l >= 1 && l != leader0 {
                    led_meanwhile = Some(l);
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            eprintln!(
                "round {round}: partition 0 (led by broker {leader0} before the kill) led by \
                 {led_meanwhile:?} while that broker was down"
            );
            brokers[leader0 as usize - 1].restart();
        } else {
            for b in &mut brokers {
                b.restart();
            }
        }
        wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(30));
        let lost = acked_not_read_back(&brokers[0], TOPIC, PARTITIONS, &acked);
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged records are not at their offset after kill -9 \
             of every broker (partition 0 was led by broker {leader0} before the kill; led by \
             {led_meanwhile:?} while it was down): {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)]
        );
    }
    for b in &mut brokers {
        b.assert_alive();
    }
}

/// Two idempotent acks=all producers write for 2.5 s, then every broker is killed (-9) at
/// the same moment while they still write; what was acknowledged is returned.
fn produce_until_killed(brokers: &mut [Broker], round: usize) -> Vec<Acked> {
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|n| {
            let producer = brokers[n].producer(
                "all",
                &[
                    ("enable.idempotence", "true"),
                    ("message.timeout.ms", "5000"),
                    // No lingering: produce requests leave as records come, not in 5 ms steps
                    // that a follower's own write-behind could keep pace with.
                    ("linger.ms", "0"),
                ],
            );
            let (acked, stop) = (acked.clone(), stop.clone());
            thread::spawn(move || {
                // A steady stream, up to IN_FLIGHT_MAX records unanswered: acknowledgements
                // keep arriving until the kill, so the last ones are milliseconds old then.
                let mut pending = VecDeque::new();
                let mut i = 0usize;
                loop {
                    if !stop.load(Ordering::SeqCst) && pending.len() < IN_FLIGHT_MAX {
                        let value = format!("r{round}-p{n}-{i:06}");
                        let p = (i % PARTITIONS as usize) as i32;
                        let r = FutureRecord::<(), _>::to(TOPIC)
                            .partition(p)
                            .payload(&value);
                        match producer.send_result(r) {
                            Ok(f) => pending.push_back((value, f)),
                            Err(_) => thread::sleep(Duration::from_millis(1)),
                        }
                        i += 1;
                        continue;
                    }
                    let Some((value, f)) = pending.pop_front() else {
                        break;
                    };
                    if let Ok(Ok(d)) = block_on(f) {
                        acked.lock().unwrap().push((d.partition, d.offset, value));
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(2500));
    Broker::kill9_all(brokers);
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.join().expect("a producer thread panicked");
    }
    let acked = acked.lock().unwrap().clone();
    acked
}

#[test]
fn acks_all_survives_kill_9_of_every_broker_at_once() {
    run(
        ["127.0.0.81", "127.0.0.82", "127.0.0.83"],
        "kill-all",
        "",
        Restart::All,
        1,
    );
}

#[test]
fn acks_all_survives_kill_9_of_every_broker_with_followers_syncing() {
    run(
        ["127.0.0.84", "127.0.0.85", "127.0.0.86"],
        "kill-all-fsync",
        "replica_fsync = true\n",
        Restart::All,
        1,
    );
}

#[test]
fn acks_all_survives_kill_9_of_every_broker_when_followers_restart_first() {
    run(
        ["127.0.0.87", "127.0.0.88", "127.0.0.89"],
        "kill-all-followers-first",
        "",
        Restart::FollowersFirst,
        3,
    );
}
