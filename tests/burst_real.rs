//! Real runs on a tiny configuration: behaviour only (slots and migrations), never durations.

use std::time::Duration;

use percid::Policy;
use percid::burst::{Method, Plan, RunStats, run_real, unavailable_reason};
use percid::index::Index;
use percid::topology::allowed_cpus;

fn two_cpus() -> Option<Vec<usize>> {
    let cpus: Vec<usize> = allowed_cpus().ok()?.iter().take(2).collect();
    (cpus.len() == 2).then_some(cpus)
}

fn method(passes: usize) -> Method {
    Method {
        item_size: 16 * 1024,
        stride: 64 * 1024,
        warmup: 50,
        passes,
        runs: 1,
        seed: 1,
    }
}

fn stats(cpus: &[usize], index: Index, delay_ms: u64, passes: usize) -> RunStats {
    let plan = Plan::new(cpus.len(), Duration::from_millis(delay_ms), 11);
    let records = run_real(cpus, index, &plan, &method(passes)).expect("real run");
    RunStats::from_records(&records)
}

#[test]
fn cpu_and_cache_local_keep_their_slots() {
    let Some(cpus) = two_cpus() else {
        eprintln!("skipped: fewer than 2 allowed CPUs");
        return;
    };
    let s = stats(&cpus, Index::User(Policy::CacheLocal), 120, 3);
    assert_eq!((s.passes, s.slot_migrations, s.slots.len()), (6, 0, 2));
    let s = stats(&cpus, Index::CpuId, 5, 2);
    assert_eq!(s.slot_migrations, 0);
    assert_eq!(s.slots, cpus.iter().copied().collect());
    if unavailable_reason(Index::MmCid).is_none() {
        let s = stats(&cpus, Index::MmCid, 5, 2);
        assert_eq!(s.passes, 4);
        assert!(
            s.slots.iter().all(|&c| c < 2),
            "mm_cid within min(threads, CPUs)"
        );
    }
}

#[test]
fn legacy_moves_its_slot_after_the_expiry() {
    let Some(cpus) = two_cpus() else {
        eprintln!("skipped: fewer than 2 allowed CPUs");
        return;
    };
    // 120 ms > the 100 ms expiry: each CPU's CID has expired when the other runs, so both
    // get CID 0 and every timed pass but each thread's first moves the slot.
    let s = stats(&cpus, Index::User(Policy::Legacy), 120, 3);
    assert_eq!(s.passes, 6);
    assert_eq!(s.slots.len(), 1);
    assert!(s.slot_migrations >= 3, "{} migrations", s.slot_migrations);
}
