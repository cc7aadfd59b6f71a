//! A consumer group member for `rill consume --group`: the classic protocol as the Java
//! and librdkafka consumers speak it (JoinGroup with the `consumer` protocol type and the
//! `range` assignor, SyncGroup, Heartbeat, OffsetCommit, LeaveGroup), driven between
//! fetches on the CLI's one connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use rill_net::consumer_protocol::{
    assigned_partitions, assignment, range_assign, subscribed_topics, subscription,
};

use super::client::{check, CliError, Client};

const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
const COMMIT_EVERY: Duration = Duration::from_secs(5);
const ASSIGNOR: &str = "range";
/// Join attempts before giving up (each may wait for a rebalance).
const JOIN_ATTEMPTS_MAX: usize = 20;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub struct GroupMember {
    group: String,
    topic: String,
    member_id: String,
    generation: i32,
    pub assigned: Vec<i32>,
    last_heartbeat: Instant,
    last_commit: Instant,
}

/// What a heartbeat said.
pub enum Beat {
    Fine,
    /// The group is rebalancing: commit, then rejoin.
    Rejoin,
}

impl GroupMember {
    /// Joins `group` for `topic` and returns the member with its assignment.
    pub fn join(
        c: &mut Client,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<GroupMember, CliError> {
        let mut m = GroupMember {
            group: group.to_string(),
            topic: topic.to_string(),
            member_id: String::new(),
            generation: -1,
            assigned: Vec::new(),
            last_heartbeat: Instant::now(),
            last_commit: Instant::now(),
        };
        m.rejoin(c, partitions)?;
        Ok(m)
    }

    /// Runs JoinGroup and SyncGroup until this member has an assignment.
    pub fn rejoin(&mut self, c: &mut Client, partitions: &[i32]) -> Result<(), CliError> {
        let subscription = subscription(&self.topic);
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let j = c.send(
                &JoinGroupRequest::default()
                    .with_group_id(GroupId(s(&self.group)))
                    .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                    .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
                    .with_member_id(s(&self.member_id))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                    )
                    .with_name(s(ASSIGNOR))
                    .with_metadata(subscription.clone())]),
            )?;
            match ErrorCode::from_code(j.error_code) {
                Some(ErrorCode::MemberIdRequired) => {
                    self.member_id = j.member_id.to_string();
                    continue;
                }
                Some(ErrorCode::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Some(ErrorCode::RebalanceInProgress | ErrorCode::CoordinatorLoadInProgress) => {
                    continue
                }
                _ => check(format!("join group {}", self.group), j.error_code, None)?,
            }
            self.member_id = j.member_id.to_string();
            self.generation = j.generation_id;
            let mut assignments = Vec::new();
            if j.leader == j.member_id {
                let members: Vec<String> =
                    j.members.iter().map(|m| m.member_id.to_string()).collect();
                let wanting: Vec<String> = j
                    .members
                    .iter()
                    .filter(|m| subscribed_topics(&m.metadata).contains(&self.topic))
                    .map(|m| m.member_id.to_string())
                    .collect();
                let plan = range_assign(&wanting, partitions);
                for id in members {
                    let parts = plan.get(&id).cloned().unwrap_or_default();
                    assignments.push(
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(s(&id))
                            .with_assignment(assignment(&self.topic, &parts)),
                    );
                }
            }
            let r = c.send(
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(s(&self.group)))
                    .with_generation_id(self.generation)
                    .with_member_id(s(&self.member_id))
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s(ASSIGNOR)))
                    .with_assignments(assignments),
            )?;
            if r.error_code == ErrorCode::RebalanceInProgress.code() {
                continue;
            }
            check(format!("sync group {}", self.group), r.error_code, None)?;
            self.assigned = assigned_partitions(&r.assignment, &self.topic);
            self.last_heartbeat = Instant::now();
            return Ok(());
        }
        Err(CliError::Protocol(format!(
            "could not join group {} after {JOIN_ATTEMPTS_MAX} attempts",
            self.group
        )))
    }

    /// Heartbeats when one is due.
    pub fn maybe_heartbeat(&mut self, c: &mut Client) -> Result<Beat, CliError> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_EVERY {
            return Ok(Beat::Fine);
        }
        self.last_heartbeat = Instant::now();
        let r = c.send(
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_generation_id(self.generation)
                .with_member_id(s(&self.member_id)),
        )?;
        match ErrorCode::from_code(r.error_code) {
            Some(ErrorCode::None) => Ok(Beat::Fine),
            Some(ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration) => Ok(Beat::Rejoin),
            Some(ErrorCode::UnknownMemberId) => {
                self.member_id.clear();
                Ok(Beat::Rejoin)
            }
            _ => check(
                format!("heartbeat in group {}", self.group),
                r.error_code,
                None,
            )
            .map(|_| Beat::Fine),
        }
    }

    /// The committed offsets of the assigned partitions (None: nothing committed).
    pub fn committed(&self, c: &mut Client) -> Result<BTreeMap<i32, i64>, CliError> {
        let topic = offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(&self.topic)))
            .with_partition_indexes(self.assigned.clone());
        let request = if c.version(ApiKey::OffsetFetch)? >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(&self.group)))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s(&self.topic)))
                            .with_partition_indexes(self.assigned.clone()),
                    ])),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_topics(Some(vec![topic]))
        };
        let r = c.send(&request)?;
        check(
            format!("offsets of group {}", self.group),
            r.error_code,
            None,
        )?;
        let mut out = BTreeMap::new();
        for t in &r.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 {
                    out.insert(p.partition_index, p.committed_offset);
                }
            }
        }
        for g in &r.groups {
            check(
                format!("offsets of group {}", self.group),
                g.error_code,
                None,
            )?;
            for t in &g.topics {
                for p in &t.partitions {
                    if p.committed_offset >= 0 {
                        out.insert(p.partition_index, p.committed_offset);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Commits `next` (the next offset to read, per partition) when due or when `now`.
    pub fn commit(
        &mut self,
        c: &mut Client,
        next: &BTreeMap<i32, i64>,
        now: bool,
    ) -> Result<(), CliError> {
        if !now && self.last_commit.elapsed() < COMMIT_EVERY {
            return Ok(());
        }
        self.last_commit = Instant::now();
        let parts: Vec<_> = next
            .iter()
            .filter(|(p, _)| self.assigned.contains(p))
            .map(|(p, o)| {
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
            })
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        let r = c.send(
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_generation_id_or_member_epoch(self.generation)
                .with_member_id(s(&self.member_id))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(&self.topic)))
                        .with_partitions(parts),
                ]),
        )?;
        for t in &r.topics {
            for p in &t.partitions {
                // A rebalance started: the next owner resumes from the last good commit.
                if p.error_code == ErrorCode::RebalanceInProgress.code()
                    || p.error_code == ErrorCode::IllegalGeneration.code()
                {
                    continue;
                }
                check(
                    format!("commit for group {}", self.group),
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Leaves the group so the others take over at once.
    pub fn leave(&self, c: &mut Client) -> Result<(), CliError> {
        // v0-2 name the member in member_id, v3+ in the members list.
        let request = if c.version(ApiKey::LeaveGroup)? >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(s(&self.member_id))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_member_id(s(&self.member_id))
        };
        let r = c.send(&request);
        // A member already gone is fine.
        match r {
            Ok(_) | Err(CliError::Kafka { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignor_gives_contiguous_ranges_extra_to_the_first() {
        let members = vec!["c".to_string(), "a".to_string(), "b".to_string()];
        let plan = range_assign(&members, &[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(plan["a"], vec![0, 1, 2]);
        assert_eq!(plan["b"], vec![3, 4]);
        assert_eq!(plan["c"], vec![5, 6]);
        assert!(range_assign(&[], &[0]).is_empty());
    }

    #[test]
    fn embedded_protocol_round_trips() {
        let sub = subscription("t");
        assert_eq!(subscribed_topics(&sub), vec!["t".to_string()]);
        let a = assignment("t", &[2, 5]);
        assert_eq!(assigned_partitions(&a, "t"), vec![2, 5]);
    }
}
