//! Cluster metadata in single-node mode: the topic registry, kept by shard 0 and persisted as
//! one small rkyv file (`<data_dir>/meta/registry`), and the immutable [`Snapshot`] every
//! shard reads. Shard 0 is the only writer: it changes the registry, writes the file
//! atomically, then hands the new snapshot (an `Arc`, never mutated) to every shard.
//! The cluster issue moves the registry into raft; the snapshot stays the shards' view.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::{Archive, Deserialize, Serialize};
use uuid::Uuid;

use crate::topic_config::{BrokerDefaults, TopicSettings};

const MAGIC: &[u8; 4] = b"RILM";
const VERSION: u32 = 2;

/// One topic as the registry file stores it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: i32,
    /// Topic-level config overrides, Kafka names.
    pub configs: Vec<(String, String)>,
}

/// The whole registry file.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryFile {
    pub cluster_id: String,
    /// Next id InitProducerId hands out.
    pub next_producer_id: i64,
    pub topics: Vec<TopicRecord>,
    /// Broker-wide topic config defaults set at run time, by topic config name.
    pub broker_configs: Vec<(String, String)>,
}

impl RegistryFile {
    pub fn encode(&self) -> Vec<u8> {
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing the registry into memory cannot fail");
        rill_storage::checkpoint::seal(MAGIC, VERSION, &payload)
    }

    pub fn decode(buf: &[u8]) -> Result<RegistryFile, String> {
        let payload = rill_storage::checkpoint::unseal(MAGIC, VERSION, buf)?;
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        rkyv::from_bytes::<RegistryFile, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
    }

    /// The registry file's path under `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("meta").join("registry")
    }

    /// Reads the registry at start (before the shards run), or a new one with a fresh
    /// cluster id when the data directory is new.
    pub fn load(data_dir: &Path) -> Result<RegistryFile, String> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(buf) => RegistryFile::decode(&buf).map_err(|e| {
                format!(
                    "topic registry {} is damaged ({e}); restore it from a backup or move it \
                     away to start with no topics (partition data stays on disk)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistryFile {
                cluster_id: new_cluster_id(),
                next_producer_id: 1000,
                topics: Vec::new(),
                broker_configs: Vec::new(),
            }),
            Err(e) => Err(format!(
                "cannot read topic registry {}: {e}; check the data directory's permissions",
                path.display()
            )),
        }
    }
}

/// A Kafka-style cluster id: 22 characters of url-safe base64 of 16 random bytes.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22)
        .map(|_| ALPHABET[fastrand::usize(..64)] as char)
        .collect()
}

/// A random topic id (never the nil id, which Kafka reserves).
pub fn new_topic_id() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

/// One topic as the shards see it.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: Arc<str>,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
    pub settings: TopicSettings,
}

/// The shards' read-only view of the registry. Replaced whole, never mutated.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every change.
    pub version: u64,
    /// Broker-wide topic config defaults (rill.toml and run-time).
    pub defaults: BrokerDefaults,
    pub cluster_id: Arc<str>,
    pub topics: BTreeMap<Arc<str>, Arc<TopicInfo>>,
}

impl Snapshot {
    /// Builds the view of `file`; `file_defaults` are the `rill.toml` topic defaults.
    pub fn build(
        version: u64,
        file: &RegistryFile,
        file_defaults: &BTreeMap<String, String>,
    ) -> Result<Snapshot, String> {
        let defaults = BrokerDefaults {
            file: file_defaults.clone(),
            dynamic: file.broker_configs.iter().cloned().collect(),
        };
        let mut topics = BTreeMap::new();
        for t in &file.topics {
            let settings = TopicSettings::resolve(&defaults, &t.configs)
                .map_err(|e| format!("topic {}: {e}", t.name))?;
            let name: Arc<str> = Arc::from(t.name.as_str());
            topics.insert(
                name.clone(),
                Arc::new(TopicInfo {
                    name,
                    id: Uuid::from_bytes(t.id),
                    partitions: t.partitions,
                    configs: t.configs.clone(),
                    settings,
                }),
            );
        }
        Ok(Snapshot {
            version,
            defaults,
            cluster_id: Arc::from(file.cluster_id.as_str()),
            topics,
        })
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicInfo>> {
        self.topics.values().find(|t| t.id == id)
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
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
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
    fn registry_round_trips_and_detects_damage() {
        let file = RegistryFile {
            cluster_id: new_cluster_id(),
            next_producer_id: 7,
            broker_configs: vec![("segment.ms".into(), "60000".into())],
            topics: vec![TopicRecord {
                name: "orders".into(),
                id: new_topic_id(),
                partitions: 3,
                configs: vec![("retention.ms".into(), "1000".into())],
            }],
        };
        let enc = file.encode();
        assert_eq!(RegistryFile::decode(&enc).unwrap(), file);
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert!(RegistryFile::decode(&bad).is_err());
        let snap = Snapshot::build(1, &file, &BTreeMap::new()).unwrap();
        assert_eq!(snap.topic("orders").unwrap().settings.retention_ms, 1000);
    }

    #[test]
    fn placement_spreads_a_topic_over_every_shard() {
        let id = Uuid::from_bytes(new_topic_id());
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
