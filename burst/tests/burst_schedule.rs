//! Schedule generation: permutations, staggering, seeds; and the staggering as replayed.

use std::collections::BTreeSet;
use std::time::Duration;

use percid_burst::{Plan, SplitMix64, permutation, run_seed};

#[test]
fn permutations_are_permutations_and_deterministic() {
    for n in [0, 1, 2, 8, 24, 384] {
        let p = permutation(n, 7);
        let set: BTreeSet<usize> = p.iter().copied().collect();
        assert_eq!(set, (0..n).collect(), "n = {n}");
        assert_eq!(p, permutation(n, 7));
    }
    assert_ne!(permutation(24, 1), permutation(24, 2));
    assert_ne!(run_seed(1, 0), run_seed(1, 1));
    assert_eq!(run_seed(5, 3), run_seed(5, 3));
}

#[test]
fn every_order_is_reachable_and_roughly_uniform() {
    // 3 threads: 6 orders, each about 1/6 of 6000 draws.
    let mut counts = std::collections::HashMap::new();
    for s in 0..6000u64 {
        *counts.entry(permutation(3, run_seed(s, 0))).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 6);
    assert!(
        counts.values().all(|&c| (800..1200).contains(&c)),
        "{counts:?}"
    );
    let mut r = SplitMix64::new(0);
    assert!((0..1000).all(|_| r.below(10) < 10));
}

#[test]
fn staggering() {
    let d = Duration::from_millis(200);
    let plan = Plan::new(8, d, 99);
    assert_eq!(plan.threads(), 8);
    assert_eq!(plan.sleep_between(), d * 8);
    for (k, &t) in plan.order.iter().enumerate() {
        assert_eq!(plan.place[t], k);
        assert_eq!(plan.start_offset(t), d * k as u32);
    }
    // Timed passes of all threads, sorted by nominal start: consecutive ones `delay` apart
    // (plus the pass time at a thread's wrap), never overlapping.
    let (w, p) = (Duration::from_millis(14), Duration::from_micros(20));
    let mut starts: Vec<Duration> = (0..8)
        .flat_map(|t| (0..5).map(move |j| (t, j)))
        .map(|(t, j)| plan.nominal_timed_start(t, j, w, p))
        .collect();
    starts.sort();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= d - p && gap <= d + p, "gap {gap:?}");
    }
    // About delay x threads x 6 for 5 passes.
    let total = plan.expected_duration(5, w);
    assert!(total >= d * 8 * 5 && total <= d * 8 * 6 + w, "{total:?}");
}
