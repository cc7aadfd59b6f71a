//! rill-raft: the cluster metadata raft group (placeholder docs, filled in below).
pub mod disk;
pub mod error;
pub mod ids;
pub mod metadata;
pub mod storage;

pub use raft;
