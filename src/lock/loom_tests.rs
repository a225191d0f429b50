//! Model checks with `loom` of the `PerCpuLock` visitor protocol (`visit`, the code
//! `with_each` runs) and of the drain/lease lock order (`remote`, "Lock order").
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --lib lock::loom_tests`. Every model is
//! bounded to 3 preemptions per execution (`LOOM_MAX_PREEMPTIONS=n` overrides).
//!
//! # What is modelled
//!
//! * One CPU's critical sections. A section registers as in flight on the CPU, reads the lock
//!   word, and commits (stores `HELD` if it read `FREE`) only if it is still the CPU's
//!   in-flight section: another section starting on the CPU (preemption) or the membarrier
//!   fence (the IPI) aborts it, and it restarts. The CPU's state is a loom mutex, which makes
//!   the commit store and the fence's abort atomic with respect to each other, as the kernel
//!   makes an instruction and an interrupt.
//! * The fence: aborts the section in flight; a refused fence does nothing and says so.
//! * The slot's value: a loom cell, so two holders at once (two `&mut T`) fail the model.
//!
//! The visitor runs the crate's own `visit::acquire_rseq` and `visit::release`. The lock
//! order model re-expresses `remote::DrainLock` with loom's primitives (the real one uses
//! `std`'s mutex in a `const` constructor), with the same lending rules.
//!
//! The `*_is_caught` models run the protocols as they were before issue 17 and expect loom to
//! fail them: they show the models can see the bugs the fixes remove.

use super::visit::{self, FREE, HELD, REMOTE, Word};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64};
use loom::sync::{Arc, Mutex};
use loom::thread;
use std::sync::atomic::Ordering;

fn model<F: Fn() + Send + Sync + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

impl Word for AtomicU64 {
    fn compare_exchange(&self, current: u64, new: u64, ok: Ordering, err: Ordering) -> bool {
        AtomicU64::compare_exchange(self, current, new, ok, err).is_ok()
    }
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }
}

/// One slot of a `PerCpuLock` on one CPU.
struct Slot {
    word: AtomicU64,
    value: UnsafeCell<u64>,
    /// The thread whose critical section is in flight on the CPU (`None`: none, or aborted).
    cpu: Mutex<Option<usize>>,
    /// The lock's visitor lock.
    visitors: Mutex<()>,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            word: AtomicU64::new(FREE),
            value: UnsafeCell::new(0),
            cpu: Mutex::new(None),
            visitors: Mutex::new(()),
        })
    }

    /// `lock`'s compare-and-store critical section on the slot, by thread `me`: `true` when
    /// it took the word.
    fn section(&self, me: usize) -> bool {
        loop {
            // Starting on the CPU preempts (aborts) whatever section was in flight there.
            *self.cpu.lock().unwrap() = Some(me);
            let w = self.word.load(Ordering::Acquire);
            let mut cpu = self.cpu.lock().unwrap();
            if *cpu != Some(me) {
                continue; // aborted: restart from the top
            }
            *cpu = None;
            if w != FREE {
                return false;
            }
            // The commit is a plain store of the section, but x86 stores (and the kernel's
            // fence) keep one order of all writes to the word: a swap places it after every
            // write already made, as the hardware does. (A loom relaxed store could be ordered
            // before the visitor's compare-exchange it has not seen, which no CPU does.)
            self.word.swap(HELD, Ordering::Relaxed);
            return true;
        }
    }

    /// A locker: one attempt; with the slot, touch the value and release (the guard's drop).
    fn locker(&self, me: usize) {
        if self.section(me) {
            self.touch();
            self.word.store(FREE, Ordering::Release);
        }
    }

    fn fence(&self, works: bool) -> bool {
        if works {
            *self.cpu.lock().unwrap() = None;
        }
        works
    }

    fn touch(&self) {
        // SAFETY: the pointer is the live cell of `self.value`; exclusion of the holders is
        // what the model checks (loom fails on any access not ordered by happens-before).
        self.value.with_mut(|p| unsafe { *p += 1 });
    }

    /// `with_each` on this slot with the crate's protocol; `Ok` when it visited.
    fn visit(&self, fence_works: bool) -> bool {
        let _serialised = self.visitors.lock().unwrap();
        match visit::acquire_rseq(&self.word, || self.fence(fence_works), thread::yield_now) {
            Ok(()) => {
                self.touch();
                assert!(visit::release(&self.word), "the visitor's own mark");
                true
            }
            Err(visit::Refused) => false,
        }
    }

    /// `with_each` on this slot as before issue 17: no visitor lock, a blind release after a
    /// refused fence (and retries without end, here cut at three attempts so the model ends).
    fn visit_before_fix(&self, fence_works: bool) -> bool {
        for _ in 0..3 {
            if self
                .word
                .compare_exchange(FREE, REMOTE, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                thread::yield_now();
                continue;
            }
            if !self.fence(fence_works) {
                self.word.store(FREE, Ordering::Release);
                return false;
            }
            if self.word.load(Ordering::Acquire) == REMOTE {
                self.touch();
                self.word.store(FREE, Ordering::Release);
                return true;
            }
        }
        false
    }
}

/// Two visitors and a locker: every holder alone on the slot; the word ends free.
#[test]
fn serialised_visitors_and_a_locker_exclude_each_other() {
    model(|| {
        let slot = Slot::new();
        let visitors: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                thread::spawn(move || assert!(slot.visit(true)))
            })
            .collect();
        slot.locker(0);
        for v in visitors {
            v.join().unwrap();
        }
        assert_eq!(slot.word.load(Ordering::Relaxed), FREE);
    });
}

/// A refused fence: the visit reports it, never releases a word a section took meanwhile
/// (two lockers would then both hold the slot), and leaves the word free once they are done.
#[test]
fn a_refused_fence_ends_the_visit_and_keeps_the_lockers_exclusive() {
    model(|| {
        let slot = Slot::new();
        let lockers: Vec<_> = (1..3)
            .map(|me| {
                let slot = slot.clone();
                thread::spawn(move || slot.locker(me))
            })
            .collect();
        assert!(!slot.visit(false));
        for l in lockers {
            l.join().unwrap();
        }
        assert_eq!(slot.word.load(Ordering::Relaxed), FREE);
    });
}

/// Before the fix, two visitors could both own the slot (item 4 of issue 17).
#[test]
#[should_panic(expected = "Causality violation")]
fn unserialised_visitors_is_caught() {
    model(|| {
        let slot = Slot::new();
        let visitors: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                thread::spawn(move || {
                    slot.visit_before_fix(true);
                })
            })
            .collect();
        slot.locker(0);
        for v in visitors {
            v.join().unwrap();
        }
    });
}

/// Before the fix, a refused fence's blind release freed a word a section held (item 3).
#[test]
#[should_panic(expected = "Causality violation")]
fn blind_release_after_a_refused_fence_is_caught() {
    model(|| {
        let slot = Slot::new();
        let lockers: Vec<_> = (1..3)
            .map(|me| {
                let slot = slot.clone();
                thread::spawn(move || slot.locker(me))
            })
            .collect();
        slot.visit_before_fix(false);
        for l in lockers {
            l.join().unwrap();
        }
    });
}

/// The drain/lease lock order: thread A holds the lease on CID 0 (inside a `PerCpu::run`) and
/// drains; thread B drains too and needs CID 0's slot under its drain lock.
mod lock_order {
    use super::*;

    /// `remote::DrainLock` and the lease table of one CID, in loom's primitives.
    struct World {
        /// The drain lock of the drained structure.
        drain: Mutex<()>,
        /// The lease on CID 0: held or not.
        lease: AtomicBool,
        /// CID 0 lent by a thread parked on a drain lock, and the borrows in progress.
        lent: Mutex<(bool, u32)>,
        /// The drained structure's slot 0.
        slot: UnsafeCell<u64>,
        /// Whether waiters lend (the fix) or just wait (before it).
        lending: bool,
    }

    impl World {
        fn try_lease(&self) -> bool {
            self.lease
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }

        fn drop_lease(&self) {
            self.lease.store(false, Ordering::Release);
        }

        /// `DrainLock::lock` by a thread that holds CID 0 (`holds`) or not.
        fn lock_drain(&self, holds: bool) -> loom::sync::MutexGuard<'_, ()> {
            if !(holds && self.lending) {
                return self.drain.lock().unwrap_or_else(|e| e.into_inner());
            }
            self.lent.lock().unwrap_or_else(|e| e.into_inner()).0 = true;
            let g = self.drain.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let mut lent = self.lent.lock().unwrap_or_else(|e| e.into_inner());
                if lent.1 == 0 {
                    lent.0 = false;
                    break;
                }
                drop(lent);
                thread::yield_now();
            }
            g
        }

        /// `with_exact_slot` for slot 0 under the drain lock: lease, own, or borrow.
        fn with_slot(&self, holds: bool) {
            loop {
                if self.try_lease() {
                    self.touch();
                    self.drop_lease();
                    return;
                }
                if holds {
                    self.touch();
                    return;
                }
                {
                    let mut lent = self.lent.lock().unwrap_or_else(|e| e.into_inner());
                    if lent.0 {
                        lent.1 += 1;
                        drop(lent);
                        self.touch();
                        self.lent.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
                        return;
                    }
                }
                thread::yield_now();
            }
        }

        fn touch(&self) {
            // SAFETY: the live cell of `self.slot`; exclusion is what the model checks.
            self.slot.with_mut(|p| unsafe { *p += 1 });
        }

        fn drain(&self, holds: bool) {
            let _g = self.lock_drain(holds);
            self.with_slot(holds);
        }
    }

    fn run(lending: bool) {
        model(move || {
            let w = Arc::new(World {
                drain: Mutex::new(()),
                lease: AtomicBool::new(false),
                lent: Mutex::new((false, 0)),
                slot: UnsafeCell::new(0),
                lending,
            });
            let b = {
                let w = w.clone();
                thread::spawn(move || w.drain(false))
            };
            // A: inside its lease on CID 0 (its own slot of another structure in use), drains.
            if w.try_lease() {
                w.drain(true);
                w.drop_lease();
            }
            if let Err(p) = b.join() {
                std::panic::resume_unwind(p);
            }
        });
    }

    /// With lending, both drains finish and each touches the slot alone.
    #[test]
    fn a_drain_inside_a_lease_completes() {
        run(true);
    }

    /// Without it (before issue 17) loom finds the deadlock: B spins for the lease under the
    /// drain lock while A, holding the lease, is parked on that lock (loom reports the spin
    /// that never ends as an execution exceeding its branch budget).
    #[test]
    // Loom stops the spin that never ends ("exceeded maximum number of branches"), which
    // poisons the drain lock the parked thread waits on: either panic may come first.
    #[should_panic]
    fn a_drain_inside_a_lease_without_lending_is_caught() {
        run(false);
    }
}
