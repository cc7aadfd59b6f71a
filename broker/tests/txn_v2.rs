//! Transactions v2 (KIP-890 part 2, `transaction.version` 2, the default) with a raw client,
//! as a Kafka 4 producer speaks it: no AddPartitionsToTxn, the first Produce v12 to a
//! partition adds it to the transaction (the leader asks the coordinator), and every
//! EndTxn v5 bumps the producer epoch and names the one to go on with, so a late batch of
//! an ended transaction is fenced by its old epoch. A retried EndTxn is answered as the
//! first was. Java's TV2 client is in `client_java.rs`, Kafka Streams in `client_streams.rs`.

mod common;

use std::time::Duration;

use common::txn::*;
use common::*;
use rill_net::ErrorCode;

const TOPIC: &str = "tv2";
const ID: &str = "tv2-app";
const CONFIG: &str = "transaction_state_partitions = 2\nmetrics_listen = \"\"\n";

#[test]
fn a_produce_adds_its_partition_and_every_end_bumps_the_epoch() {
    let broker = Broker::start_with("txn-v2", BrokerOptions::with_config(CONFIG));
    broker.create_topic(TOPIC, 1, &[]);
    let mut net = broker.net();
    let mut c = TxnPartition::new(broker.net(), TOPIC);
    let (id, epoch) = init_ok(&mut net, ID);
    assert_eq!(epoch, 0);
    let mut p = Producer { id, epoch, seq: 0 };

    // No AddPartitionsToTxn: Produce v12 adds the partition.
    let (code, at) = c.produce_at(Some(12), &mut p, &values("one", 2), true, Some(ID));
    assert_eq!((code, at), (ErrorCode::None, 0));
    let t = describe_txn(&mut net, ID);
    assert_eq!(&*t.transaction_state, "Ongoing", "{t:?}");
    assert_eq!(
        t.topics
            .iter()
            .map(|x| (x.topic.to_string(), x.partitions.clone()))
            .collect::<Vec<_>>(),
        vec![(TOPIC.to_string(), vec![0])]
    );
    assert_eq!(c.latest(1), 0, "open: read_committed waits");

    // EndTxn v5 commits and names the bumped epoch.
    assert_eq!(
        end_txn_at(&mut net, 5, ID, &p, true),
        (ErrorCode::None, id, 1)
    );
    assert_eq!(c.settled(), 3, "two records and the commit marker");

    // A late batch of the committed transaction, at its old epoch, is fenced.
    let (code, _) = c.produce_at(Some(12), &mut p, &values("late", 1), true, Some(ID));
    assert_eq!(
        code,
        ErrorCode::InvalidProducerEpoch,
        "a batch of epoch 0 after the bump"
    );
    assert_eq!((c.latest(0), c.latest(1)), (3, 3), "nothing appended");

    // The next transaction at the new epoch (sequences start again), aborted.
    let mut q = Producer {
        id,
        epoch: 1,
        seq: 0,
    };
    let (code, at) = c.produce_at(Some(12), &mut q, &values("two", 1), true, Some(ID));
    assert_eq!((code, at), (ErrorCode::None, 3));
    assert_eq!(
        end_txn_at(&mut net, 5, ID, &q, false),
        (ErrorCode::None, id, 2)
    );
    assert_eq!(c.settled(), 5, "one record and the abort marker");
    // The client retries an EndTxn it got no answer for: while the markers go out that is
    // CONCURRENT_TRANSACTIONS (retried), then the first answer again, nothing written.
    let retried = wait_until_saying(
        Duration::from_secs(20),
        || {
            let r = end_txn_at(&mut net, 5, ID, &q, false);
            (r.0 != ErrorCode::ConcurrentTransactions).then_some(r)
        },
        || "the abort never completed".to_string(),
    );
    assert_eq!(retried, (ErrorCode::None, id, 2));
    assert_eq!(c.latest(0), 5);
    let t = describe_txn(&mut net, ID);
    assert_eq!(
        (&*t.transaction_state, t.producer_epoch),
        ("CompleteAbort", 2),
        "{t:?}"
    );

    // read_committed: the committed records, the aborted one named for the reader to drop.
    let seen = c.fetch_all(1);
    assert_eq!(
        short(&seen.values),
        short(&[values("one", 2), values("two", 1)].concat())
    );
    assert_eq!(seen.aborted, Some(vec![(id, 3)]));
}
