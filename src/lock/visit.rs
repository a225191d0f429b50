//! The visitor side of a [`PerCpuLock`](super::PerCpuLock) slot's lock word, apart from the
//! memory it guards so that the loom model (`loom_tests`) runs this very code.
//!
//! # Protocol
//!
//! The word is [`FREE`], [`HELD`] (by a guard of a thread that took it with a critical section
//! or under a lease) or [`REMOTE`] (by the one visitor: visits are serialised by the lock's
//! visitor lock, so a `REMOTE` word is always the current visitor's own mark).
//!
//! * Under rseq a visitor compare-exchanges the word from `FREE` to `REMOTE`, then fences
//!   every in-flight critical section (membarrier). A section that read `FREE` before the
//!   exchange either committed `HELD` before the fence returned (the word is no longer
//!   `REMOTE`: its guard owns the slot; the visitor waits for `FREE` and starts again) or was
//!   restarted and now sees `REMOTE`. So `REMOTE` after a successful fence means the slot is
//!   the visitor's.
//! * If the fence is refused (a seccomp filter installed after the lock chose rseq), the
//!   visitor gives its mark back with a compare-exchange from `REMOTE` (a section may have
//!   committed `HELD` over it meanwhile: that word is its guard's and stays as it is) and,
//!   after [`FENCE_ATTEMPTS`] refusals, reports the failure instead of retrying forever.
//! * Under a lease on exactly the slot's CID no critical section runs on the slot, so the
//!   exchange from `FREE` to `REMOTE` is enough.
//! * Release is a compare-exchange from `REMOTE` to `FREE`: a visitor never overwrites a word
//!   it does not hold.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lock word: free.
pub(super) const FREE: u64 = 0;
/// Lock word: held by a guard of the slot's thread.
pub(super) const HELD: u64 = 1;
/// Lock word: held by the (one) remote visitor.
pub(super) const REMOTE: u64 = 2;

/// How many refused fences a visit of one slot tolerates before it reports the failure (as
/// the drains do, `remote::take_slots`).
pub(super) const FENCE_ATTEMPTS: u32 = 3;

/// The fence was refused [`FENCE_ATTEMPTS`] times: the word was left as it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused;

/// The atomic operations the protocol needs of a lock word (`std`'s, or loom's in the model).
pub(super) trait Word {
    fn compare_exchange(&self, current: u64, new: u64, ok: Ordering, err: Ordering) -> bool;
    fn load(&self, order: Ordering) -> u64;
}

impl Word for AtomicU64 {
    #[inline]
    fn compare_exchange(&self, current: u64, new: u64, ok: Ordering, err: Ordering) -> bool {
        AtomicU64::compare_exchange(self, current, new, ok, err).is_ok()
    }
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }
}

/// Takes `word` for the visitor under rseq access (module docs). `fence` is the membarrier
/// rseq fence, `wait` one step of backoff while a guard holds the word.
pub(super) fn acquire_rseq(
    word: &impl Word,
    mut fence: impl FnMut() -> bool,
    mut wait: impl FnMut(),
) -> Result<(), Refused> {
    let mut refused = 0;
    loop {
        if !word.compare_exchange(FREE, REMOTE, Ordering::Acquire, Ordering::Relaxed) {
            wait();
            continue;
        }
        if !fence() {
            // Give the mark back, only if it is still ours: a section that read FREE before
            // our exchange may have committed HELD over it, and that word is its guard's.
            word.compare_exchange(REMOTE, FREE, Ordering::Release, Ordering::Relaxed);
            refused += 1;
            if refused >= FENCE_ATTEMPTS {
                return Err(Refused);
            }
            wait();
            continue;
        }
        if word.load(Ordering::Acquire) == REMOTE {
            return Ok(());
        }
        // A section committed HELD over our mark before the fence: its guard stores FREE.
        wait();
    }
}

/// Takes `word` for the visitor under a lease on exactly the slot's CID (no critical section
/// can run on it): waits for the guard holder, if any.
pub(super) fn acquire_leased(word: &impl Word, mut wait: impl FnMut()) {
    while !word.compare_exchange(FREE, REMOTE, Ordering::Acquire, Ordering::Relaxed) {
        wait();
    }
}

/// Releases a word the visitor holds. Returns whether it was the visitor's (always, by the
/// protocol: nothing else writes a `REMOTE` word).
pub(super) fn release(word: &impl Word) -> bool {
    word.compare_exchange(REMOTE, FREE, Ordering::Release, Ordering::Relaxed)
}
