//! The leaders' ISR check, every [`ISR_CHECK_INTERVAL`]: for each partition this shard
//! leads, the replication state says whether the ISR should change (a follower that fell
//! behind for `replica_lag_time_max_ms` leaves, one that caught up joins), and the change is
//! asked of the controller, one at a time per partition.

use std::rc::Rc;
use std::time::Duration;

use tracing::info;

use crate::runtime;
use crate::shard::Shard;

/// How often a shard's leaders check their partitions' ISR.
const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(250);

pub(super) async fn run(shard: Rc<Shard>) {
    let lag_max = Duration::from_millis(shard.config().replica_lag_time_max_ms);
    loop {
        runtime::sleep(ISR_CHECK_INTERVAL).await;
        let image = shard.image();
        for ((topic, partition), p) in shard.owned() {
            let Some((placement, isr)) = p.isr_change(lag_max, |b| image.is_alive(b)) else {
                continue;
            };
            info!(topic = %topic, partition, from = ?placement.isr, to = ?isr,
                "asking the controller to change the in-sync replicas");
            let shard = shard.clone();
            runtime::spawn(async move {
                let _ = shard
                    .authority()
                    .change_isr(&topic, partition, &placement, isr)
                    .await;
                p.isr_change_done();
            });
        }
    }
}
