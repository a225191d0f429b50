//! User-space concurrency IDs: leases on dense slot numbers, handed out the way Linux hands out
//! `mm_cid`.
//!
//! A thread [acquires](CidAllocator::acquire) a *concurrency ID* (CID) for a critical region and
//! holds it through a [`CidLease`] guard. While the lease lives no other lease of the same
//! allocator has that CID, so data indexed by it (a slot of a per-CID array) may be accessed
//! with plain loads and stores. Dropping the lease releases the CID. Acquiring has acquire
//! ordering and releasing has release ordering: what a holder wrote is visible to the next
//! holder of the same CID.
//!
//! The allocator imitates the kernel's `mm_cid` allocator, so it can stand in for it where
//! rseq or `mm_cid` is missing, and serve as a comparator in benchmarks. Two policies:
//!
//! * [`Policy::CacheLocal`], Linux 6.13-6.18: each CPU remembers its recent CID and reuses it;
//!   the ID space expands to `min(allowed CPUs, threads)` before any ID is shared, so each CPU
//!   tends to get back the ID whose data sits in its caches.
//! * [`Policy::Legacy`], Linux 6.4-6.12: a CPU reuses the ID it keeps; otherwise it takes the
//!   first free ID, so bursts more than an expiry period apart keep landing on ID 0.
//! * [`Policy::PerTask`], Linux 6.19 and later: a thread owns its ID for life while the
//!   threads stay within a limit; past it the CPUs own the IDs (see
//!   [below](#per-task-ownership-linux-619)).
//!
//! # Kernel eras
//!
//! | kernel | what `mm_cid` does | percid policy imitating it | `mmcid` measures |
//! |---|---|---|---|
//! | < 6.3 | no `mm_cid` | — | (not available: `cpu` or leases) |
//! | 6.3 - 6.12 | per (process, CPU) cached ID, released ~100 ms after the CPU last ran the process; otherwise first free | [`Policy::Legacy`] (`user-legacy`; 6.3 itself handed the ID back at every switch) | legacy |
//! | 6.13 - 6.18 | as legacy, plus the CPU's `recent_cid` first and expansion up to `min(allowed CPUs, threads)` | [`Policy::CacheLocal`] (`user-local`) | cache-local |
//! | 6.19 and later | per-task ownership, per-CPU past the limit, hysteresis and a transit bit on the way back; no expiry, no `recent_cid` | [`Policy::PerTask`] (`user-task`) | per-task |
//!
//! [`crate::status()`] names the era of the running kernel (from `uname -r`, see
//! [`CidEra`](crate::index::era::CidEra)). What the rseq registration length changes (Linux 7.1's
//! optimized "V2" mode) is in [`crate::rseq::registration`].
//!
//! # Fronts
//!
//! One state machine (the private `state` module, type `Core`) does all the allocation work. It never reads
//! a clock, a CPU number or a thread identity: its callers pass them in. Two fronts drive it:
//!
//! * [`CidAllocator`], the real front: the CPU from `sched_getcpu()` (to be switched to the
//!   rseq `cpu_id`), time from `CLOCK_MONOTONIC_COARSE`, thread registration through a
//!   `thread_local`, fork handling through `pthread_atfork`. [`CidAllocator::global`] gives the
//!   process-wide allocator of each policy.
//!   Beyond the core's fast path, an acquire costs two loads (fork generation), a
//!   thread-local check and `sched_getcpu()`; a release reads the coarse clock.
//! * [`DeterministicAllocator`], the deterministic front: a virtual clock, explicit CPU
//!   numbers, explicit threads with explicit affinity. Tests and simulators (the burst
//!   benchmark's topology model) replay schedules through the very same code.
//!
//! # State
//!
//! * One **state word** per CID (`AtomicU64`, one cache line each):
//!   `sequence (32 bits) | keeper CPU + 1 (31 bits, 0 = none; all ones = owned by a task,
//!   `PerTask` only) | leased (1 bit)`.
//!   A CID is *free* (no keeper, not leased), *kept* by a CPU (keeper set, not leased), or
//!   *leased* (with or without a keeper). Every lease increments the sequence number.
//! * Per CPU (one cache line each): `kept`, a hint naming the CID the CPU keeps; `recent`, the
//!   last CID handed out on that CPU; `last_use`, the time a lease of its kept CID was last
//!   released.
//! * Shared: `max_nr_cid` (the expansion counter), the number of live threads, the union of the
//!   threads' affinity masks and its population count (`nr_cpus_allowed`).
//!
//! # Algorithm
//!
//! **Fast path** (both policies): load the CPU's `kept` hint `k`, load `k`'s state word, check
//! that it is not leased and names this CPU as keeper, and compare-and-swap it to leased (with
//! the next sequence number). Three loads and one CAS, no lock, no clock. This is "take the
//! CPU's kept CID if free".
//!
//! **Slow path** (the CPU keeps no CID, or its kept CID is leased by another thread that was
//! preempted or migrated while holding it):
//!
//! * `Legacy`: the first CID (lowest number) *available* to this CPU; else the first CID not
//!   leased (*take-over*, below).
//! * `CacheLocal`, with `allowed = min(nr_cpus_allowed, capacity)` and
//!   `bound = min(allowed, live threads)`:
//!   1. if `max_nr_cid > bound` (threads exited), lower it to `bound`, as the kernel does, so
//!      that growth hands out IDs in order again;
//!   2. the CPU's `recent` CID if it is below `max_nr_cid` and available;
//!   3. *expansion*: while `max_nr_cid < bound`, claim `m = max_nr_cid` by CAS to `m + 1` and
//!      take CID `m` if available (a never-used ID normally is);
//!   4. the first available CID below `allowed`;
//!   5. *overload*: the first available CID below the capacity;
//!   6. *take-over*: the first CID not leased, even if another CPU keeps it and used it
//!      recently.
//!
//! Take-over is only reached when every CID is leased or recently used by another CPU, which
//! needs a capacity below the number of CPUs in use, or overload. Without it a thread would
//! wait up to an expiry period although no CID is held. (The kernel never needs it: it has
//! at least as many IDs as CPUs, and a CPU holds one ID at most.)
//!
//! A CID is **available** to CPU `c` at time `now` when it is not leased and either has no
//! keeper, is kept by `c`, or is kept by a CPU `d` that has not used it for the expiry period
//! (`now - last_use[d] >= expiry`). The CID taken becomes the CPU's kept CID (its state names
//! the CPU, the `kept` hint is swapped to it), unless the CPU already keeps another CID that
//! is leased: then the new one is *transient* and becomes free on release. Either way it
//! becomes the CPU's `recent` CID.
//!
//! **Release**: if the lease was of the CPU's kept CID, store the time into that CPU's
//! `last_use`; then clear the leased bit (`fetch_and`, release ordering). A CID stays with the
//! CPU that acquired it even if the thread migrated meanwhile.
//!
//! **Expiry** is applied lazily, when a slow path considers a CID: a kept CID whose CPU has not
//! used it for the expiry period (default 100 ms, see [`AllocatorConfig::expiry`]) counts as
//! free. That is exactly what a periodic sweep would give if it ran at the instant each CID
//! expires, without a sweeper. The CPU itself still finds its expired CID on its fast path if
//! nobody took it (it is using it again); [`DeterministicAllocator::kept_cid`] reports it as
//! released. Like the kernel's, `recent` survives expiry: it is what lets `CacheLocal` give a
//! CPU its old ID back after a long pause, while `Legacy`'s first-free search hands ID 0 to
//! whichever CPU comes next.
//!
//! **Bounds.** Every CID is below the capacity. `CacheLocal` expansion stops at
//! `min(allowed CPUs, live threads)`, and steps 2-4 stay below `allowed`. But a lease holder
//! that is preempted keeps its CID (the kernel would take the CPU's CID back at the context
//! switch; user space cannot), so when more threads hold leases at once than there are
//! allowed CPUs, step 5 hands out IDs above `allowed`, never at or above the capacity. When
//! every CID is *leased* (kept CIDs are taken over), [`CidAllocator::acquire`] waits (spin, yield, then sleep) for a release
//! rather than exceed the capacity; [`DeterministicAllocator::acquire_at`] returns `None`.
//!
//! **Threads and allowed CPUs** (as the kernel counts them): a thread registers on its first
//! [`acquire`](CidAllocator::acquire) from an allocator: it reads its own affinity mask with
//! `sched_getaffinity` (any number of CPUs) and ORs it into the union, which never shrinks, and
//! increments the live-thread count; a `thread_local` guard decrements it at thread exit.
//! A lease taken during or after thread-local teardown works, unregistered.
//!
//! **Fork**: a `pthread_atfork` child handler increments a process-wide fork generation. In
//! the child, the first use of an allocator resets it to the fresh state (one thread resets
//! under a CAS-claimed flag, others wait), since leases of the parent's other threads would
//! otherwise never be released. Leases and thread registrations from before the fork are
//! recognised by their generation and release or decrement nothing. So a lease held across
//! fork by the forking thread stays usable in the child, but no longer reserves its CID there:
//! the same thread may be handed that CID again.
//!
//! # Invariants
//!
//! * **(I1) Exclusivity.** The leased bit is set only by a successful CAS from a word whose bit
//!   is clear, and cleared only by the holder's release. Hence no CID has two leases at once.
//!   While a CID is leased only its holder writes its state word (every other writer is a CAS
//!   expecting the bit clear), with one exception under `PerTask`: a mode switch's fixup walk
//!   may clear the owner of a leased word once, by CAS, leaving the leased bit set; the
//!   holder's release under `PerTask` is a CAS, which notices it.
//! * **(I2) Availability** is decided from one snapshot of the state word, and taking the CID is
//!   a CAS from that snapshot: the decision is void if anything changed in between.
//! * **(I3) Hints.** CPU `c` keeps CID `k` if and only if `k`'s state word names `c`. The `kept`
//!   hint is only believed when the state word confirms it, so a stale hint costs a slow path,
//!   never exclusivity. In rare races a CPU may keep a second CID that its hint does not name;
//!   it stays available to that CPU and expires like any other.
//! * **(I4) Expiry sees completed uses.** A release writes `last_use` before clearing the bit
//!   with release ordering; the slow path loads the state word with acquire ordering before
//!   reading `last_use`; every lease bumps the sequence number, so a CAS based on a snapshot
//!   taken before a later lease fails. A CID is thus never reclaimed as expired because of a
//!   use-time older than a use that completed before the decision. (A sequence wrap needs 2^32
//!   leases of one CID between a load and the CAS that follows it.)
//! * **(I5) Visibility.** Acquire CAS and release `fetch_and`; every other change to a state
//!   word is an atomic read-modify-write or a write by the holder itself, so the release
//!   sequence of a holder's release reaches the next holder's acquire: plain data written under
//!   a lease happens-before every access under the next lease of that CID.
//! * **(I6) Bounds and progress**, as stated above: below the capacity always; `CacheLocal` at
//!   or above `allowed` only when no CID below it was available during that acquire; an acquire
//!   comes back empty-handed (and the real front waits) only if it saw every CID leased.
//!
//! # Per-task ownership (Linux 6.19)
//!
//! Sources: Thomas Gleixner's series "sched: Rewrite MM CID management" (V5, 2025-11-19,
//! merged for 6.19), in particular "sched/mmcid: Provide CID ownership mode fixup functions"
//! and the fix "sched/mmcid: Ensure that per CPU threshold is > 0"; in the merged code
//! `kernel/sched/core.c` (`__mm_update_max_cids`, `mm_cid_calc_pcpu_thrs`,
//! `mm_update_max_cids`, `mm_cid_fixup_tasks_to_cpus`, `mm_cid_fixup_cpus_to_tasks`,
//! `sched_mm_cid_fork`, `sched_mm_cid_exit`) and `kernel/sched/sched.h` (`mm_get_cid`,
//! `mm_cid_converge`, `mm_cid_from_task`, `mm_cid_from_cpu`, `mm_cid_schedin`,
//! `mm_cid_schedout`, the `MM_CID_ONCPU` and `MM_CID_TRANSIT` bits). Rules imitated, with a
//! user-space *acquire* standing for the kernel's schedule-in and a *release* for its
//! schedule-out, and thread registration / exit for fork / exit:
//!
//! * **Limit.** `opt = min(allowed CPUs, threads)`; `max_cids = min(opt + opt / 4, capacity)`
//!   (the kernel bounds it by the possible CPUs; the capacity plays that role here). Updated at
//!   every thread start and exit (`__mm_update_max_cids`).
//! * **Per-task mode** (`mm_cid_from_task`): a thread's first acquire takes the first free ID
//!   below `max_cids` (`mm_get_cid`), and owns it until it exits (`sched_mm_cid_exit`), across
//!   sleeps and migrations: no expiry. An owned ID at or above `max_cids` (threads exited) is
//!   exchanged for a free one below it at the next acquire, if there is one
//!   (`mm_cid_converge`). So a thread exit, which lowers `max_cids`, moves the survivors'
//!   IDs down: in a burst run whose threads end at different times, a thread still running
//!   after another exited may find its slot changed.
//! * **Switch to per-CPU mode** when the threads exceed `max_cids` (`mm_update_max_cids`):
//!   the switch-back threshold `max(min(opt - opt / 4, capacity / 2), 1)` is recorded
//!   (`mm_cid_calc_pcpu_thrs`), and every ID a task owns goes back to the pool
//!   (`mm_cid_fixup_tasks_to_cpus`). From then on a thread borrows the ID of the CPU it runs on
//!   (`mm_cid_from_cpu`); a CPU without one takes the first free ID and keeps it, with no
//!   expiry, converging below `max_cids` like a task's.
//! * **Hysteresis.** Per-CPU mode lasts until the threads fall *below the recorded threshold*
//!   (recomputed when the allowed CPUs grow), not merely back within `max_cids`.
//! * **Two-phase handover** (`MM_CID_TRANSIT`). A switch sets the new mode with a transit
//!   bit, walks the IDs, then clears the bit. During the walk, IDs handed out are temporary
//!   and dropped at release (the kernel's transit ID, dropped at schedule-out). The walk drops
//!   every ID of the old kind of owner that nobody holds, and marks the held ones (owner
//!   cleared) so that their release drops them. A task that still owns an ID when it first
//!   acquires in per-CPU mode hands it to its CPU (or drops it if the CPU has one), and a CPU
//!   that still owns one when a task acquires in per-task mode gives it to that task: the
//!   kernel's handover in `mm_cid_schedin`.
//!
//! Where user space differs: the kernel serializes the switch with `mm_cid.mutex` and walks
//! under each runqueue lock, so after its walk no ID of the old kind remains. Here the walk
//! races acquires: a thread whose acquire read the old mode just before the switch may leave
//! one ID of the old kind behind, which its next acquire (or its exit) hands over or drops.
//! The kernel's later refinement that keeps a transit ID below `max_cids` at schedule-out
//! (2026-02, after 6.19) is not imitated. Leases stay exclusive whatever the mode (I1): the
//! mode only decides which ID a thread gets. A nested lease (a thread leasing while it holds
//! its own ID) gets a transient ID; an exact lease of an ID a task owns costs that task its
//! ID (it takes the first free one at its next acquire).
//!
//! # Verification
//!
//! The core is model-checked with `loom` (its atomics go through a shim that is
//! `loom::sync::atomic` under `cfg(loom)`): exclusivity and visibility through `loom`'s
//! data-race-detecting cells, under concurrent fast paths, expiry take-overs, exact leases and
//! expansion races. Run it with
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib index::user_cid::loom_tests`.
//!
//! Not model-checked, and why:
//! * the thread registry: it is thread-local and only touches the core through `thread_start`
//!   and `thread_exit` (two atomic counters, whose accuracy affects locality, not exclusivity);
//! * the fork reset: `loom` has no processes. The argument: after `fork` only the forking thread
//!   exists, and the handler has bumped the generation before it returns to user code; every
//!   front operation compares the generation first, so the reset (claimed by one CAS on the
//!   allocator's generation word, published with release ordering) happens before any use of
//!   the core in the child; leases from the parent carry the old generation and never write;
//! * the clock and the CPU number, which are inputs of the core: any value is correct, only
//!   locality depends on them.
//!
//! These parts are exercised by the stress, thread-churn and fork tests
//! (`tests/user_cid_*.rs`).

mod clock;
mod deterministic;
mod real;
mod state;
mod sync;
mod thread;

#[cfg(all(loom, test))]
mod loom_tests;

use std::time::Duration;

pub(crate) use clock::now_ns as coarse_now_ns;
pub use deterministic::{DeterministicAllocator, DeterministicConfig};
pub(crate) use real::leases_of_current_thread;
pub use real::{CidAllocator, CidLease, GLOBAL_STAMP_INTERVAL};

/// The default expiry period of a CPU's kept CID: 100 ms, as in the kernel.
pub const DEFAULT_EXPIRY: Duration = Duration::from_millis(100);

/// How CIDs are chosen (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Policy {
    /// Linux 6.13-6.18: kept CID, then recent CID, then expansion up to
    /// `min(allowed CPUs, threads)`, then first free.
    #[default]
    CacheLocal,
    /// Linux 6.4-6.12: kept CID, then first free.
    Legacy,
    /// Linux 6.19 and later: a thread owns its CID for life while the threads stay within
    /// `max_cids`; past it the CPUs own the CIDs and threads borrow them, until the threads
    /// fall below the threshold recorded at the switch (see [the module docs](self#per-task-ownership-linux-619)).
    PerTask,
}

/// Configuration of a [`CidAllocator`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AllocatorConfig {
    /// Allocation policy.
    pub policy: Policy,
    /// Number of CIDs (slots). Default: the number of possible CPUs.
    pub capacity: u32,
    /// A CPU's kept CID is released once the CPU has not used it for this long.
    /// Default: [`DEFAULT_EXPIRY`].
    pub expiry: Duration,
    /// Releases between two readings of the clock for a CPU's last use of its kept CID.
    /// Default 1: every release reads the clock (about 10 ns on the virtual machines this was
    /// measured on), so expiry is exact, as the burst benchmark needs. With `n > 1`, a CPU's
    /// use is stamped on one release in `n` (and whenever it starts keeping a CID): a CPU that
    /// keeps using its CID rarely may see it expire up to `n - 1` releases early, which costs
    /// locality, never exclusivity.
    pub stamp_interval: u32,
}

impl AllocatorConfig {
    /// `policy` with the default capacity and expiry.
    pub fn new(policy: Policy) -> Self {
        AllocatorConfig {
            policy,
            capacity: u32::try_from(crate::util::possible_cpu_count()).unwrap_or(u32::MAX),
            expiry: DEFAULT_EXPIRY,
            stamp_interval: 1,
        }
    }

    /// Set the stamp interval (see [`stamp_interval`](Self::stamp_interval); at least 1).
    pub fn with_stamp_interval(mut self, n: u32) -> Self {
        self.stamp_interval = n.max(1);
        self
    }

    /// Set the capacity (number of CIDs, at least 1).
    pub fn with_capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// Set the expiry period.
    pub fn with_expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig::new(Policy::default())
    }
}
