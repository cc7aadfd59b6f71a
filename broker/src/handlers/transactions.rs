//! The transaction apis producers and admins call, answered by the transaction coordinators
//! ([`crate::txn::Txns`]): AddPartitionsToTxn (v0-3 from producers, v4-5 from partition
//! leaders verifying or adding, KIP-890) and EndTxn (v5: transactions v2);
//! DescribeTransactions asks each id's coordinator (this broker
//! must lead its state partition: NOT_COORDINATOR otherwise, and the admin client asks
//! the right broker); ListTransactions lists the ids of every state partition this broker
//! leads, filtered as asked (states, producer ids, v1 duration, v2 id pattern).

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use rill_net::kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState,
};
use rill_net::kafka_protocol::messages::list_transactions_response;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use super::topic_name;
use crate::runtime;
use crate::shard::Shard;
use crate::txn::state::{error_for_version, TxnApi, TxnVersion};
use crate::txn::wire::TxnStatus;
use crate::txn::{TxnView, Txns};

/// Most bytes a compiled transactional id pattern may take (a client's regex must not cost
/// the broker much memory).
const PATTERN_BYTES_MAX: usize = 1 << 20;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub async fn list(shard: &Rc<Shard>, r: ListTransactionsRequest) -> ListTransactionsResponse {
    // Kafka refuses a pattern that does not compile, whatever the transactions.
    let pattern = match r
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| {
            regex::RegexBuilder::new(p)
                .size_limit(PATTERN_BYTES_MAX)
                .build()
        })
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "ListTransactions pattern refused");
            return ListTransactionsResponse::default()
                .with_error_code(ErrorCode::InvalidRegularExpression.code());
        }
    };
    let unknown: Vec<StrBytes> = r
        .state_filters
        .iter()
        .filter(|f| !TxnStatus::names().any(|n| n == &***f))
        .cloned()
        .collect();
    let listed = shard
        .ask_all(|shard: Rc<Shard>| async move { Txns::of(&shard).listed().await })
        .await;
    let mut views: Vec<TxnView> = Vec::new();
    for l in listed {
        match l {
            Ok(v) => views.extend(v),
            Err(code) => {
                return ListTransactionsResponse::default()
                    .with_error_code(code.code())
                    .with_unknown_state_filters(unknown)
            }
        }
    }
    let now = runtime::now_ms();
    let states = views
        .into_iter()
        .filter(|t| {
            (r.state_filters.is_empty() || r.state_filters.iter().any(|f| &**f == t.state.name()))
                && (r.producer_id_filters.is_empty()
                    || r.producer_id_filters.iter().any(|p| p.0 == t.producer_id))
                && (r.duration_filter < 0
                    || (t.start_ms >= 0 && now - t.start_ms > r.duration_filter))
                && pattern
                    .as_ref()
                    .is_none_or(|p| p.is_match(&t.transactional_id))
        })
        .map(|t| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(s(&t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(s(t.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

pub async fn describe(
    shard: &Rc<Shard>,
    r: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let txns = Txns::of(shard);
    let mut states = Vec::with_capacity(r.transactional_ids.len());
    for id in r.transactional_ids {
        let state = match txns.describe(id.0.to_string()).await {
            Ok(t) => TransactionState::default()
                .with_transactional_id(id)
                .with_transaction_state(s(t.state.name()))
                .with_transaction_timeout_ms(t.timeout_ms)
                .with_transaction_start_time_ms(t.start_ms)
                .with_producer_id(ProducerId(t.producer_id))
                .with_producer_epoch(t.producer_epoch)
                .with_topics(
                    t.partitions
                        .into_iter()
                        .map(|(topic, partitions)| {
                            TopicData::default()
                                .with_topic(topic_name(&topic))
                                .with_partitions(partitions)
                        })
                        .collect(),
                ),
            Err(code) => {
                shard.metrics().error("DescribeTransactions", code);
                TransactionState::default()
                    .with_error_code(code.code())
                    .with_transactional_id(id)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1)
            }
        };
        states.push(state);
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// AddPartitionsToTxn v0-3 (from a producer, one transaction): every partition must exist
/// (else those are UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as
/// Kafka answers), then the coordinator adds them all or none.
pub async fn add_partitions_to_txn(
    shard: &Rc<Shard>,
    r: AddPartitionsToTxnRequest,
    v: i16,
) -> AddPartitionsToTxnResponse {
    if v >= 4 {
        return add_partitions_from_brokers(shard, r, v).await;
    }
    let image = shard.image();
    let wanted: Vec<(String, i32)> = r
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p)))
        .collect();
    let exists = |(t, p): &(String, i32)| {
        image
            .topic(t)
            .is_some_and(|info| *p >= 0 && *p < info.partition_count())
    };
    let outcome: Result<(), ErrorCode> = if wanted.iter().all(exists) {
        Txns::of(shard)
            .add_partitions(
                r.v3_and_below_transactional_id.0.to_string(),
                r.v3_and_below_producer_id.0,
                r.v3_and_below_producer_epoch,
                wanted.iter().cloned().collect(),
                TxnVersion::for_add_partitions(v),
            )
            .await
            .map_err(|code| error_for_version(code, TxnApi::AddPartitionsToTxn, v))
    } else {
        Err(ErrorCode::OperationNotAttempted)
    };
    let codes = wanted.iter().map(|tp| {
        let code = match &outcome {
            Ok(()) => ErrorCode::None,
            Err(ErrorCode::OperationNotAttempted) if !exists(tp) => {
                ErrorCode::UnknownTopicOrPartition
            }
            Err(code) => *code,
        };
        (tp, code)
    });
    let results = topic_results(shard, codes);
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// AddPartitionsToTxn v4+ (from partition leaders, several transactions): each with
/// VerifyOnly is answered from this coordinator's state, without a write (KIP-890 part 1);
/// each without it adds its partitions as v0-3 does. A transaction whose coordinator is
/// not this broker gets NOT_COORDINATOR for its partitions. v4 predates
/// TRANSACTION_ABORTABLE: a partition not in the transaction is INVALID_TXN_STATE there.
async fn add_partitions_from_brokers(
    shard: &Rc<Shard>,
    r: AddPartitionsToTxnRequest,
    v: i16,
) -> AddPartitionsToTxnResponse {
    use rill_net::kafka_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnResult;
    let txns = Txns::of(shard);
    let mut results = Vec::new();
    for t in r.transactions {
        let wanted: BTreeSet<(String, i32)> = t
            .topics
            .iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(move |p| (tp.name.0.to_string(), *p))
            })
            .collect();
        let id = t.transactional_id.0.to_string();
        let (pid, epoch) = (t.producer_id.0, t.producer_epoch);
        let codes: Result<BTreeMap<(String, i32), ErrorCode>, ErrorCode> = if t.verify_only {
            txns.verify(id.clone(), pid, epoch, wanted.clone()).await
        } else {
            txns.add_partitions(id.clone(), pid, epoch, wanted.clone(), TxnVersion::V2)
                .await
                .map(|()| {
                    wanted
                        .iter()
                        .map(|tp| (tp.clone(), ErrorCode::None))
                        .collect()
                })
        };
        let codes = wanted.iter().map(|tp| {
            let code = match &codes {
                Ok(c) => c.get(tp).copied().unwrap_or(ErrorCode::UnknownServerError),
                Err(code) => *code,
            };
            let code = match code {
                ErrorCode::TransactionAbortable if v < 5 => ErrorCode::InvalidTxnState,
                ErrorCode::ProducerFenced => error_for_version(code, TxnApi::AddPartitionsToTxn, v),
                other => other,
            };
            (tp, code)
        });
        let topics = topic_results(shard, codes);
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id)
                .with_topic_results(topics),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// AddPartitionsToTxn's per-partition answers grouped by topic, in the order given; each
/// error counted in the metrics.
fn topic_results<'a>(
    shard: &Rc<Shard>,
    codes: impl Iterator<Item = (&'a (String, i32), ErrorCode)>,
) -> Vec<add_partitions_to_txn_response::AddPartitionsToTxnTopicResult> {
    use add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in codes {
        if code != ErrorCode::None {
            shard.metrics().error("AddPartitionsToTxn", code);
        }
        let part = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(*partition)
            .with_partition_error_code(code.code());
        match topics.iter_mut().find(|t| *t.name.0 == **topic) {
            Some(t) => t.results_by_partition.push(part),
            None => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic_name(topic))
                    .with_results_by_partition(vec![part]),
            ),
        }
    }
    topics
}

/// EndTxn: commit or abort, decided by the coordinator; the markers follow. v5 is
/// transactions v2: the epoch is bumped and the answer names the producer id and epoch the
/// client goes on with.
pub async fn end_txn(shard: &Rc<Shard>, r: EndTxnRequest, v: i16) -> EndTxnResponse {
    let (code, (pid, epoch)) = match Txns::of(shard)
        .end_transaction(
            r.transactional_id.0.to_string(),
            r.producer_id.0,
            r.producer_epoch,
            r.committed,
            TxnVersion::for_end_txn(v),
        )
        .await
    {
        Ok(next) => (ErrorCode::None, next),
        Err(code) => {
            tracing::debug!(transactional_id = %r.transactional_id.0, producer_id = r.producer_id.0, epoch = r.producer_epoch, version = v, ?code, "EndTxn refused");
            shard.metrics().error("EndTxn", code);
            (error_for_version(code, TxnApi::EndTxn, v), (-1, -1))
        }
    };
    EndTxnResponse::default()
        .with_error_code(code.code())
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}
