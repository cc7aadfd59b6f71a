//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, for topics and for the
//! broker-level topic defaults (resource "" for every broker, or one broker's id).

use std::rc::Rc;

use rill_net::kafka_protocol::messages::*;
use rill_net::ErrorCode;

use super::s;
use crate::config::topic::{self as topic_config, Source, BROKER_ONLY_CONFIGS, TOPIC_CONFIGS};
use crate::errors::KafkaError;
use crate::metadata::{ConfigChange, ConfigEdit, ConfigOp};
use crate::shard::Shard;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub fn describe_configs(
    shard: &Rc<Shard>,
    r: DescribeConfigsRequest,
    v: i16,
) -> DescribeConfigsResponse {
    use describe_configs_response::*;
    let image = shard.image();
    let mut results = Vec::with_capacity(r.resources.len());
    for res in &r.resources {
        let wanted = |name: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| &**k == name))
        };
        let result = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let entry =
            |name: &str, value: String, source: i8, read_only: bool, kind: i8, doc: &str| {
                let mut e = DescribeConfigsResourceResult::default()
                    .with_name(s(name))
                    .with_value(Some(s(value.clone())))
                    .with_read_only(read_only)
                    .with_config_source(source);
                if r.include_synonyms {
                    e = e.with_synonyms(vec![DescribeConfigsSynonym::default()
                        .with_name(s(name))
                        .with_value(Some(s(value)))
                        .with_source(source)]);
                }
                if v >= 3 {
                    e = e.with_config_type(kind);
                    if r.include_documentation {
                        e = e.with_documentation(Some(s(doc)));
                    }
                }
                e
            };
        match res.resource_type {
            RESOURCE_TOPIC => match image.topic(&res.resource_name) {
                None => results.push(
                    result
                        .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                        .with_error_message(Some(s(format!(
                            "topic `{}` does not exist",
                            &*res.resource_name
                        )))),
                ),
                Some(t) => {
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|k| wanted(k.name))
                        .map(|k| {
                            let (value, source) =
                                topic_config::effective(k.name, &image.defaults, &t.configs);
                            entry(
                                k.name,
                                value,
                                source as i8,
                                false,
                                k.kind.describe_type(),
                                k.doc,
                            )
                        })
                        .collect();
                    results.push(result.with_configs(configs));
                }
            },
            RESOURCE_BROKER => {
                let name: &str = &res.resource_name;
                if !name.is_empty() && name != shard.node_id().to_string() {
                    results.push(
                        result
                            .with_error_code(ErrorCode::InvalidRequest.code())
                            .with_error_message(Some(s(format!(
                                "this is broker {}, not `{name}`",
                                shard.node_id()
                            )))),
                    );
                    continue;
                }
                let c = shard.config();
                let (host, port) = c.advertised();
                // Topic defaults (under their broker names) and the broker-only configs, all
                // settable at run time (AlterConfigs on the broker resource).
                let mut configs: Vec<DescribeConfigsResourceResult> = TOPIC_CONFIGS
                    .iter()
                    .chain(BROKER_ONLY_CONFIGS)
                    .filter(|k| wanted(k.broker_name))
                    .map(|k| {
                        let (value, source) = topic_config::effective(k.name, &image.defaults, &[]);
                        entry(
                            k.broker_name,
                            value,
                            source as i8,
                            false,
                            k.kind.describe_type(),
                            k.doc,
                        )
                    })
                    .collect();
                let statics = [
                    ("broker.id", c.node_id.to_string(), 3, "This broker's id."),
                    (
                        "auto.create.topics.enable",
                        c.auto_create_topics.to_string(),
                        1,
                        "Create unknown topics on Metadata requests.",
                    ),
                    (
                        "auto.leader.rebalance.enable",
                        c.auto_leader_rebalance.to_string(),
                        1,
                        "Move leadership back to preferred replicas on its own (else only ElectLeaders does).",
                    ),
                    (
                        "num.partitions",
                        c.default_partitions.to_string(),
                        3,
                        "Partitions of auto-created topics.",
                    ),
                    (
                        "socket.request.max.bytes",
                        c.limits.frame_bytes_max.to_string(),
                        3,
                        "Largest request accepted.",
                    ),
                    (
                        "listeners",
                        format!("PLAINTEXT://{}", c.listen),
                        2,
                        "Where the broker listens.",
                    ),
                    (
                        "advertised.listeners",
                        format!("PLAINTEXT://{host}:{port}"),
                        2,
                        "What clients are told to connect to.",
                    ),
                    (
                        "log.dirs",
                        c.data_dir.display().to_string(),
                        2,
                        "The data directory.",
                    ),
                ];
                for (name, value, kind, doc) in statics {
                    if wanted(name) {
                        configs.push(entry(
                            name,
                            value,
                            Source::BrokerFile as i8,
                            true,
                            kind,
                            doc,
                        ));
                    }
                }
                results.push(result.with_configs(configs));
            }
            other => results.push(
                result
                    .with_error_code(ErrorCode::InvalidRequest.code())
                    .with_error_message(Some(s(format!(
                        "resource type {other} is not supported; use 2 (topic) or 4 (broker)"
                    )))),
            ),
        }
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Runs a config change on a topic or on the run-time topic defaults of every broker ("")
/// or of one.
async fn alter_resource(
    shard: &Rc<Shard>,
    resource_type: i8,
    resource_name: &str,
    change: Result<ConfigChange, KafkaError>,
    validate_only: bool,
) -> Result<(), KafkaError> {
    let change = change?;
    match resource_type {
        RESOURCE_TOPIC => {
            shard
                .authority()
                .alter_topic_configs(resource_name, change, validate_only)
                .await
        }
        RESOURCE_BROKER => {
            let broker = match resource_name {
                "" => None,
                id => Some(id.parse::<i32>().map_err(|_| {
                    KafkaError::new(
                        ErrorCode::InvalidRequest,
                        format!("`{id}` is not a broker id (use \"\" for every broker)"),
                    )
                })?),
            };
            shard
                .authority()
                .alter_broker_configs(broker, change, validate_only)
                .await
        }
        other => Err(KafkaError::new(
            ErrorCode::InvalidRequest,
            format!("resource type {other} is not supported; use 2 (topic) or 4 (broker)"),
        )),
    }
}

pub async fn alter_configs(shard: &Rc<Shard>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    use alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for res in &r.resources {
        let configs = res
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let outcome = alter_resource(
            shard,
            res.resource_type,
            &res.resource_name,
            Ok(ConfigChange::Replace(configs)),
            r.validate_only,
        )
        .await;
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err(e) = outcome {
            out = out
                .with_error_code(e.code.code())
                .with_error_message(e.message_str());
        }
        responses.push(out);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for res in &r.resources {
        let edits: Result<Vec<ConfigEdit>, KafkaError> = res
            .configs
            .iter()
            .map(|c| {
                Ok(ConfigEdit {
                    name: c.name.to_string(),
                    op: ConfigOp::from_wire(c.config_operation)?,
                    value: c.value.as_ref().map(|v| v.to_string()),
                })
            })
            .collect();
        let outcome = alter_resource(
            shard,
            res.resource_type,
            &res.resource_name,
            edits.map(ConfigChange::Incremental),
            r.validate_only,
        )
        .await;
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err(e) = outcome {
            out = out
                .with_error_code(e.code.code())
                .with_error_message(e.message_str());
        }
        responses.push(out);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
