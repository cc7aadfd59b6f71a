//! The EndTxn tables (transaction versions 1 and 2), completion, expiry, validity and
//! storage tests of the state machine.

use super::*;

#[test]
fn end_v1_table() {
    use TxnResult::{Abort, Commit};
    let done = Ok(EndOutcome::Done {
        producer_id: -1,
        producer_epoch: -1,
    });
    let cases: [(TxnStatus, TxnResult, Result<EndOutcome, ErrorCode>); 10] = [
        (CompleteCommit, Commit, done.clone()),
        (CompleteCommit, Abort, Err(ErrorCode::InvalidTxnState)),
        (CompleteAbort, Abort, done),
        (CompleteAbort, Commit, Err(ErrorCode::InvalidTxnState)),
        (
            PrepareCommit,
            Commit,
            Err(ErrorCode::ConcurrentTransactions),
        ),
        (PrepareCommit, Abort, Err(ErrorCode::InvalidTxnState)),
        (PrepareAbort, Abort, Err(ErrorCode::ConcurrentTransactions)),
        (PrepareAbort, Commit, Err(ErrorCode::InvalidTxnState)),
        (Empty, Commit, Err(ErrorCode::InvalidTxnState)),
        (Empty, Abort, Err(ErrorCode::InvalidTxnState)),
    ];
    for (state, result, expected) in cases {
        assert_eq!(
            prepare_end_v1(Some(&meta(state, 4)), &end(4, result), NOW),
            expected,
            "{state:?} {result:?}"
        );
    }
    for (result, state) in [(Commit, PrepareCommit), (Abort, PrepareAbort)] {
        let mut m = meta(Ongoing, 4);
        m.client_version = TxnVersion::V2;
        let t = write_of_end(prepare_end_v1(Some(&m), &end(4, result), NOW));
        assert_eq!(t.state, state);
        assert_eq!(
            (t.producer_id, t.producer_epoch),
            (PID, 4),
            "TV1 never bumps"
        );
        assert_eq!((t.start_ms, t.last_update_ms), (m.start_ms, NOW));
        assert_eq!(t.partitions, m.partitions);
        assert_eq!(t.client_version, TxnVersion::V0);
        assert_eq!(t.fenced_epoch, None);
        apply(&mut m, t);
        assert_eq!(m.state, state);
    }
}

#[test]
fn end_v1_checks_the_producer_before_the_state() {
    let m = meta(Ongoing, 4);
    assert_eq!(
        prepare_end_v1(None, &end(4, TxnResult::Commit), NOW),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    let other = EndRequest {
        producer_id: PID + 1,
        ..end(4, TxnResult::Commit)
    };
    assert_eq!(
        prepare_end_v1(Some(&m), &other, NOW),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    for epoch in [3, 5] {
        assert_eq!(
            prepare_end_v1(Some(&m), &end(epoch, TxnResult::Commit), NOW),
            Err(ErrorCode::ProducerFenced)
        );
    }
    // The coordinator may use a newer epoch, never an older one.
    let coordinator = |epoch| EndRequest {
        origin: EndOrigin::Coordinator,
        ..end(epoch, TxnResult::Abort)
    };
    assert_eq!(
        prepare_end_v1(Some(&m), &coordinator(3), NOW),
        Err(ErrorCode::ProducerFenced)
    );
    assert!(prepare_end_v1(Some(&m), &coordinator(5), NOW).is_ok());
    let mut busy = meta(Ongoing, 4);
    busy.pending = Some(busy.transit(Ongoing));
    assert_eq!(
        prepare_end_v1(Some(&busy), &end(4, TxnResult::Commit), NOW),
        Err(ErrorCode::ConcurrentTransactions)
    );
    // A pending fence is followed by the coordinator's abort only.
    let mut fencing = meta(Ongoing, 4);
    fencing.begin(prepare_fence(&fencing).unwrap());
    assert_eq!(
        prepare_end_v1(Some(&fencing), &end(4, TxnResult::Abort), NOW),
        Err(ErrorCode::ConcurrentTransactions)
    );
}

#[test]
fn complete_after_prepare_clears_the_partitions_and_keeps_the_epoch() {
    for (prepare, complete) in [
        (PrepareCommit, CompleteCommit),
        (PrepareAbort, CompleteAbort),
    ] {
        let mut m = meta(prepare, 4);
        let t = prepare_complete(&m, NOW).unwrap();
        assert_eq!(t.state, complete);
        assert!(t.partitions.is_empty());
        assert_eq!((t.producer_id, t.producer_epoch), (PID, 4));
        assert_eq!((t.start_ms, t.last_update_ms), (m.start_ms, NOW));
        apply(&mut m, t);
        assert_eq!(m.state, complete);
        let stored = m.transit(m.state).to_stored();
        assert_eq!(
            stored.partitions,
            Some(vec![]),
            "Complete* writes an empty list"
        );
    }
    assert_eq!(
        prepare_complete(&meta(Ongoing, 4), NOW),
        Err(ErrorCode::InvalidTxnState)
    );
    let mut busy = meta(PrepareCommit, 4);
    busy.pending = Some(prepare_complete(&busy, NOW).unwrap());
    assert_eq!(
        prepare_complete(&busy, NOW),
        Err(ErrorCode::ConcurrentTransactions)
    );
}

// ---- EndTxn TV2 ----

/// Kafka's TV2 table for Empty, CompleteAbort and CompleteCommit (retry: the request's
/// epoch is one below the stored one).
#[test]
fn end_v2_table() {
    use TxnResult::{Abort, Commit};
    #[derive(Debug)]
    enum Want {
        Fenced,
        Invalid,
        None,
        Bump,
    }
    let cases = [
        (Empty, Abort, true, Want::Fenced),
        (Empty, Abort, false, Want::Bump),
        (Empty, Commit, true, Want::Fenced),
        (Empty, Commit, false, Want::Invalid),
        (CompleteAbort, Abort, true, Want::None),
        (CompleteAbort, Abort, false, Want::Bump),
        (CompleteAbort, Commit, true, Want::Invalid),
        (CompleteAbort, Commit, false, Want::Invalid),
        (CompleteCommit, Abort, true, Want::Invalid),
        (CompleteCommit, Abort, false, Want::Bump),
        (CompleteCommit, Commit, true, Want::None),
        (CompleteCommit, Commit, false, Want::Invalid),
    ];
    for (state, result, retry, want) in cases {
        let mut m = v2(meta(state, 8));
        let epoch = if retry { 7 } else { 8 };
        let got = prepare_end_v2(Some(&m), &end(epoch, result), None, NOW);
        let what = format!("{state:?} {result:?} retry={retry}");
        match want {
            Want::Fenced => assert_eq!(got, Err(ErrorCode::ProducerFenced), "{what}"),
            Want::Invalid => assert_eq!(got, Err(ErrorCode::InvalidTxnState), "{what}"),
            Want::None => assert_eq!(
                got,
                Ok(EndOutcome::Done {
                    producer_id: PID,
                    producer_epoch: 8
                }),
                "{what}"
            ),
            Want::Bump => {
                let t = write_of_end(got);
                assert_eq!(t.state, PrepareAbort, "{what}");
                assert_eq!((t.producer_epoch, t.last_producer_epoch), (9, 8), "{what}");
                assert_eq!(t.start_ms, NOW, "nothing was added: starts now ({what})");
                assert!(t.partitions.is_empty(), "{what}");
                assert_eq!(t.client_version, TxnVersion::V2, "{what}");
                apply(&mut m, t);
                let c = prepare_complete(&m, NOW).unwrap();
                apply(&mut m, c);
                assert_eq!((m.state, m.producer_epoch), (CompleteAbort, 9), "{what}");
            }
        }
    }
}

#[test]
fn end_v2_bumps_at_prepare_and_answers_retries() {
    use TxnResult::{Abort, Commit};
    for (result, prepare, complete) in [
        (Commit, PrepareCommit, CompleteCommit),
        (Abort, PrepareAbort, CompleteAbort),
    ] {
        let mut m = v2(meta(Ongoing, 8));
        let t = write_of_end(prepare_end_v2(Some(&m), &end(8, result), None, NOW));
        assert_eq!(t.state, prepare);
        assert_eq!(
            (t.producer_id, t.producer_epoch, t.last_producer_epoch),
            (PID, 9, 8)
        );
        assert_eq!(t.start_ms, m.start_ms);
        assert_eq!(t.next_producer_id, -1);
        apply(&mut m, t);
        // A retry while the markers go out: wait.
        assert_eq!(
            prepare_end_v2(Some(&m), &end(8, result), None, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
        let other = match result {
            Commit => Abort,
            Abort => Commit,
        };
        assert_eq!(
            prepare_end_v2(Some(&m), &end(8, other), None, NOW),
            Err(ErrorCode::InvalidTxnState)
        );
        // The bumped epoch in Prepare* is the client ending its next transaction before
        // this one completed: it waits (Kafka fences it; see prepare_end_v2).
        assert_eq!(
            prepare_end_v2(Some(&m), &end(9, result), None, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
        let c = prepare_complete(&m, NOW).unwrap();
        assert_eq!(
            (c.state, c.producer_id, c.producer_epoch),
            (complete, PID, 9)
        );
        m.begin(c.clone());
        assert_eq!(
            prepare_end_v2(Some(&m), &end(8, result), None, NOW),
            Err(ErrorCode::ConcurrentTransactions)
        );
        m.complete(&c);
        assert_eq!(
            prepare_end_v2(Some(&m), &end(8, result), None, NOW),
            Ok(EndOutcome::Done {
                producer_id: PID,
                producer_epoch: 9
            })
        );
        // An older epoch is a zombie's.
        assert_eq!(
            prepare_end_v2(Some(&m), &end(6, result), None, NOW),
            Err(ErrorCode::ProducerFenced)
        );
    }
    assert_eq!(
        prepare_end_v2(None, &end(1, Commit), None, NOW),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
    let other = EndRequest {
        producer_id: PID + 1,
        ..end(8, Commit)
    };
    assert_eq!(
        prepare_end_v2(Some(&v2(meta(Ongoing, 8))), &other, None, NOW),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
}

#[test]
fn end_v2_with_an_exhausted_epoch_rotates_the_producer_id_at_complete() {
    let exhausted = i16::MAX - 1;
    let mut m = v2(meta(Ongoing, exhausted));
    let commit = end(exhausted, TxnResult::Commit);
    assert_eq!(
        prepare_end_v2(Some(&m), &commit, None, NOW),
        Ok(EndOutcome::NeedProducerId)
    );
    let t = write_of_end(prepare_end_v2(Some(&m), &commit, Some(NEW_PID), NOW));
    assert_eq!((t.producer_id, t.producer_epoch), (PID, i16::MAX));
    assert_eq!(
        (t.last_producer_epoch, t.next_producer_id),
        (exhausted, NEW_PID)
    );
    apply(&mut m, t);
    let c = prepare_complete(&m, NOW).unwrap();
    assert_eq!(
        (c.producer_id, c.producer_epoch),
        (NEW_PID, 0),
        "the EndTxn answer"
    );
    assert_eq!(
        (c.previous_producer_id, c.last_producer_epoch),
        (PID, exhausted)
    );
    assert_eq!(c.next_producer_id, -1);
    apply(&mut m, c);
    assert_eq!(
        (m.state, m.producer_id, m.producer_epoch),
        (CompleteCommit, NEW_PID, 0)
    );
    // The response was lost: the retry names the old id at the exhausted epoch.
    assert_eq!(
        prepare_end_v2(Some(&m), &commit, None, NOW),
        Ok(EndOutcome::Done {
            producer_id: NEW_PID,
            producer_epoch: 0
        })
    );
    // The next transaction runs on the new id.
    let next = EndRequest {
        producer_id: NEW_PID,
        ..end(0, TxnResult::Abort)
    };
    let t = write_of_end(prepare_end_v2(Some(&m), &next, None, NOW));
    assert_eq!(
        (t.producer_id, t.producer_epoch, t.next_producer_id),
        (NEW_PID, 1, -1)
    );
}

#[test]
fn end_v2_fencing_abort_bumps_from_the_fencing_epoch_and_allocates_nothing() {
    let mut m = v2(meta(Ongoing, i16::MAX - 1));
    let fence = prepare_fence(&m).unwrap();
    assert_eq!(fence.producer_epoch, i16::MAX);
    m.begin(fence.clone());
    let abort = EndRequest {
        producer_id: PID,
        producer_epoch: fence.producer_epoch,
        result: TxnResult::Abort,
        origin: EndOrigin::Coordinator,
    };
    // At i16::MAX the abort goes through without overflowing, and needs no new id.
    let t = write_of_end(prepare_end_v2(Some(&m), &abort, None, NOW));
    assert_eq!(
        (t.producer_epoch, t.last_producer_epoch),
        (i16::MAX, i16::MAX)
    );
    assert_eq!((t.next_producer_id, t.fenced_epoch), (-1, Some(i16::MAX)));
    apply(&mut m, t);
    assert_eq!((m.state, m.producer_epoch), (PrepareAbort, i16::MAX));
    let c = prepare_complete(&m, NOW).unwrap();
    apply(&mut m, c);
    // The client's retry of InitProducerId then rotates the producer id.
    assert_eq!(
        prepare_init(Some(&m), "txn", &init(None), None, NOW),
        Ok(InitOutcome::NeedProducerId)
    );
    // A commit at i16::MAX would overflow: nobody holds that epoch.
    let broken = v2(meta(Ongoing, i16::MAX));
    assert_eq!(
        prepare_end_v2(
            Some(&broken),
            &end(i16::MAX, TxnResult::Commit),
            Some(NEW_PID),
            NOW
        ),
        Err(ErrorCode::ProducerFenced)
    );
}

// ---- Expiry ----

#[test]
fn dead_only_for_an_idle_finished_id() {
    const EXPIRY: i64 = 7 * 24 * 3_600_000;
    let m = meta(CompleteCommit, 2);
    let idle_since = m.last_update_ms;
    assert_eq!(prepare_dead(&m, idle_since + EXPIRY - 1, EXPIRY), None);
    let t = prepare_dead(&m, idle_since + EXPIRY, EXPIRY).unwrap();
    assert_eq!((t.state, t.producer_epoch), (Dead, 2));
    assert!(t.is_tombstone() && t.partitions.is_empty());
    let mut m2 = meta(Empty, 2);
    m2.begin(t.clone());
    assert_eq!(
        prepare_init(Some(&m2), "txn", &init(None), None, NOW),
        Err(ErrorCode::ConcurrentTransactions),
        "requests wait for the tombstone"
    );
    for state in [Ongoing, PrepareCommit, PrepareAbort] {
        assert_eq!(
            prepare_dead(&meta(state, 2), i64::MAX, EXPIRY),
            None,
            "{state:?}"
        );
    }
    assert_eq!(prepare_dead(&m2, i64::MAX, EXPIRY), None, "pending");
}

// ---- The validity of transitions ----

#[test]
fn valid_previous_states_are_kafkas() {
    let all = [
        Empty,
        Ongoing,
        PrepareCommit,
        PrepareAbort,
        CompleteCommit,
        CompleteAbort,
        Dead,
        PrepareEpochFence,
    ];
    // Kafka 4.x's TransactionState, row by row: the target, then where it may come from.
    let kafka: [(TxnStatus, &[TxnStatus]); 8] = [
        (Empty, &[Empty, CompleteCommit, CompleteAbort]),
        (Ongoing, &[Ongoing, Empty, CompleteCommit, CompleteAbort]),
        (PrepareCommit, &[Ongoing]),
        (
            PrepareAbort,
            &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
        ),
        (CompleteCommit, &[PrepareCommit]),
        (CompleteAbort, &[PrepareAbort]),
        (Dead, &[Empty, CompleteAbort, CompleteCommit]),
        (PrepareEpochFence, &[Ongoing]),
    ];
    for (to, from) in kafka {
        for s in all {
            assert_eq!(
                valid_previous(to).contains(&s),
                from.contains(&s),
                "{s:?} -> {to:?}"
            );
        }
    }
}

/// `complete` refuses every transition the table does not allow, whatever else the
/// transit says.
#[test]
fn complete_refuses_every_invalid_previous_state() {
    let all = [
        Empty,
        Ongoing,
        PrepareCommit,
        PrepareAbort,
        CompleteCommit,
        CompleteAbort,
        Dead,
        PrepareEpochFence,
    ];
    let mut refused = 0;
    for from in all {
        for to in all {
            if valid_previous(to).contains(&from) {
                continue;
            }
            let mut m = meta(from, 3);
            let t = m.transit(to);
            m.pending = Some(t.clone());
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.complete(&t)));
            let message = outcome
                .expect_err(&format!("{from:?} -> {to:?} must panic"))
                .downcast::<String>()
                .map(|s| *s)
                .unwrap_or_default();
            assert!(
                message.contains("is not a valid previous state"),
                "{from:?} -> {to:?}: {message}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 64 - 19, "Kafka's table allows 19 pairs");
}

#[test]
#[should_panic(expected = "CompleteCommit is not a valid previous state of PrepareCommit")]
fn complete_from_an_invalid_previous_state_panics() {
    let mut m = meta(CompleteCommit, 3);
    let t = m.transit(PrepareCommit);
    m.pending = Some(t.clone());
    m.complete(&t);
}

#[test]
#[should_panic(expected = "is not a valid previous state of CompleteAbort")]
fn begin_from_an_invalid_previous_state_panics() {
    let mut m = meta(Ongoing, 3);
    let t = m.transit(CompleteAbort);
    m.begin(t);
}

#[test]
#[should_panic(expected = "with nothing pending")]
fn complete_without_a_pending_transition_panics() {
    let mut m = meta(Ongoing, 3);
    let t = write_of_end(prepare_end_v1(Some(&m), &end(3, TxnResult::Commit), NOW));
    m.complete(&t);
}

#[test]
#[should_panic(expected = "is pending")]
fn complete_of_another_transition_than_the_pending_one_panics() {
    let mut m = meta(Ongoing, 3);
    let commit = write_of_end(prepare_end_v1(Some(&m), &end(3, TxnResult::Commit), NOW));
    let abort = write_of_end(prepare_end_v1(Some(&m), &end(3, TxnResult::Abort), NOW));
    m.begin(commit);
    m.complete(&abort);
}

#[test]
#[should_panic(expected = "while Ongoing is pending")]
fn beginning_a_second_transition_panics() {
    let mut m = meta(Empty, 3);
    let add = write_of_add(prepare_add(
        Some(&m),
        PID,
        3,
        &parts(&[("a", 0)]),
        TxnVersion::V0,
        NOW,
    ));
    m.begin(add.clone());
    m.begin(add);
}

#[test]
#[should_panic(expected = "unexpected transition")]
fn complete_with_an_epoch_the_rules_do_not_allow_panics() {
    let mut m = meta(Ongoing, 3);
    let mut t = write_of_end(prepare_end_v1(Some(&m), &end(3, TxnResult::Commit), NOW));
    t.producer_epoch = 4;
    m.begin(t.clone());
    m.complete(&t);
}

#[test]
#[should_panic(expected = "never completed to Dead")]
fn complete_to_dead_panics() {
    let mut m = meta(Empty, 3);
    let t = prepare_dead(&m, i64::MAX, 0).unwrap();
    m.begin(t.clone());
    m.complete(&t);
}

#[test]
#[should_panic(expected = "PrepareEpochFence is never completed")]
fn complete_to_prepare_epoch_fence_panics() {
    let mut m = meta(Ongoing, 3);
    let t = prepare_fence(&m).unwrap();
    m.begin(t.clone());
    m.complete(&t);
}

#[test]
#[should_panic(expected = "never written as a value")]
fn a_tombstone_has_no_stored_value() {
    prepare_dead(&meta(Empty, 1), i64::MAX, 0)
        .unwrap()
        .to_stored();
}

// ---- Storage ----

/// Every kind of state survives to_stored, value v1 bytes and from_stored, but the last
/// epoch (not stored, -1 after a load, as Kafka).
#[test]
fn stored_state_round_trips_through_value_v1() {
    let mut ongoing = v2(meta(Ongoing, 8));
    ongoing.partitions = parts(&[("b", 2), ("a", 1), ("b", 0)]);
    ongoing.last_producer_epoch = 7;
    let mut rotated = meta(CompleteCommit, 0);
    rotated.previous_producer_id = PID - 1;
    let mut prepare = v2(meta(PrepareCommit, i16::MAX));
    prepare.next_producer_id = NEW_PID;
    let mut v1 = meta(Empty, 0);
    v1.client_version = TxnVersion::V1;
    for original in [ongoing, rotated, prepare, v1, meta(CompleteAbort, 3)] {
        let stored = original.transit(original.state).to_stored();
        let stored = StoredTxn {
            previous_producer_id: original.previous_producer_id,
            ..stored
        };
        let bytes = encode_value(&stored, 1);
        let decoded = decode_value(&bytes).unwrap();
        assert_eq!(decoded, stored);
        let loaded = TxnMeta::from_stored("txn".into(), decoded).unwrap();
        let expected = TxnMeta {
            last_producer_epoch: -1,
            ..original.clone()
        };
        assert_eq!(loaded, expected, "{:?}", original.state);
    }
}

#[test]
fn to_stored_groups_partitions_by_topic_and_writes_null_when_empty() {
    let mut m = meta(Ongoing, 2);
    m.partitions = parts(&[("b", 2), ("a", 1), ("b", 0)]);
    let stored = m.transit(Ongoing).to_stored();
    assert_eq!(
        stored.partitions,
        Some(vec![
            TxnPartitions {
                topic: "a".into(),
                partitions: vec![1]
            },
            TxnPartitions {
                topic: "b".into(),
                partitions: vec![0, 2]
            },
        ])
    );
    assert_eq!(stored.previous_producer_id, PID);
    assert_eq!(stored.next_producer_epoch, -1);
    assert_eq!(meta(Empty, 2).transit(Empty).to_stored().partitions, None);
}

/// The transition written is the state loaded: a write then a load (a coordinator
/// change) gives the state `complete` gave, but the last epoch.
#[test]
fn a_completed_transition_and_its_loaded_record_agree() {
    let mut m = v2(meta(Ongoing, 8));
    let t = write_of_end(prepare_end_v2(
        Some(&m),
        &end(8, TxnResult::Commit),
        None,
        NOW,
    ));
    let bytes = encode_value(&t.to_stored(), 1);
    apply(&mut m, t);
    let loaded = TxnMeta::from_stored("txn".into(), decode_value(&bytes).unwrap()).unwrap();
    assert_eq!(
        loaded,
        TxnMeta {
            last_producer_epoch: -1,
            ..m
        }
    );
}

#[test]
fn from_stored_ignores_an_empty_states_partitions() {
    let mut stored = meta(Ongoing, 1).transit(Ongoing).to_stored();
    stored.status = Empty;
    stored.start_ms = -1;
    let m = TxnMeta::from_stored("txn".into(), stored).unwrap();
    assert!(m.partitions.is_empty());
}

#[test]
fn from_stored_refuses_what_kafka_never_writes() {
    let good = meta(CompleteAbort, 1).transit(CompleteAbort).to_stored();
    let bad = [
        (
            StoredTxn {
                status: Dead,
                ..good.clone()
            },
            "status Dead",
        ),
        (
            StoredTxn {
                status: PrepareEpochFence,
                ..good.clone()
            },
            "status PrepareEpochFence",
        ),
        (
            StoredTxn {
                producer_id: -1,
                ..good.clone()
            },
            "producer id -1",
        ),
        (
            StoredTxn {
                producer_epoch: -1,
                ..good.clone()
            },
            "producer epoch -1",
        ),
        (
            StoredTxn {
                start_ms: -1,
                ..good.clone()
            },
            "no start time",
        ),
        (
            StoredTxn {
                client_transaction_version: 3,
                ..good.clone()
            },
            "client transaction version 3",
        ),
    ];
    for (stored, what) in bad {
        let err = TxnMeta::from_stored("txn".into(), stored).unwrap_err();
        assert!(err.contains(what) && err.contains("\"txn\""), "{err}");
    }
    assert!(TxnMeta::from_stored("txn".into(), good).is_ok());
}

// ---- Versions ----

#[test]
fn old_versions_get_invalid_producer_epoch_for_producer_fenced() {
    let fenced = ErrorCode::ProducerFenced;
    let old = ErrorCode::InvalidProducerEpoch;
    for (api, first) in [
        (TxnApi::InitProducerId, 4),
        (TxnApi::AddPartitionsToTxn, 2),
        (TxnApi::AddOffsetsToTxn, 2),
        (TxnApi::EndTxn, 2),
    ] {
        assert_eq!(error_for_version(fenced, api, first - 1), old, "{api:?}");
        assert_eq!(error_for_version(fenced, api, first), fenced, "{api:?}");
        assert_eq!(
            error_for_version(ErrorCode::ConcurrentTransactions, api, 0),
            ErrorCode::ConcurrentTransactions
        );
    }
}

#[test]
fn transaction_versions_from_requests_and_levels() {
    assert_eq!(TxnVersion::for_add_partitions(3), TxnVersion::V0);
    assert_eq!(TxnVersion::for_add_partitions(4), TxnVersion::V2);
    assert_eq!(TxnVersion::for_end_txn(4), TxnVersion::V0);
    assert_eq!(TxnVersion::for_end_txn(5), TxnVersion::V2);
    for v in [TxnVersion::V0, TxnVersion::V1, TxnVersion::V2] {
        assert_eq!(TxnVersion::from_level(v.level()), Some(v));
    }
    assert_eq!(TxnVersion::from_level(3), None);
    assert_eq!(TxnVersion::from_level(-1), None);
    assert!(!TxnVersion::V1.bumps_epoch() && TxnVersion::V2.bumps_epoch());
    assert_eq!(TxnVersion::V0.log_value_version(), 0);
    assert_eq!(TxnVersion::V1.log_value_version(), 1);
    assert!(!epoch_exhausted(i16::MAX - 2) && epoch_exhausted(i16::MAX - 1));
}
