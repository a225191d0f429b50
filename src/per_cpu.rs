//! Typed per-slot storage: [`PerCpu<T>`] holds one `T` per slot (per CPU or per concurrency
//! ID) in a [`Pool`].
//!
//! A `PerCpu<T>` is one pool item of `size_of::<T>()` bytes (rounded up to its size class,
//! aligned to at least `align_of::<T>()`); slot `s` lives at `slot 0 + s * stride`. Every
//! slot starts as a byte copy of the init value given to [`PerCpu::new`], without touching
//! untouched slots in a [`Populate::CowInit`](crate::pool::Populate::CowInit) pool (the
//! default): see the [pool docs](crate::pool#population-and-memory-cost).
//!
//! The handle keeps a clone of its pool, so the memory outlives it; dropping it frees the
//! item. Access to the *current* slot (inside an rseq critical section or a concurrency-ID
//! lease) belongs to [`ops`](crate::ops); this module gives the slot pointers it builds on,
//! and shared read access to any slot for aggregation.
//!
//! # Which types
//!
//! Slots are initialised by copying bytes, so `T` must implement [`SlotSafe`]: zero bytes
//! are a valid `T`, `T` has no padding, and byte copies of a value are valid independent
//! values (no ownership, no drop glue). It is implemented for integers, floats, `bool`,
//! `char`, atomics and arrays of those.
//!
//! # Concurrency
//!
//! `PerCpu<T>` is `Send` when `T: Send` and `Sync` when `T: Sync`: it behaves like a boxed
//! `[T]` with one element per slot that hands out `&T` to any slot ([`get`](PerCpu::get),
//! [`iter`](PerCpu::iter)) from any thread. Writers that go through the raw slot pointers
//! while others read must use types whose shared access allows it (atomics): a plain
//! non-atomic write concurrent with a `get` is a data race.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicBool, AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicPtr, AtomicU8,
    AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
};

use crate::index::Resolved;
use crate::ops::Current;
use crate::pool::{Pool, PoolError};

/// Types that may be placed in pool slots by byte copy.
///
/// # Safety
///
/// Implementors guarantee that:
///
/// 1. the all-zero byte pattern is a valid `T` (pool memory starts zeroed, and size-class
///    padding beyond `size_of::<T>()` is zero);
/// 2. `T` has no padding or otherwise uninitialised bytes, so its bytes may be read as
///    `u8` (the init value is copied as bytes and compared with slot contents);
/// 3. a byte copy of a valid `T` is a valid `T` that may coexist with the original: `T`
///    owns nothing (no heap pointer, no unique reference) and has no drop glue (slots are
///    never dropped, and the init value is duplicated into every slot).
pub unsafe trait SlotSafe: Sized {}

macro_rules! slot_safe {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: primitive without padding; zero is valid; plain copyable data (or an
            // atomic of it) that owns nothing and has no drop glue.
            unsafe impl SlotSafe for $t {}
        )*
    };
}

slot_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    AtomicBool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize,
);

// SAFETY: a pointer-sized atomic; zero is the null pointer; copies are just addresses (the
// slot does not own the pointee); no drop glue.
unsafe impl<T> SlotSafe for AtomicPtr<T> {}

// SAFETY: arrays have no padding between elements, and zero-validity, no-ownership and no
// drop glue hold element-wise.
unsafe impl<T: SlotSafe, const N: usize> SlotSafe for [T; N] {}

/// One `T` per slot, allocated from a [`Pool`]. See the [module docs](self).
pub struct PerCpu<T: SlotSafe> {
    /// Slot 0 of the item. Invariant: an allocated item of `pool`, of at least
    /// `size_of::<T>()` bytes, aligned for `T`, holding a valid `T` in every slot.
    ptr: NonNull<T>,
    stride: usize,
    nr_slots: usize,
    pool: Pool,
    _owns: PhantomData<T>,
}

// SAFETY: the handle owns its item (freed on drop, from any thread: the pool is Sync) and
// gives access to `T` values, like a `Box<[T]>`: sending it is sound when `T: Send`.
unsafe impl<T: SlotSafe + Send> Send for PerCpu<T> {}
// SAFETY: `&PerCpu<T>` gives only `&T` to slots (and raw pointers, whose use is unsafe), like
// `&[T]`: sharing it is sound when `T: Sync`.
unsafe impl<T: SlotSafe + Sync> Sync for PerCpu<T> {}

impl<T: SlotSafe> PerCpu<T> {
    /// One `T` per slot in the process-wide [`Pool::global`], each slot starting as `init`.
    pub fn new(init: T) -> Result<Self, PoolError> {
        Self::new_in(Pool::global(), init)
    }

    /// One `T` per slot in `pool`, each slot starting as a byte copy of `init`.
    pub fn new_in(pool: &Pool, init: T) -> Result<Self, PoolError> {
        let size = size_of::<T>();
        // SAFETY: `init` is a live value of `size` bytes, and `T: SlotSafe` has no padding,
        // so all of its bytes are initialised.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const init).cast::<u8>(), size) };
        let item = pool.alloc_with(size, align_of::<T>(), bytes)?;
        Ok(PerCpu {
            ptr: item.cast(),
            stride: pool.stride(),
            nr_slots: pool.nr_slots(),
            pool: pool.clone(),
            _owns: PhantomData,
        })
    }

    /// Number of slots.
    pub fn nr_slots(&self) -> usize {
        self.nr_slots
    }

    /// The pool the slots live in.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Pointer to slot `slot`, or `None` if `slot >= nr_slots()`. This is the hook of the
    /// per-slot operations ([`ops`](crate::ops)): slot `s` is `slot 0 + s * stride`.
    /// The pointer is valid (aligned, holding a `T`) for as long as `self` lives.
    #[inline]
    pub(crate) fn slot_ptr(&self, slot: usize) -> Option<NonNull<T>> {
        if slot < self.nr_slots {
            // SAFETY: slot < nr_slots, so the address is inside the item's range
            // reservation (type invariant), hence non-null and in bounds.
            Some(unsafe { self.ptr.byte_add(slot * self.stride) })
        } else {
            None
        }
    }

    /// Raw pointer to slot `slot` (null if `slot >= nr_slots()`), valid while `self` lives.
    /// Writing through it while other threads read the slot requires a `T` that allows it
    /// (see the [module docs](self#concurrency)).
    #[inline]
    pub fn raw_slot_ptr(&self, slot: usize) -> *mut T {
        self.slot_ptr(slot)
            .map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }

    /// Shared reference to slot `slot`, or `None` if `slot >= nr_slots()`.
    ///
    /// Reading an untouched slot does not charge memory: it maps the kernel's zero page
    /// (`CowZero`) or the range's init image page (`CowInit`).
    #[inline]
    pub fn get(&self, slot: usize) -> Option<&T> {
        // SAFETY: the pointer is aligned and holds a valid T (type invariant) for the
        // lifetime of &self; mutation through &self only happens via raw pointers, whose
        // users must respect T's shared-access rules (module docs).
        self.slot_ptr(slot).map(|p| unsafe { p.as_ref() })
    }

    /// Exclusive reference to slot `slot`, or `None` if `slot >= nr_slots()`.
    #[inline]
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        // SAFETY: as for `get`, and `&mut self` excludes every other access to the slots.
        self.slot_ptr(slot).map(|mut p| unsafe { p.as_mut() })
    }

    /// Iterator over all slots, in slot order, for aggregation.
    ///
    /// It reads every slot, up to the number of *possible* CPUs: reading untouched slots
    /// populates no private memory (see [`get`](Self::get)), but it does fault in page-table
    /// entries, so prefer summing over the slots actually in use when that is known.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            handle: self,
            next: 0,
        }
    }
}

impl<T: SlotSafe> Drop for PerCpu<T> {
    fn drop(&mut self) {
        // SAFETY: we own the item (type invariant) and `&mut self` ends every access to it.
        // The only possible errors are a double or foreign free, which can happen only if
        // unsafe code freed our item behind our back; nothing can be done about it in drop.
        let _ = unsafe { self.pool.free(self.ptr.cast()) };
    }
}

impl<T: SlotSafe + fmt::Debug> fmt::Debug for PerCpu<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: SlotSafe> IntoIterator for &'a PerCpu<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Iterator over the slots of a [`PerCpu`], from [`PerCpu::iter`].
#[derive(Debug)]
pub struct Iter<'a, T: SlotSafe> {
    handle: &'a PerCpu<T>,
    next: usize,
}

impl<'a, T: SlotSafe> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let v = self.handle.get(self.next)?;
        self.next += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.handle.nr_slots - self.next;
        (n, Some(n))
    }
}

impl<T: SlotSafe> ExactSizeIterator for Iter<'_, T> {}

impl<T: SlotSafe> std::iter::FusedIterator for Iter<'_, T> {}

impl<T: SlotSafe> PerCpu<T> {
    /// Runs `op` on the calling thread's current slot until it returns `Some`, entering the
    /// slot afresh (re-reading the index) before each attempt; `None` when the thread has
    /// no slot (see [`enter`](Self::enter)). The rseq and lease paths are separate loops
    /// so each inlines `op` with its `Current` known: this is the fast path structures use.
    #[inline(always)]
    pub fn run<R>(
        &self,
        index: Resolved,
        mut op: impl FnMut(&Current<'_>, &T) -> Option<R>,
    ) -> Option<R> {
        match index {
            Resolved::Rseq(mode) => loop {
                let (area, i) = crate::rseq::read_resolved(mode)?;
                let slot = self.get(i as usize)?;
                if let Some(r) = op(&Current::rseq(area, mode, i), slot) {
                    return Some(r);
                }
            },
            Resolved::Lease(alloc) => loop {
                let lease = alloc.acquire();
                let slot = self.get(lease.cid() as usize)?;
                if let Some(r) = op(&Current::Lease(lease), slot) {
                    return Some(r);
                }
            },
        }
    }

    /// Enters the calling thread's current slot under `index` (see
    /// [`Resolved::enter`](crate::index::Resolved::enter)): the [`Current`] to operate with
    /// and the slot's value. `None` when the thread's index is beyond the slots (or it has
    /// no rseq registration on an rseq-resolved index): use a shared fallback then.
    ///
    /// ```
    /// use percid::ops::Outcome;
    /// use percid::per_cpu::PerCpu;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let hits = PerCpu::new(AtomicU64::new(0)).unwrap();
    /// let index = percid::Index::default().resolve();
    /// loop {
    ///     let Some((current, slot)) = hits.enter(index) else { break };
    ///     if current.add(slot, 1) == Outcome::Committed {
    ///         break;
    ///     }
    /// }
    /// assert!(hits.iter().map(|h| h.load(Ordering::Relaxed)).sum::<u64>() <= 1);
    /// ```
    #[inline]
    pub fn enter(&self, index: Resolved) -> Option<(Current<'static>, &T)> {
        let current = index.enter(self.nr_slots)?;
        let slot = self.get(current.index())?;
        Some((current, slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolConfig;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "mmap layer: Miri supports no PROT_NONE reservation, MAP_FIXED or memfd"
    )]
    fn slot_ptr_hook_bounds_and_stride() {
        let pool = Pool::new(PoolConfig::new().slots(3)).unwrap();
        let p = PerCpu::new_in(&pool, 7u64).unwrap();
        let s0 = p.slot_ptr(0).unwrap().as_ptr() as usize;
        let s2 = p.slot_ptr(2).unwrap().as_ptr() as usize;
        assert_eq!(s2 - s0, 2 * pool.stride());
        assert!(p.slot_ptr(3).is_none());
    }
}
