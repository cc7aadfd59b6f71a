//! Partition-log benchmark: the workloads of `benches/storage.sh`.
//!
//! Each workload prints one line `RESULT name value unit` that the script
//! turns into ratios against fio figures measured in the same run.
//!
//! usage: storage_bench WORKLOAD DIR
//!   append-1m          1 GiB of 1 MiB batches into one partition, then sync
//!   append-16k-1000p   1 GiB of 16 KiB batches round-robin over 1,000 partitions
//!   sync-16k-8p        8 partitions, each appending 16 KiB and syncing every append
//!   read-cold          sequential read of the 1 GiB partition written by `fill`
//!   fill               write 1 GiB in 128 MiB segments, sync, then SIGKILL itself
//!   reopen             time to open the partition left by `fill` (crash recovery)
//!   lag                append and sync 1 MiB batches to the `fill` partition until its
//!                      recovery point is almost an interval behind, then SIGKILL itself
//!                      (the next `reopen` is the worst case of an all-synced log)
//!   idle-memory        heap per idle open partition (1,000 partitions)
//!   compact            512 MiB of keyed records (1 KiB values, 16 a batch, 100,000 keys)
//!                      in 64 MiB segments, then one compaction pass over the closed ones

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_benches::{live_heap_bytes, CountingAlloc};
use rill_storage::batch::{build, CheckedBatch};
use rill_storage::{AppendInfo, DmaBackend, FileBudget, FlushPolicy, LogConfig, PartitionLog};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const GIB: u64 = 1 << 30;
/// Per-partition unsubmitted bytes that make the 1,000-partition flusher
/// write, and the lower bar it uses while the shard's write budget is less
/// than half used (the device would otherwise idle, e.g. while every
/// partition fills up to the first bar at the same time).
const FLUSH_MIN_BYTES: u64 = 256 << 10;
const FLUSH_MIN_BYTES_IDLE: u64 = 128 << 10;
/// 16 KiB appends between two reactor turns in the 1,000-partition workload:
/// 1 MiB, one full produce request's worth. A shard takes a turn to receive
/// every request; this loop never blocks, and without turns queued writes
/// would not reach the kernel nor completions be reaped.
const APPENDS_PER_REACTOR_TURN: usize = 64;

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(1))
        .name("bench")
        .io_memory(rill_storage::backend::dma::SHARD_IO_MEMORY_BYTES)
        .make()
        .expect("glommio executor (needs io_uring)")
        .run(f)
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        batch_bytes_max: 2 << 20,
        write_buffer_bytes_max: 8 << 20,
        write_chunk_bytes: 1 << 20,
        read_ahead_bytes: 8 << 20,
        flush: FlushPolicy::Threshold {
            messages: u64::MAX,
            bytes: u64::MAX,
            interval_ms: u64::MAX,
        },
        ..LogConfig::default()
    }
}

/// The 1 GiB partition of fill / reopen / read-cold: 128 MiB segments.
fn recovery_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 128 << 20,
        ..cfg()
    }
}

/// What the broker does with every produced batch: check it once, then
/// append. The check stays inside the timed loops, so the figures still count
/// the CRC-32C that `append` itself computed before it took a `CheckedBatch`.
async fn append(log: &PartitionLog<DmaBackend>, batch: &Bytes) -> AppendInfo {
    let checked = CheckedBatch::check(batch.clone()).expect("valid batch");
    log.append(checked, 0).await.expect("append")
}

/// Lets the executor submit queued I/O and reap completions, as it does
/// whenever a shard's tasks wait on the network.
async fn reactor_turn() {
    glommio::timer::sleep(Duration::from_micros(1)).await;
}

fn result(name: &str, value: f64, unit: &str) {
    println!("RESULT {name} {value:.3} {unit}");
}

async fn open(dir: &Path, c: LogConfig, budget: &Rc<FileBudget>) -> PartitionLog<DmaBackend> {
    PartitionLog::open(DmaBackend::new(), dir, c, budget.clone())
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn append_1m(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(16);
        let log = open(&dir.join("p-0"), cfg(), &budget).await;
        let batch = Bytes::from(build::sized(1 << 20, 16, 1));
        let n = GIB / batch.len() as u64;
        let t = Instant::now();
        for _ in 0..n {
            append(&log, &batch).await;
        }
        log.sync().await.expect("sync");
        let secs = t.elapsed().as_secs_f64();
        result(
            "append_1m_MBps",
            (n * batch.len() as u64) as f64 / secs / 1e6,
            "MB/s",
        );
    });
}

fn append_16k_1000p(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(4096);
        let mut logs = Vec::new();
        let c = LogConfig {
            write_buffer_bytes_max: 2 << 20,
            tail_cache_bytes_max: 64 << 10,
            ..cfg()
        };
        for p in 0..1000 {
            logs.push(open(&dir.join(format!("p-{p}")), c.clone(), &budget).await);
        }
        let batch = Bytes::from(build::sized(16 << 10, 8, 1));
        let rounds = GIB / (batch.len() as u64 * 1000);
        let t = Instant::now();
        for _ in 0..rounds {
            for (i, log) in logs.iter().enumerate() {
                append(log, &batch).await;
                if i % APPENDS_PER_REACTOR_TURN == APPENDS_PER_REACTOR_TURN - 1 {
                    reactor_turn().await;
                }
            }
            // The shard's flusher: start writing every partition holding at
            // least FLUSH_MIN_BYTES not yet submitted, so each write is large
            // enough for the device to stream (Kafka leaves this to the page
            // cache). `flush` does not wait for the writes: they run while
            // the next round is appended, within the shard's budget.
            let min = if budget.inflight_write_bytes() < budget.inflight_write_bytes_max / 2 {
                FLUSH_MIN_BYTES_IDLE
            } else {
                FLUSH_MIN_BYTES
            };
            futures_util::future::try_join_all(
                logs.iter()
                    .filter(|l| l.unsubmitted_bytes() >= min)
                    .map(|l| l.flush()),
            )
            .await
            .expect("flush");
            // Hand the flusher's writes to the kernel at once.
            reactor_turn().await;
        }
        futures_util::future::try_join_all(logs.iter().map(|l| l.sync()))
            .await
            .expect("sync");
        let secs = t.elapsed().as_secs_f64();
        let bytes = rounds * 1000 * batch.len() as u64;
        result("append_16k_1000p_MBps", bytes as f64 / secs / 1e6, "MB/s");
    });
}

fn sync_16k_8p(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(64);
        let c = LogConfig {
            flush: FlushPolicy::EveryAppend,
            ..cfg()
        };
        let mut logs = Vec::new();
        for p in 0..8 {
            logs.push(Rc::new(
                open(&dir.join(format!("s-{p}")), c.clone(), &budget).await,
            ));
        }
        let batch = Bytes::from(build::sized(16 << 10, 8, 1));
        let run_for = Duration::from_secs(10);
        let t = Instant::now();
        let tasks = logs.iter().map(|log| {
            let log = log.clone();
            let batch = batch.clone();
            async move {
                let mut n = 0u64;
                while t.elapsed() < run_for {
                    let info = append(&log, &batch).await;
                    let durable = log.sync().await.expect("sync");
                    assert!(durable > info.last_offset);
                    n += 1;
                }
                n
            }
        });
        let counts = futures_util::future::join_all(tasks).await;
        let secs = t.elapsed().as_secs_f64();
        let appends: u64 = counts.iter().sum();
        result(
            "sync_16k_8p_MBps",
            (appends * batch.len() as u64) as f64 / secs / 1e6,
            "MB/s",
        );
        result(
            "sync_16k_8p_appends_per_s",
            appends as f64 / secs,
            "appends/s",
        );
    });
}

fn fill(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(64);
        let c = recovery_cfg();
        let log = open(&dir.join("r-0"), c, &budget).await;
        let batch = Bytes::from(build::sized(1 << 20, 16, 1));
        // a bit under 1 GiB so the last segment is nearly full, the worst case
        let n = GIB / batch.len() as u64 - 2;
        for _ in 0..n {
            append(&log, &batch).await;
        }
        log.sync().await.expect("sync");
        println!("filled {} bytes", n * batch.len() as u64);
        // Die like kill -9: no clean shutdown marker, nothing flushed after.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    });
}

fn lag(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(64);
        let c = recovery_cfg();
        let behind = c.recovery_point_interval_bytes - (1 << 20);
        let log = open(&dir.join("r-0"), c, &budget).await;
        let batch = Bytes::from(build::sized(1 << 20, 16, 1));
        for _ in 0..behind / batch.len() as u64 {
            append(&log, &batch).await;
            log.sync().await.expect("sync");
        }
        println!("lagging by {behind} synced bytes");
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    });
}

fn read_cold(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(64);
        let c = recovery_cfg();
        let log = open(&dir.join("r-0"), c, &budget).await;
        let end = log.log_end_offset();
        let mut at = log.log_start_offset();
        let mut bytes = 0u64;
        let t = Instant::now();
        while at < end {
            let r = log.read(at, 8 << 20).await.expect("read");
            for b in &r.batches {
                bytes += b.len() as u64;
                let h = rill_storage::batch::BatchHeader::parse(b).expect("header");
                at = h.last_offset() + 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        result("read_cold_MBps", bytes as f64 / secs / 1e6, "MB/s");
        log.close().await.expect("close");
    });
}

fn reopen(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(64);
        let c = recovery_cfg();
        let t = Instant::now();
        let log = open(&dir.join("r-0"), c, &budget).await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert!(log.log_end_offset() > 0, "fill left no data");
        result("reopen_after_kill_ms", ms, "ms");
        result(
            "reopen_scanned_MiB",
            log.recovery_scanned_bytes() as f64 / (1 << 20) as f64,
            "MiB",
        );
        // no close: the next reopen must scan again, like after kill -9
        std::mem::forget(log);
    });
}

fn idle_memory(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(4096);
        let c = LogConfig::default();
        let before = live_heap_bytes();
        let mut logs = Vec::new();
        for p in 0..1000 {
            let log = open(&dir.join(format!("m-{p}")), c.clone(), &budget).await;
            append(&log, &Bytes::from(build::sized(1000, 4, 1))).await;
            log.sync().await.expect("sync");
            log.trim_caches();
            logs.push(log);
        }
        let after = live_heap_bytes();
        result(
            "idle_partition_heap_bytes",
            (after.saturating_sub(before)) as f64 / 1000.0,
            "bytes",
        );
        drop(logs);
    });
}

/// Keys of the `compact` workload, and the bytes it writes before the pass.
const COMPACT_KEYS: u64 = 100_000;
const COMPACT_BYTES: usize = 512 << 20;

fn compact(dir: PathBuf) {
    run(async move {
        let budget = FileBudget::new(64);
        let c = LogConfig {
            segment_bytes: 64 << 20,
            cleanup_compact: true,
            cleanup_delete: false,
            min_cleanable_dirty_ratio: 0.0,
            ..cfg()
        };
        let log = open(&dir.join("p-0"), c, &budget).await;
        let value = vec![0x5au8; 1000];
        let mut written = 0usize;
        let mut n = 0u64;
        while written < COMPACT_BYTES {
            let keys: Vec<Vec<u8>> = (0..16)
                .map(|_| {
                    n += 1;
                    // A multiplicative hash spreads the keys, so each appears every ~100,000 records.
                    format!("key-{:08}", n.wrapping_mul(2_654_435_761) % COMPACT_KEYS).into_bytes()
                })
                .collect();
            let recs: Vec<build::Rec<'_>> = keys
                .iter()
                .map(|k| build::Rec {
                    key: Some(k),
                    value: &value,
                    timestamp_ms: 1,
                })
                .collect();
            let b = Bytes::from(build::batch(&recs));
            written += b.len();
            append(&log, &b).await;
        }
        log.sync().await.expect("sync");
        let hw = log.log_end_offset();
        let status = log.compaction_status(hw).await.expect("status");
        let t = Instant::now();
        let out = log
            .clean(
                hw,
                32 << 20,
                &rill_storage::records::NoCodec,
                &mut rill_storage::CleanerThrottle::unlimited(),
                &Default::default(),
            )
            .await
            .expect("clean")
            .expect("a pass is due");
        let secs = t.elapsed().as_secs_f64();
        result(
            "compact_cleanable_MBps",
            status.cleanable_bytes as f64 / secs / 1e6,
            "MB/s",
        );
        result(
            "compact_io_MBps",
            (out.bytes_read + out.bytes_written) as f64 / secs / 1e6,
            "MB/s",
        );
        result(
            "compact_kept_share",
            out.bytes_written as f64 / status.cleanable_bytes as f64,
            "ratio",
        );
        result(
            "compact_cleanable_MiB",
            status.cleanable_bytes as f64 / (1 << 20) as f64,
            "MiB",
        );
        result("compact_secs", secs, "s");
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: storage_bench WORKLOAD DIR (see the source header for workloads)");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[2]);
    std::fs::create_dir_all(&dir).expect("create bench dir");
    match args[1].as_str() {
        "append-1m" => append_1m(dir),
        "append-16k-1000p" => append_16k_1000p(dir),
        "sync-16k-8p" => sync_16k_8p(dir),
        "fill" => fill(dir),
        "read-cold" => read_cold(dir),
        "reopen" => reopen(dir),
        "lag" => lag(dir),
        "idle-memory" => idle_memory(dir),
        "compact" => compact(dir),
        other => {
            eprintln!("unknown workload {other}");
            std::process::exit(2);
        }
    }
}
