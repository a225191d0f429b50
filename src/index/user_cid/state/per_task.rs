//! `Policy::PerTask`: the per-task CID ownership of Linux 6.19 (see the module documentation of
//! `user_cid` for the rules and their sources), on the state words of [`Core`].
//!
//! A CID's state word names its owner: a task (`TASK_OWNED`), a CPU (keeper CPU + 1) or
//! nobody. A task remembers the CID it owns in its [`TaskCid`] record, with the exact state word
//! the CID has while the task does not hold it. Every change of a state word other than the
//! holder's own release bumps the sequence number, so a record matches its word exactly as
//! long as nobody else touched the CID: a record that no longer matches is stale (the CID was
//! dropped by a mode switch, taken over or leased exactly) and is forgotten.
//!
//! Exclusivity is not this module's business: it is (I1) as for every policy. Every take is a
//! compare-and-swap from a word whose leased bit is clear, and only the holder writes a leased
//! word. The mode, `max_cids` and the records only decide *which* CID a thread gets.

use std::cell::Cell;

use super::super::sync::{AtomicU32, Ordering::*, wait_a_little};
use super::{Core, KEEPER_MASK, LEASED, NONE, SEQ_ONE, Taken, keeper_of, leased, task_owned};

/// Mode bit: CIDs are owned by CPUs (tasks borrow the CID of the CPU they run on). Clear: CIDs
/// are owned by tasks. The kernel's `MM_CID_ONCPU` in `mm_cid.mode`.
pub(super) const ONCPU: u32 = 1;
/// Mode bit: a switch between the two modes is in progress. CIDs handed out now are temporary
/// and dropped when released (the kernel's `MM_CID_TRANSIT`, dropped on schedule-out).
pub(super) const TRANSIT: u32 = 2;
/// Mode bit: a thread is updating the mode (the kernel serializes with `mm_cid.mutex`).
const LOCK: u32 = 4;

/// The per-process ownership state (the kernel's `struct mm_mm_cid`).
#[derive(Debug)]
pub(crate) struct Ownership {
    /// `ONCPU | TRANSIT | LOCK` bits.
    mode: AtomicU32,
    /// `min(opt + opt / 4, capacity)` with `opt = min(allowed CPUs, threads)`: CIDs converge
    /// below it; the switch to per-CPU mode happens when the threads exceed it.
    max_cids: AtomicU32,
    /// The switch-back threshold recorded when per-CPU mode was entered (0 in per-task mode).
    /// Written under `LOCK`.
    pcpu_thrs: AtomicU32,
}

impl Ownership {
    pub(super) fn new() -> Self {
        Ownership {
            mode: AtomicU32::new(0),
            max_cids: AtomicU32::new(0),
            pcpu_thrs: AtomicU32::new(0),
        }
    }

    pub(super) fn reset(&self) {
        self.mode.store(0, Relaxed);
        self.max_cids.store(0, Relaxed);
        self.pcpu_thrs.store(0, Relaxed);
    }
}

/// A thread's record of the CID it owns under `Policy::PerTask` (the kernel's
/// `task_struct::mm_cid`). Private to its thread: not `Sync`.
#[derive(Debug)]
pub(crate) struct TaskCid {
    /// The CID the thread owns, or [`NONE`].
    cid: Cell<u32>,
    /// The state word of `cid` while the thread does not hold it (the thread holds it when
    /// the word is this value with the leased bit set).
    word: Cell<u64>,
}

impl Default for TaskCid {
    fn default() -> Self {
        TaskCid::new()
    }
}

impl TaskCid {
    /// A record owning nothing.
    pub(crate) const fn new() -> Self {
        TaskCid {
            cid: Cell::new(NONE),
            word: Cell::new(0),
        }
    }

    fn set(&self, cid: u32, word: u64) {
        self.cid.set(cid);
        self.word.set(word & !LEASED);
    }

    fn clear(&self) {
        self.cid.set(NONE);
    }
}

/// Owner field for a CID a thread on CPU `c` keeps (the CPU-owned state).
#[inline]
fn cpu_owner(c: usize) -> u64 {
    (c as u64 + 1) << super::KEEPER_SHIFT
}

/// `s` with owner `owner` (a keeper-field value: 0, [`cpu_owner`] or `TASK_OWNED`).
#[inline]
fn with_owner(s: u64, owner: u64) -> u64 {
    (s & !KEEPER_MASK) | owner
}

/// The free word after dropping a CID in state `s` (not leased): no owner, sequence bumped.
#[inline]
fn dropped(s: u64) -> u64 {
    with_owner(s.wrapping_add(SEQ_ONE), 0) & !LEASED
}

impl Core {
    /// `max_cids`, at least 1 (an unregistered thread may acquire before any registration).
    pub(crate) fn max_cids(&self) -> u32 {
        self.ownership
            .max_cids
            .load(Relaxed)
            .clamp(1, self.capacity)
    }

    /// Whether CIDs are owned by CPUs now (`PerTask` past the limit).
    pub(crate) fn per_cpu_mode(&self) -> bool {
        self.ownership.mode.load(Relaxed) & ONCPU != 0
    }

    /// The switch-back threshold recorded at the switch to per-CPU mode (`None` in per-task
    /// mode).
    pub(crate) fn switch_back_threshold(&self) -> Option<u32> {
        let t = self.ownership.pcpu_thrs.load(Relaxed);
        (t != 0).then_some(t)
    }

    /// Whether CID `k` is owned by a task (a snapshot).
    #[cfg(all(test, loom))]
    pub(crate) fn is_task_owned(&self, k: u32) -> bool {
        self.cids
            .get(k as usize)
            .is_some_and(|w| task_owned(w.load(Relaxed)))
    }

    /// The CID `task` owns, if its record still matches the CID's word (held or not).
    pub(crate) fn owned_by(&self, task: &TaskCid) -> Option<u32> {
        let k = task.cid.get();
        if k == NONE || k >= self.capacity {
            return None;
        }
        let s = self.cids[k as usize].load(Relaxed);
        let w = task.word.get();
        (s == w || s == w | LEASED).then_some(k)
    }

    /// Acquire under `PerTask`: from the task's own CID in per-task mode, from the CPU's in
    /// per-CPU mode.
    pub(super) fn acquire_per_task(&self, cpu: u32, task: Option<&TaskCid>) -> Option<Taken> {
        let c = self.cpu_index(cpu);
        let mode = self.ownership.mode.load(Acquire);
        let max = self.max_cids();
        if mode & ONCPU == 0 {
            self.cid_from_task(c, task, mode, max)
        } else {
            self.cid_from_cpu(c, task, mode, max)
        }
    }

    /// Lease the task's own CID if its record still matches (kernel fast path: the task's
    /// CID is used as is). `Err(true)`: the task holds it already (nested lease); `Err(false)`:
    /// no usable record (forgotten if stale).
    fn lease_own(&self, task: &TaskCid) -> Result<Taken, bool> {
        let k = task.cid.get();
        if k == NONE || k >= self.capacity {
            return Err(false);
        }
        let expected = task.word.get();
        let word = &self.cids[k as usize];
        match word.compare_exchange(expected, leased(expected), Acquire, Relaxed) {
            Ok(_) => {
                let written = leased(expected);
                task.set(k, written);
                Ok(Taken {
                    cid: k,
                    touch: NONE,
                    word: written,
                })
            }
            Err(actual) if actual == expected | LEASED => Err(true),
            Err(_) => {
                task.clear();
                Err(false)
            }
        }
    }

    /// Take CID `k` if its word is free (no owner, not leased), writing owner `owner`.
    fn take_free(&self, k: u32, owner: u64) -> Option<Taken> {
        let word = &self.cids[k as usize];
        let mut s = word.load(Acquire);
        loop {
            if s & (LEASED | KEEPER_MASK) != 0 {
                return None;
            }
            let written = with_owner(leased(s), owner);
            match word.compare_exchange(s, written, Acquire, Acquire) {
                Ok(_) => {
                    return Some(Taken {
                        cid: k,
                        touch: NONE,
                        word: written,
                    });
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// The kernel's `mm_get_cid`: the first free CID below `max_cids`, else below the
    /// capacity (the kernel spins below the possible CPUs); then, as every user-space policy,
    /// take-over of the first CID not leased (its owner loses it), transient.
    fn get_cid(&self, max: u32, owner: u64) -> Option<Taken> {
        (0..max)
            .chain(max..self.capacity)
            .find_map(|k| self.take_free(k, owner))
            .or_else(|| self.take_over())
    }

    /// Last resort: the first CID not leased, whoever owns it, as a transient lease.
    fn take_over(&self) -> Option<Taken> {
        (0..self.capacity).find_map(|k| {
            let word = &self.cids[k as usize];
            let mut s = word.load(Acquire);
            loop {
                if s & LEASED != 0 {
                    return None;
                }
                let written = with_owner(leased(s.wrapping_add(SEQ_ONE)), 0);
                match word.compare_exchange(s, written, Acquire, Acquire) {
                    Ok(_) => {
                        return Some(Taken {
                            cid: k,
                            touch: NONE,
                            word: written,
                        });
                    }
                    Err(actual) => s = actual,
                }
            }
        })
    }

    /// Drop CID `k` if its word still is `s` (not leased): owner cleared, sequence bumped.
    fn drop_if(&self, k: u32, s: u64) -> bool {
        s & LEASED == 0
            && self.cids[k as usize]
                .compare_exchange(s, dropped(s), Release, Relaxed)
                .is_ok()
    }

    /// Drop a CID this thread holds (lease `t`): its word goes free. The fixup walk may have
    /// marked the word meanwhile (owner cleared): dropped all the same.
    fn drop_held(&self, t: Taken) {
        let w = &self.cids[t.cid as usize];
        if let Err(actual) = w.compare_exchange(t.word, dropped(t.word), Release, Relaxed) {
            // Marked by the walk: only the holder writes the word from now on.
            w.store(dropped(actual), Release);
        }
    }

    /// The CID CPU `c` keeps (its hint confirmed by the word) and that word.
    fn cpu_cid(&self, c: usize) -> Option<(u32, u64)> {
        let h = self.cpus[c].kept.load(Relaxed);
        if h == NONE {
            return None;
        }
        let s = self.cids[h as usize].load(Acquire);
        (keeper_of(s) == Some(c)).then_some((h, s))
    }

    /// Per-task mode (the kernel's `mm_cid_from_task`).
    fn cid_from_task(
        &self,
        c: usize,
        task: Option<&TaskCid>,
        mode: u32,
        max: u32,
    ) -> Option<Taken> {
        let transit = mode & TRANSIT != 0;
        let mut nested = false;
        if let Some(task) = task {
            match self.lease_own(task) {
                Ok(t) if t.cid < max => return Some(t),
                Ok(t) => {
                    // Converge into the optimal space: a free CID below max_cids replaces
                    // the task's; otherwise it keeps the one it has.
                    if let Some(n) = (0..max).find_map(|k| self.take_free(k, super::TASK_OWNED)) {
                        self.drop_held(t);
                        task.set(n.cid, n.word);
                        return Some(n);
                    }
                    return Some(t);
                }
                Err(held) => nested = held,
            }
        }
        let owner = if transit || nested || task.is_none() {
            0
        } else {
            super::TASK_OWNED
        };
        // A CID the CPU still owns from per-CPU mode (a switch back not yet fixed up, or the
        // fixup walk raced this CPU's last release): the task takes it over, or drops it if it
        // has its own.
        if let Some((k, s)) = self.cpu_cid(c)
            && s & LEASED == 0
        {
            if nested {
                self.drop_if(k, s);
            } else {
                let written = with_owner(leased(s), owner);
                if self.cids[k as usize]
                    .compare_exchange(s, written, Acquire, Relaxed)
                    .is_ok()
                {
                    let t = Taken {
                        cid: k,
                        touch: NONE,
                        word: written,
                    };
                    if owner != 0
                        && let Some(task) = task
                    {
                        task.set(k, written);
                    }
                    return Some(t);
                }
            }
        }
        let t = self.get_cid(max, owner)?;
        if task_owned(t.word)
            && let Some(task) = task
        {
            task.set(t.cid, t.word);
        }
        Some(t)
    }

    /// Per-CPU mode (the kernel's `mm_cid_from_cpu`): the task borrows its CPU's CID.
    fn cid_from_cpu(&self, c: usize, task: Option<&TaskCid>, mode: u32, max: u32) -> Option<Taken> {
        let kept = self.take_kept(c as u32);
        let cpu_has = kept.is_some() || self.cpu_cid(c).is_some();
        // A CID the task still owns from per-task mode: handed over to the CPU if the CPU has
        // none, dropped otherwise.
        if let Some(task) = task {
            let k = task.cid.get();
            if k != NONE && k < self.capacity {
                let s = task.word.get();
                task.clear();
                if cpu_has || mode & TRANSIT != 0 {
                    self.drop_if(k, s);
                } else {
                    // (`kept` is `None` here.)
                    let written = with_owner(leased(s), cpu_owner(c));
                    if self.cids[k as usize]
                        .compare_exchange(s, written, Acquire, Relaxed)
                        .is_ok()
                    {
                        self.cpus[c].kept.store(k, Relaxed);
                        return Some(Taken {
                            cid: k,
                            touch: NONE,
                            word: written,
                        });
                    }
                }
            }
        }
        if let Some(t) = kept {
            if t.cid < max {
                return Some(t.untouched());
            }
            // Converge: a free CID below max_cids becomes the CPU's; the old one is dropped.
            if let Some(n) = (0..max).find_map(|k| self.take_free(k, cpu_owner(c))) {
                self.drop_held(t);
                self.cpus[c].kept.store(n.cid, Relaxed);
                return Some(n);
            }
            return Some(t.untouched());
        }
        // Nothing: a new CID, owned by the CPU unless the CPU's own is held by another thread
        // (then transient) or a switch is in progress (temporary, dropped on release).
        let owner = if cpu_has || mode & TRANSIT != 0 {
            0
        } else {
            cpu_owner(c)
        };
        let t = self.get_cid(max, owner)?;
        if keeper_of(t.word) == Some(c) {
            self.cpus[c].kept.store(t.cid, Relaxed);
        }
        Some(t)
    }

    /// Release under `PerTask`. A CID whose owner kind no longer matches the mode (the mode
    /// switched while it was held: the kernel's transit CID, dropped on schedule-out), or a
    /// task-owned CID released by a thread whose record does not name it (an exact lease, a
    /// thread without a record), is dropped; otherwise its owner keeps it.
    pub(super) fn release_per_task(&self, t: Taken, task: Option<&TaskCid>) {
        let w = &self.cids[t.cid as usize];
        let cur = w.load(Relaxed);
        debug_assert!(
            cur == t.word || cur == with_owner(t.word.wrapping_add(SEQ_ONE), 0),
            "CID {} released twice",
            t.cid
        );
        let mode = self.ownership.mode.load(Acquire);
        let s = t.word & !LEASED;
        let keep = if task_owned(s) {
            mode & ONCPU == 0 && task.is_some_and(|r| r.cid.get() == t.cid && r.word.get() == s)
        } else if keeper_of(s).is_some() {
            mode & ONCPU != 0
        } else {
            true // free already: a transient lease
        };
        // A compare-and-swap, not a store: the fixup walk of a mode switch may have marked the
        // word while it was held (owner cleared, the kernel's transit CID). Then it is dropped.
        let marked = keep && w.compare_exchange(t.word, s, Release, Relaxed).is_err();
        if !keep || marked {
            if task_owned(s)
                && let Some(r) = task
                && r.cid.get() == t.cid
            {
                r.clear();
            }
            self.drop_held(t);
        }
    }

    /// A thread exits: the CID it owns goes back to the pool (the kernel's
    /// `sched_mm_cid_exit`). A CID it still holds (a lease outliving the thread's record) is
    /// dropped by that lease's release instead.
    pub(super) fn drop_task_cid(&self, task: &TaskCid) {
        let k = task.cid.get();
        if k != NONE && k < self.capacity {
            self.drop_if(k, task.word.get());
        }
        task.clear();
    }

    /// Take the ownership lock (the kernel's `mm_cid.mutex` and `mm_cid.lock`): thread
    /// starts, exits and mode switches are serialized. Returns the mode bits without `LOCK`.
    pub(super) fn lock_ownership(&self) -> u32 {
        let o = &self.ownership;
        let mut m = o.mode.load(Relaxed);
        loop {
            if m & LOCK != 0 {
                wait_a_little();
                m = o.mode.load(Relaxed);
                continue;
            }
            match o.mode.compare_exchange(m, m | LOCK, Acquire, Relaxed) {
                Ok(_) => return m,
                Err(actual) => m = actual,
            }
        }
    }

    /// The kernel's `mm_update_max_cids` and its fixups, on thread start and exit (and
    /// affinity growth, which here only happens at a thread's start):
    ///
    /// * `max_cids = min(opt + opt / 4, capacity)`, `opt = min(allowed CPUs, threads)`;
    /// * per-task mode: when the threads exceed `max_cids`, record the switch-back threshold
    ///   `max(min(opt - opt / 4, capacity / 2), 1)` and switch to per-CPU mode;
    /// * per-CPU mode: a wider affinity recomputes the threshold; when the threads fall below
    ///   it, switch back to per-task mode.
    ///
    /// A switch sets the new mode with `TRANSIT`, drops every CID the old kind of owner keeps
    /// and nobody holds (held ones are dropped by their release, which sees the new mode), then
    /// clears `TRANSIT`. Serialized by the `LOCK` bit, which the caller took with
    /// [`lock_ownership`](Self::lock_ownership) (returning the mode `m` it saw) and which
    /// this releases.
    pub(super) fn update_ownership_locked(&self, mut m: u32, affinity_grew: bool) {
        let o = &self.ownership;
        let users = self.live_threads();
        let cap = self.capacity;
        let opt = self.nr_cpus_allowed().min(cap).min(users);
        let max = (opt + opt / 4).min(cap);
        o.max_cids.store(max, Relaxed);
        let on_cpu = m & ONCPU != 0;
        let calc_thrs = || (opt - opt / 4).min(cap / 2).max(1);
        let mut thrs = o.pcpu_thrs.load(Relaxed);
        if !on_cpu {
            if users > max {
                thrs = calc_thrs();
            }
        } else {
            if affinity_grew {
                thrs = calc_thrs();
            }
            if users < thrs {
                thrs = 0;
            }
        }
        o.pcpu_thrs.store(thrs, Relaxed);
        let to_cpu = thrs != 0;
        if to_cpu != on_cpu {
            let mode = if to_cpu { ONCPU } else { 0 };
            o.mode.store(mode | TRANSIT | LOCK, Release);
            let old_kind = |s: u64| {
                if to_cpu {
                    task_owned(s)
                } else {
                    keeper_of(s).is_some()
                }
            };
            for k in 0..cap {
                let w = &self.cids[k as usize];
                let mut s = w.load(Acquire);
                while old_kind(s) {
                    // Free: dropped into the pool. Held: marked (owner cleared, sequence
                    // bumped), so that its release drops it (the kernel hands it to the running
                    // task as a transit CID, dropped on schedule-out).
                    let new = if s & LEASED == 0 {
                        dropped(s)
                    } else {
                        with_owner(s.wrapping_add(SEQ_ONE), 0)
                    };
                    match w.compare_exchange(s, new, AcqRel, Acquire) {
                        Ok(_) => break,
                        Err(actual) => s = actual,
                    }
                }
            }
            m = mode;
        }
        // Clears TRANSIT and LOCK.
        o.mode.store(m & ONCPU, Release);
    }
}

impl Taken {
    /// A lease of a CPU's kept CID under `PerTask`: no use-time stamp (no expiry).
    fn untouched(mut self) -> Taken {
        self.touch = NONE;
        self
    }
}
