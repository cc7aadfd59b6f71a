//! `__consumer_offsets` is compacted like any other topic, in Kafka's own record formats:
//! thousands of commits later the partition holds about one record per key (the cleaner
//! removed the rest), every record's key is one of Kafka's group coordinator keys, every
//! group's latest committed offsets are still what OffsetFetch answers, a deleted group stays
//! deleted, and all of it survives kill -9 and a restart (which replays the compacted log).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::groups::{commit, committed_offsets, delete_group, list_groups};
use common::keyed::read_partition_to_end;
use common::{Broker, BrokerOptions};

const TOPIC: &str = "t";
const PARTITIONS: i32 = 4;
const GROUPS: usize = 5;
const COMMITS: usize = 1500;

#[test]
fn offsets_partition_is_compacted_and_keeps_the_latest_offsets() {
    let mut options = BrokerOptions::with_config(
        "offsets_topic_partitions = 1\nmetrics_listen = \"\"\n\
         offsets_topic_segment_bytes = 4096\nlog_cleaner_backoff_ms = 100\n\
         [topic_defaults]\n\"min.cleanable.dirty.ratio\" = 0.01\n",
    );
    options.shards = 1;
    let mut broker = Broker::start_with("groups-compaction", options);
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
    // A deleted group must not come back once older records are compacted.
    assert_eq!(delete_group(&mut net, "g4"), 0);
    want.remove("g4");
    for i in 0..40 {
        let codes = commit(&mut net, "g0", "", None, -1, TOPIC, &[(0, 100_000 + i)]);
        assert_eq!(codes, vec![(0, 0)]);
    }
    want.get_mut("g0").unwrap().insert(0, 100_039);

    assert_eq!(
        common::rdkafka_topic_config(&broker, "__consumer_offsets", "cleanup.policy").as_deref(),
        Some("compact"),
        "the offsets topic's cleanup.policy"
    );
    // The cleaner compacts the closed segments: from about 1,550 records written to about
    // one per key (20 offsets, g4's tombstones) plus the active segment (4 KiB). g0's
    // partition 0 was committed 40 times at the end: the cleaned log keeps one record of
    // them, the active segment (never compacted) the ones written into it.
    let (_, end) = broker.watermarks("__consumer_offsets", 0);
    let g0p0_key = [&[0u8, 1, 0, 2][..], b"g0", &[0, 1], b"t", &[0, 0, 0, 0]].concat();
    let g0p0 = |records: &[common::Rec]| -> Vec<common::Rec> {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(&g0p0_key[..]))
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records = read_partition_to_end(&broker, "__consumer_offsets", 0);
        if records.len() <= 60 && g0p0(&records).len() <= 3 {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "__consumer_offsets/0 still holds {} of its {end} records after 60 s ({} of g0 t-0)",
            records.len(),
            g0p0(&records).len()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!(
        "__consumer_offsets/0: {} records of {end} left after compaction",
        records.len()
    );
    // The last of g0 t-0 is the latest commit, in OffsetCommitValue v3 (version, offset, ...).
    let g0p0 = g0p0(&records);
    let last = g0p0.last().unwrap().value.clone().expect("not a tombstone");
    assert_eq!(&last[..2], &[0, 3], "OffsetCommitValue version");
    assert_eq!(i64::from_be_bytes(last[2..10].try_into().unwrap()), 100_039);
    for r in &records {
        let key = r.key.as_deref().expect("every group record has a key");
        let key_type = i16::from_be_bytes([key[0], key[1]]);
        assert!(
            (1..=8).contains(&key_type),
            "offset {}: key type {key_type} is not one of Kafka's group coordinator keys",
            r.offset
        );
    }
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
    // ListGroups, before any request names a group, loads the partitions this broker leads
    // (as Kafka's coordinator does when elected) and lists every group but the deleted one.
    let listed: Vec<String> = list_groups(&mut net).into_keys().collect();
    assert_eq!(
        listed,
        ["g0", "g1", "g2", "g3"],
        "ListGroups after the restart"
    );
    check(&mut net, "after kill -9 and restart");
}
