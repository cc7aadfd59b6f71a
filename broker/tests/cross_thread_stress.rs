//! Hammers every path on which one thread hands work or an answer to another: a one-voter
//! cluster broker with two shards takes topic creations and deletions (the metadata thread
//! answers in a shard's mailbox and rings its doorbell, and publishes images that every
//! shard applies), produces to partitions of both shards from one connection (requests and
//! answers crossing the shard mesh), and long polls over both shards that one shard's data
//! ends early (the other shard's parked wait is cancelled over the mesh), all at once for a
//! bounded time. The broker must stay up, answer every request, and keep every record it
//! acknowledged.
//!
//! glommio 0.9 frees a task twice when a waker from another thread races the task's
//! completion (glibc's "double free detected in tcache 2", seen in chaos runs with the
//! backtrace in `SleepNotifier::process_foreign_wakes`); this broker no longer completes any
//! shard's future from another thread, and this test is the load that found it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::FetchRequest;

/// How long the load runs.
const STRESS: Duration = Duration::from_secs(20);
const PARTITIONS: i32 = 8;

#[test]
fn cross_thread_handoffs_survive_sustained_load() {
    let port = free_port();
    let mut o = BrokerOptions::with_config("broker_heartbeat_interval_ms = 200\n");
    o.shards = 2;
    o.extra_args = vec![
        "--node-id".into(),
        "1".into(),
        "--controller-quorum".into(),
        format!("1@127.0.0.1:{port}"),
    ];
    let mut broker = Broker::start_with("cross-thread", o);
    broker.create_topic("stress", PARTITIONS, &[]);
    broker.wait_for_topic("stress", PARTITIONS as usize);
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + STRESS;

    // Metadata churn: the raft path, mailboxes, doorbells, image applies on both shards.
    let churn = {
        let admin = broker.admin();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut changes = 0usize;
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("churn-{i}");
                let topic = NewTopic::new(&name, 4, TopicReplication::Fixed(1));
                let created = block_on(admin.create_topics([&topic], &admin_options()))
                    .expect("CreateTopics answered");
                assert!(created[0].is_ok(), "create {name}: {:?}", created[0]);
                let deleted = block_on(admin.delete_topics(&[&name], &admin_options()))
                    .expect("DeleteTopics answered");
                assert!(deleted[0].is_ok(), "delete {name}: {:?}", deleted[0]);
                changes += 2;
                i += 1;
            }
            changes
        })
    };

    // Long polls over partitions of both shards: whichever has data first ends the wait,
    // and the other shard's parked wait is cancelled.
    let polls = Arc::new(AtomicUsize::new(0));
    let pollers: Vec<_> = (0..2)
        .map(|n| {
            let mut net = broker.net();
            let stop = stop.clone();
            let polls = polls.clone();
            thread::spawn(move || {
                let mut offsets = vec![0i64; PARTITIONS as usize];
                while !stop.load(Ordering::SeqCst) {
                    let request = FetchRequest::default()
                        .with_max_wait_ms(50 + 25 * n)
                        .with_min_bytes(1)
                        .with_max_bytes(1 << 20)
                        .with_session_epoch(-1)
                        .with_topics(vec![FetchTopic::default()
                            .with_topic(topic_name("stress"))
                            .with_partitions(
                                (0..PARTITIONS)
                                    .map(|p| {
                                        FetchPartition::default()
                                            .with_partition(p)
                                            .with_fetch_offset(offsets[p as usize])
                                            .with_partition_max_bytes(64 << 10)
                                    })
                                    .collect(),
                            )]);
                    let response = net.send(&request);
                    assert_eq!(response.error_code, 0, "fetch failed: {response:?}");
                    for t in &response.responses {
                        for p in &t.partitions {
                            assert_eq!(
                                p.error_code, 0,
                                "partition {} fetch error",
                                p.partition_index
                            );
                            // Move on to the high watermark: the next poll parks again.
                            offsets[p.partition_index as usize] = p.high_watermark;
                        }
                    }
                    polls.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Producers: small acks=1 records to every partition, pipelined.
    let producer = broker.producer("1", &[("linger.ms", "1")]);
    let mut acked = vec![0i64; PARTITIONS as usize];
    let mut sent = 0usize;
    while Instant::now() < deadline {
        let mut pending = Vec::new();
        for i in 0..(PARTITIONS as usize * 25) {
            let p = (i % PARTITIONS as usize) as i32;
            let payload = format!("record-{sent}");
            let r = FutureRecord::<(), _>::to("stress")
                .partition(p)
                .payload(&payload);
            pending.push(
                producer
                    .send_result(r)
                    .unwrap_or_else(|(e, _)| panic!("enqueue: {e}")),
            );
            sent += 1;
        }
        for d in pending {
            let delivered = block_on(d)
                .expect("delivery future dropped")
                .unwrap_or_else(|(e, _)| panic!("produce failed under load: {e}"));
            let a = &mut acked[delivered.partition as usize];
            *a = (*a).max(delivered.offset + 1);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let changes = churn.join().expect("the metadata churn thread panicked");
    for p in pollers {
        p.join().expect("a long-poll thread panicked");
    }
    broker.assert_alive();
    assert!(changes >= 20, "only {changes} topic changes in {STRESS:?}");
    assert!(
        polls.load(Ordering::SeqCst) >= 50,
        "only {} long polls",
        polls.load(Ordering::SeqCst)
    );
    // Every acknowledged record is there.
    for p in 0..PARTITIONS {
        let (low, high) = broker.watermarks("stress", p);
        assert_eq!(low, 0);
        assert!(
            high >= acked[p as usize],
            "partition {p}: acknowledged up to {} but the high watermark is {high}",
            acked[p as usize]
        );
    }
    let log = broker.log_tail(broker.starts());
    assert!(
        !log.contains("double free") && !log.contains("aborting"),
        "the broker logged an abort:\n{log}"
    );
}
