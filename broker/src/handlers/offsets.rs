//! ListOffsets and DeleteRecords: per partition, on its owner shard.

use std::rc::Rc;
use std::sync::Arc;

use rill_net::kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
};

use crate::partition::OffsetQuery;
use crate::shard::Shard;

pub async fn list_offsets(shard: &Rc<Shard>, r: ListOffsetsRequest, v: i16) -> ListOffsetsResponse {
    use rill_net::kafka_protocol::messages::list_offsets_response::*;
    let mut topics = Vec::new();
    for t in r.topics {
        let topic: Arc<str> = Arc::from(&*t.name.0);
        let work = t.partitions.iter().map(|p| {
            let timestamp = p.timestamp;
            let topic = topic.clone();
            let index = p.partition_index;
            async move {
                let found = match OffsetQuery::from_wire(timestamp) {
                    Ok(query) => {
                        shard
                            .with_partition(&topic, index, move |p| async move {
                                p.list_offsets(query).await
                            })
                            .await
                    }
                    Err(e) => Err(e),
                };
                (index, found)
            }
        });
        let partitions = futures_util::future::join_all(work)
            .await
            .into_iter()
            .map(|(index, found)| {
                let part = ListOffsetsPartitionResponse::default().with_partition_index(index);
                match found {
                    // leader_epoch exists from v4 on; its default (-1) means unknown.
                    Ok((offset, timestamp)) if v >= 4 => part
                        .with_offset(offset)
                        .with_timestamp(timestamp)
                        .with_leader_epoch(0),
                    Ok((offset, timestamp)) => part.with_offset(offset).with_timestamp(timestamp),
                    Err(e) => {
                        shard.metrics().error("ListOffsets", e.code);
                        part.with_error_code(e.code.code())
                            .with_offset(-1)
                            .with_timestamp(-1)
                    }
                }
            })
            .collect();
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

pub async fn delete_records(shard: &Rc<Shard>, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    use rill_net::kafka_protocol::messages::delete_records_response::*;
    let mut topics = Vec::new();
    for t in r.topics {
        let topic: Arc<str> = Arc::from(&*t.name.0);
        let work = t.partitions.iter().map(|p| {
            let topic = topic.clone();
            let index = p.partition_index;
            // -1: up to the high watermark.
            let before = (p.offset != -1).then_some(p.offset);
            async move {
                let low = shard
                    .with_partition(&topic, index, move |p| async move {
                        p.delete_records(before).await
                    })
                    .await;
                (index, low)
            }
        });
        let partitions = futures_util::future::join_all(work)
            .await
            .into_iter()
            .map(|(index, low)| {
                let part = DeleteRecordsPartitionResult::default().with_partition_index(index);
                match low {
                    Ok(low) => part.with_low_watermark(low),
                    Err(e) => part.with_error_code(e.code.code()).with_low_watermark(-1),
                }
            })
            .collect();
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
