//! The cluster authority: this broker's member of the metadata raft group (`rill-raft`).
//!
//! With `controller_quorum` set, every broker runs one raft member. It lives on its own
//! thread, `rill-metadata` ([`super::raft_member`]), rather than on a shard: the Ready loop
//! fsyncs the raft log synchronously, which must not stall a shard's io_uring loop, and the
//! TCP transport is std threads already. The thread owns the raft node, the transport and,
//! while this member leads, the controller; it registers this broker, heartbeats for it,
//! and after every change publishes the next [`Image`].
//!
//! The thread and the shards never share a future: a shard hands a change over with
//! [`Cluster::submit`] and the thread puts the answer in that shard's mailbox and rings its
//! doorbell ([`crate::runtime::Ringer`]); a new image rings every shard. So no waker ever
//! crosses from this thread into a shard's executor.
//!
//! What the cluster agrees on: the brokers (registration, fencing of brokers that stop
//! heartbeating, decommissioning), which broker is the controller (the raft leader), the
//! topics with their configs and partition placement (replicas, leader, ISR, ongoing
//! reassignments), and broker-level configs.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rill_net::ErrorCode;
use rill_raft::controller::ControllerConfig;
use rill_raft::disk::FsDisk;
use rill_raft::ids::{BrokerId, NodeId};
use rill_raft::metadata::{BrokerState, Command, MetadataState};
use rill_raft::node::{Node, NodeConfig};
use rill_raft::transport::{TcpTransport, TcpTransportConfig};
use tracing::{info, warn};

use crate::config::topic::{BrokerDefaults, TopicSettings};
use crate::config::{parse_quorum, BrokerConfig, Voter};
use crate::errors::KafkaError;
use crate::metadata::image::{BrokerInfo, Image, Placement, TopicInfo};
use crate::metadata::raft_member::{now_ms, Driver};
use crate::runtime::Ringer;

/// Admin requests (CreateTopics, ...) waiting for the metadata thread.
const CLUSTER_REQUESTS_QUEUED_MAX: usize = 1024;
/// Answers waiting in one shard's mailbox (the shard drains it at every ring; a full
/// mailbox drops the answer and its asker times out).
const MAILBOX_ANSWERS_MAX: usize = 4096;
/// Kafka topic ids of cluster topics: this prefix and the raft topic id (unique in the
/// cluster, never reused).
const TOPIC_UUID_PREFIX: u64 = 0x7269_6c6c_2d74_6f70; // "rill-top"

/// A metadata change, checked by the asking shard, in the form the raft group takes it.
#[derive(Debug)]
pub enum ClusterOp {
    /// `assignment` places the partitions; else the controller does, `replication_factor`
    /// replicas each.
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: usize,
        assignment: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows `name` to `count` partitions (new replicas placed like the topic's, or as
    /// `assignment` says).
    CreatePartitions {
        name: String,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
    },
    /// Sets (`Some`) or removes (`None`) topic configs.
    AlterTopicConfigs {
        name: String,
        changes: Vec<(String, Option<String>)>,
    },
    /// Moves a partition to `target` (replacing a running move), or cancels the running one.
    Reassign {
        name: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Broker-level topic defaults: cluster-wide (`None`) or one broker's (topic config
    /// names).
    AlterBrokerConfigs {
        broker: Option<i32>,
        changes: Vec<(String, Option<String>)>,
    },
    /// The controller moves the broker's replicas to other brokers, then unregisters it
    /// (and removes it from the raft group if it is a learner).
    Decommission {
        broker: i32,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition).
    ChangeIsr {
        name: String,
        partition: i32,
        partition_epoch: i32,
        leader: i32,
        isr: Vec<i32>,
    },
    /// ElectLeaders: a new leader (and ISR) for a partition still at `partition_epoch`.
    ElectLeader {
        name: String,
        partition: i32,
        partition_epoch: i32,
        leader: i32,
        isr: Vec<i32>,
    },
}

/// The answer: the raft index the change was applied at, or why not.
pub type ClusterReply = Result<u64, KafkaError>;

/// Who asked: the shard whose mailbox gets the answer, and its id for the asker.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub shard: usize,
    pub id: u64,
}

pub(super) struct ClusterRequest {
    pub op: ClusterOp,
    pub reply_to: ReplyTo,
}

/// One shard's mailbox and doorbell.
struct Mailbox {
    answers: Mutex<VecDeque<(u64, ClusterReply)>>,
    bell: Ringer,
}

/// Where this broker's metadata raft member keeps its log and snapshots.
fn metadata_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("meta").join("raft")
}

/// Whether `data_dir` was used in cluster mode before (it has a metadata raft log).
pub fn has_metadata(data_dir: &Path) -> bool {
    metadata_dir(data_dir).exists()
}

/// What the image builder needs to know of this broker.
pub(super) struct ImageContext {
    pub me: BrokerInfo,
    /// This run of the broker process (its registration's incarnation).
    pub incarnation: u64,
    /// Reported until the cluster's first controller names the cluster.
    pub provisional_cluster_id: Arc<str>,
    pub file_defaults: BTreeMap<String, String>,
}

/// The running metadata member of this broker.
pub struct Cluster {
    image: Mutex<Arc<Image>>,
    pub(super) stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    requests: SyncSender<ClusterRequest>,
    mailboxes: Vec<Mailbox>,
    pub(super) context: ImageContext,
}

impl Cluster {
    /// Opens the raft member under `<data>/meta/raft`, binds its raft address and starts
    /// the metadata thread. `Ok(None)` without a quorum (single-broker mode). `bells` ring
    /// the shards, one each.
    pub fn start(
        config: &BrokerConfig,
        provisional_cluster_id: &str,
        bells: Vec<Ringer>,
    ) -> Result<Option<Arc<Cluster>>, String> {
        if config.controller_quorum.trim().is_empty() {
            return Ok(None);
        }
        let voters = parse_quorum(&config.controller_quorum)
            .map_err(|e| format!("controller_quorum: {e}"))?;
        // A voter listens on its quorum entry; any other broker is a learner that
        // listens on `raft_listen` and asks the voters to add it.
        let learner = !voters.iter().any(|v| v.id == config.node_id);
        let me = if learner {
            Voter {
                id: config.node_id,
                addr: config.raft_listen.trim().to_string(),
            }
        } else {
            voters
                .iter()
                .find(|v| v.id == config.node_id)
                .expect("a voter is in the quorum")
                .clone()
        };
        let my_addr = me.resolve()?;
        let listener = TcpListener::bind(my_addr).map_err(|e| {
            format!(
                "cannot listen for raft traffic on {my_addr} ({}): {e}",
                if learner {
                    "raft_listen"
                } else {
                    "this broker's controller_quorum entry"
                }
            )
        })?;
        let mut peers: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
        for v in voters.iter().filter(|v| v.id != me.id) {
            peers.insert(NodeId(v.id as u64), v.resolve()?);
        }
        let transport = TcpTransport::start(
            NodeId(me.id as u64),
            listener,
            peers,
            TcpTransportConfig::default(),
        )
        .map_err(|e| format!("cannot start the raft transport: {e}"))?;
        let mut node_config = NodeConfig::new(
            NodeId(me.id as u64),
            voters.iter().map(|v| NodeId(v.id as u64)).collect(),
            if learner {
                vec![NodeId(me.id as u64)]
            } else {
                Vec::new()
            },
        );
        let incarnation = now_ms();
        node_config.seed = incarnation ^ me.id as u64;
        node_config.incarnation = incarnation;
        node_config
            .validate()
            .map_err(|e| format!("raft settings: {e}"))?;
        let dir = metadata_dir(&config.data_dir);
        let node = open_node(&dir, node_config)?;
        let me_info = BrokerInfo::of_config(config);
        let registration = Command::RegisterBroker {
            broker: BrokerId(me.id),
            host: me_info.host.clone(),
            port: me_info.port as u16,
            rack: me_info.rack.clone(),
            incarnation,
        };
        let context = ImageContext {
            incarnation,
            me: me_info,
            provisional_cluster_id: Arc::from(provisional_cluster_id),
            file_defaults: config.topic_default_strings(),
        };
        let empty = Image::empty(
            context.me.clone(),
            context.provisional_cluster_id.clone(),
            BrokerDefaults {
                file: context.file_defaults.clone(),
                dynamic: BTreeMap::new(),
            },
        );
        let (requests, requests_rx) = std::sync::mpsc::sync_channel(CLUSTER_REQUESTS_QUEUED_MAX);
        let cluster = Arc::new(Cluster {
            image: Mutex::new(Arc::new(empty)),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            requests,
            mailboxes: bells
                .into_iter()
                .map(|bell| Mailbox {
                    answers: Mutex::new(VecDeque::new()),
                    bell,
                })
                .collect(),
            context,
        });
        let driver = Driver::new(
            cluster.clone(),
            node,
            transport,
            ControllerConfig {
                broker_session_timeout_ms: config.broker_session_timeout_ms,
                auto_leader_rebalance: config.auto_leader_rebalance,
                ..ControllerConfig::default()
            },
            BrokerId(me.id),
            registration,
            Duration::from_millis(config.raft_tick_ms),
            Duration::from_millis(config.broker_heartbeat_interval_ms),
            requests_rx,
            learner.then(|| (me.addr.clone(), Instant::now(), None)),
            voters.iter().map(|v| NodeId(v.id as u64)).collect(),
        );
        let handle = std::thread::Builder::new()
            .name("rill-metadata".into())
            .spawn(move || driver.run())
            .map_err(|e| format!("cannot start the metadata thread: {e}"))?;
        *cluster.thread.lock().expect("cluster thread lock") = Some(handle);
        info!(node_id = me.id, raft = %my_addr, voters = voters.len(), learner,
            "cluster mode: metadata raft member started");
        Ok(Some(cluster))
    }

    /// The latest image.
    pub fn image(&self) -> Arc<Image> {
        self.image.lock().expect("cluster image lock").clone()
    }

    /// Hands `op` to the metadata thread; the answer arrives in `reply_to.shard`'s mailbox
    /// once it committed (or failed).
    pub fn submit(&self, op: ClusterOp, reply_to: ReplyTo) -> Result<(), KafkaError> {
        match self.requests.try_send(ClusterRequest { op, reply_to }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(KafkaError::new(
                ErrorCode::ThrottlingQuotaExceeded,
                "too many metadata changes waiting for the cluster; retry",
            )),
            Err(TrySendError::Disconnected(_)) => Err(KafkaError::new(
                ErrorCode::NotController,
                "the metadata raft member stopped",
            )),
        }
    }

    /// The answers waiting for `shard` (taken out of its mailbox).
    pub fn take_answers(&self, shard: usize) -> Vec<(u64, ClusterReply)> {
        match self.mailboxes.get(shard) {
            Some(m) => m.answers.lock().expect("mailbox lock").drain(..).collect(),
            None => Vec::new(),
        }
    }

    /// The metadata thread answers a shard.
    pub(super) fn answer(&self, to: ReplyTo, reply: ClusterReply) {
        let Some(m) = self.mailboxes.get(to.shard) else {
            return;
        };
        {
            let mut answers = m.answers.lock().expect("mailbox lock");
            if answers.len() >= MAILBOX_ANSWERS_MAX {
                warn!(
                    shard = to.shard,
                    "a shard's metadata mailbox is full; an answer is dropped and its request times out"
                );
                return;
            }
            answers.push_back((to.id, reply));
        }
        m.bell.ring();
    }

    /// The metadata thread publishes a new image and rings every shard.
    pub(super) fn publish(&self, image: Image) {
        {
            let mut current = self.image.lock().expect("cluster image lock");
            *current = Arc::new(image);
        }
        for m in &self.mailboxes {
            m.bell.ring();
        }
    }

    /// Stops the metadata thread (the raft state is on disk after every cycle).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().expect("cluster thread lock").take() {
            let _ = t.join();
        }
    }
}

fn open_node(dir: &Path, config: NodeConfig) -> Result<Node<FsDisk>, String> {
    let disk = FsDisk::open(dir)
        .map_err(|e| format!("cannot open the raft directory {}: {e}", dir.display()))?;
    Node::open(config, disk).map_err(|e| {
        format!(
            "cannot open the raft log in {}: {e}; if the disk is damaged, restore it or remove the directory to rejoin as a new member",
            dir.display()
        )
    })
}

/// The image of the cluster's state as this member applied it; `controller` is the raft
/// leader's id when one is known. A topic whose configs this broker cannot resolve is
/// logged and left out.
pub(super) fn image_of_state(
    state: &MetadataState,
    controller: Option<i32>,
    context: &ImageContext,
) -> Image {
    let broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>> = state
        .broker_configs
        .iter()
        .map(|(b, c)| (b.map(|b| b.0), c.clone()))
        .collect();
    let defaults = BrokerDefaults {
        file: context.file_defaults.clone(),
        dynamic: Image::merged_broker_configs(&broker_configs, context.me.id),
    };
    let mut topics = BTreeMap::new();
    for t in state.topics.values() {
        let configs: Vec<(String, String)> = t
            .configs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let settings = match TopicSettings::resolve(&defaults, &configs) {
            Ok(s) => s,
            Err(e) => {
                warn!(topic = %t.name, error = %e, "cluster topic with settings this broker refuses");
                continue;
            }
        };
        let name: Arc<str> = Arc::from(t.name.as_str());
        topics.insert(
            name.clone(),
            Arc::new(TopicInfo {
                name,
                id: uuid::Uuid::from_u64_pair(TOPIC_UUID_PREFIX, t.id.0),
                configs,
                settings,
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| Placement {
                        leader: p.leader.map_or(-1, |b| b.0),
                        leader_epoch: p.leader_epoch.0,
                        replicas: p.replicas.iter().map(|b| b.0).collect(),
                        isr: p.isr.iter().map(|b| b.0).collect(),
                        partition_epoch: p.partition_epoch,
                        adding: p.adding.iter().map(|b| b.0).collect(),
                        removing: p.removing.iter().map(|b| b.0).collect(),
                    })
                    .collect(),
            }),
        );
    }
    // This broker leads only once this run's registration applied and the controller moved
    // what it held before the restart (KIP-380/841: a restarted broker's log may have lost
    // records, so it must not lead from it before others took over).
    let me_can_lead = state
        .brokers
        .get(&BrokerId(context.me.id))
        .is_some_and(|b| {
            b.incarnation == context.incarnation && !b.recovering && b.state != BrokerState::Fenced
        });
    Image {
        version: state.applied_index,
        ready: state.applied_index > 0,
        me_can_lead,
        me: context.me.clone(),
        cluster_named: !state.cluster_id.is_empty(),
        broker_token: (!state.broker_token.is_empty())
            .then(|| Arc::from(state.broker_token.as_str())),
        cluster_id: if state.cluster_id.is_empty() {
            context.provisional_cluster_id.clone()
        } else {
            Arc::from(state.cluster_id.as_str())
        },
        controller: controller.unwrap_or(-1),
        brokers: state
            .brokers
            .values()
            .map(|b| BrokerInfo {
                id: b.id.0,
                host: b.host.clone(),
                port: b.port as i32,
                rack: b.rack.clone(),
                alive: b.state != BrokerState::Fenced,
            })
            .collect(),
        broker_configs,
        defaults,
        topics,
    }
}
