//! Property test: random append / read / sync / flush / truncate /
//! delete-records / retention / crash / clean-restart sequences on the
//! in-memory backend must match a plain in-memory model of the log.
//! Seeded; a failure prints the seed, and `RILL_SEED=n` replays one.

use std::rc::Rc;

use bytes::Bytes;
use futures_lite::future::block_on;
use rill_storage::batch::{self, build, CheckedBatch};
use rill_storage::{FileBudget, LogConfig, MemoryBackend, PartitionLog};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone)]
struct ModelBatch {
    base: i64,
    last: i64,
    bytes: Vec<u8>,
}

fn config(rng: &mut Rng) -> LogConfig {
    LogConfig {
        segment_bytes: 4096 * (1 + rng.below(4)),
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes: 256 + rng.below(2048),
        batch_bytes_max: 6000,
        write_buffer_bytes_max: 8192 + 4096 * rng.below(4) as usize,
        write_chunk_bytes: 4096,
        tail_cache_bytes_max: rng.below(3) as usize * 3000,
        read_ahead_bytes: 4096 * (1 + rng.below(3) as usize),
        // Small, so syncs record recovery points that crashes then start from.
        recovery_point_interval_bytes: 1 + rng.below(16384),
        ..LogConfig::default()
    }
}

fn check_read(
    model: &[ModelBatch],
    lso: i64,
    got: &rill_storage::LogRead,
    offset: i64,
    max_bytes: usize,
    seed: u64,
) {
    let start = model.iter().position(|b| b.last >= offset);
    let Some(start) = start else {
        assert!(
            got.batches.is_empty(),
            "seed {seed}: read past end returned data"
        );
        return;
    };
    assert!(
        !got.batches.is_empty(),
        "seed {seed}: read at {offset} (lso {lso}) returned nothing"
    );
    let mut total = 0;
    for (i, b) in got.batches.iter().enumerate() {
        let m = &model[start + i];
        assert_eq!(
            &b[..],
            &m.bytes[..],
            "seed {seed}: batch {} differs (read at {offset})",
            m.base
        );
        batch::validate(b).unwrap_or_else(|e| panic!("seed {seed}: stored batch invalid: {e}"));
        total += b.len();
    }
    if got.batches.len() > 1 {
        assert!(total <= max_bytes, "seed {seed}: read exceeded max_bytes");
    }
}

fn run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let backend = MemoryBackend::new();
    let budget = FileBudget::new(64);
    let dir = std::path::PathBuf::from("/mem/topic-0");
    let mut cfg = config(&mut rng);
    let now = Rc::new(std::cell::Cell::new(1_000_000i64));
    let clock = {
        let now = now.clone();
        Rc::new(move || now.get()) as Rc<dyn Fn() -> i64>
    };
    block_on(async {
        let open = |cfg: LogConfig| {
            PartitionLog::open_with_clock(
                backend.clone(),
                dir.clone(),
                cfg,
                budget.clone(),
                clock.clone(),
            )
        };
        let mut log = open(cfg.clone()).await.unwrap();
        let mut model: Vec<ModelBatch> = Vec::new();
        let mut lso = 0i64;
        let mut leo = 0i64;
        let mut ts = 1_000i64;
        for step in 0..400 {
            let op = rng.below(100);
            if std::env::var("RILL_TRACE").is_ok() {
                eprintln!("step {step} op {op} lso {lso} leo {leo}");
            }
            match op {
                0..=44 => {
                    let n = 1 + rng.below(5) as usize;
                    let size = 80 + rng.below(2500) as usize;
                    ts += rng.below(50) as i64;
                    let mut b = build::sized(size, n, ts);
                    let checked = CheckedBatch::check(Bytes::from(b.clone())).unwrap();
                    let info = log.append(checked, 3).await.unwrap();
                    assert_eq!(info.base_offset, leo, "seed {seed} step {step}");
                    batch::set_base_offset(&mut b, leo);
                    batch::set_partition_leader_epoch(&mut b, 3);
                    let last = leo + n as i64 - 1;
                    model.push(ModelBatch {
                        base: leo,
                        last,
                        bytes: b,
                    });
                    leo = last + 1;
                    assert_eq!(log.log_end_offset(), leo);
                }
                45..=64 => {
                    let offset = lso + rng.below((leo - lso + 1) as u64) as i64;
                    let max_bytes = 1 + rng.below(12_000) as usize;
                    let got = log.read(offset, max_bytes).await.unwrap();
                    check_read(&model, lso, &got, offset, max_bytes, seed);
                }
                65..=71 => {
                    let d = log.sync().await.unwrap();
                    assert_eq!(d, leo, "seed {seed}: sync must cover everything appended");
                }
                72..=75 => log.flush().await.unwrap(),
                76..=78 => {
                    let to = lso + rng.below((leo - lso + 1) as u64) as i64;
                    let new_leo = log.truncate_to(to).await.unwrap();
                    model.retain(|b| b.last < to);
                    leo = model.last().map_or(to.min(leo), |b| b.last + 1);
                    if model.is_empty() {
                        leo = new_leo;
                    }
                    assert_eq!(new_leo, leo, "seed {seed}: truncate_to({to})");
                    lso = log.log_start_offset();
                }
                79..=81 => {
                    let to = lso + rng.below((leo - lso + 1) as u64) as i64;
                    lso = log.delete_records(to).await.unwrap();
                    assert_eq!(lso, to.max(lso));
                }
                82..=84 => {
                    cfg.retention_bytes = Some(rng.below(20_000));
                    log.set_config(cfg.clone()).unwrap();
                    let out = log.enforce_retention().await.unwrap();
                    cfg.retention_bytes = None;
                    log.set_config(cfg.clone()).unwrap();
                    assert!(out.log_start_offset >= lso);
                    if out.log_start_offset != lso {
                        // retention works on segment boundaries = batch boundaries
                        let new = out.log_start_offset;
                        assert!(
                            model.iter().any(|b| b.base == new) || new == leo,
                            "seed {seed}: lso {new} not at a batch start"
                        );
                    }
                    lso = out.log_start_offset;
                }
                85..=88 => {
                    if model.iter().any(|b| b.last >= lso) {
                        let b = &model[rng.below(model.len() as u64) as usize];
                        let h = batch::BatchHeader::parse(&b.bytes).unwrap();
                        let target = h.base_timestamp;
                        let expect = model
                            .iter()
                            .filter(|m| m.last >= lso)
                            .find_map(|m| batch::first_record_at_or_after(&m.bytes, target));
                        let got = log.offset_for_timestamp(target).await.unwrap();
                        assert_eq!(
                            got.map(|g| g.0),
                            expect.map(|e| e.0.max(lso)),
                            "seed {seed}: timestamp lookup {target}"
                        );
                    }
                }
                89..=92 => {
                    // crash: unsynced writes partly lost
                    let durable = log.durable_offset();
                    drop(log);
                    backend.crash(rng.next());
                    log = open(cfg.clone()).await.unwrap();
                    let new_leo = log.log_end_offset();
                    assert!(
                        new_leo >= durable,
                        "seed {seed}: lost durable data: leo {new_leo} < durable {durable}"
                    );
                    model.retain(|b| b.last < new_leo);
                    leo = model.last().map_or(new_leo, |b| b.last + 1);
                    assert_eq!(
                        leo, new_leo,
                        "seed {seed}: recovered end is not a batch boundary"
                    );
                    lso = log.log_start_offset();
                }
                93..=95 => {
                    log.close().await.unwrap();
                    drop(log);
                    if rng.below(2) == 0 {
                        backend.crash(rng.next()); // after a clean close nothing is lost
                    }
                    log = open(cfg.clone()).await.unwrap();
                    assert_eq!(log.log_end_offset(), leo, "seed {seed}: clean reopen");
                    assert_eq!(log.log_start_offset(), lso, "seed {seed}: clean reopen lso");
                }
                _ => {
                    now.set(now.get() + rng.below(10_000) as i64);
                    log.trim_caches();
                }
            }
        }
        // final full comparison
        let mut at = lso;
        let mut idx = model
            .iter()
            .position(|b| b.last >= lso)
            .unwrap_or(model.len());
        while at < leo {
            let got = log.read(at, 50_000).await.unwrap();
            assert!(!got.batches.is_empty());
            for b in &got.batches {
                assert_eq!(&b[..], &model[idx].bytes[..], "seed {seed}: final scan");
                at = model[idx].last + 1;
                idx += 1;
            }
        }
    });
}

#[test]
fn random_operation_sequences_match_model() {
    if let Ok(s) = std::env::var("RILL_SEED") {
        run(s.parse().expect("RILL_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("RILL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in 1..=seeds {
        let r = std::panic::catch_unwind(|| run(seed));
        if r.is_err() {
            panic!("model test failed; replay with RILL_SEED={seed}");
        }
    }
}
