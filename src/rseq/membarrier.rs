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
//!
//! # Opting out of the early registration
//!
//! The constructor runs in every process that links percid, before `main`, whether or not
//! the program ever uses a drainable structure. Under a seccomp policy whose default action
//! kills (or logs) an unlisted system call, that is a `membarrier` call the program did not
//! ask for. Two switches turn it off:
//!
//! * the cargo feature `no-early-membarrier` (the constructor is not compiled in);
//! * the environment variable `PERCID_EARLY_MEMBARRIER`, read by the constructor: `1` (the
//!   default when unset) registers early, `0` does not. Any other value is an error: the
//!   constructor cannot report it, so it does not register early (the safe side, for a
//!   sandbox) and [`early_registration`] (and [`crate::status()`]) show the bad value.
//!
//! The trade-off: without the early registration, the first drainable structure (`List`,
//! `Limit`, `BatchedCounter`, `PerCpuLock`) registers when it chooses its access. Once the
//! process has a second thread that waits for an RCU grace period (milliseconds, 14 ms
//! measured here) in the middle of that first use; and a policy that denies `membarrier`
//! then simply makes those structures use leases instead of rseq (they are correct either
//! way). A policy that *kills* on `membarrier` still kills at that first use: opting out
//! moves the call, it does not remove it from programs that drain.

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

/// What became of the registration before `main` (module docs, "Opting out").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyRegistration {
    /// The constructor made the registration attempt (see [`registration_attempted`] for
    /// its outcome).
    Attempted,
    /// Skipped: `PERCID_EARLY_MEMBARRIER=0`.
    DisabledByEnv,
    /// Skipped: built with the `no-early-membarrier` feature.
    DisabledByFeature,
    /// Skipped: `PERCID_EARLY_MEMBARRIER` held something other than `0` or `1`.
    InvalidEnv,
    /// The constructor did not run (the crate was not loaded by the dynamic loader's
    /// constructor pass, e.g. some static-linking setups).
    NotRun,
}

impl std::fmt::Display for EarlyRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Attempted => "before main",
            Self::DisabledByEnv => "not before main (PERCID_EARLY_MEMBARRIER=0)",
            Self::DisabledByFeature => "not before main (`no-early-membarrier` feature)",
            Self::InvalidEnv => {
                "not before main: invalid PERCID_EARLY_MEMBARRIER (expected 0 or 1)"
            }
            Self::NotRun => "not before main (the constructor did not run)",
        })
    }
}

/// 0: the constructor did not run; otherwise 1 + the index of the outcome below.
static EARLY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

const EARLY_OUTCOMES: [EarlyRegistration; 4] = [
    EarlyRegistration::Attempted,
    EarlyRegistration::DisabledByEnv,
    EarlyRegistration::DisabledByFeature,
    EarlyRegistration::InvalidEnv,
];

/// What the constructor did about the registration (module docs, "Opting out").
pub fn early_registration() -> EarlyRegistration {
    match EARLY.load(std::sync::atomic::Ordering::Relaxed) {
        0 => EarlyRegistration::NotRun,
        n => EARLY_OUTCOMES[n as usize - 1],
    }
}

/// `PERCID_EARLY_MEMBARRIER`, strictly: `None` when unset, `Some(Ok(b))` for `1` / `0`,
/// `Some(Err(()))` for anything else.
fn early_env(value: Option<&[u8]>) -> Option<Result<bool, ()>> {
    value.map(|v| match v {
        b"1" => Ok(true),
        b"0" => Ok(false),
        _ => Err(()),
    })
}

/// Run by the dynamic loader before `main` (see the module docs, "Registration, early").
/// Not under Miri, which runs `.init_array` but has no `membarrier` (its tests cover the pure
/// modules only).
#[cfg(not(miri))]
extern "C" fn register_early() {
    let outcome = if cfg!(feature = "no-early-membarrier") {
        EarlyRegistration::DisabledByFeature
    } else {
        // SAFETY: getenv with a NUL-terminated name; before `main` no other thread can be
        // changing the environment. The result, if not null, is a NUL-terminated string
        // that stays valid while we read it.
        let value = unsafe {
            let p = libc::getenv(c"PERCID_EARLY_MEMBARRIER".as_ptr());
            (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_bytes())
        };
        match early_env(value) {
            None | Some(Ok(true)) => EarlyRegistration::Attempted,
            Some(Ok(false)) => EarlyRegistration::DisabledByEnv,
            Some(Err(())) => EarlyRegistration::InvalidEnv,
        }
    };
    if outcome == EarlyRegistration::Attempted {
        let _ = registered();
    }
    let index = EARLY_OUTCOMES
        .iter()
        .position(|&o| o == outcome)
        .expect("every outcome is listed");
    EARLY.store(index as u8 + 1, std::sync::atomic::Ordering::Relaxed);
}

// A function pointer in `.init_array` is called once by the loader (glibc, musl; static and
// dynamic links) before `main`, with the process set up for ordinary Rust code (`OnceLock`,
// `libc::syscall`). `register_early` cannot panic: `getenv`, two syscalls and a `OnceLock`.
#[cfg(not(miri))]
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_EARLY: extern "C" fn() = register_early;

/// Whether the registration was already attempted, without attempting it: `Some(ok)` once
/// it was. With the constructor in place (and not opted out, [`early_registration`]) this is
/// `Some(_)` from the start of `main`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_out_variable_is_parsed_strictly() {
        assert_eq!(early_env(None), None);
        assert_eq!(early_env(Some(b"1")), Some(Ok(true)));
        assert_eq!(early_env(Some(b"0")), Some(Ok(false)));
        for bad in [&b""[..], b"no", b"false", b" 0", b"00", b"0 ", b"2"] {
            assert_eq!(early_env(Some(bad)), Some(Err(())), "{bad:?}");
        }
    }
}
