//! A new metadata image reaches the shard: it opens the partitions it now owns, hands every
//! open partition its settings and placement, and closes and deletes the partitions of
//! deleted topics. Partitions are opened before the image is published on the shard, so a
//! request routed by the new image finds its partition open.

use std::rc::Rc;
use std::sync::Arc;

use tracing::error;

use super::Shard;
use crate::metadata::{owner_shard, partition_dir, Image, Placement, TopicInfo};
use crate::partition::{self, Opening, Partition};

/// Partitions opened concurrently while applying an image.
const OPENS_IN_PARALLEL_MAX: usize = 32;

/// The placement as this broker acts on it: a partition it may not lead yet (a restarted
/// broker before the controller handed over what it held) has no leader here.
fn effective(placement: &Placement, image: &Image) -> Placement {
    let mut p = placement.clone();
    if p.leader == image.me.id && !image.me_can_lead {
        p.leader = -1;
    }
    p
}

impl Shard {
    /// Makes this shard's partitions match `image` and publishes it here. Images apply one
    /// at a time, and one not newer than the current is ignored.
    pub async fn apply(self: &Rc<Self>, image: Arc<Image>) {
        let _one_at_a_time = self.applying.lock().await;
        let current = self.image();
        if image.version < current.version && current.ready {
            return;
        }
        if !image.ready {
            // A cluster member that has not replayed its raft log yet knows no topics:
            // publish its brokers and controller, keep the partitions.
            let mut keep = (*image).clone();
            keep.topics = current.topics.clone();
            *self.image.borrow_mut() = Arc::new(keep);
            self.image_applied.notify(usize::MAX);
            return;
        }
        let mut to_open = Vec::new();
        for t in image.topics.values() {
            for p in 0..t.partition_count() {
                if owner_shard(t.id, p, self.shards) == self.id
                    && self.partition(&t.name, p).is_none()
                {
                    to_open.push((t.clone(), p));
                }
            }
        }
        for chunk in to_open.chunks(OPENS_IN_PARALLEL_MAX) {
            let opens = chunk
                .iter()
                .map(|(t, p)| self.open_partition(t, *p, &image));
            let opened = futures_util::future::join_all(opens).await;
            let mut parts = self.partitions.borrow_mut();
            for ((t, p), opened) in chunk.iter().zip(opened) {
                if let Some(partition) = opened {
                    parts
                        .entry(t.name.clone())
                        .or_default()
                        .insert(*p, Rc::new(partition));
                }
            }
        }
        *self.image.borrow_mut() = image.clone();
        for ((topic, index), p) in self.owned() {
            let placed = image
                .topic(&topic)
                .filter(|t| t.id == p.topic_id())
                .and_then(|t| t.placement(index).map(|pl| (t, pl)));
            match placed {
                Some((t, placement)) => {
                    let placement = effective(placement, &image);
                    p.apply(&t.settings, &placement, &self.config.storage);
                }
                None => {
                    {
                        let mut parts = self.partitions.borrow_mut();
                        if let Some(m) = parts.get_mut(&topic) {
                            m.remove(&index);
                            if m.is_empty() {
                                parts.remove(&topic);
                            }
                        }
                    }
                    p.delete().await;
                }
            }
        }
        self.image_applied.notify(usize::MAX);
    }

    async fn open_partition(&self, t: &TopicInfo, index: i32, image: &Image) -> Option<Partition> {
        let dir = partition_dir(&self.config.data_dir, &t.name, index);
        let placement = effective(t.placement(index)?, image);
        let opening = Opening {
            topic: t.name.clone(),
            index,
            topic_id: t.id,
            settings: t.settings.clone(),
            placement,
            me: self.config.node_id,
            producers_max: self.config.limits.producers_per_partition_max,
            metrics: &self.metrics,
            high_watermark: self
                .high_watermarks
                .get(&(*t.id.as_bytes(), index))
                .copied()
                .unwrap_or(0),
            replica_fsync: self.config.replica_fsync,
        };
        match partition::open(&dir, &self.config.storage, self.budget.clone(), opening).await {
            Ok(p) => Some(p),
            Err(e) => {
                error!(topic = %t.name, partition = index, dir = %dir.display(), error = ?e,
                    "cannot open partition; it stays unavailable until the broker restarts");
                None
            }
        }
    }
}
