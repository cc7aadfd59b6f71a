//! Partition verification (KIP-890 part 1, `transaction_partition_verification`): before a
//! partition leader appends a producer's first transactional batch of a transaction, it
//! asks the transaction coordinator whether the partition is in that transaction. A batch
//! to a partition never added, and a late batch of a transaction that already ended, are
//! refused (INVALID_TXN_STATE before Produce v11, TRANSACTION_ABORTABLE from v11) and
//! append nothing, so no transaction opens that no marker would ever close: the last
//! stable offset never gets stuck. Without verification (the setting off) the same late
//! batch hangs the partition, which is what Kafka's hanging transactions were.

mod common;

use std::time::Duration;

use common::txn::*;
use common::*;
use rill_net::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

const TOPIC: &str = "verified";
const ID: &str = "verify-1";
const CONFIG: &str = "transaction_state_partitions = 2\nmetrics_listen = \"\"\n";

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn add(net: &mut NetClient, p: &Producer, partition: i32) -> ErrorCode {
    add_partitions(net, ID, p, TOPIC, &[partition])[0]
}

fn end(net: &mut NetClient, p: &Producer, commit: bool) -> ErrorCode {
    end_txn(net, ID, p, commit)
}

/// AddPartitionsToTxn v`version` with VerifyOnly, as a partition leader asks: the codes of
/// partitions 0 and 1.
fn verify_only(net: &mut NetClient, version: i16, p: &Producer) -> Vec<ErrorCode> {
    let r = net.send_at(
        version,
        &AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(sb(ID)))
                .with_producer_id(ProducerId(p.id))
                .with_producer_epoch(p.epoch)
                .with_verify_only(true)
                .with_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![0, 1])]),
        ]),
    );
    assert_eq!(r.error_code, 0, "{r:?}");
    let t = &r.results_by_transaction[0];
    assert_eq!(*t.transactional_id.0, *ID);
    let mut parts: Vec<(i32, i16)> = t.topic_results[0]
        .results_by_partition
        .iter()
        .map(|p| (p.partition_index, p.partition_error_code))
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, c)| code_of(c)).collect()
}

#[test]
fn a_leader_appends_a_transactional_batch_only_to_a_partition_in_the_open_transaction() {
    let broker = Broker::start_with("txn-verify", BrokerOptions::with_config(CONFIG));
    broker.create_topic(TOPIC, 2, &[]);
    let mut net = broker.net();
    let mut c = TxnPartition::new(broker.net(), TOPIC);
    let (id, epoch) = init_ok(&mut net, ID);
    let mut p = Producer { id, epoch, seq: 0 };

    // Never added: refused with the code each Produce version knows, nothing appended.
    let (code, _) = c.produce_at(Some(10), &mut p, &values("never", 1), true, Some(ID));
    assert_eq!(code, ErrorCode::InvalidTxnState, "Produce v10");
    let (code, _) = c.produce_at(Some(11), &mut p, &values("never", 1), true, Some(ID));
    assert_eq!(code, ErrorCode::TransactionAbortable, "Produce v11");
    assert_eq!((c.latest(0), c.latest(1)), (0, 0), "nothing was appended");
    assert_eq!(
        verify_only(&mut net, 5, &p),
        [ErrorCode::TransactionAbortable; 2],
        "the coordinator's own answer (v5)"
    );
    assert_eq!(
        verify_only(&mut net, 4, &p),
        [ErrorCode::InvalidTxnState; 2],
        "v4 predates TRANSACTION_ABORTABLE"
    );

    // Added: the first batch is verified and opens the transaction, the next need not ask.
    assert_eq!(add(&mut net, &p, 0), ErrorCode::None);
    assert_eq!(
        verify_only(&mut net, 5, &p),
        [ErrorCode::None, ErrorCode::TransactionAbortable],
        "partition 0 is in the transaction, 1 is not"
    );
    assert_eq!(c.txn_produce_as(&mut p, &values("in", 2), ID), 0);
    assert_eq!(c.txn_produce_as(&mut p, &values("in2", 1), ID), 2);
    assert_eq!(
        c.latest(1),
        0,
        "the open transaction holds read_committed back"
    );

    // Aborted: the marker lands, and a late batch of that transaction (same producer id
    // and epoch, as a transaction version 1 client keeps them) opens nothing.
    assert_eq!(end(&mut net, &p, false), ErrorCode::None);
    let end_offset = c.settled();
    assert_eq!(
        end_offset, 4,
        "two batches of 3 records and the abort marker"
    );
    // While the coordinator still completes the abort it answers CONCURRENT_TRANSACTIONS,
    // which a leader passes on as NOT_ENOUGH_REPLICAS for the client to retry.
    let mut code = ErrorCode::NotEnoughReplicas;
    wait_until_saying(
        Duration::from_secs(20),
        || {
            code = c
                .produce_at(Some(10), &mut p, &values("late", 1), true, Some(ID))
                .0;
            (code != ErrorCode::NotEnoughReplicas).then_some(())
        },
        || "the coordinator never finished the abort".to_string(),
    );
    assert_eq!(
        code,
        ErrorCode::InvalidTxnState,
        "a late batch after the abort"
    );
    assert_eq!(
        (c.latest(0), c.latest(1)),
        (end_offset, end_offset),
        "the late batch was not appended and nothing hangs"
    );

    // A new instance fences the old one: the old epoch's batch is refused as fenced.
    let (_, new_epoch) = init_ok(&mut net, ID);
    assert!(new_epoch > p.epoch);
    let (code, _) = c.produce_at(Some(11), &mut p, &values("zombie", 1), true, Some(ID));
    assert_eq!(code, ErrorCode::InvalidProducerEpoch, "a fenced producer");
    let mut q = Producer {
        id: p.id,
        epoch: new_epoch,
        seq: 0,
    };
    assert_eq!(add(&mut net, &q, 0), ErrorCode::None);
    let at = c.txn_produce_as(&mut q, &values("new", 1), ID);
    assert_eq!(end(&mut net, &q, true), ErrorCode::None);
    assert_eq!(
        c.settled(),
        at + 2,
        "the new instance's transaction committed"
    );
    // read_committed: every record up to the commit, with the aborted transaction named
    // for the reader to drop (the refused batches are nowhere).
    let seen = c.fetch_all(1);
    assert_eq!(
        short(&seen.values),
        short(&[values("in", 2), values("in2", 1), values("new", 1)].concat())
    );
    assert_eq!(seen.aborted, Some(vec![(p.id, 0)]));
}

/// `limits.transaction_partitions_max` bounds what one transaction holds (its state record
/// lists every partition): an AddPartitionsToTxn past it is refused and changes nothing.
#[test]
fn a_transaction_holds_at_most_its_partition_limit() {
    let broker = Broker::start_with(
        "txn-partitions-max",
        BrokerOptions::with_config(&format!(
            "{CONFIG}[limits]\ntransaction_partitions_max = 3\n"
        )),
    );
    broker.create_topic(TOPIC, 5, &[]);
    let mut net = broker.net();
    let (id, epoch) = init_ok(&mut net, ID);
    let p = Producer { id, epoch, seq: 0 };
    let all = [ErrorCode::None; 3];
    assert_eq!(add_partitions(&mut net, ID, &p, TOPIC, &[0, 1]), all[..2]);
    assert_eq!(
        add_partitions(&mut net, ID, &p, TOPIC, &[1, 2]),
        all[..2],
        "3 partitions in all"
    );
    assert_eq!(
        add_partitions(&mut net, ID, &p, TOPIC, &[3]),
        [ErrorCode::UnknownServerError],
        "a 4th partition"
    );
    assert_eq!(
        add_partitions(&mut net, ID, &p, TOPIC, &[0, 2]),
        all[..2],
        "partitions already in still are"
    );
    let d = net.send_at(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(sb(ID))]),
    );
    let held: usize = d.transaction_states[0]
        .topics
        .iter()
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(held, 3, "{d:?}");
    // A new transaction starts from none again.
    assert_eq!(end(&mut net, &p, true), ErrorCode::None);
    wait_until_saying(
        Duration::from_secs(20),
        || (add_partitions(&mut net, ID, &p, TOPIC, &[2, 3, 4]) == all).then_some(()),
        || "the next transaction could not take 3 other partitions".to_string(),
    );
}

#[test]
fn without_verification_a_late_batch_opens_a_transaction_that_never_ends() {
    let broker = Broker::start_with(
        "txn-verify-off",
        BrokerOptions::with_config(&format!(
            "{CONFIG}transaction_partition_verification = false\n"
        )),
    );
    broker.create_topic(TOPIC, 2, &[]);
    let mut net = broker.net();
    let mut c = TxnPartition::new(broker.net(), TOPIC);
    let (id, epoch) = init_ok(&mut net, ID);
    let mut p = Producer { id, epoch, seq: 0 };
    assert_eq!(add(&mut net, &p, 0), ErrorCode::None);
    c.txn_produce_as(&mut p, &values("in", 1), ID);
    assert_eq!(end(&mut net, &p, false), ErrorCode::None);
    let end_offset = c.settled();
    // The setting off, the leader does not ask: the late batch is appended and its
    // transaction stays open (until the producer's next transaction or a manual abort).
    let (code, at) = c.produce_at(Some(10), &mut p, &values("late", 1), true, Some(ID));
    assert_eq!((code, at), (ErrorCode::None, end_offset));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        (c.latest(0), c.latest(1)),
        (end_offset + 1, end_offset),
        "the late batch holds read_committed back"
    );
}
