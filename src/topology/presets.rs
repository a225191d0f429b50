//! Built-in machine descriptions ([`Topology::preset`]).

use super::model::{CacheDomain, Core, Domain, DomainOrigin, TopologyParts, TopologySource};
use super::{CpuSet, Topology, TopologyError};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Names of the built-in presets.
pub const PRESETS: &[&str] = &["epyc-9654", "xeon-e-2388g"];

/// A symmetric machine, numbered as Linux numbers x86 parts whose firmware lists the first
/// hardware thread of every core first: core `k` (counted across packages) has CPUs
/// `k, k + cores, k + 2 * cores, ...` with `cores` the total number of cores. One NUMA node per
/// package; L1d and L2 per core.
struct Shape {
    name: &'static str,
    note: &'static str,
    packages: usize,
    cores_per_package: usize,
    threads_per_core: usize,
    cores_per_l3: usize,
    l1d: u64,
    l2: u64,
    l3: u64,
}

impl Shape {
    fn build(&self) -> Result<Topology, TopologyError> {
        let cores_total = self.packages * self.cores_per_package;
        let core_cpus = |k: usize| -> CpuSet {
            (0..self.threads_per_core)
                .map(|t| k + t * cores_total)
                .collect()
        };
        let union_of = |ks: std::ops::Range<usize>| -> CpuSet {
            ks.fold(CpuSet::new(), |acc, k| acc.union(&core_cpus(k)))
        };
        let cores: Vec<Core> = (0..cores_total)
            .map(|k| Core { cpus: core_cpus(k) })
            .collect();
        let per_core = |size: u64| -> Vec<CacheDomain> {
            cores
                .iter()
                .map(|c| CacheDomain {
                    size: Some(size),
                    cpus: c.cpus.clone(),
                    origin: DomainOrigin::Cache,
                })
                .collect()
        };
        let l3 = (0..cores_total / self.cores_per_l3)
            .map(|d| CacheDomain {
                size: Some(self.l3),
                cpus: union_of(d * self.cores_per_l3..(d + 1) * self.cores_per_l3),
                origin: DomainOrigin::Cache,
            })
            .collect();
        let packages: Vec<Domain> = (0..self.packages)
            .map(|p| Domain {
                id: p,
                cpus: union_of(p * self.cores_per_package..(p + 1) * self.cores_per_package),
            })
            .collect();
        let online = CpuSet::first_n(cores_total * self.threads_per_core);
        Topology::from_parts(
            TopologyParts {
                name: self.name.to_string(),
                note: Some(self.note.to_string()),
                possible: online.clone(),
                online,
                l1d: per_core(self.l1d),
                l2: per_core(self.l2),
                l3,
                nodes: packages.clone(),
                packages,
                cores,
                cost_model: None,
            },
            TopologySource::Description,
        )
    }
}

const EPYC_9654: Shape = Shape {
    name: "epyc-9654",
    note: "AMD EPYC 9654 (Zen 4 'Genoa'), 2 sockets in NPS1 mode: per socket 96 cores, \
           2 threads per core, 12 CCDs of 8 cores each with a 32 MiB L3; per core 1 MiB L2 \
           and 32 KiB L1d (AMD EPYC 9004 series specifications; the machine of the published \
           cache-local mm_cid measurement). Linux numbering: first threads 0-191, SMT \
           siblings 192-383. One NUMA node per socket.",
    packages: 2,
    cores_per_package: 96,
    threads_per_core: 2,
    cores_per_l3: 8,
    l1d: 32 * KIB,
    l2: MIB,
    l3: 32 * MIB,
};

const XEON_E_2388G: Shape = Shape {
    name: "xeon-e-2388g",
    note: "Intel Xeon E-2388G (Rocket Lake-E, 1-socket server part): 8 cores, 2 threads \
           per core, one 16 MiB L3 shared by all cores, 512 KiB L2 and 48 KiB L1d per core \
           (Intel product specifications for the Xeon E-2388G; Cypress Cove core caches). \
           Numbering as Linux usually enumerates it: first threads 0-7, SMT siblings 8-15.",
    packages: 1,
    cores_per_package: 8,
    threads_per_core: 2,
    cores_per_l3: 8,
    l1d: 48 * KIB,
    l2: 512 * KIB,
    l3: 16 * MIB,
};

impl Topology {
    /// A built-in description by name (see [`PRESETS`]):
    ///
    /// * `epyc-9654`: 2 x AMD EPYC 9654, 384 CPUs, 24 L3 domains of 8 cores (32 MiB each);
    /// * `xeon-e-2388g`: 1 x Intel Xeon E-2388G, 16 CPUs, one 16 MiB L3.
    pub fn preset(name: &str) -> Result<Topology, TopologyError> {
        match name {
            "epyc-9654" => EPYC_9654.build(),
            "xeon-e-2388g" => XEON_E_2388G.build(),
            _ => Err(TopologyError::UnknownPreset {
                name: name.to_string(),
                available: PRESETS.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }
}
