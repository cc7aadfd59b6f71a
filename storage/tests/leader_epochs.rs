//! The leader-epoch history follows the log: a leader's append of a newer epoch starts an
//! entry, a follower's copy keeps the leader's epochs, truncation and a moving log start cut
//! it, and it survives a clean restart, a crash, and a checkpoint that lost it (rebuilt
//! from the batches). OffsetForLeaderEpoch answers come from it.

use std::path::PathBuf;

use bytes::Bytes;
use futures_lite::future::block_on;
use rill_storage::batch::{self, build, CheckedBatch};
use rill_storage::epochs::{UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use rill_storage::{FileBudget, LogConfig, MemoryBackend, PartitionLog};

fn open(be: &MemoryBackend, dir: &str) -> PartitionLog<MemoryBackend> {
    block_on(PartitionLog::open(
        be.clone(),
        PathBuf::from(dir),
        LogConfig::default(),
        FileBudget::new(16),
    ))
    .unwrap()
}

fn batch(records: usize) -> CheckedBatch {
    CheckedBatch::check(Bytes::from(build::sized(100, records, 1))).unwrap()
}

/// Appends batches of (records, epoch); returns the log end.
fn append_all(log: &PartitionLog<MemoryBackend>, batches: &[(usize, i32)]) -> i64 {
    block_on(async {
        for &(n, epoch) in batches {
            log.append(batch(n), epoch).await.unwrap();
        }
    });
    log.log_end_offset()
}

#[test]
fn a_leaders_appends_record_where_each_epoch_starts() {
    let be = MemoryBackend::new();
    let log = open(&be, "/mem/e-0");
    assert_eq!(
        log.end_offset_for_epoch(0),
        (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    );
    let end = append_all(&log, &[(3, 0), (2, 2), (1, 2), (1, 5)]);
    assert_eq!(end, 7);
    assert_eq!(log.leader_epochs().entries(), &[(0, 0), (2, 3), (5, 6)]);
    assert_eq!(log.end_offset_for_epoch(5), (5, 7));
    assert_eq!(log.end_offset_for_epoch(2), (2, 6));
    assert_eq!(log.end_offset_for_epoch(1), (0, 3), "the epoch below it");
    assert_eq!(
        log.end_offset_for_epoch(9),
        (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    );
    // Each stored batch carries the epoch it was appended under.
    let read = block_on(log.read(0, 1 << 20)).unwrap();
    let epochs: Vec<i32> = read
        .batches
        .iter()
        .map(|b| batch::BatchHeader::parse(b).unwrap().partition_leader_epoch)
        .collect();
    assert_eq!(epochs, vec![0, 2, 2, 5]);

    // A clean restart keeps it.
    block_on(log.close()).unwrap();
    let log = open(&be, "/mem/e-0");
    assert_eq!(log.leader_epochs().entries(), &[(0, 0), (2, 3), (5, 6)]);

    // Truncation cuts it; the cut survives a crash.
    block_on(log.truncate_to(5)).unwrap();
    assert_eq!(log.leader_epochs().entries(), &[(0, 0), (2, 3)]);
    assert_eq!(log.end_offset_for_epoch(2), (2, 5));
    be.crash(7);
    let log = open(&be, "/mem/e-0");
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.leader_epochs().entries(), &[(0, 0), (2, 3)]);

    // A new epoch after the truncation, then the log start moves into epoch 2.
    append_all(&log, &[(2, 7)]);
    assert_eq!(log.leader_epochs().entries(), &[(0, 0), (2, 3), (7, 5)]);
    block_on(log.delete_records(4)).unwrap();
    assert_eq!(log.leader_epochs().entries(), &[(2, 4), (7, 5)]);
    block_on(log.close()).unwrap();
    let log = open(&be, "/mem/e-0");
    assert_eq!(log.leader_epochs().entries(), &[(2, 4), (7, 5)]);
}

#[test]
fn a_followers_copy_keeps_the_leaders_epochs() {
    let be = MemoryBackend::new();
    let leader = open(&be, "/mem/l-0");
    let follower = open(&be, "/mem/f-0");
    append_all(&leader, &[(2, 1), (3, 4), (1, 4)]);
    let read = block_on(leader.read(0, 1 << 20)).unwrap();
    block_on(async {
        for b in read.batches {
            follower
                .append_replica(CheckedBatch::check(b).unwrap())
                .await
                .unwrap();
        }
    });
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    assert_eq!(follower.leader_epochs().entries(), &[(1, 0), (4, 2)]);
}

#[test]
fn a_lost_history_is_rebuilt_from_the_batches() {
    let be = MemoryBackend::new();
    let log = open(&be, "/mem/r-0");
    append_all(&log, &[(3, 1), (2, 1), (4, 3)]);
    block_on(log.close()).unwrap();
    // A checkpoint without epochs (a log from before they were kept).
    be.corrupt(&PathBuf::from("/mem/r-0/partition.checkpoint"), 0, b"XXXX");
    let log = open(&be, "/mem/r-0");
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(log.leader_epochs().entries(), &[(1, 0), (3, 5)]);
}

#[test]
fn a_follower_behind_the_leaders_log_start_restarts_there() {
    let be = MemoryBackend::new();
    let log = open(&be, "/mem/t-0");
    append_all(&log, &[(3, 1), (2, 2)]);
    block_on(log.truncate_fully_and_start_at(100)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    assert!(log.leader_epochs().is_empty());
    assert!(block_on(log.read(100, 1 << 20)).unwrap().batches.is_empty());
    // It continues from there as a follower would: the leader's batch at 100.
    let mut b = build::sized(100, 2, 1);
    batch::set_base_offset(&mut b, 100);
    batch::set_partition_leader_epoch(&mut b, 6);
    let b = CheckedBatch::check(Bytes::from(b)).unwrap();
    block_on(log.append_replica(b)).unwrap();
    assert_eq!(log.log_end_offset(), 102);
    assert_eq!(log.leader_epochs().entries(), &[(6, 100)]);
    // And after a crash it is still the log that starts at 100 (with what was synced).
    block_on(log.sync()).unwrap();
    be.crash(3);
    let log = open(&be, "/mem/t-0");
    assert_eq!(log.log_start_offset(), 100);
    assert_eq!(log.leader_epochs().entries(), &[(6, 100)]);
    let read = block_on(log.read(100, 1 << 20)).unwrap();
    assert_eq!(read.batches.len(), 1);
}
