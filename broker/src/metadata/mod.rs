//! Cluster metadata: what topics, partitions and brokers there are, where each partition
//! lives, and the two authorities that change it.
//!
//! Every shard reads one immutable [`Image`] (replaced whole, an `Arc`). A single broker is a
//! cluster of one: its image says it leads every partition at epoch 0, alone in the ISR, so
//! request handling never asks which mode it runs in. Changes are checked the same way
//! ([`change`]) and then made by one of two authorities, reached through
//! `crate::shard::Authority`:
//!
//! - [`local`]: a single broker's registry file, changed by shard 0, which hands the next
//!   image to every shard before answering;
//! - [`raft`]: the metadata raft group (a member per broker on the `rill-metadata` thread,
//!   [`raft_member`]), which publishes an image after every change and rings each shard's
//!   doorbell.
//!
//! Layout (dependencies point down): `change` → `image` ← `local` (→ `registry`), `raft`
//! (→ `raft_member`). Nothing here knows shards or requests.

pub mod change;
pub mod image;
pub mod local;
pub mod raft;
mod raft_member;
pub mod registry;

pub use change::{ConfigChange, ConfigEdit, ConfigOp, NewTopic};
pub use image::{
    check_topic_name, owner_shard, partition_dir, BrokerInfo, Image, Placement, TopicInfo,
    OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC,
};
pub use registry::RegistryFile;
