//! DescribeTopicPartitions (KIP-966): topics and their partitions' placement, paged by a
//! partition limit and a cursor, from this shard's image. The Java admin's describeTopics
//! (`kafka-topics --describe`) uses it when the broker offers it. Rill has no eligible
//! leader replicas (KIP-966's ELR): those lists are empty.

use std::rc::Rc;
use std::sync::Arc;

use rill_net::kafka_protocol::messages::describe_topic_partitions_response::*;
use rill_net::kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};
use rill_net::ErrorCode;

use super::topic_name;
use crate::metadata::{Image, TopicInfo};
use crate::shard::Shard;

/// Most partitions in one answer, whatever the request asks (Kafka's
/// `max.request.partition.size.limit` default).
pub const PARTITIONS_PER_RESPONSE_MAX: usize = 2000;

/// `topic_authorized_operations` when they were not asked for.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

pub fn describe(
    shard: &Rc<Shard>,
    r: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = shard.image();
    // Kafka answers topics in name order, whether listed or all.
    let mut names: Vec<Arc<str>> = if r.topics.is_empty() {
        image.topics.keys().cloned().collect()
    } else {
        r.topics.iter().map(|t| Arc::from(&*t.name.0)).collect()
    };
    names.sort();
    names.dedup();
    let (first_topic, first_partition) = match &r.cursor {
        Some(c) => (
            Some(Arc::<str>::from(&*c.topic_name.0)),
            c.partition_index.max(0),
        ),
        None => (None, 0),
    };
    if let Some(start) = &first_topic {
        if !names.contains(start) {
            // Kafka refuses a cursor outside the topics asked for.
            return DescribeTopicPartitionsResponse::default().with_topics(vec![
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(start)))
                    .with_error_code(ErrorCode::InvalidRequest.code())
                    .with_topic_authorized_operations(OPERATIONS_NOT_ASKED),
            ]);
        }
    }
    let mut budget = usize::try_from(r.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, PARTITIONS_PER_RESPONSE_MAX);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names
        .iter()
        .filter(|n| first_topic.as_ref().is_none_or(|start| *n >= start))
    {
        let Some(t) = image.topic(name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(name)))
                    .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                    .with_topic_authorized_operations(OPERATIONS_NOT_ASKED),
            );
            continue;
        };
        if budget == 0 {
            next_cursor = Some(cursor(name, 0));
            break;
        }
        let from = if first_topic.as_ref() == Some(name) {
            first_partition
        } else {
            0
        };
        let (answer, stopped_at) = topic(&image, t, from, &mut budget);
        topics.push(answer);
        if let Some(p) = stopped_at {
            next_cursor = Some(cursor(name, p));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(topic_name(topic))
        .with_partition_index(partition)
}

/// The partitions of `t` from `from` on, as many as `budget` allows; the partition the next
/// page starts at when it ran out first.
fn topic(
    image: &Image,
    t: &TopicInfo,
    from: i32,
    budget: &mut usize,
) -> (DescribeTopicPartitionsResponseTopic, Option<i32>) {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut partitions = Vec::new();
    let mut stopped_at = None;
    for index in from..t.partition_count() {
        let Some(p) = t.placement(index) else { break };
        if *budget == 0 {
            stopped_at = Some(index);
            break;
        }
        *budget -= 1;
        let offline: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|b| !image.is_alive(*b))
            .collect();
        let error = if p.leader < 0 {
            ErrorCode::LeaderNotAvailable
        } else {
            ErrorCode::None
        };
        partitions.push(
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(error.code())
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(ids(&offline)),
        );
    }
    let answer = DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_is_internal(t.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_NOT_ASKED);
    (answer, stopped_at)
}
