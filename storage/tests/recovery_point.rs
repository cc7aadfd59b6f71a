//! Crash recovery starts at the recovery point when it can be trusted, and
//! scans the whole active segment when the recovery point is behind the data
//! (it only saves work), ahead of it or stale (it must be ignored), or
//! damaged. Every synced batch survives and nothing corrupt is served.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_lite::future::block_on;
use rill_storage::batch::{self, build, CheckedBatch};
use rill_storage::{Backend, FileBudget, LogConfig, MemoryBackend, PartitionLog};

const DIR: &str = "/mem/rp-0";
const SEGMENT: &str = "/mem/rp-0/00000000000000000000.log";
const RECOVERY_POINT: &str = "/mem/rp-0/partition.recovery";
const INTERVAL: u64 = 8192;

fn cfg() -> LogConfig {
    LogConfig {
        recovery_point_interval_bytes: INTERVAL,
        write_chunk_bytes: 8192,
        ..LogConfig::default()
    }
}

fn open(be: &MemoryBackend) -> PartitionLog<MemoryBackend> {
    block_on(PartitionLog::open(
        be.clone(),
        PathBuf::from(DIR),
        cfg(),
        FileBudget::new(16),
    ))
    .expect("open")
}

/// Batch `n` of a log: one record, size varying with `n` and `salt`.
fn batch_bytes(n: i64, salt: usize) -> Bytes {
    Bytes::from(build::sized(900 + ((n as usize * 37 + salt) % 300), 1, n))
}

fn append(log: &PartitionLog<MemoryBackend>, from: i64, to: i64, salt: usize) {
    block_on(async {
        for n in from..to {
            let b = CheckedBatch::check(batch_bytes(n, salt)).expect("valid batch");
            log.append(b, 0).await.expect("append");
        }
    });
}

/// Every batch from the start to the log end is whole, in order, and the one
/// appended (with `salt`) at that offset.
fn check_log(log: &PartitionLog<MemoryBackend>, salt_for: impl Fn(i64) -> usize) {
    block_on(async {
        let leo = log.log_end_offset();
        let r = log.read(0, usize::MAX).await.expect("read");
        assert_eq!(r.batches.len() as i64, leo, "batches up to the log end");
        for (i, b) in r.batches.iter().enumerate() {
            let h = batch::validate(b).expect("served batch passes CRC");
            let n = i as i64;
            assert_eq!(h.base_offset, n);
            let want = batch_bytes(n, salt_for(n));
            assert_eq!(&b[16..], &want[16..], "batch {n} content");
        }
    });
}

#[test]
fn behind_the_data_recovery_scans_only_what_follows_it() {
    let be = MemoryBackend::new();
    let log = open(&be);
    append(&log, 0, 20, 0);
    block_on(log.sync()).unwrap(); // > INTERVAL synced: records a recovery point
    let rp_file = be.file_bytes(Path::new(RECOVERY_POINT)).expect("recorded");
    append(&log, 20, 25, 0);
    block_on(log.sync()).unwrap(); // < INTERVAL more: the recovery point stays behind
    assert_eq!(be.file_bytes(Path::new(RECOVERY_POINT)).unwrap(), rp_file);
    append(&log, 25, 28, 0); // never synced
    block_on(log.flush()).unwrap();
    std::mem::forget(log);
    be.crash(11);

    let log = open(&be);
    assert!(
        log.log_end_offset() >= 25,
        "synced batches after the recovery point survive"
    );
    let behind: u64 = (20..25).map(|n| batch_bytes(n, 0).len() as u64).sum();
    let scanned = log.recovery_scanned_bytes();
    assert!(
        scanned >= behind && scanned < behind + INTERVAL,
        "scan started at the recovery point: scanned {scanned}, {behind} bytes synced after it"
    );
    check_log(&log, |_| 0);
}

#[test]
fn a_corrupt_batch_after_the_recovery_point_is_cut() {
    let be = MemoryBackend::new();
    let log = open(&be);
    append(&log, 0, 20, 0);
    block_on(log.sync()).unwrap();
    append(&log, 20, 25, 0);
    block_on(log.sync()).unwrap();
    std::mem::forget(log);
    let at: usize = (0..22).map(|n| batch_bytes(n, 0).len()).sum::<usize>() + 100;
    be.corrupt(Path::new(SEGMENT), at, b"garbage");

    let log = open(&be);
    assert_eq!(
        log.log_end_offset(),
        22,
        "cut at the corrupt batch, not before"
    );
    check_log(&log, |_| 0);
}

#[test]
fn ahead_of_the_data_a_stale_recovery_point_is_ignored() {
    let be = MemoryBackend::new();
    let log = open(&be);
    append(&log, 0, 20, 0);
    block_on(log.sync()).unwrap();
    let stale = be.file_bytes(Path::new(RECOVERY_POINT)).expect("recorded");
    // A follower truncation, then other batches at the same offsets.
    block_on(log.truncate_to(10)).unwrap();
    append(&log, 10, 12, 1);
    block_on(log.sync()).unwrap();
    std::mem::forget(log);
    // The directory update that removed it is lost: the stale one is back.
    block_on(be.write_small_atomic(Path::new(RECOVERY_POINT), &stale)).unwrap();
    be.crash(5);

    let log = open(&be);
    assert_eq!(log.log_end_offset(), 12);
    assert!(
        log.recovery_scanned_bytes() > 0,
        "scanned the whole segment"
    );
    check_log(&log, |n| if n < 10 { 0 } else { 1 });
    // Same offsets, other sizes: the position no longer ends a batch.
    append(&log, 12, 30, 1);
    block_on(log.sync()).unwrap();
    std::mem::forget(log);
    block_on(be.write_small_atomic(Path::new(RECOVERY_POINT), &stale)).unwrap();
    be.crash(6);
    let log = open(&be);
    assert_eq!(log.log_end_offset(), 30);
    check_log(&log, |n| if n < 10 { 0 } else { 1 });
}

#[test]
fn a_damaged_recovery_point_or_index_means_a_full_scan() {
    for damage in ["recovery point", "index"] {
        let be = MemoryBackend::new();
        let log = open(&be);
        append(&log, 0, 30, 0);
        block_on(log.sync()).unwrap();
        append(&log, 30, 33, 0);
        block_on(log.sync()).unwrap();
        std::mem::forget(log);
        be.crash(9);
        match damage {
            "recovery point" => be.corrupt(Path::new(RECOVERY_POINT), 20, &[0xff]),
            _ => {
                let idx = Path::new("/mem/rp-0/00000000000000000000.index");
                block_on(be.write_small_atomic(idx, &[0, 0, 0])).unwrap();
            }
        }
        let log = open(&be);
        assert_eq!(log.log_end_offset(), 33, "{damage}: every synced batch");
        let all: u64 = (0..33).map(|n| batch_bytes(n, 0).len() as u64).sum();
        assert_eq!(log.recovery_scanned_bytes(), all, "{damage}: full scan");
        check_log(&log, |_| 0);
    }
}
