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
