//! The coordinator of the groups whose offsets partitions this shard owns: routing, the
//! classic protocol, offsets, and the records that make them durable.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use rill_net::client::{decode_record_batches, encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::kafka_protocol::messages::describe_groups_response::DescribedGroup;
use rill_net::kafka_protocol::messages::list_groups_response::ListedGroup;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use tracing::{info, warn};
use uuid::Uuid;

use super::classic::{
    self, join_error, sync_error, ClassicGroup, GroupState, Join, Output, Synced, Ticket,
};
use super::consumer as cg;
use super::records::{consumer_records, offsets_partition, StoredRecord};
use crate::metadata::{BrokerInfo, NewTopic, OFFSETS_TOPIC};
use crate::partition::Reader;
use crate::runtime;
use crate::shard::{Lane, Shard};

/// Segment size of `__consumer_offsets` (Kafka: offsets.topic.segment.bytes).
const OFFSETS_SEGMENT_BYTES: u64 = 16 << 20;
/// Largest offset metadata string accepted (Kafka's `offset.metadata.max.bytes`).
const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// One group on its coordinator: a classic group or a KIP-848 one, and its committed offsets.
#[derive(Default)]
struct Group {
    /// The classic protocol's state (without members while this is a KIP-848 group).
    classic: ClassicGroup,
    /// Set when this is a KIP-848 consumer group.
    consumer: Option<cg::ConsumerGroup>,
    offsets: BTreeMap<(String, i32), Committed>,
}

/// The group `id`, created if there is room for one more (`limits.groups_per_shard_max`).
fn group_entry<'a>(
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

/// Topics the members subscribe to, for OffsetDelete.
fn subscribed_topics(g: &Group) -> HashSet<String> {
    let Some(c) = &g.consumer else {
        return g.classic.subscribed_topics();
    };
    let mut out = HashSet::new();
    for m in c.members.values() {
        out.extend(m.topics.iter().cloned());
    }
    out.extend(c.topics_seen.keys().cloned());
    out
}

/// Group writes waiting for their offsets partition's writer, per partition.
const GROUP_WRITES_QUEUED_MAX: usize = 4096;
/// Records per appended batch (several requests' records share one batch and fdatasync).
const WRITE_BATCH_RECORDS_MAX: usize = 1000;

/// Records of one request waiting to be appended.
struct PendingWrite {
    records: Vec<StoredRecord>,
    /// The offset of the first record, once durable.
    reply: oneshot::Sender<Result<i64, ErrorCode>>,
}

/// The write queue of one `__consumer_offsets` partition.
#[derive(Default)]
struct PartitionWriter {
    queue: std::collections::VecDeque<PendingWrite>,
    /// A writer task is draining the queue.
    running: bool,
    /// Bytes appended (or replayed) since the last checkpoint.
    bytes_since_checkpoint: u64,
    /// Size of the last checkpoint: the next one waits for at least this much more.
    checkpoint_bytes: u64,
}

/// The coordinator state of one shard.
#[derive(Default)]
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
    /// `__consumer_offsets` partitions replayed into `groups`.
    loaded: RefCell<HashSet<i32>>,
    load_lock: async_lock::Mutex<()>,
    member_seq: Cell<u64>,
    /// Classic JoinGroup and SyncGroup requests waiting for the state machine's answer (at
    /// most one of each per member).
    parked: RefCell<HashMap<Ticket, Parked>>,
    next_ticket: Cell<u64>,
    /// A KIP-848 expiry pass is running (at most one at a time).
    consumer_expiry_running: Cell<bool>,
    /// Ordered writers of the offsets partitions this shard coordinates.
    writers: RefCell<HashMap<i32, PartitionWriter>>,
    /// Topics as the KIP-848 assignors see them, with the registry version they come from.
    #[allow(clippy::type_complexity)]
    topics_cache: RefCell<Option<(u64, Rc<BTreeMap<String, cg::TopicMeta>>)>>,
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
    state: Rc<Coordinator>,
}

impl std::ops::Deref for Groups {
    type Target = Shard;

    fn deref(&self) -> &Shard {
        &self.shard
    }
}

/// How often group member sessions are checked for expiry.
const GROUP_SESSION_CHECK: Duration = Duration::from_millis(100);

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
    Join(JoinGroupRequest, i16, String, String),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest, i16),
    Commit(OffsetCommitRequest, i16),
    Fetch {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
        /// KIP-848 members fetch with their id and epoch (OffsetFetch v9).
        member: Option<(String, i32)>,
    },
    ConsumerHeartbeat(ConsumerGroupHeartbeatRequest, i16, String, String),
    ConsumerDescribe(String),
    Describe(String),
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
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerDescribe(consumer_group_describe_response::DescribedGroup),
    Describe(DescribedGroup),
    Delete(ErrorCode),
    OffsetDelete(OffsetDeleteResponse),
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Groups {
    /// The coordinator shard and offsets partition of `group`, creating the offsets topic
    /// on first use.
    pub async fn coordinator_of(&self, group: &str) -> Result<(usize, i32), ErrorCode> {
        let partitions = match self.image().topic(OFFSETS_TOPIC) {
            Some(t) => t.partition_count(),
            None => {
                // Offsets stay until a checkpoint replaces them (retention would drop live
                // offsets); small segments let the replaced records leave the disk soon.
                let configs = vec![
                    ("retention.ms".to_string(), "-1".to_string()),
                    (
                        "segment.bytes".to_string(),
                        OFFSETS_SEGMENT_BYTES.to_string(),
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
                        return Err(ErrorCode::CoordinatorNotAvailable);
                    }
                }
                self.image()
                    .topic(OFFSETS_TOPIC)
                    .map(|t| t.partition_count())
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
    pub async fn group_op(&self, group: &str, op: GroupOp) -> Result<GroupReply, ErrorCode> {
        // Kafka refuses the empty group id everywhere (an OffsetCommit would otherwise
        // create a nameless group).
        if group.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        let (owner, partition) = self.coordinator_of(group).await?;
        // The leader of the group's offsets partition coordinates it; clients that reached
        // another broker look it up again.
        let leader = self
            .image()
            .placement(OFFSETS_TOPIC, partition)
            .map(|p| p.leader);
        if leader != Some(self.node_id()) {
            return Err(ErrorCode::NotCoordinator);
        }
        self.shard
            .ask(owner, Lane::Control, move |shard: Rc<Shard>| async move {
                Groups::of(&shard).run_group_op(partition, op).await
            })
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
    }

    /// The broker coordinating `group` (creating the offsets topic on first use): the
    /// leader of the group's offsets partition.
    pub async fn group_coordinator(&self, group: &str) -> Result<BrokerInfo, ErrorCode> {
        let (_, partition) = self.coordinator_of(group).await?;
        let image = self.image();
        let leader = image
            .placement(OFFSETS_TOPIC, partition)
            .map(|p| p.leader)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        image
            .live_brokers()
            .into_iter()
            .find(|b| b.id == leader)
            .ok_or(ErrorCode::CoordinatorNotAvailable)
    }

    /// ListGroups over every shard.
    pub async fn list_groups(&self) -> Vec<ListedGroup> {
        self.shard
            .ask_all(|shard: Rc<Shard>| async move { Groups::of(&shard).listed_groups() })
            .await
            .into_iter()
            .flatten()
            .collect()
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
    pub async fn run_group_op(&self, partition: i32, op: GroupOp) -> Result<GroupReply, ErrorCode> {
        self.load_groups(partition).await?;
        Ok(match op {
            GroupOp::Join(r, v, client_id, host) => {
                GroupReply::Join(self.join(partition, r, v, client_id, host).await)
            }
            GroupOp::Sync(r) => GroupReply::Sync(self.sync(partition, r).await),
            GroupOp::Heartbeat(r) => GroupReply::Heartbeat(self.heartbeat(r)),
            GroupOp::Leave(r, v) => GroupReply::Leave(self.leave(partition, r, v)),
            GroupOp::Commit(r, v) => GroupReply::Commit(self.commit(partition, r, v).await),
            GroupOp::Fetch {
                group,
                topics,
                member,
            } => GroupReply::Fetch(self.fetch_offsets(&group, topics, member)),
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

    /// Replays `__consumer_offsets` partition `p` into the group state, once.
    async fn load_groups(&self, p: i32) -> Result<(), ErrorCode> {
        if self.state.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let _one = self.state.load_lock.lock().await;
        if self.state.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let started = Instant::now();
        let mut offset = 0;
        let mut records = 0u64;
        let mut replayed_bytes = 0u64;
        let Some(log) = self.partition(OFFSETS_TOPIC, p) else {
            warn!(
                partition = p,
                "cannot load consumer groups: the offsets partition is not open here"
            );
            return Err(ErrorCode::CoordinatorLoadInProgress);
        };
        loop {
            let data: Vec<Bytes> = match log.read(Reader::Internal, offset, 1 << 20).await {
                Ok(batches) => batches,
                Err(e)
                    if e.code == ErrorCode::OffsetOutOfRange
                        && offset < log.offsets().log_start_offset =>
                {
                    offset = log.offsets().log_start_offset;
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
            let mut decoded = Vec::new();
            for batch in &data {
                replayed_bytes += batch.len() as u64;
                decoded.extend(decode_record_batches(batch).map_err(|e| {
                    warn!(partition = p, error = %e, "damaged record in the offsets topic");
                    ErrorCode::CoordinatorNotAvailable
                })?);
            }
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
        self.state.loaded.borrow_mut().insert(p);
        // A long log gets a checkpoint with the next write.
        self.state
            .writers
            .borrow_mut()
            .entry(p)
            .or_default()
            .bytes_since_checkpoint += replayed_bytes;
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

    /// Applies a stored record to the group state. Requests parked in a classic group that
    /// the record replaces or deletes are dropped (they answer as on a coordinator move).
    fn replay(&self, r: StoredRecord) {
        let mut abandoned = Vec::new();
        let mut groups = self.state.groups.borrow_mut();
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
                groups.entry(group).or_default().offsets.insert(
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
                leader,
                members,
            } => {
                let g = groups.entry(group).or_default();
                abandoned.extend(g.classic.parked());
                g.consumer = None;
                g.classic.restore(
                    protocol_type,
                    protocol,
                    generation,
                    leader,
                    members,
                    Instant::now(),
                );
            }
            StoredRecord::GroupDeleted { group } => {
                if let Some(g) = groups.remove(&group) {
                    abandoned.extend(g.classic.parked());
                }
            }
            StoredRecord::ConsumerGroup { group, meta } => {
                let g = groups.entry(group).or_default();
                let c = g.consumer.get_or_insert_with(Default::default);
                c.epoch = meta.epoch;
                c.assignment_epoch = meta.assignment_epoch;
                c.assignor = meta.assignor;
                c.topics_seen = meta
                    .topics
                    .into_iter()
                    .map(|(name, id, partitions)| {
                        (
                            name,
                            cg::TopicMeta {
                                id: Uuid::from_bytes(id),
                                partitions,
                            },
                        )
                    })
                    .collect();
            }
            StoredRecord::ConsumerMember { group, member } => {
                let g = groups.entry(group.clone()).or_default();
                let c = g.consumer.get_or_insert_with(Default::default);
                let id = member.member_id.clone();
                if let Err(e) = c.restore_member(member.restore(Instant::now()), Instant::now()) {
                    warn!(group = %group, member = %id, error = %e, "cannot restore a consumer group member; it will rejoin");
                }
            }
            StoredRecord::ConsumerMemberRemoved { group, member_id } => {
                if let Some(c) = groups.get_mut(&group).and_then(|g| g.consumer.as_mut()) {
                    c.remove_restored(&member_id);
                }
            }
        }
        drop(groups);
        let mut parked = self.state.parked.borrow_mut();
        for t in abandoned {
            parked.remove(&t);
        }
    }

    /// Appends `records` to the offsets partition and waits until they are durable.
    ///
    /// The records join the partition's write queue before this returns its future's first
    /// poll, so records reach the log in the order the coordinator computed them (callers
    /// compute and call this without an await in between): the last record of a key in the
    /// log is always its latest state, which is what replay and checkpoints rely on.
    async fn persist(&self, partition: i32, records: Vec<StoredRecord>) -> Result<(), ErrorCode> {
        if records.is_empty() {
            return Ok(());
        }
        let rx = self.enqueue_write(partition, records)?;
        rx.await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
            .map(|_| ())
    }

    fn enqueue_write(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
    ) -> Result<oneshot::Receiver<Result<i64, ErrorCode>>, ErrorCode> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut writers = self.state.writers.borrow_mut();
            let w = writers.entry(partition).or_default();
            if w.queue.len() >= GROUP_WRITES_QUEUED_MAX {
                warn!(
                    partition,
                    queued = w.queue.len(),
                    "the consumer group write queue is full; answering COORDINATOR_NOT_AVAILABLE (clients retry)"
                );
                return Err(ErrorCode::CoordinatorNotAvailable);
            }
            w.queue.push_back(PendingWrite { records, reply: tx });
            !std::mem::replace(&mut w.running, true)
        };
        if start {
            let me = self.clone();
            runtime::spawn(async move { me.write_loop(partition).await });
        }
        Ok(rx)
    }

    /// The one writer of offsets partition `partition`: appends queued records in order,
    /// several requests' records per batch (one fdatasync covers them), and writes a
    /// checkpoint when enough has been appended since the last one.
    async fn write_loop(self, partition: i32) {
        loop {
            let due = self
                .state
                .writers
                .borrow()
                .get(&partition)
                .is_some_and(|w| {
                    w.bytes_since_checkpoint
                        > self
                            .config()
                            .offsets_checkpoint_bytes
                            .max(w.checkpoint_bytes)
                });
            if due && self.state.loaded.borrow().contains(&partition) {
                self.checkpoint(partition).await;
            }
            let batch: Vec<PendingWrite> = {
                let mut writers = self.state.writers.borrow_mut();
                let w = writers.entry(partition).or_default();
                let mut out = Vec::new();
                let mut count = 0;
                while let Some(next) = w.queue.front() {
                    if !out.is_empty() && count + next.records.len() > WRITE_BATCH_RECORDS_MAX {
                        break;
                    }
                    count += next.records.len();
                    out.push(w.queue.pop_front().expect("front exists"));
                }
                if out.is_empty() {
                    w.running = false;
                    return;
                }
                out
            };
            let records: Vec<&StoredRecord> = batch.iter().flat_map(|w| w.records.iter()).collect();
            match self.append_records(partition, &records).await {
                Ok((base, bytes)) => {
                    if let Some(w) = self.state.writers.borrow_mut().get_mut(&partition) {
                        w.bytes_since_checkpoint += bytes;
                    }
                    // Offsets and deletions take effect once durable, here, before anything
                    // else runs: a checkpoint computed next must include them, or it would
                    // delete their records without carrying them forward.
                    for w in &batch {
                        for r in &w.records {
                            if matches!(
                                r,
                                StoredRecord::Offset { .. }
                                    | StoredRecord::OffsetDeleted { .. }
                                    | StoredRecord::GroupDeleted { .. }
                            ) {
                                self.replay(r.clone());
                            }
                        }
                    }
                    let mut offset = base;
                    for w in batch {
                        let _ = w.reply.send(Ok(offset));
                        offset += w.records.len() as i64;
                    }
                }
                Err(code) => {
                    for w in batch {
                        let _ = w.reply.send(Err(code));
                    }
                }
            }
        }
    }

    /// Appends one batch of `records` with acks=all; returns its base offset and size.
    async fn append_records(
        &self,
        partition: i32,
        records: &[&StoredRecord],
    ) -> Result<(i64, u64), ErrorCode> {
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
        let bytes = data.len() as u64;
        let Some(log) = self.partition(OFFSETS_TOPIC, partition) else {
            warn!(
                partition,
                "cannot persist group records: the offsets partition is not open here"
            );
            return Err(ErrorCode::CoordinatorNotAvailable);
        };
        let lag_max = Duration::from_millis(self.config().replica_lag_time_max_ms);
        let batches = crate::partition::split_batches(data).map_err(|e| {
            warn!(error = ?e, "group records encoded into a bad batch");
            ErrorCode::UnknownServerError
        })?;
        match log.produce(batches, -1, lag_max).await {
            Ok(produced) => Ok((produced.base_offset, bytes)),
            Err(e) => {
                warn!(group = records[0].group(), error = ?e, "cannot persist group records");
                Err(if e.code == ErrorCode::MessageTooLarge {
                    ErrorCode::OffsetMetadataTooLarge
                } else {
                    ErrorCode::CoordinatorNotAvailable
                })
            }
        }
    }

    /// Writes the whole state of the groups on `partition` (every group record and committed
    /// offset) as new records, then deletes everything before them: the partition stops
    /// growing with every commit, and a restart replays at most a checkpoint plus what came
    /// after it. Runs inside the partition's writer, so nothing is appended in between.
    async fn checkpoint(&self, partition: i32) {
        let started = Instant::now();
        let Some(partitions) = self
            .image()
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partition_count())
        else {
            return;
        };
        let records = self.state_records(partition, partitions);
        let mut first: Option<i64> = None;
        let mut bytes = 0;
        for chunk in records.chunks(WRITE_BATCH_RECORDS_MAX) {
            let refs: Vec<&StoredRecord> = chunk.iter().collect();
            match self.append_records(partition, &refs).await {
                Ok((base, b)) => {
                    first.get_or_insert(base);
                    bytes += b;
                }
                Err(code) => {
                    warn!(
                        partition,
                        ?code,
                        "consumer group checkpoint failed; will retry after more writes"
                    );
                    if let Some(w) = self.state.writers.borrow_mut().get_mut(&partition) {
                        w.bytes_since_checkpoint = 0;
                    }
                    return;
                }
            }
        }
        // Nothing before the checkpoint is needed any more (an empty partition state
        // deletes up to the log end).
        let Some(log) = self.partition(OFFSETS_TOPIC, partition) else {
            return;
        };
        let upto = first.unwrap_or_else(|| log.offsets().high_watermark);
        if let Err(e) = log.delete_records(Some(upto)).await {
            warn!(partition, error = ?e, "cannot delete records before the group checkpoint");
        }
        if let Some(w) = self.state.writers.borrow_mut().get_mut(&partition) {
            w.bytes_since_checkpoint = 0;
            w.checkpoint_bytes = bytes;
        }
        info!(
            partition,
            records = records.len(),
            bytes,
            log_start_offset = upto,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "consumer group checkpoint written; older records deleted"
        );
    }

    /// Every record needed to rebuild the groups of `partition` from nothing.
    fn state_records(&self, partition: i32, partitions: i32) -> Vec<StoredRecord> {
        let groups = self.state.groups.borrow();
        let now = runtime::now_ms();
        let mut out = Vec::new();
        let mut ids: Vec<&String> = groups
            .keys()
            .filter(|id| offsets_partition(id, partitions) == partition)
            .collect();
        ids.sort();
        for id in ids {
            let g = &groups[id];
            if let Some(c) = &g.consumer {
                let changes = cg::Changes {
                    group: true,
                    members: c.members.keys().cloned().collect(),
                    removed: Default::default(),
                };
                out.extend(consumer_records(id, c, &changes));
            } else {
                out.extend(g.classic.checkpoint(id));
            }
            for ((topic, p), c) in &g.offsets {
                out.push(StoredRecord::Offset {
                    group: id.clone(),
                    topic: topic.clone(),
                    partition: *p,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_ms: now,
                });
            }
        }
        out
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
        let rx = answer.is_none().then(|| {
            let (tx, rx) = oneshot::channel();
            self.state
                .parked
                .borrow_mut()
                .insert(ticket, Parked::Join(tx));
            rx
        });
        self.carry_out(partition, &group_id, out);
        match (answer, rx) {
            (Some(answer), _) => answer,
            (None, Some(rx)) => rx
                .await
                .unwrap_or_else(|_| join_error(ErrorCode::UnknownMemberId, &member_id)),
            (None, None) => unreachable!("a parked join has a channel"),
        }
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
        self.expire_consumer_members();
        let Some(partitions) = self
            .image()
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partition_count())
        else {
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

    /// Every topic as the KIP-848 assignors see it (rebuilt only when the registry changes,
    /// not per heartbeat).
    fn assignable_topics(&self) -> Rc<BTreeMap<String, cg::TopicMeta>> {
        let snap = self.image();
        if let Some((version, topics)) = &*self.state.topics_cache.borrow() {
            if *version == snap.version {
                return topics.clone();
            }
        }
        let topics: Rc<BTreeMap<String, cg::TopicMeta>> = Rc::new(
            snap.topics
                .values()
                .map(|t| {
                    (
                        t.name.to_string(),
                        cg::TopicMeta {
                            id: t.id,
                            partitions: t.partition_count(),
                        },
                    )
                })
                .collect(),
        );
        *self.state.topics_cache.borrow_mut() = Some((snap.version, topics.clone()));
        topics
    }

    fn consumer_context<'a>(
        &'a self,
        topics: &'a BTreeMap<String, cg::TopicMeta>,
    ) -> cg::Context<'a> {
        cg::Context {
            now: Instant::now(),
            topics,
            session_timeout: Duration::from_millis(self.config().consumer_group_session_timeout_ms),
            heartbeat_interval_ms: self.config().consumer_group_heartbeat_interval_ms as i32,
            members_max: self.config().limits.group_members_max,
            default_assignor: &self.config().consumer_group_assignor,
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848): join, reconcile, leave.
    async fn consumer_heartbeat(
        &self,
        partition: i32,
        r: ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: String,
        client_host: String,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = r.group_id.0.to_string();
        let fail = |code: ErrorCode, message: String| {
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(s(&message)))
                .with_member_epoch(-1)
        };
        let mut member_id = r.member_id.to_string();
        if member_id.is_empty() && version == 0 && r.member_epoch == 0 {
            // v0: the coordinator names new members (v1 clients name themselves).
            member_id = Uuid::from_u128(fastrand::u128(..)).simple().to_string();
        }
        let hb = cg::Heartbeat {
            member_id,
            member_epoch: r.member_epoch,
            instance_id: r.instance_id.as_ref().map(|v| v.to_string()),
            rack_id: r.rack_id.as_ref().map(|v| v.to_string()),
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            topics: r
                .subscribed_topic_names
                .as_ref()
                .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
            regex: r.subscribed_topic_regex.as_ref().map(|v| v.to_string()),
            assignor: r.server_assignor.as_ref().map(|v| v.to_string()),
            owned: r.topic_partitions.as_ref().map(|tps| {
                tps.iter()
                    .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
                    .collect()
            }),
            client_id,
            client_host,
        };
        let topics = self.assignable_topics();
        let ctx = self.consumer_context(&topics);
        let (reply, records) = {
            let mut groups = self.state.groups.borrow_mut();
            let g = match group_entry(
                &mut groups,
                &group_id,
                self.config().limits.groups_per_shard_max,
            ) {
                Ok(g) => g,
                Err(code) => {
                    return fail(
                        code,
                        "this coordinator has limits.groups_per_shard_max groups".to_string(),
                    )
                }
            };
            if g.consumer.is_none() {
                if g.classic.has_members() {
                    return fail(
                        ErrorCode::GroupIdNotFound,
                        format!("group {group_id} is a classic group with members"),
                    );
                }
                g.consumer = Some(cg::ConsumerGroup::default());
            }
            let c = g.consumer.as_mut().expect("set above");
            let mut changes = cg::Changes::default();
            let before = (c.epoch, c.members.len());
            match c.heartbeat(hb, &ctx, &mut changes) {
                Ok(reply) => {
                    if before != (c.epoch, c.members.len()) {
                        info!(group = %group_id, epoch = c.epoch, members = c.members.len(),
                            assignor = %c.assignor, "consumer group epoch moved");
                    }
                    (reply, consumer_records(&group_id, c, &changes))
                }
                Err((code, message)) => return fail(code, message),
            }
        };
        if let Err(code) = self.persist(partition, records).await {
            return fail(
                code,
                "cannot write the group state to __consumer_offsets".to_string(),
            );
        }
        let assignment = reply.assignment.map(|a| {
            consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
                a.into_iter()
                    .map(|(t, ps)| {
                        consumer_group_heartbeat_response::TopicPartitions::default()
                            .with_topic_id(t)
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        });
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s(&reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(ctx.heartbeat_interval_ms)
            .with_assignment(assignment)
    }

    /// ConsumerGroupDescribe of one group this shard coordinates.
    fn consumer_describe(&self, group: &str) -> consumer_group_describe_response::DescribedGroup {
        use consumer_group_describe_response::{
            Assignment as DAssignment, DescribedGroup as D, Member as DMember,
            TopicPartitions as DTp,
        };
        let base = D::default().with_group_id(GroupId(s(group)));
        let groups = self.state.groups.borrow();
        let Some(g) = groups.get(group) else {
            return base
                .with_error_code(ErrorCode::GroupIdNotFound.code())
                .with_error_message(Some(s(&format!("group {group} does not exist"))))
                .with_group_state(s("Dead"));
        };
        let Some(c) = &g.consumer else {
            return base
                .with_error_code(ErrorCode::GroupIdNotFound.code())
                .with_error_message(Some(s(&format!("group {group} is not a consumer group"))))
                .with_group_state(s("Dead"));
        };
        let snap = self.image();
        let describe = |a: &cg::Assignment| {
            DAssignment::default().with_topic_partitions(
                a.iter()
                    .map(|(t, ps)| {
                        DTp::default()
                            .with_topic_id(*t)
                            .with_topic_name(TopicName(s(&snap
                                .topic_by_id(*t)
                                .map(|i| i.name.to_string())
                                .unwrap_or_default())))
                            .with_partitions(ps.iter().copied().collect())
                    })
                    .collect(),
            )
        };
        base.with_group_state(s(cg::state_name(c)))
            .with_group_epoch(c.epoch)
            .with_assignment_epoch(c.assignment_epoch)
            .with_assignor_name(s(&c.assignor))
            .with_authorized_operations(i32::MIN)
            .with_members(
                c.members
                    .values()
                    .map(|m| {
                        DMember::default()
                            .with_member_id(s(&m.id))
                            .with_instance_id(m.instance_id.as_deref().map(s))
                            .with_rack_id(m.rack_id.as_deref().map(s))
                            .with_member_epoch(m.epoch)
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host))
                            .with_subscribed_topic_names(
                                m.topics.iter().map(|t| TopicName(s(t))).collect(),
                            )
                            .with_subscribed_topic_regex(m.regex.as_deref().map(s))
                            .with_assignment(describe(&m.assigned))
                            .with_target_assignment(describe(&m.target))
                    })
                    .collect(),
            )
    }

    /// Kafka's check of a commit or offset fetch by a KIP-848 member: a standalone client
    /// (no member id, negative epoch) only while the group is empty, a member only at its
    /// current epoch.
    fn check_consumer_member(
        c: &cg::ConsumerGroup,
        member_id: &str,
        epoch: i32,
        version: i16,
    ) -> Result<(), ErrorCode> {
        if member_id.is_empty() && epoch < 0 {
            return if c.members.is_empty() {
                Ok(())
            } else {
                Err(ErrorCode::UnknownMemberId)
            };
        }
        let Some(m) = c.members.get(member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        if m.epoch != epoch {
            return Err(if version >= 9 {
                ErrorCode::StaleMemberEpoch
            } else {
                ErrorCode::IllegalGeneration
            });
        }
        Ok(())
    }

    /// Removes KIP-848 members whose session ran out, and persists that, in a background
    /// task. Each group's change is computed right before its write starts, so a heartbeat
    /// that comes in meanwhile cannot be overtaken by an older state of its group.
    fn expire_consumer_members(&self) {
        if self.state.consumer_expiry_running.get() {
            return;
        }
        let topics = self.assignable_topics();
        let due: Vec<String> = {
            let ctx = self.consumer_context(&topics);
            self.state
                .groups
                .borrow()
                .iter()
                .filter(|(_, g)| {
                    g.consumer
                        .as_ref()
                        .is_some_and(|c| !c.expired(&ctx).is_empty())
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        let Some(partitions) = self
            .image()
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partition_count())
        else {
            return;
        };
        if due.is_empty() {
            return;
        }
        self.state.consumer_expiry_running.set(true);
        let me = self.clone();
        runtime::spawn(async move {
            for id in due {
                let records = {
                    let topics = me.assignable_topics();
                    let ctx = me.consumer_context(&topics);
                    let mut groups = me.state.groups.borrow_mut();
                    let Some(c) = groups.get_mut(&id).and_then(|g| g.consumer.as_mut()) else {
                        continue;
                    };
                    let mut changes = cg::Changes::default();
                    let dead = c.expire(&ctx, &mut changes);
                    if dead.is_empty() {
                        continue;
                    }
                    info!(group = %id, members = ?dead, epoch = c.epoch,
                        "consumer group members expired (session or rebalance timeout)");
                    consumer_records(&id, c, &changes)
                };
                // A failure is logged inside; the group's next change writes its state again.
                let _ = me
                    .persist(offsets_partition(&id, partitions), records)
                    .await;
            }
            me.state.consumer_expiry_running.set(false);
        });
    }

    async fn commit(
        &self,
        partition: i32,
        r: OffsetCommitRequest,
        version: i16,
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
            let mut groups = self.state.groups.borrow_mut();
            match group_entry(
                &mut groups,
                &group_id,
                self.config().limits.groups_per_shard_max,
            ) {
                Err(code) => Err(code),
                Ok(g) => {
                    if let Some(c) = &g.consumer {
                        Self::check_consumer_member(c, &member_id, generation, version)
                    } else if generation < 0 && member_id.is_empty() {
                        // A standalone commit (a consumer using assign()).
                        if g.classic.has_members() {
                            Err(ErrorCode::UnknownMemberId)
                        } else {
                            Ok(())
                        }
                    } else {
                        g.classic
                            .check_member(&member_id, generation, r.group_instance_id.as_deref())
                            .and_then(|_| {
                                // Members of the current generation may still commit while the
                                // group prepares a rebalance (consumers commit as they give up
                                // partitions); only the window between join and sync is closed.
                                if g.classic.state() == GroupState::CompletingRebalance {
                                    Err(ErrorCode::RebalanceInProgress)
                                } else {
                                    Ok(())
                                }
                            })
                    }
                }
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
        // The writer applies the offsets to the group once they are durable.
        let result = self.persist(partition, records).await;
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
        member: Option<(String, i32)>,
    ) -> Result<Vec<(String, i32, Committed)>, ErrorCode> {
        let groups = self.state.groups.borrow();
        if let (Some((id, epoch)), Some(c)) =
            (&member, groups.get(group).and_then(|g| g.consumer.as_ref()))
        {
            Self::check_consumer_member(c, id, *epoch, 9)?;
        }
        let none = Committed {
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let g = groups.get(group);
        Ok(match topics {
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

    async fn delete_group(&self, partition: i32, group: &str) -> ErrorCode {
        {
            let groups = self.state.groups.borrow();
            match groups.get(group) {
                None => return ErrorCode::GroupIdNotFound,
                Some(g) if g.classic.has_members() => return ErrorCode::NonEmptyGroup,
                Some(Group {
                    consumer: Some(c), ..
                }) if !c.members.is_empty() => return ErrorCode::NonEmptyGroup,
                Some(_) => {}
            }
        }
        let record = StoredRecord::GroupDeleted {
            group: group.to_string(),
        };
        match self.persist(partition, vec![record]).await {
            Ok(()) => {
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
            let groups = self.state.groups.borrow();
            match groups.get(&group) {
                None => {
                    return OffsetDeleteResponse::default()
                        .with_error_code(ErrorCode::GroupIdNotFound.code())
                }
                Some(g) => subscribed_topics(g),
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
        let result = self.persist(partition, records).await;
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
