//! Setup before the load: find a broker, learn the topic's layout (creating the topic if
//! asked), negotiate versions with every partition leader, and read where consumers start.
//!
//! This runs once on the main thread with blocking sockets (`std::net` wrapped for
//! `rill_net::client::Connection`), before any executor starts, so that an unreachable broker
//! or a missing topic is reported plainly and the run never begins half-connected.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use futures_lite::io::AssertAsync;
use rill_net::client::{ApiVersions, Connection, ConnectionOptions};
use rill_net::kafka_protocol::messages::create_topics_request::CreatableTopic;
use rill_net::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use rill_net::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use rill_net::kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use crate::config::Workload;
use crate::error::{error_code_name, LoadgenError};
use crate::wire::CLIENT_ID;

/// How long setup waits for a created topic's partitions to get leaders.
pub const TOPIC_READY_WAIT_MS: u64 = 15_000;
/// Socket read/write timeout for setup requests.
pub const SETUP_IO_TIMEOUT_MS: u64 = 30_000;

type SetupConnection = Connection<AssertAsync<TcpStream>>;

/// A blocking connection for setup requests.
pub struct Admin {
    conn: SetupConnection,
    versions: ApiVersions,
    addr: String,
}

fn net_err(context: impl Into<String>) -> impl FnOnce(rill_net::NetError) -> LoadgenError {
    let context = context.into();
    move |source| LoadgenError::Net { context, source }
}

impl Admin {
    /// Connects to `addr` and negotiates versions.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Admin, String> {
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| format!("{addr}: cannot resolve: {e}"))?
            .collect();
        let mut last = format!("{addr}: no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    let io = Some(Duration::from_millis(SETUP_IO_TIMEOUT_MS));
                    let _ = stream.set_read_timeout(io);
                    let _ = stream.set_write_timeout(io);
                    let _ = stream.set_nodelay(true);
                    let mut conn = Connection::with_options(
                        AssertAsync::new(stream),
                        ConnectionOptions {
                            client_id: CLIENT_ID.to_string(),
                            ..ConnectionOptions::default()
                        },
                    );
                    let versions = block_on(conn.api_versions())
                        .map_err(|e| format!("{addr}: ApiVersions failed: {e}"))?;
                    return Ok(Admin {
                        conn,
                        versions,
                        addr: addr.to_string(),
                    });
                }
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        Err(last)
    }

    /// The first bootstrap server that answers.
    pub fn bootstrap(servers: &[String], timeout: Duration) -> Result<Admin, LoadgenError> {
        let mut last = "no bootstrap servers given".to_string();
        for s in servers {
            match Admin::connect(s, timeout) {
                Ok(a) => return Ok(a),
                Err(e) => last = e,
            }
        }
        Err(LoadgenError::Unreachable {
            bootstrap: servers.join(","),
            reason: last,
        })
    }

    /// The versions negotiated with this broker.
    pub fn versions(&self) -> &ApiVersions {
        &self.versions
    }

    /// Metadata for one topic (never auto-creates it).
    pub fn metadata(&mut self, topic: &str) -> Result<MetadataResponse, LoadgenError> {
        let v = self
            .versions
            .require(ApiKey::Metadata)
            .map_err(net_err("Metadata"))?;
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        block_on(self.conn.send(v, &request))
            .map_err(net_err(format!("Metadata from {}", self.addr)))
    }

    /// Creates the topic; `Ok(false)` if it already existed.
    pub fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<bool, LoadgenError> {
        let v = self
            .versions
            .require(ApiKey::CreateTopics)
            .map_err(net_err("CreateTopics"))?;
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)])
            .with_timeout_ms(TOPIC_READY_WAIT_MS as i32);
        let response = block_on(self.conn.send(v, &request))
            .map_err(net_err(format!("CreateTopics {topic}")))?;
        let Some(result) = response.topics.first() else {
            return Err(LoadgenError::Topic {
                topic: topic.to_string(),
                reason: "CreateTopics answer names no topic".into(),
            });
        };
        match result.error_code {
            0 => Ok(true),
            c if c == ErrorCode::TopicAlreadyExists.code() => Ok(false),
            c => Err(LoadgenError::Broker {
                context: format!("creating topic {topic}"),
                code_name: error_code_name(c),
                message: result
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
            }),
        }
    }

    /// The latest offset (log end) of each partition; this broker must lead them.
    pub fn latest_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, LoadgenError> {
        let v = self
            .versions
            .require(ApiKey::ListOffsets)
            .map_err(net_err("ListOffsets"))?;
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(0)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(-1)
                        })
                        .collect(),
                )]);
        let response = block_on(self.conn.send(v, &request))
            .map_err(net_err(format!("ListOffsets from {}", self.addr)))?;
        let mut out = Vec::with_capacity(partitions.len());
        for &p in partitions {
            let answer = response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .find(|r| r.partition_index == p);
            match answer {
                Some(r) if r.error_code == 0 => out.push((p, r.offset)),
                Some(r) => {
                    return Err(LoadgenError::Broker {
                        context: format!("ListOffsets {topic}-{p}"),
                        code_name: error_code_name(r.error_code),
                        message: String::new(),
                    })
                }
                None => {
                    return Err(LoadgenError::Topic {
                        topic: topic.to_string(),
                        reason: format!("ListOffsets answer lacks partition {p}"),
                    })
                }
            }
        }
        Ok(out)
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A broker the run talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Kafka node id.
    pub node_id: i32,
    /// `host:port`.
    pub addr: String,
    /// Produce version to use with it.
    pub produce_version: i16,
    /// Fetch version to use with it.
    pub fetch_version: i16,
}

/// The topic as the run sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Topic name.
    pub topic: String,
    /// Whether this run created it.
    pub created: bool,
    /// Brokers leading at least one partition, indexed by position.
    pub brokers: Vec<BrokerInfo>,
    /// Per partition (index = partition number): index into `brokers` of its leader.
    pub leaders: Vec<usize>,
    /// Per partition: the log end offset before the run (consumers start there).
    pub start_offsets: Vec<i64>,
}

/// Does the setup for a workload: bootstrap, topic, leaders, versions, start offsets.
pub fn discover(w: &Workload) -> Result<Cluster, LoadgenError> {
    let timeout = Duration::from_millis(w.connect_timeout_ms);
    let mut admin = Admin::bootstrap(&w.bootstrap_servers(), timeout)?;
    let mut created = false;
    let mut tried_create = false;
    let deadline = Instant::now() + Duration::from_millis(TOPIC_READY_WAIT_MS);
    let (meta, layout) = loop {
        let meta = admin.metadata(&w.topic)?;
        let topic = meta.topics.first();
        let code = topic.map_or(ErrorCode::UnknownTopicOrPartition.code(), |t| t.error_code);
        if code == ErrorCode::UnknownTopicOrPartition.code() && !tried_create {
            if !w.create_topic {
                return Err(LoadgenError::Topic {
                    topic: w.topic.clone(),
                    reason:
                        "does not exist; pass --create-topic (with --partitions N) to create it"
                            .into(),
                });
            }
            created = admin.create_topic(&w.topic, w.partitions, w.replication_factor)?;
            tried_create = true;
            continue;
        }
        let layout = topic.filter(|_| code == 0).map(partition_leaders);
        match layout {
            Some(Ok(layout)) => break (meta, layout),
            _ if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(Err(reason)) => {
                return Err(LoadgenError::Topic {
                    topic: w.topic.clone(),
                    reason,
                })
            }
            None => {
                return Err(LoadgenError::Broker {
                    context: format!("metadata for topic {}", w.topic),
                    code_name: error_code_name(code),
                    message: String::new(),
                })
            }
        }
    };
    let addresses: BTreeMap<i32, String> = meta
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    let mut brokers: Vec<BrokerInfo> = Vec::new();
    let mut leaders = Vec::with_capacity(layout.len());
    let mut start_offsets = Vec::with_capacity(layout.len());
    let mut by_broker: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for (p, &node) in layout.iter().enumerate() {
        let index = match brokers.iter().position(|b| b.node_id == node) {
            Some(i) => i,
            None => {
                let addr = addresses
                    .get(&node)
                    .cloned()
                    .ok_or_else(|| LoadgenError::Topic {
                        topic: w.topic.clone(),
                        reason: format!(
                            "partition {p} is led by node {node}, which metadata does not list"
                        ),
                    })?;
                brokers.push(BrokerInfo {
                    node_id: node,
                    addr,
                    produce_version: 0,
                    fetch_version: 0,
                });
                brokers.len() - 1
            }
        };
        leaders.push(index);
        by_broker.entry(index).or_default().push(p as i32);
        start_offsets.push(0);
    }
    for (index, partitions) in by_broker {
        let b = &mut brokers[index];
        let mut leader =
            Admin::connect(&b.addr, timeout).map_err(|reason| LoadgenError::Unreachable {
                bootstrap: b.addr.clone(),
                reason: format!(
                    "partition leader {} (advertised by {}): {reason}",
                    b.node_id, admin.addr
                ),
            })?;
        b.produce_version = leader
            .versions()
            .require(ApiKey::Produce)
            .map_err(net_err(format!("broker {}", b.addr)))?;
        b.fetch_version = leader
            .versions()
            .require(ApiKey::Fetch)
            .map_err(net_err(format!("broker {}", b.addr)))?;
        // In a cluster a new topic reaches the other brokers a moment after the one that
        // created it, which answers UNKNOWN_TOPIC_OR_PARTITION until then: retry.
        let offsets = loop {
            match leader.latest_offsets(&w.topic, &partitions) {
                Ok(o) => break o,
                Err(LoadgenError::Broker { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        };
        for (p, offset) in offsets {
            start_offsets[p as usize] = offset;
        }
    }
    Ok(Cluster {
        topic: w.topic.clone(),
        created,
        brokers,
        leaders,
        start_offsets,
    })
}

/// Leader node of each partition, in partition order; an error if any is missing or has no
/// leader yet.
fn partition_leaders(
    topic: &rill_net::kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> Result<Vec<i32>, String> {
    let n = topic.partitions.len();
    if n == 0 {
        return Err("has no partitions".into());
    }
    let mut leaders = vec![-1; n];
    for p in &topic.partitions {
        let i = p.partition_index;
        if i < 0 || i as usize >= n {
            return Err(format!("metadata lists partition {i} of {n}"));
        }
        if p.error_code == 0 {
            leaders[i as usize] = p.leader_id.0;
        }
    }
    match leaders.iter().position(|&l| l < 0) {
        Some(p) => Err(format!("partition {p} has no leader")),
        None => Ok(leaders),
    }
}

/// A cluster for a dry run: nothing is contacted, `partitions` partitions on one pretend
/// broker.
pub fn dry_run_cluster(w: &Workload) -> Cluster {
    let n = w.partitions as usize;
    Cluster {
        topic: w.topic.clone(),
        created: false,
        brokers: vec![BrokerInfo {
            node_id: 0,
            addr: "(dry run)".into(),
            produce_version: 9,
            fetch_version: 12,
        }],
        leaders: vec![0; n],
        start_offsets: vec![0; n],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_bootstrap_is_a_clear_error() {
        // Port 1 on loopback: nothing listens there.
        let err = Admin::bootstrap(&["127.0.0.1:1".to_string()], Duration::from_millis(500))
            .err()
            .expect("nothing listens on port 1");
        let text = err.to_string();
        assert!(text.contains("cannot reach any broker"), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }
}
