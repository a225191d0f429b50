//! [`List<T>`]: a per-slot LIFO of caller-owned nodes.
//!
//! # Algorithm
//!
//! Each slot holds the head pointer of a singly linked list of [`Node`]s (`next` first,
//! then the value). A node is a `Box<Node<T>>` that moves between the caller and the list:
//! [`push_node`](List::push_node) links it in, [`pop_node`](List::pop_node) hands it back,
//! and neither allocates (as librseq's per-CPU list). [`push`](List::push) and
//! [`pop`](List::pop) are the by-value convenience: they allocate and free the node. On the
//! calling thread's slot:
//!
//! * `push`: read the head `h`, set `node.next = h`, then compare-and-store the head from
//!   `h` to `node` (one critical section, or a plain store under a lease); retry if the
//!   head changed.
//! * `pop`: one list-pop critical section: load the head, stop if it is null (empty) or
//!   tagged (being drained), else store `head = head.next`. Inside the critical section no
//!   other operation on the slot can interleave, so the classic ABA problem of lock-free
//!   stacks cannot happen, and the node it reads cannot have been freed: only a pop of the
//!   same slot (which would have aborted this one) or a drain (which fences first) removes
//!   nodes.
//! * `drain`: takes every slot's list, from any thread (a lease on each CID, or, under
//!   rseq, a tag bit in the head plus `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`, needed because
//!   under mm_cid there is no CID-to-CPU map to target one CPU). The tag bit is bit 0: nodes
//!   are at least 8-byte aligned.
//!
//! A thread without a slot (index beyond the slots, or no rseq registration) uses a shared
//! overflow list behind a mutex; `pop` on the calling thread's slot falls back to it when
//! the slot is empty and an atomic count says the overflow list is not empty (so an empty
//! `pop` takes no lock), and `drain` empties it as well.
//!
//! `pop` takes from the calling thread's *current* slot only: an element pushed on another
//! CPU (or CID) is not seen until the thread runs there, or a `drain`.
//!
//! # Orphaned slots
//!
//! Elements pushed to a slot that no thread indexes any more (an *orphan*: threads exited and
//! the concurrency-ID space shrank, see [`crate::orphans`]) would be stranded until a drain.
//! With the default [`OrphanPolicy`], a `pop` that finds its slot empty first *adopts* the
//! orphans' lists: it takes them (one fence for all of them, or exact leases) onto the shared
//! overflow list, then pops from there. [`List::reap_orphans`] does the same on demand. A
//! *max pushed* hint (one more than the highest slot pushed to since the last drain, kept by
//! `push` with one load of a read-mostly word) bounds the slots examined. Moves are exact:
//! a taken list is owned by the mover alone until it is appended to the overflow list.
//!
//! Looking for orphans reads the live bound (for kernel `mm_cid`, a clock read and a cached
//! word), takes the drain mutex and scans the slots: several times a pop+push pair. So an
//! empty pop looks only when a hint says it may find something:
//!
//! * **New high slot.** `max_pushed` is above `adopt_checked`, the `max_pushed` of the last
//!   complete look (adoption or reap, reset by a drain): a slot was pushed to that no look
//!   has examined yet. The next empty pop looks.
//! * **Rate limit.** Otherwise a slot examined before may have become an orphan since (its
//!   threads exited, the bound shrank, a CID went idle). Each thread keeps a small table of
//!   `(list, empty pops left)`; an empty pop of a list whose count runs out, or whose entry
//!   another list took, looks and restarts the count at 256. So every list is looked at
//!   within 256 consecutive empty pops of any one thread, and an orphan's elements are
//!   adopted by the first thread that keeps popping the empty list.
//! * **cpu_id.** No slot is ever an orphan: after one complete look, empty pops do not look
//!   again until a drain resets the hints.
//!
//! Otherwise an empty pop costs the critical section, two loads of read-mostly words and one
//! thread-local entry.

use crate::index::Index;
use crate::ops::{Access, Outcome};
use crate::orphans::{self, OrphanCounters, OrphanPolicy, Reaped};
use crate::per_cpu::{PerCpu, RunSlot};
use crate::pool::{Pool, PoolError};
use crate::remote::{self, DrainCounters};
use crate::rseq::IndexMode;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

const TAG: u64 = 1;

/// `adopt_checked` of a list whose access has no orphans (cpu_id).
const NO_ORPHANS: usize = usize::MAX;

/// A node of a [`List`]: a value and the link the list uses. Owned by the caller (as a
/// `Box<Node<T>>`) between [`List::pop_node`] and [`List::push_node`], so moving an element
/// between lists or back into one allocates nothing.
#[repr(C)]
pub struct Node<T> {
    next: AtomicPtr<u8>,
    /// The element.
    pub value: T,
}

impl<T> Node<T> {
    /// A boxed node holding `value`, ready for [`List::push_node`].
    pub fn new(value: T) -> Box<Node<T>> {
        Box::new(Node {
            next: AtomicPtr::new(std::ptr::null_mut()),
            value,
        })
    }

    /// The element, freeing the node.
    #[allow(clippy::boxed_local)] // the node comes boxed from `pop_node`: this frees it
    pub fn into_value(self: Box<Self>) -> T {
        self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Node<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Node").field(&self.value).finish()
    }
}

/// What a [`List`]'s drains did, counted since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ListStats {
    /// Drains run.
    pub drains: u64,
    /// `membarrier` rseq fences issued: by drains, adoptions and reaps.
    pub fences: u64,
    /// The part of `fences` that restarted one CPU only: moves of one `cpu_id` slot
    /// ([`crate::rseq::membarrier::fence_rseq_on`]); the others restarted every CPU.
    pub fences_one_cpu: u64,
    /// Fences the kernel refused (the drain left those slots in place).
    pub fence_failures: u64,
    /// Slots whose list a drain took.
    pub slots_drained: u64,
    /// Elements pushed to the shared overflow list (threads without a slot).
    pub overflow_pushes: u64,
    /// Empty pops that adopted orphan lists (see the [module docs](self#orphaned-slots)).
    pub adoptions: u64,
    /// Orphan reaps run (explicit and periodic).
    pub reaps: u64,
    /// Orphan slots whose list was taken by adoptions and reaps.
    pub orphan_slots: u64,
    /// Elements moved from orphan slots to the overflow list.
    pub orphan_elements: u64,
    /// The part of `fences` issued by adoptions and reaps.
    pub orphan_fences: u64,
}

/// A per-slot LIFO: see the [module docs](self).
///
/// ```
/// use percid::List;
/// use percid::list::Node;
///
/// let free_buffers: List<Vec<u8>> = List::new();
/// free_buffers.push(vec![0; 4096]); // by value: allocates a node
///
/// // Nodes move without allocation: pop one, use it, push it back.
/// let mut node = free_buffers.pop_node().expect("pushed on this thread's slot");
/// node.value[0] = 1;
/// free_buffers.push_node(node);
///
/// // A drain takes everything, from every slot.
/// let all = free_buffers.drain();
/// assert_eq!(all.len(), 1);
/// assert_eq!(all[0][0], 1);
/// assert!(free_buffers.pop().is_none());
/// # let _ = Node::new(vec![1u8]);
/// ```
pub struct List<T> {
    heads: PerCpu<AtomicU64>,
    overflow: Mutex<Vec<Box<Node<T>>>>,
    /// Elements in `overflow` (updated under its lock, read without it).
    overflow_len: AtomicUsize,
    overflow_pushes: AtomicU64,
    draining: remote::DrainLock,
    counters: DrainCounters,
    orphan_policy: OrphanPolicy,
    orphans: OrphanCounters,
    orphan_elements: AtomicU64,
    /// One more than the highest slot pushed to since the last drain.
    max_pushed: AtomicUsize,
    /// The `max_pushed` of the last complete adoption check (0 after a drain): while
    /// `max_pushed` is not above it, adoption waits for the rate limit.
    adopt_checked: AtomicUsize,
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: the list owns its `T`s (boxed nodes); values move between threads through push,
// pop and drain, so `T: Send` suffices for both.
unsafe impl<T: Send> Send for List<T> {}
// SAFETY: as above: shared access only moves `T`s in and out, never hands out `&T`.
unsafe impl<T: Send> Sync for List<T> {}

impl<T> List<T> {
    /// An empty list indexed by the default source; slots created on first use in
    /// [`Pool::global`] (without them every element goes to the shared overflow list).
    pub const fn new() -> List<T> {
        List::from_heads(PerCpu::new_drainable(None, AtomicU64::new(0)))
    }

    /// An empty list indexed by `index`.
    pub const fn with_index(index: Index) -> List<T> {
        List::from_heads(PerCpu::new_drainable(Some(index), AtomicU64::new(0)))
    }

    /// An empty list with its heads in `pool`, created now.
    pub fn in_pool(pool: &Pool, index: Index) -> Result<List<T>, PoolError> {
        Ok(List::from_heads(PerCpu::in_pool_drainable(
            pool,
            index,
            AtomicU64::new(0),
        )?))
    }

    const fn from_heads(heads: PerCpu<AtomicU64>) -> List<T> {
        List {
            heads,
            overflow: Mutex::new(Vec::new()),
            overflow_len: AtomicUsize::new(0),
            overflow_pushes: AtomicU64::new(0),
            draining: remote::DrainLock::new(),
            counters: DrainCounters::new(),
            orphan_policy: OrphanPolicy::DEFAULT,
            orphans: OrphanCounters::new(),
            orphan_elements: AtomicU64::new(0),
            max_pushed: AtomicUsize::new(0),
            adopt_checked: AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }

    /// The same list with another [`OrphanPolicy`] (default [`OrphanPolicy::DEFAULT`]; a
    /// list has no limit, so only adoption and periodic reaping apply).
    pub const fn with_orphan_policy(mut self, policy: OrphanPolicy) -> List<T> {
        self.orphan_policy = policy;
        self
    }

    /// The live bound of this list's slots now (see [`crate::orphans`]); `None` before its
    /// slots exist.
    pub fn live_bound(&self) -> Option<orphans::LiveBound> {
        Some(orphans::live_bound_of(
            self.heads.access()?,
            self.heads.nr_slots(),
        ))
    }

    /// How the list reaches its slots, once they exist.
    pub fn access(&self) -> Option<Access> {
        self.heads.access()
    }

    /// What the drains and the overflow path did so far.
    pub fn stats(&self) -> ListStats {
        let c = &self.counters;
        ListStats {
            drains: c.drains.load(Ordering::Relaxed),
            fences: c.fences.load(Ordering::Relaxed)
                + self.orphans.moves.fences.load(Ordering::Relaxed),
            fences_one_cpu: c.fences_one_cpu.load(Ordering::Relaxed)
                + self.orphans.moves.fences_one_cpu.load(Ordering::Relaxed),
            fence_failures: c.fence_failures.load(Ordering::Relaxed)
                + self.orphans.moves.fence_failures.load(Ordering::Relaxed),
            slots_drained: c.slots_taken.load(Ordering::Relaxed),
            overflow_pushes: self.overflow_pushes.load(Ordering::Relaxed),
            adoptions: self.orphans.adoptions.load(Ordering::Relaxed),
            reaps: self.orphans.reaps.load(Ordering::Relaxed),
            orphan_slots: self.orphans.moves.slots_taken.load(Ordering::Relaxed),
            orphan_elements: self.orphan_elements.load(Ordering::Relaxed),
            orphan_fences: self.orphans.moves.fences.load(Ordering::Relaxed),
        }
    }

    /// Pushes `value` on the calling thread's slot (allocating a node).
    pub fn push(&self, value: T) {
        self.push_node(Node::new(value))
    }

    /// Pops the most recent element of the calling thread's slot (or of the overflow list
    /// when the slot is empty), freeing its node; `None` if both are empty.
    pub fn pop(&self) -> Option<T> {
        self.pop_node().map(Node::into_value)
    }

    /// A [`ListHandle`] for tight loops: the same node operations, with the slot layout kept
    /// in registers (see [`per_cpu::Handle`](crate::per_cpu::Handle)).
    #[inline]
    pub fn handle(&self) -> ListHandle<'_, T> {
        ListHandle {
            list: self,
            heads: self.heads.handle(),
        }
    }

    /// Pushes a node on the calling thread's slot: one critical section, no allocation.
    #[inline(always)]
    pub fn push_node(&self, node: Box<Node<T>>) {
        self.push_node_in(&self.heads, node)
    }

    #[inline(always)]
    fn push_node_in<'a>(&'a self, heads: impl RunSlot<'a, AtomicU64>, node: Box<Node<T>>) {
        let node = Box::into_raw(node);
        let pushed = heads.run_in(move |current, head| {
            let h = head.load(Ordering::Relaxed);
            if h & TAG != 0 {
                drained_slot(); // a drain holds the slot for a moment
                return None;
            }
            // SAFETY: `node` is ours until the commit publishes it.
            unsafe { (*node).next.store(h as *mut u8, Ordering::Relaxed) };
            current
                .compare_and_store(head, h, node as u64)
                .is_committed()
                .then(|| current.index())
        });
        match pushed {
            // After the commit (a drain that reset the hint before this took the node or
            // sees the hint raised again).
            Some(index) if index >= self.max_pushed.load(Ordering::Relaxed) => {
                self.raise_max_pushed(index)
            }
            Some(_) => {}
            // SAFETY: `node` came from Box::into_raw above and was never published.
            None => self.push_overflow(unsafe { Box::from_raw(node) }),
        }
    }

    #[cold]
    #[inline(never)]
    fn raise_max_pushed(&self, index: usize) {
        self.max_pushed.fetch_max(index + 1, Ordering::SeqCst);
    }

    /// The shared overflow list (threads without a slot): out of line.
    #[cold]
    #[inline(never)]
    fn push_overflow(&self, node: Box<Node<T>>) {
        let mut overflow = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
        overflow.push(node);
        self.overflow_len.store(overflow.len(), Ordering::Release);
        self.overflow_pushes.fetch_add(1, Ordering::Relaxed);
        drop(overflow);
        if self.orphan_policy.periodic_reap_due(&self.orphans.calls) {
            self.reap_orphans();
        }
    }

    /// Pops the most recent node of the calling thread's slot (or of the overflow list when
    /// the slot is empty): one critical section, no deallocation. `None` if both are empty.
    #[inline(always)]
    pub fn pop_node(&self) -> Option<Box<Node<T>>> {
        self.pop_node_in(&self.heads)
    }

    #[inline(always)]
    fn pop_node_in<'a>(&'a self, heads: impl RunSlot<'a, AtomicU64>) -> Option<Box<Node<T>>> {
        let popped = heads.run_in(|current, head| {
            // SAFETY: `head` is an AtomicU64 holding a pointer-sized value; AtomicPtr has the
            // same size and alignment on 64-bit targets. Every node in the list is a live
            // `Node<T>` whose `next` is at offset 0 (repr(C)), freed only after it is popped
            // or drained.
            let (outcome, node) = unsafe {
                let head = AtomicPtr::from_ptr(head.as_ptr() as *mut *mut u8);
                current.list_pop(head, TAG as usize, 0)
            };
            match outcome {
                Outcome::Committed => Some(node),
                Outcome::CompareFailed if (node as u64) & TAG != 0 => {
                    drained_slot(); // being drained
                    None
                }
                Outcome::CompareFailed => Some(std::ptr::null_mut()), // empty
                Outcome::Aborted => None,
            }
        });
        match popped {
            // SAFETY: the pop committed: the node left the list and is ours.
            Some(node) if !node.is_null() => Some(unsafe { Box::from_raw(node as *mut Node<T>) }),
            Some(_) => {
                let policy = self.orphan_policy;
                let look = policy.adopts() && self.adoption_due();
                if look
                    || policy.reap_interval() != 0
                    || self.overflow_len.load(Ordering::Acquire) != 0
                {
                    self.pop_empty_slot(look)
                } else {
                    None // empty, nothing to look for: a free list's common case, no call
                }
            }
            None => self.pop_overflow(),
        }
    }

    /// The calling thread's slot is empty: orphans (per the policy; `look`: the adoption
    /// hint says look), then the overflow list.
    #[cold]
    #[inline(never)]
    fn pop_empty_slot(&self, look: bool) -> Option<Box<Node<T>>> {
        let policy = self.orphan_policy;
        if policy.periodic_reap_due(&self.orphans.calls) {
            self.reap_orphans();
        } else if look
            && let Some(r) = self.take_orphan_lists(false)
            && r.moved > 0
        {
            self.orphans.adoptions.fetch_add(1, Ordering::Relaxed);
        }
        self.pop_overflow()
    }

    /// Whether this empty pop should look for orphans (module docs, "Orphaned slots"): a
    /// slot was pushed to above the last complete check, or this thread's rate limit for
    /// this list ran out. Loads two read-mostly words and one thread-local entry.
    #[inline(always)]
    fn adoption_due(&self) -> bool {
        let hi = self.max_pushed.load(Ordering::Relaxed);
        if hi == 0 {
            return false; // nothing pushed to a slot since the last drain
        }
        let key = self as *const Self as usize;
        match self.adopt_checked.load(Ordering::Relaxed) {
            checked if hi > checked => {
                adopt_clock::restart(key);
                true
            }
            NO_ORPHANS => false,
            _ => adopt_clock::tick(key),
        }
    }

    /// Moves the lists of every orphan slot (see the [module docs](self#orphaned-slots)) to
    /// the shared overflow list, where any thread's `pop` finds them; returns what it moved.
    pub fn reap_orphans(&self) -> Reaped<usize> {
        self.orphans.reaps.fetch_add(1, Ordering::Relaxed);
        self.take_orphan_lists(true).unwrap_or_default()
    }

    /// Takes the orphan slots' lists onto the overflow list. `None` when skipped: nothing was
    /// pushed to a slot, no slots yet, or (`wait == false`) a drain or move is running.
    fn take_orphan_lists(&self, wait: bool) -> Option<Reaped<usize>> {
        let hi = self.max_pushed.load(Ordering::Acquire);
        if hi == 0 {
            return None;
        }
        let access = self.heads.access()?;
        let nr_slots = self.heads.nr_slots();
        let serialised = if wait {
            self.draining.lock()
        } else {
            self.draining.try_lock()?
        };
        let mut taken = Vec::new();
        // A refused fence leaves those slots in place (their elements stay poppable).
        let slots = match orphans::take_orphans(
            &serialised,
            access,
            nr_slots,
            hi,
            |s| self.heads.get(s).expect("slot below nr_slots"),
            TAG,
            &self.orphans,
            |_, p| {
                // SAFETY: the slot's list is exclusively ours now (take_orphans), and every
                // node of a list is a live boxed Node<T>.
                unsafe { unlink(p, &mut taken) }
            },
        ) {
            Ok(n) => {
                // Complete: every orphan below `hi` was taken (under the drain lock, which a
                // drain's reset of the hints holds too).
                // Under cpu_id no slot is ever an orphan (crate::orphans): never look again
                // until a drain resets the hints.
                let mark = match access {
                    Access::Rseq(IndexMode::CpuId) => NO_ORPHANS,
                    _ => hi,
                };
                self.adopt_checked.fetch_max(mark, Ordering::Relaxed);
                n
            }
            Err(_) => 0,
        };
        let moved = taken.len();
        if moved > 0 {
            let mut overflow = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
            overflow.append(&mut taken);
            self.overflow_len.store(overflow.len(), Ordering::Release);
            self.orphan_elements
                .fetch_add(moved as u64, Ordering::Relaxed);
        }
        Some(Reaped { slots, moved })
    }

    #[cold]
    fn pop_overflow(&self) -> Option<Box<Node<T>>> {
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut overflow = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
        let node = overflow.pop();
        self.overflow_len.store(overflow.len(), Ordering::Release);
        node
    }

    /// Takes every element of every slot (and of the overflow list), most recent first
    /// within each slot, slots in order.
    pub fn drain(&self) -> Vec<T> {
        self.drain_nodes()
            .into_iter()
            .map(Node::into_value)
            .collect()
    }

    /// [`drain`](Self::drain), keeping the nodes.
    pub fn drain_nodes(&self) -> Vec<Box<Node<T>>> {
        let serialised = self.draining.lock();
        let mut out = Vec::new();
        if let Some(access) = self.heads.access() {
            self.max_pushed.store(0, Ordering::SeqCst);
            self.adopt_checked.store(0, Ordering::Relaxed);
            // A refused fence leaves those slots in place (their elements stay poppable).
            if remote::take_slots(
                &serialised,
                access,
                0..self.heads.nr_slots(),
                |s| self.heads.get(s).expect("slot below nr_slots"),
                TAG,
                &self.counters,
                |_, p| {
                    // SAFETY: the slot's list is exclusively ours now (take_slots), and every
                    // node of a list is a live boxed Node<T>.
                    unsafe { unlink(p, &mut out) }
                },
            )
            .is_err()
            {
                self.max_pushed
                    .fetch_max(self.heads.nr_slots(), Ordering::SeqCst);
            }
        }
        let mut overflow = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
        out.append(&mut overflow);
        self.overflow_len.store(0, Ordering::Release);
        out
    }
}

/// A [`List`]'s node operations for tight loops ([`List::handle`]): `Copy`, its fields stay
/// in registers, where the `List` methods reload the list's layout after every critical
/// section.
pub struct ListHandle<'a, T> {
    list: &'a List<T>,
    heads: crate::per_cpu::Handle<'a, AtomicU64>,
}

impl<T> Clone for ListHandle<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ListHandle<'_, T> {}

impl<T> fmt::Debug for ListHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListHandle").finish_non_exhaustive()
    }
}

impl<T> ListHandle<'_, T> {
    /// [`List::push_node`].
    #[inline(always)]
    pub fn push_node(self, node: Box<Node<T>>) {
        self.list.push_node_in(self.heads, node)
    }

    /// [`List::pop_node`].
    #[inline(always)]
    pub fn pop_node(self) -> Option<Box<Node<T>>> {
        self.list.pop_node_in(self.heads)
    }
}

/// The rate limit of adoption checks on empty pops whose list has no new high slot (module
/// docs, "Orphaned slots"): per thread, a small direct-mapped table of `(list, pops left)`.
/// A list whose entry another list took checks at once and takes the entry back, so every
/// list is checked at least once in [`ADOPT_EVERY`](adopt_clock::ADOPT_EVERY) consecutive
/// empty pops of one thread: an orphan's elements are adopted after at most that many.
mod adopt_clock {
    use std::cell::Cell;

    /// Empty pops of one thread on one list per rate-limited adoption check.
    pub(super) const ADOPT_EVERY: u32 = 256;
    const ENTRIES: usize = 8;

    struct Clock {
        list: [Cell<usize>; ENTRIES],
        left: [Cell<u32>; ENTRIES],
    }

    thread_local! {
        static CLOCK: Clock = const {
            Clock {
                list: [const { Cell::new(0) }; ENTRIES],
                left: [const { Cell::new(0) }; ENTRIES],
            }
        };
    }

    fn entry(key: usize) -> usize {
        (key >> 6 ^ key >> 12) % ENTRIES
    }

    /// A check of list `key` ran: the next one is due in [`ADOPT_EVERY`] empty pops.
    pub(super) fn restart(key: usize) {
        CLOCK.with(|c| {
            let e = entry(key);
            c.list[e].set(key);
            c.left[e].set(ADOPT_EVERY);
        })
    }

    /// One empty pop of list `key`: whether its rate-limited check is due (and then restart).
    #[inline(always)]
    pub(super) fn tick(key: usize) -> bool {
        CLOCK.with(|c| {
            let e = entry(key);
            let left = c.left[e].get();
            if c.list[e].get() == key && left > 1 {
                c.left[e].set(left - 1);
                return false;
            }
            c.list[e].set(key);
            c.left[e].set(ADOPT_EVERY);
            true
        })
    }
}

/// Appends the nodes of the list starting at `p` to `out`, most recent first.
///
/// # Safety
/// The list is exclusively the caller's (taken from its slot), and every node in it is a live
/// boxed `Node<T>`.
unsafe fn unlink<T>(mut p: u64, out: &mut Vec<Box<Node<T>>>) {
    while p != 0 {
        // SAFETY: per the contract, `p` is a live boxed Node<T> that only we reach.
        let node = unsafe { Box::from_raw(p as *mut Node<T>) };
        p = node.next.load(Ordering::Relaxed) as u64;
        out.push(node);
    }
}

/// The slot is being drained: let the drainer finish (out of line: it is rare).
#[cold]
#[inline(never)]
fn drained_slot() {
    std::thread::yield_now();
}

impl<T> Default for List<T> {
    fn default() -> List<T> {
        List::new()
    }
}

impl<T> Drop for List<T> {
    fn drop(&mut self) {
        // `&mut self`: no operation can run; free every node. Empty slots are only read, so
        // untouched slots stay unpopulated.
        for head in self.heads.iter() {
            if head.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut p = head.swap(0, Ordering::Relaxed) & !TAG;
            while p != 0 {
                // SAFETY: exclusive access; every node is a live boxed Node<T>.
                let node = unsafe { Box::from_raw(p as *mut Node<T>) };
                p = node.next.load(Ordering::Relaxed) as u64;
            }
        }
    }
}

impl<T> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonempty = self
            .heads
            .iter()
            .filter(|h| h.load(Ordering::Relaxed) & !TAG != 0)
            .count();
        f.debug_struct("List")
            .field("index", &self.heads.index())
            .field("access", &self.access())
            .field("nonempty_slots", &nonempty)
            .field("overflow_len", &self.overflow_len.load(Ordering::Relaxed))
            .field("orphan_policy", &self.orphan_policy)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolConfig;

    /// Elements planted in slot 40 of a 64-slot pool (an orphan here) are adopted by a pop
    /// that finds its own slot empty, through the rseq path.
    #[test]
    fn an_empty_pop_adopts_orphan_lists_through_rseq() {
        let pool = Pool::new(PoolConfig::new().slots(64)).unwrap();
        for index in [Index::CpuId, Index::MmCid] {
            let list: List<u32> = List::in_pool(&pool, index).unwrap();
            if !list.access().is_some_and(|a| a.is_rseq()) || list.live_bound().unwrap().bound > 40
            {
                continue;
            }
            // Plant a two-node list in slot 40, as a push there would have.
            let second = Box::into_raw(Node::new(2u32));
            let first = Node::new(1u32);
            first.next.store(second.cast(), Ordering::Relaxed);
            let first = Box::into_raw(first);
            list.heads
                .get(40)
                .unwrap()
                .store(first as u64, Ordering::Relaxed);
            list.max_pushed.store(41, Ordering::SeqCst);
            let mut got = vec![list.pop().unwrap(), list.pop().unwrap()];
            got.sort();
            assert_eq!(got, [1, 2]);
            assert!(list.pop().is_none());
            let st = list.stats();
            assert_eq!(
                (st.adoptions, st.orphan_elements, st.orphan_slots),
                (1, 2, 1)
            );
            assert_eq!((st.orphan_fences, st.drains), (1, 0));
        }
    }

    /// The hint never strands an orphan: slot 40 was examined (empty) by a complete look, so
    /// `max_pushed` is not above `adopt_checked`; then elements land there (as a push from a
    /// thread whose CID was 40 would leave them) and the slot is an orphan. Empty pops skip
    /// the look until the rate limit runs out, and the one where it does adopts them.
    #[test]
    fn an_orphan_filled_after_a_complete_look_is_adopted_once_the_rate_limit_allows() {
        let pool = Pool::new(PoolConfig::new().slots(64)).unwrap();
        // Under leases (no rseq here) slot 40 is beyond the allocator's CIDs: the hint's
        // logic is the same for every access, this runs it where slot 40 is an orphan.
        let mut ran = 0;
        for index in [Index::MmCid] {
            let list: List<u32> = List::in_pool(&pool, index).unwrap();
            if !list.access().is_some_and(|a| a.is_rseq()) || list.live_bound().unwrap().bound > 40
            {
                continue;
            }
            ran += 1;
            list.max_pushed.store(41, Ordering::SeqCst);
            assert!(list.pop().is_none()); // the complete look: nothing anywhere
            assert_eq!(list.adopt_checked.load(Ordering::Relaxed), 41);
            list.heads
                .get(40)
                .unwrap()
                .store(Box::into_raw(Node::new(7u32)) as u64, Ordering::Relaxed);
            let mut pops = 1;
            let got = loop {
                if let Some(v) = list.pop() {
                    break v;
                }
                pops += 1;
                assert!(pops <= adopt_clock::ADOPT_EVERY, "not adopted: {pops} pops");
            };
            assert_eq!(got, 7);
            assert_eq!(
                pops,
                adopt_clock::ADOPT_EVERY,
                "rate-limited to one look in 64"
            );
            let st = list.stats();
            assert_eq!((st.adoptions, st.orphan_elements), (1, 1), "{index}");
            assert!(list.pop().is_none());
        }
        eprintln!("ran under {ran} index source(s)");
    }
}
