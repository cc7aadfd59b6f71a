//! Production backend: glommio `DmaFile` (io_uring, `O_DIRECT`).
//!
//! This is one of the three modules allowed to name glommio types (with the
//! shard runtime and the network loop). Every future here must run on a
//! glommio executor: the shard that owns the partition.

use std::cell::Cell;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use super::{Backend, SegmentFile};
use crate::error::{StorageError, StorageResult};

/// DMA buffer arena a shard's executor should be built with
/// (`LocalExecutorBuilder::io_memory`). Every direct read and write buffer
/// comes from it; when it runs out glommio falls back to a fresh heap
/// allocation per I/O (page faults and zeroing on every buffer, half the
/// read throughput measured). glommio's default of 10 MiB does not even hold
/// one partition's read-ahead and write-behind (8 MiB each by default).
pub const SHARD_IO_MEMORY_BYTES: usize = 64 << 20;

/// Longest a background task (the log cleaner) works between two pauses in which the shard
/// polls its sockets (see `Backend::yield_now`).
pub const BACKGROUND_SLICE: std::time::Duration = std::time::Duration::from_micros(500);

thread_local! {
    /// When this shard's background work last paused.
    static LAST_PAUSE: Cell<std::time::Instant> = Cell::new(std::time::Instant::now());
}

#[derive(Clone, Default)]
pub struct DmaBackend;

impl DmaBackend {
    pub fn new() -> Self {
        DmaBackend
    }
}

fn gio(path: &Path, e: glommio::GlommioError<()>) -> StorageError {
    StorageError::io(path, io::Error::from(e))
}

pub struct DmaSegment {
    path: PathBuf,
    file: DmaFile,
}

/// A DMA buffer as a plain byte slice.
pub struct AlignedBuf(DmaBuffer);

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}

thread_local! {
    /// [`probe_iopoll`]'s progress on this executor thread: not started, running, done.
    static IOPOLL_PROBE: Cell<u8> = const { Cell::new(PROBE_NOT_STARTED) };
}
const PROBE_NOT_STARTED: u8 = 0;
const PROBE_RUNNING: u8 = 1;
const PROBE_DONE: u8 = 2;

/// glommio decides, once per device and executor thread, whether reads may use the io_uring poll
/// ring, by reading the first block of the first `DmaFile` opened on it. When that file is
/// empty the read "succeeds" at end of file, the device is taken for iopoll-capable, and
/// every later read fails with EOPNOTSUPP on devices without polled I/O (virtio disks, most
/// cloud volumes). So before the first real open, open a file that holds a block of data
/// next to it: the probe then sees the device's real answer. glommio keeps that answer per
/// thread, so every executor probes once, and its other tasks wait until it has.
async fn probe_iopoll(near: &Path) -> StorageResult<()> {
    loop {
        match IOPOLL_PROBE.with(Cell::get) {
            PROBE_DONE => return Ok(()),
            PROBE_NOT_STARTED => {
                IOPOLL_PROBE.with(|p| p.set(PROBE_RUNNING));
                let result = open_probe_file(near).await;
                let next = if result.is_ok() {
                    PROBE_DONE
                } else {
                    PROBE_NOT_STARTED
                };
                IOPOLL_PROBE.with(|p| p.set(next));
                return result;
            }
            // Another task of this executor is probing: wait without blocking the thread.
            _ => glommio::timer::sleep(std::time::Duration::from_millis(1)).await,
        }
    }
}

async fn open_probe_file(near: &Path) -> StorageResult<()> {
    let dir = near.parent().unwrap_or(Path::new("."));
    // Named per thread: executors probe at the same time, possibly in the same directory.
    let probe = dir.join(format!(
        ".rill-iopoll-probe-{:?}",
        std::thread::current().id()
    ));
    std::fs::write(&probe, [0x5au8; 4096]).map_err(|e| StorageError::io(&probe, e))?;
    let opened = OpenOptions::new().read(true).dma_open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    let file = opened.map_err(|e| gio(&probe, e))?;
    file.close().await.map_err(|e| gio(&probe, e))
}

impl Backend for DmaBackend {
    type File = DmaSegment;

    async fn open_segment(&self, path: &Path, create: bool) -> StorageResult<DmaSegment> {
        probe_iopoll(path).await?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await
            .map_err(|e| gio(path, e))?;
        Ok(DmaSegment {
            path: path.to_path_buf(),
            file,
        })
    }

    async fn create_dir_all(&self, dir: &Path) -> StorageResult<()> {
        // Rare (partition creation); the blocking call is short.
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))
    }

    async fn list_dir(&self, dir: &Path) -> StorageResult<Vec<String>> {
        let rd = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    async fn remove_file(&self, path: &Path) -> StorageResult<()> {
        gone_is_fine(path, glommio::io::remove(path).await)
    }

    async fn remove_dir_all(&self, dir: &Path) -> StorageResult<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::io(dir, e)),
            _ => Ok(()),
        }
    }

    async fn discard(&self, path: &Path) -> StorageResult<()> {
        let gone = crate::reaper::deleted_name(path);
        let renamed = glommio::io::rename(path, &gone).await;
        if renamed.is_ok() {
            crate::reaper::reap(gone);
        }
        gone_is_fine(path, renamed)
    }

    async fn rename(&self, from: &Path, to: &Path) -> StorageResult<()> {
        glommio::io::rename(from, to)
            .await
            .map_err(|e| gio(from, e))
    }

    async fn yield_now(&self) {
        // glommio preempts a busy task only every 100 ms (its default preempt timer), and
        // a yield that stays runnable does not let the reactor look at the network: after
        // BACKGROUND_SLICE of work the task sleeps for a moment instead, so the shard polls
        // its sockets and runs what they woke before the work goes on.
        let now = std::time::Instant::now();
        let due = LAST_PAUSE.with(|last| {
            let due = now.duration_since(last.get()) >= BACKGROUND_SLICE;
            if due {
                last.set(now);
            }
            due
        });
        if due {
            glommio::timer::sleep(std::time::Duration::from_micros(1)).await;
            LAST_PAUSE.with(|last| last.set(std::time::Instant::now()));
        }
    }

    async fn sleep(&self, d: std::time::Duration) {
        glommio::timer::sleep(d).await;
        LAST_PAUSE.with(|last| last.set(std::time::Instant::now()));
    }

    async fn read_small(&self, path: &Path) -> StorageResult<Option<Vec<u8>>> {
        let file = match glommio::io::BufferedFile::open(path).await {
            Ok(f) => f,
            Err(e) => {
                let e = io::Error::from(e);
                return if e.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(StorageError::io(path, e))
                };
            }
        };
        let size = file.file_size().await.map_err(|e| gio(path, e))?;
        let data = file
            .read_at(0, size as usize)
            .await
            .map_err(|e| gio(path, e))?;
        let out = data.to_vec();
        file.close().await.map_err(|e| gio(path, e))?;
        Ok(Some(out))
    }

    async fn write_small_atomic(&self, path: &Path, data: &[u8]) -> StorageResult<()> {
        let tmp = path.with_extension("tmp");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(&tmp)
            .await
            .map_err(|e| gio(&tmp, e))?;
        file.write_at(data.to_vec(), 0)
            .await
            .map_err(|e| gio(&tmp, e))?;
        file.fdatasync().await.map_err(|e| gio(&tmp, e))?;
        file.close().await.map_err(|e| gio(&tmp, e))?;
        glommio::io::rename(&tmp, path)
            .await
            .map_err(|e| gio(path, e))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        self.sync_dir(dir).await
    }

    async fn sync_dir(&self, dir: &Path) -> StorageResult<()> {
        // glommio fails to open a directory by a relative path (EBADF).
        let dir = &std::path::absolute(dir).map_err(|e| StorageError::io(dir, e))?;
        let d = glommio::io::Directory::open(dir)
            .await
            .map_err(|e| gio(dir, e))?;
        d.sync().await.map_err(|e| gio(dir, e))?;
        d.close().await.map_err(|e| gio(dir, e))
    }
}

impl SegmentFile for DmaSegment {
    type Buf = AlignedBuf;

    fn alloc(&self, len: usize) -> AlignedBuf {
        AlignedBuf(self.file.alloc_dma_buffer(len))
    }

    async fn write_at(&self, buf: AlignedBuf, pos: u64) -> StorageResult<()> {
        let want = buf.len();
        let done = self
            .file
            .write_at(buf.0, pos)
            .await
            .map_err(|e| gio(&self.path, e))?;
        // The log only reports data durable after a full write and a sync, so
        // a short direct write (full disk, quota) must surface as an error.
        if done < want {
            return Err(StorageError::io(
                &self.path,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short direct write: {done} of {want} bytes at {pos}"),
                ),
            ));
        }
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> StorageResult<Bytes> {
        let r = self
            .file
            .read_at(pos, len)
            .await
            .map_err(|e| gio(&self.path, e))?;
        Ok(Bytes::copy_from_slice(&r))
    }

    type ReadBuf = ReadResult;

    async fn read_aligned(&self, pos: u64, len: usize) -> StorageResult<ReadResult> {
        self.file
            .read_at_aligned(pos, len)
            .await
            .map_err(|e| gio(&self.path, e))
    }

    async fn sync(&self) -> StorageResult<()> {
        self.file.fdatasync().await.map_err(|e| gio(&self.path, e))
    }

    async fn truncate(&self, len: u64) -> StorageResult<()> {
        self.file
            .truncate(len)
            .await
            .map_err(|e| gio(&self.path, e))
    }

    async fn preallocate(&self, len: u64) -> StorageResult<()> {
        self.file
            .pre_allocate(len, false)
            .await
            .map_err(|e| gio(&self.path, e))
    }

    async fn size(&self) -> StorageResult<u64> {
        self.file.file_size().await.map_err(|e| gio(&self.path, e))
    }

    async fn close(self) -> StorageResult<()> {
        self.file.close().await.map_err(|e| gio(&self.path, e))
    }
}

/// A file that is already gone is what removing it wanted.
fn gone_is_fine(path: &Path, r: Result<(), glommio::GlommioError<()>>) -> StorageResult<()> {
    match r.map_err(io::Error::from) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::io(path, e)),
        _ => Ok(()),
    }
}
