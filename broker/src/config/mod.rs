//! The broker's configuration: one TOML file (`rill.toml`), every field with a default that
//! works on a laptop, overridden by command-line flags. [`BrokerConfig::validate`] names the
//! first bad field. Read once at start, then shared read-only by every shard.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod topic;
mod topic_keys;

use self::topic as topic_config;

/// Everything `rill broker` reads from `rill.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's id in Metadata responses.
    pub node_id: i32,
    /// Where partitions and metadata live.
    pub data_dir: PathBuf,
    /// Address every shard listens on (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to; empty means `listen`.
    pub advertise: String,
    /// Executors (one per core); 0 means one per available core.
    pub shards: usize,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`); empty turns it off.
    pub metrics_listen: String,
    /// Cluster mode: the metadata raft voters, `id@host:port,...` (1, 3 or 5; this
    /// broker's `node_id` among them, its entry the address it listens on for raft
    /// traffic). Empty: a single broker with its own registry.
    pub controller_quorum: String,
    /// Cluster mode, a broker whose `node_id` is not in `controller_quorum`: the
    /// `host:port` it listens on for raft traffic as a non-voting learner (it joins the
    /// running cluster through the voters). Voters listen on their quorum entry.
    pub raft_listen: String,
    /// This broker's rack (replicas are spread over racks); empty for none.
    pub rack: String,
    /// Cluster mode: replicas of topics created without a replication factor
    /// (auto-created, or `-1`); Kafka's `default.replication.factor`.
    pub default_replication_factor: usize,
    /// Cluster mode timing: the raft tick, how often a broker heartbeats to the
    /// controller, and after how long without one the controller fences it.
    pub raft_tick_ms: u64,
    pub broker_heartbeat_interval_ms: u64,
    pub broker_session_timeout_ms: u64,
    /// Cluster mode: a follower that has not caught up to its leader's log end for this
    /// long leaves the ISR (Kafka's `replica.lag.time.max.ms`).
    pub replica_lag_time_max_ms: u64,
    /// Cluster mode: a follower fdatasyncs what it copied before it tells its leader it
    /// holds it (acks=all then survives losing power on every machine at once); off, it
    /// reports what is in its files (survives kill -9 of every broker at once and the loss
    /// of a minority of machines, as Kafka).
    pub replica_fsync: bool,
    /// Cluster mode: the controller moves leadership back to a partition's preferred
    /// replica once it is in sync again (Kafka's `auto.leader.rebalance.enable`); off, it
    /// moves only on ElectLeaders (`kafka-leader-election`).
    pub auto_leader_rebalance: bool,
    /// Create a topic when a client asks Metadata for one that does not exist (Kafka's
    /// `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with `num_partitions = -1`.
    pub default_partitions: i32,
    /// Milliseconds between retention passes over every partition.
    pub retention_check_interval_ms: u64,
    /// Milliseconds between the log cleaner's looks at every compacted partition (Kafka's
    /// `log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    /// Bytes of the log cleaner's key map, per shard (Kafka's
    /// `log.cleaner.dedupe.buffer.size`): 32 bytes a key, so the default maps a million
    /// keys per pass; a partition with more keys in its dirty part is compacted over
    /// several passes.
    pub log_cleaner_key_map_bytes: usize,
    /// Bytes per second the log cleaner may read and write, for the whole broker, split
    /// evenly between its shards (Kafka's `log.cleaner.io.max.bytes.per.second`); 0, the
    /// default as in Kafka, means no limit.
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// Partitions of the internal `__consumer_offsets` topic (fixed once it exists).
    pub offsets_topic_partitions: i32,
    /// Segment size of the compacted `__consumer_offsets` topic, set when the topic is
    /// made (Kafka's `offsets.topic.segment.bytes`, 100 MiB there): the active segment is
    /// never compacted and is replayed whole when a coordinator loads its groups, so Rill
    /// keeps it smaller.
    pub offsets_topic_segment_bytes: u64,
    /// Partitions of the internal `__transaction_state` topic (Kafka's
    /// `transaction.state.log.num.partitions`; fixed once it exists).
    pub transaction_state_partitions: i32,
    /// Segment size of the compacted `__transaction_state` topic (Kafka's
    /// `transaction.state.log.segment.bytes`, 100 MiB there; smaller here, as for the
    /// offsets topic, since a coordinator replays the active segment whole).
    pub transaction_state_segment_bytes: u64,
    /// Longest transaction timeout a producer may ask for (Kafka's
    /// `transaction.max.timeout.ms`); InitProducerId beyond it is refused.
    pub transaction_max_timeout_ms: u64,
    /// How often coordinators abort transactions past their timeout (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub transaction_abort_check_ms: u64,
    /// How long an idle transactional id (no transaction for that long) is kept before it
    /// expires (Kafka's `transactional.id.expiration.ms`, 7 days).
    pub transactional_id_expiration_ms: u64,
    /// How often coordinators expire idle transactional ids (Kafka's
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`, 1 hour).
    pub transactional_id_expiry_check_ms: u64,
    /// A partition leader asks the transaction coordinator before it appends a producer's
    /// first transactional batch of a transaction (Kafka's
    /// `transaction.partition.verification.enable`, KIP-890 part 1): a batch of a
    /// transaction that already ended, or to a partition never added to it, is refused
    /// instead of opening a transaction no marker will ever close.
    pub transaction_partition_verification: bool,
    /// The `transaction.version` feature level this broker finalizes (0-2; Kafka's
    /// default for a new 4.x cluster is 2): at 2, Kafka 4 clients use transactions v2
    /// (KIP-890 part 2: no AddPartitionsToTxn, the epoch bumped by every EndTxn); below, the
    /// classic protocol. Every version stays served whatever the level.
    pub transaction_version: i16,
    /// No longer used: `__consumer_offsets` is compacted instead of checkpointed. Accepted
    /// so that configuration files written for older Rill versions still start; a warning
    /// says it is ignored.
    #[serde(skip_serializing)]
    pub offsets_checkpoint_bytes: Option<u64>,
    /// Shortest and longest session timeout a group member may ask for.
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    /// How long a new group waits for more members before its first assignment.
    pub group_initial_rebalance_delay_ms: u64,
    /// KIP-848 consumer groups (`group.protocol=consumer`): the session timeout the broker
    /// sets for every member, and the heartbeat interval it tells members to use.
    pub consumer_group_session_timeout_ms: u64,
    pub consumer_group_heartbeat_interval_ms: u64,
    /// Assignor of KIP-848 groups whose members name none: `uniform` or `range`.
    pub consumer_group_assignor: String,
    /// Broker-wide defaults for topic configs, by their Kafka names
    /// (e.g. `"retention.ms" = 604800000`). Topics override them one by one.
    pub topic_defaults: BTreeMap<String, toml::Value>,
    pub limits: Limits,
    pub storage: StorageSettings,
}

/// Bounds on everything a client can make the broker hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
    pub frame_bytes_max: usize,
    /// Open client connections, whole broker (split evenly between shards).
    pub connections_max: usize,
    /// Requests read but not yet answered, per connection (pipelining depth).
    pub inflight_requests_max: usize,
    /// Bytes of request frames read but not yet answered, per shard.
    pub inflight_request_bytes_max: usize,
    /// Messages queued from one shard to another before the sender waits.
    pub shard_queue_depth: usize,
    /// Incremental fetch sessions kept per shard (KIP-227); the least recently used goes.
    pub fetch_sessions_max: usize,
    /// Fetch requests parked on one shard waiting for data (long polls).
    pub fetch_waiters_max: usize,
    /// Longest `max_wait_ms` honoured for a fetch long poll.
    pub fetch_wait_ms_max: u64,
    /// Largest response a single Fetch may return.
    pub fetch_response_bytes_max: usize,
    /// Topics, whole broker.
    pub topics_max: usize,
    /// Partitions, whole broker.
    pub partitions_max: usize,
    /// Segment files open at once, per shard.
    pub open_files_max: usize,
    /// Idempotent producers remembered per partition (least recently used forgotten).
    pub producers_per_partition_max: usize,
    /// Members of one consumer group (and member ids handed out awaiting their join).
    pub group_members_max: usize,
    /// Consumer groups one shard coordinates (new groups beyond it are refused with
    /// GROUP_MAX_SIZE_REACHED until DeleteGroups makes room).
    pub groups_per_shard_max: usize,
    /// Partitions one transaction may hold (AddPartitionsToTxn beyond it is refused, and
    /// the coordinator logs why): its state record lists them all.
    pub transaction_partitions_max: usize,
}

/// Memory and I/O sizes of each partition log (see `rill_storage::LogConfig`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Unwritten bytes per partition that make an append write them out first.
    pub write_buffer_bytes_max: usize,
    /// Largest single disk write.
    pub write_chunk_bytes: usize,
    /// Recently appended bytes per partition kept in memory for tailing consumers.
    pub tail_cache_bytes_max: usize,
    /// Bytes in flight per sequential reader when serving older data.
    pub read_ahead_bytes: usize,
    /// One sparse index entry per this many bytes of log.
    pub index_interval_bytes: u64,
    /// How often each shard writes out buffered data and runs due syncs.
    pub flush_tick_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir: PathBuf::from("./rill-data"),
            listen: "127.0.0.1:9092".parse().expect("literal address"),
            advertise: String::new(),
            shards: 0,
            metrics_listen: "127.0.0.1:9644".into(),
            auto_create_topics: true,
            default_partitions: 1,
            retention_check_interval_ms: 30_000,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_key_map_bytes: 32 << 20,
            log_cleaner_io_max_bytes_per_second: 0,
            offsets_topic_partitions: 50,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 100,
            offsets_topic_segment_bytes: 16 << 20,
            transaction_state_partitions: 50,
            transaction_state_segment_bytes: 16 << 20,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_check_ms: 10_000,
            transaction_partition_verification: true,
            transaction_version: 2,
            transactional_id_expiration_ms: 604_800_000,
            transactional_id_expiry_check_ms: 3_600_000,
            offsets_checkpoint_bytes: None,
            controller_quorum: String::new(),
            raft_listen: String::new(),
            rack: String::new(),
            default_replication_factor: 1,
            raft_tick_ms: 100,
            broker_heartbeat_interval_ms: 1_000,
            broker_session_timeout_ms: 9_000,
            replica_lag_time_max_ms: 30_000,
            replica_fsync: false,
            auto_leader_rebalance: true,
            consumer_group_session_timeout_ms: 45_000,
            consumer_group_heartbeat_interval_ms: 5_000,
            consumer_group_assignor: "uniform".to_string(),
            topic_defaults: BTreeMap::new(),
            limits: Limits::default(),
            storage: StorageSettings::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes_max: 100 << 20,
            connections_max: 10_000,
            inflight_requests_max: 64,
            inflight_request_bytes_max: 256 << 20,
            shard_queue_depth: 1024,
            fetch_sessions_max: 1000,
            fetch_waiters_max: 10_000,
            fetch_wait_ms_max: 30_000,
            fetch_response_bytes_max: 64 << 20,
            topics_max: 10_000,
            partitions_max: 100_000,
            open_files_max: 10_000,
            producers_per_partition_max: 1000,
            group_members_max: 10_000,
            groups_per_shard_max: 100_000,
            transaction_partitions_max: 10_000,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            write_buffer_bytes_max: 4 << 20,
            write_chunk_bytes: 1 << 20,
            tail_cache_bytes_max: 1 << 20,
            read_ahead_bytes: 1 << 20,
            index_interval_bytes: 4096,
            flush_tick_ms: 5,
        }
    }
}

/// A configuration problem, naming the field and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid config field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

impl BrokerConfig {
    /// Reads and parses `path` (fields left out keep their defaults).
    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// The effective config as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}"))
    }

    /// Topic defaults as Kafka config strings.
    pub fn topic_default_strings(&self) -> BTreeMap<String, String> {
        self.topic_defaults
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect()
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: &str| {
            Err(ConfigError::Invalid {
                field: field.to_string(),
                reason: reason.to_string(),
            })
        };
        if self.node_id < 0 {
            return bad("node_id", "must be 0 or more");
        }
        if !self.advertise.is_empty() && parse_host_port(&self.advertise).is_none() {
            return bad("advertise", "must be HOST:PORT");
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return bad(
                "metrics_listen",
                "must be IP:PORT, or empty to turn metrics off",
            );
        }
        if self.shards > 1024 {
            return bad("shards", "must be at most 1024");
        }
        if self.default_partitions < 1 {
            return bad("default_partitions", "must be at least 1");
        }
        if !(1..=1000).contains(&self.transaction_state_partitions) {
            return bad("transaction_state_partitions", "must be between 1 and 1000");
        }
        if !(4096..=i32::MAX as u64).contains(&self.transaction_state_segment_bytes) {
            return bad(
                "transaction_state_segment_bytes",
                "must be between 4096 and 2147483647",
            );
        }
        if !(1..=i32::MAX as u64).contains(&self.transaction_max_timeout_ms) {
            return bad(
                "transaction_max_timeout_ms",
                "must be between 1 and 2147483647",
            );
        }
        if !(0..=2).contains(&self.transaction_version) {
            return bad("transaction_version", "must be 0, 1 or 2");
        }
        if self.transaction_abort_check_ms == 0 {
            return bad("transaction_abort_check_ms", "must be at least 1");
        }
        if self.transactional_id_expiration_ms == 0 {
            return bad("transactional_id_expiration_ms", "must be at least 1");
        }
        if self.transactional_id_expiry_check_ms == 0 {
            return bad("transactional_id_expiry_check_ms", "must be at least 1");
        }
        if !(1..=1000).contains(&self.offsets_topic_partitions) {
            return bad("offsets_topic_partitions", "must be between 1 and 1000");
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return bad(
                "group_min_session_timeout_ms",
                "must not exceed group_max_session_timeout_ms",
            );
        }
        if self.consumer_group_heartbeat_interval_ms == 0
            || self.consumer_group_heartbeat_interval_ms >= self.consumer_group_session_timeout_ms
            || self.consumer_group_session_timeout_ms > i32::MAX as u64
        {
            return bad(
                "consumer_group_heartbeat_interval_ms",
                "must be positive and below consumer_group_session_timeout_ms (at most 2^31-1)",
            );
        }
        if !CONSUMER_GROUP_ASSIGNORS.contains(&self.consumer_group_assignor.as_str()) {
            return bad(
                "consumer_group_assignor",
                "must be \"uniform\" or \"range\"",
            );
        }
        if !self.controller_quorum.trim().is_empty() {
            if let Err(e) = parse_quorum(&self.controller_quorum) {
                return bad("controller_quorum", &e);
            }
            if self.node_id < 1 {
                return bad(
                    "node_id",
                    "must be 1 or more in cluster mode (raft reserves 0)",
                );
            }
            if self.node_id >= 1 << 22 {
                return bad(
                    "node_id",
                    "must be below 4194304 in cluster mode (producer ids carry it)",
                );
            }
            let voter = parse_quorum(&self.controller_quorum)
                .map(|q| q.iter().any(|v| v.id == self.node_id))
                .unwrap_or(false);
            if !voter && self.raft_listen.trim().is_empty() {
                return bad(
                    "raft_listen",
                    "a broker whose node_id is not in controller_quorum joins as a learner and needs its own raft address (--raft-listen host:port)",
                );
            }
        }
        if self.raft_tick_ms == 0
            || self.broker_heartbeat_interval_ms == 0
            || self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms
        {
            return bad(
                "broker_session_timeout_ms",
                "raft_tick_ms and broker_heartbeat_interval_ms must be positive, and the session longer than the heartbeat interval",
            );
        }
        if self.replica_lag_time_max_ms < 1000 {
            // Followers long-poll for 500 ms: below a second an idle follower leaves the ISR.
            return bad(
                "replica_lag_time_max_ms",
                "must be at least 1000 (followers wait up to 500 ms per fetch)",
            );
        }
        if !(4096..=i32::MAX as u64).contains(&self.offsets_topic_segment_bytes) {
            return bad(
                "offsets_topic_segment_bytes",
                "must be between 4096 and 2147483647 (it becomes the topic's segment.bytes)",
            );
        }
        if self.retention_check_interval_ms == 0 {
            return bad("retention_check_interval_ms", "must be positive");
        }
        if self.log_cleaner_backoff_ms == 0 {
            return bad("log_cleaner_backoff_ms", "must be positive");
        }
        if self.log_cleaner_key_map_bytes < 1 << 20 {
            return bad(
                "log_cleaner_key_map_bytes",
                "must be at least 1048576 (one batch's keys must fit)",
            );
        }
        for (key, value) in self.topic_default_strings() {
            if let Err(reason) = topic_config::validate_entry(&key, &value) {
                return Err(ConfigError::Invalid {
                    field: format!("topic_defaults.\"{key}\""),
                    reason,
                });
            }
        }
        let l = &self.limits;
        let positive = [
            ("limits.connections_max", l.connections_max),
            ("limits.inflight_requests_max", l.inflight_requests_max),
            ("limits.shard_queue_depth", l.shard_queue_depth),
            ("limits.fetch_sessions_max", l.fetch_sessions_max),
            ("limits.topics_max", l.topics_max),
            ("limits.partitions_max", l.partitions_max),
            ("limits.open_files_max", l.open_files_max),
            ("limits.group_members_max", l.group_members_max),
            ("limits.groups_per_shard_max", l.groups_per_shard_max),
            (
                "limits.transaction_partitions_max",
                l.transaction_partitions_max,
            ),
            (
                "limits.producers_per_partition_max",
                l.producers_per_partition_max,
            ),
        ];
        for (field, v) in positive {
            if v == 0 {
                return bad(field, "must be positive");
            }
        }
        if l.frame_bytes_max < 1024 || l.frame_bytes_max > i32::MAX as usize {
            return bad(
                "limits.frame_bytes_max",
                "must be between 1024 and 2147483647",
            );
        }
        if l.inflight_request_bytes_max < l.frame_bytes_max {
            return bad(
                "limits.inflight_request_bytes_max",
                "must be at least limits.frame_bytes_max",
            );
        }
        if l.fetch_response_bytes_max < 1024 {
            return bad("limits.fetch_response_bytes_max", "must be at least 1024");
        }
        let s = &self.storage;
        if s.flush_tick_ms == 0 {
            return bad("storage.flush_tick_ms", "must be positive");
        }
        // The storage crate checks its own sizes; run it on the defaults so a bad value is
        // reported at start, with the field named.
        let defaults = topic_config::BrokerDefaults {
            file: self.topic_default_strings(),
            dynamic: BTreeMap::new(),
        };
        let probe = topic_config::TopicSettings::resolve(&defaults, &[]).map_err(|reason| {
            ConfigError::Invalid {
                field: "topic_defaults".into(),
                reason,
            }
        })?;
        if let Err(e) = probe.log_config(s).validate() {
            return Err(ConfigError::Invalid {
                field: "storage".into(),
                reason: e.to_string(),
            });
        }
        Ok(())
    }

    /// Where to serve metrics, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listen.parse().ok()
    }

    /// The address clients are told to use.
    pub fn advertised(&self) -> (String, i32) {
        if let Some((host, port)) = parse_host_port(&self.advertise) {
            return (host, port);
        }
        (self.listen.ip().to_string(), self.listen.port() as i32)
    }
}

fn parse_host_port(s: &str) -> Option<(String, i32)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() {
        return None;
    }
    Some((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port as i32,
    ))
}

/// The server-side assignors of KIP-848 consumer groups.
pub const CONSUMER_GROUP_ASSIGNORS: &[&str] = &["uniform", "range"];

/// One voter of `--controller-quorum`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    /// `host:port`, resolved when the broker starts.
    pub addr: String,
}

impl Voter {
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        self.addr
            .to_socket_addrs()
            .map_err(|e| {
                format!(
                    "cannot resolve voter {}'s address {}: {e}",
                    self.id, self.addr
                )
            })?
            .next()
            .ok_or_else(|| {
                format!(
                    "voter {}'s address {} resolves to nothing",
                    self.id, self.addr
                )
            })
    }
}

/// Parses `1@host:port,2@host:port,...` (1, 3 or 5 voters, distinct ids >= 1). Names are
/// resolved only at start, so a config can be checked on another machine.
pub fn parse_quorum(s: &str) -> Result<Vec<Voter>, String> {
    let mut out: Vec<Voter> = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("{entry:?} is not id@host:port"))?;
        let id: i32 = id
            .parse()
            .map_err(|_| format!("{entry:?}: {id:?} is not a node id"))?;
        if id < 1 {
            return Err(format!("{entry:?}: node ids start at 1"));
        }
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{entry:?}: {addr:?} is not host:port")),
        }
        if out.iter().any(|v| v.id == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        out.push(Voter {
            id,
            addr: addr.to_string(),
        });
    }
    if ![1, 3, 5].contains(&out.len()) {
        return Err(format!(
            "the quorum has {} voters; use 1, 3 or 5",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let c = BrokerConfig::default();
        c.validate().unwrap();
        let text = c.to_toml();
        let back: BrokerConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.listen, c.listen);
        assert_eq!(back.limits.frame_bytes_max, c.limits.frame_bytes_max);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut c = BrokerConfig::default();
        c.limits.connections_max = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("limits.connections_max"), "{e}");

        let c: BrokerConfig =
            toml::from_str("[topic_defaults]\n\"retention.ms\" = \"soon\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("retention.ms"), "{e}");

        let e = toml::from_str::<BrokerConfig>("listen_port = 3\n").unwrap_err();
        assert!(e.to_string().contains("listen_port"), "{e}");

        let c = BrokerConfig {
            replica_lag_time_max_ms: 10,
            ..BrokerConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("replica_lag_time_max_ms"), "{e}");

        let c = BrokerConfig {
            controller_quorum: "1@127.0.0.1:9093".into(),
            node_id: 1 << 22,
            raft_listen: "127.0.0.1:9094".into(),
            ..BrokerConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("node_id") && e.contains("4194304"), "{e}");
    }

    #[test]
    fn the_example_in_deploy_states_every_default() {
        let example: BrokerConfig =
            toml::from_str(include_str!("../../../deploy/rill.toml")).unwrap();
        example.validate().unwrap();
        assert_eq!(example.to_toml(), BrokerConfig::default().to_toml());
    }

    #[test]
    fn a_config_from_before_offsets_compaction_still_starts() {
        // offsets_checkpoint_bytes went with the checkpoints; files that set it still load
        // (boot warns that it is ignored) and it is not written back.
        let c: BrokerConfig = toml::from_str("offsets_checkpoint_bytes = 16777216\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.offsets_checkpoint_bytes, Some(16 << 20));
        assert!(!c.to_toml().contains("offsets_checkpoint_bytes"));
        let bad: BrokerConfig = toml::from_str("offsets_topic_segment_bytes = 100\n").unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("offsets_topic_segment_bytes"), "{e}");
    }

    #[test]
    fn advertise_falls_back_to_listen() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.advertised(), ("127.0.0.1".to_string(), 9092));
        c.advertise = "broker-1.example:19092".into();
        assert_eq!(c.advertised(), ("broker-1.example".to_string(), 19092));
    }

    #[test]
    fn quorum_strings_parse_or_say_what_is_wrong() {
        let q = parse_quorum("1@127.0.0.11:9093, 2@127.0.0.12:9093,3@127.0.0.13:9093").unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q[1].id, 2);
        assert_eq!(q[2].addr, "127.0.0.13:9093");
        assert_eq!(
            q[2].resolve().unwrap(),
            "127.0.0.13:9093".parse::<SocketAddr>().unwrap()
        );
        // Names are not resolved while parsing (configs are checked anywhere).
        assert!(parse_quorum("1@broker-1.invalid:9093").is_ok());
        for (bad, says) in [
            ("1@127.0.0.1:9093,2@127.0.0.1:9094", "use 1, 3 or 5"),
            ("0@127.0.0.1:9093", "start at 1"),
            ("1@127.0.0.1:9093,1@127.0.0.1:9094,2@127.0.0.1:1", "twice"),
            ("x@127.0.0.1:9093", "not a node id"),
            ("127.0.0.1:9093", "not id@host:port"),
            ("1@hostonly", "not host:port"),
        ] {
            let e = parse_quorum(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
