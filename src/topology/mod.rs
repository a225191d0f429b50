//! # Topology and placement
//!
//! The machine as CPUs (possible, online, allowed for this process), cores and their SMT
//! siblings, L1d/L2/L3 cache domains with sizes, packages and NUMA nodes ([`Topology`]); CPU
//! sets in Linux list syntax ([`CpuSet`]); pinning threads ([`pin_current_thread`]); the
//! benchmark configurations of the reference measurement ([`Topology::configurations`]).
//!
//! | file | concern |
//! |---|---|
//! | `cpuset.rs` | [`CpuSet`], list syntax, [`CpuSetError`] |
//! | `affinity.rs` | `sched_setaffinity` / `sched_getaffinity` / `sched_getcpu` |
//! | `model.rs` | [`Topology`], its parts and invariants, the human-readable report |
//! | `sysfs.rs` | reading sysfs, fallbacks |
//! | `description.rs` | JSON descriptions (format below) |
//! | `presets.rs` | built-in descriptions ([`PRESETS`]) |
//! | `configurations.rs` | [`Configuration`]s: `8c-1l3`, `24c-24l3`, ... |
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
//! ## JSON descriptions
//!
//! A machine that is not this one is described in JSON ([`Topology::from_json`],
//! [`Topology::to_json`]); CPU sets are strings in Linux list syntax, sizes are bytes:
//!
//! ```json
//! {
//!   "format": "percid-topology/1",
//!   "name": "two-cores",
//!   "note": "free text: where the figures come from",
//!   "possible": "0-1",
//!   "online": "0-1",
//!   "packages": [ { "id": 0, "cpus": "0-1" } ],
//!   "nodes": [ { "id": 0, "cpus": "0-1" } ],
//!   "cores": [ "0", "1" ],
//!   "l1d": [ { "cpus": "0", "size": 49152 }, { "cpus": "1", "size": 49152 } ],
//!   "l2": [ { "cpus": "0", "size": 2097152 }, { "cpus": "1", "size": 2097152 } ],
//!   "l3": [ { "cpus": "0-1", "size": 314572800, "origin": "cache" } ],
//!   "cost_model": { "anything": "kept as is" }
//! }
//! ```
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `format` | yes | `"percid-topology/1"` |
//! | `name` | yes | short name |
//! | `note` | no | free text |
//! | `cores` | yes | one CPU list per core: its SMT siblings |
//! | `l3` | yes | L3 domains: `{ "cpus", "size"?, "origin"? }` |
//! | `packages` | yes | `{ "id"?, "cpus" }` (id defaults to the position) |
//! | `online` | no | defaults to the union of the cores |
//! | `possible` | no | defaults to `online`; may add offline CPUs and holes |
//! | `l2` | no | like `l3`; default one per core, origin `core`, no size |
//! | `l1d` | no | like `l3`; default unknown (`[]`) |
//! | `nodes` | no | like `packages`; default one node 0 of all online CPUs |
//! | `cost_model` | no | any JSON object, kept verbatim and written back, not interpreted here |
//!
//! `size` is bytes or `null` (unknown); `origin` is `cache` (default), `die`, `package`,
//! `core` or `synthetic` (what a sysfs fallback produced). Domain order does not matter.
//! Errors are typed [`TopologyError`]s: invalid JSON (with line and column), wrong or missing
//! `format`, missing field, unknown field (a typo, or a domain kind such as `"l4"`), wrong
//! type, bad CPU list, a CPU listed in two domains of one kind, an online CPU in none, a
//! domain naming a CPU that is not online, an empty domain, duplicate ids, a cost model that
//! is not an object. The allowed CPUs are not part of a description: a loaded description
//! allows all its online CPUs.
//!
//! ## Configurations
//!
//! See [`Topology::configurations`]: `Nc-1l3`, `Nc-Nl3`, `Cc-Ll3`, `Tt-Ll3`, computed on the
//! allowed CPUs, duplicates dropped. The `epyc-9654` preset yields `8c-1l3`, `24c-24l3`,
//! `192c-24l3`, `384t-24l3`.

mod affinity;
mod configurations;
mod cpuset;
pub(crate) mod description;
mod error;
#[cfg(feature = "hwloc")]
pub mod hwloc;
mod model;
mod presets;
mod sysfs;

use std::path::Path;

pub use crate::util::possible_cpu_count;
pub use affinity::{
    allowed_cpus, current_cpu, current_thread_affinity, pin_current_thread,
    pin_current_thread_to_cpu,
};
pub use configurations::{Configuration, ConfigurationKind};
pub use cpuset::{CpuSet, CpuSetError, CpuSetIter};
pub use description::FORMAT;
pub use error::TopologyError;
pub use model::{CacheDomain, Core, Domain, DomainOrigin, Topology, TopologyParts, TopologySource};
pub use presets::PRESETS;

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
