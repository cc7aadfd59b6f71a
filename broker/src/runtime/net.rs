//! TCP on a shard's io_uring: the SO_REUSEPORT listener every shard binds (the kernel spreads
//! connections over them) and streams, accepted or opened (the replica fetchers').

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};

/// A listening socket of this shard.
pub struct Listener(TcpListener);

impl Listener {
    /// Binds `addr` with SO_REUSEPORT (every shard binds the same address).
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        TcpListener::bind(addr)
            .map(Listener)
            .map_err(io::Error::from)
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        self.0.accept().await.map(Stream).map_err(io::Error::from)
    }
}

/// A TCP connection on this shard.
pub struct Stream(TcpStream);

impl Stream {
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr().map_err(io::Error::from)
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.0.set_nodelay(on).map_err(io::Error::from)
    }
}

/// Connects to `addr` from this shard, giving up after `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
    TcpStream::connect_timeout(addr, timeout)
        .await
        .map(Stream)
        .map_err(io::Error::from)
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
