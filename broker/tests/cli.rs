//! The `rill` admin and data subcommands against the real broker: every subcommand's output
//! (tables and `--output json`) and exit codes, including the error paths (unknown topic,
//! existing topic, bad config key, broker down, bad usage). Records produced with the CLI
//! are read back by rdkafka, so the CLI is checked against an independent client.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use rdkafka::Offset;

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

fn rill(broker_addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.args(args).args(["--bootstrap", broker_addr]);
    run_bounded(&mut cmd, CLI_TIMEOUT, stdin)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed with {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn fails(o: Output, code: i32, needle: &str, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: exit code\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(needle),
        "{what}: stderr lacks `{needle}`: {}",
        stderr(&o)
    );
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn every_subcommand_against_the_real_broker() {
    let broker = Broker::start("cli");
    let addr = broker.bootstrap();
    let b = addr.as_str();

    // topic create / list / describe
    let out = ok(
        rill(
            b,
            &[
                "topic",
                "create",
                "orders",
                "--partitions",
                "3",
                "--config",
                "retention.ms=300000",
            ],
            None,
        ),
        "topic create",
    );
    assert!(out.contains("created topic orders"), "{out}");
    fails(
        rill(b, &["topic", "create", "orders", "--partitions", "3"], None),
        1,
        "TOPIC_ALREADY_EXISTS",
        "create twice",
    );
    fails(
        rill(b, &["topic", "create", "bad/name"], None),
        1,
        "INVALID_TOPIC_EXCEPTION",
        "invalid name",
    );
    fails(
        rill(
            b,
            &["topic", "create", "rf3", "--replication-factor", "3"],
            None,
        ),
        1,
        "INVALID_REPLICATION_FACTOR",
        "replication factor",
    );
    let list = ok(rill(b, &["topic", "list"], None), "topic list");
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "3"]),
        "{list}"
    );
    let list = json(&ok(
        rill(b, &["topic", "list", "--output", "json"], None),
        "topic list json",
    ));
    assert_eq!(
        list,
        serde_json::json!([{"name": "orders", "partitions": 3}])
    );

    // produce (keyed, with a header) and consume back, then through rdkafka
    let lines = b"k1:one\nk2:two\nk3:three\nk1:four\n";
    let out = rill(
        b,
        &[
            "produce",
            "orders",
            "--key-separator",
            ":",
            "--header",
            "src=cli",
            "--compression",
            "zstd",
        ],
        Some(lines),
    );
    assert!(out.status.success(), "produce: {}", stderr(&out));
    assert!(
        stderr(&out).contains("produced 4 records"),
        "{}",
        stderr(&out)
    );
    let consumed = ok(
        rill(
            b,
            &[
                "consume",
                "orders",
                "--from-beginning",
                "--max-messages",
                "4",
                "--format",
                "json",
                "--idle-timeout-ms",
                "20000",
            ],
            None,
        ),
        "consume",
    );
    let recs: Vec<serde_json::Value> = consumed.lines().map(json).collect();
    assert_eq!(recs.len(), 4, "{consumed}");
    let mut pairs: Vec<(String, String)> = recs
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("k1", "four"),
            ("k1", "one"),
            ("k2", "two"),
            ("k3", "three")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(
        recs.iter().all(|r| r["headers"]["src"] == "cli"),
        "{consumed}"
    );
    // Same key, same partition (murmur2 partitioning).
    let k1: Vec<_> = recs
        .iter()
        .filter(|r| r["key"] == "k1")
        .map(|r| r["partition"].clone())
        .collect();
    assert_eq!(
        k1[0], k1[1],
        "records with one key landed on two partitions"
    );
    let consumer = broker.consumer(&[]);
    assign(&consumer, "orders", &[0, 1, 2], Offset::Beginning);
    let seen = consume_exactly(&consumer, 4, Duration::from_secs(30));
    assert!(seen
        .iter()
        .all(|r| r.headers == vec![("src".to_string(), Some(b"cli".to_vec()))]));

    // describe: offsets add up to what was produced, configs show the override
    let d = json(&ok(
        rill(
            b,
            &["topic", "describe", "orders", "--output", "json"],
            None,
        ),
        "describe",
    ));
    let total: i64 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latest_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 4, "{d}");
    assert_eq!(d["configs"]["retention.ms"]["value"], "300000");
    assert_eq!(d["configs"]["retention.ms"]["source"], "topic");
    let table = ok(
        rill(b, &["topic", "describe", "orders"], None),
        "describe table",
    );
    assert!(
        table.contains("PARTITION") && table.contains("ISR") && table.contains("retention.ms"),
        "{table}"
    );
    fails(
        rill(b, &["topic", "describe", "missing"], None),
        1,
        "UNKNOWN_TOPIC_OR_PARTITION",
        "describe unknown",
    );
    let list = json(&ok(
        rill(b, &["topic", "list", "--output", "json"], None),
        "list after describe",
    ));
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "describing an unknown topic created it: {list}"
    );

    // config set / get / delete, broker configs, and the bad key path
    ok(
        rill(
            b,
            &[
                "config",
                "set",
                "topic",
                "orders",
                "retention.ms=600000",
                "segment.ms=3600000",
            ],
            None,
        ),
        "config set",
    );
    let cfg = json(&ok(
        rill(
            b,
            &["config", "get", "topic", "orders", "--output", "json"],
            None,
        ),
        "config get",
    ));
    assert_eq!(cfg["retention.ms"]["value"], "600000");
    assert_eq!(cfg["segment.ms"]["value"], "3600000");
    ok(
        rill(
            b,
            &["config", "delete", "topic", "orders", "segment.ms"],
            None,
        ),
        "config delete",
    );
    let cfg = json(&ok(
        rill(
            b,
            &["config", "get", "topic", "orders", "--output", "json"],
            None,
        ),
        "config get 2",
    ));
    assert_eq!(cfg["segment.ms"]["source"], "default");
    fails(
        rill(
            b,
            &["config", "set", "topic", "orders", "retention.mss=1"],
            None,
        ),
        1,
        "INVALID_CONFIG",
        "bad key",
    );
    fails(
        rill(b, &["config", "set", "topic", "orders", "novalue"], None),
        2,
        "KEY=VALUE",
        "bad pair",
    );
    let cfg = json(&ok(
        rill(
            b,
            &["config", "get", "broker", "0", "--output", "json"],
            None,
        ),
        "broker configs",
    ));
    assert_eq!(cfg["log.retention.ms"]["value"], "604800000");
    // Broker-wide topic defaults change at run time and reach topics without overrides.
    ok(
        rill(
            b,
            &["config", "set", "broker", "0", "log.roll.ms=7200000"],
            None,
        ),
        "broker set",
    );
    let cfg = json(&ok(
        rill(
            b,
            &["config", "get", "topic", "orders", "--output", "json"],
            None,
        ),
        "topic after broker set",
    ));
    assert_eq!(cfg["segment.ms"]["value"], "7200000", "{cfg}");
    assert_eq!(cfg["segment.ms"]["source"], "broker (dynamic)", "{cfg}");
    assert_eq!(
        cfg["retention.ms"]["source"], "topic",
        "the topic's own value still wins"
    );
    fails(
        rill(b, &["config", "set", "broker", "0", "broker.id=5"], None),
        1,
        "INVALID_CONFIG",
        "read-only broker config",
    );
    fails(
        rill(
            b,
            &["config", "set", "broker", "7", "log.roll.ms=1000"],
            None,
        ),
        1,
        "INVALID_REQUEST",
        "another broker",
    );
    ok(
        rill(b, &["config", "delete", "broker", "0", "log.roll.ms"], None),
        "broker delete",
    );
    let cfg = json(&ok(
        rill(
            b,
            &["config", "get", "broker", "0", "--output", "json"],
            None,
        ),
        "broker after delete",
    ));
    assert_eq!(cfg["log.roll.ms"]["source"], "default", "{cfg}");

    // alter, cluster info, consume --group (not yet), delete
    ok(
        rill(b, &["topic", "alter", "orders", "--partitions", "5"], None),
        "alter",
    );
    fails(
        rill(b, &["topic", "alter", "orders", "--partitions", "2"], None),
        1,
        "INVALID_PARTITIONS",
        "shrink",
    );
    let info = json(&ok(
        rill(b, &["cluster", "info", "--output", "json"], None),
        "cluster info",
    ));
    assert_eq!(info["partitions"], 5);
    assert_eq!(info["brokers"][0]["port"], broker.port() as i64);
    fails(
        rill(
            b,
            &["consume", "orders", "--group", "g", "--partition", "0"],
            None,
        ),
        2,
        "--group assigns partitions",
        "group with a partition",
    );
    ok(rill(b, &["topic", "delete", "orders"], None), "delete");
    fails(
        rill(b, &["topic", "delete", "orders"], None),
        1,
        "UNKNOWN_TOPIC_OR_PARTITION",
        "delete twice",
    );
}

#[test]
fn a_missing_broker_is_exit_code_3() {
    let addr = format!("127.0.0.1:{}", free_port());
    fails(
        rill(&addr, &["topic", "list"], None),
        3,
        "cannot reach a broker",
        "no broker",
    );
    fails(
        rill(&addr, &["cluster", "info"], None),
        3,
        "is `rill broker` running",
        "no broker",
    );
}

#[test]
fn group_subcommands_show_lag_reset_and_delete() {
    use rdkafka::consumer::{CommitMode, Consumer};
    let broker = Broker::start_with(
        "cli-groups",
        BrokerOptions::with_config("offsets_topic_partitions = 4\n"),
    );
    let addr = broker.bootstrap();
    let b = addr.as_str();
    ok(
        rill(
            b,
            &["topic", "create", "lagging", "--partitions", "2"],
            None,
        ),
        "create",
    );
    let lines: Vec<u8> = (0..20)
        .flat_map(|i| format!("v{i}\n").into_bytes())
        .collect();
    let out = rill(b, &["produce", "lagging", "--partition", "0"], Some(&lines));
    assert!(out.status.success(), "{}", stderr(&out));

    // A group member reads 5 records of partition 0 and commits after them.
    let consumer = broker.consumer(&[("group.id", "readers"), ("enable.auto.commit", "false")]);
    assign(&consumer, "lagging", &[0], Offset::Beginning);
    let got = consume_at_least(&consumer, 5, Duration::from_secs(30));
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("lagging", 0, Offset::Offset(got[4].offset + 1))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(consumer);

    let list = json(&ok(
        rill(b, &["group", "list", "--output", "json"], None),
        "group list",
    ));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "readers"),
        "{list}"
    );
    let d = json(&ok(
        rill(
            b,
            &["group", "describe", "readers", "--output", "json"],
            None,
        ),
        "describe",
    ));
    let p0 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partition"] == 0)
        .cloned()
        .expect("partition 0");
    assert_eq!(p0["committed_offset"], 5, "{d}");
    assert_eq!(p0["log_end_offset"], 20, "{d}");
    assert_eq!(p0["lag"], 15, "{d}");
    let table = ok(
        rill(b, &["group", "describe", "readers"], None),
        "describe table",
    );
    assert!(table.contains("LAG"), "{table}");

    ok(
        rill(
            b,
            &[
                "group",
                "reset-offsets",
                "readers",
                "--topic",
                "lagging",
                "--to-latest",
            ],
            None,
        ),
        "reset",
    );
    let d = json(&ok(
        rill(
            b,
            &["group", "describe", "readers", "--output", "json"],
            None,
        ),
        "describe 2",
    ));
    let lags: Vec<i64> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["lag"].as_i64().unwrap())
        .collect();
    assert!(lags.iter().all(|l| *l == 0), "{d}");
    fails(
        rill(
            b,
            &["group", "reset-offsets", "readers", "--topic", "lagging"],
            None,
        ),
        2,
        "exactly one of",
        "reset without a target",
    );
    fails(
        rill(b, &["group", "describe", ""], None),
        1,
        "INVALID_GROUP_ID",
        "empty group id",
    );
    ok(rill(b, &["group", "delete", "readers"], None), "delete");
    fails(
        rill(b, &["group", "describe", "readers"], None),
        1,
        "GROUP_ID_NOT_FOUND",
        "describe deleted",
    );
    fails(
        rill(b, &["group", "delete", "readers"], None),
        1,
        "GROUP_ID_NOT_FOUND",
        "delete twice",
    );
}

#[test]
fn consume_with_group_shares_partitions_and_resumes() {
    let broker = Broker::start_with(
        "cli-consume-group",
        BrokerOptions::with_config("offsets_topic_partitions = 4\n"),
    );
    let addr = broker.bootstrap();
    let b = addr.as_str();
    ok(
        rill(b, &["topic", "create", "shared", "--partitions", "4"], None),
        "create",
    );
    let lines: Vec<u8> = (0..40)
        .flat_map(|i| format!("r{i}\n").into_bytes())
        .collect();
    assert!(rill(b, &["produce", "shared"], Some(&lines))
        .status
        .success());

    // Two members at once: together they read every record once, on disjoint partitions.
    let consume = |b: String| {
        std::thread::spawn(move || {
            rill(
                &b,
                &[
                    "consume",
                    "shared",
                    "--group",
                    "pair",
                    "--from-beginning",
                    "--idle-timeout-ms",
                    "4000",
                    "--format",
                    "json",
                ],
                None,
            )
        })
    };
    let (x, y) = (consume(addr.clone()), consume(addr.clone()));
    let outs = [x.join().unwrap(), y.join().unwrap()];
    let mut seen = std::collections::BTreeSet::new();
    let mut partitions: Vec<std::collections::BTreeSet<i64>> = Vec::new();
    for o in &outs {
        let text = ok(o.clone(), "group consume");
        let mut mine = std::collections::BTreeSet::new();
        for r in text.lines().map(json) {
            assert!(
                seen.insert((
                    r["partition"].as_i64().unwrap(),
                    r["offset"].as_i64().unwrap()
                )),
                "read twice: {r}"
            );
            mine.insert(r["partition"].as_i64().unwrap());
        }
        partitions.push(mine);
    }
    assert_eq!(seen.len(), 40, "every record once across the group");
    assert!(partitions[0].is_disjoint(&partitions[1]), "{partitions:?}");

    // A later member resumes from the committed offsets: only the new records.
    let more: Vec<u8> = (40..44)
        .flat_map(|i| format!("r{i}\n").into_bytes())
        .collect();
    assert!(rill(b, &["produce", "shared"], Some(&more))
        .status
        .success());
    let text = ok(
        rill(
            b,
            &[
                "consume",
                "shared",
                "--group",
                "pair",
                "--idle-timeout-ms",
                "3000",
            ],
            None,
        ),
        "resume",
    );
    let mut values: Vec<&str> = text.lines().collect();
    values.sort();
    assert_eq!(values, ["r40", "r41", "r42", "r43"]);
    let d = json(&ok(
        rill(b, &["group", "describe", "pair", "--output", "json"], None),
        "describe",
    ));
    assert_eq!(d["state"], "Empty", "{d}");
    assert!(
        d["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["lag"] == 0),
        "{d}"
    );
}

/// `rill txn list`, `describe` and `abort`: a librdkafka transactional producer's id is
/// listed and described as committed; a transaction left open by a raw client (no
/// coordinator will end it) is aborted by its start offset, after which read_committed
/// readers pass it.
#[test]
fn txn_subcommands_list_describe_and_abort() {
    use common::txn::{values, TxnPartition};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    // The hanging transaction to abort is written by hand, without a coordinator, so
    // partition verification is off (it exists to prevent exactly that transaction).
    let broker = Broker::start_with(
        "cli-txn",
        BrokerOptions::with_config(
            "transaction_state_partitions = 2\nmetrics_listen = \"\"\ntransaction_partition_verification = false\n",
        ),
    );
    let addr = broker.bootstrap();
    broker.create_topic("cli-txn", 1, &[]);
    let producer: BaseProducer = client_config(&addr)
        .set("transactional.id", "cli-app")
        .create()
        .expect("create a transactional producer");
    producer.init_transactions(OP_TIMEOUT).expect("init");
    producer.begin_transaction().unwrap();
    producer
        .send(
            BaseRecord::<(), str>::to("cli-txn")
                .payload("v")
                .partition(0),
        )
        .unwrap();
    producer.commit_transaction(OP_TIMEOUT).expect("commit");

    let listed = json(&ok(
        rill(&addr, &["txn", "list", "--output", "json"], None),
        "txn list",
    ));
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["transactional_id"] == "cli-app")
        .unwrap_or_else(|| panic!("cli-app not listed: {listed}"));
    assert_eq!(row["state"], "CompleteCommit", "{row}");
    let described = json(&ok(
        rill(
            &addr,
            &["txn", "describe", "cli-app", "--output", "json"],
            None,
        ),
        "txn describe",
    ));
    assert_eq!(
        (
            described["state"].as_str(),
            described["producer_epoch"].as_i64()
        ),
        (Some("CompleteCommit"), Some(0)),
        "{described}"
    );
    fails(
        rill(&addr, &["txn", "describe", "nobody"], None),
        1,
        "TRANSACTIONAL_ID_NOT_FOUND",
        "describe an unknown id",
    );

    // A transaction left open: abort it by its start offset.
    let mut c = TxnPartition::new(broker.net(), "cli-txn");
    let mut p = c.init_producer();
    let start = c.txn_produce(&mut p, &values("open", 1));
    assert_eq!(c.latest(1), start);
    let start_arg = start.to_string();
    let abort = || {
        rill(
            &addr,
            &[
                "txn",
                "abort",
                "--topic",
                "cli-txn",
                "--partition",
                "0",
                "--start-offset",
                &start_arg,
            ],
            None,
        )
    };
    let out = ok(abort(), "txn abort");
    assert!(out.contains("aborted the transaction"), "{out}");
    assert!(
        c.latest(1) > start,
        "read_committed readers pass the aborted transaction"
    );
    let seen = c.fetch_all(1);
    assert_eq!(seen.aborted, Some(vec![(p.id, start)]));
    fails(
        abort(),
        4,
        "no transaction starts at offset",
        "abort it again",
    );
}
