//! Consumer groups: the classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), KIP-848 groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe; the state
//! machine and assignors are in `consumer_group`), committed offsets (OffsetCommit,
//! OffsetFetch, OffsetDelete), plus ListGroups, DescribeGroups and DeleteGroups.
//!
//! A group's coordinator is the shard that owns the partition of the internal
//! `__consumer_offsets` topic chosen by hashing the group id (Java's `String.hashCode`, as
//! Kafka does); in a cluster, the broker leading that partition. Group metadata, members
//! and offsets are records in that partition, appended and fdatasync'd before a commit or
//! an assignment is acknowledged, so they survive restarts and kill -9; the coordinator
//! replays its partitions the first time a group on them is used. The topic is created on
//! first use, like Kafka's.
//!
//! One writer per offsets partition appends the records in the order they were computed
//! (several requests share a batch and its fdatasync), and after `offsets_checkpoint_bytes`
//! writes the groups' whole state again and deletes the records before it, so the topic
//! stays small without compaction.
//!
//! State lives on the coordinator shard only (`RefCell`, never borrowed across an await).
//! JoinGroup and SyncGroup park on oneshots until the rebalance completes.
//!
//! Layout: `coordinator` (routing, the classic protocol, offsets, the ordered writer and
//! checkpoints) → `consumer` (the KIP-848 state machine and assignors, no I/O).

mod assignors;
mod classic;
mod consumer;
mod consumer_glue;
mod consumer_member;
mod coordinator;
mod log;
mod offsets;
mod records;

pub use coordinator::{start, GroupOp, GroupReply, Groups};
pub use offsets::Committed;
