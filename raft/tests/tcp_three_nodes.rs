//! Three raft members on 127.0.0.1 ephemeral ports, each driven by its own
//! thread the way the broker's shard 0 will drive it (tick on a timer, step
//! what arrives, handle_ready, send), elect a leader and commit proposals
//! over real sockets; after the leader stops, the other two elect a new one
//! and keep committing.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_raft::disk::FsDisk;
use rill_raft::ids::{BrokerId, NodeId};
use rill_raft::metadata::{Command, MetadataState, Proposal};
use rill_raft::node::{Node, NodeConfig};
use rill_raft::transport::{TcpTransport, TcpTransportConfig, Transport};

const TICK: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    leader: Option<NodeId>,
    state: MetadataState,
}

fn run_member(
    id: NodeId,
    listener: TcpListener,
    peers: BTreeMap<NodeId, SocketAddr>,
    dir: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
) {
    let voters: Vec<NodeId> = peers.keys().copied().collect();
    let config = NodeConfig::new(id, voters, vec![]);
    let mut node = Node::open(config, FsDisk::open(&dir).unwrap()).unwrap();
    let transport =
        TcpTransport::start(id, listener, peers, TcpTransportConfig::default()).unwrap();
    let mut next_tick = Instant::now() + TICK;
    let mut last_heartbeat = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(m) = transport.recv_timeout(Duration::from_millis(2)) {
            node.step(m).unwrap();
            for m in transport.try_recv_many(256) {
                node.step(m).unwrap();
            }
        }
        if Instant::now() >= next_tick {
            node.tick();
            next_tick += TICK;
        }
        // Each broker registers, then heartbeats, through the log.
        if node.leader().is_some() && last_heartbeat.elapsed() > Duration::from_millis(100) {
            last_heartbeat = Instant::now();
            let b = id.broker();
            let cmd = if node.state().brokers.contains_key(&b) {
                Command::BrokerHeartbeat { broker: b }
            } else {
                Command::RegisterBroker {
                    broker: b,
                    host: "127.0.0.1".into(),
                    port: 9092,
                    rack: None,
                    incarnation: 1,
                }
            };
            let _ = node.propose(&Proposal {
                commands: vec![cmd],
            });
        }
        let out = node.handle_ready().unwrap();
        for m in out.messages {
            transport.send(m);
        }
        let mut s = shared.lock().unwrap();
        s.leader = node.is_leader().then_some(id);
        s.state = node.state().clone();
    }
}

struct Member {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("{what}: {:?}", start.elapsed());
}

#[test]
fn three_members_elect_a_leader_and_commit_over_tcp() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: BTreeMap<NodeId, SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (NodeId(i as u64 + 1), l.local_addr().unwrap()))
        .collect();
    let mut members: Vec<Member> = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (p, d, st, sh) = (
            peers.clone(),
            dirs[i].path().to_path_buf(),
            stop.clone(),
            shared.clone(),
        );
        let id = NodeId(i as u64 + 1);
        let thread = std::thread::spawn(move || run_member(id, listener, p, d, st, sh));
        members.push(Member {
            stop,
            shared,
            thread: Some(thread),
        });
    }
    let leaders = |ms: &[Member]| -> Vec<NodeId> {
        ms.iter()
            .filter(|m| !m.stop.load(Ordering::Relaxed))
            .filter_map(|m| m.shared.lock().unwrap().leader)
            .collect()
    };
    wait_for("a leader", Duration::from_secs(20), || {
        leaders(&members).len() == 1
    });
    // Every member registers through the log and every member applies it.
    let all_registered = |ms: &[Member], live: &[usize]| {
        live.iter().all(|&i| {
            let s = &ms[i].shared.lock().unwrap().state;
            (0..3).all(|b| s.brokers.contains_key(&BrokerId(b)))
        })
    };
    wait_for(
        "three registrations applied everywhere",
        Duration::from_secs(20),
        || all_registered(&members, &[0, 1, 2]),
    );

    // Stop the leader: the other two elect a new one and keep committing.
    let old = leaders(&members)[0];
    let old_i = (old.0 - 1) as usize;
    members[old_i].stop.store(true, Ordering::Relaxed);
    let t = Instant::now();
    members[old_i].thread.take().unwrap().join().unwrap();
    println!("stopping the leader took {:?}", t.elapsed());
    let applied_before: Vec<u64> = members
        .iter()
        .map(|m| m.shared.lock().unwrap().state.applied_index)
        .collect();
    wait_for("a new leader", Duration::from_secs(20), || {
        let l = leaders(&members);
        l.len() == 1 && l[0] != old
    });
    let live: Vec<usize> = (0..3).filter(|&i| i != old_i).collect();
    wait_for(
        "heartbeats commit under the new leader",
        Duration::from_secs(20),
        || {
            live.iter().all(|&i| {
                members[i].shared.lock().unwrap().state.applied_index > applied_before[i] + 3
            })
        },
    );
    for m in &mut members {
        m.stop.store(true, Ordering::Relaxed);
        if let Some(t) = m.thread.take() {
            t.join().unwrap();
        }
    }
}
