//! A short, bounded saturation search against the real `rill` broker: a closed-loop probe,
//! then at most four fixed-rate steps; the summary lists every step with its achieved rate
//! and p99, names the highest sustained rate, and each step left its own report.

mod common;

use common::{describe, loadgen, rill_binary, scratch_dir, BrokerProcess};
use rill_loadgen::report::Summary;
use rill_loadgen::saturation::Verdict;

#[test]
fn a_short_saturation_search_reports_its_steps() {
    let Some(bin) = rill_binary("saturation search e2e test") else {
        return;
    };
    let dir = scratch_dir();
    let broker = BrokerProcess::start_fresh(&bin, dir.path());
    let report = dir.path().join("sat");
    let out = loadgen(&[
        "--bootstrap",
        &broker.addr,
        "--topic",
        "loadgen-saturation",
        "--create-topic",
        "--partitions",
        "2",
        "--record-bytes",
        "200",
        "--acks",
        "1",
        "--consumers",
        "0",
        "--find-saturation",
        "--duration",
        "1",
        "--warmup",
        "0.4",
        "--interval-ms",
        "200",
        "--drain-timeout",
        "5",
        "--saturation-steps-max",
        "4",
        // Generous, so the debug build's and a shared machine's noise does not decide.
        "--saturation-p99-ms",
        "500",
        "--saturation-tolerance",
        "0.1",
        "--report-dir",
        report.to_str().expect("utf-8 path"),
    ]);
    let text = describe(&out, &broker);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{text}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("saturation"),
        "no saturation table:\n{text}"
    );
    let s = Summary::load(&report).expect("summary.json parses");
    let sat = s.saturation.as_ref().expect("the summary has the search");
    let probe = sat.probe_records_per_s.expect("rate max runs a probe");
    assert!(probe > 0.0, "{sat:?}");
    assert!(!sat.steps.is_empty() && sat.steps.len() <= 4, "{sat:?}");
    // The first step runs at half the probe's rate.
    let first = &sat.steps[0];
    assert!(
        (first.target_records_per_s - probe * 0.5).abs() < 1.0,
        "{sat:?}"
    );
    for (i, st) in sat.steps.iter().enumerate() {
        assert_eq!(st.step, i + 1);
        assert!(st.achieved_records_per_s > 0.0, "{st:?}");
        assert!(st.ack_p99_ms.is_some_and(|p| p > 0.0), "{st:?}");
        // Each verdict follows the rule from the step's own figures.
        let short = st.achieved_records_per_s < 0.9 * st.target_records_per_s;
        let slow = st.ack_p99_ms.is_some_and(|p| p > 500.0);
        let expected = if st.errors > 0 {
            Verdict::Errors
        } else if short {
            Verdict::ShortOfTarget
        } else if slow {
            Verdict::LatencyAboveBound
        } else {
            Verdict::Sustained
        };
        assert_eq!(st.verdict, expected, "{st:?}");
        let step_dir = report.join("steps").join(format!(
            "{:02}-{}",
            st.step,
            st.target_records_per_s.round() as u64
        ));
        assert!(step_dir.join("summary.json").exists(), "{step_dir:?}");
    }
    assert!(report.join("steps/00-probe/summary.json").exists());
    // Half the closed-loop max is sustained on any machine: the answer exists, it is the
    // highest passing step, and the report's figures are that step's.
    let best = sat
        .sustained_records_per_s
        .expect("half the probe's rate is sustained");
    let highest_pass = sat
        .steps
        .iter()
        .filter(|s| s.verdict == Verdict::Sustained)
        .map(|s| s.target_records_per_s)
        .fold(0.0, f64::max);
    assert_eq!(best, highest_pass);
    assert_eq!(s.setup.target_records_per_s, Some(best), "{:?}", s.setup);
    assert!(s.ok(), "problems: {:?}", s.problems);
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("Saturation search"));
}
