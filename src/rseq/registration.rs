//! Per-thread rseq registration: find glibc's area or register our own, lazily.
//!
//! # Algorithm
//!
//! The first call on a thread (any reader or structure) runs `init_thread`:
//!
//! 1. The process-wide facts are computed once: the kernel's feature size and
//!    alignment (`getauxval(AT_RSEQ_FEATURE_SIZE / AT_RSEQ_ALIGN)`), glibc's exported
//!    `__rseq_size` / `__rseq_offset` (looked up with `dlsym`, since Rust has no stable weak
//!    linkage), and whether the fallback is forced (`PERCID_FORCE_FALLBACK=1` or the
//!    `force-fallback` feature).
//! 2. If glibc registered (`__rseq_size != 0`), the thread's area is at
//!    `thread pointer + __rseq_offset`. glibc 2.35-2.39 export 32 and 2.40 exports 20 for a
//!    32-byte area: both mean an active feature size of `min(32, AT_RSEQ_FEATURE_SIZE)`.
//! 3. Otherwise the thread registers its own 32-byte area, kept in static thread-local
//!    storage (so it outlives every piece of code that runs on the thread), with the `rseq`
//!    syscall; a thread-local guard unregisters it, with the same length, when the thread's
//!    TLS destructors run. The first registration in the process also decides the process
//!    mode: `ENOSYS` (no rseq in the kernel, or a seccomp filter that says so), `EPERM` /
//!    `EACCES` (a filter that forbids it) or any other error switch the process to the
//!    fallback, with the reason kept for [`crate::status()`].
//! 4. A thread without a usable area points at a static area whose `cpu_id` says
//!    "registration failed": readers then return `None` without any extra branch.
//!
//! # Invariants
//!
//! * The thread-local pointer is null (not yet initialised) or points to an area that stays
//!   valid as long as the thread runs: glibc's (in its thread control block), ours (static
//!   TLS), or the static "unregistered" area.
//! * Kernel-owned fields (`cpu_id_start`, `cpu_id`, `node_id`, `mm_cid`) are never written;
//!   they are read with volatile loads. Only the critical sections write `rseq_cs`.
//! * After a fork the child inherits the parent's registration and the thread-local state,
//!   which stay consistent (the kernel keeps the registration of the forking thread).

use super::abi::{self, RseqArea};
use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Who owns the rseq registration of the process's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// glibc registered every thread; percid reads its area.
    Libc,
    /// percid registers each thread itself (glibc did not, e.g. `glibc.pthread.rseq=0`).
    Percid,
    /// No rseq: every structure runs on the portable fallback.
    None(FallbackReason),
}

/// Why the crate runs without rseq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// `PERCID_FORCE_FALLBACK=1` in the environment.
    ForcedByEnv,
    /// Built with the `force-fallback` cargo feature.
    ForcedByFeature,
    /// The kernel answered `ENOSYS`: no rseq support (or a seccomp filter pretending so).
    KernelLacksRseq,
    /// The syscall was refused (`EPERM`/`EACCES`), typically by a seccomp filter.
    Denied(i32),
    /// Registration failed with this errno.
    RegistrationFailed(i32),
    /// glibc registered, but this architecture has no way here to find its area.
    UnsupportedArch,
}

impl std::fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ForcedByEnv => write!(f, "forced by PERCID_FORCE_FALLBACK=1"),
            Self::ForcedByFeature => write!(f, "forced by the `force-fallback` cargo feature"),
            Self::KernelLacksRseq => write!(f, "the kernel has no rseq (ENOSYS)"),
            Self::Denied(e) => write!(f, "the rseq syscall was denied (errno {e})"),
            Self::RegistrationFailed(e) => write!(f, "rseq registration failed (errno {e})"),
            Self::UnsupportedArch => {
                write!(
                    f,
                    "glibc registered rseq, but this architecture cannot locate its area"
                )
            }
        }
    }
}

/// Process-wide facts, computed once.
#[derive(Debug)]
pub(crate) struct Process {
    /// `getauxval(AT_RSEQ_FEATURE_SIZE)`, 0 when the kernel does not report it (< 6.3).
    pub kernel_feature_size: u32,
    /// `getauxval(AT_RSEQ_ALIGN)`, 0 when not reported.
    pub kernel_align: u32,
    /// glibc's `__rseq_size`, `None` when the symbol does not exist (not glibc, or < 2.35).
    pub glibc_rseq_size: Option<u32>,
    /// glibc's `__rseq_offset`.
    pub glibc_rseq_offset: Option<isize>,
    /// The fallback was forced.
    pub forced: Option<FallbackReason>,
}

fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| {
        // SAFETY: getauxval reads the auxiliary vector; unknown keys return 0.
        let kernel_feature_size = unsafe { libc::getauxval(abi::AT_RSEQ_FEATURE_SIZE) } as u32;
        // SAFETY: as above.
        let kernel_align = unsafe { libc::getauxval(abi::AT_RSEQ_ALIGN) } as u32;
        let glibc_rseq_size = lookup::<u32>(c"__rseq_size");
        let glibc_rseq_offset = lookup::<isize>(c"__rseq_offset");
        let forced = if cfg!(feature = "force-fallback") {
            Some(FallbackReason::ForcedByFeature)
        } else if std::env::var_os("PERCID_FORCE_FALLBACK").is_some_and(|v| v == "1") {
            Some(FallbackReason::ForcedByEnv)
        } else {
            None
        };
        Process {
            kernel_feature_size,
            kernel_align,
            glibc_rseq_size,
            glibc_rseq_offset,
            forced,
        }
    })
}

/// Reads a `const` data symbol exported by the C library, if it exists.
fn lookup<T: Copy>(name: &std::ffi::CStr) -> Option<T> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no preconditions.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: glibc defines `__rseq_size` as `const unsigned int` and `__rseq_offset` as
    // `const ptrdiff_t`; the symbol is properly aligned and initialised before main.
    Some(unsafe { ptr::read(p as *const T) })
}

/// The process mode, decided on the first thread initialisation.
fn owner_cell() -> &'static OnceLock<Owner> {
    static OWNER: OnceLock<Owner> = OnceLock::new();
    &OWNER
}

/// Who owns the registration (initialises the calling thread if needed).
pub fn owner() -> Owner {
    init_thread_if_needed();
    *owner_cell()
        .get()
        .expect("initialised by init_thread_if_needed")
}

/// Active feature size, published once the process mode is decided (0 until then and
/// when rseq is not in use). A relaxed load: the value never changes once set.
static ACTIVE_FEATURE_SIZE: AtomicU32 = AtomicU32::new(0);

/// Active feature size: how many bytes of the area the kernel keeps current.
/// 0 when rseq is not in use.
#[inline]
pub fn feature_size() -> u32 {
    init_thread_if_needed();
    ACTIVE_FEATURE_SIZE.load(Ordering::Relaxed)
}

/// Active feature size without initialising the calling thread (for fast paths that have
/// just read the thread's area, which implies initialisation).
#[inline]
pub(crate) fn feature_size_relaxed() -> u32 {
    ACTIVE_FEATURE_SIZE.load(Ordering::Relaxed)
}

fn compute_feature_size(owner: Owner) -> u32 {
    match owner {
        Owner::None(_) => 0,
        Owner::Libc => {
            let p = process();
            let kernel = if p.kernel_feature_size == 0 {
                20
            } else {
                p.kernel_feature_size
            };
            match p.glibc_rseq_size.unwrap_or(0) {
                20 | 32 => kernel.min(32),
                n => n.min(kernel),
            }
        }
        Owner::Percid => own_registration_len().min(effective_kernel_feature_size()),
    }
}

fn effective_kernel_feature_size() -> u32 {
    match process().kernel_feature_size {
        0 => 20,
        n => n,
    }
}

/// The length we register our own area with: the original 32-byte ABI size, which every
/// kernel accepts and which covers `node_id` and `mm_cid`.
fn own_registration_len() -> u32 {
    abi::ORIG_RSEQ_SIZE
}

/// `getauxval(AT_RSEQ_FEATURE_SIZE)` (0 if unknown).
pub(crate) fn kernel_feature_size() -> u32 {
    process().kernel_feature_size
}

/// `getauxval(AT_RSEQ_ALIGN)` (0 if unknown).
pub(crate) fn kernel_align() -> u32 {
    process().kernel_align
}

/// glibc's `__rseq_size`, if exported.
pub(crate) fn glibc_rseq_size() -> Option<u32> {
    process().glibc_rseq_size
}

/// The area readers see on a thread without rseq: `cpu_id` says registration failed.
/// Never written (it lives in read-only memory: no `UnsafeCell`).
static UNREGISTERED: RseqArea = RseqArea {
    cpu_id_start: 0,
    cpu_id: abi::CPU_ID_REGISTRATION_FAILED,
    rseq_cs: 0,
    flags: 0,
    node_id: 0,
    mm_cid: 0,
    _reserved: 0,
};

/// Our own area, when we register. `UnsafeCell`: the kernel writes it behind our back.
struct OwnArea(UnsafeCell<RseqArea>);

thread_local! {
    /// The thread's area: null until [`init_thread`] ran.
    static AREA: Cell<*const RseqArea> = const { Cell::new(ptr::null()) };
    /// Storage for our own registration (static TLS: valid as long as the thread runs).
    static OWN_AREA: OwnArea = const { OwnArea(UnsafeCell::new(RseqArea::new())) };
    /// Unregisters our own area when the thread's TLS destructors run.
    static OWN_GUARD: OwnRegistrationGuard = const { OwnRegistrationGuard { registered_len: Cell::new(0) } };
}

/// Our registration on this thread: the length it was registered with (0 when none), which
/// unregistering must repeat.
struct OwnRegistrationGuard {
    registered_len: Cell<u32>,
}

impl Drop for OwnRegistrationGuard {
    fn drop(&mut self) {
        let len = self.registered_len.get();
        if len == 0 {
            return;
        }
        // From here on, readers on this thread see the unregistered area.
        let _ = AREA.try_with(|a| a.set(&UNREGISTERED));
        let _ = OWN_AREA.try_with(|own| {
            // SAFETY: we registered exactly this area with exactly this length and signature
            // on this thread; unregistering has no other effect.
            let rc = unsafe { rseq_syscall(own.0.get(), len, abi::RSEQ_FLAG_UNREGISTER) };
            debug_assert_eq!(rc, 0, "rseq unregister failed");
        });
        self.registered_len.set(0);
    }
}

/// Raw `rseq(2)`.
///
/// # Safety
/// `area` must stay valid and writable by the kernel for as long as it is registered.
unsafe fn rseq_syscall(area: *mut RseqArea, len: u32, flags: i32) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { libc::syscall(libc::SYS_rseq, area, len, flags, abi::RSEQ_SIG) }
}

/// The calling thread's area (initialising it on first use). Never null.
#[inline(always)]
pub(crate) fn area() -> *const RseqArea {
    let p = AREA.try_with(|a| a.get()).unwrap_or(&UNREGISTERED);
    if p.is_null() { init_thread() } else { p }
}

/// Ensures the calling thread is initialised.
pub(crate) fn init_thread_if_needed() {
    let _ = area();
}

#[cold]
#[inline(never)]
fn init_thread() -> *const RseqArea {
    let p = process();
    let area = match p.forced {
        Some(reason) => {
            let _ = owner_cell().set(Owner::None(reason));
            &UNREGISTERED as *const RseqArea
        }
        None => match p.glibc_rseq_size {
            Some(size) if size != 0 => libc_area(p),
            _ => own_area(),
        },
    };
    if let Some(&owner) = owner_cell().get() {
        ACTIVE_FEATURE_SIZE.store(compute_feature_size(owner), Ordering::Relaxed);
    }
    let _ = AREA.try_with(|a| a.set(area));
    area
}

/// glibc's area of this thread: thread pointer + `__rseq_offset`.
fn libc_area(p: &Process) -> *const RseqArea {
    match (thread_pointer(), p.glibc_rseq_offset) {
        (Some(tp), Some(off)) => {
            let _ = owner_cell().set(Owner::Libc);
            tp.wrapping_offset(off) as *const RseqArea
        }
        _ => {
            let _ = owner_cell().set(Owner::None(FallbackReason::UnsupportedArch));
            &UNREGISTERED
        }
    }
}

/// Registers this thread's own area, deciding the process mode on the first attempt.
fn own_area() -> *const RseqArea {
    if let Some(Owner::None(_)) = owner_cell().get() {
        return &UNREGISTERED;
    }
    let Ok(area) = OWN_AREA.try_with(|own| own.0.get()) else {
        // TLS is being torn down: no registration for this thread.
        return &UNREGISTERED;
    };
    // The guard must be alive to unregister later; if it cannot be, do not register.
    if OWN_GUARD.try_with(|_| ()).is_err() {
        return &UNREGISTERED;
    }
    // SAFETY: `area` is static thread-local storage of this thread: 32-byte aligned, 32 bytes
    // long, valid until the thread exits; OWN_GUARD unregisters it before TLS teardown ends.
    let len = own_registration_len();
    let rc = unsafe { rseq_syscall(area, len, 0) };
    if rc == 0 {
        let _ = OWN_GUARD.try_with(|g| g.registered_len.set(len));
        let _ = owner_cell().set(Owner::Percid);
        return area;
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let reason = match errno {
        libc::ENOSYS => FallbackReason::KernelLacksRseq,
        libc::EPERM | libc::EACCES => FallbackReason::Denied(errno),
        _ => FallbackReason::RegistrationFailed(errno),
    };
    // Only the first decision sticks: a later per-thread failure leaves that one thread
    // unregistered (structures send it to their shared overflow path).
    let _ = owner_cell().set(Owner::None(reason));
    &UNREGISTERED
}

/// The thread pointer (`%fs` base on x86_64, `tpidr_el0` on aarch64).
#[inline]
fn thread_pointer() -> Option<*const u8> {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: on x86_64 Linux the TCB's first word holds its own address (the TLS ABI's
        // self-pointer), so reading %fs:0 yields the thread pointer; no memory is written.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags));
        }
        Some(tp as *const u8)
    }
    #[cfg(target_arch = "aarch64")]
    {
        let tp: usize;
        // SAFETY: reading the thread-pointer system register has no side effects.
        unsafe {
            core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags));
        }
        Some(tp as *const u8)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}
