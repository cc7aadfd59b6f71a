//! Removes the files and directories that logs no longer need (segments past
//! retention, deleted partitions) on a thread of its own, in small steps.
//!
//! Freeing a large file is journal work on ext4: unlinking a 1 GiB segment
//! frees all its extents in one transaction, and the shard's `O_DIRECT`
//! appends, which need the journal to mark preallocated extents written,
//! wait behind it (an ack p99 of 236 ms instead of 2-9 ms with retention
//! deleting 128 MiB-1 GiB segments every second). So a log only *renames*
//! what it drops to a unique `*.deleted` name (a small metadata change) and
//! hands the name here; this thread shrinks each file by
//! [`REAPER_TRUNCATE_STEP_BYTES`] at a time, pausing between steps, and then
//! unlinks it. Like Kafka's `.deleted` segments, a name left over by a crash
//! is found and removed the next time its log (or the broker's data
//! directory) is opened.
//!
//! One thread serves the process; it is plain `std`, no executor, and it
//! shares nothing with the shards but a bounded queue.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// Paths waiting for the reaper thread. When it is full the caller removes
/// the path itself (the old, stalling way) rather than leaking the space.
pub const REAPER_QUEUE_MAX: usize = 4096;
/// How much of a file one truncate frees.
pub const REAPER_TRUNCATE_STEP_BYTES: u64 = 16 << 20;
/// Pause after each step, so appends get the journal in between.
pub const REAPER_STEP_PAUSE: Duration = Duration::from_millis(2);
/// The suffix of a name handed to the reaper.
pub const DELETED_SUFFIX: &str = ".deleted";

struct Reaper {
    tx: Mutex<SyncSender<PathBuf>>,
    /// Paths queued or being removed.
    pending: AtomicUsize,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();
static RENAMES: AtomicU64 = AtomicU64::new(0);

fn reaper() -> &'static Reaper {
    REAPER.get_or_init(|| {
        let (tx, rx) = sync_channel::<PathBuf>(REAPER_QUEUE_MAX);
        std::thread::Builder::new()
            .name("rill-reaper".into())
            .spawn(move || {
                lower_priority();
                while let Ok(path) = rx.recv() {
                    let started = Instant::now();
                    let freed = remove_all_stepwise(&path);
                    debug!(path = %path.display(), bytes = freed, elapsed_ms = started.elapsed().as_millis() as u64,
                        "reaper removed");
                    if let Some(r) = REAPER.get() {
                        r.pending.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })
            .expect("cannot start the rill-reaper thread");
        Reaper {
            tx: Mutex::new(tx),
            pending: AtomicUsize::new(0),
        }
    })
}

/// Runs this thread under `SCHED_IDLE`: it inherits the broker's CPU affinity,
/// so it shares a core with a shard, and freeing extents is CPU work in the
/// kernel. Idle priority lets the shard go first; the scheduler still gives an
/// idle thread a small share on a busy core, so the space does get freed.
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        debug!(error = %io::Error::last_os_error(), "reaper keeps normal priority");
    }
}

/// A unique `.deleted` name next to `path` for it to be renamed to.
pub fn deleted_name(path: &Path) -> PathBuf {
    let n = RENAMES.fetch_add(1, Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}-{n}{DELETED_SUFFIX}", std::process::id()));
    PathBuf::from(name)
}

/// Whether `name` (a file or directory name) was handed to the reaper.
pub fn is_deleted_name(name: &str) -> bool {
    name.ends_with(DELETED_SUFFIX)
}

/// Queues `path` (already renamed to a [`deleted_name`]) for removal; if the
/// queue is full, removes it here and now.
pub fn reap(path: PathBuf) {
    let r = reaper();
    r.pending.fetch_add(1, Ordering::AcqRel);
    let sent = r.tx.lock().expect("reaper queue lock").try_send(path);
    match sent {
        Ok(()) => {}
        Err(TrySendError::Full(path)) | Err(TrySendError::Disconnected(path)) => {
            r.pending.fetch_sub(1, Ordering::AcqRel);
            warn!(path = %path.display(), limit = REAPER_QUEUE_MAX,
                "the reaper queue is full; removing inline (appends may stall meanwhile)");
            remove_all_stepwise(&path);
        }
    }
}

/// Queues every `*.deleted` entry of `dir` (left by a crash or a restart);
/// returns how many. For a broker's data directory, where deleted partition
/// directories go.
pub fn reap_leftovers(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(is_deleted_name) {
            reap(e.path());
            n += 1;
        }
    }
    n
}

/// Paths queued or being removed right now.
pub fn pending() -> usize {
    REAPER
        .get()
        .map_or(0, |r| r.pending.load(Ordering::Acquire))
}

/// Waits (at most `within`) until nothing is queued; true if it got there.
/// For tests and orderly shutdown.
pub fn wait_idle(within: Duration) -> bool {
    let started = Instant::now();
    while pending() > 0 {
        if started.elapsed() >= within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Removes a file or a directory tree, shrinking large files step by step
/// first. Errors are logged, not returned: the name is already out of every
/// log's way, and the next open of the data directory tries again.
fn remove_all_stepwise(path: &Path) -> u64 {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return 0,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "reaper cannot stat; leaving it for the next start");
            return 0;
        }
    };
    if !meta.is_dir() {
        return remove_file_stepwise(path, meta.len());
    }
    let mut freed = 0;
    match fs::read_dir(path) {
        Ok(entries) => {
            for e in entries.flatten() {
                freed += remove_all_stepwise(&e.path());
            }
        }
        Err(e) => warn!(path = %path.display(), error = %e, "reaper cannot list a directory"),
    }
    if let Err(e) = fs::remove_dir(path) {
        if e.kind() != io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %e, "reaper cannot remove a directory; leaving it for the next start");
        }
    }
    freed
}

fn remove_file_stepwise(path: &Path, len: u64) -> u64 {
    if len > REAPER_TRUNCATE_STEP_BYTES {
        if let Ok(f) = fs::OpenOptions::new().write(true).open(path) {
            // Each set_len frees one step's extents: one small journal
            // transaction instead of one that frees the whole file.
            let mut at = len;
            while at > 0 {
                at = at.saturating_sub(REAPER_TRUNCATE_STEP_BYTES);
                if let Err(e) = f.set_len(at) {
                    warn!(path = %path.display(), error = %e, "reaper cannot shrink a file; unlinking it whole");
                    break;
                }
                std::thread::sleep(REAPER_STEP_PAUSE);
            }
        }
    }
    match fs::remove_file(path) {
        Ok(()) => len,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "reaper cannot remove a file; leaving it for the next start");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_names_are_unique_and_recognised() {
        let a = deleted_name(Path::new("/d/00000000000000000000.log"));
        let b = deleted_name(Path::new("/d/00000000000000000000.log"));
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("00000000000000000000.log."), "{name}");
        assert!(is_deleted_name(name));
        assert!(!is_deleted_name("00000000000000000000.log"));
    }

    #[test]
    fn reaps_large_files_and_trees() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let f = fs::File::create(&big).unwrap();
        f.set_len(3 * REAPER_TRUNCATE_STEP_BYTES + 5).unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/x"), b"x").unwrap();
        fs::write(tree.join("y"), b"y").unwrap();
        let big_gone = deleted_name(&big);
        fs::rename(&big, &big_gone).unwrap();
        let tree_gone = deleted_name(&tree);
        fs::rename(&tree, &tree_gone).unwrap();
        reap(big_gone.clone());
        reap(tree_gone.clone());
        assert!(wait_idle(Duration::from_secs(10)), "reaper still busy");
        assert!(!big_gone.exists());
        assert!(!tree_gone.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
