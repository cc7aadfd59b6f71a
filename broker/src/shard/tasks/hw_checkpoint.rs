//! The high-watermark checkpoint, every [`HW_CHECKPOINT_INTERVAL`] when something moved,
//! and once more when the shard stops (see [`crate::partition::hw_checkpoint`]).

use std::rc::Rc;
use std::time::Duration;

use rill_storage::{Backend, DmaBackend};
use tracing::warn;

use crate::partition::hw_checkpoint::{self, Entry};
use crate::runtime;
use crate::shard::Shard;

/// How often a shard writes its partitions' high watermarks (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` is 5 s; a second keeps what a restarted
/// broker reports closer to what it had acknowledged).
const HW_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

pub(super) async fn run(shard: Rc<Shard>) {
    let mut last: Option<Vec<Entry>> = None;
    loop {
        runtime::sleep(HW_CHECKPOINT_INTERVAL).await;
        let entries = entries(&shard);
        if last.as_ref() == Some(&entries) {
            continue;
        }
        if write(&shard, entries.clone()).await {
            last = Some(entries);
        }
    }
}

/// This shard's partitions and their high watermarks, in a stable order.
pub(crate) fn entries(shard: &Shard) -> Vec<Entry> {
    let mut out: Vec<Entry> = shard
        .owned()
        .into_iter()
        .map(|((_, partition), p)| Entry {
            topic_id: *p.topic_id().as_bytes(),
            partition,
            high_watermark: p.high_watermark(),
        })
        .collect();
    out.sort_by_key(|e| (e.topic_id, e.partition));
    out
}

/// Writes the shard's checkpoint file; false (and a warning) when it could not.
pub(crate) async fn write(shard: &Shard, entries: Vec<Entry>) -> bool {
    let path = hw_checkpoint::path(&shard.config().data_dir, shard.id());
    match DmaBackend::new()
        .write_small_atomic(&path, &hw_checkpoint::encode(entries))
        .await
    {
        Ok(()) => true,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot write the high-watermark checkpoint; retrying");
            false
        }
    }
}
