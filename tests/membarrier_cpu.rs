//! One-CPU fences (`MEMBARRIER_CMD_FLAG_CPU`) for moves of one `cpu_id` slot.
//!
//! * A worker pinned to one CPU pops and pushes unique elements of a `cpu_id` `List` while a
//!   drainer pinned to another CPU drains it again and again: only the worker's slot holds
//!   elements, so each drain fences that one CPU. Were the fence not to restart the worker's
//!   critical section, a pop that read the head before the drain's lock bit would commit
//!   after the drain took the list: its nodes would be both drained and in the slot
//!   (duplicates, and a node freed twice). Asserted: every element exactly once, and the
//!   drains used one-CPU fences (or, on a kernel that refuses the flag, process-wide ones,
//!   with the refusal recorded). What this cannot show: a critical section lasts nanoseconds
//!   and a fence microseconds, so the losing interleaving needs the section stalled on its
//!   CPU (not preempted) for the whole fence; with the fence aimed at the wrong CPU on
//!   purpose, three runs still passed. The kernel's guarantee for the flag is what the
//!   protocol relies on; this test checks the path is taken and conserves elements.
//! * A `Limit` whose stock sits in one `cpu_id` slot is drained with a one-CPU fence.
//!
//! Skipped (with a note) without rseq access, or with fewer than two allowed CPUs. Run in
//! the child variants of `common::matrix` too (percid's own registration; the forced
//! fallback, where it skips).

mod common;

use common::matrix;
use percid::rseq::membarrier::{fence_stats, rseq_fence_ready};
use percid::{Index, Limit, List};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data (zeroed is the empty set); sched_getaffinity writes at
    // most size_of::<cpu_set_t>() bytes into it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        set
    };
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `set` is an initialised cpu_set_t and `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: as above; sched_setaffinity reads the set we built.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(r, 0, "pin to CPU {cpu}");
    assert_eq!(percid::current_cpu(), Some(cpu as u32));
}

/// Two CPUs to pin to, when the access is rseq and the fence works; `None` (skip) otherwise.
fn setup(access_is_rseq: bool) -> Option<(usize, usize)> {
    let cpus = allowed_cpus();
    if !access_is_rseq || !rseq_fence_ready() || cpus.len() < 2 {
        eprintln!(
            "skipped: rseq access {access_is_rseq}, fence {}, {} CPUs",
            rseq_fence_ready(),
            cpus.len()
        );
        return None;
    }
    Some((cpus[0], cpus[1]))
}

/// What the one-CPU path must have done for `one_cpu` fences of a structure.
fn assert_one_cpu_used(one_cpu: u64, fences: u64, what: &str) {
    let global = fence_stats();
    if global.one_cpu_refused {
        // A kernel before 5.10: every fence fell back to the process-wide one.
        assert_eq!(one_cpu, 0, "{what}");
        assert!(fences > 0 && global.process_wide > 0, "{what}");
    } else {
        assert!(
            one_cpu > 0,
            "{what}: no one-CPU fence ({one_cpu} of {fences})"
        );
        assert!(global.one_cpu >= one_cpu, "{what}: {global:?}");
    }
}

#[test]
fn cpu_id_drains_of_one_slot_fence_one_cpu_and_conserve_elements() {
    matrix(
        "cpu_id_drains_of_one_slot_fence_one_cpu_and_conserve_elements",
        || {
            let list: List<u64> = List::with_index(Index::CpuId);
            list.push(u64::MAX); // creates the slots
            assert_eq!(list.drain(), [u64::MAX]);
            let Some((worker_cpu, drainer_cpu)) = setup(list.access().is_some_and(|a| a.is_rseq()))
            else {
                return;
            };
            const ELEMENTS: u64 = 64;
            let reps = 200_000 * if common::long() { 20 } else { 1 };
            let stop = AtomicBool::new(false);
            let drains = AtomicU64::new(0);
            // What the drainer took, for the worker to push back on its own CPU (so no other
            // slot ever holds an element).
            let returned = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                s.spawn(|| {
                    pin(worker_cpu);
                    for e in 0..ELEMENTS {
                        list.push(e);
                    }
                    let mut i = 0;
                    while i < reps || drains.load(Ordering::Relaxed) < 20 {
                        if let Some(n) = list.pop_node() {
                            list.push_node(n);
                        }
                        if i % 256 == 0 {
                            for e in std::mem::take(&mut *returned.lock().unwrap()) {
                                list.push(e);
                            }
                        }
                        i += 1;
                    }
                    stop.store(true, Ordering::Relaxed);
                });
                s.spawn(|| {
                    pin(drainer_cpu);
                    while !stop.load(Ordering::Relaxed) {
                        let got = list.drain();
                        if !got.is_empty() {
                            drains.fetch_add(1, Ordering::Relaxed);
                            returned.lock().unwrap().extend(got);
                        }
                        std::thread::yield_now();
                    }
                });
            });
            let mut all = list.drain();
            all.extend(returned.into_inner().unwrap());
            let distinct: HashSet<u64> = all.iter().copied().collect();
            assert_eq!(all.len(), distinct.len(), "an element taken twice");
            assert_eq!(distinct, (0..ELEMENTS).collect(), "elements lost");
            let st = list.stats();
            eprintln!("{st:?}, {:?}", fence_stats());
            assert_one_cpu_used(st.fences_one_cpu, st.fences, "list");
        },
    );
}

#[test]
fn a_limit_drain_of_one_cpu_id_slot_fences_one_cpu() {
    matrix("a_limit_drain_of_one_cpu_id_slot_fences_one_cpu", || {
        let limit = Limit::with_index(Index::CpuId, 1000, 10);
        limit.try_charge(1).unwrap(); // creates the slots
        limit.uncharge(1);
        limit.drain();
        let Some((cpu, _)) = setup(limit.access().is_some_and(|a| a.is_rseq())) else {
            return;
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                pin(cpu);
                limit.try_charge(1).unwrap(); // the slot takes a batch of stock
                limit.uncharge(1);
                let before = limit.stats();
                limit.drain();
                let st = limit.stats();
                assert_eq!(st.fences - before.fences, 1, "{st:?}");
                assert_one_cpu_used(
                    st.fences_one_cpu - before.fences_one_cpu,
                    st.fences - before.fences,
                    "limit",
                );
                assert_eq!(limit.usage(), 0, "{st:?}");
            });
        });
    });
}
