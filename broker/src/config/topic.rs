//! Topic configs: the Kafka keys, their types, defaults and checks, and how they turn into
//! a partition log's [`LogConfig`] and the produce path's [`TopicSettings`]. One table
//! ([`TOPIC_CONFIGS`], in `topic_keys.rs`) drives validation (CreateTopics, AlterConfigs,
//! `rill.toml`), DescribeConfigs and the settings, so they cannot drift apart. Pure data;
//! any shard may use it.

use std::collections::BTreeMap;

use rill_net::kafka_protocol::records::Compression;
use rill_storage::{FlushPolicy, LogConfig};

use crate::config::StorageSettings;

pub use super::topic_keys::{BROKER_ONLY_CONFIGS, TOPIC_CONFIGS};

/// How a value is parsed, and what DescribeConfigs v3+ calls the type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A 64-bit integer at least `min`.
    Long { min: i64 },
    /// A 32-bit integer in `[min, max]`.
    Int { min: i64, max: i64 },
    /// A 32-bit integer in `[min, max]`, or -1 (the codec's own default).
    IntOrMinusOne { min: i64, max: i64 },
    /// `true` or `false`, any case (as Kafka parses booleans).
    Bool,
    /// A number in `[min, max]`.
    Double { min: f64, max: f64 },
    /// One of the listed words (Kafka's case).
    Choice(&'static [&'static str]),
    /// A comma-separated list whose items are each one of the listed words.
    List(&'static [&'static str]),
    /// Throttled replicas: empty, `*`, or `partition:broker,...`.
    ThrottledReplicas,
}

impl Kind {
    /// The DescribeConfigs `config_type` code.
    pub fn describe_type(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::Choice(_) => 2,
            Kind::Int { .. } | Kind::IntOrMinusOne { .. } => 3,
            Kind::Long { .. } => 5,
            Kind::Double { .. } => 6,
            Kind::List(_) | Kind::ThrottledReplicas => 7,
        }
    }

    /// Whether APPEND and SUBTRACT apply (comma-separated lists).
    pub fn is_list(self) -> bool {
        matches!(self, Kind::List(_) | Kind::ThrottledReplicas)
    }
}

/// One topic config key.
#[derive(Debug)]
pub struct ConfigKey {
    /// The Kafka topic config name.
    pub name: &'static str,
    /// The broker-level name Kafka uses for its default (shown for the broker resource).
    pub broker_name: &'static str,
    pub kind: Kind,
    /// Kafka's default.
    pub default: &'static str,
    pub doc: &'static str,
}

/// The table entry for `name`.
pub fn key(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_CONFIGS.iter().find(|k| k.name == name)
}

/// The table entry whose broker-level name is `name` (e.g. `log.retention.ms`).
pub fn key_by_broker_name(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_CONFIGS.iter().find(|k| k.broker_name == name)
}

/// The broker-only config (not a topic default) named `name`.
pub fn broker_only_key(name: &str) -> Option<&'static ConfigKey> {
    BROKER_ONLY_CONFIGS.iter().find(|k| k.name == name)
}

/// Broker-wide defaults for topic configs, by topic config name: from `rill.toml`
/// (`[topic_defaults]`) and set at run time (AlterConfigs on the broker resource, kept in
/// the registry). Run-time values win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerDefaults {
    pub file: BTreeMap<String, String>,
    pub dynamic: BTreeMap<String, String>,
}

/// Checks one topic `name=value`; the error says what is wrong in words a user can act on.
pub fn validate_entry(name: &str, value: &str) -> Result<(), String> {
    let Some(k) = key(name) else {
        return Err(format!(
            "unknown topic config `{name}`; Kafka's topic configs are: {}",
            TOPIC_CONFIGS
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    validate_value(k, value)
}

/// Checks a value against its key's type and range.
pub fn validate_value(k: &ConfigKey, value: &str) -> Result<(), String> {
    let name = k.name;
    let integer = || -> Result<i64, String> {
        value
            .trim()
            .parse()
            .map_err(|_| format!("{name}: `{value}` is not an integer"))
    };
    let outside =
        |v: &dyn std::fmt::Display, min: &dyn std::fmt::Display, max: &dyn std::fmt::Display| {
            Err(format!("{name}: {v} is outside [{min}, {max}]"))
        };
    match k.kind {
        Kind::Long { min } => {
            let v = integer()?;
            if v < min {
                return outside(&v, &min, &i64::MAX);
            }
        }
        Kind::Int { min, max } => {
            let v = integer()?;
            if v < min || v > max {
                return outside(&v, &min, &max);
            }
        }
        Kind::IntOrMinusOne { min, max } => {
            let v = integer()?;
            if v != -1 && (v < min || v > max) {
                return Err(format!("{name}: {v} is neither -1 nor in [{min}, {max}]"));
            }
        }
        Kind::Bool => {
            let v = parse_bool(value)
                .ok_or_else(|| format!("{name}: `{value}` is not true or false"))?;
            if name == "remote.storage.enable" && v {
                return Err(
                    "remote.storage.enable=true needs tiered storage, which Rill does not have                      (as a Kafka broker without remote.log.storage.system.enable)"
                        .into(),
                );
            }
        }
        Kind::Double { min, max } => {
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name}: `{value}` is not a number"))?;
            if !(min..=max).contains(&v) {
                return outside(&v, &min, &max);
            }
        }
        Kind::Choice(words) => {
            if !words.contains(&value) {
                return Err(not_supported(name, value, words));
            }
        }
        Kind::List(words) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.is_empty() || items.iter().any(|i| !words.contains(i)) {
                return Err(not_supported(name, value, words));
            }
        }
        Kind::ThrottledReplicas => {
            let v = value.trim();
            let entry_ok = |e: &str| {
                e.split_once(':').is_some_and(|(p, b)| {
                    p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                })
            };
            if !(v.is_empty() || v == "*" || v.split(',').all(entry_ok)) {
                return Err(format!(
                    "{name}: `{value}` is not `*` nor a list of partition:broker pairs (0:1,1:2)"
                ));
            }
        }
    }
    Ok(())
}

/// A Kafka boolean: `true` or `false` in any case.
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn not_supported(name: &str, value: &str, words: &[&str]) -> String {
    format!(
        "{name}: `{value}` is not supported; use one of: {}",
        words.join(", ")
    )
}

/// Where a config value comes from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set on the topic (DYNAMIC_TOPIC_CONFIG).
    Topic = 1,
    /// Set at run time for the whole broker (DYNAMIC_DEFAULT_BROKER_CONFIG).
    BrokerDynamic = 3,
    /// Set in `rill.toml` (STATIC_BROKER_CONFIG).
    BrokerFile = 4,
    /// Kafka's default (DEFAULT_CONFIG).
    Default = 5,
}

/// The effective value of `name` for a topic with `overrides`, and where it came from.
pub fn effective(
    name: &str,
    defaults: &BrokerDefaults,
    overrides: &[(String, String)],
) -> (String, Source) {
    if let Some((_, v)) = overrides.iter().find(|(k, _)| k == name) {
        return (v.clone(), Source::Topic);
    }
    if let Some(v) = defaults.dynamic.get(name) {
        return (v.clone(), Source::BrokerDynamic);
    }
    if let Some(v) = defaults.file.get(name) {
        return (v.clone(), Source::BrokerFile);
    }
    let default = key(name)
        .or_else(|| broker_only_key(name))
        .map_or("", |k| k.default);
    (default.to_string(), Source::Default)
}

/// Timestamps a topic stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// What the broker does to produced batches' compression (`compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompress {
    /// Keep the producer's (`producer`).
    Keep,
    /// Recompress every batch to this codec (none, gzip, snappy, lz4, zstd) at `level`
    /// (the codec's `compression.*.level`; `None` for its default).
    To(Compression, Option<i32>),
}

/// A topic's effective configs, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i64,
    pub timestamp_type: TimestampType,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub min_insync_replicas: i64,
    pub unclean_leader_election: bool,
    pub recompress: Recompress,
    /// Largest a batch may decompress to when it is recompressed.
    pub decompressed_bytes_max: i64,
    /// CreateTime topics: how far behind / ahead of the broker's clock a batch's
    /// timestamps may be.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub segment_jitter_ms: i64,
    /// Set on the topic or as a broker default; else the storage setting's.
    pub index_interval_bytes: Option<i64>,
    /// `cleanup.policy` lists `delete` / `compact`.
    pub cleanup_delete: bool,
    pub cleanup_compact: bool,
    pub min_cleanable_dirty_ratio: f64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
}

impl TopicSettings {
    /// Resolves every key (override, then broker default, then Kafka's default) and parses it.
    pub fn resolve(
        broker_defaults: &BrokerDefaults,
        overrides: &[(String, String)],
    ) -> Result<TopicSettings, String> {
        let get = |name: &str| -> Result<String, String> {
            let (v, _) = effective(name, broker_defaults, overrides);
            validate_entry(name, &v)?;
            Ok(v)
        };
        let num = |name: &str| -> Result<i64, String> {
            get(name)?
                .trim()
                .parse()
                .map_err(|_| format!("{name} is not a number"))
        };
        Ok(TopicSettings {
            retention_ms: num("retention.ms")?,
            retention_bytes: num("retention.bytes")?,
            segment_bytes: num("segment.bytes")?,
            segment_ms: num("segment.ms")?,
            max_message_bytes: num("max.message.bytes")?,
            timestamp_type: if get("message.timestamp.type")? == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            flush_messages: num("flush.messages")?,
            flush_ms: num("flush.ms")?,
            min_insync_replicas: num("min.insync.replicas")?,
            unclean_leader_election: parse_bool(&get("unclean.leader.election.enable")?)
                .unwrap_or(false),
            recompress: recompress(&get("compression.type")?, &num)?,
            decompressed_bytes_max: num("max.decompressed.message.bytes")?,
            timestamp_before_max_ms: num("message.timestamp.before.max.ms")?,
            timestamp_after_max_ms: num("message.timestamp.after.max.ms")?,
            segment_jitter_ms: num("segment.jitter.ms")?,
            index_interval_bytes: match effective(
                "index.interval.bytes",
                broker_defaults,
                overrides,
            ) {
                (_, Source::Default) => None,
                _ => Some(num("index.interval.bytes")?),
            },
            cleanup_delete: policy(&get("cleanup.policy")?, "delete"),
            cleanup_compact: policy(&get("cleanup.policy")?, "compact"),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")?
                .trim()
                .parse()
                .map_err(|_| "min.cleanable.dirty.ratio is not a number".to_string())?,
            delete_retention_ms: num("delete.retention.ms")?,
            min_compaction_lag_ms: num("min.compaction.lag.ms")?,
            max_compaction_lag_ms: num("max.compaction.lag.ms")?,
        })
    }

    /// The partition log configuration these settings ask for. With `segment.jitter.ms`
    /// each call draws the partition's own jitter, so partitions roll at different times.
    pub fn log_config(&self, storage: &StorageSettings) -> LogConfig {
        let opt = |v: i64| (v >= 0).then_some(v as u64);
        let batch_bytes_max = self.max_message_bytes as usize;
        // Kafka subtracts a random jitter below min(segment.jitter.ms, segment.ms).
        let jitter_max = self.segment_jitter_ms.min(self.segment_ms).max(0) as u64;
        let jitter = if jitter_max > 0 {
            fastrand::u64(0..jitter_max)
        } else {
            0
        };
        LogConfig {
            segment_bytes: self.segment_bytes as u64,
            segment_ms: opt(self.segment_ms).map(|ms| ms.saturating_sub(jitter).max(1)),
            retention_ms: opt(self.retention_ms),
            retention_bytes: opt(self.retention_bytes),
            // 0 asks for an entry per batch: the smallest interval does that.
            index_interval_bytes: self
                .index_interval_bytes
                .map_or(storage.index_interval_bytes, |b| b.max(1) as u64),
            batch_bytes_max,
            write_buffer_bytes_max: storage.write_buffer_bytes_max.max(batch_bytes_max),
            write_chunk_bytes: storage.write_chunk_bytes,
            tail_cache_bytes_max: storage.tail_cache_bytes_max,
            read_ahead_bytes: storage.read_ahead_bytes,
            recovery_point_interval_bytes: LogConfig::default().recovery_point_interval_bytes,
            cleanup_delete: self.cleanup_delete,
            cleanup_compact: self.cleanup_compact,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_ratio,
            delete_retention_ms: self.delete_retention_ms.max(0) as u64,
            min_compaction_lag_ms: self.min_compaction_lag_ms.max(0) as u64,
            max_compaction_lag_ms: (self.max_compaction_lag_ms < i64::MAX)
                .then_some(self.max_compaction_lag_ms.max(1) as u64),
            flush: if self.flush_messages <= 1 || self.flush_ms == 0 {
                FlushPolicy::EveryAppend
            } else {
                FlushPolicy::Threshold {
                    messages: self.flush_messages as u64,
                    bytes: u64::MAX,
                    interval_ms: self.flush_ms as u64,
                }
            },
        }
    }
}

/// Whether the `cleanup.policy` list `value` names `word`.
fn policy(value: &str, word: &str) -> bool {
    value.split(',').any(|w| w.trim() == word)
}

/// `compression.type` with its level as the settings keep it.
fn recompress(kind: &str, num: &dyn Fn(&str) -> Result<i64, String>) -> Result<Recompress, String> {
    let level = |name: &str| -> Result<Option<i32>, String> {
        let v = num(name)?;
        Ok((v != -1).then_some(v as i32))
    };
    Ok(match kind {
        "producer" => Recompress::Keep,
        "uncompressed" => Recompress::To(Compression::None, None),
        "gzip" => Recompress::To(Compression::Gzip, level("compression.gzip.level")?),
        "snappy" => Recompress::To(Compression::Snappy, None),
        "lz4" => Recompress::To(Compression::Lz4, level("compression.lz4.level")?),
        "zstd" => Recompress::To(Compression::Zstd, level("compression.zstd.level")?),
        other => return Err(format!("compression.type: `{other}` is not a codec")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_to_kafka_defaults() {
        let s = TopicSettings::resolve(&BrokerDefaults::default(), &[]).unwrap();
        assert_eq!(s.retention_ms, 604_800_000);
        assert_eq!(s.retention_bytes, -1);
        assert_eq!(s.max_message_bytes, 1_048_588);
        assert_eq!(s.timestamp_type, TimestampType::CreateTime);
        let log = s.log_config(&StorageSettings::default());
        log.validate().unwrap();
        assert_eq!(log.retention_bytes, None);
        assert!(matches!(log.flush, FlushPolicy::Threshold { .. }));
    }

    #[test]
    fn override_beats_broker_default_beats_kafka_default() {
        let mut broker = BrokerDefaults::default();
        broker
            .file
            .insert("retention.ms".to_string(), "1000".to_string());
        broker
            .file
            .insert("segment.bytes".to_string(), "8192".to_string());
        let overrides = vec![("retention.ms".to_string(), "5".to_string())];
        assert_eq!(
            effective("retention.ms", &broker, &overrides),
            ("5".to_string(), Source::Topic)
        );
        assert_eq!(
            effective("segment.bytes", &broker, &overrides),
            ("8192".to_string(), Source::BrokerFile)
        );
        assert_eq!(
            effective("flush.ms", &broker, &overrides).1,
            Source::Default
        );
        broker
            .dynamic
            .insert("segment.bytes".to_string(), "16384".to_string());
        assert_eq!(
            effective("segment.bytes", &broker, &overrides),
            ("16384".to_string(), Source::BrokerDynamic)
        );
        let s = TopicSettings::resolve(&broker, &[("flush.messages".to_string(), "1".to_string())])
            .unwrap();
        assert_eq!(
            s.log_config(&StorageSettings::default()).flush,
            FlushPolicy::EveryAppend
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert!(validate_entry("retention.ms", "-2")
            .unwrap_err()
            .contains("outside"));
        assert!(validate_entry("segment.bytes", "3000000000")
            .unwrap_err()
            .contains("outside"));
        assert!(validate_entry("cleanup.policy", "compress")
            .unwrap_err()
            .contains("not supported"));
        validate_entry("cleanup.policy", "compact,delete").unwrap();
        assert!(validate_entry("retention.mss", "1")
            .unwrap_err()
            .contains("unknown topic config"));
        assert!(validate_entry("message.timestamp.type", "Wallclock").is_err());
        validate_entry("message.timestamp.type", "LogAppendTime").unwrap();
        validate_entry("cleanup.policy", "delete").unwrap();
        // The keys of the other kinds, each with a good and a bad value.
        for (name, good, bad) in [
            ("unclean.leader.election.enable", "TRUE", "yes"),
            ("compression.gzip.level", "-1", "0"),
            ("compression.lz4.level", "17", "18"),
            ("compression.zstd.level", "-5", "23"),
            ("min.cleanable.dirty.ratio", "0.25", "1.5"),
            ("leader.replication.throttled.replicas", "0:1,1:2", "0-1"),
            ("follower.replication.throttled.replicas", "*", "a:b"),
            ("compression.type", "zstd", "brotli"),
            ("remote.storage.enable", "false", "true"),
            ("local.retention.ms", "-2", "-3"),
        ] {
            validate_entry(name, good).unwrap_or_else(|e| panic!("{name}={good}: {e}"));
            assert!(validate_entry(name, bad).is_err(), "{name}={bad} accepted");
        }
        validate_entry("leader.replication.throttled.replicas", "").unwrap();
        assert!(validate_entry("leader.replication.throttled.rate", "1").is_err());
        validate_value(
            broker_only_key("leader.replication.throttled.rate").unwrap(),
            "1",
        )
        .unwrap();
    }

    #[test]
    fn every_kafka_topic_config_resolves_and_is_documented() {
        assert_eq!(
            TOPIC_CONFIGS.len(),
            37,
            "Kafka 4.4 defines 37 topic configs"
        );
        let readme = include_str!("../../../README.md");
        for k in TOPIC_CONFIGS.iter().chain(BROKER_ONLY_CONFIGS) {
            validate_value(k, k.default).unwrap_or_else(|e| panic!("default of {}: {e}", k.name));
            assert!(
                readme.contains(&format!("`{}`", k.name)),
                "README.md's config tables do not list `{}`",
                k.name
            );
        }
        let s = TopicSettings::resolve(
            &BrokerDefaults::default(),
            &[
                ("compression.type".into(), "zstd".into()),
                ("compression.zstd.level".into(), "7".into()),
                ("index.interval.bytes".into(), "0".into()),
                ("segment.jitter.ms".into(), "1000".into()),
                ("segment.ms".into(), "5000".into()),
            ],
        )
        .unwrap();
        assert_eq!(s.recompress, Recompress::To(Compression::Zstd, Some(7)));
        let log = s.log_config(&StorageSettings::default());
        assert_eq!(log.index_interval_bytes, 1, "0 indexes every batch");
        let ms = log.segment_ms.unwrap();
        assert!((4001..=5000).contains(&ms), "jittered segment.ms {ms}");
        let d = TopicSettings::resolve(&BrokerDefaults::default(), &[]).unwrap();
        assert_eq!(d.recompress, Recompress::Keep);
        assert_eq!(d.timestamp_after_max_ms, 3_600_000);
        assert!(!d.unclean_leader_election);
        assert_eq!(
            d.log_config(&StorageSettings::default())
                .index_interval_bytes,
            StorageSettings::default().index_interval_bytes
        );
    }
}
