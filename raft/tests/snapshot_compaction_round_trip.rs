//! A snapshot of the metadata state machine on a real directory: taking it
//! compacts the log (whole segments removed), reopening restores state and
//! the remaining log, a received snapshot replaces the whole log, and a
//! damaged snapshot is refused on read.

use rill_raft::disk::{Disk, FsDisk};
use rill_raft::error::Error;
use rill_raft::ids::BrokerId;
use rill_raft::metadata::{Command, MetadataState, Proposal};
use rill_raft::raft::eraftpb::{ConfState, Entry, Snapshot, SnapshotMetadata};
use rill_raft::raft::{Storage, StorageError};
use rill_raft::storage::{DiskStorage, StorageOptions};

fn opts() -> StorageOptions {
    StorageOptions {
        segment_bytes_max: 512,
        ..StorageOptions::default()
    }
}

fn register(b: i32) -> Proposal {
    Proposal {
        commands: vec![Command::RegisterBroker {
            broker: BrokerId(b),
            host: format!("broker{b}"),
            port: 9092,
            rack: None,
            incarnation: 1,
        }],
    }
}

fn segment_count(dir: &std::path::Path) -> usize {
    FsDisk::open(dir)
        .unwrap()
        .list()
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("log-"))
        .count()
}

#[test]
fn snapshot_compacts_the_log_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = MetadataState::default();
    let mut s = DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()).unwrap();
    s.bootstrap(ConfState {
        voters: vec![1],
        ..Default::default()
    })
    .unwrap();
    for i in 1..=60u64 {
        let p = register(i as i32);
        s.append(&[Entry {
            index: i,
            term: 1,
            data: p.encode().into(),
            ..Default::default()
        }])
        .unwrap();
        state.apply(i, &p).unwrap();
    }
    s.set_commit(60).unwrap();
    let segments_before = segment_count(dir.path());
    assert!(segments_before > 2);
    let at_50 = {
        // The state as of index 50, rebuilt from the log.
        let mut st = MetadataState::default();
        for i in 1..=50 {
            st.apply(i, &register(i as i32)).unwrap();
        }
        st
    };
    s.create_snapshot(50, at_50.encode(), 45).unwrap();
    assert!(
        segment_count(dir.path()) < segments_before,
        "whole segments removed"
    );
    assert_eq!(s.first_index().unwrap(), 46);
    drop(s);

    let s = DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()).unwrap();
    let snap = s.snapshot(0, 1).unwrap();
    assert_eq!(snap.get_metadata().index, 50);
    assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1]);
    let mut restored = MetadataState::decode(&snap.data).unwrap();
    assert_eq!(restored, at_50);
    // Replaying the rest of the log reaches the same state as before.
    for e in s
        .entries(
            51,
            61,
            None,
            rill_raft::raft::GetEntriesContext::empty(false),
        )
        .unwrap()
    {
        restored
            .apply(e.index, &Proposal::decode(&e.data).unwrap())
            .unwrap();
    }
    assert_eq!(restored, state);
    assert!(matches!(
        s.term(44),
        Err(rill_raft::raft::Error::Store(StorageError::Compacted))
    ));
}

#[test]
fn a_received_snapshot_replaces_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()).unwrap();
    s.bootstrap(ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    })
    .unwrap();
    for i in 1..=30 {
        s.append(&[Entry {
            index: i,
            term: 1,
            data: vec![0; 100].into(),
            ..Default::default()
        }])
        .unwrap();
    }
    let mut leader_state = MetadataState::default();
    leader_state.apply(100, &register(1)).unwrap();
    let snap = Snapshot {
        data: leader_state.encode().into(),
        metadata: Some(SnapshotMetadata {
            index: 100,
            term: 4,
            conf_state: Some(ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    s.apply_snapshot(snap).unwrap();
    drop(s);
    let s = DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()).unwrap();
    assert_eq!(s.first_index().unwrap(), 101);
    assert_eq!(s.last_index().unwrap(), 100);
    assert_eq!(s.term(100).unwrap(), 4);
    assert_eq!(s.hard_state().commit, 100);
    assert_eq!(segment_count(dir.path()), 0, "the old log is gone");
}

#[test]
fn a_damaged_snapshot_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()).unwrap();
        s.bootstrap(ConfState {
            voters: vec![1],
            ..Default::default()
        })
        .unwrap();
        s.append(&[Entry {
            index: 1,
            term: 1,
            ..Default::default()
        }])
        .unwrap();
        s.set_commit(1).unwrap();
        s.create_snapshot(1, MetadataState::default().encode(), 1)
            .unwrap();
    }
    let path = dir.path().join("snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()),
        Err(Error::Corrupt { .. })
    ));
    // And state bytes that pass the file checksum but are not a state.
    assert!(MetadataState::decode(b"RRSM\0\0\0\0garbage").is_err());
}
