//! Produce: each partition's record batches go to the partition's owner shard, which checks
//! and appends them in the order they arrive and waits for the durability `acks` asks for
//! ([`crate::partition::Partition::produce`]). The batches travel as `Bytes` of the request
//! frame, never copied or decoded, unless the topic's configs ask otherwise: its timestamp
//! bounds are checked and its `compression.type` applied here first ([`super::recompress`]).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rill_net::kafka_protocol::messages::produce_response::*;
use rill_net::kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use super::{recompress, topic_name};
use crate::errors::KafkaError;
use crate::metadata::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::partition::{client_batches, split_batches, transactional_batches, Produced};
use crate::runtime;
use crate::shard::{Lane, Shard};
use crate::txn::Txns;

pub async fn produce(shard: &Rc<Shard>, r: ProduceRequest, version: i16) -> ProduceResponse {
    let refuse = if !matches!(r.acks, -1..=1) {
        Some(KafkaError::new(
            ErrorCode::InvalidRequiredAcks,
            format!("acks must be -1, 0 or 1, not {}", r.acks),
        ))
    } else {
        None
    };
    // Kafka answers transactional batches without a transactional id as unauthorized.
    let transactional = r.transactional_id.is_some();
    // KIP-890: the transactional id whose coordinator a leader asks first, to verify the
    // partition is in the transaction (part 1, when configured) or, from Produce v12
    // (transactions v2, always), to add it.
    let verify_with = r
        .transactional_id
        .as_ref()
        .filter(|_| version >= 12 || shard.config().transaction_partition_verification)
        .map(|id| id.0.to_string());
    let lag_max = Duration::from_millis(shard.config().replica_lag_time_max_ms);
    let acks = r.acks;
    let image = shard.image();
    let now_ms = runtime::now_ms();
    let mut work = Vec::new();
    for t in &r.topic_data {
        let topic: Arc<str> = Arc::from(&*t.name.0);
        // An unknown topic is the owner lookup's to report.
        let settings = image.topic(&topic).map(|info| info.settings.clone());
        let internal = [OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC]
            .contains(&&*topic)
            .then(|| {
                KafkaError::new(
                    ErrorCode::InvalidTopicException,
                    format!("{topic} is internal: only its coordinators write it"),
                )
            });
        for p in &t.partition_data {
            let topic = topic.clone();
            let index = p.index;
            let bytes = p.records.as_ref().map_or(0, |r| r.len() as u64);
            // Every batch is parsed and checked once, here; the owner appends them as they are.
            let mut record_errors = Vec::new();
            let batches = match (
                refuse.clone().or_else(|| internal.clone()),
                p.records.clone(),
            ) {
                (Some(e), _) => Err(e),
                (None, None) => Err(KafkaError::new(
                    ErrorCode::CorruptMessage,
                    "produce partition carries no records",
                )),
                (None, Some(data)) => split_batches(data).and_then(client_batches).and_then(|batches| transactional_batches(batches, transactional)).and_then(|batches| match &settings {
                    Some(s) if s.cleanup_compact => {
                        record_errors = recompress::keyless_records(&batches, s)?;
                        if record_errors.is_empty() {
                            recompress::prepare(batches, &topic, s, now_ms)
                        } else {
                            Err(KafkaError::new(
                                ErrorCode::InvalidRecord,
                                format!("Compacted topic cannot accept message without key in topic partition {topic}-{index}."),
                            ))
                        }
                    }
                    Some(s) => recompress::prepare(batches, &topic, s, now_ms),
                    None => Ok(batches),
                }),
            };
            let count: u64 = batches.as_ref().map_or(0, |b| {
                b.iter()
                    .map(|b| b.header().record_count.max(0) as u64)
                    .sum()
            });
            let verify_with = verify_with.clone();
            work.push(async move {
                let result: Result<Produced, KafkaError> = match (batches, verify_with) {
                    (Err(e), _) => Err(e),
                    (Ok(batches), None) => {
                        shard
                            .with_partition(&topic, index, move |p| async move {
                                p.produce(batches, acks, lag_max).await
                            })
                            .await
                    }
                    (Ok(batches), Some(id)) => {
                        verified(shard, &topic, index, id, batches, acks, lag_max, version).await
                    }
                };
                (topic, index, result, bytes, count, record_errors)
            });
        }
    }
    let results = futures_util::future::join_all(work).await;
    let mut responses: Vec<TopicProduceResponse> = Vec::new();
    for (topic, index, result, bytes, records, record_errors) in results {
        match &result {
            Ok(_) => shard.metrics().produced(&topic, bytes, records),
            Err(e) => {
                tracing::debug!(topic = %topic, partition = index, code = ?e.code, error = %e.message_str().unwrap_or_default(), "produce refused");
                shard.metrics().error("Produce", e.code)
            }
        }
        let mut part = PartitionProduceResponse::default().with_index(index);
        match result {
            Ok(produced) => {
                part = part
                    .with_base_offset(produced.base_offset)
                    .with_log_append_time_ms(produced.log_append_time)
                    .with_log_start_offset(produced.log_start_offset);
            }
            Err(e) => {
                part = part
                    .with_error_code(e.code.code())
                    .with_base_offset(-1)
                    .with_error_message(e.message_str())
                    .with_record_errors(
                        record_errors
                            .into_iter()
                            .map(|i| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(i)
                                    .with_batch_index_error_message(Some(
                                        StrBytes::from_static_str(
                                            "Compacted topic cannot accept message without key.",
                                        ),
                                    ))
                            })
                            .collect(),
                    );
            }
        }
        match responses.last_mut() {
            Some(t) if *t.name.0 == *topic => t.partition_responses.push(part),
            _ => responses.push(
                TopicProduceResponse::default()
                    .with_name(topic_name(&topic))
                    .with_partition_responses(vec![part]),
            ),
        }
    }
    ProduceResponse::default().with_responses(responses)
}

/// A transactional produce to `topic`-`index` on its owner shard, which asks the
/// coordinator of transactional id `id` first when the producer's transaction is not open
/// there yet ([`crate::partition::Partition::produce_verified`]).
#[allow(clippy::too_many_arguments)]
async fn verified(
    shard: &Rc<Shard>,
    topic: &Arc<str>,
    index: i32,
    id: String,
    batches: Vec<rill_storage::batch::CheckedBatch>,
    acks: i16,
    lag_max: Duration,
    version: i16,
) -> Result<Produced, KafkaError> {
    let owner = shard.owner_of(topic, index)?;
    let topic = topic.clone();
    shard
        .ask(owner, Lane::Data, move |s: Rc<Shard>| async move {
            let Some(p) = s.partition(&topic, index) else {
                return Err(KafkaError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("partition {topic}-{index} is not open on its shard yet"),
                ));
            };
            let txns = Txns::of(&s);
            let name = topic.clone();
            let verify = move |pid: i64, epoch: i16| async move {
                txns.join_for_produce(id, pid, epoch, &name, index, version)
                    .await
            };
            p.produce_verified(batches, acks, lag_max, verify).await
        })
        .await?
}
