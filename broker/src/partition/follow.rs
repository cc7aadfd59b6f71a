//! A follower applying what it fetched from its leader: whole batches appended with the
//! leader's offsets and epochs, the leader's high watermark taken, and the log cut back when
//! it runs past the leader's.

use bytes::Bytes;
use rill_net::ErrorCode;
use rill_storage::batch::CheckedBatch;
use rill_storage::Backend;
use tracing::{debug, warn};

use super::{batch_len, Partition};

/// One partition of a leader's Fetch response.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    pub error: ErrorCode,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Bytes,
}

/// Why a fetched partition could not be applied (the fetcher backs off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotApplied;

impl<B: Backend> Partition<B> {
    /// The offset a follower fetches from next.
    pub fn fetch_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// Appends one partition's fetched batches. `Ok(true)` when the log changed.
    pub async fn append_fetched(&self, f: FetchedPartition) -> Result<bool, NotApplied> {
        let (topic, partition) = (&*self.topic, self.index);
        match f.error {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                let end = self.log.log_end_offset();
                if end > f.high_watermark && f.high_watermark >= 0 {
                    // This log has more than the leader: what is past the leader's high
                    // watermark was never acknowledged to acks=all producers; drop it.
                    warn!(topic, partition, from = end, to = f.high_watermark,
                        "follower log runs past the leader's; truncating to the leader's high watermark");
                    if let Err(e) = self.log.truncate_to(f.high_watermark).await {
                        warn!(topic, partition, error = %e, "cannot truncate the follower log");
                        return Err(NotApplied);
                    }
                    self.replica
                        .borrow_mut()
                        .truncated(self.log.log_end_offset());
                    self.producers_rebuilt.set(false);
                    return Ok(true);
                }
                warn!(
                    topic,
                    partition,
                    log_end = end,
                    leader_log_start = f.log_start_offset,
                    "the leader no longer has this follower's next offset (deleted by retention); \
                     this replica cannot catch up until its partition directory is removed"
                );
                return Err(NotApplied);
            }
            other => {
                debug!(topic, partition, error = ?other, "replica fetch error for a partition");
                return Err(NotApplied);
            }
        }
        let mut records = f.records;
        let mut grew = false;
        // A partial batch at the end of a size-limited response is left for the next fetch.
        while let Ok(len) = batch_len(&records) {
            let appended = match CheckedBatch::check(records.split_to(len)) {
                Ok(batch) => self.log.append_replica(batch).await,
                Err(e) => Err(e),
            };
            match appended {
                Ok(_) => grew = true,
                Err(e) => {
                    warn!(topic, partition, error = %e, "cannot append a replicated batch");
                    return Err(NotApplied);
                }
            }
        }
        if grew {
            // The idempotence table is rebuilt from the log before this broker, as leader,
            // next checks a producer's sequence.
            self.producers_rebuilt.set(false);
        }
        let end = self.log.log_end_offset();
        self.replica
            .borrow_mut()
            .leader_high_watermark(f.high_watermark, end);
        if grew {
            self.data.notify(usize::MAX);
        }
        Ok(grew)
    }
}
