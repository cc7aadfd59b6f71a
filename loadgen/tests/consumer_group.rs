//! Three consumers in one consumer group on a six-partition topic, against the real `rill`
//! broker: they join (classic protocol, range assignor), share the partitions, and between
//! them read every acknowledged record exactly once; the summary names the group, its
//! rebalances and the time spent in them, and the broker has the group's commits.

mod common;

use common::{describe, loadgen, rill_binary, scratch_dir, BrokerProcess};
use rill_loadgen::report::Summary;

#[test]
fn three_consumers_in_a_group_read_everything_exactly_once() {
    let Some(bin) = rill_binary("consumer group e2e test") else {
        return;
    };
    let dir = scratch_dir();
    let broker = BrokerProcess::start_fresh(&bin, dir.path());
    let report = dir.path().join("group");
    let out = loadgen(&[
        "--bootstrap",
        &broker.addr,
        "--topic",
        "loadgen-group",
        "--create-topic",
        "--partitions",
        "6",
        "--record-bytes",
        "150",
        "--key-distribution",
        "uniform",
        "--records",
        "24000",
        "--rate",
        "6000",
        "--warmup",
        "0.5",
        "--acks",
        "all",
        "--producers",
        "2",
        "--consumers",
        "3",
        "--group",
        "loadgen-e2e-group",
        "--heartbeat-interval-ms",
        "300",
        "--commit-interval-ms",
        "500",
        "--session-timeout-ms",
        "6000",
        "--cores",
        "2",
        "--interval-ms",
        "500",
        "--drain-timeout",
        "20",
        "--report-dir",
        report.to_str().expect("utf-8 path"),
    ]);
    let text = describe(&out, &broker);
    assert!(out.status.success(), "{text}");
    let s = Summary::load(&report).expect("summary.json parses");
    assert!(s.ok(), "problems {:?}\n{text}", s.problems);
    assert!(s.errors.is_empty(), "errors {:?}\n{text}", s.errors);
    let c = s.counts;
    assert_eq!(c.generated_records, 24_000);
    assert_eq!(c.acked_records, 24_000);
    // Every record read once: none missed, none twice (consumed counts reads of this
    // run's records; a duplicate would push it above acknowledged).
    assert_eq!(c.consumed_records, 24_000, "{text}");
    assert_eq!(c.consumed_bytes, c.acked_bytes);
    assert_eq!(c.foreign_records, 0);
    let e = &s.events;
    assert_eq!(s.workload.group.as_deref(), Some("loadgen-e2e-group"));
    // Each of the three members joined at least once, and every join is in a generation.
    assert!(e.group_joins >= 3, "{e:?}");
    assert!(!e.group_generations.is_empty(), "{e:?}");
    assert!(e.group_joins as usize >= e.group_generations.len(), "{e:?}");
    assert!(
        e.rebalance_ms_total > 0.0 && e.rebalance_ms_max <= e.rebalance_ms_total,
        "{e:?}"
    );
    assert!(e.group_commits > 0, "{e:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("group        loadgen-e2e-group: 3 member(s)")
            && stdout.contains("rebalance(s)"),
        "{text}"
    );
    eprintln!("{stdout}");

    // The committed offsets are the log ends: a second run in the same group starts there
    // and reads only its own records, none of the first run's.
    let report_b = dir.path().join("group-b");
    let out = loadgen(&[
        "--bootstrap",
        &broker.addr,
        "--topic",
        "loadgen-group",
        "--records",
        "3000",
        "--rate",
        "3000",
        "--warmup",
        "0",
        "--consumers",
        "2",
        "--group",
        "loadgen-e2e-group",
        "--heartbeat-interval-ms",
        "300",
        "--report-dir",
        report_b.to_str().expect("utf-8 path"),
    ]);
    let text = describe(&out, &broker);
    assert!(out.status.success(), "{text}");
    let b = Summary::load(&report_b).expect("second summary parses");
    assert_eq!(b.counts.consumed_records, 3000, "{text}");
    assert_eq!(b.counts.foreign_records, 0, "{text}");
}
