//! A small Kafka client over any `futures_lite` byte stream, for the `rill` CLI and
//! `rill-loadgen` (not used by the broker).
//!
//! [`Connection`] frames and correlates requests: [`Connection::send`] is one round trip;
//! [`Connection::send_only`] / [`Connection::recv`] pipeline several requests and read the
//! answers in order (Kafka answers each connection's requests in the order they were sent).
//! [`Connection::api_versions`] negotiates the version to use per api. [`encode_record_batch`]
//! and [`decode_record_batches`] build and read RecordBatch v2 bytes on the client side
//! only. A `Connection` belongs to the one task that drives it; it is not runtime-specific.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request as KafkaRequest, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::codec::{version_range, ApiVersionRange, SUPPORTED_VERSIONS};
use crate::error::{ErrorCode, NetError};
use crate::frame::{frame_prefix, write_pieces, FrameLimits, FrameReader};
use crate::header::{request_header_version, response_header_version};

/// The client id Rill's tools send.
pub const CLIENT_ID: &str = "rill";

/// Default bound on requests sent but not yet answered.
pub const INFLIGHT_REQUESTS_MAX_DEFAULT: usize = 64;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// Sent in every request header.
    pub client_id: String,
    /// Requests that may await a response at once.
    pub inflight_requests_max: usize,
    /// Largest response frame accepted, in bytes (raise it for large fetches).
    pub response_frame_bytes_max: usize,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            client_id: CLIENT_ID.to_string(),
            inflight_requests_max: INFLIGHT_REQUESTS_MAX_DEFAULT,
            response_frame_bytes_max: FrameLimits::responses().frame_bytes_max,
        }
    }
}

/// A request that awaits its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflight {
    /// The id the response will carry.
    pub correlation_id: i32,
    /// The api of the request.
    pub api_key: ApiKey,
    /// The version it was sent at (the response uses the same).
    pub api_version: i16,
}

/// A blocking `std` TCP stream presented as a futures-lite stream, for tools that drive a
/// [`Connection`] with `futures_lite::future::block_on` on their own thread (the CLI, tests):
/// every poll makes the blocking call, so set read and write timeouts on the socket to bound
/// each one (a timeout surfaces as an error, never a hang).
#[derive(Debug)]
pub struct BlockingStream(pub std::net::TcpStream);

impl AsyncRead for BlockingStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(std::io::Read::read(&mut self.get_mut().0, buf))
    }
}

impl AsyncWrite for BlockingStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(std::io::Write::write(&mut self.get_mut().0, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(std::io::Write::flush(&mut self.get_mut().0))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(self.get_mut().0.shutdown(std::net::Shutdown::Write))
    }
}

/// One client connection to a broker.
#[derive(Debug)]
pub struct Connection<S> {
    io: FrameReader<S>,
    client_id: StrBytes,
    next_correlation_id: i32,
    inflight: VecDeque<Inflight>,
    inflight_requests_max: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// A connection with default options over an already connected stream.
    pub fn new(stream: S) -> Self {
        Self::with_options(stream, ConnectionOptions::default())
    }

    /// A connection with the given options.
    pub fn with_options(stream: S, options: ConnectionOptions) -> Self {
        let limits = FrameLimits {
            frame_bytes_max: options.response_frame_bytes_max,
            ..FrameLimits::responses()
        };
        Connection {
            io: FrameReader::new(stream, limits),
            client_id: StrBytes::from_string(options.client_id),
            next_correlation_id: 0,
            inflight: VecDeque::new(),
            inflight_requests_max: options.inflight_requests_max.max(1),
        }
    }

    /// Sends `request` at `api_version` and waits for its response (after any responses to
    /// earlier pipelined requests, which must be read with [`Connection::recv`] first).
    pub async fn send<R: KafkaRequest>(
        &mut self,
        api_version: i16,
        request: &R,
    ) -> Result<R::Response, NetError> {
        if !self.inflight.is_empty() {
            return Err(NetError::ResponsesPending {
                inflight_requests: self.inflight.len(),
            });
        }
        self.send_only(api_version, request).await?;
        self.recv::<R>().await
    }

    /// Sends `request` without waiting; its response is read later by [`Connection::recv`].
    pub async fn send_only<R: KafkaRequest>(
        &mut self,
        api_version: i16,
        request: &R,
    ) -> Result<Inflight, NetError> {
        if self.inflight.len() >= self.inflight_requests_max {
            return Err(NetError::TooManyInflight {
                inflight_requests_max: self.inflight_requests_max,
            });
        }
        let inflight = self.write_request(api_version, request).await?;
        self.inflight.push_back(inflight);
        Ok(inflight)
    }

    /// Sends a request the broker will not answer (Produce with `acks = 0`).
    pub async fn send_no_response<R: KafkaRequest>(
        &mut self,
        api_version: i16,
        request: &R,
    ) -> Result<(), NetError> {
        self.write_request(api_version, request).await.map(|_| ())
    }

    /// Reads the response to the oldest outstanding request and decodes it as `R`'s.
    pub async fn recv<R: KafkaRequest>(&mut self) -> Result<R::Response, NetError> {
        let expected = self
            .inflight
            .front()
            .copied()
            .ok_or(NetError::NothingInflight)?;
        let expected_key = api_key_of::<R>(expected.api_key)?;
        if expected_key != expected.api_key {
            return Err(NetError::ApiMismatch {
                expected: expected_key,
                actual: expected.api_key,
            });
        }
        let (inflight, mut body) = self.recv_raw().await?;
        R::Response::decode(&mut body, inflight.api_version).map_err(|e| {
            NetError::MalformedResponse {
                api_key: inflight.api_key,
                api_version: inflight.api_version,
                reason: format!("{e:#}"),
            }
        })
    }

    /// Reads the next response frame, checks its correlation id and strips its header;
    /// returns the request it answers and the undecoded body.
    pub async fn recv_raw(&mut self) -> Result<(Inflight, Bytes), NetError> {
        let expected = self
            .inflight
            .front()
            .copied()
            .ok_or(NetError::NothingInflight)?;
        let Some(mut frame) = self.io.next_frame().await? else {
            return Err(NetError::Closed {
                inflight_requests: self.inflight.len(),
            });
        };
        let header_version = response_header_version(expected.api_key, expected.api_version);
        let header = ResponseHeader::decode(&mut frame, header_version).map_err(|e| {
            NetError::MalformedResponse {
                api_key: expected.api_key,
                api_version: expected.api_version,
                reason: format!("response header: {e:#}"),
            }
        })?;
        if header.correlation_id != expected.correlation_id {
            return Err(NetError::CorrelationMismatch {
                expected: expected.correlation_id,
                actual: header.correlation_id,
            });
        }
        self.inflight.pop_front();
        Ok((expected, frame))
    }

    /// The stream back, for a caller that set a connection up with a few round trips
    /// (ApiVersions, Metadata) and now frames its own traffic on it. `None` (and the
    /// connection is dropped) if a request still awaits its answer or unread bytes are
    /// buffered: handing the stream over then would split a response.
    pub fn into_stream(self) -> Option<S> {
        if !self.inflight.is_empty() {
            return None;
        }
        let (stream, unread) = self.io.into_parts();
        unread.is_empty().then_some(stream)
    }

    /// Requests outstanding.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// The underlying stream (e.g. to shut it down).
    pub fn get_mut(&mut self) -> &mut S {
        self.io.get_mut()
    }

    /// Asks the broker which versions it supports and intersects them with what this client
    /// speaks ([`SUPPORTED_VERSIONS`]).
    ///
    /// Sends ApiVersions v3; a broker that does not support v3 answers (KIP-511) with a v0
    /// response carrying UNSUPPORTED_VERSION and its own ApiVersions range, and the request
    /// is retried once at the highest version both sides know.
    pub async fn api_versions(&mut self) -> Result<ApiVersions, NetError> {
        let ours = version_range(SUPPORTED_VERSIONS, ApiKey::ApiVersions).unwrap_or((0, 3));
        let mut version = ours.1;
        for _attempt in 0..2 {
            let request = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("rill"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            self.send_only(version, &request).await?;
            let (_, body) = self.recv_raw().await?;
            let response = match ApiVersionsResponse::decode(&mut body.clone(), version) {
                Ok(r) if r.error_code != ErrorCode::UnsupportedVersion.code() => r,
                // The error answer is always v0, whatever version was asked for.
                _ => ApiVersionsResponse::decode(&mut body.clone(), 0).map_err(|e| {
                    NetError::MalformedResponse {
                        api_key: ApiKey::ApiVersions,
                        api_version: version,
                        reason: format!("{e:#}"),
                    }
                })?,
            };
            if response.error_code == ErrorCode::UnsupportedVersion.code() {
                let theirs = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version);
                match theirs {
                    Some(max) if max < version && max >= ours.0 => {
                        version = max;
                        continue;
                    }
                    _ => {
                        return Err(NetError::NoCommonVersion {
                            api_key: ApiKey::ApiVersions,
                        })
                    }
                }
            }
            if response.error_code != 0 {
                return Err(NetError::Broker {
                    api_key: ApiKey::ApiVersions,
                    code: response.error_code,
                });
            }
            let broker: Vec<ApiVersionRange> = response
                .api_keys
                .iter()
                .filter_map(|k| {
                    let key = ApiKey::try_from(k.api_key).ok()?;
                    Some((key, k.min_version, k.max_version))
                })
                .collect();
            return Ok(ApiVersions::negotiate(&broker, SUPPORTED_VERSIONS));
        }
        Err(NetError::NoCommonVersion {
            api_key: ApiKey::ApiVersions,
        })
    }

    async fn write_request<R: KafkaRequest>(
        &mut self,
        api_version: i16,
        request: &R,
    ) -> Result<Inflight, NetError> {
        let api_key = api_key_of::<R>(ApiKey::ApiVersions)?;
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame =
            encode_request_frame(api_version, correlation_id, &self.client_id, request, 128)?;
        let mut pieces = [frame];
        let stream = self.io.get_mut();
        write_pieces(stream, &mut pieces)
            .await
            .map_err(crate::error::FrameError::Io)?;
        stream.flush().await.map_err(crate::error::FrameError::Io)?;
        Ok(Inflight {
            correlation_id,
            api_key,
            api_version,
        })
    }
}

/// `R`'s api key; `fallback` names the api in the error if kafka-protocol knows no such key.
fn api_key_of<R: KafkaRequest>(fallback: ApiKey) -> Result<ApiKey, NetError> {
    ApiKey::try_from(R::KEY).map_err(|_| NetError::NoCommonVersion { api_key: fallback })
}

/// The outcome of version negotiation: per api, the highest version both sides support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersions {
    /// What the broker advertised.
    pub broker: Vec<ApiVersionRange>,
    /// Per api both sides know: the version to use.
    pub chosen: Vec<(ApiKey, i16)>,
}

impl ApiVersions {
    /// Intersects the broker's ranges with ours, picking the highest common version.
    pub fn negotiate(broker: &[ApiVersionRange], ours: &[ApiVersionRange]) -> ApiVersions {
        let chosen = ours
            .iter()
            .filter_map(|&(key, our_min, our_max)| {
                let (their_min, their_max) = version_range(broker, key)?;
                let max = our_max.min(their_max);
                (max >= our_min.max(their_min)).then_some((key, max))
            })
            .collect();
        ApiVersions {
            broker: broker.to_vec(),
            chosen,
        }
    }

    /// The version to use for `api_key`, if any is common.
    pub fn version(&self, api_key: ApiKey) -> Option<i16> {
        self.chosen
            .iter()
            .find(|(key, _)| *key == api_key)
            .map(|&(_, v)| v)
    }

    /// Like [`ApiVersions::version`], as an error when there is none.
    pub fn require(&self, api_key: ApiKey) -> Result<i16, NetError> {
        self.version(api_key)
            .ok_or(NetError::NoCommonVersion { api_key })
    }
}

/// One record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation time, ms since the epoch.
    pub timestamp_ms: i64,
}

/// Batch-level settings for [`encode_record_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Codec for the records (needs the matching cargo feature of this crate, except None).
    pub compression: Compression,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1 for a non-idempotent producer.
    pub base_sequence: i32,
    /// Part of the producer's transaction (the batch's transactional attribute).
    pub transactional: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        }
    }
}

/// Builds one RecordBatch v2 (base offset 0; the broker assigns offsets) holding `records`.
pub fn encode_record_batch(
    records: &[ProduceRecord],
    options: &BatchOptions,
) -> Result<Bytes, NetError> {
    if records.is_empty() {
        return Err(NetError::Records {
            reason: "a batch needs at least one record".to_string(),
        });
    }
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut headers = IndexMap::with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers.insert(StrBytes::from_string(k.clone()), v.clone());
            }
            Record {
                transactional: options.transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: options.producer_id,
                producer_epoch: options.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol starts a new batch whenever offset - sequence changes, so
                // the sequence advances with the offset even for "no sequence" (-1) batches;
                // only the first record's value reaches the wire (as base sequence).
                sequence: options.base_sequence.wrapping_add(i as i32),
                timestamp: r.timestamp_ms,
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: options.compression,
        },
    )
    .map_err(|e| NetError::Records {
        reason: format!("{e:#}"),
    })?;
    Ok(buf.freeze())
}

/// Bytes of a RecordBatch v2 header up to and including the record count.
const BATCH_HEADER_BYTES: usize = 61;
/// Offset of the magic byte in a batch.
const BATCH_MAGIC_OFFSET: usize = 16;
/// Offset of the attributes in a batch.
const BATCH_ATTRIBUTES_OFFSET: usize = 21;
/// Offset of the record count in a batch.
const BATCH_RECORD_COUNT_OFFSET: usize = 57;
/// Most records accepted in one compressed batch (an uncompressed batch is bounded by its
/// size): kafka-protocol reserves space for the declared count before decoding.
pub const BATCH_RECORDS_MAX: usize = 1 << 24;

/// A record read back from fetched data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp (creation or log append time, per the batch).
    pub timestamp_ms: i64,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Decodes the record batches of a Fetch partition's `records`, skipping control batches.
///
/// A broker may cut the last batch short to respect `max_bytes`; an incomplete trailing
/// batch is ignored, as Kafka clients do. Client-side helper: kafka-protocol's record decoder
/// still trusts per-record header counts, so use it only on data from a trusted broker.
pub fn decode_record_batches(records: &Bytes) -> Result<Vec<FetchedRecord>, NetError> {
    let mut out = Vec::new();
    let mut rest = records.clone();
    let bad = |reason: String| NetError::Records { reason };
    while rest.len() >= BATCH_HEADER_BYTES {
        let batch_length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let Ok(batch_length) = usize::try_from(batch_length) else {
            return Err(bad(format!("negative batch length {batch_length}")));
        };
        let total = 12 + batch_length;
        if total > rest.len() {
            break; // truncated trailing batch
        }
        if total < BATCH_HEADER_BYTES {
            return Err(bad(format!(
                "batch length {batch_length} below the header size"
            )));
        }
        let magic = rest[BATCH_MAGIC_OFFSET];
        if magic != 2 {
            return Err(bad(format!(
                "record batch magic {magic} (only v2 is supported)"
            )));
        }
        let attributes = i16::from_be_bytes([
            rest[BATCH_ATTRIBUTES_OFFSET],
            rest[BATCH_ATTRIBUTES_OFFSET + 1],
        ]);
        let c = BATCH_RECORD_COUNT_OFFSET;
        let record_count = i32::from_be_bytes([rest[c], rest[c + 1], rest[c + 2], rest[c + 3]]);
        let compressed = attributes & 0x7 != 0;
        let record_count_max = if compressed {
            BATCH_RECORDS_MAX
        } else {
            total - BATCH_HEADER_BYTES
        };
        if record_count < 0 || record_count as usize > record_count_max {
            return Err(bad(format!("implausible record count {record_count}")));
        }
        let mut batch = rest.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| bad(format!("{e:#}")))?;
        for record in set.records {
            if record.control {
                continue;
            }
            out.push(FetchedRecord {
                offset: record.offset,
                timestamp_ms: record.timestamp,
                key: record.key,
                value: record.value,
                headers: record
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_highest_common() {
        let broker = [
            (ApiKey::Produce, 0, 9),
            (ApiKey::Fetch, 13, 17),
            (ApiKey::Metadata, 0, 12),
        ];
        let ours = [
            (ApiKey::Produce, 3, 11),
            (ApiKey::Fetch, 4, 12),
            (ApiKey::Metadata, 0, 12),
            (ApiKey::ListOffsets, 1, 7),
        ];
        let v = ApiVersions::negotiate(&broker, &ours);
        assert_eq!(v.version(ApiKey::Produce), Some(9));
        assert_eq!(v.version(ApiKey::Fetch), None);
        assert_eq!(v.version(ApiKey::Metadata), Some(12));
        assert_eq!(v.version(ApiKey::ListOffsets), None);
        assert!(v.require(ApiKey::Fetch).is_err());
    }

    #[test]
    fn batch_round_trips() {
        let records: Vec<ProduceRecord> = (0..5)
            .map(|i| ProduceRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: if i == 3 {
                    None
                } else {
                    Some(Bytes::from(vec![i as u8; 100]))
                },
                headers: vec![("h".to_string(), Some(Bytes::from_static(b"v")))],
                timestamp_ms: 1_700_000_000_000 + i,
            })
            .collect();
        let batch = encode_record_batch(&records, &BatchOptions::default()).unwrap();
        // One batch: record count 5, base sequence -1.
        assert_eq!(&batch[57..61], &5i32.to_be_bytes());
        assert_eq!(&batch[53..57], &(-1i32).to_be_bytes());
        let mut two = BytesMut::from(&batch[..]);
        two.extend_from_slice(&batch);
        two.extend_from_slice(&batch[..30]); // truncated trailing batch
        let fetched = decode_record_batches(&two.freeze()).unwrap();
        assert_eq!(fetched.len(), 10);
        for (i, r) in fetched[..5].iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.key, records[i].key);
            assert_eq!(r.value, records[i].value);
            assert_eq!(r.headers, records[i].headers);
            assert_eq!(r.timestamp_ms, records[i].timestamp_ms);
        }
    }

    #[test]
    fn implausible_record_count_is_refused() {
        let batch = encode_record_batch(
            &[ProduceRecord {
                value: Some(Bytes::from_static(b"x")),
                ..Default::default()
            }],
            &BatchOptions::default(),
        )
        .unwrap();
        let mut evil = BytesMut::from(&batch[..]);
        evil[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_record_batches(&evil.freeze()).is_err());
    }
}

/// Encodes `request` with its request header (v1 or v2, as the api and version require)
/// as one length-prefixed frame. `size_hint` sizes the buffer (add the records' bytes).
pub fn encode_request_frame<R: KafkaRequest>(
    api_version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    request: &R,
    size_hint: usize,
) -> Result<Bytes, NetError> {
    let api_key = api_key_of::<R>(ApiKey::ApiVersions)?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let mut buf = BytesMut::with_capacity(size_hint + 64);
    buf.extend_from_slice(&[0; 4]);
    let encode_err = |what: &'static str, e: String| crate::error::EncodeError {
        what,
        api_version,
        reason: e,
    };
    header
        .encode(&mut buf, request_header_version(api_key, api_version))
        .map_err(|e| encode_err("request header", format!("{e:#}")))?;
    request
        .encode(&mut buf, api_version)
        .map_err(|e| encode_err("request", format!("{e:#}")))?;
    let prefix = frame_prefix(buf.len() - 4)?;
    buf[..4].copy_from_slice(&prefix);
    Ok(buf.freeze())
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), so keyed records land on the
/// partitions Kafka's default partitioner picks.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

#[cfg(test)]
mod murmur2_tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Kafka's UtilsTest vectors.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
