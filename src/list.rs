//! [`List<T>`]: a per-slot LIFO.
//!
//! # Algorithm
//!
//! Each slot holds the head pointer of a singly linked list of heap nodes (`next` first,
//! then the value). On the calling thread's slot:
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
//! * `drain`: takes every slot's list, from any thread (a lease on each
//!   CID, or, under rseq, a tag bit in the head plus
//!   `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`, needed because under mm_cid there is no
//!   CID-to-CPU map to target one CPU). The tag bit is bit 0: nodes are at least 8-byte
//!   aligned.
//!
//! A thread without a slot (index beyond the slots, or no rseq registration) uses a shared
//! overflow list behind a mutex; `pop` on the calling thread's slot falls back to it too
//! when the slot is empty, and `drain` empties it as well.
//!
//! `pop` takes from the calling thread's *current* slot only: an element pushed on another
//! CPU (or CID) is not seen until the thread runs there, or a `drain`.

use crate::index::{Index, Resolved};
use crate::ops::Outcome;
use crate::per_cpu::PerCpu;
use crate::pool::{Pool, PoolError};
use crate::remote;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

const TAG: u64 = 1;

#[repr(C)]
struct Node<T> {
    next: AtomicPtr<u8>,
    value: T,
}

/// A per-slot LIFO: see the [module docs](self).
pub struct List<T> {
    heads: PerCpu<AtomicU64>,
    overflow: Mutex<Vec<T>>,
    resolved: Resolved,
    draining: Mutex<()>,
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: the list owns its `T`s (boxed nodes); values move between threads through push,
// pop and drain, so `T: Send` suffices for both.
unsafe impl<T: Send> Send for List<T> {}
// SAFETY: as above: shared access only moves `T`s in and out, never hands out `&T`.
unsafe impl<T: Send> Sync for List<T> {}

impl<T> List<T> {
    /// An empty list indexed by the default source.
    pub fn new() -> Result<List<T>, PoolError> {
        List::with_index(Index::default())
    }

    /// An empty list indexed by `index`.
    pub fn with_index(index: Index) -> Result<List<T>, PoolError> {
        List::in_pool(index, Pool::global())
    }

    /// An empty list with its heads in `pool`.
    pub fn in_pool(index: Index, pool: &Pool) -> Result<List<T>, PoolError> {
        Ok(List {
            heads: PerCpu::new_in(pool, AtomicU64::new(0))?,
            overflow: Mutex::new(Vec::new()),
            resolved: remote::resolve_drainable(index),
            draining: Mutex::new(()),
            _owns: PhantomData,
        })
    }

    /// How the list accesses its slots.
    pub fn resolved(&self) -> Resolved {
        self.resolved
    }

    /// Pushes `value` on the calling thread's slot.
    pub fn push(&self, value: T) {
        let node = Box::into_raw(Box::new(Node {
            next: AtomicPtr::new(std::ptr::null_mut()),
            value,
        }));
        let pushed = self.heads.run(self.resolved, |current, head| {
            let h = head.load(Ordering::Relaxed);
            if h & TAG != 0 {
                std::thread::yield_now(); // a drain holds the slot for a moment
                return None;
            }
            // SAFETY: `node` is ours until the commit publishes it.
            unsafe { (*node).next.store(h as *mut u8, Ordering::Relaxed) };
            (current.compare_and_store(head, h, node as u64) == Outcome::Committed).then_some(())
        });
        if pushed.is_none() {
            // SAFETY: `node` came from Box::into_raw above and was never published.
            let node = unsafe { Box::from_raw(node) };
            self.overflow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(node.value);
        }
    }

    /// Pops the most recent element of the calling thread's slot (or of the overflow list
    /// when the slot is empty); `None` if both are empty.
    pub fn pop(&self) -> Option<T> {
        let popped = self.heads.run(self.resolved, |current, head| {
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
                    std::thread::yield_now(); // being drained
                    None
                }
                Outcome::CompareFailed => Some(std::ptr::null_mut()), // empty
                Outcome::Aborted => None,
            }
        });
        if let Some(node) = popped.filter(|n| !n.is_null()) {
            // SAFETY: the pop committed: the node left the list and is ours.
            let node = unsafe { Box::from_raw(node as *mut Node<T>) };
            return Some(node.value);
        }
        self.overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
    }

    /// Takes every element of every slot (and of the overflow list), most recent first
    /// within each slot, slots in order.
    pub fn drain(&self) -> Vec<T> {
        let _serialised = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        remote::take_slots(
            self.resolved,
            self.heads.nr_slots(),
            |s| self.heads.get(s).expect("slot below nr_slots"),
            TAG,
            |_, mut p| {
                while p != 0 {
                    // SAFETY: the slot's list is exclusively ours now (take_slots); every node
                    // is a live boxed Node<T>.
                    let node = unsafe { Box::from_raw(p as *mut Node<T>) };
                    p = node.next.load(Ordering::Relaxed) as u64;
                    out.push(node.value);
                }
            },
        );
        out.append(&mut self.overflow.lock().unwrap_or_else(|e| e.into_inner()));
        out
    }
}

impl<T> Drop for List<T> {
    fn drop(&mut self) {
        // `&mut self`: no operation can run; free every node. Empty slots are only read, so
        // untouched slots stay unpopulated.
        for s in 0..self.heads.nr_slots() {
            let Some(head) = self.heads.get(s) else { break };
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
        f.debug_struct("List")
            .field("resolved", &self.resolved)
            .finish_non_exhaustive()
    }
}
