//! Reading the log: whole batches by offset, the read-ahead stream behind
//! sequential readers, ListOffsets by timestamp, and loading closed segments'
//! indexes.
//!
//! Readers of recent offsets are served from the tail cache without I/O;
//! older data comes from disk through a read-ahead of aligned reads kept in
//! flight, copied once from the DMA buffers into the `Bytes` a read returns.
//! A closed segment's index is loaded on its first use, not at open, so a log
//! with many segments opens without reading them all (and an idle log can
//! drop them again, see `trim_caches`); a missing or damaged index is rebuilt
//! from the segment by the recovery scan.

use tracing::warn;

use super::recovery::{scan_segment, ScanStart};
use super::*;
use crate::backend::align_down;
use crate::batch::{self, BatchHeader};

/// A disk read's buffer, as the backend returned it (no copy).
type ReadPart = Box<dyn std::ops::Deref<Target = [u8]>>;
type PendingRead = Pin<Box<dyn Future<Output = StorageResult<ReadPart>>>>;

/// Read-ahead parts: at least this many per `read_ahead_bytes` (fio keeps 8
/// reads in flight to reach the device's rate), each a power of two (the
/// DMA arena is a buddy allocator) between these sizes.
const READ_AHEAD_PARTS: u64 = 8;
const READ_PART_BYTES_MIN: u64 = 64 << 10;
const READ_PART_BYTES_MAX: u64 = 1 << 20;

/// An aligned disk read of a stream; bytes `[pos, valid_end)` of it hold log
/// data (the rest lies past what was written when it was issued, or past
/// the end of the file).
struct StreamPart<T> {
    pos: u64,
    valid_end: u64,
    data: T,
}

/// A sequential reader's read-ahead: up to `read_ahead_bytes` of aligned
/// disk reads kept in flight ahead of the consumer, so the device queue never
/// drains while the shard copies what already arrived. Batches are copied
/// once, from the DMA buffers straight into the `Bytes` a read returns.
pub(super) struct ReadStream<F> {
    pub(super) segment_base: i64,
    /// The log's `layout_gen` when the stream started: a stream of an older layout may
    /// read a file that was replaced since, and is not reused.
    layout_gen: u64,
    /// File for closed segments (kept open while the stream lives).
    file: Rc<Handle<F>>,
    /// Position of the next batch not yet returned.
    pos: u64,
    /// First offset not yet returned from the stream.
    next_offset: i64,
    /// Reads that completed, by position (they may overlap where a read was
    /// repeated because the active segment grew).
    ready: VecDeque<StreamPart<ReadPart>>,
    /// Reads in flight, in issue order.
    parts: VecDeque<StreamPart<PendingRead>>,
    /// Where the next read starts (aligned).
    next_pos: u64,
    /// End of the valid bytes of the reads issued so far.
    issued_end: u64,
}

impl<F> ReadStream<F> {
    pub(super) fn buffered_bytes(&self) -> usize {
        self.ready.iter().map(|r| r.data.len()).sum()
    }

    /// End of the valid bytes contiguous from `pos` in completed reads.
    fn covered_end(&self) -> u64 {
        let mut end = self.pos;
        for r in &self.ready {
            if r.pos <= end && r.valid_end > end {
                end = r.valid_end;
            }
        }
        end
    }

    /// Copies file bytes `[at, at + len)`, which completed reads cover.
    fn copy_out(&self, mut at: u64, len: u64, mut put: impl FnMut(&[u8])) {
        let end = at + len;
        while at < end {
            let r = self
                .ready
                .iter()
                .rev()
                .find(|r| r.pos <= at && at < r.valid_end)
                .expect("read-ahead covers what it reported");
            let stop = end.min(r.valid_end);
            put(&r.data[(at - r.pos) as usize..(stop - r.pos) as usize]);
            at = stop;
        }
    }
}

impl<B: Backend> PartitionLog<B> {
    /// Loads (or rebuilds) the index of closed segment `base` if needed.
    pub(super) async fn ensure_index(&self, base: i64) -> StorageResult<()> {
        let (size, next, generation) = {
            let s = self.state.borrow();
            match s.closed.get(&base) {
                Some(seg) if seg.index.is_none() => (seg.size, seg.next_offset, s.layout_gen),
                _ => return Ok(()),
            }
        };
        let decoded = match read_index_files(&self.backend, &self.dir, base).await? {
            (Some(o), Some(t)) => SegmentIndex::decode(&o, &t, size, (next - base) as u64),
            _ => None,
        };
        let index = match decoded {
            Some(i) => i,
            None => {
                let path = self.dir.join(segment_name(base, "log"));
                warn!(path = %path.display(), "segment index missing or damaged; rebuilding it");
                let file = self.backend.open_segment(&path, false).await?;
                let interval = self.config.borrow().index_interval_bytes;
                let start = ScanStart::segment_start(base);
                let idx = scan_segment(&file, &path, base, size, interval, start)
                    .await?
                    .index;
                file.close().await?;
                self.write_index_files(base, &idx).await?;
                idx
            }
        };
        let mut s = self.state.borrow_mut();
        if s.layout_gen != generation {
            // A compaction swap may have put another file under this base meanwhile: this
            // index could describe the old one. The next use loads it again.
            return Ok(());
        }
        if let Some(seg) = s.closed.get_mut(&base) {
            seg.max_timestamp = Some(index.times.last().map_or(-1, |t| t.timestamp_ms));
            seg.index = Some(index);
        }
        Ok(())
    }

    /// Reads whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (at least one batch, even a larger one, as Kafka does so
    /// a consumer never gets stuck). Empty at the log end. An offset that
    /// compaction removed reads from the next batch after it.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> StorageResult<LogRead> {
        let mut at = offset;
        loop {
            // None: a compaction swap or retention changed the segments while this read
            // waited; it starts again on the new ones.
            let Some(out) = self.read_at_offset(at, max_bytes).await? else {
                continue;
            };
            if !out.batches.is_empty() || at >= out.log_end_offset {
                return Ok(out);
            }
            // A compacted segment may end in a gap: go on with the next segment.
            let next = {
                let s = self.state.borrow();
                s.closed
                    .range(..=at)
                    .next_back()
                    .map(|(_, g)| g.next_offset)
                    .filter(|n| *n > at)
            };
            match next {
                Some(n) => at = n,
                None => return Ok(out),
            }
        }
    }

    /// [`PartitionLog::read`] within the segment that holds `offset`; None if the closed
    /// segments changed (see `layout_gen`) before its file was open.
    async fn read_at_offset(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> StorageResult<Option<LogRead>> {
        self.check_open()?;
        let generation = self.state.borrow().layout_gen;
        let changed = || self.state.borrow().layout_gen != generation;
        let (lso, leo) = {
            let s = self.state.borrow();
            (s.log_start_offset, s.log_end_offset())
        };
        if offset < lso || offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: lso,
                log_end_offset: leo,
            });
        }
        let mut out = LogRead {
            batches: Vec::new(),
            log_start_offset: lso,
            log_end_offset: leo,
        };
        if offset == leo {
            return Ok(Some(out));
        }
        // Recent data: straight from the tail cache, no I/O, no copy.
        {
            let s = self.state.borrow();
            if s.tail.front().is_some_and(|t| t.base_offset <= offset) {
                let i = s.tail.partition_point(|t| t.last_offset < offset);
                let mut total = 0usize;
                for t in s.tail.range(i..) {
                    if total > 0 && total + t.data.len() > max_bytes {
                        break;
                    }
                    total += t.data.len();
                    out.batches.push(t.data.clone());
                }
                return Ok(Some(out));
            }
        }
        let seg_base = {
            let s = self.state.borrow();
            if offset >= s.active.seg.base_offset {
                s.active.seg.base_offset
            } else {
                match s.closed.range(..=offset).next_back() {
                    Some((b, _)) => *b,
                    None => return Ok(Some(out)),
                }
            }
        };
        self.ensure_index(seg_base).await?;
        if changed() {
            return Ok(None);
        }
        let (start_pos, limit, active) = {
            let s = self.state.borrow();
            let rel = (offset - seg_base) as u32;
            if seg_base == s.active.seg.base_offset {
                let pos = s
                    .active
                    .seg
                    .index
                    .as_ref()
                    .map_or(0, |i| i.position_for(rel)) as u64;
                (pos, s.active.written, true)
            } else {
                let seg = &s.closed[&seg_base];
                let pos = seg.index.as_ref().map_or(0, |i| i.position_for(rel)) as u64;
                (pos, seg.size, false)
            }
        };
        // Continue the sequential stream if this read picks up where it
        // stopped; otherwise start a new one at the indexed position.
        let reuse = {
            let s = self.state.borrow();
            s.stream.as_ref().is_some_and(|st| {
                st.segment_base == seg_base
                    && st.layout_gen == generation
                    && st.pos >= start_pos
                    && offset >= st.next_offset
            })
        };
        let mut st = if reuse {
            self.state
                .borrow_mut()
                .stream
                .take()
                .expect("checked above")
        } else {
            self.state.borrow_mut().stream = None;
            let file = if active {
                self.state.borrow().active.file.clone()
            } else {
                let path = self.dir.join(segment_name(seg_base, "log"));
                let file = self.open_budgeted(&path, false).await?;
                if changed() {
                    // The name may stand for a rewritten file now: positions from the old
                    // index would not fit it.
                    return Ok(None);
                }
                file
            };
            ReadStream {
                segment_base: seg_base,
                layout_gen: generation,
                file,
                pos: start_pos,
                next_offset: offset,
                ready: VecDeque::new(),
                parts: VecDeque::new(),
                next_pos: align_down(start_pos),
                issued_end: align_down(start_pos),
            }
        };
        let read_ahead = self.config.borrow().read_ahead_bytes as u64;
        let part_bytes = (read_ahead / READ_AHEAD_PARTS)
            .clamp(READ_PART_BYTES_MIN, READ_PART_BYTES_MAX)
            .next_power_of_two();
        let depth = (read_ahead / part_bytes).max(1) as usize;
        let mut total = 0usize;
        let mut full = false;
        let mut data = BytesMut::new();
        let mut ranges = Vec::new();
        loop {
            let header_end = st.pos + batch::HEADER_BYTES as u64;
            if !self
                .stream_fill(&mut st, header_end, limit, part_bytes, depth)
                .await?
            {
                break;
            }
            let mut head = [0u8; batch::HEADER_BYTES];
            let mut at = 0;
            st.copy_out(st.pos, head.len() as u64, |b| {
                head[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            });
            let Ok(h) = BatchHeader::parse(&head) else {
                break; // not a batch: what the caller gets ends here
            };
            let len = h.total_bytes();
            if st.pos + len as u64 > limit {
                break;
            }
            if h.last_offset() < offset {
                st.pos += len as u64; // before the offset asked for
                continue;
            }
            if total > 0 && total + len > max_bytes {
                full = true;
                break;
            }
            let batch_end = st.pos + len as u64;
            if !self
                .stream_fill(&mut st, batch_end, limit, part_bytes, depth)
                .await?
            {
                break;
            }
            if data.capacity() - data.len() < len {
                // Once: what this read returns at most, so no batch is copied twice.
                let most = (max_bytes - total).min((limit - st.pos) as usize);
                data.reserve(len.max(most));
            }
            let at = data.len();
            st.copy_out(st.pos, len as u64, |b| data.extend_from_slice(b));
            ranges.push(at..at + len);
            total += len;
            st.pos += len as u64;
            st.next_offset = h.last_offset() + 1;
            if total >= max_bytes {
                full = true;
                break;
            }
        }
        let data = data.freeze();
        out.batches
            .extend(ranges.into_iter().map(|r| data.slice(r)));
        if active {
            self.state.borrow_mut().stream = Some(st);
            // Reached what is on disk of the active segment: go on from the tail.
            if !full {
                let s = self.state.borrow();
                let next = match out.batches.last() {
                    Some(b) => BatchHeader::parse(b)?.last_offset() + 1,
                    None => offset,
                };
                let i = s.tail.partition_point(|t| t.last_offset < next);
                for t in s.tail.range(i..) {
                    if t.base_offset > next && !out.batches.is_empty() {
                        break; // not contiguous with what we read: let the next fetch ask
                    }
                    if total > 0 && total + t.data.len() > max_bytes {
                        break;
                    }
                    total += t.data.len();
                    out.batches.push(t.data.clone());
                }
            }
        } else {
            self.state.borrow_mut().stream = Some(st);
        }
        Ok(Some(out))
    }

    /// Makes the stream's completed reads cover `[st.pos, need)`, issuing
    /// aligned reads of `part_bytes` so that `depth` stay in flight, and
    /// waiting for them in order. False if `need` lies past `limit` (what is
    /// on disk) or the file ends first.
    async fn stream_fill(
        &self,
        st: &mut ReadStream<B::File>,
        need: u64,
        limit: u64,
        part_bytes: u64,
        depth: usize,
    ) -> StorageResult<bool> {
        if need > limit {
            return Ok(false);
        }
        loop {
            while st.ready.front().is_some_and(|r| r.valid_end <= st.pos) {
                st.ready.pop_front();
            }
            if st.covered_end() >= need {
                return Ok(true);
            }
            // Keep `depth` reads in flight. A read that stopped at the old
            // end of the active segment is repeated from its last page once
            // more has been written.
            while st.parts.len() < depth && st.issued_end < limit {
                let pos = st.next_pos;
                let valid_end = (pos + part_bytes).min(limit);
                let file = st.file.clone();
                let mut fut: PendingRead = Box::pin(async move {
                    let data = file.get().read_aligned(pos, part_bytes as usize).await?;
                    Ok(Box::new(data) as ReadPart)
                });
                // Poll once so the read is queued to the device now.
                if let Some(r) = futures_lite::future::poll_once(&mut fut).await {
                    let r = r?;
                    fut = Box::pin(async move { Ok(r) });
                }
                st.parts.push_back(StreamPart {
                    pos,
                    valid_end,
                    data: fut,
                });
                st.issued_end = valid_end;
                st.next_pos = if valid_end < pos + part_bytes {
                    align_down(valid_end)
                } else {
                    pos + part_bytes
                };
            }
            let Some(part) = st.parts.pop_front() else {
                return Ok(false);
            };
            let data = part.data.await?;
            let valid_end = part.valid_end.min(part.pos + data.len() as u64);
            if valid_end <= part.pos {
                return Ok(false); // end of file
            }
            st.ready.push_back(StreamPart {
                pos: part.pos,
                valid_end,
                data,
            });
        }
    }

    /// ListOffsets by timestamp: the first record whose timestamp is at least
    /// `timestamp_ms`, as (offset, timestamp). Exact for uncompressed batches;
    /// for a compressed batch, its base offset and max timestamp.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> StorageResult<Option<(i64, i64)>> {
        self.check_open()?;
        let bases: Vec<i64> = self.state.borrow().closed.keys().copied().collect();
        let mut start: Option<i64> = None;
        for b in bases {
            self.ensure_index(b).await?;
            let s = self.state.borrow();
            let g = &s.closed[&b];
            if g.max_timestamp.unwrap_or(-1) >= timestamp_ms {
                let rel = g
                    .index
                    .as_ref()
                    .map_or(0, |i| i.relative_offset_for_time(timestamp_ms));
                start = Some(b + rel as i64);
                break;
            }
        }
        if start.is_none() {
            let s = self.state.borrow();
            let a = &s.active.seg;
            if a.max_timestamp.unwrap_or(-1) >= timestamp_ms {
                let rel = a
                    .index
                    .as_ref()
                    .map_or(0, |i| i.relative_offset_for_time(timestamp_ms));
                start = Some(a.base_offset + rel as i64);
            }
        }
        let Some(mut at) = start else { return Ok(None) };
        at = at.max(self.log_start_offset());
        loop {
            let r = self.read(at, 1 << 20).await?;
            if r.batches.is_empty() {
                return Ok(None);
            }
            for b in &r.batches {
                let h = BatchHeader::parse(b)?;
                // An empty batch (a producer's last, compacted) holds no record to answer.
                if h.record_count > 0 && h.max_timestamp >= timestamp_ms && h.last_offset() >= at {
                    let found = batch::first_record_at_or_after(b, timestamp_ms)
                        .unwrap_or((h.base_offset, h.max_timestamp));
                    return Ok(Some((found.0.max(self.log_start_offset()), found.1)));
                }
                at = h.last_offset() + 1;
            }
        }
    }

    /// ListOffsets MAX_TIMESTAMP: the record with the largest timestamp.
    pub async fn max_timestamp_offset(&self) -> StorageResult<Option<(i64, i64)>> {
        self.check_open()?;
        let bases: Vec<i64> = self.state.borrow().closed.keys().copied().collect();
        let mut best: Option<(i64, i64)> = None; // (ts, segment base)
        for b in bases {
            self.ensure_index(b).await?;
            let ts = self.state.borrow().closed[&b].max_timestamp.unwrap_or(-1);
            if ts >= 0 && best.is_none_or(|(t, _)| ts > t) {
                best = Some((ts, b));
            }
        }
        {
            let s = self.state.borrow();
            let ts = s.active.seg.max_timestamp.unwrap_or(-1);
            if s.active.seg.size > 0 && ts >= 0 && best.is_none_or(|(t, _)| ts > t) {
                best = Some((ts, s.active.seg.base_offset));
            }
        }
        let Some((ts, _)) = best else { return Ok(None) };
        // The first batch whose max timestamp equals the maximum.
        Ok(match self.offset_for_timestamp(ts).await? {
            Some((_, _)) => {
                let mut at = self.offset_for_timestamp(ts).await?.map_or(0, |f| f.0);
                let mut result = None;
                'outer: loop {
                    let r = self.read(at, 1 << 20).await?;
                    if r.batches.is_empty() {
                        break;
                    }
                    for b in &r.batches {
                        let h = BatchHeader::parse(b)?;
                        if h.max_timestamp == ts {
                            result = Some(
                                batch::max_timestamp_record(b).unwrap_or((h.last_offset(), ts)),
                            );
                            break 'outer;
                        }
                        at = h.last_offset() + 1;
                    }
                }
                result
            }
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::test_support::*;

    #[test]
    fn a_sequential_reader_of_the_active_segment_rereads_what_was_written_since() {
        let be = MemoryBackend::new();
        let cfg = LogConfig {
            tail_cache_bytes_max: 0, // every read below goes to the file
            read_ahead_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let log = open(&be, cfg);
        let batch_n = |n: i64| Bytes::from(build::sized(700 + (n as usize * 13) % 500, 1, n));
        block_on(async {
            let mut next = 0i64;
            let mut appended = 0i64;
            for round in 0..20 {
                for _ in 0..7 {
                    let checked = CheckedBatch::check(batch_n(appended)).unwrap();
                    log.append(checked, 0).await.unwrap();
                    appended += 1;
                }
                log.write_through().await.unwrap();
                // Small reads: the stream stops mid-part, at the old end of
                // what was written, and must not serve stale bytes after it.
                loop {
                    let r = log.read(next, 1500 + round * 100).await.unwrap();
                    if r.batches.is_empty() {
                        break;
                    }
                    for b in &r.batches {
                        let h = batch::validate(b).unwrap();
                        assert_eq!(h.base_offset, next);
                        assert_eq!(&b[16..], &batch_n(next)[16..]);
                        next += 1;
                    }
                }
                assert_eq!(next, appended);
            }
        });
    }

    #[test]
    fn a_read_returns_at_least_one_batch_whatever_the_limit() {
        let be = MemoryBackend::new();
        let log = open(&be, LogConfig::default());
        block_on(async {
            for i in 0..3 {
                log.append(
                    CheckedBatch::check(Bytes::from(build::sized(1000, 1, i))).unwrap(),
                    0,
                )
                .await
                .unwrap();
            }
            let r = log.read(1, 10).await.unwrap();
            assert_eq!(r.batches.len(), 1);
            assert_eq!(BatchHeader::parse(&r.batches[0]).unwrap().base_offset, 1);
            assert_eq!(r.log_end_offset, 3);
            assert!(log.read(3, 10).await.unwrap().batches.is_empty());
            assert!(matches!(
                log.read(4, 10).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
        });
    }
}
