//! Decommissioning a broker (`rill cluster decommission`, UnregisterBroker on the wire):
//! the controller moves every replica it holds to the other brokers (each new replica
//! copies the log from its leader and joins the ISR), hands its leaderships over, then
//! unregisters it and removes it from the metadata raft group. Every record stays
//! readable, and the decommissioned process does not register again.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::cluster::{
    four_brokers_with_topic, produce_each_partition, topic_metadata, wait_agreed,
};
use common::{assign, by_position, consume_exactly, run_bounded};
use rdkafka::Offset;

const HOSTS: [&str; 3] = ["127.0.0.55", "127.0.0.56", "127.0.0.57"];
const LEARNER_HOST: &str = "127.0.0.58";
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 4000\n";
const TOPIC: &str = "leaving";
const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 200;

fn rill(args: &[&str]) -> Output {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_rill")).args(args),
        Duration::from_secs(30),
        None,
    )
}

#[test]
fn a_decommissioned_broker_hands_its_replicas_over_and_leaves() {
    let mut brokers = four_brokers_with_topic(
        "cluster-decommission",
        &HOSTS,
        LEARNER_HOST,
        CONFIG,
        TOPIC,
        PARTITIONS,
    );
    let bootstrap = brokers[0].bootstrap();
    let held = |b: i32| {
        topic_metadata(&brokers[0], TOPIC)
            .partitions
            .iter()
            .filter(|p| p.replica_nodes.iter().any(|r| r.0 == b))
            .count()
    };
    assert_eq!(held(4), 2, "8 replicas over 4 brokers: broker 4 holds 2");
    produce_each_partition(&brokers[0], TOPIC, PARTITIONS, "kept", PER_PARTITION);

    // An unknown broker is refused with a clear error.
    let out = rill(&[
        "cluster",
        "decommission",
        "--id",
        "9",
        "--bootstrap",
        &bootstrap,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("BROKER_ID_NOT_REGISTERED"),
        "decommission of an unknown broker: {err}"
    );

    let started = Instant::now();
    let out = rill(&[
        "cluster",
        "decommission",
        "--id",
        "4",
        "--bootstrap",
        &bootstrap,
    ]);
    assert!(
        out.status.success(),
        "decommission: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The moves show while they run, or are already done.
    let listed = rill(&["cluster", "reassignments", "--bootstrap", &bootstrap]);
    assert!(listed.status.success());
    eprintln!("{}", String::from_utf8_lossy(&listed.stdout));

    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(40),
    );
    eprintln!("broker 4 decommissioned in {:?}", started.elapsed());
    assert_eq!(held(4), 0);
    for p in &topic_metadata(&brokers[0], TOPIC).partitions {
        let replicas: BTreeSet<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
        let isr: BTreeSet<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
        assert_eq!(replicas.len(), 2, "{p:?}");
        assert_eq!(isr, replicas, "{p:?}");
        assert!(replicas.contains(&p.leader_id.0), "{p:?}");
    }
    // It stays out: the running process does not register or join again.
    std::thread::sleep(Duration::from_secs(3));
    wait_agreed(
        &brokers,
        &[0, 1, 2],
        &[1, 2, 3].into(),
        Duration::from_secs(1),
    );
    brokers[3].assert_alive();
    let log = brokers[3].stderr_of_start(1);
    assert!(
        log.contains("this broker was decommissioned"),
        "broker 4 does not say it was decommissioned:\n{log}"
    );

    // Every record is still there, on the remaining brokers.
    let consumer = brokers[0].consumer(&[]);
    let all: Vec<i32> = (0..PARTITIONS).collect();
    assign(&consumer, TOPIC, &all, Offset::Beginning);
    let got = by_position(&consume_exactly(
        &consumer,
        PARTITIONS as usize * PER_PARTITION,
        Duration::from_secs(30),
    ));
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let rec = got
                .get(&(p, i as i64))
                .unwrap_or_else(|| panic!("record {i} of partition {p} lost"));
            assert_eq!(
                rec.value.as_deref(),
                Some(format!("kept-{p}-{i}").as_bytes())
            );
        }
    }

    // `rill cluster reassign` moves a partition between the remaining brokers.
    let before: Vec<i32> = topic_metadata(&brokers[0], TOPIC).partitions[0]
        .replica_nodes
        .iter()
        .map(|b| b.0)
        .collect();
    let newcomer = (1..=3).find(|b| !before.contains(b)).unwrap();
    let target = vec![newcomer, before[0]];
    let arg = format!("{},{}", target[0], target[1]);
    let out = rill(&[
        "cluster",
        "reassign",
        TOPIC,
        "--partition",
        "0",
        "--replicas",
        &arg,
        "--bootstrap",
        &bootstrap,
    ]);
    assert!(
        out.status.success(),
        "rill cluster reassign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = &topic_metadata(&brokers[0], TOPIC).partitions[0];
        let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
        let isr: BTreeSet<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
        if replicas == target && isr == target.iter().copied().collect() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partition 0 not moved from {before:?} to {target:?}: {replicas:?} isr {isr:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Broker-level configs go through the cluster from any broker: "" is every broker's
    // default, an id one broker's own over it; topics without overrides follow.
    let retention = |i: usize, resource: &str, key: &str| -> String {
        let out = rill(&[
            "config",
            "get",
            resource,
            &if resource == "broker" {
                (i + 1).to_string()
            } else {
                TOPIC.to_string()
            },
            "--output",
            "json",
            "--bootstrap",
            &brokers[i].bootstrap(),
        ]);
        assert!(
            out.status.success(),
            "config get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[key]["value"].as_str().unwrap_or_default().to_string()
    };
    let set = |resource_name: &str, kv: &str| {
        let out = rill(&[
            "config",
            "set",
            "broker",
            resource_name,
            kv,
            "--bootstrap",
            &bootstrap,
        ]);
        assert!(
            out.status.success(),
            "config set broker {resource_name:?} {kv}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    set("", "log.retention.ms=3600000");
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..3).any(|i| retention(i, "broker", "log.retention.ms") != "3600000") {
        assert!(
            Instant::now() < deadline,
            "the cluster-wide default did not reach every broker"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    set("3", "log.retention.ms=7200000");
    let deadline = Instant::now() + Duration::from_secs(10);
    while retention(2, "broker", "log.retention.ms") != "7200000"
        || retention(2, "topic", "retention.ms") != "7200000"
    {
        assert!(
            Instant::now() < deadline,
            "broker 3's own default did not apply"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(retention(1, "broker", "log.retention.ms"), "3600000");
    assert_eq!(retention(1, "topic", "retention.ms"), "3600000");
    let out = rill(&[
        "config",
        "set",
        "broker",
        "9",
        "log.retention.ms=1",
        "--bootstrap",
        &bootstrap,
    ]);
    assert!(
        !out.status.success(),
        "a config for an unregistered broker was taken"
    );
}
