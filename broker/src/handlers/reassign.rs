//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455), and
//! decommissioning a broker (UnregisterBroker).
//!
//! A reassignment moves a partition to a target replica list. The controller makes the
//! replicas the union of old and new, the added replicas fetch from the leader
//! ([`crate::replica`]), the leader adds them to the ISR once they caught up, and the
//! controller then completes the move: replicas become the target, removed replicas
//! leave the ISR, and a removed leader hands over to the target's first in-sync replica.
//! Any broker takes these requests (changes go through the metadata raft group, as
//! CreateTopics does); a target for a partition that is already moving replaces the
//! running move, and a `null` target cancels it.
//!
//! UnregisterBroker decommissions: Kafka's version removes a broker that is already gone
//! and leaves its partitions under-replicated; Rill's first moves every replica the
//! broker holds to other brokers (the same reassignments, placed by the controller and
//! listed by ListPartitionReassignments), hands its leaderships over, and unregisters it
//! once it holds nothing; a learner also leaves the metadata raft group. The request is
//! answered once the decommission has started.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use rill_net::kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use rill_net::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use crate::errors::KafkaError;
use crate::metadata::{Image, Placement};
use crate::shard::Shard;

/// Partitions one AlterPartitionReassignments request may move (each is one metadata
/// change, committed one after the other).
pub const REASSIGN_PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

pub async fn alter(
    shard: &Rc<Shard>,
    r: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = version < 1 || r.allow_replication_factor_change;
    let response = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change);
    let count: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
    if count > REASSIGN_PARTITIONS_PER_REQUEST_MAX {
        return response
            .with_error_code(ErrorCode::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "{count} partitions in one request; at most {REASSIGN_PARTITIONS_PER_REQUEST_MAX}"
            ))));
    }
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in &r.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let outcome = alter_one(shard, &name, p.partition_index, target, allow_rf_change).await;
            let mut res =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            if let Err(e) = outcome {
                shard.metrics().error("AlterPartitionReassignments", e.code);
                res = res
                    .with_error_code(e.code.code())
                    .with_error_message(e.message_str());
            }
            partitions.push(res);
        }
        topics.push(
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    response.with_responses(topics)
}

async fn alter_one(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<(), KafkaError> {
    let image = shard.image();
    let pv = image.placement(topic, partition).ok_or_else(|| {
        match image.topics.contains_key(topic) {
            true => KafkaError::unknown_partition(topic, partition),
            false => KafkaError::unknown_topic(topic),
        }
    })?;
    match &target {
        None if !pv.is_reassigning() => {
            return Err(KafkaError::new(
                ErrorCode::NoReassignmentInProgress,
                format!("{topic}-{partition} is not being reassigned"),
            ))
        }
        None => {}
        Some(t) => check_target(&image, pv, t, allow_rf_change)?,
    }
    shard.authority().reassign(topic, partition, target).await
}

/// A target replica list: distinct registered brokers, and the replication factor kept
/// unless the client allows a change.
fn check_target(
    image: &Image,
    pv: &Placement,
    target: &[i32],
    allow_rf_change: bool,
) -> Result<(), KafkaError> {
    let bad = |why: String| Err(KafkaError::new(ErrorCode::InvalidReplicaAssignment, why));
    if target.is_empty() {
        return bad("the target replica list is empty".into());
    }
    for (i, b) in target.iter().enumerate() {
        if target[..i].contains(b) {
            return bad(format!("broker {b} is listed twice in {target:?}"));
        }
        if image.broker(*b).is_none() {
            return bad(format!("broker {b} is not registered in the cluster"));
        }
    }
    let current = pv.replicas.len() - pv.adding.len();
    if !allow_rf_change && target.len() != current {
        return Err(KafkaError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "{target:?} changes the replication factor from {current} and the request does not allow it"
            ),
        ));
    }
    Ok(())
}

pub async fn decommission(
    shard: &Rc<Shard>,
    r: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let broker = r.broker_id.0;
    match shard.authority().decommission(broker).await {
        Ok(()) => {
            tracing::info!(
                broker,
                "decommission started: its replicas move to other brokers"
            );
            UnregisterBrokerResponse::default()
        }
        Err(e) => {
            shard.metrics().error("UnregisterBroker", e.code);
            UnregisterBrokerResponse::default()
                .with_error_code(e.code.code())
                .with_error_message(e.message_str())
        }
    }
}

pub fn list(
    shard: &Rc<Shard>,
    r: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let view = shard.image();
    let ongoing = |pv: &Placement| pv.is_reassigning();
    let entry = |index: i32, pv: &Placement| {
        let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        OngoingPartitionReassignment::default()
            .with_partition_index(index)
            .with_replicas(ids(&pv.replicas))
            .with_adding_replicas(ids(&pv.adding))
            .with_removing_replicas(ids(&pv.removing))
    };
    let mut topics = Vec::new();
    let mut add = |name: &str, partitions: Vec<OngoingPartitionReassignment>| {
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions),
            );
        }
    };
    match &r.topics {
        None => {
            for (name, t) in &view.topics {
                let parts = t
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, pv)| ongoing(pv))
                    .map(|(i, pv)| entry(i as i32, pv))
                    .collect();
                add(name, parts);
            }
        }
        Some(wanted) => {
            for t in wanted {
                let name: &str = &t.name.0;
                let parts = t
                    .partition_indexes
                    .iter()
                    .filter_map(|i| view.placement(name, *i).map(|pv| (*i, pv)))
                    .filter(|(_, pv)| ongoing(pv))
                    .map(|(i, pv)| entry(i, pv))
                    .collect();
                add(name, parts);
            }
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
