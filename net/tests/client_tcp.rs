//! The client against an in-process mini broker over a real loopback TCP connection:
//! version negotiation, the KIP-511 answer to an unsupported ApiVersions version,
//! pipelined produces answered in order, an acks=0 produce that gets no answer, and a fetch
//! whose record data is written with vectored, zero-copy pieces and decoded back.

use std::net::{TcpListener, TcpStream};
use std::thread;

use bytes::{Bytes, BytesMut};
use futures_lite::future::block_on;
use futures_lite::io::{AssertAsync, AsyncWriteExt};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rill_net::client::{
    decode_record_batches, encode_record_batch, BatchOptions, Connection, ProduceRecord,
};
use rill_net::codec::{
    api_versions_response, decode_request, encode_fetch_response, encode_response, version_range,
    Request, SUPPORTED_VERSIONS,
};
use rill_net::frame::{write_pieces, FrameLimits, FrameReader};
use rill_net::header::unsupported_api_versions_response;
use rill_net::{DecodeError, ErrorCode};

/// Serves one connection until the client closes it. Single partition, in memory.
fn mini_broker(stream: TcpStream) {
    block_on(async move {
        let mut io = FrameReader::new(AssertAsync::new(stream), FrameLimits::requests());
        let mut log: Vec<Bytes> = Vec::new();
        let mut next_offset: i64 = 0;
        while let Some(frame) = io.next_frame().await.expect("frame") {
            let (header, request) = match decode_request(frame) {
                Ok(ok) => ok,
                Err(DecodeError::UnsupportedVersion {
                    api_key: ApiKey::ApiVersions,
                    correlation_id,
                    ..
                }) => {
                    let (min, max) =
                        version_range(SUPPORTED_VERSIONS, ApiKey::ApiVersions).unwrap();
                    let answer = unsupported_api_versions_response(min, max);
                    let bytes = encode_response(correlation_id, 0, &answer).unwrap();
                    write_pieces(io.get_mut(), &mut [bytes]).await.unwrap();
                    continue;
                }
                Err(e) => panic!("mini broker: {e}"),
            };
            let id = header.correlation_id;
            let version = header.request_api_version;
            let mut pieces = match request {
                Request::ApiVersions(_) => {
                    vec![
                        encode_response(id, version, &api_versions_response(SUPPORTED_VERSIONS))
                            .unwrap(),
                    ]
                }
                Request::Metadata(_) => {
                    let response = MetadataResponse::default().with_brokers(vec![
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(1))
                            .with_host(StrBytes::from_static_str("127.0.0.1"))
                            .with_port(9092),
                    ]);
                    vec![encode_response(id, version, &response).unwrap()]
                }
                Request::Produce(produce) => {
                    let mut base_offsets = Vec::new();
                    for topic in &produce.topic_data {
                        for partition in &topic.partition_data {
                            let batch = partition.records.clone().unwrap_or_default();
                            let count = i32::from_be_bytes(batch[57..61].try_into().unwrap());
                            // As the broker does: assign offsets by rewriting baseOffset,
                            // which the CRC does not cover.
                            let mut stored = BytesMut::from(&batch[..]);
                            stored[..8].copy_from_slice(&next_offset.to_be_bytes());
                            log.push(stored.freeze());
                            base_offsets.push(next_offset);
                            next_offset += count as i64;
                        }
                    }
                    if produce.acks == 0 {
                        continue;
                    }
                    let response = ProduceResponse::default().with_responses(vec![
                        TopicProduceResponse::default()
                            .with_name(TopicName(StrBytes::from_static_str("t")))
                            .with_partition_responses(
                                base_offsets
                                    .into_iter()
                                    .map(|o| {
                                        PartitionProduceResponse::default().with_base_offset(o)
                                    })
                                    .collect(),
                            ),
                    ]);
                    vec![encode_response(id, version, &response).unwrap()]
                }
                Request::Fetch(_) => {
                    // The stored batches as the broker hands them over: one buffer each.
                    let mut splices = rill_net::codec::RecordSplices::new();
                    let records = splices.records(log.clone());
                    let response = FetchResponse::default().with_responses(vec![
                        FetchableTopicResponse::default()
                            .with_topic(TopicName(StrBytes::from_static_str("t")))
                            .with_partitions(vec![PartitionData::default()
                                .with_high_watermark(next_offset)
                                .with_records(Some(records))]),
                    ]);
                    encode_fetch_response(id, version, &response, &splices).unwrap()
                }
                other => panic!("mini broker does not serve {}", other.api_name()),
            };
            write_pieces(io.get_mut(), &mut pieces).await.unwrap();
            io.get_mut().flush().await.unwrap();
        }
    });
}

fn start_broker() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let stream = stream.unwrap();
            thread::spawn(move || mini_broker(stream));
        }
    });
    addr
}

fn produce_request(acks: i16, batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])])
}

fn batch(first: usize, n: usize) -> Bytes {
    let records: Vec<ProduceRecord> = (first..first + n)
        .map(|i| ProduceRecord {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![(i % 251) as u8; 700])),
            headers: vec![("n".to_string(), Some(Bytes::from(i.to_string())))],
            timestamp_ms: 1_700_000_000_000 + i as i64,
        })
        .collect();
    encode_record_batch(&records, &BatchOptions::default()).unwrap()
}

#[test]
fn negotiate_pipeline_produce_and_fetch_over_tcp() {
    let addr = start_broker();
    let stream = TcpStream::connect(addr).unwrap();
    let mut conn = Connection::new(AssertAsync::new(stream));
    block_on(async {
        let versions = conn.api_versions().await.unwrap();
        assert_eq!(versions.version(ApiKey::Produce), Some(12));
        assert_eq!(versions.version(ApiKey::Fetch), Some(12));
        assert_eq!(versions.broker.len(), SUPPORTED_VERSIONS.len());

        let metadata = conn
            .send(
                versions.require(ApiKey::Metadata).unwrap(),
                &MetadataRequest::default(),
            )
            .await
            .unwrap();
        assert_eq!(metadata.brokers[0].port, 9092);

        // Ten produces in flight at once, answered in order.
        let produce_version = versions.require(ApiKey::Produce).unwrap();
        for i in 0..10 {
            conn.send_only(produce_version, &produce_request(-1, batch(i * 3, 3)))
                .await
                .unwrap();
        }
        assert_eq!(conn.inflight(), 10);
        for i in 0..10 {
            let response = conn.recv::<ProduceRequest>().await.unwrap();
            let partition = &response.responses[0].partition_responses[0];
            assert_eq!(partition.error_code, ErrorCode::None.code());
            assert_eq!(partition.base_offset, i * 3);
        }

        // acks=0: no answer; the next round trip must still line up.
        conn.send_no_response(produce_version, &produce_request(0, batch(30, 2)))
            .await
            .unwrap();
        conn.send(
            versions.require(ApiKey::Metadata).unwrap(),
            &MetadataRequest::default(),
        )
        .await
        .unwrap();

        let fetch = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(1 << 20)
                ])]);
        let response = conn
            .send(versions.require(ApiKey::Fetch).unwrap(), &fetch)
            .await
            .unwrap();
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.high_watermark, 32);
        let records = decode_record_batches(partition.records.as_ref().unwrap()).unwrap();
        assert_eq!(records.len(), 32);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.key.as_deref(), Some(format!("key-{i}").as_bytes()));
            assert_eq!(r.value.as_ref().unwrap().len(), 700);
            assert_eq!(
                r.headers,
                vec![("n".to_string(), Some(Bytes::from(i.to_string())))]
            );
        }
    });
}

#[test]
fn unsupported_api_versions_version_gets_a_v0_answer() {
    use std::io::{Read, Write};
    let addr = start_broker();
    let mut stream = TcpStream::connect(addr).unwrap();
    // A future client asking for ApiVersions v5 (newer than kafka-protocol and Rill): request
    // header v2 (key, version, correlation id, null client id, no tags), then a v3+ body
    // (two empty compact strings, no tags).
    let mut payload = Vec::new();
    payload.extend_from_slice(&18i16.to_be_bytes());
    payload.extend_from_slice(&5i16.to_be_bytes());
    payload.extend_from_slice(&7i32.to_be_bytes());
    payload.extend_from_slice(&(-1i16).to_be_bytes());
    payload.extend_from_slice(&[0, 1, 1, 0]);
    stream
        .write_all(&(payload.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(&payload).unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut frame = vec![0u8; i32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut frame).unwrap();
    assert_eq!(&frame[..4], &7i32.to_be_bytes(), "correlation id kept");
    let mut conn = Connection::new(AssertAsync::new(stream));
    block_on(async {
        let mut body = Bytes::from(frame[4..].to_vec());
        use kafka_protocol::protocol::Decodable;
        let answer = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert!(body.is_empty(), "v0 body fully consumed");
        assert_eq!(answer.error_code, ErrorCode::UnsupportedVersion.code());
        assert_eq!(answer.api_keys.len(), 1);
        assert_eq!(answer.api_keys[0].api_key, ApiKey::ApiVersions as i16);
        assert_eq!(
            (
                answer.api_keys[0].min_version,
                answer.api_keys[0].max_version
            ),
            (0, 4)
        );
        // The connection stays usable.
        let versions = conn.api_versions().await.unwrap();
        assert_eq!(versions.version(ApiKey::ApiVersions), Some(4));
    });
}
