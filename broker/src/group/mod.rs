//! Consumer groups: the classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), KIP-848 groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe), committed
//! offsets (OffsetCommit, OffsetFetch, OffsetDelete), plus ListGroups, DescribeGroups and
//! DeleteGroups.
//!
//! A group's coordinator is the shard that owns the partition of the internal
//! `__consumer_offsets` topic chosen by hashing the group id (Java's `String.hashCode`, as
//! Kafka does); in a cluster, the broker leading that partition. Group metadata, members
//! and offsets are records in that partition, appended and fdatasync'd before a commit or
//! an assignment is acknowledged, so they survive restarts and kill -9; the coordinator
//! replays its partitions the first time a group on them is used (or ListGroups asks). The
//! topic is created on first use and compacted, like Kafka's, and holds Kafka's own record
//! formats.
//!
//! State lives on the coordinator shard only (`RefCell`, never borrowed across an await).
//!
//! Layout (arrows: who uses whom):
//! - the I/O side, `coordinator` → `offsets`, `consumer_glue` → `log`: one service type,
//!   [`Groups`], whose methods these files share, each over its own part of the state.
//!   `coordinator`: routing to a group's coordinator shard, dispatch, Describe/List/Delete,
//!   and the shell of the classic protocol (parked requests, timers); `offsets`:
//!   OffsetCommit/Fetch/Delete; `consumer_glue`: KIP-848 heartbeats, describe and expiry;
//!   `log`: replaying an offsets partition, its ordered writer, the rewrite of old formats;
//! - the state machines, no I/O (requests and the clock in, answers and records out):
//!   `classic`, and `consumer` → `consumer_member`, `assignors` for KIP-848;
//! - `records`: what is stored and its placement; `classic` and the I/O side write it, and
//!   it turns KIP-848 members (`consumer`) into records; `wire`: those records in Kafka's
//!   key and value formats, and back.

mod assignors;
mod classic;
mod consumer;
mod consumer_glue;
mod consumer_member;
mod coordinator;
mod log;
mod offsets;
mod records;
mod wire;

pub use coordinator::{start, GroupOp, GroupReply, Groups};
pub use offsets::Committed;
