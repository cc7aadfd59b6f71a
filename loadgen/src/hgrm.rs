//! The HdrHistogram percentile distribution text format (`.hgrm`), as Java's
//! `Histogram.outputPercentileDistribution` writes it and HdrHistogram's plotter and most
//! tooling read it: a `Value Percentile TotalCount 1/(1-Percentile)` table at 5 ticks per
//! half distance, then mean, standard deviation, max, total count and bucket geometry.
//! Values are written in milliseconds (recorded in microseconds, scaled by 1000).

use std::fmt::Write as _;

use crate::stats::Latency;

/// Recorded units (µs) per written unit (ms).
pub const OUTPUT_SCALE: f64 = 1000.0;
/// Percentile ticks per half distance to 100%.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Renders a histogram in the `.hgrm` format, values in milliseconds.
pub fn render(h: &Latency) -> String {
    let digits = h.sigfig() as usize;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / OUTPUT_SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let mean = if h.is_empty() {
        0.0
    } else {
        h.mean() / OUTPUT_SCALE
    };
    let stdev = if h.is_empty() {
        0.0
    } else {
        h.stdev() / OUTPUT_SCALE
    };
    let max = h.max() as f64 / OUTPUT_SCALE;
    // Java's sub-bucket count: the power of two above 2 * 10^digits.
    let sub_buckets = (2 * 10u64.pow(digits as u32)).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {sub_buckets:>12}]",
        h.buckets()
    );
    out
}

/// A parsed `.hgrm` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// `(value, percentile as a fraction, total count)` rows.
    pub rows: Vec<(f64, f64, u64)>,
    /// The footer's mean.
    pub mean: f64,
    /// The footer's max.
    pub max: f64,
    /// The footer's total count.
    pub total_count: u64,
}

impl Parsed {
    /// The smallest value at or above fraction `q` of the distribution, from the rows.
    pub fn value_at(&self, q: f64) -> Option<f64> {
        self.rows.iter().find(|r| r.1 >= q).map(|r| r.0)
    }
}

/// Parses the `.hgrm` format (as [`render`] writes it, or Java's HdrHistogram).
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut rows = Vec::new();
    let mut mean = None;
    let mut max = None;
    let mut total_count = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("Value") {
            continue;
        }
        if let Some(footer) = line.strip_prefix("#[").and_then(|l| l.strip_suffix(']')) {
            for field in footer.split(',') {
                let Some((k, v)) = field.split_once('=') else {
                    continue;
                };
                let v = v.trim();
                match k.trim() {
                    "Mean" => mean = v.parse().ok(),
                    "Max" => max = v.parse().ok(),
                    "Total count" => total_count = v.parse().ok(),
                    _ => {}
                }
            }
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&cols.len()) {
            return Err(format!("line {}: expected 3 or 4 columns: {line:?}", n + 1));
        }
        let bad = |what: &str| format!("line {}: bad {what}: {line:?}", n + 1);
        let value: f64 = cols[0].parse().map_err(|_| bad("value"))?;
        let q: f64 = cols[1].parse().map_err(|_| bad("percentile"))?;
        let count: u64 = cols[2].parse().map_err(|_| bad("total count"))?;
        if !(0.0..=1.0).contains(&q) {
            return Err(bad("percentile"));
        }
        if let Some(&(pv, pq, pc)) = rows.last() {
            if value < pv || q < pq || count < pc {
                return Err(format!("line {}: rows must not decrease: {line:?}", n + 1));
            }
        }
        rows.push((value, q, count));
    }
    Ok(Parsed {
        rows,
        mean: mean.ok_or("no Mean footer")?,
        max: max.ok_or("no Max footer")?,
        total_count: total_count.ok_or("no Total count footer")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::latency_histogram;

    #[test]
    fn renders_the_java_layout_and_parses_back() {
        let mut h = latency_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap(); // 1 us .. 10 ms
        }
        let text = render(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        assert_eq!(
            lines.next().unwrap(),
            "       0.001 0.000000000000          1           1.00"
        );
        assert!(text.contains("#[Max     =       10.007, Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
        let last_row = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(last_row.split_whitespace().count(), 3, "{last_row}");
        let p = parse(&text).unwrap();
        assert_eq!(p.total_count, 10_000);
        assert_eq!(p.rows.last().unwrap().2, 10_000);
        assert!((p.mean - 5.0).abs() < 0.01);
        let median = p.value_at(0.5).unwrap();
        assert!((median - 5.0).abs() < 0.01, "{median}");
    }

    #[test]
    fn empty_histograms_render_and_parse() {
        let p = parse(&render(&latency_histogram())).unwrap();
        assert!(p.rows.is_empty());
        assert_eq!(p.total_count, 0);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse("hello world").is_err());
        assert!(parse(
            "1.0 0.5 10\n0.5 0.6 11\n#[Mean = 1, StdDeviation = 0]\n#[Max = 1, Total count = 11]"
        )
        .is_err());
    }
}
