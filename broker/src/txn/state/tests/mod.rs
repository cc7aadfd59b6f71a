//! The state machine's tests: every row of Kafka's tables, and its validity checks.

use super::*;
use crate::txn::wire::{decode_value, encode_value};
use TxnStatus::*;

const PID: i64 = 1000;
const NEW_PID: i64 = 2000;
const NOW: i64 = 1_700_000_000_000;
const MAX_TIMEOUT: i32 = 900_000;

fn parts(list: &[(&str, i32)]) -> BTreeSet<TxnPartition> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

/// A durable state: `state` at `epoch`, as the tests need it.
fn meta(state: TxnStatus, epoch: i16) -> TxnMeta {
    let open = !matches!(state, Empty);
    TxnMeta {
        transactional_id: "txn".into(),
        producer_id: PID,
        previous_producer_id: PID,
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch: epoch,
        last_producer_epoch: NO_PRODUCER_EPOCH,
        timeout_ms: 60_000,
        state,
        partitions: if matches!(state, Ongoing | PrepareCommit | PrepareAbort) {
            parts(&[("orders", 0), ("orders", 1)])
        } else {
            BTreeSet::new()
        },
        start_ms: if open { NOW - 500 } else { -1 },
        last_update_ms: NOW - 100,
        client_version: TxnVersion::V0,
        pending: None,
        has_failed_epoch_fence: false,
    }
}

fn v2(mut m: TxnMeta) -> TxnMeta {
    m.client_version = TxnVersion::V2;
    m
}

fn init(expected: Option<(i64, i16)>) -> InitRequest {
    InitRequest {
        timeout_ms: 30_000,
        expected,
        max_timeout_ms: MAX_TIMEOUT,
    }
}

fn end(epoch: i16, result: TxnResult) -> EndRequest {
    EndRequest {
        producer_id: PID,
        producer_epoch: epoch,
        result,
        origin: EndOrigin::Client,
    }
}

/// Begin and complete `t`, as the coordinator does once the write is durable.
fn apply(m: &mut TxnMeta, t: Transit) {
    m.begin(t.clone());
    m.complete(&t);
}

fn write_of_init(o: Result<InitOutcome, ErrorCode>) -> Transit {
    match o {
        Ok(InitOutcome::Write(t)) => t,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn write_of_end(o: Result<EndOutcome, ErrorCode>) -> Transit {
    match o {
        Ok(EndOutcome::Write(t)) => t,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn write_of_add(o: Result<AddOutcome, ErrorCode>) -> Transit {
    match o {
        Ok(AddOutcome::Write(t)) => t,
        other => panic!("expected a write, got {other:?}"),
    }
}

// ---- InitProducerId ----

#[test]
fn init_of_a_new_id_allocates_a_producer_id_at_epoch_zero() {
    assert_eq!(
        prepare_init(None, "txn", &init(None), None, NOW),
        Ok(InitOutcome::NeedProducerId)
    );
    let Ok(InitOutcome::Create { mut meta, transit }) =
        prepare_init(None, "txn", &init(Some((7, 3))), Some(PID), NOW)
    else {
        panic!("a new id is created");
    };
    assert_eq!(
        (meta.producer_id, meta.producer_epoch, meta.state),
        (PID, -1, Empty)
    );
    assert_eq!(meta.transactional_id, "txn");
    assert_eq!(
        (transit.producer_id, transit.producer_epoch, transit.state),
        (PID, 0, Empty)
    );
    assert_eq!(transit.timeout_ms, 30_000);
    apply(&mut meta, transit);
    assert_eq!((meta.producer_epoch, meta.state), (0, Empty));
    assert!(meta.pending.is_none());
}

#[test]
fn init_refuses_a_timeout_out_of_range_before_anything_else() {
    for timeout_ms in [0, -1, MAX_TIMEOUT + 1] {
        let request = InitRequest {
            timeout_ms,
            ..init(None)
        };
        assert_eq!(
            prepare_init(None, "txn", &request, Some(PID), NOW),
            Err(ErrorCode::InvalidTransactionTimeout)
        );
        let mut busy = meta(Empty, 3);
        busy.pending = Some(busy.transit(Ongoing));
        assert_eq!(
            prepare_init(Some(&busy), "txn", &request, None, NOW),
            Err(ErrorCode::InvalidTransactionTimeout)
        );
    }
    let at_max = InitRequest {
        timeout_ms: MAX_TIMEOUT,
        ..init(None)
    };
    assert!(prepare_init(None, "txn", &at_max, Some(PID), NOW).is_ok());
}

#[test]
fn init_with_a_pending_transition_or_a_prepare_state_is_concurrent() {
    let mut m = meta(Empty, 3);
    let t = write_of_init(prepare_init(Some(&m), "txn", &init(None), None, NOW));
    m.begin(t);
    assert_eq!(
        prepare_init(Some(&m), "txn", &init(None), None, NOW),
        Err(ErrorCode::ConcurrentTransactions)
    );
    for state in [PrepareCommit, PrepareAbort] {
        assert_eq!(
            prepare_init(Some(&meta(state, 3)), "txn", &init(None), None, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
    }
}

#[test]
fn init_from_empty_or_complete_bumps_the_epoch() {
    for state in [Empty, CompleteCommit, CompleteAbort] {
        let mut m = meta(state, 3);
        m.client_version = TxnVersion::V2;
        let t = write_of_init(prepare_init(Some(&m), "txn", &init(None), None, NOW));
        assert_eq!(
            (t.producer_id, t.producer_epoch, t.last_producer_epoch),
            (PID, 4, -1)
        );
        assert_eq!((t.state, t.start_ms, t.last_update_ms), (Empty, -1, NOW));
        assert!(t.partitions.is_empty());
        assert_eq!(t.timeout_ms, 30_000, "the request's timeout");
        assert_eq!(t.client_version, TxnVersion::V2, "kept, as Kafka");
        apply(&mut m, t);
        assert_eq!((m.state, m.producer_epoch), (Empty, 4));
    }
}

#[test]
fn init_with_the_expected_epoch_bumps_and_a_retry_does_not() {
    let mut m = meta(CompleteCommit, 3);
    let first = write_of_init(prepare_init(
        Some(&m),
        "txn",
        &init(Some((PID, 3))),
        None,
        NOW,
    ));
    assert_eq!((first.producer_epoch, first.last_producer_epoch), (4, 3));
    apply(&mut m, first);
    // The response was lost; the client retries with the epoch it had.
    let retry = write_of_init(prepare_init(
        Some(&m),
        "txn",
        &init(Some((PID, 3))),
        None,
        NOW,
    ));
    assert_eq!((retry.producer_epoch, retry.last_producer_epoch), (4, 3));
    apply(&mut m, retry);
    // Another epoch is a zombie's.
    assert_eq!(
        prepare_init(Some(&m), "txn", &init(Some((PID, 2))), None, NOW),
        Err(ErrorCode::ProducerFenced)
    );
    // A producer without an expected epoch clears the last one: the retry is fenced.
    let fresh = write_of_init(prepare_init(Some(&m), "txn", &init(None), None, NOW));
    assert_eq!((fresh.producer_epoch, fresh.last_producer_epoch), (5, -1));
    apply(&mut m, fresh);
    assert_eq!(
        prepare_init(Some(&m), "txn", &init(Some((PID, 3))), None, NOW),
        Err(ErrorCode::ProducerFenced)
    );
}

#[test]
fn init_with_another_expected_producer_id_is_fenced_unless_no_epoch_was_given() {
    let m = meta(Empty, 3);
    assert_eq!(
        prepare_init(Some(&m), "txn", &init(Some((PID + 1, 3))), None, NOW),
        Err(ErrorCode::ProducerFenced)
    );
    // A cached id whose first write never became durable (epoch -1) takes anyone.
    let unwritten = TxnMeta::new("txn".into(), PID, 30_000, NOW);
    let t = write_of_init(prepare_init(
        Some(&unwritten),
        "txn",
        &init(Some((PID + 1, 9))),
        None,
        NOW,
    ));
    assert_eq!(
        (t.producer_id, t.producer_epoch, t.last_producer_epoch),
        (PID, 0, -1)
    );
}

#[test]
fn expected_producer_needs_both_or_neither() {
    assert_eq!(expected_producer(-1, -1), Ok(None));
    assert_eq!(expected_producer(5, 2), Ok(Some((5, 2))));
    assert_eq!(expected_producer(-1, 2), Err(ErrorCode::InvalidRequest));
    assert_eq!(expected_producer(5, -1), Err(ErrorCode::InvalidRequest));
}

#[test]
fn init_with_an_exhausted_epoch_rotates_the_producer_id() {
    let exhausted = i16::MAX - 1;
    for expected in [None, Some((PID, exhausted))] {
        let mut m = meta(CompleteCommit, exhausted);
        assert_eq!(
            prepare_init(Some(&m), "txn", &init(expected), None, NOW),
            Ok(InitOutcome::NeedProducerId)
        );
        let t = write_of_init(prepare_init(
            Some(&m),
            "txn",
            &init(expected),
            Some(NEW_PID),
            NOW,
        ));
        let last = if expected.is_some() { exhausted } else { -1 };
        assert_eq!(
            (t.producer_id, t.producer_epoch, t.last_producer_epoch),
            (NEW_PID, 0, last)
        );
        assert_eq!((t.previous_producer_id, t.state), (PID, Empty));
        apply(&mut m, t);
        assert_eq!((m.producer_id, m.producer_epoch), (NEW_PID, 0));
        if expected.is_some() {
            // The response was lost: the retry names the old id at the exhausted epoch.
            let retry = write_of_init(prepare_init(
                Some(&m),
                "txn",
                &init(Some((PID, exhausted))),
                None,
                NOW,
            ));
            assert_eq!((retry.producer_id, retry.producer_epoch), (NEW_PID, 0));
        } else {
            assert_eq!(
                prepare_init(Some(&m), "txn", &init(Some((PID, exhausted))), None, NOW),
                Err(ErrorCode::ProducerFenced)
            );
        }
    }
    // One below the limit is an ordinary bump, to the last usable epoch.
    let m = meta(Empty, i16::MAX - 2);
    let t = write_of_init(prepare_init(
        Some(&m),
        "txn",
        &init(None),
        Some(NEW_PID),
        NOW,
    ));
    assert_eq!((t.producer_id, t.producer_epoch), (PID, i16::MAX - 1));
}

#[test]
fn init_at_an_exhausted_epoch_answers_a_retry_of_the_last_bump() {
    // Bumped from MAX-2 to MAX-1, answer lost: the retry expects MAX-2 (Kafka throws
    // here; Rill answers the retry as below the limit).
    let mut m = meta(Empty, i16::MAX - 1);
    m.last_producer_epoch = i16::MAX - 2;
    let t = write_of_init(prepare_init(
        Some(&m),
        "txn",
        &init(Some((PID, i16::MAX - 2))),
        None,
        NOW,
    ));
    assert_eq!((t.producer_id, t.producer_epoch), (PID, i16::MAX - 1));
    assert_eq!(
        prepare_init(Some(&m), "txn", &init(Some((PID, 5))), None, NOW),
        Err(ErrorCode::ProducerFenced)
    );
}

/// A second InitProducerId while a transaction is Ongoing (the old producer is a
/// zombie): fence, abort with the fencing epoch, CONCURRENT_TRANSACTIONS; after the
/// abort completes, the retry gets its own bump.
#[test]
fn init_while_ongoing_fences_the_zombie_then_bumps() {
    for version in [TxnVersion::V0, TxnVersion::V2] {
        let mut m = meta(Ongoing, 5);
        let Ok(InitOutcome::Fence(fence)) = prepare_init(Some(&m), "txn", &init(None), None, NOW)
        else {
            panic!("an Ongoing transaction is fenced");
        };
        assert_eq!((fence.state, fence.producer_epoch), (PrepareEpochFence, 6));
        m.begin(fence.clone());
        // Everyone else waits meanwhile, the zombie included.
        assert_eq!(
            prepare_add(Some(&m), PID, 5, &parts(&[("x", 0)]), TxnVersion::V0, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
        let abort = EndRequest {
            producer_id: fence.producer_id,
            producer_epoch: fence.producer_epoch,
            result: TxnResult::Abort,
            origin: EndOrigin::Coordinator,
        };
        let t = write_of_end(prepare_end(Some(&m), &abort, version, None, NOW));
        assert_eq!(t.state, PrepareAbort);
        assert_eq!(t.fenced_epoch, Some(6));
        assert_eq!(
            t.partitions, m.partitions,
            "the markers go to every partition"
        );
        let expect_epoch = if version.bumps_epoch() {
            assert_eq!((t.producer_epoch, t.last_producer_epoch), (7, 6));
            7
        } else {
            assert_eq!((t.producer_epoch, t.last_producer_epoch), (6, -1));
            6
        };
        m.begin(t.clone());
        m.complete(&t);
        assert_eq!((m.state, m.producer_epoch), (PrepareAbort, expect_epoch));
        // The zombie is fenced.
        assert_eq!(
            prepare_end(Some(&m), &end(5, TxnResult::Commit), version, None, NOW),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            prepare_add(Some(&m), PID, 5, &parts(&[("x", 0)]), TxnVersion::V0, NOW),
            Err(ErrorCode::ProducerFenced)
        );
        // The new producer retries while the markers go out.
        let complete = prepare_complete(&m, NOW).unwrap();
        m.begin(complete.clone());
        assert_eq!(
            prepare_init(Some(&m), "txn", &init(None), None, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
        m.complete(&complete);
        assert_eq!(m.state, CompleteAbort);
        let bump = write_of_init(prepare_init(Some(&m), "txn", &init(None), None, NOW));
        assert_eq!(bump.producer_epoch, expect_epoch + 1);
        apply(&mut m, bump);
        assert_eq!((m.state, m.producer_epoch), (Empty, expect_epoch + 1));
    }
}

#[test]
fn a_fence_whose_abort_failed_keeps_its_epoch_and_does_not_bump_again() {
    let mut m = meta(Ongoing, 5);
    let fence = prepare_fence(&m).unwrap();
    m.begin(fence.clone());
    let abort = EndRequest {
        producer_id: PID,
        producer_epoch: fence.producer_epoch,
        result: TxnResult::Abort,
        origin: EndOrigin::Coordinator,
    };
    let t = write_of_end(prepare_end_v1(Some(&m), &abort, NOW));
    m.begin(t);
    m.abandon();
    assert!(m.pending.is_none());
    assert_eq!(
        (m.state, m.producer_epoch, m.has_failed_epoch_fence),
        (Ongoing, 6, true)
    );
    // The zombie stays fenced here.
    assert_eq!(
        prepare_add(Some(&m), PID, 5, &parts(&[("x", 0)]), TxnVersion::V0, NOW),
        Err(ErrorCode::ProducerFenced)
    );
    // The timeout tries again: same epoch.
    let again = prepare_fence(&m).unwrap();
    assert_eq!(again.producer_epoch, 6);
    m.begin(again.clone());
    let t = write_of_end(prepare_end_v1(Some(&m), &abort, NOW));
    assert_eq!((t.producer_epoch, t.fenced_epoch), (6, Some(6)));
    apply(&mut m, t);
    assert_eq!(
        (m.state, m.producer_epoch, m.has_failed_epoch_fence),
        (PrepareAbort, 6, false)
    );
}

#[test]
fn an_abandoned_ordinary_write_changes_nothing() {
    let mut m = meta(Ongoing, 5);
    let before = m.clone();
    let t = write_of_end(prepare_end_v1(Some(&m), &end(5, TxnResult::Commit), NOW));
    m.begin(t);
    m.abandon();
    assert_eq!(m, before);
}

#[test]
fn fence_needs_an_ongoing_transaction_and_nothing_pending() {
    assert_eq!(
        prepare_fence(&meta(Empty, 1)),
        Err(ErrorCode::InvalidTxnState)
    );
    let mut m = meta(Ongoing, i16::MAX);
    assert_eq!(
        prepare_fence(&m).unwrap().producer_epoch,
        i16::MAX,
        "no overflow"
    );
    m.pending = Some(m.transit(Ongoing));
    assert_eq!(prepare_fence(&m), Err(ErrorCode::ConcurrentTransactions));
}

#[test]
fn a_timed_out_transaction_is_found_once_past_its_timeout() {
    let mut m = meta(Ongoing, 1);
    let deadline = m.start_ms + i64::from(m.timeout_ms);
    assert!(!m.timed_out(deadline));
    assert!(m.timed_out(deadline + 1));
    m.pending = Some(m.transit(Ongoing));
    assert!(
        !m.timed_out(deadline + 1),
        "not while a transition is pending"
    );
    assert!(!meta(Empty, 1).timed_out(i64::MAX));
}

// ---- AddPartitionsToTxn / AddOffsetsToTxn ----

#[test]
fn add_checks_the_id_then_pending_then_producer_then_state() {
    let p = parts(&[("orders", 5)]);
    assert_eq!(
        prepare_add(None, PID, 1, &p, TxnVersion::V0, NOW),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    let m = meta(Empty, 1);
    assert_eq!(
        prepare_add(Some(&m), PID + 1, 1, &p, TxnVersion::V0, NOW),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    assert_eq!(
        prepare_add(Some(&m), PID, 0, &p, TxnVersion::V0, NOW),
        Err(ErrorCode::ProducerFenced)
    );
    assert_eq!(
        prepare_add(Some(&m), PID, 2, &p, TxnVersion::V0, NOW),
        Err(ErrorCode::ProducerFenced)
    );
    // Pending comes before the producer checks: across a TV2 overflow the client
    // already uses the new producer id, still pending.
    let mut busy = meta(PrepareCommit, 1);
    busy.pending = Some(busy.transit(CompleteCommit));
    assert_eq!(
        prepare_add(Some(&busy), NEW_PID, 0, &p, TxnVersion::V2, NOW),
        Err(ErrorCode::ConcurrentTransactions)
    );
    for state in [PrepareCommit, PrepareAbort] {
        assert_eq!(
            prepare_add(Some(&meta(state, 1)), PID, 1, &p, TxnVersion::V0, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
    }
    // No epoch was ever handed out for this id.
    let unwritten = TxnMeta::new("txn".into(), PID, 30_000, NOW);
    assert_eq!(
        prepare_add(Some(&unwritten), PID, -1, &p, TxnVersion::V0, NOW),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
}

#[test]
fn add_to_an_ongoing_transaction_writes_only_new_partitions() {
    let mut m = meta(Ongoing, 1);
    assert_eq!(
        prepare_add(
            Some(&m),
            PID,
            1,
            &parts(&[("orders", 1)]),
            TxnVersion::V0,
            NOW
        ),
        Ok(AddOutcome::AlreadyIn)
    );
    let t = write_of_add(prepare_add(
        Some(&m),
        PID,
        1,
        &parts(&[("orders", 1), ("audit", 0)]),
        TxnVersion::V0,
        NOW,
    ));
    assert_eq!(
        t.partitions,
        parts(&[("audit", 0), ("orders", 0), ("orders", 1)])
    );
    assert_eq!(t.start_ms, m.start_ms, "the transaction started earlier");
    assert_eq!((t.state, t.last_update_ms), (Ongoing, NOW));
    apply(&mut m, t);
    assert_eq!(m.partitions.len(), 3);
}

#[test]
fn add_from_empty_or_complete_starts_a_transaction() {
    for state in [Empty, CompleteCommit, CompleteAbort] {
        let mut m = meta(state, 1);
        let t = write_of_add(prepare_add(
            Some(&m),
            PID,
            1,
            &parts(&[("orders", 3)]),
            TxnVersion::V2,
            NOW,
        ));
        assert_eq!((t.state, t.start_ms), (Ongoing, NOW));
        assert_eq!(t.partitions, parts(&[("orders", 3)]));
        assert_eq!(t.client_version, TxnVersion::V2, "the client's version");
        assert_eq!(t.producer_epoch, 1, "an add never bumps");
        apply(&mut m, t);
        assert_eq!(m.state, Ongoing);
    }
}

// ---- Verification (KIP-890 part 1) ----

#[test]
fn verify_answers_per_partition_without_a_write() {
    let m = meta(Ongoing, 1);
    let asked = parts(&[("orders", 0), ("orders", 9)]);
    let answer = verify(Some(&m), PID, 1, &asked).unwrap();
    assert_eq!(answer[&("orders".to_string(), 0)], ErrorCode::None);
    assert_eq!(
        answer[&("orders".to_string(), 9)],
        ErrorCode::TransactionAbortable
    );
    assert_eq!(answer.len(), 2);
    // Nothing open: every partition is abortable.
    let empty = verify(Some(&meta(CompleteCommit, 1)), PID, 1, &asked).unwrap();
    assert!(empty
        .values()
        .all(|c| *c == ErrorCode::TransactionAbortable));
    // A pending transition does not matter.
    let mut busy = meta(Ongoing, 1);
    busy.pending = Some(busy.transit(PrepareCommit));
    assert_eq!(
        verify(Some(&busy), PID, 1, &asked).unwrap()[&("orders".to_string(), 0)],
        ErrorCode::None
    );
    assert_eq!(
        verify(None, PID, 1, &asked),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    assert_eq!(
        verify(Some(&m), PID + 1, 1, &asked),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    assert_eq!(
        verify(Some(&m), PID, 0, &asked),
        Err(ErrorCode::ProducerFenced)
    );
    for state in [PrepareCommit, PrepareAbort] {
        assert_eq!(
            verify(Some(&meta(state, 1)), PID, 1, &asked),
            Err(ErrorCode::ConcurrentTransactions)
        );
    }
}

// ---- EndTxn TV1 ----

mod end;
