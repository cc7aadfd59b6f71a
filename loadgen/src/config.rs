//! The workload: one TOML file (`--workload FILE`, see `loadgen/workload.toml` for every
//! field with its default) overridden by command-line flags. [`Workload::validate`] names the
//! first bad field. Built once on the main thread, then shared read-only by every executor.
//!
//! Value syntaxes (in TOML and on the command line alike):
//! - `record_bytes`: `1024` (fixed), `uniform:100-2000`, `normal:1024,256` (mean, standard
//!   deviation; clamped to [`STAMP_BYTES`], 4 x mean).
//! - `rate`: `max`, `50000` or `50000/s` (records per second), `50k`, `100MB/s`, `64MiB/s`.
//! - `acks`: `0`, `1`, `all` (or `-1`).

use std::fmt;
use std::path::PathBuf;

use rill_net::kafka_protocol::records::Compression;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::payload::STAMP_BYTES;

/// Most producers one run may have.
pub const PRODUCERS_MAX: usize = 4096;
/// Most consumers one run may have.
pub const CONSUMERS_MAX: usize = 4096;
/// Most executors (cores) one run may use.
pub const CORES_MAX: usize = 1024;
/// Largest key space (the zipf sampler keeps a table of this many entries).
pub const KEY_COUNT_MAX: u64 = 1_000_000;
/// Largest single record value, in bytes.
pub const RECORD_BYTES_MAX: usize = 16 << 20;
/// Largest record batch a producer builds, in bytes.
pub const BATCH_BYTES_MAX: usize = 64 << 20;
/// Most produce requests awaiting an answer on one connection.
pub const INFLIGHT_REQUESTS_MAX: usize = 1024;
/// Largest producer buffer (records generated but not yet acknowledged), in bytes.
pub const BUFFER_BYTES_MAX: usize = 4 << 30;
/// Largest fetch response a consumer asks for, in bytes.
pub const FETCH_BYTES_MAX: usize = 256 << 20;
/// Most partitions a topic created by the load generator may have.
pub const PARTITIONS_MAX: i32 = 100_000;

/// Everything one run does. Every field has a default that works against a broker on
/// `127.0.0.1:9092`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// Comma-separated `host:port` list; the first that answers is asked for metadata.
    pub bootstrap: String,
    /// Topic to produce to and consume from.
    pub topic: String,
    /// Partitions of the topic when it is created (an existing topic keeps its own count).
    pub partitions: i32,
    /// Create the topic if it does not exist.
    pub create_topic: bool,
    /// Replication factor of a created topic (-1: the broker's default).
    pub replication_factor: i16,
    /// Record value size in bytes: fixed or a distribution (see the module docs).
    pub record_bytes: RecordBytes,
    /// How records get keys: `none` (sticky partitioner), `uniform` or `zipf`.
    pub key_distribution: KeyDistribution,
    /// Distinct keys for `uniform` and `zipf`.
    pub key_count: u64,
    /// Skew of the `zipf` key distribution (1.0 is classic Zipf; larger is more skewed).
    pub zipf_exponent: f64,
    /// Value bytes: `random` (incompressible) or `text` (compresses like prose).
    pub payload: Payload,
    /// Batch compression: `none`, `gzip`, `snappy`, `lz4`, `zstd`.
    pub compression: CompressionCodec,
    /// Produce acknowledgements: `0`, `1` or `all`.
    pub acks: Acks,
    /// A partition's batch is sent once it holds this many bytes (Kafka's `batch.size`).
    pub batch_bytes: usize,
    /// ...or once its first record has waited this long (Kafka's `linger.ms`).
    pub linger_ms: u64,
    /// Produce requests awaiting an answer per connection (Kafka's
    /// `max.in.flight.requests.per.connection`).
    pub max_inflight: usize,
    /// Bytes of records a producer holds, generated but not yet acknowledged (Kafka's
    /// `buffer.memory`); when full, generation pauses and the schedule falls behind.
    pub buffer_bytes: usize,
    /// Produce timeout the broker is given, in milliseconds.
    pub request_timeout_ms: u64,
    /// Measured seconds after the warm-up (0: no time limit; then `records` ends the run).
    pub duration: f64,
    /// Records to produce in total, warm-up included (0: no count limit).
    pub records: u64,
    /// Seconds of load before measuring starts; their latencies are not in the results.
    pub warmup: f64,
    /// Target rate: `max` or records/s or bytes/s (see the module docs).
    pub rate: Rate,
    /// Producer clients (each with its own connections); the rate is split evenly.
    pub producers: usize,
    /// Consumer clients; without a group, partitions are assigned round-robin.
    pub consumers: usize,
    /// Consumer group the consumers join (classic protocol, range assignor); none: they
    /// assign partitions themselves.
    pub group: Option<String>,
    /// Group members silent this long are evicted by the coordinator (ms).
    pub session_timeout_ms: u64,
    /// A group member heartbeats this often (ms); a rebalance is noticed within it.
    pub heartbeat_interval_ms: u64,
    /// How long the coordinator waits for members to rejoin during a rebalance (ms).
    pub rebalance_timeout_ms: u64,
    /// A group member commits its consumed offsets this often (ms), and always before it
    /// gives partitions up and at the end.
    pub commit_interval_ms: u64,
    /// Executors, one per core (pinned to the first CPUs this process may use); 0: all.
    pub cores: usize,
    /// Directory for summary.json, .hgrm files and report.html (none: console only).
    pub report_dir: Option<PathBuf>,
    /// Longest a consumer's fetch waits at the broker for data, in milliseconds.
    pub fetch_max_wait_ms: u64,
    /// Consumers fetch at read_committed (Kafka's `isolation.level`): up to the last stable
    /// offset, with the aborted transactions listed. Off: read_uncommitted.
    pub read_committed: bool,
    /// Largest fetch response a consumer asks for, in bytes.
    pub fetch_bytes: usize,
    /// Largest share of one partition in a fetch response, in bytes.
    pub partition_fetch_bytes: usize,
    /// Seconds to wait after producing ends for acknowledgements and consumers to catch up.
    pub drain_timeout: f64,
    /// Progress line and time-series interval, in milliseconds.
    pub interval_ms: u64,
    /// Connecting to a broker gives up after this many milliseconds.
    pub connect_timeout_ms: u64,
    /// Generate and encode produce requests without sending them (the tool's own ceiling).
    pub dry_run: bool,
    /// First wait before reconnecting to a broker that dropped a connection, in ms; it
    /// doubles per failed attempt (with ±20% jitter).
    pub reconnect_backoff_ms: u64,
    /// Longest wait between reconnection attempts, in ms.
    pub reconnect_backoff_max_ms: u64,
    /// A broker still unreachable this many ms after a connection was lost fails the run.
    pub reconnect_timeout_ms: u64,
    /// Search for the highest sustained rate with a series of fixed-rate steps
    /// (`crate::saturation`); each step runs `warmup` + `duration`.
    pub find_saturation: bool,
    /// First step's rate as a fraction of the closed-loop probe (with `rate = "max"`).
    pub saturation_start: f64,
    /// Rate factor between passing steps while ramping up.
    pub saturation_growth: f64,
    /// A step passes if it acknowledges at least (1 - this) of its target rate.
    pub saturation_tolerance: f64,
    /// A step passes only if its produce ack p99 is at most this many ms (0: no bound).
    pub saturation_p99_ms: f64,
    /// The search stops when the highest passing and lowest failing rates are this close
    /// (a fraction).
    pub saturation_resolution: f64,
    /// Most steps a search runs (the probe not included).
    pub saturation_steps_max: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            bootstrap: "127.0.0.1:9092".to_string(),
            topic: "rill-loadgen".to_string(),
            partitions: 4,
            create_topic: false,
            replication_factor: -1,
            record_bytes: RecordBytes::Fixed(1024),
            key_distribution: KeyDistribution::None,
            key_count: 10_000,
            zipf_exponent: 1.0,
            payload: Payload::Random,
            compression: CompressionCodec::None,
            acks: Acks::All,
            batch_bytes: 16384,
            linger_ms: 5,
            max_inflight: 5,
            buffer_bytes: 32 << 20,
            request_timeout_ms: 30_000,
            duration: 30.0,
            records: 0,
            warmup: 5.0,
            rate: Rate::Max,
            producers: 1,
            consumers: 1,
            group: None,
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 3_000,
            rebalance_timeout_ms: 30_000,
            commit_interval_ms: 5_000,
            cores: 1,
            report_dir: None,
            fetch_max_wait_ms: 100,
            read_committed: false,
            fetch_bytes: 16 << 20,
            partition_fetch_bytes: 1 << 20,
            drain_timeout: 30.0,
            interval_ms: 1000,
            connect_timeout_ms: 5000,
            dry_run: false,
            reconnect_backoff_ms: 100,
            reconnect_backoff_max_ms: 1000,
            reconnect_timeout_ms: 30_000,
            find_saturation: false,
            saturation_start: 0.5,
            saturation_growth: 1.25,
            saturation_tolerance: 0.05,
            saturation_p99_ms: 100.0,
            saturation_resolution: 0.05,
            saturation_steps_max: 12,
        }
    }
}

impl Workload {
    /// Reads a workload file.
    pub fn from_toml(text: &str) -> Result<Workload, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError {
            field: "workload file".to_string(),
            reason: e.to_string(),
        })
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| {
            Err(ConfigError {
                field: field.to_string(),
                reason,
            })
        };
        if self.bootstrap_servers().is_empty() {
            return bad("bootstrap", "give at least one host:port".into());
        }
        if self.topic.is_empty() || self.topic.len() > 249 {
            return bad("topic", "a topic name has 1 to 249 characters".into());
        }
        if !self
            .topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return bad(
                "topic",
                format!("{:?} has characters Kafka refuses", self.topic),
            );
        }
        if self.partitions < 1 || self.partitions > PARTITIONS_MAX {
            return bad("partitions", format!("must be 1..={PARTITIONS_MAX}"));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return bad(
                "replication_factor",
                "must be positive, or -1 for the broker's default".into(),
            );
        }
        self.record_bytes.validate()?;
        if self.key_distribution != KeyDistribution::None
            && !(1..=KEY_COUNT_MAX).contains(&self.key_count)
        {
            return bad("key_count", format!("must be 1..={KEY_COUNT_MAX}"));
        }
        if !(self.zipf_exponent > 0.0 && self.zipf_exponent <= 10.0) {
            return bad("zipf_exponent", "must be in (0, 10]".into());
        }
        if !self.compression.available() {
            return bad(
                "compression",
                format!(
                    "this build has no {} codec (build rill-loadgen with the `{}` feature)",
                    self.compression,
                    self.compression.name()
                ),
            );
        }
        if self.batch_bytes == 0 || self.batch_bytes > BATCH_BYTES_MAX {
            return bad("batch_bytes", format!("must be 1..={BATCH_BYTES_MAX}"));
        }
        if self.linger_ms > 60_000 {
            return bad("linger_ms", "must be at most 60000".into());
        }
        if self.max_inflight == 0 || self.max_inflight > INFLIGHT_REQUESTS_MAX {
            return bad(
                "max_inflight",
                format!("must be 1..={INFLIGHT_REQUESTS_MAX}"),
            );
        }
        let largest_record = self.record_bytes.max() + 64;
        if self.buffer_bytes < self.batch_bytes.max(largest_record)
            || self.buffer_bytes > BUFFER_BYTES_MAX
        {
            return bad(
                "buffer_bytes",
                format!(
                    "must hold at least one batch and one record ({} bytes) and at most {BUFFER_BYTES_MAX}",
                    self.batch_bytes.max(largest_record)
                ),
            );
        }
        if self.request_timeout_ms == 0 || self.request_timeout_ms > i32::MAX as u64 {
            return bad("request_timeout_ms", "must be 1..=2147483647".into());
        }
        if !(self.duration.is_finite() && self.duration >= 0.0) {
            return bad("duration", "must be >= 0 seconds".into());
        }
        if self.duration == 0.0 && self.records == 0 && !self.dry_run {
            return bad(
                "duration",
                "with no record count (records = 0) the run needs a duration".into(),
            );
        }
        if self.duration == 0.0 && self.dry_run && self.records == 0 {
            return bad("duration", "a dry run needs a duration or records".into());
        }
        if !(self.warmup.is_finite() && self.warmup >= 0.0) {
            return bad("warmup", "must be >= 0 seconds".into());
        }
        if let Some(r) = self.rate.records_per_s(self.record_bytes.mean()) {
            if !(r.is_finite() && r > 0.0) {
                return bad("rate", "must be positive".into());
            }
        }
        if self.producers == 0 || self.producers > PRODUCERS_MAX {
            return bad("producers", format!("must be 1..={PRODUCERS_MAX}"));
        }
        if self.consumers > CONSUMERS_MAX {
            return bad("consumers", format!("must be 0..={CONSUMERS_MAX}"));
        }
        if let Some(group) = &self.group {
            if group.is_empty() || group.len() > 255 {
                return bad("group", "a group id has 1 to 255 characters".into());
            }
            if self.dry_run {
                return bad(
                    "group",
                    "a dry run has no consumers to put in a group".into(),
                );
            }
        }
        if !(1_000..=3_600_000).contains(&self.session_timeout_ms) {
            return bad("session_timeout_ms", "must be 1000..=3600000".into());
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms
        {
            return bad(
                "heartbeat_interval_ms",
                "must be positive and below session_timeout_ms".into(),
            );
        }
        if !(1_000..=i32::MAX as u64).contains(&self.rebalance_timeout_ms) {
            return bad("rebalance_timeout_ms", "must be 1000..=2147483647".into());
        }
        if !(10..=3_600_000).contains(&self.commit_interval_ms) {
            return bad("commit_interval_ms", "must be 10..=3600000".into());
        }
        if self.cores > CORES_MAX {
            return bad("cores", format!("must be 0..={CORES_MAX}"));
        }
        if self.fetch_max_wait_ms > 60_000 {
            return bad("fetch_max_wait_ms", "must be at most 60000".into());
        }
        if self.fetch_bytes == 0 || self.fetch_bytes > FETCH_BYTES_MAX {
            return bad("fetch_bytes", format!("must be 1..={FETCH_BYTES_MAX}"));
        }
        if self.partition_fetch_bytes == 0 || self.partition_fetch_bytes > self.fetch_bytes {
            return bad(
                "partition_fetch_bytes",
                "must be 1..=fetch_bytes".to_string(),
            );
        }
        if !(self.drain_timeout.is_finite() && self.drain_timeout >= 0.0) {
            return bad("drain_timeout", "must be >= 0 seconds".into());
        }
        if !(10..=60_000).contains(&self.interval_ms) {
            return bad("interval_ms", "must be 10..=60000".into());
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms", "must be positive".into());
        }
        if !(1..=60_000).contains(&self.reconnect_backoff_ms) {
            return bad("reconnect_backoff_ms", "must be 1..=60000".into());
        }
        if self.reconnect_backoff_max_ms < self.reconnect_backoff_ms
            || self.reconnect_backoff_max_ms > 600_000
        {
            return bad(
                "reconnect_backoff_max_ms",
                "must be reconnect_backoff_ms..=600000".into(),
            );
        }
        if !(1..=3_600_000).contains(&self.reconnect_timeout_ms) {
            return bad("reconnect_timeout_ms", "must be 1..=3600000".into());
        }
        if self.find_saturation {
            if self.dry_run {
                return bad(
                    "find_saturation",
                    "a dry run sends nothing, so there is no broker to saturate".into(),
                );
            }
            if self.duration <= 0.0 || self.records > 0 {
                return bad(
                    "find_saturation",
                    "every step runs `duration` seconds: give a duration and no record count"
                        .into(),
                );
            }
        }
        if !(self.saturation_start > 0.0 && self.saturation_start <= 10.0) {
            return bad("saturation_start", "must be in (0, 10]".into());
        }
        if !(self.saturation_growth > 1.0 && self.saturation_growth <= 10.0) {
            return bad("saturation_growth", "must be in (1, 10]".into());
        }
        if !(self.saturation_tolerance >= 0.0 && self.saturation_tolerance < 1.0) {
            return bad("saturation_tolerance", "must be in [0, 1)".into());
        }
        if !(self.saturation_p99_ms.is_finite() && self.saturation_p99_ms >= 0.0) {
            return bad(
                "saturation_p99_ms",
                "must be >= 0 (0: no latency bound)".into(),
            );
        }
        if !(self.saturation_resolution > 0.0 && self.saturation_resolution < 1.0) {
            return bad("saturation_resolution", "must be in (0, 1)".into());
        }
        if !(1..=100).contains(&self.saturation_steps_max) {
            return bad("saturation_steps_max", "must be 1..=100".into());
        }
        Ok(())
    }

    /// The bootstrap addresses, trimmed, empty entries dropped.
    pub fn bootstrap_servers(&self) -> Vec<String> {
        self.bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Accepts a TOML integer, float or string for the spec-like fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Spec {
    Int(i64),
    Float(f64),
    Str(String),
}

impl Spec {
    fn into_text(self) -> String {
        match self {
            Spec::Int(i) => i.to_string(),
            Spec::Float(f) => f.to_string(),
            Spec::Str(s) => s,
        }
    }
}

macro_rules! spec_serde {
    ($t:ty) => {
        impl TryFrom<Spec> for $t {
            type Error = String;
            fn try_from(s: Spec) -> Result<Self, String> {
                s.into_text().parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    };
}

/// Record value sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Spec", into = "String")]
pub enum RecordBytes {
    /// Every value this many bytes.
    Fixed(usize),
    /// Uniform between the bounds, inclusive.
    Uniform {
        /// Smallest value.
        min: usize,
        /// Largest value.
        max: usize,
    },
    /// Normal, clamped to [`STAMP_BYTES`] ..= 4 x mean.
    Normal {
        /// Mean size.
        mean: usize,
        /// Standard deviation.
        stddev: usize,
    },
}

impl RecordBytes {
    /// Mean value size in bytes (what `--rate N MB/s` divides by).
    pub fn mean(&self) -> f64 {
        match *self {
            RecordBytes::Fixed(n) => n as f64,
            RecordBytes::Uniform { min, max } => (min + max) as f64 / 2.0,
            RecordBytes::Normal { mean, .. } => mean as f64,
        }
    }

    /// Smallest value size.
    pub fn min(&self) -> usize {
        match *self {
            RecordBytes::Fixed(n) => n,
            RecordBytes::Uniform { min, .. } => min,
            RecordBytes::Normal { .. } => STAMP_BYTES,
        }
    }

    /// Largest value size.
    pub fn max(&self) -> usize {
        match *self {
            RecordBytes::Fixed(n) => n,
            RecordBytes::Uniform { max, .. } => max,
            RecordBytes::Normal { mean, .. } => (mean * 4).max(STAMP_BYTES),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |reason: String| {
            Err(ConfigError {
                field: "record_bytes".into(),
                reason,
            })
        };
        let (lo, hi) = match *self {
            RecordBytes::Normal { mean, .. } => (mean, mean),
            _ => (self.min(), self.max()),
        };
        if lo < STAMP_BYTES {
            return bad(format!(
                "values carry a {STAMP_BYTES}-byte send stamp (for end-to-end latency), so \
                 they need at least {STAMP_BYTES} bytes"
            ));
        }
        if lo > hi {
            return bad("the minimum is above the maximum".into());
        }
        if self.max() > RECORD_BYTES_MAX {
            return bad(format!("at most {RECORD_BYTES_MAX} bytes"));
        }
        Ok(())
    }
}

impl std::str::FromStr for RecordBytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let num =
            |t: &str| parse_bytes(t.trim()).ok_or_else(|| format!("{t:?} is not a size in bytes"));
        if let Some(rest) = s.strip_prefix("uniform:") {
            let (a, b) = rest
                .split_once('-')
                .or_else(|| rest.split_once(".."))
                .ok_or("uniform needs MIN-MAX, e.g. uniform:100-2000")?;
            return Ok(RecordBytes::Uniform {
                min: num(a)?,
                max: num(b)?,
            });
        }
        if let Some(rest) = s.strip_prefix("normal:") {
            let (a, b) = rest
                .split_once(',')
                .ok_or("normal needs MEAN,STDDEV, e.g. normal:1024,256")?;
            return Ok(RecordBytes::Normal {
                mean: num(a)?,
                stddev: num(b)?,
            });
        }
        Ok(RecordBytes::Fixed(num(s)?))
    }
}

impl fmt::Display for RecordBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordBytes::Fixed(n) => write!(f, "{n}"),
            RecordBytes::Uniform { min, max } => write!(f, "uniform:{min}-{max}"),
            RecordBytes::Normal { mean, stddev } => write!(f, "normal:{mean},{stddev}"),
        }
    }
}

spec_serde!(RecordBytes);

/// `1024`, `1k` / `1KiB` (1024), `1KB` (1000), `1MiB`, `1MB`.
fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "k" | "K" | "KiB" | "kiB" => 1024.0,
        "KB" | "kB" => 1000.0,
        "m" | "M" | "MiB" => 1024.0 * 1024.0,
        "MB" => 1e6,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0).then_some(v as usize)
}

/// Target rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Spec", into = "String")]
pub enum Rate {
    /// As fast as the pipeline (max in flight x batch) allows: finds saturation.
    Max,
    /// Records per second, whole run.
    RecordsPerSecond(f64),
    /// Value bytes per second, whole run (turned into records/s by the mean record size).
    BytesPerSecond(f64),
}

impl Rate {
    /// Records per second for a mean value size, or `None` for `max`.
    pub fn records_per_s(&self, mean_record_bytes: f64) -> Option<f64> {
        match *self {
            Rate::Max => None,
            Rate::RecordsPerSecond(r) => Some(r),
            Rate::BytesPerSecond(b) => Some(b / mean_record_bytes.max(1.0)),
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let body = s.strip_suffix("/s").unwrap_or(s).trim();
        let split = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e'))
            .unwrap_or(body.len());
        let (num, unit) = body.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: expected max, records/s (50000) or bytes/s (100MB/s)"))?;
        let rate = match unit.trim() {
            "" => Rate::RecordsPerSecond(n),
            "k" => Rate::RecordsPerSecond(n * 1e3),
            "m" => Rate::RecordsPerSecond(n * 1e6),
            "KB" | "kB" => Rate::BytesPerSecond(n * 1e3),
            "KiB" => Rate::BytesPerSecond(n * 1024.0),
            "MB" => Rate::BytesPerSecond(n * 1e6),
            "MiB" => Rate::BytesPerSecond(n * 1024.0 * 1024.0),
            "GB" => Rate::BytesPerSecond(n * 1e9),
            "GiB" => Rate::BytesPerSecond(n * 1024.0 * 1024.0 * 1024.0),
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?} (use k, m, KB, MB, MiB, GB)"
                ))
            }
        };
        Ok(rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => write!(f, "max"),
            Rate::RecordsPerSecond(r) => write!(f, "{r}/s"),
            Rate::BytesPerSecond(b) => write!(f, "{}MB/s", b / 1e6),
        }
    }
}

spec_serde!(Rate);

/// Produce acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Spec", into = "String")]
pub enum Acks {
    /// The broker does not answer; ack latency cannot be measured.
    None,
    /// The leader has appended.
    Leader,
    /// Every in-sync replica has it (on Rill: synced to disk).
    All,
}

impl Acks {
    /// The wire value.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("acks {other:?}: expected 0, 1 or all")),
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
    }
}

spec_serde!(Acks);

macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident { $( $(#[$vdoc:meta])* $variant:ident = $word:literal, )* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "Spec", into = "String")]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )*
        }

        impl $name {
            /// The word used in flags and files.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )*
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $( $word => Ok($name::$variant), )*
                    other => Err(format!(
                        "{other:?}: expected one of {}",
                        [$( $word ),*].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        spec_serde!($name);
    };
}

word_enum!(
    /// How records are keyed (and so partitioned).
    KeyDistribution {
        /// No key: the sticky partitioner fills one partition's batch, then moves on.
        None = "none",
        /// Keys drawn uniformly from `key_count`; partition by Kafka's murmur2 hash.
        Uniform = "uniform",
        /// Keys drawn from a Zipf distribution over `key_count` (a few hot keys).
        Zipf = "zipf",
    }
);

word_enum!(
    /// What value bytes look like.
    Payload {
        /// Random bytes: compression gains nothing.
        Random = "random",
        /// Words: compresses roughly like text.
        Text = "text",
    }
);

word_enum!(
    /// Batch compression codec.
    CompressionCodec {
        /// No compression.
        None = "none",
        /// gzip.
        Gzip = "gzip",
        /// snappy.
        Snappy = "snappy",
        /// lz4.
        Lz4 = "lz4",
        /// zstd.
        Zstd = "zstd",
    }
);

impl CompressionCodec {
    /// kafka-protocol's codec.
    pub fn kafka(self) -> Compression {
        match self {
            CompressionCodec::None => Compression::None,
            CompressionCodec::Gzip => Compression::Gzip,
            CompressionCodec::Snappy => Compression::Snappy,
            CompressionCodec::Lz4 => Compression::Lz4,
            CompressionCodec::Zstd => Compression::Zstd,
        }
    }

    /// Whether this build can encode it (the codecs are cargo features).
    pub fn available(self) -> bool {
        match self {
            CompressionCodec::None => true,
            CompressionCodec::Gzip => cfg!(feature = "gzip"),
            CompressionCodec::Snappy => cfg!(feature = "snappy"),
            CompressionCodec::Lz4 => cfg!(feature = "lz4"),
            CompressionCodec::Zstd => cfg!(feature = "zstd"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Workload::default().validate().unwrap();
    }

    #[test]
    fn example_file_matches_defaults() {
        let text = include_str!("../workload.toml");
        assert_eq!(Workload::from_toml(text).unwrap(), Workload::default());
    }

    #[test]
    fn record_bytes_syntax() {
        assert_eq!("1024".parse(), Ok(RecordBytes::Fixed(1024)));
        assert_eq!("1KiB".parse(), Ok(RecordBytes::Fixed(1024)));
        assert_eq!("1KB".parse(), Ok(RecordBytes::Fixed(1000)));
        assert_eq!(
            "uniform:100-2000".parse(),
            Ok(RecordBytes::Uniform {
                min: 100,
                max: 2000
            })
        );
        assert_eq!(
            "normal:1024,256".parse(),
            Ok(RecordBytes::Normal {
                mean: 1024,
                stddev: 256
            })
        );
        assert!("uniform:100".parse::<RecordBytes>().is_err());
        assert!("lots".parse::<RecordBytes>().is_err());
        for s in ["1024", "uniform:100-2000", "normal:1024,256"] {
            let r: RecordBytes = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
    }

    #[test]
    fn rate_syntax() {
        assert_eq!("max".parse(), Ok(Rate::Max));
        assert_eq!("50000".parse(), Ok(Rate::RecordsPerSecond(50000.0)));
        assert_eq!("50000/s".parse(), Ok(Rate::RecordsPerSecond(50000.0)));
        assert_eq!("50k".parse(), Ok(Rate::RecordsPerSecond(50000.0)));
        assert_eq!("100MB/s".parse(), Ok(Rate::BytesPerSecond(100e6)));
        assert_eq!(
            "64MiB/s".parse(),
            Ok(Rate::BytesPerSecond(64.0 * 1024.0 * 1024.0))
        );
        assert!("fast".parse::<Rate>().is_err());
        assert!("10 parsecs".parse::<Rate>().is_err());
        assert_eq!(
            Rate::BytesPerSecond(100e6).records_per_s(1000.0),
            Some(100_000.0)
        );
        assert_eq!(Rate::Max.records_per_s(1000.0), None);
    }

    #[test]
    fn toml_accepts_numbers_and_words() {
        let w = Workload::from_toml(
            "record_bytes = 100\nrate = 20000\nacks = 1\ncompression = \"lz4\"\nkey_distribution = \"zipf\"",
        )
        .unwrap();
        assert_eq!(w.record_bytes, RecordBytes::Fixed(100));
        assert_eq!(w.rate, Rate::RecordsPerSecond(20000.0));
        assert_eq!(w.acks, Acks::Leader);
        assert_eq!(w.compression, CompressionCodec::Lz4);
        assert_eq!(w.key_distribution, KeyDistribution::Zipf);
        let err = Workload::from_toml("colour = 3").unwrap_err();
        assert!(err.reason.contains("colour"), "{err}");
    }

    #[test]
    fn validate_names_the_field() {
        let field = |w: Workload| w.validate().unwrap_err().field;
        let d = Workload::default;
        assert_eq!(
            field(Workload {
                record_bytes: RecordBytes::Fixed(8),
                ..d()
            }),
            "record_bytes"
        );
        assert_eq!(
            field(Workload {
                group: Some(String::new()),
                ..d()
            }),
            "group"
        );
        assert_eq!(
            field(Workload {
                heartbeat_interval_ms: 20_000,
                ..d()
            }),
            "heartbeat_interval_ms"
        );
        assert_eq!(
            field(Workload {
                max_inflight: 0,
                ..d()
            }),
            "max_inflight"
        );
        assert_eq!(
            field(Workload {
                duration: 0.0,
                ..d()
            }),
            "duration"
        );
        assert_eq!(
            field(Workload {
                topic: "no spaces".into(),
                ..d()
            }),
            "topic"
        );
        assert_eq!(
            field(Workload {
                buffer_bytes: 100,
                ..d()
            }),
            "buffer_bytes"
        );
        Workload {
            group: Some("g".into()),
            ..d()
        }
        .validate()
        .unwrap();
    }
}
