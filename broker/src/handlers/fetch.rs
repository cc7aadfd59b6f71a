//! Fetch: reads across partitions and shards, long polls (`max_wait_ms`, `min_bytes`), the
//! response byte limits, and incremental fetch sessions ([`super::fetch_sessions`]). The
//! stored batches go to the socket as the log returned them (several buffers per partition
//! are spliced into the frame, never joined).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_net::codec::{encode_fetch_response, RecordSplices};
use rill_net::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use rill_net::kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_net::ErrorCode;
use rill_storage::batch::BatchHeader;
use tracing::error;

use super::fetch_sessions::{FetchSessions, Got, Mode, Want};
use super::Reply;
use crate::partition::{FetchAt, Fetched, Offsets, Reader};
use crate::shard::Shard;

/// Serves one Fetch request.
pub async fn fetch(
    shard: &Rc<Shard>,
    r: FetchRequest,
    correlation_id: i32,
    version: i16,
    client_id: &str,
) -> Reply {
    let mut splices = RecordSplices::new();
    let response = match Reader::from_replica_id(r.replica_id.0) {
        // Only the cluster's brokers fetch as replicas: a follower's fetch offset moves the
        // high watermark, so a client must not pose as one.
        Reader::Follower(id)
            if shard.image().replica_client_id(id).as_deref() != Some(client_id) =>
        {
            shard
                .metrics()
                .error("Fetch", ErrorCode::ClusterAuthorizationFailed);
            tracing::warn!(
                replica_id = id,
                client_id,
                "refusing a replica fetch from a client that is not that broker's fetcher"
            );
            FetchResponse::default()
                .with_error_code(ErrorCode::ClusterAuthorizationFailed.code())
                .with_session_id(0)
        }
        _ => answer(shard, r, version, &mut splices).await,
    };
    match encode_fetch_response(correlation_id, version, &response, &splices) {
        Ok(pieces) => Reply::Frame(pieces),
        Err(e) => {
            error!(error = %e, "cannot encode fetch response; closing the connection");
            Reply::Close
        }
    }
}

async fn answer(
    shard: &Rc<Shard>,
    r: FetchRequest,
    version: i16,
    splices: &mut RecordSplices,
) -> FetchResponse {
    let sessions = shard.service::<RefCell<FetchSessions>>();
    let resolved = sessions.borrow_mut().resolve(&r, version);
    let (wants, mode) = match resolved {
        Ok(x) => x,
        Err(code) => {
            shard.metrics().error("Fetch", code);
            return FetchResponse::default()
                .with_error_code(code.code())
                .with_session_id(0);
        }
    };
    let limits = &shard.config().limits;
    let max_bytes = (r.max_bytes.max(0) as usize).min(limits.fetch_response_bytes_max);
    let min_bytes = r.min_bytes.max(0) as usize;
    let wait = Duration::from_millis((r.max_wait_ms.max(0) as u64).min(limits.fetch_wait_ms_max));
    let deadline = Instant::now() + wait;
    // A follower broker (Kafka's replica id) reads to the log end and is recorded by the
    // leader.
    let reader = Reader::of_fetch(r.replica_id.0, r.isolation_level);
    let got = loop {
        let got = read_all(shard, &wants, max_bytes, reader).await;
        let bytes: usize = got.iter().map(Got::bytes).sum();
        let now = Instant::now();
        let errors = got.iter().any(|g| g.error != ErrorCode::None);
        // A diverging epoch is news the fetcher must act on (cut its log, fetch again), as
        // Kafka answers it at once: waiting out the long poll kept a deposed leader's
        // follower out of sync for the fetch's whole max_wait_ms.
        let diverging = got.iter().any(|g| g.diverging.is_some());
        if bytes >= min_bytes.max(1) || errors || diverging || now >= deadline || wants.is_empty() {
            break got;
        }
        let parts = wants
            .iter()
            .map(|w| (w.topic.clone(), w.partition, w.fetch_offset))
            .collect();
        shard.wait_anywhere(parts, reader, deadline - now).await;
    };
    let answered = sessions
        .borrow_mut()
        .settle(mode, wants.into_iter().zip(got).collect());
    let read_committed = reader == Reader::Committed;
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (want, g) in answered {
        if g.error == ErrorCode::None {
            shard.metrics().fetched(&want.topic, g.bytes() as u64);
        } else {
            shard.metrics().error("Fetch", g.error);
        }
        let data = PartitionData::default()
            .with_partition_index(want.partition)
            .with_error_code(g.error.code())
            .with_high_watermark(g.offsets.high_watermark)
            .with_last_stable_offset(g.offsets.last_stable_offset)
            .with_log_start_offset(g.offsets.log_start_offset)
            .with_aborted_transactions(read_committed.then(|| {
                g.aborted
                    .iter()
                    .map(|t| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(t.producer_id))
                            .with_first_offset(t.first_offset)
                    })
                    .collect()
            }))
            .with_diverging_epoch(
                g.diverging
                    .map(|(epoch, end_offset)| {
                        EpochEndOffset::default()
                            .with_epoch(epoch)
                            .with_end_offset(end_offset)
                    })
                    .unwrap_or_default(),
            )
            .with_records(Some(splices.records(g.records)));
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
async fn read_all(shard: &Rc<Shard>, wants: &[Want], max_bytes: usize, reader: Reader) -> Vec<Got> {
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
            let at = FetchAt {
                offset: w.fetch_offset,
                max_bytes: limit,
                current_leader_epoch: w.current_leader_epoch,
                last_fetched_epoch: w.last_fetched_epoch,
            };
            wave.push(
                shard.with_partition(&w.topic, w.partition, move |p| async move {
                    // OFFSET_OUT_OF_RANGE carries the offsets: a follower behind the log
                    // start learns where to restart from it.
                    let fetched = p.fetch(reader, at).await;
                    // read_committed: the aborted transactions among what was read, so
                    // the client drops their records.
                    let aborted = match &fetched {
                        Ok(Fetched::Records(batches)) if reader == Reader::Committed => {
                            match batches.last().map(|b| BatchHeader::parse(b)) {
                                Some(Ok(h)) => {
                                    p.aborted_transactions(at.offset, h.last_offset() + 1).await
                                }
                                _ => Ok(Vec::new()),
                            }
                        }
                        _ => Ok(Vec::new()),
                    };
                    Ok((p.offsets(), fetched.and_then(|f| aborted.map(|a| (f, a)))))
                }),
            );
            i += 1;
        }
        let first = out.len();
        for (k, reply) in futures_util::future::join_all(wave)
            .await
            .into_iter()
            .enumerate()
        {
            let mut got = match reply {
                Ok((offsets, Err(e))) => Got {
                    aborted: Vec::new(),
                    offsets: if e.code == ErrorCode::OffsetOutOfRange {
                        offsets
                    } else {
                        Offsets::UNKNOWN
                    },
                    error: e.code,
                    records: Vec::new(),
                    diverging: None,
                },
                Ok((offsets, Ok((Fetched::Records(records), aborted)))) => Got {
                    aborted,
                    offsets,
                    error: ErrorCode::None,
                    records,
                    diverging: None,
                },
                Ok((offsets, Ok((Fetched::Diverging { epoch, end_offset }, _)))) => Got {
                    aborted: Vec::new(),
                    offsets,
                    error: ErrorCode::None,
                    records: Vec::new(),
                    diverging: Some((epoch, end_offset)),
                },
                Err(e) => Got {
                    aborted: Vec::new(),
                    offsets: Offsets::UNKNOWN,
                    error: e.code,
                    records: Vec::<Bytes>::new(),
                    diverging: None,
                },
            };
            // KIP-74: only the first partition with data may go past the limits (by its
            // first batch, so a consumer always progresses); any other keeps the whole
            // batches that fit its own limit and what is left of the response's.
            let some_returned = out.iter().any(|g| !g.records.is_empty());
            let limit = wants[first + k].max_bytes.min(remaining);
            let mut kept = 0usize;
            let mut n = 0usize;
            for b in &got.records {
                if (some_returned || n > 0) && kept + b.len() > limit {
                    break;
                }
                kept += b.len();
                n += 1;
            }
            got.records.truncate(n);
            remaining = remaining.saturating_sub(kept);
            out.push(got);
        }
    }
    out
}
