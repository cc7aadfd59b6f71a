//! Helpers for the tests that run `rill-loadgen` against the real `rill` broker.
//!
//! The broker binary is found at `$RILL_BIN` or `target/debug/rill` (built by
//! `cargo build -p rill-broker --bin rill`, and by any workspace test run). Without it a
//! test says so loudly and skips, unless `CI` is set, where a missing broker is a failure.
//! Each broker runs on a fresh loopback port in its own scratch directory; a test only ever
//! kills the broker processes it started (by their PID).

#![allow(dead_code)] // each test file uses its own subset

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest the broker may take to accept connections.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest one loadgen invocation may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("loadgen/ sits in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"))
}

/// The broker binary, or `None` after saying loudly that the test is skipped (a failure
/// under `CI`).
pub fn rill_binary(test: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RILL_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = target_dir().join("debug").join("rill");
    if p.exists() {
        return Some(p);
    }
    let msg = "the rill broker binary is missing (build it with `cargo build -p rill-broker --bin rill` or set RILL_BIN)";
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("\n*** SKIPPED {test}: {msg} ***\n");
    None
}

/// A scratch directory on a real disk (the broker's storage uses O_DIRECT, which tmpfs
/// refuses): `$RILL_TEST_DIR`, else under the target directory.
pub fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var("RILL_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("loadgen-test-scratch"));
    std::fs::create_dir_all(&base).expect("scratch base can be created");
    tempfile::tempdir_in(base).expect("scratch dir")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A broker process this test started; killed (by PID) when dropped.
pub struct BrokerProcess {
    pub child: Child,
    pub log: PathBuf,
    pub addr: String,
}

impl BrokerProcess {
    /// Starts `bin` on `addr` with its data in `dir/data` (appending to `dir/broker.log`)
    /// and waits until it accepts connections.
    pub fn start(bin: &Path, dir: &Path, addr: &str) -> BrokerProcess {
        let log = dir.join("broker.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("broker log file");
        let child = Command::new(bin)
            .args(["broker", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen", addr, "--shards", "1"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("rill starts");
        let mut broker = BrokerProcess {
            child,
            log,
            addr: addr.to_string(),
        };
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!(
                    "broker exited ({status}) before listening on {addr}; log:\n{}",
                    broker.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "broker did not listen on {addr} within {BOOT_TIMEOUT:?}; log:\n{}",
                broker.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// Starts a broker on a fresh port.
    pub fn start_fresh(bin: &Path, dir: &Path) -> BrokerProcess {
        let addr = format!("127.0.0.1:{}", free_port());
        BrokerProcess::start(bin, dir, &addr)
    }

    /// `kill -9` of this broker's PID, and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the loadgen binary with `args`, output piped.
pub fn spawn_loadgen(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rill-loadgen"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill-loadgen starts")
}

/// Waits for a loadgen started by [`spawn_loadgen`], killing it if it outlives
/// [`RUN_TIMEOUT`].
pub fn wait_loadgen(mut child: Child) -> Output {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if child.try_wait().expect("wait on rill-loadgen").is_some() {
            return child.wait_with_output().expect("rill-loadgen output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("rill-loadgen output");
            panic!(
                "rill-loadgen ran longer than {RUN_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the loadgen binary with `args` to the end (bounded by [`RUN_TIMEOUT`]).
pub fn loadgen(args: &[&str]) -> Output {
    wait_loadgen(spawn_loadgen(args))
}

/// Output for assertion messages.
pub fn describe(out: &Output, broker: &BrokerProcess) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}\nbroker log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        broker.log_tail()
    )
}
