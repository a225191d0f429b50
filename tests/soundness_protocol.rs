//! Soundness of the remote protocols (issue 17, items 3, 4, 5 and 12): `PerCpuLock::with_each`
//! with a refused membarrier fence, concurrent visitors, the drain/lease lock order, and
//! `fork` with a held slot.
//!
//! Every test that could hang on a regression runs its body under a watchdog (a child
//! process or a detached thread with a generous deadline) and fails instead of hanging: a
//! liveness check, never a timed assertion.

mod common;

use percid::index::{CidAllocator, Policy};
use percid::{Index, Limit, PerCpu, PerCpuLock};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous: a healthy run takes well under a second; a hang is what this catches.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Set in the child processes of [`run_child`]: the name of the scenario to run.
const SCENARIO_ENV: &str = "PERCID_PROTOCOL_SCENARIO";

/// The in-process tests that lease CIDs of the process-wide user-space allocator (every
/// structure under the forced fallback; `Index::User` anywhere) run one at a time.
/// `a_drain_inside_a_lease_does_not_deadlock` sets up its scene by holding every CID but one
/// while it charges, which is `CidAllocator::acquire`'s documented hazard (a thread holding a
/// lease that waits for a second one): with another test's threads on the same allocator at
/// once, a thread holding the last CID and waiting for one of those deadlocks with it, 3 of 3
/// runs with both tests in one process.
static GLOBAL_ALLOCATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive_allocator() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_ALLOCATOR.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs test `name` of this binary again in a child with [`SCENARIO_ENV`] set, kills it if it
/// outlives [`WATCHDOG`], and returns its output (asserting it passed).
fn run_child(name: &str, envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(SCENARIO_ENV, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child test");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect child");
            panic!(
                "{name}: the child did not finish within {WATCHDOG:?} (hang):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("collect child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        status.success(),
        "{name}: child failed ({status}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "{name}: child ran no test:\n{stdout}"
    );
    stdout
}

fn in_child(name: &str) -> bool {
    std::env::var(SCENARIO_ENV).is_ok_and(|v| v == name)
}

/// Runs `body` on a detached thread and fails (instead of hanging) if it does not finish
/// within [`WATCHDOG`]. A panic in `body` fails the test too.
fn with_watchdog(what: &str, body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        let _ = tx.send(r.is_ok());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(true) => {}
        Ok(false) => panic!("{what}: the body panicked"),
        Err(_) => panic!("{what}: did not finish within {WATCHDOG:?} (deadlock or livelock)"),
    }
}

/// A slot's value with an in-use flag: whoever holds the slot sets it, checks nobody else
/// did, and clears it. Two holders of one slot at once see each other's flag (`overlaps`).
#[derive(Default)]
#[repr(C)]
struct Guarded {
    in_use: u64,
    count: u64,
}
percid::slot_safe!(Guarded {
    in_use: u64,
    count: u64
});

/// Enters the value as its (supposedly) only holder, counts one use, leaves.
fn enter(v: &mut Guarded, overlaps: &AtomicU64) {
    // Volatile: the compiler must not fold the flag's store and load away; two holders on
    // one slot interleave here.
    let p = &raw mut v.in_use;
    // SAFETY: `p` points at a live, aligned u64 of `v`, which we borrow mutably.
    unsafe {
        if p.read_volatile() != 0 {
            overlaps.fetch_add(1, Ordering::Relaxed);
        }
        p.write_volatile(1);
        for _ in 0..20 {
            std::hint::spin_loop();
        }
        if p.read_volatile() != 1 {
            overlaps.fetch_add(1, Ordering::Relaxed);
        }
        p.write_volatile(0);
    }
    v.count += 1;
}

/// Installs a seccomp filter on every thread of the process that makes `membarrier` fail
/// with `EPERM` (what a sandbox installed after start-up does).
#[cfg(target_arch = "x86_64")]
fn deny_membarrier() {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let filter = [
        stmt(ld, 4), // seccomp_data.arch
        jeq(AUDIT_ARCH_X86_64, 0, 3),
        stmt(ld, 0), // seccomp_data.nr
        jeq(libc::SYS_membarrier as u32, 0, 1),
        stmt(ret, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(ret, SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_NO_NEW_PRIVS");
    // SAFETY: `prog` points at `filter`, both live across the call; the kernel copies them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    // SAFETY: membarrier with integer arguments (the query command).
    let q = unsafe { libc::syscall(libc::SYS_membarrier, 0, 0, 0) };
    assert_eq!(q, -1, "the filter denies membarrier");
}

/// Item 3: the lock chose rseq (the fence worked at creation), then a seccomp filter makes
/// the fence fail. `with_each` must return (an error) instead of retrying forever, and must
/// never release a word a critical section took meanwhile: lockers keep running on every
/// slot and check that no two holders meet.
#[cfg(target_arch = "x86_64")]
#[test]
fn with_each_returns_when_the_fence_is_refused() {
    const NAME: &str = "with_each_returns_when_the_fence_is_refused";
    if !in_child(NAME) {
        let out = run_child(NAME, &[]);
        println!("{out}");
        return;
    }
    let mut owned = PerCpuLock::new(Guarded::default());
    let lock = &owned;
    let _ = lock.nr_slots();
    if !lock.access().is_some_and(|a| a.is_rseq()) {
        println!("skipped: the lock uses leases here ({:?})", lock.access());
        return;
    }
    deny_membarrier();
    let overlaps = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let locked = AtomicU64::new(0);
    let threads = common::stress_threads();
    let mut refused = 0;
    let mut visited_ok = 0;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut g = lock.lock().expect("a slot");
                    enter(&mut g, &overlaps);
                    drop(g);
                    n += 1;
                    if n % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
                locked.fetch_add(n, Ordering::Relaxed);
            });
        }
        for _ in 0..200 {
            match lock.with_each(|_, v| enter(v, &overlaps)) {
                Ok(()) => visited_ok += 1,
                Err(e) => {
                    refused += 1;
                    assert!(e.slot() < lock.nr_slots(), "{e}");
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        overlaps.load(Ordering::Relaxed),
        0,
        "two holders met on a slot"
    );
    // Every slot that was ever held was on the rseq path, which needs the refused fence.
    assert!(refused > 0, "visits: {visited_ok} ok, {refused} refused");
    // Exact: every locker's and visitor's entry counted once, no word left locked (a
    // leftover REMOTE would hang the lockers above, which stopped on their own).
    let slots = owned.nr_slots() as u64;
    let counted: u64 = owned.iter_mut().map(|v| v.count).sum();
    let visits: u64 = counted - locked.load(Ordering::Relaxed);
    assert!(visits <= 200 * slots, "visits {visits} (counted {counted})");
    println!("fence refused: {refused} visits returned an error, {visited_ok} completed");
}

/// Item 4: two threads call `with_each` at once while lockers run. Each slot must be held by
/// one of them at a time: `f(&mut T)` on one slot from two visitors is two `&mut`.
#[test]
fn concurrent_visitors_are_exclusive() {
    let _exclusive = exclusive_allocator();
    common::matrix("concurrent_visitors_are_exclusive", || {
        let lock = PerCpuLock::new(Guarded::default());
        let overlaps = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let locked = AtomicU64::new(0);
        let visited = AtomicU64::new(0);
        let rounds = common::ops_per_thread(300);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(mut g) = lock.lock() {
                            enter(&mut g, &overlaps);
                            n += 1;
                        }
                    }
                    locked.fetch_add(n, Ordering::Relaxed);
                });
            }
            let visitors: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..rounds {
                            lock.with_each(|_, v| {
                                enter(v, &overlaps);
                                visited.fetch_add(1, Ordering::Relaxed);
                            })
                            .expect("the fence works here");
                        }
                    })
                })
                .collect();
            for v in visitors {
                v.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(
            overlaps.load(Ordering::Relaxed),
            0,
            "two holders met on a slot"
        );
        let mut lock = lock;
        let counted: u64 = lock.iter_mut().map(|v| v.count).sum();
        assert_eq!(
            counted,
            locked.load(Ordering::Relaxed) + visited.load(Ordering::Relaxed),
            "every entry counted exactly once"
        );
    });
}

/// Item 5: thread A, inside `PerCpu::run` on a CID lease, drains a `Limit` on the same
/// allocator while thread B's drain holds the drain lock and needs A's CID. Before the fix
/// B waited for A's CID and A for B's lock, forever.
#[test]
fn a_drain_inside_a_lease_does_not_deadlock() {
    let _exclusive = exclusive_allocator();
    let policy = Policy::CacheLocal;
    let alloc = CidAllocator::global(policy);
    let limit: &'static Limit = Box::leak(Box::new(Limit::with_index(
        Index::User(policy),
        1 << 40,
        1 << 10,
    )));
    let per_cpu: &'static PerCpu<AtomicU64> = Box::leak(Box::new(PerCpu::with_index(
        Index::User(policy),
        AtomicU64::new(0),
    )));
    static CHARGED: AtomicU64 = AtomicU64::new(0);
    for round in 0..4 {
        with_watchdog("drain inside a lease", move || {
            // Stock in every slot: charge once with every other CID held, so the charge
            // lands on the one left.
            let cap = alloc.capacity();
            for target in 0..cap {
                let others: Vec<_> = (0..cap)
                    .filter(|&c| c != target)
                    .filter_map(|c| alloc.try_acquire_exact(c))
                    .collect();
                limit.try_charge(1).expect("far below the limit");
                CHARGED.fetch_add(1, Ordering::Relaxed);
                drop(others);
            }
            let b_started = AtomicBool::new(false);
            let a_in_lease = AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    per_cpu.run(|current, slot| {
                        slot.fetch_add(1, Ordering::Relaxed);
                        let _ = current;
                        a_in_lease.store(true, Ordering::Release);
                        while !b_started.load(Ordering::Acquire) {
                            std::hint::spin_loop();
                        }
                        // Let B take the drain lock and reach this thread's CID.
                        std::thread::sleep(Duration::from_millis(20 + 10 * round));
                        limit.drain();
                        Some(())
                    });
                });
                s.spawn(|| {
                    while !a_in_lease.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    b_started.store(true, Ordering::Release);
                    limit.drain();
                });
            });
            // Both drains returned every slot's stock: the usage is what is still charged.
            assert_eq!(limit.usage(), CHARGED.load(Ordering::Relaxed));
        });
    }
}

/// Item 2: a signal whose handler uses percid, delivered while a thread registers its own
/// rseq area for the first time (`GLIBC_TUNABLES=glibc.pthread.rseq=0`). The nested
/// registration must not rewrite the area the kernel already has: that left `cpu_id` at -1
/// and `mm_cid` at 0 until the next preemption, and mm_cid counters then committed on slot 0
/// while its owner ran elsewhere (lost increments).
#[test]
fn a_signal_during_the_first_registration_loses_no_update() {
    const NAME: &str = "a_signal_during_the_first_registration_loses_no_update";
    if !in_child(NAME) {
        let out = run_child(NAME, &[("GLIBC_TUNABLES", "glibc.pthread.rseq=0")]);
        println!("{out}");
        return;
    }
    let owner = percid::rseq::registration::owner();
    if owner != percid::rseq::registration::Owner::Percid {
        // The forced fallback (feature build): nothing is registered.
        println!("skipped: percid does not register here ({owner:?})");
        return;
    }
    registration_storm();
}

static STORM_MM: percid::Counter = percid::Counter::with_index(Index::MmCid);
static STORM_CPU: percid::Counter = percid::Counter::with_index(Index::CpuId);
static STORM_HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn storm_handler(_: libc::c_int) {
    // The first use of percid on a thread may be this handler's (module docs of
    // `rseq::registration`, "Signals": safe once the process-wide facts exist).
    STORM_MM.inc();
    STORM_CPU.inc();
    STORM_HANDLED.fetch_add(1, Ordering::Relaxed);
}

fn registration_storm() {
    // The process-wide facts first (not async-signal-safe), and the counters' slots.
    percid::rseq::register_current_thread();
    STORM_MM.inc();
    STORM_CPU.inc();
    // SAFETY: a zeroed sigaction with a handler that only runs percid adds and an atomic
    // increment; SA_RESTART so that the workers' syscalls resume.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = storm_handler as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
    }
    let rounds = if common::long() { 400 } else { 40 };
    let threads = 8;
    let per_thread = 2_000u64;
    let mut worked = 0u64;
    let clobbered = AtomicU64::new(0);
    for round in 0..rounds {
        std::thread::scope(|s| {
            for t in 0..threads {
                let clobbered = &clobbered;
                s.spawn(move || {
                    // A timer aimed at this thread: when it fires during the registration's
                    // syscall, the kernel delivers the signal at its return, inside the
                    // registration sequence.
                    // The first expiry sweeps 0.5-20 us after the start, across the threads.
                    let first = 500 + ((round * threads + t) as libc::c_long * 250) % 20_000;
                    let mut timer = Some(ThreadTimer::start(first, 40_000));
                    // The first use on this thread: it registers, then reads cpu_id.
                    if !percid::rseq::register_current_thread() {
                        clobbered.fetch_add(1, Ordering::Relaxed);
                    }
                    for i in 0..per_thread {
                        STORM_MM.inc();
                        STORM_CPU.inc();
                        if i == 100 {
                            timer.take();
                        }
                    }
                });
            }
        });
        worked += threads as u64 * per_thread;
    }
    let handled = STORM_HANDLED.load(Ordering::Relaxed);
    let expected = 1 + worked + handled;
    println!("signals handled: {handled}");
    println!(
        "clobbered areas: {}; cpu_id counter {} and mm_cid counter {} of {expected}",
        clobbered.load(Ordering::Relaxed),
        STORM_CPU.sum(),
        STORM_MM.sum()
    );
    // A registered area whose cpu_id read -1 right after the registration: rewritten by the
    // nested registration after the kernel had filled it in.
    assert_eq!(
        clobbered.load(Ordering::Relaxed),
        0,
        "threads whose area was rewritten under the kernel"
    );
    assert_eq!(STORM_CPU.sum(), expected, "cpu_id counter lost updates");
    assert_eq!(STORM_MM.sum(), expected, "mm_cid counter lost updates");
}

/// A POSIX timer sending `SIGUSR2` to the calling thread after `first_ns`, then every
/// `interval_ns`; deleted on drop.
struct ThreadTimer(libc::timer_t);

impl ThreadTimer {
    fn start(first_ns: libc::c_long, interval_ns: libc::c_long) -> ThreadTimer {
        // SAFETY: a zeroed sigevent filled in for SIGEV_THREAD_ID delivery to this thread;
        // `timer` is a valid out-pointer; the itimerspec is fully initialised.
        unsafe {
            let mut ev: libc::sigevent = std::mem::zeroed();
            ev.sigev_notify = libc::SIGEV_THREAD_ID;
            ev.sigev_signo = libc::SIGUSR2;
            ev.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::mem::zeroed();
            assert_eq!(
                libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut timer),
                0,
                "timer_create"
            );
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: interval_ns,
                },
                it_value: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: first_ns,
                },
            };
            assert_eq!(
                libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
                0,
                "timer_settime"
            );
            ThreadTimer(timer)
        }
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `start` and is deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// Item 5 under load: threads inside leases drain a `Limit` and a `List` and visit a
/// `PerCpuLock` on the same allocator while other threads charge, push, lock and drain from
/// outside any lease. Every drain lock lends and borrows; the accounting stays exact and
/// nothing deadlocks.
#[test]
fn drains_inside_leases_under_load() {
    let _exclusive = exclusive_allocator();
    let policy = Policy::CacheLocal;
    let index = Index::User(policy);
    let limit: &'static Limit = Box::leak(Box::new(Limit::with_index(index, 1 << 40, 16)));
    let list: &'static percid::List<u64> = Box::leak(Box::new(percid::List::with_index(index)));
    let lock: &'static PerCpuLock<Guarded> =
        Box::leak(Box::new(PerCpuLock::with_index(index, Guarded::default())));
    let per_cpu: &'static PerCpu<AtomicU64> =
        Box::leak(Box::new(PerCpu::with_index(index, AtomicU64::new(0))));
    with_watchdog("drains inside leases under load", move || {
        let overlaps = AtomicU64::new(0);
        let pushed = AtomicU64::new(0);
        let drained = AtomicU64::new(0);
        let ops = common::ops_per_thread(3000);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (overlaps, pushed, drained) = (&overlaps, &pushed, &drained);
                s.spawn(move || {
                    for i in 0..ops {
                        limit.try_charge(3).expect("far below the limit");
                        list.push(1);
                        pushed.fetch_add(1, Ordering::Relaxed);
                        if let Some(mut g) = lock.lock() {
                            enter(&mut g, overlaps);
                        }
                        let drain = || match (t + i) % 3 {
                            0 => limit.drain(),
                            1 => {
                                let n = list.drain().len() as u64;
                                drained.fetch_add(n, Ordering::Relaxed);
                            }
                            _ => lock
                                .with_each(|_, v| enter(v, overlaps))
                                .expect("leases: no fence"),
                        };
                        if t % 2 == 0 {
                            // Inside a lease on the same allocator.
                            per_cpu.run(|_, _| {
                                drain();
                                Some(())
                            });
                        } else {
                            drain();
                        }
                        limit.uncharge(1);
                    }
                });
            }
        });
        drained.fetch_add(list.drain().len() as u64, Ordering::Relaxed);
        limit.drain();
        assert_eq!(
            overlaps.load(Ordering::Relaxed),
            0,
            "two holders met on a slot"
        );
        assert_eq!(
            drained.load(Ordering::Relaxed),
            pushed.load(Ordering::Relaxed),
            "every pushed element drained once"
        );
        assert_eq!(
            limit.usage(),
            4 * ops as u64 * 2,
            "charged 3, uncharged 1, per op"
        );
    });
}
