//! Consumer groups: the classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) and committed offsets (OffsetCommit, OffsetFetch, OffsetDelete), plus
//! ListGroups, DescribeGroups and DeleteGroups.
//!
//! A group's coordinator is the shard that owns the partition of the internal
//! `__consumer_offsets` topic chosen by hashing the group id (Java's `String.hashCode`, as
//! Kafka does). Group metadata and offsets are records in that partition, appended and
//! fdatasync'd before a commit or an assignment is acknowledged, so they survive restarts
//! and kill -9; the coordinator replays its partitions the first time a group on them is
//! used. The topic is created on first use, like Kafka's.
//!
//! State lives on the coordinator shard only (`RefCell`, never borrowed across an await).
//! JoinGroup and SyncGroup park on oneshots until the rebalance completes.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use rill_net::client::{decode_record_batches, encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use rill_net::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use rill_net::kafka_protocol::messages::list_groups_response::ListedGroup;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::{Decodable, StrBytes};
use rill_net::ErrorCode;
use rkyv::{Archive, Deserialize, Serialize};
use tracing::{info, warn};

use crate::errors::KafkaError;
use crate::runtime;
use crate::shard::{OpOk, PartitionOp, Shard, ShardMsg};

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Largest offset metadata string accepted (Kafka's `offset.metadata.max.bytes`).
const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// The `__consumer_offsets` partition of `group`: `abs(hashCode) % partitions`, as Kafka.
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

/// What the coordinator writes to its partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum StoredRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
        leader_epoch: i32,
        metadata: String,
        commit_ms: i64,
    },
    OffsetDeleted {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
        protocol_type: String,
        protocol: String,
        generation: i32,
        leader: String,
        /// (member id, instance id, client id, host, session ms, rebalance ms, metadata,
        /// assignment)
        members: Vec<StoredMember>,
    },
    GroupDeleted {
        group: String,
    },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

impl StoredRecord {
    fn group(&self) -> &str {
        match self {
            StoredRecord::Offset { group, .. }
            | StoredRecord::OffsetDeleted { group, .. }
            | StoredRecord::Group { group, .. }
            | StoredRecord::GroupDeleted { group } => group,
        }
    }

    /// The record key: one per offset and one per group, so compaction (once it exists)
    /// keeps the latest of each.
    fn key(&self) -> String {
        match self {
            StoredRecord::Offset {
                group,
                topic,
                partition,
                ..
            }
            | StoredRecord::OffsetDeleted {
                group,
                topic,
                partition,
            } => format!("offset\0{group}\0{topic}\0{partition}"),
            StoredRecord::Group { group, .. } | StoredRecord::GroupDeleted { group } => {
                format!("group\0{group}")
            }
        }
    }

    fn encode(&self) -> Bytes {
        Bytes::from(
            rkyv::to_bytes::<rkyv::rancor::Error>(self)
                .expect("serializing a group record into memory cannot fail")
                .to_vec(),
        )
    }

    fn decode(value: &[u8]) -> Result<StoredRecord, String> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(value.len());
        aligned.extend_from_slice(value);
        rkyv::from_bytes::<StoredRecord, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join_tx: Option<oneshot::Sender<JoinGroupResponse>>,
    sync_tx: Option<oneshot::Sender<SyncGroupResponse>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn stored(&self, protocol: &str) -> StoredMember {
        StoredMember {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: self.session_timeout.as_millis() as i32,
            rebalance_timeout_ms: self.rebalance_timeout.as_millis() as i32,
            metadata: self.metadata_for(protocol).to_vec(),
            assignment: self.assignment.to_vec(),
        }
    }
}

struct Group {
    state: GroupState,
    protocol_type: String,
    protocol: String,
    generation: i32,
    leader: String,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, waiting for their second join.
    pending: HashSet<String>,
    /// Static members: group.instance.id -> member id.
    statics: HashMap<String, String>,
    offsets: BTreeMap<(String, i32), Committed>,
    /// Bumped at every rebalance, so a stale timer does nothing.
    rebalance_id: u64,
    rebalance_started: Instant,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            protocol_type: String::new(),
            protocol: String::new(),
            generation: 0,
            leader: String::new(),
            members: BTreeMap::new(),
            pending: HashSet::new(),
            statics: HashMap::new(),
            offsets: BTreeMap::new(),
            rebalance_id: 0,
            rebalance_started: Instant::now(),
        }
    }

    fn stored(&self, group: &str) -> StoredRecord {
        StoredRecord::Group {
            group: group.to_string(),
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| m.stored(&self.protocol))
                .collect(),
        }
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete.
    fn subscribed_topics(&self) -> HashSet<String> {
        let mut out = HashSet::new();
        if self.protocol_type != "consumer" {
            return out;
        }
        for m in self.members.values() {
            let meta = m.metadata_for(&self.protocol);
            if meta.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]).clamp(0, 3);
            let mut body = meta.slice(2..);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut body, version) {
                out.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        out
    }
}

/// The coordinator state of one shard.
#[derive(Default)]
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
    /// `__consumer_offsets` partitions replayed into `groups`.
    loaded: RefCell<HashSet<i32>>,
    load_lock: async_lock::Mutex<()>,
    member_seq: Cell<u64>,
}

/// Group work, executed on the coordinator shard.
#[derive(Debug)]
pub enum GroupOp {
    Join(JoinGroupRequest, i16, String, String),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest, i16),
    Commit(OffsetCommitRequest),
    Fetch {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    Describe(String),
    /// Groups of this shard (ListGroups fans out to every shard).
    List,
    Delete(String),
    OffsetDelete(OffsetDeleteRequest),
}

#[derive(Debug)]
pub enum GroupReply {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    Commit(OffsetCommitResponse),
    Fetch(Result<Vec<(String, i32, Committed)>, ErrorCode>),
    Describe(DescribedGroup),
    List(Vec<ListedGroup>),
    Delete(ErrorCode),
    OffsetDelete(OffsetDeleteResponse),
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_error(code: ErrorCode, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code.code())
        .with_generation_id(-1)
        .with_member_id(s(member_id))
}

fn sync_error(code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code.code())
}

impl Shard {
    /// The coordinator shard and offsets partition of `group`, creating the offsets topic
    /// on first use.
    pub async fn coordinator_of(self: &Rc<Self>, group: &str) -> Result<(usize, i32), ErrorCode> {
        let partitions = match self.snapshot().topic(OFFSETS_TOPIC) {
            Some(t) => t.partitions,
            None => {
                let op = crate::shard::AdminOp::CreateTopic {
                    name: OFFSETS_TOPIC.to_string(),
                    partitions: self.config.offsets_topic_partitions,
                    // Offsets stay until their group deletes them (compaction is not there
                    // yet to keep only the latest).
                    configs: vec![("retention.ms".into(), "-1".into())],
                    validate_only: false,
                };
                match self.admin(op).await {
                    Ok(_) => info!(topic = OFFSETS_TOPIC, "created the offsets topic"),
                    Err(e) if e.code == ErrorCode::TopicAlreadyExists => {}
                    Err(e) => {
                        warn!(error = ?e, "cannot create the offsets topic");
                        return Err(ErrorCode::CoordinatorNotAvailable);
                    }
                }
                self.snapshot()
                    .topic(OFFSETS_TOPIC)
                    .map(|t| t.partitions)
                    .ok_or(ErrorCode::CoordinatorNotAvailable)?
            }
        };
        let p = offsets_partition(group, partitions);
        let owner = self
            .owner_of(OFFSETS_TOPIC, p)
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        Ok((owner, p))
    }

    /// Runs `op` for `group` on its coordinator shard.
    pub async fn group_op(
        self: &Rc<Self>,
        group: &str,
        op: GroupOp,
    ) -> Result<GroupReply, ErrorCode> {
        // Kafka refuses the empty group id everywhere (an OffsetCommit would otherwise
        // create a nameless group).
        if group.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        let (owner, partition) = self.coordinator_of(group).await?;
        if owner == self.id {
            return self.run_group_op(partition, op).await;
        }
        let (tx, rx) = oneshot::channel();
        let msg = ShardMsg::Group {
            partition,
            op: Box::new(op),
            reply: tx,
        };
        self.peers_send(owner, msg)
            .await
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        rx.await.unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
    }

    /// ListGroups over every shard.
    pub async fn list_groups(self: &Rc<Self>) -> Vec<ListedGroup> {
        let mut out = self.listed_groups();
        for to in (0..self.shards).filter(|&to| to != self.id) {
            let (tx, rx) = oneshot::channel();
            let msg = ShardMsg::Group {
                partition: -1,
                op: Box::new(GroupOp::List),
                reply: tx,
            };
            if self.peers_send(to, msg).await.is_ok() {
                if let Ok(Ok(GroupReply::List(groups))) = rx.await {
                    out.extend(groups);
                }
            }
        }
        out
    }

    /// Every committed offset of the groups this shard coordinates, for metrics.
    pub fn group_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let groups = self.groups.groups.borrow();
        let mut out = Vec::new();
        for (g, group) in groups.iter() {
            for ((t, p), c) in &group.offsets {
                out.push((g.clone(), t.clone(), *p, c.offset));
            }
        }
        out
    }

    fn listed_groups(&self) -> Vec<ListedGroup> {
        self.groups
            .groups
            .borrow()
            .iter()
            .map(|(id, g)| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s(&g.protocol_type))
                    .with_group_state(s(g.state.name()))
                    .with_group_type(s("classic"))
            })
            .collect()
    }

    /// Executes a group operation here (this shard coordinates `partition`).
    pub async fn run_group_op(
        self: &Rc<Self>,
        partition: i32,
        op: GroupOp,
    ) -> Result<GroupReply, ErrorCode> {
        if let GroupOp::List = op {
            return Ok(GroupReply::List(self.listed_groups()));
        }
        self.load_groups(partition).await?;
        Ok(match op {
            GroupOp::Join(r, v, client_id, host) => {
                GroupReply::Join(self.join(partition, r, v, client_id, host).await)
            }
            GroupOp::Sync(r) => GroupReply::Sync(self.sync(partition, r).await),
            GroupOp::Heartbeat(r) => GroupReply::Heartbeat(self.heartbeat(r)),
            GroupOp::Leave(r, v) => GroupReply::Leave(self.leave(partition, r, v)),
            GroupOp::Commit(r) => GroupReply::Commit(self.commit(partition, r).await),
            GroupOp::Fetch { group, topics } => {
                GroupReply::Fetch(Ok(self.fetch_offsets(&group, topics)))
            }
            GroupOp::Describe(group) => GroupReply::Describe(self.describe_group(&group)),
            GroupOp::Delete(group) => {
                GroupReply::Delete(self.delete_group(partition, &group).await)
            }
            GroupOp::OffsetDelete(r) => {
                GroupReply::OffsetDelete(self.offset_delete(partition, r).await)
            }
            GroupOp::List => unreachable!("handled above"),
        })
    }

    /// Replays `__consumer_offsets` partition `p` into the group state, once.
    async fn load_groups(&self, p: i32) -> Result<(), ErrorCode> {
        if self.groups.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let _one = self.groups.load_lock.lock().await;
        if self.groups.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let started = Instant::now();
        let mut offset = 0;
        let mut records = 0u64;
        loop {
            let reply = self
                .execute(
                    OFFSETS_TOPIC,
                    p,
                    PartitionOp::Fetch {
                        offset,
                        max_bytes: 1 << 20,
                    },
                )
                .await;
            let data = match reply.result {
                Ok(OpOk::Fetched { records }) => records,
                Ok(_) => Bytes::new(),
                Err(e)
                    if e.code == ErrorCode::OffsetOutOfRange
                        && offset < reply.offsets.log_start_offset =>
                {
                    offset = reply.offsets.log_start_offset;
                    continue;
                }
                Err(e) => {
                    warn!(partition = p, error = ?e, "cannot load consumer groups");
                    return Err(ErrorCode::CoordinatorLoadInProgress);
                }
            };
            if data.is_empty() {
                break;
            }
            let decoded = decode_record_batches(&data).map_err(|e| {
                warn!(partition = p, error = %e, "damaged record in the offsets topic");
                ErrorCode::CoordinatorNotAvailable
            })?;
            if decoded.is_empty() {
                break;
            }
            for rec in decoded {
                offset = rec.offset + 1;
                let Some(value) = rec.value else { continue };
                match StoredRecord::decode(&value) {
                    Ok(r) => {
                        self.replay(r);
                        records += 1;
                    }
                    Err(e) => {
                        warn!(partition = p, offset = rec.offset, error = %e, "skipping an unreadable group record")
                    }
                }
            }
        }
        self.groups.loaded.borrow_mut().insert(p);
        if records > 0 {
            info!(
                partition = p,
                records,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "consumer groups loaded"
            );
        }
        Ok(())
    }

    fn replay(&self, r: StoredRecord) {
        let mut groups = self.groups.groups.borrow_mut();
        match r {
            StoredRecord::Offset {
                group,
                topic,
                partition,
                offset,
                leader_epoch,
                metadata,
                ..
            } => {
                groups
                    .entry(group)
                    .or_insert_with(Group::new)
                    .offsets
                    .insert(
                        (topic, partition),
                        Committed {
                            offset,
                            leader_epoch,
                            metadata,
                        },
                    );
            }
            StoredRecord::OffsetDeleted {
                group,
                topic,
                partition,
            } => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            StoredRecord::Group {
                group,
                protocol_type,
                protocol,
                generation,
                ..
            } => {
                // Members do not survive a coordinator restart (their sessions cannot be
                // checked); the group comes back Empty at its generation and rejoins.
                let g = groups.entry(group).or_insert_with(Group::new);
                g.protocol_type = protocol_type;
                g.protocol = protocol;
                g.generation = generation;
                g.state = GroupState::Empty;
            }
            StoredRecord::GroupDeleted { group } => {
                groups.remove(&group);
            }
        }
    }

    /// Appends `records` to the offsets partition and waits until they are durable.
    async fn persist(&self, partition: i32, records: Vec<StoredRecord>) -> Result<(), ErrorCode> {
        if records.is_empty() {
            return Ok(());
        }
        let now = runtime::now_ms();
        let batch: Vec<ProduceRecord> = records
            .iter()
            .map(|r| ProduceRecord {
                key: Some(Bytes::from(r.key().into_bytes())),
                value: Some(r.encode()),
                headers: Vec::new(),
                timestamp_ms: now,
            })
            .collect();
        let data = encode_record_batch(&batch, &BatchOptions::default()).map_err(|e| {
            warn!(error = %e, "cannot encode group records");
            ErrorCode::UnknownServerError
        })?;
        let reply = self
            .execute(
                OFFSETS_TOPIC,
                partition,
                PartitionOp::Produce {
                    batch: data,
                    acks: -1,
                },
            )
            .await;
        reply.result.map(|_| ()).map_err(|e: KafkaError| {
            warn!(group = records[0].group(), error = ?e, "cannot persist group records");
            if e.code == ErrorCode::MessageTooLarge {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                ErrorCode::CoordinatorNotAvailable
            }
        })
    }

    async fn join(
        self: &Rc<Self>,
        partition: i32,
        r: JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
    ) -> JoinGroupResponse {
        let group_id = r.group_id.0.to_string();
        let member_id = r.member_id.to_string();
        let cfg = &self.config;
        if group_id.is_empty() {
            return join_error(ErrorCode::InvalidGroupId, &member_id);
        }
        let session = r.session_timeout_ms as u64;
        if session < cfg.group_min_session_timeout_ms || session > cfg.group_max_session_timeout_ms
        {
            return join_error(ErrorCode::InvalidSessionTimeout, &member_id);
        }
        let rebalance_timeout = if version >= 1 {
            r.rebalance_timeout_ms
        } else {
            r.session_timeout_ms
        };
        let protocols: Vec<(String, Bytes)> = r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        if protocols.is_empty() || r.protocol_type.is_empty() {
            return join_error(ErrorCode::InconsistentGroupProtocol, &member_id);
        }
        let instance_id = r.group_instance_id.as_ref().map(|i| i.to_string());
        let (tx, rx) = oneshot::channel();
        {
            let mut groups = self.groups.groups.borrow_mut();
            let g = groups.entry(group_id.clone()).or_insert_with(Group::new);
            let busy = g.state != GroupState::Empty || !g.members.is_empty();
            let compatible = g.protocol_type == r.protocol_type.as_str()
                && protocols.iter().any(|(n, _)| {
                    g.members
                        .values()
                        .all(|m| m.protocols.iter().any(|(o, _)| o == n))
                });
            if busy && !compatible {
                return join_error(ErrorCode::InconsistentGroupProtocol, &member_id);
            }
            if g.members.len() >= cfg.limits.group_members_max
                && !g.members.contains_key(&member_id)
            {
                return join_error(ErrorCode::GroupMaxSizeReached, &member_id);
            }
            let known_static = instance_id.as_ref().and_then(|i| g.statics.get(i).cloned());
            let id = if member_id.is_empty() {
                let seq = self.groups.member_seq.get() + 1;
                self.groups.member_seq.set(seq);
                let new_id = format!("{client_id}-{}-{seq}-{:08x}", self.id, fastrand::u32(..));
                match (&instance_id, known_static) {
                    (Some(inst), Some(old)) => {
                        // A static member restarted: it takes over its old slot.
                        if let Some(mut m) = g.members.remove(&old) {
                            if let Some(tx) = m.join_tx.take() {
                                let _ = tx.send(join_error(ErrorCode::FencedInstanceId, &old));
                            }
                            if let Some(tx) = m.sync_tx.take() {
                                let _ = tx.send(sync_error(ErrorCode::FencedInstanceId));
                            }
                            m.id = new_id.clone();
                            m.last_heartbeat = Instant::now();
                            let same = m.protocols == protocols;
                            m.protocols = protocols.clone();
                            if g.leader == old {
                                g.leader = new_id.clone();
                            }
                            g.members.insert(new_id.clone(), m);
                            g.statics.insert(inst.clone(), new_id.clone());
                            if g.state == GroupState::Stable && same {
                                // No rebalance: the member gets the current generation and,
                                // at SyncGroup, its old assignment.
                                return JoinGroupResponse::default()
                                    .with_generation_id(g.generation)
                                    .with_protocol_type(Some(s(&g.protocol_type)))
                                    .with_protocol_name(Some(s(&g.protocol)))
                                    .with_leader(s(&g.leader))
                                    .with_member_id(s(&new_id));
                            }
                        }
                        new_id
                    }
                    (None, _) if version >= 4 => {
                        // KIP-394: the member id is handed out first; the member rejoins
                        // with it.
                        if g.pending.len() >= cfg.limits.group_members_max {
                            return join_error(ErrorCode::GroupMaxSizeReached, &member_id);
                        }
                        g.pending.insert(new_id.clone());
                        return join_error(ErrorCode::MemberIdRequired, &new_id);
                    }
                    _ => new_id,
                }
            } else {
                if !g.members.contains_key(&member_id) && !g.pending.contains(&member_id) {
                    return join_error(ErrorCode::UnknownMemberId, &member_id);
                }
                if let (Some(inst), Some(owner)) = (&instance_id, &known_static) {
                    if *owner != member_id {
                        return join_error(ErrorCode::FencedInstanceId, &member_id);
                    }
                    let _ = inst;
                }
                member_id.clone()
            };
            g.pending.remove(&id);
            let existing = g.members.get(&id).map(|m| m.protocols == protocols);
            if let (Some(true), GroupState::Stable | GroupState::CompletingRebalance) =
                (existing, g.state)
            {
                if g.leader != id || g.state == GroupState::CompletingRebalance {
                    // A follower rejoining with the same metadata: nothing to rebalance.
                    let m = g.members.get_mut(&id).expect("member present");
                    m.last_heartbeat = Instant::now();
                    return JoinGroupResponse::default()
                        .with_generation_id(g.generation)
                        .with_protocol_type(Some(s(&g.protocol_type)))
                        .with_protocol_name(Some(s(&g.protocol)))
                        .with_leader(s(&g.leader))
                        .with_member_id(s(&id));
                }
            }
            let member = g.members.entry(id.clone()).or_insert_with(|| Member {
                id: id.clone(),
                instance_id: instance_id.clone(),
                client_id: client_id.clone(),
                client_host: client_host.clone(),
                session_timeout: Duration::from_millis(session),
                rebalance_timeout: Duration::from_millis(rebalance_timeout.max(0) as u64),
                protocols: protocols.clone(),
                assignment: Bytes::new(),
                last_heartbeat: Instant::now(),
                join_tx: None,
                sync_tx: None,
            });
            member.protocols = protocols;
            member.session_timeout = Duration::from_millis(session);
            member.rebalance_timeout = Duration::from_millis(rebalance_timeout.max(0) as u64);
            member.last_heartbeat = Instant::now();
            if let Some(old) = member.join_tx.replace(tx) {
                let _ = old.send(join_error(ErrorCode::UnknownMemberId, &id));
            }
            if let Some(inst) = &instance_id {
                g.statics.insert(inst.clone(), id.clone());
            }
            if g.protocol_type.is_empty() || g.members.len() == 1 {
                g.protocol_type = r.protocol_type.to_string();
            }
        }
        self.prepare_rebalance(partition, &group_id, false);
        self.try_complete_join(partition, &group_id);
        rx.await
            .unwrap_or_else(|_| join_error(ErrorCode::UnknownMemberId, &member_id))
    }

    /// Moves the group to PreparingRebalance (if it is not there) and arms the timer that
    /// ends the join phase with whoever rejoined.
    fn prepare_rebalance(self: &Rc<Self>, partition: i32, group_id: &str, force: bool) {
        let (id, wait) = {
            let mut groups = self.groups.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else {
                return;
            };
            if g.members.is_empty() {
                // The last member left or expired: nothing to rebalance.
                if g.state != GroupState::Empty {
                    g.state = GroupState::Empty;
                    g.generation += 1;
                    g.rebalance_id += 1;
                    g.leader.clear();
                    info!(
                        group = group_id,
                        generation = g.generation,
                        "group is empty"
                    );
                }
                return;
            }
            if g.state == GroupState::PreparingRebalance && !force {
                return;
            }
            let was_empty = g.state == GroupState::Empty;
            g.state = GroupState::PreparingRebalance;
            g.rebalance_id += 1;
            g.rebalance_started = Instant::now();
            // Members that wait on SyncGroup of the old generation must rejoin.
            for m in g.members.values_mut() {
                if let Some(tx) = m.sync_tx.take() {
                    let _ = tx.send(sync_error(ErrorCode::RebalanceInProgress));
                }
            }
            let timeout = g
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default();
            let wait = if was_empty {
                Duration::from_millis(self.config.group_initial_rebalance_delay_ms)
            } else {
                timeout
            };
            (g.rebalance_id, wait)
        };
        let me = self.clone();
        let group_id = group_id.to_string();
        runtime::spawn(async move {
            runtime::sleep(wait).await;
            me.complete_join(partition, &group_id, id, true);
        });
    }

    /// Ends the join phase when every member has rejoined (and an empty group's initial
    /// delay has passed).
    fn try_complete_join(self: &Rc<Self>, partition: i32, group_id: &str) {
        let (ready, id) = {
            let groups = self.groups.groups.borrow();
            let Some(g) = groups.get(group_id) else {
                return;
            };
            // A new group waits out the initial delay so members starting together join
            // one generation; later rebalances end as soon as every member is back.
            let delay_over = g.generation > 0
                || g.rebalance_started.elapsed()
                    >= Duration::from_millis(self.config.group_initial_rebalance_delay_ms);
            let all = !g.members.is_empty() && g.members.values().all(|m| m.join_tx.is_some());
            (
                g.state == GroupState::PreparingRebalance && all && delay_over,
                g.rebalance_id,
            )
        };
        if ready {
            self.complete_join(partition, group_id, id, false);
        }
    }

    fn complete_join(
        self: &Rc<Self>,
        partition: i32,
        group_id: &str,
        rebalance_id: u64,
        timer: bool,
    ) {
        let mut groups = self.groups.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            return;
        };
        if g.state != GroupState::PreparingRebalance || g.rebalance_id != rebalance_id {
            return;
        }
        if !timer && g.members.values().any(|m| m.join_tx.is_none()) {
            return;
        }
        // Members that did not rejoin in time leave the group.
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.join_tx.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            if let Some(m) = g.members.remove(id) {
                if let Some(inst) = &m.instance_id {
                    g.statics.remove(inst);
                }
            }
        }
        g.generation += 1;
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.leader.clear();
            info!(
                group = group_id,
                generation = g.generation,
                "group is empty"
            );
            return;
        }
        // Protocol: each member votes for its most preferred protocol every member supports.
        let candidates: Vec<String> = g
            .members
            .values()
            .next()
            .map(|m| {
                m.protocols
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<String>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                g.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(o, _)| o == n))
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in g.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        g.protocol = votes
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default();
        if !g.members.contains_key(&g.leader) {
            g.leader = g.members.keys().next().cloned().unwrap_or_default();
        }
        g.state = GroupState::CompletingRebalance;
        g.rebalance_started = Instant::now();
        let all: Vec<JoinGroupResponseMember> = g
            .members
            .values()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(s(&m.id))
                    .with_group_instance_id(m.instance_id.as_deref().map(s))
                    .with_metadata(m.metadata_for(&g.protocol))
            })
            .collect();
        info!(group = group_id, generation = g.generation, members = g.members.len(),
            protocol = %g.protocol, removed = gone.len(), "rebalance: join phase complete");
        let (generation, protocol_type, protocol, leader) = (
            g.generation,
            g.protocol_type.clone(),
            g.protocol.clone(),
            g.leader.clone(),
        );
        for m in g.members.values_mut() {
            m.last_heartbeat = Instant::now();
            m.assignment = Bytes::new();
            let Some(tx) = m.join_tx.take() else { continue };
            let response = JoinGroupResponse::default()
                .with_generation_id(generation)
                .with_protocol_type(Some(s(&protocol_type)))
                .with_protocol_name(Some(s(&protocol)))
                .with_leader(s(&leader))
                .with_member_id(s(&m.id))
                .with_members(if m.id == leader {
                    all.clone()
                } else {
                    Vec::new()
                });
            let _ = tx.send(response);
        }
        // If the leader never sends SyncGroup, start over after the rebalance timeout.
        let timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        let id = g.rebalance_id;
        drop(groups);
        let me = self.clone();
        let group_id = group_id.to_string();
        runtime::spawn(async move {
            runtime::sleep(timeout).await;
            let stuck = me.groups.groups.borrow().get(&group_id).is_some_and(|g| {
                g.state == GroupState::CompletingRebalance && g.rebalance_id == id
            });
            if stuck {
                warn!(group = %group_id, "the leader sent no assignment in time; rebalancing again");
                me.prepare_rebalance(partition, &group_id, true);
            }
        });
    }

    /// Checks member id, generation and static fencing.
    fn check_member(
        g: &Group,
        member_id: &str,
        generation: i32,
        instance: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if let Some(inst) = instance {
            if let Some(owner) = g.statics.get(inst) {
                if owner != member_id {
                    return Err(ErrorCode::FencedInstanceId);
                }
            }
        }
        if !g.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != g.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    async fn sync(self: &Rc<Self>, partition: i32, r: SyncGroupRequest) -> SyncGroupResponse {
        let group_id = r.group_id.0.to_string();
        let member_id = r.member_id.to_string();
        let (tx, rx) = oneshot::channel();
        let persist = {
            let mut groups = self.groups.groups.borrow_mut();
            let Some(g) = groups.get_mut(&group_id) else {
                return sync_error(ErrorCode::UnknownMemberId);
            };
            if let Err(code) = Self::check_member(
                g,
                &member_id,
                r.generation_id,
                r.group_instance_id.as_deref(),
            ) {
                return sync_error(code);
            }
            match g.state {
                GroupState::Empty => return sync_error(ErrorCode::UnknownMemberId),
                GroupState::PreparingRebalance => {
                    return sync_error(ErrorCode::RebalanceInProgress)
                }
                GroupState::Stable => {
                    let m = &g.members[&member_id];
                    return SyncGroupResponse::default()
                        .with_protocol_type(Some(s(&g.protocol_type)))
                        .with_protocol_name(Some(s(&g.protocol)))
                        .with_assignment(m.assignment.clone());
                }
                GroupState::CompletingRebalance => {}
            }
            if let Some(m) = g.members.get_mut(&member_id) {
                m.sync_tx = Some(tx);
                m.last_heartbeat = Instant::now();
            }
            if member_id == g.leader {
                for a in &r.assignments {
                    if let Some(m) = g.members.get_mut(a.member_id.as_str()) {
                        m.assignment = a.assignment.clone();
                    }
                }
                Some((g.generation, g.stored(&group_id)))
            } else {
                None
            }
        };
        if let Some((generation, record)) = persist {
            let result = self.persist(partition, vec![record]).await;
            let mut groups = self.groups.groups.borrow_mut();
            if let Some(g) = groups.get_mut(&group_id) {
                if g.generation == generation && g.state == GroupState::CompletingRebalance {
                    match result {
                        Ok(()) => {
                            g.state = GroupState::Stable;
                            info!(group = %group_id, generation, "rebalance complete");
                            for m in g.members.values_mut() {
                                if let Some(tx) = m.sync_tx.take() {
                                    let _ = tx.send(
                                        SyncGroupResponse::default()
                                            .with_protocol_type(Some(s(&g.protocol_type)))
                                            .with_protocol_name(Some(s(&g.protocol)))
                                            .with_assignment(m.assignment.clone()),
                                    );
                                }
                            }
                        }
                        Err(code) => {
                            for m in g.members.values_mut() {
                                if let Some(tx) = m.sync_tx.take() {
                                    let _ = tx.send(sync_error(code));
                                }
                            }
                        }
                    }
                }
            }
        }
        rx.await
            .unwrap_or_else(|_| sync_error(ErrorCode::RebalanceInProgress))
    }

    fn heartbeat(&self, r: HeartbeatRequest) -> HeartbeatResponse {
        let code = {
            let mut groups = self.groups.groups.borrow_mut();
            match groups.get_mut(r.group_id.0.as_str()) {
                None => ErrorCode::UnknownMemberId,
                Some(g) => match Self::check_member(
                    g,
                    &r.member_id,
                    r.generation_id,
                    r.group_instance_id.as_deref(),
                ) {
                    Err(code) => code,
                    Ok(()) => {
                        if let Some(m) = g.members.get_mut(r.member_id.as_str()) {
                            m.last_heartbeat = Instant::now();
                        }
                        match g.state {
                            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
                            _ => ErrorCode::None,
                        }
                    }
                },
            }
        };
        HeartbeatResponse::default().with_error_code(code.code())
    }

    fn leave(
        self: &Rc<Self>,
        partition: i32,
        r: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        let group_id = r.group_id.0.to_string();
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            r.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(r.member_id.to_string(), None)]
        };
        let mut results = Vec::new();
        let mut removed = false;
        {
            let mut groups = self.groups.groups.borrow_mut();
            let Some(g) = groups.get_mut(&group_id) else {
                return LeaveGroupResponse::default()
                    .with_error_code(ErrorCode::UnknownMemberId.code());
            };
            for (member_id, instance) in leaving {
                let id = match (&instance, member_id.is_empty()) {
                    (Some(inst), true) => g.statics.get(inst).cloned().unwrap_or_default(),
                    _ => member_id.clone(),
                };
                let code = match g.members.remove(&id) {
                    Some(mut m) => {
                        if let Some(inst) = &m.instance_id {
                            g.statics.remove(inst);
                        }
                        if let Some(tx) = m.join_tx.take() {
                            let _ = tx.send(join_error(ErrorCode::UnknownMemberId, &id));
                        }
                        removed = true;
                        info!(group = %group_id, member = %id, "member left the group");
                        ErrorCode::None
                    }
                    None => ErrorCode::UnknownMemberId,
                };
                results.push(
                    leave_group_response::MemberResponse::default()
                        .with_member_id(s(&member_id))
                        .with_group_instance_id(instance.as_deref().map(s))
                        .with_error_code(code.code()),
                );
            }
        }
        if removed {
            self.prepare_rebalance(partition, &group_id, false);
            self.try_complete_join(partition, &group_id);
        }
        if version >= 3 {
            LeaveGroupResponse::default().with_members(results)
        } else {
            let code = results.first().map_or(0, |m| m.error_code);
            LeaveGroupResponse::default().with_error_code(code)
        }
    }

    /// Removes members whose session expired; called by the shard's ticker.
    pub fn expire_group_members(self: &Rc<Self>) {
        let mut expired: Vec<(String, i32)> = Vec::new();
        {
            let mut groups = self.groups.groups.borrow_mut();
            let Some(partitions) = self.snapshot().topic(OFFSETS_TOPIC).map(|t| t.partitions)
            else {
                return;
            };
            for (id, g) in groups.iter_mut() {
                let dead: Vec<String> = g
                    .members
                    .values()
                    .filter(|m| {
                        m.join_tx.is_none() && m.last_heartbeat.elapsed() > m.session_timeout
                    })
                    .map(|m| m.id.clone())
                    .collect();
                for member in &dead {
                    if let Some(mut m) = g.members.remove(member) {
                        if let Some(inst) = &m.instance_id {
                            g.statics.remove(inst);
                        }
                        if let Some(tx) = m.sync_tx.take() {
                            let _ = tx.send(sync_error(ErrorCode::UnknownMemberId));
                        }
                        info!(group = %id, member = %member, "member session expired");
                    }
                }
                if !dead.is_empty() {
                    expired.push((id.clone(), offsets_partition(id, partitions)));
                }
            }
        }
        for (group, partition) in expired {
            self.prepare_rebalance(partition, &group, false);
            self.try_complete_join(partition, &group);
        }
    }

    async fn commit(
        self: &Rc<Self>,
        partition: i32,
        r: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
        let group_id = r.group_id.0.to_string();
        let member_id = r.member_id.to_string();
        let generation = r.generation_id_or_member_epoch;
        let respond = |codes: &dyn Fn(&str, i32) -> ErrorCode| {
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(
                                                codes(&t.name.0, p.partition_index).code(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        };
        let check = {
            let mut groups = self.groups.groups.borrow_mut();
            let g = groups.entry(group_id.clone()).or_insert_with(Group::new);
            if generation < 0 && member_id.is_empty() {
                // A standalone commit (a consumer using assign()).
                if g.members.is_empty() {
                    Ok(())
                } else {
                    Err(ErrorCode::UnknownMemberId)
                }
            } else {
                Self::check_member(g, &member_id, generation, r.group_instance_id.as_deref())
                    .and_then(|_| {
                        // Members of the current generation may still commit while the
                        // group prepares a rebalance (consumers commit as they give up
                        // partitions); only the window between join and sync is closed.
                        if g.state == GroupState::CompletingRebalance {
                            Err(ErrorCode::RebalanceInProgress)
                        } else {
                            Ok(())
                        }
                    })
            }
        };
        if let Err(code) = check {
            return respond(&|_, _| code);
        }
        let now = runtime::now_ms();
        let mut records = Vec::new();
        let mut too_large: HashSet<(String, i32)> = HashSet::new();
        for t in &r.topics {
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_deref().unwrap_or("").to_string();
                if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                    too_large.insert((t.name.0.to_string(), p.partition_index));
                    continue;
                }
                records.push(StoredRecord::Offset {
                    group: group_id.clone(),
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_ms: now,
                });
            }
        }
        let result = self.persist(partition, records.clone()).await;
        if result.is_ok() {
            for rec in records {
                self.replay(rec);
            }
        }
        respond(&|topic, p| {
            if too_large.contains(&(topic.to_string(), p)) {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                result.err().unwrap_or(ErrorCode::None)
            }
        })
    }

    fn fetch_offsets(
        &self,
        group: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, i32, Committed)> {
        let groups = self.groups.groups.borrow();
        let none = Committed {
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let g = groups.get(group);
        match topics {
            None => g
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            Some(topics) => topics
                .into_iter()
                .flat_map(|(t, parts)| {
                    parts.into_iter().map({
                        let t = t.clone();
                        let none = none.clone();
                        move |p| {
                            let c = g
                                .and_then(|g| g.offsets.get(&(t.clone(), p)).cloned())
                                .unwrap_or_else(|| none.clone());
                            (t.clone(), p, c)
                        }
                    })
                })
                .collect(),
        }
    }

    fn describe_group(&self, group: &str) -> DescribedGroup {
        let groups = self.groups.groups.borrow();
        let base = DescribedGroup::default().with_group_id(GroupId(s(group)));
        let Some(g) = groups.get(group) else {
            return base.with_group_state(s("Dead"));
        };
        base.with_group_state(s(g.state.name()))
            .with_protocol_type(s(&g.protocol_type))
            .with_protocol_data(s(&g.protocol))
            .with_members(
                g.members
                    .values()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(s(&m.id))
                            .with_group_instance_id(m.instance_id.as_deref().map(s))
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host))
                            .with_member_metadata(m.metadata_for(&g.protocol))
                            .with_member_assignment(m.assignment.clone())
                    })
                    .collect(),
            )
    }

    async fn delete_group(&self, partition: i32, group: &str) -> ErrorCode {
        {
            let groups = self.groups.groups.borrow();
            match groups.get(group) {
                None => return ErrorCode::GroupIdNotFound,
                Some(g) if !g.members.is_empty() => return ErrorCode::NonEmptyGroup,
                Some(_) => {}
            }
        }
        let record = StoredRecord::GroupDeleted {
            group: group.to_string(),
        };
        match self.persist(partition, vec![record.clone()]).await {
            Ok(()) => {
                self.replay(record);
                info!(group, "group deleted");
                ErrorCode::None
            }
            Err(code) => code,
        }
    }

    async fn offset_delete(&self, partition: i32, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
        use offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
        let group = r.group_id.0.to_string();
        let subscribed = {
            let groups = self.groups.groups.borrow();
            match groups.get(&group) {
                None => {
                    return OffsetDeleteResponse::default()
                        .with_error_code(ErrorCode::GroupIdNotFound.code())
                }
                Some(g) => g.subscribed_topics(),
            }
        };
        let mut records = Vec::new();
        for t in &r.topics {
            if subscribed.contains(t.name.0.as_str()) {
                continue;
            }
            for p in &t.partitions {
                records.push(StoredRecord::OffsetDeleted {
                    group: group.clone(),
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                });
            }
        }
        let result = self.persist(partition, records.clone()).await;
        if result.is_ok() {
            for rec in records {
                self.replay(rec);
            }
        }
        OffsetDeleteResponse::default()
            .with_error_code(result.err().unwrap_or(ErrorCode::None).code())
            .with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        let code = if subscribed.contains(t.name.0.as_str()) {
                            ErrorCode::GroupSubscribedToTopic
                        } else {
                            ErrorCode::None
                        };
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_kafkas_hashing() {
        // Java: "my-group".hashCode() == -1906497762; Kafka masks the sign bit: % 50 == 36.
        assert_eq!(offsets_partition("my-group", 50), 36);
        // A negative hashCode is masked, not negated.
        let h = "polygenelubricants"
            .encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(h, i32::MIN);
        assert_eq!(offsets_partition("polygenelubricants", 50), 0);
        assert_eq!(offsets_partition("", 50), 0);
    }

    #[test]
    fn stored_records_round_trip() {
        let r = StoredRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            offset: 42,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_ms: 1,
        };
        assert_eq!(StoredRecord::decode(&r.encode()).unwrap(), r);
        assert_ne!(
            r.key(),
            StoredRecord::GroupDeleted { group: "g".into() }.key()
        );
    }
}
