//! Kafka error codes ([`ErrorCode`]) and this crate's error types: [`FrameError`] for the
//! length-prefixed framing, [`DecodeError`] / [`EncodeError`] for the request and response
//! codecs, and [`NetError`] for the client. Mapping the broker's own failures onto Kafka codes
//! happens in `broker`, in one place; this file only names the codes.

use std::io;

use kafka_protocol::messages::ApiKey;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal, $retriable:literal; )*) => {
        /// A Kafka protocol error code, as carried in the `error_code` fields of responses.
        ///
        /// Only the codes Rill produces or must recognise are listed; [`ErrorCode::from_code`]
        /// returns `None` for the others. Numbers, names and retriability follow the Kafka
        /// protocol guide (and are cross-checked against `kafka_protocol::ResponseError` in the
        /// tests).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl ErrorCode {
            /// Every listed code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The wire value.
            pub const fn code(self) -> i16 {
                self as i16
            }

            /// The Kafka name, e.g. `"UNKNOWN_TOPIC_OR_PARTITION"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $name, )*
                }
            }

            /// Whether Kafka clients treat this error as retriable (a subclass of
            /// `RetriableException` in the Java client).
            pub const fn is_retriable(self) -> bool {
                match self {
                    $( ErrorCode::$variant => $retriable, )*
                }
            }

            /// The code for a wire value, or `None` when the value is not one Rill knows.
            pub const fn from_code(code: i16) -> Option<ErrorCode> {
                match code {
                    $( $code => Some(ErrorCode::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// The server experienced an unexpected error.
    UnknownServerError = -1, "UNKNOWN_SERVER_ERROR", false;
    /// No error.
    None = 0, "NONE", false;
    OffsetOutOfRange = 1, "OFFSET_OUT_OF_RANGE", false;
    CorruptMessage = 2, "CORRUPT_MESSAGE", true;
    UnknownTopicOrPartition = 3, "UNKNOWN_TOPIC_OR_PARTITION", true;
    InvalidFetchSize = 4, "INVALID_FETCH_SIZE", false;
    LeaderNotAvailable = 5, "LEADER_NOT_AVAILABLE", true;
    NotLeaderOrFollower = 6, "NOT_LEADER_OR_FOLLOWER", true;
    RequestTimedOut = 7, "REQUEST_TIMED_OUT", true;
    BrokerNotAvailable = 8, "BROKER_NOT_AVAILABLE", false;
    ReplicaNotAvailable = 9, "REPLICA_NOT_AVAILABLE", true;
    MessageTooLarge = 10, "MESSAGE_TOO_LARGE", false;
    OffsetMetadataTooLarge = 12, "OFFSET_METADATA_TOO_LARGE", false;
    NetworkException = 13, "NETWORK_EXCEPTION", true;
    CoordinatorLoadInProgress = 14, "COORDINATOR_LOAD_IN_PROGRESS", true;
    CoordinatorNotAvailable = 15, "COORDINATOR_NOT_AVAILABLE", true;
    NotCoordinator = 16, "NOT_COORDINATOR", true;
    InvalidTopicException = 17, "INVALID_TOPIC_EXCEPTION", false;
    RecordListTooLarge = 18, "RECORD_LIST_TOO_LARGE", false;
    NotEnoughReplicas = 19, "NOT_ENOUGH_REPLICAS", true;
    NotEnoughReplicasAfterAppend = 20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", true;
    InvalidRequiredAcks = 21, "INVALID_REQUIRED_ACKS", false;
    IllegalGeneration = 22, "ILLEGAL_GENERATION", false;
    InconsistentGroupProtocol = 23, "INCONSISTENT_GROUP_PROTOCOL", false;
    InvalidGroupId = 24, "INVALID_GROUP_ID", false;
    UnknownMemberId = 25, "UNKNOWN_MEMBER_ID", false;
    InvalidSessionTimeout = 26, "INVALID_SESSION_TIMEOUT", false;
    RebalanceInProgress = 27, "REBALANCE_IN_PROGRESS", false;
    InvalidCommitOffsetSize = 28, "INVALID_COMMIT_OFFSET_SIZE", false;
    TopicAuthorizationFailed = 29, "TOPIC_AUTHORIZATION_FAILED", false;
    GroupAuthorizationFailed = 30, "GROUP_AUTHORIZATION_FAILED", false;
    ClusterAuthorizationFailed = 31, "CLUSTER_AUTHORIZATION_FAILED", false;
    InvalidTimestamp = 32, "INVALID_TIMESTAMP", false;
    UnsupportedSaslMechanism = 33, "UNSUPPORTED_SASL_MECHANISM", false;
    IllegalSaslState = 34, "ILLEGAL_SASL_STATE", false;
    UnsupportedVersion = 35, "UNSUPPORTED_VERSION", false;
    TopicAlreadyExists = 36, "TOPIC_ALREADY_EXISTS", false;
    InvalidPartitions = 37, "INVALID_PARTITIONS", false;
    InvalidReplicationFactor = 38, "INVALID_REPLICATION_FACTOR", false;
    InvalidReplicaAssignment = 39, "INVALID_REPLICA_ASSIGNMENT", false;
    InvalidConfig = 40, "INVALID_CONFIG", false;
    NotController = 41, "NOT_CONTROLLER", true;
    InvalidRequest = 42, "INVALID_REQUEST", false;
    UnsupportedForMessageFormat = 43, "UNSUPPORTED_FOR_MESSAGE_FORMAT", false;
    PolicyViolation = 44, "POLICY_VIOLATION", false;
    OutOfOrderSequenceNumber = 45, "OUT_OF_ORDER_SEQUENCE_NUMBER", false;
    DuplicateSequenceNumber = 46, "DUPLICATE_SEQUENCE_NUMBER", false;
    InvalidProducerEpoch = 47, "INVALID_PRODUCER_EPOCH", false;
    InvalidTxnState = 48, "INVALID_TXN_STATE", false;
    /// A transactional id unknown to its coordinator, or mapped to another producer id.
    InvalidProducerIdMapping = 49, "INVALID_PRODUCER_ID_MAPPING", false;
    /// A transaction timeout above the coordinator's `transaction.max.timeout.ms`.
    InvalidTransactionTimeout = 50, "INVALID_TRANSACTION_TIMEOUT", false;
    /// The producer's previous transaction is still being completed: retry.
    ConcurrentTransactions = 51, "CONCURRENT_TRANSACTIONS", true;
    /// A marker of a transaction coordinator older than the one the partition knows.
    TransactionCoordinatorFenced = 52, "TRANSACTION_COORDINATOR_FENCED", false;
    TransactionalIdAuthorizationFailed = 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", false;
    /// The broker has no authorizer: ACLs cannot be listed, created or deleted.
    SecurityDisabled = 54, "SECURITY_DISABLED", false;
    OperationNotAttempted = 55, "OPERATION_NOT_ATTEMPTED", false;
    KafkaStorageError = 56, "KAFKA_STORAGE_ERROR", true;
    /// A log directory was asked for that the broker does not have.
    LogDirNotFound = 57, "LOG_DIR_NOT_FOUND", false;
    UnknownProducerId = 59, "UNKNOWN_PRODUCER_ID", false;
    /// A partition reassignment is already running for this partition.
    ReassignmentInProgress = 60, "REASSIGNMENT_IN_PROGRESS", false;
    NonEmptyGroup = 68, "NON_EMPTY_GROUP", false;
    GroupIdNotFound = 69, "GROUP_ID_NOT_FOUND", false;
    FetchSessionIdNotFound = 70, "FETCH_SESSION_ID_NOT_FOUND", true;
    InvalidFetchSessionEpoch = 71, "INVALID_FETCH_SESSION_EPOCH", true;
    TopicDeletionDisabled = 73, "TOPIC_DELETION_DISABLED", false;
    FencedLeaderEpoch = 74, "FENCED_LEADER_EPOCH", true;
    UnknownLeaderEpoch = 75, "UNKNOWN_LEADER_EPOCH", true;
    UnsupportedCompressionType = 76, "UNSUPPORTED_COMPRESSION_TYPE", false;
    OffsetNotAvailable = 78, "OFFSET_NOT_AVAILABLE", true;
    MemberIdRequired = 79, "MEMBER_ID_REQUIRED", false;
    /// ElectLeaders: the preferred replica is not in the ISR or cannot lead.
    PreferredLeaderNotAvailable = 80, "PREFERRED_LEADER_NOT_AVAILABLE", true;
    GroupMaxSizeReached = 81, "GROUP_MAX_SIZE_REACHED", false;
    FencedInstanceId = 82, "FENCED_INSTANCE_ID", false;
    /// ElectLeaders: no replica may lead (none alive, or unclean elections are off and no
    /// in-sync replica is alive).
    EligibleLeadersNotAvailable = 83, "ELIGIBLE_LEADERS_NOT_AVAILABLE", true;
    /// ElectLeaders: the preferred (or, for unclean, a live) replica already leads.
    ElectionNotNeeded = 84, "ELECTION_NOT_NEEDED", true;
    /// Cancelling a partition reassignment that is not running.
    NoReassignmentInProgress = 85, "NO_REASSIGNMENT_IN_PROGRESS", false;
    GroupSubscribedToTopic = 86, "GROUP_SUBSCRIBED_TO_TOPIC", false;
    InvalidRecord = 87, "INVALID_RECORD", false;
    UnstableOffsetCommit = 88, "UNSTABLE_OFFSET_COMMIT", true;
    ThrottlingQuotaExceeded = 89, "THROTTLING_QUOTA_EXCEEDED", true;
    ProducerFenced = 90, "PRODUCER_FENCED", false;
    ResourceNotFound = 91, "RESOURCE_NOT_FOUND", false;
    DuplicateResource = 92, "DUPLICATE_RESOURCE", false;
    UnknownTopicId = 100, "UNKNOWN_TOPIC_ID", true;
    BrokerIdNotRegistered = 102, "BROKER_ID_NOT_REGISTERED", false;
    InconsistentTopicId = 103, "INCONSISTENT_TOPIC_ID", true;
    InconsistentClusterId = 104, "INCONSISTENT_CLUSTER_ID", false;
    /// DescribeTransactions: no transaction has this id.
    TransactionalIdNotFound = 105, "TRANSACTIONAL_ID_NOT_FOUND", false;
    FetchSessionTopicIdError = 106, "FETCH_SESSION_TOPIC_ID_ERROR", true;
    FencedMemberEpoch = 110, "FENCED_MEMBER_EPOCH", false;
    UnreleasedInstanceId = 111, "UNRELEASED_INSTANCE_ID", false;
    UnsupportedAssignor = 112, "UNSUPPORTED_ASSIGNOR", false;
    StaleMemberEpoch = 113, "STALE_MEMBER_EPOCH", false;
    TransactionAbortable = 120, "TRANSACTION_ABORTABLE", false;
    /// A regular expression in a request does not compile (ListTransactions' id pattern).
    InvalidRegularExpression = 128, "INVALID_REGULAR_EXPRESSION", false;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl From<ErrorCode> for i16 {
    fn from(code: ErrorCode) -> i16 {
        code.code()
    }
}

/// Why a frame could not be read. Every variant means the connection's byte stream can no
/// longer be trusted to be in step, so the caller closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix was negative.
    #[error("frame length {length} is negative")]
    NegativeLength {
        /// The length prefix as sent.
        length: i32,
    },
    /// The length prefix exceeds the configured limit.
    #[error("frame length {length} exceeds frame_bytes_max {frame_bytes_max}")]
    TooLarge {
        /// The length prefix as sent.
        length: usize,
        /// The configured limit.
        frame_bytes_max: usize,
    },
    /// The frame cannot even hold a request header (api key, version, correlation id,
    /// client id length).
    #[error("frame length {length} is below the {frame_bytes_min}-byte minimum")]
    TooSmall {
        /// The length prefix as sent.
        length: usize,
        /// The smallest acceptable frame.
        frame_bytes_min: usize,
    },
    /// The peer closed the stream in the middle of a frame.
    #[error("stream closed mid-frame: {buffered_bytes} of {expected_bytes} bytes buffered")]
    TruncatedFrame {
        /// Bytes of this frame (prefix included) received before EOF.
        buffered_bytes: usize,
        /// Bytes the frame needed (prefix included), or 4 if the prefix was incomplete.
        expected_bytes: usize,
    },
    /// Reading or writing the stream failed.
    #[error("frame i/o: {0}")]
    Io(#[from] io::Error),
}

/// Why a request frame could not be turned into a [`crate::codec::Request`].
///
/// Whenever the fixed part of the header (api key, api version, correlation id) was readable,
/// the variant carries it, so the broker can still answer with the right correlation id.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame is shorter than the fixed header; there is nothing to answer.
    #[error("request of {frame_bytes} bytes is too short for a header")]
    TruncatedHeader {
        /// Size of the frame payload.
        frame_bytes: usize,
    },
    /// The api key is not one Kafka defines (or Rill does not serve it). Kafka closes the
    /// connection in this case.
    #[error("unknown api key {api_key} (version {api_version}, correlation id {correlation_id})")]
    UnknownApiKey {
        /// The api key as sent.
        api_key: i16,
        /// The api version as sent.
        api_version: i16,
        /// The correlation id as sent.
        correlation_id: i32,
    },
    /// The api is served but not at this version: answer UNSUPPORTED_VERSION (for ApiVersions,
    /// with [`crate::header::unsupported_api_versions_response`]).
    #[error("unsupported version {api_version} of {api_key:?} (correlation id {correlation_id})")]
    UnsupportedVersion {
        /// The api.
        api_key: ApiKey,
        /// The version as sent.
        api_version: i16,
        /// The correlation id as sent.
        correlation_id: i32,
    },
    /// The header or body does not parse at a supported version.
    #[error(
        "malformed {api_key:?} v{api_version} request (correlation id {correlation_id}): {reason}"
    )]
    Malformed {
        /// The api.
        api_key: ApiKey,
        /// The version as sent.
        api_version: i16,
        /// The correlation id as sent.
        correlation_id: i32,
        /// What failed, for the log.
        reason: String,
    },
}

impl DecodeError {
    /// The correlation id, when the fixed header was readable.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            DecodeError::TruncatedHeader { .. } => None,
            DecodeError::UnknownApiKey { correlation_id, .. }
            | DecodeError::UnsupportedVersion { correlation_id, .. }
            | DecodeError::Malformed { correlation_id, .. } => Some(*correlation_id),
        }
    }

    /// The api key and version, when the api key is known.
    pub fn api(&self) -> Option<(ApiKey, i16)> {
        match self {
            DecodeError::UnsupportedVersion {
                api_key,
                api_version,
                ..
            }
            | DecodeError::Malformed {
                api_key,
                api_version,
                ..
            } => Some((*api_key, *api_version)),
            _ => None,
        }
    }

    /// The Kafka error code to answer with, when the request can be answered at all.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::UnsupportedVersion { .. } | DecodeError::UnknownApiKey { .. } => {
                ErrorCode::UnsupportedVersion
            }
            DecodeError::TruncatedHeader { .. } | DecodeError::Malformed { .. } => {
                ErrorCode::InvalidRequest
            }
        }
    }
}

/// Why a message could not be encoded (a field too long for its length prefix, or a version
/// the message type does not have). These are bugs in the caller, not client input.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {what} v{api_version}: {reason}")]
pub struct EncodeError {
    /// What was being encoded (api name or "header").
    pub what: &'static str,
    /// The version it was encoded at.
    pub api_version: i16,
    /// What failed.
    pub reason: String,
}

/// Client-side failures ([`crate::client`]).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Framing or the stream failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A request could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The broker closed the connection while a response was outstanding.
    #[error("connection closed with {inflight_requests} request(s) unanswered")]
    Closed {
        /// Requests sent but not answered.
        inflight_requests: usize,
    },
    /// The response's correlation id is not the one expected next (Kafka answers in order).
    #[error("response correlation id {actual}, expected {expected}")]
    CorrelationMismatch {
        /// The id of the oldest outstanding request.
        expected: i32,
        /// The id in the response.
        actual: i32,
    },
    /// `send` was called while pipelined responses are still unread.
    #[error("{inflight_requests} pipelined response(s) must be read before a round trip")]
    ResponsesPending {
        /// Requests sent but not answered.
        inflight_requests: usize,
    },
    /// `recv` was called with nothing outstanding.
    #[error("no request is awaiting a response")]
    NothingInflight,
    /// The pipeline is full.
    #[error("{inflight_requests_max} requests already in flight")]
    TooManyInflight {
        /// The configured limit.
        inflight_requests_max: usize,
    },
    /// The response was for a different api than the caller expected.
    #[error("response for {actual:?} when {expected:?} was expected")]
    ApiMismatch {
        /// The api the caller asked to decode.
        expected: ApiKey,
        /// The api the request was sent for.
        actual: ApiKey,
    },
    /// The response body does not parse.
    #[error("malformed {api_key:?} v{api_version} response: {reason}")]
    MalformedResponse {
        /// The api.
        api_key: ApiKey,
        /// The version.
        api_version: i16,
        /// What failed.
        reason: String,
    },
    /// The broker does not support any version of the api that this client speaks.
    #[error("broker supports no common version of {api_key:?}")]
    NoCommonVersion {
        /// The api.
        api_key: ApiKey,
    },
    /// The broker answered with an error code.
    #[error("broker error {code} on {api_key:?}")]
    Broker {
        /// The api.
        api_key: ApiKey,
        /// The raw code (may be one [`ErrorCode`] does not list).
        code: i16,
    },
    /// Record batch bytes could not be built or parsed.
    #[error("record batch: {reason}")]
    Records {
        /// What failed.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::ResponseError;

    #[test]
    fn codes_names_and_retriability_match_kafka_protocol() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
            if code == ErrorCode::None {
                assert!(ResponseError::try_from_code(0).is_none());
                continue;
            }
            let theirs = ResponseError::try_from_code(code.code())
                .unwrap_or_else(|| panic!("{} unknown to kafka-protocol", code.name()));
            assert_eq!(theirs.code(), code.code(), "{}", code.name());
            // Where kafka-protocol's table differs from Kafka's own exception classes,
            // Kafka's classes win (kafka-clients 4.4.0: ConcurrentTransactionsException
            // extends RetriableException; kafka-protocol 0.18 calls it not retriable).
            let kafka_differs = [ErrorCode::ConcurrentTransactions];
            assert_eq!(
                theirs.is_retriable() != kafka_differs.contains(&code),
                code.is_retriable(),
                "retriable flag of {}",
                code.name()
            );
            // Kafka's names are the SCREAMING_SNAKE form of kafka-protocol's variant names.
            let debug = format!("{theirs:?}");
            let mut snake = String::new();
            for (i, ch) in debug.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(ch.to_ascii_uppercase());
            }
            assert_eq!(snake, code.name());
        }
    }

    #[test]
    fn unknown_codes_are_none() {
        assert_eq!(ErrorCode::from_code(11), None);
        assert_eq!(ErrorCode::from_code(i16::MAX), None);
        assert_eq!(ErrorCode::from_code(-2), None);
    }

    #[test]
    fn display_names_the_code() {
        assert_eq!(
            ErrorCode::UnknownTopicOrPartition.to_string(),
            "UNKNOWN_TOPIC_OR_PARTITION (3)"
        );
    }
}
