//! Kafka framing: every request and response is a 4-byte big-endian signed length followed
//! by that many payload bytes.
//!
//! [`decode_frame`] cuts frames out of a connection's read buffer without copying (the
//! payload is `split_to().freeze()` of the buffer, so a Produce request's record batches stay
//! slices of the bytes the socket delivered). [`FrameReader`] drives it over any
//! `futures_lite` [`AsyncRead`] (glommio's `TcpStream` in the broker, anything in tests), and
//! [`write_pieces`] writes a response made of several `Bytes` (header, body, record slices)
//! with vectored writes. A `FrameReader` belongs to the one connection task that reads it.

use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::FrameError;

/// Size of the length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Smallest request payload: api key (2) + api version (2) + correlation id (4) + client id
/// length (2). Every request header version Rill accepts (v1, v2) has at least these.
pub const REQUEST_FRAME_BYTES_MIN: usize = 10;

/// Smallest response payload: the correlation id.
pub const RESPONSE_FRAME_BYTES_MIN: usize = 4;

/// Kafka's `socket.request.max.bytes` default (100 MiB).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 104_857_600;

/// Bounds on a single frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest accepted payload (the length prefix value), in bytes.
    pub frame_bytes_max: usize,
    /// Smallest accepted payload, in bytes: a frame shorter than a header is garbage.
    pub frame_bytes_min: usize,
}

impl FrameLimits {
    /// Limits for a broker reading requests.
    pub const fn requests() -> Self {
        FrameLimits {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            frame_bytes_min: REQUEST_FRAME_BYTES_MIN,
        }
    }

    /// Limits for a client reading responses (a Fetch response can be as large as the
    /// request's `max_bytes`, so callers raise `frame_bytes_max` to match).
    pub const fn responses() -> Self {
        FrameLimits {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            frame_bytes_min: RESPONSE_FRAME_BYTES_MIN,
        }
    }
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self::requests()
    }
}

/// Checks a length prefix against the limits and returns the payload length.
fn check_length(raw: i32, limits: &FrameLimits) -> Result<usize, FrameError> {
    if raw < 0 {
        return Err(FrameError::NegativeLength { length: raw });
    }
    let length = raw as usize;
    if length > limits.frame_bytes_max {
        return Err(FrameError::TooLarge {
            length,
            frame_bytes_max: limits.frame_bytes_max,
        });
    }
    if length < limits.frame_bytes_min {
        return Err(FrameError::TooSmall {
            length,
            frame_bytes_min: limits.frame_bytes_min,
        });
    }
    Ok(length)
}

/// Cuts the next complete frame's payload off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (nothing is consumed), and an
/// error as soon as the length prefix is known to be bad, before its payload arrives, so a
/// hostile prefix never makes the caller buffer anything.
pub fn decode_frame(buf: &mut BytesMut, limits: &FrameLimits) -> Result<Option<Bytes>, FrameError> {
    let Some(length) = peek_length(buf, limits)? else {
        return Ok(None);
    };
    if buf.len() < FRAME_PREFIX_BYTES + length {
        return Ok(None);
    }
    buf.advance(FRAME_PREFIX_BYTES);
    Ok(Some(buf.split_to(length).freeze()))
}

/// The payload length of the frame at the front of `buf`, if its prefix has arrived.
fn peek_length(buf: &[u8], limits: &FrameLimits) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..FRAME_PREFIX_BYTES) else {
        return Ok(None);
    };
    let raw = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    check_length(raw, limits).map(Some)
}

/// The 4-byte length prefix for a payload of `payload_bytes`.
pub fn frame_prefix(payload_bytes: usize) -> Result<[u8; 4], FrameError> {
    let length = i32::try_from(payload_bytes).map_err(|_| FrameError::TooLarge {
        length: payload_bytes,
        frame_bytes_max: i32::MAX as usize,
    })?;
    Ok(length.to_be_bytes())
}

/// Default size of one read from the socket when no frame is partially buffered.
pub const READ_CHUNK_BYTES_DEFAULT: usize = 64 * 1024;

/// Largest window initialised and handed to one `read` call.
const READ_WINDOW_BYTES_MAX: usize = 1024 * 1024;

/// Reads frames from a byte stream.
///
/// The read buffer holds at most one frame plus one read chunk (`read_chunk_bytes`), so its
/// size is bounded by `frame_bytes_max + read_chunk_bytes`. Payloads returned by
/// [`FrameReader::next_frame`] share the buffer's allocation; holding them keeps that memory
/// alive, which is the price of not copying produced records.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    limits: FrameLimits,
    read_chunk_bytes: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader with the given limits and the default read chunk.
    pub fn new(reader: R, limits: FrameLimits) -> Self {
        Self::with_read_chunk(reader, limits, READ_CHUNK_BYTES_DEFAULT)
    }

    /// A reader that asks the stream for `read_chunk_bytes` at a time (at least 64).
    pub fn with_read_chunk(reader: R, limits: FrameLimits, read_chunk_bytes: usize) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::new(),
            limits,
            read_chunk_bytes: read_chunk_bytes.max(64),
        }
    }

    /// The next frame's payload; `Ok(None)` when the stream ends cleanly between frames.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, &self.limits)? {
                return Ok(Some(frame));
            }
            // Read at least what the partial frame still needs (so a large frame is not
            // assembled from many small reads), and at least one chunk so that many small
            // pipelined frames arrive in one syscall.
            let needed = match peek_length(&self.buf, &self.limits)? {
                Some(length) => FRAME_PREFIX_BYTES + length - self.buf.len(),
                None => FRAME_PREFIX_BYTES - self.buf.len(),
            };
            // Reserve the whole frame up front (address space only, so the payload is
            // assembled without reallocation) but initialise and read at most
            // READ_WINDOW_BYTES_MAX at a time: a hostile 100 MiB prefix then costs memory only
            // as its bytes actually arrive.
            self.buf.reserve(needed);
            let want = needed.min(READ_WINDOW_BYTES_MAX).max(self.read_chunk_bytes);
            let filled = self.buf.len();
            // AsyncRead needs initialised memory; zeroing the window is cheap next to the
            // syscall, and avoids unsafe code.
            self.buf.resize(filled + want, 0);
            let read = self.reader.read(&mut self.buf[filled..]).await;
            let read = match read {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.buf.truncate(filled);
                    continue;
                }
                Err(e) => {
                    self.buf.truncate(filled);
                    return Err(FrameError::Io(e));
                }
            };
            self.buf.truncate(filled + read);
            if read == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let expected_bytes = match peek_length(&self.buf, &self.limits)? {
                    Some(length) => FRAME_PREFIX_BYTES + length,
                    None => FRAME_PREFIX_BYTES,
                };
                return Err(FrameError::TruncatedFrame {
                    buffered_bytes: self.buf.len(),
                    expected_bytes,
                });
            }
        }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The limits in force.
    pub fn limits(&self) -> &FrameLimits {
        &self.limits
    }

    /// Changes the limits (a client raising `frame_bytes_max` for large fetches).
    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    /// The underlying stream and any bytes read past the last frame.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.reader, self.buf)
    }
}

/// Largest number of slices handed to one `write_vectored` call (Linux allows 1024).
const IOV_SLICES_MAX: usize = 64;

/// Writes every byte of `pieces`, in order, using vectored writes and handling partial
/// writes. `pieces` is consumed: on return (success or error) it is in an unspecified state.
/// Does not flush: callers that batch several responses flush once after the last.
pub async fn write_pieces<W: AsyncWrite + Unpin>(
    writer: &mut W,
    pieces: &mut [Bytes],
) -> io::Result<()> {
    let mut first = 0;
    while first < pieces.len() {
        if pieces[first].is_empty() {
            first += 1;
            continue;
        }
        let written = {
            let slices: Vec<IoSlice<'_>> = pieces[first..]
                .iter()
                .filter(|p| !p.is_empty())
                .take(IOV_SLICES_MAX)
                .map(|p| IoSlice::new(p))
                .collect();
            match writer.write_vectored(&slices).await {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "stream accepted no bytes",
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let mut left = written;
        while left > 0 && first < pieces.len() {
            let piece = &mut pieces[first];
            if piece.len() <= left {
                left -= piece.len();
                *piece = Bytes::new();
                first += 1;
            } else {
                piece.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}

/// Writes one frame (prefix + `payload`).
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, payload: Bytes) -> io::Result<()> {
    let prefix = frame_prefix(payload.len()).map_err(|e| io::Error::other(e.to_string()))?;
    let mut pieces = [Bytes::copy_from_slice(&prefix), payload];
    write_pieces(writer, &mut pieces).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_back_to_back_frames() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&framed(b"0123456789"));
        buf.extend_from_slice(&framed(b"abcdefghijkl"));
        let limits = FrameLimits::default();
        assert_eq!(
            &decode_frame(&mut buf, &limits).unwrap().unwrap()[..],
            b"0123456789"
        );
        assert_eq!(
            &decode_frame(&mut buf, &limits).unwrap().unwrap()[..],
            b"abcdefghijkl"
        );
        assert!(decode_frame(&mut buf, &limits).unwrap().is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn payload_shares_the_read_buffer() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&framed(b"0123456789"));
        let base = buf.as_ptr() as usize;
        let frame = decode_frame(&mut buf, &FrameLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(frame.as_ptr() as usize, base + FRAME_PREFIX_BYTES);
    }

    #[test]
    fn prefix_rejects_oversize() {
        assert!(frame_prefix(i32::MAX as usize).is_ok());
        assert!(frame_prefix(i32::MAX as usize + 1).is_err());
    }

    #[test]
    fn vectored_write_handles_partial_writes() {
        // A writer that accepts at most 3 bytes per call.
        struct Trickle(Vec<u8>);
        impl AsyncWrite for Trickle {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<io::Result<usize>> {
                let n = buf.len().min(3);
                self.get_mut().0.extend_from_slice(&buf[..n]);
                std::task::Poll::Ready(Ok(n))
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
        let mut w = Trickle(Vec::new());
        let mut pieces = [
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cdefg"),
            Bytes::from_static(b"h"),
        ];
        futures_lite::future::block_on(write_pieces(&mut w, &mut pieces)).unwrap();
        assert_eq!(w.0, b"abcdefgh");
    }
}
