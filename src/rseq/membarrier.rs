//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`: restart every in-flight rseq critical
//! section of the process.
//!
//! After [`fence_rseq`] returns, every critical section that was running on another CPU when
//! it was called has either committed or will restart from its abort handler, so a thread
//! that then reads (or takes over) per-slot state sees a quiescent slot as far as
//! critical sections begun earlier are concerned. This is what a drain needs under mm_cid
//! indexing, where no CID-to-CPU map exists to target one CPU.
//!
//! # One CPU
//!
//! [`fence_rseq_on`] adds `MEMBARRIER_CMD_FLAG_CPU` (Linux 5.10+) to restart only the
//! sections running on one CPU: one IPI instead of one per CPU running a thread of the
//! process. It suffices for a slot indexed by `cpu_id` (a section commits to slot `c` only
//! while it runs on CPU `c`, and one preempted or migrated restarts anyway), not for mm_cid or
//! user-space CIDs, which are tied to no CPU. A kernel that refuses the flag (`EINVAL`) gets
//! the process-wide fence instead, and is not asked again. [`fence_stats`] counts the fences
//! by kind.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn membarrier(command: libc::c_int, flags: libc::c_uint) -> libc::c_long {
    membarrier_on(command, flags, 0)
}

/// `membarrier(command, flags, cpu_id)`: `cpu_id` is read by the kernel only with
/// [`cmd::CMD_FLAG_CPU`].
fn membarrier_on(command: libc::c_int, flags: libc::c_uint, cpu_id: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes integer arguments only; no memory is passed to the kernel.
    unsafe { libc::syscall(libc::SYS_membarrier, command, flags, cpu_id) }
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
    let ok = registered() && membarrier(cmd::CMD_PRIVATE_EXPEDITED_RSEQ, 0) == 0;
    if ok {
        PROCESS_WIDE.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// Which fence [`fence_rseq_on`] issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceKind {
    /// Every CPU running a thread of the process ([`fence_rseq`]).
    ProcessWide,
    /// One CPU: `MEMBARRIER_CMD_FLAG_CPU`.
    OneCpu,
}

/// The process's fences so far, by kind ([`fence_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FenceStats {
    /// Process-wide fences issued (including one-CPU requests that fell back).
    pub process_wide: u64,
    /// One-CPU fences issued.
    pub one_cpu: u64,
    /// Whether the kernel refused `MEMBARRIER_CMD_FLAG_CPU` (`EINVAL`, before Linux 5.10): every
    /// fence is process-wide since.
    pub one_cpu_refused: bool,
}

static PROCESS_WIDE: AtomicU64 = AtomicU64::new(0);
static ONE_CPU: AtomicU64 = AtomicU64::new(0);
/// The kernel refused `MEMBARRIER_CMD_FLAG_CPU` once: never ask again.
static ONE_CPU_REFUSED: AtomicBool = AtomicBool::new(false);

/// The fences this process issued through percid, by kind.
pub fn fence_stats() -> FenceStats {
    FenceStats {
        process_wide: PROCESS_WIDE.load(Ordering::Relaxed),
        one_cpu: ONE_CPU.load(Ordering::Relaxed),
        one_cpu_refused: ONE_CPU_REFUSED.load(Ordering::Relaxed),
    }
}

/// Restarts the rseq critical sections of this process that may touch a slot indexed by CPU
/// `cpu` (a `cpu_id` slot): only those running on that CPU, since a section begun there that
/// was preempted or migrated restarts anyway, and a section elsewhere cannot commit to that
/// slot (it checks its `cpu_id`). Falls back to [`fence_rseq`] where the kernel refuses the
/// one-CPU flag (`EINVAL`, Linux before 5.10), and remembers the refusal. `None` when no
/// fence could be issued.
pub fn fence_rseq_on(cpu: usize) -> Option<FenceKind> {
    if !registered() {
        return None;
    }
    fence_on_with(cpu, &ONE_CPU_REFUSED, |flags, cpu| {
        if membarrier_on(cmd::CMD_PRIVATE_EXPEDITED_RSEQ, flags, cpu) == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    })
}

/// [`fence_rseq_on`] with the system call (`raw(flags, cpu) -> Ok or Err(errno)`) and the
/// refusal flag as parameters (tests refuse the flag).
fn fence_on_with(
    cpu: usize,
    refused: &AtomicBool,
    mut raw: impl FnMut(libc::c_uint, libc::c_int) -> Result<(), i32>,
) -> Option<FenceKind> {
    if !refused.load(Ordering::Relaxed)
        && let Ok(cpu_arg) = libc::c_int::try_from(cpu)
    {
        match raw(cmd::CMD_FLAG_CPU, cpu_arg) {
            Ok(()) => {
                ONE_CPU.fetch_add(1, Ordering::Relaxed);
                return Some(FenceKind::OneCpu);
            }
            // The flag (not the command: it was registered) is unknown to this kernel.
            Err(libc::EINVAL) => refused.store(true, Ordering::Relaxed),
            Err(_) => {}
        }
    }
    raw(0, 0).ok()?;
    PROCESS_WIDE.fetch_add(1, Ordering::Relaxed);
    Some(FenceKind::ProcessWide)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_cpu_flag_falls_back_to_the_process_wide_fence_and_is_remembered() {
        let refused = AtomicBool::new(false);
        let mut calls = Vec::new();
        // A kernel before 5.10: the flag is EINVAL, the plain command works.
        let old_kernel = |calls: &mut Vec<(u32, i32)>, flags, cpu| {
            calls.push((flags, cpu));
            if flags != 0 {
                Err(libc::EINVAL)
            } else {
                Ok(())
            }
        };
        let before = fence_stats();
        let k = fence_on_with(1, &refused, |f, c| old_kernel(&mut calls, f, c));
        assert_eq!(k, Some(FenceKind::ProcessWide));
        assert_eq!(calls, [(cmd::CMD_FLAG_CPU, 1), (0, 0)]);
        assert!(refused.load(Ordering::Relaxed));
        // Remembered: the next fence does not ask for one CPU again.
        calls.clear();
        let k = fence_on_with(0, &refused, |f, c| old_kernel(&mut calls, f, c));
        assert_eq!(
            (k, &calls[..]),
            (Some(FenceKind::ProcessWide), &[(0, 0)][..])
        );
        let after = fence_stats();
        assert!(after.process_wide >= before.process_wide + 2);
        // A kernel that takes the flag: one CPU, counted as such.
        let fresh = AtomicBool::new(false);
        let k = fence_on_with(3, &fresh, |f, c| {
            assert_eq!((f, c), (cmd::CMD_FLAG_CPU, 3));
            Ok(())
        });
        assert_eq!(k, Some(FenceKind::OneCpu));
        assert!(fence_stats().one_cpu > after.one_cpu);
        // Another error than EINVAL (say ENOMEM) falls back for this fence but is not a
        // refusal of the flag; a failing plain command is a failed fence.
        let k = fence_on_with(
            3,
            &fresh,
            |f, _| if f != 0 { Err(libc::ENOMEM) } else { Ok(()) },
        );
        assert_eq!(k, Some(FenceKind::ProcessWide));
        assert!(!fresh.load(Ordering::Relaxed));
        assert_eq!(fence_on_with(3, &fresh, |_, _| Err(libc::EPERM)), None);
    }

    #[test]
    fn a_one_cpu_fence_works_on_this_kernel() {
        if !rseq_fence_ready() {
            return;
        }
        let before = fence_stats();
        let k = fence_rseq_on(0).expect("the registered command works");
        let after = fence_stats();
        match k {
            FenceKind::OneCpu => assert!(after.one_cpu > before.one_cpu),
            FenceKind::ProcessWide => {
                assert!(after.one_cpu_refused && after.process_wide > before.process_wide)
            }
        }
        // A CPU number beyond any CPU is no error (the kernel has nothing to restart).
        assert_eq!(
            membarrier_on(cmd::CMD_PRIVATE_EXPEDITED_RSEQ, cmd::CMD_FLAG_CPU, 1 << 20),
            0
        );
    }

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
