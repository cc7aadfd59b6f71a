//! WriteTxnMarkers: a transaction coordinator (or an admin aborting a hanging transaction,
//! `kafka-transactions.sh abort`) asks the leaders of a transaction's partitions to write
//! its end marker. Each partition's owner shard appends the marker in append order and
//! answers once it is on every in-sync replica ([`crate::partition::Partition::write_txn_marker`]);
//! the partitions of a request are written concurrently.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rill_net::kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use rill_net::kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use rill_net::ErrorCode;

use super::topic_name;
use crate::partition::MarkerWrite;
use crate::shard::Shard;

pub async fn write_txn_markers(
    shard: &Rc<Shard>,
    r: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let lag_max = Duration::from_millis(shard.config().replica_lag_time_max_ms);
    let mut work = Vec::new();
    for (i, marker) in r.markers.iter().enumerate() {
        let m = MarkerWrite {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            commit: marker.transaction_result,
        };
        for t in &marker.topics {
            let topic: Arc<str> = Arc::from(&*t.name.0);
            for &index in &t.partition_indexes {
                let topic = topic.clone();
                work.push(async move {
                    let written =
                        crate::txn::write_marker_here(shard, &topic, index, m, lag_max).await;
                    (i, topic, index, written)
                });
            }
        }
    }
    let mut results: Vec<WritableTxnMarkerResult> = r
        .markers
        .iter()
        .map(|m| WritableTxnMarkerResult::default().with_producer_id(m.producer_id))
        .collect();
    for (i, topic, index, written) in futures_util::future::join_all(work).await {
        let code = match written {
            Ok(()) => ErrorCode::None,
            Err(e) => {
                shard.metrics().error("WriteTxnMarkers", e.code);
                tracing::debug!(topic = %topic, partition = index, error = ?e, "transaction marker not written");
                e.code
            }
        };
        let part = WritableTxnMarkerPartitionResult::default()
            .with_partition_index(index)
            .with_error_code(code.code());
        let topics = &mut results[i].topics;
        match topics.iter_mut().find(|t| *t.name.0 == *topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![part]),
            ),
        }
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
