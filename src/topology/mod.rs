//! # Topology and placement
//!
//! The machine as CPUs (possible, online, allowed for this process), cores and their SMT
//! siblings, L1d/L2/L3 cache domains with sizes, packages and NUMA nodes ([`Topology`]); CPU
//! sets in Linux list syntax, of any width ([`CpuSet`]); pinning threads to one CPU or to a
//! set ([`pin_current_thread`]).
//!
//! Why this is library material: a program that shards per CPU or per concurrency ID also
//! places its threads (pin to a set, one worker per L3 domain, keep SMT siblings apart), and
//! the user-space CID allocator needs the calling thread's affinity mask, of any width. Machine
//! descriptions in JSON, presets of machines we do not have, the benchmark configurations
//! (`8c-1l3`, ...) and the cost model live in the `percid-burst` package, which builds its
//! machines through [`Topology::from_parts`].
//!
//! | file | concern |
//! |---|---|
//! | `cpuset.rs` | [`CpuSet`], list syntax, [`CpuSetError`] |
//! | `affinity.rs` | `sched_setaffinity` / `sched_getaffinity` / `sched_getcpu` |
//! | `model.rs` | [`Topology`], its parts and invariants, the human-readable report |
//! | `sysfs.rs` | reading sysfs, fallbacks |
//! | `hwloc.rs` | cross-check with libhwloc (feature `hwloc`) |
//! | `error.rs` | [`TopologyError`] |
//!
//! ## What is read from sysfs
//!
//! [`Topology::from_sysfs_root`] takes a directory standing for `/sys` (fixture trees in tests)
//! and reads, under `ROOT/devices/system/`:
//!
//! * `cpu/possible` and `cpu/online` (CPU lists; holes allowed). Without `possible`: the
//!   `cpuN` directories. Without `online`: the `cpuN` directories whose `cpuN/online` is not
//!   `0` (a CPU without that file cannot go offline).
//! * per online CPU, `cpuN/topology/`: `core_cpus_list` (else `thread_siblings_list`; else
//!   the CPU is a core of its own), `package_cpus_list` (else `core_siblings_list`, else
//!   grouping by `physical_package_id`, else one package), `die_cpus_list`.
//! * per online CPU, `cpuN/cache/index*/{level,type,size,shared_cpu_list}`: the L1 `Data`
//!   cache, the L2 and the L3 (`Data` or `Unified`). Sizes like `48K` become bytes.
//! * `node/nodeN/cpulist`: NUMA nodes; nodes without online CPUs (memory only) are left out.
//!
//! Offline CPUs have no topology or cache directory in sysfs, so they count in
//! [`Topology::possible`] only; every list read is intersected with the online CPUs.
//!
//! Fallbacks, each used for a whole level when one online CPU lacks the information: L3
//! domains from the die (`die_cpus_list`), then the package, then one synthetic domain of all
//! online CPUs; L2 domains from the core; L1d unknown (empty); nodes: one node 0 of all online
//! CPUs (also when the node lists do not partition the online CPUs). Stand-in domains carry
//! their [`DomainOrigin`] and no size. Inconsistent sibling lists are repaired: CPUs are
//! placed in increasing order, a CPU never in two domains, so every level partitions the
//! online CPUs.
//!
//! [`Topology::from_sysfs`] reads `/sys` and also sets the [allowed](Topology::allowed) CPUs
//! to the process's affinity mask ([`allowed_cpus`]); other constructors allow every online
//! CPU (narrow with [`Topology::with_allowed`]).
//!
//! ## Invariants
//!
//! Every [`Topology`], whatever its source, passed [`Topology::from_parts`]: online CPUs are
//! non-empty and possible; allowed CPUs are online; cores, L2 domains, L3 domains, packages and
//! nodes each partition the online CPUs (every online CPU in exactly one domain of each kind;
//! no empty domain); L1d domains are empty (unknown) or a partition too; package ids and node
//! ids are distinct; each list is sorted by first CPU. A core belongs to the L3 domain of its
//! lowest CPU (nesting is not checked: some virtual machines report odd caches).
//!
//!
//! ## Example
//!
//! ```
//! use percid::topology::{CpuSet, Topology};
//!
//! let machine = Topology::from_sysfs().unwrap();
//! // One worker per L3 domain, pinned to the allowed CPUs of that domain.
//! for domain in machine.l3() {
//!     let cpus: CpuSet = domain.cpus.intersection(machine.allowed());
//!     if !cpus.is_empty() {
//!         println!("L3 domain {}: {} CPU(s)", cpus, cpus.len());
//!     }
//! }
//! ```

mod affinity;
mod cpuset;
mod error;
#[cfg(feature = "hwloc")]
pub mod hwloc;
mod model;
mod sysfs;

use std::path::Path;

pub use crate::util::possible_cpu_count;
pub use affinity::{
    allowed_cpus, current_cpu, current_thread_affinity, pin_current_thread,
    pin_current_thread_to_cpu, process_threads_and_cpus, thread_affinity,
};
pub use cpuset::{CpuSet, CpuSetError, CpuSetIter};
pub use error::TopologyError;
pub use model::{
    CacheDomain, Core, Domain, DomainOrigin, Topology, TopologyParts, TopologySource, human_size,
};

impl Topology {
    /// This machine, from `/sys`, with the [allowed](Topology::allowed) CPUs set to the
    /// calling thread's affinity mask ([`allowed_cpus`]).
    pub fn from_sysfs() -> Result<Topology, TopologyError> {
        let root = Path::new("/sys");
        let parts = sysfs::read(root, "sysfs".to_string())?;
        let allowed = allowed_cpus()?;
        Ok(Topology::from_parts(
            parts,
            TopologySource::Sysfs {
                root: root.to_path_buf(),
            },
        )?
        .with_allowed(&allowed))
    }

    /// The machine described by the sysfs tree under `root`, a directory standing for `/sys`
    /// (it reads `root/devices/system/{cpu,node}`). All online CPUs are allowed.
    pub fn from_sysfs_root(root: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let root = root.as_ref();
        let parts = sysfs::read(root, format!("sysfs:{}", root.display()))?;
        Topology::from_parts(
            parts,
            TopologySource::Sysfs {
                root: root.to_path_buf(),
            },
        )
    }
}
