//! Small stacks (issue 17.11): every structure's paths, including the process's first use
//! (the global pool, the thread's registration, lazy creation) and the slow paths (drains,
//! orphan adoption and reaping, folds, the overflow list), run on a thread with the smallest
//! stack POSIX allows (`PTHREAD_STACK_MIN`, 16 KiB on x86_64 glibc, from which glibc also
//! carves the thread's TLS and descriptor). Alone in its binary, so that this thread is the
//! first to use percid. CI runs it with rseq, with percid's own registration and on the
//! forced fallback. A stack overflow kills the process (SIGSEGV on the guard page).

use percid::{BatchedCounter, Limit, List};
use std::sync::Arc;

/// Runs `f` on a new POSIX thread whose stack is `PTHREAD_STACK_MIN` bytes, and waits.
fn on_minimal_stack(f: impl FnOnce() + Send + 'static) {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the box leaked below, handed to exactly this thread.
        let f = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) };
        // A panic must not unwind into the C frame: report it as the result.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
        usize::from(ok) as *mut libc::c_void
    }
    let arg: Box<Box<dyn FnOnce() + Send>> = Box::new(Box::new(f));
    // SAFETY: the attribute is initialised before use and destroyed after; the thread takes
    // ownership of `arg` (leaked here, reclaimed in `start`); we join it before returning.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(
            libc::pthread_attr_setstacksize(&mut attr, libc::PTHREAD_STACK_MIN),
            0
        );
        let mut t: libc::pthread_t = 0;
        let raw = Box::into_raw(arg).cast::<libc::c_void>();
        assert_eq!(libc::pthread_create(&mut t, &attr, start, raw), 0);
        libc::pthread_attr_destroy(&mut attr);
        let mut ret = std::ptr::null_mut();
        assert_eq!(libc::pthread_join(t, &mut ret), 0);
        assert_eq!(ret as usize, 1, "the small-stack thread panicked");
    }
}

#[test]
fn structures_run_on_the_minimal_thread_stack() {
    // Stock, deltas and elements left by other (exited) threads: orphan candidates.
    let limit = Arc::new(Limit::new(1_000, 64));
    let batched = Arc::new(BatchedCounter::new(32));
    let list: Arc<List<u64>> = Arc::new(List::new());
    {
        let (limit, batched, list) = (limit.clone(), batched.clone(), list.clone());
        on_minimal_stack(move || {
            // First use of everything in this process happens here.
            for _ in 0..10 {
                limit.try_charge(3).unwrap();
            }
            batched.add(5);
            list.push(1);
        });
    }
    for t in 0..4u64 {
        let (limit, batched, list) = (limit.clone(), batched.clone(), list.clone());
        std::thread::spawn(move || {
            limit.try_charge(7).unwrap();
            batched.add(11);
            list.push(100 + t);
        })
        .join()
        .unwrap();
    }
    on_minimal_stack(move || {
        // Limit: charges until refused (adoption, reaping at the limit, the drain), then
        // uncharges, reaps and drains explicitly.
        let mut charged = 30 + 4 * 7;
        while limit.try_charge(9).is_ok() {
            charged += 9;
        }
        assert!(charged <= 1_000 && charged > 1_000 - 9, "charged {charged}");
        limit.uncharge(charged);
        let _ = limit.reap_orphans();
        limit.drain();
        assert_eq!(limit.usage(), 0);
        let _ = limit.live_bound();

        // BatchedCounter: adds that fold, the approximate read, the exact sum, the reap.
        for i in 0..1_000 {
            batched.add(i % 7 - 3);
        }
        let exact = 5 + 4 * 11 + (0..1_000).map(|i| i % 7 - 3).sum::<i64>();
        assert!(batched.read().contains(exact));
        let _ = batched.reap_orphans();
        assert_eq!(batched.sum(), exact);

        // List: pushes, pops until this thread sees it empty (adopting orphan lists, then
        // the overflow list), the drain (what other slots still hold), a pop of the empty
        // list, and a drain of what this thread pushed.
        for i in 0..200 {
            list.push(i);
        }
        let mut seen = 0usize;
        while list.pop().is_some() {
            seen += 1;
        }
        let _ = list.reap_orphans();
        seen += list.drain().len();
        assert_eq!(seen, 200 + 5);
        assert_eq!(list.pop(), None);
        for i in 0..10 {
            list.push(i);
        }
        let mut drained = list.drain();
        drained.sort_unstable();
        assert_eq!(drained, (0..10).collect::<Vec<u64>>());
    });
}
