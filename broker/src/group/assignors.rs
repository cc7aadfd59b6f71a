//! The server-side assignors of KIP-848 groups: which assignor a group runs, and the
//! target assignment it computes from the members' subscriptions. Pure functions of their
//! inputs, called by the group state machine ([`super::consumer`]) when the group epoch
//! moves.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors this broker runs, the default first.
pub use crate::config::CONSUMER_GROUP_ASSIGNORS as ASSIGNORS;

/// The assignor most members asked for (ties by name), or the broker's default.
pub fn choose<'a>(asked: impl Iterator<Item = &'a str>, default: &str) -> String {
    let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
    for a in asked {
        *votes.entry(a).or_default() += 1;
    }
    let best = votes.values().copied().max().unwrap_or(0);
    votes
        .into_iter()
        .find(|(_, v)| *v == best && best > 0)
        .map(|(a, _)| a.to_string())
        .unwrap_or_else(|| default.to_string())
}

/// The target assignment by assignor `name` (uniform unless it is "range"): each member's
/// partitions, from the topics it subscribes to (`subscriptions`), the partition counts and,
/// for stickiness, the `previous` target.
pub fn assign(
    name: &str,
    subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
    partitions: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => assign_range(subscriptions, partitions),
        _ => assign_uniform(subscriptions, partitions, previous),
    }
}

/// The uniform assignor: every subscribed partition to exactly one subscribed member,
/// counts differing by at most one among members that could take each other's partitions,
/// and as few moves from `previous` as that allows (sticky).
fn assign_uniform(
    subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
    partitions: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    // Members by index (in id order, so ties break the same way every time); counts and
    // candidate lists are plain vectors: this runs at every group epoch of groups with
    // thousands of members and partitions.
    let names: Vec<&String> = subscriptions.keys().collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut count = vec![0usize; names.len()];
    let candidates: HashMap<Uuid, Vec<usize>> = partitions
        .keys()
        .map(|t| {
            let members = subscriptions
                .values()
                .enumerate()
                .filter(|(_, s)| s.contains(t))
                .map(|(i, _)| i)
                .collect();
            (*t, members)
        })
        .collect();
    let eligible = |t: &Uuid| -> &[usize] { candidates.get(t).map_or(&[], |v| v.as_slice()) };
    let all: Vec<(Uuid, i32)> = partitions
        .iter()
        .filter(|(t, _)| !eligible(t).is_empty())
        .flat_map(|(t, n)| (0..*n).map(move |p| (*t, p)))
        .collect();
    // The fair share of each member if everything were interchangeable: a member keeps at
    // most that many of its previous partitions, so a newcomer gets its share by moves from
    // the members over it, not by a reshuffle.
    let cap = all.len().div_ceil(names.len().max(1));
    let mut owner: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
    for (m, prev) in previous {
        let Some(&i) = index.get(m.as_str()) else {
            continue;
        };
        let sub = &subscriptions[m];
        for (t, ps) in prev {
            if !sub.contains(t) {
                continue;
            }
            let n = partitions.get(t).copied().unwrap_or(0);
            for p in ps.iter().filter(|p| **p < n) {
                if count[i] >= cap || owner.contains_key(&(*t, *p)) {
                    continue;
                }
                owner.insert((*t, *p), i);
                count[i] += 1;
            }
        }
    }
    let least_loaded = |count: &[usize], among: &[usize]| -> Option<usize> {
        among.iter().copied().min_by_key(|&i| (count[i], i))
    };
    // Partitions with the fewest candidates first, each to its least loaded candidate.
    let mut free: Vec<(usize, (Uuid, i32))> = all
        .iter()
        .filter(|k| !owner.contains_key(k))
        .map(|k| (eligible(&k.0).len(), *k))
        .collect();
    free.sort();
    for (_, (t, p)) in free {
        let best = least_loaded(&count, eligible(&t)).expect("a subscribed topic has a subscriber");
        owner.insert((t, p), best);
        count[best] += 1;
    }
    // Balance: move a partition from a member to a candidate with two fewer, until none can
    // move (bounded: each move lowers the sum of squared counts).
    for _ in 0..=all.len() {
        let mut moved = false;
        let keys: Vec<(Uuid, i32)> = owner.keys().rev().copied().collect();
        for key in keys {
            let from = owner[&key];
            let Some(to) = least_loaded(&count, eligible(&key.0)) else {
                continue;
            };
            if count[to] + 1 < count[from] {
                owner.insert(key, to);
                count[from] -= 1;
                count[to] += 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for ((t, p), i) in owner {
        out.get_mut(names[i])
            .expect("member")
            .entry(t)
            .or_default()
            .insert(p);
    }
    out
}

/// The range assignor: for each topic, its subscribers in member id order get contiguous
/// ranges of partitions, the first `partitions % members` one more, so topics with the same
/// partition count are co-partitioned.
fn assign_range(
    subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (t, n) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(t))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let per = *n as usize / members.len();
        let extra = *n as usize % members.len();
        let mut next = 0i32;
        for (i, m) in members.into_iter().enumerate() {
            let take = per + usize::from(i < extra);
            if take == 0 {
                continue;
            }
            let range: BTreeSet<i32> = (next..next + take as i32).collect();
            next += take as i32;
            out.get_mut(m).expect("member").insert(*t, range);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|s| s.len()).sum()
    }

    #[test]
    fn uniform_balances_and_is_sticky() {
        let t = topic(1);
        let subs: BTreeMap<String, BTreeSet<Uuid>> = ["a", "b", "c"]
            .iter()
            .map(|m| (m.to_string(), BTreeSet::from([t])))
            .collect();
        let parts = BTreeMap::from([(t, 7)]);
        let first = assign_uniform(&subs, &parts, &BTreeMap::new());
        let counts: Vec<usize> = first.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 7);
        assert!(counts.iter().all(|c| *c == 2 || *c == 3), "{counts:?}");
        // A fourth member: only what it needs moves to it.
        let mut subs4 = subs.clone();
        subs4.insert("d".into(), BTreeSet::from([t]));
        let second = assign_uniform(&subs4, &parts, &first);
        let counts: Vec<usize> = second.values().map(count).collect();
        assert!(counts.iter().all(|c| *c == 1 || *c == 2), "{counts:?}");
        let moved: usize = ["a", "b", "c"]
            .iter()
            .map(|m| count(&first[*m]) - first[*m][&t].intersection(&second[*m][&t]).count())
            .sum();
        assert_eq!(moved, count(&second["d"]), "{first:?} -> {second:?}");
    }

    #[test]
    fn uniform_scales_to_a_thousand_members() {
        let t = topic(9);
        let subs: BTreeMap<String, BTreeSet<Uuid>> = (0..1000)
            .map(|i| (format!("m{i:04}"), BTreeSet::from([t])))
            .collect();
        let parts = BTreeMap::from([(t, 2000)]);
        let first = assign_uniform(&subs, &parts, &BTreeMap::new());
        assert!(first.values().all(|a| count(a) == 2));
        let mut more = subs.clone();
        more.insert("new".into(), BTreeSet::from([t]));
        let second = assign_uniform(&more, &parts, &first);
        let counts: BTreeSet<usize> = second.values().map(count).collect();
        assert!(counts.iter().all(|c| (1..=2).contains(c)), "{counts:?}");
        let kept: usize = subs
            .keys()
            .map(|m| first[m][&t].intersection(&second[m][&t]).count())
            .sum();
        assert_eq!(
            2000 - kept,
            count(&second["new"]),
            "more moved than the newcomer took"
        );
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let (t1, t2) = (topic(1), topic(2));
        let subs = BTreeMap::from([
            ("a".to_string(), BTreeSet::from([t1])),
            ("b".to_string(), BTreeSet::from([t1, t2])),
            ("c".to_string(), BTreeSet::from([t2])),
        ]);
        let parts = BTreeMap::from([(t1, 4), (t2, 4)]);
        let a = assign_uniform(&subs, &parts, &BTreeMap::new());
        assert!(a["a"].keys().all(|t| *t == t1));
        assert!(a["c"].keys().all(|t| *t == t2));
        let total: usize = a.values().map(count).sum();
        assert_eq!(total, 8);
        let counts: Vec<usize> = a.values().map(count).collect();
        assert!(counts.iter().all(|c| (2..=3).contains(c)), "{a:?}");
    }

    #[test]
    fn range_gives_contiguous_co_partitioned_ranges() {
        let (t1, t2) = (topic(1), topic(2));
        let subs: BTreeMap<String, BTreeSet<Uuid>> = ["m1", "m2"]
            .iter()
            .map(|m| (m.to_string(), BTreeSet::from([t1, t2])))
            .collect();
        let a = assign_range(&subs, &BTreeMap::from([(t1, 5), (t2, 5)]));
        assert_eq!(a["m1"][&t1], BTreeSet::from([0, 1, 2]));
        assert_eq!(a["m2"][&t1], BTreeSet::from([3, 4]));
        assert_eq!(a["m1"][&t2], a["m1"][&t1]);
    }

    #[test]
    fn the_assignor_most_members_ask_for_wins() {
        assert_eq!(
            choose(["range", "uniform", "range"].into_iter(), "uniform"),
            "range"
        );
        // A tie goes to the first name.
        assert_eq!(choose(["uniform", "range"].into_iter(), "uniform"), "range");
        assert_eq!(choose(std::iter::empty(), "uniform"), "uniform");
    }
}
