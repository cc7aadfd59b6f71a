//! kill -9 during appends on the real io_uring/O_DIRECT backend.
//!
//! The parent runs this same binary as a child (`child DIR SEED`) that
//! appends deterministic batches, syncs, and prints the durable offset after
//! every sync. The parent kills it with SIGKILL after a random delay, reopens
//! the log and checks that every batch reported durable is there, intact
//! and in order, and that nothing corrupt is served. The directory carries
//! over between rounds, so recovery also runs on logs that were recovered
//! before. `RILL_CRASH_ROUNDS` sets the number of rounds (default 30).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use rill_storage::batch::{self, build, CheckedBatch};
use rill_storage::{DmaBackend, FileBudget, LogConfig, PartitionLog};

const RECORDS_PER_BATCH: i64 = 4;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 * 1024,
        index_interval_bytes: 4096,
        // Small, so kills land before, between and after the writes of the
        // index files and the recovery point, and reopens start from it.
        recovery_point_interval_bytes: 16 * 1024,
        ..LogConfig::default()
    }
}

/// The batch that must sit at batch number `n`: its size varies so writes
/// straddle page boundaries in every way.
fn expected_batch(n: i64) -> Vec<u8> {
    let size = 100 + ((n * 7919) % 9000) as usize;
    let value = format!("batch-{n}-").repeat(size / 10 + 1);
    let recs: Vec<build::Rec<'_>> = (0..RECORDS_PER_BATCH)
        .map(|i| build::Rec {
            key: Some(b"k"),
            value: &value.as_bytes()[..size / RECORDS_PER_BATCH as usize + i as usize],
            timestamp_ms: 1_000 + n,
        })
        .collect();
    build::batch(&recs)
}

fn run_local<T>(f: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("start a glommio executor (io_uring available? memlock limit?)")
        .run(f)
}

fn child(dir: &Path, seed: u64) {
    run_local(async move {
        let log = PartitionLog::open(DmaBackend::new(), dir, config(), FileBudget::new(64))
            .await
            .expect("child opens log");
        let mut n = log.log_end_offset() / RECORDS_PER_BATCH;
        let mut rng = seed | 1;
        loop {
            // 1..8 appends per sync: exercises group commit and partial pages
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for _ in 0..1 + rng % 8 {
                let b = expected_batch(n);
                let b = CheckedBatch::check(Bytes::from(b)).expect("valid batch");
                log.append(b, 0).await.expect("append");
                n += 1;
            }
            let durable = log.sync().await.expect("sync");
            println!("durable {durable}");
        }
    });
}

/// Reopens, checks, and returns (log end offset, bytes the recovery scanned).
fn verify(dir: &Path, acked: i64) -> (i64, u64) {
    let out = run_local(async move {
        let log = PartitionLog::open(DmaBackend::new(), dir, config(), FileBudget::new(64))
            .await
            .expect("reopen after kill -9");
        let leo = log.log_end_offset();
        let scanned = log.recovery_scanned_bytes();
        assert!(
            leo >= acked,
            "lost acknowledged data: log end {leo} < durable-acked {acked}"
        );
        assert_eq!(
            leo % RECORDS_PER_BATCH,
            0,
            "log end {leo} not at a batch boundary"
        );
        let mut at = log.log_start_offset();
        while at < leo {
            let r = log.read(at, 1 << 20).await.expect("read");
            assert!(!r.batches.is_empty(), "no data at {at} below log end {leo}");
            for b in &r.batches {
                let h = batch::validate(b).expect("served batch passes CRC");
                assert_eq!(h.base_offset, at, "offsets not contiguous");
                let mut want = expected_batch(at / RECORDS_PER_BATCH);
                batch::set_base_offset(&mut want, at);
                batch::set_partition_leader_epoch(&mut want, 0);
                assert_eq!(&b[..], &want[..], "batch at {at} has wrong content");
                at = h.last_offset() + 1;
            }
        }
        log.close().await.expect("close");
        (leo, scanned)
    });
    // Every closed segment, and after the close the active one too, is
    // exactly its batches: no preallocated or padded tail left behind.
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for path in &logs {
        let bytes = std::fs::read(path).expect("read segment");
        let mut walker = batch::BatchWalker::new(&bytes, true);
        for _ in walker.by_ref() {}
        assert_eq!(
            walker.position(),
            bytes.len(),
            "{} is not exactly whole batches",
            path.display()
        );
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "child" {
        child(Path::new(&args[2]), args[3].parse().expect("seed"));
        return;
    }
    // libtest-style flags (e.g. --nocapture, filters) are accepted and ignored.
    let rounds: u64 = std::env::var("RILL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let tmp = tempfile::Builder::new()
        .prefix("rill-crash-")
        .tempdir_in(
            std::env::var("RILL_TEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string()),
        )
        .expect("temp dir");
    let dir: PathBuf = tmp.path().join("topic-0");
    let exe = std::env::current_exe().expect("own path");
    let mut passed = 0;
    let mut partial_scans = 0;
    let mut last_leo = 0;
    for seed in 1..=rounds {
        let mut child = Command::new(&exe)
            .args([
                "child",
                dir.to_str().expect("utf-8 path"),
                &seed.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(v) = line.strip_prefix("durable ") {
                    let _ = tx.send(v.parse::<i64>().expect("offset"));
                }
            }
        });
        // Wait for the child to make progress, then kill it at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child never synced");
        let delay_ms = 5 + (seed * 7919) % 120;
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("SIGKILL child");
        child.wait().expect("reap child");
        reader.join().expect("reader thread");
        let acked = rx.try_iter().last().unwrap_or(first).max(first);
        let (leo, scanned) = verify(&dir, acked);
        let segment_bytes = config().segment_bytes;
        if scanned < segment_bytes / 2 {
            partial_scans += 1;
        }
        assert!(
            leo >= last_leo,
            "round {seed}: log shrank from {last_leo} to {leo}"
        );
        last_leo = leo;
        eprintln!("round {seed}: killed after {delay_ms} ms, acked {acked}, recovered {leo}, scanned {scanned} bytes");
        passed += 1;
    }
    // Not a guarantee per round (a kill can land early in a segment), but
    // over many rounds some reopens must have started from a recovery point.
    assert!(
        rounds < 10 || partial_scans > 0,
        "no reopen started from a recovery point"
    );
    println!(
        "crash_kill9: {passed} passed, 0 failed ({partial_scans} reopens from a recovery point)"
    );
}
