//! `decode_request` never panics (nor aborts on a huge allocation) on hostile bytes: random
//! frames and mutations of valid ones, 20k cases from fixed seeds. On failure the seed and
//! case number are printed; rerun with them to reproduce.

mod common;

use bytes::Bytes;
use common::{defaults, frame, populated, populated_in_versions};
use rill_net::codec::{decode_request, version_range, SUPPORTED_VERSIONS};
use rill_net::DecodeError;

/// xorshift64*.
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

/// Values that stress length and count fields.
const INTERESTING: &[&[u8]] = &[
    &[0x7f, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00],
    &[0x00, 0x00, 0x00, 0x00],
    &[0x7f, 0xff],
    &[0xff, 0xfe],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x00, 0x10, 0x00, 0x00],
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        // Leave the fixed header alone most of the time so the body decoders get exercised.
        let body_start = if rng.below(4) == 0 { 0 } else { 8.min(v.len()) };
        let span = v.len().saturating_sub(body_start);
        let at = body_start + rng.below(span + 1);
        match rng.below(7) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 if at < v.len() => v[at] = rng.next() as u8,
            2 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                for (i, b) in value.iter().enumerate() {
                    if let Some(slot) = v.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            3 => v.truncate(at),
            4 => {
                let n = rng.below(8);
                for _ in 0..n {
                    let b = rng.next() as u8;
                    v.insert(at.min(v.len()), b);
                }
            }
            5 => {
                let end = (at + rng.below(8)).min(v.len());
                v.drain(at.min(end)..end);
            }
            _ => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let at = at.min(v.len());
                v.splice(at..at, value.iter().copied());
            }
        }
    }
    v
}

fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(80);
    let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    // Half the time give it a served api and version, so the body path is reached.
    if rng.below(2) == 0 && v.len() >= 4 {
        let &(key, min, max) = &SUPPORTED_VERSIONS[rng.below(SUPPORTED_VERSIONS.len())];
        let version = min + rng.below((max - min + 1) as usize) as i16;
        v[..2].copy_from_slice(&(key as i16).to_be_bytes());
        v[2..4].copy_from_slice(&version.to_be_bytes());
    }
    v
}

#[derive(Default, Debug)]
struct Outcomes {
    ok: usize,
    malformed: usize,
    unsupported: usize,
    unknown_key: usize,
    truncated: usize,
}

impl Outcomes {
    fn record(
        &mut self,
        result: Result<(kafka_protocol::messages::RequestHeader, rill_net::Request), DecodeError>,
    ) {
        match result {
            Ok(_) => self.ok += 1,
            Err(DecodeError::Malformed { .. }) => self.malformed += 1,
            Err(DecodeError::UnsupportedVersion { .. }) => self.unsupported += 1,
            Err(DecodeError::UnknownApiKey { .. }) => self.unknown_key += 1,
            Err(DecodeError::TruncatedHeader { .. }) => self.truncated += 1,
        }
    }
}

fn valid_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for request in defaults().iter().chain(populated().iter()) {
        let (min, max) = version_range(SUPPORTED_VERSIONS, request.api_key()).unwrap();
        for version in [min, (min + max) / 2, max] {
            frames.push(frame(request, version, 5).to_vec());
        }
    }
    for (request, min, max) in populated_in_versions() {
        for version in [min, max] {
            frames.push(frame(&request, version, 5).to_vec());
        }
    }
    frames
}

const SEEDS: [u64; 4] = [
    0x0123_4567_89ab_cdef,
    0xdead_beef_0bad_f00d,
    0x5151_5151_2727_2727,
    0x9e37_79b9_7f4a_7c15,
];
const CASES_PER_SEED: usize = 5000;

#[test]
fn decode_request_survives_random_and_mutated_frames() {
    let seeds_frames = valid_frames();
    let mut outcomes = Outcomes::default();
    for seed in SEEDS {
        let mut rng = Rng(seed);
        for case in 0..CASES_PER_SEED {
            let input = if case % 4 == 0 {
                random_frame(&mut rng)
            } else {
                let base = &seeds_frames[rng.below(seeds_frames.len())];
                mutate(&mut rng, base)
            };
            let result = std::panic::catch_unwind(|| decode_request(Bytes::from(input.clone())));
            match result {
                Ok(r) => outcomes.record(r),
                Err(_) => {
                    panic!("decode_request panicked: seed {seed:#x} case {case} input {input:02x?}")
                }
            }
        }
    }
    eprintln!("{outcomes:?}");
    let total = SEEDS.len() * CASES_PER_SEED;
    assert_eq!(
        outcomes.ok
            + outcomes.malformed
            + outcomes.unsupported
            + outcomes.unknown_key
            + outcomes.truncated,
        total
    );
    // The mutations must reach both outcomes of the body decoders, or the test proves little.
    assert!(outcomes.ok > total / 20, "{outcomes:?}");
    assert!(outcomes.malformed > total / 20, "{outcomes:?}");
}

#[test]
fn huge_counts_are_malformed_not_allocated() {
    // Metadata v0 claiming i32::MAX topics; Produce v9 claiming 2^32-2 topics (compact).
    let metadata = [0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff];
    let produce = [
        0, 0, 0, 9, 0, 0, 0, 2, 0xff, 0xff, 0, // header v2: null client id, no tags
        0, // transactional id: null (compact)
        0xff, 0xff, 0, 0, 0x75, 0x30, // acks -1, timeout 30000
        0xff, 0xff, 0xff, 0xff, 0x0f, // topic_data count
    ];
    for (bytes, correlation_id) in [(&metadata[..], 1), (&produce[..], 2)] {
        match decode_request(Bytes::copy_from_slice(bytes)) {
            Err(DecodeError::Malformed {
                correlation_id: c,
                reason,
                ..
            }) => {
                assert_eq!(c, correlation_id);
                assert!(reason.contains("cannot fit"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
