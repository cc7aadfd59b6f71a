//! Request decoding and response encoding for the apis Rill serves.
//!
//! [`decode_request`] turns one frame into a [`RequestHeader`] and a [`Request`]; the
//! [`SUPPORTED_VERSIONS`] table decides which apis and versions are accepted and is what the
//! broker advertises in ApiVersions (trim it and pass the copy to [`decode_request_with`] /
//! [`api_versions_response()`] to advertise less). Produce record batches stay raw `Bytes`
//! slices of the request frame (kafka-protocol's `PartitionProduceData::records` is
//! `Option<Bytes>` and is split off the frame, not copied), and [`encode_response_pieces`]
//! writes Fetch record data into the response without copying it. Everything here is pure;
//! any shard may call it.

use bytes::{buf::UninitSlice, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::{DecodeError, EncodeError};
use crate::frame::FRAME_PREFIX_BYTES;
use crate::header::{decode_request_header, encode_response_header};
use crate::header::{response_header_bytes, response_header_version};
use crate::precheck::{check_request_body, PrecheckError};

/// One api and the inclusive version range Rill accepts for it.
pub type ApiVersionRange = (ApiKey, i16, i16);

/// The apis and versions Rill serves, as advertised in ApiVersions.
///
/// Each max is the highest version that kafka-protocol 0.18 implements, that Rill's request
/// layout check knows, and whose semantics the broker can honour without features it lacks
/// (topic ids in Fetch/Produce, transactions, KIP-848 consumer groups, tiered storage):
/// librdkafka 2.x, kafka-python and the Java 3.x/4.x clients all negotiate down to these.
pub const SUPPORTED_VERSIONS: &[ApiVersionRange] = &[
    // v9+ is flexible; v12 is transactions v2 (KIP-890: a transactional batch adds its
    // partition to the transaction), v13 identifies topics by id.
    (ApiKey::Produce, 3, 12),
    // v13+ identifies topics by id only.
    (ApiKey::Fetch, 4, 12),
    // v8 adds earliest-local (-4), v9 latest-tiered (-5) timestamps for tiered storage.
    (ApiKey::ListOffsets, 1, 7),
    // KIP-320: v2 carries the client's current leader epoch (Kafka 4 dropped v0-1); v3 the
    // replica id.
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    // v13 only adds a top-level error code; 12 is where librdkafka and Java 3.x stop.
    (ApiKey::Metadata, 0, 12),
    // v9 carries KIP-848 member epochs (the field is shared with the generation id).
    (ApiKey::OffsetCommit, 2, 9),
    // v8 batches several groups (Java admin uses it when offered); v9 adds KIP-848 member
    // id and epoch.
    (ApiKey::OffsetFetch, 1, 9),
    // v4 batches coordinator keys; v5 adds TRANSACTION_ABORTABLE, v6 share groups.
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    // v6 adds per-group error messages for KIP-848 groups.
    (ApiKey::DescribeGroups, 0, 5),
    // v5 filters by and reports the group type (classic or KIP-848 consumer).
    (ApiKey::ListGroups, 0, 5),
    // v4 lets the response list features whose lowest version is 0 (KAFKA-17011), which
    // group.version is; librdkafka asks for v3 and gets the features without those.
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    // v5 adds TRANSACTION_ABORTABLE (transactions v2).
    (ApiKey::InitProducerId, 0, 4),
    // Transactions (issue 17): decoded and checked; the broker advertises what its
    // coordinator serves (`SERVED_MAX` in the broker's handlers). v4+ AddPartitionsToTxn is
    // the batched broker-to-broker form (KIP-890: partition leaders verify with it); EndTxn
    // v5 and TxnOffsetCommit v5 are transaction version 2. WriteTxnMarkers v1 is the only version Kafka 4 keeps that
    // kafka-protocol 0.18 has.
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    // v1 (KIP-860) lets the client say whether the replication factor may change.
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // Rill decommissions the broker: its replicas move elsewhere, then it is unregistered.
    (ApiKey::UnregisterBroker, 0, 0),
    // v2 adds fenced-broker listing (KIP-1073).
    (ApiKey::DescribeCluster, 0, 1),
    // KIP-848 consumer groups; v1 (KIP-1082) has the client choose its member id and adds
    // the subscription regex, librdkafka 2.12 asks for exactly v1.
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    // Served as Kafka without an authorizer serves them: SECURITY_DISABLED.
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    // v4 adds the file system's total and usable bytes; v5 (Kafka 4.x) only adds a flag
    // kafka-protocol 0.18 does not have.
    (ApiKey::DescribeLogDirs, 1, 4),
    // v1 adds the election type (preferred or unclean), v2 top-level errors.
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    // Rill has no transactions yet: the list is empty and every id is unknown.
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    // KIP-966: the Java admin's describeTopics (kafka-topics --describe) uses it when offered.
    (ApiKey::DescribeTopicPartitions, 0, 0),
];

/// The version range `table` accepts for `api_key`.
pub fn version_range(table: &[ApiVersionRange], api_key: ApiKey) -> Option<(i16, i16)> {
    table
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// An ApiVersions response (error NONE) advertising `table`.
pub fn api_versions_response(table: &[ApiVersionRange]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        table
            .iter()
            .map(|&(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

/// Implemented by every response type Rill sends: ties it to its api.
pub trait ApiResponse: Encodable + Decodable {
    /// The api this answers.
    const API_KEY: ApiKey;
}

macro_rules! apis {
    ($( $variant:ident($req:ident, $resp:ident), )*) => {
        /// A decoded request of one of the apis Rill serves.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)] // built once per request, moved, not stored
        pub enum Request {
            $(
                #[doc = concat!("`", stringify!($req), "`")]
                $variant($req),
            )*
        }

        impl Request {
            /// The api of this request.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $( Request::$variant(_) => ApiKey::$variant, )*
                }
            }

            /// Encodes the body (no header) at `api_version`; used by tests and tools.
            pub fn encode_body(&self, buf: &mut BytesMut, api_version: i16) -> Result<(), EncodeError> {
                let result = match self {
                    $( Request::$variant(r) => r.encode(buf, api_version), )*
                };
                result.map_err(|e| EncodeError {
                    what: self.api_name(),
                    api_version,
                    reason: e.to_string(),
                })
            }

            /// The api's name, for logs.
            pub fn api_name(&self) -> &'static str {
                match self {
                    $( Request::$variant(_) => stringify!($variant), )*
                }
            }
        }

        /// The name of an api this enum covers, for errors and logs.
        fn api_name(api_key: ApiKey) -> &'static str {
            match api_key {
                $( ApiKey::$variant => stringify!($variant), )*
                _ => "response",
            }
        }

        /// Decodes a body; `None` for an api this enum does not cover. kafka-protocol's
        /// errors are `anyhow` errors, flattened to text here so anyhow stays out of the api.
        pub(crate) fn decode_body(api_key: ApiKey, body: &mut Bytes, api_version: i16) -> Option<Result<Request, String>> {
            Some(match api_key {
                $( ApiKey::$variant => $req::decode(body, api_version)
                    .map(Request::$variant)
                    .map_err(|e| format!("{e:#}")), )*
                _ => return None,
            })
        }

        $(
            impl From<$req> for Request {
                fn from(r: $req) -> Request {
                    Request::$variant(r)
                }
            }

            impl ApiResponse for $resp {
                const API_KEY: ApiKey = ApiKey::$variant;
            }
        )*

        /// A response to one of the apis Rill serves, for handlers that return one type.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Response {
            $(
                #[doc = concat!("`", stringify!($resp), "`")]
                $variant($resp),
            )*
        }

        impl Response {
            /// The api this answers.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $( Response::$variant(_) => ApiKey::$variant, )*
                }
            }

            /// Encodes header and body as one frame; see [`encode_response`].
            pub fn encode(&self, correlation_id: i32, api_version: i16) -> Result<Bytes, EncodeError> {
                match self {
                    $( Response::$variant(r) => encode_response(correlation_id, api_version, r), )*
                }
            }
        }

        $(
            impl From<$resp> for Response {
                fn from(r: $resp) -> Response {
                    Response::$variant(r)
                }
            }
        )*
    };
}

apis! {
    Produce(ProduceRequest, ProduceResponse),
    Fetch(FetchRequest, FetchResponse),
    ListOffsets(ListOffsetsRequest, ListOffsetsResponse),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse),
    Metadata(MetadataRequest, MetadataResponse),
    OffsetCommit(OffsetCommitRequest, OffsetCommitResponse),
    OffsetFetch(OffsetFetchRequest, OffsetFetchResponse),
    FindCoordinator(FindCoordinatorRequest, FindCoordinatorResponse),
    JoinGroup(JoinGroupRequest, JoinGroupResponse),
    Heartbeat(HeartbeatRequest, HeartbeatResponse),
    LeaveGroup(LeaveGroupRequest, LeaveGroupResponse),
    SyncGroup(SyncGroupRequest, SyncGroupResponse),
    DescribeGroups(DescribeGroupsRequest, DescribeGroupsResponse),
    ListGroups(ListGroupsRequest, ListGroupsResponse),
    ApiVersions(ApiVersionsRequest, ApiVersionsResponse),
    CreateTopics(CreateTopicsRequest, CreateTopicsResponse),
    DeleteTopics(DeleteTopicsRequest, DeleteTopicsResponse),
    DeleteRecords(DeleteRecordsRequest, DeleteRecordsResponse),
    InitProducerId(InitProducerIdRequest, InitProducerIdResponse),
    AddPartitionsToTxn(AddPartitionsToTxnRequest, AddPartitionsToTxnResponse),
    AddOffsetsToTxn(AddOffsetsToTxnRequest, AddOffsetsToTxnResponse),
    EndTxn(EndTxnRequest, EndTxnResponse),
    WriteTxnMarkers(WriteTxnMarkersRequest, WriteTxnMarkersResponse),
    TxnOffsetCommit(TxnOffsetCommitRequest, TxnOffsetCommitResponse),
    DescribeConfigs(DescribeConfigsRequest, DescribeConfigsResponse),
    AlterConfigs(AlterConfigsRequest, AlterConfigsResponse),
    CreatePartitions(CreatePartitionsRequest, CreatePartitionsResponse),
    DeleteGroups(DeleteGroupsRequest, DeleteGroupsResponse),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse),
    OffsetDelete(OffsetDeleteRequest, OffsetDeleteResponse),
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse),
    ListPartitionReassignments(ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse),
    DescribeCluster(DescribeClusterRequest, DescribeClusterResponse),
    UnregisterBroker(UnregisterBrokerRequest, UnregisterBrokerResponse),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse),
    DescribeAcls(DescribeAclsRequest, DescribeAclsResponse),
    CreateAcls(CreateAclsRequest, CreateAclsResponse),
    DeleteAcls(DeleteAclsRequest, DeleteAclsResponse),
    DescribeLogDirs(DescribeLogDirsRequest, DescribeLogDirsResponse),
    ElectLeaders(ElectLeadersRequest, ElectLeadersResponse),
    DescribeProducers(DescribeProducersRequest, DescribeProducersResponse),
    DescribeTransactions(DescribeTransactionsRequest, DescribeTransactionsResponse),
    ListTransactions(ListTransactionsRequest, ListTransactionsResponse),
    DescribeTopicPartitions(DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse),
}

/// Decodes a request frame against [`SUPPORTED_VERSIONS`].
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, Request), DecodeError> {
    decode_request_with(frame, SUPPORTED_VERSIONS)
}

/// Decodes a request frame (the payload after the length prefix), accepting the apis and
/// versions in `table`.
///
/// The fixed header is read first, so an unknown api key or an unsupported version is
/// reported with its correlation id ([`DecodeError::UnknownApiKey`],
/// [`DecodeError::UnsupportedVersion`]) before the rest of the frame is looked at. Bodies are
/// shape-checked before kafka-protocol decodes them, because kafka-protocol 0.18 trusts array
/// counts when it allocates (see the crate's `precheck` module).
/// Never panics, whatever the bytes.
pub fn decode_request_with(
    mut frame: Bytes,
    table: &[ApiVersionRange],
) -> Result<(RequestHeader, Request), DecodeError> {
    let (fixed, api_key) = crate::header::peek_known_header(&frame)?;
    let unsupported = DecodeError::UnsupportedVersion {
        api_key,
        api_version: fixed.api_version,
        correlation_id: fixed.correlation_id,
    };
    match version_range(table, api_key) {
        Some((min, max)) if (min..=max).contains(&fixed.api_version) => {}
        _ => return Err(unsupported),
    }
    let (_, header) = decode_request_header(&mut frame)?;
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        api_version: fixed.api_version,
        correlation_id: fixed.correlation_id,
        reason,
    };
    let body_bytes = frame.len();
    let walked_bytes = match check_request_body(fixed.api_key, fixed.api_version, &frame) {
        Ok(walked_bytes) => walked_bytes,
        // The table allows a version whose layout the precheck does not know: refuse it
        // rather than decode unchecked (a test keeps the two in step).
        Err(PrecheckError::NoLayout) => return Err(unsupported),
        Err(PrecheckError::Malformed(reason)) => return Err(malformed(reason)),
    };
    let request = match decode_body(api_key, &mut frame, fixed.api_version) {
        Some(Ok(request)) => request,
        Some(Err(reason)) => return Err(malformed(reason)),
        None => return Err(unsupported),
    };
    // The walk and the decoder must have read the same bytes, or the walk's guarantee does
    // not cover this request. Tests (and the fuzz test) run with debug assertions.
    let decoded_bytes = body_bytes - frame.len();
    debug_assert_eq!(
        walked_bytes, decoded_bytes,
        "precheck layout of {api_key:?} v{} out of step with kafka-protocol",
        fixed.api_version
    );
    if walked_bytes != decoded_bytes {
        tracing::warn!(
            ?api_key,
            api_version = fixed.api_version,
            walked_bytes,
            decoded_bytes,
            "request precheck out of step with kafka-protocol"
        );
    }
    Ok((header, request))
}

/// Encodes a response as one complete frame: length prefix, response header (v0 or v1 as
/// the api and version require; ApiVersions always v0) and body.
///
/// kafka-protocol omits tagged fields that hold their defaults, so flexible responses carry
/// only the tags that were set (older librdkafka rejects an ApiVersions v3 response carrying
/// default tags; `tests` below pin the byte layout).
pub fn encode_response<R: ApiResponse>(
    correlation_id: i32,
    api_version: i16,
    response: &R,
) -> Result<Bytes, EncodeError> {
    let mut pieces = encode_response_pieces(correlation_id, api_version, response, &[])?;
    debug_assert_eq!(pieces.len(), 1);
    Ok(pieces.pop().unwrap_or_default())
}

/// Smallest slice worth writing as its own piece rather than copying.
pub const SPLICE_BYTES_MIN: usize = 1024;

/// Encodes a response like [`encode_response`], but every `bytes`/`records` field whose data
/// is one of the `splice` buffers (same memory, same length, at least [`SPLICE_BYTES_MIN`]) is
/// emitted as that `Bytes` itself instead of being copied. The frame comes back as pieces to
/// write in order with [`crate::frame::write_pieces`].
///
/// This is how Fetch responses carry stored record batches without a copy: see
/// [`RecordSplices`], which also lets one partition's records be several buffers.
pub fn encode_response_pieces<R: ApiResponse>(
    correlation_id: i32,
    api_version: i16,
    response: &R,
    splice: &[Bytes],
) -> Result<Vec<Bytes>, EncodeError> {
    let splices: Vec<(Bytes, Vec<Bytes>)> = splice
        .iter()
        .map(|b| (b.clone(), vec![b.clone()]))
        .collect();
    encode_spliced(correlation_id, api_version, response, &splices)
}

fn encode_spliced<R: ApiResponse>(
    correlation_id: i32,
    api_version: i16,
    response: &R,
    splice: &[(Bytes, Vec<Bytes>)],
) -> Result<Vec<Bytes>, EncodeError> {
    let header_version = response_header_version(R::API_KEY, api_version);
    let mut first =
        BytesMut::with_capacity(FRAME_PREFIX_BYTES + response_header_bytes(header_version) + 256);
    first.put_i32(0); // length prefix, patched below
    encode_response_header(&mut first, correlation_id, header_version);
    let mut buf = SplicingBuf {
        first: Some(first),
        pieces: Vec::new(),
        current: BytesMut::new(),
        flushed_bytes: 0,
        splice,
    };
    response
        .encode(&mut buf, api_version)
        .map_err(|e| EncodeError {
            what: api_name(R::API_KEY),
            api_version,
            reason: format!("{e:#}"),
        })?;
    buf.finish(api_version)
}

/// Bytes of the stand-in region: the most record data one response can splice from several
/// buffers per partition (more is joined by copying).
pub const STAND_IN_BYTES: usize = 64 << 20;

/// Zeroes that stand for record data held in several buffers. Never read nor written (the
/// encoder recognises a stand-in by its address and emits the buffers instead), so its pages
/// are never touched and take no memory.
static STAND_IN: [u8; STAND_IN_BYTES] = [0; STAND_IN_BYTES];

/// The record data of a Fetch response's partitions, for [`encode_fetch_response`]: a
/// partition's whole batches may be several buffers (as the log returns them), and none of
/// them is copied into the frame.
///
/// kafka-protocol encodes a partition's `records` as one buffer; for data in several buffers
/// [`RecordSplices::records`] hands out a stand-in of the right length (a slice of a static
/// zero region with its own address), which the encoder replaces by the buffers.
#[derive(Debug, Default)]
pub struct RecordSplices {
    entries: Vec<(Bytes, Vec<Bytes>)>,
    stand_in_used: usize,
}

impl RecordSplices {
    pub fn new() -> RecordSplices {
        RecordSplices::default()
    }

    /// The `records` value for a partition whose data is `chunks`, in order.
    pub fn records(&mut self, chunks: Vec<Bytes>) -> Bytes {
        let total: usize = chunks.iter().map(Bytes::len).sum();
        if chunks.len() <= 1 {
            let one = chunks.into_iter().next().unwrap_or_default();
            if one.len() >= SPLICE_BYTES_MIN {
                self.entries.push((one.clone(), vec![one.clone()]));
            }
            return one;
        }
        if total < SPLICE_BYTES_MIN || self.stand_in_used + total > STAND_IN_BYTES {
            // Small, or past the stand-in region: one joined copy.
            let mut joined = BytesMut::with_capacity(total);
            for c in &chunks {
                joined.extend_from_slice(c);
            }
            let joined = joined.freeze();
            if joined.len() >= SPLICE_BYTES_MIN {
                self.entries.push((joined.clone(), vec![joined.clone()]));
            }
            return joined;
        }
        let stand_in =
            Bytes::from_static(&STAND_IN[self.stand_in_used..self.stand_in_used + total]);
        self.stand_in_used += total;
        self.entries.push((stand_in.clone(), chunks));
        stand_in
    }
}

/// Encodes a Fetch response with its record data spliced in without copying: the
/// partitions' `records` must come from `splices` ([`RecordSplices::records`]).
pub fn encode_fetch_response(
    correlation_id: i32,
    api_version: i16,
    response: &FetchResponse,
    splices: &RecordSplices,
) -> Result<Vec<Bytes>, EncodeError> {
    encode_spliced(correlation_id, api_version, response, &splices.entries)
}

/// The encode target for [`encode_response_pieces`]: a `BufMut` that copies small writes
/// into the current piece and turns writes of registered buffers into pieces of their own.
///
/// kafka-protocol writes `bytes`/`records` fields with one `put_slice` of the whole buffer,
/// which is what makes recognising them by address possible. It does not use the
/// `ByteBufMut` gap/seek API when encoding messages (only for record batches), so `seek` and
/// `range` only ever touch the piece being written.
struct SplicingBuf<'a> {
    /// The piece holding the length prefix, kept mutable until the length is known.
    first: Option<BytesMut>,
    pieces: Vec<Bytes>,
    current: BytesMut,
    /// Bytes in `first` and `pieces` (the offset where `current` starts).
    flushed_bytes: usize,
    /// Buffers recognised by address and length, and the pieces emitted in their place.
    splice: &'a [(Bytes, Vec<Bytes>)],
}

impl SplicingBuf<'_> {
    fn target(&mut self) -> &mut BytesMut {
        match self.first.as_mut() {
            Some(first) if self.pieces.is_empty() => first,
            _ => &mut self.current,
        }
    }

    fn flush_current(&mut self) {
        if let Some(first) = self.first.as_ref() {
            if self.pieces.is_empty() {
                // `first` is still the piece being written; it stays mutable for the prefix.
                self.flushed_bytes = first.len();
                return;
            }
        }
        if !self.current.is_empty() {
            let piece = self.current.split().freeze();
            self.flushed_bytes += piece.len();
            self.pieces.push(piece);
        }
    }

    fn finish(mut self, api_version: i16) -> Result<Vec<Bytes>, EncodeError> {
        let first_len = self.first.as_ref().map_or(0, |f| f.len());
        let total =
            first_len + self.pieces.iter().map(Bytes::len).sum::<usize>() + self.current.len();
        let payload = total - FRAME_PREFIX_BYTES;
        let length = i32::try_from(payload).map_err(|_| EncodeError {
            what: "response frame",
            api_version,
            reason: format!("{payload} bytes exceed the i32 length prefix"),
        })?;
        let mut first = self.first.take().unwrap_or_default();
        first[..FRAME_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
        let mut out = Vec::with_capacity(self.pieces.len() + 2);
        out.push(first.freeze());
        out.append(&mut self.pieces);
        if !self.current.is_empty() {
            out.push(self.current.freeze());
        }
        Ok(out)
    }
}

// SAFETY: every method delegates to the `BytesMut` currently being written (`target()`),
// which upholds `BufMut`'s contract; `put_slice` only adds whole pieces between two such
// writes and never exposes uninitialised memory.
unsafe impl BufMut for SplicingBuf<'_> {
    fn remaining_mut(&self) -> usize {
        usize::MAX - self.flushed_bytes - self.current.len()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded under the caller's guarantee that `cnt` bytes of the chunk
        // returned by `chunk_mut` (the same target) were initialised.
        unsafe { self.target().advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.target().chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SPLICE_BYTES_MIN {
            let found = self
                .splice
                .iter()
                .find(|(b, _)| b.as_ptr() == src.as_ptr() && b.len() == src.len());
            if let Some((_, pieces)) = found {
                // Close the piece being written; small writes continue in `current`.
                self.flush_current();
                for piece in pieces {
                    self.flushed_bytes += piece.len();
                    self.pieces.push(piece.clone());
                }
                return;
            }
        }
        self.target().extend_from_slice(src);
    }
}

impl ByteBufMut for SplicingBuf<'_> {
    fn offset(&self) -> usize {
        match self.first.as_ref() {
            Some(first) if self.pieces.is_empty() => first.len(),
            _ => self.flushed_bytes + self.current.len(),
        }
    }

    fn seek(&mut self, offset: usize) {
        let base = self.offset() - self.target().len();
        assert!(offset >= base, "seek into an already spliced piece");
        self.target().resize(offset - base, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let base = self.offset() - self.target().len();
        assert!(r.start >= base, "range over an already spliced piece");
        &mut self.target()[r.start - base..r.end - base]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::protocol::StrBytes;

    fn concat(pieces: &[Bytes]) -> Vec<u8> {
        pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }

    #[test]
    fn api_versions_v3_defaults_carry_no_tagged_fields() {
        let response = api_versions_response(SUPPORTED_VERSIONS);
        let frame = encode_response(7, 3, &response).unwrap();
        // prefix, header v0 (correlation id only, no tag byte: ApiVersions is special)
        assert_eq!(&frame[4..8], &7i32.to_be_bytes());
        let body = &frame[8..];
        assert_eq!(&body[..2], &[0, 0], "error code NONE");
        // compact array: count + 1, then per key: i16 key, i16 min, i16 max, 0 tags
        let count = SUPPORTED_VERSIONS.len();
        assert_eq!(body[2] as usize, count + 1);
        let array_end = 3 + count * 7;
        for (i, &(key, min, max)) in SUPPORTED_VERSIONS.iter().enumerate() {
            let entry = &body[3 + i * 7..3 + (i + 1) * 7];
            assert_eq!(entry[..2], (key as i16).to_be_bytes());
            assert_eq!(entry[2..4], min.to_be_bytes());
            assert_eq!(entry[4..6], max.to_be_bytes());
            assert_eq!(entry[6], 0, "per-entry tagged fields");
        }
        // throttle_time_ms then the top-level tagged field count: zero, and nothing after
        assert_eq!(&body[array_end..array_end + 4], &[0, 0, 0, 0]);
        assert_eq!(body.len(), array_end + 5);
        assert_eq!(*body.last().unwrap(), 0x00);
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
    }

    #[test]
    fn flexible_responses_get_header_v1() {
        // Heartbeat has no v99: encoding must fail, not write garbage.
        assert!(encode_response(9, 99, &HeartbeatResponse::default()).is_err());
        let frame = encode_response(9, 4, &HeartbeatResponse::default()).unwrap();
        // prefix(4) + correlation(4) + header tags(1) + throttle(4) + error(2) + tags(1)
        assert_eq!(frame.len(), 16);
        assert_eq!(frame[8], 0);
    }

    fn fetch_with(records: Vec<Bytes>) -> FetchResponse {
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(
                records
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        PartitionData::default()
                            .with_partition_index(i as i32)
                            .with_records(Some(r))
                    })
                    .collect(),
            )])
    }

    #[test]
    fn fetch_records_are_spliced_not_copied() {
        let a = Bytes::from(vec![0xaa; 4096]);
        let b = Bytes::from(vec![0xbb; 2000]);
        let small = Bytes::from(vec![0xcc; 10]);
        for version in [4, 11, 12] {
            let mut splices = RecordSplices::new();
            let records = vec![
                splices.records(vec![a.clone()]),
                splices.records(vec![small.clone()]),
                splices.records(vec![b.clone()]),
            ];
            let response = fetch_with(records);
            let pieces = encode_fetch_response(5, version, &response, &splices).unwrap();
            let copied = encode_response(5, version, &response).unwrap();
            assert_eq!(concat(&pieces), copied.to_vec(), "v{version}");
            assert!(pieces
                .iter()
                .any(|p| p.as_ptr() == a.as_ptr() && p.len() == a.len()));
            assert!(pieces
                .iter()
                .any(|p| p.as_ptr() == b.as_ptr() && p.len() == b.len()));
            let length = i32::from_be_bytes(pieces[0][..4].try_into().unwrap()) as usize;
            assert_eq!(length + 4, copied.len());
        }
    }

    #[test]
    fn a_partition_held_in_several_buffers_is_spliced_in_order() {
        let chunks = vec![
            Bytes::from(vec![1u8; 3000]),
            Bytes::from(vec![2u8; 5]),
            Bytes::from(vec![3u8; 2048]),
        ];
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let tiny = vec![Bytes::from(vec![4u8; 3]), Bytes::from(vec![5u8; 4])];
        for version in [4, 12] {
            let mut splices = RecordSplices::new();
            let records = vec![
                splices.records(chunks.clone()),
                splices.records(tiny.clone()),
            ];
            assert_eq!(records[0].len(), joined.len());
            assert_eq!(&records[1][..], &[4, 4, 4, 5, 5, 5, 5]);
            let pieces = encode_fetch_response(9, version, &fetch_with(records), &splices).unwrap();
            // The same frame as a response built from one joined buffer.
            let reference = fetch_with(vec![
                Bytes::from(joined.clone()),
                Bytes::from(vec![4, 4, 4, 5, 5, 5, 5]),
            ]);
            let copied = encode_response(9, version, &reference).unwrap();
            assert_eq!(concat(&pieces), copied.to_vec(), "v{version}");
            for c in [&chunks[0], &chunks[2]] {
                assert!(
                    pieces
                        .iter()
                        .any(|p| p.as_ptr() == c.as_ptr() && p.len() == c.len()),
                    "a large chunk goes out as itself"
                );
            }
        }
    }

    #[test]
    fn supported_table_is_within_kafka_protocol_and_layouts() {
        for &(key, min, max) in SUPPORTED_VERSIONS {
            let theirs = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(theirs.min <= min && max <= theirs.max, "{key:?} {theirs}");
            let layout_max = crate::precheck::layout_version_max(key as i16)
                .unwrap_or_else(|| panic!("no layout for {key:?}"));
            assert!(max <= layout_max, "{key:?} layout known to v{layout_max}");
        }
    }
}
