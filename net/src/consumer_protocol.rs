//! The consumer protocol embedded in the classic group apis (JoinGroup metadata,
//! SyncGroup assignments), as Kafka's Java client and librdkafka write it, and Kafka's
//! range assignor: shared by the `rill` CLI's group member and rill-loadgen.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment, ConsumerProtocolAssignment, ConsumerProtocolSubscription,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// An embedded consumer-protocol message: version (i16), then the body.
fn embed<M: Encodable>(m: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Only strings and arrays of our own making: encoding cannot fail.
    m.encode(&mut buf, version)
        .expect("consumer protocol messages encode");
    buf.freeze()
}

/// The JoinGroup metadata of a member subscribed to `topic`.
pub fn subscription(topic: &str) -> Bytes {
    embed(
        &ConsumerProtocolSubscription::default().with_topics(vec![s(topic)]),
        0,
    )
}

/// The topics a member's JoinGroup metadata subscribes to (empty if it does not parse).
pub fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    if metadata.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]).clamp(0, 3);
    let mut body = metadata.slice(2..);
    ConsumerProtocolSubscription::decode(&mut body, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

/// The SyncGroup assignment bytes giving `partitions` of `topic`.
pub fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    embed(
        &ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(partitions.to_vec()),
        ]),
        0,
    )
}

/// The partitions of `topic` in SyncGroup assignment bytes (empty if none or unparsable).
pub fn assigned_partitions(bytes: &Bytes, topic: &str) -> Vec<i32> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    let mut body = bytes.slice(2..);
    let mut out: Vec<i32> = ConsumerProtocolAssignment::decode(&mut body, version)
        .map(|a| {
            a.assigned_partitions
                .iter()
                .filter(|t| &*t.topic.0 == topic)
                .flat_map(|t| t.partitions.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// Kafka's range assignor for one topic: members sorted by id, each a contiguous range of
/// partitions, the first `partitions % members` one more.
pub fn range_assign(members: &[String], partitions: &[i32]) -> BTreeMap<String, Vec<i32>> {
    let mut sorted = members.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if sorted.is_empty() {
        return out;
    }
    let mut parts = partitions.to_vec();
    parts.sort_unstable();
    let per = parts.len() / sorted.len();
    let extra = parts.len() % sorted.len();
    let mut at = 0;
    for (i, m) in sorted.into_iter().enumerate() {
        let n = per + usize::from(i < extra);
        out.insert(m, parts[at..at + n].to_vec());
        at += n;
    }
    out
}
