//! The durable raft log and hard state: [`DiskStorage`] implements
//! `raft::Storage` over a [`Disk`]. Owned by the [`crate::node::Node`] of the
//! raft member (shard 0 in the broker); nothing else writes these files.
//!
//! Files in the raft directory:
//! - `log-<seq>`: append-only segments of records
//!   `[payload_len u32 LE][crc32c(payload) u32 LE][payload]`, the payload a
//!   protobuf `Entry`. A later record for an index replaces the earlier one
//!   and everything after it (raft overwrites a conflicting suffix), so the
//!   log never rewrites bytes in place. A new segment starts once the
//!   current one passes `segment_bytes_max`; compaction removes whole
//!   segments from the front.
//! - `raftstate`: hard state (term, vote, commit) and conf state, replaced
//!   atomically.
//! - `snapshot`: the latest snapshot (metadata + state machine bytes) plus
//!   where the log starts after it, replaced atomically.
//!
//! Everything is also kept in memory: the metadata log is small and bounded
//! by compaction, and raft-rs reads entries often.
//!
//! Recovery: a record that is short or fails its CRC in the last segment is
//! a torn tail from a crash and is cut off; the same in an earlier segment is
//! corruption and an error (those were synced before the next one began).

use std::cell::Cell;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::disk::Disk;
use crate::error::{Error, Result};

const RAFTSTATE_FILE: &str = "raftstate";
const SNAPSHOT_FILE: &str = "snapshot";
const SEGMENT_PREFIX: &str = "log-";
const RECORD_HEADER_BYTES: usize = 8;
const RAFTSTATE_MAGIC: &[u8; 4] = b"RRHS";
const SNAPSHOT_MAGIC: &[u8; 4] = b"RRSN";
// 2: brokers carry their incarnation (RegisterBroker, Broker).
const FORMAT_VERSION: u32 = 2;
const SEAL_PREFIX_BYTES: usize = 12;

/// Limits of the on-disk log.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// Start a new segment once the current one holds this many bytes.
    pub segment_bytes_max: u64,
    /// A record bigger than this is corruption, not an entry (guards the
    /// allocation when a torn length field reads as garbage).
    pub record_bytes_max: u32,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes_max: 4 << 20,
            record_bytes_max: 64 << 20,
        }
    }
}

#[derive(Clone, Debug)]
struct Segment {
    seq: u64,
    /// Highest entry index written to this segment (0 if none).
    max_index: u64,
    bytes: u64,
}

/// What recovery found, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the tail of the last segment (a torn write).
    pub torn_bytes_truncated: u64,
    /// Entries replayed from the segments.
    pub entries_recovered: usize,
    /// Segments found below the log start and removed.
    pub stale_segments_removed: usize,
}

/// The raft log, hard state, conf state and latest snapshot of one raft
/// member, durable on a [`Disk`].
pub struct DiskStorage<D: Disk> {
    disk: D,
    opts: StorageOptions,
    hard_state: HardState,
    conf_state: ConfState,
    /// Latest snapshot; index 0 means none.
    snapshot: Snapshot,
    /// Last entry dropped from the front of the log, and its term.
    compacted_index: u64,
    compacted_term: u64,
    /// `entries[i].index == compacted_index + 1 + i`.
    entries: Vec<Entry>,
    segments: Vec<Segment>,
    /// raft-rs asked for a snapshot newer than the stored one; the driver
    /// makes one at its next Ready (raft-rs's `snapshot` takes `&self`).
    snapshot_wanted: Cell<bool>,
    recovery: RecoveryReport,
}

fn segment_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:016x}")
}

fn seal(magic: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_PREFIX_BYTES + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn unseal<'a>(magic: &[u8; 4], file: &str, buf: &'a [u8]) -> Result<&'a [u8]> {
    let corrupt = |reason: String| Error::Corrupt {
        file: file.to_string(),
        offset: 0,
        reason,
    };
    if buf.len() < SEAL_PREFIX_BYTES || &buf[0..4] != magic {
        return Err(corrupt("missing header".into()));
    }
    let version = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let payload = &buf[SEAL_PREFIX_BYTES..];
    if crc32c::crc32c(payload) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    Ok(payload)
}

fn encode_pb(what: &'static str, m: &impl protobuf::Message) -> Result<Vec<u8>> {
    m.write_to_bytes().map_err(|e| Error::Codec {
        what,
        reason: e.to_string(),
    })
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why a record could not be read at some offset.
enum RecordEnd {
    Clean,
    Bad(String),
}

/// Splits a segment into record payloads; stops at the end or the first bad
/// record, returning its offset and reason.
fn scan_records(buf: &[u8], record_bytes_max: u32) -> (Vec<(usize, &[u8])>, usize, RecordEnd) {
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        if at == buf.len() {
            return (out, at, RecordEnd::Clean);
        }
        if buf.len() - at < RECORD_HEADER_BYTES {
            return (out, at, RecordEnd::Bad("short record header".into()));
        }
        let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let crc = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
        if len > record_bytes_max {
            return (out, at, RecordEnd::Bad(format!("record length {len}")));
        }
        let start = at + RECORD_HEADER_BYTES;
        let end = start + len as usize;
        if end > buf.len() {
            return (out, at, RecordEnd::Bad("short record".into()));
        }
        let payload = &buf[start..end];
        if crc32c::crc32c(payload) != crc {
            return (out, at, RecordEnd::Bad("checksum mismatch".into()));
        }
        out.push((at, payload));
        at = end;
    }
}

impl<D: Disk> DiskStorage<D> {
    /// Opens the raft directory on `disk`, recovering what a crash left:
    /// loads hard state and snapshot, replays the segments, cuts a torn tail.
    pub fn open(mut disk: D, opts: StorageOptions) -> Result<DiskStorage<D>> {
        let mut recovery = RecoveryReport::default();
        let (mut hard_state, mut conf_state) = match disk.read(RAFTSTATE_FILE)? {
            None => (HardState::default(), ConfState::default()),
            Some(buf) => decode_raftstate(&buf)?,
        };
        let (snapshot, log_start_segment, compacted_index, compacted_term) =
            match disk.read(SNAPSHOT_FILE)? {
                None => (Snapshot::default(), 0, 0, 0),
                Some(buf) => decode_snapshot_file(&buf)?,
            };
        let snap_index = snapshot.get_metadata().index;
        // raftstate is written after the snapshot file: a crash between
        // leaves an older raftstate, which the snapshot overrides.
        if snap_index > hard_state.commit {
            hard_state.commit = snap_index;
            hard_state.term = hard_state.term.max(snapshot.get_metadata().term);
        }
        if conf_state == ConfState::default() && snap_index > 0 {
            conf_state = snapshot.get_metadata().get_conf_state().clone();
        }

        let mut seqs: Vec<u64> = disk
            .list()?
            .iter()
            .filter_map(|n| n.strip_prefix(SEGMENT_PREFIX))
            .filter_map(|s| u64::from_str_radix(s, 16).ok())
            .collect();
        seqs.sort_unstable();
        let mut segments = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let last_seq = seqs.last().copied();
        for seq in seqs {
            let name = segment_name(seq);
            if seq < log_start_segment {
                disk.remove(&name)?;
                recovery.stale_segments_removed += 1;
                continue;
            }
            let buf = disk.read(&name)?.unwrap_or_default();
            let (records, good_bytes, end) = scan_records(&buf, opts.record_bytes_max);
            if let RecordEnd::Bad(reason) = end {
                if Some(seq) != last_seq {
                    return Err(Error::Corrupt {
                        file: name,
                        offset: good_bytes as u64,
                        reason,
                    });
                }
                let torn = (buf.len() - good_bytes) as u64;
                tracing::warn!(
                    segment = %name,
                    offset = good_bytes,
                    torn_bytes = torn,
                    %reason,
                    "raft log: cutting a torn tail left by a crash"
                );
                disk.truncate(&name, good_bytes as u64)?;
                recovery.torn_bytes_truncated += torn;
            }
            let mut max_index = 0;
            for (offset, payload) in records {
                let e = Entry::parse_from_bytes(payload).map_err(|err| Error::Corrupt {
                    file: name.clone(),
                    offset: offset as u64,
                    reason: err.to_string(),
                })?;
                max_index = max_index.max(e.index);
                if e.index <= compacted_index {
                    continue;
                }
                let next = compacted_index + 1 + entries.len() as u64;
                if e.index > next {
                    return Err(Error::Corrupt {
                        file: name.clone(),
                        offset: offset as u64,
                        reason: format!("gap: entry {} where {} was expected", e.index, next),
                    });
                }
                entries.truncate((e.index - compacted_index - 1) as usize);
                entries.push(e);
                recovery.entries_recovered += 1;
            }
            segments.push(Segment {
                seq,
                max_index,
                bytes: good_bytes as u64,
            });
        }
        if segments.is_empty() {
            // Segment numbering continues after the log start even when
            // every segment was removed, so a stale one is never reused.
            segments.push(Segment {
                seq: log_start_segment,
                max_index: 0,
                bytes: 0,
            });
        }
        // Entries past the durable commit that a crash kept are fine (raft
        // may overwrite them); a commit past the log end is not.
        let last_index = compacted_index + entries.len() as u64;
        if hard_state.commit > last_index {
            return Err(Error::Corrupt {
                file: RAFTSTATE_FILE.into(),
                offset: 0,
                reason: format!(
                    "commit {} beyond the last log index {last_index}",
                    hard_state.commit
                ),
            });
        }
        Ok(DiskStorage {
            disk,
            opts,
            hard_state,
            conf_state,
            snapshot,
            compacted_index,
            compacted_term,
            entries,
            segments,
            snapshot_wanted: Cell::new(false),
            recovery,
        })
    }

    /// What recovery found when this storage was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// True once a conf state was stored (by bootstrap or a snapshot).
    pub fn is_initialized(&self) -> bool {
        self.conf_state != ConfState::default()
    }

    /// Writes the initial membership of a brand-new group.
    pub fn bootstrap(&mut self, conf_state: ConfState) -> Result<()> {
        self.conf_state = conf_state;
        self.write_raftstate()
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The durable membership.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot (index 0 if none).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Index of the last entry dropped from the log by compaction.
    pub fn compacted_index(&self) -> u64 {
        self.compacted_index
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Whether raft-rs asked for a snapshot newer than the stored one since
    /// the last call; clears the flag.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// The disk, for tests.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    fn last_idx(&self) -> u64 {
        self.compacted_index + self.entries.len() as u64
    }

    fn write_raftstate(&mut self) -> Result<()> {
        let hs = encode_pb("hard state", &self.hard_state)?;
        let cs = encode_pb("conf state", &self.conf_state)?;
        let mut payload = Vec::with_capacity(4 + hs.len() + cs.len());
        payload.extend_from_slice(&(hs.len() as u32).to_le_bytes());
        payload.extend_from_slice(&hs);
        payload.extend_from_slice(&cs);
        self.disk
            .write_atomic(RAFTSTATE_FILE, &seal(RAFTSTATE_MAGIC, &payload))
    }

    /// Stores a new hard state durably (only if it changed).
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<()> {
        if *hs == self.hard_state {
            return Ok(());
        }
        self.hard_state = hs.clone();
        self.write_raftstate()
    }

    /// Stores a new commit index durably (from a LightReady).
    pub fn set_commit(&mut self, commit: u64) -> Result<()> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Stores a new membership durably.
    pub fn set_conf_state(&mut self, cs: ConfState) -> Result<()> {
        self.conf_state = cs;
        self.write_raftstate()
    }

    /// Appends entries durably (one fsync). An entry whose index is already
    /// in the log replaces it and everything after it.
    pub fn append(&mut self, ents: &[Entry]) -> Result<()> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        assert!(
            first.index > self.compacted_index,
            "raft appended entry {} at or below the compacted index {}",
            first.index,
            self.compacted_index
        );
        assert!(
            first.index <= self.last_idx() + 1,
            "raft appended entry {} leaving a gap after {}",
            first.index,
            self.last_idx()
        );
        let mut buf = Vec::new();
        for e in ents {
            encode_record(&mut buf, &encode_pb("entry", e)?);
        }
        if self.current_segment().bytes >= self.opts.segment_bytes_max {
            let seq = self.current_segment().seq + 1;
            self.segments.push(Segment {
                seq,
                max_index: 0,
                bytes: 0,
            });
        }
        let name = segment_name(self.current_segment().seq);
        self.disk.append(&name, &buf)?;
        self.disk.sync(&name)?;
        let last = ents[ents.len() - 1].index;
        let seg = self.current_segment_mut();
        seg.bytes += buf.len() as u64;
        seg.max_index = seg.max_index.max(last);
        self.entries
            .truncate((first.index - self.compacted_index - 1) as usize);
        self.entries.extend_from_slice(ents);
        Ok(())
    }

    fn current_segment(&self) -> &Segment {
        self.segments
            .last()
            .expect("open always leaves at least one segment")
    }

    fn current_segment_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("open always leaves at least one segment")
    }

    /// Installs a snapshot received from the leader: the whole log is
    /// replaced by it. Durable when this returns.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata().clone();
        if meta.index <= self.compacted_index {
            return Err(Error::Raft(raft::Error::Store(
                StorageError::SnapshotOutOfDate,
            )));
        }
        // The log restarts in a fresh segment; older ones are stale.
        let new_seq = self.current_segment().seq + 1;
        self.write_snapshot_file(&snapshot, new_seq, meta.index, meta.term)?;
        self.snapshot = snapshot;
        self.compacted_index = meta.index;
        self.compacted_term = meta.term;
        self.entries.clear();
        let old: Vec<u64> = self.segments.iter().map(|s| s.seq).collect();
        self.segments = vec![Segment {
            seq: new_seq,
            max_index: 0,
            bytes: 0,
        }];
        for seq in old {
            self.disk.remove(&segment_name(seq))?;
        }
        self.hard_state.commit = meta.index;
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.conf_state = meta.get_conf_state().clone();
        self.write_raftstate()
    }

    /// Stores a snapshot of this member's own state machine at `index`
    /// (which must be applied, hence committed and in the log), then drops
    /// log entries up to `compact_to` (at most `index`; keeping a few lets
    /// slightly lagging followers catch up without a snapshot).
    pub fn create_snapshot(&mut self, index: u64, data: Vec<u8>, compact_to: u64) -> Result<()> {
        assert!(
            index <= self.hard_state.commit,
            "snapshot at {index} beyond commit {}",
            self.hard_state.commit
        );
        if index <= self.snapshot.get_metadata().index {
            return Ok(());
        }
        let term = raft::Storage::term(self, index)?;
        let meta = SnapshotMetadata {
            index,
            term,
            conf_state: Some(self.conf_state.clone()).into(),
            ..Default::default()
        };
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(meta);
        snapshot.data = data.into();

        let compact_to = compact_to.min(index).max(self.compacted_index);
        let compact_term = raft::Storage::term(self, compact_to)?;
        // Whole segments whose entries are all at or below compact_to go.
        let keep_from = self
            .segments
            .iter()
            .position(|s| s.max_index > compact_to)
            .unwrap_or(self.segments.len() - 1);
        let log_start_seq = self.segments[keep_from].seq;
        self.write_snapshot_file(&snapshot, log_start_seq, compact_to, compact_term)?;
        self.snapshot = snapshot;
        let dropped = (compact_to - self.compacted_index) as usize;
        self.entries.drain(..dropped);
        self.compacted_index = compact_to;
        self.compacted_term = compact_term;
        let removed: Vec<Segment> = self.segments.drain(..keep_from).collect();
        for s in removed {
            self.disk.remove(&segment_name(s.seq))?;
        }
        Ok(())
    }

    fn write_snapshot_file(
        &mut self,
        snapshot: &Snapshot,
        log_start_segment: u64,
        compacted_index: u64,
        compacted_term: u64,
    ) -> Result<()> {
        let pb = encode_pb("snapshot", snapshot)?;
        let mut payload = Vec::with_capacity(24 + pb.len());
        payload.extend_from_slice(&log_start_segment.to_le_bytes());
        payload.extend_from_slice(&compacted_index.to_le_bytes());
        payload.extend_from_slice(&compacted_term.to_le_bytes());
        payload.extend_from_slice(&pb);
        self.disk
            .write_atomic(SNAPSHOT_FILE, &seal(SNAPSHOT_MAGIC, &payload))
    }
}

fn decode_raftstate(buf: &[u8]) -> Result<(HardState, ConfState)> {
    let payload = unseal(RAFTSTATE_MAGIC, RAFTSTATE_FILE, buf)?;
    let corrupt = |reason: String| Error::Corrupt {
        file: RAFTSTATE_FILE.into(),
        offset: 0,
        reason,
    };
    if payload.len() < 4 {
        return Err(corrupt("short".into()));
    }
    let hs_len = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    if payload.len() < 4 + hs_len {
        return Err(corrupt("short hard state".into()));
    }
    let hs =
        HardState::parse_from_bytes(&payload[4..4 + hs_len]).map_err(|e| corrupt(e.to_string()))?;
    let cs =
        ConfState::parse_from_bytes(&payload[4 + hs_len..]).map_err(|e| corrupt(e.to_string()))?;
    Ok((hs, cs))
}

fn decode_snapshot_file(buf: &[u8]) -> Result<(Snapshot, u64, u64, u64)> {
    let payload = unseal(SNAPSHOT_MAGIC, SNAPSHOT_FILE, buf)?;
    if payload.len() < 24 {
        return Err(Error::Corrupt {
            file: SNAPSHOT_FILE.into(),
            offset: 0,
            reason: "short".into(),
        });
    }
    let snap = Snapshot::parse_from_bytes(&payload[24..]).map_err(|e| Error::Corrupt {
        file: SNAPSHOT_FILE.into(),
        offset: 24,
        reason: e.to_string(),
    })?;
    Ok((
        snap,
        read_u64(payload, 0),
        read_u64(payload, 8),
        read_u64(payload, 16),
    ))
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::Unavailable)
}

impl<D: Disk> raft::Storage for DiskStorage<D> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.compacted_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_idx() + 1 || low > high {
            return Err(unavailable());
        }
        let from = (low - self.compacted_index - 1) as usize;
        let to = (high - self.compacted_index - 1) as usize;
        let mut out = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.compacted_index {
            return Ok(self.compacted_term);
        }
        if idx < self.compacted_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_idx() {
            return Err(unavailable());
        }
        Ok(self.entries[(idx - self.compacted_index - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.compacted_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_idx())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // A member that joined after the stored snapshot would refuse it (raft-rs
        // restores only a snapshot whose membership names it): make a newer one.
        let cs = self.snapshot.get_metadata().get_conf_state();
        let names_to = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .any(|n| *n == to);
        if self.snapshot.get_metadata().index < request_index
            || self.snapshot.get_metadata().index == 0
            || !names_to
        {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemDisk;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("cmd-{index}-{term}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..Default::default()
        }
    }

    fn small() -> StorageOptions {
        StorageOptions {
            segment_bytes_max: 64,
            ..StorageOptions::default()
        }
    }

    #[test]
    fn appends_survive_reopen_and_overwrites_replace_the_suffix() {
        let disk = MemDisk::new();
        let mut s = DiskStorage::open(disk.clone(), small()).unwrap();
        s.bootstrap(voters(&[1, 2, 3])).unwrap();
        s.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        s.append(&[entry(4, 2), entry(5, 2), entry(6, 2)]).unwrap();
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 3,
            ..Default::default()
        };
        s.set_hard_state(&hs).unwrap();
        assert!(s.segment_count() > 1, "small segments roll");
        drop(s);
        disk.crash(&mut |_| 0);
        let s = DiskStorage::open(disk, small()).unwrap();
        assert_eq!(s.last_index().unwrap(), 6);
        assert_eq!(s.term(3).unwrap(), 1);
        assert_eq!(s.term(4).unwrap(), 2);
        assert_eq!(s.hard_state(), &hs);
        assert_eq!(s.conf_state(), &voters(&[1, 2, 3]));
        let got = s
            .entries(1, 7, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
            vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]
        );
    }

    #[test]
    fn snapshot_compacts_and_answers_term_of_the_compacted_index() {
        let disk = MemDisk::new();
        let mut s = DiskStorage::open(disk.clone(), small()).unwrap();
        s.bootstrap(voters(&[1])).unwrap();
        for i in 1..=20 {
            s.append(&[entry(i, 3)]).unwrap();
        }
        s.set_commit(20).unwrap();
        let before = disk.total_bytes();
        s.create_snapshot(15, b"state".to_vec(), 12).unwrap();
        assert!(disk.total_bytes() < before, "whole segments were removed");
        assert_eq!(s.first_index().unwrap(), 13);
        assert_eq!(s.term(12).unwrap(), 3);
        assert!(matches!(
            s.term(11),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(s.snapshot(0, 1).unwrap().get_metadata().index, 15);
        assert!(s.snapshot(16, 1).is_err());
        assert!(s.take_snapshot_wanted());
        // A member the snapshot's membership does not name (it joined later) would refuse
        // it: a newer snapshot is asked for instead.
        assert!(s.snapshot(0, 2).is_err());
        assert!(s.take_snapshot_wanted());
        drop(s);
        let s = DiskStorage::open(disk, small()).unwrap();
        assert_eq!(s.first_index().unwrap(), 13);
        assert_eq!(s.last_index().unwrap(), 20);
        assert_eq!(&s.latest_snapshot().data[..], b"state");
    }
}
