//! Sample requests shared by the integration tests (not a test binary itself).

#![allow(dead_code)] // each test binary uses a different subset

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{encode_request_header_into_buffer, StrBytes};
use rill_net::codec::Request;

/// A request frame payload (header + body, no length prefix) as a client would send it.
pub fn frame(request: &Request, version: i16, correlation_id: i32) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(request.api_key() as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("roundtrip")));
    let mut buf = BytesMut::new();
    encode_request_header_into_buffer(&mut buf, &header).unwrap();
    request.encode_body(&mut buf, version).unwrap();
    buf.freeze()
}

pub fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

/// One default instance of every api Rill serves.
pub fn defaults() -> Vec<Request> {
    vec![
        ProduceRequest::default().into(),
        FetchRequest::default().into(),
        ListOffsetsRequest::default().into(),
        MetadataRequest::default().into(),
        OffsetCommitRequest::default().into(),
        OffsetFetchRequest::default().into(),
        FindCoordinatorRequest::default().into(),
        JoinGroupRequest::default().into(),
        HeartbeatRequest::default().into(),
        LeaveGroupRequest::default().into(),
        SyncGroupRequest::default().into(),
        DescribeGroupsRequest::default().into(),
        ListGroupsRequest::default().into(),
        ApiVersionsRequest::default().into(),
        CreateTopicsRequest::default().into(),
        DeleteTopicsRequest::default().into(),
        DeleteRecordsRequest::default().into(),
        InitProducerIdRequest::default().into(),
        DescribeConfigsRequest::default().into(),
        AlterConfigsRequest::default().into(),
        CreatePartitionsRequest::default().into(),
        DeleteGroupsRequest::default().into(),
        IncrementalAlterConfigsRequest::default().into(),
        OffsetDeleteRequest::default().into(),
        AlterPartitionReassignmentsRequest::default().into(),
        ListPartitionReassignmentsRequest::default().into(),
        DescribeClusterRequest::default().into(),
        UnregisterBrokerRequest::default()
            .with_broker_id(BrokerId(4))
            .into(),
        ConsumerGroupHeartbeatRequest::default().into(),
        ConsumerGroupDescribeRequest::default().into(),
        OffsetForLeaderEpochRequest::default().into(),
        DescribeAclsRequest::default().into(),
        CreateAclsRequest::default().into(),
        DeleteAclsRequest::default().into(),
        DescribeLogDirsRequest::default().into(),
        ElectLeadersRequest::default().into(),
        DescribeProducersRequest::default().into(),
        DescribeTransactionsRequest::default().into(),
        ListTransactionsRequest::default().into(),
        DescribeTopicPartitionsRequest::default().into(),
        AddPartitionsToTxnRequest::default().into(),
        AddOffsetsToTxnRequest::default().into(),
        EndTxnRequest::default().into(),
        WriteTxnMarkersRequest::default().into(),
        TxnOffsetCommitRequest::default().into(),
    ]
}

/// Requests with nested arrays filled in, using only fields every supported version has.
pub fn populated() -> Vec<Request> {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    vec![
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("orders"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(vec![0xab; 300]))),
                    PartitionProduceData::default()
                        .with_index(1)
                        .with_records(None),
                ])])
            .into(),
        FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("orders"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(3)
                    .with_fetch_offset(42)
                    .with_partition_max_bytes(1_048_576)])])
            .into(),
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("a"))),
                MetadataRequestTopic::default().with_name(Some(name("b"))),
            ]))
            .into(),
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_session_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"\x00\x01subscription"))])
            .into(),
        CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(name("new"))
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1000")))])])
            .into(),
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(4)
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name("orders"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(99)
                    .with_committed_metadata(Some(StrBytes::from_static_str(
                        "meta",
                    )))])])
            .into(),
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_member_epoch(3)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![name("orders"), name("audit")]))
            .with_server_assignor(Some(StrBytes::from_static_str("uniform")))
            .with_topic_partitions(Some(vec![
                consumer_group_heartbeat_request::TopicPartitions::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![0, 2, 4]),
            ]))
            .into(),
        OffsetForLeaderEpochRequest::default()
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(3)
                            .with_leader_epoch(7),
                    ]),
            ])
            .into(),
        ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![
                GroupId(StrBytes::from_static_str("g")),
                GroupId(StrBytes::from_static_str("h")),
            ])
            .into(),
        AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(name("orders"))
                    .with_partitions(vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(Some(vec![BrokerId(4), BrokerId(2)])),
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(1)
                            .with_replicas(None),
                    ]),
            ])
            .into(),
        ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(Some(vec![
                list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                    .with_name(name("orders"))
                    .with_partition_indexes(vec![0, 3]),
            ]))
            .into(),
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(name("orders"))
                    .with_partitions(vec![0, 1, 2]),
            ]))
            .into(),
        ElectLeadersRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
            )
            .with_topic(name("orders"))
            .with_partitions(vec![0, 5])]))
            .into(),
        DescribeProducersRequest::default()
            .with_topics(vec![describe_producers_request::TopicRequest::default()
                .with_name(name("orders"))
                .with_partition_indexes(vec![1])])
            .into(),
        DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("tx-1"))])
            .into(),
        ListTransactionsRequest::default()
            .with_state_filters(vec![StrBytes::from_static_str("Ongoing")])
            .with_producer_id_filters(vec![ProducerId(42)])
            .into(),
        DescribeAclsRequest::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(StrBytes::from_static_str("orders")))
            .with_principal_filter(Some(StrBytes::from_static_str("User:alice")))
            .with_operation(1)
            .with_permission_type(1)
            .into(),
        CreateAclsRequest::default()
            .with_creations(vec![create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("orders"))
                .with_principal(StrBytes::from_static_str("User:alice"))
                .with_host(StrBytes::from_static_str("*"))
                .with_operation(3)
                .with_permission_type(3)])
            .into(),
        DeleteAclsRequest::default()
            .with_filters(vec![delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_operation(1)
                .with_permission_type(1)])
            .into(),
        DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                describe_topic_partitions_request::TopicRequest::default()
                    .with_name(name("orders")),
            ])
            .with_response_partition_limit(100)
            .with_cursor(Some(
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(name("orders"))
                    .with_partition_index(7),
            ))
            .into(),
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id("payments-7"))
            .with_producer_id(ProducerId(4001))
            .with_producer_epoch(3)
            .with_group_id(GroupId(StrBytes::from_static_str("billing")))
            .into(),
        EndTxnRequest::default()
            .with_transactional_id(txn_id("payments-7"))
            .with_producer_id(ProducerId(4001))
            .with_producer_epoch(3)
            .with_committed(true)
            .into(),
        WriteTxnMarkersRequest::default()
            .with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(4001))
                    .with_producer_epoch(3)
                    .with_transaction_result(true)
                    .with_coordinator_epoch(12)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(name("orders"))
                            .with_partition_indexes(vec![0, 5]),
                    ]),
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(4002))
                    .with_coordinator_epoch(12),
            ])
            .into(),
        TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id("payments-7"))
            .with_group_id(GroupId(StrBytes::from_static_str("billing")))
            .with_producer_id(ProducerId(4001))
            .with_producer_epoch(3)
            .with_topics(vec![txn_offset_commit_topic()])
            .into(),
    ]
}

fn txn_id(s: &'static str) -> TransactionalId {
    TransactionalId(StrBytes::from_static_str(s))
}

fn txn_offset_commit_topic() -> txn_offset_commit_request::TxnOffsetCommitRequestTopic {
    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
        .with_name(name("orders"))
        .with_partitions(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                .with_partition_index(2)
                .with_committed_offset(77)
                .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
        ])
}

fn add_partitions_topics() -> Vec<add_partitions_to_txn_request::AddPartitionsToTxnTopic> {
    vec![
        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
            .with_name(name("orders"))
            .with_partitions(vec![0, 1, 9]),
    ]
}

/// Filled-in requests whose fields exist only in some versions, with the inclusive range of
/// versions each encodes at.
pub fn populated_in_versions() -> Vec<(Request, i16, i16)> {
    vec![
        (
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id("payments-7"))
                .with_v3_and_below_producer_id(ProducerId(4001))
                .with_v3_and_below_producer_epoch(3)
                .with_v3_and_below_topics(add_partitions_topics())
                .into(),
            0,
            3,
        ),
        (
            AddPartitionsToTxnRequest::default()
                .with_transactions(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(txn_id("payments-7"))
                        .with_producer_id(ProducerId(4001))
                        .with_producer_epoch(3)
                        .with_verify_only(true)
                        .with_topics(add_partitions_topics()),
                    add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(txn_id("payments-8")),
                ])
                .into(),
            4,
            5,
        ),
        (
            TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id("payments-7"))
                .with_group_id(GroupId(StrBytes::from_static_str("billing")))
                .with_producer_id(ProducerId(4001))
                .with_producer_epoch(3)
                .with_generation_id(9)
                .with_member_id(StrBytes::from_static_str("member-1"))
                .with_group_instance_id(Some(StrBytes::from_static_str("instance-1")))
                .with_topics(vec![txn_offset_commit_topic().with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(2)
                        .with_committed_offset(77)
                        .with_committed_leader_epoch(5)
                        .with_committed_metadata(None),
                ])])
                .into(),
            3,
            5,
        ),
    ]
}
