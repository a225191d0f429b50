//! Reclaim scopes: a thread-local mark, as Linux's `PF_MEMALLOC` is, that lets the code that
//! frees units charge a [`Limit`](super::Limit) past its limit, into the limit's reserve.
//!
//! # Algorithm
//!
//! A thread-local depth counts the [`ReclaimScope`] guards alive on this thread:
//! [`reclaim_scope`] increments it, dropping the guard decrements it. A `Limit` charge asks
//! [`in_reclaim_scope`] only when it would otherwise be refused: then, inside a scope, it may
//! take `usage` up to `limit + reserve` (see [`Limit::with_reserve`](super::Limit::with_reserve)).
//!
//! # Invariants
//!
//! * The mark belongs to the thread: the guard is neither `Send` nor `Sync`, so it is dropped
//!   on the thread that made it, and scopes nest as the guards' lifetimes do.
//! * A nested scope grants nothing more: the reserve is one budget per `Limit`, shared by every
//!   scope of every thread, and the depth only says whether the thread is in a scope.
//!   [`ReclaimScope::is_nested`] tells reclaim code that it already runs inside reclaim, so it
//!   can refuse to recurse (the kernel's rule for `PF_MEMALLOC` tasks).
//! * The mark is global to the thread, not per `Limit`, as `PF_MEMALLOC` is per task: every
//!   limit charged inside the scope may use its reserve.

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    // No destructor: readable until the thread's end, signal handlers included.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// A reclaim scope on this thread, until dropped: see the [module docs](self).
#[must_use = "the scope ends when the guard is dropped"]
#[derive(Debug)]
pub struct ReclaimScope {
    nested: bool,
    /// `!Send`, `!Sync`: the mark is this thread's.
    _thread: PhantomData<*const ()>,
}

impl ReclaimScope {
    /// Whether this scope was opened inside another one on this thread (reclaim called from
    /// reclaim): it grants nothing more; the caller should not recurse into reclaim.
    pub fn is_nested(&self) -> bool {
        self.nested
    }
}

impl Drop for ReclaimScope {
    fn drop(&mut self) {
        let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Marks the calling thread as reclaiming until the guard is dropped: charges to a
/// [`Limit`](super::Limit) with a reserve may then go past the limit by at most the reserve.
///
/// ```
/// use percid::{Limit, reclaim_scope};
///
/// let limit = Limit::new(2, 0).with_reserve(1).unwrap();
/// limit.try_charge(2).unwrap();
/// assert!(limit.try_charge(1).is_err(), "outside a scope the reserve is never used");
/// {
///     let scope = reclaim_scope();
///     assert!(!scope.is_nested());
///     limit.try_charge(1).unwrap(); // the reclaimer's own bookkeeping, from the reserve
///     let inner = reclaim_scope();
///     assert!(inner.is_nested());
///     assert!(limit.try_charge(1).is_err(), "a nested scope gets nothing more");
/// }
/// limit.uncharge(3);
/// assert_eq!(limit.usage(), 0);
/// ```
pub fn reclaim_scope() -> ReclaimScope {
    let depth = DEPTH.try_with(|d| {
        let depth = d.get();
        d.set(depth.saturating_add(1));
        depth
    });
    ReclaimScope {
        nested: depth.is_ok_and(|d| d > 0),
        _thread: PhantomData,
    }
}

/// Whether the calling thread is inside a [`reclaim_scope`].
pub fn in_reclaim_scope() -> bool {
    DEPTH.try_with(|d| d.get() > 0).unwrap_or(false)
}
