//! The I/O a partition log needs, behind two traits so the log runs on
//! glommio's io_uring direct I/O in production ([`dma::DmaBackend`]) and on an
//! in-memory file system in unit and property tests ([`memory::MemoryBackend`]),
//! which can also simulate a crash that loses unsynced writes.
//!
//! Segment writes are direct I/O: positions and lengths are multiples of
//! [`ALIGN_BYTES`]; the log pads the last page and rewrites it on the next
//! flush. Both backends enforce that alignment so a misaligned write fails
//! in unit tests the same way it would with `O_DIRECT`.

use std::ops::{Deref, DerefMut};
use std::path::Path;

use bytes::Bytes;

use crate::error::StorageResult;

pub mod dma;
pub mod memory;

/// Direct I/O alignment of positions and lengths.
pub const ALIGN_BYTES: u64 = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(ALIGN_BYTES - 1)
}

pub fn align_up(v: u64) -> u64 {
    (v + ALIGN_BYTES - 1) & !(ALIGN_BYTES - 1)
}

/// A file system for partition logs. Handles are cheap to clone.
#[allow(async_fn_in_trait)]
pub trait Backend: Clone + 'static {
    type File: SegmentFile;

    /// Opens a segment file for direct I/O, creating it if `create`.
    async fn open_segment(&self, path: &Path, create: bool) -> StorageResult<Self::File>;
    async fn create_dir_all(&self, dir: &Path) -> StorageResult<()>;
    /// Names of the entries of `dir` (not paths).
    async fn list_dir(&self, dir: &Path) -> StorageResult<Vec<String>>;
    /// Removes a file; a missing file is not an error.
    async fn remove_file(&self, path: &Path) -> StorageResult<()>;
    async fn remove_dir_all(&self, dir: &Path) -> StorageResult<()>;
    /// Removes a file or directory tree that no log needs any more, without
    /// stalling the caller: its name is gone when this returns, its space may
    /// be freed later (see [`crate::reaper`]). A missing path is not an error.
    async fn discard(&self, path: &Path) -> StorageResult<()>;
    /// Reads a small metadata file whole; `None` if it does not exist.
    async fn read_small(&self, path: &Path) -> StorageResult<Option<Vec<u8>>>;
    /// Replaces a small metadata file atomically: write a temporary file,
    /// fsync it, rename over `path`, fsync the directory.
    async fn write_small_atomic(&self, path: &Path, data: &[u8]) -> StorageResult<()>;
    /// Makes created, renamed and removed entries of `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> StorageResult<()>;
    /// Renames `from` to `to`, atomically replacing `to` if it exists (rename(2));
    /// durable once [`Backend::sync_dir`] of the directory returns.
    async fn rename(&self, from: &Path, to: &Path) -> StorageResult<()>;
    /// Lets the shard's other tasks run if this one has run for long: a long
    /// CPU-bound loop (the log cleaner's) calls it between steps.
    async fn yield_now(&self);
    /// Waits `d` without holding up the shard's other tasks (the log cleaner's I/O
    /// budget).
    async fn sleep(&self, d: std::time::Duration);
}

/// An open segment file.
#[allow(async_fn_in_trait)]
pub trait SegmentFile: 'static {
    /// A buffer suitable for [`SegmentFile::write_at`] (aligned memory for DMA).
    type Buf: DerefMut<Target = [u8]> + 'static;

    /// A buffer of `len` bytes (a multiple of [`ALIGN_BYTES`]) whose contents
    /// are unspecified: the caller fills every byte it writes (zeroing a
    /// buffer it then overwrites would cost a pass over every byte written).
    fn alloc(&self, len: usize) -> Self::Buf;
    /// Writes the whole buffer at `pos`; both aligned.
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> StorageResult<()>;
    /// Reads up to `len` bytes at `pos` (any alignment); short at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> StorageResult<Bytes>;
    /// A buffer [`SegmentFile::read_aligned`] reads into.
    type ReadBuf: Deref<Target = [u8]> + 'static;
    /// Reads up to `len` bytes at `pos` (both aligned) into the backend's own
    /// buffer, without the copy into `Bytes` that [`SegmentFile::read_at`]
    /// makes; short at end of file.
    async fn read_aligned(&self, pos: u64, len: usize) -> StorageResult<Self::ReadBuf>;
    /// fdatasync: everything written so far survives a crash.
    async fn sync(&self) -> StorageResult<()>;
    async fn truncate(&self, len: u64) -> StorageResult<()>;
    /// Grows the file to at least `len` bytes of allocated, zero-reading
    /// blocks (fallocate without KEEP_SIZE); never shrinks it. Direct writes
    /// inside the file's size are plain overwrites, which the file system
    /// runs concurrently and without a worker thread, unlike size-extending
    /// writes.
    async fn preallocate(&self, len: u64) -> StorageResult<()>;
    async fn size(&self) -> StorageResult<u64>;
    async fn close(self) -> StorageResult<()>;
}
