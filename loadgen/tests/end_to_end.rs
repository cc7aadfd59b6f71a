//! `rill-loadgen` against the real `rill` broker: a short, bounded run with producers and
//! consumers whose report files parse and whose record counts add up (produced ==
//! acknowledged == consumed, every measured latency in the histograms).
//!
//! The broker binary is found at `$RILL_BIN` or `target/debug/rill` (built by
//! `cargo build -p rill-broker`, and by any workspace test run). Without it the test says
//! so loudly and skips, unless `CI` is set, where a missing broker is a failure.

mod common;

use common::{loadgen, rill_binary, scratch_dir, BrokerProcess};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use rill_loadgen::hgrm;
use rill_loadgen::report::{Summary, ACK_HGRM_FILE, E2E_HGRM_FILE, HLOG_FILE, HTML_FILE};

#[test]
fn a_short_run_against_rill_adds_up_and_its_reports_parse() {
    let Some(bin) = rill_binary("end-to-end loadgen test") else {
        return;
    };
    let dir = scratch_dir();
    let broker = BrokerProcess::start_fresh(&bin, dir.path());
    let addr = broker.addr.clone();
    let report = dir.path().join("run-a");
    let report_s = report.to_str().expect("utf-8 path");
    // 20,000 records at 10,000/s from 2 producers, read by 2 consumers; the first 0.5 s
    // (5,000 records) are warm-up.
    let out = loadgen(&[
        "--bootstrap",
        &addr,
        "--topic",
        "loadgen-e2e",
        "--create-topic",
        "--partitions",
        "3",
        "--records",
        "20000",
        "--rate",
        "10000",
        "--warmup",
        "0.5",
        "--interval-ms",
        "250",
        "--record-bytes",
        "uniform:100-300",
        "--key-distribution",
        "zipf",
        "--acks",
        "all",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--cores",
        "1",
        "--drain-timeout",
        "20",
        "--report-dir",
        report_s,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rill-loadgen failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}\nbroker log:\n{}",
        out.status,
        broker.log_tail()
    );
    assert!(stdout.contains("p99.99"), "final table missing:\n{stdout}");
    assert!(stderr.contains("measure"), "no progress lines:\n{stderr}");

    let s = Summary::load(&report).expect("summary.json parses");
    assert!(s.ok(), "problems: {:?}", s.problems);
    assert!(s.errors.is_empty(), "errors: {:?}", s.errors);
    let c = s.counts;
    assert_eq!(c.generated_records, 20_000);
    assert_eq!(c.sent_records, 20_000);
    assert_eq!(c.acked_records, 20_000);
    assert_eq!(c.failed_records, 0);
    assert_eq!(c.consumed_records, 20_000);
    assert_eq!(c.acked_bytes, c.consumed_bytes);
    assert_eq!(s.setup.partitions, 3);
    assert!(s.setup.topic_created);
    // Records scheduled at or after 0.5 s are the measured ones: exactly 15,000.
    let ack = s.ack.as_ref().expect("ack latency measured");
    let e2e = s.e2e.as_ref().expect("end-to-end latency measured");
    assert_eq!(ack.count, 15_000);
    assert_eq!(e2e.count, 15_000);
    assert!(ack.p50_ms > 0.0 && ack.p50_ms <= ack.p99_ms && ack.p99_ms <= ack.max_ms);
    assert!(s.throughput.produce_records_per_s > 1_000.0);
    // The time series covers every acknowledged record.
    let from_intervals: f64 = s
        .intervals
        .iter()
        .map(|r| r.acked_per_s * s.setup.interval_s)
        .sum();
    assert!(
        (from_intervals - 20_000.0).abs() < 0.5,
        "intervals add up to {from_intervals}"
    );

    for (file, summary) in [(ACK_HGRM_FILE, ack), (E2E_HGRM_FILE, e2e)] {
        let text = std::fs::read_to_string(report.join(file)).expect("hgrm file");
        let h = hgrm::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(h.total_count, summary.count, "{file}");
        assert_eq!(h.rows.last().map(|r| r.2), Some(summary.count), "{file}");
        assert!(
            (h.max - summary.max_ms).abs() < 0.01,
            "{file}: max {} vs {}",
            h.max,
            summary.max_ms
        );
    }
    // The interval log parses as a standard HdrHistogram log and covers every interval that
    // saw an acknowledgement.
    let hlog = std::fs::read(report.join(HLOG_FILE)).expect("intervals.hlog");
    let mut ack_intervals = 0;
    for entry in IntervalLogIterator::new(&hlog) {
        if let LogEntry::Interval(h) = entry.expect("interval log entry parses") {
            if h.tag().map(|t| t.as_str()) == Some("produce-ack") {
                ack_intervals += 1;
            }
        }
    }
    let acked_intervals = s.intervals.iter().filter(|r| r.acked_per_s > 0.0).count();
    assert_eq!(ack_intervals, acked_intervals);
    let html = std::fs::read_to_string(report.join(HTML_FILE)).expect("report.html");
    assert!(html.contains("<svg") && html.contains("<polyline"));
    assert!(
        !html.contains("<script"),
        "report.html must be self-contained"
    );
    assert!(!html.contains("https://") && !html.contains("src=\"http"));

    // A second, fixed-count run with acks=1, then both compared.
    let report_b = dir.path().join("run-b");
    let out = loadgen(&[
        "--bootstrap",
        &addr,
        "--topic",
        "loadgen-e2e",
        "--records",
        "5000",
        "--rate",
        "max",
        "--warmup",
        "0",
        "--acks",
        "1",
        "--consumers",
        "1",
        "--report-dir",
        report_b.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = Summary::load(&report_b).expect("second summary parses");
    assert_eq!(b.counts.acked_records, 5_000);
    assert_eq!(b.counts.consumed_records, 5_000);
    // The first run's records are in the topic too; the consumer ignores none of them
    // because it starts at the end of the log.
    assert_eq!(b.counts.foreign_records, 0);
    let plot = dir.path().join("compare.html");
    let out = loadgen(&[
        "compare",
        report_s,
        report_b.to_str().expect("utf-8 path"),
        "--out",
        plot.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("run-a") && table.contains("run-b"),
        "{table}"
    );
    let page = std::fs::read_to_string(&plot).expect("compare.html");
    assert!(page.contains("run-a ack") && page.contains("run-b e2e"));
    drop(broker);
}
