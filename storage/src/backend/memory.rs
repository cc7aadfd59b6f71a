//! In-memory backend for fast tests, with crash simulation.
//!
//! Every file keeps the bytes a reader sees and, separately, the bytes that
//! survived its last sync. [`MemoryBackend::crash`] throws the unsynced part
//! away, keeping a seeded random prefix of the unsynced writes, each of which
//! may itself be torn at a 512-byte sector boundary, which is what a power cut
//! can leave behind. Directory operations are treated as durable at once.
//! Single-threaded by design (`Rc`), like the shard that owns a log.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::{Backend, SegmentFile, ALIGN_BYTES};
use crate::error::{StorageError, StorageResult};

#[derive(Default)]
struct MemFile {
    data: Vec<u8>,
    synced: Vec<u8>,
    /// Writes since the last sync, in order: (pos, bytes) or a truncate.
    pending: Vec<Pending>,
}

enum Pending {
    Write(u64, Vec<u8>),
    Truncate(u64),
}

#[derive(Default)]
struct Fs {
    files: BTreeMap<PathBuf, Rc<RefCell<MemFile>>>,
    dirs: BTreeMap<PathBuf, ()>,
    /// Fail every operation with an I/O error (a disk that went away).
    failing: bool,
    /// Segment file syncs performed (group-commit tests count them).
    syncs: u64,
    /// Polls a segment write stays pending before it takes effect, so tests
    /// can hold writes in flight as a slow disk would.
    write_yields: u32,
    /// Operations left before every later one fails (see `fail_after`).
    fail_after: Option<u64>,
    /// Polls a segment read or open stays pending, so tests can interleave readers with
    /// other tasks as a real disk does.
    read_yields: u32,
}

#[derive(Clone, Default)]
pub struct MemoryBackend {
    fs: Rc<RefCell<Fs>>,
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn write_into(data: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let end = pos as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[pos as usize..end].copy_from_slice(bytes);
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power cut: each file keeps its synced bytes plus a
    /// random prefix of its later writes, the last of them possibly torn.
    pub fn crash(&self, seed: u64) {
        let mut rng = seed | 1;
        let fs = self.fs.borrow();
        for f in fs.files.values() {
            let mut f = f.borrow_mut();
            let mut data = f.synced.clone();
            let keep = if f.pending.is_empty() {
                0
            } else {
                (xorshift(&mut rng) % (f.pending.len() as u64 + 1)) as usize
            };
            for (i, p) in f.pending.iter().enumerate().take(keep) {
                match p {
                    Pending::Write(pos, bytes) => {
                        let len = if i + 1 == keep && xorshift(&mut rng).is_multiple_of(2) {
                            let sectors = bytes.len() / 512;
                            (xorshift(&mut rng) % (sectors as u64 + 1)) as usize * 512
                        } else {
                            bytes.len()
                        };
                        write_into(&mut data, *pos, &bytes[..len]);
                    }
                    Pending::Truncate(len) => data.resize(*len as usize, 0),
                }
            }
            f.data = data.clone();
            f.synced = data;
            f.pending.clear();
        }
    }

    /// Makes every later operation fail, like a disk that disappeared.
    /// (and forgets a pending [`MemoryBackend::fail_after`]).
    pub fn set_failing(&self, failing: bool) {
        let mut fs = self.fs.borrow_mut();
        fs.failing = failing;
        fs.fail_after = None;
    }

    /// Makes every later segment read and open stay pending for `yields` polls.
    pub fn set_read_yields(&self, yields: u32) {
        self.fs.borrow_mut().read_yields = yields;
    }

    /// Makes every later segment write stay pending for `yields` polls.
    pub fn set_write_yields(&self, yields: u32) {
        self.fs.borrow_mut().write_yields = yields;
    }

    /// How many segment-file syncs (fdatasync) have run.
    pub fn sync_count(&self) -> u64 {
        self.fs.borrow().syncs
    }

    /// Bytes a reader would see in `path` (for assertions).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.fs
            .borrow()
            .files
            .get(path)
            .map(|f| f.borrow().data.clone())
    }

    /// Overwrites bytes of a file as if the disk corrupted them (durably).
    pub fn corrupt(&self, path: &Path, pos: usize, bytes: &[u8]) {
        if let Some(f) = self.fs.borrow().files.get(path) {
            let mut f = f.borrow_mut();
            write_into(&mut f.data, pos as u64, bytes);
            write_into(&mut f.synced, pos as u64, bytes);
        }
    }

    /// Makes every operation after the next `ops` fail, like a disk that disappears
    /// at that step: with [`MemoryBackend::crash`] after it, a crash at any point of
    /// a multi-step change.
    pub fn fail_after(&self, ops: u64) {
        self.fs.borrow_mut().fail_after = Some(ops);
    }

    fn check(&self, path: &Path) -> StorageResult<()> {
        let mut fs = self.fs.borrow_mut();
        if let Some(n) = fs.fail_after {
            if n == 0 {
                fs.failing = true;
                fs.fail_after = None;
            } else {
                fs.fail_after = Some(n - 1);
            }
        }
        if fs.failing {
            return Err(StorageError::io(
                path,
                io::Error::other("simulated disk failure"),
            ));
        }
        Ok(())
    }
}

pub struct MemSegment {
    path: PathBuf,
    file: Rc<RefCell<MemFile>>,
    backend: MemoryBackend,
}

impl Backend for MemoryBackend {
    type File = MemSegment;

    async fn open_segment(&self, path: &Path, create: bool) -> StorageResult<MemSegment> {
        self.check(path)?;
        let yields = self.fs.borrow().read_yields;
        for _ in 0..yields {
            futures_lite::future::yield_now().await;
        }
        let mut fs = self.fs.borrow_mut();
        let file = match fs.files.get(path) {
            Some(f) => f.clone(),
            None if create => {
                let f = Rc::new(RefCell::new(MemFile::default()));
                fs.files.insert(path.to_path_buf(), f.clone());
                f
            }
            None => {
                return Err(StorageError::io(
                    path,
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
        };
        Ok(MemSegment {
            path: path.to_path_buf(),
            file,
            backend: self.clone(),
        })
    }

    async fn create_dir_all(&self, dir: &Path) -> StorageResult<()> {
        self.check(dir)?;
        self.fs.borrow_mut().dirs.insert(dir.to_path_buf(), ());
        Ok(())
    }

    async fn list_dir(&self, dir: &Path) -> StorageResult<Vec<String>> {
        self.check(dir)?;
        let fs = self.fs.borrow();
        Ok(fs
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    async fn remove_file(&self, path: &Path) -> StorageResult<()> {
        self.check(path)?;
        self.fs.borrow_mut().files.remove(path);
        Ok(())
    }

    async fn remove_dir_all(&self, dir: &Path) -> StorageResult<()> {
        self.check(dir)?;
        let mut fs = self.fs.borrow_mut();
        fs.files.retain(|p, _| !p.starts_with(dir));
        fs.dirs.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }

    async fn discard(&self, path: &Path) -> StorageResult<()> {
        self.remove_dir_all(path).await
    }

    async fn read_small(&self, path: &Path) -> StorageResult<Option<Vec<u8>>> {
        self.check(path)?;
        Ok(self
            .fs
            .borrow()
            .files
            .get(path)
            .map(|f| f.borrow().data.clone()))
    }

    async fn write_small_atomic(&self, path: &Path, data: &[u8]) -> StorageResult<()> {
        self.check(path)?;
        let f = MemFile {
            data: data.to_vec(),
            synced: data.to_vec(),
            pending: Vec::new(),
        };
        self.fs
            .borrow_mut()
            .files
            .insert(path.to_path_buf(), Rc::new(RefCell::new(f)));
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> StorageResult<()> {
        self.check(dir)
    }

    async fn rename(&self, from: &Path, to: &Path) -> StorageResult<()> {
        self.check(from)?;
        let mut fs = self.fs.borrow_mut();
        match fs.files.remove(from) {
            Some(f) => {
                fs.files.insert(to.to_path_buf(), f);
                Ok(())
            }
            None => Err(StorageError::io(
                from,
                io::Error::from(io::ErrorKind::NotFound),
            )),
        }
    }

    async fn yield_now(&self) {
        futures_lite::future::yield_now().await
    }

    async fn sleep(&self, d: std::time::Duration) {
        // The in-memory tests run on one thread with no timer: the time passes for real.
        std::thread::sleep(d)
    }
}

impl SegmentFile for MemSegment {
    type Buf = Vec<u8>;

    fn alloc(&self, len: usize) -> Vec<u8> {
        // Not zero: a log that forgets to fill part of a buffer writes
        // garbage that recovery and the property test then catch.
        vec![0xA5u8; len]
    }

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> StorageResult<()> {
        self.backend.check(&self.path)?;
        let yields = self.backend.fs.borrow().write_yields;
        for _ in 0..yields {
            futures_lite::future::yield_now().await;
        }
        assert!(
            pos.is_multiple_of(ALIGN_BYTES) && (buf.len() as u64).is_multiple_of(ALIGN_BYTES),
            "direct I/O write must be aligned: pos {pos}, len {}",
            buf.len()
        );
        let mut f = self.file.borrow_mut();
        write_into(&mut f.data, pos, &buf);
        f.pending.push(Pending::Write(pos, buf));
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> StorageResult<Bytes> {
        self.backend.check(&self.path)?;
        let yields = self.backend.fs.borrow().read_yields;
        for _ in 0..yields {
            futures_lite::future::yield_now().await;
        }
        let f = self.file.borrow();
        let start = (pos as usize).min(f.data.len());
        let end = (start + len).min(f.data.len());
        Ok(Bytes::copy_from_slice(&f.data[start..end]))
    }

    type ReadBuf = Bytes;

    async fn read_aligned(&self, pos: u64, len: usize) -> StorageResult<Bytes> {
        assert!(
            pos.is_multiple_of(ALIGN_BYTES) && (len as u64).is_multiple_of(ALIGN_BYTES),
            "aligned read must be aligned: pos {pos}, len {len}"
        );
        self.read_at(pos, len).await
    }

    async fn sync(&self) -> StorageResult<()> {
        self.backend.check(&self.path)?;
        self.backend.fs.borrow_mut().syncs += 1;
        // Yield once, as a real fdatasync would, so concurrent callers queue.
        futures_lite::future::yield_now().await;
        let mut f = self.file.borrow_mut();
        f.synced = f.data.clone();
        f.pending.clear();
        Ok(())
    }

    async fn truncate(&self, len: u64) -> StorageResult<()> {
        self.backend.check(&self.path)?;
        let mut f = self.file.borrow_mut();
        f.data.resize(len as usize, 0);
        f.pending.push(Pending::Truncate(len));
        Ok(())
    }

    async fn preallocate(&self, len: u64) -> StorageResult<()> {
        self.backend.check(&self.path)?;
        let mut f = self.file.borrow_mut();
        if (f.data.len() as u64) < len {
            f.data.resize(len as usize, 0);
            f.pending.push(Pending::Truncate(len));
        }
        Ok(())
    }

    async fn size(&self) -> StorageResult<u64> {
        self.backend.check(&self.path)?;
        Ok(self.file.borrow().data.len() as u64)
    }

    async fn close(self) -> StorageResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn crash_keeps_synced_bytes_and_loses_the_rest() {
        let be = MemoryBackend::new();
        let path = Path::new("/mem/p-0/00000000000000000000.log");
        block_on(async {
            be.create_dir_all(Path::new("/mem/p-0")).await.unwrap();
            let f = be.open_segment(path, true).await.unwrap();
            let mut buf = f.alloc(4096);
            buf.fill(1);
            f.write_at(buf, 0).await.unwrap();
            f.sync().await.unwrap();
            let mut buf = f.alloc(4096);
            buf.fill(2);
            f.write_at(buf, 4096).await.unwrap();
        });
        be.crash(7);
        let bytes = be.file_bytes(path).unwrap();
        assert!(bytes.len() >= 4096, "synced page lost");
        assert!(bytes[..4096].iter().all(|b| *b == 1), "synced page changed");
        assert!(
            bytes[4096..].iter().all(|b| *b == 2 || *b == 0),
            "unsynced bytes can only be lost or torn, never invented"
        );
    }

    #[test]
    fn small_files_are_replaced_whole() {
        let be = MemoryBackend::new();
        let path = Path::new("/mem/meta/registry");
        block_on(async {
            assert_eq!(be.read_small(path).await.unwrap(), None);
            be.write_small_atomic(path, b"one").await.unwrap();
            be.write_small_atomic(path, b"two!").await.unwrap();
            assert_eq!(be.read_small(path).await.unwrap().unwrap(), b"two!");
        });
    }
}
