//! Prometheus metrics. Each shard counts into its own [`ShardMetrics`] (no sharing, no
//! atomics); a scrape asks every shard for a [`MetricsSnapshot`] over the shard channels,
//! and shard 0 merges them and renders the text exposition format.
//!
//! Latencies are Prometheus histograms with fixed buckets from 100 µs to 10 s, so shards
//! merge by adding counts and any Prometheus server can aggregate them further.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram: per-bucket counts (not cumulative), sum and count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hist {
    buckets: [u64; LATENCY_BUCKETS_US.len()],
    sum_us: u64,
    count: u64,
}

impl Hist {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i] += 1;
        }
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    fn merge(&mut self, other: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum_us += other.sum_us;
        self.count += other.count;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[i];
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Requests of one api on one shard.
#[derive(Debug, Clone, Default)]
pub struct ApiStats {
    pub requests: u64,
    /// Error codes returned (per partition or resource), by Kafka name.
    pub errors: BTreeMap<&'static str, u64>,
    pub latency: Hist,
}

/// Bytes through one topic on one shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct TopicBytes {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub records_in: u64,
}

/// One shard's counters. Owned by the shard; borrowed only for a moment.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    api: RefCell<BTreeMap<&'static str, ApiStats>>,
    topics: RefCell<HashMap<Arc<str>, TopicBytes>>,
    sync_latency: RefCell<Hist>,
    read_latency: RefCell<Hist>,
    /// Messages from other shards being handled here now.
    pub cross_shard_inflight: std::cell::Cell<usize>,
    connections_refused: RefCell<u64>,
    cleaner: RefCell<CleanerCounters>,
}

/// What the shard's log cleaner did, since the start.
#[derive(Debug, Clone, Copy, Default)]
pub struct CleanerCounters {
    pub passes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub markers_removed: u64,
    pub seconds: f64,
}

impl ShardMetrics {
    pub fn request(&self, api: &'static str, latency: Duration) {
        let mut m = self.api.borrow_mut();
        let s = m.entry(api).or_default();
        s.requests += 1;
        s.latency.record(latency);
    }

    pub fn error(&self, api: &'static str, code: rill_net::ErrorCode) {
        if code == rill_net::ErrorCode::None {
            return;
        }
        *self
            .api
            .borrow_mut()
            .entry(api)
            .or_default()
            .errors
            .entry(code.name())
            .or_default() += 1;
    }

    pub fn produced(&self, topic: &Arc<str>, bytes: u64, records: u64) {
        let mut t = self.topics.borrow_mut();
        let e = t.entry(topic.clone()).or_default();
        e.bytes_in += bytes;
        e.records_in += records;
    }

    pub fn fetched(&self, topic: &Arc<str>, bytes: u64) {
        self.topics
            .borrow_mut()
            .entry(topic.clone())
            .or_default()
            .bytes_out += bytes;
    }

    pub fn synced(&self, latency: Duration) {
        self.sync_latency.borrow_mut().record(latency);
    }

    pub fn read(&self, latency: Duration) {
        self.read_latency.borrow_mut().record(latency);
    }

    pub fn connection_refused(&self) {
        *self.connections_refused.borrow_mut() += 1;
    }

    /// One compaction pass that did `out`, taking `elapsed`.
    pub fn cleaned(&self, out: &rill_storage::CleanOutcome, elapsed: Duration) {
        let mut c = self.cleaner.borrow_mut();
        c.passes += 1;
        c.bytes_read += out.bytes_read;
        c.bytes_written += out.bytes_written;
        c.records_removed += out.records_removed + out.tombstones_removed;
        c.markers_removed += out.markers_removed;
        c.seconds += elapsed.as_secs_f64();
    }

    /// The counters as a `Send` snapshot; the gauges are filled in by the shard.
    pub fn snapshot(&self, shard: usize) -> MetricsSnapshot {
        MetricsSnapshot {
            shard,
            api: self
                .api
                .borrow()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            topics: self
                .topics
                .borrow()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            sync_latency: self.sync_latency.borrow().clone(),
            read_latency: self.read_latency.borrow().clone(),
            cross_shard_inflight: self.cross_shard_inflight.get(),
            connections_refused: *self.connections_refused.borrow(),
            cleaner: *self.cleaner.borrow(),
            ..MetricsSnapshot::default()
        }
    }
}

/// One partition's figures, taken by its owner at scrape time.
#[derive(Debug, Clone, Default)]
pub struct PartitionSample {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    pub segments: usize,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Compacted partitions: what the log cleaner last saw.
    pub compaction: Option<rill_storage::CompactionStatus>,
}

/// What a shard reports to a scrape.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub shard: usize,
    pub api: Vec<(&'static str, ApiStats)>,
    pub topics: Vec<(String, TopicBytes)>,
    pub sync_latency: Hist,
    pub read_latency: Hist,
    pub cross_shard_inflight: usize,
    pub connections_refused: u64,
    pub cleaner: CleanerCounters,
    pub partitions: Vec<PartitionSample>,
    pub connections: usize,
    pub inflight_request_bytes: usize,
    pub fetch_waiters: usize,
    pub fetch_sessions: usize,
    pub busy_seconds: f64,
    /// Committed offsets of the groups this shard coordinates: (group, topic, partition,
    /// offset).
    pub group_offsets: Vec<(String, String, i32, i64)>,
}

/// Host figures (from sysinfo), taken on the scraping shard.
#[derive(Debug, Clone, Default)]
pub struct HostSample {
    pub cpu_usage_percent: f64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub process_memory_bytes: u64,
    pub load_average_1m: f64,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of every shard's snapshot plus the host.
pub fn render(shards: &[MetricsSnapshot], host: &HostSample) -> String {
    let mut out = String::with_capacity(16 << 10);
    // Requests, errors and latency per api (merged over shards).
    let mut api: BTreeMap<&'static str, ApiStats> = BTreeMap::new();
    for s in shards {
        for (name, st) in &s.api {
            let e = api.entry(name).or_default();
            e.requests += st.requests;
            e.latency.merge(&st.latency);
            for (code, n) in &st.errors {
                *e.errors.entry(code).or_default() += n;
            }
        }
    }
    header(
        &mut out,
        "rill_requests_total",
        "counter",
        "Requests served, by api.",
    );
    for (name, st) in &api {
        let _ = writeln!(out, "rill_requests_total{{api=\"{name}\"}} {}", st.requests);
    }
    header(
        &mut out,
        "rill_request_errors_total",
        "counter",
        "Kafka error codes returned, by api and code.",
    );
    for (name, st) in &api {
        for (code, n) in &st.errors {
            let _ = writeln!(
                out,
                "rill_request_errors_total{{api=\"{name}\",code=\"{code}\"}} {n}"
            );
        }
    }
    header(
        &mut out,
        "rill_request_duration_seconds",
        "histogram",
        "Time from a request's decode to its response, by api.",
    );
    for (name, st) in &api {
        st.latency.render(
            &mut out,
            "rill_request_duration_seconds",
            &format!("api=\"{name}\""),
        );
    }
    // Bytes per topic.
    let mut topics: BTreeMap<&str, TopicBytes> = BTreeMap::new();
    for s in shards {
        for (t, b) in &s.topics {
            let e = topics.entry(t).or_default();
            e.bytes_in += b.bytes_in;
            e.bytes_out += b.bytes_out;
            e.records_in += b.records_in;
        }
    }
    header(
        &mut out,
        "rill_topic_bytes_in_total",
        "counter",
        "Record batch bytes produced, by topic.",
    );
    for (t, b) in &topics {
        let _ = writeln!(
            out,
            "rill_topic_bytes_in_total{{topic=\"{}\"}} {}",
            escape(t),
            b.bytes_in
        );
    }
    header(
        &mut out,
        "rill_topic_records_in_total",
        "counter",
        "Records produced, by topic.",
    );
    for (t, b) in &topics {
        let _ = writeln!(
            out,
            "rill_topic_records_in_total{{topic=\"{}\"}} {}",
            escape(t),
            b.records_in
        );
    }
    header(
        &mut out,
        "rill_topic_bytes_out_total",
        "counter",
        "Record batch bytes fetched, by topic.",
    );
    for (t, b) in &topics {
        let _ = writeln!(
            out,
            "rill_topic_bytes_out_total{{topic=\"{}\"}} {}",
            escape(t),
            b.bytes_out
        );
    }
    // Partitions.
    let parts: Vec<&PartitionSample> = shards.iter().flat_map(|s| s.partitions.iter()).collect();
    for (name, help, value) in [
        ("rill_partition_size_bytes", "Bytes of log on disk.", 0usize),
        ("rill_partition_segments", "Segment files.", 1),
        ("rill_partition_log_start_offset", "First offset kept.", 2),
        (
            "rill_partition_log_end_offset",
            "Next offset to be written (the high watermark on one node).",
            3,
        ),
    ] {
        header(&mut out, name, "gauge", help);
        for p in &parts {
            let v = match value {
                0 => p.size_bytes as i64,
                1 => p.segments as i64,
                2 => p.log_start_offset,
                _ => p.log_end_offset,
            };
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {v}",
                escape(&p.topic),
                p.partition
            );
        }
    }
    // Compacted partitions, as the log cleaner last looked at them.
    header(
        &mut out,
        "rill_partition_compaction_dirty_ratio",
        "gauge",
        "Compacted partitions: share of the cleanable log (closed segments below the high watermark) not yet compacted.",
    );
    for p in &parts {
        if let Some(c) = &p.compaction {
            let _ = writeln!(
                out,
                "rill_partition_compaction_dirty_ratio{{topic=\"{}\",partition=\"{}\"}} {:.4}",
                escape(&p.topic),
                p.partition,
                c.dirty_ratio
            );
        }
    }
    header(
        &mut out,
        "rill_partition_compaction_last_clean_timestamp_ms",
        "gauge",
        "Compacted partitions: when the last compaction pass ended (ms since the epoch; 0: never).",
    );
    for p in &parts {
        if let Some(c) = &p.compaction {
            let _ = writeln!(
                out,
                "rill_partition_compaction_last_clean_timestamp_ms{{topic=\"{}\",partition=\"{}\"}} {}",
                escape(&p.topic),
                p.partition,
                c.last_clean_ms.unwrap_or(0)
            );
        }
    }
    // Consumer groups: committed offsets and lag (log end offset minus committed offset).
    let ends: HashMap<(&str, i32), i64> = parts
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p.log_end_offset))
        .collect();
    header(
        &mut out,
        "rill_consumer_group_committed_offset",
        "gauge",
        "Committed offset, by group, topic and partition.",
    );
    for s in shards {
        for (g, t, p, o) in &s.group_offsets {
            let _ = writeln!(
                out,
                "rill_consumer_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {o}",
                escape(g),
                escape(t)
            );
        }
    }
    header(
        &mut out,
        "rill_consumer_group_lag",
        "gauge",
        "Records not yet consumed: log end offset minus committed offset, by group, topic and partition.",
    );
    for s in shards {
        for (g, t, p, o) in &s.group_offsets {
            if let Some(end) = ends.get(&(t.as_str(), *p)) {
                let _ = writeln!(
                    out,
                    "rill_consumer_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {}",
                    escape(g),
                    escape(t),
                    (end - o).max(0)
                );
            }
        }
    }
    // Disk: time for a sync (write of the last page plus fdatasync), merged.
    let mut sync = Hist::default();
    for s in shards {
        sync.merge(&s.sync_latency);
    }
    header(
        &mut out,
        "rill_log_sync_duration_seconds",
        "histogram",
        "Time to make a partition's appended data durable (write out and fdatasync).",
    );
    sync.render(&mut out, "rill_log_sync_duration_seconds", "");
    let mut read = Hist::default();
    for s in shards {
        read.merge(&s.read_latency);
    }
    header(
        &mut out,
        "rill_log_read_duration_seconds",
        "histogram",
        "Time to read a fetch's batches from a partition (tail cache or disk).",
    );
    read.render(&mut out, "rill_log_read_duration_seconds", "");
    // Per shard.
    type Gauge = fn(&MetricsSnapshot) -> f64;
    let per_shard: [(&str, &str, &str, Gauge); 14] = [
        ("rill_shard_cross_shard_inflight", "gauge", "Messages from other shards being handled by the shard (each waits for a slot of limits.shard_queue_depth).", |s| s.cross_shard_inflight as f64),
        (
            "rill_shard_busy_seconds_total",
            "counter",
            "CPU time the shard's executor spent running tasks and polling I/O.",
            |s| s.busy_seconds,
        ),
        (
            "rill_shard_partitions",
            "gauge",
            "Partitions owned by the shard.",
            |s| s.partitions.len() as f64,
        ),
        (
            "rill_shard_connections",
            "gauge",
            "Client connections served by the shard.",
            |s| s.connections as f64,
        ),
        (
            "rill_shard_connections_refused_total",
            "counter",
            "Connections closed at once because limits.connections_max was reached.",
            |s| s.connections_refused as f64,
        ),
        (
            "rill_log_cleaner_passes_total",
            "counter",
            "Compaction passes the shard's log cleaner ran.",
            |s| s.cleaner.passes as f64,
        ),
        (
            "rill_log_cleaner_read_bytes_total",
            "counter",
            "Bytes of segments the log cleaner read (key map and rewrite).",
            |s| s.cleaner.bytes_read as f64,
        ),
        (
            "rill_log_cleaner_written_bytes_total",
            "counter",
            "Bytes of compacted segments the log cleaner wrote.",
            |s| s.cleaner.bytes_written as f64,
        ),
        (
            "rill_log_cleaner_removed_records_total",
            "counter",
            "Records (superseded values, expired tombstones, keyless records, aborted transactions' records) compaction removed.",
            |s| s.cleaner.records_removed as f64,
        ),
        (
            "rill_log_cleaner_removed_markers_total",
            "counter",
            "Transaction markers compaction removed (no record of their transaction left, past delete.retention.ms).",
            |s| s.cleaner.markers_removed as f64,
        ),
        (
            "rill_log_cleaner_seconds_total",
            "counter",
            "Time the log cleaner's passes took (they yield to requests, so this is wall time).",
            |s| s.cleaner.seconds,
        ),
        (
            "rill_shard_inflight_request_bytes",
            "gauge",
            "Bytes of requests read and not yet answered (limits.inflight_request_bytes_max).",
            |s| s.inflight_request_bytes as f64,
        ),
        (
            "rill_shard_fetch_waiters",
            "gauge",
            "Fetch long polls parked on the shard (limits.fetch_waiters_max).",
            |s| s.fetch_waiters as f64,
        ),
        (
            "rill_shard_fetch_sessions",
            "gauge",
            "Incremental fetch sessions kept by the shard (limits.fetch_sessions_max).",
            |s| s.fetch_sessions as f64,
        ),
    ];
    for (name, kind, help, get) in per_shard {
        header(&mut out, name, kind, help);
        for s in shards {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, get(s));
        }
    }
    // Host.
    let host_gauges = [
        (
            "rill_host_cpu_usage_percent",
            "CPU use of the whole host.",
            host.cpu_usage_percent,
        ),
        (
            "rill_host_memory_total_bytes",
            "Memory of the host.",
            host.memory_total_bytes as f64,
        ),
        (
            "rill_host_memory_used_bytes",
            "Memory in use on the host.",
            host.memory_used_bytes as f64,
        ),
        (
            "rill_process_resident_memory_bytes",
            "Resident memory of this broker process.",
            host.process_memory_bytes as f64,
        ),
        (
            "rill_host_load_average_1m",
            "One-minute load average.",
            host.load_average_1m,
        ),
    ];
    for (name, help, v) in host_gauges {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_merge_across_shards() {
        let a = ShardMetrics::default();
        a.request("Produce", Duration::from_micros(80));
        a.request("Produce", Duration::from_millis(3));
        a.error("Produce", rill_net::ErrorCode::MessageTooLarge);
        let b = ShardMetrics::default();
        b.request("Produce", Duration::from_secs(20));
        let text = render(&[a.snapshot(0), b.snapshot(1)], &HostSample::default());
        assert!(
            text.contains("rill_requests_total{api=\"Produce\"} 3\n"),
            "{text}"
        );
        assert!(text
            .contains("rill_request_errors_total{api=\"Produce\",code=\"MESSAGE_TOO_LARGE\"} 1\n"));
        assert!(text
            .contains("rill_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 1\n"));
        assert!(
            text.contains("rill_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"} 2\n")
        );
        assert!(
            text.contains("rill_request_duration_seconds_bucket{api=\"Produce\",le=\"10\"} 2\n")
        );
        assert!(
            text.contains("rill_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 3\n")
        );
        assert!(text.contains("rill_request_duration_seconds_count{api=\"Produce\"} 3\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
