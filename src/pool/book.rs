//! Pure bookkeeping of a [`Pool`](super::Pool): size classes, carving of offsets out of
//! ranges, free lists, and the state of every block ever carved.
//!
//! Nothing here touches pool memory or calls the kernel, so this module is unit-tested on its
//! own (and under Miri, which cannot run the `mmap` layer).
//!
//! # Model
//!
//! A range is `[0, stride)` of *offsets* (the memory of offset `o` in slot `s` lives at
//! `base + s * stride + o`, but that is the caller's business). Offsets are handed out in
//! *blocks* whose size is a power of two `1 << shift`, `shift >= MIN_SHIFT`, and whose offset
//! is a multiple of that size (natural alignment, so an item is aligned to its size class).
//!
//! Each range has a bump pointer. A block of size `z` is carved at `align_up(bump, z)`; the
//! gap `[bump, align_up(bump, z))` is cut into the largest naturally aligned power-of-two
//! pieces that fit and those go to the free lists as fresh blocks, so alignment wastes no
//! space. Free lists are per size class (LIFO). When a class is empty and no range can bump,
//! a larger free block is split in halves down to the wanted class (no coalescing: a block
//! keeps its class until split, and frees never merge buddies).
//!
//! # Invariants
//!
//! 1. Blocks of one range never overlap and lie within `[0, stride)`.
//! 2. Every carved block start is in `ranges[r].blocks` with its current shift and state;
//!    a block is on exactly one free list iff its state is `Free` and its range is not
//!    retired.
//! 3. `Allocated` blocks are owned by the caller; `Quarantined` blocks (reuse found a write
//!    after free) are owned by nobody and never handed out again.
//! 4. Retired ranges (see the fork rule in the pool docs) never hand out a block again.

use std::collections::HashMap;

/// How many of the newest free blocks of a class [`Book::alloc_quiet`] examines.
pub(crate) const QUIET_SCAN: usize = 64;

/// Smallest size class: 8 bytes (`1 << 3`).
pub(crate) const MIN_SHIFT: u32 = 3;

/// Size class (as a shift) of an item of `size` bytes and alignment `align`: the smallest
/// power of two `>= max(size, align, 8)`. `None` on overflow.
pub(crate) fn class_shift(size: usize, align: usize) -> Option<u32> {
    let need = size.max(align).max(1 << MIN_SHIFT);
    need.checked_next_power_of_two().map(|p| p.trailing_zeros())
}

/// What the memory of a free block holds, which decides the work on the next allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Contents {
    /// Zero in every slot and in the init image: never handed out since it was carved, or
    /// (`CowZero`) handed back to the kernel when freed.
    Fresh,
    /// Freed without poisoning: arbitrary old values.
    Dirty,
    /// Freed in robust mode: poison in every populated slot (and in the init image).
    Poisoned,
}

/// State of a carved block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Allocated,
    Free,
    Quarantined,
}

#[derive(Clone, Copy, Debug)]
struct BlockInfo {
    shift: u32,
    state: State,
}

/// A block handed out by [`Book::alloc`] or taken back by [`Book::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) range: usize,
    pub(crate) offset: usize,
    pub(crate) shift: u32,
    pub(crate) contents: Contents,
}

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FreeError {
    /// The offset is not the start of a block of that range.
    Foreign,
    /// The block is already free (or quarantined).
    DoubleFree,
}

#[derive(Debug)]
struct RangeBook {
    bump: usize,
    retired: bool,
    blocks: HashMap<usize, BlockInfo>,
}

/// The bookkeeping of one pool.
#[derive(Debug)]
pub(crate) struct Book {
    stride: usize,
    ranges: Vec<RangeBook>,
    /// `free[shift]`: LIFO of free blocks of size `1 << shift`.
    free: Vec<Vec<Block>>,
}

impl Book {
    /// An empty book for ranges of `stride` bytes (a power of two `>= 1 << MIN_SHIFT`).
    pub(crate) fn new(stride: usize) -> Self {
        debug_assert!(stride.is_power_of_two() && stride >= 1 << MIN_SHIFT);
        let max_shift = stride.trailing_zeros() as usize;
        Book {
            stride,
            ranges: Vec::new(),
            free: vec![Vec::new(); max_shift + 1],
        }
    }

    /// Number of ranges registered (retired ones included).
    #[cfg(test)]
    pub(crate) fn nr_ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Registers a new, empty range; returns its index.
    pub(crate) fn add_range(&mut self) -> usize {
        self.ranges.push(RangeBook {
            bump: 0,
            retired: false,
            blocks: HashMap::new(),
        });
        self.ranges.len() - 1
    }

    /// Whether range `r` is retired.
    pub(crate) fn is_retired(&self, r: usize) -> bool {
        self.ranges[r].retired
    }

    /// Retires range `r`: its free blocks leave the free lists and it never hands out a block
    /// again. Blocks allocated from it can still be freed (they are then dropped).
    pub(crate) fn retire(&mut self, r: usize) {
        self.ranges[r].retired = true;
        for list in &mut self.free {
            list.retain(|b| b.range != r);
        }
    }

    /// Allocates a block of size `1 << shift`: from the free list of that class, else by
    /// bumping a range, else by splitting a larger free block. `None` when a new range is
    /// needed. The block is marked allocated; its `contents` say what its memory holds.
    pub(crate) fn alloc(&mut self, shift: u32) -> Option<Block> {
        let s = shift as usize;
        assert!(
            s < self.free.len() && shift >= MIN_SHIFT,
            "size class out of range"
        );
        let block = if let Some(b) = self.free[s].pop() {
            b
        } else if let Some(b) = self.bump(shift, 1 << shift) {
            b
        } else {
            self.split(shift)?
        };
        self.mark_allocated(block);
        Some(block)
    }

    /// Like [`alloc`](Self::alloc), but first looks for a block on *quiet* pages: one of the
    /// newest [`QUIET_SCAN`] free blocks of the class for which `quiet(range, offset)` holds,
    /// else a block carved at the start of a page nothing was carved from (`page` bytes, a
    /// power of two; the gap before it becomes fresh free blocks, so nothing is wasted).
    /// Falls back to [`alloc`](Self::alloc). The pool uses this for init values the image
    /// does not already hold (see the quiet page rule in the pool docs).
    pub(crate) fn alloc_quiet(
        &mut self,
        shift: u32,
        page: usize,
        quiet: impl Fn(usize, usize) -> bool,
    ) -> Option<Block> {
        let s = shift as usize;
        assert!(
            s < self.free.len() && shift >= MIN_SHIFT,
            "size class out of range"
        );
        let list = &self.free[s];
        let found = list
            .iter()
            .enumerate()
            .rev()
            .take(QUIET_SCAN)
            .find(|(_, b)| quiet(b.range, b.offset))
            .map(|(i, _)| i);
        let block = match found {
            Some(i) => Some(self.free[s].remove(i)),
            None => self.bump(shift, page.max(1 << shift)),
        };
        match block {
            Some(b) => {
                self.mark_allocated(b);
                Some(b)
            }
            None => self.alloc(shift),
        }
    }

    fn mark_allocated(&mut self, block: Block) {
        let info = self.ranges[block.range]
            .blocks
            .get_mut(&block.offset)
            .expect("block of a free list is registered");
        debug_assert_eq!(info.shift, block.shift);
        debug_assert_eq!(info.state, State::Free);
        info.state = State::Allocated;
    }

    /// Carves a fresh block of size `1 << shift` at a multiple of `align` (a power of two,
    /// at least the size) from the first non-retired range with room.
    fn bump(&mut self, shift: u32, align: usize) -> Option<Block> {
        let size = 1usize << shift;
        debug_assert!(align.is_power_of_two() && align >= size);
        let stride = self.stride;
        let r = self
            .ranges
            .iter()
            .position(|rb| !rb.retired && rb.bump.next_multiple_of(align) + size <= stride)?;
        let start = self.ranges[r].bump;
        let at = start.next_multiple_of(align);
        // Cut the alignment gap into naturally aligned power-of-two blocks.
        let mut o = start;
        while o < at {
            // o > 0 here (a gap never starts at 0) and both ends are multiples of 8, so the
            // piece is at least 8 bytes.
            let mut piece = 1usize << o.trailing_zeros();
            while o + piece > at {
                piece >>= 1;
            }
            self.push_new(r, o, piece.trailing_zeros());
            o += piece;
        }
        let rb = &mut self.ranges[r];
        rb.bump = at + size;
        rb.blocks.insert(
            at,
            BlockInfo {
                shift,
                state: State::Free,
            },
        );
        Some(Block {
            range: r,
            offset: at,
            shift,
            contents: Contents::Fresh,
        })
    }

    /// Registers a fresh free block and puts it on its free list.
    fn push_new(&mut self, r: usize, offset: usize, shift: u32) {
        debug_assert!(shift >= MIN_SHIFT && offset.is_multiple_of(1 << shift));
        self.ranges[r].blocks.insert(
            offset,
            BlockInfo {
                shift,
                state: State::Free,
            },
        );
        self.free[shift as usize].push(Block {
            range: r,
            offset,
            shift,
            contents: Contents::Fresh,
        });
    }

    /// Splits the smallest larger free block down to `shift`.
    fn split(&mut self, shift: u32) -> Option<Block> {
        let s = shift as usize;
        let from = (s + 1..self.free.len()).find(|&k| !self.free[k].is_empty())?;
        let mut b = self.free[from].pop().expect("non-empty list");
        while b.shift > shift {
            b.shift -= 1;
            let half = 1usize << b.shift;
            let upper = Block {
                offset: b.offset + half,
                ..b
            };
            let blocks = &mut self.ranges[b.range].blocks;
            blocks.insert(
                upper.offset,
                BlockInfo {
                    shift: b.shift,
                    state: State::Free,
                },
            );
            blocks.get_mut(&b.offset).expect("registered").shift = b.shift;
            self.free[b.shift as usize].push(upper);
        }
        Some(b)
    }

    /// Starts freeing the block at `offset` of range `r`: checks it is an allocated block
    /// start, marks it free, and returns its shift. The caller then fills its memory and calls
    /// [`release`](Self::release) (under the same lock).
    pub(crate) fn begin_free(&mut self, r: usize, offset: usize) -> Result<u32, FreeError> {
        let info = self.ranges[r]
            .blocks
            .get_mut(&offset)
            .ok_or(FreeError::Foreign)?;
        match info.state {
            State::Allocated => {
                info.state = State::Free;
                Ok(info.shift)
            }
            State::Free | State::Quarantined => Err(FreeError::DoubleFree),
        }
    }

    /// Puts a block freed by [`begin_free`](Self::begin_free) on its free list (dropped if its
    /// range is retired).
    pub(crate) fn release(&mut self, block: Block) {
        debug_assert_eq!(
            self.ranges[block.range].blocks[&block.offset].state,
            State::Free
        );
        if !self.ranges[block.range].retired {
            self.free[block.shift as usize].push(block);
        }
    }

    /// Marks an allocated block quarantined: never handed out again, and a free of it is a
    /// double free.
    pub(crate) fn quarantine(&mut self, block: Block) {
        let info = self.ranges[block.range]
            .blocks
            .get_mut(&block.offset)
            .expect("registered");
        debug_assert_eq!(info.state, State::Allocated);
        info.state = State::Quarantined;
    }

    /// Number of blocks currently allocated (for tests and statistics).
    pub(crate) fn nr_allocated(&self) -> usize {
        self.ranges
            .iter()
            .flat_map(|r| r.blocks.values())
            .filter(|b| b.state == State::Allocated)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class_shift(0, 1), Some(3));
        assert_eq!(class_shift(1, 1), Some(3));
        assert_eq!(class_shift(8, 8), Some(3));
        assert_eq!(class_shift(9, 1), Some(4));
        assert_eq!(class_shift(24, 8), Some(5));
        assert_eq!(class_shift(4, 64), Some(6));
        assert_eq!(class_shift(4096, 8), Some(12));
        assert_eq!(class_shift(usize::MAX, 1), None);
    }

    #[test]
    fn quiet_allocation_prefers_quiet_free_blocks_then_fresh_pages() {
        let mut b = Book::new(4 * 4096);
        b.add_range();
        let x = b.alloc(3).unwrap(); // page 0 busy from here
        assert_eq!(x.offset, 0);
        // Nothing quiet on the free lists: carved at the next page, the gap freed fresh.
        let busy_page0 = |_r: usize, o: usize| o >= 4096;
        let y = b.alloc_quiet(3, 4096, busy_page0).unwrap();
        assert_eq!((y.offset, y.contents), (4096, Contents::Fresh));
        // The gap [8, 4096) went to the free lists: an ordinary allocation reuses it.
        let z = b.alloc(3).unwrap();
        assert!(z.offset > 0 && z.offset < 4096, "gap reused: {}", z.offset);
        // A quiet free block is preferred over carving.
        assert_eq!(b.begin_free(0, y.offset), Ok(3));
        b.release(Block {
            contents: Contents::Dirty,
            ..y
        });
        let page1_quiet = |_r: usize, o: usize| (4096..8192).contains(&o);
        let w = b.alloc_quiet(3, 4096, page1_quiet).unwrap();
        assert_eq!(w.offset, 4096);
        assert_eq!(w.contents, Contents::Dirty);
        // No quiet block and no room to carve a fresh page: any block.
        let mut full = Book::new(4096);
        full.add_range();
        full.alloc(3).unwrap();
        let v = full.alloc_quiet(3, 4096, |_, _| false).unwrap();
        assert_eq!(v.offset, 8);
        assert_eq!(full.nr_allocated(), 2);
    }

    #[test]
    fn bump_then_reuse_lifo() {
        let mut b = Book::new(4096);
        assert_eq!(b.alloc(3), None, "no range yet");
        b.add_range();
        let x = b.alloc(3).unwrap();
        let y = b.alloc(3).unwrap();
        assert_eq!((x.offset, y.offset), (0, 8));
        assert_eq!(x.contents, Contents::Fresh);
        assert_eq!(b.begin_free(0, 0), Ok(3));
        assert_eq!(b.begin_free(0, 0), Err(FreeError::DoubleFree));
        assert_eq!(b.begin_free(0, 4), Err(FreeError::Foreign));
        b.release(Block {
            contents: Contents::Dirty,
            ..x
        });
        let z = b.alloc(3).unwrap();
        assert_eq!(z.offset, 0);
        assert_eq!(z.contents, Contents::Dirty);
        assert_eq!(b.nr_allocated(), 2);
    }

    #[test]
    fn alignment_gap_goes_to_free_lists() {
        let mut b = Book::new(4096);
        b.add_range();
        let a = b.alloc(3).unwrap(); // [0, 8)
        let big = b.alloc(6).unwrap(); // aligned to 64: gap [8, 64) = 8 + 16 + 32
        assert_eq!((a.offset, big.offset), (0, 64));
        assert_eq!(b.alloc(3).unwrap().offset, 8);
        assert_eq!(b.alloc(4).unwrap().offset, 16);
        assert_eq!(b.alloc(5).unwrap().offset, 32);
        assert_eq!(b.alloc(3).unwrap().offset, 128);
    }

    #[test]
    fn split_when_bump_is_full() {
        let mut b = Book::new(64);
        b.add_range();
        let whole = b.alloc(6).unwrap();
        assert_eq!(b.alloc(3), None);
        b.begin_free(0, whole.offset).unwrap();
        b.release(whole);
        let small = b.alloc(3).unwrap();
        assert_eq!(small.offset, 0);
        // The remaining 56 bytes are 8 + 16 + 32 fresh halves.
        let mut rest: Vec<usize> = (0..7).map(|_| b.alloc(3).unwrap().offset).collect();
        rest.sort();
        assert_eq!(rest, vec![8, 16, 24, 32, 40, 48, 56]);
        assert_eq!(b.alloc(3), None);
    }

    #[test]
    fn retire_drops_free_blocks() {
        let mut b = Book::new(128);
        b.add_range();
        let x = b.alloc(3).unwrap();
        b.begin_free(0, x.offset).unwrap();
        b.release(x);
        b.retire(0);
        assert!(b.is_retired(0));
        assert_eq!(b.alloc(3), None);
        b.add_range();
        assert_eq!(b.alloc(3).unwrap().range, 1);
    }

    #[test]
    fn quarantine_blocks_reuse_and_free() {
        let mut b = Book::new(64);
        b.add_range();
        let x = b.alloc(3).unwrap();
        b.quarantine(x);
        assert_eq!(b.begin_free(0, x.offset), Err(FreeError::DoubleFree));
        assert_ne!(b.alloc(3).unwrap().offset, x.offset);
    }

    /// Seeded random alloc/free sequences: allocated blocks never overlap, stay in the stride,
    /// are naturally aligned, and the book's count matches a model.
    #[test]
    fn random_sequences_against_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let iters = if cfg!(miri) { 300 } else { 5000 };
        let stride = 1024;
        let mut b = Book::new(stride);
        let mut live: Vec<Block> = Vec::new();
        for _ in 0..iters {
            if next() % 3 != 0 || live.is_empty() {
                let shift = 3 + (next() % 6) as u32; // 8..=256 bytes
                let blk = match b.alloc(shift) {
                    Some(x) => x,
                    None => {
                        b.add_range();
                        b.alloc(shift).expect("fresh range has room")
                    }
                };
                let size = 1usize << shift;
                assert_eq!(blk.offset % size, 0);
                assert!(blk.offset + size <= stride);
                for o in &live {
                    let osz = 1usize << o.shift;
                    let disjoint = o.range != blk.range
                        || o.offset + osz <= blk.offset
                        || blk.offset + size <= o.offset;
                    assert!(disjoint, "{blk:?} overlaps {o:?}");
                }
                live.push(blk);
            } else {
                let i = (next() % live.len() as u64) as usize;
                let blk = live.swap_remove(i);
                assert_eq!(b.begin_free(blk.range, blk.offset), Ok(blk.shift));
                assert_eq!(
                    b.begin_free(blk.range, blk.offset),
                    Err(FreeError::DoubleFree)
                );
                b.release(Block {
                    contents: Contents::Dirty,
                    ..blk
                });
            }
            assert_eq!(b.nr_allocated(), live.len());
        }
        assert!(b.nr_ranges() >= 1);
    }
}
