//! Recovery: a corrupt or torn tail of the active segment is cut off, every
//! whole valid batch before it stays, and damaged indexes are rebuilt.

use std::path::PathBuf;

use bytes::Bytes;
use futures_lite::future::block_on;
use rill_storage::batch::{build, CheckedBatch};
use rill_storage::{FileBudget, LogConfig, MemoryBackend, PartitionLog};

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

#[test]
fn corrupt_byte_in_last_batch_truncates_from_that_batch() {
    let be = MemoryBackend::new();
    let dir = PathBuf::from("/mem/t-0");
    block_on(async {
        let log = PartitionLog::open(be.clone(), &dir, cfg(), FileBudget::new(8))
            .await
            .unwrap();
        let mut positions = Vec::new();
        let mut pos = 0usize;
        for i in 0..10 {
            let b = build::sized(700, 2, 1000 + i);
            positions.push(pos);
            pos += b.len();
            log.append(CheckedBatch::check(Bytes::from(b)).unwrap(), 0)
                .await
                .unwrap();
        }
        log.sync().await.unwrap();
        drop(log); // no clean close: the next open scans
        let seg = dir.join("00000000000000000000.log");
        // flip a byte inside batch 7's records (CRC-covered)
        be.corrupt(&seg, positions[7] + 100, &[0xff, 0xee]);
        let log = PartitionLog::open(be.clone(), &dir, cfg(), FileBudget::new(8))
            .await
            .unwrap();
        assert_eq!(
            log.log_end_offset(),
            14,
            "batches 0..7 (2 records each) survive"
        );
        assert_eq!(
            be.file_bytes(&seg).unwrap().len(),
            positions[7],
            "file cut at batch 7"
        );
        let r = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(r.batches.len(), 7);
        // appends continue at the recovered end
        let info = log
            .append(
                CheckedBatch::check(Bytes::from(build::sized(300, 1, 5))).unwrap(),
                0,
            )
            .await
            .unwrap();
        assert_eq!(info.base_offset, 14);
    });
}

#[test]
fn garbage_after_valid_data_is_dropped_and_clean_close_skips_scan() {
    let be = MemoryBackend::new();
    let dir = PathBuf::from("/mem/t-1");
    block_on(async {
        let log = PartitionLog::open(be.clone(), &dir, cfg(), FileBudget::new(8))
            .await
            .unwrap();
        for i in 0..5 {
            log.append(
                CheckedBatch::check(Bytes::from(build::sized(1000, 1, i))).unwrap(),
                0,
            )
            .await
            .unwrap();
        }
        log.sync().await.unwrap();
        drop(log);
        let seg = dir.join("00000000000000000000.log");
        let len = be.file_bytes(&seg).unwrap().len();
        be.corrupt(&seg, len, &[0x5a; 3000]); // torn garbage beyond the end
        let log = PartitionLog::open(be.clone(), &dir, cfg(), FileBudget::new(8))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 5);
        log.close().await.unwrap();
        let exact = be.file_bytes(&seg).unwrap().len();
        let log = PartitionLog::open(be.clone(), &dir, cfg(), FileBudget::new(8))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(be.file_bytes(&seg).unwrap().len(), exact);
    });
}

#[test]
fn damaged_closed_segment_index_is_rebuilt() {
    let be = MemoryBackend::new();
    let dir = PathBuf::from("/mem/t-2");
    block_on(async {
        let c = LogConfig {
            segment_bytes: 8192,
            ..cfg()
        };
        let log = PartitionLog::open(be.clone(), &dir, c.clone(), FileBudget::new(8))
            .await
            .unwrap();
        for i in 0..40 {
            log.append(
                CheckedBatch::check(Bytes::from(build::sized(900, 3, 10 + i))).unwrap(),
                0,
            )
            .await
            .unwrap();
        }
        log.close().await.unwrap();
        assert!(log.stats().segments > 3);
        let idx = dir.join("00000000000000000000.index");
        be.corrupt(&idx, 0, &[0xff; 16]);
        let log = PartitionLog::open(be.clone(), &dir, c, FileBudget::new(8))
            .await
            .unwrap();
        for offset in [0, 4, 11, 17] {
            let r = log.read(offset, 1).await.unwrap();
            let h = rill_storage::batch::validate(&r.batches[0]).unwrap();
            assert!(
                h.base_offset <= offset && offset <= h.last_offset(),
                "offset {offset} in {h:?}"
            );
        }
        assert_eq!(
            log.offset_for_timestamp(12).await.unwrap().map(|f| f.0),
            Some(6)
        );
    });
}
