//! The cleaner's tests: a model over random keyed writes, a crash at every step of a
//! pass, a follower copying a compacted leader, keyless records and gaps.
use std::cell::Cell;
use std::collections::BTreeMap;

use super::*;
use crate::log::test_support::*;
use crate::records::NoCodec;

/// One record as a reader sees it: offset, key, value (None: tombstone).
type Rec = (i64, Vec<u8>, Option<Vec<u8>>);

const DAY_MS: i64 = 24 * 3600 * 1000;

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        cleanup_compact: true,
        cleanup_delete: false,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: DAY_MS as u64,
        ..LogConfig::default()
    }
}

fn open_at(
    be: &MemoryBackend,
    clock: &Rc<Cell<i64>>,
) -> StorageResult<PartitionLog<MemoryBackend>> {
    let c = clock.clone();
    block_on(PartitionLog::open_with_clock(
        be.clone(),
        PathBuf::from("/mem/t-0"),
        cfg(),
        FileBudget::new(64),
        Rc::new(move || c.get()),
    ))
}

/// Every record of the log, in offset order.
fn read_all(log: &PartitionLog<MemoryBackend>) -> Vec<Rec> {
    block_on(async {
        let mut out = Vec::new();
        let mut at = log.log_start_offset();
        while at < log.log_end_offset() {
            let r = log.read(at, 1 << 20).await.unwrap();
            assert!(!r.batches.is_empty(), "no batch at {at} below the log end");
            for b in &r.batches {
                let h = batch::validate(b).unwrap();
                if h.is_control() {
                    at = h.last_offset() + 1;
                    continue;
                }
                for rec in records::parse(&h, &b[HEADER_BYTES..]).unwrap() {
                    assert!(rec.offset >= at, "offsets go backwards");
                    let value = rec.has_value.then(|| value_of(rec.raw));
                    out.push((rec.offset, rec.key.unwrap().to_vec(), value));
                }
                at = h.last_offset() + 1;
            }
        }
        out
    })
}

/// The value bytes of a record encoded by `build::batch` (tests use short keys
/// and values, so every varint is one byte).
fn value_of(raw: &[u8]) -> Vec<u8> {
    // len, attributes, ts delta, offset delta, key len, key, value len, value, headers
    let key_len = (raw[4] >> 1) as usize;
    let v = 5 + key_len;
    let value_len = (raw[v] >> 1) as usize;
    raw[v + 1..v + 1 + value_len].to_vec()
}

/// What a pass that mapped up to `mapped_end` at `now` must leave of `before`.
fn model(before: &[Rec], mapped_end: i64, expired_below: i64) -> Vec<Rec> {
    before
        .iter()
        .filter(|(o, k, v)| {
            if *o >= mapped_end {
                return true;
            }
            let newer = before
                .iter()
                .any(|(o2, k2, _)| k2 == k && o2 > o && *o2 < mapped_end);
            let expired = v.is_none() && *o < expired_below;
            !newer && !expired
        })
        .cloned()
        .collect()
}

/// One pass below `hw` with a 1 MiB key map and no throttle, no producer active.
fn clean(log: &PartitionLog<MemoryBackend>, hw: i64) -> StorageResult<Option<CleanOutcome>> {
    clean_keeping(log, hw, &HashMap::new())
}

/// The same, keeping the last batches `producers` names.
fn clean_keeping(
    log: &PartitionLog<MemoryBackend>,
    hw: i64,
    producers: &ProducerLastOffsets,
) -> StorageResult<Option<CleanOutcome>> {
    block_on(log.clean(
        hw,
        1 << 20,
        &NoCodec,
        &mut CleanerThrottle::unlimited(),
        producers,
    ))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Appends `batches` random batches of 1-4 records, one in ten a tombstone, half over
/// `keys` keys shared by every call and half over keys of this call only (`own`).
fn write(
    log: &PartitionLog<MemoryBackend>,
    rng: &mut Rng,
    batches: usize,
    keys: u64,
    now: i64,
    own: &str,
) {
    block_on(async {
        for _ in 0..batches {
            let n = 1 + rng.next() % 4;
            let owned: Vec<(Vec<u8>, Vec<u8>, bool)> = (0..n)
                .map(|_| {
                    let prefix = if rng.next().is_multiple_of(2) {
                        "k"
                    } else {
                        own
                    };
                    let k = format!("{prefix}{}", rng.next() % keys).into_bytes();
                    let v = format!("v{}", rng.next() % 1000).into_bytes();
                    (k, v, rng.next().is_multiple_of(10))
                })
                .collect();
            let recs: Vec<build::Rec<'_>> = owned
                .iter()
                .map(|(k, v, _)| build::Rec {
                    key: Some(k),
                    value: v,
                    timestamp_ms: now,
                })
                .collect();
            let mut b = build::batch(&recs);
            // Tombstones: rewrite the value length to -1 (build has no null values).
            for (i, (_, _, tomb)) in owned.iter().enumerate() {
                if *tomb {
                    b = tombstone(&b, i);
                }
            }
            log.append(CheckedBatch::check(Bytes::from(b)).unwrap(), 0)
                .await
                .unwrap();
        }
    })
}

/// `batch` with record `i` turned into a tombstone (value dropped), CRC redone.
fn tombstone(batch: &[u8], i: usize) -> Vec<u8> {
    let h = BatchHeader::parse(batch).unwrap();
    let recs = records::parse(&h, &batch[HEADER_BYTES..]).unwrap();
    let mut body = Vec::new();
    for (j, r) in recs.iter().enumerate() {
        if j != i {
            body.extend_from_slice(r.raw);
            continue;
        }
        let key_len = (r.raw[4] >> 1) as usize;
        let v = 5 + key_len;
        let mut rec = r.raw[1..v].to_vec(); // attributes .. key
        rec.push(1); // value length -1 (zig-zag)
        rec.push(0); // no headers
        body.push((rec.len() as u8) << 1);
        body.extend_from_slice(&rec);
    }
    let mut out = batch[..HEADER_BYTES].to_vec();
    out.extend_from_slice(&body);
    let len = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    batch::set_crc(&mut out);
    out
}

#[test]
fn compaction_keeps_the_latest_record_per_key_at_the_same_offsets() {
    let (mut merged, mut tombstones) = (0, 0);
    for seed in 1..=30u64 {
        let be = MemoryBackend::new();
        let clock = Rc::new(Cell::new(1_000_000_000));
        let log = open_at(&be, &clock).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut expected = Vec::new();
        let mut expired_below = i64::MIN;
        let mut passes: Vec<(i64, i64)> = Vec::new();
        for round in 0..4 {
            let batches = 60 + (rng.next() % 60) as usize;
            write(
                &log,
                &mut rng,
                batches,
                5 + seed % 40,
                clock.get(),
                &format!("r{round}-"),
            );
            let before = read_all(&log);
            // Every round of writes keeps what was there (the model applies to it).
            assert!(
                expected.iter().all(|r| before.contains(r)),
                "seed {seed}: a write lost records"
            );
            let hw = log.log_end_offset();
            // A small key map in some seeds: passes map a prefix of the dirty section.
            let map_bytes = if seed % 3 == 0 {
                40 * KEY_MAP_ENTRY_BYTES
            } else {
                1 << 20
            };
            let out = block_on(log.clean(
                hw,
                map_bytes,
                &NoCodec,
                &mut CleanerThrottle::unlimited(),
                &HashMap::new(),
            ))
            .unwrap();
            let Some(out) = out else {
                expected = before;
                continue;
            };
            let horizon = clock.get() - DAY_MS;
            expired_below = passes
                .iter()
                .filter(|(_, t)| *t < horizon)
                .map(|(e, _)| *e)
                .max()
                .unwrap_or(expired_below);
            passes.push((out.first_dirty_offset, clock.get()));
            expected = model(&before, out.first_dirty_offset, expired_below);
            let after = read_all(&log);
            assert_eq!(after, expected, "seed {seed} round {round}");
            assert!(out.bytes_written <= out.bytes_read);
            if out.segments_after < out.segments_before {
                merged += 1;
            }
            tombstones += out.tombstones_removed;
            clock.set(clock.get() + DAY_MS / 2 + 1);
        }
        // Reopened, the log reads the same.
        block_on(log.close()).unwrap();
        let log = open_at(&be, &clock).unwrap();
        assert_eq!(read_all(&log), expected, "seed {seed} after reopening");
    }
    assert!(
        merged > 10,
        "small cleaned segments were merged in only {merged} passes"
    );
    assert!(tombstones > 10, "only {tombstones} tombstones expired");
}

#[test]
fn a_crash_at_any_step_of_a_clean_leaves_the_records_before_or_after_it() {
    let clock = Rc::new(Cell::new(1_000_000_000));
    let setup = || {
        let be = MemoryBackend::new();
        let log = open_at(&be, &clock).unwrap();
        write(&log, &mut Rng(77), 400, 12, clock.get(), "own");
        block_on(log.sync()).unwrap();
        let before = read_all(&log);
        (be, log, before)
    };
    let (_, log, before) = setup();
    let hw = log.log_end_offset();
    let out = clean(&log, hw).unwrap().unwrap();
    let after = read_all(&log);
    assert!(
        after.len() < before.len() && out.segments_before > 3,
        "{out:?}"
    );
    let (mut steps, mut partials) = (0, 0);
    for n in 0.. {
        let (be, log, _) = setup();
        be.fail_after(n);
        let done = clean(&log, hw);
        be.crash(n + 1);
        be.set_failing(false);
        drop(log);
        let log = open_at(&be, &clock).unwrap();
        let seen = read_all(&log);
        // Each group of segments is swapped in on its own: a crash between two swaps
        // leaves the first groups compacted and the rest as they were. Every record is
        // then one of `before`, every one of `after` is there, and every one missing
        // has a later record of its key still in the log.
        let partial = seen.iter().all(|r| before.contains(r))
            && after.iter().all(|r| seen.contains(r))
            && before
                .iter()
                .filter(|r| !seen.contains(r))
                .all(|(o, k, _)| seen.iter().any(|(o2, k2, _)| k2 == k && o2 > o));
        assert!(seen == before || seen == after || partial,
            "crash after {n} operations: {} records, before {}, after {}; files {:?}; clean {done:?}",
            seen.len(), before.len(), after.len(), be_names(&be));
        if seen != before && seen != after {
            partials += 1;
        }
        // The next clean finishes the job.
        clean(&log, hw).unwrap();
        assert_eq!(
            read_all(&log),
            after,
            "crash after {n} operations, cleaned again"
        );
        let names = be_names(&be);
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".cleaned") || n == "cleaner.swap"),
            "leftovers: {names:?}"
        );
        if done.is_ok() {
            steps = n;
            break;
        }
    }
    assert!(
        steps > 10,
        "a clean of several segments takes more than {steps} operations"
    );
    assert!(partials > 0, "no crash fell between two groups' swaps");
}

fn be_names(be: &MemoryBackend) -> Vec<String> {
    block_on(be.list_dir(Path::new("/mem/t-0"))).unwrap()
}

#[test]
fn a_follower_copying_a_compacted_leader_holds_the_same_records_at_the_same_offsets() {
    let clock = Rc::new(Cell::new(1_000_000_000));
    let be = MemoryBackend::new();
    let leader = open_at(&be, &clock).unwrap();
    write(&leader, &mut Rng(5), 300, 20, clock.get(), "own");
    let hw = leader.log_end_offset();
    let out = clean(&leader, hw).unwrap().unwrap();
    assert!(out.records_removed > 100, "{out:?}");
    let fbe = MemoryBackend::new();
    let follower = open_at(&fbe, &clock).unwrap();
    // The follower fetches from its log end, as replication does: the gaps compaction
    // left are skipped, never filled.
    block_on(async {
        while follower.log_end_offset() < leader.log_end_offset() {
            let r = leader.read(follower.log_end_offset(), 4096).await.unwrap();
            assert!(!r.batches.is_empty());
            for b in r.batches {
                follower
                    .append_replica(CheckedBatch::check(b).unwrap())
                    .await
                    .unwrap();
            }
        }
    });
    assert_eq!(read_all(&follower), read_all(&leader));
    // Each compacts on its own: their segments end at different offsets, so each may
    // keep superseded records the other removed, but no offset holds different records
    // in the two, and both keep the latest record of every key.
    let before = read_all(&follower);
    write(&leader, &mut Rng(6), 100, 20, clock.get(), "more");
    block_on(async {
        while follower.log_end_offset() < leader.log_end_offset() {
            let r = leader.read(follower.log_end_offset(), 4096).await.unwrap();
            for b in r.batches {
                follower
                    .append_replica(CheckedBatch::check(b).unwrap())
                    .await
                    .unwrap();
            }
        }
    });
    let hw = leader.log_end_offset();
    clean(&leader, hw).unwrap();
    let uncompacted = read_all(&follower);
    clean(&follower, hw).unwrap();
    let (l, f) = (read_all(&leader), read_all(&follower));
    assert_ne!(f, uncompacted, "the follower compacted");
    assert_ne!(f, before);
    let latest = |recs: &[Rec]| -> BTreeMap<Vec<u8>, Rec> {
        recs.iter().map(|r| (r.1.clone(), r.clone())).collect()
    };
    assert_eq!(latest(&l), latest(&uncompacted));
    assert_eq!(latest(&f), latest(&uncompacted));
    let by_offset: BTreeMap<i64, &Rec> = l.iter().map(|r| (r.0, r)).collect();
    for r in &f {
        assert!(uncompacted.contains(r));
        if let Some(lr) = by_offset.get(&r.0) {
            assert_eq!(*lr, r, "offset {} differs between the replicas", r.0);
        }
    }
}

#[test]
fn keyless_records_go_and_a_gap_at_a_segment_end_reads_on() {
    let be = MemoryBackend::new();
    let clock = Rc::new(Cell::new(1_000_000_000));
    let log = open_at(&be, &clock).unwrap();
    block_on(async {
        let value = vec![7u8; 300];
        // One key: every closed segment but the last loses all its records.
        for _ in 0..40 {
            let key = b"a".to_vec();
            let recs = [
                build::Rec {
                    key: Some(&key),
                    value: &value,
                    timestamp_ms: 1,
                },
                build::Rec {
                    key: None,
                    value: &value,
                    timestamp_ms: 1,
                },
            ];
            log.append(
                CheckedBatch::check(Bytes::from(build::batch(&recs))).unwrap(),
                0,
            )
            .await
            .unwrap();
        }
        let hw = log.log_end_offset();
        let out = log
            .clean(
                hw,
                1 << 20,
                &NoCodec,
                &mut CleanerThrottle::unlimited(),
                &HashMap::new(),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(out.records_removed > 40);
        assert!(out.segments_before > 3, "{out:?}");
        // The first segments are empty now: a read there goes on to the next batch,
        // the one record kept of the closed segments.
        let r = log.read(1, 1 << 20).await.unwrap();
        let h = BatchHeader::parse(&r.batches[0]).unwrap();
        let recs = records::parse(&h, &r.batches[0][HEADER_BYTES..]).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].key, Some(&b"a"[..]));
        assert!(recs[0].offset > 10 && recs[0].offset < out.first_dirty_offset);
    });
}

#[test]
fn truncating_into_a_gap_ends_the_log_at_the_offset_asked_for() {
    let clock = Rc::new(Cell::new(1_000_000_000));
    let be = MemoryBackend::new();
    let log = open_at(&be, &clock).unwrap();
    let batch_at = |base: i64, key: &[u8]| {
        let recs: Vec<build::Rec<'_>> = (0..3)
            .map(|_| build::Rec {
                key: Some(key),
                value: b"v",
                timestamp_ms: 1,
            })
            .collect();
        let mut b = build::batch(&recs);
        batch::set_base_offset(&mut b, base);
        CheckedBatch::check(Bytes::from(b)).unwrap()
    };
    block_on(async {
        // Offsets 3..10 are a gap, as a compacted leader's log has them.
        log.append_replica(batch_at(0, b"a")).await.unwrap();
        log.append_replica(batch_at(10, b"b")).await.unwrap();
        assert_eq!(log.log_end_offset(), 13);
        assert!(
            log.append_replica(batch_at(12, b"c")).await.is_err(),
            "an overlap is refused"
        );
        assert_eq!(log.truncate_to(5).await.unwrap(), 5);
        // A new leader's batch at 5 continues the log.
        log.append_replica(batch_at(5, b"c")).await.unwrap();
        assert_eq!(log.log_end_offset(), 8);
    });
    let keys: Vec<(i64, Vec<u8>)> = read_all(&log).into_iter().map(|r| (r.0, r.1)).collect();
    let want: Vec<(i64, Vec<u8>)> = [0, 1, 2]
        .into_iter()
        .map(|o| (o, b"a".to_vec()))
        .chain([5, 6, 7].into_iter().map(|o| (o, b"c".to_vec())))
        .collect();
    assert_eq!(keys, want);
}

#[test]
fn readers_during_a_clean_see_every_record_it_keeps_and_nothing_else() {
    let clock = Rc::new(Cell::new(1_000_000_000));
    let be = MemoryBackend::new();
    let log = open_at(&be, &clock).unwrap();
    write(&log, &mut Rng(11), 400, 15, clock.get(), "own");
    let before = read_all(&log);
    let hw = log.log_end_offset();
    // Reads and opens take a few polls, so readers wait across the cleaner's swaps.
    be.set_read_yields(3);
    let done = Cell::new(false);
    let reader = async {
        let mut passes: Vec<Vec<Rec>> = Vec::new();
        while !done.get() {
            // One pass over the log, from the start, as a consumer reads it.
            let mut seen = Vec::new();
            let mut at = log.log_start_offset();
            while at < log.log_end_offset() {
                let r = log.read(at, 2048).await.unwrap();
                assert!(!r.batches.is_empty(), "no batch at {at} below the log end");
                for b in &r.batches {
                    let h = batch::validate(b).unwrap();
                    for rec in records::parse(&h, &b[HEADER_BYTES..]).unwrap() {
                        assert!(rec.offset >= at, "offsets go backwards at {at}");
                        let value = rec.has_value.then(|| value_of(rec.raw));
                        seen.push((rec.offset, rec.key.unwrap().to_vec(), value));
                    }
                    at = h.last_offset() + 1;
                }
            }
            passes.push(seen);
            futures_lite::future::yield_now().await;
        }
        passes
    };
    let cleaner = async {
        let out = log
            .clean(
                hw,
                1 << 20,
                &NoCodec,
                &mut CleanerThrottle::unlimited(),
                &HashMap::new(),
            )
            .await
            .unwrap()
            .unwrap();
        done.set(true);
        out
    };
    let (passes, out) = block_on(futures_lite::future::zip(reader, cleaner));
    assert!(out.segments_before > 3, "{out:?}");
    let after = read_all(&log);
    assert!(after.len() < before.len());
    let partial = passes
        .iter()
        .filter(|p| **p != before && **p != after)
        .count();
    assert!(
        passes.len() > 3 && partial > 0,
        "{} reads, {partial} between the swaps",
        passes.len()
    );
    for (i, seen) in passes.iter().enumerate() {
        assert!(
            seen.iter().all(|r| before.contains(r)),
            "read {i}: a record never written"
        );
        let missing: Vec<&Rec> = after.iter().filter(|r| !seen.contains(r)).collect();
        assert!(
            missing.is_empty(),
            "read {i} missed records the clean keeps: {missing:?}"
        );
    }
}

/// The I/O budget's arithmetic, on a clock the test moves: pauses bring the rate back to
/// the limit, small debts wait for the next batch, and idle time gives at most
/// THROTTLE_CREDIT of unused budget.
#[test]
fn throttle_paces_io_to_its_rate_and_keeps_at_most_a_second_of_credit() {
    let near = |got: Option<Duration>, want_ms: f64| {
        let got = got.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        assert!(
            (got - want_ms).abs() < 0.01,
            "pause {got} ms, expected {want_ms} ms"
        );
    };
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut t = CleanerThrottle::new(Some(1_000_000));
    t.since = t0;
    // Half a megabyte at once at 1 MB/s: half a second ahead.
    near(t.spend(500_000, t0), 500.0);
    // After that pause it is on schedule.
    assert_eq!(t.spend(0, ms(500)), None);
    // Under a millisecond of debt is carried, not slept.
    assert_eq!(t.spend(500, ms(500)), None);
    near(t.spend(1_000, ms(500)), 1.5);
    // Idle for ten seconds: one second of budget may be spent at once, not ten.
    assert_eq!(t.spend(1_000_000, ms(10_500)), None);
    near(t.spend(2_000, ms(10_500)), 2.0);
    // A rate of 0 or none never pauses.
    for r in [None, Some(0)] {
        let mut u = CleanerThrottle::new(r);
        assert_eq!(u.spend(u64::MAX / 2, t0), None);
    }
}

/// `batch` stamped as producer `pid`'s (epoch `epoch`, first sequence `seq`), CRC redone.
fn idempotent(mut batch: Vec<u8>, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    batch[43..51].copy_from_slice(&pid.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&seq.to_be_bytes());
    batch::set_crc(&mut batch);
    batch
}

#[test]
fn an_active_producers_last_batch_stays_as_an_empty_header_when_its_records_go() {
    let clock = Rc::new(Cell::new(1_000_000_000));
    let be = MemoryBackend::new();
    let log = open_at(&be, &clock).unwrap();
    let keyed = |ts: i64| {
        let recs: Vec<build::Rec<'_>> = [&b"a"[..], b"b", b"c"]
            .into_iter()
            .map(|k| build::Rec {
                key: Some(k),
                value: b"old",
                timestamp_ms: ts,
            })
            .collect();
        build::batch(&recs)
    };
    // Producer 7 (epoch 2) writes two batches, producer 9 one; an unowned batch supersedes
    // every key of them, and other records fill closed segments.
    let owned = [
        idempotent(keyed(100), 7, 2, 0),
        idempotent(keyed(105), 7, 2, 3),
        idempotent(keyed(110), 9, 0, 0),
        keyed(120),
    ];
    block_on(async {
        for b in owned {
            log.append(CheckedBatch::check(Bytes::from(b)).unwrap(), 4)
                .await
                .unwrap();
        }
    });
    write(&log, &mut Rng(5), 300, 3, clock.get(), "k");
    let hw = log.log_end_offset();
    // Producer 7 is active with its last batch at offsets 3..=5; producer 9 is not.
    let producers: ProducerLastOffsets = [(7, 5)].into_iter().collect();
    let out = clean_keeping(&log, hw, &producers).unwrap().unwrap();
    assert_eq!(out.empty_batches_kept, 1, "{out:?}");

    let first_batches = |log: &PartitionLog<MemoryBackend>| {
        block_on(async {
            let r = log.read(0, 1 << 20).await.unwrap();
            r.batches
                .iter()
                .map(|b| (batch::validate(b).unwrap(), b.len()))
                .take(2)
                .collect::<Vec<_>>()
        })
    };
    let check = |log: &PartitionLog<MemoryBackend>| {
        let got = first_batches(log);
        let (h, len) = got[0];
        assert_eq!(
            (h.base_offset, h.last_offset(), h.record_count, len),
            (3, 5, 0, HEADER_BYTES),
            "producer 7's last batch is its header alone, at its offsets: {got:?}"
        );
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 2, 3)
        );
        assert_eq!((h.base_timestamp, h.max_timestamp), (105, 105));
        assert_eq!(h.partition_leader_epoch, 4);
        assert!(
            got[1].0.producer_id < 0,
            "producer 9's batch and producer 7's first batch went: {got:?}"
        );
    };
    check(&log);
    // Every remaining record is the latest of its key; the empty batch holds none.
    let after = read_all(&log);
    assert!(after.iter().all(|(o, _, _)| *o > 8), "{after:?}");
    assert_eq!(after[0].0, 9, "{after:?}");

    // It survives a reopen (recovery reads a batch without records) and another pass,
    // and goes once its producer is no longer active.
    block_on(log.close()).unwrap();
    drop(log);
    let log = open_at(&be, &clock).unwrap();
    check(&log);
    write(&log, &mut Rng(6), 300, 3, clock.get(), "k");
    let hw = log.log_end_offset();
    clean_keeping(&log, hw, &producers).unwrap().unwrap();
    check(&log);
    write(&log, &mut Rng(7), 300, 3, clock.get(), "k");
    let hw = log.log_end_offset();
    clean(&log, hw).unwrap().unwrap();
    let h = first_batches(&log)[0].0;
    assert!(h.producer_id < 0, "{h:?}");
}

/// Segments of a few keyed batches each, rolled by hand so they are small enough to merge,
/// with an abort in every one but the fourth; returns the aborted transactions.
fn write_with_aborts(log: &PartitionLog<MemoryBackend>, now: i64) -> Vec<AbortedTxn> {
    let mut rng = Rng(9);
    let mut aborted = Vec::new();
    for pid in 0..6 {
        let first = log.log_end_offset();
        write(log, &mut rng, 3, 6, now, "own");
        if pid != 3 {
            aborted.push(append_abort(log, pid, first, None));
        }
        roll(log);
    }
    aborted
}

/// Every closed segment's `.txnindex` holds exactly the entries whose markers it holds,
/// none exists without any, and no cleaned file is left.
fn check_txn_indexes(be: &MemoryBackend, log: &PartitionLog<MemoryBackend>, all: &[AbortedTxn]) {
    let segments: Vec<(i64, i64)> = {
        let s = log.state.borrow();
        s.closed
            .values()
            .map(|g| (g.base_offset, g.next_offset))
            .collect()
    };
    let mut with_entries = 0;
    for (base, next) in segments {
        let own: Vec<_> = all
            .iter()
            .filter(|e| e.last_offset >= base && e.last_offset < next)
            .copied()
            .collect();
        with_entries += usize::from(!own.is_empty());
        let want = (!own.is_empty()).then_some(own);
        assert_eq!(stored_aborted(be, base), want, "segment {base}..{next}");
    }
    let names = be_names(be);
    let txn_files = names.iter().filter(|n| n.ends_with(".txnindex")).count();
    assert_eq!(txn_files, with_entries, "stray indexes: {names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".cleaned") || n == "cleaner.swap"),
        "leftovers: {names:?}"
    );
}

#[test]
fn a_compaction_pass_concatenates_the_aborted_txns_of_the_segments_it_merges() {
    let be = MemoryBackend::new();
    let clock = Rc::new(Cell::new(1_000_000_000));
    let log = open_at(&be, &clock).unwrap();
    let aborted = write_with_aborts(&log, clock.get());
    check_txn_indexes(&be, &log, &aborted);
    let hw = log.log_end_offset();
    let out = clean(&log, hw).unwrap().unwrap();
    assert!(
        out.segments_after < out.segments_before && out.records_removed > 0,
        "{out:?}"
    );
    // The markers stay where they were, and so do their entries, now in the merged
    // segments' indexes; the merged-away segments' indexes are gone.
    assert_eq!(all_aborted(&log), aborted);
    check_txn_indexes(&be, &log, &aborted);
    let merged = stored_aborted(&be, 0).unwrap();
    assert!(
        merged.len() >= 2,
        "the first group holds several segments' aborts: {merged:?}"
    );
    block_on(log.close()).unwrap();
    let log = open_at(&be, &clock).unwrap();
    assert_eq!(all_aborted(&log), aborted);
    check_txn_indexes(&be, &log, &aborted);
}

#[test]
fn a_crash_at_any_step_of_a_clean_keeps_every_aborted_txn_in_its_segments_index() {
    let clock = Rc::new(Cell::new(1_000_000_000));
    let setup = || {
        let be = MemoryBackend::new();
        let log = open_at(&be, &clock).unwrap();
        let aborted = write_with_aborts(&log, clock.get());
        block_on(log.sync()).unwrap();
        (be, log, aborted)
    };
    let (_, log, aborted) = setup();
    let hw = log.log_end_offset();
    let mut steps = 0;
    for n in 0.. {
        let (be, log, _) = setup();
        be.fail_after(n);
        let done = clean(&log, hw);
        be.crash(n + 1);
        be.set_failing(false);
        drop(log);
        let log = open_at(&be, &clock).unwrap();
        assert_eq!(
            all_aborted(&log),
            aborted,
            "crash after {n} operations; files {:?}; clean {done:?}",
            be_names(&be)
        );
        check_txn_indexes(&be, &log, &aborted);
        clean(&log, hw).unwrap();
        assert_eq!(all_aborted(&log), aborted, "crash after {n}, cleaned again");
        check_txn_indexes(&be, &log, &aborted);
        if done.is_ok() {
            steps = n;
            break;
        }
    }
    assert!(steps > 10, "a clean takes more than {steps} operations");
}

#[test]
fn swap_files_of_both_versions_decode() {
    let swap = Swap {
        bases: vec![0, 17, 40],
        has_txn_index: true,
    };
    assert_eq!(Swap::decode(&swap.encode()), Ok(swap));
    // Version 1 (before aborted-transaction indexes): the bases alone.
    let mut v1 = Vec::new();
    for b in [5i64, 9] {
        v1.extend_from_slice(&b.to_le_bytes());
    }
    let old = crate::checkpoint::seal(SWAP_MAGIC, 1, &v1);
    assert_eq!(
        Swap::decode(&old),
        Ok(Swap {
            bases: vec![5, 9],
            has_txn_index: false
        })
    );
    let mut bad = old.clone();
    bad[12] ^= 1;
    assert!(Swap::decode(&bad).is_err());
}

/// `batch` stamped as a transactional batch of producer `pid` (epoch 0), CRC redone.
fn transactional(batch: Vec<u8>, pid: i64, seq: i32) -> Vec<u8> {
    let mut b = idempotent(batch, pid, 0, seq);
    let attrs = i16::from_be_bytes([b[21], b[22]]) | 0x10;
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch::set_crc(&mut b);
    b
}

/// Every batch header of the log, in offset order.
fn headers(log: &PartitionLog<MemoryBackend>) -> Vec<BatchHeader> {
    block_on(async {
        let mut out = Vec::new();
        let mut at = log.log_start_offset();
        while at < log.log_end_offset() {
            let r = log.read(at, 1 << 20).await.unwrap();
            for b in &r.batches {
                let h = batch::validate(b).unwrap();
                at = h.last_offset() + 1;
                out.push(h);
            }
        }
        out
    })
}

/// A committed transaction of producer 1 over keys t-a, t-b, t-c (offsets 0..=2, COMMIT
/// marker at 3), then an aborted one over the same keys (4..=6, ABORT marker at 7, its
/// index entry), then closed segments of other keys. Returns the abort's entry.
fn write_committed_then_aborted(log: &PartitionLog<MemoryBackend>, now: i64) -> AbortedTxn {
    use crate::txn::{build_marker, ControlKind, EndTxnMarker};
    let keyed = |value: &[u8]| {
        let recs: Vec<build::Rec<'_>> = [&b"t-a"[..], b"t-b", b"t-c"]
            .into_iter()
            .map(|k| build::Rec {
                key: Some(k),
                value,
                timestamp_ms: now,
            })
            .collect();
        build::batch(&recs)
    };
    let commit = EndTxnMarker {
        kind: ControlKind::Commit,
        coordinator_epoch: 0,
    };
    block_on(async {
        for b in [
            transactional(keyed(b"committed"), 1, 0),
            build_marker(1, 0, commit, now),
            transactional(keyed(b"aborted"), 1, 3),
        ] {
            log.append(CheckedBatch::check(Bytes::from(b)).unwrap(), 0)
                .await
                .unwrap();
        }
    });
    let entry = append_abort(log, 1, 4, None);
    assert_eq!(entry.last_offset, 7);
    write(log, &mut Rng(11), 40, 20, now, "f");
    roll(log);
    entry
}

#[test]
fn aborted_records_are_never_mapped_and_go_and_their_marker_goes_a_pass_later() {
    for keep_empty in [false, true] {
        let clock = Rc::new(Cell::new(1_000_000_000));
        let be = MemoryBackend::new();
        let log = open_at(&be, &clock).unwrap();
        let entry = write_committed_then_aborted(&log, clock.get());
        // With `keep_empty`, producer 1 is active and its last batch is the aborted one.
        let producers: ProducerLastOffsets = if keep_empty {
            [(1, 6)].into_iter().collect()
        } else {
            HashMap::new()
        };
        let t = |log: &PartitionLog<MemoryBackend>| -> Vec<Rec> {
            read_all(log)
                .into_iter()
                .filter(|(_, k, _)| k.starts_with(b"t-"))
                .collect()
        };
        let committed: Vec<Rec> = [(0, "t-a"), (1, "t-b"), (2, "t-c")]
            .into_iter()
            .map(|(o, k)| (o, k.as_bytes().to_vec(), Some(b"committed".to_vec())))
            .collect();
        let out = clean_keeping(&log, log.log_end_offset(), &producers)
            .unwrap()
            .unwrap();
        // The aborted records did not hide the committed ones, and are gone.
        assert_eq!(t(&log), committed, "keep_empty {keep_empty}");
        assert_eq!(out.aborted_records_removed, 3, "{out:?}");
        assert_eq!(out.markers_removed, 0, "{out:?}");
        let kinds = |log: &PartitionLog<MemoryBackend>| -> Vec<(i64, bool, i32)> {
            headers(log)
                .into_iter()
                .filter(|h| h.producer_id == 1)
                .map(|h| (h.base_offset, h.is_control(), h.record_count))
                .collect()
        };
        let kept_empty = if keep_empty {
            vec![(4, false, 0)]
        } else {
            vec![]
        };
        let mut want = vec![(0, false, 3), (3, true, 1)];
        want.extend(kept_empty.clone());
        want.push((7, true, 1));
        assert_eq!(
            kinds(&log),
            want,
            "keep_empty {keep_empty}: both markers stay a pass"
        );
        assert_eq!(all_aborted(&log), vec![entry]);

        // A pass past delete.retention.ms: the COMMIT marker stays (its transaction's batch
        // does), the ABORT marker and its entry go unless the empty batch is still there.
        clock.set(clock.get() + 2 * DAY_MS);
        write(&log, &mut Rng(12), 40, 20, clock.get(), "g");
        roll(&log);
        let out = clean_keeping(&log, log.log_end_offset(), &producers)
            .unwrap()
            .unwrap();
        assert_eq!(t(&log), committed, "keep_empty {keep_empty}");
        let mut want = vec![(0, false, 3), (3, true, 1)];
        if keep_empty {
            want.extend(kept_empty);
            want.push((7, true, 1));
            assert_eq!(all_aborted(&log), vec![entry]);
            assert_eq!(out.markers_removed, 0, "{out:?}");
        } else {
            assert_eq!(all_aborted(&log), vec![], "the entry went with its marker");
            assert_eq!(out.markers_removed, 1, "{out:?}");
        }
        assert_eq!(kinds(&log), want, "keep_empty {keep_empty}");
        let names = be_names(&be);
        assert_eq!(
            names.iter().filter(|n| n.ends_with(".txnindex")).count(),
            usize::from(keep_empty),
            "{names:?}"
        );
        // It all reads back the same after a reopen.
        block_on(log.close()).unwrap();
        drop(log);
        let log = open_at(&be, &clock).unwrap();
        assert_eq!(t(&log), committed);
        assert_eq!(kinds(&log), want);
    }
}

#[test]
fn a_commit_marker_goes_once_its_transactions_records_are_compacted_away() {
    let clock = Rc::new(Cell::new(1_000_000_000));
    let be = MemoryBackend::new();
    let log = open_at(&be, &clock).unwrap();
    write_committed_then_aborted(&log, clock.get());
    // Newer plain records of t-a, t-b and t-c supersede the committed ones.
    block_on(async {
        let recs: Vec<build::Rec<'_>> = [&b"t-a"[..], b"t-b", b"t-c"]
            .into_iter()
            .map(|k| build::Rec {
                key: Some(k),
                value: b"newer",
                timestamp_ms: clock.get(),
            })
            .collect();
        log.append(
            CheckedBatch::check(Bytes::from(build::batch(&recs))).unwrap(),
            0,
        )
        .await
        .unwrap();
    });
    roll(&log);
    clean(&log, log.log_end_offset()).unwrap().unwrap();
    let markers = |log: &PartitionLog<MemoryBackend>| -> Vec<i64> {
        headers(log)
            .into_iter()
            .filter(|h| h.is_control())
            .map(|h| h.base_offset)
            .collect()
    };
    assert_eq!(
        markers(&log),
        vec![3, 7],
        "the pass that removes the records keeps both markers"
    );
    // Within delete.retention.ms the markers stay; past it, both go.
    clock.set(clock.get() + DAY_MS / 2);
    write(&log, &mut Rng(13), 40, 20, clock.get(), "g");
    roll(&log);
    clean(&log, log.log_end_offset()).unwrap().unwrap();
    assert_eq!(markers(&log), vec![3, 7]);
    clock.set(clock.get() + DAY_MS);
    write(&log, &mut Rng(14), 40, 20, clock.get(), "h");
    roll(&log);
    let out = clean(&log, log.log_end_offset()).unwrap().unwrap();
    assert_eq!(markers(&log), Vec::<i64>::new(), "{out:?}");
    assert_eq!(out.markers_removed, 2);
    assert_eq!(all_aborted(&log), vec![]);
    let newer: Vec<Rec> = read_all(&log)
        .into_iter()
        .filter(|(_, k, _)| k.starts_with(b"t-"))
        .collect();
    assert_eq!(newer.len(), 3);
    assert!(newer
        .iter()
        .all(|(_, _, v)| v.as_deref() == Some(&b"newer"[..])));
}
