//! # The simulator and its cost model
//!
//! `--simulate PRESET` or `--describe FILE` replays the benchmark's schedule ([`Plan`](crate::Plan)) on a
//! machine description in virtual time, deterministically for a `--seed`, without threads or
//! sleeps, and costs every timed pass from where its lines are. Each cell is reported as a
//! central value (the description's parameters) and a 10th-90th percentile interval over
//! seeded Monte Carlo draws of the uncertain parameters.
//!
//! | file | concern |
//! |---|---|
//! | `cost.rs` | [`CostModel`] (`percid-burst-cost/2`), its bounds, the cost of a line, the draws |
//! | `sim.rs` | the schedule replay, recorded as a [`RunTrace`] and costed per parameter set |
//! | `fit.rs` | the published cells, the fit, leave-one-configuration-out, sensitivity ([`fit`]) |
//! | `conformal.rs` | calibrated intervals: the parameter intervals widened by the leave-one-out model-form error ([`conformal`]) |
//!
//! ## What acts on one pass: the mechanisms
//!
//! A timed pass increments every byte of one 16 KiB slot: 256 lines of 64 bytes, read and
//! written. Its time is `pass_overhead_ns + sum over lines of max(core, supply)`:
//!
//! * **core**: `core_ns_per_line`, the increment loop with its data at hand (fitted: no public
//!   figure gives the cycles of this loop), divided by the **clock after idle**
//!   ([`CostModel::clock_at`]): a core idle up to `idle.clock_full_ms` runs at the steady
//!   clock, one idle `idle.clock_low_ms` or more at `idle.clock_factor` of it (fitted), and in
//!   between the clock falls log-linearly with the idle time (the core wakes at a P-state the
//!   power manager lowered the longer it stayed idle, and a pass of a few µs ends before the
//!   governor raises it: schedutil sees a long sleeper's decayed utilization at wake-up, kernel
//!   commit a07630b8b2c1; amd-pstate's firmware re-decides on a ~1 ms timescale, commit
//!   ca08e46d4215). The published cells bound the two times: 80 ms of idle (8c-1l3
//!   cpu_id at 10 ms) is at full clock, 1.6 s (8c-1l3 cpu_id at 200 ms) is slow; nothing
//!   published lies between, so `24c-24l3` at 10 ms (240 ms of idle) depends on the assumed
//!   shape;
//! * **supply**: the slower of `latency / lines_in_flight` and `line_bytes / bandwidth` for
//!   lines that cross the L3 domain's fabric link. A prefetched sequential stream overlaps
//!   `lines_in_flight.stream` misses (Zen 4: 24 L1D miss buffers, 64 outstanding L2 misses),
//!   so even DRAM costs `dram / 12` per line; at least one line is always in flight.
//!
//! Where a line is ([`LineSource`]) follows from who wrote the slot last and what the idle
//! states did since ([`PassTrace::source`]):
//!
//! 1. **Deep idle of a core (CC6)** flushes its L1 and L2 into the L3 and power-gates the core:
//!    its lines are then in its L3 (`latency_ns.l3` in the same domain, `cross_l3` /
//!    `cross_socket` from elsewhere, all streamable). A core in a light idle state (C1, clock
//!    gated) keeps its caches and answers probes. `idle.deep_idle_ms` is the idle time after
//!    which a core's lines are treated as flushed (bounded below by the published 8c-1l3 legacy
//!    cell at 200 ms, which still pays for lines modified in the previous core).
//! 2. **A whole L3 domain idle**: when every core of a CCX is in CC6 the CCX itself may power
//!    down, writing its L3 back to DRAM; `idle.l3_flush_ms` of all-idle later its lines come
//!    from DRAM (local or remote: the slot's pages live where they were first touched).
//! 3. **A line modified in an idle core** (written less than `deep_idle_ms` ago by a core that
//!    has been idle since): each line needs a coherence probe that the owner's clock-gated core
//!    must answer (`idle.owner_probe_ns`, fitted, growing linearly with the owner's idle time
//!    up to `idle.owner_probe_full_ms`: the longer it idles the deeper it sleeps), plus the
//!    transfer (`same_l3_modified` within
//!    a CCX, `cross_l3` / `cross_socket` through the I/O die). Within a CCX these probes are
//!    resolved one by one (`lines_in_flight.modified_same_l3` = 1); across CCDs the I/O die's
//!    coherence agents overlap a few (`lines_in_flight.modified_cross_l3`, fitted).
//!
//! ## The figures of `epyc-9654`
//!
//! Each parameter's `sources` entry in the preset gives the reference (URL or title); in
//! short (central value, range used for the intervals):
//!
//! | parameter | value \[range\] | mechanism and source |
//! |---|---|---|
//! | `latency_ns.l1` / `l2` | 1.1 / 3.8 | Zen 4 L1D 4-5 and L2 14 cycles at ~3.7 GHz (Chips and Cheese, Zen 4 part 2) |
//! | `latency_ns.l3` | 13.5 [12-16] | Genoa L3 ~50 cycles (Chips and Cheese, Genoa-X) |
//! | `latency_ns.same_l3_modified` | 19 [15-25] | core-to-core within a CCX, 15-19 ns (AnandTech Zen 4 review) |
//! | `latency_ns.cross_l3` | 110 [80-150] | cross-CCD through the I/O die (AnandTech: ~80 ns on the desktop part; larger server I/O die) |
//! | `latency_ns.cross_socket` | 200 [170-250] | socket to socket (Chips and Cheese, Genoa-X) |
//! | `latency_ns.dram_local` / `dram_remote` | 115 [100-135] / 200 [180-240] | NPS1 DRAM (Chips and Cheese NPS0 article; AnandTech Rome) and the socket hop |
//! | `lines_in_flight.stream` | 12 [8-24] | L1D miss buffers 24, L2 64 outstanding misses (AMD Zen 4 optimization guide) |
//! | `lines_in_flight.modified_same_l3` | 1 [1-1.5] | assumption: probes to a clock-gated owner answered one at a time |
//! | `lines_in_flight.modified_cross_l3` | 3.19 [1.9-3.35] | **fitted** (both rows) |
//! | `bandwidth.fabric_read_gbps` | 64 [40-72] | GMI: 32 B per fabric clock at FCLK ~2 GHz per CCD |
//! | `idle.deep_idle_ms` | 500 [200-1500] | CC6 flushes L1/L2 (Bobcat CC6 paper; Phoronix on AMD C3 flush); bounded by 8c-1l3 legacy at 200 ms |
//! | `idle.l3_flush_ms` | 1000 [300-4000] | CCX power-down when all its cores sleep; bounded by 8c-1l3 cache-local at 200 ms (L3 kept) and 192c-24l3 cpu_id at 200 ms (DRAM) |
//! | `idle.clock_factor` | 0.444 [0.42-0.525] | **fitted** (both rows); wake-up at a decayed utilization (schedutil commit a07630b8b2c1; amd-pstate commit ca08e46d4215) |
//! | `idle.clock_full_ms` / `clock_low_ms` | 80 [80-240] / 1600 [800-1600] | bounded by 8c-1l3 cpu_id at 10 ms and at 200 ms |
//! | `idle.owner_probe_ns` | 69.3 [49.8-75] | **fitted** (both rows); a core in C1 keeps its caches and answers probes (Intel C-state datasheet); below the C1 exit latency (~1 µs) |
//! | `idle.owner_probe_full_ms` | 200 [150-300] | assumption: the probe cost grows linearly with the owner's idle time up to 200 ms (the longest owner idle of the published cells); the form was chosen after seeing 192c-24l3's legacy cells |
//! | `core_ns_per_line` | 2.664 [2.52-3.24] | **fitted** (both rows) |
//! | `pass_overhead_ns` | 20 [10-40] | two vDSO clock reads |
//!
//! The four fitted parameters were fitted on the 12 cells of `8c-1l3` and `192c-24l3`, starting
//! from [`fit::PRIOR`]; their ranges are the spread of that fit and the two leave-one-row-out
//! fits (from the same prior), widened by 5%.
//!
//! The index choices come from the library's
//! [`DeterministicAllocator`](percid::index::user_cid::DeterministicAllocator):
//!
//! * **legacy mm_cid (Linux 6.4-6.12)**: a CPU keeps the CID of the process it last ran for
//!   about 100 ms (a periodic scan expires it), and a CPU without one takes the lowest free ID.
//!   Threads bursting more than 100 ms apart all get ID 0: the slot's lines were last written
//!   by another core, one or more L3 domains away on multi-L3 configurations. At 10 ms delay
//!   on 8 CPUs a CPU comes back within 80 ms and keeps its ID; with 192 CPUs it comes back
//!   after 1.92 s and takes one of the ~10 low IDs that the CPUs of the last 100 ms hold.
//! * **cache-local mm_cid (Linux 6.13-6.18)**: each CPU remembers `recent_cid` and tries it
//!   first, and IDs spread up to the number of allowed CPUs, so each slot stays on one CPU
//!   (`mmcid` and `user-local`); `cpu` indexes by CPU number.
//! * **per-task ownership (Linux 6.19+)**: a thread owns its CID while the threads stay within
//!   `max_cids`, as one pinned thread per CPU always does here, so each slot stays with its
//!   thread and so on its CPU (`user-task`).
//!
//! A warm-up (20,000 passes, one lease) is costed as its first pass plus hot passes; the first
//! timed pass of a thread follows it and is hot. Pass durations for the virtual clock use the
//! central parameters (µs passes against ms delays: the draws do not move the schedule), which
//! is why one replay per run serves every parameter draw ([`RunTrace::cost`]).
//!
//! ## Bounds
//!
//! [`CostModel::validate`] refuses a description whose model breaks a physical bound, naming
//! the field ([`ModelError::Bound`]): fewer than one line in flight, a source supplying a line
//! slower than a serial miss to the slowest DRAM (at every corner of the ranges), latencies out
//! of order, a clock factor above 1. Every costed pass is checked against
//! [`CostModel::pass_bounds`] (every line at its cheapest cost .. all lines serial DRAM misses at the slowest
//! clock); a pass outside is an error, not a number.
//!
//! ## Uncertainty
//!
//! `ranges` gives each uncertain parameter an interval from its sources (fitted ones: the
//! spread of their fits over the two published rows and the two leave-one-out fits). Each run
//! is costed for `draws` parameter sets drawn uniformly in the ranges from a seed derived from
//! `--seed` (the same draws for every cell, so cells stay comparable); the run's
//! `ns_per_pass_low` / `ns_per_pass_high` are the 10th and 90th percentiles of the draws,
//! widened to contain the central value, and a cell's are the mean over its runs.
//!
//! These intervals span the parameter ranges only. [`conformal`] widens them by the model-form
//! error measured leaving one published configuration out (`fit_model` prints the calibrated
//! intervals; the simulator's reports keep the raw ones).
//!
//! Not modelled: capacity evictions (at most 384 x 16 KiB, far below any L2 and L3 here), TLB
//! misses, DRAM contention, timer overshoot, other processes.
//!
//! The published figures, the fit, the leave-one-configuration-out errors and the
//! sensitivity table are computed by `cargo run --release -p percid-burst --example
//! fit_model`; the README quotes its output.

pub mod conformal;
mod cost;
pub mod fit;
mod sim;

pub use cost::{
    Bandwidth, COST_MODEL_FORMAT, COST_MODEL_FORMAT_V1, CostModel, Idle, LINE_BYTES_RANGE,
    Latencies, LineSource, LinesInFlight, MAX_DRAWS, ModelError, PARAMS, param_max,
};
pub use sim::{PassTrace, RunTrace, Writer, simulate_run, trace_run};

/// The 10th-90th percentile interval of `values`, widened to contain `central`.
pub fn percentile_interval(central: f64, values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some((at(0.1).min(central), at(0.9).max(central)))
}

/// A run's mean ns per pass for the central parameters of `model` and for each of its
/// parameter draws (seeded by `seed`; none when the model has no ranges).
pub fn run_draws(
    trace: &RunTrace,
    model: &CostModel,
    seed: u64,
) -> Result<(f64, Vec<f64>), crate::BurstError> {
    let central = trace.cost(model)?;
    if model.ranges.is_empty() {
        return Ok((central, Vec::new()));
    }
    let values = model
        .draws(seed)
        .iter()
        .map(|m| trace.cost(m))
        .collect::<Result<Vec<f64>, _>>()?;
    Ok((central, values))
}

/// The central value and the 10th-90th percentile interval of a run over the draws of
/// `model`'s uncertain parameters (seeded by `seed`), widened to contain the central value.
pub fn run_interval(
    trace: &RunTrace,
    model: &CostModel,
    seed: u64,
) -> Result<(f64, Option<(f64, f64)>), crate::BurstError> {
    let (central, values) = run_draws(trace, model, seed)?;
    Ok((central, percentile_interval(central, &values)))
}
