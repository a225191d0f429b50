//! Stress tests of the per-slot operations, in the style of the kernel's rseq `param_test`:
//! 6 x nproc threads, each doing many operations with injected yields, short sleeps and
//! signals, in cpu_id mode and in mm_cid mode; every test runs again in child processes
//! with glibc's registration disabled (`GLIBC_TUNABLES=glibc.pthread.rseq=0`: percid
//! registers) and with the fallback forced (`PERCID_FORCE_FALLBACK=1`).

mod common;

use common::{inject, matrix, ops_per_thread, run_with_signals, stress_threads, variant};
use percid::ops::{self, Outcome};
use percid::rseq::IndexMode;
use percid::rseq::registration::{FallbackReason, Owner};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering, fence};

const MODES: [IndexMode; 2] = [IndexMode::CpuId, IndexMode::MmCid];

fn slots() -> usize {
    percid::topology::possible_cpu_count()
}

/// The index for `mode` on this thread, checked against the slot count.
fn index(mode: IndexMode, n: usize) -> usize {
    let i = ops::current_index(mode).expect("thread has an index") as usize;
    assert!(i < n, "index {i} beyond {n} slots");
    i
}

/// The mode each variant must be in.
fn check_variant_status() {
    let st = percid::status();
    if cfg!(feature = "force-fallback") {
        assert_eq!(st.owner, Owner::None(FallbackReason::ForcedByFeature));
        assert!(!st.rseq_in_use);
        return;
    }
    match variant().as_str() {
        "forced-fallback" => {
            assert_eq!(st.owner, Owner::None(FallbackReason::ForcedByEnv));
            assert!(!st.rseq_in_use);
            assert!(!ops::uses_rseq(IndexMode::CpuId));
        }
        "own-registration" if st.kernel_feature_size > 0 => {
            assert_eq!(st.glibc_rseq_size.unwrap_or(0), 0);
            assert_eq!(st.owner, Owner::Percid);
        }
        _ => {}
    }
}

#[test]
fn stress_add() {
    matrix("stress_add", || {
        check_variant_status();
        let n = slots();
        for mode in MODES {
            let cells: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
            let (threads, reps) = (stress_threads(), ops_per_thread(20_000));
            let signals = run_with_signals(threads, |_| {
                for i in 0..reps {
                    loop {
                        let s = index(mode, n);
                        // SAFETY: `s` from current_index on this thread; the cell is an AtomicU64
                        // only touched by these operations.
                        if unsafe { ops::add(mode, s as u32, cells[s].as_ptr(), 1) }
                            == Outcome::Committed
                        {
                            break;
                        }
                    }
                    inject(i);
                }
            });
            let total: u64 = cells.iter().map(|c| c.load(Ordering::Relaxed)).sum();
            assert_eq!(
                total,
                (threads * reps) as u64,
                "{mode:?}: lost increments ({signals} signals)"
            );
        }
    });
}

/// A per-slot spinlock taken with compare-and-store guards a plain (non-atomic) counter.
#[test]
fn stress_spinlock() {
    struct Slot {
        lock: AtomicU64,
        count: UnsafeCell<u64>,
    }
    // SAFETY: `count` is only accessed by the holder of `lock`.
    unsafe impl Sync for Slot {}

    matrix("stress_spinlock", || {
        let n = slots();
        for mode in MODES {
            let table: Vec<Slot> = (0..n)
                .map(|_| Slot {
                    lock: AtomicU64::new(0),
                    count: UnsafeCell::new(0),
                })
                .collect();
            let (threads, reps) = (stress_threads(), ops_per_thread(3_000));
            run_with_signals(threads, |_| {
                for i in 0..reps {
                    let s = loop {
                        let s = index(mode, n);
                        // SAFETY: as in stress_add.
                        if unsafe {
                            ops::compare_and_store(mode, s as u32, table[s].lock.as_ptr(), 0, 1)
                        } == Outcome::Committed
                        {
                            break s;
                        }
                    };
                    fence(Ordering::Acquire);
                    // SAFETY: we hold slot `s`'s lock.
                    unsafe { *table[s].count.get() += 1 };
                    if i % 256 == 0 {
                        std::thread::yield_now(); // hold the lock across a yield now and then
                    }
                    table[s].lock.store(0, Ordering::Release);
                    inject(i);
                }
            });
            let total: u64 = table.iter().map(|s| unsafe { *s.count.get() }).sum();
            assert_eq!(
                total,
                (threads * reps) as u64,
                "{mode:?}: the spinlock let increments race"
            );
        }
    });
}

#[repr(C)]
struct Node {
    next: AtomicPtr<u8>,
    id: u64,
}

fn push(mode: IndexMode, heads: &[AtomicPtr<u8>], node: *mut Node) {
    let n = heads.len();
    loop {
        let s = index(mode, n);
        let head = heads[s].load(Ordering::Relaxed);
        // SAFETY: `node` is owned by this thread until the commit publishes it.
        unsafe { (*node).next.store(head, Ordering::Relaxed) };
        // SAFETY: as in stress_add; the head is an AtomicPtr used only by these operations.
        let r = unsafe {
            ops::compare_and_store(
                mode,
                s as u32,
                heads[s].as_ptr() as *mut u64,
                head as u64,
                node as u64,
            )
        };
        if r == Outcome::Committed {
            return;
        }
    }
}

/// Pops from the calling thread's slot; `None` if that list is empty.
fn pop(mode: IndexMode, heads: &[AtomicPtr<u8>]) -> Option<*mut Node> {
    loop {
        let s = index(mode, heads.len());
        // SAFETY: as in stress_add; every node in the lists is a live `Node` whose first field
        // is the `next` pointer.
        let (r, node) = unsafe { ops::list_pop(mode, s as u32, heads[s].as_ptr(), 0, 0) };
        match r {
            Outcome::Committed => return Some(node as *mut Node),
            Outcome::CompareFailed => return None,
            Outcome::Aborted => continue,
        }
    }
}

#[test]
fn stress_list() {
    matrix("stress_list", || {
        let n = slots();
        for mode in MODES {
            let heads: Vec<AtomicPtr<u8>> = (0..n)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect();
            let nodes = 4096u64;
            let mut storage: Vec<Node> = (0..nodes)
                .map(|id| Node {
                    next: AtomicPtr::new(std::ptr::null_mut()),
                    id,
                })
                .collect();
            let base = storage.as_mut_ptr() as usize;
            for k in 0..nodes as usize {
                push(mode, &heads, (base as *mut Node).wrapping_add(k));
            }
            let (threads, reps) = (stress_threads(), ops_per_thread(20_000));
            run_with_signals(threads, |_| {
                for i in 0..reps {
                    if let Some(node) = pop(mode, &heads) {
                        inject(i); // hold the node for a while, maybe move to another CPU
                        push(mode, &heads, node);
                    }
                }
            });
            // Every node exactly once across all lists.
            let mut seen = vec![false; nodes as usize];
            for h in &heads {
                let mut p = h.load(Ordering::Acquire) as *mut Node;
                while !p.is_null() {
                    // SAFETY: nodes live in `storage`, and no writer runs any more.
                    let node = unsafe { &*p };
                    assert!(
                        !std::mem::replace(&mut seen[node.id as usize], true),
                        "{mode:?}: node {} twice",
                        node.id
                    );
                    p = node.next.load(Ordering::Relaxed) as *mut Node;
                }
            }
            assert!(
                seen.iter().all(|&s| s),
                "{mode:?}: lost {} nodes",
                seen.iter().filter(|s| !**s).count()
            );
            drop(storage);
        }
    });
}

/// Per-slot array buffers: push with two-store (item, then offset) or memcpy, pop with
/// memcpy-then-store (copy the top item out inside the critical section).
struct Buffers {
    offsets: Vec<AtomicU64>,
    items: Vec<Vec<[AtomicU64; 2]>>,
}

impl Buffers {
    fn new(n: usize, cap: usize) -> Self {
        Buffers {
            offsets: (0..n).map(|_| AtomicU64::new(0)).collect(),
            items: (0..n)
                .map(|_| {
                    (0..cap)
                        .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                        .collect()
                })
                .collect(),
        }
    }

    fn push(&self, mode: IndexMode, item: [u64; 2], memcpy: bool) {
        let n = self.offsets.len();
        loop {
            let s = index(mode, n);
            let off = self.offsets[s].load(Ordering::Relaxed);
            let cell = &self.items[s][off as usize];
            // SAFETY: as in stress_add; `off` < capacity because the buffers can hold every
            // item; cell memory is only written by operations on slot `s`.
            let r = unsafe {
                if memcpy {
                    ops::memcpy_then_store(
                        mode,
                        s as u32,
                        self.offsets[s].as_ptr(),
                        off,
                        cell.as_ptr() as *mut u8,
                        item.as_ptr() as *const u8,
                        16,
                        off + 1,
                    )
                    .expect("16 bytes fit")
                } else {
                    // Two-store publishes one word (the id) and the offset; word 1 is not
                    // written, so only the memcpy variant checks it.
                    ops::two_store(
                        mode,
                        s as u32,
                        self.offsets[s].as_ptr(),
                        off,
                        cell[0].as_ptr(),
                        item[0],
                        off + 1,
                        true,
                    )
                }
            };
            if r == Outcome::Committed {
                return;
            }
        }
    }

    fn pop(&self, mode: IndexMode) -> Option<[u64; 2]> {
        let n = self.offsets.len();
        loop {
            let s = index(mode, n);
            let off = self.offsets[s].load(Ordering::Relaxed);
            if off == 0 {
                return None;
            }
            let mut out = [0u64; 2];
            let cell = &self.items[s][off as usize - 1];
            // SAFETY: as in push; `out` is a local buffer of 16 bytes.
            let r = unsafe {
                ops::memcpy_then_store(
                    mode,
                    s as u32,
                    self.offsets[s].as_ptr(),
                    off,
                    out.as_mut_ptr() as *mut u8,
                    cell.as_ptr() as *const u8,
                    16,
                    off - 1,
                )
                .expect("16 bytes fit")
            };
            match r {
                Outcome::Committed => return Some(out),
                Outcome::CompareFailed | Outcome::Aborted => continue,
            }
        }
    }
}

fn buffer_test(memcpy: bool) {
    let n = slots();
    for mode in MODES {
        let items = 2048u64;
        let buffers = Buffers::new(n, items as usize);
        for id in 0..items {
            buffers.push(mode, [id, !id], memcpy);
        }
        let (threads, reps) = (stress_threads(), ops_per_thread(20_000));
        run_with_signals(threads, |_| {
            for i in 0..reps {
                if let Some(item) = buffers.pop(mode) {
                    if memcpy {
                        assert_eq!(item[1], !item[0], "{mode:?}: torn memcpy item");
                    }
                    inject(i);
                    buffers.push(mode, [item[0], !item[0]], memcpy);
                }
            }
        });
        let mut seen = vec![false; items as usize];
        for s in 0..n {
            let off = buffers.offsets[s].load(Ordering::Acquire) as usize;
            for cell in &buffers.items[s][..off] {
                let id = cell[0].load(Ordering::Relaxed) as usize;
                assert!(id < items as usize, "{mode:?}: garbage item {id}");
                assert!(
                    !std::mem::replace(&mut seen[id], true),
                    "{mode:?}: item {id} twice"
                );
            }
        }
        assert!(
            seen.iter().all(|&s| s),
            "{mode:?}: lost {} items",
            seen.iter().filter(|s| !**s).count()
        );
    }
}

#[test]
fn stress_two_store_buffer() {
    matrix("stress_two_store_buffer", || buffer_test(false));
}

#[test]
fn stress_memcpy_buffer() {
    matrix("stress_memcpy_buffer", || buffer_test(true));
}
