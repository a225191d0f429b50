//! [`TopologyError`], the error of everything in [`crate::topology`] but CPU-list parsing.

use std::fmt;
use std::path::PathBuf;

use super::CpuSetError;

/// What went wrong reading a topology, validating one built from parts, or pinning a thread.
///
/// `kind` fields name a domain list as in [`TopologyParts`](super::TopologyParts): `"cores"`, `"l1d"`, `"l2"`, `"l3"`,
/// `"packages"`, `"nodes"`; `index` is a position in that list as given.
#[derive(Debug)]
#[non_exhaustive]
pub enum TopologyError {
    /// A file could not be read.
    Io {
        /// The file (or directory).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A sysfs file held something other than what the kernel writes there.
    BadValue {
        /// The file.
        path: PathBuf,
        /// Its content, trimmed.
        value: String,
    },
    /// A CPU list (in a sysfs file or a JSON field) did not parse.
    BadCpuList {
        /// The file path or JSON field (`l3[2].cpus`).
        context: String,
        /// Why.
        source: CpuSetError,
    },
    /// No online CPU could be found.
    NoCpus {
        /// Where the CPUs were looked for.
        context: String,
    },
    /// An online CPU appears in two domains of one kind.
    CpuListedTwice {
        /// The CPU.
        cpu: usize,
        /// Domain kind.
        kind: &'static str,
        /// First domain naming it.
        first: usize,
        /// Second domain naming it.
        second: usize,
    },
    /// A domain names a CPU that is not online (or not possible).
    CpuNotOnline {
        /// The CPU.
        cpu: usize,
        /// Domain kind.
        kind: &'static str,
        /// The domain.
        index: usize,
    },
    /// An online CPU belongs to no domain of a kind every CPU must be in.
    CpuNotCovered {
        /// The CPU.
        cpu: usize,
        /// Domain kind.
        kind: &'static str,
    },
    /// An online CPU is not a possible CPU.
    OnlineNotPossible {
        /// The CPU.
        cpu: usize,
    },
    /// A domain without CPUs.
    EmptyDomain {
        /// Domain kind.
        kind: &'static str,
        /// The domain.
        index: usize,
    },
    /// Two packages (or two nodes) with the same id.
    DuplicateId {
        /// Domain kind.
        kind: &'static str,
        /// The id.
        id: usize,
    },
    /// Pinning to an empty CPU set.
    EmptyCpuSet,
    /// A CPU number beyond [`CpuSet::MAX_CPU`](super::CpuSet::MAX_CPU).
    CpuOutOfRange {
        /// The CPU.
        cpu: usize,
    },
    /// A system call failed.
    Syscall {
        /// The call.
        call: &'static str,
        /// The error (`errno`).
        source: std::io::Error,
    },
    /// libhwloc failed (only with the `hwloc` feature).
    Hwloc {
        /// What failed.
        message: String,
    },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TopologyError::*;
        match self {
            Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            BadValue { path, value } => {
                write!(f, "unexpected content '{value}' in {}", path.display())
            }
            BadCpuList { context, source } => write!(f, "bad CPU list in {context}: {source}"),
            NoCpus { context } => write!(f, "no online CPU found in {context}"),
            CpuListedTwice {
                cpu,
                kind,
                first,
                second,
            } => write!(
                f,
                "CPU {cpu} is listed in both {kind}[{first}] and {kind}[{second}]"
            ),
            CpuNotOnline { cpu, kind, index } => {
                write!(f, "{kind}[{index}] lists CPU {cpu}, which is not online")
            }
            CpuNotCovered { cpu, kind } => {
                write!(f, "online CPU {cpu} is in none of the {kind} domains")
            }
            OnlineNotPossible { cpu } => write!(f, "online CPU {cpu} is not a possible CPU"),
            EmptyDomain { kind, index } => write!(f, "{kind}[{index}] has no CPU"),
            DuplicateId { kind, id } => write!(f, "two {kind} have id {id}"),
            EmptyCpuSet => write!(f, "cannot pin to an empty CPU set"),
            CpuOutOfRange { cpu } => write!(
                f,
                "CPU {cpu} is beyond the supported range (0-{})",
                super::CpuSet::MAX_CPU
            ),
            Syscall { call, source } => write!(f, "{call} failed: {source}"),
            Hwloc { message } => write!(f, "hwloc: {message}"),
        }
    }
}

impl std::error::Error for TopologyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TopologyError::Io { source, .. } | TopologyError::Syscall { source, .. } => {
                Some(source)
            }
            TopologyError::BadCpuList { source, .. } => Some(source),
            _ => None,
        }
    }
}
