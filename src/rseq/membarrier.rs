//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`: restart every in-flight rseq critical
//! section of the process.
//!
//! After [`fence_rseq`] returns, every critical section that was running on another CPU when
//! it was called has either committed or will restart from its abort handler, so a thread
//! that then reads (or takes over) per-slot state sees a quiescent slot as far as
//! critical sections begun earlier are concerned. This is what a drain needs under mm_cid
//! indexing, where no CID-to-CPU map exists to target one CPU.
//!
//! # Registration, early
//!
//! The fence needs a one-time `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ`. Its cost
//! depends on when it is made: while the process has one thread the kernel publishes the new
//! state with a memory barrier (microseconds); once a second thread exists it waits for an RCU
//! grace period so that every runqueue sees it (14 ms measured on the 2-CPU VM of our CI).
//! Every drainable structure needs the registration to choose its access, so it would
//! otherwise land in the middle of a program's first use. The crate therefore registers from
//! an ELF constructor (`.init_array`, as librseq registers rseq from its constructor), before
//! `main` and normally before any thread exists. The registration only makes this process a
//! target of its own membarrier commands, which percid alone issues; a kernel without the
//! command makes the constructor a single `MEMBARRIER_CMD_QUERY`. A library using percid that
//! is `dlopen`ed into a running, threaded process pays the grace period inside `dlopen`
//! instead. A forked child inherits the registration with the address space (checked on
//! Linux 6.18: a fence from a child, threaded or not, succeeds without registering again);
//! an `exec` clears it, and the new image's constructor registers again.

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

/// Run by the dynamic loader before `main` (see the module docs, "Registration, early").
/// Not under Miri, which runs `.init_array` but has no `membarrier` (its tests cover the pure
/// modules only).
#[cfg(not(miri))]
extern "C" fn register_early() {
    let _ = registered();
}

// A function pointer in `.init_array` is called once by the loader (glibc, musl; static and
// dynamic links) before `main`, with the process set up for ordinary Rust code (`OnceLock`,
// `libc::syscall`). `register_early` cannot panic: two syscalls and a `OnceLock`.
#[cfg(not(miri))]
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_EARLY: extern "C" fn() = register_early;

/// Whether the registration was already attempted, without attempting it: `Some(ok)` once
/// it was. With the constructor in place this is `Some(_)` from the start of `main`.
pub fn registration_attempted() -> Option<bool> {
    REGISTERED.get().copied()
}

static REGISTERED: OnceLock<bool> = OnceLock::new();

fn registered() -> bool {
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
