//! Kafka Streams 4.4.0 against the real broker, from `tests/clients/java`
//! (`StreamsScenarios.java`): a stateless topology (filter + mapValues from one topic to
//! another) and a stateful one (groupByKey().count() over a compacted changelog topic, run
//! twice: the second run restores its counts from the changelog after the cleaner compacted
//! it), and an exactly-once one (processing.guarantee=exactly_once_v2: transactions with
//! the input offsets sent to them).
//!
//! The input is produced with rdkafka; the output is read back by the Java side and checked
//! here record by record, and the app's committed offsets are checked through OffsetFetch.
//! A stateful exactly-once app is also killed (SIGKILL) at random points and started again
//! while input keeps coming; its output, read by rdkafka at read_committed, must reflect each
//! input record exactly once.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clients::*;
use common::groups::{committed_offsets, group_options, produce_spread};
use common::Broker;

fn java(test: &str) -> Option<ClientProc> {
    java_available(test).then(|| java_proc("kafka streams"))
}

/// Input: 60 records k{i} -> "{label}-{i}" over 2 partitions, every third one "keep".
fn produce_input(broker: &Broker, topic: &str) -> BTreeMap<(i32, i64), Vec<u8>> {
    let mut all = BTreeMap::new();
    all.extend(produce_spread(broker, topic, 2, "keep", 20));
    all.extend(produce_spread(broker, topic, 2, "drop", 40));
    all
}

/// One record to `topic`, acknowledged.
fn send_keyed(producer: &rdkafka::producer::FutureProducer, topic: &str, key: &str, value: &str) {
    let f = producer
        .send_result(
            rdkafka::producer::FutureRecord::to(topic)
                .key(key)
                .payload(value),
        )
        .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
    assert!(
        matches!(common::block_on(f), Ok(Ok(_))),
        "produce to {topic} failed"
    );
}

fn run_stateless(name: &str, command: &str) {
    let Some(mut c) = java(&format!("the Kafka Streams {command} topology")) else {
        return;
    };
    let broker = Broker::start_with(name, group_options(""));
    let (input, output, app) = ("streams-in", "streams-out", format!("{name}-app"));
    broker.create_topic(input, 2, &[]);
    broker.create_topic(output, 1, &[]);
    produce_input(&broker, input);
    let out = c
        .run(
            &[command, &broker.bootstrap(), input, output, &app, "20"],
            COMMAND_TIMEOUT,
        )
        .ok();
    // Every "keep" record, upper-cased, none of the "drop" ones, each once.
    let mut values: Vec<(String, String)> = out
        .records()
        .into_values()
        .map(|r| (r.key.unwrap_or_default(), r.value.unwrap_or_default()))
        .collect();
    values.sort();
    let mut want: Vec<(String, String)> = (0..20)
        .map(|i| (format!("k{i}"), format!("KEEP-{i}")))
        .collect();
    want.sort();
    assert_eq!(values, want, "{}", out.report());
    // The app committed its input offsets (to the end of both partitions) when it closed.
    let mut net = broker.net();
    let committed = committed_offsets(&mut net, &app, input, 2);
    assert_eq!(
        committed.values().sum::<i64>(),
        60,
        "committed offsets of the streams app: {committed:?}\n{}",
        out.report()
    );
}

#[test]
fn streams_stateless_filter_map() {
    run_stateless("streams-stateless", "streams-stateless");
}

#[test]
fn streams_exactly_once() {
    run_stateless("streams-eos", "streams-eos");
}

#[test]
fn streams_stateful_count() {
    let Some(mut c) = java("the Kafka Streams stateful topology") else {
        return;
    };
    let broker = Broker::start_with(
        "streams-stateful",
        group_options("log_cleaner_backoff_ms = 200\n"),
    );
    let (input, output, app) = ("counts-in", "counts-out", "streams-stateful-app");
    broker.create_topic(input, 2, &[]);
    broker.create_topic(output, 1, &[]);
    // The count store's changelog, made as Streams makes it (compacted) but with small
    // segments, so the cleaner compacts it within the test.
    let changelog = format!("{app}-counts-changelog");
    broker.create_topic(
        &changelog,
        2,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    // Records over 3 keys (k0, k1, k2), `per_key` each.
    let produce = |per_key: usize| {
        let producer = broker.producer("all", &[]);
        for i in 0..per_key * 3 {
            send_keyed(&producer, input, &format!("k{}", i % 3), &format!("v{i}"));
        }
    };
    let mut run = |expected: usize| {
        c.run(
            &[
                "streams-stateful",
                &broker.bootstrap(),
                input,
                output,
                app,
                &expected.to_string(),
            ],
            COMMAND_TIMEOUT,
        )
        .ok()
    };
    // (The changelog's records are small: 1,500 updates fill a few 4 KiB segments.)
    produce(500);
    run(1500);
    // The changelog holds every count update; the cleaner keeps the last of each key.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let held: usize = (0..2)
            .map(|p| common::keyed::read_partition_to_end(&broker, &changelog, p).len())
            .sum();
        if held < 1200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the changelog was not compacted within 60 s ({held} of 1500 records left)"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // A second run starts with an empty state directory, restores the counts from the
    // compacted changelog and goes on counting from 500.
    produce(10);
    let out = run(1530);
    // With no cache every update is emitted: each key's counts go 1..=510 in order.
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in out.records().into_values() {
        per_key
            .entry(r.key.unwrap_or_default())
            .or_default()
            .push(parse(&r.value.unwrap_or_default()));
    }
    let want: Vec<i64> = (1..=510).collect();
    for k in ["k0", "k1", "k2"] {
        assert_eq!(
            per_key.get(k),
            Some(&want),
            "counts of {k}\n{}",
            out.report()
        );
    }
}

/// Kafka Streams exactly_once_v2 with state: a count per key, whose changelog, output and
/// input offsets go in one transaction per commit. Input trickles in all along; the app is
/// killed with SIGKILL at random points (while it restores and rebalances, and while it
/// processes with a transaction open), `KILLS` times, and started again with the same state
/// directory and group.instance.id. Every input record must be reflected exactly once: read
/// at read_committed, the output holds per key the counts 1, 2, ..., n in order, n being that
/// key's input records, none missing or repeated; read_uncommitted shows the records of the
/// transactions the kills left open (so the kills did interrupt transactions). The kill
/// points come from a seed printed at the start (`RILL_TEST_SEED` sets it).
#[test]
fn streams_exactly_once_stateful_survives_kill_9_at_random_points() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const KILLS: usize = 6;
    const KEYS: usize = 12;
    /// Input records a second, all along.
    const RATE: u64 = 200;
    if !java_available("the Kafka Streams exactly-once app killed at random points") {
        return;
    }
    let broker = Broker::start_with("streams-eos-kill", group_options(""));
    let (input, output, app) = ("eos-in", "eos-out", "streams-eos-kill-app");
    broker.create_topic(input, 2, &[]);
    broker.create_topic(output, 1, &[]);
    let state_dir = broker.root().join("streams-state");
    std::fs::create_dir_all(&state_dir).expect("state dir");
    let state_dir = state_dir.to_str().expect("utf-8 path").to_string();
    let seed: u64 = std::env::var("RILL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| common::now_ms() as u64);
    eprintln!("streams kill test: seed {seed} (RILL_TEST_SEED={seed} repeats the kill points)");
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let args = [
        "streams-eos-count",
        &broker.bootstrap(),
        input,
        output,
        app,
        &state_dir,
    ];
    let stop = AtomicBool::new(false);
    let producer = broker.producer("all", &[]);
    let mut log = Vec::new();
    let sent: Vec<usize> = std::thread::scope(|scope| {
        let feeder = scope.spawn(|| {
            let mut sent = vec![0usize; KEYS];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                send_keyed(
                    &producer,
                    input,
                    &format!("k{}", i % KEYS),
                    &format!("v{i}"),
                );
                sent[i % KEYS] += 1;
                i += 1;
                std::thread::sleep(Duration::from_micros(1_000_000 / RATE));
            }
            sent
        });
        let mut kill_round = |round: usize| {
            let mut c = java_proc("kafka streams (killed)");
            c.start(&args);
            // Half the kills come while the app starts (restore, rebalance, first
            // transactions), half once it has been processing for a while.
            if round % 2 == 1 {
                let lines = c.wait_for("-> RUNNING", Duration::from_secs(90));
                assert!(
                    lines.is_ok(),
                    "round {round}: the app never ran: {lines:?}\n{}",
                    c.stderr_tail()
                );
            }
            let delay = Duration::from_millis(200 + next(3000));
            std::thread::sleep(delay);
            log.push(format!(
                "round {round}: killed {delay:?} after {}",
                if round % 2 == 1 {
                    "RUNNING"
                } else {
                    "its start"
                }
            ));
            drop(c); // SIGKILL
        };
        for round in 0..KILLS {
            kill_round(round);
        }
        // A kill that lands between transactions, or while a transactions v2 producer's
        // first write of a transaction still waits for its partition to join it, leaves
        // no aborted record behind. Until one does, a few more rounds (the check at the
        // end needs one).
        let aborted = || {
            common::txn::TxnPartition::new(broker.net(), output)
                .fetch_all(1)
                .aborted
                .is_some_and(|a| !a.is_empty())
        };
        for round in KILLS..2 * KILLS {
            if aborted() {
                break;
            }
            kill_round(round);
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        feeder.join().expect("input feeder")
    });
    let total: usize = sent.iter().sum();
    let mut c = java_proc("kafka streams (last run)");
    c.start(&args);
    let deadline = Instant::now() + Duration::from_secs(150);
    let recs = loop {
        let recs = common::keyed::read_partition_to_end(&broker, output, 0);
        if recs.len() >= total {
            break recs;
        }
        assert!(
            Instant::now() < deadline,
            "the output holds {} of {total} counts after 150 s ({log:?})\n{}",
            recs.len(),
            c.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(c);
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &recs {
        let key = String::from_utf8(r.key.clone().expect("a key")).unwrap();
        let value = String::from_utf8(r.value.clone().expect("a value")).unwrap();
        counts
            .entry(key)
            .or_default()
            .push(value.parse().expect("a count"));
    }
    for (k, n) in sent.iter().enumerate() {
        let key = format!("k{k}");
        let want: Vec<u64> = (1..=*n as u64).collect();
        assert_eq!(
            counts.get(&key),
            Some(&want),
            "key {key}: each input record counted exactly once (seed {seed}, {log:?})"
        );
    }
    assert_eq!(
        recs.len(),
        total,
        "no output beyond one count per input record"
    );
    // The kills left transactions open, which were aborted: their records are in the log,
    // seen by read_uncommitted only.
    let uncommitted = common::txn::TxnPartition::new(broker.net(), output).fetch_all(0);
    assert!(
        uncommitted.values.len() > total,
        "no kill interrupted a transaction: read_uncommitted sees {} records, read_committed {total} ({log:?})",
        uncommitted.values.len()
    );
    eprintln!(
        "streams kill test: {total} input records, {} output records aborted by the kills ({log:?})",
        uncommitted.values.len() - total
    );
}
