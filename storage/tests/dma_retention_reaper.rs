//! On the real DMA backend, retention and partition deletion take the files' names away at
//! once and free their space on the reaper thread: the segments below the new log start
//! are gone from the directory when `enforce_retention` returns, the reaper removes the
//! renamed files soon after, and `*.deleted` names a crash left behind are removed when
//! the log is opened again.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::test_dir;
use rill_storage::batch::{build, CheckedBatch};
use rill_storage::{reaper, DmaBackend, FileBudget, LogConfig, PartitionLog};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

const SEGMENT: u64 = 1 << 20;

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT,
        retention_bytes: Some(2 * SEGMENT),
        // The test batches carry timestamps near 1970: retention by size only.
        retention_ms: None,
        ..LogConfig::default()
    }
}

#[test]
fn retention_renames_now_and_the_reaper_frees_later() {
    let root = test_dir();
    let dir = root.join("t-0");
    let dir2 = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let dir = dir2;
            let log = PartitionLog::open(DmaBackend::new(), &dir, cfg(), FileBudget::new(16))
                .await
                .unwrap();
            // 8 MiB in 1 MiB segments.
            for i in 0..2048 {
                log.append(
                    CheckedBatch::check(Bytes::from(build::sized(4000, 1, i))).unwrap(),
                    0,
                )
                .await
                .unwrap();
            }
            log.sync().await.unwrap();
            let segments_before = names(&dir).iter().filter(|n| n.ends_with(".log")).count();
            let out = log.enforce_retention().await.unwrap();
            assert!(out.segments_deleted >= 4, "{out:?}");
            let after = names(&dir);
            let logs: Vec<&String> = after.iter().filter(|n| n.ends_with(".log")).collect();
            assert_eq!(
                logs.len(),
                segments_before - out.segments_deleted,
                "deleted segments still have their names: {after:?}"
            );
            let first: i64 = logs[0].trim_end_matches(".log").parse().unwrap();
            assert_eq!(first, out.log_start_offset, "{after:?}");
            // The data from the new start on is intact.
            let r = log.read(out.log_start_offset, 1 << 16).await.unwrap();
            assert!(!r.batches.is_empty());
            log.close().await.unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(reaper::wait_idle(Duration::from_secs(30)), "reaper busy");
    let left = names(&dir);
    assert!(
        !left.iter().any(|n| reaper::is_deleted_name(n)),
        "the reaper left {left:?}"
    );

    // A crash between the rename and the reaper leaves a `.deleted` name: open removes it.
    let stray = dir.join("00000000000000000000.log.1-1.deleted");
    std::fs::write(&stray, vec![7u8; 3 << 20]).unwrap();
    let dir2 = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let log = PartitionLog::open(DmaBackend::new(), &dir2, cfg(), FileBudget::new(16))
                .await
                .unwrap();
            // Deleting the partition takes its directory's name away at once.
            log.delete().await.unwrap();
            assert!(!dir2.exists(), "the partition directory is still there");
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(reaper::wait_idle(Duration::from_secs(30)), "reaper busy");
    assert!(!stray.exists());
    assert_eq!(
        names(&root),
        Vec::<String>::new(),
        "the deleted partition was not removed"
    );
    std::fs::remove_dir_all(root).unwrap();
}
