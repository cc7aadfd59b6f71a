//! The metadata image: what every shard reads to route and answer requests. Immutable,
//! replaced whole (an `Arc`), the same shape whichever authority made it: a single broker
//! is a cluster of one whose every partition it leads at epoch 0 with itself as the only
//! in-sync replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::config::topic::{BrokerDefaults, TopicSettings};

/// The internal topic holding consumer group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The internal topic holding the transaction coordinators' state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// A broker as clients are told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Registered and heartbeating (not fenced).
    pub alive: bool,
}

impl BrokerInfo {
    /// This broker, as its config advertises it.
    pub fn of_config(config: &crate::config::BrokerConfig) -> BrokerInfo {
        let (host, port) = config.advertised();
        BrokerInfo {
            id: config.node_id,
            host,
            port,
            rack: (!config.rack.is_empty()).then(|| config.rack.clone()),
            alive: true,
        }
    }
}

/// Where one partition lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// -1 while no replica can lead.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Bumped on every change of leader, ISR or replicas (the ISR change token).
    pub partition_epoch: i32,
    /// Replicas an ongoing reassignment adds and removes (empty when none).
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl Placement {
    /// A partition of a single broker: it leads, alone in its ISR, at epoch 0.
    pub fn single(broker: i32) -> Placement {
        Placement {
            leader: broker,
            leader_epoch: 0,
            replicas: vec![broker],
            isr: vec![broker],
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }
}

/// One topic.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: Arc<str>,
    pub id: Uuid,
    /// Topic-level overrides, Kafka names, sorted.
    pub configs: Vec<(String, String)>,
    /// Every config resolved (override, broker default, Kafka default).
    pub settings: TopicSettings,
    /// One per partition, in partition order.
    pub partitions: Vec<Placement>,
}

impl TopicInfo {
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    pub fn placement(&self, partition: i32) -> Option<&Placement> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
    }

    /// Replicas per partition (of the first; every partition of a topic has as many).
    pub fn replication_factor(&self) -> i16 {
        self.partitions
            .first()
            .map_or(0, |p| p.replicas.len() as i16)
    }

    pub fn is_internal(&self) -> bool {
        &*self.name == OFFSETS_TOPIC || &*self.name == TRANSACTION_STATE_TOPIC
    }
}

/// What shards read. Replaced whole, never mutated.
#[derive(Debug, Clone)]
pub struct Image {
    /// Increases with every change (the local registry's counter, or the raft index the
    /// cluster's state was applied to).
    pub version: u64,
    /// The authority has published its recovered state (a cluster member that has not
    /// replayed its raft log yet publishes an image that is not ready: it must not close
    /// partitions it does not list).
    pub ready: bool,
    /// This broker may lead the partitions placed on it: always alone; in a cluster once
    /// this run of it is registered and what it held before a restart was handed over.
    pub me_can_lead: bool,
    /// This broker.
    pub me: BrokerInfo,
    /// The Kafka cluster id (until a new cluster's first controller names it, this broker's
    /// own, which no client is told: see `cluster_named`).
    pub cluster_id: Arc<str>,
    /// The cluster has its id: until then a cluster member answers no client, so no client
    /// ever sees two cluster ids.
    pub cluster_named: bool,
    /// The secret a follower presents when it fetches as a replica (None on a single
    /// broker, which has no followers). Never sent to clients.
    pub broker_token: Option<Arc<str>>,
    /// The controller's broker id, -1 while none is known.
    pub controller: i32,
    /// Registered brokers (alive or fenced), by id.
    pub brokers: Vec<BrokerInfo>,
    /// Broker-level topic config defaults as set at run time: cluster-wide (None) and per
    /// broker, topic config names.
    pub broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>>,
    /// This broker's topic defaults: `rill.toml`'s, under the run-time ones.
    pub defaults: BrokerDefaults,
    pub topics: BTreeMap<Arc<str>, Arc<TopicInfo>>,
}

impl Image {
    /// An image with nothing in it yet (a cluster member before its raft log replayed).
    pub fn empty(me: BrokerInfo, cluster_id: Arc<str>, defaults: BrokerDefaults) -> Image {
        Image {
            version: 0,
            ready: false,
            me_can_lead: false,
            me,
            cluster_id,
            cluster_named: false,
            broker_token: None,
            controller: -1,
            brokers: Vec::new(),
            broker_configs: BTreeMap::new(),
            defaults,
            topics: BTreeMap::new(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicInfo>> {
        self.topics.values().find(|t| t.id == id)
    }

    pub fn placement(&self, topic: &str, partition: i32) -> Option<&Placement> {
        self.topics.get(topic)?.placement(partition)
    }

    /// The client id broker `broker`'s replica fetcher sends: it carries the cluster's
    /// broker token, which a leader requires of every fetch that names a replica id (a
    /// client posing as a follower could otherwise raise the high watermark). None before
    /// the cluster is named, and on a single broker.
    pub fn replica_client_id(&self, broker: i32) -> Option<String> {
        self.broker_token
            .as_ref()
            .map(|t| format!("rill-replica/{broker}/{t}"))
    }

    /// The brokers clients may use: the alive ones, and this broker until its registration
    /// commits (it still answers with itself).
    pub fn live_brokers(&self) -> Vec<BrokerInfo> {
        let mut out: Vec<BrokerInfo> = self.brokers.iter().filter(|b| b.alive).cloned().collect();
        if !out.iter().any(|b| b.id == self.me.id) {
            out.push(self.me.clone());
        }
        out
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.id == id)
    }

    pub fn is_alive(&self, id: i32) -> bool {
        self.broker(id).is_some_and(|b| b.alive)
    }

    /// Partitions of every topic.
    pub fn total_partitions(&self) -> i64 {
        self.topics
            .values()
            .map(|t| t.partitions.len() as i64)
            .sum()
    }

    /// The topic defaults of broker `me` under `broker_configs`: the cluster-wide run-time
    /// ones, then its own over them.
    pub fn merged_broker_configs(
        broker_configs: &BTreeMap<Option<i32>, BTreeMap<String, String>>,
        me: i32,
    ) -> BTreeMap<String, String> {
        let mut merged = broker_configs.get(&None).cloned().unwrap_or_default();
        merged.extend(broker_configs.get(&Some(me)).cloned().unwrap_or_default());
        merged
    }
}

/// The shard that owns `partition` of the topic with `topic_id`. Partitions of one topic go
/// round-robin from a per-topic start, so a topic's load spreads over every core; the
/// function depends only on the id, the partition and the shard count, so a restart with
/// another core count still finds every partition (its files are per partition).
pub fn owner_shard(topic_id: Uuid, partition: i32, shards: usize) -> usize {
    let start = crc32c::crc32c(topic_id.as_bytes()) as usize;
    (start.wrapping_add(partition as usize)) % shards
}

/// The directory of one partition: `<data_dir>/<topic>-<partition>`, as Kafka names it.
pub fn partition_dir(
    data_dir: &std::path::Path,
    topic: &str,
    partition: i32,
) -> std::path::PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Kafka's topic name rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name `{name}` is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name `{name}` contains `{c}`; use only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_a_topic_over_every_shard() {
        let id = Uuid::from_bytes(super::super::registry::new_topic_id());
        let mut seen = [0usize; 4];
        for p in 0..8 {
            seen[owner_shard(id, p, 4)] += 1;
        }
        assert_eq!(seen, [2, 2, 2, 2]);
        assert_eq!(owner_shard(id, 5, 1), 0);
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        check_topic_name("orders.v2_eu-1").unwrap();
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("..").is_err());
        assert!(check_topic_name("a/b").unwrap_err().contains('/'));
        assert!(check_topic_name(&"x".repeat(250)).is_err());
    }
}
