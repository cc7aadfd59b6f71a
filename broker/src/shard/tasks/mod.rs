//! A shard's periodic work, each task in its own file, all started by [`start`]: the flush
//! tick (due syncs, data no producer waits on), retention, the log cleaner (compaction), the
//! leaders' ISR check, and the high-watermark checkpoint.
//! (Group member expiry is the group coordinator's own task, in `crate::group`.)

mod cleaner;
mod flush;
pub(crate) mod hw_checkpoint;
mod isr;
mod retention;

use std::rc::Rc;

use super::Shard;
use crate::runtime;

/// Starts this shard's periodic tasks.
pub fn start(shard: &Rc<Shard>) {
    runtime::spawn(flush::run(shard.clone()));
    runtime::spawn(retention::run(shard.clone()));
    runtime::spawn(cleaner::run(shard.clone()));
    runtime::spawn(isr::run(shard.clone()));
    runtime::spawn(hw_checkpoint::run(shard.clone()));
}
