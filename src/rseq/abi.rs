//! The kernel's rseq ABI: the per-thread area, the critical-section descriptor and the
//! constants of `include/uapi/linux/rseq.h`, for the architectures this crate knows.
//!
//! Field ownership (the rule the whole crate follows): `cpu_id_start`, `cpu_id`, `node_id`
//! and `mm_cid` are written by the kernel and only ever *read* here, with volatile loads.
//! `rseq_cs` is the one field user space writes (the address of the active descriptor); the
//! kernel clears it. `flags` must stay 0.

/// `struct rseq` as registered with the kernel: 32 bytes, 32-byte aligned.
///
/// Offsets: `cpu_id_start` 0, `cpu_id` 4, `rseq_cs` 8, `flags` 16, `node_id` 20,
/// `mm_cid` 24. The kernel extends the structure by feature size; we never read past the
/// active feature size (see [`super::registration::feature_size`]).
#[repr(C, align(32))]
#[derive(Debug)]
pub struct RseqArea {
    /// CPU number, always valid once registered (even outside critical sections).
    pub cpu_id_start: u32,
    /// CPU number, or [`CPU_ID_UNINITIALIZED`] / [`CPU_ID_REGISTRATION_FAILED`].
    pub cpu_id: u32,
    /// Address of the active [`CriticalSection`] descriptor, or 0. User-written.
    pub rseq_cs: u64,
    /// Must be 0.
    pub flags: u32,
    /// NUMA node of `cpu_id` (feature size >= 24, Linux 6.3).
    pub node_id: u32,
    /// Concurrency ID (feature size >= 28, Linux 6.3).
    pub mm_cid: u32,
    /// Padding up to the 32-byte original ABI size.
    pub _reserved: u32,
}

impl RseqArea {
    /// An unregistered area as the kernel expects it at registration time.
    pub const fn new() -> Self {
        Self {
            cpu_id_start: 0,
            cpu_id: CPU_ID_UNINITIALIZED,
            rseq_cs: 0,
            flags: 0,
            node_id: 0,
            mm_cid: 0,
            _reserved: 0,
        }
    }
}

impl Default for RseqArea {
    fn default() -> Self {
        Self::new()
    }
}

/// `struct rseq_cs`: describes one critical section. 32-byte aligned; lives in the
/// `__rseq_cs` section when emitted by `asm!`.
#[repr(C, align(32))]
#[derive(Debug, Clone, Copy)]
pub struct CriticalSection {
    /// 0.
    pub version: u32,
    /// 0.
    pub flags: u32,
    /// First instruction of the section.
    pub start_ip: u64,
    /// Length of the section: the commit instruction ends at `start_ip + post_commit_offset`.
    pub post_commit_offset: u64,
    /// Where the kernel sends the thread on preemption, migration or signal delivery.
    pub abort_ip: u64,
}

/// Value of `cpu_id` before the thread registered.
pub const CPU_ID_UNINITIALIZED: u32 = -1i32 as u32;
/// Value of `cpu_id` after a failed registration.
pub const CPU_ID_REGISTRATION_FAILED: u32 = -2i32 as u32;

/// `rseq` flag: unregister the area.
pub const RSEQ_FLAG_UNREGISTER: i32 = 1;

/// The signature the kernel checks before every abort handler.
#[cfg(target_arch = "x86_64")]
pub const RSEQ_SIG: u32 = 0x5305_3053;
/// The signature the kernel checks before every abort handler.
#[cfg(target_arch = "aarch64")]
pub const RSEQ_SIG: u32 = 0xd428_bc00;
/// The signature the kernel checks before every abort handler (no critical sections are
/// emitted on this architecture; the value only matters for registration).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const RSEQ_SIG: u32 = 0x5305_3053;

/// `getauxval` key: the kernel's supported rseq feature size (Linux 6.3+).
pub const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;
/// `getauxval` key: the alignment the kernel requires of the rseq area (Linux 6.3+).
pub const AT_RSEQ_ALIGN: libc::c_ulong = 28;

/// The original ABI size: what a registration must at least provide.
pub const ORIG_RSEQ_SIZE: u32 = 32;

/// Feature size from which `node_id` is valid (offset 20 + 4).
pub const FEATURE_SIZE_NODE_ID: u32 = 24;
/// Feature size from which `mm_cid` is valid (offset 24 + 4).
pub const FEATURE_SIZE_MM_CID: u32 = 28;

/// `membarrier` commands used by the crate.
pub mod membarrier {
    /// Query the supported commands.
    pub const CMD_QUERY: libc::c_int = 0;
    /// Restart every rseq critical section of the process running on another CPU.
    pub const CMD_PRIVATE_EXPEDITED_RSEQ: libc::c_int = 1 << 7;
    /// Register the process for [`CMD_PRIVATE_EXPEDITED_RSEQ`].
    pub const CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ: libc::c_int = 1 << 8;
    /// Flag of [`CMD_PRIVATE_EXPEDITED_RSEQ`] (Linux 5.10+): restart the critical sections
    /// on the one CPU given as the third argument only. Older kernels refuse it (`EINVAL`).
    pub const CMD_FLAG_CPU: libc::c_uint = 1;
}

const _: () = {
    assert!(core::mem::size_of::<RseqArea>() == 32);
    assert!(core::mem::align_of::<RseqArea>() == 32);
    assert!(core::mem::offset_of!(RseqArea, cpu_id) == 4);
    assert!(core::mem::offset_of!(RseqArea, rseq_cs) == 8);
    assert!(core::mem::offset_of!(RseqArea, node_id) == 20);
    assert!(core::mem::offset_of!(RseqArea, mm_cid) == 24);
    assert!(core::mem::size_of::<CriticalSection>() == 32);
};
