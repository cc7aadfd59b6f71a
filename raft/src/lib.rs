//! rill-raft: the cluster metadata raft group.
//!
//! Every broker runs one member of this group on its own `rill-metadata`
//! thread (off the shards, so the raft log's fsyncs never stall one); a
//! configured quorum (1, 3 or 5) votes and the other brokers follow as
//! learners. The raft leader is the controller. Consensus here knows no Kafka
//! requests and no glommio: the broker drives it.
//!
//! What lives where (and who owns it):
//! - [`node`]: the raft-rs driver [`node::Node`] (the Ready loop), owned by
//!   the metadata thread. Sans-IO towards time and network: `tick`, `step`, `propose`,
//!   `handle_ready -> Output`.
//! - [`storage`]: [`storage::DiskStorage`], the durable raft log, hard
//!   state and snapshots implementing `raft::Storage`, owned by the Node.
//! - [`disk`]: the file operations under it ([`disk::FsDisk`] for real,
//!   [`disk::MemDisk`] for the simulation's crashing disks).
//! - [`metadata`]: the pure state machine [`metadata::MetadataState`]
//!   (brokers, topics, partitions, configs) and its [`metadata::Command`]s.
//! - [`controller`]: pure controller decisions the leader proposes.
//! - [`transport`]: the [`transport::Transport`] trait and
//!   [`transport::TcpTransport`] (std threads) between brokers.
//! - [`logger`]: raft-rs's slog into `tracing`.
//! - [`ids`]: newtypes (NodeId, BrokerId, TopicId, LeaderEpoch, ...).
//! - [`sim_rng`]: the seeded random numbers of the simulations (raft's and the broker's).
//!
//! Layout (dependencies point down): `node` → `storage` → `disk`; `node` →
//! `metadata` ← `controller`; `transport`, `logger`, `ids`, `error` are leaves.
//!
//! Driving it (every `tick_ms`, and whenever messages arrive):
//! ```text
//! for m in transport.try_recv_many(n) { node.step(m)? }
//! if tick_due { node.tick() }
//! if is_leader && heartbeat_due { node.propose(&heartbeat)? }
//! let out = node.handle_ready()?;           // persists, applies
//! for m in out.messages { transport.send(m) }
//! if let Some(rc) = out.role_change { controller = (rc.role == Leader).then(|| Controller::new(cfg, now)) }
//! if let Some(c) = &mut controller { c.observe(&out.applied, now); for p in c.tick(node.state(), now) { node.propose(&p)?; } }
//! // out.applied: what changed, for shards' caches; node.state(): the whole metadata
//! ```

pub mod controller;
pub mod disk;
pub mod error;
pub mod ids;
pub mod logger;
pub mod metadata;
pub mod node;
pub mod sim_rng;
pub mod storage;
pub mod transport;

pub use error::{Error, Result};
/// raft-rs itself, so the broker names the same message types.
pub use raft;
