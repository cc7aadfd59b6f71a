//! The high-watermark checkpoint (Kafka's `replication-offset-checkpoint`): each shard
//! writes the high watermarks of the partitions it owns to one small file,
//! `<data_dir>/meta/high-watermarks-<shard>`, every second when they moved and when it
//! stops, so a restarted broker knows how far its partitions were acknowledged instead of
//! starting from 0 (consumers would see nothing and ListOffsets answer offsets below records
//! already acknowledged). The files of every shard are read at start whatever the shard
//! count was: a partition takes the largest value found for it, capped at its log end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rkyv::{Archive, Deserialize, Serialize};
use tracing::warn;

const MAGIC: &[u8; 4] = b"RILH";
const VERSION: u32 = 1;
const FILE_PREFIX: &str = "high-watermarks-";

/// One partition's high watermark, by topic id (a topic recreated under the same name is
/// another topic).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub topic_id: [u8; 16],
    pub partition: i32,
    pub high_watermark: i64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
struct File {
    entries: Vec<Entry>,
}

/// High watermarks found at start, by (topic id, partition).
pub type HighWatermarks = HashMap<([u8; 16], i32), i64>;

/// The checkpoint file of `shard`.
pub fn path(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join("meta").join(format!("{FILE_PREFIX}{shard}"))
}

pub fn encode(entries: Vec<Entry>) -> Vec<u8> {
    let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&File { entries })
        .expect("serializing high watermarks into memory cannot fail");
    rill_storage::checkpoint::seal(MAGIC, VERSION, &payload)
}

fn decode(buf: &[u8]) -> Result<Vec<Entry>, String> {
    let payload = rill_storage::checkpoint::unseal(MAGIC, VERSION, buf)?;
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    rkyv::from_bytes::<File, rkyv::rancor::Error>(&aligned)
        .map(|f| f.entries)
        .map_err(|e| e.to_string())
}

/// Reads every shard's file under `data_dir` (before the shards run). A damaged file is
/// logged and skipped: its partitions start from 0, as before checkpoints existed.
pub fn load_all(data_dir: &Path) -> HighWatermarks {
    let mut out = HighWatermarks::new();
    let Ok(dir) = std::fs::read_dir(data_dir.join("meta")) else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(FILE_PREFIX)
            || name.to_string_lossy().ends_with(".tmp")
        {
            continue;
        }
        let entries = match std::fs::read(entry.path())
            .map_err(|e| e.to_string())
            .and_then(|b| decode(&b))
        {
            Ok(e) => e,
            Err(e) => {
                warn!(path = %entry.path().display(), error = %e, "high-watermark checkpoint unreadable; its partitions start from their followers' fetches");
                continue;
            }
        };
        for e in entries {
            let hw = out
                .entry((e.topic_id, e.partition))
                .or_insert(e.high_watermark);
            *hw = (*hw).max(e.high_watermark);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_the_largest_value_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("meta")).unwrap();
        let e = |p, hw| Entry {
            topic_id: [7; 16],
            partition: p,
            high_watermark: hw,
        };
        std::fs::write(path(dir.path(), 0), encode(vec![e(0, 10), e(1, 5)])).unwrap();
        std::fs::write(path(dir.path(), 1), encode(vec![e(0, 12)])).unwrap();
        std::fs::write(path(dir.path(), 2), b"garbage").unwrap();
        let all = load_all(dir.path());
        assert_eq!(all.get(&([7; 16], 0)), Some(&12));
        assert_eq!(all.get(&([7; 16], 1)), Some(&5));
        assert_eq!(all.len(), 2);
    }
}
