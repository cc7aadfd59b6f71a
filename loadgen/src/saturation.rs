//! Saturation search (`--find-saturation`): the highest rate the broker *sustains* under an
//! open-loop load, found by a series of fixed-rate steps. Pure logic, no I/O: [`Search`]
//! says which rate to try next and judges each step's result; `run::run_saturation` runs
//! the steps against a broker, and tests run them against simulated brokers.
//!
//! Why not just `--rate max`: a closed loop sends the next request when an answer comes
//! back, so it always "keeps up" — its throughput is what the pipeline (max in flight x
//! batch) squeezes out, and its latencies are service times at that depth, not what a
//! client arriving at a steady rate would see. The rate that matters for capacity planning
//! is the highest one at which records scheduled at a steady pace are acknowledged at that
//! pace with a bounded tail. So:
//!
//! 1. **Probe** (when `--rate max`): one closed-loop run measures the max throughput `M`.
//!    It is only a reference for where to start: an open loop can sustain less than `M`
//!    (bursts queue) or more (a closed loop is limited by its pipeline depth).
//! 2. **Ramp**: steps at `start x M`, then each passing rate times `growth`, until a step
//!    fails. (A fixed `--rate R` skips the probe and starts the ramp at `R`.)
//! 3. **Bisect** between the highest passing and the lowest failing rate (geometric
//!    midpoint) until they are within `resolution` of each other. If the very first step
//!    fails, the rate is halved until one passes.
//! 4. The answer is the highest passing step's rate; its full report (histograms, time
//!    series) becomes the run's report, and every step is listed.
//!
//! A step is a complete open-loop run: `warmup` (not measured) then `duration` measured
//! seconds, then a drain, so the backlog of an overloaded step never spills into the next
//! one. It **passes** only if
//! - the achieved rate (acknowledged records per second inside the measured window) is at
//!   least `(1 - tolerance) x target`: a broker that falls behind acknowledges less than
//!   was scheduled;
//! - the produce ack p99 (from each record's *intended* send time, so queueing shows) is at
//!   most `p99_ms_max`, when set (with acks=0 there is no ack latency to bound);
//! - no record failed and no error was counted: a rate reached by dropping records is not
//!   sustained.
//!
//! Bounds: at most `steps_max` steps; rates below [`RATE_MIN`] records/s end the search.

use serde::{Deserialize, Serialize};

/// Lowest rate a search tries, records/s: below it the broker is not saturating, it is
/// failing, and the search stops.
pub const RATE_MIN: f64 = 1.0;

/// How the search moves and judges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchSettings {
    /// First step's target as a fraction of the reference (probe) rate.
    pub start: f64,
    /// Ramp factor between passing steps (> 1).
    pub growth: f64,
    /// A step passes if it achieves at least `(1 - tolerance)` of its target.
    pub tolerance: f64,
    /// A step passes only if its ack p99 is at most this (ms); `None`: no latency bound.
    pub p99_ms_max: Option<f64>,
    /// The search ends when the highest pass and the lowest fail are within this fraction.
    pub resolution: f64,
    /// Most steps (the probe not included).
    pub steps_max: usize,
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepResult {
    /// Records/s the step scheduled.
    pub target_records_per_s: f64,
    /// Records/s acknowledged inside the measured window.
    pub achieved_records_per_s: f64,
    /// Key + value MB/s acknowledged inside the measured window.
    pub achieved_mb_per_s: f64,
    /// Produce ack p99 of the measured records (ms); `None` when not measurable.
    pub ack_p99_ms: Option<f64>,
    /// Errors counted and records failed during the step.
    pub errors: u64,
}

/// A step's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Rate reached, tail within the bound, no errors.
    Sustained,
    /// Acknowledged less than `(1 - tolerance)` of the target.
    ShortOfTarget,
    /// Ack p99 above the bound.
    LatencyAboveBound,
    /// Records failed or errors were counted.
    Errors,
}

impl Verdict {
    /// Whether the step passed.
    pub fn passed(self) -> bool {
        self == Verdict::Sustained
    }
}

/// One step as reported in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Step number, from 1.
    pub step: usize,
    /// Target records/s.
    pub target_records_per_s: f64,
    /// Achieved records/s.
    pub achieved_records_per_s: f64,
    /// Achieved MB/s.
    pub achieved_mb_per_s: f64,
    /// Ack p99, ms (`null`: not measured).
    pub ack_p99_ms: Option<f64>,
    /// Errors and failed records.
    pub errors: u64,
    /// The verdict.
    pub verdict: Verdict,
}

/// The search state.
#[derive(Debug, Clone)]
pub struct Search {
    settings: SearchSettings,
    next: Option<f64>,
    /// Highest passing target so far.
    lo: Option<f64>,
    /// Lowest failing target so far.
    hi: Option<f64>,
    steps: Vec<Step>,
    ended: Option<&'static str>,
}

impl Search {
    /// A search whose first step runs at `start x reference` records/s.
    pub fn new(settings: SearchSettings, reference_records_per_s: f64) -> Search {
        Search::starting_at(settings, reference_records_per_s * settings.start)
    }

    /// A search whose first step runs at `first` records/s.
    pub fn starting_at(settings: SearchSettings, first: f64) -> Search {
        let mut s = Search {
            settings,
            next: None,
            lo: None,
            hi: None,
            steps: Vec::new(),
            ended: None,
        };
        if first.is_finite() && first >= RATE_MIN {
            s.next = Some(first);
        } else {
            s.ended = Some("the starting rate is below 1 record/s");
        }
        s
    }

    /// The target of the next step, or `None` when the search is over.
    pub fn next_target(&self) -> Option<f64> {
        self.next
    }

    /// Why the search ended (`None` while it runs).
    pub fn ended(&self) -> Option<&'static str> {
        self.ended
    }

    /// Judges a step result (without recording it).
    pub fn judge(&self, r: &StepResult) -> Verdict {
        if r.errors > 0 {
            Verdict::Errors
        } else if r.achieved_records_per_s
            < (1.0 - self.settings.tolerance) * r.target_records_per_s
        {
            Verdict::ShortOfTarget
        } else if matches!((self.settings.p99_ms_max, r.ack_p99_ms), (Some(max), Some(p99)) if p99 > max)
        {
            Verdict::LatencyAboveBound
        } else {
            Verdict::Sustained
        }
    }

    /// Records the result of the step at [`Search::next_target`] and picks the next one.
    pub fn record(&mut self, r: StepResult) -> Verdict {
        let verdict = self.judge(&r);
        let target = r.target_records_per_s;
        self.steps.push(Step {
            step: self.steps.len() + 1,
            target_records_per_s: target,
            achieved_records_per_s: r.achieved_records_per_s,
            achieved_mb_per_s: r.achieved_mb_per_s,
            ack_p99_ms: r.ack_p99_ms,
            errors: r.errors,
            verdict,
        });
        if verdict.passed() {
            self.lo = Some(self.lo.map_or(target, |lo| lo.max(target)));
        } else {
            self.hi = Some(self.hi.map_or(target, |hi| hi.min(target)));
        }
        let s = &self.settings;
        let next = match (self.lo, self.hi) {
            (Some(lo), None) => lo * s.growth,
            (None, Some(hi)) => hi / 2.0,
            (Some(lo), Some(hi)) if hi <= lo => {
                // A lower rate failed after a higher one passed (noise): the pass stands as
                // the answer, and the search cannot narrow further without contradiction.
                self.ended = Some("a rate below a sustained one failed (noisy steps)");
                self.next = None;
                return verdict;
            }
            (Some(lo), Some(hi)) => {
                if hi / lo - 1.0 <= s.resolution {
                    self.ended = Some("converged within the resolution");
                    self.next = None;
                    return verdict;
                }
                (lo * hi).sqrt()
            }
            (None, None) => unreachable!("a step was just recorded"),
        };
        if self.steps.len() >= s.steps_max {
            self.ended = Some("reached saturation_steps_max");
            self.next = None;
        } else if next < RATE_MIN {
            self.ended = Some("no rate of at least 1 record/s was sustained");
            self.next = None;
        } else {
            self.next = Some(next);
        }
        verdict
    }

    /// Every step so far, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The highest sustained step, if any passed.
    pub fn sustained(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.verdict.passed())
            .max_by(|a, b| a.target_records_per_s.total_cmp(&b.target_records_per_s))
    }
}

/// The search as reported in `summary.json` (`saturation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturationSummary {
    /// Closed-loop max throughput of the probe (records/s); `null` when a fixed rate gave
    /// the start.
    pub probe_records_per_s: Option<f64>,
    /// Highest sustained rate (records/s); `null` if no step passed.
    pub sustained_records_per_s: Option<f64>,
    /// Achieved MB/s at that rate.
    pub sustained_mb_per_s: Option<f64>,
    /// Ack p99 at that rate (ms).
    pub sustained_ack_p99_ms: Option<f64>,
    /// The pass rule's tolerance.
    pub tolerance: f64,
    /// The pass rule's latency bound (ms; `null`: none).
    pub p99_ms_max: Option<f64>,
    /// The search's resolution.
    pub resolution: f64,
    /// Why the search ended.
    pub ended: String,
    /// Every step, in order.
    pub steps: Vec<Step>,
}

impl SaturationSummary {
    /// The summary of a finished search.
    pub fn of(search: &Search, probe_records_per_s: Option<f64>) -> SaturationSummary {
        let best = search.sustained();
        SaturationSummary {
            probe_records_per_s,
            sustained_records_per_s: best.map(|s| s.target_records_per_s),
            sustained_mb_per_s: best.map(|s| s.achieved_mb_per_s),
            sustained_ack_p99_ms: best.and_then(|s| s.ack_p99_ms),
            tolerance: search.settings.tolerance,
            p99_ms_max: search.settings.p99_ms_max,
            resolution: search.settings.resolution,
            ended: search.ended().unwrap_or("stopped").to_string(),
            steps: search.steps.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SearchSettings {
        SearchSettings {
            start: 0.5,
            growth: 1.25,
            tolerance: 0.05,
            p99_ms_max: Some(50.0),
            resolution: 0.05,
            steps_max: 20,
        }
    }

    /// A broker that serves `capacity` records/s: below it, latency follows an M/D/1-like
    /// curve from a 2 ms service time; above it the backlog grows through the step, so the
    /// tail is the backlog's age at the end and the achieved rate is the capacity.
    fn broker(capacity: f64, step_s: f64) -> impl Fn(f64) -> StepResult {
        move |target: f64| {
            let rho = target / capacity;
            let (achieved, p99) = if rho < 1.0 {
                (target, 2.0 + 2.0 * rho / (2.0 * (1.0 - rho)))
            } else {
                let backlog_s = (target - capacity) * step_s / capacity;
                (capacity, 2.0 + backlog_s * 1000.0)
            };
            StepResult {
                target_records_per_s: target,
                achieved_records_per_s: achieved,
                achieved_mb_per_s: achieved / 1e4,
                ack_p99_ms: Some(p99),
                errors: 0,
            }
        }
    }

    fn search(capacity: f64, probe: f64, s: SearchSettings) -> Search {
        let b = broker(capacity, 10.0);
        let mut search = Search::new(s, probe);
        while let Some(t) = search.next_target() {
            search.record(b(t));
        }
        search
    }

    #[test]
    fn finds_a_known_capacity_within_the_resolution() {
        // The closed-loop probe over- or under-estimates; the search must not care.
        for (capacity, probe) in [
            (100_000.0, 100_000.0),
            (80_000.0, 200_000.0),
            (50_000.0, 20_000.0),
        ] {
            let s = search(capacity, probe, settings());
            let best = s
                .sustained()
                .expect("some step passes")
                .target_records_per_s;
            // Within the tolerance above (a slightly overloaded step still achieves 95% with
            // a small backlog) and within tolerance + resolution below.
            assert!(
                best <= capacity * 1.05 && best >= capacity * (1.0 - 0.05 - 0.05),
                "capacity {capacity}, probe {probe}: found {best}; steps {:?}",
                s.steps()
            );
            assert_eq!(s.ended(), Some("converged within the resolution"));
            assert!(s.steps().len() < 15, "{} steps", s.steps().len());
        }
    }

    #[test]
    fn without_a_latency_bound_the_rate_rule_decides() {
        let s = search(
            100_000.0,
            100_000.0,
            SearchSettings {
                p99_ms_max: None,
                ..settings()
            },
        );
        let best = s.sustained().unwrap().target_records_per_s;
        // Up to (1 + tolerance) x capacity still achieves 95% of its target.
        assert!(
            (95_000.0..=100_000.0 / 0.95).contains(&best),
            "found {best}"
        );
    }

    #[test]
    fn a_failing_first_step_halves_until_one_passes() {
        let s = search(10_000.0, 1_000_000.0, settings());
        let steps = s.steps();
        assert_eq!(steps[0].target_records_per_s, 500_000.0);
        assert!(!steps[0].verdict.passed());
        assert_eq!(steps[1].target_records_per_s, 250_000.0);
        let best = s.sustained().unwrap().target_records_per_s;
        assert!((9_000.0..=10_000.0).contains(&best), "found {best}");
    }

    #[test]
    fn verdicts_name_the_rule_that_failed() {
        let s = Search::starting_at(settings(), 1000.0);
        let r = |achieved: f64, p99: f64, errors: u64| StepResult {
            target_records_per_s: 1000.0,
            achieved_records_per_s: achieved,
            achieved_mb_per_s: 0.0,
            ack_p99_ms: Some(p99),
            errors,
        };
        assert_eq!(s.judge(&r(960.0, 10.0, 0)), Verdict::Sustained);
        assert_eq!(s.judge(&r(940.0, 10.0, 0)), Verdict::ShortOfTarget);
        assert_eq!(s.judge(&r(1000.0, 51.0, 0)), Verdict::LatencyAboveBound);
        assert_eq!(s.judge(&r(1000.0, 10.0, 3)), Verdict::Errors);
    }

    #[test]
    fn the_search_is_bounded() {
        let s = search(
            1e9,
            1.0e3,
            SearchSettings {
                steps_max: 4,
                ..settings()
            },
        );
        assert_eq!(s.steps().len(), 4);
        assert_eq!(s.ended(), Some("reached saturation_steps_max"));
        // Nothing sustained at all: ends below 1 record/s.
        let dead = |t: f64| StepResult {
            target_records_per_s: t,
            achieved_records_per_s: 0.0,
            achieved_mb_per_s: 0.0,
            ack_p99_ms: None,
            errors: 0,
        };
        let mut s = Search::starting_at(
            SearchSettings {
                steps_max: 100,
                ..settings()
            },
            100.0,
        );
        while let Some(t) = s.next_target() {
            s.record(dead(t));
        }
        assert!(s.sustained().is_none());
        assert_eq!(
            s.ended(),
            Some("no rate of at least 1 record/s was sustained")
        );
        let summary = SaturationSummary::of(&s, None);
        assert_eq!(summary.sustained_records_per_s, None);
        assert_eq!(summary.steps.len(), s.steps().len());
    }
}
