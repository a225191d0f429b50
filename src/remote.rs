//! Taking another thread's slot: exclusive access to any slot from any thread, for drains.
//!
//! Per-slot operations exclude each other only *on the same slot index from the thread
//! that holds it* (an rseq critical section checks its own CPU or CID; a lease excludes
//! other lease holders). A drain runs on some other thread and must exclude them too.
//!
//! * **Leases**: take a lease on exactly that CID ([`CidAllocator::try_acquire_exact`],
//!   yielding while another thread holds it); the slot is then the drainer's.
//! * **rseq**: no lease exists, and under mm_cid there is no CID-to-CPU map to target.
//!   The drainer sets a *lock bit* in the slot's word with an atomic `fetch_or`, then calls
//!   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`, which restarts every critical
//!   section in flight on other CPUs. Every operation of the structures that use this
//!   module *compares* the word (compare-and-store, or list pop with a tag mask) against a
//!   value without the lock bit, so a critical section that begins after the bit is set
//!   cannot commit. One that read the word before the bit was set either committed before
//!   the fence returned (overwriting the bit: the drainer sees the bit gone and tries
//!   again) or was restarted. So once the fence returns and the bit is still there, no
//!   critical section can change the word: the drainer owns it until it stores the
//!   unlocked value back.
//!
//! Structures that drain resolve their index with [`resolve_drainable`]: rseq only where
//! the membarrier command exists, leases otherwise.

use crate::index::{self, Index, Resolved};
use crate::rseq::membarrier;
use std::sync::atomic::{AtomicU64, Ordering};

/// Resolves `index` for a structure that drains: like [`Index::resolve`], but rseq only
/// where the membarrier rseq fence is available and the process registered for it.
pub(crate) fn resolve_drainable(index: Index) -> Resolved {
    match index.resolve() {
        Resolved::Rseq(_) if !membarrier::rseq_fence_ready() => {
            Resolved::Lease(index::fallback_allocator())
        }
        r => r,
    }
}

/// Takes every non-zero slot word of a structure: for each slot `s` whose word is non-zero,
/// gains exclusive access (see the module docs), passes the word's value (without `lock`)
/// to `take(s, value)`, and leaves the word 0.
///
/// `lock` must be a bit no legitimate value of the word uses, and every per-slot operation
/// on these words must fail when it is set. Callers serialise drains of one structure
/// (two drainers could otherwise both see their lock bit and take the same value).
pub(crate) fn take_slots<'a>(
    resolved: Resolved,
    nr_slots: usize,
    word: impl Fn(usize) -> &'a AtomicU64,
    lock: u64,
    mut take: impl FnMut(usize, u64),
) {
    match resolved {
        Resolved::Lease(alloc) => {
            for s in 0..nr_slots.min(alloc.capacity() as usize) {
                if word(s).load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let lease = loop {
                    match alloc.try_acquire_exact(s as u32) {
                        Some(lease) => break lease,
                        None => std::thread::yield_now(),
                    }
                };
                let v = word(s).swap(0, Ordering::Acquire);
                drop(lease);
                take(s, v);
            }
        }
        Resolved::Rseq(_) => {
            let mut pending: Vec<usize> = (0..nr_slots)
                .filter(|&s| word(s).load(Ordering::Relaxed) != 0)
                .collect();
            while !pending.is_empty() {
                for &s in &pending {
                    word(s).fetch_or(lock, Ordering::AcqRel);
                }
                let fenced = membarrier::fence_rseq();
                assert!(
                    fenced,
                    "percid: membarrier rseq fence failed after it was reported available"
                );
                pending.retain(|&s| {
                    let w = word(s).load(Ordering::Acquire);
                    if w & lock == 0 {
                        return true; // a critical section overwrote the lock bit: again
                    }
                    // Locked and fenced: no critical section can commit to this word.
                    word(s).store(0, Ordering::Release);
                    take(s, w & !lock);
                    false
                });
            }
        }
    }
}
