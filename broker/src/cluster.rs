//! Cluster mode: this broker's member of the metadata raft group (`rill-raft`).
//!
//! With `controller_quorum` set, every broker runs one raft member. It lives on its own
//! thread, `rill-metadata`, rather than on shard 0: the Ready loop fsyncs the raft log
//! synchronously (1-3 times per cycle), which must not stall a shard's io_uring loop, and
//! the TCP transport is std threads already. The thread owns the raft [`Node`], the
//! transport and, while this member leads, the [`Controller`]; it registers this broker,
//! heartbeats for it, and publishes an immutable [`ClusterView`] after every change. Shards
//! only read the latest view (an `Arc` swapped under a mutex held for a pointer copy).
//!
//! What the cluster agrees on: the brokers (registration, fencing of brokers that stop
//! heartbeating, decommissioning), which broker is the controller (the raft leader), the
//! topics with their configs and partition placement (replicas, leader, ISR, ongoing
//! reassignments), and broker-level configs. Shard 0 copies the topics into its registry
//! (which opens and closes partitions); partition data itself is copied between brokers by
//! [`crate::replica`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;
use rill_net::ErrorCode;
use rill_raft::controller::{Controller, ControllerConfig, PlacementError};
use rill_raft::disk::FsDisk;
use rill_raft::ids::{BrokerId, Millis, NodeId};
use rill_raft::metadata::{BrokerState, Command, MetadataState, Proposal};
use rill_raft::node::{Node, NodeConfig, ProposalId, Role};
use rill_raft::transport::{TcpTransport, TcpTransportConfig, Transport};
use tracing::{debug, info, warn};

use crate::config::BrokerConfig;
use crate::errors::KafkaError;

/// Raft messages taken from the transport per loop turn.
const RAFT_MESSAGES_PER_TURN_MAX: usize = 1024;
/// How long the loop waits for a message before doing its timed work.
const LOOP_WAIT: Duration = Duration::from_millis(5);
/// How often a learner that is not in the group yet asks the voters again.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// How long a learner replays its own log before deciding it is not a member yet.
const JOIN_FIRST_WAIT: Duration = Duration::from_millis(500);
/// Admin requests (CreateTopics, ...) waiting for the metadata thread.
const CLUSTER_REQUESTS_QUEUED_MAX: usize = 1024;
/// How long an admin request waits for its change to commit before it times out.
const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Kafka topic ids of cluster topics: this prefix and the raft topic id (unique in the
/// cluster, never reused).
const TOPIC_UUID_PREFIX: u64 = 0x7269_6c6c_2d74_6f70; // "rill-top"

/// A metadata change a shard asks the cluster for.
#[derive(Debug)]
pub enum ClusterOp {
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: usize,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows `name` to `count` partitions (new replicas placed like the topic's).
    CreatePartitions {
        name: String,
        count: i32,
    },
    /// Sets (`Some`) or removes (`None`) topic configs; already validated by the asker.
    AlterTopicConfigs {
        name: String,
        changes: Vec<(String, Option<String>)>,
    },
    /// AlterPartitionReassignments for one partition: move it to `target` (replacing a
    /// running reassignment), or cancel the running one (`None`).
    Reassign {
        name: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Broker-level topic defaults: cluster-wide (`None`, resource name "") or one
    /// broker's; already validated by the asker (topic config names).
    AlterBrokerConfigs {
        broker: Option<i32>,
        changes: Vec<(String, Option<String>)>,
    },
    /// Decommissions a broker (UnregisterBroker): the controller moves its replicas to
    /// other brokers, then unregisters it (and removes it from the raft group if it is
    /// a learner).
    Decommission {
        broker: i32,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition): applies only if the
    /// partition is still at `partition_epoch` and this broker still leads it.
    ChangeIsr {
        name: String,
        partition: i32,
        partition_epoch: i32,
        leader: i32,
        isr: Vec<i32>,
    },
}

/// The answer: committed, or why not (with the Kafka error code to give the client).
pub type ClusterReply = Result<(), KafkaError>;

struct ClusterRequest {
    op: ClusterOp,
    reply: oneshot::Sender<ClusterReply>,
}

/// One voter of `--controller-quorum`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    /// `host:port`, resolved when the broker starts.
    pub addr: String,
}

impl Voter {
    fn resolve(&self) -> Result<SocketAddr, String> {
        self.addr
            .to_socket_addrs()
            .map_err(|e| {
                format!(
                    "cannot resolve voter {}'s address {}: {e}",
                    self.id, self.addr
                )
            })?
            .next()
            .ok_or_else(|| {
                format!(
                    "voter {}'s address {} resolves to nothing",
                    self.id, self.addr
                )
            })
    }
}

/// Parses `1@host:port,2@host:port,...` (1, 3 or 5 voters, distinct ids >= 1). Names are
/// resolved only at start, so a config can be checked on another machine.
pub fn parse_quorum(s: &str) -> Result<Vec<Voter>, String> {
    let mut out: Vec<Voter> = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("{entry:?} is not id@host:port"))?;
        let id: i32 = id
            .parse()
            .map_err(|_| format!("{entry:?}: {id:?} is not a node id"))?;
        if id < 1 {
            return Err(format!("{entry:?}: node ids start at 1"));
        }
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{entry:?}: {addr:?} is not host:port")),
        }
        if out.iter().any(|v| v.id == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        out.push(Voter {
            id,
            addr: addr.to_string(),
        });
    }
    if ![1, 3, 5].contains(&out.len()) {
        return Err(format!(
            "the quorum has {} voters; use 1, 3 or 5",
            out.len()
        ));
    }
    Ok(out)
}

/// A broker as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Registered and heartbeating (not fenced).
    pub alive: bool,
}

/// One partition as the cluster places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// -1 while no replica can lead.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Bumped on every change of leader, ISR or replicas (the ChangeIsr token).
    pub partition_epoch: i32,
    /// Replicas an ongoing reassignment adds and removes (empty when none).
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// A topic the cluster agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub id: uuid::Uuid,
    pub configs: Vec<(String, String)>,
    pub partitions: Vec<PartitionView>,
}

/// What the shards read: the cluster's brokers, controller and topics, as of
/// `applied_index`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster's Kafka cluster id (None until the first controller named it).
    pub cluster_id: Option<String>,
    pub brokers: Vec<BrokerView>,
    /// The raft leader's broker id, when one is known.
    pub controller: Option<i32>,
    pub topics: BTreeMap<String, TopicView>,
    /// Broker-level topic defaults: cluster-wide (None) and per broker (topic config names).
    pub broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>>,
    pub applied_index: u64,
}

impl ClusterView {
    /// The placement of `topic`'s `partition`, if the cluster has it.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionView> {
        let t = self.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
    }
}

/// Where this broker's metadata raft member keeps its log and snapshots.
fn metadata_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("meta").join("raft")
}

/// Whether `data_dir` was used in cluster mode before (it has a metadata raft log).
pub fn has_metadata(data_dir: &Path) -> bool {
    metadata_dir(data_dir).exists()
}

/// The running metadata member of this broker.
pub struct Cluster {
    view: Mutex<Arc<ClusterView>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    requests: SyncSender<ClusterRequest>,
    /// Replication factor of topics created without one (auto-created, `-1`).
    pub default_replication_factor: usize,
}

impl Cluster {
    /// Opens the raft member under `<data>/meta/raft`, binds its raft address and starts
    /// the metadata thread. `Ok(None)` without a quorum (single-broker mode).
    pub fn start(config: &BrokerConfig) -> Result<Option<Arc<Cluster>>, String> {
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
        let tick_ms = config.raft_tick_ms;
        node_config.seed = now_ms() ^ me.id as u64;
        node_config.incarnation = now_ms();
        node_config
            .validate()
            .map_err(|e| format!("raft settings: {e}"))?;
        let dir = metadata_dir(&config.data_dir);
        let node = open_node(&dir, node_config)?;
        let (host, port) = config.advertised();
        let me_broker = Command::RegisterBroker {
            broker: BrokerId(me.id),
            host: host.to_string(),
            port: port as u16,
            rack: (!config.rack.is_empty()).then(|| config.rack.clone()),
        };
        let (requests, requests_rx) = std::sync::mpsc::sync_channel(CLUSTER_REQUESTS_QUEUED_MAX);
        let cluster = Arc::new(Cluster {
            view: Mutex::new(Arc::new(ClusterView::default())),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            requests,
            default_replication_factor: config.default_replication_factor.max(1),
        });
        let driver = Driver {
            cluster: cluster.clone(),
            node,
            transport,
            controller: None,
            controller_config: ControllerConfig {
                broker_session_timeout_ms: config.broker_session_timeout_ms,
                ..ControllerConfig::default()
            },
            me: BrokerId(me.id),
            registration: me_broker,
            tick: Duration::from_millis(tick_ms),
            heartbeat: Duration::from_millis(config.broker_heartbeat_interval_ms),
            requests: requests_rx,
            pending: BTreeMap::new(),
            named_at: None,
            join: learner.then(|| (me.addr.clone(), Instant::now(), None)),
            voters: voters.iter().map(|v| NodeId(v.id as u64)).collect(),
            decommissioned: false,
            leaving_members: BTreeMap::new(),
        };
        let handle = std::thread::Builder::new()
            .name("rill-metadata".into())
            .spawn(move || driver.run())
            .map_err(|e| format!("cannot start the metadata thread: {e}"))?;
        *cluster.thread.lock().expect("cluster thread lock") = Some(handle);
        info!(node_id = me.id, raft = %my_addr, voters = voters.len(), learner,
            "cluster mode: metadata raft member started");
        Ok(Some(cluster))
    }

    /// The latest view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.lock().expect("cluster view lock").clone()
    }

    /// Asks the cluster for `op`; the answer comes once it committed (or failed).
    pub async fn request(&self, op: ClusterOp) -> ClusterReply {
        let (tx, rx) = oneshot::channel();
        match self.requests.try_send(ClusterRequest { op, reply: tx }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(KafkaError::new(
                    ErrorCode::ThrottlingQuotaExceeded,
                    "too many metadata changes waiting for the cluster; retry",
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(KafkaError::new(
                    ErrorCode::NotController,
                    "the metadata raft member stopped",
                ))
            }
        }
        rx.await.unwrap_or_else(|_| {
            Err(KafkaError::new(
                ErrorCode::NotController,
                "the metadata raft member stopped",
            ))
        })
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The metadata thread's state.
struct Driver {
    cluster: Arc<Cluster>,
    node: Node<FsDisk>,
    transport: TcpTransport,
    controller: Option<Controller>,
    controller_config: ControllerConfig,
    me: BrokerId,
    registration: Command,
    tick: Duration,
    heartbeat: Duration,
    requests: Receiver<ClusterRequest>,
    /// Proposals of admin requests, answered when they apply (or time out).
    pending: BTreeMap<ProposalId, (Instant, oneshot::Sender<ClusterReply>)>,
    /// When this member last proposed the cluster's id.
    named_at: Option<Instant>,
    /// A learner not yet in the group: its raft address, when the member started and
    /// when it last asked the voters to add it.
    join: Option<(String, Instant, Option<Instant>)>,
    voters: Vec<NodeId>,
    /// This broker was decommissioning; once unregistered it stops registering,
    /// heartbeating and asking to join (until the process restarts).
    decommissioned: bool,
    /// Controller: unregistered learners to remove from the raft group, and when that
    /// was last proposed.
    leaving_members: BTreeMap<NodeId, Option<Instant>>,
}

impl Driver {
    fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut last_heartbeat: Option<Instant> = None;
        let mut last_register: Option<Instant> = None;
        self.publish();
        self.sync_peers();
        while !self.cluster.stop.load(Ordering::SeqCst) {
            if let Some(m) = self.transport.recv_timeout(LOOP_WAIT) {
                self.step(m);
            }
            for m in self.transport.try_recv_many(RAFT_MESSAGES_PER_TURN_MAX) {
                self.step(m);
            }
            if last_tick.elapsed() >= self.tick {
                last_tick = Instant::now();
                self.node.tick();
            }
            if !self.gone() {
                self.ask_to_join();
            }
            // Register until the cluster has this broker at this address; then heartbeat.
            if self.node.leader().is_some() && !self.gone() {
                if !self.registered() {
                    if last_register.is_none_or(|t| t.elapsed() >= self.heartbeat) {
                        last_register = Some(Instant::now());
                        self.propose(vec![self.registration.clone()]);
                    }
                } else if last_heartbeat.is_none_or(|t| t.elapsed() >= self.heartbeat) {
                    last_heartbeat = Some(Instant::now());
                    self.propose(vec![Command::BrokerHeartbeat { broker: self.me }]);
                }
            }
            while let Ok(r) = self.requests.try_recv() {
                self.start_request(r);
            }
            self.expire_requests();
            if let Err(e) = self.cycle() {
                // The raft log could not be written: this member cannot go on safely.
                tracing::error!(error = %e, "the metadata raft member failed; stopping the broker");
                std::process::exit(3);
            }
        }
        info!("metadata raft member stopped");
    }

    /// Turns an admin request into a proposal (placed against this member's copy of the
    /// state; the state machine refuses it if that copy was stale) and proposes it.
    fn start_request(&mut self, r: ClusterRequest) {
        let state = self.node.state();
        let proposal = match &r.op {
            ClusterOp::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => rill_raft::controller::create_topic(
                state,
                name,
                *partitions,
                *replication_factor,
                configs.clone(),
            )
            .map_err(|e| {
                let code = match e {
                    PlacementError::NotEnoughBrokers { .. } => ErrorCode::InvalidReplicationFactor,
                    PlacementError::InvalidPartitionCount(_) => ErrorCode::InvalidPartitions,
                    PlacementError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
                    PlacementError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
                };
                KafkaError::new(code, e.to_string())
            }),
            ClusterOp::DeleteTopic { name } => match state.topic_ids.get(name) {
                Some(id) => Ok(Proposal {
                    commands: vec![Command::DeleteTopic { topic: *id }],
                }),
                None => Err(KafkaError::unknown_topic(name)),
            },
            ClusterOp::CreatePartitions { name, count } => {
                rill_raft::controller::create_partitions(state, name, *count).map_err(|e| {
                    let code = match e {
                        PlacementError::NotEnoughBrokers { .. } => {
                            ErrorCode::InvalidReplicationFactor
                        }
                        PlacementError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
                        _ => ErrorCode::InvalidPartitions,
                    };
                    KafkaError::new(code, e.to_string())
                })
            }
            ClusterOp::AlterTopicConfigs { name, changes } => match state.topic_ids.get(name) {
                Some(id) => Ok(Proposal {
                    commands: vec![Command::AlterTopicConfigs {
                        topic: *id,
                        changes: changes.clone(),
                    }],
                }),
                None => Err(KafkaError::unknown_topic(name)),
            },
            ClusterOp::Reassign {
                name,
                partition,
                target,
            } => match state.topic_ids.get(name) {
                Some(id) => {
                    let pi = rill_raft::ids::PartitionIndex(*partition);
                    let running = state
                        .partition(*id, pi)
                        .is_some_and(|p| !p.adding.is_empty() || !p.removing.is_empty());
                    let mut commands = Vec::new();
                    if running || target.is_none() {
                        commands.push(Command::CancelReassignment {
                            topic: *id,
                            partition: pi,
                        });
                    }
                    if let Some(target) = target {
                        commands.push(Command::BeginReassignment {
                            topic: *id,
                            partition: pi,
                            target: target.iter().map(|b| BrokerId(*b)).collect(),
                        });
                    }
                    Ok(Proposal { commands })
                }
                None => Err(KafkaError::unknown_topic(name)),
            },
            ClusterOp::AlterBrokerConfigs { broker, changes } => Ok(Proposal {
                commands: vec![Command::AlterBrokerConfigs {
                    broker: broker.map(BrokerId),
                    changes: changes.clone(),
                }],
            }),
            ClusterOp::Decommission { broker } => match state.brokers.get(&BrokerId(*broker)) {
                None => Err(KafkaError::new(
                    ErrorCode::BrokerIdNotRegistered,
                    format!("broker {broker} is not registered"),
                )),
                Some(b) if b.state == BrokerState::Fenced => Err(KafkaError::new(
                    ErrorCode::InvalidRequest,
                    format!("broker {broker} is fenced; start it again so its replicas can be moved off, then decommission it"),
                )),
                Some(_) => Ok(Proposal {
                    commands: vec![Command::DecommissionBroker {
                        broker: BrokerId(*broker),
                    }],
                }),
            },
            ClusterOp::ChangeIsr {
                name,
                partition,
                partition_epoch,
                leader,
                isr,
            } => match state.topic_ids.get(name) {
                Some(id) => Ok(Proposal {
                    commands: vec![Command::ChangePartition {
                        topic: *id,
                        partition: rill_raft::ids::PartitionIndex(*partition),
                        partition_epoch: *partition_epoch,
                        leader: Some(BrokerId(*leader)),
                        isr: isr.iter().map(|b| BrokerId(*b)).collect(),
                    }],
                }),
                None => Err(KafkaError::unknown_topic(name)),
            },
        };
        let proposal = match proposal {
            Ok(p) => p,
            Err(e) => {
                let _ = r.reply.send(Err(e));
                return;
            }
        };
        match self.node.propose(&proposal) {
            Ok(id) => {
                self.pending.insert(id, (Instant::now(), r.reply));
            }
            Err(e) => {
                let _ = r.reply.send(Err(KafkaError::new(
                    ErrorCode::NotController,
                    format!("no controller to take the change now ({e}); retry"),
                )));
            }
        }
    }

    /// A learner not yet in the group asks the voters to add it, every [`JOIN_RETRY`].
    fn ask_to_join(&mut self) {
        let Some((addr, since, last)) = &mut self.join else {
            return;
        };
        if self.node.is_member() {
            info!(
                node_id = self.me.0,
                "joined the metadata raft group as a learner"
            );
            self.join = None;
            return;
        }
        // A restarted member finds itself in its own log once it replayed it.
        if since.elapsed() < JOIN_FIRST_WAIT {
            return;
        }
        match last {
            Some(t) if t.elapsed() < JOIN_RETRY => return,
            Some(_) => debug!(
                node_id = self.me.0,
                "asking the voters again to add this broker"
            ),
            None => info!(node_id = self.me.0, raft = %addr,
                "asking the voters to add this broker as a learner"),
        }
        *last = Some(Instant::now());
        for m in Node::<FsDisk>::join_messages(NodeId(self.me.0 as u64), addr, &self.voters) {
            self.transport.send(m);
        }
    }

    /// Sends to every learner the committed membership names (at its raft address),
    /// and stops sending to removed ones; voters come from the quorum.
    fn sync_peers(&mut self) {
        let known = self.transport.peers();
        for (id, addr) in &self.node.state().raft_learners {
            let id = NodeId(*id);
            if id.0 == self.me.0 as u64 {
                continue;
            }
            let Some(sock) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
                warn!(node = %id, %addr, "cannot resolve a learner's raft address");
                continue;
            };
            if known.get(&id) != Some(&sock) {
                info!(node = %id, raft = %sock, "raft peer added");
                if let Err(e) = self.transport.add_peer(id, sock) {
                    warn!(node = %id, error = %e, "cannot start sending to a raft peer");
                }
            }
        }
        for id in known.keys() {
            if !self.voters.contains(id) && !self.node.state().raft_learners.contains_key(&id.0) {
                info!(node = %id, "raft peer removed");
                self.transport.remove_peer(*id);
            }
        }
    }

    fn expire_requests(&mut self) {
        let late: Vec<ProposalId> = self
            .pending
            .iter()
            .filter(|(_, (since, _))| since.elapsed() > CLUSTER_REQUEST_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some((_, reply)) = self.pending.remove(&id) {
                let _ = reply.send(Err(KafkaError::new(
                    ErrorCode::RequestTimedOut,
                    "the metadata change did not commit in time (no quorum?); it may still apply",
                )));
            }
        }
    }

    /// Decommissioned and unregistered: this process no longer takes part.
    fn gone(&self) -> bool {
        self.decommissioned && !self.node.state().brokers.contains_key(&self.me)
    }

    /// Tracks this broker's own decommission, and (controller) removes unregistered
    /// learners from the raft group, retrying every [`JOIN_RETRY`] until it applies.
    fn follow_decommissions(&mut self, applied: &[rill_raft::node::Applied], was_gone: bool) {
        let me = self.me;
        let state = self.node.state();
        // Several entries may apply in one cycle, so the state may never show the
        // Decommissioning step: look at the commands too.
        if state
            .brokers
            .get(&me)
            .is_some_and(|b| b.state == BrokerState::Decommissioning)
            || applied.iter().filter(|a| a.outcome.is_ok()).any(|a| {
                a.commands
                    .commands
                    .iter()
                    .any(|c| matches!(c, Command::DecommissionBroker { broker } if *broker == me))
            })
        {
            self.decommissioned = true;
        }
        if !was_gone && self.gone() {
            tracing::warn!(
                node_id = me.0,
                "this broker was decommissioned: it holds no replicas and left the cluster; stop this process (a restart registers it again)"
            );
        }
        for a in applied.iter().filter(|a| a.outcome.is_ok()) {
            for c in &a.commands.commands {
                if let Command::UnregisterBroker { broker } = c {
                    let node = NodeId(broker.0 as u64);
                    if self.node.state().raft_learners.contains_key(&node.0) {
                        self.leaving_members.insert(node, None);
                    }
                }
            }
        }
        if self.controller.is_none() {
            return;
        }
        let learners = &self.node.state().raft_learners;
        self.leaving_members
            .retain(|n, _| learners.contains_key(&n.0));
        let due: Vec<NodeId> = self
            .leaving_members
            .iter()
            .filter(|(_, t)| t.is_none_or(|t| t.elapsed() >= JOIN_RETRY))
            .map(|(n, _)| *n)
            .collect();
        for n in due {
            info!(node = %n, "removing the decommissioned learner from the metadata raft group");
            if let Err(e) = self.node.propose_remove_member(n) {
                debug!(node = %n, error = %e, "raft member removal not accepted now; retrying");
            }
            self.leaving_members.insert(n, Some(Instant::now()));
        }
    }

    fn registered(&self) -> bool {
        let Command::RegisterBroker { host, port, .. } = &self.registration else {
            return false;
        };
        self.node
            .state()
            .brokers
            .get(&self.me)
            .is_some_and(|b| &b.host == host && b.port == *port && b.state != BrokerState::Fenced)
    }

    fn step(&mut self, m: rill_raft::raft::eraftpb::Message) {
        if let Err(e) = self.node.step(m) {
            warn!(error = %e, "dropping a raft message");
        }
    }

    fn propose(&mut self, commands: Vec<Command>) {
        // Followers forward proposals to the leader; one lost in a leader change is
        // proposed again at the next heartbeat.
        if let Err(e) = self.node.propose(&Proposal { commands }) {
            tracing::debug!(error = %e, "metadata proposal not accepted now; retrying later");
        }
    }

    /// One Ready cycle: persist, send, apply, run the controller, publish.
    fn cycle(&mut self) -> Result<(), rill_raft::Error> {
        if !self.node.has_ready() && self.controller.is_none() {
            return Ok(());
        }
        let was_gone = self.gone();
        let out = self.node.handle_ready()?;
        for m in out.messages {
            self.transport.send(m);
        }
        let now = Millis(now_ms());
        let mut changed = !out.applied.is_empty();
        if let Some(rc) = out.role_change {
            changed = true;
            let leader = rc.role == Role::Leader;
            info!(role = ?rc.role, leader = ?rc.leader.map(|n| n.0), term = rc.term,
                "metadata raft role changed");
            match (leader, self.controller.is_some()) {
                (true, false) => {
                    info!(node_id = self.me.0, "this broker is now the controller");
                    self.controller = Some(Controller::new(self.controller_config.clone(), now));
                }
                (false, true) => self.controller = None,
                _ => {}
            }
        }
        for a in &out.applied {
            let Some(id) = a.proposal else { continue };
            if let Some((_, reply)) = self.pending.remove(&id) {
                let _ = reply.send(a.outcome.clone().map_err(|r| {
                    let code = match r {
                        rill_raft::metadata::Rejection::TopicExists(_) => {
                            ErrorCode::TopicAlreadyExists
                        }
                        rill_raft::metadata::Rejection::InvalidTopicName(_) => {
                            ErrorCode::InvalidTopicException
                        }
                        rill_raft::metadata::Rejection::UnknownTopic(_) => {
                            ErrorCode::UnknownTopicOrPartition
                        }
                        rill_raft::metadata::Rejection::InvalidReplicas(_)
                        | rill_raft::metadata::Rejection::UnknownBroker(_) => {
                            ErrorCode::InvalidReplicaAssignment
                        }
                        rill_raft::metadata::Rejection::NoReassignment(..) => {
                            ErrorCode::NoReassignmentInProgress
                        }
                        rill_raft::metadata::Rejection::ReassignmentInProgress(..) => {
                            ErrorCode::ReassignmentInProgress
                        }
                        rill_raft::metadata::Rejection::UnknownPartition(..) => {
                            ErrorCode::UnknownTopicOrPartition
                        }
                        _ => ErrorCode::InvalidRequest,
                    };
                    KafkaError::new(code, format!("the cluster refused the change: {r:?}"))
                }));
            }
        }
        if self.controller.is_some()
            && self.node.state().cluster_id.is_empty()
            && self
                .named_at
                .is_none_or(|t| t.elapsed() >= CLUSTER_REQUEST_TIMEOUT)
        {
            // The first controller names the cluster; every broker reports that id.
            self.named_at = Some(Instant::now());
            self.propose(vec![Command::InitCluster {
                cluster_id: crate::metadata::new_cluster_id(),
            }]);
        }
        self.follow_decommissions(&out.applied, was_gone);
        if let Some(c) = &mut self.controller {
            c.observe(&out.applied, now);
            let proposals = c.tick(self.node.state(), now);
            for p in proposals {
                if let Err(e) = self.node.propose(&p) {
                    tracing::debug!(error = %e, "controller proposal not accepted now");
                }
            }
        }
        if changed {
            self.sync_peers();
            self.publish();
        }
        Ok(())
    }

    fn publish(&self) {
        let view = Arc::new(view_of(
            self.node.state(),
            self.node.leader().map(|n| n.0 as i32),
        ));
        let mut current = self.cluster.view.lock().expect("cluster view lock");
        if **current != *view {
            *current = view;
        }
    }
}

fn view_of(state: &MetadataState, controller: Option<i32>) -> ClusterView {
    ClusterView {
        cluster_id: (!state.cluster_id.is_empty()).then(|| state.cluster_id.clone()),
        brokers: state
            .brokers
            .values()
            .map(|b| BrokerView {
                id: b.id.0,
                host: b.host.clone(),
                port: b.port as i32,
                rack: b.rack.clone(),
                alive: b.state != BrokerState::Fenced,
            })
            .collect(),
        controller,
        topics: state
            .topics
            .values()
            .map(|t| {
                (
                    t.name.clone(),
                    TopicView {
                        id: uuid::Uuid::from_u64_pair(TOPIC_UUID_PREFIX, t.id.0),
                        configs: t
                            .configs
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| PartitionView {
                                leader: p.leader.map_or(-1, |b| b.0),
                                leader_epoch: p.leader_epoch.0,
                                replicas: p.replicas.iter().map(|b| b.0).collect(),
                                isr: p.isr.iter().map(|b| b.0).collect(),
                                partition_epoch: p.partition_epoch,
                                adding: p.adding.iter().map(|b| b.0).collect(),
                                removing: p.removing.iter().map(|b| b.0).collect(),
                            })
                            .collect(),
                    },
                )
            })
            .collect(),
        broker_configs: state
            .broker_configs
            .iter()
            .map(|(b, c)| (b.map(|b| b.0), c.clone()))
            .collect(),
        applied_index: state.applied_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_strings_parse_or_say_what_is_wrong() {
        let q = parse_quorum("1@127.0.0.11:9093, 2@127.0.0.12:9093,3@127.0.0.13:9093").unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q[1].id, 2);
        assert_eq!(q[2].addr, "127.0.0.13:9093");
        assert_eq!(
            q[2].resolve().unwrap(),
            "127.0.0.13:9093".parse::<SocketAddr>().unwrap()
        );
        // Names are not resolved while parsing (configs are checked anywhere).
        assert!(parse_quorum("1@broker-1.invalid:9093").is_ok());
        for (bad, says) in [
            ("1@127.0.0.1:9093,2@127.0.0.1:9094", "use 1, 3 or 5"),
            ("0@127.0.0.1:9093", "start at 1"),
            ("1@127.0.0.1:9093,1@127.0.0.1:9094,2@127.0.0.1:1", "twice"),
            ("x@127.0.0.1:9093", "not a node id"),
            ("127.0.0.1:9093", "not id@host:port"),
            ("1@hostonly", "not host:port"),
        ] {
            let e = parse_quorum(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
