//! Metadata changes as handlers ask for them, and the checks both authorities run before
//! taking one: a change is validated against the current [`Image`] the same way whether a
//! single broker's registry or the cluster's raft group then makes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use rill_net::ErrorCode;

use crate::config::topic::{self as topic_config, BrokerDefaults, TopicSettings};
use crate::config::Limits;
use crate::errors::KafkaError;
use crate::metadata::image::{check_topic_name, Image, TopicInfo};

/// A change to the metadata.
#[derive(Debug, Clone)]
pub enum Change {
    CreateTopic(NewTopic),
    DeleteTopic {
        name: String,
    },
    /// Grows `name` to `count` partitions; `assignments` places the new ones (else the
    /// authority places them like the topic's).
    CreatePartitions {
        name: String,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
    },
    AlterTopicConfigs {
        name: String,
        change: ConfigChange,
    },
    /// Broker-level topic defaults: for every broker (None) or one.
    AlterBrokerConfigs {
        broker: Option<i32>,
        change: ConfigChange,
    },
    AllocateProducerId,
    /// Moves a partition to `target` (replacing a running move), or cancels a running move.
    Reassign {
        name: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Moves every replica off `broker`, then unregisters it.
    Decommission {
        broker: i32,
    },
    /// A partition leader's ISR change: applies only if the partition is still at
    /// `partition_epoch` and `leader` still leads it.
    Isr {
        name: String,
        partition: i32,
        partition_epoch: i32,
        leader: i32,
        isr: Vec<i32>,
    },
    /// ElectLeaders: `leader` takes over a partition still at `partition_epoch`, with `isr`
    /// (the current ISR for a preferred or clean election, the new leader alone for an
    /// unclean one).
    ElectLeader {
        name: String,
        partition: i32,
        partition_epoch: i32,
        leader: i32,
        isr: Vec<i32>,
    },
}

/// CreateTopics for one topic, defaults already resolved by the handler.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    /// Replicas per partition when the authority places them.
    pub replication_factor: usize,
    /// Explicit replicas per partition (index order); replaces partitions and RF.
    pub assignments: Option<Vec<Vec<i32>>>,
    pub configs: Vec<(String, String)>,
}

/// What a change produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The topic as it is after the change (or would be, when only validated).
    Topic(Arc<TopicInfo>),
    ProducerId(i64),
    Done,
}

/// A change to config overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// AlterConfigs: the overrides become exactly these.
    Replace(Vec<(String, String)>),
    /// IncrementalAlterConfigs: edits applied in order.
    Incremental(Vec<ConfigEdit>),
}

/// One IncrementalAlterConfigs entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEdit {
    pub name: String,
    pub op: ConfigOp,
    pub value: Option<String>,
}

/// IncrementalAlterConfigs' operations (KIP-339).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl ConfigOp {
    /// The operation of the wire's `config_operation` field.
    pub fn from_wire(op: i8) -> Result<ConfigOp, KafkaError> {
        match op {
            0 => Ok(ConfigOp::Set),
            1 => Ok(ConfigOp::Delete),
            2 => Ok(ConfigOp::Append),
            3 => Ok(ConfigOp::Subtract),
            other => Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!("unknown config operation {other}"),
            )),
        }
    }
}

/// A topic that passed the checks, before an authority gives it an id and places it.
#[derive(Debug, Clone)]
pub struct CheckedTopic {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
    pub settings: TopicSettings,
}

/// CreateTopics' checks: the name, that it is new, the partition count, the broker's limits
/// and the configs (each known and in range, and resolvable with the broker's defaults).
pub fn check_new_topic(
    image: &Image,
    spec: &NewTopic,
    limits: &Limits,
) -> Result<CheckedTopic, KafkaError> {
    check_topic_name(&spec.name)
        .map_err(|e| KafkaError::new(ErrorCode::InvalidTopicException, e))?;
    if image.topic(&spec.name).is_some() {
        return Err(KafkaError::new(
            ErrorCode::TopicAlreadyExists,
            format!("topic `{}` already exists", spec.name),
        ));
    }
    let partitions = match &spec.assignments {
        Some(a) => a.len() as i32,
        None => spec.partitions,
    };
    if partitions < 1 {
        return Err(KafkaError::new(
            ErrorCode::InvalidPartitions,
            format!("number of partitions must be at least 1, not {partitions}"),
        ));
    }
    if image.topics.len() >= limits.topics_max {
        return Err(KafkaError::new(
            ErrorCode::PolicyViolation,
            format!(
                "the broker holds {} topics, its limit (limits.topics_max)",
                image.topics.len()
            ),
        ));
    }
    let total = image.total_partitions();
    if total + partitions as i64 > limits.partitions_max as i64 {
        return Err(partitions_limit(total, limits.partitions_max));
    }
    if let Some(a) = &spec.assignments {
        check_assignments(image, a)?;
    }
    let configs = check_configs(spec.configs.clone())?;
    let settings = TopicSettings::resolve(&image.defaults, &configs)
        .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?;
    Ok(CheckedTopic {
        name: spec.name.clone(),
        partitions,
        configs,
        settings,
    })
}

/// CreatePartitions' checks: the topic exists, grows, stays within the limits, and explicit
/// replicas name registered brokers.
pub fn check_create_partitions<'a>(
    image: &'a Image,
    name: &str,
    count: i32,
    assignments: Option<&[Vec<i32>]>,
    limits: &Limits,
) -> Result<&'a Arc<TopicInfo>, KafkaError> {
    let t = image
        .topic(name)
        .ok_or_else(|| KafkaError::unknown_topic(name))?;
    let current = t.partition_count();
    if count <= current {
        return Err(KafkaError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "topic `{name}` has {current} partitions; the new count must be larger, not {count}"
            ),
        ));
    }
    let total = image.total_partitions();
    if total + (count - current) as i64 > limits.partitions_max as i64 {
        return Err(partitions_limit(total, limits.partitions_max));
    }
    if let Some(a) = assignments {
        if a.len() as i32 != count - current {
            return Err(KafkaError::new(
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "{} replica assignments for {} new partitions",
                    a.len(),
                    count - current
                ),
            ));
        }
        check_assignments(image, a)?;
    }
    Ok(t)
}

/// Explicit replica lists: not empty, no broker twice, every broker registered.
fn check_assignments(image: &Image, assignments: &[Vec<i32>]) -> Result<(), KafkaError> {
    for (i, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() {
            return Err(KafkaError::new(
                ErrorCode::InvalidReplicaAssignment,
                format!("partition {i} is assigned no replicas"),
            ));
        }
        for (j, b) in replicas.iter().enumerate() {
            if replicas[..j].contains(b) {
                return Err(KafkaError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    format!("partition {i} lists broker {b} twice"),
                ));
            }
            if image.broker(*b).is_none() {
                let known: Vec<i32> = image.brokers.iter().map(|b| b.id).collect();
                return Err(KafkaError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    format!("partition {i} is assigned to broker {b}, which is not registered (brokers: {known:?})"),
                ));
            }
        }
    }
    Ok(())
}

/// A topic config change's result: the new sorted overrides, checked to resolve.
pub fn check_topic_configs(
    image: &Image,
    name: &str,
    change: ConfigChange,
) -> Result<Vec<(String, String)>, KafkaError> {
    let t = image
        .topic(name)
        .ok_or_else(|| KafkaError::unknown_topic(name))?;
    let next = check_configs(apply_change(t.configs.clone(), change)?)?;
    TopicSettings::resolve(&image.defaults, &next)
        .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?;
    Ok(next)
}

/// A broker config change's result: the new run-time defaults of `broker` (None: every
/// broker), topic config names, checked so that every topic still resolves with them.
pub fn check_broker_configs(
    image: &Image,
    broker: Option<i32>,
    change: ConfigChange,
) -> Result<BTreeMap<String, String>, KafkaError> {
    if let Some(b) = broker {
        if image.broker(b).is_none() {
            return Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!("`{b}` is not a registered broker id (use \"\" for every broker)"),
            ));
        }
    }
    let base: Vec<(String, String)> = image
        .broker_configs
        .get(&broker)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let change = broker_names_to_topic_names(change)?;
    let next: BTreeMap<String, String> = check_entries(apply_change(base, change)?, Scope::Broker)?
        .into_iter()
        .collect();
    // The defaults this broker would end up with (its own over the cluster-wide ones).
    let mut configs = image.broker_configs.clone();
    configs.insert(broker, next.clone());
    let defaults = BrokerDefaults {
        file: image.defaults.file.clone(),
        dynamic: Image::merged_broker_configs(&configs, image.me.id),
    };
    for (name, t) in &image.topics {
        TopicSettings::resolve(&defaults, &t.configs)
            .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, format!("topic {name}: {e}")))?;
    }
    Ok(next)
}

/// What turns config set `before` into `after`: set (`Some`) or removed (`None`) keys.
pub fn config_diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>)> {
    let mut changes: Vec<(String, Option<String>)> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    changes.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    changes
}

pub fn partitions_limit(current: i64, max: usize) -> KafkaError {
    KafkaError::new(
        ErrorCode::PolicyViolation,
        format!(
            "the broker holds {current} partitions; its limit (limits.partitions_max) is {max}"
        ),
    )
}

/// Translates broker-level config names (`log.retention.ms`) to the topic names the
/// metadata keeps (broker-only configs such as the replication throttle rates keep their
/// own); a name that is neither is INVALID_CONFIG.
fn broker_names_to_topic_names(change: ConfigChange) -> Result<ConfigChange, KafkaError> {
    let topic_name = |name: &str| {
        topic_config::key_by_broker_name(name)
            .or_else(|| topic_config::broker_only_key(name))
            .map(|k| k.name.to_string())
            .ok_or_else(|| {
                KafkaError::new(
                    ErrorCode::InvalidConfig,
                    format!(
                        "`{name}` cannot be changed at run time; dynamic broker configs are the \
                         topic defaults and the replication throttles: {}",
                        topic_config::TOPIC_CONFIGS
                            .iter()
                            .chain(topic_config::BROKER_ONLY_CONFIGS)
                            .map(|k| k.broker_name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    };
    Ok(match change {
        ConfigChange::Replace(list) => ConfigChange::Replace(
            list.into_iter()
                .map(|(k, v)| Ok((topic_name(&k)?, v)))
                .collect::<Result<_, KafkaError>>()?,
        ),
        ConfigChange::Incremental(edits) => ConfigChange::Incremental(
            edits
                .into_iter()
                .map(|e| {
                    Ok(ConfigEdit {
                        name: topic_name(&e.name)?,
                        ..e
                    })
                })
                .collect::<Result<_, KafkaError>>()?,
        ),
    })
}

/// Which configs a set may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// A topic's overrides: topic configs.
    Topic,
    /// A broker's run-time configs: topic defaults (by topic name) and broker-only configs.
    Broker,
}

/// Validates topic config overrides (each key known, each value in range, no duplicates);
/// sorted.
pub fn check_configs(configs: Vec<(String, String)>) -> Result<Vec<(String, String)>, KafkaError> {
    check_entries(configs, Scope::Topic)
}

fn check_entries(
    configs: Vec<(String, String)>,
    scope: Scope,
) -> Result<Vec<(String, String)>, KafkaError> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(configs.len());
    for (k, v) in configs {
        match topic_config::broker_only_key(&k) {
            Some(key) if scope == Scope::Broker => topic_config::validate_value(key, &v),
            _ => topic_config::validate_entry(&k, &v),
        }
        .map_err(|e| KafkaError::new(ErrorCode::InvalidConfig, e))?;
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!("config `{k}` is given twice"),
            ));
        }
        out.push((k, v));
    }
    out.sort();
    Ok(out)
}

/// `current` overrides after `change`.
fn apply_change(
    mut current: Vec<(String, String)>,
    change: ConfigChange,
) -> Result<Vec<(String, String)>, KafkaError> {
    let edits = match change {
        ConfigChange::Replace(next) => return Ok(next),
        ConfigChange::Incremental(edits) => edits,
    };
    for ConfigEdit { name, op, value } in edits {
        let key = topic_config::key(&name)
            .or_else(|| topic_config::broker_only_key(&name))
            .ok_or_else(|| {
                KafkaError::new(
                    ErrorCode::InvalidConfig,
                    format!("unknown topic config `{name}`"),
                )
            })?;
        let is_list = key.kind.is_list();
        let existing = current.iter().position(|(k, _)| *k == name);
        let value_of = |v: Option<String>| {
            v.ok_or_else(|| {
                KafkaError::new(ErrorCode::InvalidConfig, format!("`{name}` needs a value"))
            })
        };
        match op {
            ConfigOp::Set => {
                let v = value_of(value)?;
                match existing {
                    Some(i) => current[i].1 = v,
                    None => current.push((name, v)),
                }
            }
            ConfigOp::Delete => {
                if let Some(i) = existing {
                    current.remove(i);
                }
            }
            ConfigOp::Append | ConfigOp::Subtract if is_list => {
                let v = value_of(value)?;
                let base = existing
                    .map(|i| current[i].1.clone())
                    .unwrap_or_else(|| key.default.to_string());
                let mut items: Vec<String> = base
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if op == ConfigOp::Append {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                let joined = items.join(",");
                match existing {
                    Some(i) => current[i].1 = joined,
                    None => current.push((name, joined)),
                }
            }
            ConfigOp::Append | ConfigOp::Subtract => {
                return Err(KafkaError::new(
                    ErrorCode::InvalidConfig,
                    format!("APPEND and SUBTRACT apply to list configs; `{name}` is not one"),
                ))
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(name: &str, op: ConfigOp, value: Option<&str>) -> ConfigEdit {
        ConfigEdit {
            name: name.into(),
            op,
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn incremental_changes_set_delete_and_edit_lists() {
        let current = vec![("retention.ms".to_string(), "100".to_string())];
        let next = apply_change(
            current,
            ConfigChange::Incremental(vec![
                edit("retention.ms", ConfigOp::Delete, None),
                edit("segment.bytes", ConfigOp::Set, Some("8192")),
                edit("cleanup.policy", ConfigOp::Append, Some("delete")),
            ]),
        )
        .unwrap();
        assert_eq!(
            next,
            vec![
                ("segment.bytes".to_string(), "8192".to_string()),
                ("cleanup.policy".to_string(), "delete".to_string())
            ]
        );
        let e = apply_change(
            next,
            ConfigChange::Incremental(vec![edit("segment.bytes", ConfigOp::Append, Some("1"))]),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        let e = check_configs(vec![("cleanup.policy".into(), "compress".into())]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        check_configs(vec![("cleanup.policy".into(), "compact".into())]).unwrap();
        assert_eq!(ConfigOp::from_wire(3).unwrap(), ConfigOp::Subtract);
        assert_eq!(
            ConfigOp::from_wire(4).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn config_diff_names_set_and_removed_keys() {
        let before: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let after: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("c".into(), "3".into())].into();
        assert_eq!(
            config_diff(&before, &after),
            vec![
                ("c".to_string(), Some("3".to_string())),
                ("b".to_string(), None)
            ]
        );
    }
}
