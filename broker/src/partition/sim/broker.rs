//! One simulated broker: the partition it holds and what a shard does with it, each as the
//! broker's own code does it, on the simulator's events: the follower's fetcher
//! (`replica.rs`: one fetcher per leader, one request in flight, back-off on failures), the
//! leader's answer to a follower's Fetch (`handlers/fetch.rs`: long-polled until the log end
//! passes the fetch offset or 500 ms), the ISR check (`shard/tasks/isr.rs`), the
//! high-watermark checkpoint, the flush tick, metadata images, produce, and an acks=all
//! produce's wait for the in-sync replicas (`Partition::await_replication`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::future::block_on;
use rill_net::ErrorCode;
use rill_storage::batch::{build, CheckedBatch};
use rill_storage::{FileBudget, MemoryBackend, PartitionLog};
use uuid::Uuid;

use super::check::{read_batches, StoredBatch};
use super::controller::Image;
use super::{
    Envelope, Event, FetchAt, FetchedPartition, Msg, Mutation, Part, Sim, SimResult, Stop, Timer,
    CONTROLLER,
};
use crate::errors::KafkaError;
use crate::partition::{FetchAsked, Fetched, Opening, Partition, Reader};

/// How long a follower's Fetch waits at the leader for data (`REPLICA_FETCH_WAIT_MS`).
const FETCH_WAIT_MS: u64 = 500;
/// A follower gives a request up after this long (its connection broke) and backs off.
const FETCH_TIMEOUT_MS: u64 = 3_000;
/// Fetcher back-off after a failure, doubling (`REPLICA_BACKOFF_MIN` / `_MAX`).
const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 2_000;
/// A leader's ISR change gives up waiting for the controller after this long.
const ALTER_ISR_TIMEOUT_MS: u64 = 5_000;
/// acks=all re-reads the ISR this often (`ACKS_ALL_RECHECK`).
const ACKS_ALL_RECHECK_MS: u64 = 50;

/// The follower's fetch loop towards one leader.
struct Fetcher {
    id: u64,
    leader: i32,
    inflight: Option<u64>,
    /// What the request in flight asked (its answer is applied against it).
    asked: Option<FetchAsked>,
    backoff_ms: u64,
}

/// A follower's Fetch long-polling at this leader.
struct Parked {
    from: usize,
    fetcher: u64,
    req: u64,
    at: FetchAt,
    deadline: u64,
}

/// An acks=all produce waiting for the in-sync replicas.
struct Waiter {
    id: u64,
    epoch: i32,
    last_offset: i64,
    batches: Vec<StoredBatch>,
    deadline: u64,
    /// An end marker of this transactional producer: once acknowledged, its transaction
    /// is over.
    ends_txn_of: Option<i64>,
}

/// The simulated transactional producer's open transaction.
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenTxn {
    producer_id: i64,
    next_seq: i32,
    batches: u32,
    /// Decided: commit (true) or abort; its marker is sent until acknowledged.
    ending: Option<bool>,
}

/// `batch` (built without a producer) as a transactional batch of `producer_id` (epoch 0)
/// starting at sequence `seq`.
fn transactional(mut batch: Vec<u8>, producer_id: i64, seq: i32) -> Vec<u8> {
    batch[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&0i16.to_be_bytes());
    batch[53..57].copy_from_slice(&seq.to_be_bytes());
    rill_storage::batch::set_crc(&mut batch);
    batch
}

pub(super) struct SimBroker {
    pub id: i32,
    pub backend: MemoryBackend,
    /// 0 before the first start; each start is a new incarnation.
    pub inc: u32,
    pub up: bool,
    pub paused: bool,
    /// Events that reached this broker while it was paused, in order.
    pub held: Vec<Event>,
    pub part: Option<Part>,
    /// The metadata it applied last (kept over a restart, as the broker's raft log is).
    pub image: Image,
    /// The durable high-watermark checkpoint.
    pub hw_checkpoint: i64,
    fetchers: BTreeMap<i32, Fetcher>,
    parked: Vec<Parked>,
    isr_req: Option<u64>,
    waiters: Vec<Waiter>,
    /// (log end, high watermark) after the last event: a change wakes long polls and
    /// acks=all waits, as the partition's data event does.
    seen: (i64, i64),
    /// Lost power and its log has not reached again where it ended then (the value): it may
    /// end below what it reported (records it wrote as leader and never synced, acks 0 and
    /// 1; without `replica_fsync`, what it copied), which leaders' high watermarks count.
    pub lossy: Option<i64>,
}

impl SimBroker {
    pub fn new(id: i32, image: Image) -> SimBroker {
        SimBroker {
            id,
            backend: MemoryBackend::new(),
            inc: 0,
            up: false,
            paused: false,
            held: Vec::new(),
            part: None,
            image,
            hw_checkpoint: 0,
            fetchers: BTreeMap::new(),
            parked: Vec::new(),
            isr_req: None,
            waiters: Vec::new(),
            seen: (-1, -1),
            lossy: None,
        }
    }
}

fn concat(batches: &[Bytes]) -> Bytes {
    match batches {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut out = BytesMut::new();
            for b in many {
                out.extend_from_slice(b);
            }
            out.freeze()
        }
    }
}

/// An answer with `error` and nothing else.
fn answer(error: ErrorCode) -> FetchedPartition {
    FetchedPartition {
        error,
        high_watermark: -1,
        log_start_offset: -1,
        diverging: None,
        records: Bytes::new(),
    }
}

impl Sim {
    /// Broker `b`'s partition while it runs.
    pub(super) fn part(&self, b: usize) -> Option<Part> {
        let br = &self.brokers[b - 1];
        br.part.clone().filter(|_| br.up)
    }

    /// Starts broker `b` as a new incarnation: opens (recovers) its log, takes its
    /// checkpointed high watermark and its last metadata, and registers.
    pub(super) fn start_broker(&mut self, b: usize) -> SimResult<()> {
        let cfg = self.settings.log_config(&self.storage);
        let (clock, wall) = (self.clock(), self.wall_clock());
        let br = &mut self.brokers[b - 1];
        br.inc += 1;
        br.up = true;
        br.paused = false;
        br.held.clear();
        let log = match block_on(PartitionLog::open_with_clock(
            br.backend.clone(),
            "/sim/p-0",
            cfg,
            FileBudget::new(64),
            wall,
        )) {
            Ok(log) => log,
            Err(e) => return self.fail(format!("broker {b} cannot open its log: {e}")),
        };
        let br = &mut self.brokers[b - 1];
        let opening = Opening {
            topic: "sim".into(),
            index: 0,
            topic_id: Uuid::from_u128(0x5133),
            settings: self.settings.clone(),
            placement: br.image.effective(br.id, br.inc),
            me: br.id,
            producers_max: 100,
            metrics: &self.metrics,
            high_watermark: br.hw_checkpoint,
            replica_fsync: self.cfg.replica_fsync,
        };
        let p = Rc::new(Partition::with_clock(log, opening, clock));
        p.follower_skips_txn_state
            .set(self.cfg.mutation == Mutation::FollowerSkipsTxnState);
        let line = format!(
            "start broker {b} incarnation {}: log end {}, high watermark {}, epochs {:?}",
            br.inc,
            p.log().log_end_offset(),
            p.high_watermark(),
            p.log().leader_epochs().entries()
        );
        br.seen = (-1, -1);
        br.part = Some(p);
        self.log(line);
        self.timer(b, 0, Timer::Heartbeat);
        let phase = self.rng.range(0, 250);
        self.timer(b, phase, Timer::IsrCheck);
        let phase = self.rng.range(0, 200);
        self.timer(b, phase, Timer::FetcherScan);
        let phase = self.rng.range(0, 1_000);
        self.timer(b, phase, Timer::HwCheckpoint);
        let phase = self.rng.range(0, 50);
        self.timer(b, phase, Timer::FlushTick);
        Ok(())
    }

    /// Stops broker `b` the way `how` says; everything in its memory is gone.
    pub(super) fn stop_broker(&mut self, b: usize, how: Stop) -> SimResult<()> {
        let seed = self.rng.next_u64();
        let br = &mut self.brokers[b - 1];
        if !br.up {
            return Ok(());
        }
        let part = br.part.take();
        let end = part.as_ref().map_or(0, |p| p.log().log_end_offset());
        if how == Stop::Clean {
            if let Some(p) = &part {
                br.hw_checkpoint = p.high_watermark();
                block_on(p.close());
            }
        }
        drop(part);
        if how == Stop::PowerLoss {
            br.backend.crash(seed);
            br.lossy = Some(br.lossy.map_or(end, |was| was.max(end)));
        }
        br.up = false;
        br.paused = false;
        br.held.clear();
        br.fetchers.clear();
        br.parked.clear();
        br.isr_req = None;
        let waiting = br.waiters.len();
        br.waiters.clear();
        match how {
            Stop::PowerLoss => self.summary.power_losses += 1,
            _ => self.summary.kills += 1,
        }
        self.log(format!(
            "stop broker {b} ({how:?}); {waiting} acks=all produces unanswered"
        ));
        Ok(())
    }

    pub(super) fn on_timer(&mut self, b: usize, timer: Timer) -> SimResult<()> {
        // Heartbeats, fetcher scans, checkpoints and flushes send or persist but change no
        // log end, high watermark or metadata: nothing to wake or check after them.
        self.idle = matches!(
            timer,
            Timer::Heartbeat | Timer::FetcherScan | Timer::HwCheckpoint | Timer::FlushTick
        );
        match timer {
            Timer::Heartbeat => {
                self.timer(b, 500, Timer::Heartbeat);
                let incarnation = self.brokers[b - 1].inc;
                self.send(b, CONTROLLER, Msg::Heartbeat { incarnation });
            }
            Timer::IsrCheck => {
                self.timer(b, 250, Timer::IsrCheck);
                self.isr_check(b);
            }
            Timer::FetcherScan => {
                self.timer(b, 200, Timer::FetcherScan);
                self.fetcher_scan(b);
            }
            Timer::FetcherPickUp => self.fetcher_scan(b),
            Timer::HwCheckpoint => {
                self.timer(b, 1_000, Timer::HwCheckpoint);
                if let Some(p) = self.part(b) {
                    self.brokers[b - 1].hw_checkpoint = p.high_watermark();
                }
            }
            Timer::FlushTick => {
                self.timer(b, 50, Timer::FlushTick);
                if let Some(flush) = self.part(b).and_then(|p| p.background_flush()) {
                    block_on(flush);
                }
            }
            Timer::FetchNext { fetcher } => self.fetch_next(b, fetcher),
            Timer::FetchTimeout { fetcher, req } => {
                let Some(f) = self.brokers[b - 1]
                    .fetchers
                    .values_mut()
                    .find(|f| f.id == fetcher && f.inflight == Some(req))
                else {
                    self.idle = true; // answered in time
                    return Ok(());
                };
                f.inflight = None;
                let (leader, backoff) = (f.leader, f.backoff_ms);
                f.backoff_ms = (f.backoff_ms * 2).min(BACKOFF_MAX_MS);
                self.log(format!(
                    "broker {b}: fetch from {leader} timed out; reconnecting in {backoff} ms"
                ));
                self.timer(b, backoff, Timer::FetchNext { fetcher });
            }
            Timer::LongPoll { req } => {
                let br = &mut self.brokers[b - 1];
                if let Some(i) = br.parked.iter().position(|q| q.req == req) {
                    let q = br.parked.remove(i);
                    self.serve_fetch(b, q, true)?;
                } else {
                    self.idle = true; // answered before its wait ran out
                }
            }
            Timer::AlterIsrTimeout { req } => {
                if self.brokers[b - 1].isr_req == Some(req) {
                    self.brokers[b - 1].isr_req = None;
                    if let Some(p) = self.part(b) {
                        p.isr_change_done();
                    }
                }
            }
            Timer::AckRecheck { produce } => {
                if !self.brokers[b - 1].waiters.iter().any(|w| w.id == produce) {
                    self.idle = true; // answered already
                    return Ok(());
                }
                if self.poll_waiter(b, produce)? {
                    self.timer(b, ACKS_ALL_RECHECK_MS, Timer::AckRecheck { produce });
                }
            }
        }
        Ok(())
    }

    pub(super) fn broker_receive(&mut self, env: Envelope) -> SimResult<()> {
        let b = env.to;
        match env.msg {
            Msg::Image(image) => self.apply_image(b, *image),
            Msg::AlterIsrDone { req, image } => {
                self.apply_image(b, *image);
                if self.brokers[b - 1].isr_req == Some(req) {
                    self.brokers[b - 1].isr_req = None;
                    if let Some(p) = self.part(b) {
                        p.isr_change_done();
                    }
                }
            }
            Msg::FetchReq { fetcher, req, at } => {
                let q = Parked {
                    from: env.from,
                    fetcher,
                    req,
                    at,
                    deadline: self.now() + FETCH_WAIT_MS,
                };
                if self.serve_fetch(b, q, false)? {
                    self.timer(b, FETCH_WAIT_MS, Timer::LongPoll { req });
                }
            }
            Msg::FetchResp { fetcher, req, data } => self.on_fetch_resp(b, fetcher, req, *data)?,
            other => return self.fail(format!("broker {b} got {other:?}")),
        }
        Ok(())
    }

    /// A newer image: the partition takes its placement as this broker may act on it.
    fn apply_image(&mut self, b: usize, image: Image) {
        let br = &mut self.brokers[b - 1];
        if image.version <= br.image.version {
            return;
        }
        let before = br
            .part
            .as_ref()
            .map(|p| p.replica.borrow().placement().clone());
        let effective = image.effective(br.id, br.inc);
        br.image = image;
        let Some(p) = br.part.clone() else {
            return;
        };
        p.apply(&self.settings, &effective, &self.storage);
        let changed = before.as_ref().is_none_or(|was| {
            was.leader != effective.leader
                || was.leader_epoch != effective.leader_epoch
                || was.isr != effective.isr
        });
        // A broker that already fetches from the new leader for other partitions (one
        // fetcher per leader, `replica::run`) takes this one into that fetcher's next
        // request, without waiting for its next scan.
        let new_leader = before
            .as_ref()
            .is_none_or(|was| was.leader != effective.leader);
        if new_leader && self.fetcher_wanted(b).is_some() && self.rng.chance(0.5) {
            let delay = self.rng.range(0, 20);
            self.timer(b, delay, Timer::FetcherPickUp);
        }
        if changed {
            self.log(format!(
                "broker {b} applies leader {} epoch {} isr {:?} (partition epoch {}); log end {}, high watermark {}",
                effective.leader,
                effective.leader_epoch,
                effective.isr,
                effective.partition_epoch,
                p.log().log_end_offset(),
                p.high_watermark()
            ));
        }
    }

    /// The leader's ISR check: asks the controller for the change the partition wants.
    fn isr_check(&mut self, b: usize) {
        let Some(p) = self.part(b) else {
            return;
        };
        let image = self.brokers[b - 1].image.clone();
        let lag = Duration::from_millis(self.cfg.replica_lag_max_ms);
        let Some((placement, isr)) = p.isr_change(lag, |x| image.is_alive(x)) else {
            return;
        };
        let req = self.id();
        self.brokers[b - 1].isr_req = Some(req);
        self.log(format!(
            "broker {b} asks for isr {isr:?} (now {:?}, partition epoch {})",
            placement.isr, placement.partition_epoch
        ));
        self.send(
            b,
            CONTROLLER,
            Msg::AlterIsr {
                req,
                partition_epoch: placement.partition_epoch,
                leader: placement.leader,
                isr,
            },
        );
        self.timer(b, ALTER_ISR_TIMEOUT_MS, Timer::AlterIsrTimeout { req });
    }

    /// The leader broker `b` should start a fetcher for: it follows the partition's leader
    /// in its image and has no fetcher for that leader yet.
    fn fetcher_wanted(&self, b: usize) -> Option<i32> {
        let br = &self.brokers[b - 1];
        let p = &br.image.placement;
        let leader = p.leader;
        let wanted = br.part.is_some()
            && leader >= 0
            && leader != br.id
            && p.replicas.contains(&br.id)
            && !br.fetchers.contains_key(&leader);
        wanted.then_some(leader)
    }

    /// `replica::run`: a fetcher for the leader this broker follows, if none runs.
    fn fetcher_scan(&mut self, b: usize) {
        let Some(leader) = self.fetcher_wanted(b) else {
            return;
        };
        let id = self.id();
        self.brokers[b - 1].fetchers.insert(
            leader,
            Fetcher {
                id,
                leader,
                inflight: None,
                asked: None,
                backoff_ms: BACKOFF_MIN_MS,
            },
        );
        self.timer(b, 0, Timer::FetchNext { fetcher: id });
    }

    /// One turn of `replica::fetch_from`: stops when this broker no longer follows that
    /// leader, else sends the next Fetch.
    fn fetch_next(&mut self, b: usize, fetcher: u64) {
        let no_divergence_check = self.cfg.mutation == Mutation::NoDivergenceCheck;
        let fetch_bytes_max = self.cfg.fetch_bytes_max;
        let br = &mut self.brokers[b - 1];
        let Some(leader) = br
            .fetchers
            .values()
            .find(|f| f.id == fetcher)
            .map(|f| f.leader)
        else {
            return;
        };
        let p = &br.image.placement;
        let follows = p.leader == leader && p.replicas.contains(&br.id) && leader != br.id;
        let Some(part) = br.part.clone().filter(|_| follows) else {
            br.fetchers.remove(&leader);
            self.log(format!("broker {b}: fetcher for {leader} stops"));
            return;
        };
        let Some(asked) = part.fetch_asked(leader) else {
            // The partition has not taken the placement the image shows yet.
            self.timer(b, BACKOFF_MIN_MS, Timer::FetchNext { fetcher });
            return;
        };
        let at = FetchAt {
            offset: asked.fetch_offset,
            max_bytes: fetch_bytes_max,
            current_leader_epoch: asked.leader_epoch,
            last_fetched_epoch: if no_divergence_check {
                -1
            } else {
                part.last_fetched_epoch()
            },
        };
        let req = self.id();
        if let Some(f) = self.brokers[b - 1].fetchers.get_mut(&leader) {
            f.inflight = Some(req);
            f.asked = Some(asked);
        }
        self.send(b, leader as usize, Msg::FetchReq { fetcher, req, at });
        self.timer(b, FETCH_TIMEOUT_MS, Timer::FetchTimeout { fetcher, req });
    }

    /// The leader's side of a follower's Fetch: answered now when it has records or an
    /// error, or when `last` (the long poll is over); else it waits for data (true).
    fn serve_fetch(&mut self, b: usize, q: Parked, last: bool) -> SimResult<bool> {
        let (data, done) = match self.part(b) {
            None => (answer(ErrorCode::NotLeaderOrFollower), true),
            Some(p) => match block_on(p.fetch(Reader::Follower(q.from as i32), q.at)) {
                Ok(Fetched::Records(batches)) => {
                    let o = p.offsets();
                    let records = concat(&batches);
                    let done = !records.is_empty();
                    let data = FetchedPartition {
                        high_watermark: o.high_watermark,
                        log_start_offset: o.log_start_offset,
                        records,
                        ..answer(ErrorCode::None)
                    };
                    (data, done)
                }
                Ok(Fetched::Diverging { epoch, end_offset }) => {
                    let o = p.offsets();
                    let data = FetchedPartition {
                        high_watermark: o.high_watermark,
                        log_start_offset: o.log_start_offset,
                        diverging: Some((epoch, end_offset)),
                        ..answer(ErrorCode::None)
                    };
                    // Answered at once, as the Fetch handler does (no bytes, but news).
                    (data, true)
                }
                Err(e) => (answer(e.code), true),
            },
        };
        if done || last || self.now() >= q.deadline {
            let (fetcher, req) = (q.fetcher, q.req);
            self.send(
                b,
                q.from,
                Msg::FetchResp {
                    fetcher,
                    req,
                    data: Box::new(data),
                },
            );
            return Ok(false);
        }
        self.brokers[b - 1].parked.push(q);
        Ok(true)
    }

    /// A follower applies its leader's answer, then fetches again (at once, or after a
    /// back-off when nothing could be applied).
    fn on_fetch_resp(
        &mut self,
        b: usize,
        fetcher: u64,
        req: u64,
        data: FetchedPartition,
    ) -> SimResult<()> {
        let br = &mut self.brokers[b - 1];
        let Some(f) = br
            .fetchers
            .values_mut()
            .find(|f| f.id == fetcher && f.inflight == Some(req))
        else {
            return Ok(());
        };
        f.inflight = None;
        let leader = f.leader;
        let (Some(p), Some(asked)) = (br.part.clone(), f.asked.take()) else {
            return Ok(());
        };
        let before = (p.log().log_end_offset(), p.high_watermark());
        let what = match (&data.diverging, data.error) {
            (_, e) if e != ErrorCode::None => format!("error {e:?}"),
            (Some((epoch, end)), _) => format!("diverging at epoch {epoch} end {end}"),
            (None, _) => format!(
                "{} bytes, high watermark {}",
                data.records.len(),
                data.high_watermark
            ),
        };
        let diverging = data.diverging.is_some();
        let outcome = block_on(p.append_fetched(asked, data));
        let after = (p.log().log_end_offset(), p.high_watermark());
        if diverging || outcome.is_err() || before != after {
            self.log(format!(
                "broker {b} applies fetch from {leader}: {what}: log end {} -> {}, high watermark {} -> {}{}",
                before.0,
                after.0,
                before.1,
                after.1,
                if outcome.is_err() { " (not applied)" } else { "" }
            ));
        }
        if after.0 < before.0 {
            self.summary.truncations += 1;
        }
        let br = &mut self.brokers[b - 1];
        let Some(f) = br.fetchers.get_mut(&leader) else {
            return Ok(());
        };
        let delay = match outcome {
            Err(_) => {
                let d = f.backoff_ms;
                f.backoff_ms = (f.backoff_ms * 2).min(BACKOFF_MAX_MS);
                d
            }
            Ok(_) => {
                f.backoff_ms = BACKOFF_MIN_MS;
                0
            }
        };
        let fetcher = f.id;
        self.timer(b, delay, Timer::FetchNext { fetcher });
        Ok(())
    }

    /// A batch of `records` records named by the seed, `what` and their index (what a
    /// failure message shows of a batch), stamped with the wall clock.
    fn values_batch(&self, what: &str, records: u64) -> Vec<u8> {
        let values: Vec<String> = (0..records)
            .map(|r| format!("seed {} {what} record {r}", self.seed))
            .collect();
        let recs: Vec<build::Rec<'_>> = values
            .iter()
            .map(|v| build::Rec {
                key: None,
                value: v.as_bytes(),
                timestamp_ms: super::WALL_BASE_MS + self.now() as i64,
            })
            .collect();
        build::batch(&recs)
    }

    /// The broker a client's metadata names for the partition (sometimes not the leader).
    fn produce_target(&mut self) -> usize {
        let n = self.brokers.len() as u64;
        let leader = self.ctl.placement.leader;
        if leader >= 1 && self.rng.chance(0.8) {
            leader as usize
        } else {
            self.rng.range(1, n) as usize
        }
    }

    /// Transactional work instead of a plain produce: the next batch of the open
    /// transaction (one opens if none is), or its end marker.
    fn produce_txn(&mut self) -> SimResult<()> {
        let target = self.produce_target();
        let mut txn = match self.txn {
            Some(t) => t,
            None => {
                self.next_txn_producer += 1;
                OpenTxn {
                    producer_id: self.next_txn_producer,
                    next_seq: 0,
                    batches: 0,
                    ending: None,
                }
            }
        };
        if txn.ending.is_none() && txn.batches > 0 && self.rng.chance(0.35) {
            txn.ending = Some(self.rng.chance(0.5));
        }
        self.summary.produces += 1;
        let no = self.summary.produces;
        if self.brokers[target - 1].paused {
            self.txn = Some(txn);
            return Ok(());
        }
        let Some(p) = self.part(target) else {
            self.txn = Some(txn);
            return Ok(());
        };
        let epoch = p.replica.borrow().leader_epoch();
        let from = p.log().log_end_offset();
        let appended = match txn.ending {
            Some(commit) => {
                let m = crate::partition::MarkerWrite {
                    producer_id: txn.producer_id,
                    producer_epoch: 0,
                    coordinator_epoch: 0,
                    commit,
                };
                block_on(p.append_marker(m)).map(|(last, _)| last)
            }
            None => {
                let records = self.rng.range(1, 3) as i32;
                let plain = self.values_batch(
                    &format!("produce {no} txn {}", txn.producer_id),
                    records as u64,
                );
                let bytes = transactional(plain, txn.producer_id, txn.next_seq);
                let batch = CheckedBatch::check(Bytes::from(bytes))
                    .expect("the simulator builds valid batches");
                let appended = block_on(p.append_durably(vec![batch], -1));
                match &appended {
                    Ok(_) => {
                        txn.next_seq += records;
                        txn.batches += 1;
                        self.summary.txn_batches += 1;
                    }
                    // A batch a truncation took leaves the rest out of sequence: end it.
                    Err(e) if e.code == ErrorCode::OutOfOrderSequenceNumber => {
                        txn.ending = Some(false)
                    }
                    Err(_) => {}
                }
                appended.map(|(_, last, _)| last)
            }
        };
        self.txn = Some(txn);
        let what = match txn.ending {
            Some(true) => "commit marker",
            Some(false) => "abort marker",
            None => "transactional batch",
        };
        let last_offset = match appended {
            Ok(last) => last,
            Err(e) => {
                self.log(format!(
                    "{what} of producer {} to {target}: {:?}: {}",
                    txn.producer_id,
                    e.code,
                    e.message.as_deref().unwrap_or("")
                ));
                return Ok(());
            }
        };
        let to = p.log().log_end_offset();
        self.log(format!(
            "{what} of producer {} to {target}: [{from}, {to}) at epoch {epoch}",
            txn.producer_id
        ));
        let ends = txn.ending.map(|_| txn.producer_id);
        self.wait_for_isr(target, &p, epoch, from, last_offset, ends)
    }

    /// A client's produce, to the broker its metadata names (sometimes another one).
    pub(super) fn produce(&mut self) -> SimResult<()> {
        if self.cfg.txn_share > 0.0 && self.rng.chance(self.cfg.txn_share) {
            return self.produce_txn();
        }
        let target = self.produce_target();
        let acks: i16 = match self.rng.next_u64() % 10 {
            0 => 0,
            1..=3 => 1,
            _ => -1,
        };
        let count = self.rng.range(1, 3);
        let mut batches = Vec::new();
        self.summary.produces += 1;
        let no = self.summary.produces;
        for i in 0..count {
            let records = self.rng.range(1, 4);
            let bytes = Bytes::from(self.values_batch(&format!("produce {no} batch {i}"), records));
            batches.push(CheckedBatch::check(bytes).expect("the simulator builds valid batches"));
        }
        let br = &self.brokers[target - 1];
        if br.paused {
            return Ok(());
        }
        let Some(p) = self.part(target) else {
            return Ok(());
        };
        let epoch = p.replica.borrow().leader_epoch();
        let from = p.log().log_end_offset();
        // `Partition::produce` up to acks=all's wait, which the simulator runs on its own
        // timers (`await_replication` sleeps on a glommio timer) around the partition's own
        // decision, `replication_outcome`.
        let appended = block_on(p.append_durably(batches, acks));
        let last_offset = match appended {
            Ok((_, last_offset, _)) => last_offset,
            Err(e) => {
                self.log(format!(
                    "produce to {target} acks {acks}: {:?}: {}",
                    e.code,
                    e.message.as_deref().unwrap_or("")
                ));
                return Ok(());
            }
        };
        let to = p.log().log_end_offset();
        self.log(format!(
            "produce to {target} acks {acks}: [{from}, {to}) at epoch {epoch}"
        ));
        if acks == -1 {
            return self.wait_for_isr(target, &p, epoch, from, last_offset, None);
        }
        self.stamped(target, &p, epoch, from).map(|_| ())
    }

    /// What broker `target` appended at `from` as leader at `epoch`, each batch checked to
    /// carry that epoch.
    fn stamped(
        &self,
        target: usize,
        p: &Part,
        epoch: i32,
        from: i64,
    ) -> SimResult<Vec<StoredBatch>> {
        let to = p.log().log_end_offset();
        let stored = match read_batches(p, from, to) {
            Ok(s) => s,
            Err(e) => {
                return self.fail(format!("broker {target} cannot read what it appended: {e}"))
            }
        };
        if let Some(bad) = stored.iter().find(|s| s.epoch != epoch) {
            return self.fail(format!(
                "leader {target} at epoch {epoch} stamped the batch at {} with epoch {}",
                bad.base, bad.epoch
            ));
        }
        Ok(stored)
    }

    /// acks=all: the appended batches wait for the in-sync replicas on the simulator's
    /// timers, as `await_replication` waits on the broker's.
    fn wait_for_isr(
        &mut self,
        target: usize,
        p: &Part,
        epoch: i32,
        from: i64,
        last_offset: i64,
        ends_txn_of: Option<i64>,
    ) -> SimResult<()> {
        let stored = self.stamped(target, p, epoch, from)?;
        let id = self.id();
        let deadline = self.now() + self.cfg.replica_lag_max_ms + 20 * ACKS_ALL_RECHECK_MS;
        self.brokers[target - 1].waiters.push(Waiter {
            id,
            epoch,
            last_offset,
            batches: stored,
            deadline,
            ends_txn_of,
        });
        if self.poll_waiter(target, id)? {
            self.timer(
                target,
                ACKS_ALL_RECHECK_MS,
                Timer::AckRecheck { produce: id },
            );
        }
        Ok(())
    }

    /// One look of `await_replication` at its produce; true while it waits on. An
    /// acknowledged produce's batches join what must never be lost.
    fn poll_waiter(&mut self, b: usize, id: u64) -> SimResult<bool> {
        let Some(p) = self.part(b) else {
            return Ok(false);
        };
        let now = self.now();
        let br = &mut self.brokers[b - 1];
        let Some(i) = br.waiters.iter().position(|w| w.id == id) else {
            return Ok(false);
        };
        let w = &br.waiters[i];
        let outcome = if self.cfg.mutation == Mutation::AckDeposedLeader {
            // The answer as the broker gave it before 434f4c4: the high watermark first,
            // leadership only while the produce still waits.
            let end = p.log().log_end_offset();
            p.replica.borrow_mut().advance(end);
            if p.high_watermark() > w.last_offset {
                Some(Ok(()))
            } else if !p.is_leader() {
                Some(Err(KafkaError::new(
                    ErrorCode::NotLeaderOrFollower,
                    "no longer the leader",
                )))
            } else {
                None
            }
        } else {
            p.replication_outcome(w.last_offset, w.epoch)
        };
        let outcome = match outcome {
            Some(Ok(())) => "acknowledged".to_string(),
            Some(Err(e)) => format!("{:?}", e.code),
            None if now >= w.deadline => "REQUEST_TIMED_OUT".to_string(),
            None => return Ok(true),
        };
        let w = br.waiters.remove(i);
        let (first, last) = (w.batches[0].base, w.last_offset);
        let now_epoch = p.replica.borrow().leader_epoch();
        // Where the partition's leader (as the controller has it) stands: how near this
        // answer came to a high watermark past its records on another broker.
        let leader = self.ctl.placement.leader;
        let leader_hw = usize::try_from(leader)
            .ok()
            .filter(|l| *l != b)
            .and_then(|l| self.part(l))
            .map_or(-1, |lp| lp.high_watermark());
        self.log(format!(
            "acks=all produce [{first}, {}] at {b} (epoch {}, now {now_epoch}; leader {leader} at high watermark {leader_hw}): {outcome}",
            last, w.epoch
        ));
        if outcome == "acknowledged" {
            if let Some(pid) = w.ends_txn_of {
                if self.txn.is_some_and(|t| t.producer_id == pid) {
                    self.txn = None;
                }
                self.summary.txn_markers_acked += 1;
            }
            self.acknowledged(b, &p, w.epoch, w.batches)?;
        }
        Ok(false)
    }

    /// Wakes what waits on a partition whose log end or high watermark moved: long-polled
    /// fetches (when the log end passed their offset) and acks=all produces.
    pub(super) fn settle(&mut self) -> SimResult<()> {
        for _round in 0..8 {
            let mut moved = false;
            for b in 1..=self.brokers.len() {
                let Some(p) = self.part(b) else {
                    continue;
                };
                if self.brokers[b - 1].paused {
                    continue;
                }
                let now = (p.log().log_end_offset(), p.high_watermark());
                let seen = self.brokers[b - 1].seen;
                if now == seen {
                    continue;
                }
                self.brokers[b - 1].seen = now;
                // What wakes a produce's wait in the broker: the log end or the high
                // watermark moving up (`Partition::notify`, a follower's append). A
                // truncation wakes nothing; the wait sees it at its next look.
                let wakes_produces = now.0 > seen.0 || now.1 > seen.1;
                moved = true;
                let ready: Vec<Parked> = {
                    let br = &mut self.brokers[b - 1];
                    let (ready, wait) = std::mem::take(&mut br.parked)
                        .into_iter()
                        .partition(|q| now.0 > q.at.offset);
                    br.parked = wait;
                    ready
                };
                for q in ready {
                    self.serve_fetch(b, q, false)?;
                }
                if wakes_produces {
                    let ids: Vec<u64> = self.brokers[b - 1].waiters.iter().map(|w| w.id).collect();
                    for id in ids {
                        self.poll_waiter(b, id)?;
                    }
                }
            }
            if !moved {
                return Ok(());
            }
        }
        Ok(())
    }
}
