//! The few file operations the durable raft log needs, behind [`Disk`], so
//! the same storage code runs on a real directory ([`FsDisk`]) and on an
//! in-memory disk that loses unsynced writes on a simulated crash
//! ([`MemDisk`]). Owned by the [`crate::storage::DiskStorage`] of the raft
//! member (shard 0 in the broker).
//!
//! Durability contract (what `FsDisk` does and `MemDisk` models):
//! - `append` is volatile until `sync` of that file; a file created by
//!   `append` exists after a crash only once it was synced.
//! - `write_atomic`, `truncate` and `remove` are durable when they return.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// File operations on one flat directory of small files.
pub trait Disk {
    /// Names of the files present (temporary files of `write_atomic` excluded).
    fn list(&self) -> Result<Vec<String>>;
    /// The whole file, or `None` if it does not exist.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Appends to the file, creating it if absent. Volatile until `sync`.
    fn append(&mut self, name: &str, data: &[u8]) -> Result<()>;
    /// Makes the file's appended bytes (and its directory entry) durable.
    fn sync(&mut self, name: &str) -> Result<()>;
    /// Replaces the whole file atomically and durably: write a temporary
    /// file, fsync it, rename over `name`, fsync the directory.
    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<()>;
    /// Cuts the file to `len` bytes, durably.
    fn truncate(&mut self, name: &str, len: u64) -> Result<()>;
    /// Removes the file durably; a missing file is not an error.
    fn remove(&mut self, name: &str) -> Result<()>;
}

const TMP_SUFFIX: &str = ".tmp";

/// A real directory. Keeps the file last appended to open, since the raft
/// log appends to one segment at a time.
pub struct FsDisk {
    dir: PathBuf,
    open: Option<(String, File)>,
    /// A file was created since the directory was last fsynced.
    dir_dirty: bool,
}

impl FsDisk {
    /// Opens (creating if needed) the directory; removes leftover temporary
    /// files of an interrupted `write_atomic`.
    pub fn open(dir: impl AsRef<Path>) -> Result<FsDisk> {
        let dir = dir.as_ref().to_path_buf();
        let show = dir.display().to_string();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create dir", &show, e))?;
        let disk = FsDisk {
            dir,
            open: None,
            dir_dirty: false,
        };
        for entry in std::fs::read_dir(&disk.dir).map_err(|e| Error::io("list", &show, e))? {
            let entry = entry.map_err(|e| Error::io("list", &show, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TMP_SUFFIX) {
                let path = disk.dir.join(&name);
                std::fs::remove_file(&path).map_err(|e| Error::io("remove", name, e))?;
            }
        }
        Ok(disk)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn sync_dir(&mut self) -> Result<()> {
        let show = self.dir.display().to_string();
        let d = File::open(&self.dir).map_err(|e| Error::io("open dir", &show, e))?;
        d.sync_all().map_err(|e| Error::io("fsync dir", &show, e))?;
        self.dir_dirty = false;
        Ok(())
    }

    fn handle(&mut self, name: &str) -> Result<&mut File> {
        if self.open.as_ref().map(|(n, _)| n.as_str()) != Some(name) {
            let path = self.path(name);
            let existed = path.exists();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io("open", name, e))?;
            if !existed {
                self.dir_dirty = true;
            }
            self.open = Some((name.to_string(), f));
        }
        match self.open.as_mut() {
            Some((_, f)) => Ok(f),
            None => unreachable!("set just above"),
        }
    }
}

impl Disk for FsDisk {
    fn list(&self) -> Result<Vec<String>> {
        let show = self.dir.display().to_string();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io("list", &show, e))? {
            let entry = entry.map_err(|e| Error::io("list", &show, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(TMP_SUFFIX) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", name, e)),
        }
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let f = self.handle(name)?;
        f.write_all(data).map_err(|e| Error::io("append", name, e))
    }

    fn sync(&mut self, name: &str) -> Result<()> {
        let f = self.handle(name)?;
        f.sync_data().map_err(|e| Error::io("fsync", name, e))?;
        if self.dir_dirty {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let tmp_name = format!("{name}{TMP_SUFFIX}");
        let tmp = self.path(&tmp_name);
        {
            let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp_name, e))?;
            f.write_all(data)
                .map_err(|e| Error::io("write", &tmp_name, e))?;
            f.sync_all().map_err(|e| Error::io("fsync", &tmp_name, e))?;
        }
        std::fs::rename(&tmp, self.path(name)).map_err(|e| Error::io("rename", name, e))?;
        self.sync_dir()
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<()> {
        if self.open.as_ref().map(|(n, _)| n.as_str()) == Some(name) {
            self.open = None;
        }
        let f = OpenOptions::new()
            .write(true)
            .open(self.path(name))
            .map_err(|e| Error::io("open", name, e))?;
        f.set_len(len).map_err(|e| Error::io("truncate", name, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", name, e))
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        if self.open.as_ref().map(|(n, _)| n.as_str()) == Some(name) {
            self.open = None;
        }
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", name, e)),
        }
    }
}

#[derive(Default, Clone)]
struct MemFile {
    data: Vec<u8>,
    /// `data[..synced_bytes]` survives a crash.
    synced_bytes: usize,
    /// The directory entry survives a crash (the file was synced once).
    durable: bool,
}

/// An in-memory disk for tests and the simulation. Clones share the same
/// files, so a simulated node can "crash" (drop its storage), have the
/// harness call [`MemDisk::crash`], and reopen from the same disk.
#[derive(Clone, Default)]
pub struct MemDisk {
    files: Arc<Mutex<BTreeMap<String, MemFile>>>,
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, MemFile>> {
        // A panic while holding this lock is a test failure already; the
        // data is still consistent enough to report it.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Simulates power loss: files never synced vanish; of each file's
    /// unsynced tail, `keep(unsynced_bytes)` bytes survive (a torn write
    /// when that is neither 0 nor all of it).
    pub fn crash(&self, keep: &mut dyn FnMut(usize) -> usize) {
        let mut files = self.files();
        files.retain(|_, f| f.durable);
        for f in files.values_mut() {
            let unsynced = f.data.len() - f.synced_bytes;
            let kept = keep(unsynced).min(unsynced);
            f.data.truncate(f.synced_bytes + kept);
            f.synced_bytes = f.data.len();
        }
    }

    /// Flips one bit of a file (for corruption tests). Returns false if the
    /// file is absent or `offset` is past its end.
    pub fn flip_bit(&self, name: &str, offset: usize) -> bool {
        let mut files = self.files();
        match files.get_mut(name) {
            Some(f) if offset < f.data.len() => {
                f.data[offset] ^= 1;
                true
            }
            _ => false,
        }
    }

    /// Total bytes stored (for tests that check compaction frees space).
    pub fn total_bytes(&self) -> usize {
        self.files().values().map(|f| f.data.len()).sum()
    }
}

impl Disk for MemDisk {
    fn list(&self) -> Result<Vec<String>> {
        Ok(self.files().keys().cloned().collect())
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.files().get(name).map(|f| f.data.clone()))
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.files()
            .entry(name.to_string())
            .or_default()
            .data
            .extend_from_slice(data);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<()> {
        let mut files = self.files();
        let f = files.entry(name.to_string()).or_default();
        f.synced_bytes = f.data.len();
        f.durable = true;
        Ok(())
    }

    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.files().insert(
            name.to_string(),
            MemFile {
                data: data.to_vec(),
                synced_bytes: data.len(),
                durable: true,
            },
        );
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<()> {
        let mut files = self.files();
        let f = files.get_mut(name).ok_or_else(|| {
            Error::io(
                "truncate",
                name,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
        f.data.truncate(len as usize);
        f.synced_bytes = f.data.len();
        f.durable = true;
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        self.files().remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(disk: &mut dyn Disk) {
        assert_eq!(disk.read("a").unwrap(), None);
        disk.append("a", b"hello ").unwrap();
        disk.append("a", b"world").unwrap();
        disk.sync("a").unwrap();
        assert_eq!(disk.read("a").unwrap().unwrap(), b"hello world");
        disk.truncate("a", 5).unwrap();
        disk.append("a", b"!").unwrap();
        assert_eq!(disk.read("a").unwrap().unwrap(), b"hello!");
        disk.write_atomic("b", b"state").unwrap();
        disk.write_atomic("b", b"state2").unwrap();
        assert_eq!(disk.read("b").unwrap().unwrap(), b"state2");
        assert_eq!(disk.list().unwrap(), vec!["a".to_string(), "b".to_string()]);
        disk.remove("a").unwrap();
        disk.remove("a").unwrap();
        assert_eq!(disk.list().unwrap(), vec!["b".to_string()]);
    }

    #[test]
    fn fs_disk_behaves_like_the_trait_says() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&mut FsDisk::open(dir.path()).unwrap());
    }

    #[test]
    fn mem_disk_behaves_like_the_trait_says() {
        exercise(&mut MemDisk::new());
    }

    #[test]
    fn mem_disk_crash_loses_unsynced_tail_and_unsynced_files() {
        let mut d = MemDisk::new();
        d.append("log", b"synced").unwrap();
        d.sync("log").unwrap();
        d.append("log", b"-lost").unwrap();
        d.append("new", b"never synced").unwrap();
        d.write_atomic("state", b"s").unwrap();
        d.crash(&mut |_| 0);
        assert_eq!(d.read("log").unwrap().unwrap(), b"synced");
        assert_eq!(d.read("new").unwrap(), None);
        assert_eq!(d.read("state").unwrap().unwrap(), b"s");
    }

    #[test]
    fn mem_disk_crash_can_tear_a_write() {
        let mut d = MemDisk::new();
        d.append("log", b"ab").unwrap();
        d.sync("log").unwrap();
        d.append("log", b"cdef").unwrap();
        d.crash(&mut |unsynced| unsynced / 2);
        assert_eq!(d.read("log").unwrap().unwrap(), b"abcd");
    }
}
