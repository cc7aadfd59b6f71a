//! Kafka's own command-line tools (the `kafka-tools` 4.4.0 jar from Maven Central) against the
//! real broker, with `--bootstrap-server`, doing the tasks Kafka's documentation shows:
//! kafka-topics, the console producer and consumer, kafka-configs, kafka-consumer-groups,
//! kafka-get-offsets, kafka-delete-records and the perf tests (the admin tools,
//! kafka-reassign-partitions, kafka-log-dirs, kafka-leader-election, kafka-transactions,
//! kafka-features, are in `client_kafka_tools_admin.rs`). Each tool's main class runs in
//! one JVM per test (`tests/clients/java/.../Runner.java`, as `kafka-topics.sh` would run
//! it, with Kafka's Exit hook turned into a return code); what it did is checked through
//! rdkafka and the raw protocol client, not only through what it printed.
//!
//! Without the Java programs built (`.ci/run` builds them) the tests fail under CI and
//! otherwise pass with a loud notice.

#[path = "common/clients.rs"]
mod clients;
mod common;
#[path = "common/kafka_tools.rs"]
mod kafka_tools;

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use clients::*;
use common::groups::{committed_offsets, group_options, list_groups, produce_spread};
use common::{batch_codecs, read_all, Broker};
use kafka_tools::{text, tool, tools};

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
const GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
const GET_OFFSETS: &str = "org.apache.kafka.tools.GetOffsetShell";
const DELETE_RECORDS: &str = "org.apache.kafka.tools.DeleteRecordsCommand";
const PRODUCER_PERF: &str = "org.apache.kafka.tools.ProducerPerformance";
const CONSUMER_PERF: &str = "org.apache.kafka.tools.ConsumerPerformance";

#[test]
fn kafka_topics_create_list_describe_alter_delete() {
    let Some(mut c) = tools("kafka-topics") else {
        return;
    };
    let broker = Broker::start("tools-topics");
    let b = broker.bootstrap();
    let t = "tools-topic";
    let out = tool(
        &mut c,
        TOPICS,
        &[
            "--bootstrap-server",
            &b,
            "--create",
            "--topic",
            t,
            "--partitions",
            "2",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert!(
        text(&out).contains(&format!("Created topic {t}.")),
        "{}",
        out.report()
    );
    broker.wait_for_topic(t, 2);

    let out = tool(&mut c, TOPICS, &["--bootstrap-server", &b, "--list"]);
    assert!(out.stdout.iter().any(|l| l == t), "{}", out.report());

    let node = node_id(&broker);
    let out = tool(
        &mut c,
        TOPICS,
        &["--bootstrap-server", &b, "--describe", "--topic", t],
    );
    let s = text(&out);
    assert!(
        s.contains("PartitionCount: 2") && s.contains("retention.ms=3600000"),
        "{}",
        out.report()
    );
    for p in 0..2 {
        let want = format!("Partition: {p}\tLeader: {node}\tReplicas: {node}\tIsr: {node}");
        assert!(s.contains(&want), "no `{want}`\n{}", out.report());
    }

    tool(
        &mut c,
        TOPICS,
        &[
            "--bootstrap-server",
            &b,
            "--alter",
            "--topic",
            t,
            "--partitions",
            "4",
        ],
    );
    broker.wait_for_topic(t, 4);

    tool(
        &mut c,
        TOPICS,
        &["--bootstrap-server", &b, "--delete", "--topic", t],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = tool(&mut c, TOPICS, &["--bootstrap-server", &b, "--list"]);
        if !out.stdout.iter().any(|l| l == t) {
            break;
        }
        assert!(Instant::now() < deadline, "{t} still listed after --delete");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn console_producer_and_consumer_keys_headers_codecs_groups() {
    let Some(mut c) = tools("kafka-console-producer and kafka-console-consumer") else {
        return;
    };
    let broker = Broker::start_with("tools-console", group_options(""));
    let b = broker.bootstrap();
    let n = 10;
    for (codec, bits) in CODECS {
        let t = format!("console-{codec}");
        broker.create_topic(&t, 1, &[]);
        // Headers, then a tab, then key|value (parse.headers, parse.key, key.separator).
        let input: String = (0..n)
            .map(|i| format!("seq:{i},codec:{codec}\t{codec}-k-{i}|{codec}-v-{i}\n"))
            .collect();
        let file = broker.root().join(format!("console-{codec}.txt"));
        fs::write(&file, input).expect("write the console producer's input");
        let stdin = format!("@stdin={}", file.display());
        let out = tool(
            &mut c,
            CONSOLE_PRODUCER,
            &[
                &stdin,
                "--bootstrap-server",
                &b,
                "--topic",
                &t,
                "--compression-codec",
                codec,
                "--reader-property",
                "parse.key=true",
                "--reader-property",
                "key.separator=|",
                "--reader-property",
                "parse.headers=true",
                "--command-property",
                "acks=all",
            ],
        );
        // The stored batches carry the codec, and rdkafka reads the records back.
        let fetched = broker.net().fetch_once(&t, 0, 0);
        let codecs = batch_codecs(&fetched.records);
        assert!(
            !codecs.is_empty() && codecs.iter().all(|c| *c == bits),
            "{codec}: stored codecs {codecs:?}\n{}",
            out.report()
        );
        let recs = read_all(&broker, &t, &[0], n);
        for i in 0..n {
            let r = &recs[&(0, i as i64)];
            assert_eq!(r.key.as_deref(), Some(format!("{codec}-k-{i}").as_bytes()));
            assert_eq!(
                r.value.as_deref(),
                Some(format!("{codec}-v-{i}").as_bytes())
            );
            assert_eq!(
                r.headers,
                vec![
                    ("seq".to_string(), Some(i.to_string().into_bytes())),
                    ("codec".to_string(), Some(codec.as_bytes().to_vec())),
                ]
            );
        }

        // The console consumer, in a group, prints keys, headers and offsets and commits.
        let group = format!("console-group-{codec}");
        let out = tool(
            &mut c,
            CONSOLE_CONSUMER,
            &[
                "--bootstrap-server",
                &b,
                "--topic",
                &t,
                "--group",
                &group,
                "--from-beginning",
                "--max-messages",
                &n.to_string(),
                "--timeout-ms",
                "30000",
                "--formatter-property",
                "print.key=true",
                "--formatter-property",
                "print.headers=true",
                "--formatter-property",
                "print.offset=true",
                "--command-property",
                "max.poll.records=1",
            ],
        );
        let want: Vec<String> = (0..n)
            .map(|i| format!("Offset:{i}\tseq:{i},codec:{codec}\t{codec}-k-{i}\t{codec}-v-{i}"))
            .collect();
        assert_eq!(out.stdout, want, "{}", out.report());
        let committed = committed_offsets(&mut broker.net(), &group, &t, 1);
        assert_eq!(committed.get(&0), Some(&(n as i64)), "{group}: committed");
    }
}

#[test]
fn kafka_configs_topics_and_brokers() {
    let Some(mut c) = tools("kafka-configs") else {
        return;
    };
    let broker = Broker::start("tools-configs");
    let b = broker.bootstrap();
    let t = "configs-topic";
    broker.create_topic(t, 1, &[]);
    let out = tool(
        &mut c,
        CONFIGS,
        &[
            "--bootstrap-server",
            &b,
            "--entity-type",
            "topics",
            "--entity-name",
            t,
            "--alter",
            "--add-config",
            "retention.ms=7200000,segment.bytes=1048576",
        ],
    );
    assert!(
        text(&out).contains("Completed updating config"),
        "{}",
        out.report()
    );
    assert_eq!(
        rdkafka_topic_config(&broker, t, "retention.ms").as_deref(),
        Some("7200000")
    );
    assert_eq!(
        rdkafka_topic_config(&broker, t, "segment.bytes").as_deref(),
        Some("1048576")
    );
    let out = tool(
        &mut c,
        CONFIGS,
        &[
            "--bootstrap-server",
            &b,
            "--entity-type",
            "topics",
            "--entity-name",
            t,
            "--describe",
        ],
    );
    assert!(
        text(&out).contains("retention.ms=7200000") && text(&out).contains("segment.bytes=1048576"),
        "{}",
        out.report()
    );
    tool(
        &mut c,
        CONFIGS,
        &[
            "--bootstrap-server",
            &b,
            "--entity-type",
            "topics",
            "--entity-name",
            t,
            "--alter",
            "--delete-config",
            "segment.bytes",
        ],
    );
    assert_eq!(
        rdkafka_topic_config(&broker, t, "segment.bytes").as_deref(),
        Some("1073741824")
    );

    // Brokers: describe every config of the node, then change a cluster-wide default.
    let node = node_id(&broker).to_string();
    let out = tool(
        &mut c,
        CONFIGS,
        &[
            "--bootstrap-server",
            &b,
            "--entity-type",
            "brokers",
            "--entity-name",
            &node,
            "--describe",
            "--all",
        ],
    );
    assert!(text(&out).contains("log.retention.ms="), "{}", out.report());
    tool(
        &mut c,
        CONFIGS,
        &[
            "--bootstrap-server",
            &b,
            "--entity-type",
            "brokers",
            "--entity-default",
            "--alter",
            "--add-config",
            "log.retention.ms=86400000",
        ],
    );
    let other = "configs-default";
    broker.create_topic(other, 1, &[]);
    assert_eq!(
        rdkafka_topic_config(&broker, other, "retention.ms").as_deref(),
        Some("86400000"),
        "a topic without an override takes the new broker default"
    );
    let out = tool(
        &mut c,
        CONFIGS,
        &[
            "--bootstrap-server",
            &b,
            "--entity-type",
            "brokers",
            "--entity-default",
            "--describe",
        ],
    );
    assert!(
        text(&out).contains("log.retention.ms=86400000"),
        "{}",
        out.report()
    );
}

/// kafka-consumer-groups --describe rows: partition -> (current offset, log end, lag).
fn describe_rows(out: &Output, topic: &str) -> BTreeMap<i32, (i64, i64, i64)> {
    out.stdout
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 6 && w[1] == topic)
                .then(|| (parse(w[2]), (parse(w[3]), parse(w[4]), parse(w[5]))))
        })
        .collect()
}

#[test]
fn kafka_consumer_groups_describe_lag_reset_delete() {
    consumer_groups_tool("classic");
}

/// The same on a group whose member spoke KIP-848 (`group.protocol=consumer`): the tool
/// describes it with ConsumerGroupDescribe.
#[test]
fn kafka_consumer_groups_on_a_consumer_protocol_group() {
    consumer_groups_tool("consumer");
}

fn consumer_groups_tool(protocol: &str) {
    let Some(mut c) = tools("kafka-consumer-groups") else {
        return;
    };
    let broker = Broker::start_with(&format!("tools-groups-{protocol}"), group_options(""));
    let protocol_prop = format!("group.protocol={protocol}");
    let b = broker.bootstrap();
    let (t, g) = ("groups-topic", "tools-group");
    broker.create_topic(t, 2, &[]);
    produce_spread(&broker, t, 2, "r", 30);
    // A console consumer in the group reads 20 of the 30 records (one per poll, so its
    // committed position is exactly what it read) and leaves.
    let out = tool(
        &mut c,
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            t,
            "--group",
            g,
            "--from-beginning",
            "--max-messages",
            "20",
            "--timeout-ms",
            "30000",
            "--command-property",
            "max.poll.records=1",
            "--command-property",
            &protocol_prop,
        ],
    );
    assert_eq!(out.stdout.len(), 20, "{}", out.report());

    let out = tool(&mut c, GROUPS, &["--bootstrap-server", &b, "--list"]);
    assert!(out.stdout.iter().any(|l| l.trim() == g), "{}", out.report());

    let out = tool(
        &mut c,
        GROUPS,
        &["--bootstrap-server", &b, "--describe", "--group", g],
    );
    let rows = describe_rows(&out, t);
    assert_eq!(rows.len(), 2, "{}", out.report());
    let (current, end, lag) = rows
        .values()
        .fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2));
    assert_eq!((current, end, lag), (20, 30, 10), "{}", out.report());
    let out = tool(
        &mut c,
        GROUPS,
        &[
            "--bootstrap-server",
            &b,
            "--describe",
            "--group",
            g,
            "--state",
        ],
    );
    assert!(text(&out).contains("Empty"), "{}", out.report());

    let mut net = broker.net();
    tool(
        &mut c,
        GROUPS,
        &[
            "--bootstrap-server",
            &b,
            "--reset-offsets",
            "--group",
            g,
            "--topic",
            t,
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(
        committed_offsets(&mut net, g, t, 2),
        BTreeMap::from([(0, 0), (1, 0)])
    );
    tool(
        &mut c,
        GROUPS,
        &[
            "--bootstrap-server",
            &b,
            "--reset-offsets",
            "--group",
            g,
            "--topic",
            t,
            "--shift-by",
            "5",
            "--execute",
        ],
    );
    assert_eq!(
        committed_offsets(&mut net, g, t, 2),
        BTreeMap::from([(0, 5), (1, 5)])
    );
    tool(
        &mut c,
        GROUPS,
        &[
            "--bootstrap-server",
            &b,
            "--delete-offsets",
            "--group",
            g,
            "--topic",
            t,
        ],
    );
    assert_eq!(
        committed_offsets(&mut net, g, t, 2),
        BTreeMap::from([(0, -1), (1, -1)])
    );
    tool(
        &mut c,
        GROUPS,
        &["--bootstrap-server", &b, "--delete", "--group", g],
    );
    assert!(
        !list_groups(&mut net).contains_key(g),
        "{g} still listed after --delete"
    );
}

#[test]
fn kafka_get_offsets_and_delete_records() {
    let Some(mut c) = tools("kafka-get-offsets and kafka-delete-records") else {
        return;
    };
    let broker = Broker::start("tools-offsets");
    let b = broker.bootstrap();
    let t = "offsets-topic";
    broker.create_topic(t, 2, &[]);
    produce_spread(&broker, t, 2, "r", 30);
    let offsets = |c: &mut ClientProc, time: &str| -> Vec<String> {
        tool(
            c,
            GET_OFFSETS,
            &["--bootstrap-server", &b, "--topic", t, "--time", time],
        )
        .stdout
    };
    assert_eq!(
        offsets(&mut c, "-1"),
        [format!("{t}:0:15"), format!("{t}:1:15")]
    );
    assert_eq!(
        offsets(&mut c, "-2"),
        [format!("{t}:0:0"), format!("{t}:1:0")]
    );

    let file = broker.root().join("delete.json");
    fs::write(
        &file,
        format!(r#"{{"partitions":[{{"topic":"{t}","partition":0,"offset":5}}],"version":1}}"#),
    )
    .expect("write the offsets file");
    let out = tool(
        &mut c,
        DELETE_RECORDS,
        &[
            "--bootstrap-server",
            &b,
            "--offset-json-file",
            &file.display().to_string(),
        ],
    );
    assert!(text(&out).contains("low_watermark: 5"), "{}", out.report());
    assert_eq!(broker.watermarks(t, 0), (5, 15));
    assert_eq!(
        offsets(&mut c, "-2"),
        [format!("{t}:0:5"), format!("{t}:1:0")]
    );
}

#[test]
fn kafka_producer_and_consumer_perf_tests() {
    let Some(mut c) = tools("kafka-producer-perf-test and kafka-consumer-perf-test") else {
        return;
    };
    let broker = Broker::start_with("tools-perf", group_options(""));
    let b = broker.bootstrap();
    let t = "perf-topic";
    let n = 20_000;
    broker.create_topic(t, 2, &[]);
    let bootstrap_prop = format!("bootstrap.servers={b}");
    let out = tool(
        &mut c,
        PRODUCER_PERF,
        &[
            "--topic",
            t,
            "--num-records",
            &n.to_string(),
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer-props",
            &bootstrap_prop,
            "acks=all",
            "linger.ms=5",
            "compression.type=lz4",
        ],
    );
    assert!(
        out.stdout
            .iter()
            .any(|l| l.starts_with(&format!("{n} records sent"))),
        "{}",
        out.report()
    );
    let stored: i64 = (0..2).map(|p| broker.watermarks(t, p).1).sum();
    assert_eq!(
        stored, n as i64,
        "records stored after the producer perf test"
    );

    let out = tool(
        &mut c,
        CONSUMER_PERF,
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            t,
            "--messages",
            &n.to_string(),
            "--timeout",
            "30000",
        ],
    );
    // CSV: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
    let header = out
        .stdout
        .iter()
        .position(|l| l.contains("data.consumed.in.nMsg"))
        .unwrap_or_else(|| panic!("no header\n{}", out.report()));
    let cols: Vec<&str> = out.stdout[header].split(',').map(str::trim).collect();
    let row: Vec<&str> = out.stdout[header + 1].split(',').map(str::trim).collect();
    let at = cols
        .iter()
        .position(|c| *c == "data.consumed.in.nMsg")
        .expect("column");
    assert_eq!(row[at], n.to_string(), "{}", out.report());
}

/// The JSON objects a coordinator-record formatter printed (one per record; Kafka 4.x prints
/// them with or without a newline between them).
fn formatter_records(out: &Output) -> Vec<serde_json::Value> {
    let all = out.stdout.join("\n");
    serde_json::Deserializer::from_str(&all)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("formatter output is not JSON: {e}\n{all}")))
        .collect()
}

/// A formatted record's key type (Kafka 4.4 prints it as "type", earlier 4.x as "version").
fn key_type(r: &serde_json::Value) -> Option<i64> {
    r["key"]["type"].as_i64().or(r["key"]["version"].as_i64())
}

/// `__consumer_offsets` is written in Kafka's own record formats: Kafka's
/// OffsetsMessageFormatter and GroupMetadataMessageFormatter, what
/// `kafka-console-consumer --formatter` runs to inspect the topic, read the committed offsets
/// and the classic group Rill stored, with the values the clients committed.
#[test]
fn console_consumer_formatters_read_the_offsets_topic() {
    let Some(mut c) = tools("the offsets topic formatters") else {
        return;
    };
    let broker = Broker::start_with(
        "tools-offsets-formatters",
        common::BrokerOptions::with_config("offsets_topic_partitions = 1\nmetrics_listen = \"\"\n"),
    );
    let b = broker.bootstrap();
    let t = "formatted";
    broker.create_topic(t, 2, &[]);
    produce_spread(&broker, t, 2, "fmt", 20);
    // A classic group: the console consumer joins, reads both partitions, commits, leaves.
    tool(
        &mut c,
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            t,
            "--group",
            "fmt-group",
            "--from-beginning",
            "--max-messages",
            "20",
            "--timeout-ms",
            "30000",
        ],
    );
    let committed = committed_offsets(&mut broker.net(), "fmt-group", t, 2);
    assert_eq!(
        committed.values().sum::<i64>(),
        20,
        "committed {committed:?}"
    );

    let (_, end) = broker.watermarks("__consumer_offsets", 0);
    let read = |c: &mut ClientProc, formatter: &str| {
        let out = tool(
            c,
            CONSOLE_CONSUMER,
            &[
                "--bootstrap-server",
                &b,
                "--topic",
                "__consumer_offsets",
                "--from-beginning",
                "--max-messages",
                &end.to_string(),
                "--timeout-ms",
                "30000",
                "--formatter",
                formatter,
            ],
        );
        formatter_records(&out)
    };
    // The latest offset record of each partition holds what OffsetFetch answers.
    let offsets = read(
        &mut c,
        "org.apache.kafka.tools.consumer.OffsetsMessageFormatter",
    );
    let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &offsets {
        let key = &r["key"]["data"];
        if key["group"] != "fmt-group" || key["topic"] != t {
            continue;
        }
        assert_eq!(key_type(r), Some(1), "OffsetCommitKey type: {r}");
        assert_eq!(r["value"]["version"], 3, "OffsetCommitValue version: {r}");
        let p = key["partition"].as_i64().expect("partition");
        let o = r["value"]["data"]["offset"].as_i64().expect("offset");
        latest.insert(p, o);
    }
    let want: BTreeMap<i64, i64> = committed.iter().map(|(p, o)| (*p as i64, *o)).collect();
    assert_eq!(
        latest, want,
        "offsets as Kafka's formatter reads them: {offsets:?}"
    );

    // The group's record: a consumer group, empty since the console consumer left.
    let groups = read(
        &mut c,
        "org.apache.kafka.tools.consumer.GroupMetadataMessageFormatter",
    );
    let group = groups
        .iter()
        .rev()
        .find(|r| key_type(r) == Some(2) && r["key"]["data"]["group"] == "fmt-group")
        .unwrap_or_else(|| panic!("no group record for fmt-group: {groups:?}"));
    let value = &group["value"]["data"];
    assert_eq!(value["protocolType"], "consumer", "{group}");
    assert!(value["generation"].as_i64().unwrap_or(0) >= 1, "{group}");
    assert!(value["members"].is_array(), "{group}");
}
