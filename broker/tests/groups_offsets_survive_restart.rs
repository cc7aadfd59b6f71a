//! Committed offsets are durable, and the group admin apis work on them:
//!
//! - an rdkafka group member consumes a topic and commits offsets partway through it; after
//!   SIGTERM and a restart a new member of the group resumes exactly at those offsets (reads
//!   nothing before them, misses nothing after); the same after kill -9 right after the
//!   synchronous commit was acknowledged;
//! - through the raw protocol client: OffsetFetch (single group, all topics, and the v8
//!   multi-group form), ListGroups, DescribeGroups, standalone commits (only while the group
//!   is empty), OffsetDelete (GROUP_SUBSCRIBED_TO_TOPIC while a member subscribes to the
//!   topic), DeleteGroups (NON_EMPTY_GROUP while members exist, then deleted, then
//!   GROUP_ID_NOT_FOUND), and the deletions survive a restart too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::groups::{
    close_bounded, code_name, commit, committed_offsets, decode_assignment, delete_group,
    describe_group, group_options, list_groups, produce_spread, GroupConsumer, TestGroup,
};
use common::{topic_name, Broker, NetClient};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rill_net::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use rill_net::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use rill_net::kafka_protocol::messages::{
    ApiKey, GroupId, ListGroupsRequest, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest,
};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

const PARTITIONS: i32 = 4;
const NO_AUTO_COMMIT: (&str, &str) = ("enable.auto.commit", "false");

/// Commits `offsets` (partition -> next offset to read) synchronously through rdkafka.
fn commit_sync(consumer: &GroupConsumer, topic: &str, offsets: &BTreeMap<i32, i64>) {
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .expect("add a partition offset");
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("synchronous commit of {offsets:?}: {e}"));
}

/// Consumes with one new member of `group` and asserts it reads exactly the positions of
/// `all` at or after `from` (partition -> committed offset); returns the group (member
/// still in it).
fn resume_and_check(
    broker: &Broker,
    group: &str,
    topic: &str,
    name: &str,
    all: &BTreeMap<(i32, i64), Vec<u8>>,
    from: &BTreeMap<i32, i64>,
) -> TestGroup {
    let mut g = TestGroup::new(topic);
    g.produced = all
        .iter()
        .filter(|((p, o), _)| *o >= from[p])
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    g.add(name, broker.group_consumer(group, name, &[NO_AUTO_COMMIT]));
    g.wait_balanced(PARTITIONS, Duration::from_secs(30));
    // Anything below the committed offsets would show up as "unexpected" here.
    g.consume_all_exactly_once(Duration::from_secs(40), Duration::from_secs(1));
    g
}

fn assert_committed(broker: &Broker, group: &str, topic: &str, want: &BTreeMap<i32, i64>) {
    let mut net = broker.net();
    let got = committed_offsets(&mut net, group, topic, PARTITIONS);
    assert_eq!(&got, want, "committed offsets of {group} (OffsetFetch)");
}

#[test]
fn committed_offsets_survive_sigterm_and_kill9() {
    let mut broker = Broker::start_with("groups-offsets-restart", group_options(""));
    let topic = "resume";
    let group = "resumers";
    broker.create_topic(topic, PARTITIONS, &[]);
    let mut all = produce_spread(&broker, topic, PARTITIONS, "r1", 400);

    // 1. The first member reads everything but commits only part of each partition.
    let mut g1 = TestGroup::new(topic);
    g1.produced = all.clone();
    g1.add("x1", broker.group_consumer(group, "x1", &[NO_AUTO_COMMIT]));
    g1.wait_balanced(PARTITIONS, Duration::from_secs(30));
    g1.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    let part: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 40 + 10 * p as i64)).collect();
    commit_sync(&g1.member("x1").consumer, topic, &part);
    assert_committed(&broker, group, topic, &part);
    close_bounded(g1.remove("x1"), "x1", Duration::from_secs(30));

    // 2. SIGTERM, restart: a new member resumes at the committed offsets.
    broker.terminate();
    broker.restart();
    assert_committed(&broker, group, topic, &part);
    let g2 = resume_and_check(&broker, group, topic, "x2", &all, &part);
    assert_eq!(
        g2.seen.len(),
        180,
        "60 + 50 + 40 + 30 records after the commits"
    );

    // 3. More records; x2 reads them too and commits partway, then kill -9 at once.
    let mut g2 = g2;
    let more = produce_spread(&broker, topic, PARTITIONS, "r2", 200);
    for (k, v) in &more {
        g2.produced.insert(*k, v.clone());
    }
    all.extend(more);
    g2.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    let part2: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 120 + 5 * p as i64)).collect();
    commit_sync(&g2.member("x2").consumer, topic, &part2);
    broker.kill9();
    broker.restart();
    // x2 (never closed) reconnects to the new broker process; it commits nothing more.
    close_bounded(g2.remove("x2"), "x2", Duration::from_secs(30));
    assert_committed(&broker, group, topic, &part2);
    let g3 = resume_and_check(&broker, group, topic, "x3", &all, &part2);
    assert_eq!(g3.seen.len(), 30 + 25 + 20 + 15);

    let mut g3 = g3;
    close_bounded(g3.remove("x3"), "x3", Duration::from_secs(30));
    broker.assert_alive();
}

fn sb(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// OffsetFetch v8 (several groups in one request): group -> partition -> offset.
fn offset_fetch_multi(
    net: &mut NetClient,
    groups: &[&str],
    topic: &str,
) -> BTreeMap<String, BTreeMap<i32, i64>> {
    let v = net.version(ApiKey::OffsetFetch);
    assert!(v >= 8, "OffsetFetch v{v}: the multi-group form needs v8");
    let req = OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(sb(g)))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes((0..PARTITIONS).collect())]))
            })
            .collect(),
    );
    let resp = net.send_at(v, &req);
    assert_eq!(resp.groups.len(), groups.len(), "{resp:?}");
    resp.groups
        .iter()
        .map(|g| {
            assert_eq!(
                g.error_code,
                0,
                "OffsetFetch v8 group {}: {}",
                g.group_id.0.as_str(),
                code_name(g.error_code)
            );
            let offsets = g
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| {
                    assert_eq!(p.error_code, 0, "{resp:?}");
                    (p.partition_index, p.committed_offset)
                })
                .collect();
            (g.group_id.0.to_string(), offsets)
        })
        .collect()
}

/// OffsetFetch of every topic the group committed (topics = null): topic -> partitions.
fn offset_fetch_all(net: &mut NetClient, group: &str) -> BTreeMap<String, BTreeMap<i32, i64>> {
    let v = net.version(ApiKey::OffsetFetch).min(7);
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_topics(None);
    let resp = net.send_at(v, &req);
    assert_eq!(resp.error_code, 0, "{}", code_name(resp.error_code));
    resp.topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset))
                    .collect(),
            )
        })
        .collect()
}

fn offset_delete(
    net: &mut NetClient,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> OffsetDeleteResponse {
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| OffsetDeleteRequestPartition::default().with_partition_index(p))
                    .collect(),
            )]);
    net.send(&req)
}

fn offset_delete_codes(resp: &OffsetDeleteResponse) -> Vec<(i32, i16)> {
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.error_code))
        .collect()
}

#[test]
fn offset_and_group_admin_apis() {
    let mut broker = Broker::start_with("groups-admin-apis", group_options(""));
    let topic = "admin-topic";
    let other = "admin-other";
    let group = "admin-group";
    broker.create_topic(topic, PARTITIONS, &[]);
    broker.create_topic(other, PARTITIONS, &[]);

    // A live member consumes and auto-commits everything.
    let mut g = TestGroup::new(topic);
    g.add("m1", broker.group_consumer(group, "m1", &[]));
    g.wait_balanced(PARTITIONS, Duration::from_secs(30));
    g.produce(&broker, PARTITIONS, "a", 200);
    g.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    g.wait_committed(&broker, group, PARTITIONS);
    let ends = g.ends(PARTITIONS);

    let mut net = broker.net();
    let listed = list_groups(&mut net);
    assert_eq!(
        listed.get(group).map(String::as_str),
        Some("Stable"),
        "ListGroups: {listed:?}"
    );
    let d = describe_group(&mut net, group);
    assert_eq!(d.error_code, 0, "{d:?}");
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.protocol_type.as_str(), "consumer");
    assert_eq!(d.members.len(), 1, "{d:?}");
    assert_eq!(d.members[0].client_id.as_str(), "m1");
    assert_eq!(
        decode_assignment(&d.members[0].member_assignment).remove(topic),
        Some((0..PARTITIONS).collect::<BTreeSet<i32>>())
    );

    // OffsetFetch: single group, every topic, several groups at once.
    assert_eq!(committed_offsets(&mut net, group, topic, PARTITIONS), ends);
    let every = offset_fetch_all(&mut net, group);
    assert_eq!(
        every.get(topic),
        Some(&ends),
        "OffsetFetch(all topics): {every:?}"
    );
    assert_eq!(every.len(), 1, "OffsetFetch(all topics): {every:?}");
    let none: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, -1)).collect();
    let multi = offset_fetch_multi(&mut net, &[group, "never-used-group"], topic);
    assert_eq!(multi[group], ends, "{multi:?}");
    assert_eq!(multi["never-used-group"], none, "{multi:?}");

    // While the member is there: standalone commits, OffsetDelete of a subscribed topic and
    // DeleteGroups are refused.
    let codes = commit(&mut net, group, "", None, -1, other, &[(0, 1)]);
    assert_eq!(
        codes,
        [(0, ErrorCode::UnknownMemberId.code())],
        "a standalone commit into a group with members"
    );
    let resp = offset_delete(&mut net, group, topic, &[0]);
    assert_eq!(resp.error_code, 0, "{resp:?}");
    assert_eq!(
        offset_delete_codes(&resp),
        [(0, ErrorCode::GroupSubscribedToTopic.code())],
        "OffsetDelete of a topic the member subscribes to"
    );
    let code = delete_group(&mut net, group);
    assert_eq!(
        code,
        ErrorCode::NonEmptyGroup.code(),
        "DeleteGroups with a member: {}",
        code_name(code)
    );
    assert_eq!(committed_offsets(&mut net, group, topic, PARTITIONS), ends);

    // The member leaves: the group is Empty and keeps its offsets.
    close_bounded(g.remove("m1"), "m1", Duration::from_secs(30));
    let listed = list_groups(&mut net);
    assert_eq!(
        listed.get(group).map(String::as_str),
        Some("Empty"),
        "ListGroups after the member left: {listed:?}"
    );
    let d = describe_group(&mut net, group);
    assert_eq!(d.group_state.as_str(), "Empty", "{d:?}");
    assert!(d.members.is_empty(), "{d:?}");
    let filtered = |net: &mut NetClient, state: &str| -> Vec<String> {
        let req = ListGroupsRequest::default().with_states_filter(vec![sb(state)]);
        let resp = net.send(&req);
        assert_eq!(resp.error_code, 0, "{resp:?}");
        resp.groups
            .iter()
            .map(|g| g.group_id.0.to_string())
            .collect()
    };
    assert_eq!(
        filtered(&mut net, "Empty"),
        [group],
        "ListGroups states_filter=Empty"
    );
    assert!(
        filtered(&mut net, "Stable").is_empty(),
        "ListGroups states_filter=Stable"
    );

    // An empty group takes standalone commits (consumers that assign() themselves).
    let codes = commit(&mut net, group, "", None, -1, other, &[(0, 3), (1, 4)]);
    assert_eq!(
        codes,
        [(0, 0), (1, 0)],
        "standalone commit into an empty group"
    );
    let every = offset_fetch_all(&mut net, group);
    assert_eq!(every.len(), 2, "{every:?}");
    assert_eq!(every[other], BTreeMap::from([(0, 3), (1, 4)]), "{every:?}");

    // OffsetDelete now removes exactly the partitions asked for, durably.
    let resp = offset_delete(&mut net, group, topic, &[0, 2]);
    assert_eq!(resp.error_code, 0, "{resp:?}");
    assert_eq!(offset_delete_codes(&resp), [(0, 0), (2, 0)], "{resp:?}");
    let mut after_delete = ends.clone();
    after_delete.insert(0, -1);
    after_delete.insert(2, -1);
    assert_eq!(
        committed_offsets(&mut net, group, topic, PARTITIONS),
        after_delete
    );
    broker.terminate();
    broker.restart();
    let mut net = broker.net();
    assert_eq!(
        committed_offsets(&mut net, group, topic, PARTITIONS),
        after_delete,
        "offsets after OffsetDelete and a restart"
    );
    let listed = list_groups(&mut net);
    assert_eq!(
        listed.get(group).map(String::as_str),
        Some("Empty"),
        "ListGroups after a restart: {listed:?}"
    );

    // DeleteGroups of the empty group; then it is gone, durably.
    let code = delete_group(&mut net, group);
    assert_eq!(
        code,
        0,
        "DeleteGroups of an empty group: {}",
        code_name(code)
    );
    let check_gone = |net: &mut NetClient, when: &str| {
        let listed = list_groups(net);
        assert!(
            !listed.contains_key(group),
            "{when}: still listed: {listed:?}"
        );
        let d = describe_group(net, group);
        assert!(
            d.group_state.as_str() == "Dead" || d.error_code == ErrorCode::GroupIdNotFound.code(),
            "{when}: DescribeGroups of a deleted group: {d:?}"
        );
        assert!(d.members.is_empty(), "{when}: {d:?}");
        assert_eq!(
            committed_offsets(net, group, topic, PARTITIONS),
            none,
            "{when}: offsets of a deleted group"
        );
        assert!(offset_fetch_all(net, group).is_empty(), "{when}");
        let code = delete_group(net, group);
        assert_eq!(
            code,
            ErrorCode::GroupIdNotFound.code(),
            "{when}: DeleteGroups again: {}",
            code_name(code)
        );
        let resp = offset_delete(net, group, topic, &[1]);
        assert_eq!(
            resp.error_code,
            ErrorCode::GroupIdNotFound.code(),
            "{when}: OffsetDelete on a deleted group: {resp:?}"
        );
    };
    check_gone(&mut net, "after DeleteGroups");
    broker.kill9();
    broker.restart();
    let mut net = broker.net();
    check_gone(&mut net, "after DeleteGroups and kill -9");
    broker.assert_alive();
}
