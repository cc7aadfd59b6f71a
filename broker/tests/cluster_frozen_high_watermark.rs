//! A replica that fell behind rejoins the ISR only once it holds what was acknowledged
//! (issue 15, KAFKA-7128). Before issue 15 the high watermark was not checkpointed: a
//! leader restarted within the session timeout kept its leadership and epoch with a high
//! watermark of 0, and a replica outside the ISR whose fetch offset reached that frozen
//! value joined the ISR at once, with a fraction of the data, and could be elected.
//!
//! Five brokers, all voters; one partition on three of them (A leads, B and C follow),
//! min.insync.replicas 2. C is paused while records are acknowledged by A and B, so it
//! leaves the ISR far behind. A is killed (-9) and restarted at once, within the session
//! timeout, and C resumed. The moment C shows in the ISR it is paused again (it keeps
//! what it had then), A is killed and B paused, and C resumed: C is the only live ISR
//! member and is elected. Then B and A come back. Every acknowledged record must be read
//! back at its offset: C may lead only if it joined the ISR holding all of them.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::cluster::{placement_of, settled_topic_metadata, start_cluster, wait_agreed};
use common::{acked_not_read_back, admin_options, block_on, wait_until, Acked};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

const HOSTS: [&str; 5] = [
    "127.0.0.141",
    "127.0.0.142",
    "127.0.0.143",
    "127.0.0.144",
    "127.0.0.145",
];
/// A session long enough for A's restart to fit in it; a short replica lag, so C leaves
/// the ISR soon after it is paused.
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 6000\nreplica_lag_time_max_ms = 2000\n";
const TOPIC: &str = "frozen";
/// Records every replica holds.
const BEFORE: usize = 100;
/// Records acknowledged while C is paused, and their size: C's catch-up must take longer
/// than the ISR change takes to show in Metadata.
const BEHIND: usize = 8000;
const RECORD_BYTES: usize = 10 << 10;
/// Records a producer keeps unanswered.
const IN_FLIGHT_MAX: usize = 500;

fn value(tag: &str, i: usize) -> String {
    let mut v = format!("{tag}-{i:06}-");
    v.extend(std::iter::repeat_n('x', RECORD_BYTES - v.len()));
    v
}

#[test]
fn a_replica_far_behind_joins_the_isr_only_once_it_holds_what_was_acknowledged() {
    let mut brokers = start_cluster("frozen-hw", &HOSTS, CONFIG);
    let all = (1..=5).collect();
    wait_agreed(&brokers, &[0, 1, 2, 3, 4], &all, Duration::from_secs(30));
    let admin = brokers[0].admin();
    let new = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let r = block_on(admin.create_topics([&new], &admin_options())).expect("CreateTopics");
    assert!(r[0].is_ok(), "CreateTopics: {r:?}");
    for b in &brokers {
        settled_topic_metadata(b, TOPIC, 1);
    }
    let (replicas, a) = wait_until(
        Duration::from_secs(30),
        "the partition led with its three replicas in sync",
        || {
            let (replicas, leader, isr) = placement_of(&brokers[0], TOPIC, 0);
            (leader >= 1 && isr.len() == 3).then_some((replicas, leader))
        },
    );
    let others: Vec<i32> = replicas.iter().copied().filter(|r| *r != a).collect();
    let (b, c) = (others[0], others[1]);
    let idx = |id: i32| (id - 1) as usize;
    // A broker holding no replica answers Metadata for the test throughout.
    let watcher = (1..=5)
        .find(|id| !replicas.contains(id))
        .expect("a broker without a replica");
    let bootstrap = brokers
        .iter()
        .map(|b| b.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let producer = brokers[idx(watcher)].producer(
        "all",
        &[
            ("bootstrap.servers", bootstrap.as_str()),
            ("message.timeout.ms", "60000"),
            ("enable.idempotence", "true"),
        ],
    );
    let mut acked = produce(&producer, "before", BEFORE);
    // C paused: the records below are acknowledged by A and B once C has left the ISR.
    brokers[idx(c)].pause(true);
    acked.extend(produce(&producer, "behind", BEHIND));
    let (_, leader, isr) = placement_of(&brokers[idx(watcher)], TOPIC, 0);
    assert!(
        leader == a && !isr.contains(&c),
        "A ({a}) leads and C ({c}) is out of the ISR after {BEHIND} records: leader {leader}, ISR {isr:?}"
    );

    // A killed and restarted within the session timeout; C resumed.
    brokers[idx(a)].kill9();
    brokers[idx(a)].restart();
    brokers[idx(c)].pause(false);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let (_, _, isr) = placement_of(&brokers[idx(watcher)], TOPIC, 0);
        if isr.contains(&c) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "C ({c}) did not rejoin the ISR within 60 s: ISR {isr:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let joined_after = started.elapsed();
    // C keeps what it holds now; A dies and B freezes, so C is the only live ISR member.
    brokers[idx(c)].pause(true);
    brokers[idx(a)].kill9();
    brokers[idx(b)].pause(true);
    brokers[idx(c)].pause(false);
    let led_by_c = wait_until(
        Duration::from_secs(30),
        "a leader or the partition offline",
        || {
            let (_, leader, isr) = placement_of(&brokers[idx(watcher)], TOPIC, 0);
            // Led by C, or offline with only B (frozen) left in the ISR.
            (leader == c || (leader < 0 && !isr.contains(&c))).then_some(leader == c)
        },
    );
    brokers[idx(b)].pause(false);
    brokers[idx(a)].restart();
    wait_until(
        Duration::from_secs(60),
        "the partition led with its three replicas in sync again",
        || {
            let (_, leader, isr) = placement_of(&brokers[idx(watcher)], TOPIC, 0);
            (leader >= 1 && isr.len() == 3).then_some(())
        },
    );
    let lost = acked_not_read_back(&brokers[idx(watcher)], TOPIC, 1, &acked);
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records are not at their offset: C ({c}) joined the ISR {joined_after:?} \
         after A ({a}) restarted and C resumed, and {} while A was dead and B ({b}) frozen; \
         first missing: {:?}",
        lost.len(),
        acked.len(),
        if led_by_c { "led" } else { "did not lead" },
        lost.iter()
            .take(3)
            .map(|(p, o, v, found)| (p, o, &v[..14], found.as_ref().and_then(|f| f.get(..14))))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "C joined the ISR {joined_after:?} after A's restart; C {} while A was dead and B frozen",
        if led_by_c { "led" } else { "did not lead" }
    );
    for b in &mut brokers {
        b.assert_alive();
    }
}

/// Produces `count` records tagged `tag` to partition 0, up to IN_FLIGHT_MAX unanswered;
/// each must be acknowledged. Returns them with their offsets.
fn produce(producer: &FutureProducer, tag: &str, count: usize) -> Vec<Acked> {
    let mut acked = Vec::with_capacity(count);
    let mut pending = VecDeque::new();
    let delivered = |(v, f): (String, DeliveryFuture)| -> Acked {
        let d = block_on(f)
            .expect("delivery")
            .unwrap_or_else(|(e, _)| panic!("{}: {e}", &v[..14]));
        (d.partition, d.offset, v)
    };
    for i in 0..count {
        if pending.len() >= IN_FLIGHT_MAX {
            acked.push(delivered(pending.pop_front().expect("pending")));
        }
        let v = value(tag, i);
        let f = producer
            .send_result(FutureRecord::<(), _>::to(TOPIC).partition(0).payload(&v))
            .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
        pending.push_back((v, f));
    }
    acked.extend(pending.into_iter().map(delivered));
    acked
}
