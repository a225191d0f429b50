//! Taking another thread's slot: exclusive access to any slot from any thread, for drains.
//!
//! Per-slot operations exclude each other only *on the same slot index from the thread
//! that holds it* (an rseq critical section checks its own CPU or CID; a lease excludes
//! other lease holders). A drain runs on some other thread and must exclude them too.
//!
//! * **Leases**: take a lease on exactly that CID ([`CidAllocator::try_acquire_exact`]),
//!   yielding while another thread holds it; the slot is then the drainer's. If the drainer
//!   itself holds that CID (a drain started from inside another structure's operation on the
//!   same allocator, e.g. a `Limit::try_charge` inside a `PerCpu::run` closure), the slot is
//!   already exclusively the drainer's: it proceeds without a second lease instead of waiting
//!   for itself ([`CidAllocator::held_by_current_thread`]).
//! * **rseq**: no lease exists, and under mm_cid there is no CID-to-CPU map to target.
//!   The drainer sets a *lock bit* in the slot's word with an atomic `fetch_or`, then calls
//!   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`, which restarts every critical
//!   section in flight on other CPUs. Every operation of the structures that use this
//!   module *compares* the word (compare-and-store, or list pop with a tag mask) against a
//!   value without the lock bit, so a critical section that begins after the bit is set
//!   cannot commit. One that read the word before the bit was set either committed before
//!   the fence returned (overwriting the bit: the drainer sees the bit gone and tries
//!   again) or was restarted. So once the fence returns and the bit is still there, no
//!   critical section can change the word: the drainer owns it until it stores the
//!   unlocked value back. Under `cpu_id` indexing, a move of one slot fences only that
//!   slot's CPU (`MEMBARRIER_CMD_FLAG_CPU`, Linux 5.10+; the process-wide fence where the
//!   kernel refuses the flag): a section that commits to slot `c` checks that it runs on CPU
//!   `c`, and one begun there that was preempted or migrated restarts anyway. Under mm_cid or
//!   leases a slot is tied to no CPU, and the fence stays process-wide. If the fence fails (the kernel refuses it), the drainer clears the
//!   lock bits it set and reports it: a slot is never left locked.
//!
//! Structures that drain choose their access with `Access::drainable`: rseq only where the
//! membarrier command exists, leases otherwise.
//!
//! # Lock order: drain locks and leases
//!
//! Every structure serialises its drains with a [`DrainLock`], and a drain under leases waits
//! for the CIDs it needs while holding it. A thread inside a lease (in a
//! [`PerCpu::run`](crate::per_cpu::PerCpu::run) closure, say) may call a drain too, and then
//! waits for the drain lock while holding its CID: the other order. Left alone, the drain
//! lock's holder would wait for that CID and its holder for the lock, forever.
//!
//! So a thread that must wait while it holds leases *lends* them first: it publishes its
//! `(allocator, cid)` pairs in a process-wide table, waits, and takes them back once the wait
//! is over, after any borrow in progress ended. That covers both waits of a drain: for a
//! drain lock, and (holding one) for another thread's CID, where two drains inside leases,
//! each holding its structure's lock and waiting for the other's CID, would otherwise wait
//! for each other. A drain that needs a lent CID borrows it instead of waiting
//! ([`with_exact_slot`]): the lender touches no slot through a lent lease while it waits,
//! and every other thread is kept off the CID by the lender's lease, so the borrower has the
//! slot to itself. Borrowers hold their own structure's drain lock, so two borrowers of one
//! CID work on different structures, i.e. different words, and a lender that holds a drain
//! lock never sees its own structure's slot borrowed. Invariants:
//!
//! * a lease is lent only by its holder, only while that thread waits (for a drain lock, or
//!   for a CID under one);
//! * a lent lease is borrowed only by a thread that holds a drain lock, for one slot of that
//!   lock's structure, and the lender resumes only after every borrow of it ended;
//! * a structure never takes its own drain lock inside its own per-slot operation (a drain
//!   called from inside another structure's lease is the case handled here).
//!
//! A thread holding more than `CidAllocator`'s tracked number of leases (8) cannot lend the
//! ones beyond it: a drain waiting for those still waits for the holder.

use crate::index::CidAllocator;
use crate::ops::Access;
use crate::rseq::IndexMode;
use crate::rseq::membarrier::{self, FenceKind};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Serialises a structure's drains (or visits): a mutex whose waiters lend their leases to
/// its holder (module docs, "Lock order").
#[derive(Debug, Default)]
pub(crate) struct DrainLock {
    mutex: Mutex<()>,
}

/// A held [`DrainLock`]: what [`with_exact_slot`] and [`take_slots`] require.
#[derive(Debug)]
pub(crate) struct DrainGuard<'a> {
    _held: MutexGuard<'a, ()>,
}

/// Leases lent by threads parked on a drain lock: `(allocator id, cid, borrows in progress)`.
static LENT: Mutex<Vec<(u64, u32, u32)>> = Mutex::new(Vec::new());

fn lent() -> MutexGuard<'static, Vec<(u64, u32, u32)>> {
    LENT.lock().unwrap_or_else(|e| e.into_inner())
}

impl DrainLock {
    pub(crate) const fn new() -> DrainLock {
        DrainLock {
            mutex: Mutex::new(()),
        }
    }

    /// Takes the lock, waiting for the current holder; a caller holding leases lends them
    /// while it waits (module docs).
    pub(crate) fn lock(&self) -> DrainGuard<'_> {
        if let Some(g) = self.try_lock() {
            return g;
        }
        let lending = Lending::start();
        let held = self.mutex.lock().unwrap_or_else(|e| e.into_inner());
        // Take the leases back (once no drain is using them) before anything else runs.
        drop(lending);
        DrainGuard { _held: held }
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> Option<DrainGuard<'_>> {
        match self.mutex.try_lock() {
            Ok(g) => Some(DrainGuard { _held: g }),
            Err(TryLockError::Poisoned(e)) => Some(DrainGuard {
                _held: e.into_inner(),
            }),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// The calling thread's leases, lent while it waits (module docs, "Lock order"); taken back
/// on drop, after every borrow of them ended.
struct Lending {
    mine: Vec<(u64, u32)>,
}

impl Lending {
    fn start() -> Lending {
        let mine = crate::index::leases_of_current_thread();
        if !mine.is_empty() {
            lent().extend(mine.iter().map(|&(a, c)| (a, c, 0)));
        }
        Lending { mine }
    }
}

impl Drop for Lending {
    fn drop(&mut self) {
        if self.mine.is_empty() {
            return;
        }
        // A borrow is one slot operation of another drain: wait for it to end.
        let mut spins = 0u32;
        loop {
            {
                let mut table = lent();
                let busy = self
                    .mine
                    .iter()
                    .any(|&(a, c)| table.iter().any(|&(ta, tc, n)| (ta, tc) == (a, c) && n > 0));
                if !busy {
                    for &(a, c) in &self.mine {
                        if let Some(i) = table.iter().position(|&(ta, tc, _)| (ta, tc) == (a, c)) {
                            table.swap_remove(i);
                        }
                    }
                    return;
                }
            }
            backoff(&mut spins);
        }
    }
}

/// A borrow of a lent lease, ended on drop.
struct Borrow {
    alloc: u64,
    cid: u32,
}

impl Borrow {
    fn try_new(alloc: &CidAllocator, cid: u32) -> Option<Borrow> {
        let id = alloc.id();
        let mut table = lent();
        let e = table.iter_mut().find(|e| (e.0, e.1) == (id, cid))?;
        e.2 += 1;
        Some(Borrow { alloc: id, cid })
    }
}

impl Drop for Borrow {
    fn drop(&mut self) {
        let mut table = lent();
        if let Some(e) = table
            .iter_mut()
            .find(|e| (e.0, e.1) == (self.alloc, self.cid))
        {
            e.2 -= 1;
        }
    }
}

fn backoff(spins: &mut u32) {
    *spins = spins.saturating_add(1);
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Counters of a structure's drains, for its stats view.
#[derive(Debug, Default)]
pub(crate) struct DrainCounters {
    /// Drains that ran (took the drain lock and looked at the slots).
    pub drains: AtomicU64,
    /// `membarrier` fences issued.
    pub fences: AtomicU64,
    /// The part of `fences` that restarted one CPU only (`MEMBARRIER_CMD_FLAG_CPU`).
    pub fences_one_cpu: AtomicU64,
    /// Slots taken (non-zero words moved out).
    pub slots_taken: AtomicU64,
    /// Fences the kernel refused (the drain then gave up on the locked slots).
    pub fence_failures: AtomicU64,
}

impl DrainCounters {
    pub(crate) const fn new() -> DrainCounters {
        DrainCounters {
            drains: AtomicU64::new(0),
            fences: AtomicU64::new(0),
            fences_one_cpu: AtomicU64::new(0),
            slots_taken: AtomicU64::new(0),
            fence_failures: AtomicU64::new(0),
        }
    }
}

/// The membarrier rseq fence failed during a drain: the slots it had locked were unlocked
/// and left in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FenceFailed;

impl fmt::Display for FenceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the membarrier rseq fence failed: slots left in place")
    }
}

/// How many times a drain retries a refused fence before giving up.
const FENCE_ATTEMPTS: u32 = 3;

/// Takes every non-zero slot word of a structure: for each slot `s` in `slots` whose word is
/// non-zero, gains exclusive access (see the module docs), passes the word's value (without
/// `lock`) to `take(s, value)`, and leaves the word 0.
///
/// `lock` must be a bit no legitimate value of the word uses, and every per-slot operation
/// on these words must fail when it is set. Drains of one structure are serialised by its
/// [`DrainLock`], held (`_serialised`): two drainers could otherwise both see their lock bit
/// and take the same value.
pub(crate) fn take_slots<'a>(
    serialised: &DrainGuard<'_>,
    access: Access,
    slots: impl Iterator<Item = usize> + Clone,
    word: impl Fn(usize) -> &'a AtomicU64,
    lock: u64,
    counters: &DrainCounters,
    take: impl FnMut(usize, u64),
) -> Result<(), FenceFailed> {
    take_slots_with(
        serialised,
        access,
        slots,
        word,
        lock,
        counters,
        |cpu| match cpu {
            Some(cpu) => membarrier::fence_rseq_on(cpu),
            None => membarrier::fence_rseq().then_some(FenceKind::ProcessWide),
        },
        take,
    )
}

/// [`take_slots`] with the fence as a parameter (tests inject failures): `fence(Some(cpu))`
/// restarts the sections that may touch the `cpu_id` slot `cpu` (one CPU, or every CPU where
/// the kernel refuses that), `fence(None)` every CPU; `None` when refused.
#[allow(clippy::too_many_arguments)]
pub(crate) fn take_slots_with<'a>(
    serialised: &DrainGuard<'_>,
    access: Access,
    slots: impl Iterator<Item = usize> + Clone,
    word: impl Fn(usize) -> &'a AtomicU64,
    lock: u64,
    counters: &DrainCounters,
    mut fence: impl FnMut(Option<usize>) -> Option<FenceKind>,
    mut take: impl FnMut(usize, u64),
) -> Result<(), FenceFailed> {
    counters.drains.fetch_add(1, Ordering::Relaxed);
    match access {
        Access::Lease(alloc) => {
            for s in slots.filter(|&s| s < alloc.capacity() as usize) {
                if word(s).load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let v = with_exact_slot(serialised, alloc, s as u32, || {
                    word(s).swap(0, Ordering::Acquire)
                });
                if v != 0 {
                    counters.slots_taken.fetch_add(1, Ordering::Relaxed);
                    take(s, v);
                }
            }
            Ok(())
        }
        Access::Rseq(mode) => {
            let mut pending: Vec<usize> = slots
                .filter(|&s| word(s).load(Ordering::Relaxed) != 0)
                .collect();
            let mut refused = 0;
            while !pending.is_empty() {
                for &s in &pending {
                    word(s).fetch_or(lock, Ordering::AcqRel);
                }
                // One `cpu_id` slot: only its CPU can run a section that commits to it.
                let target = match (mode, &pending[..]) {
                    (IndexMode::CpuId, &[cpu]) => Some(cpu),
                    _ => None,
                };
                let Some(kind) = fence(target) else {
                    counters.fence_failures.fetch_add(1, Ordering::Relaxed);
                    refused += 1;
                    if refused >= FENCE_ATTEMPTS {
                        // Never leave a slot locked: clear our bits (a section may have
                        // overwritten some already; clearing a clear bit is harmless).
                        for &s in &pending {
                            word(s).fetch_and(!lock, Ordering::AcqRel);
                        }
                        return Err(FenceFailed);
                    }
                    continue;
                };
                counters.fences.fetch_add(1, Ordering::Relaxed);
                if kind == FenceKind::OneCpu {
                    counters.fences_one_cpu.fetch_add(1, Ordering::Relaxed);
                }
                pending.retain(|&s| {
                    let w = word(s).load(Ordering::Acquire);
                    if w & lock == 0 {
                        return true; // a critical section overwrote the lock bit: again
                    }
                    // Locked and fenced: no critical section can commit to this word.
                    word(s).store(0, Ordering::Release);
                    let v = w & !lock;
                    if v != 0 {
                        counters.slots_taken.fetch_add(1, Ordering::Relaxed);
                        take(s, v);
                    }
                    false
                });
            }
            Ok(())
        }
    }
}

/// Runs `op` with exclusive access to CID `cid` of `alloc`, for one slot of the structure
/// whose drain lock the caller holds: under an exact lease, directly when the calling thread
/// already holds that CID (waiting would wait for itself), or by borrowing it from a holder
/// parked on a drain lock (module docs, "Lock order"; waiting could wait for ever).
pub(crate) fn with_exact_slot<R>(
    _serialised: &DrainGuard<'_>,
    alloc: &CidAllocator,
    cid: u32,
    op: impl FnOnce() -> R,
) -> R {
    let mut spins = 0u32;
    // Once the wait is more than a moment, the caller lends its own leases while it waits:
    // the CID's holder may be a drain that waits for one of them (module docs).
    let mut lending: Option<Lending> = None;
    loop {
        // The leases come back only after `op` and after our own borrow ended (`drop` order
        // of the locals: the borrow before `lending`): two drains may be borrowing from
        // each other, and each waits for the other's borrow to end when it takes its own
        // leases back.
        if let Some(_lease) = alloc.try_acquire_exact(cid) {
            return op();
        }
        if alloc.held_by_current_thread(cid) {
            return op();
        }
        if let Some(_borrow) = Borrow::try_new(alloc, cid) {
            return op();
        }
        if spins >= 64 && lending.is_none() {
            lending = Some(Lending::start());
        }
        backoff(&mut spins);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{AllocatorConfig, Policy};
    use crate::rseq::IndexMode;

    #[test]
    fn a_refused_fence_leaves_no_slot_locked() {
        const LOCK: u64 = 1 << 63;
        let words: Vec<AtomicU64> = [5u64, 0, 7].into_iter().map(AtomicU64::new).collect();
        let counters = DrainCounters::new();
        let mut taken = Vec::new();
        let lock = DrainLock::new();
        let r = take_slots_with(
            &lock.lock(),
            Access::Rseq(IndexMode::CpuId),
            0..words.len(),
            |s| &words[s],
            LOCK,
            &counters,
            |_| None,
            |s, v| taken.push((s, v)),
        );
        assert_eq!(r, Err(FenceFailed));
        assert!(taken.is_empty());
        let left: Vec<u64> = words.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        assert_eq!(left, [5, 0, 7], "values kept, lock bits cleared");
        assert_eq!(counters.fence_failures.load(Ordering::Relaxed), 3);
        // A fence that works once the kernel agrees again: everything is taken.
        let mut calls = 0;
        let r = take_slots_with(
            &lock.lock(),
            Access::Rseq(IndexMode::CpuId),
            0..words.len(),
            |s| &words[s],
            LOCK,
            &counters,
            |_| {
                calls += 1;
                (calls > 1).then_some(FenceKind::ProcessWide)
            },
            |s, v| taken.push((s, v)),
        );
        assert_eq!(r, Ok(()));
        assert_eq!(taken, [(0, 5), (2, 7)]);
        assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn one_cpu_id_slot_fences_one_cpu_and_anything_else_every_cpu() {
        const LOCK: u64 = 1 << 63;
        let lock = DrainLock::new();
        // (access, words) -> the fence targets asked for
        let run = |mode: IndexMode, values: &[u64]| {
            let words: Vec<AtomicU64> = values.iter().copied().map(AtomicU64::new).collect();
            let counters = DrainCounters::new();
            let mut targets = Vec::new();
            take_slots_with(
                &lock.lock(),
                Access::Rseq(mode),
                0..words.len(),
                |s| &words[s],
                LOCK,
                &counters,
                |t| {
                    targets.push(t);
                    Some(if t.is_some() {
                        FenceKind::OneCpu
                    } else {
                        FenceKind::ProcessWide
                    })
                },
                |_, _| {},
            )
            .unwrap();
            assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
            let c = &counters;
            let counts = (
                c.fences.load(Ordering::Relaxed),
                c.fences_one_cpu.load(Ordering::Relaxed),
            );
            (targets, counts)
        };
        assert_eq!(run(IndexMode::CpuId, &[0, 0, 9]), (vec![Some(2)], (1, 1)));
        assert_eq!(run(IndexMode::CpuId, &[4, 0, 9]), (vec![None], (1, 0)));
        // Under mm_cid a slot is tied to no CPU.
        assert_eq!(run(IndexMode::MmCid, &[0, 0, 9]), (vec![None], (1, 0)));
        assert_eq!(run(IndexMode::CpuId, &[0, 0, 0]), (vec![], (0, 0)));
    }

    #[test]
    fn a_drain_inside_the_drainers_own_lease_does_not_wait_for_itself() {
        let alloc: &'static CidAllocator = Box::leak(Box::new(CidAllocator::new(
            AllocatorConfig::new(Policy::CacheLocal).with_capacity(4),
        )));
        let words: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(3)).collect();
        let held = alloc.acquire();
        let mine = held.cid() as usize;
        let counters = DrainCounters::new();
        let mut taken = 0;
        take_slots(
            &DrainLock::new().lock(),
            Access::Lease(alloc),
            0..4,
            |s| &words[s],
            1 << 63,
            &counters,
            |_, v| taken += v,
        )
        .unwrap();
        assert_eq!(taken, 12, "slot {mine}, held by this thread, was taken too");
        drop(held);
    }
}
