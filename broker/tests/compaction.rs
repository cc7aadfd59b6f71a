//! Log compaction (`cleanup.policy=compact`) against the real broker, with librdkafka (the
//! rdkafka crate and kcat) and the Java consumer as clients: a consumer reading a compacted topic from the
//! start gets the latest value of every key at the offset it was acknowledged with,
//! tombstones while `delete.retention.ms` keeps them and not after, the same after kill -9
//! and a restart; a record without a key is refused with INVALID_RECORD and the batch's
//! other partitions are unaffected.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::keyed::{latest, send, wait_compacted};
use common::txn::TxnPartition;
use common::{block_on, Broker, BrokerOptions};
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

const TOPIC: &str = "compacted";

fn broker(name: &str) -> Broker {
    broker_with(name, "")
}

fn broker_with(name: &str, config: &str) -> Broker {
    Broker::start_with(
        name,
        BrokerOptions {
            config_toml: Some(format!("log_cleaner_backoff_ms = 200\n{config}")),
            ..BrokerOptions::default()
        },
    )
}

/// The value of the metric line that starts with `prefix` (labels included) in a scrape of
/// the metrics endpoint at `port`.
fn metric(port: u16, prefix: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the scrape");
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Waits until the metrics at `port` count a finished cleaner pass. A reader can see the
/// compacted records while the pass still rewrites the last segments (each group of
/// segments is swapped in on its own); the pass's figures are counted when it ends.
fn wait_pass_counted(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while metric(port, "rill_log_cleaner_passes_total").unwrap_or(0.0) < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cleaner's pass did not end within 60 s of the records reading compacted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_of_every_key_at_its_offset() {
    let port = common::free_port();
    let mut broker = broker_with(
        "compaction-latest",
        &format!("metrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    broker.create_topic(
        TOPIC,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "16384"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    // First an idempotent producer's ten records, all superseded below: the cleaner keeps
    // its last batch as a header without records, which every reader below reads past.
    let idempotent = broker.producer("all", &[("enable.idempotence", "true")]);
    let first: Vec<(String, Option<String>)> = (0..10)
        .map(|i| (format!("key-{i}"), Some(format!("first-{i}"))))
        .collect();
    let offsets = send(&idempotent, TOPIC, &first);
    let mut sent: Vec<_> = first.into_iter().zip(offsets).collect();
    let producer = broker.producer("all", &[("linger.ms", "5"), ("batch.num.messages", "10")]);
    let mut batch = |recs: Vec<(String, Option<String>)>| {
        let offsets = send(&producer, TOPIC, &recs);
        sent.extend(recs.into_iter().zip(offsets));
    };
    // 3,000 values over 50 keys, then tombstones for five of them, then records of keys of
    // their own that push all of that out of the active segment (never compacted).
    batch(
        (0..3000)
            .map(|i| {
                (
                    format!("key-{}", i % 50),
                    Some(format!("value-{i}-{}", "x".repeat(150))),
                )
            })
            .collect(),
    );
    batch((0..5).map(|k| (format!("key-{k}"), None)).collect());
    batch(
        (0..40)
            .map(|i| (format!("filler-{i}"), Some("f".repeat(1000))))
            .collect(),
    );
    let expected = latest(&sent);
    assert_eq!(expected.len(), 90);
    wait_compacted(&broker, TOPIC, &expected, Duration::from_secs(60));
    // The cleaner's work shows in the metrics.
    wait_pass_counted(port);
    assert!(metric(port, "rill_log_cleaner_removed_records_total").unwrap_or(0.0) >= 2900.0);
    let last_clean = format!(
        "rill_partition_compaction_last_clean_timestamp_ms{{topic=\"{TOPIC}\",partition=\"0\"}}"
    );
    assert!(
        metric(port, &last_clean).unwrap_or(0.0) > 0.0,
        "{last_clean}"
    );
    let dirty =
        format!("rill_partition_compaction_dirty_ratio{{topic=\"{TOPIC}\",partition=\"0\"}}");
    assert!(
        metric(port, &dirty).is_some_and(|r| (0.0..=1.0).contains(&r)),
        "{dirty}"
    );

    // `rill topic describe` shows the dirty ratio and the last clean, from the leader.
    let describe = |args: &[&str]| {
        let out = common::run_bounded(
            std::process::Command::new(env!("CARGO_BIN_EXE_rill"))
                .args([
                    "topic",
                    "describe",
                    TOPIC,
                    "--bootstrap",
                    &broker.bootstrap(),
                ])
                .args(args),
            Duration::from_secs(30),
            None,
        );
        assert!(out.status.success(), "rill topic describe: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let d: serde_json::Value = serde_json::from_str(describe(&["--output", "json"]).trim())
        .expect("rill topic describe --output json");
    let p0 = &d["partitions"][0];
    assert!(
        p0["dirty_ratio"]
            .as_f64()
            .is_some_and(|r| (0.0..=1.0).contains(&r)),
        "{d}"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        p0["last_clean_ms"]
            .as_i64()
            .is_some_and(|t| t > now_ms - 120_000 && t <= now_ms),
        "{d}"
    );
    let table = describe(&[]);
    assert!(
        table.contains("DIRTY") && table.contains("LAST CLEAN") && table.contains("s ago"),
        "{table}"
    );

    // kcat (librdkafka 2.x of Debian's package) reads the same records at the same offsets.
    if common::tool_available(
        "kcat",
        std::process::Command::new("kcat").arg("-V"),
        "apt-get install -y kcat",
        "kcat reading a compacted topic",
    ) {
        let out = common::run_bounded(
            std::process::Command::new("kcat").args([
                "-b",
                &broker.bootstrap(),
                "-C",
                "-t",
                TOPIC,
                "-p",
                "0",
                "-o",
                "beginning",
                "-e",
                "-Z",
                "-f",
                "%o\t%k\t%s\n",
            ]),
            Duration::from_secs(60),
            None,
        );
        assert!(
            out.status.success(),
            "kcat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let want: Vec<String> = expected
            .iter()
            .map(|(o, (k, v))| format!("{o}\t{k}\t{}", v.as_deref().unwrap_or("NULL")))
            .collect();
        assert_eq!(read, want, "what kcat read of the compacted topic");
    }

    // The Java consumer (kafka-clients 4.4.0, the one Streams and Connect use) reads the
    // same records at the same offsets, tombstones as null values.
    if clients::java_available("the Java consumer reading a compacted topic") {
        let mut java = clients::java_proc("java kafka-clients");
        let count = expected.len().to_string();
        let bootstrap = broker.bootstrap();
        let out = java
            .run(
                &["consume", &bootstrap, TOPIC, "1", &count],
                clients::COMMAND_TIMEOUT,
            )
            .ok();
        let read: BTreeMap<i64, (String, Option<String>)> = out
            .records()
            .into_iter()
            .map(|((_, o), r)| (o, (r.key.expect("a key"), r.value)))
            .collect();
        assert_eq!(
            read,
            expected,
            "what the Java consumer read of the compacted topic\n{}",
            out.report()
        );
    }

    // A record without a key is refused, and nothing of it is stored.
    let keyless = block_on(
        producer
            .send_result(
                FutureRecord::<str, str>::to(TOPIC)
                    .payload("no key")
                    .partition(0),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue"),
    )
    .expect("delivery cancelled");
    match keyless {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord), _)) => {}
        other => panic!("a keyless record to a compacted topic: {other:?}"),
    }

    // Kill -9 and a restart: the compacted segments read the same.
    broker.kill9();
    broker.restart();
    wait_compacted(&broker, TOPIC, &expected, Duration::from_secs(30));

    // With delete.retention.ms=0 the tombstones go at the next pass (new records make
    // one due).
    let admin = broker.admin();
    // (AlterConfigs replaces the topic's whole config: every key is given again.)
    let alter = AlterConfig::new(ResourceSpecifier::Topic(TOPIC))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "16384")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("delete.retention.ms", "0");
    let r = block_on(admin.alter_configs(&[alter], &AdminOptions::new())).expect("alter configs");
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let producer = broker.producer("all", &[("linger.ms", "5"), ("batch.num.messages", "10")]);
    let more: Vec<(String, Option<String>)> = (0..40)
        .map(|i| (format!("filler-b-{i}"), Some("g".repeat(1000))))
        .collect();
    let offsets = send(&producer, TOPIC, &more);
    let mut expected: BTreeMap<i64, (String, Option<String>)> = expected
        .into_iter()
        .filter(|(_, (_, v))| v.is_some())
        .collect();
    expected.extend(offsets.into_iter().zip(more));
    wait_compacted(&broker, TOPIC, &expected, Duration::from_secs(60));
}

/// `log_cleaner_io_max_bytes_per_second` (Kafka's `log.cleaner.io.max.bytes.per.second`)
/// paces the cleaner: a pass over 1 MB at 200 kB/s takes seconds (unthrottled it takes
/// milliseconds), and the result is the same compacted log.
#[test]
fn the_cleaner_keeps_to_its_io_budget() {
    const RATE: f64 = 200_000.0;
    let port = common::free_port();
    let broker = broker_with(
        "compaction-io-budget",
        &format!(
            "metrics_listen = \"127.0.0.1:{port}\"\nlog_cleaner_io_max_bytes_per_second = {}\n",
            RATE as u64
        ),
    );
    // min.compaction.lag.ms holds the cleaner off until all of it is written, so one
    // pass (or two) does the work and the budget's one second of credit counts little.
    broker.create_topic(
        TOPIC,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "16384"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "3000"),
        ],
    );
    // Small batches, so that segments close often and the active one (never compacted)
    // holds only the fillers' keys.
    let producer = broker.producer("all", &[("linger.ms", "5"), ("batch.num.messages", "10")]);
    let recs: Vec<(String, Option<String>)> = (0..1000)
        .map(|i| {
            (
                format!("key-{}", i % 20),
                Some(format!("{i:05}{}", "v".repeat(1000))),
            )
        })
        .chain((0..40).map(|i| (format!("filler-{i}"), Some("f".repeat(1000)))))
        .collect();
    let offsets = send(&producer, TOPIC, &recs);
    let sent: Vec<_> = recs.into_iter().zip(offsets).collect();
    let expected = latest(&sent);
    wait_compacted(&broker, TOPIC, &expected, Duration::from_secs(90));
    wait_pass_counted(port);

    let io = metric(port, "rill_log_cleaner_read_bytes_total").unwrap_or(0.0)
        + metric(port, "rill_log_cleaner_written_bytes_total").unwrap_or(0.0);
    let secs = metric(port, "rill_log_cleaner_seconds_total").unwrap_or(0.0);
    let passes = metric(port, "rill_log_cleaner_passes_total").unwrap_or(0.0);
    // Each pass may start with up to one second of unused budget.
    let least = io / RATE - passes;
    assert!(
        least >= 2.0,
        "the cleaner did {io} bytes of I/O in {passes} passes: too little to see its budget"
    );
    assert!(
        secs >= least - 0.05,
        "the cleaner did {io} bytes of I/O in {passes} passes and {secs:.3} s: over its budget of {RATE} bytes/s"
    );
}

#[test]
fn keyless_records_are_refused_with_their_indexes_and_the_other_partition_is_served() {
    use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
    use rill_net::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use rill_net::kafka_protocol::messages::ProduceRequest;
    use rill_net::kafka_protocol::records::Compression;

    let broker = broker("compaction-keyless");
    broker.create_topic(TOPIC, 2, &[("cleanup.policy", "compact,delete")]);
    let record = |key: Option<&str>| ProduceRecord {
        key: key.map(|k| bytes::Bytes::copy_from_slice(k.as_bytes())),
        value: Some(bytes::Bytes::from_static(b"value")),
        timestamp_ms: common::now_ms(),
        ..Default::default()
    };
    // Partition 0: an lz4 batch whose second and fourth records have no key; partition 1:
    // keyed records, in the same request.
    let lz4 = BatchOptions {
        compression: Compression::Lz4,
        ..BatchOptions::default()
    };
    let mixed = encode_record_batch(
        &[
            record(Some("a")),
            record(None),
            record(Some("b")),
            record(None),
        ],
        &lz4,
    )
    .expect("encode");
    let keyed = encode_record_batch(
        &[record(Some("c")), record(Some("d"))],
        &BatchOptions::default(),
    )
    .expect("encode");
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(common::topic_name(TOPIC))
            .with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(mixed)),
                PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(keyed)),
            ])]);
    let response = broker.net().send(&request);
    let parts = &response.responses[0].partition_responses;
    let p0 = parts.iter().find(|p| p.index == 0).expect("partition 0");
    let p1 = parts.iter().find(|p| p.index == 1).expect("partition 1");
    assert_eq!(p0.error_code, 87, "INVALID_RECORD: {p0:?}");
    assert_eq!(
        p0.record_errors
            .iter()
            .map(|e| e.batch_index)
            .collect::<Vec<_>>(),
        vec![1, 3],
        "{p0:?}"
    );
    assert!(p0
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("without key")));
    assert_eq!((p1.error_code, p1.base_offset), (0, 0), "{p1:?}");
    assert_eq!(
        broker.watermarks(TOPIC, 0),
        (0, 0),
        "nothing of the refused batch is stored"
    );
    assert_eq!(broker.watermarks(TOPIC, 1), (0, 2));
}

#[test]
fn the_cleaner_drops_aborted_transactions_and_their_markers() {
    use rdkafka::producer::Producer;

    let port = common::free_port();
    let broker = broker_with(
        "compaction-transactions",
        &format!("metrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    broker.create_topic(
        TOPIC,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "16384"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
        ],
    );
    let producer = broker.producer(
        "all",
        &[("transactional.id", "compaction-txn"), ("linger.ms", "5")],
    );
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("InitProducerId with a transactional.id");
    let mut sent = Vec::new();
    // A committed transaction of 50 keys, an aborted one over the same keys, then records
    // of keys of their own that push both out of the active segment.
    for (commit, label) in [(true, "committed"), (false, "aborted")] {
        producer.begin_transaction().expect("begin");
        let recs: Vec<(String, Option<String>)> = (0..50)
            .map(|k| {
                (
                    format!("key-{k}"),
                    Some(format!("{label}-{k}-{}", "x".repeat(200))),
                )
            })
            .collect();
        let offsets = send(&producer, TOPIC, &recs);
        if commit {
            producer
                .commit_transaction(Duration::from_secs(30))
                .expect("commit");
            sent.extend(recs.into_iter().zip(offsets));
        } else {
            producer
                .abort_transaction(Duration::from_secs(30))
                .expect("abort");
        }
    }
    producer.begin_transaction().expect("begin");
    let fillers: Vec<(String, Option<String>)> = (0..40)
        .map(|i| (format!("filler-{i}"), Some("f".repeat(1000))))
        .collect();
    let offsets = send(&producer, TOPIC, &fillers);
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    sent.extend(fillers.into_iter().zip(offsets));
    // Until the cleaner runs, a read_uncommitted reader sees the aborted values; once it
    // has, nobody does (the aborted records are gone from the log).
    let mut raw = TxnPartition::new(broker.net(), TOPIC);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = raw.fetch_all(0);
        if !seen.values.iter().any(|v| v.starts_with("aborted-")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "aborted records still in the log after 60 s: {} values",
            seen.values.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The aborted records never hid the committed values of their keys: a read_committed
    // consumer (librdkafka's default) reads the latest committed record of every key.
    let expected = latest(&sent);
    wait_compacted(&broker, TOPIC, &expected, Duration::from_secs(60));
    // The ABORT marker stays while its transaction's records are there; with them gone and
    // delete.retention.ms at 0, the next pass (more segments to clean) removes it and its
    // index entry, so read_committed fetches stop reporting the aborted transaction. (The
    // storage tests show each pass's step; here the passes race the writes.)
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    loop {
        producer.begin_transaction().expect("begin");
        let more: Vec<(String, Option<String>)> = (0..20)
            .map(|i| (format!("more-{round}-{i}"), Some("m".repeat(1000))))
            .collect();
        let offsets = send(&producer, TOPIC, &more);
        producer
            .commit_transaction(Duration::from_secs(30))
            .expect("commit");
        sent.extend(more.into_iter().zip(offsets));
        round += 1;
        let seen = raw.fetch_all(1);
        if seen.aborted.as_deref() == Some(&[]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ABORT marker of a transaction with no record left was not removed within 60 s: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_compacted(&broker, TOPIC, &latest(&sent), Duration::from_secs(60));
    assert!(metric(port, "rill_log_cleaner_removed_markers_total").unwrap_or(0.0) >= 1.0);
}
