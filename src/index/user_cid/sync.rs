//! The atomics the allocation core is built from: `std`'s normally, `loom`'s when the crate's
//! own unit tests are compiled with `--cfg loom` (loom is a dev-dependency, so only the
//! `cfg(test)` build of the library can see it).

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;

/// Waiting for another thread that holds the ownership-mode lock briefly: yield (to `loom`'s
/// scheduler under `cfg(loom)`, which needs every spin loop to yield).
pub(crate) fn wait_a_little() {
    #[cfg(all(loom, test))]
    loom::thread::yield_now();
    #[cfg(not(all(loom, test)))]
    std::thread::yield_now();
}
