//! The Python clients against the real broker: aiokafka 0.14 (asyncio) and kafka-python
//! 3.x, each as one long-lived process per test (`tests/clients/python/*_client.py`; see
//! `common/clients.rs`): an idempotent acks=all producer with every codec, a consumer
//! (assign), a classic consumer group (neither speaks KIP-848) with a rebalance and
//! committed offsets, and the admin calls each has. What they did is checked through the
//! broker and rdkafka. (`second_client.rs` keeps kafka-python's header and kcat checks.)
//!
//! Without the Python packages (`.ci/run` pip-installs them) the tests fail under CI and
//! otherwise pass with a loud notice.

#[path = "common/clients.rs"]
mod clients;
mod common;

use clients::*;
use common::groups::group_options;
use common::Broker;

fn aiokafka(test: &str) -> Option<ClientProc> {
    python_available("aiokafka", test).then(|| python_proc("aiokafka", "aiokafka_client.py"))
}

fn kafka_python(test: &str) -> Option<ClientProc> {
    python_available("kafka", test).then(|| python_proc("kafka-python", "kafka_python_client.py"))
}

#[test]
fn aiokafka_idempotent_producer_every_codec() {
    let Some(mut c) = aiokafka("the aiokafka producer") else {
        return;
    };
    let broker = Broker::start("aiokafka-produce");
    check_produce_every_codec(&broker, &mut c, "aiokafka", &[]);
}

#[test]
fn aiokafka_consumer_every_codec() {
    let Some(mut c) = aiokafka("the aiokafka consumer") else {
        return;
    };
    let broker = Broker::start("aiokafka-consume");
    check_consume_every_codec(&broker, &mut c, "aiokafka");
}

#[test]
fn aiokafka_classic_group_rebalance_and_commits() {
    let Some(mut c) = aiokafka("the aiokafka consumer group") else {
        return;
    };
    let broker = Broker::start_with("aiokafka-group", group_options(""));
    let mut admin = python_proc("aiokafka admin", "aiokafka_client.py");
    check_group_with_admin(&broker, &mut c, "aiokafka", "classic", Some(&mut admin));
}

#[test]
fn aiokafka_admin_topics_and_configs() {
    let Some(mut c) = aiokafka("the aiokafka admin topic calls") else {
        return;
    };
    let broker = Broker::start("aiokafka-admin-topics");
    check_admin_topics(&broker, &mut c, "aiokafka");
    check_admin_broker_configs(&broker, &mut c, "aiokafka");
    check_admin_cluster(&broker, &mut c, "aiokafka");
}

#[test]
fn aiokafka_admin_offsets_and_delete_records() {
    let Some(mut c) = aiokafka("the aiokafka offset calls") else {
        return;
    };
    let broker = Broker::start("aiokafka-admin-offsets");
    check_admin_offsets(&broker, &mut c, "aiokafka");
}

#[test]
fn aiokafka_admin_groups() {
    let Some(mut c) = aiokafka("the aiokafka admin group calls") else {
        return;
    };
    let broker = Broker::start_with("aiokafka-admin-groups", group_options(""));
    check_admin_groups(&broker, &mut c, "aiokafka");
}

#[test]
fn kafka_python_idempotent_producer_every_codec() {
    let Some(mut c) = kafka_python("the kafka-python producer") else {
        return;
    };
    let broker = Broker::start("kafka-python-produce");
    check_produce_every_codec(&broker, &mut c, "kafka-python", &[]);
}

#[test]
fn kafka_python_consumer_every_codec() {
    let Some(mut c) = kafka_python("the kafka-python consumer") else {
        return;
    };
    let broker = Broker::start("kafka-python-consume");
    check_consume_every_codec(&broker, &mut c, "kafka-python");
}

#[test]
fn kafka_python_classic_group_rebalance_and_commits() {
    let Some(mut c) = kafka_python("the kafka-python consumer group") else {
        return;
    };
    let broker = Broker::start_with("kafka-python-group2", group_options(""));
    let mut admin = python_proc("kafka-python admin", "kafka_python_client.py");
    check_group_with_admin(&broker, &mut c, "kafka-python", "classic", Some(&mut admin));
}

#[test]
fn kafka_python_admin_topics_and_configs() {
    let Some(mut c) = kafka_python("the kafka-python admin topic calls") else {
        return;
    };
    let broker = Broker::start("kafka-python-admin-topics");
    check_admin_topics(&broker, &mut c, "kafka-python");
    check_admin_broker_configs(&broker, &mut c, "kafka-python");
    check_admin_cluster(&broker, &mut c, "kafka-python");
}

#[test]
fn kafka_python_admin_offsets_and_delete_records() {
    let Some(mut c) = kafka_python("the kafka-python offset calls") else {
        return;
    };
    let broker = Broker::start("kafka-python-admin-offsets");
    check_admin_offsets(&broker, &mut c, "kafka-python");
}

#[test]
fn kafka_python_admin_groups() {
    let Some(mut c) = kafka_python("the kafka-python admin group calls") else {
        return;
    };
    let broker = Broker::start_with("kafka-python-admin-groups", group_options(""));
    check_admin_groups(&broker, &mut c, "kafka-python");
}
