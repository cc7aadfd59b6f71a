//! Consumer-group helpers: brokers configured for fast group tests, rdkafka group members
//! that record every rebalance and commit result, a [`TestGroup`] that polls several members
//! and keeps the exactly-once ledger of what they consumed, and raw-protocol helpers
//! (`rill_net`) for the group apis rdkafka does not expose.
//!
//! Every wait is bounded and fails with the group's assignments, rebalance events and commit
//! errors, so a failure says which member held what.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::producer::FutureRecord;
use rdkafka::TopicPartitionList;
use rill_net::kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use rill_net::kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use rill_net::kafka_protocol::messages::describe_groups_response::DescribedGroup;
use rill_net::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use rill_net::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use rill_net::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use rill_net::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rill_net::ErrorCode;

use super::{block_on, client_config, topic_name, Broker, BrokerOptions, NetClient, Rec};

/// Config for group tests: a small offsets topic (4 partitions instead of 50, so creating it
/// is quick) and no metrics listener (tests run side by side).
pub const GROUP_CONFIG: &str = "offsets_topic_partitions = 4\nmetrics_listen = \"\"\n";

/// Broker options with [`GROUP_CONFIG`] plus `extra` TOML lines.
pub fn group_options(extra: &str) -> BrokerOptions {
    BrokerOptions::with_config(&format!("{GROUP_CONFIG}{extra}"))
}

/// `"NAME (code)"` for a Kafka error code, for failure messages.
pub fn code_name(code: i16) -> String {
    match ErrorCode::from_code(code) {
        Some(c) => format!("{} ({code})", c.name()),
        None => format!("error code {code}"),
    }
}

// ---------------------------------------------------------------------------------------
// rdkafka group members.

/// A rebalance callback as one member saw it (partitions of the test's one topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    Assign(BTreeSet<i32>),
    Revoke(BTreeSet<i32>),
    Error(String),
}

/// Records rebalances and commit results of one consumer.
pub struct GroupContext {
    pub name: String,
    pub events: Mutex<Vec<(Instant, RebalanceEvent)>>,
    pub commit_errors: Mutex<Vec<String>>,
    pub commits_ok: AtomicUsize,
}

impl ClientContext for GroupContext {}

fn partitions_of(tpl: &TopicPartitionList) -> BTreeSet<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let event = match rebalance {
            Rebalance::Assign(tpl) => RebalanceEvent::Assign(partitions_of(tpl)),
            Rebalance::Revoke(tpl) => RebalanceEvent::Revoke(partitions_of(tpl)),
            Rebalance::Error(e) => RebalanceEvent::Error(e.to_string()),
        };
        self.events
            .lock()
            .expect("events lock")
            .push((Instant::now(), event));
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                self.commits_ok.fetch_add(1, Ordering::SeqCst);
            }
            // Nothing to commit is not a failure.
            Err(e) if e.to_string().contains("No offset stored") => {}
            Err(e) => self
                .commit_errors
                .lock()
                .expect("commit errors lock")
                .push(format!(
                    "{e} (offsets {:?})",
                    offsets
                        .elements()
                        .iter()
                        .map(|e| (e.partition(), e.offset()))
                        .collect::<Vec<_>>()
                )),
        }
    }
}

pub type GroupConsumer = BaseConsumer<GroupContext>;

impl Broker {
    /// An rdkafka consumer in `group` (client.id `name`) with a 6 s session, 500 ms
    /// heartbeats, auto commit every 200 ms and `auto.offset.reset=earliest`; `extra`
    /// overrides. Not subscribed yet.
    pub fn group_consumer(&self, group: &str, name: &str, extra: &[(&str, &str)]) -> GroupConsumer {
        let classic = [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ];
        self.member_with(group, name, &classic, extra)
    }

    /// An rdkafka consumer in `group` speaking the KIP-848 protocol
    /// (`group.protocol=consumer`: the broker sets session and heartbeat timing, the
    /// assignment is computed server side), auto commit every 200 ms,
    /// `auto.offset.reset=earliest`; `extra` overrides. Not subscribed yet.
    pub fn consumer_protocol_member(
        &self,
        group: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> GroupConsumer {
        self.member_with(group, name, &[("group.protocol", "consumer")], extra)
    }

    /// A group consumer with the settings every group test shares, then `protocol`'s,
    /// then `extra`.
    fn member_with(
        &self,
        group: &str,
        name: &str,
        protocol: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> GroupConsumer {
        let mut cfg: ClientConfig = client_config(&self.bootstrap());
        cfg.set("group.id", group)
            .set("client.id", name)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "200")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100");
        for (k, v) in protocol.iter().chain(extra) {
            cfg.set(*k, *v);
        }
        cfg.create_with_context(GroupContext {
            name: name.to_string(),
            events: Mutex::new(Vec::new()),
            commit_errors: Mutex::new(Vec::new()),
            commits_ok: AtomicUsize::new(0),
        })
        .unwrap_or_else(|e| panic!("create rdkafka group consumer {name} ({protocol:?}): {e}"))
    }
}

/// One member of a [`TestGroup`].
pub struct Member {
    pub name: String,
    pub consumer: GroupConsumer,
    /// Every record this member consumed, in order.
    pub recs: Vec<Rec>,
}

impl Member {
    /// The partitions librdkafka says this member owns now.
    pub fn assigned(&self) -> BTreeSet<i32> {
        match self.consumer.assignment() {
            Ok(tpl) => partitions_of(&tpl),
            Err(e) => panic!("{}: assignment(): {e}", self.name),
        }
    }

    pub fn events(&self) -> Vec<RebalanceEvent> {
        self.consumer
            .context()
            .events
            .lock()
            .expect("events lock")
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub fn commit_errors(&self) -> Vec<String> {
        self.consumer
            .context()
            .commit_errors
            .lock()
            .expect("commit errors lock")
            .clone()
    }
}

/// Drops (closes: final commit and LeaveGroup) a consumer on a helper thread and fails the
/// test if that takes longer than `timeout`.
pub fn close_bounded(consumer: GroupConsumer, name: &str, timeout: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = tx.send(());
    });
    if rx.recv_timeout(timeout).is_err() {
        panic!("closing consumer {name} took longer than {timeout:?}");
    }
}

/// Several members of one group on one topic, polled round robin from this thread, with the
/// ledger of everything produced and consumed.
pub struct TestGroup {
    pub topic: String,
    pub members: Vec<Member>,
    /// Members removed from the group: name and what they had consumed.
    pub gone: Vec<(String, Vec<Rec>)>,
    /// Everything produced to the topic: (partition, offset) -> value.
    pub produced: BTreeMap<(i32, i64), Vec<u8>>,
    /// Everything consumed: (partition, offset) -> (member, value).
    pub seen: BTreeMap<(i32, i64), (String, Vec<u8>)>,
    /// Positions consumed a second time, with both members.
    pub duplicates: Vec<String>,
    /// Errors the consumers returned from poll (they fail the test at the next check).
    pub errors: Vec<String>,
}

impl TestGroup {
    pub fn new(topic: &str) -> TestGroup {
        TestGroup {
            topic: topic.to_string(),
            members: Vec::new(),
            gone: Vec::new(),
            produced: BTreeMap::new(),
            seen: BTreeMap::new(),
            duplicates: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Subscribes `consumer` to the topic and adds it as `name`.
    pub fn add(&mut self, name: &str, consumer: GroupConsumer) {
        consumer
            .subscribe(&[&self.topic])
            .unwrap_or_else(|e| panic!("{name}: subscribe: {e}"));
        self.members.push(Member {
            name: name.to_string(),
            consumer,
            recs: Vec::new(),
        });
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Removes `name` from the polled members (the caller closes or kills it).
    pub fn remove(&mut self, name: &str) -> GroupConsumer {
        let i = self
            .members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"));
        let m = self.members.remove(i);
        self.gone.push((m.name, m.recs));
        m.consumer
    }

    /// Polls every member once with `each` as the timeout, recording what arrives.
    pub fn poll_all(&mut self, each: Duration) {
        for m in &mut self.members {
            match m.consumer.poll(each) {
                None => {}
                Some(Ok(msg)) => {
                    let rec = Rec::from_message(&msg);
                    let pos = (rec.partition, rec.offset);
                    let value = rec.value.clone().unwrap_or_default();
                    if let Some((first, _)) = self.seen.get(&pos) {
                        self.duplicates.push(format!(
                            "{}/{} consumed by {first} and again by {}",
                            pos.0, pos.1, m.name
                        ));
                    } else {
                        self.seen.insert(pos, (m.name.clone(), value));
                    }
                    m.recs.push(rec);
                }
                Some(Err(e)) => self.errors.push(format!("{}: {e}", m.name)),
            }
        }
    }

    /// Every member's current assignment.
    pub fn assignments(&self) -> Vec<(String, BTreeSet<i32>)> {
        self.members
            .iter()
            .map(|m| (m.name.clone(), m.assigned()))
            .collect()
    }

    /// Assignments, rebalance events, commit errors and ledger sizes, for failure messages.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            out.push_str(&format!(
                "  {}: assigned {:?}, consumed {}, rebalances {:?}, commit errors {:?}\n",
                m.name,
                m.assigned(),
                m.recs.len(),
                m.events(),
                m.commit_errors(),
            ));
        }
        for (name, recs) in &self.gone {
            out.push_str(&format!("  {name} (gone): consumed {}\n", recs.len()));
        }
        out.push_str(&format!(
            "  produced {}, consumed {} distinct, {} duplicates {:?}, poll errors {:?}",
            self.produced.len(),
            self.seen.len(),
            self.duplicates.len(),
            self.duplicates.iter().take(10).collect::<Vec<_>>(),
            self.errors.iter().take(10).collect::<Vec<_>>()
        ));
        out
    }

    /// Polls every member until `pred` holds, failing after `timeout` with `what`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&TestGroup) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if pred(self) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{what}: not reached within {timeout:?}\n{}",
                self.report()
            );
            self.poll_all(Duration::from_millis(50));
        }
    }

    /// Waits until every member owns `per_member` partitions, the assignments are disjoint
    /// and together cover `0..partitions`.
    pub fn wait_balanced(&mut self, partitions: i32, timeout: Duration) -> Duration {
        let n = self.members.len();
        let what = format!("{n} members own {partitions} partitions evenly");
        self.wait_for(&what, timeout, |g| {
            let a = g.assignments();
            let mut union = BTreeSet::new();
            let total: usize = a.iter().map(|(_, s)| s.len()).sum();
            for (_, s) in &a {
                union.extend(s.iter().copied());
            }
            let lo = partitions as usize / n.max(1);
            total == partitions as usize
                && union == (0..partitions).collect()
                && a.iter().all(|(_, s)| s.len() == lo || s.len() == lo + 1)
        })
    }

    /// Produces `count` records (`{label}-{i}`) spread evenly over `partitions` with
    /// acks=all, and adds them to the ledger.
    pub fn produce(&mut self, broker: &Broker, partitions: i32, label: &str, count: usize) {
        let new = produce_spread(broker, &self.topic, partitions, label, count);
        for (pos, v) in new {
            assert!(
                self.produced.insert(pos, v).is_none(),
                "position {pos:?} acknowledged twice"
            );
        }
    }

    /// Polls until every produced record was consumed, then for `settle` more; asserts the
    /// consumed set equals the produced set exactly (values too) and nothing was read twice.
    pub fn consume_all_exactly_once(&mut self, timeout: Duration, settle: Duration) {
        let want = self.produced.len();
        self.wait_for(
            &format!("all {want} produced records consumed"),
            timeout,
            |g| g.produced.keys().all(|k| g.seen.contains_key(k)) || !g.duplicates.is_empty(),
        );
        let until = Instant::now() + settle;
        while Instant::now() < until {
            self.poll_all(Duration::from_millis(50));
        }
        self.assert_exactly_once();
    }

    /// The ledger check: no duplicates, no poll errors, consumed == produced.
    pub fn assert_exactly_once(&self) {
        assert!(
            self.duplicates.is_empty(),
            "records were consumed twice:\n{}",
            self.report()
        );
        assert!(
            self.errors.is_empty(),
            "consumers returned errors:\n{}",
            self.report()
        );
        let missing: Vec<_> = self
            .produced
            .keys()
            .filter(|k| !self.seen.contains_key(k))
            .take(20)
            .collect();
        let extra: Vec<_> = self
            .seen
            .keys()
            .filter(|k| !self.produced.contains_key(k))
            .take(20)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "consumed set differs from produced: missing {missing:?}, unexpected {extra:?}\n{}",
            self.report()
        );
        for (pos, v) in &self.produced {
            let (who, got) = &self.seen[pos];
            assert_eq!(
                got, v,
                "{pos:?} (consumed by {who}) has another value than was produced"
            );
        }
    }

    /// The next offset to read in each partition: one past the last produced record.
    pub fn ends(&self, partitions: i32) -> BTreeMap<i32, i64> {
        (0..partitions)
            .map(|p| {
                let end = self
                    .produced
                    .keys()
                    .filter(|(pp, _)| *pp == p)
                    .map(|(_, o)| o + 1)
                    .max()
                    .unwrap_or(0);
                (p, end)
            })
            .collect()
    }

    /// Polls until the group's committed offsets (OffsetFetch) reach `ends(partitions)`.
    pub fn wait_committed(&mut self, broker: &Broker, group: &str, partitions: i32) {
        let want = self.ends(partitions);
        let topic = self.topic.clone();
        let mut net = broker.net();
        let started = Instant::now();
        loop {
            let last = committed_offsets(&mut net, group, &topic, partitions);
            if last == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "committed offsets of {group} did not reach {want:?} within 20 s (last {last:?})\n{}",
                self.report()
            );
            for _ in 0..4 {
                self.poll_all(Duration::from_millis(25));
            }
        }
    }
}

/// Produces `count` records `{label}-{i}` with key `k{i}`, record `i` to partition
/// `i % partitions`, acks=all; returns (partition, offset) -> value from the delivery
/// reports.
pub fn produce_spread(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    label: &str,
    count: usize,
) -> BTreeMap<(i32, i64), Vec<u8>> {
    let producer = broker.producer("all", &[]);
    let mut futures = Vec::with_capacity(count);
    for i in 0..count {
        let value = format!("{label}-{i}").into_bytes();
        let key = format!("k{i}");
        let p = (i % partitions as usize) as i32;
        let f = producer
            .send_result(
                FutureRecord::to(topic)
                    .partition(p)
                    .key(key.as_bytes())
                    .payload(&value),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue {label}-{i}: {e}"));
        futures.push((p, value, f));
    }
    let mut out = BTreeMap::new();
    for (p, value, f) in futures {
        let delivery = match block_on(f) {
            Ok(Ok(d)) => d,
            Ok(Err((e, _))) => panic!("record {} not delivered: {e}", lossy(&value)),
            Err(_) => panic!("delivery of {} was cancelled", lossy(&value)),
        };
        assert_eq!(delivery.partition, p, "{} went elsewhere", lossy(&value));
        out.insert((p, delivery.offset), value);
    }
    out
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

// ---------------------------------------------------------------------------------------
// Raw protocol (rill_net).

fn sb(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A raw client with its own client id (member ids start with it).
pub fn net_client_as(broker: &Broker, client_id: &str) -> NetClient {
    use rill_net::client::{Connection, ConnectionOptions};
    let stream = super::BlockingStream(super::tcp_connect(broker.addr(), super::OP_TIMEOUT));
    let options = ConnectionOptions {
        client_id: client_id.to_string(),
        ..Default::default()
    };
    let mut conn = Connection::with_options(stream, options);
    let versions = block_on(conn.api_versions())
        .unwrap_or_else(|e| panic!("ApiVersions against {}: {e}", broker.addr()));
    NetClient { conn, versions }
}

/// FindCoordinator for `group`; asserts it succeeds and names this broker.
pub fn find_coordinator(net: &mut NetClient, broker: &Broker, group: &str) {
    let v = net.version(ApiKey::FindCoordinator);
    let req = if v >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![sb(group)])
    } else {
        FindCoordinatorRequest::default().with_key(sb(group))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = net.send_at(v, &req);
        let (code, port) = if v >= 4 {
            assert_eq!(resp.coordinators.len(), 1, "FindCoordinator: {resp:?}");
            let c = &resp.coordinators[0];
            (c.error_code, c.port)
        } else {
            (resp.error_code, resp.port)
        };
        if code == 0 {
            assert_eq!(
                port,
                broker.port() as i32,
                "FindCoordinator named another broker: {resp:?}"
            );
            return;
        }
        // The offsets topic is created on first use; a retriable error may come first.
        assert!(
            code == ErrorCode::CoordinatorNotAvailable.code()
                || code == ErrorCode::CoordinatorLoadInProgress.code(),
            "FindCoordinator {group}: {}",
            code_name(code)
        );
        assert!(
            Instant::now() < deadline,
            "FindCoordinator {group} still {} after 20 s",
            code_name(code)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Consumer-protocol subscription metadata (version 0) for `topics`.
pub fn subscription(topics: &[&str]) -> Bytes {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| sb(t)).collect());
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    sub.encode(&mut buf, 0).expect("encode a subscription");
    buf.freeze()
}

/// Consumer-protocol assignment (version 0) of `partitions` of `topic`.
pub fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        AssignedTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions.to_vec()),
    ]);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    a.encode(&mut buf, 0).expect("encode an assignment");
    buf.freeze()
}

/// Decodes a consumer-protocol assignment into topic -> partitions (empty bytes: nothing).
pub fn decode_assignment(bytes: &Bytes) -> BTreeMap<String, BTreeSet<i32>> {
    if bytes.len() < 2 {
        return BTreeMap::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    let mut body = bytes.slice(2..);
    let a = ConsumerProtocolAssignment::decode(&mut body, version)
        .unwrap_or_else(|e| panic!("decode an assignment ({bytes:?}): {e}"));
    a.assigned_partitions
        .iter()
        .map(|t| {
            (
                t.topic.0.to_string(),
                t.partitions.iter().copied().collect(),
            )
        })
        .collect()
}

/// A JoinGroup request of the consumer protocol with one "range" protocol.
pub fn join_request(
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    session_ms: i32,
    rebalance_ms: i32,
    topics: &[&str],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(rebalance_ms)
        .with_member_id(sb(member_id))
        .with_group_instance_id(instance.map(sb))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(sb("range"))
            .with_metadata(subscription(topics))])
}

/// A SyncGroup request.
pub fn sync_request(
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
    assignments: &[(&str, Bytes)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(generation)
        .with_member_id(sb(member_id))
        .with_group_instance_id(instance.map(sb))
        .with_protocol_type(Some(sb("consumer")))
        .with_protocol_name(Some(sb("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(sb(m))
                        .with_assignment(a.clone())
                })
                .collect(),
        )
}

/// Heartbeat; returns the error code.
pub fn heartbeat(
    net: &mut NetClient,
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(generation)
        .with_member_id(sb(member_id))
        .with_group_instance_id(instance.map(sb));
    net.send(&req).error_code
}

/// LeaveGroup of one member (v3+ batch form when available); returns the member's code.
pub fn leave(net: &mut NetClient, group: &str, member_id: &str, instance: Option<&str>) -> i16 {
    use rill_net::kafka_protocol::messages::leave_group_request::MemberIdentity;
    let v = net.version(ApiKey::LeaveGroup);
    let req = if v >= 3 {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(sb(member_id))
                .with_group_instance_id(instance.map(sb))])
    } else {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_member_id(sb(member_id))
    };
    let resp = net.send_at(v, &req);
    if resp.error_code != 0 || v < 3 {
        return resp.error_code;
    }
    assert_eq!(resp.members.len(), 1, "LeaveGroup: {resp:?}");
    resp.members[0].error_code
}

/// OffsetCommit of `offsets` for one topic; returns (partition, code) per partition.
pub fn commit(
    net: &mut NetClient,
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<(i32, i16)> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(sb(member_id))
        .with_group_instance_id(instance.map(sb))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                offsets
                    .iter()
                    .map(|&(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(sb("rill-test")))
                    })
                    .collect(),
            )]);
    let resp = net.send(&req);
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code))
        })
        .collect()
}

/// OffsetFetch (single-group form, v1..=7) of `partitions` of `topic`: partition ->
/// committed offset (-1 when none). Asserts no error.
pub fn committed_offsets(
    net: &mut NetClient,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let v = net.version(ApiKey::OffsetFetch).min(7);
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes((0..partitions).collect())]));
    let resp = net.send_at(v, &req);
    assert_eq!(
        resp.error_code,
        0,
        "OffsetFetch {group}: {}",
        code_name(resp.error_code)
    );
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        assert_eq!(
            t.name.0.as_str(),
            topic,
            "OffsetFetch answered another topic"
        );
        for p in &t.partitions {
            assert_eq!(
                p.error_code,
                0,
                "OffsetFetch {group} {topic}/{}: {}",
                p.partition_index,
                code_name(p.error_code)
            );
            out.insert(p.partition_index, p.committed_offset);
        }
    }
    out
}

/// DescribeGroups of one group.
pub fn describe_group(net: &mut NetClient, group: &str) -> DescribedGroup {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]);
    let mut resp = net.send(&req);
    assert_eq!(resp.groups.len(), 1, "DescribeGroups {group}: {resp:?}");
    resp.groups.remove(0)
}

/// ConsumerGroupDescribe (KIP-848) of one group.
pub fn consumer_group_describe(
    net: &mut NetClient,
    group: &str,
) -> consumer_group_describe_response::DescribedGroup {
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(sb(group))]);
    let mut resp = net.send(&req);
    assert_eq!(
        resp.groups.len(),
        1,
        "ConsumerGroupDescribe {group}: {resp:?}"
    );
    resp.groups.remove(0)
}

/// Partitions per member (by client id) of a ConsumerGroupDescribe answer, for `topic`.
pub fn described_assignments(
    d: &consumer_group_describe_response::DescribedGroup,
    topic: &str,
) -> BTreeMap<String, BTreeSet<i32>> {
    d.members
        .iter()
        .map(|m| {
            let parts = m
                .assignment
                .topic_partitions
                .iter()
                .filter(|tp| tp.topic_name.0.as_str() == topic)
                .flat_map(|tp| tp.partitions.iter().copied())
                .collect();
            (m.client_id.to_string(), parts)
        })
        .collect()
}

/// ListGroups: group id -> (type, state).
pub fn list_group_types(net: &mut NetClient) -> BTreeMap<String, (String, String)> {
    let resp = net.send(&ListGroupsRequest::default());
    assert_eq!(
        resp.error_code,
        0,
        "ListGroups: {}",
        code_name(resp.error_code)
    );
    resp.groups
        .iter()
        .map(|g| {
            (
                g.group_id.0.to_string(),
                (g.group_type.to_string(), g.group_state.to_string()),
            )
        })
        .collect()
}

/// ListGroups: group id -> state.
pub fn list_groups(net: &mut NetClient) -> BTreeMap<String, String> {
    let resp = net.send(&ListGroupsRequest::default());
    assert_eq!(
        resp.error_code,
        0,
        "ListGroups: {}",
        code_name(resp.error_code)
    );
    resp.groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect()
}

/// DeleteGroups of one group; returns its code.
pub fn delete_group(net: &mut NetClient, group: &str) -> i16 {
    let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))]);
    let resp = net.send(&req);
    assert_eq!(resp.results.len(), 1, "DeleteGroups {group}: {resp:?}");
    resp.results[0].error_code
}
