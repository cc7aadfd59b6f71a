//! A broker data directory written by Rill before `__consumer_offsets` used Apache Kafka's
//! record formats (`tests/fixtures/offsets-rill-07d5c37`, see its README) opens with every
//! committed offset and group it held: the first load rewrites the partition in Kafka's
//! formats with a tombstone for every old key still live (so compaction removes the old
//! records and none can outlive a later deletion), the topic becomes compacted, a group
//! deleted back then stays deleted, and the next start does not migrate again.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::groups::{committed_offsets, list_groups};
use common::keyed::read_partition_to_end;
use common::{Broker, BrokerOptions};

const FIXTURE: &str = "tests/fixtures/offsets-rill-07d5c37/data";
const MIGRATED: &str = "consumer groups rewritten in Kafka's record formats";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory of the copy");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("a fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a fixture file");
        }
    }
}

#[test]
fn offsets_written_before_kafkas_formats_are_migrated() {
    let mut options =
        BrokerOptions::with_config("offsets_topic_partitions = 1\nmetrics_listen = \"\"\n");
    options.shards = 1;
    let mut broker = Broker::start_with("groups-upgrade", options);
    broker.kill9();
    std::fs::remove_dir_all(broker.data_dir()).expect("remove the fresh data directory");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE),
        &broker.data_dir(),
    );
    broker.restart();

    let check = |broker: &Broker, when: &str| {
        let mut net = broker.net();
        let listed: Vec<String> = list_groups(&mut net).into_keys().collect();
        assert_eq!(listed, ["classic-g", "kip848-g"], "{when}: ListGroups");
        let want = |pairs: &[(i32, i64)]| pairs.iter().copied().collect::<BTreeMap<i32, i64>>();
        assert_eq!(
            committed_offsets(&mut net, "classic-g", "m", 2),
            want(&[(0, 50), (1, 0)]),
            "{when}: classic-g"
        );
        assert_eq!(
            committed_offsets(&mut net, "kip848-g", "m", 2),
            want(&[(0, 30), (1, 0)]),
            "{when}: kip848-g"
        );
        assert_eq!(
            committed_offsets(&mut net, "gone-g", "m", 2),
            want(&[(0, -1), (1, -1)]),
            "{when}: the deleted gone-g"
        );
    };
    check(&broker, "after the upgrade");
    assert!(
        broker.stderr_of_start(2).contains(MIGRATED),
        "the first start on the old data did not log the migration"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::rdkafka_topic_config(&broker, "__consumer_offsets", "cleanup.policy").as_deref()
        != Some("compact")
    {
        assert!(
            Instant::now() < deadline,
            "the offsets topic was not made compacted within 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Key by key, the latest record: every old (text) key ends in a tombstone, every live
    // record is in Kafka's formats.
    let records = read_partition_to_end(&broker, "__consumer_offsets", 0);
    let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for r in &records {
        latest.insert(r.key.clone().expect("a key"), r.value.clone());
    }
    let live_old: Vec<String> = latest
        .iter()
        .filter(|(k, v)| v.is_some() && k[0] >= b'a')
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        live_old.is_empty(),
        "old-format keys still live: {live_old:?}"
    );
    let old_keys = latest.keys().filter(|k| k[0] >= b'a').count();
    assert!(old_keys > 0, "the fixture's old records are not there");

    broker.kill9();
    broker.restart();
    check(&broker, "after another restart");
    assert!(
        !broker.stderr_of_start(3).contains(MIGRATED),
        "the second start migrated again"
    );
}
