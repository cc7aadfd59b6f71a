//! The raft-rs driver: [`Node`] owns one member of the metadata raft group
//! (raft-rs `RawNode`, its [`DiskStorage`] and the applied
//! [`MetadataState`]). It is sans-IO towards the network and time: the
//! owner (shard 0 in the broker, the harness in the simulation) calls
//! [`Node::tick`] on a timer, [`Node::step`] for each message that arrived,
//! [`Node::propose`] for commands, and [`Node::handle_ready`] after any of
//! them, then sends the returned messages with its transport. Disk writes
//! happen inside `handle_ready` through the [`Disk`] trait (synchronous; the
//! metadata log is small and fsyncs are batched one per Ready).
//!
//! Ready order, as raft-rs documents it: install the snapshot, append
//! entries, store the hard state (all durable), then release messages
//! (the leader's and the persisted ones), apply committed entries, advance,
//! and handle the light ready (commit index, more messages and entries).
//!
//! Election timeouts are randomized by a seeded generator here, not by
//! raft-rs's thread RNG, so a simulation replays exactly. raft-rs is given
//! a one-value timeout range (`2 * election_ticks`, so its RNG has nothing to
//! choose), and whenever a non-leader's `election_elapsed` was just reset to
//! 0 the driver starts it at a seeded draw in `1..=election_ticks` instead:
//! the election fires after `election_ticks..2 * election_ticks` quiet ticks,
//! the same range raft-rs uses. (A side effect: the check-quorum "lease" in
//! which a follower ignores vote requests is shorter; pre-vote still stops
//! a partitioned node from disrupting the group.)

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType,
    Message, MessageType,
};
use raft::{RawNode, StateRole};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::logger::raft_logger;
use crate::metadata::{MembershipChange, MetadataState, Proposal, Rejection};
use crate::storage::{DiskStorage, StorageOptions};

/// Learners (brokers outside the controller quorum) the metadata group takes at most;
/// join requests past it are refused.
pub const RAFT_LEARNERS_MAX: usize = 256;

/// Settings of one raft member. Ticks are the owner's timer periods.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The voting members (1, 3 or 5) when the group is first created.
    pub voters: Vec<NodeId>,
    /// Members that receive the log but do not vote.
    pub learners: Vec<NodeId>,
    /// A follower that hears no leader for this many ticks (randomized up
    /// to twice that) starts an election.
    pub election_ticks: usize,
    /// The leader heartbeats every this many ticks.
    pub heartbeat_ticks: usize,
    /// Seed of the election timeout randomization (use the node id or a
    /// clock reading in production, the simulation's seed in tests).
    pub seed: u64,
    /// Take a snapshot after this many entries were applied since the last.
    pub snapshot_interval_entries: u64,
    /// Keep this many entries below the snapshot so slightly lagging
    /// followers catch up from the log rather than a snapshot.
    pub compaction_lag_entries: u64,
    /// Largest append message raft-rs builds.
    pub message_bytes_max: u64,
    /// Append messages in flight per follower.
    pub inflight_messages_max: usize,
    /// Proposed but uncommitted bytes the leader accepts before refusing
    /// proposals (raft-rs `max_uncommitted_size`).
    pub uncommitted_bytes_max: u64,
    pub storage: StorageOptions,
    /// Distinct for each start of the process (the broker passes its boot
    /// time in ms): part of every [`ProposalId`], so an entry proposed
    /// before a restart is never mistaken for one proposed after.
    pub incarnation: u64,
}

impl NodeConfig {
    /// Defaults that suit a 100 ms tick: election after 1-2 s.
    pub fn new(id: NodeId, voters: Vec<NodeId>, learners: Vec<NodeId>) -> NodeConfig {
        NodeConfig {
            id,
            voters,
            learners,
            election_ticks: 10,
            heartbeat_ticks: 2,
            seed: id.0,
            snapshot_interval_entries: 10_000,
            compaction_lag_entries: 1_000,
            message_bytes_max: 1 << 20,
            inflight_messages_max: 256,
            uncommitted_bytes_max: 32 << 20,
            storage: StorageOptions::default(),
            incarnation: 0,
        }
    }

    /// Names the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.id.0 == 0 {
            return bad("id", "raft reserves 0");
        }
        if self.voters.is_empty() {
            return bad("voters", "at least one voter");
        }
        if self.voters.iter().any(|v| self.learners.contains(v)) {
            return bad("learners", "a node is both voter and learner");
        }
        if !self.voters.contains(&self.id) && !self.learners.contains(&self.id) {
            return bad("id", "neither a voter nor a learner");
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad("election_ticks", "must exceed heartbeat_ticks (> 0)");
        }
        if self.snapshot_interval_entries == 0 {
            return bad("snapshot_interval_entries", "must be > 0");
        }
        if self.uncommitted_bytes_max < self.message_bytes_max {
            return bad("uncommitted_bytes_max", "must be >= message_bytes_max");
        }
        Ok(())
    }
}

/// Identifies a proposal: the proposing node and its sequence number
/// there. Carried in the entry's context, so the proposer recognizes its
/// own entries when they apply (on whichever node leads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId {
    pub node: NodeId,
    pub incarnation: u64,
    pub seq: u64,
}

impl ProposalId {
    fn encode(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&self.node.0.to_le_bytes());
        b.extend_from_slice(&self.incarnation.to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<ProposalId> {
        if b.len() != 24 {
            return None;
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Some(ProposalId {
            node: NodeId(word(0)),
            incarnation: word(1),
            seq: word(2),
        })
    }
}

/// This member's part in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Role {
        match r {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

/// A change of role or of the known leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleChange {
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: u64,
}

/// One committed entry applied to the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    /// Who proposed it (None for raft's own empty entries).
    pub proposal: Option<ProposalId>,
    pub commands: Proposal,
    pub outcome: std::result::Result<(), Rejection>,
}

/// What one [`Node::handle_ready`] produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Send each to `msg.to` (durable state they depend on is on disk).
    pub messages: Vec<Message>,
    /// Entries applied, in log order (raft's empty entries left out).
    pub applied: Vec<Applied>,
    /// Set when the role or known leader changed.
    pub role_change: Option<RoleChange>,
    /// Index of a snapshot from the leader that replaced the state.
    pub snapshot_installed: Option<u64>,
}

/// Splitmix64: a tiny seeded generator for election timeouts.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One member of the metadata raft group with its state machine.
pub struct Node<D: Disk> {
    id: NodeId,
    raw: RawNode<DiskStorage<D>>,
    state: MetadataState,
    config: NodeConfig,
    rng: SplitMix64,
    next_seq: u64,
    last_snapshot_index: u64,
    last_role: Option<RoleChange>,
}

impl<D: Disk> Node<D> {
    /// Opens (recovering) or creates the member's raft directory on `disk`.
    pub fn open(config: NodeConfig, disk: D) -> Result<Node<D>> {
        config.validate()?;
        let mut store = DiskStorage::open(disk, config.storage.clone())?;
        if !store.is_initialized() {
            let cs = ConfState {
                voters: config.voters.iter().map(|n| n.0).collect(),
                learners: config.learners.iter().map(|n| n.0).collect(),
                ..Default::default()
            };
            store.bootstrap(cs)?;
        }
        let snap = store.latest_snapshot();
        let state = if snap.get_metadata().index > 0 {
            MetadataState::decode(&snap.data)?
        } else {
            MetadataState::default()
        };
        let last_snapshot_index = state.applied_index;
        let raft_config = raft::Config {
            id: config.id.0,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            min_election_tick: 2 * config.election_ticks,
            max_election_tick: 2 * config.election_ticks + 1,
            applied: state.applied_index,
            max_size_per_msg: config.message_bytes_max,
            max_inflight_msgs: config.inflight_messages_max,
            max_uncommitted_size: config.uncommitted_bytes_max,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let raw = RawNode::new(&raft_config, store, &raft_logger(config.id))?;
        let mut node = Node {
            id: config.id,
            raw,
            state,
            rng: SplitMix64(config.seed ^ config.id.0.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            config,
            next_seq: 0,
            last_snapshot_index,
            last_role: None,
        };
        node.fix_election_timeout();
        Ok(node)
    }

    /// Randomizes the election timeout from the seeded generator (see the
    /// module docs). Called after every call into raft-rs; never leaves a
    /// non-leader's `election_elapsed` at 0, so seeing 0 means raft reset it.
    fn fix_election_timeout(&mut self) {
        let r = &mut self.raw.raft;
        if r.state != StateRole::Leader && r.election_elapsed == 0 {
            let e = self.config.election_ticks as u64;
            r.election_elapsed = 1 + (self.rng.next() % e) as usize;
        }
    }

    /// Advances raft's logical clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.fix_election_timeout();
    }

    /// Feeds a message from a peer.
    pub fn step(&mut self, msg: Message) -> Result<()> {
        if let Err(why) = self.admissible(&msg) {
            tracing::warn!(from = msg.from, reason = %why, "refusing a membership change proposed by a peer");
            return Ok(());
        }
        let r = self.raw.step(msg);
        self.fix_election_timeout();
        match r {
            // A message from a member this node does not know (yet), a
            // stale response, or a proposal forwarded to a node that lost
            // leadership meanwhile is not a fault of this node (the
            // proposer retries).
            Err(raft::Error::StepPeerNotFound)
            | Err(raft::Error::StepLocalMsg)
            | Err(raft::Error::ProposalDropped) => Ok(()),
            other => other.map_err(Error::from),
        }
    }

    /// Membership changes a peer may propose: a node asks to join as a learner for itself
    /// only, while the group has fewer than [`RAFT_LEARNERS_MAX`] learners; only a voter
    /// removes members; voters are fixed by configuration.
    fn admissible(&self, msg: &Message) -> std::result::Result<(), String> {
        if msg.get_msg_type() != MessageType::MsgPropose {
            return Ok(());
        }
        let voters = &self.raw.store().conf_state().voters;
        for e in msg.get_entries() {
            let cc = match e.get_entry_type() {
                EntryType::EntryNormal => continue,
                EntryType::EntryConfChange => {
                    return Err("single conf changes are not used by rill".into())
                }
                EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data)
                    .map_err(|err| format!("undecodable conf change: {err}"))?,
            };
            for c in cc.get_changes() {
                match c.get_change_type() {
                    ConfChangeType::AddLearnerNode => {
                        if c.node_id != msg.from {
                            return Err(format!(
                                "node {} asked to add node {}; a node may only add itself",
                                msg.from, c.node_id
                            ));
                        }
                        let learners = &self.state.raft_learners;
                        if !learners.contains_key(&c.node_id) && learners.len() >= RAFT_LEARNERS_MAX
                        {
                            return Err(format!(
                                "the group has {} learners, the limit (RAFT_LEARNERS_MAX)",
                                learners.len()
                            ));
                        }
                    }
                    ConfChangeType::RemoveNode if voters.contains(&msg.from) => {}
                    ConfChangeType::RemoveNode => {
                        return Err(format!("node {} is not a voter", msg.from))
                    }
                    ConfChangeType::AddNode => {
                        return Err("voters are fixed by the controller quorum".into())
                    }
                }
            }
        }
        Ok(())
    }

    /// Proposes a batch of commands. On a follower or learner raft forwards
    /// it to the leader; the id shows up in [`Output::applied`] once it
    /// commits (a proposal can also be lost with a leader change: callers
    /// retry after a timeout, and commands are idempotent or epoch-checked).
    pub fn propose(&mut self, proposal: &Proposal) -> Result<ProposalId> {
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return Err(Error::NotLeader { leader: None });
        }
        let id = ProposalId {
            node: self.id,
            incarnation: self.config.incarnation,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let r = self.raw.propose(id.encode(), proposal.encode());
        self.fix_election_timeout();
        match r {
            Ok(()) => Ok(id),
            Err(raft::Error::ProposalDropped) => Err(Error::NotLeader {
                leader: self.leader(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts an election now (tests, and leadership hand-over).
    pub fn campaign(&mut self) -> Result<()> {
        let r = self.raw.campaign();
        self.fix_election_timeout();
        r.map_err(Error::from)
    }

    /// Tells raft a peer could not be reached, so it probes instead of
    /// streaming appends to it.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        self.raw.report_unreachable(peer.0);
    }

    /// Whether `handle_ready` has work (messages, entries, state).
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// Runs one Ready cycle. See the module docs for the order.
    pub fn handle_ready(&mut self) -> Result<Output> {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            self.maybe_snapshot()?;
            return Ok(out);
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            let change = RoleChange {
                role: ss.raft_state.into(),
                leader: (ss.leader_id != raft::INVALID_ID).then_some(NodeId(ss.leader_id)),
                term: self.raw.raft.term,
            };
            if self.last_role != Some(change) {
                self.last_role = Some(change);
                out.role_change = Some(change);
            }
        }
        // The leader's appends may go out before its own disk write (raft
        // counts its own ack only after persisting).
        out.messages.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            // Validate before installing: a bad snapshot must not replace
            // a good log.
            let state = MetadataState::decode(&snap.data)?;
            let index = snap.get_metadata().index;
            self.raw.mut_store().apply_snapshot(snap)?;
            self.state = state;
            self.last_snapshot_index = index;
            out.snapshot_installed = Some(index);
        }
        self.raw.mut_store().append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
        }
        // Votes and append acks promise durable state: only now.
        out.messages.extend(rd.take_persisted_messages());
        self.apply(rd.take_committed_entries(), &mut out)?;
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        out.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut out)?;
        self.raw.advance_apply();
        // raft-rs pauses a follower that was sent a snapshot until told how
        // it went. Transports here are fire-and-forget, so report success
        // at once: if the snapshot was lost, the probe that follows fails
        // and raft sends it again.
        let snapshot_targets: Vec<u64> = out
            .messages
            .iter()
            .filter(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect();
        for to in snapshot_targets {
            self.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
        }
        self.fix_election_timeout();
        self.maybe_snapshot()?;
        Ok(out)
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output) -> Result<()> {
        for e in entries {
            if e.index <= self.state.applied_index {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => self.state.apply_empty(e.index),
                EntryType::EntryNormal => {
                    let (commands, outcome) = match Proposal::decode(&e.data) {
                        Ok(p) => {
                            let r = self.state.apply(e.index, &p);
                            (p, r)
                        }
                        Err(err) => {
                            // Every replica sees the same bytes, so every
                            // replica skips this entry alike.
                            self.state.apply_empty(e.index);
                            (
                                Proposal { commands: vec![] },
                                Err(Rejection::Undecodable(err.to_string())),
                            )
                        }
                    };
                    out.applied.push(Applied {
                        index: e.index,
                        term: e.term,
                        proposal: ProposalId::decode(&e.context),
                        commands,
                        outcome,
                    });
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data).map_err(|err| Error::Codec {
                        what: "conf change",
                        reason: err.to_string(),
                    })?;
                    let mut single = ConfChangeSingle::default();
                    single.set_change_type(cc.get_change_type());
                    single.node_id = cc.node_id;
                    let mut v2 = ConfChangeV2::default();
                    v2.mut_changes().push(single);
                    v2.context = cc.context;
                    self.apply_conf_change(e.index, v2)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let cc =
                        ConfChangeV2::parse_from_bytes(&e.data).map_err(|err| Error::Codec {
                            what: "conf change",
                            reason: err.to_string(),
                        })?;
                    self.apply_conf_change(e.index, cc)?;
                }
            }
        }
        Ok(())
    }

    /// Applies a committed membership change to raft and to the state machine (which
    /// keeps a learner's raft address, the change's context). A change raft refuses
    /// (e.g. one that would leave no voter) is skipped alike on every member.
    fn apply_conf_change(&mut self, index: u64, cc: ConfChangeV2) -> Result<()> {
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => self.raw.mut_store().set_conf_state(cs)?,
            Err(e) => {
                tracing::warn!(index, error = %e, "membership change refused; skipped");
                self.state.apply_empty(index);
                return Ok(());
            }
        }
        let addr = String::from_utf8_lossy(&cc.context).into_owned();
        let changes: Vec<MembershipChange> = cc
            .changes
            .iter()
            .map(|c| match c.get_change_type() {
                ConfChangeType::AddLearnerNode if cc.changes.len() == 1 && !addr.is_empty() => {
                    MembershipChange::AddLearner {
                        node: c.node_id,
                        addr: addr.clone(),
                    }
                }
                ConfChangeType::RemoveNode => MembershipChange::Remove { node: c.node_id },
                _ => MembershipChange::Other,
            })
            .collect();
        self.state.apply_membership(index, &changes);
        Ok(())
    }

    /// The messages a member that is not in the group yet sends to ask to join as a
    /// learner reachable at `raft_addr`: a proposal of the AddLearnerNode change, to each
    /// voter (a follower forwards it to the leader; the leader appends it). Send them
    /// again until [`Node::is_member`]; a repeat of a change already made is harmless.
    pub fn join_messages(me: NodeId, raft_addr: &str, voters: &[NodeId]) -> Vec<Message> {
        let mut cc = ConfChangeV2::default();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::AddLearnerNode);
        single.node_id = me.0;
        cc.mut_changes().push(single);
        cc.context = raft_addr.as_bytes().to_vec().into();
        let data = cc.write_to_bytes().expect("encode a conf change");
        voters
            .iter()
            .filter(|v| **v != me)
            .map(|v| {
                let mut e = Entry::default();
                e.set_entry_type(EntryType::EntryConfChangeV2);
                e.data = data.clone().into();
                let mut m = Message::default();
                m.set_msg_type(MessageType::MsgPropose);
                m.from = me.0;
                m.to = v.0;
                m.mut_entries().push(e);
                m
            })
            .collect()
    }

    /// Proposes removing member `node` from the group (a decommissioned learner).
    pub fn propose_remove_member(&mut self, node: NodeId) -> Result<()> {
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return Err(Error::NotLeader { leader: None });
        }
        let mut cc = ConfChangeV2::default();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::RemoveNode);
        single.node_id = node.0;
        cc.mut_changes().push(single);
        let r = self.raw.propose_conf_change(Vec::new(), cc);
        self.fix_election_timeout();
        r.map_err(Error::from)
    }

    /// Whether this member's log has made it a voter or learner of the group (a
    /// joining learner is one once its AddLearnerNode change reached it).
    pub fn is_member(&self) -> bool {
        self.state.raft_learners.contains_key(&self.id.0)
            || self.raw.store().conf_state().voters.contains(&self.id.0)
    }

    fn maybe_snapshot(&mut self) -> Result<()> {
        let applied = self.state.applied_index;
        let wanted = self.raw.store().take_snapshot_wanted();
        let due = applied >= self.last_snapshot_index + self.config.snapshot_interval_entries;
        if (wanted || due) && applied > self.last_snapshot_index {
            let compact_to = applied.saturating_sub(self.config.compaction_lag_entries);
            self.raw
                .mut_store()
                .create_snapshot(applied, self.state.encode(), compact_to)?;
            self.last_snapshot_index = applied;
        }
        Ok(())
    }

    /// The applied metadata.
    pub fn state(&self) -> &MetadataState {
        &self.state
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn role(&self) -> Role {
        self.raw.raft.state.into()
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        let l = self.raw.raft.leader_id;
        (l != raft::INVALID_ID).then_some(NodeId(l))
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The durable storage (for tests and status pages).
    pub fn storage(&self) -> &DiskStorage<D> {
        self.raw.store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;
    use crate::ids::BrokerId;
    use crate::metadata::Command;

    fn single() -> Node<MemDisk> {
        let cfg = NodeConfig::new(NodeId(1), vec![NodeId(1)], vec![]);
        Node::open(cfg, MemDisk::new()).unwrap()
    }

    fn register(b: i32) -> Proposal {
        Proposal {
            commands: vec![Command::RegisterBroker {
                broker: BrokerId(b),
                host: "h".into(),
                port: 1,
                rack: None,
                incarnation: 1,
            }],
        }
    }

    #[test]
    fn a_single_voter_elects_itself_and_applies_its_proposal() {
        let mut n = single();
        let mut became_leader = false;
        for _ in 0..40 {
            n.tick();
            let out = n.handle_ready().unwrap();
            became_leader |= out.role_change.is_some_and(|r| r.role == Role::Leader);
        }
        assert!(became_leader && n.is_leader());
        let id = n.propose(&register(0)).unwrap();
        let out = n.handle_ready().unwrap();
        let applied: Vec<_> = out.applied.iter().filter_map(|a| a.proposal).collect();
        assert_eq!(applied, vec![id]);
        assert!(n.state().brokers.contains_key(&BrokerId(0)));
    }

    #[test]
    fn peers_may_only_ask_to_add_themselves_as_learners() {
        let mut n = single();
        while !n.is_leader() {
            n.tick();
            n.handle_ready().unwrap();
        }
        let step_all = |n: &mut Node<MemDisk>, ms: Vec<Message>| {
            for m in ms {
                n.step(m).unwrap();
            }
            for _ in 0..3 {
                n.handle_ready().unwrap();
            }
        };
        // A join for itself is taken.
        step_all(
            &mut n,
            Node::<MemDisk>::join_messages(NodeId(5), "h:1", &[NodeId(1)]),
        );
        assert!(n.state().raft_learners.contains_key(&5));
        // Node 6 asking to add node 7, and a peer adding a voter, are refused.
        let mut forged = Node::<MemDisk>::join_messages(NodeId(7), "h:2", &[NodeId(1)]);
        forged[0].from = 6;
        step_all(&mut n, forged);
        assert!(!n.state().raft_learners.contains_key(&7));
        let mut voter = Node::<MemDisk>::join_messages(NodeId(8), "h:3", &[NodeId(1)]);
        let mut cc = ConfChangeV2::default();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::AddNode);
        single.node_id = 8;
        cc.mut_changes().push(single);
        voter[0].mut_entries()[0].data = cc.write_to_bytes().unwrap().into();
        step_all(&mut n, voter);
        assert!(!n.raw.store().conf_state().voters.contains(&8));
        // Past the cap, new learners are refused.
        for i in 0..RAFT_LEARNERS_MAX as u64 {
            let id = 100 + i;
            step_all(
                &mut n,
                Node::<MemDisk>::join_messages(NodeId(id), "h:4", &[NodeId(1)]),
            );
        }
        assert_eq!(n.state().raft_learners.len(), RAFT_LEARNERS_MAX);
        assert!(!n
            .state()
            .raft_learners
            .contains_key(&(100 + RAFT_LEARNERS_MAX as u64 - 1)));
    }

    #[test]
    fn proposing_without_a_leader_says_not_leader() {
        let cfg = NodeConfig::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)], vec![]);
        let mut n = Node::open(cfg, MemDisk::new()).unwrap();
        assert!(matches!(
            n.propose(&register(0)),
            Err(Error::NotLeader { leader: None })
        ));
    }

    #[test]
    fn state_survives_restart_through_snapshot_and_log_replay() {
        let disk = MemDisk::new();
        let mut cfg = NodeConfig::new(NodeId(1), vec![NodeId(1)], vec![]);
        cfg.snapshot_interval_entries = 3;
        cfg.compaction_lag_entries = 1;
        let mut n = Node::open(cfg.clone(), disk.clone()).unwrap();
        while !n.is_leader() {
            n.tick();
            n.handle_ready().unwrap();
        }
        for b in 0..10 {
            n.propose(&register(b)).unwrap();
            n.handle_ready().unwrap();
        }
        let before = n.state().clone();
        assert!(
            n.storage().compacted_index() > 0,
            "snapshots compacted the log"
        );
        drop(n);
        disk.crash(&mut |_| 0);
        let n = Node::open(cfg, disk).unwrap();
        let mut n = n;
        n.handle_ready().unwrap();
        assert_eq!(n.state(), &before);
    }

    #[test]
    fn config_validation_names_the_field() {
        let mut cfg = NodeConfig::new(NodeId(1), vec![NodeId(1)], vec![]);
        cfg.election_ticks = 1;
        match cfg.validate() {
            Err(Error::Config { field, .. }) => assert_eq!(field, "election_ticks"),
            other => panic!("{other:?}"),
        }
    }
}
