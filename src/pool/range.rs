//! The `mmap` layer of a [`Pool`](super::Pool): one [`Range`] is one reservation of
//! `nr_slots * stride` bytes, aligned to `stride`, plus (in [`Populate::CowInit`] mode) the
//! shared *init image* of one stride.
//!
//! See the pool's module docs for the layout; this file holds every system call and every
//! raw access to slot memory of the pool.

use std::collections::BTreeMap;
use std::io;
use std::ptr::{self, NonNull};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Populate;

/// Incremented in the parent and in the child by a `pthread_atfork` handler, so a range can
/// tell whether a `fork` happened since it was created (see the fork rule in the pool docs).
static FORK_GEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork() {
    // An atomic increment is async-signal-safe, as an atfork handler must be.
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

fn register_fork_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers are `extern "C" fn()` without preconditions that live for the
        // whole program; pthread_atfork only records them.
        let rc = unsafe { libc::pthread_atfork(None, Some(after_fork), Some(after_fork)) };
        // Without the handler the fork rule cannot be enforced: refuse to go on silently.
        assert_eq!(rc, 0, "pthread_atfork failed: {rc}");
    });
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 { v as usize } else { 4096 }
    })
}

fn last_error(op: &'static str) -> super::PoolError {
    super::PoolError::Mmap {
        op,
        source: io::Error::last_os_error(),
    }
}

/// One reservation of `nr_slots * stride` bytes.
///
/// Invariants: `base` is aligned to `stride` and `[base, base + len)` is mapped read-write
/// for the lifetime of the value (private anonymous in `CowZero`, one private mapping of the
/// memfd per slot in `CowInit`); `image`, when present, maps `stride` bytes of that memfd
/// shared and read-write. `Drop` unmaps both.
///
/// `live` maps the offset of every live item to its length (kept only with an image): a page
/// of the stride is *quiet* when no entry overlaps it, and the image bytes of a page are
/// written only while it is quiet (the *quiet page* rule, see [`fill`](Self::fill)). Items
/// never overlap, so the entry that starts last before a byte range's end is the only one
/// that can overlap it. The map is sized by the live items, not by the stride (a table per
/// page of a 2^45-byte stride would be 32 GiB).
#[derive(Debug)]
pub(crate) struct Range {
    base: NonNull<u8>,
    len: usize,
    stride: usize,
    nr_slots: usize,
    image: Option<NonNull<u8>>,
    live: BTreeMap<usize, usize>,
    fork_gen: u64,
}

/// Largest piece of slot memory compared or written at once (keeps slices, and the time
/// between two looks at a page's state, bounded for any item size).
const CHUNK: usize = 64 * 1024;

/// The bytes a block must hold: `head`, then `rest` repeated up to `len` bytes. Described, not
/// materialised: an item may be as large as the stride (terabytes of address space), so no
/// buffer of its size is ever built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pattern<'a> {
    pub(crate) head: &'a [u8],
    pub(crate) rest: u8,
    pub(crate) len: usize,
}

impl Pattern<'_> {
    /// The head bytes among the pattern's bytes `[at, at + n)`: those come first.
    fn head_part(&self, at: usize, n: usize) -> &[u8] {
        self.head
            .get(at..self.head.len().min(at + n))
            .unwrap_or(&[])
    }

    /// Whether `bytes` equal the pattern's bytes `[at, at + bytes.len())`.
    fn matches(&self, at: usize, bytes: &[u8]) -> bool {
        let head = self.head_part(at, bytes.len());
        let (h, r) = bytes.split_at(head.len());
        h == head && r.iter().all(|&b| b == self.rest)
    }

    /// Writes the pattern's bytes `[at, at + n)` to `dst`.
    ///
    /// # Safety
    /// `dst` is valid for writes of `n` bytes and overlaps neither `head` nor anything
    /// borrowed.
    unsafe fn write(&self, at: usize, dst: *mut u8, n: usize) {
        let head = self.head_part(at, n);
        // SAFETY: [dst, dst + n) is writable and disjoint from `head` (contract), and
        // `head.len() <= n`.
        unsafe {
            ptr::copy_nonoverlapping(head.as_ptr(), dst, head.len());
            ptr::write_bytes(dst.add(head.len()), self.rest, n - head.len());
        }
    }
}

// SAFETY: a Range is a description of process-wide mappings (addresses and lengths); nothing
// in it is tied to a thread. Accesses to the memory are synchronised by the pool's lock.
unsafe impl Send for Range {}
// SAFETY: as above; `&Range` only reads the immutable fields.
unsafe impl Sync for Range {}

impl Range {
    /// Maps a new range. `nr_slots * stride` must not overflow (checked by the config).
    pub(crate) fn new(
        nr_slots: usize,
        stride: usize,
        populate: Populate,
    ) -> Result<Range, super::PoolError> {
        let len = nr_slots * stride;
        if populate == Populate::CowInit {
            register_fork_handler();
        }
        let fork_gen = FORK_GEN.load(Ordering::Relaxed);
        let prot = match populate {
            Populate::CowZero => libc::PROT_READ | libc::PROT_WRITE,
            Populate::CowInit => libc::PROT_NONE,
        };
        // Reserve one extra stride so the base can be aligned to the stride.
        let over = len + stride;
        // SAFETY: a fresh anonymous mapping at an address chosen by the kernel; it overlaps
        // nothing we own.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                over,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(last_error("mmap reservation"));
        }
        let raw_addr = raw as usize;
        let aligned = raw_addr.next_multiple_of(stride);
        let head = aligned - raw_addr;
        let tail = over - head - len;
        // SAFETY: [raw, raw+head) and [aligned+len, raw+over) are the parts of the mapping we
        // just made that lie outside the aligned range; nothing refers to them.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
        }
        let base = NonNull::new(aligned as *mut u8).expect("mmap never returns address 0");
        // From here on `range` owns [base, base+len) and unmaps it on drop (also on error).
        let mut range = Range {
            base,
            len,
            stride,
            nr_slots,
            image: None,
            live: BTreeMap::new(),
            fork_gen,
        };
        if populate == Populate::CowInit {
            range.map_cow_init()?;
        }
        if stride < 2 << 20 {
            // A transparent huge page would populate 2 MiB (many slots) on one touch. Best
            // effort: EINVAL without THP support is fine.
            // SAFETY: advice on our own mapping; it does not change its contents.
            unsafe {
                libc::madvise(base.as_ptr().cast(), len, libc::MADV_NOHUGEPAGE);
            }
        }
        Ok(range)
    }

    /// `CowInit`: creates the memfd holding the init image, maps it shared once (the image)
    /// and privately over every slot of the reservation.
    fn map_cow_init(&mut self) -> Result<(), super::PoolError> {
        // SAFETY: the name is a NUL-terminated literal.
        let fd = unsafe { libc::memfd_create(c"percid-pool".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(last_error("memfd_create"));
        }
        let result = (|| {
            // SAFETY: fd is the memfd we just created.
            if unsafe { libc::ftruncate(fd, self.stride as libc::off_t) } != 0 {
                return Err(last_error("ftruncate"));
            }
            // SAFETY: fresh shared mapping of our memfd at a kernel-chosen address.
            let img = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    self.stride,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            };
            if img == libc::MAP_FAILED {
                return Err(last_error("mmap init image"));
            }
            self.image = Some(NonNull::new(img.cast()).expect("mmap never returns address 0"));
            for s in 0..self.nr_slots {
                let at = self.slot(s);
                // SAFETY: [at, at+stride) lies inside the reservation this Range owns, so
                // MAP_FIXED replaces only our own PROT_NONE reservation.
                let p = unsafe {
                    libc::mmap(
                        at.cast(),
                        self.stride,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                        fd,
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    return Err(last_error("mmap slot"));
                }
            }
            Ok(())
        })();
        // SAFETY: fd is ours; the mappings keep the file alive without it.
        unsafe { libc::close(fd) };
        result
    }

    /// Start of the reservation (slot 0, offset 0).
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length of the reservation in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the address lies in slot 0 of this range; then returns its offset.
    pub(crate) fn offset_of(&self, addr: usize) -> Option<Result<usize, ()>> {
        let b = self.base.as_ptr() as usize;
        if addr < b || addr >= b + self.len {
            None
        } else if addr < b + self.stride {
            Some(Ok(addr - b))
        } else {
            Some(Err(()))
        }
    }

    /// Whether a `fork` happened since this range was created.
    pub(crate) fn forked(&self) -> bool {
        FORK_GEN.load(Ordering::Relaxed) != self.fork_gen
    }

    fn slot(&self, s: usize) -> *mut u8 {
        debug_assert!(s < self.nr_slots);
        // In bounds of the reservation: s < nr_slots.
        self.base.as_ptr().wrapping_add(s * self.stride)
    }

    /// Whether a live item overlaps the bytes `[lo, hi)` of the stride.
    fn overlaps_live(&self, lo: usize, hi: usize) -> bool {
        // Live items are disjoint: the one that starts last before `hi` ends last.
        self.live
            .range(..hi)
            .next_back()
            .is_some_and(|(&o, &l)| o + l > lo)
    }

    /// Whether no live item overlaps the pages of `[offset, offset + len)` (always true
    /// without an image).
    pub(crate) fn is_quiet(&self, offset: usize, len: usize) -> bool {
        let pg = page_size();
        self.image.is_none()
            || !self.overlaps_live(offset / pg * pg, (offset + len.max(1)).next_multiple_of(pg))
    }

    /// Records that the block `[offset, offset + len)` is now a live item (handed out).
    pub(crate) fn mark_live(&mut self, offset: usize, len: usize) {
        if self.image.is_some() {
            let old = self.live.insert(offset, len);
            debug_assert!(old.is_none(), "item at {offset} was already live");
        }
    }

    /// Records that the block `[offset, offset + len)` is no longer a live item.
    pub(crate) fn mark_dead(&mut self, offset: usize, len: usize) {
        if self.image.is_some() {
            let old = self.live.remove(&offset);
            debug_assert_eq!(old, Some(len), "item at {offset} was not live");
        }
    }

    /// Makes `[offset, offset + pattern.len())` hold `pattern` in every slot, writing only
    /// where the slot differs, so untouched slots stay unpopulated whenever they already read
    /// `pattern`.
    ///
    /// With an init image, each page of the block that no live item overlaps (a *quiet*
    /// page) gets the pattern in the image first, so untouched slots read it through the
    /// image. A page that a live item overlaps keeps its image bytes, and every slot whose
    /// bytes differ is written (which populates that slot's page).
    ///
    /// Why the quiet page rule (issue 10.5): the decision "this slot already reads `pattern`"
    /// is a read of the slot. An untouched slot page is mapped to the image; when another
    /// thread writes a live neighbour on that page in that slot for the first time, the
    /// kernel copies the image page into a private page and then switches the mapping. If
    /// the image changed between the copy and the switch, our read (through the old mapping)
    /// sees the new bytes while the private copy keeps the old ones, and the slot is lost. No
    /// system call waits for a copy in flight, so instead the image of a page is never
    /// changed while anyone may be copying it: only live items are written by their users
    /// (accessing a free block is a contract violation), so with no live item on the page no
    /// slot of it can be copied except by our own writes below, which come after the image
    /// write. While an item lives, its page's image bytes are therefore constant, every slot
    /// page is either the constant image or a private copy, and the comparison is exact.
    /// `tests/pool_cow_race.rs` loses slots in about 6% of its rounds without this rule.
    ///
    /// # Safety
    /// The bytes must lie within `[0, stride)` and belong to a block nobody else accesses
    /// (the caller holds the pool lock and the block is not a live item: not yet marked live
    /// by [`mark_live`](Self::mark_live), or already marked dead), and the range must not
    /// be forked if it has an image.
    pub(crate) unsafe fn fill(&self, offset: usize, pattern: Pattern<'_>) {
        let n = pattern.len;
        debug_assert!(offset + n <= self.stride && pattern.head.len() <= n);
        if let Some(img) = self.image {
            let pg = page_size();
            let mut lo = offset;
            while lo < offset + n {
                // One page of the block at a time (and at most a page of bytes).
                let hi = (lo / pg + 1).saturating_mul(pg).min(offset + n);
                if !self.overlaps_live(lo / pg * pg, hi.next_multiple_of(pg)) {
                    // SAFETY: [lo, hi) is inside the image mapping (stride bytes) and inside
                    // the block, which is exclusively ours (contract); the page is quiet, so
                    // no slot of it is being copied by anyone else (see above).
                    unsafe { pattern.write(lo - offset, img.as_ptr().add(lo), hi - lo) };
                }
                lo = hi;
            }
        }
        for s in 0..self.nr_slots {
            let mut at = 0;
            while at < n {
                let k = CHUNK.min(n - at);
                // SAFETY: inside slot s of our reservation, exclusively ours (contract); the
                // memory is mapped read-write and initialised (zero, image or earlier
                // writes). The slice is dropped before the write.
                unsafe {
                    let p = self.slot(s).add(offset + at);
                    if !pattern.matches(at, std::slice::from_raw_parts(p, k)) {
                        pattern.write(at, p, k);
                    }
                }
                at += k;
            }
        }
    }

    /// Writes `poison` over `[offset, offset + len)` in every slot that does not read it
    /// already. `CowZero`: chunks ([`CHUNK`] bytes of the block in one slot) that read all
    /// zero are taken as untouched and skipped, so the poison costs what was populated. In
    /// `CowInit` this is [`fill`](Self::fill): the image is poisoned first on quiet pages, so
    /// their untouched slots already read poison and are not populated.
    ///
    /// # Safety
    /// As for [`fill`](Self::fill).
    pub(crate) unsafe fn poison(&self, offset: usize, len: usize, poison: u8) {
        if self.image.is_some() {
            let pattern = Pattern {
                head: &[],
                rest: poison,
                len,
            };
            // SAFETY: forwarded contract.
            unsafe { self.fill(offset, pattern) };
            return;
        }
        for s in 0..self.nr_slots {
            for at in (0..len).step_by(CHUNK) {
                let n = CHUNK.min(len - at);
                // SAFETY: inside slot s of our reservation, exclusively ours (contract); the
                // slice is dropped before the write.
                unsafe {
                    let p = self.slot(s).add(offset + at);
                    if std::slice::from_raw_parts(p, n).iter().any(|&b| b != 0) {
                        ptr::write_bytes(p, poison, n);
                    }
                }
            }
        }
    }

    /// `CowZero`: hands the pages of `[offset, offset + len)` back to the kernel in every
    /// slot (`MADV_DONTNEED`), so they read zero again and cost no memory. Returns whether
    /// every slot was reset (then the block reads zero everywhere, as a fresh one).
    ///
    /// # Safety
    /// As for [`fill`](Self::fill); the block is page-aligned (a size class of at least a
    /// page) and no item overlaps its pages.
    pub(crate) unsafe fn reset_zero(&self, offset: usize, len: usize) -> bool {
        debug_assert!(self.image.is_none());
        debug_assert!(offset.is_multiple_of(page_size()) && len.is_multiple_of(page_size()));
        (0..self.nr_slots).all(|s| {
            // SAFETY: whole pages of slot s inside our private anonymous reservation that
            // belong to the dead block alone (contract): dropping them only makes them read
            // zero, which nobody may observe until the block is handed out again.
            unsafe { libc::madvise(self.slot(s).add(offset).cast(), len, libc::MADV_DONTNEED) == 0 }
        })
    }

    /// Checks a poisoned block before reuse: every slot must read all `poison` (or, in
    /// `CowZero`, each [`CHUNK`] of it all poison or all zero: a chunk that was never
    /// populated). Returns the first slot and byte offset within the item that differ.
    ///
    /// # Safety
    /// As for [`fill`](Self::fill) (reading only).
    pub(crate) unsafe fn check_poison(
        &self,
        offset: usize,
        len: usize,
        poison: u8,
    ) -> Option<(usize, usize)> {
        let zero_ok = self.image.is_none();
        for s in 0..self.nr_slots {
            for at in (0..len).step_by(CHUNK) {
                // SAFETY: inside slot s of our reservation, exclusively ours (contract).
                let chunk = unsafe {
                    std::slice::from_raw_parts(self.slot(s).add(offset + at), CHUNK.min(len - at))
                };
                if let Some(i) = chunk.iter().position(|&b| b != poison) {
                    // `CowZero`: a chunk never populated reads zero (not poisoned, see
                    // `poison`).
                    if zero_ok && chunk.iter().all(|&b| b == 0) {
                        continue;
                    }
                    return Some((s, at + i));
                }
            }
        }
        None
    }
}

impl Drop for Range {
    fn drop(&mut self) {
        // SAFETY: we own both mappings (type invariant); the pool is being dropped, so no
        // handle refers to them any more.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
            if let Some(img) = self.image {
                libc::munmap(img.as_ptr().cast(), self.stride);
            }
        }
    }
}
