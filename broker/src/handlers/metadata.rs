//! Metadata (with auto topic creation) and DescribeCluster: answered from this shard's
//! metadata image, the same way on a single broker and in a cluster. DescribeCluster names
//! the actual controller (the metadata raft leader), for operators; Metadata names this
//! broker, which takes admin requests for the controller.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::metadata_response::*;
use rill_net::kafka_protocol::messages::*;
use rill_net::ErrorCode;
use tracing::warn;

use super::{s, topic_name};
use crate::errors::KafkaError;
use crate::metadata::{check_topic_name, NewTopic, TopicInfo};
use crate::shard::Shard;

pub async fn metadata(shard: &Rc<Shard>, r: MetadataRequest, v: i16) -> MetadataResponse {
    let config = shard.config();
    let mut image = shard.image();
    let names: Vec<Result<String, KafkaError>> = match &r.topics {
        None => image.topics.keys().map(|k| Ok(k.to_string())).collect(),
        Some(list) if list.is_empty() && v == 0 => {
            image.topics.keys().map(|k| Ok(k.to_string())).collect()
        }
        Some(list) => list
            .iter()
            .map(|t| match &t.name {
                Some(n) => Ok(n.0.to_string()),
                None => image
                    .topic_by_id(t.topic_id)
                    .map(|t| t.name.to_string())
                    .ok_or_else(|| KafkaError::code(ErrorCode::UnknownTopicId)),
            })
            .collect(),
    };
    let auto_create = config.auto_create_topics && (v < 4 || r.allow_auto_topic_creation);
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let name = match name {
            Ok(n) => n,
            Err(e) => {
                topics.push(MetadataResponseTopic::default().with_error_code(e.code.code()));
                continue;
            }
        };
        let mut found = image.topic(&name).cloned();
        let mut error = ErrorCode::UnknownTopicOrPartition;
        if found.is_none() {
            if let Err(e) = check_topic_name(&name) {
                warn!(topic = %name, error = %e, "metadata for an invalid topic name");
                error = ErrorCode::InvalidTopicException;
            } else if auto_create {
                let spec = NewTopic {
                    name: name.clone(),
                    partitions: config.default_partitions,
                    replication_factor: config.default_replication_factor.max(1),
                    assignments: None,
                    configs: Vec::new(),
                };
                match shard.authority().create_topic(spec, false).await {
                    Ok(t) => found = Some(t),
                    Err(e) if e.code == ErrorCode::TopicAlreadyExists => {}
                    Err(e) => error = e.code,
                }
                image = shard.image();
                if found.is_none() {
                    found = image.topic(&name).cloned();
                }
            }
        }
        topics.push(match found {
            Some(t) => metadata_topic(&t),
            None => MetadataResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_error_code(error.code()),
        });
    }
    MetadataResponse::default()
        .with_brokers(
            image
                .live_brokers()
                .into_iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(s(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(s))
                })
                .collect(),
        )
        .with_cluster_id(Some(s(&*image.cluster_id)))
        // Clients send admin requests to the controller Metadata names. Every broker takes
        // them and hands them to the metadata raft group, so this broker names itself, a
        // broker that is certainly alive (as Kafka's KRaft brokers name a live broker): after
        // the raft leader dies, clients are not left sending to it.
        .with_controller_id(BrokerId(image.me.id))
        .with_topics(topics)
}

/// A topic with its placement: leader (LEADER_NOT_AVAILABLE while none), leader epoch,
/// replicas and ISR per partition.
fn metadata_topic(t: &TopicInfo) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_is_internal(t.is_internal())
        .with_partitions(
            t.partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let part = MetadataResponsePartition::default()
                        .with_partition_index(i as i32)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr));
                    if p.leader < 0 {
                        part.with_error_code(ErrorCode::LeaderNotAvailable.code())
                    } else {
                        part
                    }
                })
                .collect(),
        )
}

pub fn describe_cluster(shard: &Rc<Shard>, r: DescribeClusterRequest) -> DescribeClusterResponse {
    use describe_cluster_response::DescribeClusterBroker;
    let image = shard.image();
    DescribeClusterResponse::default()
        .with_endpoint_type(r.endpoint_type)
        .with_cluster_id(s(&*image.cluster_id))
        .with_controller_id(BrokerId(image.controller))
        .with_brokers(
            image
                .live_brokers()
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(s(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(s))
                })
                .collect(),
        )
}
