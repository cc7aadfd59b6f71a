//! Wire layout of the request bodies Rill decodes, as the precheck walks them: which fields
//! each api version has, in order, and which are tagged. Transcribed from the Kafka protocol
//! message definitions (only the shape; names, defaults and nullability do not matter to the
//! walk). `tests/request_roundtrip.rs` checks every supported version against kafka-protocol's
//! own encoding, so an entry that drifts from the real layout fails there.

use super::{Field, Message, Ty, FLEX_NONE, MAX};

/// Produce request (api key 0).
pub(crate) static PRODUCE: Message = Message {
    api_key: 0,
    version_max: 12,
    flexible_min: 9,
    fields: &[
        Field::inline(Ty::Str, 3, MAX),
        Field::inline(Ty::Fixed(2), 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Bytes, 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
    ],
};

/// Fetch request (api key 1).
pub(crate) static FETCH: Message = Message {
    api_key: 1,
    version_max: 17,
    flexible_min: 12,
    fields: &[
        Field::tagged(Ty::Str, 12, MAX, 0, 12, MAX),
        Field::inline(Ty::Fixed(4), 0, 14),
        Field::tagged(
            Ty::Struct(&[
                Field::inline(Ty::Fixed(4), 15, MAX),
                Field::inline(Ty::Fixed(8), 15, MAX),
            ]),
            15,
            MAX,
            1,
            15,
            MAX,
        ),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Fixed(4), 3, MAX),
        Field::inline(Ty::Fixed(1), 4, MAX),
        Field::inline(Ty::Fixed(4), 7, MAX),
        Field::inline(Ty::Fixed(4), 7, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, 12),
                Field::inline(Ty::Fixed(16), 13, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Fixed(4), 9, MAX),
                        Field::inline(Ty::Fixed(8), 0, MAX),
                        Field::inline(Ty::Fixed(4), 12, MAX),
                        Field::inline(Ty::Fixed(8), 5, MAX),
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::tagged(Ty::Fixed(16), 17, MAX, 0, 17, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 7, 12),
                Field::inline(Ty::Fixed(16), 13, MAX),
                Field::inline(Ty::Array(&Ty::Fixed(4)), 7, MAX),
            ])),
            7,
            MAX,
        ),
        Field::inline(Ty::Str, 11, MAX),
    ],
};

/// ListOffsets request (api key 2).
pub(crate) static LIST_OFFSETS: Message = Message {
    api_key: 2,
    version_max: 10,
    flexible_min: 6,
    fields: &[
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Fixed(1), 2, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Fixed(4), 4, MAX),
                        Field::inline(Ty::Fixed(8), 0, MAX),
                        Field::inline(Ty::Fixed(4), 0, 0),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(4), 10, MAX),
    ],
};

/// OffsetForLeaderEpoch request (api key 23).
pub(crate) static OFFSET_FOR_LEADER_EPOCH: Message = Message {
    api_key: 23,
    version_max: 4,
    flexible_min: 4,
    fields: &[
        Field::inline(Ty::Fixed(4), 3, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Fixed(4), 2, MAX),
                        Field::inline(Ty::Fixed(4), 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
    ],
};

/// Metadata request (api key 3).
pub(crate) static METADATA: Message = Message {
    api_key: 3,
    version_max: 12,
    flexible_min: 9,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Fixed(16), 10, MAX),
                Field::inline(Ty::Str, 0, MAX),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(1), 4, MAX),
        Field::inline(Ty::Fixed(1), 8, 10),
        Field::inline(Ty::Fixed(1), 8, MAX),
    ],
};

/// OffsetCommit request (api key 8).
pub(crate) static OFFSET_COMMIT: Message = Message {
    api_key: 8,
    version_max: 9,
    flexible_min: 8,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(4), 1, MAX),
        Field::inline(Ty::Str, 1, MAX),
        Field::inline(Ty::Str, 7, MAX),
        Field::inline(Ty::Fixed(8), 2, 4),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Fixed(8), 0, MAX),
                        Field::inline(Ty::Fixed(4), 6, MAX),
                        Field::inline(Ty::Fixed(8), 1, 1),
                        Field::inline(Ty::Str, 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
    ],
};

/// OffsetFetch request (api key 9).
pub(crate) static OFFSET_FETCH: Message = Message {
    api_key: 9,
    version_max: 9,
    flexible_min: 6,
    fields: &[
        Field::inline(Ty::Str, 0, 7),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, 7),
                Field::inline(Ty::Array(&Ty::Fixed(4)), 0, 7),
            ])),
            0,
            7,
        ),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 8, MAX),
                Field::inline(Ty::Str, 9, MAX),
                Field::inline(Ty::Fixed(4), 9, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Str, 8, MAX),
                        Field::inline(Ty::Array(&Ty::Fixed(4)), 8, MAX),
                    ])),
                    8,
                    MAX,
                ),
            ])),
            8,
            MAX,
        ),
        Field::inline(Ty::Fixed(1), 7, MAX),
    ],
};

/// FindCoordinator request (api key 10).
pub(crate) static FIND_COORDINATOR: Message = Message {
    api_key: 10,
    version_max: 6,
    flexible_min: 3,
    fields: &[
        Field::inline(Ty::Str, 0, 3),
        Field::inline(Ty::Fixed(1), 1, MAX),
        Field::inline(Ty::Array(&Ty::Str), 4, MAX),
    ],
};

/// JoinGroup request (api key 11).
pub(crate) static JOIN_GROUP: Message = Message {
    api_key: 11,
    version_max: 9,
    flexible_min: 6,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Fixed(4), 1, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Str, 5, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(Ty::Bytes, 0, MAX),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Str, 8, MAX),
    ],
};

/// Heartbeat request (api key 12).
pub(crate) static HEARTBEAT: Message = Message {
    api_key: 12,
    version_max: 4,
    flexible_min: 4,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Str, 3, MAX),
    ],
};

/// LeaveGroup request (api key 13).
pub(crate) static LEAVE_GROUP: Message = Message {
    api_key: 13,
    version_max: 5,
    flexible_min: 4,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Str, 0, 2),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 3, MAX),
                Field::inline(Ty::Str, 3, MAX),
                Field::inline(Ty::Str, 5, MAX),
            ])),
            3,
            MAX,
        ),
    ],
};

/// SyncGroup request (api key 14).
pub(crate) static SYNC_GROUP: Message = Message {
    api_key: 14,
    version_max: 5,
    flexible_min: 4,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Str, 3, MAX),
        Field::inline(Ty::Str, 5, MAX),
        Field::inline(Ty::Str, 5, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(Ty::Bytes, 0, MAX),
            ])),
            0,
            MAX,
        ),
    ],
};

/// DescribeGroups request (api key 15).
pub(crate) static DESCRIBE_GROUPS: Message = Message {
    api_key: 15,
    version_max: 5,
    flexible_min: 5,
    fields: &[
        Field::inline(Ty::Array(&Ty::Str), 0, MAX),
        Field::inline(Ty::Fixed(1), 3, MAX),
    ],
};

/// ListGroups request (api key 16).
pub(crate) static LIST_GROUPS: Message = Message {
    api_key: 16,
    version_max: 5,
    flexible_min: 3,
    fields: &[
        Field::inline(Ty::Array(&Ty::Str), 4, MAX),
        Field::inline(Ty::Array(&Ty::Str), 5, MAX),
    ],
};

/// ApiVersions request (api key 18).
pub(crate) static API_VERSIONS: Message = Message {
    api_key: 18,
    version_max: 4,
    flexible_min: 3,
    fields: &[
        Field::inline(Ty::Str, 3, MAX),
        Field::inline(Ty::Str, 3, MAX),
    ],
};

/// CreateTopics request (api key 19).
pub(crate) static CREATE_TOPICS: Message = Message {
    api_key: 19,
    version_max: 7,
    flexible_min: 5,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(Ty::Fixed(4), 0, MAX),
                Field::inline(Ty::Fixed(2), 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Array(&Ty::Fixed(4)), 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Str, 0, MAX),
                        Field::inline(Ty::Str, 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Fixed(1), 1, MAX),
    ],
};

/// DeleteTopics request (api key 20).
pub(crate) static DELETE_TOPICS: Message = Message {
    api_key: 20,
    version_max: 6,
    flexible_min: 4,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 6, MAX),
                Field::inline(Ty::Fixed(16), 6, MAX),
            ])),
            6,
            MAX,
        ),
        Field::inline(Ty::Array(&Ty::Str), 0, 5),
        Field::inline(Ty::Fixed(4), 0, MAX),
    ],
};

/// DeleteRecords request (api key 21).
pub(crate) static DELETE_RECORDS: Message = Message {
    api_key: 21,
    version_max: 2,
    flexible_min: 2,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Fixed(8), 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(4), 0, MAX),
    ],
};

/// InitProducerId request (api key 22).
pub(crate) static INIT_PRODUCER_ID: Message = Message {
    api_key: 22,
    version_max: 5,
    flexible_min: 2,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Fixed(8), 3, MAX),
        Field::inline(Ty::Fixed(2), 3, MAX),
    ],
};

/// DescribeConfigs request (api key 32).
pub(crate) static DESCRIBE_CONFIGS: Message = Message {
    api_key: 32,
    version_max: 4,
    flexible_min: 4,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Fixed(1), 0, MAX),
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(Ty::Array(&Ty::Str), 0, MAX),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(1), 1, MAX),
        Field::inline(Ty::Fixed(1), 3, MAX),
    ],
};

/// AlterConfigs request (api key 33).
pub(crate) static ALTER_CONFIGS: Message = Message {
    api_key: 33,
    version_max: 2,
    flexible_min: 2,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Fixed(1), 0, MAX),
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Str, 0, MAX),
                        Field::inline(Ty::Str, 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(1), 0, MAX),
    ],
};

/// CreatePartitions request (api key 37).
pub(crate) static CREATE_PARTITIONS: Message = Message {
    api_key: 37,
    version_max: 3,
    flexible_min: 2,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(Ty::Fixed(4), 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[Field::inline(
                        Ty::Array(&Ty::Fixed(4)),
                        0,
                        MAX,
                    )])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Fixed(1), 0, MAX),
    ],
};

/// DeleteGroups request (api key 42).
pub(crate) static DELETE_GROUPS: Message = Message {
    api_key: 42,
    version_max: 2,
    flexible_min: 2,
    fields: &[Field::inline(Ty::Array(&Ty::Str), 0, MAX)],
};

/// IncrementalAlterConfigs request (api key 44).
pub(crate) static INCREMENTAL_ALTER_CONFIGS: Message = Message {
    api_key: 44,
    version_max: 1,
    flexible_min: 1,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Fixed(1), 0, MAX),
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Str, 0, MAX),
                        Field::inline(Ty::Fixed(1), 0, MAX),
                        Field::inline(Ty::Str, 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(1), 0, MAX),
    ],
};

/// OffsetDelete request (api key 47).
pub(crate) static OFFSET_DELETE: Message = Message {
    api_key: 47,
    version_max: 0,
    flexible_min: FLEX_NONE,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[Field::inline(Ty::Fixed(4), 0, MAX)])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
    ],
};

/// AlterPartitionReassignments request (api key 45).
pub(crate) static ALTER_PARTITION_REASSIGNMENTS: Message = Message {
    api_key: 45,
    version_max: 1,
    flexible_min: 0,
    fields: &[
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Fixed(1), 1, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Array(&Ty::Fixed(4)), 0, MAX),
                    ])),
                    0,
                    MAX,
                ),
            ])),
            0,
            MAX,
        ),
    ],
};

/// ListPartitionReassignments request (api key 46).
pub(crate) static LIST_PARTITION_REASSIGNMENTS: Message = Message {
    api_key: 46,
    version_max: 0,
    flexible_min: 0,
    fields: &[
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(Ty::Array(&Ty::Fixed(4)), 0, MAX),
            ])),
            0,
            MAX,
        ),
    ],
};

/// DescribeCluster request (api key 60).
pub(crate) static DESCRIBE_CLUSTER: Message = Message {
    api_key: 60,
    version_max: 1,
    flexible_min: 0,
    fields: &[
        Field::inline(Ty::Fixed(1), 0, MAX),
        Field::inline(Ty::Fixed(1), 1, MAX),
    ],
};

/// UnregisterBroker request (api key 64).
pub(crate) static UNREGISTER_BROKER: Message = Message {
    api_key: 64,
    version_max: 0,
    flexible_min: 0,
    fields: &[Field::inline(Ty::Fixed(4), 0, MAX)],
};

/// ConsumerGroupHeartbeat request (api key 68).
pub(crate) static CONSUMER_GROUP_HEARTBEAT: Message = Message {
    api_key: 68,
    version_max: 1,
    flexible_min: 0,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(Ty::Array(&Ty::Str), 0, MAX),
        Field::inline(Ty::Str, 1, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Fixed(16), 0, MAX),
                Field::inline(Ty::Array(&Ty::Fixed(4)), 0, MAX),
            ])),
            0,
            MAX,
        ),
    ],
};

/// ConsumerGroupDescribe request (api key 69).
pub(crate) static CONSUMER_GROUP_DESCRIBE: Message = Message {
    api_key: 69,
    version_max: 1,
    flexible_min: 0,
    fields: &[
        Field::inline(Ty::Array(&Ty::Str), 0, MAX),
        Field::inline(Ty::Fixed(1), 0, MAX),
    ],
};

/// The layout of `api_key`'s request, if Rill decodes it.
pub(crate) fn message(api_key: i16) -> Option<&'static Message> {
    Some(match api_key {
        0 => &PRODUCE,
        1 => &FETCH,
        2 => &LIST_OFFSETS,
        3 => &METADATA,
        8 => &OFFSET_COMMIT,
        9 => &OFFSET_FETCH,
        10 => &FIND_COORDINATOR,
        11 => &JOIN_GROUP,
        12 => &HEARTBEAT,
        13 => &LEAVE_GROUP,
        14 => &SYNC_GROUP,
        15 => &DESCRIBE_GROUPS,
        16 => &LIST_GROUPS,
        18 => &API_VERSIONS,
        19 => &CREATE_TOPICS,
        20 => &DELETE_TOPICS,
        21 => &DELETE_RECORDS,
        22 => &INIT_PRODUCER_ID,
        23 => &OFFSET_FOR_LEADER_EPOCH,
        32 => &DESCRIBE_CONFIGS,
        33 => &ALTER_CONFIGS,
        37 => &CREATE_PARTITIONS,
        42 => &DELETE_GROUPS,
        44 => &INCREMENTAL_ALTER_CONFIGS,
        45 => &ALTER_PARTITION_REASSIGNMENTS,
        46 => &LIST_PARTITION_REASSIGNMENTS,
        47 => &OFFSET_DELETE,
        60 => &DESCRIBE_CLUSTER,
        64 => &UNREGISTER_BROKER,
        68 => &CONSUMER_GROUP_HEARTBEAT,
        69 => &CONSUMER_GROUP_DESCRIBE,
        _ => return None,
    })
}
