//! `PerCpuLock` across `fork` (issue 17, item 12). What is promised (module docs of
//! `percid::lock`, "`fork`"): as with a `Mutex`, a fork while *another* thread holds a slot
//! leaves that slot held in the child for ever; a fork while no other thread holds one (the
//! forking thread may) gives the child a working lock with the parent's values. This checks
//! the promise, under a watchdog: the child must finish, not hang.
//!
//! One `#[test]` in its own binary, so no other test thread allocates while we fork.

use percid::PerCpuLock;
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_secs(60);

#[test]
fn a_fork_without_foreign_holders_leaves_a_working_lock() {
    let lock = PerCpuLock::new(0u64);
    // Other threads use every slot, then stop (they hold nothing at the fork).
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    *lock.lock().expect("a slot") += 1;
                }
            });
        }
    });
    // The forking thread holds a slot across the fork.
    let guard = lock.lock().expect("a slot");
    // SAFETY: fork has no memory-safety preconditions; no other thread of this process holds
    // a lock (the workers were joined; the harness thread waits on a condition variable).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(guard);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..10_000 {
                            *lock.lock().expect("a slot") += 1;
                        }
                    });
                }
            });
            let mut total = 0;
            lock.with_each(|_, v| total += *v)
                .expect("the fence works in the child");
            (total == 80_000) as i32
        }))
        .unwrap_or(0);
        // SAFETY: leaving the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if code == 1 { 0 } else { 1 }) };
    }
    drop(guard);
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        assert_eq!(r, 0, "waitpid");
        if start.elapsed() > WATCHDOG {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child did not finish within {WATCHDOG:?}: a slot stayed held");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed: {status:#x}"
    );
    let mut total = 0;
    lock.with_each(|_, v| total += *v).unwrap();
    assert_eq!(total, 40_000, "the parent's values, unchanged by the child");
}
