//! The registry file (`<data_dir>/meta/registry`): one small rkyv file, checked on read,
//! holding a single broker's topics and run-time broker configs, the broker's own cluster
//! id and its next producer id. [`super::local`] changes it.

use std::path::{Path, PathBuf};

use rkyv::{Archive, Deserialize, Serialize};

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

/// A new secret for a cluster's brokers: 128 random bits, hex.
pub fn new_broker_token() -> String {
    format!("{:032x}", fastrand::u128(..))
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
    }
}
