//! Self-contained HTML reports: inline SVG charts, inline CSS, no scripts, nothing fetched.
//!
//! [`run_report`] shows one run: headline figures, the latency-by-percentile curve (x axis
//! logarithmic in 1/(1-percentile), as HdrHistogram plots are), throughput over time and
//! latency over time with the warm-up shaded. [`compare_report`] puts several runs' curves
//! in one plot. Pure functions of [`Summary`] values.

use std::fmt::Write as _;

use crate::report::{ms, si, thousands, Summary};
use crate::stats::LatencySummary;

/// Line colours, one per series (runs in a comparison cycle through them).
pub const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 44.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 52.0;

/// One line in a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Dashed stroke.
    pub dashed: bool,
    /// `(x, y)` points in data units.
    pub points: Vec<(f64, f64)>,
}

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Debug, Clone, Copy)]
enum Scale {
    Linear { lo: f64, hi: f64 },
    Log { lo: f64, hi: f64 },
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v * 0.999_999 {
            return m * p;
        }
    }
    10.0 * p
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v.abs() >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

impl Scale {
    /// A scale for values in `[min, max]`: logarithmic when they span more than ~1.5
    /// decades and `allow_log`, else linear from 0.
    fn fit(min_positive: f64, max: f64, allow_log: bool) -> Scale {
        let max = if max > 0.0 { max } else { 1.0 };
        if allow_log && min_positive > 0.0 && max / min_positive > 30.0 {
            Scale::Log {
                lo: 10f64.powf(min_positive.log10().floor()),
                hi: 10f64.powf(max.log10().ceil()),
            }
        } else {
            Scale::Linear {
                lo: 0.0,
                hi: nice_ceil(max * 1.05),
            }
        }
    }

    fn frac(&self, v: f64) -> f64 {
        let f = match *self {
            Scale::Linear { lo, hi } => (v - lo) / (hi - lo),
            Scale::Log { lo, hi } => (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()),
        };
        f.clamp(0.0, 1.0)
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        match *self {
            Scale::Linear { lo, hi } => {
                let step = nice_ceil((hi - lo) / 5.0);
                let mut out = Vec::new();
                let mut v = lo;
                while v <= hi + step * 1e-9 {
                    out.push((v, tick_label(v)));
                    v += step;
                }
                out
            }
            Scale::Log { lo, hi } => {
                let mut out = Vec::new();
                let mut v = lo;
                while v <= hi * 1.000_001 {
                    out.push((v, tick_label(v)));
                    v *= 10.0;
                }
                out
            }
        }
    }
}

fn svg_open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/><text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>"##,
        escape(title)
    );
}

fn plot_w() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_h() -> f64 {
    HEIGHT - TOP - BOTTOM
}

fn px(fx: f64) -> f64 {
    LEFT + fx * plot_w()
}

fn py(fy: f64) -> f64 {
    TOP + (1.0 - fy) * plot_h()
}

fn y_axis(out: &mut String, scale: &Scale, label: &str) {
    for (v, text) in scale.ticks() {
        let y = py(scale.frac(v));
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            LEFT + plot_w(),
            LEFT - 6.0,
            y + 4.0,
            escape(&text)
        );
    }
    let _ = write!(
        out,
        r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" fill="#222">{}</text>"##,
        TOP + plot_h() / 2.0,
        escape(label)
    );
}

fn frame_and_legend(out: &mut String, series: &[Series]) {
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#999"/>"##,
        plot_w(),
        plot_h()
    );
    for (i, s) in series.iter().enumerate() {
        let x = LEFT + 12.0;
        let y = TOP + 16.0 + 16.0 * i as f64;
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2.5"{dash}/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            x + 24.0,
            y - 4.0,
            y - 4.0,
            s.color,
            x + 30.0,
            escape(&s.label)
        );
    }
}

fn polyline(out: &mut String, s: &Series, fx: impl Fn(f64) -> f64, fy: impl Fn(f64) -> f64) {
    if s.points.is_empty() {
        return;
    }
    let pts: Vec<String> = s
        .points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", px(fx(x)), py(fy(y))))
        .collect();
    let dash = if s.dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    let _ = write!(
        out,
        r#"<polyline fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"{dash} points="{}"/>"#,
        s.color,
        pts.join(" ")
    );
}

/// Largest x on the percentile axis: 10^6 is 99.9999%.
const PERCENTILE_X_MAX: f64 = 6.0;

/// Position of a percentile on the log axis: log10(1 / (1 - p)).
pub fn percentile_x(percent: f64) -> f64 {
    let rest = (100.0 - percent) / 100.0;
    if rest <= 0.0 {
        f64::INFINITY
    } else {
        (1.0 / rest).log10()
    }
}

/// A latency-by-percentile chart; each series' points are `(percent, ms)`.
pub fn percentile_chart(title: &str, series: &[Series]) -> String {
    let finite_max = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|&(p, _)| percentile_x(p))
        .filter(|x| x.is_finite())
        .fold(2.0f64, f64::max);
    let x_max = finite_max.ceil().clamp(2.0, PERCENTILE_X_MAX);
    let ys = series.iter().flat_map(|s| s.points.iter()).map(|&(_, y)| y);
    let max = ys.clone().fold(0.0f64, f64::max);
    let min_pos = ys.filter(|&y| y > 0.0).fold(f64::INFINITY, f64::min);
    let scale = Scale::fit(min_pos, max, true);
    let mut out = String::new();
    svg_open(&mut out, title);
    y_axis(&mut out, &scale, "latency (ms)");
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
    for (i, text) in labels.iter().enumerate().take(x_max as usize + 1) {
        let x = px(i as f64 / x_max);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="#e4e4e4"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#444">{text}</text>"##,
            TOP + plot_h(),
            TOP + plot_h() + 18.0
        );
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#222">percentile (log scale of 1/(1-p); max at the right edge)</text>"##,
        LEFT + plot_w() / 2.0,
        HEIGHT - 10.0
    );
    for s in series {
        polyline(
            &mut out,
            s,
            |p| percentile_x(p).min(x_max) / x_max,
            |y| scale.frac(y),
        );
    }
    frame_and_legend(&mut out, series);
    out.push_str("</svg>");
    out
}

/// A chart over time; each of `shades` greys out `[from, to)` seconds under a label (the
/// warm-up, the drain).
pub fn time_chart(
    title: &str,
    y_label: &str,
    series: &[Series],
    shades: &[(f64, f64, &str)],
    allow_log: bool,
) -> String {
    let t_max = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|&(t, _)| t)
        .fold(1.0f64, f64::max);
    let step = nice_ceil(t_max / 6.0);
    let xs = Scale::Linear {
        lo: 0.0,
        hi: (t_max / step).ceil() * step,
    };
    let ys = series.iter().flat_map(|s| s.points.iter()).map(|&(_, y)| y);
    let max = ys.clone().fold(0.0f64, f64::max);
    let min_pos = ys.filter(|&y| y > 0.0).fold(f64::INFINITY, f64::min);
    let scale = Scale::fit(min_pos, max, allow_log);
    let mut out = String::new();
    svg_open(&mut out, title);
    for &(a, b, label) in shades {
        if b > a {
            let _ = write!(
                out,
                r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#f1f1f1"/><text x="{:.1}" y="{:.1}" fill="#888">{}</text>"##,
                px(xs.frac(a)),
                px(xs.frac(b)) - px(xs.frac(a)),
                plot_h(),
                px(xs.frac(a)) + 4.0,
                TOP + plot_h() - 6.0,
                escape(label)
            );
        }
    }
    y_axis(&mut out, &scale, y_label);
    for (v, text) in xs.ticks() {
        let x = px(xs.frac(v));
        let _ = write!(
            out,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            TOP + plot_h() + 18.0,
            escape(&text)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#222">time (s)</text>"##,
        LEFT + plot_w() / 2.0,
        HEIGHT - 10.0
    );
    for s in series {
        polyline(&mut out, s, |t| xs.frac(t), |y| scale.frac(y));
    }
    frame_and_legend(&mut out, series);
    out.push_str("</svg>");
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:900px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\
th{background:#f4f4f4}td.l,th.l{text-align:left}.bad{color:#b00;font-weight:bold}.muted{color:#666}\
code{background:#f4f4f4;padding:1px 4px}";

fn curve_points(l: &LatencySummary) -> Vec<(f64, f64)> {
    l.curve.iter().map(|p| (p[0], p[1])).collect()
}

fn latency_rows(out: &mut String, name: &str, l: &Option<LatencySummary>) {
    let Some(l) = l else {
        let _ = write!(
            out,
            r#"<tr><td class="l">{name}</td><td colspan="8" class="l muted">not measured</td></tr>"#
        );
        return;
    };
    let _ = write!(
        out,
        r#"<tr><td class="l">{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
        thousands(l.count),
        ms(l.p50_ms),
        ms(l.p90_ms),
        ms(l.p99_ms),
        ms(l.p999_ms),
        ms(l.p9999_ms),
        ms(l.max_ms),
        ms(l.mean_ms)
    );
}

/// `0, 1` or `unpinned`.
fn cpu_list(cpus: &[Option<usize>]) -> String {
    if cpus.iter().any(Option::is_none) {
        return "unpinned".into();
    }
    cpus.iter()
        .flatten()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn saturation_section(out: &mut String, sat: &crate::saturation::SaturationSummary) {
    let _ = write!(
        out,
        "<h2>Saturation search</h2><p>{}. A step passes if it acknowledges at least {:.0}% of its target rate with an ack p99 of at most {} and no errors; the search ended: {}.{}</p>",
        match sat.sustained_records_per_s {
            Some(r) => format!("Highest sustained rate: <b>{} records/s</b> ({:.1} MB/s); the figures below are that step's", si(r), sat.sustained_mb_per_s.unwrap_or(0.0)),
            None => "No step sustained its target".to_string(),
        },
        (1.0 - sat.tolerance) * 100.0,
        sat.p99_ms_max.map_or("(no bound)".to_string(), |b| format!("{} ms", ms(b))),
        escape(&sat.ended),
        sat.probe_records_per_s
            .map_or(String::new(), |p| format!(" Closed-loop probe: {} records/s.", si(p)))
    );
    out.push_str("<table><tr><th>step</th><th>target rec/s</th><th>achieved rec/s</th><th>MB/s</th><th>ack p99 (ms)</th><th>errors</th><th class=\"l\">verdict</th></tr>");
    for st in &sat.steps {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td class=\"l{}\">{:?}</td></tr>",
            st.step,
            si(st.target_records_per_s),
            si(st.achieved_records_per_s),
            st.achieved_mb_per_s,
            st.ack_p99_ms.map_or("-".to_string(), ms),
            st.errors,
            if st.verdict.passed() { "" } else { " bad" },
            st.verdict
        );
    }
    out.push_str("</table>");
}

/// The one-run report.
pub fn run_report(s: &Summary) -> String {
    let w = &s.workload;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>rill-loadgen: {}</title><style>{STYLE}</style></head><body>",
        escape(&s.label)
    );
    let _ = write!(
        out,
        "<h1>rill-loadgen {}{}</h1>",
        escape(&s.label),
        if s.setup.dry_run {
            " (dry run: encode only)"
        } else {
            ""
        }
    );
    let _ = write!(
        out,
        "<p>topic <code>{}</code> ({} partitions) on {}; {} producer(s), {} consumer(s), {} executor(s) on CPUs {}<br>records {} B, keys {}, payload {}, compression {}, acks {}, batch {} B, linger {} ms, max in flight {}, rate {}<br>measured {:.1} s after a {:.1} s warm-up; version {}</p>",
        escape(&w.topic),
        s.setup.partitions,
        escape(&s.setup.brokers.join(", ")),
        w.producers,
        if s.setup.dry_run { 0 } else { w.consumers },
        s.setup.executors,
        cpu_list(&s.setup.cpus),
        w.record_bytes,
        w.key_distribution,
        w.payload,
        w.compression,
        w.acks,
        w.batch_bytes,
        w.linger_ms,
        w.max_inflight,
        w.rate,
        s.window_s,
        s.warmup_s,
        escape(&s.version)
    );
    if !s.problems.is_empty() {
        out.push_str("<h2 class=\"bad\">Problems</h2><ul>");
        for p in &s.problems {
            let _ = write!(out, "<li class=\"bad\">{}</li>", escape(p));
        }
        out.push_str("</ul>");
    }
    if let Some(sat) = &s.saturation {
        saturation_section(&mut out, sat);
    }
    out.push_str("<h2>Latency (ms)</h2><table><tr><th class=\"l\"></th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th><th>mean</th></tr>");
    latency_rows(&mut out, "produce ack", &s.ack);
    latency_rows(&mut out, "end-to-end", &s.e2e);
    out.push_str("</table>");
    let t = &s.throughput;
    let c = &s.counts;
    let _ = write!(
        out,
        "<h2>Throughput and records</h2><table><tr><th class=\"l\"></th><th>records/s</th><th>MB/s</th></tr><tr><td class=\"l\">{}</td><td>{}</td><td>{:.1}</td></tr><tr><td class=\"l\">consumed</td><td>{}</td><td>{:.1}</td></tr><tr><td class=\"l\">wire (produce requests)</td><td></td><td>{:.1}</td></tr></table>",
        if s.setup.dry_run { "encoded" } else { "acknowledged" },
        si(t.produce_records_per_s),
        t.produce_mb_per_s,
        si(t.consume_records_per_s),
        t.consume_mb_per_s,
        t.wire_mb_per_s
    );
    let _ = write!(
        out,
        "<table><tr><th>generated</th><th>sent</th><th>acknowledged</th><th>failed</th><th>consumed</th><th>ignored (other writers)</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        thousands(c.generated_records),
        thousands(c.sent_records),
        thousands(c.acked_records),
        thousands(c.failed_records),
        thousands(c.consumed_records),
        thousands(c.foreign_records)
    );
    if let Some(g) = &w.group {
        let _ = write!(
            out,
            "<h2>Consumer group</h2><p>{}</p>",
            escape(
                crate::report::group_line(g, w.consumers, &s.events)
                    .trim_start_matches("group")
                    .trim()
            )
        );
    }
    let e = &s.events;
    if e.connections_lost > 0 || e.reconnects > 0 {
        let _ = write!(
            out,
            "<h2>Connections</h2><p>lost {}, reconnected {}, failed reconnect attempts {}; records in doubt (in flight when a connection dropped) {}</p>",
            e.connections_lost, e.reconnects, e.reconnect_attempts_failed, thousands(s.counts.in_doubt_records)
        );
    }
    out.push_str("<h2>Errors</h2>");
    if s.errors.is_empty() {
        out.push_str("<p>none</p>");
    } else {
        out.push_str("<table><tr><th class=\"l\">error</th><th>count</th></tr>");
        for (k, v) in &s.errors {
            let _ = write!(
                out,
                "<tr><td class=\"l bad\">{}</td><td>{}</td></tr>",
                escape(k),
                thousands(*v)
            );
        }
        out.push_str("</table>");
    }
    let mut curves = Vec::new();
    if let Some(a) = &s.ack {
        curves.push(Series {
            label: "produce ack".into(),
            color: PALETTE[0],
            dashed: false,
            points: curve_points(a),
        });
    }
    if let Some(e) = &s.e2e {
        curves.push(Series {
            label: "end-to-end".into(),
            color: PALETTE[1],
            dashed: false,
            points: curve_points(e),
        });
    }
    out.push_str("<h2>Latency by percentile</h2>");
    out.push_str(&percentile_chart(
        "latency by percentile (after warm-up)",
        &curves,
    ));
    let mut shade = vec![(0.0, s.warmup_s, "warm-up")];
    if let Some(first_drain) = s.intervals.iter().find(|r| r.phase == "drain") {
        let end = s.intervals.last().map_or(first_drain.t_s, |r| r.t_s);
        shade.push((first_drain.t_s - s.setup.interval_s, end, "drain"));
    }
    let shade = &shade[..];
    let col = |f: fn(&crate::report::IntervalRow) -> f64| -> Vec<(f64, f64)> {
        s.intervals.iter().map(|r| (r.t_s, f(r))).collect()
    };
    let mut rates = vec![
        Series {
            label: "acknowledged/s".into(),
            color: PALETTE[0],
            dashed: false,
            points: col(|r| r.acked_per_s),
        },
        Series {
            label: "sent/s".into(),
            color: PALETTE[2],
            dashed: true,
            points: col(|r| r.sent_per_s),
        },
    ];
    if s.e2e.is_some() {
        rates.push(Series {
            label: "consumed/s".into(),
            color: PALETTE[1],
            dashed: false,
            points: col(|r| r.consumed_per_s),
        });
    }
    out.push_str("<h2>Throughput over time</h2>");
    out.push_str(&time_chart(
        "records per second",
        "records/s",
        &rates,
        shade,
        false,
    ));
    let mut lat = Vec::new();
    if s.ack.is_some() {
        lat.push(Series {
            label: "ack p50".into(),
            color: PALETTE[0],
            dashed: true,
            points: col(|r| r.ack_p50_ms),
        });
        lat.push(Series {
            label: "ack p99".into(),
            color: PALETTE[0],
            dashed: false,
            points: col(|r| r.ack_p99_ms),
        });
        lat.push(Series {
            label: "ack max".into(),
            color: PALETTE[4],
            dashed: false,
            points: col(|r| r.ack_max_ms),
        });
    }
    if s.e2e.is_some() {
        lat.push(Series {
            label: "end-to-end p99".into(),
            color: PALETTE[1],
            dashed: false,
            points: col(|r| r.e2e_p99_ms),
        });
    }
    if !lat.is_empty() {
        out.push_str("<h2>Latency over time</h2>");
        out.push_str(&time_chart(
            "latency per interval",
            "latency (ms)",
            &lat,
            shade,
            true,
        ));
    }
    if !s.notes.is_empty() {
        out.push_str("<h2>Notes</h2><ul>");
        for n in &s.notes {
            let _ = write!(out, "<li>{}</li>", escape(n));
        }
        out.push_str("</ul>");
    }
    out.push_str("<p class=\"muted\">Latencies are measured from each record's intended send time (open-loop schedule), so stalls are not hidden. Histograms: HdrHistogram, microsecond resolution, 3 significant digits; the .hgrm files beside this page hold the full distributions.</p></body></html>\n");
    out
}

/// One page comparing runs: a table and all percentile curves in one plot.
pub fn compare_report(runs: &[Summary]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>rill-loadgen comparison</title><style>{STYLE}</style></head><body><h1>rill-loadgen: {} runs compared</h1>",
        runs.len()
    );
    out.push_str("<table><tr><th class=\"l\">run</th><th>produced rec/s</th><th>MB/s</th><th>ack p50</th><th>ack p99</th><th>ack p99.9</th><th>ack max</th><th>e2e p50</th><th>e2e p99</th><th>e2e max</th><th>errors</th></tr>");
    let cell = |l: &Option<LatencySummary>, f: fn(&LatencySummary) -> f64| {
        l.as_ref().map_or("-".to_string(), |l| ms(f(l)))
    };
    for r in runs {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.label),
            si(r.throughput.produce_records_per_s),
            r.throughput.produce_mb_per_s,
            cell(&r.ack, |l| l.p50_ms),
            cell(&r.ack, |l| l.p99_ms),
            cell(&r.ack, |l| l.p999_ms),
            cell(&r.ack, |l| l.max_ms),
            cell(&r.e2e, |l| l.p50_ms),
            cell(&r.e2e, |l| l.p99_ms),
            cell(&r.e2e, |l| l.max_ms),
            thousands(r.errors.values().sum())
        );
    }
    out.push_str("</table>");
    let mut curves = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if let Some(a) = &r.ack {
            curves.push(Series {
                label: format!("{} ack", r.label),
                color,
                dashed: false,
                points: curve_points(a),
            });
        }
        if let Some(e) = &r.e2e {
            curves.push(Series {
                label: format!("{} e2e", r.label),
                color,
                dashed: true,
                points: curve_points(e),
            });
        }
    }
    out.push_str("<h2>Latency by percentile</h2>");
    out.push_str(&percentile_chart(
        "latency by percentile (solid: produce ack, dashed: end-to-end)",
        &curves,
    ));
    let rates: Vec<Series> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            label: r.label.clone(),
            color: PALETTE[i % PALETTE.len()],
            dashed: false,
            points: r.intervals.iter().map(|x| (x.t_s, x.acked_per_s)).collect(),
        })
        .collect();
    out.push_str("<h2>Acknowledged records per second</h2>");
    out.push_str(&time_chart(
        "acknowledged/s over time",
        "records/s",
        &rates,
        &[],
        true,
    ));
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_is_logarithmic() {
        assert_eq!(percentile_x(0.0), 0.0);
        assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-9);
        assert!(percentile_x(100.0).is_infinite());
    }

    #[test]
    fn scales_and_ticks() {
        assert_eq!(nice_ceil(3.2), 5.0);
        assert_eq!(nice_ceil(0.07), 0.1);
        assert_eq!(nice_ceil(100.0), 100.0);
        let log = Scale::fit(0.2, 150.0, true);
        assert!(matches!(log, Scale::Log { lo, hi } if lo == 0.1 && hi == 1000.0));
        let labels: Vec<String> = log.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0.1", "1", "10", "100", "1k"]);
        let lin = Scale::fit(1.0, 4.0, true);
        assert!(matches!(lin, Scale::Linear { lo, hi } if lo == 0.0 && hi == 5.0));
        assert_eq!(lin.frac(2.5), 0.5);
    }

    #[test]
    fn charts_are_self_contained_svg() {
        let s = Series {
            label: "a <b>".into(),
            color: PALETTE[0],
            dashed: false,
            points: vec![(0.0, 1.0), (50.0, 2.0), (99.0, 5.0), (100.0, 9.0)],
        };
        let svg = percentile_chart("t", &[s]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("http://") || svg.matches("http://").count() == 1);
        // xmlns only
    }
}
