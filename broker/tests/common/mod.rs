//! Shared harness for the broker's integration tests: starts the real `rill` binary on a
//! free loopback port in a fresh directory, stops it (SIGTERM or SIGKILL), restarts it on the
//! same directory and port, and builds real clients against it (rdkafka, and `rill_net`'s raw
//! protocol client for what rdkafka cannot send).
//!
//! Every wait is bounded and fails the test with a message saying what did not happen. The
//! broker's stderr goes to one file per start in the test directory; when a test panics, the
//! tail of each is printed and the directory is kept (its path is printed).
//!
//! Test data lives under `$RILL_TEST_DIR` when set (CI points it at the real disk: the
//! storage uses O_DIRECT, which tmpfs refuses), else the system temp dir.

#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod cluster;
pub mod groups;
pub mod keyed;
pub mod netns;
pub mod raw;
pub mod txn;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use rill_net::client::{ApiVersions, Connection, ConnectionOptions};
use rill_net::kafka_protocol::messages::ApiKey;
use rill_net::kafka_protocol::protocol::Request as KafkaRequest;

/// How long the broker may take to accept connections after it is spawned. A start takes
/// well under a second; the bound is wide because CI machines are sometimes starved, and a
/// start that stalls still fails here with the broker's log saying which step it was on.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(45);
/// How long the broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one client operation (admin request, delivery, raw round trip).
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each stderr log printed when a test fails.
const TAIL_LINES: usize = 80;

/// What to start the broker with.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// `--shards`.
    pub shards: usize,
    /// Contents of the `--config` TOML file, if any.
    pub config_toml: Option<String>,
    /// Loopback address to listen on (cluster tests give each broker its own).
    pub host: String,
    /// More `rill broker` arguments.
    pub extra_args: Vec<String>,
    /// Network namespace to run the broker in (`ip netns exec`), for cluster tests.
    pub netns: Option<String>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            shards: 2,
            config_toml: None,
            host: "127.0.0.1".to_string(),
            extra_args: Vec::new(),
            netns: None,
        }
    }
}

impl BrokerOptions {
    /// Two shards and the given config file.
    pub fn with_config(toml: &str) -> Self {
        BrokerOptions {
            config_toml: Some(toml.to_string()),
            ..Default::default()
        }
    }
}

/// One `rill broker` process (and its directory, port and logs across restarts).
pub struct Broker {
    child: Option<Child>,
    /// Removed on success; kept (and printed) when the test fails.
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    port: u16,
    options: BrokerOptions,
    /// Number of times the process was spawned; start `n` logs to `stderr-{n}.log`.
    starts: usize,
}

/// The directory test data goes under.
pub fn test_base_dir() -> PathBuf {
    match std::env::var_os("RILL_TEST_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            fs::create_dir_all(&dir).expect("create $RILL_TEST_DIR");
            dir
        }
        _ => std::env::temp_dir(),
    }
}

/// Whether something listens on `addr`. A connection to a loopback port nobody listens on
/// can connect to itself (Linux picks the same ephemeral port as its source: TCP
/// simultaneous open), which once made a broker look ready before it listened and its
/// first client got "connection refused" (seen in CI); such a connection does not count.
pub fn accepts(addr: SocketAddr, timeout: Duration) -> bool {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s.local_addr().ok() != s.peer_addr().ok(),
        Err(_) => false,
    }
}

/// A loopback port nothing listens on right now.
/// A port no listener holds now and that this test process has not handed out before: the
/// kernel may give the same ephemeral port to two calls in a row once the probe is closed,
/// and a cluster whose raft port equals one broker's Kafka port fails to start (seen in CI).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
        }
    }
    panic!("no ephemeral port that this test process has not used yet in 1000 tries")
}

impl Broker {
    /// Starts a broker with two shards and no config file, and waits until it accepts
    /// connections.
    pub fn start(name: &str) -> Broker {
        Broker::start_with(name, BrokerOptions::default())
    }

    /// Starts a broker with `options` and waits until it accepts connections.
    pub fn start_with(name: &str, options: BrokerOptions) -> Broker {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("rill-{name}-"))
            .tempdir_in(test_base_dir())
            .expect("create the test directory");
        let root = tmp.path().to_path_buf();
        if let Some(toml) = &options.config_toml {
            fs::write(root.join("rill.toml"), toml).expect("write rill.toml");
        }
        let mut broker = Broker {
            child: None,
            tmp: Some(tmp),
            root,
            port: free_port(),
            options,
            starts: 0,
        };
        broker.spawn_and_wait();
        broker
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.options.host, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        self.bootstrap()
            .parse()
            .expect("the broker host is an IP address")
    }

    /// The broker's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The test's directory (data, config, logs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many times the process was started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// The stderr log of start `n` (1-based).
    pub fn stderr_path(&self, n: usize) -> PathBuf {
        self.root.join(format!("stderr-{n}.log"))
    }

    /// Everything start `n` (1-based) wrote to stderr so far.
    pub fn stderr_of_start(&self, n: usize) -> String {
        fs::read_to_string(self.stderr_path(n)).unwrap_or_default()
    }

    /// The OS process id of the running broker.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// Fails the test (with the log tail) if the broker process has exited.
    pub fn assert_alive(&mut self) {
        let status = match &mut self.child {
            None => panic!("broker is not running (stopped by the test)"),
            Some(child) => child.try_wait().expect("try_wait on the broker"),
        };
        if let Some(status) = status {
            panic!(
                "broker exited unexpectedly with {status}\n{}",
                self.log_tail(self.starts)
            );
        }
    }

    /// SIGSTOP (`stop = true`) or SIGCONT: the process freezes as a paused VM or a long GC
    /// pause would, its sockets open but nothing answered.
    #[allow(dead_code)]
    pub fn pause(&self, stop: bool) {
        let child = self.child.as_ref().expect("pause: broker is not running");
        let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        assert_eq!(
            rc,
            0,
            "signal {sig} to the broker: {}",
            io::Error::last_os_error()
        );
    }

    /// The options this broker was started with.
    #[allow(dead_code)]
    pub fn options(&self) -> &BrokerOptions {
        &self.options
    }

    /// kill -9 of every broker in `brokers` at the same moment (signals first, then each
    /// is reaped), as a power cut of the processes would.
    pub fn kill9_all(brokers: &mut [Broker]) {
        for b in brokers.iter() {
            let child = b
                .child
                .as_ref()
                .expect("kill9_all: a broker is not running");
            // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
            }
        }
        for b in brokers.iter_mut() {
            let mut child = b.child.take().expect("kill9_all: a broker is not running");
            child.wait().expect("reap the killed broker");
            b.wait_port_closed();
        }
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: broker is not running");
        // kill() fails only if the process was already reaped; try_wait covers an early exit.
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "kill9: broker had already exited with {status}\n{}",
                self.log_tail(self.starts)
            );
        }
        child.kill().expect("SIGKILL the broker");
        child.wait().expect("reap the killed broker");
        self.wait_port_closed();
    }

    /// Waits (bounded) until nothing accepts connections on the broker's port. A stopped
    /// broker's listening socket can outlive the reaped process by a few milliseconds (its
    /// io_uring is torn down asynchronously, after kill -9 and even after a clean exit), and
    /// a restart that connected to it would think the new process was already serving.
    fn wait_port_closed(&self) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        while accepts(self.addr(), Duration::from_millis(200)) {
            assert!(
                Instant::now() < deadline,
                "port {} still accepts connections {STOP_TIMEOUT:?} after the broker was killed",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, wait (bounded) and assert a clean exit (code 0).
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("terminate: broker is not running");
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM the broker: {}", io::Error::last_os_error());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait().expect("try_wait on the broker") {
                Some(status) => {
                    assert!(
                        status.success(),
                        "broker exited with {status} after SIGTERM (expected code 0)\n{}",
                        self.log_tail(self.starts)
                    );
                    self.wait_port_closed();
                    return;
                }
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "broker did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed it)\n{}",
                        self.log_tail(self.starts)
                    );
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Changes `--shards` for the next start.
    pub fn set_shards(&mut self, shards: usize) {
        self.options.shards = shards;
    }

    /// Starts the broker again on the same directory, port and options (it must be stopped).
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart: stop the broker first (terminate or kill9)"
        );
        self.spawn_and_wait();
    }

    fn spawn_and_wait(&mut self) {
        self.starts += 1;
        let n = self.starts;
        let log = File::create(self.stderr_path(n)).expect("create the stderr log");
        let log_out = log.try_clone().expect("clone the log handle");
        // `ip netns exec` execs the broker in place: the child's pid is the broker's.
        let mut cmd = match &self.options.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_rill")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_rill")),
        };
        cmd.arg("broker")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--shards")
            .arg(self.options.shards.to_string())
            .args(&self.options.extra_args);
        if self.options.config_toml.is_some() {
            cmd.arg("--config").arg(self.root.join("rill.toml"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_out))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn the rill binary");
        self.child = Some(child);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if accepts(self.addr(), Duration::from_millis(500)) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait on the broker"));
            if let Some(status) = exited {
                self.child = None;
                panic!(
                    "broker (start {n}) exited with {status} before accepting connections on {}\n{}",
                    self.bootstrap(),
                    self.log_tail(n)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "broker (start {n}) did not accept connections on {} within {BOOT_TIMEOUT:?}\n{}",
                    self.bootstrap(),
                    self.log_tail(n)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of start `n`'s stderr, framed for a failure message.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.stderr_of_start(n);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(TAIL_LINES);
        format!(
            "----- broker stderr, start {n} ({}), last {} of {} lines -----\n{}\n----- end of broker stderr -----",
            self.stderr_path(n).display(),
            lines.len() - from,
            lines.len(),
            lines[from..].join("\n")
        )
    }

    /// A producer with `acks` and extra settings.
    pub fn producer(&self, acks: &str, extra: &[(&str, &str)]) -> FutureProducer {
        let mut cfg = client_config(&self.bootstrap());
        cfg.set("acks", acks)
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        cfg.create().expect("create an rdkafka producer")
    }

    /// A consumer for `assign`. librdkafka's assign needs a group.id, but nothing here joins
    /// the group or commits (Rill has no consumer groups yet).
    pub fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        let mut cfg = client_config(&self.bootstrap());
        cfg.set("group.id", "rill-tests-assign-only")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        cfg.create().expect("create an rdkafka consumer")
    }

    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        client_config(&self.bootstrap())
            .create()
            .expect("create an rdkafka admin client")
    }

    /// Creates `topic` with `partitions` and config overrides, asserting success.
    pub fn create_topic(&self, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin = self.admin();
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let results = block_on(admin.create_topics([&new], &admin_options()))
            .unwrap_or_else(|e| panic!("CreateTopics {topic}: request failed: {e}"));
        assert_eq!(results.len(), 1, "CreateTopics {topic}: {results:?}");
        if let Err((name, code)) = &results[0] {
            panic!(
                "CreateTopics {name}: {code:?}\n{}",
                self.log_tail(self.starts)
            );
        }
        self.wait_for_topic(topic, partitions as usize);
    }

    /// Waits (bounded) until Metadata lists `topic` with `partitions` partitions, each led.
    pub fn wait_for_topic(&self, topic: &str, partitions: usize) {
        let consumer = self.consumer(&[]);
        let deadline = Instant::now() + OP_TIMEOUT;
        loop {
            let last = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => match md.topics().iter().find(|t| t.name() == topic) {
                    Some(t) => {
                        let led = t.partitions().iter().filter(|p| p.leader() >= 0).count();
                        if t.error().is_none()
                            && t.partitions().len() == partitions
                            && led == partitions
                        {
                            return;
                        }
                        format!(
                            "error {:?}, {} partitions, {led} with a leader",
                            t.error(),
                            t.partitions().len()
                        )
                    }
                    None => "topic not listed".to_string(),
                },
                Err(e) => format!("metadata request failed: {e}"),
            };
            assert!(
                Instant::now() < deadline,
                "topic {topic} never showed {partitions} led partitions in Metadata: {last}\n{}",
                self.log_tail(self.starts)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// (low, high) watermarks of one partition through rdkafka.
    pub fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        let consumer = self.consumer(&[]);
        consumer
            .fetch_watermarks(topic, partition, OP_TIMEOUT)
            .unwrap_or_else(|e| panic!("fetch_watermarks {topic}/{partition}: {e}"))
    }

    /// A raw-protocol client with versions negotiated.
    pub fn net(&self) -> NetClient {
        NetClient::connect(self.addr())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if let Some(mut child) = self.child.take() {
            if let (true, Ok(Some(status))) = (panicking, child.try_wait()) {
                // Exit 0 here usually means a SIGTERM the test did not send.
                eprintln!(
                    "the broker (start {}) had already exited with {status} when the test failed",
                    self.starts
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if panicking {
            for n in 1..=self.starts {
                eprintln!("{}", self.log_tail(n));
            }
            if let Some(tmp) = self.tmp.take() {
                let kept = tmp.keep();
                eprintln!("test directory kept: {}", kept.display());
            }
        }
    }
}

/// The settings every rdkafka client here shares.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "20000")
        .set("request.timeout.ms", "20000")
        .set("topic.metadata.refresh.interval.ms", "2000");
    cfg
}

/// Admin request options with bounded timeouts.
pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(OP_TIMEOUT))
        .operation_timeout(Some(Duration::from_secs(20)))
}

/// A topic's config value as DescribeConfigs answers it (through rdkafka's admin client).
pub fn rdkafka_topic_config(broker: &Broker, topic: &str, key: &str) -> Option<String> {
    let results = block_on(broker.admin().describe_configs(
        [&rdkafka::admin::ResourceSpecifier::Topic(topic)],
        &admin_options(),
    ))
    .unwrap_or_else(|e| panic!("DescribeConfigs {topic}: {e}"));
    let resource = results
        .into_iter()
        .next()
        .expect("one resource described")
        .unwrap_or_else(|code| panic!("DescribeConfigs {topic}: {code:?}"));
    resource
        .entries
        .into_iter()
        .find(|e| e.name == key)
        .and_then(|e| e.value)
}

/// Runs a future to completion on this thread (rdkafka's futures are resolved by its own
/// background threads, so no runtime is needed).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

/// A record as a consumer saw it, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Timestamp,
}

impl Rec {
    pub fn from_message<M: Message>(m: &M) -> Rec {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        Rec {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| k.to_vec()),
            value: m.payload().map(|v| v.to_vec()),
            headers,
            timestamp: m.timestamp(),
        }
    }
}

/// Assigns `partitions` of `topic` from `offset`.
pub fn assign(consumer: &BaseConsumer, topic: &str, partitions: &[i32], offset: Offset) {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, offset)
            .expect("add partition to the assignment");
    }
    consumer.assign(&tpl).expect("assign");
}

/// Polls until `count` records arrived (failing after `timeout`), then polls briefly more
/// to catch extra records, which fail the test too.
pub fn consume_exactly(consumer: &BaseConsumer, count: usize, timeout: Duration) -> Vec<Rec> {
    let out = consume_at_least(consumer, count, timeout);
    assert_eq!(out.len(), count, "consumed more records than were produced");
    let extra_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < extra_until {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            match m {
                Ok(m) => panic!("an extra record arrived: {:?}", Rec::from_message(&m)),
                Err(e) => panic!("consumer error: {e}"),
            }
        }
    }
    out
}

/// Polls until at least `count` records arrived, failing after `timeout`.
pub fn consume_at_least(consumer: &BaseConsumer, count: usize, timeout: Duration) -> Vec<Rec> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {count} records within {timeout:?}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => out.push(Rec::from_message(&m)),
            Some(Err(e)) => panic!("consumer error after {} records: {e}", out.len()),
        }
    }
    out
}

/// Records by (partition, offset).
pub fn by_position(recs: &[Rec]) -> BTreeMap<(i32, i64), Rec> {
    let mut map = BTreeMap::new();
    for r in recs {
        if let Some(old) = map.insert((r.partition, r.offset), r.clone()) {
            panic!(
                "offset {}/{} consumed twice: {old:?} and {r:?}",
                r.partition, r.offset
            );
        }
    }
    map
}

/// Runs `cmd`, killing it after `timeout`; returns its output or fails the test.
pub fn run_bounded(
    cmd: &mut Command,
    timeout: Duration,
    stdin: Option<&[u8]>,
) -> std::process::Output {
    let what = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("child stdin");
        pipe.write_all(input)
            .unwrap_or_else(|e| panic!("write stdin of {what}: {e}"));
    }
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("child stdout");
    let mut err_pipe = child.stderr.take().expect("child stderr");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_t.join().unwrap_or_default();
            let stderr = err_t.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Lines of `text` containing `needle`, case-insensitively.
pub fn lines_containing(text: &str, needle: &str) -> Vec<String> {
    let needle = needle.to_lowercase();
    BufReader::new(text.as_bytes())
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.to_lowercase().contains(&needle))
        .collect()
}

/// A seed from `$name` if set, else from the clock; printed so a failure can be replayed.
pub fn seed_from_env(name: &str) -> u64 {
    let seed = match std::env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("${name} must be an unsigned integer, got {s:?}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    eprintln!("seed: {seed} (replay with {name}={seed})");
    seed
}

// ---------------------------------------------------------------------------------------
// Raw protocol client.

pub use rill_net::client::BlockingStream;

/// A connected TCP stream with read and write timeouts of `timeout`.
pub fn tcp_connect(addr: SocketAddr, timeout: Duration) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(timeout)).expect("set read timeout");
    s.set_write_timeout(Some(timeout))
        .expect("set write timeout");
    s.set_nodelay(true).expect("set nodelay");
    s
}

/// `rill_net`'s client over a blocking socket, with versions negotiated by ApiVersions.
pub struct NetClient {
    pub conn: Connection<BlockingStream>,
    pub versions: ApiVersions,
}

impl NetClient {
    pub fn connect(addr: SocketAddr) -> NetClient {
        // Right after a kill -9 the dead broker's listening socket can outlive the process
        // for a moment (io_uring tears its ring down asynchronously, and an accept in
        // flight holds the socket), still in the port's SO_REUSEPORT group: a connection
        // hashed to it is reset. Real clients reconnect; so does this one, a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stream = BlockingStream(tcp_connect(addr, OP_TIMEOUT));
            let options = ConnectionOptions {
                client_id: "rill-broker-tests".into(),
                ..Default::default()
            };
            let mut conn = Connection::with_options(stream, options);
            match block_on(conn.api_versions()) {
                Ok(versions) => return NetClient { conn, versions },
                Err(e) if attempt < 20 => {
                    eprintln!("ApiVersions against {addr} failed ({e}); reconnecting");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("ApiVersions against {addr}: {e}"),
            }
        }
    }

    /// The negotiated version of `key` (fails the test if there is none).
    pub fn version(&self, key: ApiKey) -> i16 {
        self.versions
            .version(key)
            .unwrap_or_else(|| panic!("broker and client share no version of {key:?}"))
    }

    /// One round trip at the negotiated version.
    pub fn send<R: KafkaRequest>(&mut self, request: &R) -> R::Response {
        let key = ApiKey::try_from(R::KEY).expect("known api key");
        let version = self.version(key);
        self.send_at(version, request)
    }

    /// One round trip at `version`.
    pub fn send_at<R: KafkaRequest>(&mut self, version: i16, request: &R) -> R::Response {
        let key = ApiKey::try_from(R::KEY).expect("known api key");
        block_on(self.conn.send(version, request))
            .unwrap_or_else(|e| panic!("{key:?} v{version} round trip failed: {e}"))
    }
}

/// A topic name for kafka-protocol requests.
pub fn topic_name(name: &str) -> rill_net::kafka_protocol::messages::TopicName {
    rill_net::kafka_protocol::messages::TopicName(
        rill_net::kafka_protocol::protocol::StrBytes::from_string(name.to_string()),
    )
}

/// One partition of a Fetch response, flattened.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: bytes::Bytes,
}

/// Every partition of a Fetch response, in response order.
pub fn fetched_partitions(
    response: &rill_net::kafka_protocol::messages::FetchResponse,
) -> Vec<FetchedPartition> {
    response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| FetchedPartition {
                topic: t.topic.0.to_string(),
                partition: p.partition_index,
                error_code: p.error_code,
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                records: p.records.clone().unwrap_or_default(),
            })
        })
        .collect()
}

impl NetClient {
    /// A sessionless Fetch of one partition from `offset` (no long poll).
    pub fn fetch_once(&mut self, topic: &str, partition: i32, offset: i64) -> FetchedPartition {
        use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use rill_net::kafka_protocol::messages::FetchRequest;
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(16 << 20)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)])]);
        let response = self.send(&request);
        assert_eq!(
            response.error_code, 0,
            "Fetch {topic}/{partition}: top-level error"
        );
        let mut parts = fetched_partitions(&response);
        assert_eq!(
            parts.len(),
            1,
            "Fetch {topic}/{partition} answered {} partitions",
            parts.len()
        );
        parts.remove(0)
    }

    /// Produces one batch (already encoded) to `topic`/`partition`; returns the partition's
    /// (error code, base offset).
    pub fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        batch: bytes::Bytes,
    ) -> (i16, i64) {
        use rill_net::kafka_protocol::messages::produce_request::{
            PartitionProduceData, TopicProduceData,
        };
        use rill_net::kafka_protocol::messages::ProduceRequest;
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let response = self.send(&request);
        let parts: Vec<_> = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .collect();
        assert_eq!(
            parts.len(),
            1,
            "Produce {topic}/{partition} answered {} partitions: {response:?}",
            parts.len()
        );
        (parts[0].error_code, parts[0].base_offset)
    }

    /// Produces plain records with the given values (one batch); returns (error, base offset).
    pub fn produce_values(&mut self, topic: &str, partition: i32, values: &[&[u8]]) -> (i16, i64) {
        let batch = rill_net::client::encode_record_batch(
            &values
                .iter()
                .map(|v| rill_net::client::ProduceRecord {
                    value: Some(bytes::Bytes::copy_from_slice(v)),
                    timestamp_ms: now_ms(),
                    ..Default::default()
                })
                .collect::<Vec<_>>(),
            &rill_net::client::BatchOptions::default(),
        )
        .expect("encode a record batch");
        self.produce_batch(topic, partition, 1, batch)
    }
}

/// Wall clock, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The compression codec bits (attributes & 7) of every batch in fetched `records`.
pub fn batch_codecs(records: &[u8]) -> Vec<i16> {
    let mut out = Vec::new();
    let mut rest = records;
    while rest.len() >= 61 {
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let total = 12 + len.max(0) as usize;
        if total > rest.len() {
            break;
        }
        out.push(i16::from_be_bytes([rest[21], rest[22]]) & 7);
        rest = &rest[total..];
    }
    out
}

/// The error code inside an rdkafka error, including admin-operation errors.
pub fn error_code(e: &rdkafka::error::KafkaError) -> Option<rdkafka::error::RDKafkaErrorCode> {
    match e {
        rdkafka::error::KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

/// Everything in `partitions` of `topic` from the beginning: exactly `count` records.
pub fn read_all(
    broker: &Broker,
    topic: &str,
    partitions: &[i32],
    count: usize,
) -> BTreeMap<(i32, i64), Rec> {
    let consumer = broker.consumer(&[]);
    assign(&consumer, topic, partitions, Offset::Beginning);
    by_position(&consume_exactly(&consumer, count, Duration::from_secs(45)))
}

/// The storage's per-partition checkpoint file name (`rill_storage::log`).
pub const CHECKPOINT_FILE: &str = "partition.checkpoint";

/// Every partition checkpoint under the data directory, decoded.
pub fn partition_checkpoints(
    data_dir: &Path,
) -> Vec<(PathBuf, rill_storage::checkpoint::Checkpoint)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.map_while(Result::ok) {
            let path = e.path();
            // Internal topics (__consumer_offsets, created when a client looks for a group
            // coordinator) are not the test's partitions.
            let internal = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("__"));
            if path.is_dir() && !internal {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n == CHECKPOINT_FILE) {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(data_dir, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            let cp = rill_storage::checkpoint::Checkpoint::decode(&bytes)
                .unwrap_or_else(|e| panic!("decode {}: {e}", p.display()));
            (p, cp)
        })
        .collect()
}

/// Whether an external client `tool` can be used (`probe` exits 0). If not: fails the test
/// when `CI` is set (CI installs it), otherwise prints a loud notice naming what went
/// unchecked and returns false.
pub fn tool_available(
    tool: &str,
    probe: &mut Command,
    install_hint: &str,
    unchecked: &str,
) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is not installed, and CI is set: install it ({install_hint})");
    }
    eprintln!();
    eprintln!("################################################################");
    eprintln!("## SKIPPED: {tool} is not installed; {unchecked} was NOT checked.");
    eprintln!("## Install it with: {install_hint}");
    eprintln!("################################################################");
    eprintln!();
    false
}

/// Sends `values` to `partition` of `topic` one at a time through `producer`, waiting for
/// each delivery (so they land in this order); panics naming the value that failed.
#[allow(dead_code)]
pub fn produce_in_order(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    values: impl IntoIterator<Item = String>,
) {
    for v in values {
        let f = producer
            .send_result(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(&v),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
        block_on(f)
            .expect("delivery")
            .unwrap_or_else(|(e, _)| panic!("{v}: {e}"));
    }
}

/// (partition, offset, value) of an acknowledged record; with what was found there
/// instead (None: nothing) when it is not read back.
pub type Acked = (i32, i64, String);
pub type NotReadBack = (i32, i64, String, Option<String>);

/// Reads partitions `0..partitions` of `topic` from the start, through `broker`, up to each
/// one's last acknowledged offset (or its end, if that is lower: what lies past the end is
/// lost, and reported rather than waited for); returns the acknowledged records not found
/// at their offset with their value.
#[allow(dead_code)]
pub fn acked_not_read_back(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    acked: &[Acked],
) -> Vec<NotReadBack> {
    let consumer = broker.consumer(&[]);
    let want: Vec<i64> = (0..partitions)
        .map(|p| {
            let last = acked
                .iter()
                .filter(|(q, _, _)| *q == p)
                .map(|(_, o, _)| *o + 1)
                .max()
                .unwrap_or(0);
            // Leaderships may still move while restarted brokers recover: asked again then.
            let (_, high) = wait_until(Duration::from_secs(30), "partition watermarks", || {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .ok()
            });
            last.min(high)
        })
        .collect();
    assign(
        &consumer,
        topic,
        &(0..partitions).collect::<Vec<_>>(),
        Offset::Beginning,
    );
    let mut recs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = vec![0i64; partitions as usize];
    while (0..partitions as usize).any(|p| next[p] < want[p]) {
        assert!(
            Instant::now() < deadline,
            "read up to {next:?} of {want:?} (last acknowledged offsets + 1, or the ends) within 60 s"
        );
        for r in consume_at_least(&consumer, 1, Duration::from_secs(60)) {
            next[r.partition as usize] = next[r.partition as usize].max(r.offset + 1);
            recs.push(r);
        }
    }
    let stored = by_position(&recs);
    acked
        .iter()
        .filter_map(|(p, o, value)| match stored.get(&(*p, *o)) {
            Some(r) if r.value.as_deref() == Some(value.as_bytes()) => None,
            other => Some((
                *p,
                *o,
                value.clone(),
                other.map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"")).into()),
            )),
        })
        .collect()
}

/// Calls `f` every 200 ms until it returns a value; panics saying `what` did not happen
/// within `within`.
#[allow(dead_code)]
pub fn wait_until<T>(within: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until_saying(within, f, || what.to_string())
}

/// [`wait_until`] whose panic message `say` makes when the time is up (what it saw: a log
/// tail, the last answer).
#[allow(dead_code)]
pub fn wait_until_saying<T>(
    within: Duration,
    mut f: impl FnMut() -> Option<T>,
    say: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("{} within {within:?}", say());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs tests/python/kafka_python_reassign.py (partition reassignment through
/// kafka-python's admin client) with `args`, bounded to 60 s; its trimmed output.
#[allow(dead_code)]
pub fn kafka_python_reassign(args: &[&str]) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/kafka_python_reassign.py"
    );
    let out = run_bounded(
        Command::new("python3").arg(path).args(args),
        Duration::from_secs(60),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kafka_python_reassign.py {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().to_string()
}
