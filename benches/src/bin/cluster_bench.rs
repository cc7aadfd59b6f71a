//! Cluster metadata benchmark (issue 7):
//!
//! - `failover RILL DIR ROUNDS`: three `rill broker` processes on 127.0.0.31-33 form a
//!   cluster; each round kill -9 the controller and measure, from the kill, the time until
//!   both survivors name a new controller (DescribeCluster polled every 5 ms) and until they
//!   stop listing the dead broker (fenced after `broker_session_timeout_ms`), and until
//!   none of the 12 partitions of a replication-factor-3 topic is led by it; then restart
//!   it and wait for the cluster to be whole again.
//! - `commits SECONDS DIR`: three rill-raft members in this process (real files under DIR,
//!   real TCP on loopback, one thread each, driven like the broker drives its member); the
//!   leader keeps `INFLIGHT` proposals outstanding and the run counts the entries every
//!   member applied per second. Each commit needs the entry fdatasync'd on a majority.
//!
//! Output lines: `RESULT <name> <value>`, for benches/cluster.sh.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use rill_net::client::{BlockingStream, Connection};
use rill_net::kafka_protocol::messages::create_topics_request::CreatableTopic;
use rill_net::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use rill_net::kafka_protocol::messages::{
    CreateTopicsRequest, DescribeClusterRequest, MetadataRequest, TopicName,
};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_raft::disk::FsDisk;
use rill_raft::ids::{BrokerId, NodeId};
use rill_raft::metadata::{Command as MetaCommand, Proposal};
use rill_raft::node::{Node, NodeConfig};
use rill_raft::transport::{TcpTransport, TcpTransportConfig, Transport};

/// Proposals the leader keeps outstanding in `commits`.
const INFLIGHT: u64 = 256;
const HOSTS: [&str; 3] = ["127.0.0.31", "127.0.0.32", "127.0.0.33"];
const SESSION_MS: u64 = 3000;
/// A replication-factor-3 topic whose leaderships move when a broker dies.
const TOPIC: &str = "failover";
const TOPIC_PARTITIONS: i32 = 12;
const HEARTBEAT_MS: u64 = 300;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("failover") => failover(
            Path::new(&args[2]),
            Path::new(&args[3]),
            args[4].parse().expect("ROUNDS"),
        ),
        Some("commits") => commits(args[2].parse().expect("SECONDS"), Path::new(&args[3])),
        _ => {
            eprintln!("usage: cluster_bench failover RILL DIR ROUNDS | commits SECONDS DIR");
            std::process::exit(2);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Cluster {
    rill: PathBuf,
    dir: PathBuf,
    port: u16,
    quorum: String,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn spawn(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.join(format!("broker-{}.log", i + 1)))
            .expect("broker log");
        let child = Command::new(&self.rill)
            .args(["broker", "--node-id", &(i + 1).to_string()])
            .args(["--controller-quorum", &self.quorum])
            .args(["--listen", &format!("{}:{}", HOSTS[i], self.port)])
            .arg("--data-dir")
            .arg(self.dir.join(format!("broker-{}", i + 1)))
            .args(["--shards", "1", "--metrics-listen", ""])
            .arg("--config")
            .arg(self.dir.join("rill.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rill");
        self.children[i] = Some(child);
    }

    /// (brokers listed, controller) as broker `i` answers; None if it does not answer.
    fn view(&self, i: usize) -> Option<(Vec<i32>, i32)> {
        let addr: SocketAddr = format!("{}:{}", HOSTS[i], self.port).parse().ok()?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut c = Connection::new(BlockingStream(stream));
        let r = block_on(c.send(0, &DescribeClusterRequest::default())).ok()?;
        let mut ids: Vec<i32> = r.brokers.iter().map(|b| b.broker_id.0).collect();
        ids.sort();
        Some((ids, r.controller_id.0))
    }

    fn connect(&self, i: usize) -> Option<Connection<BlockingStream>> {
        let addr: SocketAddr = format!("{}:{}", HOSTS[i], self.port).parse().ok()?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(Connection::new(BlockingStream(stream)))
    }

    /// Leaders of `TOPIC`'s partitions as broker `i` answers Metadata.
    fn leaders(&self, i: usize) -> Option<Vec<i32>> {
        let mut c = self.connect(i)?;
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))]));
        let r = block_on(c.send(9, &req)).ok()?;
        let t = r.topics.first()?;
        Some(t.partitions.iter().map(|p| p.leader_id.0).collect())
    }

    /// Polls until `cond` holds for the answers of `among`; returns the elapsed time.
    fn wait(
        &self,
        among: &[usize],
        limit: Duration,
        cond: impl Fn(&[(Vec<i32>, i32)]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let views: Vec<(Vec<i32>, i32)> = among.iter().filter_map(|&i| self.view(i)).collect();
            if views.len() == among.len() && cond(&views) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "not reached within {limit:?}: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn agreed(all: &[i32]) -> impl Fn(&[(Vec<i32>, i32)]) -> bool + '_ {
    move |views| {
        let c = views[0].1;
        c >= 1 && views.iter().all(|(b, vc)| b == all && *vc == c)
    }
}

fn failover(rill: &Path, dir: &Path, rounds: usize) {
    // A fresh cluster per round: without partition replication (next issue) a restarted
    // broker never rejoins an ISR, so a second kill in the same cluster would find
    // partitions whose only in-sync replica is the dead broker (no clean leader).
    for round in 0..rounds {
        failover_round(rill, &dir.join(format!("round-{round}")), round);
    }
}

fn failover_round(rill: &Path, dir: &Path, round: usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("bench dir");
    std::fs::write(
        dir.join("rill.toml"),
        format!("broker_heartbeat_interval_ms = {HEARTBEAT_MS}\nbroker_session_timeout_ms = {SESSION_MS}\n"),
    )
    .expect("config");
    let port = free_port();
    let raft_port = free_port();
    let quorum = HOSTS
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{}@{h}:{raft_port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut cluster = Cluster {
        rill: rill.to_path_buf(),
        dir: dir.to_path_buf(),
        port,
        quorum,
        children: vec![None, None, None],
    };
    let started = Instant::now();
    for i in 0..3 {
        cluster.spawn(i);
    }
    let all = [1, 2, 3];
    cluster.wait(&[0, 1, 2], Duration::from_secs(30), agreed(&all));
    println!(
        "RESULT cluster_form_ms {:.1}",
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut c = cluster.connect(0).expect("broker 1 answers");
    let created = block_on(
        c.send(
            5,
            &CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_num_partitions(TOPIC_PARTITIONS)
                    .with_replication_factor(3)]),
        ),
    )
    .expect("CreateTopics");
    assert_eq!(created.topics[0].error_code, 0, "CreateTopics: {created:?}");
    {
        let (_, controller) = cluster.view(0).expect("broker 1 answers");
        let dead = (controller - 1) as usize;
        let survivors: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
        let mut child = cluster.children[dead].take().expect("running");
        let killed = Instant::now();
        child.kill().expect("kill -9 the controller");
        child.wait().expect("reap");
        let old = controller;
        cluster.wait(&survivors, Duration::from_secs(30), |views| {
            let c = views[0].1;
            c >= 1 && c != old && views.iter().all(|(_, vc)| *vc == c)
        });
        let elected = killed.elapsed();
        let started = Instant::now();
        let moved = loop {
            if let Some(leaders) = cluster.leaders(survivors[0]) {
                if leaders.len() == TOPIC_PARTITIONS as usize
                    && leaders.iter().all(|l| *l != old && *l >= 1)
                {
                    break killed.elapsed();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "leaderships did not move off {old}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        println!("RESULT leaders_moved_ms {:.1}", moved.as_secs_f64() * 1e3);
        let rest: Vec<i32> = all.iter().copied().filter(|&b| b != old).collect();
        cluster.wait(&survivors, Duration::from_secs(60), |views| {
            views.iter().all(|(b, _)| *b == rest)
        });
        let fenced = killed.elapsed();
        println!(
            "RESULT controller_elect_ms {:.1}",
            elected.as_secs_f64() * 1e3
        );
        println!("RESULT broker_fence_ms {:.1}", fenced.as_secs_f64() * 1e3);
        eprintln!("round {round}: controller {old} killed; new one after {elected:?}, its partitions led elsewhere after {moved:?}, fenced after {fenced:?}");
        drop(cluster);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// One raft member driven on its own thread; counts applied entries.
fn run_member(
    id: NodeId,
    listener: TcpListener,
    peers: BTreeMap<NodeId, SocketAddr>,
    voters: Vec<NodeId>,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    applied: Arc<AtomicU64>,
) {
    let mut config = NodeConfig::new(id, voters, vec![]);
    // Never snapshot during the run: the figure is the log's commit rate.
    config.snapshot_interval_entries = u64::MAX / 2;
    let mut node = Node::open(config, FsDisk::open(&dir).expect("raft dir")).expect("raft node");
    let transport =
        TcpTransport::start(id, listener, peers, TcpTransportConfig::default()).expect("transport");
    let tick = Duration::from_millis(100);
    let mut next_tick = Instant::now() + tick;
    let mut proposed: u64 = 0;
    let mut mine_applied: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(m) = transport.recv_timeout(Duration::from_micros(200)) {
            let _ = node.step(m);
        }
        for m in transport.try_recv_many(1024) {
            let _ = node.step(m);
        }
        if Instant::now() >= next_tick {
            node.tick();
            next_tick += tick;
        }
        if node.is_leader() {
            while proposed < mine_applied + INFLIGHT {
                let cmd = MetaCommand::BrokerHeartbeat {
                    broker: BrokerId(id.0 as i32),
                };
                if node
                    .propose(&Proposal {
                        commands: vec![cmd],
                    })
                    .is_err()
                {
                    break;
                }
                proposed += 1;
            }
        }
        let out = node.handle_ready().expect("raft ready");
        for m in out.messages {
            transport.send(m);
        }
        let n = out
            .applied
            .iter()
            .filter(|a| a.proposal.is_some_and(|p| p.node == id))
            .count() as u64;
        mine_applied += n;
        applied.fetch_add(out.applied.len() as u64, Ordering::Relaxed);
    }
}

fn commits(seconds: u64, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let addrs: BTreeMap<NodeId, SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (NodeId(i as u64 + 1), l.local_addr().expect("addr")))
        .collect();
    let voters: Vec<NodeId> = addrs.keys().copied().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let peers: BTreeMap<NodeId, SocketAddr> = addrs
            .iter()
            .filter(|(n, _)| **n != id)
            .map(|(n, a)| (*n, *a))
            .collect();
        let (voters, dir, stop, applied) = (
            voters.clone(),
            dir.join(format!("member-{}", i + 1)),
            stop.clone(),
            counters[i].clone(),
        );
        threads.push(std::thread::spawn(move || {
            run_member(id, listener, peers, voters, dir, stop, applied)
        }));
    }
    // Warm up: a leader and a steady stream.
    let total = |c: &[Arc<AtomicU64>]| {
        c.iter()
            .map(|a| a.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while total(&counters) < 1000 {
        assert!(Instant::now() < deadline, "no commits within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = total(&counters);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after = total(&counters);
    let rate = (after - before) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = std::fs::remove_dir_all(dir);
    println!("RESULT metadata_commits_per_s {rate:.0}");
}
