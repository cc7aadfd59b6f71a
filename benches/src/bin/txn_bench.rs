//! Transaction benchmark (issue 17), against a running broker, with Rill's own client (the
//! same for both sides of each comparison):
//!
//! - `produce BOOTSTRAP idempotent|transactional|transactional-v2 SECONDS RECORDS_PER_TXN`:
//!   `PRODUCERS` producers (one connection and thread each, one partition each) send
//!   batches of `BATCH_RECORDS` records of `RECORD_BYTES` with acks=all, one request at a
//!   time. Idempotent: sequenced batches, no transaction. Transactional: a transactional
//!   id each; every `RECORDS_PER_TXN` records are one transaction (AddPartitionsToTxn, the
//!   batches at Produce v9, EndTxn commit). Transactional-v2: transactions v2 (KIP-890) as a
//!   Kafka 4 client speaks it: no AddPartitionsToTxn, Produce v12 (the leader adds the
//!   partition), EndTxn v5 (the epoch bumped, sequences from 0 again). Prints records per
//!   second.
//! - `commits BOOTSTRAP SECONDS [v2]`: the same producers run transactions of one record
//!   each (AddPartitionsToTxn, one batch, EndTxn commit; with `v2`, transactions v2);
//!   prints committed transactions per second. Each commit writes the coordinator's state
//!   twice and a marker, each synced.
//!
//! Output lines: `RESULT <name> <value>`, for benches/txn.sh.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use rill_benches::connect;
use rill_net::client::{
    encode_record_batch, BatchOptions, BlockingStream, Connection, ProduceRecord,
};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "txn-bench";
const PRODUCERS: usize = 4;
const BATCH_RECORDS: usize = 100;
const RECORD_BYTES: usize = 1024;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn create_topic(addr: &str) {
    let mut c = connect(addr);
    let r = block_on(
        c.send(
            5,
            &CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_num_partitions(PRODUCERS as i32)
                    .with_replication_factor(1)]),
        ),
    )
    .expect("CreateTopics");
    let code = r.topics[0].error_code;
    assert!(code == 0 || code == 36, "CreateTopics error {code}");
}

/// One producer's connection, identity and sequence.
struct Producer {
    c: Connection<BlockingStream>,
    partition: i32,
    txn_id: Option<String>,
    pid: i64,
    epoch: i16,
    seq: i32,
    /// Transactions v2 (KIP-890 part 2).
    v2: bool,
}

impl Producer {
    fn new(addr: &str, partition: i32, txn_id: Option<String>, v2: bool) -> Producer {
        let mut c = connect(addr);
        let init = block_on(
            c.send(
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(txn_id.as_deref().map(|t| TransactionalId(s(t))))
                    .with_transaction_timeout_ms(60_000),
            ),
        )
        .expect("InitProducerId");
        assert_eq!(
            init.error_code, 0,
            "InitProducerId error {}",
            init.error_code
        );
        Producer {
            c,
            partition,
            txn_id,
            pid: init.producer_id.0,
            epoch: init.producer_epoch,
            seq: 0,
            v2,
        }
    }

    /// AddPartitionsToTxn for this producer's partition: the partition's error code.
    fn begin(&mut self) -> i16 {
        let Some(id) = self.txn_id.clone().filter(|_| !self.v2) else {
            return 0;
        };
        let r = block_on(
            self.c.send(
                3,
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId(s(&id)))
                    .with_v3_and_below_producer_id(ProducerId(self.pid))
                    .with_v3_and_below_producer_epoch(self.epoch)
                    .with_v3_and_below_topics(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(s(TOPIC)))
                            .with_partitions(vec![self.partition]),
                    ]),
            ),
        )
        .expect("AddPartitionsToTxn");
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    }

    fn send(&mut self, records: usize, value: &Bytes) {
        let recs: Vec<ProduceRecord> = (0..records)
            .map(|_| ProduceRecord {
                value: Some(value.clone()),
                timestamp_ms: 1_700_000_000_000,
                ..Default::default()
            })
            .collect();
        let batch = encode_record_batch(
            &recs,
            &BatchOptions {
                producer_id: self.pid,
                producer_epoch: self.epoch,
                base_sequence: self.seq,
                transactional: self.txn_id.is_some(),
                ..BatchOptions::default()
            },
        )
        .expect("encode");
        let r = block_on(
            self.c.send(
                if self.v2 { 12 } else { 9 },
                &ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_transactional_id(self.txn_id.as_deref().map(|t| TransactionalId(s(t))))
                    .with_topic_data(vec![produce_request::TopicProduceData::default()
                        .with_name(TopicName(s(TOPIC)))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(self.partition)
                                .with_records(Some(batch)),
                        ])]),
            ),
        )
        .expect("Produce");
        let code = r.responses[0].partition_responses[0].error_code;
        assert_eq!(code, 0, "Produce error {code}");
        self.seq += records as i32;
    }

    fn commit(&mut self) {
        let Some(id) = self.txn_id.clone() else {
            return;
        };
        let r = block_on(
            self.c.send(
                if self.v2 { 5 } else { 3 },
                &EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&id)))
                    .with_producer_id(ProducerId(self.pid))
                    .with_producer_epoch(self.epoch)
                    .with_committed(true),
            ),
        )
        .expect("EndTxn");
        // The coordinator completes the last transaction in the background: a new one may
        // meet CONCURRENT_TRANSACTIONS at its AddPartitionsToTxn; EndTxn itself is done.
        assert_eq!(r.error_code, 0, "EndTxn error {}", r.error_code);
        if self.v2 {
            // The next transaction goes on at the epoch (and producer id) EndTxn named,
            // its sequences from 0.
            self.pid = r.producer_id.0;
            self.epoch = r.producer_epoch;
            self.seq = 0;
        }
    }
}

/// Runs `per_thread` on `PRODUCERS` threads for `seconds`; the sum of what they count.
fn spread(seconds: u64, per_thread: impl Fn(usize, Instant) -> u64 + Sync) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let total: u64 = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|i| {
                let f = &per_thread;
                sc.spawn(move || f(i, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("producer"))
            .sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// AddPartitionsToTxn right after a commit may find the completion still running
/// (CONCURRENT_TRANSACTIONS, which clients retry): retried after a millisecond.
fn begin_retrying(p: &mut Producer) {
    loop {
        match p.begin() {
            0 => return,
            51 => std::thread::sleep(Duration::from_millis(1)),
            code => panic!("AddPartitionsToTxn error {code}"),
        }
    }
}

fn produce(addr: &str, mode: &str, seconds: u64, per_txn: usize) {
    create_topic(addr);
    let transactional = mode != "idempotent";
    let value = Bytes::from(vec![0x5a; RECORD_BYTES]);
    let rate = spread(seconds, |i, deadline| {
        let id = transactional.then(|| format!("txn-bench-{i}-{}", std::process::id()));
        let mut p = Producer::new(addr, i as i32, id, mode == "transactional-v2");
        let mut sent = 0u64;
        while Instant::now() < deadline {
            begin_retrying(&mut p);
            let mut in_txn = 0;
            while in_txn < per_txn {
                let n = BATCH_RECORDS.min(per_txn - in_txn);
                p.send(n, &value);
                in_txn += n;
            }
            p.commit();
            sent += in_txn as u64;
        }
        sent
    });
    let name = mode.replace('-', "_");
    println!("RESULT {name}_records_per_s {rate:.0}");
}

fn commits(addr: &str, seconds: u64, v2: bool) {
    create_topic(addr);
    let value = Bytes::from(vec![0x5a; 100]);
    let rate = spread(seconds, |i, deadline| {
        let id = format!("txn-bench-small-{i}-{}", std::process::id());
        let mut p = Producer::new(addr, i as i32, Some(id), v2);
        let mut done = 0u64;
        while Instant::now() < deadline {
            begin_retrying(&mut p);
            p.send(1, &value);
            p.commit();
            done += 1;
        }
        done
    });
    let name = if v2 { "commits_v2" } else { "commits" };
    println!("RESULT {name}_per_s {rate:.0}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: txn_bench BOOTSTRAP produce idempotent|transactional|transactional-v2 SECONDS RECORDS_PER_TXN | BOOTSTRAP commits SECONDS [v2]";
    let addr = args.get(1).expect(usage);
    match args.get(2).map(String::as_str) {
        Some("produce") => produce(
            addr,
            args.get(3).expect(usage),
            args.get(4).expect(usage).parse().expect(usage),
            args.get(5).expect(usage).parse().expect(usage),
        ),
        Some("commits") => commits(
            addr,
            args.get(3).expect(usage).parse().expect(usage),
            args.get(4).is_some_and(|a| a == "v2"),
        ),
        _ => panic!("{usage}"),
    }
}
