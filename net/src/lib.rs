//! `rill-net`: the Kafka wire protocol for Rill.
//!
//! What lives here: framing ([`frame`]), request and response headers ([`header`]), request
//! decoding and response encoding over the `kafka-protocol` crate ([`codec`]), Kafka error
//! codes and this crate's errors ([`error`]), the record batch codecs with bounded
//! decompression for the broker's recompression ([`compression`]), and a small
//! runtime-agnostic client for the CLI and the load generator ([`client`]). Nothing here
//! owns state shared between shards: the reader and client types belong to the one task
//! that drives their connection. The crate knows nothing of storage or of glommio; it runs
//! over any `futures_lite` stream.
//!
//! `kafka-protocol` is re-exported so the broker and tools use the exact message types this
//! crate decodes to.
//!
//! Layout (dependencies point down): `client` → `codec` (with `precheck`, which rejects
//! malformed requests before they are decoded, and `consumer_protocol`) → `header`, `frame`
//! → `error`; `compression` stands alone.

pub mod client;
pub mod codec;
pub mod compression;
pub mod consumer_protocol;
pub mod error;
pub mod frame;
pub mod header;
mod precheck;
pub mod rill_tags;

pub use kafka_protocol;

pub use codec::{
    decode_request, decode_request_with, encode_response, encode_response_pieces, ApiResponse,
    ApiVersionRange, Request, Response, SUPPORTED_VERSIONS,
};
pub use error::{DecodeError, EncodeError, ErrorCode, FrameError, NetError};
pub use frame::{decode_frame, write_pieces, FrameLimits, FrameReader};
