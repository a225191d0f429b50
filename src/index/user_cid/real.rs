//! The real front: [`CidAllocator`] and [`CidLease`], driven by the calling thread's CPU, the
//! monotonic clock, thread-local registration and the fork generation.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::clock::{current_cpu, now_ns};
use super::state::{Core, Taken};
use super::thread::{self, FORK_GEN};
use super::{AllocatorConfig, Policy};
use crate::util::possible_cpu_count;

/// The stamp interval of the process-wide allocators ([`CidAllocator::global`]).
pub const GLOBAL_STAMP_INTERVAL: u32 = 32;

/// `Shared::epoch` while a thread resets the core for the generation in the low bits.
const RESETTING: u64 = 1 << 63;

/// What the allocator handle, its leases and the thread registries share.
pub(super) struct Shared {
    pub(super) core: Core,
    /// Fork generation the core's state belongs to, or `RESETTING | epoch` during a reset.
    epoch: AtomicU64,
    /// Process-unique allocator number (registry key), never 0.
    pub(super) id: u64,
}

impl Shared {
    pub(super) fn generation(&self) -> u64 {
        self.epoch.load(Acquire)
    }

    /// Make the core belong to the current fork generation and return it. In the original
    /// process and after the first use in a child this is two loads and a compare.
    #[inline]
    fn enter(&self) -> u64 {
        let g = FORK_GEN.load(Relaxed);
        if self.epoch.load(Acquire) != g {
            self.reset_after_fork(g);
        }
        g
    }

    /// First use of the core in a forked child: the state was copied from the parent, where
    /// other threads (which do not exist here) may have held leases. Exactly one thread resets
    /// it; the others wait. A reset interrupted by a further fork (`RESETTING` with an older
    /// generation) is redone in the new child.
    #[cold]
    fn reset_after_fork(&self, g: u64) {
        let mut spins = 0u32;
        loop {
            let cur = self.epoch.load(Acquire);
            if cur == g {
                return;
            }
            if cur == RESETTING | g {
                backoff(&mut spins);
                continue;
            }
            if self
                .epoch
                .compare_exchange(cur, RESETTING | g, Acquire, Acquire)
                .is_ok()
            {
                self.core.reset();
                // Release: threads that see `g` see the reset state.
                self.epoch.store(g, Release);
                return;
            }
        }
    }
}

/// A user-space concurrency-ID allocator (see the [module documentation](super)).
///
/// `Send + Sync`; cloning is not offered, share it by reference or use [`CidAllocator::global`].
pub struct CidAllocator {
    shared: Arc<Shared>,
}

impl fmt::Debug for CidAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CidAllocator")
            .field("policy", &self.policy())
            .field("capacity", &self.capacity())
            .field("expiry", &self.expiry())
            .field("live_threads", &self.live_threads())
            .field("nr_cpus_allowed", &self.nr_cpus_allowed())
            .field("max_nr_cid", &self.max_nr_cid())
            .finish()
    }
}

impl CidAllocator {
    /// A new allocator: every CID free, no thread registered. Its per-CPU table covers every
    /// possible CPU.
    ///
    /// # Panics
    ///
    /// If the capacity is 0 or above 2^31 - 1.
    pub fn new(config: AllocatorConfig) -> CidAllocator {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        thread::install_fork_handler();
        let cpus = u32::try_from(possible_cpu_count()).unwrap_or(u32::MAX);
        let expiry_ns = u64::try_from(config.expiry.as_nanos()).unwrap_or(u64::MAX);
        CidAllocator {
            shared: Arc::new(Shared {
                core: Core::with_stamp_interval(
                    config.policy,
                    config.capacity,
                    cpus,
                    expiry_ns,
                    config.stamp_interval,
                ),
                epoch: AtomicU64::new(FORK_GEN.load(Relaxed)),
                id: NEXT_ID.fetch_add(1, Relaxed),
            }),
        }
    }

    /// The process-wide allocator of `policy`, the one structures lease from: real clock,
    /// default expiry, capacity = the number of possible CPUs, and a stamp interval of
    /// [`GLOBAL_STAMP_INTERVAL`] (a CPU's use is stamped on one release in 32: expiry is
    /// approximate, which only costs locality; allocators made with [`CidAllocator::new`]
    /// stamp every release by default). Created on first use.
    pub fn global(policy: Policy) -> &'static CidAllocator {
        static CACHE_LOCAL: OnceLock<CidAllocator> = OnceLock::new();
        static LEGACY: OnceLock<CidAllocator> = OnceLock::new();
        static PER_TASK: OnceLock<CidAllocator> = OnceLock::new();
        let cell = match policy {
            Policy::CacheLocal => &CACHE_LOCAL,
            Policy::Legacy => &LEGACY,
            Policy::PerTask => &PER_TASK,
        };
        cell.get_or_init(|| {
            CidAllocator::new(
                AllocatorConfig::new(policy).with_stamp_interval(GLOBAL_STAMP_INTERVAL),
            )
        })
    }

    /// Acquire a CID for the calling thread, running on the current CPU.
    ///
    /// Never fails and never returns a CID at or above [`capacity`](Self::capacity). If every
    /// CID is leased it waits: spins briefly, then yields the CPU, then sleeps 50 µs between
    /// attempts, until a lease is released. With nested leases (a thread acquiring while it
    /// holds a lease of the same allocator) `capacity` threads each holding one and waiting for
    /// a second deadlock; use [`try_acquire`](Self::try_acquire) there.
    #[inline]
    pub fn acquire(&self) -> CidLease<'_> {
        let epoch = self.enter_registered();
        if self.shared.core.policy() == Policy::PerTask {
            if let Some(t) = self.take(epoch) {
                return self.lease(t, epoch);
            }
            return self.acquire_contended(epoch);
        }
        let cpu = current_cpu();
        if let Some(t) = self.shared.core.take_kept(cpu) {
            return self.lease(t, epoch);
        }
        self.acquire_contended(epoch)
    }

    #[cold]
    fn acquire_contended(&self, epoch: u64) -> CidLease<'_> {
        let mut spins = 0u32;
        loop {
            if let Some(t) = self.take(epoch) {
                return self.lease(t, epoch);
            }
            backoff(&mut spins);
        }
    }

    /// One attempt of the core's acquire for the calling thread (with its per-task record under
    /// `PerTask`).
    #[inline]
    fn take(&self, epoch: u64) -> Option<Taken> {
        let core = &self.shared.core;
        if core.policy() == Policy::PerTask {
            thread::with_task(&self.shared, epoch, |task| {
                core.try_acquire_for(current_cpu(), 0, task)
            })
        } else {
            core.try_acquire(current_cpu(), now_ns())
        }
    }

    /// Like [`acquire`](Self::acquire), but returns `None` instead of waiting when every CID is
    /// leased.
    pub fn try_acquire(&self) -> Option<CidLease<'_>> {
        let epoch = self.enter_registered();
        let t = self.take(epoch)?;
        Some(self.lease(t, epoch))
    }

    /// Lease exactly `cid` if nobody holds it right now (`None` if it is leased or not below the
    /// capacity). It stays kept by whichever CPU keeps it, and the lease does not count as a use
    /// by any CPU. Does not register the calling thread. For the portable fallback of per-slot
    /// operations that must reach one given slot.
    pub fn try_acquire_exact(&self, cid: u32) -> Option<CidLease<'_>> {
        let epoch = self.shared.enter();
        let t = self.shared.core.try_acquire_exact(cid)?;
        Some(self.lease(t, epoch))
    }

    #[inline]
    fn enter_registered(&self) -> u64 {
        let epoch = self.shared.enter();
        thread::ensure_registered(&self.shared, epoch);
        epoch
    }

    #[inline]
    fn lease(&self, taken: Taken, epoch: u64) -> CidLease<'_> {
        held::push(self.shared.id, taken.cid);
        CidLease {
            shared: &self.shared,
            taken,
            epoch,
            _not_send: PhantomData,
        }
    }

    /// Whether the calling thread holds a lease on `cid` of this allocator right now (a
    /// lease it took and has not dropped). Exact for a thread holding up to 8 leases (of all
    /// allocators) at once; leases taken while it holds 8 are not seen (`false`).
    pub fn held_by_current_thread(&self, cid: u32) -> bool {
        held::contains(self.shared.id, cid)
    }

    /// The allocator's process-unique number (the key of [`leases_of_current_thread`]).
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    /// The allocation policy.
    pub fn policy(&self) -> Policy {
        self.shared.core.policy()
    }

    /// Number of CIDs (slots): every CID handed out is below it.
    pub fn capacity(&self) -> u32 {
        self.shared.core.capacity()
    }

    /// The expiry period of a CPU's kept CID.
    pub fn expiry(&self) -> Duration {
        Duration::from_nanos(self.shared.core.expiry_ns())
    }

    /// Threads that acquired from this allocator and have not exited (a snapshot).
    pub fn live_threads(&self) -> u32 {
        self.shared.enter();
        self.shared.core.live_threads()
    }

    /// Number of CPUs in the union of the affinity masks of the threads seen so far.
    pub fn nr_cpus_allowed(&self) -> u32 {
        self.shared.enter();
        self.shared.core.nr_cpus_allowed()
    }

    /// `CacheLocal`: the expansion counter `max_nr_cid`. `Legacy`: one more than the highest CID
    /// handed out by a slow path so far. A snapshot.
    pub fn max_nr_cid(&self) -> u32 {
        self.shared.enter();
        self.shared.core.max_nr_cid()
    }

    /// The dense bound of live CIDs, `min(allowed CPUs, capacity, live threads)`: the
    /// cache-local policy hands out CIDs below it (see the [orphans](crate::orphans) module
    /// for what a structure does with the slots above). A snapshot, from the allocator's own
    /// counters: no system call.
    pub fn live_bound(&self) -> u32 {
        self.shared.enter();
        self.shared.core.live_bound()
    }

    /// Whether `cid` is idle now: not leased, and kept by no CPU or by one that has not used
    /// it for the expiry period (so no thread uses its slot until somebody acquires it).
    /// Under [`Policy::PerTask`]: not leased and not owned by a thread (a CID a CPU owns in
    /// per-CPU mode counts as idle while not held: that mode has no expiry). A
    /// snapshot; false at or above the capacity. With a stamp interval above 1 a CPU's use
    /// is stamped on some releases only, so a CID in steady use may look idle early: that
    /// costs a structure locality (it moves contents out of a slot in use), never exactness.
    pub fn is_idle(&self, cid: u32) -> bool {
        self.shared.enter();
        self.shared.core.is_idle(cid, now_ns())
    }

    /// Whether `cid` is leased right now (a snapshot; false at or above the capacity).
    pub fn is_held(&self, cid: u32) -> bool {
        self.shared.enter();
        self.shared.core.is_leased(cid)
    }
}

/// A held concurrency ID: while it lives no other lease of the same allocator has the same
/// [`cid`](Self::cid). Dropping it releases the CID (with release ordering: what the holder
/// wrote is visible to the next holder, which acquires with acquire ordering).
///
/// Neither `Send` nor `Sync`: a lease is released by the thread that took it, which is what
/// lets [`CidAllocator::held_by_current_thread`] answer from thread-local bookkeeping.
#[must_use = "the CID is released as soon as the lease is dropped"]
pub struct CidLease<'a> {
    shared: &'a Shared,
    taken: Taken,
    epoch: u64,
    _not_send: PhantomData<*const ()>,
}

impl CidLease<'_> {
    /// The concurrency ID, below the allocator's capacity.
    #[inline]
    pub fn cid(&self) -> u32 {
        self.taken.cid
    }
}

impl fmt::Debug for CidLease<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CidLease")
            .field("cid", &self.cid())
            .finish()
    }
}

impl Drop for CidLease<'_> {
    #[inline]
    fn drop(&mut self) {
        held::remove(self.shared.id, self.taken.cid);
        // A lease taken before a fork releases nothing in the child: the child's allocator
        // state was (or will be) reset and may have handed this CID out again.
        if FORK_GEN.load(Relaxed) != self.epoch {
            return;
        }
        let core = &self.shared.core;
        if core.policy() == Policy::PerTask {
            thread::with_task(self.shared, self.epoch, |task| {
                core.release_for(self.taken, None, task)
            });
            return;
        }
        let now = core.stamp_due(&self.taken).then(now_ns);
        core.release(self.taken, now);
    }
}

/// Waiting for a CID (or for a reset by another thread): spin, then yield, then sleep.
fn backoff(spins: &mut u32) {
    if *spins < 6 {
        for _ in 0..(1u32 << *spins) {
            std::hint::spin_loop();
        }
    } else if *spins < 100 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
    *spins = spins.saturating_add(1);
}

/// The leases the calling thread holds, per allocator: what lets a drain that runs inside one
/// of the thread's own leases take that slot instead of waiting for itself
/// (`CidAllocator::held_by_current_thread`). A small fixed table in thread-local storage
/// without a destructor, so it works during thread-local teardown too; a lease is pushed when
/// taken and removed when dropped (usually the last one: leases nest).
pub(super) mod held {
    use std::cell::Cell;

    /// Leases tracked per thread.
    pub const TRACKED: usize = 8;

    /// A free entry below the top (a lease dropped out of order); allocator ids start at 1.
    const HOLE: (u64, u32) = (0, 0);

    /// A stack of `(allocator id, cid)`: leases nest, so a push and the matching pop touch the
    /// top only. Leases taken while the stack is full are counted, not recorded.
    struct Held {
        len: Cell<usize>,
        untracked: Cell<usize>,
        entries: [Cell<(u64, u32)>; TRACKED],
    }

    thread_local! {
        static HELD: Held = const {
            Held {
                len: Cell::new(0),
                untracked: Cell::new(0),
                entries: [const { Cell::new(HOLE) }; TRACKED],
            }
        };
    }

    /// Records a lease taken by this thread.
    #[inline(always)]
    pub(super) fn push(alloc: u64, cid: u32) {
        HELD.with(|h| {
            let n = h.len.get();
            if n < TRACKED {
                h.entries[n].set((alloc, cid));
                h.len.set(n + 1);
            } else {
                h.untracked.set(h.untracked.get() + 1);
            }
        });
    }

    /// Forgets a lease this thread drops.
    #[inline(always)]
    pub(super) fn remove(alloc: u64, cid: u32) {
        HELD.with(|h| {
            let n = h.len.get();
            if n > 0 && h.entries[n - 1].get() == (alloc, cid) {
                let mut top = n - 1;
                while top > 0 && h.entries[top - 1].get() == HOLE {
                    top -= 1;
                }
                h.len.set(top);
            } else {
                remove_out_of_order(h, alloc, cid);
            }
        });
    }

    #[cold]
    fn remove_out_of_order(h: &Held, alloc: u64, cid: u32) {
        let n = h.len.get();
        match (0..n).find(|&i| h.entries[i].get() == (alloc, cid)) {
            Some(i) => h.entries[i].set(HOLE),
            // Taken while the stack was full.
            None => h.untracked.set(h.untracked.get().saturating_sub(1)),
        }
    }

    pub(super) fn contains(alloc: u64, cid: u32) -> bool {
        HELD.with(|h| (0..h.len.get()).any(|i| h.entries[i].get() == (alloc, cid)))
    }

    /// The tracked leases of this thread, `(allocator id, cid)`, in no particular order.
    pub(super) fn snapshot() -> Vec<(u64, u32)> {
        HELD.with(|h| {
            (0..h.len.get())
                .map(|i| h.entries[i].get())
                .filter(|&e| e != HOLE)
                .collect()
        })
    }
}

/// The leases the calling thread holds (up to [`held::TRACKED`] of them), as `(allocator
/// id, cid)`: what a thread that waits for a drain lock lends to drains (see `remote`).
pub(crate) fn leases_of_current_thread() -> Vec<(u64, u32)> {
    held::snapshot()
}
