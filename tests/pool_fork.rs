//! Pools across `fork`: the child sees a copy-on-write snapshot of the parent's slots, and
//! writes on either side do not reach the other. In `CowInit` pools the fork freezes the
//! existing ranges (their init image is never written again).
//!
//! One `#[test]` only, so no other test thread of this binary allocates while we fork. The
//! child does only plain loads and stores to already mapped memory (no allocation, no lock,
//! no panic) and leaves with `_exit`, reporting through its exit status.

use percid::Index;
use percid::per_cpu::PerCpu;
use percid::pool::{Pool, PoolConfig, Populate};

/// Forks; the child runs `child` and exits with its return value; returns that status.
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork has no memory-safety preconditions; the child only runs `child`, which
    // (by construction in this file) does async-signal-safe work, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = child();
        // SAFETY: leaving the child without running atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

#[test]
fn fork_gives_the_child_a_copy_on_write_snapshot() {
    for mode in [Populate::CowZero, Populate::CowInit] {
        let pool = Pool::new(PoolConfig::new().slots(8).populate(mode)).unwrap();
        let mut v = PerCpu::in_pool(&pool, Index::default(), 42u64).unwrap();
        for s in 0..4 {
            *v.get_mut(s).unwrap() = 10 + s as u64; // slots 4..8 stay untouched (42)
        }

        let code = in_child(|| {
            // The parent's values, and the init value in untouched slots.
            for s in 0..8 {
                let want = if s < 4 { 10 + s as u64 } else { 42 };
                if v.get(s) != Some(&want) {
                    return 10 + s as i32;
                }
            }
            // Writes in the child stay in the child.
            // SAFETY: slots 0 and 6 exist; no reference to them is live in this process.
            unsafe {
                *v.raw_slot_ptr(0) = 1000;
                *v.raw_slot_ptr(6) = 1006;
            }
            if v.get(0) != Some(&1000) || v.get(6) != Some(&1006) {
                return 30;
            }
            0
        });
        assert_eq!(code, 0, "{mode:?}: child check failed with code {code}");

        // The parent is unaffected by the child's writes.
        let now: Vec<u64> = v.iter().copied().collect();
        assert_eq!(now, [10, 11, 12, 13, 42, 42, 42, 42], "{mode:?}");

        // A later child snapshots the parent's newer values.
        *v.get_mut(5).unwrap() = 55;
        let code = in_child(|| if v.get(5) == Some(&55) { 0 } else { 1 });
        assert_eq!(code, 0, "{mode:?}: second child");

        if mode == Populate::CowInit {
            // The fork froze the range: a freed item is not reused, new items come from a
            // new range, and the old item's untouched slots keep reading their init value.
            let before = pool.nr_ranges();
            let addr = v.raw_slot_ptr(0) as usize;
            let w = PerCpu::in_pool(&pool, Index::default(), 7u64).unwrap();
            assert_eq!(pool.nr_ranges(), before + 1, "new range after fork");
            assert!(w.iter().all(|&x| x == 7));
            drop(v);
            let x = PerCpu::in_pool(&pool, Index::default(), 9u64).unwrap();
            assert_ne!(x.raw_slot_ptr(0) as usize, addr, "frozen item not reused");
            assert!(x.iter().all(|&x| x == 9));
        } else {
            // CowZero has nothing shared: reuse goes on as usual.
            let addr = v.raw_slot_ptr(0) as usize;
            drop(v);
            let x = PerCpu::in_pool(&pool, Index::default(), 9u64).unwrap();
            assert_eq!(x.raw_slot_ptr(0) as usize, addr);
            assert!(x.iter().all(|&x| x == 9));
        }
    }
}
