//! Deterministic tests of the CID allocation policies: schedules replayed through
//! `DeterministicAllocator` (the same state machine as the real allocator) with a virtual clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use percid::index::user_cid::{DeterministicAllocator, DeterministicConfig, Policy};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `threads` threads, thread `t` pinned to CPU `t`, run one after another, `gap_ms` apart
/// (start to start), each burst holding its CID for 1 ms; `rounds` rounds.
/// Returns `cids[round][thread]` and the allocator.
fn pinned_bursts(
    policy: Policy,
    threads: u32,
    gap_ms: u64,
    rounds: usize,
) -> (Vec<Vec<u32>>, DeterministicAllocator) {
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(policy, threads));
    for t in 0..threads {
        a.thread_start(t, &[t]);
    }
    let mut now = 0;
    let mut cids = Vec::new();
    for _ in 0..rounds {
        let mut round = Vec::new();
        for t in 0..threads {
            let cid = a.acquire_at(t, t, ms(now)).expect("a CID is free");
            a.release_at(t, cid, ms(now + 1));
            round.push(cid);
            now += gap_ms;
        }
        cids.push(round);
    }
    (cids, a)
}

#[test]
fn cache_local_200ms_gaps_each_cpu_keeps_its_own_id() {
    let (cids, a) = pinned_bursts(Policy::CacheLocal, 8, 200, 4);
    let first = &cids[0];
    for round in &cids {
        assert_eq!(round, first, "every CPU gets the same CID on every burst");
    }
    let distinct: BTreeSet<u32> = first.iter().copied().collect();
    assert_eq!(distinct, (0..8).collect(), "8 distinct IDs");
    assert_eq!(a.max_nr_cid(), 8);
    // The CPUs' kept IDs expired between bursts; the recent ones brought them back.
    assert_eq!(a.kept_cid(0), None);
    assert_eq!(a.recent_cid(0), Some(first[0]));
}

#[test]
fn legacy_200ms_gaps_every_burst_gets_id_0() {
    let (cids, a) = pinned_bursts(Policy::Legacy, 8, 200, 4);
    for round in &cids {
        assert!(round.iter().all(|&c| c == 0), "{cids:?}");
    }
    // CPU 7 ran last and keeps ID 0; CPU 6's claim on it was taken over.
    assert_eq!(a.kept_cid(7), Some(0));
    assert_eq!(a.kept_cid(6), None);
}

#[test]
fn both_policies_10ms_gaps_keep_each_cpus_id() {
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        let (cids, a) = pinned_bursts(policy, 8, 10, 6);
        let first = &cids[0];
        for round in &cids {
            assert_eq!(round, first, "{policy:?}: {cids:?}");
        }
        let distinct: BTreeSet<u32> = first.iter().copied().collect();
        assert_eq!(distinct.len(), 8, "{policy:?}");
        // 80 ms between a CPU's bursts, under the 100 ms expiry: all 8 still kept.
        for cpu in 0..8 {
            assert_eq!(a.kept_cid(cpu), Some(first[cpu as usize]), "{policy:?}");
        }
    }
}

#[test]
fn expiry_is_configurable() {
    let mut b = DeterministicAllocator::new(
        DeterministicConfig::new(Policy::Legacy, 2).with_expiry(ms(50)),
    );
    b.thread_start(0, &[0]);
    b.thread_start(1, &[1]);
    assert_eq!(b.acquire_at(0, 0, ms(0)), Some(0));
    b.release_at(0, 0, ms(1));
    assert_eq!(b.acquire_at(1, 1, ms(60)), Some(0), "expired after 59 ms");
    b.release_at(1, 0, ms(61));
    assert_eq!(
        b.acquire_at(0, 0, ms(100)),
        Some(1),
        "only 39 ms: CPU 1 keeps 0"
    );
}

/// Threads may run on any of 8 CPUs; bursts move round-robin over the CPUs, 200 ms apart.
fn roaming_bursts(policy: Policy, threads: u32, allowed: &[u32], bursts: u32) -> (Vec<u32>, u32) {
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(policy, 8));
    for t in 0..threads {
        a.thread_start(t, allowed);
    }
    let mut cids = Vec::new();
    for i in 0..bursts {
        let t = i % threads;
        let cpu = allowed[i as usize % allowed.len()];
        let now = u64::from(i) * 200;
        let cid = a.acquire_at(t, cpu, ms(now)).unwrap();
        a.release_at(t, cid, ms(now + 1));
        cids.push(cid);
    }
    (cids, a.max_nr_cid())
}

#[test]
fn cache_local_expansion_stops_at_the_thread_count() {
    let all: Vec<u32> = (0..8).collect();
    let (cids, max) = roaming_bursts(Policy::CacheLocal, 4, &all, 32);
    assert_eq!(
        &cids[..4],
        &[0, 1, 2, 3],
        "expansion hands out new IDs in order"
    );
    assert!(cids.iter().all(|&c| c < 4), "{cids:?}");
    assert_eq!(max, 4);
}

#[test]
fn cache_local_expansion_stops_at_the_allowed_cpus() {
    let (cids, max) = roaming_bursts(Policy::CacheLocal, 8, &[2, 5], 32);
    assert_eq!(&cids[..2], &[0, 1]);
    assert!(cids.iter().all(|&c| c < 2), "{cids:?}");
    assert_eq!(max, 2);
    // The union of several threads' masks counts.
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::CacheLocal, 8));
    a.thread_start(0, &[0, 1]);
    a.thread_start(1, &[1, 2, 3]);
    a.thread_start(2, &[3]);
    assert_eq!(a.nr_cpus_allowed(), 4);
    assert_eq!(a.live_threads(), 3);
}

#[test]
fn cache_local_shrinks_max_nr_cid_when_threads_exit() {
    // 9 CPUs, threads 0..8 pinned to CPUs 0..8 run once: IDs 0..8, max_nr_cid 8.
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::CacheLocal, 9));
    for t in 0..8 {
        a.thread_start(t, &[t]);
        assert_eq!(a.acquire_at(t, t, ms(10 * u64::from(t))), Some(t));
        a.release_at(t, t, ms(10 * u64::from(t) + 1));
    }
    assert_eq!(a.max_nr_cid(), 8);
    for t in 2..8 {
        a.thread_exit(t);
    }
    assert_eq!(a.live_threads(), 2);
    // Thread 0's CPU still keeps its ID: fast path, nothing recomputed.
    assert_eq!(a.acquire_at(0, 0, ms(100)), Some(0));
    a.release_at(0, 0, ms(101));
    assert_eq!(a.max_nr_cid(), 8);
    // A new thread on CPU 8, which keeps nothing: the slow path lowers max_nr_cid to
    // min(9 allowed CPUs, 3 threads) = 3 and, with no expansion left, takes the first free
    // ID: CPU 0's ID 0, expired by now.
    a.thread_start(8, &[8]);
    assert_eq!(a.acquire_at(8, 8, ms(1000)), Some(0));
    assert_eq!(a.max_nr_cid(), 3);
    a.release_at(8, 0, ms(1001));
    // Thread 1 on CPU 1 still finds its own ID.
    assert_eq!(a.acquire_at(1, 1, ms(1002)), Some(1));
}

#[test]
fn legacy_takes_the_first_free_id() {
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::Legacy, 4));
    for t in 0..4 {
        a.thread_start(t, &[0, 1, 2, 3]);
    }
    assert_eq!(a.acquire_at(0, 3, ms(0)), Some(0));
    assert_eq!(a.acquire_at(1, 2, ms(0)), Some(1));
    a.release_at(0, 0, ms(1));
    // CPU 3 keeps 0 (1 ms old), CPU 2's 1 is held: CPU 1 gets 2.
    assert_eq!(a.acquire_at(2, 1, ms(2)), Some(2));
    // After the expiry period CPU 3's ID 0 is the first free one again.
    assert_eq!(a.acquire_at(3, 0, ms(200)), Some(0));
    assert_eq!(a.kept_cid(3), None);
    assert_eq!(a.kept_cid(0), Some(0));
}

#[test]
fn preempted_holders_push_ids_past_the_allowed_cpus_but_never_past_capacity() {
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        let mut a =
            DeterministicAllocator::new(DeterministicConfig::new(policy, 2).with_capacity(4));
        for t in 0..5 {
            a.thread_start(t, &[0, 1]);
        }
        // Four threads take leases on two CPUs and are "preempted" while holding them.
        let held: Vec<u32> = (0..4)
            .map(|t| a.acquire_at(t, t % 2, ms(t.into())).unwrap())
            .collect();
        let distinct: BTreeSet<u32> = held.iter().copied().collect();
        assert_eq!(distinct, (0..4).collect(), "{policy:?}: {held:?}");
        // Capacity reached: a fifth thread cannot get one (the real allocator waits).
        assert_eq!(a.acquire_at(4, 0, ms(10)), None);
        a.release_at(2, held[2], ms(11));
        assert_eq!(a.acquire_at(4, 0, ms(12)), Some(held[2]));
        assert_eq!(a.holder(held[2]), Some(4));
    }
}

#[test]
fn cache_local_stays_below_allowed_cpus_when_it_can() {
    let mut a = DeterministicAllocator::new(
        DeterministicConfig::new(Policy::CacheLocal, 8).with_capacity(8),
    );
    for t in 0..6 {
        a.thread_start(t, &[0, 1, 2]);
    }
    // Three threads each holding on their own CPU: IDs 0..3.
    for t in 0..3 {
        assert_eq!(a.acquire_at(t, t, ms(0)), Some(t));
    }
    // A fourth holder (CPU 0's holder preempted) must go past 3.
    assert_eq!(a.acquire_at(3, 0, ms(1)), Some(3));
    for t in 0..3 {
        a.release_at(t, t, ms(2));
    }
    // With the IDs below 3 free again, nothing goes past the bound.
    assert_eq!(a.acquire_at(4, 1, ms(3)), Some(1));
    assert_eq!(a.acquire_at(5, 2, ms(3)), Some(2));
    assert_eq!(a.held_by(3), vec![3]);
}

#[test]
fn capacity_below_cpus_in_use_takes_over_kept_ids() {
    // 8 pinned threads, 2 CIDs, 10 ms gaps: every CPU's claim is recent, yet every burst gets a
    // CID (taken over), never one at or above the capacity.
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        let mut a =
            DeterministicAllocator::new(DeterministicConfig::new(policy, 8).with_capacity(2));
        for t in 0..8 {
            a.thread_start(t, &[t]);
        }
        for i in 0..40u32 {
            let t = i % 8;
            let now = u64::from(i) * 10;
            let cid = a.acquire_at(t, t, ms(now)).expect("no CID is held");
            assert!(cid < 2);
            assert_eq!(a.kept_cid(t), Some(cid));
            a.release_at(t, cid, ms(now + 1));
        }
    }
}

#[test]
fn exact_lease_leaves_the_keeper_alone() {
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::CacheLocal, 2));
    a.thread_start(0, &[0]);
    a.thread_start(1, &[1]);
    assert_eq!(a.acquire_at(0, 0, ms(0)), Some(0));
    assert!(!a.try_acquire_exact_at(1, 0, ms(1)), "held");
    a.release_at(0, 0, ms(1));
    assert!(a.try_acquire_exact_at(1, 0, ms(2)));
    assert!(!a.try_acquire_exact_at(1, 2, ms(2)), "beyond capacity");
    // CPU 0's kept ID is held by the exact lease: thread 0 gets a transient one.
    assert_eq!(a.acquire_at(0, 0, ms(3)), Some(1));
    a.release_at(0, 1, ms(4));
    a.release_at(1, 0, ms(4));
    assert_eq!(a.kept_cid(0), Some(0));
    assert_eq!(a.acquire_at(0, 0, ms(5)), Some(0));
}

/// A pseudo-random schedule (fixed seed) of many threads on 6 CPUs, checked after every step.
#[test]
fn random_schedules_keep_the_invariants() {
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        for seed in 1..=20u64 {
            random_schedule(policy, seed);
        }
    }
}

fn random_schedule(policy: Policy, seed: u64) {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    const CPUS: u32 = 6;
    let capacity = 1 + next(7) as u32;
    let mut a = DeterministicAllocator::new(
        DeterministicConfig::new(policy, CPUS)
            .with_capacity(capacity)
            .with_expiry(ms(100)),
    );
    let mut allowed: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut held: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut next_thread = 0;
    let mut now = 0;
    for _ in 0..600 {
        now += next(40);
        match next(10) {
            0 | 1 if allowed.len() < 12 => {
                let first = next(u64::from(CPUS)) as u32;
                let cpus: Vec<u32> = (first..CPUS).take(1 + next(3) as usize).collect();
                a.thread_start(next_thread, &cpus);
                allowed.insert(next_thread, cpus);
                held.insert(next_thread, Vec::new());
                next_thread += 1;
            }
            2 => {
                let idle: Vec<u32> = held
                    .iter()
                    .filter(|(_, h)| h.is_empty())
                    .map(|(&t, _)| t)
                    .collect();
                if !idle.is_empty() {
                    let t = idle[next(idle.len() as u64) as usize];
                    a.thread_exit(t);
                    allowed.remove(&t);
                    held.remove(&t);
                }
            }
            3..=6 if !allowed.is_empty() => {
                let threads: Vec<u32> = allowed.keys().copied().collect();
                let t = threads[next(threads.len() as u64) as usize];
                let cpus = &allowed[&t];
                let cpu = cpus[next(cpus.len() as u64) as usize];
                let before_held: usize = held.values().map(Vec::len).sum();
                a.advance_to(ms(now));
                let kept_before: BTreeSet<u32> = (0..CPUS)
                    .filter(|&c| c != cpu)
                    .filter_map(|c| a.kept_cid(c))
                    .collect();
                let bound = a.nr_cpus_allowed().min(capacity);
                match a.acquire_at(t, cpu, ms(now)) {
                    None => assert_eq!(before_held, capacity as usize, "None only when full"),
                    Some(cid) => {
                        assert!(cid < capacity);
                        assert!(
                            held.values().all(|h| !h.contains(&cid)),
                            "CID {cid} handed out twice"
                        );
                        held.get_mut(&t).unwrap().push(cid);
                        if policy == Policy::CacheLocal && cid >= bound {
                            // Past the allowed CPUs only if none below was free or
                            // taken from an expired keeper.
                            let busy = (0..bound)
                                .filter(|k| {
                                    held.values().any(|h| h.contains(k)) || kept_before.contains(k)
                                })
                                .count();
                            assert_eq!(busy as u32, bound, "CID {cid} >= bound {bound}");
                        }
                    }
                }
            }
            _ => {
                let holders: Vec<u32> = held
                    .iter()
                    .filter(|(_, h)| !h.is_empty())
                    .map(|(&t, _)| t)
                    .collect();
                if !holders.is_empty() {
                    let t = holders[next(holders.len() as u64) as usize];
                    let h = held.get_mut(&t).unwrap();
                    let cid = h.remove(next(h.len() as u64) as usize);
                    a.release_at(t, cid, ms(now));
                }
            }
        }
        assert_eq!(a.live_threads() as usize, allowed.len());
        assert!(a.max_nr_cid() <= capacity);
        for (&t, h) in &held {
            let mut mine = a.held_by(t);
            mine.sort();
            let mut expect = h.clone();
            expect.sort();
            assert_eq!(mine, expect);
        }
    }
}

#[test]
#[should_panic(expected = "virtual time went backwards")]
fn time_must_not_go_backwards() {
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::Legacy, 1));
    a.thread_start(0, &[0]);
    let cid = a.acquire_at(0, 0, ms(10)).unwrap();
    a.release_at(0, cid, ms(9));
}

#[test]
#[should_panic(expected = "does not hold")]
fn releasing_someone_elses_cid_is_a_bug() {
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::Legacy, 2));
    a.thread_start(0, &[0]);
    a.thread_start(1, &[1]);
    let cid = a.acquire_at(0, 0, ms(0)).unwrap();
    a.release_at(1, cid, ms(1));
}

#[test]
#[should_panic(expected = "outside its allowed CPUs")]
fn running_outside_the_affinity_is_a_bug() {
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::Legacy, 2));
    a.thread_start(0, &[0]);
    let _ = a.acquire_at(0, 1, ms(0));
}

#[test]
#[should_panic(expected = "exits holding")]
fn exiting_with_a_lease_is_a_bug() {
    let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::Legacy, 2));
    a.thread_start(0, &[0]);
    let _ = a.acquire_at(0, 0, ms(0));
    a.thread_exit(0);
}
