//! Three rdkafka consumers subscribed with one group.id share a 6-partition topic: each
//! owns two partitions, the assignments are disjoint and cover the topic, every record
//! produced is consumed by exactly one member (none missed, none twice), and the group's auto
//! commits reach the end of every partition. DescribeGroups (raw protocol) agrees with what
//! each client believes it owns.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::groups::{close_bounded, decode_assignment, describe_group, group_options, TestGroup};
use common::Broker;

const TOPIC: &str = "shared";
const PARTITIONS: i32 = 6;
const GROUP: &str = "sharers";
const RECORDS: usize = 600;

#[test]
fn three_members_split_six_partitions_and_read_each_record_once() {
    let mut broker = Broker::start_with("groups-share", group_options(""));
    broker.create_topic(TOPIC, PARTITIONS, &[]);

    let mut group = TestGroup::new(TOPIC);
    for name in ["c1", "c2", "c3"] {
        group.add(name, broker.group_consumer(GROUP, name, &[]));
    }
    let took = group.wait_balanced(PARTITIONS, Duration::from_secs(30));
    eprintln!("group balanced after {took:?}: {:?}", group.assignments());
    let before: BTreeMap<String, BTreeSet<i32>> = group.assignments().into_iter().collect();
    for (name, parts) in &before {
        assert_eq!(parts.len(), 2, "{name} owns {parts:?}\n{}", group.report());
    }

    // The coordinator's view matches the clients'.
    let mut net = broker.net();
    let described = describe_group(&mut net, GROUP);
    assert_eq!(described.error_code, 0, "DescribeGroups: {described:?}");
    assert_eq!(described.group_state.as_str(), "Stable", "{described:?}");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.members.len(), 3, "{described:?}");
    for m in &described.members {
        let client = m.client_id.to_string();
        let owned = decode_assignment(&m.member_assignment);
        let want = before
            .get(&client)
            .unwrap_or_else(|| panic!("DescribeGroups lists unknown client {client}"));
        assert_eq!(
            owned.get(TOPIC),
            Some(want),
            "DescribeGroups assignment of {client} differs from the client's: {owned:?}"
        );
    }

    group.produce(&broker, PARTITIONS, "rec", RECORDS);
    group.consume_all_exactly_once(Duration::from_secs(40), Duration::from_secs(1));

    // No rebalance happened while consuming, and each member read only its own partitions,
    // all of each (100 records per partition).
    let after: BTreeMap<String, BTreeSet<i32>> = group.assignments().into_iter().collect();
    assert_eq!(before, after, "assignments changed while consuming");
    for m in &group.members {
        let own = &after[&m.name];
        assert!(
            m.recs.iter().all(|r| own.contains(&r.partition)),
            "{} consumed records of partitions it does not own ({own:?})",
            m.name
        );
        assert_eq!(
            m.recs.len(),
            RECORDS / PARTITIONS as usize * own.len(),
            "{} consumed {} records",
            m.name,
            m.recs.len()
        );
    }

    // Auto commit brings the committed offsets to the end of every partition.
    group.wait_committed(&broker, GROUP, PARTITIONS);
    for m in &group.members {
        assert!(
            m.commit_errors().is_empty(),
            "{}: commit errors {:?}",
            m.name,
            m.commit_errors()
        );
    }

    broker.assert_alive();
    for name in ["c1", "c2", "c3"] {
        let consumer = group.remove(name);
        close_bounded(consumer, name, Duration::from_secs(30));
    }
    broker.assert_alive();
}
