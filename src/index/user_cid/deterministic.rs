//! The deterministic front: the same [`Core`] driven by an explicit virtual clock, explicit CPU
//! numbers and explicit thread identities, for tests and for simulators that replay schedules.

use std::collections::BTreeMap;
use std::time::Duration;

use super::state::{Core, Taken, TaskCid};
use super::{DEFAULT_EXPIRY, Policy};

/// Configuration of a [`DeterministicAllocator`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeterministicConfig {
    /// Allocation policy.
    pub policy: Policy,
    /// CPU numbers are `0..cpus`.
    pub cpus: u32,
    /// Number of CIDs (slots); default `cpus`.
    pub capacity: u32,
    /// Expiry period of a CPU's kept CID; default 100 ms.
    pub expiry: Duration,
}

impl DeterministicConfig {
    /// `policy` on a machine with CPUs `0..cpus`, capacity `cpus`, expiry 100 ms.
    pub fn new(policy: Policy, cpus: u32) -> Self {
        DeterministicConfig {
            policy,
            cpus,
            capacity: cpus,
            expiry: DEFAULT_EXPIRY,
        }
    }

    /// Set the capacity (number of CIDs).
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

#[derive(Debug)]
struct VirtualThread {
    allowed: Vec<u32>,
    held: Vec<Taken>,
    /// The CID the thread owns under [`Policy::PerTask`].
    task: TaskCid,
}

/// A CID allocator replaying an explicit schedule through the same state machine as
/// [`CidAllocator`](super::CidAllocator).
///
/// Time is virtual: a [`Duration`] since an arbitrary origin, never going backwards. Threads are
/// numbered by the caller. Operations happen one at a time in call order (interleavings of real
/// threads are modelled by the order of calls). Misuse (an unknown thread, a CPU out of range,
/// time going backwards, a thread running outside its allowed CPUs, releasing a CID the thread
/// does not hold, exiting while holding one)
/// panics: it is a bug in the schedule.
///
/// ```
/// use std::time::Duration;
/// use percid::index::user_cid::{DeterministicAllocator, DeterministicConfig, Policy};
///
/// let ms = Duration::from_millis;
/// let mut a = DeterministicAllocator::new(DeterministicConfig::new(Policy::CacheLocal, 4));
/// a.thread_start(0, &[0]);
/// a.thread_start(1, &[1]);
/// assert_eq!(a.acquire_at(0, 0, ms(0)), Some(0));
/// a.release_at(0, 0, ms(1));
/// assert_eq!(a.acquire_at(1, 1, ms(200)), Some(1)); // expansion: 1 < min(2 CPUs, 2 threads)
/// a.release_at(1, 1, ms(201));
/// assert_eq!(a.kept_cid(0), None); // CPU 0's CID expired...
/// assert_eq!(a.acquire_at(0, 0, ms(400)), Some(0)); // ...but its recent CID is still free
/// ```
#[derive(Debug)]
pub struct DeterministicAllocator {
    core: Core,
    threads: BTreeMap<u32, VirtualThread>,
    now: u64,
}

impl DeterministicAllocator {
    /// A new allocator at virtual time 0, with no thread.
    ///
    /// # Panics
    ///
    /// If `cpus` or `capacity` is 0 or above 2^31 - 2.
    pub fn new(config: DeterministicConfig) -> Self {
        let expiry_ns = u64::try_from(config.expiry.as_nanos()).unwrap_or(u64::MAX);
        DeterministicAllocator {
            core: Core::new(config.policy, config.capacity, config.cpus, expiry_ns),
            threads: BTreeMap::new(),
            now: 0,
        }
    }

    fn tick(&mut self, now: Duration) -> u64 {
        let now = u64::try_from(now.as_nanos()).expect("virtual time beyond u64 nanoseconds");
        assert!(
            now >= self.now,
            "virtual time went backwards: {now} ns after {} ns",
            self.now
        );
        self.now = now;
        now
    }

    fn check_cpu(&self, cpu: u32) {
        assert!(
            cpu < self.core.nr_cpus(),
            "CPU {cpu} out of range 0..{}",
            self.core.nr_cpus()
        );
    }

    /// Thread `thread` starts, allowed to run on `allowed_cpus` (ORed into the allowed union).
    pub fn thread_start(&mut self, thread: u32, allowed_cpus: &[u32]) {
        for &cpu in allowed_cpus {
            self.check_cpu(cpu);
        }
        assert!(
            !self.threads.contains_key(&thread),
            "thread {thread} started twice"
        );
        self.threads.insert(
            thread,
            VirtualThread {
                allowed: allowed_cpus.to_vec(),
                held: Vec::new(),
                task: TaskCid::new(),
            },
        );
        self.core.thread_start(allowed_cpus.iter().copied());
    }

    /// Thread `thread` exits. It must hold no CID.
    pub fn thread_exit(&mut self, thread: u32) {
        let t = self
            .threads
            .remove(&thread)
            .unwrap_or_else(|| panic!("thread {thread} is not running"));
        assert!(
            t.held.is_empty(),
            "thread {thread} exits holding CIDs {:?}",
            t.held.iter().map(|t| t.cid).collect::<Vec<_>>()
        );
        self.core.thread_exit_for(Some(&t.task));
    }

    /// Thread `thread`, running on `cpu` at `now`, acquires a CID. `None` when every CID is
    /// leased (the real allocator would wait for a release). `cpu` must be one of the thread's
    /// allowed CPUs.
    pub fn acquire_at(&mut self, thread: u32, cpu: u32, now: Duration) -> Option<u32> {
        self.check_cpu(cpu);
        let t = self
            .threads
            .get(&thread)
            .unwrap_or_else(|| panic!("thread {thread} is not running"));
        assert!(
            t.allowed.contains(&cpu),
            "thread {thread} runs on CPU {cpu} outside its allowed CPUs {:?}",
            t.allowed
        );
        let now = self.tick(now);
        let t = self.threads.get_mut(&thread).unwrap();
        let taken = self.core.try_acquire_for(cpu, now, Some(&t.task))?;
        t.held.push(taken);
        Some(taken.cid)
    }

    /// Thread `thread` leases exactly `cid` at `now` if nobody holds it (see
    /// [`CidAllocator::try_acquire_exact`](super::CidAllocator::try_acquire_exact)).
    pub fn try_acquire_exact_at(&mut self, thread: u32, cid: u32, now: Duration) -> bool {
        assert!(
            self.threads.contains_key(&thread),
            "thread {thread} is not running"
        );
        self.tick(now);
        match self.core.try_acquire_exact(cid) {
            Some(taken) => {
                self.threads.get_mut(&thread).unwrap().held.push(taken);
                true
            }
            None => false,
        }
    }

    /// Thread `thread` releases `cid` at `now`.
    pub fn release_at(&mut self, thread: u32, cid: u32, now: Duration) {
        let now = self.tick(now);
        let t = self
            .threads
            .get_mut(&thread)
            .unwrap_or_else(|| panic!("thread {thread} is not running"));
        let i = t
            .held
            .iter()
            .position(|t| t.cid == cid)
            .unwrap_or_else(|| panic!("thread {thread} does not hold CID {cid}"));
        let taken = t.held.remove(i);
        self.core.release_for(taken, Some(now), Some(&t.task));
    }

    /// Move the virtual clock to `now` without doing anything (affects [`kept_cid`]).
    ///
    /// [`kept_cid`]: Self::kept_cid
    pub fn advance_to(&mut self, now: Duration) {
        self.tick(now);
    }

    /// The current virtual time (the latest time given).
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// The allocation policy.
    pub fn policy(&self) -> Policy {
        self.core.policy()
    }

    /// Number of CIDs.
    pub fn capacity(&self) -> u32 {
        self.core.capacity()
    }

    /// `CacheLocal`: the expansion counter. `Legacy`: one more than the highest CID a slow path
    /// handed out. `PerTask`: `max_cids`, the bound CIDs converge below.
    pub fn max_nr_cid(&self) -> u32 {
        self.core.max_nr_cid()
    }

    /// The CID `cpu` keeps at the current virtual time (`None` once expired or taken over).
    pub fn kept_cid(&self, cpu: u32) -> Option<u32> {
        self.check_cpu(cpu);
        self.core.kept_cid(cpu, self.now)
    }

    /// `PerTask`: whether the CPUs own the CIDs now (the threads exceeded `max_cids`); false
    /// in per-task mode and for the other policies.
    pub fn per_cpu_mode(&self) -> bool {
        self.core.policy() == Policy::PerTask && self.core.per_cpu_mode()
    }

    /// `PerTask` in per-CPU mode: the number of threads below which it switches back to
    /// per-task mode, recorded at the switch (and recomputed when the allowed CPUs grow).
    pub fn switch_back_threshold(&self) -> Option<u32> {
        self.core.switch_back_threshold()
    }

    /// `PerTask`: the CID `thread` owns now (held or not). `None` for a thread that owns none
    /// (in per-CPU mode, or before its first acquire) and for the other policies.
    pub fn owned_cid(&self, thread: u32) -> Option<u32> {
        self.threads
            .get(&thread)
            .and_then(|t| self.core.owned_by(&t.task))
    }

    /// The last CID handed out on `cpu`.
    pub fn recent_cid(&self, cpu: u32) -> Option<u32> {
        self.check_cpu(cpu);
        self.core.recent_cid(cpu)
    }

    /// Threads started and not exited.
    pub fn live_threads(&self) -> u32 {
        self.core.live_threads()
    }

    /// Number of CPUs in the allowed union.
    pub fn nr_cpus_allowed(&self) -> u32 {
        self.core.nr_cpus_allowed()
    }

    /// The thread holding `cid`, if any.
    pub fn holder(&self, cid: u32) -> Option<u32> {
        self.threads
            .iter()
            .find(|(_, t)| t.held.iter().any(|t| t.cid == cid))
            .map(|(&id, _)| id)
    }

    /// CIDs `thread` holds, in acquisition order of the remaining ones (empty for an unknown
    /// thread).
    pub fn held_by(&self, thread: u32) -> Vec<u32> {
        self.threads
            .get(&thread)
            .map(|t| t.held.iter().map(|t| t.cid).collect())
            .unwrap_or_default()
    }
}
