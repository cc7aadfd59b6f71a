//! `rill txn list|describe|abort`: transactions, as `kafka-transactions.sh` shows and ends
//! them. `list` asks every broker (each lists the transactional ids it coordinates);
//! `describe` asks the id's coordinator; `abort` ends a transaction left open in a
//! partition (a hanging one whose coordinator will not end it): it finds the producer
//! whose transaction starts at the given offset (DescribeProducers) and writes its abort
//! marker (WriteTxnMarkers) at the partition's leader.

use rill_net::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::client::{check, connect_coordinator_of, CliError, Client, Leaders};
use super::{table, Output, TxnCmd};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn txn(cmd: TxnCmd) -> Result<(), CliError> {
    match cmd {
        TxnCmd::List { common } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let md = c.send(&MetadataRequest::default().with_topics(Some(Vec::new())))?;
            let mut rows: Vec<(String, i32, i64, String)> = Vec::new();
            for b in &md.brokers {
                let mut bc = Client::connect(&format!("{}:{}", b.host, b.port))?;
                let r = bc.send(&ListTransactionsRequest::default())?;
                check(
                    format!("list transactions at broker {}", b.node_id.0),
                    r.error_code,
                    None,
                )?;
                rows.extend(r.transaction_states.iter().map(|t| {
                    (
                        t.transactional_id.0.to_string(),
                        b.node_id.0,
                        t.producer_id.0,
                        t.transaction_state.to_string(),
                    )
                }));
            }
            rows.sort();
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!(rows
                        .iter()
                        .map(|(id, coord, pid, st)| json!({"transactional_id": id, "coordinator": coord, "producer_id": pid, "state": st}))
                        .collect::<Vec<_>>())
                ),
                Output::Table => {
                    let rows: Vec<Vec<String>> = rows
                        .into_iter()
                        .map(|(id, coord, pid, st)| vec![id, coord.to_string(), pid.to_string(), st])
                        .collect();
                    print!(
                        "{}",
                        table(&["TRANSACTIONAL ID", "COORDINATOR", "PRODUCER ID", "STATE"], &rows)
                    );
                }
            }
            Ok(())
        }
        TxnCmd::Describe {
            transactional_id,
            common,
        } => {
            let mut c = connect_coordinator_of(&common.bootstrap, &transactional_id, 1)?;
            let r = c.send(
                &DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(s(&transactional_id))]),
            )?;
            let t = r.transaction_states.first().ok_or_else(|| {
                CliError::Protocol("DescribeTransactions answered no transaction".to_string())
            })?;
            check(
                format!("describe transaction {transactional_id}"),
                t.error_code,
                None,
            )?;
            let partitions: Vec<String> = t
                .topics
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| format!("{}-{p}", tp.topic.0))
                })
                .collect();
            match common.output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "transactional_id": transactional_id,
                        "producer_id": t.producer_id.0,
                        "producer_epoch": t.producer_epoch,
                        "state": t.transaction_state.to_string(),
                        "timeout_ms": t.transaction_timeout_ms,
                        "start_time_ms": t.transaction_start_time_ms,
                        "partitions": partitions,
                    })
                ),
                Output::Table => print!(
                    "{}",
                    table(
                        &[
                            "TRANSACTIONAL ID",
                            "PRODUCER ID",
                            "EPOCH",
                            "STATE",
                            "TIMEOUT MS",
                            "START MS",
                            "PARTITIONS"
                        ],
                        &[vec![
                            transactional_id.clone(),
                            t.producer_id.0.to_string(),
                            t.producer_epoch.to_string(),
                            t.transaction_state.to_string(),
                            t.transaction_timeout_ms.to_string(),
                            t.transaction_start_time_ms.to_string(),
                            partitions.join(","),
                        ]],
                    )
                ),
            }
            Ok(())
        }
        TxnCmd::Abort {
            topic,
            partition,
            start_offset,
            common,
        } => {
            let mut c = Client::connect(&common.bootstrap)?;
            let mut leaders = Leaders::new(&mut c, &topic, false)?;
            let leader = *leaders
                .by_leader([partition])
                .keys()
                .next()
                .expect("one partition asked");
            let lc = leaders.client(leader)?;
            let r = lc.send(&DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(TopicName(s(&topic)))
                    .with_partition_indexes(vec![partition]),
            ]))?;
            let part = r
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| CliError::Protocol("DescribeProducers answered nothing".into()))?;
            check(
                format!("producers of {topic}-{partition}"),
                part.error_code,
                None,
            )?;
            let producer = part
                .active_producers
                .iter()
                .find(|p| p.current_txn_start_offset == start_offset)
                .ok_or_else(|| {
                    CliError::Protocol(format!(
                        "no transaction starts at offset {start_offset} in {topic}-{partition} (see `rill txn list` and kafka-transactions find-hanging)"
                    ))
                })?;
            let r = lc.send(&WriteTxnMarkersRequest::default().with_markers(vec![
                WritableTxnMarker::default()
                    .with_producer_id(producer.producer_id)
                    .with_producer_epoch(producer.producer_epoch as i16)
                    .with_transaction_result(false)
                    // As kafka-transactions: a hanging transaction's producer may never have
                    // seen a coordinator (-1); 0 is no newer than any coordinator's epoch.
                    .with_coordinator_epoch(producer.coordinator_epoch.max(0))
                    .with_topics(vec![WritableTxnMarkerTopic::default()
                        .with_name(TopicName(s(&topic)))
                        .with_partition_indexes(vec![partition])]),
            ]))?;
            let code = r
                .markers
                .first()
                .and_then(|m| m.topics.first())
                .and_then(|t| t.partitions.first())
                .map_or(-1, |p| p.error_code);
            check(
                format!("abort the transaction at {topic}-{partition} offset {start_offset}"),
                code,
                None,
            )?;
            println!(
                "aborted the transaction of producer {} (epoch {}) that started at {topic}-{partition} offset {start_offset}",
                producer.producer_id.0, producer.producer_epoch
            );
            Ok(())
        }
    }
}
