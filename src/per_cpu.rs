//! Typed per-slot storage: [`PerCpu<T>`] holds one `T` per slot (per CPU or per concurrency
//! ID) in a [`Pool`], and updates the calling thread's slot with rseq critical sections (or
//! under a CID lease on the fallback).
//!
//! # Layout
//!
//! A `PerCpu<T>` is one pool item of `size_of::<T>()` bytes (rounded up to its size class,
//! aligned to at least `align_of::<T>()`); slot `s` lives at `slot 0 + (s << log2 stride)`.
//! Every slot starts as a byte copy of the init value, without touching untouched slots in a
//! [`Populate::CowInit`](crate::pool::Populate::CowInit) pool (the default): see the
//! [pool docs](crate::pool#population-and-memory-cost).
//!
//! # The access is part of the handle
//!
//! The index source ([`Index`]) is chosen at construction and resolved, with the slots, into
//! an [`Access`]: rseq critical sections on `cpu_id` or on `mm_cid`, or leases from a
//! user-space CID allocator. It never changes, and every operation on the slots goes through
//! it: an rseq critical section excludes only other sections on the same field, so two
//! accesses on one set of slots would lose updates. The operations are handed out as a
//! [`Current`], which only the handle creates and which only operates on its own slot.
//!
//! # Lazy or eager
//!
//! [`PerCpu::new`] and [`PerCpu::with_index`] are `const`: a `static` needs no `LazyLock`.
//! They allocate the slots from [`Pool::global`] on first use. If that fails (the process
//! cannot map memory), the handle has no slots: [`run`](PerCpu::run) returns `None` as for a
//! thread without a slot, and [`try_init`](PerCpu::try_init) reports the error.
//! [`PerCpu::in_pool`] allocates at once, from a given pool, and returns the error.
//!
//! Creation is claimed by one thread (a compare-exchange on the creator's thread token,
//! then the tag goes `UNINIT`/`FAILED` -> `BUSY` -> access or `FAILED`); other threads wait
//! for it. A signal handler that uses the handle while its own thread is inside that
//! creation does not wait (the creation cannot go on until the handler returns): it sees
//! its own token and takes the path of a thread without a slot (the structures' overflow
//! paths). First use from a signal handler is otherwise not async-signal-safe (creation
//! allocates and takes the pool's lock); use a handle once before relying on it there.
//!
//! # Updating a slot
//!
//! [`run`](PerCpu::run) enters the calling thread's slot, hands the closure a [`Current`]
//! and the slot's value, and retries the closure (entering afresh) until it returns `Some`.
//! An rseq operation returns [`Outcome::Aborted`] when the thread was preempted, migrated or
//! signalled in between: return `None` then, to retry on the slot the thread has now.
//!
//! ```
//! use percid::per_cpu::PerCpu;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! #[derive(Default)]
//! #[repr(C)]
//! struct Stats {
//!     requests: AtomicU64,
//!     bytes: AtomicU64,
//! }
//! // Checks that every field is slot-safe and that `Stats` has no padding.
//! percid::slot_safe!(Stats { requests: AtomicU64, bytes: AtomicU64 });
//!
//! static STATS: PerCpu<Stats> = PerCpu::new(Stats {
//!     requests: AtomicU64::new(0),
//!     bytes: AtomicU64::new(0),
//! });
//!
//! // One field: one critical section on this thread's slot.
//! assert!(STATS.add(|s| &s.requests, 1));
//!
//! // Several fields, or a compare: `run` retries until the closure returns `Some`.
//! let added = STATS.run(|current, slot| {
//!     current.add(&slot.bytes, 4096).is_committed().then_some(())
//! });
//! assert_eq!(added, Some(()));
//!
//! let requests: u64 = STATS.iter().map(|s| s.requests.load(Ordering::Relaxed)).sum();
//! let bytes: u64 = STATS.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum();
//! assert_eq!((requests, bytes), (1, 4096));
//! ```
//!
//! `run` and `add` return `None`/`false` when the thread has no slot: an index at or beyond
//! the slots (a pool with fewer slots than CPUs), a thread without rseq registration on an
//! rseq-indexed handle, or no slot memory. Structures keep a shared fallback for that case
//! ([`Counter`](crate::Counter) adds to an overflow cell).
//!
//! # Which types
//!
//! Slots are initialised by copying bytes, so `T` must implement [`SlotSafe`]: zero bytes
//! are a valid `T`, `T` has no padding, and byte copies of a value are valid independent
//! values (no ownership, no drop glue). It is implemented for integers, floats, `bool`,
//! `char`, atomics, arrays of those, and tuples of those without padding; [`slot_safe!`]
//! implements it, checked, for a `#[repr(C)]` struct of such fields.
//!
//! # Concurrency
//!
//! `PerCpu<T>` is `Send` when `T: Send` and `Sync` when `T: Sync`: it behaves like a boxed
//! `[T]` with one element per slot that hands out `&T` to any slot ([`get`](PerCpu::get),
//! [`iter`](PerCpu::iter)) from any thread. Writers that go through raw slot pointers while
//! others read must use types whose shared access allows it (atomics).
//!
//! [`Access`]: crate::ops::Access
//! [`Outcome::Aborted`]: crate::ops::Outcome::Aborted
//! [`slot_safe!`]: crate::slot_safe

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicBool, AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicPtr, AtomicU8,
    AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use crate::index::{CidAllocator, Index};
use crate::ops::{Access, Current};
use crate::pool::{Pool, PoolError};
use crate::rseq::{IndexMode, registration};

/// A token of the calling thread, never 0: the address of a thread-local (distinct between
/// live threads). Reading it is async-signal-safe (a constant-initialised thread-local
/// without destructor is a plain TLS access).
fn thread_token() -> usize {
    std::thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| std::ptr::from_ref(t).addr())
}

/// Types that may be placed in pool slots by byte copy.
///
/// # Safety
///
/// Implementors guarantee that:
///
/// 1. the all-zero byte pattern is a valid `T` (pool memory starts zeroed, and size-class
///    padding beyond `size_of::<T>()` is zero);
/// 2. `T` has no padding or otherwise uninitialised bytes, so its bytes may be read as
///    `u8` (the init value is copied as bytes and compared with slot contents);
/// 3. a byte copy of a valid `T` is a valid `T` that may coexist with the original: `T`
///    owns nothing (no heap pointer, no unique reference) and has no drop glue (slots are
///    never dropped, and the init value is duplicated into every slot).
///
/// Prefer [`slot_safe!`](crate::slot_safe) for your own structs: it checks 1-3 from the
/// fields.
///
/// `Cell` and `RefCell` are deliberately not `SlotSafe`: a slot is shared by every thread
/// that gets its index (and read by `iter` and drains from any thread), so a `PerCpu` hands
/// out `&T` only, and mutable fields are atomics updated in critical sections. Plain integers
/// are `SlotSafe` (read-only in a `PerCpu`); for non-atomic data mutated per slot, use
/// [`PerCpuLock<T>`](crate::PerCpuLock), whose guard gives `&mut T`.
pub unsafe trait SlotSafe: Sized {
    /// Whether the type is free of padding, checked at compile time where a `PerCpu` of it
    /// is created. `true` for every implementation but tuples whose elements leave gaps.
    #[doc(hidden)]
    const PADDING_FREE: bool = true;
}

macro_rules! slot_safe_primitives {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: primitive without padding; zero is valid; plain copyable data (or an
            // atomic of it) that owns nothing and has no drop glue.
            unsafe impl SlotSafe for $t {}
        )*
    };
}

slot_safe_primitives!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    AtomicBool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize,
);

// SAFETY: a pointer-sized atomic; zero is the null pointer; copies are just addresses (the
// slot does not own the pointee); no drop glue.
unsafe impl<T> SlotSafe for AtomicPtr<T> {}

// SAFETY: arrays have no padding between elements, and zero-validity, no-ownership and no
// drop glue hold element-wise.
unsafe impl<T: SlotSafe, const N: usize> SlotSafe for [T; N] {
    const PADDING_FREE: bool = T::PADDING_FREE;
}

macro_rules! slot_safe_tuples {
    ($(($($name:ident),+)),* $(,)?) => {
        $(
            // SAFETY: zero-validity, no ownership and no drop glue hold element-wise; the
            // absence of padding is `PADDING_FREE`, checked at compile time where a PerCpu is
            // created (the elements' sizes add up to the tuple's).
            unsafe impl<$($name: SlotSafe),+> SlotSafe for ($($name,)+) {
                const PADDING_FREE: bool = $($name::PADDING_FREE &&)+
                    (0 $(+ size_of::<$name>())+) == size_of::<Self>();
            }
        )*
    };
}

slot_safe_tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
    (A, B, C, D, E, F, G),
    (A, B, C, D, E, F, G, H),
);

/// Implements [`SlotSafe`] for a struct, checked at compile time:
///
/// * the list names **every** field of the struct **exactly once** (it is used as an
///   exhaustive destructuring pattern);
/// * each field has **exactly** the listed type (no coercion: a `Box<u64>` or `&u64` field
///   listed as `u64` is rejected), and that type is `SlotSafe`;
/// * the struct has no drop glue (`needs_drop` is false: no `Drop` impl, no owning field);
/// * the fields' sizes add up to the struct's size (no padding).
///
/// Write the struct `#[repr(C)]` so its layout is fixed.
///
/// ```
/// use std::sync::atomic::{AtomicU32, AtomicU64};
///
/// #[repr(C)]
/// struct Stats {
///     hits: AtomicU64,
///     misses: AtomicU32,
///     evictions: AtomicU32,
/// }
/// percid::slot_safe!(Stats { hits: AtomicU64, misses: AtomicU32, evictions: AtomicU32 });
///
/// let stats = percid::per_cpu::PerCpu::new(Stats {
///     hits: AtomicU64::new(0),
///     misses: AtomicU32::new(0),
///     evictions: AtomicU32::new(0),
/// });
/// assert!(stats.add(|s| &s.hits, 1));
/// ```
///
/// Each of the following does not compile (the reason is in the comment).
///
/// A struct with padding (7 bytes after `flag`):
///
/// ```compile_fail
/// use std::sync::atomic::{AtomicU8, AtomicU64};
/// #[repr(C)]
/// struct Padded { flag: AtomicU8, count: AtomicU64 }
/// percid::slot_safe!(Padded { flag: AtomicU8, count: AtomicU64 });
/// ```
///
/// A field that owns memory, listed with its own type (`String` is not `SlotSafe`):
///
/// ```compile_fail
/// #[repr(C)]
/// struct Owns { name: String }
/// percid::slot_safe!(Owns { name: String });
/// ```
///
/// A field listed several times, standing in for one that is left out (the sizes add up):
///
/// ```compile_fail
/// #[repr(C)]
/// struct Pair { a: u64, b: u64 }
/// percid::slot_safe!(Pair { a: u64, a: u64 });
/// ```
///
/// ```compile_fail
/// #[repr(C)]
/// struct Owns { a: u64, s: String }
/// percid::slot_safe!(Owns { a: u64, a: u64, a: u64, a: u64 });
/// ```
///
/// A field left out (here a zero-sized one, so the sizes add up; it is uninhabited, so the
/// all-zero slot would not be a valid value):
///
/// ```compile_fail
/// #[repr(C)]
/// struct Never { a: u64, never: std::convert::Infallible }
/// percid::slot_safe!(Never { a: u64 });
/// ```
///
/// A field listed as the type it dereferences to (a `Box<u64>` is not a `u64`):
///
/// ```compile_fail
/// #[repr(C)]
/// struct Boxed { a: Box<u64> }
/// percid::slot_safe!(Boxed { a: u64 });
/// ```
///
/// Likewise a reference (no drop glue, but all-zero bytes are not a valid reference):
///
/// ```compile_fail
/// #[repr(C)]
/// struct Borrows { a: &'static u64 }
/// percid::slot_safe!(Borrows { a: u64 });
/// ```
///
/// A struct with a `Drop` impl (slots are byte copies that are never dropped):
///
/// ```compile_fail
/// use std::sync::atomic::AtomicU64;
/// #[repr(C)]
/// struct Noisy { a: AtomicU64 }
/// impl Drop for Noisy {
///     fn drop(&mut self) {}
/// }
/// percid::slot_safe!(Noisy { a: AtomicU64 });
/// ```
#[macro_export]
macro_rules! slot_safe {
    ($ty:ident { $($field:ident : $fty:ty),+ $(,)? }) => {
        const _: () = {
            const fn is_slot_safe<T: $crate::per_cpu::SlotSafe>() {}
            $( is_slot_safe::<$fty>(); )+
            assert!(
                !::core::mem::needs_drop::<$ty>(),
                concat!("percid::slot_safe!: ", stringify!($ty),
                        " has drop glue (a Drop impl or an owning field)")
            );
            assert!(
                0 $(+ ::core::mem::size_of::<$fty>())+ == ::core::mem::size_of::<$ty>(),
                concat!("percid::slot_safe!: ", stringify!($ty),
                        " has padding or fields not listed")
            );
            $( assert!(<$fty as $crate::per_cpu::SlotSafe>::PADDING_FREE); )+
            // Type equality without coercion: `A` is inferred from the field itself (an
            // inference variable takes no deref or reference coercion), then must be `B`.
            trait SameType<B> {}
            impl<B> SameType<B> for B {}
            #[allow(dead_code)]
            const fn exact<A: SameType<B>, B>(_: &A) {}
            // The list is the struct's fields, each once: an exhaustive pattern (by
            // reference, so that a `Drop` type reports its drop glue, not a move error).
            #[allow(dead_code)]
            fn fields(v: &$ty) {
                let $ty { $($field),+ } = v;
                $( exact::<_, $fty>($field); )+
            }
        };
        // SAFETY: checked above: the listed fields are exactly the struct's fields, each with
        // exactly its listed type, every one SlotSafe (zero-valid, owns nothing, no drop glue,
        // no padding inside); their sizes add up to the struct's (no padding between them);
        // and the struct itself has no drop glue (no Drop impl).
        unsafe impl $crate::per_cpu::SlotSafe for $ty {}
    };
}

/// `tag` values: not created yet, being created, creation failed, or the access (rseq, on the
/// field at `Slots::field`; leases, from `Slots::leases`).
const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const FAILED: u8 = 2;
const RSEQ: u8 = 3;
const LEASE: u8 = 4;

/// Where the slots are, written once before `tag` is set to an access (release), read after
/// an acquire load of `tag` saw it.
struct Slots {
    /// Slot 0 of the item: an allocated item of `pool`, of at least `size_of::<T>()` bytes,
    /// aligned for `T`, holding a valid `T` in every slot.
    base: *mut u8,
    /// log2 of the pool's stride.
    shift: u32,
    /// rseq access: the byte offset of the index field (`IndexMode::field_offset`).
    field: u32,
    nr_slots: usize,
    /// The allocator of a lease access.
    leases: Option<&'static CidAllocator>,
    /// The pool the item belongs to (keeps the memory mapped; frees the item on drop).
    pool: Option<Pool>,
}

/// What the rseq fast path reads, without looking at the tag: two words, so that a call
/// that must reload them (an `asm!` block counts as writing any memory) loads two words.
///
/// * `limits`: the slot count in the low 32 bits when the access is rseq and the slots exist
///   (0 otherwise: before creation, on leases, after a failure), and in the high 32 bits the
///   byte offset of the index field in the rseq area (always a valid offset: 4 until the slots
///   exist, so the fast path may read the field before comparing);
/// * `base`: slot 0 of the item, tagged with log2 of the stride in its top 6 bits (user-space
///   addresses leave them clear; a base that does not is not published here).
///
/// A thread's index is below the slot count only once `base` is published: release store of
/// `limits` after it, acquire load before it.
struct Fast {
    limits: AtomicU64,
    base: AtomicPtr<u8>,
}

/// Bit position of the stride's log2 in [`Fast::base`].
const SHIFT_TAG: u32 = 58;

impl Fast {
    const fn new() -> Fast {
        Fast {
            limits: AtomicU64::new((IndexMode::CpuId.field_offset() as u64) << 32),
            base: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Publishes an rseq slot layout; false (nothing published) if the base has bits in the
    /// tag's place.
    fn publish(&self, base: *mut u8, shift: u32, field: usize, nr_slots: usize) -> bool {
        if base.addr() >> SHIFT_TAG != 0 || nr_slots > u32::MAX as usize {
            return false;
        }
        self.base.store(
            base.map_addr(|a| a | ((shift as usize) << SHIFT_TAG)),
            Ordering::Relaxed,
        );
        self.limits
            .store(nr_slots as u64 | (field as u64) << 32, Ordering::Release);
        true
    }

    /// The layout: `(slot count, field offset)`, then [`layout`](Self::layout) for the rest.
    #[inline(always)]
    fn limits(&self) -> (usize, usize) {
        let l = self.limits.load(Ordering::Acquire);
        ((l & 0xffff_ffff) as usize, (l >> 32) as usize)
    }

    /// `(slot 0, log2 stride)`: valid once [`limits`](Self::limits) returned a non-zero count.
    #[inline(always)]
    fn layout(&self) -> (*mut u8, u32) {
        let b = self.base.load(Ordering::Relaxed);
        (
            b.map_addr(|a| a & ((1 << SHIFT_TAG) - 1)),
            (b.addr() >> SHIFT_TAG) as u32,
        )
    }
}

/// One `T` per slot, allocated from a [`Pool`]. See the [module docs](self).
pub struct PerCpu<T: SlotSafe> {
    fast: Fast,
    tag: AtomicU8,
    slots: UnsafeCell<Slots>,
    /// `None`: [`Index::default()`], read when the slots are created.
    index: Option<Index>,
    /// Resolve the index with `Access::drainable` (for structures that drain).
    drainable: bool,
    /// The value every slot starts as (kept for lazy creation).
    init: T,
    /// The thread that claimed lazy creation ([`thread_token`]), 0 when none: the claim is
    /// taken before the tag becomes `BUSY` and dropped after it leaves it, so a signal
    /// handler that interrupted the creating thread sees its own token and does not wait.
    creator: AtomicUsize,
    _owns: PhantomData<T>,
}

// SAFETY: the handle owns its item (freed on drop, from any thread: the pool is Sync) and
// gives access to `T` values, like a `Box<[T]>`: sending it is sound when `T: Send`.
unsafe impl<T: SlotSafe + Send> Send for PerCpu<T> {}
// SAFETY: `&PerCpu<T>` gives only `&T` to slots (and raw pointers, whose use is unsafe), like
// `&[T]`: sharing it is sound when `T: Sync`. `slots` is written once, under the `BUSY` tag
// by the one thread that won it, and read only after an acquire load saw its publication.
unsafe impl<T: SlotSafe + Sync> Sync for PerCpu<T> {}

// The slots are written once, under a guard that marks creation failed if it unwinds, so a
// panic leaves the handle consistent: it is as unwind-safe as its `T`.
impl<T: SlotSafe + std::panic::RefUnwindSafe> std::panic::RefUnwindSafe for PerCpu<T> {}
impl<T: SlotSafe + std::panic::UnwindSafe> std::panic::UnwindSafe for PerCpu<T> {}

impl<T: SlotSafe> PerCpu<T> {
    const CHECKS: () = {
        assert!(
            T::PADDING_FREE,
            "percid: this type has padding (its elements' sizes do not add up), so it cannot live in pool slots"
        );
        assert!(
            !std::mem::needs_drop::<T>(),
            "percid: this type has drop glue, so it cannot live in pool slots (they are byte copies never dropped)"
        );
    };

    /// One `T` per slot, each starting as `init`, indexed by [`Index::default()`], in
    /// [`Pool::global`]; the slots are created on first use (see the
    /// [module docs](self#lazy-or-eager)).
    pub const fn new(init: T) -> Self {
        Self::lazy(None, init, false)
    }

    /// As [`new`](Self::new), indexed by `index`.
    pub const fn with_index(index: Index, init: T) -> Self {
        Self::lazy(Some(index), init, false)
    }

    /// For structures that drain their slots from other threads ([`Access`] resolved with
    /// `Access::drainable`).
    pub(crate) const fn new_drainable(index: Option<Index>, init: T) -> Self {
        Self::lazy(index, init, true)
    }

    const fn lazy(index: Option<Index>, init: T, drainable: bool) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECKS;
        PerCpu {
            fast: Fast::new(),
            tag: AtomicU8::new(UNINIT),
            slots: UnsafeCell::new(Slots {
                base: std::ptr::null_mut(),
                shift: 0,
                field: 0,
                nr_slots: 0,
                leases: None,
                pool: None,
            }),
            index,
            drainable,
            init,
            creator: AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }

    /// One `T` per slot of `pool`, each starting as a byte copy of `init`, indexed by
    /// `index`; the slots are created now.
    pub fn in_pool(pool: &Pool, index: Index, init: T) -> Result<Self, PoolError> {
        Self::eager(pool, index, init, false)
    }

    /// [`in_pool`](Self::in_pool) for structures that drain their slots.
    pub(crate) fn in_pool_drainable(pool: &Pool, index: Index, init: T) -> Result<Self, PoolError> {
        Self::eager(pool, index, init, true)
    }

    fn eager(pool: &Pool, index: Index, init: T, drainable: bool) -> Result<Self, PoolError> {
        let this = Self::lazy(Some(index), init, drainable);
        this.tag.store(BUSY, Ordering::Relaxed);
        let r = this.create(pool);
        this.tag.store(
            match r {
                Ok(t) => t,
                Err(_) => FAILED,
            },
            Ordering::Release,
        );
        r.map(|_| this)
    }

    /// Allocates the item and records where the slots are; returns the access tag. Called
    /// by the one thread that holds the `BUSY` tag.
    fn create(&self, pool: &Pool) -> Result<u8, PoolError> {
        #[cfg(test)]
        tests::in_create();
        let size = size_of::<T>();
        // SAFETY: `init` is a live value of `size` bytes, and `T: SlotSafe` has no padding,
        // so all of its bytes are initialised. Nobody writes it (no `&mut` to it escapes).
        let bytes =
            unsafe { std::slice::from_raw_parts((&raw const self.init).cast::<u8>(), size) };
        let item = pool.alloc_with(size, align_of::<T>(), bytes)?;
        let index = self.index.unwrap_or_default();
        let access = if self.drainable {
            Access::drainable(index)
        } else {
            Access::of(index)
        };
        let (tag, field, leases) = match access {
            Access::Rseq(mode) => (RSEQ, mode.field_offset() as u32, None),
            Access::Lease(a) => (LEASE, 0, Some(a)),
        };
        // SAFETY: we hold the BUSY tag: no other thread reads or writes `slots` until the
        // release store of the access tag publishes it.
        unsafe {
            *self.slots.get() = Slots {
                base: item.as_ptr(),
                shift: pool.stride().trailing_zeros(),
                field,
                nr_slots: pool.nr_slots(),
                leases,
                pool: Some(pool.clone()),
            }
        };
        if tag == RSEQ {
            // Without it (an address with high bits set) every call takes the slow path.
            let _ = self.fast.publish(
                item.as_ptr(),
                pool.stride().trailing_zeros(),
                field as usize,
                pool.nr_slots(),
            );
        }
        Ok(tag)
    }

    /// Creates the slots now if they do not exist yet (from [`Pool::global`]), and reports
    /// why they cannot be created. A handle whose lazy creation failed tries again here.
    ///
    /// Waits while another thread creates them. Called from a signal handler that
    /// interrupted this thread's own creation of them (which cannot finish before the
    /// handler returns), it does not wait: it returns [`PoolError::CreationInProgress`],
    /// and the operations take the path of a thread without a slot.
    pub fn try_init(&self) -> Result<(), PoolError> {
        let me = thread_token();
        loop {
            match self.tag.load(Ordering::Acquire) {
                RSEQ | LEASE => return Ok(()),
                UNINIT | FAILED | BUSY => {}
                _ => unreachable!("invalid PerCpu tag"),
            }
            // The claim: one thread at a time, recognisable by a handler on that thread.
            match self
                .creator
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {}
                Err(owner) if owner == me => return Err(PoolError::CreationInProgress),
                Err(_) => {
                    std::thread::yield_now();
                    continue;
                }
            }
            // Drops the claim, and marks creation failed if `create` unwinds (so that no
            // thread waits on BUSY forever).
            struct Claim<'a> {
                tag: &'a AtomicU8,
                creator: &'a AtomicUsize,
                armed: bool,
            }
            impl Drop for Claim<'_> {
                fn drop(&mut self) {
                    if self.armed {
                        self.tag.store(FAILED, Ordering::Release);
                    }
                    self.creator.store(0, Ordering::Release);
                }
            }
            let mut claim = Claim {
                tag: &self.tag,
                creator: &self.creator,
                armed: false,
            };
            // Under the claim only this thread changes the tag; another thread may have
            // finished before we claimed.
            let t = self.tag.load(Ordering::Acquire);
            if matches!(t, RSEQ | LEASE) {
                return Ok(());
            }
            debug_assert!(matches!(t, UNINIT | FAILED), "BUSY outside a claim");
            self.tag.store(BUSY, Ordering::Relaxed);
            claim.armed = true;
            let r = self.create(Pool::global());
            claim.armed = false;
            let tag = *r.as_ref().unwrap_or(&FAILED);
            self.tag.store(tag, Ordering::Release);
            drop(claim);
            return r.map(|_| ());
        }
    }

    /// First use: creates the slots (lazily). Returns whether they exist now.
    #[cold]
    #[inline(never)]
    fn init_cold(&self) -> bool {
        match self.tag.load(Ordering::Acquire) {
            FAILED => false,
            _ => self.try_init().is_ok(),
        }
    }

    /// The slots, if created.
    #[inline(always)]
    fn ready(&self) -> Option<&Slots> {
        match self.tag.load(Ordering::Acquire) {
            // SAFETY: an access tag was stored with release ordering after `slots` was
            // written, and `slots` is never written again.
            RSEQ | LEASE => Some(unsafe { &*self.slots.get() }),
            _ => None,
        }
    }

    /// How the slots are reached, once they exist (`None` before, or if they could not be
    /// created).
    pub fn access(&self) -> Option<Access> {
        let s = self.ready()?;
        Some(match s.leases {
            Some(a) => Access::Lease(a),
            None => Access::Rseq(IndexMode::from_offset(s.field as usize)),
        })
    }

    /// The index source asked for (the default one resolved, once the slots exist).
    pub fn index(&self) -> Index {
        self.index.unwrap_or_default()
    }

    /// Number of slots (creating them if they were never tried; 0 if they cannot be
    /// created). Fixed once the slots exist.
    pub fn nr_slots(&self) -> usize {
        if self.tag.load(Ordering::Acquire) == UNINIT {
            self.init_cold();
        }
        self.ready().map_or(0, |s| s.nr_slots)
    }

    /// The pool the slots live in, once they exist.
    pub fn pool(&self) -> Option<&Pool> {
        self.ready().and_then(|s| s.pool.as_ref())
    }

    /// The index of the slot `slot` refers to (a reference into this handle's slots).
    pub(crate) fn index_of(&self, slot: &T) -> usize {
        let s = self
            .ready()
            .expect("a slot reference implies created slots");
        ((slot as *const T).addr() - s.base.addr()) >> s.shift
    }

    /// Pointer to slot `slot`, if the slots exist and `slot` is below their count.
    #[inline(always)]
    fn slot_ptr(&self, slot: usize) -> Option<NonNull<T>> {
        let s = self.ready()?;
        if slot < s.nr_slots {
            // SAFETY: slot < nr_slots, so the address is inside the item's range
            // reservation (Slots invariant), hence non-null and in bounds.
            Some(unsafe { NonNull::new_unchecked(s.base.add(slot << s.shift).cast()) })
        } else {
            None
        }
    }

    /// Raw pointer to slot `slot` (null if `slot` is not below the slot count, or the slots
    /// do not exist), valid while `self` lives. Writing through it while other threads read
    /// the slot requires a `T` that allows it (see the [module docs](self#concurrency)), and
    /// bypasses the per-slot exclusivity of [`run`](Self::run).
    #[inline]
    pub fn raw_slot_ptr(&self, slot: usize) -> *mut T {
        self.slot_ptr(slot)
            .map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }

    /// Shared reference to slot `slot`, or `None` if `slot` is not below the slot count (or
    /// the slots do not exist yet).
    ///
    /// Reading an untouched slot does not charge memory: it maps the kernel's zero page
    /// (`CowZero`) or the range's init image page (`CowInit`).
    #[inline]
    pub fn get(&self, slot: usize) -> Option<&T> {
        // SAFETY: the pointer is aligned and holds a valid T (Slots invariant) for the
        // lifetime of &self; mutation through &self only happens via atomics or raw
        // pointers, whose users must respect T's shared-access rules (module docs).
        self.slot_ptr(slot).map(|p| unsafe { p.as_ref() })
    }

    /// Exclusive reference to slot `slot`, or `None` if `slot` is not below the slot count.
    #[inline]
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        if self.tag.load(Ordering::Acquire) == UNINIT {
            self.init_cold();
        }
        // SAFETY: as for `get`, and `&mut self` excludes every other access to the slots.
        self.slot_ptr(slot).map(|mut p| unsafe { p.as_mut() })
    }

    /// Iterator over all slots, in slot order, for aggregation (empty if the slots do not
    /// exist yet: they would all read the init value).
    ///
    /// It reads every slot, up to the number of *possible* CPUs: reading untouched slots
    /// populates no private memory (see [`get`](Self::get)), but it does fault in page-table
    /// entries, so prefer summing over the slots actually in use when that is known.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            handle: self,
            next: 0,
            end: self.ready().map_or(0, |s| s.nr_slots),
        }
    }

    /// Runs `op` on the calling thread's current slot until it returns `Some`, entering the
    /// slot afresh (re-reading the index) before each attempt. `op` gets the [`Current`] to
    /// operate with and the slot's value. Returns `None` when the thread has no slot (see the
    /// [module docs](self#updating-a-slot)).
    ///
    /// This is the fast path every structure uses: the access is read once, and each access
    /// has its own loop in which `op` is inlined.
    #[inline(always)]
    pub fn run<'a, R>(
        &'a self,
        mut op: impl FnMut(&Current<'a, T>, &'a T) -> Option<R>,
    ) -> Option<R> {
        // The rseq fast path: one straight-line attempt, whose only loads from `self` are the
        // two `Fast` words (a loop of adds then has one taken branch: its own back edge).
        let (nr_slots, field) = self.fast.limits();
        let area = registration::area_raw();
        let index = crate::rseq::read_field_at(area, field);
        if (index as usize) < nr_slots {
            let (base, shift) = self.fast.layout();
            // SAFETY: index < nr_slots, which is non-zero only once `Fast` is published:
            // slot `index` of the item, aligned and holding a valid T for as long as `self`
            // lives; the shift is the log2 of the stride, below 64.
            let slot = unsafe { &*base.add((index as usize).unchecked_shl(shift)).cast::<T>() };
            if let Some(r) = op(&Current::rseq(slot, base, area, field, index), slot) {
                return Some(r);
            }
            // SAFETY: rseq access (the slot count is non-zero).
            return unsafe { self.run_rseq_retry(op) };
        }
        self.run_other(op)
    }

    /// [`run`](Self::run) when the fast path did not apply: leases, the first use, a thread
    /// whose index is beyond the slots (or not initialised yet).
    #[inline(never)]
    fn run_other<'a, R>(
        &'a self,
        op: impl FnMut(&Current<'a, T>, &'a T) -> Option<R>,
    ) -> Option<R> {
        loop {
            match self.tag.load(Ordering::Acquire) {
                // SAFETY (both): the tag published `slots` (see `ready`).
                RSEQ => return unsafe { self.run_rseq_retry(op) },
                LEASE => return unsafe { self.run_lease(op) },
                _ => {
                    if !self.init_cold() {
                        return None;
                    }
                }
            }
        }
    }

    /// The retry loop of the rseq path: enters afresh (re-reading the index) until `op`
    /// returns `Some`, or the thread has no slot.
    ///
    /// # Safety
    /// The tag is `RSEQ` (so `slots` is published).
    #[cold]
    #[inline(never)]
    unsafe fn run_rseq_retry<'a, R>(
        &'a self,
        mut op: impl FnMut(&Current<'a, T>, &'a T) -> Option<R>,
    ) -> Option<R> {
        // SAFETY: the caller saw the tag; copies into locals so the loop keeps them in
        // registers across critical sections (which the compiler treats as writing memory).
        let (base, shift, field, nr_slots) = unsafe {
            let s = &*self.slots.get();
            (s.base, s.shift, s.field as usize, s.nr_slots)
        };
        loop {
            let area = registration::area_raw();
            let index = crate::rseq::read_field_at(area, field);
            if index as usize >= nr_slots {
                // Beyond the slots, or the thread's area is a sentinel: the uninitialised one
                // (initialise the thread and read again) or one without registration.
                if registration::thread_initialised() {
                    return None;
                }
                registration::init_thread_if_needed();
                continue;
            }
            // SAFETY: as in `run`.
            let slot = unsafe { &*base.add((index as usize).unchecked_shl(shift)).cast::<T>() };
            if let Some(r) = op(&Current::rseq(slot, base, area, field, index), slot) {
                return Some(r);
            }
        }
    }

    /// The lease loop of [`run`](Self::run).
    ///
    /// # Safety
    /// The tag is `LEASE` (so `slots` is published).
    #[inline(always)]
    unsafe fn run_lease<'a, R>(
        &'a self,
        mut op: impl FnMut(&Current<'a, T>, &'a T) -> Option<R>,
    ) -> Option<R> {
        // SAFETY: the caller saw the tag.
        let s = unsafe { &*self.slots.get() };
        let alloc = s.leases.expect("a lease access has an allocator");
        loop {
            let lease = alloc.acquire();
            let index = lease.cid() as usize;
            if index >= s.nr_slots {
                return None;
            }
            // SAFETY: as in `run_rseq`.
            let slot = unsafe { &*s.base.add(index.unchecked_shl(s.shift)).cast::<T>() };
            // The lease lives in this loop until `op` returns.
            let r = op(&Current::leased(slot, s.base, lease.cid()), slot);
            drop(lease);
            if let Some(r) = r {
                return Some(r);
            }
        }
    }

    /// A [`Handle`] for tight loops: a `Copy` of the slots' layout that stays in registers.
    /// Creates the slots if needed.
    #[inline]
    pub fn handle(&self) -> Handle<'_, T> {
        let (mut nr_slots, mut field) = self.fast.limits();
        if nr_slots == 0 && matches!(self.tag.load(Ordering::Acquire), UNINIT | BUSY) {
            // Creates the slots, or waits for the thread creating them: a handle taken in
            // the meantime would otherwise send every call to the slow path.
            let _ = self.try_init();
            (nr_slots, field) = self.fast.limits();
        }
        let (base, shift) = self.fast.layout();
        Handle {
            per_cpu: self,
            base,
            stride: 1 << shift,
            field,
            nr_slots,
        }
    }

    /// Enters the calling thread's current slot once: the [`Current`] to operate with (its
    /// [`slot`](Current::slot) is the slot's value). `None` when the thread has no slot.
    /// Prefer [`run`](Self::run), which retries for you.
    ///
    /// ```
    /// use percid::per_cpu::PerCpu;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let hits = PerCpu::new(AtomicU64::new(0));
    /// let mut overflow = 0;
    /// loop {
    ///     let Some(current) = hits.enter() else {
    ///         overflow += 1; // no slot for this thread: count it elsewhere
    ///         break;
    ///     };
    ///     if current.add(current.slot(), 1).is_committed() {
    ///         break;
    ///     }
    ///     // Aborted: preempted or migrated since entering; enter again.
    /// }
    /// let total: u64 = hits.iter().map(|h| h.load(Ordering::Relaxed)).sum();
    /// assert_eq!(total + overflow, 1);
    /// ```
    #[inline]
    pub fn enter(&self) -> Option<Current<'_, T>> {
        loop {
            let tag = self.tag.load(Ordering::Acquire);
            let field = match tag {
                // SAFETY: the tag published `slots`.
                RSEQ => unsafe { (*self.slots.get()).field as usize },
                LEASE => {
                    // SAFETY: the tag published `slots`.
                    let s = unsafe { &*self.slots.get() };
                    let lease = s.leases.expect("a lease access has an allocator").acquire();
                    let slot = self.get(lease.cid() as usize)?;
                    return Some(Current::lease(slot, s.base, lease));
                }
                _ => {
                    if !self.init_cold() {
                        return None;
                    }
                    continue;
                }
            };
            registration::init_thread_if_needed();
            let area = registration::area_raw();
            let index = crate::rseq::read_field_at(area, field);
            let slot = self.get(index as usize)?;
            // SAFETY: the tag published `slots`.
            let base = unsafe { (*self.slots.get()).base };
            return Some(Current::rseq(slot, base, area, field, index));
        }
    }

    /// Adds `n` (wrapping) to the `AtomicU64` that `field` picks in the calling thread's
    /// slot: one critical section (or one store under a lease), retried until it commits.
    /// Returns `false` when the thread has no slot (nothing was added).
    #[inline(always)]
    #[must_use = "false means nothing was added: the thread has no slot"]
    pub fn add(&self, field: impl Fn(&T) -> &AtomicU64, n: u64) -> bool {
        self.run(|current, slot| current.add(field(slot), n).is_committed().then_some(()))
            .is_some()
    }
}

/// Something that runs an operation on the calling thread's slot: a `&PerCpu` or its
/// [`Handle`]. Lets a structure write each operation once for both.
pub(crate) trait RunSlot<'a, T: SlotSafe>: Copy {
    fn run_in<R>(self, op: impl FnMut(&Current<'a, T>, &'a T) -> Option<R>) -> Option<R>;
}

impl<'a, T: SlotSafe> RunSlot<'a, T> for &'a PerCpu<T> {
    #[inline(always)]
    fn run_in<R>(self, op: impl FnMut(&Current<'a, T>, &'a T) -> Option<R>) -> Option<R> {
        self.run(op)
    }
}

impl<'a, T: SlotSafe> RunSlot<'a, T> for Handle<'a, T> {
    #[inline(always)]
    fn run_in<R>(self, op: impl FnMut(&Current<'a, T>, &'a T) -> Option<R>) -> Option<R> {
        self.run(op)
    }
}

/// A copy of a [`PerCpu`]'s slot layout, for tight loops ([`PerCpu::handle`]).
///
/// [`PerCpu::run`] reloads the layout from the `PerCpu` on every call: each critical section
/// is an `asm!` block, which the compiler must assume may write any memory, so nothing read
/// from memory before it survives it. A `Handle` is a local value: in a loop its fields stay
/// in registers, and an operation costs what librseq's inline functions cost. Behaviour is
/// the same as [`PerCpu::run`]'s (a handle taken before the slots exist, or of a lease
/// access, forwards every call to it).
pub struct Handle<'a, T: SlotSafe> {
    per_cpu: &'a PerCpu<T>,
    base: *mut u8,
    /// The stride in bytes (a multiply by a register costs one instruction fewer than a
    /// variable shift, which needs its count in `cl`).
    stride: usize,
    field: usize,
    /// 0 unless the access is rseq and the slots existed when the handle was taken.
    nr_slots: usize,
}

impl<T: SlotSafe> Clone for Handle<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: SlotSafe> Copy for Handle<'_, T> {}

impl<T: SlotSafe> fmt::Debug for Handle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("rseq_slots", &self.nr_slots)
            .finish_non_exhaustive()
    }
}

impl<'a, T: SlotSafe> Handle<'a, T> {
    /// [`PerCpu::run`] through the handle.
    #[inline(always)]
    pub fn run<R>(self, mut op: impl FnMut(&Current<'a, T>, &'a T) -> Option<R>) -> Option<R> {
        let area = registration::area_raw();
        let index = crate::rseq::read_field_at(area, self.field);
        if (index as usize) < self.nr_slots {
            // SAFETY: a non-zero `nr_slots` was read from the published `Fast` layout: slot
            // `index` of the item, valid for as long as the PerCpu lives ('a).
            let slot = unsafe { &*self.base.add((index as usize) * self.stride).cast::<T>() };
            if let Some(r) = op(
                &Current::rseq(slot, self.base, area, self.field, index),
                slot,
            ) {
                return Some(r);
            }
            // SAFETY: rseq access (the slot count is non-zero).
            return unsafe { self.per_cpu.run_rseq_retry(op) };
        }
        self.per_cpu.run_other(op)
    }

    /// [`PerCpu::add`] through the handle.
    #[inline(always)]
    #[must_use = "false means nothing was added: the thread has no slot"]
    pub fn add(self, field: impl Fn(&T) -> &AtomicU64, n: u64) -> bool {
        self.run(|current, slot| current.add(field(slot), n).is_committed().then_some(()))
            .is_some()
    }
}

impl<T: SlotSafe> Drop for PerCpu<T> {
    fn drop(&mut self) {
        let Some(s) = self.ready() else { return };
        let (Some(pool), Some(base)) = (s.pool.clone(), NonNull::new(s.base)) else {
            return;
        };
        // SAFETY: we own the item (Slots invariant) and `&mut self` ends every access to it.
        // The only possible errors are a double or foreign free, which can happen only if
        // unsafe code freed our item behind our back; nothing can be done about it in drop.
        let _ = unsafe { pool.free(base) };
    }
}

impl<T: SlotSafe + fmt::Debug> fmt::Debug for PerCpu<T> {
    /// The configuration and use: the index, the access, the init value and the slot count.
    /// It reads no slot: other threads may be updating them (with atomics, or non-atomic
    /// data under a [`PerCpuLock`](crate::PerCpuLock)), and a byte comparison of a live slot
    /// would race with them. Read the slots with [`iter`](Self::iter) (atomics, by their
    /// own loads).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PerCpu");
        d.field("index", &self.index());
        match self.access() {
            Some(a) => d.field("access", &a),
            None => d.field("access", &"(slots not created)"),
        };
        // `init` is never written after construction.
        d.field("init", &self.init);
        d.field("slots", &self.ready().map_or(0, |s| s.nr_slots));
        d.finish()
    }
}

impl<'a, T: SlotSafe> IntoIterator for &'a PerCpu<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Iterator over the slots of a [`PerCpu`], from [`PerCpu::iter`].
#[derive(Debug)]
pub struct Iter<'a, T: SlotSafe> {
    handle: &'a PerCpu<T>,
    next: usize,
    end: usize,
}

impl<'a, T: SlotSafe> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        if self.next >= self.end {
            return None;
        }
        let v = self.handle.get(self.next)?;
        self.next += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl<T: SlotSafe> ExactSizeIterator for Iter<'_, T> {}

impl<T: SlotSafe> std::iter::FusedIterator for Iter<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolConfig;
    use std::cell::Cell;

    std::thread_local! {
        /// Run once inside the next lazy creation on this thread (a test-only hook that
        /// makes the window of issue 17.10 deterministic).
        static IN_CREATE: Cell<Option<fn()>> = const { Cell::new(None) };
    }

    pub(super) fn in_create() {
        if let Some(f) = IN_CREATE.take() {
            f();
        }
    }

    /// Issue 17.10: a signal handler that first-uses a structure whose lazy creation the
    /// same thread was inside (tag `BUSY`, held by the interrupted code) takes the overflow
    /// path. Before the fix it waited for `BUSY` to clear, which only the interrupted code
    /// could do: the thread spun forever.
    #[test]
    #[cfg_attr(miri, ignore = "signals and mmap")]
    fn signal_during_lazy_creation_takes_the_overflow_path() {
        static SLOTS: PerCpu<AtomicU64> = PerCpu::new(AtomicU64::new(0));
        static COUNTER: crate::Counter = crate::Counter::new();
        /// Which structure the handler uses: 1 `SLOTS`, 2 `COUNTER`.
        static WHICH: AtomicU8 = AtomicU8::new(0);
        /// 0: handler not run; 1: its call found no slot; 2: it found one.
        static ADDED: AtomicU8 = AtomicU8::new(0);

        extern "C" fn handler(_: libc::c_int) {
            // The structure it uses is being created by the code this handler interrupted.
            match WHICH.load(Ordering::SeqCst) {
                1 => {
                    let added = SLOTS.add(|s| s, 1);
                    ADDED.store(if added { 2 } else { 1 }, Ordering::SeqCst);
                }
                _ => {
                    COUNTER.add(1);
                    ADDED.store(1, Ordering::SeqCst);
                }
            }
        }
        let sig = libc::SIGRTMIN() + 3;
        // SAFETY: a handler that only touches statics; installed for a signal nothing else
        // in the test binary uses, and raised only by this test's own thread.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
        }
        thread_local! { static SIG: Cell<libc::c_int> = const { Cell::new(0) }; }
        SIG.set(sig);
        fn raise() {
            // SAFETY: raises our signal on this thread; its handler is installed above.
            assert_eq!(unsafe { libc::raise(SIG.get()) }, 0);
        }
        // The thread itself is set up first (its rseq registration, or its entry in the
        // user-space allocator's registry, which allocates): a thread's first use of percid
        // inside a signal handler is not async-signal-safe (README, "Guarantees"), and
        // ThreadSanitizer reports the allocation. What is tested here is a *structure's*
        // creation interrupted on a thread that already uses percid.
        crate::Counter::new().add(1);

        WHICH.store(1, Ordering::SeqCst);
        IN_CREATE.set(Some(raise));
        assert!(
            SLOTS.add(|s| s, 1),
            "the creating call itself gets its slot"
        );
        assert!(IN_CREATE.take().is_none(), "the creation ran the hook");
        assert_eq!(ADDED.load(Ordering::SeqCst), 1, "the handler found no slot");
        let sum: u64 = SLOTS.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        assert_eq!(sum, 1);

        WHICH.store(2, Ordering::SeqCst);
        ADDED.store(0, Ordering::SeqCst);
        IN_CREATE.set(Some(raise));
        COUNTER.add(1);
        assert!(IN_CREATE.take().is_none(), "the creation ran the hook");
        assert_eq!(ADDED.load(Ordering::SeqCst), 1, "the handler ran");
        assert_eq!(
            COUNTER.sum(),
            2,
            "the handler's add went to the overflow cell"
        );
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "mmap layer: Miri supports no PROT_NONE reservation, MAP_FIXED or memfd"
    )]
    fn slot_ptr_hook_bounds_and_stride() {
        let pool = Pool::new(PoolConfig::new().slots(3)).unwrap();
        let p = PerCpu::in_pool(&pool, Index::CpuId, 7u64).unwrap();
        let s0 = p.slot_ptr(0).unwrap().as_ptr() as usize;
        let s2 = p.slot_ptr(2).unwrap().as_ptr() as usize;
        assert_eq!(s2 - s0, 2 * pool.stride());
        assert!(p.slot_ptr(3).is_none());
    }

    #[test]
    fn tuples_without_padding_only() {
        const { assert!(<(AtomicU64, AtomicU64) as SlotSafe>::PADDING_FREE) };
        const { assert!(<(u32, u32, [u16; 4]) as SlotSafe>::PADDING_FREE) };
        const { assert!(!<(u8, u64) as SlotSafe>::PADDING_FREE) };
        const { assert!(!<[(u8, u32); 2] as SlotSafe>::PADDING_FREE) };
        let p = PerCpu::new((AtomicU64::new(0), AtomicU64::new(0)));
        assert!(p.add(|s| &s.1, 3));
        let sum: u64 = p.iter().map(|s| s.1.load(Ordering::Relaxed)).sum();
        assert_eq!(sum, 3);
    }
}
