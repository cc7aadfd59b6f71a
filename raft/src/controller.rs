//! Controller logic: what the raft leader proposes to keep the cluster
//! healthy. Pure functions of the applied [`MetadataState`] and a time
//! passed in; no I/O. [`Controller`] holds only leader-local soft state
//! (when each broker was last heard from, what was proposed recently) and
//! is created anew by whoever becomes raft leader; the broker's shard 0
//! owns it next to its [`crate::node::Node`].
//!
//! The state machine validates every command again on apply, so a decision
//! made on a stale view is rejected there, never half-applied.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{BrokerId, Millis, PartitionIndex, TopicId};
use crate::metadata::{BrokerState, Command, MetadataState, Partition, Proposal, Topic};
use crate::node::Applied;

/// Controller timing.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Fence a broker not heard from for this long.
    pub broker_session_timeout_ms: u64,
    /// Propose the same fix again if it has not applied after this long.
    pub retry_ms: u64,
    /// Move leadership back to the preferred replica when it can lead.
    pub auto_leader_rebalance: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            broker_session_timeout_ms: 9_000,
            retry_ms: 2_000,
            auto_leader_rebalance: true,
        }
    }
}

/// Why replicas could not be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "replication factor {replication_factor} needs that many alive brokers, {alive} alive"
    )]
    NotEnoughBrokers {
        replication_factor: usize,
        alive: usize,
    },
    #[error("invalid partition count {0}")]
    InvalidPartitionCount(i32),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("topic already exists: {0}")]
    TopicExists(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ActionKey {
    Broker(BrokerId),
    Partition(TopicId, PartitionIndex),
}

/// Leader-local controller state.
pub struct Controller {
    config: ControllerConfig,
    /// When this node became leader: every broker gets a full session from
    /// then, since heartbeats seen by the previous leader are unknown here.
    since: Millis,
    heard: BTreeMap<BrokerId, Millis>,
    proposed: BTreeMap<ActionKey, Millis>,
}

impl Controller {
    /// A controller for a node that became raft leader at `now`.
    pub fn new(config: ControllerConfig, now: Millis) -> Controller {
        Controller {
            config,
            since: now,
            heard: BTreeMap::new(),
            proposed: BTreeMap::new(),
        }
    }

    /// Notes heartbeats and registrations among applied entries.
    pub fn observe(&mut self, applied: &[Applied], now: Millis) {
        for a in applied.iter().filter(|a| a.outcome.is_ok()) {
            for c in &a.commands.commands {
                match c {
                    Command::BrokerHeartbeat { broker }
                    | Command::RegisterBroker { broker, .. } => {
                        self.heard.insert(*broker, now);
                    }
                    _ => {}
                }
            }
        }
    }

    fn last_heard(&self, b: BrokerId) -> Millis {
        self.heard
            .get(&b)
            .copied()
            .unwrap_or(self.since)
            .max(self.since)
    }

    fn may_propose(&mut self, key: ActionKey, now: Millis) -> bool {
        match self.proposed.get(&key) {
            Some(t) if now.since(*t) < self.config.retry_ms => false,
            _ => {
                self.proposed.insert(key, now);
                true
            }
        }
    }

    /// What to propose now: fence silent brokers (moving their leaderships
    /// in the same batch), unfence brokers heard again, elect leaders for
    /// leaderless partitions, drain decommissioning brokers, restore
    /// preferred leaders, finish caught-up reassignments.
    pub fn tick(&mut self, state: &MetadataState, now: Millis) -> Vec<Proposal> {
        let mut out = Vec::new();
        let timeout = self.config.broker_session_timeout_ms;
        let mut fenced_now: BTreeSet<BrokerId> = BTreeSet::new();
        for b in state.brokers.values() {
            let silent = now.since(self.last_heard(b.id)) > timeout;
            let heard_again = self
                .heard
                .get(&b.id)
                .is_some_and(|t| now.since(*t) <= timeout);
            let proposal = match b.state {
                BrokerState::Alive | BrokerState::Decommissioning if silent => {
                    fenced_now.insert(b.id);
                    fence_broker(state, b.id)
                }
                BrokerState::Fenced if heard_again => Proposal {
                    commands: vec![Command::UnfenceBroker { broker: b.id }],
                },
                _ => continue,
            };
            if self.may_propose(ActionKey::Broker(b.id), now) {
                out.push(proposal);
            }
        }
        // Restarted brokers: out of the ISRs others share, leaderships moved, then free to
        // lead again.
        for b in state.brokers.values().filter(|b| b.recovering) {
            if !fenced_now.contains(&b.id) && self.may_propose(ActionKey::Broker(b.id), now) {
                fenced_now.insert(b.id);
                out.push(recover_broker(state, b.id));
            }
        }
        out.extend(self.drain_decommissioning(state, now));
        for t in state.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let pi = PartitionIndex(i as i32);
                // Partitions a fence or recovery in this batch already handles wait.
                if p.replicas.iter().any(|r| fenced_now.contains(r)) {
                    continue;
                }
                if let Some(cmd) = partition_fix(state, t, pi, p, self.config.auto_leader_rebalance)
                {
                    if self.may_propose(ActionKey::Partition(t.id, pi), now) {
                        out.push(Proposal {
                            commands: vec![cmd],
                        });
                    }
                }
            }
        }
        out
    }
}

impl Controller {
    /// Decommissioning brokers: each replica they hold moves to another broker (a
    /// reassignment, one per partition at a time); a broker that holds none is
    /// unregistered.
    fn drain_decommissioning(&mut self, state: &MetadataState, now: Millis) -> Vec<Proposal> {
        let mut out = Vec::new();
        let leaving: Vec<BrokerId> = state
            .brokers
            .values()
            .filter(|b| b.state == BrokerState::Decommissioning)
            .map(|b| b.id)
            .collect();
        if leaving.is_empty() {
            return out;
        }
        let mut held: BTreeMap<BrokerId, usize> = BTreeMap::new();
        for p in state.topics.values().flat_map(|t| &t.partitions) {
            for r in &p.replicas {
                *held.entry(*r).or_default() += 1;
            }
        }
        for b in leaving {
            if held.get(&b).copied().unwrap_or(0) == 0 {
                if self.may_propose(ActionKey::Broker(b), now) {
                    out.push(Proposal {
                        commands: vec![Command::UnregisterBroker { broker: b }],
                    });
                }
                continue;
            }
            for t in state.topics.values() {
                for (i, p) in t.partitions.iter().enumerate() {
                    if !p.replicas.contains(&b) || !p.adding.is_empty() || !p.removing.is_empty() {
                        continue;
                    }
                    let Some(to) = replacement_for(state, p, &held) else {
                        continue; // no broker to take it: stays until one joins
                    };
                    let key = ActionKey::Partition(t.id, PartitionIndex(i as i32));
                    if !self.may_propose(key, now) {
                        continue;
                    }
                    *held.entry(to).or_default() += 1;
                    out.push(Proposal {
                        commands: vec![Command::BeginReassignment {
                            topic: t.id,
                            partition: PartitionIndex(i as i32),
                            target: p
                                .replicas
                                .iter()
                                .map(|r| if *r == b { to } else { *r })
                                .collect(),
                        }],
                    });
                }
            }
        }
        out
    }
}

/// The Alive broker that should take over a replica of `p`: not already a replica, on
/// a rack the other replicas do not use if possible, holding the fewest replicas.
fn replacement_for(
    state: &MetadataState,
    p: &Partition,
    held: &BTreeMap<BrokerId, usize>,
) -> Option<BrokerId> {
    let racks: BTreeSet<&str> = p
        .replicas
        .iter()
        .filter_map(|r| state.brokers.get(r))
        .filter(|b| b.state != BrokerState::Decommissioning)
        .filter_map(|b| b.rack.as_deref())
        .collect();
    state
        .brokers
        .values()
        .filter(|b| b.state == BrokerState::Alive && !p.replicas.contains(&b.id))
        .min_by_key(|b| {
            (
                b.rack.as_deref().is_some_and(|r| racks.contains(r)),
                held.get(&b.id).copied().unwrap_or(0),
                b.id,
            )
        })
        .map(|b| b.id)
}

/// Whether `b` may lead: registered and Alive (a decommissioning broker
/// serves but hands its leaderships over).
fn can_lead(state: &MetadataState, b: BrokerId) -> bool {
    state
        .brokers
        .get(&b)
        .is_some_and(|br| br.state == BrokerState::Alive && !br.recovering)
}

/// Picks a leader among `isr` in replica order: an Alive one first, then a
/// decommissioning one; `excluded` never.
fn pick_leader(
    state: &MetadataState,
    p: &Partition,
    isr: &[BrokerId],
    excluded: BrokerId,
) -> Option<BrokerId> {
    let eligible = |b: &&BrokerId| **b != excluded && isr.contains(b);
    p.replicas
        .iter()
        .filter(eligible)
        .find(|b| can_lead(state, **b))
        .or_else(|| {
            p.replicas
                .iter()
                .filter(eligible)
                .find(|b| state.is_live(**b))
        })
        .copied()
}

/// The batch that fences `broker`: the broker leaves every ISR (unless it
/// is the last member, which keeps its claim as in Kafka) and every
/// partition it leads gets a new leader from the remaining ISR, or none.
pub fn fence_broker(state: &MetadataState, broker: BrokerId) -> Proposal {
    let mut commands = vec![Command::FenceBroker { broker }];
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if !p.isr.contains(&broker) && p.leader != Some(broker) {
                continue;
            }
            let mut isr: Vec<BrokerId> = p.isr.iter().copied().filter(|b| *b != broker).collect();
            if isr.is_empty() {
                isr = vec![broker];
            }
            let leader = if p.leader == Some(broker) || p.leader.is_none() {
                pick_leader(state, p, &isr, broker)
            } else {
                p.leader
            };
            commands.push(Command::ChangePartition {
                topic: t.id,
                partition: PartitionIndex(i as i32),
                partition_epoch: p.partition_epoch,
                leader,
                isr,
            });
        }
    }
    Proposal { commands }
}

/// The batch that lets a restarted broker (a new incarnation) lead again: it leaves every
/// ISR it shares with others (it rejoins once it has caught up, through its leader's ISR
/// check) and the partitions it led get a new leader from those others. Where it is the
/// last member it keeps its claim, as Kafka's last ISR member does, but a partition it led
/// loses its leader for now and is led again at a new leader epoch: the restarted log may
/// have lost records it held at the old epoch (kill -9 before the write-behind, a power
/// loss), and what it appends next must not pass for them with a follower that kept them.
pub fn recover_broker(state: &MetadataState, broker: BrokerId) -> Proposal {
    let mut commands = Vec::new();
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if !p.isr.contains(&broker) && p.leader != Some(broker) {
                continue;
            }
            let isr: Vec<BrokerId> = p.isr.iter().copied().filter(|b| *b != broker).collect();
            if isr.is_empty() {
                if p.leader == Some(broker) {
                    commands.push(Command::ChangePartition {
                        topic: t.id,
                        partition: PartitionIndex(i as i32),
                        partition_epoch: p.partition_epoch,
                        leader: None,
                        isr: vec![broker],
                    });
                }
                continue;
            }
            let leader = if p.leader == Some(broker) || p.leader.is_none() {
                pick_leader(state, p, &isr, broker)
            } else {
                p.leader
            };
            commands.push(Command::ChangePartition {
                topic: t.id,
                partition: PartitionIndex(i as i32),
                partition_epoch: p.partition_epoch,
                leader,
                isr,
            });
        }
    }
    commands.push(Command::BrokerRecovered { broker });
    Proposal { commands }
}

/// The one change a partition needs now, if any.
fn partition_fix(
    state: &MetadataState,
    t: &Topic,
    pi: PartitionIndex,
    p: &Partition,
    rebalance: bool,
) -> Option<Command> {
    let change = |leader: Option<BrokerId>, isr: Vec<BrokerId>| Command::ChangePartition {
        topic: t.id,
        partition: pi,
        partition_epoch: p.partition_epoch,
        leader,
        isr,
    };
    // A reassignment whose new replicas caught up completes first.
    if (!p.adding.is_empty() || !p.removing.is_empty())
        && p.adding.iter().all(|b| p.isr.contains(b))
    {
        let new_isr: Vec<BrokerId> = p
            .isr
            .iter()
            .copied()
            .filter(|b| !p.removing.contains(b))
            .collect();
        let leader = match p.leader {
            Some(l) if !p.removing.contains(&l) => Some(l),
            _ => pick_leader(state, p, &new_isr, BrokerId(i32::MIN)),
        };
        if !new_isr.is_empty() {
            return Some(Command::CompleteReassignment {
                topic: t.id,
                partition: pi,
                partition_epoch: p.partition_epoch,
                leader,
            });
        }
    }
    match p.leader {
        None => {
            if let Some(l) = pick_leader(state, p, &p.isr, BrokerId(i32::MIN)) {
                return Some(change(Some(l), p.isr.clone()));
            }
            if t.unclean_leader_election(state.unclean_leader_election_default()) {
                // Data loss accepted by config: any live replica, alone in the ISR.
                if let Some(l) = p.replicas.iter().copied().find(|b| can_lead(state, *b)) {
                    return Some(change(Some(l), vec![l]));
                }
            }
            None
        }
        Some(l) => {
            let leader_state = state.brokers.get(&l).map(|b| b.state);
            if leader_state == Some(BrokerState::Decommissioning) {
                let other = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|b| *b != l && p.isr.contains(b) && can_lead(state, *b));
                return other.map(|o| change(Some(o), p.isr.clone()));
            }
            let preferred = p.replicas[0];
            if rebalance
                && preferred != l
                && p.isr.contains(&preferred)
                && can_lead(state, preferred)
            {
                return Some(change(Some(preferred), p.isr.clone()));
            }
            None
        }
    }
}

/// Places `partitions` new partitions of `replication_factor` replicas on
/// Alive brokers: each partition's replicas on distinct brokers and, where
/// there are enough racks, distinct racks; replicas and preferred
/// leaderships spread evenly, counting what brokers already hold.
/// `first_partition` offsets the rotation so added partitions continue it.
pub fn place_replicas(
    state: &MetadataState,
    partitions: i32,
    replication_factor: usize,
    first_partition: i32,
) -> Result<Vec<Vec<BrokerId>>, PlacementError> {
    if partitions <= 0 {
        return Err(PlacementError::InvalidPartitionCount(partitions));
    }
    let eligible: Vec<(BrokerId, Option<&str>)> = state
        .brokers
        .values()
        .filter(|b| b.state == BrokerState::Alive)
        .map(|b| (b.id, b.rack.as_deref()))
        .collect();
    if replication_factor == 0 || eligible.len() < replication_factor {
        return Err(PlacementError::NotEnoughBrokers {
            replication_factor,
            alive: eligible.len(),
        });
    }
    let mut replicas_held: BTreeMap<BrokerId, usize> = BTreeMap::new();
    let mut leaders_held: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        for r in &p.replicas {
            *replicas_held.entry(*r).or_default() += 1;
        }
        *leaders_held.entry(p.replicas[0]).or_default() += 1;
    }
    let n = eligible.len();
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let rotation = ((first_partition + p) as usize) % n;
        let mut chosen: Vec<BrokerId> = Vec::with_capacity(replication_factor);
        let mut racks: BTreeSet<&str> = BTreeSet::new();
        for slot in 0..replication_factor {
            let best = eligible
                .iter()
                .enumerate()
                .filter(|(_, (b, _))| !chosen.contains(b))
                .min_by_key(|(i, (b, rack))| {
                    let rack_reused = rack.is_some_and(|r| racks.contains(r));
                    let leads = if slot == 0 {
                        leaders_held.get(b).copied().unwrap_or(0)
                    } else {
                        0
                    };
                    (
                        rack_reused,
                        leads,
                        replicas_held.get(b).copied().unwrap_or(0),
                        (i + n - rotation) % n,
                    )
                })
                .map(|(_, e)| *e);
            let Some((b, rack)) = best else {
                unreachable!("eligible has at least replication_factor brokers")
            };
            chosen.push(b);
            if let Some(r) = rack {
                racks.insert(r);
            }
            *replicas_held.entry(b).or_default() += 1;
            if slot == 0 {
                *leaders_held.entry(b).or_default() += 1;
            }
        }
        out.push(chosen);
    }
    Ok(out)
}

/// The command that creates a topic, placed by [`place_replicas`].
pub fn create_topic(
    state: &MetadataState,
    name: &str,
    partitions: i32,
    replication_factor: usize,
    configs: BTreeMap<String, String>,
) -> Result<Proposal, PlacementError> {
    if state.topic_ids.contains_key(name) {
        return Err(PlacementError::TopicExists(name.to_string()));
    }
    let assignment = place_replicas(state, partitions, replication_factor, 0)?;
    Ok(Proposal {
        commands: vec![Command::CreateTopic {
            name: name.to_string(),
            configs,
            assignment,
        }],
    })
}

/// The command that grows a topic to `total_partitions`, keeping its
/// replication factor.
pub fn create_partitions(
    state: &MetadataState,
    name: &str,
    total_partitions: i32,
) -> Result<Proposal, PlacementError> {
    let t = state
        .topic_by_name(name)
        .ok_or_else(|| PlacementError::UnknownTopic(name.to_string()))?;
    let have = t.partitions.len() as i32;
    if total_partitions <= have {
        return Err(PlacementError::InvalidPartitionCount(total_partitions));
    }
    let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
    let assignment = place_replicas(state, total_partitions - have, rf, have)?;
    Ok(Proposal {
        commands: vec![Command::CreatePartitions {
            topic: t.id,
            assignment,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::LeaderEpoch;
    use crate::metadata::UNCLEAN_LEADER_ELECTION_CONFIG;

    struct Cluster {
        state: MetadataState,
        index: u64,
    }

    impl Cluster {
        fn new(brokers: &[(i32, &str)]) -> Cluster {
            let mut c = Cluster {
                state: MetadataState::default(),
                index: 0,
            };
            for (b, rack) in brokers {
                c.apply(Proposal {
                    commands: vec![Command::RegisterBroker {
                        broker: BrokerId(*b),
                        host: "h".into(),
                        port: 9092,
                        rack: Some(rack.to_string()),
                        incarnation: 1,
                    }],
                });
            }
            c
        }

        fn apply(&mut self, p: Proposal) {
            self.index += 1;
            self.state.apply(self.index, &p).unwrap();
            self.state.check_invariants().unwrap();
        }

        fn apply_all(&mut self, ps: Vec<Proposal>) -> usize {
            let n = ps.len();
            for p in ps {
                self.apply(p);
            }
            n
        }
    }

    fn heartbeat(b: i32) -> Applied {
        Applied {
            index: 0,
            term: 0,
            proposal: None,
            commands: Proposal {
                commands: vec![Command::BrokerHeartbeat {
                    broker: BrokerId(b),
                }],
            },
            outcome: Ok(()),
        }
    }

    #[test]
    fn placement_balances_replicas_leaders_and_racks() {
        let c = Cluster::new(&[(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "c")]);
        let assignment = place_replicas(&c.state, 12, 3, 0).unwrap();
        let mut replicas = BTreeMap::new();
        let mut leaders = BTreeMap::new();
        for rs in &assignment {
            let racks: BTreeSet<_> = rs.iter().map(|b| c.state.brokers[b].rack.clone()).collect();
            assert_eq!(racks.len(), 3, "one replica per rack: {rs:?}");
            for r in rs {
                *replicas.entry(*r).or_insert(0) += 1;
            }
            *leaders.entry(rs[0]).or_insert(0) += 1;
        }
        assert!(replicas.values().all(|n| *n == 6), "{replicas:?}");
        assert!(leaders.values().all(|n| *n == 2), "{leaders:?}");
        assert!(matches!(
            place_replicas(&c.state, 1, 7, 0),
            Err(PlacementError::NotEnoughBrokers { .. })
        ));
    }

    #[test]
    fn silent_leader_is_fenced_and_leadership_moves_within_the_isr() {
        let mut c = Cluster::new(&[(0, "a"), (1, "b"), (2, "c")]);
        let p = create_topic(&c.state, "t", 3, 3, BTreeMap::new()).unwrap();
        c.apply(p);
        let cfg = ControllerConfig::default();
        let timeout = cfg.broker_session_timeout_ms;
        let mut ctl = Controller::new(cfg, Millis(0));
        assert!(ctl.tick(&c.state, Millis(1000)).is_empty());
        // Brokers 1 and 2 keep heartbeating; 0 goes silent.
        ctl.observe(&[heartbeat(1), heartbeat(2)], Millis(timeout));
        let fixes = ctl.tick(&c.state, Millis(timeout + 1));
        assert_eq!(fixes.len(), 1, "{fixes:?}");
        assert_eq!(c.apply_all(fixes), 1);
        assert!(!c.state.is_live(BrokerId(0)));
        let t = c.state.topic_by_name("t").unwrap();
        for p in &t.partitions {
            assert_ne!(p.leader, Some(BrokerId(0)));
            assert!(!p.isr.contains(&BrokerId(0)));
            assert!(p.leader.is_some());
        }
        // The partition broker 0 led has a bumped epoch.
        assert!(t
            .partitions
            .iter()
            .any(|p| p.leader_epoch == LeaderEpoch(1)));
        // Not proposed again while the first is in flight.
        assert!(ctl.tick(&c.state, Millis(timeout + 2)).is_empty());
    }

    #[test]
    fn fenced_broker_returns_and_preferred_leadership_moves_back_once_in_isr() {
        let mut c = Cluster::new(&[(0, "a"), (1, "b")]);
        c.apply(create_topic(&c.state, "t", 1, 2, BTreeMap::new()).unwrap());
        let preferred = c.state.topic_by_name("t").unwrap().partitions[0].replicas[0];
        c.apply(fence_broker(&c.state, preferred));
        let cfg = ControllerConfig::default();
        let mut ctl = Controller::new(cfg, Millis(0));
        ctl.observe(&[heartbeat(0), heartbeat(1)], Millis(10));
        let fixes = ctl.tick(&c.state, Millis(20));
        assert_eq!(
            fixes,
            vec![Proposal {
                commands: vec![Command::UnfenceBroker { broker: preferred }]
            }]
        );
        c.apply_all(fixes);
        // Not in the ISR yet: leadership stays.
        assert!(ctl.tick(&c.state, Millis(5000)).is_empty());
        let tid = c.state.topic_by_name("t").unwrap().id;
        let p = c.state.topic_by_name("t").unwrap().partitions[0].clone();
        let mut isr = p.isr.clone();
        isr.push(preferred);
        c.apply(Proposal {
            commands: vec![Command::ChangePartition {
                topic: tid,
                partition: PartitionIndex(0),
                partition_epoch: p.partition_epoch,
                leader: p.leader,
                isr,
            }],
        });
        c.apply_all(ctl.tick(&c.state, Millis(9000)));
        let p = &c.state.topic_by_name("t").unwrap().partitions[0];
        assert_eq!(p.leader, Some(preferred));
    }

    #[test]
    fn a_restarted_broker_leaves_shared_isrs_and_leads_nothing_until_recovered() {
        let mut c = Cluster::new(&[(0, "a"), (1, "b"), (2, "c")]);
        c.apply(create_topic(&c.state, "t", 3, 3, BTreeMap::new()).unwrap());
        c.apply(create_topic(&c.state, "solo", 1, 1, BTreeMap::new()).unwrap());
        let restarted = c.state.topic_by_name("t").unwrap().partitions[0]
            .leader
            .unwrap();
        let solo_owner = c.state.topic_by_name("solo").unwrap().partitions[0].replicas[0];
        // The same incarnation registering again is not a restart.
        c.apply(Proposal {
            commands: vec![Command::RegisterBroker {
                broker: restarted,
                host: "h".into(),
                port: 9092,
                rack: None,
                incarnation: 1,
            }],
        });
        assert!(!c.state.brokers[&restarted].recovering);
        // A new incarnation is.
        c.apply(Proposal {
            commands: vec![Command::RegisterBroker {
                broker: restarted,
                host: "h".into(),
                port: 9092,
                rack: None,
                incarnation: 2,
            }],
        });
        assert!(c.state.brokers[&restarted].recovering);
        let mut ctl = Controller::new(ControllerConfig::default(), Millis(0));
        let fixes = ctl.tick(&c.state, Millis(10));
        assert_eq!(
            fixes.len(),
            1,
            "one batch for the restarted broker: {fixes:?}"
        );
        assert_eq!(
            fixes[0].commands.last(),
            Some(&Command::BrokerRecovered { broker: restarted })
        );
        c.apply_all(fixes);
        assert!(!c.state.brokers[&restarted].recovering);
        for p in &c.state.topic_by_name("t").unwrap().partitions {
            assert!(!p.isr.contains(&restarted), "{p:?}");
            assert_ne!(p.leader, Some(restarted));
            assert_eq!(p.isr.len(), 2);
        }
        // A partition it alone holds keeps it (there is nobody else), and is led again at
        // a new leader epoch.
        let solo = &c.state.topic_by_name("solo").unwrap().partitions[0];
        assert_eq!(solo.isr, vec![solo_owner]);
        assert_eq!(solo.leader, None);
        // The preferred-leader pass does not hand leadership back before it rejoined.
        let tid = c.state.topic_by_name("t").unwrap().id;
        let fixes = ctl.tick(&c.state, Millis(5000));
        assert!(fixes
            .iter()
            .all(|p| p.commands.iter().all(|c| !matches!(c, Command::ChangePartition { topic, leader: Some(l), .. } if *l == restarted && *topic == tid))));
        c.apply_all(fixes);
        let solo = &c.state.topic_by_name("solo").unwrap().partitions[0];
        assert_eq!(solo.leader, Some(solo_owner));
        assert_eq!(solo.leader_epoch, LeaderEpoch(2));
    }

    #[test]
    fn a_restarted_last_isr_member_leads_again_only_at_a_new_leader_epoch() {
        // Found by the partition simulator: the leader, alone in the ISR, lost power, came
        // back within the session timeout with a shorter log and led again at the same
        // epoch; a follower out of the ISR still held the lost records of that epoch,
        // which the new appends could not be told apart from (the follower stuck, or kept
        // another history under the same epoch).
        let mut c = Cluster::new(&[(0, "a"), (1, "b")]);
        c.apply(create_topic(&c.state, "t", 1, 2, BTreeMap::new()).unwrap());
        let tid = c.state.topic_by_name("t").unwrap().id;
        let p = c.state.topic_by_name("t").unwrap().partitions[0].clone();
        let leader = p.leader.unwrap();
        c.apply(Proposal {
            commands: vec![Command::ChangePartition {
                topic: tid,
                partition: PartitionIndex(0),
                partition_epoch: p.partition_epoch,
                leader: Some(leader),
                isr: vec![leader],
            }],
        });
        let before = c.state.topic_by_name("t").unwrap().partitions[0].leader_epoch;
        c.apply(Proposal {
            commands: vec![Command::RegisterBroker {
                broker: leader,
                host: "h".into(),
                port: 9092,
                rack: None,
                incarnation: 2,
            }],
        });
        assert!(c.state.brokers[&leader].recovering);
        let mut ctl = Controller::new(ControllerConfig::default(), Millis(0));
        c.apply_all(ctl.tick(&c.state, Millis(10)));
        let p = &c.state.topic_by_name("t").unwrap().partitions[0];
        assert_eq!(p.isr, vec![leader], "the last ISR member keeps its claim");
        assert_eq!(p.leader, None);
        assert!(!c.state.brokers[&leader].recovering);
        c.apply_all(ctl.tick(&c.state, Millis(20)));
        let p = &c.state.topic_by_name("t").unwrap().partitions[0];
        assert_eq!(p.leader, Some(leader));
        assert!(
            p.leader_epoch > before,
            "{:?} after {before:?}",
            p.leader_epoch
        );
    }

    #[test]
    fn no_unclean_election_unless_the_topic_allows_it() {
        let mut c = Cluster::new(&[(0, "a"), (1, "b")]);
        c.apply(create_topic(&c.state, "t", 1, 2, BTreeMap::new()).unwrap());
        let p = c.state.topic_by_name("t").unwrap().partitions[0].clone();
        let (first, second) = (p.replicas[0], p.replicas[1]);
        // ISR shrinks to the leader alone, then the leader is fenced.
        let tid = c.state.topic_by_name("t").unwrap().id;
        c.apply(Proposal {
            commands: vec![Command::ChangePartition {
                topic: tid,
                partition: PartitionIndex(0),
                partition_epoch: p.partition_epoch,
                leader: Some(first),
                isr: vec![first],
            }],
        });
        c.apply(fence_broker(&c.state, first));
        let p = &c.state.topic_by_name("t").unwrap().partitions[0];
        assert_eq!(p.leader, None);
        assert_eq!(p.isr, vec![first], "the last ISR member keeps its claim");
        let mut ctl = Controller::new(ControllerConfig::default(), Millis(0));
        assert!(ctl.tick(&c.state, Millis(1)).is_empty());
        c.apply(Proposal {
            commands: vec![Command::AlterTopicConfigs {
                topic: tid,
                changes: vec![(UNCLEAN_LEADER_ELECTION_CONFIG.into(), Some("true".into()))],
            }],
        });
        c.apply_all(ctl.tick(&c.state, Millis(2)));
        let p = &c.state.topic_by_name("t").unwrap().partitions[0];
        assert_eq!(p.leader, Some(second));
        assert_eq!(p.isr, vec![second]);
    }

    #[test]
    fn the_cluster_wide_unclean_default_applies_where_the_topic_says_nothing() {
        let mut c = Cluster::new(&[(0, "a"), (1, "b")]);
        let explicit = BTreeMap::from([(
            UNCLEAN_LEADER_ELECTION_CONFIG.to_string(),
            "false".to_string(),
        )]);
        c.apply(create_topic(&c.state, "unset", 1, 2, BTreeMap::new()).unwrap());
        c.apply(create_topic(&c.state, "refuses", 1, 2, explicit).unwrap());
        let first = c.state.topic_by_name("unset").unwrap().partitions[0].replicas[0];
        for name in ["unset", "refuses"] {
            let t = c.state.topic_by_name(name).unwrap();
            let (tid, p) = (t.id, t.partitions[0].clone());
            // Every replica but `first` leaves the ISR; `first` leads.
            c.apply(Proposal {
                commands: vec![Command::ChangePartition {
                    topic: tid,
                    partition: PartitionIndex(0),
                    partition_epoch: p.partition_epoch,
                    leader: Some(first),
                    isr: vec![first],
                }],
            });
        }
        c.apply(Proposal {
            commands: vec![Command::AlterBrokerConfigs {
                broker: None,
                changes: vec![(UNCLEAN_LEADER_ELECTION_CONFIG.into(), Some("true".into()))],
            }],
        });
        c.apply(fence_broker(&c.state, first));
        let mut ctl = Controller::new(ControllerConfig::default(), Millis(0));
        c.apply_all(ctl.tick(&c.state, Millis(1)));
        let unset = &c.state.topic_by_name("unset").unwrap().partitions[0];
        assert!(
            unset.leader.is_some_and(|l| l != first),
            "the cluster default allows it: {unset:?}"
        );
        let refuses = &c.state.topic_by_name("refuses").unwrap().partitions[0];
        assert_eq!(refuses.leader, None, "the topic's own false wins");
    }

    #[test]
    fn reassignment_completes_when_added_replicas_join_the_isr() {
        let mut c = Cluster::new(&[(0, "a"), (1, "b"), (2, "c")]);
        c.apply(create_topic(&c.state, "t", 1, 2, BTreeMap::new()).unwrap());
        let tid = c.state.topic_by_name("t").unwrap().id;
        let old = c.state.topic_by_name("t").unwrap().partitions[0]
            .replicas
            .clone();
        let newcomer = (0..3).map(BrokerId).find(|b| !old.contains(b)).unwrap();
        let target = vec![newcomer, old[1]];
        c.apply(Proposal {
            commands: vec![Command::BeginReassignment {
                topic: tid,
                partition: PartitionIndex(0),
                target: target.clone(),
            }],
        });
        let mut ctl = Controller::new(
            ControllerConfig {
                auto_leader_rebalance: false,
                ..ControllerConfig::default()
            },
            Millis(0),
        );
        assert!(
            ctl.tick(&c.state, Millis(1)).is_empty(),
            "not caught up yet"
        );
        let p = c.state.topic_by_name("t").unwrap().partitions[0].clone();
        let mut isr = p.isr.clone();
        isr.push(newcomer);
        c.apply(Proposal {
            commands: vec![Command::ChangePartition {
                topic: tid,
                partition: PartitionIndex(0),
                partition_epoch: p.partition_epoch,
                leader: p.leader,
                isr,
            }],
        });
        assert_eq!(c.apply_all(ctl.tick(&c.state, Millis(2))), 1);
        let p = &c.state.topic_by_name("t").unwrap().partitions[0];
        assert_eq!(p.replicas, target);
        assert!(p.adding.is_empty() && p.removing.is_empty());
        assert!(p.leader.is_some_and(|l| target.contains(&l)));
    }

    #[test]
    fn a_decommissioned_broker_has_its_replicas_moved_then_is_unregistered() {
        let mut c = Cluster::new(&[(0, "a"), (1, "b"), (2, "c"), (3, "d")]);
        c.apply(create_topic(&c.state, "t", 4, 2, BTreeMap::new()).unwrap());
        let tid = c.state.topic_by_name("t").unwrap().id;
        let gone = BrokerId(1);
        let held = |c: &Cluster| {
            c.state
                .topic_by_name("t")
                .unwrap()
                .partitions
                .iter()
                .filter(|p| p.replicas.contains(&gone))
                .count()
        };
        assert_eq!(held(&c), 2, "balanced placement: 8 replicas over 4 brokers");
        c.apply(Proposal {
            commands: vec![Command::DecommissionBroker { broker: gone }],
        });
        let mut ctl = Controller::new(
            ControllerConfig {
                auto_leader_rebalance: false,
                ..ControllerConfig::default()
            },
            Millis(0),
        );
        let mut t = 1;
        let mut tick = |c: &mut Cluster, ctl: &mut Controller| {
            for b in [0, 2, 3, 1] {
                ctl.observe(&[heartbeat(b)], Millis(t));
            }
            t += ctl.config.retry_ms + 1;
            c.apply_all(ctl.tick(&c.state, Millis(t)))
        };
        // Leadership moves off and each of its replicas starts moving elsewhere.
        tick(&mut c, &mut ctl);
        tick(&mut c, &mut ctl);
        let moving: Vec<(usize, Vec<BrokerId>)> = c
            .state
            .topic_by_name("t")
            .unwrap()
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.adding.is_empty())
            .map(|(i, p)| (i, p.adding.clone()))
            .collect();
        assert_eq!(moving.len(), 2, "both replicas moving: {moving:?}");
        for (_, adding) in &moving {
            assert!(!adding.contains(&gone));
        }
        assert!(c
            .state
            .topic_by_name("t")
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.leader != Some(gone)));
        // The new replicas catch up (their leaders add them to the ISR).
        for (i, adding) in &moving {
            let p = c.state.topic_by_name("t").unwrap().partitions[*i].clone();
            let mut isr = p.isr.clone();
            isr.extend(adding);
            c.apply(Proposal {
                commands: vec![Command::ChangePartition {
                    topic: tid,
                    partition: PartitionIndex(*i as i32),
                    partition_epoch: p.partition_epoch,
                    leader: p.leader,
                    isr,
                }],
            });
        }
        tick(&mut c, &mut ctl);
        assert_eq!(held(&c), 0);
        assert!(c.state.brokers.contains_key(&gone));
        tick(&mut c, &mut ctl);
        assert!(!c.state.brokers.contains_key(&gone), "not unregistered");
    }
}
