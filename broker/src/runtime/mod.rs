//! The glommio wrappers: executors pinned one per core, timers, tasks, sockets, the channel
//! mesh between shards and the doorbells other threads ring. This module (with the storage
//! backend) is the only place that names glommio types; glommio is little maintained and
//! pinned, so the rest of the broker depends on the small surface here.
//!
//! No waker crosses threads through here: shards talk over glommio's mesh (which signals
//! the peer's eventfd, never a foreign waker) and other threads reach a shard by ringing its
//! [`Doorbell`] (a socket the shard reads through io_uring). Everything else a shard awaits
//! is completed on the shard itself.

mod doorbell;
#[cfg(test)]
mod handoff_tests;
mod mesh;
mod net;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::{LocalExecutorBuilder, Placement};

pub use doorbell::{doorbell, Doorbell, Ringer};
pub use mesh::{Inbound, Mesh, Peers};
pub use net::{connect, Listener, Stream};

/// Runs `fut` on this shard in the background.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(fut).detach();
}

/// A task on this shard whose result is awaited later (in order, by the connection writer).
pub struct Task<T>(glommio::task::JoinHandle<T>);

impl<T: 'static> Task<T> {
    /// Starts `fut` now on this shard.
    pub fn start(fut: impl Future<Output = T> + 'static) -> Task<T> {
        Task(glommio::spawn_local(fut).detach())
    }

    /// The result; None when the task was cancelled (its shard is stopping).
    pub async fn join(self) -> Option<T> {
        self.0.await
    }
}

/// Sleeps on this shard's timer.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// CPU time this shard's executor has spent running tasks and polling I/O.
pub fn busy_seconds() -> f64 {
    glommio::executor()
        .executor_stats()
        .total_runtime()
        .as_secs_f64()
}

/// Wall-clock milliseconds (record timestamps, LogAppendTime).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What one executor gets at its start.
pub struct ShardStart<M: Send, R: Send> {
    pub id: usize,
    pub shards: usize,
    /// Requests between shards (bounded; a full queue makes the sender wait).
    pub requests: Mesh<M>,
    /// Replies to those requests: a separate mesh, so a reply never queues behind requests
    /// a busy shard is not taking yet.
    pub replies: Mesh<R>,
    /// Rung by threads outside the executors (the metadata raft member).
    pub doorbell: Doorbell,
}

/// Starts `shards` executors, each pinned to one allowed CPU (when there are enough), runs
/// `body` on each and waits until all returned. The first error stops the others: `stop` is
/// set, which every shard's main loop watches.
pub fn run_shards<M, R, F, Fut>(
    shards: usize,
    queue_depth: usize,
    io_memory_bytes: usize,
    doorbells: Vec<doorbell::DoorbellSocket>,
    stop: Arc<AtomicBool>,
    body: F,
) -> Result<(), String>
where
    M: Send + 'static,
    R: Send + 'static,
    F: Fn(ShardStart<M, R>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    assert_eq!(doorbells.len(), shards, "one doorbell per shard");
    let cpus = allowed_cpus();
    let requests = Mesh::full(shards, queue_depth);
    let replies = Mesh::full(shards, queue_depth);
    let mut handles = Vec::with_capacity(shards);
    for (id, bell) in doorbells.into_iter().enumerate() {
        let placement = if shards <= cpus.len() {
            Placement::Fixed(cpus[id])
        } else {
            Placement::Unbound
        };
        let (requests, replies, stop, body) = (
            requests.clone(),
            replies.clone(),
            stop.clone(),
            body.clone(),
        );
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("rill-shard-{id}"))
            .io_memory(io_memory_bytes)
            .spawn(move || async move {
                let start = ShardStart {
                    id,
                    shards,
                    requests,
                    replies,
                    doorbell: Doorbell::open(bell),
                };
                let r = body(start).await;
                if r.is_err() {
                    stop.store(true, Ordering::SeqCst);
                }
                r
            })
            .map_err(|e| {
                format!("cannot start shard {id}: {e}; check `ulimit -l` (io_uring needs locked memory)")
            })?;
        handles.push(handle);
    }
    let mut first_error = None;
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("shard {id} crashed: {e}"));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The CPUs this process may run on (its affinity mask: taskset, systemd CPUAffinity=,
/// a cpuset), in order; shard i is pinned to the i-th of them.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let got =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if got != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the bit count of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// A bounded first-in, first-out queue between tasks of one shard.
pub fn queue<T>(capacity: usize) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx) = glommio::channels::local_channel::new_bounded(capacity);
    (QueueTx(tx), QueueRx(rx))
}

/// The receiving end of a [`queue`] is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueClosed;

/// The sending end of a [`queue`].
pub struct QueueTx<T>(glommio::channels::local_channel::LocalSender<T>);

impl<T> QueueTx<T> {
    /// Waits while the queue is full; fails once the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), QueueClosed> {
        self.0.send(item).await.map_err(|_| QueueClosed)
    }
}

/// The receiving end of a [`queue`].
pub struct QueueRx<T>(glommio::channels::local_channel::LocalReceiver<T>);

impl<T> QueueRx<T> {
    /// The next item; None once every sender is gone and the queue is empty.
    pub async fn recv(&self) -> Option<T> {
        self.0.recv().await
    }
}
