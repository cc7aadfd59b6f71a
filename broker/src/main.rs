//! `rill`: the Rill broker binary.
//!
//! `rill broker` starts a single-node, Kafka-compatible broker: one glommio executor (shard)
//! per core, each owning a share of the partitions and serving its own connections
//! ([`runtime`]). Requests are decoded by `rill-net`, handled in [`handlers`] and [`fetch`],
//! and reach partitions on their owner shard ([`shard`]); topics and their configs live in
//! the registry kept by shard 0 ([`metadata`], [`topic_config`]). Consumer groups are
//! coordinated by the shard owning their `__consumer_offsets` partition ([`group`], with
//! the request side in [`groups`]); idempotent producer state is in [`producer`] and the
//! Prometheus endpoint in [`metrics`]. With `--controller-quorum` the broker is one of a
//! cluster: [`cluster`] runs its metadata raft member, [`replica`] copies partition data
//! from leaders to followers, and [`reassign`] moves partitions and decommissions brokers.
//! The other subcommands (`rill topic`, `config`,
//! `produce`, `consume`, `group`, `cluster`) are Kafka clients ([`cli`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tracing::{error, info};

mod cli;
mod cluster;
mod config;
mod consumer_group;
mod errors;
mod fetch;
mod group;
mod groups;
mod handlers;
mod metadata;
mod metrics;
mod producer;
mod reassign;
mod replica;
mod runtime;
mod shard;
mod topic_config;

use config::BrokerConfig;
use metadata::{RegistryFile, Snapshot};

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
    let meta_dir = config.data_dir.join("meta");
    std::fs::create_dir_all(&meta_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}; check the path and its permissions",
            meta_dir.display()
        )
    })?;
    // One broker per data directory: a second one would corrupt the logs.
    let lock_path = meta_dir.join("lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        format!(
            "data directory {} is in use by another rill broker; stop it or pick another --data-dir",
            config.data_dir.display()
        )
    })?;
    let leftovers = rill_storage::reaper::reap_leftovers(&config.data_dir);
    if leftovers > 0 {
        info!(
            entries = leftovers,
            "removing partition directories deleted before the last stop"
        );
    }
    let registry = RegistryFile::load(&config.data_dir)?;
    refuse_single_node_data_in_cluster_mode(&config, &registry)?;
    let snapshot = Snapshot::build(0, &registry, &config.topic_default_strings())?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        cluster_id = %registry.cluster_id,
        topics = registry.topics.len(),
        shards = config.shards,
        "starting rill broker"
    );
    print_backtrace_on_abort();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    let cluster = cluster::Cluster::start(&config)?;
    let result = runtime::run(config, registry, snapshot, stop, cluster.clone());
    if let Some(c) = &cluster {
        c.stop();
    }
    result?;
    info!("rill broker stopped cleanly");
    drop(lock);
    Ok(())
}

/// A data directory a single-node broker used holds topics the cluster does not know; in
/// cluster mode the broker follows the cluster's topics and would drop them. Refuse.
fn refuse_single_node_data_in_cluster_mode(
    config: &config::BrokerConfig,
    registry: &RegistryFile,
) -> Result<(), String> {
    if config.controller_quorum.trim().is_empty()
        || registry.topics.is_empty()
        || cluster::has_metadata(&config.data_dir)
    {
        return Ok(());
    }
    let names: Vec<&str> = registry
        .topics
        .iter()
        .map(|t| t.name.as_str())
        .take(5)
        .collect();
    Err(format!(
        "data directory {} holds {} topic(s) of a single-node broker ({}{}); in cluster mode the \
         broker serves the cluster's topics and would delete these. Start it without \
         --controller-quorum to keep serving them, or give the cluster broker an empty --data-dir \
         (importing a single node's topics into a cluster is not supported)",
        config.data_dir.display(),
        registry.topics.len(),
        names.join(", "),
        if registry.topics.len() > names.len() {
            ", ..."
        } else {
            ""
        }
    ))
}
