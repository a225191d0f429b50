//! Per-slot operations: the same API over rseq critical sections and over the portable
//! fallback.
//!
//! Two layers:
//!
//! * [`Current`]: the calling thread's slot of one [`PerCpu`](crate::per_cpu::PerCpu), handed
//!   out by [`PerCpu::run`](crate::per_cpu::PerCpu::run) and
//!   [`PerCpu::enter`](crate::per_cpu::PerCpu::enter). How it reaches the slot is the
//!   structure's [`Access`], fixed when the structure's slots are created: on rseq each
//!   operation is one critical section that commits only if the thread still has the index
//!   the slot was chosen by; on the fallback the `Current` holds a CID lease, the slot is
//!   exclusively the thread's until it drops, and operations are plain loads and stores.
//!   Structures are built on this layer.
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
//! # Why safe code cannot mix two accesses
//!
//! Exclusivity holds only among operations that reach a slot the same way: a `cpu_id`
//! critical section does not exclude an `mm_cid` one, nor a lease. So the access is part of
//! the structure, never a parameter of an operation: a [`Current`] is created only by its
//! structure, from that structure's access, and each of its operations checks (a subtraction
//! and a comparison, folded away when the target is a field of the slot) that the target lies
//! within the slot the `Current` was entered on. [`Access`] itself is public for inspection
//! only: no safe function takes one.
//!
//! # Memory model
//!
//! Values that other threads read while writers run (counter slots, list heads) are
//! `AtomicU64`/`AtomicPtr` on the Rust side; rseq commits are single aligned 8-byte stores,
//! and lease-path writes are relaxed atomic stores (release where the operation says so),
//! so concurrent readers never see a torn value and Rust's model has no data race.

use crate::index::{CidAllocator, CidLease, Index, fallback_allocator};
use crate::rseq::abi::RseqArea;
use crate::rseq::{IndexMode, registration};
use std::fmt;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};

pub use crate::rseq::arch::Outcome;

impl Outcome {
    /// Whether the committing store happened.
    #[inline(always)]
    pub fn is_committed(self) -> bool {
        self == Outcome::Committed
    }
}

/// The longest copy [`memcpy_then_store`] and [`Current::memcpy_then_store`] accept: 4 KiB.
///
/// The copy runs inside the critical section, and a section restarts from the beginning
/// whenever the thread is preempted, migrated or signalled; a copy that does not fit well
/// within a time slice would never commit. 4 KiB takes about a microsecond.
pub const MEMCPY_MAX: usize = 4096;

/// A copy longer than [`MEMCPY_MAX`] was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyTooLong {
    /// The length asked for.
    pub len: usize,
}

impl fmt::Display for CopyTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memcpy_then_store of {} bytes: at most {MEMCPY_MAX} bytes fit in a critical section",
            self.len
        )
    }
}

impl std::error::Error for CopyTooLong {}

/// How a structure reaches its slots: decided once, when its slots are created, and never
/// changed. Public for inspection ([`Counter::access`](crate::Counter::access) and friends):
/// no safe function takes one.
#[derive(Clone, Copy)]
pub enum Access {
    /// rseq critical sections checking this field of the thread's rseq area.
    Rseq(IndexMode),
    /// Exclusive leases on the CIDs of this allocator.
    Lease(&'static CidAllocator),
}

impl Access {
    /// How a structure whose slots are created now with `index` reaches them: `CpuId` and
    /// `MmCid` use rseq critical sections when the process has rseq, the architecture has
    /// critical sections and (for `MmCid`) the kernel maintains mm_cid; otherwise leases from
    /// the cache-local user-space allocator (the same per-slot exclusivity). `User(policy)`
    /// always uses that policy's allocator.
    pub fn of(index: Index) -> Access {
        match index {
            Index::CpuId if crate::rseq::rseq_usable() => Access::Rseq(IndexMode::CpuId),
            Index::MmCid if crate::rseq::rseq_usable() && crate::rseq::mm_cid_available() => {
                Access::Rseq(IndexMode::MmCid)
            }
            Index::CpuId | Index::MmCid => Access::Lease(fallback_allocator()),
            Index::User(policy) => Access::Lease(CidAllocator::global(policy)),
        }
    }

    /// As [`of`](Self::of), for a structure that drains its slots from other threads: rseq
    /// only where the membarrier rseq fence works (see [`crate::rseq::membarrier`]).
    pub(crate) fn drainable(index: Index) -> Access {
        match Access::of(index) {
            Access::Rseq(_) if !crate::rseq::membarrier::rseq_fence_ready() => {
                Access::Lease(fallback_allocator())
            }
            a => a,
        }
    }

    /// Whether accesses go through rseq critical sections.
    pub fn is_rseq(self) -> bool {
        matches!(self, Access::Rseq(_))
    }
}

impl PartialEq for Access {
    fn eq(&self, other: &Access) -> bool {
        match (self, other) {
            (Access::Rseq(a), Access::Rseq(b)) => a == b,
            (Access::Lease(a), Access::Lease(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }
}

impl Eq for Access {}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Rseq(IndexMode::CpuId) => f.write_str("rseq(cpu_id)"),
            Access::Rseq(IndexMode::MmCid) => f.write_str("rseq(mm_cid)"),
            Access::Lease(a) => write!(f, "lease({:?})", a.policy()),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How a [`Current`] holds its slot.
enum Hold {
    /// rseq: the thread's area (a raw pointer: it also keeps `Current` on that thread), the
    /// field checked, and the index the slot was chosen by, read from that area.
    Rseq {
        area: *const RseqArea,
        off: usize,
        index: u32,
    },
    /// A CID lease, owned: the slot is exclusively this thread's while it lives. Dropped by
    /// `Current`'s own (always inlined) `Drop`, so that the drop of an rseq `Current` compiles
    /// to nothing instead of a call to the enum's drop glue. (From `PerCpu::enter`.)
    Lease(std::mem::ManuallyDrop<CidLease<'static>>),
    /// A CID lease held by the caller for as long as this `Current` lives (the loop of
    /// `PerCpu::run` holds it in a local: the `Current` stays small and needs no drop).
    Leased { cid: u32 },
}

/// The calling thread's slot of one structure, and the operations on it. Created only by the
/// structure ([`PerCpu::run`](crate::per_cpu::PerCpu::run),
/// [`PerCpu::enter`](crate::per_cpu::PerCpu::enter)); not `Send`.
///
/// Every operation targets memory inside [`slot`](Self::slot) (a field of it, or the slot
/// itself) and panics otherwise: that check is what keeps safe code from running one
/// structure's operation on another's memory. An rseq operation reports
/// [`Outcome::Aborted`] when the thread was preempted, migrated or signalled since the index
/// was read, or now has another index: enter afresh and retry.
pub struct Current<'a, T> {
    slot: &'a T,
    /// Slot 0 of the structure's item: rseq sections address their target as
    /// `[item + offset]` (see `rseq::arch::x86_64::add`).
    item: *mut u8,
    hold: Hold,
}

impl<T> fmt::Debug for Current<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match &self.hold {
            Hold::Rseq { off, .. } => format!("{:?}", Access::Rseq(IndexMode::from_offset(*off))),
            Hold::Lease(_) | Hold::Leased { .. } => "lease".to_string(),
        };
        f.debug_struct("Current")
            .field("index", &self.index())
            .field("access", &how)
            .finish()
    }
}

impl<'a, T> Current<'a, T> {
    /// An rseq slot: `index` was read from `area` (the calling thread's area, from
    /// `registration::area_raw`, initialised) and `slot` is the structure's slot `index`.
    #[inline(always)]
    pub(crate) fn rseq(
        slot: &'a T,
        item: *mut u8,
        area: *const RseqArea,
        off: usize,
        index: u32,
    ) -> Self {
        Current {
            slot,
            item,
            hold: Hold::Rseq { area, off, index },
        }
    }

    /// A leased slot that owns its lease: `slot` is the structure's slot `lease.cid()`.
    #[inline(always)]
    pub(crate) fn lease(slot: &'a T, item: *mut u8, lease: CidLease<'static>) -> Self {
        Current {
            slot,
            item,
            hold: Hold::Lease(std::mem::ManuallyDrop::new(lease)),
        }
    }

    /// A leased slot whose lease (on `cid`) the caller holds while the `Current` lives.
    #[inline(always)]
    pub(crate) fn leased(slot: &'a T, item: *mut u8, cid: u32) -> Self {
        Current {
            slot,
            item,
            hold: Hold::Leased { cid },
        }
    }

    /// The offset of `p` from the item's slot 0 (for `[item + offset]` addressing).
    #[inline(always)]
    fn at<U>(&self, p: *const U) -> usize {
        (p as usize).wrapping_sub(self.item as usize)
    }

    /// The slot index.
    #[inline]
    pub fn index(&self) -> usize {
        match &self.hold {
            Hold::Rseq { index, .. } => *index as usize,
            Hold::Lease(lease) => lease.cid() as usize,
            Hold::Leased { cid } => *cid as usize,
        }
    }

    /// The slot's value.
    #[inline(always)]
    pub fn slot(&self) -> &'a T {
        self.slot
    }

    /// Whether operations are rseq critical sections (otherwise the slot is leased).
    #[inline]
    pub fn is_rseq(&self) -> bool {
        matches!(self.hold, Hold::Rseq { .. })
    }

    /// Panics unless `[p, p + len)` lies within the slot. Folded away by the compiler when
    /// `p` is derived from the slot.
    #[inline(always)]
    fn check_within(&self, p: *const u8, len: usize) {
        let off = (p as usize).wrapping_sub(self.slot as *const T as usize);
        let size = size_of::<T>();
        if off > size || len > size - off {
            not_in_slot();
        }
    }

    /// `*v += n` (wrapping).
    #[inline(always)]
    pub fn add(&self, v: &AtomicU64, n: u64) -> Outcome {
        self.check_within(v.as_ptr().cast(), 8);
        match &self.hold {
            #[cfg(percid_rseq_asm)]
            // SAFETY: `index` was read from `area`, this thread's initialised area; `v` lies in
            // the slot chosen by `index` (checked), an AtomicU64 whose concurrent accessors are
            // critical sections of the same structure (same access) or atomic loads.
            Hold::Rseq { area, off, index } => unsafe {
                crate::rseq::arch::x86_64::add(
                    *area,
                    *off,
                    *index,
                    self.item,
                    self.at(v.as_ptr()),
                    n,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Hold::Rseq { .. } => unreachable!("rseq access requires critical sections"),
            Hold::Lease(_) | Hold::Leased { .. } => held::add(v, n),
        }
    }

    /// `if *v == expect { *v = newv }`; when it commits, the load has acquire and the store
    /// release ordering.
    #[inline(always)]
    pub fn compare_and_store(&self, v: &AtomicU64, expect: u64, newv: u64) -> Outcome {
        self.check_within(v.as_ptr().cast(), 8);
        match &self.hold {
            #[cfg(percid_rseq_asm)]
            // SAFETY: as in `add`.
            Hold::Rseq { area, off, index } => unsafe {
                crate::rseq::arch::x86_64::compare_and_store(
                    *area,
                    *off,
                    *index,
                    self.item,
                    self.at(v.as_ptr()),
                    expect,
                    newv,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Hold::Rseq { .. } => unreachable!("rseq access requires critical sections"),
            Hold::Lease(_) | Hold::Leased { .. } => held::compare_and_store(v, expect, newv),
        }
    }

    /// Pops the first node of the list at `head`: `node = *head`; compare failed if it is
    /// null or has a bit of `tag_mask` set (a list marked as being drained); otherwise
    /// `*head = node->next`, where `next` is the `AtomicPtr` at byte offset `next_offset` of
    /// the node. Returns the node read (null only if the list was empty; tagged if it was
    /// being drained; meaningless after an abort).
    ///
    /// # Safety
    /// Every node reachable from `head` must be valid, with an `AtomicPtr<u8>` at
    /// `next_offset`, for as long as it is in the list.
    #[inline(always)]
    pub unsafe fn list_pop(
        &self,
        head: &AtomicPtr<u8>,
        tag_mask: usize,
        next_offset: usize,
    ) -> (Outcome, *mut u8) {
        self.check_within(head.as_ptr().cast(), 8);
        match &self.hold {
            #[cfg(percid_rseq_asm)]
            // SAFETY: as in `add`; node validity is the caller's contract.
            Hold::Rseq { area, off, index } => unsafe {
                crate::rseq::arch::x86_64::list_pop(
                    *area,
                    *off,
                    *index,
                    self.item,
                    self.at(head.as_ptr()),
                    core::ptr::null_mut(),
                    tag_mask,
                    next_offset,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Hold::Rseq { .. } => unreachable!("rseq access requires critical sections"),
            // SAFETY: the caller's contract (a valid node with an AtomicPtr at `next_offset`).
            Hold::Lease(_) | Hold::Leased { .. } => unsafe {
                held::list_pop(head, tag_mask, next_offset)
            },
        }
    }

    /// Two-store: `if *v == expect { *v2 = newv2; *v = newv }`, the second store committing.
    /// `release` orders the first store before the commit for other threads (always true
    /// on x86_64; on the lease path it selects a release store). Both targets lie in the
    /// slot.
    #[inline(always)]
    pub fn two_store(
        &self,
        v: &AtomicU64,
        expect: u64,
        v2: &AtomicU64,
        newv2: u64,
        newv: u64,
        release: bool,
    ) -> Outcome {
        self.check_within(v.as_ptr().cast(), 8);
        self.check_within(v2.as_ptr().cast(), 8);
        match &self.hold {
            #[cfg(percid_rseq_asm)]
            // SAFETY: as in `add`, for both targets.
            Hold::Rseq { area, off, index } => unsafe {
                let _ = release; // x86 stores are releases.
                crate::rseq::arch::x86_64::two_store(
                    *area,
                    *off,
                    *index,
                    self.item,
                    self.at(v.as_ptr()),
                    expect,
                    v2.as_ptr(),
                    newv2,
                    newv,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Hold::Rseq { .. } => unreachable!("rseq access requires critical sections"),
            Hold::Lease(_) | Hold::Leased { .. } => {
                held::two_store(v, expect, v2, newv2, newv, release)
            }
        }
    }

    /// Memcpy-then-store: `if *v == expect { copy len bytes src -> dst; *v = newv }`, with a
    /// release commit. `v` and `dst[..len]` lie in the slot; `len` is at most
    /// [`MEMCPY_MAX`].
    ///
    /// # Safety
    /// `src` valid for `len` reads, not overlapping `v`; `dst[..len]` not overlapping `v`,
    /// only written by operations on this slot, and read by other threads only after an
    /// acquire load of `v` saw the commit.
    #[inline(always)]
    pub unsafe fn memcpy_then_store(
        &self,
        v: &AtomicU64,
        expect: u64,
        dst: *mut u8,
        src: *const u8,
        len: usize,
        newv: u64,
    ) -> Result<Outcome, CopyTooLong> {
        if len > MEMCPY_MAX {
            return Err(CopyTooLong { len });
        }
        self.check_within(v.as_ptr().cast(), 8);
        self.check_within(dst, len);
        Ok(match &self.hold {
            #[cfg(percid_rseq_asm)]
            // SAFETY: as in `add`; buffer validity is the caller's contract.
            Hold::Rseq { area, off, index } => unsafe {
                crate::rseq::arch::x86_64::memcpy_then_store(
                    *area,
                    *off,
                    *index,
                    self.item,
                    self.at(v.as_ptr()),
                    expect,
                    dst,
                    src,
                    len,
                    newv,
                )
            },
            #[cfg(not(percid_rseq_asm))]
            Hold::Rseq { .. } => unreachable!("rseq access requires critical sections"),
            // SAFETY: the caller's contract; the lease makes this thread the only writer.
            Hold::Lease(_) | Hold::Leased { .. } => unsafe {
                held::memcpy_then_store(v, expect, src, dst, len, newv)
            },
        })
    }
}

impl<T> Drop for Current<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Hold::Lease(lease) = &mut self.hold {
            // SAFETY: taken exactly once, here; `hold` is not used afterwards.
            release(unsafe { std::mem::ManuallyDrop::take(lease) });
        }
    }
}

/// Releases a `Current`'s lease, out of line and by value (no address of the `Current`
/// escapes): what lets the compiler keep an rseq `Current` in registers and drop it for free.
#[inline(never)]
fn release(lease: CidLease<'static>) {
    drop(lease);
}

#[cold]
#[inline(never)]
fn not_in_slot() -> ! {
    panic!("percid: an operation of a Current must target memory inside its own slot")
}

// ---------------------------------------------------------------------------------------
// librseq-style free functions: index mode + expected index.

/// Per mode: 0 not decided yet, 1 rseq, 2 leases.
static FREE_ACCESS: [AtomicU8; 2] = [AtomicU8::new(0), AtomicU8::new(0)];

/// Whether the free functions use rseq critical sections for `mode` in this process
/// (decided on first use, then one load).
#[inline(always)]
pub fn uses_rseq(mode: IndexMode) -> bool {
    // The rseq answer is the fast path; the others (and the first call) are out of line, so
    // the compiler lays the critical section out as the fall-through.
    let v = FREE_ACCESS[mode as usize].load(Ordering::Relaxed);
    v == 1 || uses_rseq_slow(mode, v)
}

#[cold]
#[inline(never)]
fn uses_rseq_slow(mode: IndexMode, v: u8) -> bool {
    match v {
        2 => false,
        _ => decide_free_access(mode),
    }
}

/// The calling thread's area for the free functions' critical sections: one thread-local
/// load. The caller's index came from [`current_index`] on this thread, which initialised the
/// thread, and a thread never goes back to the uninitialised sentinel: so this is glibc's or
/// our registered area, or the thread's own area marked failed (on which a section aborts),
/// never read-only memory.
#[inline(always)]
fn section_area() -> *const RseqArea {
    registration::area_raw()
}

#[cold]
#[inline(never)]
fn decide_free_access(mode: IndexMode) -> bool {
    let index = match mode {
        IndexMode::CpuId => Index::CpuId,
        IndexMode::MmCid => Index::MmCid,
    };
    let rseq = Access::of(index).is_rseq();
    FREE_ACCESS[mode as usize].store(if rseq { 1 } else { 2 }, Ordering::Relaxed);
    rseq
}

/// The index to pass as `expected` to the free functions for `mode`: the rseq field, or on
/// the fallback the CID the calling CPU keeps in the cache-local allocator (taken and
/// released once, so the CPU keeps it for the next operation). `None` when the thread has no
/// usable registration in a process that uses rseq (its own registration failed, or
/// [`prepare_unload`](crate::rseq::prepare_unload) ran on it).
#[inline(always)]
pub fn current_index(mode: IndexMode) -> Option<u32> {
    if uses_rseq(mode) {
        let i = crate::rseq::read_field(registration::area_raw(), mode);
        if i < u32::MAX - 1 {
            return Some(i);
        }
        return current_index_slow(mode);
    }
    current_index_leased()
}

/// [`current_index`] on a thread whose area reads a sentinel: initialises the thread (first
/// use) and reads again; `None` if it has no registration.
#[cold]
#[inline(never)]
fn current_index_slow(mode: IndexMode) -> Option<u32> {
    let i = crate::rseq::read_field(registration::area(), mode);
    (i < u32::MAX - 1).then_some(i)
}

/// [`current_index`] on the fallback.
#[inline(never)]
fn current_index_leased() -> Option<u32> {
    Some(fallback_allocator().acquire().cid())
}

/// Runs `op` under an exclusive lease on exactly `expected` (the fallback of the free
/// functions); `Aborted` if another thread holds it. Out of line (and marked cold): the free
/// functions' critical sections stay the fall-through path.
#[cold]
#[inline(never)]
fn with_exact_lease<R>(expected: u32, aborted: R, op: impl FnOnce() -> R) -> R {
    match fallback_allocator().try_acquire_exact(expected) {
        Some(_lease) => op(),
        None => aborted,
    }
}

/// `*v += n` on slot `expected` (see the module docs for both paths).
///
/// # Safety
/// `expected` from [`current_index`] on this thread; `v` valid, and accessed concurrently
/// only by operations of this module with the same mode, or atomic loads.
#[inline(always)]
pub unsafe fn add(mode: IndexMode, expected: u32, v: *mut u64, n: u64) -> Outcome {
    #[cfg(percid_rseq_asm)]
    if uses_rseq(mode) {
        // SAFETY: `area()` is this thread's initialised area (an unregistered thread's is
        // its own area marked failed, on which the section aborts); the rest is the
        // caller's contract.
        return unsafe {
            crate::rseq::arch::x86_64::add(
                section_area(),
                mode.field_offset(),
                expected,
                v.cast(),
                0,
                n,
            )
        };
    }
    // SAFETY: the caller guarantees `v` is a valid, aligned u64 used atomically.
    let a = unsafe { AtomicU64::from_ptr(v) };
    with_exact_lease(expected, Outcome::Aborted, || held::add(a, n))
}

/// [`add`] on the `u64` at `base + offset`: the form to use for per-slot data laid out as
/// `base + slot * stride` (a pool item, an array of padded entries), passing the item's slot
/// 0 as `base` and `slot * stride (+ field)` as `offset`. The section then addresses its
/// target as `[base + offset]`, which lets the processor forward a loop of adds to one slot
/// far more cheaply than through a freshly computed pointer (Rust's `asm!` has no memory
/// operands, so the split must come from the caller; librseq gets it from C's `"m"`).
///
/// # Safety
/// As for [`add`], for the `u64` at `base + offset`.
#[inline(always)]
pub unsafe fn add_at(
    mode: IndexMode,
    expected: u32,
    base: *mut u8,
    offset: usize,
    n: u64,
) -> Outcome {
    #[cfg(percid_rseq_asm)]
    if uses_rseq(mode) {
        // SAFETY: as in `add`.
        return unsafe {
            crate::rseq::arch::x86_64::add(
                section_area(),
                mode.field_offset(),
                expected,
                base,
                offset,
                n,
            )
        };
    }
    // SAFETY: forwarded: `base + offset` is the caller's valid, aligned u64.
    unsafe { add(mode, expected, base.wrapping_add(offset).cast(), n) }
}

/// [`compare_and_store`] on the `u64` at `base + offset` (see [`add_at`]).
///
/// # Safety
/// As for [`add`], for the `u64` at `base + offset`.
#[inline(always)]
pub unsafe fn compare_and_store_at(
    mode: IndexMode,
    expected: u32,
    base: *mut u8,
    offset: usize,
    expect: u64,
    newv: u64,
) -> Outcome {
    #[cfg(percid_rseq_asm)]
    if uses_rseq(mode) {
        // SAFETY: as in `add`.
        return unsafe {
            crate::rseq::arch::x86_64::compare_and_store(
                section_area(),
                mode.field_offset(),
                expected,
                base,
                offset,
                expect,
                newv,
            )
        };
    }
    // SAFETY: forwarded.
    unsafe {
        compare_and_store(
            mode,
            expected,
            base.wrapping_add(offset).cast(),
            expect,
            newv,
        )
    }
}

/// `if *v == expect { *v = newv }` on slot `expected`; when it commits, the load has acquire
/// and the store release ordering.
///
/// # Safety
/// As for [`add`].
#[inline(always)]
pub unsafe fn compare_and_store(
    mode: IndexMode,
    expected: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
) -> Outcome {
    #[cfg(percid_rseq_asm)]
    if uses_rseq(mode) {
        // SAFETY: as in `add`.
        return unsafe {
            crate::rseq::arch::x86_64::compare_and_store(
                section_area(),
                mode.field_offset(),
                expected,
                v.cast(),
                0,
                expect,
                newv,
            )
        };
    }
    // SAFETY: as in `add`.
    let a = unsafe { AtomicU64::from_ptr(v) };
    with_exact_lease(expected, Outcome::Aborted, || {
        held::compare_and_store(a, expect, newv)
    })
}

/// List pop on slot `expected`: see [`Current::list_pop`].
///
/// # Safety
/// As for [`add`], plus [`Current::list_pop`]'s contract; `head` a valid `AtomicPtr`.
#[inline(always)]
pub unsafe fn list_pop(
    mode: IndexMode,
    expected: u32,
    head: *mut *mut u8,
    tag_mask: usize,
    next_offset: usize,
) -> (Outcome, *mut u8) {
    #[cfg(percid_rseq_asm)]
    if uses_rseq(mode) {
        // SAFETY: as in `add`.
        return unsafe {
            crate::rseq::arch::x86_64::list_pop(
                section_area(),
                mode.field_offset(),
                expected,
                head.cast(),
                0,
                core::ptr::null_mut(),
                tag_mask,
                next_offset,
            )
        };
    }
    // SAFETY: the caller guarantees `head` is a valid, aligned pointer cell used atomically.
    let head = unsafe { AtomicPtr::from_ptr(head) };
    with_exact_lease(expected, (Outcome::Aborted, core::ptr::null_mut()), || {
        // SAFETY: the caller's contract: `node` is valid with an AtomicPtr at `next_offset`.
        unsafe { held::list_pop(head, tag_mask, next_offset) }
    })
}

/// Two-store on slot `expected`: see [`Current::two_store`].
///
/// # Safety
/// As for [`add`], for `v` and `v2`.
#[inline(always)]
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
    #[cfg(percid_rseq_asm)]
    if uses_rseq(mode) {
        // SAFETY: as in `add`.
        return unsafe {
            crate::rseq::arch::x86_64::two_store(
                section_area(),
                mode.field_offset(),
                expected,
                v.cast(),
                0,
                expect,
                v2,
                newv2,
                newv,
            )
        };
    }
    // SAFETY: as in `add`.
    let (a, a2) = unsafe { (AtomicU64::from_ptr(v), AtomicU64::from_ptr(v2)) };
    with_exact_lease(expected, Outcome::Aborted, || {
        held::two_store(a, expect, a2, newv2, newv, release)
    })
}

/// Memcpy-then-store on slot `expected`: see [`Current::memcpy_then_store`]. At most
/// [`MEMCPY_MAX`] bytes.
///
/// # Safety
/// As for [`add`], plus [`Current::memcpy_then_store`]'s contract.
#[inline(always)]
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
) -> Result<Outcome, CopyTooLong> {
    if len > MEMCPY_MAX {
        return Err(CopyTooLong { len });
    }
    #[cfg(percid_rseq_asm)]
    if uses_rseq(mode) {
        // SAFETY: as in `add`; buffer validity is the caller's contract.
        return Ok(unsafe {
            crate::rseq::arch::x86_64::memcpy_then_store(
                section_area(),
                mode.field_offset(),
                expected,
                v.cast(),
                0,
                expect,
                dst,
                src,
                len,
                newv,
            )
        });
    }
    // SAFETY: as in `add`.
    let a = unsafe { AtomicU64::from_ptr(v) };
    Ok(with_exact_lease(expected, Outcome::Aborted, || {
        // SAFETY: the caller's contract; the lease makes this thread the only writer.
        unsafe { held::memcpy_then_store(a, expect, src, dst, len, newv) }
    }))
}

/// The operations on a slot this thread holds exclusively (a CID lease): the same effects as
/// the critical sections, as plain atomic loads and stores. Shared by [`Current`] and the
/// free functions.
mod held {
    use super::Outcome;
    use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

    #[inline(always)]
    pub(super) fn add(v: &AtomicU64, n: u64) -> Outcome {
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        Outcome::Committed
    }

    /// The load is an acquire, as the critical section's is on x86_64 (TSO): a lock taken
    /// with this operation orders the protected accesses after the previous holder's
    /// release store without relying on a separate `fence` (which ThreadSanitizer does not
    /// model, so callers' fences alone left it reporting the protected data as raced).
    #[inline(always)]
    pub(super) fn compare_and_store(v: &AtomicU64, expect: u64, newv: u64) -> Outcome {
        if v.load(Ordering::Acquire) != expect {
            return Outcome::CompareFailed;
        }
        v.store(newv, Ordering::Release);
        Outcome::Committed
    }

    /// # Safety
    /// A non-null, untagged `*head` is a valid node with an `AtomicPtr` at `next_offset`.
    #[inline(always)]
    pub(super) unsafe fn list_pop(
        head: &AtomicPtr<u8>,
        tag_mask: usize,
        next_offset: usize,
    ) -> (Outcome, *mut u8) {
        let node = head.load(Ordering::Acquire);
        if node.is_null() || (node as usize) & tag_mask != 0 {
            return (Outcome::CompareFailed, node);
        }
        // SAFETY: the caller's contract: `node` is valid with an AtomicPtr at `next_offset`.
        let next =
            unsafe { &*(node.add(next_offset) as *const AtomicPtr<u8>) }.load(Ordering::Relaxed);
        head.store(next, Ordering::Relaxed);
        (Outcome::Committed, node)
    }

    #[inline(always)]
    pub(super) fn two_store(
        v: &AtomicU64,
        expect: u64,
        v2: &AtomicU64,
        newv2: u64,
        newv: u64,
        release: bool,
    ) -> Outcome {
        if v.load(Ordering::Relaxed) != expect {
            return Outcome::CompareFailed;
        }
        v2.store(newv2, Ordering::Relaxed);
        let order = if release {
            Ordering::Release
        } else {
            Ordering::Relaxed
        };
        v.store(newv, order);
        Outcome::Committed
    }

    /// # Safety
    /// `src` valid for `len` reads and `dst` for `len` writes, neither overlapping `v`; this
    /// thread is the only writer of `dst[..len]`.
    #[inline(always)]
    pub(super) unsafe fn memcpy_then_store(
        v: &AtomicU64,
        expect: u64,
        src: *const u8,
        dst: *mut u8,
        len: usize,
        newv: u64,
    ) -> Outcome {
        if v.load(Ordering::Relaxed) != expect {
            return Outcome::CompareFailed;
        }
        // SAFETY: the caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
        v.store(newv, Ordering::Release);
        Outcome::Committed
    }
}
