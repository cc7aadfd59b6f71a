//! Group commit: syncs requested while one runs are served by one more
//! fdatasync, not one each; durability covers every append before the call.

use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::future::block_on;
use rill_storage::batch::{build, CheckedBatch};
use rill_storage::{FileBudget, LogConfig, MemoryBackend, PartitionLog};

#[test]
fn concurrent_syncs_share_fdatasyncs() {
    let be = MemoryBackend::new();
    block_on(async {
        let log = Rc::new(
            PartitionLog::open(
                be.clone(),
                PathBuf::from("/mem/g-0"),
                LogConfig::default(),
                FileBudget::new(8),
            )
            .await
            .unwrap(),
        );
        let before = be.sync_count();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let log = log.clone();
            tasks.push(async move {
                let info = log
                    .append(
                        CheckedBatch::check(Bytes::from(build::sized(500, 1, i))).unwrap(),
                        0,
                    )
                    .await
                    .unwrap();
                let durable = log.sync().await.unwrap();
                assert!(
                    durable > info.last_offset,
                    "sync returned before covering its append"
                );
            });
        }
        futures_util::future::join_all(tasks).await;
        let syncs = be.sync_count() - before;
        assert!((1..=2).contains(&syncs), "64 concurrent appends+syncs took {syncs} fdatasyncs; group commit should need at most 2");
        assert_eq!(log.durable_offset(), 64);
    });
}
