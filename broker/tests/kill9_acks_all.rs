//! kill -9 during acks=all production loses no acknowledged record.
//!
//! A producer thread sends records with acks=all in a loop and writes down every
//! acknowledged (partition, offset, value). The broker is killed with SIGKILL at a random
//! moment (seeded: the seed is printed; replay with RILL_KILL_SEED) while records are in
//! flight, restarted on the same directory, and every record acknowledged so far must be
//! there at the same offset with the same value, with offsets dense from 0. Every other
//! round starts after a clean stop and restart, so a crash that follows a clean restart is
//! covered too. Rounds: RILL_KILL_ROUNDS (default 3).

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{block_on, read_all, seed_from_env, Broker};
use rdkafka::producer::FutureRecord;

const TOPIC: &str = "kill9";
const PARTITIONS: i32 = 3;
const INFLIGHT_MAX: usize = 64;

/// One acknowledged record.
#[derive(Debug, Clone)]
struct Acked {
    partition: i32,
    offset: i64,
    value: String,
}

/// Produces until `stop`, then waits for every outstanding delivery (each fails within
/// message.timeout.ms once the broker is gone) and returns.
fn produce_until(
    bootstrap_broker: &Broker,
    round: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> std::thread::JoinHandle<(usize, usize)> {
    let producer = bootstrap_broker.producer(
        "all",
        &[
            ("message.timeout.ms", "4000"),
            ("request.timeout.ms", "3000"),
            ("linger.ms", "2"),
        ],
    );
    std::thread::spawn(move || {
        let mut inflight = VecDeque::new();
        let mut sent = 0usize;
        let mut failed = 0usize;
        let mut settle =
            |inflight: &mut VecDeque<(i32, String, rdkafka::producer::DeliveryFuture)>| {
                let (partition, value, future) = inflight.pop_front().expect("an inflight record");
                match block_on(future) {
                    Ok(Ok(d)) => {
                        assert_eq!(d.partition, partition, "delivered to another partition");
                        acked.lock().unwrap().push(Acked {
                            partition,
                            offset: d.offset,
                            value,
                        });
                    }
                    Ok(Err(_)) | Err(_) => failed += 1,
                }
            };
        while !stop.load(Ordering::SeqCst) {
            let partition = (sent % PARTITIONS as usize) as i32;
            let value = format!("round-{round}-record-{sent}");
            let key = format!("k{sent}");
            let record = FutureRecord::to(TOPIC)
                .key(&key)
                .payload(&value)
                .partition(partition);
            match producer.send_result(record) {
                Ok(future) => inflight.push_back((partition, value, future)),
                Err((e, _)) => panic!("enqueue failed: {e}"),
            }
            sent += 1;
            if inflight.len() >= INFLIGHT_MAX {
                settle(&mut inflight);
            }
        }
        while !inflight.is_empty() {
            settle(&mut inflight);
        }
        (sent, failed)
    })
}

/// Every record acknowledged so far is in the log at its offset; offsets are dense.
fn verify(broker: &Broker, acked: &[Acked], when: &str) {
    let mut total = 0usize;
    let mut ends = Vec::new();
    for p in 0..PARTITIONS {
        let (low, high) = broker.watermarks(TOPIC, p);
        assert_eq!(low, 0, "{when}: log start of partition {p}");
        total += high as usize;
        ends.push(high);
    }
    let log = read_all(broker, TOPIC, &[0, 1, 2], total);
    for p in 0..PARTITIONS {
        let offsets: Vec<i64> = log
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        let dense: Vec<i64> = (0..ends[p as usize]).collect();
        assert_eq!(
            offsets, dense,
            "{when}: offsets of partition {p} are not dense"
        );
    }
    let mut lost = Vec::new();
    for a in acked {
        match log.get(&(a.partition, a.offset)) {
            Some(r) if r.value.as_deref() == Some(a.value.as_bytes()) => {}
            Some(r) => lost.push(format!(
                "{}/{}: acknowledged {:?}, log has {:?}",
                a.partition,
                a.offset,
                a.value,
                r.value.as_deref().map(String::from_utf8_lossy)
            )),
            None => lost.push(format!(
                "{}/{}: acknowledged {:?}, missing (partition ends at {})",
                a.partition, a.offset, a.value, ends[a.partition as usize]
            )),
        }
    }
    assert!(
        lost.is_empty(),
        "{when}: {} of {} acknowledged records lost or changed, first ones:\n{}",
        lost.len(),
        acked.len(),
        lost.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn kill9_during_acks_all_loses_no_acknowledged_record() {
    let seed = seed_from_env("RILL_KILL_SEED");
    let rounds: usize = std::env::var("RILL_KILL_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("RILL_KILL_ROUNDS must be a number"))
        .unwrap_or(3);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut broker = Broker::start("kill9");
    broker.create_topic(TOPIC, PARTITIONS, &[]);
    let mut all_acked: Vec<Acked> = Vec::new();

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let producer = produce_until(&broker, round, stop.clone(), acked.clone());
        // Let production get going (at least one acknowledgement), then kill at random.
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline && !producer.is_finished(),
                "round {round}: no record was acknowledged within 20 s (seed {seed})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let delay = Duration::from_millis(rng.u64(0..1500));
        std::thread::sleep(delay);
        broker.assert_alive();
        broker.kill9();
        stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !producer.is_finished() {
            assert!(
                Instant::now() < deadline,
                "round {round}: the producer did not settle its deliveries within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (sent, failed) = producer.join().expect("producer thread panicked");
        let round_acked = std::mem::take(&mut *acked.lock().unwrap());
        eprintln!(
            "round {round}: killed after {delay:?} past the first ack; sent {sent}, \
             acknowledged {}, failed {failed} (seed {seed})",
            round_acked.len()
        );
        all_acked.extend(round_acked);

        // The crash left every partition without its clean-shutdown marker, so the restart
        // has to scan (and truncate what was torn).
        let checkpoints = common::partition_checkpoints(&broker.data_dir());
        assert_eq!(
            checkpoints.len(),
            PARTITIONS as usize,
            "round {round}: one checkpoint per partition expected: {checkpoints:?}"
        );
        for (path, cp) in &checkpoints {
            assert!(
                cp.clean_shutdown.is_none(),
                "round {round}: {} claims a clean shutdown after kill -9",
                path.display()
            );
        }

        broker.restart();
        verify(
            &broker,
            &all_acked,
            &format!("after kill -9 in round {round} (seed {seed})"),
        );
        // Every other round starts from a clean stop instead: a crash after a clean restart
        // must not trust the marker the clean stop left.
        if round % 2 == 0 && round + 1 < rounds {
            broker.terminate();
            broker.restart();
            verify(
                &broker,
                &all_acked,
                &format!("after a clean restart following round {round} (seed {seed})"),
            );
        }
    }
    broker.terminate();
}
