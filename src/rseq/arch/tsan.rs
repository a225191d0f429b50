//! ThreadSanitizer annotations for the critical sections: what the sanitizer cannot see
//! inside `asm!`, told to it in its own terms.
//!
//! A critical section's loads and its committing store are invisible to ThreadSanitizer (it
//! instruments only compiler-generated accesses). Without help it sees a node written by the
//! pushing thread and read by the popping one with nothing ordering them, and reports a race
//! that the hardware and the kernel exclude. What the sections guarantee is that every
//! committed section on one word runs alone, after every earlier committed section on that
//! word (the same CPU or CID: two of them never overlap, and a preemption between them is a
//! full barrier), and after every release store to the word by a remote thread that the
//! section's comparison read. So the word behaves as a lock-protected location, and the
//! annotations say exactly that, as tcmalloc does for its per-CPU caches:
//!
//! * [`release`] on the committing word *before* a section that publishes (a list push, a
//!   lock word, a two-store or copy whose other stores readers of the word rely on);
//! * [`acquire`] on the committing word *after* a section that committed and takes (a pop,
//!   a lock acquisition, any compare whose value the caller then relies on).
//!
//! The release comes before the section, not after its commit: once the store commits,
//! another thread may take the word before this one reaches the annotation, and the
//! sanitizer would then report a race that is not there. A release before an attempt that
//! then aborts (or fails its comparison) adds an edge the hardware did not make
//! (from this thread to the word's next committer); it can only hide a race, never report a
//! false one, and only between this thread's accesses before the attempt and a later
//! committer's. A race after the section stays visible: a scratch test writing lock-guarded
//! data after storing the lock word free was reported at once.
//! Sections that carry no data beyond the word itself (`add`) are not annotated: the word is
//! only read by atomic loads, and the sanitizer has nothing to order.
//!
//! Both functions compile to nothing unless the build sets `--cfg percid_tsan` (only the
//! sanitizer step of `.ci/run` does, with `-Zsanitizer=thread`, which provides the
//! `__tsan_acquire`/`__tsan_release` symbols; without the sanitizer the link fails, which is
//! the intended error). So the normal build's critical sections are unchanged.

#[cfg(percid_tsan)]
mod imp {
    use core::ffi::c_void;

    // The ThreadSanitizer runtime's annotation entry points (compiler-rt
    // `tsan_interface_ann`): an acquire or release on the synchronisation object of `addr`,
    // the same object Rust's atomic operations on `addr` use.
    unsafe extern "C" {
        fn __tsan_acquire(addr: *mut c_void);
        fn __tsan_release(addr: *mut c_void);
    }

    /// # Safety
    /// `addr` points into live application memory (the runtime keeps its metadata there).
    #[inline(always)]
    pub(crate) unsafe fn acquire(addr: *const u8) {
        // SAFETY: the runtime only looks up its metadata for `addr`, which the caller
        // guarantees is live application memory.
        unsafe { __tsan_acquire(addr as *mut c_void) }
    }

    /// # Safety
    /// As for [`acquire`].
    #[inline(always)]
    pub(crate) unsafe fn release(addr: *const u8) {
        // SAFETY: as in `acquire`.
        unsafe { __tsan_release(addr as *mut c_void) }
    }
}

#[cfg(not(percid_tsan))]
mod imp {
    /// No-op outside the sanitizer build.
    ///
    /// # Safety
    /// None needed here; the signature matches the sanitizer build's.
    #[inline(always)]
    pub(crate) unsafe fn acquire(_addr: *const u8) {}

    /// No-op outside the sanitizer build.
    ///
    /// # Safety
    /// None needed here; the signature matches the sanitizer build's.
    #[inline(always)]
    pub(crate) unsafe fn release(_addr: *const u8) {}
}

pub(crate) use imp::{acquire, release};
