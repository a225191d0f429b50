//! x86_64 rseq critical sections in `asm!`.
//!
//! Every function here follows one template (see the parent module for the protocol):
//!
//! ```text
//!        .pushsection __rseq_cs, "aw"            descriptor: version 0, flags 0,
//!   3:   .long 0, 0; .quad 4f, 5f-4f, 6f          start_ip, post_commit_offset, abort_ip
//!        .popsection
//!        .pushsection __rseq_cs_ptr_array, "awR"  for debuggers: the descriptor's address
//!        .quad 3b
//!        .popsection
//!        .pushsection __rseq_exit_point_array, "awR"   and every exit other than abort and
//!        .quad 4f, {cmpfail}                            the fall-through (ops that compare)
//!        .popsection
//!        lea  tmp, [rip + 3b]
//!        mov  [area + 8], tmp              rseq_cs = &descriptor (the one user-owned field)
//!   4:   cmp  dword ptr [area + off], expected      off = 4 (cpu_id) or 24 (mm_cid)
//!        jne  6f
//!        ...  loads, compares (jne {cmpfail}), speculative stores
//!        <one committing store>
//!   5:                                     fall through: committed
//!        .pushsection __rseq_failure, "ax"
//!        .byte 0x0f, 0xb9, 0x3d; .long 0x53053053     the signature (a `ud1`)
//!   6:   jmp {abort}
//!        .popsection
//! ```
//!
//! `{abort}` and `{cmpfail}` are `asm!` label operands: the section jumps straight to Rust
//! code, so after inlining an operation's outcome is control flow, not a value the caller
//! tests again. The abort handler is outside the section and preceded by the signature the
//! kernel checks. Leaving through `{cmpfail}` with `rseq_cs` still set is harmless: the
//! kernel clears it lazily when the instruction pointer is outside the section (and
//! [`prepare_unload`](crate::rseq::registration::prepare_unload) clears it before unloading).
//! Nothing here writes a kernel-owned field. The descriptors are emitted once per inlined copy
//! (local numeric labels keep the copies apart); labels avoid digits 0/1 only, as the Rust
//! reference asks. The template is written once, in the `critical_section!` macro; each
//! operation supplies its body and operands, and the signature comes from [`RSEQ_SIG`].
//!
//! The `__rseq_cs_ptr_array` and `__rseq_exit_point_array` entries are what librseq emits so
//! that a debugger can find every critical section and step over it (single-stepping inside
//! one aborts it every time); their sections carry the `R` (retain) flag so the linker's
//! section garbage collection keeps them.
//!
//! Sections that compare (all but [`add`]) call `tsan::release` on their committing word
//! before the section and `tsan::acquire` after a commit ([`list_pop`]: the acquire only):
//! empty `#[inline(always)]` functions unless the sanitizer build sets `--cfg percid_tsan`.
//!
//! On x86 (TSO) every store has release semantics, so the "release" variants compile to the
//! same code as the relaxed ones; the `asm!` blocks are compiler barriers for memory.
//!
//! # Safety contract shared by every function
//!
//! * `area` must be the calling thread's area as returned by `registration::area` (never
//!   the read-only uninitialised sentinel): registered with the kernel, or the thread's own
//!   area marked failed, whose index fields never match an index read from a registered
//!   area. So `area` is writable at `rseq_cs` and the compared field is live or inert.
//!   `expected` is the index the caller chose its slot by, read from `area` on this thread
//!   at byte offset `off`, which is [`IndexMode::field_offset`] of the mode the caller uses
//!   (a register operand: one code path serves both modes).
//!
//! [`IndexMode::field_offset`]: crate::rseq::IndexMode::field_offset
//! * Every pointer must be valid for the accesses listed, and the memory must only be
//!   accessed concurrently by other rseq critical sections indexed by the same source or by
//!   atomic loads (the committing stores are single aligned 8-byte stores).

use super::Outcome;
use super::tsan;
use crate::rseq::abi::{RSEQ_SIG, RseqArea};
use core::arch::asm;

/// Emits one critical section: the descriptor (and its debugger entries), the `rseq_cs`
/// store, the index check, the given body (whose last instruction must be the single
/// committing store), and the signed abort handler. `compares` adds the exit-point entry for
/// bodies that leave through `{cmpfail}`. The caller passes the operands, which must include
/// `area`, `off` (const), `exp`, `tmp` (a clobbered register), `abort` (label) and, with
/// `compares`, `cmpfail` (label).
macro_rules! critical_section {
    // The descriptor at label 3 (start 4, post-commit 5, abort 6) and its debugger entry;
    // also used by `list_pop`, whose outputs rule out the template's label operands.
    (@descriptor) => {
        concat!(
            ".pushsection __rseq_cs, \"aw\"\n",
            ".balign 32\n",
            "3:\n",
            ".long 0, 0\n",
            ".quad 4f, (5f - 4f), 6f\n",
            ".popsection\n",
            ".pushsection __rseq_cs_ptr_array, \"awR\"\n",
            ".balign 8\n",
            ".quad 3b\n",
            ".popsection\n",
        )
    };
    (@exit_points compares) => {
        concat!(
            ".pushsection __rseq_exit_point_array, \"awR\"\n",
            ".balign 8\n",
            ".quad 4f, {cmpfail}\n",
            ".popsection\n",
        )
    };
    (@exit_points commits) => {
        ""
    };
    ($kind:ident, [$($body:literal),* $(,)?], $($operands:tt)*) => {
        asm!(
            critical_section!(@descriptor),
            critical_section!(@exit_points $kind),
            "lea {tmp}, [rip + 3b]",
            "mov qword ptr [{area} + 8], {tmp}",
            "4:",
            "cmp dword ptr [{area} + {off}], {exp:e}",
            "jne 6f",
            $($body,)*
            "5:",
            ".pushsection __rseq_failure, \"ax\"",
            ".byte 0x0f, 0xb9, 0x3d",
            ".long {sig}",
            "6:",
            "jmp {abort}",
            ".popsection",
            $($operands)*
            sig = const RSEQ_SIG,
            options(nostack),
        )
    };
}

/// `*v += n` if the thread's index equals `expected`, where `v = base + at`: the target is
/// addressed as `[base + at]` (with `base` loop-invariant, typically a pool item's slot 0,
/// and `at` the slot's offset, the store-to-load forwarding of a loop of adds is much
/// cheaper than through a freshly computed pointer; see the README's performance notes).
///
/// # Safety
/// See the module's safety contract; `base + at` valid for reads and writes of a `u64`.
#[inline(always)]
pub unsafe fn add(
    area: *const RseqArea,
    off: usize,
    expected: u32,
    base: *mut u8,
    at: usize,
    n: u64,
) -> Outcome {
    // SAFETY: the caller guarantees `area` is this thread's area and `v` valid; the sequence
    // writes only `rseq_cs` and `*v` (the commit).
    unsafe {
        critical_section!(
            commits,
            ["add qword ptr [{base} + {at}], {n}"],
            area = in(reg) area,
            off = in(reg) off,
            exp = in(reg) expected,
            base = in(reg) base,
            at = in(reg) at,
            n = in(reg) n,
            tmp = out(reg) _,
            abort = label { return Outcome::Aborted },
        );
    }
    Outcome::Committed
}

/// `if *v == expect { *v = newv }` if the thread's index equals `expected`, `v = base + at`
/// (addressed as in [`add`]).
///
/// # Safety
/// See the module's safety contract; `base + at` valid for reads and writes of a `u64`.
#[inline(always)]
pub unsafe fn compare_and_store(
    area: *const RseqArea,
    off: usize,
    expected: u32,
    base: *mut u8,
    at: usize,
    expect: u64,
    newv: u64,
) -> Outcome {
    let v = base.wrapping_add(at);
    // SAFETY: `v` is valid (the caller's contract); a no-op outside the sanitizer build.
    unsafe { tsan::release(v) };
    // SAFETY: as in `add`; writes only `rseq_cs` and `*v` (the commit).
    unsafe {
        critical_section!(
            compares,
            [
                "cmp qword ptr [{base} + {at}], {expect}",
                "jne {cmpfail}",
                "mov qword ptr [{base} + {at}], {newv}",
            ],
            area = in(reg) area,
            off = in(reg) off,
            exp = in(reg) expected,
            base = in(reg) base,
            at = in(reg) at,
            expect = in(reg) expect,
            newv = in(reg) newv,
            tmp = out(reg) _,
            abort = label { return Outcome::Aborted },
            cmpfail = label { return Outcome::CompareFailed },
        );
    }
    // SAFETY: as before the section; a no-op outside the sanitizer build.
    unsafe { tsan::acquire(v) };
    Outcome::Committed
}

/// List pop: `node = *head; if node == sentinel || node & tag_mask != 0 { compare failed }
/// else { *head = *(node + next_offset) }`, returning the node read (meaningless after an
/// abort; after a compare failure it tells an empty list from a tagged head). A non-zero
/// `tag_mask` lets a list mark its head as "being drained" with low pointer bits that pops
/// must not follow. The head is at `base + at` (addressed as in [`add`]).
///
/// Unlike the other operations this one reports its outcome as a value rather than through
/// label operands: it has an output (the node), and Rust's `asm!` accepts outputs beside
/// labels only on nightly. Returning the node through memory instead would put a store and a
/// reload on the pop-then-push dependency chain.
///
/// # Safety
/// See the module's safety contract; the head valid for reads and writes; every node
/// reachable from the head valid for reading a pointer at `next_offset`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn list_pop(
    area: *const RseqArea,
    off: usize,
    expected: u32,
    base: *mut u8,
    at: usize,
    sentinel: *mut u8,
    tag_mask: usize,
    next_offset: usize,
) -> (Outcome, *mut u8) {
    let ret: u64;
    let node: *mut u8;
    // SAFETY: as in `add`; writes `rseq_cs` and the head (the commit).
    unsafe {
        asm!(
            critical_section!(@descriptor),
            ".pushsection __rseq_exit_point_array, \"awR\"",
            ".balign 8",
            ".quad 4f, 8f",
            ".popsection",
            "lea {ret}, [rip + 3b]",
            "mov qword ptr [{area} + 8], {ret}",
            "4:",
            "cmp dword ptr [{area} + {off}], {exp:e}",
            "jne 6f",
            "mov {node}, qword ptr [{base} + {at}]",
            "cmp {node}, {sentinel}",
            "je 8f",
            "test {node}, {tag_mask}",
            "jnz 8f",
            "mov {next}, qword ptr [{node} + {next_offset}]",
            "mov qword ptr [{base} + {at}], {next}",
            "5:",
            // Committed: falls through; the other exits are out of line.
            "xor {ret:e}, {ret:e}",
            "7:",
            ".pushsection __rseq_failure, \"ax\"",
            "8:",
            "mov {ret:e}, 1",
            "jmp 7b",
            ".byte 0x0f, 0xb9, 0x3d",
            ".long {sig}",
            "6:",
            "mov {ret:e}, 2",
            "jmp 7b",
            ".popsection",
            area = in(reg) area,
            off = in(reg) off,
            exp = in(reg) expected,
            base = in(reg) base,
            at = in(reg) at,
            sentinel = in(reg) sentinel,
            tag_mask = in(reg) tag_mask,
            next_offset = in(reg) next_offset,
            node = out(reg) node,
            next = out(reg) _,
            ret = out(reg) ret,
            sig = const RSEQ_SIG,
            options(nostack),
        );
    }
    if ret == 0 {
        // SAFETY: the head is valid (the caller's contract); a no-op outside the sanitizer
        // build.
        unsafe { tsan::acquire(base.wrapping_add(at)) };
        return (Outcome::Committed, node);
    }
    (not_committed(ret), node)
}

/// The outcome of a section that did not commit (code 1: compare failed; 2: aborted): out of
/// line, so the committed path is the fall-through.
#[cold]
#[inline(never)]
fn not_committed(ret: u64) -> Outcome {
    if ret == 1 {
        Outcome::CompareFailed
    } else {
        Outcome::Aborted
    }
}

/// Two-store: `if *v == expect { *v2 = newv2 (speculative); *v = newv (commit) }`.
/// x86 stores are releases, so this is also the release variant.
///
/// `v = base + at` (addressed as in [`add`]).
///
/// # Safety
/// See the module's safety contract; `v` and `v2` valid for writes (`v` for reads).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn two_store(
    area: *const RseqArea,
    off: usize,
    expected: u32,
    base: *mut u8,
    at: usize,
    expect: u64,
    v2: *mut u64,
    newv2: u64,
    newv: u64,
) -> Outcome {
    let v = base.wrapping_add(at);
    // SAFETY: `v` is valid (the caller's contract); a no-op outside the sanitizer build.
    unsafe { tsan::release(v) };
    // SAFETY: as in `add`; writes `rseq_cs`, `*v2` (speculative) and `*v` (the commit).
    unsafe {
        critical_section!(
            compares,
            [
                "cmp qword ptr [{base} + {at}], {expect}",
                "jne {cmpfail}",
                "mov qword ptr [{v2}], {newv2}",
                "mov qword ptr [{base} + {at}], {newv}",
            ],
            area = in(reg) area,
            off = in(reg) off,
            exp = in(reg) expected,
            base = in(reg) base,
            at = in(reg) at,
            expect = in(reg) expect,
            v2 = in(reg) v2,
            newv2 = in(reg) newv2,
            newv = in(reg) newv,
            tmp = out(reg) _,
            abort = label { return Outcome::Aborted },
            cmpfail = label { return Outcome::CompareFailed },
        );
    }
    // SAFETY: as before the section; a no-op outside the sanitizer build.
    unsafe { tsan::acquire(v) };
    Outcome::Committed
}

/// Memcpy-then-store: `if *v == expect { copy len bytes src -> dst (speculative); *v = newv
/// (commit) }`. x86 stores are releases, so this is also the release variant. The copy is a
/// `rep movsb` inside the section: an abort at any point leaves `*v` unchanged, and a retry
/// rewrites the buffer. Callers bound `len` (see `ops::MEMCPY_MAX`): a copy that cannot
/// finish within a time slice would never commit.
///
/// `v = base + at` (addressed as in [`add`]).
///
/// # Safety
/// See the module's safety contract; `src` valid for `len` reads, `dst` for `len` writes,
/// `v` for reads and writes; the ranges do not overlap `v`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn memcpy_then_store(
    area: *const RseqArea,
    off: usize,
    expected: u32,
    base: *mut u8,
    at: usize,
    expect: u64,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: u64,
) -> Outcome {
    let v = base.wrapping_add(at);
    // SAFETY: `v` is valid (the caller's contract); a no-op outside the sanitizer build.
    unsafe { tsan::release(v) };
    // SAFETY: as in `add`; writes `rseq_cs`, `dst[..len]` (speculative) and `*v` (the
    // commit). rdi/rsi/rcx are loaded inside the section and declared clobbered.
    unsafe {
        critical_section!(
            compares,
            [
                "cmp qword ptr [{base} + {at}], {expect}",
                "jne {cmpfail}",
                "mov rdi, {dst}",
                "mov rsi, {src}",
                "mov rcx, {len}",
                "rep movsb",
                "mov qword ptr [{base} + {at}], {newv}",
            ],
            area = in(reg) area,
            off = in(reg) off,
            exp = in(reg) expected,
            base = in(reg) base,
            at = in(reg) at,
            expect = in(reg) expect,
            dst = in(reg) dst,
            src = in(reg) src,
            len = in(reg) len,
            newv = in(reg) newv,
            tmp = out(reg) _,
            out("rdi") _,
            out("rsi") _,
            out("rcx") _,
            abort = label { return Outcome::Aborted },
            cmpfail = label { return Outcome::CompareFailed },
        );
    }
    // SAFETY: as before the section; a no-op outside the sanitizer build.
    unsafe { tsan::acquire(v) };
    Outcome::Committed
}
