//! [`Counter`]: an exact counter sharded per slot.
//!
//! # Algorithm
//!
//! One `u64` per slot in a [`PerCpu`] (each slot in its own 64 KiB pool stride, so slots of
//! different CPUs never share a cache line), plus a shared, padded overflow cell. `add(n)`
//! enters the calling thread's slot ([`PerCpu::run`]) and adds with one rseq critical section
//! (retrying on abort with a freshly read index), or with a plain store under a CID lease.
//! Threads without a slot (index beyond the slots, or no rseq registration on an rseq-indexed
//! counter, or no slot memory) add to the overflow cell with `fetch_add`. `sum()` adds every
//! slot and the overflow cell with relaxed loads.
//!
//! # Reset
//!
//! A slot is only ever written by the critical sections of the thread whose index it is, so
//! another thread cannot zero it without racing them. Instead, [`sum_and_reset`] remembers,
//! per slot, the value it has already returned (a *baseline*, kept beside the slots and only
//! written under the reset lock), and every read subtracts the baselines.
//!
//! # Guarantees
//!
//! * No increment is ever lost: a slot is only written by committed critical sections of
//!   the thread whose index it is, or by the lease holder; the overflow cell is atomic.
//! * `sum()` is exact once writers have stopped (joined, or otherwise synchronised with
//!   the reader). While writers run it is a value between the sums before and after the
//!   concurrent adds (each slot is read atomically, but not all at one instant).
//! * [`sum_and_reset`] reads each slot once, atomically: every add is returned by exactly one
//!   `sum_and_reset` call, or is still in `sum()`. An add concurrent with the call is
//!   returned either by this call or by the next one, never by both and never by neither.
//!   Calls are serialised with each other.
//! * Arithmetic wraps at 2^64, like `AtomicU64::fetch_add`; [`sub`](Counter::sub) adds the
//!   two's complement, so a counter that goes below zero reads as a large value (use
//!   [`sum_signed`](Counter::sum_signed) for a signed view).
//!
//! [`sum_and_reset`]: Counter::sum_and_reset

use crate::index::Index;
use crate::ops::Access;
use crate::per_cpu::PerCpu;
use crate::pool::{Pool, PoolConfig, PoolError};
use crate::util::CachePadded;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// An exact counter sharded per CPU or per concurrency ID (Java's `LongAdder`, with rseq).
///
/// ```
/// use percid::Counter;
///
/// static REQUESTS: Counter = Counter::new(); // no LazyLock needed
///
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             for _ in 0..1000 {
///                 REQUESTS.inc(); // one rseq critical section on this CPU's slot
///             }
///         });
///     }
/// });
/// assert_eq!(REQUESTS.sum(), 4000);
/// REQUESTS.sub(1000);
/// assert_eq!(REQUESTS.sum_and_reset(), 3000);
/// assert_eq!(REQUESTS.sum(), 0);
/// ```
pub struct Counter {
    slots: PerCpu<AtomicU64>,
    overflow: CachePadded<AtomicU64>,
    /// Per slot, the value already returned by `sum_and_reset` (absent before the first).
    baselines: OnceLock<Box<[AtomicU64]>>,
    /// The overflow cell's value already returned by `sum_and_reset`.
    overflow_baseline: AtomicU64,
    /// Serialises `sum_and_reset`.
    resetting: Mutex<()>,
}

impl Counter {
    /// A counter indexed by the default source ([`Index::default`]); its slots are created
    /// on first use, in [`Pool::global`] (one per possible CPU). If they cannot be created,
    /// every add goes to the shared overflow cell: the counter stays exact, only slower.
    pub const fn new() -> Counter {
        Counter::from_slots(PerCpu::new(AtomicU64::new(0)))
    }

    /// As [`new`](Self::new), indexed by `index`.
    pub const fn with_index(index: Index) -> Counter {
        Counter::from_slots(PerCpu::with_index(index, AtomicU64::new(0)))
    }

    /// A counter whose slots live in `pool` (whose slot count may be smaller than the
    /// number of CPUs: threads whose index is beyond it use the shared overflow cell),
    /// created now.
    pub fn in_pool(pool: &Pool, index: Index) -> Result<Counter, PoolError> {
        Ok(Counter::from_slots(PerCpu::in_pool(
            pool,
            index,
            AtomicU64::new(0),
        )?))
    }

    /// A counter with its own pool of `slots` slots (at least 1), created now.
    pub fn with_slots(index: Index, slots: usize) -> Result<Counter, PoolError> {
        let pool = Pool::new(PoolConfig::new().slots(slots.max(1)))?;
        Counter::in_pool(&pool, index)
    }

    const fn from_slots(slots: PerCpu<AtomicU64>) -> Counter {
        Counter {
            slots,
            overflow: CachePadded(AtomicU64::new(0)),
            baselines: OnceLock::new(),
            overflow_baseline: AtomicU64::new(0),
            resetting: Mutex::new(()),
        }
    }

    /// Adds `n` (wrapping).
    #[inline]
    pub fn add(&self, n: u64) {
        let done = self
            .slots
            .run(move |current, slot| current.add(slot, n).is_committed().then_some(()));
        if done.is_none() {
            self.overflow.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A [`CounterHandle`] for tight loops: the same adds, with the slot layout kept in
    /// registers (see [`per_cpu::Handle`](crate::per_cpu::Handle)).
    ///
    /// ```
    /// let hits = percid::Counter::new();
    /// let h = hits.handle();
    /// for _ in 0..1000 {
    ///     h.add(1);
    /// }
    /// assert_eq!(hits.sum(), 1000);
    /// ```
    #[inline]
    pub fn handle(&self) -> CounterHandle<'_> {
        CounterHandle {
            slots: self.slots.handle(),
            overflow: &self.overflow,
        }
    }

    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    /// Subtracts `n` (wrapping).
    #[inline]
    pub fn sub(&self, n: u64) {
        self.add(n.wrapping_neg())
    }

    /// Adds a signed `n` (wrapping).
    #[inline]
    pub fn add_signed(&self, n: i64) {
        self.add(n as u64)
    }

    /// The sum of every slot (exact once writers have stopped; see the module docs).
    pub fn sum(&self) -> u64 {
        let slots = self.slots.iter().map(|s| s.load(Ordering::Relaxed));
        let total = match self.baselines.get() {
            None => slots.fold(0, u64::wrapping_add),
            Some(base) => slots.zip(base.iter()).fold(0u64, |acc, (v, b)| {
                acc.wrapping_add(v.wrapping_sub(b.load(Ordering::Relaxed)))
            }),
        };
        let overflow = self
            .overflow
            .load(Ordering::Relaxed)
            .wrapping_sub(self.overflow_baseline.load(Ordering::Relaxed));
        total.wrapping_add(overflow)
    }

    /// [`sum`](Self::sum) as a two's-complement signed value (for counters that go down).
    pub fn sum_signed(&self) -> i64 {
        self.sum() as i64
    }

    /// Returns the sum and resets the counter to zero, exactly: every add is returned by one
    /// call (see the [module docs](crate::counter#guarantees) of `Counter` for concurrent
    /// adds). Costs one read of every slot, under a lock shared by resets.
    pub fn sum_and_reset(&self) -> u64 {
        let _serialised = self.resetting.lock().unwrap_or_else(|e| e.into_inner());
        // Creates the slots if needed: their number is fixed from then on.
        let n = self.slots.nr_slots();
        let base = self
            .baselines
            .get_or_init(|| (0..n).map(|_| AtomicU64::new(0)).collect());
        let mut total = 0u64;
        for (slot, b) in self.slots.iter().zip(base.iter()) {
            let v = slot.load(Ordering::Relaxed);
            total = total.wrapping_add(v.wrapping_sub(b.load(Ordering::Relaxed)));
            b.store(v, Ordering::Relaxed);
        }
        let v = self.overflow.load(Ordering::Relaxed);
        total = total.wrapping_add(v.wrapping_sub(self.overflow_baseline.load(Ordering::Relaxed)));
        self.overflow_baseline.store(v, Ordering::Relaxed);
        total
    }

    /// Resets the counter to zero: [`sum_and_reset`](Self::sum_and_reset) without the
    /// result.
    pub fn reset(&self) {
        self.sum_and_reset();
    }

    /// The index source the counter was built with.
    pub fn index(&self) -> Index {
        self.slots.index()
    }

    /// How the counter reaches its slots (rseq, or leases on the fallback), once they exist.
    pub fn access(&self) -> Option<Access> {
        self.slots.access()
    }

    /// Number of slots (creating them if needed).
    pub fn slots(&self) -> usize {
        self.slots.nr_slots()
    }

    /// Adds that went to the shared overflow cell (threads without a slot).
    pub fn overflowed(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }
}

/// A [`Counter`]'s adds for tight loops ([`Counter::handle`]): `Copy`, its fields stay in
/// registers, where [`Counter::add`] reloads the counter's layout after every critical
/// section.
#[derive(Clone, Copy, Debug)]
pub struct CounterHandle<'a> {
    slots: crate::per_cpu::Handle<'a, AtomicU64>,
    overflow: &'a AtomicU64,
}

impl CounterHandle<'_> {
    /// [`Counter::add`].
    #[inline(always)]
    pub fn add(self, n: u64) {
        let done = self
            .slots
            .run(move |current, slot| current.add(slot, n).is_committed().then_some(()));
        if done.is_none() {
            self.overflow.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds 1.
    #[inline(always)]
    pub fn inc(self) {
        self.add(1)
    }

    /// Subtracts `n` (wrapping).
    #[inline(always)]
    pub fn sub(self, n: u64) {
        self.add(n.wrapping_neg())
    }
}

impl Default for Counter {
    fn default() -> Counter {
        Counter::new()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter")
            .field("sum", &self.sum())
            .field("index", &self.index())
            .field("access", &self.access())
            .field(
                "slots_used",
                &self
                    .slots
                    .iter()
                    .filter(|s| s.load(Ordering::Relaxed) != 0)
                    .count(),
            )
            .field("overflowed", &self.overflowed())
            .finish()
    }
}
