//! Transactions (issue 17; the design and its increments are in `broker/docs/transactions.md`).
//!
//! So far: partitions hold transactions (`crate::partition`, WriteTxnMarkers), and the
//! coordinator registers transactional ids (FindCoordinator, InitProducerId,
//! DescribeTransactions, ListTransactions); AddPartitionsToTxn, EndTxn and the markers it
//! sends come next.
//!
//! Layout: `coordinator` (the shard service: routing, load, writes) → `state`; `wire` (the `__transaction_state` key and value, bytes in, values out) uses
//! `coordinator_wire`, the writer and reader shared with `group::wire`; `state` is the
//! coordinator's state machine (sans-I/O: requests in, transitions and answers out).

mod coordinator;
pub mod state;
pub mod wire;

pub use coordinator::{start, TxnView, Txns};
