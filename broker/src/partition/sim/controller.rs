//! The controller, as far as one partition sees it: the rules of `rill_raft::controller` and
//! `rill_raft::metadata` (ChangePartition, RegisterBroker, fencing, recovery, elections)
//! applied at once, without the raft group (its own simulation covers that), to one
//! partition and its brokers. What a broker learns of it is an [`Image`], delivered through
//! the simulated network like the metadata a real broker applies.
//!
//! The rules kept, each as the raft crate has it:
//! - a broker silent for the session timeout is fenced: it leaves the ISR (unless it is the
//!   last member) and a partition it leads gets a leader from the rest of the ISR, or none;
//! - a fenced broker heard again is unfenced; a broker that registers a new incarnation is
//!   Alive at once, and recovering if it held an ISR seat: it leaves the ISRs it shares and
//!   its leaderships move (where it is the last member, it is led again at a new epoch),
//!   then it may lead again;
//! - a leaderless partition gets a leader from its ISR (clean elections only), one that can
//!   lead (Alive, not recovering) first, any live one after;
//! - leadership goes back to the preferred replica once it is in the ISR and can lead;
//! - the leader's ISR changes are compare-and-set on the partition epoch, add only live
//!   brokers, and a leader change bumps the leader epoch.

use crate::metadata::Placement;

/// What the metadata says of one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BrokerView {
    /// 0: never registered.
    pub incarnation: u32,
    pub fenced: bool,
    pub recovering: bool,
}

/// The metadata a broker applies: the partition's placement and the brokers, at a version.
#[derive(Debug, Clone)]
pub(super) struct Image {
    pub version: u64,
    pub placement: Placement,
    /// By broker id - 1.
    pub brokers: Vec<BrokerView>,
}

impl Image {
    fn view(&self, b: i32) -> Option<&BrokerView> {
        usize::try_from(b - 1)
            .ok()
            .and_then(|i| self.brokers.get(i))
    }

    /// `Image::is_alive` of the broker: registered and not fenced.
    pub fn is_alive(&self, b: i32) -> bool {
        self.view(b).is_some_and(|v| v.incarnation > 0 && !v.fenced)
    }

    /// `me_can_lead` of `metadata/raft.rs`: this run's registration applied, not recovering,
    /// not fenced.
    pub fn can_lead(&self, me: i32, incarnation: u32) -> bool {
        self.view(me)
            .is_some_and(|v| v.incarnation == incarnation && !v.recovering && !v.fenced)
    }

    /// The placement as broker `me` acts on it (`effective` in `shard/apply.rs`): a
    /// partition it may not lead yet has no leader here.
    pub fn effective(&self, me: i32, incarnation: u32) -> Placement {
        let mut p = self.placement.clone();
        if p.leader == me && !self.can_lead(me, incarnation) {
            p.leader = -1;
        }
        p
    }
}

struct Member {
    view: BrokerView,
    last_heard_ms: u64,
}

/// The controller's state of the partition and its brokers.
pub(super) struct Controller {
    pub placement: Placement,
    members: Vec<Member>,
    pub version: u64,
    session_timeout_ms: u64,
    /// Self-check of the simulator: elect any live replica, in the ISR or not.
    unclean: bool,
    /// Leader changes made (for the run summary).
    pub elections: u64,
}

impl Controller {
    /// Brokers `replicas` (the first is the preferred leader), all registered at incarnation
    /// 1 and in the ISR, the first leading at epoch 0.
    pub fn new(replicas: Vec<i32>, session_timeout_ms: u64, unclean: bool) -> Controller {
        let n = replicas.len();
        Controller {
            placement: Placement {
                leader: replicas[0],
                leader_epoch: 0,
                isr: replicas.clone(),
                replicas,
                partition_epoch: 0,
                adding: Vec::new(),
                removing: Vec::new(),
            },
            members: (0..n)
                .map(|_| Member {
                    view: BrokerView {
                        incarnation: 1,
                        fenced: false,
                        recovering: false,
                    },
                    last_heard_ms: 0,
                })
                .collect(),
            version: 1,
            session_timeout_ms,
            unclean,
            elections: 0,
        }
    }

    pub fn image(&self) -> Image {
        Image {
            version: self.version,
            placement: self.placement.clone(),
            brokers: self.members.iter().map(|m| m.view).collect(),
        }
    }

    fn member(&mut self, b: i32) -> &mut Member {
        &mut self.members[(b - 1) as usize]
    }

    fn view(&self, b: i32) -> BrokerView {
        self.members[(b - 1) as usize].view
    }

    fn is_live(&self, b: i32) -> bool {
        let v = self.view(b);
        v.incarnation > 0 && !v.fenced
    }

    fn can_lead(&self, b: i32) -> bool {
        let v = self.view(b);
        v.incarnation > 0 && !v.fenced && !v.recovering
    }

    fn holds_isr_seat(&self, b: i32) -> bool {
        self.placement.isr.contains(&b) || self.placement.leader == b
    }

    /// `pick_leader`: among `isr` in replica order, one that can lead, else a live one;
    /// never `excluded`. Unclean (the self-check): any live replica.
    fn pick_leader(&self, isr: &[i32], excluded: i32) -> i32 {
        let p = &self.placement;
        let eligible = |b: &&i32| **b != excluded && (self.unclean || isr.contains(b));
        p.replicas
            .iter()
            .filter(eligible)
            .find(|b| self.can_lead(**b))
            .or_else(|| {
                p.replicas
                    .iter()
                    .filter(eligible)
                    .find(|b| self.is_live(**b))
            })
            .copied()
            .unwrap_or(-1)
    }

    /// `Command::ChangePartition` as applied: a new leader bumps the leader epoch, every
    /// change the partition epoch.
    fn change(&mut self, leader: i32, mut isr: Vec<i32>) {
        if self.unclean && leader >= 0 && !isr.contains(&leader) {
            isr = vec![leader];
        }
        if leader != self.placement.leader {
            self.placement.leader_epoch += 1;
            if leader >= 0 {
                self.elections += 1;
            }
        }
        self.placement.leader = leader;
        self.placement.isr = isr;
        self.placement.partition_epoch += 1;
        self.version += 1;
    }

    /// A heartbeat (or registration, when the incarnation is new) from `b`. True when the
    /// metadata changed.
    pub fn heartbeat(&mut self, b: i32, incarnation: u32, now_ms: u64) -> bool {
        let seat = self.holds_isr_seat(b);
        let m = self.member(b);
        m.last_heard_ms = now_ms;
        if m.view.incarnation == incarnation {
            return false;
        }
        // RegisterBroker: a new incarnation of a broker that holds an ISR seat or a
        // leadership restarted from a log that may have lost records: it recovers first.
        let restarted = m.view.incarnation != 0;
        m.view = BrokerView {
            incarnation,
            fenced: false,
            recovering: m.view.recovering || (restarted && seat),
        };
        self.version += 1;
        true
    }

    /// The leader's ISR change (`Change::Isr`), checked as `ChangePartition` is.
    pub fn alter_isr(
        &mut self,
        partition_epoch: i32,
        leader: i32,
        isr: &[i32],
    ) -> Result<(), String> {
        let p = &self.placement;
        if p.partition_epoch != partition_epoch {
            return Err(format!(
                "stale partition epoch {partition_epoch} (now {})",
                p.partition_epoch
            ));
        }
        let mut sorted = isr.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if isr.is_empty()
            || sorted.len() != isr.len()
            || isr.iter().any(|b| !p.replicas.contains(b))
        {
            return Err(format!("invalid ISR {isr:?}"));
        }
        if isr.iter().any(|b| !p.isr.contains(b) && !self.is_live(*b)) {
            return Err(format!("{isr:?} adds a fenced broker"));
        }
        if leader >= 0 {
            if !self.is_live(leader) || !isr.contains(&leader) {
                return Err(format!("ineligible leader {leader}"));
            }
            if leader != p.leader && !p.isr.contains(&leader) {
                return Err(format!("unclean election of {leader}"));
            }
        }
        self.change(leader, isr.to_vec());
        Ok(())
    }

    /// The controller's periodic pass (`Controller::tick`): fences silent brokers, unfences
    /// those heard again, recovers restarted ones, elects and restores preferred leaders.
    /// Returns what it did, for the trace.
    pub fn tick(&mut self, now_ms: u64) -> Vec<String> {
        let mut done = Vec::new();
        let mut handled: Vec<i32> = Vec::new();
        let ids: Vec<i32> = self.placement.replicas.clone();
        for &b in &ids {
            let m = &self.members[(b - 1) as usize];
            let silent = now_ms.saturating_sub(m.last_heard_ms) > self.session_timeout_ms;
            if !m.view.fenced && silent {
                self.fence(b);
                handled.push(b);
                done.push(format!("fence {b}"));
            } else if m.view.fenced && !silent {
                self.member(b).view.fenced = false;
                self.version += 1;
                done.push(format!("unfence {b}"));
            }
        }
        for &b in &ids {
            if self.view(b).recovering && !handled.contains(&b) {
                self.recover(b);
                handled.push(b);
                done.push(format!("recovered {b}"));
            }
        }
        if !self.placement.replicas.iter().any(|r| handled.contains(r)) {
            if let Some(what) = self.partition_fix() {
                done.push(what);
            }
        }
        done
    }

    /// `fence_broker`: the broker leaves the ISR (unless it is the last member) and its
    /// leadership moves within the rest of the ISR.
    fn fence(&mut self, b: i32) {
        self.member(b).view.fenced = true;
        self.version += 1;
        let p = &self.placement;
        if !p.isr.contains(&b) && p.leader != b {
            return;
        }
        let mut isr: Vec<i32> = p.isr.iter().copied().filter(|x| *x != b).collect();
        if isr.is_empty() {
            isr = vec![b];
        }
        let leader = if p.leader == b || p.leader < 0 {
            self.pick_leader(&isr, b)
        } else {
            p.leader
        };
        self.change(leader, isr);
    }

    /// `recover_broker`: a restarted broker leaves the ISR it shares with others and its
    /// leadership moves to them; where it is the last member it keeps its claim, and a
    /// leadership it held is given up, to be taken again at a new leader epoch.
    fn recover(&mut self, b: i32) {
        let p = &self.placement;
        if p.isr.contains(&b) || p.leader == b {
            let isr: Vec<i32> = p.isr.iter().copied().filter(|x| *x != b).collect();
            if isr.is_empty() && p.leader == b {
                self.change(-1, vec![b]);
            } else if !isr.is_empty() {
                let leader = if p.leader == b || p.leader < 0 {
                    self.pick_leader(&isr, b)
                } else {
                    p.leader
                };
                self.change(leader, isr);
            }
        }
        self.member(b).view.recovering = false;
        self.version += 1;
    }

    /// `partition_fix`: a leader for a leaderless partition, or the preferred one back.
    fn partition_fix(&mut self) -> Option<String> {
        let p = &self.placement;
        if p.leader < 0 {
            let l = self.pick_leader(&p.isr.clone(), i32::MIN);
            if l < 0 {
                return None;
            }
            let isr = p.isr.clone();
            self.change(l, isr);
            return Some(format!("elect {l}"));
        }
        let preferred = p.replicas[0];
        if preferred != p.leader && p.isr.contains(&preferred) && self.can_lead(preferred) {
            let isr = p.isr.clone();
            self.change(preferred, isr);
            return Some(format!("preferred {preferred}"));
        }
        None
    }
}
