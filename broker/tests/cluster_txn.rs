//! Transactions in a cluster of three (issue 17): a transactional id's coordinator is the
//! leader of its `__transaction_state` partition, which writes the end markers to the
//! leaders of the transaction's partitions on other brokers (WriteTxnMarkers between
//! brokers). librdkafka's transactional producer commits and aborts over three partitions
//! led by different brokers and a read_committed consumer sees exactly the committed
//! records; after kill -9 of the coordinator, another broker leads the state partition,
//! loads the id from its replica, and a new instance of the producer goes on (its epoch
//! one higher). A coordinator that loses the leadership without dying (paused) drops the
//! ids it loaded once it runs again.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{agreed_cluster_with_topic, settled_topic_metadata};
use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Offset;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;

const HOSTS: [&str; 3] = ["127.0.0.171", "127.0.0.172", "127.0.0.173"];
const CONFIG: &str = "metrics_listen = \"\"\nauto_create_topics = false\nbroker_heartbeat_interval_ms = 200\nbroker_session_timeout_ms = 2000\nreplica_lag_time_max_ms = 2000\ntransaction_state_partitions = 3\n";
const TOPIC: &str = "txn-spread";
const ID: &str = "cluster-app";

fn bootstrap(brokers: &[Broker], alive: &[usize]) -> String {
    alive
        .iter()
        .map(|&i| brokers[i].bootstrap())
        .collect::<Vec<_>>()
        .join(",")
}

fn txn_producer(bootstrap: &str) -> BaseProducer {
    let producer: BaseProducer = client_config(bootstrap)
        .set("transactional.id", ID)
        .create()
        .expect("create a transactional producer");
    producer
        .init_transactions(Duration::from_secs(60))
        .expect("init_transactions");
    producer
}

/// One transaction: `values` spread over the three partitions, committed or aborted.
fn transaction(producer: &BaseProducer, values: &[String], commit: bool) {
    producer.begin_transaction().unwrap();
    for (i, v) in values.iter().enumerate() {
        producer
            .send(
                BaseRecord::<(), str>::to(TOPIC)
                    .payload(v.as_str())
                    .partition((i % 3) as i32),
            )
            .unwrap_or_else(|(e, _)| panic!("send {v}: {e}"));
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    if commit {
        producer
            .commit_transaction(Duration::from_secs(60))
            .expect("commit");
    } else {
        producer
            .abort_transaction(Duration::from_secs(60))
            .expect("abort");
    }
}

/// What a read_committed consumer of all three partitions gets, as a set.
fn read_committed(bootstrap: &str, count: usize) -> BTreeSet<String> {
    let consumer: rdkafka::consumer::BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("check-{}", now_ms()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create a consumer");
    assign(&consumer, TOPIC, &[0, 1, 2], Offset::Beginning);
    consume_exactly(&consumer, count, Duration::from_secs(60))
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect()
}

/// The broker coordinating `ID` as `broker` answers FindCoordinator, once it is not
/// `except` (a broker just killed, until the cluster moves the leadership).
fn coordinator(broker: &Broker, except: i32) -> i32 {
    coordinator_of(broker, ID, except)
}

/// [`coordinator`] of transactional id `id`.
fn coordinator_of(broker: &Broker, id: &str, except: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = broker.net().send_at(
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(id.to_string()))
                .with_key_type(1),
        );
        if r.error_code == 0 && r.node_id.0 != except {
            return r.node_id.0;
        }
        assert!(Instant::now() < deadline, "no coordinator for {id}: {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ID`'s state as `broker` describes it (DescribeTransactions).
fn describe(broker: &Broker) -> describe_transactions_response::TransactionState {
    let d = broker.net().send_at(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str(ID))]),
    );
    d.transaction_states
        .into_iter()
        .next()
        .expect("one state asked, one answered")
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn transactions_span_brokers_and_survive_the_coordinators_death() {
    let new = NewTopic::new(TOPIC, 3, TopicReplication::Fixed(2));
    let mut brokers = agreed_cluster_with_topic("cluster-txn", &HOSTS, CONFIG, &new);
    let t = settled_topic_metadata(&brokers[0], TOPIC, 3);
    let leaders: BTreeSet<i32> = t.partitions.iter().map(|p| p.leader_id.0).collect();
    assert!(leaders.len() >= 2, "partition leaders spread: {leaders:?}");
    let all = bootstrap(&brokers, &[0, 1, 2]);

    let producer = txn_producer(&all);
    let coord = coordinator(&brokers[0], -1);
    transaction(&producer, &values("one", 6), true);
    transaction(&producer, &values("aborted", 6), false);
    transaction(&producer, &values("two", 6), true);
    let mut want: BTreeSet<String> = values("one", 6).into_iter().collect();
    want.extend(values("two", 6));
    assert_eq!(read_committed(&all, 12), want);
    drop(producer);

    // A late batch of the committed transaction (its producer id and epoch), sent to a
    // partition another broker leads: that leader asks the coordinator over the network
    // and refuses it (KIP-890 part 1), so nothing is appended and nothing hangs.
    let s = describe(&brokers[(coord - 1) as usize]);
    let (p, leader) = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .find(|(_, l)| *l != coord)
        .expect("a partition another broker leads");
    let mut raw = common::txn::TxnPartition::of(brokers[(leader - 1) as usize].net(), TOPIC, p);
    let end = raw.latest(0);
    let mut late = common::txn::Producer {
        id: s.producer_id.0,
        epoch: s.producer_epoch,
        seq: 100,
    };
    // Produce v11, as librdkafka (transactions v1) sends it: v12 would be a transactions v2
    // client starting its next transaction, which adds the partition.
    let (code, _) = raw.produce_at(Some(11), &mut late, &values("late", 1), true, Some(ID));
    assert_eq!(
        code,
        rill_net::ErrorCode::TransactionAbortable,
        "broker {leader} appended a late batch of a committed transaction"
    );
    assert_eq!((raw.latest(0), raw.latest(1)), (end, end));

    // The coordinator dies; the state partition's other replica leads it and loads the id.
    let dead = (coord - 1) as usize;
    brokers[dead].kill9();
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let rest = bootstrap(&brokers, &alive);
    let next = coordinator(&brokers[alive[0]], coord);
    let producer = txn_producer(&rest);
    transaction(&producer, &values("three", 6), true);
    want.extend(values("three", 6));
    assert_eq!(read_committed(&rest, 18), want);
    let s = &describe(&brokers[(next - 1) as usize]);
    assert_eq!(
        (s.error_code, &*s.transaction_state),
        (0, "CompleteCommit"),
        "{s:?}"
    );
    assert_eq!(
        s.producer_epoch, 1,
        "the second instance bumped the epoch the dead coordinator had written"
    );
    for (i, b) in brokers.iter_mut().enumerate() {
        if i != dead {
            b.terminate();
        }
    }
}

/// A coordinator that loses its state partition's leadership without dying (paused past its
/// session timeout) drops the transactional ids it loaded as soon as it runs again, instead of
/// keeping a stale copy until it leads that partition again; the producer goes on with the
/// broker that took over, and the resumed broker sends it there.
#[test]
fn a_coordinator_that_lost_its_leadership_unloads_its_transactional_ids() {
    const HOSTS: [&str; 3] = ["127.0.0.174", "127.0.0.175", "127.0.0.176"];
    let config = format!("{CONFIG}transaction_abort_check_ms = 300\n");
    let new = NewTopic::new(TOPIC, 3, TopicReplication::Fixed(3));
    let mut brokers = agreed_cluster_with_topic("cluster-txn-unload", &HOSTS, &config, &new);
    let all = bootstrap(&brokers, &[0, 1, 2]);
    let first = txn_producer(&all);
    transaction(&first, &values("one", 6), true);
    let coord = coordinator(&brokers[0], -1);
    let c = (coord - 1) as usize;
    let unloaded =
        |b: &Broker| lines_containing(&b.stderr_of_start(b.starts()), "transactional ids unloaded");
    assert!(unloaded(&brokers[c]).is_empty(), "nothing to unload yet");

    // Paused past its session timeout: the controller fences it and another replica of the
    // state partition leads it and loads the id. A new instance of the producer goes on there.
    brokers[c].pause(true);
    let alive: Vec<usize> = (0..3).filter(|i| *i != c).collect();
    let rest = bootstrap(&brokers, &alive);
    let next = coordinator(&brokers[alive[0]], coord);
    let second = txn_producer(&rest);
    transaction(&second, &values("two", 6), true);

    // Running again, the old coordinator drops what it loaded within a check or two.
    brokers[c].pause(false);
    wait_until_saying(
        Duration::from_secs(20),
        || (!unloaded(&brokers[c]).is_empty()).then_some(()),
        || {
            format!(
                "broker {coord} kept the transactional ids of a state partition it no longer leads; its log:\n{}",
                brokers[c].log_tail(40)
            )
        },
    );
    // Transactions go on, through the new coordinator or through the old one again if the
    // preferred-leader pass gave it the partition back (then it loaded the id afresh).
    transaction(&second, &values("three", 6), true);
    // The commit is answered once PrepareCommit is durable; the markers and CompleteCommit
    // follow.
    let at_coordinator = || {
        let now = coordinator(&brokers[c], -1);
        (now, describe(&brokers[(now - 1) as usize]))
    };
    wait_until_saying(
        Duration::from_secs(20),
        || {
            let (_, s) = at_coordinator();
            ((s.error_code, &*s.transaction_state, s.producer_epoch) == (0, "CompleteCommit", 1))
                .then_some(())
        },
        || {
            let (now, s) = at_coordinator();
            format!("broker {now} coordinates {ID} after {next} took over from {coord}: {s:?}")
        },
    );
    let mut want: BTreeSet<String> = values("one", 6).into_iter().collect();
    want.extend(values("two", 6));
    want.extend(values("three", 6));
    assert_eq!(read_committed(&all, 18), want);
    drop(first);
    for b in &mut brokers {
        b.terminate();
    }
}

/// Transactions v2 across brokers, as a Kafka 4 producer speaks it (raw client): each
/// partition's first Produce v12 makes its leader add it at the coordinator, on another
/// broker for most of them (AddPartitionsToTxn v5 between brokers); EndTxn v5 commits and
/// bumps the epoch, the coordinator's markers reach every leader, and a late batch of the
/// old epoch is fenced on a leader that is not the coordinator.
#[test]
fn transactions_v2_add_partitions_that_other_brokers_lead() {
    use common::txn::{describe_txn, end_txn_at, init_ok, Producer, TxnPartition};
    const HOSTS: [&str; 3] = ["127.0.0.177", "127.0.0.178", "127.0.0.179"];
    const V2: &str = "cluster-v2-app";
    let new = NewTopic::new(TOPIC, 3, TopicReplication::Fixed(2));
    let mut brokers = agreed_cluster_with_topic("cluster-txn-v2", &HOSTS, CONFIG, &new);
    let t = settled_topic_metadata(&brokers[0], TOPIC, 3);
    let coord = coordinator_of(&brokers[0], V2, -1);
    let mut net = brokers[(coord - 1) as usize].net();
    let (id, epoch) = init_ok(&mut net, V2);
    let mut p = Producer { id, epoch, seq: 0 };
    let leader_of = |i: i32| t.partitions[i as usize].leader_id.0;
    assert!(
        (0..3).any(|i| leader_of(i) != coord),
        "some partition is led by a broker that does not coordinate {V2}"
    );
    let mut parts: Vec<TxnPartition> = (0..3)
        .map(|i| TxnPartition::of(brokers[(leader_of(i) - 1) as usize].net(), TOPIC, i))
        .collect();
    for (i, c) in parts.iter_mut().enumerate() {
        p.seq = 0;
        let (code, _) = c.produce_at(
            Some(12),
            &mut p,
            &values(&format!("v2-{i}"), 2),
            true,
            Some(V2),
        );
        assert_eq!(
            code,
            rill_net::ErrorCode::None,
            "partition {i} led by {}",
            leader_of(i as i32)
        );
    }
    let s = describe_txn(&mut net, V2);
    assert_eq!(&*s.transaction_state, "Ongoing", "{s:?}");
    assert_eq!(
        s.topics.iter().map(|x| x.partitions.len()).sum::<usize>(),
        3,
        "{s:?}"
    );
    assert_eq!(
        end_txn_at(&mut net, 5, V2, &p, true),
        (rill_net::ErrorCode::None, id, epoch + 1)
    );
    for c in parts.iter_mut() {
        assert_eq!(
            c.settled(),
            3,
            "partition {}: two records and the commit marker",
            c.partition
        );
    }
    let (i, _) = (0..3)
        .map(|i| (i, leader_of(i)))
        .find(|(_, l)| *l != coord)
        .expect("a partition another broker leads");
    let c = &mut parts[i as usize];
    let end = c.latest(0);
    p.seq = 2;
    let (code, _) = c.produce_at(Some(12), &mut p, &values("late", 1), true, Some(V2));
    assert_eq!(
        code,
        rill_net::ErrorCode::InvalidProducerEpoch,
        "a batch of the old epoch"
    );
    assert_eq!(c.latest(0), end, "nothing appended");
    for b in brokers.iter_mut() {
        b.terminate();
    }
}

/// The Java client (4.4, transactions v2) across the death of its coordinator: a commit
/// and an abort, kill -9 of the broker coordinating the id, then a new instance on the
/// other brokers commits and aborts again. The new coordinator loaded the id as a v2
/// transaction (one bump per EndTxn, and InitProducerId's, counted from the dead one's
/// epoch), and a read_committed consumer sees exactly both commits.
#[test]
fn java_transactions_v2_survive_the_coordinators_death() {
    use clients::{java_available, java_proc};
    use common::txn::describe_txn;
    const HOSTS: [&str; 3] = ["127.0.0.181", "127.0.0.182", "127.0.0.183"];
    const JAVA_ID: &str = "java-v2-app";
    const JAVA_TOPIC: &str = "java-v2";
    if !java_available("the Java transactional producer in a cluster") {
        return;
    }
    let mut java = java_proc("java kafka-clients");
    let new = NewTopic::new(JAVA_TOPIC, 1, TopicReplication::Fixed(3));
    let mut brokers = agreed_cluster_with_topic("cluster-txn-java", &HOSTS, CONFIG, &new);
    let all = bootstrap(&brokers, &[0, 1, 2]);
    let run = |java: &mut clients::ClientProc, bootstrap: &str| {
        let out = java
            .run(
                &[
                    "produce-txn",
                    bootstrap,
                    JAVA_TOPIC,
                    "0",
                    "10",
                    JAVA_ID,
                    "max.block.ms=60000",
                ],
                Duration::from_secs(120),
            )
            .ok();
        assert_eq!(out.line("aborted"), vec!["10"], "{}", out.report());
        out.line("committed")
    };
    assert_eq!(run(&mut java, &all), vec!["0", "0", "9"]);
    let coord = coordinator_of(&brokers[0], JAVA_ID, -1);
    // The abort's EndTxn goes out only if its records reached the broker (the client
    // skips an empty transaction's), so the id ends in CompleteAbort or CompleteCommit.
    let aborted = |s: &describe_transactions_response::TransactionState| {
        i16::from(&*s.transaction_state == "CompleteAbort")
    };
    let s = describe_txn(&mut brokers[(coord - 1) as usize].net(), JAVA_ID);
    let first = s.producer_epoch;
    assert_eq!(
        first,
        1 + aborted(&s),
        "transactions v2: one bump per EndTxn; {s:?}"
    );

    let dead = (coord - 1) as usize;
    brokers[dead].kill9();
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let rest = bootstrap(&brokers, &alive);
    let next = coordinator_of(&brokers[alive[0]], JAVA_ID, coord);
    // After the first commit (0-9) and its marker (10); the aborted records may never have
    // been sent (abortTransaction drops what the producer still holds).
    let second: Vec<i64> = run(&mut java, &rest)
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        second[0] == 0 && second[1] >= 11 && second[2] == second[1] + 9,
        "the second instance's commit: {second:?}"
    );
    let s = describe_txn(&mut brokers[(next - 1) as usize].net(), JAVA_ID);
    assert_eq!(
        s.producer_epoch,
        first + 2 + aborted(&s),
        "the new coordinator went on from the dead one's epoch (InitProducerId and the commit bump it, an abort once more); {s:?}"
    );
    clients::check_java_read_committed(&mut java, &rest, JAVA_TOPIC, 20, Duration::from_secs(120));
    for (i, b) in brokers.iter_mut().enumerate() {
        if i != dead {
            b.terminate();
        }
    }
}
