//! Per-slot operations: the same API over rseq critical sections and over the portable
//! fallback.
//!
//! Two layers:
//!
//! * [`Current`]: the calling thread's slot, obtained from an index resolution
//!   ([`crate::index::Resolved::enter`]). On rseq it carries the mode and the index it was
//!   read as; each operation is one critical section that commits only if the thread still
//!   has that index. On the fallback it holds a CID lease: the slot is exclusively the
//!   thread's until the lease drops, and operations are plain loads and stores. Structures
//!   are built on this layer.
//! * Free functions ([`add`], [`compare_and_store`], [`list_pop`], [`two_store`],
//!   [`memcpy_then_store`]) that take the index mode and the expected index, as librseq's
//!   do: on x86_64 with rseq they are the critical sections of [`crate::rseq::arch`];
//!   elsewhere (no rseq, forced fallback, other architectures, or `MmCid` without kernel
//!   mm_cid) each call takes a lease on exactly the expected CID of the cache-local
//!   user-space allocator for the duration of the operation, and reports `Aborted` if
//!   another thread holds it. [`current_index`] gives the index to pass on both paths.
//!
//! Either way, an operation on slot `s` never interleaves with another operation on `s`,
//! which is the only property per-slot structures rely on.
//!
//! # Memory model
//!
//! Values that other threads read while writers run (counter slots, list heads) are
//! `AtomicU64`/`AtomicPtr` on the Rust side; rseq commits are single aligned 8-byte stores,
//! and lease-path writes are relaxed atomic stores (release where the operation says so),
//! so concurrent readers never see a torn value and Rust's model has no data race.

use crate::index::{CidLease, fallback_allocator};
use crate::rseq::IndexMode;
use crate::rseq::abi::RseqArea;
pub use crate::rseq::arch::Outcome;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// The calling thread's slot, and how to operate on it.
#[derive(Debug)]
pub enum Current<'a> {
    /// rseq: operations are critical sections checking that the thread's `mode` field
    /// still equals `index`. Only the crate constructs it, from an index read on the
    /// calling thread (so the thread's area is registered); it is not `Send`.
    #[non_exhaustive]
    Rseq {
        /// The field checked.
        mode: IndexMode,
        /// The index the slot was chosen by.
        index: u32,
        /// The thread's rseq area the index was read from (a raw pointer: it also keeps
        /// `Current` on that thread).
        #[doc(hidden)]
        area: *const RseqArea,
    },
    /// A CID lease: the slot is exclusively this thread's while the lease lives.
    Lease(CidLease<'a>),
}

impl Current<'_> {
    /// An rseq slot: `index` must have been read from `area`, the calling thread's
    /// registered area.
    #[inline]
    pub(crate) fn rseq(area: *const RseqArea, mode: IndexMode, index: u32) -> Self {
        Current::Rseq { mode, index, area }
    }

    /// The slot index.
    #[inline]
    pub fn index(&self) -> usize {
        match self {
            Current::Rseq { index, .. } => *index as usize,
            Current::Lease(lease) => lease.cid() as usize,
        }
    }

    /// `*v += n`.
    #[inline]
    pub fn add(&self, v: &AtomicU64, n: u64) -> Outcome {
        match self {
            #[cfg(percid_rseq_asm)]
            // SAFETY: `index` was read from `area`, this thread's registered area (Current::rseq);
            // `v` is a valid AtomicU64 whose concurrent accessors are critical sections on the
            // same slot or atomic loads.
            Current::Rseq { mode, index, area } => unsafe {
                crate::rseq::arch::x86_64::add(*area, *mode, *index, v.as_ptr(), n)
            },
            #[cfg(not(percid_rseq_asm))]
            Current::Rseq { .. } => unreachable!("rseq resolution requires critical sections"),
            Current::Lease(_) => {
                v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
                Outcome::Committed
            }
        }
    }

    /// `if *v == expect { *v = newv }`.
    #[inline]
    pub fn compare_and_store(&self, v: &AtomicU64, expect: u64, newv: u64) -> Outcome {
        match self {
            #[cfg(percid_rseq_asm)]
            // SAFETY: as in `add`.
            Current::Rseq { mode, index, area } => unsafe {
                crate::rseq::arch::x86_64::compare_and_store(
                    *area,
                    *mode,
                    *index,
                    v.as_ptr(),
                    expect,
                    newv,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Current::Rseq { .. } => unreachable!("rseq resolution requires critical sections"),
            Current::Lease(_) => {
                if v.load(Ordering::Relaxed) != expect {
                    return Outcome::CompareFailed;
                }
                v.store(newv, Ordering::Release);
                Outcome::Committed
            }
        }
    }

    /// Pops the first node of the list at `head`: `node = *head`; compare failed if it is
    /// null or has a bit of `tag_mask` set (a list marked as being drained); otherwise
    /// `*head = node->next`, where `next` is the `AtomicPtr` at byte offset `next_offset` of
    /// the node.
    ///
    /// # Safety
    /// Every node reachable from `head` must be valid, with an `AtomicPtr<u8>` at
    /// `next_offset`, for as long as it is in the list.
    #[inline]
    pub unsafe fn list_pop(
        &self,
        head: &AtomicPtr<u8>,
        tag_mask: usize,
        next_offset: usize,
    ) -> (Outcome, *mut u8) {
        match self {
            #[cfg(percid_rseq_asm)]
            // SAFETY: as in `add`; node validity is the caller's contract.
            Current::Rseq { mode, index, area } => unsafe {
                crate::rseq::arch::x86_64::list_pop(
                    *area,
                    *mode,
                    *index,
                    head.as_ptr(),
                    core::ptr::null_mut(),
                    tag_mask,
                    next_offset,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Current::Rseq { .. } => unreachable!("rseq resolution requires critical sections"),
            Current::Lease(_) => {
                let node = head.load(Ordering::Acquire);
                if node.is_null() || (node as usize) & tag_mask != 0 {
                    return (Outcome::CompareFailed, node);
                }
                // SAFETY: the caller guarantees `node` is valid with an AtomicPtr at
                // `next_offset`.
                let next = unsafe { &*(node.add(next_offset) as *const AtomicPtr<u8>) }
                    .load(Ordering::Relaxed);
                head.store(next, Ordering::Relaxed);
                (Outcome::Committed, node)
            }
        }
    }

    /// Two-store: `if *v == expect { *v2 = newv2; *v = newv }`, the second store committing.
    /// `release` orders the first store before the commit for other threads (always true
    /// on x86_64; on the lease path it selects a release store).
    #[inline]
    pub fn two_store(
        &self,
        v: &AtomicU64,
        expect: u64,
        v2: &AtomicU64,
        newv2: u64,
        newv: u64,
        release: bool,
    ) -> Outcome {
        match self {
            #[cfg(percid_rseq_asm)]
            // SAFETY: as in `add`.
            Current::Rseq { mode, index, area } => unsafe {
                let _ = release; // x86 stores are releases.
                crate::rseq::arch::x86_64::two_store(
                    *area,
                    *mode,
                    *index,
                    v.as_ptr(),
                    expect,
                    v2.as_ptr(),
                    newv2,
                    newv,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Current::Rseq { .. } => unreachable!("rseq resolution requires critical sections"),
            Current::Lease(_) => {
                if v.load(Ordering::Relaxed) != expect {
                    return Outcome::CompareFailed;
                }
                v2.store(newv2, Ordering::Relaxed);
                v.store(
                    newv,
                    if release {
                        Ordering::Release
                    } else {
                        Ordering::Relaxed
                    },
                );
                Outcome::Committed
            }
        }
    }

    /// Memcpy-then-store: `if *v == expect { copy len bytes src -> dst; *v = newv }`, with a
    /// release commit.
    ///
    /// # Safety
    /// `src` valid for `len` reads and `dst` for `len` writes, not overlapping `v`; `dst`
    /// only written by operations on this slot, and read by other threads only after an
    /// acquire load of `v` saw the commit.
    #[inline]
    pub unsafe fn memcpy_then_store(
        &self,
        v: &AtomicU64,
        expect: u64,
        dst: *mut u8,
        src: *const u8,
        len: usize,
        newv: u64,
    ) -> Outcome {
        match self {
            #[cfg(percid_rseq_asm)]
            // SAFETY: as in `add`; buffer validity is the caller's contract.
            Current::Rseq { mode, index, area } => unsafe {
                crate::rseq::arch::x86_64::memcpy_then_store(
                    *area,
                    *mode,
                    *index,
                    v.as_ptr(),
                    expect,
                    dst,
                    src,
                    len,
                    newv,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Current::Rseq { .. } => unreachable!("rseq resolution requires critical sections"),
            Current::Lease(_) => {
                if v.load(Ordering::Relaxed) != expect {
                    return Outcome::CompareFailed;
                }
                // SAFETY: the caller's contract; the lease makes this thread the only writer.
                unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
                v.store(newv, Ordering::Release);
                Outcome::Committed
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// librseq-style free functions: index mode + expected index.

/// Whether the free functions use rseq critical sections for `mode` in this process.
#[inline]
pub fn uses_rseq(mode: IndexMode) -> bool {
    let index = match mode {
        IndexMode::CpuId => crate::Index::CpuId,
        IndexMode::MmCid => crate::Index::MmCid,
    };
    index.resolve().is_rseq()
}

/// The index to pass as `expected` to the free functions for `mode`: the rseq field, or on
/// the fallback the CID the calling CPU keeps in the cache-local allocator (taken and
/// released once, so the CPU keeps it for the next operation). `None` only if the thread
/// cannot use rseq in a process that does (e.g. its own registration failed).
#[inline]
pub fn current_index(mode: IndexMode) -> Option<u32> {
    if uses_rseq(mode) {
        mode.read()
    } else {
        Some(fallback_allocator().acquire().cid())
    }
}

/// Runs `op` on the fallback path: under an exclusive lease on exactly `expected`.
#[inline]
fn with_exact_lease(expected: u32, op: impl FnOnce(&Current<'_>) -> Outcome) -> Outcome {
    match fallback_allocator().try_acquire_exact(expected) {
        Some(lease) => op(&Current::Lease(lease)),
        None => Outcome::Aborted,
    }
}

/// `*v += n` on slot `expected` (see the module docs for both paths).
///
/// # Safety
/// `expected` from [`current_index`] on this thread; `v` valid, and accessed concurrently
/// only by operations of this module with the same mode, or atomic loads.
#[inline]
pub unsafe fn add(mode: IndexMode, expected: u32, v: *mut u64, n: u64) -> Outcome {
    // SAFETY: the caller guarantees `v` is a valid, aligned u64 used atomically.
    let atomic = unsafe { AtomicU64::from_ptr(v) };
    if uses_rseq(mode) {
        Current::rseq(crate::rseq::registration::area(), mode, expected).add(atomic, n)
    } else {
        with_exact_lease(expected, |c| c.add(atomic, n))
    }
}

/// `if *v == expect { *v = newv }` on slot `expected`.
///
/// # Safety
/// As for [`add`].
#[inline]
pub unsafe fn compare_and_store(
    mode: IndexMode,
    expected: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
) -> Outcome {
    // SAFETY: as in `add`.
    let atomic = unsafe { AtomicU64::from_ptr(v) };
    if uses_rseq(mode) {
        Current::rseq(crate::rseq::registration::area(), mode, expected)
            .compare_and_store(atomic, expect, newv)
    } else {
        with_exact_lease(expected, |c| c.compare_and_store(atomic, expect, newv))
    }
}

/// List pop on slot `expected`: see [`Current::list_pop`].
///
/// # Safety
/// As for [`add`], plus [`Current::list_pop`]'s contract; `head` a valid `AtomicPtr`.
#[inline]
pub unsafe fn list_pop(
    mode: IndexMode,
    expected: u32,
    head: *mut *mut u8,
    tag_mask: usize,
    next_offset: usize,
) -> (Outcome, *mut u8) {
    // SAFETY: the caller guarantees `head` is a valid, aligned pointer cell used atomically.
    let head = unsafe { AtomicPtr::from_ptr(head) };
    if uses_rseq(mode) {
        // SAFETY: forwarded.
        unsafe {
            Current::rseq(crate::rseq::registration::area(), mode, expected).list_pop(
                head,
                tag_mask,
                next_offset,
            )
        }
    } else {
        match fallback_allocator().try_acquire_exact(expected) {
            // SAFETY: forwarded.
            Some(lease) => unsafe { Current::Lease(lease).list_pop(head, tag_mask, next_offset) },
            None => (Outcome::Aborted, core::ptr::null_mut()),
        }
    }
}

/// Two-store on slot `expected`: see [`Current::two_store`].
///
/// # Safety
/// As for [`add`], for `v` and `v2`.
#[inline]
#[allow(clippy::too_many_arguments)]
pub unsafe fn two_store(
    mode: IndexMode,
    expected: u32,
    v: *mut u64,
    expect: u64,
    v2: *mut u64,
    newv2: u64,
    newv: u64,
    release: bool,
) -> Outcome {
    // SAFETY: as in `add`.
    let (a, a2) = unsafe { (AtomicU64::from_ptr(v), AtomicU64::from_ptr(v2)) };
    if uses_rseq(mode) {
        Current::rseq(crate::rseq::registration::area(), mode, expected)
            .two_store(a, expect, a2, newv2, newv, release)
    } else {
        with_exact_lease(expected, |c| {
            c.two_store(a, expect, a2, newv2, newv, release)
        })
    }
}

/// Memcpy-then-store on slot `expected`: see [`Current::memcpy_then_store`].
///
/// # Safety
/// As for [`add`], plus [`Current::memcpy_then_store`]'s contract.
#[inline]
#[allow(clippy::too_many_arguments)]
pub unsafe fn memcpy_then_store(
    mode: IndexMode,
    expected: u32,
    v: *mut u64,
    expect: u64,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: u64,
) -> Outcome {
    // SAFETY: as in `add`.
    let a = unsafe { AtomicU64::from_ptr(v) };
    if uses_rseq(mode) {
        // SAFETY: forwarded.
        unsafe {
            Current::rseq(crate::rseq::registration::area(), mode, expected)
                .memcpy_then_store(a, expect, dst, src, len, newv)
        }
    } else {
        // SAFETY: forwarded.
        with_exact_lease(expected, |c| unsafe {
            c.memcpy_then_store(a, expect, dst, src, len, newv)
        })
    }
}
