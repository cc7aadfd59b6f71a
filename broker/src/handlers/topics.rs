//! CreateTopics, DeleteTopics and CreatePartitions: the request's checks here, the change
//! through the metadata authority (a single broker's registry or the cluster's raft group).

use std::rc::Rc;
use std::sync::Arc;

use rill_net::kafka_protocol::messages::*;
use rill_net::ErrorCode;

use super::{s, topic_name};
use crate::config::topic::{self as topic_config, TOPIC_CONFIGS};
use crate::errors::KafkaError;
use crate::metadata::{NewTopic, TopicInfo};
use crate::shard::Shard;

/// Config entries as CreateTopics v5+ returns them.
fn created_configs(
    shard: &Shard,
    t: &TopicInfo,
) -> Vec<create_topics_response::CreatableTopicConfigs> {
    let image = shard.image();
    TOPIC_CONFIGS
        .iter()
        .map(|k| {
            let (value, source) = topic_config::effective(k.name, &image.defaults, &t.configs);
            create_topics_response::CreatableTopicConfigs::default()
                .with_name(s(k.name))
                .with_value(Some(s(value)))
                .with_config_source(source as i8)
        })
        .collect()
}

/// The topic a CreateTopics entry asks for, with the broker's defaults filled in.
fn new_topic(
    shard: &Shard,
    t: &create_topics_request::CreatableTopic,
) -> Result<NewTopic, KafkaError> {
    let config = shard.config();
    let mut configs = Vec::with_capacity(t.configs.len());
    for c in &t.configs {
        let value = c.value.as_ref().ok_or_else(|| {
            KafkaError::new(
                ErrorCode::InvalidConfig,
                format!("config `{}` has no value", &*c.name),
            )
        })?;
        configs.push((c.name.to_string(), value.to_string()));
    }
    let assignments = if t.assignments.is_empty() {
        None
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                "give either replica assignments or num_partitions/replication_factor, not both",
            ));
        }
        let mut sorted: Vec<&create_topics_request::CreatableReplicaAssignment> =
            t.assignments.iter().collect();
        sorted.sort_by_key(|a| a.partition_index);
        if sorted
            .iter()
            .enumerate()
            .any(|(i, a)| a.partition_index != i as i32)
        {
            return Err(KafkaError::new(
                ErrorCode::InvalidReplicaAssignment,
                "assigned partitions must be numbered 0..n",
            ));
        }
        Some(
            sorted
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect(),
        )
    };
    let replication_factor = match t.replication_factor {
        -1 => config.default_replication_factor.max(1),
        rf if rf >= 1 => rf as usize,
        rf => {
            return Err(KafkaError::new(
                ErrorCode::InvalidReplicationFactor,
                format!("replication factor {rf} must be at least 1"),
            ))
        }
    };
    Ok(NewTopic {
        name: t.name.0.to_string(),
        partitions: if t.num_partitions == -1 {
            config.default_partitions
        } else {
            t.num_partitions
        },
        replication_factor,
        assignments,
        configs,
    })
}

pub async fn create_topics(
    shard: &Rc<Shard>,
    r: CreateTopicsRequest,
    v: i16,
) -> CreateTopicsResponse {
    use create_topics_response::CreatableTopicResult;
    let mut results = Vec::with_capacity(r.topics.len());
    for (i, t) in r.topics.iter().enumerate() {
        let duplicate = r
            .topics
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.name == t.name);
        let outcome: Result<Arc<TopicInfo>, KafkaError> = if duplicate {
            Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "topic `{}` appears more than once in the request",
                    &*t.name.0
                ),
            ))
        } else {
            match new_topic(shard, t) {
                Ok(spec) => shard.authority().create_topic(spec, r.validate_only).await,
                Err(e) => Err(e),
            }
        };
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        results.push(match outcome {
            Ok(info) => {
                let mut ok = result;
                if v >= 5 {
                    ok = ok
                        .with_num_partitions(info.partition_count())
                        .with_replication_factor(info.replication_factor())
                        .with_configs(Some(created_configs(shard, &info)));
                }
                if v >= 7 {
                    ok = ok.with_topic_id(info.id);
                }
                ok
            }
            Err(e) => {
                let mut failed = result
                    .with_error_code(e.code.code())
                    .with_error_message(e.message_str());
                if v >= 5 {
                    failed = failed.with_num_partitions(-1).with_replication_factor(-1);
                }
                failed
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(shard: &Rc<Shard>, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    use delete_topics_response::DeletableTopicResult;
    let image = shard.image();
    // v6 names topics by name or id; earlier versions by name only.
    let mut targets: Vec<Result<String, KafkaError>> =
        r.topic_names.iter().map(|n| Ok(n.0.to_string())).collect();
    for t in &r.topics {
        targets.push(match &t.name {
            Some(n) => Ok(n.0.to_string()),
            None => image
                .topic_by_id(t.topic_id)
                .map(|t| t.name.to_string())
                .ok_or_else(|| KafkaError::code(ErrorCode::UnknownTopicId)),
        });
    }
    let mut responses = Vec::with_capacity(targets.len());
    for target in targets {
        let outcome = match &target {
            Ok(name) => shard.authority().delete_topic(name).await,
            Err(e) => Err(e.clone()),
        };
        let mut res =
            DeletableTopicResult::default().with_name(target.as_ref().ok().map(|n| topic_name(n)));
        match outcome {
            Ok(t) => res = res.with_topic_id(t.id),
            Err(e) => {
                res = res
                    .with_error_code(e.code.code())
                    .with_error_message(e.message_str())
            }
        }
        responses.push(res);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    shard: &Rc<Shard>,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    use create_partitions_response::CreatePartitionsTopicResult;
    let mut results = Vec::with_capacity(r.topics.len());
    for t in &r.topics {
        let name = t.name.0.to_string();
        let assignments: Option<Vec<Vec<i32>>> = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = shard
            .authority()
            .create_partitions(&name, t.count, assignments, r.validate_only)
            .await;
        let res = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(match outcome {
            Ok(()) => res,
            Err(e) => res
                .with_error_code(e.code.code())
                .with_error_message(e.message_str()),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
