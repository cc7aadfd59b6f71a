//! Transactions as the cleaner walks them (Kafka's `CleanedTransactionMetadata`).
//!
//! A pass walks batches in offset order and asks of each data batch whether it belongs
//! to an aborted transaction, and of each end-transaction marker whether its transaction
//! still has a batch in the log:
//!
//! - an aborted transaction starts at its index entry's first offset and ends at its ABORT
//!   marker; a transactional batch of its producer in between is aborted: its keys are not
//!   mapped (so it never hides an older committed record of the same key) and its records
//!   go;
//! - any other transactional batch belongs to a transaction that committed (the cleaner
//!   works below the last stable offset, so every transaction it sees has ended);
//! - a marker whose transaction had a batch walked in this pass is needed: a COMMIT marker
//!   tells a replica rebuilding producer state that the batches before it are done, an
//!   ABORT marker (and its index entry) that they are aborted, so both stay as long as any
//!   batch of theirs does (an aborted batch kept as an empty header included). A marker
//!   whose transaction had no batch walked may go, once it has been in the clean section
//!   for `delete.retention.ms` (as a tombstone): a read_committed consumer that read the
//!   transaction's records before they were cleaned still finds the marker that ends it.
//!
//! Data batches are removed in the pass that walks them and their marker in a later one,
//! as in Kafka.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::batch::BatchHeader;
use crate::txn::{self, AbortedTxn, ControlKind};

/// What a walked batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Walked {
    /// A data batch; `aborted`: it belongs to an aborted transaction.
    Data { aborted: bool },
    /// An end-transaction marker. `needed`: a batch of its transaction was walked in this
    /// pass. `entry`: for an ABORT marker, its aborted-transaction index entry.
    Marker {
        needed: bool,
        entry: Option<AbortedTxn>,
    },
    /// A control batch that is no marker Rill knows (or one without its record): kept.
    OtherControl,
}

/// The transactions of one walk, in offset order from the walk's start.
#[derive(Debug, Default)]
pub(super) struct TxnWalk {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Aborted transactions reached and not yet ended, by producer: the entry, and
    /// whether a batch of it was walked.
    aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers with a batch of a (committed) transaction walked since their last marker.
    committed: HashSet<i64>,
}

impl TxnWalk {
    /// A walk that meets the transactions `aborted` lists (in any order) and starts where
    /// none of them has a marker behind it.
    pub(super) fn new(aborted: &[AbortedTxn]) -> TxnWalk {
        let mut pending: Vec<AbortedTxn> = aborted.to_vec();
        pending.sort_by_key(|e| (e.first_offset, e.last_offset));
        TxnWalk {
            pending: pending.into(),
            ..TxnWalk::default()
        }
    }

    /// Starts every aborted transaction whose first offset is at or below `offset`.
    fn reach(&mut self, offset: i64) {
        while self
            .pending
            .front()
            .is_some_and(|e| e.first_offset <= offset)
        {
            let e = self.pending.pop_front().expect("checked");
            self.aborted.entry(e.producer_id).or_insert((e, false));
        }
    }

    /// The next batch of the walk (`data`: the whole batch, header included).
    pub(super) fn walk(&mut self, h: &BatchHeader, data: &[u8]) -> Walked {
        self.reach(h.last_offset());
        if h.is_control() {
            let Some(marker) = txn::parse_marker(data) else {
                return Walked::OtherControl;
            };
            return match marker.kind {
                ControlKind::Abort => match self.aborted.remove(&h.producer_id) {
                    Some((entry, walked)) => Walked::Marker {
                        needed: walked,
                        entry: Some(entry),
                    },
                    // No index entry reached: the index and the log disagree. The marker
                    // stays; it has no entry to keep.
                    None => Walked::Marker {
                        needed: true,
                        entry: None,
                    },
                },
                ControlKind::Commit => Walked::Marker {
                    needed: self.committed.remove(&h.producer_id),
                    entry: None,
                },
            };
        }
        if !h.is_transactional() {
            return Walked::Data { aborted: false };
        }
        if let Some((_, walked)) = self.aborted.get_mut(&h.producer_id) {
            *walked = true;
            return Walked::Data { aborted: true };
        }
        self.committed.insert(h.producer_id);
        Walked::Data { aborted: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, build, HEADER_BYTES};
    use crate::txn::{build_marker, EndTxnMarker};

    fn data(base: i64, pid: i64, transactional: bool) -> (BatchHeader, Vec<u8>) {
        let recs = [build::Rec {
            key: Some(b"k"),
            value: b"v",
            timestamp_ms: 1,
        }];
        let mut b = build::batch(&recs);
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        if transactional {
            let attrs = i16::from_be_bytes([b[21], b[22]]) | 0x10;
            b[21..23].copy_from_slice(&attrs.to_be_bytes());
        }
        batch::set_crc(&mut b);
        (batch::validate(&b).unwrap(), b)
    }

    fn marker(base: i64, pid: i64, kind: ControlKind) -> (BatchHeader, Vec<u8>) {
        let m = EndTxnMarker {
            kind,
            coordinator_epoch: 3,
        };
        let mut b = build_marker(pid, 0, m, 1);
        b[0..8].copy_from_slice(&base.to_be_bytes());
        batch::set_crc(&mut b);
        (batch::validate(&b).unwrap(), b)
    }

    fn walk(w: &mut TxnWalk, (h, b): (BatchHeader, Vec<u8>)) -> Walked {
        w.walk(&h, &b)
    }

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: first,
        }
    }

    #[test]
    fn batches_of_an_aborted_transaction_are_aborted_and_its_marker_carries_its_entry() {
        // Producer 1 aborts offsets 0..=2 (marker at 3) while producer 2 commits 1 (marker
        // at 4); producer 1's next transaction (5, marker 6) commits.
        let mut w = TxnWalk::new(&[entry(1, 0, 3)]);
        assert_eq!(
            walk(&mut w, data(0, 1, true)),
            Walked::Data { aborted: true }
        );
        assert_eq!(
            walk(&mut w, data(1, 2, true)),
            Walked::Data { aborted: false }
        );
        assert_eq!(
            walk(&mut w, data(2, 1, true)),
            Walked::Data { aborted: true }
        );
        assert_eq!(
            walk(&mut w, marker(3, 1, ControlKind::Abort)),
            Walked::Marker {
                needed: true,
                entry: Some(entry(1, 0, 3))
            }
        );
        assert_eq!(
            walk(&mut w, marker(4, 2, ControlKind::Commit)),
            Walked::Marker {
                needed: true,
                entry: None
            }
        );
        assert_eq!(
            walk(&mut w, data(5, 1, true)),
            Walked::Data { aborted: false }
        );
        assert_eq!(
            walk(&mut w, marker(6, 1, ControlKind::Commit)),
            Walked::Marker {
                needed: true,
                entry: None
            }
        );
        // Plain batches of any producer are never aborted.
        assert_eq!(
            walk(&mut w, data(7, 1, false)),
            Walked::Data { aborted: false }
        );
    }

    #[test]
    fn a_marker_whose_transaction_has_no_batch_left_is_not_needed() {
        // Producer 4's aborted transaction started at 10 and producer 5's committed one
        // somewhere before the walk; every batch of both is gone.
        let mut w = TxnWalk::new(&[entry(4, 10, 12)]);
        assert_eq!(
            walk(&mut w, data(11, 6, false)),
            Walked::Data { aborted: false }
        );
        assert_eq!(
            walk(&mut w, marker(12, 4, ControlKind::Abort)),
            Walked::Marker {
                needed: false,
                entry: Some(entry(4, 10, 12))
            }
        );
        assert_eq!(
            walk(&mut w, marker(13, 5, ControlKind::Commit)),
            Walked::Marker {
                needed: false,
                entry: None
            }
        );
    }

    #[test]
    fn an_abort_marker_without_an_entry_and_unknown_control_batches_stay() {
        let mut w = TxnWalk::new(&[]);
        assert_eq!(
            walk(&mut w, marker(0, 9, ControlKind::Abort)),
            Walked::Marker {
                needed: true,
                entry: None
            }
        );
        // An empty control batch (no record to say what it is).
        let (_, b) = marker(1, 9, ControlKind::Commit);
        let mut empty = b[..HEADER_BYTES].to_vec();
        empty[57..61].copy_from_slice(&0i32.to_be_bytes());
        let len = (empty.len() - 12) as i32;
        empty[8..12].copy_from_slice(&len.to_be_bytes());
        batch::set_crc(&mut empty);
        let h = batch::validate(&empty).unwrap();
        assert_eq!(w.walk(&h, &empty), Walked::OtherControl);
    }
}
