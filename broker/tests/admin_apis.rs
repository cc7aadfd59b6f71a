//! The admin apis Kafka's tools use, through the raw protocol client against the real
//! broker: what each answers for good input and for the input clients get wrong (unknown
//! topics and partitions, bad election types, cursors, state filters), ApiVersions'
//! features at each version, and bad bytes (a truncated body, an array count no frame can
//! hold, a version past the advertised one) closing only their own connection while the
//! broker keeps serving everyone.

mod common;

use common::raw::{assert_closed, frame, header, send_raw};
use common::{block_on, Broker};
use rdkafka::producer::FutureRecord;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

const TOPIC: &str = "admin-apis";

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn code(c: ErrorCode) -> i16 {
    c.code()
}

/// Produces `n` records to partition 0 with an idempotent producer.
fn produce_idempotent(broker: &Broker, n: usize) {
    let producer = broker.producer("all", &[("enable.idempotence", "true")]);
    for i in 0..n {
        let value = format!("v{i}");
        let r = FutureRecord::<(), _>::to(TOPIC)
            .payload(&value)
            .partition(0);
        block_on(
            producer
                .send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("delivery cancelled")
        .unwrap_or_else(|(e, _)| panic!("idempotent produce failed: {e}"));
    }
}

#[test]
fn log_dirs_elections_producers_transactions_acls_and_paging_answer_as_kafka_does() {
    let broker = Broker::start("admin-apis");
    broker.create_topic(TOPIC, 2, &[]);
    produce_idempotent(&broker, 5);
    let mut net = broker.net();

    // DescribeLogDirs: every partition (null), or only those asked for that exist.
    let all = net.send_at(4, &DescribeLogDirsRequest::default().with_topics(None));
    let dir = &all.results[0];
    assert_eq!(dir.error_code, 0);
    assert!(dir.total_bytes > 0 && dir.usable_bytes > 0 && dir.usable_bytes <= dir.total_bytes);
    assert!(
        std::path::Path::new(&*dir.log_dir).is_absolute(),
        "{}",
        &*dir.log_dir
    );
    let ours = dir
        .topics
        .iter()
        .find(|t| &*t.name.0 == TOPIC)
        .expect("topic listed");
    let sizes: Vec<(i32, i64)> = ours
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.partition_size))
        .collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert!(sizes[0].1 > 0, "partition 0 holds records: {sizes:?}");
    let some = net.send_at(
        1,
        &DescribeLogDirsRequest::default().with_topics(Some(vec![
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(name(TOPIC))
                .with_partitions(vec![1, 7]),
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(name("no-such-topic"))
                .with_partitions(vec![0]),
        ])),
    );
    let listed: Vec<(String, Vec<i32>)> = some.results[0]
        .topics
        .iter()
        .map(|t| {
            let ps = t.partitions.iter().map(|p| p.partition_index).collect();
            (t.name.0.to_string(), ps)
        })
        .collect();
    assert_eq!(listed, vec![(TOPIC.to_string(), vec![1])]);

    // ElectLeaders: one node leads everything already; unknown partitions and types refused.
    let elect = |partitions: Vec<i32>, topic: &str| {
        ElectLeadersRequest::default()
            .with_timeout_ms(10_000)
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
            )
            .with_topic(name(topic))
            .with_partitions(partitions)]))
    };
    for v in 0..=2 {
        let r = net.send_at(v, &elect(vec![0, 9], TOPIC));
        let codes: Vec<i16> = r.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(
            codes,
            vec![
                code(ErrorCode::ElectionNotNeeded),
                code(ErrorCode::UnknownTopicOrPartition)
            ],
            "v{v}"
        );
    }
    let unknown = net.send_at(2, &elect(vec![0], "no-such-topic"));
    assert_eq!(
        unknown.replica_election_results[0].partition_result[0].error_code,
        code(ErrorCode::UnknownTopicOrPartition)
    );
    let bad_type = net.send_at(2, &elect(vec![0], TOPIC).with_election_type(5));
    assert_eq!(bad_type.error_code, code(ErrorCode::InvalidRequest));
    assert_eq!(
        bad_type.replica_election_results[0].partition_result[0].error_code,
        code(ErrorCode::InvalidRequest)
    );
    // Every partition: those needing nothing are left out, as Kafka does.
    let everything = net.send_at(
        2,
        &ElectLeadersRequest::default().with_topic_partitions(None),
    );
    assert!(
        everything.replica_election_results.is_empty(),
        "{everything:?}"
    );

    // DescribeProducers: the idempotent producer of partition 0, none on 1, 5 unknown.
    let r = net.send_at(
        0,
        &DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(name(TOPIC))
                .with_partition_indexes(vec![0, 1, 5]),
        ]),
    );
    let parts = &r.topics[0].partitions;
    assert_eq!(parts[0].error_code, 0);
    let p = &parts[0].active_producers;
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].producer_id.0 >= 0);
    assert_eq!(p[0].last_sequence, 4, "five records, sequences 0..=4");
    assert!(
        p[0].last_timestamp > 1_600_000_000_000,
        "{}",
        p[0].last_timestamp
    );
    assert_eq!(
        (p[0].coordinator_epoch, p[0].current_txn_start_offset),
        (-1, -1)
    );
    assert!(parts[1].active_producers.is_empty() && parts[1].error_code == 0);
    assert_eq!(
        parts[2].error_code,
        code(ErrorCode::UnknownTopicOrPartition)
    );

    // Transactions: none exist; unknown state filters are named back.
    let list = net.send_at(
        2,
        &ListTransactionsRequest::default().with_state_filters(vec![
            StrBytes::from_static_str("Ongoing"),
            StrBytes::from_static_str("Bogus"),
        ]),
    );
    assert_eq!(list.error_code, 0);
    assert!(list.transaction_states.is_empty());
    assert_eq!(
        list.unknown_state_filters,
        vec![StrBytes::from_static_str("Bogus")]
    );
    let bad_pattern = net.send_at(
        2,
        &ListTransactionsRequest::default()
            .with_transactional_id_pattern(Some(StrBytes::from_static_str("tx-(unclosed"))),
    );
    assert_eq!(
        bad_pattern.error_code,
        code(ErrorCode::InvalidRegularExpression)
    );
    let good_pattern = net.send_at(
        2,
        &ListTransactionsRequest::default()
            .with_transactional_id_pattern(Some(StrBytes::from_static_str("tx-.*"))),
    );
    assert_eq!(good_pattern.error_code, 0);
    let described = net.send_at(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("tx-1"))]),
    );
    assert_eq!(
        described.transaction_states[0].error_code,
        code(ErrorCode::TransactionalIdNotFound)
    );
    assert_eq!(&*described.transaction_states[0].transactional_id.0, "tx-1");

    // ACLs: no authorizer.
    let acls = net.send_at(3, &DescribeAclsRequest::default());
    assert_eq!(acls.error_code, code(ErrorCode::SecurityDisabled));
    assert!(acls.error_message.is_some());
    let created = net.send_at(
        3,
        &CreateAclsRequest::default().with_creations(vec![
            create_acls_request::AclCreation::default(),
            create_acls_request::AclCreation::default(),
        ]),
    );
    assert_eq!(created.results.len(), 2);
    assert!(created
        .results
        .iter()
        .all(|r| r.error_code == code(ErrorCode::SecurityDisabled)));
    let deleted = net.send_at(
        1,
        &DeleteAclsRequest::default()
            .with_filters(vec![delete_acls_request::DeleteAclsFilter::default()]),
    );
    assert_eq!(
        deleted.filter_results[0].error_code,
        code(ErrorCode::SecurityDisabled)
    );

    // DescribeTopicPartitions: one partition per answer, then the cursor; unknown topics
    // named; a cursor outside the topics asked for refused.
    let page = |cursor: Option<(&str, i32)>, topics: &[&str]| {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(name(t))
                    })
                    .collect(),
            )
            .with_response_partition_limit(1)
            .with_cursor(cursor.map(|(t, p)| {
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(name(t))
                    .with_partition_index(p)
            }))
    };
    let first = net.send_at(0, &page(None, &[TOPIC, "zz-missing"]));
    assert_eq!(first.topics.len(), 1);
    assert_eq!(first.topics[0].partitions.len(), 1);
    let next = first.next_cursor.expect("a cursor to the second partition");
    assert_eq!((&*next.topic_name.0, next.partition_index), (TOPIC, 1));
    let second = net.send_at(0, &page(Some((TOPIC, 1)), &[TOPIC, "zz-missing"]));
    assert_eq!(second.topics[0].partitions[0].partition_index, 1);
    assert_eq!(
        second.topics[1].error_code,
        code(ErrorCode::UnknownTopicOrPartition)
    );
    assert!(second.next_cursor.is_none());
    let outside = net.send_at(0, &page(Some(("elsewhere", 0)), &[TOPIC]));
    assert_eq!(
        outside.topics[0].error_code,
        code(ErrorCode::InvalidRequest)
    );
}

#[test]
fn api_versions_reports_features_only_where_each_version_can_carry_them() {
    let broker = Broker::start("admin-features");
    let mut net = broker.net();
    let names = |r: &ApiVersionsResponse| -> Vec<String> {
        r.supported_features
            .iter()
            .map(|f| f.name.to_string())
            .collect()
    };
    for v in 0..=2 {
        let r = net.send_at(v, &ApiVersionsRequest::default());
        assert!(
            r.supported_features.is_empty() && r.finalized_features.is_empty(),
            "v{v}"
        );
    }
    // v3 cannot carry a feature whose lowest version is 0.
    let v3 = net.send_at(3, &ApiVersionsRequest::default());
    assert_eq!(names(&v3), vec!["metadata.version"]);
    assert!(v3.finalized_features_epoch >= 0);
    assert!(!v3.zk_migration_ready);
    let v4 = net.send_at(4, &ApiVersionsRequest::default());
    assert_eq!(
        names(&v4),
        vec!["metadata.version", "group.version", "transaction.version"]
    );
    let finalized: Vec<(String, i16)> = v4
        .finalized_features
        .iter()
        .map(|f| (f.name.to_string(), f.max_version_level))
        .collect();
    assert_eq!(
        finalized,
        vec![
            ("metadata.version".to_string(), 25),
            ("group.version".to_string(), 1),
            ("transaction.version".to_string(), 2)
        ]
    );
    // Every new api is advertised.
    for key in [29, 30, 31, 35, 43, 61, 65, 66, 75] {
        assert!(
            v4.api_keys.iter().any(|k| k.api_key == key),
            "api {key} not advertised"
        );
    }
}

#[test]
fn bad_bytes_in_the_new_apis_close_their_connection_only() {
    let broker = Broker::start("admin-bad-bytes");
    broker.create_topic(TOPIC, 1, &[]);
    let mut net = broker.net();
    // (what, api key, version, body)
    let huge = i32::MAX.to_be_bytes().to_vec();
    let cases: Vec<(&str, i16, i16, Vec<u8>)> = vec![
        (
            "DescribeLogDirs v1 claiming 2^31 topics",
            35,
            1,
            huge.clone(),
        ),
        ("ElectLeaders v1 cut after its type", 43, 1, vec![0]),
        ("ElectLeaders v0 claiming 2^31 topics", 43, 0, huge.clone()),
        (
            "DescribeAcls v1 cut in its name",
            29,
            1,
            vec![2, 0, 9, b'a'],
        ),
        ("CreateAcls v1 claiming 2^31 creations", 30, 1, huge.clone()),
        ("DeleteAcls v1 with no body", 31, 1, Vec::new()),
        // Flexible (compact) encodings: a varint count far past the frame.
        (
            "DescribeProducers v0 claiming 2^28 topics",
            61,
            0,
            vec![0xff, 0xff, 0xff, 0x7f],
        ),
        (
            "DescribeTransactions v0 cut in an id",
            65,
            0,
            vec![2, 10, b't'],
        ),
        (
            "ListTransactions v1 without its duration",
            66,
            1,
            vec![1, 1],
        ),
        (
            "DescribeTopicPartitions v0 with a cursor cut short",
            75,
            0,
            vec![1, 0, 0, 0, 1, 1, 5],
        ),
        ("DescribeLogDirs v5, past the advertised v4", 35, 5, vec![0]),
        ("ElectLeaders v3, past the advertised v2", 43, 3, vec![0]),
        (
            "DescribeProducers v1, past the advertised v0",
            61,
            1,
            vec![0],
        ),
    ];
    for (what, key, version, body) in cases {
        let mut request = header(key, version);
        if version >= flexible_min(key) {
            request.push(0); // the v2 header's empty tagged fields
        }
        request.extend_from_slice(&body);
        assert_closed(send_raw(&broker, &frame(&request), false), what);
        // The broker still answers on another connection.
        let md = net.send(&MetadataRequest::default().with_topics(None));
        assert!(
            md.topics
                .iter()
                .any(|t| t.name.as_ref().is_some_and(|n| &*n.0 == TOPIC)),
            "after {what}"
        );
    }
}

/// The first flexible version of each new api (its requests then carry the v2 header).
fn flexible_min(key: i16) -> i16 {
    match key {
        29..=31 | 35 | 43 => 2,
        _ => 0,
    }
}
