//! Transactions (issue 17; the design and its increments are in `broker/docs/transactions.md`).
//!
//! Partitions hold transactions (`crate::partition`, WriteTxnMarkers); the coordinator
//! serves transactional ids (FindCoordinator, InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, DescribeTransactions, ListTransactions), both the classic
//! protocol and transactions v2 (KIP-890 part 2), writes the end markers, and answers the
//! partition leaders that verify or add a partition before a transactional append (KIP-890).
//!
//! Layout: `coordinator` (the shard service: routing, load, writes) → `state`; `wire` (the `__transaction_state` key and value, bytes in, values out) uses
//! `coordinator_wire`, the writer and reader shared with `group::wire`; `state` is the
//! coordinator's state machine (sans-I/O: requests in, transitions and answers out).

mod coordinator;
pub mod state;
pub mod wire;

pub use coordinator::{start, TxnView, Txns};

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rill_net::ErrorCode;

use crate::errors::KafkaError;
use crate::group::Groups;
use crate::metadata::OFFSETS_TOPIC;
use crate::partition::MarkerWrite;
use crate::shard::{Lane, Shard};

/// Writes end marker `m` to partition `topic`-`partition` of this broker, on its owner
/// shard. For a `__consumer_offsets` partition the group coordinator there then settles the
/// transaction's offsets (they count on commit, go on abort), as Kafka's group coordinator
/// replays the marker.
pub async fn write_marker_here(
    shard: &Rc<Shard>,
    topic: &Arc<str>,
    partition: i32,
    m: MarkerWrite,
    lag_max: Duration,
) -> Result<(), KafkaError> {
    if &**topic != OFFSETS_TOPIC {
        return shard
            .with_partition(topic, partition, move |p| async move {
                p.write_txn_marker(m, lag_max).await
            })
            .await;
    }
    let owner = shard.owner_of(topic, partition)?;
    shard
        .ask(owner, Lane::Data, move |s: Rc<Shard>| async move {
            let Some(p) = s.partition(OFFSETS_TOPIC, partition) else {
                return Err(KafkaError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("partition {OFFSETS_TOPIC}-{partition} is not open on its shard yet"),
                ));
            };
            p.write_txn_marker(m, lag_max).await?;
            Groups::of(&s).end_txn_offsets(partition, m.producer_id, m.commit);
            Ok(())
        })
        .await?
}
