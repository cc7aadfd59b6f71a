//! Records that one producer pipelines to a partition over one connection are stored in the
//! order they were sent, whatever their size. A librdkafka producer with default settings
//! (no idempotence, up to 1,000,000 requests in flight per connection) sends several hundred
//! MB of 500 KB records to two partitions (with two shards, at least one of them owned by a
//! shard other than the one serving the connection, so requests also cross shards); every
//! record must be acknowledged at the offset that follows the previous one of its partition,
//! and read back in sending order.
//!
//! Before the fix, appends to a partition queued at an async mutex that let a late arrival
//! take the lock ahead of an earlier waiter, and cross-shard sends waiting for a full channel
//! went out in whatever order they were polled: 90 of 1,000 acknowledged offsets came out
//! inverted in the run that found it, and 17 of these 1,000 with the broker of commit
//! 5ae9884 (this test, run against that binary).

mod common;

use std::time::Duration;

use common::*;
use rdkafka::producer::FutureRecord;

/// Records per partition.
const RECORDS_PER_PARTITION: usize = 500;
/// Bytes of each record's value.
const VALUE_BYTES: usize = 500_000;
const PARTITIONS: i32 = 2;

fn value(seq: usize) -> Vec<u8> {
    let mut v = format!("seq-{seq:08}-").into_bytes();
    v.resize(VALUE_BYTES, (seq % 251) as u8);
    v
}

#[test]
fn pipelined_large_records_keep_their_order() {
    let mut broker = Broker::start("produce-order");
    let topic = "order";
    broker.create_topic(topic, PARTITIONS, &[("max.message.bytes", "2000000")]);
    // librdkafka's defaults, but a generous timeout: a debug-build broker writes slowly.
    let producer = broker.producer("all", &[("message.timeout.ms", "120000")]);
    let total = RECORDS_PER_PARTITION * PARTITIONS as usize;
    let mut pending = Vec::with_capacity(total);
    for seq in 0..total {
        let partition = (seq % PARTITIONS as usize) as i32;
        let key = seq.to_string();
        let payload = value(seq);
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&payload);
        // send_result enqueues without waiting, so librdkafka pipelines freely.
        let delivery = producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("enqueue record {seq}: {e}"));
        pending.push((seq, partition, delivery));
    }
    let mut next_offset = vec![0i64; PARTITIONS as usize];
    let mut inverted = Vec::new();
    for (seq, partition, delivery) in pending {
        let delivered = block_on(delivery)
            .expect("delivery future dropped")
            .unwrap_or_else(|(e, _)| panic!("record {seq} was not acknowledged: {e}"));
        assert_eq!(delivered.partition, partition);
        let offset = delivered.offset;
        let expected = &mut next_offset[partition as usize];
        if offset != *expected {
            inverted.push((seq, partition, offset, *expected));
        }
        *expected = offset + 1;
    }
    assert!(
        inverted.is_empty(),
        "{} records were acknowledged out of sending order (seq, partition, offset, expected): {:?}",
        inverted.len(),
        &inverted[..inverted.len().min(20)]
    );
    // Reading back: every partition holds its records in sending order.
    let consumer = broker.consumer(&[("fetch.max.bytes", "10000000")]);
    assign(
        &consumer,
        topic,
        &(0..PARTITIONS).collect::<Vec<_>>(),
        rdkafka::Offset::Beginning,
    );
    let recs = consume_exactly(&consumer, total, Duration::from_secs(120));
    let mut last_seq = vec![None::<usize>; PARTITIONS as usize];
    for r in &recs {
        let seq: usize = String::from_utf8_lossy(r.key.as_deref().expect("a key"))
            .parse()
            .expect("a sequence number key");
        let value = r.value.as_deref().expect("a value");
        assert_eq!(value.len(), VALUE_BYTES, "record {seq} changed size");
        assert_eq!(
            &value[..13],
            &self::value(seq)[..13],
            "record {seq} changed"
        );
        assert_eq!(
            r.offset as usize,
            seq / PARTITIONS as usize,
            "record {seq} at the wrong offset"
        );
        let last = &mut last_seq[r.partition as usize];
        assert!(
            last.is_none_or(|l| l < seq),
            "partition {} returns record {seq} after {last:?}",
            r.partition
        );
        *last = Some(seq);
    }
    broker.assert_alive();
}
