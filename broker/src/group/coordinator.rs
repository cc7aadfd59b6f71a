//! The group coordinator as a shard service: the groups whose `__consumer_offsets`
//! partitions this shard owns, routing a request to its group's coordinator shard,
//! dispatching it there, DescribeGroups, ListGroups and DeleteGroups, and the I/O shell of
//! the classic protocol's state machine ([`super::classic`]): a JoinGroup or SyncGroup waits
//! here on a oneshot under its ticket, the records go to the partition's writer
//! ([`super::log`]) before anything else runs, and the timers are `runtime::sleep`s.
//!
//! State lives on the coordinator shard only (`RefCell`, never borrowed across an await).
//! [`Groups`] is that state with its shard at hand; [`super::log`], [`super::offsets`] and
//! [`super::consumer_glue`] add their operations to it, each with its own part of the state.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use rill_net::kafka_protocol::messages::describe_groups_response::DescribedGroup;
use rill_net::kafka_protocol::messages::list_groups_response::ListedGroup;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use tracing::{info, warn};

use super::classic::{self, join_error, sync_error, ClassicGroup, Join, Output, Synced, Ticket};
use super::consumer as cg;
use super::consumer_glue::ConsumerGlue;
use super::log::Log;
use super::offsets::{Committed, FetchedOffset};
use super::records::{offsets_partition, StoredRecord};
use crate::errors::KafkaError;
use crate::metadata::{BrokerInfo, ConfigChange, ConfigEdit, ConfigOp, NewTopic, OFFSETS_TOPIC};
use crate::runtime;
use crate::shard::{Lane, Shard};

/// How often group member sessions are checked for expiry.
const GROUP_SESSION_CHECK: Duration = Duration::from_millis(100);

/// One group on its coordinator: a classic group or a KIP-848 one, and its committed offsets.
#[derive(Default)]
pub(super) struct Group {
    /// The classic protocol's state (without members while this is a KIP-848 group).
    pub(super) classic: ClassicGroup,
    /// Set when this is a KIP-848 consumer group.
    pub(super) consumer: Option<cg::ConsumerGroup>,
    pub(super) offsets: BTreeMap<(String, i32), Committed>,
}

/// The group `id`, created if there is room for one more (`limits.groups_per_shard_max`).
pub(super) fn group_entry<'a>(
    groups: &'a mut HashMap<String, Group>,
    id: &str,
    groups_max: usize,
) -> Result<&'a mut Group, ErrorCode> {
    if !groups.contains_key(id) {
        if groups.len() >= groups_max {
            warn!(
                group = id,
                groups = groups.len(),
                "refusing a new consumer group: this shard coordinates limits.groups_per_shard_max groups; delete unused groups or raise the limit"
            );
            return Err(ErrorCode::GroupMaxSizeReached);
        }
        groups.insert(id.to_string(), Group::default());
    }
    Ok(groups.get_mut(id).expect("present"))
}

/// The coordinator state of one shard.
#[derive(Default)]
pub struct Coordinator {
    /// Every group on this shard's offsets partitions, by id.
    pub(super) groups: RefCell<HashMap<String, Group>>,
    /// Offsets committed inside transactions (TxnOffsetCommit), durable but waiting for
    /// their transaction's end marker, by producer id (bounded by
    /// `TXN_OFFSETS_PENDING_PER_SHARD_MAX` records).
    pub(super) pending_txn: RefCell<HashMap<i64, Vec<(StoredRecord, i64)>>>,
    /// The offsets partitions: which are loaded, and their writers.
    pub(super) log: Log,
    /// Numbers the member ids this shard hands out.
    member_seq: Cell<u64>,
    /// Classic JoinGroup and SyncGroup requests waiting for the state machine's answer (at
    /// most one of each per member).
    parked: RefCell<HashMap<Ticket, Parked>>,
    /// Names the next parked request.
    next_ticket: Cell<u64>,
    /// What the KIP-848 glue keeps besides the groups.
    pub(super) consumer: ConsumerGlue,
    /// This shard checked that the offsets topic is compacted (and asked for it if not).
    compaction_checked: Cell<bool>,
}

/// The reply channel of a parked classic request.
enum Parked {
    Join(oneshot::Sender<JoinGroupResponse>),
    Sync(oneshot::Sender<SyncGroupResponse>),
}

/// This shard's coordinator, with its shard at hand (the shard's methods through `Deref`).
#[derive(Clone)]
pub struct Groups {
    shard: Rc<Shard>,
    pub(super) state: Rc<Coordinator>,
}

impl std::ops::Deref for Groups {
    type Target = Shard;

    fn deref(&self) -> &Shard {
        &self.shard
    }
}

impl Groups {
    /// The coordinator of `shard` (registered by [`start`]).
    pub fn of(shard: &Rc<Shard>) -> Groups {
        Groups {
            shard: shard.clone(),
            state: shard.service::<Coordinator>(),
        }
    }
}

/// Gives `shard` its coordinator and starts the member session expiry.
pub fn start(shard: &Rc<Shard>) {
    shard.provide(Rc::new(Coordinator::default()));
    let groups = Groups::of(shard);
    runtime::spawn(async move {
        loop {
            runtime::sleep(GROUP_SESSION_CHECK).await;
            groups.expire_group_members();
        }
    });
}

/// Group work, executed on the coordinator shard.
#[derive(Debug)]
pub enum GroupOp {
    /// The request, its version, the client id and host.
    Join(JoinGroupRequest, i16, String, String),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest, i16),
    Commit(OffsetCommitRequest, i16),
    TxnCommit(TxnOffsetCommitRequest, i16),
    Fetch {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
        /// KIP-848 members fetch with their id and epoch (OffsetFetch v9).
        member: Option<(String, i32)>,
        /// v7+: a partition with transactional offsets awaiting their transaction's end
        /// answers UNSTABLE_OFFSET_COMMIT (the client retries) rather than the older offset.
        require_stable: bool,
    },
    /// The request, its version, the client id and host.
    ConsumerHeartbeat(ConsumerGroupHeartbeatRequest, i16, String, String),
    ConsumerDescribe(String),
    Describe(String),
    Delete(String),
    OffsetDelete(OffsetDeleteRequest),
}

/// The answer to a [`GroupOp`], of the same name.
#[derive(Debug)]
pub enum GroupReply {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    Commit(OffsetCommitResponse),
    TxnCommit(TxnOffsetCommitResponse),
    /// Each partition's committed offset, or its error (UNSTABLE_OFFSET_COMMIT).
    Fetch(Result<Vec<FetchedOffset>, KafkaError>),
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerDescribe(consumer_group_describe_response::DescribedGroup),
    Describe(DescribedGroup),
    Delete(Result<(), KafkaError>),
    OffsetDelete(OffsetDeleteResponse),
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The error of a request whose coordinator cannot serve it now; clients look it up again.
fn unavailable(why: impl Into<String>) -> KafkaError {
    KafkaError::new(ErrorCode::CoordinatorNotAvailable, why)
}

impl Groups {
    /// The coordinator shard and offsets partition of `group`, creating the offsets topic
    /// on first use.
    async fn coordinator_of(&self, group: &str) -> Result<(usize, i32), KafkaError> {
        let partitions = match self.offsets_partitions() {
            Some(partitions) => {
                self.compact_offsets_topic();
                partitions
            }
            None => {
                // Compacted, as Kafka's: every key's latest record is its state (retention
                // would drop live offsets). Segments of offsets_topic_segment_bytes, as
                // Kafka's offsets.topic.segment.bytes: the active one is never compacted.
                let configs = vec![
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    (
                        "segment.bytes".to_string(),
                        self.config().offsets_topic_segment_bytes.to_string(),
                    ),
                ];
                // Kafka's offsets.topic.replication.factor (3), or as many brokers as are
                // up in a smaller cluster.
                let alive = self.image().live_brokers().len();
                let spec = NewTopic {
                    name: OFFSETS_TOPIC.to_string(),
                    partitions: self.config().offsets_topic_partitions,
                    replication_factor: alive.clamp(1, 3),
                    assignments: None,
                    configs,
                };
                match self.shard.authority().create_topic(spec, false).await {
                    Ok(_) => info!(topic = OFFSETS_TOPIC, "created the offsets topic"),
                    Err(e) if e.code == ErrorCode::TopicAlreadyExists => {}
                    Err(e) => {
                        warn!(error = ?e, "cannot create the offsets topic");
                        return Err(unavailable("cannot create the offsets topic"));
                    }
                }
                self.offsets_partitions()
                    .ok_or_else(|| unavailable("the offsets topic is not there yet"))?
            }
        };
        let p = offsets_partition(group, partitions);
        let owner = self
            .owner_of(OFFSETS_TOPIC, p)
            .map_err(|e| unavailable(e.message.unwrap_or_default()))?;
        Ok((owner, p))
    }

    /// An offsets topic made by a Rill that kept it small with checkpoints instead of
    /// compaction becomes compacted. Checked once per shard and process, with the first
    /// group request (not on every one); a failure is logged and tried again after the next
    /// restart.
    fn compact_offsets_topic(&self) {
        if self.state.compaction_checked.replace(true) {
            return;
        }
        let compacted = self
            .image()
            .topic(OFFSETS_TOPIC)
            .is_none_or(|t| t.settings.cleanup_compact);
        if compacted {
            return;
        }
        let me = self.clone();
        runtime::spawn(async move {
            let edit = ConfigEdit {
                name: "cleanup.policy".to_string(),
                op: ConfigOp::Set,
                value: Some("compact".to_string()),
            };
            match me
                .shard
                .authority()
                .alter_topic_configs(OFFSETS_TOPIC, ConfigChange::Incremental(vec![edit]), false)
                .await
            {
                Ok(()) => info!(
                    topic = OFFSETS_TOPIC,
                    "the offsets topic is now compacted (cleanup.policy=compact)"
                ),
                Err(e) => {
                    warn!(topic = OFFSETS_TOPIC, error = ?e, "cannot make the offsets topic compacted; set its cleanup.policy to compact (rill topic alter or kafka-configs)")
                }
            }
        });
    }

    /// How many partitions `__consumer_offsets` has, once it exists.
    pub(super) fn offsets_partitions(&self) -> Option<i32> {
        self.image()
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partition_count())
    }

    /// Runs `op` for `group` on its coordinator shard.
    pub async fn group_op(&self, group: &str, op: GroupOp) -> Result<GroupReply, KafkaError> {
        // Kafka refuses the empty group id everywhere (an OffsetCommit would otherwise
        // create a nameless group).
        if group.is_empty() {
            return Err(KafkaError::new(
                ErrorCode::InvalidGroupId,
                "the group id is empty",
            ));
        }
        let (owner, partition) = self.coordinator_of(group).await?;
        // The leader of the group's offsets partition coordinates it; clients that reached
        // another broker look it up again.
        let leader = self
            .image()
            .placement(OFFSETS_TOPIC, partition)
            .map(|p| p.leader);
        if leader != Some(self.node_id()) {
            return Err(KafkaError::new(
                ErrorCode::NotCoordinator,
                format!("this broker does not lead offsets partition {partition}"),
            ));
        }
        self.shard
            .ask(owner, Lane::Control, move |shard: Rc<Shard>| async move {
                Groups::of(&shard).run_group_op(partition, op).await
            })
            .await
            .unwrap_or_else(|_| Err(unavailable("the coordinator shard is stopping")))
    }

    /// The offsets partition of `group` (creating the offsets topic on first use), for
    /// AddOffsetsToTxn.
    pub async fn offsets_partition_of(&self, group: &str) -> Result<i32, KafkaError> {
        self.coordinator_of(group).await.map(|(_, p)| p)
    }

    /// An end marker of producer `pid` was written to offsets partition `p` here: its
    /// transaction's offsets of groups on `p` take effect (commit) or are dropped.
    pub fn end_txn_offsets(&self, p: i32, pid: i64, commit: bool) {
        self.end_txn_offsets_in(p, pid, commit);
    }

    /// The broker coordinating `group` (creating the offsets topic on first use): the
    /// leader of the group's offsets partition.
    pub async fn group_coordinator(&self, group: &str) -> Result<BrokerInfo, KafkaError> {
        let (_, partition) = self.coordinator_of(group).await?;
        let image = self.image();
        let leader = image
            .placement(OFFSETS_TOPIC, partition)
            .map(|p| p.leader)
            .ok_or_else(|| unavailable(format!("offsets partition {partition} has no leader")))?;
        image
            .live_brokers()
            .into_iter()
            .find(|b| b.id == leader)
            .ok_or_else(|| unavailable(format!("broker {leader}, the coordinator, is not alive")))
    }

    /// ListGroups over every shard.
    pub async fn list_groups(&self) -> Vec<ListedGroup> {
        self.shard
            .ask_all(|shard: Rc<Shard>| async move {
                let groups = Groups::of(&shard);
                groups.load_led_partitions().await;
                groups.listed_groups()
            })
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Loads every offsets partition this shard leads that is not loaded yet (groups are
    /// otherwise loaded when first used), so ListGroups after a restart or a leadership move
    /// shows every group, as Kafka's coordinator loads its partitions when elected. A
    /// partition that cannot be loaded now is left to the next call.
    async fn load_led_partitions(&self) {
        let Some(partitions) = self.offsets_partitions() else {
            return;
        };
        for p in 0..partitions {
            let leads = self
                .image()
                .placement(OFFSETS_TOPIC, p)
                .is_some_and(|pl| pl.leader == self.node_id());
            if leads && self.owner_of(OFFSETS_TOPIC, p).ok() == Some(self.id()) {
                let _ = self.load_groups(p).await;
            }
        }
    }

    /// Every committed offset of the groups this shard coordinates, for metrics.
    pub fn group_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let groups = self.state.groups.borrow();
        let mut out = Vec::new();
        for (g, group) in groups.iter() {
            for ((t, p), c) in &group.offsets {
                out.push((g.clone(), t.clone(), *p, c.offset));
            }
        }
        out
    }

    fn listed_groups(&self) -> Vec<ListedGroup> {
        self.state
            .groups
            .borrow()
            .iter()
            .map(|(id, g)| match &g.consumer {
                Some(c) => ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s("consumer"))
                    .with_group_state(s(cg::state_name(c)))
                    .with_group_type(s("consumer")),
                None => ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s(g.classic.protocol_type()))
                    .with_group_state(s(g.classic.state().name()))
                    .with_group_type(s("classic")),
            })
            .collect()
    }

    /// Executes a group operation here (this shard coordinates `partition`).
    async fn run_group_op(&self, partition: i32, op: GroupOp) -> Result<GroupReply, KafkaError> {
        self.load_groups(partition).await.map_err(|code| {
            KafkaError::new(code, format!("offsets partition {partition} is not loaded"))
        })?;
        Ok(match op {
            GroupOp::Join(r, v, client_id, host) => {
                GroupReply::Join(self.join(partition, r, v, client_id, host).await)
            }
            GroupOp::Sync(r) => GroupReply::Sync(self.sync(partition, r).await),
            GroupOp::Heartbeat(r) => GroupReply::Heartbeat(self.heartbeat(r)),
            GroupOp::Leave(r, v) => GroupReply::Leave(self.leave(partition, r, v)),
            GroupOp::Commit(r, v) => GroupReply::Commit(self.commit(partition, r, v).await),
            GroupOp::TxnCommit(r, v) => {
                GroupReply::TxnCommit(self.txn_commit(partition, r, v).await)
            }
            GroupOp::Fetch {
                group,
                topics,
                member,
                require_stable,
            } => GroupReply::Fetch(
                self.fetch_offsets(&group, topics, member, require_stable)
                    .map_err(KafkaError::code),
            ),
            GroupOp::ConsumerHeartbeat(r, v, client_id, host) => GroupReply::ConsumerHeartbeat(
                self.consumer_heartbeat(partition, r, v, client_id, host)
                    .await,
            ),
            GroupOp::ConsumerDescribe(group) => {
                GroupReply::ConsumerDescribe(self.consumer_describe(&group))
            }
            GroupOp::Describe(group) => GroupReply::Describe(self.describe_group(&group)),
            GroupOp::Delete(group) => {
                GroupReply::Delete(self.delete_group(partition, &group).await)
            }
            GroupOp::OffsetDelete(r) => {
                GroupReply::OffsetDelete(self.offset_delete(partition, r).await)
            }
        })
    }

    fn describe_group(&self, group: &str) -> DescribedGroup {
        let groups = self.state.groups.borrow();
        let base = DescribedGroup::default().with_group_id(GroupId(s(group)));
        let Some(g) = groups.get(group) else {
            return base.with_group_state(s("Dead"));
        };
        if g.consumer.is_some() {
            return base
                .with_error_code(ErrorCode::GroupIdNotFound.code())
                .with_group_state(s("Dead"));
        }
        g.classic.describe(group)
    }

    async fn delete_group(&self, partition: i32, group: &str) -> Result<(), KafkaError> {
        let mut records = Vec::new();
        {
            let groups = self.state.groups.borrow();
            let members = match groups.get(group) {
                None => {
                    return Err(KafkaError::new(
                        ErrorCode::GroupIdNotFound,
                        format!("group {group} does not exist"),
                    ))
                }
                Some(g) => {
                    g.classic.has_members()
                        || g.consumer.as_ref().is_some_and(|c| !c.members.is_empty())
                }
            };
            if members {
                return Err(KafkaError::new(
                    ErrorCode::NonEmptyGroup,
                    format!("group {group} has members"),
                ));
            }
            // Each committed offset is a key of its own in the compacted topic: its
            // tombstone goes with the group's, or compaction would bring it back.
            if let Some(g) = groups.get(group) {
                for (topic, p) in g.offsets.keys() {
                    records.push(StoredRecord::OffsetDeleted {
                        group: group.to_string(),
                        topic: topic.clone(),
                        partition: *p,
                    });
                }
            }
        }
        records.push(StoredRecord::GroupDeleted {
            group: group.to_string(),
        });
        self.persist(partition, records)
            .await
            .map_err(KafkaError::code)?;
        info!(group, "group deleted");
        Ok(())
    }
}

// The I/O shell of the classic state machine: requests parked by ticket, records queued in
// order, timers.
impl Groups {
    /// Forgets parked classic requests whose group was replaced or deleted: they answer as
    /// when the coordinator goes away.
    pub(super) fn drop_parked(&self, tickets: Vec<Ticket>) {
        let mut parked = self.state.parked.borrow_mut();
        for t in tickets {
            parked.remove(&t);
        }
    }

    /// The clock and settings for the classic state machine.
    fn classic_context(&self) -> classic::Context {
        let cfg = self.config();
        classic::Context {
            now: Instant::now(),
            settings: classic::Settings {
                min_session_timeout_ms: cfg.group_min_session_timeout_ms,
                max_session_timeout_ms: cfg.group_max_session_timeout_ms,
                initial_rebalance_delay: Duration::from_millis(
                    cfg.group_initial_rebalance_delay_ms,
                ),
                members_max: cfg.limits.group_members_max,
            },
        }
    }

    fn ticket(&self) -> Ticket {
        let t = self.state.next_ticket.get();
        self.state.next_ticket.set(t + 1);
        Ticket(t)
    }

    /// Runs `event` on classic group `group`, if it exists, and carries out its outputs.
    fn classic_event(
        &self,
        partition: i32,
        group: &str,
        event: impl FnOnce(&mut ClassicGroup, &classic::Context, &mut Vec<Output>),
    ) {
        let ctx = self.classic_context();
        let mut out = Vec::new();
        {
            let mut groups = self.state.groups.borrow_mut();
            let Some(g) = groups.get_mut(group) else {
                return;
            };
            event(&mut g.classic, &ctx, &mut out);
        }
        self.carry_out(partition, group, out);
    }

    /// Does what the classic state machine asked for, in its order. Records are queued
    /// before anything else can run (no await here), so they reach the log in the order the
    /// state machine produced them.
    fn carry_out(&self, partition: i32, group: &str, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Join(t, answer) => {
                    let parked = self.state.parked.borrow_mut().remove(&t);
                    if let Some(Parked::Join(tx)) = parked {
                        let _ = tx.send(answer);
                    }
                }
                Output::Sync(t, answer) => {
                    let parked = self.state.parked.borrow_mut().remove(&t);
                    if let Some(Parked::Sync(tx)) = parked {
                        let _ = tx.send(answer);
                    }
                }
                Output::Abandon(t) => {
                    self.state.parked.borrow_mut().remove(&t);
                }
                Output::Persist(record) => {
                    // A failure is logged by the writer; the group's next change writes its
                    // state again.
                    let _ = self.enqueue_write(partition, vec![record]);
                }
                Output::JoinDeadline { rebalance, after } => {
                    self.classic_timer(partition, group, after, move |g, group, ctx, out| {
                        g.join_deadline(group, rebalance, ctx, out)
                    })
                }
                Output::SyncDeadline { rebalance, after } => {
                    self.classic_timer(partition, group, after, move |g, group, ctx, out| {
                        g.sync_deadline(group, rebalance, ctx, out)
                    })
                }
            }
        }
    }

    fn classic_timer(
        &self,
        partition: i32,
        group: &str,
        after: Duration,
        fire: impl FnOnce(&mut ClassicGroup, &str, &classic::Context, &mut Vec<Output>) + 'static,
    ) {
        let me = self.clone();
        let group = group.to_string();
        runtime::spawn(async move {
            runtime::sleep(after).await;
            me.classic_event(partition, &group, |g, ctx, out| fire(g, &group, ctx, out));
        });
    }

    /// A fresh member id: client id, shard, a sequence number and a random part.
    fn new_member_id(&self, client_id: &str) -> String {
        let seq = self.state.member_seq.get() + 1;
        self.state.member_seq.set(seq);
        format!("{client_id}-{}-{seq}-{:08x}", self.id(), fastrand::u32(..))
    }

    async fn join(
        &self,
        partition: i32,
        r: JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
    ) -> JoinGroupResponse {
        let ctx = self.classic_context();
        let mut join = match Join::decode(&r, version, client_id, client_host, &ctx.settings) {
            Ok(join) => join,
            Err(code) => return join_error(code, &r.member_id),
        };
        if join.member_id.is_empty() {
            join.new_member_id = self.new_member_id(&join.client_id);
        }
        let group_id = r.group_id.0.to_string();
        let member_id = join.member_id.clone();
        let ticket = self.ticket();
        let mut out = Vec::new();
        let answer = {
            let mut groups = self.state.groups.borrow_mut();
            let groups_max = self.config().limits.groups_per_shard_max;
            let g = match group_entry(&mut groups, &group_id, groups_max) {
                Ok(g) => g,
                Err(code) => return join_error(code, &member_id),
            };
            if let Some(c) = &g.consumer {
                if !c.members.is_empty() {
                    // Kafka does not mix the protocols in one group either.
                    return join_error(ErrorCode::InconsistentGroupProtocol, &member_id);
                }
                g.consumer = None;
            }
            g.classic.join(&group_id, join, ticket, &ctx, &mut out)
        };
        if let Some(answer) = answer {
            self.carry_out(partition, &group_id, out);
            return answer;
        }
        // Parked before the outputs are carried out: they may already answer it.
        let (tx, rx) = oneshot::channel();
        self.state
            .parked
            .borrow_mut()
            .insert(ticket, Parked::Join(tx));
        self.carry_out(partition, &group_id, out);
        rx.await
            .unwrap_or_else(|_| join_error(ErrorCode::UnknownMemberId, &member_id))
    }

    async fn sync(&self, partition: i32, r: SyncGroupRequest) -> SyncGroupResponse {
        let group_id = r.group_id.0.to_string();
        let ctx = self.classic_context();
        let ticket = self.ticket();
        let mut out = Vec::new();
        let synced = {
            let mut groups = self.state.groups.borrow_mut();
            let Some(g) = groups.get_mut(&group_id) else {
                return sync_error(ErrorCode::UnknownMemberId);
            };
            g.classic.sync(&group_id, &r, ticket, &ctx, &mut out)
        };
        let persist = match synced {
            Synced::Now(answer) => {
                self.carry_out(partition, &group_id, out);
                return answer;
            }
            Synced::Parked => None,
            Synced::Persist { generation, record } => Some((generation, record)),
        };
        let (tx, rx) = oneshot::channel();
        self.state
            .parked
            .borrow_mut()
            .insert(ticket, Parked::Sync(tx));
        self.carry_out(partition, &group_id, out);
        if let Some((generation, record)) = persist {
            let result = self.persist(partition, vec![record]).await;
            self.classic_event(partition, &group_id, |g, _, out| {
                g.assignment_persisted(&group_id, generation, result, out)
            });
        }
        rx.await
            .unwrap_or_else(|_| sync_error(ErrorCode::RebalanceInProgress))
    }

    fn heartbeat(&self, r: HeartbeatRequest) -> HeartbeatResponse {
        let ctx = self.classic_context();
        match self
            .state
            .groups
            .borrow_mut()
            .get_mut(r.group_id.0.as_str())
        {
            None => HeartbeatResponse::default().with_error_code(ErrorCode::UnknownMemberId.code()),
            Some(g) => g.classic.heartbeat(&r, &ctx),
        }
    }

    fn leave(&self, partition: i32, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group_id = r.group_id.0.to_string();
        let ctx = self.classic_context();
        let mut out = Vec::new();
        let answer = {
            let mut groups = self.state.groups.borrow_mut();
            let Some(g) = groups.get_mut(&group_id) else {
                return LeaveGroupResponse::default()
                    .with_error_code(ErrorCode::UnknownMemberId.code());
            };
            g.classic.leave(&group_id, &r, version, &ctx, &mut out)
        };
        self.carry_out(partition, &group_id, out);
        answer
    }

    /// Removes members whose session expired; called by the shard's ticker.
    pub fn expire_group_members(&self) {
        self.unload_resigned();
        self.expire_consumer_members();
        let Some(partitions) = self.offsets_partitions() else {
            return;
        };
        let ctx = self.classic_context();
        let mut expired = Vec::new();
        for (id, g) in self.state.groups.borrow_mut().iter_mut() {
            let mut out = Vec::new();
            g.classic.expire_sessions(id, &ctx, &mut out);
            if !out.is_empty() {
                expired.push((id.clone(), out));
            }
        }
        for (group, out) in expired {
            self.carry_out(offsets_partition(&group, partitions), &group, out);
        }
    }
}
