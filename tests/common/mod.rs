//! Shared test machinery: the environment matrix (run a test again in child processes with
//! glibc's registration disabled, and with the fallback forced), stress sizes, and fault
//! injection (yields, short sleeps, signals fired at the worker threads).
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Set in child processes started by [`matrix`].
pub const CHILD_ENV: &str = "PERCID_TEST_CHILD";

/// The variants [`matrix`] runs in children: own registration, forced fallback.
pub const VARIANTS: [(&str, &str, &str); 2] = [
    ("own-registration", "GLIBC_TUNABLES", "glibc.pthread.rseq=0"),
    ("forced-fallback", "PERCID_FORCE_FALLBACK", "1"),
];

/// Runs `body` here, then (unless this is already a child) re-runs the test `name` of this
/// test binary in a child process per [`VARIANTS`] entry, asserting each child passes.
pub fn matrix(name: &str, body: impl FnOnce()) {
    body();
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    for (variant, key, value) in VARIANTS {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, variant)
            // Each variant sets exactly its own switch (the parent may run under either).
            .env_remove("PERCID_FORCE_FALLBACK")
            .env_remove("GLIBC_TUNABLES")
            .env(key, value)
            .output()
            .expect("spawn child test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "variant {variant} of {name} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "variant {variant} of {name} ran no test:\n{stdout}"
        );
    }
}

/// Which variant this process is (for assertions that depend on it).
pub fn variant() -> String {
    std::env::var(CHILD_ENV).unwrap_or_else(|_| "in-process".into())
}

/// Whether `PERCID_STRESS=long` asks for the long variant.
pub fn long() -> bool {
    std::env::var("PERCID_STRESS").is_ok_and(|v| v == "long")
}

/// Operations per thread: bounded for CI, large for `PERCID_STRESS=long`.
pub fn ops_per_thread(short: usize) -> usize {
    if long() { short * 100 } else { short }
}

/// 6 x nproc, as the kernel's param_test.
pub fn stress_threads() -> usize {
    6 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Injected faults at operation `i` of a worker: a yield every 32, a short sleep every 2048.
#[inline]
pub fn inject(i: usize) {
    if i % 32 == 31 {
        std::thread::yield_now();
    }
    if i % 2048 == 2047 {
        std::thread::sleep(Duration::from_micros(50));
    }
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

fn install_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a valid handler and SA_RESTART; the handler only
        // does an atomic increment (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
    });
}

/// Runs `threads` workers `work(thread_index)` concurrently while another thread fires
/// SIGUSR1 at them; returns how many signals were delivered.
pub fn run_with_signals<F>(threads: usize, work: F) -> usize
where
    F: Fn(usize) + Sync,
{
    install_handler();
    let before = SIGNALS.load(Ordering::Relaxed);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let ids: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|s| {
        let mut workers = Vec::with_capacity(threads);
        for t in 0..threads {
            let (work, done, ids) = (&work, &done, &ids);
            workers.push(s.spawn(move || {
                // SAFETY: pthread_self has no preconditions.
                ids[t].store(unsafe { libc::pthread_self() } as u64, Ordering::Release);
                work(t);
                done.fetch_add(1, Ordering::Release);
            }));
        }
        let (done, stop, ids) = (&done, &stop, &ids);
        let sender = s.spawn(move || {
            // The workers' handles are kept (not detached) and joined only after this thread
            // is joined, so every pthread_t stays valid while it is signalled.
            while done.load(Ordering::Acquire) < threads && !stop.load(Ordering::Relaxed) {
                for id in ids
                    .iter()
                    .map(|i| i.load(Ordering::Acquire))
                    .filter(|&i| i != 0)
                {
                    // SAFETY: `id` names a thread of this scope that has not been joined.
                    unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR1) };
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        sender.join().unwrap();
        for w in workers {
            w.join().unwrap();
        }
    });
    SIGNALS.load(Ordering::Relaxed) - before
}
