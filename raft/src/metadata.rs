//! The metadata state machine: brokers, topics, partitions (replicas,
//! leader, leader_epoch, ISR) and configs, changed only by applying
//! committed [`Command`]s. Pure and deterministic (no I/O, no clocks, only
//! ordered maps), so every broker that applies the same log holds the same
//! [`MetadataState`]. Owned by the [`crate::node::Node`] (shard 0); other
//! shards get copies or deltas from the broker.
//!
//! A log entry carries a batch of commands applied all-or-nothing, so the
//! controller can fence a broker and move its leaderships in one step and
//! nobody ever sees a fenced broker leading. Every command is validated on
//! apply; a stale one (an old `partition_epoch`, an unknown broker) rejects
//! its batch and changes nothing, which is how races between proposals made
//! on different terms resolve.

use std::collections::BTreeMap;

use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{BrokerId, LeaderEpoch, PartitionIndex, TopicId};

const SNAPSHOT_MAGIC: &[u8; 4] = b"RRSM";

/// Topic config that allows electing a leader outside the ISR (data loss).
pub const UNCLEAN_LEADER_ELECTION_CONFIG: &str = "unclean.leader.election.enable";

/// A broker's lifecycle state as the controller sees it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum BrokerState {
    /// Heartbeating; may lead partitions.
    Alive,
    /// Missed heartbeats (or asked to be); leads nothing, not in any ISR
    /// unless it was the last member.
    Fenced,
    /// Being drained: keeps serving but gets no new replicas and gives up
    /// its leaderships.
    Decommissioning,
}

/// A registered broker.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Broker {
    pub id: BrokerId,
    /// Advertised listener host and port for clients and followers.
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub state: BrokerState,
    /// Which run of the broker process registered (a new one at every start: KIP-380's
    /// broker epoch).
    pub incarnation: u64,
    /// The broker restarted (a new incarnation registered) while it still held ISR seats or
    /// leaderships: its log may have lost what it had, so it leads nothing until the
    /// controller has moved those to other in-sync replicas ([`Command::BrokerRecovered`]).
    pub recovering: bool,
}

/// One partition's placement and leadership.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Partition {
    /// Replica set; the first is the preferred leader. During a
    /// reassignment this is the union of old and target replicas.
    pub replicas: Vec<BrokerId>,
    /// None when no eligible replica is alive (Kafka's leader -1).
    pub leader: Option<BrokerId>,
    /// Bumped on every leader change (including to and from None).
    pub leader_epoch: LeaderEpoch,
    /// In-sync replicas, a subset of `replicas`.
    pub isr: Vec<BrokerId>,
    /// Bumped on every change; the compare-and-set token of [`Command::ChangePartition`].
    pub partition_epoch: i32,
    /// Replicas being added / removed by an ongoing reassignment.
    pub adding: Vec<BrokerId>,
    pub removing: Vec<BrokerId>,
}

/// A topic.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Topic {
    pub id: TopicId,
    pub name: String,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<Partition>,
}

impl Topic {
    /// Whether the topic allows a leader from outside the ISR: its own
    /// `unclean.leader.election.enable` when set, else `cluster_default` (the cluster-wide
    /// broker config, [`MetadataState::unclean_leader_election_default`]), as Kafka resolves it.
    pub fn unclean_leader_election(&self, cluster_default: bool) -> bool {
        self.configs
            .get(UNCLEAN_LEADER_ELECTION_CONFIG)
            .map_or(cluster_default, |v| v.eq_ignore_ascii_case("true"))
    }
}

/// The whole cluster metadata: what every broker's copy holds.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct MetadataState {
    pub brokers: BTreeMap<BrokerId, Broker>,
    pub topics: BTreeMap<TopicId, Topic>,
    /// Name index of `topics`.
    pub topic_ids: BTreeMap<String, TopicId>,
    /// Per-broker dynamic configs; cluster-wide defaults are `None`'s.
    pub broker_configs: BTreeMap<Option<BrokerId>, BTreeMap<String, String>>,
    pub next_topic_id: u64,
    /// Raft index of the last entry applied.
    pub applied_index: u64,
    /// The Kafka cluster id, set once by the first controller (empty until then).
    pub cluster_id: String,
    /// A secret of the cluster's brokers, set with the cluster id: followers present it
    /// when they fetch as replicas, so a client cannot pose as one. Never sent to clients.
    pub broker_token: String,
    /// Raft addresses (`host:port`) of members that joined as learners, by raft node
    /// id, from their AddLearnerNode conf changes; voters' addresses are the quorum.
    pub raft_learners: BTreeMap<u64, String>,
}

/// A config key set to `Some(value)` or deleted with `None`.
pub type ConfigChange = (String, Option<String>);

/// A change to the metadata. Proposed in batches ([`Proposal`]).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Command {
    /// Names the cluster (the Kafka cluster id every broker reports); only once.
    InitCluster {
        cluster_id: String,
        broker_token: String,
    },
    /// Adds a broker, or updates its address and makes it Alive again.
    RegisterBroker {
        broker: BrokerId,
        host: String,
        port: u16,
        rack: Option<String>,
        /// A value new at every start of the broker process.
        incarnation: u64,
    },
    /// The controller has taken a restarted broker out of the ISRs it held (where others
    /// remain) and moved its leaderships: it may lead again.
    BrokerRecovered {
        broker: BrokerId,
    },
    /// "Still here": the controller times brokers by these.
    BrokerHeartbeat {
        broker: BrokerId,
    },
    FenceBroker {
        broker: BrokerId,
    },
    UnfenceBroker {
        broker: BrokerId,
    },
    DecommissionBroker {
        broker: BrokerId,
    },
    /// Removes a broker that holds no replicas.
    UnregisterBroker {
        broker: BrokerId,
    },
    /// Creates a topic with the given replica assignment (one replica list
    /// per partition, placed by the controller). The leader is the first
    /// non-fenced replica, the ISR the non-fenced replicas.
    CreateTopic {
        name: String,
        configs: BTreeMap<String, String>,
        assignment: Vec<Vec<BrokerId>>,
    },
    DeleteTopic {
        topic: TopicId,
    },
    /// Adds partitions at the end of a topic.
    CreatePartitions {
        topic: TopicId,
        assignment: Vec<Vec<BrokerId>>,
    },
    AlterTopicConfigs {
        topic: TopicId,
        changes: Vec<ConfigChange>,
    },
    AlterBrokerConfigs {
        broker: Option<BrokerId>,
        changes: Vec<ConfigChange>,
    },
    /// Sets leader and ISR if the partition is still at `partition_epoch`
    /// (compare-and-set). A new leader bumps `leader_epoch`. A leader
    /// outside the current ISR needs the topic's unclean election config.
    ChangePartition {
        topic: TopicId,
        partition: PartitionIndex,
        partition_epoch: i32,
        leader: Option<BrokerId>,
        isr: Vec<BrokerId>,
    },
    /// Starts moving a partition to `target` replicas: replicas become the
    /// union, so the new ones can fetch and join the ISR.
    BeginReassignment {
        topic: TopicId,
        partition: PartitionIndex,
        target: Vec<BrokerId>,
    },
    /// Finishes a reassignment whose added replicas are all in the ISR:
    /// replicas become the target, the ISR drops the removed ones, and
    /// `leader` (from the new ISR) takes over if the old one was removed.
    CompleteReassignment {
        topic: TopicId,
        partition: PartitionIndex,
        partition_epoch: i32,
        leader: Option<BrokerId>,
    },
    /// Stops a reassignment: the added replicas leave the replicas and the ISR (a leader
    /// among them hands over to the first live remaining ISR member).
    CancelReassignment {
        topic: TopicId,
        partition: PartitionIndex,
    },
}

/// One change of a committed conf change entry, as the state machine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    AddLearner {
        node: u64,
        addr: String,
    },
    Remove {
        node: u64,
    },
    /// Voter changes (the quorum is fixed by configuration).
    Other,
}

/// The batch one raft entry carries; applied all-or-nothing.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Proposal {
    pub commands: Vec<Command>,
}

impl Proposal {
    /// rkyv bytes for a raft entry.
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing a proposal into memory cannot fail")
            .to_vec()
    }

    /// Decodes and validates entry bytes.
    pub fn decode(buf: &[u8]) -> Result<Proposal> {
        decode_checked("proposal", buf)
    }
}

fn decode_checked<T>(what: &'static str, buf: &[u8]) -> Result<T>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    // Entry bytes arrive at any alignment; rkyv needs its own.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(buf.len());
    aligned.extend_from_slice(buf);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned).map_err(|e| Error::Codec {
        what,
        reason: e.to_string(),
    })
}

/// Why a batch was rejected (the broker maps these to Kafka error codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    UnknownBroker(BrokerId),
    UnknownTopic(TopicId),
    UnknownPartition(TopicId, PartitionIndex),
    TopicExists(String),
    InvalidTopicName(String),
    /// A replica list is empty, repeats a broker or names an unknown one.
    InvalidReplicas(String),
    /// The partition moved on since the command was made.
    StalePartitionEpoch {
        expected: i32,
        current: i32,
    },
    /// A new leader that is fenced, not a replica or not in the new ISR.
    IneligibleLeader(BrokerId),
    /// A leader outside the ISR without `unclean.leader.election.enable`.
    UncleanElectionDisabled(BrokerId),
    /// The ISR names a non-replica or repeats a broker.
    InvalidIsr(String),
    /// A fenced broker would still lead a partition after this batch.
    FencedBrokerLeads(BrokerId),
    /// Unregistering a broker that still holds replicas.
    BrokerHasReplicas(BrokerId),
    NoReassignment(TopicId, PartitionIndex),
    /// The entry's bytes are not a proposal (a bug in the proposer).
    Undecodable(String),
    /// The cluster already has an id.
    ClusterAlreadyNamed,
    ReassignmentInProgress(TopicId, PartitionIndex),
    /// The added replicas are not all in the ISR yet.
    ReassignmentNotCaughtUp(TopicId, PartitionIndex),
    /// Cancelling would leave no in-sync replica: only added replicas are in sync, and the
    /// original ones are behind.
    CancelLeavesNoInSyncReplica(TopicId, PartitionIndex),
}

fn has_duplicates(v: &[BrokerId]) -> bool {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.windows(2).any(|w| w[0] == w[1])
}

impl MetadataState {
    /// Applies one committed entry's batch at raft `index`. Either all
    /// commands apply or none does; the applied index advances either way.
    pub fn apply(&mut self, index: u64, proposal: &Proposal) -> std::result::Result<(), Rejection> {
        assert!(
            index > self.applied_index,
            "entry {index} applied after {}",
            self.applied_index
        );
        let result = if proposal.commands.len() == 1 {
            // One command validates before it mutates: no copy needed.
            self.apply_one(&proposal.commands[0], false)
        } else {
            let mut scratch = self.clone();
            let r = proposal
                .commands
                .iter()
                .try_for_each(|c| scratch.apply_one(c, true))
                .and_then(|()| scratch.check_fenced_lead_nothing());
            if r.is_ok() {
                *self = scratch;
            }
            r
        };
        self.applied_index = index;
        result
    }

    /// Records an entry that carried no commands (raft's no-op on election).
    pub fn apply_empty(&mut self, index: u64) {
        assert!(index > self.applied_index);
        self.applied_index = index;
    }

    /// Applies a membership change at `index`: a learner added with its raft address
    /// (the conf change's context) is recorded, a removed member forgotten.
    pub fn apply_membership(&mut self, index: u64, changes: &[MembershipChange]) {
        self.apply_empty(index);
        for c in changes {
            match c {
                MembershipChange::AddLearner { node, addr } => {
                    self.raft_learners.insert(*node, addr.clone());
                }
                MembershipChange::Remove { node } => {
                    self.raft_learners.remove(node);
                }
                MembershipChange::Other => {}
            }
        }
    }

    /// Looks a topic up by name.
    pub fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// A partition, if it exists.
    pub fn partition(&self, topic: TopicId, p: PartitionIndex) -> Option<&Partition> {
        self.topics
            .get(&topic)
            .and_then(|t| usize::try_from(p.0).ok().and_then(|i| t.partitions.get(i)))
    }

    /// Whether `b` is registered and not fenced.
    /// Whether `b` is in an ISR or leads a partition.
    pub fn holds_isr_seat(&self, b: BrokerId) -> bool {
        self.topics
            .values()
            .flat_map(|t| &t.partitions)
            .any(|p| p.isr.contains(&b) || p.leader == Some(b))
    }

    pub fn is_live(&self, b: BrokerId) -> bool {
        self.brokers
            .get(&b)
            .is_some_and(|br| br.state != BrokerState::Fenced)
    }

    fn check_fenced_lead_nothing(&self) -> std::result::Result<(), Rejection> {
        for t in self.topics.values() {
            for p in &t.partitions {
                if let Some(l) = p.leader {
                    if !self.is_live(l) {
                        return Err(Rejection::FencedBrokerLeads(l));
                    }
                }
            }
        }
        Ok(())
    }

    fn broker_mut(&mut self, b: BrokerId) -> std::result::Result<&mut Broker, Rejection> {
        self.brokers.get_mut(&b).ok_or(Rejection::UnknownBroker(b))
    }

    fn check_assignment(&self, assignment: &[Vec<BrokerId>]) -> std::result::Result<(), Rejection> {
        if assignment.is_empty() {
            return Err(Rejection::InvalidReplicas("no partitions".into()));
        }
        for replicas in assignment {
            if replicas.is_empty() || has_duplicates(replicas) {
                return Err(Rejection::InvalidReplicas(format!("{replicas:?}")));
            }
            if let Some(b) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(Rejection::UnknownBroker(*b));
            }
        }
        Ok(())
    }

    fn new_partition(&self, replicas: &[BrokerId]) -> Partition {
        let isr: Vec<BrokerId> = replicas
            .iter()
            .copied()
            .filter(|b| self.is_live(*b))
            .collect();
        Partition {
            replicas: replicas.to_vec(),
            leader: isr.first().copied(),
            leader_epoch: LeaderEpoch(0),
            // An ISR is never empty: with every replica fenced the first
            // keeps the claim, as Kafka keeps the last member.
            isr: if isr.is_empty() {
                vec![replicas[0]]
            } else {
                isr
            },
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// `unclean.leader.election.enable` as set for every broker (`kafka-configs
    /// --entity-type brokers --entity-default`); false when unset. A broker's static file
    /// cannot change it: every member must decide elections alike.
    pub fn unclean_leader_election_default(&self) -> bool {
        self.broker_configs
            .get(&None)
            .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION_CONFIG))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn partition_mut(
        &mut self,
        topic: TopicId,
        p: PartitionIndex,
    ) -> std::result::Result<(&mut Partition, bool), Rejection> {
        let cluster_default = self.unclean_leader_election_default();
        let t = self
            .topics
            .get_mut(&topic)
            .ok_or(Rejection::UnknownTopic(topic))?;
        let unclean = t.unclean_leader_election(cluster_default);
        let part = usize::try_from(p.0)
            .ok()
            .and_then(|i| t.partitions.get_mut(i))
            .ok_or(Rejection::UnknownPartition(topic, p))?;
        Ok((part, unclean))
    }

    /// `in_batch`: checks that span commands (a fenced broker leads
    /// nothing) run once at the end of the batch instead.
    fn apply_one(&mut self, cmd: &Command, in_batch: bool) -> std::result::Result<(), Rejection> {
        match cmd {
            Command::InitCluster {
                cluster_id,
                broker_token,
            } => {
                if !self.cluster_id.is_empty() {
                    return Err(Rejection::ClusterAlreadyNamed);
                }
                self.cluster_id = cluster_id.clone();
                self.broker_token = broker_token.clone();
            }
            Command::RegisterBroker {
                broker,
                host,
                port,
                rack,
                incarnation,
            } => {
                // A new incarnation of a broker that holds ISR seats or leaderships restarted
                // from a log that may have lost records: it recovers first.
                let before = self.brokers.get(broker);
                let restarted = before.is_some_and(|b| b.incarnation != *incarnation);
                let recovering = before.is_some_and(|b| b.recovering)
                    || (restarted && self.holds_isr_seat(*broker));
                self.brokers.insert(
                    *broker,
                    Broker {
                        id: *broker,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        state: BrokerState::Alive,
                        incarnation: *incarnation,
                        recovering,
                    },
                );
            }
            Command::BrokerRecovered { broker } => {
                self.broker_mut(*broker)?.recovering = false;
            }
            Command::BrokerHeartbeat { broker } => {
                self.broker_mut(*broker)?;
            }
            Command::FenceBroker { broker } => {
                let live = self.is_live(*broker);
                self.broker_mut(*broker)?.state = BrokerState::Fenced;
                if live && !in_batch {
                    // A lone FenceBroker must not leave the broker leading.
                    if let Err(r) = self.check_fenced_lead_nothing() {
                        self.broker_mut(*broker)?.state = BrokerState::Alive;
                        return Err(r);
                    }
                }
            }
            Command::UnfenceBroker { broker } => {
                let b = self.broker_mut(*broker)?;
                if b.state == BrokerState::Fenced {
                    b.state = BrokerState::Alive;
                }
            }
            Command::DecommissionBroker { broker } => {
                let b = self.broker_mut(*broker)?;
                if b.state == BrokerState::Alive {
                    b.state = BrokerState::Decommissioning;
                }
            }
            Command::UnregisterBroker { broker } => {
                if !self.brokers.contains_key(broker) {
                    return Err(Rejection::UnknownBroker(*broker));
                }
                let holds = self
                    .topics
                    .values()
                    .flat_map(|t| &t.partitions)
                    .any(|p| p.replicas.contains(broker));
                if holds {
                    return Err(Rejection::BrokerHasReplicas(*broker));
                }
                self.brokers.remove(broker);
                self.broker_configs.remove(&Some(*broker));
            }
            Command::CreateTopic {
                name,
                configs,
                assignment,
            } => {
                if name.is_empty() || name.len() > 249 {
                    return Err(Rejection::InvalidTopicName(name.clone()));
                }
                if self.topic_ids.contains_key(name) {
                    return Err(Rejection::TopicExists(name.clone()));
                }
                self.check_assignment(assignment)?;
                let id = TopicId(self.next_topic_id);
                self.next_topic_id += 1;
                let partitions = assignment.iter().map(|r| self.new_partition(r)).collect();
                self.topics.insert(
                    id,
                    Topic {
                        id,
                        name: name.clone(),
                        configs: configs.clone(),
                        partitions,
                    },
                );
                self.topic_ids.insert(name.clone(), id);
            }
            Command::DeleteTopic { topic } => {
                let t = self
                    .topics
                    .remove(topic)
                    .ok_or(Rejection::UnknownTopic(*topic))?;
                self.topic_ids.remove(&t.name);
            }
            Command::CreatePartitions { topic, assignment } => {
                if !self.topics.contains_key(topic) {
                    return Err(Rejection::UnknownTopic(*topic));
                }
                self.check_assignment(assignment)?;
                let new: Vec<Partition> =
                    assignment.iter().map(|r| self.new_partition(r)).collect();
                if let Some(t) = self.topics.get_mut(topic) {
                    t.partitions.extend(new);
                }
            }
            Command::AlterTopicConfigs { topic, changes } => {
                let t = self
                    .topics
                    .get_mut(topic)
                    .ok_or(Rejection::UnknownTopic(*topic))?;
                apply_config_changes(&mut t.configs, changes);
            }
            Command::AlterBrokerConfigs { broker, changes } => {
                if let Some(b) = broker {
                    if !self.brokers.contains_key(b) {
                        return Err(Rejection::UnknownBroker(*b));
                    }
                }
                let configs = self.broker_configs.entry(*broker).or_default();
                apply_config_changes(configs, changes);
                if configs.is_empty() {
                    self.broker_configs.remove(broker);
                }
            }
            Command::ChangePartition {
                topic,
                partition,
                partition_epoch,
                leader,
                isr,
            } => {
                let leader_ok = leader.is_none_or(|l| self.is_live(l));
                let live: Vec<BrokerId> =
                    isr.iter().copied().filter(|b| self.is_live(*b)).collect();
                let (p, unclean) = self.partition_mut(*topic, *partition)?;
                if p.partition_epoch != *partition_epoch {
                    return Err(Rejection::StalePartitionEpoch {
                        expected: *partition_epoch,
                        current: p.partition_epoch,
                    });
                }
                if isr.is_empty()
                    || has_duplicates(isr)
                    || isr.iter().any(|b| !p.replicas.contains(b))
                {
                    return Err(Rejection::InvalidIsr(format!("{isr:?}")));
                }
                // Only live brokers join the ISR (a fenced one may only keep its place).
                if isr.iter().any(|b| !p.isr.contains(b) && !live.contains(b)) {
                    return Err(Rejection::InvalidIsr(format!(
                        "{isr:?} adds a fenced or unknown broker"
                    )));
                }
                if let Some(l) = leader {
                    if !leader_ok || !isr.contains(l) {
                        return Err(Rejection::IneligibleLeader(*l));
                    }
                    if Some(*l) != p.leader && !p.isr.contains(l) && !unclean {
                        return Err(Rejection::UncleanElectionDisabled(*l));
                    }
                }
                if p.leader != *leader {
                    p.leader_epoch = p.leader_epoch.next();
                }
                p.leader = *leader;
                p.isr = isr.clone();
                p.partition_epoch += 1;
            }
            Command::BeginReassignment {
                topic,
                partition,
                target,
            } => {
                if target.is_empty() || has_duplicates(target) {
                    return Err(Rejection::InvalidReplicas(format!("{target:?}")));
                }
                if let Some(b) = target.iter().find(|b| !self.brokers.contains_key(b)) {
                    return Err(Rejection::UnknownBroker(*b));
                }
                let (p, _) = self.partition_mut(*topic, *partition)?;
                if !p.adding.is_empty() || !p.removing.is_empty() {
                    return Err(Rejection::ReassignmentInProgress(*topic, *partition));
                }
                p.adding = target
                    .iter()
                    .copied()
                    .filter(|b| !p.replicas.contains(b))
                    .collect();
                p.removing = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|b| !target.contains(b))
                    .collect();
                // Target order first, so the preferred leader is the target's.
                let mut union = target.clone();
                union.extend(p.replicas.iter().filter(|b| !target.contains(b)));
                p.replicas = union;
                p.partition_epoch += 1;
            }
            Command::CompleteReassignment {
                topic,
                partition,
                partition_epoch,
                leader,
            } => {
                let leader_ok = leader.is_none_or(|l| self.is_live(l));
                let (p, _) = self.partition_mut(*topic, *partition)?;
                if p.adding.is_empty() && p.removing.is_empty() {
                    return Err(Rejection::NoReassignment(*topic, *partition));
                }
                if p.partition_epoch != *partition_epoch {
                    return Err(Rejection::StalePartitionEpoch {
                        expected: *partition_epoch,
                        current: p.partition_epoch,
                    });
                }
                if p.adding.iter().any(|b| !p.isr.contains(b)) {
                    return Err(Rejection::ReassignmentNotCaughtUp(*topic, *partition));
                }
                let replicas: Vec<BrokerId> = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|b| !p.removing.contains(b))
                    .collect();
                let isr: Vec<BrokerId> = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|b| replicas.contains(b))
                    .collect();
                if isr.is_empty() {
                    return Err(Rejection::InvalidIsr("empty after reassignment".into()));
                }
                if let Some(l) = leader {
                    if !leader_ok || !isr.contains(l) {
                        return Err(Rejection::IneligibleLeader(*l));
                    }
                }
                if p.leader != *leader {
                    p.leader_epoch = p.leader_epoch.next();
                }
                p.leader = *leader;
                p.replicas = replicas;
                p.isr = isr;
                p.adding.clear();
                p.removing.clear();
                p.partition_epoch += 1;
            }
            Command::CancelReassignment { topic, partition } => {
                let live: Vec<BrokerId> = self
                    .brokers
                    .values()
                    .filter(|b| b.state == BrokerState::Alive)
                    .map(|b| b.id)
                    .collect();
                let (p, _) = self.partition_mut(*topic, *partition)?;
                if p.adding.is_empty() && p.removing.is_empty() {
                    return Err(Rejection::NoReassignment(*topic, *partition));
                }
                let isr: Vec<BrokerId> = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|b| !p.adding.contains(b))
                    .collect();
                if isr.is_empty() {
                    // Only added replicas are in sync: putting the original ones back in the
                    // ISR would claim they hold what they do not (one could then lead without
                    // it). The move must finish instead.
                    return Err(Rejection::CancelLeavesNoInSyncReplica(*topic, *partition));
                }
                let adding = std::mem::take(&mut p.adding);
                p.removing.clear();
                p.replicas.retain(|b| !adding.contains(b));
                let leader = match p.leader {
                    Some(l) if !adding.contains(&l) => Some(l),
                    _ => isr.iter().copied().find(|b| live.contains(b)),
                };
                if leader != p.leader {
                    p.leader_epoch = p.leader_epoch.next();
                }
                p.leader = leader;
                p.isr = isr;
                p.partition_epoch += 1;
            }
        }
        Ok(())
    }

    /// Snapshot bytes: `b"RRSM"`, CRC-32C of the rest (u32 LE), then the
    /// rkyv bytes of the whole state. The CRC is there because rkyv's check
    /// alone accepts some truncated buffers as valid-looking states.
    pub fn encode(&self) -> Vec<u8> {
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing the metadata into memory cannot fail");
        let mut out = Vec::with_capacity(8 + payload.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes and validates snapshot bytes (checksum, structure by rkyv's
    /// check, then the invariants no valid log can break).
    pub fn decode(buf: &[u8]) -> Result<MetadataState> {
        let bad = |reason: &str| Error::Codec {
            what: "metadata snapshot",
            reason: reason.to_string(),
        };
        if buf.len() < 8 || &buf[..4] != SNAPSHOT_MAGIC {
            return Err(bad("missing header"));
        }
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if crc32c::crc32c(&buf[8..]) != crc {
            return Err(bad("checksum mismatch"));
        }
        let s: MetadataState = decode_checked("metadata snapshot", &buf[8..])?;
        s.check_invariants().map_err(|reason| Error::Codec {
            what: "metadata snapshot",
            reason,
        })?;
        Ok(s)
    }

    /// The invariants every applied state keeps; the simulation checks
    /// them after every step, decode after every read.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        for (name, id) in &self.topic_ids {
            match self.topics.get(id) {
                Some(t) if &t.name == name => {}
                _ => return Err(format!("name index {name} -> {id:?} is wrong")),
            }
        }
        if self.topic_ids.len() != self.topics.len() {
            return Err("name index size differs from topics".into());
        }
        for t in self.topics.values() {
            if t.id.0 >= self.next_topic_id {
                return Err(format!("topic id {:?} not below the counter", t.id));
            }
            for (i, p) in t.partitions.iter().enumerate() {
                let at = format!("{}-{i}", t.name);
                if p.isr.iter().any(|b| !p.replicas.contains(b)) {
                    return Err(format!(
                        "{at}: isr {:?} not within replicas {:?}",
                        p.isr, p.replicas
                    ));
                }
                if p.isr.is_empty() {
                    return Err(format!("{at}: empty isr"));
                }
                if let Some(l) = p.leader {
                    if !p.isr.contains(&l) {
                        return Err(format!("{at}: leader {l} not in isr {:?}", p.isr));
                    }
                    if !self.is_live(l) {
                        return Err(format!("{at}: fenced or unknown broker {l} leads"));
                    }
                }
            }
        }
        Ok(())
    }
}

fn apply_config_changes(configs: &mut BTreeMap<String, String>, changes: &[ConfigChange]) {
    for (k, v) in changes {
        match v {
            Some(v) => {
                configs.insert(k.clone(), v.clone());
            }
            None => {
                configs.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(b: i32, rack: &str) -> Command {
        Command::RegisterBroker {
            broker: BrokerId(b),
            host: format!("host{b}"),
            port: 9092,
            rack: Some(rack.into()),
            incarnation: 1,
        }
    }

    fn one(c: Command) -> Proposal {
        Proposal { commands: vec![c] }
    }

    fn cluster() -> (MetadataState, u64) {
        let mut s = MetadataState::default();
        let mut i = 0;
        for b in 0..3 {
            i += 1;
            s.apply(i, &one(reg(b, "r"))).unwrap();
        }
        i += 1;
        s.apply(
            i,
            &one(Command::CreateTopic {
                name: "t".into(),
                configs: BTreeMap::new(),
                assignment: vec![vec![BrokerId(0), BrokerId(1), BrokerId(2)]],
            }),
        )
        .unwrap();
        (s, i)
    }

    #[test]
    fn create_topic_sets_leader_isr_and_rejects_duplicates() {
        let (mut s, i) = cluster();
        let t = s.topic_by_name("t").unwrap();
        let p = &t.partitions[0];
        assert_eq!(p.leader, Some(BrokerId(0)));
        assert_eq!(p.isr.len(), 3);
        let again = one(Command::CreateTopic {
            name: "t".into(),
            configs: BTreeMap::new(),
            assignment: vec![vec![BrokerId(0)]],
        });
        assert_eq!(
            s.apply(i + 1, &again),
            Err(Rejection::TopicExists("t".into()))
        );
        assert_eq!(s.applied_index, i + 1);
        s.check_invariants().unwrap();
    }

    #[test]
    fn change_partition_is_compare_and_set_and_bumps_leader_epoch() {
        let (mut s, i) = cluster();
        let tid = s.topic_by_name("t").unwrap().id;
        let change = |epoch, leader: i32, isr: Vec<i32>| {
            one(Command::ChangePartition {
                topic: tid,
                partition: PartitionIndex(0),
                partition_epoch: epoch,
                leader: Some(BrokerId(leader)),
                isr: isr.into_iter().map(BrokerId).collect(),
            })
        };
        s.apply(i + 1, &change(0, 1, vec![1, 2])).unwrap();
        let p = s.partition(tid, PartitionIndex(0)).unwrap();
        assert_eq!(
            (p.leader, p.leader_epoch),
            (Some(BrokerId(1)), LeaderEpoch(1))
        );
        // The same command again is stale.
        assert!(matches!(
            s.apply(i + 2, &change(0, 2, vec![2])),
            Err(Rejection::StalePartitionEpoch { .. })
        ));
        // Broker 0 left the ISR: electing it is unclean.
        assert_eq!(
            s.apply(i + 3, &change(1, 0, vec![0])),
            Err(Rejection::UncleanElectionDisabled(BrokerId(0)))
        );
        s.apply(
            i + 4,
            &one(Command::AlterTopicConfigs {
                topic: tid,
                changes: vec![(UNCLEAN_LEADER_ELECTION_CONFIG.into(), Some("true".into()))],
            }),
        )
        .unwrap();
        s.apply(i + 5, &change(1, 0, vec![0])).unwrap();
        assert_eq!(
            s.partition(tid, PartitionIndex(0)).unwrap().leader_epoch,
            LeaderEpoch(2)
        );
    }

    #[test]
    fn fencing_a_leader_alone_is_rejected_but_a_batch_that_moves_it_applies() {
        let (mut s, i) = cluster();
        let tid = s.topic_by_name("t").unwrap().id;
        let fence = Command::FenceBroker {
            broker: BrokerId(0),
        };
        assert_eq!(
            s.apply(i + 1, &one(fence.clone())),
            Err(Rejection::FencedBrokerLeads(BrokerId(0)))
        );
        assert!(s.is_live(BrokerId(0)));
        let batch = Proposal {
            commands: vec![
                fence,
                Command::ChangePartition {
                    topic: tid,
                    partition: PartitionIndex(0),
                    partition_epoch: 0,
                    leader: Some(BrokerId(1)),
                    isr: vec![BrokerId(1), BrokerId(2)],
                },
            ],
        };
        s.apply(i + 2, &batch).unwrap();
        assert!(!s.is_live(BrokerId(0)));
        s.check_invariants().unwrap();
        // A failing batch changes nothing.
        let before = s.clone();
        let bad = Proposal {
            commands: vec![
                Command::FenceBroker {
                    broker: BrokerId(2),
                },
                Command::DeleteTopic { topic: TopicId(99) },
            ],
        };
        assert!(s.apply(i + 3, &bad).is_err());
        assert_eq!(s.brokers, before.brokers);
        // The leader cannot put the fenced broker back in the ISR (KIP-841)...
        let rejoin = |epoch| {
            one(Command::ChangePartition {
                topic: tid,
                partition: PartitionIndex(0),
                partition_epoch: epoch,
                leader: Some(BrokerId(1)),
                isr: vec![BrokerId(1), BrokerId(2), BrokerId(0)],
            })
        };
        assert!(matches!(
            s.apply(i + 4, &rejoin(1)),
            Err(Rejection::InvalidIsr(_))
        ));
        // ...until it is unfenced.
        s.apply(
            i + 5,
            &one(Command::UnfenceBroker {
                broker: BrokerId(0),
            }),
        )
        .unwrap();
        s.apply(i + 6, &rejoin(1)).unwrap();
        assert_eq!(s.partition(tid, PartitionIndex(0)).unwrap().isr.len(), 3);
        s.check_invariants().unwrap();
    }

    #[test]
    fn reassignment_moves_replicas_once_caught_up() {
        let (mut s, i) = cluster();
        s.apply(i + 1, &one(reg(3, "r"))).unwrap();
        let tid = s.topic_by_name("t").unwrap().id;
        let p0 = PartitionIndex(0);
        s.apply(
            i + 2,
            &one(Command::BeginReassignment {
                topic: tid,
                partition: p0,
                target: vec![BrokerId(3), BrokerId(1), BrokerId(2)],
            }),
        )
        .unwrap();
        let p = s.partition(tid, p0).unwrap().clone();
        assert_eq!(p.adding, vec![BrokerId(3)]);
        assert_eq!(p.removing, vec![BrokerId(0)]);
        let complete = |epoch| {
            one(Command::CompleteReassignment {
                topic: tid,
                partition: p0,
                partition_epoch: epoch,
                leader: Some(BrokerId(3)),
            })
        };
        assert_eq!(
            s.apply(i + 3, &complete(p.partition_epoch)),
            Err(Rejection::ReassignmentNotCaughtUp(tid, p0))
        );
        let mut isr = p.isr.clone();
        isr.push(BrokerId(3));
        s.apply(
            i + 4,
            &one(Command::ChangePartition {
                topic: tid,
                partition: p0,
                partition_epoch: p.partition_epoch,
                leader: p.leader,
                isr,
            }),
        )
        .unwrap();
        s.apply(i + 5, &complete(p.partition_epoch + 1)).unwrap();
        let p = s.partition(tid, p0).unwrap();
        assert_eq!(p.replicas, vec![BrokerId(3), BrokerId(1), BrokerId(2)]);
        assert!(!p.isr.contains(&BrokerId(0)));
        assert_eq!(p.leader, Some(BrokerId(3)));
        s.check_invariants().unwrap();
    }

    #[test]
    fn a_cancelled_reassignment_drops_the_added_replicas() {
        let (mut s, i) = cluster();
        s.apply(i + 1, &one(reg(3, "r"))).unwrap();
        let tid = s.topic_by_name("t").unwrap().id;
        let p0 = PartitionIndex(0);
        let cancel = one(Command::CancelReassignment {
            topic: tid,
            partition: p0,
        });
        assert_eq!(
            s.apply(i + 2, &cancel),
            Err(Rejection::NoReassignment(tid, p0))
        );
        let before = s.partition(tid, p0).unwrap().clone();
        s.apply(
            i + 3,
            &one(Command::BeginReassignment {
                topic: tid,
                partition: p0,
                target: vec![BrokerId(3), BrokerId(1)],
            }),
        )
        .unwrap();
        s.apply(i + 4, &cancel).unwrap();
        let p = s.partition(tid, p0).unwrap();
        let mut replicas = p.replicas.clone();
        replicas.sort();
        assert_eq!(replicas, vec![BrokerId(0), BrokerId(1), BrokerId(2)]);
        assert!(p.adding.is_empty() && p.removing.is_empty());
        assert_eq!(p.isr, before.isr);
        assert_eq!(p.leader, before.leader);
        assert_eq!(p.partition_epoch, before.partition_epoch + 2);
        s.check_invariants().unwrap();

        // A move whose added replica is the only one in sync cannot be cancelled: the
        // original replicas would be put back in the ISR without what they lack.
        let before = s.partition(tid, p0).unwrap().clone();
        s.apply(
            i + 5,
            &one(Command::BeginReassignment {
                topic: tid,
                partition: p0,
                target: vec![BrokerId(3)],
            }),
        )
        .unwrap();
        // The added replica catches up, then leads alone (the others fell behind).
        let moving = s.partition(tid, p0).unwrap().clone();
        let mut isr = moving.isr.clone();
        isr.push(BrokerId(3));
        s.apply(
            i + 6,
            &one(Command::ChangePartition {
                topic: tid,
                partition: p0,
                partition_epoch: moving.partition_epoch,
                leader: moving.leader,
                isr,
            }),
        )
        .unwrap();
        s.apply(
            i + 7,
            &one(Command::ChangePartition {
                topic: tid,
                partition: p0,
                partition_epoch: moving.partition_epoch + 1,
                leader: Some(BrokerId(3)),
                isr: vec![BrokerId(3)],
            }),
        )
        .unwrap_or_else(|e| panic!("ISR of the added replica alone: {e:?} (before: {before:?})"));
        assert_eq!(
            s.apply(i + 8, &cancel),
            Err(Rejection::CancelLeavesNoInSyncReplica(tid, p0))
        );
        assert_eq!(s.partition(tid, p0).unwrap().isr, vec![BrokerId(3)]);
        s.check_invariants().unwrap();
    }

    #[test]
    fn state_and_proposals_round_trip_through_rkyv_and_garbage_is_refused() {
        let (s, _) = cluster();
        let back = MetadataState::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        let p = one(reg(9, "x"));
        assert_eq!(Proposal::decode(&p.encode()).unwrap(), p);
        assert!(MetadataState::decode(b"not rkyv at all").is_err());
        let mut bytes = s.encode();
        let n = bytes.len();
        bytes.truncate(n / 2);
        assert!(MetadataState::decode(&bytes).is_err());
    }
}
