//! x86_64 rseq critical sections in `asm!`.
//!
//! Every function here follows one template (see the parent module for the protocol):
//!
//! ```text
//!        .pushsection __rseq_cs, "aw"     descriptor: version 0, flags 0,
//!   3:   .long 0, 0; .quad 4f, 5f-4f, 6f   start_ip, post_commit_offset, abort_ip
//!        .popsection
//!        lea  tmp, [rip + 3b]
//!        mov  [area + 8], tmp              rseq_cs = &descriptor (the one user-owned field)
//!   4:   cmp  dword ptr [area + OFF], expected      OFF = 4 (cpu_id) or 24 (mm_cid)
//!        jne  6f
//!        ...  loads, compares (jne 8f), speculative stores
//!        <one committing store>
//!   5:   ret = 0 (committed); jmp 7f
//!   8:   ret = 1 (compare failed); jmp 7f
//!        .pushsection __rseq_failure, "ax"
//!        .byte 0x0f, 0xb9, 0x3d; .long 0x53053053     the signature (a `ud1`)
//!   6:   ret = 2 (aborted); jmp 7f
//!        .popsection
//!   7:
//! ```
//!
//! The abort handler is outside the section and preceded by the signature the kernel
//! checks. Leaving through `8` with `rseq_cs` still set is harmless: the kernel clears it
//! lazily when the instruction pointer is outside the section. Nothing here writes a
//! kernel-owned field. The descriptors are emitted once per inlined copy (local numeric
//! labels keep the copies apart); labels avoid digits 0/1 only, as the Rust reference asks.
//! The template is written once, in the `critical_section!` macro; each operation supplies
//! its body and operands, and the signature comes from [`RSEQ_SIG`].
//!
//! On x86 (TSO) every store has release semantics, so the "release" variants compile to the
//! same code as the relaxed ones; the `asm!` blocks are compiler barriers for memory.
//!
//! # Safety contract shared by every function
//!
//! * `area` must be the calling thread's registered rseq area, and `expected` read from it on
//!   this thread (as [`IndexMode::read`] does: it returns `Some` only when the thread has a
//!   registered area and, for `MmCid`, the kernel maintains `mm_cid`); so `area` is writable
//!   at `rseq_cs` and the compared field is live. Callers pass the area they read the index
//!   from, so an operation costs no second thread-local lookup.
//! * Every pointer must be valid for the accesses listed, and the memory must only be
//!   accessed concurrently by other rseq critical sections indexed by the same source or by
//!   atomic loads (the committing stores are single aligned 8-byte stores).

use super::Outcome;
use crate::rseq::IndexMode;
use crate::rseq::abi::{RSEQ_SIG, RseqArea};
use core::arch::asm;

const CPU_ID: usize = IndexMode::CpuId.field_offset();
const MM_CID: usize = IndexMode::MmCid.field_offset();

#[inline(always)]
fn outcome(code: u32) -> Outcome {
    match code {
        0 => Outcome::Committed,
        1 => Outcome::CompareFailed,
        _ => Outcome::Aborted,
    }
}

/// Expands to a `match` that calls the const-generic implementation for the mode's field.
macro_rules! by_mode {
    ($mode:expr, $f:ident ( $($arg:expr),* )) => {
        match $mode {
            IndexMode::CpuId => $f::<CPU_ID>($($arg),*),
            IndexMode::MmCid => $f::<MM_CID>($($arg),*),
        }
    };
}

/// Emits one critical section: the descriptor, the `rseq_cs` store, the index check, the
/// given body (whose last instruction must be the single committing store; `jne 8f` reports
/// "compare failed"), the exits, and the signed abort handler. The caller passes the
/// operands, which must include `area`, `off` (const), `exp` and `ret` (out).
macro_rules! critical_section {
    ([$($body:literal),* $(,)?], $($operands:tt)*) => {
        asm!(
            ".pushsection __rseq_cs, \"aw\"",
            ".balign 32",
            "3:",
            ".long 0, 0",
            ".quad 4f, (5f - 4f), 6f",
            ".popsection",
            "lea {ret}, [rip + 3b]",
            "mov qword ptr [{area} + 8], {ret}",
            "4:",
            "cmp dword ptr [{area} + {off}], {exp:e}",
            "jne 6f",
            $($body,)*
            "5:",
            "xor {ret:e}, {ret:e}",
            "jmp 7f",
            "8:",
            "mov {ret:e}, 1",
            "jmp 7f",
            ".pushsection __rseq_failure, \"ax\"",
            ".byte 0x0f, 0xb9, 0x3d",
            ".long {sig}",
            "6:",
            "mov {ret:e}, 2",
            "jmp 7f",
            ".popsection",
            "7:",
            $($operands)*
            sig = const RSEQ_SIG,
            options(nostack),
        )
    };
}

/// `*v += n` if the thread's index equals `expected`.
///
/// # Safety
/// See the module's safety contract; `v` valid for reads and writes.
#[inline(always)]
pub unsafe fn add(
    area: *const RseqArea,
    mode: IndexMode,
    expected: u32,
    v: *mut u64,
    n: u64,
) -> Outcome {
    // SAFETY: forwarded (module contract).
    unsafe { by_mode!(mode, add_impl(area, expected, v, n)) }
}

#[inline(always)]
unsafe fn add_impl<const OFF: usize>(
    area: *const RseqArea,
    expected: u32,
    v: *mut u64,
    n: u64,
) -> Outcome {
    let ret: u64;
    // SAFETY: the caller guarantees `area` is this thread's registered area and `v` valid;
    // the sequence writes only `rseq_cs` and `*v` (the commit).
    unsafe {
        critical_section!(
            [
                "add qword ptr [{v}], {n}",
            ],
            area = in(reg) area,
            off = const OFF,
            exp = in(reg) expected,
            v = in(reg) v,
            n = in(reg) n,
            ret = out(reg) ret,
        );
    }
    outcome(ret as u32)
}

/// `if *v == expect { *v = newv }` if the thread's index equals `expected`.
///
/// # Safety
/// See the module's safety contract; `v` valid for reads and writes.
#[inline(always)]
pub unsafe fn compare_and_store(
    area: *const RseqArea,
    mode: IndexMode,
    expected: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
) -> Outcome {
    // SAFETY: forwarded (module contract).
    unsafe {
        by_mode!(
            mode,
            compare_and_store_impl(area, expected, v, expect, newv)
        )
    }
}

#[inline(always)]
unsafe fn compare_and_store_impl<const OFF: usize>(
    area: *const RseqArea,
    expected: u32,
    v: *mut u64,
    expect: u64,
    newv: u64,
) -> Outcome {
    let ret: u64;
    // SAFETY: as in `add_impl`; writes only `rseq_cs` and `*v` (the commit).
    unsafe {
        critical_section!(
            [
                "cmp qword ptr [{v}], {expect}",
                "jne 8f",
                "mov qword ptr [{v}], {newv}",
            ],
            area = in(reg) area,
            off = const OFF,
            exp = in(reg) expected,
            v = in(reg) v,
            expect = in(reg) expect,
            newv = in(reg) newv,
            ret = out(reg) ret,
        );
    }
    outcome(ret as u32)
}

/// List pop: `node = *head; if node == sentinel || node & tag_mask != 0 { compare failed }
/// else { *head = *(node + next_offset) }`, returning `node` when committed. A non-zero
/// `tag_mask` lets a list mark its head as "being drained" with low pointer bits that pops
/// must not follow.
///
/// # Safety
/// See the module's safety contract; `head` valid for reads and writes; every node reachable
/// from `head` valid for reading a pointer at `next_offset`.
#[inline(always)]
pub unsafe fn list_pop(
    area: *const RseqArea,
    mode: IndexMode,
    expected: u32,
    head: *mut *mut u8,
    sentinel: *mut u8,
    tag_mask: usize,
    next_offset: usize,
) -> (Outcome, *mut u8) {
    // SAFETY: forwarded (module contract).
    unsafe {
        by_mode!(
            mode,
            list_pop_impl(area, expected, head, sentinel, tag_mask, next_offset)
        )
    }
}

#[inline(always)]
unsafe fn list_pop_impl<const OFF: usize>(
    area: *const RseqArea,
    expected: u32,
    head: *mut *mut u8,
    sentinel: *mut u8,
    tag_mask: usize,
    next_offset: usize,
) -> (Outcome, *mut u8) {
    let ret: u64;
    let node: *mut u8;
    // SAFETY: as in `add_impl`; writes only `rseq_cs` and `*head` (the commit).
    unsafe {
        critical_section!(
            [
                "mov {node}, qword ptr [{head}]",
                "cmp {node}, {sentinel}",
                "je 8f",
                "test {node}, {tag_mask}",
                "jnz 8f",
                "mov {next}, qword ptr [{node} + {next_offset}]",
                "mov qword ptr [{head}], {next}",
            ],
            area = in(reg) area,
            off = const OFF,
            exp = in(reg) expected,
            head = in(reg) head,
            sentinel = in(reg) sentinel,
            tag_mask = in(reg) tag_mask,
            next_offset = in(reg) next_offset,
            node = out(reg) node,
            next = out(reg) _,
            ret = out(reg) ret,
        );
    }
    (outcome(ret as u32), node)
}

/// Two-store: `if *v == expect { *v2 = newv2 (speculative); *v = newv (commit) }`.
/// x86 stores are releases, so this is also the release variant.
///
/// # Safety
/// See the module's safety contract; `v` and `v2` valid for writes (`v` for reads).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn two_store(
    area: *const RseqArea,
    mode: IndexMode,
    expected: u32,
    v: *mut u64,
    expect: u64,
    v2: *mut u64,
    newv2: u64,
    newv: u64,
) -> Outcome {
    // SAFETY: forwarded (module contract).
    unsafe {
        by_mode!(
            mode,
            two_store_impl(area, expected, v, expect, v2, newv2, newv)
        )
    }
}

#[inline(always)]
unsafe fn two_store_impl<const OFF: usize>(
    area: *const RseqArea,
    expected: u32,
    v: *mut u64,
    expect: u64,
    v2: *mut u64,
    newv2: u64,
    newv: u64,
) -> Outcome {
    let ret: u64;
    // SAFETY: as in `add_impl`; writes `rseq_cs`, `*v2` (speculative) and `*v` (the commit).
    unsafe {
        critical_section!(
            [
                "cmp qword ptr [{v}], {expect}",
                "jne 8f",
                "mov qword ptr [{v2}], {newv2}",
                "mov qword ptr [{v}], {newv}",
            ],
            area = in(reg) area,
            off = const OFF,
            exp = in(reg) expected,
            v = in(reg) v,
            expect = in(reg) expect,
            v2 = in(reg) v2,
            newv2 = in(reg) newv2,
            newv = in(reg) newv,
            ret = out(reg) ret,
        );
    }
    outcome(ret as u32)
}

/// Memcpy-then-store: `if *v == expect { copy len bytes src -> dst (speculative); *v = newv
/// (commit) }`. x86 stores are releases, so this is also the release variant.
///
/// # Safety
/// See the module's safety contract; `src` valid for `len` reads, `dst` for `len` writes,
/// `v` for reads and writes; the ranges do not overlap `v`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn memcpy_then_store(
    area: *const RseqArea,
    mode: IndexMode,
    expected: u32,
    v: *mut u64,
    expect: u64,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: u64,
) -> Outcome {
    // SAFETY: forwarded (module contract).
    unsafe {
        by_mode!(
            mode,
            memcpy_then_store_impl(area, expected, v, expect, dst, src, len, newv)
        )
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn memcpy_then_store_impl<const OFF: usize>(
    area: *const RseqArea,
    expected: u32,
    v: *mut u64,
    expect: u64,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: u64,
) -> Outcome {
    let ret: u64;
    // SAFETY: as in `add_impl`; writes `rseq_cs`, `dst[..len]` (speculative) and `*v` (the
    // commit). The byte loop is inside the section: an abort at any point leaves `*v`
    // unchanged, and a retry rewrites the buffer.
    unsafe {
        critical_section!(
            [
                "cmp qword ptr [{v}], {expect}",
                "jne 8f",
                "test {len}, {len}",
                "jz 22f",
                "23:",
                "mov {byte:l}, byte ptr [{src}]",
                "mov byte ptr [{dst}], {byte:l}",
                "inc {src}",
                "inc {dst}",
                "dec {len}",
                "jnz 23b",
                "22:",
                "mov qword ptr [{v}], {newv}",
            ],
            area = in(reg) area,
            off = const OFF,
            exp = in(reg) expected,
            v = in(reg) v,
            expect = in(reg) expect,
            dst = inout(reg) dst => _,
            src = inout(reg) src => _,
            len = inout(reg) len => _,
            newv = in(reg) newv,
            byte = out(reg) _,
            ret = out(reg) ret,
        );
    }
    outcome(ret as u32)
}
