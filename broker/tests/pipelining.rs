//! Pipelined requests on one connection are answered in request order, even when a later
//! request finishes first: a long-polling Fetch sent first holds back the quick ApiVersions
//! and Metadata answers behind it, and the client sees every correlation id in order.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_lite::future::block_on;
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::*;

#[test]
fn answers_leave_in_request_order() {
    let broker = Broker::start("pipelining");
    broker.create_topic("quiet", 1, &[]);
    let mut net = broker.net();
    let fetch_v = net.version(ApiKey::Fetch);
    let meta_v = net.version(ApiKey::Metadata);
    let api_v = net.version(ApiKey::ApiVersions);
    let wait_ms = 700;
    let fetch = FetchRequest::default()
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("quiet"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let started = Instant::now();
    let sent = block_on(async {
        let a = net.conn.send_only(fetch_v, &fetch).await.unwrap();
        let b = net
            .conn
            .send_only(api_v, &ApiVersionsRequest::default())
            .await
            .unwrap();
        let c = net
            .conn
            .send_only(meta_v, &MetadataRequest::default().with_topics(None))
            .await
            .unwrap();
        [a.correlation_id, b.correlation_id, c.correlation_id]
    });
    assert!(sent[0] < sent[1] && sent[1] < sent[2]);
    // recv checks that each response carries the next outstanding correlation id.
    let fetched = block_on(net.conn.recv::<FetchRequest>()).expect("fetch answer first");
    let parked = started.elapsed();
    let versions = block_on(net.conn.recv::<ApiVersionsRequest>()).expect("then ApiVersions");
    let metadata = block_on(net.conn.recv::<MetadataRequest>()).expect("then Metadata");
    assert!(
        parked >= Duration::from_millis(wait_ms as u64 / 2),
        "the fetch did not long-poll ({parked:?}), so this checked nothing about order"
    );
    assert!(fetched.responses.iter().all(|t| t
        .partitions
        .iter()
        .all(|p| p.records.as_ref().is_none_or(|r| r.is_empty()))));
    assert_eq!(versions.error_code, 0);
    assert!(metadata
        .topics
        .iter()
        .any(|t| t.name.as_ref().is_some_and(|n| &*n.0 == "quiet")));
}
