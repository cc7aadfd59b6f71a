//! The saturation search finds a simulated broker's known capacity: the real producer
//! logic (`ProducerCore`, `Schedule`, `Recorder`) runs each fixed-rate step in virtual time
//! against a broker that serves one request at a time at a fixed cost per request and per
//! record, and the real `Search` picks the steps. Deterministic: nothing sleeps.

use std::collections::VecDeque;
use std::sync::Arc;

use rill_loadgen::config::{Acks, RecordBytes, Workload};
use rill_loadgen::payload::{GeneratorShared, RecordGenerator};
use rill_loadgen::producer::{OutgoingRequest, ProducerCore, ProducerSettings};
use rill_loadgen::saturation::{Search, SearchSettings, StepResult, Verdict};
use rill_loadgen::schedule::{Nanos, Schedule, NANOS_PER_S};
use rill_loadgen::stats::{PartitionCounters, Recorder};
use rill_net::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use rill_net::kafka_protocol::messages::ProduceResponse;
use rill_net::kafka_protocol::records::Compression;

const MS: Nanos = 1_000_000;
const US: Nanos = 1_000;
/// Broker cost per request and per record: a full 16 KiB batch of 100-byte records
/// (~145 records) costs ~3.9 ms, so the broker serves ~37k records/s.
const REQUEST_NS: Nanos = MS;
const RECORD_NS: Nanos = 20 * US;
const WARMUP_NS: Nanos = 200 * MS;
const STEP_NS: Nanos = NANOS_PER_S;

fn records_in(req: &OutgoingRequest) -> u64 {
    req.batches
        .iter()
        .map(|b| u64::from(u32::from_be_bytes(b.1[57..61].try_into().unwrap())))
        .sum()
}

fn ok_for(req: &OutgoingRequest) -> ProduceResponse {
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_partition_responses(
            req.batches
                .iter()
                .map(|(p, _)| PartitionProduceResponse::default().with_index(*p))
                .collect(),
        )])
}

/// One open-loop step at `rate` records/s: warm-up, then one measured second, then drain.
/// Returns the step's result and the largest request (in records) the producer sent.
fn step(rate: f64) -> (StepResult, u64) {
    let w = Workload {
        record_bytes: RecordBytes::Fixed(100),
        ..Workload::default()
    };
    let shared = GeneratorShared::new(&w, 7);
    let generator = RecordGenerator::new(&shared, 0, 1);
    let settings = ProducerSettings {
        acks: Acks::All,
        batch_bytes: 16384,
        linger_ns: 5 * MS,
        inflight_requests_max: 5,
        buffer_bytes_max: 32 << 20,
        request_bytes_max: 1 << 20,
        wake_granularity_ns: 100 * US,
        compression: Compression::None,
        epoch_unix_ms: 0,
    };
    let window_end = WARMUP_NS + STEP_NS;
    let schedule = Schedule::fixed(0, rate, 0, 1, None, Some(window_end));
    let mut core = ProducerCore::new(settings, schedule, generator, &[0]);
    let mut stats = Recorder::new(WARMUP_NS, window_end, Arc::new(PartitionCounters::new(1)));
    // Requests in the broker: (request, completes at).
    let mut queue: VecDeque<(OutgoingRequest, Nanos)> = VecDeque::new();
    let mut busy_until: Nanos = 0;
    let mut largest = 0;
    let mut now: Nanos = 0;
    loop {
        core.fill(now, &mut stats);
        while let Some(req) = core.next_request(0, now, &mut stats) {
            core.on_written(0, req.id, req.size, now, &mut stats);
            let records = records_in(&req);
            largest = largest.max(records);
            busy_until = now.max(busy_until) + REQUEST_NS + records * RECORD_NS;
            queue.push_back((req, busy_until));
        }
        if core.finished() {
            break;
        }
        let wake = core.next_wake(now);
        let answer = queue.front().map(|q| q.1);
        match (wake, answer) {
            (Some(w), Some(a)) if a <= w => {}
            (None, Some(_)) => {}
            (Some(w), _) => {
                now = now.max(w);
                continue;
            }
            (None, None) => panic!("the producer waits for nothing"),
        }
        let (req, done) = queue.pop_front().expect("an answer is due");
        now = now.max(done);
        core.on_response(0, &ok_for(&req), now, &mut stats).unwrap();
    }
    let achieved = stats.window.acked_records as f64 / (STEP_NS as f64 / 1e9);
    let p99 = stats.ack.value_at_quantile(0.99) as f64 / 1000.0;
    let result = StepResult {
        target_records_per_s: rate,
        achieved_records_per_s: achieved,
        achieved_mb_per_s: stats.window.acked_bytes as f64 / 1e6,
        ack_p99_ms: Some(p99),
        errors: stats.errors.values().sum(),
    };
    (result, largest)
}

#[test]
fn the_search_finds_a_simulated_brokers_capacity() {
    let settings = SearchSettings {
        start: 0.5,
        growth: 1.25,
        tolerance: 0.05,
        p99_ms_max: Some(50.0),
        resolution: 0.05,
        steps_max: 16,
    };
    // The reference (what a closed-loop probe would say) is deliberately off by 60%.
    let mut search = Search::new(settings, 60_000.0);
    let mut full_batch = 0;
    while let Some(target) = search.next_target() {
        let (result, largest) = step(target);
        full_batch = full_batch.max(largest);
        let verdict = search.record(result);
        eprintln!(
            "target {target:.0}/s achieved {:.0}/s p99 {:?} ms: {verdict:?}",
            result.achieved_records_per_s, result.ack_p99_ms
        );
    }
    // The capacity follows from the costs and the largest batch the producer built.
    let capacity = NANOS_PER_S as f64 / (RECORD_NS as f64 + REQUEST_NS as f64 / full_batch as f64);
    let best = search
        .sustained()
        .expect("a step below capacity passes")
        .target_records_per_s;
    eprintln!(
        "capacity {capacity:.0}/s (batches of {full_batch}), found {best:.0}/s in {} steps: {:?}",
        search.steps().len(),
        search.ended()
    );
    assert!(
        best >= capacity * 0.90 && best <= capacity * 1.05,
        "found {best:.0}/s for a capacity of {capacity:.0}/s"
    );
    assert_eq!(search.ended(), Some("converged within the resolution"));
    // Every step above capacity + tolerance failed, and a failing step's verdict says why.
    for s in search.steps() {
        if s.target_records_per_s > capacity * 1.06 {
            assert_ne!(s.verdict, Verdict::Sustained, "{s:?}");
        }
    }
}
