//! Moving raft messages between brokers. [`Transport`] is what the driver's
//! owner needs (send a message, take received ones); [`TcpTransport`] is
//! the implementation between brokers: length-prefixed frames
//! (`[len u32 BE][protobuf raft Message]`) over one outgoing TCP connection
//! per peer, written by one std thread per peer from a bounded queue
//! (`peer_queue_messages_max`; a full queue drops the message, raft
//! retries), reconnecting with exponential backoff. Inbound connections get
//! a reader thread each and feed one bounded inbound queue. The broker owns
//! one `TcpTransport` on shard 0 beside its [`crate::node::Node`]; the
//! threads are the transport's own and stop when it is dropped.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::error::{Error, Result};
use crate::ids::NodeId;

/// Sends raft messages to peers and hands over the ones received.
pub trait Transport {
    /// Queues `msg` for `msg.to`; never blocks. May drop (raft retries).
    fn send(&self, msg: Message);
    /// Takes up to `max` received messages without waiting.
    fn try_recv_many(&self, max: usize) -> Vec<Message>;
}

/// Limits and timing of the TCP transport.
#[derive(Clone, Debug)]
pub struct TcpTransportConfig {
    /// Messages queued for one peer before new ones are dropped.
    pub peer_queue_messages_max: usize,
    /// Received messages waiting for the driver before new ones are dropped.
    pub inbound_queue_messages_max: usize,
    /// Largest frame accepted or sent (a snapshot travels in one frame).
    pub frame_bytes_max: u32,
    /// Inbound connections served at once; more are closed.
    pub inbound_connections_max: usize,
    pub connect_timeout_ms: u64,
    /// First wait after a failed connect or write, doubled up to the max.
    pub reconnect_backoff_initial_ms: u64,
    pub reconnect_backoff_max_ms: u64,
}

impl Default for TcpTransportConfig {
    fn default() -> Self {
        TcpTransportConfig {
            peer_queue_messages_max: 4096,
            inbound_queue_messages_max: 16_384,
            frame_bytes_max: 256 << 20,
            inbound_connections_max: 64,
            connect_timeout_ms: 1_000,
            reconnect_backoff_initial_ms: 50,
            reconnect_backoff_max_ms: 5_000,
        }
    }
}

/// Counters for metrics.
#[derive(Default, Debug)]
pub struct TransportStats {
    pub sent_messages: AtomicU64,
    /// Dropped because a peer queue was full, the peer unknown, or a frame too big.
    pub dropped_outbound_messages: AtomicU64,
    pub received_messages: AtomicU64,
    /// Dropped because the inbound queue was full.
    pub dropped_inbound_messages: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub bad_frames: AtomicU64,
}

/// The TCP transport between brokers.
pub struct TcpTransport {
    local: NodeId,
    local_addr: SocketAddr,
    peers: BTreeMap<NodeId, (SocketAddr, SyncSender<Message>)>,
    inbound: Receiver<Message>,
    config: TcpTransportConfig,
    stats: Arc<TransportStats>,
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

const POLL_MS: u64 = 20;

impl TcpTransport {
    /// Starts serving `listener` and the sender threads for `peers`
    /// (this node's own id among them is ignored).
    pub fn start(
        local: NodeId,
        listener: TcpListener,
        peers: BTreeMap<NodeId, SocketAddr>,
        config: TcpTransportConfig,
    ) -> Result<TcpTransport> {
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("local_addr", "raft listener", e))?;
        // Non-blocking accept polled, so the acceptor notices shutdown.
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("set_nonblocking", "raft listener", e))?;
        let stats = Arc::new(TransportStats::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let (in_tx, inbound) = mpsc::sync_channel(config.inbound_queue_messages_max);
        let mut threads = Vec::new();
        {
            let (stats, shutdown, config) = (stats.clone(), shutdown.clone(), config.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("raft-accept-{local}"))
                    .spawn(move || accept_loop(listener, in_tx, stats, shutdown, config))
                    .map_err(|e| Error::io("spawn", "raft acceptor thread", e))?,
            );
        }
        let mut transport = TcpTransport {
            local,
            local_addr,
            peers: BTreeMap::new(),
            inbound,
            config,
            stats,
            shutdown,
            threads,
        };
        for (peer, addr) in peers {
            transport.add_peer(peer, addr)?;
        }
        Ok(transport)
    }

    /// Starts sending to `peer` at `addr` (a member that joined); a known peer at a new
    /// address gets a new connection. This node's own id is ignored.
    pub fn add_peer(&mut self, peer: NodeId, addr: SocketAddr) -> Result<()> {
        if peer == self.local || self.peers.get(&peer).is_some_and(|(a, _)| *a == addr) {
            return Ok(());
        }
        let (tx, rx) = mpsc::sync_channel(self.config.peer_queue_messages_max);
        let (stats, shutdown, config) = (
            self.stats.clone(),
            self.shutdown.clone(),
            self.config.clone(),
        );
        let local = self.local;
        self.threads.push(
            std::thread::Builder::new()
                .name(format!("raft-send-{local}-{peer}"))
                .spawn(move || send_loop(peer, addr, rx, stats, shutdown, config))
                .map_err(|e| Error::io("spawn", "raft sender thread", e))?,
        );
        // Replacing the sender closes the old queue, which ends the old thread.
        self.peers.insert(peer, (addr, tx));
        self.threads.retain(|t| !t.is_finished());
        Ok(())
    }

    /// Stops sending to `peer` (a member that was removed).
    pub fn remove_peer(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
    }

    /// The peers messages go to, with their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.peers.iter().map(|(p, (a, _))| (*p, *a)).collect()
    }

    /// The address actually listened on (for ephemeral ports).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits up to `timeout` for one received message.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Message> {
        match self.inbound.recv_timeout(timeout) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }
}

impl Transport for TcpTransport {
    fn send(&self, msg: Message) {
        let to = NodeId(msg.to);
        let Some((_, tx)) = self.peers.get(&to) else {
            tracing::debug!(local = %self.local, %to, "raft message for an unknown peer dropped");
            self.stats
                .dropped_outbound_messages
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats
                    .dropped_outbound_messages
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn try_recv_many(&self, max: usize) -> Vec<Message> {
        self.inbound.try_iter().take(max).collect()
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        // Closing the queues ends the sender threads' waits.
        self.peers.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Writes one frame: length (u32 BE) then the message bytes.
pub fn write_frame(w: &mut impl Write, msg: &Message, frame_bytes_max: u32) -> Result<()> {
    let bytes = msg.write_to_bytes().map_err(|e| Error::Codec {
        what: "raft message",
        reason: e.to_string(),
    })?;
    if bytes.len() > frame_bytes_max as usize {
        return Err(Error::Frame {
            peer: msg.to.to_string(),
            reason: format!(
                "{} bytes over frame_bytes_max {frame_bytes_max}",
                bytes.len()
            ),
        });
    }
    w.write_all(&(bytes.len() as u32).to_be_bytes())
        .and_then(|()| w.write_all(&bytes))
        .map_err(|e| Error::io("write", format!("raft peer {}", msg.to), e))
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub fn read_frame(r: &mut impl Read, frame_bytes_max: u32, peer: &str) -> Result<Option<Message>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("read", peer.to_string(), e)),
    }
    let len = u32::from_be_bytes(len);
    if len > frame_bytes_max {
        return Err(Error::Frame {
            peer: peer.to_string(),
            reason: format!("length {len} over frame_bytes_max {frame_bytes_max}"),
        });
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)
        .map_err(|e| Error::io("read", peer.to_string(), e))?;
    Message::parse_from_bytes(&buf)
        .map(Some)
        .map_err(|e| Error::Frame {
            peer: peer.to_string(),
            reason: e.to_string(),
        })
}

fn sleep_unless_shutdown(ms: u64, shutdown: &AtomicBool) {
    let mut left = ms;
    while left > 0 && !shutdown.load(Ordering::Relaxed) {
        let step = left.min(POLL_MS);
        std::thread::sleep(Duration::from_millis(step));
        left -= step;
    }
}

fn send_loop(
    peer: NodeId,
    addr: SocketAddr,
    rx: Receiver<Message>,
    stats: Arc<TransportStats>,
    shutdown: Arc<AtomicBool>,
    config: TcpTransportConfig,
) {
    let mut conn: Option<BufWriter<TcpStream>> = None;
    let mut backoff_ms = config.reconnect_backoff_initial_ms;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(POLL_MS * 5)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if shutdown.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if conn.is_none() {
            let timeout = Duration::from_millis(config.connect_timeout_ms);
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stats.connects.fetch_add(1, Ordering::Relaxed);
                    backoff_ms = config.reconnect_backoff_initial_ms;
                    conn = Some(BufWriter::new(s));
                }
                Err(e) => {
                    stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    stats
                        .dropped_outbound_messages
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, %addr, error = %e, backoff_ms, "raft peer connect failed");
                    sleep_unless_shutdown(backoff_ms, &shutdown);
                    backoff_ms = (backoff_ms * 2).min(config.reconnect_backoff_max_ms);
                    continue;
                }
            }
        }
        let Some(w) = conn.as_mut() else { continue };
        // Write what is queued now, then flush once.
        let mut result = write_frame(w, &first, config.frame_bytes_max);
        let mut written = 1u64;
        while result.is_ok() {
            match rx.try_recv() {
                Ok(m) => {
                    result = write_frame(w, &m, config.frame_bytes_max);
                    written += 1;
                }
                Err(_) => break,
            }
        }
        let result = result.and_then(|()| {
            w.flush()
                .map_err(|e| Error::io("flush", format!("raft peer {peer}"), e))
        });
        match result {
            Ok(()) => {
                stats.sent_messages.fetch_add(written, Ordering::Relaxed);
            }
            Err(Error::Frame { reason, .. }) => {
                // One oversized message: skip it, the connection is fine
                // only if nothing was half-written, so start over.
                tracing::warn!(%peer, %reason, "raft message too large, dropped");
                stats
                    .dropped_outbound_messages
                    .fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "raft peer connection lost");
                stats
                    .dropped_outbound_messages
                    .fetch_add(written, Ordering::Relaxed);
                conn = None;
                sleep_unless_shutdown(backoff_ms, &shutdown);
                backoff_ms = (backoff_ms * 2).min(config.reconnect_backoff_max_ms);
            }
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    in_tx: SyncSender<Message>,
    stats: Arc<TransportStats>,
    shutdown: Arc<AtomicBool>,
    config: TcpTransportConfig,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    while !shutdown.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, from)) => {
                if open.load(Ordering::Relaxed) >= config.inbound_connections_max {
                    tracing::warn!(%from, limit = config.inbound_connections_max, "raft: too many inbound connections, closing one");
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let (in_tx, stats, shutdown, open) =
                    (in_tx.clone(), stats.clone(), shutdown.clone(), open.clone());
                let frame_bytes_max = config.frame_bytes_max;
                let spawned =
                    std::thread::Builder::new()
                        .name("raft-recv".into())
                        .spawn(move || {
                            read_loop(stream, from, in_tx, &stats, &shutdown, frame_bytes_max);
                            open.fetch_sub(1, Ordering::Relaxed);
                        });
                match spawned {
                    Ok(h) => readers.push(h),
                    Err(e) => tracing::warn!(error = %e, "raft: cannot spawn a reader thread"),
                }
                readers.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(POLL_MS / 2));
            }
            Err(e) => {
                tracing::warn!(error = %e, "raft: accept failed");
                std::thread::sleep(Duration::from_millis(POLL_MS));
            }
        }
    }
    for h in readers {
        let _ = h.join();
    }
}

fn read_loop(
    stream: TcpStream,
    from: SocketAddr,
    in_tx: SyncSender<Message>,
    stats: &TransportStats,
    shutdown: &AtomicBool,
    frame_bytes_max: u32,
) {
    // Accepted sockets may inherit non-blocking mode; reads block with a
    // timeout instead, so shutdown is noticed.
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(POLL_MS * 5)))
            .is_err()
    {
        return;
    }
    let peer = from.to_string();
    let mut reader = TimeoutReader {
        inner: stream,
        shutdown,
    };
    // Checked between frames too: a busy peer never lets a read time out.
    while !shutdown.load(Ordering::Relaxed) {
        match read_frame(&mut reader, frame_bytes_max, &peer) {
            Ok(Some(m)) => {
                stats.received_messages.fetch_add(1, Ordering::Relaxed);
                match in_tx.try_send(m) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        stats
                            .dropped_inbound_messages
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            Ok(None) => return,
            Err(e) => {
                if !shutdown.load(Ordering::Relaxed) {
                    stats.bad_frames.fetch_add(
                        u64::from(matches!(e, Error::Frame { .. })),
                        Ordering::Relaxed,
                    );
                    tracing::debug!(%peer, error = %e, "raft: inbound connection closed");
                }
                return;
            }
        }
    }
}

/// Retries reads that timed out (the timeout exists only to check for
/// shutdown), so frames split across timeouts still read whole.
struct TimeoutReader<'a> {
    inner: TcpStream,
    shutdown: &'a AtomicBool,
}

impl Read for TimeoutReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.shutdown.load(Ordering::Relaxed) {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "transport shutting down",
                        ));
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    fn msg(from: u64, to: u64, term: u64) -> Message {
        Message {
            msg_type: MessageType::MsgHeartbeat,
            from,
            to,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &msg(1, 2, 5), 1024).unwrap();
        write_frame(&mut buf, &msg(2, 1, 6), 1024).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 1024, "t").unwrap().unwrap().term, 5);
        assert_eq!(read_frame(&mut r, 1024, "t").unwrap().unwrap().term, 6);
        assert!(read_frame(&mut r, 1024, "t").unwrap().is_none());
        let mut big = Vec::new();
        write_frame(&mut big, &msg(1, 2, 5), 1024).unwrap();
        assert!(matches!(
            read_frame(&mut &big[..], 2, "t"),
            Err(Error::Frame { .. })
        ));
        assert!(matches!(
            write_frame(&mut Vec::new(), &msg(1, 2, 5), 2),
            Err(Error::Frame { .. })
        ));
    }

    #[test]
    fn two_transports_exchange_messages_and_a_full_peer_queue_drops() {
        let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let peers: BTreeMap<NodeId, SocketAddr> = [
            (NodeId(1), l1.local_addr().unwrap()),
            (NodeId(2), l2.local_addr().unwrap()),
        ]
        .into();
        let t1 = TcpTransport::start(NodeId(1), l1, peers.clone(), TcpTransportConfig::default())
            .unwrap();
        let t2 = TcpTransport::start(NodeId(2), l2, peers, TcpTransportConfig::default()).unwrap();
        t1.send(msg(1, 2, 9));
        let got = t2
            .recv_timeout(Duration::from_secs(5))
            .expect("message over TCP");
        assert_eq!((got.from, got.term), (1, 9));
        t2.send(msg(2, 1, 10));
        assert_eq!(t1.recv_timeout(Duration::from_secs(5)).unwrap().term, 10);
        // A peer that does not exist (nobody listens): its queue fills and drops.
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let l3 = TcpListener::bind("127.0.0.1:0").unwrap();
        let cfg = TcpTransportConfig {
            peer_queue_messages_max: 4,
            reconnect_backoff_initial_ms: 500,
            ..TcpTransportConfig::default()
        };
        let t3 = TcpTransport::start(NodeId(3), l3, [(NodeId(4), dead_addr)].into(), cfg).unwrap();
        for i in 0..50 {
            t3.send(msg(3, 4, i));
        }
        assert!(t3.stats().dropped_outbound_messages.load(Ordering::Relaxed) >= 40);
        t3.send(msg(3, 99, 1));
        assert!(t3.stats().dropped_outbound_messages.load(Ordering::Relaxed) >= 41);
    }
}
