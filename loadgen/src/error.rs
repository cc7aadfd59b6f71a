//! This crate's errors. Broker answers with a Kafka error code are not errors here: they are
//! counted by code in the run's statistics ([`crate::stats`]) and shown in every report. What
//! lands here stops a run (or a `compare`) with a message and a nonzero exit code.

use std::path::PathBuf;

use rill_net::NetError;

/// A bad workload field, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The field (as spelled in the workload file; flags use the same name with dashes).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a run or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The workload is invalid.
    #[error("invalid workload: {0}")]
    Config(#[from] ConfigError),
    /// No bootstrap server answered.
    #[error("cannot reach any broker in {bootstrap:?}: {reason}")]
    Unreachable {
        /// The bootstrap list as given.
        bootstrap: String,
        /// The last failure.
        reason: String,
    },
    /// A protocol-level failure talking to a broker.
    #[error("{context}: {source}")]
    Net {
        /// What was being done.
        context: String,
        /// The client's error.
        source: NetError,
    },
    /// The broker answered a setup request with an error.
    #[error("{context}: broker answered {code_name}{message}")]
    Broker {
        /// What was being done.
        context: String,
        /// The Kafka error name and number.
        code_name: String,
        /// The broker's error message, if any (with a leading separator).
        message: String,
    },
    /// The topic or its partitions are not usable.
    #[error("topic {topic}: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// What is wrong.
        reason: String,
    },
    /// The executors could not be started.
    #[error("cannot start executor {executor}: {reason}")]
    Runtime {
        /// Executor index.
        executor: usize,
        /// Why.
        reason: String,
    },
    /// Reading or writing report files failed.
    #[error("{path}: {reason}")]
    Report {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A Kafka error code as `NAME (code)`, naming codes `rill-net` does not list through
/// kafka-protocol's table.
pub fn error_code_name(code: i16) -> String {
    if let Some(known) = rill_net::ErrorCode::from_code(code) {
        return known.to_string();
    }
    match rill_net::kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) if format!("{e:?}").starts_with("Unknown(") => {
            format!("UNKNOWN_ERROR_CODE ({code})")
        }
        Some(e) => {
            // Kafka's names are the SCREAMING_SNAKE form of kafka-protocol's variant names.
            let mut name = String::new();
            for (i, ch) in format!("{e:?}").chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(ch.to_ascii_uppercase());
            }
            format!("{name} ({code})")
        }
        None => format!("UNKNOWN_ERROR_CODE ({code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names() {
        assert_eq!(error_code_name(6), "NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(error_code_name(-1), "UNKNOWN_SERVER_ERROR (-1)");
        assert_eq!(error_code_name(32000), "UNKNOWN_ERROR_CODE (32000)");
        // Whether or not rill-net lists it, a code gets Kafka's name.
        assert_eq!(error_code_name(15), "COORDINATOR_NOT_AVAILABLE (15)");
        assert_eq!(error_code_name(72), "LISTENER_NOT_FOUND (72)");
    }
}
