//! Apache Kafka's own key and value formats for `__transaction_state`
//! (`TransactionLogKey` v0 and `TransactionLogValue` v0 and v1), so that Kafka's tools
//! read the topic (`kafka-dump-log --transaction-log-decoder`) and its records mean what
//! they mean to Kafka. The key is the transactional id after key type 0; the value is the
//! transaction's state; a null value (a tombstone) is a transactional id that expired.
//!
//! Value version 0 is fixed-size fields; version 1 (written by coordinators whose
//! `transaction.version` is at least 1) is flexible and carries the previous and next
//! producer ids, the next producer epoch and the client's transaction version as tagged
//! fields, written only when they differ from their defaults.

#![allow(dead_code)] // the coordinator that writes and reads these records comes next

use bytes::Bytes;

use crate::coordinator_wire::{Res, R, W};

/// The key type (Kafka's key version) of every `__transaction_state` record.
pub const TRANSACTION_LOG_KEY: i16 = 0;
/// Tagged fields of value version 1.
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;
const TAG_NEXT_PRODUCER_EPOCH: u32 = 3;

/// A transaction's state, as Kafka numbers it (`TransactionState.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnStatus {
    const ALL: [TxnStatus; 8] = [
        TxnStatus::Empty,
        TxnStatus::Ongoing,
        TxnStatus::PrepareCommit,
        TxnStatus::PrepareAbort,
        TxnStatus::CompleteCommit,
        TxnStatus::CompleteAbort,
        TxnStatus::Dead,
        TxnStatus::PrepareEpochFence,
    ];

    /// Kafka's name of the state (what DescribeTransactions and ListTransactions show).
    pub fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
            TxnStatus::Dead => "Dead",
            TxnStatus::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Every state's name.
    pub fn names() -> impl Iterator<Item = &'static str> {
        TxnStatus::ALL.iter().map(|s| s.name())
    }

    fn id(self) -> u8 {
        TxnStatus::ALL
            .iter()
            .position(|s| *s == self)
            .expect("every status is listed") as u8
    }

    fn from_id(id: u8) -> Option<TxnStatus> {
        TxnStatus::ALL.get(id as usize).copied()
    }
}

/// The partitions of one topic a transaction wrote to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// One transactional id's state as the coordinator stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTxn {
    pub producer_id: i64,
    /// The producer id of the last committed transaction (-1: none); version 1 only.
    pub previous_producer_id: i64,
    /// The producer id handed out next after an epoch overflow (-1: none); version 1 only.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch belonging to `next_producer_id` (-1: none); version 1 only.
    pub next_producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// None when no partition is in the transaction (Kafka writes null for Empty).
    pub partitions: Option<Vec<TxnPartitions>>,
    pub last_update_ms: i64,
    /// -1 when no transaction is open.
    pub start_ms: i64,
    /// The transaction version the client speaks (0, 1 or 2); version 1 only.
    pub client_transaction_version: i16,
}

/// The record key of `transactional_id`.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut w = W::new(TRANSACTION_LOG_KEY);
    w.str(transactional_id);
    w.done()
}

/// The transactional id a key names; an error says what is wrong with it.
pub fn decode_key(key: &[u8]) -> Res<String> {
    let mut r = R {
        b: key,
        what: "a __transaction_state key",
    };
    let key_type = r.i16()?;
    if key_type != TRANSACTION_LOG_KEY {
        return Err(format!(
            "a __transaction_state key of unknown type {key_type}"
        ));
    }
    r.str()
}

/// The record value of `t` in value version `version` (0 or 1).
pub fn encode_value(t: &StoredTxn, version: i16) -> Bytes {
    assert!(
        (0..=1).contains(&version),
        "TransactionLogValue has versions 0 and 1"
    );
    let flexible = version >= 1;
    let mut w = W::new(version);
    w.i64(t.producer_id)
        .i16(t.producer_epoch)
        .i32(t.timeout_ms)
        .i8(t.status.id());
    match (&t.partitions, flexible) {
        (None, false) => {
            w.i32(-1);
        }
        (None, true) => {
            w.uvarint(0);
        }
        (Some(parts), false) => {
            w.i32(parts.len() as i32);
            for p in parts {
                w.str(&p.topic).i32(p.partitions.len() as i32);
                for id in &p.partitions {
                    w.i32(*id);
                }
            }
        }
        (Some(parts), true) => {
            w.clen(parts.len());
            for p in parts {
                w.cstr(&p.topic).clen(p.partitions.len());
                for id in &p.partitions {
                    w.i32(*id);
                }
                w.no_tags();
            }
        }
    }
    w.i64(t.last_update_ms).i64(t.start_ms);
    if flexible {
        let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
        if t.previous_producer_id != -1 {
            tags.push((
                TAG_PREVIOUS_PRODUCER_ID,
                t.previous_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if t.next_producer_id != -1 {
            tags.push((
                TAG_NEXT_PRODUCER_ID,
                t.next_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if t.client_transaction_version != 0 {
            tags.push((
                TAG_CLIENT_TRANSACTION_VERSION,
                t.client_transaction_version.to_be_bytes().to_vec(),
            ));
        }
        if t.next_producer_epoch != -1 {
            tags.push((
                TAG_NEXT_PRODUCER_EPOCH,
                t.next_producer_epoch.to_be_bytes().to_vec(),
            ));
        }
        w.uvarint(tags.len() as u64);
        for (tag, data) in tags {
            w.uvarint(tag as u64).uvarint(data.len() as u64);
            w.0.extend_from_slice(&data);
        }
    }
    w.done()
}

/// A stored transaction from a record value; an error says what is wrong with it (a
/// version past 1 included: the record is not understood, as Kafka's reader refuses it).
pub fn decode_value(value: &[u8]) -> Res<StoredTxn> {
    let mut r = R {
        b: value,
        what: "a __transaction_state value",
    };
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return Err(format!(
            "a __transaction_state value of unknown version {version}"
        ));
    }
    let flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status_id = r.i8()?;
    let status = TxnStatus::from_id(status_id)
        .ok_or_else(|| format!("a __transaction_state value with unknown status {status_id}"))?;
    let count = if flexible {
        r.clen()?
    } else {
        let n = r.i32()?;
        if n > r.b.len() as i32 {
            return Err("a __transaction_state value: a length runs past the end".into());
        }
        (n >= 0).then_some(n as usize)
    };
    let partitions = match count {
        None => None,
        Some(n) => {
            let mut parts = Vec::with_capacity(n);
            for _ in 0..n {
                let topic = if flexible { r.cstr()? } else { r.str()? };
                let ids = if flexible {
                    r.clen()?.unwrap_or(0)
                } else {
                    let k = r.i32()?;
                    if k < 0 || k > r.b.len() as i32 {
                        return Err(
                            "a __transaction_state value: a length runs past the end".into()
                        );
                    }
                    k as usize
                };
                let mut partitions = Vec::with_capacity(ids);
                for _ in 0..ids {
                    partitions.push(r.i32()?);
                }
                if flexible {
                    r.skip_tags()?;
                }
                parts.push(TxnPartitions { topic, partitions });
            }
            Some(parts)
        }
    };
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let mut t = StoredTxn {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        next_producer_epoch: -1,
        timeout_ms,
        status,
        partitions,
        last_update_ms,
        start_ms,
        client_transaction_version: 0,
    };
    if flexible {
        r.tags(|tag, data| {
            let n = |len: usize| -> Res<&[u8]> {
                (data.len() == len)
                    .then_some(data)
                    .ok_or_else(|| format!("tagged field {tag} of {} bytes", data.len()))
            };
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => {
                    t.previous_producer_id = i64::from_be_bytes(n(8)?.try_into().expect("8"))
                }
                TAG_NEXT_PRODUCER_ID => {
                    t.next_producer_id = i64::from_be_bytes(n(8)?.try_into().expect("8"))
                }
                TAG_CLIENT_TRANSACTION_VERSION => {
                    t.client_transaction_version = i16::from_be_bytes(n(2)?.try_into().expect("2"))
                }
                TAG_NEXT_PRODUCER_EPOCH => {
                    t.next_producer_epoch = i16::from_be_bytes(n(2)?.try_into().expect("2"))
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Written by Kafka 4.4.0 (kafka-transaction-coordinator's `TransactionLog.keyToBytes`
    // and `MessageUtil.toVersionPrefixedBytes` of `TransactionLogValue`, in jshell).
    const KEY: &str = "0000000574786e2d31";
    const V0: &str = "0000000000000000109200030000ea60010000000200066f72646572730000000200000000000000020005617564697400000001000000010000018bcfe5687b0000018bcfe56864";
    const V0_EMPTY: &str =
        "0000000000000000004d00000000271000ffffffff0000018bcfe569c8ffffffffffffffff";
    const V1: &str = "0001000000000000109200030000ea600103076f7264657273030000000000000002000661756469740200000001000000018bcfe5687b0000018bcfe56864020008000000000000109102020002";
    const V1_NEXT: &str = "0001000000000000004d00000000271000000000018bcfe569c8ffffffffffffffff020108000000000000004e03020000";

    fn ongoing() -> StoredTxn {
        StoredTxn {
            producer_id: 4242,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            next_producer_epoch: -1,
            timeout_ms: 60_000,
            status: TxnStatus::Ongoing,
            partitions: Some(vec![
                TxnPartitions {
                    topic: "orders".into(),
                    partitions: vec![0, 2],
                },
                TxnPartitions {
                    topic: "audit".into(),
                    partitions: vec![1],
                },
            ]),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_100,
            client_transaction_version: 0,
        }
    }

    fn empty() -> StoredTxn {
        StoredTxn {
            producer_id: 77,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 0,
            next_producer_epoch: -1,
            timeout_ms: 10_000,
            status: TxnStatus::Empty,
            partitions: None,
            last_update_ms: 1_700_000_000_456,
            start_ms: -1,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn keys_and_values_are_the_bytes_kafka_writes_and_read_back() {
        assert_eq!(&encode_key("txn-1")[..], &unhex(KEY)[..]);
        assert_eq!(decode_key(&unhex(KEY)).unwrap(), "txn-1");

        let v1 = StoredTxn {
            previous_producer_id: 4241,
            client_transaction_version: 2,
            ..ongoing()
        };
        let v1_next = StoredTxn {
            next_producer_id: 78,
            next_producer_epoch: 0,
            ..empty()
        };
        for (t, version, kafka) in [
            (ongoing(), 0, V0),
            (empty(), 0, V0_EMPTY),
            (v1, 1, V1),
            (v1_next, 1, V1_NEXT),
        ] {
            assert_eq!(
                &encode_value(&t, version)[..],
                &unhex(kafka)[..],
                "{t:?} v{version}"
            );
            assert_eq!(decode_value(&unhex(kafka)).unwrap(), t, "v{version}");
        }
    }

    #[test]
    fn damaged_or_unknown_records_are_refused_by_name() {
        let v1 = unhex(V1);
        for cut in 0..v1.len() {
            assert!(decode_value(&v1[..cut]).is_err(), "cut at {cut}");
        }
        let mut later = v1.clone();
        later[1] = 2;
        assert!(decode_value(&later)
            .unwrap_err()
            .contains("unknown version 2"));
        let mut status = unhex(V0);
        status[16] = 9;
        assert!(decode_value(&status)
            .unwrap_err()
            .contains("unknown status 9"));
        let mut key = unhex(KEY);
        key[1] = 1;
        assert!(decode_key(&key).unwrap_err().contains("unknown type 1"));
        // A length past the end is refused before anything is allocated for it.
        let mut huge = unhex(V0);
        huge[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_value(&huge).is_err());
    }
}
