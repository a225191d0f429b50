//! [`BatchedCounter`]: per-slot deltas folded into a shared total once they reach a batch;
//! a fast approximate [`read`](BatchedCounter::read) with a stated error bound, and an
//! exact [`sum`](BatchedCounter::sum) once writers stop (Linux's `percpu_counter`).
//!
//! # Algorithm
//!
//! Each slot holds a signed delta `d` (an `i64` stored in a `u64` word), always with
//! `|d| < batch`. `add(n)` reads its slot's `d` and, inside one compare-and-store critical
//! section (or under a lease), either stores `d + n` when `|d + n| < batch`, or stores 0
//! and then adds `d + n` to the shared total with one atomic `fetch_add`. The
//! compare-and-store commits only if the slot still holds `d`, so the bound holds at every
//! instant. Threads without a slot add to the total directly.
//!
//! # Error bound
//!
//! `total = exact - Σ d_s` with `|d_s| <= batch - 1`, and only slots that were ever written
//! can be non-zero; the counter tracks `touched`, one more than the highest slot written.
//! So `|read - exact| <= (batch - 1) * touched` at every instant, where `exact` is the sum
//! of the adds that completed. [`Approx::error_bound`] returns that product, computed from
//! the `touched` value read *after* the total (a slot first written later cannot hold a
//! delta the read missed... unless its add completed after the read, which the bound need
//! not cover). A fold moves a delta from a slot to the total in two steps (slot first, then
//! total), so during the gap between them the fold's `|d + n|` is missing from both: the
//! bound adds `max_fold_in_flight`, the largest `|n| + batch - 1` of a fold still in flight,
//! tracked with a small counter of in-flight folds and the largest add seen.

use crate::index::{Index, Resolved};
use crate::ops::Outcome;
use crate::per_cpu::PerCpu;
use crate::pool::{Pool, PoolError};
use crate::util::CachePadded;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// An approximate value with its error bound: the exact value (of the adds that had
/// completed when the read began, and possibly some that were in flight) lies within
/// `value ± error_bound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approx {
    /// The approximate value.
    pub value: i64,
    /// The largest possible distance to the exact value.
    pub error_bound: u64,
}

impl Approx {
    /// Whether `exact` is within the bound.
    pub fn contains(&self, exact: i64) -> bool {
        exact.abs_diff(self.value) <= self.error_bound
    }
}

/// A counter with batched per-slot deltas: see the [module docs](crate::counter).
pub struct BatchedCounter {
    deltas: PerCpu<AtomicU64>,
    total: CachePadded<AtomicI64>,
    /// One more than the highest slot ever written.
    touched: CachePadded<AtomicUsize>,
    /// Folds started (before their slot store) and finished (after their total add).
    folds_started: CachePadded<AtomicU64>,
    folds_finished: CachePadded<AtomicU64>,
    /// The largest |n| ever added.
    max_abs_add: AtomicU64,
    batch: i64,
    resolved: Resolved,
}

impl BatchedCounter {
    /// A counter folding per-slot deltas into the total once they reach `batch` (at least
    /// 1), indexed by the default source.
    pub fn new(batch: u64) -> Result<BatchedCounter, PoolError> {
        BatchedCounter::with_index(Index::default(), batch)
    }

    /// As [`BatchedCounter::new`] with an explicit index.
    pub fn with_index(index: Index, batch: u64) -> Result<BatchedCounter, PoolError> {
        BatchedCounter::in_pool(index, batch, Pool::global())
    }

    /// As [`BatchedCounter::with_index`], with the slots in `pool`.
    pub fn in_pool(index: Index, batch: u64, pool: &Pool) -> Result<BatchedCounter, PoolError> {
        Ok(BatchedCounter {
            deltas: PerCpu::new_in(pool, AtomicU64::new(0))?,
            total: CachePadded(AtomicI64::new(0)),
            touched: CachePadded(AtomicUsize::new(0)),
            folds_started: CachePadded(AtomicU64::new(0)),
            folds_finished: CachePadded(AtomicU64::new(0)),
            max_abs_add: AtomicU64::new(0),
            batch: batch.clamp(1, i64::MAX as u64) as i64,
            resolved: index.resolve(),
        })
    }

    /// The batch.
    pub fn batch(&self) -> u64 {
        self.batch as u64
    }

    /// Adds `n` (which may be negative).
    #[inline]
    pub fn add(&self, n: i64) {
        if n.unsigned_abs() > self.max_abs_add.load(Ordering::Relaxed) {
            self.max_abs_add
                .fetch_max(n.unsigned_abs(), Ordering::Relaxed);
        }
        let done = self.deltas.run(self.resolved, |current, slot| {
            let index = current.index();
            if index >= self.touched.load(Ordering::Relaxed) {
                self.touched.fetch_max(index + 1, Ordering::SeqCst);
            }
            let d = slot.load(Ordering::Relaxed) as i64;
            let sum = d.wrapping_add(n);
            if sum.unsigned_abs() < self.batch as u64 {
                return (current.compare_and_store(slot, d as u64, sum as u64)
                    == Outcome::Committed)
                    .then_some(());
            }
            self.folds_started.fetch_add(1, Ordering::SeqCst);
            let committed = current.compare_and_store(slot, d as u64, 0) == Outcome::Committed;
            if committed {
                self.total.fetch_add(sum, Ordering::SeqCst);
            }
            self.folds_finished.fetch_add(1, Ordering::SeqCst);
            committed.then_some(())
        });
        if done.is_none() {
            self.total.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The shared total with its error bound (see the module docs): one atomic load of the
    /// total plus four of bookkeeping, whatever the number of slots.
    #[inline]
    pub fn read(&self) -> Approx {
        let finished_before = self.folds_finished.load(Ordering::SeqCst);
        let value = self.total.load(Ordering::SeqCst);
        let folding = self
            .folds_started
            .load(Ordering::SeqCst)
            .saturating_sub(finished_before);
        let touched = self.touched.load(Ordering::SeqCst) as u64;
        let per_slot = self.batch as u64 - 1;
        let per_fold = self
            .max_abs_add
            .load(Ordering::Relaxed)
            .saturating_add(per_slot);
        Approx {
            value,
            error_bound: per_slot
                .saturating_mul(touched)
                .saturating_add(per_fold.saturating_mul(folding)),
        }
    }

    /// The total plus every slot's delta: exact once writers have stopped.
    pub fn sum(&self) -> i64 {
        self.deltas
            .iter()
            .take(self.touched.load(Ordering::Acquire).max(1))
            .map(|d| d.load(Ordering::Relaxed) as i64)
            .fold(self.total.load(Ordering::Relaxed), i64::wrapping_add)
    }
}

impl std::fmt::Debug for BatchedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedCounter")
            .field("batch", &self.batch)
            .field("read", &self.read())
            .finish()
    }
}
