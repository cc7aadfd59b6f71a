//! Request handlers: one function per Kafka api, turning a decoded request into its response.
//! They run on the shard that serves the connection and reach partitions through
//! [`Shard::partition_op`] and the registry through [`Shard::admin`].

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use rill_net::codec::{api_versions_response, encode_fetch_response, SUPPORTED_VERSIONS};
use rill_net::header::unsupported_api_versions_response;
use rill_net::kafka_protocol::messages::metadata_response::*;
use rill_net::kafka_protocol::messages::produce_response::*;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::{encode_response, ApiResponse, ApiVersionRange, DecodeError, ErrorCode, Request};
use tracing::{error, warn};

use crate::errors::KafkaError;
use crate::fetch;
use crate::group::OFFSETS_TOPIC;
use crate::groups;
use crate::metadata::{check_topic_name, TopicInfo};
use crate::shard::{AdminOk, AdminOp, ConfigChange, OpOk, PartitionOp, Shard};
use crate::topic_config::{self, Source, TOPIC_CONFIGS};

/// What the connection's writer does with a request's outcome.
#[derive(Debug)]
pub enum Reply {
    /// Send this frame (pieces in order).
    Frame(Vec<Bytes>),
    /// Send nothing (Produce with acks=0).
    NoResponse,
    /// Close the connection after earlier answers went out.
    Close,
}

/// Apis in the codec table that the broker does not serve; they are not advertised, so
/// clients do not try them.
const NOT_SERVED: &[ApiKey] = &[];

/// The apis and versions this broker advertises and accepts.
pub fn api_table() -> Vec<ApiVersionRange> {
    SUPPORTED_VERSIONS
        .iter()
        .filter(|(k, _, _)| !NOT_SERVED.contains(k))
        .copied()
        .collect()
}

/// The answer to a request that did not decode: ApiVersions at an unknown version gets the
/// KIP-511 v0 answer; anything else closes the connection, as Kafka does.
pub fn decode_error_reply(e: &DecodeError) -> Reply {
    if let DecodeError::UnsupportedVersion {
        api_key: ApiKey::ApiVersions,
        correlation_id,
        ..
    } = e
    {
        let (min, max) =
            rill_net::codec::version_range(&api_table(), ApiKey::ApiVersions).unwrap_or((0, 3));
        let response = unsupported_api_versions_response(min, max);
        return match encode_response(*correlation_id, 0, &response) {
            Ok(frame) => Reply::Frame(vec![frame]),
            Err(_) => Reply::Close,
        };
    }
    Reply::Close
}

fn frame<R: ApiResponse + std::fmt::Debug>(correlation_id: i32, version: i16, r: &R) -> Reply {
    match encode_response(correlation_id, version, r) {
        Ok(f) => Reply::Frame(vec![f]),
        Err(e) => {
            error!(error = %e, "cannot encode response; closing the connection");
            Reply::Close
        }
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}

/// Serves one decoded request.
pub async fn handle(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: Request,
    peer: &str,
) -> Reply {
    let v = header.request_api_version;
    let cid = header.correlation_id;
    let client_id = header.client_id.as_deref().unwrap_or("").to_string();
    match request {
        Request::ApiVersions(_) => frame(cid, v, &api_versions_response(&api_table())),
        Request::Metadata(r) => frame(cid, v, &metadata(&shard, r, v).await),
        Request::Produce(r) => {
            let acks = r.acks;
            let response = produce(&shard, r).await;
            if acks == 0 {
                return Reply::NoResponse;
            }
            frame(cid, v, &response)
        }
        Request::Fetch(r) => {
            let response = fetch::fetch(&shard, r, v).await;
            match encode_fetch_response(cid, v, &response) {
                Ok(pieces) => Reply::Frame(pieces),
                Err(e) => {
                    error!(error = %e, "cannot encode fetch response; closing the connection");
                    Reply::Close
                }
            }
        }
        Request::ListOffsets(r) => frame(cid, v, &list_offsets(&shard, r, v).await),
        Request::CreateTopics(r) => frame(cid, v, &create_topics(&shard, r, v).await),
        Request::DeleteTopics(r) => frame(cid, v, &delete_topics(&shard, r).await),
        Request::CreatePartitions(r) => frame(cid, v, &create_partitions(&shard, r).await),
        Request::DescribeConfigs(r) => frame(cid, v, &describe_configs(&shard, r, v)),
        Request::AlterConfigs(r) => frame(cid, v, &alter_configs(&shard, r).await),
        Request::IncrementalAlterConfigs(r) => {
            frame(cid, v, &incremental_alter_configs(&shard, r).await)
        }
        Request::DeleteRecords(r) => frame(cid, v, &delete_records(&shard, r).await),
        Request::DescribeCluster(r) => frame(cid, v, &describe_cluster(&shard, r)),
        Request::AlterPartitionReassignments(r) => {
            frame(cid, v, &crate::reassign::alter(&shard, r, v).await)
        }
        Request::UnregisterBroker(r) => {
            frame(cid, v, &crate::reassign::decommission(&shard, r).await)
        }
        Request::ListPartitionReassignments(r) => frame(cid, v, &crate::reassign::list(&shard, r)),
        Request::InitProducerId(r) => frame(cid, v, &init_producer_id(&shard, r).await),
        Request::FindCoordinator(r) => frame(cid, v, &find_coordinator(&shard, r, v).await),
        Request::JoinGroup(r) => {
            let host = format!("/{}", peer.rsplit_once(':').map_or(peer, |(h, _)| h));
            frame(cid, v, &groups::join(&shard, r, v, client_id, host).await)
        }
        Request::SyncGroup(r) => frame(cid, v, &groups::sync(&shard, r).await),
        Request::Heartbeat(r) => frame(cid, v, &groups::heartbeat(&shard, r).await),
        Request::LeaveGroup(r) => frame(cid, v, &groups::leave(&shard, r, v).await),
        Request::OffsetCommit(r) => frame(cid, v, &groups::commit(&shard, r, v).await),
        Request::OffsetFetch(r) => frame(cid, v, &groups::fetch(&shard, r, v).await),
        Request::ListGroups(r) => frame(cid, v, &groups::list(&shard, r).await),
        Request::DescribeGroups(r) => frame(cid, v, &groups::describe(&shard, r).await),
        Request::DeleteGroups(r) => frame(cid, v, &groups::delete(&shard, r).await),
        Request::OffsetDelete(r) => frame(cid, v, &groups::offset_delete(&shard, r).await),
        Request::ConsumerGroupHeartbeat(r) => {
            let host = format!("/{}", peer.rsplit_once(':').map_or(peer, |(h, _)| h));
            let answer = groups::consumer_heartbeat(&shard, r, v, client_id, host).await;
            frame(cid, v, &answer)
        }
        Request::ConsumerGroupDescribe(r) => {
            frame(cid, v, &groups::consumer_describe(&shard, r).await)
        }
    }
}

async fn metadata(shard: &Rc<Shard>, r: MetadataRequest, v: i16) -> MetadataResponse {
    let config = &shard.config;
    let mut snap = shard.snapshot();
    let names: Vec<Result<String, KafkaError>> = match &r.topics {
        None => snap.topics.keys().map(|k| Ok(k.to_string())).collect(),
        Some(list) if list.is_empty() && v == 0 => {
            snap.topics.keys().map(|k| Ok(k.to_string())).collect()
        }
        Some(list) => list
            .iter()
            .map(|t| match &t.name {
                Some(n) => Ok(n.0.to_string()),
                None => snap
                    .topic_by_id(t.topic_id)
                    .map(|t| t.name.to_string())
                    .ok_or_else(|| KafkaError::code(ErrorCode::UnknownTopicId)),
            })
            .collect(),
    };
    let auto_create = config.auto_create_topics && (v < 4 || r.allow_auto_topic_creation);
    let mut topics = Vec::with_capacity(names.len());
    // The cluster's placement, read once per request (again after an auto-creation).
    let mut view = shard.cluster.as_ref().map(|c| c.view());
    for name in names {
        let name = match name {
            Ok(n) => n,
            Err(e) => {
                topics.push(MetadataResponseTopic::default().with_error_code(e.code.code()));
                continue;
            }
        };
        let mut found = snap.topic(&name).cloned();
        let mut error = ErrorCode::UnknownTopicOrPartition;
        if found.is_none() {
            if let Err(e) = check_topic_name(&name) {
                warn!(topic = %name, error = %e, "metadata for an invalid topic name");
                error = ErrorCode::InvalidTopicException;
            } else if auto_create {
                let created = match &shard.cluster {
                    Some(cluster) => {
                        cluster_create_topic(
                            shard,
                            cluster,
                            &name,
                            config.default_partitions,
                            cluster.default_replication_factor,
                            Vec::new(),
                            false,
                        )
                        .await
                    }
                    _ => {
                        let op = AdminOp::CreateTopic {
                            name: name.clone(),
                            partitions: config.default_partitions,
                            configs: Vec::new(),
                            validate_only: false,
                        };
                        shard.admin(op).await.and_then(|ok| match ok {
                            AdminOk::Topic(t) => Ok(t),
                            _ => Err(KafkaError::code(ErrorCode::UnknownServerError)),
                        })
                    }
                };
                match created {
                    Ok(t) => found = Some(t),
                    Err(e) if e.code == ErrorCode::TopicAlreadyExists => {}
                    Err(e) => error = e.code,
                }
                snap = shard.snapshot();
                view = shard.cluster.as_ref().map(|c| c.view());
                if found.is_none() {
                    found = snap.topic(&name).cloned();
                }
            }
        }
        topics.push(match found {
            Some(t) => match view.as_ref().and_then(|v| v.topics.get(&*t.name)) {
                Some(placed) => cluster_metadata_topic(&t, placed),
                None => metadata_topic(&t, config.node_id),
            },
            None => MetadataResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_error_code(error.code()),
        });
    }
    let (brokers, controller) = live_brokers(shard);
    MetadataResponse::default()
        .with_brokers(
            brokers
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
        .with_cluster_id(Some(s(cluster_id(shard))))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

/// A cluster topic with the cluster's placement: leader (LEADER_NOT_AVAILABLE while none),
/// leader epoch, replicas and ISR per partition.
fn cluster_metadata_topic(
    t: &TopicInfo,
    placed: &crate::cluster::TopicView,
) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_partitions(
            placed
                .partitions
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

fn metadata_topic(t: &TopicInfo, node_id: i32) -> MetadataResponseTopic {
    let node = BrokerId(node_id);
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_is_internal(&*t.name == OFFSETS_TOPIC)
        .with_partitions(
            (0..t.partitions)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(node)
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![node])
                        .with_isr_nodes(vec![node])
                })
                .collect(),
        )
}

async fn produce(shard: &Rc<Shard>, r: ProduceRequest) -> ProduceResponse {
    let refuse = if !matches!(r.acks, -1..=1) {
        Some(KafkaError::new(
            ErrorCode::InvalidRequiredAcks,
            format!("acks must be -1, 0 or 1, not {}", r.acks),
        ))
    } else if r.transactional_id.is_some() {
        Some(KafkaError::new(
            ErrorCode::InvalidRequest,
            "transactions are not supported yet",
        ))
    } else {
        None
    };
    let mut work = Vec::new();
    for t in &r.topic_data {
        let topic: Arc<str> = Arc::from(&*t.name.0);
        let internal = (&*topic == OFFSETS_TOPIC).then(|| {
            KafkaError::new(
                ErrorCode::InvalidTopicException,
                format!("{OFFSETS_TOPIC} is internal: only the group coordinator writes it"),
            )
        });
        for p in &t.partition_data {
            let topic = topic.clone();
            let index = p.index;
            let records = p.records.clone();
            let (bytes, count) = records.as_deref().map_or((0, 0), batch_stats);
            let refuse = refuse.clone().or_else(|| internal.clone());
            let shard = shard.clone();
            let acks = r.acks;
            work.push(async move {
                let result = match (refuse, records) {
                    (Some(e), _) => Err(e),
                    (None, None) => Err(KafkaError::new(
                        ErrorCode::CorruptMessage,
                        "produce partition carries no records",
                    )),
                    (None, Some(batch)) => {
                        let reply = shard
                            .partition_op(&topic, index, PartitionOp::Produce { batch, acks })
                            .await;
                        reply.result.map(|ok| (ok, reply.offsets.log_start_offset))
                    }
                };
                (topic, index, result, bytes, count)
            });
        }
    }
    let results = futures_util::future::join_all(work).await;
    let mut responses: Vec<TopicProduceResponse> = Vec::new();
    for (topic, index, result, bytes, records) in results {
        match &result {
            Ok(_) => shard.metrics.produced(&topic, bytes, records),
            Err(e) => shard.metrics.error("Produce", e.code),
        }
        let mut part = PartitionProduceResponse::default().with_index(index);
        match result {
            Ok((
                OpOk::Produced {
                    base_offset,
                    log_append_time,
                },
                log_start_offset,
            )) => {
                part = part
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(log_append_time)
                    .with_log_start_offset(log_start_offset);
            }
            Ok(_) => {}
            Err(e) => {
                part = part
                    .with_error_code(e.code.code())
                    .with_base_offset(-1)
                    .with_error_message(e.message_str());
            }
        }
        match responses.last_mut() {
            Some(t) if *t.name.0 == *topic => t.partition_responses.push(part),
            _ => responses.push(
                TopicProduceResponse::default()
                    .with_name(topic_name(&topic))
                    .with_partition_responses(vec![part]),
            ),
        }
    }
    ProduceResponse::default().with_responses(responses)
}

/// Bytes and records of the record batches in a produce partition (records counted from
/// each batch header; a malformed tail counts as bytes only).
fn batch_stats(data: &[u8]) -> (u64, u64) {
    let mut records = 0u64;
    let mut at = 0usize;
    while data.len() >= at + 61 {
        let len = i32::from_be_bytes([data[at + 8], data[at + 9], data[at + 10], data[at + 11]]);
        let count =
            i32::from_be_bytes([data[at + 57], data[at + 58], data[at + 59], data[at + 60]]);
        if len <= 0 || count < 0 {
            break;
        }
        records += count as u64;
        at += 12 + len as usize;
    }
    (data.len() as u64, records)
}

async fn list_offsets(shard: &Rc<Shard>, r: ListOffsetsRequest, v: i16) -> ListOffsetsResponse {
    use rill_net::kafka_protocol::messages::list_offsets_response::*;
    let mut topics = Vec::new();
    for t in r.topics {
        let topic: Arc<str> = Arc::from(&*t.name.0);
        let work = t.partitions.iter().map(|p| {
            let op = PartitionOp::ListOffsets {
                timestamp: p.timestamp,
            };
            let topic = topic.clone();
            let index = p.partition_index;
            async move { (index, shard.partition_op(&topic, index, op).await) }
        });
        let partitions = futures_util::future::join_all(work)
            .await
            .into_iter()
            .map(|(index, reply)| {
                let part = ListOffsetsPartitionResponse::default().with_partition_index(index);
                match reply.result {
                    // leader_epoch exists from v4 on; its default (-1) means unknown.
                    Ok(OpOk::Offset { offset, timestamp }) if v >= 4 => part
                        .with_offset(offset)
                        .with_timestamp(timestamp)
                        .with_leader_epoch(0),
                    Ok(OpOk::Offset { offset, timestamp }) => {
                        part.with_offset(offset).with_timestamp(timestamp)
                    }
                    Ok(_) => part,
                    Err(e) => {
                        shard.metrics.error("ListOffsets", e.code);
                        part.with_error_code(e.code.code())
                            .with_offset(-1)
                            .with_timestamp(-1)
                    }
                }
            })
            .collect();
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Config entries as CreateTopics v5+ returns them.
fn created_configs(
    shard: &Shard,
    t: &TopicInfo,
) -> Vec<create_topics_response::CreatableTopicConfigs> {
    TOPIC_CONFIGS
        .iter()
        .map(|k| {
            let (value, source) =
                topic_config::effective(k.name, &shard.snapshot().defaults, &t.configs);
            create_topics_response::CreatableTopicConfigs::default()
                .with_name(s(k.name))
                .with_value(Some(s(value)))
                .with_config_source(source as i8)
        })
        .collect()
}

async fn create_topics(shard: &Rc<Shard>, r: CreateTopicsRequest, v: i16) -> CreateTopicsResponse {
    use create_topics_response::CreatableTopicResult;
    let node = shard.config.node_id;
    let mut results = Vec::with_capacity(r.topics.len());
    for (i, t) in r.topics.iter().enumerate() {
        let name = t.name.0.to_string();
        let duplicate = r
            .topics
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.name == t.name);
        let outcome: Result<Arc<TopicInfo>, KafkaError> = async {
            if duplicate {
                return Err(KafkaError::new(
                    ErrorCode::InvalidRequest,
                    format!("topic `{name}` appears more than once in the request"),
                ));
            }
            check_topic_name(&name).map_err(|e| KafkaError::new(ErrorCode::InvalidTopicException, e))?;
            if let Some(cluster) = shard.cluster.as_ref() {
                if !t.assignments.is_empty() {
                    return Err(KafkaError::new(
                        ErrorCode::InvalidRequest,
                        "manual replica assignments are not taken in cluster mode yet; give num_partitions and replication_factor",
                    ));
                }
                let rf = match t.replication_factor {
                    -1 => cluster.default_replication_factor,
                    rf if rf >= 1 => rf as usize,
                    rf => {
                        return Err(KafkaError::new(
                            ErrorCode::InvalidReplicationFactor,
                            format!("replication factor {rf} must be at least 1"),
                        ))
                    }
                };
                let partitions = if t.num_partitions == -1 {
                    shard.config.default_partitions
                } else {
                    t.num_partitions
                };
                let mut configs = Vec::with_capacity(t.configs.len());
                for c in &t.configs {
                    let value = c.value.as_ref().ok_or_else(|| {
                        KafkaError::new(ErrorCode::InvalidConfig, format!("config `{}` has no value", &*c.name))
                    })?;
                    configs.push((c.name.to_string(), value.to_string()));
                }
                return cluster_create_topic(shard, cluster, &name, partitions, rf, configs, r.validate_only).await;
            }
            let rf = t.replication_factor;
            let partitions = if t.assignments.is_empty() {
                if rf != -1 && rf != 1 {
                    return Err(KafkaError::new(
                        ErrorCode::InvalidReplicationFactor,
                        format!("replication factor {rf} is larger than the 1 broker available"),
                    ));
                }
                if t.num_partitions == -1 {
                    shard.config.default_partitions
                } else {
                    t.num_partitions
                }
            } else {
                if t.num_partitions != -1 || rf != -1 {
                    return Err(KafkaError::new(
                        ErrorCode::InvalidRequest,
                        "give either replica assignments or num_partitions/replication_factor, not both",
                    ));
                }
                let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
                indexes.sort_unstable();
                if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
                    return Err(KafkaError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        "assigned partitions must be numbered 0..n",
                    ));
                }
                if t.assignments.iter().any(|a| a.broker_ids != [BrokerId(node)]) {
                    return Err(KafkaError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("every partition must be assigned to broker {node}, the only one"),
                    ));
                }
                t.assignments.len() as i32
            };
            let mut configs = Vec::with_capacity(t.configs.len());
            for c in &t.configs {
                let value = c.value.as_ref().ok_or_else(|| {
                    KafkaError::new(ErrorCode::InvalidConfig, format!("config `{}` has no value", &*c.name))
                })?;
                configs.push((c.name.to_string(), value.to_string()));
            }
            let op = AdminOp::CreateTopic {
                name: name.clone(),
                partitions,
                configs,
                validate_only: r.validate_only,
            };
            match shard.admin(op).await? {
                AdminOk::Topic(t) => Ok(t),
                _ => Err(KafkaError::code(ErrorCode::UnknownServerError)),
            }
        }
        .await;
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        results.push(match outcome {
            Ok(info) => {
                let mut ok = result;
                if v >= 5 {
                    ok = ok
                        .with_num_partitions(info.partitions)
                        .with_replication_factor(1)
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

/// How long a committed topic change may take to reach this broker's registry.
const CLUSTER_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until this broker's view of `name` satisfies `done`.
async fn wait_for_sync(
    shard: &Rc<Shard>,
    name: &str,
    done: impl Fn(Option<&Arc<TopicInfo>>) -> bool,
) -> Result<(), KafkaError> {
    let started = std::time::Instant::now();
    loop {
        if done(shard.snapshot().topic(name)) {
            return Ok(());
        }
        if started.elapsed() > CLUSTER_SYNC_WAIT {
            return Err(KafkaError::new(
                ErrorCode::RequestTimedOut,
                format!("topic `{name}` changed in the cluster but not yet on this broker"),
            ));
        }
        crate::runtime::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// CreateTopics in cluster mode: checked here (name, configs, limits), placed and committed
/// by the metadata raft group, answered once this broker has the topic too.
async fn cluster_create_topic(
    shard: &Rc<Shard>,
    cluster: &crate::cluster::Cluster,
    name: &str,
    partitions: i32,
    replication_factor: usize,
    configs: Vec<(String, String)>,
    validate_only: bool,
) -> Result<Arc<TopicInfo>, KafkaError> {
    let checked = match shard
        .admin(AdminOp::CreateTopic {
            name: name.to_string(),
            partitions,
            configs: configs.clone(),
            validate_only: true,
        })
        .await?
    {
        AdminOk::Topic(t) => t,
        _ => return Err(KafkaError::code(ErrorCode::UnknownServerError)),
    };
    if validate_only {
        return Ok(checked);
    }
    cluster
        .request(crate::cluster::ClusterOp::CreateTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs: configs.into_iter().collect(),
        })
        .await?;
    wait_for_sync(shard, name, |t| t.is_some()).await?;
    shard
        .snapshot()
        .topic(name)
        .cloned()
        .ok_or_else(|| KafkaError::unknown_topic(name))
}

/// CreatePartitions in cluster mode: checked here (limits), placed and committed by the
/// cluster, answered once this broker has the new partitions.
async fn cluster_create_partitions(
    shard: &Rc<Shard>,
    cluster: &crate::cluster::Cluster,
    name: &str,
    count: i32,
    validate_only: bool,
) -> Result<AdminOk, KafkaError> {
    let checked = shard
        .admin(AdminOp::CreatePartitions {
            name: name.to_string(),
            count,
            validate_only: true,
        })
        .await?;
    if validate_only {
        return Ok(checked);
    }
    cluster
        .request(crate::cluster::ClusterOp::CreatePartitions {
            name: name.to_string(),
            count,
        })
        .await?;
    wait_for_sync(shard, name, |t| t.is_some_and(|t| t.partitions >= count)).await?;
    Ok(checked)
}

/// A topic config change in cluster mode: validated against this broker's view (the
/// resulting configs must resolve), then committed as the difference to the cluster.
async fn cluster_alter_topic(
    shard: &Rc<Shard>,
    cluster: &crate::cluster::Cluster,
    name: &str,
    change: ConfigChange,
    validate_only: bool,
) -> Result<(), KafkaError> {
    let before: std::collections::BTreeMap<String, String> = shard
        .snapshot()
        .topic(name)
        .ok_or_else(|| KafkaError::unknown_topic(name))?
        .configs
        .iter()
        .cloned()
        .collect();
    let after: std::collections::BTreeMap<String, String> = match shard
        .admin(AdminOp::AlterConfigs {
            name: name.to_string(),
            change,
            validate_only: true,
        })
        .await?
    {
        AdminOk::Topic(t) => t.configs.iter().cloned().collect(),
        _ => return Err(KafkaError::code(ErrorCode::UnknownServerError)),
    };
    if validate_only || before == after {
        return Ok(());
    }
    let changes = config_diff(&before, &after);
    cluster
        .request(crate::cluster::ClusterOp::AlterTopicConfigs {
            name: name.to_string(),
            changes,
        })
        .await?;
    let want: Vec<(String, String)> = after.into_iter().collect();
    wait_for_sync(shard, name, |t| {
        t.is_some_and(|t| {
            let mut have = t.configs.clone();
            have.sort();
            have == want
        })
    })
    .await
}

/// What turns config set `before` into `after`: set (`Some`) or removed (`None`) keys.
fn config_diff(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
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

/// Broker-level config change in cluster mode: resource "" is the cluster-wide default,
/// "N" broker N's own (over the cluster-wide one). Checked here, committed as the
/// difference, answered once this broker applied it.
async fn cluster_alter_broker(
    shard: &Rc<Shard>,
    cluster: &crate::cluster::Cluster,
    resource_name: &str,
    change: ConfigChange,
    validate_only: bool,
) -> Result<(), KafkaError> {
    let view = cluster.view();
    let broker = match resource_name {
        "" => None,
        id => match id.parse::<i32>() {
            Ok(b) if view.brokers.iter().any(|x| x.id == b) => Some(b),
            _ => {
                return Err(KafkaError::new(
                    ErrorCode::InvalidRequest,
                    format!("`{id}` is not a registered broker id (use \"\" for every broker)"),
                ))
            }
        },
    };
    let before: std::collections::BTreeMap<String, String> = view
        .broker_configs
        .get(&broker)
        .cloned()
        .unwrap_or_default();
    let after: std::collections::BTreeMap<String, String> = shard
        .checked_broker_configs(before.clone().into_iter().collect(), change)?
        .into_iter()
        .collect();
    if validate_only || before == after {
        return Ok(());
    }
    let changes = config_diff(&before, &after);
    cluster
        .request(crate::cluster::ClusterOp::AlterBrokerConfigs { broker, changes })
        .await?;
    // Answered once this broker's snapshot has its new defaults (its own over the
    // cluster-wide ones), so a DescribeConfigs that follows shows them.
    let me = shard.config.node_id;
    let started = std::time::Instant::now();
    loop {
        let v = cluster.view();
        let mut want = v.broker_configs.get(&None).cloned().unwrap_or_default();
        want.extend(v.broker_configs.get(&Some(me)).cloned().unwrap_or_default());
        if shard.snapshot().defaults.dynamic == want {
            return Ok(());
        }
        if started.elapsed() > CLUSTER_SYNC_WAIT {
            return Err(KafkaError::new(
                ErrorCode::RequestTimedOut,
                "the broker configs changed in the cluster but not yet on this broker",
            ));
        }
        crate::runtime::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn cluster_delete_topic(
    shard: &Rc<Shard>,
    cluster: &crate::cluster::Cluster,
    name: &str,
) -> Result<AdminOk, KafkaError> {
    let before = shard.snapshot().topic(name).cloned();
    cluster
        .request(crate::cluster::ClusterOp::DeleteTopic {
            name: name.to_string(),
        })
        .await?;
    wait_for_sync(shard, name, |t| t.is_none()).await?;
    match before {
        Some(t) => Ok(AdminOk::Topic(t)),
        None => Ok(AdminOk::BrokerConfigs),
    }
}

async fn delete_topics(shard: &Rc<Shard>, r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    use delete_topics_response::DeletableTopicResult;
    let snap = shard.snapshot();
    // v6 names topics by name or id; earlier versions by name only.
    let mut targets: Vec<Result<String, KafkaError>> =
        r.topic_names.iter().map(|n| Ok(n.0.to_string())).collect();
    for t in &r.topics {
        targets.push(match &t.name {
            Some(n) => Ok(n.0.to_string()),
            None => snap
                .topic_by_id(t.topic_id)
                .map(|t| t.name.to_string())
                .ok_or_else(|| KafkaError::code(ErrorCode::UnknownTopicId)),
        });
    }
    let mut responses = Vec::with_capacity(targets.len());
    for target in targets {
        let outcome = match (&target, &shard.cluster) {
            (Ok(name), Some(cluster)) => cluster_delete_topic(shard, cluster, name).await,
            (Ok(name), _) => {
                shard
                    .admin(AdminOp::DeleteTopic { name: name.clone() })
                    .await
            }
            (Err(e), _) => Err(e.clone()),
        };
        let mut res =
            DeletableTopicResult::default().with_name(target.as_ref().ok().map(|n| topic_name(n)));
        match outcome {
            Ok(AdminOk::Topic(t)) => res = res.with_topic_id(t.id),
            Ok(_) => {}
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

async fn create_partitions(
    shard: &Rc<Shard>,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    use create_partitions_response::CreatePartitionsTopicResult;
    let node = BrokerId(shard.config.node_id);
    let mut results = Vec::with_capacity(r.topics.len());
    for t in &r.topics {
        let name = t.name.0.to_string();
        let bad_assignment = t
            .assignments
            .as_ref()
            .is_some_and(|a| a.iter().any(|a| a.broker_ids != [node]));
        let outcome = if bad_assignment {
            Err(KafkaError::new(
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "new partitions must be assigned to broker {}, the only one",
                    node.0
                ),
            ))
        } else if let Some(cluster) = &shard.cluster {
            cluster_create_partitions(shard, cluster, &name, t.count, r.validate_only).await
        } else {
            shard
                .admin(AdminOp::CreatePartitions {
                    name,
                    count: t.count,
                    validate_only: r.validate_only,
                })
                .await
        };
        let res = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(match outcome {
            Ok(_) => res,
            Err(e) => res
                .with_error_code(e.code.code())
                .with_error_message(e.message_str()),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn describe_configs(
    shard: &Rc<Shard>,
    r: DescribeConfigsRequest,
    v: i16,
) -> DescribeConfigsResponse {
    use describe_configs_response::*;
    let snap = shard.snapshot();
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
            RESOURCE_TOPIC => match snap.topic(&res.resource_name) {
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
                            let (value, source) = topic_config::effective(
                                k.name,
                                &shard.snapshot().defaults,
                                &t.configs,
                            );
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
                if !name.is_empty() && name != shard.config.node_id.to_string() {
                    results.push(
                        result
                            .with_error_code(ErrorCode::InvalidRequest.code())
                            .with_error_message(Some(s(format!(
                                "this is broker {}, not `{name}`",
                                shard.config.node_id
                            )))),
                    );
                    continue;
                }
                let c = &shard.config;
                let (host, port) = c.advertised();
                let mut configs: Vec<DescribeConfigsResourceResult> = TOPIC_CONFIGS
                    .iter()
                    .filter(|k| wanted(k.broker_name))
                    .map(|k| {
                        let (value, source) = topic_config::effective(k.name, &snap.defaults, &[]);
                        // Settable at run time (AlterConfigs on the broker resource).
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

/// Runs a config change on a topic or on this broker's run-time topic defaults.
async fn alter_resource(
    shard: &Rc<Shard>,
    resource_type: i8,
    resource_name: &str,
    change: ConfigChange,
    validate_only: bool,
) -> Result<(), KafkaError> {
    let op = match resource_type {
        RESOURCE_TOPIC if shard.cluster.is_some() => {
            let cluster = shard.cluster.as_ref().expect("checked");
            return cluster_alter_topic(shard, cluster, resource_name, change, validate_only).await;
        }
        RESOURCE_TOPIC => AdminOp::AlterConfigs {
            name: resource_name.to_string(),
            change,
            validate_only,
        },
        RESOURCE_BROKER if shard.cluster.is_some() => {
            let cluster = shard.cluster.as_ref().expect("checked");
            return cluster_alter_broker(shard, cluster, resource_name, change, validate_only)
                .await;
        }
        RESOURCE_BROKER => {
            // "" is the cluster-wide default; on one node it is this broker.
            let me = shard.config.node_id.to_string();
            if !resource_name.is_empty() && resource_name != me {
                return Err(KafkaError::new(
                    ErrorCode::InvalidRequest,
                    format!("this is broker {me}, not `{resource_name}`"),
                ));
            }
            AdminOp::AlterBrokerConfigs {
                change,
                validate_only,
            }
        }
        other => {
            return Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!("resource type {other} is not supported; use 2 (topic) or 4 (broker)"),
            ))
        }
    };
    shard.admin(op).await.map(|_| ())
}

async fn alter_configs(shard: &Rc<Shard>, r: AlterConfigsRequest) -> AlterConfigsResponse {
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
            ConfigChange::Replace(configs),
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

async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for res in &r.resources {
        let ops = res
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = alter_resource(
            shard,
            res.resource_type,
            &res.resource_name,
            ConfigChange::Incremental(ops),
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

async fn delete_records(shard: &Rc<Shard>, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    use delete_records_response::*;
    let mut topics = Vec::new();
    for t in r.topics {
        let topic: Arc<str> = Arc::from(&*t.name.0);
        let work = t.partitions.iter().map(|p| {
            let topic = topic.clone();
            let index = p.partition_index;
            let op = PartitionOp::DeleteRecords { offset: p.offset };
            async move { (index, shard.partition_op(&topic, index, op).await) }
        });
        let partitions = futures_util::future::join_all(work)
            .await
            .into_iter()
            .map(|(index, reply)| {
                let part = DeleteRecordsPartitionResult::default().with_partition_index(index);
                match reply.result {
                    Ok(OpOk::LowWatermark(low)) => part.with_low_watermark(low),
                    Ok(_) => part,
                    Err(e) => part.with_error_code(e.code.code()).with_low_watermark(-1),
                }
            })
            .collect();
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

fn describe_cluster(shard: &Rc<Shard>, r: DescribeClusterRequest) -> DescribeClusterResponse {
    use describe_cluster_response::DescribeClusterBroker;
    let (brokers, controller) = live_brokers(shard);
    DescribeClusterResponse::default()
        .with_endpoint_type(r.endpoint_type)
        .with_cluster_id(s(cluster_id(shard)))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            brokers
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

/// The Kafka cluster id: the cluster's in cluster mode (once its first controller named
/// it), else this broker's own.
fn cluster_id(shard: &Shard) -> String {
    shard
        .cluster
        .as_ref()
        .and_then(|c| c.view().cluster_id.clone())
        .unwrap_or_else(|| shard.snapshot().cluster_id.to_string())
}

/// The brokers clients may use and the controller's id: in cluster mode the registered,
/// unfenced brokers of the metadata raft group and its leader (-1 while none is known);
/// a single broker is its own controller.
fn live_brokers(shard: &Shard) -> (Vec<crate::cluster::BrokerView>, i32) {
    let c = &shard.config;
    let (host, port) = c.advertised();
    let me = crate::cluster::BrokerView {
        id: c.node_id,
        host: host.to_string(),
        port,
        rack: (!c.rack.is_empty()).then(|| c.rack.clone()),
        alive: true,
    };
    let Some(cluster) = &shard.cluster else {
        return (vec![me], c.node_id);
    };
    let view = cluster.view();
    let mut brokers: Vec<crate::cluster::BrokerView> =
        view.brokers.iter().filter(|b| b.alive).cloned().collect();
    // Until its registration commits, a broker still answers with itself.
    if !brokers.iter().any(|b| b.id == c.node_id) {
        brokers.push(me);
    }
    (brokers, view.controller.unwrap_or(-1))
}

/// Idempotent producers get a fresh producer id (epoch 0) from the registry; transactional
/// ids need the transaction coordinator, which Rill does not have yet.
async fn init_producer_id(shard: &Rc<Shard>, r: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if r.transactional_id.is_some() {
        warn!("InitProducerId with a transactional id refused: transactions are not supported yet");
        return failed(ErrorCode::InvalidRequest);
    }
    match shard.admin(AdminOp::AllocateProducerId).await {
        Ok(AdminOk::ProducerId(id)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Ok(_) => failed(ErrorCode::UnknownServerError),
        Err(e) => failed(e.code),
    }
}

/// Key type 0 in FindCoordinator: a consumer group (1 is a transactional id).
const COORDINATOR_GROUP: i8 = 0;

/// On a single node this broker coordinates every consumer group. Transactions have no
/// coordinator yet, which the answer says.
async fn find_coordinator(
    shard: &Rc<Shard>,
    r: FindCoordinatorRequest,
    v: i16,
) -> FindCoordinatorResponse {
    use find_coordinator_response::Coordinator;
    // The group's coordinator (creating __consumer_offsets on first use, as Kafka does, so
    // it is ready when the client's JoinGroup arrives).
    let answer = |key: StrBytes| async move {
        let coordinator = Coordinator::default().with_key(key.clone());
        if r.key_type != COORDINATOR_GROUP {
            return coordinator
                .with_node_id(BrokerId(-1))
                .with_error_code(ErrorCode::CoordinatorNotAvailable.code())
                .with_error_message(Some(s("transactions are not supported yet")));
        }
        match shard.group_coordinator(&key).await {
            Ok(b) => coordinator
                .with_node_id(BrokerId(b.id))
                .with_host(s(b.host))
                .with_port(b.port),
            Err(code) => {
                warn!(group = %key, error = ?code, "no group coordinator available");
                coordinator
                    .with_node_id(BrokerId(-1))
                    .with_error_code(code.code())
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
