//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`: restart every in-flight rseq critical
//! section of the process.
//!
//! After [`fence_rseq`] returns, every critical section that was running on another CPU when
//! it was called has either committed or will restart from its abort handler, so a thread
//! that then reads (or takes over) per-slot state sees a quiescent slot as far as
//! critical sections begun earlier are concerned. This is what a drain needs under mm_cid
//! indexing, where no CID-to-CPU map exists to target one CPU.

use super::abi::membarrier as cmd;
use std::sync::OnceLock;

fn membarrier(command: libc::c_int, flags: libc::c_uint) -> libc::c_long {
    // SAFETY: membarrier takes integer arguments only (cpu_id is unused for these commands).
    unsafe { libc::syscall(libc::SYS_membarrier, command, flags, 0 as libc::c_int) }
}

/// Whether the kernel supports `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ` (queried once).
pub fn rseq_fence_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let mask = membarrier(cmd::CMD_QUERY, 0);
        mask >= 0 && (mask & cmd::CMD_PRIVATE_EXPEDITED_RSEQ as libc::c_long) != 0
    })
}

/// Whether [`fence_rseq`] works in this process: the command is supported and the process
/// registered for it (done here, once).
pub fn rseq_fence_ready() -> bool {
    registered()
}

fn registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        rseq_fence_supported() && membarrier(cmd::CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0) == 0
    })
}

/// Restarts every rseq critical section of this process currently running on another CPU.
/// Returns `false` (and does nothing) where the kernel lacks the command; callers then need
/// another way to quiesce (see [`crate::list::List::drain`]).
pub fn fence_rseq() -> bool {
    registered() && membarrier(cmd::CMD_PRIVATE_EXPEDITED_RSEQ, 0) == 0
}
