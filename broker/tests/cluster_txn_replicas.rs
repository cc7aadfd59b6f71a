//! Transactions on every replica (issue 17): followers record each transactional batch and
//! end marker they copy, so the last stable offset and the aborted transactions a
//! read_committed reader is told are the same whichever replica leads. Three brokers, one
//! partition on all three, transactions written by hand (WriteTxnMarkers ends them); the
//! leader is killed (kill -9) and the new one must answer as it did; the old leader comes
//! back as a follower after its crash, copies the rest, and answers the same again once
//! it leads (the preferred-leader pass gives it back its partition).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{agreed_cluster_with_topic, settled_topic_metadata, wait_topic};
use common::txn::*;
use common::Broker;
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::ErrorCode;

const HOSTS: [&str; 3] = ["127.0.0.161", "127.0.0.162", "127.0.0.163"];
/// Transactions are written by hand, without a coordinator (WriteTxnMarkers ends them), so
/// partition verification is off, as in Kafka's own tests of hanging transactions.
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 2000\ntransaction_partition_verification = false\n";
const TOPIC: &str = "txn-replicas";

fn idx(node: i32) -> usize {
    (node - 1) as usize
}

/// Waits until `broker` names a leader of partition 0 for which `ok` holds.
fn leader_where(broker: &Broker, what: &str, ok: impl Fn(i32) -> bool) -> i32 {
    let t = wait_topic(broker, TOPIC, what, Duration::from_secs(60), |t| {
        let l = t.partitions[0].leader_id.0;
        l > 0 && ok(l)
    });
    t.partitions[0].leader_id.0
}

/// The partition through `leader`, once it answers read_committed reads with the last
/// stable offset `w` expects (a new leader learns its high watermark from its followers'
/// first fetches).
fn settled(brokers: &[Broker], leader: i32, w: &Written, when: &str) -> TxnPartition {
    let mut c = TxnPartition::new(brokers[idx(leader)].net(), TOPIC);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = c.try_fetch_all(1);
        if matches!(&seen, Ok(s) if s.last_stable_offset == w.last_stable_offset) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: broker {leader} never reached the last stable offset {}: {seen:?}",
            w.last_stable_offset
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_leader_reports_the_transactions_and_aborts_the_first_one_did() {
    let new = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)).set("segment.bytes", "16384");
    let mut brokers = agreed_cluster_with_topic("txn-replicas", &HOSTS, CONFIG, &new);
    let t = settled_topic_metadata(&brokers[0], TOPIC, 1);
    let first = t.partitions[0].leader_id.0;
    assert_eq!(
        first, t.partitions[0].replica_nodes[0].0,
        "the preferred replica leads a new partition"
    );
    let mut c = TxnPartition::new(brokers[idx(first)].net(), TOPIC);
    let mut a = c.init_producer();
    let mut b = c.init_producer();
    let mut w = write_transactions(&mut c, &mut a, &mut b);
    check_state(&mut c, &w, "on the first leader");
    drop(c);

    // Every write was acknowledged by all three (acks=all): kill the leader.
    brokers[idx(first)].kill9();
    let bystander = (0..3).find(|&i| i != idx(first)).unwrap();
    let second = leader_where(&brokers[bystander], "a new leader", |l| l != first);
    let mut c = settled(&brokers, second, &w, "on the second leader");
    check_state(&mut c, &w, "on the second leader");
    // The open transaction is aborted on the new leader, at a newer coordinator epoch.
    assert_eq!(c.marker(&a, false, 1), ErrorCode::None);
    w.aborted.push((a.id, w.last_stable_offset));
    w.aborted.sort();
    let hw = c.fetch_all(0).high_watermark;
    w.last_stable_offset = hw;
    check_state(&mut c, &w, "on the second leader after the abort");
    // One more aborted transaction, which the old leader has never seen.
    let late = values("late", 2);
    let late_at = c.txn_produce(&mut b, &late);
    assert_eq!(c.marker(&b, false, 1), ErrorCode::None);
    w.all.extend(late);
    w.aborted.push((b.id, late_at));
    w.aborted.sort();
    w.last_stable_offset = c.fetch_all(0).high_watermark;
    drop(c);

    // The old leader restarts after its crash, copies what it missed as a follower, and
    // leads again (it is the preferred replica).
    brokers[idx(first)].restart();
    leader_where(
        &brokers[bystander],
        "the preferred replica leads again",
        |l| l == first,
    );
    let mut c = settled(&brokers, first, &w, "on the first leader again");
    check_state(&mut c, &w, "on the first leader again");
    // Its producer state is the log's: an old coordinator's marker is fenced, a retry of
    // the late abort changes nothing.
    assert_eq!(
        c.marker(&b, true, 0),
        ErrorCode::TransactionCoordinatorFenced
    );
    assert_eq!(c.marker(&b, false, 1), ErrorCode::None);
    w.last_stable_offset = c.fetch_all(0).high_watermark;
    check_state(&mut c, &w, "after a retried marker");
    for b in &mut brokers {
        b.terminate();
    }
}
