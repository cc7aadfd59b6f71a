//! One shard: the partitions its core owns, its copy of the metadata image, and how it asks
//! other shards for work.
//!
//! Every partition belongs to exactly one shard ([`crate::metadata::owner_shard`]). Work on a
//! partition owned elsewhere travels there with [`Shard::with_partition`] (a closure run on
//! the owner, record data as `Bytes`, never copied) and its answer comes back over a second
//! mesh ([`ask`]). The metadata [`Authority`] changes topics and brokers; the shard learns of
//! a new image from an event (shard 0's broadcast, or its doorbell in a cluster), never by
//! polling.
//!
//! All of this state is owned by one executor thread (`Rc`, `RefCell`); no `RefCell` borrow
//! is held across an `.await`. Fields are private: other modules use the methods here.
//!
//! Layout: `mod.rs` (this: the state, routing, services) → `ask` (the request/reply mesh),
//! `apply` (a new image opens and closes partitions), `authority` (the metadata changes),
//! `waits` (long polls), `tasks/` (the periodic work: flush tick, retention, ISR check).

mod apply;
mod ask;
mod authority;
pub mod tasks;
mod waits;

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use event_listener::Event;
use rill_net::ErrorCode;
use rill_storage::FileBudget;

pub use ask::{Lane, ReplyMsg, ShardMsg};

use crate::config::BrokerConfig;
use crate::errors::KafkaError;
use crate::metadata::local::LocalRegistry;
use crate::metadata::raft::Cluster;
use crate::metadata::{owner_shard, Image};
use crate::metrics::ShardMetrics;
use crate::partition::hw_checkpoint::HighWatermarks;
use crate::partition::Partition;
use crate::runtime::Peers;

/// A partition's name on the wire.
pub type PartitionKey = (Arc<str>, i32);

type PartitionMap = HashMap<Arc<str>, BTreeMap<i32, Rc<Partition>>>;

/// What a shard is made from at its start.
pub struct ShardParts {
    pub id: usize,
    pub shards: usize,
    pub config: Arc<BrokerConfig>,
    pub image: Arc<Image>,
    pub requests: Peers<ShardMsg>,
    pub replies: Peers<ReplyMsg>,
    /// Shard 0 keeps the local registry (topics on a single broker; producer ids always).
    pub registry: Option<LocalRegistry>,
    /// Cluster mode: the metadata raft member.
    pub cluster: Option<Arc<Cluster>>,
    /// The high watermarks checkpointed before the last stop.
    pub high_watermarks: Arc<HighWatermarks>,
}

/// The state of one shard.
pub struct Shard {
    id: usize,
    shards: usize,
    config: Arc<BrokerConfig>,
    image: RefCell<Arc<Image>>,
    /// Notified after every image this shard applies.
    image_applied: Event,
    partitions: RefCell<PartitionMap>,
    budget: Rc<FileBudget>,
    ask: ask::Asking,
    registry: Option<LocalRegistry>,
    cluster: Option<Arc<Cluster>>,
    /// Cluster requests of this shard waiting for their answer in its mailbox.
    cluster_pending: authority::ClusterPending,
    /// One image applied at a time.
    applying: crate::fifo::FifoLock,
    /// Long-poll waits parked on this shard's partitions.
    waiters: Cell<usize>,
    metrics: Rc<ShardMetrics>,
    /// High watermarks checkpointed before the last stop, for partitions as they open.
    high_watermarks: Arc<HighWatermarks>,
    /// Per-shard services of the modules above this one (the group coordinator, fetch
    /// sessions, connection counts), registered once at start and found by their type, so
    /// this module depends on none of them.
    services: RefCell<HashMap<TypeId, Rc<dyn Any>>>,
}

impl Shard {
    pub fn new(parts: ShardParts) -> Rc<Shard> {
        let budget = FileBudget::new(parts.config.limits.open_files_max);
        Rc::new(Shard {
            id: parts.id,
            shards: parts.shards,
            image: RefCell::new(parts.image),
            image_applied: Event::new(),
            partitions: RefCell::new(HashMap::new()),
            budget,
            ask: ask::Asking::new(parts.requests, parts.replies),
            registry: parts.registry,
            cluster: parts.cluster,
            cluster_pending: authority::ClusterPending::default(),
            applying: crate::fifo::FifoLock::new(),
            waiters: Cell::new(0),
            metrics: Rc::new(ShardMetrics::default()),
            services: RefCell::new(HashMap::new()),
            high_watermarks: parts.high_watermarks,
            config: parts.config,
        })
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn config(&self) -> &Arc<BrokerConfig> {
        &self.config
    }

    pub fn metrics(&self) -> &Rc<ShardMetrics> {
        &self.metrics
    }

    /// This broker's id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The metadata image this shard routes by.
    pub fn image(&self) -> Arc<Image> {
        self.image.borrow().clone()
    }

    /// Registers this shard's instance of a service (once, at start).
    pub fn provide<T: 'static>(&self, service: Rc<T>) {
        let previous = self
            .services
            .borrow_mut()
            .insert(TypeId::of::<T>(), service);
        assert!(previous.is_none(), "a shard service is registered twice");
    }

    /// This shard's instance of a service registered at start.
    pub fn service<T: 'static>(&self) -> Rc<T> {
        let any = self
            .services
            .borrow()
            .get(&TypeId::of::<T>())
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "shard service {} was not registered at start",
                    std::any::type_name::<T>()
                )
            });
        any.downcast::<T>()
            .unwrap_or_else(|_| unreachable!("services are stored under their own type id"))
    }

    /// The partition if this shard owns it and has it open.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(topic)
            .and_then(|m| m.get(&partition))
            .cloned()
    }

    /// Every partition this shard has open (a copy, so callers may await while walking it).
    pub fn owned(&self) -> Vec<(PartitionKey, Rc<Partition>)> {
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
        let image = self.image.borrow();
        let info = image
            .topic(topic)
            .ok_or_else(|| KafkaError::unknown_topic(topic))?;
        if partition < 0 || partition >= info.partition_count() {
            return Err(KafkaError::unknown_partition(topic, partition));
        }
        Ok(owner_shard(info.id, partition, self.shards))
    }

    /// Runs `job` with partition `topic`-`partition` on the shard that owns it (here, or on
    /// another shard over the mesh) and returns its result.
    pub async fn with_partition<T, F, Fut>(
        self: &Rc<Self>,
        topic: &Arc<str>,
        partition: i32,
        job: F,
    ) -> Result<T, KafkaError>
    where
        F: FnOnce(Rc<Partition>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, KafkaError>> + 'static,
        T: Send + 'static,
    {
        let owner = self.owner_of(topic, partition)?;
        let topic = topic.clone();
        let run = move |shard: Rc<Shard>| async move {
            match shard.partition(&topic, partition) {
                Some(p) => job(p).await,
                None => Err(KafkaError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("partition {topic}-{partition} is not open on its shard yet"),
                )),
            }
        };
        self.ask(owner, Lane::Data, run).await?
    }

    /// Closes every partition (flush, seal, clean-shutdown marker), with a last
    /// high-watermark checkpoint.
    pub async fn close_all(&self) {
        tasks::hw_checkpoint::write(self, tasks::hw_checkpoint::entries(self)).await;
        let parts = self.owned();
        self.partitions.borrow_mut().clear();
        let count = parts.len();
        for (_, p) in parts {
            p.close().await;
        }
        tracing::info!(
            shard = self.id,
            partitions = count,
            "shard closed its partitions"
        );
    }

    /// Long-poll waits parked here now.
    pub fn fetch_waiters(&self) -> usize {
        self.waiters.get()
    }
}

/// The error a request gets when the shard it needs is stopping.
pub fn shutting_down() -> KafkaError {
    KafkaError::new(
        ErrorCode::NotLeaderOrFollower,
        "the owning shard is shutting down; retry",
    )
}
