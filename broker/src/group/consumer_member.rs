//! One member of a KIP-848 consumer group: who it is, what it subscribes to (topic names,
//! or a regex compiled once), and where it is on its way to its target assignment. The
//! group that moves it along is in [`super::consumer`].

use std::time::Instant;

use super::assignors::Assignment;

/// Longest subscription regex accepted, in bytes.
const REGEX_BYTES_MAX: usize = 1024;

/// Where a member is on its way to the target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// At the target epoch, owning all its target partitions.
    Stable,
    /// Must give up `pending_revocation` before it can move on.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn code(self) -> u8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    pub fn from_code(code: u8) -> MemberState {
        match code {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

/// One member of a consumer group.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Subscribed topic names, sorted.
    pub topics: Vec<String>,
    /// Subscription regex (full match against topic names), if any.
    pub regex: Option<String>,
    compiled: Option<regex::Regex>,
    /// The assignor this member asked for, if any.
    pub assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    /// This member's share of the target assignment.
    pub target: Assignment,
    pub last_heartbeat: Instant,
    /// When the member was asked to revoke partitions it has not given up yet.
    pub revoking_since: Option<Instant>,
}

impl Member {
    pub(super) fn new(id: &str, now: Instant) -> Member {
        Member {
            id: id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            topics: Vec::new(),
            regex: None,
            compiled: None,
            assignor: None,
            rebalance_timeout_ms: 0,
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            target: Assignment::new(),
            last_heartbeat: now,
            revoking_since: None,
        }
    }

    /// Sets the subscription regex, compiled for a full match as Kafka (RE2/J `matches`).
    pub fn set_regex(&mut self, regex: Option<String>) -> Result<(), String> {
        self.compiled = match &regex {
            None => None,
            Some(r) if r.len() > REGEX_BYTES_MAX => {
                return Err(format!(
                    "the subscription regex is {} bytes, over the {REGEX_BYTES_MAX}-byte limit",
                    r.len()
                ))
            }
            Some(r) => Some(
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| format!("invalid subscription regex {r:?}: {e}"))?,
            ),
        };
        self.regex = regex;
        Ok(())
    }

    /// Whether this member subscribes to `topic` (by name or regex; internal topics only by
    /// name).
    pub fn subscribes(&self, topic: &str) -> bool {
        self.topics
            .binary_search_by(|t| t.as_str().cmp(topic))
            .is_ok()
            || (!topic.starts_with("__")
                && self.compiled.as_ref().is_some_and(|r| r.is_match(topic)))
    }

    /// The subscription regex as compiled, if any.
    pub(super) fn compiled_regex(&self) -> Option<&regex::Regex> {
        self.compiled.as_ref()
    }

    /// A member as it was stored, for the coordinator's replay (the group restores it with
    /// [`super::consumer::ConsumerGroup::restore_member`]).
    #[allow(clippy::too_many_arguments)]
    pub fn restored(
        id: String,
        instance_id: Option<String>,
        rack_id: Option<String>,
        client_id: String,
        client_host: String,
        topics: Vec<String>,
        regex: Option<String>,
        assignor: Option<String>,
        rebalance_timeout_ms: i32,
        epochs: (i32, i32),
        state: MemberState,
        assigned: Assignment,
        pending_revocation: Assignment,
        target: Assignment,
        now: Instant,
    ) -> Member {
        let mut m = Member::new(&id, now);
        m.instance_id = instance_id;
        m.rack_id = rack_id;
        m.client_id = client_id;
        m.client_host = client_host;
        m.topics = topics;
        m.regex = regex;
        m.assignor = assignor;
        m.rebalance_timeout_ms = rebalance_timeout_ms;
        (m.epoch, m.previous_epoch) = epochs;
        m.state = state;
        m.assigned = assigned;
        m.pending_revocation = pending_revocation;
        m.revoking_since = (state == MemberState::UnrevokedPartitions).then_some(now);
        m.target = target;
        m
    }
}

pub(super) fn sorted_topics(topics: &[String]) -> Vec<String> {
    let mut sorted = topics.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
}
