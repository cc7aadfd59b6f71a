//! Incremental fetch sessions (KIP-227): which partitions a Fetch reads, and which of them
//! an incremental response must carry.
//!
//! Sessions live on the shard that serves the connection ([`FetchSessions`], one per shard,
//! bounded by `limits.fetch_sessions_max`, least recently used evicted). A client that
//! reconnects to another shard gets FETCH_SESSION_ID_NOT_FOUND and starts a new session, as
//! it would after a broker restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rill_net::kafka_protocol::messages::FetchRequest;
use rill_net::ErrorCode;

use crate::partition::Offsets;

/// One partition a fetch reads.
#[derive(Debug, Clone)]
pub struct Want {
    pub topic: Arc<str>,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: usize,
    /// KIP-320: the leader epoch the client saw, and the epoch of its last batch (-1: none).
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
}

/// What one partition returned: its offsets, an error, and whole batches.
#[derive(Debug, Clone)]
pub(super) struct Got {
    pub offsets: Offsets,
    pub error: ErrorCode,
    pub records: Vec<Bytes>,
    /// Where the fetcher's log diverges from the leader's: (epoch, end offset).
    pub diverging: Option<(i32, i64)>,
    /// read_committed: the aborted transactions among the records.
    pub aborted: Vec<rill_storage::txn::AbortedTxn>,
}

impl Got {
    pub fn bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

/// How the request relates to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
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
    /// (high watermark, log start offset, last stable offset) last sent to the client.
    sent: Option<(i64, i64, i64)>,
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
    pub(super) fn resolve(
        &mut self,
        r: &FetchRequest,
        version: i16,
    ) -> Result<(Vec<Want>, Mode), ErrorCode> {
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
    pub(super) fn settle(&mut self, mode: Mode, got: Vec<(Want, Got)>) -> Vec<(Want, Got)> {
        let id = match mode {
            Mode::Sessionless => return got,
            Mode::Full(id) | Mode::Incremental(id) => id,
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return got;
        };
        let mut out = Vec::with_capacity(got.len());
        for (want, g) in got {
            let now = (
                g.offsets.high_watermark,
                g.offsets.log_start_offset,
                g.offsets.last_stable_offset,
            );
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
                || g.bytes() > 0
                || g.diverging.is_some()
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
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
            });
        }
    }
    wants
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_net::kafka_protocol::messages::fetch_request::{
        FetchPartition, FetchTopic, ForgottenTopic,
    };
    use rill_net::kafka_protocol::messages::TopicName;
    use rill_net::kafka_protocol::protocol::StrBytes;

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
                last_stable_offset: hw,
            },
            error: ErrorCode::None,
            records: vec![Bytes::from_static(records)],
            diverging: None,
            aborted: Vec::new(),
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
