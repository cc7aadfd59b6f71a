//! InitProducerId: idempotent producers get a fresh producer id (epoch 0) from this broker's
//! block; a transactional id goes to its transaction coordinator ([`crate::txn::Txns`]),
//! which keeps the id's producer id and bumps its epoch on every call (fencing older
//! instances of the producer).

use std::rc::Rc;

use rill_net::kafka_protocol::messages::*;
use rill_net::ErrorCode;

use crate::shard::Shard;
use crate::txn::state::{error_for_version, expected_producer, TxnApi};
use crate::txn::Txns;

pub async fn init_producer_id(
    shard: &Rc<Shard>,
    r: InitProducerIdRequest,
    v: i16,
) -> InitProducerIdResponse {
    let failed = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(error_for_version(code, TxnApi::InitProducerId, v).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(id) = r.transactional_id {
        // v3+ names the producer id and epoch the client had (-1, -1 when it had none).
        let expected = match expected_producer(r.producer_id.0, r.producer_epoch) {
            Ok(e) => e,
            Err(code) => return failed(code),
        };
        return match Txns::of(shard)
            .init_producer_id(id.0.to_string(), r.transaction_timeout_ms, expected)
            .await
        {
            Ok((pid, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            Err(code) => {
                shard.metrics().error("InitProducerId", code);
                failed(code)
            }
        };
    }
    match shard.authority().producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => failed(e.code),
    }
}
