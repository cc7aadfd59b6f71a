//! The Java client (`org.apache.kafka:kafka-clients` 4.4.0, the reference client) against
//! the real broker: an idempotent producer (acks=all) with every codec, a consumer, consumer
//! groups with the classic protocol and with `group.protocol=consumer` (KIP-848), and the
//! AdminClient calls. The Java side is `tests/clients/java` (one JVM per test serves every
//! command; see `common/clients.rs`); what it did is checked through the broker (raw fetch,
//! OffsetFetch, DescribeGroups) and rdkafka.
//!
//! Without the Java programs built (`.ci/run` builds them) the tests fail under CI and
//! otherwise pass with a loud notice.

#[path = "common/clients.rs"]
mod clients;
mod common;

use clients::*;
use common::groups::group_options;
use common::Broker;

fn java(test: &str) -> Option<ClientProc> {
    java_available(test).then(|| java_proc("java kafka-clients"))
}

#[test]
fn java_idempotent_producer_every_codec() {
    let Some(mut c) = java("the Java producer") else {
        return;
    };
    let broker = Broker::start("java-produce");
    check_produce_every_codec(&broker, &mut c, "java", &[]);
}

#[test]
fn java_consumer_every_codec() {
    let Some(mut c) = java("the Java consumer") else {
        return;
    };
    let broker = Broker::start("java-consume");
    check_consume_every_codec(&broker, &mut c, "java");
}

#[test]
fn java_classic_group_rebalance_and_commits() {
    let Some(mut c) = java("the Java classic consumer group") else {
        return;
    };
    let broker = Broker::start_with("java-group-classic", group_options(""));
    let mut admin = java_proc("java kafka-clients admin");
    check_group_with_admin(&broker, &mut c, "java", "classic", Some(&mut admin));
}

#[test]
fn java_consumer_protocol_group_rebalance_and_commits() {
    let Some(mut c) = java("the Java KIP-848 consumer group") else {
        return;
    };
    let broker = Broker::start_with("java-group-consumer", group_options(""));
    let mut admin = java_proc("java kafka-clients admin");
    check_group_with_admin(&broker, &mut c, "java", "consumer", Some(&mut admin));
}

#[test]
fn java_admin_topics_and_configs() {
    let Some(mut c) = java("the Java AdminClient topic calls") else {
        return;
    };
    let broker = Broker::start("java-admin-topics");
    check_admin_topics(&broker, &mut c, "java");
    check_admin_broker_configs(&broker, &mut c, "java");
    check_admin_cluster(&broker, &mut c, "java");
}

#[test]
fn java_admin_offsets_and_delete_records() {
    let Some(mut c) = java("the Java AdminClient offset calls") else {
        return;
    };
    let broker = Broker::start("java-admin-offsets");
    check_admin_offsets(&broker, &mut c, "java");
}

#[test]
fn java_admin_groups() {
    let Some(mut c) = java("the Java AdminClient group calls") else {
        return;
    };
    let broker = Broker::start_with("java-admin-groups", group_options(""));
    check_admin_groups(&broker, &mut c, "java");
}

#[test]
fn java_admin_describe_log_dirs() {
    let Some(mut c) = java("the Java AdminClient describeLogDirs") else {
        return;
    };
    let broker = Broker::start("java-admin-logdirs");
    broker.create_topic("java-logdirs", 1, &[]);
    let node = node_id(&broker).to_string();
    let out = check_admin_call(
        &mut c,
        &["admin-describe-log-dirs", &broker.bootstrap(), &node],
        "logdir",
    );
    assert!(
        out.lines("replica").iter().any(|w| w[0] == "java-logdirs"),
        "{}",
        out.report()
    );
}

#[test]
fn java_admin_describe_producers() {
    let Some(mut c) = java("the Java AdminClient describeProducers") else {
        return;
    };
    let broker = Broker::start("java-admin-producers");
    broker.create_topic("java-producers", 1, &[]);
    let b = broker.bootstrap();
    c.run(
        &["produce", &b, "java-producers", "none", "0", "5", "p"],
        COMMAND_TIMEOUT,
    )
    .ok();
    let out = check_admin_call(
        &mut c,
        &["admin-describe-producers", &b, "java-producers", "0"],
        "producers",
    );
    assert_eq!(
        out.line("producers"),
        vec!["1".to_string()],
        "{}",
        out.report()
    );
}

#[test]
fn java_admin_elect_leaders() {
    let Some(mut c) = java("the Java AdminClient electLeaders") else {
        return;
    };
    let broker = Broker::start("java-admin-elect");
    broker.create_topic("java-elect", 1, &[]);
    let out = c.run(
        &[
            "admin-elect-leaders",
            &broker.bootstrap(),
            "java-elect",
            "0",
        ],
        COMMAND_TIMEOUT,
    );
    // Kafka answers ELECTION_NOT_NEEDED when the preferred leader already leads.
    assert!(
        out.code == 0 || out.mentions("ElectionNotNeeded"),
        "{}",
        out.report()
    );
}

#[test]
fn java_admin_describe_features() {
    let Some(mut c) = java("the Java AdminClient describeFeatures") else {
        return;
    };
    let broker = Broker::start("java-admin-features");
    check_admin_call(
        &mut c,
        &["admin-describe-features", &broker.bootstrap()],
        "feature",
    );
}

#[test]
fn java_admin_list_transactions() {
    let Some(mut c) = java("the Java AdminClient listTransactions") else {
        return;
    };
    let broker = Broker::start("java-admin-txn");
    check_admin_call(
        &mut c,
        &["admin-list-transactions", &broker.bootstrap()],
        "transactions",
    );
}

#[test]
fn java_admin_describe_acls() {
    let Some(mut c) = java("the Java AdminClient describeAcls") else {
        return;
    };
    let broker = Broker::start("java-admin-acls");
    check_describe_acls(&mut c, &broker);
}

/// Topic configs Kafka defines and Terraform, Strimzi or Helm set: every one must be
/// accepted and described back.
#[test]
fn java_admin_create_topic_with_standard_kafka_configs() {
    let Some(mut c) = java("topic creation with Kafka's topic configs") else {
        return;
    };
    let broker = Broker::start("java-admin-kafka-configs");
    let b = broker.bootstrap();
    let configs = [
        "unclean.leader.election.enable=false",
        "compression.type=zstd",
        "message.timestamp.after.max.ms=3600000",
        "index.interval.bytes=8192",
    ];
    let mut args = vec!["admin-create-topic", &b, "java-kafka-configs", "1"];
    args.extend_from_slice(&configs);
    c.run(&args, COMMAND_TIMEOUT).ok();
    let out = c
        .run(
            &["admin-describe-configs", &b, "topic", "java-kafka-configs"],
            COMMAND_TIMEOUT,
        )
        .ok();
    for kv in configs {
        assert!(
            out.stdout
                .iter()
                .any(|l| l.starts_with(&format!("config {kv} "))),
            "{kv} not described\n{}",
            out.report()
        );
    }
}

/// What `kafka-reassign-partitions --verify` does once a reassignment is done: delete the
/// replication throttles from the brokers and the topic (IncrementalAlterConfigs DELETE).
#[test]
fn java_admin_clear_replication_throttles() {
    let Some(mut c) = java("clearing replication throttles") else {
        return;
    };
    let broker = Broker::start("java-admin-throttles");
    let b = broker.bootstrap();
    broker.create_topic("java-throttled", 1, &[]);
    let node = node_id(&broker).to_string();
    c.run(
        &[
            "admin-alter-configs",
            &b,
            "broker",
            &node,
            "leader.replication.throttled.rate=",
            "follower.replication.throttled.rate=",
            "replica.alter.log.dirs.io.max.bytes.per.second=",
        ],
        COMMAND_TIMEOUT,
    )
    .ok();
    c.run(
        &[
            "admin-alter-configs",
            &b,
            "topic",
            "java-throttled",
            "leader.replication.throttled.replicas=",
            "follower.replication.throttled.replicas=",
        ],
        COMMAND_TIMEOUT,
    )
    .ok();
}

/// Fetch limits far below one batch: Kafka still returns the first batch of each partition
/// (so the consumer makes progress), then applies the limits.
#[test]
fn java_consumer_with_fetch_limits_below_one_batch() {
    let Some(mut c) = java("the Java consumer with tiny fetch limits") else {
        return;
    };
    let broker = Broker::start("java-fetch-limits");
    check_consume_every_codec_with(
        &broker,
        &mut c,
        "java-limits",
        &["max.partition.fetch.bytes=64", "fetch.max.bytes=64"],
    );
}

/// Committing an offset for a topic that does not exist is refused with
/// UNKNOWN_TOPIC_OR_PARTITION, and nothing is stored.
#[test]
fn java_commit_for_an_unknown_topic_is_refused() {
    let Some(mut c) = java("OffsetCommit for an unknown topic") else {
        return;
    };
    let broker = Broker::start_with("java-commit-unknown", group_options(""));
    let out = c.run(
        &[
            "admin-alter-group-offsets",
            &broker.bootstrap(),
            "java-unknown-commit",
            "no-such-topic",
            "0=5",
        ],
        COMMAND_TIMEOUT,
    );
    assert!(
        out.code == 1 && out.mentions("UnknownTopicOrPartitionException"),
        "{}",
        out.report()
    );
    let committed = common::groups::committed_offsets(
        &mut broker.net(),
        "java-unknown-commit",
        "no-such-topic",
        1,
    );
    assert_eq!(committed.get(&0), Some(&-1), "{committed:?}");
}

/// A zombie: a transactional producer opens a transaction, a second instance with the same
/// transactional.id starts and commits; the first is fenced (its commit fails with
/// ProducerFencedException), its record is aborted, and a read_committed consumer sees the
/// second instance's record only.
#[test]
fn java_transactional_zombie_is_fenced() {
    let Some(mut c) = java("the Java transactional producer (zombie fencing)") else {
        return;
    };
    let broker = Broker::start_with("java-txn-zombie", group_options(""));
    broker.create_topic("java-zombie", 1, &[]);
    let b = broker.bootstrap();
    let out = c
        .run(
            &[
                "produce-txn-zombie",
                &b,
                "java-zombie",
                "0",
                "java-zombie-id",
            ],
            COMMAND_TIMEOUT,
        )
        .ok();
    assert_eq!(
        out.line("fenced"),
        vec!["ProducerFencedException"],
        "{}",
        out.report()
    );
    let out = c
        .run(
            &[
                "consume",
                &b,
                "java-zombie",
                "1",
                "1",
                "isolation.level=read_committed",
            ],
            COMMAND_TIMEOUT,
        )
        .ok();
    let recs = out.records();
    assert_eq!(recs.len(), 1, "{}", out.report());
    assert!(
        recs.values()
            .all(|r| r.value.as_deref() == Some("successor")),
        "{}",
        out.report()
    );
}

/// A transactional producer commits one transaction and aborts another; a read_committed
/// consumer sees exactly the committed records.
#[test]
fn java_transactional_producer() {
    // Transactions v2 (the default `transaction_version`): each EndTxn bumps the epoch,
    // so after InitProducerId (epoch 0) and a commit it is 1, and 2 after the abort.
    java_transactions("", &[("CompleteCommit", 1), ("CompleteAbort", 2)]);
}

#[test]
fn java_transactional_producer_on_transactions_v1() {
    // With `transaction.version` finalized at 1 the same client speaks the classic
    // protocol (AddPartitionsToTxn, EndTxn v4): the epoch stays where InitProducerId put it.
    java_transactions(
        "transaction_version = 1\n",
        &[("CompleteCommit", 0), ("CompleteAbort", 0)],
    );
}

/// The Java transactional producer commits 10 records and aborts one on a broker with
/// `config`; a read_committed consumer sees exactly the 10; the id's state and epoch are
/// then one of `ends`. The abort's EndTxn is sent only if its records got as far as the
/// broker (the client drops what it still holds and skips an empty transaction's
/// EndTxn), so the id may still be in CompleteCommit.
fn java_transactions(config: &str, ends: &[(&str, i16)]) {
    let Some(mut c) = java("the Java transactional producer") else {
        return;
    };
    let broker = Broker::start_with("java-txn", group_options(config));
    broker.create_topic("java-txn", 1, &[]);
    let b = broker.bootstrap();
    let out = c
        .run(
            &[
                "produce-txn",
                &b,
                "java-txn",
                "0",
                "10",
                "java-txn-id",
                "max.block.ms=15000",
            ],
            COMMAND_TIMEOUT,
        )
        .ok();
    check_txn_produce(&out);
    check_java_read_committed(&mut c, &b, "java-txn", 10, COMMAND_TIMEOUT);
    let t = common::txn::describe_txn(&mut broker.net(), "java-txn-id");
    assert!(
        ends.contains(&(&*t.transaction_state, t.producer_epoch)),
        "{t:?}, expected one of {ends:?}"
    );
}
