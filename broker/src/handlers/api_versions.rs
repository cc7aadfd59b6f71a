//! ApiVersions: the apis and versions this broker serves, and the features (KIP-584) it
//! supports and has finalized, as a Kafka 4.x broker reports them.
//!
//! Features say which cluster-wide protocol levels are on. Rill reports `metadata.version`
//! (the Kafka 4.0 level whose apis it serves), `group.version` 1 (KIP-848 consumer groups
//! are served) and `transaction.version` up to 2 (KIP-890 transactions v2), finalized at
//! the broker's `transaction_version`. Kafka omits features whose lowest version is 0 from
//! v0-v3 responses (their parsers reject a 0 minimum, KAFKA-17011); v4 lists them. Finalized
//! features at level 0 are not listed, as in Kafka.

use std::rc::Rc;

use rill_net::codec::api_versions_response;
use rill_net::kafka_protocol::messages::api_versions_response::{
    FinalizedFeatureKey, SupportedFeatureKey,
};
use rill_net::kafka_protocol::messages::ApiVersionsResponse;

use super::{api_table, s};
use crate::shard::Shard;

/// `metadata.version` 4.0-IV3, the Kafka 4.0 production level.
pub const METADATA_VERSION_LEVEL: i16 = 25;
/// `metadata.version` 3.3-IV3, the lowest level Kafka 4.x supports.
const METADATA_VERSION_MIN: i16 = 7;

const TRANSACTION_VERSION: &str = "transaction.version";

/// A feature: name, the versions this broker supports, the level finalized cluster-wide.
struct Feature {
    name: &'static str,
    min: i16,
    max: i16,
    finalized: i16,
}

const FEATURES: &[Feature] = &[
    Feature {
        name: "metadata.version",
        min: METADATA_VERSION_MIN,
        max: METADATA_VERSION_LEVEL,
        finalized: METADATA_VERSION_LEVEL,
    },
    Feature {
        name: "group.version",
        min: 0,
        max: 1,
        finalized: 1,
    },
    Feature {
        name: TRANSACTION_VERSION,
        min: 0,
        max: 2,
        // The broker's `transaction_version` (see `finalized`).
        finalized: 2,
    },
];

/// The answer at version `v`: the api table, and from v3 the features (none that v3 cannot
/// carry; no tagged field at its default value, which older librdkafka fails to parse).
pub fn api_versions(shard: &Rc<Shard>, v: i16) -> ApiVersionsResponse {
    let response = api_versions_response(&api_table());
    if v < 3 {
        return response;
    }
    let listed = |f: &&Feature| v >= 4 || f.min > 0;
    let supported = FEATURES
        .iter()
        .filter(listed)
        .map(|f| {
            SupportedFeatureKey::default()
                .with_name(s(f.name))
                .with_min_version(f.min)
                .with_max_version(f.max)
        })
        .collect();
    let level = |f: &Feature| {
        if f.name == TRANSACTION_VERSION {
            shard.config().transaction_version
        } else {
            f.finalized
        }
    };
    let finalized = FEATURES
        .iter()
        .filter(listed)
        .filter(|f| level(f) > 0)
        .map(|f| {
            FinalizedFeatureKey::default()
                .with_name(s(f.name))
                .with_min_version_level(level(f))
                .with_max_version_level(level(f))
        })
        .collect();
    // The epoch of the finalized levels: they never change, so any version of the image
    // they are read with will do (Kafka uses its metadata log offset).
    let epoch = i64::try_from(shard.image().version).unwrap_or(i64::MAX);
    response
        .with_supported_features(supported)
        .with_finalized_features_epoch(epoch)
        .with_finalized_features(finalized)
}
