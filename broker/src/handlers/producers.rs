//! InitProducerId: idempotent producers get a fresh producer id (epoch 0) from this broker's
//! block; transactional ids need the transaction coordinator, which Rill does not have yet.

use std::rc::Rc;

use rill_net::kafka_protocol::messages::*;
use rill_net::ErrorCode;
use tracing::warn;

use crate::shard::Shard;

pub async fn init_producer_id(
    shard: &Rc<Shard>,
    r: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if r.transactional_id.is_some() {
        warn!("InitProducerId with a transactional id refused: transactions are not supported yet");
        return failed(ErrorCode::InvalidRequest);
    }
    match shard.authority().producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => failed(e.code),
    }
}
