//! Wire layout of the admin and introspection requests (ACLs, log dirs, leader elections,
//! producers, transactions, topic partitions), as the precheck walks them. Kept apart from
//! `schema.rs` (the data and group apis) only for file size; the same rules apply: shape
//! only, transcribed from the Kafka message definitions, checked against kafka-protocol by
//! `tests/request_roundtrip.rs` and the layout test in `precheck.rs`.

use super::{Field, Message, Ty, MAX};

/// One ACL filter or creation: resource type, name, pattern type (v1+), principal, host,
/// operation, permission type (DescribeAcls' body, and each element of CreateAcls /
/// DeleteAcls).
const ACL_FIELDS: &[Field] = &[
    Field::inline(Ty::Fixed(1), 0, MAX),
    Field::inline(Ty::Str, 0, MAX),
    Field::inline(Ty::Fixed(1), 1, MAX),
    Field::inline(Ty::Str, 0, MAX),
    Field::inline(Ty::Str, 0, MAX),
    Field::inline(Ty::Fixed(1), 0, MAX),
    Field::inline(Ty::Fixed(1), 0, MAX),
];

/// A topic and some of its partitions: name, `[]int32` (DescribeLogDirs, ElectLeaders,
/// DescribeProducers, and the transaction apis of `schema_txn`).
pub(super) const TOPIC_PARTITIONS: Ty = Ty::Array(&Ty::Struct(&[
    Field::inline(Ty::Str, 0, MAX),
    Field::inline(Ty::Array(&Ty::Fixed(4)), 0, MAX),
]));

/// DescribeAcls request (api key 29).
pub(crate) static DESCRIBE_ACLS: Message = Message {
    api_key: 29,
    version_max: 3,
    flexible_min: 2,
    fields: ACL_FIELDS,
};

/// CreateAcls request (api key 30).
pub(crate) static CREATE_ACLS: Message = Message {
    api_key: 30,
    version_max: 3,
    flexible_min: 2,
    fields: &[Field::inline(Ty::Array(&Ty::Struct(ACL_FIELDS)), 0, MAX)],
};

/// DeleteAcls request (api key 31).
pub(crate) static DELETE_ACLS: Message = Message {
    api_key: 31,
    version_max: 3,
    flexible_min: 2,
    fields: &[Field::inline(Ty::Array(&Ty::Struct(ACL_FIELDS)), 0, MAX)],
};

/// DescribeLogDirs request (api key 35).
pub(crate) static DESCRIBE_LOG_DIRS: Message = Message {
    api_key: 35,
    version_max: 4,
    flexible_min: 2,
    fields: &[Field::inline(TOPIC_PARTITIONS, 0, MAX)],
};

/// ElectLeaders request (api key 43).
pub(crate) static ELECT_LEADERS: Message = Message {
    api_key: 43,
    version_max: 2,
    flexible_min: 2,
    fields: &[
        Field::inline(Ty::Fixed(1), 1, MAX),
        Field::inline(TOPIC_PARTITIONS, 0, MAX),
        Field::inline(Ty::Fixed(4), 0, MAX),
    ],
};

/// DescribeProducers request (api key 61).
pub(crate) static DESCRIBE_PRODUCERS: Message = Message {
    api_key: 61,
    version_max: 0,
    flexible_min: 0,
    fields: &[Field::inline(TOPIC_PARTITIONS, 0, MAX)],
};

/// DescribeTransactions request (api key 65).
pub(crate) static DESCRIBE_TRANSACTIONS: Message = Message {
    api_key: 65,
    version_max: 0,
    flexible_min: 0,
    fields: &[Field::inline(Ty::Array(&Ty::Str), 0, MAX)],
};

/// ListTransactions request (api key 66).
pub(crate) static LIST_TRANSACTIONS: Message = Message {
    api_key: 66,
    version_max: 2,
    flexible_min: 0,
    fields: &[
        Field::inline(Ty::Array(&Ty::Str), 0, MAX),
        Field::inline(Ty::Array(&Ty::Fixed(8)), 0, MAX),
        Field::inline(Ty::Fixed(8), 1, MAX),
        Field::inline(Ty::Str, 2, MAX),
    ],
};

/// DescribeTopicPartitions request (api key 75).
pub(crate) static DESCRIBE_TOPIC_PARTITIONS: Message = Message {
    api_key: 75,
    version_max: 0,
    flexible_min: 0,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[Field::inline(Ty::Str, 0, MAX)])),
            0,
            MAX,
        ),
        Field::inline(Ty::Fixed(4), 0, MAX),
        Field::inline(
            Ty::NullableStruct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(Ty::Fixed(4), 0, MAX),
            ]),
            0,
            MAX,
        ),
    ],
};

/// The layout of `api_key`'s request among the apis of this file.
pub(crate) fn message(api_key: i16) -> Option<&'static Message> {
    Some(match api_key {
        29 => &DESCRIBE_ACLS,
        30 => &CREATE_ACLS,
        31 => &DELETE_ACLS,
        35 => &DESCRIBE_LOG_DIRS,
        43 => &ELECT_LEADERS,
        61 => &DESCRIBE_PRODUCERS,
        65 => &DESCRIBE_TRANSACTIONS,
        66 => &LIST_TRANSACTIONS,
        75 => &DESCRIBE_TOPIC_PARTITIONS,
        _ => return None,
    })
}
