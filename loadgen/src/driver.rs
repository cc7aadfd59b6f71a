//! What runs on each executor: its producers' and consumers' tasks on their own
//! connections, the interval ticker, and the report back to the main thread.
//!
//! Per executor: one [`Recorder`] (`Rc<RefCell<_>>`, borrowed only between awaits), and
//! for every producer a writer task plus one reader task per broker connection (so a request
//! is written while answers to earlier ones arrive), and for every consumer one fetch loop
//! per broker it reads from. Executors connect first, wait for each other at a barrier, and
//! then all start at the same run time, so the schedule is the same for everyone.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use futures_lite::future;
use futures_lite::io::{split, AsyncWriteExt, ReadHalf, WriteHalf};
use rill_net::client::{Connection, ConnectionOptions};
use rill_net::frame::{FrameLimits, FrameReader};
use rill_net::kafka_protocol::messages::{ApiKey, ProduceResponse, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;

use crate::admin::Cluster;
use crate::config::{Acks, Workload};
use crate::consumer::{ConsumerCore, FetchSettings};
use crate::error::error_code_name;
use crate::group::{self, Answer, Coordinator, GroupError, MemberSettings, Next};
use crate::payload::{GeneratorShared, RecordGenerator};
use crate::producer::{
    ProducerCore, ProducerSettings, REQUEST_BYTES_MAX_DEFAULT, WAKE_GRANULARITY_NS_DEFAULT,
};
use crate::reconnect::{reconnect, Backoff, ReconnectSettings, Reconnected};
use crate::runtime::{self, Stream};
use crate::schedule::{Nanos, RunClock, Schedule, NANOS_PER_S};
use crate::stats::{
    Counts, ErrorCounts, ErrorKind, Events, IntervalStats, Latency, PartitionCounters, Recorder,
};
use crate::wire::{decode_body, decode_response_header, encode_produce, ProduceParams, CLIENT_ID};

/// Reports queued from executors to the main thread before intervals are dropped (the main
/// thread drains continuously; a drop is counted and reported).
pub const REPORT_QUEUE_MAX: usize = 4096;
/// Longest a producer or consumer goes without checking the stop flag.
pub const STOP_POLL_NS: Nanos = 100_000_000;
/// Pause after a fetch answer that carried errors, before fetching again.
pub const FETCH_ERROR_BACKOFF_MS: u64 = 100;
/// Bytes allowed in a fetch response frame beyond the records asked for (headers).
pub const FETCH_FRAME_SLACK_BYTES: usize = 1 << 20;
/// Delay between the start barrier and the first scheduled record, so every executor is
/// waiting on its timer when the schedule begins.
pub const START_DELAY_NS: Nanos = 20_000_000;

/// One producer's place in the run.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// Producer index.
    pub index: usize,
    /// Executor it runs on.
    pub executor: usize,
}

/// One consumer's place in the run.
#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    /// Consumer index.
    pub index: usize,
    /// Executor it runs on.
    pub executor: usize,
    /// Its partitions.
    pub partitions: Vec<i32>,
}

/// Run-wide coordination between executors and the main thread.
#[derive(Debug)]
pub struct Control {
    /// Set by Ctrl-C: producers stop generating and everyone drains.
    pub stop: Arc<AtomicBool>,
    /// Set when an executor could not connect: nobody starts.
    pub abort: AtomicBool,
    /// Executors wait here after connecting.
    pub barrier: Barrier,
    /// The run time the schedule starts at (0 until the first executor passes the barrier).
    pub start_ns: AtomicU64,
    /// Producers finished.
    pub producers_done: AtomicUsize,
    /// When the last producer finished.
    pub producers_done_ns: AtomicU64,
}

/// Everything executors need, shared read-only.
#[derive(Debug)]
pub struct RunPlan {
    /// The workload.
    pub workload: Workload,
    /// The topic's layout.
    pub cluster: Cluster,
    /// Time base.
    pub clock: RunClock,
    /// Tag stamped into this run's records.
    pub run_tag: u32,
    /// Executors.
    pub executors: usize,
    /// Producers.
    pub producers: Vec<ProducerPlan>,
    /// Consumers.
    pub consumers: Vec<ConsumerPlan>,
    /// Record generation shared parts.
    pub generator: GeneratorShared,
    /// Target rate, whole run (`None`: max).
    pub records_per_s: Option<f64>,
    /// Interval length.
    pub interval_ns: Nanos,
    /// Warm-up, a whole number of intervals.
    pub warmup_ns: Nanos,
    /// Measured duration (`None`: until `records`).
    pub duration_ns: Option<Nanos>,
    /// Per-partition progress.
    pub counters: Arc<PartitionCounters>,
    /// Coordination.
    pub control: Control,
}

impl RunPlan {
    fn drain_timeout_ns(&self) -> Nanos {
        (self.workload.drain_timeout * NANOS_PER_S as f64) as Nanos
    }

    fn reconnect_settings(&self) -> ReconnectSettings {
        let w = &self.workload;
        ReconnectSettings {
            backoff_ms: w.reconnect_backoff_ms,
            backoff_max_ms: w.reconnect_backoff_max_ms,
            timeout_ms: w.reconnect_timeout_ms,
            connect_timeout_ms: w.connect_timeout_ms,
        }
    }
}

/// What an executor sends the main thread.
#[derive(Debug)]
pub enum Report {
    /// One finished interval.
    Interval {
        /// Sender.
        executor: usize,
        /// Its figures.
        stats: Box<IntervalStats>,
    },
    /// The executor is done.
    Finished {
        /// Sender.
        executor: usize,
        /// Its results.
        result: Box<ExecutorResult>,
    },
}

/// An executor's results for the whole run.
#[derive(Debug)]
pub struct ExecutorResult {
    /// Run totals.
    pub totals: Counts,
    /// Inside the measurement window.
    pub window: Counts,
    /// Errors by label.
    pub errors: ErrorCounts,
    /// Measured ack latency.
    pub ack: Latency,
    /// Measured end-to-end latency.
    pub e2e: Latency,
    /// Last ack in the window.
    pub last_ack_ns: Nanos,
    /// Last consume in the window.
    pub last_consume_ns: Nanos,
    /// Largest schedule lag.
    pub lag_ns_max: Nanos,
    /// When the schedule started.
    pub start_ns: Nanos,
    /// Interval reports that could not be queued.
    pub intervals_dropped: u64,
    /// Why producers or consumers gave up.
    pub failures: Vec<String>,
    /// Connection and group events.
    pub events: Events,
}

/// Runs executor `executor`'s share of the plan and reports to `tx`.
pub async fn executor_main(plan: Arc<RunPlan>, executor: usize, tx: SyncSender<Report>) {
    let mut failures = Vec::new();
    let connect_timeout = Duration::from_millis(plan.workload.connect_timeout_ms);
    let mut producer_conns: Vec<(usize, Vec<Stream>)> = Vec::new();
    let mut consumer_conns: Vec<(usize, Vec<(usize, Stream)>)> = Vec::new();
    if !plan.workload.dry_run {
        'connect: for p in plan.producers.iter().filter(|p| p.executor == executor) {
            let mut streams = Vec::new();
            for b in &plan.cluster.brokers {
                match runtime::connect(&b.addr, connect_timeout).await {
                    Ok(s) => streams.push(s),
                    Err(e) => {
                        failures.push(format!(
                            "producer {} cannot connect to {}: {e}",
                            p.index, b.addr
                        ));
                        break 'connect;
                    }
                }
            }
            producer_conns.push((p.index, streams));
        }
        'connect_c: for c in plan.consumers.iter().filter(|c| c.executor == executor) {
            let mut streams = Vec::new();
            for (bi, b) in plan.cluster.brokers.iter().enumerate() {
                if !c
                    .partitions
                    .iter()
                    .any(|&p| plan.cluster.leaders[p as usize] == bi)
                {
                    continue;
                }
                match runtime::connect(&b.addr, connect_timeout).await {
                    Ok(s) => streams.push((bi, s)),
                    Err(e) => {
                        failures.push(format!(
                            "consumer {} cannot connect to {}: {e}",
                            c.index, b.addr
                        ));
                        break 'connect_c;
                    }
                }
            }
            consumer_conns.push((c.index, streams));
        }
    }
    if !failures.is_empty() {
        plan.control.abort.store(true, Ordering::SeqCst);
    }
    plan.control.barrier.wait();
    let start_ns = {
        let mine = plan.clock.now_ns() + START_DELAY_NS;
        match plan
            .control
            .start_ns
            .compare_exchange(0, mine, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => mine,
            Err(theirs) => theirs,
        }
    };
    let warmup_end = start_ns + plan.warmup_ns;
    let window_end = plan.duration_ns.map_or(Nanos::MAX, |d| warmup_end + d);
    let recorder = Rc::new(RefCell::new(Recorder::new(
        warmup_end,
        window_end,
        plan.counters.clone(),
    )));
    let dropped = Rc::new(Cell::new(0u64));
    // The interval being accumulated (the ticker advances it at each boundary).
    let current = Rc::new(Cell::new(0u64));
    if plan.control.abort.load(Ordering::SeqCst) {
        drop(producer_conns);
        drop(consumer_conns);
        // Count this executor's producers as done so nobody waits for them.
        let mine = plan
            .producers
            .iter()
            .filter(|p| p.executor == executor)
            .count();
        plan.control
            .producers_done
            .fetch_add(mine, Ordering::SeqCst);
    } else {
        let ticker = runtime::spawn(ticker(
            plan.clone(),
            executor,
            start_ns,
            recorder.clone(),
            tx.clone(),
            dropped.clone(),
            current.clone(),
        ));
        let mut tasks = Vec::new();
        if plan.workload.dry_run {
            for p in plan.producers.iter().filter(|p| p.executor == executor) {
                tasks.push(runtime::spawn(producer_task(
                    plan.clone(),
                    p.index,
                    Vec::new(),
                    start_ns,
                    recorder.clone(),
                )));
            }
        }
        for (index, streams) in producer_conns {
            tasks.push(runtime::spawn(producer_task(
                plan.clone(),
                index,
                streams,
                start_ns,
                recorder.clone(),
            )));
        }
        if plan.workload.group.is_some() {
            for c in plan.consumers.iter().filter(|c| c.executor == executor) {
                tasks.push(runtime::spawn(group_member_task(
                    plan.clone(),
                    c.index,
                    recorder.clone(),
                )));
            }
        }
        for (index, streams) in consumer_conns {
            for (broker, stream) in streams {
                tasks.push(runtime::spawn(consumer_task(
                    plan.clone(),
                    index,
                    broker,
                    stream,
                    recorder.clone(),
                )));
            }
        }
        for t in tasks {
            if let Err(e) = t.await {
                failures.push(e);
            }
        }
        drop(ticker);
        let last = recorder.borrow_mut().take_interval(current.get());
        send_interval(&tx, executor, last, &dropped);
    }
    // Tasks may still hold the recorder until the executor drops them: copy, don't unwrap.
    let r = recorder.borrow();
    let result = ExecutorResult {
        totals: r.totals,
        window: r.window,
        errors: r.errors.clone(),
        ack: r.ack.clone(),
        e2e: r.e2e.clone(),
        last_ack_ns: r.last_ack_ns,
        last_consume_ns: r.last_consume_ns,
        lag_ns_max: r.lag_ns_max,
        start_ns,
        intervals_dropped: dropped.get(),
        failures,
        events: r.events.clone(),
    };
    drop(r);
    // The final report must arrive: wait for room rather than drop it.
    let _ = tx.send(Report::Finished {
        executor,
        result: Box::new(result),
    });
}

fn send_interval(
    tx: &SyncSender<Report>,
    executor: usize,
    stats: IntervalStats,
    dropped: &Cell<u64>,
) {
    let stats = Box::new(stats);
    match tx.try_send(Report::Interval { executor, stats }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            dropped.set(dropped.get() + 1)
        }
    }
}

async fn ticker(
    plan: Arc<RunPlan>,
    executor: usize,
    start_ns: Nanos,
    recorder: Rc<RefCell<Recorder>>,
    tx: SyncSender<Report>,
    dropped: Rc<Cell<u64>>,
    current: Rc<Cell<u64>>,
) {
    loop {
        let index = current.get();
        let boundary = start_ns + (index + 1) * plan.interval_ns;
        runtime::sleep_until(plan.clock.instant(boundary)).await;
        let stats = recorder.borrow_mut().take_interval(index);
        current.set(index + 1);
        send_interval(&tx, executor, stats, &dropped);
    }
}

fn producer_schedule(plan: &RunPlan, index: usize, start_ns: Nanos) -> Schedule {
    let n = plan.producers.len() as u64;
    let records_max = (plan.workload.records > 0).then(|| {
        let base = plan.workload.records / n;
        base + u64::from((index as u64) < plan.workload.records % n)
    });
    let end_ns = plan.duration_ns.map(|d| start_ns + plan.warmup_ns + d);
    match plan.records_per_s {
        Some(rate) => Schedule::fixed(
            start_ns,
            rate / n as f64,
            index,
            plan.producers.len(),
            records_max,
            end_ns,
        ),
        None => Schedule::max(start_ns, records_max, end_ns),
    }
}

async fn producer_task(
    plan: Arc<RunPlan>,
    index: usize,
    streams: Vec<Stream>,
    start_ns: Nanos,
    recorder: Rc<RefCell<Recorder>>,
) -> Result<(), String> {
    let w = &plan.workload;
    let dry = w.dry_run;
    let settings = ProducerSettings {
        // A dry run has nobody to answer: records count once encoded.
        acks: if dry { Acks::None } else { w.acks },
        batch_bytes: w.batch_bytes,
        linger_ns: w.linger_ms * 1_000_000,
        inflight_requests_max: w.max_inflight,
        buffer_bytes_max: w.buffer_bytes,
        request_bytes_max: REQUEST_BYTES_MAX_DEFAULT
            .max(w.batch_bytes + w.record_bytes.max() + 1024),
        wake_granularity_ns: WAKE_GRANULARITY_NS_DEFAULT,
        compression: w.compression.kafka(),
        epoch_unix_ms: plan.clock.unix_ms(0),
    };
    let generator = RecordGenerator::new(
        &plan.generator,
        index as u32,
        plan.cluster.leaders.len() as u32,
    );
    let schedule = producer_schedule(&plan, index, start_ns);
    let core = Rc::new(RefCell::new(ProducerCore::new(
        settings,
        schedule,
        generator,
        &plan.cluster.leaders,
    )));
    let answered = Rc::new(Event::new());
    let brokers_n = plan.cluster.brokers.len();
    let mut writers: Vec<Option<WriteHalf<Stream>>> = Vec::new();
    let mut readers: Vec<Option<runtime::Task<()>>> = Vec::new();
    for (b, stream) in streams.into_iter().enumerate() {
        let (r, wr) = split(stream);
        writers.push(Some(wr));
        readers.push(Some(runtime::spawn(produce_reader(
            plan.clone(),
            b,
            r,
            core.clone(),
            recorder.clone(),
            answered.clone(),
        ))));
    }
    // Per broker: a reconnection under way, where its outcome lands, and whether the
    // broker was given up on.
    let mut reconnecting: Vec<Option<runtime::Task<()>>> = (0..brokers_n).map(|_| None).collect();
    let landed: Landed = Rc::new(RefCell::new((0..brokers_n).map(|_| None).collect()));
    let mut given_up = vec![false; brokers_n];
    let topic = TopicName(StrBytes::from_string(plan.cluster.topic.clone()));
    let client_id = StrBytes::from_static_str(CLIENT_ID);
    let clock = plan.clock;
    let drain_timeout = plan.drain_timeout_ns();
    let mut drain_deadline: Option<Nanos> = None;
    let schedule_end = plan.duration_ns.map(|d| start_ns + plan.warmup_ns + d);
    runtime::sleep_until(clock.instant(start_ns)).await;
    loop {
        for b in 0..if dry { 0 } else { brokers_n } {
            let outcome = landed.borrow_mut()[b].take();
            match outcome {
                Some(Ok(back)) => {
                    reconnecting[b] = None;
                    follow_leaders(&plan, b, &back.leaders, &core, &recorder);
                    let (r, wr) = split(back.stream);
                    writers[b] = Some(wr);
                    readers[b] = Some(runtime::spawn(produce_reader(
                        plan.clone(),
                        b,
                        r,
                        core.clone(),
                        recorder.clone(),
                        answered.clone(),
                    )));
                    core.borrow_mut().on_reconnected(b);
                    recorder.borrow_mut().events.reconnects += 1;
                }
                Some(Err(reason)) => {
                    reconnecting[b] = None;
                    given_up[b] = true;
                    core.borrow_mut()
                        .give_up(b, &reason, &mut recorder.borrow_mut());
                    // The run cannot go on as asked: everyone stops generating and drains.
                    plan.control.stop.store(true, Ordering::SeqCst);
                }
                None => {}
            }
            let lost = !core.borrow().is_alive(b) && reconnecting[b].is_none() && !given_up[b];
            if lost {
                writers[b] = None;
                readers[b] = None;
                {
                    let mut r = recorder.borrow_mut();
                    r.events.connections_lost += 1;
                    r.error(ErrorKind::Client("produce connection lost"), 1);
                }
                let partitions: Vec<i32> = core
                    .borrow()
                    .partitions_of(b)
                    .iter()
                    .map(|&p| p as i32)
                    .collect();
                reconnecting[b] = Some(runtime::spawn(reconnect_into(
                    plan.clone(),
                    b,
                    partitions,
                    landed.clone(),
                    answered.clone(),
                    recorder.clone(),
                    (index as u64) << 16 | b as u64,
                )));
            }
        }
        let now = clock.now_ns();
        if plan.control.stop.load(Ordering::Relaxed) {
            core.borrow_mut().stop();
        }
        core.borrow_mut().fill(now, &mut recorder.borrow_mut());
        let brokers = core.borrow().broker_count();
        for (b, given_up_b) in given_up.iter_mut().enumerate().take(brokers) {
            loop {
                let next = core
                    .borrow_mut()
                    .next_request(b, now, &mut recorder.borrow_mut());
                let Some(req) = next else {
                    break;
                };
                let params = ProduceParams {
                    topic: &topic,
                    acks: w.acks.wire(),
                    timeout_ms: w.request_timeout_ms as i32,
                    api_version: plan.cluster.brokers[b].produce_version,
                    client_id: &client_id,
                };
                let frame =
                    match encode_produce(&params, req.correlation_id(), &req.batches, req.size) {
                        Ok(f) => f,
                        Err(e) => {
                            let reason = format!("cannot encode a produce request: {e}");
                            core.borrow_mut()
                                .give_up(b, &reason, &mut recorder.borrow_mut());
                            *given_up_b = true;
                            break;
                        }
                    };
                let wire = frame.len();
                // A dry run has no writer: the request is encoded and dropped.
                if let Some(slot) = writers.get_mut(b) {
                    let Some(writer) = slot.as_mut() else {
                        break;
                    };
                    if write_frame(writer, frame).await.is_err() {
                        core.borrow_mut()
                            .on_connection_lost(b, &mut recorder.borrow_mut());
                        answered.notify(usize::MAX);
                        break;
                    }
                }
                core.borrow_mut().on_written(
                    b,
                    req.id,
                    wire,
                    clock.now_ns(),
                    &mut recorder.borrow_mut(),
                );
                if dry {
                    runtime::yield_if_needed().await;
                }
            }
        }
        if core.borrow().finished() {
            break;
        }
        let now = clock.now_ns();
        // The drain starts when generation is over, or at the end of the measured time even
        // if the producer is still behind its schedule: a broker that cannot keep up must
        // not stretch the run without bound.
        if core.borrow().generation_over() || schedule_end.is_some_and(|e| now >= e) {
            let deadline = *drain_deadline.get_or_insert(now + drain_timeout);
            if now >= deadline {
                core.borrow_mut().abandon(
                    "produce unacknowledged at drain timeout",
                    "produce never sent: behind schedule at drain timeout",
                    &mut recorder.borrow_mut(),
                );
                break;
            }
        }
        let mut wake = core.borrow().next_wake(now).unwrap_or(now + STOP_POLL_NS);
        wake = wake.min(now + STOP_POLL_NS);
        if let Some(d) = drain_deadline {
            wake = wake.min(d);
        }
        if wake > now {
            let listener = answered.listen();
            future::or(runtime::sleep_until(clock.instant(wake)), listener).await;
        } else {
            runtime::yield_if_needed().await;
        }
    }
    for wr in writers.iter_mut().flatten() {
        let _ = wr.close().await;
    }
    drop(readers);
    drop(reconnecting);
    let now = clock.now_ns();
    plan.control
        .producers_done_ns
        .fetch_max(now, Ordering::SeqCst);
    plan.control.producers_done.fetch_add(1, Ordering::SeqCst);
    let failure = core
        .borrow()
        .failure()
        .map(|f| format!("producer {index}: {f}"));
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// Per broker: the outcome of a reconnection, left by its task for the producer task.
type Landed = Rc<RefCell<Vec<Option<Result<Reconnected, String>>>>>;

/// Reconnects to broker `b` and leaves the outcome in `landed[b]`.
async fn reconnect_into(
    plan: Arc<RunPlan>,
    b: usize,
    partitions: Vec<i32>,
    landed: Landed,
    answered: Rc<Event>,
    recorder: Rc<RefCell<Recorder>>,
    seed: u64,
) {
    let addr = &plan.cluster.brokers[b].addr;
    let outcome = reconnect(
        addr,
        &plan.cluster.topic,
        &partitions,
        plan.reconnect_settings(),
        Instant::now(),
        seed,
        |_| recorder.borrow_mut().events.reconnect_attempts_failed += 1,
    )
    .await;
    landed.borrow_mut()[b] = Some(outcome);
    answered.notify(usize::MAX);
}

/// After a reconnect to broker `b`: partitions whose leader moved to another broker of the
/// run follow it; a leader outside the run's brokers is counted (its records will fail with
/// the broker's NOT_LEADER answers).
fn follow_leaders(
    plan: &RunPlan,
    b: usize,
    leaders: &[(i32, i32)],
    core: &Rc<RefCell<ProducerCore>>,
    recorder: &Rc<RefCell<Recorder>>,
) {
    for &(p, node) in leaders {
        match plan.cluster.brokers.iter().position(|x| x.node_id == node) {
            Some(nb) if nb != b => core.borrow_mut().set_leader(p as usize, nb),
            Some(_) => {}
            None => recorder.borrow_mut().error(
                ErrorKind::Client("partition leader moved outside the run's brokers"),
                1,
            ),
        }
    }
}

async fn write_frame(w: &mut WriteHalf<Stream>, frame: Bytes) -> std::io::Result<()> {
    let mut pieces = [frame];
    rill_net::write_pieces(w, &mut pieces).await?;
    w.flush().await
}

async fn produce_reader(
    plan: Arc<RunPlan>,
    broker: usize,
    read: ReadHalf<Stream>,
    core: Rc<RefCell<ProducerCore>>,
    recorder: Rc<RefCell<Recorder>>,
    answered: Rc<Event>,
) {
    let version = plan.cluster.brokers[broker].produce_version;
    let mut frames = FrameReader::new(read, FrameLimits::responses());
    loop {
        let next = frames.next_frame().await;
        let now = plan.clock.now_ns();
        let outcome: Result<(), String> = match next {
            Ok(Some(frame)) => {
                let expected = core.borrow().expected_correlation(broker);
                match expected {
                    None => Err("an answer arrived with nothing in flight".to_string()),
                    Some(expected) => decode_response_header(frame, ApiKey::Produce, version)
                        .and_then(|(corr, body)| {
                            if corr != expected {
                                return Err(rill_net::NetError::CorrelationMismatch {
                                    expected,
                                    actual: corr,
                                });
                            }
                            decode_body::<ProduceResponse>(body, ApiKey::Produce, version)
                        })
                        .map_err(|e| e.to_string())
                        .and_then(|response| {
                            core.borrow_mut().on_response(
                                broker,
                                &response,
                                now,
                                &mut recorder.borrow_mut(),
                            )
                        }),
                }
            }
            Ok(None) => Err("the broker closed the connection".to_string()),
            Err(e) => Err(e.to_string()),
        };
        if outcome.is_err() {
            // The producer task sees the broker down and reconnects.
            core.borrow_mut()
                .on_connection_lost(broker, &mut recorder.borrow_mut());
            answered.notify(usize::MAX);
            return;
        }
        answered.notify(usize::MAX);
    }
}

fn fetch_settings(w: &Workload) -> FetchSettings {
    FetchSettings {
        max_wait_ms: w.fetch_max_wait_ms as i32,
        max_bytes: w.fetch_bytes as i32,
        partition_max_bytes: w.partition_fetch_bytes as i32,
        isolation_level: i8::from(w.read_committed),
    }
}

fn fetch_connection_options(w: &Workload) -> ConnectionOptions {
    ConnectionOptions {
        client_id: CLIENT_ID.to_string(),
        inflight_requests_max: 1,
        response_frame_bytes_max: w.fetch_bytes + FETCH_FRAME_SLACK_BYTES,
    }
}

/// One consumer's fetching from one broker: the connection (re-established when it drops)
/// and the partitions' positions.
struct Fetcher {
    plan: Arc<RunPlan>,
    consumer: usize,
    broker: usize,
    conn: Connection<Stream>,
    core: ConsumerCore,
    recorder: Rc<RefCell<Recorder>>,
}

impl Fetcher {
    /// Connects consumer `consumer` to `broker` for `partitions` (with their start offsets).
    async fn connect(
        plan: Arc<RunPlan>,
        consumer: usize,
        broker: usize,
        partitions: &[(i32, i64)],
        recorder: Rc<RefCell<Recorder>>,
    ) -> Result<Fetcher, String> {
        let w = &plan.workload;
        let addr = plan.cluster.brokers[broker].addr.clone();
        let timeout = Duration::from_millis(w.connect_timeout_ms);
        let stream = match runtime::connect(&addr, timeout).await {
            Ok(s) => s,
            Err(_) => {
                let parts: Vec<i32> = partitions.iter().map(|p| p.0).collect();
                let back = reconnect(
                    &addr,
                    &plan.cluster.topic,
                    &parts,
                    plan.reconnect_settings(),
                    Instant::now(),
                    (2 << 32) | consumer as u64,
                    |_| recorder.borrow_mut().events.reconnect_attempts_failed += 1,
                )
                .await
                .map_err(|reason| format!("consumer {consumer}: {reason}"))?;
                back.stream
            }
        };
        Ok(Fetcher::new(
            plan, consumer, broker, stream, partitions, recorder,
        ))
    }

    fn new(
        plan: Arc<RunPlan>,
        consumer: usize,
        broker: usize,
        stream: Stream,
        partitions: &[(i32, i64)],
        recorder: Rc<RefCell<Recorder>>,
    ) -> Fetcher {
        let w = &plan.workload;
        let core = ConsumerCore::new(
            &plan.cluster.topic,
            plan.run_tag,
            fetch_settings(w),
            partitions,
        );
        let conn = Connection::with_options(stream, fetch_connection_options(w));
        Fetcher {
            plan,
            consumer,
            broker,
            conn,
            core,
            recorder,
        }
    }

    /// One fetch round trip; a dropped connection is re-established (counted) before it
    /// returns. `Err`: the broker stayed unreachable past the deadline, or records did not
    /// decode.
    async fn step(&mut self) -> Result<(), String> {
        let plan = &self.plan;
        let info = &plan.cluster.brokers[self.broker];
        let index = self.consumer;
        let request = self.core.fetch_request();
        let response = match self.conn.send(info.fetch_version, &request).await {
            Ok(r) => r,
            Err(_) => {
                {
                    let mut r = self.recorder.borrow_mut();
                    r.events.connections_lost += 1;
                    r.error(ErrorKind::Client("fetch connection lost"), 1);
                }
                let partitions: Vec<i32> = self.core.positions().iter().map(|p| p.0).collect();
                let recorder = &self.recorder;
                let back = reconnect(
                    &info.addr,
                    &plan.cluster.topic,
                    &partitions,
                    plan.reconnect_settings(),
                    Instant::now(),
                    (1 << 32) | index as u64,
                    |_| recorder.borrow_mut().events.reconnect_attempts_failed += 1,
                )
                .await;
                return match back {
                    Ok(back) => {
                        let moved = back.leaders.iter().filter(|l| l.1 != info.node_id).count();
                        // A consumer reads from the leaders it started with; one that moved
                        // answers NOT_LEADER, counted by the fetch loop.
                        let mut r = self.recorder.borrow_mut();
                        r.error(
                            ErrorKind::Client("fetch leader moved (not followed)"),
                            moved as u64,
                        );
                        r.events.reconnects += 1;
                        self.conn = Connection::with_options(
                            back.stream,
                            fetch_connection_options(&plan.workload),
                        );
                        Ok(())
                    }
                    Err(reason) => {
                        plan.control.stop.store(true, Ordering::SeqCst);
                        Err(format!("consumer {index}: {reason}"))
                    }
                };
            }
        };
        let clock = plan.clock;
        let now = clock.now_ns();
        let outcome = self
            .core
            .on_response(&response, now, &mut self.recorder.borrow_mut());
        match outcome {
            Ok(o) if o.errors > 0 => {
                let until = clock.instant(now) + Duration::from_millis(FETCH_ERROR_BACKOFF_MS);
                runtime::sleep_until(until).await;
                Ok(())
            }
            Ok(_) => {
                runtime::yield_if_needed().await;
                Ok(())
            }
            Err(e) => {
                self.recorder
                    .borrow_mut()
                    .error(ErrorKind::Client("fetch undecodable records"), 1);
                Err(format!("consumer {index}: {e}"))
            }
        }
    }
}

async fn consumer_task(
    plan: Arc<RunPlan>,
    index: usize,
    broker: usize,
    stream: Stream,
    recorder: Rc<RefCell<Recorder>>,
) -> Result<(), String> {
    let Some(me) = plan.consumers.iter().find(|c| c.index == index) else {
        return Ok(());
    };
    let partitions: Vec<(i32, i64)> = me
        .partitions
        .iter()
        .filter(|&&p| plan.cluster.leaders[p as usize] == broker)
        .map(|&p| (p, plan.cluster.start_offsets[p as usize]))
        .collect();
    let mut f = Fetcher::new(
        plan.clone(),
        index,
        broker,
        stream,
        &partitions,
        recorder.clone(),
    );
    let clock = plan.clock;
    let drain_timeout = plan.drain_timeout_ns();
    let producers = plan.producers.len();
    loop {
        if plan.control.producers_done.load(Ordering::SeqCst) >= producers {
            if f.core.caught_up(&plan.counters) {
                return Ok(());
            }
            let done_ns = plan.control.producers_done_ns.load(Ordering::SeqCst);
            if clock.now_ns() >= done_ns + drain_timeout {
                let missing = f.core.missing(&plan.counters);
                recorder.borrow_mut().error(
                    ErrorKind::Client("records not consumed by drain timeout"),
                    missing,
                );
                return Ok(());
            }
        }
        f.step().await?;
    }
}

/// Positions (next offset to read) a group member's fetchers share with it.
type Positions = Rc<RefCell<BTreeMap<i32, i64>>>;

/// Fetches `partitions` from `broker` for group member `index`, publishing positions after
/// every answer, until dropped (at a rebalance) or it fails (left in `failure`).
async fn group_fetcher(
    plan: Arc<RunPlan>,
    index: usize,
    broker: usize,
    partitions: Vec<(i32, i64)>,
    positions: Positions,
    failure: Rc<RefCell<Option<String>>>,
    recorder: Rc<RefCell<Recorder>>,
) {
    let mut f = match Fetcher::connect(plan, index, broker, &partitions, recorder).await {
        Ok(f) => f,
        Err(e) => {
            *failure.borrow_mut() = Some(e);
            return;
        }
    };
    loop {
        if let Err(e) = f.step().await {
            *failure.borrow_mut() = Some(e);
            return;
        }
        // Same poll as the answer's handling: a fetcher dropped at a rebalance never leaves
        // records consumed but not in the positions the member commits.
        positions.borrow_mut().extend(f.core.positions());
    }
}

/// Counts a group api's answer: protocol steps as events, anything else as an error.
fn count_answer(recorder: &Rc<RefCell<Recorder>>, api: &'static str, code: i16) {
    let mut r = recorder.borrow_mut();
    match group::classify(code) {
        Answer::Ok => {}
        Answer::Step(_) => {
            *r.events
                .group_answers
                .entry(group::answer_label(api, code))
                .or_default() += 1;
        }
        Answer::Error(_) | Answer::Fatal => r.error(ErrorKind::Group(api, code), 1),
    }
}

/// Finds the group's coordinator through the bootstrap servers and connects, retrying with
/// backoff until `reconnect_timeout_ms` from now.
async fn connect_coordinator(
    plan: &RunPlan,
    index: usize,
    group_id: &str,
    member_id: String,
    generation: i32,
    recorder: &Rc<RefCell<Recorder>>,
) -> Result<Coordinator, String> {
    let w = &plan.workload;
    let timeout = Duration::from_millis(w.connect_timeout_ms);
    let settings = plan.reconnect_settings();
    let give_up_at = Instant::now() + Duration::from_millis(settings.timeout_ms);
    let mut backoff = Backoff::new(
        settings.backoff_ms,
        settings.backoff_max_ms,
        (3 << 32) | index as u64,
    );
    loop {
        let mut last = String::from("no bootstrap server");
        for b in w.bootstrap_servers() {
            match group::find_coordinator(&b, group_id, timeout).await {
                Ok(Ok(addr)) => {
                    match Coordinator::connect(
                        &addr,
                        group_id,
                        &plan.cluster.topic,
                        member_id.clone(),
                        generation,
                        timeout,
                    )
                    .await
                    {
                        Ok(c) => return Ok(c),
                        Err(e) => last = e,
                    }
                }
                Ok(Err(code)) => {
                    count_answer(recorder, "FindCoordinator", code);
                    last = format!("FindCoordinator: {}", error_code_name(code));
                }
                Err(e) => last = e,
            }
        }
        recorder.borrow_mut().events.reconnect_attempts_failed += 1;
        if Instant::now() >= give_up_at {
            return Err(format!(
                "no coordinator for group {group_id} reachable within {} ms (reconnect_timeout_ms); the last failure: {last}",
                settings.timeout_ms
            ));
        }
        runtime::sleep_until((Instant::now() + backoff.next_delay()).min(give_up_at)).await;
    }
}

/// Polling period of a group member between heartbeats and commits (end-of-run checks,
/// fetcher failures).
const GROUP_POLL_MS: u64 = 20;

/// A consumer in a group: joins, fetches what it is assigned (one fetcher per leader),
/// heartbeats, commits, rejoins on a rebalance, and at the end commits and leaves.
async fn group_member_task(
    plan: Arc<RunPlan>,
    index: usize,
    recorder: Rc<RefCell<Recorder>>,
) -> Result<(), String> {
    let w = &plan.workload;
    let group_id = w.group.clone().unwrap_or_default();
    let clock = plan.clock;
    let all: Vec<i32> = (0..plan.cluster.leaders.len() as i32).collect();
    let settings = MemberSettings {
        session_timeout_ms: w.session_timeout_ms as i32,
        rebalance_timeout_ms: w.rebalance_timeout_ms as i32,
    };
    let heartbeat_ns = w.heartbeat_interval_ms * 1_000_000;
    let commit_ns = w.commit_interval_ms * 1_000_000;
    let drain_timeout = plan.drain_timeout_ns();
    let producers = plan.producers.len();
    let fail = |e: String| {
        plan.control.stop.store(true, Ordering::SeqCst);
        Err(format!("consumer {index} (group {group_id}): {e}"))
    };
    let (mut member_id, mut generation) = (String::new(), -1);
    let mut unassigned_since = clock.now_ns();
    let mut first_session = true;
    loop {
        if !first_session {
            let mut r = recorder.borrow_mut();
            r.events.connections_lost += 1;
        }
        let mut coord = match connect_coordinator(
            &plan,
            index,
            &group_id,
            member_id.clone(),
            generation,
            &recorder,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        if !first_session {
            recorder.borrow_mut().events.reconnects += 1;
        }
        first_session = false;
        // Leaving this loop means: find the coordinator again (connection lost, or
        // NOT_COORDINATOR and the like); a rebalance continues it.
        'generation: loop {
            let joined = coord
                .join(settings, &all, |api, code| {
                    count_answer(&recorder, api, code)
                })
                .await;
            let joined = match joined {
                Ok(j) => j,
                Err(GroupError::Lost(_)) => break 'generation,
                Err(GroupError::Code { code, .. }) => match group::classify(code) {
                    Answer::Error(Next::Refind) => break 'generation,
                    _ => return fail(format!("joining: {}", error_code_name(code))),
                },
            };
            let committed = match coord.committed(&joined.partitions).await {
                Ok(c) => c,
                Err(GroupError::Lost(_)) => break 'generation,
                Err(GroupError::Code { api, code }) => {
                    count_answer(&recorder, api, code);
                    match group::classify(code) {
                        Answer::Fatal => {
                            return fail(format!("reading offsets: {}", error_code_name(code)))
                        }
                        Answer::Error(Next::Refind) => break 'generation,
                        _ => continue 'generation,
                    }
                }
            };
            let positions: Positions = Rc::new(RefCell::new(
                joined
                    .partitions
                    .iter()
                    .map(|&p| {
                        let start = plan.cluster.start_offsets.get(p as usize).copied();
                        (p, committed.get(&p).copied().or(start).unwrap_or(0))
                    })
                    .collect(),
            ));
            recorder.borrow_mut().events.joined(
                joined.generation,
                clock.now_ns().saturating_sub(unassigned_since),
            );
            let failure: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
            let mut by_broker: BTreeMap<usize, Vec<(i32, i64)>> = BTreeMap::new();
            for (&p, &o) in positions.borrow().iter() {
                if let Some(&b) = plan.cluster.leaders.get(p as usize) {
                    by_broker.entry(b).or_default().push((p, o));
                }
            }
            let mut fetchers: Vec<runtime::Task<()>> = by_broker
                .into_iter()
                .map(|(b, parts)| {
                    runtime::spawn(group_fetcher(
                        plan.clone(),
                        index,
                        b,
                        parts,
                        positions.clone(),
                        failure.clone(),
                        recorder.clone(),
                    ))
                })
                .collect();
            let mut next_heartbeat = clock.now_ns() + heartbeat_ns;
            let mut next_commit = clock.now_ns() + commit_ns;
            loop {
                let wake = next_heartbeat
                    .min(next_commit)
                    .min(clock.now_ns() + GROUP_POLL_MS * 1_000_000);
                runtime::sleep_until(clock.instant(wake)).await;
                let now = clock.now_ns();
                let failed = failure.borrow_mut().take();
                // The end: every partition read up to what was acknowledged (whoever reads
                // it), or the drain timeout.
                let mut finished = false;
                if plan.control.producers_done.load(Ordering::SeqCst) >= producers {
                    let c = &plan.counters;
                    if (0..c.len()).all(|p| c.consumed(p) >= c.acked(p)) {
                        finished = true;
                    } else if now
                        >= plan.control.producers_done_ns.load(Ordering::SeqCst) + drain_timeout
                    {
                        let missing: u64 = positions
                            .borrow()
                            .keys()
                            .map(|&p| c.acked(p as usize).saturating_sub(c.consumed(p as usize)))
                            .sum();
                        recorder.borrow_mut().error(
                            ErrorKind::Client("records not consumed by drain timeout"),
                            missing,
                        );
                        finished = true;
                    }
                }
                if finished || failed.is_some() {
                    fetchers.clear();
                    let last = positions.borrow().clone();
                    commit(&mut coord, &last, &recorder).await;
                    if let Ok(code) = coord.leave().await {
                        count_answer(&recorder, "LeaveGroup", code);
                    }
                    return match failed {
                        Some(e) => fail(e),
                        None => Ok(()),
                    };
                }
                if now >= next_commit {
                    next_commit = now + commit_ns;
                    let current = positions.borrow().clone();
                    if !commit(&mut coord, &current, &recorder).await {
                        unassigned_since = clock.now_ns();
                        break 'generation;
                    }
                }
                if now >= next_heartbeat {
                    next_heartbeat = now + heartbeat_ns;
                    let answer = match coord.heartbeat().await {
                        Ok(code) => {
                            count_answer(&recorder, "Heartbeat", code);
                            group::classify(code)
                        }
                        Err(_) => Answer::Error(Next::Refind),
                    };
                    let next = match answer {
                        Answer::Ok => continue,
                        Answer::Step(next) | Answer::Error(next) => next,
                        Answer::Fatal => {
                            return fail("heartbeat refused".to_string());
                        }
                    };
                    // Give the partitions up: stop fetching, commit what was read (the
                    // generation is still ours while the group prepares), then rejoin.
                    fetchers.clear();
                    unassigned_since = clock.now_ns();
                    let last = positions.borrow().clone();
                    match next {
                        Next::Rejoin => {
                            if !commit(&mut coord, &last, &recorder).await {
                                break 'generation;
                            }
                            continue 'generation;
                        }
                        Next::RejoinAsNew => {
                            coord.member_id.clear();
                            continue 'generation;
                        }
                        Next::Refind => break 'generation,
                    }
                }
            }
        }
        member_id = coord.member_id.clone();
        generation = coord.generation;
    }
}

/// Commits `positions`; counts the outcome. `false`: the coordinator connection is lost.
async fn commit(
    coord: &mut Coordinator,
    positions: &BTreeMap<i32, i64>,
    recorder: &Rc<RefCell<Recorder>>,
) -> bool {
    match coord.commit(positions).await {
        Ok(codes) => {
            if codes.is_empty() {
                if !positions.is_empty() {
                    recorder.borrow_mut().events.group_commits += 1;
                }
            } else {
                for code in codes {
                    count_answer(recorder, "OffsetCommit", code);
                }
            }
            true
        }
        Err(GroupError::Code { api, code }) => {
            count_answer(recorder, api, code);
            true
        }
        Err(GroupError::Lost(_)) => false,
    }
}
