//! Round trip: every supported api, encoded by kafka-protocol at each supported version
//! (so at least its min and max), comes back out of `decode_request` unchanged, with its
//! header; Produce records come back as slices of the frame, not copies; versions outside
//! the table are refused with the correlation id kept.

use bytes::{Bytes, BytesMut};
use rill_net::codec::{decode_request, version_range, Request, SUPPORTED_VERSIONS};
use rill_net::DecodeError;

mod common;

use common::{defaults, frame, populated, populated_in_versions};

#[test]
fn every_supported_api_round_trips_at_every_supported_version() {
    let requests = defaults();
    for &(key, _, _) in SUPPORTED_VERSIONS {
        assert!(
            requests.iter().any(|r| r.api_key() == key),
            "no sample request for {key:?}"
        );
    }
    let mut checked = 0;
    for request in requests.iter().chain(populated().iter()) {
        let (min, max) = version_range(SUPPORTED_VERSIONS, request.api_key()).unwrap();
        for version in min..=max {
            let correlation_id = 1000 + version as i32;
            let bytes = frame(request, version, correlation_id);
            let (header, decoded) = decode_request(bytes)
                .unwrap_or_else(|e| panic!("{} v{version}: {e}", request.api_name()));
            assert_eq!(header.correlation_id, correlation_id);
            assert_eq!(header.request_api_key, request.api_key() as i16);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.client_id.as_deref(), Some("roundtrip"));
            assert_eq!(&decoded, request, "{} v{version}", request.api_name());
            checked += 1;
        }
    }
    for (request, min, max) in populated_in_versions() {
        for version in min..=max {
            let bytes = frame(&request, version, 7);
            let (_, decoded) = decode_request(bytes)
                .unwrap_or_else(|e| panic!("{} v{version}: {e}", request.api_name()));
            assert_eq!(decoded, request, "{} v{version}", request.api_name());
            checked += 1;
        }
    }
    assert!(checked > 150, "only {checked} encodings checked");
}

#[test]
fn produce_records_are_slices_of_the_frame() {
    let request = &populated()[0];
    for version in [3, 9, 11] {
        let bytes = frame(request, version, 1);
        let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        let (_, decoded) = decode_request(bytes.clone()).unwrap();
        let Request::Produce(produce) = decoded else {
            panic!("not a produce request")
        };
        let records = produce.topic_data[0].partition_data[0]
            .records
            .as_ref()
            .unwrap();
        assert_eq!(records.len(), 300);
        assert!(
            range.contains(&(records.as_ptr() as usize)),
            "v{version}: records were copied"
        );
    }
}

#[test]
fn versions_outside_the_table_are_unsupported_with_correlation_id() {
    for request in defaults() {
        let key = request.api_key();
        let (min, max) = version_range(SUPPORTED_VERSIONS, key).unwrap();
        let mut outside = vec![max + 1, i16::MAX, -1];
        if min > 0 {
            outside.push(min - 1);
        }
        for version in outside {
            // The body is irrelevant: the version is checked first.
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&(key as i16).to_be_bytes());
            buf.extend_from_slice(&version.to_be_bytes());
            buf.extend_from_slice(&77i32.to_be_bytes());
            buf.extend_from_slice(&[0xff, 0xff, 1, 2, 3]);
            match decode_request(buf.freeze()) {
                Err(DecodeError::UnsupportedVersion {
                    api_key,
                    api_version,
                    correlation_id,
                }) => {
                    assert_eq!((api_key, api_version, correlation_id), (key, version, 77));
                }
                other => panic!("{key:?} v{version}: {other:?}"),
            }
        }
    }
}

#[test]
fn apis_rill_does_not_serve_are_unsupported() {
    // SaslHandshake v1: a real Kafka api, not in the table.
    let bytes = Bytes::from_static(&[
        0, 17, 0, 1, 0, 0, 0, 9, 0, 0, 0, 5, b'P', b'L', b'A', b'I', b'N',
    ]);
    let err = decode_request(bytes).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::UnsupportedVersion {
            correlation_id: 9,
            ..
        }
    ));
}
