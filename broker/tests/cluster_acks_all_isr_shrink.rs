//! Two of issue 15's findings that no other test of the real broker shows, both about what
//! acks=all and the leader epoch promise a client:
//!
//! - min.insync.replicas holds while a produce waits, not only before the append: when the
//!   ISR shrinks below it while an acks=all produce waits, the answer is
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND (as in Kafka), not success. And a retry of an
//!   idempotent batch that was appended but not yet replicated waits like the first try,
//!   instead of being answered at once as a duplicate.
//! - KIP-320: `current_leader_epoch` in ListOffsets and Fetch is checked (an older epoch is
//!   FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH), and ListOffsets answers with
//!   the leader's real epoch.
//!
//! Before issue 15's work the broker checked min.insync.replicas only before the append
//! and answered success once the ISR had shrunk to the leader alone, answered the retry at
//! once, ignored `current_leader_epoch` and answered every ListOffsets with epoch 0.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{
    agreed_cluster_with_topic, settled_topic_metadata, start_cluster, topic_metadata, wait_agreed,
};
use common::produce_in_order;
use common::{block_on, topic_name, Broker, NetClient};
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use rill_net::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_net::kafka_protocol::messages::{
    ApiKey, FetchRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest,
};
use rill_net::ErrorCode;

/// A paused follower stays registered (a long session) and leaves the ISR after 3 s.
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 60000\nreplica_lag_time_max_ms = 3000\n";
/// A killed leader is fenced, and its partitions move, after 2 s.
const SHORT_SESSION: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 3000\n";

fn produce(broker: &Broker, topic: &str, n: usize) {
    produce_in_order(
        &broker.producer("all", &[]),
        topic,
        0,
        (0..n).map(|i| format!("v{i}")),
    );
}

/// One acks=all produce of `batch` to partition 0 with a 30 s timeout: (error, base offset,
/// how long the answer took).
fn produce_all(net: &mut NetClient, topic: &str, batch: Bytes) -> (i16, i64, Duration) {
    let started = Instant::now();
    let r = net.send(
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch))])]),
    );
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset, started.elapsed())
}

fn name(code: i16) -> String {
    match ErrorCode::from_code(code) {
        Some(c) => format!("{c}"),
        None => format!("error {code}"),
    }
}

#[test]
fn acks_all_answers_not_enough_replicas_after_append_and_retries_wait_too() {
    const TOPIC: &str = "isr-shrink";
    let hosts = ["127.0.0.121", "127.0.0.122", "127.0.0.123"];
    let mut brokers = start_cluster("isr-shrink", &hosts, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(2)).set("min.insync.replicas", "2");
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "{r:?}");
    let p = settled_topic_metadata(&brokers[0], TOPIC, 1).partitions[0].clone();
    let leader = (p.leader_id.0 - 1) as usize;
    let follower = p
        .replica_nodes
        .iter()
        .map(|b| (b.0 - 1) as usize)
        .find(|&b| b != leader)
        .expect("a follower");
    produce(&brokers[leader], TOPIC, 5);
    let mut net = brokers[leader].net();
    let init = net.send(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    let batch = encode_record_batch(
        &[ProduceRecord {
            value: Some(Bytes::from_static(b"only-on-the-leader")),
            timestamp_ms: common::now_ms(),
            ..Default::default()
        }],
        &BatchOptions {
            producer_id: init.producer_id.0,
            producer_epoch: init.producer_epoch,
            base_sequence: 0,
            ..BatchOptions::default()
        },
    )
    .expect("encode an idempotent batch");

    // The follower stops fetching (paused; it leaves the ISR after replica_lag_time_max_ms).
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(brokers[follower].pid() as libc::pid_t, libc::SIGSTOP);
    }
    let first = {
        let b = batch.clone();
        let mut net = brokers[leader].net();
        std::thread::spawn(move || produce_all(&mut net, TOPIC, b))
    };
    // The producer's retry of the same batch, on another connection, while the first waits.
    std::thread::sleep(Duration::from_millis(500));
    let retry = produce_all(&mut brokers[leader].net(), TOPIC, batch);
    let first = first.join().expect("the first produce");
    let near = ErrorCode::NotEnoughReplicasAfterAppend.code();
    let mut wrong = Vec::new();
    if retry.0 == 0 {
        wrong.push(format!(
            "a retry of an idempotent batch that only the leader held was answered as acknowledged after {:?} (offset {}), without waiting for the in-sync replicas",
            retry.2, retry.1
        ));
    }
    if first.0 != near {
        wrong.push(format!(
            "the ISR shrank to the leader alone (min.insync.replicas 2) while an acks=all produce waited; it was answered {} after {:?}, expected NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            name(first.0),
            first.2
        ));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(brokers[follower].pid() as libc::pid_t, libc::SIGCONT);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("; "));
    assert_eq!(retry.0, near, "the retry's answer: {retry:?}");
    // The follower comes back; the batch is stored once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while topic_metadata(&brokers[leader], TOPIC).partitions[0]
        .isr_nodes
        .len()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the follower did not rejoin the ISR"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(brokers[leader].watermarks(TOPIC, 0).1, 6);
    for b in &mut brokers {
        b.assert_alive();
    }
}

#[test]
fn list_offsets_and_fetch_check_and_answer_the_leader_epoch() {
    const TOPIC: &str = "epochs";
    let hosts = ["127.0.0.124", "127.0.0.125", "127.0.0.126"];
    let mut brokers = agreed_cluster_with_topic(
        "epochs",
        &hosts,
        SHORT_SESSION,
        &NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)),
    );
    let p = settled_topic_metadata(&brokers[0], TOPIC, 1).partitions[0].clone();
    let first_leader = (p.leader_id.0 - 1) as usize;
    let other = (first_leader + 1) % 3;
    produce(&brokers[other], TOPIC, 5);
    // A leadership change, so the epoch is past the first one.
    brokers[first_leader].kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    let p = loop {
        let p = topic_metadata(&brokers[other], TOPIC).partitions[0].clone();
        if p.leader_id.0 > 0 && p.leader_id.0 as usize != first_leader + 1 {
            break p;
        }
        assert!(Instant::now() < deadline, "no new leader: {p:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    brokers[first_leader].restart();
    let (leader, epoch) = ((p.leader_id.0 - 1) as usize, p.leader_epoch);
    assert!(
        epoch > 0,
        "the leader epoch after a leader change is {epoch}"
    );
    // Records of the new epoch, so the log's last epoch is the leader's.
    produce(&brokers[leader], TOPIC, 5);
    let mut net = brokers[leader].net();
    let versions = format!(
        "(negotiated ListOffsets v{}, Fetch v{})",
        net.version(ApiKey::ListOffsets),
        net.version(ApiKey::Fetch)
    );
    let list = |net: &mut NetClient, current: i32| {
        let r = net.send(
            &ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_current_leader_epoch(current)
                        .with_timestamp(-1)])]),
        );
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.leader_epoch)
    };
    let fetch = |net: &mut NetClient, current: i32| {
        let r = net.send(
            &FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(TOPIC))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]),
        );
        r.responses[0].partitions[0].error_code
    };
    let fenced = ErrorCode::FencedLeaderEpoch.code();
    let unknown = ErrorCode::UnknownLeaderEpoch.code();
    let mut wrong = Vec::new();
    let now = list(&mut net, epoch);
    if now != (0, 10, epoch) {
        wrong.push(format!(
            "ListOffsets at the leader's epoch {epoch} answered (error, offset, epoch) {now:?}, expected (0, 10, {epoch})"
        ));
    }
    for (current, want) in [(epoch - 1, fenced), (epoch + 1, unknown)] {
        let (code, _, _) = list(&mut net, current);
        if code != want {
            wrong.push(format!(
                "ListOffsets with current_leader_epoch {current} (leader at {epoch}) answered {}, expected {}",
                name(code),
                name(want)
            ));
        }
        let code = fetch(&mut net, current);
        if code != want {
            wrong.push(format!(
                "Fetch with current_leader_epoch {current} (leader at {epoch}) answered {}, expected {}",
                name(code),
                name(want)
            ));
        }
    }
    assert!(wrong.is_empty(), "{} {versions}", wrong.join("; "));
    for b in &mut brokers {
        b.assert_alive();
    }
}
