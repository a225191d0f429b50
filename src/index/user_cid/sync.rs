//! The atomics the allocation core is built from: `std`'s normally, `loom`'s when the crate's
//! own unit tests are compiled with `--cfg loom` (loom is a dev-dependency, so only the
//! `cfg(test)` build of the library can see it).

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;
