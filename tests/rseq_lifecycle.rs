//! Thread churn, fork, and a kernel without rseq (simulated with a seccomp filter).

mod common;

use common::matrix;
use percid::rseq::registration::{FallbackReason, Owner};
use percid::{Counter, Index};
use std::process::Command;

/// Thousands of short-lived threads, each registering (or reading glibc's area), adding and
/// exiting: the sum is exact and nothing crashes when areas are unregistered at exit.
#[test]
fn thread_churn() {
    matrix("thread_churn", || {
        let counter = Counter::new();
        let rounds = if common::long() { 200 } else { 25 };
        let per_round = 100;
        for _ in 0..rounds {
            std::thread::scope(|s| {
                for _ in 0..per_round {
                    s.spawn(|| {
                        counter.add(1);
                        assert!(percid::current_cpu().is_some());
                    });
                }
            });
        }
        assert_eq!(counter.sum(), (rounds * per_round) as u64);
    });
}

/// Code in TLS destructors that runs after percid's own registration guard must still work
/// (it falls back to the counter's overflow path instead of touching an unregistered area).
#[test]
fn counter_in_thread_exit_destructor() {
    struct AddOnExit(&'static Counter);
    impl Drop for AddOnExit {
        fn drop(&mut self) {
            self.0.add(1);
        }
    }
    thread_local! { static ON_EXIT: std::cell::RefCell<Option<AddOnExit>> = const { std::cell::RefCell::new(None) }; }
    matrix("counter_in_thread_exit_destructor", || {
        let counter: &'static Counter = Box::leak(Box::new(Counter::new()));
        for _ in 0..50 {
            std::thread::spawn(move || {
                counter.add(1);
                ON_EXIT.with(|c| *c.borrow_mut() = Some(AddOnExit(counter)));
            })
            .join()
            .unwrap();
        }
        assert_eq!(counter.sum(), 100);
    });
}

/// The child of a fork uses the crate (same counter, fresh threads) and sees the parent's
/// state as of the fork; the parent does not see the child's adds.
#[test]
fn fork_child_uses_the_crate() {
    matrix("fork_child_uses_the_crate", || {
        let counter = Counter::new();
        counter.add(5);
        // A drainable structure: its drain fences with membarrier, and the registration was
        // made in the parent (before `main`); the child must inherit it.
        let list: percid::List<u64> = percid::List::new();
        list.push(1);
        // SAFETY: the child only uses this counter and list, spawns threads (the test harness's other
        // threads are not running in the child; the child never touches their state) and
        // leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = std::panic::catch_unwind(|| {
                counter.add(1);
                std::thread::scope(|s| {
                    for _ in 0..4 {
                        s.spawn(|| (0..1000).for_each(|_| counter.add(1)));
                    }
                });
                std::thread::scope(|s| {
                    for t in 0..4 {
                        let list = &list;
                        s.spawn(move || (0..100).for_each(|i| list.push(1000 * t + i)));
                    }
                });
                let drained = list.drain().len();
                counter.sum() == 5 + 1 + 4000
                    && percid::current_cpu().is_some()
                    && drained == 401
                    && list.stats().fence_failures == 0
            });
            // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
            unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed: status {status:#x}"
        );
        counter.add(1);
        assert_eq!(counter.sum(), 6);
    });
}

/// Installs a seccomp filter that makes the rseq syscall fail with `errno` (`ENOSYS`: as on
/// a kernel without rseq; `EPERM`: a sandbox that forbids it). Runs in the child between fork and exec, so glibc's own registration fails
/// too.
#[cfg(target_arch = "x86_64")]
fn deny_rseq_with(errno: i32) -> std::io::Result<()> {
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let ld_w_abs = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq_k = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret_k = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        insn(ld_w_abs, 0, 0, 4), // seccomp_data.arch
        insn(jeq_k, 1, 0, AUDIT_ARCH_X86_64),
        insn(ret_k, 0, 0, SECCOMP_RET_ALLOW),
        insn(ld_w_abs, 0, 0, 0), // seccomp_data.nr
        insn(jeq_k, 0, 1, libc::SYS_rseq as u32),
        insn(ret_k, 0, 0, SECCOMP_RET_ERRNO | errno as u32),
        insn(ret_k, 0, 0, SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: prctl with integer arguments; then a valid, live BPF program.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `no_rseq_child` in a child process whose rseq syscall fails with `errno`.
#[cfg(target_arch = "x86_64")]
fn run_without_rseq(errno: i32) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "no_rseq_child",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env("PERCID_EXPECT_NO_RSEQ", errno.to_string())
        .env_remove("PERCID_FORCE_FALLBACK");
    // SAFETY: the closure only calls prctl (async-signal-safe) between fork and exec.
    unsafe { cmd.pre_exec(move || deny_rseq_with(errno)) };
    let out = cmd.output().expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
}

/// A kernel without rseq leaves the crate working on the fallback, and `status()` says so.
#[cfg(target_arch = "x86_64")]
#[test]
fn kernel_without_rseq_runs_on_the_fallback() {
    run_without_rseq(libc::ENOSYS);
}

/// A seccomp filter that forbids rseq (EPERM) does too, with its own reason.
#[cfg(target_arch = "x86_64")]
#[test]
fn forbidden_rseq_runs_on_the_fallback() {
    run_without_rseq(libc::EPERM);
}

/// Runs only inside the seccomp child of `kernel_without_rseq_runs_on_the_fallback`.
#[test]
#[ignore = "run by kernel_without_rseq_runs_on_the_fallback in a seccomp-filtered child"]
fn no_rseq_child() {
    let Ok(errno) = std::env::var("PERCID_EXPECT_NO_RSEQ") else {
        eprintln!("no_rseq_child: not started by its parent test: nothing to check");
        return;
    };
    let errno: i32 = errno.parse().unwrap();
    let st = percid::status();
    if cfg!(feature = "force-fallback") {
        assert_eq!(
            st.owner,
            Owner::None(FallbackReason::ForcedByFeature),
            "{st}"
        );
    } else {
        let (reason, says) = if errno == libc::ENOSYS {
            (FallbackReason::KernelLacksRseq, "no rseq")
        } else {
            (FallbackReason::Denied(errno), "denied")
        };
        assert_eq!(st.owner, Owner::None(reason), "{st}");
        assert!(st.to_string().contains(says), "{st}");
    }
    assert!(!st.rseq_in_use && !st.mm_cid && st.feature_size == 0);
    assert_eq!(st.default_index, Index::User(percid::Policy::CacheLocal));
    assert_eq!(percid::current_mm_cid(), None);
    assert!(
        percid::current_cpu().is_some(),
        "sched_getcpu still answers"
    );
    for index in Index::ALL {
        let counter = Counter::with_index(index);
        counter.add(1);
        assert!(!counter.access().unwrap().is_rseq());
        counter.reset();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| (0..10_000).for_each(|_| counter.add(1)));
            }
        });
        assert_eq!(counter.sum(), 80_000, "{index}");
    }
}
