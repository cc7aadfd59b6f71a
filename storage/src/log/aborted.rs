//! The aborted-transaction index (Kafka's `TransactionIndex`): for each segment, the
//! transactions aborted by the ABORT markers it stores, sorted by marker offset, which a
//! read_committed fetch collects so its client drops their records.
//!
//! The active segment's list lives in memory only: the broker adds an entry right after it
//! appends an ABORT marker, and sealing the segment (a roll, a clean close) writes
//! `<base>.txnindex`, when the list is not empty, before the next segment's file exists.
//! So a closed segment without the file has no aborted transaction, and the directory
//! listing at open says which segments have one: the others cost no read. A closed
//! segment's list is loaded on first use and cached like its offset index (`trim_caches`
//! drops it), so memory stays bounded by what fetches touch.
//!
//! Open reads the active segment's file back. After a clean close that is the whole list.
//! After a crash it is what the segment's last seal wrote (a clean close, or a roll the
//! crash cut short), if anything: entries at or past the recovered log end are dropped,
//! and the broker, which replays producer state from the log, restores the rest (see
//! [`PartitionLog::opened_clean`]). Closed segments need no such care: each was sealed,
//! its file written, before the segment after it existed. A clean close before the broker
//! restored the list leaves `partition.txnunknown`, so the next open does not report the
//! list complete either.

use tracing::warn;

use super::*;
use crate::txn::{self, AbortedTxn};

impl<B: Backend> PartitionLog<B> {
    /// Records the transaction an ABORT marker just appended at `txn.last_offset` ended.
    /// The broker calls it right after the marker's append returns (before anything else
    /// can roll the segment). No I/O: the entry reaches `<base>.txnindex` when the
    /// segment is sealed.
    ///
    /// Panics if the marker is not in the active segment or not after the last entry's.
    pub fn add_aborted_txn(&self, txn: AbortedTxn) {
        let mut s = self.state.borrow_mut();
        let (base, end) = (s.active.seg.base_offset, s.log_end_offset());
        let list = s.active.seg.aborted.get_or_insert_with(Vec::new);
        check_active_entry(list.last(), &txn, base, end);
        list.push(txn);
    }

    /// The active segment's aborted transactions (for the broker's producer snapshot).
    pub fn active_aborted_txns(&self) -> Vec<AbortedTxn> {
        let s = self.state.borrow();
        s.active.seg.aborted.clone().unwrap_or_default()
    }

    /// Replaces the active segment's aborted transactions: after an unclean open (see
    /// [`PartitionLog::opened_clean`]) the broker knows them only once it has replayed
    /// producer state. No I/O, as for [`PartitionLog::add_aborted_txn`].
    ///
    /// Panics if an entry's marker is not in the active segment or the entries are not in
    /// increasing marker order.
    pub fn restore_active_aborted_txns(&self, entries: Vec<AbortedTxn>) {
        let mut s = self.state.borrow_mut();
        let (base, end) = (s.active.seg.base_offset, s.log_end_offset());
        let mut prev = None;
        for e in &entries {
            check_active_entry(prev, e, base, end);
            prev = Some(e);
        }
        s.active.seg.aborted = Some(entries);
        s.active.aborted_known = true;
    }

    /// At a clean close: leaves [`TXN_UNKNOWN_FILE`] when the active segment's list is
    /// not known complete (an unclean open the broker never restored), and removes it
    /// once it is, so the next open's [`PartitionLog::opened_clean`] is true only when the
    /// list it reads back is whole. No I/O in the usual case (known, no marker).
    pub(super) async fn mark_aborted_known(&self) -> StorageResult<()> {
        let (known, marked) = {
            let s = self.state.borrow();
            (s.active.aborted_known, s.txn_unknown_marker)
        };
        let path = self.dir.join(TXN_UNKNOWN_FILE);
        match (known, marked) {
            (false, false) => self.backend.write_small_atomic(&path, &[]).await?,
            (true, true) => {
                self.backend.remove_file(&path).await?;
                self.backend.sync_dir(&self.dir).await?;
            }
            _ => return Ok(()),
        }
        self.state.borrow_mut().txn_unknown_marker = !known;
        Ok(())
    }

    /// The aborted transactions a read_committed fetch from `fetch_offset` up to
    /// `upper_bound` (exclusive: the last stable offset, or one past the last offset it
    /// returns) must report, as Kafka's `collectAbortedTransactions`: entries whose marker
    /// is at or past `fetch_offset` and whose transaction started below `upper_bound`,
    /// from the segment holding `fetch_offset` and each later one, up to the first entry
    /// whose last stable offset reaches `upper_bound` (no later segment can hold a
    /// transaction that started before it). Reads the file of a closed segment not cached.
    pub async fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
    ) -> StorageResult<Vec<AbortedTxn>> {
        loop {
            self.check_open()?;
            // None: retention, truncation or a compaction swap changed the segments while
            // a file was read; the walk starts again on the new ones.
            if let Some(found) = self.collect_walk(fetch_offset, upper_bound).await? {
                return Ok(found);
            }
        }
    }

    /// One walk of [`PartitionLog::collect_aborted_txns`]; None if the closed segments
    /// changed meanwhile (a merged or removed segment could be skipped or read twice).
    async fn collect_walk(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
    ) -> StorageResult<Option<Vec<AbortedTxn>>> {
        let generation = self.state.borrow().layout_gen;
        let mut out = Vec::new();
        let mut at = Some(self.floor_segment(fetch_offset));
        while let Some(base) = at {
            let (found, done) = self
                .segment_aborted(base, |e| txn::collect_aborted(e, fetch_offset, upper_bound))
                .await?;
            if self.state.borrow().layout_gen != generation {
                return Ok(None);
            }
            out.extend(found);
            if done {
                break;
            }
            at = self.next_segment(base);
        }
        Ok(Some(out))
    }

    /// The base of the segment holding `offset` (the first one for an offset below it).
    fn floor_segment(&self, offset: i64) -> i64 {
        let s = self.state.borrow();
        let active = s.active.seg.base_offset;
        if offset >= active {
            return active;
        }
        let floor = s.closed.range(..=offset).next_back();
        floor
            .or_else(|| s.closed.iter().next())
            .map_or(active, |(b, _)| *b)
    }

    /// The base of the segment after `base` (None after the active one). Looked up anew
    /// each step, so a roll during a walk is followed into the new active segment.
    fn next_segment(&self, base: i64) -> Option<i64> {
        let s = self.state.borrow();
        let active = s.active.seg.base_offset;
        if base >= active {
            return None;
        }
        let next = s.closed.range(base + 1..).next().map(|(b, _)| *b);
        Some(next.unwrap_or(active))
    }

    /// `f` of segment `base`'s aborted transactions: the active or cached list in place
    /// (no copy of the list, no borrow across an await), none for a segment without a
    /// file (or no longer there), else read from its file.
    async fn segment_aborted<T>(
        &self,
        base: i64,
        f: impl Fn(&[AbortedTxn]) -> T,
    ) -> StorageResult<T> {
        {
            let s = self.state.borrow();
            let seg = match s.closed.get(&base) {
                Some(g) => g,
                None if base == s.active.seg.base_offset => &s.active.seg,
                None => return Ok(f(&[])),
            };
            match &seg.aborted {
                Some(list) => return Ok(f(list)),
                None if !seg.has_txn_index => return Ok(f(&[])),
                None => {}
            }
        }
        let entries = self.load_aborted(base).await?;
        Ok(f(&entries))
    }

    /// Closed segment `base`'s aborted transactions (cached, or read from its file). For
    /// callers that hold `layout_lock`, so the segment cannot change under them.
    pub(super) async fn closed_aborted(&self, base: i64) -> StorageResult<Vec<AbortedTxn>> {
        self.segment_aborted(base, <[AbortedTxn]>::to_vec).await
    }

    /// Reads closed segment `base`'s `.txnindex` and caches it, unless the segments
    /// changed while it was read (a compaction swap may have put another file under the
    /// name). A damaged file is an error: reporting no aborted transaction would hand
    /// aborted records to read_committed consumers.
    async fn load_aborted(&self, base: i64) -> StorageResult<Vec<AbortedTxn>> {
        let generation = self.state.borrow().layout_gen;
        let path = self.dir.join(segment_name(base, "txnindex"));
        let entries = match self.backend.read_small(&path).await? {
            Some(bytes) => txn::decode_index(&bytes, base).inspect_err(|e| {
                warn!(path = %path.display(), error = %e, "aborted-transaction index damaged");
            })?,
            None => {
                warn!(path = %path.display(), "aborted-transaction index listed at open is gone; taking the segment to have none");
                Vec::new()
            }
        };
        let mut s = self.state.borrow_mut();
        if s.layout_gen == generation {
            if let Some(g) = s.closed.get_mut(&base) {
                g.aborted = Some(entries.clone());
            }
        }
        Ok(entries)
    }

    /// Truncation to `offset`: drops the active segment's entries at or past it and, if
    /// the segment has a `.txnindex` (left by a clean close, or a closed segment that
    /// truncation made active), rewrites it with what stays (removes it when nothing
    /// does), so no file names a marker that is no longer in the log.
    pub(super) async fn cut_active_aborted(&self, offset: i64) -> StorageResult<()> {
        let (base, kept, present) = {
            let mut s = self.state.borrow_mut();
            let seg = &mut s.active.seg;
            let list = seg.aborted.get_or_insert_with(Vec::new);
            list.retain(|e| e.last_offset < offset);
            (seg.base_offset, list.clone(), seg.has_txn_index)
        };
        if present {
            let present = store_txn_index(&self.backend, &self.dir, base, &kept).await?;
            self.state.borrow_mut().active.seg.has_txn_index = present;
        }
        Ok(())
    }
}

/// Panics unless `txn`'s marker lies in the active segment `[base, end)` and after the
/// previous entry's: entries must be where the readers look for them, in order.
fn check_active_entry(prev: Option<&AbortedTxn>, txn: &AbortedTxn, base: i64, end: i64) {
    assert!(
        txn.last_offset >= base && txn.last_offset < end,
        "aborted transaction {txn:?}: its marker (offset {}) is not in the active segment [{base}, {end})",
        txn.last_offset
    );
    if let Some(p) = prev {
        assert!(
            txn.last_offset > p.last_offset,
            "aborted transaction {txn:?}: its marker (offset {}) is not after the previous entry's ({})",
            txn.last_offset,
            p.last_offset
        );
    }
}

/// Makes `<base>.txnindex` hold `entries` durably: written atomically when there are any,
/// removed (a missing file is fine) when there are none. Returns whether the file exists.
pub(super) async fn store_txn_index<B: Backend>(
    backend: &B,
    dir: &Path,
    base: i64,
    entries: &[AbortedTxn],
) -> StorageResult<bool> {
    let path = dir.join(segment_name(base, "txnindex"));
    if entries.is_empty() {
        backend.remove_file(&path).await?;
        backend.sync_dir(dir).await?;
        return Ok(false);
    }
    backend
        .write_small_atomic(&path, &txn::encode_index(entries))
        .await?;
    Ok(true)
}

/// The active segment's aborted transactions as open finds them.
pub(super) struct ActiveAborted {
    pub(super) entries: Vec<AbortedTxn>,
    /// `<base>.txnindex` exists after open.
    pub(super) present: bool,
    /// The file was read whole (false: damaged, and removed).
    pub(super) intact: bool,
}

/// Reads the active segment's `.txnindex` at open (`present`: the listing has it) and
/// keeps the entries below the recovered log `end`. Entries at or past it (only after a
/// crash: the log lost what they name) are dropped from the file as well, and a damaged
/// file is removed: either way the broker restores the list after an unclean open.
pub(super) async fn load_active_aborted<B: Backend>(
    backend: &B,
    dir: &Path,
    base: i64,
    present: bool,
    end: i64,
) -> StorageResult<ActiveAborted> {
    let path = dir.join(segment_name(base, "txnindex"));
    let bytes = match present {
        true => backend.read_small(&path).await?,
        false => None,
    };
    let Some(bytes) = bytes else {
        return Ok(ActiveAborted {
            entries: Vec::new(),
            present: false,
            intact: true,
        });
    };
    let (mut entries, intact) = match txn::decode_index(&bytes, base) {
        Ok(e) => (e, true),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "active segment's aborted-transaction index damaged; removing it (the broker restores the list)");
            (Vec::new(), false)
        }
    };
    let whole = entries.len();
    entries.retain(|e| e.last_offset < end);
    let present = match intact && entries.len() == whole {
        true => true,
        false => store_txn_index(backend, dir, base, &entries).await?,
    };
    Ok(ActiveAborted {
        entries,
        present,
        intact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::test_support::*;

    fn cfg() -> LogConfig {
        LogConfig {
            retention_ms: None,
            ..LogConfig::default()
        }
    }

    fn txn_path(base: i64) -> PathBuf {
        PathBuf::from(format!("/mem/t-0/{base:020}.txnindex"))
    }

    /// Appends a small data batch; returns its offset.
    fn data(log: &PartitionLog<MemoryBackend>) -> i64 {
        let b = CheckedBatch::check(Bytes::from(build::sized(100, 1, 1))).unwrap();
        block_on(log.append(b, 0)).unwrap().base_offset
    }

    fn collect(log: &PartitionLog<MemoryBackend>, from: i64, upper: i64) -> Vec<AbortedTxn> {
        block_on(log.collect_aborted_txns(from, upper)).unwrap()
    }

    #[test]
    fn collect_across_a_roll_stops_at_the_first_entry_whose_lso_reaches_the_upper_bound() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        // Three segments of a data batch and an abort each. Storage takes the entries as
        // the broker gives them: `c` starts at 0 so that it would match any range, which
        // shows where the walk stops.
        data(&log);
        let a = append_abort(&log, 1, 0, Some(1));
        let seg1 = roll(&log);
        data(&log);
        let b = append_abort(&log, 2, 1, Some(3));
        let seg2 = roll(&log);
        data(&log);
        let c = append_abort(&log, 3, 0, None);
        assert_eq!((a.last_offset, seg1, b.last_offset, seg2), (1, 2, 3, 4));
        // a's LSO (1) is below 2: on into the next segment; b's (3) reaches 2: stop
        // there, though c would match.
        assert_eq!(collect(&log, 0, 2), vec![a, b]);
        // Up to 4 no LSO reaches the bound: on into the active segment.
        assert_eq!(collect(&log, 0, 4), vec![a, b, c]);
        // a's LSO reaches 1 at once.
        assert_eq!(collect(&log, 0, 1), vec![a]);
        // From the second segment: a lies below, b stops the walk or it goes on.
        assert_eq!(collect(&log, seg1, 2), vec![b]);
        assert_eq!(collect(&log, seg1, 4), vec![b, c]);
        // From inside the active segment, and past every marker.
        assert_eq!(collect(&log, seg2, 100), vec![c]);
        assert_eq!(collect(&log, c.last_offset + 1, 100), vec![]);
    }

    #[test]
    fn a_roll_writes_the_sealed_segments_index_and_a_clean_reopen_keeps_every_entry() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        assert!(
            !log.opened_clean(),
            "a new log has no clean shutdown behind it"
        );
        data(&log);
        let a = append_abort(&log, 7, 0, None);
        let a2 = append_abort(&log, 8, 0, None);
        let seg1 = roll(&log);
        // Sealed with the roll, before the new segment's file exists.
        assert_eq!(stored_aborted(&be, 0), Some(vec![a, a2]));
        data(&log);
        let seg2 = roll(&log);
        assert_eq!(stored_aborted(&be, seg1), None, "no aborts, no file");
        data(&log);
        let c = append_abort(&log, 9, seg2, None);
        // The active segment's entry lives in memory until the segment is sealed.
        assert_eq!(stored_aborted(&be, seg2), None);
        assert_eq!(log.active_aborted_txns(), vec![c]);
        assert_eq!(collect(&log, 0, i64::MAX), vec![a, a2, c]);
        block_on(log.close()).unwrap();
        assert_eq!(
            stored_aborted(&be, seg2),
            Some(vec![c]),
            "a clean close seals it"
        );

        let log = open(&be, cfg());
        assert!(log.opened_clean());
        assert_eq!(log.active_aborted_txns(), vec![c]);
        assert_eq!(collect(&log, 0, i64::MAX), vec![a, a2, c]);
        // More aborts in the same active segment, then a roll rewrites its file whole.
        let d = append_abort(&log, 10, c.last_offset + 1, None);
        roll(&log);
        assert_eq!(stored_aborted(&be, seg2), Some(vec![c, d]));
        assert_eq!(collect(&log, seg1, i64::MAX), vec![c, d]);
    }

    #[test]
    fn an_unclean_open_keeps_what_the_last_clean_close_wrote_below_the_log_end() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        let a = append_abort(&log, 1, 0, None);
        block_on(log.close()).unwrap();
        let log = open(&be, cfg());
        let b = append_abort(&log, 2, a.last_offset + 1, None);
        block_on(log.sync()).unwrap();
        std::mem::forget(log);
        be.crash(5);
        let log = open(&be, cfg());
        assert!(!log.opened_clean());
        // Only what the clean close wrote: b was in memory when the process died.
        assert_eq!(log.active_aborted_txns(), vec![a]);
        assert_eq!(log.log_end_offset(), b.last_offset + 1);
        // The broker restores the list from its replay; a roll seals all of it.
        log.restore_active_aborted_txns(vec![a, b]);
        assert_eq!(collect(&log, 0, i64::MAX), vec![a, b]);
        roll(&log);
        assert_eq!(stored_aborted(&be, 0), Some(vec![a, b]));
        drop(log);

        // A stale file naming a marker past the recovered end (the log lost it): dropped
        // from the list and from the file.
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        let a = append_abort(&log, 1, 0, None);
        let end = log.log_end_offset();
        block_on(log.sync()).unwrap();
        std::mem::forget(log);
        be.crash(1);
        let past = AbortedTxn {
            last_offset: end + 5,
            ..a
        };
        block_on(be.write_small_atomic(&txn_path(0), &txn::encode_index(&[a, past]))).unwrap();
        let log = open(&be, cfg());
        assert!(!log.opened_clean());
        assert_eq!(log.active_aborted_txns(), vec![a]);
        assert_eq!(stored_aborted(&be, 0), Some(vec![a]));
        drop(log);

        // A damaged one is removed, and the open is not clean even after a clean close.
        let log = open(&be, cfg());
        block_on(log.close()).unwrap();
        be.corrupt(&txn_path(0), 1, &[9]);
        let log = open(&be, cfg());
        assert!(!log.opened_clean(), "the active list is unknown");
        assert_eq!(log.active_aborted_txns(), vec![]);
        assert_eq!(stored_aborted(&be, 0), None);
    }

    #[test]
    fn a_clean_close_before_the_list_was_restored_does_not_make_it_complete() {
        let be = MemoryBackend::new();
        let marker = Path::new("/mem/t-0/partition.txnunknown");
        let log = open(&be, cfg());
        // A new log: nothing to restore, so its first close is complete.
        block_on(log.close()).unwrap();
        let log = open(&be, cfg());
        assert!(log.opened_clean());
        let a = append_abort(&log, 1, 0, None);
        block_on(log.sync()).unwrap();
        std::mem::forget(log);
        be.crash(3);
        // Unclean, and the broker never restores the list (no append came) before a
        // clean close: the next open must not take the (empty) list as complete.
        let log = open(&be, cfg());
        assert!(!log.opened_clean());
        block_on(log.close()).unwrap();
        assert!(be.file_bytes(marker).is_some());
        let log = open(&be, cfg());
        assert!(!log.opened_clean(), "still unknown");
        assert_eq!(log.active_aborted_txns(), vec![]);
        // Restored, then closed: complete again, and the marker goes.
        log.restore_active_aborted_txns(vec![a]);
        block_on(log.close()).unwrap();
        assert!(be.file_bytes(marker).is_none());
        let log = open(&be, cfg());
        assert!(log.opened_clean());
        assert_eq!(log.active_aborted_txns(), vec![a]);
    }

    #[test]
    fn closed_lists_are_a_cache_and_segments_without_an_index_are_not_read() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        let a = append_abort(&log, 1, 0, None);
        let seg1 = roll(&log);
        data(&log);
        let seg2 = roll(&log);
        data(&log);
        roll(&log);
        data(&log);
        block_on(log.close()).unwrap();
        let log = open(&be, cfg());
        assert_eq!(
            log.stats().aborted_txn_heap_bytes,
            0,
            "nothing loaded at open"
        );
        assert_eq!(collect(&log, seg1, i64::MAX), vec![]);
        assert_eq!(
            log.stats().aborted_txn_heap_bytes,
            0,
            "segments without a file are skipped"
        );
        assert_eq!(collect(&log, 0, i64::MAX), vec![a]);
        assert!(log.stats().aborted_txn_heap_bytes >= std::mem::size_of::<AbortedTxn>());
        log.trim_caches();
        assert_eq!(log.stats().aborted_txn_heap_bytes, 0);
        // Read again after a trim; removing the file shows that it is read.
        assert_eq!(collect(&log, 0, seg2), vec![a]);
        log.trim_caches();
        block_on(be.remove_file(&txn_path(0))).unwrap();
        assert_eq!(collect(&log, 0, i64::MAX), vec![]);
        // Damage is an error, not an empty answer.
        block_on(be.write_small_atomic(&txn_path(0), &[0xff; 34])).unwrap();
        log.trim_caches();
        assert!(block_on(log.collect_aborted_txns(0, i64::MAX)).is_err());
    }

    #[test]
    fn truncation_cuts_the_lists_and_rewrites_or_removes_their_files() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        let a = append_abort(&log, 1, 0, None);
        let seg1 = roll(&log);
        data(&log);
        let b1 = append_abort(&log, 2, seg1, None);
        let b2 = append_abort(&log, 3, seg1, None);
        let seg2 = roll(&log);
        let c = append_abort(&log, 4, seg2, None);
        let seg3 = roll(&log);
        data(&log);
        let d = append_abort(&log, 5, seg3, None);
        block_on(log.close()).unwrap();
        let log = open(&be, cfg());
        assert_eq!(collect(&log, 0, i64::MAX), vec![a, b1, b2, c, d]);

        // Inside the active segment, at its entry: the clean close's file goes.
        block_on(log.truncate_to(d.last_offset)).unwrap();
        assert_eq!(log.active_aborted_txns(), vec![]);
        assert_eq!(stored_aborted(&be, seg3), None);
        // Into the second segment, between its entries: the later segments go with
        // their files, the second becomes active with b1 and its file is rewritten.
        block_on(log.truncate_to(b2.last_offset)).unwrap();
        assert_eq!(log.active_base_offset(), seg1);
        assert_eq!(log.active_aborted_txns(), vec![b1]);
        assert_eq!(stored_aborted(&be, seg1), Some(vec![b1]));
        assert_eq!(stored_aborted(&be, seg2), None);
        assert_eq!(collect(&log, 0, i64::MAX), vec![a, b1]);
        // At b1: emptied, so removed.
        block_on(log.truncate_to(b1.last_offset)).unwrap();
        assert_eq!(log.active_aborted_txns(), vec![]);
        assert_eq!(stored_aborted(&be, seg1), None);
        assert_eq!(
            stored_aborted(&be, 0),
            Some(vec![a]),
            "below the cut: untouched"
        );

        // A clean reopen sees the log as cut; a new abort at the cut offset is its own.
        block_on(log.close()).unwrap();
        let log = open(&be, cfg());
        let e = append_abort(&log, 6, b1.last_offset, None);
        assert_eq!(e.last_offset, b1.last_offset);
        assert_eq!(collect(&log, 0, i64::MAX), vec![a, e]);
        roll(&log);
        assert_eq!(stored_aborted(&be, seg1), Some(vec![e]));

        // A follower restarting at an offset: every segment goes with its index.
        let at = log.log_end_offset();
        block_on(log.truncate_fully_and_start_at(at)).unwrap();
        assert_eq!(collect(&log, at, i64::MAX), vec![]);
        assert_eq!(
            (stored_aborted(&be, 0), stored_aborted(&be, seg1)),
            (None, None)
        );
    }

    #[test]
    fn retention_and_delete_records_remove_a_segments_index_with_it() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        // Five segments of the same size, one abort in each.
        let (mut bases, mut entries) = (vec![0], Vec::new());
        for pid in 0..5 {
            let first = data(&log);
            entries.push(append_abort(&log, pid, first, None));
            if pid < 4 {
                bases.push(roll(&log));
            }
        }
        let seg_bytes = log.stats().size_bytes / 5;
        log.set_config(LogConfig {
            retention_bytes: Some(3 * seg_bytes),
            ..cfg()
        })
        .unwrap();
        let out = block_on(log.enforce_retention()).unwrap();
        assert_eq!(out.log_start_offset, bases[2], "{out:?}");
        assert_eq!(
            (stored_aborted(&be, 0), stored_aborted(&be, bases[1])),
            (None, None)
        );
        assert_eq!(stored_aborted(&be, bases[2]), Some(vec![entries[2]]));
        assert_eq!(collect(&log, bases[2], i64::MAX), entries[2..]);
        block_on(log.delete_records(bases[3])).unwrap();
        assert_eq!(stored_aborted(&be, bases[2]), None);
        assert_eq!(collect(&log, bases[3], i64::MAX), entries[3..]);
        // An orphan index (a crash between a segment's files) is removed at open.
        block_on(be.write_small_atomic(&txn_path(1), &txn::encode_index(&entries[..1]))).unwrap();
        block_on(log.close()).unwrap();
        let log = open(&be, cfg());
        assert_eq!(stored_aborted(&be, 1), None);
        assert_eq!(collect(&log, bases[3], i64::MAX), entries[3..]);
    }

    #[test]
    #[should_panic(expected = "is not in the active segment")]
    fn an_entry_whose_marker_is_not_in_the_active_segment_panics() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        let a = append_abort(&log, 1, 0, None);
        roll(&log);
        log.add_aborted_txn(AbortedTxn {
            producer_id: 2,
            ..a
        });
    }

    #[test]
    #[should_panic(expected = "is not after the previous entry's")]
    fn entries_out_of_order_panic() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        let a = append_abort(&log, 1, 0, None);
        append_abort(&log, 2, 0, None);
        let b = AbortedTxn {
            last_offset: a.last_offset + 1,
            ..a
        };
        log.restore_active_aborted_txns(vec![b, a]);
    }

    #[test]
    #[should_panic(expected = "collides with the log's own files")]
    fn aux_files_cannot_take_an_index_name() {
        let be = MemoryBackend::new();
        let log = open(&be, cfg());
        let _ = block_on(log.write_aux("00000000000000000000.txnindex", b"x"));
    }
}
