//! An unreachable broker stops the run at once with a message that names the address, and
//! exit code 2; a bad workload is refused the same way, naming the field.

use std::net::TcpListener;
use std::process::Command;

#[test]
fn unreachable_broker_is_a_clear_failure() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_rill-loadgen"))
        .args([
            "--bootstrap",
            &addr,
            "--duration",
            "1",
            "--connect-timeout-ms",
            "1000",
        ])
        .output()
        .expect("rill-loadgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("cannot reach any broker"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn bad_workloads_name_the_field() {
    let out = Command::new(env!("CARGO_BIN_EXE_rill-loadgen"))
        .args(["--record-bytes", "10", "--dry-run"])
        .output()
        .expect("rill-loadgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("record_bytes"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_rill-loadgen"))
        .args([
            "--group",
            "g1",
            "--heartbeat-interval-ms",
            "20000",
            "--dry-run",
        ])
        .output()
        .expect("rill-loadgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("group"), "{stderr}");
}
