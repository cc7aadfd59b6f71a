//! Wire layout of the transaction requests (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
//! WriteTxnMarkers, TxnOffsetCommit), as the precheck walks them. Same rules as `schema.rs`:
//! shape only, transcribed from the Kafka message definitions, checked against
//! kafka-protocol by `tests/request_roundtrip.rs` and the layout test in `precheck.rs`.

use super::schema_admin::TOPIC_PARTITIONS;
use super::{Field, Message, Ty, MAX};

/// AddPartitionsToTxn request (api key 24): v0-3 one transaction from its producer; v4+
/// (KIP-890) a batch of transactions, sent between brokers.
pub(crate) static ADD_PARTITIONS_TO_TXN: Message = Message {
    api_key: 24,
    version_max: 5,
    flexible_min: 3,
    fields: &[
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 4, MAX),
                Field::inline(Ty::Fixed(8), 4, MAX),
                Field::inline(Ty::Fixed(2), 4, MAX),
                Field::inline(Ty::Fixed(1), 4, MAX),
                Field::inline(TOPIC_PARTITIONS, 4, MAX),
            ])),
            4,
            MAX,
        ),
        Field::inline(Ty::Str, 0, 3),
        Field::inline(Ty::Fixed(8), 0, 3),
        Field::inline(Ty::Fixed(2), 0, 3),
        Field::inline(TOPIC_PARTITIONS, 0, 3),
    ],
};

/// AddOffsetsToTxn request (api key 25).
pub(crate) static ADD_OFFSETS_TO_TXN: Message = Message {
    api_key: 25,
    version_max: 4,
    flexible_min: 3,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(8), 0, MAX),
        Field::inline(Ty::Fixed(2), 0, MAX),
        Field::inline(Ty::Str, 0, MAX),
    ],
};

/// EndTxn request (api key 26).
pub(crate) static END_TXN: Message = Message {
    api_key: 26,
    version_max: 5,
    flexible_min: 3,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(8), 0, MAX),
        Field::inline(Ty::Fixed(2), 0, MAX),
        Field::inline(Ty::Fixed(1), 0, MAX),
    ],
};

/// WriteTxnMarkers request (api key 27): v1 (flexible) is the only version left in Kafka 4;
/// v2 adds the transaction version, which kafka-protocol 0.18 does not have.
pub(crate) static WRITE_TXN_MARKERS: Message = Message {
    api_key: 27,
    version_max: 1,
    flexible_min: 1,
    fields: &[Field::inline(
        Ty::Array(&Ty::Struct(&[
            Field::inline(Ty::Fixed(8), 0, MAX),
            Field::inline(Ty::Fixed(2), 0, MAX),
            Field::inline(Ty::Fixed(1), 0, MAX),
            Field::inline(TOPIC_PARTITIONS, 0, MAX),
            Field::inline(Ty::Fixed(4), 0, MAX),
        ])),
        0,
        MAX,
    )],
};

/// TxnOffsetCommit request (api key 28).
pub(crate) static TXN_OFFSET_COMMIT: Message = Message {
    api_key: 28,
    version_max: 5,
    flexible_min: 3,
    fields: &[
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Str, 0, MAX),
        Field::inline(Ty::Fixed(8), 0, MAX),
        Field::inline(Ty::Fixed(2), 0, MAX),
        Field::inline(Ty::Fixed(4), 3, MAX),
        Field::inline(Ty::Str, 3, MAX),
        Field::inline(Ty::Str, 3, MAX),
        Field::inline(
            Ty::Array(&Ty::Struct(&[
                Field::inline(Ty::Str, 0, MAX),
                Field::inline(
                    Ty::Array(&Ty::Struct(&[
                        Field::inline(Ty::Fixed(4), 0, MAX),
                        Field::inline(Ty::Fixed(8), 0, MAX),
                        Field::inline(Ty::Fixed(4), 2, MAX),
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

/// The layout of `api_key`'s request among the apis of this file.
pub(crate) fn message(api_key: i16) -> Option<&'static Message> {
    Some(match api_key {
        24 => &ADD_PARTITIONS_TO_TXN,
        25 => &ADD_OFFSETS_TO_TXN,
        26 => &END_TXN,
        27 => &WRITE_TXN_MARKERS,
        28 => &TXN_OFFSET_COMMIT,
        _ => return None,
    })
}
