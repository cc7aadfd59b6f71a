//! The consumer group APIs and FindCoordinator, on the connection's shard: each request goes
//! to its group's coordinator shard ([`crate::group`]) and its answer comes back here.

use std::collections::HashMap;
use std::rc::Rc;

use rill_net::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use rill_net::kafka_protocol::messages::offset_fetch_response::*;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use tracing::warn;

use crate::errors::KafkaError;
use crate::group::{Committed, GroupOp, GroupReply, Groups};
use crate::shard::Shard;
use crate::txn::Txns;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub async fn join(
    shard: &Rc<Shard>,
    r: JoinGroupRequest,
    v: i16,
    client_id: String,
    host: String,
) -> JoinGroupResponse {
    let group = r.group_id.0.to_string();
    let member = r.member_id.clone();
    match Groups::of(shard)
        .group_op(&group, GroupOp::Join(r, v, client_id, host))
        .await
    {
        Ok(GroupReply::Join(resp)) => resp,
        other => JoinGroupResponse::default()
            .with_error_code(failed(other).code())
            .with_generation_id(-1)
            .with_member_id(member),
    }
}

/// The code to answer when the coordinator could not run the op.
fn failed(r: Result<GroupReply, KafkaError>) -> ErrorCode {
    match r {
        Err(e) => e.code,
        Ok(_) => ErrorCode::UnknownServerError,
    }
}

pub async fn sync(shard: &Rc<Shard>, r: SyncGroupRequest) -> SyncGroupResponse {
    let group = r.group_id.0.to_string();
    match Groups::of(shard).group_op(&group, GroupOp::Sync(r)).await {
        Ok(GroupReply::Sync(resp)) => resp,
        other => SyncGroupResponse::default().with_error_code(failed(other).code()),
    }
}

pub async fn heartbeat(shard: &Rc<Shard>, r: HeartbeatRequest) -> HeartbeatResponse {
    let group = r.group_id.0.to_string();
    match Groups::of(shard)
        .group_op(&group, GroupOp::Heartbeat(r))
        .await
    {
        Ok(GroupReply::Heartbeat(resp)) => resp,
        other => HeartbeatResponse::default().with_error_code(failed(other).code()),
    }
}

pub async fn leave(shard: &Rc<Shard>, r: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
    let group = r.group_id.0.to_string();
    match Groups::of(shard)
        .group_op(&group, GroupOp::Leave(r, v))
        .await
    {
        Ok(GroupReply::Leave(resp)) => resp,
        other => LeaveGroupResponse::default().with_error_code(failed(other).code()),
    }
}

/// OffsetCommit. As in Kafka, a partition the cluster does not have is answered
/// UNKNOWN_TOPIC_OR_PARTITION here and never reaches the group; the rest go to the group's
/// coordinator, and the answer lists every partition of the request in its order.
pub async fn commit(shard: &Rc<Shard>, mut r: OffsetCommitRequest, v: i16) -> OffsetCommitResponse {
    use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    let group = r.group_id.0.to_string();
    let asked = r.topics.clone();
    let image = shard.image();
    let exists = |topic: &str, p: i32| image.placement(topic, p).is_some();
    for t in &mut r.topics {
        t.partitions
            .retain(|p| exists(&t.name.0, p.partition_index));
    }
    r.topics.retain(|t| !t.partitions.is_empty());
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    if !r.topics.is_empty() {
        let reply = Groups::of(shard)
            .group_op(&group, GroupOp::Commit(r.clone(), v))
            .await;
        match reply {
            Ok(GroupReply::Commit(resp)) => {
                for t in resp.topics {
                    for p in t.partitions {
                        codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
                    }
                }
            }
            other => {
                let code = failed(other).code();
                for t in &r.topics {
                    for p in &t.partitions {
                        codes.insert((t.name.0.to_string(), p.partition_index), code);
                    }
                }
            }
        }
    }
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    OffsetCommitResponse::default().with_topics(
        asked
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = codes
                            .get(&(t.name.0.to_string(), p.partition_index))
                            .copied()
                            .unwrap_or(unknown);
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

/// One group's offsets by topic: each partition's committed offset or its error.
type OffsetsByTopic = Vec<(String, Vec<(i32, Result<Committed, ErrorCode>)>)>;

/// Committed offsets of one group, by topic.
async fn offsets_of(
    shard: &Rc<Shard>,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    member: Option<(String, i32)>,
    require_stable: bool,
) -> Result<OffsetsByTopic, ErrorCode> {
    let reply = Groups::of(shard)
        .group_op(
            group,
            GroupOp::Fetch {
                group: group.to_string(),
                topics,
                member,
                require_stable,
            },
        )
        .await;
    let flat = match reply {
        Ok(GroupReply::Fetch(r)) => r.map_err(|e| e.code)?,
        other => return Err(failed(other)),
    };
    let mut out: OffsetsByTopic = Vec::new();
    for (t, p, c) in flat {
        match out.last_mut() {
            Some((name, parts)) if *name == t => parts.push((p, c)),
            _ => out.push((t, vec![(p, c)])),
        }
    }
    Ok(out)
}

pub async fn fetch(shard: &Rc<Shard>, r: OffsetFetchRequest, v: i16) -> OffsetFetchResponse {
    if v >= 8 {
        let mut groups = Vec::with_capacity(r.groups.len());
        for g in &r.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let result = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            // v9: a KIP-848 member names itself and its epoch; admins send neither.
            let member = g
                .member_id
                .as_ref()
                .map(|id| (id.to_string(), g.member_epoch));
            groups.push(
                match offsets_of(shard, &g.group_id.0, topics, member, r.require_stable).await {
                    Ok(found) => result.with_topics(
                        found
                            .into_iter()
                            .map(|(t, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(s(&t)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, c)| match c {
                                                Ok(c) => OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(c.offset)
                                                    .with_committed_leader_epoch(c.leader_epoch)
                                                    .with_metadata(Some(s(&c.metadata))),
                                                Err(code) => {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(-1)
                                                        .with_error_code(code.code())
                                                }
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(code) => result.with_error_code(code.code()),
                },
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let require_stable = v >= 7 && r.require_stable;
    match offsets_of(shard, &r.group_id.0, topics, None, require_stable).await {
        Ok(found) => OffsetFetchResponse::default().with_topics(
            found
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(&t)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, c)| {
                                    let c = match c {
                                        Ok(c) => c,
                                        Err(code) => {
                                            return OffsetFetchResponsePartition::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(-1)
                                                .with_error_code(code.code())
                                        }
                                    };
                                    let part = OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(c.offset)
                                        .with_metadata(Some(s(&c.metadata)));
                                    if v >= 5 {
                                        part.with_committed_leader_epoch(c.leader_epoch)
                                    } else {
                                        part
                                    }
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(code) => OffsetFetchResponse::default().with_error_code(code.code()),
    }
}

pub async fn list(shard: &Rc<Shard>, r: ListGroupsRequest) -> ListGroupsResponse {
    let mut groups = Groups::of(shard).list_groups().await;
    if !r.states_filter.is_empty() {
        groups.retain(|g| {
            r.states_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&g.group_state))
        });
    }
    if !r.types_filter.is_empty() {
        groups.retain(|g| {
            r.types_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&g.group_type))
        });
    }
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn describe(shard: &Rc<Shard>, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
    use describe_groups_response::DescribedGroup;
    let mut out = Vec::with_capacity(r.groups.len());
    for g in &r.groups {
        out.push(
            match Groups::of(shard)
                .group_op(&g.0, GroupOp::Describe(g.0.to_string()))
                .await
            {
                Ok(GroupReply::Describe(d)) => d,
                other => DescribedGroup::default()
                    .with_group_id(g.clone())
                    .with_error_code(failed(other).code()),
            },
        );
    }
    DescribeGroupsResponse::default().with_groups(out)
}

pub async fn delete(shard: &Rc<Shard>, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(r.groups_names.len());
    for g in &r.groups_names {
        let code = match Groups::of(shard)
            .group_op(&g.0, GroupOp::Delete(g.0.to_string()))
            .await
        {
            Ok(GroupReply::Delete(r)) => r.err().map_or(ErrorCode::None, |e| e.code),
            other => failed(other),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(code.code()),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(shard: &Rc<Shard>, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = r.group_id.0.to_string();
    match Groups::of(shard)
        .group_op(&group, GroupOp::OffsetDelete(r))
        .await
    {
        Ok(GroupReply::OffsetDelete(resp)) => resp,
        other => OffsetDeleteResponse::default().with_error_code(failed(other).code()),
    }
}

pub async fn consumer_heartbeat(
    shard: &Rc<Shard>,
    r: ConsumerGroupHeartbeatRequest,
    v: i16,
    client_id: String,
    host: String,
) -> ConsumerGroupHeartbeatResponse {
    let group = r.group_id.0.to_string();
    match Groups::of(shard)
        .group_op(&group, GroupOp::ConsumerHeartbeat(r, v, client_id, host))
        .await
    {
        Ok(GroupReply::ConsumerHeartbeat(resp)) => resp,
        other => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(failed(other).code())
            .with_member_epoch(-1),
    }
}

pub async fn consumer_describe(
    shard: &Rc<Shard>,
    r: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut out = Vec::with_capacity(r.group_ids.len());
    for g in &r.group_ids {
        let group = g.0.to_string();
        out.push(
            match Groups::of(shard)
                .group_op(&group, GroupOp::ConsumerDescribe(group.clone()))
                .await
            {
                Ok(GroupReply::ConsumerDescribe(d)) => d,
                other => consumer_group_describe_response::DescribedGroup::default()
                    .with_group_id(g.clone())
                    .with_error_code(failed(other).code()),
            },
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(out)
}

/// Key type 0 in FindCoordinator: a consumer group.
const COORDINATOR_GROUP: i8 = 0;
/// Key type 1: a transactional id.
const COORDINATOR_TRANSACTION: i8 = 1;

/// The leader of the key's partition of `__consumer_offsets` (groups) or
/// `__transaction_state` (transactional ids), each topic created on first use.
pub async fn find_coordinator(
    shard: &Rc<Shard>,
    r: FindCoordinatorRequest,
    v: i16,
) -> FindCoordinatorResponse {
    use find_coordinator_response::Coordinator;
    // The group's coordinator (creating __consumer_offsets on first use, as Kafka does, so
    // it is ready when the client's JoinGroup arrives).
    let answer = |key: StrBytes| async move {
        let coordinator = Coordinator::default().with_key(key.clone());
        let found = match r.key_type {
            COORDINATOR_GROUP => Groups::of(shard).group_coordinator(&key).await,
            COORDINATOR_TRANSACTION => Txns::of(shard).coordinator(&key).await,
            other => Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!("unknown coordinator key type {other}"),
            )),
        };
        match found {
            Ok(b) => coordinator
                .with_node_id(BrokerId(b.id))
                .with_host(s(&b.host))
                .with_port(b.port),
            Err(e) => {
                warn!(key = %key, key_type = r.key_type, error = ?e.code, reason = ?e.message, "no coordinator available");
                coordinator
                    .with_node_id(BrokerId(-1))
                    .with_error_code(e.code.code())
            }
        }
    };
    if v >= 4 {
        let mut coordinators = Vec::with_capacity(r.coordinator_keys.len());
        for key in r.coordinator_keys.iter().cloned() {
            coordinators.push(answer(key).await);
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let one = answer(r.key.clone()).await;
    let response = FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port);
    if v >= 1 {
        response.with_error_message(one.error_message)
    } else {
        response
    }
}

/// TxnOffsetCommit: offsets committed inside a transaction, written by the group's
/// coordinator as the producer's transactional batch; they count once the transaction
/// commits. The group's offsets partition must be in the transaction first: v5
/// (transactions v2) adds it, older versions are verified (KIP-890 part 1, after
/// AddOffsetsToTxn added it). A partition the cluster does not have is
/// UNKNOWN_TOPIC_OR_PARTITION, as for OffsetCommit.
pub async fn txn_commit(
    shard: &Rc<Shard>,
    mut r: TxnOffsetCommitRequest,
    v: i16,
) -> TxnOffsetCommitResponse {
    use txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    let group = r.group_id.0.to_string();
    let asked = r.topics.clone();
    let image = shard.image();
    let exists = |topic: &str, p: i32| image.placement(topic, p).is_some();
    for t in &mut r.topics {
        t.partitions
            .retain(|p| exists(&t.name.0, p.partition_index));
    }
    r.topics.retain(|t| !t.partitions.is_empty());
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    if !r.topics.is_empty() {
        let joined = match Groups::of(shard).offsets_partition_of(&group).await {
            Ok(p) => {
                Txns::of(shard)
                    .join_for_offsets(
                        &r.transactional_id.0,
                        r.producer_id.0,
                        r.producer_epoch,
                        p,
                        v,
                    )
                    .await
            }
            Err(e) => Err(e.code),
        };
        let reply = match joined {
            Ok(()) => {
                Groups::of(shard)
                    .group_op(&group, GroupOp::TxnCommit(r.clone(), v))
                    .await
            }
            Err(code) => {
                shard.metrics().error("TxnOffsetCommit", code);
                Err(KafkaError::new(
                    code,
                    format!(
                        "the offsets partition of group {group} could not join the transaction"
                    ),
                ))
            }
        };
        match reply {
            Ok(GroupReply::TxnCommit(resp)) => {
                for t in resp.topics {
                    for p in t.partitions {
                        codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
                    }
                }
            }
            other => {
                let code = failed(other).code();
                for t in &r.topics {
                    for p in &t.partitions {
                        codes.insert((t.name.0.to_string(), p.partition_index), code);
                    }
                }
            }
        }
    }
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    TxnOffsetCommitResponse::default().with_topics(
        asked
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let code = codes
                                    .get(&(t.name.0.to_string(), p.partition_index))
                                    .copied()
                                    .unwrap_or(unknown);
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// AddOffsetsToTxn (the classic protocol; transactions v2 clients send none): the group's
/// offsets partition joins the transaction, so its
/// TxnOffsetCommit offsets get the transaction's end marker.
pub async fn add_offsets_to_txn(
    shard: &Rc<Shard>,
    r: AddOffsetsToTxnRequest,
    v: i16,
) -> AddOffsetsToTxnResponse {
    use crate::metadata::OFFSETS_TOPIC;
    use crate::txn::state::{error_for_version, TxnApi, TxnVersion};
    let outcome = match Groups::of(shard).offsets_partition_of(&r.group_id.0).await {
        Ok(p) => Txns::of(shard)
            .add_partitions(
                r.transactional_id.0.to_string(),
                r.producer_id.0,
                r.producer_epoch,
                [(OFFSETS_TOPIC.to_string(), p)].into_iter().collect(),
                TxnVersion::V0,
            )
            .await
            .map_err(|code| error_for_version(code, TxnApi::AddOffsetsToTxn, v)),
        Err(e) => Err(e.code),
    };
    let code = outcome.err().unwrap_or(ErrorCode::None);
    if code != ErrorCode::None {
        shard.metrics().error("AddOffsetsToTxn", code);
    }
    AddOffsetsToTxnResponse::default().with_error_code(code.code())
}
