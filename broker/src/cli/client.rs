//! The CLI's connection to a broker: a blocking socket driving `rill_net`'s client, with
//! versions negotiated once, and the errors every subcommand shares (each with an exit code
//! scripts can use).

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use futures_lite::future::block_on;
use rill_net::client::{ApiVersions, BlockingStream, Connection, ConnectionOptions};
use rill_net::kafka_protocol::messages::ApiKey;
use rill_net::kafka_protocol::protocol::Request as KafkaRequest;
use rill_net::ErrorCode;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach a broker at {bootstrap}: {reason}; is `rill broker` running there? (--bootstrap)")]
    Unreachable { bootstrap: String, reason: String },
    #[error("{what}: {} ({}){}", code.name(), code.code(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        what: String,
        code: ErrorCode,
        message: Option<String>,
    },
    #[error("{what}: unknown Kafka error code {code}")]
    UnknownCode { what: String, code: i16 },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Protocol(String),
}

impl CliError {
    /// 1: the broker refused (a Kafka error), 2: bad usage, 3: no broker, 4: protocol or I/O.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Kafka { .. } | CliError::UnknownCode { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::Protocol(_) => 4,
        }
    }

    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            CliError::Kafka { code, .. } => Some(match code {
                ErrorCode::UnknownTopicOrPartition => "check the name with `rill topic list`",
                ErrorCode::TopicAlreadyExists => "pick another name, or delete the topic first",
                ErrorCode::InvalidConfig => {
                    "see `rill config get topic NAME` for the accepted keys"
                }
                ErrorCode::InvalidReplicationFactor => {
                    "the replication factor cannot exceed the number of brokers"
                }
                ErrorCode::InvalidPartitions => "the partition count can only grow",
                ErrorCode::UnsupportedVersion => "the broker is older than this client",
                ErrorCode::UnknownMemberId | ErrorCode::NonEmptyGroup => {
                    "stop the group's consumers first (see `rill group describe GROUP`)"
                }
                ErrorCode::GroupIdNotFound => "check the name with `rill group list`",
                _ => return None,
            }),
            _ => None,
        }
    }
}

/// Turns a response error code into a result.
pub fn check(what: impl Into<String>, code: i16, message: Option<&str>) -> Result<(), CliError> {
    if code == 0 {
        return Ok(());
    }
    let what = what.into();
    match ErrorCode::from_code(code) {
        Some(code) => Err(CliError::Kafka {
            what,
            code,
            message: message.map(str::to_string),
        }),
        None => Err(CliError::UnknownCode { what, code }),
    }
}

/// One connection to the bootstrap broker.
pub struct Client {
    conn: Connection<BlockingStream>,
    versions: ApiVersions,
}

/// Bound on connecting and on each request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    pub fn connect(bootstrap: &str) -> Result<Client, CliError> {
        let unreachable = |reason: String| CliError::Unreachable {
            bootstrap: bootstrap.to_string(),
            reason,
        };
        let addrs: Vec<_> = bootstrap
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve: {e}")))?
            .collect();
        let mut last = String::from("no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let stream = stream.ok_or_else(|| unreachable(last))?;
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .and_then(|_| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
            .and_then(|_| stream.set_nodelay(true))
            .map_err(|e| unreachable(e.to_string()))?;
        let options = ConnectionOptions {
            client_id: "rill-cli".into(),
            response_frame_bytes_max: 256 << 20,
            ..Default::default()
        };
        let mut conn = Connection::with_options(BlockingStream(stream), options);
        let versions = block_on(conn.api_versions()).map_err(|e| unreachable(e.to_string()))?;
        Ok(Client { conn, versions })
    }

    /// The negotiated version of `key`.
    pub fn version(&self, key: ApiKey) -> Result<i16, CliError> {
        self.versions.version(key).ok_or_else(|| {
            CliError::Protocol(format!(
                "the broker does not serve {key:?} at a version this client speaks"
            ))
        })
    }

    /// One round trip at the negotiated version.
    pub fn send<R: KafkaRequest>(&mut self, request: &R) -> Result<R::Response, CliError> {
        let key = ApiKey::try_from(R::KEY)
            .map_err(|_| CliError::Protocol(format!("unknown api key {}", R::KEY)))?;
        let version = self.version(key)?;
        block_on(self.conn.send(version, request))
            .map_err(|e| CliError::Protocol(format!("{key:?} request failed: {e}")))
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub fn send_no_response<R: KafkaRequest>(&mut self, request: &R) -> Result<(), CliError> {
        let key = ApiKey::try_from(R::KEY)
            .map_err(|_| CliError::Protocol(format!("unknown api key {}", R::KEY)))?;
        let version = self.version(key)?;
        block_on(self.conn.send_no_response(version, request))
            .map_err(|e| CliError::Protocol(format!("{key:?} request failed: {e}")))
    }
}

/// Offsets at `timestamp` (-1 latest, -2 earliest) of `parts`, each asked of its
/// partition's leader (in a cluster, a broker that does not lead a partition refuses it).
/// A connection to broker `leader`, at the address `m` gives for it.
pub fn connect_leader(
    m: &rill_net::kafka_protocol::messages::MetadataResponse,
    leader: i32,
) -> Result<Client, CliError> {
    let b = m
        .brokers
        .iter()
        .find(|b| b.node_id.0 == leader)
        .ok_or_else(|| {
            CliError::Protocol(format!(
                "metadata names leader {leader} but not its address"
            ))
        })?;
    Client::connect(&format!("{}:{}", &*b.host, b.port))
}

pub fn list_offsets(
    c: &mut Client,
    parts: &[(String, i32)],
    timestamp: i64,
) -> Result<BTreeMap<(String, i32), i64>, CliError> {
    use rill_net::kafka_protocol::messages::*;
    let topics: std::collections::BTreeSet<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
    let name = |t: &str| {
        TopicName(rill_net::kafka_protocol::protocol::StrBytes::from_string(
            t.to_string(),
        ))
    };
    let m = c.send(
        &MetadataRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(name(t))))
                .collect(),
        )),
    )?;
    let mut leader_of: BTreeMap<(String, i32), i32> = BTreeMap::new();
    for t in &m.topics {
        let tname = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        check(format!("metadata of {tname}"), t.error_code, None)?;
        for p in &t.partitions {
            leader_of.insert((tname.clone(), p.partition_index), p.leader_id.0);
        }
    }
    let mut by_leader: BTreeMap<i32, BTreeMap<&str, Vec<i32>>> = BTreeMap::new();
    for (t, p) in parts {
        let leader = leader_of.get(&(t.clone(), *p)).copied().unwrap_or(-1);
        if leader < 0 {
            return Err(CliError::Kafka {
                what: format!("offsets of {t}-{p}"),
                code: ErrorCode::LeaderNotAvailable,
                message: Some("the partition has no leader now".into()),
            });
        }
        by_leader
            .entry(leader)
            .or_default()
            .entry(t)
            .or_default()
            .push(*p);
    }
    let mut out = BTreeMap::new();
    for (leader, by_topic) in by_leader {
        let mut lc = connect_leader(&m, leader)?;
        let r = lc.send(
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(
                    by_topic
                        .iter()
                        .map(|(t, ps)| {
                            list_offsets_request::ListOffsetsTopic::default()
                                .with_name(name(t))
                                .with_partitions(
                                    ps.iter()
                                        .map(|p| {
                                            list_offsets_request::ListOffsetsPartition::default()
                                                .with_partition_index(*p)
                                                .with_timestamp(timestamp)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
        )?;
        for t in &r.topics {
            for p in &t.partitions {
                check(
                    format!("offsets of {}-{}", &*t.name.0, p.partition_index),
                    p.error_code,
                    None,
                )?;
                out.insert((t.name.0.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// A client connected to `group`'s coordinator (FindCoordinator through `bootstrap`): in a
/// cluster only that broker answers the group's requests.
pub fn connect_coordinator(bootstrap: &str, group: &str) -> Result<Client, CliError> {
    connect_coordinator_of(bootstrap, group, 0)
}

/// A connection to the coordinator of `key`: a consumer group (`key_type` 0) or a
/// transactional id (1).
pub fn connect_coordinator_of(
    bootstrap: &str,
    group: &str,
    key_type: i8,
) -> Result<Client, CliError> {
    use rill_net::kafka_protocol::messages::FindCoordinatorRequest;
    let mut c = Client::connect(bootstrap)?;
    let key = rill_net::kafka_protocol::protocol::StrBytes::from_string(group.to_string());
    // v4 batches keys; a version must not carry a field it does not have.
    let request = if c.version(ApiKey::FindCoordinator)? >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
    } else {
        FindCoordinatorRequest::default().with_key(key)
    }
    .with_key_type(key_type);
    let r = c.send(&request)?;
    // v4 answers in `coordinators`, earlier versions in the top-level fields.
    let (code, host, port) = match r.coordinators.first() {
        Some(one) => (one.error_code, one.host.to_string(), one.port),
        None => (r.error_code, r.host.to_string(), r.port),
    };
    let what = if key_type == 1 {
        "transactional id"
    } else {
        "group"
    };
    check(
        format!("find the coordinator of {what} {group}"),
        code,
        None,
    )?;
    let addr = format!("{host}:{port}");
    if addr == bootstrap {
        return Ok(c);
    }
    Client::connect(&addr)
}

/// Connections to the leaders of one topic's partitions: in a cluster each broker serves
/// only the partitions it leads (a single broker leads them all).
pub struct Leaders {
    topic: String,
    /// partition -> leading broker
    leader: BTreeMap<i32, i32>,
    /// broker -> host:port
    addrs: BTreeMap<i32, String>,
    conns: BTreeMap<i32, Client>,
}

impl Leaders {
    /// Reads `topic`'s metadata through `c` (`create`: let the broker auto-create it).
    pub fn new(c: &mut Client, topic: &str, create: bool) -> Result<Leaders, CliError> {
        let mut l = Leaders {
            topic: topic.to_string(),
            leader: BTreeMap::new(),
            addrs: BTreeMap::new(),
            conns: BTreeMap::new(),
        };
        l.refresh(c, create)?;
        Ok(l)
    }

    /// Reads the metadata again (after NOT_LEADER_OR_FOLLOWER).
    pub fn refresh(&mut self, c: &mut Client, create: bool) -> Result<(), CliError> {
        use rill_net::kafka_protocol::messages::*;
        let r = c.send(
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(create)
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(
                    rill_net::kafka_protocol::protocol::StrBytes::from_string(self.topic.clone()),
                )))])),
        )?;
        let t = r
            .topics
            .first()
            .ok_or_else(|| CliError::Protocol("empty Metadata response".into()))?;
        check(format!("topic {}", self.topic), t.error_code, None)?;
        if t.partitions.is_empty() {
            return Err(CliError::Protocol(format!(
                "topic {} has no partitions",
                self.topic
            )));
        }
        self.leader = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        self.addrs = r
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", &*b.host, b.port)))
            .collect();
        self.conns.retain(|b, _| self.addrs.contains_key(b));
        Ok(())
    }

    /// The topic's partitions, in order.
    pub fn partitions(&self) -> Vec<i32> {
        self.leader.keys().copied().collect()
    }

    /// `parts` grouped by their leader.
    pub fn by_leader(&self, parts: impl IntoIterator<Item = i32>) -> BTreeMap<i32, Vec<i32>> {
        let mut out: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in parts {
            out.entry(self.leader.get(&p).copied().unwrap_or(-1))
                .or_default()
                .push(p);
        }
        out
    }

    /// A connection to broker `id` (made on first use).
    pub fn client(&mut self, id: i32) -> Result<&mut Client, CliError> {
        if !self.conns.contains_key(&id) {
            let addr = self.addrs.get(&id).ok_or_else(|| CliError::Kafka {
                what: format!("topic {}", self.topic),
                code: ErrorCode::LeaderNotAvailable,
                message: Some(format!("no leader (broker {id}) for some partitions now")),
            })?;
            let c = Client::connect(addr)?;
            self.conns.insert(id, c);
        }
        Ok(self.conns.get_mut(&id).expect("connected above"))
    }
}
