//! Raw protocol bytes for the bad-input tests: request headers and frames built by hand,
//! sockets that send them, and the check that the broker closed such a connection.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use super::{tcp_connect, Broker};

/// How long a bad connection may stay open before the test calls it a hang.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads until the broker closes the socket (EOF or reset); fails on a timeout.
pub fn assert_closed(mut s: std::net::TcpStream, what: &str) {
    s.set_read_timeout(Some(CLOSE_TIMEOUT)).unwrap();
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {} // an error answer before closing is allowed
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the broker kept the connection open for {CLOSE_TIMEOUT:?}")
            }
            Err(_) => return, // reset
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the broker kept sending and never closed the connection"
        );
    }
}

/// Writes `bytes` (a write error means the broker already closed: fine).
pub fn send_raw(broker: &Broker, bytes: &[u8], half_close: bool) -> std::net::TcpStream {
    let mut s = tcp_connect(broker.addr(), CLOSE_TIMEOUT);
    let _ = s.write_all(bytes);
    let _ = s.flush();
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    s
}

/// A request header (v1: api key, version, correlation id, client id) for a frame body.
pub fn header(api_key: i16, version: i16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&api_key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&7i32.to_be_bytes());
    let client = b"bad-input";
    h.extend_from_slice(&(client.len() as i16).to_be_bytes());
    h.extend_from_slice(client);
    h
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}
