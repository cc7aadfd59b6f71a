//! The seeded runs. `cargo test -p rill-broker --bin rill partition::sim` runs
//! `RILL_SIM_SEEDS` seeds (default 200) from `RILL_SIM_SEED_START` (default 0) in a few
//! seconds; `RILL_SIM_SEED=n` replays one, `RILL_SIM_TRACE=1` prints its every step.
//!
//! The long run, on every core, listing every failing seed:
//! `RILL_SIM_SEEDS=20000 cargo test -p rill-broker --bin rill partition::sim::tests::survey -- --ignored --exact --nocapture`
//! (`RILL_SIM_SECONDS=600` stops starting seeds after ten minutes; `--release` runs about
//! ten times as many in the time).

use std::time::Instant;

use super::{run_seed, Mutation, RunSummary, Sim, SimConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The seeds to run: one to replay, or a range.
fn seed_list(default_count: u64) -> Vec<u64> {
    match env_u64("RILL_SIM_SEED") {
        Some(one) => vec![one],
        None => {
            let start = env_u64("RILL_SIM_SEED_START").unwrap_or(0);
            let count = env_u64("RILL_SIM_SEEDS").unwrap_or(default_count);
            (start..start + count).collect()
        }
    }
}

/// The replay line of a failure message.
fn replay(seed: u64) -> String {
    format!(
        "replay: RILL_SIM_SEED={seed} RILL_SIM_TRACE=1 cargo test -p rill-broker --bin rill partition::sim::tests::seeds -- --nocapture"
    )
}

/// Runs one seed; a panic inside the run is a failure of that seed too.
fn run_caught(seed: u64) -> Result<RunSummary, String> {
    match std::panic::catch_unwind(|| run_seed(seed)) {
        Ok(r) => r,
        Err(e) => {
            let what = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("?");
            Err(format!(
                "partition simulation, seed {seed} ({}): panicked: {what}",
                replay(seed)
            ))
        }
    }
}

fn run_reporting(seed: u64) -> RunSummary {
    run_caught(seed).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `seeds` on `threads` threads (each simulation is single-threaded and owns all its
/// state) and prints what they did.
fn run_all(seeds: &[u64], threads: usize) {
    let began = Instant::now();
    let chunks: Vec<Vec<u64>> = (0..threads)
        .map(|t| seeds.iter().copied().skip(t).step_by(threads).collect())
        .collect();
    let summaries: Vec<RunSummary> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| s.spawn(move || chunk.into_iter().map(run_reporting).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                Err(e) => std::panic::resume_unwind(e),
            })
            .collect()
    });
    print_totals(&summaries, began);
}

/// Prints what the runs did, and checks they exercised what they claim to survive.
fn print_totals(summaries: &[RunSummary], began: Instant) {
    let sum = |f: fn(&RunSummary) -> u64| summaries.iter().map(f).sum::<u64>();
    println!(
        "partition simulation: {} seeds in {:.1?}: {} events, {} produces, {} batches acknowledged, {} kills, {} power losses, {} pauses, {} cuts, {} elections, {} truncations, {} committed batches replaced after a crash took them, {} transactional batches, {} end markers acknowledged, {} virtual s, slowest convergence after heal {} ms",
        summaries.len(),
        began.elapsed(),
        sum(|s| s.events),
        sum(|s| s.produces),
        sum(|s| s.acked_batches),
        sum(|s| s.kills),
        sum(|s| s.power_losses),
        sum(|s| s.pauses),
        sum(|s| s.cuts),
        sum(|s| s.elections),
        sum(|s| s.truncations),
        sum(|s| s.committed_rewrites),
        sum(|s| s.txn_batches),
        sum(|s| s.txn_markers_acked),
        sum(|s| s.virtual_ms) / 1000,
        summaries.iter().map(|s| s.converged_after_heal_ms).max().unwrap_or(0),
    );
    if summaries.len() >= 50 {
        for (what, n) in [
            ("acknowledged batches", sum(|s| s.acked_batches)),
            ("kills", sum(|s| s.kills)),
            ("power losses", sum(|s| s.power_losses)),
            ("pauses", sum(|s| s.pauses)),
            ("cuts", sum(|s| s.cuts)),
            ("elections", sum(|s| s.elections)),
            ("truncations", sum(|s| s.truncations)),
            ("transactional batches", sum(|s| s.txn_batches)),
            ("acknowledged end markers", sum(|s| s.txn_markers_acked)),
        ] {
            assert!(n > 0, "no {what} in {} seeds", summaries.len());
        }
    }
}

#[test]
fn seeds() {
    run_all(&seed_list(200), 2);
}

#[test]
fn replaying_a_seed_gives_the_same_run() {
    for seed in [3, 4] {
        let (a, b) = (run_reporting(seed), run_reporting(seed));
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} replayed differently"
        );
        assert_eq!(a.events, b.events);
        assert!(a.acked_batches > 0, "seed {seed} acknowledged nothing");
    }
    assert_ne!(run_reporting(3).trace_hash, run_reporting(5).trace_hash);
}

/// Runs `seed` with the deliberate bug `mutation`.
fn run_mutated(seed: u64, mutation: Mutation) -> Result<RunSummary, String> {
    let mut cfg = SimConfig::from_seed(seed);
    cfg.mutation = mutation;
    Sim::new(seed, cfg).run()
}

/// Runs seeds with `mutation` until one breaks an invariant; the message of the first.
fn first_violation(mutation: Mutation, seeds: std::ops::Range<u64>) -> Option<(u64, String)> {
    seeds
        .into_iter()
        .find_map(|seed| run_mutated(seed, mutation).err().map(|e| (seed, e)))
}

/// Runs `run` over `seeds` on `threads` threads, each taking the next seed not yet taken,
/// until every seed ran or `budget` has passed (no new seed starts after it); each result
/// with its seed, in no particular order.
fn run_spread<R: Send>(
    seeds: &[u64],
    threads: usize,
    budget: Option<std::time::Duration>,
    run: impl Fn(u64) -> R + Sync,
) -> Vec<(u64, R)> {
    let began = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while budget.is_none_or(|b| began.elapsed() < b) {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&seed) = seeds.get(i) else {
                            break;
                        };
                        out.push((seed, run(seed)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn a_follower_that_keeps_a_diverging_suffix_is_caught() {
    let (seed, e) = first_violation(Mutation::NoDivergenceCheck, 0..200)
        .expect("followers that never truncate went unnoticed for 200 seeds");
    assert!(
        e.contains("disagree") || e.contains("acknowledged batch lost"),
        "seed {seed}: {e}"
    );
}

#[test]
fn an_election_outside_the_isr_is_caught() {
    let (seed, e) = first_violation(Mutation::UncleanElection, 0..200)
        .expect("unclean elections went unnoticed for 200 seeds");
    assert!(
        e.contains("acknowledged batch lost")
            || e.contains("disagree")
            || e.contains("past the log end"),
        "seed {seed}: {e}"
    );
}

#[test]
fn followers_that_forget_transactions_are_caught() {
    let (seed, e) = first_violation(Mutation::FollowerSkipsTxnState, 0..200)
        .expect("followers that record nothing of transactions went unnoticed for 200 seeds");
    assert!(
        e.contains("reports last stable offset") || e.contains("last stable offset"),
        "seed {seed}: {e}"
    );
}

#[test]
fn a_deposed_leader_acknowledging_is_caught() {
    // The chaos-seed-21 loss (434f4c4): a deposed leader's waiting acks=all produces,
    // answered from the new leader's high watermark once the deposed leader had cut its
    // records away and copied the new leader's in their place.
    let (seed, e) = first_violation(Mutation::AckDeposedLeader, 0..400)
        .expect("acks=all answered by a deposed leader went unnoticed for 400 seeds");
    assert!(
        e.contains("answered acks=all for the batch") && e.contains("no longer holds"),
        "seed {seed}: {e}"
    );
}

/// Surveys `mutation` on every core over `RILL_SIM_SEEDS` seeds (default 2000) and prints
/// every violation: how often the simulator reaches what the mutation breaks. Fails when
/// no seed catches it.
/// `RILL_SIM_MUTATION=ack-deposed-leader RILL_SIM_SEEDS=5000 cargo test -p rill-broker --bin rill partition::sim::tests::mutation_survey -- --ignored --nocapture`
#[test]
#[ignore = "long: thousands of seeds with a deliberate bug"]
fn mutation_survey() {
    let name = std::env::var("RILL_SIM_MUTATION").unwrap_or_else(|_| "ack-deposed-leader".into());
    let mutation = match name.as_str() {
        "ack-deposed-leader" => Mutation::AckDeposedLeader,
        "no-divergence-check" => Mutation::NoDivergenceCheck,
        "unclean-election" => Mutation::UncleanElection,
        "follower-skips-txn-state" => Mutation::FollowerSkipsTxnState,
        other => panic!(
            "RILL_SIM_MUTATION={other} is not a mutation; use ack-deposed-leader, no-divergence-check, unclean-election or follower-skips-txn-state"
        ),
    };
    let seeds = seed_list(2_000);
    let mut failed: Vec<(u64, String)> = run_spread(&seeds, threads(), None, |seed| {
        let e = run_mutated(seed, mutation).err()?;
        let first = e.lines().next().unwrap_or_default().to_string();
        println!("seed {seed}: {first}");
        Some(first)
    })
    .into_iter()
    .filter_map(|(seed, e)| Some((seed, e?)))
    .collect();
    failed.sort_unstable();
    println!(
        "{mutation:?}: {} of {} seeds broke an invariant",
        failed.len(),
        seeds.len()
    );
    assert!(
        !failed.is_empty(),
        "{mutation:?} went unnoticed in {} seeds: the simulator does not reach what it breaks",
        seeds.len()
    );
}

/// The long run: every seed of the range on every core (or until `RILL_SIM_SECONDS` have
/// passed), every failing seed listed with what broke, then the totals:
/// `RILL_SIM_SEEDS=20000 cargo test -p rill-broker --bin rill partition::sim::tests::survey -- --ignored --exact --nocapture`.
#[test]
#[ignore = "long: thousands of seeds (see the module doc)"]
fn survey() {
    let seeds = seed_list(20_000);
    let budget = env_u64("RILL_SIM_SECONDS").map(std::time::Duration::from_secs);
    let threads = threads();
    let began = Instant::now();
    let results = run_spread(&seeds, threads, budget, |seed| {
        let r = run_caught(seed);
        if let Err(e) = &r {
            let first = e.lines().next().unwrap_or_default();
            println!("FAILED {first}");
        }
        r
    });
    let mut failed: Vec<u64> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(seed, _)| *seed)
        .collect();
    failed.sort_unstable();
    let ran: Vec<u64> = results.iter().map(|(seed, _)| *seed).collect();
    let passed: Vec<RunSummary> = results.into_iter().filter_map(|(_, r)| r.ok()).collect();
    println!(
        "survey: {} seeds run ({}..={}) in {:.1?} on {threads} threads, {} failed {failed:?}",
        ran.len(),
        ran.iter().min().copied().unwrap_or(0),
        ran.iter().max().copied().unwrap_or(0),
        began.elapsed(),
        failed.len(),
    );
    print_totals(&passed, began);
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
