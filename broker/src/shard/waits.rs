//! Long polls: a Fetch with `max_wait_ms` parks on the owners of its partitions until one of
//! them has data past the fetch offset (or the time is up). A shard parks at most
//! `limits.fetch_waiters_max` waits; past that, the fetch backs off instead of spinning.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Lane, Shard};
use crate::partition::{Partition, Reader};
use crate::runtime;

/// How long a fetch backs off when an owner had no room to park its wait.
const NO_ROOM_BACKOFF: Duration = Duration::from_millis(20);

/// One partition a long poll waits on: (topic, partition, fetch offset).
pub type WaitFor = (Arc<str>, i32, i64);

struct WaiterSlot<'a>(&'a Shard);

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        self.0.waiters.set(self.0.waiters.get() - 1);
    }
}

impl Shard {
    /// Waits until one of `parts` (owned here) has data past its offset, for `timeout` at
    /// most. False at once when this shard already parks `fetch_waiters_max` waits.
    pub async fn wait_for_data(
        &self,
        parts: Vec<WaitFor>,
        reader: Reader,
        timeout: Duration,
    ) -> bool {
        if self.waiters.get() >= self.config.limits.fetch_waiters_max {
            return false;
        }
        self.waiters.set(self.waiters.get() + 1);
        let _slot = WaiterSlot(self);
        let deadline = Instant::now() + timeout;
        let owned: Vec<(Rc<Partition>, i64)> = parts
            .iter()
            .filter_map(|(t, p, offset)| self.partition(t, *p).map(|p| (p, *offset)))
            .collect();
        if owned.is_empty() {
            runtime::sleep(timeout).await;
            return true;
        }
        loop {
            let listeners: Vec<_> = owned.iter().map(|(p, _)| p.data_listener()).collect();
            if owned.iter().any(|(p, o)| p.visible_end(reader) > *o) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            let any = futures_util::future::select_all(listeners);
            futures_lite::future::or(
                async {
                    any.await;
                },
                runtime::sleep(deadline - now),
            )
            .await;
        }
    }

    /// Waits on the owners of `parts` (any shard) until one has data or `timeout` passes.
    pub async fn wait_anywhere(
        self: &Rc<Self>,
        parts: Vec<WaitFor>,
        reader: Reader,
        timeout: Duration,
    ) {
        let mut by_shard: BTreeMap<usize, Vec<WaitFor>> = BTreeMap::new();
        for part in parts {
            if let Ok(owner) = self.owner_of(&part.0, part.1) {
                by_shard.entry(owner).or_default().push(part);
            }
        }
        if by_shard.is_empty() {
            runtime::sleep(timeout).await;
            return;
        }
        let mut waits: Vec<Pin<Box<dyn Future<Output = bool>>>> = Vec::new();
        for (owner, parts) in by_shard {
            let wait = self.ask(owner, Lane::Wait, move |shard: Rc<Shard>| async move {
                shard.wait_for_data(parts, reader, timeout).await
            });
            waits.push(Box::pin(async move { wait.await.unwrap_or(false) }));
        }
        let (parked, _, _) = futures_util::future::select_all(waits).await;
        if !parked {
            // The owner had no room to park us: back off instead of spinning.
            runtime::sleep(timeout.min(NO_ROOM_BACKOFF)).await;
        }
    }
}
