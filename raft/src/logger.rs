//! Bridge from raft-rs's `slog` logging to `tracing`, so raft's election
//! and log messages land in the broker's one log stream (target `raft`),
//! with the raft node id attached. Stateless; one logger per [`crate::node::Node`].

use std::fmt::Write as _;

use slog::{Drain, Level};

use crate::ids::NodeId;

/// A root slog logger whose records go to `tracing` at the same level.
pub fn raft_logger(node: NodeId) -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!("raft_node" => node.0))
}

/// The slog drain that forwards to tracing.
pub struct TracingDrain;

fn enabled(level: Level) -> bool {
    match level {
        Level::Critical | Level::Error => tracing::enabled!(target: "raft", tracing::Level::ERROR),
        Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
        Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
        Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
        Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> std::result::Result<(), slog::Never> {
        // raft-rs logs a lot at debug; formatting only what a subscriber
        // wants keeps the simulation fast.
        if !enabled(record.level()) {
            return Ok(());
        }
        let mut kv = KvText(String::new());
        // Serializing into a String cannot fail; a failure would only lose
        // key-values of a log line.
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let _ = slog::KV::serialize(values, record, &mut kv);
        let msg = record.msg();
        let kv = kv.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{kv}"),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{kv}"),
            Level::Info => tracing::info!(target: "raft", "{msg}{kv}"),
            Level::Debug => tracing::debug!(target: "raft", "{msg}{kv}"),
            Level::Trace => tracing::trace!(target: "raft", "{msg}{kv}"),
        }
        Ok(())
    }
}

struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn slog_records_arrive_in_tracing_with_their_key_values() {
        let cap = Capture::default();
        let writer = cap.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let log = raft_logger(NodeId(7));
            slog::info!(log, "became leader"; "term" => 3);
            slog::debug!(log, "filtered out");
        });
        let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("became leader"), "{text}");
        assert!(text.contains("term=3"), "{text}");
        assert!(text.contains("raft_node=7"), "{text}");
        assert!(!text.contains("filtered out"), "{text}");
    }
}
