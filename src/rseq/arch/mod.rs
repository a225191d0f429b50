//! Architecture-specific rseq critical sections, beside the portable type they return.
//!
//! Each critical section follows the kernel's protocol:
//!
//! 1. store the address of its descriptor (start, length, abort handler) into the
//!    thread's `rseq_cs` field;
//! 2. compare the expected index with the kernel-maintained `cpu_id` or `mm_cid`, and go to
//!    the abort handler if they differ;
//! 3. do the work with loads and at most speculative stores;
//! 4. end with exactly one committing store, the last instruction of the section.
//!
//! Preemption, migration or signal delivery while the instruction pointer is inside the
//! section makes the kernel resume the thread at the abort handler instead, so the commit
//! happens only if the whole sequence ran on the expected CPU (or with the expected mm_cid)
//! without interruption: per-CPU data needs no atomic instruction.
//!
//! Only x86_64 has critical sections here ([`x86_64`], compiled under `cfg(percid_rseq_asm)`
//! set by `build.rs`). Every other architecture, and every thread without rseq, uses the
//! portable fallback in [`crate::ops`].
//!
//! Under `--cfg percid_tsan` (the ThreadSanitizer build of `.ci/run`) the sections also tell
//! the sanitizer the ordering they provide (`tsan`); elsewhere those calls compile to
//! nothing.

#[cfg(percid_rseq_asm)]
mod tsan;
#[cfg(percid_rseq_asm)]
pub mod x86_64;

/// How a critical section (or its fallback) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The committing store happened.
    Committed,
    /// The value compared by the operation differed from the expected one (or the list was
    /// empty): nothing was stored.
    CompareFailed,
    /// The thread was preempted, migrated or signalled, or runs with another index than the
    /// expected one: nothing was committed. Re-read the index and retry.
    Aborted,
}

/// Whether this build has critical sections in assembly.
pub const HAS_CRITICAL_SECTIONS: bool = cfg!(percid_rseq_asm);
