//! # The intermittent-burst locality benchmark
//!
//! Threads that run in short bursts far apart in time are where the choice of index source
//! matters most: an index that follows the CPU (`cpu_id`, cache-local `mm_cid`) finds the
//! slot's data in the core's caches, while the legacy `mm_cid` policy hands ID 0 to whichever
//! CPU comes next, so the data travels between cores. This module measures that on this
//! machine ([`run`] with [`Target::Real`]) and predicts it for other machines from a machine
//! description and a cache and coherence cost model ([`Target::Preset`],
//! [`Target::Describe`]). The command-line front is `examples/burst.rs`
//! (`cargo run --release --example burst -- --help`); the README section "The burst benchmark" is the user's guide.
//!
//! | file | concern |
//! |---|---|
//! | `options.rs` | [`Options`], command-line parsing, [`OptionsError`] |
//! | `schedule.rs` | the random start order, staggering ([`Plan`]), seeds |
//! | `harness.rs` | real runs: pinned threads, a [`Pool`](crate::pool::Pool) item per slot |
//! | `model.rs` | the simulator and its [`CostModel`] |
//! | `stats.rs` | slot migrations, distinct slots, means and spreads |
//! | `report.rs` | [`Report`]: JSON, the text table, the SVG chart |
//!
//! ## The method (reference section 3)
//!
//! * One item of `--item-size` bytes (16 KiB) per slot, allocated from a
//!   [`Pool`](crate::pool::Pool) with a 64 KiB stride (slot `s` at `base + s * 64 KiB`),
//!   with one slot per possible CPU. A fresh pool per run.
//! * A *configuration* is a CPU set ([`Topology::configurations`]: `8c-1l3`, `24c-24l3`,
//!   `192c-24l3`, `384t-24l3` on the published machine; `--cpus` for any set). One thread
//!   per CPU, each pinned to its CPU.
//! * A *pass* reads the thread's index (cpu: rseq `cpu_id`; mmcid: rseq `mm_cid`;
//!   user-legacy / user-local: acquires a lease from a fresh [`CidAllocator`] of that policy
//!   per run, released after the pass, the CPU keeping the CID lazily as the kernel does),
//!   then does `byte += 1` over the item in the slot it indexes. A timed pass is timed with
//!   the monotonic clock ([`std::time::Instant`]) around the increment loop only: reading the
//!   index (acquiring the lease) happens before the clock starts and the release after it
//!   stops, as the reference reads the index and then times the pass.
//! * A run: see the schedule below. Its figure is the mean ns per timed pass over all
//!   threads and passes. Each cell (configuration, delay, index) is run `--runs` times; the
//!   table gives the mean of the run means and their spread (sample standard deviation of the
//!   run means, in percent of their mean); the JSON keeps every run mean.
//! * Speedups: `user-legacy / user-local` (the published "legacy mm_cid / cache-local
//!   mm_cid" ratio, reproduced with the user-space allocator so it can be measured on any
//!   kernel) and `cpu / mmcid`.
//!
//! [`CidAllocator`]: crate::index::user_cid::CidAllocator
//! [`Topology::configurations`]: crate::topology::Topology::configurations
//!
//! ## The schedule (our reading of the reference)
//!
//! The reference lists: all threads start together; each waits `delay * k`, `k` its place in
//! a random permutation, "so the threads run one after another, never together"; warm-up of
//! 20,000 passes; then 5 timed passes, each followed by a sleep of `delay * threads`. We
//! read it in that order, per thread `t` at place `k`:
//!
//! 1. all threads are created and pinned, then meet at a barrier: the common start `T0`;
//! 2. thread `t` sleeps until `T0 + delay * k`;
//! 3. it does its warm-up (`--warmup` passes back to back, each reading its index);
//! 4. it does `--passes` timed passes; after each it sleeps `delay * threads`.
//!
//! So timed pass `j` of the thread at place `k` starts near
//! `T0 + delay * k + W + j * (delay * threads + pass)` (`W` the warm-up time, alike for all
//! threads): the timed passes of the threads are staggered by `delay`, a thread's next pass
//! comes after every other thread had its turn, and each thread is idle for about
//! `delay * threads` before each timed pass but the first. The first timed pass follows the
//! thread's own warm-up directly (so its slot is warm for every index source); the locality
//! effect shows on passes 2 to 5. The warm-ups are staggered too; a warm-up longer than
//! `delay` (20,000 passes of ~0.7 µs is ~14 ms, more than 10 ms) overlaps the next thread's,
//! which is harmless: warm-ups are untimed and run on other CPUs. A run lasts about
//! `delay * (threads - 1) + W + passes * delay * threads`, i.e. about `delay * threads * 6`
//! with 5 passes.
//!
//! Why this order matters: each thread's warm-up is where it first takes an index. With a
//! 200 ms delay, each CPU's CID has expired (100 ms) when the next thread starts, so the
//! legacy policy hands the next CPU ID 0 again, and slot 0 moves on every pass; the
//! cache-local policy expands to a new ID per CPU and gives each CPU its recent one back.
//!
//! Every index source of a (configuration, delay) cell uses the same start permutation for a
//! given run (seed derived from `--seed` and the run number), so they are compared on the same
//! orders. The defaults are the published method (20,000 warm-up passes, 5 timed passes, 5
//! runs, 16 KiB, delays 200 ms and 10 ms); with the configurations of a 2-CPU machine the
//! default command took 69 seconds here.
//!
//! ## Locality statistics
//!
//! Every pass (warm-up too) records, per slot, the CPU that last wrote it (in real runs a word
//! in a second pool item of the same slot, updated under the slot's lock). For each result:
//!
//! * `slot_migrations`: timed passes whose slot was last written from another CPU;
//! * `distinct_slots`: distinct slots indexed by timed passes (over all runs);
//! * `passes`: timed passes (threads x passes x runs).
//!
//! These depend on the index choices only, not on timing, so they show the effect on a noisy
//! or small machine where timings do not.
//!
//! In real runs each pass takes a per-slot spin lock (in the guard item, outside the timed
//! region): it makes the plain writes of the increment loop exclusive whatever the index
//! source (a thread preempted in the middle of a pass could otherwise, in theory, lose its
//! `mm_cid` to another thread). It is never contended in this benchmark.
//!
//! ## The simulator and its cost model
//!
//! `--simulate PRESET` or `--describe FILE` replays the same schedule ([`Plan`]) on a machine
//! description in virtual time, deterministically for a `--seed`, without threads or sleeps:
//!
//! * **Index choices.** `cpu` is the CPU itself. `user-legacy` and `user-local` take their
//!   CIDs from a [`DeterministicAllocator`](crate::index::user_cid::DeterministicAllocator) of
//!   that policy (the same allocation code as the real allocator, on a virtual clock, 100 ms
//!   expiry), each thread registering (with its one allowed CPU) at its first acquire.
//!   `mmcid` is modelled as the kernel of Linux 6.13-6.18, i.e. the cache-local policy: it is
//!   a separate run of the same allocator with `Policy::CacheLocal` and therefore gives the
//!   `user-local` figures (the legacy kernel policy is `user-legacy`).
//! * **Events.** Warm-up start (acquire), warm-up end (release), timed pass start (acquire,
//!   cost), timed pass end (release, then the sleep), processed in virtual-time order (ties in
//!   scheduling order). A warm-up is replayed as one lease over its whole duration: for the
//!   allocator this is the same as 20,000 back-to-back leases on one CPU (the CID is either
//!   leased or kept by a CPU that used it less than the expiry ago, so no other CPU can take
//!   it in between); its first pass is costed like any pass, the other ones as hot passes.
//! * **Cache state.** Per 64-byte line of every slot: the CPU that last wrote it and when
//!   (a pass writes every line of the item). Per core (SMT siblings share one, and their
//!   L1/L2): the end of its latest pass, the latest time it entered a deep idle state, and
//!   the slot of its latest pass.
//! * **Where a line is** when a pass on CPU `c` starts ([`LineSource`]): never written →
//!   DRAM; written by `c`'s own core → L1 (the core's latest slot) or L2, or the L3 if the core
//!   has since been idle for `long_idle_ms` (a deep idle state flushes the private caches,
//!   as Zen's CC6 does); written by another core of `c`'s L3 domain → modified in that core's
//!   L2 (`same_l3_core`), or in the L3 if that core has since been idle `long_idle_ms`;
//!   another L3 domain of the package → `cross_l3`; the other package → `cross_socket` (each
//!   either modified in a core's L2, or flushed to that L3).
//! * **Cost of a pass** on CPU `c`:
//!
//!   ```text
//!   pass = pass_overhead_ns + sum over lines of max(core, supply(line))
//!   core = core_ns_per_line                        (the increment loop, data at hand)
//!        / long_idle_clock_factor   if c's core was idle >= long_idle_ms (lower clock)
//!   supply(line) = latency / stream_overlap                       (exclusive lines:
//!                  own L1/L2, L3, flushed to another L3 or socket, DRAM)
//!                = latency * remote_modified_transactions / remote_modified_overlap
//!                                                                (modified in another core)
//!   ```
//!
//!   A sequential 16 KiB pass over lines it can have exclusively is a prefetched stream:
//!   `stream_overlap` lines in flight, so the L3 (13.5 ns / 8 < 2.5 ns) is hidden behind the
//!   core and even DRAM costs only `latency / 8` per line. A line modified in another core's
//!   cache needs a read (the owner keeps an owned copy) and then an ownership upgrade for the
//!   store, and the in-order store stream does not overlap these: that is where the legacy
//!   policy's 19 µs come from.
//!
//! The parameters live in the machine description's `cost_model` object (the `epyc-9654` and
//! `xeon-e-2388g` presets carry one; [`CostModel`] gives the fields, each with its source in
//! the object's `sources` map). What was calibrated, and against what, for `epyc-9654`:
//!
//! | parameter | value | source |
//! |---|---|---|
//! | `latency_ns.l1` / `l2` / `l3` | 1.2 / 3.8 / 13.5 | Zen 4 load-to-use: 4-5, 14 and ~50 cycles at ~3.7 GHz (AMD Zen 4 documentation; Chips and Cheese Genoa measurements) |
//! | `latency_ns.same_l3_core` | 19 | Zen 4 core-to-core latency within a CCX, 15-19 ns (AnandTech's Zen 4 core-to-core test) |
//! | `latency_ns.cross_l3` | 110 | cross-CCD transfers through the I/O die, ~100-150 ns on EPYC Genoa |
//! | `latency_ns.cross_socket` | 210 | cross-socket transfers, ~200+ ns on 2-socket Genoa |
//! | `latency_ns.dram` | 115 | local DRAM, ~100-120 ns on Genoa (NPS1) |
//! | `stream_overlap` | 8 | assumption: a conservative share of Zen 4's 24 L1 / 64 L2 outstanding misses for a read-modify-write stream |
//! | `remote_modified_transactions` | 2 | MOESI: read (owner keeps O) + upgrade |
//! | `pass_overhead_ns` | 20 | two `clock_gettime` (vDSO) reads and the loop's entry |
//! | `core_ns_per_line` | 2.5 | **calibrated**: published cpu_id at 10 ms, 662 ns = 20 + 256 x 2.5 |
//! | `long_idle_ms` | 500 | **bounded by the row**: more than 200 ms (legacy at 200 ms finds the lines in the previous core's L2) and at most 1,600 ms (cpu_id at 200 ms, idle 8 x 200 ms, is slower); taken between |
//! | `long_idle_clock_factor` | 0.42 | **calibrated**: published cpu_id at 200 ms, 1374 ns (mean of the 5 passes, the first of which follows the warm-up and is hot) |
//! | `remote_modified_overlap` | 0.41 | **calibrated**: published legacy at 200 ms, 19289 ns (4 of 5 passes move the slot) |
//!
//! The other three cells of the published row (cache-local at both delays, legacy at 10 ms)
//! are not fitted: they test the model. No other figure was used. The test
//! `tests/burst_model.rs` checks every cell of the row within 25%.
//!
//! What the single row cannot decide: whether the penalty of a remote-modified line scales
//! with the transfer latency (as modelled: `latency * 2 / 0.41`, i.e. ~93 ns per line within
//! an L3 and ~540 ns across L3 domains) or is partly a fixed cost per line (for instance a
//! probe answered by a core in a light idle state), which would predict about half the
//! cross-L3 legacy figures. The predictions for `24c-24l3` and beyond carry that uncertainty.
//!
//! Not modelled: capacity evictions (the benchmark's footprint, at most 384 x 16 KiB, fits
//! any L2 and L3 here), TLB misses and page faults (absorbed by the warm-up), DRAM bandwidth
//! contention, the sleep overshoot of real timers, and interference from other processes.
//!
//! ## JSON schema
//!
//! `--json FILE` writes a [`Report`] (stable; new fields may be added, none removed):
//!
//! ```json
//! {
//!   "mode": "real",                       // or "simulated"
//!   "machine": { "name": "sysfs", "model": "AMD EPYC ...", "online": "0-1",
//!                "allowed": "0-1", "cores": 2, "threads_per_core": 1,
//!                "l3_domains": 1, "packages": 1,
//!                "cost_model": { ... } },  // simulations only
//!   "kernel": "6.18.44",                  // uname -r; simulations: the behaviour modelled
//!   "method": { "item_size": 16384, "stride": 65536, "warmup": 20000, "passes": 5,
//!               "runs": 5, "seed": 1 },
//!   "results": [
//!     { "config": "2c-1l3", "cpus": 2, "delay_ms": 200.0, "index": "user-legacy",
//!       "ns_per_pass": 1234.5, "runs": [1200.1, 1250.3, ...],
//!       "passes": 50, "slot_migrations": 40, "distinct_slots": 1 }
//!   ],
//!   "skipped": [ { "index": "mmcid", "reason": "..." } ]
//! }
//! ```
//!
//! `index` is `cpu`, `mmcid`, `user-legacy` or `user-local`; `ns_per_pass` is the mean of
//! `runs` (each the mean ns per timed pass of one run); `passes`, `slot_migrations` and
//! `distinct_slots` are over all runs.

mod harness;
mod model;
mod options;
mod report;
mod schedule;
mod stats;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use harness::{run_real, unavailable_reason};
pub use model::{COST_MODEL_FORMAT, CostModel, Latencies, LineSource, ModelError, simulate_run};
pub use options::{
    Command, MAX_ITEM_SIZE, Options, OptionsError, Target, USAGE, parse_duration, parse_size,
};
pub use report::{Machine, Method, Mode, Report, ResultRow, Skipped, fmt_ms};
pub use schedule::{Plan, SplitMix64, permutation, run_seed};
pub use stats::{
    Access, PassRecord, RunStats, SlotTracker, mean, spread_percent, stddev, trace_stats,
};

use crate::index::Index;
use crate::pool::PoolError;
use crate::topology::{CpuSet, Topology, TopologyError};

/// What can go wrong running the benchmark.
#[derive(Debug)]
#[non_exhaustive]
pub enum BurstError {
    /// A bad command line.
    Options(OptionsError),
    /// This machine's topology could not be read.
    Topology(TopologyError),
    /// A bad target: unknown preset or configuration, unreadable or invalid description.
    Target(TopologyError),
    /// The description's cost model is missing or invalid.
    Model(ModelError),
    /// `--cpus` names CPUs the benchmark may not use.
    CpusNotAllowed {
        /// The CPUs asked for.
        cpus: String,
        /// The CPUs available.
        allowed: String,
    },
    /// No configuration to run.
    NoConfiguration,
    /// The pool could not be created or allocated from.
    Pool(PoolError),
    /// A thread could not be pinned, or runs elsewhere than pinned.
    Pin {
        /// The CPU.
        cpu: usize,
        /// Why.
        reason: String,
    },
    /// The index could not be read (rseq not registered).
    IndexRead {
        /// The index source.
        index: &'static str,
    },
    /// The index source is not available on this machine.
    Unavailable {
        /// The index source.
        index: &'static str,
        /// Why.
        reason: String,
    },
    /// An index at or beyond the pool's slots.
    SlotOutOfRange {
        /// The index read.
        slot: usize,
        /// The pool's slots.
        slots: usize,
    },
    /// A benchmark thread panicked.
    ThreadPanicked,
    /// A report file could not be written.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for BurstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BurstError::Options(e) => write!(f, "{e}"),
            BurstError::Topology(e) => write!(f, "reading this machine's topology: {e}"),
            BurstError::Target(e) => write!(f, "{e}"),
            BurstError::Model(e) => write!(f, "{e}"),
            BurstError::CpusNotAllowed { cpus, allowed } => {
                write!(f, "--cpus {cpus}: not within the usable CPUs {allowed}")
            }
            BurstError::NoConfiguration => write!(f, "no configuration to run (no usable CPU)"),
            BurstError::Pool(e) => write!(f, "pool: {e}"),
            BurstError::Pin { cpu, reason } => write!(f, "pinning to CPU {cpu}: {reason}"),
            BurstError::IndexRead { index } => write!(f, "could not read the {index} index"),
            BurstError::Unavailable { index, reason } => write!(f, "{index} unavailable: {reason}"),
            BurstError::SlotOutOfRange { slot, slots } => {
                write!(f, "index {slot} beyond the pool's {slots} slots")
            }
            BurstError::ThreadPanicked => write!(f, "a benchmark thread panicked"),
            BurstError::Io { path, reason } => write!(f, "writing {}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for BurstError {}

impl From<PoolError> for BurstError {
    fn from(e: PoolError) -> Self {
        BurstError::Pool(e)
    }
}

impl BurstError {
    /// The command's exit status: 2 for bad options or targets, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            BurstError::Options(_)
            | BurstError::Target(_)
            | BurstError::Model(_)
            | BurstError::CpusNotAllowed { .. }
            | BurstError::NoConfiguration => 2,
            _ => 1,
        }
    }
}

/// A named CPU set to run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Name (`8c-1l3`, or `cpus:LIST` for `--cpus`).
    pub name: String,
    /// The CPUs, one thread each, in increasing order.
    pub cpus: Vec<usize>,
}

/// The topology of a target: this machine, a preset or a description.
pub fn load_topology(target: &Target) -> Result<Topology, BurstError> {
    match target {
        Target::Real => Topology::from_sysfs().map_err(BurstError::Topology),
        Target::Preset(name) => Topology::preset(name).map_err(BurstError::Target),
        Target::Describe(path) => Topology::from_json_file(path).map_err(BurstError::Target),
    }
}

/// The configurations `options` asks for on `topology`.
pub fn select_configs(
    topology: &Topology,
    options: &Options,
) -> Result<Vec<RunConfig>, BurstError> {
    let configs = if let Some(set) = &options.cpus {
        let usable = topology.allowed();
        if !set.is_subset(usable) {
            return Err(BurstError::CpusNotAllowed {
                cpus: set.to_string(),
                allowed: usable.to_string(),
            });
        }
        vec![RunConfig {
            name: format!("cpus:{set}"),
            cpus: set.iter().collect(),
        }]
    } else if options.configs.is_empty() {
        topology
            .configurations()
            .into_iter()
            .map(|c| RunConfig {
                name: c.name,
                cpus: c.cpus.iter().collect(),
            })
            .collect()
    } else {
        options
            .configs
            .iter()
            .map(|n| {
                topology
                    .configuration(n)
                    .map(|c| RunConfig {
                        name: c.name,
                        cpus: c.cpus.iter().collect(),
                    })
                    .map_err(BurstError::Target)
            })
            .collect::<Result<_, _>>()?
    };
    if configs.is_empty() {
        return Err(BurstError::NoConfiguration);
    }
    Ok(configs)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

fn cpu_model_name() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Runs the benchmark (real or simulated, per `options.target`) and returns the report.
/// Progress goes to stderr unless `options.quiet`.
pub fn run(options: &Options) -> Result<Report, BurstError> {
    let topology = load_topology(&options.target)?;
    let simulated = options.target.is_simulated();
    let model = if simulated {
        Some(CostModel::from_topology(&topology).map_err(BurstError::Model)?)
    } else {
        None
    };
    let configs = select_configs(&topology, options)?;
    let method = Method {
        item_size: options.item_size,
        stride: 64 * 1024,
        warmup: options.warmup,
        passes: options.passes,
        runs: options.runs,
        seed: options.seed,
    };
    let mut skipped = Vec::new();
    let mut indices: Vec<Index> = Vec::new();
    for &i in &options.indices {
        match (simulated, unavailable_reason(i)) {
            (false, Some(reason)) => {
                if !options.quiet {
                    eprintln!("burst: skipping {i}: {reason}");
                }
                skipped.push(Skipped {
                    index: i.name().to_string(),
                    reason,
                });
            }
            _ => indices.push(i),
        }
    }

    let total: Duration = if simulated {
        Duration::ZERO
    } else {
        configs
            .iter()
            .flat_map(|c| {
                options.delays.iter().map(|&d| {
                    harness::estimate(&Plan::new(c.cpus.len(), d, 0), &method)
                        * (options.runs * indices.len()) as u32
                })
            })
            .sum()
    };
    if !options.quiet && !simulated {
        eprintln!(
            "burst: {} configuration(s) x {} delay(s) x {} index source(s) x {} run(s), about {:.0} s",
            configs.len(),
            options.delays.len(),
            indices.len(),
            options.runs,
            total.as_secs_f64()
        );
    }
    let began = Instant::now();
    let mut results = Vec::new();
    for c in &configs {
        for &delay in &options.delays {
            let mut per_index: Vec<Vec<RunStats>> = vec![Vec::new(); indices.len()];
            for run_no in 0..options.runs {
                let plan = Plan::new(c.cpus.len(), delay, run_seed(options.seed, run_no));
                for (k, &index) in indices.iter().enumerate() {
                    let records = match &model {
                        Some(m) => simulate_run(&topology, m, &c.cpus, index, &plan, &method)?,
                        None => run_real(&c.cpus, index, &plan, &method)?,
                    };
                    let stats = RunStats::from_records(&records);
                    if !options.quiet && !simulated {
                        eprintln!(
                            "burst: [{:>5.0} s] {} delay {} {} run {}/{}: {:.0} ns/pass, {}/{} migrations",
                            began.elapsed().as_secs_f64(),
                            c.name,
                            fmt_ms(delay.as_secs_f64() * 1e3),
                            index,
                            run_no + 1,
                            options.runs,
                            stats.mean_ns,
                            stats.slot_migrations,
                            stats.passes
                        );
                    }
                    per_index[k].push(stats);
                }
            }
            for (k, &index) in indices.iter().enumerate() {
                let runs: Vec<f64> = per_index[k].iter().map(|s| s.mean_ns).collect();
                let slots: std::collections::BTreeSet<usize> = per_index[k]
                    .iter()
                    .flat_map(|s| s.slots.iter().copied())
                    .collect();
                results.push(ResultRow {
                    config: c.name.clone(),
                    cpus: c.cpus.len(),
                    delay_ms: delay.as_secs_f64() * 1e3,
                    index: index.name().to_string(),
                    ns_per_pass: mean(runs.iter().copied()),
                    runs,
                    passes: per_index[k].iter().map(|s| s.passes).sum(),
                    slot_migrations: per_index[k].iter().map(|s| s.slot_migrations).sum(),
                    distinct_slots: slots.len() as u64,
                });
            }
        }
    }
    let (mode, kernel, machine_model) = if simulated {
        (
            Mode::Simulated,
            "modelled: cpu = the CPU; mmcid = cache-local mm_cid (Linux 6.13-6.18); \
             user-legacy / user-local = DeterministicAllocator"
                .to_string(),
            topology.note().map(str::to_string),
        )
    } else {
        (Mode::Real, kernel_release(), cpu_model_name())
    };
    Ok(Report {
        mode,
        machine: Machine::describe(&topology, machine_model, simulated),
        kernel,
        method,
        results,
        skipped,
    })
}

/// Writes the report files `options` asks for (`--json`, `--svg`).
pub fn write_outputs(report: &Report, options: &Options) -> Result<(), BurstError> {
    if let Some(path) = &options.json {
        std::fs::write(path, report.to_json() + "\n").map_err(|e| BurstError::Io {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    if let Some(path) = &options.svg {
        #[cfg(feature = "svg")]
        report.write_svg(path).map_err(|reason| BurstError::Io {
            path: path.clone(),
            reason,
        })?;
        #[cfg(not(feature = "svg"))]
        return Err(BurstError::Io {
            path: path.clone(),
            reason: "this build has no `svg` feature".to_string(),
        });
    }
    Ok(())
}

/// The command: parses `args` (without the program name), runs, prints the table on stdout,
/// writes the requested files. Returns the exit status: 0, 1 (run failed) or 2 (bad options).
pub fn cli_main<I, S>(args: I) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let options = match Options::parse(args) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return 0;
        }
        Ok(Command::Run(o)) => *o,
        Err(e) => {
            eprintln!("burst: {e}");
            eprintln!("usage: burst [OPTIONS]; see --help");
            return 2;
        }
    };
    let result = run(&options).and_then(|report| {
        print!("{}", report.table());
        write_outputs(&report, &options)
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("burst: {e}");
            e.exit_code()
        }
    }
}

/// The configurations of `topology` as a CPU set list, for messages.
pub fn describe_configs(topology: &Topology) -> Vec<(String, CpuSet)> {
    topology
        .configurations()
        .into_iter()
        .map(|c| (c.name, c.cpus))
        .collect()
}
