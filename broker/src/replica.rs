//! Followers pull partition data from their leaders, Kafka-style (cluster mode).
//!
//! Every shard runs one fetcher task per leader broker it follows ([`run`]); it sends that
//! leader Fetch requests carrying this broker's id as `replica_id` for all the partitions
//! the shard owns and follows there, and each partition appends what comes back with the
//! leader's offsets and epochs ([`crate::partition::Partition::append_fetched`]). There is
//! no separate replication protocol: the fetcher is an ordinary Kafka client connection on
//! the shard's io_uring, so a Rill broker could follow any broker that honours `replica_id`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rill_net::client::Connection;
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use tracing::{debug, info};

use crate::metadata::Image;
use crate::partition::{FetchAsked, FetchedPartition};
use crate::runtime;
use crate::shard::Shard;

/// How often a shard looks for leaders it should fetch from.
const FETCHER_SCAN_INTERVAL: Duration = Duration::from_millis(200);
/// How long a follower's Fetch waits at the leader for new data.
const REPLICA_FETCH_WAIT_MS: i32 = 500;
/// Bytes one follower Fetch asks for in all (Kafka's `replica.fetch.response.max.bytes`).
const REPLICA_FETCH_RESPONSE_BYTES_MAX: i32 = 16 << 20;
/// Bytes one follower Fetch asks for per partition (Kafka's `replica.fetch.max.bytes`).
const REPLICA_FETCH_PARTITION_BYTES_MAX: i32 = 1 << 20;
/// Largest Fetch response a follower accepts.
const REPLICA_FETCH_FRAME_BYTES_MAX: usize = 64 << 20;
/// Connecting to a leader gives up after this long (then backs off and retries).
const REPLICA_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Back-off after a failed connection or request, doubling up to the max.
const REPLICA_BACKOFF_MIN: Duration = Duration::from_millis(100);
const REPLICA_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Keeps one fetcher task per leader this shard follows partitions of (none on a single
/// broker, which leads everything).
pub async fn run(shard: Rc<Shard>) {
    let running: Rc<RefCell<BTreeSet<i32>>> = Rc::default();
    loop {
        runtime::sleep(FETCHER_SCAN_INTERVAL).await;
        let view = shard.image();
        for leader in followed(&shard, &view).keys() {
            if running.borrow_mut().insert(*leader) {
                let shard = shard.clone();
                let running = running.clone();
                let leader = *leader;
                runtime::spawn(async move {
                    fetch_from(&shard, leader).await;
                    running.borrow_mut().remove(&leader);
                });
            }
        }
    }
}

/// This shard's partitions that this broker follows, by leader.
fn followed(shard: &Shard, view: &Image) -> BTreeMap<i32, Vec<(Arc<str>, i32)>> {
    let me = shard.node_id();
    let mut out: BTreeMap<i32, Vec<(Arc<str>, i32)>> = BTreeMap::new();
    for ((topic, partition), _) in shard.owned() {
        if let Some(pv) = view.placement(&topic, partition) {
            if pv.leader >= 0 && pv.leader != me && pv.replicas.contains(&me) {
                out.entry(pv.leader).or_default().push((topic, partition));
            }
        }
    }
    out
}

/// Fetches from `leader` until this shard follows nothing there.
async fn fetch_from(shard: &Rc<Shard>, leader: i32) {
    let mut conn: Option<(Connection<runtime::Stream>, i16)> = None;
    let mut backoff = REPLICA_BACKOFF_MIN;
    info!(shard = shard.id(), leader, "replica fetcher started");
    loop {
        let view = shard.image();
        let Some(parts) = followed(shard, &view).remove(&leader) else {
            info!(
                shard = shard.id(),
                leader, "replica fetcher stopped: nothing to follow there"
            );
            return;
        };
        if conn.is_none() {
            let Some(client_id) = view.replica_client_id(shard.node_id()) else {
                // The cluster is not named yet: no leader would take this fetcher's fetches.
                runtime::sleep(backoff).await;
                continue;
            };
            match connect(&view, leader, client_id).await {
                Ok(c) => {
                    conn = Some(c);
                    backoff = REPLICA_BACKOFF_MIN;
                }
                Err(e) => {
                    debug!(shard = shard.id(), leader, error = %e, "cannot reach the leader; retrying");
                    runtime::sleep(backoff).await;
                    backoff = (backoff * 2).min(REPLICA_BACKOFF_MAX);
                    continue;
                }
            }
        }
        let Some((c, version)) = conn.as_mut() else {
            continue;
        };
        let (request, asked) = fetch_request(shard, leader, &parts);
        if asked.is_empty() {
            // This shard's partitions have not taken the placement the image shows yet.
            runtime::sleep(REPLICA_BACKOFF_MIN).await;
            continue;
        }
        let response = match c.send(*version, &request).await {
            Ok(r) => r,
            Err(e) => {
                debug!(shard = shard.id(), leader, error = %e, "replica fetch failed; reconnecting");
                conn = None;
                runtime::sleep(backoff).await;
                backoff = (backoff * 2).min(REPLICA_BACKOFF_MAX);
                continue;
            }
        };
        // Each partition applies its part at once, not one after another: a follower's append
        // ends with a write to the file before the next fetch reports it (and with a sync
        // under replica_fsync), and those writes overlap on the shard's io_uring instead of
        // adding up. Each partition keeps its own append order.
        let mut applies = Vec::new();
        for t in response.responses {
            let topic: &str = &t.topic.0;
            for pd in t.partitions {
                let Some(p) = shard.partition(topic, pd.partition_index) else {
                    continue;
                };
                let Some(asked) = asked.get(&(topic, pd.partition_index)).copied() else {
                    continue;
                };
                // Kafka's default diverging epoch (-1, -1) means none.
                let d = &pd.diverging_epoch;
                let diverging =
                    (d.epoch >= 0 || d.end_offset >= 0).then_some((d.epoch, d.end_offset));
                let fetched = FetchedPartition {
                    error: ErrorCode::from_code(pd.error_code)
                        .unwrap_or(ErrorCode::UnknownServerError),
                    high_watermark: pd.high_watermark,
                    log_start_offset: pd.log_start_offset,
                    diverging,
                    records: pd.records.unwrap_or_default(),
                };
                applies.push(async move { p.append_fetched(asked, fetched).await });
            }
        }
        let applied = futures_util::future::join_all(applies).await;
        let progressed = applied.iter().any(|a| matches!(a, Ok(true)));
        let failed = applied.iter().any(|a| a.is_err());
        if failed && !progressed {
            runtime::sleep(backoff).await;
            backoff = (backoff * 2).min(REPLICA_BACKOFF_MAX);
        } else {
            backoff = REPLICA_BACKOFF_MIN;
        }
    }
}

async fn connect(
    view: &Image,
    leader: i32,
    client_id: String,
) -> Result<(Connection<runtime::Stream>, i16), String> {
    let b = view
        .broker(leader)
        .ok_or_else(|| format!("broker {leader} is not registered"))?;
    let addr = (b.host.as_str(), b.port as u16)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}:{}: {e}", b.host, b.port))?
        .next()
        .ok_or_else(|| format!("{}:{} resolves to nothing", b.host, b.port))?;
    let stream = runtime::connect(addr, REPLICA_CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut c = Connection::with_options(
        stream,
        rill_net::client::ConnectionOptions {
            client_id,
            inflight_requests_max: 1,
            response_frame_bytes_max: REPLICA_FETCH_FRAME_BYTES_MAX,
        },
    );
    let versions = c.api_versions().await.map_err(|e| e.to_string())?;
    // replica_id is a request field up to v14; Rill speaks up to v12.
    let version = versions.require(ApiKey::Fetch).map_err(|e| e.to_string())?;
    Ok((c, version))
}

/// The Fetch for `parts` at `leader`, and what it asks of each partition (partitions whose
/// own placement does not follow `leader` yet are left out).
fn fetch_request<'a>(
    shard: &Shard,
    leader: i32,
    parts: &'a [(Arc<str>, i32)],
) -> (FetchRequest, HashMap<(&'a str, i32), FetchAsked>) {
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut asked = HashMap::new();
    for (topic, partition) in parts {
        let Some(p) = shard.partition(topic, *partition) else {
            continue;
        };
        let Some(a) = p.fetch_asked(leader) else {
            continue;
        };
        asked.insert((&**topic, *partition), a);
        let fp = FetchPartition::default()
            .with_partition(*partition)
            .with_current_leader_epoch(a.leader_epoch)
            .with_fetch_offset(a.fetch_offset)
            .with_last_fetched_epoch(p.last_fetched_epoch())
            .with_log_start_offset(p.log().log_start_offset())
            .with_partition_max_bytes(REPLICA_FETCH_PARTITION_BYTES_MAX);
        match topics.last_mut() {
            Some(t) if *t.topic.0 == **topic => t.partitions.push(fp),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![fp]),
            ),
        }
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(shard.node_id()))
        .with_max_wait_ms(REPLICA_FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(REPLICA_FETCH_RESPONSE_BYTES_MAX)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    (request, asked)
}
