//! What producers send: record sizes, keys (none, uniform, zipf), value bytes, Kafka's
//! murmur2 key partitioner, and the send stamp every value starts with.
//!
//! The stamp ([`Stamp`], [`STAMP_BYTES`]) carries the run's tag, the producer, a sequence
//! number and the record's *intended* send time in nanoseconds since the run's epoch, so a
//! consumer in the same process measures end-to-end latency from the schedule, not from
//! whenever the producer got round to sending. Times are monotonic and process-local, which
//! is why producers and consumers of one run live in one `rill-loadgen` process.
//!
//! A [`RecordGenerator`] belongs to one producer (one executor); the zipf table and the
//! payload pool are shared read-only between them.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::{KeyDistribution, Payload, RecordBytes, Workload};

/// Bytes at the start of every value: run tag (4), producer (4), sequence (8), intended
/// send time in ns since the run epoch (8), all big-endian.
pub const STAMP_BYTES: usize = 24;
/// Bytes of a formatted key (decimal, zero-padded).
pub const KEY_BYTES: usize = 10;
/// Smallest pool values are sliced from; random offsets keep values from repeating.
pub const PAYLOAD_POOL_BYTES_MIN: usize = 1 << 20;
/// Bytes the generator's arena grows by (values are split off it, so one allocation serves
/// many records and is freed when their batch is gone).
pub const ARENA_CHUNK_BYTES: usize = 256 << 10;

/// The send stamp at the front of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Identifies the run, so records from other runs or tools in the topic are ignored.
    pub run_tag: u32,
    /// Producer index.
    pub producer: u32,
    /// The producer's record number, from 0.
    pub sequence: u64,
    /// Scheduled send time, ns since the run epoch.
    pub intended_ns: u64,
}

impl Stamp {
    /// Writes the stamp into the first [`STAMP_BYTES`] of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.run_tag.to_be_bytes());
        out[4..8].copy_from_slice(&self.producer.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..24].copy_from_slice(&self.intended_ns.to_be_bytes());
    }

    /// Reads a stamp from the front of a value, if it is long enough.
    pub fn read(value: &[u8]) -> Option<Stamp> {
        if value.len() < STAMP_BYTES {
            return None;
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([value[i], value[i + 1], value[i + 2], value[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&value[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Some(Stamp {
            run_tag: u32_at(0),
            producer: u32_at(4),
            sequence: u64_at(8),
            intended_ns: u64_at(16),
        })
    }
}

pub use rill_net::client::{murmur2, partition_for_key};

/// Draws key indexes.
#[derive(Debug, Clone)]
pub enum KeySampler {
    /// Records have no key.
    None,
    /// Uniform over `0..count`.
    Uniform {
        /// Key space.
        count: u64,
    },
    /// Zipf over `0..count`: `cdf[i]` is P(key <= i); key 0 is the hottest.
    Zipf {
        /// Cumulative distribution, shared between producers.
        cdf: Arc<[f64]>,
    },
}

impl KeySampler {
    /// The sampler for a workload (builds the zipf table once).
    pub fn new(kind: KeyDistribution, count: u64, exponent: f64) -> KeySampler {
        match kind {
            KeyDistribution::None => KeySampler::None,
            KeyDistribution::Uniform => KeySampler::Uniform { count },
            KeyDistribution::Zipf => {
                let mut cdf = Vec::with_capacity(count as usize);
                let mut sum = 0.0;
                for k in 1..=count {
                    sum += 1.0 / (k as f64).powf(exponent);
                    cdf.push(sum);
                }
                for c in &mut cdf {
                    *c /= sum;
                }
                KeySampler::Zipf { cdf: cdf.into() }
            }
        }
    }

    /// The next key index, or `None` for unkeyed records.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Option<u64> {
        match self {
            KeySampler::None => None,
            KeySampler::Uniform { count } => Some(rng.u64(0..*count)),
            KeySampler::Zipf { cdf } => {
                let u = rng.f64();
                let i = cdf.partition_point(|&c| c < u);
                Some(i.min(cdf.len() - 1) as u64)
            }
        }
    }
}

/// Draws value sizes.
#[derive(Debug, Clone, Copy)]
pub struct SizeSampler(pub RecordBytes);

impl SizeSampler {
    /// The next value size in bytes.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        match self.0 {
            RecordBytes::Fixed(n) => n,
            RecordBytes::Uniform { min, max } => rng.usize(min..=max),
            RecordBytes::Normal { mean, stddev } => {
                // Box-Muller; 1 - f64() keeps the logarithm's argument in (0, 1].
                let u1 = 1.0 - rng.f64();
                let u2 = rng.f64();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let v = mean as f64 + z * stddev as f64;
                (v.round().max(0.0) as usize).clamp(crate::payload::STAMP_BYTES, self.0.max())
            }
        }
    }
}

/// Builds the shared pool values are sliced from.
pub fn payload_pool(kind: Payload, record_bytes_max: usize, seed: u64) -> Bytes {
    let size = PAYLOAD_POOL_BYTES_MIN.max(2 * record_bytes_max);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pool = Vec::with_capacity(size);
    match kind {
        Payload::Random => {
            while pool.len() + 8 <= size {
                pool.extend_from_slice(&rng.u64(..).to_le_bytes());
            }
            while pool.len() < size {
                pool.push(rng.u8(..));
            }
        }
        Payload::Text => {
            const WORDS: &[&str] = &[
                "the",
                "broker",
                "appends",
                "records",
                "to",
                "a",
                "partition",
                "log",
                "and",
                "consumers",
                "read",
                "them",
                "by",
                "offset",
                "while",
                "producers",
                "batch",
                "their",
                "writes",
                "for",
                "throughput",
                "latency",
                "of",
                "each",
                "request",
                "is",
                "measured",
                "from",
                "its",
                "intended",
                "send",
                "time",
                "event",
                "order",
                "customer",
                "payment",
                "status",
                "shipped",
                "pending",
                "region",
                "europe",
                "amount",
                "currency",
                "timestamp",
                "session",
                "user",
                "click",
                "page",
                "view",
            ];
            while pool.len() < size {
                let w = WORDS[rng.usize(..WORDS.len())];
                pool.extend_from_slice(w.as_bytes());
                pool.push(if rng.u8(..) < 20 { b'\n' } else { b' ' });
            }
            pool.truncate(size);
        }
    }
    Bytes::from(pool)
}

/// One generated record.
#[derive(Debug, Clone)]
pub struct GeneratedRecord {
    /// Key bytes, if keyed.
    pub key: Option<Bytes>,
    /// The partition the key hashes to (`None`: the producer's sticky partition).
    pub partition: Option<u32>,
    /// Value bytes (stamp first).
    pub value: Bytes,
}

impl GeneratedRecord {
    /// Key plus value bytes: what throughput in MB/s counts.
    pub fn bytes(&self) -> usize {
        self.value.len() + self.key.as_ref().map_or(0, Bytes::len)
    }
}

/// Makes one producer's records.
#[derive(Debug)]
pub struct RecordGenerator {
    sizes: SizeSampler,
    keys: KeySampler,
    pool: Bytes,
    rng: fastrand::Rng,
    arena: BytesMut,
    cursor: usize,
    run_tag: u32,
    producer: u32,
    sequence: u64,
    partitions: u32,
}

/// What is shared by every producer's generator.
#[derive(Debug, Clone)]
pub struct GeneratorShared {
    /// Value sizes.
    pub sizes: SizeSampler,
    /// Keys.
    pub keys: KeySampler,
    /// Value bytes pool.
    pub pool: Bytes,
    /// This run's tag.
    pub run_tag: u32,
}

impl GeneratorShared {
    /// Builds the shared parts for a workload.
    pub fn new(w: &Workload, run_tag: u32) -> GeneratorShared {
        GeneratorShared {
            sizes: SizeSampler(w.record_bytes),
            keys: KeySampler::new(w.key_distribution, w.key_count, w.zipf_exponent),
            pool: payload_pool(w.payload, w.record_bytes.max(), u64::from(run_tag)),
            run_tag,
        }
    }
}

impl RecordGenerator {
    /// A generator for producer `producer` of a topic with `partitions` partitions.
    pub fn new(shared: &GeneratorShared, producer: u32, partitions: u32) -> RecordGenerator {
        RecordGenerator {
            sizes: shared.sizes,
            keys: shared.keys.clone(),
            pool: shared.pool.clone(),
            rng: fastrand::Rng::with_seed(u64::from(shared.run_tag) << 32 | u64::from(producer)),
            arena: BytesMut::new(),
            // Producers start at different places in the shared pool.
            cursor: (producer as usize).wrapping_mul(7919) % (shared.pool.len() / 2),
            run_tag: shared.run_tag,
            producer,
            sequence: 0,
            partitions,
        }
    }

    /// Records made so far.
    pub fn generated(&self) -> u64 {
        self.sequence
    }

    /// The producer's random source (also used for the sticky partitioner).
    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }

    /// Draws the next record: key, partition, stamp and the payload's range in the pool.
    fn draw(&mut self, intended_ns: u64) -> Drawn {
        let size = self.sizes.sample(&mut self.rng);
        let key = self.keys.sample(&mut self.rng).map(key_bytes);
        let partition = key.as_ref().map(|k| partition_for_key(k, self.partitions));
        let mut stamp = [0u8; STAMP_BYTES];
        Stamp {
            run_tag: self.run_tag,
            producer: self.producer,
            sequence: self.sequence,
            intended_ns,
        }
        .write(&mut stamp);
        self.sequence += 1;
        let body = size - STAMP_BYTES;
        // Walk the pool instead of jumping around it: consecutive values differ, a value
        // repeats only a pool length later (beyond any batch a compressor sees at once),
        // and the copy streams from memory the prefetcher already fetched.
        if self.cursor + body > self.pool.len() {
            self.cursor = (self.cursor + body) % 61;
        }
        let start = self.cursor;
        self.cursor += body + 1;
        Drawn {
            key,
            partition,
            stamp,
            payload: start..start + body,
        }
    }

    /// The parts of the next record, scheduled at `intended_ns`, without copying the
    /// payload: the value is `stamp` followed by `payload`.
    pub fn next_parts(&mut self, intended_ns: u64) -> RecordParts<'_> {
        let d = self.draw(intended_ns);
        RecordParts {
            key: d.key,
            partition: d.partition,
            stamp: d.stamp,
            payload: &self.pool[d.payload],
        }
    }

    /// Makes the next record as owned bytes (for compressed batches, which go through
    /// `rill-net`'s encoder), scheduled at `intended_ns`.
    pub fn next(&mut self, intended_ns: u64) -> GeneratedRecord {
        let d = self.draw(intended_ns);
        let need = STAMP_BYTES + d.payload.len();
        // Values are split off a shared arena: one allocation serves many records.
        if self.arena.capacity() - self.arena.len() < need {
            self.arena = BytesMut::with_capacity(ARENA_CHUNK_BYTES.max(need));
        }
        self.arena.put_slice(&d.stamp);
        self.arena.put_slice(&self.pool[d.payload]);
        GeneratedRecord {
            key: d.key.map(|k| Bytes::copy_from_slice(&k)),
            partition: d.partition,
            value: self.arena.split().freeze(),
        }
    }
}

struct Drawn {
    key: Option<[u8; KEY_BYTES]>,
    partition: Option<u32>,
    stamp: [u8; STAMP_BYTES],
    payload: std::ops::Range<usize>,
}

/// A record's pieces, borrowed from the generator's pool.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    /// Key bytes, if keyed.
    pub key: Option<[u8; KEY_BYTES]>,
    /// The partition the key hashes to (`None`: the producer's sticky partition).
    pub partition: Option<u32>,
    /// The value's first bytes.
    pub stamp: [u8; STAMP_BYTES],
    /// The rest of the value.
    pub payload: &'a [u8],
}

impl RecordParts<'_> {
    /// Key plus value bytes: what throughput in MB/s counts.
    pub fn bytes(&self) -> usize {
        STAMP_BYTES + self.payload.len() + self.key.map_or(0, |k| k.len())
    }
}

/// A key index as [`KEY_BYTES`] zero-padded decimal digits.
fn key_bytes(k: u64) -> [u8; KEY_BYTES] {
    let mut digits = [b'0'; KEY_BYTES];
    let mut v = k;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let s = Stamp {
            run_tag: 0xdead_beef,
            producer: 7,
            sequence: 1 << 40,
            intended_ns: 123_456_789,
        };
        let mut buf = [0u8; 30];
        s.write(&mut buf);
        assert_eq!(Stamp::read(&buf), Some(s));
        assert_eq!(Stamp::read(&buf[..STAMP_BYTES - 1]), None);
    }

    #[test]
    fn generator_sizes_keys_and_stamps() {
        let w = Workload {
            record_bytes: RecordBytes::Uniform { min: 30, max: 90 },
            key_distribution: KeyDistribution::Uniform,
            key_count: 100,
            ..Workload::default()
        };
        let shared = GeneratorShared::new(&w, 42);
        let mut g = RecordGenerator::new(&shared, 3, 8);
        for i in 0..1000u64 {
            let r = g.next(i * 10);
            assert!((30..=90).contains(&r.value.len()));
            let key = r.key.as_ref().unwrap();
            assert_eq!(key.len(), KEY_BYTES);
            assert_eq!(r.partition, Some(partition_for_key(key, 8)));
            let s = Stamp::read(&r.value).unwrap();
            assert_eq!(
                (s.run_tag, s.producer, s.sequence, s.intended_ns),
                (42, 3, i, i * 10)
            );
        }
        assert_eq!(g.generated(), 1000);
    }

    #[test]
    fn zipf_is_skewed_and_uniform_is_not() {
        let mut rng = fastrand::Rng::with_seed(1);
        let zipf = KeySampler::new(KeyDistribution::Zipf, 1000, 1.0);
        let n = 100_000;
        let hot = (0..n).filter(|_| zipf.sample(&mut rng) == Some(0)).count();
        // P(key 0) = 1 / H(1000) ~= 0.134.
        let p = hot as f64 / n as f64;
        assert!((0.12..0.15).contains(&p), "zipf P(0) = {p}");
        let uniform = KeySampler::new(KeyDistribution::Uniform, 1000, 1.0);
        let hot = (0..n)
            .filter(|_| uniform.sample(&mut rng) == Some(0))
            .count();
        assert!(hot < 300, "uniform hit key 0 {hot} times");
        for _ in 0..1000 {
            assert!(zipf.sample(&mut rng).unwrap() < 1000);
        }
    }

    #[test]
    fn normal_sizes_centre_on_the_mean() {
        let s = SizeSampler(RecordBytes::Normal {
            mean: 1000,
            stddev: 100,
        });
        let mut rng = fastrand::Rng::with_seed(9);
        let n = 20_000;
        let sizes: Vec<usize> = (0..n).map(|_| s.sample(&mut rng)).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / n as f64;
        assert!((990.0..1010.0).contains(&mean), "mean {mean}");
        assert!(sizes.iter().all(|&x| (STAMP_BYTES..=4000).contains(&x)));
    }

    #[test]
    fn text_payload_compresses_and_random_does_not_repeat() {
        let text = payload_pool(Payload::Text, 1024, 1);
        assert!(text.iter().all(|b| b.is_ascii()));
        let random = payload_pool(Payload::Random, 1024, 1);
        assert_eq!(random.len(), PAYLOAD_POOL_BYTES_MIN);
        assert_ne!(&random[..64], &random[64..128]);
    }
}
