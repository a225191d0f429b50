//! Index sources: what a per-slot structure is indexed by.
//!
//! | [`Index`] | slot of the calling thread | slots needed | exclusivity by |
//! |---|---|---|---|
//! | `CpuId` | the CPU it runs on (rseq `cpu_id`) | possible CPUs | rseq critical sections |
//! | `MmCid` | the kernel's concurrency ID (rseq `mm_cid`) | `min(allowed CPUs, threads)` used, possible CPUs reserved | rseq critical sections |
//! | `User(policy)` | a CID leased from [`user_cid`] | same as mm_cid | the lease |
//!
//! # Default
//!
//! [`Index::default()`] is `PERCID_INDEX` when set (`cpu`, `mmcid`, `user`, `user-legacy`,
//! `user-task`),
//! otherwise [`Index::auto()`]: kernel mm_cid where available, then cpu_id through rseq,
//! then `User(CacheLocal)`. A bad `PERCID_INDEX` is reported by [`Index::from_env`] as a
//! typed error; structures built with the default then use `auto()` and [`crate::status()`]
//! says why (a warning is also printed once on stderr).
//!
//! # Resolution
//!
//! A structure resolves its index once, at construction
//! ([`Access::of`](crate::ops::Access::of)): `CpuId` and
//! `MmCid` use rseq critical sections when the process has rseq, the architecture has
//! critical sections, and (for `MmCid`) the kernel maintains mm_cid; otherwise they fall
//! back to leases from the cache-local user-space allocator, which give the same
//! per-slot exclusivity. Resolution is per structure, never per thread, so rseq-indexed and
//! lease-indexed accesses never meet on one structure's slots. A thread that cannot use
//! rseq on an rseq-indexed structure (its own registration failed) and an index beyond a
//! structure's slots both go to the structure's shared overflow path.

pub mod era;
pub mod user_cid;

pub(crate) use user_cid::leases_of_current_thread;
pub use user_cid::{AllocatorConfig, CidAllocator, CidLease, Policy};

use crate::rseq;
use std::fmt;
use std::sync::OnceLock;

/// The source of a per-slot structure's slot index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// The CPU number (rseq `cpu_id`).
    CpuId,
    /// The kernel's concurrency ID (rseq `mm_cid`, Linux >= 6.3).
    MmCid,
    /// A concurrency ID from the user-space allocator, with the given policy.
    User(Policy),
}

/// A bad index name (from `PERCID_INDEX` or a command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexError {
    value: String,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown index source {:?}: expected one of cpu, mmcid, user-legacy, user-local, user-task",
            self.value
        )
    }
}

impl std::error::Error for IndexError {}

impl Index {
    /// Every index source, in the order benchmarks list them.
    pub const ALL: [Index; 5] = [
        Index::CpuId,
        Index::MmCid,
        Index::User(Policy::Legacy),
        Index::User(Policy::CacheLocal),
        Index::User(Policy::PerTask),
    ];

    /// Parses `cpu`, `mmcid`, `user` / `user-local` (cache-local policy), `user-legacy` or
    /// `user-task` (per-task ownership of Linux 6.19).
    pub fn parse(s: &str) -> Result<Index, IndexError> {
        match s.trim() {
            "cpu" | "cpu_id" | "cpuid" => Ok(Index::CpuId),
            "mmcid" | "mm_cid" | "mm-cid" => Ok(Index::MmCid),
            "user" | "user-local" | "user-cache-local" => Ok(Index::User(Policy::CacheLocal)),
            "user-legacy" => Ok(Index::User(Policy::Legacy)),
            "user-task" | "user-per-task" => Ok(Index::User(Policy::PerTask)),
            other => Err(IndexError {
                value: other.to_string(),
            }),
        }
    }

    /// The short name used on command lines and in reports (`cpu`, `mmcid`, `user-legacy`,
    /// `user-local`, `user-task`).
    pub fn name(self) -> &'static str {
        match self {
            Index::CpuId => "cpu",
            Index::MmCid => "mmcid",
            Index::User(Policy::Legacy) => "user-legacy",
            Index::User(Policy::CacheLocal) => "user-local",
            Index::User(Policy::PerTask) => "user-task",
        }
    }

    /// `PERCID_INDEX`, if set: `Ok(None)` when unset, a typed error when unparsable.
    pub fn from_env() -> Result<Option<Index>, IndexError> {
        match std::env::var("PERCID_INDEX") {
            Ok(v) => Index::parse(&v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(IndexError {
                value: v.to_string_lossy().into_owned(),
            }),
        }
    }

    /// The best source this process has: kernel mm_cid, then cpu_id, then `User(CacheLocal)`.
    pub fn auto() -> Index {
        if rseq::rseq_usable() {
            if rseq::mm_cid_available() {
                Index::MmCid
            } else {
                Index::CpuId
            }
        } else {
            Index::User(Policy::CacheLocal)
        }
    }
}

impl Default for Index {
    /// `PERCID_INDEX` if set and valid, otherwise [`Index::auto()`]; read once per process.
    fn default() -> Index {
        static DEFAULT: OnceLock<Index> = OnceLock::new();
        *DEFAULT.get_or_init(|| match Index::from_env() {
            Ok(Some(i)) => i,
            Ok(None) => Index::auto(),
            Err(e) => {
                eprintln!("percid: PERCID_INDEX ignored: {e}; using {}", Index::auto());
                Index::auto()
            }
        })
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Index {
    type Err = IndexError;
    fn from_str(s: &str) -> Result<Index, IndexError> {
        Index::parse(s)
    }
}

/// The allocator every rseq index falls back to: the process-wide cache-local one (the
/// imitation of the kernel's mm_cid of Linux 6.13-6.18).
pub(crate) fn fallback_allocator() -> &'static CidAllocator {
    CidAllocator::global(Policy::CacheLocal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_round_trip() {
        for i in Index::ALL {
            assert_eq!(Index::parse(i.name()), Ok(i));
        }
        assert_eq!(Index::parse("user"), Ok(Index::User(Policy::CacheLocal)));
        assert_eq!(Index::parse("user-task"), Ok(Index::User(Policy::PerTask)));
        assert_eq!(Index::User(Policy::PerTask).name(), "user-task");
        let e = Index::parse("gpu").unwrap_err();
        assert!(e.to_string().contains("\"gpu\""), "{e}");
    }
}
