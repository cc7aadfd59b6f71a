//! A follower that fell behind its leader's log start catches up from there, and followers
//! keep the leader's log start. The follower of a replication-factor-2 partition is paused
//! (SIGSTOP) and leaves the ISR; the leader takes records and deletes most of them
//! (DeleteRecords, as retention would), so what the follower needs next is gone. Resumed,
//! the follower is answered OFFSET_OUT_OF_RANGE with the leader's log start past its log
//! end: it empties its log, restarts at the leader's log start, copies the rest and is back
//! in the ISR. A second DeleteRecords while it follows moves its log start too, so when it
//! leads after the old leader dies it serves exactly the records the leader kept, from
//! the same log start.
//!
//! Before, such a follower fetched from its own log end forever and never rejoined the
//! ISR; and followers never moved their log start, so deleted records came back after a
//! failover.

mod common;

use std::time::Duration;

use common::cluster::{
    leader_follower_bystander, settled_topic_metadata, start_cluster, wait_agreed, wait_topic,
};
use common::produce_in_order;
use common::{assign, block_on, consume_exactly, topic_name, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::Offset;
use rill_net::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use rill_net::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use rill_net::kafka_protocol::messages::DeleteRecordsRequest;

const HOSTS: [&str; 3] = ["127.0.0.111", "127.0.0.112", "127.0.0.113"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 2000\n";
const TOPIC: &str = "behind";
const EARLY: usize = 10;
const GONE: usize = 100;
const LATER: usize = 10;
const KEPT_AT_LAST: i64 = 115;

fn produce(broker: &Broker, label: &str, n: usize) {
    produce_in_order(
        &broker.producer("1", &[("message.timeout.ms", "30000")]),
        TOPIC,
        0,
        (0..n).map(|i| format!("{label}-{i}")),
    );
}

/// DeleteRecords below `offset`, sent to the leader; the low watermark it answers.
fn delete_records(leader: &Broker, offset: i64) -> i64 {
    let r = leader.net().send(
        &DeleteRecordsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(offset)])]),
    );
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "DeleteRecords below {offset}: {r:?}");
    p.low_watermark
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
fn a_follower_behind_the_leaders_log_start_restarts_there_and_catches_up() {
    let mut brokers = start_cluster("behind-log-start", &HOSTS, CONFIG);
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(20),
    );
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(2));
    let created =
        block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(created[0].is_ok(), "{created:?}");
    let t = settled_topic_metadata(&brokers[0], TOPIC, 1);
    let (leader, follower, bystander) = leader_follower_bystander(&t, 0);
    let idx = |node: i32| (node - 1) as usize;
    produce(&brokers[bystander], "early", EARLY);
    wait_for(&brokers[bystander], "both replicas in sync", |t| {
        t.partitions[0].isr_nodes.len() == 2
    });

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
    produce(&brokers[bystander], "gone", GONE);
    let start = (EARLY + GONE) as i64;
    assert_eq!(delete_records(&brokers[idx(leader)], start), start);
    produce(&brokers[bystander], "later", LATER);

    signal(&brokers[idx(follower)], libc::SIGCONT);
    wait_for(
        &brokers[bystander],
        "the follower catches up from the leader's log start and rejoins the ISR",
        |t| t.partitions[0].isr_nodes.len() == 2,
    );
    // The leader deletes more while the follower follows: the follower's start moves too.
    assert_eq!(
        delete_records(&brokers[idx(leader)], KEPT_AT_LAST),
        KEPT_AT_LAST
    );
    std::thread::sleep(Duration::from_secs(1));

    // The old leader dies; the follower leads, from the same log start.
    brokers[idx(leader)].kill9();
    wait_for(&brokers[bystander], "the follower leads", |t| {
        t.partitions[0].leader_id.0 == follower
    });
    let end = (EARLY + GONE + LATER) as i64;
    let (low, high) = brokers[idx(follower)].watermarks(TOPIC, 0);
    assert_eq!(
        (low, high),
        (KEPT_AT_LAST, end),
        "the new leader's log start and end"
    );
    let consumer = brokers[idx(follower)].consumer(&[]);
    assign(&consumer, TOPIC, &[0], Offset::Beginning);
    let recs = consume_exactly(
        &consumer,
        (end - KEPT_AT_LAST) as usize,
        Duration::from_secs(30),
    );
    for (i, r) in recs.iter().enumerate() {
        let offset = KEPT_AT_LAST + i as i64;
        let later = (offset - start) as usize;
        assert_eq!(r.offset, offset, "{recs:?}");
        assert_eq!(
            r.value.as_deref(),
            Some(format!("later-{later}").as_bytes()),
            "offset {offset}"
        );
    }
}
