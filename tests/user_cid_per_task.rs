//! Deterministic tests of `Policy::PerTask`, the per-task CID ownership of Linux 6.19: schedules
//! replayed through `DeterministicAllocator` (the same state machine as the real allocator).

use std::collections::BTreeSet;
use std::time::Duration;

use percid::index::user_cid::{DeterministicAllocator, DeterministicConfig, Policy};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn allocator(policy: Policy, cpus: u32, capacity: u32) -> DeterministicAllocator {
    DeterministicAllocator::new(DeterministicConfig::new(policy, cpus).with_capacity(capacity))
}

/// `threads` threads allowed on every one of `cpus` CPUs run one at a time, `gap_ms` apart, on
/// a CPU that changes every round (a migration each time) and with sleeps far beyond any expiry.
/// Returns `cids[round][thread]`.
fn roaming(policy: Policy, cpus: u32, threads: u32, gap_ms: u64, rounds: u32) -> Vec<Vec<u32>> {
    let mut a = allocator(policy, cpus, cpus);
    let all: Vec<u32> = (0..cpus).collect();
    for t in 0..threads {
        a.thread_start(t, &all);
    }
    let mut now = 0;
    (0..rounds)
        .map(|r| {
            (0..threads)
                .map(|t| {
                    let cpu = (t * 3 + r * 5 + r * r) % cpus;
                    let cid = a.acquire_at(t, cpu, ms(now)).expect("a CID is free");
                    a.release_at(t, cid, ms(now + 1));
                    now += gap_ms;
                    cid
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_thread_keeps_its_cid_across_sleeps_and_migrations() {
    for gap in [1, 10, 200, 1000] {
        let cids = roaming(Policy::PerTask, 8, 6, gap, 12);
        for round in &cids {
            assert_eq!(round, &cids[0], "gap {gap} ms: {cids:?}");
        }
        let distinct: BTreeSet<u32> = cids[0].iter().copied().collect();
        assert_eq!(distinct, (0..6).collect(), "first free IDs, one per thread");
    }
    // The schedule does move CIDs under a policy that ties them to CPUs (and Legacy hands
    // ID 0 to everyone): the test tells the policies apart.
    let cids = roaming(Policy::CacheLocal, 8, 6, 200, 12);
    assert!(
        cids.iter().any(|r| r != &cids[0]),
        "CacheLocal keeps CIDs on CPUs, not threads: {cids:?}"
    );
}

#[test]
fn within_the_limit_the_mode_stays_per_task() {
    // 4 allowed CPUs: max_cids = min(opt + opt / 4, capacity) with opt = min(4, threads);
    // 5 threads is within min(4 + 1, 8) = 5.
    let mut a = allocator(Policy::PerTask, 8, 8);
    for t in 0..5 {
        a.thread_start(t, &[0, 1, 2, 3]);
        assert!(!a.per_cpu_mode(), "{} threads", t + 1);
        assert_eq!(a.switch_back_threshold(), None);
    }
    assert_eq!(a.max_nr_cid(), 5);
    // Five threads on four CPUs, one after another: each owns its own CID.
    for t in 0..5 {
        let cid = a.acquire_at(t, t % 4, ms(t as u64)).unwrap();
        assert_eq!(cid, t);
        a.release_at(t, cid, ms(t as u64));
        assert_eq!(a.owned_cid(t), Some(t));
    }
}

#[test]
fn past_the_limit_the_cpus_own_the_ids() {
    let mut a = allocator(Policy::PerTask, 8, 8);
    for t in 0..5 {
        a.thread_start(t, &[0, 1, 2, 3]);
        let cid = a.acquire_at(t, t % 4, ms(0)).unwrap();
        a.release_at(t, cid, ms(0));
    }
    assert!((0..5).all(|t| a.owned_cid(t).is_some()));
    // The sixth thread exceeds max_cids = 5: per-CPU mode, every task-owned CID dropped.
    a.thread_start(5, &[0, 1, 2, 3]);
    assert!(a.per_cpu_mode());
    assert!((0..6).all(|t| a.owned_cid(t).is_none()));
    assert!((0..4).all(|c| a.kept_cid(c).is_none()));
    // Now a CID follows the CPU, whichever thread runs there, however long it sleeps.
    let mut on_cpu = [None; 4];
    let mut now = 0;
    for round in 0..6u32 {
        for t in 0..6u32 {
            let cpu = (t + round) % 4;
            let cid = a.acquire_at(t, cpu, ms(now)).unwrap();
            a.release_at(t, cid, ms(now + 1));
            now += 300;
            let first = *on_cpu[cpu as usize].get_or_insert(cid);
            assert_eq!(
                cid, first,
                "CPU {cpu} owns its CID (round {round}, thread {t})"
            );
            assert_eq!(a.kept_cid(cpu), Some(cid));
            assert_eq!(a.owned_cid(t), None);
        }
    }
    let distinct: BTreeSet<u32> = on_cpu.iter().map(|c| c.unwrap()).collect();
    assert_eq!(distinct.len(), 4, "one CID per CPU: {on_cpu:?}");
}

#[test]
fn the_way_back_has_hysteresis() {
    let mut a = allocator(Policy::PerTask, 8, 8);
    for t in 0..6 {
        a.thread_start(t, &[0, 1, 2, 3]);
    }
    assert!(a.per_cpu_mode());
    // Recorded at the switch: max(min(opt - opt / 4, capacity / 2), 1) = min(4 - 1, 4) = 3.
    assert_eq!(a.switch_back_threshold(), Some(3));
    for t in 0..4 {
        let cid = a.acquire_at(t, t, ms(0)).unwrap();
        a.release_at(t, cid, ms(0));
    }
    // 5 and 4 threads would be within max_cids, but the mode stays per-CPU until the threads
    // fall below the threshold.
    for (exiting, left) in [(5, 5), (4, 4), (3, 3)] {
        a.thread_exit(exiting);
        assert!(a.per_cpu_mode(), "{left} threads: still per-CPU");
        assert!(
            a.kept_cid(0).is_some(),
            "{left} threads: CPU 0 still owns its CID"
        );
    }
    a.thread_exit(2);
    assert!(!a.per_cpu_mode(), "2 threads < 3: back to per-task mode");
    assert_eq!(a.switch_back_threshold(), None);
    assert!(
        (0..4).all(|c| a.kept_cid(c).is_none()),
        "CPU-owned CIDs dropped"
    );
    // Tasks own CIDs again, wherever they run.
    let c0 = a.acquire_at(0, 3, ms(10)).unwrap();
    a.release_at(0, c0, ms(10));
    let c1 = a.acquire_at(1, 0, ms(20)).unwrap();
    a.release_at(1, c1, ms(20));
    assert_eq!((a.owned_cid(0), a.owned_cid(1)), (Some(c0), Some(c1)));
    assert_eq!(a.acquire_at(0, 1, ms(500)), Some(c0));
    a.release_at(0, c0, ms(500));
    // And growing again switches again: the threshold is recorded anew.
    for t in 10..14 {
        a.thread_start(t, &[0, 1, 2, 3]);
    }
    assert!(a.per_cpu_mode(), "6 threads > max_cids 5");
}

#[test]
fn a_cid_held_across_a_switch_is_dropped_on_release() {
    // Two-phase handover: a CID held while the mode switches is temporary (the kernel's
    // transit CID) and goes back to the pool when released.
    let mut a = allocator(Policy::PerTask, 4, 4);
    a.thread_start(0, &[0, 1]);
    a.thread_start(1, &[0, 1]);
    let own = a.acquire_at(0, 0, ms(0)).unwrap();
    assert_eq!(own, 0);
    // Three threads on two allowed CPUs: max_cids = 2, so per-CPU mode while thread 0 holds 0.
    a.thread_start(2, &[0, 1]);
    assert!(a.per_cpu_mode());
    // Held: the fixup walk marks it (transit, no owner) instead of dropping it.
    assert_eq!(a.holder(0), Some(0));
    assert_eq!(a.owned_cid(0), None, "no longer owned by the task");
    a.release_at(0, own, ms(1));
    assert_eq!(a.owned_cid(0), None, "dropped on release");
    assert_eq!(a.kept_cid(0), None);
    assert_eq!(a.holder(0), None);
    // Back: a CPU-owned CID held across the switch back is dropped the same way.
    let c = a.acquire_at(1, 1, ms(2)).unwrap();
    assert_eq!(a.kept_cid(1), Some(c));
    assert_eq!(a.switch_back_threshold(), Some(2));
    a.thread_exit(2);
    assert!(a.per_cpu_mode(), "2 threads: not below the threshold");
    a.thread_exit(0);
    assert!(!a.per_cpu_mode(), "1 thread < 2");
    assert_eq!(a.holder(c), Some(1), "held across the switch back");
    assert_eq!(a.kept_cid(1), None, "marked: no longer the CPU's");
    a.release_at(1, c, ms(3));
    assert_eq!(a.kept_cid(1), None, "dropped on release");
    let again = a.acquire_at(1, 0, ms(4)).unwrap();
    a.release_at(1, again, ms(5));
    assert_eq!(a.owned_cid(1), Some(again), "per-task ownership again");
}

#[test]
fn cids_converge_below_max_cids_when_threads_exit() {
    let mut a = allocator(Policy::PerTask, 8, 8);
    let all: Vec<u32> = (0..8).collect();
    for t in 0..8 {
        a.thread_start(t, &all);
        let cid = a.acquire_at(t, t, ms(0)).unwrap();
        a.release_at(t, cid, ms(0));
        assert_eq!(a.owned_cid(t), Some(t));
    }
    for t in 0..6 {
        a.thread_exit(t);
    }
    // 2 threads: max_cids = 2. Thread 7 owns 7: its next acquire moves it below 2.
    assert_eq!(a.max_nr_cid(), 2);
    let cid = a.acquire_at(7, 7, ms(1)).unwrap();
    assert!(cid < 2, "converged: {cid}");
    a.release_at(7, cid, ms(1));
    assert_eq!(a.owned_cid(7), Some(cid));
    let other = a.acquire_at(6, 6, ms(2)).unwrap();
    assert!(other < 2 && other != cid, "{other}");
    a.release_at(6, other, ms(2));
}

#[test]
fn nested_leases_and_exit() {
    let mut a = allocator(Policy::PerTask, 4, 4);
    a.thread_start(0, &[0, 1, 2, 3]);
    a.thread_start(1, &[0, 1, 2, 3]);
    let own = a.acquire_at(0, 0, ms(0)).unwrap();
    let nested = a.acquire_at(0, 0, ms(0)).unwrap();
    assert_ne!(own, nested, "a second lease is transient");
    a.release_at(0, nested, ms(1));
    a.release_at(0, own, ms(1));
    assert_eq!(
        a.owned_cid(0),
        Some(own),
        "the nested lease did not cost the own CID"
    );
    assert_eq!(a.acquire_at(0, 2, ms(2)), Some(own));
    a.release_at(0, own, ms(2));
    // Exit frees the CID; the next thread to need one gets it (first free).
    a.thread_exit(0);
    a.thread_start(2, &[0, 1, 2, 3]);
    assert_eq!(a.acquire_at(2, 3, ms(3)), Some(own));
    a.release_at(2, own, ms(3));
}

/// The real allocator: two threads (within the limit with 2 or more allowed CPUs) keep their
/// CIDs across sleeps and yields; an exiting thread's CID goes back to the pool.
#[test]
fn real_threads_keep_their_cids() {
    use percid::index::user_cid::{AllocatorConfig, CidAllocator};
    let cpus = percid::topology::current_thread_affinity()
        .map(|s| s.len())
        .unwrap_or(1);
    if cpus < 2 {
        eprintln!("skipped: needs 2 allowed CPUs");
        return;
    }
    let alloc = CidAllocator::new(AllocatorConfig::new(Policy::PerTask));
    // Both stay alive until both are done: an exit lowers max_cids, and the survivor's CID
    // then converges below it (CID 1 becomes 0), as on Linux 6.19.
    let done = std::sync::Barrier::new(2);
    let seen: Vec<Vec<u32>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let cids: Vec<u32> = (0..20)
                        .map(|i| {
                            let lease = alloc.acquire();
                            let cid = lease.cid();
                            drop(lease);
                            if i % 5 == 0 {
                                std::thread::sleep(Duration::from_millis(15));
                            } else {
                                std::thread::yield_now();
                            }
                            cid
                        })
                        .collect();
                    done.wait();
                    cids
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for cids in &seen {
        assert!(cids.iter().all(|&c| c == cids[0]), "{seen:?}");
    }
    assert_ne!(seen[0][0], seen[1][0]);
    assert!(seen.iter().all(|c| c[0] < 2), "first free IDs: {seen:?}");
    // Both threads exited and gave their CIDs back: a new thread gets ID 0.
    let cid = std::thread::scope(|s| s.spawn(|| alloc.acquire().cid()).join().unwrap());
    assert_eq!(cid, 0);
    assert_eq!(alloc.live_threads(), 0);
}
