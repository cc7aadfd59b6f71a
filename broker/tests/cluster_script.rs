//! `deploy/local-cluster.sh` (how a person tries a cluster) starts three brokers on
//! 127.0.0.21-23 that form one cluster (`rill cluster info` from any of them lists all
//! three and one controller), `add 4` starts a fourth that joins as a learner (then all
//! four are listed), `status` sees them, and `stop` stops exactly them. The example
//! configs in `deploy/cluster/` are valid.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, run_bounded, test_base_dir};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn script(args: &[&str]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("deploy/local-cluster.sh")).args(args);
    let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "local-cluster.sh {args:?}: {text}");
    text
}

#[test]
fn local_cluster_script_starts_a_cluster_and_stops_it() {
    for i in 1..=3 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
        cmd.args(["broker", "--print-config", "--config"])
            .arg(repo().join(format!("deploy/cluster/broker-{i}.toml")));
        let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT, None);
        assert!(
            out.status.success(),
            "deploy/cluster/broker-{i}.toml: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("rill-local-cluster-")
        .tempdir_in(test_base_dir())
        .expect("test dir");
    let d = dir.path().to_str().expect("utf-8 path").to_string();
    let port = free_port().to_string();
    let base = ["--dir", d.as_str()];
    // `start` and `add` take the same placement flags.
    let placed = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--dir",
            &d,
            "--binary",
            env!("CARGO_BIN_EXE_rill"),
            "--port",
            &port,
            "--first-host",
            "21",
        ]);
        script(&all)
    };
    let started = placed(&["start"]);
    assert!(
        started.contains("cluster of 3 brokers started"),
        "{started}"
    );
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
            cmd.args(["cluster", "info", "--output", "json", "--bootstrap"])
                .arg(format!("127.0.0.23:{port}"));
            let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT, None);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if v["brokers"].as_array().map(|b| b.len()) == Some(n)
                && v["controller"].as_i64() >= Some(1)
            {
                break v;
            }
            if Instant::now() > deadline {
                let _ = script(&["stop", "--dir", &d]);
                panic!(
                    "no {n}-broker cluster within 20 s; last answer {v}, stderr {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let info = wait_for(3);
    eprintln!("cluster info: {info}");
    // A fourth broker joins the running cluster as a learner.
    let added = placed(&["add", "4"]);
    assert!(added.contains("broker 4 started"), "{added}");
    let info = wait_for(4);
    eprintln!("cluster info after add: {info}");
    let status = script(&["status", "--dir", &d]);
    assert_eq!(status.matches(": running").count(), 4, "{status}");
    let pids: Vec<String> = (1..=4)
        .map(|i| std::fs::read_to_string(dir.path().join(format!("broker-{i}.pid"))).unwrap())
        .collect();
    let stopped = script(&["stop", base[0], base[1]]);
    assert!(stopped.contains("stopped 4 broker(s)"), "{stopped}");
    for pid in pids {
        let alive = Path::new(&format!("/proc/{}", pid.trim())).exists();
        assert!(!alive, "broker pid {} still runs after stop", pid.trim());
    }
}
