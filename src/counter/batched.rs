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
//! `total = exact - Σ d_s` with `|d_s| <= batch - 1`, and only slots that may hold a delta
//! count: the counter keeps a *dirty* bitmap with one bit per slot, set by an add after it
//! stores a non-zero delta (the first time only: one load of a read-mostly word per add), and
//! cleared when a reap takes the slot's delta. So `|read - exact| <= (batch - 1) * dirty`,
//! where `exact` is the sum of the adds that completed ([`Approx::error_bound`]). A fold moves
//! a delta from a slot to the total in two steps (slot first, then total), so during the gap
//! its `|d + n|` is missing from both: the bound adds `max_fold_in_flight`, the largest
//! `|n| + batch - 1` of a fold still in flight, tracked with a small counter of in-flight folds
//! and the largest add seen; a reap in flight adds `batch - 1` per slot it is moving.
//!
//! Why marking after the store is enough: a slot whose bit is clear while it holds a delta
//! holds only the delta of adds still in flight (a bit is cleared only by a reap, *before* it
//! takes the slot; an add that read the slot before the take then fails its
//! compare-and-store, unless it read 0, in which case its delta is its own `n`), and the
//! exact value of a read may or may not include adds in flight.
//!
//! # Orphaned slots
//!
//! A delta left in a slot that no thread indexes any more (an *orphan*, see
//! [`crate::orphans`]) would stay in the error bound forever. [`BatchedCounter::reap_orphans`]
//! folds the orphans' deltas into the total, with the drain protocol (a lock bit in the slot
//! and one membarrier fence for all of them, or exact leases), and clears their bits, so the
//! bound counts the live slots only. The default [`OrphanPolicy`] for this counter reaps every
//! [`REAP_EVERY_FOLDS`] folds. The slot word holds the delta as a 63-bit two's complement
//! number; its top bit is the move's lock, during which adds go to the total directly. The
//! move is exact: a taken delta is added to the total once (`total + Σ slots + in transit`
//! is constant).

use crate::index::Index;
use crate::ops::{Access, Outcome};
use crate::orphans::{self, OrphanCounters, OrphanPolicy, OrphanTest, Reaped};
use crate::per_cpu::PerCpu;
use crate::pool::{Pool, PoolError};
use crate::remote;
use crate::util::CachePadded;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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

/// A counter with batched per-slot deltas: see the [module docs](self).
///
/// ```
/// use percid::BatchedCounter;
///
/// static BYTES: BatchedCounter = BatchedCounter::new(1024);
///
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| (0..1000).for_each(|_| BYTES.add(100)));
///     }
/// });
/// // `read` is one load of the shared total, within its stated bound of the exact sum...
/// let approx = BYTES.read();
/// assert!(approx.contains(400_000), "{approx:?}");
/// assert!(approx.error_bound <= 1023 * BYTES.slots() as u64);
/// // ...and `sum` adds every slot: exact once the writers are done.
/// assert_eq!(BYTES.sum(), 400_000);
/// ```
pub struct BatchedCounter {
    deltas: PerCpu<AtomicU64>,
    total: CachePadded<AtomicI64>,
    /// One bit per slot that may hold a delta (created with the slots).
    dirty: OnceLock<Box<[AtomicU64]>>,
    /// Folds started (before their slot store) and finished (after their total add).
    folds_started: CachePadded<AtomicU64>,
    folds_finished: CachePadded<AtomicU64>,
    /// Slots a reap started and finished moving.
    moves_started: AtomicU64,
    moves_finished: AtomicU64,
    /// The largest |n| ever added.
    max_abs_add: AtomicU64,
    batch: i64,
    orphan_policy: OrphanPolicy,
    orphans: OrphanCounters,
    /// Serialises reaps (see `remote::take_slots`).
    reaping: remote::DrainLock,
}

/// The default batch of [`BatchedCounter::default`].
pub const DEFAULT_BATCH: u64 = 64;

/// The default [`OrphanPolicy`] of a [`BatchedCounter`] reaps orphans every this many folds.
pub const REAP_EVERY_FOLDS: u32 = 256;

/// Largest batch: deltas are 63-bit numbers below it in magnitude (the top bit is the lock).
pub const MAX_BATCH: u64 = 1 << 61;

/// The lock bit of a slot word (a reap is moving its delta).
const LOCK: u64 = 1 << 63;

#[inline(always)]
fn encode(d: i64) -> u64 {
    (d as u64) & !LOCK
}

#[inline(always)]
fn decode(w: u64) -> i64 {
    ((w << 1) as i64) >> 1
}

/// What a [`BatchedCounter`]'s orphan handling did, counted since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchedStats {
    /// Reaps run (explicit and periodic).
    pub reaps: u64,
    /// Orphan slots whose delta was folded into the total.
    pub orphan_slots: u64,
    /// `membarrier` rseq fences issued by reaps.
    pub fences: u64,
    /// The part of `fences` that restarted one CPU only: moves of one `cpu_id` slot
    /// ([`crate::rseq::membarrier::fence_rseq_on`]); the others restarted every CPU.
    pub fences_one_cpu: u64,
    /// Fences the kernel refused (those slots kept their deltas).
    pub fence_failures: u64,
    /// Slots that may hold a delta now (the `dirty` count of the error bound).
    pub dirty_slots: u64,
}

impl BatchedCounter {
    /// A counter folding per-slot deltas into the total once they reach `batch` (at least
    /// 1, at most [`MAX_BATCH`]), indexed by the default source; slots created on first use
    /// in [`Pool::global`] (without them every add goes to the total: exact, slower).
    pub const fn new(batch: u64) -> BatchedCounter {
        BatchedCounter::from_slots(PerCpu::new_drainable(None, AtomicU64::new(0)), batch)
    }

    /// As [`BatchedCounter::new`] with an explicit index.
    pub const fn with_index(index: Index, batch: u64) -> BatchedCounter {
        BatchedCounter::from_slots(PerCpu::new_drainable(Some(index), AtomicU64::new(0)), batch)
    }

    /// As [`BatchedCounter::with_index`], with the slots in `pool`, created now.
    pub fn in_pool(pool: &Pool, index: Index, batch: u64) -> Result<BatchedCounter, PoolError> {
        Ok(BatchedCounter::from_slots(
            PerCpu::in_pool_drainable(pool, index, AtomicU64::new(0))?,
            batch,
        ))
    }

    const fn from_slots(deltas: PerCpu<AtomicU64>, batch: u64) -> BatchedCounter {
        let batch = if batch == 0 {
            1
        } else if batch > MAX_BATCH {
            MAX_BATCH as i64
        } else {
            batch as i64
        };
        BatchedCounter {
            deltas,
            total: CachePadded(AtomicI64::new(0)),
            dirty: OnceLock::new(),
            folds_started: CachePadded(AtomicU64::new(0)),
            folds_finished: CachePadded(AtomicU64::new(0)),
            moves_started: AtomicU64::new(0),
            moves_finished: AtomicU64::new(0),
            max_abs_add: AtomicU64::new(0),
            batch,
            orphan_policy: OrphanPolicy::DEFAULT.reap_every(REAP_EVERY_FOLDS),
            orphans: OrphanCounters::new(),
            reaping: remote::DrainLock::new(),
        }
    }

    /// The same counter with another [`OrphanPolicy`] (default: reap every
    /// [`REAP_EVERY_FOLDS`] folds; adoption does not apply to a counter).
    pub const fn with_orphan_policy(mut self, policy: OrphanPolicy) -> BatchedCounter {
        self.orphan_policy = policy;
        self
    }

    /// What the orphan handling did so far.
    pub fn stats(&self) -> BatchedStats {
        let m = &self.orphans.moves;
        BatchedStats {
            reaps: self.orphans.reaps.load(Ordering::Relaxed),
            orphan_slots: m.slots_taken.load(Ordering::Relaxed),
            fences: m.fences.load(Ordering::Relaxed),
            fences_one_cpu: m.fences_one_cpu.load(Ordering::Relaxed),
            fence_failures: m.fence_failures.load(Ordering::Relaxed),
            dirty_slots: self.dirty_count(),
        }
    }

    /// The live bound of this counter's slots now (see [`crate::orphans`]); `None` before
    /// its slots exist.
    pub fn live_bound(&self) -> Option<orphans::LiveBound> {
        Some(orphans::live_bound_of(
            self.deltas.access()?,
            self.deltas.nr_slots(),
        ))
    }

    /// The dirty bitmap (created with the slots; `None` before).
    #[inline(always)]
    fn dirty(&self) -> Option<&[AtomicU64]> {
        self.dirty.get().map(|b| &b[..])
    }

    #[cold]
    #[inline(never)]
    fn create_dirty(&self) -> &[AtomicU64] {
        self.dirty.get_or_init(|| {
            (0..self.deltas.nr_slots().div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect()
        })
    }

    /// Marks slot `index` as holding a delta (after the store; see the module docs).
    #[inline(always)]
    fn mark(&self, index: usize) {
        let bits = match self.dirty() {
            Some(b) => b,
            None => self.create_dirty(),
        };
        if let Some(w) = bits.get(index / 64) {
            let bit = 1u64 << (index % 64);
            if w.load(Ordering::Relaxed) & bit == 0 {
                w.fetch_or(bit, Ordering::SeqCst);
            }
        }
    }

    fn dirty_count(&self) -> u64 {
        self.dirty().map_or(0, |b| {
            b.iter()
                .map(|w| u64::from(w.load(Ordering::SeqCst).count_ones()))
                .sum()
        })
    }

    /// How the counter reaches its slots, once they exist.
    pub fn access(&self) -> Option<Access> {
        self.deltas.access()
    }

    /// Number of slots (creating them if needed).
    pub fn slots(&self) -> usize {
        self.deltas.nr_slots()
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
        // How the add ended: see `Added`.
        let done = self.deltas.run(|current, slot| {
            let w = slot.load(Ordering::Relaxed);
            if w & LOCK != 0 {
                return Some(Added::Locked);
            }
            let d = decode(w);
            let sum = d.wrapping_add(n);
            if sum.unsigned_abs() < self.batch as u64 {
                if current.compare_and_store(slot, w, encode(sum)) != Outcome::Committed {
                    return None;
                }
                if sum != 0 {
                    self.mark(current.index());
                }
                return Some(Added::InSlot);
            }
            self.folds_started.fetch_add(1, Ordering::SeqCst);
            let committed = current.compare_and_store(slot, w, 0) == Outcome::Committed;
            if committed {
                self.total.fetch_add(sum, Ordering::SeqCst);
            }
            let finished = self.folds_finished.fetch_add(1, Ordering::SeqCst) + 1;
            committed.then_some(Added::Folded(finished))
        });
        match done {
            Some(Added::InSlot) => {}
            Some(Added::Folded(finished)) => {
                if self.orphan_policy.periodic_reap_due_at(finished) {
                    self.reap_orphans_periodic();
                }
            }
            Some(Added::Locked) | None => {
                self.total.fetch_add(n, Ordering::SeqCst);
            }
        }
    }

    /// A fold's slow path: the periodic orphan reap (counted by the folds themselves, so a
    /// fold pays no extra shared read-modify-write for the policy).
    #[cold]
    #[inline(never)]
    fn reap_orphans_periodic(&self) {
        self.reap_orphans();
    }

    /// Folds the deltas of every orphan slot (see the [module docs](self#orphaned-slots))
    /// into the total and takes them out of the error bound; returns what it moved (the net
    /// delta).
    pub fn reap_orphans(&self) -> Reaped<i64> {
        self.orphans.reaps.fetch_add(1, Ordering::Relaxed);
        let (Some(access), Some(bits)) = (self.deltas.access(), self.dirty()) else {
            return Reaped::default();
        };
        let nr_slots = self.deltas.nr_slots();
        let serialised = self.reaping.lock();
        let test = OrphanTest::new(access, nr_slots);
        let candidates: Vec<usize> = (0..nr_slots)
            .filter(|&s| bits[s / 64].load(Ordering::Relaxed) & (1 << (s % 64)) != 0)
            .filter(|&s| test.is_orphan(s))
            .collect();
        if candidates.is_empty() {
            return Reaped::default();
        }
        let k = candidates.len() as u64;
        // In transit from here until the total add: counted by `read` (module docs).
        self.moves_started.fetch_add(k, Ordering::SeqCst);
        for &s in &candidates {
            bits[s / 64].fetch_and(!(1 << (s % 64)), Ordering::SeqCst);
        }
        let (mut moved, mut slots) = (0i64, 0usize);
        let r = remote::take_slots(
            &serialised,
            access,
            candidates.iter().copied(),
            |s| self.deltas.get(s).expect("slot below nr_slots"),
            LOCK,
            &self.orphans.moves,
            |_, w| {
                moved = moved.wrapping_add(decode(w));
                slots += 1;
            },
        );
        self.total.fetch_add(moved, Ordering::SeqCst);
        if r.is_err() {
            // The fence was refused: the slots were unlocked and keep their deltas; mark
            // them again so the bound covers them.
            for &s in &candidates {
                if self
                    .deltas
                    .get(s)
                    .is_some_and(|w| w.load(Ordering::SeqCst) != 0)
                {
                    bits[s / 64].fetch_or(1 << (s % 64), Ordering::SeqCst);
                }
            }
        }
        self.moves_finished.fetch_add(k, Ordering::SeqCst);
        Reaped { slots, moved }
    }

    /// The shared total with its error bound (see the module docs): one atomic load of the
    /// total, one load per 64 slots of the dirty bitmap and a few of bookkeeping.
    #[inline]
    pub fn read(&self) -> Approx {
        let finished_before = self.folds_finished.load(Ordering::SeqCst);
        let moved_before = self.moves_finished.load(Ordering::SeqCst);
        let value = self.total.load(Ordering::SeqCst);
        let dirty = self.dirty_count();
        let folding = self
            .folds_started
            .load(Ordering::SeqCst)
            .saturating_sub(finished_before);
        let moving = self
            .moves_started
            .load(Ordering::SeqCst)
            .saturating_sub(moved_before);
        let per_slot = self.batch as u64 - 1;
        let per_fold = self
            .max_abs_add
            .load(Ordering::Relaxed)
            .saturating_add(per_slot);
        Approx {
            value,
            error_bound: per_slot
                .saturating_mul(dirty.saturating_add(moving))
                .saturating_add(per_fold.saturating_mul(folding)),
        }
    }

    /// The total plus every slot's delta: exact once writers (and reaps) have stopped.
    pub fn sum(&self) -> i64 {
        self.deltas
            .iter()
            .map(|d| decode(d.load(Ordering::Relaxed) & !LOCK))
            .fold(self.total.load(Ordering::Relaxed), i64::wrapping_add)
    }
}

/// How an add ended.
enum Added {
    InSlot,
    /// Folded into the total; the number of folds finished so far, this one included.
    Folded(u64),
    Locked,
}

impl Default for BatchedCounter {
    /// A counter with [`DEFAULT_BATCH`], indexed by the default source.
    fn default() -> BatchedCounter {
        BatchedCounter::new(DEFAULT_BATCH)
    }
}

impl std::fmt::Debug for BatchedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedCounter")
            .field("read", &self.read())
            .field("batch", &self.batch)
            .field("index", &self.deltas.index())
            .field("access", &self.access())
            .field("orphan_policy", &self.orphan_policy)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::user_cid::Policy;
    use crate::pool::PoolConfig;

    #[test]
    fn deltas_encode_in_63_bits() {
        for d in [
            0i64,
            1,
            -1,
            63,
            -63,
            (MAX_BATCH - 1) as i64,
            -((MAX_BATCH - 1) as i64),
        ] {
            assert_eq!(decode(encode(d)), d);
            assert_eq!(encode(d) & LOCK, 0);
        }
    }

    /// A delta planted in slot 40 of a 64-slot pool (an orphan here) counts in the bound until
    /// a reap folds it into the total through the rseq path.
    #[test]
    fn reaping_folds_orphan_deltas_and_tightens_the_bound() {
        let pool = Pool::new(PoolConfig::new().slots(64)).unwrap();
        for index in [Index::CpuId, Index::MmCid] {
            let c = BatchedCounter::in_pool(&pool, index, 16)
                .unwrap()
                .with_orphan_policy(OrphanPolicy::NEVER);
            if !c.access().is_some_and(|a| a.is_rseq()) || c.live_bound().unwrap().bound > 40 {
                continue;
            }
            c.add(3); // this thread's slot: 3
            c.deltas
                .get(40)
                .unwrap()
                .store(encode(-7), Ordering::Relaxed);
            c.mark(40);
            assert_eq!(c.sum(), -4);
            let before = c.read();
            assert_eq!(before.value, 0);
            assert_eq!(before.error_bound, 2 * 15, "two dirty slots");
            let r = c.reap_orphans();
            assert_eq!((r.slots, r.moved), (1, -7));
            let after = c.read();
            assert_eq!((after.value, after.error_bound), (-7, 15));
            assert!(after.contains(-4));
            assert_eq!(c.sum(), -4, "nothing lost or doubled");
            assert_eq!(c.stats().fences, 1);
        }
    }

    /// The periodic reap runs once every `reap_every` folds, counted by the folds
    /// themselves, on every access (leases included).
    #[test]
    fn periodic_reaps_follow_the_fold_count() {
        for index in [Index::CpuId, Index::MmCid, Index::User(Policy::CacheLocal)] {
            let c = BatchedCounter::with_index(index, 4)
                .with_orphan_policy(OrphanPolicy::NEVER.reap_every(3));
            // add(4) folds on every call (|delta| reaches the batch).
            for _ in 0..9 {
                c.add(4);
            }
            assert_eq!(c.sum(), 36, "{index}");
            assert_eq!(c.stats().reaps, 3, "{index}: 9 folds, a reap every 3");
            let never =
                BatchedCounter::with_index(index, 4).with_orphan_policy(OrphanPolicy::NEVER);
            for _ in 0..9 {
                never.add(4);
            }
            assert_eq!(never.stats().reaps, 0, "{index}");
        }
    }
}
