//! Per-thread rseq registration: find glibc's area or register our own, lazily.
//!
//! # Algorithm
//!
//! The first call on a thread (any reader or structure) runs `init_thread`:
//!
//! 1. The process-wide facts are computed once: the kernel's feature size and
//!    alignment (`getauxval(AT_RSEQ_FEATURE_SIZE / AT_RSEQ_ALIGN)`), glibc's exported
//!    `__rseq_size` / `__rseq_offset` (looked up with `dlsym`, since Rust has no stable weak
//!    linkage), whether `dlsym` can see the C library at all (it cannot in a statically linked
//!    program), and whether the fallback is forced (`PERCID_FORCE_FALLBACK=1` or the
//!    `force-fallback` feature).
//! 2. If glibc registered (`__rseq_size != 0`), the thread's area is at
//!    `thread pointer + __rseq_offset`. glibc 2.35-2.39 export 32 and 2.40 exports 20 for a
//!    32-byte area: both mean an active feature size of `min(32, AT_RSEQ_FEATURE_SIZE)`. If
//!    glibc's registration failed on this thread (`cpu_id` reads "registration failed"), the
//!    thread is treated as unregistered.
//! 3. Otherwise the thread registers its own area, kept in static thread-local storage, with
//!    the `rseq` syscall, `max(32, AT_RSEQ_FEATURE_SIZE)` bytes long rounded up to
//!    `AT_RSEQ_ALIGN` ([`own_layout`]; see "Registration length" below). `EBUSY` means this very area is already registered on
//!    this thread (a signal handler ran the registration between our syscall and our
//!    bookkeeping): that is success. The first registration in the process also decides the
//!    process mode: `ENOSYS` (no rseq in the kernel, or a seccomp filter that says so),
//!    `EPERM` / `EACCES` (a filter that forbids it), a statically linked C library that
//!    registered its own area we cannot locate, or any other error switch the process to the
//!    fallback, with the reason kept for [`crate::status()`].
//!
//! # Registration length
//!
//! The kernel accepts two kinds of registration: the original 32 bytes (32-byte aligned), or
//! at least `AT_RSEQ_FEATURE_SIZE` bytes aligned to `AT_RSEQ_ALIGN` (Linux 6.3,
//! `rseq_length_valid` in `kernel/rseq.c` since 7.1). Since Linux 7.1 ("rseq: Reenable
//! performance optimizations conditionally", "rseq: Implement read only ABI enforcement for
//! optimized RSEQ V2 mode", Cc stable) the length also picks the mode: a registration longer
//! than 32 bytes gets the optimized **V2** mode (ID fields written only when they change,
//! `rseq_cs` evaluated only after a preemption or before a signal, read-only fields enforced
//! by killing the process, time-slice extensions), a 32-byte one stays in **legacy** mode.
//!
//! percid registers `max(32, AT_RSEQ_FEATURE_SIZE)` bytes rounded up to `AT_RSEQ_ALIGN`
//! ([`own_layout`], a pure function), from a 256-byte, 256-byte-aligned thread-local area.
//! A decision above [`OWN_AREA_MAX_LEN`] (256 bytes), or an alignment that is not a power of
//! two, falls back to the original 32 bytes; so does a kernel that refuses the longer length
//! with `EINVAL`. So on kernels whose feature size is at most 32 (6.3 - 7.0: 20 or 28) the
//! registration is 32 bytes, legacy mode; on 7.1+ (feature size 33, alignment 64) it is 64
//! bytes, V2 mode. [`registered_len`] and [`crate::status()`] report the length and whether a
//! 7.1+ kernel treats it as V2 ([`OwnLayout::is_v2`]). percid writes no kernel-owned field
//! and reads the ID fields outside critical sections only as hints (see [`super`]), so it is
//! correct in both modes.
//!
//! # Never unregistered
//!
//! Like glibc, percid never unregisters the area it registered: the area lives in the
//! thread's static TLS, which stays valid as long as the thread can run user code, and the
//! kernel stops using it when the thread exits. So thread-local destructors that run late in
//! thread exit still find a registered area, and a critical section (or a [`Current`] taken
//! earlier) can never run against an area the kernel has stopped maintaining. The one
//! exception is [`prepare_unload`], for a library that is about to be unloaded.
//!
//! [`Current`]: crate::ops::Current
//!
//! # The sentinel areas
//!
//! Before its first use, a thread's area pointer names a read-only static whose `cpu_id` and
//! `mm_cid` read `u32::MAX`: beyond any structure's slots, so a structure's fast path, which
//! only reads the index and compares it with its slot count, falls into its cold path, and
//! that initialises the thread. A thread without a usable registration (rseq missing or
//! denied, forced fallback, glibc's registration failed here, [`prepare_unload`]) points at
//! its own thread-local area marked "registration failed" (`cpu_id = -2`, `mm_cid` and
//! `node_id = u32::MAX`), which the kernel never touches: a critical section run there by
//! mistake stores `rseq_cs` into memory of its own thread and fails its index comparison.
//! So the hot path needs no null or registration check.
//!
//! # Invariants
//!
//! * The thread-local pointer names the uninitialised sentinel, glibc's registered area,
//!   our registered area, or our own area marked failed. Each stays valid for reads as long as
//!   the thread runs; the last three are writable at `rseq_cs` by this thread.
//! * Kernel-owned fields (`cpu_id_start`, `cpu_id`, `node_id`, `mm_cid`) of a registered
//!   area are never written; they are read with volatile loads. Only the critical sections
//!   and [`prepare_unload`] write `rseq_cs`.
//! * After a fork the child inherits the parent's registration and the thread-local state,
//!   which stay consistent (the kernel keeps the registration of the forking thread).
//!
//! # Signals
//!
//! The first use in the process computes the process-wide facts (`dlsym`, environment,
//! `OnceLock`): not async-signal-safe. The first use on a thread registers it: one `rseq`
//! syscall plus thread-local bookkeeping, run with every signal blocked (two
//! `pthread_sigmask` calls, once per thread). A handler that uses percid therefore never runs
//! inside the sequence: without the block it would write a fresh area over the one the
//! kernel had just registered and filled in (`cpu_id` -1 and `mm_cid` 0 until the next
//! preemption, so mm_cid structures would commit on slot 0 while its owner runs elsewhere).
//! Once the block is in place the sequence checks again whether a handler that ran just
//! before initialised the thread, and never rewrites a registered area. Call
//! [`register_current_thread`] early on a thread whose signal handlers use percid all the
//! same: the process-wide facts must exist before a handler's first use.

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
#[non_exhaustive]
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
    /// The program is statically linked: `dlsym` cannot see the C library, so glibc's
    /// `__rseq_offset` cannot be found, and the kernel refused a second registration (this
    /// errno) because the C library already registered its own area.
    StaticLibcRegistered(i32),
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
            Self::StaticLibcRegistered(e) => write!(
                f,
                "statically linked program: the C library registered rseq itself and its area \
                 cannot be located without dlsym (the kernel refused a second registration, \
                 errno {e}); run with GLIBC_TUNABLES=glibc.pthread.rseq=0 to let percid register"
            ),
        }
    }
}

impl FallbackReason {
    /// Whether the fallback was asked for rather than imposed.
    pub fn is_forced(&self) -> bool {
        matches!(
            self,
            FallbackReason::ForcedByEnv | FallbackReason::ForcedByFeature
        )
    }

    /// Why our own registration failed with `errno`, given whether `dlsym` can see the C
    /// library (it cannot in a statically linked program).
    pub(crate) fn from_errno(errno: i32, libc_visible: bool) -> FallbackReason {
        match errno {
            libc::ENOSYS => FallbackReason::KernelLacksRseq,
            libc::EPERM | libc::EACCES => FallbackReason::Denied(errno),
            // Another area is registered on this thread: in a program whose C library we
            // cannot see, the C library's own registration (static glibc >= 2.35).
            libc::EINVAL if !libc_visible => FallbackReason::StaticLibcRegistered(errno),
            _ => FallbackReason::RegistrationFailed(errno),
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
    /// `dlsym` finds the C library's own functions (false in a statically linked program).
    pub libc_visible: bool,
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
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no preconditions.
        let libc_visible =
            !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getauxval".as_ptr()) }.is_null();
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
            libc_visible,
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

/// The longest registration percid's own area accepts: the size of its thread-local storage.
/// A longer [`own_layout`] decision falls back to the original 32 bytes.
pub const OWN_AREA_MAX_LEN: u32 = 256;

/// The length and alignment of a registration of percid's own area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnLayout {
    /// Registration length in bytes.
    pub len: u32,
    /// Alignment the area needs, in bytes.
    pub align: u32,
}

impl OwnLayout {
    /// The original ABI: 32 bytes, 32-byte aligned, accepted by every kernel with rseq.
    pub const ORIGINAL: OwnLayout = OwnLayout {
        len: abi::ORIG_RSEQ_SIZE,
        align: abi::ORIG_RSEQ_SIZE,
    };

    /// Whether Linux >= 7.1 runs a registration of this layout in the optimized V2 mode: it
    /// is longer than the original 32 bytes (and, to be accepted at all, at least the
    /// kernel's feature size and aligned to its alignment, as [`own_layout`] ensures). A
    /// 32-byte registration stays in legacy mode whatever the feature size.
    pub fn is_v2(self, kernel_feature_size: u32, kernel_align: u32) -> bool {
        self.len > abi::ORIG_RSEQ_SIZE
            && self.len >= kernel_feature_size
            && (kernel_align <= 1 || self.align.is_multiple_of(kernel_align))
    }
}

/// The layout percid registers its own area with, for the kernel's
/// `getauxval(AT_RSEQ_FEATURE_SIZE)` and `getauxval(AT_RSEQ_ALIGN)` (0 when not reported):
/// `max(32, feature size)` rounded up to `max(32, alignment)`. [`OwnLayout::ORIGINAL`] when
/// the alignment is not a power of two or the result exceeds [`OWN_AREA_MAX_LEN`].
pub fn own_layout(kernel_feature_size: u32, kernel_align: u32) -> OwnLayout {
    let align = kernel_align.max(abi::ORIG_RSEQ_SIZE);
    if !align.is_power_of_two() || align > OWN_AREA_MAX_LEN {
        return OwnLayout::ORIGINAL;
    }
    match kernel_feature_size
        .max(abi::ORIG_RSEQ_SIZE)
        .checked_next_multiple_of(align)
    {
        Some(len) if len <= OWN_AREA_MAX_LEN => OwnLayout { len, align },
        _ => OwnLayout::ORIGINAL,
    }
}

/// The length the process registered its own areas with (0: none registered yet).
static REGISTERED_LEN: AtomicU32 = AtomicU32::new(0);

/// The length of percid's own registration: `None` when percid does not own the registration
/// (glibc's, which does not export its length, or none). Usually [`own_layout`]'s decision;
/// 32 where the kernel refused it.
pub fn registered_len() -> Option<u32> {
    match owner() {
        Owner::Percid => Some(own_registration_len()),
        _ => None,
    }
}

/// The length we registered our own areas with (the original 32 bytes before the first
/// registration).
fn own_registration_len() -> u32 {
    match REGISTERED_LEN.load(Ordering::Relaxed) {
        0 => abi::ORIG_RSEQ_SIZE,
        n => n,
    }
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

/// What a thread's area pointer names before the thread is initialised: every index field
/// reads `u32::MAX` (beyond any slot count), `cpu_id` reads "not registered". Never written
/// (read-only memory: no `UnsafeCell`).
static UNINIT: RseqArea = RseqArea {
    cpu_id_start: u32::MAX,
    cpu_id: abi::CPU_ID_UNINITIALIZED,
    rseq_cs: 0,
    flags: 0,
    node_id: u32::MAX,
    mm_cid: u32::MAX,
    _reserved: 0,
};

/// The contents of our own area while the kernel does not maintain it: "registration
/// failed", every index field beyond any slot count.
const FAILED: RseqArea = RseqArea {
    cpu_id_start: u32::MAX,
    cpu_id: abi::CPU_ID_REGISTRATION_FAILED,
    rseq_cs: 0,
    flags: 0,
    node_id: u32::MAX,
    mm_cid: u32::MAX,
    _reserved: 0,
};

/// The storage of our own area: [`OWN_AREA_MAX_LEN`] bytes aligned to as much, so that any
/// length and alignment [`own_layout`] decides fit.
#[repr(C, align(256))]
struct OwnStorage {
    area: RseqArea,
    /// Fields beyond the original ABI (kernel-owned once registered with a longer length).
    _extension: [u8; (OWN_AREA_MAX_LEN - abi::ORIG_RSEQ_SIZE) as usize],
}

const _: () = assert!(std::mem::size_of::<OwnStorage>() == OWN_AREA_MAX_LEN as usize);
const _: () = assert!(std::mem::align_of::<OwnStorage>() == OWN_AREA_MAX_LEN as usize);

impl OwnStorage {
    const fn with(area: RseqArea) -> OwnStorage {
        OwnStorage {
            area,
            _extension: [0; (OWN_AREA_MAX_LEN - abi::ORIG_RSEQ_SIZE) as usize],
        }
    }
}

/// Our own area. `UnsafeCell`: the kernel writes it behind our back once registered.
struct OwnArea(UnsafeCell<OwnStorage>);

impl OwnArea {
    /// The area at the start of the storage.
    fn area(&self) -> *mut RseqArea {
        self.0.get().cast::<RseqArea>()
    }
}

thread_local! {
    /// The thread's area: [`UNINIT`] until [`init_thread`] ran.
    static AREA: Cell<*const RseqArea> = const { Cell::new(&raw const UNINIT) };
    /// Storage for our own registration (static TLS: valid as long as the thread runs), or
    /// the thread's "failed" area when it has no usable registration.
    static OWN_AREA: OwnArea = const { OwnArea(UnsafeCell::new(OwnStorage::with(FAILED))) };
    /// The length this thread registered [`OWN_AREA`] with (meaningful while
    /// [`OWN_REGISTERED`]).
    static OWN_LEN: Cell<u32> = const { Cell::new(abi::ORIG_RSEQ_SIZE) };
    /// Whether this thread registered [`OWN_AREA`] with the kernel (and has not undone it
    /// with [`prepare_unload`]).
    static OWN_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Raw `rseq(2)`.
///
/// # Safety
/// `area` must stay valid and writable by the kernel for as long as it is registered.
unsafe fn rseq_syscall(area: *mut RseqArea, len: u32, flags: i32) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { libc::syscall(libc::SYS_rseq, area, len, flags, abi::RSEQ_SIG) }
}

/// The calling thread's area pointer, as is: possibly the uninitialised sentinel, whose index
/// fields read `u32::MAX`. One thread-local load: the structures' fast path, which compares
/// the index it reads with its slot count and initialises the thread on its cold path
/// ([`init_thread_if_needed`]).
#[inline(always)]
pub(crate) fn area_raw() -> *const RseqArea {
    // The key has no destructor, so it is accessible during TLS teardown too.
    AREA.with(Cell::get)
}

/// The calling thread's area, initialising the thread on first use: glibc's or our
/// registered area, or the thread's own area marked failed. Never the read-only sentinel, so
/// a critical section may store `rseq_cs` into it.
#[inline(always)]
pub(crate) fn area() -> *const RseqArea {
    let p = area_raw();
    if ptr::eq(p, &raw const UNINIT) {
        init_thread()
    } else {
        p
    }
}

/// Ensures the calling thread is initialised.
#[inline]
pub(crate) fn init_thread_if_needed() {
    let _ = area();
}

/// Whether the calling thread has been initialised (its area is not the sentinel).
#[inline]
pub(crate) fn thread_initialised() -> bool {
    !ptr::eq(area_raw(), &raw const UNINIT)
}

/// Registers the calling thread now (glibc's area or our own), instead of on its first use.
/// Returns whether the thread has a usable rseq registration. Call it early on threads whose
/// signal handlers use percid: see the [module docs](self#signals).
pub fn register_current_thread() -> bool {
    let a = area();
    // SAFETY: `area()` is valid for reads for the thread's lifetime.
    (unsafe { ptr::read_volatile(&raw const (*a).cpu_id) } as i32) >= 0
}

#[cold]
#[inline(never)]
fn init_thread() -> *const RseqArea {
    let p = process();
    // The registration sequence (decide, write our area, `rseq`, record) runs with every
    // signal blocked: a handler that used percid inside it would run the sequence again and
    // write a fresh area over the one the kernel already has (module docs, "Signals").
    let _blocked = SignalsBlocked::new();
    // A handler that ran before the block may have initialised the thread already.
    let current = area_raw();
    if !ptr::eq(current, &raw const UNINIT) {
        return current;
    }
    let area = match p.forced {
        Some(reason) => {
            let _ = owner_cell().set(Owner::None(reason));
            failed_area()
        }
        None => match p.glibc_rseq_size {
            Some(size) if size != 0 => libc_area(p),
            _ => own_area(p),
        },
    };
    if let Some(&owner) = owner_cell().get() {
        ACTIVE_FEATURE_SIZE.store(compute_feature_size(owner), Ordering::Relaxed);
    }
    AREA.with(|a| a.set(area));
    area
}

/// Every signal blocked on the calling thread for the guard's life (the previous mask is
/// restored on drop). Signals sent meanwhile stay pending and are delivered after.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        // SAFETY: sigset_t is plain data that sigfillset/pthread_sigmask initialise; both
        // pointers are valid for the calls. SIGKILL/SIGSTOP are left unblocked by the kernel.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            SignalsBlocked(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new` on this same thread (the guard is a local
        // of `init_thread`, never moved to another thread).
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, ptr::null_mut()) };
    }
}

/// This thread's own area, marked failed (the kernel does not maintain it).
fn failed_area() -> *const RseqArea {
    OWN_AREA.with(|own| {
        if !OWN_REGISTERED.with(Cell::get) {
            // SAFETY: not registered with the kernel, so nobody else writes it; this thread
            // is not inside a critical section.
            unsafe { ptr::write_volatile(own.area(), FAILED) };
        }
        own.area() as *const RseqArea
    })
}

/// glibc's area of this thread: thread pointer + `__rseq_offset`; the failed area if glibc's
/// registration failed on this thread.
fn libc_area(p: &Process) -> *const RseqArea {
    match (thread_pointer(), p.glibc_rseq_offset) {
        (Some(tp), Some(off)) => {
            let _ = owner_cell().set(Owner::Libc);
            let a = tp.wrapping_offset(off) as *const RseqArea;
            // SAFETY: glibc's area lives in this thread's control block, valid for reads as
            // long as the thread runs.
            let cpu = unsafe { ptr::read_volatile(&raw const (*a).cpu_id) };
            if (cpu as i32) < 0 {
                // glibc's registration failed on this thread: its mm_cid would read 0.
                failed_area()
            } else {
                a
            }
        }
        _ => {
            let _ = owner_cell().set(Owner::None(FallbackReason::UnsupportedArch));
            failed_area()
        }
    }
}

/// Registers this thread's own area, deciding the process mode on the first attempt.
fn own_area(p: &Process) -> *const RseqArea {
    if let Some(Owner::None(_)) = owner_cell().get() {
        return failed_area();
    }
    let storage = OWN_AREA.with(|own| own.0.get());
    let area = storage.cast::<RseqArea>();
    if OWN_REGISTERED.with(Cell::get) {
        // Registered already: never rewrite an area the kernel maintains.
        return area;
    }
    let layout = own_layout(p.kernel_feature_size, p.kernel_align);
    // SAFETY: not registered yet (checked just above, with signals blocked so that no
    // handler registers it meanwhile): nobody else writes it. The kernel expects an area in
    // its initial state, and the bytes beyond the original ABI zeroed.
    unsafe { ptr::write_volatile(storage, OwnStorage::with(RseqArea::new())) };
    let (rc, errno, len) = register_own(area, layout);
    if own_registration_succeeded(rc, errno) {
        OWN_LEN.with(|l| l.set(len));
        let _ = REGISTERED_LEN.compare_exchange(0, len, Ordering::Relaxed, Ordering::Relaxed);
        OWN_REGISTERED.with(|r| r.set(true));
        let _ = owner_cell().set(Owner::Percid);
        return area;
    }
    // Only the first decision sticks: a later per-thread failure leaves that one thread
    // unregistered (structures send it to their shared overflow path).
    let _ = owner_cell().set(Owner::None(FallbackReason::from_errno(
        errno,
        p.libc_visible,
    )));
    failed_area()
}

/// Register `area` with `layout.len`, then with the original 32 bytes if the kernel refuses
/// the longer length (`EINVAL`). Returns the syscall's result, its errno (0 on success) and
/// the length of the last attempt.
fn register_own(area: *mut RseqArea, layout: OwnLayout) -> (i64, i32, u32) {
    let attempt = |len: u32| {
        // SAFETY: `area` starts this thread's static thread-local `OwnStorage`: aligned to
        // `OWN_AREA_MAX_LEN` (a multiple of `layout.align`), `OWN_AREA_MAX_LEN` >= `len` bytes
        // long, valid until the thread exits (never unregistered but by prepare_unload).
        let rc = unsafe { rseq_syscall(area, len, 0) };
        let errno = if rc == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        };
        (rc, errno, len)
    };
    let first = attempt(layout.len);
    if first.1 == libc::EINVAL && layout.len != abi::ORIG_RSEQ_SIZE {
        return attempt(abi::ORIG_RSEQ_SIZE);
    }
    first
}

/// Whether registering our own area worked: the syscall succeeded, or it answered `EBUSY`,
/// which for this area, length and signature means it is already registered on this thread
/// (a signal handler that used percid registered it between our syscall and our
/// bookkeeping). Any other area registered on the thread would give `EINVAL` instead.
fn own_registration_succeeded(rc: i64, errno: i32) -> bool {
    rc == 0 || errno == libc::EBUSY
}

/// Prepares the calling thread for the unloading of the code that uses percid (a `cdylib`
/// about to be `dlclose`d), as librseq's `rseq_prepare_unload`:
///
/// * clears the thread's `rseq_cs`, which otherwise keeps pointing at the descriptor of the
///   last critical section, inside the unloaded code's `__rseq_cs` section (the kernel reads
///   it at the thread's next preemption and kills the thread if it is no longer mapped);
/// * if percid registered this thread's area itself, unregisters it (the area lives in the
///   unloaded library's thread-local storage);
/// * with either registration, points the thread at its own area marked failed, so that every
///   later percid operation on this thread takes its structure's overflow path and never arms
///   `rseq_cs` again (with glibc's registration the area stays registered, it is glibc's, but
///   percid no longer uses it on this thread).
///
/// Every thread that ran a percid critical section must call it (or have exited) before the
/// unload.
///
/// # Safety
///
/// No percid operation may be in progress on the calling thread (for example inside a
/// [`PerCpu::run`](crate::per_cpu::PerCpu::run) closure), and no [`Current`] taken on this
/// thread may be used after this call. Later percid operations on this thread work, on the
/// structures' overflow paths.
///
/// [`Current`]: crate::ops::Current
pub unsafe fn prepare_unload() {
    // Initialise first if the thread never used percid: the process mode is then decided,
    // and the thread ends up below on its "failed" area like every other unloaded thread
    // (an operation after this call must not register and arm `rseq_cs` afterwards).
    let a = area();
    // SAFETY: `a` is this thread's area (glibc's, ours or ours marked failed; never the
    // read-only sentinel, `area` initialised the thread), writable at `rseq_cs` by this
    // thread; no critical section is running (caller's contract). The store is a single
    // aligned 8-byte store, as the kernel expects of user space.
    unsafe { ptr::write_volatile(&raw mut (*(a as *mut RseqArea)).rseq_cs, 0) };
    if OWN_REGISTERED.with(Cell::get) {
        let own = OWN_AREA.with(|own| own.area());
        let len = OWN_LEN.with(Cell::get);
        // SAFETY: we registered exactly this area with this length and signature on this
        // thread.
        let rc = unsafe { rseq_syscall(own, len, abi::RSEQ_FLAG_UNREGISTER) };
        debug_assert_eq!(rc, 0, "rseq unregister failed");
        OWN_REGISTERED.with(|r| r.set(false));
        // The kernel no longer writes it (it reset cpu_id to -1 and mm_cid to 0): marked
        // failed below, so that a section comparing mm_cid with 0 cannot commit unprotected.
    }
    // From now on the thread's area is its own area marked failed, whatever the
    // registration: every operation reads an index beyond its slots there and takes the
    // overflow path, and a critical section run on it by mistake stores `rseq_cs` into this
    // thread-local memory, which the kernel never reads. glibc's area (still registered, it
    // is glibc's) is no longer reached, so nothing arms its `rseq_cs` into the library again.
    AREA.with(|c| c.set(failed_area()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_failures_are_classified() {
        use FallbackReason::*;
        assert_eq!(
            FallbackReason::from_errno(libc::ENOSYS, true),
            KernelLacksRseq
        );
        assert_eq!(
            FallbackReason::from_errno(libc::EPERM, true),
            Denied(libc::EPERM)
        );
        assert_eq!(
            FallbackReason::from_errno(libc::EINVAL, true),
            RegistrationFailed(libc::EINVAL)
        );
        // A statically linked program whose C library registered first: say so, not
        // "errno 22".
        let r = FallbackReason::from_errno(libc::EINVAL, false);
        assert_eq!(r, StaticLibcRegistered(libc::EINVAL));
        assert!(r.to_string().contains("statically linked"), "{r}");
    }

    #[test]
    fn ebusy_on_our_own_area_is_success() {
        assert!(own_registration_succeeded(0, 0));
        assert!(own_registration_succeeded(-1, libc::EBUSY));
        assert!(!own_registration_succeeded(-1, libc::EINVAL));
        assert!(!own_registration_succeeded(-1, libc::ENOSYS));
    }

    #[test]
    fn own_layout_decisions() {
        let l = |len, align| OwnLayout { len, align };
        // Feature sizes 0 (not reported), 20 (6.3 - 6.x), 28 (mm_cid), 32: the original size.
        for fs in [0, 20, 28, 32] {
            assert_eq!(own_layout(fs, 32), OwnLayout::ORIGINAL, "fs {fs}");
            assert_eq!(
                own_layout(fs, 0),
                OwnLayout::ORIGINAL,
                "fs {fs}, align unknown"
            );
        }
        // 33 (Linux 7.1, time-slice extensions): rounded up to the alignment.
        assert_eq!(own_layout(33, 32), l(64, 32));
        assert_eq!(own_layout(33, 64), l(64, 64));
        assert_eq!(own_layout(64, 32), l(64, 32));
        assert_eq!(own_layout(64, 64), l(64, 64));
        assert_eq!(own_layout(33, 128), l(128, 128));
        assert_eq!(own_layout(28, 64), l(64, 64));
        assert_eq!(own_layout(256, 256), l(256, 256));
        // Beyond the storage, or an alignment that is not a power of two: 32 bytes.
        assert_eq!(own_layout(257, 32), OwnLayout::ORIGINAL);
        assert_eq!(own_layout(33, 512), OwnLayout::ORIGINAL);
        assert_eq!(own_layout(28, 48), OwnLayout::ORIGINAL);
        assert_eq!(own_layout(u32::MAX, 64), OwnLayout::ORIGINAL);
    }

    #[test]
    fn v2_needs_more_than_32_bytes() {
        // This machine kind: feature size 28, alignment 32: 32 bytes, legacy mode on 7.1+.
        assert!(!own_layout(28, 32).is_v2(28, 32));
        // Linux 7.1: feature size 33, alignment 64.
        assert!(own_layout(33, 64).is_v2(33, 64));
        assert!(!OwnLayout::ORIGINAL.is_v2(33, 64));
        assert!(!l64_32().is_v2(33, 64), "misaligned for the kernel");
        assert!(!l64_32().is_v2(65, 32), "shorter than the feature size");
    }

    fn l64_32() -> OwnLayout {
        OwnLayout { len: 64, align: 32 }
    }

    /// Under `GLIBC_TUNABLES=glibc.pthread.rseq=0` (CI runs the suite that way) percid
    /// registers its own area: the kernel holds it with the decided length. A second
    /// registration of the same area answers `EBUSY` with that length and `EINVAL` with any
    /// other.
    #[test]
    fn own_registration_uses_the_decided_length() {
        init_thread_if_needed();
        if owner() != Owner::Percid {
            eprintln!(
                "skipped: percid does not own the registration ({:?})",
                owner()
            );
            return;
        }
        let p = process();
        let decided = own_layout(p.kernel_feature_size, p.kernel_align).len;
        let len = registered_len().unwrap();
        assert_eq!(OWN_LEN.with(Cell::get), len);
        assert!(
            len == decided || (decided > 32 && len == 32),
            "registered {len}, decided {decided}"
        );
        let area = OWN_AREA.with(|own| own.area());
        let errno = |len| {
            // SAFETY: re-registering the registered area only returns an error: the kernel
            // changes nothing for a thread that has a registration.
            let rc = unsafe { rseq_syscall(area, len, 0) };
            assert_eq!(rc, -1);
            std::io::Error::last_os_error().raw_os_error().unwrap()
        };
        assert_eq!(errno(len), libc::EBUSY, "the kernel holds length {len}");
        assert_eq!(errno(len + 32), libc::EINVAL);
    }

    #[test]
    fn sentinels_are_beyond_every_slot_count() {
        for a in [&UNINIT, &FAILED] {
            assert_eq!(a.mm_cid, u32::MAX);
            assert!((a.cpu_id as i32) < 0);
            assert!(a.cpu_id as usize > crate::pool::MAX_SLOTS);
        }
    }
}
