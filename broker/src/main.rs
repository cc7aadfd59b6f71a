//! `rill`: the Rill broker binary.
//!
//! `rill broker` starts a Kafka-compatible broker: one glommio executor (shard) per core,
//! each owning a share of the partitions and serving its own connections. Alone it is a
//! cluster of one; with `--controller-quorum` it is one broker of a cluster whose metadata
//! a raft group keeps. The other subcommands (`rill topic`, `config`, `produce`, `consume`,
//! `group`, `cluster`) are Kafka clients ([`cli`]).
//!
//! Layout (each room uses only the ones after it):
//! - [`boot`]: starts and stops a broker; the only room that knows all the others;
//! - [`server`]: the Kafka listener and its connections, the metrics endpoint;
//! - [`handlers`]: one file per Kafka API family, decode → work → response;
//! - [`group`]: the consumer group coordinators;
//! - [`txn`]: transactions (so far the transaction coordinator's record formats);
//! - [`coordinator_wire`]: Kafka's coordinator record encodings, shared by `group` and
//!   `txn`;
//! - [`replica`]: followers fetching partition data from their leaders;
//! - [`shard`]: a core's partitions, routing between shards, the metadata authority as
//!   handlers see it, the periodic tasks;
//! - [`partition`]: one partition's log, replication state and producers;
//! - [`metadata`]: the image every shard reads; the registry and raft authorities;
//! - [`runtime`]: the glommio wrappers (the only room that names glommio), [`fifo`],
//!   [`config`] (with the topic configs), [`errors`], [`metrics`]: leaves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing::error;

mod boot;
mod cli;
mod config;
mod coordinator_wire;
mod errors;
mod fifo;
mod group;
mod handlers;
mod metadata;
mod metrics;
mod partition;
mod replica;
mod runtime;
mod server;
mod shard;
mod txn;

use config::BrokerConfig;

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "Rill: a Kafka-compatible event streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (single node).
    Broker(BrokerArgs),
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(cli::TopicCmd),
    /// Read and change topic and broker configs.
    #[command(subcommand)]
    Config(cli::ConfigCmd),
    /// Produce lines from stdin as records.
    Produce(cli::ProduceArgs),
    /// Print records of a topic.
    Consume(cli::ConsumeArgs),
    /// List, describe (with lag), reset offsets of and delete consumer groups.
    #[command(subcommand)]
    Group(cli::GroupCmd),
    /// Cluster id, controller and brokers.
    #[command(subcommand)]
    Cluster(cli::ClusterCmd),
    /// List and describe transactions; abort one left open in a partition.
    #[command(subcommand)]
    Txn(cli::TxnCmd),
}

#[derive(Args)]
struct BrokerArgs {
    /// TOML config file (every field optional; see deploy/rill.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory [default: ./rill-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9092].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// HOST:PORT clients are told to connect to [default: the listen address].
    #[arg(long)]
    advertise: Option<String>,
    /// Shards (executors, one per core) [default: one per available core].
    #[arg(long)]
    shards: Option<usize>,
    /// Prometheus metrics address (GET /metrics) [default: 127.0.0.1:9644]; "" turns it off.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// This broker's id (cluster mode: its raft node id, 1 or more).
    #[arg(long)]
    node_id: Option<i32>,
    /// Cluster mode: the metadata raft voters, ID@HOST:PORT,... (1, 3 or 5).
    #[arg(long)]
    controller_quorum: Option<String>,
    /// Cluster mode, a broker not in the quorum: HOST:PORT it listens on for raft
    /// traffic as a learner that joins the running cluster.
    #[arg(long)]
    raft_listen: Option<String>,
    /// This broker's rack.
    #[arg(long)]
    rack: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = match cli.command {
        Command::Broker(args) => return run_broker(args),
        Command::Topic(cmd) => cli::topic(cmd),
        Command::Config(cmd) => cli::config(cmd),
        Command::Produce(args) => cli::produce(args),
        Command::Consume(args) => cli::consume(args),
        Command::Cluster(cmd) => cli::cluster(cmd),
        Command::Group(cmd) => cli::group(cmd),
        Command::Txn(cmd) => cli::txn(cmd),
    };
    match client {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_broker(args: BrokerArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match broker(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("rill broker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// When something aborts the process (glibc's heap checks, a failed allocation), print a
/// backtrace to stderr first, so the log says where. Diagnostics only: the process is
/// about to die either way.
fn print_backtrace_on_abort() {
    // SAFETY: the handler runs on the aborting thread just before the process dies. Taking
    // a backtrace and writing to stderr are not async-signal-safe; the worst outcome is a
    // lost or garbled diagnostic, never a changed result, since abort() ends the process
    // once the handler returns.
    let registered = unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGABRT, || {
            eprintln!(
                "rill: aborting; backtrace of the aborting thread:\n{}",
                std::backtrace::Backtrace::force_capture()
            );
        })
    };
    if let Err(e) = registered {
        tracing::warn!(error = %e, "cannot install the abort diagnostics handler");
    }
}

fn broker(args: BrokerArgs) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load(path).map_err(|e| e.to_string())?,
        None => BrokerConfig::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(a) = args.advertise {
        config.advertise = a;
    }
    if let Some(n) = args.shards {
        config.shards = n;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = m;
    }
    if let Some(n) = args.node_id {
        config.node_id = n;
    }
    if let Some(q) = args.controller_quorum {
        config.controller_quorum = q;
    }
    if let Some(r) = args.raft_listen {
        config.raft_listen = r;
    }
    if let Some(r) = args.rack {
        config.rack = r;
    }
    if config.shards == 0 {
        config.shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    config.validate().map_err(|e| e.to_string())?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    print_backtrace_on_abort();
    boot::run(config)
}
