//! The read side of a partition: fetches (a consumer's, a follower's, the broker's own),
//! ListOffsets and OffsetForLeaderEpoch, with Kafka's leader-epoch checks (KIP-320): a
//! request that names an older leader epoch than this leader's is fenced, one that names a
//! newer one learns this broker does not know it yet; a follower whose last fetched epoch
//! ended earlier here is told where its log diverges (KIP-595's diverging epoch), so it
//! truncates to exactly that point.

use std::time::Instant;

use bytes::Bytes;
use rill_net::ErrorCode;
use rill_storage::batch;
use rill_storage::epochs::UNDEFINED_EPOCH;
use rill_storage::Backend;

use super::replication::NotAFollower;
use super::{OffsetQuery, Partition, Reader};
use crate::errors::KafkaError;

/// Where a fetch reads from, and what the fetcher believes of the leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchAt {
    pub offset: i64,
    pub max_bytes: usize,
    /// The leader epoch the fetcher saw in its metadata (-1: it does not say).
    pub current_leader_epoch: i32,
    /// The epoch of the last batch the fetcher holds (-1: it does not say).
    pub last_fetched_epoch: i32,
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Whole batches from the fetch offset (none when there is nothing new to see).
    Records(Vec<Bytes>),
    /// The fetcher's log diverges from this one: its last epoch ends at `end_offset` here
    /// (`epoch` is the largest epoch at or below it that this log has).
    Diverging { epoch: i32, end_offset: i64 },
}

impl<B: Backend> Partition<B> {
    /// KIP-320: a request's idea of the leader epoch against this leader's.
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), KafkaError> {
        if current_leader_epoch < 0 {
            return Ok(());
        }
        let ours = self.replica.borrow().leader_epoch();
        if current_leader_epoch < ours {
            return Err(KafkaError::new(
                ErrorCode::FencedLeaderEpoch,
                format!(
                    "{}-{} is at leader epoch {ours}, the request names the older {current_leader_epoch}",
                    self.topic, self.index
                ),
            ));
        }
        if current_leader_epoch > ours {
            return Err(KafkaError::new(
                ErrorCode::UnknownLeaderEpoch,
                format!(
                    "{}-{} is at leader epoch {ours} here, the request names {current_leader_epoch}: this broker has not learned of it yet",
                    self.topic, self.index
                ),
            ));
        }
        Ok(())
    }

    /// The largest epoch at or below `epoch` in this log and where it ends, as a Kafka leader
    /// answers it. Kafka's leader writes its own epoch into the history when it becomes
    /// leader; here the entry comes with its first append, so until then a leader answers
    /// as if it were there, at the log end where this leadership began: its own epoch, and
    /// one between the newest in the log and its own, end at the log end. Answering "unknown"
    /// instead made a follower of a new leader fall back to its own high watermark, which
    /// may lag, and cut records every in-sync replica held.
    fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let (leads, own) = {
            let r = self.replica.borrow();
            (r.is_leader(), r.leader_epoch())
        };
        if leads && epoch >= 0 && epoch <= own {
            let newest = self.log.leader_epochs().latest().map(|(e, _)| e);
            if newest.is_none_or(|n| n < epoch) {
                let e = if epoch == own {
                    own
                } else {
                    newest.unwrap_or(epoch)
                };
                return (e, self.log.log_end_offset());
            }
        }
        self.log.end_offset_for_epoch(epoch)
    }

    /// Reads whole batches from `at.offset`, up to `at.max_bytes` (at least one batch), as
    /// far as `reader` may see; or says where the reader's log diverges. A follower's read
    /// also tells the leader what it holds.
    pub async fn fetch(&self, reader: Reader, at: FetchAt) -> Result<Fetched, KafkaError> {
        if reader != Reader::Internal {
            self.ensure_leader()?;
            self.check_leader_epoch(at.current_leader_epoch)?;
        }
        if reader == Reader::Committed {
            // The last stable offset needs the producer table (after a restart, rebuilt).
            self.ensure_producers().await;
        }
        if at.last_fetched_epoch >= 0 {
            let (epoch, end_offset) = self.end_offset_for_epoch(at.last_fetched_epoch);
            if epoch < at.last_fetched_epoch || end_offset < at.offset {
                return Ok(Fetched::Diverging { epoch, end_offset });
            }
        }
        if let Reader::Follower(id) = reader {
            let end = self.log.log_end_offset();
            let moved = self
                .replica
                .borrow_mut()
                .follower_fetched(id, at.offset, end, (self.clock)())
                .map_err(|NotAFollower| {
                    KafkaError::new(
                        ErrorCode::NotLeaderOrFollower,
                        format!(
                            "broker {id} is not a follower of {}-{}",
                            self.topic, self.index
                        ),
                    )
                })?;
            if moved {
                self.notify();
            }
        }
        if at.max_bytes == 0 {
            // Past the response's byte limit: only the offsets are reported.
            return Ok(Fetched::Records(Vec::new()));
        }
        let visible = self.visible_end(reader);
        let log_end = self.log.log_end_offset();
        if at.offset >= visible && at.offset <= log_end {
            // Consumers wait at the high watermark for the followers.
            return Ok(Fetched::Records(Vec::new()));
        }
        let started = Instant::now();
        let mut read = self
            .log
            .read(at.offset, at.max_bytes)
            .await
            .map_err(KafkaError::from)?;
        self.metrics.read(started.elapsed());
        // Consumers see only what every in-sync replica holds (a read past the high
        // watermark only happens while followers catch up).
        if visible < self.log.log_end_offset() {
            read.batches.retain(|b| {
                batch::BatchHeader::parse(b)
                    .is_ok_and(|h| h.base_offset + i64::from(h.last_offset_delta) < visible)
            });
        }
        Ok(Fetched::Records(read.batches))
    }

    /// Whole batches from `offset` as `reader` may see them, without epoch checks (the
    /// broker's own reads, which know the leadership).
    pub async fn read(
        &self,
        reader: Reader,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, KafkaError> {
        let at = FetchAt {
            offset,
            max_bytes,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
        };
        match self.fetch(reader, at).await? {
            Fetched::Records(batches) => Ok(batches),
            Fetched::Diverging { .. } => unreachable!("no last fetched epoch, no divergence"),
        }
    }

    /// ListOffsets: (offset, timestamp, leader epoch), (-1, -1, -1) when there is none. The
    /// epoch is the one of the batch at the offset (for the latest offset, this leader's).
    /// A `committed` (read_committed) reader's latest offset is the last stable offset; as
    /// in Kafka, a time lookup that lands at or past what the reader may fetch finds none.
    pub async fn list_offsets(
        &self,
        query: OffsetQuery,
        current_leader_epoch: i32,
        committed: bool,
    ) -> Result<(i64, i64, i32), KafkaError> {
        self.ensure_leader()?;
        self.check_leader_epoch(current_leader_epoch)?;
        let readable_end = if committed {
            self.stable_offset().await
        } else {
            self.high_watermark()
        };
        let epochs = self.log.leader_epochs();
        let found = match query {
            OffsetQuery::Latest => {
                if !self.replica.borrow().high_watermark_known() {
                    return Err(KafkaError::new(
                        ErrorCode::OffsetNotAvailable,
                        format!(
                            "{}-{} has a new leader that does not know its high watermark yet; retry",
                            self.topic, self.index
                        ),
                    ));
                }
                let epoch = epochs.latest().map_or(UNDEFINED_EPOCH, |(e, _)| e);
                return Ok((readable_end, -1, epoch));
            }
            OffsetQuery::Earliest => Some((self.log.log_start_offset(), -1)),
            OffsetQuery::MaxTimestamp => self.log.max_timestamp_offset().await?,
            OffsetQuery::Timestamp(t) => self.log.offset_for_timestamp(t).await?,
        };
        Ok(match found {
            Some((offset, timestamp))
                if offset < readable_end || query == OffsetQuery::Earliest =>
            {
                let epoch = epochs.epoch_at(offset).unwrap_or(UNDEFINED_EPOCH);
                (offset, timestamp, epoch)
            }
            Some(_) | None => (-1, -1, UNDEFINED_EPOCH),
        })
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` in this log and where it
    /// ends (-1, -1 when unknown).
    pub fn offset_for_leader_epoch(
        &self,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64), KafkaError> {
        self.ensure_leader()?;
        self.check_leader_epoch(current_leader_epoch)?;
        Ok(self.end_offset_for_epoch(epoch))
    }
}
