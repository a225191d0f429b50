//! Persistent worker threads for multi-threaded criterion benchmarks: the threads are
//! started once per benchmark (so thread start-up and first-use registration are not timed)
//! and run `iters` operations each when asked, all released together.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// Runs `body` with a function that makes `threads` persistent workers each call `op(worker)`
/// `iters` times and returns the slowest worker's time.
pub fn with_workers<F, B>(threads: usize, op: F, body: B)
where
    F: Fn(usize) + Sync,
    B: FnOnce(&dyn Fn(u64) -> Duration),
{
    let iters = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let go = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    let slowest = Mutex::new(Duration::ZERO);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (iters, stop, go, done, slowest, op) = (&iters, &stop, &go, &done, &slowest, &op);
            s.spawn(move || {
                loop {
                    go.wait();
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let n = iters.load(Ordering::Acquire);
                    let start = Instant::now();
                    for _ in 0..n {
                        op(t);
                    }
                    let elapsed = start.elapsed();
                    {
                        let mut s = slowest.lock().unwrap();
                        *s = (*s).max(elapsed);
                    }
                    done.wait();
                }
            });
        }
        let run = |n: u64| {
            *slowest.lock().unwrap() = Duration::ZERO;
            iters.store(n, Ordering::Release);
            go.wait();
            done.wait();
            *slowest.lock().unwrap()
        };
        body(&run);
        stop.store(true, Ordering::Release);
        go.wait();
    });
}
