//! The invariants the simulator checks after every event:
//!
//! 1. No acknowledged record is lost: every batch acknowledged with acks=all was still in
//!    its leader's log when answered and is, from then on, in the log of the controller's
//!    leader (once that broker leads at the controller's epoch) at its offset, byte for
//!    byte. Elections are clean, so there is no exception.
//! 2. Replicas never disagree below their high watermarks: the first batch any replica
//!    holds below its high watermark at an offset is the committed one there, and every
//!    replica that later holds a batch there below its own high watermark holds that one,
//!    bytes and boundaries (so any two replicas agree below both their high watermarks). The
//!    one exception is a batch a crash took from a log (kill -9 before the write-behind
//!    reached the file, a power loss before fdatasync): it may be replaced where every
//!    in-sync replica lost it, which only unacknowledged data may be (invariant 1), and stale
//!    copies of it are passed over until they are cut back. Each replacement is counted.
//! 3. A leader's high watermark never exceeds the log end of a live member of the ISR (the
//!    controller's and its own view), and every acting leader (a zombie too) and such
//!    member hold the same batches below the leader's high watermark, within both logs,
//!    but for stale copies of what a crash took (as in 2). A broker that lost power is
//!    exempt until its log reaches again where it ended then: it may have lost what it
//!    reported (records it wrote as leader and never synced, acks 0 and 1; without
//!    `replica_fsync`, what it copied: Kafka's unclean shutdown).
//! 4. A leader's high watermark never goes back while it leads at one epoch.
//! 5. Leader epochs only grow (the controller's, and each broker's view, across restarts),
//!    no broker is past the controller's, and a log's leader-epoch history follows the log:
//!    every batch carries the epoch the history gives its offset, epochs never go down along
//!    the log, each entry starts at a batch of its epoch, and a leader stamps its own epoch.
//! 6. Transactions: a replica's last stable offset, once its producer state is known, lies
//!    between its log start and its high watermark; after healing, every replica's last
//!    stable offset and aborted transactions (its producer table and its segments'
//!    aborted-transaction indexes, kept up as it appended, truncated and restarted) are
//!    exactly what a reading of its log from the start gives.
//!
//! Checks are incremental: the checker keeps a copy of every log, reading only what was
//! appended since the last event (all of it again after a restart, and the rest dropped
//! after a cut back), and checks each log and each pair from where it checked them before;
//! every so often and at the end every log is read whole and must equal its copy.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use futures_lite::future::block_on;
use rill_storage::batch::BatchHeader;
use rill_storage::txn::{parse_marker, AbortedTxn, ControlKind};

use super::{Part, Sim, SimResult};
use crate::partition::batch_len;

/// Events between two complete checks.
const FULL_CHECK_EVERY: u64 = 5_000;

/// One batch as a log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredBatch {
    pub base: i64,
    pub last: i64,
    pub epoch: i32,
    pub bytes: Bytes,
}

/// What a batch is, for messages: the produce and batch its records came from.
pub(super) fn describe(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.find("produce ") {
        Some(i) => text[i..]
            .split(" record")
            .next()
            .unwrap_or_default()
            .to_string(),
        None => "?".to_string(),
    }
}

/// The whole batches of `p` that hold offsets in `from..to`.
pub(super) fn read_batches(p: &Part, from: i64, to: i64) -> Result<Vec<StoredBatch>, String> {
    let mut out = Vec::new();
    let mut at = from.max(p.log().log_start_offset());
    while at < to {
        let read = block_on(p.log().read(at, 32 << 10)).map_err(|e| e.to_string())?;
        if read.batches.is_empty() {
            break;
        }
        for chunk in read.batches {
            let mut chunk = chunk;
            while !chunk.is_empty() {
                let len = batch_len(&chunk).map_err(|e| format!("{e:?}"))?;
                let bytes = chunk.split_to(len);
                let h = BatchHeader::parse(&bytes).map_err(|e| e.to_string())?;
                if h.last_offset() < at {
                    continue;
                }
                if h.base_offset >= to {
                    return Ok(out);
                }
                at = h.last_offset() + 1;
                out.push(StoredBatch {
                    base: h.base_offset,
                    last: h.last_offset(),
                    epoch: h.partition_leader_epoch,
                    bytes,
                });
            }
        }
    }
    Ok(out)
}

/// A batch acknowledged with acks=all.
struct Acked {
    batch: StoredBatch,
    by: usize,
    at_ms: u64,
}

/// The checker's copy of one incarnation's log.
#[derive(Default)]
struct Mirror {
    inc: u32,
    start: i64,
    batches: Vec<StoredBatch>,
}

impl Mirror {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.start, |b| b.last + 1)
    }

    /// Index of the first batch whose last offset is at or past `offset`.
    fn index_at(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.last < offset)
    }

    /// The whole batches that end in `from..upto`.
    fn within(&self, from: i64, upto: i64) -> &[StoredBatch] {
        let (i, j) = (self.index_at(from), self.index_at(upto));
        &self.batches[i..j.max(i)]
    }

    fn at(&self, base: i64) -> Option<&StoredBatch> {
        self.batches
            .get(self.index_at(base))
            .filter(|b| b.base == base)
    }
}

/// What the checks remember between events.
#[derive(Default)]
pub(super) struct Checker {
    mirrors: BTreeMap<usize, Mirror>,
    /// The committed records: every batch some replica held below its high watermark
    /// (consumers of a leader there could read it), by base offset, with that replica.
    committed: BTreeMap<i64, (StoredBatch, usize)>,
    /// Batches a crash took from a log that held them (found when the broker restarts):
    /// the only committed records that may change, and only if not acknowledged.
    lost: HashSet<Bytes>,
    /// Committed batches replaced after a crash lost them.
    pub committed_rewrites: u64,
    acked: Vec<Acked>,
    /// Per broker: its batches below this offset were checked against `committed`.
    verified: BTreeMap<usize, i64>,
    /// Per (leader, ISR member): the incarnations and the offset below which they agree.
    agreed: BTreeMap<(usize, usize), (u32, u32, i64)>,
    max_epoch: BTreeMap<usize, i32>,
    /// Per broker leading now: (incarnation, leader epoch, high watermark) at the last check.
    leader_hw: BTreeMap<usize, (u32, i32, i64)>,
    /// The leader whose log was last checked for the acknowledged batches, and how many.
    leader_seen: Option<(usize, u32, i32)>,
    acked_checked: usize,
    controller_epoch: i32,
    steps: u64,
    /// What the invariants depend on, at the last check: unchanged, nothing to check.
    fingerprint: Vec<i64>,
}

impl Checker {
    pub fn acked_count(&self) -> usize {
        self.acked.len()
    }

    /// Broker `b`'s log was cut back or opened again: what was checked of it is checked
    /// anew.
    fn forget(&mut self, b: usize, end: i64) {
        let v = self.verified.entry(b).or_insert(0);
        *v = (*v).min(end);
        self.agreed.retain(|k, _| k.0 != b && k.1 != b);
        if self.leader_seen.is_some_and(|l| l.0 == b) {
            self.leader_seen = None;
        }
    }
}

impl Sim {
    /// An acks=all produce answered by leader `b`: its batches must still be in that log, and
    /// are never to be lost from here on.
    pub(super) fn acknowledged(
        &mut self,
        b: usize,
        p: &Part,
        epoch: i32,
        batches: Vec<StoredBatch>,
    ) -> SimResult<()> {
        for sb in batches {
            let now = read_batches(p, sb.base, sb.base + 1)?;
            if now.first() != Some(&sb) {
                return self.fail(format!(
                    "broker {b} answered acks=all for the batch at {} ({}, epoch {epoch}) that its log no longer holds (holds {:?})",
                    sb.base,
                    describe(&sb.bytes),
                    now.first().map(|x| (x.base, x.epoch, describe(&x.bytes)))
                ));
            }
            let at_ms = self.now();
            self.checker.acked.push(Acked {
                batch: sb,
                by: b,
                at_ms,
            });
        }
        Ok(())
    }

    /// Brings the copy of broker `b`'s log up to date; true when it was cut back or
    /// replaced (a restart), so its shape is checked again.
    fn sync_mirror(&mut self, b: usize, p: &Part) -> SimResult<bool> {
        let inc = self.brokers[b - 1].inc;
        let (start, end) = (p.log().log_start_offset(), p.log().log_end_offset());
        let m = self.checker.mirrors.entry(b).or_default();
        let mut changed = m.inc != inc || m.start != start || end < m.end();
        if !changed && end > m.end() {
            let more = read_batches(p, m.end(), end)?;
            changed = more.first().is_some_and(|x| x.base != m.end());
            m.batches.extend(more);
        } else if m.inc == inc && m.start == start && end < m.end() {
            let keep = m.index_at(end);
            m.batches.truncate(keep);
        }
        if changed && (m.inc != inc || m.start != start || m.end() != end) {
            let now = Mirror {
                inc,
                start,
                batches: read_batches(p, start, end)?,
            };
            // A restart: what the last incarnation held and this one does not, a crash took
            // (a clean stop loses nothing).
            let lost: Vec<Bytes> = if m.inc != inc {
                m.batches
                    .iter()
                    .filter(|sb| sb.base >= start && now.at(sb.base) != Some(*sb))
                    .map(|sb| sb.bytes.clone())
                    .collect()
            } else {
                Vec::new()
            };
            *m = now;
            self.checker.lost.extend(lost);
        }
        if changed {
            self.checker.forget(b, end);
        }
        Ok(changed)
    }

    /// The state the invariants read: the controller's metadata, and each broker's
    /// incarnation, log end, high watermark and placement.
    fn fingerprint(&self) -> Vec<i64> {
        let mut f = vec![self.ctl.version as i64, self.checker.acked.len() as i64];
        for b in 1..=self.brokers.len() {
            match self.part(b) {
                None => f.push(-1),
                Some(p) => {
                    let r = p.replica.borrow();
                    f.extend([
                        i64::from(self.brokers[b - 1].inc),
                        p.log().log_end_offset(),
                        p.log().log_start_offset(),
                        r.high_watermark(p.log().log_end_offset()),
                        i64::from(r.leader_epoch()),
                        i64::from(r.placement().partition_epoch),
                        i64::from(r.placement().leader),
                    ]);
                }
            }
        }
        f
    }

    /// The invariants after one event (when it changed anything they read).
    pub(super) fn check_step(&mut self) -> SimResult<()> {
        self.checker.steps += 1;
        if self.checker.steps.is_multiple_of(FULL_CHECK_EVERY) {
            return self.check_all();
        }
        let fingerprint = self.fingerprint();
        if fingerprint == self.checker.fingerprint {
            return Ok(());
        }
        self.checker.fingerprint = fingerprint;
        self.check_now()
    }

    /// Every invariant, with every whole log read again: each must equal its copy.
    pub(super) fn check_all(&mut self) -> SimResult<()> {
        self.checker.leader_seen = None;
        self.checker.agreed.clear();
        for b in 1..=self.brokers.len() {
            let Some(p) = self.part(b) else {
                continue;
            };
            self.sync_mirror(b, &p)?;
            let whole = read_batches(&p, p.log().log_start_offset(), p.log().log_end_offset())?;
            let copy = &self.checker.mirrors[&b].batches;
            if let Some(i) =
                (0..whole.len().max(copy.len())).find(|i| whole.get(*i) != copy.get(*i))
            {
                return self.fail(format!(
                    "broker {b}'s log changed below its end without being cut back: {:?} is now {:?}",
                    show_batch(copy.get(i)),
                    show_batch(whole.get(i))
                ));
            }
            self.checker.verified.insert(b, 0);
            self.check_shape(b, &p)?;
        }
        self.checker.fingerprint = self.fingerprint();
        self.check_now()
    }

    /// After healing: every replica holds exactly the leader's batches, from the latest log
    /// start on (a replica that kept another history under the same epochs would pass every
    /// offset check and still differ).
    pub(super) fn check_identical(&self) -> SimResult<()> {
        let leader = self.ctl.placement.leader as usize;
        let from = (1..=self.brokers.len())
            .filter_map(|b| self.part(b))
            .map(|p| p.log().log_start_offset())
            .max()
            .unwrap_or(0);
        let theirs = &self.checker.mirrors[&leader];
        for b in 1..=self.brokers.len() {
            let ours = &self.checker.mirrors[&b];
            let (a, c) = (ours.within(from, i64::MAX), theirs.within(from, i64::MAX));
            if let Some(i) = (0..a.len().max(c.len())).find(|i| a.get(*i) != c.get(*i)) {
                return self.fail(format!(
                    "in sync after healing, but broker {b} holds {:?} where leader {leader} holds {:?}",
                    show_batch(a.get(i)),
                    show_batch(c.get(i))
                ));
            }
        }
        for b in 1..=self.brokers.len() {
            self.check_transactions(b)?;
        }
        Ok(())
    }

    /// Invariant 6 after healing: broker `b`'s transaction state against its log.
    fn check_transactions(&self, b: usize) -> SimResult<()> {
        let Some(p) = self.part(b) else {
            return Ok(());
        };
        block_on(p.ensure_producers());
        let (start, end, hw) = (
            p.log().log_start_offset(),
            p.log().log_end_offset(),
            p.high_watermark(),
        );
        let (want_lso, want_aborted) = txn_oracle(self.checker.mirrors[&b].within(start, end), hw);
        let lso = p.last_stable_offset();
        let aborted = block_on(p.aborted_transactions(start, end))
            .map_err(|e| format!("broker {b} cannot collect its aborted transactions: {e:?}"))?;
        if lso != Some(want_lso.max(start)) || aborted != want_aborted {
            return self.fail(format!(
                "after healing, broker {b} reports last stable offset {lso:?} and aborted {aborted:?}; its log [{start}, {end}) at high watermark {hw} says {want_lso} and {want_aborted:?}"
            ));
        }
        Ok(())
    }

    /// The invariants over the logs' copies, each from where it was checked last.
    fn check_now(&mut self) -> SimResult<()> {
        let ce = self.ctl.placement.leader_epoch;
        if ce < self.checker.controller_epoch {
            return self.fail(format!(
                "the controller's leader epoch went back from {} to {ce}",
                self.checker.controller_epoch
            ));
        }
        self.checker.controller_epoch = ce;
        for b in 1..=self.brokers.len() {
            let end = self.part(b).map(|p| p.log().log_end_offset());
            let br = &mut self.brokers[b - 1];
            if br.lossy.is_some_and(|was| end.is_some_and(|e| e >= was)) {
                br.lossy = None;
            }
            let inc = br.inc;
            let Some(p) = self.part(b) else {
                self.checker.leader_hw.remove(&b);
                continue;
            };
            let epoch = p.replica.borrow().leader_epoch();
            let seen = *self.checker.max_epoch.entry(b).or_insert(epoch);
            if epoch < seen {
                return self.fail(format!(
                    "broker {b} went back from leader epoch {seen} to {epoch}"
                ));
            }
            self.checker.max_epoch.insert(b, epoch);
            if epoch > ce {
                return self.fail(format!(
                    "broker {b} is at leader epoch {epoch}, past the controller's {ce}"
                ));
            }
            let hw = p.high_watermark();
            if let Some(lso) = p.last_stable_offset() {
                let start = p.log().log_start_offset();
                if lso > hw.max(start) || lso < start {
                    return self.fail(format!(
                        "broker {b}'s last stable offset {lso} is outside [log start {start}, high watermark {hw}]"
                    ));
                }
            }
            if p.is_leader() {
                if let Some(&(i, e, was)) = self.checker.leader_hw.get(&b) {
                    if (i, e) == (inc, epoch) && hw < was {
                        return self.fail(format!(
                            "leader {b} (epoch {epoch}) moved its high watermark back from {was} to {hw}"
                        ));
                    }
                }
                self.checker.leader_hw.insert(b, (inc, epoch, hw));
            } else {
                self.checker.leader_hw.remove(&b);
            }
            if self.sync_mirror(b, &p)? {
                self.check_shape(b, &p)?;
            }
            self.note_committed(b, &p)?;
        }
        self.check_hw_within_isr()?;
        self.check_isr_agrees()?;
        self.check_acked_in_leader()
    }

    /// Invariant 2: checks broker `b`'s batches below its high watermark against the
    /// committed records, and records those not seen committed before. A batch that differs
    /// from the committed one there is a failure, unless a crash lost one of the two: a
    /// stale copy of a lost batch is passed over, a lost committed batch is replaced (and
    /// counted).
    fn note_committed(&mut self, b: usize, p: &Part) -> SimResult<()> {
        let hw = p.high_watermark();
        let from = self.checker.verified.get(&b).copied().unwrap_or(0);
        if from >= hw {
            return Ok(());
        }
        let new: Vec<StoredBatch> = self.checker.mirrors[&b].within(from, hw).to_vec();
        for sb in new {
            self.checker.verified.insert(b, sb.last + 1);
            let before = self.checker.committed.range(..=sb.base).next_back();
            let after = self.checker.committed.range(sb.base + 1..sb.last + 1);
            let clashing: Vec<(StoredBatch, usize)> = before
                .filter(|(_, (c, _))| c.last >= sb.base)
                .into_iter()
                .chain(after)
                .map(|(_, c)| c.clone())
                .filter(|(c, _)| *c != sb)
                .collect();
            let held = before.is_some_and(|(_, (c, _))| *c == sb);
            if clashing.is_empty() {
                if !held {
                    self.checker.committed.insert(sb.base, (sb, b));
                }
                continue;
            }
            if self.checker.lost.contains(&sb.bytes) {
                continue; // a copy of a batch a crash took elsewhere, not cut back yet
            }
            if let Some((c, who)) = clashing
                .iter()
                .find(|(c, _)| !self.checker.lost.contains(&c.bytes))
            {
                return self.fail(format!(
                    "replicas disagree below their high watermarks: broker {b} (high watermark {hw}) holds [{}, {}] epoch {} ({}) where broker {who} held [{}, {}] epoch {} ({}) below its own, and no crash took that",
                    sb.base, sb.last, sb.epoch, describe(&sb.bytes), c.base, c.last, c.epoch, describe(&c.bytes)
                ));
            }
            for (c, who) in clashing {
                self.checker.committed.remove(&c.base);
                self.checker.committed_rewrites += 1;
                self.log(format!(
                    "note: broker {b} (high watermark {hw}) holds [{}, {}] ({}) where broker {who} held [{}, {}] ({}) below its high watermark: a crash took it (not acknowledged, or invariant 3 says)",
                    sb.base, sb.last, describe(&sb.bytes), c.base, c.last, describe(&c.bytes)
                ));
            }
            self.checker.committed.insert(sb.base, (sb, b));
        }
        Ok(())
    }

    /// Invariant 3: every acting leader and every live, non-exempt ISR member hold the same
    /// batches below the leader's high watermark, within both logs.
    fn check_isr_agrees(&mut self) -> SimResult<()> {
        for l in 1..=self.brokers.len() {
            let Some(lp) = self.part(l) else {
                continue;
            };
            if !lp.is_leader() {
                continue;
            }
            let hw = lp.high_watermark();
            let mut members: Vec<i32> = self.ctl.placement.isr.clone();
            members.extend(lp.replica.borrow().placement().isr.iter().copied());
            members.sort_unstable();
            members.dedup();
            for m in members {
                let m = m as usize;
                if m == l || self.brokers[m - 1].lossy.is_some() || self.part(m).is_none() {
                    continue;
                }
                let (ours, theirs) = (&self.checker.mirrors[&l], &self.checker.mirrors[&m]);
                let upto = hw.min(theirs.end());
                let incs = (ours.inc, theirs.inc);
                let from = match self.checker.agreed.get(&(l, m)) {
                    Some(&(il, im, at)) if (il, im) == incs => at,
                    _ => 0,
                };
                if from >= upto {
                    continue;
                }
                let (a, b) = (ours.within(from, upto), theirs.within(from, upto));
                if let Some(i) = (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i)) {
                    let lost = |x: Option<&StoredBatch>| {
                        x.is_some_and(|x| self.checker.lost.contains(&x.bytes))
                    };
                    if lost(a.get(i)) || lost(b.get(i)) {
                        // A stale copy of what a crash took (invariant 2's exception): a
                        // zombie leader, or a member not cut back yet.
                        continue;
                    }
                    let (ours, theirs) = (show_batch(a.get(i)), show_batch(b.get(i)));
                    return self.fail(format!(
                        "replicas disagree below the high watermark: leader {l} (high watermark {hw}) holds {ours:?} where ISR member {m} holds {theirs:?}"
                    ));
                }
                let at = a.last().map_or(from, |x| x.last + 1);
                self.checker.agreed.insert((l, m), (incs.0, incs.1, at));
            }
        }
        Ok(())
    }

    /// Invariant 5 for one log: its batches and its leader-epoch history agree.
    fn check_shape(&self, b: usize, p: &Part) -> SimResult<()> {
        let (start, end) = (p.log().log_start_offset(), p.log().log_end_offset());
        let history = p.log().leader_epochs();
        let batches = &self.checker.mirrors[&b].batches;
        let bad = |what: String| {
            self.fail::<()>(format!(
                "broker {b}'s leader-epoch history {:?} does not follow its log [{start}, {end}): {what}",
                history.entries()
            ))
        };
        let mut next = start;
        let mut last_epoch = i32::MIN;
        for sb in batches {
            if sb.base > next || (sb.base < next && sb.base != batches[0].base) {
                return bad(format!(
                    "batch [{}, {}] after offset {next}",
                    sb.base, sb.last
                ));
            }
            next = sb.last + 1;
            if sb.epoch < last_epoch {
                return bad(format!(
                    "epoch {} after epoch {last_epoch} at {}",
                    sb.epoch, sb.base
                ));
            }
            last_epoch = sb.epoch;
            if history.epoch_at(sb.base) != Some(sb.epoch) {
                return bad(format!(
                    "the batch at {} has epoch {}, the history says {:?}",
                    sb.base,
                    sb.epoch,
                    history.epoch_at(sb.base)
                ));
            }
        }
        if next != end {
            return bad(format!("the batches end at {next}"));
        }
        for &(epoch, first) in history.entries() {
            if epoch > self.ctl.placement.leader_epoch {
                return bad(format!("epoch {epoch} was never issued"));
            }
            let starts = first == start
                || batches
                    .iter()
                    .any(|sb| sb.base == first && sb.epoch == epoch);
            if !starts || first >= end {
                return bad(format!("no batch of epoch {epoch} starts at {first}"));
            }
        }
        Ok(())
    }

    /// Invariant 3: every acting leader's high watermark is within the log of every live,
    /// non-exempt member of the ISR, the controller's and its own.
    fn check_hw_within_isr(&self) -> SimResult<()> {
        for l in 1..=self.brokers.len() {
            let Some(p) = self.part(l) else {
                continue;
            };
            if !p.is_leader() {
                continue;
            }
            let hw = p.high_watermark();
            let (epoch, own) = {
                let r = p.replica.borrow();
                (r.leader_epoch(), r.placement().isr.clone())
            };
            for (whose, isr) in [
                ("the controller's", &self.ctl.placement.isr),
                ("its own", &own),
            ] {
                for &m in isr {
                    let m = m as usize;
                    if m == l || self.brokers[m - 1].lossy.is_some() {
                        continue;
                    }
                    let Some(mp) = self.part(m) else {
                        continue;
                    };
                    let end = mp.log().log_end_offset();
                    if end < hw {
                        return self.fail(format!(
                            "leader {l} (epoch {epoch}) has high watermark {hw}, past the log end {end} of broker {m}, in {whose} ISR {isr:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Invariant 1: the controller's leader, once it leads at the controller's epoch, holds
    /// every acknowledged batch.
    fn check_acked_in_leader(&mut self) -> SimResult<()> {
        let c = self.ctl.placement.leader;
        if c < 1 {
            return Ok(());
        }
        let c = c as usize;
        let Some(p) = self.part(c) else {
            return Ok(());
        };
        let epoch = p.replica.borrow().leader_epoch();
        if !p.is_leader() || epoch != self.ctl.placement.leader_epoch {
            return Ok(());
        }
        let key = (c, self.brokers[c - 1].inc, epoch);
        if self.checker.leader_seen != Some(key) {
            self.checker.leader_seen = Some(key);
            self.checker.acked_checked = 0;
        }
        let mirror = &self.checker.mirrors[&c];
        let end = mirror.end();
        for a in &self.checker.acked[self.checker.acked_checked..] {
            let found = mirror.at(a.batch.base);
            if found != Some(&a.batch) {
                return self.fail(format!(
                    "acknowledged batch lost: [{}, {}] ({}, epoch {}, acknowledged by {} at {} ms) is not in the log of leader {c} (epoch {epoch}, log end {end}), which holds {:?} there",
                    a.batch.base,
                    a.batch.last,
                    describe(&a.batch.bytes),
                    a.batch.epoch,
                    a.by,
                    a.at_ms,
                    found.map(|x| (x.base, x.last, x.epoch, describe(&x.bytes)))
                ));
            }
        }
        self.checker.acked_checked = self.checker.acked.len();
        Ok(())
    }
}

/// A stored batch as a violation message shows it (`None` where a replica lacks it).
/// What a log's batches say of its transactions, read from the start as Kafka's rules
/// give it: the last stable offset at high watermark `hw` (every marker below it) and the
/// aborted transactions, each with the last stable offset at its marker.
fn txn_oracle(batches: &[StoredBatch], hw: i64) -> (i64, Vec<AbortedTxn>) {
    // Open transactions: producer id -> first offset.
    let mut open: BTreeMap<i64, i64> = BTreeMap::new();
    let mut aborted = Vec::new();
    let mut unreplicated_first: Option<i64> = None;
    for sb in batches {
        let Ok(h) = BatchHeader::parse(&sb.bytes) else {
            continue;
        };
        if h.is_control() {
            let Some(m) = parse_marker(&sb.bytes) else {
                continue;
            };
            let Some(first) = open.remove(&h.producer_id) else {
                continue;
            };
            if sb.base >= hw {
                unreplicated_first = Some(unreplicated_first.map_or(first, |u| u.min(first)));
            }
            if m.kind == ControlKind::Abort {
                let lso = open.values().min().copied().unwrap_or(sb.base + 1);
                aborted.push(AbortedTxn {
                    producer_id: h.producer_id,
                    first_offset: first,
                    last_offset: sb.base,
                    last_stable_offset: lso,
                });
            }
        } else if h.is_transactional() {
            open.entry(h.producer_id).or_insert(sb.base);
        }
    }
    let first_unstable = open.values().copied().chain(unreplicated_first).min();
    (first_unstable.map_or(hw, |f| f.min(hw)), aborted)
}

fn show_batch(x: Option<&StoredBatch>) -> Option<String> {
    x.map(|x| {
        format!(
            "[{}, {}] epoch {} ({})",
            x.base,
            x.last,
            x.epoch,
            describe(&x.bytes)
        )
    })
}
