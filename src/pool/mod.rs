//! Per-slot memory pools: an item allocated from a [`Pool`] exists once per *slot* (per CPU
//! or per concurrency ID), and finding slot `s` of an item is one multiply-add.
//!
//! This is the Rust peer of librseq's `rseq_mempool`. Typed handles live in
//! [`per_cpu`](crate::per_cpu).
//!
//! # Layout
//!
//! A pool owns one or more *ranges*. A range is one `mmap` reservation of
//! `nr_slots * stride` bytes whose base is aligned to `stride`:
//!
//! ```text
//!  base                base+stride          base+2*stride        base+nr_slots*stride
//!  | slot 0            | slot 1             | slot 2    ...       |
//!  |  [o: item A ]     |  [o: item A ]      |  [o: item A ]       |
//! ```
//!
//! Items are carved from offsets in `[0, stride)`; the same offset in every slot belongs to
//! the same item. An item *handle* is a pointer to slot 0 of the item (`base + offset`), and
//! slot `s` of it is at `handle + s * stride` ([`Pool::slot_ptr`]): no table lookup.
//!
//! * `stride` is a power of two, at least a page (default 64 KiB, or the page size if larger).
//! * `nr_slots` defaults to the number of possible CPUs (the highest CPU number in
//!   `/sys/devices/system/cpu/possible` + 1, never the online count), or is set explicitly (e.g. a
//!   pool indexed by concurrency ID, sized for the IDs in use).
//! * Item sizes are rounded up to a power of two, at least 8 bytes and at least the
//!   requested alignment: the *size class*. An item is aligned to its size class (offsets are
//!   multiples of it and the range base is aligned to the stride).
//!
//! # Allocation algorithm
//!
//! The bookkeeping (module `book`, free of system calls and unit-tested alone) keeps one
//! LIFO free list per size class and one bump pointer per range. An allocation takes, in
//! order: the free list of its class; a fresh block bumped from the first range with room
//! (the alignment gap is cut into power-of-two blocks that go to the free lists, so nothing
//! is wasted); a larger free block split in halves; a new range, unless
//! [`PoolConfig::max_ranges`] is reached ([`PoolError::Exhausted`]). Blocks never merge
//! again. Allocation and free take the pool's mutex; resolving slots takes no lock.
//!
//! Every block ever carved is recorded with its class and state, so [`Pool::free`] always
//! detects a double free or a pointer that is not an item of this pool (the bookkeeping
//! needs the class of a freed pointer anyway); robust mode adds poisoning.
//!
//! # Population and memory cost
//!
//! Reservations use `MAP_NORESERVE` and are populated by the kernel only when a page is
//! first written, so a pool reserved for 384 CPUs and used by 4 threads costs about 4 slots
//! of resident memory. Transparent huge pages are disabled on the ranges
//! (`MADV_NOHUGEPAGE`) when the stride is below 2 MiB, since one huge page would populate
//! many slots at once. Two [`Populate`] modes decide what untouched slots read:
//!
//! * [`Populate::CowInit`] (default): each range has an *init image*: a memfd of one stride,
//!   mapped shared once; every slot is a private copy-on-write mapping of that same memfd
//!   (`MAP_PRIVATE | MAP_FIXED` over the reservation). Allocating an item with an init value
//!   writes the value into the image, which every untouched slot then reads; slots whose page
//!   was already copied (written before) and that differ from the value are written
//!   directly. So init values cost no memory in untouched slots, and the first write to a
//!   slot copies only the touched page. Reading an untouched slot maps the memfd's page-cache
//!   page (shared with the image: it shows in the mapping's `Rss` but not in `Anonymous`).
//!
//!   *Quiet page rule:* the image of a page is written only while no live item overlaps
//!   that page, because another thread's first write to a live neighbour copies the image
//!   page, and an image change racing with that copy would be lost in that slot (issue 10.5;
//!   the argument is on `Range::fill`). So an item with a non-zero init value is placed on
//!   a quiet page when one exists: one of the newest free blocks of its class on such a
//!   page, else a block carved at the start of a page nothing was carved from (the gap
//!   before it stays available to other items). Only when neither exists (the range's
//!   stride is carved to its end and no free block of the class sits on a quiet page) is the
//!   value written into every slot whose bytes differ, which populates one page per slot.
//!   Zero init values on never-used blocks (whose image bytes are zero) cost nothing
//!   anywhere. A stride of `n` pages thus holds `n` non-zero-init items at no slot cost
//!   before the fallback, and more ranges are not created for it (each range is one mapping
//!   per slot, a limited resource).
//! * [`Populate::CowZero`]: one private anonymous mapping per range. Untouched slots read
//!   zero (the kernel's shared zero page, not counted in `Rss`). Allocating with a
//!   *non-zero* init value must write it into every slot, populating one page per slot: use
//!   `CowInit` for that. Fully fork-safe.
//!
//! Allocation compares each slot with the wanted contents and writes only where they differ,
//! so reading decides, not a table of touched slots: reading is free in both modes (the zero
//! page, or the already resident image page), writing populates.
//!
//! *Item size:* an item may be as large as the stride (a pool with a 1 TiB stride can hold a
//! 1 TiB item: the reservation is address space). No buffer of an item's size is ever built:
//! the wanted contents are described (init bytes, then a repeated byte) and compared and
//! written in 64 KiB chunks, and the per-range bookkeeping is sized by the live items, not by
//! the stride. A never-used block reads zero everywhere, so it costs nothing for a zero init
//! value and only the init bytes otherwise. In `CowZero`, a freed block of 256 KiB or more
//! (outside robust mode) is handed back to the kernel (`MADV_DONTNEED` in every slot) and
//! is fresh again. Any other reused block (and robust mode's poison) is rewritten in full,
//! which takes time in proportion to the item's size times the slots, and memory for the
//! pages that must change.
//!
//! # Robust mode
//!
//! With [`PoolConfig::robust`], a freed item is filled with the poison byte
//! ([`PoolConfig::poison`]) in every *populated* slot, and checked on reuse: any slot that
//! does not read all-poison means a write after free, reported as
//! [`PoolError::WriteAfterFree`] (the item is then quarantined: never reused, and freeing it
//! again is a double free). Untouched slots are not populated by poisoning:
//!
//! * `CowInit`: the poison goes into the init image first (on pages without live items, by
//!   the quiet page rule), so untouched slots read poison; only slots with their own copy of
//!   the page (and not already poison) are written.
//! * `CowZero`: each 64 KiB chunk of the item in a slot (the whole item when smaller) whose
//!   bytes are all zero is taken as untouched and left alone, so poisoning costs what was
//!   populated, and on reuse a chunk may read all-poison or all-zero. Limitation: a write
//!   after free that writes zero over a *whole* chunk is not detected.
//!
//! We use this content comparison rather than `mincore`: `mincore` reports the shared zero
//! page (after a read) as resident in an anonymous mapping, and the memfd's page cache as
//! resident in a private file mapping, so it cannot tell a copied page from an untouched
//! one. Detection is best effort: a write after free that races with the check is a data
//! race of the buggy program.
//!
//! # Fork
//!
//! The mappings are private, so a child of `fork` gets a copy-on-write snapshot of every
//! slot: it sees the parent's values, and its writes do not reach the parent (nor the
//! parent's later writes the child).
//!
//! In `CowInit` mode the init image is a *shared* memfd mapping, and untouched slots of both
//! processes read through the same file: a later write of the image by either process would
//! change what the other's untouched slots read. So a `fork` *freezes* every existing
//! `CowInit` range, in the parent and in the child (a `pthread_atfork` handler bumps a
//! process-wide fork generation that each range compares with its own): a frozen range never
//! writes its image again, its free blocks are dropped, items freed from it are not reused
//! (nor poisoned), and new items come from new ranges (which count toward
//! [`PoolConfig::max_ranges`]). Frozen memory is returned when the pool is dropped. A
//! process created by a raw `clone` system call bypasses the handler and is not covered.
//!
//! As with any lock, a child forked while another thread of the parent was inside
//! `alloc`/`free` of a pool may block forever on that pool's next `alloc`/`free`; reading and
//! writing slots takes no lock and is always fine in the child.
//!
//! # Thread safety
//!
//! [`Pool`] is `Send + Sync`: its state is behind a mutex, and the mappings are process-wide
//! memory that no thread owns. The pool is a cheap handle (`Arc`): clones share the same
//! memory, and the ranges are unmapped when the last clone is dropped. Typed handles hold a
//! clone, so the memory outlives them in safe code; raw item pointers ([`Pool::alloc`]) are
//! valid only while a clone of the pool lives.
//!
//! # Invariants
//!
//! 1. Ranges are never unmapped before the pool's last clone is dropped; item pointers of a
//!    range stay valid (and keep their offset) until then.
//! 2. An allocated item is handed out once until freed; its bytes in every slot equal the
//!    init value (zero-padded to the size class) when `alloc` returns.
//! 3. A frozen (forked) `CowInit` range's image is never written again.
//! 4. The image bytes of a page change only while no live item overlaps the page; so while
//!    an item lives, each of its slot pages reads either constant image bytes or a private
//!    copy, and comparing a slot with the wanted contents is exact.

mod book;
mod range;

use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use book::{Block, Book, Contents, FreeError};
use range::Range;

/// What untouched slots read, and how init values reach them (see the
/// [module docs](self#population-and-memory-cost)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Populate {
    /// Copy-on-write mappings of a per-range init image: init values are seen by every slot
    /// without touching it. After `fork`, existing ranges are frozen.
    #[default]
    CowInit,
    /// Private anonymous memory: untouched slots read zero; non-zero init values populate
    /// every slot.
    CowZero,
}

/// Default stride: 64 KiB (raised to the page size where pages are larger).
pub const DEFAULT_STRIDE: usize = 64 * 1024;

/// Default poison byte of robust mode.
pub const DEFAULT_POISON: u8 = 0x5a;

/// `CowZero` blocks of at least this size are handed back to the kernel when freed (one
/// `madvise` per slot), so a large item costs no memory while free and its reuse has nothing
/// to compare; smaller ones are rewritten on reuse.
const RESET_MIN: usize = 256 * 1024;

/// Most slots a pool may have: 2^31 - 1. Slot indexes stay below every sentinel value of the
/// rseq layer (`u32::MAX - 1` and above), and below the user-space allocator's capacity
/// limit.
pub const MAX_SLOTS: usize = (1 << 31) - 1;

/// Errors of pool configuration, allocation and free.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// The stride is not a power of two.
    StrideNotPowerOfTwo {
        /// The stride asked for.
        stride: usize,
    },
    /// The stride is smaller than a page.
    StrideTooSmall {
        /// The stride asked for.
        stride: usize,
        /// The system page size.
        page_size: usize,
    },
    /// The pool was configured with zero slots.
    ZeroSlots,
    /// The pool was configured with more than [`MAX_SLOTS`] slots.
    TooManySlots {
        /// Slots asked for.
        nr_slots: usize,
    },
    /// `nr_slots * stride` does not fit in the address space.
    ReservationTooLarge {
        /// Slots asked for.
        nr_slots: usize,
        /// Stride asked for.
        stride: usize,
    },
    /// `max_ranges` is zero: the pool could never allocate.
    ZeroRangeLimit,
    /// The poison byte is zero, which robust mode cannot tell from untouched memory.
    ZeroPoison,
    /// The item's size class (size and alignment rounded up to a power of two) exceeds the
    /// stride.
    ItemTooLarge {
        /// Requested size in bytes.
        size: usize,
        /// Requested alignment.
        align: usize,
        /// The pool's stride.
        stride: usize,
    },
    /// The range limit is reached and no free block fits.
    Exhausted {
        /// The configured limit of ranges.
        max_ranges: usize,
    },
    /// The item was already freed.
    DoubleFree {
        /// The pointer passed to `free`.
        addr: usize,
    },
    /// The pointer is not an item handle of this pool (outside its ranges, inside an item,
    /// or a pointer to a slot other than slot 0).
    ForeignPointer {
        /// The pointer passed to `free`.
        addr: usize,
    },
    /// Robust mode: a freed item was written before it was reused. The item is quarantined.
    WriteAfterFree {
        /// The item's handle (slot 0).
        addr: usize,
        /// The first slot found modified.
        slot: usize,
        /// The byte offset within the item of the first modified byte in that slot.
        byte: usize,
    },
    /// Lazy creation of a structure's slots was asked for by a signal handler that
    /// interrupted the same thread while it was creating them (see
    /// [`PerCpu::try_init`](crate::PerCpu::try_init)): the operation takes the path of a
    /// thread without a slot.
    CreationInProgress,
    /// A system call for the mappings failed.
    Mmap {
        /// Which operation failed.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::StrideNotPowerOfTwo { stride } => {
                write!(f, "pool stride {stride} is not a power of two")
            }
            PoolError::StrideTooSmall { stride, page_size } => {
                write!(
                    f,
                    "pool stride {stride} is smaller than the page size {page_size}"
                )
            }
            PoolError::ZeroSlots => write!(f, "pool configured with zero slots"),
            PoolError::TooManySlots { nr_slots } => {
                write!(
                    f,
                    "pool configured with {nr_slots} slots, more than {MAX_SLOTS}"
                )
            }
            PoolError::ReservationTooLarge { nr_slots, stride } => write!(
                f,
                "pool reservation of {nr_slots} slots x {stride} bytes overflows the address space"
            ),
            PoolError::ZeroRangeLimit => write!(f, "pool range limit is zero"),
            PoolError::ZeroPoison => write!(f, "pool poison byte must not be zero"),
            PoolError::ItemTooLarge {
                size,
                align,
                stride,
            } => write!(
                f,
                "item of {size} bytes (alignment {align}) does not fit a pool stride of {stride}"
            ),
            PoolError::Exhausted { max_ranges } => {
                write!(f, "pool exhausted: all {max_ranges} ranges are in use")
            }
            PoolError::DoubleFree { addr } => write!(f, "double free of pool item {addr:#x}"),
            PoolError::ForeignPointer { addr } => {
                write!(f, "{addr:#x} is not an item of this pool")
            }
            PoolError::WriteAfterFree { addr, slot, byte } => write!(
                f,
                "pool item {addr:#x} was written after free (slot {slot}, byte {byte})"
            ),
            PoolError::CreationInProgress => write!(
                f,
                "the slots are being created by the code this signal handler interrupted"
            ),
            PoolError::Mmap { op, source } => write!(f, "pool {op} failed: {source}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Mmap { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Configuration of a [`Pool`] (a builder; validated by [`Pool::new`]).
#[derive(Clone, Debug)]
pub struct PoolConfig {
    stride: usize,
    nr_slots: Option<usize>,
    max_ranges: Option<usize>,
    robust: bool,
    populate: Populate,
    poison: u8,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            stride: DEFAULT_STRIDE.max(range::page_size()),
            nr_slots: None,
            max_ranges: None,
            robust: false,
            populate: Populate::default(),
            poison: DEFAULT_POISON,
        }
    }
}

impl PoolConfig {
    /// The default configuration: 64 KiB stride, one slot per possible CPU, no range limit,
    /// not robust, [`Populate::CowInit`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes between slots (a power of two, at least a page; also the largest item).
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Number of slots (default: the number of possible CPUs, the highest CPU number in
    /// `/sys/devices/system/cpu/possible` + 1).
    pub fn slots(mut self, nr_slots: usize) -> Self {
        self.nr_slots = Some(nr_slots);
        self
    }

    /// Most ranges the pool may map (default: unlimited). Past it, allocation fails with
    /// [`PoolError::Exhausted`].
    pub fn max_ranges(mut self, max_ranges: usize) -> Self {
        self.max_ranges = Some(max_ranges);
        self
    }

    /// Robust mode: poison freed items and check them on reuse.
    pub fn robust(mut self, robust: bool) -> Self {
        self.robust = robust;
        self
    }

    /// How slots are populated (default [`Populate::CowInit`]).
    pub fn populate(mut self, populate: Populate) -> Self {
        self.populate = populate;
        self
    }

    /// Poison byte of robust mode (default [`DEFAULT_POISON`]; must not be zero).
    pub fn poison(mut self, poison: u8) -> Self {
        self.poison = poison;
        self
    }
}

/// Validated, immutable part of a pool.
struct Inner {
    stride: usize,
    nr_slots: usize,
    max_ranges: Option<usize>,
    robust: bool,
    populate: Populate,
    poison: u8,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    book: Book,
    /// `ranges[i]` is range `i` of the book.
    ranges: Vec<Range>,
}

impl State {
    /// Retires `CowInit` ranges that a `fork` froze (see the module docs).
    fn retire_forked(&mut self) {
        for (i, r) in self.ranges.iter().enumerate() {
            if !self.book.is_retired(i) && r.forked() {
                self.book.retire(i);
            }
        }
    }
}

/// A per-slot memory pool. Cheap to clone (the clones share the pool); the memory is
/// unmapped when the last clone (including those held by typed handles) is dropped.
/// See the [module docs](self).
///
/// Most code uses a pool through typed handles ([`PerCpu::in_pool`](crate::PerCpu::in_pool)
/// and the structures' `in_pool` constructors); the raw interface hands out item pointers:
///
/// ```
/// use percid::pool::{Pool, PoolConfig};
/// use percid::PerCpu;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// // 8 slots (say, a process that will never have more than 8 concurrency IDs).
/// let pool = Pool::new(PoolConfig::new().slots(8)).unwrap();
///
/// // Typed: one AtomicU64 per slot, each starting at 7, indexed by concurrency ID.
/// let v = PerCpu::in_pool(&pool, percid::Index::MmCid, AtomicU64::new(7)).unwrap();
/// assert_eq!(v.nr_slots(), 8);
/// assert!(v.iter().all(|x| x.load(Ordering::Relaxed) == 7));
///
/// // Raw: an item of 16 bytes; slot `s` is at `item + s * stride`.
/// let item = pool.alloc_with(16, 8, &[1u8; 16]).unwrap();
/// let slot3 = pool.slot_ptr(item, 3).unwrap();
/// assert_eq!(slot3.as_ptr() as usize - item.as_ptr() as usize, 3 * pool.stride());
/// // SAFETY: the item is 16 bytes, allocated above and not freed; nobody else uses it.
/// assert_eq!(unsafe { *slot3.as_ptr() }, 1);
/// // SAFETY: no reference to the item is used after this.
/// unsafe { pool.free(item).unwrap() };
/// // SAFETY: freeing twice is detected and reported; no memory is accessed.
/// assert!(matches!(
///     unsafe { pool.free(item) },
///     Err(percid::pool::PoolError::DoubleFree { .. })
/// ));
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl fmt::Debug for Pool {
    /// The configuration and how much is in use: stride, slots, mode, ranges mapped, items
    /// allocated (not the bookkeeping).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        let (ranges, allocated) = match i.state.try_lock() {
            Ok(st) => (Some(st.ranges.len()), Some(st.book.nr_allocated())),
            Err(_) => (None, None), // busy (or poisoned): do not wait in Debug
        };
        let mut d = f.debug_struct("Pool");
        d.field("stride", &i.stride)
            .field("slots", &i.nr_slots)
            .field("populate", &i.populate)
            .field("robust", &i.robust);
        if let Some(max) = i.max_ranges {
            d.field("max_ranges", &max);
        }
        match (ranges, allocated) {
            (Some(r), Some(a)) => d.field("ranges", &r).field("items", &a),
            _ => d.field("state", &"busy"),
        };
        d.finish()
    }
}

impl Default for Pool {
    /// A pool with [`PoolConfig::default`].
    fn default() -> Self {
        Pool::new(PoolConfig::default()).expect("the default pool configuration is valid")
    }
}

impl Pool {
    /// Creates a pool; maps nothing until the first allocation.
    pub fn new(config: PoolConfig) -> Result<Pool, PoolError> {
        let page_size = range::page_size();
        let stride = config.stride;
        if !stride.is_power_of_two() {
            return Err(PoolError::StrideNotPowerOfTwo { stride });
        }
        if stride < page_size {
            return Err(PoolError::StrideTooSmall { stride, page_size });
        }
        let nr_slots = config
            .nr_slots
            .unwrap_or_else(crate::util::possible_cpu_count);
        if nr_slots == 0 {
            return Err(PoolError::ZeroSlots);
        }
        if nr_slots > MAX_SLOTS {
            return Err(PoolError::TooManySlots { nr_slots });
        }
        // One extra stride is reserved for alignment; keep the total within isize.
        let fits = nr_slots
            .checked_add(1)
            .and_then(|n| n.checked_mul(stride))
            .is_some_and(|len| len <= isize::MAX as usize);
        if !fits {
            return Err(PoolError::ReservationTooLarge { nr_slots, stride });
        }
        if config.max_ranges == Some(0) {
            return Err(PoolError::ZeroRangeLimit);
        }
        if config.poison == 0 {
            return Err(PoolError::ZeroPoison);
        }
        Ok(Pool {
            inner: Arc::new(Inner {
                stride,
                nr_slots,
                max_ranges: config.max_ranges,
                robust: config.robust,
                populate: config.populate,
                poison: config.poison,
                state: Mutex::new(State {
                    book: Book::new(stride),
                    ranges: Vec::new(),
                }),
            }),
        })
    }

    /// The process-wide default pool ([`PoolConfig::default`]), used by
    /// [`PerCpu::new`](crate::per_cpu::PerCpu::new).
    pub fn global() -> &'static Pool {
        static GLOBAL: OnceLock<Pool> = OnceLock::new();
        GLOBAL.get_or_init(Pool::default)
    }

    /// Bytes between two slots of an item.
    pub fn stride(&self) -> usize {
        self.inner.stride
    }

    /// Number of slots of every item.
    pub fn nr_slots(&self) -> usize {
        self.inner.nr_slots
    }

    /// Whether the pool is in robust mode.
    pub fn is_robust(&self) -> bool {
        self.inner.robust
    }

    /// The population mode.
    pub fn populate(&self) -> Populate {
        self.inner.populate
    }

    /// Size class of an item of `size` bytes and alignment `align`: the bytes it occupies per
    /// slot (the smallest power of two `>= max(size, align, 8)`).
    pub fn size_class(&self, size: usize, align: usize) -> Result<usize, PoolError> {
        book::class_shift(size, align)
            .map(|s| 1usize << s)
            .filter(|&c| c <= self.inner.stride)
            .ok_or(PoolError::ItemTooLarge {
                size,
                align,
                stride: self.inner.stride,
            })
    }

    /// Number of ranges mapped so far.
    pub fn nr_ranges(&self) -> usize {
        self.lock().ranges.len()
    }

    /// Number of items currently allocated.
    pub fn nr_allocated(&self) -> usize {
        self.lock().book.nr_allocated()
    }

    /// Address and length of every range's reservation (for diagnostics, e.g. matching
    /// `/proc/self/smaps`). The init images of `CowInit` ranges are separate, one stride each.
    pub fn reservations(&self) -> Vec<(usize, usize)> {
        self.lock()
            .ranges
            .iter()
            .map(|r| (r.base().as_ptr() as usize, r.len()))
            .collect()
    }

    /// Allocates an item of `size` bytes (aligned to its size class), zero in every slot.
    /// Returns its handle: the address of slot 0.
    pub fn alloc(&self, size: usize) -> Result<NonNull<u8>, PoolError> {
        self.alloc_with(size, 1, &[])
    }

    /// Allocates an item of `init.len()` bytes whose every slot reads `init` (see
    /// [`Populate`] for the memory this costs).
    pub fn alloc_init(&self, init: &[u8]) -> Result<NonNull<u8>, PoolError> {
        self.alloc_with(init.len(), 1, init)
    }

    /// Allocates an item of `size` bytes aligned to at least `align` (a power of two), whose
    /// first `init.len() <= size` bytes read `init` in every slot and the rest zero.
    ///
    /// # Panics
    /// If `align` is not a power of two or `init` is longer than `size` (caller bugs, not
    /// pool conditions).
    pub fn alloc_with(
        &self,
        size: usize,
        align: usize,
        init: &[u8],
    ) -> Result<NonNull<u8>, PoolError> {
        assert!(align.is_power_of_two(), "alignment must be a power of two");
        assert!(init.len() <= size, "init value longer than the item");
        let len = self.size_class(size, align)?;
        let shift = len.trailing_zeros();
        let inner = &*self.inner;
        let mut st = self.lock();
        st.retire_forked();
        // A non-zero init value in CowInit reaches untouched slots through the image only on
        // a quiet page (see the quiet page rule): prefer a block on one.
        let zero_init = init.iter().all(|&b| b == 0);
        let prefer_quiet = inner.populate == Populate::CowInit && !zero_init;
        let take = |st: &mut State| {
            if prefer_quiet {
                let State { book, ranges } = st;
                book.alloc_quiet(shift, range::page_size(), |r, o| ranges[r].is_quiet(o, len))
            } else {
                st.book.alloc(shift)
            }
        };
        let blk = match take(&mut st) {
            Some(b) => b,
            None => {
                if let Some(max) = inner.max_ranges
                    && st.ranges.len() >= max
                {
                    return Err(PoolError::Exhausted { max_ranges: max });
                }
                let r = Range::new(inner.nr_slots, inner.stride, inner.populate)?;
                st.ranges.push(r);
                st.book.add_range();
                take(&mut st).expect("a fresh range holds any class up to the stride")
            }
        };
        let range = &st.ranges[blk.range];
        let addr = range.base().as_ptr() as usize + blk.offset;
        if blk.contents == Contents::Poisoned {
            // SAFETY: the block was just taken from the free list under the lock: nobody
            // else may access it; it lies in [0, stride) of this range.
            if let Some((slot, byte)) = unsafe { range.check_poison(blk.offset, len, inner.poison) }
            {
                st.book.quarantine(blk);
                return Err(PoolError::WriteAfterFree { addr, slot, byte });
            }
        }
        // A fresh block reads zero everywhere (slots and image): only a non-zero init value
        // is written, and only its own bytes. Any other block is rewritten in full. The
        // pattern is described, never materialised (an item may be terabytes).
        let pattern = match blk.contents {
            Contents::Fresh if zero_init => None,
            Contents::Fresh => Some(range::Pattern {
                head: init,
                rest: 0,
                len: init.len(),
            }),
            Contents::Dirty | Contents::Poisoned => Some(range::Pattern {
                head: init,
                rest: 0,
                len,
            }),
        };
        if let Some(pattern) = pattern {
            // SAFETY: as above. The range was not frozen when retire_forked ran under this
            // lock. If another thread forks since, the write still only touches this block,
            // which is not a live item in the other process (it was free or being allocated
            // there at the fork), and the other process froze the range so never reuses it.
            unsafe { range.fill(blk.offset, pattern) };
        }
        st.ranges[blk.range].mark_live(blk.offset, len);
        Ok(NonNull::new(addr as *mut u8).expect("range base is not null"))
    }

    /// Frees an item. In robust mode the item is poisoned in every populated slot.
    ///
    /// Double frees and pointers that are not item handles of this pool are always
    /// detected and reported (nothing changes then).
    ///
    /// # Safety
    /// No reference to the item's memory (in any slot) may be used after this call, and no
    /// access to it may be in flight, until it is handed out again by an allocation.
    pub unsafe fn free(&self, item: NonNull<u8>) -> Result<(), PoolError> {
        let addr = item.as_ptr() as usize;
        let inner = &*self.inner;
        let mut st = self.lock();
        st.retire_forked();
        let (r, offset) = st
            .ranges
            .iter()
            .enumerate()
            .find_map(|(i, rg)| rg.offset_of(addr).map(|o| (i, o)))
            .ok_or(PoolError::ForeignPointer { addr })?;
        let offset = offset.map_err(|()| PoolError::ForeignPointer { addr })?;
        let shift = st.book.begin_free(r, offset).map_err(|e| match e {
            FreeError::Foreign => PoolError::ForeignPointer { addr },
            FreeError::DoubleFree => PoolError::DoubleFree { addr },
        })?;
        st.ranges[r].mark_dead(offset, 1 << shift);
        let len = 1usize << shift;
        let contents = if inner.robust && !st.book.is_retired(r) {
            // SAFETY: the block was allocated and is now marked free under the lock; the
            // caller guarantees nobody accesses it; the range is not frozen (not retired).
            unsafe { st.ranges[r].poison(offset, len, inner.poison) };
            Contents::Poisoned
        } else if inner.populate == Populate::CowZero
            && len >= RESET_MIN.max(range::page_size())
            // SAFETY: as above; a block of at least a page is page-aligned (offsets are
            // multiples of the size class), so no other item shares its pages.
            && unsafe { st.ranges[r].reset_zero(offset, len) }
        {
            // Reads zero everywhere again: the next allocation writes only its init bytes.
            Contents::Fresh
        } else {
            Contents::Dirty
        };
        st.book.release(Block {
            range: r,
            offset,
            shift,
            contents,
        });
        Ok(())
    }

    /// Pointer to slot `slot` of the item whose handle is `item`: `item + slot * stride`.
    /// `None` if `slot >= nr_slots`. The pointer is meaningful only for an item of this pool.
    #[inline]
    pub fn slot_ptr(&self, item: NonNull<u8>, slot: usize) -> Option<NonNull<u8>> {
        if slot < self.inner.nr_slots {
            // The address is inside the item's range when `item` is a handle of this pool;
            // wrapping arithmetic keeps this safe for any input.
            NonNull::new(item.as_ptr().wrapping_add(slot * self.inner.stride))
        } else {
            None
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the book consistent (every mutation is a
        // single step), so a poisoned lock is recovered.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
