//! The crate's one error type. Structured fields so the broker can map each
//! case to a Kafka error code (NOT_CONTROLLER, ...) in its single mapping.

use crate::ids::NodeId;

/// Everything rill-raft can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed; `op` names the operation, `file` the file.
    #[error("raft disk: {op} {file}: {source}")]
    Io {
        op: &'static str,
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A record or small file failed its checksum or structure check in a
    /// place where a torn tail is impossible (a sealed segment, a snapshot).
    #[error("raft disk: {file} corrupt at byte {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    /// raft-rs refused an operation (storage errors it saw, bad config,
    /// proposal dropped, ...).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A proposal was made on a node that is not the raft leader; `leader`
    /// is who this node believes leads, if anyone.
    #[error("not the raft leader (leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The proposal queue of the leader is full (`proposals_inflight_max`).
    #[error("too many proposals in flight ({inflight}, limit {limit})")]
    ProposalsFull { inflight: usize, limit: usize },
    /// A command or snapshot could not be encoded or decoded.
    #[error("codec: {what}: {reason}")]
    Codec { what: &'static str, reason: String },
    /// A configuration field is invalid; `field` names it.
    #[error("config: {field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// A frame on the transport exceeded `frame_bytes_max` or was malformed.
    #[error("transport frame from {peer}: {reason}")]
    Frame { peer: String, reason: String },
}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(op: &'static str, file: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            file: file.into(),
            source,
        }
    }
}
