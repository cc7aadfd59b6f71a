//! Reopening the on-disk raft log after a crash that tore the last write:
//! the torn record is cut, everything before it is intact, and appending
//! continues. Damage in an earlier (sealed) segment is corruption, not a
//! torn tail, and opening fails loudly.

use rill_raft::disk::{Disk, FsDisk, MemDisk};
use rill_raft::error::Error;
use rill_raft::raft::eraftpb::{ConfState, Entry};
use rill_raft::raft::{GetEntriesContext, Storage};
use rill_raft::storage::{DiskStorage, StorageOptions};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![index as u8; 100].into(),
        ..Default::default()
    }
}

fn opts() -> StorageOptions {
    StorageOptions {
        segment_bytes_max: 1024,
        ..StorageOptions::default()
    }
}

fn segments(disk: &impl Disk) -> Vec<String> {
    disk.list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("log-"))
        .collect()
}

#[test]
fn a_torn_tail_on_a_real_directory_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()).unwrap();
        s.bootstrap(ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        })
        .unwrap();
        for i in 1..=30 {
            s.append(&[entry(i, 1)]).unwrap();
        }
    }
    // The crash: half of a record reached the last segment.
    let mut disk = FsDisk::open(dir.path()).unwrap();
    let last = segments(&disk).pop().unwrap();
    let before = disk.read(&last).unwrap().unwrap().len();
    let mut half_record = Vec::new();
    half_record.extend_from_slice(&500u32.to_le_bytes());
    half_record.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    half_record.extend_from_slice(&[7u8; 100]);
    disk.append(&last, &half_record).unwrap();
    disk.sync(&last).unwrap();

    let mut s = DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()).unwrap();
    assert_eq!(s.recovery().torn_bytes_truncated, half_record.len() as u64);
    assert_eq!(s.last_index().unwrap(), 30);
    let disk = FsDisk::open(dir.path()).unwrap();
    assert_eq!(
        disk.read(&last).unwrap().unwrap().len(),
        before,
        "file cut back"
    );
    s.append(&[entry(31, 2)]).unwrap();
    drop(s);
    let s = DiskStorage::open(FsDisk::open(dir.path()).unwrap(), opts()).unwrap();
    assert_eq!(s.recovery().torn_bytes_truncated, 0, "clean after the cut");
    let all = s
        .entries(1, 32, None, GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(all.len(), 31);
    assert!(all.iter().enumerate().all(|(i, e)| e.index == i as u64 + 1));
    assert_eq!(s.term(31).unwrap(), 2);
}

#[test]
fn every_torn_prefix_of_an_unsynced_write_recovers_to_the_synced_log() {
    // Tear the same unsynced append at every byte: recovery must always
    // land on exactly the synced entries or the whole new one.
    let base = MemDisk::new();
    {
        let mut s = DiskStorage::open(base.clone(), opts()).unwrap();
        s.bootstrap(ConfState {
            voters: vec![1],
            ..Default::default()
        })
        .unwrap();
        for i in 1..=5 {
            s.append(&[entry(i, 1)]).unwrap();
        }
    }
    let seg = segments(&base).pop().unwrap();
    let synced = base.read(&seg).unwrap().unwrap();
    let mut record_disk = MemDisk::new();
    {
        // Produce the bytes one more append writes.
        let mut s = DiskStorage::open(base.clone(), opts()).unwrap();
        s.append(&[entry(6, 1)]).unwrap();
        record_disk
            .append("x", &base.read(&seg).unwrap().unwrap()[synced.len()..])
            .unwrap();
    }
    let record = record_disk.read("x").unwrap().unwrap();
    for keep in 0..=record.len() {
        let d = MemDisk::new();
        let mut dd = d.clone();
        for name in base.list().unwrap() {
            let bytes = if name == seg {
                synced.clone()
            } else {
                base.read(&name).unwrap().unwrap()
            };
            dd.write_atomic(&name, &bytes).unwrap();
        }
        dd.append(&seg, &record).unwrap();
        d.crash(&mut |_| keep);
        let s = DiskStorage::open(d, opts()).unwrap();
        let want = if keep == record.len() { 6 } else { 5 };
        assert_eq!(
            s.last_index().unwrap(),
            want,
            "kept {keep} of {} bytes",
            record.len()
        );
    }
}

#[test]
fn damage_in_a_sealed_segment_is_corruption_not_a_torn_tail() {
    let disk = MemDisk::new();
    {
        let mut s = DiskStorage::open(disk.clone(), opts()).unwrap();
        s.bootstrap(ConfState {
            voters: vec![1],
            ..Default::default()
        })
        .unwrap();
        for i in 1..=40 {
            s.append(&[entry(i, 1)]).unwrap();
        }
    }
    let segs = segments(&disk);
    assert!(segs.len() >= 2, "{segs:?}");
    assert!(disk.flip_bit(&segs[0], 50));
    match DiskStorage::open(disk, opts()) {
        Err(Error::Corrupt { file, .. }) => assert_eq!(file, segs[0]),
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}
