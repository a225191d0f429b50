//! The membarrier rseq registration happens before `main` (see `percid::rseq::membarrier`,
//! "Registration, early"): later, with threads running, it would wait for an RCU grace period
//! in the middle of the program's first drainable structure.
//!
//! Alone in its test binary so that nothing else of the crate ran first.

#[test]
fn the_membarrier_registration_ran_before_main() {
    // Nothing of percid was used in this process yet: only the constructor can have tried.
    let attempted = percid::rseq::membarrier::registration_attempted();
    assert!(
        attempted.is_some(),
        "the registration waits for the first drainable structure"
    );
    // Where the kernel has the command, the early registration succeeded.
    assert_eq!(
        attempted,
        Some(percid::rseq::membarrier::rseq_fence_supported())
    );
}
