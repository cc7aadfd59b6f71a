//! rill-raft: placeholder
pub mod controller;
pub mod disk;
pub mod error;
pub mod ids;
pub mod logger;
pub mod metadata;
pub mod node;
pub mod storage;

pub use raft;
