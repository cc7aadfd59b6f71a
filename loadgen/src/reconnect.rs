//! Getting a connection back after a broker drops it (a restart, a network cut).
//!
//! A producer or consumer whose connection fails does not end: it reconnects with
//! exponential backoff ([`Backoff`]: `reconnect_backoff_ms` doubling up to
//! `reconnect_backoff_max_ms`, with ±20% jitter so many clients do not retry in lockstep, as
//! Kafka clients do), and before it sends anything it refreshes metadata on the new
//! connection ([`reconnect`]): a broker that accepts connections but has not loaded the
//! topic yet is not ready, and a partition whose leader moved must be sent elsewhere. If
//! the broker stays unreachable for `reconnect_timeout_ms` from the loss, [`reconnect`]
//! gives up with a message naming the address, the deadline and the last failure; the
//! caller fails what it holds and the run ends with that problem.
//!
//! What happened to records in flight when a connection dropped is unknown (the broker may
//! have appended them before it died): the producer does not resend them (without
//! idempotence a resend could duplicate them); they count as failed *and in doubt*, and
//! consumers may still read them (see `stats::Counts::in_doubt_records`).

use std::time::{Duration, Instant};

use rill_net::client::{Connection, ConnectionOptions};
use rill_net::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use rill_net::kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;

use crate::runtime::{self, Stream};
use crate::wire::CLIENT_ID;

/// Jitter applied to every backoff delay, as a fraction either way.
pub const BACKOFF_JITTER: f64 = 0.2;

/// Exponential backoff with jitter: the `n`th delay (from 0) is
/// `min(initial x 2^n, max) x (1 ± jitter)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff from `initial_ms` up to `max_ms`, jittered by a generator seeded with
    /// `seed` (so tests are deterministic).
    pub fn new(initial_ms: u64, max_ms: u64, seed: u64) -> Backoff {
        Backoff {
            initial_ms: initial_ms.max(1),
            max_ms: max_ms.max(initial_ms.max(1)),
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .initial_ms
            .saturating_mul(1u64 << self.attempt.min(32))
            .min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = 1.0 + BACKOFF_JITTER * (2.0 * self.rng.f64() - 1.0);
        Duration::from_micros((base as f64 * 1000.0 * jitter) as u64)
    }

    /// Attempts made since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Reconnection limits, from the workload.
#[derive(Debug, Clone, Copy)]
pub struct ReconnectSettings {
    /// First delay.
    pub backoff_ms: u64,
    /// Largest delay.
    pub backoff_max_ms: u64,
    /// Give up this long after the connection was lost.
    pub timeout_ms: u64,
    /// One connection attempt's limit.
    pub connect_timeout_ms: u64,
}

/// A connection back, with the topic's current leaders.
#[derive(Debug)]
pub struct Reconnected {
    /// The new stream, nothing pending on it.
    pub stream: Stream,
    /// `(partition, leader node id)` for every partition asked about.
    pub leaders: Vec<(i32, i32)>,
    /// Failed attempts before this one.
    pub failed_attempts: u32,
}

/// Reconnects to `addr` with backoff until it answers Metadata for `topic` with a leader
/// for every one of `partitions`, or `settings.timeout_ms` has passed since `lost_at`.
/// `on_failed_attempt` hears why each failed attempt failed (for counting).
pub async fn reconnect(
    addr: &str,
    topic: &str,
    partitions: &[i32],
    settings: ReconnectSettings,
    lost_at: Instant,
    seed: u64,
    mut on_failed_attempt: impl FnMut(&str),
) -> Result<Reconnected, String> {
    let mut backoff = Backoff::new(settings.backoff_ms, settings.backoff_max_ms, seed);
    let give_up_at = lost_at + Duration::from_millis(settings.timeout_ms);
    let mut last = String::from("no attempt made");
    loop {
        let delay = backoff.next_delay();
        let at = (Instant::now() + delay).min(give_up_at);
        runtime::sleep_until(at).await;
        if Instant::now() >= give_up_at && backoff.attempts() > 1 {
            break;
        }
        match attempt(addr, topic, partitions, settings.connect_timeout_ms).await {
            Ok((stream, leaders)) => {
                return Ok(Reconnected {
                    stream,
                    leaders,
                    failed_attempts: backoff.attempts() - 1,
                })
            }
            Err(e) => {
                on_failed_attempt(&e);
                last = e;
            }
        }
        if Instant::now() >= give_up_at {
            break;
        }
    }
    Err(format!(
        "{addr} stayed unreachable for {} ms (reconnect_timeout_ms) after the connection was lost; {} attempts, the last: {last}",
        settings.timeout_ms,
        backoff.attempts()
    ))
}

async fn attempt(
    addr: &str,
    topic: &str,
    partitions: &[i32],
    connect_timeout_ms: u64,
) -> Result<(Stream, Vec<(i32, i32)>), String> {
    let stream = runtime::connect(addr, Duration::from_millis(connect_timeout_ms))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut conn = Connection::with_options(
        stream,
        ConnectionOptions {
            client_id: CLIENT_ID.to_string(),
            ..ConnectionOptions::default()
        },
    );
    let versions = conn
        .api_versions()
        .await
        .map_err(|e| format!("ApiVersions: {e}"))?;
    let v = versions
        .require(ApiKey::Metadata)
        .map_err(|e| format!("Metadata: {e}"))?;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
        .with_allow_auto_topic_creation(false);
    let meta = conn
        .send(v, &request)
        .await
        .map_err(|e| format!("Metadata: {e}"))?;
    let t = meta
        .topics
        .first()
        .ok_or("Metadata answer names no topic")?;
    if t.error_code != 0 {
        return Err(format!(
            "Metadata for {topic}: {}",
            crate::error::error_code_name(t.error_code)
        ));
    }
    let mut leaders = Vec::with_capacity(partitions.len());
    for &p in partitions {
        match t.partitions.iter().find(|x| x.partition_index == p) {
            Some(x) if x.error_code == 0 && x.leader_id.0 >= 0 => leaders.push((p, x.leader_id.0)),
            Some(x) if x.error_code != 0 => {
                return Err(format!(
                    "partition {p} not ready: {}",
                    crate::error::error_code_name(x.error_code)
                ))
            }
            _ => return Err(format!("partition {p} has no leader yet")),
        }
    }
    let stream = conn
        .into_stream()
        .ok_or("bytes left on the connection after Metadata")?;
    Ok((stream, leaders))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(100, 1000, 42);
        let delays: Vec<f64> = (0..8)
            .map(|_| b.next_delay().as_secs_f64() * 1000.0)
            .collect();
        let bases = [100.0, 200.0, 400.0, 800.0, 1000.0, 1000.0, 1000.0, 1000.0];
        for (d, base) in delays.iter().zip(bases) {
            assert!(
                *d >= base * (1.0 - BACKOFF_JITTER) && *d <= base * (1.0 + BACKOFF_JITTER),
                "{delays:?}"
            );
        }
        // Jittered: not all equal at the cap.
        assert!(delays[4..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
        assert_eq!(b.attempts(), 8);
        b.reset();
        let d = b.next_delay().as_secs_f64() * 1000.0;
        assert!((80.0..=120.0).contains(&d), "{d}");
        // Never overflows, however long the outage.
        let mut long = Backoff::new(50, 2000, 1);
        for _ in 0..200 {
            assert!(long.next_delay() <= Duration::from_millis(2400));
        }
        // Same seed, same delays.
        let a: Vec<_> = (0..5)
            .map({
                let mut x = Backoff::new(10, 500, 9);
                move |_| x.next_delay()
            })
            .collect();
        let c: Vec<_> = (0..5)
            .map({
                let mut x = Backoff::new(10, 500, 9);
                move |_| x.next_delay()
            })
            .collect();
        assert_eq!(a, c);
    }

    #[test]
    fn a_max_below_the_initial_is_raised_to_it() {
        let mut b = Backoff::new(500, 100, 3);
        let d = b.next_delay().as_millis();
        assert!((400..=600).contains(&d), "{d}");
    }
}
