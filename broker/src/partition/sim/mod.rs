//! A seeded, deterministic simulation of one partition replicated over 3 to 5 brokers, to
//! check that replication never loses a record acknowledged with acks=all.
//!
//! What is real: each broker holds a real [`Partition`] (`broker/src/partition/`: its
//! replication state, produce up to acks=all's answer, the leader's Fetch with epoch
//! fencing and diverging epochs, the follower's append and truncation, the ISR decision)
//! over a real `PartitionLog` (segments, indexes, leader-epoch history, recovery at open).
//! What stands in for the rest, each as the broker's own code does it: the disk is
//! [`MemoryBackend`], which keeps what a reader sees apart from what was synced, so a
//! kill -9 keeps what reached the backend and loses the log's memory (write-behind, tail
//! buffer), and a power loss ([`MemoryBackend::crash`]) keeps only synced bytes and a random
//! prefix of the rest, the last write possibly torn; the shard's loops (`broker`: the
//! follower's fetcher, the leader's long-polled answer, the ISR check, the high-watermark
//! checkpoint, the flush tick, metadata images, acks=all's wait on virtual timers); the
//! controller (`controller`: registration, fencing, recovery of restarted brokers, clean
//! elections, preferred leaders, compare-and-set ISR changes, leader epochs, as the raft
//! controller has them, without the raft group, which has its own simulation); and a
//! network that loses, delays (reordering across connections), cuts links both ways or one
//! way, and stalls messages on a cut link until it heals.
//!
//! Faults, drawn from the seed with rates from none to harsh: kill -9 (often of the
//! leader), power loss (with `replica_fsync` only, where the promise covers it), clean stop,
//! restart as a new incarnation (sooner or later than the session timeout), pause (SIGSTOP:
//! timers and messages wait), network cuts of several shapes. Load: produces with acks 0, 1
//! and all, to the leader or (with stale metadata) another broker. Time is virtual: the
//! partitions and logs read the simulator's clock, and one seed replays exactly.
//!
//! After every event the invariants of [`check`] are checked; the first violation ends the
//! run with the seed, the replay command, the virtual time, what broke and the last steps of
//! the trace. After the chaos the faults heal and the partition must be led and in sync
//! again within a bound.
//!
//! Transactions (a share of the produce events, from the seed): one transactional producer
//! writes transactional batches and ends each transaction with an end marker (commit or
//! abort, acks=all, retried until acknowledged), as WriteTxnMarkers does; after healing,
//! every replica's last stable offset and aborted transactions must be what its log says.
//!
//! Not modelled: interleavings inside one partition call (each runs to completion before
//! the next event), several partitions or shards, the raft group itself, idempotent
//! producers, the transaction coordinator, retention and DeleteRecords, reassignments,
//! power loss without `replica_fsync`, and a machine that comes back with an empty disk.
//!
//! Layout: `mod.rs` (this: configuration, the event loop, network, chaos), `broker` (a
//! broker's side: timers, fetcher, leader fetches, produce, acks=all waits), `controller`
//! (the controller model), `check` (the invariants), `tests` (the seeded runs).

mod broker;
mod check;
mod controller;
mod tests;

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rill_storage::MemoryBackend;

use super::{FetchAt, FetchedPartition, Partition};
use crate::config::topic::{BrokerDefaults, TopicSettings};
use crate::config::StorageSettings;
use crate::metrics::ShardMetrics;
use broker::SimBroker;
use check::Checker;
use controller::{Controller, Image};
pub use rill_raft::sim_rng::SimRng;

type Part = Rc<Partition<MemoryBackend>>;

/// The controller's node in the network; brokers are 1..=n.
const CONTROLLER: usize = 0;
/// Milliseconds of the wall clock at virtual time 0 (record timestamps, segment ages).
const WALL_BASE_MS: i64 = 1_700_000_000_000;

/// A deliberate bug, so a test can show the invariants catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    None,
    /// Followers never name their last fetched epoch: the leader cannot tell them where
    /// their log diverges, so they never truncate a suffix another leader did not keep.
    NoDivergenceCheck,
    /// The controller elects any live replica, in the ISR or not.
    UncleanElection,
    /// acks=all is answered once the high watermark passes the produce's last offset,
    /// without asking whether this broker still leads at the epoch it appended under (the
    /// broker before 434f4c4): a leader deposed while the produce waited, which cut those
    /// records away as a follower and took the new leader's high watermark past them,
    /// acknowledges records its log no longer holds (chaos seed 21).
    AckDeposedLeader,
    /// Followers record nothing of the transactional batches and markers they copy: their
    /// producer table and aborted-transaction index fall behind their logs, which a new
    /// leader (or a read_committed reader of it) would answer from.
    FollowerSkipsTxnState,
}

/// Shape and fault rates of one run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub brokers: usize,
    pub min_insync: usize,
    /// Followers fdatasync what they copied before they report it.
    pub replica_fsync: bool,
    /// Crashes may be power losses (unsynced writes lost), not only kill -9. Within the
    /// promise only with `replica_fsync` (README: acks=all survives a power loss of every
    /// machine then; without it, kill -9 of all and the loss of a minority of machines).
    pub power_loss: bool,
    /// Chance a message is lost (its connection breaks).
    pub loss: f64,
    /// Chance a message is slow (50-600 ms instead of 1-5): reordering across connections.
    pub slow: f64,
    pub crash_per_s: f64,
    pub pause_per_s: f64,
    pub cut_per_s: f64,
    /// Mean virtual ms between produce requests.
    pub produce_every_ms: u64,
    /// Bytes a follower asks for per fetch (small ones split the log over many fetches).
    pub fetch_bytes_max: usize,
    pub replica_lag_max_ms: u64,
    pub session_timeout_ms: u64,
    /// Virtual ms of faults and load.
    pub chaos_ms: u64,
    /// Virtual ms allowed after healing to be led and in sync again.
    pub heal_budget_ms: u64,
    pub mutation: Mutation,
    /// Chance a produce event is transactional work instead: a transactional batch of the
    /// open transaction, or its end marker (WriteTxnMarkers, acks=all), commit or abort.
    pub txn_share: f64,
}

impl SimConfig {
    /// Draws a configuration from the seed: 3 to 5 brokers, fault rates from none to harsh.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut r = SimRng::new(seed ^ 0x005E_ED0F_0015);
        let brokers = [3, 3, 3, 4, 5][(r.next_u64() % 5) as usize];
        let replica_fsync = r.chance(0.5);
        SimConfig {
            brokers,
            min_insync: r.range(1, (brokers as u64 - 1).min(3)) as usize,
            replica_fsync,
            power_loss: replica_fsync && r.chance(0.8),
            loss: [0.0, 0.01, 0.05, 0.15][(r.next_u64() % 4) as usize],
            slow: [0.0, 0.02, 0.1][(r.next_u64() % 3) as usize],
            crash_per_s: [0.05, 0.15, 0.4][(r.next_u64() % 3) as usize],
            pause_per_s: [0.0, 0.1, 0.25][(r.next_u64() % 3) as usize],
            cut_per_s: [0.0, 0.15, 0.4][(r.next_u64() % 3) as usize],
            produce_every_ms: [10, 40, 120][(r.next_u64() % 3) as usize],
            fetch_bytes_max: [1 << 20, 1 << 20, 2048][(r.next_u64() % 3) as usize],
            replica_lag_max_ms: [800, 2_000, 5_000][(r.next_u64() % 3) as usize],
            session_timeout_ms: [1_500, 3_000][(r.next_u64() % 2) as usize],
            chaos_ms: 12_000,
            heal_budget_ms: 30_000,
            mutation: Mutation::None,
            // Drawn last, so the earlier draws (and the seeds' shapes) stay as they were.
            txn_share: [0.0, 0.2, 0.5][(r.next_u64() % 3) as usize],
        }
    }
}

/// How a broker stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// kill -9: what was written to the backend stays, the log's memory is lost.
    Kill,
    /// Power loss: only synced bytes stay, and a random prefix of the rest.
    PowerLoss,
    /// A clean shutdown: the log is closed and the high watermark checkpointed.
    Clean,
}

/// What travels between nodes.
#[derive(Clone, Debug)]
enum Msg {
    Heartbeat {
        incarnation: u32,
    },
    Image(Box<Image>),
    AlterIsr {
        req: u64,
        partition_epoch: i32,
        leader: i32,
        isr: Vec<i32>,
    },
    AlterIsrDone {
        req: u64,
        image: Box<Image>,
    },
    FetchReq {
        fetcher: u64,
        req: u64,
        at: FetchAt,
    },
    FetchResp {
        fetcher: u64,
        req: u64,
        data: Box<FetchedPartition>,
    },
}

/// A broker's timers; each belongs to one incarnation.
#[derive(Clone, Copy, Debug)]
enum Timer {
    Heartbeat,
    IsrCheck,
    FetcherScan,
    /// A fetcher already running to the new leader takes the partition in (one scan, not
    /// the periodic one).
    FetcherPickUp,
    HwCheckpoint,
    FlushTick,
    FetchNext {
        fetcher: u64,
    },
    FetchTimeout {
        fetcher: u64,
        req: u64,
    },
    LongPoll {
        req: u64,
    },
    AlterIsrTimeout {
        req: u64,
    },
    AckRecheck {
        produce: u64,
    },
}

#[derive(Clone, Debug)]
struct Envelope {
    from: usize,
    from_inc: u32,
    to: usize,
    to_inc: u32,
    msg: Msg,
}

#[derive(Clone, Debug)]
enum Event {
    Deliver(Envelope),
    Timer {
        broker: usize,
        inc: u32,
        timer: Timer,
    },
    ControllerTick,
    Produce,
    Chaos,
    Restart(usize),
    Resume(usize),
    Heal,
    ConvergeCheck,
}

/// What a finished run reports.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// FNV-1a of every trace line: equal for equal runs.
    pub trace_hash: u64,
    pub events: u64,
    pub produces: u64,
    pub acked_batches: u64,
    pub kills: u64,
    pub power_losses: u64,
    pub pauses: u64,
    pub cuts: u64,
    pub elections: u64,
    pub truncations: u64,
    /// Committed batches replaced after a crash took them (unacknowledged data lost).
    pub committed_rewrites: u64,
    pub converged_after_heal_ms: u64,
    pub virtual_ms: u64,
    /// Transactional batches appended, and end markers acknowledged.
    pub txn_batches: u64,
    pub txn_markers_acked: u64,
}

type SimResult<T> = Result<T, String>;

/// Trace lines kept for the failure report.
const TRACE_TAIL_LINES: usize = 250;

pub struct Sim {
    seed: u64,
    cfg: SimConfig,
    rng: SimRng,
    now: Rc<Cell<u64>>,
    base: Instant,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    brokers: Vec<SimBroker>,
    ctl: Controller,
    /// `cut[from][to]`: messages from `from` to `to` do not arrive.
    cut: Vec<Vec<bool>>,
    /// Messages on a cut link that arrive once it heals (TCP retransmits), by link.
    stalled: Vec<Envelope>,
    healed: bool,
    /// The event being handled changed nothing (a stale timer, a message for a dead
    /// process): no waiter to wake, no invariant to check.
    idle: bool,
    next_id: u64,
    settings: TopicSettings,
    storage: StorageSettings,
    metrics: Rc<ShardMetrics>,
    checker: Checker,
    trace: VecDeque<String>,
    trace_hash: u64,
    print_trace: bool,
    summary: RunSummary,
    /// The transaction the simulated transactional producer has open.
    txn: Option<broker::OpenTxn>,
    /// The producer id the next transaction takes (one per transaction, so a batch a
    /// truncation took never leaves the next transaction's sequences out of order).
    next_txn_producer: i64,
}

impl Sim {
    pub fn new(seed: u64, cfg: SimConfig) -> Sim {
        let mut rng = SimRng::new(seed);
        let n = cfg.brokers;
        // A random preferred leader and replica order.
        let mut replicas: Vec<i32> = (1..=n as i32).collect();
        for k in 0..n {
            let j = k + (rng.next_u64() % (n - k) as u64) as usize;
            replicas.swap(k, j);
        }
        let ctl = Controller::new(
            replicas,
            cfg.session_timeout_ms,
            cfg.mutation == Mutation::UncleanElection,
        );
        let overrides = vec![
            ("segment.bytes".to_string(), "16384".to_string()),
            (
                "min.insync.replicas".to_string(),
                cfg.min_insync.to_string(),
            ),
        ];
        let settings = TopicSettings::resolve(&BrokerDefaults::default(), &overrides)
            .expect("the simulator's topic settings are valid");
        let image = ctl.image();
        Sim {
            seed,
            rng,
            now: Rc::new(Cell::new(0)),
            base: Instant::now(),
            seq: 0,
            queue: BTreeMap::new(),
            brokers: (1..=n as i32)
                .map(|id| SimBroker::new(id, image.clone()))
                .collect(),
            ctl,
            cut: vec![vec![false; n + 1]; n + 1],
            stalled: Vec::new(),
            healed: false,
            idle: false,
            next_id: 1,
            settings,
            storage: StorageSettings::default(),
            metrics: Rc::new(ShardMetrics::default()),
            checker: Checker::default(),
            trace: VecDeque::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
            print_trace: std::env::var("RILL_SIM_TRACE").is_ok_and(|v| v == "1"),
            summary: RunSummary::default(),
            txn: None,
            next_txn_producer: 4000,
            cfg,
        }
    }

    fn now(&self) -> u64 {
        self.now.get()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records one step of the run.
    fn log(&mut self, line: String) {
        for b in line.as_bytes() {
            self.trace_hash ^= *b as u64;
            self.trace_hash = self.trace_hash.wrapping_mul(0x0100_0000_01b3);
        }
        let line = format!("{:>6} ms  {line}", self.now());
        if self.print_trace {
            eprintln!("{line}");
        }
        if self.trace.len() == TRACE_TAIL_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn fail<T>(&self, what: String) -> SimResult<T> {
        let tail: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        Err(format!(
            "partition simulation, seed {seed} (replay: RILL_SIM_SEED={seed} RILL_SIM_TRACE=1 cargo test -p rill-broker --bin rill partition::sim::tests::seeds -- --nocapture), at {} ms: {what}\nconfig: {:?}\nlast steps:\n{}",
            self.now(),
            self.cfg,
            tail.join("\n"),
            seed = self.seed,
        ))
    }

    fn schedule(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), e);
    }

    fn after(&mut self, delay_ms: u64, e: Event) {
        self.schedule(self.now() + delay_ms, e);
    }

    fn timer(&mut self, broker: usize, delay_ms: u64, timer: Timer) {
        let inc = self.brokers[broker - 1].inc;
        self.after(delay_ms, Event::Timer { broker, inc, timer });
    }

    /// The clock a partition reads: virtual time from one fixed instant.
    fn clock(&self) -> Rc<dyn Fn() -> Instant> {
        let (now, base) = (self.now.clone(), self.base);
        Rc::new(move || base + Duration::from_millis(now.get()))
    }

    /// The wall clock a log reads, in ms.
    fn wall_clock(&self) -> Rc<dyn Fn() -> i64> {
        let now = self.now.clone();
        Rc::new(move || WALL_BASE_MS + now.get() as i64)
    }

    fn incarnation_of(&self, node: usize) -> u32 {
        if node == CONTROLLER {
            0
        } else {
            self.brokers[node - 1].inc
        }
    }

    /// Sends `msg`: lost with the configured chance, dropped or stalled on a cut link,
    /// else delivered after a short or (sometimes) long delay.
    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        let env = Envelope {
            from,
            from_inc: self.incarnation_of(from),
            to,
            to_inc: self.incarnation_of(to),
            msg,
        };
        if self.cut[from][to] {
            // Half the time the connection gives up; else TCP delivers it after the heal.
            if self.rng.chance(0.5) {
                self.stalled.push(env);
            }
            return;
        }
        if self.rng.chance(self.cfg.loss) {
            return;
        }
        let delay = self.delay();
        self.after(delay, Event::Deliver(env));
    }

    fn delay(&mut self) -> u64 {
        if self.rng.chance(self.cfg.slow) {
            self.rng.range(50, 600)
        } else {
            self.rng.range(1, 5)
        }
    }

    /// Delivers what waited on links that are no longer cut.
    fn release_stalled(&mut self) {
        let stalled = std::mem::take(&mut self.stalled);
        for env in stalled {
            if self.cut[env.from][env.to] {
                self.stalled.push(env);
            } else {
                let delay = self.delay();
                self.after(delay, Event::Deliver(env));
            }
        }
    }

    fn up_brokers(&self) -> Vec<usize> {
        (1..=self.brokers.len())
            .filter(|b| self.brokers[b - 1].up)
            .collect()
    }

    /// Runs the whole scenario: chaos under load, then heal and demand convergence.
    pub fn run(mut self) -> SimResult<RunSummary> {
        for b in 1..=self.brokers.len() {
            self.start_broker(b)?;
        }
        self.after(0, Event::ControllerTick);
        self.after(5, Event::Produce);
        self.after(500, Event::Chaos);
        self.after(self.cfg.chaos_ms, Event::Heal);
        let deadline = self.cfg.chaos_ms + self.cfg.heal_budget_ms;
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            if at > deadline {
                break;
            }
            self.now.set(at);
            self.summary.events += 1;
            self.idle = false;
            if let Some(done) = self.handle(ev)? {
                return Ok(done);
            }
            if self.idle {
                continue; // nothing changed: nothing to wake or check
            }
            self.settle()?;
            self.check_step()?;
        }
        let why = self.convergence_report();
        self.fail(format!(
            "not led and in sync {} ms after healing: {why}",
            self.cfg.heal_budget_ms
        ))
    }

    /// Runs one event; `Some` when the run is over.
    fn handle(&mut self, ev: Event) -> SimResult<Option<RunSummary>> {
        match ev {
            Event::Deliver(env) => self.deliver(env)?,
            Event::Timer { broker, inc, timer } => {
                let b = &mut self.brokers[broker - 1];
                if !b.up || b.inc != inc {
                    self.idle = true;
                    return Ok(None);
                }
                if b.paused {
                    b.held.push(Event::Timer { broker, inc, timer });
                    self.idle = true;
                    return Ok(None);
                }
                self.on_timer(broker, timer)?;
            }
            Event::ControllerTick => {
                self.after(250, Event::ControllerTick);
                let now = self.now();
                let done = self.ctl.tick(now);
                if !done.is_empty() {
                    let p = self.ctl.placement.clone();
                    self.log(format!(
                        "controller: {} -> leader {} epoch {} isr {:?} (partition epoch {})",
                        done.join(", "),
                        p.leader,
                        p.leader_epoch,
                        p.isr,
                        p.partition_epoch
                    ));
                    self.broadcast_image();
                }
            }
            Event::Produce => {
                if !self.healed {
                    let gap = self.rng.range(1, 2 * self.cfg.produce_every_ms);
                    self.after(gap, Event::Produce);
                    self.produce()?;
                }
            }
            Event::Chaos => {
                if !self.healed {
                    self.after(500, Event::Chaos);
                    self.chaos()?;
                }
            }
            Event::Restart(b) => {
                if !self.brokers[b - 1].up {
                    self.start_broker(b)?;
                }
            }
            Event::Resume(b) => self.resume(b),
            Event::Heal => self.heal()?,
            Event::ConvergeCheck => {
                if self.convergence_report().is_empty() {
                    self.check_all()?;
                    self.check_identical()?;
                    self.summary.converged_after_heal_ms = self.now() - self.cfg.chaos_ms;
                    self.summary.virtual_ms = self.now();
                    self.summary.trace_hash = self.trace_hash;
                    self.summary.elections = self.ctl.elections;
                    self.summary.acked_batches = self.checker.acked_count() as u64;
                    self.summary.committed_rewrites = self.checker.committed_rewrites;
                    return Ok(Some(self.summary.clone()));
                }
                self.after(250, Event::ConvergeCheck);
            }
        }
        Ok(None)
    }

    fn deliver(&mut self, env: Envelope) -> SimResult<()> {
        if env.from != CONTROLLER
            && self.brokers[env.from - 1].inc != env.from_inc
            && self.cut[env.from][env.to]
        {
            return Ok(());
        }
        if env.to == CONTROLLER {
            return self.controller_receive(env);
        }
        let b = &mut self.brokers[env.to - 1];
        if !b.up || b.inc != env.to_inc {
            self.idle = true;
            return Ok(()); // the connection died with the process
        }
        if b.paused {
            b.held.push(Event::Deliver(env));
            self.idle = true;
            return Ok(());
        }
        self.broker_receive(env)
    }

    fn controller_receive(&mut self, env: Envelope) -> SimResult<()> {
        let from = env.from;
        match env.msg {
            Msg::Heartbeat { incarnation } => {
                let now = self.now();
                if self.ctl.heartbeat(from as i32, incarnation, now) {
                    self.log(format!(
                        "controller: broker {from} registers incarnation {incarnation} (recovering: {})",
                        self.ctl.image().brokers[from - 1].recovering
                    ));
                    self.broadcast_image();
                } else {
                    let image = Box::new(self.ctl.image());
                    self.send(CONTROLLER, from, Msg::Image(image));
                }
            }
            Msg::AlterIsr {
                req,
                partition_epoch,
                leader,
                isr,
            } => {
                let outcome = self.ctl.alter_isr(partition_epoch, leader, &isr);
                self.log(format!(
                    "controller: broker {from} asks for isr {isr:?} at partition epoch {partition_epoch}: {}",
                    match &outcome {
                        Ok(()) => "taken".to_string(),
                        Err(e) => format!("refused, {e}"),
                    }
                ));
                if outcome.is_ok() {
                    self.broadcast_image();
                }
                let image = Box::new(self.ctl.image());
                self.send(CONTROLLER, from, Msg::AlterIsrDone { req, image });
            }
            other => return self.fail(format!("the controller got {other:?}")),
        }
        Ok(())
    }

    fn broadcast_image(&mut self) {
        for b in 1..=self.brokers.len() {
            let image = Box::new(self.ctl.image());
            self.send(CONTROLLER, b, Msg::Image(image));
        }
    }

    fn chaos(&mut self) -> SimResult<()> {
        let up = self.up_brokers();
        // Each fault class has its own chance per half second.
        if self.rng.chance(self.cfg.crash_per_s / 2.0) {
            let leader = self.ctl.placement.leader as usize;
            let victim = if self.rng.chance(0.5) && up.contains(&leader) {
                Some(leader)
            } else {
                self.rng.pick(&up).copied()
            };
            if let Some(b) = victim {
                let how = if self.cfg.power_loss && self.rng.chance(0.4) {
                    Stop::PowerLoss
                } else if self.rng.chance(0.15) {
                    Stop::Clean
                } else {
                    Stop::Kill
                };
                self.stop_broker(b, how)?;
                // Often back within the session timeout, sometimes long after.
                let down = if self.rng.chance(0.6) {
                    self.rng.range(50, self.cfg.session_timeout_ms)
                } else {
                    self.rng.range(self.cfg.session_timeout_ms, 8_000)
                };
                self.after(down, Event::Restart(b));
            }
        }
        if self.rng.chance(self.cfg.pause_per_s / 2.0) {
            let running: Vec<usize> = up
                .iter()
                .copied()
                .filter(|b| !self.brokers[b - 1].paused)
                .collect();
            if let Some(&b) = self.rng.pick(&running) {
                let ms = self.rng.range(50, 4_000);
                self.brokers[b - 1].paused = true;
                self.summary.pauses += 1;
                self.log(format!("pause broker {b} for {ms} ms"));
                self.after(ms, Event::Resume(b));
            }
        }
        if self.rng.chance(self.cfg.cut_per_s / 2.0) {
            self.cut_network();
        } else if self.rng.chance(0.15) {
            self.heal_network();
        }
        Ok(())
    }

    /// Cuts links in one of several shapes.
    fn cut_network(&mut self) {
        let n = self.brokers.len();
        let b = self.rng.range(1, n as u64) as usize;
        let shape = self.rng.next_u64() % 5;
        let what = match shape {
            0 => {
                for o in 0..=n {
                    if o != b {
                        self.cut[b][o] = true;
                        self.cut[o][b] = true;
                    }
                }
                format!("isolate broker {b}")
            }
            1 => {
                self.cut[b][CONTROLLER] = true;
                self.cut[CONTROLLER][b] = true;
                format!("cut broker {b} from the controller")
            }
            2 => {
                let outgoing = self.rng.chance(0.5);
                for o in 0..=n {
                    if o != b {
                        if outgoing {
                            self.cut[b][o] = true;
                        } else {
                            self.cut[o][b] = true;
                        }
                    }
                }
                if outgoing {
                    format!("broker {b} can hear but not speak")
                } else {
                    format!("broker {b} can speak but not hear")
                }
            }
            3 => {
                let mut o = self.rng.range(0, n as u64) as usize;
                if o == b {
                    o = CONTROLLER;
                }
                self.cut[b][o] = true;
                format!("one way {b} -> {o}")
            }
            _ => {
                // Two sides; the controller on the first.
                let side: Vec<bool> = (0..=n)
                    .map(|i| i != CONTROLLER && self.rng.chance(0.5))
                    .collect();
                for x in 0..=n {
                    for y in 0..=n {
                        if side[x] != side[y] {
                            self.cut[x][y] = true;
                        }
                    }
                }
                let away: Vec<usize> = (1..=n).filter(|i| side[*i]).collect();
                format!("split {away:?} from the rest")
            }
        };
        self.summary.cuts += 1;
        self.log(format!("network: {what}"));
    }

    fn heal_network(&mut self) {
        if self.cut.iter().flatten().any(|c| *c) {
            for row in self.cut.iter_mut() {
                row.iter_mut().for_each(|c| *c = false);
            }
            self.log("network: healed".to_string());
            self.release_stalled();
        }
    }

    fn resume(&mut self, b: usize) {
        let br = &mut self.brokers[b - 1];
        if !br.paused {
            return;
        }
        br.paused = false;
        let held = std::mem::take(&mut br.held);
        self.log(format!("resume broker {b} ({} events waited)", held.len()));
        for e in held {
            self.after(0, e);
        }
    }

    /// The end of the chaos: the network heals, paused brokers resume, stopped ones start,
    /// the load stops; the partition must then converge.
    fn heal(&mut self) -> SimResult<()> {
        self.healed = true;
        self.cfg.loss = 0.0;
        self.log("heal: network, pauses, stopped brokers".to_string());
        self.heal_network();
        for b in 1..=self.brokers.len() {
            self.resume(b);
            if !self.brokers[b - 1].up {
                self.start_broker(b)?;
            }
        }
        self.after(250, Event::ConvergeCheck);
        Ok(())
    }

    /// Empty when the partition is led by the controller's leader, every replica is in the
    /// ISR, knows the latest metadata and holds the same log, and the high watermark is the
    /// log end everywhere; else what is missing.
    fn convergence_report(&self) -> String {
        let mut why = Vec::new();
        let p = &self.ctl.placement;
        if p.leader < 0 {
            why.push("no leader".to_string());
        }
        if p.isr.len() != p.replicas.len() {
            why.push(format!("isr {:?} of {:?}", p.isr, p.replicas));
        }
        let leader_end = self
            .brokers
            .get((p.leader.max(1) - 1) as usize)
            .and_then(|b| b.part.as_ref())
            .map(|part| part.log().log_end_offset());
        for b in &self.brokers {
            let Some(part) = b.part.as_ref().filter(|_| b.up) else {
                why.push(format!("broker {} is down", b.id));
                continue;
            };
            if b.image.version != self.ctl.version {
                why.push(format!(
                    "broker {} has metadata {} of {}",
                    b.id, b.image.version, self.ctl.version
                ));
            }
            let (end, hw) = (part.log().log_end_offset(), part.high_watermark());
            if Some(end) != leader_end || hw != end {
                why.push(format!(
                    "broker {}: log end {end}, high watermark {hw}, leader's log end {leader_end:?}",
                    b.id
                ));
            }
            if b.id == p.leader
                && !(part.is_leader() && part.replica.borrow().leader_epoch() == p.leader_epoch)
            {
                why.push(format!("broker {} does not lead yet", b.id));
            }
        }
        why.join("; ")
    }
}

/// Runs one seed with the configuration drawn from it.
pub fn run_seed(seed: u64) -> SimResult<RunSummary> {
    Sim::new(seed, SimConfig::from_seed(seed)).run()
}
