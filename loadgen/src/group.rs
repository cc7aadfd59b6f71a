//! Consumer-group membership with Kafka's classic protocol (`--group`), over `rill-net`'s
//! client, as the Java and librdkafka consumers speak it, so it works against any Kafka
//! broker:
//!
//! FindCoordinator → connect to the coordinator → JoinGroup (protocol type `consumer`, the
//! `range` assignor with a standard `ConsumerProtocolSubscription`; MEMBER_ID_REQUIRED is
//! answered by rejoining with the id given) → the leader computes a range assignment
//! ([`range_assign`]) and sends it in SyncGroup as standard `ConsumerProtocolAssignment`
//! bytes → OffsetFetch for the assigned partitions (a partition with no committed offset
//! starts where the run's consumers start: the log end when the run began) → fetch, with a
//! Heartbeat every `heartbeat_interval_ms` and an OffsetCommit every `commit_interval_ms`
//! → on REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID: stop fetching,
//! commit what was consumed, rejoin → at the end a last commit and LeaveGroup.
//!
//! This module is the protocol: [`Coordinator`] (one member's connection to its group
//! coordinator, owned by that member's task) and the pure helpers; the member's loop, which
//! starts and stops the fetchers, lives in `driver`. Answers are classified by
//! [`classify`]: the protocol's expected steps (MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS)
//! are counted in `events.group_answers`, not as errors; anything else a group API answers
//! with is an error counted by api and code (`group JoinGroup UNKNOWN_MEMBER_ID (25)`).

use std::collections::BTreeMap;
use std::time::Duration;

use rill_net::client::{ApiVersions, Connection, ConnectionOptions};
use rill_net::kafka_protocol::messages::{
    join_group_request, leave_group_request, offset_commit_request, offset_fetch_request,
    sync_group_request, ApiKey, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
    TopicName,
};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

pub use rill_net::consumer_protocol::{
    assigned_partitions, assignment, range_assign, subscribed_topics, subscription,
};

use crate::error::error_code_name;
use crate::runtime::{self, Stream};
use crate::wire::CLIENT_ID;

/// The embedded protocol's type, as every Kafka consumer sends it.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The assignor this member offers (and, as leader, runs).
pub const ASSIGNOR: &str = "range";
/// JoinGroup/SyncGroup rounds one rejoin may take before it counts as failed.
pub const JOIN_ROUNDS_MAX: usize = 50;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// What to do about a group api's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Success.
    Ok,
    /// An expected protocol step (counted, not an error): do what it says.
    Step(Next),
    /// An error (counted by code), recovered from by doing what it says.
    Error(Next),
    /// An error that ends the member.
    Fatal,
}

/// The recovery an answer calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Join again with the same member id.
    Rejoin,
    /// Join again without a member id (the coordinator does not know us).
    RejoinAsNew,
    /// Find the coordinator again and reconnect.
    Refind,
}

/// Classifies a group api's error code.
pub fn classify(code: i16) -> Answer {
    match ErrorCode::from_code(code) {
        Some(ErrorCode::None) => Answer::Ok,
        _ if code == 0 => Answer::Ok,
        Some(ErrorCode::MemberIdRequired) => Answer::Step(Next::Rejoin),
        Some(ErrorCode::RebalanceInProgress) => Answer::Step(Next::Rejoin),
        Some(ErrorCode::IllegalGeneration) => Answer::Error(Next::Rejoin),
        Some(ErrorCode::UnknownMemberId) => Answer::Error(Next::RejoinAsNew),
        Some(
            ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorLoadInProgress,
        ) => Answer::Error(Next::Refind),
        _ => Answer::Fatal,
    }
}

/// The label an answer is counted under.
pub fn answer_label(api: &str, code: i16) -> String {
    format!("group {api} {}", error_code_name(code))
}

/// Why a group request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupError {
    /// The coordinator answered `code` to `api`.
    Code {
        /// The api.
        api: &'static str,
        /// The Kafka error code.
        code: i16,
    },
    /// The connection failed (or the answer did not decode).
    Lost(String),
}

/// The outcome of a completed JoinGroup + SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The generation joined.
    pub generation: i32,
    /// Whether this member led it (and assigned).
    pub leader: bool,
    /// Members in the generation.
    pub members: usize,
    /// This member's partitions of the topic.
    pub partitions: Vec<i32>,
}

/// Timeouts a member gives its coordinator.
#[derive(Debug, Clone, Copy)]
pub struct MemberSettings {
    /// The coordinator evicts a member silent this long.
    pub session_timeout_ms: i32,
    /// How long the coordinator waits for members to rejoin in a rebalance.
    pub rebalance_timeout_ms: i32,
}

/// One member's connection to its group coordinator and its identity in the group.
pub struct Coordinator {
    conn: Connection<Stream>,
    versions: ApiVersions,
    /// `host:port` of the coordinator.
    pub addr: String,
    group: String,
    topic: String,
    /// The id the coordinator gave this member (empty before the first join).
    pub member_id: String,
    /// The generation last joined (-1 before).
    pub generation: i32,
}

async fn open(addr: &str, timeout: Duration) -> Result<(Connection<Stream>, ApiVersions), String> {
    let stream = runtime::connect(addr, timeout)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let mut conn = Connection::with_options(
        stream,
        ConnectionOptions {
            client_id: CLIENT_ID.to_string(),
            inflight_requests_max: 1,
            ..ConnectionOptions::default()
        },
    );
    let versions = conn
        .api_versions()
        .await
        .map_err(|e| format!("ApiVersions with {addr}: {e}"))?;
    Ok((conn, versions))
}

/// Asks `bootstrap` which broker coordinates `group`: `Ok(Ok(addr))`, or the broker's
/// error code (`Ok(Err(code))`), or a connection failure.
pub async fn find_coordinator(
    bootstrap: &str,
    group: &str,
    timeout: Duration,
) -> Result<Result<String, i16>, String> {
    let (mut conn, versions) = open(bootstrap, timeout).await?;
    let v = versions
        .require(ApiKey::FindCoordinator)
        .map_err(|e| format!("FindCoordinator: {e}"))?;
    let mut request = FindCoordinatorRequest::default().with_key_type(0);
    if v >= 4 {
        request = request.with_coordinator_keys(vec![s(group)]);
    } else {
        request = request.with_key(s(group));
    }
    let r = conn
        .send(v, &request)
        .await
        .map_err(|e| format!("FindCoordinator from {bootstrap}: {e}"))?;
    let (code, host, port) = match r.coordinators.first() {
        Some(c) if v >= 4 => (c.error_code, c.host.to_string(), c.port),
        _ => (r.error_code, r.host.to_string(), r.port),
    };
    if code != 0 {
        return Ok(Err(code));
    }
    Ok(Ok(format!("{host}:{port}")))
}

impl Coordinator {
    /// Connects to the coordinator at `addr` as a member of `group` reading `topic`,
    /// keeping the member id and generation of an earlier connection.
    pub async fn connect(
        addr: &str,
        group: &str,
        topic: &str,
        member_id: String,
        generation: i32,
        timeout: Duration,
    ) -> Result<Coordinator, String> {
        let (conn, versions) = open(addr, timeout).await?;
        for api in [
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::OffsetFetch,
            ApiKey::OffsetCommit,
            ApiKey::LeaveGroup,
        ] {
            versions
                .require(api)
                .map_err(|e| format!("coordinator {addr}: {e}"))?;
        }
        Ok(Coordinator {
            conn,
            versions,
            addr: addr.to_string(),
            group: group.to_string(),
            topic: topic.to_string(),
            member_id,
            generation,
        })
    }

    fn v(&self, api: ApiKey) -> i16 {
        self.versions.version(api).unwrap_or(0)
    }

    fn lost(&self, what: &str) -> impl FnOnce(rill_net::NetError) -> GroupError + '_ {
        let what = what.to_string();
        move |e| GroupError::Lost(format!("{what} with {}: {e}", self.addr))
    }

    /// One JoinGroup + SyncGroup round. `on_answer` hears every non-zero code with its api
    /// (for counting) and whether it was handled by retrying here (MEMBER_ID_REQUIRED). The
    /// leader assigns `partitions` with the range assignor over the members subscribed to
    /// the topic.
    pub async fn join(
        &mut self,
        settings: MemberSettings,
        partitions: &[i32],
        mut on_answer: impl FnMut(&'static str, i16),
    ) -> Result<Joined, GroupError> {
        let metadata = subscription(&self.topic);
        for _ in 0..JOIN_ROUNDS_MAX {
            let j = self
                .conn
                .send(
                    self.v(ApiKey::JoinGroup),
                    &JoinGroupRequest::default()
                        .with_group_id(GroupId(s(&self.group)))
                        .with_session_timeout_ms(settings.session_timeout_ms)
                        .with_rebalance_timeout_ms(settings.rebalance_timeout_ms)
                        .with_member_id(s(&self.member_id))
                        .with_protocol_type(s(PROTOCOL_TYPE))
                        .with_protocols(vec![
                            join_group_request::JoinGroupRequestProtocol::default()
                                .with_name(s(ASSIGNOR))
                                .with_metadata(metadata.clone()),
                        ]),
                )
                .await
                .map_err(self.lost("JoinGroup"))?;
            if j.error_code != 0 {
                on_answer("JoinGroup", j.error_code);
                match classify(j.error_code) {
                    Answer::Step(Next::Rejoin) => {
                        // MEMBER_ID_REQUIRED carries the id to join with.
                        if !j.member_id.is_empty() {
                            self.member_id = j.member_id.to_string();
                        }
                        continue;
                    }
                    Answer::Error(Next::RejoinAsNew) => {
                        self.member_id.clear();
                        continue;
                    }
                    Answer::Error(Next::Rejoin) => continue,
                    _ => {
                        return Err(GroupError::Code {
                            api: "JoinGroup",
                            code: j.error_code,
                        })
                    }
                }
            }
            self.member_id = j.member_id.to_string();
            self.generation = j.generation_id;
            let leader = j.leader == j.member_id;
            let mut assignments = Vec::new();
            if leader {
                let wanting: Vec<String> = j
                    .members
                    .iter()
                    .filter(|m| subscribed_topics(&m.metadata).contains(&self.topic))
                    .map(|m| m.member_id.to_string())
                    .collect();
                let plan = range_assign(&wanting, partitions);
                for m in &j.members {
                    let id = m.member_id.to_string();
                    let mine = plan.get(&id).cloned().unwrap_or_default();
                    assignments.push(
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(s(&id))
                            .with_assignment(assignment(&self.topic, &mine)),
                    );
                }
            }
            let r = self
                .conn
                .send(
                    self.v(ApiKey::SyncGroup),
                    &SyncGroupRequest::default()
                        .with_group_id(GroupId(s(&self.group)))
                        .with_generation_id(self.generation)
                        .with_member_id(s(&self.member_id))
                        .with_protocol_type(Some(s(PROTOCOL_TYPE)))
                        .with_protocol_name(Some(s(ASSIGNOR)))
                        .with_assignments(assignments),
                )
                .await
                .map_err(self.lost("SyncGroup"))?;
            if r.error_code != 0 {
                on_answer("SyncGroup", r.error_code);
                match classify(r.error_code) {
                    Answer::Step(_) | Answer::Error(Next::Rejoin) => continue,
                    Answer::Error(Next::RejoinAsNew) => {
                        self.member_id.clear();
                        continue;
                    }
                    _ => {
                        return Err(GroupError::Code {
                            api: "SyncGroup",
                            code: r.error_code,
                        })
                    }
                }
            }
            return Ok(Joined {
                generation: self.generation,
                leader,
                members: j.members.len(),
                partitions: assigned_partitions(&r.assignment, &self.topic),
            });
        }
        Err(GroupError::Lost(format!(
            "no stable generation after {JOIN_ROUNDS_MAX} JoinGroup rounds"
        )))
    }

    /// One heartbeat; the code as answered (0: fine).
    pub async fn heartbeat(&mut self) -> Result<i16, GroupError> {
        let r = self
            .conn
            .send(
                self.v(ApiKey::Heartbeat),
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(s(&self.group)))
                    .with_generation_id(self.generation)
                    .with_member_id(s(&self.member_id)),
            )
            .await
            .map_err(self.lost("Heartbeat"))?;
        Ok(r.error_code)
    }

    /// The committed offsets of `partitions` (absent: nothing committed).
    pub async fn committed(
        &mut self,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, GroupError> {
        let v = self.v(ApiKey::OffsetFetch);
        let request = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(&self.group)))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s(&self.topic)))
                            .with_partition_indexes(partitions.to_vec()),
                    ])),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(&self.topic)))
                        .with_partition_indexes(partitions.to_vec()),
                ]))
        };
        let r = self
            .conn
            .send(v, &request)
            .await
            .map_err(self.lost("OffsetFetch"))?;
        let code = |c: i16| GroupError::Code {
            api: "OffsetFetch",
            code: c,
        };
        if r.error_code != 0 {
            return Err(code(r.error_code));
        }
        let mut out = BTreeMap::new();
        let mut take = |p: i32, offset: i64, c: i16| -> Result<(), GroupError> {
            if c != 0 {
                return Err(code(c));
            }
            if offset >= 0 {
                out.insert(p, offset);
            }
            Ok(())
        };
        for t in &r.topics {
            for p in &t.partitions {
                take(p.partition_index, p.committed_offset, p.error_code)?;
            }
        }
        for g in &r.groups {
            if g.error_code != 0 {
                return Err(code(g.error_code));
            }
            for t in &g.topics {
                for p in &t.partitions {
                    take(p.partition_index, p.committed_offset, p.error_code)?;
                }
            }
        }
        Ok(out)
    }

    /// Commits `positions` (next offset to read per partition) under the current
    /// generation; returns the non-zero partition codes.
    pub async fn commit(&mut self, positions: &BTreeMap<i32, i64>) -> Result<Vec<i16>, GroupError> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let parts = positions
            .iter()
            .map(|(&p, &o)| {
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(o)
            })
            .collect();
        let r = self
            .conn
            .send(
                self.v(ApiKey::OffsetCommit),
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId(s(&self.group)))
                    .with_generation_id_or_member_epoch(self.generation)
                    .with_member_id(s(&self.member_id))
                    .with_topics(vec![
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(&self.topic)))
                            .with_partitions(parts),
                    ]),
            )
            .await
            .map_err(self.lost("OffsetCommit"))?;
        Ok(r.topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .filter(|&c| c != 0)
            .collect())
    }

    /// Leaves the group so the others take over at once; the code as answered.
    pub async fn leave(&mut self) -> Result<i16, GroupError> {
        let v = self.v(ApiKey::LeaveGroup);
        // v0-2 name the member in member_id, v3+ in the members list.
        let request = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(s(&self.member_id))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_member_id(s(&self.member_id))
        };
        let r = self
            .conn
            .send(v, &request)
            .await
            .map_err(self.lost("LeaveGroup"))?;
        let member_code = r.members.first().map_or(0, |m| m.error_code);
        Ok(if r.error_code != 0 {
            r.error_code
        } else {
            member_code
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn range_assignor_gives_contiguous_ranges_extra_to_the_first() {
        let plan = range_assign(&ids(&["c", "a", "b"]), &[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(plan["a"], vec![0, 1, 2]);
        assert_eq!(plan["b"], vec![3, 4]);
        assert_eq!(plan["c"], vec![5, 6]);
        // Six partitions, three members: two each.
        let plan = range_assign(&ids(&["m2", "m1", "m3"]), &[5, 4, 3, 2, 1, 0]);
        assert_eq!(plan["m1"], vec![0, 1]);
        assert_eq!(plan["m2"], vec![2, 3]);
        assert_eq!(plan["m3"], vec![4, 5]);
        // More members than partitions: the last ones get nothing, but are listed.
        let plan = range_assign(&ids(&["x", "y", "z"]), &[0]);
        assert_eq!(plan["x"], vec![0]);
        assert!(plan["y"].is_empty() && plan["z"].is_empty());
        assert!(range_assign(&[], &[0]).is_empty());
    }

    #[test]
    fn range_assignment_is_a_partition_of_the_partitions() {
        for members in 1..8 {
            for n in 0..20 {
                let m: Vec<String> = (0..members).map(|i| format!("member-{i}")).collect();
                let parts: Vec<i32> = (0..n).collect();
                let plan = range_assign(&m, &parts);
                let mut all: Vec<i32> = plan.values().flatten().copied().collect();
                all.sort_unstable();
                assert_eq!(all, parts, "{members} members, {n} partitions");
                let sizes: Vec<usize> = plan.values().map(Vec::len).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{sizes:?}");
            }
        }
    }

    #[test]
    fn embedded_protocol_bytes_are_kafkas() {
        let sub = subscription("t");
        // version 0, one topic "t", no user data (null bytes: -1).
        assert_eq!(
            &sub[..],
            &[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(subscribed_topics(&sub), vec!["t".to_string()]);
        let a = assignment("t", &[2, 5]);
        assert_eq!(
            &a[..],
            &[
                0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 5, 0xff, 0xff, 0xff,
                0xff
            ]
        );
        assert_eq!(assigned_partitions(&a, "t"), vec![2, 5]);
        assert!(assigned_partitions(&a, "other").is_empty());
        assert!(assigned_partitions(&Bytes::new(), "t").is_empty());
        assert!(subscribed_topics(&Bytes::from_static(b"\x00")).is_empty());
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(0), Answer::Ok);
        assert_eq!(classify(79), Answer::Step(Next::Rejoin)); // MEMBER_ID_REQUIRED
        assert_eq!(classify(27), Answer::Step(Next::Rejoin)); // REBALANCE_IN_PROGRESS
        assert_eq!(classify(22), Answer::Error(Next::Rejoin)); // ILLEGAL_GENERATION
        assert_eq!(classify(25), Answer::Error(Next::RejoinAsNew)); // UNKNOWN_MEMBER_ID
        assert_eq!(classify(16), Answer::Error(Next::Refind)); // NOT_COORDINATOR
        assert_eq!(classify(15), Answer::Error(Next::Refind));
        assert_eq!(classify(24), Answer::Fatal); // INVALID_GROUP_ID
        assert_eq!(
            answer_label("JoinGroup", 25),
            "group JoinGroup UNKNOWN_MEMBER_ID (25)"
        );
    }
}
