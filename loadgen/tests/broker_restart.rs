//! A broker killed (`kill -9`) mid-run and restarted on the same port and data directory:
//! producers and consumers reconnect, the run finishes, the reconnects are reported, and the
//! counts add up (every acknowledged record consumed; records lost in flight counted as
//! failed and in doubt, never silently). A broker that stays down past
//! `reconnect_timeout_ms` fails the run with a message that says so.

mod common;

use std::time::{Duration, Instant};

use common::{describe, rill_binary, scratch_dir, spawn_loadgen, wait_loadgen, BrokerProcess};
use rill_loadgen::report::Summary;

#[test]
fn a_broker_restart_mid_run_is_survived_and_counted() {
    let Some(bin) = rill_binary("broker restart test") else {
        return;
    };
    let dir = scratch_dir();
    let mut broker = BrokerProcess::start_fresh(&bin, dir.path());
    let addr = broker.addr.clone();
    let report = dir.path().join("restart");
    let child = spawn_loadgen(&[
        "--bootstrap",
        &addr,
        "--topic",
        "loadgen-restart",
        "--create-topic",
        "--partitions",
        "3",
        "--record-bytes",
        "200",
        "--rate",
        "2000",
        "--duration",
        "7",
        "--warmup",
        "0",
        "--acks",
        "all",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--interval-ms",
        "500",
        "--reconnect-backoff-ms",
        "50",
        "--reconnect-backoff-max-ms",
        "500",
        "--reconnect-timeout-ms",
        "20000",
        "--drain-timeout",
        "20",
        "--report-dir",
        report.to_str().expect("utf-8 path"),
    ]);
    // Let the run get going, then kill the broker (the PID this test started) and bring
    // it back on the same address with the same data.
    std::thread::sleep(Duration::from_millis(2500));
    let killed_at = Instant::now();
    broker.kill9();
    std::thread::sleep(Duration::from_millis(700));
    let broker = BrokerProcess::start(&bin, dir.path(), &addr);
    eprintln!("broker back after {:?}", killed_at.elapsed());
    let out = wait_loadgen(child);
    let text = describe(&out, &broker);
    // Connections were lost: errors were counted, so the run is not clean (exit 1), but it
    // ran to the end (not 2).
    assert_eq!(out.status.code(), Some(1), "{text}");
    let s = Summary::load(&report).expect("summary.json parses");
    let e = &s.events;
    // Two producers and two consumers each had a connection to the broker.
    assert!(e.connections_lost >= 2, "{e:?}\n{text}");
    assert_eq!(e.reconnects, e.connections_lost, "{e:?}\n{text}");
    assert!(
        s.errors.contains_key("produce connection lost"),
        "{:?}",
        s.errors
    );
    assert!(
        s.errors.contains_key("fetch connection lost"),
        "{:?}",
        s.errors
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(stdout.contains("reconnected"), "{text}");
    let c = s.counts;
    // Every record is accounted for: acknowledged or failed (counted by cause).
    assert_eq!(c.generated_records, 14_000, "{text}");
    assert_eq!(c.generated_records, c.acked_records + c.failed_records);
    let failed_by_cause: u64 = s
        .errors
        .iter()
        .filter(|(k, _)| k.starts_with("produce "))
        .filter(|(k, _)| k.as_str() != "produce connection lost")
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(failed_by_cause, c.failed_records, "{:?}", s.errors);
    // Every acknowledged record was consumed; beyond that at most the ones in doubt.
    assert!(c.consumed_records >= c.acked_records, "{text}");
    assert!(
        c.consumed_records <= c.acked_records + c.in_doubt_records,
        "{text}"
    );
    assert!(
        !s.problems.iter().any(|p| p.contains("consumed")),
        "{:?}",
        s.problems
    );
    // Most of the run was acknowledged, including after the restart.
    assert!(c.acked_records > 10_000, "{text}");
    let acked_late: f64 = s
        .intervals
        .iter()
        .filter(|r| r.t_s > 5.0)
        .map(|r| r.acked_per_s)
        .sum();
    assert!(
        acked_late > 0.0,
        "nothing acknowledged after the restart\n{text}"
    );
}

#[test]
fn a_broker_that_stays_down_fails_the_run_at_the_reconnect_deadline() {
    let Some(bin) = rill_binary("broker down test") else {
        return;
    };
    let dir = scratch_dir();
    let mut broker = BrokerProcess::start_fresh(&bin, dir.path());
    let report = dir.path().join("down");
    let child = spawn_loadgen(&[
        "--bootstrap",
        &broker.addr,
        "--topic",
        "loadgen-down",
        "--create-topic",
        "--partitions",
        "2",
        "--record-bytes",
        "100",
        "--rate",
        "1000",
        "--duration",
        "30",
        "--warmup",
        "0",
        "--consumers",
        "1",
        "--reconnect-backoff-ms",
        "50",
        "--reconnect-backoff-max-ms",
        "300",
        "--reconnect-timeout-ms",
        "2000",
        "--drain-timeout",
        "5",
        "--report-dir",
        report.to_str().expect("utf-8 path"),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    broker.kill9();
    let out = wait_loadgen(child);
    let took = killed_at.elapsed();
    let text = describe(&out, &broker);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Well before the 30 s the run was asked for: the deadline (2 s) plus the drain.
    assert!(took < Duration::from_secs(12), "took {took:?}\n{text}");
    let s = Summary::load(&report).expect("summary.json parses");
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("reconnect_timeout_ms") && p.contains(&broker.addr)),
        "{:?}\n{text}",
        s.problems
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        stdout.contains("PROBLEM") && stdout.contains("unreachable"),
        "{text}"
    );
    assert!(s.events.reconnect_attempts_failed > 0, "{:?}", s.events);
    let c = s.counts;
    assert_eq!(c.generated_records, c.acked_records + c.failed_records);
    assert!(
        s.errors
            .contains_key("produce abandoned: broker unreachable")
            || c.failed_records == c.in_doubt_records,
        "{:?}",
        s.errors
    );
}
