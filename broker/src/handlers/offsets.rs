//! ListOffsets, OffsetForLeaderEpoch and DeleteRecords: per partition, on its owner shard,
//! with the leader-epoch checks of KIP-320 (a client that names an older leader epoch is
//! fenced; one that names a newer one learns this broker has not seen it yet).

use std::rc::Rc;
use std::sync::Arc;

use rill_net::kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use crate::partition::OffsetQuery;
use crate::shard::Shard;

pub async fn list_offsets(shard: &Rc<Shard>, r: ListOffsetsRequest, v: i16) -> ListOffsetsResponse {
    use rill_net::kafka_protocol::messages::list_offsets_response::*;
    // v2+: a read_committed consumer's latest offset is the last stable offset.
    let committed = v >= 2 && r.isolation_level == 1;
    let mut topics = Vec::new();
    for t in r.topics {
        let topic: Arc<str> = Arc::from(&*t.name.0);
        let work = t.partitions.iter().map(|p| {
            let timestamp = p.timestamp;
            let current_leader_epoch = if v >= 4 { p.current_leader_epoch } else { -1 };
            let topic = topic.clone();
            let index = p.partition_index;
            async move {
                let found = match OffsetQuery::from_wire(timestamp) {
                    Ok(query) => {
                        shard
                            .with_partition(&topic, index, move |p| async move {
                                p.list_offsets(query, current_leader_epoch, committed).await
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
                    Ok((offset, timestamp, epoch)) if v >= 4 => part
                        .with_offset(offset)
                        .with_timestamp(timestamp)
                        .with_leader_epoch(epoch),
                    Ok((offset, timestamp, _)) => {
                        part.with_offset(offset).with_timestamp(timestamp)
                    }
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

/// OffsetForLeaderEpoch: where each asked-for epoch ends in the partition's log, from its
/// leader-epoch history. Followers and clients (KIP-320) use it to find where their log
/// diverges from the leader's.
pub async fn offset_for_leader_epoch(
    shard: &Rc<Shard>,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    use rill_net::kafka_protocol::messages::offset_for_leader_epoch_response::*;
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let topic: Arc<str> = Arc::from(&*t.topic.0);
        let work = t.partitions.iter().map(|p| {
            let topic = topic.clone();
            let (index, current, epoch) = (p.partition, p.current_leader_epoch, p.leader_epoch);
            async move {
                let found = shard
                    .with_partition(&topic, index, move |p| async move {
                        p.offset_for_leader_epoch(current, epoch)
                    })
                    .await;
                (index, found)
            }
        });
        let partitions = futures_util::future::join_all(work)
            .await
            .into_iter()
            .map(|(index, found)| {
                let part = EpochEndOffset::default().with_partition(index);
                match found {
                    Ok((epoch, end_offset)) => {
                        part.with_leader_epoch(epoch).with_end_offset(end_offset)
                    }
                    Err(e) => {
                        shard.metrics().error("OffsetForLeaderEpoch", e.code);
                        part.with_error_code(e.code.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1)
                    }
                }
            })
            .collect();
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
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
