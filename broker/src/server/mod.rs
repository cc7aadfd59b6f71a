//! The Kafka listener of one shard and the connections it accepted.
//!
//! A connection is served by the shard that accepted it: a reader task cuts frames and
//! decodes them, each request runs as its own task (pipelining), and a writer sends the
//! answers strictly in request order, as Kafka requires. Requests that touch the same
//! partition keep their order on the way there too (see [`crate::fifo`]).
//!
//! Bounds: connections per shard (`limits.connections_max` split over the shards), requests
//! in flight per connection (`limits.inflight_requests_max`), request bytes in flight per
//! shard (`limits.inflight_request_bytes_max`), frame size (`limits.frame_bytes_max`).
//!
//! Layout: `mod.rs` (this: accept, serve) → `metrics_http` (the Prometheus endpoint).

pub mod metrics_http;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_lite::io::AsyncWriteExt;
use rill_net::frame::{FrameLimits, FrameReader};
use rill_net::{DecodeError, FrameError};
use tracing::{debug, warn};

use crate::handlers::{self, Reply};
use crate::runtime::{self, Listener, Stream, Task};
use crate::shard::Shard;

/// How often the accept loop looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// Back-off after a failed accept (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// How long a connection to a cluster member that does not know the cluster's id yet
/// (no quorum of the metadata raft voters so far) waits before it is closed.
const CLUSTER_ID_WAIT: Duration = Duration::from_secs(30);

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

/// A shard's connections: how many, and the request bytes they hold.
pub struct Connections {
    open: Cell<usize>,
    max: usize,
    pub inflight_bytes: Rc<ByteBudget>,
}

impl Connections {
    /// Open client connections on this shard.
    pub fn open(&self) -> usize {
        self.open.get()
    }
}

/// Counts a connection while it is open.
struct ConnectionCount(Rc<Connections>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
    }
}

/// Gives `shard` its connection accounting (at start).
pub fn start(shard: &Rc<Shard>) {
    let limits = &shard.config().limits;
    shard.provide(Rc::new(Connections {
        open: Cell::new(0),
        max: limits.connections_max.div_ceil(shard.shards()),
        inflight_bytes: Rc::new(ByteBudget::new(limits.inflight_request_bytes_max)),
    }));
}

/// Accepts connections until `stop` is set.
pub async fn accept(shard: Rc<Shard>, listener: Listener, stop: Arc<AtomicBool>) {
    let stopped = async {
        while !stop.load(Ordering::SeqCst) {
            runtime::sleep(STOP_CHECK).await;
        }
    };
    let conns = shard.service::<Connections>();
    let accept = async {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    if conns.open() >= conns.max {
                        shard.metrics().connection_refused();
                        warn!(
                            shard = shard.id(),
                            connections_max = conns.max,
                            "connection refused: limits.connections_max reached"
                        );
                        drop(stream);
                        continue;
                    }
                    conns.open.set(conns.open.get() + 1);
                    let count = ConnectionCount(conns.clone());
                    let shard = shard.clone();
                    runtime::spawn(async move {
                        serve(shard, stream).await;
                        drop(count);
                    });
                }
                Err(e) => {
                    warn!(shard = shard.id(), error = %e, "accept failed");
                    runtime::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    };
    futures_lite::future::or(accept, stopped).await;
}

/// What the writer does next, in request order.
enum Outgoing {
    Answer(Task<Reply>),
    Close,
}

async fn serve(shard: Rc<Shard>, stream: Stream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // A cluster member answers nobody until it knows the cluster's id (a client would see
    // this broker's provisional id, then the cluster's: two clusters).
    if !shard.until_serving(CLUSTER_ID_WAIT).await {
        warn!(%peer, waited_s = CLUSTER_ID_WAIT.as_secs(),
            "closing a connection: the cluster has no id yet (no quorum of the metadata raft voters?)");
        return;
    }
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = futures_lite::io::split(stream);
    let limits = &shard.config().limits;
    let frame_limits = FrameLimits {
        frame_bytes_max: limits.frame_bytes_max,
        ..FrameLimits::requests()
    };
    let mut frames = FrameReader::new(reader, frame_limits);
    let (tx, rx) = runtime::queue::<Outgoing>(limits.inflight_requests_max);
    let budget = shard.service::<Connections>().inflight_bytes.clone();
    let done = Rc::new(Event::new());
    let writer_done = done.clone();
    let peer_w = peer.clone();
    let write = Task::start(async move {
        while let Some(next) = rx.recv().await {
            let pieces = match next {
                Outgoing::Answer(task) => match task.join().await {
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
            let guard = budget.acquire(frame.len()).await;
            match rill_net::decode_request_with(frame, &table) {
                Ok((header, request)) => {
                    let shard = shard.clone();
                    let peer = peer.clone();
                    let task = Task::start(async move {
                        let api = request.api_name();
                        let started = std::time::Instant::now();
                        let reply = handlers::handle(shard.clone(), header, request, &peer).await;
                        shard.metrics().request(api, started.elapsed());
                        drop(guard);
                        reply
                    });
                    if tx.send(Outgoing::Answer(task)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    shard.metrics().error("malformed", e.error_code());
                    let reply = handlers::decode_error_reply(&e);
                    let close = !matches!(reply, Reply::Frame(_));
                    match &e {
                        DecodeError::UnsupportedVersion { .. } => {
                            debug!(%peer, error = %e, "unsupported request version")
                        }
                        _ => warn!(%peer, error = %e, "bad request; closing connection"),
                    }
                    let task = Task::start(async move { reply });
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
    write.join().await;
    debug!(%peer, "connection closed");
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
