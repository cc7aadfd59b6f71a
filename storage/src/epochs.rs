//! A partition's leader-epoch history (Kafka's `LeaderEpochFileCache`): for every leader
//! epoch that wrote to the log, the offset of its first batch.
//!
//! Replication stands on it: a follower asks the leader where the epoch of its last batch
//! ends (OffsetForLeaderEpoch, or Fetch's diverging epoch) and truncates to exactly that
//! point, so two replicas never keep different records at the same offset. The history
//! follows the log: an append of a newer epoch adds an entry, a truncation removes entries
//! at or past the cut, and a log start that moves up (retention, DeleteRecords) moves the
//! first entry with it. It is stored in the partition checkpoint, written before the first
//! batch of a new epoch is appended.

/// Offset Kafka answers for an epoch it knows nothing about.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;
/// Epoch Kafka answers for an epoch it knows nothing about.
pub const UNDEFINED_EPOCH: i32 = -1;

/// (epoch, first offset) entries, epochs and offsets strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochs {
    /// The history as stored; entries that break the order (a damaged or hand-edited
    /// checkpoint) are dropped from the first one that does.
    pub fn from_entries(entries: &[(i32, i64)]) -> LeaderEpochs {
        let mut out = LeaderEpochs::default();
        for &(epoch, start) in entries {
            match out.entries.last() {
                Some(&(e, s)) if epoch <= e || start < s => break,
                _ => out.entries.push((epoch, start)),
            }
        }
        out
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest epoch and its first offset.
    pub fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
    }

    /// Whether a batch of `epoch` appended at `offset` starts a new epoch: what
    /// [`LeaderEpochs::assign`] would change (an older or equal epoch changes nothing).
    pub fn starts_epoch(&self, epoch: i32) -> bool {
        epoch >= 0 && self.latest().is_none_or(|(e, _)| epoch > e)
    }

    /// A batch of `epoch` is appended at `offset`. True when the history changed. As in
    /// Kafka, entries that start at or after `offset` go first (an epoch that wrote nothing
    /// before the next one started, or a history ahead of a log that lost its tail).
    pub fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        if !self.starts_epoch(epoch) {
            return false;
        }
        self.entries.retain(|&(_, s)| s < offset);
        self.entries.push((epoch, offset));
        true
    }

    /// The log was cut back to end at `end`: epochs that start there or later go.
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end);
        self.entries.len() != before
    }

    /// The log now starts at `start`: epochs wholly below it go, and the one it falls in
    /// starts there.
    pub fn truncate_from_start(&mut self, start: i64) -> bool {
        let Some(keep) = self.entries.iter().rposition(|&(_, s)| s <= start) else {
            return false;
        };
        let changed = keep > 0 || self.entries[0].1 != start;
        self.entries.drain(..keep);
        self.entries[0].1 = start;
        changed
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` and the offset where it
    /// ends (the first offset of the next epoch, or `log_end` for the newest). An epoch
    /// older than every entry ends where the first one starts; a newer one than the newest
    /// is unknown, as in Kafka.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        let Some(&(latest, _)) = self.entries.last() else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        if epoch < 0 || epoch > latest {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if epoch == latest {
            return (latest, log_end);
        }
        let next = self
            .entries
            .iter()
            .position(|&(e, _)| e > epoch)
            .expect("an entry newer than `epoch` exists: epoch < latest");
        match next {
            0 => (epoch, self.entries[0].1),
            i => (self.entries[i - 1].0, self.entries[i].1),
        }
    }

    /// The epoch of the batch at `offset` (None below the first entry).
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|&&(_, s)| s <= offset)
            .map(|&(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(i32, i64)]) -> LeaderEpochs {
        let mut h = LeaderEpochs::default();
        for &(e, s) in entries {
            assert!(h.assign(e, s));
        }
        h
    }

    #[test]
    fn new_epochs_start_where_their_first_batch_lands() {
        let mut h = LeaderEpochs::default();
        assert!(h.assign(0, 0));
        assert!(!h.assign(0, 10), "same epoch: no new entry");
        assert!(h.assign(2, 10));
        assert!(!h.assign(1, 12), "an older epoch changes nothing");
        assert_eq!(h.entries(), &[(0, 0), (2, 10)]);
        assert_eq!(h.epoch_at(9), Some(0));
        assert_eq!(h.epoch_at(10), Some(2));
        assert!(
            h.assign(3, 10),
            "epoch 2 wrote nothing before epoch 3 started"
        );
        assert_eq!(h.entries(), &[(0, 0), (3, 10)]);
    }

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let h = history(&[(1, 5), (3, 20), (4, 30)]);
        assert_eq!(
            h.end_offset_for(4, 42),
            (4, 42),
            "the newest ends at the log end"
        );
        assert_eq!(h.end_offset_for(3, 42), (3, 30));
        assert_eq!(
            h.end_offset_for(2, 42),
            (1, 20),
            "the largest epoch at or below it"
        );
        assert_eq!(
            h.end_offset_for(0, 42),
            (0, 5),
            "older than all: where the first starts"
        );
        assert_eq!(
            h.end_offset_for(5, 42),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        assert_eq!(
            LeaderEpochs::default().end_offset_for(1, 0),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
    }

    #[test]
    fn truncation_keeps_the_history_in_step_with_the_log() {
        let mut h = history(&[(1, 0), (3, 20), (4, 30)]);
        assert!(h.truncate_from_end(30));
        assert_eq!(h.entries(), &[(1, 0), (3, 20)]);
        assert!(!h.truncate_from_end(25));
        assert!(h.truncate_from_start(22));
        assert_eq!(h.entries(), &[(3, 22)]);
        assert!(!h.truncate_from_start(22));
        assert!(h.truncate_from_end(22));
        assert!(h.is_empty());
        assert_eq!(
            LeaderEpochs::from_entries(&[(1, 0), (3, 20), (2, 25), (5, 30)]).entries(),
            &[(1, 0), (3, 20)],
            "a stored history is cut where it stops increasing"
        );
    }
}
