//! KIP-227 incremental fetch sessions, on the wire through `rill_net`'s client:
//! a full fetch with session 0 / epoch 0 opens a session; an incremental fetch with nothing
//! new returns no partition; after a produce it returns just the changed partition; a wrong
//! epoch is INVALID_FETCH_SESSION_EPOCH (and the session survives it); a forgotten topic is
//! no longer returned; epoch -1 closes the session, after which it is unknown.

mod common;

use common::{fetched_partitions, topic_name, Broker, FetchedPartition, NetClient};
use rill_net::client::decode_record_batches;
use rill_net::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ForgottenTopic,
};
use rill_net::kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};

const MAIN: &str = "sessions-main";
const OTHER: &str = "sessions-other";
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;

fn partition(p: i32, offset: i64) -> FetchPartition {
    FetchPartition::default()
        .with_partition(p)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)
}

fn request(session_id: i32, epoch: i32, topics: Vec<FetchTopic>) -> FetchRequest {
    FetchRequest::default()
        // Short long-poll: an incremental fetch with nothing new waits this long.
        .with_max_wait_ms(200)
        .with_min_bytes(1)
        .with_max_bytes(4 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

fn topic(name: &str, partitions: Vec<FetchPartition>) -> FetchTopic {
    FetchTopic::default()
        .with_topic(topic_name(name))
        .with_partitions(partitions)
}

fn fetch(net: &mut NetClient, request: &FetchRequest) -> FetchResponse {
    net.send(request)
}

/// (topic, partition) of every partition in the response, sorted.
fn names(parts: &[FetchedPartition]) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = parts
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    v.sort();
    v
}

fn values(p: &FetchedPartition) -> Vec<(i64, String)> {
    decode_record_batches(&p.records)
        .expect("decode fetched batches")
        .into_iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"")).into_owned(),
            )
        })
        .collect()
}

#[test]
fn incremental_fetch_sessions() {
    let mut broker = Broker::start("fetch-sessions");
    broker.create_topic(MAIN, 2, &[]);
    broker.create_topic(OTHER, 1, &[]);
    let mut net = broker.net();
    let version = net.version(ApiKey::Fetch);
    assert!(
        version >= 7,
        "Fetch v{version} negotiated; sessions need v7+"
    );
    let mut producer = broker.net();

    // Full fetch, new session.
    let full = fetch(
        &mut net,
        &request(
            0,
            0,
            vec![
                topic(MAIN, vec![partition(0, 0), partition(1, 0)]),
                topic(OTHER, vec![partition(0, 0)]),
            ],
        ),
    );
    assert_eq!(full.error_code, 0, "full fetch error");
    let session = full.session_id;
    assert_ne!(session, 0, "a full fetch with epoch 0 must open a session");
    let parts = fetched_partitions(&full);
    assert_eq!(
        names(&parts),
        vec![(MAIN.into(), 0), (MAIN.into(), 1), (OTHER.into(), 0)],
        "a full fetch answers every requested partition"
    );
    assert!(parts
        .iter()
        .all(|p| p.error_code == 0 && p.high_watermark == 0));

    // Nothing new: no partition.
    let r = fetch(&mut net, &request(session, 1, vec![]));
    assert_eq!(r.error_code, 0, "incremental fetch (epoch 1) error");
    assert_eq!(r.session_id, session, "the session id is kept");
    assert_eq!(
        names(&fetched_partitions(&r)),
        vec![],
        "an incremental fetch with no changes returns no partition"
    );

    // A produce to main/1: only main/1 comes back, with the record.
    assert_eq!(producer.produce_values(MAIN, 1, &[b"one"]), (0, 0));
    let r = fetch(&mut net, &request(session, 2, vec![]));
    assert_eq!(r.error_code, 0, "incremental fetch (epoch 2) error");
    let parts = fetched_partitions(&r);
    assert_eq!(
        names(&parts),
        vec![(MAIN.into(), 1)],
        "only the changed partition"
    );
    assert_eq!(values(&parts[0]), vec![(0, "one".to_string())]);
    assert_eq!(parts[0].high_watermark, 1);

    // Advance main/1's position in the session: nothing new again.
    let r = fetch(
        &mut net,
        &request(session, 3, vec![topic(MAIN, vec![partition(1, 1)])]),
    );
    assert_eq!(r.error_code, 0, "incremental fetch (epoch 3) error");
    assert_eq!(
        names(&fetched_partitions(&r)),
        vec![],
        "after moving past the record, nothing is new"
    );

    // Wrong epochs: refused, and the session is still there afterwards.
    for wrong in [3, 5, 100] {
        let r = fetch(&mut net, &request(session, wrong, vec![]));
        assert_eq!(
            r.error_code, INVALID_FETCH_SESSION_EPOCH,
            "epoch {wrong} when 4 is expected"
        );
    }
    let r = fetch(&mut net, &request(session, 4, vec![]));
    assert_eq!(r.error_code, 0, "the right epoch (4) after wrong ones");
    assert_eq!(names(&fetched_partitions(&r)), vec![]);

    // Forget `other`: data produced to it no longer comes back; main/0's does.
    let forget =
        request(session, 5, vec![]).with_forgotten_topics_data(vec![ForgottenTopic::default()
            .with_topic(topic_name(OTHER))
            .with_partitions(vec![0])]);
    let r = fetch(&mut net, &forget);
    assert_eq!(r.error_code, 0, "forgetting a topic (epoch 5)");
    assert_eq!(names(&fetched_partitions(&r)), vec![]);
    assert_eq!(producer.produce_values(OTHER, 0, &[b"forgotten"]), (0, 0));
    assert_eq!(producer.produce_values(MAIN, 0, &[b"zero"]), (0, 0));
    let r = fetch(&mut net, &request(session, 6, vec![]));
    assert_eq!(r.error_code, 0, "incremental fetch (epoch 6) error");
    let parts = fetched_partitions(&r);
    assert_eq!(
        names(&parts),
        vec![(MAIN.into(), 0)],
        "the forgotten topic must not be returned, main/0 must"
    );
    assert_eq!(values(&parts[0]), vec![(0, "zero".to_string())]);

    // Epoch -1 closes the session (the fetch itself is answered as a full fetch).
    let close = request(session, -1, vec![topic(MAIN, vec![partition(0, 1)])]);
    let r = fetch(&mut net, &close);
    assert_eq!(r.error_code, 0, "closing fetch (epoch -1) error");
    assert_eq!(r.session_id, 0, "a closing fetch answers without a session");
    let r = fetch(&mut net, &request(session, 7, vec![]));
    assert_eq!(
        r.error_code, FETCH_SESSION_ID_NOT_FOUND,
        "the closed session must be gone"
    );

    // An unknown session id from the start.
    let r = fetch(&mut net, &request(session.wrapping_add(12345), 1, vec![]));
    assert_eq!(
        r.error_code, FETCH_SESSION_ID_NOT_FOUND,
        "an unknown session id"
    );

    // Sessionless full fetches (epoch -1, id 0) still work and open nothing.
    let r = fetch(
        &mut net,
        &request(0, -1, vec![topic(MAIN, vec![partition(0, 0)])]),
    );
    assert_eq!((r.error_code, r.session_id), (0, 0), "sessionless fetch");
    let parts = fetched_partitions(&r);
    assert_eq!(values(&parts[0]), vec![(0, "zero".to_string())]);
    broker.assert_alive();
}
