//! # percid-burst: the intermittent-burst locality benchmark
//!
//! Threads that run in short bursts far apart in time are where the choice of index source
//! matters most: an index that follows the CPU (`cpu_id`, cache-local `mm_cid`) finds the
//! slot's data in the core's caches, while the legacy `mm_cid` policy hands ID 0 to whichever
//! CPU comes next, so the data travels between cores. This package measures that on this
//! machine ([`run`] with [`Target::Real`]) and predicts it for other machines from a machine
//! description and a cache and coherence cost model ([`Target::Preset`],
//! [`Target::Describe`]). It is the benchmark suite of the `percid` workspace, built on the
//! `percid` library's public API; it is not published. The binary is `percid-burst`
//! (`cargo run --release -p percid-burst -- --help`, or `cargo install --path burst`); the
//! README section "The burst benchmark" is the user's guide.
//!
//! | file | concern |
//! |---|---|
//! | `main.rs` | the `percid-burst` binary |
//! | `cli.rs` | the command line (`clap`): `run`, `report`, `compare`, `topology`; exit statuses |
//! | `machine/` | [`machine::MachineDescription`]: topologies with cost models, JSON descriptions, presets, configurations |
//! | `topology_cmd.rs` | `percid-burst topology`: print a machine and its configurations |
//! | `options.rs` | [`Options`], their limits and value parsers |
//! | `runner.rs` | [`RunPlan`]: planning, estimates and limits, running with checkpoints, `--resume` |
//! | `schedule.rs` | the random start order, staggering ([`Plan`]), seeds |
//! | `harness.rs` | real runs: pinned threads, a [`Pool`](percid::pool::Pool) item per slot |
//! | `interrupt.rs` | SIGINT/SIGTERM: [`Interrupt`] stops a run between runs and wakes its sleeps |
//! | `model/` | the simulator, its [`CostModel`], the fit ([`model`] module docs) |
//! | `stats.rs` | slot migrations, distinct slots, means and spreads |
//! | `report.rs` | [`Report`]: the JSON document, reading saved reports, merging |
//! | `render.rs` | the tables, noise marks, conclusions, comparisons |
//! | `svg.rs` | the SVG chart |
//! | `output.rs` | outputs that never harm (atomic replace of regular files and link targets, devices and FIFOs in place, one file under two options refused), bounded reads, terminal-safe text |
//! | `progress.rs` | progress on stderr (`indicatif`) |
//!
//! ## The method (reference section 3)
//!
//! * One item of `--item-size` bytes (16 KiB) per slot, allocated from a
//!   [`Pool`](percid::pool::Pool) with a 64 KiB stride (slot `s` at `base + s * 64 KiB`),
//!   with one slot per possible CPU. A fresh pool per run.
//! * A *configuration* is a CPU set ([`Topology::configurations`]: `8c-1l3`, `24c-24l3`,
//!   `192c-24l3`, `384t-24l3` on the published machine; `--cpus` for any set). One thread
//!   per CPU, each pinned to its CPU.
//! * A *pass* reads the thread's index (cpu: rseq `cpu_id`; mmcid: rseq `mm_cid`;
//!   user-legacy / user-local / user-task: acquires a lease from a fresh [`CidAllocator`] of
//!   that policy per run, released after the pass; the CPU keeps the CID lazily as the kernel
//!   does, or under user-task the thread owns it, as Linux 6.19 does within its limit),
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
//! [`CidAllocator`]: percid::index::user_cid::CidAllocator
//! [`Topology::configurations`]: crate::machine::Configurations::configurations
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
//! description in virtual time, deterministically for a `--seed`, without threads or sleeps.
//! `cpu` is the CPU itself; `user-legacy`, `user-local` and `user-task` take their CIDs from a
//! [`DeterministicAllocator`](percid::index::user_cid::DeterministicAllocator) of that policy
//! (virtual clock, 100 ms expiry); `mmcid` is modelled as Linux 6.13-6.18 (cache-local) and so
//! equals `user-local`. Each timed pass is costed from where its slot's lines are (own L1/L2,
//! an L3, modified in an idle core of the same or another L3 domain or socket, DRAM) and how
//! long its core was idle (clock ramp), under a cost model
//! ([`CostModel`], `percid-burst-cost/2`) whose every figure is sourced or named as fitted,
//! with physical bounds checked on load and for every pass. Each cell is a central value and
//! a 10th-90th percentile interval over seeded Monte Carlo draws of the uncertain parameters.
//!
//! The mechanisms, the formula, the bounds and the uncertainty are documented in the
//! [`model`] module; the fit on the two published rows, leave-one-configuration-out and the
//! sensitivity table come from `cargo run --release -p percid-burst --example fit_model`.
//!
//! ## JSON schema
//!
//! `--json FILE` writes a [`Report`] (schema 2; new fields may be added, none removed). It is
//! rewritten atomically after every completed run, so an interrupted run leaves a valid
//! partial report (`"complete": false`) that `--resume FILE` continues:
//!
//! ```json
//! {
//!   "schema": 2,                          // absent in schema 1 files (read as 1)
//!   "generator": { "percid_burst": "0.1.0", "percid": "0.1.0", "build": "release" },
//!   "mode": "real",                       // or "simulated"
//!   "machine": { "name": "AMD EPYC 9654 96-Core Processor",
//!                "summary": "2 x AMD EPYC 9654 96-Core Processor, 192 cores, 384 CPUs, 24 L3 domains",
//!                "model": "AMD EPYC ...", "online": "0-383", "allowed": "0-383",
//!                "cores": 192, "threads_per_core": 2, "l3_domains": 24, "packages": 2,
//!                "cost_model": { ... } },  // simulations only
//!   "kernel": "6.18.44",                  // uname -r; simulations: the behaviour modelled
//!   "method": { "item_size": 16384, "stride": 65536, "warmup": 20000, "passes": 5,
//!               "runs": 5, "seed": 1 },
//!   "plan": { "target": "real",           // or {"preset": "epyc-9654"}, {"describe": "/abs/m.json"}
//!             "configs": [ { "name": "8c-1l3", "cpus": "0-7" } ],
//!             "delays_ms": [200.0, 10.0], "indices": ["cpu", "mmcid", "user-legacy", "user-local"] },
//!   "complete": true,
//!   "results": [
//!     { "config": "8c-1l3", "cpus": 8, "delay_ms": 200.0, "index": "user-legacy",
//!       "ns_per_pass": 1234.5,
//!       "ns_per_pass_low": 1100.0, "ns_per_pass_high": 1400.0,   // optional (models)
//!       "runs": [1200.1, 1250.3, ...],
//!       "passes": 200, "slot_migrations": 160, "distinct_slots": 1,
//!       "per_run": [ { "run": 0, "seed": 123, "ns_per_pass": 1200.1, "passes": 40,
//!                      "slot_migrations": 32, "slots": "0",
//!                      "ns_per_pass_low": 1150.0, "ns_per_pass_high": 1380.0,
//!                      "draws": [1210.3, 1190.8, ...] }, ... ] }   // the last 3: models
//!   ],
//!   "skipped": [ { "index": "mmcid", "reason": "..." } ]
//! }
//! ```
//!
//! `index` is `cpu`, `mmcid`, `user-legacy`, `user-local` or `user-task`; `ns_per_pass` is the mean of
//! `runs` (each the mean ns per timed pass of one run); `passes`, `slot_migrations` and
//! `distinct_slots` are over all runs; `per_run` holds each run's figures, from which the
//! others are rebuilt exactly.

pub mod calibrate;
mod harness;
mod interrupt;
pub mod model;
mod options;
mod output;
mod progress;
mod render;
mod report;
mod runner;
mod schedule;
mod stats;
#[cfg(feature = "svg")]
mod svg;

pub mod cli;
pub mod machine;
pub mod topology_cmd;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use harness::{estimate_with_warmup, run_real, run_real_with, unavailable_reason};
pub use interrupt::{Interrupt, SIGINT, SIGTERM, exit_status, signal_name};
pub use model::{
    Bandwidth, COST_MODEL_FORMAT, COST_MODEL_FORMAT_V1, CostModel, Idle, Latencies, LineSource,
    LinesInFlight, ModelError, PARAMS, RunTrace, conformal, fit, percentile_interval, run_draws,
    run_interval, simulate_run, trace_run,
};
pub use options::{
    DEFAULT_MAX_DURATION, MAX_DELAY, MAX_ITEM_SIZE, MAX_PASSES, MAX_RUNS, MAX_WARMUP, Options,
    OptionsError, Target, parse_duration, parse_index, parse_size, parse_time_limit,
};
pub use output::{
    AtomicFile, FileId, Output, check_distinct, follow_links, read_bounded, say, terminal_safe,
    write_stdout,
};
pub use progress::{Progress, fmt_duration};
pub use render::{
    COMPARE_SIGMAS, ComparedCell, ComparedRatio, Comparison, MIN_RUNS_TO_JUDGE,
    NOISE_THRESHOLD_PERCENT, RatioVerdict, SPEEDUPS, Verdict, cell_text, compare, comparison,
    conclusions, era_line, full_text, full_text_with, header, is_noisy, judge, paired_log_ratios,
    ratio_text, t_critical_99, tables, tables_wide, verdicts,
};
pub use report::{
    Cells, ConfigRecord, Generator, MAX_NS_PER_PASS, MAX_REPORT_BYTES, Machine, Method, Mode,
    PlanRecord, Report, ReportError, ResultRow, RunRecord, SCHEMA, Skipped, TargetRecord, escape,
    fmt_ms,
};
pub use runner::{
    Cell, Checkpoint, Done, Hooks, RunConfig, RunPlan, cpu_model_name, describe_configs, execute,
    kernel_release, load_machine, plan_resume, plan_run, run, select_configs,
};
pub use schedule::{Plan, SplitMix64, permutation, run_seed};
pub use stats::{
    Access, PassRecord, RunStats, SlotTracker, mean, spread_percent, stddev, trace_stats,
};
#[cfg(feature = "svg")]
pub use svg::{fmt_tick, render as render_svg};

use percid::pool::PoolError;

use machine::MachineError;

/// What can go wrong running the benchmark.
#[derive(Debug)]
#[non_exhaustive]
pub enum BurstError {
    /// Options out of range or in conflict.
    Options(OptionsError),
    /// A bad command line, found after parsing (e.g. one file for two outputs).
    Usage(String),
    /// This machine's topology could not be read.
    Topology(MachineError),
    /// A bad target: unknown preset or configuration, unreadable or invalid description.
    Target(MachineError),
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
    /// Every index source asked for is unavailable here.
    NothingToRun {
        /// The sources and why.
        skipped: Vec<Skipped>,
    },
    /// A timed run of a debug build, without `--allow-debug`.
    DebugBuild,
    /// The run's estimated duration is above `--max-duration`.
    TooLong {
        /// Runs to do.
        runs: usize,
        /// Their estimated duration.
        estimate: Duration,
        /// The limit.
        limit: Duration,
    },
    /// A saved report that cannot be read (`report`, `compare`, `--resume`).
    ReadReport {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A saved report that cannot be resumed here.
    Resume(String),
    /// Stopped by a signal (SIGINT, SIGTERM).
    Interrupted(i32),
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
    /// An output (a report file, the chart, stdout) could not be written.
    Io {
        /// The file (`stdout` for stdout).
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for BurstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BurstError::Options(e) => write!(f, "{e}"),
            BurstError::Usage(e) => write!(f, "{e}"),
            BurstError::Topology(e) => write!(f, "reading this machine's topology: {e}"),
            BurstError::Target(e) => write!(f, "{e}"),
            BurstError::Model(e) => write!(f, "{e}"),
            BurstError::CpusNotAllowed { cpus, allowed } => {
                write!(f, "--cpus {cpus}: not within the usable CPUs {allowed}")
            }
            BurstError::NoConfiguration => write!(f, "no configuration to run (no usable CPU)"),
            BurstError::NothingToRun { skipped } => {
                write!(f, "no index source can run here")?;
                for s in skipped {
                    write!(f, "; {}: {}", s.index, s.reason)?;
                }
                Ok(())
            }
            BurstError::DebugBuild => write!(
                f,
                "this is a debug build: its timings are tens of times slower than a release \
                 build's and not comparable; build with --release (cargo run --release -p \
                 percid-burst), or pass --allow-debug to run anyway"
            ),
            BurstError::TooLong {
                runs,
                estimate,
                limit,
            } => write!(
                f,
                "{runs} runs estimated at about {}, above --max-duration {}: shorten the run \
                 (--runs, --passes, --config, --delay) or raise --max-duration",
                fmt_duration(*estimate),
                fmt_duration(*limit)
            ),
            BurstError::ReadReport { path, reason } => {
                write!(f, "cannot read {}: {reason}", path.display())
            }
            BurstError::Resume(why) => write!(f, "cannot resume: {why}"),
            BurstError::Interrupted(s) => write!(f, "interrupted by {}", signal_name(*s)),
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
    /// The command's exit status: 2 for bad usage (options, targets, descriptions, presets,
    /// configurations, limits, unreadable or unresumable reports), 128 + the signal for an
    /// interrupt (130 SIGINT, 143 SIGTERM), 1 for a failed run or output.
    pub fn exit_code(&self) -> i32 {
        match self {
            BurstError::Options(_)
            | BurstError::Usage(_)
            | BurstError::Target(_)
            | BurstError::Model(_)
            | BurstError::CpusNotAllowed { .. }
            | BurstError::NoConfiguration
            | BurstError::DebugBuild
            | BurstError::TooLong { .. }
            | BurstError::ReadReport { .. }
            | BurstError::Resume(_) => 2,
            BurstError::Interrupted(s) => exit_status(*s),
            _ => 1,
        }
    }
}
