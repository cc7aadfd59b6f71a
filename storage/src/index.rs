//! Sparse offset and time indexes of one segment.
//!
//! Held in memory as sorted vectors (8 and 12 bytes an entry) and written to
//! `.index` / `.timeindex` files when a segment is closed, in the same
//! big-endian entry layout Kafka uses. A missing or damaged index file is
//! rebuilt from the segment. Owned by the shard that owns the partition.

/// Offset index entry: offset relative to the segment base, byte position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Time index entry: a batch max timestamp and the relative offset of the
/// first batch at or after which that timestamp was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

#[derive(Debug, Default, Clone)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// Bytes appended since the last offset index entry.
    bytes_since_entry: u64,
}

impl SegmentIndex {
    /// Records a batch at `position` (relative offset `rel`, max timestamp
    /// `max_ts`), adding entries once `interval_bytes` have passed since the
    /// last one. The first batch of a segment always gets an entry.
    pub fn on_batch(
        &mut self,
        rel: u32,
        position: u32,
        bytes: u32,
        max_ts: i64,
        interval_bytes: u64,
    ) {
        if self.offsets.is_empty() || self.bytes_since_entry >= interval_bytes {
            self.offsets.push(OffsetEntry {
                relative_offset: rel,
                position,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += bytes as u64;
        if self.times.last().is_none_or(|t| max_ts > t.timestamp_ms) {
            self.times.push(TimeEntry {
                timestamp_ms: max_ts,
                relative_offset: rel,
            });
        }
    }

    /// Byte position of the batch that starts at or before relative offset
    /// `rel` with the largest indexed offset (0 if none).
    pub fn position_for(&self, rel: u32) -> u32 {
        let i = self.offsets.partition_point(|e| e.relative_offset <= rel);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].position
        }
    }

    /// Relative offset from which to scan for the first batch whose max
    /// timestamp is at least `ts` (0 if unknown).
    pub fn relative_offset_for_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|e| e.timestamp_ms < ts);
        if i == 0 {
            0
        } else {
            // the previous entry's batch may still hold a later record
            self.times[i - 1].relative_offset
        }
    }

    /// Drops entries at or past relative offset `rel` / byte `position`.
    pub fn truncate(&mut self, rel: u32, position: u32) {
        self.offsets
            .retain(|e| e.relative_offset < rel && e.position < position);
        self.times.retain(|e| e.relative_offset < rel);
        self.bytes_since_entry = u64::MAX / 2; // next batch gets an entry
    }

    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * 8);
        for e in &self.offsets {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * 12);
        for e in &self.times {
            out.extend_from_slice(&e.timestamp_ms.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        out
    }

    /// Decodes both files and checks them against the segment: sorted,
    /// positions inside `segment_bytes`, offsets below `next_relative`.
    /// `None` means damaged; the caller rebuilds.
    pub fn decode(
        offsets: &[u8],
        times: &[u8],
        segment_bytes: u64,
        next_relative: u64,
    ) -> Option<SegmentIndex> {
        if !offsets.len().is_multiple_of(8) || !times.len().is_multiple_of(12) {
            return None;
        }
        let mut idx = SegmentIndex::default();
        for c in offsets.chunks_exact(8) {
            let e = OffsetEntry {
                relative_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            };
            if let Some(p) = idx.offsets.last() {
                if e.relative_offset <= p.relative_offset || e.position <= p.position {
                    return None;
                }
            }
            if e.position as u64 >= segment_bytes.max(1)
                || e.relative_offset as u64 >= next_relative.max(1)
            {
                return None;
            }
            idx.offsets.push(e);
        }
        for c in times.chunks_exact(12) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&c[0..8]);
            let e = TimeEntry {
                timestamp_ms: i64::from_be_bytes(ts),
                relative_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
            };
            if let Some(p) = idx.times.last() {
                if e.timestamp_ms <= p.timestamp_ms || e.relative_offset < p.relative_offset {
                    return None;
                }
            }
            if e.relative_offset as u64 >= next_relative.max(1) {
                return None;
            }
            idx.times.push(e);
        }
        if segment_bytes > 0 && idx.offsets.first().is_none_or(|e| e.position != 0) {
            return None;
        }
        idx.bytes_since_entry = u64::MAX / 2;
        Some(idx)
    }

    /// Heap bytes held by this index.
    pub fn heap_bytes(&self) -> usize {
        self.offsets.capacity() * 8 + self.times.capacity() * 16
    }

    pub fn shrink(&mut self) {
        self.offsets.shrink_to_fit();
        self.times.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_entries_and_lookup() {
        let mut idx = SegmentIndex::default();
        // 10 batches of 1000 bytes, 5 records each, interval 4096
        for i in 0..10u32 {
            idx.on_batch(i * 5, i * 1000, 1000, 100 + i as i64, 4096);
        }
        assert_eq!(idx.offsets.len(), 2); // batches 0 and 5
        assert_eq!(idx.position_for(0), 0);
        assert_eq!(idx.position_for(24), 0);
        assert_eq!(idx.position_for(26), 5000);
        assert_eq!(idx.relative_offset_for_time(105), 20);
        assert_eq!(idx.relative_offset_for_time(50), 0);
    }

    #[test]
    fn encode_decode_roundtrip_and_damage_detected() {
        let mut idx = SegmentIndex::default();
        for i in 0..100u32 {
            idx.on_batch(i * 2, i * 500, 500, i as i64, 1000);
        }
        let o = idx.encode_offsets();
        let t = idx.encode_times();
        let back = SegmentIndex::decode(&o, &t, 50_000, 200).unwrap();
        assert_eq!(back.offsets, idx.offsets);
        assert_eq!(back.times, idx.times);
        assert!(SegmentIndex::decode(&o[..o.len() - 3], &t, 50_000, 200).is_none());
        assert!(
            SegmentIndex::decode(&o, &t, 10_000, 200).is_none(),
            "position past the segment"
        );
        let mut swapped = o.clone();
        swapped[8..16].copy_from_slice(&o[0..8]);
        assert!(SegmentIndex::decode(&swapped, &t, 50_000, 200).is_none());
    }

    #[test]
    fn truncate_drops_tail_entries() {
        let mut idx = SegmentIndex::default();
        for i in 0..10u32 {
            idx.on_batch(i, i * 4096, 4096, i as i64, 4096);
        }
        idx.truncate(5, 5 * 4096);
        assert_eq!(idx.offsets.last().unwrap().relative_offset, 4);
        assert_eq!(idx.times.last().unwrap().relative_offset, 4);
    }
}
