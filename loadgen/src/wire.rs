//! Request frames for the data path, built from `rill-net`'s pieces.
//!
//! `rill_net::client::Connection` serves the setup requests (one task, one round trip at a
//! time). A producer must write its next request while the answers to earlier ones are
//! still arriving, from two tasks, so the data path frames requests here with the same
//! header rules (`rill_net::header`), length prefix (`rill_net::frame`) and record batch
//! encoder (`rill_net::client::encode_record_batch`), and reads answers with
//! `rill_net::FrameReader`. Everything here is pure and allocation-bounded by its inputs.

use bytes::Bytes;
use rill_net::header::response_header_version;
use rill_net::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_net::kafka_protocol::messages::{ApiKey, ProduceRequest, ResponseHeader, TopicName};
use rill_net::kafka_protocol::protocol::{Decodable, StrBytes};
use rill_net::NetError;

/// The client id the load generator sends.
pub const CLIENT_ID: &str = "rill-loadgen";

pub use rill_net::client::encode_request_frame;

/// Splits a response frame into its correlation id and body.
pub fn decode_response_header(
    mut frame: Bytes,
    api_key: ApiKey,
    api_version: i16,
) -> Result<(i32, Bytes), NetError> {
    let header = ResponseHeader::decode(&mut frame, response_header_version(api_key, api_version))
        .map_err(|e| NetError::MalformedResponse {
            api_key,
            api_version,
            reason: format!("response header: {e:#}"),
        })?;
    Ok((header.correlation_id, frame))
}

/// Decodes a response body at `api_version`.
pub fn decode_body<R: Decodable>(
    mut body: Bytes,
    api_key: ApiKey,
    api_version: i16,
) -> Result<R, NetError> {
    R::decode(&mut body, api_version).map_err(|e| NetError::MalformedResponse {
        api_key,
        api_version,
        reason: format!("{e:#}"),
    })
}

/// What a Produce request carries, before encoding.
#[derive(Debug, Clone, Copy)]
pub struct ProduceParams<'a> {
    /// Topic.
    pub topic: &'a TopicName,
    /// Wire acks value.
    pub acks: i16,
    /// Broker-side timeout.
    pub timeout_ms: i32,
    /// Negotiated Produce version.
    pub api_version: i16,
    /// Client id for the header.
    pub client_id: &'a StrBytes,
}

/// Encodes one Produce request frame holding one encoded record batch per partition.
pub fn encode_produce(
    params: &ProduceParams<'_>,
    correlation_id: i32,
    batches: &[(i32, Bytes)],
    size_hint: usize,
) -> Result<Bytes, NetError> {
    let partition_data = batches
        .iter()
        .map(|(partition, batch)| {
            PartitionProduceData::default()
                .with_index(*partition)
                .with_records(Some(batch.clone()))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(params.acks)
        .with_timeout_ms(params.timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(params.topic.clone())
            .with_partition_data(partition_data)]);
    encode_request_frame(
        params.api_version,
        correlation_id,
        params.client_id,
        &request,
        size_hint,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_net::client::{
        decode_record_batches, encode_record_batch, BatchOptions, ProduceRecord,
    };
    use rill_net::Request;

    #[test]
    fn produce_frames_decode_as_the_broker_sees_them() {
        let topic = TopicName(StrBytes::from_static_str("t"));
        let client = StrBytes::from_static_str(CLIENT_ID);
        let params = ProduceParams {
            topic: &topic,
            acks: -1,
            timeout_ms: 1000,
            api_version: 9,
            client_id: &client,
        };
        let rec = |v: &'static [u8]| ProduceRecord {
            value: Some(Bytes::from_static(v)),
            ..Default::default()
        };
        let batch = |r: &[ProduceRecord]| encode_record_batch(r, &BatchOptions::default()).unwrap();
        let frame = encode_produce(
            &params,
            77,
            &[
                (0, batch(&[rec(b"a"), rec(b"b")])),
                (3, batch(&[rec(b"c")])),
            ],
            100,
        )
        .unwrap();
        let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        let (header, request) = rill_net::decode_request(frame.slice(4..)).unwrap();
        assert_eq!(header.correlation_id, 77);
        assert_eq!(header.request_api_version, 9);
        let Request::Produce(p) = request else {
            panic!("not a produce request")
        };
        assert_eq!(p.acks, -1);
        let parts = &p.topic_data[0].partition_data;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].index, 3);
        let records = decode_record_batches(parts[0].records.as_ref().unwrap()).unwrap();
        let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(
            values,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
    }

    #[test]
    fn response_headers_split() {
        use rill_net::kafka_protocol::messages::ProduceResponse;
        let frame =
            rill_net::encode_response(5, 9, &ProduceResponse::default().with_throttle_time_ms(3))
                .unwrap();
        let (corr, body) = decode_response_header(frame.slice(4..), ApiKey::Produce, 9).unwrap();
        assert_eq!(corr, 5);
        let r: ProduceResponse = decode_body(body, ApiKey::Produce, 9).unwrap();
        assert_eq!(r.throttle_time_ms, 3);
    }
}
