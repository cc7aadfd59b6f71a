//! One shard: the partitions it owns, its view of the metadata, and the messages it exchanges
//! with the other shards.
//!
//! Every partition belongs to exactly one shard ([`crate::metadata::owner_shard`]). A request
//! that reaches another shard's connection travels to the owner as a [`ShardMsg`] over a
//! bounded channel, with record data as `Bytes` (never copied), and the answer comes back on a
//! oneshot. Shard 0 also owns the topic registry: admin operations go there, and it hands the
//! new [`Snapshot`] to every shard before the operation is answered, so a client that saw its
//! CreateTopics succeed finds the topic on whichever shard its next connection lands.
//!
//! All of this state is owned by one executor thread (`Rc`, `RefCell`); no `RefCell` borrow
//! is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_channel::oneshot;
use rill_net::ErrorCode;
use rill_storage::{batch, DmaBackend, FileBudget, PartitionLog};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::errors::KafkaError;
use crate::fetch::FetchSessions;
use crate::metadata::{
    self, check_topic_name, owner_shard, partition_dir, RegistryFile, Snapshot, TopicInfo,
    TopicRecord,
};
use crate::metrics::{HostSample, MetricsSnapshot, PartitionSample, ShardMetrics};
use crate::producer::{Check, ProducerTable};
use crate::runtime::{self, Peers};
use crate::topic_config::{self, TimestampType, TopicSettings};

/// `PartitionOp::Fetch::replica` of the broker's own reads (group loading) that go to the
/// log end without being a follower.
pub const READ_TO_LOG_END: i32 = -2;

/// Cluster mode: producer ids are `node_id << PRODUCER_ID_NODE_SHIFT | n` (2^40 per broker).
const PRODUCER_ID_NODE_SHIFT: u32 = 40;

/// A partition's name on the wire.
pub type PartitionKey = (Arc<str>, i32);

/// Work on one partition, executed by its owner shard.
#[derive(Debug)]
pub enum PartitionOp {
    /// Append `batch` (one or more record batches of one produce partition).
    Produce { batch: Bytes, acks: i16 },
    /// Read whole batches from `offset`, up to `max_bytes` (at least one batch).
    /// `replica` is the fetching follower's broker id (-1 for a consumer), which reads up
    /// to the log end instead of the high watermark and is recorded by the leader.
    Fetch {
        offset: i64,
        max_bytes: usize,
        replica: i32,
    },
    /// ListOffsets: -1 latest, -2 earliest, -3 max timestamp, else by timestamp.
    ListOffsets { timestamp: i64 },
    /// DeleteRecords before `offset` (-1: the high watermark).
    DeleteRecords { offset: i64 },
    /// Only the offsets (a fetch past its response byte limit).
    Peek,
}

/// A partition's offsets as responses report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
}

impl Offsets {
    pub const UNKNOWN: Offsets = Offsets {
        log_start_offset: -1,
        high_watermark: -1,
    };
}

#[derive(Debug)]
pub enum OpOk {
    Produced {
        base_offset: i64,
        log_append_time: i64,
    },
    Fetched {
        records: Bytes,
    },
    Offset {
        offset: i64,
        timestamp: i64,
    },
    LowWatermark(i64),
}

/// The answer to a [`PartitionOp`].
#[derive(Debug)]
pub struct PartitionReply {
    pub offsets: Offsets,
    pub result: Result<OpOk, KafkaError>,
}

impl PartitionReply {
    fn err(e: KafkaError) -> PartitionReply {
        PartitionReply {
            offsets: Offsets::UNKNOWN,
            result: Err(e),
        }
    }
}

/// A change to a topic's config overrides.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// AlterConfigs: the overrides become exactly these.
    Replace(Vec<(String, String)>),
    /// IncrementalAlterConfigs: (name, op, value) with op 0 SET, 1 DELETE, 2 APPEND,
    /// 3 SUBTRACT.
    Incremental(Vec<(String, i8, Option<String>)>),
}

/// Registry changes, executed by shard 0.
#[derive(Debug)]
pub enum AdminOp {
    CreateTopic {
        name: String,
        partitions: i32,
        configs: Vec<(String, String)>,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        validate_only: bool,
    },
    AlterConfigs {
        name: String,
        change: ConfigChange,
        validate_only: bool,
    },
    /// Broker-wide topic config defaults (AlterConfigs on the broker resource); names are
    /// the broker-level ones (`log.retention.ms`).
    AlterBrokerConfigs {
        change: ConfigChange,
        validate_only: bool,
    },
    AllocateProducerId,
    /// Cluster mode: the registry's topics become the cluster's.
    SyncCluster {
        /// The broker-level topic defaults the cluster sets for this broker (its own
        /// over the cluster-wide ones), topic config names.
        broker_configs: Vec<(String, String)>,
        topics: Vec<TopicRecord>,
    },
}

#[derive(Debug)]
pub enum AdminOk {
    Topic(Arc<TopicInfo>),
    ProducerId(i64),
    BrokerConfigs,
}

pub type AdminReply = Result<AdminOk, KafkaError>;

/// What shards send each other.
#[derive(Debug)]
pub enum ShardMsg {
    Partition {
        topic: Arc<str>,
        partition: i32,
        op: PartitionOp,
        reply: oneshot::Sender<PartitionReply>,
    },
    /// Answer once any of `parts` (topic, partition, fetch offset) has data past its offset,
    /// or after `timeout`; `false` when the owner had no room to park the wait.
    Wait {
        parts: Vec<(Arc<str>, i32, i64)>,
        /// A follower waits for the log end, a consumer for the high watermark.
        replica: bool,
        timeout: Duration,
        reply: oneshot::Sender<bool>,
    },
    Admin {
        op: AdminOp,
        reply: oneshot::Sender<AdminReply>,
    },
    Apply {
        snapshot: Arc<Snapshot>,
        reply: oneshot::Sender<()>,
    },
    /// Consumer group work for the coordinator of `__consumer_offsets` partition
    /// `partition` (-1 for ListGroups, which every shard answers).
    Group {
        partition: i32,
        op: Box<crate::group::GroupOp>,
        reply: oneshot::Sender<Result<crate::group::GroupReply, ErrorCode>>,
    },
    /// A metrics scrape asks each shard for its figures.
    Metrics {
        reply: oneshot::Sender<MetricsSnapshot>,
    },
}

/// One partition, on its owner shard.
pub struct Partition {
    pub topic_id: Uuid,
    pub log: PartitionLog<DmaBackend>,
    settings: RefCell<TopicSettings>,
    /// Notified on every append, for parked long-poll fetches.
    data: Event,
    /// A background write or sync is running (the tick does not pile up another).
    io_running: Cell<bool>,
    /// Idempotent producers' recent batches; checked and updated under `produce_lock`.
    producers: RefCell<ProducerTable>,
    produce_lock: async_lock::Mutex<()>,
    /// Whether `producers` was rebuilt from the log since this partition opened.
    producers_rebuilt: Cell<bool>,
    /// Cluster mode: leader and follower replication state (None on a single node, where
    /// the high watermark is the log end).
    pub(crate) repl: Option<RefCell<crate::replica::Replication>>,
}

impl Partition {
    fn offsets(&self) -> Offsets {
        Offsets {
            log_start_offset: self.log.log_start_offset(),
            high_watermark: self.high_watermark(),
        }
    }

    /// Offsets below this are on every in-sync replica: what consumers may read.
    pub(crate) fn high_watermark(&self) -> i64 {
        let end = self.log.log_end_offset();
        match &self.repl {
            Some(r) => r.borrow().hw.min(end),
            None => end,
        }
    }

    /// Where a reader's view of the log ends: followers read to the log end.
    fn visible_end(&self, replica: bool) -> i64 {
        if replica {
            self.log.log_end_offset()
        } else {
            self.high_watermark()
        }
    }

    /// Resolves at the next [`Partition::notify`].
    pub(crate) fn data_listener(&self) -> event_listener::EventListener {
        self.data.listen()
    }

    /// Wakes long polls and acks=all producers waiting on this partition.
    pub(crate) fn notify(&self) {
        self.data.notify(usize::MAX);
    }

    /// A follower's append went around the idempotence table: rebuild it from the log
    /// before this broker, as leader, next checks a producer's sequence.
    pub(crate) fn forget_producers(&self) {
        self.producers_rebuilt.set(false);
    }
}

/// The registry, on shard 0 only.
struct Registry {
    file: RefCell<RegistryFile>,
    version: Cell<u64>,
    /// One admin operation at a time, from validation to every shard applying it.
    lock: async_lock::Mutex<()>,
    /// Cluster mode: the raft index whose topics the registry holds, and whether a sync
    /// to a newer one is running.
    cluster_synced: Cell<u64>,
    cluster_syncing: Cell<bool>,
}

type PartitionMap = HashMap<Arc<str>, BTreeMap<i32, Rc<Partition>>>;

/// The state of one shard.
pub struct Shard {
    pub id: usize,
    pub shards: usize,
    pub config: Arc<BrokerConfig>,
    /// The `rill.toml` topic defaults (the run-time ones are in the snapshot).
    file_defaults: BTreeMap<String, String>,
    snapshot: RefCell<Arc<Snapshot>>,
    partitions: RefCell<PartitionMap>,
    peers: Peers,
    budget: Rc<FileBudget>,
    registry: Option<Registry>,
    pub fetch_sessions: RefCell<FetchSessions>,
    /// Long-poll waits parked on this shard's partitions.
    waiters: Cell<usize>,
    /// Bytes of requests read and not yet answered, across this shard's connections.
    pub inflight_bytes: Rc<crate::runtime::ByteBudget>,
    /// Open client connections on this shard.
    pub connections: Cell<usize>,
    pub metrics: ShardMetrics,
    /// Consumer groups this shard coordinates.
    pub groups: crate::group::Coordinator,
    /// Host figures for scrapes (used on the scraping shard only).
    host: RefCell<Option<sysinfo::System>>,
    /// Cluster mode: the metadata raft member's published view.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Shard {
    pub fn new(
        id: usize,
        shards: usize,
        config: Arc<BrokerConfig>,
        snapshot: Arc<Snapshot>,
        registry: Option<RegistryFile>,
        peers: Peers,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Shard {
        let file_defaults = config.topic_default_strings();
        let budget = FileBudget::new(config.limits.open_files_max);
        let fetch_sessions = FetchSessions::new(id, config.limits.fetch_sessions_max);
        let inflight_bytes = Rc::new(crate::runtime::ByteBudget::new(
            config.limits.inflight_request_bytes_max,
        ));
        Shard {
            id,
            shards,
            file_defaults,
            registry: registry.map(|file| Registry {
                version: Cell::new(snapshot.version),
                file: RefCell::new(file),
                lock: async_lock::Mutex::new(()),
                cluster_synced: Cell::new(u64::MAX),
                cluster_syncing: Cell::new(false),
            }),
            snapshot: RefCell::new(snapshot),
            partitions: RefCell::new(HashMap::new()),
            peers,
            budget,
            fetch_sessions: RefCell::new(fetch_sessions),
            waiters: Cell::new(0),
            inflight_bytes,
            connections: Cell::new(0),
            metrics: ShardMetrics::default(),
            groups: crate::group::Coordinator::default(),
            host: RefCell::new(None),
            cluster,
            config,
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(topic)
            .and_then(|m| m.get(&partition))
            .cloned()
    }

    /// Every partition this shard owns (a copy, so callers may await while walking it).
    pub(crate) fn owned(&self) -> Vec<(PartitionKey, Rc<Partition>)> {
        let parts = self.partitions.borrow();
        let mut out = Vec::new();
        for (topic, m) in parts.iter() {
            for (p, v) in m {
                out.push(((topic.clone(), *p), v.clone()));
            }
        }
        out
    }

    /// The shard owning `partition` of `topic`, or why there is none.
    pub fn owner_of(&self, topic: &str, partition: i32) -> Result<usize, KafkaError> {
        let snap = self.snapshot.borrow();
        let info = snap
            .topic(topic)
            .ok_or_else(|| KafkaError::unknown_topic(topic))?;
        if partition < 0 || partition >= info.partitions {
            return Err(KafkaError::unknown_partition(topic, partition));
        }
        Ok(owner_shard(info.id, partition, self.shards))
    }

    /// Cluster mode: clients produce to and fetch from a partition's leader only; anyone
    /// else answers NOT_LEADER_OR_FOLLOWER, and the client refreshes its metadata.
    fn check_leader(&self, topic: &str, partition: i32) -> Result<(), KafkaError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let view = cluster.view();
        match view.partition(topic, partition) {
            Some(p) if p.leader != self.config.node_id => Err(KafkaError::new(
                ErrorCode::NotLeaderOrFollower,
                format!(
                    "broker {} does not lead {topic}-{partition} (leader {}, epoch {})",
                    self.config.node_id, p.leader, p.leader_epoch
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Runs `op` on the partition's owner, here or on another shard.
    pub async fn partition_op(
        self: &Rc<Self>,
        topic: &Arc<str>,
        partition: i32,
        op: PartitionOp,
    ) -> PartitionReply {
        let owner = match self.owner_of(topic, partition) {
            Ok(owner) => owner,
            Err(e) => return PartitionReply::err(e),
        };
        if let Err(e) = self.check_leader(topic, partition) {
            return PartitionReply::err(e);
        }
        if owner == self.id {
            return self.execute(topic, partition, op).await;
        }
        let (tx, rx) = oneshot::channel();
        let msg = ShardMsg::Partition {
            topic: topic.clone(),
            partition,
            op,
            reply: tx,
        };
        if self.peers.send(owner, msg).await.is_err() {
            return PartitionReply::err(shutting_down());
        }
        rx.await
            .unwrap_or_else(|_| PartitionReply::err(shutting_down()))
    }

    pub(crate) async fn execute(
        &self,
        topic: &str,
        partition: i32,
        op: PartitionOp,
    ) -> PartitionReply {
        let Some(p) = self.partition(topic, partition) else {
            return PartitionReply::err(KafkaError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("partition {topic}-{partition} is not open on its shard yet"),
            ));
        };
        let result = match op {
            PartitionOp::Produce { batch, acks } => {
                self.produce(topic, partition, &p, batch, acks).await
            }
            PartitionOp::Fetch {
                offset,
                max_bytes,
                replica,
            } => {
                if replica >= 0 {
                    if let Err(e) = self.follower_fetched(topic, partition, &p, replica, offset) {
                        return PartitionReply {
                            offsets: p.offsets(),
                            result: Err(e),
                        };
                    }
                }
                let visible = p.visible_end(replica != -1);
                let started = Instant::now();
                let read = if offset >= visible && offset <= p.log.log_end_offset() {
                    // Consumers wait at the high watermark for the followers.
                    Ok(rill_storage::LogRead::default())
                } else {
                    p.log.read(offset, max_bytes).await
                };
                self.metrics.read(started.elapsed());
                read.map(|mut r| {
                    // Consumers see only what every in-sync replica holds (a read past the
                    // high watermark only happens while followers catch up).
                    if visible < p.log.log_end_offset() {
                        r.batches.retain(|b| {
                            batch::BatchHeader::parse(b).is_ok_and(|h| {
                                h.base_offset + i64::from(h.last_offset_delta) < visible
                            })
                        });
                    }
                    OpOk::Fetched {
                        records: r.concat(),
                    }
                })
                .map_err(KafkaError::from)
            }
            PartitionOp::ListOffsets { timestamp } => list_offsets(&p, timestamp).await,
            PartitionOp::Peek => Ok(OpOk::Fetched {
                records: Bytes::new(),
            }),
            PartitionOp::DeleteRecords { offset } => {
                let hw = p.high_watermark();
                let target = if offset == -1 { hw } else { offset };
                if target < 0 || target > hw {
                    Err(KafkaError::new(
                        ErrorCode::OffsetOutOfRange,
                        format!(
                            "cannot delete records before {offset}: the high watermark is {hw}"
                        ),
                    ))
                } else {
                    p.log
                        .delete_records(target)
                        .await
                        .map(OpOk::LowWatermark)
                        .map_err(KafkaError::from)
                }
            }
        };
        PartitionReply {
            offsets: p.offsets(),
            result,
        }
    }

    async fn produce(
        &self,
        topic: &str,
        partition: i32,
        p: &Partition,
        data: Bytes,
        acks: i16,
    ) -> Result<OpOk, KafkaError> {
        let settings = p.settings.borrow().clone();
        // Cluster mode: the partition's placement, read once for the whole request.
        let view = self.cluster.as_ref().map(|c| c.view());
        let placed = match &view {
            Some(view) => Some(
                view.partition(topic, partition)
                    .ok_or_else(|| KafkaError::unknown_partition(topic, partition))?,
            ),
            None => None,
        };
        let leader_epoch = match placed {
            Some(pv) => {
                if acks == -1 && (pv.isr.len() as i64) < settings.min_insync_replicas {
                    return Err(KafkaError::new(
                        ErrorCode::NotEnoughReplicas,
                        format!(
                            "min.insync.replicas is {} but {topic}-{partition} has {} in-sync replicas {:?}",
                            settings.min_insync_replicas,
                            pv.isr.len(),
                            pv.isr
                        ),
                    ));
                }
                pv.leader_epoch
            }
            None => 0,
        };
        if self.cluster.is_none() && acks == -1 && settings.min_insync_replicas > 1 {
            return Err(KafkaError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "min.insync.replicas is {} but this single-node broker has 1 in-sync replica",
                    settings.min_insync_replicas
                ),
            ));
        }
        let mut first_offset = None;
        let mut last_offset = -1;
        let mut log_append_time = -1;
        let mut rest = data;
        let mut sync_due = false;
        {
            // The duplicate check and the append of each batch happen as one step.
            let _order = p.produce_lock.lock().await;
            while !rest.is_empty() {
                let len = batch_len(&rest)?;
                let mut one = rest.split_to(len);
                let header = batch::BatchHeader::parse(&one).map_err(KafkaError::from)?;
                if header.producer_id >= 0 && !p.producers_rebuilt.get() {
                    rebuild_producers(p).await;
                }
                let check = p.producers.borrow().check(&header)?;
                if let Check::Duplicate { base_offset } = check {
                    first_offset.get_or_insert(base_offset);
                    continue;
                }
                if settings.timestamp_type == TimestampType::LogAppendTime {
                    // The producer's CRC is checked before the broker re-stamps the batch.
                    batch::validate(&one).map_err(KafkaError::from)?;
                    let now = runtime::now_ms();
                    let mut buf = BytesMut::from(&one[..]);
                    batch::set_log_append_time(&mut buf, now);
                    one = buf.freeze();
                    log_append_time = now;
                }
                let info = p
                    .log
                    .append(one, leader_epoch)
                    .await
                    .map_err(KafkaError::from)?;
                p.producers.borrow_mut().record(&header, info.base_offset);
                first_offset.get_or_insert(info.base_offset);
                last_offset = info.last_offset;
                sync_due |= info.sync_due;
            }
        }
        if let Some(pv) = placed {
            self.advance_hw(p, pv);
        }
        p.data.notify(usize::MAX);
        // acks=all on a single node means durable; flush.messages / flush.ms can ask for it
        // too. acks=1 waits until the bytes are in the file, which survives kill -9.
        if acks == -1 || sync_due {
            let started = Instant::now();
            p.log.sync().await.map_err(KafkaError::from)?;
            self.metrics.synced(started.elapsed());
        } else if acks == 1 {
            p.log.write_through().await.map_err(KafkaError::from)?;
        }
        if acks == -1 && last_offset >= 0 {
            self.await_replication(topic, partition, p, last_offset)
                .await?;
        }
        Ok(OpOk::Produced {
            base_offset: first_offset.unwrap_or(-1),
            log_append_time,
        })
    }

    /// Waits until one of `parts` has data past its offset, for `timeout` at most. Returns
    /// false at once when this shard already parks `fetch_waiters_max` waits.
    pub async fn wait_for_data(
        self: &Rc<Self>,
        parts: Vec<(Arc<str>, i32, i64)>,
        replica: bool,
        timeout: Duration,
    ) -> bool {
        if self.waiters.get() >= self.config.limits.fetch_waiters_max {
            return false;
        }
        self.waiters.set(self.waiters.get() + 1);
        let _slot = WaiterSlot(self);
        let deadline = Instant::now() + timeout;
        let owned: Vec<(Rc<Partition>, i64)> = parts
            .iter()
            .filter_map(|(t, p, offset)| self.partition(t, *p).map(|p| (p, *offset)))
            .collect();
        if owned.is_empty() {
            runtime::sleep(timeout).await;
            return true;
        }
        loop {
            let listeners: Vec<_> = owned.iter().map(|(p, _)| p.data.listen()).collect();
            if owned.iter().any(|(p, o)| p.visible_end(replica) > *o) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            let any = futures_util::future::select_all(listeners);
            futures_lite::future::or(
                async {
                    any.await;
                },
                runtime::sleep(deadline - now),
            )
            .await;
        }
    }

    /// Waits on the owners of `parts` (any shard) until one has data or `timeout` passes.
    pub async fn wait_anywhere(
        self: &Rc<Self>,
        parts: Vec<(Arc<str>, i32, i64)>,
        replica: bool,
        timeout: Duration,
    ) {
        let mut by_shard: BTreeMap<usize, Vec<(Arc<str>, i32, i64)>> = BTreeMap::new();
        for part in parts {
            if let Ok(owner) = self.owner_of(&part.0, part.1) {
                by_shard.entry(owner).or_default().push(part);
            }
        }
        if by_shard.is_empty() {
            runtime::sleep(timeout).await;
            return;
        }
        let mut waits: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>> = Vec::new();
        for (owner, parts) in by_shard {
            if owner == self.id {
                let me = self.clone();
                waits.push(Box::pin(async move {
                    me.wait_for_data(parts, replica, timeout).await
                }));
            } else {
                let (tx, rx) = oneshot::channel();
                let msg = ShardMsg::Wait {
                    parts,
                    replica,
                    timeout,
                    reply: tx,
                };
                if self.peers.send(owner, msg).await.is_err() {
                    continue;
                }
                waits.push(Box::pin(async move { rx.await.unwrap_or(false) }));
            }
        }
        if waits.is_empty() {
            runtime::sleep(timeout).await;
            return;
        }
        let (parked, _, _) = futures_util::future::select_all(waits).await;
        if !parked {
            // The owner had no room to park us: back off instead of spinning.
            runtime::sleep(timeout.min(Duration::from_millis(20))).await;
        }
    }

    /// Sends to another shard over the bounded mesh.
    pub(crate) async fn peers_send(&self, to: usize, msg: ShardMsg) -> Result<(), ()> {
        self.peers.send(to, msg).await
    }

    /// Handles one message from another shard.
    pub async fn handle_msg(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Partition {
                topic,
                partition,
                op,
                reply,
            } => {
                let r = self.execute(&topic, partition, op).await;
                let _ = reply.send(r);
            }
            ShardMsg::Wait {
                parts,
                replica,
                timeout,
                mut reply,
            } => {
                let cancelled = reply.cancellation();
                let waited =
                    futures_lite::future::or(self.wait_for_data(parts, replica, timeout), async {
                        cancelled.await;
                        true
                    })
                    .await;
                let _ = reply.send(waited);
            }
            ShardMsg::Admin { op, reply } => {
                let r = self.run_admin(op).await;
                let _ = reply.send(r);
            }
            ShardMsg::Apply { snapshot, reply } => {
                self.apply(snapshot).await;
                let _ = reply.send(());
            }
            ShardMsg::Group {
                partition,
                op,
                reply,
            } => {
                let r = self.run_group_op(partition, *op).await;
                let _ = reply.send(r);
            }
            ShardMsg::Metrics { reply } => {
                let _ = reply.send(self.metrics_snapshot());
            }
        }
    }

    /// Runs a registry change on shard 0, from any shard.
    pub async fn admin(self: &Rc<Self>, op: AdminOp) -> AdminReply {
        if self.id == 0 {
            return self.run_admin(op).await;
        }
        let (tx, rx) = oneshot::channel();
        if self
            .peers
            .send(0, ShardMsg::Admin { op, reply: tx })
            .await
            .is_err()
        {
            return Err(shutting_down());
        }
        rx.await.unwrap_or_else(|_| Err(shutting_down()))
    }

    async fn run_admin(self: &Rc<Self>, op: AdminOp) -> AdminReply {
        let Some(reg) = self.registry.as_ref() else {
            return Err(KafkaError::new(
                ErrorCode::NotController,
                "admin operations run on shard 0",
            ));
        };
        let _one_at_a_time = reg.lock.lock().await;
        let mut file = reg.file.borrow().clone();
        let (ok, validate_only) = self.change_registry(&mut file, op)?;
        if validate_only {
            return Ok(ok);
        }
        let encoded = file.encode();
        let path = RegistryFile::path(&self.config.data_dir);
        use rill_storage::Backend;
        DmaBackend::new()
            .write_small_atomic(&path, &encoded)
            .await
            .map_err(|e| {
                error!(error = %e, "cannot write the topic registry");
                KafkaError::new(ErrorCode::KafkaStorageError, e.to_string())
            })?;
        let version = reg.version.get() + 1;
        reg.version.set(version);
        *reg.file.borrow_mut() = file.clone();
        let snapshot = Arc::new(
            Snapshot::build(version, &file, &self.file_defaults)
                .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?,
        );
        self.broadcast(snapshot.clone()).await;
        // Answer with the topic as every shard now sees it.
        Ok(match ok {
            AdminOk::Topic(t) => AdminOk::Topic(snapshot.topic(&t.name).cloned().unwrap_or(t)),
            other => other,
        })
    }

    /// Validates `op` and applies it to `file`; returns the answer and whether to stop
    /// before persisting (validate_only).
    fn change_registry(
        &self,
        file: &mut RegistryFile,
        op: AdminOp,
    ) -> Result<(AdminOk, bool), KafkaError> {
        let limits = &self.config.limits;
        let total_partitions: i64 = file.topics.iter().map(|t| t.partitions as i64).sum();
        let find =
            |file: &RegistryFile, name: &str| file.topics.iter().position(|t| t.name == name);
        let defaults = crate::topic_config::BrokerDefaults {
            file: self.file_defaults.clone(),
            dynamic: file.broker_configs.iter().cloned().collect(),
        };
        let info = |t: &TopicRecord| -> Result<Arc<TopicInfo>, KafkaError> {
            let settings = TopicSettings::resolve(&defaults, &t.configs)
                .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?;
            Ok(Arc::new(TopicInfo {
                name: Arc::from(t.name.as_str()),
                id: Uuid::from_bytes(t.id),
                partitions: t.partitions,
                configs: t.configs.clone(),
                settings,
            }))
        };
        match op {
            AdminOp::CreateTopic {
                name,
                partitions,
                configs,
                validate_only,
            } => {
                check_topic_name(&name)
                    .map_err(|e| KafkaError::new(ErrorCode::InvalidTopicException, e))?;
                if find(file, &name).is_some() {
                    return Err(KafkaError::new(
                        ErrorCode::TopicAlreadyExists,
                        format!("topic `{name}` already exists"),
                    ));
                }
                if partitions < 1 {
                    return Err(KafkaError::new(
                        ErrorCode::InvalidPartitions,
                        format!("number of partitions must be at least 1, not {partitions}"),
                    ));
                }
                if file.topics.len() >= limits.topics_max {
                    return Err(KafkaError::new(
                        ErrorCode::PolicyViolation,
                        format!(
                            "the broker holds {} topics, its limit (limits.topics_max)",
                            file.topics.len()
                        ),
                    ));
                }
                if total_partitions + partitions as i64 > limits.partitions_max as i64 {
                    return Err(partitions_limit(total_partitions, limits.partitions_max));
                }
                let configs = check_configs(configs)?;
                let record = TopicRecord {
                    name,
                    id: metadata::new_topic_id(),
                    partitions,
                    configs,
                };
                let t = info(&record)?;
                if !validate_only {
                    info!(topic = %record.name, partitions, "topic created");
                    file.topics.push(record);
                }
                Ok((AdminOk::Topic(t), validate_only))
            }
            AdminOp::DeleteTopic { name } => {
                let i = find(file, &name).ok_or_else(|| KafkaError::unknown_topic(&name))?;
                let record = file.topics.remove(i);
                info!(topic = %name, "topic deleted");
                Ok((AdminOk::Topic(info(&record)?), false))
            }
            AdminOp::CreatePartitions {
                name,
                count,
                validate_only,
            } => {
                let i = find(file, &name).ok_or_else(|| KafkaError::unknown_topic(&name))?;
                let current = file.topics[i].partitions;
                if count <= current {
                    return Err(KafkaError::new(
                        ErrorCode::InvalidPartitions,
                        format!(
                            "topic `{name}` has {current} partitions; the new count must be \
                             larger, not {count}"
                        ),
                    ));
                }
                if total_partitions + (count - current) as i64 > limits.partitions_max as i64 {
                    return Err(partitions_limit(total_partitions, limits.partitions_max));
                }
                if !validate_only {
                    file.topics[i].partitions = count;
                    info!(topic = %name, from = current, to = count, "partitions added");
                }
                let mut record = file.topics[i].clone();
                record.partitions = count;
                Ok((AdminOk::Topic(info(&record)?), validate_only))
            }
            AdminOp::AlterConfigs {
                name,
                change,
                validate_only,
            } => {
                let i = find(file, &name).ok_or_else(|| KafkaError::unknown_topic(&name))?;
                let current = file.topics[i].configs.clone();
                let next = check_configs(apply_change(current, change)?)?;
                let mut record = file.topics[i].clone();
                record.configs = next;
                let t = info(&record)?;
                if !validate_only {
                    info!(topic = %name, configs = ?record.configs, "topic configs changed");
                    file.topics[i] = record;
                }
                Ok((AdminOk::Topic(t), validate_only))
            }
            AdminOp::AlterBrokerConfigs {
                change,
                validate_only,
            } => {
                let change = broker_names_to_topic_names(change)?;
                let next = check_configs(apply_change(file.broker_configs.clone(), change)?)?;
                // Every topic must still resolve with the new defaults.
                let defaults = crate::topic_config::BrokerDefaults {
                    file: self.file_defaults.clone(),
                    dynamic: next.iter().cloned().collect(),
                };
                for t in &file.topics {
                    TopicSettings::resolve(&defaults, &t.configs).map_err(|e| {
                        KafkaError::new(ErrorCode::InvalidConfig, format!("topic {}: {e}", t.name))
                    })?;
                }
                if !validate_only {
                    info!(configs = ?next, "broker topic defaults changed");
                    file.broker_configs = next;
                }
                Ok((AdminOk::BrokerConfigs, validate_only))
            }
            AdminOp::SyncCluster {
                topics,
                broker_configs,
            } => {
                if file.broker_configs != broker_configs {
                    info!(configs = ?broker_configs, "broker topic defaults changed in the cluster");
                    file.broker_configs = broker_configs;
                }
                // Every topic is the cluster's, __consumer_offsets included.
                let mut next: Vec<TopicRecord> = Vec::new();
                for t in topics {
                    // A topic the cluster has but this broker cannot open is logged and
                    // left out, not a reason to stop following the cluster.
                    if let Err(e) = info(&t) {
                        warn!(topic = %t.name, error = ?e, "cluster topic with settings this broker refuses");
                        continue;
                    }
                    next.push(t);
                }
                let before: BTreeMap<&str, ([u8; 16], i32)> = file
                    .topics
                    .iter()
                    .map(|t| (t.name.as_str(), (t.id, t.partitions)))
                    .collect();
                for t in &next {
                    match before.get(t.name.as_str()) {
                        None => {
                            info!(topic = %t.name, partitions = t.partitions, "cluster topic added here")
                        }
                        Some((id, _)) if *id != t.id => {
                            info!(topic = %t.name, "cluster topic recreated")
                        }
                        Some((_, n)) if *n != t.partitions => {
                            info!(topic = %t.name, from = n, to = t.partitions, "cluster topic partitions added here")
                        }
                        _ => {}
                    }
                }
                file.topics = next;
                Ok((AdminOk::BrokerConfigs, false))
            }
            AdminOp::AllocateProducerId => {
                let local = file.next_producer_id;
                file.next_producer_id += 1;
                // Cluster mode: a producer may move to another leader, whose duplicate
                // check must not mistake it for one that broker handed out itself. Each
                // broker hands out its own range (node id in the high bits), as Kafka's
                // controller-issued id blocks do.
                let id = if self.cluster.is_some() {
                    (i64::from(self.config.node_id) << PRODUCER_ID_NODE_SHIFT)
                        | (local & ((1 << PRODUCER_ID_NODE_SHIFT) - 1))
                } else {
                    local
                };
                Ok((AdminOk::ProducerId(id), false))
            }
        }
    }

    /// Hands `snapshot` to every shard (this one included) and waits until all applied it.
    async fn broadcast(self: &Rc<Self>, snapshot: Arc<Snapshot>) {
        let mut waits = Vec::new();
        for to in 0..self.shards {
            if to == self.id {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let msg = ShardMsg::Apply {
                snapshot: snapshot.clone(),
                reply: tx,
            };
            if self.peers.send(to, msg).await.is_ok() {
                waits.push(rx);
            }
        }
        self.apply(snapshot).await;
        for rx in waits {
            let _ = rx.await;
        }
    }

    /// Makes this shard's partitions match `snapshot`: opens partitions it now owns, applies
    /// changed configs, closes and deletes partitions of deleted topics.
    pub async fn apply(&self, snapshot: Arc<Snapshot>) {
        // Open first, then publish the snapshot, so a request routed by the new view finds
        // its partition open.
        let mut to_open = Vec::new();
        for t in snapshot.topics.values() {
            for p in 0..t.partitions {
                if owner_shard(t.id, p, self.shards) == self.id
                    && self.partition(&t.name, p).is_none()
                {
                    to_open.push((t.clone(), p));
                }
            }
        }
        for chunk in to_open.chunks(32) {
            let opens = chunk.iter().map(|(t, p)| self.open_partition(t, *p));
            let opened = futures_util::future::join_all(opens).await;
            let mut parts = self.partitions.borrow_mut();
            for ((t, p), opened) in chunk.iter().zip(opened) {
                if let Some(partition) = opened {
                    parts
                        .entry(t.name.clone())
                        .or_default()
                        .insert(*p, Rc::new(partition));
                }
            }
        }
        *self.snapshot.borrow_mut() = snapshot.clone();
        for (key, p) in self.owned() {
            match snapshot.topic(&key.0) {
                Some(t) if t.id == p.topic_id && key.1 < t.partitions => {
                    if *p.settings.borrow() != t.settings {
                        let cfg = t.settings.log_config(&self.config.storage);
                        if let Err(e) = p.log.set_config(cfg) {
                            warn!(topic = %key.0, partition = key.1, error = %e, "config not applied");
                        }
                        *p.settings.borrow_mut() = t.settings.clone();
                    }
                }
                _ => {
                    {
                        let mut parts = self.partitions.borrow_mut();
                        if let Some(m) = parts.get_mut(&key.0) {
                            m.remove(&key.1);
                            if m.is_empty() {
                                parts.remove(&key.0);
                            }
                        }
                    }
                    p.data.notify(usize::MAX);
                    if let Err(e) = p.log.delete().await {
                        error!(topic = %key.0, partition = key.1, error = %e,
                            "cannot delete the partition's files; remove the directory by hand");
                    }
                }
            }
        }
    }

    async fn open_partition(&self, t: &TopicInfo, partition: i32) -> Option<Partition> {
        let dir = partition_dir(&self.config.data_dir, &t.name, partition);
        let cfg = t.settings.log_config(&self.config.storage);
        match PartitionLog::open(DmaBackend::new(), &dir, cfg, self.budget.clone()).await {
            Ok(log) => Some(Partition {
                topic_id: t.id,
                log,
                settings: RefCell::new(t.settings.clone()),
                data: Event::new(),
                io_running: Cell::new(false),
                producers: RefCell::new(ProducerTable::new(
                    self.config.limits.producers_per_partition_max,
                )),
                produce_lock: async_lock::Mutex::new(()),
                producers_rebuilt: Cell::new(false),
                repl: self
                    .cluster
                    .is_some()
                    .then(|| RefCell::new(crate::replica::Replication::new())),
            }),
            Err(e) => {
                error!(topic = %t.name, partition, dir = %dir.display(), error = %e,
                    "cannot open partition; it stays unavailable until the broker restarts");
                None
            }
        }
    }

    /// Cluster mode, shard 0: when the cluster's topics changed, rewrites the registry to
    /// match and hands every shard the new snapshot, which opens and closes partitions like
    /// a local admin change.
    fn sync_cluster_topics(self: &Rc<Self>) {
        let (Some(cluster), Some(reg)) = (&self.cluster, &self.registry) else {
            return;
        };
        let view = cluster.view();
        // Index 0: the metadata member has not published its recovered state yet; an empty
        // view then must not delete this broker's topics.
        if view.applied_index == 0
            || reg.cluster_synced.get() == view.applied_index
            || reg.cluster_syncing.get()
        {
            return;
        }
        reg.cluster_syncing.set(true);
        let me = self.clone();
        runtime::spawn(async move {
            let topics = view
                .topics
                .iter()
                .map(|(name, t)| TopicRecord {
                    name: name.clone(),
                    id: *t.id.as_bytes(),
                    partitions: t.partitions.len() as i32,
                    configs: t.configs.clone(),
                })
                .collect();
            let me_id = me.config.node_id;
            let mut merged: BTreeMap<String, String> =
                view.broker_configs.get(&None).cloned().unwrap_or_default();
            merged.extend(
                view.broker_configs
                    .get(&Some(me_id))
                    .cloned()
                    .unwrap_or_default(),
            );
            let result = me
                .admin(AdminOp::SyncCluster {
                    topics,
                    broker_configs: merged.into_iter().collect(),
                })
                .await;
            let reg = me.registry.as_ref().expect("shard 0 holds the registry");
            match result {
                Ok(_) => reg.cluster_synced.set(view.applied_index),
                Err(e) => warn!(error = ?e, "cannot apply the cluster's topics here; retrying"),
            }
            reg.cluster_syncing.set(false);
        });
    }

    /// Background work, every `storage.flush_tick_ms`: syncs the flush policy asks for, and
    /// writes out data that no producer waits on (acks=0) so it reaches the file soon.
    pub fn tick(self: &Rc<Self>) {
        self.sync_cluster_topics();
        for (_, p) in self.owned() {
            if p.io_running.get() {
                continue;
            }
            let sync = p.log.sync_due();
            if !sync && p.log.unwritten_bytes() == 0 {
                continue;
            }
            p.io_running.set(true);
            let me = self.clone();
            runtime::spawn(async move {
                let r = if sync {
                    let started = Instant::now();
                    let r = p.log.sync().await.map(|_| ());
                    me.metrics.synced(started.elapsed());
                    r
                } else {
                    p.log.write_through().await
                };
                if let Err(e) = r {
                    if !matches!(e, rill_storage::StorageError::Closed) {
                        error!(dir = %p.log.dir().display(), error = %e, "background flush failed");
                    }
                }
                p.io_running.set(false);
            });
        }
    }

    /// This shard's counters and gauges, for a scrape.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut snap = self.metrics.snapshot(self.id);
        snap.partitions = self
            .owned()
            .into_iter()
            .map(|((topic, partition), p)| {
                let stats = p.log.stats();
                PartitionSample {
                    topic: topic.to_string(),
                    partition,
                    size_bytes: stats.size_bytes,
                    segments: stats.segments,
                    log_start_offset: p.log.log_start_offset(),
                    log_end_offset: p.log.log_end_offset(),
                }
            })
            .collect();
        snap.connections = self.connections.get();
        snap.inflight_request_bytes = self.inflight_bytes.used();
        snap.fetch_waiters = self.waiters.get();
        snap.fetch_sessions = self.fetch_sessions.borrow().len();
        snap.busy_seconds = runtime::busy_seconds();
        snap.group_offsets = self.group_offsets();
        snap
    }

    /// Gathers every shard's figures and renders the Prometheus text.
    pub async fn scrape(self: &Rc<Self>) -> String {
        let mut waits = Vec::new();
        for to in (0..self.shards).filter(|&to| to != self.id) {
            let (tx, rx) = oneshot::channel();
            if self
                .peers
                .send(to, ShardMsg::Metrics { reply: tx })
                .await
                .is_ok()
            {
                waits.push(rx);
            }
        }
        let mut snaps = vec![self.metrics_snapshot()];
        for rx in waits {
            if let Ok(s) = rx.await {
                snaps.push(s);
            }
        }
        snaps.sort_by_key(|s| s.shard);
        crate::metrics::render(&snaps, &self.host_sample())
    }

    fn host_sample(&self) -> HostSample {
        use sysinfo::{ProcessesToUpdate, System};
        let mut host = self.host.borrow_mut();
        let sys = host.get_or_insert_with(System::new);
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let pid = sysinfo::get_current_pid().ok();
        if let Some(pid) = pid {
            sys.refresh_processes(ProcessesToUpdate::Some(&[pid]), true);
        }
        HostSample {
            cpu_usage_percent: sys.global_cpu_usage() as f64,
            memory_total_bytes: sys.total_memory(),
            memory_used_bytes: sys.used_memory(),
            process_memory_bytes: pid.and_then(|p| sys.process(p)).map_or(0, |p| p.memory()),
            load_average_1m: System::load_average().one,
        }
    }

    /// Retention over every partition of this shard.
    pub async fn enforce_retention(&self) {
        for ((topic, partition), p) in self.owned() {
            match p.log.enforce_retention().await {
                Ok(out) if out.segments_deleted > 0 => info!(
                    %topic, partition, segments = out.segments_deleted, bytes = out.bytes_deleted,
                    log_start_offset = out.log_start_offset, "retention deleted segments"
                ),
                Ok(_) | Err(rill_storage::StorageError::Closed) => {}
                Err(e) => error!(%topic, partition, error = %e, "retention failed"),
            }
        }
    }

    /// Closes every partition (flush, seal, clean-shutdown marker).
    pub async fn close_all(&self) {
        let parts = self.owned();
        self.partitions.borrow_mut().clear();
        let count = parts.len();
        for ((topic, partition), p) in parts {
            p.data.notify(usize::MAX);
            if let Err(e) = p.log.close().await {
                error!(%topic, partition, error = %e, "partition did not close cleanly; the next start recovers it");
            }
        }
        info!(
            shard = self.id,
            partitions = count,
            "shard closed its partitions"
        );
    }
}

struct WaiterSlot<'a>(&'a Shard);

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        self.0.waiters.set(self.0.waiters.get() - 1);
    }
}

fn shutting_down() -> KafkaError {
    KafkaError::new(
        ErrorCode::NotLeaderOrFollower,
        "the owning shard is shutting down; retry",
    )
}

fn partitions_limit(current: i64, max: usize) -> KafkaError {
    KafkaError::new(
        ErrorCode::PolicyViolation,
        format!(
            "the broker holds {current} partitions; its limit (limits.partitions_max) is {max}"
        ),
    )
}

/// The bytes of the first record batch in `data` (batchLength + 12), checked against `data`.
pub(crate) fn batch_len(data: &[u8]) -> Result<usize, KafkaError> {
    if data.len() < batch::LOG_OVERHEAD_BYTES {
        return Err(KafkaError::new(
            ErrorCode::CorruptMessage,
            "records end inside a batch header",
        ));
    }
    let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    let total = (len as i64) + batch::LOG_OVERHEAD_BYTES as i64;
    if len <= 0 || total > data.len() as i64 {
        return Err(KafkaError::new(
            ErrorCode::CorruptMessage,
            format!(
                "record batch length {len} does not fit the {} bytes sent",
                data.len()
            ),
        ));
    }
    Ok(total as usize)
}

/// Records (counted back from the log end) scanned to rebuild idempotent producer state.
const PRODUCER_REBUILD_RECORDS: i64 = 50_000;

/// Refills a partition's producer table from the batches at the end of its log, the first
/// time an idempotent producer writes after the partition opened (a restart or a crash), so
/// a retry of a batch appended before the restart is still recognised. Caller holds
/// `produce_lock`.
async fn rebuild_producers(p: &Partition) {
    let end = p.log.log_end_offset();
    let mut at = (end - PRODUCER_REBUILD_RECORDS).max(p.log.log_start_offset());
    let mut batches = 0u64;
    while at < end {
        let read = match p.log.read(at, 1 << 20).await {
            Ok(r) => r,
            Err(e) => {
                warn!(dir = %p.log.dir().display(), error = %e, "cannot rebuild idempotent producer state");
                break;
            }
        };
        if read.batches.is_empty() {
            break;
        }
        for b in &read.batches {
            let Ok(h) = batch::BatchHeader::parse(b) else {
                continue;
            };
            if h.producer_id >= 0 {
                p.producers.borrow_mut().record(&h, h.base_offset);
                batches += 1;
            }
            at = at.max(h.last_offset() + 1);
        }
    }
    p.producers_rebuilt.set(true);
    if batches > 0 {
        info!(dir = %p.log.dir().display(), batches, "idempotent producer state rebuilt from the log");
    }
}

async fn list_offsets(p: &Partition, timestamp: i64) -> Result<OpOk, KafkaError> {
    let found = match timestamp {
        -1 => Some((p.high_watermark(), -1)),
        -2 => Some((p.log.log_start_offset(), -1)),
        -3 => p.log.max_timestamp_offset().await?,
        t if t >= 0 => p.log.offset_for_timestamp(t).await?,
        other => {
            return Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!("timestamp {other} is not a time nor -1/-2/-3"),
            ))
        }
    };
    let (offset, timestamp) = found.unwrap_or((-1, -1));
    Ok(OpOk::Offset { offset, timestamp })
}

impl Shard {
    /// Cluster mode: the broker-level defaults `base` after `change`, checked as a local
    /// change is (names, values, and every topic still resolving with them).
    pub(crate) fn checked_broker_configs(
        &self,
        base: Vec<(String, String)>,
        change: ConfigChange,
    ) -> Result<Vec<(String, String)>, KafkaError> {
        let change = broker_names_to_topic_names(change)?;
        let next = check_configs(apply_change(base, change)?)?;
        let defaults = crate::topic_config::BrokerDefaults {
            file: self.file_defaults.clone(),
            dynamic: next.iter().cloned().collect(),
        };
        for (name, t) in &self.snapshot().topics {
            TopicSettings::resolve(&defaults, &t.configs).map_err(|e| {
                KafkaError::new(ErrorCode::InvalidConfig, format!("topic {name}: {e}"))
            })?;
        }
        Ok(next)
    }
}

/// Translates broker-level config names (`log.retention.ms`) to the topic names the
/// registry keeps; a name that is not a dynamic broker default is INVALID_CONFIG.
fn broker_names_to_topic_names(change: ConfigChange) -> Result<ConfigChange, KafkaError> {
    let topic_name = |name: &str| {
        topic_config::key_by_broker_name(name)
            .map(|k| k.name.to_string())
            .ok_or_else(|| {
                KafkaError::new(
                    ErrorCode::InvalidConfig,
                    format!(
                        "`{name}` cannot be changed at run time; dynamic broker configs are the \
                         topic defaults: {}",
                        topic_config::TOPIC_CONFIGS
                            .iter()
                            .map(|k| k.broker_name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    };
    Ok(match change {
        ConfigChange::Replace(list) => ConfigChange::Replace(
            list.into_iter()
                .map(|(k, v)| Ok((topic_name(&k)?, v)))
                .collect::<Result<_, KafkaError>>()?,
        ),
        ConfigChange::Incremental(ops) => ConfigChange::Incremental(
            ops.into_iter()
                .map(|(k, op, v)| Ok((topic_name(&k)?, op, v)))
                .collect::<Result<_, KafkaError>>()?,
        ),
    })
}

/// Validates config overrides (each key known, each value in range, no duplicates).
fn check_configs(configs: Vec<(String, String)>) -> Result<Vec<(String, String)>, KafkaError> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(configs.len());
    for (k, v) in configs {
        topic_config::validate_entry(&k, &v)
            .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?;
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!("config `{k}` is given twice"),
            ));
        }
        out.push((k, v));
    }
    out.sort();
    Ok(out)
}

fn apply_change(
    mut current: Vec<(String, String)>,
    change: ConfigChange,
) -> Result<Vec<(String, String)>, KafkaError> {
    match change {
        ConfigChange::Replace(next) => Ok(next),
        ConfigChange::Incremental(ops) => {
            for (name, op, value) in ops {
                let key = topic_config::key(&name).ok_or_else(|| {
                    KafkaError::new(
                        ErrorCode::InvalidConfig,
                        format!("unknown topic config `{name}`"),
                    )
                })?;
                let is_list = matches!(key.kind, topic_config::Kind::List(_));
                let existing = current.iter().position(|(k, _)| *k == name);
                let value_of = |v: Option<String>| {
                    v.ok_or_else(|| {
                        KafkaError::new(ErrorCode::InvalidConfig, format!("`{name}` needs a value"))
                    })
                };
                match op {
                    0 => {
                        let v = value_of(value)?;
                        match existing {
                            Some(i) => current[i].1 = v,
                            None => current.push((name, v)),
                        }
                    }
                    1 => {
                        if let Some(i) = existing {
                            current.remove(i);
                        }
                    }
                    2 | 3 if is_list => {
                        let v = value_of(value)?;
                        let base = existing
                            .map(|i| current[i].1.clone())
                            .unwrap_or_else(|| key.default.to_string());
                        let mut items: Vec<String> = base
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect();
                        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                            if op == 2 {
                                if !items.iter().any(|i| i == item) {
                                    items.push(item.to_string());
                                }
                            } else {
                                items.retain(|i| i != item);
                            }
                        }
                        let joined = items.join(",");
                        match existing {
                            Some(i) => current[i].1 = joined,
                            None => current.push((name, joined)),
                        }
                    }
                    2 | 3 => {
                        return Err(KafkaError::new(
                            ErrorCode::InvalidConfig,
                            format!(
                                "APPEND and SUBTRACT apply to list configs; `{name}` is not one"
                            ),
                        ))
                    }
                    other => {
                        return Err(KafkaError::new(
                            ErrorCode::InvalidRequest,
                            format!("unknown config operation {other}"),
                        ))
                    }
                }
            }
            Ok(current)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_changes_set_delete_and_edit_lists() {
        let current = vec![("retention.ms".to_string(), "100".to_string())];
        let next = apply_change(
            current,
            ConfigChange::Incremental(vec![
                ("retention.ms".into(), 1, None),
                ("segment.bytes".into(), 0, Some("8192".into())),
                ("cleanup.policy".into(), 2, Some("delete".into())),
            ]),
        )
        .unwrap();
        assert_eq!(
            next,
            vec![
                ("segment.bytes".to_string(), "8192".to_string()),
                ("cleanup.policy".to_string(), "delete".to_string())
            ]
        );
        let e = apply_change(
            next,
            ConfigChange::Incremental(vec![("segment.bytes".into(), 2, Some("1".into()))]),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        let e = check_configs(vec![("cleanup.policy".into(), "compact".into())]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
    }

    #[test]
    fn batch_len_rejects_lengths_that_do_not_fit() {
        let mut b = vec![0u8; 70];
        b[8..12].copy_from_slice(&58i32.to_be_bytes());
        assert_eq!(batch_len(&b).unwrap(), 70);
        b[8..12].copy_from_slice(&59i32.to_be_bytes());
        assert_eq!(batch_len(&b).unwrap_err().code, ErrorCode::CorruptMessage);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(batch_len(&b).is_err());
        assert!(batch_len(&b[..5]).is_err());
    }
}
