//! Soundness and robustness: each test here reproduces a problem found in review (issue 10)
//! and fails without its fix. Tests that depend on the registration run again in child
//! processes with percid's own registration and with the fallback forced.

mod common;

use common::{matrix, variant};
use percid::ops::{self, Outcome};
use percid::per_cpu::PerCpu;
use percid::rseq::IndexMode;
use percid::{Counter, Index, Limit, List};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

/// Thread-local destructors that run after everything else on an exiting thread (registered
/// before the thread first used percid) still run protected critical sections: the
/// registration is never undone before the thread is gone. With percid's own registration,
/// the former unregistering guard made the free functions fault (exit 139) and sent every
/// structure to its overflow path from such destructors.
#[test]
fn late_thread_exit_destructors_keep_their_registration() {
    struct OnExit {
        counter: &'static Counter,
        cells: &'static [[AtomicU64; 16]],
        barrier: Arc<Barrier>,
    }
    impl Drop for OnExit {
        fn drop(&mut self) {
            // All threads exit together: their destructors race on the slots.
            self.barrier.wait();
            for _ in 0..N {
                self.counter.add(1);
                loop {
                    let Some(s) = ops::current_index(IndexMode::CpuId) else {
                        panic!("the thread lost its registration in a TLS destructor");
                    };
                    let cell = self.cells[s as usize][0].as_ptr();
                    // SAFETY: `s` from current_index on this thread; the cell is an AtomicU64
                    // only touched by ops::add in cpu_id mode.
                    if unsafe { ops::add(IndexMode::CpuId, s, cell, 1) }.is_committed() {
                        break;
                    }
                }
            }
        }
    }
    thread_local! {
        static ON_EXIT: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
    }
    const THREADS: usize = 4;
    const N: u64 = 20_000;
    matrix(
        "late_thread_exit_destructors_keep_their_registration",
        || {
            let counter: &'static Counter = Box::leak(Box::new(Counter::with_index(Index::MmCid)));
            let n = percid::topology::possible_cpu_count();
            let cells: &'static [[AtomicU64; 16]] =
                Box::leak((0..n).map(|_| Default::default()).collect());
            let barrier = Arc::new(Barrier::new(THREADS));
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        // Registered first, so destroyed last: after any guard percid's first use
                        // on this thread would register.
                        ON_EXIT.with(|e| {
                            *e.borrow_mut() = Some(OnExit {
                                counter,
                                cells,
                                barrier,
                            })
                        });
                        counter.add(1);
                        let _ = ops::current_index(IndexMode::CpuId);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let expected = THREADS as u64 * (N + 1);
            assert_eq!(counter.sum(), expected, "lost updates");
            let sum: u64 = cells.iter().map(|c| c[0].load(Ordering::Relaxed)).sum();
            assert_eq!(sum, THREADS as u64 * N, "lost updates through ops::add");
            if counter.access().is_some_and(|a| a.is_rseq()) {
                assert_eq!(
                    counter.overflowed(),
                    0,
                    "{}: a registered thread was sent to the overflow path",
                    variant()
                );
            }
        },
    );
}

/// A `Current` operates only on its own slot: safe code cannot run one structure's critical
/// section (or lease) on another structure's memory, nor on another slot.
#[test]
fn a_current_refuses_memory_outside_its_slot() {
    let a = PerCpu::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let b = PerCpu::new(AtomicU64::new(0));
    assert!(b.nr_slots() > 0);
    let foreign = AtomicU64::new(0);
    // Inside the slot: fine, any field (an abort by preemption retries).
    assert_eq!(
        a.run(|cur, slot| cur.add(&slot[1], 1).is_committed().then_some(())),
        Some(())
    );
    let cases: [(&str, &dyn Fn() -> Option<Outcome>); 3] = [
        ("another structure's slot", &|| {
            a.run(|cur, _| Some(cur.add(b.get(0).unwrap(), 1)))
        }),
        ("a plain atomic", &|| {
            a.run(|cur, _| Some(cur.add(&foreign, 1)))
        }),
        ("another slot of the same structure", &|| {
            a.run(|cur, _| {
                let other = a.get(cur.index() ^ 1)?;
                Some(cur.compare_and_store(&other[0], 0, 1))
            })
        }),
    ];
    for (what, case) in cases {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case));
        assert!(r.is_err(), "{what}: the operation was not refused");
    }
    assert_eq!(foreign.load(Ordering::Relaxed), 0);
    assert_eq!(b.get(0).unwrap().load(Ordering::Relaxed), 0);
}

/// `Limit::uncharge` with a huge value: no wrapping sum, and the over-uncharge saturates the
/// usage at 0 and discards the stock it can no longer back (before, the stock shrank from 7
/// to 4 and a drain reported usage 6; phantom stock then satisfied charges without counting
/// them).
#[test]
fn limit_uncharge_is_checked_and_saturates() {
    let limit = Limit::with_index(Index::default(), u64::MAX, 10);
    limit.try_charge(3).unwrap();
    assert_eq!(limit.usage(), 10, "a batch is charged, 7 stay in stock");
    limit.uncharge(u64::MAX - 2);
    assert_eq!(limit.usage(), 0);
    assert_eq!(limit.stats().underflows, 1);
    limit.drain();
    assert_eq!(limit.usage(), 0, "no stock left behind");
    // No phantom stock: the next charges are counted.
    limit.try_charge(5).unwrap();
    assert!(limit.usage() >= 5, "usage {}", limit.usage());

    // An over-uncharge that fits in a slot's stock but not in the usage.
    let limit = Limit::with_index(Index::default(), 1_000, 100);
    limit.try_charge(1).unwrap(); // usage 100, stock 99
    limit.uncharge(1); // back in stock: usage 100, stock 100
    limit.uncharge(50); // over-uncharge: the stock would exceed usage
    assert!(limit.usage() <= 100);
    limit.drain();
    assert_eq!(limit.usage(), 0);
}

/// A drain that runs inside the draining thread's own lease on the same allocator (a
/// `Limit` charged from inside another fallback structure's operation, with stock in the very
/// slot that lease holds) completes instead of waiting for itself.
#[test]
fn a_drain_inside_the_callers_own_lease_completes() {
    // The legacy allocator: no other test of this binary uses it (the others, and every
    // structure on the forced fallback, lease from the cache-local one), so no other thread
    // takes this thread's CID between the two charges.
    let index = Index::User(percid::Policy::Legacy);
    let outer: &'static PerCpu<AtomicU64> =
        Box::leak(Box::new(PerCpu::with_index(index, AtomicU64::new(0))));
    let limit: &'static Limit = Box::leak(Box::new(Limit::with_index(index, 10, 8)));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The only user of its allocator: the lowest free CID, the same for the charge and the
        // outer lease.
        let cpu = percid::topology::current_cpu().unwrap();
        percid::topology::pin_current_thread_to_cpu(cpu).unwrap();
        limit.try_charge(1).unwrap(); // usage 8: 7 in stock in this CPU's CID slot
        let r = outer.run(|cur, slot| {
            assert!(cur.add(slot, 1).is_committed());
            // Inside the lease of that CID: 8 + 3 > 10, so the charge drains, and the stock
            // sits in the slot of the lease this thread holds.
            Some(limit.try_charge(3))
        });
        let _ = done_tx.send(r);
    });
    // A hang detector, not a timing assertion: the drain used to wait for itself forever.
    let r = done_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the drain waited for the caller's own lease");
    assert_eq!(r, Some(Ok(())));
    assert_eq!(limit.usage(), 4, "1 + 3 charged, the stock returned");
}

/// At its limit, a `Limit` without stock refuses charges without draining (no membarrier
/// storm); once a drain has returned the stock, the charges refused after it do not drain
/// again.
#[test]
fn refused_charges_at_the_limit_do_not_storm() {
    let limit = Limit::with_index(Index::default(), 100, 1);
    for _ in 0..100 {
        limit.try_charge(1).unwrap();
    }
    let before = limit.stats();
    for _ in 0..1000 {
        assert!(limit.try_charge(1).is_err());
    }
    let after = limit.stats();
    assert_eq!(after.refused - before.refused, 1000);
    assert_eq!(after.drains, before.drains, "no stock anywhere: no drain");
    assert_eq!(after.fences, before.fences);
    assert_eq!(after.drains_skipped - before.drains_skipped, 1000);

    // Stock left in another thread's slot: the first refused charge drains it, the
    // following ones find nothing to drain and skip. (Orphan handling off: the exited
    // thread's slot may be an orphan, whose stock a charge would adopt instead.)
    let limit = Limit::with_index(Index::default(), 64, 8)
        .with_orphan_policy(percid::orphans::OrphanPolicy::NEVER);
    std::thread::scope(|s| {
        s.spawn(|| limit.try_charge(1).unwrap());
    });
    let mut charged = 1;
    while limit.try_charge(1).is_ok() {
        charged += 1;
    }
    assert_eq!(charged, 64, "batching never refuses a charge that fits");
    let before = limit.stats();
    for _ in 0..1000 {
        assert!(limit.try_charge(1).is_err());
    }
    let after = limit.stats();
    assert_eq!(after.drains, before.drains, "{after:?}");
    assert_eq!(after.drains_skipped - before.drains_skipped, 1000);
    assert!(after.drains >= 1, "the stock was drained once: {after:?}");
}

/// The debugger tables librseq emits: every critical section has its descriptor's address in
/// `__rseq_cs_ptr_array`, and each exit other than the abort and the fall-through is in
/// `__rseq_exit_point_array` as `(start_ip, exit_ip)`.
#[test]
fn critical_sections_are_listed_for_debuggers() {
    if !percid::rseq::arch::HAS_CRITICAL_SECTIONS {
        eprintln!("critical_sections_are_listed_for_debuggers: no critical sections here");
        return;
    }
    // Use every operation so that every template is in this binary.
    let list: List<u64> = List::new();
    list.push(1);
    assert_eq!(list.pop(), Some(1));
    let limit = Limit::new(10, 2);
    limit.try_charge(1).unwrap();

    unsafe extern "C" {
        static __start___rseq_cs_ptr_array: u64;
        static __stop___rseq_cs_ptr_array: u64;
        static __start___rseq_exit_point_array: [u64; 2];
        static __stop___rseq_exit_point_array: [u64; 2];
    }
    // SAFETY: the linker defines these bounds of the two sections, whose entries are
    // relocated addresses (u64 each, pairs for exit points).
    let (descriptors, exits) = unsafe {
        let d = std::slice::from_raw_parts(
            &raw const __start___rseq_cs_ptr_array,
            (&raw const __stop___rseq_cs_ptr_array)
                .offset_from(&raw const __start___rseq_cs_ptr_array) as usize,
        );
        let e = std::slice::from_raw_parts(
            &raw const __start___rseq_exit_point_array,
            (&raw const __stop___rseq_exit_point_array)
                .offset_from(&raw const __start___rseq_exit_point_array) as usize,
        );
        (d, e)
    };
    assert!(!descriptors.is_empty());
    assert!(!exits.is_empty());
    let mut starts = Vec::new();
    for &d in descriptors {
        // SAFETY: each entry is the address of a descriptor in `__rseq_cs`.
        let cs = unsafe { &*(d as *const percid::rseq::abi::CriticalSection) };
        assert_eq!((cs.version, cs.flags), (0, 0));
        assert!(cs.post_commit_offset > 0 && cs.post_commit_offset < 256);
        assert_ne!(cs.abort_ip, 0);
        // The kernel checks the signature in the 4 bytes before the abort handler.
        // SAFETY: the handler is in this binary's code, preceded by the signature.
        let sig = unsafe { std::ptr::read_unaligned((cs.abort_ip - 4) as *const u32) };
        assert_eq!(sig, percid::rseq::abi::RSEQ_SIG);
        starts.push(cs.start_ip);
    }
    for [start, exit] in exits {
        assert!(starts.contains(start), "exit point of an unknown section");
        assert_ne!(*exit, 0);
    }
}

/// `memcpy_then_store` refuses copies that could never commit within a time slice.
#[test]
fn memcpy_is_bounded() {
    let buf = vec![0u8; ops::MEMCPY_MAX + 1];
    let mut dst = vec![0u8; ops::MEMCPY_MAX + 1];
    let word = AtomicU64::new(0);
    let mode = IndexMode::CpuId;
    let s = ops::current_index(mode).unwrap();
    // SAFETY: valid buffers; the word is only used here.
    let r = unsafe {
        ops::memcpy_then_store(
            mode,
            s,
            word.as_ptr(),
            0,
            dst.as_mut_ptr(),
            buf.as_ptr(),
            ops::MEMCPY_MAX + 1,
            1,
        )
    };
    assert_eq!(
        r,
        Err(ops::CopyTooLong {
            len: ops::MEMCPY_MAX + 1
        })
    );
    assert_eq!(word.load(Ordering::Relaxed), 0);
    // At the bound it works.
    let r = loop {
        let s = ops::current_index(mode).unwrap();
        // SAFETY: as above.
        match unsafe {
            ops::memcpy_then_store(
                mode,
                s,
                word.as_ptr(),
                0,
                dst.as_mut_ptr(),
                buf.as_ptr(),
                ops::MEMCPY_MAX,
                1,
            )
        } {
            Ok(Outcome::Aborted) => continue,
            other => break other,
        }
    };
    assert_eq!(r, Ok(Outcome::Committed));
}
