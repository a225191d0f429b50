//! A custom per-slot struct: `cargo run --example custom_per_cpu`.
//!
//! `PerCpu<T>` needs `T: SlotSafe` (its slots are byte copies of the init value);
//! `slot_safe!` implements it for a `#[repr(C)]` struct after checking every field and the
//! absence of padding. Updates go through `run`, which hands the closure the calling thread's
//! slot and an operation handle (`Current`) bound to it, and retries the closure until it
//! returns `Some`: an rseq operation that was interrupted (preemption, migration, signal)
//! reports `Aborted`, and the closure returns `None` to run again on the thread's slot now.

use percid::PerCpu;
use percid::ops::Outcome;
use std::sync::atomic::{AtomicU64, Ordering};

#[repr(C)]
struct Latency {
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}
percid::slot_safe!(Latency {
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64
});

static LATENCY: PerCpu<Latency> = PerCpu::new(Latency {
    count: AtomicU64::new(0),
    total_ns: AtomicU64::new(0),
    max_ns: AtomicU64::new(0),
});

fn record(ns: u64) {
    // Three fields, each its own critical section; a retry re-runs only what did not commit.
    let mut step = 0;
    let done = LATENCY.run(|current, slot| {
        if step == 0 {
            if !current.add(&slot.count, 1).is_committed() {
                return None;
            }
            step = 1;
        }
        if step == 1 {
            if !current.add(&slot.total_ns, ns).is_committed() {
                return None;
            }
            step = 2;
        }
        // A maximum: compare-and-store until the slot's value is at least `ns`.
        let max = slot.max_ns.load(Ordering::Relaxed);
        if max >= ns {
            return Some(());
        }
        match current.compare_and_store(&slot.max_ns, max, ns) {
            Outcome::Committed => Some(()),
            Outcome::CompareFailed | Outcome::Aborted => None,
        }
    });
    assert!(done.is_some(), "this thread has a slot");
}

fn main() {
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for i in 0..10_000u64 {
                    record(100 + (i * 7 + t * 13) % 900);
                }
            });
        }
    });
    let count: u64 = LATENCY
        .iter()
        .map(|l| l.count.load(Ordering::Relaxed))
        .sum();
    let total: u64 = LATENCY
        .iter()
        .map(|l| l.total_ns.load(Ordering::Relaxed))
        .sum();
    let max = LATENCY
        .iter()
        .map(|l| l.max_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    assert_eq!(count, 40_000);
    println!(
        "{count} samples, mean {} ns, max {max} ns, over {} slots ({:?})",
        total / count,
        LATENCY.nr_slots(),
        LATENCY.access()
    );
}
