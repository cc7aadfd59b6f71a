//! Idempotent producers against the real broker: a retried batch is answered with its
//! original offset and not stored twice, also when the retry crosses a broker restart
//! (the producer state is rebuilt from the log) and after kill -9; a gap in the sequence
//! is refused with OUT_OF_ORDER_SEQUENCE_NUMBER and an old epoch with
//! INVALID_PRODUCER_EPOCH.

mod common;

use bytes::Bytes;
use common::*;
use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::kafka_protocol::messages::InitProducerIdRequest;
use rill_net::ErrorCode;

fn batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<ProduceRecord> = values
        .iter()
        .map(|v| ProduceRecord {
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000,
        })
        .collect();
    encode_record_batch(
        &records,
        &BatchOptions {
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            ..BatchOptions::default()
        },
    )
    .expect("encode an idempotent batch")
}

#[test]
fn retries_are_deduplicated_across_restarts() {
    let mut broker = Broker::start("idempotence");
    broker.create_topic("idem", 1, &[]);
    let mut net = broker.net();
    let init = net.send(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0, "producer id {pid}");
    let epoch = init.producer_epoch;
    let second = net.send(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    assert_ne!(
        second.producer_id.0, pid,
        "each InitProducerId gets a new id"
    );

    let b0 = batch(pid, epoch, 0, &["a", "b", "c"]);
    let (code, first) = net.produce_batch("idem", 0, -1, b0.clone());
    assert_eq!(code, 0);
    // The same batch again (a retry after a lost answer): same offset, nothing appended.
    assert_eq!(net.produce_batch("idem", 0, -1, b0.clone()), (0, first));
    assert_eq!(broker.watermarks("idem", 0).1, first + 3);
    // A gap in the sequence is refused.
    let (code, _) = net.produce_batch("idem", 0, -1, batch(pid, epoch, 7, &["x"]));
    assert_eq!(code, ErrorCode::OutOfOrderSequenceNumber.code());

    // Across a clean restart: the state comes back from the log.
    broker.terminate();
    broker.restart();
    let mut net = broker.net();
    assert_eq!(
        net.produce_batch("idem", 0, -1, b0.clone()),
        (0, first),
        "retry after restart"
    );
    let b1 = batch(pid, epoch, 3, &["d"]);
    let (code, next) = net.produce_batch("idem", 0, -1, b1.clone());
    assert_eq!((code, next), (0, first + 3));

    // Across kill -9 (the batch was acknowledged with acks=all, so it is durable).
    broker.kill9();
    broker.restart();
    let mut net = broker.net();
    assert_eq!(
        net.produce_batch("idem", 0, -1, b1),
        (0, next),
        "retry after kill -9"
    );
    assert_eq!(broker.watermarks("idem", 0).1, first + 4);
    // A newer epoch starts at sequence 0; the old epoch is then fenced.
    let (code, _) = net.produce_batch("idem", 0, -1, batch(pid, epoch + 1, 0, &["e"]));
    assert_eq!(code, 0);
    let (code, _) = net.produce_batch("idem", 0, -1, batch(pid, epoch, 4, &["f"]));
    assert_eq!(code, ErrorCode::InvalidProducerEpoch.code());
    assert_eq!(broker.watermarks("idem", 0).1, first + 5);
}

/// The producer state comes back whole after a restart, not only from the last stretch of
/// the log: a retry of a batch followed by more than 50,000 other records (the tail the
/// broker used to rebuild from) is still recognised, after a clean stop (the snapshot
/// written at close) and after kill -9 (the snapshot written along the way, then the
/// batches after it).
#[test]
fn a_retry_far_behind_the_log_end_is_still_recognised_after_restarts() {
    let mut broker = Broker::start("idempotence-far");
    broker.create_topic("far", 1, &[]);
    let mut net = broker.net();
    let init = net.send(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let b0 = batch(pid, epoch, 0, &["first"]);
    let (code, first) = net.produce_batch("far", 0, -1, b0.clone());
    assert_eq!(code, 0);
    // 120,000 records of plain producers after it, in batches of 1,000.
    let values: Vec<String> = (0..1000).map(|i| format!("filler-{i}")).collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    for _ in 0..120 {
        assert_eq!(net.produce_values("far", 0, &refs).0, 0);
    }
    let end = broker.watermarks("far", 0).1;
    assert_eq!(end, first + 1 + 120_000);
    broker.kill9();
    broker.restart();
    let mut net = broker.net();
    assert_eq!(
        net.produce_batch("far", 0, -1, b0.clone()),
        (0, first),
        "a retry 120,000 records back after kill -9 was not recognised"
    );
    broker.terminate();
    broker.restart();
    let mut net = broker.net();
    assert_eq!(
        net.produce_batch("far", 0, -1, b0),
        (0, first),
        "a retry 120,000 records back after a clean restart was not recognised"
    );
    assert_eq!(
        broker.watermarks("far", 0).1,
        end,
        "a retry was stored again"
    );
    let (code, next) = net.produce_batch("far", 0, -1, batch(pid, epoch, 1, &["second"]));
    assert_eq!((code, next), (0, end));
}
