//! The log cleaner, every `log_cleaner_backoff_ms`: each compacted partition of the shard
//! (`cleanup.policy` with `compact`, leader or follower: replicas compact on their own) gets
//! a compaction pass when it is due (see `rill_storage::log::compact`). One partition at a
//! time, so the key map's memory (`log_cleaner_key_map_bytes`) is bounded per shard; the
//! pass yields to the shard's requests between batches, and its reads and writes keep to
//! the shard's share of `log_cleaner_io_max_bytes_per_second`.

use std::rc::Rc;
use std::time::Duration;

use rill_storage::CleanerThrottle;

use crate::runtime;
use crate::shard::Shard;

pub(super) async fn run(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config().log_cleaner_backoff_ms);
    let key_map_bytes = shard.config().log_cleaner_key_map_bytes;
    let broker_rate = shard.config().log_cleaner_io_max_bytes_per_second;
    let shards = shard.shards().max(1) as u64;
    let mut throttle =
        CleanerThrottle::new((broker_rate > 0).then(|| (broker_rate / shards).max(1)));
    loop {
        runtime::sleep(every).await;
        for (_, p) in shard.owned() {
            p.clean(key_map_bytes, &mut throttle).await;
        }
    }
}
