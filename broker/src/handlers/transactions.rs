//! ListTransactions and DescribeTransactions. Rill has no transaction coordinator yet, so no
//! transaction exists: the list is empty and every transactional id is unknown. Answering
//! (rather than not advertising the apis) lets `kafka-transactions list` and the admin
//! clients' listTransactions work, and shows operators that nothing is in flight.

use rill_net::kafka_protocol::messages::describe_transactions_response::TransactionState;
use rill_net::kafka_protocol::messages::*;
use rill_net::ErrorCode;

/// The states Kafka's transaction coordinator knows (`TransactionState`); a filter naming
/// another is reported back as unknown, as Kafka does.
const STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

/// Most bytes a compiled transactional id pattern may take (a client's regex must not cost
/// the broker much memory, even though no transaction is matched against it yet).
const PATTERN_BYTES_MAX: usize = 1 << 20;

pub fn list(r: ListTransactionsRequest) -> ListTransactionsResponse {
    // Kafka refuses a pattern that does not compile, whatever the transactions.
    if let Some(pattern) = r
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if let Err(e) = regex::RegexBuilder::new(pattern)
            .size_limit(PATTERN_BYTES_MAX)
            .build()
        {
            tracing::debug!(error = %e, "ListTransactions pattern refused");
            return ListTransactionsResponse::default()
                .with_error_code(ErrorCode::InvalidRegularExpression.code());
        }
    }
    let unknown = r
        .state_filters
        .into_iter()
        .filter(|f| !STATES.contains(&&**f))
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown)
}

/// Every id: TRANSACTIONAL_ID_NOT_FOUND.
pub fn describe(r: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let states = r
        .transactional_ids
        .into_iter()
        .map(|id| {
            TransactionState::default()
                .with_error_code(ErrorCode::TransactionalIdNotFound.code())
                .with_transactional_id(id)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
