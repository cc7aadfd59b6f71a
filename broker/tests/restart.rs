//! A clean stop (SIGTERM, exit 0) and a restart on the same directory bring back every topic
//! with its partition count and config overrides, every record (key, value, timestamp,
//! offset), the log start offsets moved by DeleteRecords, and the offsets continue where they
//! stopped. A clean stop leaves every partition's clean-shutdown marker (the storage's
//! `partition.checkpoint`), so the next start runs no recovery scan, and neither start's log
//! has a line with "recover" in it. A restart with another shard count still finds every
//! partition.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{admin_options, block_on, lines_containing, read_all, Broker, Rec};
use rdkafka::admin::ResourceSpecifier;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, Timestamp, TopicPartitionList};

const A: &str = "restart-a";
const B: &str = "restart-b";
const A_PARTITIONS: i32 = 3;
const A_RECORDS: usize = 600;
const B_RECORDS: usize = 50;
const A_CONFIGS: &[(&str, &str)] = &[
    ("retention.ms", "3600000"),
    ("max.message.bytes", "500000"),
    ("segment.bytes", "65536"),
];
const B_CONFIGS: &[(&str, &str)] = &[
    ("message.timestamp.type", "LogAppendTime"),
    ("flush.messages", "1"),
];

fn a_value(i: usize) -> String {
    format!("a-{i}-").repeat(60)
}

/// Config overrides set on `topic` (source DynamicTopic), by name.
fn overrides(broker: &Broker, topic: &str) -> BTreeMap<String, String> {
    let admin = broker.admin();
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()))
            .unwrap_or_else(|e| panic!("DescribeConfigs {topic}: {e}"));
    let resource = results
        .into_iter()
        .next()
        .expect("one resource")
        .unwrap_or_else(|code| panic!("DescribeConfigs {topic}: {code:?}"));
    resource
        .entries
        .into_iter()
        .filter(|e| e.source == rdkafka::admin::ConfigSource::DynamicTopic)
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

fn expected_overrides(configs: &[(&str, &str)]) -> BTreeMap<String, String> {
    configs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Produces to A (explicit partitions) and B; returns the delivery positions.
fn produce_all(broker: &Broker, round: usize) -> HashMap<(String, i32, i64), String> {
    let producer = broker.producer("all", &[]);
    let now = common::now_ms();
    let mut futures = Vec::new();
    for i in 0..A_RECORDS {
        let value = format!("r{round}-{}", a_value(i));
        let key = format!("k{i}");
        let r = FutureRecord::to(A)
            .key(&key)
            .payload(&value)
            .partition((i % A_PARTITIONS as usize) as i32)
            .timestamp(now - 60_000 + i as i64);
        futures.push((
            A,
            value.clone(),
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        ));
    }
    for i in 0..B_RECORDS {
        let value = format!("r{round}-b-{i}");
        let r = FutureRecord::<(), _>::to(B)
            .payload(&value)
            .partition(0)
            .timestamp(1000 + i as i64);
        futures.push((
            B,
            value.clone(),
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        ));
    }
    let mut out = HashMap::new();
    for (topic, value, f) in futures {
        let d = block_on(f)
            .expect("delivery cancelled")
            .unwrap_or_else(|(e, _)| panic!("produce {value} to {topic}: {e}"));
        out.insert((topic.to_string(), d.partition, d.offset), value);
    }
    out
}

#[test]
fn clean_restart_keeps_topics_configs_and_data() {
    let mut broker = Broker::start("restart");
    broker.create_topic(A, A_PARTITIONS, A_CONFIGS);
    broker.create_topic(B, 1, B_CONFIGS);
    let before_produce = common::now_ms();
    let delivered = produce_all(&broker, 0);
    let after_produce = common::now_ms();

    // Move partition 0's log start.
    let admin = broker.admin();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(A, 0, Offset::Offset(10)).unwrap();
    let result = block_on(admin.delete_records(&tpl, &admin_options()))
        .unwrap_or_else(|e| panic!("DeleteRecords: {e}"));
    result
        .find_partition(A, 0)
        .expect("partition answered")
        .error()
        .unwrap_or_else(|e| panic!("DeleteRecords: {e}"));

    let a_count = A_RECORDS - 10;
    let a_before = read_all(&broker, A, &[0, 1, 2], a_count);
    let b_before = read_all(&broker, B, &[0], B_RECORDS);
    // Sanity of what is compared after the restart.
    for ((p, o), r) in &a_before {
        let want = delivered
            .get(&(A.to_string(), *p, *o))
            .unwrap_or_else(|| panic!("consumed {A}/{p}/{o}, which was never acknowledged"));
        assert_eq!(r.value.as_deref(), Some(want.as_bytes()));
    }
    for r in b_before.values() {
        match r.timestamp {
            Timestamp::LogAppendTime(t) => assert!(
                (before_produce - 1000..=after_produce + 1000).contains(&t),
                "LogAppendTime {t} outside the produce window"
            ),
            other => panic!("{B} has message.timestamp.type=LogAppendTime, record has {other:?}"),
        }
    }
    let watermarks_before: Vec<(i64, i64)> =
        (0..A_PARTITIONS).map(|p| broker.watermarks(A, p)).collect();
    assert_eq!(watermarks_before[0].0, 10);

    broker.terminate();
    assert_stopped_cleanly(&broker, "after the first SIGTERM");
    // A partition directory deleted just before a crash: renamed, not yet removed.
    let stray = broker.data_dir().join("gone-0.4242-7.deleted");
    std::fs::create_dir_all(&stray).expect("create a stray deleted directory");
    std::fs::write(stray.join("00000000000000000000.log"), vec![0u8; 1 << 20])
        .expect("write a stray segment");
    broker.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stray.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the start did not remove {}",
            stray.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    assert_eq!(
        overrides(&broker, A),
        expected_overrides(A_CONFIGS),
        "{A} configs after restart"
    );
    assert_eq!(
        overrides(&broker, B),
        expected_overrides(B_CONFIGS),
        "{B} configs after restart"
    );
    broker.wait_for_topic(A, A_PARTITIONS as usize);
    broker.wait_for_topic(B, 1);
    for p in 0..A_PARTITIONS {
        assert_eq!(
            broker.watermarks(A, p),
            watermarks_before[p as usize],
            "{A}/{p} watermarks after restart"
        );
    }
    assert_eq!(
        read_all(&broker, A, &[0, 1, 2], a_count),
        a_before,
        "{A} after restart"
    );
    assert_eq!(
        read_all(&broker, B, &[0], B_RECORDS),
        b_before,
        "{B} after restart"
    );

    // Offsets continue where they stopped.
    let second = produce_all(&broker, 1);
    for (topic, p, o) in second.keys() {
        let hw = if topic == A {
            watermarks_before[*p as usize].1
        } else {
            B_RECORDS as i64
        };
        assert!(
            *o >= hw,
            "{topic}/{p}: new record at {o}, below the old end {hw}"
        );
    }
    for p in 0..A_PARTITIONS {
        let (_, hw) = watermarks_before[p as usize];
        assert_eq!(
            broker.watermarks(A, p).1,
            hw + (A_RECORDS / A_PARTITIONS as usize) as i64,
            "{A}/{p}: offsets continue densely after restart"
        );
    }

    // Neither the first run (its shutdown included) nor the start after the clean stop
    // mentions recovery.
    for start in [1, 2] {
        let log = broker.stderr_of_start(start);
        assert!(
            !log.is_empty(),
            "start {start} logged nothing to stderr (expected at least its start-up line)"
        );
        let recovering = lines_containing(&log, "recover");
        assert!(
            recovering.is_empty(),
            "start {start} (a fresh start or one after a clean stop) mentions recovery:\n{}",
            recovering.join("\n")
        );
    }
    broker.terminate();
    assert_stopped_cleanly(&broker, "after the second SIGTERM");
}

/// Every partition left the clean-shutdown marker that lets the next open skip the recovery
/// scan (the broker logs nothing when it scans, so the log alone cannot show it).
fn assert_stopped_cleanly(broker: &Broker, when: &str) {
    let checkpoints = common::partition_checkpoints(&broker.data_dir());
    assert_eq!(
        checkpoints.len(),
        A_PARTITIONS as usize + 1,
        "{when}: expected one {} per partition under {}, found {checkpoints:?}",
        common::CHECKPOINT_FILE,
        broker.data_dir().display()
    );
    for (path, cp) in &checkpoints {
        assert!(
            cp.clean_shutdown.is_some(),
            "{when}: {} has no clean-shutdown marker: the next start would rescan",
            path.display()
        );
    }
}

#[test]
fn restart_with_another_shard_count_finds_every_partition() {
    let mut broker = Broker::start("restart-shards");
    broker.create_topic(A, A_PARTITIONS, A_CONFIGS);
    broker.create_topic(B, 1, B_CONFIGS);
    produce_all(&broker, 0);
    let a_before: BTreeMap<(i32, i64), Rec> = read_all(&broker, A, &[0, 1, 2], A_RECORDS);
    let b_before = read_all(&broker, B, &[0], B_RECORDS);
    for shards in [1, 3] {
        broker.terminate();
        broker.set_shards(shards);
        broker.restart();
        broker.wait_for_topic(A, A_PARTITIONS as usize);
        assert_eq!(
            read_all(&broker, A, &[0, 1, 2], A_RECORDS),
            a_before,
            "{A} after a restart with {shards} shards"
        );
        assert_eq!(
            read_all(&broker, B, &[0], B_RECORDS),
            b_before,
            "{B} after a restart with {shards} shards"
        );
        assert_eq!(overrides(&broker, A), expected_overrides(A_CONFIGS));
    }
    broker.terminate();
}

/// A data directory of a single-node broker is not taken over by cluster mode (which
/// would drop its topics for the cluster's): the broker refuses to start and says why,
/// and the data is still there for the single-node broker.
#[test]
fn cluster_mode_refuses_a_single_node_data_directory() {
    let mut broker = Broker::start("restart-cluster-refused");
    broker.create_topic("kept", 1, &[]);
    broker.terminate();
    let out = common::run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_rill")).args([
            "broker",
            "--data-dir",
            broker.data_dir().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{}", common::free_port()),
            "--node-id",
            "1",
            "--controller-quorum",
            &format!("1@127.0.0.1:{}", common::free_port()),
        ]),
        std::time::Duration::from_secs(20),
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("topic(s) of a single-node broker (kept"),
        "cluster mode on a single-node data directory: {}\n{stderr}",
        out.status
    );
    assert!(!broker.data_dir().join("meta").join("raft").exists());
    broker.restart();
    broker.wait_for_topic("kept", 1);
}
