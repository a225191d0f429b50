//! An index read outside a critical section is only a hint (see the `rseq` module docs): a
//! stale `expected` never commits to the wrong slot. Since Linux 6.19 (and in 7.1's V2 mode)
//! the kernel writes the ID fields only when they change, so nothing may rely on a read being
//! fresh; percid's operations re-check the index inside the critical section.

use std::sync::atomic::{AtomicU64, Ordering};

use percid::ops::{self, Outcome};
use percid::rseq::IndexMode;

#[test]
fn a_stale_expected_index_never_commits() {
    for mode in [IndexMode::CpuId, IndexMode::MmCid] {
        let Some(live) = ops::current_index(mode) else {
            continue; // no usable registration on this thread
        };
        if !ops::uses_rseq(mode) {
            continue; // leases: an exact lease on `expected` makes any slot exclusive
        }
        let v = AtomicU64::new(0);
        // A value no CPU number or CID ever has: the section must not commit.
        let stale = live.wrapping_add(1 << 20);
        for _ in 0..100 {
            // SAFETY: `v` is a live AtomicU64 used only by this module's operations and atomic
            // loads; `stale` stands for an index read earlier on this thread.
            let r = unsafe { ops::add(mode, stale, v.as_ptr(), 1) };
            assert_eq!(r, Outcome::Aborted, "{mode:?}");
        }
        assert_eq!(v.load(Ordering::Relaxed), 0, "{mode:?}: nothing committed");
        // With a fresh read it commits (retrying after a preemption or migration).
        loop {
            let i = ops::current_index(mode).unwrap();
            // SAFETY: as above.
            if unsafe { ops::add(mode, i, v.as_ptr(), 1) } == Outcome::Committed {
                break;
            }
        }
        assert_eq!(v.load(Ordering::Relaxed), 1, "{mode:?}");
    }
}
