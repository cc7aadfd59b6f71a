//! Clients other than librdkafka-through-Rust: kafka-python (a pure-Python protocol
//! implementation, `tests/python/kafka_python_check.py`) produces and consumes with assign,
//! and runs a consumer group of two members that split the topic, commit and resume
//! (`tests/python/kafka_python_group_check.py`); kcat (Debian's, with an older librdkafka)
//! produces lines and reads them back. What each wrote is then read with rdkafka (or the
//! raw protocol client) too, so the clients agree with each other. confluent-kafka (Python
//! on librdkafka) runs transactions (`tests/python/confluent_txn_check.py`): commit, abort,
//! consume-transform-produce with the offsets in the transaction, and a fenced zombie.
//!
//! When kafka-python or kcat is missing the test fails under CI (env CI set) with the install
//! command, and otherwise prints a loud notice and passes without checking.

mod common;

use std::process::Command;
use std::time::Duration;

use common::groups::{committed_offsets, describe_group, group_options};
use common::{lines_containing, read_all, run_bounded, tool_available, Broker};

const INSTALL_HINT: &str = "apt-get install -y kcat python3-pip && pip install kafka-python";

fn available(tool: &str, probe: &mut Command) -> bool {
    tool_available(tool, probe, INSTALL_HINT, "this test")
}

#[test]
fn kafka_python_produces_and_consumes() {
    if !available(
        "kafka-python",
        Command::new("python3").args(["-c", "import kafka"]),
    ) {
        return;
    }
    let mut broker = Broker::start("kafka-python");
    let topic = "kafka-python";
    let count = 300;
    broker.create_topic(topic, 2, &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/kafka_python_check.py"
    );
    let out = run_bounded(
        Command::new("python3").args([script, &broker.bootstrap(), topic, "2", &count.to_string()]),
        Duration::from_secs(90),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("kafka-python ok: {count} records")),
        "kafka-python check failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        out.status,
        broker.log_tail(broker.starts())
    );

    // rdkafka reads what kafka-python wrote.
    let recs = read_all(&broker, topic, &[0, 1], count);
    for i in [0usize, 1, 150, 299] {
        let p = (i % 2) as i32;
        let o = (i / 2) as i64;
        let r = recs
            .get(&(p, o))
            .unwrap_or_else(|| panic!("record {i} not at {p}/{o}"));
        assert_eq!(r.key.as_deref(), Some(format!("py-key-{i}").as_bytes()));
        assert_eq!(
            r.value.as_deref(),
            Some(format!("py-value-{i}-").repeat(1 + i % 7).as_bytes())
        );
        assert_eq!(
            r.headers,
            vec![
                ("seq".to_string(), Some(i.to_string().into_bytes())),
                ("lang".to_string(), Some(b"python".to_vec())),
            ]
        );
    }
    broker.assert_alive();
}

#[test]
fn kafka_python_runs_a_consumer_group() {
    if !available(
        "kafka-python",
        Command::new("python3").args(["-c", "import kafka"]),
    ) {
        return;
    }
    let mut broker = Broker::start_with("kafka-python-group", group_options(""));
    let topic = "kafka-python-group";
    let group = "kafka-python-group";
    let partitions = 4;
    let count = 400;
    broker.create_topic(topic, partitions, &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/kafka_python_group_check.py"
    );
    let out = run_bounded(
        Command::new("python3").args([
            script,
            &broker.bootstrap(),
            topic,
            &partitions.to_string(),
            &count.to_string(),
            group,
        ]),
        Duration::from_secs(150),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("kafka-python group ok: {count} records")),
        "kafka-python group check failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        out.status,
        broker.log_tail(broker.starts())
    );

    // The broker agrees: every member left, and the committed offsets are the end of each
    // partition (the script produced count + 50 records round robin).
    let mut net = broker.net();
    let described = describe_group(&mut net, group);
    assert_eq!(described.group_state.as_str(), "Empty", "{described:?}");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    let committed = committed_offsets(&mut net, group, topic, partitions);
    for p in 0..partitions {
        let (_, high) = broker.watermarks(topic, p);
        assert_eq!(
            committed.get(&p),
            Some(&high),
            "committed offset of {topic}/{p} after the kafka-python group"
        );
    }
    assert_eq!(
        committed.values().sum::<i64>(),
        count as i64 + 50,
        "{committed:?}"
    );
    broker.assert_alive();
}

#[test]
fn kcat_produces_and_consumes() {
    if !available("kcat", Command::new("kcat").arg("-V")) {
        return;
    }
    let mut broker = Broker::start("kcat");
    let topic = "kcat-lines";
    broker.create_topic(topic, 1, &[]);
    let bootstrap = broker.bootstrap();

    // Metadata: the topic is listed with its one partition.
    let out = run_bounded(
        Command::new("kcat").args(["-b", &bootstrap, "-L", "-t", topic, "-m", "20"]),
        Duration::from_secs(30),
        None,
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listing.contains(&format!("topic \"{topic}\" with 1 partitions")),
        "kcat -L:\n{listing}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lines: Vec<String> = (0..50).map(|i| format!("key{i}:kcat line {i}")).collect();
    let input = lines.join("\n") + "\n";
    let out = run_bounded(
        Command::new("kcat").args([
            "-b", &bootstrap, "-P", "-t", topic, "-p", "0", "-K:", "-X", "acks=all", "-m", "20",
        ]),
        Duration::from_secs(45),
        Some(input.as_bytes()),
    );
    assert!(
        out.status.success(),
        "kcat -P failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run_bounded(
        Command::new("kcat").args([
            "-b",
            &bootstrap,
            "-C",
            "-t",
            topic,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o %k=%s\n",
            "-m",
            "20",
        ]),
        Duration::from_secs(45),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kcat -C failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<&str> = stdout.lines().collect();
    let want: Vec<String> = (0..50)
        .map(|i| format!("{i} key{i}=kcat line {i}"))
        .collect();
    assert_eq!(got, want, "kcat -C read back");
    assert!(
        lines_containing(&String::from_utf8_lossy(&out.stderr), "error").is_empty(),
        "kcat -C reported errors:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // rdkafka reads what kcat wrote.
    let recs = read_all(&broker, topic, &[0], 50);
    let r = &recs[&(0, 49)];
    assert_eq!(r.key.as_deref(), Some(&b"key49"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"kcat line 49"[..]));
    broker.assert_alive();
}

#[test]
fn confluent_kafka_transactions_commit_abort_and_fence() {
    if !tool_available(
        "confluent-kafka (Python)",
        Command::new("python3").args(["-c", "import confluent_kafka"]),
        "pip install confluent-kafka==2.11.1",
        "this test",
    ) {
        return;
    }
    let broker = Broker::start_with("confluent-txn", group_options(""));
    let (topic, out_topic, group) = (
        "confluent-txn-in",
        "confluent-txn-out",
        "confluent-txn-group",
    );
    broker.create_topic(topic, 1, &[]);
    broker.create_topic(out_topic, 1, &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/confluent_txn_check.py"
    );
    let out = run_bounded(
        Command::new("python3").args([script, &broker.bootstrap(), topic, out_topic, group]),
        Duration::from_secs(150),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let steps = lines_containing(&stdout, "ok ");
    assert!(
        out.status.success() && steps.len() == 4,
        "confluent-kafka transactions failed ({}): steps {steps:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        out.status,
        broker.log_tail(broker.starts())
    );
    // The offsets sent to the transaction are the group's committed offsets: past all ten
    // committed records (offsets 0-9), at most the log end (the commit marker at 10, the
    // aborted records at 11-20 and their marker at 21: librdkafka may have stepped past
    // them).
    let mut net = broker.net();
    let committed = committed_offsets(&mut net, group, topic, 1);
    assert!(
        committed.get(&0).is_some_and(|o| (10..=22).contains(o)),
        "{committed:?}"
    );
    // rdkafka reads the output as the script did.
    let recs = read_all(&broker, out_topic, &[0], 10);
    let values: Vec<String> = recs
        .values()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("COMMITTED-{i}")).collect();
    assert_eq!(values, want);
}
