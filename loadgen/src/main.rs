//! `rill-loadgen`: command line. Runs a workload (flags override an optional TOML workload
//! file) or compares finished runs. Exit codes: 0 clean run, 1 the run finished but had
//! errors or missing records, 2 the run could not happen (bad workload, unreachable broker).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use rill_loadgen::config::{
    Acks, CompressionCodec, KeyDistribution, Payload, Rate, RecordBytes, Workload,
};
use rill_loadgen::error::LoadgenError;
use rill_loadgen::{compare, report, run};

#[derive(Parser)]
#[command(
    name = "rill-loadgen",
    version,
    about = "Load generator for Kafka-compatible brokers: open-loop producers and consumers, HdrHistogram latency reports",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  rill-loadgen --bootstrap 127.0.0.1:9092 --topic bench --create-topic --partitions 8 \\\n      --record-bytes 1024 --rate 50MB/s --duration 60 --report-dir runs/50mb\n  rill-loadgen --dry-run --record-bytes 100 --duration 5      # the tool's own ceiling\n  rill-loadgen compare runs/a runs/b --out compare.html\n\nExit codes: 0 clean run, 1 finished with errors or missing records, 2 could not run."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload (also what `rill-loadgen [FLAGS]` does).
    Run(Box<RunArgs>),
    /// Print runs side by side and plot their latency curves in one HTML page.
    Compare(CompareArgs),
}

#[derive(Args)]
struct CompareArgs {
    /// Report directories (or their summary.json files).
    #[arg(required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Where to write the HTML plot.
    #[arg(long, default_value = "compare.html")]
    out: PathBuf,
}

/// Every workload field as a flag; see `loadgen/workload.toml` for what each means.
#[derive(Args)]
struct RunArgs {
    /// TOML workload file; flags override its fields.
    #[arg(long, value_name = "FILE")]
    workload: Option<PathBuf>,
    /// Print the effective workload as TOML and exit.
    #[arg(long)]
    print_workload: bool,
    /// Comma-separated host:port list.
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic when created.
    #[arg(long)]
    partitions: Option<i32>,
    /// Create the topic if it does not exist.
    #[arg(long)]
    create_topic: bool,
    #[arg(long)]
    replication_factor: Option<i16>,
    /// Value size: 1024, uniform:100-2000, normal:1024,256.
    #[arg(long, value_name = "SPEC")]
    record_bytes: Option<RecordBytes>,
    /// none, uniform or zipf.
    #[arg(long)]
    key_distribution: Option<KeyDistribution>,
    #[arg(long)]
    key_count: Option<u64>,
    #[arg(long)]
    zipf_exponent: Option<f64>,
    /// random or text.
    #[arg(long)]
    payload: Option<Payload>,
    /// none, gzip, snappy, lz4, zstd.
    #[arg(long)]
    compression: Option<CompressionCodec>,
    /// 0, 1 or all.
    #[arg(long)]
    acks: Option<Acks>,
    #[arg(long)]
    batch_bytes: Option<usize>,
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Produce requests in flight per connection.
    #[arg(long)]
    max_inflight: Option<usize>,
    #[arg(long)]
    buffer_bytes: Option<usize>,
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Measured seconds after the warm-up.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Records to produce in total (without --duration: no time limit).
    #[arg(long, value_name = "N")]
    records: Option<u64>,
    #[arg(long, value_name = "SECONDS")]
    warmup: Option<f64>,
    /// max, records/s (50000, 50k) or bytes/s (100MB/s, 64MiB/s).
    #[arg(long)]
    rate: Option<Rate>,
    #[arg(long)]
    producers: Option<usize>,
    #[arg(long)]
    consumers: Option<usize>,
    /// Consumer group the consumers join (classic protocol, range assignor).
    #[arg(long)]
    group: Option<String>,
    /// Group session timeout (ms).
    #[arg(long)]
    session_timeout_ms: Option<u64>,
    /// Group heartbeat interval (ms).
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Group rebalance timeout (ms).
    #[arg(long)]
    rebalance_timeout_ms: Option<u64>,
    /// Group offset commit interval (ms).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// Executors, one per core (0: every CPU this process may use).
    #[arg(long, visible_alias = "threads")]
    cores: Option<usize>,
    /// Write summary.json, .hgrm files and report.html here.
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    #[arg(long)]
    fetch_max_wait_ms: Option<u64>,
    /// Consumers fetch at read_committed (isolation.level) instead of read_uncommitted.
    #[arg(long)]
    read_committed: bool,
    #[arg(long)]
    fetch_bytes: Option<usize>,
    #[arg(long)]
    partition_fetch_bytes: Option<usize>,
    #[arg(long, value_name = "SECONDS")]
    drain_timeout: Option<f64>,
    #[arg(long)]
    interval_ms: Option<u64>,
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// Generate and encode without sending: the tool's own records/s and MB/s ceiling.
    #[arg(long)]
    dry_run: bool,
    /// First reconnect wait after a lost connection (doubles per attempt).
    #[arg(long)]
    reconnect_backoff_ms: Option<u64>,
    /// Longest reconnect wait.
    #[arg(long)]
    reconnect_backoff_max_ms: Option<u64>,
    /// Fail the run if a broker stays unreachable this long after a loss.
    #[arg(long)]
    reconnect_timeout_ms: Option<u64>,
    /// Find the highest sustained rate: fixed-rate steps of warmup + duration each.
    #[arg(long)]
    find_saturation: bool,
    /// First step as a fraction of the closed-loop probe's rate.
    #[arg(long)]
    saturation_start: Option<f64>,
    /// Rate factor between passing steps.
    #[arg(long)]
    saturation_growth: Option<f64>,
    /// A step must acknowledge at least (1 - this) of its target.
    #[arg(long)]
    saturation_tolerance: Option<f64>,
    /// A step's ack p99 bound in ms (0: none).
    #[arg(long)]
    saturation_p99_ms: Option<f64>,
    /// Stop when passing and failing rates are within this fraction.
    #[arg(long)]
    saturation_resolution: Option<f64>,
    #[arg(long)]
    saturation_steps_max: Option<usize>,
}

impl RunArgs {
    fn workload(self) -> Result<Workload, LoadgenError> {
        let mut w = match &self.workload {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| LoadgenError::Report {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Workload::from_toml(&text)?
            }
            None => Workload::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => {
                $( if let Some(v) = self.$field { w.$field = v; } )*
            };
        }
        set!(
            bootstrap,
            topic,
            partitions,
            replication_factor,
            record_bytes,
            key_distribution,
            key_count,
            zipf_exponent,
            payload,
            compression,
            acks,
            batch_bytes,
            linger_ms,
            max_inflight,
            buffer_bytes,
            request_timeout_ms,
            warmup,
            rate,
            producers,
            consumers,
            session_timeout_ms,
            heartbeat_interval_ms,
            rebalance_timeout_ms,
            commit_interval_ms,
            cores,
            fetch_max_wait_ms,
            fetch_bytes,
            partition_fetch_bytes,
            drain_timeout,
            interval_ms,
            connect_timeout_ms,
            reconnect_backoff_ms,
            reconnect_backoff_max_ms,
            reconnect_timeout_ms,
            saturation_start,
            saturation_growth,
            saturation_tolerance,
            saturation_p99_ms,
            saturation_resolution,
            saturation_steps_max
        );
        if let Some(n) = self.records {
            w.records = n;
            if self.duration.is_none() {
                w.duration = 0.0;
            }
        }
        if let Some(d) = self.duration {
            w.duration = d;
        }
        if self.group.is_some() {
            w.group = self.group;
        }
        if self.report_dir.is_some() {
            w.report_dir = self.report_dir;
        }
        w.create_topic |= self.create_topic;
        w.read_committed |= self.read_committed;
        w.dry_run |= self.dry_run;
        w.find_saturation |= self.find_saturation;
        Ok(w)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Compare(args)) => compare_cmd(args),
        Some(Command::Run(args)) => run_cmd(*args),
        None => run_cmd(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rill-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn compare_cmd(args: CompareArgs) -> Result<ExitCode, LoadgenError> {
    let table = compare::compare(&args.runs, &args.out)?;
    print!("{table}");
    eprintln!("plot: {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn run_cmd(args: RunArgs) -> Result<ExitCode, LoadgenError> {
    let print = args.print_workload;
    let w = args.workload()?;
    if print {
        let text = toml::to_string(&w).map_err(|e| LoadgenError::Report {
            path: PathBuf::from("(stdout)"),
            reason: e.to_string(),
        })?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Arc::new(AtomicBool::new(false));
    // First Ctrl-C: stop producing and drain; a second one exits at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let report_dir = w.report_dir.clone();
    let mut stderr = std::io::stderr();
    let out = if w.find_saturation {
        run::run_saturation(w, stop, &mut stderr)?
    } else {
        run::run(w, stop, &mut stderr)?
    };
    print!("{}", report::render_table(&out.summary));
    let _ = std::io::stdout().flush();
    if let Some(dir) = report_dir {
        let files = report::write_dir(&dir, &out.summary, &out.ack, &out.e2e, &out.interval_log)?;
        for f in files {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(if out.summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
