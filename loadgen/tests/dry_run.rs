//! `--dry-run` generates and encodes produce requests without a broker and reports the
//! tool's own ceiling in records/s and MB/s.

use std::process::Command;

use rill_loadgen::report::Summary;

#[test]
fn dry_run_reports_its_own_ceiling_without_a_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("dry");
    let out = Command::new(env!("CARGO_BIN_EXE_rill-loadgen"))
        // Nothing listens on port 1: a dry run must not try.
        .args([
            "--bootstrap",
            "127.0.0.1:1",
            "--dry-run",
            "--duration",
            "0.5",
            "--warmup",
            "0",
        ])
        .args([
            "--record-bytes",
            "100",
            "--interval-ms",
            "100",
            "--report-dir",
        ])
        .arg(&report)
        .output()
        .expect("rill-loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("DRY RUN"), "{stdout}");
    let s = Summary::load(&report).expect("summary.json");
    assert!(s.setup.dry_run);
    assert!(s.ack.is_none() && s.e2e.is_none());
    assert!(s.counts.sent_records > 0);
    assert_eq!(s.counts.sent_records, s.counts.acked_records);
    assert_eq!(s.counts.sent_bytes, s.counts.sent_records * 100);
    assert!(s.throughput.produce_records_per_s > 0.0);
    assert!(s.throughput.wire_mb_per_s > s.throughput.produce_mb_per_s);
}
