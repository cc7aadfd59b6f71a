//! One partition's replication state and decisions, without I/O: events in (a placement
//! from the metadata image, a follower's fetch, an append, the leader's high watermark seen
//! by a follower, the clock), answers out (the high watermark, whether it moved, the ISR the
//! leader should ask the controller for). Time is passed in, never read, so a simulator
//! drives this exactly as a shard does.
//!
//! As Kafka: the leader records each follower's fetch offset; the high watermark is the
//! lowest log end among the in-sync replicas (a member not heard from in this leadership
//! holds it where it is); a follower that has not caught up to the leader's log end for the
//! lag limit leaves the ISR, and one that reached the high watermark joins again. A single
//! broker is the same with itself as the only replica: its high watermark is its log end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::metadata::Placement;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follower {
    /// The offset it asked for last: it holds everything below.
    pub fetch_offset: i64,
    pub last_fetch: Instant,
    /// When it last held everything the leader had (Kafka's lastCaughtUpTime).
    pub last_caught_up: Instant,
    /// The leader's log end when it answered that follower's previous fetch.
    pub leader_end_at_last_fetch: i64,
}

/// A fetch with a replica id that is not a follower of this partition here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAFollower;

/// Replication state of one partition on this broker.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    me: i32,
    placement: Placement,
    /// When this broker started leading at `placement.leader_epoch`; None while following.
    leading_since: Option<Instant>,
    /// The log end when this leadership began: offsets the new leader cannot yet know to be
    /// on every in-sync replica start here (Kafka's leader epoch start offset).
    leader_epoch_start: i64,
    /// Followers of the current leadership (at most the partition's replicas).
    followers: BTreeMap<i32, Follower>,
    /// Offsets below this are on every in-sync replica. A follower keeps the leader's.
    high_watermark: i64,
    /// An ISR change is waiting for the controller.
    isr_change_pending: bool,
    /// Brokers this leader asked the controller to add to the ISR at the current partition
    /// epoch. Any such request may be taken before this broker hears of it, so the high
    /// watermark waits for them as for members (Kafka's maximal ISR, KIP-497): else it could
    /// pass the log end of a broker the controller already counts in the ISR, and may elect.
    /// A placement at a new partition epoch settles them.
    proposed: Vec<i32>,
}

impl ReplicaState {
    /// The state of a partition just opened, with the high watermark its last checkpoint
    /// had (0 when none).
    pub fn new(
        me: i32,
        placement: Placement,
        log_end: i64,
        checkpointed_high_watermark: i64,
        now: Instant,
    ) -> ReplicaState {
        let mut s = ReplicaState {
            me,
            placement: Placement::single(me),
            leading_since: None,
            leader_epoch_start: 0,
            followers: BTreeMap::new(),
            high_watermark: checkpointed_high_watermark.clamp(0, log_end),
            isr_change_pending: false,
            proposed: Vec::new(),
        };
        s.set_placement(placement, log_end, now);
        s
    }

    /// A new placement from the metadata: a new leadership starts with no followers, a
    /// lost one forgets them. Returns whether the high watermark moved.
    pub fn set_placement(&mut self, placement: Placement, log_end: i64, now: Instant) -> bool {
        let leads = placement.leader == self.me;
        if leads {
            let new_epoch = self.leading_since.is_none()
                || self.placement.leader_epoch != placement.leader_epoch;
            if new_epoch {
                self.leading_since = Some(now);
                self.leader_epoch_start = log_end;
                self.followers.clear();
                self.isr_change_pending = false;
            }
        } else if self.leading_since.is_some() {
            self.leading_since = None;
            self.followers.clear();
        }
        if placement.partition_epoch != self.placement.partition_epoch {
            // The controller took (or refused and superseded) the change we asked for.
            self.isr_change_pending = false;
            self.proposed.clear();
        }
        self.placement = placement;
        leads && self.advance(log_end)
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    pub fn is_leader(&self) -> bool {
        self.placement.leader == self.me
    }

    pub fn leader_epoch(&self) -> i32 {
        self.placement.leader_epoch
    }

    /// Offsets below this may be read by consumers.
    pub fn high_watermark(&self, log_end: i64) -> i64 {
        self.high_watermark.min(log_end)
    }

    /// A leader knows its high watermark once it reached the start of its epoch: until
    /// then it is a lower bound left from before (Kafka answers ListOffsets for the latest
    /// offset with OFFSET_NOT_AVAILABLE meanwhile).
    pub fn high_watermark_known(&self) -> bool {
        !self.is_leader() || self.high_watermark >= self.leader_epoch_start
    }

    /// Leader: moves the high watermark up to the lowest log end among the in-sync
    /// replicas. True when it moved.
    pub fn advance(&mut self, log_end: i64) -> bool {
        if !self.is_leader() {
            return false;
        }
        let mut low = log_end;
        let members = self.placement.isr.iter().chain(&self.proposed);
        for b in members.filter(|b| **b != self.me) {
            match self.followers.get(b) {
                Some(f) => low = low.min(f.fetch_offset),
                None => return false,
            }
        }
        if low > self.high_watermark {
            self.high_watermark = low;
            return true;
        }
        false
    }

    /// Leader: `follower` fetched at `offset` when the log ended at `log_end`. True when the
    /// high watermark moved.
    pub fn follower_fetched(
        &mut self,
        follower: i32,
        offset: i64,
        log_end: i64,
        now: Instant,
    ) -> Result<bool, NotAFollower> {
        if !self.placement.replicas.contains(&follower) || follower == self.me {
            return Err(NotAFollower);
        }
        if !self.is_leader() {
            return Ok(false);
        }
        let since = self.leading_since.unwrap_or(now);
        let prev = self.followers.get(&follower).copied();
        let caught_up = if offset >= log_end {
            now
        } else if let Some(f) = prev.filter(|f| offset >= f.leader_end_at_last_fetch) {
            f.last_fetch
        } else {
            prev.map_or(since, |f| f.last_caught_up)
        };
        self.followers.insert(
            follower,
            Follower {
                fetch_offset: offset,
                last_fetch: now,
                last_caught_up: caught_up,
                leader_end_at_last_fetch: log_end,
            },
        );
        Ok(self.advance(log_end))
    }

    /// Follower: the leader said its high watermark is `leader_hw`.
    pub fn leader_high_watermark(&mut self, leader_hw: i64, log_end: i64) {
        if !self.is_leader() {
            self.high_watermark = leader_hw.min(log_end);
        }
    }

    /// Follower: the log was cut back to `log_end`.
    pub fn truncated(&mut self, log_end: i64) {
        self.high_watermark = self.high_watermark.min(log_end);
    }

    /// Leader: the ISR to ask the controller for, when it differs from the current one and
    /// no change is waiting already (the change is then marked waiting until
    /// [`ReplicaState::isr_change_done`] or a new placement). While brokers proposed at this
    /// partition epoch are unsettled (an answer lost, or a taken change not seen yet) it asks
    /// even for the ISR it has: taken, or refused as stale, either way a new placement follows.
    pub fn isr_change(
        &mut self,
        now: Instant,
        lag_max: Duration,
        alive: impl Fn(i32) -> bool,
        log_end: i64,
    ) -> Option<Vec<i32>> {
        if !self.is_leader() || self.isr_change_pending {
            return None;
        }
        self.advance(log_end);
        let isr = self.desired_isr(now, lag_max, alive, log_end);
        if same_members(&isr, &self.placement.isr) && self.proposed.is_empty() {
            return None;
        }
        for b in &isr {
            if !self.placement.isr.contains(b) && !self.proposed.contains(b) {
                self.proposed.push(*b);
            }
        }
        self.isr_change_pending = true;
        Some(isr)
    }

    /// The controller answered the ISR change (taken or not); the leader may ask again.
    pub fn isr_change_done(&mut self) {
        self.isr_change_pending = false;
    }

    /// The ISR the leader wants now: itself, the members that caught up within `lag_max`,
    /// and live replicas whose log reached the high watermark and the start of this
    /// leadership (KAFKA-7128: a replica that has not seen the new leader's epoch may still
    /// hold another leader's suffix).
    fn desired_isr(
        &self,
        now: Instant,
        lag_max: Duration,
        alive: impl Fn(i32) -> bool,
        log_end: i64,
    ) -> Vec<i32> {
        let since = self.leading_since.unwrap_or(now);
        let hw = self.high_watermark(log_end);
        self.placement
            .replicas
            .iter()
            .copied()
            .filter(|b| {
                if *b == self.me {
                    return true;
                }
                let f = self.followers.get(b);
                if self.placement.isr.contains(b) {
                    let caught_up = f.map_or(since, |f| f.last_caught_up);
                    now.saturating_duration_since(caught_up) <= lag_max
                } else {
                    alive(*b)
                        && f.is_some_and(|f| {
                            f.fetch_offset >= hw
                                && f.fetch_offset >= self.leader_epoch_start
                                && now.saturating_duration_since(f.last_fetch) <= lag_max
                        })
                }
            })
            .collect()
    }
}

fn same_members(a: &[i32], b: &[i32]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(leader: i32, epoch: i32, replicas: &[i32], isr: &[i32]) -> Placement {
        Placement {
            leader,
            leader_epoch: epoch,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            partition_epoch: epoch,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    #[test]
    fn a_single_broker_high_watermark_is_its_log_end() {
        let now = Instant::now();
        let mut s = ReplicaState::new(1, Placement::single(1), 10, 0, now);
        assert_eq!(s.high_watermark(10), 10);
        assert!(s.advance(15));
        assert_eq!(s.high_watermark(15), 15);
        assert_eq!(
            s.isr_change(now, Duration::from_secs(1), |_| true, 15),
            None
        );
    }

    #[test]
    fn the_high_watermark_waits_for_every_in_sync_follower() {
        let now = Instant::now();
        let mut s = ReplicaState::new(1, placement(1, 3, &[1, 2, 3], &[1, 2, 3]), 10, 0, now);
        assert_eq!(s.high_watermark(10), 0, "followers not heard from hold it");
        assert!(!s.follower_fetched(2, 10, 10, now).unwrap());
        assert!(s.follower_fetched(3, 7, 10, now).unwrap());
        assert_eq!(s.high_watermark(10), 7);
        assert_eq!(s.follower_fetched(4, 7, 10, now), Err(NotAFollower));
        assert_eq!(s.follower_fetched(1, 7, 10, now), Err(NotAFollower));
        // A new leader epoch forgets the followers; the high watermark never goes back.
        s.set_placement(placement(1, 4, &[1, 2, 3], &[1, 2, 3]), 12, now);
        assert_eq!(s.high_watermark(12), 7);
    }

    #[test]
    fn a_lagging_follower_leaves_the_isr_and_a_caught_up_one_joins() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut s = ReplicaState::new(1, placement(1, 1, &[1, 2, 3], &[1, 2]), 100, 100, t0);
        s.follower_fetched(2, 100, 100, t0).unwrap();
        // 3 is not in the ISR; it catches up to the high watermark and joins.
        s.follower_fetched(3, 100, 100, t0).unwrap();
        let isr = s.isr_change(t0, lag, |_| true, 100).unwrap();
        assert_eq!(isr, vec![1, 2, 3]);
        assert_eq!(
            s.isr_change(t0, lag, |_| true, 100),
            None,
            "one change at a time"
        );
        s.set_placement(
            Placement {
                partition_epoch: 2,
                ..placement(1, 1, &[1, 2, 3], &[1, 2, 3])
            },
            100,
            t0,
        );
        // 2 stops fetching: after the lag limit it leaves.
        let later = t0 + lag + Duration::from_secs(1);
        s.follower_fetched(3, 150, 150, later).unwrap();
        assert_eq!(s.isr_change(later, lag, |_| true, 150).unwrap(), vec![1, 3]);
    }

    #[test]
    fn the_high_watermark_waits_for_a_broker_the_leader_asked_to_add() {
        // Found by the partition simulator: the controller took 3 into the ISR while the
        // leader, not yet told, moved the high watermark past 3's log end on the old ISR.
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut s = ReplicaState::new(1, placement(1, 1, &[1, 2, 3], &[1, 2]), 100, 100, t0);
        s.follower_fetched(2, 100, 100, t0).unwrap();
        s.follower_fetched(3, 100, 100, t0).unwrap();
        assert_eq!(s.isr_change(t0, lag, |_| true, 100), Some(vec![1, 2, 3]));
        s.follower_fetched(2, 150, 150, t0).unwrap();
        assert_eq!(s.high_watermark(150), 100, "3 may be in the ISR already");
        // The answer is lost: the leader asks again, even for the ISR it has, until a
        // placement at a new partition epoch says what the ISR is.
        s.isr_change_done();
        assert_eq!(s.isr_change(t0, lag, |_| true, 150), Some(vec![1, 2, 3]));
        s.isr_change_done();
        s.follower_fetched(3, 120, 150, t0).unwrap();
        let lagging = t0 + lag + Duration::from_secs(1);
        s.follower_fetched(2, 150, 150, lagging).unwrap();
        assert_eq!(
            s.isr_change(lagging, lag, |_| true, 150),
            Some(vec![1, 2]),
            "asked again although 3 no longer qualifies"
        );
        assert_eq!(s.high_watermark(150), 120);
        s.set_placement(
            Placement {
                partition_epoch: 2,
                ..placement(1, 1, &[1, 2, 3], &[1, 2])
            },
            150,
            lagging,
        );
        assert_eq!(s.high_watermark(150), 150, "settled without 3");
    }

    #[test]
    fn a_new_leader_knows_its_high_watermark_once_its_epoch_start_is_replicated() {
        let now = Instant::now();
        let lag = Duration::from_secs(10);
        // Led by 2 before; checkpointed high watermark 40, log end 50.
        let mut s = ReplicaState::new(1, placement(2, 4, &[1, 2, 3], &[1, 2, 3]), 50, 40, now);
        assert_eq!(s.high_watermark(50), 40);
        assert!(
            s.high_watermark_known(),
            "a follower does not answer for it"
        );
        s.set_placement(placement(1, 5, &[1, 2, 3], &[1, 2]), 50, now);
        assert!(!s.high_watermark_known(), "40 is below the epoch start, 50");
        s.follower_fetched(2, 50, 50, now).unwrap();
        assert!(s.high_watermark_known());
        assert_eq!(s.high_watermark(50), 50);
        // 3 reached the high watermark of an older leadership only: it stays out.
        s.follower_fetched(3, 45, 50, now).unwrap();
        assert_eq!(s.isr_change(now, lag, |_| true, 50), None);
        s.follower_fetched(3, 50, 50, now).unwrap();
        assert_eq!(s.isr_change(now, lag, |_| true, 50), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_follower_takes_the_leaders_high_watermark_up_to_its_log_end() {
        let now = Instant::now();
        let mut s = ReplicaState::new(2, placement(1, 1, &[1, 2], &[1, 2]), 5, 0, now);
        assert!(!s.is_leader());
        s.leader_high_watermark(9, 5);
        assert_eq!(s.high_watermark(5), 5);
        s.leader_high_watermark(4, 5);
        assert_eq!(s.high_watermark(5), 4);
        // A follower's fetch of a partition it does not lead changes nothing.
        assert_eq!(s.follower_fetched(1, 3, 5, now), Ok(false));
        assert_eq!(s.follower_fetched(7, 3, 5, now), Err(NotAFollower));
    }
}
