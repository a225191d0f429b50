//! Fork: the child starts with a fresh allocator state, whatever the parent's threads held.
//! (Its own test binary: the test forks, so it should not share the process with others.)

use std::sync::mpsc;
use std::thread;

use percid::index::user_cid::{AllocatorConfig, CidAllocator, CidLease, Policy};

/// Runs in the child; returns a description of the first failed check.
fn child(alloc: &'static CidAllocator, inherited: CidLease<'static>) -> Result<(), String> {
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    // The parent's helper thread held the other CID; it does not exist here. Without the reset
    // this would wait forever (the alarm set by the caller would kill the child).
    let a = alloc.acquire();
    let b = alloc
        .try_acquire()
        .ok_or("second CID not free in the child")?;
    check(
        a.cid() != b.cid() && a.cid() < 2 && b.cid() < 2,
        "distinct CIDs below 2",
    )?;
    check(alloc.live_threads() == 1, "one live thread in the child")?;
    // The lease taken before the fork releases nothing here.
    drop(inherited);
    check(
        alloc.is_held(a.cid()) && alloc.is_held(b.cid()),
        "pre-fork lease released a CID",
    )?;
    drop(a);
    drop(b);
    check(!alloc.is_held(0) && !alloc.is_held(1), "CIDs released")?;
    // Threads work in the child and are counted in and out.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..1000 {
                    let l = alloc.acquire();
                    assert!(l.cid() < 2);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "child worker panicked")?;
    }
    check(
        alloc.live_threads() == 1,
        "workers counted out in the child",
    )?;
    // And the child forks again: the grandchild resets too.
    // SAFETY: fork in a process whose other threads were all joined; the grandchild only uses
    // the allocator (whose state it resets) and exits with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = alloc.try_acquire().is_some() && alloc.live_threads() == 1;
        // SAFETY: _exit ends the grandchild without running the parent's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    check(pid > 0, "second fork")?;
    let status = wait(pid);
    check(exited_with(status, 0), "grandchild failed")
}

fn wait(pid: libc::pid_t) -> libc::c_int {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid");
    status
}

fn exited_with(status: libc::c_int, code: libc::c_int) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == code
}

#[test]
fn fork_child_starts_with_a_fresh_allocator() {
    for policy in [Policy::CacheLocal, Policy::Legacy, Policy::PerTask] {
        let alloc: &'static CidAllocator = Box::leak(Box::new(CidAllocator::new(
            AllocatorConfig::new(policy).with_capacity(2),
        )));
        // A helper thread holds one CID across the fork, the forking thread the other.
        let (held_tx, held_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let helper = thread::spawn(move || {
            let l = alloc.acquire();
            held_tx.send(l.cid()).unwrap();
            go_rx.recv().unwrap();
            drop(l);
        });
        let helper_cid = held_rx.recv().unwrap();
        let mine = alloc.acquire();
        assert_ne!(mine.cid(), helper_cid);
        assert!(alloc.try_acquire().is_none(), "both CIDs held");
        assert_eq!(alloc.live_threads(), 2);

        // SAFETY: the child only runs `child` (the allocator, std threads, fork again) and
        // leaves with _exit; glibc makes malloc usable in the child of a multithreaded parent.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: alarm has no memory-safety preconditions; it bounds a hung child.
            unsafe { libc::alarm(20) };
            let code = match std::panic::catch_unwind(|| child(alloc, mine)) {
                Ok(Ok(())) => 0,
                Ok(Err(what)) => {
                    eprintln!("fork child: {what}");
                    1
                }
                Err(_) => 2,
            };
            // SAFETY: _exit ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0, "fork failed");
        let status = wait(pid);
        assert!(
            exited_with(status, 0),
            "child failed: wait status {status:#x}"
        );

        // The parent's state is untouched by the child's.
        assert!(alloc.is_held(mine.cid()) && alloc.is_held(helper_cid));
        assert_eq!(alloc.live_threads(), 2);
        drop(mine);
        go_tx.send(()).unwrap();
        helper.join().unwrap();
        assert!(!alloc.is_held(0) && !alloc.is_held(1));
        assert_eq!(alloc.live_threads(), 1, "the helper was counted out");
    }
}
