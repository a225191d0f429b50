//! [`PerCpuLock<T>`]: one `T` per slot behind a per-slot spinlock taken with one rseq
//! critical section (librseq's `-T s` pattern).
//!
//! # Algorithm
//!
//! Each slot holds a lock word and a `T`. [`lock`](PerCpuLock::lock) enters the calling
//! thread's slot and, if the word is 0, stores 1 with one compare-and-store critical
//! section: no atomic read-modify-write instruction, because the section itself is what
//! excludes the other threads of that CPU (or CID). The guard then holds the slot even if the
//! thread migrates: a thread that later runs on that CPU finds the word at 1 and spins
//! (yielding after a while) until the holder's guard drops, which stores 0 with release
//! ordering. Taking the lock is an acquire (the section reads the word the last holder
//! released; a fence orders the value accesses after it).
//!
//! On the portable fallback the compare-and-store runs under a CID lease, the same
//! exclusivity. A thread without a slot gets `None` from `lock`.
//!
//! [`with_each`](PerCpuLock::with_each) visits every slot from any thread, under that slot's
//! lock, taken with the drain protocol (see `remote`): an atomic compare-exchange of the
//! word from 0 to a *remote* value, then the membarrier rseq fence, after which no critical
//! section can take the slot until the visitor gives it back (or under a lease on exactly
//! that CID on the fallback). Visits are serialised by the lock's visitor lock (a `remote`
//! drain lock), so a *remote* word is always the current visitor's; the visitor releases
//! with a compare-exchange from its own value, and a refused fence ends the visit with a
//! [`VisitError`] instead of a retry loop. The word protocol is in `visit`, and checked
//! with loom (`loom_tests`).
//!
//! # `fork`
//!
//! As with a `Mutex`, a slot held by another thread when the process forks stays held in
//! the child, where that thread does not exist: a child thread that runs on that slot
//! waits for ever in [`lock`](PerCpuLock::lock), and `with_each` waits for ever on it. Fork
//! only while no other thread holds a guard of the lock (or `exec` right away).

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::index::Index;
use crate::ops::{Access, Outcome};
use crate::per_cpu::{PerCpu, RunSlot, SlotSafe};
use crate::pool::{Pool, PoolError};
use crate::remote::DrainLock;
use crate::rseq::membarrier;

#[cfg(all(loom, test))]
mod loom_tests;
mod visit;

use visit::{FREE, HELD};

/// [`PerCpuLock::with_each`] could not take a slot: the membarrier rseq fence, which a visit
/// needs when the lock uses rseq critical sections, was refused (for example by a seccomp
/// filter installed after the lock was created). Slots below [`slot`](Self::slot) were
/// visited; that slot and the ones after it were not, and are left as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitError {
    slot: usize,
}

impl VisitError {
    /// The first slot not visited.
    pub fn slot(&self) -> usize {
        self.slot
    }
}

impl fmt::Display for VisitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the membarrier rseq fence was refused: slot {} and the ones after it were not visited",
            self.slot
        )
    }
}

impl std::error::Error for VisitError {}

/// A slot: the lock word and the value it guards.
#[repr(C)]
pub struct LockSlot<T> {
    lock: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: zero is a valid (free) lock word and, for `T: SlotSafe`, a valid `T`; the struct
// owns nothing and has no drop glue; `PADDING_FREE` holds when the value adds no gap after
// the 8-byte lock word (checked at compile time where the PerCpu is created).
unsafe impl<T: SlotSafe> SlotSafe for LockSlot<T> {
    const PADDING_FREE: bool =
        T::PADDING_FREE && size_of::<LockSlot<T>>() == size_of::<AtomicU64>() + size_of::<T>();
}

/// One `T` per slot, each behind its own spinlock: see the [module docs](self).
///
/// `T`'s size must be a multiple of 8 bytes (the slot is the lock word then `T`, without
/// padding): a `PerCpuLock<u32>` does not compile, use `u64` or an array.
///
/// ```
/// use percid::lock::PerCpuLock;
///
/// #[derive(Default)]
/// #[repr(C)]
/// struct Totals {
///     requests: u64,
///     bytes: u64,
/// }
/// percid::slot_safe!(Totals { requests: u64, bytes: u64 });
///
/// let totals = PerCpuLock::new(Totals { requests: 0, bytes: 0 });
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             for _ in 0..1000 {
///                 // Plain (non-atomic) updates of several fields, under this CPU's lock.
///                 let mut t = totals.lock().expect("a slot for this thread");
///                 t.requests += 1;
///                 t.bytes += 512;
///             }
///         });
///     }
/// });
/// let (mut requests, mut bytes) = (0, 0);
/// totals
///     .with_each(|_, t| {
///         requests += t.requests;
///         bytes += t.bytes;
///     })
///     .expect("the membarrier fence works here");
/// assert_eq!((requests, bytes), (4000, 4000 * 512));
/// ```
pub struct PerCpuLock<T: SlotSafe> {
    slots: PerCpu<LockSlot<T>>,
    /// Serialises [`with_each`](Self::with_each): one visitor at a time.
    visiting: DrainLock,
}

// SAFETY: the values are reached only under their slot's lock, one holder at a time (or
// through `&mut self`): like a `Mutex<T>` per slot, `Sync` when `T: Send`.
unsafe impl<T: SlotSafe + Send> Sync for PerCpuLock<T> {}
// SAFETY: the handle owns its slots (as `PerCpu`).
unsafe impl<T: SlotSafe + Send> Send for PerCpuLock<T> {}

impl<T: SlotSafe> PerCpuLock<T> {
    /// One `T` per slot, each starting as `init`, indexed by the default source; slots
    /// created on first use in [`Pool::global`].
    pub const fn new(init: T) -> Self {
        PerCpuLock {
            slots: PerCpu::new_drainable(
                None,
                LockSlot {
                    lock: AtomicU64::new(FREE),
                    value: UnsafeCell::new(init),
                },
            ),
            visiting: DrainLock::new(),
        }
    }

    /// As [`new`](Self::new), indexed by `index`.
    pub const fn with_index(index: Index, init: T) -> Self {
        PerCpuLock {
            slots: PerCpu::new_drainable(
                Some(index),
                LockSlot {
                    lock: AtomicU64::new(FREE),
                    value: UnsafeCell::new(init),
                },
            ),
            visiting: DrainLock::new(),
        }
    }

    /// As [`with_index`](Self::with_index), with the slots in `pool`, created now.
    pub fn in_pool(pool: &Pool, index: Index, init: T) -> Result<Self, PoolError> {
        Ok(PerCpuLock {
            slots: PerCpu::in_pool_drainable(
                pool,
                index,
                LockSlot {
                    lock: AtomicU64::new(FREE),
                    value: UnsafeCell::new(init),
                },
            )?,
            visiting: DrainLock::new(),
        })
    }

    /// How the lock reaches its slots, once they exist.
    pub fn access(&self) -> Option<Access> {
        self.slots.access()
    }

    /// Number of slots (creating them if needed).
    pub fn nr_slots(&self) -> usize {
        self.slots.nr_slots()
    }

    /// Locks the calling thread's current slot, spinning (then yielding) while another
    /// thread holds it. `None` when the thread has no slot.
    #[inline(always)]
    pub fn lock(&self) -> Option<SlotGuard<'_, T>> {
        self.lock_in(&self.slots)
    }

    /// A [`LockHandle`] for tight loops: [`lock`](Self::lock) with the slot layout kept in
    /// registers (see [`per_cpu::Handle`](crate::per_cpu::Handle)).
    #[inline]
    pub fn handle(&self) -> LockHandle<'_, T> {
        LockHandle {
            lock: self,
            slots: self.slots.handle(),
        }
    }

    #[inline(always)]
    fn lock_in<'a>(&'a self, slots: impl RunSlot<'a, LockSlot<T>>) -> Option<SlotGuard<'a, T>> {
        // One attempt inline: a free slot of this CPU is the common case. (The closure's
        // result is a niche-packed `Option<&slot>`: small enough to come back in registers.)
        let slot = match slots.run_in(|current, slot| {
            match current.compare_and_store(&slot.lock, FREE, HELD) {
                Outcome::Committed => Some(Some(slot)),
                // Held: by a thread of this CPU that was preempted while holding it.
                Outcome::CompareFailed => Some(None),
                Outcome::Aborted => None,
            }
        })? {
            Some(slot) => slot,
            None => self.lock_contended()?,
        };
        // The section read the word the previous holder released: order our accesses to
        // the value after it.
        fence(Ordering::Acquire);
        Some(SlotGuard {
            slot,
            slots: &self.slots,
        })
    }

    /// [`lock`](Self::lock) when the slot was held: spin, then yield, until it is free.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) -> Option<&LockSlot<T>> {
        let mut spins = 0u32;
        self.slots.run(|current, slot| {
            if slot.lock.load(Ordering::Relaxed) != FREE {
                backoff(&mut spins);
                return None;
            }
            match current.compare_and_store(&slot.lock, FREE, HELD) {
                Outcome::Committed => Some(slot),
                Outcome::CompareFailed | Outcome::Aborted => None,
            }
        })
    }

    /// Calls `f(slot, &mut value)` for every slot, in order, each under its slot's lock
    /// (waiting for a holder to release it). From any thread; not while the calling thread
    /// holds a guard of this lock (it would wait for itself). Concurrent calls run one after
    /// the other.
    ///
    /// # Errors
    ///
    /// [`VisitError`] when the lock uses rseq and the kernel refuses the membarrier fence
    /// that a visit needs (a seccomp filter installed after the lock chose rseq): the slots
    /// before [`VisitError::slot`] were visited, the others were left as they were.
    pub fn with_each(&self, mut f: impl FnMut(usize, &mut T)) -> Result<(), VisitError> {
        let Some(access) = self.slots.access() else {
            return Ok(());
        };
        let serialised = self.visiting.lock();
        for s in 0..self.slots.nr_slots() {
            let slot = self.slots.get(s).expect("slot below nr_slots");
            let mut spins = 0u32;
            match access {
                Access::Lease(alloc) => {
                    crate::remote::with_exact_slot(&serialised, alloc, s as u32, || {
                        visit::acquire_leased(&slot.lock, || backoff(&mut spins))
                    })
                }
                Access::Rseq(_) => {
                    visit::acquire_rseq(&slot.lock, membarrier::fence_rseq, || backoff(&mut spins))
                        .map_err(|visit::Refused| VisitError { slot: s })?;
                }
            }
            // SAFETY: we hold the slot's lock (REMOTE, ours: visitors are serialised), so no
            // guard exists for it and none can be created until we release it.
            f(s, unsafe { &mut *slot.value.get() });
            let ours = visit::release(&slot.lock);
            debug_assert!(ours, "a visited slot's word changed under the visitor");
        }
        Ok(())
    }

    /// Every value, with `&mut self` (no lock needed).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        let n = self.slots.nr_slots();
        let slots = &self.slots;
        // SAFETY: `&mut self` excludes every guard and visitor; each slot's value is a
        // distinct location.
        (0..n).map(move |s| unsafe { &mut *slots.get(s).expect("slot below nr_slots").value.get() })
    }
}

/// [`PerCpuLock::lock`] for tight loops ([`PerCpuLock::handle`]): `Copy`, its fields stay in
/// registers.
pub struct LockHandle<'a, T: SlotSafe> {
    lock: &'a PerCpuLock<T>,
    slots: crate::per_cpu::Handle<'a, LockSlot<T>>,
}

impl<T: SlotSafe> Clone for LockHandle<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: SlotSafe> Copy for LockHandle<'_, T> {}

impl<T: SlotSafe> fmt::Debug for LockHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockHandle").finish_non_exhaustive()
    }
}

impl<'a, T: SlotSafe> LockHandle<'a, T> {
    /// [`PerCpuLock::lock`].
    #[inline(always)]
    pub fn lock(self) -> Option<SlotGuard<'a, T>> {
        self.lock.lock_in(self.slots)
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

/// The lock of one slot of a [`PerCpuLock`], held: dereferences to the slot's value; drop
/// releases it.
pub struct SlotGuard<'a, T: SlotSafe> {
    slot: &'a LockSlot<T>,
    slots: &'a PerCpu<LockSlot<T>>,
}

impl<T: SlotSafe> SlotGuard<'_, T> {
    /// The slot this guard holds.
    pub fn index(&self) -> usize {
        self.slots.index_of(self.slot)
    }
}

impl<T: SlotSafe> Deref for SlotGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the slot's lock: no other reference to the value exists.
        unsafe { &*self.slot.value.get() }
    }
}

impl<T: SlotSafe> DerefMut for SlotGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.slot.value.get() }
    }
}

impl<T: SlotSafe> Drop for SlotGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.slot.lock.store(FREE, Ordering::Release);
    }
}

impl<T: SlotSafe + fmt::Debug> fmt::Debug for SlotGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotGuard")
            .field("slot", &self.index())
            .field("value", &**self)
            .finish()
    }
}

impl<T: SlotSafe> fmt::Debug for PerCpuLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self
            .slots
            .iter()
            .filter(|s| s.lock.load(Ordering::Relaxed) != FREE)
            .count();
        f.debug_struct("PerCpuLock")
            .field("index", &self.slots.index())
            .field("access", &self.access())
            .field("slots_locked", &held)
            .finish()
    }
}
