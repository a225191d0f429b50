//! Stress tests of the pool-backed structures: 6 x nproc threads with injected yields,
//! sleeps and signals, for every index source; again in child processes with percid's own
//! registration and with the forced fallback.

mod common;

use common::{inject, matrix, ops_per_thread, run_with_signals, stress_threads};
use percid::counter::{BatchedCounter, Limit};
use percid::list::List;
use percid::{Counter, Index};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[test]
fn counters_lose_nothing_and_batched_reads_stay_within_bound() {
    matrix(
        "counters_lose_nothing_and_batched_reads_stay_within_bound",
        || {
            for index in Index::ALL {
                let exact = Counter::with_index(index);
                let batched = BatchedCounter::with_index(index, 64);
                let started = AtomicU64::new(0);
                let completed = AtomicU64::new(0);
                let stop = AtomicBool::new(false);
                let (threads, reps) = (stress_threads(), ops_per_thread(20_000));
                std::thread::scope(|s| {
                    let sampler = s.spawn(|| {
                        let mut samples = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let low = completed.load(Ordering::SeqCst) as i64;
                            let approx = batched.read();
                            let high = started.load(Ordering::SeqCst) as i64;
                            // The exact value at the read lies in [low, high].
                            assert!(
                                approx.value + approx.error_bound as i64 >= low
                                    && approx.value - (approx.error_bound as i64) <= high,
                                "{index}: read {approx:?} outside [{low}, {high}]"
                            );
                            samples += 1;
                            std::thread::yield_now();
                        }
                        samples
                    });
                    run_with_signals(threads, |_| {
                        for i in 0..reps {
                            exact.add(1);
                            started.fetch_add(1, Ordering::SeqCst);
                            batched.add(1);
                            completed.fetch_add(1, Ordering::SeqCst);
                            inject(i);
                        }
                    });
                    stop.store(true, Ordering::Relaxed);
                    assert!(sampler.join().unwrap() > 0);
                });
                let total = (threads * reps) as u64;
                assert_eq!(exact.sum(), total, "{index}: Counter lost increments");
                assert_eq!(
                    batched.sum(),
                    total as i64,
                    "{index}: BatchedCounter lost increments"
                );
                let approx = batched.read();
                assert!(
                    approx.contains(total as i64),
                    "{index}: quiescent read {approx:?} vs {total}"
                );
            }
        },
    );
}

#[test]
fn limit_never_exceeds_and_balances() {
    matrix("limit_never_exceeds_and_balances", || {
        for index in Index::ALL {
            let limit = Limit::with_index(index, 1_000, 16);
            let stop = AtomicBool::new(false);
            let refused = AtomicU64::new(0);
            let (threads, reps) = (stress_threads(), ops_per_thread(5_000));
            std::thread::scope(|s| {
                let watcher = s.spawn(|| {
                    let mut max = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let u = limit.usage();
                        assert!(u <= 1_000, "{index}: usage {u} over the limit");
                        max = max.max(u);
                        std::thread::yield_now();
                    }
                    max
                });
                run_with_signals(threads, |t| {
                    let mut held = Vec::new();
                    for i in 0..reps {
                        let n = 1 + ((i * 7 + t * 13) % 40) as u64;
                        match limit.try_charge(n) {
                            Ok(()) => held.push(n),
                            Err(e) => {
                                assert_eq!((e.requested, e.limit), (n, 1_000));
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if held.len() > 8 || (i % 3 == 0 && !held.is_empty()) {
                            limit.uncharge(held.remove(0));
                        }
                        if i % 1000 == 999 {
                            limit.drain();
                        }
                        inject(i);
                    }
                    for n in held {
                        limit.uncharge(n);
                    }
                });
                stop.store(true, Ordering::Relaxed);
                watcher.join().unwrap();
            });
            limit.drain();
            assert_eq!(
                limit.usage(),
                0,
                "{index}: unbalanced after uncharging everything and draining"
            );
        }
    });
}

#[test]
fn batching_never_fails_a_charge_that_fits() {
    for index in Index::ALL {
        let limit = Limit::with_index(index, 100, 64);
        // Each charge of 1 takes a batch of 64 into the stock; the 37th unit cannot get a
        // full batch any more (64 + 64 > 100) and must be charged exactly.
        for _ in 0..100 {
            limit.try_charge(1).expect("fits under the limit");
        }
        assert_eq!(limit.usage(), 100);
        let err = limit.try_charge(1).unwrap_err();
        assert_eq!(
            (err.requested, err.usage, err.limit),
            (1, 100, 100),
            "{index}"
        );
        limit.uncharge(50);
        // Headroom of 50 may sit in a stock; a charge of 50 must still succeed.
        limit.try_charge(50).expect("fits after uncharge");
        limit.uncharge(100);
        limit.drain();
        assert_eq!(limit.usage(), 0, "{index}");
    }
}

#[test]
fn list_conserves_every_element() {
    matrix("list_conserves_every_element", || {
        for index in Index::ALL {
            let list = List::with_index(index);
            let elements = 2_000u64;
            for e in 0..elements {
                list.push(e);
            }
            let stop = AtomicBool::new(false);
            let drains = std::sync::atomic::AtomicUsize::new(0);
            let (threads, reps) = (stress_threads(), ops_per_thread(10_000));
            std::thread::scope(|s| {
                // A drainer takes everything now and then and pushes it back.
                let drainer = s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        for e in list.drain() {
                            list.push(e);
                        }
                        drains.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(std::time::Duration::from_micros(100));
                    }
                });
                run_with_signals(threads, |_| {
                    let pop_push = |i| {
                        if let Some(e) = list.pop() {
                            inject(i);
                            list.push(e);
                        }
                    };
                    for i in 0..reps {
                        pop_push(i);
                    }
                    // However the scheduler ordered the threads, at least one drain runs
                    // while the workers pop and push (on a loaded machine the drainer may
                    // not have run at all during the counted repetitions).
                    let mut i = reps;
                    while drains.load(Ordering::Relaxed) == 0 {
                        pop_push(i);
                        i += 1;
                        std::thread::yield_now();
                    }
                });
                stop.store(true, Ordering::Relaxed);
                drainer.join().unwrap();
                assert!(drains.load(Ordering::Relaxed) > 0);
            });
            let mut all = list.drain();
            all.sort_unstable();
            let expected: Vec<u64> = (0..elements).collect();
            assert_eq!(
                all.len(),
                expected.len(),
                "{index}: lost or duplicated elements"
            );
            assert_eq!(all, expected, "{index}: elements changed");
            assert!(list.pop().is_none());
        }
    });
}

#[test]
fn list_is_lifo_per_slot_and_drops_its_nodes() {
    let list = List::with_index(Index::default());
    // On one pinned thread every push and pop hits the same slot: LIFO order.
    std::thread::scope(|s| {
        s.spawn(|| {
            percid::topology::pin_current_thread_to_cpu(percid::current_cpu().unwrap() as usize)
                .unwrap();
            for i in 0..100 {
                list.push(std::sync::Arc::new(i));
            }
            for i in (90..100).rev() {
                assert_eq!(*list.pop().unwrap(), i);
            }
        });
    });
    let witness = std::sync::Arc::new(7);
    list.push(witness.clone());
    drop(list);
    assert_eq!(
        std::sync::Arc::strong_count(&witness),
        1,
        "drop freed every node"
    );
}

/// Slots fewer than the indexes in use: threads whose index is beyond them fall back to the
/// shared overflow paths, and nothing is lost or out of bounds.
#[test]
fn indexes_beyond_the_slots_fall_back_safely() {
    let pool = percid::Pool::new(percid::pool::PoolConfig::new().slots(1)).unwrap();
    for index in Index::ALL {
        let counter = Counter::in_pool(&pool, index).unwrap();
        let batched = BatchedCounter::in_pool(&pool, index, 8).unwrap();
        let list = List::in_pool(&pool, index).unwrap();
        let limit = Limit::in_pool(&pool, index, 10_000, 4).unwrap();
        std::thread::scope(|s| {
            for cpu in percid::topology::allowed_cpus().unwrap().iter() {
                let (counter, batched, list, limit) = (&counter, &batched, &list, &limit);
                s.spawn(move || {
                    percid::topology::pin_current_thread_to_cpu(cpu).unwrap();
                    for i in 0..1000u64 {
                        counter.add(1);
                        batched.add(1);
                        list.push(i);
                        limit.try_charge(1).unwrap();
                    }
                });
            }
        });
        let cpus = percid::topology::allowed_cpus().unwrap().len() as u64;
        assert_eq!(counter.sum(), 1000 * cpus, "{index}");
        assert_eq!(batched.sum(), 1000 * cpus as i64, "{index}");
        assert_eq!(list.drain().len() as u64, 1000 * cpus, "{index}");
        limit.uncharge(1000 * cpus);
        limit.drain();
        assert_eq!(limit.usage(), 0, "{index}");
    }
}
