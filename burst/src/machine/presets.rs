//! Built-in machine descriptions ([`Topology::preset`]).

use percid::topology::{
    CacheDomain, Core, CpuSet, Domain, DomainOrigin, Topology, TopologyParts, TopologySource,
};

use super::{MachineDescription, MachineError};

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
    /// The burst benchmark's cost model ([`crate::CostModel`]), kept as an opaque object.
    cost_model: fn() -> serde_json::Value,
}

impl Shape {
    fn build(&self) -> Result<MachineDescription, MachineError> {
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
        let topology = Topology::from_parts(
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
            },
            TopologySource::Description,
        )?;
        Ok(MachineDescription {
            topology,
            cost_model: Some((self.cost_model)()),
        })
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
    cost_model: epyc_9654_cost_model,
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
    cost_model: xeon_e_2388g_cost_model,
};

/// The burst cost model of the EPYC 9654 (see the crate docs, "The simulator and its cost
/// model"): latencies from public Zen 4 / Genoa figures; `core_ns_per_line`,
/// `long_idle_clock_factor` and `remote_modified_overlap` calibrated on the published `8c-1l3`
/// row (three of its six cells), `long_idle_ms` bounded by it.
fn epyc_9654_cost_model() -> serde_json::Value {
    serde_json::json!({
        "format": "percid-burst-cost/1",
        "line_bytes": 64,
        "pass_overhead_ns": 20.0,
        "core_ns_per_line": 2.5,
        "latency_ns": {
            "l1": 1.2,
            "l2": 3.8,
            "l3": 13.5,
            "same_l3_core": 19.0,
            "cross_l3": 110.0,
            "cross_socket": 210.0,
            "dram": 115.0
        },
        "stream_overlap": 8.0,
        "remote_modified_transactions": 2.0,
        "remote_modified_overlap": REMOTE_OVERLAP,
        "long_idle_ms": 500.0,
        "long_idle_clock_factor": 0.42,
        "sources": {
            "line_bytes": "x86-64 cache line",
            "pass_overhead_ns": "two vDSO clock_gettime reads (~10 ns each) around the loop",
            "core_ns_per_line": "calibrated: published 8c-1l3 cpu_id at 10 ms, 662 ns = 20 + 256 x 2.5",
            "latency_ns.l1": "Zen 4 L1d load-to-use 4-5 cycles at ~3.7 GHz",
            "latency_ns.l2": "Zen 4 L2 load-to-use 14 cycles at ~3.7 GHz",
            "latency_ns.l3": "Zen 4 L3 ~50 cycles at ~3.7 GHz (public Genoa measurements: 12-15 ns)",
            "latency_ns.same_l3_core": "Zen 4 core-to-core latency within a CCX, 15-19 ns (public core-to-core tests)",
            "latency_ns.cross_l3": "EPYC Genoa cross-CCD transfer through the I/O die, ~100-150 ns",
            "latency_ns.cross_socket": "2-socket Genoa cross-socket transfer, ~200+ ns",
            "latency_ns.dram": "Genoa local DRAM latency, ~100-120 ns (NPS1)",
            "stream_overlap": "assumption: 8 lines in flight for a prefetched read-modify-write stream (Zen 4 tracks 24 L1 / 64 L2 misses)",
            "remote_modified_transactions": "MOESI: a read (the owner keeps an Owned copy) then an ownership upgrade",
            "remote_modified_overlap": "calibrated: published 8c-1l3 legacy mm_cid at 200 ms, 19289 ns",
            "long_idle_ms": "bounded by the published row: > 200 ms (legacy at 200 ms still finds lines in the previous core's L2), <= 1600 ms (cpu_id at 200 ms, idle 8 x 200 ms, is slow); taken in between",
            "long_idle_clock_factor": "calibrated: published 8c-1l3 cpu_id at 200 ms, 1374 ns"
        }
    })
}

/// The burst cost model of the Xeon E-2388G: public latencies of the part; the core and
/// coherence-overlap parameters are the EPYC calibration, not measured on this machine.
fn xeon_e_2388g_cost_model() -> serde_json::Value {
    serde_json::json!({
        "format": "percid-burst-cost/1",
        "line_bytes": 64,
        "pass_overhead_ns": 20.0,
        "core_ns_per_line": 2.5,
        "latency_ns": {
            "l1": 1.0,
            "l2": 3.1,
            "l3": 11.0,
            "same_l3_core": 35.0,
            "cross_l3": 35.0,
            "cross_socket": 35.0,
            "dram": 85.0
        },
        "stream_overlap": 8.0,
        "remote_modified_transactions": 2.0,
        "remote_modified_overlap": REMOTE_OVERLAP,
        "long_idle_ms": 500.0,
        "long_idle_clock_factor": 0.42,
        "sources": {
            "latency_ns.l1": "Cypress Cove L1d 5 cycles at ~5 GHz",
            "latency_ns.l2": "Cypress Cove L2 13 cycles at ~4.5 GHz",
            "latency_ns.l3": "Rocket Lake ring L3, ~45-50 cycles (~11 ns)",
            "latency_ns.same_l3_core": "client ring core-to-core latency, ~30-40 ns (public core-to-core tests); one L3, so the cross_* figures are unused",
            "latency_ns.dram": "DDR4-3200 client latency, ~80-90 ns",
            "core_ns_per_line": "not measured on this part: the EPYC 9654 calibration",
            "remote_modified_overlap": "not measured on this part: the EPYC 9654 calibration",
            "long_idle_ms": "not measured on this part: the EPYC 9654 bound",
            "long_idle_clock_factor": "not measured on this part: the EPYC 9654 calibration"
        }
    })
}

/// See `remote_modified_overlap` in the cost models above.
const REMOTE_OVERLAP: f64 = 0.41;

impl MachineDescription {
    /// A built-in description by name (see [`PRESETS`]):
    ///
    /// * `epyc-9654`: 2 x AMD EPYC 9654, 384 CPUs, 24 L3 domains of 8 cores (32 MiB each);
    /// * `xeon-e-2388g`: 1 x Intel Xeon E-2388G, 16 CPUs, one 16 MiB L3.
    pub fn preset(name: &str) -> Result<MachineDescription, MachineError> {
        match name {
            "epyc-9654" => EPYC_9654.build(),
            "xeon-e-2388g" => XEON_E_2388G.build(),
            _ => Err(MachineError::UnknownPreset {
                name: name.to_string(),
                available: PRESETS.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }
}
