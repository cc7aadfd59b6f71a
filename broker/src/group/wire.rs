//! Apache Kafka's own key and value formats for `__consumer_offsets` (the group
//! coordinator's record schemas), so that tools reading the topic directly understand it:
//! `kafka-console-consumer --formatter org.apache.kafka.tools.consumer.OffsetsMessageFormatter`
//! (and `GroupMetadataMessageFormatter`), Burrow, Cruise Control, lag exporters.
//!
//! Every key starts with its record type as an `int16` (Kafka calls it the key version);
//! every value with its own version. A deletion is the key with a null value (a tombstone),
//! which is what lets the log cleaner compact the topic: the latest record of every key is
//! the state of that key. One logical [`StoredRecord`] of the coordinator becomes one or
//! more of these records (a KIP-848 member is three: its metadata, current assignment and
//! target assignment, as in Kafka).
//!
//! Rill-only data travels in tagged fields numbered from 10000, which Kafka's readers skip.

use bytes::{BufMut, Bytes, BytesMut};

use crate::coordinator_wire::{Res, R, W};

use super::records::{StoredConsumerMember, StoredMember, StoredPartitions, StoredRecord};

/// Key types (Kafka's key versions).
pub const OFFSET_COMMIT_KEY: i16 = 1;
pub const GROUP_METADATA_KEY: i16 = 2;
pub const CONSUMER_GROUP_METADATA_KEY: i16 = 3;
pub const CONSUMER_GROUP_PARTITION_METADATA_KEY: i16 = 4;
pub const CONSUMER_GROUP_MEMBER_METADATA_KEY: i16 = 5;
pub const CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY: i16 = 6;
pub const CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY: i16 = 7;
pub const CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY: i16 = 8;

/// Value versions written: the newest non-flexible ones for offsets and classic groups (what
/// Kafka writes, and what every reader of the topic knows), 0 for the KIP-848 records.
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// Rill's tag in ConsumerGroupMetadataValue: the group's server-side assignor.
const TAG_ASSIGNOR: u32 = 10_000;

/// A record of the topic: its key and, unless it is a tombstone, its value.
pub type KeyValue = (Bytes, Option<Bytes>);

/// One record of `__consumer_offsets` as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    /// A record that is one of the coordinator's whole: an offset or a classic group, or
    /// the deletion of either (a tombstone of their key).
    Stored(StoredRecord),
    ConsumerGroup {
        group: String,
        /// (epoch, assignor)
        value: Option<(i32, String)>,
    },
    ConsumerGroupTopics {
        group: String,
        value: Option<Vec<(String, [u8; 16], i32)>>,
    },
    ConsumerGroupAssignmentEpoch {
        group: String,
        value: Option<i32>,
    },
    MemberMetadata {
        group: String,
        member: String,
        value: Option<MemberMetadata>,
    },
    MemberTarget {
        group: String,
        member: String,
        value: Option<Vec<StoredPartitions>>,
    },
    MemberCurrent {
        group: String,
        member: String,
        value: Option<MemberCurrent>,
    },
    /// A record type Rill does not keep (share and streams groups): skipped.
    Other {
        key_type: i16,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub assignor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberCurrent {
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: u8,
    pub assigned: Vec<StoredPartitions>,
    pub pending_revocation: Vec<StoredPartitions>,
}

/// The member the three KIP-848 member records describe, once all of them are read (a
/// missing assignment is an empty one).
pub fn member_of(
    id: String,
    meta: MemberMetadata,
    current: Option<MemberCurrent>,
    target: Option<Vec<StoredPartitions>>,
) -> StoredConsumerMember {
    let current = current.unwrap_or(MemberCurrent {
        epoch: 0,
        previous_epoch: 0,
        state: 0,
        assigned: Vec::new(),
        pending_revocation: Vec::new(),
    });
    StoredConsumerMember {
        member_id: id,
        instance_id: meta.instance_id,
        rack_id: meta.rack_id,
        client_id: meta.client_id,
        client_host: meta.client_host,
        topics: meta.topics,
        regex: meta.regex,
        assignor: meta.assignor,
        rebalance_timeout_ms: meta.rebalance_timeout_ms,
        epoch: current.epoch,
        previous_epoch: current.previous_epoch,
        state: current.state,
        assigned: current.assigned,
        pending_revocation: current.pending_revocation,
        target: target.unwrap_or_default(),
    }
}

// ---- encoding ----

/// `__consumer_offsets`' lists of topic ids with partitions.
trait WriteTopicPartitions {
    fn topic_partitions(&mut self, v: &[StoredPartitions]) -> &mut Self;
}

impl WriteTopicPartitions for W {
    fn topic_partitions(&mut self, v: &[StoredPartitions]) -> &mut Self {
        self.clen(v.len());
        for tp in v {
            self.uuid(&tp.topic_id).clen(tp.partitions.len());
            for p in &tp.partitions {
                self.i32(*p);
            }
            self.no_tags();
        }
        self
    }
}

fn key(key_type: i16, f: impl FnOnce(&mut W)) -> Bytes {
    let mut w = W::new(key_type);
    f(&mut w);
    w.done()
}

fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    key(OFFSET_COMMIT_KEY, |w| {
        w.str(group).str(topic).i32(partition);
    })
}

fn group_key(key_type: i16, group: &str) -> Bytes {
    key(key_type, |w| {
        w.str(group);
    })
}

fn member_key(key_type: i16, group: &str, member: &str) -> Bytes {
    key(key_type, |w| {
        w.str(group).str(member);
    })
}

/// The records of `__consumer_offsets` that make `r` durable, in Kafka's formats.
pub fn encode(r: &StoredRecord, now_ms: i64) -> Vec<KeyValue> {
    match r {
        StoredRecord::Offset {
            group,
            topic,
            partition,
            offset,
            leader_epoch,
            metadata,
            commit_ms,
        } => {
            let mut v = W::new(OFFSET_COMMIT_VALUE_VERSION);
            v.i64(*offset)
                .i32(*leader_epoch)
                .str(metadata)
                .i64(*commit_ms);
            vec![(offset_key(group, topic, *partition), Some(v.done()))]
        }
        StoredRecord::OffsetDeleted {
            group,
            topic,
            partition,
        } => vec![(offset_key(group, topic, *partition), None)],
        StoredRecord::Group {
            group,
            protocol_type,
            protocol,
            generation,
            leader,
            members,
        } => {
            let mut v = W::new(GROUP_METADATA_VALUE_VERSION);
            v.str(protocol_type)
                .i32(*generation)
                .nullable_str((!protocol.is_empty()).then_some(protocol.as_str()))
                .nullable_str((!leader.is_empty()).then_some(leader.as_str()))
                .i64(now_ms)
                .i32(members.len() as i32);
            for m in members {
                v.str(&m.member_id)
                    .nullable_str(m.instance_id.as_deref())
                    .str(&m.client_id)
                    .str(&m.client_host)
                    .i32(m.rebalance_timeout_ms)
                    .i32(m.session_timeout_ms)
                    .bytes(&m.metadata)
                    .bytes(&m.assignment);
            }
            vec![(group_key(GROUP_METADATA_KEY, group), Some(v.done()))]
        }
        // A deleted group: every group-level key (its offsets are deleted one by one by the
        // caller, its KIP-848 members were removed before it could be deleted).
        StoredRecord::GroupDeleted { group } => [
            GROUP_METADATA_KEY,
            CONSUMER_GROUP_METADATA_KEY,
            CONSUMER_GROUP_PARTITION_METADATA_KEY,
            CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY,
        ]
        .into_iter()
        .map(|t| (group_key(t, group), None))
        .collect(),
        StoredRecord::ConsumerGroup { group, meta } => {
            let mut epoch = W::new(0);
            epoch.i32(meta.epoch);
            // One tagged field: the assignor.
            let mut tag = W(BytesMut::new());
            tag.cstr(&meta.assignor);
            epoch
                .uvarint(1)
                .uvarint(TAG_ASSIGNOR as u64)
                .uvarint(tag.0.len() as u64);
            epoch.0.put_slice(&tag.0);

            let mut topics = W::new(0);
            topics.clen(meta.topics.len());
            for (name, id, partitions) in &meta.topics {
                topics
                    .uuid(id)
                    .cstr(name)
                    .i32(*partitions)
                    .clen(0) // PartitionMetadata (racks): unused since Kafka 4.0
                    .no_tags();
            }
            topics.no_tags();

            let mut assignment = W::new(0);
            assignment.i32(meta.assignment_epoch).no_tags();
            vec![
                (
                    group_key(CONSUMER_GROUP_METADATA_KEY, group),
                    Some(epoch.done()),
                ),
                (
                    group_key(CONSUMER_GROUP_PARTITION_METADATA_KEY, group),
                    Some(topics.done()),
                ),
                (
                    group_key(CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY, group),
                    Some(assignment.done()),
                ),
            ]
        }
        StoredRecord::ConsumerMember { group, member } => {
            let m = member;
            let mut meta = W::new(0);
            meta.nullable_cstr(m.instance_id.as_deref())
                .nullable_cstr(m.rack_id.as_deref())
                .cstr(&m.client_id)
                .cstr(&m.client_host)
                .clen(m.topics.len());
            for t in &m.topics {
                meta.cstr(t);
            }
            meta.nullable_cstr(m.regex.as_deref())
                .i32(m.rebalance_timeout_ms)
                .nullable_cstr(m.assignor.as_deref())
                .no_tags();

            let mut current = W::new(0);
            current
                .i32(m.epoch)
                .i32(m.previous_epoch)
                .i8(m.state)
                .topic_partitions(&m.assigned)
                .topic_partitions(&m.pending_revocation)
                .no_tags();

            let mut target = W::new(0);
            target.topic_partitions(&m.target).no_tags();
            let id = &m.member_id;
            vec![
                (
                    member_key(CONSUMER_GROUP_MEMBER_METADATA_KEY, group, id),
                    Some(meta.done()),
                ),
                (
                    member_key(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY, group, id),
                    Some(target.done()),
                ),
                (
                    member_key(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY, group, id),
                    Some(current.done()),
                ),
            ]
        }
        StoredRecord::ConsumerMemberRemoved { group, member_id } => [
            CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY,
            CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY,
            CONSUMER_GROUP_MEMBER_METADATA_KEY,
        ]
        .into_iter()
        .map(|t| (member_key(t, group, member_id), None))
        .collect(),
    }
}

// ---- decoding ----

trait ReadTopicPartitions {
    fn topic_partitions(&mut self) -> Res<Vec<StoredPartitions>>;
}

impl ReadTopicPartitions for R<'_> {
    fn topic_partitions(&mut self) -> Res<Vec<StoredPartitions>> {
        let n = self.clen()?.unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let topic_id = self.uuid()?;
            let count = self.clen()?.unwrap_or(0);
            let mut partitions = Vec::with_capacity(count);
            for _ in 0..count {
                partitions.push(self.i32()?);
            }
            self.skip_tags()?;
            out.push(StoredPartitions {
                topic_id,
                partitions,
            });
        }
        Ok(out)
    }
}

/// Whether `key` is in Kafka's format (Rill before these formats wrote text keys, which
/// start with a letter, so their first two bytes read as a large key type).
pub fn is_kafka_key(key: &[u8]) -> bool {
    key.len() >= 2 && i16::from_be_bytes([key[0], key[1]]) < 0x100
}

/// Reads one record of the topic.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Res<LogRecord> {
    let mut k = R {
        b: key,
        what: "a group record key",
    };
    let key_type = k.i16()?;
    let mut v = value.map(|b| R {
        b,
        what: "a group record value",
    });
    // The value's version (0 for every KIP-848 record Kafka writes today).
    let version = match v.as_mut() {
        Some(v) => Some(v.i16()?),
        None => None,
    };
    Ok(match key_type {
        0 | OFFSET_COMMIT_KEY => {
            let group = k.str()?;
            let topic = k.str()?;
            let partition = k.i32()?;
            LogRecord::Stored(match (v.as_mut(), version) {
                (Some(v), Some(version)) => StoredRecord::Offset {
                    group,
                    topic,
                    partition,
                    offset: v.i64()?,
                    leader_epoch: if version >= 3 { v.i32()? } else { -1 },
                    metadata: v.str()?,
                    commit_ms: v.i64()?,
                },
                _ => StoredRecord::OffsetDeleted {
                    group,
                    topic,
                    partition,
                },
            })
        }
        GROUP_METADATA_KEY => {
            let group = k.str()?;
            LogRecord::Stored(match (v.as_mut(), version) {
                (Some(v), Some(version)) => {
                    if version >= 4 {
                        return Err(format!(
                            "group {group}: GroupMetadataValue version {version} is not read by this broker"
                        ));
                    }
                    let protocol_type = v.str()?;
                    let generation = v.i32()?;
                    let protocol = v.nullable_str()?.unwrap_or_default();
                    let leader = v.nullable_str()?.unwrap_or_default();
                    if version >= 2 {
                        v.i64()?; // currentStateTimestamp
                    }
                    let count = v.i32()?.max(0) as usize;
                    let mut members = Vec::with_capacity(count.min(1024));
                    for _ in 0..count {
                        let member_id = v.str()?;
                        let instance_id = if version >= 3 {
                            v.nullable_str()?
                        } else {
                            None
                        };
                        let client_id = v.str()?;
                        let client_host = v.str()?;
                        let rebalance_timeout_ms = if version >= 1 { v.i32()? } else { -1 };
                        let session_timeout_ms = v.i32()?;
                        let metadata = v.bytes()?;
                        let assignment = v.bytes()?;
                        members.push(StoredMember {
                            member_id,
                            instance_id,
                            client_id,
                            client_host,
                            session_timeout_ms,
                            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                                session_timeout_ms
                            } else {
                                rebalance_timeout_ms
                            },
                            metadata,
                            assignment,
                        });
                    }
                    StoredRecord::Group {
                        group,
                        protocol_type,
                        protocol,
                        generation,
                        leader,
                        members,
                    }
                }
                _ => StoredRecord::GroupDeleted { group },
            })
        }
        CONSUMER_GROUP_METADATA_KEY => {
            let group = k.str()?;
            let value = match v.as_mut() {
                Some(v) => {
                    let epoch = v.i32()?;
                    let mut assignor = String::new();
                    v.tags(|tag, data| {
                        if tag == TAG_ASSIGNOR {
                            let mut r = R {
                                b: data,
                                what: "the group's assignor",
                            };
                            assignor = r.cstr()?;
                        }
                        Ok(())
                    })?;
                    Some((epoch, assignor))
                }
                None => None,
            };
            LogRecord::ConsumerGroup { group, value }
        }
        CONSUMER_GROUP_PARTITION_METADATA_KEY => {
            let group = k.str()?;
            let value = match v.as_mut() {
                Some(v) => {
                    let n = v.clen()?.unwrap_or(0);
                    let mut topics = Vec::with_capacity(n);
                    for _ in 0..n {
                        let id = v.uuid()?;
                        let name = v.cstr()?;
                        let partitions = v.i32()?;
                        let racks = v.clen()?.unwrap_or(0);
                        for _ in 0..racks {
                            v.i32()?;
                            let count = v.clen()?.unwrap_or(0);
                            for _ in 0..count {
                                v.cstr()?;
                            }
                            v.skip_tags()?;
                        }
                        v.skip_tags()?;
                        topics.push((name, id, partitions));
                    }
                    Some(topics)
                }
                None => None,
            };
            LogRecord::ConsumerGroupTopics { group, value }
        }
        CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY => {
            let group = k.str()?;
            let value = v.as_mut().map(|v| v.i32()).transpose()?;
            LogRecord::ConsumerGroupAssignmentEpoch { group, value }
        }
        CONSUMER_GROUP_MEMBER_METADATA_KEY => {
            let group = k.str()?;
            let member = k.str()?;
            let value = match v.as_mut() {
                Some(v) => {
                    let instance_id = v.nullable_cstr()?;
                    let rack_id = v.nullable_cstr()?;
                    let client_id = v.cstr()?;
                    let client_host = v.cstr()?;
                    let n = v.clen()?.unwrap_or(0);
                    let mut topics = Vec::with_capacity(n);
                    for _ in 0..n {
                        topics.push(v.cstr()?);
                    }
                    let regex = v.nullable_cstr()?;
                    let rebalance_timeout_ms = v.i32()?;
                    let assignor = v.nullable_cstr()?;
                    Some(MemberMetadata {
                        instance_id,
                        rack_id,
                        client_id,
                        client_host,
                        topics,
                        regex,
                        rebalance_timeout_ms,
                        assignor,
                    })
                }
                None => None,
            };
            LogRecord::MemberMetadata {
                group,
                member,
                value,
            }
        }
        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY => {
            let group = k.str()?;
            let member = k.str()?;
            let value = v.as_mut().map(|v| v.topic_partitions()).transpose()?;
            LogRecord::MemberTarget {
                group,
                member,
                value,
            }
        }
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY => {
            let group = k.str()?;
            let member = k.str()?;
            let value = match v.as_mut() {
                Some(v) => Some(MemberCurrent {
                    epoch: v.i32()?,
                    previous_epoch: v.i32()?,
                    state: v.i8()?,
                    assigned: v.topic_partitions()?,
                    pending_revocation: v.topic_partitions()?,
                }),
                None => None,
            };
            LogRecord::MemberCurrent {
                group,
                member,
                value,
            }
        }
        other => LogRecord::Other { key_type: other },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::StoredConsumerGroup;

    fn one(r: &StoredRecord) -> LogRecord {
        let kvs = encode(r, 7);
        assert_eq!(kvs.len(), 1);
        decode(&kvs[0].0, kvs[0].1.as_deref()).unwrap()
    }

    #[test]
    fn offset_commit_bytes_are_kafkas() {
        let r = StoredRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            offset: 42,
            leader_epoch: 5,
            metadata: "m".into(),
            commit_ms: 1000,
        };
        let kvs = encode(&r, 0);
        // OffsetCommitKey v1: int16 type, group, topic (int16-length strings), int32 partition.
        assert_eq!(
            kvs[0].0.as_ref(),
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3][..]
        );
        // OffsetCommitValue v3: offset, leader epoch, metadata, commit timestamp.
        let mut want = vec![0, 3];
        want.extend_from_slice(&42i64.to_be_bytes());
        want.extend_from_slice(&5i32.to_be_bytes());
        want.extend_from_slice(&[0, 1, b'm']);
        want.extend_from_slice(&1000i64.to_be_bytes());
        assert_eq!(kvs[0].1.as_deref(), Some(&want[..]));
        assert_eq!(one(&r), LogRecord::Stored(r.clone()));
        let del = StoredRecord::OffsetDeleted {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        let kvs_del = encode(&del, 0);
        assert_eq!(kvs_del[0].0, kvs[0].0, "a deletion is the same key");
        assert_eq!(kvs_del[0].1, None, "with a null value");
    }

    #[test]
    fn classic_group_round_trips() {
        let members = vec![StoredMember {
            member_id: "m-1".into(),
            instance_id: Some("i".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            metadata: vec![1, 2, 3],
            assignment: vec![4],
        }];
        let r = StoredRecord::Group {
            group: "g".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            generation: 4,
            leader: "m-1".into(),
            members,
        };
        assert_eq!(one(&r), LogRecord::Stored(r.clone()));
        let empty = StoredRecord::Group {
            group: "g".into(),
            protocol_type: "consumer".into(),
            protocol: String::new(),
            generation: 5,
            leader: String::new(),
            members: vec![],
        };
        let kvs = encode(&empty, 0);
        // Kafka writes a null protocol and leader for an empty group.
        let v = kvs[0].1.as_ref().unwrap();
        assert_eq!(&v[..2], &[0, 3]);
        assert_eq!(
            &v[2 + 2 + 8 + 4..2 + 2 + 8 + 4 + 4],
            &[0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn consumer_group_records_round_trip() {
        let meta = StoredConsumerGroup {
            epoch: 9,
            assignment_epoch: 8,
            assignor: "uniform".into(),
            topics: vec![("t".into(), [3; 16], 6)],
        };
        let kvs = encode(
            &StoredRecord::ConsumerGroup {
                group: "g".into(),
                meta: Box::new(meta),
            },
            0,
        );
        let got: Vec<LogRecord> = kvs
            .iter()
            .map(|(k, v)| decode(k, v.as_deref()).unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                LogRecord::ConsumerGroup {
                    group: "g".into(),
                    value: Some((9, "uniform".into()))
                },
                LogRecord::ConsumerGroupTopics {
                    group: "g".into(),
                    value: Some(vec![("t".into(), [3; 16], 6)])
                },
                LogRecord::ConsumerGroupAssignmentEpoch {
                    group: "g".into(),
                    value: Some(8)
                },
            ]
        );
        let member = StoredConsumerMember {
            member_id: "m".into(),
            instance_id: None,
            rack_id: Some("r".into()),
            client_id: "c".into(),
            client_host: "/h".into(),
            topics: vec!["t".into(), "u".into()],
            regex: None,
            assignor: Some("range".into()),
            rebalance_timeout_ms: 300_000,
            epoch: 9,
            previous_epoch: 8,
            state: 1,
            assigned: vec![StoredPartitions {
                topic_id: [3; 16],
                partitions: vec![0, 2],
            }],
            pending_revocation: vec![StoredPartitions {
                topic_id: [3; 16],
                partitions: vec![4],
            }],
            target: vec![StoredPartitions {
                topic_id: [3; 16],
                partitions: vec![0, 2, 5],
            }],
        };
        let kvs = encode(
            &StoredRecord::ConsumerMember {
                group: "g".into(),
                member: Box::new(member.clone()),
            },
            0,
        );
        let (mut meta, mut current, mut target) = (None, None, None);
        for (k, v) in &kvs {
            match decode(k, v.as_deref()).unwrap() {
                LogRecord::MemberMetadata { value, .. } => meta = value,
                LogRecord::MemberCurrent { value, .. } => current = value,
                LogRecord::MemberTarget { value, .. } => target = value,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            member_of("m".into(), meta.unwrap(), current, target),
            member
        );
        let removed = encode(
            &StoredRecord::ConsumerMemberRemoved {
                group: "g".into(),
                member_id: "m".into(),
            },
            0,
        );
        let mut keys: Vec<&Bytes> = kvs.iter().map(|(k, _)| k).collect();
        let mut removed_keys: Vec<&Bytes> = removed.iter().map(|(k, _)| k).collect();
        keys.sort();
        removed_keys.sort();
        assert_eq!(
            keys, removed_keys,
            "a removal deletes each of the member's keys"
        );
        assert!(removed.iter().all(|(_, v)| v.is_none()));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let r = StoredRecord::Group {
            group: "g".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            generation: 4,
            leader: "m".into(),
            members: vec![],
        };
        let (k, v) = encode(&r, 0).remove(0);
        let v = v.unwrap();
        for cut in 0..v.len() {
            assert!(decode(&k, Some(&v[..cut])).is_err(), "cut at {cut}");
        }
        for cut in 0..k.len() {
            assert!(decode(&k[..cut], None).is_err(), "key cut at {cut}");
        }
        assert!(is_kafka_key(&k));
        assert!(!is_kafka_key(b"offset\0g\0t\x003"));
    }
}
