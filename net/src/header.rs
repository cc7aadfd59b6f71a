//! Request and response headers.
//!
//! A request header is `api_key: i16, api_version: i16, correlation_id: i32, client_id:
//! nullable string` (header v1) plus tagged fields (header v2, used by flexible api versions).
//! The fixed first 8 bytes are read before anything else ([`peek_fixed_header`]), so that even
//! a request for an unknown api or an unsupported version can be answered with its own
//! correlation id. Response headers are the correlation id (v0) plus tagged fields (v1);
//! ApiVersions always answers with v0 so that a client can parse the answer before it knows
//! which versions the broker speaks.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::error::{DecodeError, ErrorCode};

/// Bytes of the fixed header prefix: api key, api version, correlation id.
pub const FIXED_HEADER_BYTES: usize = 8;

/// The part of a request header every version shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Raw api key (may be one Kafka does not define).
    pub api_key: i16,
    /// Requested api version.
    pub api_version: i16,
    /// Echoed back in the response.
    pub correlation_id: i32,
}

/// Reads the fixed 8-byte header prefix without consuming anything.
pub fn peek_fixed_header(frame: &[u8]) -> Option<FixedHeader> {
    let b = frame.get(..FIXED_HEADER_BYTES)?;
    Some(FixedHeader {
        api_key: i16::from_be_bytes([b[0], b[1]]),
        api_version: i16::from_be_bytes([b[2], b[3]]),
        correlation_id: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    })
}

/// The request header version for an api and version (1, or 2 for flexible versions).
pub fn request_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    api_key.request_header_version(api_version)
}

/// The response header version for an api and version (0, or 1 for flexible versions;
/// always 0 for ApiVersions).
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    api_key.response_header_version(api_version)
}

/// Decodes the full request header from the front of `frame`, advancing it to the body.
///
/// The fixed prefix and its api key, or the error naming what is wrong
/// (with the correlation id whenever the prefix was present).
pub fn peek_known_header(frame: &[u8]) -> Result<(FixedHeader, ApiKey), DecodeError> {
    let fixed = peek_fixed_header(frame).ok_or(DecodeError::TruncatedHeader {
        frame_bytes: frame.len(),
    })?;
    let api_key = ApiKey::try_from(fixed.api_key).map_err(|_| DecodeError::UnknownApiKey {
        api_key: fixed.api_key,
        api_version: fixed.api_version,
        correlation_id: fixed.correlation_id,
    })?;
    Ok((fixed, api_key))
}

/// Errors carry the correlation id whenever the fixed prefix was present.
pub fn decode_request_header(frame: &mut Bytes) -> Result<(ApiKey, RequestHeader), DecodeError> {
    let (fixed, api_key) = peek_known_header(frame)?;
    let header_version = request_header_version(api_key, fixed.api_version);
    let header =
        RequestHeader::decode(frame, header_version).map_err(|e| DecodeError::Malformed {
            api_key,
            api_version: fixed.api_version,
            correlation_id: fixed.correlation_id,
            reason: format!("request header v{header_version}: {e}"),
        })?;
    Ok((api_key, header))
}

/// Appends a response header of the given version (0 or 1) to `buf`.
pub fn encode_response_header(buf: &mut BytesMut, correlation_id: i32, header_version: i16) {
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        // Empty tagged-field section: Rill never sends response header tags.
        buf.put_u8(0);
    }
}

/// Bytes a response header of `header_version` occupies.
pub const fn response_header_bytes(header_version: i16) -> usize {
    if header_version >= 1 {
        5
    } else {
        4
    }
}

/// The answer to an ApiVersions request at a version the broker does not support.
///
/// Kafka (KIP-511) answers with error UNSUPPORTED_VERSION and, in `api_keys`, only its own
/// ApiVersions range, encoded as a **v0** response so that any client can read it and retry
/// with a version in that range. Encode the result at version 0 (e.g. with
/// [`crate::codec::encode_response`]`(.., ApiKey::ApiVersions, 0, ..)`).
pub fn unsupported_api_versions_response(
    min_version: i16,
    max_version: i16,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UnsupportedVersion.code())
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(min_version)
            .with_max_version(max_version)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{encode_request_header_into_buffer, StrBytes};

    fn header_bytes(api_key: ApiKey, api_version: i16, correlation_id: i32) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(api_version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("rill-test")));
        let mut buf = BytesMut::new();
        encode_request_header_into_buffer(&mut buf, &header).unwrap();
        buf.extend_from_slice(b"body");
        buf.freeze()
    }

    #[test]
    fn v1_and_v2_headers_decode_and_leave_the_body() {
        for (key, version) in [(ApiKey::Metadata, 1), (ApiKey::Metadata, 12)] {
            let mut frame = header_bytes(key, version, 77);
            let (api_key, header) = decode_request_header(&mut frame).unwrap();
            assert_eq!(api_key, key);
            assert_eq!(header.correlation_id, 77);
            assert_eq!(header.client_id.as_deref(), Some("rill-test"));
            assert_eq!(&frame[..], b"body");
        }
    }

    #[test]
    fn unknown_api_key_keeps_correlation_id() {
        let mut frame = Bytes::from_static(&[0x7f, 0x00, 0, 3, 0, 0, 0, 42, 0xff, 0xff]);
        let err = decode_request_header(&mut frame).unwrap_err();
        assert_eq!(err.correlation_id(), Some(42));
        assert!(matches!(
            err,
            DecodeError::UnknownApiKey {
                api_key: 0x7f00,
                ..
            }
        ));
    }

    #[test]
    fn truncated_header_has_no_correlation_id() {
        let mut frame = Bytes::from_static(&[0, 18, 0, 3, 0]);
        let err = decode_request_header(&mut frame).unwrap_err();
        assert_eq!(err.correlation_id(), None);
    }

    #[test]
    fn api_versions_answers_with_header_v0() {
        assert_eq!(response_header_version(ApiKey::ApiVersions, 3), 0);
        assert_eq!(request_header_version(ApiKey::ApiVersions, 3), 2);
        assert_eq!(response_header_version(ApiKey::Metadata, 9), 1);
        assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
    }

    #[test]
    fn response_header_layout() {
        let mut buf = BytesMut::new();
        encode_response_header(&mut buf, 0x01020304, 1);
        assert_eq!(&buf[..], &[1, 2, 3, 4, 0]);
        assert_eq!(buf.len(), response_header_bytes(1));
        buf.clear();
        encode_response_header(&mut buf, -1, 0);
        assert_eq!(&buf[..], &[0xff; 4]);
    }
}
