//! Model checks of the allocation core with `loom`.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --lib index::user_cid::loom_tests`
//! Two-thread models are explored exhaustively, the three-thread one with at most 2
//! preemptions per execution and the `PerTask` mode-switch models (a thread start or exit,
//! with its fixup walk, racing leases) with at most 3 (`LOOM_MAX_PREEMPTIONS=n` sets the bound
//! for all).
//!
//! Each scenario has its threads lease CIDs and increment a plain counter in the leased slot
//! through a `loom` cell, which reports any two accesses not ordered by happens-before. So every
//! scenario checks exclusivity (I1) and visibility (I5) in every explored interleaving, plus
//! the assertions it states.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::Policy;
use super::state::{Core, Taken};

const MS: u64 = 1_000_000;

struct Fixture {
    core: Core,
    slots: Vec<UnsafeCell<u64>>,
}

impl Fixture {
    fn new(policy: Policy, capacity: u32, cpus: u32, threads: u32) -> Arc<Self> {
        let core = Core::new(policy, capacity, cpus, 100 * MS);
        for _ in 0..threads {
            core.thread_start(0..cpus);
        }
        Arc::new(Fixture {
            core,
            slots: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    /// Acquire (waiting like the real front), touch the slot, return the lease.
    fn acquire(&self, cpu: u32, now: u64) -> Taken {
        let t = loop {
            if let Some(t) = self.core.try_acquire(cpu, now) {
                break t;
            }
            thread::yield_now();
        };
        self.touch(t);
        t
    }

    fn touch(&self, t: Taken) {
        assert!(t.cid < self.core.capacity());
        self.slots[t.cid as usize].with_mut(|p| {
            // SAFETY: `p` points into a live cell of `self.slots`; the lease on `t.cid` is the
            // exclusion being checked (loom fails the model on any unordered access).
            unsafe { *p += 1 }
        });
    }

    fn total(&self) -> u64 {
        self.slots
            .iter()
            .map(|c| {
                c.with(|p| {
                    // SAFETY: called after every thread was joined: no concurrent access.
                    unsafe { *p }
                })
            })
            .sum()
    }

    fn none_leased(&self) -> bool {
        (0..self.core.capacity()).all(|k| !self.core.is_leased(k))
    }
}

/// Exhaustive exploration (no preemption bound) unless `LOOM_MAX_PREEMPTIONS` is set: the
/// two-thread models are small enough.
fn model<F: Fn() + Send + Sync + 'static>(f: F) {
    loom::model::Builder::new().check(f);
}

/// Three-thread models: bounded to `bound` preemptions per execution unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise (exhaustive exploration takes hours).
fn model_bounded<F: Fn() + Send + Sync + 'static>(bound: usize, f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    b.check(f);
}

/// Two threads on two CPUs compete for a single CID: one waits for the other's release.
#[test]
fn one_cid_two_threads() {
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        model(move || {
            let f = Fixture::new(policy, 1, 2, 2);
            let g = f.clone();
            let h = thread::spawn(move || {
                let t = g.acquire(1, 0);
                g.core.release(t, Some(MS));
            });
            let t = f.acquire(0, 0);
            f.core.release(t, Some(MS));
            h.join().unwrap();
            assert_eq!(f.total(), 2);
            assert!(f.none_leased());
        });
    }
}

/// CPU 0's kept CID has expired: CPU 0 retakes it on its fast path while CPU 1's slow path
/// may take it over as expired, concurrently; then both lease again.
#[test]
fn fast_path_races_expiry_takeover() {
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        model(move || {
            let f = Fixture::new(policy, 2, 2, 2);
            let t = f.core.try_acquire(0, 0).unwrap();
            assert_eq!((t.cid, t.touch), (0, 0));
            f.core.release(t, Some(0));
            let g = f.clone();
            let h = thread::spawn(move || {
                let t = g.acquire(1, 200 * MS);
                g.core.release(t, Some(200 * MS));
                let t = g.acquire(1, 200 * MS);
                g.core.release(t, Some(200 * MS));
            });
            let t = f.acquire(0, 200 * MS);
            f.core.release(t, Some(200 * MS));
            h.join().unwrap();
            assert_eq!(f.total(), 3);
            assert!(f.none_leased());
            // Whatever happened, CPU 0 keeps a CID or got its old one taken over by CPU 1.
            let k0 = f.core.kept_cid(0, 200 * MS);
            let k1 = f.core.kept_cid(1, 200 * MS);
            assert!(k1.is_some());
            assert_ne!(k0, k1);
        });
    }
}

/// An exact lease competes with a fast path and a slow path for the same CID.
#[test]
fn exact_lease_races_acquire() {
    model(|| {
        let f = Fixture::new(Policy::Legacy, 2, 2, 2);
        let t = f.core.try_acquire(0, 0).unwrap();
        f.core.release(t, Some(0));
        let g = f.clone();
        let h = thread::spawn(move || {
            if let Some(t) = g.core.try_acquire_exact(0) {
                assert_eq!(t.touch, super::state::NONE);
                g.touch(t);
                g.core.release(t, Some(0));
            }
        });
        let a = f.acquire(0, MS);
        let b = f.acquire(1, MS);
        assert_ne!(a.cid, b.cid);
        f.core.release(b, Some(MS));
        f.core.release(a, Some(MS));
        h.join().unwrap();
        assert!(f.total() >= 2);
        assert!(f.none_leased());
    });
}

/// `CacheLocal` expansion from two CPUs at once: each gets a distinct never-used ID, whatever
/// the interleaving (even if one finishes before the other starts), and `max_nr_cid` is 2.
#[test]
fn concurrent_expansion() {
    model(|| {
        let f = Fixture::new(Policy::CacheLocal, 3, 3, 2);
        let g = f.clone();
        let h = thread::spawn(move || {
            let t = g.acquire(1, 0);
            g.core.release(t, Some(0));
            t.cid
        });
        let t = f.acquire(0, 0);
        f.core.release(t, Some(0));
        let other = h.join().unwrap();
        let mut ids = [t.cid, other];
        ids.sort();
        assert_eq!(ids, [0, 1]);
        assert_eq!(f.core.max_nr_cid(), 2);
        assert!(f.none_leased());
    });
}

/// Two threads on the same CPU (one preempted while holding): one lease is of the CPU's kept
/// CID, the other transient; afterwards the CPU keeps exactly the CID its hint names.
#[test]
fn two_threads_one_cpu() {
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        model(move || {
            let f = Fixture::new(policy, 2, 1, 2);
            let g = f.clone();
            let h = thread::spawn(move || {
                let t = g.acquire(0, 0);
                g.core.release(t, Some(MS));
                t
            });
            let a = f.acquire(0, 0);
            f.core.release(a, Some(MS));
            let b = h.join().unwrap();
            assert_eq!(f.total(), 2);
            assert!(f.none_leased());
            // The CPU keeps one CID, one of those handed out, and whoever touched it used it.
            let kept = f.core.kept_cid(0, MS).expect("CPU 0 keeps a CID");
            assert!(kept == a.cid || kept == b.cid);
            assert!(a.touch == 0 || b.touch == 0);
        });
    }
}

/// Three threads on three CPUs share two CIDs: waiting, and take-over of CIDs other CPUs keep
/// and used recently (no time passes, so nothing expires).
#[test]
fn three_threads_two_cids() {
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        model_bounded(2, move || {
            let f = Fixture::new(policy, 2, 3, 3);
            let handles: Vec<_> = (1..3)
                .map(|cpu| {
                    let g = f.clone();
                    thread::spawn(move || {
                        let t = g.acquire(cpu, 0);
                        g.core.release(t, Some(0));
                    })
                })
                .collect();
            let t = f.acquire(0, 0);
            f.core.release(t, Some(0));
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(f.total(), 3);
            assert!(f.none_leased());
        });
    }
}

// ---------------------------------------------------------------------------------------------
// `Policy::PerTask` (Linux 6.19 per-task ownership)
// ---------------------------------------------------------------------------------------------

use super::state::TaskCid;

impl Fixture {
    /// A `PerTask` fixture with no thread started.
    fn per_task(capacity: u32, cpus: u32) -> Arc<Self> {
        Arc::new(Fixture {
            core: Core::new(Policy::PerTask, capacity, cpus, 100 * MS),
            slots: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    /// Acquire for `task` (waiting like the real front), touch the slot, release.
    fn run_task(&self, cpu: u32, task: &TaskCid) -> u32 {
        let t = loop {
            if let Some(t) = self.core.try_acquire_for(cpu, 0, Some(task)) {
                break t;
            }
            thread::yield_now();
        };
        self.touch(t);
        self.core.release_for(t, None, Some(task));
        t.cid
    }

    /// Whether some CID is owned by a task, or kept by one of CPUs `0..cpus`.
    fn owners(&self, cpus: u32) -> (bool, bool) {
        let task = (0..self.core.capacity()).any(|k| self.core.is_task_owned(k));
        let cpu = (0..cpus).any(|c| self.core.kept_cid(c, 0).is_some());
        (task, cpu)
    }
}

/// Two threads in per-task mode, each running on both CPUs in turn: each keeps the CID it got
/// first, and the two differ, whatever the interleaving.
#[test]
fn per_task_threads_keep_their_cids() {
    model(|| {
        let f = Fixture::per_task(2, 2);
        f.core.thread_start(0..2);
        f.core.thread_start(0..2);
        let g = f.clone();
        let h = thread::spawn(move || {
            let task = TaskCid::new();
            let a = g.run_task(1, &task);
            let b = g.run_task(0, &task);
            assert_eq!(a, b);
            a
        });
        let task = TaskCid::new();
        let a = f.run_task(0, &task);
        let b = f.run_task(1, &task);
        assert_eq!(a, b);
        let other = h.join().unwrap();
        assert_ne!(a, other);
        assert!(!f.core.per_cpu_mode());
        assert_eq!(f.total(), 4);
        assert!(f.none_leased());
    });
}

/// A thread start pushes the threads past `max_cids` (switch to per-CPU mode and the fixup walk)
/// while another thread leases its own CID twice. Exclusivity holds throughout; once the switch
/// is visible to it, the thread's next acquire leaves no task-owned CID behind.
#[test]
fn per_task_switch_to_cpus_races_leases() {
    model_bounded(3, || {
        let f = Fixture::per_task(2, 2);
        f.core.thread_start([0]);
        let task = TaskCid::new();
        assert_eq!(f.run_task(0, &task), 0);
        let g = f.clone();
        let h = thread::spawn(move || {
            // Two threads on one allowed CPU: max_cids = 1 < 2 threads.
            g.core.thread_start([0]);
            let mine = TaskCid::new();
            g.run_task(0, &mine);
        });
        f.run_task(0, &task);
        f.run_task(0, &task);
        h.join().unwrap();
        assert!(f.core.per_cpu_mode());
        assert_eq!(f.core.switch_back_threshold(), Some(1));
        f.run_task(0, &task);
        assert_eq!(f.core.owned_by(&task), None);
        assert_eq!(f.owners(2), (false, true));
        assert!(f.none_leased());
    });
}

/// A thread exit brings the threads below the recorded threshold (switch back to per-task mode
/// and the fixup walk) while another thread borrows its CPU's CID. Once the switch is visible,
/// the thread's next acquire makes its CID its own and no CPU owns one.
#[test]
fn per_task_switch_back_races_leases() {
    model_bounded(3, || {
        let f = Fixture::per_task(4, 2);
        for _ in 0..3 {
            f.core.thread_start(0..2);
        }
        assert!(f.core.per_cpu_mode());
        assert_eq!(f.core.switch_back_threshold(), Some(2));
        f.core.thread_exit_for(None);
        assert!(
            f.core.per_cpu_mode(),
            "hysteresis: 2 threads are not below 2"
        );
        let task = TaskCid::new();
        let c = f.run_task(0, &task);
        assert_eq!(f.core.kept_cid(0, 0), Some(c));
        let g = f.clone();
        let h = thread::spawn(move || g.core.thread_exit_for(None));
        f.run_task(0, &task);
        h.join().unwrap();
        assert!(!f.core.per_cpu_mode());
        let own = f.run_task(0, &task);
        assert_eq!(f.core.owned_by(&task), Some(own));
        assert_eq!(f.owners(2), (true, false));
        assert!(f.none_leased());
    });
}

/// Two threads pinned to different CPUs register at once (as the burst benchmark's threads
/// do): two threads on two allowed CPUs are within max_cids = 2, so the mode never switches,
/// whatever the interleaving (a thread counted before its CPUs were would switch for nothing).
#[test]
fn per_task_concurrent_starts_stay_per_task() {
    model(|| {
        let f = Fixture::per_task(2, 2);
        let g = f.clone();
        let h = thread::spawn(move || {
            g.core.thread_start([1]);
            let task = TaskCid::new();
            g.run_task(1, &task);
            g.core.owned_by(&task)
        });
        f.core.thread_start([0]);
        let task = TaskCid::new();
        f.run_task(0, &task);
        let other = h.join().unwrap();
        assert!(!f.core.per_cpu_mode());
        assert_eq!(f.core.switch_back_threshold(), None);
        let mine = f.core.owned_by(&task);
        assert!(mine.is_some() && other.is_some() && mine != other);
    });
}
