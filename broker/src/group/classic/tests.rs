//! The classic state machine's rules, driven the way the coordinator drives it: a parked
//! request is answered at most once, timers fire when the clock reaches them, and the
//! leader's assignment is durable at once.

use super::*;

const SESSION_MS: u64 = 10_000;
const REBALANCE: Duration = Duration::from_secs(5);
const INITIAL_DELAY: Duration = Duration::from_millis(100);

/// A coordinator without I/O around one group.
struct Sim {
    g: ClassicGroup,
    now: Instant,
    next_ticket: u64,
    /// Parked requests and, once given, their answers.
    joins: HashMap<Ticket, Option<JoinGroupResponse>>,
    syncs: HashMap<Ticket, Option<SyncGroupResponse>>,
    abandoned: Vec<Ticket>,
    persisted: Vec<StoredRecord>,
    /// (due, sync deadline?, rebalance id)
    timers: Vec<(Instant, bool, u64)>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            g: ClassicGroup::default(),
            now: Instant::now(),
            next_ticket: 0,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            abandoned: Vec::new(),
            persisted: Vec::new(),
            timers: Vec::new(),
        }
    }

    fn ctx(&self) -> Context {
        Context {
            now: self.now,
            settings: Settings {
                min_session_timeout_ms: 6_000,
                max_session_timeout_ms: 1_800_000,
                initial_rebalance_delay: INITIAL_DELAY,
                members_max: 100,
            },
        }
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    fn apply(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Join(t, r) => {
                    let slot = self.joins.get_mut(&t).expect("a parked join");
                    assert!(slot.replace(r).is_none(), "join {t:?} answered twice");
                }
                Output::Sync(t, r) => {
                    let slot = self.syncs.get_mut(&t).expect("a parked sync");
                    assert!(slot.replace(r).is_none(), "sync {t:?} answered twice");
                }
                Output::Abandon(t) => self.abandoned.push(t),
                Output::Persist(r) => self.persisted.push(r),
                Output::JoinDeadline { rebalance, after } => {
                    self.timers.push((self.now + after, false, rebalance))
                }
                Output::SyncDeadline { rebalance, after } => {
                    self.timers.push((self.now + after, true, rebalance))
                }
            }
        }
    }

    /// Moves the clock on, firing the timers that come due on the way.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        self.timers.sort_by_key(|t| t.0);
        while self.timers.first().is_some_and(|t| t.0 <= until) {
            let (due, sync, rebalance) = self.timers.remove(0);
            self.now = due;
            let (ctx, mut out) = (self.ctx(), Vec::new());
            if sync {
                self.g.sync_deadline("g", rebalance, &ctx, &mut out);
            } else {
                self.g.join_deadline("g", rebalance, &ctx, &mut out);
            }
            self.apply(out);
        }
        self.now = until;
    }

    /// JoinGroup: the answer now, or the ticket it is parked under.
    fn join(&mut self, j: Join) -> Result<JoinGroupResponse, Ticket> {
        let (t, ctx, mut out) = (self.ticket(), self.ctx(), Vec::new());
        let answer = self.g.join("g", j, t, &ctx, &mut out);
        if answer.is_none() {
            self.joins.insert(t, None);
        }
        self.apply(out);
        answer.ok_or(t)
    }

    fn joined(&self, t: Ticket) -> &JoinGroupResponse {
        self.joins[&t].as_ref().expect("the join was answered")
    }

    /// SyncGroup; the leader's assignment is durable at once.
    fn sync(
        &mut self,
        member: &str,
        generation: i32,
        assignments: &[(&str, &'static [u8])],
    ) -> Result<SyncGroupResponse, Ticket> {
        let r = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(member))
            .with_generation_id(generation)
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::from_static(a))
                    })
                    .collect(),
            );
        let (t, ctx, mut out) = (self.ticket(), self.ctx(), Vec::new());
        let synced = self.g.sync("g", &r, t, &ctx, &mut out);
        if !matches!(synced, Synced::Now(_)) {
            self.syncs.insert(t, None);
        }
        self.apply(out);
        match synced {
            Synced::Now(answer) => Ok(answer),
            Synced::Parked => Err(t),
            Synced::Persist { generation, record } => {
                self.persisted.push(record);
                let mut out = Vec::new();
                self.g
                    .assignment_persisted("g", generation, Ok(()), &mut out);
                self.apply(out);
                Err(t)
            }
        }
    }

    fn synced(&self, t: Ticket) -> &SyncGroupResponse {
        self.syncs[&t].as_ref().expect("the sync was answered")
    }

    fn heartbeat(&mut self, member: &str, generation: i32, instance: Option<&str>) -> i16 {
        let r = HeartbeatRequest::default()
            .with_member_id(s(member))
            .with_generation_id(generation)
            .with_group_instance_id(instance.map(s));
        self.g.heartbeat(&r, &self.ctx()).error_code
    }

    fn leave(&mut self, member: &str) -> LeaveGroupResponse {
        let r = LeaveGroupRequest::default().with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(member)),
        ]);
        let (ctx, mut out) = (self.ctx(), Vec::new());
        let answer = self.g.leave("g", &r, 3, &ctx, &mut out);
        self.apply(out);
        answer
    }

    fn expire(&mut self) {
        let (ctx, mut out) = (self.ctx(), Vec::new());
        self.g.expire_sessions("g", &ctx, &mut out);
        self.apply(out);
    }

    /// Members `ids` (new, in this order) join and sync one generation; returns it.
    fn stable(&mut self, ids: &[&str]) -> i32 {
        let tickets: Vec<Ticket> = ids
            .iter()
            .map(|id| self.join(request("", id, None)).unwrap_err())
            .collect();
        self.advance(INITIAL_DELAY);
        let generation = self.joined(tickets[0]).generation_id;
        let leader = self.joined(tickets[0]).leader.to_string();
        let assignments: Vec<(&str, &'static [u8])> =
            ids.iter().map(|id| (*id, b"a" as &[u8])).collect();
        for id in ids.iter().filter(|id| **id != leader) {
            self.sync(id, generation, &[]).unwrap_err();
        }
        self.sync(&leader, generation, &assignments).unwrap_err();
        assert_eq!(self.g.state(), GroupState::Stable);
        generation
    }
}

/// A JoinGroup of member `id` ("" for a new one, which gets `new_id`).
fn request(id: &str, new_id: &str, instance: Option<&str>) -> Join {
    Join {
        member_id: id.into(),
        new_member_id: new_id.into(),
        instance_id: instance.map(Into::into),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE.as_millis() as i32,
        client_id: "c".into(),
        client_host: "/h".into(),
        id_first: false,
    }
}

#[test]
fn a_new_group_completes_its_first_join_after_the_initial_delay() {
    let mut sim = Sim::new();
    // KIP-394: the member id first, then the join that counts.
    let mut first = request("", "a", None);
    first.id_first = true;
    let answer = sim.join(first).unwrap();
    assert_eq!(answer.error_code, ErrorCode::MemberIdRequired.code());
    assert_eq!(answer.member_id.as_str(), "a");
    let a = sim.join(request("a", "", None)).unwrap_err();
    let b = sim.join(request("", "b", None)).unwrap_err();
    // The join phase of a new group ends after the initial delay, not a session timeout.
    assert_eq!(sim.timers.len(), 1);
    assert_eq!(sim.timers[0].0 - sim.now, INITIAL_DELAY);
    sim.advance(INITIAL_DELAY);
    let (ja, jb) = (sim.joined(a).clone(), sim.joined(b).clone());
    assert_eq!((ja.generation_id, jb.generation_id), (1, 1));
    assert_eq!(ja.leader, jb.leader);
    let (leader, follower) = if ja.leader == ja.member_id {
        (ja, jb)
    } else {
        (jb, ja)
    };
    assert_eq!(leader.members.len(), 2, "the leader gets every member");
    assert!(follower.members.is_empty());
    assert_eq!(sim.g.state(), GroupState::CompletingRebalance);

    // Later rebalances end as soon as every member is back, with no timer.
    sim.sync("a", 1, &[]).ok();
    sim.sync("b", 1, &[]).ok();
    let c = sim.join(request("", "c", None)).unwrap_err();
    let a2 = sim.join(request("a", "", None)).unwrap_err();
    let b2 = sim.join(request("b", "", None)).unwrap_err();
    for t in [a2, b2, c] {
        assert_eq!(sim.joined(t).generation_id, 2);
    }
}

#[test]
fn requests_of_another_generation_or_member_are_fenced() {
    let mut sim = Sim::new();
    let generation = sim.stable(&["a", "b"]);
    assert_eq!(sim.heartbeat("a", generation, None), 0);
    assert_eq!(
        sim.heartbeat("a", generation - 1, None),
        ErrorCode::IllegalGeneration.code()
    );
    assert_eq!(
        sim.heartbeat("zz", generation, None),
        ErrorCode::UnknownMemberId.code()
    );
    let stale = sim.sync("b", generation + 1, &[]).unwrap();
    assert_eq!(stale.error_code, ErrorCode::IllegalGeneration.code());
    let unknown = sim.join(request("zz", "", None)).unwrap();
    assert_eq!(unknown.error_code, ErrorCode::UnknownMemberId.code());
}

#[test]
fn a_member_that_misses_the_rebalance_timeout_is_removed() {
    let mut sim = Sim::new();
    let generation = sim.stable(&["a", "b"]);
    let c = sim.join(request("", "c", None)).unwrap_err();
    let a = sim.join(request("a", "", None)).unwrap_err();
    assert_eq!(
        sim.heartbeat("b", generation, None),
        ErrorCode::RebalanceInProgress.code()
    );
    // b never rejoins: the join phase ends at the rebalance timeout, without it.
    sim.advance(REBALANCE - Duration::from_millis(1));
    assert!(sim.joins[&a].is_none());
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.joined(a).generation_id, generation + 1);
    assert_eq!(sim.joined(c).generation_id, generation + 1);
    let leader = sim.joined(a).leader.to_string();
    let t = if leader == "a" { a } else { c };
    let members: Vec<String> = sim
        .joined(t)
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    assert_eq!(members, ["a", "c"]);
    assert_eq!(
        sim.heartbeat("b", generation + 1, None),
        ErrorCode::UnknownMemberId.code()
    );
}

#[test]
fn a_static_member_that_restarts_keeps_its_assignment_without_a_rebalance() {
    let mut sim = Sim::new();
    // The static member leads (the first member id): a leader rejoining would rebalance.
    let s1 = sim.join(request("", "s1", Some("i1"))).unwrap_err();
    sim.join(request("", "t", None)).unwrap_err();
    sim.advance(INITIAL_DELAY);
    let generation = sim.joined(s1).generation_id;
    assert_eq!(sim.joined(s1).leader.as_str(), "s1");
    sim.sync("t", generation, &[]).unwrap_err();
    sim.sync("s1", generation, &[("s1", b"mine"), ("t", b"yours")])
        .unwrap_err();
    assert_eq!(sim.g.state(), GroupState::Stable);
    let timers = sim.timers.len();

    // It comes back under a new member id, with the same metadata.
    let back = sim.join(request("", "s1-again", Some("i1"))).unwrap();
    assert_eq!(back.error_code, 0);
    assert_eq!(back.member_id.as_str(), "s1-again");
    assert_eq!(back.leader.as_str(), "s1-again");
    assert_eq!(back.generation_id, generation, "the group rebalanced");
    assert_eq!(sim.g.state(), GroupState::Stable);
    assert_eq!(sim.timers.len(), timers, "a rebalance was started");
    let synced = sim.sync("s1-again", generation, &[]).unwrap();
    assert_eq!(&synced.assignment[..], b"mine");
    // Its old incarnation is fenced; the other member carries on.
    assert_eq!(
        sim.heartbeat("s1", generation, Some("i1")),
        ErrorCode::FencedInstanceId.code()
    );
    assert_eq!(sim.heartbeat("t", generation, None), 0);
}

#[test]
fn leaving_starts_a_rebalance_that_ends_when_the_others_rejoin() {
    let mut sim = Sim::new();
    let generation = sim.stable(&["a", "b"]);
    let left = sim.leave("b");
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(sim.g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        sim.heartbeat("a", generation, None),
        ErrorCode::RebalanceInProgress.code()
    );
    let a = sim.join(request("a", "", None)).unwrap_err();
    let joined = sim.joined(a);
    assert_eq!(joined.generation_id, generation + 1);
    assert_eq!(joined.leader.as_str(), "a");
    assert_eq!(joined.members.len(), 1);
    // The last one out leaves the group Empty, at a new generation, written down.
    sim.persisted.clear();
    sim.leave("a");
    assert_eq!(sim.g.state(), GroupState::Empty);
    assert!(matches!(
        sim.persisted.as_slice(),
        [StoredRecord::Group { generation: g, members, .. }] if *g == generation + 2 && members.is_empty()
    ));
    assert_eq!(
        sim.leave("a").members[0].error_code,
        ErrorCode::UnknownMemberId.code()
    );
}

#[test]
fn a_silent_member_expires_and_the_group_rebalances_without_it() {
    let mut sim = Sim::new();
    let generation = sim.stable(&["a", "b"]);
    sim.advance(Duration::from_millis(SESSION_MS / 2));
    assert_eq!(sim.heartbeat("a", generation, None), 0);
    sim.advance(Duration::from_millis(SESSION_MS / 2 + 1));
    sim.expire();
    assert_eq!(sim.g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        sim.heartbeat("b", generation, None),
        ErrorCode::UnknownMemberId.code()
    );
    let a = sim.join(request("a", "", None)).unwrap_err();
    assert_eq!(sim.joined(a).generation_id, generation + 1);
}

#[test]
fn a_leader_that_never_syncs_starts_the_rebalance_over() {
    let mut sim = Sim::new();
    let a = sim.join(request("", "a", None)).unwrap_err();
    sim.join(request("", "b", None)).unwrap_err();
    sim.advance(INITIAL_DELAY);
    let leader = sim.joined(a).leader.to_string();
    let follower = if leader == "a" { "b" } else { "a" };
    let waiting = sim.sync(follower, 1, &[]).unwrap_err();
    sim.advance(REBALANCE);
    assert_eq!(
        sim.synced(waiting).error_code,
        ErrorCode::RebalanceInProgress.code()
    );
    assert_eq!(sim.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_replaced_request_is_answered_once() {
    let mut sim = Sim::new();
    sim.stable(&["a", "b"]);
    let c = sim.join(request("", "c", None)).unwrap_err();
    let first = sim.join(request("a", "", None)).unwrap_err();
    let again = sim.join(request("a", "", None)).unwrap_err();
    assert_eq!(
        sim.joined(first).error_code,
        ErrorCode::UnknownMemberId.code()
    );
    // b leaves while the others wait: the join phase ends with a and c.
    sim.leave("b");
    assert_eq!(sim.joined(again).error_code, 0);
    assert_eq!(sim.joined(c).error_code, 0);
    assert!(sim.g.parked().is_empty());
}

#[test]
fn a_member_id_handed_out_but_never_used_expires_and_frees_its_seat() {
    let mut sim = Sim::new();
    let mut first = request("", "ghost", None);
    first.id_first = true;
    let answer = sim.join(first).unwrap();
    assert_eq!(answer.error_code, ErrorCode::MemberIdRequired.code());
    // Within the session timeout the id is good for its second join ...
    sim.advance(Duration::from_millis(SESSION_MS / 2));
    let mut again = request("", "ghost2", None);
    again.id_first = true;
    sim.join(again).unwrap();
    // ... after it, an id never used is unknown, and no longer counts against the size limit.
    sim.advance(Duration::from_millis(SESSION_MS));
    let late = sim.join(request("ghost", "", None)).unwrap();
    assert_eq!(late.error_code, ErrorCode::UnknownMemberId.code());
    let mut fresh = request("", "new", None);
    fresh.id_first = true;
    sim.join(fresh).unwrap();
    assert_eq!(
        sim.g.pending.len(),
        1,
        "expired ids are dropped: {:?}",
        sim.g.pending
    );
}
