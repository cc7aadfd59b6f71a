//! Transactions (issue 17; the design and its increments are in `broker/docs/transactions.md`).
//!
//! So far only the transaction coordinator's record formats ([`wire`]): nothing is served
//! yet, and FindCoordinator for transactions still answers COORDINATOR_NOT_AVAILABLE.
//!
//! Layout: `wire` (the `__transaction_state` key and value, bytes in, values out) uses
//! `coordinator_wire`, the writer and reader shared with `group::wire`; `state` is the
//! coordinator's state machine (sans-I/O: requests in, transitions and answers out).

pub mod state;
pub mod wire;
