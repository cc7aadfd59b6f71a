//! Newtypes over the integers that must not be swapped: raft node ids,
//! Kafka broker ids, topic ids, partition indexes and leader epochs.

use rkyv::{Archive, Deserialize, Serialize};

/// A member of the metadata raft group (raft-rs `u64` id, never 0: raft-rs
/// reserves 0 for "nobody"). The broker maps its `BrokerId` to a `NodeId`
/// with [`NodeId::from_broker`], so a broker and its raft member agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl NodeId {
    /// Kafka broker ids start at 0, raft ids at 1: shift by one.
    pub fn from_broker(b: BrokerId) -> NodeId {
        NodeId(b.0 as u64 + 1)
    }
    /// The broker that runs this raft member.
    pub fn broker(self) -> BrokerId {
        BrokerId((self.0 - 1) as i32)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Kafka's `broker.id` (`int32` on the wire).
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord))]
pub struct BrokerId(pub i32);

impl std::fmt::Display for BrokerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b{}", self.0)
    }
}

/// A topic's id: assigned by the state machine from a counter, so every
/// replica of the metadata assigns the same one. (Kafka uses a random UUID;
/// the broker derives its 16-byte form from this and the cluster id.)
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord))]
pub struct TopicId(pub u64);

/// A partition index within a topic (`int32` on the wire).
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord))]
pub struct PartitionIndex(pub i32);

/// Kafka's partition `leader_epoch`: bumped on every leader change, so a
/// stale leader's requests can be told apart.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord))]
pub struct LeaderEpoch(pub i32);

impl LeaderEpoch {
    /// The epoch after this one.
    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0 + 1)
    }
}

/// A point in time in milliseconds, passed in explicitly (wall clock in the
/// broker, virtual time in the simulation), never read inside this crate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// `self - earlier`, or 0 if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_and_broker_ids_round_trip_and_never_map_to_raft_zero() {
        for b in [0, 1, 7, 1000] {
            let n = NodeId::from_broker(BrokerId(b));
            assert_ne!(n.0, 0, "raft reserves id 0");
            assert_eq!(n.broker(), BrokerId(b));
        }
    }

    #[test]
    fn millis_since_saturates() {
        assert_eq!(Millis(10).since(Millis(4)), 6);
        assert_eq!(Millis(4).since(Millis(10)), 0);
        assert_eq!(LeaderEpoch(3).next(), LeaderEpoch(4));
    }
}
