//! Tailing consumers: a consumer assigned at the end of the log gets nothing until a record
//! is produced, then gets it; a raw Fetch with a long `max_wait_ms` parked on an empty
//! partition is answered with the record produced while it waits (not with an empty answer);
//! a fetch whose last fetched epoch diverges from the leader's log is answered at once, not
//! after its long poll. No timing assertions beyond generous overall bounds.

mod common;

use std::time::{Duration, Instant};

use common::{assign, block_on, fetched_partitions, topic_name, Broker, NetClient, Rec};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use rill_net::client::decode_record_batches;
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::FetchRequest;

const TOPIC: &str = "long-poll";

/// A sessionless Fetch of one partition from `offset`, waiting up to `max_wait_ms` for at
/// least one byte; `last_fetched_epoch` -1 names none.
fn one_partition_fetch(
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    last_fetched_epoch: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(last_fetched_epoch)
                .with_partition_max_bytes(1 << 20)])])
}

#[test]
fn consumer_at_the_end_receives_a_later_record() {
    let mut broker = Broker::start("long-poll");
    broker.create_topic(TOPIC, 2, &[]);
    let producer = broker.producer("1", &[]);
    // Something older than the assignment, which the consumer must not see.
    for p in 0..2 {
        let r = FutureRecord::to(TOPIC)
            .key("old")
            .payload("old")
            .partition(p);
        let d = block_on(
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("delivery cancelled");
        assert!(d.is_ok(), "old record to partition {p}: {d:?}");
    }

    let consumer = broker.consumer(&[("fetch.wait.max.ms", "5000")]);
    assign(&consumer, TOPIC, &[0, 1], Offset::End);
    // Poll for a while: nothing may arrive, and the consumer must have settled at the end.
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            panic!(
                "record arrived before any was produced: {:?}",
                m.map(|m| Rec::from_message(&m))
            );
        }
    }

    for p in [1, 0] {
        let value = format!("new-{p}");
        let r = FutureRecord::to(TOPIC)
            .key("new")
            .payload(&value)
            .partition(p);
        let d = block_on(
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("delivery cancelled")
        .unwrap_or_else(|(e, _)| panic!("new record to partition {p}: {e}"));
        assert_eq!(d.offset, 1, "second record of partition {p}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let got = loop {
            assert!(
                Instant::now() < deadline,
                "the record produced to partition {p} never reached the tailing consumer"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                break Rec::from_message(&m.expect("consumer error"));
            }
        };
        assert_eq!(
            (got.partition, got.offset, got.value.as_deref()),
            (p, 1, Some(value.as_bytes())),
            "tailing consumer got the wrong record"
        );
    }
    consumer.unassign().expect("unassign");
    broker.assert_alive();
}

#[test]
fn parked_fetch_is_answered_with_data_produced_while_it_waits() {
    let mut broker = Broker::start("long-poll-raw");
    broker.create_topic(TOPIC, 2, &[]);

    for p in [0, 1] {
        // The fetch parks on the empty partition: up to 20 s, at least 1 byte.
        let addr = broker.addr();
        let waiter = std::thread::spawn(move || {
            let mut net = NetClient::connect(addr);
            let request = one_partition_fetch(p, 0, 20_000, -1);
            let started = Instant::now();
            let response = net.send(&request);
            (response, started.elapsed())
        });
        // Give the request time to reach the broker and park (if it arrives after the
        // produce the test still passes, only less sharply).
        std::thread::sleep(Duration::from_millis(500));
        let mut net = broker.net();
        let (code, base) = net.produce_values(TOPIC, p, &[b"wake up"]);
        assert_eq!((code, base), (0, 0), "produce to partition {p}");

        let (response, waited) = waiter.join().expect("fetch thread panicked");
        assert_eq!(response.error_code, 0, "parked fetch: top-level error");
        let parts = fetched_partitions(&response);
        assert_eq!(parts.len(), 1, "parked fetch answered {parts:?}");
        assert_eq!(parts[0].error_code, 0, "parked fetch: partition error");
        let records = decode_record_batches(&parts[0].records).expect("decode fetched batches");
        assert_eq!(
            records.len(),
            1,
            "the parked fetch (answered after {waited:?}) should carry the record produced \
             while it waited; a fetch with min_bytes=1 must not answer empty before max_wait_ms"
        );
        assert_eq!(records[0].offset, 0);
        assert_eq!(records[0].value.as_deref(), Some(&b"wake up"[..]));
        assert_eq!(parts[0].high_watermark, 1);
    }
    broker.assert_alive();
}

#[test]
fn fetch_with_nothing_to_return_answers_after_max_wait() {
    let mut broker = Broker::start("long-poll-timeout");
    broker.create_topic(TOPIC, 1, &[]);
    let mut net = broker.net();
    let request = one_partition_fetch(0, 0, 300, -1);
    // Answered (the client's socket timeout of 30 s bounds this), empty, no error.
    let response = net.send(&request);
    assert_eq!(response.error_code, 0);
    let parts = fetched_partitions(&response);
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(parts[0].error_code, 0);
    assert!(
        parts[0].records.is_empty(),
        "records from an empty partition"
    );
    assert_eq!(parts[0].high_watermark, 0);
    broker.assert_alive();
}

#[test]
fn a_diverging_fetch_is_answered_at_once_not_after_its_long_poll() {
    // A fetcher whose log holds more of an epoch than the leader's does (a deposed leader
    // with records it took while cut off, following the new leader) must learn where the
    // logs diverge now, as
    // Kafka answers it: it cannot make progress until it has cut its log back. It asks for
    // at least a byte and would wait 20 s for one.
    let mut broker = Broker::start("long-poll-diverging");
    broker.create_topic(TOPIC, 1, &[]);
    let mut net = broker.net();
    let values: Vec<&[u8]> = vec![b"a"; 10];
    let (code, base) = net.produce_values(TOPIC, 0, &values);
    assert_eq!((code, base), (0, 0), "produce");
    let request = one_partition_fetch(0, 15, 20_000, 0);
    let started = Instant::now();
    // v12: the first version with the last fetched epoch, and the last naming topics.
    let response = net.send_at(12, &request);
    let waited = started.elapsed();
    assert_eq!(response.error_code, 0, "{response:?}");
    let parts: Vec<_> = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    let p = parts[0];
    assert_eq!(p.error_code, 0, "{p:?}");
    // The leader's epoch 0 ends at 10, the fetcher's goes on to 15: they diverge at 10.
    assert_eq!(
        (p.diverging_epoch.epoch, p.diverging_epoch.end_offset),
        (0, 10),
        "{p:?}"
    );
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()), "{p:?}");
    assert!(
        waited < Duration::from_secs(10),
        "the diverging answer waited {waited:?}, as if for data (max_wait_ms 20 s)"
    );
    broker.assert_alive();
}
