//! A Kafka client is told when the log it read was truncated (KIP-320), instead of reading
//! rewritten offsets. The Java consumer keeps the leader epoch of the last record it read
//! with its position; when the partition's leader changes it asks the new leader
//! (OffsetForLeaderEpoch) where that epoch ends, and a position past that point raises
//! LogTruncationException naming the first offset that diverges.
//!
//! The scenario is an unclean election, the one way a replicated partition loses records
//! below its high watermark: a topic with replication factor 2 and
//! `unclean.leader.election.enable=true`; the follower is paused (SIGSTOP) and leaves the
//! ISR; the leader alone takes records BEFORE..BEFORE+CUT, which the Java consumer reads;
//! the leader is killed (-9) and the follower resumed, and the controller makes it leader
//! with only the first BEFORE records; it takes AFTER new records at the offsets the
//! consumer already read. Without KIP-320 (no OffsetForLeaderEpoch, no real epochs) the
//! consumer would go on at its position and read the new records there as if nothing had
//! happened.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::time::Duration;

use clients::{java_available, java_proc};
use common::cluster::{settled_topic_metadata, start_cluster, wait_agreed, wait_topic};
use common::produce_in_order;
use common::{block_on, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::metadata_response::MetadataResponseTopic;

const HOSTS: [&str; 3] = ["127.0.0.101", "127.0.0.102", "127.0.0.103"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 2000\n";
const TOPIC: &str = "truncated";
const BEFORE: usize = 10;
const CUT: usize = 10;
const AFTER: usize = 15;

fn produce(broker: &Broker, label: &str, n: usize) {
    produce_in_order(
        &broker.producer("all", &[("message.timeout.ms", "30000")]),
        TOPIC,
        0,
        (0..n).map(|i| format!("{label}-{i}")),
    );
}

/// Polls `broker`'s metadata of the topic until `ok` holds (at most 60 s).
fn wait_for(
    broker: &Broker,
    what: &str,
    ok: impl Fn(&MetadataResponseTopic) -> bool,
) -> MetadataResponseTopic {
    wait_topic(broker, TOPIC, what, Duration::from_secs(60), ok)
}

fn signal(broker: &Broker, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child process this test started.
    let r = unsafe { libc::kill(broker.pid() as libc::pid_t, sig) };
    assert_eq!(r, 0, "signal {sig} to broker {}", broker.bootstrap());
}

#[test]
fn the_java_consumer_is_told_its_log_was_truncated() {
    if !java_available("KIP-320 truncation detection by the Java consumer") {
        return;
    }
    let mut brokers = start_cluster("java-truncation", &HOSTS, CONFIG);
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(20),
    );
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(2))
        .set("unclean.leader.election.enable", "true");
    let created =
        block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(created[0].is_ok(), "{created:?}");
    let t = settled_topic_metadata(&brokers[0], TOPIC, 1);
    let p = &t.partitions[0];
    let (leader, follower) = (
        p.leader_id.0,
        *p.replica_nodes
            .iter()
            .find(|r| r.0 != p.leader_id.0)
            .expect("two replicas"),
    );
    let follower = follower.0;
    let idx = |node: i32| (node - 1) as usize;
    let other = (1..=3)
        .find(|n| *n != leader && *n != follower)
        .expect("a third broker");
    let bystander = idx(other);
    produce(&brokers[bystander], "before", BEFORE);
    wait_for(&brokers[bystander], "both replicas in sync", |t| {
        t.partitions[0].isr_nodes.len() == 2
    });

    // The follower stops; the leader goes on alone.
    signal(&brokers[idx(follower)], libc::SIGSTOP);
    wait_for(
        &brokers[bystander],
        "the paused follower leaves the ISR",
        |t| {
            t.partitions[0]
                .isr_nodes
                .iter()
                .map(|b| b.0)
                .collect::<Vec<_>>()
                == vec![leader]
        },
    );
    produce(&brokers[bystander], "cut", CUT);

    let bootstrap = brokers
        .iter()
        .map(Broker::bootstrap)
        .collect::<Vec<_>>()
        .join(",");
    let until = (BEFORE + CUT).to_string();
    let mut java = java_proc("java kafka-clients");
    let mut new_leader_epoch = -1;
    let out = java.run_pausing(
        &[
            "consume-truncation",
            &bootstrap,
            TOPIC,
            "0",
            &until,
            "metadata.max.age.ms=1000",
        ],
        Duration::from_secs(180),
        |label, _| {
            assert_eq!(label, "positioned");
            // The leader dies with the only copy of the last CUT records; the follower
            // comes back and is elected although it is not in the ISR (unclean).
            brokers[idx(leader)].kill9();
            signal(&brokers[idx(follower)], libc::SIGCONT);
            let t = wait_for(&brokers[bystander], "the follower elected uncleanly", |t| {
                t.partitions[0].leader_id.0 == follower
            });
            new_leader_epoch = t.partitions[0].leader_epoch;
            // It takes new records at the offsets the consumer has already read.
            produce(&brokers[bystander], "after", AFTER);
        },
    );
    assert_eq!(out.code, 0, "{}", out.report());
    let position = out.line("position");
    assert_eq!(
        position[..2],
        ["0".to_string(), until.clone()],
        "{}",
        out.report()
    );
    let read_epoch: i32 = position[2].parse().expect("an epoch");
    assert!(
        read_epoch >= 0 && read_epoch < new_leader_epoch,
        "records read in epoch {read_epoch}, new leader at {new_leader_epoch}"
    );
    let rewritten: Vec<_> = out.lines("rec");
    assert!(
        rewritten.is_empty(),
        "the consumer read records past the truncation point: {rewritten:?}\n{}",
        out.report()
    );
    assert_eq!(
        out.line("truncated"),
        vec!["0".to_string(), BEFORE.to_string()],
        "the consumer must be told the log diverges at offset {BEFORE}\n{}",
        out.report()
    );
}
