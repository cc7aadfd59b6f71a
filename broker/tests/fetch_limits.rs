//! Fetch's byte limits as Kafka applies them (KIP-74): the first batch of the first
//! partition with data is returned whatever `max_bytes` and `partition_max_bytes` say, so a
//! consumer always makes progress; after it, no partition returns a complete batch that
//! would take the response past `max_bytes` or the partition past its
//! `partition_max_bytes` (Kafka sends a cut batch there, which clients drop; sending
//! nothing is the same to them). Two partitions each hold one batch of about 1 KiB.

mod common;

use common::{batch_codecs, fetched_partitions, topic_name, Broker, NetClient};
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::FetchRequest;

const TOPIC: &str = "fetch-limits";

/// Fetches both partitions from 0; (whole batches, bytes) per partition, in order.
fn fetch(net: &mut NetClient, max_bytes: i32, partition_max_bytes: i32) -> Vec<(usize, usize)> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(TOPIC))
            .with_partitions(
                (0..2)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )]);
    let response = net.send_at(12, &request);
    fetched_partitions(&response)
        .iter()
        .map(|p| (batch_codecs(&p.records).len(), p.records.len()))
        .collect()
}

fn setup(name: &str) -> (Broker, NetClient) {
    let broker = Broker::start(name);
    broker.create_topic(TOPIC, 2, &[]);
    let mut net = broker.net();
    let value = vec![b'v'; 1000];
    for p in 0..2 {
        let (code, _) = net.produce_values(TOPIC, p, &[&value]);
        assert_eq!(code, 0);
    }
    (broker, net)
}

#[test]
fn the_first_batch_is_returned_past_both_limits() {
    let (_broker, mut net) = setup("fetch-limits-first");
    let got = fetch(&mut net, 1, 1);
    assert_eq!(got[0].0, 1, "the first partition's first batch: {got:?}");
    assert_eq!(got[1].0, 0, "nothing more once max_bytes is spent: {got:?}");
}

#[test]
fn later_partitions_stay_within_the_limits() {
    let (_broker, mut net) = setup("fetch-limits-later");
    let got = fetch(&mut net, 1500, 1500);
    let total: usize = got.iter().map(|g| g.1).sum();
    assert_eq!(got[0].0, 1, "{got:?}");
    assert!(
        total <= 1500,
        "the response holds {total} bytes for max_bytes 1500: {got:?}"
    );
    let got = fetch(&mut net, 1 << 20, 100);
    assert_eq!(
        got[0].0, 1,
        "the first partition may exceed partition_max_bytes: {got:?}"
    );
    assert!(
        got[1].1 <= 100,
        "the second partition holds {} bytes for 100: {got:?}",
        got[1].1
    );
}
