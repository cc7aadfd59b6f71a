//! Consumer group benchmark (issue 6), against a running broker:
//!
//! - `rebalance N`: N members join a new group at once (one connection and thread each,
//!   JoinGroup with KIP-394 member ids, the leader assigns, SyncGroup); prints the time from
//!   the first JoinGroup to the last member's assignment.
//! - `rebalance848 N`: N KIP-848 members (ConsumerGroupHeartbeat, server-side uniform
//!   assignor) join a new group on an N-partition topic at once, each heartbeating at the
//!   interval the broker sets and revoking at once; prints the time until the group is
//!   stable with every member at the group epoch owning one partition.
//! - `commits SECONDS`: standalone OffsetCommits (one partition each) pipelined on one
//!   connection, `COMMIT_INFLIGHT` at a time; prints commits per second. Each commit is
//!   appended to `__consumer_offsets` and fdatasync'd before it is answered, so this is
//!   bounded by the disk's sync rate times what one sync covers (group commit).
//!
//! Output lines: `RESULT <name> <value>`, for benches/groups.sh.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;

use rill_benches::connect;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

const COMMIT_INFLIGHT: usize = 64;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One member: joins (twice with KIP-394), syncs; returns when it has its assignment.
fn member(addr: &str, group: &str, start: &Barrier) -> Instant {
    let mut c = connect(addr);
    start.wait();
    let mut member_id = String::new();
    loop {
        let j = block_on(
            c.send(
                5,
                &JoinGroupRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_session_timeout_ms(60_000)
                    .with_rebalance_timeout_ms(60_000)
                    .with_member_id(s(&member_id))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                    )
                    .with_name(s("range"))
                    .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0]))]),
            ),
        )
        .expect("JoinGroup");
        if j.error_code == ErrorCode::MemberIdRequired.code() {
            member_id = j.member_id.to_string();
            continue;
        }
        assert_eq!(j.error_code, 0, "JoinGroup error {}", j.error_code);
        member_id = j.member_id.to_string();
        let assignments = j
            .members
            .iter()
            .map(|m| {
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(m.member_id.clone())
                    .with_assignment(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0]))
            })
            .collect();
        let r = block_on(
            c.send(
                3,
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_generation_id(j.generation_id)
                    .with_member_id(s(&member_id))
                    .with_assignments(assignments),
            ),
        )
        .expect("SyncGroup");
        if r.error_code == ErrorCode::RebalanceInProgress.code() {
            continue;
        }
        assert_eq!(r.error_code, 0, "SyncGroup error {}", r.error_code);
        let done = Instant::now();
        // Stay until every member is through, so no leave triggers another rebalance.
        std::thread::sleep(Duration::from_secs(2));
        let _ = block_on(
            c.send(
                3,
                &LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_members(vec![leave_group_request::MemberIdentity::default()
                        .with_member_id(s(&member_id))]),
            ),
        );
        return done;
    }
}

fn rebalance(addr: &str, members: usize) {
    let group = format!("bench-rebalance-{members}-{}", std::process::id());
    let start = Arc::new(Barrier::new(members + 1));
    let threads: Vec<_> = (0..members)
        .map(|_| {
            let (addr, group, start) = (addr.to_string(), group.clone(), start.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || member(&addr, &group, &start))
                .expect("spawn a member thread")
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let last = threads
        .into_iter()
        .map(|t| t.join().expect("member thread"))
        .max()
        .expect("at least one member");
    let ms = last.duration_since(began).as_secs_f64() * 1e3;
    println!("RESULT rebalance_{members}_ms {ms:.1}");
}

/// One KIP-848 member: joins with ConsumerGroupHeartbeat, then heartbeats at the interval
/// the broker gives, reporting what it owns (it revokes at once) until `stop`.
fn kip848_member(
    addr: &str,
    group: &str,
    topic: &str,
    id: usize,
    start: &Barrier,
    stop: &AtomicBool,
) {
    let mut c = connect(addr);
    let member_id = format!("bench-member-{id:05}");
    start.wait();
    let mut epoch = 0;
    let mut owned: Vec<consumer_group_heartbeat_request::TopicPartitions> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut hb = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(&member_id))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(if epoch == 0 { 60_000 } else { -1 })
            .with_topic_partitions(Some(owned.clone()));
        if epoch == 0 {
            hb = hb.with_subscribed_topic_names(Some(vec![TopicName(s(topic))]));
        }
        let r = block_on(c.send(1, &hb)).expect("ConsumerGroupHeartbeat");
        assert_eq!(
            r.error_code, 0,
            "ConsumerGroupHeartbeat error {} {:?}",
            r.error_code, r.error_message
        );
        epoch = r.member_epoch;
        if let Some(a) = r.assignment {
            owned = a
                .topic_partitions
                .into_iter()
                .map(|tp| {
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_topic_id(tp.topic_id)
                        .with_partitions(tp.partitions)
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(r.heartbeat_interval_ms.max(1) as u64));
    }
    let _ = block_on(
        c.send(
            1,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(&member_id))
                .with_member_epoch(-1),
        ),
    );
}

/// Creates `topic` with `partitions` partitions (replication factor 1).
fn create_topic(addr: &str, topic: &str, partitions: i32) {
    let mut admin = connect(addr);
    let created = block_on(
        admin.send(
            5,
            &CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)]),
        ),
    )
    .expect("CreateTopics");
    assert_eq!(created.topics[0].error_code, 0, "CreateTopics: {created:?}");
}

/// `members` KIP-848 members join a new group on a topic of as many partitions; prints the
/// time from the first heartbeat until ConsumerGroupDescribe shows the group stable with
/// every member at the group epoch owning one partition.
fn rebalance848(addr: &str, members: usize) {
    let topic = format!("bench848-{members}-{}", std::process::id());
    let group = format!("bench848-group-{members}-{}", std::process::id());
    create_topic(addr, &topic, members as i32);
    let mut admin = connect(addr);
    let start = Arc::new(Barrier::new(members + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..members)
        .map(|i| {
            let (addr, group, topic, start, stop) = (
                addr.to_string(),
                group.clone(),
                topic.clone(),
                start.clone(),
                stop.clone(),
            );
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || kip848_member(&addr, &group, &topic, i, &start, &stop))
                .expect("spawn a member thread")
        })
        .collect();
    start.wait();
    let began = Instant::now();
    loop {
        let d = block_on(admin.send(
            0,
            &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(&group))]),
        ))
        .expect("ConsumerGroupDescribe");
        let g = &d.groups[0];
        let done = g.group_state.as_str() == "Stable"
            && g.members.len() == members
            && g.members.iter().all(|m| {
                m.member_epoch == g.group_epoch
                    && m.assignment
                        .topic_partitions
                        .iter()
                        .map(|t| t.partitions.len())
                        .sum::<usize>()
                        == 1
            });
        if done {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "group not stable in 120 s: {} members, state {}",
            g.members.len(),
            g.group_state.as_str()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let ms = began.elapsed().as_secs_f64() * 1e3;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("member thread");
    }
    println!("RESULT rebalance848_{members}_ms {ms:.1}");
}

fn commits(addr: &str, seconds: u64) {
    // The broker refuses commits for a topic it does not have (as Kafka does).
    let topic = format!("bench-commits-{}", std::process::id());
    create_topic(addr, &topic, 1);
    let mut c = connect(addr);
    let group = format!("bench-commits-{}", std::process::id());
    let request = |i: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(&topic)))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(i),
                    ]),
            ])
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let began = Instant::now();
    let mut sent = 0i64;
    let mut done = 0i64;
    block_on(async {
        while Instant::now() < deadline {
            while c.inflight() < COMMIT_INFLIGHT {
                c.send_only(2, &request(sent)).await.expect("OffsetCommit");
                sent += 1;
            }
            let r = c
                .recv::<OffsetCommitRequest>()
                .await
                .expect("OffsetCommit answer");
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "commit refused");
            done += 1;
        }
        while c.inflight() > 0 {
            c.recv::<OffsetCommitRequest>()
                .await
                .expect("OffsetCommit answer");
            done += 1;
        }
    });
    let rate = done as f64 / began.elapsed().as_secs_f64();
    println!("RESULT offset_commits_per_s {rate:.0}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: group_bench BOOTSTRAP rebalance N | rebalance848 N | commits SECONDS";
    let addr = args.get(1).expect(usage);
    match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("rebalance"), Some(n)) => rebalance(addr, n.parse().expect(usage)),
        (Some("commits"), Some(secs)) => commits(addr, secs.parse().expect(usage)),
        (Some("rebalance848"), Some(n)) => rebalance848(addr, n.parse().expect(usage)),
        _ => panic!("{usage}"),
    }
}
