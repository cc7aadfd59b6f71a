//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a state
//! machine, beside the KIP-848 one in [`super::consumer`]. One [`ClassicGroup`] per group;
//! each event (a request, a timer that fired, the session check) gets the clock in its
//! [`Context`] and leaves what must happen next as [`Output`]s: answers to requests parked
//! earlier, records to append, timers to arm. No I/O and no awaits: the coordinator
//! ([`super::coordinator`]) keeps the parked requests' reply channels under their
//! [`Ticket`]s, appends the records in the order given and arms the timers.
//!
//! The rules, as Kafka's classic coordinator runs them:
//! - a join, a leave or an expired session moves the group to PreparingRebalance; the join
//!   phase ends as soon as every member has rejoined, or when the longest rebalance timeout
//!   runs out, and the members that did not rejoin by then are removed. A group that was
//!   Empty waits `initial_rebalance_delay` for more members instead (so consumers started
//!   together share one generation), never a whole session timeout;
//! - the end of the join phase starts a generation: the leader gets every member's metadata,
//!   the others wait in SyncGroup for the leader's assignment, which is durable before
//!   anyone gets it (Stable); a leader that never syncs starts the rebalance over;
//! - requests of another generation or of an unknown member are fenced; a static member
//!   (group.instance.id) that restarts takes over its old slot and, if its metadata did not
//!   change, its assignment, without a rebalance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use rill_net::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use tracing::{info, warn};

use super::records::{StoredMember, StoredRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupState {
    #[default]
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// The broker settings the rules depend on.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The session timeouts a member may ask for.
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    /// How long the first join phase of an Empty group waits for more members.
    pub initial_rebalance_delay: Duration,
    pub members_max: usize,
}

/// What an event runs with: the clock and the settings.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: Instant,
    pub settings: Settings,
}

/// A JoinGroup or SyncGroup parked until the rebalance gets to it; the coordinator keeps its
/// reply channel under this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// What the coordinator must do after an event, in the order given.
#[derive(Debug)]
pub enum Output {
    /// Answer the JoinGroup parked under the ticket.
    Join(Ticket, JoinGroupResponse),
    /// Answer the SyncGroup parked under the ticket.
    Sync(Ticket, SyncGroupResponse),
    /// Drop a parked request unanswered: it answers as when the coordinator goes away
    /// (JoinGroup UNKNOWN_MEMBER_ID, SyncGroup REBALANCE_IN_PROGRESS) and the client rejoins.
    Abandon(Ticket),
    /// Append this record; nothing waits for it.
    Persist(StoredRecord),
    /// Call [`ClassicGroup::join_deadline`] with `rebalance` after `after`.
    JoinDeadline { rebalance: u64, after: Duration },
    /// Call [`ClassicGroup::sync_deadline`] with `rebalance` after `after`.
    SyncDeadline { rebalance: u64, after: Duration },
}

/// A JoinGroup, decoded and checked against what needs no group.
#[derive(Debug, Clone)]
pub struct Join {
    /// As sent: empty for a member that has no id yet.
    pub member_id: String,
    /// The id a member without one gets (the coordinator mints it).
    pub new_member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// KIP-394 (v4+): a member without an id gets one first and joins again with it.
    pub id_first: bool,
}

impl Join {
    /// Decodes JoinGroup `r`; the error is for a request no group could accept, to answer at
    /// once.
    pub fn decode(
        r: &JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
        settings: &Settings,
    ) -> Result<Join, ErrorCode> {
        if r.group_id.0.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        // A negative timeout wraps to a huge one, out of bounds like it.
        let session = r.session_timeout_ms as u64;
        if session < settings.min_session_timeout_ms || session > settings.max_session_timeout_ms {
            return Err(ErrorCode::InvalidSessionTimeout);
        }
        let protocols: Vec<(String, Bytes)> = r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        if protocols.is_empty() || r.protocol_type.is_empty() {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        Ok(Join {
            member_id: r.member_id.to_string(),
            new_member_id: String::new(),
            instance_id: r.group_instance_id.as_ref().map(|i| i.to_string()),
            protocol_type: r.protocol_type.to_string(),
            protocols,
            session_timeout_ms: session,
            rebalance_timeout_ms: if version >= 1 {
                r.rebalance_timeout_ms
            } else {
                r.session_timeout_ms
            },
            client_id,
            client_host,
            id_first: version >= 4,
        })
    }
}

/// What SyncGroup does next.
#[derive(Debug)]
pub enum Synced {
    /// The answer, now.
    Now(SyncGroupResponse),
    /// Parked under its ticket until the leader's assignment is durable.
    Parked,
    /// The leader's assignment (its request parked too): append `record`, then call
    /// [`ClassicGroup::assignment_persisted`] with `generation` and how that went.
    Persist {
        generation: i32,
        record: StoredRecord,
    },
}

pub fn join_error(code: ErrorCode, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code.code())
        .with_generation_id(-1)
        .with_member_id(s(member_id))
}

pub fn sync_error(code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code.code())
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    /// Its JoinGroup, parked until the join phase ends.
    join: Option<Ticket>,
    /// Its SyncGroup, parked until the leader's assignment is durable.
    sync: Option<Ticket>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn stored(&self, protocol: &str) -> StoredMember {
        StoredMember {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: self.session_timeout.as_millis() as i32,
            rebalance_timeout_ms: self.rebalance_timeout.as_millis() as i32,
            metadata: self.metadata_for(protocol).to_vec(),
            assignment: self.assignment.to_vec(),
        }
    }
}

/// One classic group.
#[derive(Debug, Default)]
pub struct ClassicGroup {
    state: GroupState,
    protocol_type: String,
    protocol: String,
    generation: i32,
    leader: String,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, waiting for their second join, with
    /// when they expire (the session timeout of the first join, as Kafka's pending members):
    /// a client that never comes back does not hold a seat for ever.
    pending: HashMap<String, Instant>,
    /// Static members: group.instance.id -> member id.
    statics: HashMap<String, String>,
    /// Bumped at every rebalance, so a stale timer does nothing.
    rebalance_id: u64,
    rebalance_started: Option<Instant>,
}

impl ClassicGroup {
    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn protocol_type(&self) -> &str {
        &self.protocol_type
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// JoinGroup. `None`: parked under `ticket` until the join phase ends.
    pub fn join(
        &mut self,
        group: &str,
        j: Join,
        ticket: Ticket,
        ctx: &Context,
        out: &mut Vec<Output>,
    ) -> Option<JoinGroupResponse> {
        let busy = self.state != GroupState::Empty || !self.members.is_empty();
        let compatible = self.protocol_type == j.protocol_type
            && j.protocols.iter().any(|(n, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(o, _)| o == n))
            });
        if busy && !compatible {
            return Some(join_error(
                ErrorCode::InconsistentGroupProtocol,
                &j.member_id,
            ));
        }
        if self.members.len() >= ctx.settings.members_max
            && !self.members.contains_key(&j.member_id)
        {
            return Some(join_error(ErrorCode::GroupMaxSizeReached, &j.member_id));
        }
        let known_static = j
            .instance_id
            .as_ref()
            .and_then(|i| self.statics.get(i).cloned());
        let id = if j.member_id.is_empty() {
            let new_id = j.new_member_id.clone();
            match (&j.instance_id, known_static) {
                (Some(inst), Some(old)) => {
                    if let Some(answer) =
                        self.take_over(inst, &old, &new_id, &j.protocols, ctx, out)
                    {
                        return Some(answer);
                    }
                    new_id
                }
                (None, _) if j.id_first => {
                    self.pending.retain(|_, expires| *expires > ctx.now);
                    if self.pending.len() >= ctx.settings.members_max {
                        return Some(join_error(ErrorCode::GroupMaxSizeReached, &j.member_id));
                    }
                    let session = Duration::from_millis(j.session_timeout_ms);
                    self.pending.insert(new_id.clone(), ctx.now + session);
                    return Some(join_error(ErrorCode::MemberIdRequired, &new_id));
                }
                _ => new_id,
            }
        } else {
            let pending = self
                .pending
                .get(&j.member_id)
                .is_some_and(|expires| *expires > ctx.now);
            if !self.members.contains_key(&j.member_id) && !pending {
                return Some(join_error(ErrorCode::UnknownMemberId, &j.member_id));
            }
            if let (Some(_), Some(owner)) = (&j.instance_id, &known_static) {
                if *owner != j.member_id {
                    return Some(join_error(ErrorCode::FencedInstanceId, &j.member_id));
                }
            }
            j.member_id.clone()
        };
        self.pending.remove(&id);
        let existing = self.members.get(&id).map(|m| m.protocols == j.protocols);
        if let (Some(true), GroupState::Stable | GroupState::CompletingRebalance) =
            (existing, self.state)
        {
            if self.leader != id || self.state == GroupState::CompletingRebalance {
                // A follower rejoining with the same metadata: nothing to rebalance.
                let m = self.members.get_mut(&id).expect("member present");
                m.last_heartbeat = ctx.now;
                return Some(self.joined(&id));
            }
        }
        let session_timeout = Duration::from_millis(j.session_timeout_ms);
        let rebalance_timeout = Duration::from_millis(j.rebalance_timeout_ms.max(0) as u64);
        let member = self.members.entry(id.clone()).or_insert_with(|| Member {
            id: id.clone(),
            instance_id: j.instance_id.clone(),
            client_id: j.client_id.clone(),
            client_host: j.client_host.clone(),
            session_timeout,
            rebalance_timeout,
            protocols: j.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat: ctx.now,
            join: None,
            sync: None,
        });
        member.protocols = j.protocols;
        member.session_timeout = session_timeout;
        member.rebalance_timeout = rebalance_timeout;
        member.last_heartbeat = ctx.now;
        if let Some(old) = member.join.replace(ticket) {
            out.push(Output::Join(
                old,
                join_error(ErrorCode::UnknownMemberId, &id),
            ));
        }
        if let Some(inst) = &j.instance_id {
            self.statics.insert(inst.clone(), id.clone());
        }
        if self.protocol_type.is_empty() || self.members.len() == 1 {
            self.protocol_type = j.protocol_type;
        }
        self.prepare_rebalance(group, false, ctx, out);
        self.try_complete_join(group, ctx, out);
        None
    }

    /// A static member restarted (a join without member id, with the instance id of member
    /// `old`): it takes over the old slot under `new_id`, and the old incarnation's parked
    /// requests are fenced. With the same metadata in a Stable group it is answered at once
    /// with the current generation and, at SyncGroup, gets its old assignment.
    fn take_over(
        &mut self,
        inst: &str,
        old: &str,
        new_id: &str,
        protocols: &[(String, Bytes)],
        ctx: &Context,
        out: &mut Vec<Output>,
    ) -> Option<JoinGroupResponse> {
        let mut m = self.members.remove(old)?;
        if let Some(t) = m.join.take() {
            out.push(Output::Join(
                t,
                join_error(ErrorCode::FencedInstanceId, old),
            ));
        }
        if let Some(t) = m.sync.take() {
            out.push(Output::Sync(t, sync_error(ErrorCode::FencedInstanceId)));
        }
        m.id = new_id.to_string();
        m.last_heartbeat = ctx.now;
        let same = m.protocols == protocols;
        m.protocols = protocols.to_vec();
        if self.leader == old {
            self.leader = new_id.to_string();
        }
        self.members.insert(new_id.to_string(), m);
        self.statics.insert(inst.to_string(), new_id.to_string());
        (self.state == GroupState::Stable && same).then(|| self.joined(new_id))
    }

    /// The JoinGroup answer of the current generation, without the member list.
    fn joined(&self, member_id: &str) -> JoinGroupResponse {
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(Some(s(&self.protocol_type)))
            .with_protocol_name(Some(s(&self.protocol)))
            .with_leader(s(&self.leader))
            .with_member_id(s(member_id))
    }

    /// The timer armed by [`Output::JoinDeadline`] fired: the join phase ends with whoever
    /// rejoined.
    pub fn join_deadline(
        &mut self,
        group: &str,
        rebalance: u64,
        ctx: &Context,
        out: &mut Vec<Output>,
    ) {
        self.complete_join(group, rebalance, true, ctx, out);
    }

    /// The timer armed by [`Output::SyncDeadline`] fired: if the leader has still sent no
    /// assignment, the rebalance starts over.
    pub fn sync_deadline(
        &mut self,
        group: &str,
        rebalance: u64,
        ctx: &Context,
        out: &mut Vec<Output>,
    ) {
        if self.state == GroupState::CompletingRebalance && self.rebalance_id == rebalance {
            warn!(group = %group, "the leader sent no assignment in time; rebalancing again");
            self.prepare_rebalance(group, true, ctx, out);
        }
    }

    /// The last member left (or expired): the group is Empty at its new generation, written
    /// down so a restart does not bring the departed members back.
    fn emptied(&mut self, group: &str, out: &mut Vec<Output>) {
        self.state = GroupState::Empty;
        self.leader.clear();
        info!(group, generation = self.generation, "group is empty");
        out.push(Output::Persist(self.stored(group)));
    }

    /// Moves the group to PreparingRebalance (if it is not there) and arms the timer that
    /// ends the join phase with whoever rejoined.
    fn prepare_rebalance(
        &mut self,
        group: &str,
        force: bool,
        ctx: &Context,
        out: &mut Vec<Output>,
    ) {
        if self.members.is_empty() {
            // The last member left or expired: nothing to rebalance.
            if self.state != GroupState::Empty {
                self.generation += 1;
                self.rebalance_id += 1;
                self.emptied(group, out);
            }
            return;
        }
        if self.state == GroupState::PreparingRebalance && !force {
            return;
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        self.rebalance_id += 1;
        self.rebalance_started = Some(ctx.now);
        // Members that wait on SyncGroup of the old generation must rejoin.
        for m in self.members.values_mut() {
            if let Some(t) = m.sync.take() {
                out.push(Output::Sync(t, sync_error(ErrorCode::RebalanceInProgress)));
            }
        }
        let after = if was_empty {
            ctx.settings.initial_rebalance_delay
        } else {
            self.rebalance_timeout()
        };
        out.push(Output::JoinDeadline {
            rebalance: self.rebalance_id,
            after,
        });
    }

    /// The longest rebalance timeout of the members.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Ends the join phase when every member has rejoined (and an empty group's initial
    /// delay has passed).
    fn try_complete_join(&mut self, group: &str, ctx: &Context, out: &mut Vec<Output>) {
        // A new group waits out the initial delay so members starting together join one
        // generation; later rebalances end as soon as every member is back.
        let delay_over = self.generation > 0
            || self.rebalance_started.is_some_and(|started| {
                ctx.now.saturating_duration_since(started) >= ctx.settings.initial_rebalance_delay
            });
        let all = !self.members.is_empty() && self.members.values().all(|m| m.join.is_some());
        if self.state == GroupState::PreparingRebalance && all && delay_over {
            self.complete_join(group, self.rebalance_id, false, ctx, out);
        }
    }

    fn complete_join(
        &mut self,
        group: &str,
        rebalance: u64,
        timer: bool,
        ctx: &Context,
        out: &mut Vec<Output>,
    ) {
        if self.state != GroupState::PreparingRebalance || self.rebalance_id != rebalance {
            return;
        }
        if !timer && self.members.values().any(|m| m.join.is_none()) {
            return;
        }
        // Members that did not rejoin in time leave the group.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id, out);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.emptied(group, out);
            return;
        }
        self.protocol = self.vote();
        if !self.members.contains_key(&self.leader) {
            self.leader = self.members.keys().next().cloned().unwrap_or_default();
        }
        self.state = GroupState::CompletingRebalance;
        self.rebalance_started = Some(ctx.now);
        let all: Vec<JoinGroupResponseMember> = self
            .members
            .values()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(s(&m.id))
                    .with_group_instance_id(m.instance_id.as_deref().map(s))
                    .with_metadata(m.metadata_for(&self.protocol))
            })
            .collect();
        info!(group, generation = self.generation, members = self.members.len(),
            protocol = %self.protocol, removed = gone.len(), "rebalance: join phase complete");
        let mut parked = Vec::new();
        for m in self.members.values_mut() {
            m.last_heartbeat = ctx.now;
            m.assignment = Bytes::new();
            if let Some(t) = m.join.take() {
                parked.push((t, m.id.clone()));
            }
        }
        for (t, id) in parked {
            let members = if id == self.leader {
                all.clone()
            } else {
                Vec::new()
            };
            out.push(Output::Join(t, self.joined(&id).with_members(members)));
        }
        // If the leader never sends SyncGroup, start over after the rebalance timeout.
        out.push(Output::SyncDeadline {
            rebalance: self.rebalance_id,
            after: self.rebalance_timeout(),
        });
    }

    /// The protocol: each member votes for its most preferred protocol every member
    /// supports.
    fn vote(&self) -> String {
        let candidates: Vec<String> = self
            .members
            .values()
            .next()
            .map(|m| {
                m.protocols
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<String>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(o, _)| o == n))
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        votes
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default()
    }

    /// Removes member `id`; a request it still has parked is dropped.
    fn remove(&mut self, id: &str, out: &mut Vec<Output>) {
        if let Some(m) = self.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                self.statics.remove(inst);
            }
            out.extend(m.join.into_iter().chain(m.sync).map(Output::Abandon));
        }
    }

    /// Checks member id, generation and static fencing.
    pub fn check_member(
        &self,
        member_id: &str,
        generation: i32,
        instance: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if let Some(inst) = instance {
            if let Some(owner) = self.statics.get(inst) {
                if owner != member_id {
                    return Err(ErrorCode::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    /// SyncGroup.
    pub fn sync(
        &mut self,
        group: &str,
        r: &SyncGroupRequest,
        ticket: Ticket,
        ctx: &Context,
        out: &mut Vec<Output>,
    ) -> Synced {
        let member_id: &str = &r.member_id;
        if let Err(code) =
            self.check_member(member_id, r.generation_id, r.group_instance_id.as_deref())
        {
            return Synced::Now(sync_error(code));
        }
        match self.state {
            GroupState::Empty => return Synced::Now(sync_error(ErrorCode::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                return Synced::Now(sync_error(ErrorCode::RebalanceInProgress))
            }
            GroupState::Stable => {
                return Synced::Now(self.synced(&self.members[member_id].assignment))
            }
            GroupState::CompletingRebalance => {}
        }
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some(old) = m.sync.replace(ticket) {
                out.push(Output::Abandon(old));
            }
            m.last_heartbeat = ctx.now;
        }
        if member_id != self.leader {
            return Synced::Parked;
        }
        for a in &r.assignments {
            if let Some(m) = self.members.get_mut(a.member_id.as_str()) {
                m.assignment = a.assignment.clone();
            }
        }
        Synced::Persist {
            generation: self.generation,
            record: self.stored(group),
        }
    }

    fn synced(&self, assignment: &Bytes) -> SyncGroupResponse {
        SyncGroupResponse::default()
            .with_protocol_type(Some(s(&self.protocol_type)))
            .with_protocol_name(Some(s(&self.protocol)))
            .with_assignment(assignment.clone())
    }

    /// The leader's assignment of `generation` was appended (or could not be): the members
    /// waiting in SyncGroup get their share (or the error), unless the group moved on.
    pub fn assignment_persisted(
        &mut self,
        group: &str,
        generation: i32,
        result: Result<(), ErrorCode>,
        out: &mut Vec<Output>,
    ) {
        if self.generation != generation || self.state != GroupState::CompletingRebalance {
            return;
        }
        if result.is_ok() {
            self.state = GroupState::Stable;
            info!(group = %group, generation, "rebalance complete");
        }
        let parked: Vec<(Ticket, Bytes)> = self
            .members
            .values_mut()
            .filter_map(|m| m.sync.take().map(|t| (t, m.assignment.clone())))
            .collect();
        for (t, assignment) in parked {
            let answer = match result {
                Ok(()) => self.synced(&assignment),
                Err(code) => sync_error(code),
            };
            out.push(Output::Sync(t, answer));
        }
    }

    /// Heartbeat.
    pub fn heartbeat(&mut self, r: &HeartbeatRequest, ctx: &Context) -> HeartbeatResponse {
        let code = match self.check_member(
            &r.member_id,
            r.generation_id,
            r.group_instance_id.as_deref(),
        ) {
            Err(code) => code,
            Ok(()) => {
                if let Some(m) = self.members.get_mut(r.member_id.as_str()) {
                    m.last_heartbeat = ctx.now;
                }
                match self.state {
                    GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
                    _ => ErrorCode::None,
                }
            }
        };
        HeartbeatResponse::default().with_error_code(code.code())
    }

    /// LeaveGroup (v3+: a batch of members, by member id or instance id).
    pub fn leave(
        &mut self,
        group: &str,
        r: &LeaveGroupRequest,
        version: i16,
        ctx: &Context,
        out: &mut Vec<Output>,
    ) -> LeaveGroupResponse {
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            r.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(r.member_id.to_string(), None)]
        };
        let mut results = Vec::new();
        let mut removed = false;
        for (member_id, instance) in leaving {
            let id = match (&instance, member_id.is_empty()) {
                (Some(inst), true) => self.statics.get(inst).cloned().unwrap_or_default(),
                _ => member_id.clone(),
            };
            let code = match self.members.get_mut(&id) {
                Some(m) => {
                    if let Some(t) = m.join.take() {
                        out.push(Output::Join(t, join_error(ErrorCode::UnknownMemberId, &id)));
                    }
                    self.remove(&id, out);
                    removed = true;
                    info!(group = %group, member = %id, "member left the group");
                    ErrorCode::None
                }
                None => ErrorCode::UnknownMemberId,
            };
            results.push(
                leave_group_response::MemberResponse::default()
                    .with_member_id(s(&member_id))
                    .with_group_instance_id(instance.as_deref().map(s))
                    .with_error_code(code.code()),
            );
        }
        if removed {
            self.prepare_rebalance(group, false, ctx, out);
            self.try_complete_join(group, ctx, out);
        }
        if version >= 3 {
            LeaveGroupResponse::default().with_members(results)
        } else {
            let code = results.first().map_or(0, |m| m.error_code);
            LeaveGroupResponse::default().with_error_code(code)
        }
    }

    /// The session check: members silent for longer than their session timeout (and not
    /// waiting in JoinGroup) are removed, and the group rebalances without them.
    pub fn expire_sessions(&mut self, group: &str, ctx: &Context, out: &mut Vec<Output>) {
        let dead: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join.is_none()
                    && ctx.now.saturating_duration_since(m.last_heartbeat) > m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &dead {
            if let Some(t) = self.members.get_mut(id).and_then(|m| m.sync.take()) {
                out.push(Output::Sync(t, sync_error(ErrorCode::UnknownMemberId)));
            }
            self.remove(id, out);
            info!(group = %group, member = %id, "member session expired");
        }
        if !dead.is_empty() {
            self.prepare_rebalance(group, false, ctx, out);
            self.try_complete_join(group, ctx, out);
        }
    }

    /// Requests parked here; the coordinator drops them when it drops the group.
    pub fn parked(&self) -> Vec<Ticket> {
        self.members
            .values()
            .flat_map(|m| m.join.into_iter().chain(m.sync))
            .collect()
    }

    /// The group as a record.
    pub fn stored(&self, group: &str) -> StoredRecord {
        StoredRecord::Group {
            group: group.to_string(),
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| m.stored(&self.protocol))
                .collect(),
        }
    }

    /// The group as a record for a rewrite of its partition's whole state; none if it
    /// never had a member.
    pub fn record_if_used(&self, group: &str) -> Option<StoredRecord> {
        (self.generation > 0 || !self.protocol_type.is_empty()).then(|| self.stored(group))
    }

    /// Replay of a stored group record. As Kafka after a coordinator failover: the members
    /// of the last stable generation are back with fresh sessions, so members that keep
    /// heartbeating carry on with their assignment and the ones that are gone expire after
    /// their session timeout. Requests parked here are forgotten (see [`Self::parked`]).
    pub fn restore(
        &mut self,
        protocol_type: String,
        protocol: String,
        generation: i32,
        leader: String,
        members: Vec<StoredMember>,
        now: Instant,
    ) {
        self.members.clear();
        self.statics.clear();
        self.pending.clear();
        self.rebalance_id += 1;
        self.state = if members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        for m in members {
            if let Some(inst) = &m.instance_id {
                self.statics.insert(inst.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocols: vec![(protocol.clone(), Bytes::from(m.metadata))],
                    assignment: Bytes::from(m.assignment),
                    last_heartbeat: now,
                    join: None,
                    sync: None,
                },
            );
        }
        self.leader = if self.members.contains_key(&leader) {
            leader
        } else {
            String::new()
        };
        self.protocol_type = protocol_type;
        self.protocol = protocol;
        self.generation = generation;
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete.
    pub fn subscribed_topics(&self) -> HashSet<String> {
        let mut out = HashSet::new();
        if self.protocol_type != "consumer" {
            return out;
        }
        for m in self.members.values() {
            out.extend(rill_net::consumer_protocol::subscribed_topics(
                &m.metadata_for(&self.protocol),
            ));
        }
        out
    }

    /// DescribeGroups of this group.
    pub fn describe(&self, group: &str) -> DescribedGroup {
        DescribedGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_group_state(s(self.state.name()))
            .with_protocol_type(s(&self.protocol_type))
            .with_protocol_data(s(&self.protocol))
            .with_members(
                self.members
                    .values()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(s(&m.id))
                            .with_group_instance_id(m.instance_id.as_deref().map(s))
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host))
                            .with_member_metadata(m.metadata_for(&self.protocol))
                            .with_member_assignment(m.assignment.clone())
                    })
                    .collect(),
            )
    }
}

// The rules' unit tests are in classic/tests.rs: with them this file would be well over
// the thousand lines a file may have.
#[cfg(test)]
mod tests;
