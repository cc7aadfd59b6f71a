//! One partition on its owner shard: its log, its replication state, its idempotent
//! producers, and the operations on them (produce, fetch, a follower's append, offsets,
//! DeleteRecords). Every request that touches a partition's data ends here, on the shard
//! that owns it; the decisions about replication are in [`replication`] (no I/O), this
//! file does the I/O around them.
//!
//! Order: appends are served first come, first served ([`FifoLock`]), and the place in line
//! is taken when [`Partition::produce`] is called, so requests that reach the partition in
//! order are appended in order, however long each waits for its turn.
//!
//! Layout: `mod.rs` (this: the partition, produce and the rest of its operations), `read`
//! (fetch, ListOffsets, OffsetForLeaderEpoch, epoch fencing), `follow` (a follower applying
//! what it fetched), `txn` (end markers, the last stable offset, aborted transactions) →
//! `replication` (sans-I/O leader/follower state), `producers` (idempotence and
//! transaction table), `hw_checkpoint` (the high watermarks' file); `sim` (tests only: a
//! seeded simulation of 3 to 5 replicas driving this code in virtual time).

pub mod codec;
mod follow;
pub mod hw_checkpoint;
mod producers;
mod read;
pub mod replication;
#[cfg(test)]
mod sim;
mod txn;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::{Event, EventListener};
use rill_net::ErrorCode;
use rill_storage::batch::{self, CheckedBatch};
use rill_storage::{Backend, DmaBackend, FileBudget, PartitionLog};
use tracing::{error, info, warn};
use uuid::Uuid;

pub use follow::{FetchAsked, FetchedPartition};
use producers::{ActiveAborted, Check, Guard, ProducerTable};
pub use producers::{ActiveProducer, MarkerWrite};
pub use read::{FetchAt, Fetched};
use replication::ReplicaState;

use crate::config::topic::{TimestampType, TopicSettings};
use crate::errors::KafkaError;
use crate::fifo::FifoLock;
use crate::metadata::Placement;
use crate::metrics::ShardMetrics;
use crate::runtime;

/// How often an acks=all produce waiting for the followers re-reads the ISR.
const ACKS_ALL_RECHECK: Duration = Duration::from_millis(50);
/// Records appended between two producer snapshots (a restart replays at most about this
/// many after the last one).
const PRODUCER_SNAPSHOT_EVERY_RECORDS: i64 = 100_000;

/// Who reads a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// A client: reads below the high watermark.
    Consumer,
    /// A read_committed client: reads below the last stable offset.
    Committed,
    /// A follower broker (Fetch's replica id): reads to the log end, and its fetch offset
    /// tells the leader what it holds.
    Follower(i32),
    /// The broker itself (loading consumer groups): reads to the log end.
    Internal,
}

impl Reader {
    /// The reader a Fetch's `replica_id` names (-1 and other negatives are consumers).
    pub fn from_replica_id(replica_id: i32) -> Reader {
        Reader::of_fetch(replica_id, 0)
    }

    /// The reader of a Fetch: its `replica_id` and `isolation_level` (1: read_committed;
    /// followers read everything whatever they say).
    pub fn of_fetch(replica_id: i32, isolation_level: i8) -> Reader {
        if replica_id >= 0 {
            Reader::Follower(replica_id)
        } else if isolation_level == 1 {
            Reader::Committed
        } else {
            Reader::Consumer
        }
    }
}

/// ListOffsets' question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// -1: the high watermark.
    Latest,
    /// -2: the log start.
    Earliest,
    /// -3: the record with the largest timestamp.
    MaxTimestamp,
    /// The first record at or after this time.
    Timestamp(i64),
}

impl OffsetQuery {
    pub fn from_wire(timestamp: i64) -> Result<OffsetQuery, KafkaError> {
        match timestamp {
            -1 => Ok(OffsetQuery::Latest),
            -2 => Ok(OffsetQuery::Earliest),
            -3 => Ok(OffsetQuery::MaxTimestamp),
            t if t >= 0 => Ok(OffsetQuery::Timestamp(t)),
            other => Err(KafkaError::new(
                ErrorCode::InvalidRequest,
                format!("timestamp {other} is not a time nor -1/-2/-3"),
            )),
        }
    }
}

/// A partition's offsets as responses report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// The high watermark until the producer table is rebuilt after a restart (a
    /// read_committed fetch rebuilds it first).
    pub last_stable_offset: i64,
}

impl Offsets {
    pub const UNKNOWN: Offsets = Offsets {
        log_start_offset: -1,
        high_watermark: -1,
        last_stable_offset: -1,
    };
}

/// What a produce appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// The first batch's offset (a duplicate's original one).
    pub base_offset: i64,
    /// The broker's time stamped into the batches (LogAppendTime topics), else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// One partition, on its owner shard.
/// How a produce is appended; checked in append turn.
#[derive(Debug, Clone, Copy, Default)]
struct AppendAs {
    /// A coordinator's own batches (Kafka's coordinator origin: an epoch, no sequences).
    coordinator: bool,
    /// Transactional batches verified with their coordinator (KIP-890 part 1): appended
    /// only while the guard holds.
    guard: Option<Guard>,
    /// Appended only while this broker leads at this epoch.
    leader_epoch: Option<i32>,
}

pub struct Partition<B: Backend = DmaBackend> {
    topic: Arc<str>,
    index: i32,
    topic_id: Uuid,
    log: PartitionLog<B>,
    settings: RefCell<TopicSettings>,
    replica: RefCell<ReplicaState>,
    /// Idempotent producers' recent batches; checked and updated in append order.
    producers: RefCell<ProducerTable>,
    /// Whether `producers` is the log's state: rebuilt from the log since this partition
    /// opened or its log was last truncated, and kept in step by every append since
    /// (a leader's and a follower's alike, as Kafka keeps producer state on every replica).
    producers_rebuilt: Cell<bool>,
    producers_max: usize,
    /// The log end when the producer table was last written beside the log.
    producer_snapshot_at: Cell<i64>,
    /// Appends in the order produces were called.
    appends: FifoLock,
    /// Transactional produces of one producer id, in the order they were called, up to
    /// taking their place in `appends` (a verification with the coordinator may come
    /// first); removed when no produce of that producer holds or waits for it.
    txn_lanes: RefCell<std::collections::HashMap<i64, Rc<FifoLock>>>,
    /// Notified on every append and high watermark move (long polls, acks=all waits).
    data: Event,
    /// A background write or sync is running (the tick does not pile up another).
    io_running: Cell<bool>,
    metrics: Rc<ShardMetrics>,
    replica_fsync: bool,
    /// The log cleaner's last look at this partition (compacted topics only).
    compaction: Cell<Option<rill_storage::CompactionStatus>>,
    /// The clock replication decisions read (follower lag, ISR changes): the real one in
    /// the broker, a virtual one in the simulator, so a seed replays the same.
    clock: Rc<dyn Fn() -> Instant>,
    /// The simulator's deliberate bug: as a follower, record nothing of the transactions it
    /// copies (its producer table and aborted index fall behind its log).
    #[cfg(test)]
    pub(super) follower_skips_txn_state: Cell<bool>,
}

/// What opening a partition needs.
pub struct Opening<'a> {
    pub topic: Arc<str>,
    pub index: i32,
    pub topic_id: Uuid,
    pub settings: TopicSettings,
    pub placement: Placement,
    pub me: i32,
    pub producers_max: usize,
    pub metrics: &'a Rc<ShardMetrics>,
    /// The high watermark the last checkpoint had (0: none).
    pub high_watermark: i64,
    /// A follower syncs what it copied before reporting it (`replica_fsync`).
    pub replica_fsync: bool,
}

impl<B: Backend> Partition<B> {
    /// Wraps an opened log.
    pub fn new(log: PartitionLog<B>, o: Opening<'_>) -> Partition<B> {
        Partition::with_clock(log, o, Rc::new(Instant::now))
    }

    /// [`Partition::new`] with the clock its replication decisions read.
    pub fn with_clock(
        log: PartitionLog<B>,
        o: Opening<'_>,
        clock: Rc<dyn Fn() -> Instant>,
    ) -> Partition<B> {
        let replica = ReplicaState::new(
            o.me,
            o.placement,
            log.log_end_offset(),
            o.high_watermark,
            clock(),
        );
        Partition {
            topic: o.topic,
            index: o.index,
            topic_id: o.topic_id,
            log,
            settings: RefCell::new(o.settings),
            replica: RefCell::new(replica),
            producers: RefCell::new(ProducerTable::new(o.producers_max)),
            producers_rebuilt: Cell::new(false),
            producers_max: o.producers_max,
            producer_snapshot_at: Cell::new(0),
            appends: FifoLock::new(),
            txn_lanes: RefCell::default(),
            data: Event::new(),
            io_running: Cell::new(false),
            metrics: o.metrics.clone(),
            replica_fsync: o.replica_fsync,
            compaction: Cell::new(None),
            clock,
            #[cfg(test)]
            follower_skips_txn_state: Cell::new(false),
        }
    }

    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    pub fn log(&self) -> &PartitionLog<B> {
        &self.log
    }

    pub fn offsets(&self) -> Offsets {
        let high_watermark = self.high_watermark();
        Offsets {
            log_start_offset: self.log.log_start_offset(),
            high_watermark,
            last_stable_offset: self.last_stable_offset().unwrap_or(high_watermark),
        }
    }

    /// Offsets below this are on every in-sync replica: what consumers may read.
    pub fn high_watermark(&self) -> i64 {
        self.replica
            .borrow()
            .high_watermark(self.log.log_end_offset())
    }

    /// Where a reader's view of the log ends: followers and the broker itself read to the
    /// log end.
    pub fn visible_end(&self, reader: Reader) -> i64 {
        match reader {
            Reader::Consumer => self.high_watermark(),
            // Fetches rebuild the table first; a long poll's check before then wakes early.
            Reader::Committed => self
                .last_stable_offset()
                .unwrap_or_else(|| self.high_watermark()),
            Reader::Follower(_) | Reader::Internal => self.log.log_end_offset(),
        }
    }

    /// Resolves at the next append or high watermark move.
    pub fn data_listener(&self) -> EventListener {
        self.data.listen()
    }

    fn notify(&self) {
        self.data.notify(usize::MAX);
    }

    /// This broker leads the partition (always, on a single broker).
    pub fn is_leader(&self) -> bool {
        self.replica.borrow().is_leader()
    }

    /// New settings and placement from the metadata image.
    pub fn apply(
        &self,
        settings: &TopicSettings,
        placement: &Placement,
        storage: &crate::config::StorageSettings,
    ) {
        if *self.settings.borrow() != *settings {
            if let Err(e) = self.log.set_config(settings.log_config(storage)) {
                warn!(topic = %self.topic, partition = self.index, error = %e, "config not applied");
            }
            *self.settings.borrow_mut() = settings.clone();
        }
        if self.replica.borrow().placement() != placement {
            let end = self.log.log_end_offset();
            let moved =
                self.replica
                    .borrow_mut()
                    .set_placement(placement.clone(), end, (self.clock)());
            if moved {
                self.notify();
            }
        }
    }

    /// The idempotent producers this partition remembers (DescribeProducers), on its leader.
    /// Taken in append order, after the table was refilled from the log if a restart
    /// emptied it, so it matches what the next append would check against.
    pub async fn active_producers(&self) -> Result<Vec<ActiveProducer>, KafkaError> {
        self.ensure_leader()?;
        let _turn = self.appends.lock().await;
        if !self.producers_rebuilt.get() {
            self.rebuild_producers().await;
        }
        Ok(self.producers.borrow().active())
    }

    /// Clients (and followers) deal with the leader only; anyone else answers
    /// NOT_LEADER_OR_FOLLOWER and the client refreshes its metadata.
    pub fn ensure_leader(&self) -> Result<(), KafkaError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(self.not_leader())
        }
    }

    fn not_leader(&self) -> KafkaError {
        let r = self.replica.borrow();
        let p = r.placement();
        KafkaError::new(
            ErrorCode::NotLeaderOrFollower,
            format!(
                "this broker does not lead {}-{} (leader {}, epoch {})",
                self.topic, self.index, p.leader, p.leader_epoch
            ),
        )
    }

    /// Appends the record batches of one produce partition and waits for the durability
    /// `acks` asks for. The place in the append order is taken by this call.
    pub fn produce(
        &self,
        batches: Vec<CheckedBatch>,
        acks: i16,
        replica_lag_max: Duration,
    ) -> impl std::future::Future<Output = Result<Produced, KafkaError>> + '_ {
        self.produce_as(batches, acks, replica_lag_max, AppendAs::default())
    }

    /// A coordinator's own records (a group coordinator's transactional offsets): appended
    /// with acks=all like a produce, but as Kafka's coordinator origin, whose batches carry
    /// a producer id and epoch without sequence numbers (only the epoch is checked). With
    /// `leader_epoch`, only while this broker leads at that epoch (the one the coordinator
    /// loaded its state at; NOT_LEADER_OR_FOLLOWER otherwise).
    pub fn produce_as_coordinator(
        &self,
        batches: Vec<CheckedBatch>,
        replica_lag_max: Duration,
        leader_epoch: Option<i32>,
    ) -> impl std::future::Future<Output = Result<Produced, KafkaError>> + '_ {
        let how = AppendAs {
            coordinator: true,
            leader_epoch,
            ..AppendAs::default()
        };
        self.produce_as(batches, -1, replica_lag_max, how)
    }

    /// [`Partition::produce`] with acks=all, appended only while this broker leads at
    /// `leader_epoch` (a coordinator's state records: a coordinator that lost the
    /// leadership and leads again at a later epoch has loaded its state anew, and what it
    /// decided from the old state must not reach the log).
    pub fn produce_at(
        &self,
        batches: Vec<CheckedBatch>,
        replica_lag_max: Duration,
        leader_epoch: i32,
    ) -> impl std::future::Future<Output = Result<Produced, KafkaError>> + '_ {
        let how = AppendAs {
            leader_epoch: Some(leader_epoch),
            ..AppendAs::default()
        };
        self.produce_as(batches, -1, replica_lag_max, how)
    }

    /// A produce appended as `how` says, up to its acks.
    fn produce_as(
        &self,
        batches: Vec<CheckedBatch>,
        acks: i16,
        replica_lag_max: Duration,
        how: AppendAs,
    ) -> impl std::future::Future<Output = Result<Produced, KafkaError>> + '_ {
        let appended = self.append_durably_from(batches, acks, how);
        async move {
            let (produced, last_offset, epoch) = appended.await?;
            if acks == -1 && last_offset >= 0 {
                self.await_replication(last_offset, epoch, replica_lag_max)
                    .await?;
            }
            Ok(produced)
        }
    }

    /// A client's produce up to acks=all's wait (see [`Partition::append_durably_from`]).
    #[cfg(test)]
    fn append_durably(
        &self,
        batches: Vec<CheckedBatch>,
        acks: i16,
    ) -> impl std::future::Future<Output = Result<(Produced, i64, i32), KafkaError>> + '_ {
        self.append_durably_from(batches, acks, AppendAs::default())
    }

    /// A produce up to acks=all's wait for the in-sync replicas: the appends, in turn, and
    /// this broker's part of the durability, appended as `how` says. Returns what was
    /// appended, the last offset acks=all waits for and the leader epoch it was appended
    /// (or found, for a duplicate) under. The place in the append order is taken by this
    /// call.
    fn append_durably_from(
        &self,
        batches: Vec<CheckedBatch>,
        acks: i16,
        how: AppendAs,
    ) -> impl std::future::Future<Output = Result<(Produced, i64, i32), KafkaError>> + '_ {
        let turn = self.appends.lock();
        async move {
            let turn = turn.await;
            let (produced, last_offset, sync_due, epoch) =
                self.append_in_turn(batches, acks, how).await?;
            drop(turn);
            // acks=all means durable here and on every in-sync replica; flush.messages /
            // flush.ms can ask for durability too. acks=1 waits until the bytes are in the
            // file, which survives kill -9.
            if acks == -1 || sync_due {
                let started = Instant::now();
                self.log.sync().await.map_err(KafkaError::from)?;
                self.metrics.synced(started.elapsed());
            } else if acks == 1 {
                self.log.write_through().await.map_err(KafkaError::from)?;
            }
            Ok((produced, last_offset, epoch))
        }
    }

    /// The part of a produce that runs in append order: leadership, producer sequences,
    /// the appends. Returns what was appended, the last offset to wait for, whether the
    /// flush policy asks for a sync, and the leader epoch of the appends.
    async fn append_in_turn(
        &self,
        batches: Vec<CheckedBatch>,
        acks: i16,
        how: AppendAs,
    ) -> Result<(Produced, i64, bool, i32), KafkaError> {
        let settings = self.settings.borrow().clone();
        // Leadership and epoch are read here, in turn, so a batch is stamped with the
        // epoch it is appended under.
        let leader_epoch = self.leader_epoch_for_append(acks)?;
        if how.leader_epoch.is_some_and(|e| e != leader_epoch) {
            return Err(self.not_leader());
        }
        if let Some(g) = how.guard {
            self.guard_holds(g)?;
        }
        let mut first_offset = None;
        let mut last_offset = -1;
        let mut log_append_time = -1;
        let mut sync_due = false;
        for mut one in batches {
            let header = *one.header();
            if self.append_needs_producers(&header) {
                self.rebuild_producers().await;
            }
            let check = if how.coordinator {
                self.producers.borrow().check_coordinator(&header)?
            } else {
                self.producers.borrow().check(&header)?
            };
            if let Check::Duplicate { base_offset } = check {
                // A retry of a stored batch: answered with its offset once it is as durable
                // as a new one would be.
                first_offset.get_or_insert(base_offset);
                last_offset = last_offset.max(base_offset + i64::from(header.last_offset_delta));
                continue;
            }
            if settings.timestamp_type == TimestampType::LogAppendTime {
                let now = runtime::now_ms();
                one = one.with_log_append_time(now);
                log_append_time = now;
            }
            let info = self
                .log
                .append(one, leader_epoch)
                .await
                .map_err(KafkaError::from)?;
            self.producers
                .borrow_mut()
                .record(&header, info.base_offset);
            first_offset.get_or_insert(info.base_offset);
            last_offset = last_offset.max(info.last_offset);
            sync_due |= info.sync_due;
        }
        self.snapshot_producers(false).await;
        let end = self.log.log_end_offset();
        self.replica.borrow_mut().advance(end);
        self.notify();
        Ok((
            Produced {
                base_offset: first_offset.unwrap_or(-1),
                log_append_time,
                log_start_offset: self.log.log_start_offset(),
            },
            last_offset,
            sync_due,
            leader_epoch,
        ))
    }

    /// The leader epoch an append made now is stamped with: this broker must lead, and for
    /// acks=all have at least `min.insync.replicas` in sync. Read in append order.
    fn leader_epoch_for_append(&self, acks: i16) -> Result<i32, KafkaError> {
        let r = self.replica.borrow();
        if !r.is_leader() {
            drop(r);
            return Err(self.not_leader());
        }
        let isr = &r.placement().isr;
        let min_insync = self.settings.borrow().min_insync_replicas;
        if acks == -1 && (isr.len() as i64) < min_insync {
            return Err(KafkaError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "min.insync.replicas is {} but {}-{} has {} in-sync replicas {:?}",
                    min_insync,
                    self.topic,
                    self.index,
                    isr.len(),
                    isr
                ),
            ));
        }
        Ok(r.leader_epoch())
    }

    /// acks=all: waits until every in-sync replica holds `last_offset`, or answers
    /// REQUEST_TIMED_OUT after the lag limit (by then a slow follower has left the ISR, so
    /// this only happens when the ISR cannot change).
    async fn await_replication(
        &self,
        last_offset: i64,
        epoch: i32,
        lag_max: Duration,
    ) -> Result<(), KafkaError> {
        let deadline = Instant::now() + lag_max + ACKS_ALL_RECHECK * 20;
        loop {
            let listener = self.data_listener();
            if let Some(answer) = self.replication_outcome(last_offset, epoch) {
                return answer;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(KafkaError::new(
                    ErrorCode::RequestTimedOut,
                    format!(
                        "the in-sync replicas of {}-{} did not fetch offset {last_offset} in time",
                        self.topic, self.index
                    ),
                ));
            }
            futures_lite::future::or(
                listener,
                runtime::sleep(ACKS_ALL_RECHECK.min(deadline - now)),
            )
            .await;
        }
    }

    /// acks=all: the answer for a produce whose last record is at `last_offset`, appended
    /// as leader at `epoch`, now; None while it waits for the in-sync replicas.
    ///
    /// Leadership at that epoch is checked first: a leader deposed while the produce waited
    /// may already have cut those records away as a follower and taken the new leader's
    /// high watermark past them, over other records (seen in chaos seed 21: acknowledged
    /// records lost, two acknowledgements for one offset). Kafka's delayed produce answers
    /// NOT_LEADER_OR_FOLLOWER there too.
    fn replication_outcome(&self, last_offset: i64, epoch: i32) -> Option<Result<(), KafkaError>> {
        {
            let r = self.replica.borrow();
            if !r.is_leader() || r.leader_epoch() != epoch {
                return Some(Err(KafkaError::new(
                    ErrorCode::NotLeaderOrFollower,
                    format!(
                        "this broker no longer leads {}-{} at epoch {epoch} (now leader {}, epoch {}); the batch at {last_offset} may not be replicated",
                        self.topic,
                        self.index,
                        r.placement().leader,
                        r.leader_epoch()
                    ),
                )));
            }
        }
        let end = self.log.log_end_offset();
        self.replica.borrow_mut().advance(end);
        if self.high_watermark() > last_offset {
            // As Kafka: replicated, but by fewer replicas than the topic asks for (the ISR
            // shrank while the produce waited).
            let isr = self.replica.borrow().placement().isr.len() as i64;
            let min = self.settings.borrow().min_insync_replicas;
            if isr < min {
                return Some(Err(KafkaError::new(
                    ErrorCode::NotEnoughReplicasAfterAppend,
                    format!(
                        "the batch at {last_offset} is on the {isr} in-sync replicas of {}-{}, fewer than min.insync.replicas {min}",
                        self.topic, self.index
                    ),
                )));
            }
            return Some(Ok(()));
        }
        None
    }

    /// DeleteRecords before `offset` (None: the high watermark); the new log start.
    pub async fn delete_records(&self, offset: Option<i64>) -> Result<i64, KafkaError> {
        self.ensure_leader()?;
        let hw = self.high_watermark();
        let target = offset.unwrap_or(hw);
        if target < 0 || target > hw {
            return Err(KafkaError::new(
                ErrorCode::OffsetOutOfRange,
                format!(
                    "cannot delete records before {}: the high watermark is {hw}",
                    offset.unwrap_or(-1)
                ),
            ));
        }
        self.log
            .delete_records(target)
            .await
            .map_err(KafkaError::from)
    }

    /// Leader: the ISR to ask the controller for now, if it should change.
    pub fn isr_change(
        &self,
        lag_max: Duration,
        alive: impl Fn(i32) -> bool,
    ) -> Option<(Placement, Vec<i32>)> {
        let end = self.log.log_end_offset();
        let mut r = self.replica.borrow_mut();
        let isr = r.isr_change((self.clock)(), lag_max, alive, end)?;
        Some((r.placement().clone(), isr))
    }

    /// The controller answered an ISR change.
    pub fn isr_change_done(&self) {
        self.replica.borrow_mut().isr_change_done();
    }

    /// Background work of the shard's flush tick: a due sync, or writing out data no
    /// producer waits on (acks=0) so it reaches the file soon. None when there is nothing
    /// to do or a flush is running.
    pub fn background_flush(
        self: &Rc<Self>,
    ) -> Option<impl std::future::Future<Output = ()> + 'static>
    where
        B: 'static,
    {
        if self.io_running.get() {
            return None;
        }
        let sync = self.log.sync_due();
        if !sync && self.log.unwritten_bytes() == 0 {
            return None;
        }
        self.io_running.set(true);
        let p = self.clone();
        Some(async move {
            let r = if sync {
                let started = Instant::now();
                let r = p.log.sync().await.map(|_| ());
                p.metrics.synced(started.elapsed());
                r
            } else {
                p.log.write_through().await
            };
            if let Err(e) = r {
                if !matches!(e, rill_storage::StorageError::Closed) {
                    error!(dir = %p.log.dir().display(), error = %e, "background flush failed");
                }
            }
            p.io_running.set(false);
        })
    }

    /// Retention: deletes segments past the topic's time and size limits.
    pub async fn enforce_retention(&self) {
        if !self.log.opened_clean() {
            // Retention may roll an expired active segment: its aborted-transaction index
            // must be whole first (after a crash, the producer rebuild restores it).
            self.ensure_producers().await;
        }
        match self.log.enforce_retention().await {
            Ok(out) if out.segments_deleted > 0 => info!(
                topic = %self.topic, partition = self.index, segments = out.segments_deleted,
                bytes = out.bytes_deleted, log_start_offset = out.log_start_offset,
                "retention deleted segments"
            ),
            Ok(_) | Err(rill_storage::StorageError::Closed) => {}
            Err(e) => {
                error!(topic = %self.topic, partition = self.index, error = %e, "retention failed")
            }
        }
    }

    /// Compaction: one pass of the log cleaner if the topic is compacted and due, below the
    /// high watermark, with a key map of at most `key_map_bytes`.
    pub async fn clean(&self, key_map_bytes: usize, throttle: &mut rill_storage::CleanerThrottle) {
        if !self.settings.borrow().cleanup_compact {
            return;
        }
        let started = std::time::Instant::now();
        // The active idempotent producers' last batches stay, at least as empty headers.
        let last_batches = {
            let _turn = self.appends.lock().await;
            if !self.producers_rebuilt.get() {
                self.rebuild_producers().await;
            }
            self.producers.borrow().last_offsets()
        };
        // Kafka's uncleanable bound: nothing at or past the last stable offset, so an open
        // transaction's records are not compacted before its outcome is known.
        let upper = self
            .last_stable_offset()
            .unwrap_or_else(|| self.high_watermark());
        match self
            .log
            .clean(
                upper,
                key_map_bytes,
                &codec::WireCodec,
                throttle,
                &last_batches,
            )
            .await
        {
            Ok(Some(out)) => self.metrics.cleaned(&out, started.elapsed()),
            Ok(None) | Err(rill_storage::StorageError::Closed) => {}
            Err(e) => {
                error!(topic = %self.topic, partition = self.index, error = %e,
                    "log cleaner failed on this partition; its log is left as it was and the next pass tries again")
            }
        }
        if let Ok(status) = self.log.compaction_status(self.high_watermark()).await {
            self.compaction.set(Some(status));
        }
    }

    /// Compacted partitions: the compaction figures the log cleaner last saw.
    pub fn compaction(&self) -> Option<rill_storage::CompactionStatus> {
        self.compaction.get()
    }

    /// Flushes and seals the log (clean-shutdown marker), with its producer snapshot;
    /// wakes every waiter.
    pub async fn close(&self) {
        {
            // No append in between: the snapshot covers exactly the log.
            let _turn = self.appends.lock().await;
            self.snapshot_producers(true).await;
        }
        self.notify();
        if let Err(e) = self.log.close().await {
            error!(topic = %self.topic, partition = self.index, error = %e,
                "partition did not close cleanly; the next start recovers it");
        }
    }

    /// Closes the log and deletes its files (topic deleted).
    pub async fn delete(&self) {
        self.notify();
        if let Err(e) = self.log.delete().await {
            error!(topic = %self.topic, partition = self.index, error = %e,
                "cannot delete the partition's files; remove the directory by hand");
        }
    }

    /// Rebuilds the producer table the first time an idempotent producer writes after the
    /// partition opened (a restart, a crash, a follower's truncation): from the snapshot
    /// beside the log and the batches after it, or from every batch of the log when there is
    /// no usable snapshot, so a retry of a batch appended before is still recognised. Runs
    /// in append order.
    ///
    /// The active segment's aborted-transaction index is rebuilt with it: the entries the
    /// snapshot recorded below its offset, and the aborts replayed after it (after a crash
    /// the log holds only what its last roll or clean close wrote).
    async fn rebuild_producers(&self) {
        let (start, end) = (self.log.log_start_offset(), self.log.log_end_offset());
        let active_base = self.log.active_base_offset();
        let mut from = start;
        let mut active_aborted: Vec<rill_storage::txn::AbortedTxn> = Vec::new();
        self.producers.borrow_mut().clear();
        match self.log.read_aux(producers::SNAPSHOT_FILE).await {
            // A snapshot taken in another active segment is usable only if that segment
            // rolled at or after it (so every abort of the active one is replayed).
            Ok(Some(bytes)) => match ProducerTable::restore(self.producers_max, &bytes) {
                Ok((table, offset, active))
                    if offset >= start
                        && offset <= end
                        && (active.base == active_base || active_base >= offset) =>
                {
                    *self.producers.borrow_mut() = table;
                    from = offset;
                    if active.base == active_base {
                        active_aborted = active.entries;
                    }
                }
                Ok((_, offset, _)) => {
                    info!(dir = %self.log.dir().display(), offset, log_start_offset = start, log_end_offset = end,
                        "producer snapshot outside the log (truncated or retained past it); rebuilding from the whole log")
                }
                Err(e) => {
                    warn!(dir = %self.log.dir().display(), error = %e, "producer snapshot damaged; rebuilding from the whole log")
                }
            },
            Ok(None) => {}
            Err(e) => {
                warn!(dir = %self.log.dir().display(), error = %e, "cannot read the producer snapshot; rebuilding from the whole log")
            }
        }
        let mut at = from;
        let mut batches = 0u64;
        while at < end {
            let read = match self.log.read(at, 1 << 20).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(dir = %self.log.dir().display(), error = %e, "cannot rebuild idempotent producer state");
                    break;
                }
            };
            if read.batches.is_empty() {
                break;
            }
            for b in &read.batches {
                let Ok(h) = batch::BatchHeader::parse(b) else {
                    continue;
                };
                if h.is_control() {
                    if let Some(m) = txn::marker_of(&h, b) {
                        let done = self.producers.borrow_mut().record_marker(&m, h.base_offset);
                        if let Some(t) = done.filter(|t| t.aborted && t.last_offset >= active_base)
                        {
                            active_aborted.push(t.into());
                        }
                        batches += 1;
                    }
                } else if h.producer_id >= 0 {
                    self.producers.borrow_mut().record(&h, h.base_offset);
                    batches += 1;
                }
                at = at.max(h.last_offset() + 1);
            }
        }
        active_aborted.retain(|t| t.last_offset >= active_base && t.last_offset < end);
        self.log.restore_active_aborted_txns(active_aborted);
        self.producers_rebuilt.set(true);
        self.producer_snapshot_at.set(end);
        if batches > 0 || from > start {
            info!(dir = %self.log.dir().display(), snapshot_offset = from, batches,
                "idempotent producer state rebuilt from the snapshot and the log after it");
        }
    }

    /// The log lost its tail (a follower's truncation): a snapshot past the cut may hold
    /// batches of the old suffix, so it is voided and the next rebuild replays the log.
    pub(super) async fn void_producer_snapshot(&self) {
        let void = ProducerTable::new(self.producers_max).snapshot(-1, &ActiveAborted::default());
        if let Err(e) = self.log.write_aux(producers::SNAPSHOT_FILE, &void).await {
            warn!(dir = %self.log.dir().display(), error = %e, "cannot void the producer snapshot after a truncation");
        }
        self.producer_snapshot_at.set(0);
    }

    /// Writes the producer table beside the log when enough was appended since the last
    /// snapshot, or always (`force`, at close). Runs in append order (or after appends end).
    async fn snapshot_producers(&self, force: bool) {
        if !self.producers_rebuilt.get() {
            return; // the table is not the log's state yet: the old snapshot stays right
        }
        let end = self.log.log_end_offset();
        let since = end - self.producer_snapshot_at.get();
        if since <= 0 || (!force && since < PRODUCER_SNAPSHOT_EVERY_RECORDS) {
            return;
        }
        let bytes = self
            .producers
            .borrow()
            .snapshot(end, &self.active_aborted());
        match self.log.write_aux(producers::SNAPSHOT_FILE, &bytes).await {
            Ok(()) => self.producer_snapshot_at.set(end),
            Err(rill_storage::StorageError::Closed) => {}
            Err(e) => {
                warn!(dir = %self.log.dir().display(), error = %e, "cannot write the producer snapshot; a restart rebuilds from further back")
            }
        }
    }
}

/// Opens the log of a partition under `dir` on the real disk.
pub async fn open(
    dir: &std::path::Path,
    storage: &crate::config::StorageSettings,
    budget: Rc<FileBudget>,
    o: Opening<'_>,
) -> Result<Partition, KafkaError> {
    let cfg = o.settings.log_config(storage);
    let log = PartitionLog::open(DmaBackend::new(), dir, cfg, budget)
        .await
        .map_err(KafkaError::from)?;
    Ok(Partition::new(log, o))
}

/// The record batches of a produce partition, each checked once (header, length, CRC-32C):
/// all of them, or the first error (nothing of a partition is appended when one batch is
/// bad).
pub fn split_batches(mut data: Bytes) -> Result<Vec<CheckedBatch>, KafkaError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let len = batch_len(&data)?;
        out.push(CheckedBatch::check(data.split_to(len)).map_err(KafkaError::from)?);
    }
    if out.is_empty() {
        return Err(KafkaError::new(
            ErrorCode::CorruptMessage,
            "produce partition carries no record batch",
        ));
    }
    Ok(out)
}

/// Kafka's checks of the batches a client sends (LogValidator, origin CLIENT), beyond
/// [`split_batches`]': each holds records, as many as its offset range, is no control
/// batch (only brokers write transaction markers), and has a sequence when it names a
/// producer. A batch failing them is valid in a log (the cleaner leaves empty headers,
/// compaction leaves offset ranges with gaps) but not from a client: INVALID_RECORD.
pub fn client_batches(batches: Vec<CheckedBatch>) -> Result<Vec<CheckedBatch>, KafkaError> {
    for b in &batches {
        let h = b.header();
        let problem = if h.record_count <= 0 {
            format!(
                "a record batch must hold records; this one counts {}",
                h.record_count
            )
        } else if i64::from(h.last_offset_delta) + 1 != i64::from(h.record_count) {
            format!(
                "a record batch's offset range (last offset delta {}) must match its {} records",
                h.last_offset_delta, h.record_count
            )
        } else if h.is_control() {
            "clients may not write control batches (transaction markers)".to_string()
        } else if h.producer_id >= 0 && h.base_sequence < 0 {
            format!(
                "invalid sequence number {} in a batch of producer {}",
                h.base_sequence, h.producer_id
            )
        } else {
            continue;
        };
        return Err(KafkaError::new(ErrorCode::InvalidRecord, problem));
    }
    Ok(batches)
}

/// Transactional batches come only with a transactional id in the request, as Kafka
/// checks before anything else (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
pub fn transactional_batches(
    batches: Vec<CheckedBatch>,
    request_has_transactional_id: bool,
) -> Result<Vec<CheckedBatch>, KafkaError> {
    if !request_has_transactional_id && batches.iter().any(|b| b.header().is_transactional()) {
        return Err(KafkaError::new(
            ErrorCode::TransactionalIdAuthorizationFailed,
            "transactional record batches need the request's transactional id",
        ));
    }
    Ok(batches)
}

/// The bytes of the first record batch in `data` (batchLength + 12), checked against `data`.
pub fn batch_len(data: &[u8]) -> Result<usize, KafkaError> {
    if data.len() < batch::LOG_OVERHEAD_BYTES {
        return Err(KafkaError::new(
            ErrorCode::CorruptMessage,
            "records end inside a batch header",
        ));
    }
    let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    let total = (len as i64) + batch::LOG_OVERHEAD_BYTES as i64;
    if len <= 0 || total > data.len() as i64 {
        return Err(KafkaError::new(
            ErrorCode::CorruptMessage,
            format!(
                "record batch length {len} does not fit the {} bytes sent",
                data.len()
            ),
        ));
    }
    Ok(total as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_len_rejects_lengths_that_do_not_fit() {
        let mut b = vec![0u8; 70];
        b[8..12].copy_from_slice(&58i32.to_be_bytes());
        assert_eq!(batch_len(&b).unwrap(), 70);
        b[8..12].copy_from_slice(&59i32.to_be_bytes());
        assert_eq!(batch_len(&b).unwrap_err().code, ErrorCode::CorruptMessage);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(batch_len(&b).is_err());
        assert!(batch_len(&b[..5]).is_err());
    }

    #[test]
    fn offset_queries_follow_the_wire_values() {
        assert_eq!(OffsetQuery::from_wire(-1).unwrap(), OffsetQuery::Latest);
        assert_eq!(OffsetQuery::from_wire(-2).unwrap(), OffsetQuery::Earliest);
        assert_eq!(
            OffsetQuery::from_wire(-3).unwrap(),
            OffsetQuery::MaxTimestamp
        );
        assert_eq!(
            OffsetQuery::from_wire(5).unwrap(),
            OffsetQuery::Timestamp(5)
        );
        assert_eq!(
            OffsetQuery::from_wire(-4).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(Reader::from_replica_id(-1), Reader::Consumer);
        assert_eq!(Reader::from_replica_id(3), Reader::Follower(3));
    }
}
