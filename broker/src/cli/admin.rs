//! `rill topic`, `rill config`, `rill cluster`: admin requests and their tables.

use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::client::{check, connect_leader, list_offsets, CliError, Client};
use super::{pair, table, ClusterCmd, Common, ConfigCmd, Output, Resource, TopicCmd};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

fn msg(m: &Option<StrBytes>) -> Option<&str> {
    m.as_deref()
}

pub fn topic(cmd: TopicCmd) -> Result<(), CliError> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            replication_factor,
            configs,
            common,
        } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let mut cfgs = Vec::new();
            for kv in &configs {
                let (k, v) = pair(kv)?;
                cfgs.push(
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s(&k))
                        .with_value(Some(s(&v))),
                );
            }
            let r = c.send(
                &CreateTopicsRequest::default()
                    .with_timeout_ms(30_000)
                    .with_topics(vec![create_topics_request::CreatableTopic::default()
                        .with_name(topic_name(&name))
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication_factor)
                        .with_configs(cfgs)]),
            )?;
            let t = r
                .topics
                .first()
                .ok_or_else(|| CliError::Protocol("empty CreateTopics response".into()))?;
            check(
                format!("create topic {name}"),
                t.error_code,
                msg(&t.error_message),
            )?;
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!({"topic": name, "partitions": partitions, "created": true})
                ),
                Output::Table => println!("created topic {name} with {partitions} partitions"),
            }
            Ok(())
        }
        TopicCmd::List {
            include_internal,
            common,
        } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let r = c.send(&MetadataRequest::default().with_topics(None))?;
            let mut topics: Vec<(String, usize)> = r
                .topics
                .iter()
                .filter(|t| include_internal || !t.is_internal)
                .filter_map(|t| {
                    t.name
                        .as_ref()
                        .map(|n| (n.0.to_string(), t.partitions.len()))
                })
                .collect();
            topics.sort();
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!(topics
                        .iter()
                        .map(|(n, p)| json!({"name": n, "partitions": p}))
                        .collect::<Vec<_>>())
                ),
                Output::Table => {
                    let rows: Vec<Vec<String>> = topics
                        .iter()
                        .map(|(n, p)| vec![n.clone(), p.to_string()])
                        .collect();
                    print!("{}", table(&["TOPIC", "PARTITIONS"], &rows));
                }
            }
            Ok(())
        }
        TopicCmd::Describe { name, common } => describe(&name, &common),
        TopicCmd::Delete { name, common } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let r = c.send(
                &DeleteTopicsRequest::default()
                    .with_timeout_ms(30_000)
                    .with_topic_names(vec![topic_name(&name)])
                    .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(topic_name(&name)))]),
            )?;
            let t = r
                .responses
                .first()
                .ok_or_else(|| CliError::Protocol("empty DeleteTopics response".into()))?;
            check(
                format!("delete topic {name}"),
                t.error_code,
                msg(&t.error_message),
            )?;
            match common.output {
                Output::Json => println!("{}", json!({"topic": name, "deleted": true})),
                Output::Table => println!("deleted topic {name}"),
            }
            Ok(())
        }
        TopicCmd::Alter {
            name,
            partitions,
            common,
        } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let r = c.send(
                &CreatePartitionsRequest::default()
                    .with_timeout_ms(30_000)
                    .with_topics(vec![
                        create_partitions_request::CreatePartitionsTopic::default()
                            .with_name(topic_name(&name))
                            .with_count(partitions)
                            .with_assignments(None),
                    ]),
            )?;
            let t = r
                .results
                .first()
                .ok_or_else(|| CliError::Protocol("empty CreatePartitions response".into()))?;
            check(
                format!("alter topic {name}"),
                t.error_code,
                msg(&t.error_message),
            )?;
            match common.output {
                Output::Json => println!("{}", json!({"topic": name, "partitions": partitions})),
                Output::Table => println!("topic {name} now has {partitions} partitions"),
            }
            Ok(())
        }
    }
}

/// Earliest and latest offsets of every partition of `topic` (each asked of its leader).
fn offsets(c: &mut Client, topic: &str, partitions: &[i32]) -> Result<Vec<(i64, i64)>, CliError> {
    let parts: Vec<(String, i32)> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let earliest = list_offsets(c, &parts, -2)?;
    let latest = list_offsets(c, &parts, -1)?;
    parts
        .iter()
        .map(|k| match (earliest.get(k), latest.get(k)) {
            (Some(e), Some(l)) => Ok((*e, *l)),
            _ => Err(CliError::Protocol(format!(
                "no offsets for partition {}",
                k.1
            ))),
        })
        .collect()
}

/// A compacted partition as its leader's log cleaner last saw it: dirty ratio and last
/// clean (ms since the epoch).
type Compaction = (Option<f64>, Option<i64>);

/// The compaction figures of `topic`'s partitions, asked of each partition's leader
/// (DescribeLogDirs with Rill's tagged fields; replicas compact on their own, and the
/// leader's log is the one consumers read).
fn compaction_of(
    m: &MetadataResponse,
    topic: &str,
    partitions: &[&metadata_response::MetadataResponsePartition],
) -> Result<std::collections::BTreeMap<i32, Compaction>, CliError> {
    use rill_net::rill_tags;
    use std::collections::BTreeMap;
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions.iter().filter(|p| p.leader_id.0 >= 0) {
        by_leader
            .entry(p.leader_id.0)
            .or_default()
            .push(p.partition_index);
    }
    let mut out = BTreeMap::new();
    for (leader, indexes) in by_leader {
        let r = connect_leader(m, leader)?.send(&DescribeLogDirsRequest::default().with_topics(
            Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(indexes.clone()),
            ]),
        ))?;
        for d in &r.results {
            for t in d.topics.iter().filter(|t| &*t.name.0 == topic) {
                for p in t
                    .partitions
                    .iter()
                    .filter(|p| indexes.contains(&p.partition_index))
                {
                    let tag = |k| {
                        p.unknown_tagged_fields
                            .get(&k)
                            .and_then(|v| rill_tags::eight_bytes(v))
                    };
                    out.insert(
                        p.partition_index,
                        (
                            tag(rill_tags::LOG_DIR_DIRTY_RATIO).map(f64::from_be_bytes),
                            tag(rill_tags::LOG_DIR_LAST_CLEAN_MS).map(i64::from_be_bytes),
                        ),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// How long ago `ms` (since the epoch) was, for people: "42s ago", "3m ago", "2h ago".
fn ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let s = (now - ms).max(0) / 1000;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

fn describe(name: &str, common: &Common) -> Result<(), CliError> {
    let mut c = Client::connect(&common.bootstrap)?;
    // Describing must not create the topic, whatever the broker's auto-create setting.
    let r = c.send(
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(topic_name(name)))])),
    )?;
    let t = r
        .topics
        .first()
        .ok_or_else(|| CliError::Protocol("empty Metadata response".into()))?;
    check(format!("describe topic {name}"), t.error_code, None)?;
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    let indexes: Vec<i32> = parts.iter().map(|p| p.partition_index).collect();
    let offs = offsets(&mut c, name, &indexes)?;
    let configs = describe_configs(&mut c, 2, name)?;
    let compacted = configs
        .iter()
        .any(|(k, v, _)| k == "cleanup.policy" && v.contains("compact"));
    let compaction = if compacted {
        compaction_of(&r, name, &parts)?
    } else {
        Default::default()
    };
    let ids = |v: &[BrokerId]| {
        v.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match common.output {
        Output::Json => {
            let partitions: Vec<_> = parts
                .iter()
                .zip(&offs)
                .map(|(p, (lo, hi))| {
                    let mut row = json!({
                        "partition": p.partition_index,
                        "leader": p.leader_id.0,
                        "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                        "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                        "earliest_offset": lo,
                        "latest_offset": hi,
                    });
                    if compacted {
                        let (dirty, last) = compaction
                            .get(&p.partition_index)
                            .copied()
                            .unwrap_or_default();
                        row["dirty_ratio"] = json!(dirty);
                        row["last_clean_ms"] = json!(last);
                    }
                    row
                })
                .collect();
            let cfg: serde_json::Map<String, serde_json::Value> = configs
                .iter()
                .map(|(k, v, src)| (k.clone(), json!({"value": v, "source": src})))
                .collect();
            println!(
                "{}",
                json!({"topic": name, "topic_id": t.topic_id.to_string(), "partitions": partitions, "configs": cfg})
            );
        }
        Output::Table => {
            println!(
                "topic {name}  id {}  partitions {}",
                t.topic_id,
                parts.len()
            );
            let rows: Vec<Vec<String>> = parts
                .iter()
                .zip(&offs)
                .map(|(p, (lo, hi))| {
                    let mut row = vec![
                        p.partition_index.to_string(),
                        p.leader_id.0.to_string(),
                        ids(&p.replica_nodes),
                        ids(&p.isr_nodes),
                        lo.to_string(),
                        hi.to_string(),
                    ];
                    if compacted {
                        let (dirty, last) = compaction
                            .get(&p.partition_index)
                            .copied()
                            .unwrap_or_default();
                        row.push(dirty.map_or("-".into(), |d| format!("{d:.2}")));
                        row.push(last.map_or("never".into(), ago));
                    }
                    row
                })
                .collect();
            let mut heads = vec![
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "EARLIEST",
                "LATEST",
            ];
            if compacted {
                heads.extend(["DIRTY", "LAST CLEAN"]);
            }
            print!("{}", table(&heads, &rows));
            println!();
            print_configs(&configs);
        }
    }
    Ok(())
}

/// (name, value, source) of every config of a resource.
fn describe_configs(
    c: &mut Client,
    resource_type: i8,
    name: &str,
) -> Result<Vec<(String, String, &'static str)>, CliError> {
    let r = c.send(&DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(None),
    ]))?;
    let res = r
        .results
        .first()
        .ok_or_else(|| CliError::Protocol("empty DescribeConfigs response".into()))?;
    check(
        format!("configs of {name}"),
        res.error_code,
        msg(&res.error_message),
    )?;
    Ok(res
        .configs
        .iter()
        .map(|e| {
            let source = match e.config_source {
                1 => "topic",
                2 | 3 => "broker (dynamic)",
                4 => "broker (rill.toml)",
                5 => "default",
                _ => "unknown",
            };
            (
                e.name.to_string(),
                e.value.as_deref().unwrap_or("").to_string(),
                source,
            )
        })
        .collect())
}

fn print_configs(configs: &[(String, String, &'static str)]) {
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|(k, v, src)| vec![k.clone(), v.clone(), src.to_string()])
        .collect();
    print!("{}", table(&["CONFIG", "VALUE", "SOURCE"], &rows));
}

pub fn config(cmd: ConfigCmd) -> Result<(), CliError> {
    let resource_type = |r: Resource| match r {
        Resource::Topic => 2i8,
        Resource::Broker => 4i8,
    };
    match cmd {
        ConfigCmd::Get {
            resource,
            name,
            common,
        } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let configs = describe_configs(&mut c, resource_type(resource), &name)?;
            match common.output {
                Output::Json => {
                    let m: serde_json::Map<String, serde_json::Value> = configs
                        .iter()
                        .map(|(k, v, src)| (k.clone(), json!({"value": v, "source": src})))
                        .collect();
                    println!("{}", serde_json::Value::Object(m));
                }
                Output::Table => print_configs(&configs),
            }
            Ok(())
        }
        ConfigCmd::Set {
            resource,
            name,
            pairs,
            common,
        } => {
            let mut ops = Vec::new();
            for kv in &pairs {
                let (k, v) = pair(kv)?;
                ops.push((k, 0i8, Some(v)));
            }
            alter(&common, resource_type(resource), &name, ops)
        }
        ConfigCmd::Delete {
            resource,
            name,
            keys,
            common,
        } => {
            let ops = keys.into_iter().map(|k| (k, 1i8, None)).collect();
            alter(&common, resource_type(resource), &name, ops)
        }
    }
}

fn alter(
    common: &Common,
    resource_type: i8,
    name: &str,
    ops: Vec<(String, i8, Option<String>)>,
) -> Result<(), CliError> {
    let mut c = Client::connect(&common.bootstrap)?;
    let configs = ops
        .iter()
        .map(|(k, op, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(*op)
                .with_value(v.as_deref().map(s))
        })
        .collect();
    let r = c.send(
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(configs),
        ]),
    )?;
    let res = r
        .responses
        .first()
        .ok_or_else(|| CliError::Protocol("empty IncrementalAlterConfigs response".into()))?;
    check(
        format!("alter configs of {name}"),
        res.error_code,
        msg(&res.error_message),
    )?;
    match common.output {
        Output::Json => println!(
            "{}",
            json!({"resource": name, "changed": ops.iter().map(|(k, _, _)| k).collect::<Vec<_>>()})
        ),
        Output::Table => println!("updated {} config(s) of {name}", ops.len()),
    }
    Ok(())
}

pub fn cluster(cmd: ClusterCmd) -> Result<(), CliError> {
    match cmd {
        ClusterCmd::Info { common } => cluster_info(common),
        ClusterCmd::Decommission { id, common } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let r = c.send(&UnregisterBrokerRequest::default().with_broker_id(BrokerId(id)))?;
            check(
                format!("decommission broker {id}"),
                r.error_code,
                msg(&r.error_message),
            )?;
            match common.output {
                Output::Json => println!("{}", json!({"decommissioning": id})),
                Output::Table => println!(
                    "broker {id} is decommissioning: its replicas move to other brokers (rill cluster reassignments); it leaves the cluster when it holds none"
                ),
            }
            Ok(())
        }
        ClusterCmd::Reassign {
            topic,
            partition,
            replicas,
            common,
        } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let request = AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![
                            alter_partition_reassignments_request::ReassignablePartition::default()
                                .with_partition_index(partition)
                                .with_replicas(Some(
                                    replicas.iter().map(|b| BrokerId(*b)).collect(),
                                )),
                        ]),
                ]);
            let r = c.send(&request)?;
            check("reassign", r.error_code, msg(&r.error_message))?;
            let p = r
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| {
                    CliError::Protocol("empty AlterPartitionReassignments response".into())
                })?;
            check(
                format!("reassign {topic}-{partition}"),
                p.error_code,
                msg(&p.error_message),
            )?;
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!({"topic": topic, "partition": partition, "target": replicas})
                ),
                Output::Table => println!(
                    "{topic}-{partition} is moving to {replicas:?} (rill cluster reassignments)"
                ),
            }
            Ok(())
        }
        ClusterCmd::Reassignments { common } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let r = c.send(
                &ListPartitionReassignmentsRequest::default()
                    .with_timeout_ms(30_000)
                    .with_topics(None),
            )?;
            check("list reassignments", r.error_code, msg(&r.error_message))?;
            let ids = |v: &[BrokerId]| {
                v.iter()
                    .map(|b| b.0.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut rows = Vec::new();
            for t in &r.topics {
                for p in &t.partitions {
                    rows.push(vec![
                        t.name.0.to_string(),
                        p.partition_index.to_string(),
                        ids(&p.replicas),
                        ids(&p.adding_replicas),
                        ids(&p.removing_replicas),
                    ]);
                }
            }
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!(rows
                        .iter()
                        .map(|r| json!({"topic": r[0], "partition": r[1].parse::<i32>().unwrap_or(-1), "replicas": r[2], "adding": r[3], "removing": r[4]}))
                        .collect::<Vec<_>>())
                ),
                Output::Table => print!(
                    "{}",
                    table(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"], &rows)
                ),
            }
            Ok(())
        }
    }
}

fn cluster_info(common: Common) -> Result<(), CliError> {
    let mut c = Client::connect(&common.bootstrap)?;
    let d = c.send(&DescribeClusterRequest::default())?;
    check("describe cluster", d.error_code, msg(&d.error_message))?;
    let m = c.send(&MetadataRequest::default().with_topics(None))?;
    // User topics only: internal ones (__consumer_offsets) appear with the first group.
    let user: Vec<_> = m.topics.iter().filter(|t| !t.is_internal).collect();
    let partitions: usize = user.iter().map(|t| t.partitions.len()).sum();
    match common.output {
        Output::Json => println!(
            "{}",
            json!({
                "cluster_id": d.cluster_id.to_string(),
                "controller": d.controller_id.0,
                "brokers": d.brokers.iter().map(|b| json!({"id": b.broker_id.0, "host": b.host.to_string(), "port": b.port})).collect::<Vec<_>>(),
                "topics": user.len(),
                "partitions": partitions,
            })
        ),
        Output::Table => {
            println!("cluster id  {}", &*d.cluster_id);
            println!("controller  {}", d.controller_id.0);
            println!("topics      {}", user.len());
            println!("partitions  {partitions}");
            println!();
            let rows: Vec<Vec<String>> = d
                .brokers
                .iter()
                .map(|b| {
                    vec![
                        b.broker_id.0.to_string(),
                        format!("{}:{}", &*b.host, b.port),
                    ]
                })
                .collect();
            print!("{}", table(&["BROKER", "ADDRESS"], &rows));
        }
    }
    Ok(())
}
