//! Replicas never keep different records at the same offset. A leader cut off the network
//! keeps taking acks=1 writes (it does not know yet that it lost the leadership) while the
//! others elect a new leader, which takes writes of its own at the same offsets. When the
//! link comes back the old leader follows: its fetch names the epoch of its last batch, the
//! new leader answers where that epoch ended in its log (Fetch's diverging epoch), and the
//! old leader truncates to exactly there before copying the new leader's records. After
//! the three brokers stop, their copies of the partition are the same bytes.
//!
//! Before leader-epoch truncation, the old leader only truncated when its log was longer
//! than the new leader's; here it is shorter, so it kept its cut-off suffix and appended the
//! new leader's records after it: two replicas with different records at the same offsets.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{settled_topic_metadata, start_cluster_in, topic_metadata, wait_agreed};
use common::netns::test_net_or_skip;
use common::{block_on, run_bounded, Broker};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;

const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 3000\n";
const TOPIC: &str = "div";
const BEFORE: usize = 50;
const CUT_OFF: usize = 20;
const AFTER: usize = 30;

fn produce(broker: &Broker, acks: &str, values: &[String]) {
    let producer = broker.producer(acks, &[("message.timeout.ms", "20000")]);
    for v in values {
        let r = FutureRecord::<(), _>::to(TOPIC).partition(0).payload(v);
        block_on(
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("delivery")
        .unwrap_or_else(|(e, _)| panic!("produce {v}: {e}"));
    }
}

/// The partition's log bytes in a stopped broker's data directory, segment by segment.
fn log_bytes(data_dir: &Path) -> Vec<u8> {
    let dir = data_dir.join(format!("{TOPIC}-0"));
    let mut segments: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|p| fs::read(p).expect("read segment"))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_deposed_leader_truncates_to_where_its_log_diverges() {
    let Some(net) = test_net_or_skip("dv", 33, 3, "divergent replicas after a network cut") else {
        return;
    };
    let hosts: Vec<String> = (0..3).map(|i| net.host(i)).collect();
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let namespaces: Vec<String> = (0..3).map(|i| net.namespace(i)).collect();
    let mut brokers = start_cluster_in("cluster-div", &host_refs, &namespaces, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "1");
    let r = block_on(admin.create_topics([&new], &common::admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "{r:?}");
    let placed = settled_topic_metadata(&brokers[0], TOPIC, 1);
    let old_leader = placed.partitions[0].leader_id.0;
    let old = (old_leader - 1) as usize;
    let other = (old + 1) % 3;
    let before: Vec<String> = (0..BEFORE).map(|i| format!("before-{i:04}")).collect();
    produce(&brokers[other], "all", &before);

    // Cut the leader off; from inside its own namespace, write to it (it still leads in its
    // own eyes).
    net.cut(old);
    let lost: Vec<String> = (0..CUT_OFF).map(|i| format!("cut-off-{i:04}")).collect();
    let input = lost.join("\n") + "\n";
    let out = run_bounded(
        Command::new("ip").args([
            "netns",
            "exec",
            &namespaces[old],
            env!("CARGO_BIN_EXE_rill"),
            "produce",
            TOPIC,
            "--partition",
            "0",
            "--acks",
            "1",
            "--bootstrap",
            &brokers[old].bootstrap(),
        ]),
        Duration::from_secs(30),
        Some(input.as_bytes()),
    );
    assert!(
        out.status.success(),
        "the cut-off leader refused acks=1 writes: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The others elect a new leader, which takes writes at the same offsets.
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_leader = loop {
        let t = topic_metadata(&brokers[other], TOPIC);
        let l = t.partitions[0].leader_id.0;
        if l > 0 && l != old_leader {
            break l;
        }
        assert!(Instant::now() < deadline, "no new leader: {t:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let after: Vec<String> = (0..AFTER).map(|i| format!("after-{i:04}")).collect();
    produce(&brokers[(new_leader - 1) as usize], "1", &after);

    // Heal; the deposed leader follows and is back in sync.
    net.heal(old);
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = topic_metadata(&brokers[other], TOPIC);
        if t.partitions[0].isr_nodes.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old leader did not rejoin the ISR: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stop every broker (cleanly: logs sealed) and compare their copies.
    for b in &mut brokers {
        b.assert_alive();
        b.terminate();
    }
    let copies: Vec<Vec<u8>> = brokers.iter().map(|b| log_bytes(&b.data_dir())).collect();
    assert!(
        !contains(&copies[old], "cut-off-0000"),
        "the deposed leader kept the records it took while cut off"
    );
    for (i, c) in copies.iter().enumerate() {
        assert!(
            contains(c, "before-0049") && contains(c, "after-0029"),
            "broker {} misses records",
            i + 1
        );
        assert_eq!(
            c,
            &copies[(new_leader - 1) as usize],
            "broker {}'s copy differs from the new leader's (broker {new_leader})",
            i + 1
        );
    }
    drop(net);
}
