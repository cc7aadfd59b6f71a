//! Deterministic simulation harness for the metadata raft group: seeded
//! RNG, virtual time, an event queue, a lossy/duplicating/reordering
//! network with partitions, and nodes that crash (losing unsynced writes,
//! sometimes tearing the last write) and restart. Each node runs the real
//! driver ([`Node`]), state machine and, while it leads, the controller; a
//! tiny broker model heartbeats, makes admin requests and plays the data
//! plane (followers catching up join the ISR, dead ones leave it).
//!
//! Invariants are checked after every event; the first violation ends the
//! run with an error naming the seed, the virtual time and what broke.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use rill_raft::controller::{self, Controller, ControllerConfig};
use rill_raft::disk::MemDisk;
use rill_raft::ids::{BrokerId, LeaderEpoch, Millis, NodeId, PartitionIndex, TopicId};
use rill_raft::metadata::{
    BrokerState, Command, MetadataState, Proposal, UNCLEAN_LEADER_ELECTION_CONFIG,
};
use rill_raft::node::{Node, NodeConfig, Output, Role};
use rill_raft::raft::eraftpb::Message;
pub use rill_raft::sim_rng::SimRng;
use rill_raft::storage::StorageOptions;

/// FNV-1a over u64 words: the trace fingerprint of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace(pub u64);

impl Trace {
    fn add(&mut self, words: &[u64]) {
        for w in words {
            for b in w.to_le_bytes() {
                self.0 ^= b as u64;
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Shape and fault rates of one run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub voters: usize,
    pub learners: usize,
    /// Virtual ms of faults and client load.
    pub chaos_ms: u64,
    /// Virtual ms allowed, after healing, to converge.
    pub heal_budget_ms: u64,
    pub loss: f64,
    pub duplicate: f64,
    /// Chance per second that a node crashes.
    pub crash_per_s: f64,
    /// Chance per second that the network partitions.
    pub partition_per_s: f64,
}

impl SimConfig {
    /// Draws a configuration from the seed: 3 or 5 voters, one learner,
    /// fault rates from none to harsh.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut r = SimRng::new(seed ^ 0x5EED);
        SimConfig {
            voters: if seed & 1 == 0 { 3 } else { 5 },
            learners: 1,
            chaos_ms: 20_000,
            heal_budget_ms: 60_000,
            loss: [0.0, 0.02, 0.1, 0.25][(r.next_u64() % 4) as usize],
            duplicate: [0.0, 0.02, 0.1][(r.next_u64() % 3) as usize],
            crash_per_s: [0.0, 0.1, 0.3][(r.next_u64() % 3) as usize],
            partition_per_s: [0.0, 0.1, 0.25][(r.next_u64() % 3) as usize],
        }
    }
}

const TICK_MS: u64 = 100;
const BROKER_HEARTBEAT_MS: u64 = 500;
const CONTROLLER_TICK_MS: u64 = 250;
const DATA_PLANE_MS: u64 = 400;
const CLIENT_OP_MS: u64 = 700;
const SESSION_TIMEOUT_MS: u64 = 3_000;

#[derive(Clone, Debug)]
enum Event {
    Deliver(Message),
    Tick(usize),
    Heartbeat(usize),
    ControllerTick(usize),
    DataPlane(usize),
    ClientOp,
    Chaos,
    Restart(usize),
    Heal,
}

struct SimNode {
    nid: NodeId,
    broker: BrokerId,
    config: NodeConfig,
    disk: MemDisk,
    node: Option<Node<MemDisk>>,
    controller: Option<Controller>,
    restarts: u64,
    registered: bool,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub seed: u64,
    pub trace: Trace,
    pub events: u64,
    pub entries_applied: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub snapshots_installed: u64,
    pub leader_changes: u64,
    pub converged_after_heal_ms: u64,
    pub virtual_ms: u64,
}

pub struct Sim {
    seed: u64,
    cfg: SimConfig,
    rng: SimRng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<SimNode>,
    /// Partition side of each node (same side = connected).
    side: Vec<u8>,
    healed: bool,
    trace: Trace,
    // Invariant memory.
    leader_of_term: BTreeMap<u64, NodeId>,
    state_at_index: BTreeMap<u64, u64>,
    entry_at_index: BTreeMap<u64, (u64, u64)>,
    partition_epoch_leader: BTreeMap<(TopicId, PartitionIndex, LeaderEpoch), Option<BrokerId>>,
    last_checked_applied: Vec<u64>,
    topic_counter: u64,
    summary: RunSummary,
}

type SimResult<T> = Result<T, String>;

impl Sim {
    pub fn new(seed: u64, cfg: SimConfig) -> Sim {
        let n = cfg.voters + cfg.learners;
        let voters: Vec<NodeId> = (1..=cfg.voters as u64).map(NodeId).collect();
        let learners: Vec<NodeId> = (cfg.voters as u64 + 1..=n as u64).map(NodeId).collect();
        let nodes = (1..=n as u64)
            .map(|i| {
                let nid = NodeId(i);
                let mut config = NodeConfig::new(nid, voters.clone(), learners.clone());
                config.seed = seed;
                // Small numbers so snapshots, compaction, snapshot transfer
                // and segment rolling all happen within a run.
                config.snapshot_interval_entries = 40;
                config.compaction_lag_entries = 10;
                config.message_bytes_max = 16 << 10;
                config.inflight_messages_max = 16;
                config.storage = StorageOptions {
                    segment_bytes_max: 8 << 10,
                    ..StorageOptions::default()
                };
                SimNode {
                    nid,
                    broker: nid.broker(),
                    config,
                    disk: MemDisk::new(),
                    node: None,
                    controller: None,
                    restarts: 0,
                    registered: false,
                }
            })
            .collect();
        Sim {
            seed,
            rng: SimRng::new(seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            side: vec![0; n],
            healed: false,
            trace: Trace(0xcbf2_9ce4_8422_2325),
            leader_of_term: BTreeMap::new(),
            state_at_index: BTreeMap::new(),
            entry_at_index: BTreeMap::new(),
            partition_epoch_leader: BTreeMap::new(),
            last_checked_applied: vec![0; n],
            topic_counter: 0,
            summary: RunSummary {
                seed,
                trace: Trace(0),
                events: 0,
                entries_applied: 0,
                crashes: 0,
                partitions: 0,
                snapshots_installed: 0,
                leader_changes: 0,
                converged_after_heal_ms: 0,
                virtual_ms: 0,
            },
            cfg,
        }
    }

    fn fail<T>(&self, what: String) -> SimResult<T> {
        Err(format!(
            "seed {} (replay: RILL_SIM_SEED={} cargo test -p rill-raft --test simulation) at {} ms: {what}",
            self.seed, self.seed, self.now
        ))
    }

    fn schedule(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), e);
    }

    fn start_node(&mut self, i: usize) -> SimResult<()> {
        let n = &mut self.nodes[i];
        n.config.incarnation = n.restarts;
        match Node::open(n.config.clone(), n.disk.clone()) {
            Ok(node) => {
                n.node = Some(node);
                n.controller = None;
                Ok(())
            }
            Err(e) => self.fail(format!("node {i} failed to reopen its disk: {e}")),
        }
    }

    /// Runs the whole scenario: chaos, then heal and demand convergence.
    pub fn run(mut self) -> SimResult<RunSummary> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
            let phase = self.rng.range(0, TICK_MS - 1);
            self.schedule(phase, Event::Tick(i));
            let hb = self.rng.range(0, BROKER_HEARTBEAT_MS);
            self.schedule(hb, Event::Heartbeat(i));
            self.schedule(phase + 1, Event::ControllerTick(i));
            self.schedule(phase + 2, Event::DataPlane(i));
        }
        self.schedule(CLIENT_OP_MS, Event::ClientOp);
        self.schedule(1000, Event::Chaos);
        self.schedule(self.cfg.chaos_ms, Event::Heal);
        let deadline = self.cfg.chaos_ms + self.cfg.heal_budget_ms;
        // A proposal can be lost with a leader change: re-propose the
        // marker until it applies, as a client would.
        let mut marker_sent_at: Option<u64> = None;
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            if at > deadline {
                break;
            }
            self.now = at;
            self.summary.events += 1;
            self.handle(ev)?;
            if self.healed {
                if marker_sent_at.is_none_or(|t| self.now >= t + 2000) {
                    if self.propose_marker() {
                        marker_sent_at = Some(self.now);
                    }
                } else if self.converged() {
                    self.summary.converged_after_heal_ms = self.now - self.cfg.chaos_ms;
                    self.summary.virtual_ms = self.now;
                    self.summary.trace = self.trace;
                    return Ok(self.summary);
                }
            }
        }
        let report = self.convergence_report();
        self.fail(format!(
            "no convergence within {} ms after healing: {report}",
            self.cfg.heal_budget_ms
        ))
    }

    fn handle(&mut self, ev: Event) -> SimResult<()> {
        match ev {
            Event::Deliver(m) => {
                let to = (m.to - 1) as usize;
                self.trace.add(&[
                    1,
                    self.now,
                    m.from,
                    m.to,
                    m.get_msg_type() as u64,
                    m.term,
                    m.index,
                ]);
                if let Some(node) = self.nodes[to].node.as_mut() {
                    if let Err(e) = node.step(m) {
                        return self.fail(format!("step on node {to}: {e}"));
                    }
                    self.drain(to)?;
                }
            }
            Event::Tick(i) => {
                self.schedule(self.now + TICK_MS, Event::Tick(i));
                if let Some(node) = self.nodes[i].node.as_mut() {
                    node.tick();
                    self.drain(i)?;
                }
            }
            Event::Heartbeat(i) => {
                self.schedule(self.now + BROKER_HEARTBEAT_MS, Event::Heartbeat(i));
                self.broker_heartbeat(i)?;
            }
            Event::ControllerTick(i) => {
                self.schedule(self.now + CONTROLLER_TICK_MS, Event::ControllerTick(i));
                self.controller_tick(i)?;
            }
            Event::DataPlane(i) => {
                self.schedule(self.now + DATA_PLANE_MS, Event::DataPlane(i));
                self.data_plane(i)?;
            }
            Event::ClientOp => {
                if !self.healed {
                    self.schedule(self.now + CLIENT_OP_MS, Event::ClientOp);
                    self.client_op()?;
                }
            }
            Event::Chaos => {
                if !self.healed {
                    self.schedule(self.now + 1000, Event::Chaos);
                    self.chaos();
                }
            }
            Event::Restart(i) => {
                if self.nodes[i].node.is_none() {
                    self.trace.add(&[2, self.now, i as u64]);
                    self.start_node(i)?;
                    self.drain(i)?;
                }
            }
            Event::Heal => {
                self.healed = true;
                self.side.iter_mut().for_each(|s| *s = 0);
                self.cfg.loss = 0.0;
                self.cfg.duplicate = 0.0;
                for i in 0..self.nodes.len() {
                    if self.nodes[i].node.is_none() {
                        self.start_node(i)?;
                        self.drain(i)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn chaos(&mut self) {
        if self.rng.chance(self.cfg.crash_per_s) {
            let i = (self.rng.next_u64() % self.nodes.len() as u64) as usize;
            if self.nodes[i].node.is_some() {
                self.nodes[i].node = None;
                self.nodes[i].controller = None;
                self.nodes[i].restarts += 1;
                self.summary.crashes += 1;
                let tear = self.rng.chance(0.5);
                let mut r = SimRng::new(self.rng.next_u64());
                self.nodes[i].disk.crash(&mut |unsynced| {
                    if tear && unsynced > 0 {
                        (r.next_u64() % unsynced as u64) as usize
                    } else {
                        0
                    }
                });
                let down = self.rng.range(300, 5000);
                self.schedule(self.now + down, Event::Restart(i));
                self.trace.add(&[3, self.now, i as u64]);
            }
        }
        if self.rng.chance(self.cfg.partition_per_s) {
            self.summary.partitions += 1;
            for s in self.side.iter_mut() {
                *s = 0;
            }
            // Cut a random non-empty minority or majority off.
            let n = self.nodes.len();
            let cut = self.rng.range(1, (n - 1) as u64);
            let mut idx: Vec<usize> = (0..n).collect();
            for k in 0..cut as usize {
                let j = k + (self.rng.next_u64() % (n - k) as u64) as usize;
                idx.swap(k, j);
                self.side[idx[k]] = 1;
            }
            self.trace.add(&[4, self.now, cut]);
        } else if self.rng.chance(0.3) {
            self.side.iter_mut().for_each(|s| *s = 0);
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let (from, to) = ((m.from - 1) as usize, (m.to - 1) as usize);
            if self.side[from] != self.side[to] || self.rng.chance(self.cfg.loss) {
                continue;
            }
            let copies = if self.rng.chance(self.cfg.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                // Mostly quick, sometimes slow: slow ones get reordered.
                let delay = if self.rng.chance(0.05) {
                    self.rng.range(50, 400)
                } else {
                    self.rng.range(1, 20)
                };
                self.schedule(self.now + delay, Event::Deliver(m.clone()));
            }
        }
    }

    /// Runs Ready cycles on node `i` until it has nothing more, routing
    /// messages and checking invariants after each.
    fn drain(&mut self, i: usize) -> SimResult<()> {
        loop {
            let Some(node) = self.nodes[i].node.as_mut() else {
                return Ok(());
            };
            if !node.has_ready() {
                return Ok(());
            }
            let out = match node.handle_ready() {
                Ok(o) => o,
                Err(e) => return self.fail(format!("handle_ready on node {i}: {e}")),
            };
            self.absorb(i, out)?;
            self.check(i)?;
        }
    }

    fn absorb(&mut self, i: usize, out: Output) -> SimResult<()> {
        let now = Millis(self.now);
        if let Some(rc) = out.role_change {
            self.trace
                .add(&[5, self.now, i as u64, rc.role as u64, rc.term]);
            self.summary.leader_changes += u64::from(rc.role == Role::Leader);
            let sn = &mut self.nodes[i];
            sn.controller = (rc.role == Role::Leader).then(|| {
                Controller::new(
                    ControllerConfig {
                        broker_session_timeout_ms: SESSION_TIMEOUT_MS,
                        retry_ms: 1000,
                        auto_leader_rebalance: true,
                    },
                    now,
                )
            });
        }
        if let Some(idx) = out.snapshot_installed {
            self.summary.snapshots_installed += 1;
            self.trace.add(&[6, self.now, i as u64, idx]);
        }
        for a in &out.applied {
            self.summary.entries_applied += 1;
            let h = hash_bytes(&a.commands.encode());
            self.trace.add(&[
                7,
                i as u64,
                a.index,
                a.term,
                h,
                u64::from(a.outcome.is_ok()),
            ]);
            match self.entry_at_index.get(&a.index) {
                Some(&(t, hh)) if (t, hh) != (a.term, h) => {
                    return self.fail(format!(
                        "node {i} applied entry {} term {} but term {t} was applied there before (committed entry changed)",
                        a.index, a.term
                    ));
                }
                None => {
                    self.entry_at_index.insert(a.index, (a.term, h));
                }
                _ => {}
            }
            if a.proposal.is_some_and(|p| p.node == self.nodes[i].nid) {
                for c in &a.commands.commands {
                    if matches!(c, Command::RegisterBroker { broker, .. } if *broker == self.nodes[i].broker)
                    {
                        self.nodes[i].registered = true;
                    }
                }
            }
        }
        if let Some(ctl) = self.nodes[i].controller.as_mut() {
            ctl.observe(&out.applied, now);
        }
        self.send(out.messages);
        Ok(())
    }

    fn check(&mut self, i: usize) -> SimResult<()> {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return Ok(());
        };
        if node.is_leader() {
            let term = node.term();
            let nid = node.id();
            match self.leader_of_term.get(&term) {
                Some(&other) if other != nid => {
                    return self.fail(format!("two leaders in term {term}: {other} and {nid}"));
                }
                None => {
                    self.leader_of_term.insert(term, nid);
                }
                _ => {}
            }
        }
        let state = node.state();
        let applied = state.applied_index;
        if applied == self.last_checked_applied[i] {
            return Ok(());
        }
        self.last_checked_applied[i] = applied;
        if let Err(e) = state.check_invariants() {
            return self.fail(format!("node {i} state invariant: {e}"));
        }
        let h = hash_bytes(&state.encode());
        match self.state_at_index.get(&applied) {
            Some(&other) if other != h => {
                return self.fail(format!(
                    "node {i} state at applied index {applied} differs from another replica's"
                ));
            }
            None => {
                self.state_at_index.insert(applied, h);
            }
            _ => {}
        }
        let mut violations = Vec::new();
        for t in state.topics.values() {
            for (pi, p) in t.partitions.iter().enumerate() {
                let key = (t.id, PartitionIndex(pi as i32), p.leader_epoch);
                match self.partition_epoch_leader.get(&key) {
                    Some(l) if *l != p.leader => violations.push(format!(
                        "{}-{pi} epoch {:?} led by {l:?} and {:?}",
                        t.name, p.leader_epoch, p.leader
                    )),
                    None => {
                        self.partition_epoch_leader.insert(key, p.leader);
                    }
                    _ => {}
                }
                if let Some(l) = p.leader {
                    if state.brokers.get(&l).map(|b| b.state) == Some(BrokerState::Fenced) {
                        violations.push(format!("fenced {l} leads {}-{pi}", t.name));
                    }
                }
            }
        }
        if let Some(v) = violations.first() {
            return self.fail(format!("node {i}: {v}"));
        }
        Ok(())
    }

    fn propose(&mut self, i: usize, p: Proposal) -> SimResult<()> {
        let Some(node) = self.nodes[i].node.as_mut() else {
            return Ok(());
        };
        // NotLeader and full queues are normal under faults: the caller
        // retries on its next timer, as the broker will.
        let _ = node.propose(&p);
        self.drain(i)
    }

    fn broker_heartbeat(&mut self, i: usize) -> SimResult<()> {
        let sn = &self.nodes[i];
        if sn.node.is_none() {
            return Ok(());
        }
        let b = sn.broker;
        let known = sn
            .node
            .as_ref()
            .is_some_and(|n| n.state().brokers.contains_key(&b));
        let cmd = if sn.registered && known {
            Command::BrokerHeartbeat { broker: b }
        } else {
            Command::RegisterBroker {
                broker: b,
                host: format!("broker{}.sim", b.0),
                port: 9092,
                rack: Some(format!("rack{}", b.0 % 3)),
                incarnation: 1,
            }
        };
        self.propose(
            i,
            Proposal {
                commands: vec![cmd],
            },
        )
    }

    fn controller_tick(&mut self, i: usize) -> SimResult<()> {
        let now = Millis(self.now);
        let sn = &mut self.nodes[i];
        let (Some(node), Some(ctl)) = (sn.node.as_ref(), sn.controller.as_mut()) else {
            return Ok(());
        };
        if !node.is_leader() {
            return Ok(());
        }
        let proposals = ctl.tick(node.state(), now);
        for p in proposals {
            self.propose(i, p)?;
        }
        Ok(())
    }

    /// The data plane, as far as metadata sees it: a partition leader adds
    /// live replicas that "caught up" to the ISR and drops dead ones.
    fn data_plane(&mut self, i: usize) -> SimResult<()> {
        let me = self.nodes[i].broker;
        let Some(node) = self.nodes[i].node.as_ref() else {
            return Ok(());
        };
        let up: BTreeSet<BrokerId> = self
            .nodes
            .iter()
            .filter(|n| n.node.is_some())
            .map(|n| n.broker)
            .collect();
        let state = node.state();
        let mut props = Vec::new();
        for t in state.topics.values() {
            for (pi, p) in t.partitions.iter().enumerate() {
                if p.leader != Some(me) {
                    continue;
                }
                let mut isr = p.isr.clone();
                let before = isr.clone();
                isr.retain(|b| *b == me || up.contains(b));
                for r in &p.replicas {
                    if !isr.contains(r) && up.contains(r) && state.is_live(*r) {
                        isr.push(*r);
                    }
                }
                if isr != before {
                    props.push(Proposal {
                        commands: vec![Command::ChangePartition {
                            topic: t.id,
                            partition: PartitionIndex(pi as i32),
                            partition_epoch: p.partition_epoch,
                            leader: p.leader,
                            isr,
                        }],
                    });
                }
            }
        }
        for p in props {
            if self.rng.chance(0.5) {
                self.propose(i, p)?;
            }
        }
        Ok(())
    }

    /// An admin request handled by whichever node leads.
    fn client_op(&mut self) -> SimResult<()> {
        let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.node.as_ref().is_some_and(|n| n.is_leader()))
        else {
            return Ok(());
        };
        let state = self.nodes[i]
            .node
            .as_ref()
            .map(|n| n.state().clone())
            .unwrap_or_default();
        let alive = state
            .brokers
            .values()
            .filter(|b| b.state == BrokerState::Alive)
            .count();
        let topics: Vec<TopicId> = state.topics.keys().copied().collect();
        let brokers: Vec<BrokerId> = state.brokers.keys().copied().collect();
        let op = self.rng.next_u64() % 10;
        let proposal = match op {
            0..=3 if alive > 0 => {
                self.topic_counter += 1;
                let name = format!("t{}", self.topic_counter);
                let partitions = self.rng.range(1, 4) as i32;
                let rf = alive.min(3);
                let mut configs = BTreeMap::new();
                if self.rng.chance(0.3) {
                    configs.insert(
                        UNCLEAN_LEADER_ELECTION_CONFIG.to_string(),
                        "true".to_string(),
                    );
                }
                controller::create_topic(&state, &name, partitions, rf, configs).ok()
            }
            4 => self.rng.pick(&topics).map(|t| Proposal {
                commands: vec![Command::AlterTopicConfigs {
                    topic: *t,
                    changes: vec![(
                        UNCLEAN_LEADER_ELECTION_CONFIG.to_string(),
                        Some(
                            if self.rng.chance(0.5) {
                                "true"
                            } else {
                                "false"
                            }
                            .to_string(),
                        ),
                    )],
                }],
            }),
            5 | 6 => match self.rng.pick(&topics).copied() {
                Some(t) if !brokers.is_empty() => {
                    let parts = state.topics[&t].partitions.len() as u64;
                    let pi = PartitionIndex((self.rng.next_u64() % parts) as i32);
                    let rf = state.topics[&t].partitions[pi.0 as usize]
                        .replicas
                        .len()
                        .min(brokers.len());
                    let mut target = brokers.clone();
                    for k in 0..target.len() {
                        let j = k + (self.rng.next_u64() % (target.len() - k) as u64) as usize;
                        target.swap(k, j);
                    }
                    target.truncate(rf);
                    Some(Proposal {
                        commands: vec![Command::BeginReassignment {
                            topic: t,
                            partition: pi,
                            target,
                        }],
                    })
                }
                _ => None,
            },
            7 => self.rng.pick(&topics).and_then(|t| {
                let name = state.topics[t].name.clone();
                let now = state.topics[t].partitions.len() as i32;
                controller::create_partitions(&state, &name, now + 1).ok()
            }),
            8 if topics.len() > 4 => self.rng.pick(&topics).map(|t| Proposal {
                commands: vec![Command::DeleteTopic { topic: *t }],
            }),
            _ => Some(Proposal {
                commands: vec![Command::AlterBrokerConfigs {
                    broker: self.rng.pick(&brokers).copied(),
                    changes: vec![("log.retention.ms".into(), Some(self.now.to_string()))],
                }],
            }),
        };
        match proposal {
            Some(p) => self.propose(i, p),
            None => Ok(()),
        }
    }

    fn marker(&self) -> Proposal {
        Proposal {
            commands: vec![Command::AlterBrokerConfigs {
                broker: None,
                changes: vec![("sim.healed".into(), Some(self.seed.to_string()))],
            }],
        }
    }

    fn propose_marker(&mut self) -> bool {
        let p = self.marker();
        let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.node.as_ref().is_some_and(|n| n.is_leader()))
        else {
            return false;
        };
        let ok = self.nodes[i]
            .node
            .as_mut()
            .is_some_and(|n| n.propose(&p).is_ok());
        ok && self.drain(i).is_ok()
    }

    /// Healed cluster is done when: a leader exists, every node applied
    /// the marker and holds the same state, every broker is registered and
    /// Alive, and every partition has a leader.
    fn converged(&self) -> bool {
        self.convergence_report().is_empty()
    }

    fn convergence_report(&self) -> String {
        let mut why = Vec::new();
        if !self
            .nodes
            .iter()
            .any(|n| n.node.as_ref().is_some_and(|n| n.is_leader()))
        {
            why.push("no leader".to_string());
        }
        let states: Vec<&MetadataState> = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .map(|n| n.state())
            .collect();
        if states.len() != self.nodes.len() {
            why.push("a node is down".into());
        }
        let marker = self.seed.to_string();
        for (i, s) in states.iter().enumerate() {
            let has = s
                .broker_configs
                .get(&None)
                .and_then(|c| c.get("sim.healed"))
                == Some(&marker);
            if !has {
                why.push(format!(
                    "node {i} has not applied the marker (applied {})",
                    s.applied_index
                ));
            }
        }
        if let Some(first) = states.first() {
            if states.iter().any(|s| s != first) {
                why.push("replicas differ".into());
            }
            for n in &self.nodes {
                match first.brokers.get(&n.broker) {
                    Some(b) if b.state == BrokerState::Alive => {}
                    other => why.push(format!(
                        "broker {} is {:?}",
                        n.broker,
                        other.map(|b| b.state)
                    )),
                }
            }
            for t in first.topics.values() {
                for (pi, p) in t.partitions.iter().enumerate() {
                    if p.leader.is_none() {
                        why.push(format!("{}-{pi} has no leader (isr {:?})", t.name, p.isr));
                    }
                }
            }
        }
        why.join("; ")
    }
}

/// Runs one seed with the configuration drawn from it.
pub fn run_seed(seed: u64) -> SimResult<RunSummary> {
    Sim::new(seed, SimConfig::from_seed(seed)).run()
}
