//! The Prometheus endpoint of the real broker, scraped while records flow and parsed with a
//! Prometheus text-format parser: request counters, per-topic bytes and records, partition
//! offsets and sync latency move as a producer and a consumer work; refused requests show
//! up by error code.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use prometheus_parse::{Scrape, Value};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

fn scrape(port: u16) -> Scrape {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(OP_TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the scrape");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text")
}

fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
        .collect();
    matching.iter().sum()
}

#[test]
fn metrics_move_as_records_flow() {
    let port = free_port();
    let broker = Broker::start_with(
        "metrics",
        BrokerOptions::with_config(&format!("metrics_listen = \"127.0.0.1:{port}\"\n")),
    );
    broker.create_topic("metered", 2, &[("max.message.bytes", "100000")]);
    let before = scrape(port);
    assert_eq!(
        value(
            &before,
            "rill_topic_records_in_total",
            &[("topic", "metered")]
        ),
        0.0
    );
    let metered_partitions = before
        .samples
        .iter()
        .filter(|s| {
            s.metric == "rill_partition_log_end_offset" && s.labels.get("topic") == Some("metered")
        })
        .count();
    assert_eq!(metered_partitions, 2);
    assert!(value(&before, "rill_shard_partitions", &[]) >= 2.0);

    let producer = broker.producer("all", &[("linger.ms", "5")]);
    let mut futures = Vec::new();
    for i in 0..500 {
        let key = format!("k{i}");
        futures.push(
            producer
                .send_result(
                    FutureRecord::to("metered")
                        .key(&key)
                        .payload("0123456789")
                        .partition(i % 2),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e}")),
        );
    }
    for f in futures {
        block_on(f)
            .expect("delivery")
            .unwrap_or_else(|(e, _)| panic!("delivery: {e}"));
    }
    let big = vec![b'x'; 200_000];
    let refused = block_on(
        producer.send(
            FutureRecord::<str, _>::to("metered")
                .payload(&big)
                .partition(0),
            OP_TIMEOUT,
        ),
    );
    assert!(
        refused.is_err(),
        "a 200 kB record passed max.message.bytes=100000"
    );
    let consumer = broker.consumer(&[]);
    assign(&consumer, "metered", &[0, 1], Offset::Beginning);
    consume_exactly(&consumer, 500, Duration::from_secs(30));

    // A group that committed offset 100 of partition 0 lags 150 records behind.
    {
        use rdkafka::consumer::{CommitMode, Consumer};
        let group = broker.consumer(&[("group.id", "lagged"), ("enable.auto.commit", "false")]);
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("metered", 0, Offset::Offset(100))
            .unwrap();
        group
            .commit(&tpl, CommitMode::Sync)
            .expect("commit for group lagged");
    }

    let after = scrape(port);
    assert_eq!(
        value(
            &after,
            "rill_consumer_group_lag",
            &[
                ("group", "lagged"),
                ("topic", "metered"),
                ("partition", "0")
            ]
        ),
        150.0
    );
    assert_eq!(
        value(
            &after,
            "rill_consumer_group_committed_offset",
            &[("group", "lagged"), ("partition", "0")]
        ),
        100.0
    );
    assert_eq!(
        value(
            &after,
            "rill_topic_records_in_total",
            &[("topic", "metered")]
        ),
        500.0
    );
    let bytes_in = value(&after, "rill_topic_bytes_in_total", &[("topic", "metered")]);
    assert!(bytes_in > 500.0 * 10.0, "bytes in {bytes_in}");
    let bytes_out = value(
        &after,
        "rill_topic_bytes_out_total",
        &[("topic", "metered")],
    );
    assert!(
        bytes_out >= bytes_in,
        "fetched {bytes_out} of {bytes_in} produced bytes"
    );
    for p in ["0", "1"] {
        assert_eq!(
            value(
                &after,
                "rill_partition_log_end_offset",
                &[("topic", "metered"), ("partition", p)]
            ),
            250.0,
            "partition {p}"
        );
    }
    assert!(value(&after, "rill_partition_size_bytes", &[("topic", "metered")]) > 0.0);
    let produces = value(&after, "rill_requests_total", &[("api", "Produce")]);
    assert!(produces >= 1.0, "{produces} produce requests");
    assert_eq!(
        value(
            &after,
            "rill_request_duration_seconds",
            &[("api", "Produce")]
        ),
        produces,
        "the latency histogram counts every produce request"
    );
    assert!(value(&after, "rill_requests_total", &[("api", "Fetch")]) >= 1.0);
    assert!(
        value(
            &after,
            "rill_request_errors_total",
            &[("api", "Produce"), ("code", "MESSAGE_TOO_LARGE")]
        ) >= 1.0,
        "the refused record is counted by its error code"
    );
    assert!(
        value(&after, "rill_log_sync_duration_seconds", &[]) >= 1.0,
        "acks=all syncs are timed"
    );
    assert!(
        value(&after, "rill_log_read_duration_seconds", &[]) >= 1.0,
        "fetch reads are timed"
    );
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric == "rill_shard_cross_shard_inflight"));
    assert!(value(&after, "rill_shard_busy_seconds_total", &[]) > 0.0);
    assert!(value(&after, "rill_process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&after, "rill_host_memory_total_bytes", &[]) > 0.0);
}
