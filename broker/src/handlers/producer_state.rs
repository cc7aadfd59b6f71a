//! DescribeProducers: each asked partition's active idempotent producers (id, epoch, last
//! sequence, last batch timestamp), read from the producer table on the partition's owner
//! shard. Rill has no transactions yet, so the coordinator epoch and the current
//! transaction's start offset are always -1.

use std::rc::Rc;
use std::sync::Arc;

use rill_net::kafka_protocol::messages::describe_producers_response::*;
use rill_net::kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};

use super::topic_name;
use crate::shard::Shard;

pub async fn describe(shard: &Rc<Shard>, r: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut asks = Vec::new();
    for t in &r.topics {
        let topic: Arc<str> = Arc::from(&*t.name.0);
        for &index in &t.partition_indexes {
            let topic = topic.clone();
            asks.push(async move {
                let found = shard
                    .with_partition(&topic, index, |p| async move { p.active_producers().await })
                    .await;
                (topic, index, found)
            });
        }
    }
    let answers = futures_util::future::join_all(asks).await;
    let mut topics: Vec<TopicResponse> = Vec::new();
    for (topic, index, found) in answers {
        let mut part = PartitionResponse::default().with_partition_index(index);
        match found {
            Ok(producers) => {
                part = part.with_active_producers(
                    producers
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(i32::from(p.epoch))
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp)
                                .with_coordinator_epoch(p.coordinator_epoch)
                                .with_current_txn_start_offset(p.current_txn_start_offset)
                        })
                        .collect(),
                );
            }
            Err(e) => {
                part = part
                    .with_error_code(e.code.code())
                    .with_error_message(e.message_str());
            }
        }
        match topics.last_mut() {
            Some(t) if *t.name.0 == *topic => t.partitions.push(part),
            _ => topics.push(
                TopicResponse::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![part]),
            ),
        }
    }
    DescribeProducersResponse::default().with_topics(topics)
}
