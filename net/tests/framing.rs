//! Framing: bad length prefixes are refused before any payload is buffered, frames split at
//! every byte boundary reassemble, and the async reader tells clean EOF from a cut frame.

use bytes::{Bytes, BytesMut};
use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use rill_net::frame::{decode_frame, FrameLimits, FrameReader};
use rill_net::FrameError;

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn negative_length_is_rejected() {
    for raw in [-1i32, i32::MIN, -104_857_600] {
        let mut buf = BytesMut::from(&raw.to_be_bytes()[..]);
        let err = decode_frame(&mut buf, &FrameLimits::default()).unwrap_err();
        assert!(matches!(err, FrameError::NegativeLength { length } if length == raw));
    }
}

#[test]
fn oversize_length_is_rejected_from_the_prefix_alone() {
    let limits = FrameLimits {
        frame_bytes_max: 1000,
        ..FrameLimits::default()
    };
    let mut buf = BytesMut::from(&1001i32.to_be_bytes()[..]);
    let err = decode_frame(&mut buf, &limits).unwrap_err();
    assert!(matches!(
        err,
        FrameError::TooLarge {
            length: 1001,
            frame_bytes_max: 1000
        }
    ));
    // Exactly at the limit is fine.
    let mut buf = BytesMut::from(&framed(&[7u8; 1000])[..]);
    assert_eq!(
        decode_frame(&mut buf, &limits).unwrap().unwrap().len(),
        1000
    );
    // Kafka's default: 100 MiB.
    assert_eq!(FrameLimits::default().frame_bytes_max, 104_857_600);
    let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
    assert!(decode_frame(&mut buf, &FrameLimits::default()).is_err());
}

#[test]
fn frames_shorter_than_a_request_header_are_rejected() {
    for length in 0..10i32 {
        let mut buf = BytesMut::from(&length.to_be_bytes()[..]);
        let err = decode_frame(&mut buf, &FrameLimits::requests()).unwrap_err();
        assert!(matches!(err, FrameError::TooSmall { .. }), "{length}");
    }
    // A response needs only its correlation id.
    let mut buf = BytesMut::from(&framed(&[0, 0, 0, 1])[..]);
    assert!(decode_frame(&mut buf, &FrameLimits::responses())
        .unwrap()
        .is_some());
}

#[test]
fn every_split_point_reassembles() {
    let payloads: Vec<Vec<u8>> = vec![(0..10u8).collect(), (0..200u8).collect(), vec![0xee; 17]];
    let stream: Vec<u8> = payloads.iter().flat_map(|p| framed(p)).collect();
    let limits = FrameLimits::default();
    for split in 0..=stream.len() {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            // Feed byte by byte on the first half to cover every partial state too.
            for chunk in part.chunks(if split % 2 == 0 { 1 } else { 7 }) {
                buf.extend_from_slice(chunk);
                while let Some(frame) = decode_frame(&mut buf, &limits).unwrap() {
                    got.push(frame.to_vec());
                }
            }
        }
        assert_eq!(got, payloads, "split at {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn partial_frame_consumes_nothing() {
    let stream = framed(&[1u8; 50]);
    for cut in 0..stream.len() {
        let mut buf = BytesMut::from(&stream[..cut]);
        assert!(decode_frame(&mut buf, &FrameLimits::default())
            .unwrap()
            .is_none());
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn reader_returns_frames_then_clean_eof() {
    let payloads: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; 10 + i * 37]).collect();
    let stream: Vec<u8> = payloads.iter().flat_map(|p| framed(p)).collect();
    // A tiny read chunk forces frames to span reads.
    let mut reader = FrameReader::with_read_chunk(Cursor::new(stream), FrameLimits::default(), 64);
    block_on(async {
        for p in &payloads {
            let frame: Bytes = reader.next_frame().await.unwrap().unwrap();
            assert_eq!(&frame[..], &p[..]);
        }
        assert!(reader.next_frame().await.unwrap().is_none());
        assert!(reader.next_frame().await.unwrap().is_none());
    });
}

#[test]
fn reader_reports_eof_mid_frame() {
    let stream = framed(&[3u8; 100]);
    for cut in 1..stream.len() {
        let mut reader =
            FrameReader::new(Cursor::new(stream[..cut].to_vec()), FrameLimits::default());
        let err = block_on(reader.next_frame()).unwrap_err();
        assert!(
            matches!(err, FrameError::TruncatedFrame { buffered_bytes, .. } if buffered_bytes == cut),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn reader_rejects_oversize_prefix_without_buffering_payload() {
    let limits = FrameLimits {
        frame_bytes_max: 100,
        ..FrameLimits::default()
    };
    let mut stream = 101i32.to_be_bytes().to_vec();
    stream.extend_from_slice(&[0u8; 101]);
    let mut reader = FrameReader::new(Cursor::new(stream), limits);
    let err = block_on(reader.next_frame()).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { length: 101, .. }));
}
