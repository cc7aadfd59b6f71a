//! Incremental (cooperative) rebalancing: two rdkafka consumers with
//! `partition.assignment.strategy=cooperative-sticky` share a 6-partition topic, then a third
//! joins while records keep arriving. The first two never give up all of their partitions
//! (every revoke they see is a strict part of what they own, and they keep consuming through
//! the rebalance), their final partitions are a subset of what they had (sticky), the group
//! ends Stable with three members on the cooperative protocol (DescribeGroups), and every
//! record produced, before, during and after the join, is consumed exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::groups::{
    close_bounded, decode_assignment, describe_group, group_options, RebalanceEvent, TestGroup,
};
use common::{block_on, Broker};
use rdkafka::producer::FutureRecord;

const TOPIC: &str = "coop";
const PARTITIONS: i32 = 6;
const GROUP: &str = "coop-group";
const STRATEGY: (&str, &str) = ("partition.assignment.strategy", "cooperative-sticky");

/// What `name` owned after each of its rebalance callbacks (incremental assign and revoke),
/// starting from nothing.
fn holdings(events: &[RebalanceEvent], name: &str) -> Vec<BTreeSet<i32>> {
    let mut owned = BTreeSet::new();
    let mut out = Vec::new();
    for e in events {
        match e {
            RebalanceEvent::Assign(p) => owned.extend(p.iter().copied()),
            RebalanceEvent::Revoke(p) => {
                assert!(
                    p.is_subset(&owned),
                    "{name} was revoked {p:?} while owning {owned:?}"
                );
                owned.retain(|x| !p.contains(x));
            }
            RebalanceEvent::Error(e) => panic!("{name}: rebalance error {e}"),
        }
        out.push(owned.clone());
    }
    out
}

#[test]
fn a_third_member_joins_without_stopping_the_first_two() {
    let broker = Broker::start_with("groups-coop", group_options(""));
    broker.create_topic(TOPIC, PARTITIONS, &[]);

    let mut group = TestGroup::new(TOPIC);
    for name in ["c1", "c2"] {
        group.add(name, broker.group_consumer(GROUP, name, &[STRATEGY]));
    }
    group.wait_balanced(PARTITIONS, Duration::from_secs(30));
    group.produce(&broker, PARTITIONS, "before", 300);
    group.consume_all_exactly_once(Duration::from_secs(40), Duration::from_millis(500));
    let before: BTreeMap<String, BTreeSet<i32>> = group.assignments().into_iter().collect();
    let events_before: BTreeMap<String, usize> = group
        .members
        .iter()
        .map(|m| (m.name.clone(), m.events().len()))
        .collect();
    eprintln!("two members: {before:?}");

    // Records keep arriving while the third member joins.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = broker.producer("all", &[]);
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut out: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let mut pending = Vec::new();
                for _ in 0..PARTITIONS * 2 {
                    let value = format!("during-{i}").into_bytes();
                    let p = (i % PARTITIONS as usize) as i32;
                    let f = producer
                        .send_result(
                            FutureRecord::<(), _>::to(TOPIC)
                                .partition(p)
                                .payload(&value),
                        )
                        .unwrap_or_else(|(e, _)| panic!("enqueue during-{i}: {e}"));
                    pending.push((p, value, f));
                    i += 1;
                }
                for (p, value, f) in pending {
                    match block_on(f) {
                        Ok(Ok(d)) => {
                            assert_eq!(d.partition, p);
                            out.insert((p, d.offset), value);
                        }
                        Ok(Err((e, _))) => panic!("not delivered: {e}"),
                        Err(_) => panic!("delivery cancelled"),
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            out
        })
    };

    // Let some records flow, then the third member joins.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        group.poll_all(Duration::from_millis(50));
    }
    let consumed_at_join: BTreeMap<String, usize> = group
        .members
        .iter()
        .map(|m| (m.name.clone(), m.recs.len()))
        .collect();
    group.add("c3", broker.group_consumer(GROUP, "c3", &[STRATEGY]));
    let mut smallest: BTreeMap<String, usize> = BTreeMap::new();
    let took = group.wait_for(
        "c3 joined and the three members own two partitions each",
        Duration::from_secs(40),
        |g| {
            let a = g.assignments();
            for (name, s) in &a {
                if name != "c3" {
                    let e = smallest.entry(name.clone()).or_insert(usize::MAX);
                    *e = (*e).min(s.len());
                }
            }
            let union: BTreeSet<i32> = a.iter().flat_map(|(_, s)| s.iter().copied()).collect();
            a.iter().all(|(_, s)| s.len() == 2) && union.len() == PARTITIONS as usize
        },
    );
    eprintln!("three members after {took:?}: {:?}", group.assignments());
    // Keep consuming a little while records still arrive, then stop the feeder.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        group.poll_all(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let during = feeder.join().expect("the feeder thread panicked");
    assert!(!during.is_empty(), "the feeder produced nothing");
    for (pos, v) in during {
        assert!(
            group.produced.insert(pos, v).is_none(),
            "{pos:?} acknowledged twice"
        );
    }
    group.produce(&broker, PARTITIONS, "after", 300);
    group.consume_all_exactly_once(Duration::from_secs(40), Duration::from_secs(1));

    // Incremental: c1 and c2 never lost everything (sampled and by their callbacks), and
    // kept consuming while c3 joined.
    for name in ["c1", "c2"] {
        let m = group.member(name);
        let events = m.events();
        let owned_over_time = holdings(&events, name);
        let since_join = &owned_over_time[events_before[name].max(1) - 1..];
        assert!(
            since_join.iter().all(|s| !s.is_empty()),
            "{name} gave up all its partitions during the rebalance (eager, not incremental): \
             holdings after each callback {owned_over_time:?}, events {events:?}"
        );
        assert!(
            smallest[name] > 0,
            "{name} was seen owning nothing while c3 joined\n{}",
            group.report()
        );
        let after = m.assigned();
        assert!(
            after.is_subset(&before[name]),
            "{name} owned {:?} and now {after:?}: not sticky",
            before[name]
        );
        assert!(
            m.recs.len() > consumed_at_join[name],
            "{name} consumed nothing after c3 joined"
        );
        assert!(
            events[events_before[name]..]
                .iter()
                .all(|e| !matches!(e, RebalanceEvent::Revoke(p) if *p == before[name])),
            "{name} had everything revoked at once: {events:?}"
        );
    }

    let mut net = broker.net();
    let described = describe_group(&mut net, GROUP);
    assert_eq!(described.error_code, 0, "{described:?}");
    assert_eq!(described.group_state.as_str(), "Stable", "{described:?}");
    assert_eq!(
        described.protocol_data.as_str(),
        "cooperative-sticky",
        "{described:?}"
    );
    assert_eq!(described.members.len(), 3, "{described:?}");
    let mut clients: Vec<String> = described
        .members
        .iter()
        .map(|m| m.client_id.to_string())
        .collect();
    clients.sort();
    assert_eq!(clients, ["c1", "c2", "c3"]);
    for m in &described.members {
        let owned = decode_assignment(&m.member_assignment);
        assert_eq!(
            owned.get(TOPIC),
            Some(&group.member(m.client_id.as_str()).assigned()),
            "DescribeGroups assignment of {} differs from the client's",
            m.client_id.as_str()
        );
    }
    for m in &group.members {
        assert!(
            m.commit_errors().is_empty(),
            "{}: commit errors {:?}",
            m.name,
            m.commit_errors()
        );
    }

    let mut broker = broker;
    broker.assert_alive();
    for name in ["c1", "c2", "c3"] {
        let consumer = group.remove(name);
        close_bounded(consumer, name, Duration::from_secs(30));
    }
    broker.assert_alive();
}
