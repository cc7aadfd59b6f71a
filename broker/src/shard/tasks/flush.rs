//! The flush tick, every `storage.flush_tick_ms`: runs the syncs the flush policy asks for
//! and writes out data no producer waits on (acks=0), so it reaches the file soon. At most
//! one background flush per partition runs at a time.

use std::rc::Rc;
use std::time::Duration;

use crate::runtime;
use crate::shard::Shard;

pub(super) async fn run(shard: Rc<Shard>) {
    let tick = Duration::from_millis(shard.config().storage.flush_tick_ms);
    loop {
        runtime::sleep(tick).await;
        for (_, p) in shard.owned() {
            if let Some(flush) = p.background_flush() {
                runtime::spawn(flush);
            }
        }
    }
}
