//! DescribeLogDirs: Rill keeps every partition in one data directory, which is its one log
//! dir. Each partition this broker holds (leader or follower) is reported with its size on
//! disk and its offset lag, read on the shard that owns it, and the directory with its file
//! system's total and usable bytes (v4). `kafka-log-dirs` and `kafka-reassign-partitions`
//! read it before anything else. Compacted partitions also carry their dirty ratio and last
//! clean in Rill's own tagged fields (`rill_net::rill_tags`), which `rill topic describe`
//! shows and Kafka's tools skip.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use rill_net::kafka_protocol::messages::describe_log_dirs_response::*;
use rill_net::kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use rill_net::{rill_tags, ErrorCode};

use super::{s, topic_name};
use crate::shard::Shard;

/// The partitions asked for: topic → partitions (empty: none of it); `None`: all.
type Wanted = Option<BTreeMap<String, Vec<i32>>>;

/// One partition as its owner shard sees it.
struct Held {
    topic: Arc<str>,
    partition: i32,
    size_bytes: i64,
    offset_lag: i64,
    /// Compacted partitions: what the log cleaner last saw.
    compaction: Option<rill_storage::CompactionStatus>,
}

pub async fn describe(shard: &Rc<Shard>, r: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted: Arc<Wanted> = Arc::new(r.topics.map(|topics| {
        let mut m: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for t in topics {
            m.entry(t.topic.0.to_string())
                .or_default()
                .extend(t.partitions);
        }
        m
    }));
    let per_shard = shard
        .ask_all(move |shard: Rc<Shard>| {
            let wanted = wanted.clone();
            async move { held(&shard, &wanted) }
        })
        .await;
    let mut topics: BTreeMap<Arc<str>, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for h in per_shard.into_iter().flatten() {
        let mut tags = BTreeMap::new();
        if let Some(c) = h.compaction {
            tags.insert(
                rill_tags::LOG_DIR_DIRTY_RATIO,
                Bytes::copy_from_slice(&c.dirty_ratio.to_be_bytes()),
            );
            if let Some(ms) = c.last_clean_ms {
                tags.insert(
                    rill_tags::LOG_DIR_LAST_CLEAN_MS,
                    Bytes::copy_from_slice(&ms.to_be_bytes()),
                );
            }
        }
        topics.entry(h.topic).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(h.partition)
                .with_partition_size(h.size_bytes)
                .with_offset_lag(h.offset_lag)
                .with_unknown_tagged_fields(tags),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    let dir = shard.config().data_dir.clone();
    let shown = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(s(shown.display().to_string()))
        .with_topics(topics);
    match file_system_bytes(&dir) {
        Ok((total, usable)) => {
            result = result.with_total_bytes(total).with_usable_bytes(usable);
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot read the data directory's file system");
            result = result
                .with_error_code(ErrorCode::KafkaStorageError.code())
                .with_total_bytes(-1)
                .with_usable_bytes(-1);
        }
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// The partitions `shard` owns that are wanted, with their size and lag.
fn held(shard: &Shard, wanted: &Wanted) -> Vec<Held> {
    shard
        .owned()
        .into_iter()
        .filter(|((topic, partition), _)| match wanted {
            None => true,
            Some(m) => m.get(&**topic).is_some_and(|ps| ps.contains(partition)),
        })
        .map(|((topic, partition), p)| {
            let log = p.log();
            // Kafka's lag of a current log: how far its end is behind the high watermark
            // (a follower catching up), never negative.
            let offset_lag = (p.high_watermark() - log.log_end_offset()).max(0);
            Held {
                topic,
                partition,
                size_bytes: i64::try_from(log.stats().size_bytes).unwrap_or(i64::MAX),
                offset_lag,
                compaction: p.compaction(),
            }
        })
        .collect()
}

/// Total and usable (available to this user) bytes of the file system holding `dir`.
fn file_system_bytes(dir: &Path) -> std::io::Result<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stat` is a
    // plain C struct statvfs fills in completely when it returns 0.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat
    };
    let block = stat.f_frsize as u128;
    let bytes = |blocks: u128| i64::try_from(blocks * block).unwrap_or(i64::MAX);
    Ok((bytes(stat.f_blocks as u128), bytes(stat.f_bavail as u128)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_system_of_a_directory_has_room() {
        let (total, usable) = file_system_bytes(Path::new(".")).unwrap();
        assert!(
            total > 0 && usable >= 0 && usable <= total,
            "{total} {usable}"
        );
        assert!(file_system_bytes(Path::new("/no/such/dir/at/all")).is_err());
    }
}
