//! KafkaJS 2.2.4 (Node.js) against the real broker: an idempotent acks=all producer with
//! every codec (gzip is built in; snappy, LZ4 and zstd are registered from npm codec packages
//! the way KafkaJS documents), a consumer, a classic consumer group (KafkaJS has no KIP-848
//! and no assign-without-group: its `consume` runs in a group of its own), and the admin
//! calls KafkaJS has. The program is `tests/clients/node/client.js` (one process per test
//! serves every command; see `common/clients.rs`); what it did is checked through the
//! broker and rdkafka.
//!
//! Without `npm ci` done (`.ci/run` does it) the tests fail under CI and otherwise pass with
//! a loud notice.

#[path = "common/clients.rs"]
mod clients;
mod common;

use clients::*;
use common::groups::group_options;
use common::Broker;

fn node(test: &str) -> Option<ClientProc> {
    node_available(test).then(|| node_proc("kafkajs"))
}

#[test]
fn node_idempotent_producer_every_codec() {
    let Some(mut c) = node("the KafkaJS producer") else {
        return;
    };
    let broker = Broker::start("node-produce");
    check_produce_every_codec(&broker, &mut c, "node", &[]);
}

#[test]
fn node_consumer_every_codec() {
    let Some(mut c) = node("the KafkaJS consumer") else {
        return;
    };
    let broker = Broker::start_with("node-consume", group_options(""));
    check_consume_every_codec(&broker, &mut c, "node");
}

#[test]
fn node_classic_group_rebalance_and_commits() {
    let Some(mut c) = node("the KafkaJS consumer group") else {
        return;
    };
    let broker = Broker::start_with("node-group-classic", group_options(""));
    let mut admin = node_proc("kafkajs admin");
    check_group_with_admin(&broker, &mut c, "node", "classic", Some(&mut admin));
}

#[test]
fn node_admin_topics_and_configs() {
    let Some(mut c) = node("the KafkaJS admin topic calls") else {
        return;
    };
    let broker = Broker::start("node-admin-topics");
    check_admin_topics(&broker, &mut c, "node");
    check_admin_broker_configs(&broker, &mut c, "node");
    check_admin_cluster(&broker, &mut c, "node");
}

#[test]
fn node_admin_offsets_and_delete_records() {
    let Some(mut c) = node("the KafkaJS admin offset calls") else {
        return;
    };
    let broker = Broker::start("node-admin-offsets");
    check_admin_offsets(&broker, &mut c, "node");
}

#[test]
fn node_admin_groups() {
    let Some(mut c) = node("the KafkaJS admin group calls") else {
        return;
    };
    let broker = Broker::start_with("node-admin-groups", group_options(""));
    check_admin_groups(&broker, &mut c, "node");
}

#[test]
fn node_admin_describe_acls() {
    let Some(mut c) = node("KafkaJS describeAcls") else {
        return;
    };
    let broker = Broker::start("node-admin-acls");
    check_describe_acls(&mut c, &broker);
}
