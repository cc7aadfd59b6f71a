//! A minimal HTTP/1.1 server for `GET /metrics` (Prometheus text), on shard 0: a scrape
//! gathers every shard's figures over the mesh and the host's from sysinfo.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::Connections;
use crate::group::Groups;
use crate::metrics::{HostSample, MetricsSnapshot, PartitionSample};
use crate::runtime::{self, Listener, Stream};
use crate::shard::Shard;

/// Scrapes allowed at once; more wait for their turn.
const METRICS_SCRAPES_MAX: usize = 4;
/// Largest scrape request read.
const METRICS_REQUEST_BYTES_MAX: usize = 8 << 10;

/// A minimal HTTP/1.1 server for `GET /metrics`, on shard 0.
pub async fn serve(shard: Rc<Shard>, listener: Listener) {
    let slots = Arc::new(async_lock::Semaphore::new(METRICS_SCRAPES_MAX));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                runtime::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = slots.acquire_arc().await;
        let shard = shard.clone();
        runtime::spawn(async move {
            if let Err(e) = answer_scrape(&shard, stream).await {
                debug!(error = %e, "metrics request failed");
            }
            drop(slot);
        });
    }
}

async fn answer_scrape(shard: &Rc<Shard>, mut stream: Stream) -> std::io::Result<()> {
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        if req.len() > METRICS_REQUEST_BYTES_MAX {
            return Err(std::io::Error::other("metrics request too large"));
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line =
        String::from_utf8_lossy(req.split(|b| *b == b'\n').next().unwrap_or_default()).to_string();
    let (status, body) = if line.starts_with("GET /metrics ") || line.starts_with("GET / ") {
        ("200 OK", scrape(shard).await)
    } else {
        (
            "404 Not Found",
            "only GET /metrics is served here\n".to_string(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.close().await
}

/// One shard's counters and gauges.
fn shard_sample(shard: &Rc<Shard>) -> MetricsSnapshot {
    let mut snap = shard.metrics().snapshot(shard.id());
    snap.partitions = shard
        .owned()
        .into_iter()
        .map(|((topic, partition), p)| {
            let stats = p.log().stats();
            PartitionSample {
                topic: topic.to_string(),
                partition,
                size_bytes: stats.size_bytes,
                segments: stats.segments,
                log_start_offset: p.log().log_start_offset(),
                log_end_offset: p.log().log_end_offset(),
                compaction: p.compaction(),
            }
        })
        .collect();
    let conns = shard.service::<Connections>();
    snap.connections = conns.open();
    snap.inflight_request_bytes = conns.inflight_bytes.used();
    snap.fetch_waiters = shard.fetch_waiters();
    snap.fetch_sessions = shard
        .service::<RefCell<crate::handlers::FetchSessions>>()
        .borrow()
        .len();
    snap.busy_seconds = runtime::busy_seconds();
    snap.group_offsets = Groups::of(shard).group_offsets();
    snap
}

/// Gathers every shard's figures and renders the Prometheus text.
async fn scrape(shard: &Rc<Shard>) -> String {
    let mut snaps = shard
        .ask_all(|shard: Rc<Shard>| async move { shard_sample(&shard) })
        .await;
    snaps.sort_by_key(|s| s.shard);
    crate::metrics::render(&snaps, &host_sample())
}

thread_local! {
    /// sysinfo's view of the host, kept between scrapes (CPU usage needs two readings).
    static HOST: RefCell<Option<sysinfo::System>> = const { RefCell::new(None) };
}

fn host_sample() -> HostSample {
    use sysinfo::{ProcessesToUpdate, System};
    HOST.with(|host| {
        let mut host = host.borrow_mut();
        let sys = host.get_or_insert_with(System::new);
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let pid = sysinfo::get_current_pid().ok();
        if let Some(pid) = pid {
            sys.refresh_processes(ProcessesToUpdate::Some(&[pid]), true);
        }
        HostSample {
            cpu_usage_percent: sys.global_cpu_usage() as f64,
            memory_total_bytes: sys.total_memory(),
            memory_used_bytes: sys.used_memory(),
            process_memory_bytes: pid.and_then(|p| sys.process(p)).map_or(0, |p| p.memory()),
            load_average_1m: System::load_average().one,
        }
    })
}
