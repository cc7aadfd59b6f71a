//! The coordinator's `__consumer_offsets` partitions: replaying one into the group state the
//! first time a group on it is used, the one ordered writer per partition, and checkpoints.
//!
//! One writer per offsets partition appends the records in the order they were computed
//! (several requests share a batch and its fdatasync), and after `offsets_checkpoint_bytes`
//! writes the groups' whole state again and deletes the records before it, so the topic
//! stays small without compaction. A record takes effect when it is durable: offsets and
//! deletions are applied by the writer, group state by the protocol code that wrote it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use rill_net::client::{decode_record_batches, encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::ErrorCode;
use tracing::{info, warn};
use uuid::Uuid;

use super::consumer as cg;
use super::coordinator::Groups;
use super::offsets::Committed;
use super::records::{consumer_records, offsets_partition, StoredRecord};
use crate::metadata::OFFSETS_TOPIC;
use crate::partition::Reader;
use crate::runtime;

/// Group writes waiting for their offsets partition's writer, per partition.
const GROUP_WRITES_QUEUED_MAX: usize = 4096;
/// Records per appended batch (several requests' records share one batch and fdatasync).
const WRITE_BATCH_RECORDS_MAX: usize = 1000;

/// Records of one request waiting to be appended.
struct PendingWrite {
    records: Vec<StoredRecord>,
    /// The offset of the first record, once durable.
    reply: oneshot::Sender<Result<i64, ErrorCode>>,
}

/// The write queue of one `__consumer_offsets` partition.
#[derive(Default)]
struct PartitionWriter {
    queue: std::collections::VecDeque<PendingWrite>,
    /// A writer task is draining the queue.
    running: bool,
    /// Bytes appended (or replayed) since the last checkpoint.
    bytes_since_checkpoint: u64,
    /// Size of the last checkpoint: the next one waits for at least this much more.
    checkpoint_bytes: u64,
}

/// The offsets partitions this shard coordinates: which are replayed, and their writers.
#[derive(Default)]
pub(super) struct Log {
    /// `__consumer_offsets` partitions replayed into the groups.
    loaded: RefCell<HashSet<i32>>,
    load_lock: async_lock::Mutex<()>,
    writers: RefCell<HashMap<i32, PartitionWriter>>,
}

impl Groups {
    /// Replays `__consumer_offsets` partition `p` into the group state, once.
    pub(super) async fn load_groups(&self, p: i32) -> Result<(), ErrorCode> {
        if self.state.log.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let _one = self.state.log.load_lock.lock().await;
        if self.state.log.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let started = Instant::now();
        let mut offset = 0;
        let mut records = 0u64;
        let mut replayed_bytes = 0u64;
        let Some(log) = self.partition(OFFSETS_TOPIC, p) else {
            warn!(
                partition = p,
                "cannot load consumer groups: the offsets partition is not open here"
            );
            return Err(ErrorCode::CoordinatorLoadInProgress);
        };
        loop {
            let data: Vec<Bytes> = match log.read(Reader::Internal, offset, 1 << 20).await {
                Ok(batches) => batches,
                Err(e)
                    if e.code == ErrorCode::OffsetOutOfRange
                        && offset < log.offsets().log_start_offset =>
                {
                    offset = log.offsets().log_start_offset;
                    continue;
                }
                Err(e) => {
                    warn!(partition = p, error = ?e, "cannot load consumer groups");
                    return Err(ErrorCode::CoordinatorLoadInProgress);
                }
            };
            if data.is_empty() {
                break;
            }
            let mut decoded = Vec::new();
            for batch in &data {
                replayed_bytes += batch.len() as u64;
                decoded.extend(decode_record_batches(batch).map_err(|e| {
                    warn!(partition = p, error = %e, "damaged record in the offsets topic");
                    ErrorCode::CoordinatorNotAvailable
                })?);
            }
            if decoded.is_empty() {
                break;
            }
            for rec in decoded {
                offset = rec.offset + 1;
                let Some(value) = rec.value else { continue };
                match StoredRecord::decode(&value) {
                    Ok(r) => {
                        self.replay(r);
                        records += 1;
                    }
                    Err(e) => {
                        warn!(partition = p, offset = rec.offset, error = %e, "skipping an unreadable group record")
                    }
                }
            }
        }
        self.state.log.loaded.borrow_mut().insert(p);
        // A long log gets a checkpoint with the next write.
        self.state
            .log
            .writers
            .borrow_mut()
            .entry(p)
            .or_default()
            .bytes_since_checkpoint += replayed_bytes;
        if records > 0 {
            info!(
                partition = p,
                records,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "consumer groups loaded"
            );
        }
        Ok(())
    }

    /// Applies a stored record to the group state. Requests parked in a classic group that
    /// the record replaces or deletes are dropped (they answer as on a coordinator move).
    fn replay(&self, r: StoredRecord) {
        let mut abandoned = Vec::new();
        let mut groups = self.state.groups.borrow_mut();
        match r {
            StoredRecord::Offset {
                group,
                topic,
                partition,
                offset,
                leader_epoch,
                metadata,
                ..
            } => {
                groups.entry(group).or_default().offsets.insert(
                    (topic, partition),
                    Committed {
                        offset,
                        leader_epoch,
                        metadata,
                    },
                );
            }
            StoredRecord::OffsetDeleted {
                group,
                topic,
                partition,
            } => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            StoredRecord::Group {
                group,
                protocol_type,
                protocol,
                generation,
                leader,
                members,
            } => {
                let g = groups.entry(group).or_default();
                abandoned.extend(g.classic.parked());
                g.consumer = None;
                g.classic.restore(
                    protocol_type,
                    protocol,
                    generation,
                    leader,
                    members,
                    Instant::now(),
                );
            }
            StoredRecord::GroupDeleted { group } => {
                if let Some(g) = groups.remove(&group) {
                    abandoned.extend(g.classic.parked());
                }
            }
            StoredRecord::ConsumerGroup { group, meta } => {
                let g = groups.entry(group).or_default();
                let c = g.consumer.get_or_insert_with(Default::default);
                c.epoch = meta.epoch;
                c.assignment_epoch = meta.assignment_epoch;
                c.assignor = meta.assignor;
                c.topics_seen = meta
                    .topics
                    .into_iter()
                    .map(|(name, id, partitions)| {
                        (
                            name,
                            cg::TopicMeta {
                                id: Uuid::from_bytes(id),
                                partitions,
                            },
                        )
                    })
                    .collect();
            }
            StoredRecord::ConsumerMember { group, member } => {
                let g = groups.entry(group.clone()).or_default();
                let c = g.consumer.get_or_insert_with(Default::default);
                let id = member.member_id.clone();
                if let Err(e) = c.restore_member(member.restore(Instant::now()), Instant::now()) {
                    warn!(group = %group, member = %id, error = %e, "cannot restore a consumer group member; it will rejoin");
                }
            }
            StoredRecord::ConsumerMemberRemoved { group, member_id } => {
                if let Some(c) = groups.get_mut(&group).and_then(|g| g.consumer.as_mut()) {
                    c.remove_restored(&member_id);
                }
            }
        }
        drop(groups);
        self.drop_parked(abandoned);
    }

    /// Appends `records` to the offsets partition and waits until they are durable.
    ///
    /// The records join the partition's write queue before this returns its future's first
    /// poll, so records reach the log in the order the coordinator computed them (callers
    /// compute and call this without an await in between): the last record of a key in the
    /// log is always its latest state, which is what replay and checkpoints rely on.
    pub(super) async fn persist(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
    ) -> Result<(), ErrorCode> {
        if records.is_empty() {
            return Ok(());
        }
        let rx = self.enqueue_write(partition, records)?;
        rx.await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
            .map(|_| ())
    }

    pub(super) fn enqueue_write(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
    ) -> Result<oneshot::Receiver<Result<i64, ErrorCode>>, ErrorCode> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut writers = self.state.log.writers.borrow_mut();
            let w = writers.entry(partition).or_default();
            if w.queue.len() >= GROUP_WRITES_QUEUED_MAX {
                warn!(
                    partition,
                    queued = w.queue.len(),
                    "the consumer group write queue is full; answering COORDINATOR_NOT_AVAILABLE (clients retry)"
                );
                return Err(ErrorCode::CoordinatorNotAvailable);
            }
            w.queue.push_back(PendingWrite { records, reply: tx });
            !std::mem::replace(&mut w.running, true)
        };
        if start {
            let me = self.clone();
            runtime::spawn(async move { me.write_loop(partition).await });
        }
        Ok(rx)
    }

    /// The one writer of offsets partition `partition`: appends queued records in order,
    /// several requests' records per batch (one fdatasync covers them), and writes a
    /// checkpoint when enough has been appended since the last one.
    async fn write_loop(self, partition: i32) {
        loop {
            let due = self
                .state
                .log
                .writers
                .borrow()
                .get(&partition)
                .is_some_and(|w| {
                    w.bytes_since_checkpoint
                        > self
                            .config()
                            .offsets_checkpoint_bytes
                            .max(w.checkpoint_bytes)
                });
            if due && self.state.log.loaded.borrow().contains(&partition) {
                self.checkpoint(partition).await;
            }
            let batch: Vec<PendingWrite> = {
                let mut writers = self.state.log.writers.borrow_mut();
                let w = writers.entry(partition).or_default();
                let mut out = Vec::new();
                let mut count = 0;
                while let Some(next) = w.queue.front() {
                    if !out.is_empty() && count + next.records.len() > WRITE_BATCH_RECORDS_MAX {
                        break;
                    }
                    count += next.records.len();
                    out.push(w.queue.pop_front().expect("front exists"));
                }
                if out.is_empty() {
                    w.running = false;
                    return;
                }
                out
            };
            let records: Vec<&StoredRecord> = batch.iter().flat_map(|w| w.records.iter()).collect();
            match self.append_records(partition, &records).await {
                Ok((base, bytes)) => {
                    if let Some(w) = self.state.log.writers.borrow_mut().get_mut(&partition) {
                        w.bytes_since_checkpoint += bytes;
                    }
                    // Offsets and deletions take effect once durable, here, before anything
                    // else runs: a checkpoint computed next must include them, or it would
                    // delete their records without carrying them forward.
                    for w in &batch {
                        for r in &w.records {
                            if matches!(
                                r,
                                StoredRecord::Offset { .. }
                                    | StoredRecord::OffsetDeleted { .. }
                                    | StoredRecord::GroupDeleted { .. }
                            ) {
                                self.replay(r.clone());
                            }
                        }
                    }
                    let mut offset = base;
                    for w in batch {
                        let _ = w.reply.send(Ok(offset));
                        offset += w.records.len() as i64;
                    }
                }
                Err(code) => {
                    for w in batch {
                        let _ = w.reply.send(Err(code));
                    }
                }
            }
        }
    }

    /// Appends one batch of `records` with acks=all; returns its base offset and size.
    async fn append_records(
        &self,
        partition: i32,
        records: &[&StoredRecord],
    ) -> Result<(i64, u64), ErrorCode> {
        let now = runtime::now_ms();
        let batch: Vec<ProduceRecord> = records
            .iter()
            .map(|r| ProduceRecord {
                key: Some(Bytes::from(r.key().into_bytes())),
                value: Some(r.encode()),
                headers: Vec::new(),
                timestamp_ms: now,
            })
            .collect();
        let data = encode_record_batch(&batch, &BatchOptions::default()).map_err(|e| {
            warn!(error = %e, "cannot encode group records");
            ErrorCode::UnknownServerError
        })?;
        let bytes = data.len() as u64;
        let Some(log) = self.partition(OFFSETS_TOPIC, partition) else {
            warn!(
                partition,
                "cannot persist group records: the offsets partition is not open here"
            );
            return Err(ErrorCode::CoordinatorNotAvailable);
        };
        let lag_max = Duration::from_millis(self.config().replica_lag_time_max_ms);
        let batches = crate::partition::split_batches(data).map_err(|e| {
            warn!(error = ?e, "group records encoded into a bad batch");
            ErrorCode::UnknownServerError
        })?;
        match log.produce(batches, -1, lag_max).await {
            Ok(produced) => Ok((produced.base_offset, bytes)),
            Err(e) => {
                warn!(group = records[0].group(), error = ?e, "cannot persist group records");
                Err(if e.code == ErrorCode::MessageTooLarge {
                    ErrorCode::OffsetMetadataTooLarge
                } else {
                    ErrorCode::CoordinatorNotAvailable
                })
            }
        }
    }

    /// Writes the whole state of the groups on `partition` (every group record and committed
    /// offset) as new records, then deletes everything before them: the partition stops
    /// growing with every commit, and a restart replays at most a checkpoint plus what came
    /// after it. Runs inside the partition's writer, so nothing is appended in between.
    async fn checkpoint(&self, partition: i32) {
        let started = Instant::now();
        let Some(partitions) = self.offsets_partitions() else {
            return;
        };
        let records = self.state_records(partition, partitions);
        let mut first: Option<i64> = None;
        let mut bytes = 0;
        for chunk in records.chunks(WRITE_BATCH_RECORDS_MAX) {
            let refs: Vec<&StoredRecord> = chunk.iter().collect();
            match self.append_records(partition, &refs).await {
                Ok((base, b)) => {
                    first.get_or_insert(base);
                    bytes += b;
                }
                Err(code) => {
                    warn!(
                        partition,
                        ?code,
                        "consumer group checkpoint failed; will retry after more writes"
                    );
                    if let Some(w) = self.state.log.writers.borrow_mut().get_mut(&partition) {
                        w.bytes_since_checkpoint = 0;
                    }
                    return;
                }
            }
        }
        // Nothing before the checkpoint is needed any more (an empty partition state
        // deletes up to the log end).
        let Some(log) = self.partition(OFFSETS_TOPIC, partition) else {
            return;
        };
        let upto = first.unwrap_or_else(|| log.offsets().high_watermark);
        if let Err(e) = log.delete_records(Some(upto)).await {
            warn!(partition, error = ?e, "cannot delete records before the group checkpoint");
        }
        if let Some(w) = self.state.log.writers.borrow_mut().get_mut(&partition) {
            w.bytes_since_checkpoint = 0;
            w.checkpoint_bytes = bytes;
        }
        info!(
            partition,
            records = records.len(),
            bytes,
            log_start_offset = upto,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "consumer group checkpoint written; older records deleted"
        );
    }

    /// Every record needed to rebuild the groups of `partition` from nothing.
    fn state_records(&self, partition: i32, partitions: i32) -> Vec<StoredRecord> {
        let groups = self.state.groups.borrow();
        let now = runtime::now_ms();
        let mut out = Vec::new();
        let mut ids: Vec<&String> = groups
            .keys()
            .filter(|id| offsets_partition(id, partitions) == partition)
            .collect();
        ids.sort();
        for id in ids {
            let g = &groups[id];
            if let Some(c) = &g.consumer {
                let changes = cg::Changes {
                    group: true,
                    members: c.members.keys().cloned().collect(),
                    removed: Default::default(),
                };
                out.extend(consumer_records(id, c, &changes));
            } else {
                out.extend(g.classic.checkpoint(id));
            }
            for ((topic, p), c) in &g.offsets {
                out.push(StoredRecord::Offset {
                    group: id.clone(),
                    topic: topic.clone(),
                    partition: *p,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_ms: now,
                });
            }
        }
        out
    }
}
