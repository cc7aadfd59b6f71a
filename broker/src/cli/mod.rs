//! `rill` admin and data subcommands: topics, configs, produce, consume, cluster info. They
//! speak only the Kafka protocol (through `rill-net`), so they work against any
//! Kafka-compatible broker, not only Rill. Human tables by default, `--output json` for
//! scripts; exit codes: 0 ok, 1 the broker refused (Kafka error), 2 bad usage, 3 no broker
//! reachable, 4 protocol or I/O failure.

mod admin;
pub mod client;
mod data;
mod group;
mod member;
mod txn;

use clap::{Args, Subcommand, ValueEnum};

pub use client::CliError;

/// Flags every client subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Broker to talk to (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long = "replication-factor", default_value_t = 1)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE (repeatable), e.g. retention.ms=300000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List topics (internal ones such as __consumer_offsets with --include-internal).
    List {
        #[arg(long)]
        include_internal: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Partitions, leaders, replicas, ISR, offsets and configs of a topic.
    Describe {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Change a topic: grow its partition count.
    Alter {
        name: String,
        #[arg(long)]
        partitions: i32,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Topic,
    Broker,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Show the configs of a topic or broker.
    Get {
        resource: Resource,
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Set configs: KEY=VALUE ...
    Set {
        resource: Resource,
        name: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Remove config overrides (back to the default): KEY ...
    Delete {
        resource: Resource,
        name: String,
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line into KEY<SEP>VALUE at the first SEP.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// A header on every record, KEY=VALUE (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Send every record to this partition (default: by key hash, else round robin).
    #[arg(long)]
    pub partition: Option<i32>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The value only.
    Value,
    /// KEY<TAB>VALUE.
    Kv,
    /// One JSON object per record (partition, offset, timestamp, key, value, headers).
    Json,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Start at each partition's first record.
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (with --partition, or on every partition).
    #[arg(long)]
    pub offset: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Stop after this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Stop after this long without a new record (default: keep waiting).
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Value)]
    pub format: Format,
    /// Consume as a member of this consumer group: partitions are shared with the other
    /// members and reading resumes from the group's committed offsets.
    #[arg(long)]
    pub group: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// List consumer groups and their states.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Members, assignments, committed offsets and lag of a group.
    Describe {
        group: String,
        #[command(flatten)]
        common: Common,
    },
    /// Move a group's committed offsets on a topic (the group must have no members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        to_earliest: bool,
        #[arg(long)]
        to_latest: bool,
        #[arg(long)]
        to_offset: Option<i64>,
        /// Show the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum TxnCmd {
    /// Transactional ids, their coordinators, producer ids and states.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// One transactional id: producer id and epoch, state, timeout, partitions.
    Describe {
        transactional_id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Abort a transaction left open in a partition (hanging: no coordinator will end it),
    /// found by the offset it starts at (kafka-transactions find-hanging shows it).
    Abort {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        #[arg(long)]
        start_offset: i64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Cluster id, controller, brokers, topic and partition counts.
    Info {
        #[command(flatten)]
        common: Common,
    },
    /// Decommission a broker: move every replica it holds to other brokers, then remove
    /// it from the cluster. Returns once started; `rill cluster reassignments` shows the
    /// moves, and the broker leaves `rill cluster info` when done.
    Decommission {
        /// The broker's node id.
        #[arg(long)]
        id: i32,
        #[command(flatten)]
        common: Common,
    },
    /// Partition moves in progress (reassignments and decommissions).
    Reassignments {
        #[command(flatten)]
        common: Common,
    },
    /// Move one partition to the given replicas (the first is the preferred leader).
    Reassign {
        topic: String,
        #[arg(long)]
        partition: i32,
        /// Comma-separated broker ids, e.g. 4,2,3.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<i32>,
        #[command(flatten)]
        common: Common,
    },
}

pub fn topic(cmd: TopicCmd) -> Result<(), CliError> {
    admin::topic(cmd)
}

pub fn config(cmd: ConfigCmd) -> Result<(), CliError> {
    admin::config(cmd)
}

pub fn cluster(cmd: ClusterCmd) -> Result<(), CliError> {
    admin::cluster(cmd)
}

pub fn group(cmd: GroupCmd) -> Result<(), CliError> {
    group::group(cmd)
}

pub fn txn(cmd: TxnCmd) -> Result<(), CliError> {
    txn::txn(cmd)
}

pub fn produce(args: ProduceArgs) -> Result<(), CliError> {
    data::produce(args)
}

pub fn consume(args: ConsumeArgs) -> Result<(), CliError> {
    data::consume(args)
}

/// Splits KEY=VALUE.
fn pair(s: &str) -> Result<(String, String), CliError> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| CliError::Usage(format!("`{s}` is not KEY=VALUE")))
}

/// Left-aligned columns under a header row.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "PARTITIONS"],
            &[
                vec!["orders".into(), "3".into()],
                vec!["a".into(), "12".into()],
            ],
        );
        assert_eq!(t, "NAME    PARTITIONS\norders  3\na       12\n");
    }

    #[test]
    fn pairs_need_a_key_and_an_equals_sign() {
        assert_eq!(
            pair("retention.ms=5").unwrap(),
            ("retention.ms".into(), "5".into())
        );
        assert_eq!(pair("a==b").unwrap(), ("a".into(), "=b".into()));
        assert!(pair("novalue").is_err());
        assert!(pair("=5").is_err());
    }
}
