//! The allocation state machine shared by the real front ([`super::CidAllocator`]) and the
//! deterministic front ([`super::DeterministicAllocator`]).
//!
//! The core never reads a clock, a CPU number or a thread identity by itself: every operation
//! is handed the CPU (`cpu`) and the time (`now`, nanoseconds on any monotonic scale) by its
//! caller. That is what lets tests, the loom model and the burst simulator replay schedules
//! through exactly this code. See the module documentation of [`super`] for the algorithm and
//! its invariants; the comments here refer to them as (I1)..(I6).

use super::Policy;
use super::sync::{AtomicU32, AtomicU64, Ordering::*};
use crate::util::CachePadded;

mod per_task;

pub(crate) use per_task::TaskCid;

/// "No CID" in the per-CPU `kept` and `recent` hints.
pub(crate) const NONE: u32 = u32::MAX;

/// State word bit 0: the CID is leased (held by a lease guard).
const LEASED: u64 = 1;
/// State word bits 1..=31: keeper CPU + 1, or 0 when no CPU keeps the CID.
const KEEPER_SHIFT: u32 = 1;
const KEEPER_MASK: u64 = 0x7fff_ffff << KEEPER_SHIFT;
/// State word bits 32..=63: a sequence number bumped by every lease, so that a
/// compare-and-swap based on an older snapshot of the word fails (no ABA).
const SEQ_ONE: u64 = 1 << 32;

/// Largest number of CPU numbers the per-CPU table may cover (the keeper field is 31 bits).
pub(crate) const MAX_CPUS: u32 = 0x7fff_fffe;
/// Largest capacity: CIDs must stay below [`NONE`].
pub(crate) const MAX_CAPACITY: u32 = 0x7fff_ffff;

/// Keeper field value of a CID a task owns (`Policy::PerTask`): all ones, a value no CPU
/// number reaches (CPU numbers are below [`MAX_CPUS`]).
const TASK_OWNED: u64 = KEEPER_MASK;

/// The CPU keeping the CID in state `s` (`None`: free, or owned by a task).
#[inline]
fn keeper_of(s: u64) -> Option<usize> {
    if s & KEEPER_MASK == TASK_OWNED {
        return None;
    }
    (((s & KEEPER_MASK) >> KEEPER_SHIFT) as usize).checked_sub(1)
}

/// Whether the CID in state `s` is owned by a task (`Policy::PerTask`).
#[inline]
fn task_owned(s: u64) -> bool {
    s & KEEPER_MASK == TASK_OWNED
}

#[inline]
fn with_keeper(s: u64, keeper: Option<usize>) -> u64 {
    let bits = keeper.map_or(0, |c| (c as u64 + 1) << KEEPER_SHIFT);
    (s & !KEEPER_MASK) | bits
}

/// The word a successful lease stores: next sequence number, leased bit set.
#[inline]
fn leased(s: u64) -> u64 {
    s.wrapping_add(SEQ_ONE) | LEASED
}

/// Per-CPU record, one cache line each.
#[derive(Debug)]
struct CpuSlot {
    /// Hint: the CID this CPU keeps, or [`NONE`]. Authoritative only when the CID's state
    /// word names this CPU as keeper (I3).
    kept: AtomicU32,
    /// The last CID handed to a thread on this CPU, or [`NONE`] (read by `CacheLocal`).
    recent: AtomicU32,
    /// Time (caller's scale) at which a lease of this CPU's kept CID was last released (or,
    /// with a stamp interval above 1, last stamped).
    last_use: AtomicU64,
    /// Releases of this CPU's kept CID since it was last stamped (stamp interval above 1).
    unstamped: AtomicU32,
}

/// Threads and CPUs seen by the allocator (read on the slow path only).
#[derive(Debug)]
struct Population {
    /// Threads registered and not exited.
    threads: AtomicU32,
    /// Population count of `allowed`.
    nr_allowed: AtomicU32,
    /// Union of the affinity masks of the threads seen so far, one bit per CPU.
    allowed: Box<[AtomicU64]>,
}

/// A CID taken by [`Core`]: what the caller must hand back to [`Core::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The concurrency ID.
    pub(crate) cid: u32,
    /// The CPU whose `last_use` the release refreshes: the CPU that keeps `cid`, or [`NONE`]
    /// for a transient lease and for an exact lease (which do not count as use by a CPU).
    pub(crate) touch: u32,
    /// The state word as the holder last wrote it (leased bit set). While a CID is leased
    /// only its holder writes the word (I1), so the release can store this value without its
    /// leased bit instead of a read-modify-write.
    pub(crate) word: u64,
}

/// The shared allocation state. All methods take `&self` and are safe to call concurrently.
#[derive(Debug)]
pub(crate) struct Core {
    policy: Policy,
    capacity: u32,
    nr_cpus: usize,
    expiry_ns: u64,
    /// Releases between two stamps of a CPU's `last_use` (1: every release).
    stamp_interval: u32,
    /// One state word per CID (I1).
    cids: Box<[CachePadded<AtomicU64>]>,
    /// One record per CPU number.
    cpus: Box<[CachePadded<CpuSlot>]>,
    /// `CacheLocal`: the expansion counter `max_nr_cid`. `Legacy`: one more than the highest CID
    /// its slow path ever handed out (inspection only).
    max_nr_cid: CachePadded<AtomicU32>,
    population: CachePadded<Population>,
    /// `PerTask`: the ownership mode, `max_cids` and the switch-back threshold.
    ownership: CachePadded<per_task::Ownership>,
}

impl Core {
    /// A core with every CID free, no thread registered and no CPU allowed.
    ///
    /// Panics if `capacity` is 0 or above [`MAX_CAPACITY`], or `nr_cpus` is 0 or above
    /// [`MAX_CPUS`].
    pub(crate) fn new(policy: Policy, capacity: u32, nr_cpus: u32, expiry_ns: u64) -> Self {
        Core::with_stamp_interval(policy, capacity, nr_cpus, expiry_ns, 1)
    }

    /// As [`new`](Self::new), refreshing a CPU's `last_use` on one release in
    /// `stamp_interval` (at least 1) instead of on every release: see
    /// [`stamp_due`](Self::stamp_due).
    pub(crate) fn with_stamp_interval(
        policy: Policy,
        capacity: u32,
        nr_cpus: u32,
        expiry_ns: u64,
        stamp_interval: u32,
    ) -> Self {
        assert!(
            (1..=MAX_CAPACITY).contains(&capacity),
            "CID allocator capacity must be in 1..={MAX_CAPACITY}, got {capacity}"
        );
        assert!(
            (1..=MAX_CPUS).contains(&nr_cpus),
            "CID allocator CPU count must be in 1..={MAX_CPUS}, got {nr_cpus}"
        );
        let nr_cpus = nr_cpus as usize;
        Core {
            policy,
            capacity,
            nr_cpus,
            expiry_ns,
            stamp_interval: stamp_interval.max(1),
            cids: (0..capacity)
                .map(|_| CachePadded(AtomicU64::new(0)))
                .collect(),
            cpus: (0..nr_cpus)
                .map(|_| {
                    CachePadded(CpuSlot {
                        kept: AtomicU32::new(NONE),
                        recent: AtomicU32::new(NONE),
                        last_use: AtomicU64::new(0),
                        unstamped: AtomicU32::new(0),
                    })
                })
                .collect(),
            max_nr_cid: CachePadded(AtomicU32::new(0)),
            population: CachePadded(Population {
                threads: AtomicU32::new(0),
                nr_allowed: AtomicU32::new(0),
                allowed: (0..nr_cpus.div_ceil(64))
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            }),
            ownership: CachePadded(per_task::Ownership::new()),
        }
    }

    pub(crate) fn policy(&self) -> Policy {
        self.policy
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    pub(crate) fn nr_cpus(&self) -> u32 {
        self.nr_cpus as u32
    }

    pub(crate) fn expiry_ns(&self) -> u64 {
        self.expiry_ns
    }

    /// Index of `cpu` in the per-CPU table: CPU numbers beyond the table wrap around (never the
    /// case when the table covers every possible CPU).
    #[inline]
    fn cpu_index(&self, cpu: u32) -> usize {
        let c = cpu as usize;
        if c < self.nr_cpus {
            c
        } else {
            c % self.nr_cpus
        }
    }

    // ----------------------------------------------------------------------------------------
    // Acquire and release
    // ----------------------------------------------------------------------------------------

    /// Fast path: lease the CID that `cpu` keeps, if it has one and nobody holds it.
    ///
    /// Three atomic loads and one compare-and-swap; no clock needed.
    #[inline]
    pub(crate) fn take_kept(&self, cpu: u32) -> Option<Taken> {
        let c = self.cpu_index(cpu);
        let slot = &self.cpus[c];
        let k = slot.kept.load(Relaxed);
        if k == NONE {
            return None;
        }
        let word = &self.cids[k as usize];
        let mut s = word.load(Relaxed);
        loop {
            // (I3): the hint is only believed when the state word confirms it.
            if s & LEASED != 0 || keeper_of(s) != Some(c) {
                return None;
            }
            // Acquire: pairs with the Release of the previous holder's `release` (I5).
            match word.compare_exchange(s, leased(s), Acquire, Relaxed) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        if slot.recent.load(Relaxed) != k {
            slot.recent.store(k, Relaxed);
        }
        Some(Taken {
            cid: k,
            touch: c as u32,
            word: leased(s),
        })
    }

    /// Acquire a CID for a thread running on `cpu` at time `now`, following the policy.
    ///
    /// Returns `None` only if every CID below the capacity was seen leased: the caller waits
    /// and retries (the real front) or reports it (the deterministic front).
    pub(crate) fn try_acquire(&self, cpu: u32, now: u64) -> Option<Taken> {
        self.try_acquire_for(cpu, now, None)
    }

    /// [`try_acquire`](Self::try_acquire) for a thread whose per-task record is `task`
    /// (`Policy::PerTask` uses it; the other policies ignore it; `None`: an unregistered
    /// thread, which `PerTask` gives transient CIDs).
    pub(crate) fn try_acquire_for(
        &self,
        cpu: u32,
        now: u64,
        task: Option<&TaskCid>,
    ) -> Option<Taken> {
        if self.policy == Policy::PerTask {
            return self.acquire_per_task(cpu, task);
        }
        self.take_kept(cpu).or_else(|| self.acquire_slow(cpu, now))
    }

    /// Slow path: the CPU keeps no CID, or keeps one that is leased (its holder was preempted
    /// or migrated while another thread runs on this CPU).
    pub(crate) fn acquire_slow(&self, cpu: u32, now: u64) -> Option<Taken> {
        let c = self.cpu_index(cpu);
        let cap = self.capacity;
        match self.policy {
            Policy::PerTask => self.acquire_per_task(cpu, None),
            Policy::Legacy => {
                let t = self
                    .first_available(c, now, 0, cap)
                    .or_else(|| self.first_idle(c, now))?;
                self.max_nr_cid.fetch_max(t.cid + 1, Relaxed);
                Some(t)
            }
            Policy::CacheLocal => {
                let allowed = self.nr_cpus_allowed().min(cap);
                let bound = allowed.min(self.live_threads());
                // Shrink max_nr_cid when threads exited or the bound is lower, so that a later
                // expansion again hands out never-used (cache-cold for nobody) IDs in order.
                let mut max = self.max_nr_cid.load(Relaxed);
                while max > bound {
                    match self
                        .max_nr_cid
                        .compare_exchange(max, bound, Relaxed, Relaxed)
                    {
                        Ok(_) => max = bound,
                        Err(actual) => max = actual,
                    }
                }
                // 1. The CPU's most recent CID.
                let r = self.cpus[c].recent.load(Relaxed);
                if r != NONE
                    && r < max
                    && let Some(t) = self.try_take(r, c, now, false)
                {
                    return Some(t);
                }
                // 2. Expansion: the next never-used ID while below min(allowed CPUs, threads).
                while max < bound {
                    match self
                        .max_nr_cid
                        .compare_exchange(max, max + 1, Relaxed, Relaxed)
                    {
                        Ok(_) => {
                            if let Some(t) = self.try_take(max, c, now, false) {
                                return Some(t);
                            }
                            // Held by an exact lease, or kept by a CPU since a shrink: skip it.
                            max += 1;
                        }
                        Err(actual) => max = actual,
                    }
                }
                // 3. First available ID below the allowed CPUs; 4. overload: below capacity;
                // 5. take-over: any CID not leased.
                self.first_available(c, now, 0, allowed)
                    .or_else(|| self.first_available(c, now, allowed, cap))
                    .or_else(|| self.first_idle(c, now))
            }
        }
    }

    /// Lease a specific CID if nobody holds it right now (whoever keeps it keeps it).
    pub(crate) fn try_acquire_exact(&self, cid: u32) -> Option<Taken> {
        let word = self.cids.get(cid as usize)?;
        let mut s = word.load(Relaxed);
        loop {
            if s & LEASED != 0 {
                return None;
            }
            match word.compare_exchange(s, leased(s), Acquire, Relaxed) {
                Ok(_) => {
                    return Some(Taken {
                        cid,
                        touch: NONE,
                        word: leased(s),
                    });
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// Whether the release of `t` should stamp its CPU's `last_use` (and so needs the time):
    /// always for a lease of a kept CID with a stamp interval of 1; with an interval `n`, on
    /// one such release in `n` per CPU. The count is a plain load and store: a count lost to a
    /// race only moves a stamp.
    #[inline]
    pub(crate) fn stamp_due(&self, t: &Taken) -> bool {
        if t.touch == NONE {
            return false;
        }
        if self.stamp_interval == 1 {
            return true;
        }
        let u = &self.cpus[t.touch as usize].unstamped;
        let n = u.load(Relaxed) + 1;
        if n >= self.stamp_interval {
            u.store(0, Relaxed);
            true
        } else {
            u.store(n, Relaxed);
            false
        }
    }

    /// End a lease; `now` (on the caller's scale) when [`stamp_due`](Self::stamp_due) said
    /// so. `t` must come from this core and be released once.
    #[inline]
    pub(crate) fn release(&self, t: Taken, now: Option<u64>) {
        self.release_for(t, now, None)
    }

    /// [`release`](Self::release) by a thread whose per-task record is `task` (see
    /// [`try_acquire_for`](Self::try_acquire_for)).
    #[inline]
    pub(crate) fn release_for(&self, t: Taken, now: Option<u64>, task: Option<&TaskCid>) {
        if self.policy == Policy::PerTask {
            return self.release_per_task(t, task);
        }
        if t.touch != NONE
            && let Some(now) = now
        {
            // Written before the Release below, so whoever sees the CID free also sees this
            // use when it judges expiry (I4).
            let last = &self.cpus[t.touch as usize].last_use;
            if last.load(Relaxed) != now {
                last.store(now, Relaxed);
            }
        }
        // Release: everything the holder wrote under the lease happens-before the next
        // holder's Acquire compare-and-swap (I5). A plain store: while the CID is leased only
        // the holder writes its word (I1), so the word still is `t.word`.
        let w = &self.cids[t.cid as usize];
        debug_assert_eq!(w.load(Relaxed), t.word, "CID {} released twice", t.cid);
        w.store(t.word & !LEASED, Release);
    }

    /// Whether `cpu` last used its kept CID at least the expiry period before `now`.
    #[inline]
    fn expired(&self, cpu: usize, now: u64) -> bool {
        now.saturating_sub(self.cpus[cpu].last_use.load(Relaxed)) >= self.expiry_ns
    }

    /// Whether a CID in state `s` may be taken by a thread on CPU `c` at `now` (I2).
    #[inline]
    fn available(&self, s: u64, c: usize, now: u64) -> bool {
        if s & LEASED != 0 {
            return false;
        }
        match keeper_of(s) {
            None => true,
            Some(d) => d == c || self.expired(d, now),
        }
    }

    /// Whether a CID newly taken on CPU `c` should become that CPU's kept CID: yes, unless the
    /// CPU's hint names another CID the CPU really keeps (one leased by another thread of this
    /// CPU; this one is then transient). Returns the hint seen, for `adopt`'s compare-and-swap.
    fn keep_plan(&self, c: usize, k: u32) -> (bool, u32) {
        let h = self.cpus[c].kept.load(Relaxed);
        if h == NONE || h == k {
            return (true, h);
        }
        (keeper_of(self.cids[h as usize].load(Relaxed)) != Some(c), h)
    }

    /// Try to lease CID `k` for a thread on CPU `c`: if it is available (I2), or, with `steal`,
    /// merely not leased (kept by another CPU that used it recently).
    fn try_take(&self, k: u32, c: usize, now: u64, steal: bool) -> Option<Taken> {
        let word = &self.cids[k as usize];
        let (keep, hint) = self.keep_plan(c, k);
        let keeper = keep.then_some(c);
        // Acquire load: if this sees a release, it also sees that release's `last_use` (I4).
        let mut s = word.load(Acquire);
        let mut written;
        loop {
            let ok = if steal {
                s & LEASED == 0
            } else {
                self.available(s, c, now)
            };
            if !ok {
                return None;
            }
            written = with_keeper(leased(s), keeper);
            match word.compare_exchange(s, written, Acquire, Acquire) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        let slot = &self.cpus[c];
        let mut touch = NONE;
        if keep {
            let installed = hint == k
                || match slot.kept.compare_exchange(hint, k, Relaxed, Relaxed) {
                    Ok(_) => true,
                    // The hint already named `k` (our read of it was stale).
                    Err(actual) => actual == k,
                };
            if installed {
                touch = c as u32;
                // A newly kept CID starts its life now, whatever the stamp interval.
                if slot.last_use.load(Relaxed) != now {
                    slot.last_use.store(now, Relaxed);
                }
            } else {
                // Another thread of this CPU installed its own CID meanwhile: this one is
                // transient. Only the holder writes a leased word (I1), so a store suffices.
                written = with_keeper(written, None);
                word.store(written, Relaxed);
            }
        }
        if slot.recent.load(Relaxed) != k {
            slot.recent.store(k, Relaxed);
        }
        Some(Taken {
            cid: k,
            touch,
            word: written,
        })
    }

    /// Lowest CID in `lo..hi` available to CPU `c`, leased.
    fn first_available(&self, c: usize, now: u64, lo: u32, hi: u32) -> Option<Taken> {
        (lo..hi).find_map(|k| self.try_take(k, c, now, false))
    }

    /// Last resort: the lowest CID not leased, taken over from the CPU that keeps it even if
    /// that CPU used it recently. Only reached when every CID is leased or kept by other CPUs
    /// (capacity below the number of CPUs in use, or overload); without it a thread would wait
    /// for an expiry period although no CID is held.
    fn first_idle(&self, c: usize, now: u64) -> Option<Taken> {
        (0..self.capacity).find_map(|k| self.try_take(k, c, now, true))
    }

    // ----------------------------------------------------------------------------------------
    // Threads and CPUs
    // ----------------------------------------------------------------------------------------

    /// A thread starts using the allocator; `allowed` is its affinity (CPU numbers beyond the
    /// per-CPU table are ignored).
    pub(crate) fn thread_start(&self, allowed: impl IntoIterator<Item = u32>) {
        if self.policy == Policy::PerTask {
            // Counted under the ownership lock, with its affinity, as the kernel counts a new
            // user under `mm_cid.lock`: a concurrent update never sees the thread without
            // its CPUs (which could switch to per-CPU mode for nothing).
            let m = self.lock_ownership();
            let grew = self.add_allowed(allowed);
            self.population.threads.fetch_add(1, Relaxed);
            self.update_ownership_locked(m, grew);
            return;
        }
        self.population.threads.fetch_add(1, Relaxed);
        self.add_allowed(allowed);
    }

    /// A registered thread exits. Saturates at zero.
    #[cfg(test)]
    pub(crate) fn thread_exit(&self) {
        self.thread_exit_for(None)
    }

    /// A registered thread whose per-task record is `task` exits: `PerTask` frees the CID it
    /// owns and reconsiders the ownership mode. Saturates at zero.
    pub(crate) fn thread_exit_for(&self, task: Option<&TaskCid>) {
        if self.policy == Policy::PerTask
            && let Some(task) = task
        {
            self.drop_task_cid(task);
        }
        let m = (self.policy == Policy::PerTask).then(|| self.lock_ownership());
        let _ = self
            .population
            .threads
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        if let Some(m) = m {
            self.update_ownership_locked(m, false);
        }
    }

    /// OR CPUs into the allowed union; the count grows by the number of new bits. Returns
    /// whether it grew.
    pub(crate) fn add_allowed(&self, allowed: impl IntoIterator<Item = u32>) -> bool {
        let p = &self.population;
        let mut words = vec![0u64; p.allowed.len()];
        for cpu in allowed {
            if (cpu as usize) < self.nr_cpus {
                words[cpu as usize / 64] |= 1 << (cpu % 64);
            }
        }
        let mut grew = false;
        for (word, bits) in p.allowed.iter().zip(words) {
            if bits != 0 {
                let old = word.fetch_or(bits, Relaxed);
                let added = (bits & !old).count_ones();
                if added != 0 {
                    p.nr_allowed.fetch_add(added, Relaxed);
                    grew = true;
                }
            }
        }
        grew
    }

    /// Threads registered and not exited.
    pub(crate) fn live_threads(&self) -> u32 {
        self.population.threads.load(Relaxed)
    }

    /// Number of CPUs in the allowed union.
    pub(crate) fn nr_cpus_allowed(&self) -> u32 {
        self.population.nr_allowed.load(Relaxed)
    }

    // ----------------------------------------------------------------------------------------
    // Inspection and reset
    // ----------------------------------------------------------------------------------------

    /// `max_nr_cid` (see the field); `PerTask`: `max_cids`, the convergence bound.
    pub(crate) fn max_nr_cid(&self) -> u32 {
        if self.policy == Policy::PerTask {
            return self.max_cids();
        }
        self.max_nr_cid.load(Relaxed)
    }

    /// The CID `cpu` keeps at `now`: its hint, confirmed by the state word, and either leased
    /// or not expired.
    pub(crate) fn kept_cid(&self, cpu: u32, now: u64) -> Option<u32> {
        let c = self.cpu_index(cpu);
        let h = self.cpus[c].kept.load(Relaxed);
        if h == NONE {
            return None;
        }
        let s = self.cids[h as usize].load(Relaxed);
        // `PerTask` has no expiry: a CPU keeps its CID until the mode switches back.
        let live = s & LEASED != 0 || self.policy == Policy::PerTask || !self.expired(c, now);
        (keeper_of(s) == Some(c) && live).then_some(h)
    }

    /// The last CID handed out on `cpu`.
    pub(crate) fn recent_cid(&self, cpu: u32) -> Option<u32> {
        let r = self.cpus[self.cpu_index(cpu)].recent.load(Relaxed);
        (r != NONE).then_some(r)
    }

    /// The dense bound of live CIDs: `min(allowed CPUs, capacity, live threads)` (the
    /// expansion limit of `CacheLocal`). A snapshot.
    pub(crate) fn live_bound(&self) -> u32 {
        if self.policy == Policy::PerTask {
            return self.max_cids();
        }
        self.nr_cpus_allowed()
            .min(self.capacity)
            .min(self.live_threads())
    }

    /// Whether `cid` is *idle* at `now`: not leased, and kept by no CPU or by one whose use
    /// expired. An idle CID's slot is used by no thread until somebody acquires it again
    /// (false at or above the capacity). A snapshot.
    pub(crate) fn is_idle(&self, cid: u32, now: u64) -> bool {
        let Some(w) = self.cids.get(cid as usize) else {
            return false;
        };
        let s = w.load(Acquire);
        if self.policy == Policy::PerTask {
            // A CID a task owns is its thread's until the thread exits. One a CPU owns (per-CPU
            // mode, no expiry) goes to whichever thread runs there next, which may be none:
            // idle while not held, so that its slot can be adopted (costs locality, never
            // exactness).
            return s & LEASED == 0 && !task_owned(s);
        }
        s & LEASED == 0 && keeper_of(s).is_none_or(|d| self.expired(d, now))
    }

    /// Whether `cid` is leased right now (false for CIDs at or above the capacity).
    pub(crate) fn is_leased(&self, cid: u32) -> bool {
        self.cids
            .get(cid as usize)
            .is_some_and(|w| w.load(Relaxed) & LEASED != 0)
    }

    /// Forget everything: every CID free, no hint, no thread, no allowed CPU.
    ///
    /// Only correct when nothing else uses the core meanwhile and no lease taken before will be
    /// released into it: the real front calls it in a forked child, under its reset protocol.
    pub(crate) fn reset(&self) {
        for w in self.cids.iter() {
            w.store(0, Relaxed);
        }
        for slot in self.cpus.iter() {
            slot.kept.store(NONE, Relaxed);
            slot.recent.store(NONE, Relaxed);
            slot.last_use.store(0, Relaxed);
            slot.unstamped.store(0, Relaxed);
        }
        self.max_nr_cid.store(0, Relaxed);
        self.ownership.reset();
        let p = &self.population;
        p.threads.store(0, Relaxed);
        p.nr_allowed.store(0, Relaxed);
        for w in p.allowed.iter() {
            w.store(0, Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn core(policy: Policy, capacity: u32, cpus: u32) -> Core {
        let c = Core::new(policy, capacity, cpus, 100 * MS);
        for _ in 0..cpus {
            c.thread_start(0..cpus);
        }
        c
    }

    #[test]
    fn state_word_encoding() {
        let s = with_keeper(leased(0), Some(5));
        assert_eq!(keeper_of(s), Some(5));
        assert_eq!(s & LEASED, LEASED);
        assert_eq!(s >> 32, 1);
        assert_eq!(keeper_of(with_keeper(s, None)), None);
        let max = with_keeper(0, Some(MAX_CPUS as usize - 1));
        assert_eq!(keeper_of(max), Some(MAX_CPUS as usize - 1));
        // The sequence number wraps without touching the other fields.
        let top = with_keeper(!LEASED & !KEEPER_MASK, Some(3));
        assert_eq!(keeper_of(leased(top)), Some(3));
        assert_eq!(leased(top) >> 32, 0);
    }

    #[test]
    fn fast_path_reuses_the_kept_cid() {
        let c = core(Policy::CacheLocal, 4, 4);
        let t = c.try_acquire(2, 0).unwrap();
        assert_eq!((t.cid, t.touch), (0, 2));
        c.release(t, Some(MS));
        let t2 = c.take_kept(2).unwrap();
        assert_eq!((t2.cid, t2.touch), (0, 2));
        assert_eq!(
            t2.word >> 32,
            (t.word >> 32) + 1,
            "every lease bumps the sequence"
        );
        c.release(t2, Some(2 * MS));
        assert_eq!(c.kept_cid(2, 2 * MS), Some(0));
        assert_eq!(c.kept_cid(2, 102 * MS), None, "expired");
        // Expired, but nobody took it: the CPU gets it back on its fast path.
        let t3 = c.take_kept(2).unwrap();
        assert_eq!((t3.cid, t3.touch), (0, 2));
        c.release(t3, Some(300 * MS));
    }

    #[test]
    fn busy_kept_cid_gives_a_transient_one() {
        for policy in [Policy::CacheLocal, Policy::Legacy] {
            let c = core(policy, 4, 4);
            let a = c.try_acquire(1, 0).unwrap();
            let b = c.try_acquire(1, 0).unwrap();
            assert_ne!(a.cid, b.cid);
            assert_eq!(b.touch, NONE, "{policy:?}");
            c.release(b, Some(MS));
            assert!(!c.is_leased(b.cid));
            assert_eq!(c.kept_cid(1, MS), Some(a.cid));
            c.release(a, Some(MS));
            assert_eq!(c.kept_cid(1, MS), Some(a.cid));
        }
    }

    #[test]
    fn exact_lease_keeps_the_keeper() {
        let c = core(Policy::Legacy, 2, 2);
        let t = c.try_acquire(1, 0).unwrap();
        assert_eq!(c.try_acquire_exact(t.cid), None);
        c.release(t, Some(MS));
        let e = c.try_acquire_exact(t.cid).unwrap();
        assert_eq!(e.touch, NONE);
        assert_eq!(c.kept_cid(1, MS), Some(t.cid), "kept while leased");
        assert_eq!(c.try_acquire_exact(2), None, "beyond capacity");
        c.release(e, Some(500 * MS));
        // An exact lease is no use by the CPU: the CID still expires on schedule.
        assert_eq!(c.kept_cid(1, 101 * MS), None);
    }

    #[test]
    fn thread_population() {
        let c = Core::new(Policy::CacheLocal, 8, 8, MS);
        c.thread_start([0, 1, 99]);
        c.thread_start([1, 2]);
        assert_eq!(c.live_threads(), 2);
        assert_eq!(c.nr_cpus_allowed(), 3, "CPU 99 is beyond the table");
        c.thread_exit();
        c.thread_exit();
        c.thread_exit();
        assert_eq!(c.live_threads(), 0, "saturates");
        assert_eq!(c.nr_cpus_allowed(), 3, "the union never shrinks");
        c.reset();
        assert_eq!(c.nr_cpus_allowed(), 0);
    }
}
