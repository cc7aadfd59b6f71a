//! KIP-848 consumer groups (`group.protocol=consumer`): the group state machine the
//! coordinator runs for ConsumerGroupHeartbeat; the assignors it calls are in
//! [`super::assignors`].
//!
//! Pure and deterministic: no I/O, no clock (time is passed in), no requests. The
//! coordinator shard owns one [`ConsumerGroup`] per group inside its `RefCell`'d group map,
//! persists the records [`Changes`] names, and answers.
//!
//! The protocol, as Kafka's coordinator runs it:
//! - the *group epoch* goes up whenever membership, a subscription or the partition count
//!   of a subscribed topic changes; the *target assignment* is recomputed by the assignor
//!   (uniform or range) at that epoch;
//! - each member converges to its target one heartbeat at a time: partitions it must give
//!   up are revoked first (it keeps its epoch until it reports them gone), then it moves to
//!   the target epoch and gets the partitions nobody else owns any more; partitions still
//!   owned by another member stay pending ("unreleased") until that member lets go;
//! - so no partition is ever owned by two members at once, and a member that does not need
//!   to change keeps consuming through someone else's rebalance.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rill_net::ErrorCode;
use uuid::Uuid;

use super::assignors;
use super::consumer_member::sorted_topics;
pub use super::consumer_member::{Member, MemberState};

pub use super::assignors::{Assignment, ASSIGNORS};
/// The member epoch of a member leaving for good.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for now (it will rejoin).
pub const STATIC_LEAVE_EPOCH: i32 = -2;
/// A topic as the assignors see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

/// What the coordinator passes in: the broker's topics and settings at this moment.
pub struct Context<'a> {
    pub now: Instant,
    /// Every topic by name (internal ones included; members name those explicitly).
    pub topics: &'a BTreeMap<String, TopicMeta>,
    pub session_timeout: Duration,
    pub heartbeat_interval_ms: i32,
    pub members_max: usize,
    pub default_assignor: &'a str,
}

/// A ConsumerGroupHeartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub topics: Option<Vec<String>>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// Partitions the member says it owns (None: unchanged since its last heartbeat).
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's assignment, when it changed or the member needs it in full.
    pub assignment: Option<Assignment>,
}

/// What changed and must be persisted before the answer goes out.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub group: bool,
    pub members: BTreeSet<String>,
    pub removed: BTreeSet<String>,
}

impl Changes {
    fn upsert(&mut self, id: &str) {
        self.removed.remove(id);
        self.members.insert(id.to_string());
    }

    fn remove(&mut self, id: &str) {
        self.members.remove(id);
        self.removed.insert(id.to_string());
    }
}

/// A KIP-848 consumer group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    /// The assignor that computed the target assignment.
    pub assignor: String,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    pub statics: HashMap<String, String>,
    /// (topic, partition) -> member that owns it (assigned or still revoking).
    owners: HashMap<(Uuid, i32), String>,
    /// The subscribed topics the target assignment was computed from.
    pub topics_seen: BTreeMap<String, TopicMeta>,
}

/// Kafka's names for the group's state (ListGroups, ConsumerGroupDescribe).
pub fn state_name(g: &ConsumerGroup) -> &'static str {
    if g.members.is_empty() {
        "Empty"
    } else if g.assignment_epoch < g.epoch {
        "Assigning"
    } else if g
        .members
        .values()
        .any(|m| m.epoch != g.assignment_epoch || m.state != MemberState::Stable)
    {
        "Reconciling"
    } else {
        "Stable"
    }
}

impl ConsumerGroup {
    /// Handles one heartbeat; on error nothing changed.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        ctx: &Context,
        changes: &mut Changes,
    ) -> Result<HeartbeatReply, (ErrorCode, String)> {
        if let Some(a) = &hb.assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return Err((
                    ErrorCode::UnsupportedAssignor,
                    format!("assignor {a:?} is not one of {ASSIGNORS:?}"),
                ));
            }
        }
        if let Some(r) = hb.regex.as_ref().filter(|r| !r.is_empty()) {
            Member::new("", ctx.now)
                .set_regex(Some(r.clone()))
                .map_err(|e| (ErrorCode::InvalidRequest, e))?;
        }
        match hb.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => return self.leave(hb, ctx, changes),
            0 => self.join(&hb, ctx, changes)?,
            epoch => self.check_epoch(&hb, epoch)?,
        }
        let id = hb.member_id.clone();
        let mut bump = false;
        {
            let m = self.members.get_mut(&id).expect("member joined or checked");
            m.last_heartbeat = ctx.now;
            if !hb.client_id.is_empty() {
                m.client_id = hb.client_id.clone();
                m.client_host = hb.client_host.clone();
            }
            if let Some(topics) = &hb.topics {
                let sorted = sorted_topics(topics);
                if sorted != m.topics {
                    m.topics = sorted;
                    bump = true;
                }
            }
            // An empty regex clears it (a member that moves to topic names sends "").
            let regex = hb.regex.clone().filter(|r| !r.is_empty());
            if hb.regex.is_some() && regex != m.regex {
                m.set_regex(regex)
                    .map_err(|e| (ErrorCode::InvalidRequest, e))?;
                bump = true;
            }
            if hb.assignor.is_some() && hb.assignor != m.assignor {
                m.assignor = hb.assignor.clone();
                bump = true;
            }
            if hb.rack_id.is_some() && hb.rack_id != m.rack_id {
                m.rack_id = hb.rack_id.clone();
                bump = true;
            }
            if hb.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = hb.rebalance_timeout_ms;
            }
        }
        if bump {
            changes.upsert(&id);
            self.bump_epoch(changes);
        }
        self.refresh_target(ctx, changes);
        let before = self.members[&id].assigned.clone();
        self.reconcile(&id, hb.owned.as_ref(), ctx.now, changes);
        let m = &self.members[&id];
        let full = hb.member_epoch == 0
            || (hb.rebalance_timeout_ms != -1
                && (hb.topics.is_some() || hb.regex.is_some())
                && hb.owned.is_some());
        Ok(HeartbeatReply {
            member_id: id.clone(),
            member_epoch: m.epoch,
            assignment: (full || m.assigned != before).then(|| m.assigned.clone()),
        })
    }

    fn join(
        &mut self,
        hb: &Heartbeat,
        ctx: &Context,
        changes: &mut Changes,
    ) -> Result<(), (ErrorCode, String)> {
        if hb.member_id.is_empty() {
            return Err((ErrorCode::InvalidRequest, "the member id is empty".into()));
        }
        if hb.rebalance_timeout_ms < 0 {
            return Err((
                ErrorCode::InvalidRequest,
                "RebalanceTimeoutMs must be set when joining".into(),
            ));
        }
        if hb.topics.is_none() && hb.regex.is_none() {
            return Err((
                ErrorCode::InvalidRequest,
                "SubscribedTopicNames or SubscribedTopicRegex must be set when joining".into(),
            ));
        }
        if let Some(inst) = &hb.instance_id {
            if let Some(old) = self.statics.get(inst).cloned() {
                if old == hb.member_id {
                    if let Some(m) = self.members.get_mut(&old) {
                        if m.epoch == STATIC_LEAVE_EPOCH {
                            // The same static member back before its session ran out.
                            m.epoch = m.previous_epoch.max(0);
                            m.last_heartbeat = ctx.now;
                            changes.upsert(&old);
                            return Ok(());
                        }
                    }
                } else {
                    let old_epoch = self.members.get(&old).map(|m| m.epoch);
                    if old_epoch != Some(STATIC_LEAVE_EPOCH) && old_epoch.is_some() {
                        return Err((
                            ErrorCode::UnreleasedInstanceId,
                            format!("instance {inst} is still owned by member {old}"),
                        ));
                    }
                    // A static member came back within its session: it takes over the old
                    // member's place, epoch and partitions, and nobody rebalances.
                    if let Some(mut m) = self.members.remove(&old) {
                        m.id = hb.member_id.clone();
                        m.epoch = m.previous_epoch.max(0);
                        m.last_heartbeat = ctx.now;
                        for owner in self.owners.values_mut() {
                            if *owner == old {
                                *owner = hb.member_id.clone();
                            }
                        }
                        self.members.insert(hb.member_id.clone(), m);
                        changes.remove(&old);
                        changes.upsert(&hb.member_id);
                        self.statics.insert(inst.clone(), hb.member_id.clone());
                        return Ok(());
                    }
                }
            }
        }
        if let Some(m) = self.members.get(&hb.member_id) {
            if m.epoch == 0 && m.assigned.is_empty() && m.pending_revocation.is_empty() {
                // A repeated join (its answer was lost): nothing to reset.
                return Ok(());
            }
            // The member lost its state (it was fenced): it starts over with nothing.
            self.release(&hb.member_id);
            let m = self.members.get_mut(&hb.member_id).expect("present");
            m.epoch = 0;
            m.previous_epoch = 0;
            m.state = MemberState::Stable;
            m.assigned.clear();
            m.pending_revocation.clear();
            m.revoking_since = None;
            changes.upsert(&hb.member_id);
            self.bump_epoch(changes);
            return Ok(());
        }
        if self.members.len() >= ctx.members_max {
            return Err((
                ErrorCode::GroupMaxSizeReached,
                format!("the group has {} members, the limit", ctx.members_max),
            ));
        }
        let mut m = Member::new(&hb.member_id, ctx.now);
        m.instance_id = hb.instance_id.clone();
        m.topics = sorted_topics(hb.topics.as_deref().unwrap_or_default());
        m.assignor = hb.assignor.clone();
        m.rack_id = hb.rack_id.clone();
        m.set_regex(hb.regex.clone().filter(|r| !r.is_empty()))
            .map_err(|e| (ErrorCode::InvalidRequest, e))?;
        if let Some(inst) = &hb.instance_id {
            self.statics.insert(inst.clone(), hb.member_id.clone());
        }
        self.members.insert(hb.member_id.clone(), m);
        changes.upsert(&hb.member_id);
        self.bump_epoch(changes);
        Ok(())
    }

    /// Kafka's epoch check: the member's epoch, or its previous one when the answer to the
    /// heartbeat that moved it on was lost (then it may only own what it is assigned).
    fn check_epoch(&self, hb: &Heartbeat, epoch: i32) -> Result<(), (ErrorCode, String)> {
        let Some(m) = self.members.get(&hb.member_id) else {
            return Err((
                ErrorCode::UnknownMemberId,
                format!("member {} is not in the group", hb.member_id),
            ));
        };
        if epoch == m.epoch {
            return Ok(());
        }
        let owned_ok = hb.owned.as_ref().is_some_and(|owned| {
            owned.iter().all(|(t, ps)| {
                ps.iter()
                    .all(|p| m.assigned.get(t).is_some_and(|a| a.contains(p)))
            })
        });
        if epoch == m.previous_epoch && owned_ok {
            return Ok(());
        }
        Err((
            ErrorCode::FencedMemberEpoch,
            format!("member epoch {epoch} is not the member's epoch {}", m.epoch),
        ))
    }

    fn leave(
        &mut self,
        hb: Heartbeat,
        ctx: &Context,
        changes: &mut Changes,
    ) -> Result<HeartbeatReply, (ErrorCode, String)> {
        let id = match (&hb.instance_id, hb.member_id.is_empty()) {
            (Some(inst), true) => self.statics.get(inst).cloned().unwrap_or_default(),
            _ => hb.member_id.clone(),
        };
        let Some(m) = self.members.get_mut(&id) else {
            return Err((
                ErrorCode::UnknownMemberId,
                format!("member {id} is not in the group"),
            ));
        };
        if hb.member_epoch == STATIC_LEAVE_EPOCH && m.instance_id.is_some() {
            // It keeps its partitions for a session timeout, waiting for its replacement.
            if m.epoch != STATIC_LEAVE_EPOCH {
                m.previous_epoch = m.epoch;
            }
            m.epoch = STATIC_LEAVE_EPOCH;
            m.last_heartbeat = ctx.now;
            changes.upsert(&id);
        } else {
            self.remove_member(&id, changes);
            self.refresh_target(ctx, changes);
        }
        Ok(HeartbeatReply {
            member_id: id,
            member_epoch: hb.member_epoch,
            assignment: None,
        })
    }

    /// Removes members whose session ran out, or who did not revoke in time. Returns them.
    pub fn expire(&mut self, ctx: &Context, changes: &mut Changes) -> Vec<String> {
        let dead = self.expired(ctx);
        for id in &dead {
            self.remove_member(id, changes);
        }
        if !dead.is_empty() {
            self.refresh_target(ctx, changes);
        }
        dead
    }

    /// Members whose session ran out, or who did not revoke in time.
    pub fn expired(&self, ctx: &Context) -> Vec<String> {
        self.members
            .values()
            .filter(|m| {
                ctx.now.saturating_duration_since(m.last_heartbeat) > ctx.session_timeout
                    || m.revoking_since.is_some_and(|since| {
                        ctx.now.saturating_duration_since(since)
                            > Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64)
                    })
            })
            .map(|m| m.id.clone())
            .collect()
    }

    fn remove_member(&mut self, id: &str, changes: &mut Changes) {
        self.release(id);
        if let Some(m) = self.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                if self.statics.get(inst).map(String::as_str) == Some(id) {
                    self.statics.remove(inst);
                }
            }
        }
        changes.remove(id);
        self.bump_epoch(changes);
    }

    fn release(&mut self, id: &str) {
        self.owners.retain(|_, owner| owner != id);
    }

    fn bump_epoch(&mut self, changes: &mut Changes) {
        self.epoch += 1;
        changes.group = true;
    }

    /// The subscribed topics that exist, as the assignor will see them.
    fn subscribed_topics(&self, ctx: &Context) -> BTreeMap<String, TopicMeta> {
        // By name first (cheap per member), then each distinct regex once over the topics:
        // a heartbeat must not cost members x topics.
        let mut out = BTreeMap::new();
        let mut regexes: BTreeMap<&str, &regex::Regex> = BTreeMap::new();
        for m in self.members.values() {
            for name in &m.topics {
                if let Some(t) = ctx.topics.get(name) {
                    out.insert(name.clone(), *t);
                }
            }
            if let (Some(r), Some(c)) = (&m.regex, m.compiled_regex()) {
                regexes.insert(r.as_str(), c);
            }
        }
        if !regexes.is_empty() {
            for (name, t) in ctx.topics {
                if !name.starts_with("__") && regexes.values().any(|r| r.is_match(name)) {
                    out.insert(name.clone(), *t);
                }
            }
        }
        out
    }

    /// Recomputes the target assignment if the group epoch moved on or a subscribed topic
    /// changed (created, deleted, more partitions).
    pub fn refresh_target(&mut self, ctx: &Context, changes: &mut Changes) {
        let topics = self.subscribed_topics(ctx);
        if topics != self.topics_seen {
            self.topics_seen = topics;
            if self.assignment_epoch == self.epoch {
                self.bump_epoch(changes);
            }
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        self.assignor = assignors::choose(
            self.members.values().filter_map(|m| m.assignor.as_deref()),
            ctx.default_assignor,
        );
        let subscriptions: BTreeMap<String, BTreeSet<Uuid>> = self
            .members
            .values()
            .map(|m| {
                let ids = self
                    .topics_seen
                    .iter()
                    .filter(|(n, _)| m.subscribes(n))
                    .map(|(_, t)| t.id)
                    .collect();
                (m.id.clone(), ids)
            })
            .collect();
        let partitions: BTreeMap<Uuid, i32> = self
            .topics_seen
            .values()
            .map(|t| (t.id, t.partitions))
            .collect();
        let previous: BTreeMap<String, Assignment> = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.target.clone()))
            .collect();
        let target = assignors::assign(&self.assignor, &subscriptions, &partitions, &previous);
        for (id, m) in self.members.iter_mut() {
            let t = target.get(id).cloned().unwrap_or_default();
            if t != m.target {
                m.target = t;
                changes.upsert(id);
            }
        }
        self.assignment_epoch = self.epoch;
        changes.group = true;
    }

    /// Moves member `id` one step towards its target (Kafka's CurrentAssignmentBuilder).
    fn reconcile(
        &mut self,
        id: &str,
        owned: Option<&Assignment>,
        now: Instant,
        changes: &mut Changes,
    ) {
        let target_epoch = self.assignment_epoch;
        let m = &self.members[id];
        let still_owns = |revoking: &Assignment| match owned {
            None => true,
            Some(owned) => revoking.iter().any(|(t, ps)| {
                owned
                    .get(t)
                    .is_some_and(|o| ps.iter().any(|p| o.contains(p)))
            }),
        };
        let next_epoch = match m.state {
            MemberState::Stable if m.epoch == target_epoch => return,
            MemberState::Stable | MemberState::UnreleasedPartitions => target_epoch,
            MemberState::UnrevokedPartitions => {
                if still_owns(&m.pending_revocation) {
                    return;
                }
                target_epoch
            }
        };
        // Partitions to keep, to give up and to take; a partition another member still owns
        // cannot be taken yet.
        let mut assigned = Assignment::new();
        let mut revoking = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = m.target.keys().chain(m.assigned.keys()).copied().collect();
        for t in topics {
            let target = m.target.get(&t).cloned().unwrap_or_default();
            let current = m.assigned.get(&t).cloned().unwrap_or_default();
            let mut keep: BTreeSet<i32> = current.intersection(&target).copied().collect();
            let give: BTreeSet<i32> = current.difference(&target).copied().collect();
            for p in target.difference(&current) {
                match self.owners.get(&(t, *p)) {
                    Some(owner) if owner != id => unreleased = true,
                    _ => {
                        keep.insert(*p);
                    }
                }
            }
            if !give.is_empty() {
                revoking.insert(t, give);
            }
            if !keep.is_empty() {
                assigned.insert(t, keep);
            }
        }
        let m = self.members.get_mut(id).expect("present");
        let before = (
            m.epoch,
            m.state,
            m.assigned.clone(),
            m.pending_revocation.clone(),
        );
        if !revoking.is_empty() && still_owns(&revoking) {
            // Give up first, at the current epoch; new partitions come after.
            for (t, ps) in assigned.iter_mut() {
                let current = m.assigned.get(t).cloned().unwrap_or_default();
                ps.retain(|p| current.contains(p));
            }
            assigned.retain(|_, ps| !ps.is_empty());
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = assigned;
            m.pending_revocation = revoking;
            if m.revoking_since.is_none() {
                m.revoking_since = Some(now);
            }
        } else {
            if m.epoch != next_epoch {
                m.previous_epoch = m.epoch;
            }
            m.epoch = next_epoch;
            m.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            m.assigned = assigned;
            m.pending_revocation.clear();
            m.revoking_since = None;
        }
        let after = (
            m.epoch,
            m.state,
            m.assigned.clone(),
            m.pending_revocation.clone(),
        );
        let owned_now: Vec<(Uuid, i32)> = m
            .assigned
            .iter()
            .chain(m.pending_revocation.iter())
            .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            .collect();
        if before != after {
            self.release(id);
            for key in owned_now {
                self.owners.insert(key, id.to_string());
            }
            changes.upsert(id);
        }
    }

    /// Puts a member back as it was stored (replay); ownership is rebuilt from it.
    pub fn restore_member(&mut self, mut m: Member, now: Instant) -> Result<(), String> {
        let regex = m.regex.take();
        m.set_regex(regex)?;
        // Its session starts again: the coordinator could not see it while it was down.
        m.last_heartbeat = now;
        if m.revoking_since.is_some() {
            m.revoking_since = Some(now);
        }
        self.remove_restored(&m.id.clone());
        for (t, ps) in m.assigned.iter().chain(m.pending_revocation.iter()) {
            for p in ps {
                self.owners.insert((*t, *p), m.id.clone());
            }
        }
        if let Some(inst) = &m.instance_id {
            self.statics.insert(inst.clone(), m.id.clone());
        }
        self.members.insert(m.id.clone(), m);
        Ok(())
    }

    /// Drops a member on replay (no epoch bump: the stored group record carries it).
    pub fn remove_restored(&mut self, id: &str) {
        self.release(id);
        if let Some(m) = self.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                if self.statics.get(inst).map(String::as_str) == Some(id) {
                    self.statics.remove(inst);
                }
            }
        }
    }

    /// Every partition with its owner, for checks.
    #[cfg(test)]
    pub fn owners(&self) -> &HashMap<(Uuid, i32), String> {
        &self.owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn topics(list: &[(&str, u128, i32)]) -> BTreeMap<String, TopicMeta> {
        list.iter()
            .map(|(n, id, p)| {
                (
                    n.to_string(),
                    TopicMeta {
                        id: topic(*id),
                        partitions: *p,
                    },
                )
            })
            .collect()
    }

    fn ctx<'a>(now: Instant, t: &'a BTreeMap<String, TopicMeta>) -> Context<'a> {
        Context {
            now,
            topics: t,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval_ms: 500,
            members_max: 1000,
            default_assignor: "uniform",
        }
    }

    fn join(id: &str, subscribed: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            topics: Some(subscribed.iter().map(|s| s.to_string()).collect()),
            owned: Some(Assignment::new()),
            ..Default::default()
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|s| s.len()).sum()
    }

    /// A client that does what librdkafka does: it owns what the last answer assigned and
    /// reports it on every heartbeat.
    struct Client {
        id: String,
        epoch: i32,
        owned: Assignment,
    }

    impl Client {
        fn beat(&mut self, g: &mut ConsumerGroup, c: &Context) {
            let hb = Heartbeat {
                member_id: self.id.clone(),
                member_epoch: self.epoch,
                rebalance_timeout_ms: -1,
                owned: Some(self.owned.clone()),
                ..Default::default()
            };
            let r = g
                .heartbeat(hb, c, &mut Changes::default())
                .unwrap_or_else(|e| panic!("{}: {e:?}", self.id));
            self.epoch = r.member_epoch;
            if let Some(a) = r.assignment {
                self.owned = a;
            }
        }
    }

    /// Checks that no partition is owned by two clients, against the group's own owners.
    fn assert_exclusive(clients: &[Client]) {
        let mut seen: HashMap<(Uuid, i32), &str> = HashMap::new();
        for c in clients {
            for (t, ps) in &c.owned {
                for p in ps {
                    if let Some(other) = seen.insert((*t, *p), &c.id) {
                        panic!("{t}/{p} owned by {other} and {}", c.id);
                    }
                }
            }
        }
    }

    #[test]
    fn members_hand_partitions_over_without_overlap() {
        let t = topics(&[("orders", 1, 6)]);
        let mut now = Instant::now();
        let mut g = ConsumerGroup::default();
        let mut clients: Vec<Client> = Vec::new();
        for name in ["a", "b", "c"] {
            let c = ctx(now, &t);
            let r = g
                .heartbeat(join(name, &["orders"]), &c, &mut Changes::default())
                .unwrap();
            clients.push(Client {
                id: name.into(),
                epoch: r.member_epoch,
                owned: r.assignment.unwrap_or_default(),
            });
            assert_exclusive(&clients);
            // Everyone heartbeats until the group is stable.
            for _ in 0..6 {
                now += Duration::from_millis(500);
                let c = ctx(now, &t);
                for cl in clients.iter_mut() {
                    cl.beat(&mut g, &c);
                }
                assert_exclusive(&clients);
            }
            assert_eq!(state_name(&g), "Stable", "{g:#?}");
            let counts: Vec<usize> = clients.iter().map(|c| count(&c.owned)).collect();
            assert_eq!(counts.iter().sum::<usize>(), 6, "{counts:?}");
            let lo = 6 / clients.len();
            assert!(counts.iter().all(|c| *c == lo), "{counts:?}");
            assert!(clients.iter().all(|c| c.epoch == g.epoch));
        }
        // One leaves: its partitions go to the others, still without overlap.
        let c = ctx(now, &t);
        let leave = Heartbeat {
            member_id: "b".into(),
            member_epoch: LEAVE_EPOCH,
            ..Default::default()
        };
        g.heartbeat(leave, &c, &mut Changes::default()).unwrap();
        clients.retain(|c| c.id != "b");
        for _ in 0..4 {
            now += Duration::from_millis(500);
            let c = ctx(now, &t);
            for cl in clients.iter_mut() {
                cl.beat(&mut g, &c);
            }
            assert_exclusive(&clients);
        }
        assert_eq!(clients.iter().map(|c| count(&c.owned)).sum::<usize>(), 6);
    }

    #[test]
    fn stale_and_unknown_epochs_are_fenced() {
        let t = topics(&[("orders", 1, 2)]);
        let now = Instant::now();
        let c = ctx(now, &t);
        let mut g = ConsumerGroup::default();
        let r = g
            .heartbeat(join("a", &["orders"]), &c, &mut Changes::default())
            .unwrap();
        assert_eq!(r.member_epoch, 1);
        let bad = Heartbeat {
            member_id: "a".into(),
            member_epoch: 7,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        let e = g.heartbeat(bad, &c, &mut Changes::default()).unwrap_err();
        assert_eq!(e.0, ErrorCode::FencedMemberEpoch);
        let unknown = Heartbeat {
            member_id: "zz".into(),
            member_epoch: 1,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        let e = g
            .heartbeat(unknown, &c, &mut Changes::default())
            .unwrap_err();
        assert_eq!(e.0, ErrorCode::UnknownMemberId);
        let mut bad_assignor = join("b", &["orders"]);
        bad_assignor.assignor = Some("roundrobin".into());
        let e = g
            .heartbeat(bad_assignor, &c, &mut Changes::default())
            .unwrap_err();
        assert_eq!(e.0, ErrorCode::UnsupportedAssignor);
    }

    #[test]
    fn a_static_member_comes_back_to_its_partitions_without_a_rebalance() {
        let t = topics(&[("orders", 1, 4)]);
        let mut now = Instant::now();
        let mut g = ConsumerGroup::default();
        let mut ids = Vec::new();
        for name in ["s1", "s2"] {
            let mut hb = join(name, &["orders"]);
            hb.instance_id = Some(format!("inst-{name}"));
            g.heartbeat(hb, &ctx(now, &t), &mut Changes::default())
                .unwrap();
            ids.push(name);
        }
        for _ in 0..4 {
            now += Duration::from_millis(500);
            for name in &ids {
                let epoch = g.members[*name].epoch;
                let owned = g.members[*name].assigned.clone();
                let hb = Heartbeat {
                    member_id: name.to_string(),
                    member_epoch: epoch,
                    rebalance_timeout_ms: -1,
                    owned: Some(owned),
                    ..Default::default()
                };
                g.heartbeat(hb, &ctx(now, &t), &mut Changes::default())
                    .unwrap();
            }
        }
        assert_eq!(state_name(&g), "Stable");
        let epoch = g.epoch;
        let had = g.members["s1"].assigned.clone();
        assert_eq!(count(&had), 2);
        let leave = Heartbeat {
            member_id: "s1".into(),
            member_epoch: STATIC_LEAVE_EPOCH,
            instance_id: Some("inst-s1".into()),
            ..Default::default()
        };
        g.heartbeat(leave, &ctx(now, &t), &mut Changes::default())
            .unwrap();
        let mut back = join("s1-again", &["orders"]);
        back.instance_id = Some("inst-s1".into());
        let r = g
            .heartbeat(back, &ctx(now, &t), &mut Changes::default())
            .unwrap();
        assert_eq!(r.assignment.as_ref(), Some(&had));
        assert_eq!(g.epoch, epoch, "the group rebalanced");
        assert!(!g.members.contains_key("s1"));
        // A second member with the same instance id is refused while the first is there.
        let mut clash = join("other", &["orders"]);
        clash.instance_id = Some("inst-s1".into());
        let e = g
            .heartbeat(clash, &ctx(now, &t), &mut Changes::default())
            .unwrap_err();
        assert_eq!(e.0, ErrorCode::UnreleasedInstanceId);
    }

    #[test]
    fn silent_members_expire_and_new_partitions_bump_the_epoch() {
        let mut t = topics(&[("orders", 1, 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        g.heartbeat(
            join("a", &["orders"]),
            &ctx(now, &t),
            &mut Changes::default(),
        )
        .unwrap();
        let epoch = g.epoch;
        t.get_mut("orders").unwrap().partitions = 4;
        let hb = Heartbeat {
            member_id: "a".into(),
            member_epoch: g.members["a"].epoch,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        let r = g
            .heartbeat(hb, &ctx(now, &t), &mut Changes::default())
            .unwrap();
        assert_eq!(g.epoch, epoch + 1);
        assert_eq!(count(&r.assignment.unwrap()), 4);
        let later = now + Duration::from_secs(46);
        let mut changes = Changes::default();
        assert_eq!(
            g.expire(&ctx(later, &t), &mut changes),
            vec!["a".to_string()]
        );
        assert!(changes.removed.contains("a"));
        assert!(g.owners().is_empty());
        assert_eq!(state_name(&g), "Empty");
    }

    #[test]
    fn regex_subscriptions_match_whole_names() {
        let t = topics(&[
            ("orders-eu", 1, 1),
            ("orders-us", 2, 1),
            ("xorders-eu", 3, 1),
        ]);
        let mut g = ConsumerGroup::default();
        let hb = Heartbeat {
            member_id: "r".into(),
            rebalance_timeout_ms: 1000,
            regex: Some("orders-.*".into()),
            ..Default::default()
        };
        let r = g
            .heartbeat(hb, &ctx(Instant::now(), &t), &mut Changes::default())
            .unwrap();
        let got: BTreeSet<Uuid> = r.assignment.unwrap().keys().copied().collect();
        assert_eq!(got, BTreeSet::from([topic(1), topic(2)]));
        let bad = Heartbeat {
            member_id: "q".into(),
            rebalance_timeout_ms: 1000,
            regex: Some("(".into()),
            ..Default::default()
        };
        let e = g
            .heartbeat(bad, &ctx(Instant::now(), &t), &mut Changes::default())
            .unwrap_err();
        assert_eq!(e.0, ErrorCode::InvalidRequest);
    }
}
