//! KIP-848 groups, the durable and static side, with rdkafka (`group.protocol=consumer`):
//!
//! - members asking for the `range` server assignor get contiguous ranges, and
//!   ConsumerGroupDescribe names the assignor;
//! - a static member (group.instance.id) that closes and comes back within the session
//!   timeout gets exactly its old partitions back and the group epoch does not move (no
//!   rebalance), while the other member keeps its partitions throughout;
//! - the group's state and committed offsets are records in `__consumer_offsets`: after a
//!   kill -9 and restart of the broker the members carry on at their epochs (nobody is
//!   fenced, nothing is rebalanced) and read every record produced afterwards exactly once,
//!   from the committed offsets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::groups::{
    close_bounded, consumer_group_describe, described_assignments, group_options, RebalanceEvent,
    TestGroup,
};
use common::Broker;

const TOPIC: &str = "kip848-static";
const PARTITIONS: i32 = 6;
const GROUP: &str = "static-new-protocol";
const CONFIG: &str =
    "consumer_group_heartbeat_interval_ms = 300\nconsumer_group_session_timeout_ms = 15000\n";

fn member(broker: &Broker, name: &str) -> common::groups::GroupConsumer {
    broker.consumer_protocol_member(
        GROUP,
        name,
        &[
            ("group.instance.id", &format!("instance-{name}")),
            ("group.remote.assignor", "range"),
        ],
    )
}

fn is_contiguous(parts: &BTreeSet<i32>) -> bool {
    match (parts.first(), parts.last()) {
        (Some(lo), Some(hi)) => (hi - lo + 1) as usize == parts.len(),
        _ => true,
    }
}

#[test]
fn static_members_rejoin_without_rebalance_and_state_survives_kill9() {
    let mut broker = Broker::start_with("groups-kip848-static", group_options(CONFIG));
    broker.create_topic(TOPIC, PARTITIONS, &[]);

    let mut group = TestGroup::new(TOPIC);
    group.add("s1", member(&broker, "s1"));
    group.add("s2", member(&broker, "s2"));
    group.wait_balanced(PARTITIONS, Duration::from_secs(30));
    let owned: BTreeMap<String, BTreeSet<i32>> = group.assignments().into_iter().collect();
    assert!(
        owned.values().all(is_contiguous),
        "range assignor gave non-contiguous ranges: {owned:?}"
    );
    let mut net = broker.net();
    let d = consumer_group_describe(&mut net, GROUP);
    assert_eq!(d.assignor_name.as_str(), "range", "{d:?}");
    assert_eq!(d.group_state.as_str(), "Stable", "{d:?}");
    let epoch = d.group_epoch;

    group.produce(&broker, PARTITIONS, "before", 300);
    group.consume_all_exactly_once(Duration::from_secs(30), Duration::from_millis(300));
    group.wait_committed(&broker, GROUP, PARTITIONS);

    // s1 closes (a static member leaves "for now") and a new process with its instance id
    // comes back: same partitions, same group epoch, s2 untouched.
    let s2_events_before = group.member("s2").events().len();
    let s1 = group.remove("s1");
    close_bounded(s1, "s1", Duration::from_secs(30));
    group.add("s1-again", member(&broker, "s1"));
    group.wait_balanced(PARTITIONS, Duration::from_secs(30));
    let back: BTreeMap<String, BTreeSet<i32>> = group.assignments().into_iter().collect();
    assert_eq!(back["s1-again"], owned["s1"], "{}", group.report());
    assert_eq!(back["s2"], owned["s2"], "{}", group.report());
    let d = consumer_group_describe(&mut net, GROUP);
    assert_eq!(
        d.group_epoch, epoch,
        "the static member's return moved the group epoch: {d:?}"
    );
    let s2_new: Vec<RebalanceEvent> = group.member("s2").events()[s2_events_before..].to_vec();
    assert!(
        s2_new.is_empty(),
        "s2 saw rebalance callbacks while s1 came back: {s2_new:?}"
    );

    group.produce(&broker, PARTITIONS, "after-rejoin", 300);
    group.consume_all_exactly_once(Duration::from_secs(30), Duration::from_millis(300));
    group.wait_committed(&broker, GROUP, PARTITIONS);

    // kill -9: the group's members, epochs, assignments and offsets are in the log.
    let described_before = described_assignments(&consumer_group_describe(&mut net, GROUP), TOPIC);
    broker.kill9();
    broker.restart();
    let mut net = broker.net();
    let d = consumer_group_describe(&mut net, GROUP);
    assert_eq!(d.error_code, 0, "{d:?}");
    assert_eq!(d.group_epoch, epoch, "{d:?}");
    assert_eq!(described_assignments(&d, TOPIC), described_before, "{d:?}");

    group.produce(&broker, PARTITIONS, "after-restart", 300);
    group.wait_for(
        "records produced after the restart consumed",
        Duration::from_secs(40),
        |g| g.produced.keys().all(|k| g.seen.contains_key(k)) || !g.duplicates.is_empty(),
    );
    // Losing the connection to a killed broker is what the clients report; nothing else is
    // forgiven.
    group
        .errors
        .retain(|e| !(e.contains("BrokerTransportFailure") || e.contains("AllBrokersDown")));
    group.assert_exactly_once();
    let after: BTreeMap<String, BTreeSet<i32>> = group.assignments().into_iter().collect();
    assert_eq!(
        after,
        back,
        "the restart moved partitions:\n{}",
        group.report()
    );
    let d = consumer_group_describe(&mut net, GROUP);
    assert_eq!(
        d.group_epoch, epoch,
        "the restart rebalanced the group: {d:?}"
    );

    broker.assert_alive();
    for name in ["s1-again", "s2"] {
        let c = group.remove(name);
        close_bounded(c, name, Duration::from_secs(30));
    }
    broker.assert_alive();
}
