//! A log created in this process on the real DMA backend reads back, from disk, what it
//! wrote. The first file a process opens decides (in glommio) whether reads use the
//! io_uring poll ring; a brand-new empty segment used to make that probe pass on devices
//! without polled I/O, and every later disk read failed with EOPNOTSUPP.

mod common;

use std::path::PathBuf;

use bytes::Bytes;
use common::test_dir;
use rill_storage::batch::{build, CheckedBatch};
use rill_storage::{DmaBackend, FileBudget, LogConfig, PartitionLog};

/// Two executors (as a broker's shards do) each create a log at the same moment: neither
/// may open its empty segment before the probe has finished.
#[test]
fn fresh_logs_on_two_executors_read_their_own_writes_from_disk() {
    let handles: Vec<_> = (0..2).map(|_| spawn_writer_reader(test_dir())).collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn spawn_writer_reader(dir: PathBuf) -> glommio::ExecutorJoinHandle<()> {
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let cfg = LogConfig {
                tail_cache_bytes_max: 4096,
                ..LogConfig::default()
            };
            let log =
                PartitionLog::open(DmaBackend::new(), dir.join("t-0"), cfg, FileBudget::new(8))
                    .await
                    .unwrap();
            let batches: Vec<Vec<u8>> = (0..512).map(|i| build::sized(4000, 1, i)).collect();
            for b in &batches {
                let checked = CheckedBatch::check(Bytes::from(b.clone())).unwrap();
                log.append(checked, 0).await.unwrap();
            }
            log.sync().await.unwrap();
            // Offset 0 left the 4 KiB tail cache long ago: this read goes to the disk.
            let mut offset = 0;
            while offset < 512 {
                let read = log
                    .read(offset, 1 << 20)
                    .await
                    .expect("disk read of own writes");
                assert!(!read.batches.is_empty());
                for b in read.batches {
                    let mut expected = batches[offset as usize].clone();
                    expected[0..8].copy_from_slice(&offset.to_be_bytes());
                    expected[12..16].copy_from_slice(&0i32.to_be_bytes()); // leader epoch
                    assert!(b[..] == expected[..], "batch at offset {offset} differs");
                    offset += 1;
                }
            }
            log.close().await.unwrap();
            std::fs::remove_dir_all(dir).unwrap();
        })
        .unwrap()
}
