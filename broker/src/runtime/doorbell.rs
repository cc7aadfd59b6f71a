//! A doorbell: how a thread outside the executors (the metadata raft member) tells a shard
//! "look at your mailbox".
//!
//! A shard must never be woken through a waker from another thread: glommio 0.9's foreign
//! wake path races with task completion and has freed a task twice in this broker (glibc's
//! "double free detected in tcache 2", backtrace in `SleepNotifier::process_foreign_wakes`).
//! So the other thread does not complete a future the shard awaits; it puts its message in a
//! mailbox it shares with the shard (a mutex-guarded queue) and writes one byte to a socket
//! pair. The shard reads the other end through its own io_uring: the wake-up is an ordinary
//! completion on the shard's own thread. Several rings before the shard looks coalesce into
//! one read.

use std::io::{ErrorKind, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;

use futures_lite::io::AsyncReadExt;

/// Bytes drained per wake (rings beyond this are read by the next call).
const RINGS_PER_READ_MAX: usize = 64;

/// The ringing end: any thread, cheap to clone.
#[derive(Clone)]
pub struct Ringer(Arc<StdUnixStream>);

impl Ringer {
    /// Rings; never blocks. A full socket buffer means the shard has rings it has not read
    /// yet, which is as good as this one.
    pub fn ring(&self) {
        match (&*self.0).write(&[1]) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => tracing::debug!(error = %e, "doorbell ring failed (its shard stopped)"),
        }
    }
}

/// The shard's end before its executor runs (moved into the executor thread).
pub struct DoorbellSocket(StdUnixStream);

/// A new doorbell: the ringer for other threads, the socket for the shard.
pub fn doorbell() -> std::io::Result<(Ringer, DoorbellSocket)> {
    let (ring, listen) = StdUnixStream::pair()?;
    ring.set_nonblocking(true)?;
    listen.set_nonblocking(true)?;
    Ok((Ringer(Arc::new(ring)), DoorbellSocket(listen)))
}

/// The shard's end, read through its io_uring.
pub struct Doorbell {
    stream: glommio::net::UnixStream,
}

impl Doorbell {
    /// Takes over the socket on the shard's executor.
    pub(super) fn open(socket: DoorbellSocket) -> Doorbell {
        let fd = socket.0.into_raw_fd();
        // SAFETY: `fd` was just released by its only owner, the std socket, so the glommio
        // stream becomes its sole owner and closes it on drop.
        let stream = unsafe { glommio::net::UnixStream::from_raw_fd(fd) };
        Doorbell { stream }
    }

    /// Waits for one or more rings. False once no ringer is left (the broker is stopping).
    pub async fn rung(&mut self) -> bool {
        let mut buf = [0u8; RINGS_PER_READ_MAX];
        match self.stream.read(&mut buf).await {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "doorbell read failed; the shard stops listening for the metadata member");
                false
            }
        }
    }
}
