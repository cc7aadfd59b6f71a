//! Bad client input: raw sockets sending garbage, a negative or 2 GB length prefix, an
//! unknown api key, a frame cut short, or a complete frame holding a truncated request each
//! get their connection closed, while an rdkafka producer and consumer on their own
//! connections keep working between every case. Then the per-record refusals: a batch over
//! the topic's max.message.bytes gets MESSAGE_TOO_LARGE, an unknown topic with auto-create
//! off gets UNKNOWN_TOPIC_OR_PARTITION, and a batch whose CRC was flipped gets
//! CORRUPT_MESSAGE, and batches only a broker may write (no records, control, an offset
//! range that does not match the count, a producer without a sequence) get INVALID_RECORD,
//! with nothing appended in any case.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::raw::{assert_closed, frame, header, send_raw};
use common::{assign, block_on, topic_name, Broker, BrokerOptions, Rec};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;
use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use rill_net::kafka_protocol::messages::MetadataRequest;

const TOPIC: &str = "bad-input";
/// The healthy clients: each call produces one record and waits until the consumer sees it.
struct Healthy {
    producer: FutureProducer,
    consumer: BaseConsumer,
    next: i64,
}

impl Healthy {
    fn new(broker: &Broker) -> Healthy {
        let producer = broker.producer("all", &[]);
        let consumer = broker.consumer(&[]);
        assign(&consumer, TOPIC, &[0], Offset::Beginning);
        Healthy {
            producer,
            consumer,
            next: 0,
        }
    }

    fn check(&mut self, after: &str) {
        let value = format!("healthy-{}", self.next);
        let r = FutureRecord::<(), _>::to(TOPIC)
            .payload(&value)
            .partition(0);
        let d = block_on(
            self.producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("delivery cancelled")
        .unwrap_or_else(|(e, _)| panic!("after {after}: the healthy producer failed: {e}"));
        assert_eq!(
            d.offset, self.next,
            "after {after}: offset of the healthy record"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                Instant::now() < deadline,
                "after {after}: the healthy consumer did not get {value}"
            );
            if let Some(m) = self.consumer.poll(Duration::from_millis(100)) {
                let r =
                    Rec::from_message(&m.unwrap_or_else(|e| {
                        panic!("after {after}: the healthy consumer failed: {e}")
                    }));
                assert_eq!(r.offset, self.next, "after {after}: healthy consumer order");
                assert_eq!(r.value.as_deref(), Some(value.as_bytes()));
                break;
            }
        }
        self.next += 1;
    }
}

#[test]
fn broken_connections_are_closed_and_everyone_else_is_served() {
    let mut broker = Broker::start("bad-frames");
    broker.create_topic(TOPIC, 1, &[]);
    let mut healthy = Healthy::new(&broker);
    healthy.check("start");

    let mut noise = vec![0u8; 252];
    let mut rng = fastrand::Rng::with_seed(7);
    rng.fill(&mut noise);
    // A complete frame of noise (whatever api key and version its first bytes name).
    let garbage = frame(&noise);
    // A Produce v9 header followed by noise.
    let mut produce_garbage = noise[..60].to_vec();
    produce_garbage[..4].copy_from_slice(&[0, 0, 0, 9]);
    let produce_garbage = frame(&produce_garbage);
    // A complete frame holding a Metadata v1 request cut in the middle of a topic name.
    let mut truncated_body = header(3, 1);
    truncated_body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    truncated_body.extend_from_slice(&20i16.to_be_bytes()); // a 20-byte name...
    truncated_body.extend_from_slice(b"bad-in"); // ...of which 6 bytes arrive
                                                 // Unknown api key 9999, otherwise well formed.
    let unknown_api = frame(&header(9999, 0));

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("a frame of random bytes", garbage, false),
        (
            "a Produce header followed by random bytes",
            produce_garbage,
            false,
        ),
        (
            "a negative length prefix",
            (-2i32).to_be_bytes().to_vec(),
            false,
        ),
        (
            "a length prefix of -1",
            (-1i32).to_be_bytes().to_vec(),
            false,
        ),
        (
            "a 2 GB length prefix",
            i32::MAX.to_be_bytes().to_vec(),
            false,
        ),
        ("an unknown api key", unknown_api, false),
        (
            "a frame holding a truncated request",
            frame(&truncated_body),
            false,
        ),
        (
            "a frame cut short, then end of stream",
            {
                let mut f = 100i32.to_be_bytes().to_vec();
                f.extend_from_slice(&header(18, 0));
                f
            },
            true,
        ),
    ];
    // All at once first (the broker must not serialize on a stuck connection)...
    let open: Vec<_> = cases
        .iter()
        .map(|(what, bytes, half)| (what, send_raw(&broker, bytes, *half)))
        .collect();
    healthy.check("opening every bad connection at once");
    for (what, s) in open {
        assert_closed(s, what);
    }
    broker.assert_alive();
    // ...then one by one with the healthy clients checked after each.
    for (what, bytes, half) in &cases {
        assert_closed(send_raw(&broker, bytes, *half), what);
        healthy.check(what);
        broker.assert_alive();
    }
    // A connection that sent garbage after a good request: the good answer comes back
    // first, then the connection closes.
    let mut net = broker.net();
    let md = net.send(&MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC))),
    ])));
    assert_eq!(md.topics.len(), 1);
    let stream = &mut net.conn.get_mut().0;
    let _ = stream.write_all(&(-5i32).to_be_bytes());
    assert_closed(
        stream.try_clone().expect("clone socket"),
        "garbage after a good request",
    );
    healthy.check("garbage after a good request");
    broker.assert_alive();
}

#[test]
fn oversized_batch_gets_message_too_large() {
    let mut broker = Broker::start("bad-too-large");
    broker.create_topic(TOPIC, 1, &[("max.message.bytes", "2000")]);
    // The client's own limit is far above the topic's: only the broker can refuse.
    let producer = broker.producer("all", &[("message.max.bytes", "1000000")]);
    let big = vec![b'x'; 8000];
    let r = FutureRecord::<(), _>::to(TOPIC).payload(&big).partition(0);
    let result = block_on(
        producer
            .send_result(r)
            .map_err(|(e, _)| e)
            .expect("enqueue"),
    )
    .expect("delivery cancelled");
    match result {
        Ok(d) => panic!("an 8000-byte record was accepted by a 2000-byte topic: {d:?}"),
        Err((e, _)) => assert_eq!(
            common::error_code(&e),
            Some(RDKafkaErrorCode::MessageSizeTooLarge),
            "delivery error for an oversized batch: {e}"
        ),
    }
    assert_eq!(broker.watermarks(TOPIC, 0), (0, 0), "nothing appended");
    // A record that fits still goes through, at offset 0.
    let r = FutureRecord::<(), _>::to(TOPIC)
        .payload("small")
        .partition(0);
    let d = block_on(
        producer
            .send_result(r)
            .map_err(|(e, _)| e)
            .expect("enqueue"),
    )
    .expect("delivery cancelled")
    .unwrap_or_else(|(e, _)| panic!("small record: {e}"));
    assert_eq!(d.offset, 0);
    broker.assert_alive();
}

#[test]
fn unknown_topic_with_auto_create_off_gets_unknown_topic_or_partition() {
    let mut broker = Broker::start_with(
        "bad-unknown-topic",
        BrokerOptions::with_config("auto_create_topics = false\n"),
    );
    let producer = broker.producer("all", &[("topic.metadata.propagation.max.ms", "1000")]);
    let r = FutureRecord::<(), _>::to("never-created").payload("x");
    let result = block_on(
        producer
            .send_result(r)
            .map_err(|(e, _)| e)
            .expect("enqueue"),
    )
    .expect("delivery cancelled");
    match result {
        Ok(d) => panic!("produce to an unknown topic succeeded: {d:?}"),
        Err((e, _)) => {
            // librdkafka reports the broker's UNKNOWN_TOPIC_OR_PARTITION from Metadata as its
            // local "unknown topic" code.
            let code = common::error_code(&e);
            assert!(
                matches!(
                    code,
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                        | Some(RDKafkaErrorCode::UnknownTopic)
                ),
                "delivery error for an unknown topic: {e}"
            );
        }
    }

    // On the wire: Metadata asking to auto-create is told the topic is unknown, and a raw
    // Produce gets UNKNOWN_TOPIC_OR_PARTITION for the partition.
    let mut net = broker.net();
    let md = net.send(
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name("never-created")))
            ])),
    );
    assert_eq!(md.topics.len(), 1, "{md:?}");
    assert_eq!(md.topics[0].error_code, 3, "Metadata for an unknown topic");
    let (code, _) = net.produce_values("never-created", 0, &[b"x"]);
    assert_eq!(
        code, 3,
        "raw Produce to an unknown topic: UNKNOWN_TOPIC_OR_PARTITION"
    );
    // And it was not created as a side effect.
    let md = net.send(&MetadataRequest::default().with_topics(None));
    assert!(
        md.topics
            .iter()
            .all(|t| t.name.as_ref().map(|n| n.0.as_str()) != Some("never-created")),
        "the unknown topic was created although auto_create_topics = false"
    );
    // Partition out of range of an existing topic.
    broker.create_topic(TOPIC, 1, &[]);
    let (code, _) = net.produce_values(TOPIC, 5, &[b"x"]);
    assert_eq!(code, 3, "raw Produce to partition 5 of a 1-partition topic");
    broker.assert_alive();
}

/// An intact batch of three keyed records.
fn three_records() -> bytes::Bytes {
    let records: Vec<ProduceRecord> = (0..3)
        .map(|i| ProduceRecord {
            key: Some(format!("k{i}").into()),
            value: Some(format!("v{i}").into()),
            timestamp_ms: common::now_ms(),
            ..Default::default()
        })
        .collect();
    encode_record_batch(&records, &BatchOptions::default()).expect("encode")
}

#[test]
fn flipped_crc_gets_corrupt_message() {
    let mut broker = Broker::start("bad-crc");
    broker.create_topic(TOPIC, 2, &[]);
    let mut net = broker.net();
    let good = three_records();
    for p in 0..2 {
        // The CRC field (bytes 17..21) with one bit flipped.
        let mut bad = good.to_vec();
        bad[17] ^= 0x01;
        let (code, _) = net.produce_batch(TOPIC, p, 1, bad.into());
        assert_eq!(code, 2, "partition {p}: flipped CRC field: CORRUPT_MESSAGE");
        // A flipped bit in the records (covered by the CRC).
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        let (code, _) = net.produce_batch(TOPIC, p, -1, bad.into());
        assert_eq!(
            code, 2,
            "partition {p}: flipped payload bit: CORRUPT_MESSAGE"
        );
        assert_eq!(
            broker.watermarks(TOPIC, p),
            (0, 0),
            "partition {p}: nothing appended"
        );
        // The connection is still usable and the intact batch is accepted.
        let (code, base) = net.produce_batch(TOPIC, p, -1, good.clone());
        assert_eq!((code, base), (0, 0), "partition {p}: intact batch");
        assert_eq!(broker.watermarks(TOPIC, p), (0, 3));
    }
    broker.assert_alive();
}

/// `batch` with `edit` applied to its bytes and its CRC-32C recomputed, so only the edit
/// is wrong.
fn edited(batch: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = batch.to_vec();
    edit(&mut b);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Batches that are valid in a log but not from a client, as Kafka's LogValidator checks
/// them: one without records (the cleaner leaves such headers, a client may not send
/// them), a control batch (only brokers write transaction markers), an offset range that
/// does not match the record count, and a producer id without a sequence. Each gets
/// INVALID_RECORD with nothing appended, and the connection goes on.
#[test]
fn batches_only_a_broker_writes_get_invalid_record() {
    let mut broker = Broker::start("bad-client-batches");
    broker.create_topic(TOPIC, 1, &[]);
    let mut net = broker.net();
    let good = three_records();
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "a header without records",
            edited(&good[..61], |b| {
                b[57..61].copy_from_slice(&0i32.to_be_bytes())
            }),
        ),
        ("a control batch", edited(&good, |b| b[22] |= 0x20)),
        (
            "last offset delta 5 for 3 records",
            edited(&good, |b| b[23..27].copy_from_slice(&5i32.to_be_bytes())),
        ),
        (
            "producer 7 without a sequence",
            edited(&good, |b| {
                b[43..51].copy_from_slice(&7i64.to_be_bytes());
                b[51..53].copy_from_slice(&0i16.to_be_bytes());
                b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
            }),
        ),
    ];
    for (what, bad) in cases {
        let (code, _) = net.produce_batch(TOPIC, 0, -1, bad.into());
        assert_eq!(code, 87, "{what}: INVALID_RECORD");
        assert_eq!(
            broker.watermarks(TOPIC, 0),
            (0, 0),
            "{what}: nothing appended"
        );
    }
    let (code, base) = net.produce_batch(TOPIC, 0, -1, good.clone());
    assert_eq!((code, base), (0, 0), "the intact batch");
    assert_eq!(broker.watermarks(TOPIC, 0), (0, 3));
    broker.assert_alive();
}
