//! The coordinator's `__consumer_offsets` partitions: replaying one into the group state the
//! first time a group on it is used, and the one ordered writer per partition.
//!
//! Records are in Apache Kafka's own formats ([`super::wire`]) and the topic is compacted
//! like any other: every key's latest record is its state and a deletion is a tombstone, so
//! the log cleaner keeps the partitions small and a restart replays only what compaction
//! left. One writer per offsets partition appends the records in the order they were
//! computed (several requests share a batch and its fdatasync). A record takes effect when it
//! is durable: offsets and deletions are applied by the writer, group state by the protocol
//! code that wrote it.
//!
//! Partitions written by Rill before it used Kafka's formats (text keys, rkyv values) are
//! still read; the first load of such a partition writes its whole state again in Kafka's
//! formats and a tombstone for every old key, so compaction removes the old records.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use rill_net::client::{decode_record_batches, encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::ErrorCode;
use rill_storage::batch::BatchHeader;
use rill_storage::txn::{parse_marker, ControlKind};
use tracing::{info, warn};
use uuid::Uuid;

use super::consumer as cg;
use super::coordinator::Groups;
use super::offsets::Committed;
use super::records::{consumer_records, offsets_partition, StoredRecord};
use super::wire::{self, KeyValue, LogRecord, MemberCurrent, MemberMetadata};
use crate::coordinator_wire::end_of_batches;
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
    /// Records appended after `records` as they are (the tombstones of a migration).
    raw: Vec<KeyValue>,
    /// TxnOffsetCommit: the producer id and epoch whose transaction the offsets belong to
    /// (written as a transactional batch of that producer, pending until its end marker).
    txn: Option<(i64, i16)>,
    /// The offset of the first record, once durable.
    reply: oneshot::Sender<Result<i64, ErrorCode>>,
}

/// The write queue of one `__consumer_offsets` partition.
#[derive(Default)]
struct PartitionWriter {
    queue: std::collections::VecDeque<PendingWrite>,
    /// A writer task is draining the queue.
    running: bool,
}

/// The offsets partitions this shard coordinates: which are replayed, and their writers.
#[derive(Default)]
pub(super) struct Log {
    /// `__consumer_offsets` partitions replayed into the groups, with the leader epoch
    /// this broker led each at when it replayed it.
    loaded: RefCell<HashMap<i32, i32>>,
    load_lock: async_lock::Mutex<()>,
    writers: RefCell<HashMap<i32, PartitionWriter>>,
}

/// The pieces of a KIP-848 member read so far (Kafka keeps a member in three records).
#[derive(Default)]
struct PartialMember {
    meta: Option<MemberMetadata>,
    current: Option<MemberCurrent>,
    target: Option<Vec<super::records::StoredPartitions>>,
}

impl Groups {
    /// The leader epoch of offsets partition `p` if this shard coordinates it now (this
    /// broker leads it and this shard owns it).
    fn led_epoch(&self, p: i32) -> Option<i32> {
        let epoch = self
            .image()
            .placement(OFFSETS_TOPIC, p)
            .filter(|pl| pl.leader == self.node_id())
            .map(|pl| pl.leader_epoch)?;
        (self.owner_of(OFFSETS_TOPIC, p).ok() == Some(self.id())).then_some(epoch)
    }

    /// Whether partition `p` is loaded for the leadership this broker holds now.
    fn loaded_now(&self, p: i32) -> bool {
        let epoch = self.led_epoch(p);
        epoch.is_some() && self.state.log.loaded.borrow().get(&p).copied() == epoch
    }

    /// Forgets the groups of every loaded partition this shard no longer coordinates at the
    /// epoch it loaded it at: Kafka's coordinator unloads a partition's groups when it
    /// resigns and replays them from the log when it is elected again, so a broker that
    /// led a partition, lost it (a pause, a network cut) and leads it again serves what
    /// was committed meanwhile, not what it held before. Their parked requests answer as
    /// when the coordinator goes away.
    pub(super) fn unload_resigned(&self) {
        let resigned: Vec<i32> = self
            .state
            .log
            .loaded
            .borrow()
            .iter()
            .filter(|(p, e)| self.led_epoch(**p) != Some(**e))
            .map(|(p, _)| *p)
            .collect();
        if resigned.is_empty() {
            return;
        }
        let Some(partitions) = self.offsets_partitions() else {
            return;
        };
        let mut abandoned = Vec::new();
        let mut unloaded = 0usize;
        self.state.groups.borrow_mut().retain(|id, g| {
            let keep = !resigned.contains(&offsets_partition(id, partitions));
            if !keep {
                abandoned.extend(g.classic.parked());
                unloaded += 1;
            }
            keep
        });
        for pending in self.state.pending_txn.borrow_mut().values_mut() {
            pending.retain(|(r, _)| !resigned.contains(&offsets_partition(r.group(), partitions)));
        }
        let mut loaded = self.state.log.loaded.borrow_mut();
        for p in &resigned {
            loaded.remove(p);
        }
        drop(loaded);
        self.drop_parked(abandoned);
        info!(partitions = ?resigned, groups = unloaded,
            "consumer groups unloaded: this broker no longer leads their offsets partitions at the epoch it loaded them at");
    }

    /// Replays `__consumer_offsets` partition `p` into the group state, once per leadership.
    pub(super) async fn load_groups(&self, p: i32) -> Result<(), ErrorCode> {
        if self.loaded_now(p) {
            return Ok(());
        }
        let _one = self.state.log.load_lock.lock().await;
        if self.loaded_now(p) {
            return Ok(());
        }
        // Loaded at an older leadership: forget that first.
        self.unload_resigned();
        let Some(epoch) = self.led_epoch(p) else {
            return Err(ErrorCode::NotCoordinator);
        };
        let started = Instant::now();
        let mut offset = 0;
        let mut records = 0u64;
        let Some(log) = self.partition(OFFSETS_TOPIC, p) else {
            warn!(
                partition = p,
                "cannot load consumer groups: the offsets partition is not open here"
            );
            return Err(ErrorCode::CoordinatorLoadInProgress);
        };
        let mut members: HashMap<(String, String), PartialMember> = HashMap::new();
        // Keys of live records in Rill's formats from before Kafka's (see the module's note).
        let mut legacy: BTreeSet<Bytes> = BTreeSet::new();
        let mut skipped = 0u64;
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
            // Each record with the producer whose transaction it belongs to; the end
            // markers, each with the number of records before it, settle the transactions'
            // offsets in log order below.
            let mut decoded = Vec::new();
            let mut markers: Vec<(usize, i64, bool)> = Vec::new();
            for chunk in &data {
                let mut rest = chunk.clone();
                while let Ok(len) = crate::partition::batch_len(&rest) {
                    let batch = rest.split_to(len);
                    let Ok(h) = BatchHeader::parse(&batch) else {
                        continue;
                    };
                    if h.is_control() {
                        if let Some(m) = parse_marker(&batch) {
                            markers.push((
                                decoded.len(),
                                h.producer_id,
                                m.kind == ControlKind::Commit,
                            ));
                        }
                        continue;
                    }
                    let txn = h.is_transactional().then_some(h.producer_id);
                    let records = decode_record_batches(&batch).map_err(|e| {
                        warn!(partition = p, error = %e, "damaged record in the offsets topic");
                        ErrorCode::CoordinatorNotAvailable
                    })?;
                    decoded.extend(records.into_iter().map(|r| (txn, r)));
                }
            }
            // A batch the cleaner emptied (Kafka keeps such headers) holds no record: the
            // headers say where the next read starts.
            let next = end_of_batches(&data);
            if decoded.is_empty() && next <= offset {
                break;
            }
            offset = offset.max(next);
            let mut markers = markers.into_iter().peekable();
            for (i, (txn, rec)) in decoded.into_iter().enumerate() {
                while let Some((_, pid, commit)) = markers.next_if(|(at, _, _)| *at <= i) {
                    self.end_txn_offsets_in(p, pid, commit);
                }
                let Some(key) = rec.key else {
                    skipped += 1;
                    continue;
                };
                if !wire::is_kafka_key(&key) {
                    // A tombstone here is a finished migration's: that key needs no other.
                    let Some(value) = rec.value else {
                        legacy.remove(&key);
                        continue;
                    };
                    legacy.insert(key);
                    match StoredRecord::decode(&value) {
                        Ok(r) => {
                            self.replay_at(r, rec.offset);
                            records += 1;
                        }
                        Err(e) => {
                            skipped += 1;
                            warn!(partition = p, offset = rec.offset, error = %e, "skipping an unreadable group record")
                        }
                    }
                    continue;
                }
                match wire::decode(&key, rec.value.as_deref()) {
                    Ok(LogRecord::Stored(r @ StoredRecord::Offset { .. })) if txn.is_some() => {
                        let pid = txn.expect("checked");
                        self.state
                            .pending_txn
                            .borrow_mut()
                            .entry(pid)
                            .or_default()
                            .push((r, rec.offset));
                        records += 1;
                    }
                    Ok(r) => {
                        self.replay_log_record(r, rec.offset, &mut members);
                        records += 1;
                    }
                    Err(e) => {
                        skipped += 1;
                        warn!(partition = p, offset = rec.offset, error = %e, "skipping an unreadable group record")
                    }
                }
            }
            for (_, pid, commit) in markers {
                self.end_txn_offsets_in(p, pid, commit);
            }
        }
        for ((group, id), m) in members {
            let Some(meta) = m.meta else { continue };
            let member = wire::member_of(id, meta, m.current, m.target);
            self.replay(StoredRecord::ConsumerMember {
                group,
                member: Box::new(member),
            });
        }
        self.state.log.loaded.borrow_mut().insert(p, epoch);
        if records > 0 || skipped > 0 {
            info!(
                partition = p,
                records,
                skipped,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "consumer groups loaded"
            );
        }
        if !legacy.is_empty() {
            self.migrate(p, legacy).await;
        }
        Ok(())
    }

    /// Rewrites a partition read in Rill's old formats: the groups' whole state in Kafka's,
    /// then a tombstone for every old key, so the cleaner removes the old records and no
    /// old record can outlive a later deletion.
    async fn migrate(&self, partition: i32, legacy: BTreeSet<Bytes>) {
        let Some(partitions) = self.offsets_partitions() else {
            return;
        };
        let state = self.state_records(partition, partitions);
        let (records, keys) = (state.len(), legacy.len());
        // In writes of at most WRITE_BATCH_RECORDS_MAX records: the state first, then the
        // tombstones, so an interrupted migration leaves the old records live and the next
        // load starts it again.
        let mut waits = Vec::new();
        let mut state = state.into_iter().peekable();
        let mut legacy = legacy.into_iter().peekable();
        while state.peek().is_some() || legacy.peek().is_some() {
            let chunk: Vec<StoredRecord> =
                state.by_ref().take(WRITE_BATCH_RECORDS_MAX / 3).collect();
            let raw: Vec<KeyValue> = if chunk.is_empty() {
                legacy
                    .by_ref()
                    .take(WRITE_BATCH_RECORDS_MAX)
                    .map(|k| (k, None))
                    .collect()
            } else {
                Vec::new()
            };
            match self.enqueue(partition, chunk, raw, None) {
                Ok(rx) => waits.push(rx),
                Err(code) => {
                    warn!(partition, ?code, "cannot rewrite the consumer groups in Kafka's record formats now; the next load tries again");
                    return;
                }
            }
        }
        for rx in waits {
            if !matches!(rx.await, Ok(Ok(_))) {
                warn!(partition, "cannot rewrite the consumer groups in Kafka's record formats; the next load tries again");
                return;
            }
        }
        info!(
            partition,
            records,
            old_keys = keys,
            "consumer groups rewritten in Kafka's record formats; the old records are compacted away"
        );
    }

    /// An end marker of producer `pid` in offsets partition `p`: its pending transactional
    /// offsets of groups on `p` take effect (commit) or are dropped (abort).
    pub(super) fn end_txn_offsets_in(&self, p: i32, pid: i64, commit: bool) {
        let Some(partitions) = self.offsets_partitions() else {
            return;
        };
        let settled: Vec<(StoredRecord, i64)> = {
            let mut pending = self.state.pending_txn.borrow_mut();
            let Some(list) = pending.get_mut(&pid) else {
                return;
            };
            let (here, rest): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|(r, _)| offsets_partition(r.group(), partitions) == p);
            if rest.is_empty() {
                pending.remove(&pid);
            } else {
                *list = rest;
            }
            here
        };
        if commit {
            for (r, at) in settled {
                // Kafka's rule: the transaction's offset replaces only one committed by an
                // earlier record (a plain commit written after it, while the transaction
                // was open, stays).
                let older = match &r {
                    StoredRecord::Offset {
                        group,
                        topic,
                        partition,
                        ..
                    } => self
                        .state
                        .groups
                        .borrow()
                        .get(group)
                        .and_then(|g| g.offsets.get(&(topic.clone(), *partition)))
                        .is_none_or(|c| c.record_offset < at),
                    _ => true,
                };
                if older {
                    self.replay_at(r, at);
                }
            }
        }
    }

    /// Applies one record in Kafka's formats. KIP-848 members are gathered in `members` and
    /// restored once the whole partition is read.
    fn replay_log_record(
        &self,
        r: LogRecord,
        record_offset: i64,
        members: &mut HashMap<(String, String), PartialMember>,
    ) {
        let consumer = |group: String, f: &dyn Fn(&mut cg::ConsumerGroup)| {
            let mut groups = self.state.groups.borrow_mut();
            let g = groups.entry(group).or_default();
            f(g.consumer.get_or_insert_with(Default::default));
        };
        match r {
            LogRecord::Stored(r) => {
                if let StoredRecord::GroupDeleted { group } = &r {
                    members.retain(|(g, _), _| g != group);
                }
                self.replay_at(r, record_offset)
            }
            LogRecord::ConsumerGroup {
                group,
                value: Some((epoch, assignor)),
            } => consumer(group, &|c| {
                c.epoch = epoch;
                c.assignor = assignor.clone();
            }),
            LogRecord::ConsumerGroup { group, value: None } => {
                if let Some(g) = self.state.groups.borrow_mut().get_mut(&group) {
                    g.consumer = None;
                }
            }
            LogRecord::ConsumerGroupTopics {
                group,
                value: Some(topics),
            } => consumer(group, &|c| {
                c.topics_seen = topics
                    .iter()
                    .map(|(name, id, partitions)| {
                        (
                            name.clone(),
                            cg::TopicMeta {
                                id: Uuid::from_bytes(*id),
                                partitions: *partitions,
                            },
                        )
                    })
                    .collect();
            }),
            LogRecord::ConsumerGroupAssignmentEpoch {
                group,
                value: Some(epoch),
            } => consumer(group, &|c| c.assignment_epoch = epoch),
            LogRecord::ConsumerGroupTopics { value: None, .. }
            | LogRecord::ConsumerGroupAssignmentEpoch { value: None, .. } => {}
            LogRecord::MemberMetadata {
                group,
                member,
                value,
            } => {
                if value.is_none() {
                    // A member restored from an older record in Rill's old format goes too.
                    if let Some(c) = self
                        .state
                        .groups
                        .borrow_mut()
                        .get_mut(&group)
                        .and_then(|g| g.consumer.as_mut())
                    {
                        c.remove_restored(&member);
                    }
                }
                members.entry((group, member)).or_default().meta = value;
            }
            LogRecord::MemberTarget {
                group,
                member,
                value,
            } => members.entry((group, member)).or_default().target = value,
            LogRecord::MemberCurrent {
                group,
                member,
                value,
            } => members.entry((group, member)).or_default().current = value,
            LogRecord::Other { .. } => {}
        }
    }

    /// Applies a stored record to the group state, as if written at no known offset.
    fn replay(&self, r: StoredRecord) {
        self.replay_at(r, -1)
    }

    /// Applies a stored record written at `record_offset` of its offsets partition to the
    /// group state. Requests parked in a classic group that the record replaces or deletes
    /// are dropped (they answer as on a coordinator move).
    fn replay_at(&self, r: StoredRecord, record_offset: i64) {
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
                        record_offset,
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
    /// log is always its latest state, which is what replay and compaction rely on.
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
        self.enqueue(partition, records, Vec::new(), None)
    }

    /// TxnOffsetCommit's offsets, written as producer `txn`'s transactional batch; once
    /// durable they wait for the transaction's end marker ([`Groups::end_txn_offsets`]).
    pub(super) async fn persist_txn(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
        txn: (i64, i16),
    ) -> Result<(), ErrorCode> {
        if records.is_empty() {
            return Ok(());
        }
        let rx = self.enqueue(partition, records, Vec::new(), Some(txn))?;
        rx.await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
            .map(|_| ())
    }

    fn enqueue(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
        raw: Vec<KeyValue>,
        txn: Option<(i64, i16)>,
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
            w.queue.push_back(PendingWrite {
                records,
                raw,
                txn,
                reply: tx,
            });
            !std::mem::replace(&mut w.running, true)
        };
        if start {
            let me = self.clone();
            runtime::spawn(async move { me.write_loop(partition).await });
        }
        Ok(rx)
    }

    /// The one writer of offsets partition `partition`: appends queued records in order,
    /// several requests' records per batch (one fdatasync covers them).
    async fn write_loop(self, partition: i32) {
        loop {
            let batch: Vec<PendingWrite> = {
                let mut writers = self.state.log.writers.borrow_mut();
                let w = writers.entry(partition).or_default();
                let mut out: Vec<PendingWrite> = Vec::new();
                let mut count = 0;
                while let Some(next) = w.queue.front() {
                    let n = next.records.len() + next.raw.len();
                    if !out.is_empty() && count + n > WRITE_BATCH_RECORDS_MAX {
                        break;
                    }
                    // One batch is one producer's (or none's): a transaction's offsets never
                    // share a batch with plain records or another transaction's.
                    if out.first().is_some_and(|first| first.txn != next.txn) {
                        break;
                    }
                    count += n;
                    out.push(w.queue.pop_front().expect("front exists"));
                }
                if out.is_empty() {
                    w.running = false;
                    return;
                }
                out
            };
            let now = runtime::now_ms();
            let mut kvs: Vec<KeyValue> = Vec::new();
            let mut firsts = Vec::with_capacity(batch.len());
            // Each record's place in the batch (its offset once the batch's base is known).
            let mut at: Vec<Vec<i64>> = Vec::with_capacity(batch.len());
            for w in &batch {
                firsts.push(kvs.len() as i64);
                let mut places = Vec::with_capacity(w.records.len());
                for r in &w.records {
                    places.push(kvs.len() as i64);
                    kvs.extend(wire::encode(r, now));
                }
                at.push(places);
                kvs.extend(w.raw.iter().cloned());
            }
            let group = batch
                .iter()
                .find_map(|w| w.records.first())
                .map(|r| r.group().to_string())
                .unwrap_or_default();
            let txn = batch.first().and_then(|w| w.txn);
            match self.append_records(partition, &group, kvs, txn).await {
                Ok(base) => {
                    // Offsets and deletions take effect once durable, here, before anything
                    // else runs; a transaction's offsets once its marker commits them.
                    for (w, places) in batch.iter().zip(&at) {
                        let placed = w.records.iter().zip(places.iter().map(|i| base + i));
                        if let Some((pid, _)) = w.txn {
                            self.state
                                .pending_txn
                                .borrow_mut()
                                .entry(pid)
                                .or_default()
                                .extend(placed.map(|(r, at)| (r.clone(), at)));
                            continue;
                        }
                        for (r, at) in placed {
                            if matches!(
                                r,
                                StoredRecord::Offset { .. }
                                    | StoredRecord::OffsetDeleted { .. }
                                    | StoredRecord::GroupDeleted { .. }
                            ) {
                                self.replay_at(r.clone(), at);
                            }
                        }
                    }
                    for (w, first) in batch.into_iter().zip(firsts) {
                        let _ = w.reply.send(Ok(base + first));
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

    /// Appends `records` as one batch with acks=all (one request's records are durable
    /// together or not at all); returns its base offset.
    async fn append_records(
        &self,
        partition: i32,
        group: &str,
        records: Vec<KeyValue>,
        txn: Option<(i64, i16)>,
    ) -> Result<i64, ErrorCode> {
        let now = runtime::now_ms();
        let batch: Vec<ProduceRecord> = records
            .into_iter()
            .map(|(key, value)| ProduceRecord {
                key: Some(key),
                value,
                headers: Vec::new(),
                timestamp_ms: now,
            })
            .collect();
        let options = match txn {
            Some((producer_id, producer_epoch)) => BatchOptions {
                producer_id,
                producer_epoch,
                transactional: true,
                ..BatchOptions::default()
            },
            None => BatchOptions::default(),
        };
        let data = encode_record_batch(&batch, &options).map_err(|e| {
            warn!(error = %e, "cannot encode group records");
            ErrorCode::UnknownServerError
        })?;
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
        // Only at the leader epoch the groups were loaded at (none before a load).
        let epoch = self.state.log.loaded.borrow().get(&partition).copied();
        match log.produce_as_coordinator(batches, lag_max, epoch).await {
            Ok(produced) => Ok(produced.base_offset),
            Err(e) => {
                warn!(group, error = ?e, "cannot persist group records");
                Err(if e.code == ErrorCode::MessageTooLarge {
                    ErrorCode::OffsetMetadataTooLarge
                } else {
                    ErrorCode::CoordinatorNotAvailable
                })
            }
        }
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
                out.extend(g.classic.record_if_used(id));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: usize) -> Bytes {
        let recs: Vec<ProduceRecord> = (0..records)
            .map(|i| ProduceRecord {
                key: Some(Bytes::from(vec![i as u8])),
                value: None,
                headers: Vec::new(),
                timestamp_ms: 0,
            })
            .collect();
        encode_record_batch(&recs, &BatchOptions::default()).unwrap()
    }

    #[test]
    fn the_next_read_starts_after_the_last_whole_batch() {
        let three = batch(3);
        let mut two_batches = three.to_vec();
        // A second batch at base offset 10 with 2 records: ends at 12.
        let mut second = batch(2).to_vec();
        second[0..8].copy_from_slice(&10i64.to_be_bytes());
        two_batches.extend_from_slice(&second);
        assert_eq!(end_of_batches(std::slice::from_ref(&three)), 3);
        assert_eq!(end_of_batches(&[Bytes::from(two_batches.clone())]), 12);
        // A batch cut short is not counted; nothing whole is -1.
        let cut = Bytes::from(two_batches[..two_batches.len() - 1].to_vec());
        assert_eq!(end_of_batches(&[cut]), 3);
        assert_eq!(end_of_batches(&[three.slice(..20)]), -1);
        assert_eq!(end_of_batches(&[]), -1);
    }
}
