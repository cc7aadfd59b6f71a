//! One producer's logic, without I/O: [`ProducerCore`].
//!
//! The core pulls due records from its [`Schedule`], appends them to per-partition batches
//! (Kafka's accumulator: a batch closes at `batch_bytes`; an open batch becomes sendable
//! `linger` after its first record's *intended* time), hands out Produce requests for a
//! broker while that connection has fewer than `inflight_requests_max` unanswered, and turns
//! answers into latencies (from each record's intended time) and error counts. It is driven
//! by the executor's producer task (`driver`) with real time, and by tests with virtual
//! time, through the same calls:
//!
//! 1. [`ProducerCore::fill`] at `now`: generate every record that is due and fits;
//! 2. [`ProducerCore::next_request`] per broker until `None`; write each one, then
//!    [`ProducerCore::on_written`];
//! 3. sleep until [`ProducerCore::next_wake`] or until an answer arrives
//!    ([`ProducerCore::on_response`]);
//! 4. stop when [`ProducerCore::finished`].
//!
//! Bounds: records held (open, closed, in flight) never exceed `buffer_bytes_max` (when full,
//! generation pauses and the schedule lag grows; latencies still count from the schedule),
//! requests in flight per broker never exceed `inflight_requests_max`, and one request never
//! exceeds `request_bytes_max` (beyond its first batch). In `max` mode the producer holds
//! at most one request's worth more than it has in flight, so ack latency there is the
//! broker's service time under that pipeline depth, not time spent in a client queue.

use std::collections::VecDeque;

use bytes::Bytes;
use rill_net::client::{encode_record_batch, BatchOptions, ProduceRecord};
use rill_net::kafka_protocol::messages::ProduceResponse;
use rill_net::kafka_protocol::records::Compression;

use crate::batch::{BatchBuilder, BATCH_HEADER_BYTES};
use crate::config::Acks;
use crate::payload::RecordGenerator;
use crate::schedule::{Nanos, Pace, Schedule};
use crate::stats::{ErrorKind, Recorder};

/// Estimated bytes a record adds to a batch beyond its key and value (length, attributes,
/// timestamp and offset deltas, header count: all varints).
pub const RECORD_OVERHEAD_BYTES: usize = 12;
/// Default largest produce request (Kafka's `max.request.size`).
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Default [`ProducerSettings::wake_granularity_ns`]: 100 us.
pub const WAKE_GRANULARITY_NS_DEFAULT: Nanos = 100_000;

/// How a producer batches and paces.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Acknowledgements asked for.
    pub acks: Acks,
    /// A batch closes when it would exceed this many bytes.
    pub batch_bytes: usize,
    /// An open batch is sendable this long after its first record's intended time.
    pub linger_ns: Nanos,
    /// Produce requests unanswered per broker connection.
    pub inflight_requests_max: usize,
    /// Bytes held: open, closed and in-flight batches.
    pub buffer_bytes_max: usize,
    /// Largest request (more batches are left for the next one).
    pub request_bytes_max: usize,
    /// Shortest sleep between two wakes for scheduled records (a full batch may leave up
    /// to this much after its last record's intended time; linger deadlines are exact).
    pub wake_granularity_ns: Nanos,
    /// Batch codec: uncompressed batches are built in place ([`BatchBuilder`]), compressed
    /// ones by `rill-net`'s encoder.
    pub compression: Compression,
    /// Wall-clock ms at run time 0, for record timestamps.
    pub epoch_unix_ms: i64,
}

/// A Produce request to write.
#[derive(Debug)]
pub struct OutgoingRequest {
    /// Index of the broker connection it goes to.
    pub broker: usize,
    /// Request number (its correlation id, modulo 2^31).
    pub id: u64,
    /// One encoded record batch per partition.
    pub batches: Vec<(i32, Bytes)>,
    /// Encoded size of the batches.
    pub size: usize,
}

impl OutgoingRequest {
    /// The correlation id to send it with.
    pub fn correlation_id(&self) -> i32 {
        (self.id & 0x7fff_ffff) as i32
    }
}

#[derive(Debug)]
enum Content {
    /// Uncompressed: records already in wire format.
    Raw(BatchBuilder),
    /// Compressed: records kept until the batch is encoded.
    Records(Vec<ProduceRecord>),
}

#[derive(Debug)]
struct Batch {
    content: Content,
    intended_ns: Vec<Nanos>,
    bytes: usize,
    size: usize,
    first_ns: Nanos,
}

impl Batch {
    fn new(first_ns: Nanos, compression: Compression, batch_bytes: usize) -> Batch {
        let content = match compression {
            Compression::None => Content::Raw(BatchBuilder::new(batch_bytes + 1024)),
            _ => Content::Records(Vec::new()),
        };
        Batch {
            content,
            intended_ns: Vec::new(),
            bytes: 0,
            size: BATCH_HEADER_BYTES,
            first_ns,
        }
    }

    fn records(&self) -> usize {
        self.intended_ns.len()
    }

    fn encode(self, compression: Compression) -> Result<Bytes, String> {
        match self.content {
            Content::Raw(b) => Ok(b.finish()),
            Content::Records(records) => encode_record_batch(
                &records,
                &BatchOptions {
                    compression,
                    ..BatchOptions::default()
                },
            )
            .map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug, Default)]
struct PartitionBuf {
    closed: VecDeque<Batch>,
    open: Option<Batch>,
}

impl PartitionBuf {
    fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_none()
    }
}

#[derive(Debug)]
struct SentBatch {
    partition: usize,
    intended_ns: Vec<Nanos>,
    bytes: usize,
    size: usize,
}

#[derive(Debug)]
struct Inflight {
    id: u64,
    batches: Vec<SentBatch>,
    written: bool,
}

#[derive(Debug)]
struct BrokerQueue {
    partitions: Vec<usize>,
    inflight: VecDeque<Inflight>,
    drain_cursor: usize,
    alive: bool,
}

/// The state of one producer; see the module docs for the calling protocol.
#[derive(Debug)]
pub struct ProducerCore {
    settings: ProducerSettings,
    schedule: Schedule,
    generator: RecordGenerator,
    parts: Vec<PartitionBuf>,
    brokers: Vec<BrokerQueue>,
    sticky: usize,
    buffered_bytes: usize,
    next_request_id: u64,
    blocked: bool,
    generation_over: bool,
    failure: Option<String>,
}

impl ProducerCore {
    /// A producer writing to partitions `0..leaders.len()`, partition `p` through broker
    /// connection `leaders[p]`.
    pub fn new(
        settings: ProducerSettings,
        schedule: Schedule,
        mut generator: RecordGenerator,
        leaders: &[usize],
    ) -> ProducerCore {
        let broker_count = leaders.iter().copied().max().map_or(1, |m| m + 1);
        let mut brokers: Vec<BrokerQueue> = (0..broker_count)
            .map(|_| BrokerQueue {
                partitions: Vec::new(),
                inflight: VecDeque::new(),
                drain_cursor: 0,
                alive: true,
            })
            .collect();
        let parts = leaders
            .iter()
            .enumerate()
            .map(|(p, &b)| {
                brokers[b].partitions.push(p);
                PartitionBuf::default()
            })
            .collect();
        let sticky = generator.rng().usize(..leaders.len().max(1));
        ProducerCore {
            settings,
            schedule,
            generator,
            parts,
            brokers,
            sticky,
            buffered_bytes: 0,
            next_request_id: 0,
            blocked: false,
            generation_over: false,
            failure: None,
        }
    }

    /// Broker connections this producer uses.
    pub fn broker_count(&self) -> usize {
        self.brokers.len()
    }

    /// Records generated so far.
    pub fn generated(&self) -> u64 {
        self.generator.generated()
    }

    /// Bytes held (open, closed and in-flight batches).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Requests awaiting an answer from `broker`.
    pub fn inflight(&self, broker: usize) -> usize {
        self.brokers[broker].inflight.len()
    }

    /// Why the producer gave up, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Whether generation is over (schedule exhausted, stopped or failed).
    pub fn generation_over(&self) -> bool {
        self.generation_over
    }

    /// Generates no more records; what is held is still sent.
    pub fn stop(&mut self) {
        self.generation_over = true;
    }

    fn budget(&self) -> usize {
        match self.schedule.pace() {
            Pace::Fixed { .. } => self.settings.buffer_bytes_max,
            Pace::Max => {
                // Enough to fill every connection's pipeline plus one request in the making.
                let pipeline = (self.settings.inflight_requests_max + 1)
                    * self.settings.batch_bytes.max(1)
                    * self.brokers.len();
                pipeline.min(self.settings.buffer_bytes_max)
            }
        }
    }

    /// Generates every record due at `now` that fits the buffer.
    pub fn fill(&mut self, now: Nanos, stats: &mut Recorder) {
        self.blocked = false;
        if !self.generation_over {
            let budget = self.budget();
            let mut generated = 0;
            loop {
                if self.buffered_bytes >= budget {
                    self.blocked = true;
                    break;
                }
                let Some(intended) = self.schedule.take_due(now) else {
                    break;
                };
                self.append(intended);
                generated += 1;
            }
            stats.generated(generated);
            if self.schedule.exhausted(now) {
                self.generation_over = true;
            }
        }
        stats.lag(self.schedule.lag_ns(now));
    }

    fn append(&mut self, intended: Nanos) {
        let compression = self.settings.compression;
        let batch_bytes = self.settings.batch_bytes;
        let timestamp_ms = self.settings.epoch_unix_ms + (intended / 1_000_000) as i64;
        let last = self.parts.len() - 1;
        let sticky = self.sticky;
        // Uncompressed records go straight from the pool into the batch; compressed ones are
        // kept as owned records for rill-net's encoder.
        let owned = match compression {
            Compression::None => None,
            _ => Some(self.generator.next(intended)),
        };
        let parts = match owned {
            None => Some(self.generator.next_parts(intended)),
            Some(_) => None,
        };
        let (partition, bytes) = match (&parts, &owned) {
            (Some(p), _) => (p.partition, p.bytes()),
            (None, Some(r)) => (r.partition, r.bytes()),
            (None, None) => unreachable!("one of the two is made above"),
        };
        let partition = partition.map_or(sticky, |p| p as usize).min(last);
        let estimate = bytes + RECORD_OVERHEAD_BYTES;
        let p = &mut self.parts[partition];
        if p.open
            .as_ref()
            .is_some_and(|b| b.records() > 0 && b.size + estimate > batch_bytes)
        {
            let full = p.open.take().expect("checked above");
            p.closed.push_back(full);
        }
        if p.open.is_none() {
            p.open = Some(Batch::new(intended, compression, batch_bytes));
            self.buffered_bytes += BATCH_HEADER_BYTES;
        }
        let open = p.open.as_mut().expect("just ensured");
        let before = open.size;
        match (&mut open.content, parts, owned) {
            (Content::Raw(b), Some(parts), _) => {
                let key = parts.key;
                b.push(
                    timestamp_ms,
                    key.as_ref().map(|k| &k[..]),
                    &[&parts.stamp, parts.payload],
                );
                open.size = b.size();
            }
            (Content::Records(v), _, Some(r)) => {
                v.push(ProduceRecord {
                    key: r.key,
                    value: Some(r.value),
                    headers: Vec::new(),
                    timestamp_ms,
                });
                open.size += estimate;
            }
            _ => unreachable!("batch content follows the compression setting"),
        }
        open.intended_ns.push(intended);
        open.bytes += bytes;
        self.buffered_bytes += open.size - before;
        // Full once another record like this one would not fit: a batch.size that is not a
        // multiple of the record size never fills to the byte, and the sticky partitioner
        // must still move on after each batch (KIP-794), or at max rate, where a backlog
        // keeps the open batch from being sent, a producer writes to one partition forever.
        let closed_now = open.size + estimate > batch_bytes;
        if closed_now {
            let full = p.open.take().expect("just inserted");
            p.closed.push_back(full);
        }
        if closed_now && partition == self.sticky {
            self.next_sticky();
        }
    }

    fn next_sticky(&mut self) {
        let n = self.parts.len();
        if n > 1 {
            let step = self.generator.rng().usize(1..n);
            self.sticky = (self.sticky + step) % n;
        }
    }

    fn flushing(&self) -> bool {
        self.generation_over || self.blocked
    }

    /// Whether `broker` has a batch that may be sent at `now`.
    fn ready(&self, broker: usize, now: Nanos) -> bool {
        let flush = self.flushing();
        let linger = self.settings.linger_ns;
        self.brokers[broker].partitions.iter().any(|&p| {
            let part = &self.parts[p];
            !part.closed.is_empty()
                || part
                    .open
                    .as_ref()
                    .is_some_and(|b| flush || b.first_ns.saturating_add(linger) <= now)
        })
    }

    /// The next request for `broker`, if one is sendable at `now` and the connection has
    /// room. A batch that cannot be encoded fails its records (counted) and the producer.
    pub fn next_request(
        &mut self,
        broker: usize,
        now: Nanos,
        stats: &mut Recorder,
    ) -> Option<OutgoingRequest> {
        let q = &self.brokers[broker];
        if !q.alive || q.inflight.len() >= self.settings.inflight_requests_max {
            return None;
        }
        if !self.ready(broker, now) {
            return None;
        }
        let n = q.partitions.len();
        let start = q.drain_cursor;
        let mut batches = Vec::new();
        let mut sent = Vec::new();
        let mut size = 0;
        let mut sticky_drained = false;
        for i in 0..n {
            let p = self.brokers[broker].partitions[(start + i) % n];
            let part = &mut self.parts[p];
            let next_size = part.closed.front().or(part.open.as_ref()).map(|b| b.size);
            let Some(next_size) = next_size else {
                continue;
            };
            if !sent.is_empty() && size + next_size > self.settings.request_bytes_max {
                break;
            }
            let mut batch = match part.closed.pop_front() {
                Some(b) => b,
                None => part.open.take().expect("checked non-empty"),
            };
            if p == self.sticky && part.open.is_none() {
                sticky_drained = true;
            }
            self.brokers[broker].drain_cursor = (start + i + 1) % n;
            let intended_ns = std::mem::take(&mut batch.intended_ns);
            let (bytes, batch_size) = (batch.bytes, batch.size);
            match batch.encode(self.settings.compression) {
                Ok(encoded) => {
                    size += encoded.len();
                    batches.push((p as i32, encoded));
                    sent.push(SentBatch {
                        partition: p,
                        intended_ns,
                        bytes,
                        size: batch_size,
                    });
                }
                Err(e) => {
                    stats.produce_failed(
                        ErrorKind::Client("record batch encoding failed"),
                        intended_ns.len() as u64,
                    );
                    self.buffered_bytes -= batch_size;
                    self.failure
                        .get_or_insert(format!("encoding a record batch: {e}"));
                    self.generation_over = true;
                }
            }
        }
        if batches.is_empty() {
            return None;
        }
        if sticky_drained {
            self.next_sticky();
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.brokers[broker].inflight.push_back(Inflight {
            id,
            batches: sent,
            written: false,
        });
        Some(OutgoingRequest {
            broker,
            id,
            batches,
            size,
        })
    }

    /// Request `id` to `broker` has been written (`wire_bytes` on the socket). With acks=0
    /// its records count as acknowledged now (nothing will answer).
    pub fn on_written(
        &mut self,
        broker: usize,
        id: u64,
        wire_bytes: usize,
        now: Nanos,
        stats: &mut Recorder,
    ) {
        let q = &mut self.brokers[broker];
        let Some(entry) = q.inflight.iter_mut().find(|e| e.id == id) else {
            return;
        };
        entry.written = true;
        let records: usize = entry.batches.iter().map(|b| b.intended_ns.len()).sum();
        let bytes: usize = entry.batches.iter().map(|b| b.bytes).sum();
        stats.sent(records as u64, bytes as u64, wire_bytes as u64, now);
        if self.settings.acks == Acks::None {
            if let Some(pos) = q.inflight.iter().position(|e| e.id == id) {
                let entry = q.inflight.remove(pos).expect("position is valid");
                for b in entry.batches {
                    stats.acked_unmeasured(
                        b.partition,
                        b.intended_ns.len() as u64,
                        b.bytes as u64,
                        now,
                    );
                    self.buffered_bytes -= b.size;
                }
            }
        }
    }

    /// The correlation id the next answer from `broker` must carry.
    pub fn expected_correlation(&self, broker: usize) -> Option<i32> {
        self.brokers[broker]
            .inflight
            .front()
            .map(|e| (e.id & 0x7fff_ffff) as i32)
    }

    /// The answer to the oldest request in flight to `broker`, received at `now`.
    pub fn on_response(
        &mut self,
        broker: usize,
        response: &ProduceResponse,
        now: Nanos,
        stats: &mut Recorder,
    ) -> Result<(), String> {
        let Some(entry) = self.brokers[broker].inflight.pop_front() else {
            return Err("a produce answer arrived with nothing in flight".to_string());
        };
        for b in entry.batches {
            let code = response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
                .find(|r| r.index == b.partition as i32)
                .map(|r| r.error_code);
            let n = b.intended_ns.len() as u64;
            match code {
                Some(0) => stats.acked(b.partition, &b.intended_ns, b.bytes as u64, now),
                Some(code) => stats.produce_failed(ErrorKind::Produce(code), n),
                None => {
                    stats.produce_failed(ErrorKind::Client("produce answer missing a partition"), n)
                }
            }
            self.buffered_bytes -= b.size;
        }
        Ok(())
    }

    /// The connection to `broker` dropped (`false` if it was already known to be down).
    /// Requests written on it are in doubt: the broker may have stored them, and without
    /// idempotence a resend could duplicate them, so they fail, counted as in doubt, and are
    /// not resent. A request not yet written fails as not sent. Batches not yet sent stay
    /// for the next connection; generation goes on (the buffer bounds what is held). Until
    /// [`ProducerCore::on_reconnected`] nothing goes to `broker`.
    pub fn on_connection_lost(&mut self, broker: usize, stats: &mut Recorder) -> bool {
        if !self.brokers[broker].alive {
            return false;
        }
        self.brokers[broker].alive = false;
        for entry in std::mem::take(&mut self.brokers[broker].inflight) {
            for b in entry.batches {
                let n = b.intended_ns.len() as u64;
                if entry.written {
                    stats.produce_failed(
                        ErrorKind::Client("produce in doubt: connection lost in flight"),
                        n,
                    );
                    stats.in_doubt(b.partition, n);
                } else {
                    stats.produce_failed(ErrorKind::Client("produce not sent: connection lost"), n);
                }
                self.buffered_bytes -= b.size;
            }
        }
        true
    }

    /// `broker` has a new connection: sending resumes.
    pub fn on_reconnected(&mut self, broker: usize) {
        self.brokers[broker].alive = true;
    }

    /// Whether `broker`'s connection is up.
    pub fn is_alive(&self, broker: usize) -> bool {
        self.brokers[broker].alive
    }

    /// The partitions led through `broker`.
    pub fn partitions_of(&self, broker: usize) -> &[usize] {
        &self.brokers[broker].partitions
    }

    /// `partition` is now led by the broker behind connection `broker` (metadata said so
    /// after a reconnect); what it holds goes there.
    pub fn set_leader(&mut self, partition: usize, broker: usize) {
        for q in &mut self.brokers {
            q.partitions.retain(|&p| p != partition);
            q.drain_cursor = 0;
        }
        self.brokers[broker].partitions.push(partition);
        self.brokers[broker].partitions.sort_unstable();
    }

    /// `broker` cannot be reached again (`reason`): everything held for it fails, and the
    /// producer stops generating.
    pub fn give_up(&mut self, broker: usize, reason: &str, stats: &mut Recorder) {
        self.on_connection_lost(broker, stats);
        self.fail_broker(broker, "produce abandoned: broker unreachable", stats);
        self.generation_over = true;
        if self.failure.is_none() {
            self.failure = Some(reason.to_string());
        }
    }

    /// Gives up on everything still held or still scheduled (the drain timeout passed): it
    /// is counted as failed under `label`, records never generated under `never_label`
    /// (they count as generated, so generated = acknowledged + failed still holds).
    pub fn abandon(
        &mut self,
        label: &'static str,
        never_label: &'static str,
        stats: &mut Recorder,
    ) {
        if !self.generation_over {
            let never = self.schedule.remaining();
            stats.generated(never);
            stats.produce_failed(ErrorKind::Client(never_label), never);
        }
        self.generation_over = true;
        for b in 0..self.brokers.len() {
            self.fail_broker(b, label, stats);
        }
    }

    fn fail_broker(&mut self, broker: usize, label: &'static str, stats: &mut Recorder) {
        let kind = ErrorKind::Client(label);
        for entry in std::mem::take(&mut self.brokers[broker].inflight) {
            for b in entry.batches {
                stats.produce_failed(kind, b.intended_ns.len() as u64);
                self.buffered_bytes -= b.size;
            }
        }
        for &p in &self.brokers[broker].partitions {
            let part = &mut self.parts[p];
            for batch in part.closed.drain(..).chain(part.open.take()) {
                stats.produce_failed(kind, batch.records() as u64);
                self.buffered_bytes -= batch.size;
            }
        }
    }

    /// Whether everything generated has been answered and nothing more will be.
    pub fn finished(&self) -> bool {
        self.generation_over
            && self.parts.iter().all(PartitionBuf::is_empty)
            && self.brokers.iter().all(|b| b.inflight.is_empty())
    }

    /// When to call [`ProducerCore::fill`] / [`ProducerCore::next_request`] again if no
    /// answer arrives first; `None`: only an answer (or a stop) changes anything.
    pub fn next_wake(&self, now: Nanos) -> Option<Nanos> {
        let mut wake: Option<Nanos> = None;
        let mut earliest = |t: Nanos| wake = Some(wake.map_or(t, |w| w.min(t)));
        if !self.generation_over && self.buffered_bytes < self.budget() {
            match self.schedule.pace() {
                // Records due later are generated at the next wake with their own intended
                // times; waking per record would cost a timer per record at high rates.
                Pace::Fixed { .. } => {
                    if let Some(t) = self.schedule.next_time() {
                        earliest(t.max(now + self.settings.wake_granularity_ns));
                    }
                }
                Pace::Max => earliest(now),
            }
        }
        let flush = self.flushing();
        for q in &self.brokers {
            if !q.alive || q.inflight.len() >= self.settings.inflight_requests_max {
                continue;
            }
            for &p in &q.partitions {
                let part = &self.parts[p];
                if !part.closed.is_empty() || (flush && part.open.is_some()) {
                    earliest(now);
                } else if let Some(b) = &part.open {
                    earliest(b.first_ns.saturating_add(self.settings.linger_ns).max(now));
                }
            }
        }
        wake
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rill_net::kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    use super::*;
    use crate::config::{RecordBytes, Workload};
    use crate::payload::GeneratorShared;
    use crate::schedule::NANOS_PER_S;
    use crate::stats::PartitionCounters;

    const MS: Nanos = 1_000_000;

    fn settings() -> ProducerSettings {
        ProducerSettings {
            acks: Acks::All,
            batch_bytes: 10 * (100 + RECORD_OVERHEAD_BYTES) + BATCH_HEADER_BYTES,
            linger_ns: 5 * MS,
            inflight_requests_max: 2,
            buffer_bytes_max: 1 << 20,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            wake_granularity_ns: WAKE_GRANULARITY_NS_DEFAULT,
            compression: Compression::None,
            epoch_unix_ms: 0,
        }
    }

    /// Records in an encoded batch (its header's count).
    fn count(batch: &Bytes) -> usize {
        i32::from_be_bytes(batch[57..61].try_into().unwrap()) as usize
    }

    fn core(settings: ProducerSettings, schedule: Schedule, partitions: usize) -> ProducerCore {
        let w = Workload {
            record_bytes: RecordBytes::Fixed(100),
            ..Workload::default()
        };
        let shared = GeneratorShared::new(&w, 1);
        let generator = RecordGenerator::new(&shared, 0, partitions as u32);
        ProducerCore::new(settings, schedule, generator, &vec![0; partitions])
    }

    fn recorder(partitions: usize) -> Recorder {
        Recorder::new(0, Nanos::MAX, Arc::new(PartitionCounters::new(partitions)))
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

    #[test]
    fn batches_close_at_batch_bytes_and_linger_otherwise() {
        // 1,000 records/s of 100 bytes, 10 per batch.
        let mut c = core(settings(), Schedule::fixed(0, 1000.0, 0, 1, None, None), 1);
        let mut s = recorder(1);
        c.fill(3 * MS, &mut s); // records at 0..=3 ms: open batch of 4
        assert!(c.next_request(0, 3 * MS, &mut s).is_none());
        // Linger runs from the first record's intended time (0), not from now.
        assert_eq!(c.next_wake(3 * MS), Some(4 * MS));
        c.fill(5 * MS, &mut s);
        let req = c.next_request(0, 5 * MS, &mut s).expect("lingered out");
        assert_eq!(count(&req.batches[0].1), 6);
        c.on_written(0, req.id, 1000, 5 * MS, &mut s);
        // Fall 20 ms behind: records 6..=25 are due; two full batches close at once.
        c.fill(25 * MS, &mut s);
        let a = c.next_request(0, 25 * MS, &mut s).expect("full batch");
        assert_eq!(count(&a.batches[0].1), 10);
        // Two in flight: the pipeline is full.
        assert!(c.next_request(0, 25 * MS, &mut s).is_none());
        assert_eq!(c.next_wake(25 * MS), Some(26 * MS)); // next scheduled record
        c.on_response(0, &ok_for(&req), 26 * MS, &mut s).unwrap();
        assert_eq!(s.totals.acked_records, 6);
        // Latency of the first record: 26 ms after its intended time 0.
        assert!(s.ack.equivalent(s.ack.max(), 26_000));
        let b = c
            .next_request(0, 26 * MS, &mut s)
            .expect("second full batch");
        assert_eq!(count(&b.batches[0].1), 10);
    }

    #[test]
    fn the_sticky_partitioner_moves_on_after_each_batch_at_max_rate() {
        // Records that do not divide batch.size: 7 fit, an eighth would not.
        let st = ProducerSettings {
            batch_bytes: 7 * (100 + RECORD_OVERHEAD_BYTES) + BATCH_HEADER_BYTES + 50,
            inflight_requests_max: 5,
            ..settings()
        };
        let mut c = core(st, Schedule::max(0, None, Some(NANOS_PER_S)), 4);
        let mut s = recorder(4);
        // Max rate fills the whole budget (six batches) before anything is sent.
        c.fill(MS, &mut s);
        let batches: Vec<usize> = c
            .parts
            .iter()
            .map(|p| p.closed.len() + usize::from(p.open.is_some()))
            .collect();
        assert!(
            batches.iter().sum::<usize>() >= 5,
            "batches per partition: {batches:?}"
        );
        // Each full batch moved the sticky partition on (never to the same one), so no
        // partition holds them all.
        assert!(
            batches.iter().all(|&n| n <= 3),
            "unkeyed records piled up in one partition: batches per partition {batches:?}"
        );
        for p in &c.parts {
            for b in &p.closed {
                assert_eq!(b.intended_ns.len(), 7, "a closed batch holds 7 records");
            }
        }
    }

    #[test]
    fn max_mode_keeps_one_request_beyond_the_pipeline() {
        let st = settings();
        let budget = (st.inflight_requests_max + 1) * st.batch_bytes;
        let mut c = core(st, Schedule::max(0, None, Some(NANOS_PER_S)), 1);
        let mut s = recorder(1);
        c.fill(MS, &mut s);
        assert!(c.buffered_bytes() >= budget - 200 && c.buffered_bytes() <= budget + 200);
        let a = c.next_request(0, MS, &mut s).unwrap();
        let b = c.next_request(0, MS, &mut s).unwrap();
        assert!(c.next_request(0, MS, &mut s).is_none());
        assert_eq!(c.next_wake(MS), None, "only an answer can unblock it");
        c.on_response(0, &ok_for(&a), 2 * MS, &mut s).unwrap();
        c.fill(2 * MS, &mut s);
        assert!(c.next_request(0, 2 * MS, &mut s).is_some());
        c.on_response(0, &ok_for(&b), 3 * MS, &mut s).unwrap();
        assert_eq!(s.totals.acked_records, 20);
    }

    #[test]
    fn errors_and_lost_connections_are_counted_not_hidden() {
        let mut c = core(
            settings(),
            Schedule::fixed(0, 1000.0, 0, 1, Some(30), None),
            2,
        );
        let mut s = recorder(2);
        c.fill(40 * MS, &mut s);
        assert!(c.generation_over());
        let req = c.next_request(0, 40 * MS, &mut s).unwrap();
        let n: usize = req.batches.iter().map(|b| count(&b.1)).sum();
        let mut resp = ok_for(&req);
        resp.responses[0].partition_responses[0].error_code = 6;
        let failed_first = count(&req.batches[0].1) as u64;
        c.on_response(0, &resp, 41 * MS, &mut s).unwrap();
        assert_eq!(s.totals.failed_records, failed_first);
        assert_eq!(s.totals.acked_records, n as u64 - failed_first);
        assert_eq!(s.errors["produce NOT_LEADER_OR_FOLLOWER (6)"], failed_first);
        let _inflight = c.next_request(0, 41 * MS, &mut s).unwrap();
        c.on_connection_lost(0, &mut s);
        assert_eq!(c.failure(), None);
        // What was not sent yet waits for a new connection; giving up fails it.
        assert_eq!(c.finished(), c.buffered_bytes() == 0);
        c.give_up(0, "reset by peer", &mut s);
        assert_eq!(c.failure(), Some("reset by peer"));
        assert!(c.finished());
        assert_eq!(c.buffered_bytes(), 0);
        assert_eq!(s.totals.generated_records, 30);
        assert_eq!(s.totals.acked_records + s.totals.failed_records, 30);
        // The lost request was never written: not sent, not in doubt.
        assert_eq!(s.totals.in_doubt_records, 0);
        assert!(s.errors["produce not sent: connection lost"] > 0);
    }

    #[test]
    fn a_lost_connection_fails_what_was_in_flight_as_in_doubt_and_keeps_the_rest() {
        // Two partitions, one broker; 1,000/s for 40 ms.
        let mut c = core(
            settings(),
            Schedule::fixed(0, 1000.0, 0, 1, None, Some(40 * MS)),
            2,
        );
        let mut s = recorder(2);
        c.fill(12 * MS, &mut s);
        let req = c.next_request(0, 12 * MS, &mut s).unwrap();
        c.on_written(0, req.id, req.size, 12 * MS, &mut s);
        let in_flight: u64 = req.batches.iter().map(|b| count(&b.1) as u64).sum();
        assert!(c.on_connection_lost(0, &mut s));
        // A second report of the same loss changes nothing.
        assert!(!c.on_connection_lost(0, &mut s));
        assert_eq!(s.totals.in_doubt_records, in_flight);
        assert_eq!(s.totals.failed_records, in_flight);
        assert_eq!(
            s.errors["produce in doubt: connection lost in flight"],
            in_flight
        );
        assert!(!c.generation_over());
        // While down, records are generated and held; nothing is sent.
        c.fill(30 * MS, &mut s);
        assert!(c.next_request(0, 30 * MS, &mut s).is_none());
        // It wakes for the next scheduled record (31 ms), not for the unsendable batches.
        assert_eq!(c.next_wake(30 * MS), Some(31 * MS));
        c.on_reconnected(0);
        c.fill(60 * MS, &mut s);
        assert!(c.generation_over());
        while let Some(req) = c.next_request(0, 60 * MS, &mut s) {
            c.on_written(0, req.id, req.size, 60 * MS, &mut s);
            c.on_response(0, &ok_for(&req), 61 * MS, &mut s).unwrap();
        }
        assert!(c.finished());
        assert_eq!(s.totals.generated_records, 40);
        assert_eq!(s.totals.acked_records, 40 - in_flight);
        assert_eq!(s.totals.acked_records + s.totals.failed_records, 40);
    }

    #[test]
    fn giving_up_on_a_broker_fails_what_it_holds_and_stops() {
        let mut c = core(
            settings(),
            Schedule::fixed(0, 1000.0, 0, 1, None, Some(100 * MS)),
            1,
        );
        let mut s = recorder(1);
        c.fill(5 * MS, &mut s);
        c.on_connection_lost(0, &mut s);
        c.fill(20 * MS, &mut s);
        c.give_up(0, "127.0.0.1:1 stayed unreachable", &mut s);
        assert_eq!(c.failure(), Some("127.0.0.1:1 stayed unreachable"));
        assert!(c.generation_over());
        assert!(c.finished());
        assert_eq!(s.errors["produce abandoned: broker unreachable"], 21);
        assert_eq!(s.totals.generated_records, s.totals.failed_records);
    }

    #[test]
    fn a_moved_leader_takes_its_partitions_batches() {
        let w = Workload {
            record_bytes: RecordBytes::Fixed(100),
            ..Workload::default()
        };
        let shared = GeneratorShared::new(&w, 1);
        let generator = RecordGenerator::new(&shared, 0, 2);
        let sched = Schedule::fixed(0, 1000.0, 0, 1, Some(20), None);
        let mut c = ProducerCore::new(settings(), sched, generator, &[0, 1]);
        let mut s = recorder(2);
        c.fill(NANOS_PER_S, &mut s);
        c.on_connection_lost(1, &mut s);
        c.set_leader(1, 0);
        assert_eq!(c.partitions_of(0), &[0, 1]);
        assert!(c.partitions_of(1).is_empty());
        let mut sent = 0;
        while let Some(req) = c.next_request(0, NANOS_PER_S, &mut s) {
            sent += req.batches.iter().map(|b| count(&b.1)).sum::<usize>();
            c.on_written(0, req.id, req.size, NANOS_PER_S, &mut s);
            c.on_response(0, &ok_for(&req), NANOS_PER_S, &mut s)
                .unwrap();
        }
        assert_eq!(sent, 20);
        assert!(c.finished());
    }

    #[test]
    fn abandoning_counts_what_was_held_and_what_was_never_generated() {
        // 1,000/s for 100 ms: 100 records scheduled; 11 generated by 10 ms, one request sent.
        let mut c = core(
            settings(),
            Schedule::fixed(0, 1000.0, 0, 1, None, Some(100 * MS)),
            1,
        );
        let mut s = recorder(1);
        c.fill(10 * MS, &mut s);
        let req = c.next_request(0, 10 * MS, &mut s).unwrap();
        c.on_written(0, req.id, 100, 10 * MS, &mut s);
        c.abandon("held", "never", &mut s);
        assert!(c.finished());
        assert_eq!(s.errors["held"], 11);
        assert_eq!(s.errors["never"], 89);
        assert_eq!(s.totals.generated_records, 100);
        assert_eq!(s.totals.failed_records, 100);
        assert_eq!(s.totals.sent_records, 10);
        assert_eq!(c.buffered_bytes(), 0);
    }

    #[test]
    fn acks_zero_counts_on_write() {
        let st = ProducerSettings {
            acks: Acks::None,
            ..settings()
        };
        let mut c = core(st, Schedule::fixed(0, 1000.0, 0, 1, Some(10), None), 1);
        let mut s = recorder(1);
        c.fill(20 * MS, &mut s);
        let req = c.next_request(0, 20 * MS, &mut s).unwrap();
        c.on_written(0, req.id, 500, 20 * MS, &mut s);
        assert_eq!(s.totals.acked_records, 10);
        assert_eq!(s.ack.len(), 0, "no answer, no latency");
        assert!(c.finished());
    }

    #[test]
    fn compressed_batches_go_through_rill_net_and_decode_back() {
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let st = ProducerSettings {
                compression,
                epoch_unix_ms: 1_700_000_000_000,
                ..settings()
            };
            let mut c = core(st, Schedule::fixed(0, 1000.0, 0, 1, Some(25), None), 1);
            let mut s = recorder(1);
            c.fill(30 * MS, &mut s);
            let mut seen = Vec::new();
            while let Some(req) = c.next_request(0, 30 * MS, &mut s) {
                for (_, batch) in &req.batches {
                    assert_eq!(batch[22] & 0x7, compression as u8, "{compression:?}");
                    seen.extend(rill_net::client::decode_record_batches(batch).unwrap());
                }
                c.on_response(0, &ok_for(&req), 31 * MS, &mut s).unwrap();
            }
            assert_eq!(seen.len(), 25, "{compression:?}");
            for (i, r) in seen.iter().enumerate() {
                let stamp = crate::payload::Stamp::read(r.value.as_ref().unwrap()).unwrap();
                assert_eq!(stamp.sequence, i as u64);
                assert_eq!(stamp.intended_ns, i as u64 * MS);
                assert_eq!(r.timestamp_ms, 1_700_000_000_000 + i as i64);
            }
            assert_eq!(s.totals.acked_records, 25);
            assert!(c.finished());
        }
    }

    #[test]
    fn uncompressed_timestamps_follow_the_schedule() {
        let st = ProducerSettings {
            epoch_unix_ms: 1_000_000,
            ..settings()
        };
        let mut c = core(st, Schedule::fixed(0, 100.0, 0, 1, Some(3), None), 1);
        let mut s = recorder(1);
        c.fill(NANOS_PER_S, &mut s);
        let req = c.next_request(0, NANOS_PER_S, &mut s).unwrap();
        let records = rill_net::client::decode_record_batches(&req.batches[0].1).unwrap();
        let ts: Vec<i64> = records.iter().map(|r| r.timestamp_ms).collect();
        assert_eq!(ts, [1_000_000, 1_000_010, 1_000_020]);
    }

    #[test]
    fn requests_respect_request_bytes_max() {
        let st = ProducerSettings {
            request_bytes_max: 1500,
            ..settings()
        };
        let w = Workload {
            record_bytes: RecordBytes::Fixed(100),
            key_distribution: crate::config::KeyDistribution::Uniform,
            ..Workload::default()
        };
        let shared = GeneratorShared::new(&w, 1);
        let generator = RecordGenerator::new(&shared, 0, 8);
        let sched = Schedule::fixed(0, 1e6, 0, 1, Some(80), None);
        let mut c = ProducerCore::new(st, sched, generator, &[0; 8]);
        let mut s = recorder(8);
        c.fill(NANOS_PER_S, &mut s);
        let req = c.next_request(0, NANOS_PER_S, &mut s).unwrap();
        assert!(req.size <= 1500, "{}", req.size);
        assert!(req.batches.len() < 8);
    }
}
