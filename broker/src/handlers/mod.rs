//! Request handlers: one file per Kafka API family, each turning a decoded request into its
//! response: decode → the authority or the owning shard → response. They run on the shard
//! that serves the connection.
//!
//! Layout: `mod.rs` (this: dispatch, the advertised API table) → `produce`, `fetch` (with
//! `fetch_sessions`), `offsets` (ListOffsets, OffsetForLeaderEpoch, DeleteRecords), `metadata` (Metadata,
//! DescribeCluster), `topics` (CreateTopics, DeleteTopics, CreatePartitions), `configs`,
//! `groups` (the consumer group APIs, FindCoordinator), `producers` (InitProducerId),
//! `reassign` (reassignments, decommission), `api_versions` (with the features),
//! `log_dirs` (DescribeLogDirs), `elections` (ElectLeaders), `producer_state`
//! (DescribeProducers), `transactions` (AddPartitionsToTxn, EndTxn, ListTransactions,
//! DescribeTransactions), `acls`
//! (the ACL apis, SECURITY_DISABLED), `topic_partitions` (DescribeTopicPartitions),
//! `txn_markers` (WriteTxnMarkers: transaction end markers in partitions),
//! `recompress` (Produce's timestamp bounds and broker-side compression). They use
//! `shard`, `metadata`, `partition` and `group`; nothing below uses them.

mod acls;
mod api_versions;
mod configs;
mod elections;
mod fetch;
mod fetch_sessions;
mod groups;
mod log_dirs;
mod metadata;
mod offsets;
mod produce;
mod producer_state;
mod producers;
mod reassign;
mod recompress;
mod topic_partitions;
mod topics;
mod transactions;
mod txn_markers;

use std::rc::Rc;

use bytes::Bytes;
use rill_net::codec::SUPPORTED_VERSIONS;
use rill_net::header::unsupported_api_versions_response;
use rill_net::kafka_protocol::messages::{ApiKey, RequestHeader, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::{encode_response, ApiResponse, ApiVersionRange, DecodeError, Request};
use tracing::error;

pub use fetch_sessions::FetchSessions;

use crate::shard::Shard;

/// What the connection's writer does with a request's outcome.
#[derive(Debug)]
pub enum Reply {
    /// Send this frame (pieces in order).
    Frame(Vec<Bytes>),
    /// Send nothing (Produce with acks=0).
    NoResponse,
    /// Close the connection after earlier answers went out.
    Close,
}

/// Apis in the codec table that the broker does not serve; they are not advertised and a
/// request for one is refused as an unsupported version before it reaches [`handle`].
/// None now (the transaction apis are all served).
const NOT_SERVED: &[ApiKey] = &[];

/// Apis served below the codec table's highest version (none now: transactions v2 is
/// served).
const SERVED_MAX: &[(ApiKey, i16)] = &[];

/// The apis and versions this broker advertises and accepts.
pub fn api_table() -> Vec<ApiVersionRange> {
    SUPPORTED_VERSIONS
        .iter()
        .filter(|(k, _, _)| !NOT_SERVED.contains(k))
        .map(|&(k, min, max)| {
            let cap = SERVED_MAX
                .iter()
                .find(|(key, _)| *key == k)
                .map_or(max, |(_, cap)| max.min(*cap));
            (k, min, cap)
        })
        .collect()
}

/// The answer to a request that did not decode: ApiVersions at an unknown version gets the
/// KIP-511 v0 answer; anything else closes the connection, as Kafka does.
pub fn decode_error_reply(e: &DecodeError) -> Reply {
    if let DecodeError::UnsupportedVersion {
        api_key: ApiKey::ApiVersions,
        correlation_id,
        ..
    } = e
    {
        let (min, max) =
            rill_net::codec::version_range(&api_table(), ApiKey::ApiVersions).unwrap_or((0, 4));
        let response = unsupported_api_versions_response(min, max);
        return match encode_response(*correlation_id, 0, &response) {
            Ok(frame) => Reply::Frame(vec![frame]),
            Err(_) => Reply::Close,
        };
    }
    Reply::Close
}

fn frame<R: ApiResponse + std::fmt::Debug>(correlation_id: i32, version: i16, r: &R) -> Reply {
    match encode_response(correlation_id, version, r) {
        Ok(f) => Reply::Frame(vec![f]),
        Err(e) => {
            error!(error = %e, "cannot encode response; closing the connection");
            Reply::Close
        }
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}

/// The client's host as group member descriptions show it (`/1.2.3.4`).
fn client_host(peer: &str) -> String {
    format!("/{}", peer.rsplit_once(':').map_or(peer, |(h, _)| h))
}

/// Serves one decoded request.
pub async fn handle(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: Request,
    peer: &str,
) -> Reply {
    let v = header.request_api_version;
    let cid = header.correlation_id;
    let client_id = header.client_id.as_deref().unwrap_or("").to_string();
    let shard = &shard;
    match request {
        Request::ApiVersions(_) => frame(cid, v, &api_versions::api_versions(shard, v)),
        Request::Metadata(r) => frame(cid, v, &metadata::metadata(shard, r, v).await),
        Request::DescribeCluster(r) => frame(cid, v, &metadata::describe_cluster(shard, r)),
        Request::Produce(r) => {
            let acks = r.acks;
            let response = produce::produce(shard, r, v).await;
            if acks == 0 {
                return Reply::NoResponse;
            }
            frame(cid, v, &response)
        }
        Request::Fetch(r) => fetch::fetch(shard, r, cid, v, &client_id).await,
        Request::ListOffsets(r) => frame(cid, v, &offsets::list_offsets(shard, r, v).await),
        Request::DeleteRecords(r) => frame(cid, v, &offsets::delete_records(shard, r).await),
        Request::OffsetForLeaderEpoch(r) => {
            frame(cid, v, &offsets::offset_for_leader_epoch(shard, r).await)
        }
        Request::CreateTopics(r) => frame(cid, v, &topics::create_topics(shard, r, v).await),
        Request::DeleteTopics(r) => frame(cid, v, &topics::delete_topics(shard, r).await),
        Request::CreatePartitions(r) => frame(cid, v, &topics::create_partitions(shard, r).await),
        Request::DescribeConfigs(r) => frame(cid, v, &configs::describe_configs(shard, r, v)),
        Request::AlterConfigs(r) => frame(cid, v, &configs::alter_configs(shard, r).await),
        Request::IncrementalAlterConfigs(r) => {
            frame(cid, v, &configs::incremental_alter_configs(shard, r).await)
        }
        Request::AlterPartitionReassignments(r) => {
            frame(cid, v, &reassign::alter(shard, r, v).await)
        }
        Request::ListPartitionReassignments(r) => frame(cid, v, &reassign::list(shard, r)),
        Request::UnregisterBroker(r) => frame(cid, v, &reassign::decommission(shard, r).await),
        Request::InitProducerId(r) => {
            frame(cid, v, &producers::init_producer_id(shard, r, v).await)
        }
        Request::FindCoordinator(r) => frame(cid, v, &groups::find_coordinator(shard, r, v).await),
        Request::JoinGroup(r) => frame(
            cid,
            v,
            &groups::join(shard, r, v, client_id, client_host(peer)).await,
        ),
        Request::SyncGroup(r) => frame(cid, v, &groups::sync(shard, r).await),
        Request::Heartbeat(r) => frame(cid, v, &groups::heartbeat(shard, r).await),
        Request::LeaveGroup(r) => frame(cid, v, &groups::leave(shard, r, v).await),
        Request::OffsetCommit(r) => frame(cid, v, &groups::commit(shard, r, v).await),
        Request::OffsetFetch(r) => frame(cid, v, &groups::fetch(shard, r, v).await),
        Request::ListGroups(r) => frame(cid, v, &groups::list(shard, r).await),
        Request::DescribeGroups(r) => frame(cid, v, &groups::describe(shard, r).await),
        Request::DeleteGroups(r) => frame(cid, v, &groups::delete(shard, r).await),
        Request::OffsetDelete(r) => frame(cid, v, &groups::offset_delete(shard, r).await),
        Request::ConsumerGroupHeartbeat(r) => {
            let answer =
                groups::consumer_heartbeat(shard, r, v, client_id, client_host(peer)).await;
            frame(cid, v, &answer)
        }
        Request::ConsumerGroupDescribe(r) => {
            frame(cid, v, &groups::consumer_describe(shard, r).await)
        }
        Request::DescribeAcls(r) => frame(cid, v, &acls::describe(r)),
        Request::CreateAcls(r) => frame(cid, v, &acls::create(r)),
        Request::DeleteAcls(r) => frame(cid, v, &acls::delete(r)),
        Request::DescribeLogDirs(r) => frame(cid, v, &log_dirs::describe(shard, r).await),
        Request::ElectLeaders(r) => frame(cid, v, &elections::elect(shard, r, v).await),
        Request::DescribeProducers(r) => frame(cid, v, &producer_state::describe(shard, r).await),
        Request::DescribeTransactions(r) => frame(cid, v, &transactions::describe(shard, r).await),
        Request::ListTransactions(r) => frame(cid, v, &transactions::list(shard, r).await),
        Request::DescribeTopicPartitions(r) => frame(cid, v, &topic_partitions::describe(shard, r)),
        Request::WriteTxnMarkers(r) => {
            frame(cid, v, &txn_markers::write_txn_markers(shard, r).await)
        }
        Request::AddPartitionsToTxn(r) => frame(
            cid,
            v,
            &transactions::add_partitions_to_txn(shard, r, v).await,
        ),
        Request::EndTxn(r) => frame(cid, v, &transactions::end_txn(shard, r, v).await),
        Request::AddOffsetsToTxn(r) => {
            frame(cid, v, &groups::add_offsets_to_txn(shard, r, v).await)
        }
        Request::TxnOffsetCommit(r) => frame(cid, v, &groups::txn_commit(shard, r, v).await),
    }
}
