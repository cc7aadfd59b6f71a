//! The metadata thread (`rill-metadata`): drives this broker's raft member (the Ready loop
//! in raft-rs's fixed order: persist, send, apply), runs the controller while this member
//! leads, registers and heartbeats for this broker, turns shards' requests into proposals,
//! answers them in the asking shard's mailbox once applied, and publishes the next image.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rill_net::ErrorCode;
use rill_raft::controller::{Controller, ControllerConfig, PlacementError};
use rill_raft::disk::FsDisk;
use rill_raft::ids::{BrokerId, Millis, NodeId};
use rill_raft::metadata::{BrokerState, Command, Proposal};
use rill_raft::node::{Node, ProposalId, Role};
use rill_raft::transport::{TcpTransport, Transport};
use tracing::{debug, info, warn};

use crate::errors::KafkaError;
use crate::metadata::raft::{image_of_state, Cluster, ClusterOp, ClusterRequest, ReplyTo};

/// Raft messages taken from the transport per loop turn.
const RAFT_MESSAGES_PER_TURN_MAX: usize = 1024;
/// How long the loop waits for a message before doing its timed work.
const LOOP_WAIT: Duration = Duration::from_millis(5);
/// How often a learner that is not in the group yet asks the voters again.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// How long a learner replays its own log before deciding it is not a member yet.
const JOIN_FIRST_WAIT: Duration = Duration::from_millis(500);
/// How long an admin request waits for its change to commit before it times out.
const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Proposals of shards' requests awaiting their raft entry.
const PENDING_REQUESTS_MAX: usize = 4096;
/// After the raft leader changes, how long a proposal made before may still apply (the new
/// leader may have it) before it is proposed again: one the old leader took with it is
/// lost, and its client should not wait the whole timeout.
const LEADER_CHANGE_GRACE: Duration = Duration::from_secs(1);
/// How often a member that waits (no leader, no cluster id, not registered) says so.
const WAIT_REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Proposals of one request at most (the first and its re-proposals).
const PROPOSALS_PER_REQUEST_MAX: usize = 5;

/// A shard's request waiting for its change to apply.
struct PendingRequest {
    started: Instant,
    reply_to: ReplyTo,
    /// Proposed again after a leader change: every change here is safe to apply twice
    /// (the second is refused, or sets what the first set); the first one to apply answers.
    proposal: Proposal,
    /// The raft leader when it was last proposed.
    proposed_under: Option<u64>,
    proposals: usize,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The metadata thread's state.
pub(super) struct Driver {
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
    /// Proposals in flight and the request each belongs to.
    pending: BTreeMap<ProposalId, u64>,
    waiting: BTreeMap<u64, PendingRequest>,
    next_request: u64,
    /// The raft leader last seen, and when it changed.
    leader_seen: Option<u64>,
    leader_changed_at: Option<Instant>,
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
    /// (applied index, controller) of the last image published.
    published: Option<(u64, Option<i32>)>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cluster: Arc<Cluster>,
        node: Node<FsDisk>,
        transport: TcpTransport,
        controller_config: ControllerConfig,
        me: BrokerId,
        registration: Command,
        tick: Duration,
        heartbeat: Duration,
        requests: Receiver<ClusterRequest>,
        join: Option<(String, Instant, Option<Instant>)>,
        voters: Vec<NodeId>,
    ) -> Driver {
        Driver {
            cluster,
            node,
            transport,
            controller: None,
            controller_config,
            me,
            registration,
            tick,
            heartbeat,
            requests,
            pending: BTreeMap::new(),
            waiting: BTreeMap::new(),
            next_request: 0,
            leader_seen: None,
            leader_changed_at: None,
            named_at: None,
            join,
            voters,
            decommissioned: false,
            leaving_members: BTreeMap::new(),
            published: None,
        }
    }

    pub(super) fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut last_heartbeat: Option<Instant> = None;
        let mut last_register: Option<Instant> = None;
        let mut last_wait_report = Instant::now();
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
            self.report_waiting(&mut last_wait_report);
            if let Err(e) = self.cycle() {
                // The raft log could not be written: this member cannot go on safely.
                tracing::error!(error = %e, "the metadata raft member failed; stopping the broker");
                std::process::exit(3);
            }
        }
        info!("metadata raft member stopped");
    }

    /// Says what this member waits for, every [`WAIT_REPORT_INTERVAL`] while the cluster is
    /// not usable from here (no leader, no cluster id, this broker not registered): a broker
    /// never waits in silence.
    fn report_waiting(&self, last: &mut Instant) {
        if last.elapsed() < WAIT_REPORT_INTERVAL {
            return;
        }
        let state = self.node.state();
        let waiting_for = if self.node.leader().is_none() {
            Some("a quorum of the metadata raft voters to elect a leader (are the other voters up and reachable on their raft ports?)")
        } else if state.cluster_id.is_empty() {
            Some("the controller to name the cluster")
        } else if !self.registered() && !self.gone() {
            Some("this broker's registration to commit")
        } else {
            None
        };
        if let Some(what) = waiting_for {
            *last = Instant::now();
            warn!(node_id = self.me.0, voters = ?self.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
                applied_index = state.applied_index, "the metadata raft member is waiting for {what}");
        }
    }

    /// Turns an admin request into a proposal (placed against this member's copy of the
    /// state; the state machine refuses it if that copy was stale) and proposes it.
    fn start_request(&mut self, r: ClusterRequest) {
        let state = self.node.state();
        let proposal = match &r.op {
            ClusterOp::CreateTopic {
                name,
                replication_factor,
                partitions,
                assignment: Some(assignment),
                configs,
            } => {
                let _ = (replication_factor, partitions);
                if state.topic_ids.contains_key(name) {
                    Err(KafkaError::new(
                        ErrorCode::TopicAlreadyExists,
                        format!("topic `{name}` already exists"),
                    ))
                } else {
                    Ok(Proposal {
                        commands: vec![Command::CreateTopic {
                            name: name.clone(),
                            configs: configs.clone(),
                            assignment: brokers(assignment),
                        }],
                    })
                }
            }
            ClusterOp::CreateTopic {
                name,
                partitions,
                replication_factor,
                assignment: None,
                configs,
            } => rill_raft::controller::create_topic(
                state,
                name,
                *partitions,
                *replication_factor,
                configs.clone(),
            )
            .map_err(placement_error),
            ClusterOp::DeleteTopic { name } => match state.topic_ids.get(name) {
                Some(id) => Ok(Proposal {
                    commands: vec![Command::DeleteTopic { topic: *id }],
                }),
                None => Err(KafkaError::unknown_topic(name)),
            },
            ClusterOp::CreatePartitions {
                name,
                count,
                assignment: Some(assignment),
            } => match state.topic_by_name(name) {
                Some(t) if t.partitions.len() + assignment.len() == *count as usize => Ok(Proposal {
                    commands: vec![Command::CreatePartitions {
                        topic: t.id,
                        assignment: brokers(assignment),
                    }],
                }),
                Some(t) => Err(KafkaError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    format!(
                        "topic `{name}` has {} partitions: {} assignments do not make {count}",
                        t.partitions.len(),
                        assignment.len()
                    ),
                )),
                None => Err(KafkaError::unknown_topic(name)),
            },
            ClusterOp::CreatePartitions {
                name,
                count,
                assignment: None,
            } => rill_raft::controller::create_partitions(state, name, *count).map_err(placement_error),
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
            }
            | ClusterOp::ElectLeader {
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
                self.cluster.answer(r.reply_to, Err(e));
                return;
            }
        };
        if self.waiting.len() >= PENDING_REQUESTS_MAX {
            self.cluster.answer(
                r.reply_to,
                Err(KafkaError::new(
                    ErrorCode::ThrottlingQuotaExceeded,
                    "too many metadata changes waiting for the raft log; retry",
                )),
            );
            return;
        }
        let n = self.next_request;
        self.next_request += 1;
        let mut request = PendingRequest {
            started: Instant::now(),
            reply_to: r.reply_to,
            proposal,
            proposed_under: None,
            proposals: 0,
        };
        // Without a raft leader it waits (until the request timeout) for one to appear.
        match self.node.propose(&request.proposal) {
            Ok(id) => {
                request.proposed_under = self.node.leader().map(|l| l.0);
                request.proposals = 1;
                self.pending.insert(id, n);
            }
            Err(e) => {
                debug!(error = %e, "no metadata raft leader to take the change yet; it waits")
            }
        }
        self.waiting.insert(n, request);
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
        let leader = self.node.leader().map(|n| n.0);
        if leader != self.leader_seen {
            self.leader_seen = leader;
            self.leader_changed_at = Some(Instant::now());
        }
        // Proposed under an older leader, not applied a while after the change: propose
        // again to the new one (as Kafka's brokers keep forwarding to the active controller).
        let settled = self
            .leader_changed_at
            .is_some_and(|c| c.elapsed() > LEADER_CHANGE_GRACE);
        let unproposed = self.waiting.values().any(|r| r.proposals == 0);
        if let (Some(l), true) = (leader, settled || unproposed) {
            let stale: Vec<u64> = self
                .waiting
                .iter()
                .filter(|(_, r)| {
                    r.proposals < PROPOSALS_PER_REQUEST_MAX
                        && (r.proposals == 0 || (settled && r.proposed_under != Some(l)))
                })
                .map(|(n, _)| *n)
                .collect();
            for n in stale {
                let Some(r) = self.waiting.get_mut(&n) else {
                    continue;
                };
                match self.node.propose(&r.proposal) {
                    Ok(id) => {
                        debug!(
                            request = n,
                            leader = l,
                            "proposing a metadata change again after a leader change"
                        );
                        r.proposed_under = Some(l);
                        r.proposals += 1;
                        self.pending.insert(id, n);
                    }
                    Err(e) => debug!(error = %e, "metadata change not proposed again yet"),
                }
            }
        }
        let late: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, r)| r.started.elapsed() > CLUSTER_REQUEST_TIMEOUT)
            .map(|(n, _)| *n)
            .collect();
        for n in late {
            if let Some(r) = self.waiting.remove(&n) {
                self.pending.retain(|_, m| *m != n);
                self.cluster.answer(
                    r.reply_to,
                    Err(KafkaError::new(
                        ErrorCode::RequestTimedOut,
                        "the metadata change did not commit in time (no quorum?); it may still apply",
                    )),
                );
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
        let Command::RegisterBroker {
            host,
            port,
            incarnation,
            ..
        } = &self.registration
        else {
            return false;
        };
        // A restart is a new incarnation: it registers again even at the same address.
        self.node.state().brokers.get(&self.me).is_some_and(|b| {
            &b.host == host
                && b.port == *port
                && b.incarnation == *incarnation
                && b.state != BrokerState::Fenced
        })
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
            let Some(n) = self.pending.remove(&id) else {
                continue;
            };
            // The first of a request's proposals to apply answers it; the others are dropped.
            let Some(request) = self.waiting.remove(&n) else {
                continue;
            };
            self.pending.retain(|_, m| *m != n);
            let reply_to = request.reply_to;
            {
                let index = a.index;
                let reply = a.outcome.clone().map(|()| index).map_err(|r| {
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
                        rill_raft::metadata::Rejection::IneligibleLeader(_)
                        | rill_raft::metadata::Rejection::UncleanElectionDisabled(_) => {
                            ErrorCode::EligibleLeadersNotAvailable
                        }
                        _ => ErrorCode::InvalidRequest,
                    };
                    KafkaError::new(code, format!("the cluster refused the change: {r:?}"))
                });
                self.cluster.answer(reply_to, reply);
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
                cluster_id: crate::metadata::registry::new_cluster_id(),
                broker_token: crate::metadata::registry::new_broker_token(),
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

    /// Publishes the image of the applied state when it changed since the last one.
    fn publish(&mut self) {
        let controller = self.node.leader().map(|n| n.0 as i32);
        let key = (self.node.state().applied_index, controller);
        if self.published == Some(key) {
            return;
        }
        self.published = Some(key);
        let image = image_of_state(self.node.state(), controller, &self.cluster.context);
        self.cluster.publish(image);
    }
}

fn placement_error(e: PlacementError) -> KafkaError {
    let code = match e {
        PlacementError::NotEnoughBrokers { .. } => ErrorCode::InvalidReplicationFactor,
        PlacementError::InvalidPartitionCount(_) => ErrorCode::InvalidPartitions,
        PlacementError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
        PlacementError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
    };
    KafkaError::new(code, e.to_string())
}

fn brokers(assignment: &[Vec<i32>]) -> Vec<Vec<BrokerId>> {
    assignment
        .iter()
        .map(|r| r.iter().map(|b| BrokerId(*b)).collect())
        .collect()
}
