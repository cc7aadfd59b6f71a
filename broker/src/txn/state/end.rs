//! EndTxn: the decision that ends a transaction (Prepare*), for transaction version 1
//! (Kafka's `endTransactionWithTV1`) and 2 (`endTransaction`, KIP-890: the epoch bumped at
//! every end), and the coordinator's own abort of a fenced or timed-out producer's
//! transaction. Part of [`super`]'s state machine, split off only for the file's size.

use rill_net::ErrorCode;

use super::*;

/// Commit or abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnResult {
    Commit,
    Abort,
}

impl TxnResult {
    fn prepare_state(self) -> TxnStatus {
        match self {
            TxnResult::Commit => TxnStatus::PrepareCommit,
            TxnResult::Abort => TxnStatus::PrepareAbort,
        }
    }
}

/// Who ends the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOrigin {
    /// EndTxn: the epoch must be the current one (TV2: or a retry's).
    Client,
    /// The coordinator's fencing abort (InitProducerId while Ongoing, a timeout): the epoch
    /// may be newer than the current one (`isFromClient = false`).
    Coordinator,
}

/// An EndTxn, or the coordinator's abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub result: TxnResult,
    pub origin: EndOrigin,
}

/// What EndTxn leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Begin and write this Prepare* transition. Once durable, [`prepare_complete`] (it
    /// stays pending while the markers go out) and answer NONE; TV2 answers the producer id
    /// and epoch of that Complete* transition (Kafka 4.3's `newPreSendMetadata`: after an
    /// epoch overflow, the new producer id at epoch 0).
    Write(Transit),
    /// The transaction already ended this way (a retry): NONE without a write, with this
    /// producer id and epoch (TV1 answers -1 and -1, as Kafka).
    Done {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// TV2: the epoch is exhausted, the Prepare* carries the next producer id: call again
    /// with one allocated.
    NeedProducerId,
}

/// EndTxn with the client's (or, for the coordinator's own abort, the server's) transaction
/// version: [`prepare_end_v2`] if it bumps epochs, else [`prepare_end_v1`] (Kafka's
/// `endTransaction` dispatch).
pub fn prepare_end(
    meta: Option<&TxnMeta>,
    request: &EndRequest,
    version: TxnVersion,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<EndOutcome, ErrorCode> {
    if version.bumps_epoch() {
        prepare_end_v2(meta, request, new_producer_id, now_ms)
    } else {
        prepare_end_v1(meta, request, now_ms)
    }
}

/// The checks both versions make on a pending fence: only the coordinator's abort may
/// follow it. Kafka lets any request through there and then fails the transition (or lets
/// a client's abort take the fence's place); in Rill the fence and its abort are begun in
/// one step, so this never answers, but it keeps the rule total.
fn fence_follows(meta: &TxnMeta, request: &EndRequest) -> Result<(), ErrorCode> {
    if meta.pending_fence()
        && (request.origin == EndOrigin::Client || request.result == TxnResult::Commit)
    {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    Ok(())
}

/// EndTxn v0-4 (TV0/TV1, `endTransactionWithTV1`): unknown id or another producer id →
/// INVALID_PRODUCER_ID_MAPPING; from the client another epoch, from the coordinator an
/// older one → PRODUCER_FENCED; a pending transition (other than the fence this abort
/// completes) → CONCURRENT_TRANSACTIONS; then by state:
/// - Ongoing → PrepareCommit/PrepareAbort at the same epoch (a fence: the fencing epoch,
///   last epoch -1);
/// - CompleteCommit + commit, CompleteAbort + abort → [`EndOutcome::Done`] (a retry);
/// - PrepareCommit + commit, PrepareAbort + abort → CONCURRENT_TRANSACTIONS;
/// - any other mix, and Empty → INVALID_TXN_STATE.
pub fn prepare_end_v1(
    meta: Option<&TxnMeta>,
    request: &EndRequest,
    now_ms: i64,
) -> Result<EndOutcome, ErrorCode> {
    let meta = meta.ok_or(ErrorCode::InvalidProducerIdMapping)?;
    if meta.producer_id != request.producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    let fenced = (request.origin == EndOrigin::Client
        && request.producer_epoch != meta.producer_epoch)
        || request.producer_epoch < meta.producer_epoch;
    if fenced {
        return Err(ErrorCode::ProducerFenced);
    }
    if meta.pending.is_some() && !meta.pending_fence() {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    fence_follows(meta, request)?;
    let done = EndOutcome::Done {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
    };
    use TxnResult::{Abort, Commit};
    match (meta.state, request.result) {
        (TxnStatus::Ongoing, result) => {
            let mut t = meta.transit(result.prepare_state());
            if meta.pending_fence() {
                t.producer_epoch = request.producer_epoch;
                t.last_producer_epoch = NO_PRODUCER_EPOCH;
                t.fenced_epoch = Some(request.producer_epoch);
            }
            t.next_producer_id = NO_PRODUCER_ID;
            t.last_update_ms = now_ms;
            t.client_version = TxnVersion::V0;
            Ok(EndOutcome::Write(t))
        }
        (TxnStatus::CompleteCommit, Commit) | (TxnStatus::CompleteAbort, Abort) => Ok(done),
        (TxnStatus::PrepareCommit, Commit) | (TxnStatus::PrepareAbort, Abort) => {
            Err(ErrorCode::ConcurrentTransactions)
        }
        (
            TxnStatus::CompleteCommit
            | TxnStatus::CompleteAbort
            | TxnStatus::PrepareCommit
            | TxnStatus::PrepareAbort
            | TxnStatus::Empty,
            _,
        ) => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::Dead | TxnStatus::PrepareEpochFence, _) => Err(illegal_state()),
    }
}

/// EndTxn v5 (TV2, Kafka's `endTransaction`): every Prepare* write bumps the epoch
/// (`last_producer_epoch` = the old one) and the client continues with the bumped one, so a
/// retry is recognised by `request epoch + 1 == stored epoch` (or, across an epoch
/// overflow, the previous producer id at `i16::MAX - 1` while the new one is at 0). Unknown
/// id or another producer id (but that overflow retry) → INVALID_PRODUCER_ID_MAPPING; an
/// epoch that is neither current nor an allowed retry → PRODUCER_FENCED; a pending
/// transition → CONCURRENT_TRANSACTIONS; then (PF = PRODUCER_FENCED, ITS =
/// INVALID_TXN_STATE, EB = a Prepare* write with a bump):
///
/// | state          | abort retry | abort current | commit retry | commit current |
/// |----------------|-------------|---------------|--------------|----------------|
/// | Empty          | PF          | EB            | PF           | ITS            |
/// | CompleteAbort  | NONE        | EB            | ITS          | ITS            |
/// | CompleteCommit | ITS         | EB            | NONE         | ITS            |
///
/// Ongoing → EB; PrepareCommit + commit retry, PrepareAbort + abort retry →
/// CONCURRENT_TRANSACTIONS, the other mix ITS, and the current epoch (the next
/// transaction's end, early) CONCURRENT_TRANSACTIONS where Kafka answers PF. An exhausted
/// epoch makes the Prepare* carry a new producer id ([`EndOutcome::NeedProducerId`] until
/// one is given), installed at epoch 0 by Complete*. A fencing abort bumps from the
/// fencing epoch and allocates nothing.
pub fn prepare_end_v2(
    meta: Option<&TxnMeta>,
    request: &EndRequest,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<EndOutcome, ErrorCode> {
    let meta = meta.ok_or(ErrorCode::InvalidProducerIdMapping)?;
    let fencing = meta.pending_fence();
    let epoch = i32::from(request.producer_epoch);
    let current = i32::from(meta.producer_epoch);
    let retry_on_overflow = !fencing
        && meta.previous_producer_id == request.producer_id
        && request.producer_epoch == i16::MAX - 1
        && meta.producer_epoch == 0;
    let retry_on_bump = !fencing && current == epoch + 1;
    let valid_epoch = if fencing {
        (request.origin == EndOrigin::Coordinator || epoch == current) && epoch >= current
    } else {
        match meta.state {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => retry_on_bump,
            TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                retry_on_bump || retry_on_overflow || epoch == current
            }
            TxnStatus::Ongoing
            | TxnStatus::Empty
            | TxnStatus::Dead
            | TxnStatus::PrepareEpochFence => epoch == current,
        }
    };
    let retry = retry_on_bump || retry_on_overflow;
    if meta.producer_id != request.producer_id && !retry_on_overflow {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    // Rill, unlike Kafka (which fences it): the current epoch while Prepare* is the client
    // ending its next transaction before the coordinator completed this one (the EndTxn
    // answer named that epoch, and the client started at once). It is no zombie (those
    // have older epochs, and a newer instance cannot exist while Prepare*: InitProducerId
    // waits), so it waits too. Seen with the Java client: commit, then abort an empty
    // transaction right away, in a cluster where the markers take a few milliseconds.
    if !fencing
        && epoch == current
        && matches!(
            meta.state,
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
        )
    {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    if !valid_epoch {
        return Err(ErrorCode::ProducerFenced);
    }
    if meta.pending.is_some() && !fencing {
        return Err(ErrorCode::ConcurrentTransactions);
    }
    fence_follows(meta, request)?;

    // Kafka's generateTxnTransitMetadataForTxnCompletion + prepareAbortOrCommit (TV2).
    let write = |state: TxnStatus, nothing_added: bool| -> Result<EndOutcome, ErrorCode> {
        let next_producer_id = if !fencing && meta.epoch_exhausted() {
            match new_producer_id {
                Some(id) => id,
                None => return Ok(EndOutcome::NeedProducerId),
            }
        } else {
            NO_PRODUCER_ID
        };
        let base = if fencing {
            request.producer_epoch
        } else {
            meta.producer_epoch
        };
        let bumped = if base < i16::MAX {
            base + 1
        } else if state == TxnStatus::PrepareAbort {
            // Already broken: Kafka lets the abort through without overflowing.
            base
        } else {
            // No producer is ever given i16::MAX; Kafka's transition fails on the overflow.
            return Err(ErrorCode::ProducerFenced);
        };
        let mut t = meta.transit(state);
        t.producer_epoch = bumped;
        t.last_producer_epoch = base;
        t.fenced_epoch = fencing.then_some(base);
        t.start_ms = if nothing_added { now_ms } else { meta.start_ms };
        t.next_producer_id = next_producer_id;
        t.last_update_ms = now_ms;
        t.client_version = TxnVersion::V2;
        Ok(EndOutcome::Write(t))
    };
    let done = EndOutcome::Done {
        producer_id: meta.producer_id,
        producer_epoch: meta.producer_epoch,
    };
    use TxnResult::{Abort, Commit};
    match (meta.state, request.result) {
        (TxnStatus::Ongoing, result) => write(result.prepare_state(), false),
        (TxnStatus::CompleteCommit, Commit) if retry => Ok(done),
        (TxnStatus::CompleteCommit, Commit) => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::CompleteCommit, Abort) if retry => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::CompleteCommit, Abort) => write(TxnStatus::PrepareAbort, true),
        (TxnStatus::CompleteAbort, Abort) if retry => Ok(done),
        (TxnStatus::CompleteAbort, Abort) => write(TxnStatus::PrepareAbort, true),
        (TxnStatus::CompleteAbort, Commit) => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::PrepareCommit, Commit) | (TxnStatus::PrepareAbort, Abort) => {
            Err(ErrorCode::ConcurrentTransactions)
        }
        (TxnStatus::PrepareCommit, Abort) | (TxnStatus::PrepareAbort, Commit) => {
            Err(ErrorCode::InvalidTxnState)
        }
        (TxnStatus::Empty, Abort) => write(TxnStatus::PrepareAbort, true),
        (TxnStatus::Empty, Commit) => Err(ErrorCode::InvalidTxnState),
        (TxnStatus::Dead | TxnStatus::PrepareEpochFence, _) => Err(illegal_state()),
    }
}
