//! KIP-848 consumer groups with a real client: rdkafka consumers configured with
//! `group.protocol=consumer` (ConsumerGroupHeartbeat, server-side assignment) consume a
//! topic; when a second member joins, the group rebalances incrementally (the first member
//! keeps consuming what it keeps), every record is read exactly once, and the auto commits
//! reach the end of every partition. ConsumerGroupDescribe and ListGroups (raw protocol)
//! agree with what the clients own. A member that leaves hands its partitions back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::groups::{
    close_bounded, consumer_group_describe, described_assignments, group_options, list_group_types,
    RebalanceEvent, TestGroup,
};
use common::Broker;

const TOPIC: &str = "kip848";
const PARTITIONS: i32 = 6;
const GROUP: &str = "new-protocol";
/// Heartbeats every 300 ms, so reconciliation steps are quick in a test.
const CONFIG: &str = "consumer_group_heartbeat_interval_ms = 300\n";

#[test]
fn consumer_protocol_group_consumes_and_rebalances_when_a_member_joins() {
    let mut broker = Broker::start_with("groups-kip848", group_options(CONFIG));
    broker.create_topic(TOPIC, PARTITIONS, &[]);

    let mut group = TestGroup::new(TOPIC);
    group.add("c1", broker.consumer_protocol_member(GROUP, "c1", &[]));
    let took = group.wait_balanced(PARTITIONS, Duration::from_secs(30));
    eprintln!("c1 owns every partition after {took:?}");
    group.produce(&broker, PARTITIONS, "first", 300);
    group.consume_all_exactly_once(Duration::from_secs(30), Duration::from_millis(300));

    // A second member joins: three partitions move to it, three stay with c1.
    group.add("c2", broker.consumer_protocol_member(GROUP, "c2", &[]));
    let took = group.wait_balanced(PARTITIONS, Duration::from_secs(30));
    let owned: BTreeMap<String, BTreeSet<i32>> = group.assignments().into_iter().collect();
    eprintln!("rebalanced to two members after {took:?}: {owned:?}");
    assert_eq!(owned["c1"].len(), 3, "{}", group.report());
    // Incremental: c1 was never told to give up everything.
    let c1_events = group.member("c1").events();
    assert!(
        !c1_events
            .iter()
            .any(|e| matches!(e, RebalanceEvent::Revoke(p) if p.len() == PARTITIONS as usize)),
        "c1 gave up all its partitions instead of only the moved ones: {c1_events:?}"
    );
    group.produce(&broker, PARTITIONS, "second", 600);
    group.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    for m in &group.members {
        assert!(
            m.recs
                .iter()
                .filter(
                    |r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                        .starts_with("second")
                )
                .all(|r| owned[&m.name].contains(&r.partition)),
            "{} read records of partitions it does not own\n{}",
            m.name,
            group.report()
        );
    }

    // The coordinator's view (ConsumerGroupDescribe) matches the clients'.
    let mut net = broker.net();
    let d = consumer_group_describe(&mut net, GROUP);
    assert_eq!(d.error_code, 0, "ConsumerGroupDescribe: {d:?}");
    assert_eq!(d.group_state.as_str(), "Stable", "{d:?}");
    assert_eq!(d.assignor_name.as_str(), "uniform", "{d:?}");
    assert_eq!(d.members.len(), 2, "{d:?}");
    assert_eq!(described_assignments(&d, TOPIC), owned, "{d:?}");
    for m in &d.members {
        assert_eq!(
            m.member_epoch, d.group_epoch,
            "member not at the group epoch: {d:?}"
        );
        assert_eq!(m.subscribed_topic_names.len(), 1);
        assert_eq!(m.subscribed_topic_names[0].0.as_str(), TOPIC);
    }
    let listed = list_group_types(&mut net);
    assert_eq!(
        listed.get(GROUP),
        Some(&("consumer".to_string(), "Stable".to_string())),
        "ListGroups: {listed:?}"
    );

    group.wait_committed(&broker, GROUP, PARTITIONS);

    // `rill group describe` shows the KIP-848 group, its members, owners and zero lag.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.args(["group", "describe", GROUP, "--output", "json"])
        .args(["--bootstrap", &broker.bootstrap()]);
    let out = common::run_bounded(&mut cmd, Duration::from_secs(60), None);
    assert!(
        out.status.success(),
        "rill group describe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(d["type"], "consumer", "{d}");
    assert_eq!(d["protocol"], "uniform", "{d}");
    assert_eq!(d["members"].as_array().map(|m| m.len()), Some(2), "{d}");
    let rows = d["partitions"].as_array().expect("partitions");
    assert_eq!(rows.len(), PARTITIONS as usize, "{d}");
    for row in rows {
        assert_eq!(row["lag"], 0, "{d}");
        assert_ne!(row["member"], "-", "a partition without an owner: {d}");
    }

    // c2 leaves cleanly: c1 gets everything back.
    let c2 = group.remove("c2");
    close_bounded(c2, "c2", Duration::from_secs(30));
    group.wait_balanced(PARTITIONS, Duration::from_secs(30));
    group.produce(&broker, PARTITIONS, "third", 120);
    group.consume_all_exactly_once(Duration::from_secs(30), Duration::from_millis(300));
    for m in &group.members {
        assert!(
            m.commit_errors().is_empty(),
            "{}: {:?}",
            m.name,
            m.commit_errors()
        );
    }
    let d = consumer_group_describe(&mut net, GROUP);
    assert_eq!(d.members.len(), 1, "{d:?}");

    broker.assert_alive();
    let c1 = group.remove("c1");
    close_bounded(c1, "c1", Duration::from_secs(30));
    let d = consumer_group_describe(&mut net, GROUP);
    assert_eq!(d.group_state.as_str(), "Empty", "{d:?}");
    broker.assert_alive();
}
