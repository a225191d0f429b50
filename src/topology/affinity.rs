//! Pinning threads and reading affinity masks: `sched_setaffinity(2)`, `sched_getaffinity(2)`
//! and `sched_getcpu(3)`, with buffers sized for the set or grown to the kernel's mask size.
//!
//! The raw system calls are used (through `libc::syscall`) rather than the glibc wrappers, so
//! the mask is passed as the kernel's array of `unsigned long` of any length, with no
//! `cpu_set_t` (1024 CPUs) involved.

use super::{CpuSet, TopologyError};

/// Longest mask, in bits, [`current_thread_affinity`] tries before giving up: 2^22 CPUs,
/// [`CpuSet::MAX_CPU`] + 1.
const MAX_MASK_BITS: usize = CpuSet::MAX_CPU + 1;

/// Pins the calling thread to `cpu` alone.
///
/// Errors: [`TopologyError::Syscall`] with `EINVAL` when `cpu` is not online or not allowed
/// for this thread's cpuset cgroup.
pub fn pin_current_thread_to_cpu(cpu: usize) -> Result<(), TopologyError> {
    if cpu > CpuSet::MAX_CPU {
        return Err(TopologyError::CpuOutOfRange { cpu });
    }
    pin_current_thread(&std::iter::once(cpu).collect())
}

/// Pins the calling thread to the CPUs of `set` (the kernel then keeps it on those of them that
/// are online and allowed by its cpuset).
///
/// Errors: [`TopologyError::EmptyCpuSet`] for an empty set; [`TopologyError::Syscall`] when the
/// kernel refuses (`EINVAL`: no CPU of the set is online and allowed).
pub fn pin_current_thread(set: &CpuSet) -> Result<(), TopologyError> {
    if set.is_empty() {
        return Err(TopologyError::EmptyCpuSet);
    }
    let mask = set.to_kernel_mask(1);
    let bytes = std::mem::size_of_val(mask.as_slice());
    // SAFETY: `mask` is a live, initialised buffer of exactly `bytes` bytes, which is all the
    // kernel reads (it copies `min(bytes, its own mask size)` bytes from user memory and
    // zero-fills the rest). pid 0 (passed as a long, the width the variadic syscall() reads)
    // names the calling thread. The call writes no user memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            0 as libc::c_long,
            bytes,
            mask.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(TopologyError::Syscall {
            call: "sched_setaffinity",
            source: std::io::Error::last_os_error(),
        })
    }
}

/// The calling thread's affinity mask (`sched_getaffinity(2)`).
///
/// The buffer starts at the size of the possible CPUs and doubles while the kernel answers
/// `EINVAL` (its mask, `nr_cpu_ids` bits, is longer than the buffer), up to 2^22 CPUs.
pub fn current_thread_affinity() -> Result<CpuSet, TopologyError> {
    thread_affinity(0)
}

/// The affinity mask of thread `tid` of any process (`sched_getaffinity(2)`; 0 names the
/// calling thread), sized as for [`current_thread_affinity`].
///
/// Errors: [`TopologyError::Syscall`] (`ESRCH`: no such thread, for instance one that has
/// exited; `EPERM`: not allowed to read it).
pub fn thread_affinity(tid: libc::pid_t) -> Result<CpuSet, TopologyError> {
    let bits = libc::c_ulong::BITS as usize;
    let mut words = crate::util::possible_cpu_count().div_ceil(bits).max(1);
    loop {
        let mut mask: Vec<libc::c_ulong> = vec![0; words];
        let bytes = std::mem::size_of_val(mask.as_slice());
        // SAFETY: `mask` is a live, writable buffer of exactly `bytes` bytes, a multiple of
        // `sizeof(unsigned long)` as the kernel requires; the kernel writes at most `bytes`
        // bytes into it (it fails with EINVAL rather than write more). The thread id is
        // passed as a long, the width the variadic syscall() reads; 0 names the caller.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                tid as libc::c_long,
                bytes,
                mask.as_mut_ptr(),
            )
        };
        if rc >= 0 {
            // The raw call returns the number of bytes it copied; the rest stayed zero.
            return Ok(CpuSet::from_kernel_mask(&mask));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) && words * bits < MAX_MASK_BITS {
            words *= 2;
            continue;
        }
        return Err(TopologyError::Syscall {
            call: "sched_getaffinity",
            source: err,
        });
    }
}

/// The CPUs this process may run on.
///
/// Linux keeps affinity per thread; this is the calling thread's mask, which is the process's
/// as long as no thread narrowed its own (a thread started by a pinned thread inherits the
/// pin). Call it from the main thread, before pinning anything, for the process-wide answer.
pub fn allowed_cpus() -> Result<CpuSet, TopologyError> {
    current_thread_affinity()
}

/// The threads of this process and the union of their affinity masks, read from
/// `/proc/self/task` and `sched_getaffinity(2)` of each thread: one directory read and one
/// system call per thread. Threads that exit during the read are skipped.
///
/// This is the set the kernel's `mm_cid` allocator bounds IDs by (it keeps the union of the
/// masks its threads ever had; this reads the current ones).
pub fn process_threads_and_cpus() -> Result<(usize, CpuSet), TopologyError> {
    let dir = std::fs::read_dir("/proc/self/task").map_err(|source| TopologyError::Syscall {
        call: "read_dir(/proc/self/task)",
        source,
    })?;
    let mut threads = 0;
    let mut union = CpuSet::new();
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        match thread_affinity(tid) {
            Ok(set) => {
                threads += 1;
                union = union.union(&set);
            }
            Err(TopologyError::Syscall { source, .. })
                if source.raw_os_error() == Some(libc::ESRCH) =>
            {
                continue; // exited meanwhile
            }
            Err(e) => return Err(e),
        }
    }
    Ok((threads, union))
}

/// The CPU the calling thread runs on now (`sched_getcpu(3)`); stale as soon as it returns
/// unless the thread is pinned to one CPU.
pub fn current_cpu() -> Result<usize, TopologyError> {
    // SAFETY: sched_getcpu takes no arguments and has no memory-safety preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).map_err(|_| TopologyError::Syscall {
        call: "sched_getcpu",
        source: std::io::Error::last_os_error(),
    })
}
