//! The rseq ABI layer: registration, readers, status, and the architecture's critical
//! sections.
//!
//! * [`abi`]: the area and descriptor layouts and the kernel's constants.
//! * [`registration`]: per-thread, lazy: glibc's area when glibc registered, otherwise our
//!   own; the fallback (with its reason) when neither works.
//! * [`arch`]: the critical sections in `asm!` (x86_64), by `cpu_id` or `mm_cid`.
//! * [`membarrier`]: `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`, to fence every CPU's
//!   in-flight critical sections from another thread.
//!
//! The readers ([`current_cpu`], [`current_mm_cid`], [`current_node`]) are a thread-local
//! load plus one volatile load on the fast path.
//!
//! # ID fields read outside a critical section are hints
//!
//! Since the rseq rewrite of Linux 6.19, and in the optimized V2 mode that Linux 7.1 gives
//! registrations longer than 32 bytes, the kernel writes `cpu_id_start`, `cpu_id`, `node_id`
//! and `mm_cid` only when they change (on migration, on a CID change, at registration), no
//! longer on every return to user space. A program that writes these fields itself and
//! expects the kernel to overwrite them (tcmalloc did) breaks. percid writes none of them, so
//! every read returns the kernel's latest value; but a value read outside a critical section
//! can be stale the instant after (preemption, migration), in any mode. Every such read in
//! percid is therefore a hint, and nothing depends on it being fresh. The sites, audited:
//!
//! | site | field | use | verdict |
//! |---|---|---|---|
//! | [`current_cpu`], [`current_mm_cid`], [`current_node`], [`IndexMode::read`] | `cpu_id`, `mm_cid`, `node_id` | public readers | hint, documented as possibly stale |
//! | `index::user_cid` (`clock::current_cpu`) | `cpu_id` | the CPU input of the user-space CID allocator | hint: any CPU number is correct, only locality depends on it |
//! | `ops::current_index` | `cpu_id` / `mm_cid` | `expected` of the free per-slot functions | hint: each critical section compares it with the live field after setting `rseq_cs`; stale gives `Moved` / a retry |
//! | `PerCpu::run`, its retry path, `PerCpu::current`, `Handle::run` (`per_cpu.rs`) | `cpu_id` / `mm_cid` | picks the slot | hint: every mutation is a critical section that compares the index again; slot reads are atomic |
//! | `orphans::OrphanTest::new` | `cpu_id` / `mm_cid` | the caller's own slot, not counted as an orphan | hint: moving orphans is exact whatever it says |
//! | `registration::register_current_thread`, glibc's area check, the `cpu_id` sign check of `current_mm_cid` / `current_node` | `cpu_id` (sign) | registration state | not an ID: the kernel writes it at registration in both modes, and glibc marks a failed registration |
//! | the burst benchmark's `read_index` (`burst/src/harness.rs`) | `cpu_id` / `mm_cid` | which slot a pass touches | hint: the pass holds the slot's lock |
//! | critical sections (`arch/x86_64.rs`) | `cpu_id` / `mm_cid` | the comparison at `start_ip` | inside the section: preemption, migration or a signal aborts it in both modes |
//!
//! `cpu_id_start` is never read.
//!
//! This layer is the floor of the crate: it knows the kernel's ABI and nothing of index
//! policy or structures ([`crate::status()`] and [`crate::index`] sit above it).

pub mod abi;
pub mod arch;
pub mod membarrier;
pub mod registration;

pub use registration::{prepare_unload, register_current_thread};

use std::ptr;

/// Which kernel-maintained field a critical section checks its expected index against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexMode {
    /// `cpu_id` (offset 4): the CPU the thread runs on.
    CpuId,
    /// `mm_cid` (offset 24): the thread's concurrency ID (feature size >= 28).
    MmCid,
}

impl IndexMode {
    /// Byte offset of the field in the rseq area.
    #[inline]
    pub const fn field_offset(self) -> usize {
        match self {
            IndexMode::CpuId => core::mem::offset_of!(abi::RseqArea, cpu_id),
            IndexMode::MmCid => core::mem::offset_of!(abi::RseqArea, mm_cid),
        }
    }

    /// The mode whose field is at byte offset `off` (4: `CpuId`, anything else: `MmCid`).
    #[inline]
    pub(crate) const fn from_offset(off: usize) -> IndexMode {
        if off == IndexMode::CpuId.field_offset() {
            IndexMode::CpuId
        } else {
            IndexMode::MmCid
        }
    }

    /// Reads the field on the calling thread, `None` if the thread has no usable rseq area
    /// or (for `MmCid`) the kernel does not provide mm_cid.
    #[inline]
    pub fn read(self) -> Option<u32> {
        match self {
            IndexMode::CpuId => rseq_cpu_id(),
            IndexMode::MmCid => rseq_mm_cid(),
        }
    }
}

/// Reads `mode`'s field from `area` (the thread's area as `registration::area_raw` or
/// `registration::area` gave it): one volatile load. On the uninitialised sentinel and on an
/// area marked failed, both fields read values at or above `u32::MAX - 1`, beyond every slot
/// count: callers that compare the result with their slot count need no other check.
#[inline(always)]
pub(crate) fn read_field(area: *const abi::RseqArea, mode: IndexMode) -> u32 {
    read_field_at(area, mode.field_offset())
}

/// [`read_field`] by byte offset (`IndexMode::field_offset`).
#[inline(always)]
pub(crate) fn read_field_at(area: *const abi::RseqArea, off: usize) -> u32 {
    debug_assert!(off == 4 || off == 24);
    // SAFETY: `area` is valid for reads for the thread's lifetime (registration invariants);
    // `off` is the offset of `cpu_id` or `mm_cid`, within the area; the field is within the
    // active feature size when the structure resolved to this mode, and inert (a sentinel
    // value) otherwise.
    unsafe { ptr::read_volatile((area as *const u8).add(off) as *const u32) }
}

/// `cpu_id` from the rseq area, `None` if the thread is not registered.
#[inline]
pub(crate) fn rseq_cpu_id() -> Option<u32> {
    let a = registration::area();
    // SAFETY: `area()` is never null and always valid for reads for the thread's lifetime
    // (registration invariants). The field is kernel-owned: read only, volatile.
    let cpu = unsafe { ptr::read_volatile(&raw const (*a).cpu_id) };
    if (cpu as i32) >= 0 { Some(cpu) } else { None }
}

/// `mm_cid` from the rseq area, `None` without registration or without kernel mm_cid.
#[inline]
pub(crate) fn rseq_mm_cid() -> Option<u32> {
    let a = registration::area();
    // SAFETY: as in `rseq_cpu_id`.
    let cpu = unsafe { ptr::read_volatile(&raw const (*a).cpu_id) };
    if (cpu as i32) < 0 || registration::feature_size_relaxed() < abi::FEATURE_SIZE_MM_CID {
        return None;
    }
    // SAFETY: as above; mm_cid is within the active feature size (checked just above; the
    // size is published before `area()` returns a registered area).
    Some(unsafe { ptr::read_volatile(&raw const (*a).mm_cid) })
}

/// The CPU the calling thread runs on: rseq `cpu_id` when registered, otherwise
/// `sched_getcpu()`. `None` only if both fail.
///
/// The answer may be stale as soon as it is returned (the thread can migrate): use it for
/// placement decisions, and the critical sections in [`crate::ops`] for correctness.
#[inline]
pub fn current_cpu() -> Option<u32> {
    rseq_cpu_id().or_else(sched_getcpu)
}

/// The kernel's concurrency ID of the calling thread (`mm_cid`, Linux >= 6.3 with feature
/// size >= 28), `None` when the kernel does not provide it or rseq is not in use.
#[inline]
pub fn current_mm_cid() -> Option<u32> {
    rseq_mm_cid()
}

/// The NUMA node of the CPU the calling thread runs on: rseq `node_id` (feature size >= 24),
/// otherwise the `getcpu` syscall.
#[inline]
pub fn current_node() -> Option<u32> {
    let a = registration::area();
    // SAFETY: as in `rseq_cpu_id`.
    let cpu = unsafe { ptr::read_volatile(&raw const (*a).cpu_id) };
    if (cpu as i32) >= 0 && registration::feature_size_relaxed() >= abi::FEATURE_SIZE_NODE_ID {
        // SAFETY: as above; node_id is within the active feature size.
        return Some(unsafe { ptr::read_volatile(&raw const (*a).node_id) });
    }
    getcpu_node()
}

#[cold]
fn sched_getcpu() -> Option<u32> {
    // SAFETY: no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    if c >= 0 { Some(c as u32) } else { None }
}

#[cold]
fn getcpu_node() -> Option<u32> {
    let mut cpu: libc::c_uint = 0;
    let mut node: libc::c_uint = 0;
    // SAFETY: both out-pointers are valid for writes; the third (cache) argument is unused
    // by the kernel and may be null.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut _,
            &mut node as *mut _,
            ptr::null_mut::<u8>(),
        )
    };
    if rc == 0 { Some(node) } else { None }
}

/// The kernel maintains `mm_cid` for this process.
#[inline]
pub fn mm_cid_available() -> bool {
    registration::init_thread_if_needed();
    registration::feature_size_relaxed() >= abi::FEATURE_SIZE_MM_CID
}

/// The kernel maintains `node_id` for this process.
#[inline]
pub fn node_id_available() -> bool {
    registration::init_thread_if_needed();
    registration::feature_size_relaxed() >= abi::FEATURE_SIZE_NODE_ID
}

/// Structures can use rseq critical sections in this process.
#[inline]
pub fn rseq_usable() -> bool {
    arch::HAS_CRITICAL_SECTIONS && !matches!(registration::owner(), registration::Owner::None(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_agree_with_the_kernel() {
        // Pin to one CPU so cpu_id and sched_getcpu cannot disagree by migration.
        let handle = std::thread::spawn(|| {
            let cpu = sched_getcpu().expect("sched_getcpu");
            crate::topology::pin_current_thread_to_cpu(cpu as usize).expect("pin");
            assert_eq!(current_cpu(), Some(cpu));
            if registration::feature_size() > 0 {
                assert_eq!(rseq_cpu_id(), Some(cpu));
            } else {
                assert_eq!(rseq_cpu_id(), None);
            }
            if mm_cid_available() {
                let cid = current_mm_cid().expect("mm_cid");
                assert!((cid as usize) < crate::util::possible_cpu_count());
            } else {
                assert_eq!(current_mm_cid(), None);
            }
            assert_eq!(current_node(), getcpu_node());
        });
        handle.join().unwrap();
    }
}
