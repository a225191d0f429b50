//! `Limit` under pressure (issue 23): the high watermark's pressure reports, and the reserve
//! that reclaim scopes may charge past the limit. Every index source, in this process and in
//! the child processes of `common::matrix` (own registration, forced fallback).

mod common;

use common::{inject, matrix, ops_per_thread, run_with_signals, stress_threads};
use percid::counter::{Charged, LimitConfigError, LimitError};
use percid::{Index, Limit, reclaim_scope};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn nproc() -> u64 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u64)
}

#[test]
fn watermarks_and_reserves_are_validated() {
    assert_eq!(
        Limit::new(10, 4).with_high(11).unwrap_err(),
        LimitConfigError::HighAboveLimit {
            high: 11,
            limit: 10
        }
    );
    assert_eq!(Limit::new(10, 4).with_high(10).unwrap().high(), Some(10));
    assert_eq!(Limit::new(10, 4).high(), None);
    assert!(matches!(
        Limit::new(u64::MAX, 4).with_reserve(1),
        Err(LimitConfigError::ReserveTooLarge { reserve: 1, .. })
    ));
    assert!(matches!(
        Limit::new(1 << 62, 4).with_reserve(1 << 62),
        Err(LimitConfigError::ReserveTooLarge { .. })
    ));
    assert_eq!(Limit::new(10, 4).with_reserve(3).unwrap().reserve(), 3);
}

/// Without stock (`batch = 0`) the crossing is exact in what callers hold: the 51st unit of a
/// high of 50 reports, once; a fall to `high` re-arms; a crossing made by plain `try_charge`
/// waits for the next pressure-aware charge; a report nobody took is dropped by a fall.
#[test]
fn pressure_is_reported_once_per_crossing() {
    matrix("pressure_is_reported_once_per_crossing", || {
        for index in Index::ALL {
            let limit = Limit::with_index(index, 100, 0).with_high(50).unwrap();
            let mut reports = Vec::new();
            for k in 1..=100u64 {
                if limit.try_charge_with_pressure(1).unwrap().is_pressure() {
                    reports.push(k);
                }
            }
            assert_eq!(reports, [51], "{index}");
            assert_eq!(limit.stats().pressure_events, 1, "{index}");
            // Down to 51: still above, nothing re-armed.
            limit.uncharge(49);
            assert_eq!(limit.try_charge_with_pressure(1), Ok(Charged::Normal));
            // Down to 50 (= high): re-armed; the next unit crosses again.
            limit.uncharge(2);
            assert_eq!(limit.usage(), 50, "{index}");
            assert_eq!(limit.try_charge_with_pressure(1), Ok(Charged::Pressure));
            assert_eq!(limit.try_charge_with_pressure(1), Ok(Charged::Normal));
            // A crossing by plain try_charge is left for the next pressure-aware charge.
            limit.uncharge(2);
            limit.try_charge(1).unwrap();
            assert_eq!(limit.try_charge_with_pressure(1), Ok(Charged::Pressure));
            // A crossing nobody took, then a fall to high: the report is dropped.
            limit.uncharge(2);
            limit.try_charge(1).unwrap();
            limit.uncharge(1);
            assert_eq!(limit.try_charge_with_pressure(0), Ok(Charged::Normal));
            assert_eq!(limit.stats().pressure_events, 4, "{index}");
            limit.uncharge(50);
            assert_eq!(limit.usage(), 0, "{index}");
        }
    });
}

/// With stock, the crossing is exact in `usage` and within the stock bound in what callers
/// hold: never late (reported by the time callers hold `high + 1`), early by at most the
/// stock (`usage - charged <= batch × slots` at the report).
#[test]
fn pressure_with_stock_is_never_late_and_early_within_the_stock_bound() {
    matrix(
        "pressure_with_stock_is_never_late_and_early_within_the_stock_bound",
        || {
            for index in Index::ALL {
                let (high, batch) = (50u64, 8u64);
                let limit = Limit::with_index(index, 100, batch)
                    .with_high(high)
                    .unwrap();
                let mut reports = Vec::new();
                for k in 1..=100u64 {
                    if limit.try_charge_with_pressure(1).unwrap().is_pressure() {
                        let usage = limit.usage();
                        assert!(usage > high, "{index}: report at usage {usage}");
                        assert!(
                            usage - k <= batch * nproc(),
                            "{index}: report at {k} held, usage {usage}: beyond the stock bound"
                        );
                        reports.push(k);
                    }
                }
                assert!(
                    reports.first().is_some_and(|&k| k <= high + 1),
                    "{index}: late or missing: {reports:?}"
                );
                // Single-threaded, every crossing is taken by the charge that made it.
                assert_eq!(
                    reports.len() as u64,
                    limit.stats().pressure_events,
                    "{index}"
                );
                limit.uncharge(100);
                limit.drain();
                assert_eq!(limit.usage(), 0, "{index}");
            }
        },
    );
}

/// A cache of 10 objects fills a limit of 10; its reclaimer must charge 1 unit (an eviction
/// record) before it can free 2 objects.
fn reclaim(limit: &Limit, cached: &mut u64) -> Result<(), LimitError> {
    let _scope = reclaim_scope();
    limit.try_charge(1)?;
    *cached -= 2;
    limit.uncharge(2);
    limit.uncharge(1);
    Ok(())
}

#[test]
fn a_reclaimer_that_charges_to_free_succeeds_only_with_a_reserve() {
    matrix(
        "a_reclaimer_that_charges_to_free_succeeds_only_with_a_reserve",
        || {
            for index in Index::ALL {
                for reserve in [0, 4] {
                    let limit = Limit::with_index(index, 10, 4)
                        .with_reserve(reserve)
                        .unwrap();
                    let mut cached = 0;
                    while limit.try_charge(1).is_ok() {
                        cached += 1;
                    }
                    assert_eq!((cached, limit.usage()), (10, 10), "{index}");
                    let r = reclaim(&limit, &mut cached);
                    if reserve == 0 {
                        let err = r.unwrap_err();
                        assert_eq!((err.requested, err.usage), (1, 10), "{index}");
                        assert_eq!(cached, 10);
                        assert_eq!(limit.stats().reserve_charges, 0);
                    } else {
                        r.unwrap();
                        assert_eq!(cached, 8);
                        assert_eq!(limit.stats().reserve_charges, 1, "{index}");
                        // The reserve was paid back: room for 2 under the limit again.
                        limit.try_charge(2).unwrap();
                        cached += 2;
                        assert!(limit.try_charge(1).is_err(), "{index}");
                    }
                    limit.uncharge(cached);
                    limit.drain();
                    assert_eq!(limit.usage(), 0, "{index}");
                }
            }
        },
    );
}

/// Outside a scope the reserve is never used (on this thread, on another thread while this
/// one is in a scope); a nested scope gets nothing more; uncharges pay the reserve back first.
#[test]
fn the_reserve_is_for_scopes_only_and_paid_back_first() {
    matrix("the_reserve_is_for_scopes_only_and_paid_back_first", || {
        for index in Index::ALL {
            let limit = Limit::with_index(index, 10, 4).with_reserve(3).unwrap();
            let mut held = 0;
            while limit.try_charge(1).is_ok() {
                held += 1;
            }
            assert_eq!(held, 10, "{index}");
            assert!(
                limit.try_charge(1).is_err(),
                "{index}: reserve used outside"
            );
            {
                let outer = reclaim_scope();
                assert!(!outer.is_nested());
                limit.try_charge(2).unwrap();
                assert_eq!(limit.usage(), 12, "{index}");
                // Another thread, outside any scope, is refused meanwhile.
                std::thread::scope(|s| {
                    s.spawn(|| {
                        assert!(!percid::counter::in_reclaim_scope());
                        assert!(limit.try_charge(1).is_err(), "{index}: reserve leaked");
                    });
                });
                {
                    let inner = reclaim_scope();
                    assert!(inner.is_nested());
                    limit.try_charge(1).unwrap();
                    assert!(limit.try_charge(1).is_err(), "{index}: nested got more");
                }
                assert!(limit.try_charge(1).is_err(), "{index}: reserve re-granted");
                assert_eq!(limit.usage(), 13, "{index}");
                // Paid back first: each uncharge lowers usage while it is above the limit
                // (it would otherwise sit in this slot's stock).
                limit.uncharge(1);
                assert_eq!(limit.usage(), 12, "{index}");
                limit.uncharge(2);
                assert_eq!(limit.usage(), 10, "{index}");
            }
            assert!(!percid::counter::in_reclaim_scope());
            assert!(
                limit.try_charge(1).is_err(),
                "{index}: reserve used after scope"
            );
            assert_eq!(limit.stats().reserve_charges, 2, "{index}");
            limit.uncharge(held);
            limit.drain();
            assert_eq!(limit.usage(), 0, "{index}");
        }
    });
}

/// Many threads, half of them charging inside reclaim scopes (some nested), with yields,
/// sleeps and signals: `usage` and what callers hold never exceed limit + reserve, every
/// report matches a crossing, and everything balances. Then the same without scopes: the
/// reserve is never used. (Workers record, the test asserts after: a panicking worker
/// would leave `run_with_signals`'s signal sender running.)
#[test]
fn concurrent_scopes_never_exceed_limit_plus_reserve() {
    matrix("concurrent_scopes_never_exceed_limit_plus_reserve", || {
        for index in Index::ALL {
            let (max, reserve) = (1_000u64, 100u64);
            let limit = Limit::with_index(index, max, 16)
                .with_high(800)
                .unwrap()
                .with_reserve(reserve)
                .unwrap();
            let (threads, reps) = (stress_threads(), ops_per_thread(5_000));
            for with_scopes in [true, false] {
                let stop = AtomicBool::new(false);
                let held_total = AtomicU64::new(0);
                let max_held = AtomicU64::new(0);
                let reports = AtomicU64::new(0);
                let reserve_charges_before = limit.stats().reserve_charges;
                std::thread::scope(|s| {
                    let watcher = s.spawn(|| {
                        let mut max_usage = 0;
                        while !stop.load(Ordering::Relaxed) {
                            max_usage = limit.usage().max(max_usage);
                            std::thread::yield_now();
                        }
                        max_usage
                    });
                    run_with_signals(threads, |t| {
                        let mut held = Vec::new();
                        for i in 0..reps {
                            let n = 1 + ((i * 7 + t * 13) % 40) as u64;
                            let scoped = with_scopes && t % 2 == 0;
                            let outer = scoped.then(reclaim_scope);
                            let inner = (scoped && i % 5 == 0).then(reclaim_scope);
                            // Refusals are expected: the threads together ask for more than the limit.
                            if let Ok(c) = limit.try_charge_with_pressure(n) {
                                if c.is_pressure() {
                                    reports.fetch_add(1, Ordering::Relaxed);
                                }
                                let now = held_total.fetch_add(n, Ordering::SeqCst) + n;
                                max_held.fetch_max(now, Ordering::Relaxed);
                                held.push(n);
                            }
                            drop((inner, outer));
                            if held.len() > 16 || (i % 3 == 0 && !held.is_empty()) {
                                let n = held.remove(0);
                                held_total.fetch_sub(n, Ordering::SeqCst);
                                limit.uncharge(n);
                            }
                            if i % 1000 == 999 {
                                limit.drain();
                            }
                            inject(i);
                        }
                        for n in held {
                            held_total.fetch_sub(n, Ordering::SeqCst);
                            limit.uncharge(n);
                        }
                    });
                    stop.store(true, Ordering::Relaxed);
                    let max_usage = watcher.join().unwrap();
                    let ceiling = if with_scopes { max + reserve } else { max };
                    assert!(
                        max_usage <= ceiling,
                        "{index} (scopes: {with_scopes}): usage {max_usage} past {ceiling}"
                    );
                });
                let (held, st) = (max_held.load(Ordering::Relaxed), limit.stats());
                if with_scopes {
                    assert!(held <= max + reserve, "{index}: {held} held at once");
                } else {
                    assert!(held <= max, "{index}: {held} held at once without a scope");
                    assert_eq!(st.reserve_charges, reserve_charges_before, "{index}");
                }
                assert!(
                    reports.load(Ordering::Relaxed) <= st.pressure_events,
                    "{index}: more reports than crossings: {st:?}"
                );
                limit.drain();
                assert_eq!(limit.usage(), 0, "{index}: unbalanced");
            }
        }
    });
}
