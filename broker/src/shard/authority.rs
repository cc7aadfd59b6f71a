//! The metadata authority as request handlers see it: one call per change, the same in
//! both modes. Behind it, a single broker's registry on shard 0 (which hands the next image
//! to every shard before answering), or the cluster's raft group (the change is checked
//! here, committed by the group, and answered once this shard's image has it).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use rill_net::ErrorCode;
use tracing::{debug, warn};

use super::{Lane, Shard};
use crate::errors::KafkaError;
use crate::metadata::change::{self, Change, NewTopic, Outcome};
use crate::metadata::raft::{Cluster, ClusterOp, ClusterReply, ReplyTo};
use crate::metadata::{ConfigChange, Image, Placement, TopicInfo};
use crate::runtime::{self, Doorbell};

/// How a committed change's answer is read from the image it applied at.
type AnswerFrom = Box<dyn Fn(&Image) -> Outcome>;

/// How long a committed change may take to reach this shard's image.
const IMAGE_WAIT: Duration = Duration::from_secs(10);

/// Cluster requests of one shard waiting for their answer.
#[derive(Default)]
pub(super) struct ClusterPending {
    next_id: Cell<u64>,
    waiting: RefCell<HashMap<u64, oneshot::Sender<ClusterReply>>>,
}

/// A shard's handle on the metadata authority ([`Shard::authority`]).
pub struct Authority<'a> {
    shard: &'a Rc<Shard>,
}

impl Shard {
    /// The metadata authority, for one change.
    pub fn authority(self: &Rc<Self>) -> Authority<'_> {
        Authority { shard: self }
    }

    /// Hands `image` to every shard (this one included) and waits until all applied it.
    async fn broadcast(self: &Rc<Self>, image: Arc<Image>) {
        self.ask_all(move |shard: Rc<Shard>| {
            let image = image.clone();
            async move { shard.apply(image).await }
        })
        .await;
    }

    /// Waits until this shard's image is at least `version`.
    async fn await_image(&self, version: u64) -> Result<Arc<Image>, KafkaError> {
        let deadline = Instant::now() + IMAGE_WAIT;
        loop {
            let listener = self.image_applied.listen();
            let image = self.image();
            if image.ready && image.version >= version {
                return Ok(image);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(KafkaError::new(
                    ErrorCode::RequestTimedOut,
                    format!(
                        "the change committed at raft index {version} but this broker has only applied {}; it will apply soon",
                        image.version
                    ),
                ));
            }
            futures_lite::future::or(listener, runtime::sleep(deadline - now)).await;
        }
    }

    /// Waits until this shard may answer clients: its image is ready and the cluster has
    /// its id (at once on a single broker). False after `timeout`.
    pub async fn until_serving(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let listener = self.image_applied.listen();
            let image = self.image();
            if image.ready && image.cluster_named {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            futures_lite::future::or(listener, runtime::sleep(deadline - now)).await;
        }
    }

    /// Cluster mode: hands `op` to the metadata thread and waits for its answer in this
    /// shard's mailbox (the raft index it was applied at).
    async fn cluster_request(&self, cluster: &Cluster, op: ClusterOp) -> ClusterReply {
        let id = self.cluster_pending.next_id.get();
        self.cluster_pending.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.cluster_pending.waiting.borrow_mut().insert(id, tx);
        struct Forget<'a>(&'a ClusterPending, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.waiting.borrow_mut().remove(&self.1);
            }
        }
        let _forget = Forget(&self.cluster_pending, id);
        cluster.submit(op, ReplyTo { shard: self.id, id })?;
        rx.await.map_err(|_| {
            KafkaError::new(ErrorCode::NotController, "the metadata raft member stopped")
        })?
    }

    /// Cluster mode: takes the metadata thread's answers and new images whenever it rings
    /// this shard's doorbell, until the broker stops.
    pub async fn follow_cluster(self: Rc<Self>, mut bell: Doorbell) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        loop {
            for (id, reply) in cluster.take_answers(self.id) {
                if let Some(tx) = self.cluster_pending.waiting.borrow_mut().remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            let latest = cluster.image();
            if !Arc::ptr_eq(&latest, &self.image()) {
                self.apply(latest).await;
            }
            if !bell.rung().await {
                return;
            }
        }
    }
}

impl Authority<'_> {
    /// Checks and makes `change` (only checks it when `validate_only`).
    pub async fn change(&self, change: Change, validate_only: bool) -> Result<Outcome, KafkaError> {
        match (&self.shard.cluster, change) {
            // Producer ids come from the broker's own block in both modes.
            (_, Change::AllocateProducerId) => self.local(Change::AllocateProducerId, false).await,
            (None, change) => self.local(change, validate_only).await,
            (Some(cluster), change) => self.raft(cluster, change, validate_only).await,
        }
    }

    /// The registry on shard 0.
    async fn local(&self, change: Change, validate_only: bool) -> Result<Outcome, KafkaError> {
        self.shard
            .ask(0, Lane::Control, move |shard: Rc<Shard>| async move {
                let Some(registry) = shard.registry.as_ref() else {
                    return Err(KafkaError::new(
                        ErrorCode::NotController,
                        "the registry lives on shard 0",
                    ));
                };
                let _one_at_a_time = registry.lock().await;
                let (outcome, image) = registry.change(change, validate_only).await?;
                if let Some(image) = image {
                    shard.broadcast(image).await;
                }
                Ok(outcome)
            })
            .await?
    }

    /// The raft group: checked against this shard's image, committed, answered once this
    /// shard applied it.
    async fn raft(
        &self,
        cluster: &Arc<Cluster>,
        change: Change,
        validate_only: bool,
    ) -> Result<Outcome, KafkaError> {
        let shard = self.shard;
        let image = shard.image();
        let limits = &shard.config.limits;
        let (op, answer): (ClusterOp, AnswerFrom) = match change {
            Change::CreateTopic(spec) => {
                let checked = change::check_new_topic(&image, &spec, limits)?;
                if validate_only {
                    return Ok(Outcome::Topic(Arc::new(preview(&spec, checked))));
                }
                let name = spec.name.clone();
                (
                    ClusterOp::CreateTopic {
                        name: spec.name,
                        partitions: checked.partitions,
                        replication_factor: spec.replication_factor,
                        assignment: spec.assignments,
                        configs: checked.configs.into_iter().collect(),
                    },
                    Box::new(move |img: &Image| topic_outcome(img, &name)),
                )
            }
            Change::DeleteTopic { name } => {
                let before = image
                    .topic(&name)
                    .cloned()
                    .ok_or_else(|| KafkaError::unknown_topic(&name))?;
                (
                    ClusterOp::DeleteTopic { name },
                    Box::new(move |_: &Image| Outcome::Topic(before.clone())),
                )
            }
            Change::CreatePartitions {
                name,
                count,
                assignments,
            } => {
                let t = change::check_create_partitions(
                    &image,
                    &name,
                    count,
                    assignments.as_deref(),
                    limits,
                )?;
                if validate_only {
                    return Ok(Outcome::Topic(t.clone()));
                }
                let n = name.clone();
                (
                    ClusterOp::CreatePartitions {
                        name,
                        count,
                        assignment: assignments,
                    },
                    Box::new(move |img: &Image| topic_outcome(img, &n)),
                )
            }
            Change::AlterTopicConfigs { name, change } => {
                let before: BTreeMap<String, String> = image
                    .topic(&name)
                    .ok_or_else(|| KafkaError::unknown_topic(&name))?
                    .configs
                    .iter()
                    .cloned()
                    .collect();
                let after: BTreeMap<String, String> =
                    change::check_topic_configs(&image, &name, change)?
                        .into_iter()
                        .collect();
                if validate_only || before == after {
                    return Ok(Outcome::Done);
                }
                (
                    ClusterOp::AlterTopicConfigs {
                        name,
                        changes: change::config_diff(&before, &after),
                    },
                    Box::new(|_: &Image| Outcome::Done),
                )
            }
            Change::AlterBrokerConfigs { broker, change } => {
                let before = image
                    .broker_configs
                    .get(&broker)
                    .cloned()
                    .unwrap_or_default();
                let after = change::check_broker_configs(&image, broker, change)?;
                if validate_only || before == after {
                    return Ok(Outcome::Done);
                }
                (
                    ClusterOp::AlterBrokerConfigs {
                        broker,
                        changes: change::config_diff(&before, &after),
                    },
                    Box::new(|_: &Image| Outcome::Done),
                )
            }
            Change::Reassign {
                name,
                partition,
                target,
            } => (
                ClusterOp::Reassign {
                    name,
                    partition,
                    target,
                },
                Box::new(|_: &Image| Outcome::Done),
            ),
            Change::Decommission { broker } => {
                // Answered once the decommission started; the moves take their time.
                shard
                    .cluster_request(cluster, ClusterOp::Decommission { broker })
                    .await?;
                return Ok(Outcome::Done);
            }
            Change::Isr {
                name,
                partition,
                partition_epoch,
                leader,
                isr,
            } => {
                shard
                    .cluster_request(
                        cluster,
                        ClusterOp::ChangeIsr {
                            name,
                            partition,
                            partition_epoch,
                            leader,
                            isr,
                        },
                    )
                    .await?;
                return Ok(Outcome::Done);
            }
            Change::ElectLeader {
                name,
                partition,
                partition_epoch,
                leader,
                isr,
            } => (
                ClusterOp::ElectLeader {
                    name,
                    partition,
                    partition_epoch,
                    leader,
                    isr,
                },
                Box::new(|_: &Image| Outcome::Done),
            ),
            Change::AllocateProducerId => unreachable!("producer ids come from the registry"),
        };
        let index = shard.cluster_request(cluster, op).await?;
        let image = shard.await_image(index).await?;
        Ok(answer(&image))
    }

    pub async fn create_topic(
        &self,
        spec: NewTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, KafkaError> {
        match self
            .change(Change::CreateTopic(spec), validate_only)
            .await?
        {
            Outcome::Topic(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicInfo>, KafkaError> {
        let change = Change::DeleteTopic {
            name: name.to_string(),
        };
        match self.change(change, false).await? {
            Outcome::Topic(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let change = Change::CreatePartitions {
            name: name.to_string(),
            count,
            assignments,
        };
        self.change(change, validate_only).await.map(|_| ())
    }

    pub async fn alter_topic_configs(
        &self,
        name: &str,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let change = Change::AlterTopicConfigs {
            name: name.to_string(),
            change,
        };
        self.change(change, validate_only).await.map(|_| ())
    }

    /// Broker-level topic defaults of every broker (None) or one.
    pub async fn alter_broker_configs(
        &self,
        broker: Option<i32>,
        change: ConfigChange,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        self.change(Change::AlterBrokerConfigs { broker, change }, validate_only)
            .await
            .map(|_| ())
    }

    pub async fn producer_id(&self) -> Result<i64, KafkaError> {
        match self.change(Change::AllocateProducerId, false).await? {
            Outcome::ProducerId(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub async fn reassign(
        &self,
        name: &str,
        partition: i32,
        target: Option<Vec<i32>>,
    ) -> Result<(), KafkaError> {
        let change = Change::Reassign {
            name: name.to_string(),
            partition,
            target,
        };
        self.change(change, false).await.map(|_| ())
    }

    pub async fn decommission(&self, broker: i32) -> Result<(), KafkaError> {
        self.change(Change::Decommission { broker }, false)
            .await
            .map(|_| ())
    }

    /// ElectLeaders: `leader` takes over a partition at `placement`, with `isr`; answered
    /// once this shard's image has the new leader.
    pub async fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        placement: &Placement,
        leader: i32,
        isr: Vec<i32>,
    ) -> Result<(), KafkaError> {
        let change = Change::ElectLeader {
            name: topic.to_string(),
            partition,
            partition_epoch: placement.partition_epoch,
            leader,
            isr,
        };
        self.change(change, false).await.map(|_| ())
    }

    /// A leader asks for a new ISR of a partition it leads at `placement`.
    pub async fn change_isr(
        &self,
        topic: &str,
        partition: i32,
        placement: &Placement,
        isr: Vec<i32>,
    ) -> Result<(), KafkaError> {
        let change = Change::Isr {
            name: topic.to_string(),
            partition,
            partition_epoch: placement.partition_epoch,
            leader: placement.leader,
            isr,
        };
        match self.change(change, false).await {
            Ok(_) => Ok(()),
            Err(e) => {
                debug!(topic, partition, error = ?e, "ISR change not taken; the leader checks again");
                Err(e)
            }
        }
    }
}

/// The topic as `image` has it, after a change that created or grew it.
fn topic_outcome(image: &Image, name: &str) -> Outcome {
    match image.topic(name) {
        Some(t) => Outcome::Topic(t.clone()),
        None => {
            warn!(
                topic = name,
                "a committed topic change is not in the image it applied at"
            );
            Outcome::Done
        }
    }
}

/// What a validated-only CreateTopics answers in a cluster: the partitions and replication
/// factor asked for (no broker is chosen).
fn preview(spec: &NewTopic, checked: change::CheckedTopic) -> TopicInfo {
    let rf = spec
        .assignments
        .as_ref()
        .and_then(|a| a.first().map(Vec::len))
        .unwrap_or(spec.replication_factor);
    TopicInfo {
        name: Arc::from(checked.name.as_str()),
        id: uuid::Uuid::nil(),
        configs: checked.configs,
        settings: checked.settings,
        partitions: (0..checked.partitions)
            .map(|_| Placement {
                leader: -1,
                leader_epoch: -1,
                replicas: vec![-1; rf],
                isr: Vec::new(),
                partition_epoch: -1,
                adding: Vec::new(),
                removing: Vec::new(),
            })
            .collect(),
    }
}

fn unexpected(o: Outcome) -> KafkaError {
    KafkaError::new(
        ErrorCode::UnknownServerError,
        format!("the metadata authority answered {o:?}"),
    )
}
