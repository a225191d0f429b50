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
    // Spins that wait for another thread cost branches: room for the legitimate ones (a
    // spin that never ends still exceeds it).
    b.max_branches = 10_000;
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

/// The drain/lease lock order (`remote`, "Lock order"). Two CIDs, two drainable structures
/// each with its drain lock and one slot per CID. A thread inside a lease (a `PerCpu::run`
/// closure) drains; a drain takes each slot it needs under an exact lease, through its own
/// lease, or by borrowing a lease lent by a waiting thread; a thread that waits (for a drain
/// lock, or for a CID under one) lends its leases and takes them back after the wait, after
/// its own borrow and once nobody borrows them.
mod lock_order {
    use super::*;

    struct World {
        drain: [Mutex<()>; 2],
        lease: [AtomicBool; 2],
        /// Per CID: lent, and the borrows in progress.
        lent: Mutex<[(bool, u32); 2]>,
        /// `slot[structure][cid]`.
        slot: [[UnsafeCell<u64>; 2]; 2],
        /// Whether waiters lend (the fix) or just wait (before it).
        lending: bool,
    }

    fn lock<T>(m: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    impl World {
        fn new(lending: bool) -> Arc<World> {
            Arc::new(World {
                drain: [Mutex::new(()), Mutex::new(())],
                lease: [AtomicBool::new(false), AtomicBool::new(false)],
                lent: Mutex::new([(false, 0); 2]),
                slot: [
                    [UnsafeCell::new(0), UnsafeCell::new(0)],
                    [UnsafeCell::new(0), UnsafeCell::new(0)],
                ],
                lending,
            })
        }

        fn try_lease(&self, cid: usize) -> bool {
            self.lease[cid]
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }

        fn drop_lease(&self, cid: usize) {
            self.lease[cid].store(false, Ordering::Release);
        }

        fn lend(&self, mine: Option<usize>) -> bool {
            match mine {
                Some(c) if self.lending => {
                    lock(&self.lent)[c].0 = true;
                    true
                }
                _ => false,
            }
        }

        fn take_back(&self, mine: Option<usize>, lent: bool) {
            let Some(c) = mine.filter(|_| lent) else {
                return;
            };
            loop {
                let mut t = lock(&self.lent);
                if t[c].1 == 0 {
                    t[c].0 = false;
                    return;
                }
                drop(t);
                thread::yield_now();
            }
        }

        /// `with_exact_slot`: slot `cid` of structure `s`, by a thread holding `mine`.
        fn with_slot(&self, s: usize, cid: usize, mine: Option<usize>) {
            let mut lent = false;
            loop {
                if self.try_lease(cid) {
                    self.touch(s, cid);
                    self.drop_lease(cid);
                    break;
                }
                if mine == Some(cid) {
                    self.touch(s, cid);
                    break;
                }
                let borrowed = {
                    let mut t = lock(&self.lent);
                    if t[cid].0 {
                        t[cid].1 += 1;
                        true
                    } else {
                        false
                    }
                };
                if borrowed {
                    self.touch(s, cid);
                    lock(&self.lent)[cid].1 -= 1;
                    break;
                }
                if !lent {
                    lent = self.lend(mine);
                }
                thread::yield_now();
            }
            self.take_back(mine, lent);
        }

        fn touch(&self, s: usize, cid: usize) {
            // SAFETY: the live cell of `self.slot`; exclusion is what the model checks.
            self.slot[s][cid].with_mut(|p| unsafe { *p += 1 });
        }

        /// Drains structure `s` (both slots) from a thread holding `mine`.
        fn drain(&self, s: usize, mine: Option<usize>) {
            // `DrainLock::lock` lends only when the lock is taken; lending before every
            // wait is the same protocol with more interleavings.
            let lent = self.lend(mine);
            let g = lock(&self.drain[s]);
            self.take_back(mine, lent);
            self.with_slot(s, 0, mine);
            self.with_slot(s, 1, mine);
            drop(g);
        }

        /// A thread inside a lease on `cid` drains structure `s`.
        fn drain_in_lease(&self, s: usize, cid: usize) {
            if self.try_lease(cid) {
                self.drain(s, Some(cid));
                self.drop_lease(cid);
            }
        }
    }

    fn join(h: thread::JoinHandle<()>) {
        if let Err(p) = h.join() {
            std::panic::resume_unwind(p);
        }
    }

    /// A drain inside a lease on CID 0 while another thread drains the same structure: the
    /// second waits for CID 0 under the drain lock, the first for that lock.
    fn parked_lender(lending: bool) {
        model(move || {
            let w = World::new(lending);
            let b = {
                let w = w.clone();
                thread::spawn(move || w.drain(0, None))
            };
            w.drain_in_lease(0, 0);
            join(b);
        });
    }

    /// Two drains inside leases on CIDs 0 and 1, of two structures: each may hold its drain
    /// lock and wait for the other's CID.
    fn crossed_drains(lending: bool) {
        model(move || {
            let w = World::new(lending);
            let b = {
                let w = w.clone();
                thread::spawn(move || w.drain_in_lease(1, 1))
            };
            w.drain_in_lease(0, 0);
            join(b);
        });
    }

    /// With lending, both drains finish and each touches each slot alone.
    #[test]
    fn a_drain_inside_a_lease_completes() {
        parked_lender(true);
    }

    /// With lending under a drain lock too, crossed drains finish.
    #[test]
    fn crossed_drains_inside_leases_complete() {
        crossed_drains(true);
    }

    // Without lending (before issue 17) loom finds the deadlocks: a spin for a lease that
    // never ends, reported as an execution exceeding its branch budget (which may poison a
    // lock another thread waits on: either panic may come first).
    #[test]
    #[should_panic]
    fn a_drain_inside_a_lease_without_lending_is_caught() {
        parked_lender(false);
    }

    #[test]
    #[should_panic]
    fn crossed_drains_without_lending_is_caught() {
        crossed_drains(false);
    }
}
