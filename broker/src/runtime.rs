//! The shard runtime: one glommio executor per core, the channel mesh between them, each
//! shard's SO_REUSEPORT listener and its connections. This module (with the storage
//! backend) is the only place that names glommio types; the rest of the broker uses the small
//! wrappers here ([`Peers`], [`spawn`], [`sleep`]).
//!
//! A connection is served by the shard that accepted it: a reader task cuts frames and
//! decodes them, each request runs as its own task (pipelining), and a writer task sends
//! the answers strictly in request order, as Kafka requires.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_lite::io::AsyncWriteExt;
use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use rill_net::frame::{FrameLimits, FrameReader};
use rill_net::{DecodeError, FrameError};
use tracing::{debug, error, info, warn};

use crate::config::BrokerConfig;
use crate::handlers::{self, Reply};
use crate::metadata::{RegistryFile, Snapshot};
use crate::shard::{Shard, ShardMsg};

/// Sends to other shards over the bounded mesh.
pub struct Peers {
    senders: Option<Senders<ShardMsg>>,
}

impl Peers {
    /// Sends `msg` to shard `to`, waiting while its queue is full. Fails when that shard
    /// has stopped.
    pub async fn send(&self, to: usize, msg: ShardMsg) -> Result<(), ()> {
        match &self.senders {
            Some(s) => s.send_to(to, msg).await.map_err(|_| ()),
            None => Err(()),
        }
    }
}

/// Runs `fut` on this shard in the background.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(fut).detach();
}

/// A TCP connection this shard opened (the replica fetchers').
pub type Stream = TcpStream;

/// Connects to `addr` from this shard, giving up after `timeout`.
pub async fn connect(addr: std::net::SocketAddr, timeout: Duration) -> std::io::Result<Stream> {
    TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(std::io::Error::from)
}

/// Sleeps on this shard's timer.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// CPU time this shard's executor has spent running tasks and polling I/O.
pub fn busy_seconds() -> f64 {
    glommio::executor()
        .executor_stats()
        .total_runtime()
        .as_secs_f64()
}

/// Wall-clock milliseconds (record timestamps, LogAppendTime).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A byte budget shared by a shard's connections: reading a request takes its size, the
/// answer gives it back. A single request larger than the budget still passes when nothing
/// else is held, so no request waits forever.
pub struct ByteBudget {
    max: usize,
    used: Cell<usize>,
    freed: Event,
}

impl ByteBudget {
    pub fn new(max: usize) -> ByteBudget {
        ByteBudget {
            max,
            used: Cell::new(0),
            freed: Event::new(),
        }
    }

    pub fn used(&self) -> usize {
        self.used.get()
    }

    pub async fn acquire(self: &Rc<Self>, bytes: usize) -> BudgetGuard {
        loop {
            let used = self.used.get();
            if used == 0 || used + bytes <= self.max {
                self.used.set(used + bytes);
                return BudgetGuard {
                    budget: self.clone(),
                    bytes,
                };
            }
            let listener = self.freed.listen();
            if self.used.get() != used {
                continue;
            }
            listener.await;
        }
    }
}

/// Bytes held from a [`ByteBudget`] until dropped.
pub struct BudgetGuard {
    budget: Rc<ByteBudget>,
    bytes: usize,
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.budget.used.set(self.budget.used.get() - self.bytes);
        self.budget.freed.notify(usize::MAX);
    }
}

/// Starts every shard and blocks until all of them stopped (SIGTERM / SIGINT).
pub fn run(
    config: BrokerConfig,
    registry: RegistryFile,
    snapshot: Snapshot,
    stop: Arc<AtomicBool>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
) -> Result<(), String> {
    let shards = config.shards;
    let cpus = allowed_cpus();
    let config = Arc::new(config);
    let snapshot = Arc::new(snapshot);
    let mesh: MeshBuilder<ShardMsg, _> = MeshBuilder::full(shards, config.limits.shard_queue_depth);
    let ready = Arc::new(Barrier::new(shards));
    let failed = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(shards);
    for id in 0..shards {
        let placement = if shards <= cpus.len() {
            Placement::Fixed(cpus[id])
        } else {
            Placement::Unbound
        };
        let (config, snapshot, mesh, ready, stop, failed) = (
            config.clone(),
            snapshot.clone(),
            mesh.clone(),
            ready.clone(),
            stop.clone(),
            failed.clone(),
        );
        let registry = (id == 0).then(|| registry.clone());
        let cluster = cluster.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("rill-shard-{id}"))
            .io_memory(rill_storage::backend::dma::SHARD_IO_MEMORY_BYTES)
            .spawn(move || async move {
                let r = shard_main(
                    id,
                    shards,
                    config,
                    snapshot,
                    registry,
                    mesh,
                    ready,
                    stop.clone(),
                    cluster,
                )
                .await;
                if let Err(e) = &r {
                    error!(shard = id, error = %e, "shard stopped");
                    failed.store(true, Ordering::SeqCst);
                    stop.store(true, Ordering::SeqCst);
                }
                r
            })
            .map_err(|e| {
                format!("cannot start shard {id}: {e}; check `ulimit -l` (io_uring needs locked memory)")
            })?;
        handles.push(handle);
    }
    let mut first_error = None;
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("shard {id} crashed: {e}"));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The CPUs this process may run on (its affinity mask: taskset, systemd CPUAffinity=,
/// a cpuset), in order; shard i is pinned to the i-th of them.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let got =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if got != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the bit count of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    id: usize,
    shards: usize,
    config: Arc<BrokerConfig>,
    snapshot: Arc<Snapshot>,
    registry: Option<RegistryFile>,
    mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    ready: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
) -> Result<(), String> {
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|_| format!("shard {id} could not join the channel mesh"))?;
    let peers = Peers {
        senders: Some(senders),
    };
    let shard = Rc::new(Shard::new(
        id,
        shards,
        config.clone(),
        snapshot.clone(),
        registry,
        peers,
        cluster.clone(),
    ));
    // Messages from each peer: partition work holds a slot of `shard_queue_depth` until it
    // is answered, so a flood from one shard waits in its bounded channel, not in memory here.
    for (_, receiver) in receivers.streams() {
        let shard = shard.clone();
        let slots = Arc::new(async_lock::Semaphore::new(config.limits.shard_queue_depth));
        spawn(async move {
            while let Some(msg) = receiver.recv().await {
                let shard = shard.clone();
                if matches!(msg, ShardMsg::Partition { .. }) {
                    let slot = slots.acquire_arc().await;
                    let inflight = &shard.metrics.cross_shard_inflight;
                    inflight.set(inflight.get() + 1);
                    spawn(async move {
                        shard.clone().handle_msg(msg).await;
                        let inflight = &shard.metrics.cross_shard_inflight;
                        inflight.set(inflight.get() - 1);
                        drop(slot);
                    });
                } else {
                    // Waits are bounded by fetch_waiters_max; admin and apply by the
                    // registry lock on shard 0.
                    spawn(shard.handle_msg(msg));
                }
            }
        });
    }
    let started = std::time::Instant::now();
    shard.apply(snapshot).await;
    info!(
        shard = id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shard opened its partitions"
    );
    // Nobody is served until every shard has its partitions open.
    ready.wait();
    let listener = TcpListener::bind(config.listen).map_err(|e| {
        format!(
            "cannot listen on {}: {e}; is another broker running there?",
            config.listen
        )
    })?;
    if id == 0 {
        info!(listen = %config.listen, shards, data_dir = %config.data_dir.display(), "rill broker ready");
    }
    let ticker = {
        let shard = shard.clone();
        let tick = Duration::from_millis(config.storage.flush_tick_ms);
        let retention_every = Duration::from_millis(config.retention_check_interval_ms);
        async move {
            let mut last_retention = std::time::Instant::now();
            let mut last_sessions = std::time::Instant::now();
            let mut last_isr = std::time::Instant::now();
            loop {
                sleep(tick).await;
                shard.tick();
                if last_isr.elapsed() >= crate::replica::ISR_CHECK_INTERVAL {
                    last_isr = std::time::Instant::now();
                    shard.maintain_isr();
                }
                if last_sessions.elapsed() >= GROUP_SESSION_CHECK {
                    last_sessions = std::time::Instant::now();
                    shard.expire_group_members();
                }
                if last_retention.elapsed() >= retention_every {
                    last_retention = std::time::Instant::now();
                    shard.enforce_retention().await;
                }
            }
        }
    };
    spawn(ticker);
    spawn(crate::replica::run_fetchers(shard.clone()));
    if id == 0 {
        if let Some(addr) = config.metrics_addr() {
            let listener = TcpListener::bind(addr).map_err(|e| {
                format!("cannot serve metrics on {addr}: {e}; set metrics_listen to a free address or \"\" to turn metrics off")
            })?;
            info!(metrics = %addr, "serving Prometheus metrics at /metrics");
            spawn(serve_metrics(shard.clone(), listener));
        }
    }
    let stopped = async {
        while !stop.load(Ordering::SeqCst) {
            sleep(Duration::from_millis(50)).await;
        }
    };
    let connections_max = config.limits.connections_max.div_ceil(shards);
    let accept = async {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    if shard.connections.get() >= connections_max {
                        shard.metrics.connection_refused();
                        warn!(
                            shard = id,
                            connections_max, "connection refused: limits.connections_max reached"
                        );
                        drop(stream);
                        continue;
                    }
                    let shard = shard.clone();
                    spawn(async move { serve(shard, stream).await });
                }
                Err(e) => {
                    warn!(shard = id, error = %e, "accept failed");
                    sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    futures_lite::future::or(accept, stopped).await;
    drop(listener);
    info!(shard = id, "shutting down");
    shard.close_all().await;
    Ok(())
}

/// What the writer does next, in request order.
enum Outgoing {
    Answer(glommio::task::JoinHandle<Reply>),
    Close,
}

async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    shard.connections.set(shard.connections.get() + 1);
    let _count = ConnectionCount(shard.clone());
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = futures_lite::io::split(stream);
    let limits = FrameLimits {
        frame_bytes_max: shard.config.limits.frame_bytes_max,
        ..FrameLimits::requests()
    };
    let mut frames = FrameReader::new(reader, limits);
    let (tx, rx) =
        local_channel::new_bounded::<Outgoing>(shard.config.limits.inflight_requests_max);
    let done = Rc::new(Event::new());
    let writer_done = done.clone();
    let peer_w = peer.clone();
    let write = glommio::spawn_local(async move {
        while let Some(next) = rx.recv().await {
            let pieces = match next {
                Outgoing::Answer(task) => match task.await {
                    Some(Reply::Frame(pieces)) => pieces,
                    Some(Reply::NoResponse) => continue,
                    Some(Reply::Close) | None => break,
                },
                Outgoing::Close => break,
            };
            let mut pieces = coalesce(pieces);
            if let Err(e) = rill_net::write_pieces(&mut writer, &mut pieces).await {
                debug!(peer = %peer_w, error = %e, "write failed; closing connection");
                break;
            }
        }
        let _ = writer.close().await;
        writer_done.notify(usize::MAX);
    });
    let table = handlers::api_table();
    let read = async {
        loop {
            let frame = match frames.next_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(FrameError::Io(e)) => {
                    debug!(%peer, error = %e, "read failed");
                    break;
                }
                Err(e) => {
                    warn!(%peer, error = %e, "bad frame; closing connection");
                    let _ = tx.send(Outgoing::Close).await;
                    break;
                }
            };
            let guard = shard.inflight_bytes.acquire(frame.len()).await;
            match rill_net::decode_request_with(frame, &table) {
                Ok((header, request)) => {
                    let shard = shard.clone();
                    let peer = peer.clone();
                    let task = glommio::spawn_local(async move {
                        let api = request.api_name();
                        let started = std::time::Instant::now();
                        let reply = handlers::handle(shard.clone(), header, request, &peer).await;
                        shard.metrics.request(api, started.elapsed());
                        drop(guard);
                        reply
                    })
                    .detach();
                    if tx.send(Outgoing::Answer(task)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    shard.metrics.error("malformed", e.error_code());
                    let reply = handlers::decode_error_reply(&e);
                    let close = !matches!(reply, Reply::Frame(_));
                    match &e {
                        DecodeError::UnsupportedVersion { .. } => {
                            debug!(%peer, error = %e, "unsupported request version")
                        }
                        _ => warn!(%peer, error = %e, "bad request; closing connection"),
                    }
                    let task = glommio::spawn_local(async move { reply }).detach();
                    if tx.send(Outgoing::Answer(task)).await.is_err() || close {
                        break;
                    }
                }
            }
        }
        drop(tx);
        // Keep the socket open until the writer has sent every answer.
        let listener = done.listen();
        listener.await;
    };
    let writer_gone = async {
        let listener = done.listen();
        listener.await;
    };
    futures_lite::future::or(read, writer_gone).await;
    write.await;
    debug!(%peer, "connection closed");
}

/// How often group member sessions are checked for expiry.
const GROUP_SESSION_CHECK: Duration = Duration::from_millis(100);

/// Scrapes allowed at once; more wait for their turn.
const METRICS_SCRAPES_MAX: usize = 4;
/// Largest scrape request read.
const METRICS_REQUEST_BYTES_MAX: usize = 8 << 10;

/// A minimal HTTP/1.1 server for `GET /metrics`, on shard 0.
async fn serve_metrics(shard: Rc<Shard>, listener: TcpListener) {
    let slots = Arc::new(async_lock::Semaphore::new(METRICS_SCRAPES_MAX));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = slots.acquire_arc().await;
        let shard = shard.clone();
        spawn(async move {
            if let Err(e) = answer_scrape(&shard, stream).await {
                debug!(error = %e, "metrics request failed");
            }
            drop(slot);
        });
    }
}

async fn answer_scrape(shard: &Rc<Shard>, mut stream: TcpStream) -> std::io::Result<()> {
    use futures_lite::io::AsyncReadExt;
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
        ("200 OK", shard.scrape().await)
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

struct ConnectionCount(Rc<Shard>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

/// Joins runs of small pieces (glommio's socket has no vectored write, so every piece is
/// one send): pieces under 16 KiB are copied together, larger ones go out as they are.
fn coalesce(pieces: Vec<Bytes>) -> Vec<Bytes> {
    const SMALL_BYTES: usize = 16 << 10;
    let mut out = Vec::with_capacity(4);
    let mut small = BytesMut::new();
    for p in pieces {
        if p.len() < SMALL_BYTES {
            small.extend_from_slice(&p);
        } else {
            if !small.is_empty() {
                out.push(small.split().freeze());
            }
            out.push(p);
        }
    }
    if !small.is_empty() {
        out.push(small.freeze());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_keeps_order_and_bytes() {
        let pieces = vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cd"),
            Bytes::from(vec![7u8; 20 << 10]),
            Bytes::from_static(b"ef"),
        ];
        let out = coalesce(pieces.clone());
        assert_eq!(out.len(), 3);
        assert_eq!(out.concat(), pieces.concat());
    }
}
