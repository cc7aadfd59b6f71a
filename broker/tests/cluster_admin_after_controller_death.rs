//! After kill -9 of the broker that is the controller, a librdkafka admin client still gets
//! its CreateTopics done promptly: Metadata names a live broker as the place for admin
//! requests (every broker takes them and hands them to the metadata raft group), so the
//! client is not left sending to the dead one. Chaos runs saw confluent-kafka's AdminClient
//! hang for over 90 s in 5 of 6 tries.
//!
//! The second test pauses the controller (SIGSTOP) instead: its sockets stay open and
//! nothing answers. A client that asks a live broker where admin requests go, right after
//! the pause, must be told a broker that answers, not the frozen one (where its
//! CreateTopics would wait out the request timeout).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{cluster_of, start_cluster, wait_agreed};
use common::{admin_options, block_on, client_config, Broker};
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const HOSTS: [&str; 3] = ["127.0.0.61", "127.0.0.62", "127.0.0.63"];
const HOSTS_PAUSED: [&str; 3] = ["127.0.0.64", "127.0.0.65", "127.0.0.66"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\n";
/// What the issue saw was over 90 s; Kafka clients would call this prompt.
const PROMPT: Duration = Duration::from_secs(20);

/// An admin client bootstrapping from `brokers`, refreshing metadata as rarely as
/// librdkafka does by default (every 5 minutes) rather than every 2 s as the other tests'
/// clients do: where the Metadata answers name the controller is where it sends admin
/// requests until a connection fails.
fn admin(brokers: &[&Broker]) -> AdminClient<DefaultClientContext> {
    let bootstrap = brokers
        .iter()
        .map(|b| b.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    client_config(&bootstrap)
        .set("topic.metadata.refresh.interval.ms", "300000")
        .create()
        .expect("admin client")
}

fn create(admin: &AdminClient<DefaultClientContext>, name: &str) -> Duration {
    let started = Instant::now();
    let new = NewTopic::new(name, 2, TopicReplication::Fixed(2));
    let r = block_on(admin.create_topics([&new], &admin_options())).expect("CreateTopics answered");
    assert!(r[0].is_ok(), "create {name}: {r:?}");
    started.elapsed()
}

#[test]
fn admin_requests_go_on_after_the_controller_dies() {
    let mut brokers = start_cluster("admin-controller", &HOSTS, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    let controller = wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let admin = admin(&brokers.iter().collect::<Vec<_>>());
    create(&admin, "before");
    let dead = (controller - 1) as usize;
    brokers[dead].kill9();
    let took = create(&admin, "after");
    assert!(
        took < PROMPT,
        "CreateTopics took {took:?} after the controller (broker {controller}) was killed"
    );
    let alive: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    let (_, new_controller) = cluster_of(&brokers[alive[0]]);
    eprintln!(
        "CreateTopics after the controller died took {took:?}; new controller {new_controller}"
    );
    for i in alive {
        brokers[i].assert_alive();
    }
}

#[test]
fn admin_requests_go_on_while_the_controller_is_paused() {
    let mut brokers = start_cluster("admin-paused", &HOSTS_PAUSED, CONFIG);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    let controller = wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    let frozen = (controller - 1) as usize;
    let alive: Vec<usize> = (0..3).filter(|&i| i != frozen).collect();
    create(
        &admin(&alive.iter().map(|&i| &brokers[i]).collect::<Vec<_>>()),
        "before",
    );
    brokers[frozen].pause(true);
    // A new client, knowing only the live brokers, asks at once: the metadata raft group
    // has not noticed the pause yet.
    let client = admin(&alive.iter().map(|&i| &brokers[i]).collect::<Vec<_>>());
    let started = Instant::now();
    let new = NewTopic::new("while-paused", 2, TopicReplication::Fixed(2));
    let r = block_on(client.create_topics([&new], &admin_options()));
    let took = started.elapsed();
    brokers[frozen].pause(false);
    assert!(
        matches!(&r, Ok(v) if v[0].is_ok()) && took < PROMPT,
        "CreateTopics while the controller (broker {controller}) was paused: {r:?} after {took:?}"
    );
    eprintln!("CreateTopics while the controller was paused took {took:?}");
    wait_agreed(&brokers, &[0, 1, 2], &all, Duration::from_secs(20));
    for b in &mut brokers {
        b.assert_alive();
    }
}
