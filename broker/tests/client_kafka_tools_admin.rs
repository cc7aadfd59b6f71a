//! Kafka's admin command-line tools (the `kafka-tools` 4.4.0 jar) against the real broker:
//! kafka-reassign-partitions (generate, execute, verify; one node and a four-broker
//! cluster), kafka-log-dirs, kafka-leader-election (preferred and unclean),
//! kafka-transactions list, find-hanging, abort and describe-producers, kafka-features
//! describe, and kafka-topics
//! --describe paging through DescribeTopicPartitions. Each tool's main class runs in the
//! test's JVM (see
//! `client_kafka_tools.rs`); what it did is checked through the broker, not only through
//! what it printed.
//!
//! Without the Java programs built (`.ci/run` builds them) the tests fail under CI and
//! otherwise pass with a loud notice.

#[path = "common/clients.rs"]
mod clients;
mod common;
#[path = "common/kafka_tools.rs"]
mod kafka_tools;

use std::fs;
use std::time::{Duration, Instant};

use clients::*;
use common::groups::produce_spread;
use common::{read_all, Broker, BrokerOptions};
use kafka_tools::{text, tool, tools};

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const REASSIGN: &str = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
const LOG_DIRS: &str = "org.apache.kafka.tools.LogDirsCommand";
const LEADER_ELECTION: &str = "org.apache.kafka.tools.LeaderElectionCommand";
const TRANSACTIONS: &str = "org.apache.kafka.tools.TransactionsCommand";
const FEATURES: &str = "org.apache.kafka.tools.FeatureCommand";

/// `kafka-reassign-partitions --generate` for topic `t` over `brokers` (a topics file
/// written under `dir`).
fn generate(c: &mut ClientProc, b: &str, dir: &std::path::Path, t: &str, brokers: &str) -> Output {
    let topics = dir.join("topics.json");
    fs::write(
        &topics,
        format!(r#"{{"topics":[{{"topic":"{t}"}}],"version":1}}"#),
    )
    .expect("write topics.json");
    let topics = topics.display().to_string();
    tool(
        c,
        REASSIGN,
        &[
            "--bootstrap-server",
            b,
            "--generate",
            "--topics-to-move-json-file",
            &topics,
            "--broker-list",
            brokers,
        ],
    )
}

/// `kafka-reassign-partitions --execute` of `plan`, then `--verify` until both partitions
/// of `t` are reported completed (within `within`), which also clears the throttles.
fn execute_and_verify(
    c: &mut ClientProc,
    b: &str,
    plan: &std::path::Path,
    t: &str,
    within: Duration,
) {
    let plan_arg = plan.display().to_string();
    let out = tool(
        c,
        REASSIGN,
        &[
            "--bootstrap-server",
            b,
            "--execute",
            "--reassignment-json-file",
            &plan_arg,
        ],
    );
    assert!(
        text(&out).contains("Successfully started partition reassignment"),
        "{}",
        out.report()
    );
    let deadline = Instant::now() + within;
    loop {
        let out = tool(
            c,
            REASSIGN,
            &[
                "--bootstrap-server",
                b,
                "--verify",
                "--reassignment-json-file",
                &plan_arg,
            ],
        );
        let s = text(&out);
        if (0..2).all(|p| s.contains(&format!("Reassignment of partition {t}-{p} is completed"))) {
            assert!(
                s.contains("Clearing broker-level throttles"),
                "{}",
                out.report()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reassignment not completed\n{}",
            out.report()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn kafka_reassign_partitions_generate() {
    let Some(mut c) = tools("kafka-reassign-partitions --generate") else {
        return;
    };
    let broker = Broker::start("tools-reassign-generate");
    let b = broker.bootstrap();
    let t = "reassign-topic";
    broker.create_topic(t, 2, &[]);
    let node = node_id(&broker).to_string();
    let out = generate(&mut c, &b, broker.root(), t, &node);
    // The proposal is the line after "Proposed partition reassignment configuration".
    let at = out
        .stdout
        .iter()
        .position(|l| l.contains("Proposed partition reassignment configuration"))
        .unwrap_or_else(|| panic!("no proposal\n{}", out.report()));
    let proposal = &out.stdout[at + 1];
    for p in 0..2 {
        let want = format!(r#""topic":"{t}","partition":{p},"replicas":[{node}]"#);
        assert!(proposal.contains(&want), "no `{want}`\n{}", out.report());
    }
}

/// A plan written by hand (as operators do), so `--execute` and `--verify` are checked
/// whether or not `--generate` works. One node: every replica stays where it is.
#[test]
fn kafka_reassign_partitions_execute_verify() {
    let Some(mut c) = tools("kafka-reassign-partitions --execute/--verify") else {
        return;
    };
    let broker = Broker::start("tools-reassign");
    let b = broker.bootstrap();
    let t = "reassign-topic";
    broker.create_topic(t, 2, &[]);
    let node = node_id(&broker);
    let plan = broker.root().join("plan.json");
    fs::write(
        &plan,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{t}","partition":0,"replicas":[{node}],"log_dirs":["any"]}},{{"topic":"{t}","partition":1,"replicas":[{node}],"log_dirs":["any"]}}]}}"#
        ),
    )
    .expect("write plan.json");
    execute_and_verify(&mut c, &b, &plan, t, Duration::from_secs(60));
}

#[test]
fn kafka_log_dirs_describe() {
    let Some(mut c) = tools("kafka-log-dirs") else {
        return;
    };
    let broker = Broker::start_with(
        "tools-log-dirs",
        BrokerOptions::with_config("log_cleaner_backoff_ms = 200\n"),
    );
    let b = broker.bootstrap();
    let t = "log-dirs-topic";
    broker.create_topic(t, 2, &[]);
    produce_spread(&broker, t, 2, "r", 10);
    // A compacted topic's partitions carry Rill's own tagged fields (dirty ratio), which
    // the Java client must skip. They are there once the log cleaner has looked.
    let compacted = "log-dirs-compacted";
    broker.create_topic(compacted, 1, &[("cleanup.policy", "compact")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = common::run_bounded(
            std::process::Command::new(env!("CARGO_BIN_EXE_rill")).args([
                "topic",
                "describe",
                compacted,
                "--output",
                "json",
                "--bootstrap",
                &b,
            ]),
            Duration::from_secs(30),
            None,
        );
        let d: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if d["partitions"][0]["dirty_ratio"].is_f64() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dirty ratio in rill topic describe within 30 s: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = tool(
        &mut c,
        LOG_DIRS,
        &[
            "--bootstrap-server",
            &b,
            "--describe",
            "--topic-list",
            &format!("{t},{compacted}"),
        ],
    );
    let s = text(&out);
    for p in [format!("{t}-0"), format!("{t}-1"), format!("{compacted}-0")] {
        assert!(
            s.contains(&format!("\"partition\":\"{p}\"")),
            "{}",
            out.report()
        );
    }
}

#[test]
fn kafka_leader_election_preferred() {
    let Some(mut c) = tools("kafka-leader-election") else {
        return;
    };
    let broker = Broker::start("tools-election");
    let b = broker.bootstrap();
    let t = "election-topic";
    broker.create_topic(t, 1, &[]);
    let out = tool(
        &mut c,
        LEADER_ELECTION,
        &[
            "--bootstrap-server",
            &b,
            "--election-type",
            "preferred",
            "--topic",
            t,
            "--partition",
            "0",
        ],
    );
    // One node: the preferred leader already leads.
    assert!(
        text(&out).contains(&format!(
            "Valid replica already elected for partitions {t}-0"
        )),
        "{}",
        out.report()
    );
}

/// kafka-reassign-partitions on a cluster (3 voters and a learner, replication factor 2):
/// `--generate` proposes a plan over all four brokers, a plan written by hand moves both
/// partitions onto new replica sets, `--execute` starts it, `--verify` sees it complete and
/// clears the throttles, and the records are still there at their offsets.
#[test]
fn kafka_reassign_partitions_on_a_cluster() {
    let Some(mut c) = tools("kafka-reassign-partitions on a cluster") else {
        return;
    };
    const HOSTS: [&str; 3] = ["127.0.0.71", "127.0.0.72", "127.0.0.73"];
    const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 4000\n";
    let t = "tools-moving";
    let brokers = common::cluster::four_brokers_with_topic(
        "tools-reassign-cluster",
        &HOSTS,
        "127.0.0.74",
        CONFIG,
        t,
        2,
    );
    common::cluster::produce_each_partition(&brokers[0], t, 2, "r", 100);
    let b = brokers[0].bootstrap();
    let root = brokers[0].root();

    let out = generate(&mut c, &b, root, t, "1,2,3,4");
    assert!(
        text(&out).contains("Proposed partition reassignment configuration"),
        "{}",
        out.report()
    );

    // Partition 0 onto {3, 4}, partition 1 onto {4, 1}: every partition gets broker 4.
    let plan = root.join("plan.json");
    fs::write(
        &plan,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{t}","partition":0,"replicas":[3,4],"log_dirs":["any","any"]}},{{"topic":"{t}","partition":1,"replicas":[4,1],"log_dirs":["any","any"]}}]}}"#
        ),
    )
    .expect("write plan.json");
    execute_and_verify(&mut c, &b, &plan, t, Duration::from_secs(90));
    for (p, want) in [(0, vec![3, 4]), (1, vec![4, 1])] {
        let md = common::cluster::topic_metadata(&brokers[0], t);
        let got: Vec<i32> = md.partitions[p].replica_nodes.iter().map(|b| b.0).collect();
        assert_eq!(got, want, "replicas of {t}/{p} after the move");
    }
    let recs = read_all(&brokers[0], t, &[0, 1], 200);
    assert_eq!(recs[&(0, 99)].value.as_deref(), Some(&b"r-0-99"[..]));
    assert_eq!(recs[&(1, 0)].value.as_deref(), Some(&b"r-1-0"[..]));
}

#[test]
fn kafka_leader_election_unclean_on_one_node() {
    let Some(mut c) = tools("kafka-leader-election --election-type unclean") else {
        return;
    };
    let broker = Broker::start("tools-election-unclean");
    let b = broker.bootstrap();
    let t = "election-unclean";
    broker.create_topic(t, 2, &[("unclean.leader.election.enable", "true")]);
    let out = tool(
        &mut c,
        LEADER_ELECTION,
        &[
            "--bootstrap-server",
            &b,
            "--election-type",
            "unclean",
            "--topic",
            t,
            "--partition",
            "1",
        ],
    );
    // The leader is alive: nothing to elect.
    assert!(
        text(&out).contains(&format!(
            "Valid replica already elected for partitions {t}-1"
        )),
        "{}",
        out.report()
    );
    // Every partition of every topic: none needs an election, and none is reported failed.
    let out = tool(
        &mut c,
        LEADER_ELECTION,
        &[
            "--bootstrap-server",
            &b,
            "--election-type",
            "preferred",
            "--all-topic-partitions",
        ],
    );
    assert!(!text(&out).contains("Failed"), "{}", out.report());
}

#[test]
fn kafka_transactions_list_is_empty() {
    let Some(mut c) = tools("kafka-transactions list") else {
        return;
    };
    let broker = Broker::start("tools-transactions");
    let out = tool(
        &mut c,
        TRANSACTIONS,
        &["--bootstrap-server", &broker.bootstrap(), "list"],
    );
    // The table header and no transaction under it.
    let lines: Vec<&String> = out.stdout.iter().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1
            && lines[0].contains("TransactionalId")
            && lines[0].contains("TransactionState"),
        "{}",
        out.report()
    );
}

/// `find-hanging` reads every partition's producers on a broker (DescribeProducers) and finds
/// no transaction open among them: no idempotent producer is in one.
/// `kafka-transactions find-hanging` over the partitions of `broker` (a single node).
fn find_hanging(c: &mut ClientProc, broker: &Broker, extra: &[&str]) -> Output {
    let (b, node) = (broker.bootstrap(), node_id(broker).to_string());
    let mut args = vec![
        "--bootstrap-server",
        &b,
        "find-hanging",
        "--broker-id",
        &node,
    ];
    args.extend_from_slice(extra);
    tool(c, TRANSACTIONS, &args)
}

#[test]
fn kafka_transactions_find_hanging_finds_none() {
    let Some(mut c) = tools("kafka-transactions find-hanging") else {
        return;
    };
    let port = common::free_port();
    let broker = Broker::start_with(
        "tools-transactions-hanging",
        BrokerOptions::with_config(&format!("metrics_listen = \"127.0.0.1:{port}\"\n")),
    );
    let t = "hanging";
    broker.create_topic(t, 2, &[]);
    produce_spread(&broker, t, 2, "r", 10);
    let out = find_hanging(&mut c, &broker, &[]);
    assert!(
        requests_of(port, "DescribeProducers") >= 1,
        "{}",
        out.report()
    );
    let lines: Vec<&String> = out.stdout.iter().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].contains("Topic") && lines[0].contains("ProducerId"),
        "{}",
        out.report()
    );
}

/// A transaction left open in a partition (a raw client wrote a transactional batch and no
/// coordinator will end it) is what `find-hanging` finds and `abort` ends: the tool reads the
/// producer's state with DescribeProducers and writes the abort marker with WriteTxnMarkers,
/// after which read_committed readers pass it and see its records as aborted.
#[test]
fn kafka_transactions_find_hanging_and_abort_end_an_open_transaction() {
    use common::txn::TxnPartition;
    let Some(mut c) = tools("kafka-transactions find-hanging and abort") else {
        return;
    };
    let port = common::free_port();
    // The hanging transaction is written by hand, without a coordinator, so partition
    // verification (which exists to prevent it) is off.
    let broker = Broker::start_with(
        "tools-transactions-abort",
        BrokerOptions::with_config(&format!(
            "metrics_listen = \"127.0.0.1:{port}\"\ntransaction_partition_verification = false\n"
        )),
    );
    let b = broker.bootstrap();
    let t = "left-open";
    broker.create_topic(t, 1, &[]);
    let mut raw = TxnPartition::new(broker.net(), t);
    let mut p = raw.init_producer();
    let pid = p.id;
    let plain = |raw: &mut TxnPartition, v: &str| raw.produce_plain(&[v.to_string()]);
    assert_eq!(plain(&mut raw, "before"), (rill_net::ErrorCode::None, 0));
    assert_eq!(raw.txn_produce(&mut p, &["never decided".to_string()]), 1);
    assert_eq!(plain(&mut raw, "after"), (rill_net::ErrorCode::None, 2));

    let out = find_hanging(&mut c, &broker, &["--max-transaction-timeout", "0"]);
    // Header, then the one open transaction: topic, partition, producer id, epoch,
    // coordinator epoch, start offset.
    let rows: Vec<Vec<String>> = out
        .stdout
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{}", out.report());
    assert_eq!(
        rows[1][..6],
        [t, "0", &pid.to_string(), "0", "-1", "1"].map(str::to_string),
        "{}",
        out.report()
    );
    let markers_before = requests_of(port, "WriteTxnMarkers");
    tool(
        &mut c,
        TRANSACTIONS,
        &[
            "--bootstrap-server",
            &b,
            "abort",
            "--topic",
            t,
            "--partition",
            "0",
            "--start-offset",
            "1",
        ],
    );
    assert_eq!(requests_of(port, "WriteTxnMarkers"), markers_before + 1);
    // Nothing hangs any more; the producer has no open transaction.
    let out = find_hanging(&mut c, &broker, &["--max-transaction-timeout", "0"]);
    let lines = out.stdout.iter().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(lines, 1, "{}", out.report());
    let out = tool(
        &mut c,
        TRANSACTIONS,
        &[
            "--bootstrap-server",
            &b,
            "describe-producers",
            "--topic",
            t,
            "--partition",
            "0",
        ],
    );
    let row: Vec<String> = out
        .stdout
        .iter()
        .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
        .unwrap_or_else(|| panic!("no row for producer {pid}: {}", out.report()))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp
    // CurrentTransactionStartOffset
    assert_eq!(
        row[2],
        "0",
        "the abort's coordinator epoch: {}",
        out.report()
    );
    assert_eq!(row[5], "None", "{}", out.report());
    // A read_committed consumer passes the aborted transaction and drops its record.
    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    common::assign(&consumer, t, &[0], rdkafka::Offset::Beginning);
    let recs = common::consume_exactly(&consumer, 2, Duration::from_secs(30));
    let values: Vec<&[u8]> = recs.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, [&b"before"[..], &b"after"[..]]);
}

#[test]
fn kafka_features_describe() {
    let Some(mut c) = tools("kafka-features describe") else {
        return;
    };
    let broker = Broker::start("tools-features");
    let out = tool(
        &mut c,
        FEATURES,
        &["--bootstrap-server", &broker.bootstrap(), "describe"],
    );
    // Columns are padded with spaces: compare with runs of spaces made one.
    let s: Vec<String> = out
        .stdout
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for want in [
        "Feature: metadata.version SupportedMinVersion: 3.3-IV3 SupportedMaxVersion: 4.0-IV3 FinalizedVersionLevel: 4.0-IV3",
        "Feature: group.version SupportedMinVersion: 0 SupportedMaxVersion: 1 FinalizedVersionLevel: 1",
        "Feature: transaction.version SupportedMinVersion: 0 SupportedMaxVersion: 2 FinalizedVersionLevel: 2",
    ] {
        assert!(
            s.iter().any(|l| l.starts_with(want)),
            "no `{want}`\n{}",
            out.report()
        );
    }
}

/// kafka-topics --describe asks for two partitions per answer: the Java admin pages
/// through DescribeTopicPartitions with its cursor and still lists every partition.
#[test]
fn kafka_topics_describe_pages_through_partitions() {
    let Some(mut c) = tools("kafka-topics --describe with a partition limit") else {
        return;
    };
    let port = common::free_port();
    let broker = Broker::start_with(
        "tools-describe-paged",
        BrokerOptions::with_config(&format!("metrics_listen = \"127.0.0.1:{port}\"\n")),
    );
    let b = broker.bootstrap();
    broker.create_topic("paged-a", 5, &[]);
    broker.create_topic("paged-b", 3, &[]);
    let out = tool(
        &mut c,
        TOPICS,
        &[
            "--bootstrap-server",
            &b,
            "--describe",
            "--partition-size-limit-per-response",
            "2",
        ],
    );
    // Eight partitions two at a time: the admin asked four times at least.
    let pages = requests_of(port, "DescribeTopicPartitions");
    assert!(pages >= 4, "{pages} DescribeTopicPartitions requests");
    let s = text(&out);
    for (t, n) in [("paged-a", 5), ("paged-b", 3)] {
        for p in 0..n {
            assert!(
                s.contains(&format!("Topic: {t}\tPartition: {p}\t")),
                "{t}-{p} not described\n{}",
                out.report()
            );
        }
    }
}

/// How many requests of `api` the broker with metrics on `port` has served.
fn requests_of(port: u16, api: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the scrape");
    let prefix = format!("rill_requests_total{{api=\"{api}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}
