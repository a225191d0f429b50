//! The real front's clock and CPU number.

/// Nanoseconds on `CLOCK_MONOTONIC_COARSE`: a few nanoseconds to read through the vDSO, with a
/// resolution of one scheduler tick (1-10 ms), ample for an expiry period of about 100 ms.
/// Falls back to `CLOCK_MONOTONIC` where the coarse clock is missing.
#[inline]
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; clock_gettime writes only into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        // SAFETY: as above.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The CPU the calling thread runs on, the one CPU source of the real front.
///
/// The rseq `cpu_id` when the thread has an rseq area (one thread-local and one volatile
/// load), otherwise `sched_getcpu()` (forced fallback, no rseq). Returns 0 if the CPU cannot
/// be read: any CPU number is correct, only locality depends on it.
#[inline]
pub(super) fn current_cpu() -> u32 {
    crate::rseq::current_cpu().unwrap_or(0)
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn clock_is_monotonic_and_cpu_is_possible() {
        let a = super::now_ns();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = super::now_ns();
        assert!(b > a, "{a} then {b}");
        assert!((super::current_cpu() as usize) < crate::util::possible_cpu_count());
    }
}
