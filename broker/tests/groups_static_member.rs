//! Static membership and generation fencing, through the raw protocol client (`rill_net`):
//!
//! - a static member (group.instance.id) joins without MEMBER_ID_REQUIRED, a dynamic one
//!   with it (KIP-394), both land in one generation and the leader's SyncGroup hands out the
//!   assignment;
//! - the static member "restarts": it rejoins with an empty member id and the same instance
//!   id and gets the same generation back at once, no rebalance (the other member's
//!   heartbeats stay clean), and SyncGroup returns its old assignment; its old member id is
//!   fenced (FENCED_INSTANCE_ID);
//! - stale generations get ILLEGAL_GENERATION (Heartbeat, SyncGroup, OffsetCommit) and
//!   unknown members UNKNOWN_MEMBER_ID; after a member leaves, the generation moves on and
//!   the previous one is fenced;
//! - a member of the current generation may still commit while the group prepares a
//!   rebalance (Kafka accepts it in PreparingRebalance, rejecting only in
//!   CompletingRebalance), which is how consumers commit before they rejoin; a member that
//!   does not rejoin within the rebalance timeout is dropped from the next generation;
//! - with real clients: an rdkafka consumer with group.instance.id (the group's leader)
//!   closes and a new process with the same instance id takes its place within the session
//!   timeout: the other member sees no rebalance at all, the newcomer gets the same
//!   partitions, and the group keeps consuming every record once.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::groups::{
    assignment, close_bounded, code_name, commit, committed_offsets, decode_assignment,
    describe_group, find_coordinator, group_options, heartbeat, join_request, leave, net_client_as,
    sync_request, TestGroup,
};
use common::{block_on, Broker, NetClient};
use rill_net::kafka_protocol::messages::{
    ApiKey, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use rill_net::ErrorCode;

const TOPIC: &str = "static-topic";
const PARTITIONS: i32 = 4;
const SESSION_MS: i32 = 30_000;
/// Short, so a member that misses a rebalance is dropped quickly.
const REBALANCE_MS: i32 = 5_000;

fn ok(code: i16, what: &str) {
    assert_eq!(code, 0, "{what}: {}", code_name(code));
}

fn expect(code: i16, want: ErrorCode, what: &str) {
    assert_eq!(
        code,
        want.code(),
        "{what}: got {}, want {}",
        code_name(code),
        code_name(want.code())
    );
}

fn join_version(net: &NetClient) -> i16 {
    let v = net.version(ApiKey::JoinGroup);
    assert!(
        v >= 5,
        "JoinGroup v{v} negotiated; static membership needs v5+"
    );
    v
}

/// A dynamic member's first JoinGroup: MEMBER_ID_REQUIRED with the id to use.
fn dynamic_member_id(net: &mut NetClient, group: &str) -> String {
    let r = net.send(&join_request(
        group,
        "",
        None,
        SESSION_MS,
        REBALANCE_MS,
        &[TOPIC],
    ));
    expect(
        r.error_code,
        ErrorCode::MemberIdRequired,
        "first JoinGroup of a dynamic member (v4+)",
    );
    assert!(
        !r.member_id.is_empty(),
        "MEMBER_ID_REQUIRED without a member id"
    );
    r.member_id.to_string()
}

fn send_join(net: &mut NetClient, req: &JoinGroupRequest) {
    let v = join_version(net);
    block_on(net.conn.send_only(v, req)).expect("send JoinGroup");
}

fn recv_join(net: &mut NetClient) -> JoinGroupResponse {
    block_on(net.conn.recv::<JoinGroupRequest>()).expect("JoinGroup response")
}

fn send_sync(net: &mut NetClient, req: &SyncGroupRequest) {
    let v = net.version(ApiKey::SyncGroup);
    block_on(net.conn.send_only(v, req)).expect("send SyncGroup");
}

fn recv_sync(net: &mut NetClient) -> SyncGroupResponse {
    block_on(net.conn.recv::<SyncGroupRequest>()).expect("SyncGroup response")
}

fn parts(r: &SyncGroupResponse) -> BTreeSet<i32> {
    decode_assignment(&r.assignment)
        .remove(TOPIC)
        .unwrap_or_default()
}

/// One static member ("static-a") and one dynamic member form a generation; returns
/// (static client, its member id, dynamic client, its member id, generation).
fn form_group(broker: &Broker, group: &str) -> (NetClient, String, NetClient, String, i32) {
    let mut a = net_client_as(broker, "a-static");
    let mut b = net_client_as(broker, "b-dynamic");
    find_coordinator(&mut a, broker, group);
    join_version(&a);

    let b_id = dynamic_member_id(&mut b, group);
    // Both joins are in flight together; the group's initial delay (2 s here) gathers them
    // into one generation.
    send_join(
        &mut b,
        &join_request(group, &b_id, None, SESSION_MS, REBALANCE_MS, &[TOPIC]),
    );
    send_join(
        &mut a,
        &join_request(
            group,
            "",
            Some("static-a"),
            SESSION_MS,
            REBALANCE_MS,
            &[TOPIC],
        ),
    );
    let ra = recv_join(&mut a);
    let rb = recv_join(&mut b);
    ok(
        ra.error_code,
        "JoinGroup of the static member (no MEMBER_ID_REQUIRED for static members)",
    );
    ok(rb.error_code, "second JoinGroup of the dynamic member");
    assert_eq!(
        rb.member_id.as_str(),
        b_id,
        "the dynamic member's id changed"
    );
    let a_id = ra.member_id.to_string();
    assert!(
        !a_id.is_empty() && a_id != b_id,
        "member ids {a_id:?}, {b_id:?}"
    );
    assert_eq!(
        ra.generation_id, rb.generation_id,
        "the two joins ended in different generations: {ra:?} {rb:?}"
    );
    assert!(ra.generation_id >= 1, "{ra:?}");
    assert_eq!(ra.leader, rb.leader);
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    let generation = ra.generation_id;

    // The leader alone gets the member list, with the static member's instance id.
    let (leader_resp, follower_is_a) = if ra.leader.as_str() == a_id {
        (&ra, false)
    } else {
        assert_eq!(rb.leader.as_str(), b_id, "leader is neither member");
        (&rb, true)
    };
    assert_eq!(leader_resp.members.len(), 2, "{leader_resp:?}");
    let follower_resp = if follower_is_a { &ra } else { &rb };
    assert!(
        follower_resp.members.is_empty(),
        "a follower got the member list"
    );
    let a_listed = leader_resp
        .members
        .iter()
        .find(|m| m.member_id.as_str() == a_id)
        .expect("the static member is listed");
    assert_eq!(a_listed.group_instance_id.as_deref(), Some("static-a"));

    // SyncGroup: the follower waits, the leader assigns.
    let assignments = [
        (a_id.as_str(), assignment(TOPIC, &[0, 1])),
        (b_id.as_str(), assignment(TOPIC, &[2, 3])),
    ];
    let (sa, sb) = if follower_is_a {
        send_sync(
            &mut a,
            &sync_request(group, &a_id, Some("static-a"), generation, &[]),
        );
        let sb = b.send(&sync_request(group, &b_id, None, generation, &assignments));
        (recv_sync(&mut a), sb)
    } else {
        send_sync(&mut b, &sync_request(group, &b_id, None, generation, &[]));
        let sa = a.send(&sync_request(
            group,
            &a_id,
            Some("static-a"),
            generation,
            &assignments,
        ));
        (sa, recv_sync(&mut b))
    };
    ok(sa.error_code, "SyncGroup of the static member");
    ok(sb.error_code, "SyncGroup of the dynamic member");
    assert_eq!(parts(&sa), BTreeSet::from([0, 1]));
    assert_eq!(parts(&sb), BTreeSet::from([2, 3]));
    ok(
        heartbeat(&mut a, group, &a_id, Some("static-a"), generation),
        "heartbeat of the static member",
    );
    ok(
        heartbeat(&mut b, group, &b_id, None, generation),
        "heartbeat of the dynamic member",
    );
    (a, a_id, b, b_id, generation)
}

#[test]
fn static_member_rejoins_without_a_rebalance_and_stale_members_are_fenced() {
    let mut broker = Broker::start_with(
        "groups-static",
        group_options("group_initial_rebalance_delay_ms = 2000\n"),
    );
    broker.create_topic(TOPIC, PARTITIONS, &[]);
    let group = "static-group";
    let (mut a, a_id, mut b, b_id, generation) = form_group(&broker, group);

    // The static member restarts: new connection, empty member id, same instance id.
    let mut a2 = net_client_as(&broker, "a-static-restarted");
    let started = Instant::now();
    let r = a2.send(&join_request(
        group,
        "",
        Some("static-a"),
        SESSION_MS,
        REBALANCE_MS,
        &[TOPIC],
    ));
    let took = started.elapsed();
    ok(r.error_code, "JoinGroup of the restarted static member");
    assert_eq!(
        r.generation_id, generation,
        "the static rejoin changed the generation (a rebalance): {r:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "the static rejoin took {took:?}: it waited for a rebalance"
    );
    let a2_id = r.member_id.to_string();
    assert!(
        !a2_id.is_empty() && a2_id != a_id,
        "the rejoin kept member id {a2_id:?}"
    );
    let s = a2.send(&sync_request(
        group,
        &a2_id,
        Some("static-a"),
        generation,
        &[],
    ));
    ok(s.error_code, "SyncGroup of the restarted static member");
    assert_eq!(
        parts(&s),
        BTreeSet::from([0, 1]),
        "the restarted static member did not get its old assignment back"
    );

    // No rebalance: the other member's heartbeats at the same generation stay clean.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        ok(
            heartbeat(&mut b, group, &b_id, None, generation),
            "heartbeat of the dynamic member after the static rejoin",
        );
        ok(
            heartbeat(&mut a2, group, &a2_id, Some("static-a"), generation),
            "heartbeat of the restarted static member",
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = describe_group(&mut b, group);
    assert_eq!(d.group_state.as_str(), "Stable", "{d:?}");
    assert_eq!(d.members.len(), 2, "{d:?}");
    let listed = d
        .members
        .iter()
        .find(|m| m.group_instance_id.as_deref() == Some("static-a"))
        .unwrap_or_else(|| panic!("static member not listed: {d:?}"));
    assert_eq!(listed.member_id.as_str(), a2_id);
    assert_eq!(
        decode_assignment(&listed.member_assignment).remove(TOPIC),
        Some(BTreeSet::from([0, 1]))
    );

    // The old incarnation is fenced.
    expect(
        heartbeat(&mut a, group, &a_id, Some("static-a"), generation),
        ErrorCode::FencedInstanceId,
        "heartbeat with the static member's old id",
    );
    let codes = commit(
        &mut a,
        group,
        &a_id,
        Some("static-a"),
        generation,
        TOPIC,
        &[(0, 5)],
    );
    assert_eq!(codes.len(), 1);
    expect(
        codes[0].1,
        ErrorCode::FencedInstanceId,
        "OffsetCommit with the static member's old id",
    );
    expect(
        heartbeat(&mut a, group, &a_id, None, generation),
        ErrorCode::UnknownMemberId,
        "heartbeat with the old id and no instance id",
    );

    // Joins that cannot be accepted.
    let r = b.send(&join_request(
        group,
        "no-such-member",
        None,
        SESSION_MS,
        REBALANCE_MS,
        &[TOPIC],
    ));
    expect(
        r.error_code,
        ErrorCode::UnknownMemberId,
        "JoinGroup with a member id the group never handed out",
    );
    let r = b.send(&join_request(
        group,
        "",
        None,
        1_000,
        REBALANCE_MS,
        &[TOPIC],
    ));
    expect(
        r.error_code,
        ErrorCode::InvalidSessionTimeout,
        "JoinGroup with a 1 s session (minimum 6 s)",
    );

    // Generation fencing.
    for stale in [generation - 1, generation + 1] {
        expect(
            heartbeat(&mut b, group, &b_id, None, stale),
            ErrorCode::IllegalGeneration,
            &format!("heartbeat at generation {stale} (current {generation})"),
        );
    }
    expect(
        heartbeat(&mut b, group, "no-such-member", None, generation),
        ErrorCode::UnknownMemberId,
        "heartbeat of an unknown member",
    );
    expect(
        heartbeat(&mut b, "no-such-group", &b_id, None, generation),
        ErrorCode::UnknownMemberId,
        "heartbeat to an unknown group",
    );
    let s = b.send(&sync_request(group, &b_id, None, generation - 1, &[]));
    expect(
        s.error_code,
        ErrorCode::IllegalGeneration,
        "SyncGroup at a stale generation",
    );
    let codes = commit(&mut b, group, &b_id, None, generation - 1, TOPIC, &[(2, 7)]);
    expect(
        codes[0].1,
        ErrorCode::IllegalGeneration,
        "OffsetCommit at a stale generation",
    );
    let codes = commit(&mut b, group, &b_id, None, generation, TOPIC, &[(2, 7)]);
    ok(codes[0].1, "OffsetCommit at the current generation");
    assert_eq!(committed_offsets(&mut b, group, TOPIC, PARTITIONS)[&2], 7);

    // The dynamic member leaves: the generation moves on, the old one is fenced.
    ok(leave(&mut b, group, &b_id, None), "LeaveGroup");
    expect(
        heartbeat(&mut a2, group, &a2_id, Some("static-a"), generation),
        ErrorCode::RebalanceInProgress,
        "heartbeat after the other member left",
    );
    let r = a2.send(&join_request(
        group,
        &a2_id,
        Some("static-a"),
        SESSION_MS,
        REBALANCE_MS,
        &[TOPIC],
    ));
    ok(r.error_code, "rejoin after the other member left");
    assert_eq!(
        r.generation_id,
        generation + 1,
        "generation after a rebalance: {r:?}"
    );
    assert_eq!(r.leader.as_str(), a2_id);
    let next = r.generation_id;
    let s = a2.send(&sync_request(
        group,
        &a2_id,
        Some("static-a"),
        next,
        &[(a2_id.as_str(), assignment(TOPIC, &[0, 1, 2, 3]))],
    ));
    ok(s.error_code, "SyncGroup of the only member");
    assert_eq!(parts(&s), BTreeSet::from([0, 1, 2, 3]));
    ok(
        heartbeat(&mut a2, group, &a2_id, Some("static-a"), next),
        "heartbeat at the new generation",
    );
    expect(
        heartbeat(&mut a2, group, &a2_id, Some("static-a"), generation),
        ErrorCode::IllegalGeneration,
        "heartbeat at the previous generation",
    );
    expect(
        heartbeat(&mut b, group, &b_id, None, next),
        ErrorCode::UnknownMemberId,
        "heartbeat of the member that left",
    );
    broker.assert_alive();
}

#[test]
fn current_generation_may_commit_while_the_group_prepares_a_rebalance() {
    let mut broker = Broker::start_with(
        "groups-commit-rebalance",
        group_options("group_initial_rebalance_delay_ms = 2000\n"),
    );
    broker.create_topic(TOPIC, PARTITIONS, &[]);
    let group = "commit-while-rebalancing";
    let (mut a, a_id, mut b, b_id, generation) = form_group(&broker, group);

    // A third member joins: the group prepares a rebalance (its join waits for a and b).
    let mut c = net_client_as(&broker, "c-dynamic");
    let c_id = dynamic_member_id(&mut c, group);
    send_join(
        &mut c,
        &join_request(group, &c_id, None, SESSION_MS, REBALANCE_MS, &[TOPIC]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = heartbeat(&mut b, group, &b_id, None, generation);
        if code == ErrorCode::RebalanceInProgress.code() {
            break;
        }
        ok(code, "heartbeat while the third member joins");
        assert!(
            Instant::now() < deadline,
            "the group never started a rebalance for the third member"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = describe_group(&mut b, group);
    assert_eq!(d.group_state.as_str(), "PreparingRebalance", "{d:?}");

    // Consumers commit what they consumed before rejoining (Java's onJoinPrepare,
    // librdkafka's commit on revoke); Kafka accepts that from the current generation.
    let codes = commit(
        &mut a,
        group,
        &a_id,
        Some("static-a"),
        generation,
        TOPIC,
        &[(0, 11), (1, 12)],
    );
    for (p, code) in &codes {
        ok(
            *code,
            &format!(
                "OffsetCommit of partition {p} by a current-generation member while the group \
                 is PreparingRebalance (Kafka accepts it; only CompletingRebalance answers \
                 REBALANCE_IN_PROGRESS)"
            ),
        );
    }
    let committed = committed_offsets(&mut a, group, TOPIC, PARTITIONS);
    assert_eq!((committed[&0], committed[&1]), (11, 12), "{committed:?}");

    // a rejoins, b never does: after the rebalance timeout the join phase ends without b,
    // which is no longer a member.
    let rejoin_sent = Instant::now();
    send_join(
        &mut a,
        &join_request(
            group,
            &a_id,
            Some("static-a"),
            SESSION_MS,
            REBALANCE_MS,
            &[TOPIC],
        ),
    );
    let ra = recv_join(&mut a);
    let rc = recv_join(&mut c);
    let waited = rejoin_sent.elapsed();
    ok(ra.error_code, "rejoin of a");
    ok(rc.error_code, "join of c");
    assert_eq!(ra.generation_id, generation + 1, "{ra:?}");
    assert_eq!(rc.generation_id, generation + 1, "{rc:?}");
    assert!(
        waited < Duration::from_millis(REBALANCE_MS as u64 + 10_000),
        "the join phase ended {waited:?} after a rejoined (rebalance timeout {REBALANCE_MS} ms)"
    );
    let leader = if ra.members.is_empty() { &rc } else { &ra };
    let mut listed: Vec<&str> = leader
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    listed.sort();
    let mut want = vec![a_id.as_str(), c_id.as_str()];
    want.sort();
    assert_eq!(
        listed, want,
        "members of the new generation (b missed the rebalance)"
    );
    expect(
        heartbeat(&mut b, group, &b_id, None, generation),
        ErrorCode::UnknownMemberId,
        "heartbeat of the member that missed the rebalance",
    );
    let d = describe_group(&mut b, group);
    assert_eq!(d.members.len(), 2, "{d:?}");
    broker.assert_alive();
}

#[test]
fn rdkafka_static_member_restart_causes_no_rebalance() {
    let mut broker = Broker::start_with("groups-static-rdkafka", group_options(""));
    broker.create_topic(TOPIC, PARTITIONS, &[]);
    let group = "static-rdkafka";
    // Member ids start with the client id and the group's first leader is the smallest id:
    // "a-static" leads, so its restart also replaces the leader.
    let static_cfg = [
        ("group.instance.id", "instance-a"),
        ("session.timeout.ms", "10000"),
    ];
    let mut g = TestGroup::new(TOPIC);
    g.add(
        "a-static",
        broker.group_consumer(group, "a-static", &static_cfg),
    );
    g.add(
        "b-dynamic",
        broker.group_consumer(group, "b-dynamic", &[("session.timeout.ms", "10000")]),
    );
    g.wait_balanced(PARTITIONS, Duration::from_secs(30));
    g.produce(&broker, PARTITIONS, "first", 200);
    g.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    g.wait_committed(&broker, group, PARTITIONS);
    let a_owned = g.member("a-static").assigned();
    let b_owned = g.member("b-dynamic").assigned();
    let b_events = g.member("b-dynamic").events();
    let mut net = broker.net();
    let before = describe_group(&mut net, group);
    let old_id = before
        .members
        .iter()
        .find(|m| m.group_instance_id.as_deref() == Some("instance-a"))
        .unwrap_or_else(|| panic!("the static member is not listed: {before:?}"))
        .member_id
        .to_string();

    // The static member's process ends (librdkafka sends no LeaveGroup for static members)
    // and a new one with the same instance id starts.
    close_bounded(g.remove("a-static"), "a-static", Duration::from_secs(30));
    let restarted = Instant::now();
    g.add(
        "a-static-2",
        broker.group_consumer(group, "a-static-2", &static_cfg),
    );
    let took = g.wait_for(
        "the restarted static member owns its old partitions",
        Duration::from_secs(30),
        |g| g.member("a-static-2").assigned() == a_owned,
    );
    eprintln!("the restarted static member was back after {took:?}");
    assert!(
        restarted.elapsed() < Duration::from_secs(8),
        "the static member needed {:?} to get its partitions back",
        restarted.elapsed()
    );

    // No rebalance: the other member never saw a callback and kept its partitions.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        g.poll_all(Duration::from_millis(50));
    }
    assert_eq!(
        g.member("b-dynamic").events(),
        b_events,
        "the other member went through a rebalance when the static member restarted\n{}",
        g.report()
    );
    assert_eq!(g.member("b-dynamic").assigned(), b_owned);
    let after = describe_group(&mut net, group);
    assert_eq!(after.group_state.as_str(), "Stable", "{after:?}");
    assert_eq!(after.members.len(), 2, "{after:?}");
    let new = after
        .members
        .iter()
        .find(|m| m.group_instance_id.as_deref() == Some("instance-a"))
        .unwrap_or_else(|| panic!("the static member is not listed: {after:?}"));
    assert_ne!(
        new.member_id.as_str(),
        old_id,
        "the member id did not change"
    );
    // (Its client id stays the old one's, as in Kafka, which copies the replaced member.)
    assert_eq!(
        decode_assignment(&new.member_assignment).remove(TOPIC),
        Some(a_owned.clone())
    );

    // The group keeps working: new records are read once, by their owners.
    g.produce(&broker, PARTITIONS, "second", 200);
    g.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    for m in &g.members {
        assert!(
            m.commit_errors().is_empty(),
            "{}: commit errors {:?}",
            m.name,
            m.commit_errors()
        );
    }
    broker.assert_alive();
    for name in ["a-static-2", "b-dynamic"] {
        close_bounded(g.remove(name), name, Duration::from_secs(30));
    }
    broker.assert_alive();
}
