//! `rill-loadgen compare A B ...`: several runs' summaries side by side on stdout, and one
//! HTML page with all their percentile curves in a single plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::LoadgenError;
use crate::report::{ms, si, thousands, Summary};
use crate::stats::LatencySummary;

/// Loads every run (a report directory or a `summary.json`).
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Summary>, LoadgenError> {
    let mut runs = Vec::with_capacity(paths.len());
    for p in paths {
        let mut s = Summary::load(p)?;
        // Name runs by their directory: that is what the user typed.
        let name = if p.is_dir() {
            p.file_name()
        } else {
            p.parent().and_then(Path::file_name)
        };
        if let Some(n) = name {
            s.label = n.to_string_lossy().to_string();
        }
        runs.push(s);
    }
    Ok(runs)
}

/// The side-by-side table.
pub fn render_table(runs: &[Summary]) -> String {
    let width = runs
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut out = String::new();
    let _ = write!(out, "{:<22}", "");
    for r in runs {
        let _ = write!(out, " {:>width$}", r.label);
    }
    out.push('\n');
    let mut line = |name: &str, cells: Vec<String>| {
        let _ = write!(out, "{name:<22}");
        for c in cells {
            let _ = write!(out, " {c:>width$}");
        }
        out.push('\n');
    };
    let each = |f: &dyn Fn(&Summary) -> String| runs.iter().map(f).collect::<Vec<_>>();
    line(
        "record bytes",
        each(&|r| r.workload.record_bytes.to_string()),
    );
    line("rate", each(&|r| r.workload.rate.to_string()));
    line("acks", each(&|r| r.workload.acks.to_string()));
    line(
        "produced rec/s",
        each(&|r| si(r.throughput.produce_records_per_s)),
    );
    line(
        "produced MB/s",
        each(&|r| format!("{:.1}", r.throughput.produce_mb_per_s)),
    );
    line(
        "consumed rec/s",
        each(&|r| si(r.throughput.consume_records_per_s)),
    );
    type Pick = fn(&LatencySummary) -> f64;
    let picks: [(&str, Pick); 7] = [
        ("p50", |l| l.p50_ms),
        ("p90", |l| l.p90_ms),
        ("p99", |l| l.p99_ms),
        ("p99.9", |l| l.p999_ms),
        ("p99.99", |l| l.p9999_ms),
        ("max", |l| l.max_ms),
        ("mean", |l| l.mean_ms),
    ];
    for (what, get) in [
        (
            "ack",
            (|r: &Summary| r.ack.clone()) as fn(&Summary) -> Option<LatencySummary>,
        ),
        ("e2e", |r: &Summary| r.e2e.clone()),
    ] {
        for (name, pick) in picks {
            line(
                &format!("{what} {name} (ms)"),
                each(&|r| get(r).map_or("-".to_string(), |l| ms(pick(&l)))),
            );
        }
    }
    line("errors", each(&|r| thousands(r.errors.values().sum())));
    line(
        "clean",
        each(&|r| if r.ok() { "yes".into() } else { "NO".into() }),
    );
    out
}

/// Loads the runs, prints the table, writes the plot to `out`; returns the table.
pub fn compare(paths: &[PathBuf], out: &Path) -> Result<String, LoadgenError> {
    let runs = load_all(paths)?;
    let html = crate::html::compare_report(&runs);
    std::fs::write(out, html).map_err(|e| LoadgenError::Report {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(render_table(&runs))
}
