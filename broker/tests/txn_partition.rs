//! Transactions in a partition, without a coordinator yet (issue 17, increment 2): a raw
//! client writes transactional batches (Produce with a transactional id) and ends them
//! with WriteTxnMarkers, as a coordinator or `kafka-transactions.sh abort` does. A
//! read_committed Fetch stops at the last stable offset and lists the aborted
//! transactions across segment rolls; librdkafka's read_committed consumer sees exactly
//! the committed records and a read_uncommitted one sees all; ListOffsets honours the
//! isolation level; markers from an old producer epoch or an old coordinator are fenced;
//! and all of it is the same after kill -9 and after a clean restart.

mod common;

use common::txn::*;
use common::*;
use rdkafka::Offset;
use rill_net::ErrorCode;

const TOPIC: &str = "txn";

#[test]
fn read_committed_stops_at_open_transactions_and_drops_aborted_ones_across_restarts() {
    // Transactions are written by hand, without a coordinator (WriteTxnMarkers ends them), so
    // partition verification is off, as in Kafka's own tests of hanging transactions.
    let mut broker = Broker::start_with(
        "txn-partition",
        BrokerOptions::with_config("transaction_partition_verification = false\n"),
    );
    broker.create_topic(TOPIC, 1, &[("segment.bytes", "16384")]);
    let mut c = TxnPartition::new(broker.net(), TOPIC);
    let mut a = c.init_producer();
    let mut b = c.init_producer();
    let mut w = write_transactions(&mut c, &mut a, &mut b);
    let indexes = std::fs::read_dir(broker.data_dir().join(format!("{TOPIC}-0")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".txnindex")
        })
        .count();
    assert!(
        indexes >= 2,
        "aborts went to {indexes} closed segments' indexes"
    );
    check_state(&mut c, &w, "written");

    // librdkafka drops the aborted records and stops before the open transaction.
    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    assign(&consumer, TOPIC, &[0], Offset::Beginning);
    let recs = consume_exactly(&consumer, w.committed.len(), OP_TIMEOUT);
    let got: Vec<String> = recs
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        short(&got),
        short(&w.committed),
        "librdkafka read_committed"
    );
    let uncommitted = broker.consumer(&[("isolation.level", "read_uncommitted")]);
    assign(&uncommitted, TOPIC, &[0], Offset::Beginning);
    assert_eq!(
        consume_exactly(&uncommitted, w.all.len(), OP_TIMEOUT).len(),
        w.all.len()
    );

    // Fencing: an older coordinator, an older producer epoch.
    assert_eq!(
        c.marker(&a, true, 5),
        ErrorCode::None,
        "commits the open one"
    );
    w.committed.extend(values("open", 1));
    assert_eq!(
        c.marker(&a, true, 4),
        ErrorCode::TransactionCoordinatorFenced
    );
    let old = a;
    a.epoch += 1;
    a.seq = 0;
    assert_eq!(c.marker(&a, false, 5), ErrorCode::None, "a newer epoch");
    assert_eq!(c.marker(&old, true, 5), ErrorCode::InvalidProducerEpoch);
    // A transactional batch needs the request's transactional id; a plain batch of a
    // producer inside its transaction is refused.
    let (code, _) = c.produce(&mut a, &values("noid", 1), true, None);
    assert_eq!(code, ErrorCode::TransactionalIdAuthorizationFailed);
    let reopened = c.txn_produce(&mut a, &values("again", 1));
    let (code, _) = c.produce(&mut a, &values("plain", 1), false, None);
    assert_eq!(code, ErrorCode::InvalidTxnState);
    assert_eq!(c.marker(&a, false, 5), ErrorCode::None);
    w.all.extend(values("again", 1));
    w.aborted.push((a.id, reopened));
    w.last_stable_offset = broker.watermarks(TOPIC, 0).1;
    check_state(&mut c, &w, "after the fencing checks");

    // The same after kill -9 (the active segment's aborts are only in memory and in the
    // producer snapshot) and after a clean restart.
    let d = b_and_open(&mut c, &mut b, &mut w);
    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = TxnPartition::new(broker.net(), TOPIC);
    check_state(&mut c, &w, "after kill -9");
    broker.terminate();
    broker.restart();
    let mut c = TxnPartition::new(broker.net(), TOPIC);
    check_state(&mut c, &w, "after a clean restart");
    // The transaction left open before the crash is still open, and can end.
    assert_eq!(c.marker(&d, false, 6), ErrorCode::None);
    w.aborted.push((d.id, w.last_stable_offset));
    w.last_stable_offset = broker.watermarks(TOPIC, 0).1;
    check_state(&mut c, &w, "after ending the transaction left open");
    broker.terminate();
}

/// B aborts one more transaction in the active segment, and a third producer leaves one
/// open across the restarts.
fn b_and_open(c: &mut TxnPartition, b: &mut Producer, w: &mut Written) -> Producer {
    let bx = values("b-last", 2);
    let at = c.txn_produce(b, &bx);
    assert_eq!(c.marker(b, false, 5), ErrorCode::None);
    w.all.extend(bx);
    w.aborted.push((b.id, at));
    let mut d = c.init_producer();
    let dx = values("d-open", 1);
    w.last_stable_offset = c.txn_produce(&mut d, &dx);
    w.all.extend(dx);
    d
}
