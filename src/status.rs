//! What mode the crate runs in: [`status()`].
//!
//! It sits above every layer: the rseq ABI facts ([`crate::rseq`]) and the index policy
//! ([`crate::index`]) that structures use by default.

use crate::index::Index;
use crate::index::era::{self, CidEra};
use crate::rseq::registration::{self, Owner};
use crate::rseq::{mm_cid_available, node_id_available, rseq_usable};
use std::fmt;

/// A report of the crate's rseq mode, for people (`Display`) and programs (fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Who owns the rseq registration: glibc, percid, or nobody (and why).
    pub owner: Owner,
    /// The active feature size: how many bytes of the area the kernel keeps current
    /// (0 without rseq).
    pub feature_size: u32,
    /// `getauxval(AT_RSEQ_FEATURE_SIZE)`, 0 if the kernel does not report it (< 6.3).
    pub kernel_feature_size: u32,
    /// `getauxval(AT_RSEQ_ALIGN)`, 0 if the kernel does not report it.
    pub kernel_align: u32,
    /// glibc's `__rseq_size`, `None` if glibc does not export it.
    pub glibc_rseq_size: Option<u32>,
    /// The kernel maintains `mm_cid` for this process (feature size >= 28).
    pub mm_cid: bool,
    /// The kernel maintains `node_id` (feature size >= 24).
    pub node_id: bool,
    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ` is available.
    pub membarrier_rseq: bool,
    /// What became of the membarrier registration before `main` (opt-outs:
    /// `PERCID_EARLY_MEMBARRIER=0`, the `no-early-membarrier` feature).
    pub early_membarrier: crate::rseq::membarrier::EarlyRegistration,
    /// This build has critical sections in assembly for this architecture.
    pub critical_sections: bool,
    /// Structures use rseq critical sections (registration works, the architecture has
    /// critical sections, and the fallback is not forced).
    pub rseq_in_use: bool,
    /// The index source structures use by default (after `PERCID_INDEX`).
    pub default_index: Index,
    /// Why `PERCID_INDEX` was ignored, if it was set to something unusable.
    pub index_env_error: Option<String>,
    /// The length of percid's own rseq registration (`None`: glibc's or none).
    pub registration_len: Option<u32>,
    /// Whether Linux >= 7.1 runs this process's registration in the optimized V2 mode (longer
    /// than 32 bytes): `Some` for percid's own registration, and for glibc's when its
    /// `__rseq_size` (20 or 32) shows a 32-byte registration; `None` when unknown or absent.
    pub rseq_v2: Option<bool>,
    /// The running kernel's release (`uname -r`).
    pub kernel_release: Option<String>,
    /// The kernel's concurrency-ID era, from its release: what `mmcid` means here.
    pub cid_era: Option<CidEra>,
}

/// Reports the crate's mode (initialises the calling thread's registration if needed).
pub fn status() -> Status {
    let owner = registration::owner();
    let feature_size = registration::feature_size();
    let (default_index, index_env_error) = match Index::from_env() {
        Ok(Some(i)) => (i, None),
        Ok(None) => (Index::auto(), None),
        Err(e) => (Index::auto(), Some(e.to_string())),
    };
    let kernel_feature_size = registration::kernel_feature_size();
    let kernel_align = registration::kernel_align();
    let glibc_rseq_size = registration::glibc_rseq_size();
    let registration_len = registration::registered_len();
    let rseq_v2 = match owner {
        Owner::Percid => registration_len.map(|len| {
            registration::OwnLayout {
                len,
                align: registration::OWN_AREA_MAX_LEN,
            }
            .is_v2(kernel_feature_size, kernel_align)
        }),
        // glibc 2.35-2.40 register the original 32 bytes (and export 32 or 20).
        Owner::Libc if matches!(glibc_rseq_size, Some(20 | 32)) => Some(false),
        _ => None,
    };
    let kernel_release = era::kernel_release();
    let cid_era = kernel_release.as_deref().and_then(CidEra::from_release);
    Status {
        owner,
        feature_size,
        kernel_feature_size,
        kernel_align,
        glibc_rseq_size,
        mm_cid: mm_cid_available(),
        node_id: node_id_available(),
        membarrier_rseq: crate::rseq::membarrier::rseq_fence_supported(),
        early_membarrier: crate::rseq::membarrier::early_registration(),
        critical_sections: crate::rseq::arch::HAS_CRITICAL_SECTIONS,
        rseq_in_use: rseq_usable(),
        default_index,
        index_env_error,
        registration_len,
        rseq_v2,
        kernel_release,
        cid_era,
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        match self.owner {
            Owner::Libc => writeln!(
                f,
                "registration:       glibc (percid reads glibc's rseq area)"
            )?,
            Owner::Percid => writeln!(
                f,
                "registration:       percid (own per-thread rseq area; glibc did not register)"
            )?,
            Owner::None(reason) => writeln!(
                f,
                "registration:       none: {reason}; running on the portable fallback"
            )?,
        }
        if let Some(len) = self.registration_len {
            writeln!(f, "registered length:   {len} bytes")?;
        }
        writeln!(
            f,
            "rseq V2 on 7.1+:     {}",
            match self.rseq_v2 {
                Some(true) => "yes (longer than 32 bytes: IDs written only when they change)",
                Some(false) => "no (32-byte registration: legacy mode)",
                None => "unknown",
            }
        )?;
        writeln!(f, "active feature size: {} bytes", self.feature_size)?;
        let kernel = match self.kernel_feature_size {
            0 => "not reported (kernel < 6.3)".to_string(),
            n => format!("{n} bytes (align {})", self.kernel_align),
        };
        writeln!(f, "kernel feature size: {kernel}")?;
        let glibc = match self.glibc_rseq_size {
            None => "not exported".to_string(),
            Some(0) => "0 (glibc did not register)".to_string(),
            Some(n) => format!("{n}"),
        };
        writeln!(f, "glibc __rseq_size:   {glibc}")?;
        writeln!(
            f,
            "cpu_id:              {}",
            yes(!matches!(self.owner, Owner::None(_)))
        )?;
        writeln!(f, "node_id:             {}", yes(self.node_id))?;
        writeln!(f, "mm_cid:              {}", yes(self.mm_cid))?;
        writeln!(f, "membarrier rseq:     {}", yes(self.membarrier_rseq))?;
        writeln!(f, "membarrier register: {}", self.early_membarrier)?;
        writeln!(
            f,
            "critical sections:   {}",
            if self.critical_sections {
                "x86_64 asm"
            } else {
                "none on this architecture"
            }
        )?;
        writeln!(
            f,
            "structures use:      {}",
            if self.rseq_in_use {
                "rseq critical sections"
            } else {
                "user-space CID leases (fallback)"
            }
        )?;
        let release = self.kernel_release.as_deref().unwrap_or("unknown");
        match self.cid_era {
            Some(era) => writeln!(
                f,
                "kernel CID era:      {era} (kernel {release}): mmcid measures {}",
                era.mmcid_measures()
            )?,
            None => writeln!(f, "kernel CID era:      unknown (kernel {release})")?,
        }
        write!(f, "default index:       {}", self.default_index)?;
        if let Some(e) = &self.index_env_error {
            write!(f, "\nPERCID_INDEX ignored: {e}")?;
        }
        Ok(())
    }
}
