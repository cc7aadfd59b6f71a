//! franz-go (github.com/twmb/franz-go v1.22.3, kgo for producing and consuming, kadm for
//! admin) against the real broker: an idempotent acks=all producer with every codec, a
//! transactional producer (commit and abort, read back by a read_committed consumer), a
//! consumer, consumer groups with the classic protocol and with KIP-848 (kgo's
//! `ServerSideBalancer`), and the kadm calls. The program is `tests/clients/go` (one process
//! per test serves every command; see `common/clients.rs`); what it did is checked through
//! the broker (raw fetch, OffsetFetch, DescribeGroups) and rdkafka.
//!
//! Without the program built (`.ci/run` builds it) the tests fail under CI and otherwise
//! pass with a loud notice.

#[path = "common/clients.rs"]
mod clients;
mod common;

use clients::*;
use common::groups::group_options;
use common::Broker;

fn go(test: &str) -> Option<ClientProc> {
    go_available(test).then(|| go_proc("franz-go"))
}

#[test]
fn go_idempotent_producer_every_codec() {
    let Some(mut c) = go("the franz-go producer") else {
        return;
    };
    let broker = Broker::start("go-produce");
    check_produce_every_codec(&broker, &mut c, "go", &[]);
}

#[test]
fn go_transactional_producer_commits_and_aborts() {
    let Some(mut c) = go("the franz-go transactional producer") else {
        return;
    };
    let broker = Broker::start_with("go-txn", group_options(""));
    broker.create_topic("go-txn", 1, &[]);
    let out = c
        .run(
            &[
                "txn-produce",
                &broker.bootstrap(),
                "go-txn",
                "0",
                "10",
                "go-txn-id",
            ],
            COMMAND_TIMEOUT,
        )
        .ok();
    check_txn_produce(&out);
    // librdkafka's read_committed consumer: the ten committed records, none aborted.
    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    common::assign(&consumer, "go-txn", &[0], rdkafka::Offset::Beginning);
    let recs = common::consume_exactly(&consumer, 10, std::time::Duration::from_secs(30));
    assert!(
        recs.iter()
            .all(|r| r.value.as_deref() == Some(&b"committed"[..])),
        "{recs:?}"
    );
}

#[test]
fn go_consumer_every_codec() {
    let Some(mut c) = go("the franz-go consumer") else {
        return;
    };
    let broker = Broker::start("go-consume");
    check_consume_every_codec(&broker, &mut c, "go");
}

#[test]
fn go_classic_group_rebalance_and_commits() {
    let Some(mut c) = go("the franz-go classic consumer group") else {
        return;
    };
    let broker = Broker::start_with("go-group-classic", group_options(""));
    let mut admin = go_proc("franz-go admin");
    check_group_with_admin(&broker, &mut c, "go", "classic", Some(&mut admin));
}

#[test]
fn go_consumer_protocol_group_rebalance_and_commits() {
    let Some(mut c) = go("the franz-go KIP-848 consumer group") else {
        return;
    };
    let broker = Broker::start_with("go-group-consumer", group_options(""));
    let mut admin = go_proc("franz-go admin");
    check_group_with_admin(&broker, &mut c, "go", "consumer", Some(&mut admin));
}

#[test]
fn go_admin_topics_and_configs() {
    let Some(mut c) = go("the kadm topic calls") else {
        return;
    };
    let broker = Broker::start("go-admin-topics");
    check_admin_topics(&broker, &mut c, "go");
    check_admin_broker_configs(&broker, &mut c, "go");
    check_admin_cluster(&broker, &mut c, "go");
}

#[test]
fn go_admin_offsets_and_delete_records() {
    let Some(mut c) = go("the kadm offset calls") else {
        return;
    };
    let broker = Broker::start("go-admin-offsets");
    check_admin_offsets(&broker, &mut c, "go");
}

#[test]
fn go_admin_groups() {
    let Some(mut c) = go("the kadm group calls") else {
        return;
    };
    let broker = Broker::start_with("go-admin-groups", group_options(""));
    check_admin_groups(&broker, &mut c, "go");
}

#[test]
fn go_admin_describe_log_dirs() {
    let Some(mut c) = go("kadm DescribeBrokerLogDirs") else {
        return;
    };
    let broker = Broker::start("go-admin-logdirs");
    broker.create_topic("go-logdirs", 1, &[]);
    let node = node_id(&broker).to_string();
    let out = check_admin_call(
        &mut c,
        &["admin-describe-log-dirs", &broker.bootstrap(), &node],
        "logdir",
    );
    assert!(
        out.lines("replica").iter().any(|w| w[0] == "go-logdirs"),
        "{}",
        out.report()
    );
}

#[test]
fn go_admin_describe_producers() {
    let Some(mut c) = go("kadm DescribeProducers") else {
        return;
    };
    let broker = Broker::start("go-admin-producers");
    broker.create_topic("go-producers", 1, &[]);
    let b = broker.bootstrap();
    c.run(
        &["produce", &b, "go-producers", "none", "0", "5", "p"],
        COMMAND_TIMEOUT,
    )
    .ok();
    let out = check_admin_call(
        &mut c,
        &["admin-describe-producers", &b, "go-producers", "0"],
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
fn go_admin_elect_leaders() {
    let Some(mut c) = go("kadm ElectLeaders") else {
        return;
    };
    let broker = Broker::start("go-admin-elect");
    broker.create_topic("go-elect", 1, &[]);
    let out = c.run(
        &["admin-elect-leaders", &broker.bootstrap(), "go-elect", "0"],
        COMMAND_TIMEOUT,
    );
    assert!(
        out.code == 0 || out.mentions("ELECTION_NOT_NEEDED"),
        "{}",
        out.report()
    );
}

#[test]
fn go_admin_list_transactions() {
    let Some(mut c) = go("kadm ListTransactions") else {
        return;
    };
    let broker = Broker::start("go-admin-txn");
    check_admin_call(
        &mut c,
        &["admin-list-transactions", &broker.bootstrap()],
        "transactions",
    );
}

#[test]
fn go_admin_describe_acls() {
    let Some(mut c) = go("kadm DescribeACLs") else {
        return;
    };
    let broker = Broker::start("go-admin-acls");
    check_describe_acls(&mut c, &broker);
}
