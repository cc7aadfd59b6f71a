//! Retention, every `retention_check_interval_ms`: each partition of the shard drops the
//! segments past its topic's time and size limits (the files are freed by the storage's
//! reaper thread, off the shard).

use std::rc::Rc;
use std::time::Duration;

use crate::runtime;
use crate::shard::Shard;

pub(super) async fn run(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config().retention_check_interval_ms);
    loop {
        runtime::sleep(every).await;
        for (_, p) in shard.owned() {
            p.enforce_retention().await;
        }
    }
}
