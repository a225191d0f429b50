//! [`Counter`]: an exact counter sharded per slot.
//!
//! # Algorithm
//!
//! One `u64` per slot in a [`PerCpu`] (each slot in its own 64 KiB pool stride, so slots of
//! different CPUs never share a cache line), plus a shared, padded overflow cell. `add(n)`
//! enters the calling thread's slot ([`crate::index::Resolved::enter`]) and adds with one
//! rseq critical section (retrying on abort with a freshly read index), or with a plain
//! store under a CID lease. Threads without a slot (index beyond the slots, or no rseq
//! registration on an rseq-indexed counter) add to the overflow cell with `fetch_add`.
//! `sum()` adds every slot and the overflow cell with relaxed loads.
//!
//! # Guarantees
//!
//! * No increment is ever lost: a slot is only written by committed critical sections of
//!   the thread whose index it is, or by the lease holder; the overflow cell is atomic.
//! * `sum()` is exact once writers have stopped (joined, or otherwise synchronised with
//!   the reader). While writers run it is a value between the sums before and after the
//!   concurrent adds (each slot is read atomically, but not all at one instant).
//! * Arithmetic wraps at 2^64, like `AtomicU64::fetch_add`.

use crate::index::{Index, Resolved};
use crate::ops::Outcome;
use crate::per_cpu::PerCpu;
use crate::pool::{Pool, PoolConfig, PoolError};
use crate::util::CachePadded;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// An exact counter sharded per CPU or per concurrency ID.
pub struct Counter {
    slots: PerCpu<AtomicU64>,
    overflow: CachePadded<AtomicU64>,
    index: Index,
    resolved: Resolved,
}

impl Counter {
    /// A counter indexed by the default source ([`Index::default`]).
    ///
    /// # Panics
    /// If the process-wide pool cannot map memory (as `Box::new` aborts when out of
    /// memory); [`Counter::try_with_index`] returns the error instead.
    pub fn new() -> Counter {
        Counter::with_index(Index::default())
    }

    /// A counter indexed by `index`, with one slot per possible CPU (every index source
    /// stays below that), in the process-wide pool.
    ///
    /// # Panics
    /// As [`Counter::new`].
    pub fn with_index(index: Index) -> Counter {
        Counter::try_with_index(index).expect("percid: cannot map memory for a Counter")
    }

    /// As [`Counter::with_index`], returning pool errors.
    pub fn try_with_index(index: Index) -> Result<Counter, PoolError> {
        Counter::in_pool(index, Pool::global())
    }

    /// A counter whose slots live in `pool` (whose slot count may be smaller than the
    /// number of CPUs: threads whose index is beyond it use the shared overflow cell).
    pub fn in_pool(index: Index, pool: &Pool) -> Result<Counter, PoolError> {
        Ok(Counter {
            slots: PerCpu::new_in(pool, AtomicU64::new(0))?,
            overflow: CachePadded(AtomicU64::new(0)),
            index,
            resolved: index.resolve(),
        })
    }

    /// A counter with its own pool of `slots` slots (at least 1).
    pub fn with_index_and_slots(index: Index, slots: usize) -> Result<Counter, PoolError> {
        let pool = Pool::new(PoolConfig::new().slots(slots.max(1)))?;
        Counter::in_pool(index, &pool)
    }

    /// Adds `n` (wrapping).
    #[inline]
    pub fn add(&self, n: u64) {
        let done = self.slots.run(self.resolved, |current, slot| {
            (current.add(slot, n) == Outcome::Committed).then_some(())
        });
        if done.is_none() {
            self.overflow.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The sum of every slot (exact once writers have stopped; see the module docs).
    pub fn sum(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .fold(self.overflow.load(Ordering::Relaxed), u64::wrapping_add)
    }

    /// The index source the counter was built with.
    pub fn index(&self) -> Index {
        self.index
    }

    /// How the counter accesses its slots (rseq, or leases on the fallback).
    pub fn resolved(&self) -> Resolved {
        self.resolved
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots.nr_slots()
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
            .field("index", &self.index)
            .field("sum", &self.sum())
            .finish()
    }
}
