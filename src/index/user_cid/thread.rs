//! The real front's view of threads: per-thread registration (live-thread count, allowed-CPU
//! union), thread exit, and the fork generation.
//!
//! * A thread registers with an allocator on its first [`CidAllocator::acquire`]
//!   (`super::CidAllocator::acquire`): it reads its own affinity mask, ORs it into the
//!   allocator's allowed union and increments its live-thread count. A `thread_local` registry
//!   remembers the allocators the thread registered with (by weak reference, so an allocator may
//!   be dropped before the thread exits); its destructor decrements their counts.
//! * TLS teardown: once the registry is destroyed (or while it is being destroyed), a lease
//!   still works, it just does not register the thread (the count would never be decremented).
//!   A registry first touched by another destructor during teardown registers normally and is
//!   destroyed after it (the C library runs destructors registered during teardown too).
//! * Fork: the child's only thread runs the `pthread_atfork` child handler, which increments
//!   [`FORK_GEN`]. Everything the allocator recorded under an older generation is dropped in
//!   the child: the allocator state is reset on first use, registry entries of older generations
//!   are forgotten (never decremented), and leases taken before the fork release nothing.
//!
//! [`CidAllocator::acquire`]: super::CidAllocator::acquire

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, Once, Weak};

use super::real::Shared;
use super::state::TaskCid;

/// Number of forks between the original process and this one (0 in the original).
pub(super) static FORK_GEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one lock-free atomic increment.
    FORK_GEN.fetch_add(1, Relaxed);
}

/// Install the fork handler once per process (it is inherited by forked children).
pub(super) fn install_fork_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that is a plain `extern "C" fn` living for the whole
        // program, and async-signal-safe as POSIX requires of handlers run in the child.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        assert_eq!(rc, 0, "pthread_atfork failed: {rc}");
    });
}

struct Entry {
    id: u64,
    epoch: u64,
    shared: Weak<Shared>,
    /// The CID this thread owns under `Policy::PerTask`.
    task: TaskCid,
}

struct Registry {
    /// `(allocator id, fork generation)` of the last registration checked: the fast path.
    last: Cell<(u64, u64)>,
    entries: RefCell<Vec<Entry>>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let epoch = FORK_GEN.load(Relaxed);
        for e in self.entries.get_mut().drain(..) {
            if e.epoch == epoch
                && let Some(shared) = e.shared.upgrade()
                && shared.generation() == epoch
            {
                shared.core.thread_exit_for(Some(&e.task));
            }
        }
    }
}

thread_local! {
    static REGISTRY: Registry = const {
        Registry { last: Cell::new((0, u64::MAX)), entries: RefCell::new(Vec::new()) }
    };
}

/// Register the calling thread with `shared` (generation `epoch`) unless it already is, or unless
/// its thread-local storage is being torn down.
#[inline]
pub(super) fn ensure_registered(shared: &Arc<Shared>, epoch: u64) {
    let key = (shared.id, epoch);
    let _ = REGISTRY.try_with(|r| {
        if r.last.get() != key {
            r.register(shared, epoch);
        }
    });
}

/// Run `f` with the calling thread's per-task record for `shared` (generation `epoch`), or with
/// `None` when the thread is not registered (thread-local teardown).
pub(super) fn with_task<R>(
    shared: &Shared,
    epoch: u64,
    f: impl FnOnce(Option<&TaskCid>) -> R,
) -> R {
    let mut f = Some(f);
    let r = REGISTRY.try_with(|r| {
        let entries = r.entries.try_borrow().ok()?;
        let e = entries
            .iter()
            .find(|e| e.id == shared.id && e.epoch == epoch)?;
        let f = f.take()?;
        Some(f(Some(&e.task)))
    });
    match (r, f) {
        (Ok(Some(v)), _) => v,
        (_, Some(f)) => f(None),
        // `f` ran, so `r` is `Ok(Some(_))`.
        (_, None) => unreachable!("the per-task callback ran without a result"),
    }
}

impl Registry {
    #[cold]
    fn register(&self, shared: &Arc<Shared>, epoch: u64) {
        let Ok(mut entries) = self.entries.try_borrow_mut() else {
            return;
        };
        // Entries of an older generation belong to the parent process: forget them.
        entries.retain(|e| e.epoch == epoch && e.shared.strong_count() > 0);
        if !entries.iter().any(|e| e.id == shared.id) {
            shared
                .core
                .thread_start(thread_affinity(shared.core.nr_cpus() as usize));
            entries.push(Entry {
                id: shared.id,
                epoch,
                shared: Arc::downgrade(shared),
                task: TaskCid::new(),
            });
        }
        self.last.set((shared.id, epoch));
    }
}

/// CPUs the calling thread may run on ([`crate::topology::current_thread_affinity`]: no limit
/// on the number of CPUs). If the mask cannot be read at all, every CPU in `0..nr_cpus`.
pub(super) fn thread_affinity(nr_cpus: usize) -> Vec<u32> {
    match crate::topology::current_thread_affinity() {
        Ok(set) if !set.is_empty() => set.iter().map(|c| c as u32).collect(),
        _ => (0..nr_cpus as u32).collect(),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn affinity_is_read_without_a_cpu_limit() {
        let n = crate::util::possible_cpu_count();
        let cpus = super::thread_affinity(n);
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
        assert!(cpus.iter().all(|&c| (c as usize) < n.max(1024)));
        // The calling thread runs on one of its allowed CPUs.
        assert!(cpus.contains(&super::super::clock::current_cpu()));
    }
}
