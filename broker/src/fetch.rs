//! Fetch: reads across partitions and shards, long polls (`max_wait_ms`, `min_bytes`), the
//! response byte limits, and incremental fetch sessions (KIP-227).
//!
//! Sessions live on the shard that serves the connection ([`FetchSessions`], one per shard,
//! bounded by `limits.fetch_sessions_max`, least recently used evicted). A client that
//! reconnects to another shard gets FETCH_SESSION_ID_NOT_FOUND and starts a new session, as
//! it would after a broker restart.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use rill_net::kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;

use crate::shard::{Offsets, OpOk, PartitionOp, Shard};

/// One partition a fetch reads.
#[derive(Debug, Clone)]
pub struct Want {
    pub topic: Arc<str>,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: usize,
}

/// What one partition returned.
#[derive(Debug, Clone)]
struct Got {
    offsets: Offsets,
    error: ErrorCode,
    records: Bytes,
}

/// How the request relates to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No session: answer every partition.
    Sessionless,
    /// A new session: answer every partition and give the client its id.
    Full(i32),
    /// An incremental request: answer only partitions with something new.
    Incremental(i32),
}

#[derive(Debug)]
struct SessionPart {
    want: Want,
    /// (high watermark, log start offset) last sent to the client.
    sent: Option<(i64, i64)>,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    parts: Vec<SessionPart>,
    last_used: Instant,
}

/// The fetch sessions of one shard.
#[derive(Debug)]
pub struct FetchSessions {
    shard: usize,
    max: usize,
    sessions: HashMap<i32, Session>,
}

impl FetchSessions {
    pub fn new(shard: usize, max: usize) -> FetchSessions {
        FetchSessions {
            shard,
            max,
            sessions: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn create(&mut self, wants: &[Want]) -> i32 {
        if self.sessions.len() >= self.max {
            if let Some((&oldest, _)) = self.sessions.iter().min_by_key(|(_, s)| s.last_used) {
                self.sessions.remove(&oldest);
                tracing::debug!(
                    shard = self.shard,
                    session = oldest,
                    "fetch session evicted"
                );
            }
        }
        let id = loop {
            let id = fastrand::i32(1..i32::MAX);
            if !self.sessions.contains_key(&id) {
                break id;
            }
        };
        self.sessions.insert(
            id,
            Session {
                next_epoch: 1,
                parts: wants
                    .iter()
                    .map(|w| SessionPart {
                        want: w.clone(),
                        sent: None,
                    })
                    .collect(),
                last_used: Instant::now(),
            },
        );
        id
    }

    /// Works out which partitions `r` reads and in which session mode.
    fn resolve(&mut self, r: &FetchRequest, version: i16) -> Result<(Vec<Want>, Mode), ErrorCode> {
        let wants = request_wants(r);
        if version < 7 {
            return Ok((wants, Mode::Sessionless));
        }
        match (r.session_id, r.session_epoch) {
            (0, -1) => Ok((wants, Mode::Sessionless)),
            (0, 0) => {
                let id = self.create(&wants);
                Ok((wants, Mode::Full(id)))
            }
            (0, _) => Err(ErrorCode::InvalidFetchSessionEpoch),
            (id, -1) => {
                self.sessions.remove(&id);
                Ok((wants, Mode::Sessionless))
            }
            (id, 0) => {
                self.sessions.remove(&id);
                let id = self.create(&wants);
                Ok((wants, Mode::Full(id)))
            }
            (id, epoch) => {
                let s = self
                    .sessions
                    .get_mut(&id)
                    .ok_or(ErrorCode::FetchSessionIdNotFound)?;
                if s.next_epoch != epoch {
                    return Err(ErrorCode::InvalidFetchSessionEpoch);
                }
                for w in wants {
                    match s
                        .parts
                        .iter_mut()
                        .find(|p| p.want.partition == w.partition && p.want.topic == w.topic)
                    {
                        Some(p) => p.want = w,
                        None => s.parts.push(SessionPart {
                            want: w,
                            sent: None,
                        }),
                    }
                }
                for t in &r.forgotten_topics_data {
                    let topic: &str = &t.topic.0;
                    s.parts.retain(|p| {
                        !(&*p.want.topic == topic && t.partitions.contains(&p.want.partition))
                    });
                }
                s.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
                s.last_used = Instant::now();
                let wants = s.parts.iter().map(|p| p.want.clone()).collect();
                Ok((wants, Mode::Incremental(id)))
            }
        }
    }

    /// Records what is being sent and, for incremental requests, keeps only the partitions
    /// with news (records, an error, moved offsets).
    fn settle(&mut self, mode: Mode, got: Vec<(Want, Got)>) -> Vec<(Want, Got)> {
        let id = match mode {
            Mode::Sessionless => return got,
            Mode::Full(id) | Mode::Incremental(id) => id,
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return got;
        };
        let mut out = Vec::with_capacity(got.len());
        for (want, g) in got {
            let now = (g.offsets.high_watermark, g.offsets.log_start_offset);
            let part = s
                .parts
                .iter_mut()
                .find(|p| p.want.partition == want.partition && p.want.topic == want.topic);
            let news = match part {
                Some(p) => {
                    let news = p.sent != Some(now);
                    p.sent = Some(now);
                    news
                }
                None => true,
            };
            if mode != Mode::Incremental(id)
                || news
                || !g.records.is_empty()
                || g.error != ErrorCode::None
            {
                out.push((want, g));
            }
        }
        out
    }
}

fn request_wants(r: &FetchRequest) -> Vec<Want> {
    let mut wants = Vec::new();
    for t in &r.topics {
        let topic: Arc<str> = Arc::from(&*t.topic.0);
        for p in &t.partitions {
            wants.push(Want {
                topic: topic.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
            });
        }
    }
    wants
}

/// Serves one Fetch request.
pub async fn fetch(shard: &Rc<Shard>, r: FetchRequest, version: i16) -> FetchResponse {
    let resolved = shard.fetch_sessions.borrow_mut().resolve(&r, version);
    let (wants, mode) = match resolved {
        Ok(x) => x,
        Err(code) => {
            shard.metrics.error("Fetch", code);
            return FetchResponse::default()
                .with_error_code(code.code())
                .with_session_id(0);
        }
    };
    let limits = &shard.config.limits;
    let max_bytes = (r.max_bytes.max(0) as usize).min(limits.fetch_response_bytes_max);
    let min_bytes = r.min_bytes.max(0) as usize;
    let wait = Duration::from_millis((r.max_wait_ms.max(0) as u64).min(limits.fetch_wait_ms_max));
    let deadline = Instant::now() + wait;
    // A follower broker (Kafka's replica id) reads to the log end and is recorded by the
    // leader; only brokers of the cluster send one.
    let replica = if shard.cluster.is_some() {
        r.replica_id.0.max(-1)
    } else {
        -1
    };
    let got = loop {
        let got = read_all(shard, &wants, max_bytes, replica).await;
        let bytes: usize = got.iter().map(|g| g.records.len()).sum();
        let now = Instant::now();
        let errors = got.iter().any(|g| g.error != ErrorCode::None);
        if bytes >= min_bytes.max(1) || errors || now >= deadline || wants.is_empty() {
            break got;
        }
        let parts = wants
            .iter()
            .map(|w| (w.topic.clone(), w.partition, w.fetch_offset))
            .collect();
        shard
            .wait_anywhere(parts, replica >= 0, deadline - now)
            .await;
    };
    let answered = shard
        .fetch_sessions
        .borrow_mut()
        .settle(mode, wants.into_iter().zip(got).collect());
    let read_committed = r.isolation_level == 1;
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (want, g) in answered {
        if g.error == ErrorCode::None {
            shard.metrics.fetched(&want.topic, g.records.len() as u64);
        } else {
            shard.metrics.error("Fetch", g.error);
        }
        let data = PartitionData::default()
            .with_partition_index(want.partition)
            .with_error_code(g.error.code())
            .with_high_watermark(g.offsets.high_watermark)
            .with_last_stable_offset(g.offsets.high_watermark)
            .with_log_start_offset(g.offsets.log_start_offset)
            .with_aborted_transactions(read_committed.then(Vec::new))
            .with_records(Some(g.records));
        match responses.last_mut() {
            Some(t) if *t.topic.0 == *want.topic => t.partitions.push(data),
            _ => responses.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(want.topic.to_string())))
                    .with_partitions(vec![data]),
            ),
        }
    }
    let session_id = match mode {
        Mode::Sessionless => 0,
        Mode::Full(id) | Mode::Incremental(id) => id,
    };
    FetchResponse::default()
        .with_session_id(if version >= 7 { session_id } else { 0 })
        .with_responses(responses)
}

/// Reads every wanted partition, in order, within `max_bytes` for the whole response.
/// Reads run concurrently in waves whose asked-for bytes fit what is left, so a fetch over
/// many partitions neither reads them one round trip at a time nor pulls far more than it
/// can return.
async fn read_all(shard: &Rc<Shard>, wants: &[Want], max_bytes: usize, replica: i32) -> Vec<Got> {
    let mut out: Vec<Got> = Vec::with_capacity(wants.len());
    let mut remaining = max_bytes;
    let mut i = 0;
    while i < wants.len() {
        let mut wave = Vec::new();
        let mut asked = 0usize;
        while i < wants.len() {
            let w = &wants[i];
            let limit = w.max_bytes.min(remaining);
            if !wave.is_empty() && asked + limit > remaining {
                break;
            }
            asked += limit;
            let op = if limit == 0 {
                PartitionOp::Peek
            } else {
                PartitionOp::Fetch {
                    offset: w.fetch_offset,
                    max_bytes: limit,
                    replica,
                }
            };
            wave.push(shard.partition_op(&w.topic, w.partition, op));
            i += 1;
        }
        for reply in futures_util::future::join_all(wave).await {
            let got = match reply.result {
                Ok(OpOk::Fetched { records }) => Got {
                    offsets: reply.offsets,
                    error: ErrorCode::None,
                    records,
                },
                Ok(_) => Got {
                    offsets: reply.offsets,
                    error: ErrorCode::None,
                    records: Bytes::new(),
                },
                Err(e) => Got {
                    offsets: reply.offsets,
                    error: e.code,
                    records: Bytes::new(),
                },
            };
            remaining = remaining.saturating_sub(got.records.len());
            out.push(got);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_net::kafka_protocol::messages::fetch_request::{
        FetchPartition, FetchTopic, ForgottenTopic,
    };

    fn request(session_id: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (t, p, o) in parts {
            let fp = FetchPartition::default()
                .with_partition(*p)
                .with_fetch_offset(*o)
                .with_partition_max_bytes(1 << 20);
            match topics.last_mut() {
                Some(ft) if &*ft.topic.0 == *t => ft.partitions.push(fp),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(vec![fp]),
                ),
            }
        }
        FetchRequest::default()
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    }

    fn got(hw: i64, records: &'static [u8]) -> Got {
        Got {
            offsets: Offsets {
                log_start_offset: 0,
                high_watermark: hw,
            },
            error: ErrorCode::None,
            records: Bytes::from_static(records),
        }
    }

    #[test]
    fn session_lifecycle_follows_kip_227() {
        let mut s = FetchSessions::new(0, 10);
        let (wants, mode) = s
            .resolve(&request(0, 0, &[("a", 0, 0), ("a", 1, 0)]), 12)
            .unwrap();
        let Mode::Full(id) = mode else {
            panic!("{mode:?}")
        };
        let first = s.settle(
            mode,
            wants.into_iter().zip([got(5, b""), got(0, b"")]).collect(),
        );
        assert_eq!(first.len(), 2, "a full response carries every partition");

        // Nothing changed: an incremental response is empty.
        let (wants, mode) = s.resolve(&request(id, 1, &[]), 12).unwrap();
        assert_eq!(mode, Mode::Incremental(id));
        assert_eq!(wants.len(), 2);
        let out = s.settle(
            mode,
            wants.into_iter().zip([got(5, b""), got(0, b"")]).collect(),
        );
        assert!(out.is_empty());

        // Partition 1 grew: only it is sent.
        let (wants, mode) = s.resolve(&request(id, 2, &[]), 12).unwrap();
        let out = s.settle(
            mode,
            wants.into_iter().zip([got(5, b""), got(3, b"x")]).collect(),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.partition, 1);

        // A replayed epoch is refused; an unknown id too.
        assert_eq!(
            s.resolve(&request(id, 2, &[]), 12).unwrap_err(),
            ErrorCode::InvalidFetchSessionEpoch
        );
        assert_eq!(
            s.resolve(&request(id ^ 1, 3, &[]), 12).unwrap_err(),
            ErrorCode::FetchSessionIdNotFound
        );

        // Forgetting a partition drops it from the session; epoch -1 closes the session.
        let mut r = request(id, 3, &[("a", 1, 3)]);
        r.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("a")))
            .with_partitions(vec![0])];
        let (wants, _) = s.resolve(&r, 12).unwrap();
        assert_eq!(wants.len(), 1);
        assert_eq!(wants[0].fetch_offset, 3);
        let (_, mode) = s.resolve(&request(id, -1, &[("a", 1, 3)]), 12).unwrap();
        assert_eq!(mode, Mode::Sessionless);
        assert!(s.is_empty());
    }

    #[test]
    fn sessions_are_bounded_and_evict_the_least_recently_used() {
        let mut s = FetchSessions::new(0, 2);
        let (_, a) = s.resolve(&request(0, 0, &[("a", 0, 0)]), 12).unwrap();
        let (_, b) = s.resolve(&request(0, 0, &[("a", 0, 0)]), 12).unwrap();
        let (Mode::Full(a), Mode::Full(b)) = (a, b) else {
            panic!()
        };
        s.resolve(&request(a, 1, &[]), 12).unwrap(); // a is now the most recent
        s.resolve(&request(0, 0, &[("a", 0, 0)]), 12).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.resolve(&request(a, 2, &[]), 12).is_ok());
        assert_eq!(
            s.resolve(&request(b, 1, &[]), 12).unwrap_err(),
            ErrorCode::FetchSessionIdNotFound
        );
    }
}
