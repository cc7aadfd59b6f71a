//! What the coordinator writes to `__consumer_offsets`: the records it keeps (written in
//! Kafka's formats by [`super::wire`]), and which partition of the topic holds a group. The
//! KIP-848 state machine knows nothing of storage, so its members and changes are turned
//! into records here.
//!
//! Rill before Kafka's formats wrote these records as rkyv values under text keys; the rkyv
//! layout stays so that such partitions are still read (and rewritten, see `log.rs`).

use std::time::Instant;

use rkyv::{Archive, Deserialize, Serialize};
use uuid::Uuid;

use super::consumer as cg;

/// The `__consumer_offsets` partition of `group`: `abs(hashCode) % partitions`, as Kafka.
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

/// What the coordinator writes to its partition.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum StoredRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
        leader_epoch: i32,
        metadata: String,
        commit_ms: i64,
    },
    OffsetDeleted {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
        protocol_type: String,
        protocol: String,
        generation: i32,
        leader: String,
        /// (member id, instance id, client id, host, session ms, rebalance ms, metadata,
        /// assignment)
        members: Vec<StoredMember>,
    },
    GroupDeleted {
        group: String,
    },
    // KIP-848 groups. Payloads sit behind a Box so the archived enum keeps its size (records
    // already on disk are read at `len - size_of::<ArchivedStoredRecord>()`).
    ConsumerGroup {
        group: String,
        meta: Box<StoredConsumerGroup>,
    },
    ConsumerMember {
        group: String,
        member: Box<StoredConsumerMember>,
    },
    ConsumerMemberRemoved {
        group: String,
        member_id: String,
    },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StoredConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    /// The subscribed topics the target assignment was computed from (name, id,
    /// partitions), so a restart does not look like a metadata change.
    pub topics: Vec<(String, [u8; 16], i32)>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StoredPartitions {
    pub topic_id: [u8; 16],
    pub partitions: Vec<i32>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StoredConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: u8,
    pub assigned: Vec<StoredPartitions>,
    pub pending_revocation: Vec<StoredPartitions>,
    pub target: Vec<StoredPartitions>,
}

fn stored_partitions(a: &cg::Assignment) -> Vec<StoredPartitions> {
    a.iter()
        .map(|(t, ps)| StoredPartitions {
            topic_id: *t.as_bytes(),
            partitions: ps.iter().copied().collect(),
        })
        .collect()
}

fn from_stored(a: &[StoredPartitions]) -> cg::Assignment {
    a.iter()
        .map(|s| {
            (
                Uuid::from_bytes(s.topic_id),
                s.partitions.iter().copied().collect(),
            )
        })
        .collect()
}

impl StoredConsumerMember {
    pub fn of(m: &cg::Member) -> StoredConsumerMember {
        StoredConsumerMember {
            member_id: m.id.clone(),
            instance_id: m.instance_id.clone(),
            rack_id: m.rack_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            topics: m.topics.clone(),
            regex: m.regex.clone(),
            assignor: m.assignor.clone(),
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            epoch: m.epoch,
            previous_epoch: m.previous_epoch,
            state: m.state.code(),
            assigned: stored_partitions(&m.assigned),
            pending_revocation: stored_partitions(&m.pending_revocation),
            target: stored_partitions(&m.target),
        }
    }

    pub fn restore(self, now: Instant) -> cg::Member {
        cg::Member::restored(
            self.member_id,
            self.instance_id,
            self.rack_id,
            self.client_id,
            self.client_host,
            self.topics,
            self.regex,
            self.assignor,
            self.rebalance_timeout_ms,
            (self.epoch, self.previous_epoch),
            cg::MemberState::from_code(self.state),
            from_stored(&self.assigned),
            from_stored(&self.pending_revocation),
            from_stored(&self.target),
            now,
        )
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

impl StoredRecord {
    pub fn group(&self) -> &str {
        match self {
            StoredRecord::Offset { group, .. }
            | StoredRecord::OffsetDeleted { group, .. }
            | StoredRecord::Group { group, .. }
            | StoredRecord::GroupDeleted { group }
            | StoredRecord::ConsumerGroup { group, .. }
            | StoredRecord::ConsumerMember { group, .. }
            | StoredRecord::ConsumerMemberRemoved { group, .. } => group,
        }
    }

    /// The text key Rill wrote before Kafka's formats.
    #[cfg(test)]
    pub fn legacy_key(&self) -> String {
        match self {
            StoredRecord::Offset {
                group,
                topic,
                partition,
                ..
            }
            | StoredRecord::OffsetDeleted {
                group,
                topic,
                partition,
            } => format!("offset\0{group}\0{topic}\0{partition}"),
            StoredRecord::Group { group, .. } | StoredRecord::GroupDeleted { group } => {
                format!("group\0{group}")
            }
            StoredRecord::ConsumerGroup { group, .. } => format!("cgroup\0{group}"),
            StoredRecord::ConsumerMember { group, member } => {
                format!("cmember\0{group}\0{}", member.member_id)
            }
            StoredRecord::ConsumerMemberRemoved { group, member_id } => {
                format!("cmember\0{group}\0{member_id}")
            }
        }
    }

    /// The rkyv value Rill wrote before Kafka's formats.
    #[cfg(test)]
    pub fn legacy_encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(
            rkyv::to_bytes::<rkyv::rancor::Error>(self)
                .expect("serializing a group record into memory cannot fail")
                .to_vec(),
        )
    }

    /// Reads a value Rill wrote before Kafka's formats.
    pub fn decode(value: &[u8]) -> Result<StoredRecord, String> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(value.len());
        aligned.extend_from_slice(value);
        rkyv::from_bytes::<StoredRecord, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
    }
}

/// The records that make `changes` durable.
pub fn consumer_records(
    group: &str,
    c: &cg::ConsumerGroup,
    changes: &cg::Changes,
) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    for id in &changes.removed {
        out.push(StoredRecord::ConsumerMemberRemoved {
            group: group.to_string(),
            member_id: id.clone(),
        });
    }
    for id in &changes.members {
        if let Some(m) = c.members.get(id) {
            out.push(StoredRecord::ConsumerMember {
                group: group.to_string(),
                member: Box::new(StoredConsumerMember::of(m)),
            });
        }
    }
    if changes.group {
        out.push(StoredRecord::ConsumerGroup {
            group: group.to_string(),
            meta: Box::new(StoredConsumerGroup {
                epoch: c.epoch,
                assignment_epoch: c.assignment_epoch,
                assignor: c.assignor.clone(),
                topics: c
                    .topics_seen
                    .iter()
                    .map(|(n, t)| (n.clone(), *t.id.as_bytes(), t.partitions))
                    .collect(),
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_kafkas_hashing() {
        // Java: "my-group".hashCode() == -1906497762; Kafka masks the sign bit: % 50 == 36.
        assert_eq!(offsets_partition("my-group", 50), 36);
        // A negative hashCode is masked, not negated.
        let h = "polygenelubricants"
            .encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(h, i32::MIN);
        assert_eq!(offsets_partition("polygenelubricants", 50), 0);
        assert_eq!(offsets_partition("", 50), 0);
    }

    #[test]
    fn stored_records_round_trip() {
        let r = StoredRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            offset: 42,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_ms: 1,
        };
        assert_eq!(StoredRecord::decode(&r.legacy_encode()).unwrap(), r);
        assert_ne!(
            r.legacy_key(),
            StoredRecord::GroupDeleted { group: "g".into() }.legacy_key()
        );
        let m = StoredRecord::ConsumerMember {
            group: "g".into(),
            member: Box::new(StoredConsumerMember {
                member_id: "m".into(),
                instance_id: Some("i".into()),
                rack_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                topics: vec!["t".into()],
                regex: None,
                assignor: Some("range".into()),
                rebalance_timeout_ms: 300_000,
                epoch: 4,
                previous_epoch: 3,
                state: 1,
                assigned: vec![StoredPartitions {
                    topic_id: [7; 16],
                    partitions: vec![0, 2],
                }],
                pending_revocation: vec![],
                target: vec![],
            }),
        };
        assert_eq!(StoredRecord::decode(&m.legacy_encode()).unwrap(), m);
        let removed = StoredRecord::ConsumerMemberRemoved {
            group: "g".into(),
            member_id: "m".into(),
        };
        assert_eq!(
            m.legacy_key(),
            removed.legacy_key(),
            "a removal must replace the member"
        );
    }

    #[test]
    fn archived_record_size_is_unchanged() {
        // Records already in __consumer_offsets are read at `len - size_of::<Archived>()`:
        // a new variant that grew the archived enum would make every old record unreadable.
        // Put new payloads behind a Box instead of changing this number.
        assert_eq!(std::mem::size_of::<ArchivedStoredRecord>(), 56);
    }
}
