//! Cluster mode: partition data replication, Kafka-style.
//!
//! **Followers** pull. Every shard runs one fetcher task per leader broker it follows
//! ([`run_fetchers`]); it sends that leader Fetch requests carrying this broker's id as
//! `replica_id` for all the partitions the shard owns and follows there, and appends what
//! comes back with the leader's offsets and epochs ([`rill_storage::PartitionLog::append_replica`]).
//! A follower whose log runs past the leader's (it led before and the new leader has less)
//! truncates to the leader's high watermark and fetches again.
//!
//! **Leaders** record each follower's fetch offset ([`Replication`]). The high watermark is
//! the lowest log end among the in-sync replicas; consumers read below it, and an acks=all
//! produce is answered once it passes the batch. The leader keeps the ISR right by asking
//! the controller (a `ChangePartition` with the partition epoch as compare-and-set token):
//! a follower that has not caught up to the log end for `replica_lag_time_max_ms` leaves,
//! and a follower that reached the high watermark joins again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::client::Connection;
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use tracing::{debug, info, warn};

use crate::cluster::{ClusterOp, ClusterView, PartitionView};
use crate::errors::KafkaError;
use crate::runtime;
use crate::shard::{Partition, Shard};

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
/// How often a shard's leaders check their partitions' ISR.
pub(crate) const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How often an acks=all produce waiting for the followers re-reads the ISR.
const ACKS_ALL_RECHECK: Duration = Duration::from_millis(50);

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Follower {
    /// The offset it asked for last: it holds everything below.
    pub fetch_offset: i64,
    pub last_fetch: Instant,
    /// When it last held everything the leader had (Kafka's lastCaughtUpTime).
    pub last_caught_up: Instant,
    /// The leader's log end when it answered that follower's previous fetch.
    pub leader_end_at_last_fetch: i64,
}

/// A partition's replication state (cluster mode).
#[derive(Debug)]
pub(crate) struct Replication {
    /// The leader epoch this broker leads at, and since when; None while following.
    pub leading: Option<(i32, Instant)>,
    /// Followers of the current leadership (at most the partition's replicas).
    pub followers: BTreeMap<i32, Follower>,
    /// Offsets below this are on every in-sync replica. A follower keeps the leader's.
    pub hw: i64,
    /// An ISR change is waiting for the controller.
    pub isr_change_pending: bool,
}

impl Replication {
    pub fn new() -> Replication {
        Replication {
            leading: None,
            followers: BTreeMap::new(),
            hw: 0,
            isr_change_pending: false,
        }
    }
}

impl Shard {
    fn my_id(&self) -> i32 {
        self.config.node_id
    }

    fn replica_lag_max(&self) -> Duration {
        Duration::from_millis(self.config.replica_lag_time_max_ms)
    }

    /// Brings `leading` in line with the view; a new leadership starts with no followers.
    fn sync_leadership(&self, p: &Partition, leader: i32, leader_epoch: i32) {
        let Some(repl) = &p.repl else { return };
        let mut r = repl.borrow_mut();
        if leader == self.my_id() {
            if r.leading.map(|(e, _)| e) != Some(leader_epoch) {
                r.leading = Some((leader_epoch, Instant::now()));
                r.followers.clear();
                r.isr_change_pending = false;
            }
        } else if r.leading.is_some() {
            r.leading = None;
            r.followers.clear();
        }
    }

    /// The leader records a follower's Fetch at `offset`.
    pub(crate) fn follower_fetched(
        &self,
        topic: &str,
        partition: i32,
        p: &Partition,
        follower: i32,
        offset: i64,
    ) -> Result<(), KafkaError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let view = cluster.view();
        let Some(pv) = view.partition(topic, partition) else {
            return Err(KafkaError::unknown_partition(topic, partition));
        };
        if !pv.replicas.contains(&follower) || follower == self.my_id() {
            return Err(KafkaError::new(
                ErrorCode::NotLeaderOrFollower,
                format!("broker {follower} is not a follower of {topic}-{partition}"),
            ));
        }
        self.sync_leadership(p, pv.leader, pv.leader_epoch);
        let end = p.log.log_end_offset();
        if let Some(repl) = &p.repl {
            let now = Instant::now();
            let mut r = repl.borrow_mut();
            let since = r.leading.map_or(now, |(_, t)| t);
            let prev = r.followers.get(&follower).copied();
            let caught_up = if offset >= end {
                now
            } else if let Some(f) = prev.filter(|f| offset >= f.leader_end_at_last_fetch) {
                f.last_fetch
            } else {
                prev.map_or(since, |f| f.last_caught_up)
            };
            r.followers.insert(
                follower,
                Follower {
                    fetch_offset: offset,
                    last_fetch: now,
                    last_caught_up: caught_up,
                    leader_end_at_last_fetch: end,
                },
            );
        }
        self.advance_hw(p, pv);
        Ok(())
    }

    /// Leader: moves the high watermark up to the lowest log end among the in-sync
    /// replicas (a follower not heard from in this leadership holds it where it is).
    pub(crate) fn advance_high_watermark(&self, topic: &str, partition: i32, p: &Partition) {
        let (Some(cluster), Some(_)) = (&self.cluster, &p.repl) else {
            return;
        };
        if let Some(pv) = cluster.view().partition(topic, partition) {
            self.advance_hw(p, pv);
        }
    }

    /// [`Shard::advance_high_watermark`] with the partition's placement at hand.
    pub(crate) fn advance_hw(&self, p: &Partition, pv: &PartitionView) {
        let Some(repl) = &p.repl else { return };
        if pv.leader != self.my_id() {
            return;
        }
        self.sync_leadership(p, pv.leader, pv.leader_epoch);
        let mut low = p.log.log_end_offset();
        {
            let r = repl.borrow();
            for b in pv.isr.iter().filter(|b| **b != self.my_id()) {
                match r.followers.get(b) {
                    Some(f) => low = low.min(f.fetch_offset),
                    None => return,
                }
            }
        }
        let mut r = repl.borrow_mut();
        if low > r.hw {
            r.hw = low;
            drop(r);
            p.notify();
        }
    }

    /// acks=all: waits until every in-sync replica holds `last_offset`, or answers
    /// REQUEST_TIMED_OUT after `replica_lag_time_max_ms` (by then a slow follower has left
    /// the ISR, so this only happens when the ISR cannot change).
    pub(crate) async fn await_replication(
        &self,
        topic: &str,
        partition: i32,
        p: &Partition,
        last_offset: i64,
    ) -> Result<(), KafkaError> {
        if p.repl.is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + self.replica_lag_max() + ACKS_ALL_RECHECK * 20;
        loop {
            let listener = p.data_listener();
            self.advance_high_watermark(topic, partition, p);
            if p.high_watermark() > last_offset {
                return Ok(());
            }
            let still_leader = self
                .cluster
                .as_ref()
                .and_then(|c| c.view().partition(topic, partition).map(|v| v.leader))
                == Some(self.my_id());
            if !still_leader {
                return Err(KafkaError::new(
                    ErrorCode::NotLeaderOrFollower,
                    format!(
                        "broker {} lost the leadership of {topic}-{partition} before the batch at {last_offset} was replicated",
                        self.my_id()
                    ),
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(KafkaError::new(
                    ErrorCode::RequestTimedOut,
                    format!("the in-sync replicas of {topic}-{partition} did not fetch offset {last_offset} in time"),
                ));
            }
            futures_lite::future::or(
                listener,
                runtime::sleep(ACKS_ALL_RECHECK.min(deadline - now)),
            )
            .await;
        }
    }

    /// Leader, every [`ISR_CHECK_INTERVAL`] (the shard's ticker): asks the controller to
    /// drop followers that fell behind and to add followers that caught up.
    pub(crate) fn maintain_isr(self: &Rc<Self>) {
        let Some(cluster) = &self.cluster else { return };
        let view = cluster.view();
        let now = Instant::now();
        for ((topic, partition), p) in self.owned() {
            let Some(repl) = &p.repl else { continue };
            let Some(pv) = view.partition(&topic, partition) else {
                continue;
            };
            if pv.leader != self.my_id() {
                if repl.borrow().leading.is_some() {
                    self.sync_leadership(&p, pv.leader, pv.leader_epoch);
                }
                continue;
            }
            if repl.borrow().isr_change_pending {
                continue;
            }
            self.advance_hw(&p, pv);
            let isr = desired_isr(
                self.my_id(),
                &pv.replicas,
                &pv.isr,
                &repl.borrow(),
                p.high_watermark(),
                now,
                self.replica_lag_max(),
                &view,
            );
            if same_members(&isr, &pv.isr) {
                continue;
            }
            info!(topic = %topic, partition, from = ?pv.isr, to = ?isr,
                "asking the controller to change the in-sync replicas");
            repl.borrow_mut().isr_change_pending = true;
            let cluster = cluster.clone();
            let op = ClusterOp::ChangeIsr {
                name: topic.to_string(),
                partition,
                partition_epoch: pv.partition_epoch,
                leader: self.my_id(),
                isr,
            };
            let p = p.clone();
            runtime::spawn(async move {
                if let Err(e) = cluster.request(op).await {
                    debug!(topic = %topic, partition, error = ?e, "ISR change not taken; the leader checks again");
                }
                if let Some(repl) = &p.repl {
                    repl.borrow_mut().isr_change_pending = false;
                }
            });
        }
    }
}

fn same_members(a: &[i32], b: &[i32]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// The ISR a leader wants now: itself, the members that caught up within `lag_max`, and
/// live replicas whose log reached the high watermark in this leadership.
#[allow(clippy::too_many_arguments)]
fn desired_isr(
    me: i32,
    replicas: &[i32],
    isr: &[i32],
    r: &Replication,
    hw: i64,
    now: Instant,
    lag_max: Duration,
    view: &ClusterView,
) -> Vec<i32> {
    let since = r.leading.map_or(now, |(_, t)| t);
    let alive = |b: i32| view.brokers.iter().any(|x| x.id == b && x.alive);
    replicas
        .iter()
        .copied()
        .filter(|b| {
            if *b == me {
                return true;
            }
            let f = r.followers.get(b);
            if isr.contains(b) {
                let caught_up = f.map_or(since, |f| f.last_caught_up);
                now.saturating_duration_since(caught_up) <= lag_max
            } else {
                alive(*b)
                    && f.is_some_and(|f| {
                        f.fetch_offset >= hw
                            && now.saturating_duration_since(f.last_fetch) <= lag_max
                    })
            }
        })
        .collect()
}

/// Follower side: keeps one fetcher task per leader this shard follows partitions of.
pub async fn run_fetchers(shard: Rc<Shard>) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    let running: Rc<std::cell::RefCell<BTreeSet<i32>>> = Rc::default();
    loop {
        runtime::sleep(FETCHER_SCAN_INTERVAL).await;
        let view = cluster.view();
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
fn followed(shard: &Shard, view: &ClusterView) -> BTreeMap<i32, Vec<(Arc<str>, i32)>> {
    let me = shard.config.node_id;
    let mut out: BTreeMap<i32, Vec<(Arc<str>, i32)>> = BTreeMap::new();
    for ((topic, partition), _) in shard.owned() {
        if let Some(pv) = view.partition(&topic, partition) {
            if pv.leader >= 0 && pv.leader != me && pv.replicas.contains(&me) {
                out.entry(pv.leader).or_default().push((topic, partition));
            }
        }
    }
    out
}

/// Fetches from `leader` until this shard follows nothing there.
async fn fetch_from(shard: &Rc<Shard>, leader: i32) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    let mut conn: Option<(Connection<runtime::Stream>, i16)> = None;
    let mut backoff = REPLICA_BACKOFF_MIN;
    info!(shard = shard.id, leader, "replica fetcher started");
    loop {
        let view = cluster.view();
        let Some(parts) = followed(shard, &view).remove(&leader) else {
            info!(
                shard = shard.id,
                leader, "replica fetcher stopped: nothing to follow there"
            );
            return;
        };
        if conn.is_none() {
            match connect(&view, leader).await {
                Ok(c) => {
                    conn = Some(c);
                    backoff = REPLICA_BACKOFF_MIN;
                }
                Err(e) => {
                    debug!(shard = shard.id, leader, error = %e, "cannot reach the leader; retrying");
                    runtime::sleep(backoff).await;
                    backoff = (backoff * 2).min(REPLICA_BACKOFF_MAX);
                    continue;
                }
            }
        }
        let Some((c, version)) = conn.as_mut() else {
            continue;
        };
        let request = fetch_request(shard, &view, &parts);
        let response = match c.send(*version, &request).await {
            Ok(r) => r,
            Err(e) => {
                debug!(shard = shard.id, leader, error = %e, "replica fetch failed; reconnecting");
                conn = None;
                runtime::sleep(backoff).await;
                backoff = (backoff * 2).min(REPLICA_BACKOFF_MAX);
                continue;
            }
        };
        let mut progressed = false;
        let mut failed = false;
        for t in response.responses {
            let topic: &str = &t.topic.0;
            for pd in t.partitions {
                let Some(p) = shard.partition(topic, pd.partition_index) else {
                    continue;
                };
                match apply_fetched(topic, pd.partition_index, &p, pd).await {
                    Ok(true) => progressed = true,
                    Ok(false) => {}
                    Err(()) => failed = true,
                }
            }
        }
        if failed && !progressed {
            runtime::sleep(backoff).await;
            backoff = (backoff * 2).min(REPLICA_BACKOFF_MAX);
        } else {
            backoff = REPLICA_BACKOFF_MIN;
        }
    }
}

async fn connect(
    view: &ClusterView,
    leader: i32,
) -> Result<(Connection<runtime::Stream>, i16), String> {
    let b = view
        .brokers
        .iter()
        .find(|b| b.id == leader)
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
            client_id: "rill-replica-fetcher".to_string(),
            inflight_requests_max: 1,
            response_frame_bytes_max: REPLICA_FETCH_FRAME_BYTES_MAX,
        },
    );
    let versions = c.api_versions().await.map_err(|e| e.to_string())?;
    // replica_id is a request field up to v14; Rill speaks up to v12.
    let version = versions.require(ApiKey::Fetch).map_err(|e| e.to_string())?;
    Ok((c, version))
}

fn fetch_request(shard: &Shard, view: &ClusterView, parts: &[(Arc<str>, i32)]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (topic, partition) in parts {
        let Some(p) = shard.partition(topic, *partition) else {
            continue;
        };
        let epoch = view
            .partition(topic, *partition)
            .map_or(-1, |pv| pv.leader_epoch);
        let fp = FetchPartition::default()
            .with_partition(*partition)
            .with_current_leader_epoch(epoch)
            .with_fetch_offset(p.log.log_end_offset())
            .with_log_start_offset(p.log.log_start_offset())
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
    FetchRequest::default()
        .with_replica_id(BrokerId(shard.config.node_id))
        .with_max_wait_ms(REPLICA_FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(REPLICA_FETCH_RESPONSE_BYTES_MAX)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Appends one partition's fetched batches. Ok(true) when the log grew.
async fn apply_fetched(
    topic: &str,
    partition: i32,
    p: &Partition,
    pd: rill_net::kafka_protocol::messages::fetch_response::PartitionData,
) -> Result<bool, ()> {
    match ErrorCode::from_code(pd.error_code) {
        Some(ErrorCode::None) => {}
        Some(ErrorCode::OffsetOutOfRange) => {
            let end = p.log.log_end_offset();
            if end > pd.high_watermark && pd.high_watermark >= 0 {
                // This log has more than the leader: what is past the leader's high
                // watermark was never acknowledged to acks=all producers; drop it.
                warn!(topic, partition, from = end, to = pd.high_watermark,
                    "follower log runs past the leader's; truncating to the leader's high watermark");
                if let Err(e) = p.log.truncate_to(pd.high_watermark).await {
                    warn!(topic, partition, error = %e, "cannot truncate the follower log");
                    return Err(());
                }
                p.forget_producers();
                return Ok(true);
            }
            warn!(
                topic,
                partition,
                log_end = end,
                leader_log_start = pd.log_start_offset,
                "the leader no longer has this follower's next offset (deleted by retention); \
                 this replica cannot catch up until its partition directory is removed"
            );
            return Err(());
        }
        other => {
            debug!(topic, partition, error = ?other, "replica fetch error for a partition");
            return Err(());
        }
    }
    let mut records: Bytes = pd.records.unwrap_or_default();
    let mut grew = false;
    // A partial batch at the end of a size-limited response is left for the next fetch.
    while let Ok(len) = crate::shard::batch_len(&records) {
        let batch = records.split_to(len);
        match p.log.append_replica(batch).await {
            Ok(_) => grew = true,
            Err(e) => {
                warn!(topic, partition, error = %e, "cannot append a replicated batch");
                return Err(());
            }
        }
    }
    if grew {
        p.forget_producers();
    }
    if let Some(repl) = &p.repl {
        let mut r = repl.borrow_mut();
        if r.leading.is_none() {
            r.hw = pd.high_watermark.min(p.log.log_end_offset());
        }
    }
    Ok(grew)
}
