//! Topic configs: the Kafka keys Rill honours, their types, defaults and checks, and how
//! they turn into a partition log's [`LogConfig`]. One table ([`TOPIC_CONFIGS`]) drives
//! validation (CreateTopics, AlterConfigs, `rill.toml`), DescribeConfigs and the log config,
//! so the three cannot drift apart. Pure data; any shard may use it.

use std::collections::BTreeMap;

use rill_storage::{FlushPolicy, LogConfig};

use crate::config::StorageSettings;

/// How a value is parsed, and what DescribeConfigs v3+ calls the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit integer at least `min`.
    Long { min: i64 },
    /// A 32-bit integer at least `min`.
    Int { min: i64 },
    /// One of the listed words (Kafka's case).
    Choice(&'static [&'static str]),
    /// A comma-separated list whose items are each one of the listed words.
    List(&'static [&'static str]),
}

impl Kind {
    /// The DescribeConfigs `config_type` code.
    pub fn describe_type(self) -> i8 {
        match self {
            Kind::Long { .. } => 5,
            Kind::Int { .. } => 3,
            Kind::Choice(_) => 2,
            Kind::List(_) => 7,
        }
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

/// Every topic config Rill accepts. Anything else is INVALID_CONFIG: accepting a key and then
/// ignoring it would tell the operator something false.
pub const TOPIC_CONFIGS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        kind: Kind::List(&["delete"]),
        default: "delete",
        doc: "What happens to old segments: `delete` drops them by retention.ms / retention.bytes (`compact` is not implemented yet).",
    },
    ConfigKey {
        name: "compression.type",
        broker_name: "compression.type",
        kind: Kind::Choice(&["producer"]),
        default: "producer",
        doc: "Batches are stored compressed exactly as the producer sent them (`producer`); recompression is not offered.",
    },
    ConfigKey {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        kind: Kind::Long { min: 1 },
        default: "9223372036854775807",
        doc: "fdatasync after this many records (1: every append is durable before it is acknowledged).",
    },
    ConfigKey {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        kind: Kind::Long { min: 0 },
        default: "9223372036854775807",
        doc: "fdatasync at most this long after the first unsynced append.",
    },
    ConfigKey {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        kind: Kind::Int { min: 61 },
        default: "1048588",
        doc: "Largest record batch accepted, after compression.",
    },
    ConfigKey {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        doc: "Keep the producer's timestamps (CreateTime) or stamp the broker's clock on append (LogAppendTime).",
    },
    ConfigKey {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        kind: Kind::Int { min: 1 },
        default: "1",
        doc: "Replicas that must hold a batch before acks=all answers; more than the in-sync replicas gives NOT_ENOUGH_REPLICAS.",
    },
    ConfigKey {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        kind: Kind::Long { min: -1 },
        default: "-1",
        doc: "Delete the oldest segments while a partition is larger than this (-1: no limit).",
    },
    ConfigKey {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        kind: Kind::Long { min: -1 },
        default: "604800000",
        doc: "Delete segments whose newest record is older than this (-1: keep forever).",
    },
    ConfigKey {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        kind: Kind::Int { min: 4096 },
        default: "1073741824",
        doc: "Roll to a new segment file at this size.",
    },
    ConfigKey {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        kind: Kind::Long { min: 1 },
        default: "604800000",
        doc: "Roll to a new segment file at this age, so retention can drop old data.",
    },
];

/// The table entry for `name`.
pub fn key(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_CONFIGS.iter().find(|k| k.name == name)
}

/// The table entry whose broker-level name is `name` (e.g. `log.retention.ms`).
pub fn key_by_broker_name(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_CONFIGS.iter().find(|k| k.broker_name == name)
}

/// Broker-wide defaults for topic configs, by topic config name: from `rill.toml`
/// (`[topic_defaults]`) and set at run time (AlterConfigs on the broker resource, kept in
/// the registry). Run-time values win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerDefaults {
    pub file: BTreeMap<String, String>,
    pub dynamic: BTreeMap<String, String>,
}

/// Checks one `name=value`; the error says what is wrong in words a user can act on.
pub fn validate_entry(name: &str, value: &str) -> Result<(), String> {
    let Some(k) = key(name) else {
        return Err(format!(
            "unknown topic config `{name}`; Rill accepts: {}",
            TOPIC_CONFIGS
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    match k.kind {
        Kind::Long { min } | Kind::Int { min } => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name}: `{value}` is not an integer"))?;
            let max = if matches!(k.kind, Kind::Int { .. }) {
                i32::MAX as i64
            } else {
                i64::MAX
            };
            if v < min || v > max {
                return Err(format!("{name}: {v} is outside [{min}, {max}]"));
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
    }
    Ok(())
}

fn not_supported(name: &str, value: &str, words: &[&str]) -> String {
    if name == "cleanup.policy" && value.contains("compact") {
        return "cleanup.policy=compact is not implemented yet; use delete".into();
    }
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
    let default = key(name).map_or("", |k| k.default);
    (default.to_string(), Source::Default)
}

/// Timestamps a topic stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
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
        })
    }

    /// The partition log configuration these settings ask for.
    pub fn log_config(&self, storage: &StorageSettings) -> LogConfig {
        let opt = |v: i64| (v >= 0).then_some(v as u64);
        let batch_bytes_max = self.max_message_bytes as usize;
        LogConfig {
            segment_bytes: self.segment_bytes as u64,
            segment_ms: opt(self.segment_ms),
            retention_ms: opt(self.retention_ms),
            retention_bytes: opt(self.retention_bytes),
            index_interval_bytes: storage.index_interval_bytes,
            batch_bytes_max,
            write_buffer_bytes_max: storage.write_buffer_bytes_max.max(batch_bytes_max),
            write_chunk_bytes: storage.write_chunk_bytes,
            tail_cache_bytes_max: storage.tail_cache_bytes_max,
            read_ahead_bytes: storage.read_ahead_bytes,
            recovery_point_interval_bytes: LogConfig::default().recovery_point_interval_bytes,
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
        assert!(validate_entry("cleanup.policy", "compact")
            .unwrap_err()
            .contains("not implemented"));
        assert!(validate_entry("retention.mss", "1")
            .unwrap_err()
            .contains("unknown topic config"));
        assert!(validate_entry("message.timestamp.type", "Wallclock").is_err());
        validate_entry("message.timestamp.type", "LogAppendTime").unwrap();
        validate_entry("cleanup.policy", "delete").unwrap();
    }
}
