//! The client matrix's harness, included by each `client_*.rs` beside `mod common;` as
//! `#[path = "common/clients.rs"] mod clients;`. A client program (Java, Go, Node, Python) runs
//! as one long-lived process per test and takes commands on stdin, one per line, arguments
//! separated by tabs; it answers each with its output lines, then `@@exit CODE`. `@@err LINE` is a line
//! the command wrote to stderr (Kafka's CLI tools), `@@pause LABEL` says the command waits for
//! one stdin line, so the test can look at the broker in the middle of a scenario.
//!
//! Every client program implements the same scenario commands with the same output lines
//! (`produce`, `consume`, `group`, `admin-*`; see `tests/clients/java/.../Scenarios.java`),
//! so the checks here are shared: each test file names its client and calls them. The checks
//! assert what the broker and rdkafka see (record contents, stored codecs, offsets, group
//! members, committed offsets), not only what the client printed.
//!
//! Every wait is bounded; a failure prints the command, its output and the tail of the
//! client's own stderr.

#![allow(dead_code)] // each client test uses its own part

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::common::groups::{committed_offsets, consumer_group_describe, describe_group};
use crate::common::{batch_codecs, block_on, read_all, tool_available, Broker};

/// How long a client process may take to start (a JVM loading Kafka's jars, node, python).
pub const CLIENT_BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one scenario command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(150);
/// Lines of a client's own stderr shown when a check fails.
const STDERR_TAIL_LINES: usize = 60;

/// The codecs every client produces with, and their RecordBatch attribute bits.
pub const CODECS: [(&str, i16); 5] = [
    ("none", 0),
    ("gzip", 1),
    ("snappy", 2),
    ("lz4", 3),
    ("zstd", 4),
];

/// `broker/tests/clients/`.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The value a client's `produce` command writes for record `i` (compressible, so no client
/// falls back to sending it uncompressed).
pub fn produced_value(label: &str, i: usize) -> String {
    format!("{label}-v-{i};").repeat(4)
}

/// What one command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub command: String,
    pub code: i32,
    pub stdout: Vec<String>,
    /// Lines the command wrote to its stderr (`@@err`; Kafka's tools only).
    pub stderr: Vec<String>,
    /// The tail of the client process's own stderr (logs) when the command ended.
    pub process_stderr: String,
}

impl Output {
    /// Everything, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "command: {}\nexit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- client process stderr (tail) ---\n{}",
            self.command,
            self.code,
            self.stdout.join("\n"),
            self.stderr.join("\n"),
            self.process_stderr
        )
    }

    /// Fails the test unless the command exited 0.
    pub fn ok(self) -> Output {
        assert_eq!(self.code, 0, "client command failed\n{}", self.report());
        self
    }

    /// The whitespace-split words after `prefix` of every stdout line starting with
    /// `prefix` followed by a space.
    pub fn lines(&self, prefix: &str) -> Vec<Vec<String>> {
        let p = format!("{prefix} ");
        self.stdout
            .iter()
            .filter_map(|l| l.strip_prefix(&p))
            .map(|rest| rest.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    /// The single line starting with `prefix`, split.
    pub fn line(&self, prefix: &str) -> Vec<String> {
        let mut l = self.lines(prefix);
        assert_eq!(
            l.len(),
            1,
            "expected one `{prefix}` line\n{}",
            self.report()
        );
        l.remove(0)
    }

    /// The `rec P OFFSET KEY VALUE HEADERS` lines, by position.
    pub fn records(&self) -> BTreeMap<(i32, i64), ClientRec> {
        let mut out = BTreeMap::new();
        for w in self.lines("rec") {
            assert_eq!(w.len(), 5, "malformed rec line {w:?}\n{}", self.report());
            let rec = ClientRec {
                key: (w[2] != "-").then(|| w[2].clone()),
                value: (w[3] != "-").then(|| w[3].clone()),
                headers: if w[4] == "-" {
                    Vec::new()
                } else {
                    w[4].split(';')
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                            (k.to_string(), v.to_string())
                        })
                        .collect()
                },
            };
            let pos = (parse(&w[0]), parse(&w[1]));
            if let Some(old) = out.insert(pos, rec) {
                panic!("{pos:?} printed twice (first {old:?})\n{}", self.report());
            }
        }
        out
    }

    /// Whether stdout or stderr has a line containing `needle` (case-insensitive).
    pub fn mentions(&self, needle: &str) -> bool {
        let n = needle.to_lowercase();
        self.stdout
            .iter()
            .chain(&self.stderr)
            .any(|l| l.to_lowercase().contains(&n))
    }
}

/// A record as a client printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRec {
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// Parses a number a client printed.
pub fn parse<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse()
        .unwrap_or_else(|e| panic!("not a number: {s:?} ({e:?})"))
}

enum Event {
    Line(String),
    Pause(String),
    Exit(i32),
}

/// One client program, running, taking commands.
pub struct ClientProc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl ClientProc {
    /// Spawns `cmd` and waits (bounded) for its `@@ready` line.
    pub fn spawn(name: &str, mut cmd: Command) -> ClientProc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({what}): {e}"));
        let stdin = child.stdin.take().expect("client stdin");
        let stdout = child.stdout.take().expect("client stdout");
        let mut err_pipe = child.stderr.take().expect("client stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match err_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink
                        .lock()
                        .expect("stderr lock")
                        .extend_from_slice(&buf[..n]),
                }
            }
        });
        let mut proc = ClientProc {
            name: name.to_string(),
            child,
            stdin,
            lines,
            stderr,
        };
        let deadline = Instant::now() + CLIENT_BOOT_TIMEOUT;
        loop {
            match proc.next_line(deadline) {
                Some(l) if l == "@@ready" => return proc,
                Some(_) => {}
                None => panic!(
                    "{name} did not start within {CLIENT_BOOT_TIMEOUT:?} ({what})\n{}",
                    proc.stderr_tail()
                ),
            }
        }
    }

    /// The last lines the client wrote to its stderr.
    pub fn stderr_tail(&self) -> String {
        let bytes = self.stderr.lock().expect("stderr lock").clone();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(STDERR_TAIL_LINES);
        lines[from..].join("\n")
    }

    /// Everything the client wrote to its stderr so far.
    pub fn stderr_all(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                panic!("{} exited ({status:?})\n{}", self.name, self.stderr_tail())
            }
        }
    }

    fn next_event(&mut self, deadline: Instant, command: &str) -> Event {
        let Some(line) = self.next_line(deadline) else {
            panic!(
                "{}: `{command}` did not finish in time\n--- client stderr ---\n{}",
                self.name,
                self.stderr_tail()
            );
        };
        if let Some(code) = line.strip_prefix("@@exit ") {
            Event::Exit(parse(code))
        } else if let Some(label) = line.strip_prefix("@@pause ") {
            Event::Pause(label.to_string())
        } else {
            Event::Line(line)
        }
    }

    /// Sends a line (a command, or the go-on after a pause).
    fn send_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|_| self.stdin.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: write a command: {e}\n{}",
                    self.name,
                    self.stderr_tail()
                )
            });
    }

    /// Starts a command that runs until the client is killed (dropped): no wait for its end.
    pub fn start(&mut self, args: &[&str]) {
        for a in args {
            assert!(
                !a.contains('\t') && !a.contains('\n'),
                "argument {a:?} has a tab or newline"
            );
        }
        self.send_line(&args.join("\t"));
    }

    /// The lines the client writes until one contains `needle` (that one included), within
    /// `timeout`; `Err` with the lines read when it does not come in time.
    pub fn wait_for(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(l) = self.next_line(deadline) {
            let found = l.contains(needle);
            seen.push(l);
            if found {
                return Ok(seen);
            }
        }
        Err(seen)
    }

    /// Runs one command (no pauses allowed) within `timeout`.
    pub fn run(&mut self, args: &[&str], timeout: Duration) -> Output {
        self.run_pausing(args, timeout, |label, _| panic!("unexpected pause {label}"))
    }

    /// Runs one command within `timeout`; at each `@@pause LABEL` calls `on_pause(LABEL,
    /// output so far)` and then lets the command go on.
    pub fn run_pausing(
        &mut self,
        args: &[&str],
        timeout: Duration,
        mut on_pause: impl FnMut(&str, &[String]),
    ) -> Output {
        for a in args {
            assert!(
                !a.contains('\t') && !a.contains('\n'),
                "argument {a:?} has a tab or newline"
            );
        }
        let command = args.join(" ");
        self.send_line(&args.join("\t"));
        let deadline = Instant::now() + timeout;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        loop {
            match self.next_event(deadline, &command) {
                Event::Line(l) => match l.strip_prefix("@@err ") {
                    Some(e) => stderr.push(e.to_string()),
                    None => stdout.push(l),
                },
                Event::Pause(label) => {
                    on_pause(&label, &stdout);
                    self.send_line("go");
                }
                Event::Exit(code) => {
                    return Output {
                        command,
                        code,
                        stdout,
                        stderr,
                        process_stderr: self.stderr_tail(),
                    }
                }
            }
        }
    }
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- {} stderr (tail) -----\n{}\n----- end -----",
                self.name,
                self.stderr_tail()
            );
        }
    }
}

/// The client log level asked for with `RILL_CLIENT_LOG` (e.g. `debug`), default `warn`.
pub fn client_log_level() -> String {
    std::env::var("RILL_CLIENT_LOG").unwrap_or_else(|_| "warn".to_string())
}

// ---------------------------------------------------------------------------------------
// Starting each client program.

/// `tests/clients/java`: the Maven project's classes and copied dependencies.
pub fn java_dir() -> PathBuf {
    clients_dir().join("java")
}

/// Whether the Java side is installed (`.ci/run` builds it); see [`tool_available`].
pub fn java_available(unchecked: &str) -> bool {
    let dir = java_dir();
    tool_available(
        "the Java client programs (kafka-clients 4.4.0)",
        Command::new("sh").arg("-c").arg(format!(
            "java -version && test -f {0}/target/lib/kafka-clients-4.4.0.jar && test -f {0}/target/classes/rill/clients/Runner.class",
            dir.display()
        )),
        "mvn -q -f broker/tests/clients/java/pom.xml dependency:copy-dependencies package",
        unchecked,
    )
}

/// The Java runner (one JVM serving every command of a test).
pub fn java_proc(name: &str) -> ClientProc {
    let dir = java_dir();
    let mut cmd = Command::new("java");
    cmd.arg("-Xmx512m")
        .arg("-XX:+UseSerialGC")
        .arg("-XX:TieredStopAtLevel=1")
        .arg(format!(
            "-Dorg.slf4j.simpleLogger.defaultLogLevel={}",
            client_log_level()
        ))
        .arg("-Dorg.slf4j.simpleLogger.showDateTime=true")
        .arg("-cp")
        .arg(format!(
            "{0}/target/classes:{0}/target/lib/*",
            dir.display()
        ))
        .arg("rill.clients.Runner");
    ClientProc::spawn(name, cmd)
}

// ---------------------------------------------------------------------------------------
// Checks every client runs.

/// The answer of a client's transactional produce command (`produce-txn` in Java,
/// `txn-produce` in Go): ten records committed at offsets 0..=9 of partition 0, then ten
/// more aborted.
#[allow(dead_code)]
pub fn check_txn_produce(out: &Output) {
    assert_eq!(
        out.line("committed"),
        vec!["0", "0", "9"],
        "{}",
        out.report()
    );
    assert_eq!(out.line("aborted"), vec!["10"], "{}", out.report());
}

/// The Java client's read_committed consumer of partition 0 of `topic` through
/// `bootstrap` gets exactly `count` records, none of them an aborted one (`produce-txn`
/// writes the value "aborted" in the transactions it aborts).
#[allow(dead_code)]
pub fn check_java_read_committed(
    java: &mut ClientProc,
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) {
    let n = count.to_string();
    let out = java
        .run(
            &[
                "consume",
                bootstrap,
                topic,
                "1",
                &n,
                "isolation.level=read_committed",
            ],
            timeout,
        )
        .ok();
    let recs = out.records();
    assert_eq!(recs.len(), count, "{}", out.report());
    assert!(
        recs.values().all(|r| r.value.as_deref() != Some("aborted")),
        "{}",
        out.report()
    );
}

/// `produce` with every codec, one partition per codec, `count` records each: the client's
/// acknowledged offsets are dense from 0, the broker stored batches with that codec (raw
/// fetch), and rdkafka reads back exactly the records (key, value, headers).
pub fn check_produce_every_codec(
    broker: &Broker,
    client: &mut ClientProc,
    who: &str,
    extra: &[&str],
) {
    let topic = format!("{who}-codecs");
    let count = 50usize;
    broker.create_topic(&topic, CODECS.len() as i32, &[]);
    let b = broker.bootstrap();
    for (p, (codec, _)) in CODECS.iter().enumerate() {
        let p_s = p.to_string();
        let n_s = count.to_string();
        let mut args = vec!["produce", &b, &topic, codec, &p_s, &n_s, codec];
        args.extend_from_slice(extra);
        let out = client.run(&args, COMMAND_TIMEOUT).ok();
        let produced = out.line("produced");
        assert_eq!(
            produced,
            vec![p_s.clone(), "0".to_string(), (count - 1).to_string()],
            "{who} {codec}: acknowledged offsets\n{}",
            out.report()
        );
    }
    let mut net = broker.net();
    for (p, (codec, bits)) in CODECS.iter().enumerate() {
        let fetched = net.fetch_once(&topic, p as i32, 0);
        assert_eq!(fetched.error_code, 0, "{who} {codec}: raw fetch");
        let codecs = batch_codecs(&fetched.records);
        assert!(
            !codecs.is_empty() && codecs.iter().all(|c| c == bits),
            "{who} {codec}: stored batch codecs {codecs:?}, want all {bits}"
        );
        assert_eq!(
            fetched.high_watermark, count as i64,
            "{who} {codec}: high watermark"
        );
    }
    let partitions: Vec<i32> = (0..CODECS.len() as i32).collect();
    let recs = read_all(broker, &topic, &partitions, count * CODECS.len());
    for (p, (codec, _)) in CODECS.iter().enumerate() {
        for i in 0..count {
            let r = &recs[&(p as i32, i as i64)];
            assert_eq!(
                r.key.as_deref(),
                Some(format!("{codec}-k-{i}").as_bytes()),
                "{who} {codec} record {i}: key"
            );
            assert_eq!(
                r.value.as_deref(),
                Some(produced_value(codec, i).as_bytes()),
                "{who} {codec} record {i}: value"
            );
            assert_eq!(
                r.headers,
                vec![
                    ("seq".to_string(), Some(i.to_string().into_bytes())),
                    ("client".to_string(), Some(who.as_bytes().to_vec())),
                ],
                "{who} {codec} record {i}: headers"
            );
        }
    }
}

/// rdkafka produces `count` records per codec (one partition each, keys, values, two
/// headers); the client's `consume` (assign, from the beginning) prints exactly them.
pub fn check_consume_every_codec(broker: &Broker, client: &mut ClientProc, who: &str) {
    check_consume_every_codec_with(broker, client, who, &[])
}

/// [`check_consume_every_codec`] with extra consumer settings (`k=v`) for the client.
pub fn check_consume_every_codec_with(
    broker: &Broker,
    client: &mut ClientProc,
    who: &str,
    extra: &[&str],
) {
    let topic = format!("{who}-consume");
    let count = 40usize;
    broker.create_topic(&topic, CODECS.len() as i32, &[]);
    let mut want = BTreeMap::new();
    for (p, (codec, _)) in CODECS.iter().enumerate() {
        let producer = broker.producer("all", &[("compression.type", codec), ("linger.ms", "20")]);
        let mut futures = Vec::new();
        for i in 0..count {
            let key = format!("rd-{codec}-k-{i}");
            let value = produced_value(&format!("rd-{codec}"), i);
            let seq = i.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "seq",
                    value: Some(seq.as_bytes()),
                })
                .insert(Header {
                    key: "codec",
                    value: Some(codec.as_bytes()),
                });
            let f = producer
                .send_result(
                    FutureRecord::to(&topic)
                        .partition(p as i32)
                        .key(&key)
                        .payload(&value)
                        .headers(headers),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue {key}: {e}"));
            futures.push(f);
            want.insert(
                (p as i32, i as i64),
                ClientRec {
                    key: Some(key),
                    value: Some(value),
                    headers: vec![
                        ("seq".to_string(), seq),
                        ("codec".to_string(), codec.to_string()),
                    ],
                },
            );
        }
        for f in futures {
            match block_on(f) {
                Ok(Ok(_)) => {}
                other => panic!("rdkafka {codec} delivery: {other:?}"),
            }
        }
    }
    let total = count * CODECS.len();
    let b = broker.bootstrap();
    let partitions = CODECS.len().to_string();
    let total_s = total.to_string();
    let mut args = vec!["consume", &b, &topic, &partitions, &total_s];
    args.extend_from_slice(extra);
    let out = client.run(&args, COMMAND_TIMEOUT).ok();
    let got = out.records();
    if got != want {
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !got.contains_key(k))
            .take(5)
            .collect();
        let wrong: Vec<_> = got
            .iter()
            .filter(|(k, v)| want.get(k) != Some(v))
            .take(5)
            .collect();
        panic!(
            "{who} consumed {} records, want {total}; missing {missing:?}; differing {wrong:?}\n{}",
            got.len(),
            out.report()
        );
    }
    for w in out.lines("end") {
        assert_eq!(
            w[1],
            count.to_string(),
            "{who}: end offset of partition {}",
            w[0]
        );
    }
}

/// The `group` scenario: two members split `partitions` (the broker lists both, with
/// disjoint assignments), one leaves and the other takes over (the broker lists one), both
/// gone (the group is empty and its committed offsets are the partitions' ends), then a
/// third member resumes exactly after them. `protocol` is `classic` or `consumer`.
pub fn check_group(broker: &Broker, client: &mut ClientProc, who: &str, protocol: &str) {
    check_group_with_admin(broker, client, who, protocol, None)
}

/// [`check_group`], and while two members share the topic a second process of the same
/// client (`admin`) describes the group with the client's own admin api: two members, the
/// state the broker reports, and each member's partitions where the client decodes them.
pub fn check_group_with_admin(
    broker: &Broker,
    client: &mut ClientProc,
    who: &str,
    protocol: &str,
    mut admin: Option<&mut ClientProc>,
) {
    let topic = format!("{who}-group-{protocol}");
    let group = format!("{who}-group-{protocol}");
    let partitions = 4;
    broker.create_topic(&topic, partitions, &[]);
    let all: BTreeSet<i32> = (0..partitions).collect();
    let mut net = broker.net();
    let mut seen = Vec::new();
    let out = client.run_pausing(
        &[
            "group",
            &broker.bootstrap(),
            &topic,
            &partitions.to_string(),
            &group,
            protocol,
        ],
        Duration::from_secs(240),
        |label, lines| {
            seen.push(label.to_string());
            let members = broker_view(&mut net, &group, &topic, protocol);
            match label {
                "balanced" => {
                    assert_eq!(
                        members.len(),
                        2,
                        "{who}: the broker should list two members: {members:?}\n{}",
                        lines.join("\n")
                    );
                    if let Some(admin) = admin.as_deref_mut() {
                        let out = admin
                            .run(
                                &["admin-describe-group", &broker.bootstrap(), &group],
                                COMMAND_TIMEOUT,
                            )
                            .ok();
                        let w = out.line("group");
                        let field = |name: &str| {
                            w.iter()
                                .position(|x| x == name)
                                .and_then(|i| w.get(i + 1))
                                .map(|v| v.to_lowercase())
                        };
                        assert_eq!(
                            (field("state").as_deref(), field("members").as_deref()),
                            (Some("stable"), Some("2")),
                            "{who}: the admin api's view of the group\n{}",
                            out.report()
                        );
                        let described: BTreeMap<String, BTreeSet<i32>> = out
                            .lines("member")
                            .into_iter()
                            .filter(|m| m[1] != "?")
                            .map(|m| {
                                let parts = m[1]
                                    .split(',')
                                    .filter(|p| *p != "-")
                                    .map(parse)
                                    .collect();
                                (m[0].clone(), parts)
                            })
                            .collect();
                        if !described.is_empty() {
                            assert_eq!(
                                described, members,
                                "{who}: the admin api's assignment differs from the broker's\n{}",
                                out.report()
                            );
                        }
                    }
                    let parts: Vec<&BTreeSet<i32>> = members.values().collect();
                    assert!(
                        parts[0].is_disjoint(parts[1])
                            && parts[0].union(parts[1]).copied().collect::<BTreeSet<_>>() == all,
                        "{who}: the broker's assignment {members:?} does not split the topic"
                    );
                }
                "takeover" => {
                    assert_eq!(
                        members.values().collect::<Vec<_>>(),
                        vec![&all],
                        "{who}: after one member left the broker should list one member with every partition"
                    );
                }
                "empty" => {
                    assert!(members.is_empty(), "{who}: members left: {members:?}");
                    let committed = committed_offsets(&mut net, &group, &topic, partitions);
                    for p in 0..partitions {
                        let (_, high) = broker.watermarks(&topic, p);
                        assert_eq!(
                            committed.get(&p),
                            Some(&high),
                            "{who}: committed offset of {topic}/{p} once both members left"
                        );
                    }
                    // 200 + 100 records were produced round robin before this point.
                    assert_eq!(committed.values().sum::<i64>(), 300, "{committed:?}");
                }
                other => panic!("{who}: unexpected pause {other}"),
            }
        },
    );
    let out = out.ok();
    assert_eq!(seen, ["balanced", "takeover", "empty"], "{}", out.report());
    let consumed: BTreeMap<String, i64> = out
        .lines("member")
        .into_iter()
        .filter(|w| w[1] == "consumed")
        .map(|w| (w[0].clone(), parse(&w[2])))
        .collect();
    let first_two: i64 = consumed
        .iter()
        .filter(|(k, _)| !k.ends_with("m3"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        first_two,
        200,
        "phase one split: {consumed:?}\n{}",
        out.report()
    );
    assert!(
        consumed.values().filter(|&&v| v > 0).count() >= 2,
        "both members should have read records: {consumed:?}"
    );
    let resumed = consumed
        .iter()
        .find(|(k, _)| k.ends_with("m3"))
        .map(|(_, v)| *v);
    assert_eq!(
        resumed,
        Some(20),
        "the third member reads exactly the 20 new records\n{}",
        out.report()
    );
    // The broker's view at the end: the third member left too, offsets at the ends.
    let members = broker_view(&mut net, &group, &topic, protocol);
    assert!(
        members.is_empty(),
        "{who}: members left at the end: {members:?}"
    );
    let committed = committed_offsets(&mut net, &group, &topic, partitions);
    assert_eq!(committed.values().sum::<i64>(), 320, "{committed:?}");
}

/// The group's members (client id -> partitions of `topic`) as the broker describes them.
pub fn broker_view(
    net: &mut crate::common::NetClient,
    group: &str,
    topic: &str,
    protocol: &str,
) -> BTreeMap<String, BTreeSet<i32>> {
    if protocol == "consumer" {
        let d = consumer_group_describe(net, group);
        assert_eq!(d.error_code, 0, "ConsumerGroupDescribe {group}: {d:?}");
        crate::common::groups::described_assignments(&d, topic)
    } else {
        let d = describe_group(net, group);
        assert_eq!(d.error_code, 0, "DescribeGroups {group}: {d:?}");
        d.members
            .iter()
            .map(|m| {
                let parts = crate::common::groups::decode_assignment(&m.member_assignment)
                    .remove(topic)
                    .unwrap_or_default();
                (m.client_id.to_string(), parts)
            })
            .collect()
    }
}

/// Topic admin calls: create (with a config), list, describe, create partitions, describe
/// and alter the topic's configs, delete; each checked against Metadata through rdkafka.
pub fn check_admin_topics(broker: &Broker, client: &mut ClientProc, who: &str) {
    let b = broker.bootstrap();
    let topic = format!("{who}-admin-topic");
    let run = |client: &mut ClientProc, args: &[&str]| client.run(args, COMMAND_TIMEOUT).ok();
    let out = run(
        client,
        &[
            "admin-create-topic",
            &b,
            &topic,
            "2",
            "retention.ms=3600000",
        ],
    );
    assert_eq!(out.line("created"), vec![topic.clone()], "{}", out.report());
    broker.wait_for_topic(&topic, 2);

    let out = run(client, &["admin-list-topics", &b]);
    let topics: Vec<String> = out
        .lines("topic")
        .into_iter()
        .map(|w| w[0].clone())
        .collect();
    assert!(
        topics.contains(&topic),
        "{who}: {topic} not listed\n{}",
        out.report()
    );

    let node = node_id(broker);
    let out = run(client, &["admin-describe-topic", &b, &topic]);
    let parts = out.lines("partition");
    assert_eq!(parts.len(), 2, "{}", out.report());
    for (i, w) in parts.iter().enumerate() {
        assert_eq!(
            w,
            &vec![
                i.to_string(),
                "leader".into(),
                node.to_string(),
                "replicas".into(),
                node.to_string(),
                "isr".into(),
                node.to_string()
            ],
            "{}",
            out.report()
        );
    }

    let out = run(client, &["admin-create-partitions", &b, &topic, "4"]);
    assert_eq!(out.line("partitions"), vec![topic.clone(), "4".to_string()]);
    broker.wait_for_topic(&topic, 4);

    let configs = |client: &mut ClientProc| -> BTreeMap<String, String> {
        let out = run(client, &["admin-describe-configs", &b, "topic", &topic]);
        out.lines("config")
            .into_iter()
            .filter_map(|w| {
                let (k, v) = w[0].split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    };
    let before = configs(client);
    assert_eq!(
        before.get("retention.ms").map(String::as_str),
        Some("3600000"),
        "{who}: described topic configs {before:?}"
    );
    let out = run(
        client,
        &[
            "admin-alter-configs",
            &b,
            "topic",
            &topic,
            "retention.ms=7200000",
        ],
    );
    assert!(
        out.stdout.iter().any(|l| l == "altered"),
        "{}",
        out.report()
    );
    let after = configs(client);
    assert_eq!(
        after.get("retention.ms").map(String::as_str),
        Some("7200000"),
        "{who}: topic configs after the alter {after:?}"
    );
    // rdkafka agrees.
    assert_eq!(
        rdkafka_topic_config(broker, &topic, "retention.ms").as_deref(),
        Some("7200000")
    );

    let out = run(client, &["admin-delete-topic", &b, &topic]);
    assert_eq!(out.line("deleted"), vec![topic.clone()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(client, &["admin-list-topics", &b]);
        if !out.lines("topic").iter().any(|w| w[0] == topic) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{who}: {topic} still listed after delete"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The broker's node id, from Metadata.
pub fn node_id(broker: &Broker) -> i32 {
    use rdkafka::consumer::Consumer;
    let md = broker
        .consumer(&[])
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.brokers().len(), 1, "one broker");
    md.brokers()[0].id()
}

/// One topic config as rdkafka's DescribeConfigs sees it (kept in `common` for the tests
/// that do not run client programs).
pub use crate::common::rdkafka_topic_config;

/// Broker configs: described (with the node id as the resource name).
pub fn check_admin_broker_configs(broker: &Broker, client: &mut ClientProc, who: &str) {
    let node = node_id(broker).to_string();
    let out = client
        .run(
            &[
                "admin-describe-configs",
                &broker.bootstrap(),
                "broker",
                &node,
            ],
            COMMAND_TIMEOUT,
        )
        .ok();
    let keys: BTreeSet<String> = out
        .lines("config")
        .into_iter()
        .filter_map(|w| w[0].split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    assert!(
        keys.len() > 5,
        "{who}: the broker described only {keys:?}\n{}",
        out.report()
    );
}

/// ListOffsets (earliest, latest, by timestamp, max timestamp) and DeleteRecords, checked
/// against rdkafka's watermarks.
pub fn check_admin_offsets(broker: &Broker, client: &mut ClientProc, who: &str) {
    let b = broker.bootstrap();
    let topic = format!("{who}-admin-offsets");
    broker.create_topic(&topic, 1, &[]);
    let producer = broker.producer("all", &[]);
    // Timestamps 1000, 2000, ... 30000, but record 20 has the largest (99000).
    let mut futures = Vec::new();
    for i in 0..30i64 {
        let ts = if i == 20 { 99_000 } else { (i + 1) * 1000 };
        let v = format!("v{i}");
        futures.push(
            producer
                .send_result(
                    FutureRecord::<(), _>::to(&topic)
                        .partition(0)
                        .payload(&v)
                        .timestamp(1_700_000_000_000 + ts),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e}")),
        );
    }
    for f in futures {
        assert!(matches!(block_on(f), Ok(Ok(_))), "rdkafka delivery");
    }
    // (offset, timestamp); a client that does not report the timestamp prints -1.
    let offset = |client: &mut ClientProc, spec: &str| -> Option<(i64, i64)> {
        let out = run_supported(client, &["admin-list-offsets", &b, &topic, "1", spec], who)?;
        let w = out.line("offset");
        assert_eq!(w[0], "0", "{}", out.report());
        Some((parse(&w[1]), parse(&w[2])))
    };
    assert_eq!(
        offset(client, "earliest").map(|o| o.0),
        Some(0),
        "{who}: earliest"
    );
    assert_eq!(
        offset(client, "latest").map(|o| o.0),
        Some(30),
        "{who}: latest"
    );
    // The first record at or after 5500 ms is record 5 (6000 ms).
    let (o, ts) = offset(client, &(1_700_000_000_000i64 + 5500).to_string()).expect("by timestamp");
    assert_eq!(o, 5, "{who}: by timestamp");
    assert!(
        ts == -1 || ts == 1_700_000_006_000,
        "{who}: by timestamp: timestamp {ts}"
    );
    if let Some((o, ts)) = offset(client, "max-timestamp") {
        assert_eq!((o, ts), (20, 1_700_000_099_000), "{who}: max timestamp");
    }

    let out = client
        .run(
            &["admin-delete-records", &b, &topic, "0", "10"],
            COMMAND_TIMEOUT,
        )
        .ok();
    assert_eq!(
        out.line("low-watermark"),
        vec!["0".to_string(), "10".to_string()]
    );
    assert_eq!(
        broker.watermarks(&topic, 0),
        (10, 30),
        "{who}: watermarks after delete"
    );
    assert_eq!(
        offset(client, "earliest").map(|o| o.0),
        Some(10),
        "{who}: earliest after delete"
    );
}

/// Group admin calls on a group with committed offsets and no members: alter offsets
/// (sets them; the broker's OffsetFetch agrees), list groups, describe (Empty, no members),
/// list offsets, delete one partition's offset, delete the group.
pub fn check_admin_groups(broker: &Broker, client: &mut ClientProc, who: &str) {
    let b = broker.bootstrap();
    let topic = format!("{who}-admin-groups");
    let group = format!("{who}-admin-group");
    broker.create_topic(&topic, 2, &[]);
    crate::common::groups::produce_spread(broker, &topic, 2, "g", 20);
    let run = |client: &mut ClientProc, args: &[&str]| client.run(args, COMMAND_TIMEOUT).ok();
    let mut net = broker.net();
    let alter = [
        "admin-alter-group-offsets",
        &b,
        &group,
        &topic,
        "0=3",
        "1=7",
    ];
    if run_supported(client, &alter, who).is_none() {
        // The client cannot set offsets: commit them with the raw protocol (an empty group
        // takes commits from no member, generation -1).
        let codes = crate::common::groups::commit(
            &mut net,
            &group,
            "",
            None,
            -1,
            &topic,
            &[(0, 3), (1, 7)],
        );
        assert!(
            codes.iter().all(|(_, c)| *c == 0),
            "raw OffsetCommit: {codes:?}"
        );
    }
    let committed = committed_offsets(&mut net, &group, &topic, 2);
    assert_eq!(
        committed,
        BTreeMap::from([(0, 3), (1, 7)]),
        "{who}: committed offsets after alter"
    );

    let out = run(client, &["admin-list-groups", &b]);
    let listed = out.lines("group");
    assert!(
        listed.iter().any(|w| w[0] == group),
        "{who}: {group} not listed\n{}",
        out.report()
    );

    let out = run(client, &["admin-describe-group", &b, &group]);
    let w = out.line("group");
    assert_eq!(w[0], group);
    let field = |name: &str| {
        w.iter()
            .position(|x| x == name)
            .and_then(|i| w.get(i + 1))
            .map(|v| v.to_lowercase())
    };
    assert_eq!(
        (field("state").as_deref(), field("members").as_deref()),
        (Some("empty"), Some("0")),
        "{who}: described {w:?}\n{}",
        out.report()
    );

    let out = run(client, &["admin-list-group-offsets", &b, &group]);
    let offs: BTreeSet<Vec<String>> = out.lines("committed").into_iter().collect();
    assert_eq!(
        offs,
        BTreeSet::from([
            vec![topic.clone(), "0".into(), "3".into()],
            vec![topic.clone(), "1".into(), "7".into()],
        ]),
        "{}",
        out.report()
    );

    if run_supported(
        client,
        &["admin-delete-group-offsets", &b, &group, &topic, "0"],
        who,
    )
    .is_some()
    {
        let committed = committed_offsets(&mut net, &group, &topic, 2);
        assert_eq!(
            committed,
            BTreeMap::from([(0, -1), (1, 7)]),
            "{who}: committed offsets after deleting partition 0's"
        );
    }

    if let Some(out) = run_supported(client, &["admin-delete-group", &b, &group], who) {
        assert_eq!(out.line("deleted"), vec![group.clone()]);
        let groups = crate::common::groups::list_groups(&mut net);
        assert!(
            !groups.contains_key(&group),
            "{who}: {group} still listed: {groups:?}"
        );
    }
}

/// DescribeCluster: one node, at the broker's address.
pub fn check_admin_cluster(broker: &Broker, client: &mut ClientProc, who: &str) {
    let out = client
        .run(
            &["admin-describe-cluster", &broker.bootstrap()],
            COMMAND_TIMEOUT,
        )
        .ok();
    let nodes = out.lines("node");
    assert_eq!(
        nodes,
        vec![vec![node_id(broker).to_string(), broker.bootstrap()]],
        "{who}\n{}",
        out.report()
    );
    let c = out.line("cluster");
    assert!(
        !c[0].is_empty() && c[0] != "null",
        "{who}: cluster id {c:?}"
    );
}

/// Runs a command that must succeed, unless the client has no API for it (exit 3): then
/// prints a notice and returns None.
pub fn run_supported(client: &mut ClientProc, args: &[&str], who: &str) -> Option<Output> {
    let out = client.run(args, COMMAND_TIMEOUT);
    if out.code == 3 {
        eprintln!("NOTE: {who} has no API for `{}`: not checked", args[0]);
        return None;
    }
    Some(out.ok())
}

/// Runs one admin command that the broker does not serve yet and asserts it succeeds, so the
/// (ignored) test that calls this fails today with the client's error in the message.
pub fn check_admin_call(client: &mut ClientProc, args: &[&str], expect_prefix: &str) -> Output {
    let out = client.run(args, COMMAND_TIMEOUT).ok();
    assert!(
        !out.lines(expect_prefix).is_empty(),
        "no `{expect_prefix}` line\n{}",
        out.report()
    );
    out
}

/// `tests/clients/go/target/franz`, built by `.ci/run`.
pub fn go_available(unchecked: &str) -> bool {
    tool_available(
        "the franz-go client program",
        Command::new("test")
            .arg("-x")
            .arg(clients_dir().join("go/target/franz")),
        "cd broker/tests/clients/go && go build -o target/franz .",
        unchecked,
    )
}

/// The franz-go program.
pub fn go_proc(name: &str) -> ClientProc {
    let mut cmd = Command::new(clients_dir().join("go/target/franz"));
    cmd.env("RILL_CLIENT_LOG", client_log_level());
    ClientProc::spawn(name, cmd)
}

/// `tests/clients/node` with its `node_modules` (`npm ci` in `.ci/run`).
pub fn node_available(unchecked: &str) -> bool {
    let dir = clients_dir().join("node");
    tool_available(
        "the KafkaJS client program",
        Command::new("sh").arg("-c").arg(format!(
            "node --version && test -d {0}/node_modules/kafkajs && test -d {0}/node_modules/lz4js",
            dir.display()
        )),
        "cd broker/tests/clients/node && npm ci",
        unchecked,
    )
}

/// The KafkaJS program.
pub fn node_proc(name: &str) -> ClientProc {
    let mut cmd = Command::new("node");
    cmd.arg(clients_dir().join("node/client.js"))
        .env("RILL_CLIENT_LOG", client_log_level())
        // KafkaJS warns once per process about its default partitioner; not ours to fix.
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
    ClientProc::spawn(name, cmd)
}

/// Whether `python3` can import `module` (`.ci/run` pip-installs it).
pub fn python_available(module: &str, unchecked: &str) -> bool {
    tool_available(
        module,
        Command::new("python3").args(["-c", &format!("import {module}")]),
        "python3 -m pip install kafka-python aiokafka python-snappy lz4 zstandard",
        unchecked,
    )
}

/// One of the Python programs in `tests/clients/python` (`aiokafka_client.py`,
/// `kafka_python_client.py`).
pub fn python_proc(name: &str, script: &str) -> ClientProc {
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(clients_dir().join("python").join(script))
        .env("RILL_CLIENT_LOG", client_log_level());
    ClientProc::spawn(name, cmd)
}

/// DescribeAcls: Kafka without an authorizer answers SECURITY_DISABLED, which each client
/// reports in its own words; a list of ACLs is fine too.
pub fn check_describe_acls(client: &mut ClientProc, broker: &Broker) {
    let out = client.run(
        &["admin-describe-acls", &broker.bootstrap()],
        COMMAND_TIMEOUT,
    );
    assert!(
        (out.code == 0 && !out.lines("acls").is_empty())
            || out.mentions("SecurityDisabled")
            || out.mentions("SECURITY_DISABLED")
            || out.mentions("Security features are disabled"),
        "{}",
        out.report()
    );
}
