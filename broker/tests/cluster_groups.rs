//! Consumer groups in a 3-broker cluster: `__consumer_offsets` is a cluster topic and the
//! leader of a group's partition of it coordinates the group. Two rdkafka members
//! bootstrapped on different brokers find the same coordinator (FindCoordinator on every
//! broker names it), share a replication-factor-3 topic and read each record once; a
//! broker that is not the coordinator answers the group's requests with NOT_COORDINATOR.
//! `rill topic describe` and `rill group describe` work through any broker.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::block_on;
use common::cluster::{start_cluster, wait_agreed};
use common::groups::{close_bounded, TestGroup};
use common::NetClient;
use rdkafka::admin::{NewTopic, TopicReplication};
use rill_net::kafka_protocol::messages::{FindCoordinatorRequest, GroupId, HeartbeatRequest};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

const HOSTS: [&str; 3] = ["127.0.0.17", "127.0.0.18", "127.0.0.19"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\noffsets_topic_partitions = 3\ngroup_initial_rebalance_delay_ms = 0\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";
const TOPIC: &str = "shared-in-cluster";
const GROUP: &str = "cluster-readers";

#[test]
fn one_coordinator_per_group_across_the_cluster() {
    let brokers = start_cluster("cluster-groups", &HOSTS, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 6, TopicReplication::Fixed(3));
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "{r:?}");

    // Every broker names the same coordinator.
    let coordinators: BTreeSet<i32> = brokers
        .iter()
        .map(|b| {
            let mut net = NetClient::connect(b.addr());
            let r = net.send_at(
                3,
                &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(GROUP)),
            );
            assert_eq!(
                r.error_code,
                0,
                "FindCoordinator on {}: {r:?}",
                b.bootstrap()
            );
            r.node_id.0
        })
        .collect();
    assert_eq!(
        coordinators.len(),
        1,
        "brokers disagree on the coordinator: {coordinators:?}"
    );
    let coordinator = *coordinators.iter().next().unwrap();
    let other = brokers
        .iter()
        .find(|b| b.bootstrap() != brokers[(coordinator - 1) as usize].bootstrap())
        .unwrap();
    let mut net = NetClient::connect(other.addr());
    let hb = net.send(
        &HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_generation_id(1)
            .with_member_id(StrBytes::from_static_str("m")),
    );
    assert_eq!(hb.error_code, ErrorCode::NotCoordinator.code(), "{hb:?}");

    let mut group = TestGroup::new(TOPIC);
    group.add("a", brokers[0].group_consumer(GROUP, "a", &[]));
    group.add("c", brokers[2].group_consumer(GROUP, "c", &[]));
    group.wait_balanced(6, Duration::from_secs(30));
    group.produce(&brokers[1], 6, "rec", 300);
    group.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    // The CLI finds each partition's leader and the group's coordinator from any broker.
    let rill = |args: &[&str], bootstrap: &str| -> serde_json::Value {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rill"));
        cmd.args(args)
            .args(["--output", "json", "--bootstrap", bootstrap]);
        let out = common::run_bounded(&mut cmd, Duration::from_secs(60), None);
        assert!(
            out.status.success(),
            "rill {args:?} via {bootstrap}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    };
    for b in &brokers {
        let t = rill(&["topic", "describe", TOPIC], &b.bootstrap());
        let end: i64 = t["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["latest_offset"].as_i64().expect("latest offset"))
            .sum();
        assert_eq!(end, 300, "topic describe via {}: {t}", b.bootstrap());
        let g = rill(&["group", "describe", GROUP], &b.bootstrap());
        assert_eq!(g["members"].as_array().map(|m| m.len()), Some(2), "{g}");
        assert_eq!(g["partitions"].as_array().map(|p| p.len()), Some(6), "{g}");
    }
    // `rill produce` and `rill consume --group` send each partition's records to its
    // leader and the group's requests to its coordinator, whichever broker they start from.
    let lines: String = (0..60).map(|i| format!("k{i}:cli-{i}\n")).collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.args(["produce", TOPIC, "--key-separator", ":", "--bootstrap"])
        .arg(brokers[2].bootstrap());
    let out = common::run_bounded(&mut cmd, Duration::from_secs(60), Some(lines.as_bytes()));
    assert!(
        out.status.success(),
        "rill produce: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.args([
        "consume",
        TOPIC,
        "--group",
        "cli-readers",
        "--from-beginning",
        "--max-messages",
        "360",
        "--idle-timeout-ms",
        "10000",
        "--bootstrap",
    ])
    .arg(brokers[1].bootstrap());
    let out = common::run_bounded(&mut cmd, Duration::from_secs(60), None);
    assert!(
        out.status.success(),
        "rill consume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let cli: BTreeSet<&str> = text.lines().filter(|l| l.starts_with("cli-")).collect();
    assert_eq!(
        cli.len(),
        60,
        "rill consume read {} of the 60 CLI records",
        cli.len()
    );
    assert_eq!(
        text.lines().count(),
        360,
        "rill consume read {} records",
        text.lines().count()
    );
    for name in ["a", "c"] {
        let c = group.remove(name);
        close_bounded(c, name, Duration::from_secs(30));
    }
}
