//! The transaction coordinator as a shard service (issue 17): the
//! transactional ids whose `__transaction_state` partitions this shard owns and this broker
//! leads, routing a request to its id's coordinator shard, loading a partition's ids from
//! the log when first used at a leadership, and writing each transition (acks=all) before it
//! takes effect ([`super::state`] decides the transitions).
//!
//! Served: FindCoordinator for transactional ids, InitProducerId with a transactional id
//! (a new producer id at epoch 0, the next epoch at each later call, a new producer id once
//! the epoch is exhausted, an older producer fenced by PRODUCER_FENCED, an Ongoing
//! transaction of an older instance aborted first), AddPartitionsToTxn (v0-3 from
//! producers; v4-5 from partition leaders, which verify or, under transactions v2, add a
//! partition: `verify`), EndTxn (PrepareCommit/PrepareAbort written, answered, then the
//! end markers written to every partition of the transaction and
//! CompleteCommit/CompleteAbort written; v5 bumps the epoch and answers it),
//! DescribeTransactions and ListTransactions. A partition loaded with a
//! transaction in Prepare* completes it. Markers go straight to the partitions this broker
//! leads, and as WriteTxnMarkers to the leaders of the others.
//!
//! A transactional id's coordinator is the shard owning partition `txn_partition(id)` of
//! `__transaction_state` (Kafka's `Utils.abs(id.hashCode()) % partitions`), on the broker
//! leading it; the coordinator epoch is that partition's leader epoch. State lives on that
//! shard only (`RefCell`, never borrowed across an await).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rill_net::client::{
    decode_record_batches, encode_record_batch, BatchOptions, Connection, ProduceRecord,
};
use rill_net::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use rill_net::kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use tracing::{info, warn};

use super::state::{
    self, AddOutcome, EndOrigin, EndOutcome, EndRequest, InitOutcome, InitRequest, Transit,
    TxnMeta, TxnPartition, TxnResult, TxnVersion,
};
use super::wire::{self, TxnStatus};
use crate::coordinator_wire::end_of_batches;
use crate::errors::KafkaError;
use crate::metadata::{BrokerInfo, NewTopic, TRANSACTION_STATE_TOPIC};
use crate::partition::{MarkerWrite, Reader};
use crate::runtime;
use crate::shard::{Lane, Shard};

mod verify;

/// Back-off between tries of an end marker that could not be written (no leader here yet,
/// too few in-sync replicas), doubling up to the max.
const MARKER_RETRY_MIN: Duration = Duration::from_millis(100);
const MARKER_RETRY_MAX: Duration = Duration::from_secs(2);

/// Transactional ids one shard coordinates at most; a new id beyond it is refused with
/// COORDINATOR_NOT_AVAILABLE (and a warning), as Kafka has no limit to copy.
pub const TRANSACTIONAL_IDS_PER_SHARD_MAX: usize = 100_000;

/// Kafka's placement of a transactional id: `Utils.abs(id.hashCode()) % partitions`, with
/// Java's `String.hashCode` over UTF-16 units (`Utils.abs` maps `i32::MIN` to 0).
pub fn txn_partition(transactional_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in transactional_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// The write an InitProducerId computed.
enum Step {
    /// The id at its new epoch (or new producer id).
    Init(Transit),
    /// The abort of an older instance's open transaction.
    Fence(Transit),
}

/// One loaded `__transaction_state` partition.
struct Loaded {
    /// The leader epoch this broker led it at when it loaded it (the coordinator epoch).
    epoch: i32,
    txns: HashMap<String, TxnMeta>,
}

/// State partition `p` if it is loaded at coordinator epoch `epoch` (else this broker
/// stopped coordinating it at that epoch: NOT_COORDINATOR to the caller).
fn loaded_at(parts: &mut HashMap<i32, Loaded>, p: i32, epoch: i32) -> Option<&mut Loaded> {
    parts.get_mut(&p).filter(|l| l.epoch == epoch)
}

/// The coordinator state of one shard.
#[derive(Default)]
pub struct TxnCoordinator {
    partitions: RefCell<HashMap<i32, Loaded>>,
    load_lock: async_lock::Mutex<()>,
    /// An idle connection to each broker this shard sent end markers to (taken while a
    /// WriteTxnMarkers is in flight, put back after): at most one per broker of the cluster.
    marker_connections: RefCell<HashMap<i32, Connection<runtime::Stream>>>,
}

/// This shard's transaction coordinator, with its shard at hand.
#[derive(Clone)]
pub struct Txns {
    shard: Rc<Shard>,
    state: Rc<TxnCoordinator>,
}

/// Gives `shard` its transaction coordinator and starts its periodic work, every
/// `transaction_abort_check_ms`: dropping the state partitions it stopped coordinating,
/// and the abort of timed-out transactions (Kafka's `abortTimedOutTransactions`).
pub fn start(shard: &Rc<Shard>) {
    shard.provide(Rc::new(TxnCoordinator::default()));
    verify::provide(shard);
    let txns = Txns::of(shard);
    let every = Duration::from_millis(shard.config().transaction_abort_check_ms);
    runtime::spawn(async move {
        loop {
            runtime::sleep(every).await;
            txns.unload_resigned();
            txns.abort_timed_out();
        }
    });
    let txns = Txns::of(shard);
    let every = Duration::from_millis(shard.config().transactional_id_expiry_check_ms);
    runtime::spawn(async move {
        loop {
            runtime::sleep(every).await;
            txns.expire_ids().await;
        }
    });
}

/// Idle transactional ids expired per check at most (each is one tombstone written with
/// acks=all, one after another); the rest wait for the next check.
const EXPIRED_IDS_PER_CHECK_MAX: usize = 1000;

/// Begins the fencing abort of `meta`'s open transaction: the epoch bumped (an older
/// instance of the producer can no longer write or commit), then the abort at it, which
/// the caller writes. None (the fence abandoned) when the rules refuse.
fn begin_fencing_abort(meta: &mut TxnMeta, fence: Transit, server: TxnVersion) -> Option<Transit> {
    meta.begin(fence.clone());
    let abort = EndRequest {
        producer_id: fence.producer_id,
        producer_epoch: fence.producer_epoch,
        result: TxnResult::Abort,
        origin: EndOrigin::Coordinator,
    };
    match state::prepare_end(Some(meta), &abort, server, None, runtime::now_ms()) {
        Ok(EndOutcome::Write(t)) => {
            meta.begin(t.clone());
            Some(t)
        }
        other => {
            meta.abandon();
            warn!(transactional_id = %meta.transactional_id, outcome = ?other, "cannot abort the open transaction of a fenced producer");
            None
        }
    }
}

/// One transactional id as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone)]
pub struct TxnView {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: TxnStatus,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub partitions: Vec<(String, Vec<i32>)>,
}

fn view(m: &TxnMeta) -> TxnView {
    let mut partitions: Vec<(String, Vec<i32>)> = Vec::new();
    for (topic, p) in &m.partitions {
        match partitions.last_mut() {
            Some((t, ps)) if t == topic => ps.push(*p),
            _ => partitions.push((topic.clone(), vec![*p])),
        }
    }
    TxnView {
        transactional_id: m.transactional_id.clone(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        state: m.state,
        timeout_ms: m.timeout_ms,
        start_ms: m.start_ms,
        partitions,
    }
}

fn unavailable(why: impl Into<String>) -> KafkaError {
    KafkaError::new(ErrorCode::CoordinatorNotAvailable, why)
}

impl Txns {
    pub fn of(shard: &Rc<Shard>) -> Txns {
        Txns {
            shard: shard.clone(),
            state: shard.service::<TxnCoordinator>(),
        }
    }

    /// The transaction version this coordinator serves itself (its own aborts of fenced
    /// and timed-out producers): the finalized `transaction.version` it advertises.
    fn server_version(&self) -> TxnVersion {
        TxnVersion::from_level(self.shard.config().transaction_version).unwrap_or(TxnVersion::V0)
    }

    /// How many partitions `__transaction_state` has, once it exists.
    fn state_partitions(&self) -> Option<i32> {
        self.shard
            .image()
            .topic(TRANSACTION_STATE_TOPIC)
            .map(|t| t.partition_count())
    }

    /// The coordinator shard and state partition of `id`, creating the topic on first use
    /// (compacted, as Kafka's: every id's latest record is its state).
    async fn coordinator_of(&self, id: &str) -> Result<(usize, i32), KafkaError> {
        let partitions = match self.state_partitions() {
            Some(n) => n,
            None => {
                let config = self.shard.config();
                let alive = self.shard.image().live_brokers().len();
                let replication_factor = alive.clamp(1, 3);
                let spec = NewTopic {
                    name: TRANSACTION_STATE_TOPIC.to_string(),
                    partitions: config.transaction_state_partitions,
                    replication_factor,
                    assignments: None,
                    configs: vec![
                        ("cleanup.policy".to_string(), "compact".to_string()),
                        (
                            "segment.bytes".to_string(),
                            config.transaction_state_segment_bytes.to_string(),
                        ),
                        // Kafka's transaction.state.log.min.isr (2), within the replicas.
                        (
                            "min.insync.replicas".to_string(),
                            replication_factor.min(2).to_string(),
                        ),
                        ("compression.type".to_string(), "uncompressed".to_string()),
                        (
                            "unclean.leader.election.enable".to_string(),
                            "false".to_string(),
                        ),
                    ],
                };
                match self.shard.authority().create_topic(spec, false).await {
                    Ok(_) => info!(
                        topic = TRANSACTION_STATE_TOPIC,
                        "created the transaction state topic"
                    ),
                    Err(e) if e.code == ErrorCode::TopicAlreadyExists => {}
                    Err(e) => {
                        warn!(error = ?e, "cannot create the transaction state topic");
                        return Err(unavailable("cannot create the transaction state topic"));
                    }
                }
                self.state_partitions()
                    .ok_or_else(|| unavailable("the transaction state topic is not there yet"))?
            }
        };
        let p = txn_partition(id, partitions);
        let owner = self
            .shard
            .owner_of(TRANSACTION_STATE_TOPIC, p)
            .map_err(|e| unavailable(e.message.unwrap_or_default()))?;
        Ok((owner, p))
    }

    /// The broker coordinating `id` (FindCoordinator key type 1): the leader of its state
    /// partition.
    pub async fn coordinator(&self, id: &str) -> Result<BrokerInfo, KafkaError> {
        let (_, partition) = self.coordinator_of(id).await?;
        let image = self.shard.image();
        let leader = image
            .placement(TRANSACTION_STATE_TOPIC, partition)
            .map(|p| p.leader)
            .ok_or_else(|| {
                unavailable(format!(
                    "transaction state partition {partition} has no leader"
                ))
            })?;
        image
            .live_brokers()
            .into_iter()
            .find(|b| b.id == leader)
            .ok_or_else(|| unavailable(format!("broker {leader}, the coordinator, is not alive")))
    }

    /// Runs `job` on the coordinator shard of `id`, once this broker leads its partition
    /// and the partition is loaded; NOT_COORDINATOR when another broker leads it.
    async fn on_coordinator<T, F, Fut>(&self, id: &str, job: F) -> Result<T, ErrorCode>
    where
        F: FnOnce(Txns, i32) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, ErrorCode>> + 'static,
        T: Send + 'static,
    {
        if id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        let (owner, partition) = self.coordinator_of(id).await.map_err(|e| e.code)?;
        let leader = self
            .shard
            .image()
            .placement(TRANSACTION_STATE_TOPIC, partition)
            .map(|p| p.leader);
        if leader != Some(self.shard.node_id()) {
            return Err(ErrorCode::NotCoordinator);
        }
        self.shard
            .ask(owner, Lane::Control, move |shard: Rc<Shard>| async move {
                let txns = Txns::of(&shard);
                txns.load(partition).await?;
                job(txns, partition).await
            })
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
    }

    /// The leader epoch of state partition `p` if this shard coordinates it now.
    fn led_epoch(&self, p: i32) -> Option<i32> {
        let epoch = self
            .shard
            .image()
            .placement(TRANSACTION_STATE_TOPIC, p)
            .filter(|pl| pl.leader == self.shard.node_id())
            .map(|pl| pl.leader_epoch)?;
        (self.shard.owner_of(TRANSACTION_STATE_TOPIC, p).ok() == Some(self.shard.id()))
            .then_some(epoch)
    }

    /// Drops the state partitions this shard no longer coordinates at the epoch it loaded
    /// them at (leadership moved away; if it comes back, the next request loads the
    /// partition afresh), so a broker that stopped coordinating keeps no copy of their
    /// transactional ids. Work still running on one answers NOT_COORDINATOR
    /// ([`loaded_at`]); the new coordinator completes what was decided.
    fn unload_resigned(&self) {
        let mut unloaded = Vec::new();
        let mut ids = 0usize;
        self.state.partitions.borrow_mut().retain(|&p, l| {
            let keep = self.led_epoch(p) == Some(l.epoch);
            if !keep {
                unloaded.push(p);
                ids += l.txns.len();
            }
            keep
        });
        if !unloaded.is_empty() {
            info!(partitions = ?unloaded, ids,
                "transactional ids unloaded: this broker no longer leads their state partitions at the epoch it loaded them at");
        }
    }

    /// Replays state partition `p` into its transactional ids, once per leadership: the
    /// latest record of each id is its state, a tombstone removes it.
    async fn load(&self, p: i32) -> Result<(), ErrorCode> {
        let epoch = self.led_epoch(p).ok_or(ErrorCode::NotCoordinator)?;
        let loaded_at = |me: &Txns| me.state.partitions.borrow().get(&p).map(|l| l.epoch);
        if loaded_at(self) == Some(epoch) {
            return Ok(());
        }
        let _one = self.state.load_lock.lock().await;
        if loaded_at(self) == Some(epoch) {
            return Ok(());
        }
        self.unload_resigned();
        let Some(log) = self.shard.partition(TRANSACTION_STATE_TOPIC, p) else {
            return Err(ErrorCode::CoordinatorLoadInProgress);
        };
        let mut txns: HashMap<String, TxnMeta> = HashMap::new();
        let mut offset = log.offsets().log_start_offset;
        let mut skipped = 0u64;
        loop {
            let data: Vec<Bytes> = match log.read(Reader::Internal, offset, 1 << 20).await {
                Ok(batches) => batches,
                Err(e) => {
                    warn!(partition = p, error = ?e, "cannot load transactional ids");
                    return Err(ErrorCode::CoordinatorLoadInProgress);
                }
            };
            let next = end_of_batches(&data);
            if data.is_empty() || next <= offset {
                break;
            }
            offset = next;
            for chunk in &data {
                let records = decode_record_batches(chunk).map_err(|e| {
                    warn!(partition = p, error = %e, "damaged record in the transaction state topic");
                    ErrorCode::CoordinatorNotAvailable
                })?;
                for rec in records {
                    let Some(id) = rec.key.as_deref().and_then(|k| wire::decode_key(k).ok()) else {
                        skipped += 1;
                        continue;
                    };
                    match rec.value.as_deref().map(wire::decode_value) {
                        None => {
                            txns.remove(&id);
                        }
                        Some(Ok(stored)) => match TxnMeta::from_stored(id.clone(), stored) {
                            Ok(meta) => {
                                txns.insert(id, meta);
                            }
                            Err(e) => {
                                skipped += 1;
                                warn!(partition = p, transactional_id = %id, error = %e, "skipping a transaction state record");
                            }
                        },
                        Some(Err(e)) => {
                            skipped += 1;
                            warn!(partition = p, transactional_id = %id, error = %e, "skipping an unreadable transaction state record");
                        }
                    }
                }
            }
        }
        if self.led_epoch(p) != Some(epoch) {
            return Err(ErrorCode::NotCoordinator);
        }
        info!(
            partition = p,
            epoch,
            ids = txns.len(),
            skipped,
            "transactional ids loaded"
        );
        let preparing: Vec<String> = txns
            .values()
            .filter(|m| matches!(m.state, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort))
            .map(|m| m.transactional_id.clone())
            .collect();
        self.state
            .partitions
            .borrow_mut()
            .insert(p, Loaded { epoch, txns });
        // A transaction whose end was decided before a restart or a leadership move: its
        // markers go out again (a second marker changes nothing) and it completes.
        for id in preparing {
            self.complete_transaction(p, epoch, id);
        }
        Ok(())
    }

    /// Writes `t` for `id` to state partition `p` (acks=all) and applies it if the
    /// coordinator still leads `p` at `epoch`; else the transition is dropped.
    async fn write(&self, p: i32, epoch: i32, id: &str, t: &Transit) -> Result<(), ErrorCode> {
        let value = (!t.is_tombstone())
            .then(|| wire::encode_value(&t.to_stored(), t.client_version.log_value_version()));
        let written = self.append(p, epoch, id, value).await;
        let mut parts = self.state.partitions.borrow_mut();
        let meta = loaded_at(&mut parts, p, epoch).and_then(|l| l.txns.get_mut(id));
        let Some(meta) = meta else {
            // Unloaded (leadership moved) while the write was in flight.
            return Err(ErrorCode::NotCoordinator);
        };
        match written {
            // An expired id's tombstone: the id is gone (Kafka never completes Dead).
            Ok(()) if self.led_epoch(p) == Some(epoch) && t.is_tombstone() => {
                if let Some(l) = parts.get_mut(&p) {
                    l.txns.remove(id);
                }
                Ok(())
            }
            Ok(()) if self.led_epoch(p) == Some(epoch) => {
                meta.complete(t);
                Ok(())
            }
            Ok(()) => {
                meta.abandon();
                Err(ErrorCode::NotCoordinator)
            }
            Err(code) => {
                meta.abandon();
                Err(code)
            }
        }
    }

    /// Appends one record to state partition `p` with acks=all, while this broker leads it
    /// at `epoch` (the one the state was loaded at); Kafka's mapping of the append's errors
    /// to what a transactional client retries.
    async fn append(
        &self,
        p: i32,
        epoch: i32,
        id: &str,
        value: Option<Bytes>,
    ) -> Result<(), ErrorCode> {
        let record = ProduceRecord {
            key: Some(wire::encode_key(id)),
            value,
            headers: Vec::new(),
            timestamp_ms: runtime::now_ms(),
        };
        let data = encode_record_batch(&[record], &BatchOptions::default()).map_err(|e| {
            warn!(error = %e, "cannot encode a transaction state record");
            ErrorCode::UnknownServerError
        })?;
        let log = self
            .shard
            .partition(TRANSACTION_STATE_TOPIC, p)
            .ok_or(ErrorCode::NotCoordinator)?;
        let batches = crate::partition::split_batches(data).map_err(|e| e.code)?;
        let lag_max = Duration::from_millis(self.shard.config().replica_lag_time_max_ms);
        match log.produce_at(batches, lag_max, epoch).await {
            Ok(_) => Ok(()),
            Err(e) => {
                warn!(partition = p, transactional_id = id, error = ?e, "cannot write a transaction state record");
                Err(match e.code {
                    ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError => {
                        ErrorCode::NotCoordinator
                    }
                    ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge => {
                        ErrorCode::UnknownServerError
                    }
                    _ => ErrorCode::CoordinatorNotAvailable,
                })
            }
        }
    }

    /// InitProducerId with a transactional id: its producer id and the epoch it may use now.
    pub async fn init_producer_id(
        &self,
        id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ErrorCode> {
        let key = id.clone();
        self.on_coordinator(&key, move |txns, p| async move {
            txns.run_init(p, id, timeout_ms, expected).await
        })
        .await
    }

    /// What InitProducerId writes: the id's next epoch, or the abort that fences an older
    /// instance's open transaction.
    async fn run_init(
        &self,
        p: i32,
        id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ErrorCode> {
        let req = InitRequest {
            timeout_ms,
            expected,
            max_timeout_ms: i32::try_from(self.shard.config().transaction_max_timeout_ms)
                .unwrap_or(i32::MAX),
        };
        let mut new_producer_id = None;
        loop {
            let epoch = self.led_epoch(p).ok_or(ErrorCode::NotCoordinator)?;
            // Computed and begun with no await in between: a second request for this id
            // meanwhile finds the transition pending (CONCURRENT_TRANSACTIONS).
            let transit = {
                let mut parts = self.state.partitions.borrow_mut();
                let loaded = loaded_at(&mut parts, p, epoch).ok_or(ErrorCode::NotCoordinator)?;
                let outcome = state::prepare_init(
                    loaded.txns.get(&id),
                    &id,
                    &req,
                    new_producer_id,
                    runtime::now_ms(),
                )?;
                match outcome {
                    InitOutcome::NeedProducerId => None,
                    InitOutcome::Create { mut meta, transit } => {
                        if loaded.txns.len() >= TRANSACTIONAL_IDS_PER_SHARD_MAX {
                            warn!(transactional_id = %id, limit = TRANSACTIONAL_IDS_PER_SHARD_MAX,
                                "refusing a new transactional id: this shard coordinates TRANSACTIONAL_IDS_PER_SHARD_MAX ids; let idle ids expire");
                            return Err(ErrorCode::CoordinatorNotAvailable);
                        }
                        meta.begin(transit.clone());
                        loaded.txns.insert(id.clone(), meta);
                        Some(Step::Init(transit))
                    }
                    InitOutcome::Write(transit) => {
                        let meta = loaded.txns.get_mut(&id).expect("prepare_init saw it");
                        meta.begin(transit.clone());
                        Some(Step::Init(transit))
                    }
                    InitOutcome::Fence(fence) => {
                        // An older instance's transaction is open: it is aborted at a newer
                        // epoch (fencing the older instance), and this client retries
                        // (CONCURRENT_TRANSACTIONS) until the abort completed.
                        let meta = loaded.txns.get_mut(&id).expect("prepare_init saw it");
                        match begin_fencing_abort(meta, fence, self.server_version()) {
                            Some(t) => Some(Step::Fence(t)),
                            None => return Err(ErrorCode::ConcurrentTransactions),
                        }
                    }
                }
            };
            match transit {
                None => {
                    let pid = self
                        .shard
                        .authority()
                        .producer_id()
                        .await
                        .map_err(|e| e.code)?;
                    new_producer_id = Some(pid);
                }
                Some(Step::Init(t)) => {
                    self.write(p, epoch, &id, &t).await?;
                    return Ok((t.producer_id, t.producer_epoch));
                }
                Some(Step::Fence(t)) => {
                    self.write(p, epoch, &id, &t).await?;
                    self.complete_transaction(p, epoch, id.clone());
                    return Err(ErrorCode::ConcurrentTransactions);
                }
            }
        }
    }

    /// Fences and aborts every Ongoing transaction past its timeout on the partitions this
    /// shard coordinates (its producer died or hangs: read_committed readers wait at its
    /// first offset until it ends).
    fn abort_timed_out(&self) {
        let now = runtime::now_ms();
        let mut begun = Vec::new();
        {
            let mut parts = self.state.partitions.borrow_mut();
            for (&p, loaded) in parts.iter_mut() {
                if self.led_epoch(p) != Some(loaded.epoch) {
                    continue;
                }
                for meta in loaded.txns.values_mut().filter(|m| m.timed_out(now)) {
                    let Ok(fence) = state::prepare_fence(meta) else {
                        continue;
                    };
                    info!(transactional_id = %meta.transactional_id, producer_id = meta.producer_id,
                        timeout_ms = meta.timeout_ms, "aborting a transaction past its timeout");
                    if let Some(t) = begin_fencing_abort(meta, fence, self.server_version()) {
                        begun.push((p, loaded.epoch, meta.transactional_id.clone(), t));
                    }
                }
            }
        }
        for (p, epoch, id, t) in begun {
            let me = self.clone();
            runtime::spawn(async move {
                match me.write(p, epoch, &id, &t).await {
                    Ok(()) => me.complete_transaction(p, epoch, id),
                    Err(code) => {
                        warn!(transactional_id = %id, ?code, "cannot write the abort of a timed-out transaction; the next check tries again")
                    }
                }
            });
        }
    }

    /// Expires transactional ids idle (Empty or Complete*, untouched) for
    /// `transactional_id_expiration_ms`: a tombstone each, after which the id is unknown
    /// and a new InitProducerId gets a new producer id (Kafka's
    /// `removeExpiredTransactionalIds`).
    async fn expire_ids(&self) {
        let now = runtime::now_ms();
        let expiration =
            i64::try_from(self.shard.config().transactional_id_expiration_ms).unwrap_or(i64::MAX);
        let mut begun = Vec::new();
        {
            let mut parts = self.state.partitions.borrow_mut();
            'parts: for (&p, loaded) in parts.iter_mut() {
                if self.led_epoch(p) != Some(loaded.epoch) {
                    continue;
                }
                for meta in loaded.txns.values_mut() {
                    if begun.len() >= EXPIRED_IDS_PER_CHECK_MAX {
                        break 'parts;
                    }
                    if let Some(t) = state::prepare_dead(meta, now, expiration) {
                        meta.begin(t.clone());
                        begun.push((p, loaded.epoch, meta.transactional_id.clone(), t));
                    }
                }
            }
        }
        let count = begun.len();
        for (p, epoch, id, t) in begun {
            if let Err(code) = self.write(p, epoch, &id, &t).await {
                warn!(transactional_id = %id, ?code, "cannot expire a transactional id; the next check tries again");
            }
        }
        if count > 0 {
            info!(ids = count, "expired idle transactional ids");
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn's offsets partition, and the implicit add
    /// of transactions v2 by a partition leader or group coordinator): the partitions join
    /// producer `pid`'s transaction at `epoch`, written before the answer; `version` is the
    /// client's transaction version as the request tells it.
    pub async fn add_partitions(
        &self,
        id: String,
        pid: i64,
        epoch: i16,
        partitions: BTreeSet<TxnPartition>,
        version: TxnVersion,
    ) -> Result<(), ErrorCode> {
        let key = id.clone();
        self.on_coordinator(&key, move |txns, p| async move {
            let e = txns.led_epoch(p).ok_or(ErrorCode::NotCoordinator)?;
            let transit = {
                let mut parts = txns.state.partitions.borrow_mut();
                let loaded = loaded_at(&mut parts, p, e).ok_or(ErrorCode::NotCoordinator)?;
                let max = txns.shard.config().limits.transaction_partitions_max;
                let held = loaded.txns.get(&id).map_or(0, |m| {
                    if m.state == TxnStatus::Ongoing {
                        m.partitions.union(&partitions).count()
                    } else {
                        partitions.len()
                    }
                });
                if held > max {
                    warn!(transactional_id = %id, partitions = held, max, "AddPartitionsToTxn refused: the transaction would hold more partitions than limits.transaction_partitions_max");
                    return Err(ErrorCode::UnknownServerError);
                }
                match state::prepare_add(
                    loaded.txns.get(&id),
                    pid,
                    epoch,
                    &partitions,
                    version,
                    runtime::now_ms(),
                )? {
                    AddOutcome::AlreadyIn => return Ok(()),
                    AddOutcome::Write(t) => {
                        let meta = loaded.txns.get_mut(&id).expect("prepare_add saw it");
                        meta.begin(t.clone());
                        t
                    }
                }
            };
            txns.write(p, e, &id, &transit).await
        })
        .await
    }

    /// EndTxn: the decision (Prepare*) is written and answered; the markers and the
    /// Complete* record follow. `version` is the client's transaction version (EndTxn v5:
    /// 2, which bumps the epoch); the answer is the producer id and epoch the client goes
    /// on with under transactions v2 (a new producer id at epoch 0 once the epoch is
    /// exhausted), -1 and -1 before.
    pub async fn end_transaction(
        &self,
        id: String,
        pid: i64,
        epoch: i16,
        commit: bool,
        version: TxnVersion,
    ) -> Result<(i64, i16), ErrorCode> {
        let key = id.clone();
        self.on_coordinator(&key, move |txns, p| async move {
            let request = EndRequest {
                producer_id: pid,
                producer_epoch: epoch,
                result: if commit {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                },
                origin: EndOrigin::Client,
            };
            let none = (state::NO_PRODUCER_ID, -1);
            let mut new_producer_id = None;
            loop {
                let e = txns.led_epoch(p).ok_or(ErrorCode::NotCoordinator)?;
                // Computed and begun with no await in between, as InitProducerId.
                let transit = {
                    let mut parts = txns.state.partitions.borrow_mut();
                    let loaded = loaded_at(&mut parts, p, e).ok_or(ErrorCode::NotCoordinator)?;
                    match state::prepare_end(
                        loaded.txns.get(&id),
                        &request,
                        version,
                        new_producer_id,
                        runtime::now_ms(),
                    )? {
                        EndOutcome::Done {
                            producer_id,
                            producer_epoch,
                        } => {
                            return Ok(if version.bumps_epoch() {
                                (producer_id, producer_epoch)
                            } else {
                                none
                            })
                        }
                        EndOutcome::NeedProducerId => None,
                        EndOutcome::Write(t) => {
                            let meta = loaded.txns.get_mut(&id).expect("prepare_end saw it");
                            meta.begin(t.clone());
                            Some(t)
                        }
                    }
                };
                let Some(t) = transit else {
                    // Transactions v2 with the epoch exhausted: the Prepare* names the
                    // producer id the client goes on with.
                    let next = txns.shard.authority().producer_id().await;
                    new_producer_id = Some(next.map_err(|e| e.code)?);
                    continue;
                };
                txns.write(p, e, &id, &t).await?;
                txns.complete_transaction(p, e, id);
                // What Complete* installs: the bumped epoch, or the next producer id at 0.
                return Ok(match (version.bumps_epoch(), t.next_producer_id >= 0) {
                    (false, _) => none,
                    (true, true) => (t.next_producer_id, 0),
                    (true, false) => (t.producer_id, t.producer_epoch),
                });
            }
        })
        .await
    }

    /// After a Prepare* of `id` is durable: begins its Complete* at once (requests for the
    /// id meanwhile get CONCURRENT_TRANSACTIONS), and in the background writes the end
    /// marker to every partition of the transaction, then the Complete* record, while this
    /// broker coordinates at `epoch` (a new coordinator does it again after loading).
    fn complete_transaction(&self, p: i32, epoch: i32, id: String) {
        let begun = {
            let mut parts = self.state.partitions.borrow_mut();
            let Some(meta) = loaded_at(&mut parts, p, epoch).and_then(|l| l.txns.get_mut(&id))
            else {
                return;
            };
            match state::prepare_complete(meta, runtime::now_ms()) {
                Ok(t) => {
                    let marker = MarkerWrite {
                        producer_id: meta.producer_id,
                        producer_epoch: meta.producer_epoch,
                        coordinator_epoch: epoch,
                        commit: meta.state == TxnStatus::PrepareCommit,
                    };
                    let partitions = meta.partitions.clone();
                    meta.begin(t.clone());
                    (t, marker, partitions)
                }
                Err(code) => {
                    warn!(transactional_id = %id, ?code, state = meta.state.name(), "cannot complete a transaction");
                    return;
                }
            }
        };
        let me = self.clone();
        runtime::spawn(async move {
            let (t, marker, partitions) = begun;
            if !me.send_markers(p, epoch, &partitions, marker).await {
                return;
            }
            let mut backoff = MARKER_RETRY_MIN;
            loop {
                match me.write(p, epoch, &id, &t).await {
                    Ok(()) => return,
                    Err(ErrorCode::NotCoordinator) => return,
                    Err(code) => {
                        warn!(transactional_id = %id, ?code, "cannot write a transaction's completion; retrying");
                        // `write` dropped the pending transition: begin it again.
                        let again = {
                            let mut parts = me.state.partitions.borrow_mut();
                            match loaded_at(&mut parts, p, epoch).and_then(|l| l.txns.get_mut(&id))
                            {
                                Some(meta) if meta.pending.is_none() => {
                                    meta.begin(t.clone());
                                    true
                                }
                                _ => false,
                            }
                        };
                        if !again {
                            return;
                        }
                        runtime::sleep(backoff).await;
                        backoff = (backoff * 2).min(MARKER_RETRY_MAX);
                    }
                }
            }
        });
    }

    /// Writes `marker` to every partition of the transaction (concurrently, each retried
    /// with back-off); false when this broker stopped coordinating at `epoch` first.
    async fn send_markers(
        &self,
        p: i32,
        epoch: i32,
        partitions: &BTreeSet<TxnPartition>,
        marker: MarkerWrite,
    ) -> bool {
        let lag_max = Duration::from_millis(self.shard.config().replica_lag_time_max_ms);
        let writes = partitions.iter().map(|(topic, partition)| {
            let topic: Arc<str> = Arc::from(topic.as_str());
            let partition = *partition;
            async move {
                let mut backoff = MARKER_RETRY_MIN;
                loop {
                    if self.led_epoch(p) != Some(epoch) {
                        return false;
                    }
                    let leader = self
                        .shard
                        .image()
                        .placement(&topic, partition)
                        .map(|pl| pl.leader);
                    let written = match leader {
                        Some(l) if l == self.shard.node_id() => {
                            super::write_marker_here(
                                &self.shard,
                                &topic,
                                partition,
                                marker,
                                lag_max,
                            )
                            .await
                        }
                        Some(l) if l >= 0 => self
                            .remote_marker(l, &topic, partition, marker)
                            .await
                            .map_err(|code| {
                                KafkaError::new(code, format!("WriteTxnMarkers to broker {l}"))
                            }),
                        _ => Err(KafkaError::new(
                            ErrorCode::LeaderNotAvailable,
                            "the partition has no leader",
                        )),
                    };
                    match written {
                        Ok(()) => return true,
                        // Kafka's coordinator counts these as done: the partition's producer
                        // state is already past this transaction, or the topic is gone.
                        Err(e)
                            if matches!(
                                e.code,
                                ErrorCode::InvalidProducerEpoch
                                    | ErrorCode::TransactionCoordinatorFenced
                            ) || self.shard.image().topic(&topic).is_none() =>
                        {
                            warn!(topic = %topic, partition, error = ?e, "end marker not written; the partition is past this transaction");
                            return true;
                        }
                        Err(e) => {
                            tracing::debug!(topic = %topic, partition, error = ?e, "end marker not written yet; retrying");
                            runtime::sleep(backoff).await;
                            backoff = (backoff * 2).min(MARKER_RETRY_MAX);
                        }
                    }
                }
            }
        });
        futures_util::future::join_all(writes)
            .await
            .into_iter()
            .all(|done| done)
    }

    /// WriteTxnMarkers for one partition to broker `leader`, over the connection this shard
    /// keeps to it (made when there is none idle): the partition's error.
    async fn remote_marker(
        &self,
        leader: i32,
        topic: &str,
        partition: i32,
        m: MarkerWrite,
    ) -> Result<(), ErrorCode> {
        let idle = self.state.marker_connections.borrow_mut().remove(&leader);
        let mut conn = match idle {
            Some(c) => c,
            None => self.marker_connection(leader).await?,
        };
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_transaction_result(m.commit)
                .with_coordinator_epoch(m.coordinator_epoch)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_indexes(vec![partition])])]);
        let response = conn.send(1, &request).await.map_err(|e| {
            tracing::debug!(leader, error = %e, "WriteTxnMarkers failed; the connection is dropped");
            ErrorCode::NetworkException
        })?;
        self.state
            .marker_connections
            .borrow_mut()
            .insert(leader, conn);
        let code = response
            .markers
            .first()
            .and_then(|r| r.topics.first())
            .and_then(|t| t.partitions.first())
            .map_or(ErrorCode::UnknownServerError.code(), |p| p.error_code);
        match ErrorCode::from_code(code) {
            Some(ErrorCode::None) => Ok(()),
            Some(other) => Err(other),
            None => Err(ErrorCode::UnknownServerError),
        }
    }

    /// A new connection to broker `id` for end markers (ApiVersions done).
    async fn marker_connection(&self, id: i32) -> Result<Connection<runtime::Stream>, ErrorCode> {
        let client_id = format!("rill-txn-coordinator-{}", self.shard.node_id());
        verify::connect_peer(&self.shard, id, client_id, ApiKey::WriteTxnMarkers).await
    }

    /// DescribeTransactions of one id: its state, or the error its coordinator answers
    /// (TRANSACTIONAL_ID_NOT_FOUND for an id it does not know).
    pub async fn describe(&self, id: String) -> Result<TxnView, ErrorCode> {
        let key = id.clone();
        self.on_coordinator(&key, move |txns, p| async move {
            txns.state
                .partitions
                .borrow()
                .get(&p)
                .and_then(|l| l.txns.get(&id))
                .filter(|m| m.state != TxnStatus::Dead)
                .map(view)
                .ok_or(ErrorCode::TransactionalIdNotFound)
        })
        .await
    }

    /// Every transactional id this shard coordinates (loading the state partitions it leads
    /// first); COORDINATOR_LOAD_IN_PROGRESS when one cannot be loaded now.
    pub async fn listed(&self) -> Result<Vec<TxnView>, ErrorCode> {
        let Some(partitions) = self.state_partitions() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for p in 0..partitions {
            if self.led_epoch(p).is_none() {
                continue;
            }
            self.load(p)
                .await
                .map_err(|_| ErrorCode::CoordinatorLoadInProgress)?;
            if let Some(l) = self.state.partitions.borrow().get(&p) {
                out.extend(
                    l.txns
                        .values()
                        .filter(|m| m.state != TxnStatus::Dead)
                        .map(view),
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_placed_as_kafka_places_them() {
        // Java: "my-txn".hashCode() = -1061187895 -> Utils.abs = 1061187895; % 50 = 45 (the
        // producer partitioner's `& 0x7fffffff` would give 3).
        assert_eq!(txn_partition("my-txn", 50), 45);
        // "txn-1".hashCode() = 110810510; % 50 = 10.
        assert_eq!(txn_partition("txn-1", 50), 10);
        assert_eq!(txn_partition("", 50), 0);
        // A hash of i32::MIN maps to partition 0, as Utils.abs(Integer.MIN_VALUE) == 0.
        assert_eq!(txn_partition("polygenelubricants", 7), 0);
    }
}
