//! Partition verification (KIP-890 part 1): before a partition leader appends a producer's
//! first transactional batch of a transaction, it asks the coordinator whether the
//! partition is in that transaction (AddPartitionsToTxn v4+ with VerifyOnly). The
//! coordinator answers from its state without a write ([`state::verify`]); a leader asks
//! its own coordinator shard directly and another broker's over one connection per
//! (shard, broker), one request at a time. Under transactions v2 (Produce v12,
//! TxnOffsetCommit v5) the same path adds the partition instead (VerifyOnly false).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use rill_net::client::{Connection, ConnectionOptions};
use rill_net::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use rill_net::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, ProducerId, TopicName, TransactionalId,
};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use super::{loaded_at, Txns};
use crate::errors::KafkaError;
use crate::fifo::FifoLock;
use crate::metadata::OFFSETS_TOPIC;
use crate::runtime;
use crate::shard::Shard;
use crate::txn::state::{self, TxnPartition, TxnVersion};

/// Connecting to another broker (for markers or a verification) gives up after this long.
pub(super) const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest response accepted from another broker's coordinator or partition (a few
/// partitions' codes).
pub(super) const PEER_RESPONSE_BYTES_MAX: usize = 1 << 20;
/// A verification with another broker's coordinator that takes longer than this fails
/// (the produce is answered NOT_ENOUGH_REPLICAS, which the client retries), so a stopped
/// coordinator holds a producer's appends to a partition no longer than this.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a transactions v2 add is retried while the coordinator still completes the
/// producer's previous transaction (CONCURRENT_TRANSACTIONS; Kafka retries it on the
/// broker too, KAFKA-18810), and how often: from 1 ms, doubling up to Kafka's 20 ms
/// (`add.partitions.to.txn.retry.backoff.ms`). A v2 client starts its next transaction as
/// soon as EndTxn answers, while the markers and the Complete record are still being
/// written (a few milliseconds), so a fixed 20 ms wait would dominate small transactions.
/// The bound is long because the client must not see the produce fail meanwhile: one that
/// gives up and aborts sends EndTxn at the new epoch while the coordinator still completes
/// the old transaction, which it must answer PRODUCER_FENCED (Kafka's rule). Completing
/// can take seconds when a partition's leader dies (its marker waits for the next leader),
/// so it is kept under Java's default request timeout (30 s), not a few seconds.
const ADD_RETRY_FOR: Duration = Duration::from_secs(20);
const ADD_RETRY_BACKOFF_MIN: Duration = Duration::from_millis(1);
const ADD_RETRY_BACKOFF_MAX: Duration = Duration::from_millis(20);

/// How a partition joins a transaction when a leader or group coordinator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// KIP-890 part 1: only whether it is in the open transaction.
    Verify,
    /// Transactions v2: added by the producer's first write to it.
    Add,
}

/// The AddPartitionsToTxn version brokers verify with (v4 brought VerifyOnly, v5 the
/// TRANSACTION_ABORTABLE answer).
const VERIFY_VERSION: i16 = 5;

/// A connection to another broker for requests between brokers (`api` must be served
/// there; ApiVersions done).
pub(super) async fn connect_peer(
    shard: &Rc<Shard>,
    id: i32,
    client_id: String,
    api: ApiKey,
) -> Result<Connection<runtime::Stream>, ErrorCode> {
    let view = shard.image();
    let b = view.broker(id).ok_or(ErrorCode::NotLeaderOrFollower)?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(b.host.as_str(), b.port as u16))
        .ok()
        .and_then(|mut a| a.next())
        .ok_or(ErrorCode::NetworkException)?;
    let stream = runtime::connect(addr, PEER_CONNECT_TIMEOUT)
        .await
        .map_err(|_| ErrorCode::NetworkException)?;
    let mut c = Connection::with_options(
        stream,
        ConnectionOptions {
            client_id,
            inflight_requests_max: 1,
            response_frame_bytes_max: PEER_RESPONSE_BYTES_MAX,
        },
    );
    let versions = c
        .api_versions()
        .await
        .map_err(|_| ErrorCode::NetworkException)?;
    versions
        .require(api)
        .map_err(|_| ErrorCode::UnsupportedVersion)?;
    Ok(c)
}

/// One other broker's coordinators, as this shard reaches them for verifications: one
/// request at a time over one connection, in the order asked.
#[derive(Default)]
struct Peer {
    turn: FifoLock,
    conn: RefCell<Option<Connection<runtime::Stream>>>,
}

/// The verification connections of one shard, by broker id (at most one per broker).
#[derive(Default)]
pub(super) struct VerifyPeers {
    peers: RefCell<HashMap<i32, Rc<Peer>>>,
}

impl Txns {
    /// AddPartitionsToTxn v4+ with VerifyOnly, on this broker's coordinator of `id`: per
    /// partition NONE when it is in producer `pid`'s transaction at `epoch`,
    /// TRANSACTION_ABORTABLE when not; an error for the whole transaction otherwise
    /// (NOT_COORDINATOR when another broker coordinates `id`).
    pub async fn verify(
        &self,
        id: String,
        pid: i64,
        epoch: i16,
        partitions: BTreeSet<TxnPartition>,
    ) -> Result<BTreeMap<TxnPartition, ErrorCode>, ErrorCode> {
        let key = id.clone();
        self.on_coordinator(&key, move |txns, p| async move {
            let e = txns.led_epoch(p).ok_or(ErrorCode::NotCoordinator)?;
            let mut parts = txns.state.partitions.borrow_mut();
            let loaded = loaded_at(&mut parts, p, e).ok_or(ErrorCode::NotCoordinator)?;
            state::verify(loaded.txns.get(&id), pid, epoch, &partitions)
        })
        .await
    }

    /// What the coordinator of `id` (wherever it is) answers for `topic`-`partition` and
    /// producer `pid` at `epoch`: [`Join::Verify`] whether the partition is in the open
    /// transaction, [`Join::Add`] (transactions v2) adds it, retried while the coordinator
    /// still completes the previous transaction (CONCURRENT_TRANSACTIONS) for up to
    /// [`ADD_RETRY_FOR`]. The coordinator's code as it is (NONE when it is in).
    pub async fn join_partition(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        tp: TxnPartition,
        join: Join,
    ) -> ErrorCode {
        let deadline = std::time::Instant::now() + ADD_RETRY_FOR;
        let mut backoff = ADD_RETRY_BACKOFF_MIN;
        loop {
            let code = self.join_once(id, pid, epoch, &tp, join).await;
            if code != ErrorCode::ConcurrentTransactions
                || join == Join::Verify
                || std::time::Instant::now() >= deadline
            {
                return code;
            }
            runtime::sleep(backoff).await;
            backoff = (backoff * 2).min(ADD_RETRY_BACKOFF_MAX);
        }
    }

    async fn join_once(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        tp: &TxnPartition,
        join: Join,
    ) -> ErrorCode {
        let coordinator = self.coordinator(id).await.map(|b| b.id);
        let answer = match coordinator {
            Err(e) => Err(e.code),
            Ok(b) if b != self.shard.node_id() => {
                self.join_remote(b, id, pid, epoch, tp, join).await
            }
            Ok(_) => {
                let asked = BTreeSet::from([tp.clone()]);
                match join {
                    Join::Verify => self
                        .verify(id.to_string(), pid, epoch, asked)
                        .await
                        .and_then(|codes| {
                            codes.get(tp).copied().ok_or(ErrorCode::UnknownServerError)
                        }),
                    Join::Add => self
                        .add_partitions(id.to_string(), pid, epoch, asked, TxnVersion::V2)
                        .await
                        .map(|()| ErrorCode::None),
                }
            }
        };
        match answer {
            Ok(code) | Err(code) => code,
        }
    }

    /// [`Txns::join_partition`] for a transactional Produce at `produce_version` (v12 is
    /// transactions v2: the partition is added; before, verified), its refusal as Produce
    /// answers it (Kafka's mapping): CONCURRENT_TRANSACTIONS stays for v12 (the client
    /// retries it), other retriable coordinator errors → NOT_ENOUGH_REPLICAS; not in the
    /// transaction → TRANSACTION_ABORTABLE for v11+, INVALID_TXN_STATE before; a fenced
    /// producer → INVALID_PRODUCER_EPOCH.
    pub async fn join_for_produce(
        &self,
        id: String,
        pid: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
        produce_version: i16,
    ) -> Result<(), KafkaError> {
        let join = if produce_version >= 12 {
            Join::Add
        } else {
            Join::Verify
        };
        let tp: TxnPartition = (topic.to_string(), partition);
        let code = self.join_partition(&id, pid, epoch, tp, join).await;
        if code != ErrorCode::None {
            tracing::debug!(transactional_id = %id, producer_id = pid, epoch, topic, partition, ?join, ?code, "the coordinator refused a transactional produce's partition");
        }
        let (code, why) = match code {
            ErrorCode::None => return Ok(()),
            ErrorCode::ConcurrentTransactions if join == Join::Add => (
                code,
                format!("the coordinator of {id} is still ending the previous transaction; retry"),
            ),
            c if retriable(c) => (
                ErrorCode::NotEnoughReplicas,
                format!("the coordinator of transactional id {id} could not take {topic}-{partition} now ({c:?}); retry"),
            ),
            ErrorCode::TransactionAbortable if produce_version < 11 => (
                ErrorCode::InvalidTxnState,
                format!("{topic}-{partition} is not in the open transaction of {id}"),
            ),
            ErrorCode::TransactionAbortable => (
                code,
                format!("{topic}-{partition} is not in the open transaction of {id}"),
            ),
            ErrorCode::ProducerFenced => (
                ErrorCode::InvalidProducerEpoch,
                format!("producer {pid} at epoch {epoch} was fenced by a newer instance of {id}"),
            ),
            other => (
                other,
                format!("the coordinator of {id} refused {topic}-{partition} for the transaction"),
            ),
        };
        Err(KafkaError::new(code, why))
    }

    /// [`Txns::join_partition`] of a group's offsets partition `partition` for
    /// TxnOffsetCommit at `version` (v5 is transactions v2: added; before, verified when
    /// `transaction_partition_verification` is on), its refusal as TxnOffsetCommit answers
    /// it: retriable coordinator errors → COORDINATOR_NOT_AVAILABLE (the client looks the
    /// coordinator up again and retries); TRANSACTION_ABORTABLE → INVALID_TXN_STATE before
    /// v4; a fenced producer → INVALID_PRODUCER_EPOCH.
    pub async fn join_for_offsets(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partition: i32,
        version: i16,
    ) -> Result<(), ErrorCode> {
        let join = if version >= 5 {
            Join::Add
        } else if self.shard.config().transaction_partition_verification {
            Join::Verify
        } else {
            return Ok(());
        };
        let tp: TxnPartition = (OFFSETS_TOPIC.to_string(), partition);
        match self.join_partition(id, pid, epoch, tp, join).await {
            ErrorCode::None => Ok(()),
            c if retriable(c) => Err(ErrorCode::CoordinatorNotAvailable),
            ErrorCode::TransactionAbortable if version < 4 => Err(ErrorCode::InvalidTxnState),
            ErrorCode::ProducerFenced => Err(ErrorCode::InvalidProducerEpoch),
            other => Err(other),
        }
    }

    /// [`Txns::join_partition`] once, on broker `broker` (AddPartitionsToTxn v5, VerifyOnly
    /// unless adding), bounded by [`VERIFY_TIMEOUT`].
    async fn join_remote(
        &self,
        broker: i32,
        id: &str,
        pid: i64,
        epoch: i16,
        tp: &TxnPartition,
        join: Join,
    ) -> Result<ErrorCode, ErrorCode> {
        let peers = self.shard.service::<VerifyPeers>();
        let peer = peers.peers.borrow_mut().entry(broker).or_default().clone();
        let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id.to_string())))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_verify_only(join == Join::Verify)
                .with_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(tp.0.clone())))
                    .with_partitions(vec![tp.1])]),
        ]);
        let ask = async {
            let _turn = peer.turn.lock().await;
            let idle = peer.conn.borrow_mut().take();
            let mut conn = match idle {
                Some(c) => c,
                None => {
                    let client_id = format!("rill-txn-verify-{}", self.shard.node_id());
                    connect_peer(&self.shard, broker, client_id, ApiKey::AddPartitionsToTxn).await?
                }
            };
            let response = conn.send(VERIFY_VERSION, &request).await.map_err(|e| {
                tracing::debug!(broker, error = %e, "AddPartitionsToTxn (verify) failed; the connection is dropped");
                ErrorCode::NetworkException
            })?;
            *peer.conn.borrow_mut() = Some(conn);
            if response.error_code != 0 {
                return Err(ErrorCode::from_code(response.error_code)
                    .unwrap_or(ErrorCode::UnknownServerError));
            }
            let code = response
                .results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results)
                .filter(|t| *t.name.0 == *tp.0)
                .flat_map(|t| &t.results_by_partition)
                .find(|p| p.partition_index == tp.1)
                .map_or(ErrorCode::UnknownServerError.code(), |p| {
                    p.partition_error_code
                });
            Ok(ErrorCode::from_code(code).unwrap_or(ErrorCode::UnknownServerError))
        };
        futures_lite::future::or(ask, async {
            runtime::sleep(VERIFY_TIMEOUT).await;
            Err(ErrorCode::RequestTimedOut)
        })
        .await
    }
}

/// Coordinator answers a leader retries or passes on as retriable.
fn retriable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ConcurrentTransactions
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::NotCoordinator
            | ErrorCode::NetworkException
            | ErrorCode::RequestTimedOut
    )
}

/// Gives `shard` its verification connections.
pub(super) fn provide(shard: &Rc<Shard>) {
    shard.provide(Rc::new(VerifyPeers::default()));
}
