//! Seeded fuzzing of the real broker over real sockets: valid requests of every kind the
//! broker serves (the admin apis and a compressed batch for a recompressing topic
//! included), mutated (bit flips, overwritten runs, truncations, bad length prefixes,
//! pure garbage), are sent on raw connections. Whatever each gets back (an answer, or the
//! connection closed), the broker must stay up and keep answering well-formed requests on
//! fresh connections, and a real client must still produce and consume at the end.
//!
//! `RILL_FUZZ_SEED` replays a run; `RILL_FUZZ_CASES` (default 600) and `RILL_FUZZ_SECS`
//! (default 60) bound it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::{encode_request_header_into_buffer, StrBytes};
use rill_net::Request;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A well-formed request frame (length prefix, header, body).
fn frame(request: Request, version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(request.api_key() as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("rill-fuzz")));
    let mut body = BytesMut::new();
    encode_request_header_into_buffer(&mut body, &header).expect("encode header");
    request
        .encode_body(&mut body, version)
        .expect("encode body");
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out.to_vec()
}

/// One valid request of each api, at the versions current clients use.
fn seeds() -> Vec<Vec<u8>> {
    let topic = topic_name("fuzz");
    let records = encode_record_batch(
        &[ProduceRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"value")),
            headers: vec![("h".to_string(), Some(Bytes::from_static(b"v")))],
            timestamp_ms: 1_700_000_000_000,
        }],
        &BatchOptions::default(),
    )
    .expect("encode a record batch");
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic.clone())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic.clone())
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let list_offsets = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic.clone())
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)]),
    ]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone())),
    ]));
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic_name("fuzz-new"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("60000"))),
            ])]);
    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("fuzz"))
            .with_configuration_keys(None),
    ]);
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("fuzz"))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("120000"))),
            ]),
    ]);
    let delete_records = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(topic)
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(0),
            ])]);
    let recompressing = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("fuzz"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("compression.type"))
                        .with_config_operation(0)
                        .with_value(Some(s("lz4"))),
                ]),
        ])
        .into();
    let gzip_records = encode_record_batch(
        &(0..20)
            .map(|i| ProduceRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'z'; 300])),
                headers: Vec::new(),
                timestamp_ms: 1_700_000_000_000 + i,
            })
            .collect::<Vec<_>>(),
        &BatchOptions {
            compression: rill_net::kafka_protocol::records::Compression::Gzip,
            ..BatchOptions::default()
        },
    )
    .expect("encode a gzip record batch");
    let gzip_produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name("fuzz"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(gzip_records)),
            ])]);
    vec![
        frame(ApiVersionsRequest::default().into(), 3, 1),
        frame(metadata.into(), 12, 2),
        frame(produce.into(), 9, 3),
        frame(fetch.into(), 12, 4),
        frame(list_offsets.into(), 7, 5),
        frame(create.into(), 7, 6),
        frame(describe.into(), 4, 7),
        frame(alter.into(), 1, 8),
        frame(delete_records.into(), 2, 9),
        frame(
            InitProducerIdRequest::default()
                .with_transaction_timeout_ms(1000)
                .into(),
            4,
            10,
        ),
        frame(DescribeClusterRequest::default().into(), 1, 11),
        // The KIP-848 group apis and the v9 offset apis that carry member epochs.
        frame(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("fuzz-group")))
                .with_member_id(s("fuzz-member"))
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(s("fuzz"))]))
                .with_subscribed_topic_regex(Some(s("fu.*")))
                .with_server_assignor(Some(s("uniform")))
                .with_topic_partitions(Some(vec![
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_partitions(vec![0, 1]),
                ]))
                .into(),
            1,
            12,
        ),
        frame(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(s("fuzz-group"))])
                .into(),
            1,
            13,
        ),
        frame(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("fuzz-group")))
                .with_generation_id_or_member_epoch(3)
                .with_member_id(s("fuzz-member"))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("fuzz")))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(5),
                        ]),
                ])
                .into(),
            9,
            14,
        ),
        frame(
            OffsetFetchRequest::default()
                .with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(s("fuzz-group")))
                        .with_member_id(Some(s("fuzz-member")))
                        .with_member_epoch(3),
                ])
                .into(),
            9,
            15,
        ),
        // The admin apis Kafka's tools use.
        frame(
            DescribeLogDirsRequest::default()
                .with_topics(Some(vec![
                    describe_log_dirs_request::DescribableLogDirTopic::default()
                        .with_topic(TopicName(s("fuzz")))
                        .with_partitions(vec![0, 1]),
                ]))
                .into(),
            4,
            16,
        ),
        frame(
            ElectLeadersRequest::default()
                .with_election_type(1)
                .with_timeout_ms(1000)
                .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
                )
                .with_topic(TopicName(s("fuzz")))
                .with_partitions(vec![0])]))
                .into(),
            2,
            17,
        ),
        frame(
            DescribeProducersRequest::default()
                .with_topics(vec![describe_producers_request::TopicRequest::default()
                    .with_name(TopicName(s("fuzz")))
                    .with_partition_indexes(vec![0])])
                .into(),
            0,
            18,
        ),
        frame(
            ListTransactionsRequest::default()
                .with_state_filters(vec![s("Ongoing")])
                .with_producer_id_filters(vec![ProducerId(1)])
                .with_duration_filter(1000)
                .with_transactional_id_pattern(Some(s("tx-.*")))
                .into(),
            2,
            19,
        ),
        frame(
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s("tx-1"))])
                .into(),
            0,
            20,
        ),
        frame(
            DescribeAclsRequest::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(s("fuzz")))
                .with_pattern_type_filter(3)
                .with_operation(2)
                .with_permission_type(3)
                .into(),
            3,
            21,
        ),
        frame(
            CreateAclsRequest::default()
                .with_creations(vec![create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s("fuzz"))
                    .with_resource_pattern_type(3)
                    .with_principal(s("User:fuzz"))
                    .with_host(s("*"))
                    .with_operation(2)
                    .with_permission_type(3)])
                .into(),
            3,
            22,
        ),
        frame(
            DeleteAclsRequest::default()
                .with_filters(vec![delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_pattern_type_filter(3)
                    .with_operation(2)
                    .with_permission_type(3)])
                .into(),
            3,
            23,
        ),
        frame(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default()
                        .with_name(TopicName(s("fuzz"))),
                ])
                .with_response_partition_limit(1)
                .with_cursor(Some(
                    describe_topic_partitions_request::Cursor::default()
                        .with_topic_name(TopicName(s("fuzz")))
                        .with_partition_index(0),
                ))
                .into(),
            0,
            24,
        ),
        frame(ApiVersionsRequest::default().into(), 4, 25),
        // A compressed batch to a topic that recompresses: mutations reach the bounded
        // decompression on the connection's shard.
        frame(recompressing, 1, 26),
        frame(gzip_produce.into(), 9, 27),
        // The transaction apis (issue 17) at the versions served (transaction version 1), as
        // a Kafka 4 producer and coordinator send them.
        frame(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s("fuzz-txn")))
                .with_v3_and_below_producer_id(ProducerId(1000))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(s("fuzz")))
                        .with_partitions(vec![0]),
                ])
                .into(),
            3,
            28,
        ),
        frame(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("fuzz-txn")))
                .with_producer_id(ProducerId(1000))
                .with_group_id(GroupId(s("fuzz-group")))
                .into(),
            3,
            29,
        ),
        frame(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s("fuzz-txn")))
                .with_producer_id(ProducerId(1000))
                .with_committed(true)
                .into(),
            4,
            30,
        ),
        frame(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("fuzz-txn")))
                .with_group_id(GroupId(s("fuzz-group")))
                .with_producer_id(ProducerId(1000))
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("fuzz")))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_committed_offset(1),
                        ]),
                ])
                .into(),
            3,
            32,
        ),
        frame(
            WriteTxnMarkersRequest::default()
                .with_markers(vec![write_txn_markers_request::WritableTxnMarker::default(
                )
                .with_producer_id(ProducerId(1000))
                .with_transaction_result(true)
                .with_topics(vec![
                    write_txn_markers_request::WritableTxnMarkerTopic::default()
                        .with_name(TopicName(s("fuzz")))
                        .with_partition_indexes(vec![0]),
                ])])
                .into(),
            1,
            31,
        ),
    ]
}

/// A small deterministic generator (xorshift64*), so a seed replays a run exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutated copy of `seed`, and what was done to it (for the failure message).
fn mutate(rng: &mut Rng, seed: &[u8]) -> (Vec<u8>, &'static str) {
    let mut f = seed.to_vec();
    let payload = 4..f.len();
    match rng.below(7) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = payload.start + rng.below(payload.len());
                f[i] ^= 1 << rng.below(8);
            }
            (f, "bit flips")
        }
        1 => {
            let start = payload.start + rng.below(payload.len());
            let len = 1 + rng.below(16);
            for b in f.iter_mut().skip(start).take(len) {
                *b = rng.next() as u8;
            }
            (f, "overwritten run")
        }
        2 => {
            // Truncated body with a consistent length prefix.
            let keep = rng.below(payload.len());
            f.truncate(4 + keep);
            f[0..4].copy_from_slice(&(keep as i32).to_be_bytes());
            (f, "truncated body")
        }
        3 => {
            let bad: i32 = match rng.below(3) {
                0 => -(1 + rng.below(1 << 30) as i32),
                1 => i32::MAX - rng.below(1000) as i32,
                _ => (payload.len() + 1 + rng.below(64)) as i32, // promises more than sent
            };
            f[0..4].copy_from_slice(&bad.to_be_bytes());
            (f, "bad length prefix")
        }
        4 => {
            // A huge array count where one is expected: write 0x7fffffff over 4 bytes.
            let i = payload.start + rng.below(payload.len().saturating_sub(4).max(1));
            let end = (i + 4).min(f.len());
            f[i..end].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff][..end - i]);
            (f, "huge count")
        }
        5 => {
            let len = rng.below(256);
            let mut g: Vec<u8> = (0..len + 4).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 {
                g[0..4].copy_from_slice(&(len as i32).to_be_bytes());
            }
            (g, "garbage")
        }
        _ => {
            let at = payload.start + rng.below(payload.len());
            let extra: Vec<u8> = (0..1 + rng.below(32)).map(|_| rng.next() as u8).collect();
            f.splice(at..at, extra.iter().copied());
            (f, "inserted bytes (length prefix not updated)")
        }
    }
}

/// Sends `bytes` and reads until the broker answers one frame, closes, or goes quiet.
fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    if stream.write_all(bytes).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).is_err() {
        return false; // closed, or no answer (e.g. it waits for bytes we never send)
    }
    let n = i32::from_be_bytes(len);
    assert!(
        (4..=64 << 20).contains(&n),
        "broker sent a response frame of {n} bytes"
    );
    let mut body = vec![0u8; n as usize];
    stream.read_exact(&mut body).is_ok()
}

fn fresh(broker: &Broker) -> TcpStream {
    tcp_connect(broker.addr(), Duration::from_millis(300))
}

/// A fresh connection gets correct answers to well-formed requests.
fn still_serving(broker: &mut Broker, case: usize, what: &str) {
    broker.assert_alive();
    let mut net = broker.net();
    let r = net.send(&MetadataRequest::default().with_topics(None));
    assert_eq!(
        r.brokers.len(),
        1,
        "after case {case} ({what}) the broker answers Metadata wrongly: {r:?}"
    );
}

#[test]
fn mutated_requests_never_take_the_broker_down() {
    let seed = seed_from_env("RILL_FUZZ_SEED");
    let cases: usize = std::env::var("RILL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let secs: u64 = std::env::var("RILL_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut broker = Broker::start("fuzz");
    broker.create_topic("fuzz", 1, &[]);
    let seeds = seeds();
    // Every seed is itself accepted.
    for (i, f) in seeds.iter().enumerate() {
        let mut c = tcp_connect(broker.addr(), OP_TIMEOUT);
        assert!(exchange(&mut c, f), "seed request {i} was not answered");
    }
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut conn = fresh(&broker);
    let mut done = 0;
    let mut answered = 0;
    let mut last = "none";
    for case in 0..cases {
        if Instant::now() > deadline {
            break;
        }
        let pick = rng.below(seeds.len());
        let (bytes, what) = mutate(&mut rng, &seeds[pick]);
        last = what;
        if exchange(&mut conn, &bytes) {
            answered += 1;
        } else {
            conn = fresh(&broker);
        }
        done += 1;
        if case % 50 == 49 {
            still_serving(&mut broker, case, what);
        }
    }
    still_serving(&mut broker, done, last);
    eprintln!("{done} mutated requests sent, {answered} answered");
    assert!(done >= 100, "only {done} cases ran in {secs} s");

    // A real client still produces and consumes.
    let producer = broker.producer("all", &[]);
    let delivery = block_on(producer.send(
        FutureRecord::to("fuzz").key("after").payload("fuzzing"),
        OP_TIMEOUT,
    ))
    .unwrap_or_else(|(e, _)| panic!("produce after fuzzing: {e}"));
    let (partition, offset) = (delivery.partition, delivery.offset);
    let consumer = broker.consumer(&[]);
    assign(&consumer, "fuzz", &[partition], Offset::Offset(offset));
    let recs = consume_at_least(&consumer, 1, OP_TIMEOUT);
    assert_eq!(
        recs[0].value.as_deref(),
        Some(&b"fuzzing"[..]),
        "the record produced after fuzzing did not come back at offset {offset}"
    );
    broker.terminate();
}
