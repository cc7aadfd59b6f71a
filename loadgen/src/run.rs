//! One run from start to end on the main thread: validate, set up (or pretend to, for a dry
//! run), start the executors, gather their interval reports into the live progress line and
//! the time series, then merge their results into a [`Summary`].

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::admin::{discover, dry_run_cluster};
use crate::config::{Acks, Rate, Workload};
use crate::consumer::assign_round_robin;
use crate::driver::{
    executor_main, ConsumerPlan, Control, ExecutorResult, ProducerPlan, Report, RunPlan,
    REPORT_QUEUE_MAX,
};
use crate::error::LoadgenError;
use crate::hlog::{IntervalLog, ACK_TAG, E2E_TAG};
use crate::payload::GeneratorShared;
use crate::report::{IntervalRow, Setup, Summary, Throughput, BYTES_PER_MB};
use crate::saturation::{SaturationSummary, Search, SearchSettings, StepResult};
use crate::schedule::{Nanos, RunClock, NANOS_PER_S};
use crate::stats::{
    latency_histogram, merge_errors, Counts, ErrorCounts, Events, IntervalStats, Latency,
    LatencySummary, PartitionCounters,
};
use crate::{report, runtime};

/// Intervals waiting for a late executor before they are reported without it (a stalled
/// executor must not make the main thread hold an unbounded backlog).
pub const PENDING_INTERVALS_MAX: usize = 64;

/// A finished run: its summary and the measured histograms (for the `.hgrm` files).
#[derive(Debug)]
pub struct RunOutput {
    /// Everything measured.
    pub summary: Summary,
    /// Produce ack latency, µs.
    pub ack: Latency,
    /// End-to-end latency, µs.
    pub e2e: Latency,
    /// The interval histograms as an HdrHistogram interval log (`intervals.hlog`).
    pub interval_log: Vec<u8>,
}

/// Runs a workload; progress lines go to `progress`. `stop` is the Ctrl-C flag.
pub fn run(
    w: Workload,
    stop: Arc<AtomicBool>,
    progress: &mut dyn Write,
) -> Result<RunOutput, LoadgenError> {
    w.validate()?;
    let cluster = if w.dry_run {
        dry_run_cluster(&w)
    } else {
        discover(&w)?
    };
    let partitions = cluster.leaders.len();
    let mut notes = Vec::new();
    if !w.dry_run && cluster.created {
        notes.push(format!(
            "created topic {} with {partitions} partitions",
            w.topic
        ));
    }
    if !w.dry_run && partitions as i32 != w.partitions && !cluster.created {
        notes.push(format!(
            "topic {} exists with {partitions} partitions (--partitions {} applies only when creating it)",
            w.topic, w.partitions
        ));
    }
    let consumers = if w.dry_run { 0 } else { w.consumers };
    if consumers > partitions {
        notes.push(format!(
            "{} consumer(s) have no partition ({consumers} consumers, {partitions} partitions)",
            consumers - partitions
        ));
    }
    let allowed = runtime::allowed_cpus();
    let cores = if w.cores == 0 {
        allowed.len().max(1)
    } else {
        w.cores
    };
    let executors = cores.min(w.producers + consumers).max(1);
    let producers: Vec<ProducerPlan> = (0..w.producers)
        .map(|index| ProducerPlan {
            index,
            executor: index % executors,
        })
        .collect();
    // Group members learn their partitions from the group; the others split them here.
    let consumer_plans: Vec<ConsumerPlan> = if w.group.is_some() {
        (0..consumers)
            .map(|index| ConsumerPlan {
                index,
                executor: (w.producers + index) % executors,
                partitions: Vec::new(),
            })
            .collect()
    } else {
        assign_round_robin(partitions as i32, consumers)
            .into_iter()
            .enumerate()
            .filter(|(_, a)| !a.partitions().is_empty())
            .map(|(index, a)| ConsumerPlan {
                index,
                executor: (w.producers + index) % executors,
                partitions: a.partitions().to_vec(),
            })
            .collect()
    };
    let run_tag = fastrand::u32(1..);
    let interval_ns = w.interval_ms * 1_000_000;
    let warmup_ns = ((w.warmup * NANOS_PER_S as f64) as Nanos).div_ceil(interval_ns) * interval_ns;
    let duration_ns = (w.duration > 0.0).then_some((w.duration * NANOS_PER_S as f64) as Nanos);
    let records_per_s = w.rate.records_per_s(w.record_bytes.mean());
    let plan = Arc::new(RunPlan {
        generator: GeneratorShared::new(&w, run_tag),
        workload: w.clone(),
        clock: RunClock::start(),
        run_tag,
        executors,
        producers,
        consumers: consumer_plans,
        records_per_s,
        interval_ns,
        warmup_ns,
        duration_ns,
        counters: Arc::new(PartitionCounters::new(partitions)),
        control: Control {
            stop,
            abort: AtomicBool::new(false),
            barrier: Barrier::new(executors),
            start_ns: AtomicU64::new(0),
            producers_done: AtomicUsize::new(0),
            producers_done_ns: AtomicU64::new(0),
        },
        cluster,
    });
    let (tx, rx) = sync_channel::<Report>(REPORT_QUEUE_MAX);
    let started = {
        let plan = plan.clone();
        runtime::start(executors, move |i| {
            executor_main(plan.clone(), i, tx.clone())
        })?
    };
    let cpus = started.cpus.clone();
    let warmup_intervals = warmup_ns / interval_ns;
    let window_intervals = duration_ns.map(|d| warmup_intervals + d.div_ceil(interval_ns));
    let interval_s = interval_ns as f64 / 1e9;
    let mut gather = Gather::new(executors, warmup_intervals);
    let mut interval_log: Option<IntervalLog> = None;
    let mut log_errors: Vec<String> = Vec::new();
    let ack_shown = !w.dry_run && w.acks != Acks::None;
    for report in rx {
        match report {
            Report::Interval { executor, stats } => gather.interval(executor, *stats),
            Report::Finished { executor, result } => gather.finished(executor, *result),
        }
        for stats in gather.ready() {
            let log = interval_log.get_or_insert_with(|| {
                let start = plan.control.start_ns.load(Ordering::SeqCst);
                IntervalLog::new(plan.clock.unix_ms(start))
            });
            let from = Duration::from_nanos(stats.index * interval_ns);
            let tagged = [(ACK_TAG, &stats.ack), (E2E_TAG, &stats.e2e)];
            if let Err(e) = log.append(from, Duration::from_nanos(interval_ns), &tagged) {
                log_errors.push(e);
            }
            let phase = phase_of(stats.index, warmup_intervals, window_intervals);
            let _ = writeln!(
                progress,
                "{}",
                progress_line(&stats, interval_s, phase, &gather, ack_shown, consumers > 0)
            );
            gather.rows.push(IntervalRow::of(&stats, interval_s, phase));
        }
    }
    started.join()?;
    if let Some(e) = log_errors.first() {
        notes.push(format!("the interval log is incomplete: {e}"));
    }
    let interval_log = interval_log
        .unwrap_or_else(|| IntervalLog::new(plan.clock.unix_ms(0)))
        .into_bytes();
    Ok(finish(&w, &plan, cpus, gather, notes, interval_log))
}

/// Runs a saturation search (see [`crate::saturation`]): a closed-loop probe when the rate
/// is `max`, then fixed-rate steps, each a complete run of `warmup` + `duration`. Every
/// step's report goes to `<report_dir>/steps/`. The output is the highest sustained step's
/// (its histograms and time series), with the whole search in `summary.saturation`.
pub fn run_saturation(
    w: Workload,
    stop: Arc<AtomicBool>,
    progress: &mut dyn Write,
) -> Result<RunOutput, LoadgenError> {
    w.validate()?;
    let settings = SearchSettings {
        start: w.saturation_start,
        growth: w.saturation_growth,
        tolerance: w.saturation_tolerance,
        p99_ms_max: (w.saturation_p99_ms > 0.0).then_some(w.saturation_p99_ms),
        resolution: w.saturation_resolution,
        steps_max: w.saturation_steps_max,
    };
    let step_workload = |rate: Rate| Workload {
        find_saturation: false,
        rate,
        report_dir: None,
        ..w.clone()
    };
    let steps_dir = w.report_dir.as_ref().map(|d| d.join("steps"));
    let save = |name: &str, out: &RunOutput| -> Result<(), LoadgenError> {
        match &steps_dir {
            Some(dir) => report::write_dir(
                &dir.join(name),
                &out.summary,
                &out.ack,
                &out.e2e,
                &out.interval_log,
            )
            .map(|_| ()),
            None => Ok(()),
        }
    };
    let mut created = false;
    let mut fallback: Option<RunOutput> = None;
    let (mut search, probe) = match w.rate.records_per_s(w.record_bytes.mean()) {
        Some(first) => (Search::starting_at(settings, first), None),
        None => {
            let _ = writeln!(progress, "== saturation probe: closed loop (rate max)");
            let out = run(step_workload(Rate::Max), stop.clone(), progress)?;
            save("00-probe", &out)?;
            created |= out.summary.setup.topic_created;
            let max = out.summary.throughput.produce_records_per_s;
            let _ = writeln!(progress, "== probe: {} rec/s closed loop", report::si(max));
            let search = Search::new(settings, max);
            fallback = Some(out);
            (search, Some(max))
        }
    };
    let mut best: Option<RunOutput> = None;
    while let Some(target) = search.next_target() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let n = search.steps().len() + 1;
        let _ = writeln!(
            progress,
            "== saturation step {n}: target {} rec/s",
            report::si(target)
        );
        let out = run(
            step_workload(Rate::RecordsPerSecond(target)),
            stop.clone(),
            progress,
        )?;
        created |= out.summary.setup.topic_created;
        let s = &out.summary;
        let errors: u64 = s.errors.values().sum::<u64>();
        let result = StepResult {
            target_records_per_s: target,
            achieved_records_per_s: s.throughput.produce_records_per_s,
            achieved_mb_per_s: s.throughput.produce_mb_per_s,
            ack_p99_ms: s.ack.as_ref().filter(|a| a.count > 0).map(|a| a.p99_ms),
            // A problem without a counted error (say, records not consumed) fails it too.
            errors: errors.max(s.problems.len() as u64),
        };
        let verdict = search.record(result);
        let _ = writeln!(
            progress,
            "== step {n}: target {} achieved {} rec/s, ack p99 {} ms, errors {}: {verdict:?}",
            report::si(target),
            report::si(result.achieved_records_per_s),
            result.ack_p99_ms.map_or("-".to_string(), report::ms),
            result.errors
        );
        save(&format!("{n:02}-{}", target.round() as u64), &out)?;
        let better = best
            .as_ref()
            .and_then(|b| b.summary.setup.target_records_per_s)
            .is_none_or(|b| target > b);
        if verdict.passed() && better {
            best = Some(out);
        } else if best.is_none() {
            fallback = Some(out);
        }
    }
    let sat = SaturationSummary::of(&search, probe);
    let Some(mut out) = best.or(fallback) else {
        return Err(LoadgenError::Runtime {
            executor: 0,
            reason: "the saturation search was stopped before its first step".into(),
        });
    };
    let summary = &mut out.summary;
    summary.workload = w.clone();
    summary.setup.topic_created |= created;
    summary.label = w
        .report_dir
        .as_ref()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "saturation".to_string());
    match sat.sustained_records_per_s {
        Some(rate) => summary.notes.insert(
            0,
            format!(
                "saturation search: highest sustained rate {} rec/s ({:.1} MB/s, ack p99 {} ms) after {} step(s); {}; this report is that step's",
                report::si(rate),
                sat.sustained_mb_per_s.unwrap_or(0.0),
                sat.sustained_ack_p99_ms.map_or("-".to_string(), report::ms),
                sat.steps.len(),
                sat.ended
            ),
        ),
        None => summary.problems.push(format!(
            "saturation search: no step sustained its target ({}); this report is the last step's",
            sat.ended
        )),
    }
    summary.saturation = Some(sat);
    Ok(out)
}

fn phase_of(index: u64, warmup: u64, window_end: Option<u64>) -> &'static str {
    if index < warmup {
        "warmup"
    } else if window_end.is_some_and(|e| index >= e) {
        "drain"
    } else {
        "measure"
    }
}

/// Collects interval reports until every executor has sent (or can no longer send) an
/// interval, and executors' final results.
struct Gather {
    executors: usize,
    warmup_intervals: u64,
    pending: BTreeMap<u64, (IntervalStats, Vec<bool>)>,
    done: Vec<Option<ExecutorResult>>,
    rows: Vec<IntervalRow>,
    /// Measured intervals merged so far: the "so far" percentiles of the progress line.
    so_far_ack: Latency,
    so_far_e2e: Latency,
    errors_so_far: u64,
}

impl Gather {
    fn new(executors: usize, warmup_intervals: u64) -> Gather {
        Gather {
            executors,
            warmup_intervals,
            pending: BTreeMap::new(),
            done: (0..executors).map(|_| None).collect(),
            rows: Vec::new(),
            so_far_ack: latency_histogram(),
            so_far_e2e: latency_histogram(),
            errors_so_far: 0,
        }
    }

    fn interval(&mut self, executor: usize, stats: IntervalStats) {
        let n = self.executors;
        let entry = self
            .pending
            .entry(stats.index)
            .or_insert_with(|| (IntervalStats::new(stats.index), vec![false; n]));
        entry.0.merge(&stats);
        entry.1[executor] = true;
    }

    fn finished(&mut self, executor: usize, result: ExecutorResult) {
        self.done[executor] = Some(result);
    }

    /// Intervals every executor has reported (or finished before), oldest first.
    fn ready(&mut self) -> Vec<IntervalStats> {
        let mut out = Vec::new();
        while let Some((&k, (_, seen))) = self.pending.first_key_value() {
            // A stalled executor's share is left out rather than held without bound.
            let complete = self.pending.len() > PENDING_INTERVALS_MAX
                || seen.iter().zip(&self.done).all(|(&s, d)| s || d.is_some());
            if !complete {
                break;
            }
            let (stats, _) = self.pending.remove(&k).expect("key just seen");
            if stats.index >= self.warmup_intervals {
                let _ = self.so_far_ack.add(&stats.ack);
                let _ = self.so_far_e2e.add(&stats.e2e);
            }
            self.errors_so_far += stats.error_total();
            out.push(stats);
        }
        out
    }
}

fn pct(h: &Latency, q: f64) -> String {
    if h.is_empty() {
        "-".to_string()
    } else {
        report::ms(h.value_at_quantile(q) as f64 / 1000.0)
    }
}

fn progress_line(
    s: &IntervalStats,
    interval_s: f64,
    phase: &str,
    g: &Gather,
    ack_shown: bool,
    consuming: bool,
) -> String {
    let t = (s.index + 1) as f64 * interval_s;
    let c = &s.counts;
    // During the warm-up the interval's own figures; after it, everything measured so far.
    let (ack, e2e, which) = if phase == "warmup" {
        (&s.ack, &s.e2e, "interval")
    } else {
        (&g.so_far_ack, &g.so_far_e2e, "so far")
    };
    let mut line = format!(
        "[{t:>6.1}s {phase:<7}] {} {:>7} rec/s {:>7.1} MB/s",
        if ack_shown || consuming {
            "produced"
        } else {
            "sent"
        },
        report::si(c.acked_records as f64 / interval_s),
        c.acked_bytes as f64 / interval_s / BYTES_PER_MB,
    );
    if ack_shown {
        line.push_str(&format!(
            "  ack p50 {} p99 {} ms",
            pct(ack, 0.5),
            pct(ack, 0.99)
        ));
    }
    if consuming {
        line.push_str(&format!(
            " | consumed {:>7} rec/s  e2e p50 {} p99 {} ms",
            report::si(c.consumed_records as f64 / interval_s),
            pct(e2e, 0.5),
            pct(e2e, 0.99)
        ));
    }
    line.push_str(&format!(" ({which}) | errors {}", g.errors_so_far));
    if s.lag_ns_max >= 1_000_000 {
        line.push_str(&format!(
            " | behind schedule {} ms",
            report::ms(s.lag_ns_max as f64 / 1e6)
        ));
    }
    line
}

fn finish(
    w: &Workload,
    plan: &RunPlan,
    cpus: Vec<Option<usize>>,
    gather: Gather,
    mut notes: Vec<String>,
    interval_log: Vec<u8>,
) -> RunOutput {
    let mut totals = Counts::default();
    let mut window = Counts::default();
    let mut errors = ErrorCounts::new();
    let mut ack = latency_histogram();
    let mut e2e = latency_histogram();
    let mut last_ack = 0;
    let mut last_consume = 0;
    let mut lag_max = 0;
    let mut start_ns = 0;
    let mut dropped = 0;
    let mut problems = Vec::new();
    let mut events = Events::default();
    for r in gather.done.iter().flatten() {
        events += &r.events;
        totals += r.totals;
        window += r.window;
        merge_errors(&mut errors, &r.errors);
        let _ = ack.add(&r.ack);
        let _ = e2e.add(&r.e2e);
        last_ack = last_ack.max(r.last_ack_ns);
        last_consume = last_consume.max(r.last_consume_ns);
        lag_max = lag_max.max(r.lag_ns_max);
        start_ns = start_ns.max(r.start_ns);
        dropped += r.intervals_dropped;
        problems.extend(r.failures.iter().cloned());
    }
    if gather.done.iter().any(Option::is_none) {
        problems.push("an executor ended without reporting its results".into());
    }
    let warmup_end = start_ns + plan.warmup_ns;
    let window_end = plan.duration_ns.map_or(Nanos::MAX, |d| warmup_end + d);
    let secs = |last: Nanos| last.min(window_end).saturating_sub(warmup_end) as f64 / 1e9;
    let produce_s = secs(last_ack);
    let consume_s = secs(last_consume);
    let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let throughput = Throughput {
        produce_records_per_s: rate(window.acked_records, produce_s),
        produce_mb_per_s: rate(window.acked_bytes, produce_s) / BYTES_PER_MB,
        wire_mb_per_s: rate(window.wire_bytes, produce_s) / BYTES_PER_MB,
        consume_records_per_s: rate(window.consumed_records, consume_s),
        consume_mb_per_s: rate(window.consumed_bytes, consume_s) / BYTES_PER_MB,
    };
    let consuming = !w.dry_run && !plan.consumers.is_empty();
    if !errors.is_empty() {
        let total: u64 = errors.values().sum();
        problems.push(format!("{total} error(s), by cause in the errors table"));
    }
    if totals.generated_records != totals.acked_records + totals.failed_records {
        problems.push(format!(
            "records generated ({}) != acknowledged ({}) + failed ({})",
            totals.generated_records, totals.acked_records, totals.failed_records
        ));
    }
    if consuming {
        // Per partition: every acknowledged record consumed, and nothing beyond what may
        // have been stored without an answer (in doubt).
        let c = &plan.counters;
        let (mut missing, mut extra, mut skipped) = (0, 0, 0);
        for p in 0..c.len() {
            let (acked, consumed, doubt) = (c.acked(p), c.consumed(p), c.in_doubt(p));
            skipped += c.skipped(p);
            missing += acked.saturating_sub(consumed + c.skipped(p));
            extra += consumed.saturating_sub(acked + doubt);
        }
        if skipped > 0 {
            problems.push(format!(
                "{skipped} records were deleted by retention before the consumers read them (they fell behind by more than the topic keeps)"
            ));
        }
        if missing > 0
            || extra > 0
            || (totals.in_doubt_records == 0
                && skipped == 0
                && totals.consumed_records != totals.acked_records)
        {
            problems.push(format!(
                "records consumed ({}) != acknowledged ({}){}: {missing} acknowledged but not consumed, {extra} consumed beyond acknowledged + in doubt (duplicates)",
                totals.consumed_records,
                totals.acked_records,
                if totals.in_doubt_records > 0 {
                    format!(" + up to {} in doubt", totals.in_doubt_records)
                } else {
                    String::new()
                }
            ));
        }
    }
    if totals.in_doubt_records > 0 {
        notes.push(format!(
            "{} record(s) were in flight when their connection dropped: counted as failed (not resent, to avoid duplicates); the broker may have stored them{}",
            totals.in_doubt_records,
            if consuming {
                format!(
                    ", and consumers read {} of them",
                    totals.consumed_records.saturating_sub(totals.acked_records)
                )
            } else {
                String::new()
            }
        ));
    }
    if totals.acked_records == 0 && !problems.is_empty() {
        // Already explained.
    } else if totals.acked_records == 0 {
        problems.push("no record was acknowledged".into());
    }
    if dropped > 0 {
        notes.push(format!(
            "{dropped} interval report(s) were dropped (main thread too slow)"
        ));
    }
    if w.acks == Acks::None && !w.dry_run {
        notes.push("acks=0: records count as acknowledged once written; no ack latency".into());
    }
    if let Some(target) = plan.records_per_s {
        if lag_max > NANOS_PER_S {
            notes.push(format!(
                "the target rate of {} records/s was not sustained: generation fell up to {:.1} s behind the schedule (latencies include that wait)",
                report::si(target),
                lag_max as f64 / 1e9
            ));
        }
    }
    let label = w
        .report_dir
        .as_ref()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| format!("{} B {}", w.record_bytes, w.rate));
    let measured_ack = !w.dry_run && w.acks != Acks::None;
    let summary = Summary {
        tool: "rill-loadgen".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        label,
        started_unix_ms: plan.clock.unix_ms(start_ns),
        workload: w.clone(),
        setup: Setup {
            executors: plan.executors,
            cpus,
            brokers: plan
                .cluster
                .brokers
                .iter()
                .map(|b| b.addr.clone())
                .collect(),
            partitions: plan.cluster.leaders.len(),
            topic_created: plan.cluster.created,
            run_tag: plan.run_tag,
            dry_run: w.dry_run,
            target_records_per_s: plan.records_per_s,
            interval_s: plan.interval_ns as f64 / 1e9,
        },
        warmup_s: plan.warmup_ns as f64 / 1e9,
        window_s: produce_s,
        counts: totals,
        throughput,
        errors,
        ack: measured_ack.then(|| LatencySummary::of(&ack)),
        e2e: consuming.then(|| LatencySummary::of(&e2e)),
        intervals: gather.rows,
        schedule_lag_max_ms: lag_max as f64 / 1e6,
        problems,
        notes,
        saturation: None,
        events,
    };
    RunOutput {
        summary,
        ack,
        e2e,
        interval_log,
    }
}
