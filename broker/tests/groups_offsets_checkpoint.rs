//! `__consumer_offsets` does not grow without bound: once `offsets_checkpoint_bytes` have
//! been appended to a partition, the coordinator writes its groups' whole state again and
//! deletes the records before it. Thousands of commits later the partition holds a bounded
//! number of records, every group's latest committed offsets are still what OffsetFetch
//! answers, and they survive kill -9 and a restart (which replays only the tail).

mod common;

use std::collections::BTreeMap;

use common::groups::{commit, committed_offsets, delete_group};
use common::{Broker, BrokerOptions};

const TOPIC: &str = "t";
const PARTITIONS: i32 = 4;
const GROUPS: usize = 5;
const COMMITS: usize = 1500;

#[test]
fn offsets_partition_stays_bounded_and_keeps_the_latest_offsets() {
    let mut options = BrokerOptions::with_config(
        "offsets_topic_partitions = 1\nmetrics_listen = \"\"\noffsets_checkpoint_bytes = 4096\n",
    );
    options.shards = 1;
    let mut broker = Broker::start_with("groups-checkpoint", options);
    broker.create_topic(TOPIC, PARTITIONS, &[]);
    let mut net = broker.net();
    let mut want: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for i in 0..COMMITS {
        let group = format!("g{}", i % GROUPS);
        let p = (i / GROUPS) as i32 % PARTITIONS;
        let offset = i as i64 * 10;
        let codes = commit(&mut net, &group, "", None, -1, TOPIC, &[(p, offset)]);
        assert_eq!(codes, vec![(p, 0)], "commit {i}");
        want.entry(group).or_default().insert(p, offset);
    }
    // A deleted group must not come back from an older checkpoint.
    assert_eq!(delete_group(&mut net, "g4"), 0);
    want.remove("g4");
    for i in 0..40 {
        let codes = commit(&mut net, "g0", "", None, -1, TOPIC, &[(0, 100_000 + i)]);
        assert_eq!(codes, vec![(0, 0)]);
    }
    want.get_mut("g0").unwrap().insert(0, 100_039);

    let (low, high) = broker.watermarks("__consumer_offsets", 0);
    eprintln!("__consumer_offsets/0 after {COMMITS} commits: log start {low}, end {high}");
    assert!(
        low > 0,
        "no checkpoint deleted anything (log start {low}, end {high})"
    );
    assert!(
        high - low <= 300,
        "{} records kept for {GROUPS} groups x {PARTITIONS} partitions (log start {low}, end {high})",
        high - low
    );
    let check = |net: &mut common::NetClient, when: &str| {
        for (group, offsets) in &want {
            let got = committed_offsets(net, group, TOPIC, PARTITIONS);
            let expected: BTreeMap<i32, i64> = (0..PARTITIONS)
                .map(|p| (p, offsets.get(&p).copied().unwrap_or(-1)))
                .collect();
            assert_eq!(got, expected, "{when}: committed offsets of {group}");
        }
        let g4 = committed_offsets(net, "g4", TOPIC, PARTITIONS);
        assert!(
            g4.values().all(|o| *o == -1),
            "{when}: deleted g4 has offsets {g4:?}"
        );
    };
    check(&mut net, "before restart");
    broker.kill9();
    broker.restart();
    let mut net = broker.net();
    check(&mut net, "after kill -9 and restart");
    assert!(
        broker
            .stderr_of_start(1)
            .contains("consumer group checkpoint written"),
        "no checkpoint was logged"
    );
}
