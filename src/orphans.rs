//! Orphaned slots: what the per-slot structures do when the set of live slots shrinks.
//!
//! # The live bound
//!
//! A concurrency ID is dense: since Linux 6.13 (and in [`user_cid`](crate::index::user_cid))
//! IDs are handed out in `[0, min(allowed CPUs, threads))`. When threads exit, or the allowed
//! CPUs narrow, that bound shrinks, and every slot at or above it becomes an **orphan**: no
//! thread indexes it until the bound grows again. Whatever a structure left there (a
//! [`Limit`](crate::Limit)'s stock, a [`List`](crate::List)'s elements, a
//! [`BatchedCounter`](crate::BatchedCounter)'s delta) is invisible to the threads that remain.
//!
//! [`live_bound`] reports the bound of an index source, with its cost and staleness:
//!
//! | index | bound | read from | cost | staleness |
//! |---|---|---|---|---|
//! | `cpu_id` | possible CPUs | `/sys/devices/system/cpu/possible`, once | none | none: no orphans |
//! | kernel `mm_cid` | `min(allowed CPUs, threads)` | the link count of `/proc/self/task` (threads) and `sched_getaffinity` | on a refresh: two system calls (plus one per thread when threads outnumber the caller's CPUs), 10-100 µs | at most [`MAX_AGE`] (cached) |
//! | user-space CIDs | `min(allowed CPUs, capacity, live threads)`, plus every *idle* CID | the allocator's own counters and state words | a few loads | none (its own state) |
//!
//! The kernel's own figures (`mm->nr_cpus_allowed`, the union of every mask the process's
//! threads ever had, and `mm_users`) are not readable from user space; the union of the
//! *current* threads' masks and the current thread count are. Where they differ the bound
//! read is lower than the kernel's only when a mask narrowed, and a slot taken for an orphan
//! that a thread still uses costs that thread a refill, never an element or a unit (below).
//! The thread counts and masks are read on slow paths only (a `Limit` refill or refusal, an
//! empty `List` pop when its hint or rate limit says look, see [`List`](crate::list#orphaned-slots),
//! a `BatchedCounter` fold, an explicit reap), never per operation, and the
//! result is cached process-wide for [`MAX_AGE`].
//!
//! What the bound cannot see, and why it does not matter for correctness:
//!
//! * **Sticky IDs above the bound.** Under Linux 6.13-6.18 a CPU keeps its cached ID while a
//!   thread of the process keeps running there, so a survivor can go on indexing a slot above
//!   the new bound; Linux 6.19 and later give each thread its ID for life while threads do not
//!   outnumber the allowed CPUs, so survivors keep whatever IDs they had (the reference notes,
//!   section 2). Conversely a slot below the bound may have no user. The bound is a hint of
//!   *where to look*; every move out of a slot excludes that slot's users (next section), so
//!   taking a slot that is still in use only makes its user refill.
//! * **`cpu_id`** never has orphans by this definition: a CPU outside the mask may come back.
//!   Its slots are reached by drains only.
//!
//! # Moving contents out of a slot
//!
//! Every move uses the drain protocol of the structures (`remote::take_slots`): under rseq,
//! a lock bit in the slot's word and the `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ` fence (one
//! fence for all the slots of one move); under leases, an exact lease on each CID. Moves and
//! drains of one structure are serialised by its drain mutex.
//!
//! **Invariant (exact moves).** Between the fence (or lease) and the store of 0, the mover is
//! the only writer of the slot's word; the value it takes is then held in one local variable
//! until it is put in exactly one destination: the mover's own slot (with a critical section
//! of the mover's own index), the structure's shared part (a `Limit`'s usage, a `List`'s
//! overflow list, a `BatchedCounter`'s total), or back into the same accounting it came
//! from. So `slots + shared + in transit` is constant across a move: nothing is lost or
//! counted twice, whatever the bound said.
//!
//! # What each structure does
//!
//! * **Adopt.** A [`Limit`](crate::Limit) charge that finds its slot's stock short takes the
//!   orphans' stock before it charges the shared usage; a [`List`](crate::List) pop that finds
//!   its slot empty takes the orphans' lists before it looks at the shared overflow list.
//! * **Reap.** `reap_orphans()` on each of them moves every orphan's contents to the shared
//!   part and returns what it moved ([`Reaped`]). A `Limit` refused at its limit reaps the
//!   orphans before it falls back to a full drain, and a
//!   [`BatchedCounter`](crate::BatchedCounter) folds the orphans' deltas into its total, which
//!   takes them out of its error bound (the bound counts the slots that may hold a delta).
//! * **Policy.** [`OrphanPolicy`] switches adoption and reaping at the limit on or off, and
//!   can reap every `n` slow-path calls.
//!
//! [`Counter`](crate::Counter) has nothing to reap: its `sum` adds every slot, orphans
//! included, and no bound or limit depends on them. [`PerCpu`](crate::PerCpu) and
//! [`PerCpuLock`](crate::PerCpuLock) hold values of the caller's type, which only the caller
//! knows how to merge: use their `with_each`/`iter` views with [`live_bound`].
//!
//! # Compared with other libraries
//!
//! librseq, tcmalloc and folly size per-CPU state by CPU number and have no notion of a
//! shrinking ID space. tcmalloc reclaims the caches of idle CPUs on a timer (its background
//! thread returns a CPU's cache after a period without use), and librseq and folly leave
//! per-CPU contents where they are. Linux's memory controller is the model followed here:
//! per-CPU charge stock drained on demand (`drain_all_stock`), and per-memcg slab caches whose
//! owner went away marked orphaned, adopted by the next owner and reaped under pressure.

use crate::index::CidAllocator;
use crate::index::Index;
use crate::ops::Access;
use crate::remote::{self, DrainCounters, FenceFailed};
use crate::rseq::IndexMode;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a cached kernel `mm_cid` bound is used before it is read again: a refresh costs
/// about 10 µs of system calls when warm and 40-100 µs after an idle period (measured on the
/// 2-CPU virtual machines this was developed on), so at most one in 100 ms keeps it below
/// 0.1% of a core even for a structure whose slow paths run constantly.
pub const MAX_AGE: Duration = Duration::from_millis(100);

/// Where a [`LiveBound`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BoundSource {
    /// `cpu_id`: the possible CPUs (no orphans).
    PossibleCpus,
    /// The kernel's `mm_cid`: `min(allowed CPUs, threads)` of the process.
    KernelMmCid,
    /// A user-space CID allocator's own state.
    UserAllocator,
    /// The kernel figures could not be read (`/proc` missing): every slot counts as live.
    Unknown,
}

/// The live bound of an index source: slots at or above [`bound`](Self::bound) are orphans.
/// See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveBound {
    /// Slots below it may be in use; slots at or above it are orphans.
    pub bound: usize,
    /// Where it comes from.
    pub source: BoundSource,
    /// The thread count it is based on (kernel: threads of the process; user-space: threads
    /// registered with the allocator).
    pub threads: Option<usize>,
    /// The allowed CPUs it is based on.
    pub allowed_cpus: Option<usize>,
}

impl fmt::Display for LiveBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?}", self.bound, self.source)?;
        if let Some(t) = self.threads {
            write!(f, ", {t} threads")?;
        }
        if let Some(a) = self.allowed_cpus {
            write!(f, ", {a} allowed CPUs")?;
        }
        f.write_str(")")
    }
}

/// The live bound of `index` as a structure created now would see it (for the default pool
/// of one slot per possible CPU). Cheap when cached: see the [module docs](self) for the
/// cost and staleness of each source.
pub fn live_bound(index: Index) -> LiveBound {
    live_bound_of(Access::of(index), crate::util::possible_cpu_count())
}

/// Reads the kernel `mm_cid` bound now (one directory read and one system call per thread)
/// and refreshes the cache the structures use.
pub fn refresh_kernel_bound() -> LiveBound {
    kernel::refresh()
}

/// The live bound of a structure with `nr_slots` slots reached through `access` (cached
/// kernel figures, at most [`MAX_AGE`] old).
pub(crate) fn live_bound_of(access: Access, nr_slots: usize) -> LiveBound {
    let mut b = match access {
        Access::Rseq(IndexMode::CpuId) => LiveBound {
            bound: crate::util::possible_cpu_count(),
            source: BoundSource::PossibleCpus,
            threads: None,
            allowed_cpus: None,
        },
        Access::Rseq(IndexMode::MmCid) => kernel::cached(),
        Access::Lease(alloc) => LiveBound {
            bound: alloc.live_bound() as usize,
            source: BoundSource::UserAllocator,
            threads: Some(alloc.live_threads() as usize),
            allowed_cpus: Some(alloc.nr_cpus_allowed() as usize),
        },
    };
    b.bound = b.bound.min(nr_slots);
    b
}

/// Which slots of a structure are orphans right now.
#[derive(Clone, Copy)]
pub(crate) struct OrphanTest {
    bound: usize,
    /// Lease access: CIDs below the bound that are idle are orphans too.
    alloc: Option<&'static CidAllocator>,
    /// rseq access: the calling thread's own index, never an orphan (a survivor may keep an
    /// ID above the bound: see the module docs).
    own: Option<usize>,
}

impl OrphanTest {
    pub(crate) fn new(access: Access, nr_slots: usize) -> OrphanTest {
        let (alloc, own) = match access {
            Access::Lease(a) => (Some(a), None),
            Access::Rseq(mode) => (None, crate::ops::current_index(mode).map(|i| i as usize)),
        };
        OrphanTest {
            bound: live_bound_of(access, nr_slots).bound,
            alloc,
            own,
        }
    }

    /// The first slot that may be an orphan: the bound, or 0 when idle CIDs count.
    pub(crate) fn first_candidate(&self) -> usize {
        if self.alloc.is_some() { 0 } else { self.bound }
    }

    /// Whether `slot` is an orphan.
    pub(crate) fn is_orphan(&self, slot: usize) -> bool {
        if self.own == Some(slot) {
            return false;
        }
        slot >= self.bound
            || self
                .alloc
                .is_some_and(|a| u32::try_from(slot).is_ok_and(|c| a.is_idle(c)))
    }
}

/// When a structure adopts and reaps orphans (see the [module docs](self)).
///
/// ```
/// use percid::{Limit, orphans::OrphanPolicy};
///
/// // Never adopt; reap every 1000 refills instead.
/// static L: Limit = Limit::new(1 << 20, 64)
///     .with_orphan_policy(OrphanPolicy::NEVER.reap_every(1000));
/// L.try_charge(1).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanPolicy {
    adopt: bool,
    reap_at_limit: bool,
    reap_every: u32,
}

impl OrphanPolicy {
    /// Adopt on a slot's slow path, reap at a `Limit`'s limit, no periodic reaping.
    pub const DEFAULT: OrphanPolicy = OrphanPolicy {
        adopt: true,
        reap_at_limit: true,
        reap_every: 0,
    };

    /// Nothing automatic: orphans are reached by `reap_orphans()` and drains only.
    pub const NEVER: OrphanPolicy = OrphanPolicy {
        adopt: false,
        reap_at_limit: false,
        reap_every: 0,
    };

    /// Whether a slot's slow path (a `Limit` refill, an empty `List` pop) takes orphans'
    /// contents first.
    pub const fn adopt(mut self, on: bool) -> OrphanPolicy {
        self.adopt = on;
        self
    }

    /// Whether a `Limit` charge refused at the limit reaps orphans before a full drain.
    pub const fn reap_at_limit(mut self, on: bool) -> OrphanPolicy {
        self.reap_at_limit = on;
        self
    }

    /// Reap orphans on every `n`-th slow-path call (0: never): `Limit` refills, empty `List`
    /// pops and overflow pushes, `BatchedCounter` folds.
    pub const fn reap_every(mut self, n: u32) -> OrphanPolicy {
        self.reap_every = n;
        self
    }

    /// Whether adoption is on.
    pub const fn adopts(&self) -> bool {
        self.adopt
    }

    /// Whether reaping at the limit is on.
    pub const fn reaps_at_limit(&self) -> bool {
        self.reap_at_limit
    }

    /// The periodic reaping interval in slow-path calls (0: never).
    pub const fn reap_interval(&self) -> u32 {
        self.reap_every
    }

    /// [`periodic_reap_due`](Self::periodic_reap_due) for a caller that already counts its
    /// slow-path calls: `count` is the number of calls so far, this one included.
    pub(crate) fn periodic_reap_due_at(&self, count: u64) -> bool {
        self.reap_every != 0 && count.is_multiple_of(self.reap_every as u64)
    }

    /// Counts one slow-path call on `calls`; whether this one should reap.
    pub(crate) fn periodic_reap_due(&self, calls: &AtomicU64) -> bool {
        self.reap_every != 0
            && (calls.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.reap_every as u64)
    }
}

impl Default for OrphanPolicy {
    fn default() -> OrphanPolicy {
        OrphanPolicy::DEFAULT
    }
}

/// What a `reap_orphans()` (or an adoption) moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reaped<A> {
    /// Orphan slots whose contents were moved.
    pub slots: usize,
    /// What was moved: units of stock (`Limit`), elements (`List`), the net delta
    /// (`BatchedCounter`).
    pub moved: A,
}

/// Counters of orphan handling, kept by each structure for its stats view.
#[derive(Debug, Default)]
pub(crate) struct OrphanCounters {
    /// The moves out of orphan slots: `drains` counts the moves that took slots,
    /// `fences` their membarrier fences, `slots_taken` the orphan slots emptied.
    pub moves: DrainCounters,
    /// Adoptions that moved something.
    pub adoptions: AtomicU64,
    /// Reaps run (explicit, at the limit, periodic).
    pub reaps: AtomicU64,
    /// Slow-path calls, for [`OrphanPolicy::reap_every`].
    pub calls: AtomicU64,
}

impl OrphanCounters {
    pub(crate) const fn new() -> OrphanCounters {
        OrphanCounters {
            moves: DrainCounters::new(),
            adoptions: AtomicU64::new(0),
            reaps: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }
}

/// Takes the words of the orphan slots below `hi` that are not zero, with the drain protocol
/// (see the module docs): `take(slot, value)` receives each, and the word is left 0. The
/// caller holds the structure's drain mutex. Returns the number of slots taken; no fence is
/// issued when no orphan slot holds anything.
#[allow(clippy::too_many_arguments)]
pub(crate) fn take_orphans<'a>(
    serialised: &remote::DrainGuard<'_>,
    access: Access,
    nr_slots: usize,
    hi: usize,
    word: impl Fn(usize) -> &'a AtomicU64,
    lock: u64,
    counters: &OrphanCounters,
    mut take: impl FnMut(usize, u64),
) -> Result<usize, FenceFailed> {
    let test = OrphanTest::new(access, nr_slots);
    let candidates: Vec<usize> = (test.first_candidate()..hi.min(nr_slots))
        .filter(|&s| word(s).load(Ordering::Relaxed) != 0 && test.is_orphan(s))
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    let mut taken = 0;
    remote::take_slots(
        serialised,
        access,
        candidates.into_iter(),
        word,
        lock,
        &counters.moves,
        |s, v| {
            taken += 1;
            take(s, v)
        },
    )?;
    Ok(taken)
}

/// The kernel bound's cache: one atomic word, `(read at, in ms of CLOCK_MONOTONIC_COARSE) <<
/// 24 | bound`, refreshed by one thread at a time.
mod kernel {
    use super::*;

    const BOUND_BITS: u32 = 24;
    const BOUND_MASK: u64 = (1 << BOUND_BITS) - 1;
    /// 0: never read.
    static CACHE: AtomicU64 = AtomicU64::new(0);
    /// The full figures of the last refresh (for reports), and the refresh lock.
    static LAST: Mutex<Option<LiveBound>> = Mutex::new(None);

    fn now_ms() -> u64 {
        crate::index::user_cid::coarse_now_ns() / 1_000_000
    }

    /// The cached bound, refreshed when older than [`MAX_AGE`] (by the first thread to see it
    /// stale; the others use the old value meanwhile).
    pub(super) fn cached() -> LiveBound {
        let w = CACHE.load(Ordering::Acquire);
        if w != 0 && now_ms().saturating_sub(w >> BOUND_BITS) < MAX_AGE.as_millis() as u64 {
            return cached_figures(w);
        }
        match LAST.try_lock() {
            Ok(mut last) => refresh_locked(&mut last),
            Err(_) if w != 0 => cached_figures(w),
            Err(_) => refresh(),
        }
    }

    fn cached_figures(w: u64) -> LiveBound {
        let bound = (w & BOUND_MASK) as usize;
        match LAST.try_lock() {
            Ok(last) => last
                .filter(|l| l.bound == bound)
                .unwrap_or_else(|| bare(bound)),
            Err(_) => bare(bound),
        }
    }

    fn bare(bound: usize) -> LiveBound {
        LiveBound {
            bound,
            source: BoundSource::KernelMmCid,
            threads: None,
            allowed_cpus: None,
        }
    }

    pub(super) fn refresh() -> LiveBound {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        refresh_locked(&mut last)
    }

    /// The process's thread count: the link count of `/proc/self/task`, which the kernel
    /// reports as 2 plus the number of threads (`proc_task_getattr`); one `statx`, about a
    /// third of the cost of generating `/proc/self/stat`, whose field 20 is the fallback.
    fn thread_count() -> Option<usize> {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self/task")
            && m.nlink() >= 3
        {
            return usize::try_from(m.nlink() - 2).ok();
        }
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the command name, which may hold spaces and parentheses: its last `)`.
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(17)?.parse().ok()
    }

    /// Reads the figures: the thread count (one small file read), the calling thread's
    /// affinity (one system call), and only when the threads outnumber those CPUs, the union
    /// of every thread's mask (one more system call per thread).
    fn read() -> LiveBound {
        let unknown = LiveBound {
            bound: crate::util::possible_cpu_count(),
            source: BoundSource::Unknown,
            threads: None,
            allowed_cpus: None,
        };
        let Some(threads) = thread_count() else {
            return unknown;
        };
        let Ok(mine) = crate::topology::current_thread_affinity() else {
            return unknown;
        };
        // The union of the masks has at least this thread's CPUs: while the threads do not
        // outnumber them, the bound is the thread count whatever the other masks are.
        let allowed = if threads <= mine.len() {
            mine.len()
        } else {
            match crate::topology::process_threads_and_cpus() {
                Ok((_, union)) => union.len().max(mine.len()),
                Err(_) => return unknown,
            }
        };
        LiveBound {
            bound: threads.min(allowed).max(1),
            source: BoundSource::KernelMmCid,
            threads: Some(threads),
            allowed_cpus: Some(allowed),
        }
    }

    fn refresh_locked(last: &mut Option<LiveBound>) -> LiveBound {
        let b = read();
        *last = Some(b);
        let bound = (b.bound as u64).min(BOUND_MASK);
        CACHE.store((now_ms().max(1) << BOUND_BITS) | bound, Ordering::Release);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_bound_counts_this_process() {
        let b = refresh_kernel_bound();
        let threads = b.threads.expect("/proc is readable here");
        assert!(threads >= 1);
        assert_eq!(b.bound, threads.min(b.allowed_cpus.unwrap()));
        // While this thread holds a second thread alive, the count includes it.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv().ok());
        let during = refresh_kernel_bound();
        drop(tx);
        t.join().unwrap();
        assert!(during.threads.unwrap() >= 2, "{during:?}");
        // The cached reader agrees with a fresh read taken just before.
        let fresh = refresh_kernel_bound();
        assert_eq!(kernel::cached().bound, fresh.bound);
    }

    #[test]
    fn cpu_id_has_no_orphans_and_leases_use_the_allocator() {
        let n = crate::util::possible_cpu_count();
        let b = live_bound_of(Access::Rseq(IndexMode::CpuId), n);
        assert_eq!((b.bound, b.source), (n, BoundSource::PossibleCpus));
        let t = OrphanTest::new(Access::Rseq(IndexMode::CpuId), n);
        assert!((0..n).all(|s| !t.is_orphan(s)));
        // A private allocator no thread has used: bound 0, every slot an orphan.
        let alloc: &'static CidAllocator = Box::leak(Box::new(CidAllocator::new(
            crate::index::AllocatorConfig::new(crate::Policy::CacheLocal).with_capacity(8),
        )));
        let t = OrphanTest::new(Access::Lease(alloc), 8);
        assert_eq!(live_bound_of(Access::Lease(alloc), 8).bound, 0);
        assert!((0..8).all(|s| t.is_orphan(s)));
        // Once this thread holds a CID, that CID is live (leased), the others idle.
        let lease = alloc.acquire();
        let t = OrphanTest::new(Access::Lease(alloc), 8);
        assert_eq!(
            live_bound_of(Access::Lease(alloc), 8).bound,
            1,
            "one live thread"
        );
        assert!(!t.is_orphan(lease.cid() as usize));
        drop(lease);
    }

    #[test]
    fn periodic_reaping_counts_calls() {
        let calls = AtomicU64::new(0);
        let p = OrphanPolicy::NEVER.reap_every(3);
        let due: Vec<bool> = (0..7).map(|_| p.periodic_reap_due(&calls)).collect();
        assert_eq!(due, [false, false, true, false, false, true, false]);
        let off = OrphanPolicy::DEFAULT;
        assert!((0..10).all(|_| !off.periodic_reap_due(&calls)));
    }
}
