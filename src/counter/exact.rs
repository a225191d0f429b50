//! [`Counter`]: an exact counter sharded per slot.
//!
//! # Algorithm
//!
//! One cache-line-padded `u64` per slot plus a shared overflow cell. `add(n)` enters the
//! calling thread's slot ([`crate::index::Resolved::enter`]) and adds with one rseq
//! critical section (retrying on abort with a freshly read index), or with a plain store
//! under a CID lease. Threads without a slot (index beyond the slots, or no rseq
//! registration on an rseq-indexed counter) add to the overflow cell with an atomic
//! `fetch_add`. `sum()` adds every slot and the overflow cell with relaxed loads.
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
use crate::util::{CachePadded, possible_cpu_count};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// An exact counter sharded per CPU or per concurrency ID.
pub struct Counter {
    slots: Box<[CachePadded<AtomicU64>]>,
    overflow: CachePadded<AtomicU64>,
    index: Index,
    resolved: Resolved,
}

impl Counter {
    /// A counter indexed by the default source ([`Index::default`]).
    pub fn new() -> Counter {
        Counter::with_index(Index::default())
    }

    /// A counter indexed by `index`, with one slot per possible CPU (every index source
    /// stays below that).
    pub fn with_index(index: Index) -> Counter {
        Counter::with_index_and_slots(index, possible_cpu_count())
    }

    /// A counter with an explicit number of slots (at least 1). Threads whose index is at
    /// or above `slots` use the shared overflow cell.
    pub fn with_index_and_slots(index: Index, slots: usize) -> Counter {
        Counter {
            slots: (0..slots.max(1))
                .map(|_| CachePadded(AtomicU64::new(0)))
                .collect(),
            overflow: CachePadded(AtomicU64::new(0)),
            index,
            resolved: index.resolve(),
        }
    }

    /// Adds `n` (wrapping).
    #[inline]
    pub fn add(&self, n: u64) {
        loop {
            match self.resolved.enter(self.slots.len()) {
                Some(current) => {
                    if current.add(&self.slots[current.index()], n) == Outcome::Committed {
                        return;
                    }
                }
                None => {
                    self.overflow.fetch_add(n, Ordering::Relaxed);
                    return;
                }
            }
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
        self.slots.len()
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
