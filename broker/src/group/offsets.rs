//! Committed offsets: OffsetCommit, OffsetFetch and OffsetDelete on the coordinator shard,
//! and who may commit or fetch in a classic or KIP-848 group. Offsets are records in the
//! group's offsets partition; they take effect once durable ([`super::log`]).

use std::collections::HashSet;

use rill_net::kafka_protocol::messages::*;
use rill_net::ErrorCode;

use super::classic::{ClassicGroup, GroupState};
use super::consumer as cg;
use super::coordinator::{group_entry, Group, Groups};
use super::records::StoredRecord;
use crate::runtime;

/// Largest offset metadata string accepted (Kafka's `offset.metadata.max.bytes`).
const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Transactional offsets one shard keeps waiting for their transactions' end markers; a
/// TxnOffsetCommit beyond it is refused with COORDINATOR_NOT_AVAILABLE (and a warning).
pub(super) const TXN_OFFSETS_PENDING_PER_SHARD_MAX: usize = 1_000_000;

/// What OffsetFetch answers for one partition: (topic, partition, the committed offset or
/// the partition's error, UNSTABLE_OFFSET_COMMIT).
pub type FetchedOffset = (String, i32, Result<Committed, ErrorCode>);

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    /// Where in the offsets partition the record that committed it is (-1: unknown, a
    /// record in Rill's older format). A transaction's offset that commits later still
    /// takes effect only over one written before it (Kafka's `olderThan`).
    pub record_offset: i64,
}

/// One offset an OffsetCommit or TxnOffsetCommit asks for.
struct NewOffset<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&'a str>,
}

/// The records of the offsets a commit asks for, and the partitions refused because their
/// metadata is over `OFFSET_METADATA_BYTES_MAX`.
fn offset_records<'a>(
    group: &str,
    offsets: impl Iterator<Item = NewOffset<'a>>,
) -> (Vec<StoredRecord>, HashSet<(String, i32)>) {
    let now = runtime::now_ms();
    let mut records = Vec::new();
    let mut too_large = HashSet::new();
    for o in offsets {
        let metadata = o.metadata.unwrap_or("").to_string();
        if metadata.len() > OFFSET_METADATA_BYTES_MAX {
            too_large.insert((o.topic.to_string(), o.partition));
            continue;
        }
        records.push(StoredRecord::Offset {
            group: group.to_string(),
            topic: o.topic.to_string(),
            partition: o.partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata,
            commit_ms: now,
        });
    }
    (records, too_large)
}

/// Topics the members subscribe to, for OffsetDelete.
fn subscribed_topics(g: &Group) -> HashSet<String> {
    let Some(c) = &g.consumer else {
        return g.classic.subscribed_topics();
    };
    let mut out = HashSet::new();
    for m in c.members.values() {
        out.extend(m.topics.iter().cloned());
    }
    out.extend(c.topics_seen.keys().cloned());
    out
}

/// Kafka's check of a commit or offset fetch by a KIP-848 member: a standalone client
/// (no member id, negative epoch) only while the group is empty, a member only at its
/// current epoch.
fn check_consumer_member(
    c: &cg::ConsumerGroup,
    member_id: &str,
    epoch: i32,
    version: i16,
) -> Result<(), ErrorCode> {
    if member_id.is_empty() && epoch < 0 {
        return if c.members.is_empty() {
            Ok(())
        } else {
            Err(ErrorCode::UnknownMemberId)
        };
    }
    let Some(m) = c.members.get(member_id) else {
        return Err(ErrorCode::UnknownMemberId);
    };
    if m.epoch != epoch {
        return Err(if version >= 9 {
            ErrorCode::StaleMemberEpoch
        } else {
            ErrorCode::IllegalGeneration
        });
    }
    Ok(())
}

/// Who may commit to a classic group: a standalone client (a consumer using assign(), no
/// member id, negative generation) only while the group has no members, a member only in
/// its current generation.
fn check_classic_commit(
    g: &ClassicGroup,
    member_id: &str,
    generation: i32,
    instance: Option<&str>,
) -> Result<(), ErrorCode> {
    if generation < 0 && member_id.is_empty() {
        return if g.has_members() {
            Err(ErrorCode::UnknownMemberId)
        } else {
            Ok(())
        };
    }
    g.check_member(member_id, generation, instance)?;
    // Members of the current generation may still commit while the group prepares a
    // rebalance (consumers commit as they give up partitions); only the window between join
    // and sync is closed.
    if g.state() == GroupState::CompletingRebalance {
        return Err(ErrorCode::RebalanceInProgress);
    }
    Ok(())
}

impl Groups {
    /// OffsetCommit: the offsets are durable before the answer goes out.
    pub(super) async fn commit(
        &self,
        partition: i32,
        r: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
        let group_id = r.group_id.0.to_string();
        let member_id = r.member_id.to_string();
        let generation = r.generation_id_or_member_epoch;
        let respond = |codes: &dyn Fn(&str, i32) -> ErrorCode| {
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(
                                                codes(&t.name.0, p.partition_index).code(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        };
        let check = {
            let mut groups = self.state.groups.borrow_mut();
            let groups_max = self.config().limits.groups_per_shard_max;
            group_entry(&mut groups, &group_id, groups_max).and_then(|g| match &g.consumer {
                Some(c) => check_consumer_member(c, &member_id, generation, version),
                None => check_classic_commit(
                    &g.classic,
                    &member_id,
                    generation,
                    r.group_instance_id.as_deref(),
                ),
            })
        };
        if let Err(code) = check {
            return respond(&|_, _| code);
        }
        let (records, too_large) = offset_records(
            &group_id,
            r.topics.iter().flat_map(|t| {
                t.partitions.iter().map(|p| NewOffset {
                    topic: &t.name.0,
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_deref(),
                })
            }),
        );
        // The writer applies the offsets to the group once they are durable.
        let result = self.persist(partition, records).await;
        respond(&|topic, p| {
            if too_large.contains(&(topic.to_string(), p)) {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                result.err().unwrap_or(ErrorCode::None)
            }
        })
    }

    /// TxnOffsetCommit (the handler has the offsets partition joined to the transaction
    /// first): the offsets are written as the producer's transactional batch
    /// and take effect when its transaction commits. Members are checked as Kafka's
    /// `validateTransactionalOffsetCommit` does: a producer naming no member and no
    /// generation (v0-2, or a standalone consumer) is not checked.
    pub(super) async fn txn_commit(
        &self,
        partition: i32,
        r: TxnOffsetCommitRequest,
        _version: i16,
    ) -> TxnOffsetCommitResponse {
        use txn_offset_commit_response::{
            TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
        };
        let group_id = r.group_id.0.to_string();
        let member_id = r.member_id.to_string();
        let generation = r.generation_id;
        let respond = |codes: &dyn Fn(&str, i32) -> ErrorCode| {
            TxnOffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        TxnOffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        TxnOffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(
                                                codes(&t.name.0, p.partition_index).code(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        };
        let check = {
            let mut groups = self.state.groups.borrow_mut();
            let groups_max = self.config().limits.groups_per_shard_max;
            group_entry(&mut groups, &group_id, groups_max).and_then(|g| {
                if generation < 0 && member_id.is_empty() {
                    return Ok(());
                }
                match &g.consumer {
                    Some(c) => check_consumer_member(c, &member_id, generation, 9),
                    None => g.classic.check_member(
                        &member_id,
                        generation,
                        r.group_instance_id.as_deref(),
                    ),
                }
            })
        };
        if let Err(code) = check {
            return respond(&|_, _| code);
        }
        let pending: usize = self.state.pending_txn.borrow().values().map(Vec::len).sum();
        if pending >= TXN_OFFSETS_PENDING_PER_SHARD_MAX {
            tracing::warn!(group = %group_id, pending, limit = TXN_OFFSETS_PENDING_PER_SHARD_MAX,
                "refusing transactional offsets: too many wait for their transactions to end on this shard");
            return respond(&|_, _| ErrorCode::CoordinatorNotAvailable);
        }
        let (records, too_large) = offset_records(
            &group_id,
            r.topics.iter().flat_map(|t| {
                t.partitions.iter().map(|p| NewOffset {
                    topic: &t.name.0,
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_deref(),
                })
            }),
        );
        let txn = (r.producer_id.0, r.producer_epoch);
        let result = self.persist_txn(partition, records, txn).await;
        respond(&|topic, p| {
            if too_large.contains(&(topic.to_string(), p)) {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                result.err().unwrap_or(ErrorCode::None)
            }
        })
    }

    /// OffsetFetch of `topics` (None: every committed offset), by a KIP-848 `member` or
    /// anyone; with `require_stable`, a partition whose offset a transaction has not settled
    /// yet answers UNSTABLE_OFFSET_COMMIT.
    pub(super) fn fetch_offsets(
        &self,
        group: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        member: Option<(String, i32)>,
        require_stable: bool,
    ) -> Result<Vec<FetchedOffset>, ErrorCode> {
        let groups = self.state.groups.borrow();
        if let (Some((id, epoch)), Some(c)) =
            (&member, groups.get(group).and_then(|g| g.consumer.as_ref()))
        {
            check_consumer_member(c, id, *epoch, 9)?;
        }
        let unstable: HashSet<(String, i32)> = if require_stable {
            self.state
                .pending_txn
                .borrow()
                .values()
                .flatten()
                .filter_map(|(r, _)| match r {
                    StoredRecord::Offset {
                        group: g,
                        topic,
                        partition,
                        ..
                    } if g == group => Some((topic.clone(), *partition)),
                    _ => None,
                })
                .collect()
        } else {
            HashSet::new()
        };
        let none = Committed {
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            record_offset: -1,
        };
        let g = groups.get(group);
        let settled = |t: &str, p: i32, c: Committed| {
            if unstable.contains(&(t.to_string(), p)) {
                Err(ErrorCode::UnstableOffsetCommit)
            } else {
                Ok(c)
            }
        };
        Ok(match topics {
            None => g
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), c)| (t.clone(), *p, settled(t, *p, c.clone())))
                        .collect()
                })
                .unwrap_or_default(),
            Some(topics) => topics
                .into_iter()
                .flat_map(|(t, parts)| {
                    parts
                        .into_iter()
                        .map(|p| {
                            let c = g
                                .and_then(|g| g.offsets.get(&(t.clone(), p)).cloned())
                                .unwrap_or_else(|| none.clone());
                            (t.clone(), p, settled(&t, p, c))
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        })
    }

    /// OffsetDelete: offsets of topics no member subscribes to.
    pub(super) async fn offset_delete(
        &self,
        partition: i32,
        r: OffsetDeleteRequest,
    ) -> OffsetDeleteResponse {
        use offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
        let group = r.group_id.0.to_string();
        let subscribed = {
            let groups = self.state.groups.borrow();
            match groups.get(&group) {
                None => {
                    return OffsetDeleteResponse::default()
                        .with_error_code(ErrorCode::GroupIdNotFound.code())
                }
                Some(g) => subscribed_topics(g),
            }
        };
        let mut records = Vec::new();
        for t in &r.topics {
            if subscribed.contains(t.name.0.as_str()) {
                continue;
            }
            for p in &t.partitions {
                records.push(StoredRecord::OffsetDeleted {
                    group: group.clone(),
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                });
            }
        }
        let result = self.persist(partition, records).await;
        OffsetDeleteResponse::default()
            .with_error_code(result.err().unwrap_or(ErrorCode::None).code())
            .with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        let code = if subscribed.contains(t.name.0.as_str()) {
                            ErrorCode::GroupSubscribedToTopic
                        } else {
                            ErrorCode::None
                        };
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }
}
