//! When each record is meant to be sent: the open-loop schedule behind every latency figure.
//!
//! At a fixed rate, record `k` of a producer is due at `start + (k + phase) * interval`,
//! whatever happened to earlier records. The producer generates a record only when it has
//! room for it, but the record keeps its scheduled ("intended") time, and every latency is
//! measured from that time. So a broker that stalls for 100 ms delays every record scheduled
//! during the stall, and each of them reports the time it really waited: no coordinated
//! omission. In `max` mode there is no schedule: a record is due when the pipeline has room,
//! and its intended time is the moment it is generated (closed loop, for finding
//! saturation throughput).
//!
//! Times are [`Nanos`] since the run epoch of a [`RunClock`]. A [`Schedule`] belongs to one
//! producer; the clock is `Copy` and shared by every executor of a run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the run epoch.
pub type Nanos = u64;

/// Nanoseconds per second.
pub const NANOS_PER_S: u64 = 1_000_000_000;

/// The run's time base: a monotonic epoch plus the wall-clock time it corresponds to (for
/// record timestamps and report dates).
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    epoch: Instant,
    epoch_unix_ms: i64,
}

impl RunClock {
    /// A clock whose epoch is now.
    pub fn start() -> RunClock {
        RunClock {
            epoch: Instant::now(),
            epoch_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }

    /// The instant `ns` after the epoch.
    pub fn instant(&self, ns: Nanos) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Wall-clock milliseconds since 1970 at `ns` after the epoch.
    pub fn unix_ms(&self, ns: Nanos) -> i64 {
        self.epoch_unix_ms + (ns / 1_000_000) as i64
    }
}

/// How records are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Open loop: one record every `interval_ns`, offset by `phase` of an interval.
    Fixed {
        /// Nanoseconds between this producer's records.
        interval_ns: f64,
        /// Fraction of an interval this producer is shifted by, so that several producers
        /// at the same rate interleave evenly instead of sending in bursts.
        phase: f64,
    },
    /// Closed loop: as fast as the pipeline takes records.
    Max,
}

/// One producer's schedule and limits.
#[derive(Debug, Clone)]
pub struct Schedule {
    pace: Pace,
    start_ns: Nanos,
    next: u64,
    records_max: Option<u64>,
    end_ns: Option<Nanos>,
}

impl Schedule {
    /// A fixed-rate schedule of `records_per_s`, producer `index` of `producers` (all at the
    /// same rate, interleaved). Records are due from `start_ns`; the last is the one before
    /// `records_max` or the last scheduled before `end_ns`.
    pub fn fixed(
        start_ns: Nanos,
        records_per_s: f64,
        index: usize,
        producers: usize,
        records_max: Option<u64>,
        end_ns: Option<Nanos>,
    ) -> Schedule {
        Schedule {
            pace: Pace::Fixed {
                interval_ns: NANOS_PER_S as f64 / records_per_s,
                phase: index as f64 / producers.max(1) as f64,
            },
            start_ns,
            next: 0,
            records_max,
            end_ns,
        }
    }

    /// A closed-loop schedule: records are due whenever asked for, until the limits.
    pub fn max(start_ns: Nanos, records_max: Option<u64>, end_ns: Option<Nanos>) -> Schedule {
        Schedule {
            pace: Pace::Max,
            start_ns,
            next: 0,
            records_max,
            end_ns,
        }
    }

    /// The pacing.
    pub fn pace(&self) -> Pace {
        self.pace
    }

    /// Records issued so far.
    pub fn issued(&self) -> u64 {
        self.next
    }

    /// When the next record is (or was) due; `None` once the schedule is exhausted. In
    /// `max` mode a record is due from the start on, at any time.
    pub fn next_time(&self) -> Option<Nanos> {
        if self.records_max.is_some_and(|m| self.next >= m) {
            return None;
        }
        let t = match self.pace {
            Pace::Fixed { interval_ns, phase } => {
                self.start_ns + ((self.next as f64 + phase) * interval_ns) as Nanos
            }
            Pace::Max => self.start_ns,
        };
        match self.end_ns {
            Some(end) if t >= end => None,
            _ => Some(t),
        }
    }

    /// Takes the next record if it is due at `now`, returning its intended send time
    /// (in `max` mode: `now`, unless the run has ended).
    pub fn take_due(&mut self, now: Nanos) -> Option<Nanos> {
        let t = self.next_time()?;
        if t > now {
            return None;
        }
        let intended = match self.pace {
            Pace::Fixed { .. } => t,
            Pace::Max => {
                if self.end_ns.is_some_and(|end| now >= end) {
                    return None;
                }
                now
            }
        };
        self.next += 1;
        Some(intended)
    }

    /// Whether no record will ever be due again at or after `now`.
    pub fn exhausted(&self, now: Nanos) -> bool {
        match self.next_time() {
            None => true,
            Some(_) => matches!(self.pace, Pace::Max) && self.end_ns.is_some_and(|e| now >= e),
        }
    }

    /// Records the schedule still holds: due by its end or count but not yet taken (what is
    /// given up if the run stops now). A `max` schedule holds only what a record count
    /// asks for, and nothing once it has a time limit.
    pub fn remaining(&self) -> u64 {
        let by_count = self.records_max.map(|m| m.saturating_sub(self.next));
        let by_time = match (self.pace, self.end_ns) {
            (Pace::Fixed { interval_ns, phase }, Some(end)) => {
                let span = end.saturating_sub(self.start_ns) as f64 / interval_ns;
                let total = (span - phase).ceil().max(0.0) as u64;
                Some(total.saturating_sub(self.next))
            }
            (Pace::Max, Some(_)) => Some(0),
            _ => None,
        };
        match (by_count, by_time) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 0,
        }
    }

    /// How far behind its schedule the producer is at `now`: the age of the oldest record
    /// due but not yet generated (0 when on time, and always 0 in `max` mode).
    pub fn lag_ns(&self, now: Nanos) -> Nanos {
        match (self.pace, self.next_time()) {
            (Pace::Fixed { .. }, Some(t)) => now.saturating_sub(t),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rate_times_are_exact_and_independent_of_when_asked() {
        // 1,000 records/s from t = 5 s: record k is due at 5 s + k ms.
        let mut s = Schedule::fixed(5 * NANOS_PER_S, 1000.0, 0, 1, None, None);
        assert_eq!(s.take_due(5 * NANOS_PER_S - 1), None);
        // Asked late (at 5.0105 s): the 11 due records come out with their own times.
        let now = 5 * NANOS_PER_S + 10_500_000;
        let mut got = vec![];
        while let Some(t) = s.take_due(now) {
            got.push(t);
        }
        let want: Vec<Nanos> = (0..11).map(|k| 5 * NANOS_PER_S + k * 1_000_000).collect();
        assert_eq!(got, want);
        assert_eq!(s.lag_ns(now), 0);
        assert_eq!(s.next_time(), Some(5 * NANOS_PER_S + 11_000_000));
        // Falling behind shows as lag.
        assert_eq!(s.lag_ns(now + 5_000_000), 4_500_000);
    }

    #[test]
    fn producers_interleave() {
        let a = Schedule::fixed(0, 1000.0, 0, 2, None, None);
        let b = Schedule::fixed(0, 1000.0, 1, 2, None, None);
        assert_eq!(a.next_time(), Some(0));
        assert_eq!(b.next_time(), Some(500_000));
    }

    #[test]
    fn limits_end_the_schedule() {
        let mut by_count = Schedule::fixed(0, 1e6, 0, 1, Some(3), None);
        let n = std::iter::from_fn(|| by_count.take_due(NANOS_PER_S)).count();
        assert_eq!(n, 3);
        assert!(by_count.exhausted(0));
        // 1,000/s for [0, 10 ms): records at 0..9 ms, ten of them.
        let mut by_time = Schedule::fixed(0, 1000.0, 0, 1, None, Some(10_000_000));
        let n = std::iter::from_fn(|| by_time.take_due(NANOS_PER_S)).count();
        assert_eq!(n, 10);
        assert!(by_time.exhausted(0));
    }

    #[test]
    fn remaining_counts_what_is_still_scheduled() {
        // 1,000/s for [0, 10 ms): ten records, phase 0.5 shifts them but keeps ten.
        let mut s = Schedule::fixed(0, 1000.0, 1, 2, None, Some(10_000_000));
        assert_eq!(s.remaining(), 10);
        s.take_due(2_000_000);
        s.take_due(2_000_000);
        assert_eq!(s.remaining(), 8);
        let by_count = Schedule::fixed(0, 1000.0, 0, 1, Some(4), Some(NANOS_PER_S));
        assert_eq!(by_count.remaining(), 4);
        assert_eq!(Schedule::max(0, Some(7), None).remaining(), 7);
        assert_eq!(Schedule::max(0, None, Some(5)).remaining(), 0);
        let mut drained = Schedule::fixed(0, 1000.0, 0, 1, None, Some(3_000_000));
        while drained.take_due(NANOS_PER_S).is_some() {}
        assert_eq!(drained.remaining(), 0);
    }

    #[test]
    fn max_mode_is_due_now_until_the_end() {
        let mut s = Schedule::max(100, None, Some(1000));
        assert_eq!(s.take_due(50), None);
        assert_eq!(s.take_due(150), Some(150));
        assert_eq!(s.take_due(150), Some(150));
        assert!(!s.exhausted(999));
        assert_eq!(s.take_due(1000), None);
        assert!(s.exhausted(1000));
        assert_eq!(s.issued(), 2);
        assert_eq!(s.lag_ns(5000), 0);
    }
}
