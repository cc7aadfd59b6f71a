//! The transaction coordinator so far (issue 17, increment 3): FindCoordinator for a
//! transactional id names this broker; InitProducerId with a transactional id gives the id
//! one producer id and a new epoch at every call (an older instance, naming its old epoch,
//! is fenced); bad timeouts and empty ids are refused with Kafka's codes; the ids are in
//! `__transaction_state` (internal, compacted, refused to producers) and survive kill -9
//! and a clean restart; DescribeTransactions and ListTransactions show them, filtered as
//! asked. librdkafka's transactional producer commits and aborts transactions that a
//! read_committed consumer sees, or does not see, whole; a second instance with the same
//! transactional id fences the first, whose open transaction is aborted.

mod common;

use std::time::Duration;

use common::txn::{init, init_ok};
use common::*;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

const CONFIG: &str = "transaction_state_partitions = 4\ntransaction_max_timeout_ms = 120000\nmetrics_listen = \"\"\n";

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn describe(net: &mut NetClient, ids: &[&str]) -> DescribeTransactionsResponse {
    net.send_at(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(ids.iter().map(|i| TransactionalId(sb(i))).collect()),
    )
}

/// ListTransactions v2 with filters: (id, producer id, state) sorted.
fn list(
    net: &mut NetClient,
    states: &[&str],
    pids: &[i64],
    pattern: Option<&str>,
) -> Vec<(String, i64, String)> {
    let r = net.send_at(
        2,
        &ListTransactionsRequest::default()
            .with_state_filters(states.iter().map(|s| sb(s)).collect())
            .with_producer_id_filters(pids.iter().map(|p| ProducerId(*p)).collect())
            .with_duration_filter(-1)
            .with_transactional_id_pattern(pattern.map(sb)),
    );
    assert_eq!(r.error_code, 0, "{r:?}");
    let mut out: Vec<(String, i64, String)> = r
        .transaction_states
        .iter()
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                t.producer_id.0,
                t.transaction_state.to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn transactional_ids_get_one_producer_id_a_new_epoch_each_init_and_survive_restarts() {
    let mut broker = Broker::start_with("txn-coordinator", BrokerOptions::with_config(CONFIG));
    let mut net = broker.net();

    // FindCoordinator for a transactional id (key type 1) names this broker.
    let found = net.send_at(
        3,
        &FindCoordinatorRequest::default()
            .with_key(sb("app-1"))
            .with_key_type(1),
    );
    assert_eq!(found.error_code, 0, "{found:?}");
    assert_eq!(found.port, broker.port() as i32);
    let node = found.node_id.0;

    let (pid, e0) = init_ok(&mut net, "app-1");
    assert!(pid >= 0);
    assert_eq!(e0, 0, "a new transactional id starts at epoch 0");
    // Every init bumps the epoch; the producer id stays.
    assert_eq!(init_ok(&mut net, "app-1"), (pid, 1));
    // v3+: naming the epoch it had, a producer gets the next one; a retry of that answer
    // (same expected epoch) gets it again; an older instance is fenced.
    assert_eq!(
        init(&mut net, 4, "app-1", 60_000, (pid, 1)),
        (ErrorCode::None, pid, 2)
    );
    assert_eq!(
        init(&mut net, 4, "app-1", 60_000, (pid, 1)),
        (ErrorCode::None, pid, 2)
    );
    assert_eq!(
        init(&mut net, 4, "app-1", 60_000, (pid, 0)).0,
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        init(&mut net, 3, "app-1", 60_000, (pid, 0)).0,
        ErrorCode::InvalidProducerEpoch,
        "v3 clients do not know PRODUCER_FENCED"
    );
    let (other, e) = init_ok(&mut net, "app-2");
    assert_ne!(other, pid, "another id, another producer id");
    assert_eq!(e, 0);
    // Refused: a timeout of 0 or past transaction_max_timeout_ms, an empty id.
    assert_eq!(
        init(&mut net, 4, "app-3", 0, (-1, -1)).0,
        ErrorCode::InvalidTransactionTimeout
    );
    assert_eq!(
        init(&mut net, 4, "app-3", 120_001, (-1, -1)).0,
        ErrorCode::InvalidTransactionTimeout
    );
    assert_eq!(
        init(&mut net, 4, "", 60_000, (-1, -1)).0,
        ErrorCode::InvalidRequest
    );
    // Idempotent producers (no transactional id) still get fresh ids.
    let plain = net.send(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(plain.error_code, 0);
    assert!(![pid, other].contains(&plain.producer_id.0));

    // DescribeTransactions and ListTransactions.
    let d = describe(&mut net, &["app-1", "nope"]);
    let a = &d.transaction_states[0];
    assert_eq!(
        (
            a.error_code,
            a.producer_id.0,
            a.producer_epoch,
            &*a.transaction_state,
            a.transaction_timeout_ms,
            a.topics.len()
        ),
        (0, pid, 2, "Empty", 60_000, 0),
        "{a:?}"
    );
    assert_eq!(
        d.transaction_states[1].error_code,
        ErrorCode::TransactionalIdNotFound.code()
    );
    let both = vec![
        ("app-1".to_string(), pid, "Empty".to_string()),
        ("app-2".to_string(), other, "Empty".to_string()),
    ];
    assert_eq!(list(&mut net, &[], &[], None), both);
    assert_eq!(list(&mut net, &[], &[other], None), both[1..]);
    assert_eq!(list(&mut net, &["Ongoing"], &[], None), vec![]);
    assert_eq!(list(&mut net, &[], &[], Some("app-1")), both[..1]);

    // The state topic: internal, compacted, not for producers.
    let md = net.send(&MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic_name("__transaction_state"))),
        ])));
    let t = &md.topics[0];
    assert_eq!(
        (t.error_code, t.is_internal, t.partitions.len()),
        (0, true, 4)
    );
    assert_eq!(
        rdkafka_topic_config(&broker, "__transaction_state", "cleanup.policy").as_deref(),
        Some("compact")
    );
    let (code, _) = net.produce_values("__transaction_state", 0, &[b"x"]);
    assert_eq!(code, ErrorCode::InvalidTopicException.code());

    // kill -9 (every transition was written with acks=all before it was answered), then a
    // clean restart: the ids are loaded from the log and the epochs go on.
    drop(net);
    broker.kill9();
    broker.restart();
    let mut net = broker.net();
    assert_eq!(init_ok(&mut net, "app-1"), (pid, 3));
    broker.terminate();
    broker.restart();
    let mut net = broker.net();
    assert_eq!(init_ok(&mut net, "app-1"), (pid, 4));
    assert_eq!(init_ok(&mut net, "app-2"), (other, 1));
    let d = describe(&mut net, &["app-1"]);
    assert_eq!(d.transaction_states[0].producer_epoch, 4);
    assert_eq!(found.node_id.0, node);

    // librdkafka's init_transactions: FindCoordinator and InitProducerId.
    let producer: rdkafka::producer::BaseProducer = client_config(&broker.bootstrap())
        .set("transactional.id", "rdkafka-app")
        .create()
        .expect("create a transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    let d = describe(&mut net, &["rdkafka-app"]);
    assert_eq!(
        (
            d.transaction_states[0].error_code,
            d.transaction_states[0].producer_epoch
        ),
        (0, 0),
        "{d:?}"
    );
    broker.terminate();
}

fn txn_producer(broker: &Broker, id: &str) -> rdkafka::producer::BaseProducer {
    let producer: rdkafka::producer::BaseProducer = client_config(&broker.bootstrap())
        .set("transactional.id", id)
        .create()
        .expect("create a transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    producer
}

fn send_all(producer: &rdkafka::producer::BaseProducer, topic: &str, values: &[String]) {
    for v in values {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .payload(v.as_str())
                    .partition(0),
            )
            .unwrap_or_else(|(e, _)| panic!("send {v}: {e}"));
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

#[test]
fn librdkafka_commits_and_aborts_and_a_second_instance_fences_the_first() {
    let mut broker = Broker::start_with("txn-rdkafka", BrokerOptions::with_config(CONFIG));
    broker.create_topic("orders", 1, &[]);
    let values = |p: &str, n: usize| (0..n).map(|i| format!("{p}-{i}")).collect::<Vec<_>>();

    let producer = txn_producer(&broker, "orders-app");
    producer.begin_transaction().unwrap();
    send_all(&producer, "orders", &values("committed", 5));
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    producer.begin_transaction().unwrap();
    send_all(&producer, "orders", &values("aborted", 3));
    producer
        .abort_transaction(Duration::from_secs(30))
        .expect("abort");
    producer.begin_transaction().unwrap();
    send_all(&producer, "orders", &values("second", 2));
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");

    // read_committed: the committed records only, the markers and aborted ones skipped.
    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    assign(&consumer, "orders", &[0], Offset::Beginning);
    let got: Vec<String> = consume_exactly(&consumer, 7, OP_TIMEOUT)
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    let mut want = values("committed", 5);
    want.extend(values("second", 2));
    assert_eq!(got, want);
    let all = broker.consumer(&[("isolation.level", "read_uncommitted")]);
    assign(&all, "orders", &[0], Offset::Beginning);
    assert_eq!(consume_exactly(&all, 10, OP_TIMEOUT).len(), 10);

    // A zombie: the first instance opens a transaction, a second instance of the same id
    // starts; the open transaction is aborted and the first instance is fenced.
    producer.begin_transaction().unwrap();
    send_all(&producer, "orders", &values("zombie", 2));
    let second = txn_producer(&broker, "orders-app");
    let fenced = producer.commit_transaction(Duration::from_secs(30));
    let e = fenced.expect_err("the fenced instance cannot commit");
    match &e {
        rdkafka::error::KafkaError::Transaction(rd) => {
            assert!(rd.is_fatal() || rd.txn_requires_abort(), "{e:?}")
        }
        other => panic!("not a transaction error: {other:?}"),
    }
    second.begin_transaction().unwrap();
    send_all(&second, "orders", &values("after", 1));
    second
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    assign(&consumer, "orders", &[0], Offset::Beginning);
    let got: Vec<String> = consume_exactly(&consumer, 8, OP_TIMEOUT)
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(got.last().map(String::as_str), Some("after-0"), "{got:?}");
    assert!(!got.iter().any(|v| v.starts_with("zombie")), "{got:?}");

    // The transaction state survives kill -9: the next instance bumps the epoch again.
    let mut net = broker.net();
    let before = describe(&mut net, &["orders-app"]).transaction_states[0].producer_epoch;
    assert_eq!(
        &*describe(&mut net, &["orders-app"]).transaction_states[0].transaction_state,
        "CompleteCommit"
    );
    drop((producer, second, net));
    broker.kill9();
    broker.restart();
    let _third = txn_producer(&broker, "orders-app");
    let mut net = broker.net();
    let after = describe(&mut net, &["orders-app"]).transaction_states[0].producer_epoch;
    assert_eq!(after, before + 1);
    broker.terminate();
}

/// A producer that dies mid-transaction (here a raw client that stops): after its
/// transaction timeout the coordinator fences it (epoch + 1) and aborts the transaction,
/// so read_committed readers move on; the dead instance can no longer write or commit.
#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    use common::txn::{values, Producer, TxnPartition};
    let config = format!("{CONFIG}transaction_abort_check_ms = 200\n");
    let broker = Broker::start_with("txn-timeout", BrokerOptions::with_config(&config));
    broker.create_topic("slow", 1, &[]);
    let mut net = broker.net();
    let (code, pid, epoch) = init(&mut net, 4, "slow-app", 1000, (-1, -1));
    assert_eq!((code, epoch), (ErrorCode::None, 0));
    let mut zombie = Producer {
        id: pid,
        epoch: 0,
        seq: 0,
    };
    assert_eq!(
        common::txn::add_partitions(&mut net, "slow-app", &zombie, "slow", &[0]),
        [ErrorCode::None]
    );
    let mut c = TxnPartition::new(broker.net(), "slow");
    let first = c.txn_produce_as(&mut zombie, &values("never", 1), "slow-app");
    assert_eq!(c.produce_plain(&values("plain", 1)).0, ErrorCode::None);
    assert_eq!(
        c.latest(1),
        first,
        "the open transaction holds read_committed readers"
    );

    // Within the timeout (1 s) and a few checks (200 ms): aborted, readers move on.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while c.latest(1) == first {
        assert!(
            std::time::Instant::now() < deadline,
            "the transaction was not aborted after its timeout"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let d = describe(&mut net, &["slow-app"]);
    let t = &d.transaction_states[0];
    // The fence takes the epoch to 1; the abort is the coordinator's own, at the server's
    // transaction version (2 by default), which bumps it again, as Kafka's does.
    assert_eq!(
        (&*t.transaction_state, t.producer_id.0, t.producer_epoch),
        ("CompleteAbort", pid, 2),
        "{t:?}"
    );
    let seen = c.fetch_all(1);
    assert_eq!(seen.aborted, Some(vec![(pid, first)]));
    // The broker returns the aborted record with the list; the client drops it.
    assert_eq!(common::txn::short(&seen.values), vec!["never-0", "plain-0"]);
    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    assign(&consumer, "slow", &[0], Offset::Beginning);
    let got = consume_exactly(&consumer, 1, OP_TIMEOUT);
    assert!(
        String::from_utf8_lossy(got[0].value.as_deref().unwrap()).starts_with("plain-0"),
        "{:?}",
        got[0]
    );
    // The dead instance is fenced.
    let (code, _) = c.produce(&mut zombie, &values("late", 1), true, Some("slow-app"));
    assert_eq!(code, ErrorCode::InvalidProducerEpoch);
    let ended = net.send_at(
        3,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(sb("slow-app")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0)
            .with_committed(true),
    );
    assert_eq!(ended.error_code, ErrorCode::ProducerFenced.code());
}

/// Consume-transform-produce with librdkafka: the input offsets go into the transaction
/// (AddOffsetsToTxn, TxnOffsetCommit) and count only if it commits: an aborted
/// transaction leaves the group's committed offset as it was, a committed one moves it,
/// and offsets of a transaction still open when the broker is killed (-9) do not count
/// after the restart (the next instance fences and aborts it).
#[test]
fn offsets_sent_to_a_transaction_count_only_when_it_commits() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::TopicPartitionList;
    let mut broker = Broker::start_with("txn-offsets", BrokerOptions::with_config(CONFIG));
    broker.create_topic("in", 1, &[]);
    broker.create_topic("out", 1, &[]);
    let mut net = broker.net();
    for i in 0..6 {
        let (code, _) = net.produce_values("in", 0, &[format!("in-{i}").as_bytes()]);
        assert_eq!(code, 0);
    }
    let consumer: BaseConsumer = client_config(&broker.bootstrap())
        .set("group.id", "eos-group")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("create a consumer");
    assign(&consumer, "in", &[0], Offset::Beginning);
    let input = consume_exactly(&consumer, 6, OP_TIMEOUT);
    let committed = |consumer: &BaseConsumer| -> Offset {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("in", 0);
        consumer
            .committed_offsets(tpl, OP_TIMEOUT)
            .expect("committed offsets")
            .find_partition("in", 0)
            .expect("in-0")
            .offset()
    };
    let offsets_at = |at: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("in", 0, Offset::Offset(at))
            .unwrap();
        tpl
    };
    let producer = txn_producer(&broker, "eos-app");
    let metadata = consumer.group_metadata().expect("group metadata");
    let transform = |producer: &rdkafka::producer::BaseProducer, tag: &str| {
        for r in &input {
            let v = format!(
                "{tag}:{}",
                String::from_utf8_lossy(r.value.as_deref().unwrap())
            );
            producer
                .send(
                    BaseRecord::<(), str>::to("out")
                        .payload(v.as_str())
                        .partition(0),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };

    // Aborted: neither the output nor the offsets count.
    producer.begin_transaction().unwrap();
    transform(&producer, "aborted");
    producer
        .send_offsets_to_transaction(&offsets_at(6), &metadata, Duration::from_secs(30))
        .expect("send offsets");
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
    assert_eq!(
        committed(&consumer),
        Offset::Invalid,
        "an aborted transaction's offsets"
    );

    // Committed: both count.
    producer.begin_transaction().unwrap();
    transform(&producer, "done");
    producer
        .send_offsets_to_transaction(&offsets_at(6), &metadata, Duration::from_secs(30))
        .expect("send offsets");
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    assert_eq!(committed(&consumer), Offset::Offset(6));
    let out = broker.consumer(&[("isolation.level", "read_committed")]);
    assign(&out, "out", &[0], Offset::Beginning);
    let got = consume_exactly(&out, 6, OP_TIMEOUT);
    assert!(
        got.iter()
            .all(|r| r.value.as_deref().unwrap().starts_with(b"done:")),
        "read_committed sees the committed output only"
    );

    // Left open across kill -9: its offsets (4) do not count after the restart. While it
    // is open, OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT (the client
    // retries), and without it the committed offset.
    producer.begin_transaction().unwrap();
    producer
        .send_offsets_to_transaction(&offsets_at(4), &metadata, Duration::from_secs(30))
        .expect("send offsets");
    let fetch_offset = |net: &mut NetClient, stable: bool| -> (i16, i64) {
        let r = net.send_at(
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(sb("eos-group")))
                .with_require_stable(stable)
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic_name("in"))
                        .with_partition_indexes(vec![0]),
                ])),
        );
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    };
    assert_eq!(
        fetch_offset(&mut net, true),
        (ErrorCode::UnstableOffsetCommit.code(), -1)
    );
    assert_eq!(fetch_offset(&mut net, false), (0, 6));
    drop((producer, consumer, net));
    broker.kill9();
    broker.restart();
    let consumer: BaseConsumer = client_config(&broker.bootstrap())
        .set("group.id", "eos-group")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create a consumer");
    let mut net = broker.net();
    assert_eq!(fetch_offset(&mut net, false), (0, 6), "after kill -9");
    assert_eq!(
        fetch_offset(&mut net, true),
        (ErrorCode::UnstableOffsetCommit.code(), -1),
        "the transaction left open is still open after kill -9"
    );
    let _next = txn_producer(&broker, "eos-app");
    assert_eq!(
        committed(&consumer),
        Offset::Offset(6),
        "after the next instance fenced the open transaction"
    );
    broker.terminate();
}

/// An idle transactional id expires (`transactional_id_expiration_ms`): a tombstone in
/// `__transaction_state`, after which DescribeTransactions does not know it, a restart does
/// not bring it back, and its next InitProducerId starts over with a new producer id.
#[test]
fn an_idle_transactional_id_expires_and_stays_expired_after_a_restart() {
    let config = format!(
        "{CONFIG}transactional_id_expiration_ms = 1000\ntransactional_id_expiry_check_ms = 200\n"
    );
    let mut broker = Broker::start_with("txn-expiry", BrokerOptions::with_config(&config));
    let mut net = broker.net();
    let (old_pid, _) = init_ok(&mut net, "short-lived");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let d = describe(&mut net, &["short-lived"]);
        if d.transaction_states[0].error_code == ErrorCode::TransactionalIdNotFound.code() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle id did not expire: {d:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.terminate();
    broker.restart();
    let mut net = broker.net();
    let d = describe(&mut net, &["short-lived"]);
    assert_eq!(
        d.transaction_states[0].error_code,
        ErrorCode::TransactionalIdNotFound.code(),
        "the tombstone keeps it expired across a restart"
    );
    let (pid, epoch) = init_ok(&mut net, "short-lived");
    assert_ne!(
        pid, old_pid,
        "an expired id starts over with a new producer id"
    );
    assert_eq!(epoch, 0);
    broker.terminate();
}

/// A group's offset committed inside a transaction takes effect when the transaction
/// commits only over an offset committed by an earlier record (Kafka's rule): a plain
/// OffsetCommit written while the transaction was open stays, also after a restart
/// reloads the group from its offsets partition.
#[test]
fn a_plain_commit_made_while_a_transaction_was_open_outlives_the_transactions_offset() {
    use common::txn::{end_txn, Producer};
    use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use offset_fetch_request::OffsetFetchRequestTopic;
    use txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
    const GROUP: &str = "rule-group";
    let mut broker = Broker::start_with("txn-offset-rule", BrokerOptions::with_config(CONFIG));
    broker.create_topic("ruled", 1, &[]);
    let mut net = broker.net();
    let (id, epoch) = init_ok(&mut net, "rule-app");
    let p = Producer { id, epoch, seq: 0 };
    let added = net.send_at(
        3,
        &AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(sb("rule-app")))
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(sb(GROUP))),
    );
    assert_eq!(added.error_code, 0, "{added:?}");
    let txn = net.send_at(
        3,
        &TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(sb("rule-app")))
            .with_group_id(GroupId(sb(GROUP)))
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name("ruled"))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(10)])]),
    );
    assert_eq!(txn.topics[0].partitions[0].error_code, 0, "{txn:?}");
    let plain = net.send_at(
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(GROUP)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("ruled"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)])]),
    );
    assert_eq!(plain.topics[0].partitions[0].error_code, 0, "{plain:?}");
    assert_eq!(end_txn(&mut net, "rule-app", &p, true), ErrorCode::None);
    let fetch = |net: &mut NetClient| {
        let r = net.send_at(
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(sb(GROUP)))
                .with_require_stable(true)
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(topic_name("ruled"))
                    .with_partition_indexes(vec![0])])),
        );
        let part = &r.topics[0].partitions[0];
        (part.error_code == 0).then_some(part.committed_offset)
    };
    let settled = wait_until_saying(
        Duration::from_secs(20),
        || fetch(&mut net),
        || "the transaction's offsets never settled".to_string(),
    );
    assert_eq!(
        settled, 5,
        "the plain commit came after the transaction's record"
    );
    broker.terminate();
    broker.restart();
    let mut net = broker.net();
    let reloaded = wait_until_saying(
        Duration::from_secs(20),
        || fetch(&mut net),
        || "no offset after the restart".to_string(),
    );
    assert_eq!(reloaded, 5, "reloaded from the offsets partition");
}
