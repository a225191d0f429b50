//! Built-in machine descriptions ([`Topology::preset`]).

use percid::topology::{
    CacheDomain, Core, CpuSet, Domain, DomainOrigin, Topology, TopologyParts, TopologySource,
};

use super::{MachineDescription, MachineError};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Names of the built-in presets.
pub const PRESETS: &[&str] = &["epyc-9654", "epyc-7763", "xeon-e-2388g"];

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

const EPYC_7763: Shape = Shape {
    name: "epyc-7763",
    note: "AMD EPYC 7763 (Zen 3 'Milan'), 2 sockets in NPS1 mode: per socket 64 cores, \
           2 threads per core, 8 CCDs of 8 cores each with one 32 MiB L3 (one CCX per CCD); \
           per core 512 KiB L2 and 32 KiB L1d (AMD EPYC 7003 series specifications). Linux \
           numbering: first threads 0-127, SMT siblings 128-255. One NUMA node per socket.",
    packages: 2,
    cores_per_package: 64,
    threads_per_core: 2,
    cores_per_l3: 8,
    l1d: 32 * KIB,
    l2: 512 * KIB,
    l3: 32 * MIB,
    cost_model: epyc_7763_cost_model,
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

/// Sources cited by the cost models below.
const ANANDTECH_ZEN4_C2C: &str = "AnandTech, 'AMD Zen 4 Ryzen 9 7950X and Ryzen 5 7600X Review: Retaking The High-End', page 'Core-to-Core Latency' (mirror: https://jiyinulaqia.pages.dev/amd-zen-4-ryzen-9-7950x-and-ryzen-5-7600x-review-retaking-the-high-end.html)";
const CNC_GENOA_X: &str = "Chips and Cheese, 'Genoa-X: Server V-Cache Round 2' (2023), https://chipsandcheese.com/2023/07/17/genoa-x-server-v-cache-round-2/";
const CNC_ZEN4_MEM: &str = "Chips and Cheese, 'AMD's Zen 4, Part 2: Memory Subsystem and Conclusion', https://chipsandcheese.com/p/amds-zen-4-part-2-memory-subsystem-and-conclusion";
const CNC_NPS0: &str = "Chips and Cheese, NPS0 article on 2 x EPYC 9575F (2025; quotes the EPYC 9355P in NPS1 ~90 ns below NPS0's ~220 ns), https://morerss.com/Chips%20and%20Cheese";
const ANANDTECH_ROME_MEM: &str = "AnandTech, 'AMD Rome EPYC 2nd gen' review, page 'Memory Subsystem: Latency' (~122 ns NPS1 full random), https://www.anandtech.com/show/14694/amd-rome-epyc-2nd-gen/7";
const AMD_SOG_ZEN4: &str = "AMD, 'Software Optimization Guide for the AMD Zen 4 Microarchitecture' (pub. 57647): L1D miss address buffers (24) and L2 outstanding misses (64)";
const CC6_BOBCAT: &str = "'The core-C6 (CC6) sleep state of the AMD Bobcat x86 microprocessor' (ISLPED 2012): the core and its L2 are power-gated after saving state, 31 us restore";
const C1_SNOOP: &str = "Intel desktop processor datasheet, 'Core C-states' (a core in C1 keeps its caches and processes snoops; C3 and deeper flush L1/L2 to the L3), http://office.manualsonline.com/manuals/mfg/intel/bx80633i74820k.html?p=35";
const AMD_C3_FLUSH: &str = "Phoronix, 'AMD To Optimize C3 Entry On Linux By Finally Skipping The Cache Flush' (2021), https://www.phoronix.com/news/AMD-Linux-Skip-C3-Cache-Flush";
const CLOCK_RAMP: &str = "a long-sleeping task's utilization is decayed at wake-up, so the governor raises the frequency only after it has run a while (kernel commit a07630b8b2c1 'sched/cpufreq/schedutil: Use util_est for OPP selection', https://git.zx2c4.com/linux-dev/commit/?id=a07630b8b2c16f82fd5b71d890079f4dd7599c1d); with amd-pstate the CPPC firmware picks the frequency on a ~1 ms timescale from the utilization it sees (commit ca08e46d4215 'cpufreq: amd-pstate: update pstate frequency transition delay time', https://git.zx2c4.com/linux-dev/commit/?id=ca08e46d4215e85eb3cef2481255431d98da56da): a pass of a few us after a long sleep runs at the low clock";
const FITTED_ON: &str = "FITTED on the published 8c-1l3 and 192c-24l3 rows (12 cells; `cargo run --release -p percid-burst --example fit_model`, starting from percid_burst::fit::PRIOR); range = spread of the full and the two leave-one-row-out fits, widened by 5% each way";

/// The parts of a cost model that differ between presets.
struct ModelFigures {
    core_ns_per_line: f64,
    latency: [f64; 8],
    stream: f64,
    modified_cross_l3: f64,
    fabric_read_gbps: f64,
    clock_factor: f64,
    owner_probe_ns: f64,
    ranges: serde_json::Value,
    sources: serde_json::Value,
}

fn cost_model(f: ModelFigures) -> serde_json::Value {
    let [l1, l2, l3, same, cross, socket, dram_local, dram_remote] = f.latency;
    serde_json::json!({
        "format": "percid-burst-cost/2",
        "line_bytes": 64,
        "pass_overhead_ns": 20.0,
        "core_ns_per_line": f.core_ns_per_line,
        "latency_ns": {
            "l1": l1, "l2": l2, "l3": l3,
            "same_l3_modified": same,
            "cross_l3": cross,
            "cross_socket": socket,
            "dram_local": dram_local,
            "dram_remote": dram_remote
        },
        "lines_in_flight": {
            "stream": f.stream,
            "modified_same_l3": 1.0,
            "modified_cross_l3": f.modified_cross_l3
        },
        "bandwidth": { "fabric_read_gbps": f.fabric_read_gbps },
        "idle": {
            "deep_idle_ms": 500.0,
            "l3_flush_ms": 1000.0,
            "clock_factor": f.clock_factor,
            "clock_full_ms": 80.0,
            "clock_low_ms": 1600.0,
            "owner_probe_ns": f.owner_probe_ns,
            "owner_probe_full_ms": 200.0
        },
        "draws": 100,
        "ranges": f.ranges,
        "sources": f.sources
    })
}

/// The fitted parameters of the EPYC 9654 (see `FITTED_ON`): value and range.
const EPYC_CORE_NS: (f64, [f64; 2]) = (2.664, [2.52, 3.24]);
const EPYC_CLOCK: (f64, [f64; 2]) = (0.444, [0.42, 0.525]);
const EPYC_PROBE: (f64, [f64; 2]) = (69.3, [49.8, 75.0]);
const EPYC_MOD_CROSS: (f64, [f64; 2]) = (3.19, [1.9, 3.35]);

/// The burst cost model of the EPYC 9654 (see the [model docs](crate::model)).
fn epyc_9654_cost_model() -> serde_json::Value {
    cost_model(ModelFigures {
        core_ns_per_line: EPYC_CORE_NS.0,
        latency: [1.1, 3.8, 13.5, 19.0, 110.0, 200.0, 115.0, 200.0],
        stream: 12.0,
        modified_cross_l3: EPYC_MOD_CROSS.0,
        fabric_read_gbps: 64.0,
        clock_factor: EPYC_CLOCK.0,
        owner_probe_ns: EPYC_PROBE.0,
        ranges: serde_json::json!({
            "pass_overhead_ns": [10.0, 40.0],
            "core_ns_per_line": EPYC_CORE_NS.1,
            "latency_ns.l3": [12.0, 16.0],
            "latency_ns.same_l3_modified": [15.0, 25.0],
            "latency_ns.cross_l3": [80.0, 150.0],
            "latency_ns.cross_socket": [170.0, 250.0],
            "latency_ns.dram_local": [100.0, 135.0],
            "latency_ns.dram_remote": [180.0, 240.0],
            "lines_in_flight.stream": [8.0, 24.0],
            "lines_in_flight.modified_same_l3": [1.0, 1.5],
            "lines_in_flight.modified_cross_l3": EPYC_MOD_CROSS.1,
            "bandwidth.fabric_read_gbps": [40.0, 72.0],
            "idle.deep_idle_ms": [200.0, 1500.0],
            "idle.l3_flush_ms": [300.0, 4000.0],
            "idle.clock_factor": EPYC_CLOCK.1,
            "idle.clock_full_ms": [80.0, 240.0],
            "idle.clock_low_ms": [800.0, 1600.0],
            "idle.owner_probe_ns": EPYC_PROBE.1,
            "idle.owner_probe_full_ms": [150.0, 300.0]
        }),
        sources: serde_json::json!({
            "line_bytes": "x86-64 cache line",
            "pass_overhead_ns": "two vDSO clock_gettime reads (~10 ns each) around the loop; range 10-40",
            "core_ns_per_line": FITTED_ON,
            "latency_ns.l1": format!("Zen 4 L1D 4-5 cycles at ~3.7 GHz: {CNC_ZEN4_MEM}"),
            "latency_ns.l2": format!("Zen 4 L2 14 cycles at ~3.7 GHz: {CNC_ZEN4_MEM}"),
            "latency_ns.l3": format!("Genoa L3 ~50 cycles at ~3.7 GHz, 12-16 ns: {CNC_GENOA_X}"),
            "latency_ns.same_l3_modified": format!("Zen 4 core-to-core within one CCX, 15-19 ns (up to 25 ns on servers): {ANANDTECH_ZEN4_C2C}"),
            "latency_ns.cross_l3": format!("cross-CCD transfer through the I/O die: ~80 ns on the desktop part ({ANANDTECH_ZEN4_C2C}), ~100-150 ns on the larger Genoa I/O die ({CNC_GENOA_X})"),
            "latency_ns.cross_socket": format!("socket-to-socket transfer on 2-socket Genoa, ~170-250 ns: {CNC_GENOA_X}"),
            "latency_ns.dram_local": format!("Genoa NPS1 local DRAM ~100-135 ns: {CNC_NPS0}; {ANANDTECH_ROME_MEM}"),
            "latency_ns.dram_remote": format!("remote-socket DRAM, local plus the socket hop, ~180-240 ns: {CNC_GENOA_X}; {CNC_NPS0}"),
            "lines_in_flight.stream": format!("prefetched read-modify-write stream, bounded by the L1D's 24 miss buffers (L2: 64 outstanding misses); range 8-24: {AMD_SOG_ZEN4}"),
            "lines_in_flight.modified_same_l3": "assumption: within a CCX, probes to a clock-gated owner core are answered one at a time (range 1-1.5)",
            "lines_in_flight.modified_cross_l3": FITTED_ON,
            "bandwidth.fabric_read_gbps": "per-CCD GMI link to the I/O die: 32 B per fabric clock read at FCLK ~1.8-2.0 GHz, ~64 GB/s (range 40-72)",
            "idle.deep_idle_ms": format!("CC6 flushes L1/L2 and gates the core ({CC6_BOBCAT}; {AMD_C3_FLUSH}); the idle time after which a core's lines are in its L3 is bounded by the published 8c-1l3 legacy cell at 200 ms (it still finds the lines modified in the previous core): above 200 ms; range 200-1500 ms"),
            "idle.l3_flush_ms": "a CCX all of whose cores are in CC6 may power down with its L3 written back; bounded by the published cells: above 200 ms (8c-1l3 cache-local at 200 ms keeps its lines in L3), below ~4.8 s (192c-24l3 cpu_id at 200 ms, a CCX idle ~4.8 s between passes, is DRAM-bound); range 300-4000 ms",
            "idle.clock_factor": format!("{FITTED_ON}; mechanism: {CLOCK_RAMP}"),
            "idle.clock_full_ms": "bounded by the published cells: a core idle 80 ms (8c-1l3 cpu_id at 10 ms) runs at the steady clock; range 80-240 ms (no published cell between 80 ms and 1.6 s of idle)",
            "idle.clock_low_ms": "bounded by the published cells: a core idle 1.6 s (8c-1l3 cpu_id at 200 ms) or more runs at the low clock; range 800-1600 ms; between clock_full_ms and clock_low_ms the clock is assumed to fall log-linearly (the core wakes at a P-state that the power manager lowered the longer it stayed idle)",
            "idle.owner_probe_ns": format!("{FITTED_ON}; mechanism: a core in C1 keeps its caches and answers probes after its clock is ungated ({C1_SNOOP}); bounded by the C1 exit latency (~1 us)"),
            "idle.owner_probe_full_ms": "assumption: the owner's answer slows linearly with its idle time up to this time (it sinks from clock gating into lower clock and voltage), constant beyond; the form was chosen after seeing that 192c-24l3's legacy cells differ with the previous owner's idle time (~100 ms at 10 ms delay, ~190 ms at 200 ms); 200 ms is the longest owner idle of the published cells, not fitted; range 150-300 ms",
            "mm_cid": "Linux 6.4-6.12 legacy policy (per-CPU CID released ~100 ms after last use by a periodic scan, lowest free ID; 'sched: Introduce per-memory-map concurrency ID', Desnoyers/Zijlstra) and 6.13-6.18 cache-local policy ('sched: Improve cache locality of RSEQ concurrency IDs for intermittent workloads', Desnoyers, 2024): the library's DeterministicAllocator"
        }),
    })
}

/// The burst cost model of the EPYC 7763 (Zen 3 'Milan'): public latencies of the part;
/// the fitted parameters are the EPYC 9654 fit, not measured on this part.
fn epyc_7763_cost_model() -> serde_json::Value {
    cost_model(ModelFigures {
        core_ns_per_line: EPYC_CORE_NS.0 * 3.7 / 3.5,
        latency: [1.15, 3.4, 13.5, 22.0, 110.0, 210.0, 115.0, 200.0],
        stream: 12.0,
        modified_cross_l3: EPYC_MOD_CROSS.0,
        fabric_read_gbps: 51.0,
        clock_factor: EPYC_CLOCK.0,
        owner_probe_ns: EPYC_PROBE.0,
        ranges: serde_json::json!({
            "core_ns_per_line": [2.8, 3.1],
            "latency_ns.l3": [12.0, 16.0],
            "latency_ns.same_l3_modified": [18.0, 30.0],
            "latency_ns.cross_l3": [90.0, 150.0],
            "latency_ns.cross_socket": [180.0, 260.0],
            "latency_ns.dram_local": [100.0, 135.0],
            "latency_ns.dram_remote": [180.0, 240.0],
            "lines_in_flight.stream": [8.0, 24.0],
            "lines_in_flight.modified_cross_l3": EPYC_MOD_CROSS.1,
            "idle.deep_idle_ms": [250.0, 1500.0],
            "idle.l3_flush_ms": [300.0, 4000.0],
            "idle.clock_factor": EPYC_CLOCK.1,
            "idle.owner_probe_ns": EPYC_PROBE.1
        }),
        sources: serde_json::json!({
            "core_ns_per_line": "the EPYC 9654 fit scaled by clock (3.7 / 3.5 GHz): not measured on this part",
            "latency_ns.l1": "Zen 3 L1D 4 cycles at ~3.5 GHz",
            "latency_ns.l2": "Zen 3 L2 12 cycles at ~3.5 GHz",
            "latency_ns.l3": format!("Milan L3 ~46-50 cycles at ~3.5 GHz: {CNC_GENOA_X} (Milan-X comparison)"),
            "latency_ns.same_l3_modified": "Zen 3 core-to-core within the 8-core CCX, ~18-30 ns (public core-to-core tests)",
            "latency_ns.cross_l3": "Milan cross-CCD through the I/O die, ~90-150 ns (public core-to-core tests)",
            "latency_ns.cross_socket": "2-socket Milan cross-socket, ~180-260 ns",
            "latency_ns.dram_local": format!("Milan NPS1 DRAM ~100-135 ns (better than Genoa-X per {CNC_GENOA_X}); {ANANDTECH_ROME_MEM}"),
            "latency_ns.dram_remote": "remote socket, ~180-240 ns",
            "lines_in_flight.stream": "Zen 3 L1D 24 miss buffers; range 8-24",
            "bandwidth.fabric_read_gbps": "GMI2: 32 B per fabric clock read at FCLK 1.6 GHz, ~51 GB/s per CCD",
            "lines_in_flight.modified_cross_l3": "the EPYC 9654 fit: not measured on this part",
            "idle.deep_idle_ms": "the EPYC 9654 bound: not measured on this part",
            "idle.l3_flush_ms": "the EPYC 9654 bound: not measured on this part",
            "idle.clock_factor": "the EPYC 9654 fit: not measured on this part",
            "idle.owner_probe_ns": "the EPYC 9654 fit: not measured on this part"
        }),
    })
}

/// The burst cost model of the Xeon E-2388G: public latencies of the part; the fitted
/// parameters are the EPYC 9654 fit, not measured on this machine. One package and one L3:
/// the cross-domain figures are unused (set to the ring's core-to-core latency).
fn xeon_e_2388g_cost_model() -> serde_json::Value {
    cost_model(ModelFigures {
        core_ns_per_line: EPYC_CORE_NS.0,
        latency: [1.0, 3.1, 11.0, 35.0, 35.0, 35.0, 85.0, 85.0],
        stream: 12.0,
        modified_cross_l3: EPYC_MOD_CROSS.0,
        fabric_read_gbps: 64.0,
        clock_factor: EPYC_CLOCK.0,
        owner_probe_ns: 40.0,
        ranges: serde_json::json!({
            "latency_ns.l3": [10.0, 13.0],
            "latency_ns.same_l3_modified": [30.0, 40.0],
            "latency_ns.dram_local": [75.0, 85.0],
            "lines_in_flight.stream": [8.0, 24.0],
            "idle.deep_idle_ms": [250.0, 1500.0],
            "idle.clock_factor": EPYC_CLOCK.1,
            "idle.owner_probe_ns": [0.0, 45.0]
        }),
        sources: serde_json::json!({
            "latency_ns.l1": "Cypress Cove L1d 5 cycles at ~5 GHz",
            "latency_ns.l2": "Cypress Cove L2 13 cycles at ~4.5 GHz",
            "latency_ns.l3": "Rocket Lake ring L3, ~45-50 cycles (~11 ns)",
            "latency_ns.same_l3_modified": "client ring core-to-core latency, ~30-40 ns (public core-to-core tests)",
            "latency_ns.dram_local": "DDR4-3200 client latency, ~75-85 ns; one package, so dram_remote = dram_local",
            "core_ns_per_line": "not measured on this part: the EPYC 9654 fit",
            "lines_in_flight.modified_cross_l3": "unused (one L3): the EPYC 9654 fit",
            "idle.deep_idle_ms": "not measured on this part: the EPYC 9654 bound",
            "idle.l3_flush_ms": "not measured on this part: the EPYC 9654 bound",
            "idle.clock_factor": "not measured on this part: the EPYC 9654 fit",
            "idle.owner_probe_ns": "not measured on this part: the EPYC 9654 fit (69.3 ns) breaks this machine's DRAM bound (35 + 69.3 > 85 ns per line with one line in flight), so 40 ns, range 0-45 (the most the bound allows)"
        }),
    })
}

impl MachineDescription {
    /// A built-in description by name (see [`PRESETS`]):
    ///
    /// * `epyc-9654`: 2 x AMD EPYC 9654, 384 CPUs, 24 L3 domains of 8 cores (32 MiB each);
    /// * `epyc-7763`: 2 x AMD EPYC 7763, 256 CPUs, 16 L3 domains of 8 cores (32 MiB each);
    /// * `xeon-e-2388g`: 1 x Intel Xeon E-2388G, 16 CPUs, one 16 MiB L3.
    pub fn preset(name: &str) -> Result<MachineDescription, MachineError> {
        match name {
            "epyc-9654" => EPYC_9654.build(),
            "epyc-7763" => EPYC_7763.build(),
            "xeon-e-2388g" => XEON_E_2388G.build(),
            _ => Err(MachineError::UnknownPreset {
                name: name.to_string(),
                available: PRESETS.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }
}
