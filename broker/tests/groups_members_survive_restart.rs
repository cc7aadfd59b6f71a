//! A classic group's members survive a coordinator restart, as they do a Kafka coordinator
//! failover: after kill -9 and a restart the two rdkafka members keep heartbeating at their
//! generation, keep their partitions (no rebalance callback, DescribeGroups shows the same
//! generation and members) and read every record produced afterwards exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::groups::{close_bounded, describe_group, group_options, TestGroup};
use common::Broker;

const TOPIC: &str = "survivors";
const PARTITIONS: i32 = 4;
const GROUP: &str = "stay";

#[test]
fn members_keep_their_generation_and_partitions_across_kill9() {
    let mut broker = Broker::start_with("groups-members-restart", group_options(""));
    broker.create_topic(TOPIC, PARTITIONS, &[]);
    let mut group = TestGroup::new(TOPIC);
    for name in ["a", "b"] {
        group.add(name, broker.group_consumer(GROUP, name, &[]));
    }
    group.wait_balanced(PARTITIONS, Duration::from_secs(30));
    group.produce(&broker, PARTITIONS, "before", 200);
    group.consume_all_exactly_once(Duration::from_secs(30), Duration::from_millis(300));
    group.wait_committed(&broker, GROUP, PARTITIONS);
    let owned: BTreeMap<String, _> = group.assignments().into_iter().collect();
    let before = describe_group(&mut broker.net(), GROUP);
    let events_before: Vec<usize> = group.members.iter().map(|m| m.events().len()).collect();

    broker.kill9();
    broker.restart();

    group.produce(&broker, PARTITIONS, "after", 200);
    group.wait_for(
        "records produced after the restart consumed",
        Duration::from_secs(40),
        |g| g.produced.keys().all(|k| g.seen.contains_key(k)) || !g.duplicates.is_empty(),
    );
    // Losing the connection to the killed broker is what the clients report.
    group
        .errors
        .retain(|e| !(e.contains("BrokerTransportFailure") || e.contains("AllBrokersDown")));
    group.assert_exactly_once();

    let after = describe_group(&mut broker.net(), GROUP);
    assert_eq!(after.group_state.as_str(), "Stable", "{after:?}");
    assert_eq!(
        after.members.len(),
        2,
        "members after restart: {after:?}\nbefore: {before:?}"
    );
    let ids = |d: &rill_net::kafka_protocol::messages::describe_groups_response::DescribedGroup| {
        let mut v: Vec<String> = d.members.iter().map(|m| m.member_id.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&after), ids(&before), "the members were replaced");
    let now: BTreeMap<String, _> = group.assignments().into_iter().collect();
    assert_eq!(now, owned, "partitions moved across the restart");
    let events_after: Vec<usize> = group.members.iter().map(|m| m.events().len()).collect();
    assert_eq!(
        events_after,
        events_before,
        "a rebalance happened across the restart:\n{}",
        group.report()
    );
    for name in ["a", "b"] {
        let c = group.remove(name);
        close_bounded(c, name, Duration::from_secs(30));
    }
    broker.assert_alive();
}
