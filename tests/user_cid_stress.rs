//! Concurrency stress of the real CID allocator: no CID is ever held twice, data written under
//! a lease is seen by the next holder, threads are counted in and out.
//!
//! Bounded to a few seconds by default; `PERCID_STRESS=long` runs each scenario much longer.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use percid::index::user_cid::{AllocatorConfig, CidAllocator, Policy};

fn long() -> bool {
    std::env::var("PERCID_STRESS").is_ok_and(|v| v == "long")
}

fn nproc() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

/// One slot per CID: an ownership canary and a plain (non-atomic) counter.
struct Slots {
    canary: Vec<AtomicU64>,
    data: Vec<UnsafeCell<u64>>,
}

// SAFETY: `data[k]` is only accessed by the holder of a lease on CID `k` (or after every thread
// was joined); the allocator's exclusivity and acquire/release ordering, the property under
// test, make those accesses race-free. The canaries are atomics.
unsafe impl Sync for Slots {}

impl Slots {
    fn new(n: u32) -> Self {
        Slots {
            canary: (0..n).map(|_| AtomicU64::new(0)).collect(),
            data: (0..n).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    /// The critical region of the holder of `cid`: claim the canary, bump the counter (with an
    /// optional pause between the read and the write), release the canary.
    fn critical(&self, cid: u32, tag: u64, pause: impl FnOnce()) {
        let k = cid as usize;
        let prev = self.canary[k].swap(tag, Relaxed);
        assert_eq!(
            prev, 0,
            "CID {cid} taken by {tag:#x} while held by {prev:#x}"
        );
        let cell = self.data[k].get();
        // SAFETY: this thread holds the lease on `cid` (see the `Sync` impl).
        let v = unsafe { cell.read() };
        pause();
        // SAFETY: as above.
        unsafe { cell.write(v + 1) };
        let mine = self.canary[k].swap(0, Relaxed);
        assert_eq!(mine, tag, "CID {cid}'s canary changed under its holder");
    }

    fn total(&self) -> u64 {
        self.data
            .iter()
            // SAFETY: called after all worker threads were joined.
            .map(|c| unsafe { *c.get() })
            .sum()
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn pause(rng: &mut Rng) {
    match rng.next(64) {
        0..=3 => thread::yield_now(),
        4 => thread::sleep(Duration::from_micros(20 + rng.next(80))),
        _ => {}
    }
}

/// `threads` threads hammer `alloc` for `time` with injected yields and sleeps, mixing plain
/// acquires, non-blocking acquires, exact leases and nested leases.
fn hammer(alloc: &CidAllocator, threads: usize, time: Duration) {
    let cap = alloc.capacity();
    let slots = Slots::new(cap);
    let leases = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let baseline = alloc.live_threads();
    thread::scope(|s| {
        let mut workers = Vec::new();
        for t in 0..threads {
            let (slots, leases, stop) = (&slots, &leases, &stop);
            workers.push(s.spawn(move || {
                let tag = (t as u64 + 1) << 8;
                let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ ((t as u64 + 1) * 0x9E37_79B9));
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    match rng.next(16) {
                        0 => {
                            let cid = rng.next(u64::from(cap)) as u32;
                            if let Some(l) = alloc.try_acquire_exact(cid) {
                                assert_eq!(l.cid(), cid);
                                slots.critical(cid, tag | 1, || pause(&mut rng));
                                n += 1;
                            }
                        }
                        1 => {
                            if let Some(l) = alloc.try_acquire() {
                                assert!(l.cid() < cap);
                                slots.critical(l.cid(), tag | 2, || pause(&mut rng));
                                n += 1;
                            }
                        }
                        2 => {
                            // Nested: a second lease while holding one (non-blocking, so
                            // threads holding every CID cannot deadlock waiting on each other).
                            let outer = alloc.acquire();
                            slots.critical(outer.cid(), tag | 3, || {
                                if let Some(inner) = alloc.try_acquire() {
                                    assert_ne!(inner.cid(), outer.cid());
                                    slots.critical(inner.cid(), tag | 4, || {});
                                    n += 1;
                                }
                            });
                            n += 1;
                        }
                        _ => {
                            let l = alloc.acquire();
                            assert!(l.cid() < cap);
                            slots.critical(l.cid(), tag, || pause(&mut rng));
                            n += 1;
                        }
                    }
                    if rng.next(32) == 0 {
                        thread::yield_now();
                    }
                }
                leases.fetch_add(n, Relaxed);
            }));
        }
        thread::sleep(time);
        stop.store(true, Relaxed);
        // Explicit joins: the end of a scope does not wait for thread-local destructors,
        // `join` does (it joins the OS thread).
        for w in workers {
            w.join().unwrap();
        }
    });
    let leases = leases.load(Relaxed);
    assert!(leases > 0);
    assert_eq!(slots.total(), leases, "an update under a lease was lost");
    assert!((0..cap).all(|k| !alloc.is_held(k)), "a CID is still held");
    assert_eq!(
        alloc.live_threads(),
        baseline,
        "every worker was counted out"
    );
}

fn run_time() -> Duration {
    if long() {
        Duration::from_secs(20)
    } else {
        Duration::from_millis(300)
    }
}

#[test]
fn stress_default_capacity() {
    for policy in [Policy::CacheLocal, Policy::Legacy, Policy::PerTask] {
        let alloc = CidAllocator::new(AllocatorConfig::new(policy));
        hammer(&alloc, 6 * nproc(), run_time());
    }
}

#[test]
fn stress_small_capacity_many_threads_short_expiry() {
    // Far more threads than CIDs: waiting, take-overs, expiry in the middle of it all.
    for policy in [Policy::CacheLocal, Policy::Legacy, Policy::PerTask] {
        let alloc = CidAllocator::new(
            AllocatorConfig::new(policy)
                .with_capacity(3)
                .with_expiry(Duration::from_millis(1)),
        );
        hammer(&alloc, 16 * nproc(), run_time());
    }
}

#[test]
fn stress_large_capacity() {
    for policy in [Policy::CacheLocal, Policy::Legacy, Policy::PerTask] {
        let alloc = CidAllocator::new(AllocatorConfig::new(policy).with_capacity(64));
        hammer(&alloc, 6 * nproc(), run_time());
    }
}

#[test]
fn global_allocators_are_process_wide() {
    for policy in [Policy::CacheLocal, Policy::Legacy, Policy::PerTask] {
        let g = CidAllocator::global(policy);
        assert!(std::ptr::eq(g, CidAllocator::global(policy)));
        assert_eq!(g.policy(), policy);
        assert_eq!(g.expiry(), Duration::from_millis(100));
        assert!(g.capacity() >= 1);
        let l = g.acquire();
        assert!(l.cid() < g.capacity());
        assert!(g.is_held(l.cid()));
        assert!(g.live_threads() >= 1);
        assert!(g.nr_cpus_allowed() >= 1);
        assert!(g.try_acquire_exact(l.cid()).is_none());
        drop(l);
    }
    assert!(!std::ptr::eq(
        CidAllocator::global(Policy::CacheLocal),
        CidAllocator::global(Policy::Legacy)
    ));
}

#[test]
fn single_thread_gets_the_same_cid_back() {
    for policy in [Policy::CacheLocal, Policy::Legacy, Policy::PerTask] {
        let alloc = CidAllocator::new(AllocatorConfig::new(policy).with_capacity(4));
        let a = alloc.acquire().cid();
        // The thread may migrate between CPUs: each CPU keeps its own CID, all below 4.
        for _ in 0..1000 {
            let l = alloc.acquire();
            assert!(l.cid() < 4);
        }
        assert!(a < 4);
        assert_eq!(alloc.live_threads(), 1);
        assert!(alloc.max_nr_cid() >= 1);
    }
}

/// Thousands of short-lived threads: the live-thread count follows them exactly and returns
/// to its baseline.
#[test]
fn thread_churn_counts_threads_in_and_out() {
    let total = if long() { 20_000 } else { 2_000 };
    let wave = 32;
    let alloc = CidAllocator::new(AllocatorConfig::new(Policy::CacheLocal).with_capacity(8));
    let other = CidAllocator::new(AllocatorConfig::new(Policy::Legacy).with_capacity(8));
    let baseline = alloc.live_threads();
    assert_eq!(baseline, 0);
    let mut spawned = 0;
    while spawned < total {
        // Workers pass `registered` once they used the allocators, then wait on `leave`.
        let registered = Barrier::new(wave + 1);
        let leave = Barrier::new(wave + 1);
        thread::scope(|s| {
            let mut handles = Vec::new();
            for i in 0..wave {
                let (alloc, other, registered, leave) = (&alloc, &other, &registered, &leave);
                handles.push(s.spawn(move || {
                    let l = alloc.acquire();
                    assert!(l.cid() < 8);
                    drop(l);
                    if i % 2 == 0 {
                        // A second allocator on the same thread, and the first one again.
                        drop(other.acquire());
                        drop(alloc.acquire());
                    }
                    registered.wait();
                    leave.wait();
                }));
            }
            registered.wait();
            // Every thread of the wave registered and none has exited yet.
            assert_eq!(alloc.live_threads(), baseline + wave as u32);
            assert_eq!(other.live_threads(), wave as u32 / 2);
            leave.wait();
            // `join` waits for the OS thread, hence for its thread-local destructors (the end
            // of a scope does not).
            for h in handles {
                h.join().unwrap();
            }
        });
        assert_eq!(alloc.live_threads(), baseline);
        assert_eq!(other.live_threads(), 0);
        spawned += wave;
    }
    assert!(alloc.nr_cpus_allowed() >= 1);
}

/// Leases taken from thread-local destructors, before or after the allocator's own
/// thread-local registry is destroyed, work and leave the count right.
#[test]
fn leases_during_thread_local_teardown() {
    static ALLOC: std::sync::OnceLock<CidAllocator> = std::sync::OnceLock::new();
    static LATE_LEASES: AtomicUsize = AtomicUsize::new(0);
    let alloc = ALLOC.get_or_init(|| {
        CidAllocator::new(AllocatorConfig::new(Policy::CacheLocal).with_capacity(2))
    });

    struct LateUser;
    impl Drop for LateUser {
        fn drop(&mut self) {
            let alloc = ALLOC.get().unwrap();
            let l = alloc.acquire();
            assert!(l.cid() < 2);
            LATE_LEASES.fetch_add(1, Relaxed);
        }
    }
    thread_local! {
        static LATE: LateUser = const { LateUser };
    }

    // 0: allocator first, then the late user; 1: the other way round; 2: only the late user.
    for order in 0..3 {
        let before = LATE_LEASES.load(Relaxed);
        thread::spawn(move || match order {
            0 => {
                drop(alloc.acquire());
                LATE.with(|_| {});
            }
            1 => {
                LATE.with(|_| {});
                drop(alloc.acquire());
            }
            _ => LATE.with(|_| {}),
        })
        .join()
        .unwrap();
        assert_eq!(LATE_LEASES.load(Relaxed), before + 1, "order {order}");
        assert_eq!(alloc.live_threads(), 0, "order {order}");
        assert!(!alloc.is_held(0) && !alloc.is_held(1));
    }
}

/// A thread knows the leases it holds (what lets a drain inside its own lease proceed), and
/// only those: not another thread's, not one it dropped.
#[test]
fn held_by_current_thread_is_per_thread() {
    let alloc = Arc::new(CidAllocator::new(
        AllocatorConfig::new(Policy::Legacy).with_capacity(2),
    ));
    let l = alloc.acquire();
    let cid = l.cid();
    assert!(alloc.held_by_current_thread(cid));
    assert!(!alloc.held_by_current_thread(1 - cid));
    thread::scope(|s| {
        s.spawn(|| {
            assert!(
                !alloc.held_by_current_thread(cid),
                "held by the other thread"
            );
            assert!(alloc.try_acquire_exact(cid).is_none());
        });
    });
    // Nested leases, dropped out of order.
    let inner = alloc.acquire();
    assert!(alloc.held_by_current_thread(inner.cid()));
    drop(l);
    assert!(!alloc.held_by_current_thread(cid));
    assert!(alloc.held_by_current_thread(inner.cid()));
    drop(inner);
    assert!(!alloc.held_by_current_thread(0) && !alloc.held_by_current_thread(1));
    // Another allocator's lease on the same CID number is not this one's.
    let other = CidAllocator::new(AllocatorConfig::new(Policy::Legacy).with_capacity(2));
    let o = other.acquire();
    assert!(!alloc.held_by_current_thread(o.cid()));
}
