//! The table of every topic config Kafka 4.x defines (and the broker-only dynamic configs
//! admin tools set), with Kafka's types, defaults and ranges, and what each means in Rill.
//! Every key is accepted and described; where a key has no meaning in Rill's design its
//! `doc` says why (README "Topic configs" lists the same), and no key that changes
//! durability or retention is accepted without being honoured. Pure data.

use super::topic::{ConfigKey, Kind};

/// Kafka's `Long.MAX_VALUE` default ("never" / "no limit").
const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Kafka 4.x defines, by name.
pub const TOPIC_CONFIGS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        kind: Kind::List(&["delete", "compact"]),
        default: "delete",
        doc: "What happens to old segments: `delete` drops them by retention.ms / retention.bytes; `compact` keeps the latest record of every key (the log cleaner rewrites closed segments, offsets unchanged); `compact,delete` does both. Records without a key are refused on compacted topics.",
    },
    ConfigKey {
        name: "compression.gzip.level",
        broker_name: "compression.gzip.level",
        kind: Kind::IntOrMinusOne { min: 1, max: 9 },
        default: "-1",
        doc: "Level of the broker's gzip recompression (compression.type=gzip); -1 is gzip's default (6).",
    },
    ConfigKey {
        name: "compression.lz4.level",
        broker_name: "compression.lz4.level",
        kind: Kind::Int { min: 1, max: 17 },
        default: "9",
        doc: "Level of the broker's lz4 recompression (compression.type=lz4).",
    },
    ConfigKey {
        name: "compression.type",
        broker_name: "compression.type",
        kind: Kind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        default: "producer",
        doc: "`producer` stores batches as the producer compressed them; any other value recompresses every batch to that codec on the broker before it is stored.",
    },
    ConfigKey {
        name: "compression.zstd.level",
        broker_name: "compression.zstd.level",
        kind: Kind::Int { min: -131_072, max: 22 },
        default: "3",
        doc: "Level of the broker's zstd recompression (compression.type=zstd).",
    },
    ConfigKey {
        name: "delete.retention.ms",
        broker_name: "log.cleaner.delete.retention.ms",
        kind: Kind::Long { min: 0 },
        default: "86400000",
        doc: "How long a delete marker (a record with a null value) stays in a compacted topic once the cleaner has compacted the part of the log that holds it.",
    },
    ConfigKey {
        name: "errors.deadletterqueue.group.enable",
        broker_name: "errors.deadletterqueue.group.enable",
        kind: Kind::Bool,
        default: "false",
        doc: "Whether share/streams groups may write to this topic as a dead letter queue (KIP-1034). Accepted, no effect: Rill has no share or streams groups.",
    },
    ConfigKey {
        name: "file.delete.delay.ms",
        broker_name: "log.segment.delete.delay.ms",
        kind: Kind::Long { min: 0 },
        default: "60000",
        doc: "How long Kafka keeps a dropped segment's files before unlinking them. Accepted, no effect: Rill unlinks at once; readers already holding the files keep reading them.",
    },
    ConfigKey {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        kind: Kind::Long { min: 1 },
        default: LONG_MAX,
        doc: "fdatasync after this many records (1: every append is durable before it is acknowledged).",
    },
    ConfigKey {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        kind: Kind::Long { min: 0 },
        default: LONG_MAX,
        doc: "fdatasync at most this long after the first unsynced append.",
    },
    ConfigKey {
        name: "follower.replication.throttled.replicas",
        broker_name: "follower.replication.throttled.replicas",
        kind: Kind::ThrottledReplicas,
        default: "",
        doc: "Replicas (partition:broker,... or *) whose follower fetches are throttled to follower.replication.throttled.rate. Accepted and kept so reassignment tools can set and clear it; Rill does not throttle replication.",
    },
    ConfigKey {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        kind: Kind::Int { min: 0, max: i32::MAX as i64 },
        default: "4096",
        doc: "Bytes of log between two offset/time index entries (0: an entry for every batch).",
    },
    ConfigKey {
        name: "leader.replication.throttled.replicas",
        broker_name: "leader.replication.throttled.replicas",
        kind: Kind::ThrottledReplicas,
        default: "",
        doc: "Replicas (partition:broker,... or *) whose leader-side reads are throttled to leader.replication.throttled.rate. Accepted and kept so reassignment tools can set and clear it; Rill does not throttle replication.",
    },
    ConfigKey {
        name: "local.retention.bytes",
        broker_name: "log.local.retention.bytes",
        kind: Kind::Long { min: -2 },
        default: "-2",
        doc: "Tiered storage: bytes kept on local disk once older data is in the remote tier (-2: retention.bytes). Accepted, no effect: Rill has no remote tier, every record stays local until retention.bytes / retention.ms drop it.",
    },
    ConfigKey {
        name: "local.retention.ms",
        broker_name: "log.local.retention.ms",
        kind: Kind::Long { min: -2 },
        default: "-2",
        doc: "Tiered storage: how long data stays on local disk once it is in the remote tier (-2: retention.ms). Accepted, no effect: Rill has no remote tier, every record stays local until retention.ms / retention.bytes drop it.",
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        broker_name: "log.cleaner.max.compaction.lag.ms",
        kind: Kind::Long { min: 1 },
        default: LONG_MAX,
        doc: "Longest a record may stay uncompacted: a compacted partition whose oldest uncompacted segment is older than this is cleaned whatever its dirty ratio (the active segment still waits for segment.ms or segment.bytes to roll it).",
    },
    ConfigKey {
        name: "max.decompressed.message.bytes",
        broker_name: "max.decompressed.message.bytes",
        kind: Kind::Int { min: 1, max: 2_147_483_639 },
        default: "2147483639",
        doc: "Largest a batch may grow when the broker decompresses it to recompress it (compression.type other than producer); larger batches are refused with RECORD_LIST_TOO_LARGE.",
    },
    ConfigKey {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        kind: Kind::Int { min: 61, max: i32::MAX as i64 },
        default: "1048588",
        doc: "Largest record batch accepted, after compression.",
    },
    ConfigKey {
        name: "message.timestamp.after.max.ms",
        broker_name: "log.message.timestamp.after.max.ms",
        kind: Kind::Long { min: 0 },
        default: "3600000",
        doc: "CreateTime topics: a batch whose newest timestamp is more than this ahead of the broker's clock is refused with INVALID_TIMESTAMP (KIP-937).",
    },
    ConfigKey {
        name: "message.timestamp.before.max.ms",
        broker_name: "log.message.timestamp.before.max.ms",
        kind: Kind::Long { min: 0 },
        default: LONG_MAX,
        doc: "CreateTime topics: a batch whose first timestamp is more than this behind the broker's clock is refused with INVALID_TIMESTAMP (KIP-937).",
    },
    ConfigKey {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        doc: "Keep the producer's timestamps (CreateTime) or stamp the broker's clock on append (LogAppendTime).",
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        broker_name: "log.cleaner.min.cleanable.ratio",
        kind: Kind::Double { min: 0.0, max: 1.0 },
        default: "0.5",
        doc: "Share of a compacted partition's cleanable log (closed segments below the high watermark) not yet compacted that makes the cleaner take it.",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        broker_name: "log.cleaner.min.compaction.lag.ms",
        kind: Kind::Long { min: 0 },
        default: "0",
        doc: "Shortest a record stays uncompacted: segments holding records younger than this are left to a later pass.",
    },
    ConfigKey {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        kind: Kind::Int { min: 1, max: i32::MAX as i64 },
        default: "1",
        doc: "Replicas that must hold a batch before acks=all answers; more than the in-sync replicas gives NOT_ENOUGH_REPLICAS.",
    },
    ConfigKey {
        name: "preallocate",
        broker_name: "log.preallocate",
        kind: Kind::Bool,
        default: "false",
        doc: "Whether Kafka preallocates a new segment file's full size. Accepted, no effect: Rill writes segments with direct I/O in aligned chunks as they fill.",
    },
    ConfigKey {
        name: "remote.copy.lag.bytes",
        broker_name: "log.remote.copy.lag.bytes",
        kind: Kind::Long { min: -1 },
        default: "-1",
        doc: "Tiered storage: bytes a segment may wait before it is copied to the remote tier. Accepted, no effect: Rill has no remote tier.",
    },
    ConfigKey {
        name: "remote.copy.lag.ms",
        broker_name: "log.remote.copy.lag.ms",
        kind: Kind::Long { min: -1 },
        default: "0",
        doc: "Tiered storage: how long a segment may wait before it is copied to the remote tier. Accepted, no effect: Rill has no remote tier.",
    },
    ConfigKey {
        name: "remote.log.copy.disable",
        broker_name: "remote.log.copy.disable",
        kind: Kind::Bool,
        default: "false",
        doc: "Tiered storage: stop copying to the remote tier. Accepted, no effect: Rill has no remote tier.",
    },
    ConfigKey {
        name: "remote.log.delete.on.disable",
        broker_name: "remote.log.delete.on.disable",
        kind: Kind::Bool,
        default: "false",
        doc: "Tiered storage: delete remote data when tiering is turned off. Accepted, no effect: Rill has no remote tier.",
    },
    ConfigKey {
        name: "remote.storage.enable",
        broker_name: "remote.storage.enable",
        kind: Kind::Choice(&["false"]),
        default: "false",
        doc: "Tiered storage for the topic. Only false: like a Kafka broker without remote.log.storage.system.enable, Rill refuses true (it has no remote tier).",
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
        kind: Kind::Int { min: 4096, max: i32::MAX as i64 },
        default: "1073741824",
        doc: "Roll to a new segment file at this size (Rill allows down to 4096 where Kafka stops at 1 MiB).",
    },
    ConfigKey {
        name: "segment.index.bytes",
        broker_name: "log.index.size.max.bytes",
        kind: Kind::Int { min: 4, max: i32::MAX as i64 },
        default: "10485760",
        doc: "Kafka's preallocated index file size, which rolls a segment when full. Accepted, no effect: Rill's sparse indexes grow with their segment (one entry per index.interval.bytes), so segment.bytes and segment.ms alone roll segments.",
    },
    ConfigKey {
        name: "segment.jitter.ms",
        broker_name: "log.roll.jitter.ms",
        kind: Kind::Long { min: 0 },
        default: "0",
        doc: "Each partition rolls up to this much (random, per partition) before segment.ms, so partitions created together do not all roll at once.",
    },
    ConfigKey {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        kind: Kind::Long { min: 1 },
        default: "604800000",
        doc: "Roll to a new segment file at this age, so retention can drop old data.",
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        broker_name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        default: "false",
        doc: "Whether a replica outside the ISR may become leader when no in-sync replica is alive (ElectLeaders type unclean, and the controller), at the cost of records only the old leader had.",
    },
];

/// Broker configs that are not topic defaults, settable at run time on the broker resource
/// (`kafka-configs --entity-type brokers`), by name.
pub const BROKER_ONLY_CONFIGS: &[ConfigKey] = &[
    ConfigKey {
        name: "follower.replication.throttled.rate",
        broker_name: "follower.replication.throttled.rate",
        kind: Kind::Long { min: 0 },
        default: LONG_MAX,
        doc: "Bytes/s of throttled follower fetches. Accepted and kept so kafka-reassign-partitions can set and clear it; Rill does not throttle replication.",
    },
    ConfigKey {
        name: "leader.replication.throttled.rate",
        broker_name: "leader.replication.throttled.rate",
        kind: Kind::Long { min: 0 },
        default: LONG_MAX,
        doc: "Bytes/s of throttled leader reads for followers. Accepted and kept so kafka-reassign-partitions can set and clear it; Rill does not throttle replication.",
    },
    ConfigKey {
        name: "replica.alter.log.dirs.io.max.bytes.per.second",
        broker_name: "replica.alter.log.dirs.io.max.bytes.per.second",
        kind: Kind::Long { min: 0 },
        default: LONG_MAX,
        doc: "Bytes/s of moves between log dirs. Accepted and kept so kafka-reassign-partitions can set and clear it; Rill has one log dir, so nothing moves between dirs.",
    },
];
