//! What a run leaves behind: the [`Summary`] (written as `summary.json`), the final table on
//! stdout, the progress line on stderr, and the report directory: `summary.json`,
//! `produce-ack.hgrm` and `end-to-end.hgrm` (HdrHistogram percentile distributions, ms),
//! `intervals.hlog` (every interval's histograms, HdrHistogram interval log) and a
//! self-contained `report.html`. Built on the main thread after the executors have finished.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Workload;
use crate::error::LoadgenError;
use crate::saturation::SaturationSummary;
use crate::stats::{Counts, ErrorCounts, Events, IntervalStats, Latency, LatencySummary};

/// File name of the summary in a report directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// File name of the produce acknowledgement latency distribution.
pub const ACK_HGRM_FILE: &str = "produce-ack.hgrm";
/// File name of the end-to-end latency distribution.
pub const E2E_HGRM_FILE: &str = "end-to-end.hgrm";
/// File name of the HTML report.
pub const HTML_FILE: &str = "report.html";
/// File name of the interval histogram log.
pub const HLOG_FILE: &str = "intervals.hlog";

/// Bytes per MB in every MB/s figure (decimal, like network and disk tools).
pub const BYTES_PER_MB: f64 = 1e6;

/// How the run was set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Executors (cores) used.
    pub executors: usize,
    /// CPU each executor was pinned to (`null`: not pinned).
    pub cpus: Vec<Option<usize>>,
    /// Partition leaders talked to (`host:port`).
    pub brokers: Vec<String>,
    /// Partitions of the topic.
    pub partitions: usize,
    /// Whether this run created the topic.
    pub topic_created: bool,
    /// Tag in this run's record stamps.
    pub run_tag: u32,
    /// Generate-and-encode only.
    pub dry_run: bool,
    /// Target records/s for the whole run (`null`: max).
    pub target_records_per_s: Option<f64>,
    /// Interval length, seconds.
    pub interval_s: f64,
}

/// Throughput inside the measurement window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Records acknowledged per second (dry run: encoded).
    pub produce_records_per_s: f64,
    /// Key + value MB acknowledged per second.
    pub produce_mb_per_s: f64,
    /// Produce request MB written per second (frames, headers, batch overhead).
    pub wire_mb_per_s: f64,
    /// Records consumed per second.
    pub consume_records_per_s: f64,
    /// Key + value MB consumed per second.
    pub consume_mb_per_s: f64,
}

/// One interval of the time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalRow {
    /// End of the interval, seconds since the start.
    pub t_s: f64,
    /// `warmup`, `measure` or `drain`.
    pub phase: String,
    /// Records written per second.
    pub sent_per_s: f64,
    /// Records acknowledged per second.
    pub acked_per_s: f64,
    /// Acknowledged MB per second.
    pub acked_mb_per_s: f64,
    /// Records consumed per second.
    pub consumed_per_s: f64,
    /// Ack latency of the interval: median, 99th percentile, max (ms; 0 if none).
    pub ack_p50_ms: f64,
    /// See `ack_p50_ms`.
    pub ack_p99_ms: f64,
    /// See `ack_p50_ms`.
    pub ack_max_ms: f64,
    /// End-to-end latency of the interval: median, 99th percentile, max (ms; 0 if none).
    pub e2e_p50_ms: f64,
    /// See `e2e_p50_ms`.
    pub e2e_p99_ms: f64,
    /// See `e2e_p50_ms`.
    pub e2e_max_ms: f64,
    /// Errors counted in the interval.
    pub errors: u64,
    /// Largest schedule lag in the interval (ms).
    pub lag_ms: f64,
}

impl IntervalRow {
    /// A row from merged interval figures.
    pub fn of(stats: &IntervalStats, interval_s: f64, phase: &str) -> IntervalRow {
        let per_s = |n: u64| n as f64 / interval_s;
        let pct = |h: &Latency, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        IntervalRow {
            t_s: (stats.index + 1) as f64 * interval_s,
            phase: phase.to_string(),
            sent_per_s: per_s(stats.counts.sent_records),
            acked_per_s: per_s(stats.counts.acked_records),
            acked_mb_per_s: per_s(stats.counts.acked_bytes) / BYTES_PER_MB,
            consumed_per_s: per_s(stats.counts.consumed_records),
            ack_p50_ms: pct(&stats.ack, 0.5),
            ack_p99_ms: pct(&stats.ack, 0.99),
            ack_max_ms: pct(&stats.ack, 1.0),
            e2e_p50_ms: pct(&stats.e2e, 0.5),
            e2e_p99_ms: pct(&stats.e2e, 0.99),
            e2e_max_ms: pct(&stats.e2e, 1.0),
            errors: stats.error_total(),
            lag_ms: stats.lag_ns_max as f64 / 1e6,
        }
    }
}

/// Everything a run measured; `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Always `rill-loadgen`.
    pub tool: String,
    /// Tool version.
    pub version: String,
    /// A short name for this run in comparisons.
    pub label: String,
    /// Wall-clock start, ms since 1970.
    pub started_unix_ms: i64,
    /// The workload as run.
    pub workload: Workload,
    /// How it was set up.
    pub setup: Setup,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Measurement window actually covered, seconds.
    pub window_s: f64,
    /// Whole-run counts (warm-up and drain included).
    pub counts: Counts,
    /// Throughput inside the window.
    pub throughput: Throughput,
    /// Errors by Kafka code or client-side cause.
    pub errors: ErrorCounts,
    /// Produce acknowledgement latency of records scheduled after the warm-up (absent with
    /// acks=0 and in dry runs).
    pub ack: Option<LatencySummary>,
    /// End-to-end latency, intended send to consumed (absent without consumers).
    pub e2e: Option<LatencySummary>,
    /// The time series.
    pub intervals: Vec<IntervalRow>,
    /// Largest schedule lag, ms (fixed rate: how far generation fell behind).
    pub schedule_lag_max_ms: f64,
    /// Why the run is not clean (errors, missing records, failures); empty when it is.
    pub problems: Vec<String>,
    /// Things worth knowing that are not failures.
    pub notes: Vec<String>,
    /// The saturation search, when the run was one (`--find-saturation`).
    #[serde(default)]
    pub saturation: Option<SaturationSummary>,
    /// Connections lost and re-established, consumer-group activity.
    #[serde(default)]
    pub events: Events,
}

impl Summary {
    /// Whether the run was clean.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Reads `summary.json` from a report directory (or the file itself).
    pub fn load(path: &Path) -> Result<Summary, LoadgenError> {
        let file = if path.is_dir() {
            path.join(SUMMARY_FILE)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| LoadgenError::Report {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| LoadgenError::Report {
            path: file,
            reason: format!("not a rill-loadgen summary: {e}"),
        })
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with a k/M suffix.
pub fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A latency in ms with sensible precision.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The final table (stdout).
pub fn render_table(s: &Summary) -> String {
    let mut out = String::new();
    let w = &s.workload;
    let _ = writeln!(
        out,
        "\nrill-loadgen {}: topic {} ({} partitions), {} producer(s), {} consumer(s), {} executor(s)",
        if s.setup.dry_run { "DRY RUN (encode only, nothing sent)" } else { "run" },
        w.topic,
        s.setup.partitions,
        w.producers,
        if s.setup.dry_run { 0 } else { w.consumers },
        s.setup.executors
    );
    let _ = writeln!(
        out,
        "records {} B, keys {}, compression {}, acks {}, batch {} B, linger {} ms, max in flight {}, rate {}",
        w.record_bytes, w.key_distribution, w.compression, w.acks, w.batch_bytes, w.linger_ms, w.max_inflight, w.rate
    );
    let _ = writeln!(
        out,
        "measured {:.1} s after a {:.1} s warm-up\n",
        s.window_s, s.warmup_s
    );
    let _ = writeln!(
        out,
        "{:<12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   (ms)",
        "latency", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    let row = |out: &mut String, name: &str, l: &Option<LatencySummary>, why_not: &str| match l {
        Some(l) if l.count > 0 => {
            let _ = writeln!(
                out,
                "{:<12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                thousands(l.count),
                ms(l.p50_ms),
                ms(l.p90_ms),
                ms(l.p99_ms),
                ms(l.p999_ms),
                ms(l.p9999_ms),
                ms(l.max_ms)
            );
        }
        _ => {
            let _ = writeln!(out, "{name:<12} {why_not:>12}");
        }
    };
    let ack_why = if s.setup.dry_run {
        "(dry run)"
    } else if w.acks == crate::config::Acks::None {
        "(acks=0)"
    } else {
        "(none)"
    };
    row(&mut out, "produce ack", &s.ack, ack_why);
    let e2e_why = if s.setup.dry_run || w.consumers == 0 {
        "(no consumers)"
    } else {
        "(none)"
    };
    row(&mut out, "end-to-end", &s.e2e, e2e_why);
    let t = &s.throughput;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "throughput   {} {} rec/s  {:.1} MB/s (wire {:.1} MB/s)",
        if s.setup.dry_run {
            "encoded "
        } else {
            "produced"
        },
        si(t.produce_records_per_s),
        t.produce_mb_per_s,
        t.wire_mb_per_s
    );
    if !s.setup.dry_run && w.consumers > 0 {
        let _ = writeln!(
            out,
            "             consumed {} rec/s  {:.1} MB/s",
            si(t.consume_records_per_s),
            t.consume_mb_per_s
        );
    }
    if let Some(target) = s.setup.target_records_per_s {
        let _ = writeln!(
            out,
            "             target   {} rec/s (schedule lag max {} ms)",
            si(target),
            ms(s.schedule_lag_max_ms)
        );
    }
    let c = &s.counts;
    let _ = writeln!(
        out,
        "records      generated {}  sent {}  acknowledged {}  failed {}  consumed {}{}",
        thousands(c.generated_records),
        thousands(c.sent_records),
        thousands(c.acked_records),
        thousands(c.failed_records),
        thousands(c.consumed_records),
        if c.foreign_records > 0 {
            format!(
                "  (ignored {} from other writers)",
                thousands(c.foreign_records)
            )
        } else {
            String::new()
        }
    );
    let e = &s.events;
    if e.connections_lost > 0 || e.reconnects > 0 {
        let _ = writeln!(
            out,
            "connections  lost {}  reconnected {}  failed reconnect attempts {}  (records in doubt {})",
            e.connections_lost, e.reconnects, e.reconnect_attempts_failed, thousands(c.in_doubt_records)
        );
    }
    if let Some(g) = &w.group {
        let _ = writeln!(out, "{}", group_line(g, w.consumers, e));
        for (k, v) in &e.group_answers {
            let _ = writeln!(
                out,
                "  {:>12}  {k} (protocol step, not an error)",
                thousands(*v)
            );
        }
    }
    if s.errors.is_empty() {
        let _ = writeln!(out, "errors       none");
    } else {
        let _ = writeln!(out, "errors");
        for (k, v) in &s.errors {
            let _ = writeln!(out, "  {:>12}  {k}", thousands(*v));
        }
    }
    if let Some(sat) = &s.saturation {
        render_saturation(&mut out, sat);
    }
    for n in &s.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for p in &s.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    out
}

/// The consumer group's figures in one line.
pub fn group_line(group: &str, members: usize, e: &Events) -> String {
    let generations = match (e.group_generations.first(), e.group_generations.last()) {
        (Some(a), Some(b)) if a != b => format!(" (generations {a}..={b})"),
        (Some(a), _) => format!(" (generation {a})"),
        _ => String::new(),
    };
    format!(
        "group        {group}: {members} member(s), {} rebalance(s){generations}, {} join(s), {} commit(s); without partitions {} ms in all (longest {} ms)",
        e.group_generations.len(),
        e.group_joins,
        e.group_commits,
        ms(e.rebalance_ms_total),
        ms(e.rebalance_ms_max)
    )
}

fn render_saturation(out: &mut String, sat: &SaturationSummary) {
    let _ = writeln!(
        out,
        "saturation   {} (pass: achieved >= {:.0}% of target, ack p99 <= {}, no errors)",
        match sat.sustained_records_per_s {
            Some(r) => format!("sustained {} rec/s", si(r)),
            None => "no rate sustained".to_string(),
        },
        (1.0 - sat.tolerance) * 100.0,
        sat.p99_ms_max
            .map_or("(no bound)".to_string(), |b| format!("{} ms", ms(b)))
    );
    if let Some(p) = sat.probe_records_per_s {
        let _ = writeln!(out, "  probe (closed loop)   {} rec/s", si(p));
    }
    let _ = writeln!(
        out,
        "  {:>4} {:>12} {:>12} {:>9} {:>10} {:>7}  verdict",
        "step", "target/s", "achieved/s", "MB/s", "ack p99", "errors"
    );
    for st in &sat.steps {
        let _ = writeln!(
            out,
            "  {:>4} {:>12} {:>12} {:>9.1} {:>10} {:>7}  {:?}",
            st.step,
            si(st.target_records_per_s),
            si(st.achieved_records_per_s),
            st.achieved_mb_per_s,
            st.ack_p99_ms.map_or("-".to_string(), ms),
            st.errors,
            st.verdict
        );
    }
    let _ = writeln!(out, "  search ended: {}", sat.ended);
}

/// Writes the report directory; returns the files written.
pub fn write_dir(
    dir: &Path,
    s: &Summary,
    ack: &Latency,
    e2e: &Latency,
    interval_log: &[u8],
) -> Result<Vec<PathBuf>, LoadgenError> {
    let err = |path: &Path, e: std::io::Error| LoadgenError::Report {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let json = serde_json::to_string_pretty(s).map_err(|e| LoadgenError::Report {
        path: dir.join(SUMMARY_FILE),
        reason: e.to_string(),
    })?;
    let files = [
        (SUMMARY_FILE, json),
        (ACK_HGRM_FILE, crate::hgrm::render(ack)),
        (E2E_HGRM_FILE, crate::hgrm::render(e2e)),
        (HTML_FILE, crate::html::run_report(s)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| err(&path, e))?;
        written.push(path);
    }
    let path = dir.join(HLOG_FILE);
    std::fs::write(&path, interval_log).map_err(|e| err(&path, e))?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(2_500_000.0), "2.50M");
        assert_eq!(ms(0.1234), "0.123");
        assert_eq!(ms(12.34), "12.3");
        assert_eq!(ms(1234.0), "1234");
    }
}
