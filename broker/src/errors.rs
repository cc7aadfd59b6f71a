//! The one place where the broker's failures become Kafka error codes.

use rill_net::ErrorCode;
use rill_storage::StorageError;

/// A failed partition or admin operation: the code the client acts on and, where the API
/// has a message field, words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: ErrorCode,
    pub message: Option<String>,
}

impl KafkaError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> KafkaError {
        KafkaError {
            code,
            message: Some(message.into()),
        }
    }

    pub fn code(code: ErrorCode) -> KafkaError {
        KafkaError {
            code,
            message: None,
        }
    }

    pub fn unknown_topic(topic: &str) -> KafkaError {
        KafkaError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic `{topic}` does not exist; create it first (rill topic create)"),
        )
    }

    pub fn unknown_partition(topic: &str, partition: i32) -> KafkaError {
        KafkaError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic `{topic}` has no partition {partition}"),
        )
    }

    /// The message as the optional string field of a response.
    pub fn message_str(&self) -> Option<rill_net::kafka_protocol::protocol::StrBytes> {
        self.message
            .as_ref()
            .map(|m| rill_net::kafka_protocol::protocol::StrBytes::from_string(m.clone()))
    }
}

impl From<StorageError> for KafkaError {
    fn from(e: StorageError) -> KafkaError {
        let code = match &e {
            StorageError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
            StorageError::CrcMismatch { .. } | StorageError::CorruptBatch { .. } => {
                ErrorCode::CorruptMessage
            }
            StorageError::UnsupportedMagic { .. } => ErrorCode::UnsupportedForMessageFormat,
            StorageError::OffsetOutOfRange { .. } | StorageError::NonContiguousAppend { .. } => {
                ErrorCode::OffsetOutOfRange
            }
            StorageError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            // The partition is being closed or deleted: the client retries and finds where
            // it went.
            StorageError::Closed => ErrorCode::NotLeaderOrFollower,
            StorageError::Io { .. }
            | StorageError::BadMetadata { .. }
            | StorageError::TooManyOpenFiles { .. } => {
                tracing::error!(error = %e, "partition storage failed");
                ErrorCode::KafkaStorageError
            }
        };
        KafkaError::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_the_codes_clients_act_on() {
        let cases = [
            (
                StorageError::BatchTooLarge {
                    bytes: 10,
                    limit_bytes: 5,
                },
                ErrorCode::MessageTooLarge,
            ),
            (
                StorageError::CrcMismatch {
                    stored: 1,
                    computed: 2,
                },
                ErrorCode::CorruptMessage,
            ),
            (
                StorageError::CorruptBatch { reason: "x" },
                ErrorCode::CorruptMessage,
            ),
            (
                StorageError::UnsupportedMagic { magic: 1 },
                ErrorCode::UnsupportedForMessageFormat,
            ),
            (
                StorageError::OffsetOutOfRange {
                    offset: 9,
                    log_start_offset: 0,
                    log_end_offset: 3,
                },
                ErrorCode::OffsetOutOfRange,
            ),
            (StorageError::Closed, ErrorCode::NotLeaderOrFollower),
        ];
        for (e, code) in cases {
            assert_eq!(KafkaError::from(e).code, code);
        }
    }
}
