//! The executor runtime: one glommio executor (io_uring) per core, pinned, each running its
//! share of producers and consumers on its own connections. This is the only module that
//! names glommio types; the rest of the crate uses [`spawn`], [`Task`], [`sleep_until`],
//! [`yield_if_needed`], [`connect`] and [`Stream`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::error::LoadgenError;

/// A connected TCP stream on the current executor (`futures_lite` read and write).
pub type Stream = glommio::net::TcpStream;

/// A task on the current executor; dropping it cancels the task, awaiting it joins it.
pub struct Task<T>(glommio::Task<T>);

impl<T> Future for Task<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// Runs `fut` on the current executor.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> Task<T> {
    Task(glommio::spawn_local(fut))
}

/// Sleeps until `at` on the executor's timer (returns at once if it has passed).
pub async fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        glommio::timer::sleep(at - now).await;
    }
}

/// Lets other tasks run if this one has had the CPU for its share.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// Connects to `addr` (`host:port`) with Nagle off.
pub async fn connect(addr: &str, timeout: Duration) -> io::Result<Stream> {
    let stream = Stream::connect_timeout(addr, timeout)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}

/// The CPUs this process may run on (its affinity mask, e.g. from `taskset`), ascending.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask owned by this frame; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it, and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Started executors.
pub struct Executors {
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
    /// The CPU each executor is pinned to (`None`: not pinned).
    pub cpus: Vec<Option<usize>>,
}

/// Starts `count` executors, executor `i` running `make(i)`. Executors are pinned to the
/// first `count` CPUs of the process's affinity mask when there are that many.
pub fn start<F, Fut>(count: usize, make: F) -> Result<Executors, LoadgenError>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let allowed = allowed_cpus();
    let mut handles = Vec::with_capacity(count);
    let mut cpus = Vec::with_capacity(count);
    for i in 0..count {
        let cpu = (count <= allowed.len()).then(|| allowed[i]);
        let placement = match cpu {
            Some(c) => Placement::Fixed(c),
            None => Placement::Unbound,
        };
        let make = make.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("loadgen-{i}"))
            .spawn(move || make(i))
            .map_err(|e| LoadgenError::Runtime {
                executor: i,
                reason: format!("{e}; check `ulimit -l` (io_uring needs locked memory)"),
            })?;
        handles.push(handle);
        cpus.push(cpu);
    }
    Ok(Executors { handles, cpus })
}

impl Executors {
    /// Waits for every executor; the first failure, if any.
    pub fn join(self) -> Result<(), LoadgenError> {
        let mut first = Ok(());
        for (i, h) in self.handles.into_iter().enumerate() {
            if let Err(e) = h.join() {
                if first.is_ok() {
                    first = Err(LoadgenError::Runtime {
                        executor: i,
                        reason: e.to_string(),
                    });
                }
            }
        }
        first
    }
}
