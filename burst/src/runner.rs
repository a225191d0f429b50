//! Planning and running: which (configuration, delay, index, run) cells to run, their
//! estimates and limits, running them in order with a checkpoint after each, and resuming a
//! saved partial report.

use std::collections::BTreeMap;
use std::time::Duration;

use percid::index::Index;
use percid::topology::{CpuSet, Topology};

use crate::harness::{self, run_real_with, unavailable_reason};
use crate::interrupt::Interrupt;
use crate::machine::{Configurations, MachineDescription};
use crate::model::{CostModel, percentile_interval, run_draws, trace_run};
use crate::options::{MAX_DELAY, Options, Target, parse_index};
use crate::progress::{Progress, fmt_duration};
use crate::report::{
    ConfigRecord, Generator, Machine, Method, Mode, PlanRecord, Report, ResultRow, RunRecord,
    SCHEMA, Skipped, TargetRecord,
};
use crate::schedule::{Plan, run_seed};
use crate::stats::RunStats;
use crate::{BurstError, fmt_ms};

/// A named CPU set to run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Name (`8c-1l3`, or `cpus:LIST` for `--cpus`).
    pub name: String,
    /// The CPUs, one thread each, in increasing order.
    pub cpus: Vec<usize>,
}

/// The machine of a target: this machine, a preset or a description.
pub fn load_machine(target: &Target) -> Result<MachineDescription, BurstError> {
    match target {
        Target::Real => MachineDescription::sysfs().map_err(BurstError::Topology),
        Target::Preset(name) => MachineDescription::preset(name).map_err(BurstError::Target),
        Target::Describe(path) => {
            MachineDescription::from_json_file(path).map_err(BurstError::Target)
        }
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

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The CPU model name of this machine (`/proc/cpuinfo`).
pub fn cpu_model_name() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

const MODELLED_KERNEL: &str = "modelled: cpu = the CPU; mmcid = cache-local mm_cid (Linux \
                               6.13-6.18); user-legacy / user-local / user-task = \
                               DeterministicAllocator";

/// Everything a run is to do, checked and estimated before any work.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Real run or simulation.
    pub target: Target,
    /// The machine.
    pub machine: MachineDescription,
    /// The cost model (simulations).
    pub model: Option<CostModel>,
    /// Configurations, in run order.
    pub configs: Vec<RunConfig>,
    /// Delays, in run order.
    pub delays: Vec<Duration>,
    /// Index sources to run, in order.
    pub indices: Vec<Index>,
    /// Index sources not available here.
    pub skipped: Vec<Skipped>,
    /// Method parameters.
    pub method: Method,
    /// The report's machine record.
    pub machine_record: Machine,
    /// The report's kernel field.
    pub kernel: String,
    /// Refuse when the estimate of what is left to run is longer.
    pub max_duration: Duration,
}

/// One (configuration, delay, index, run) to run: positions in the plan's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    /// Configuration.
    pub config: usize,
    /// Delay.
    pub delay: usize,
    /// Index source.
    pub index: usize,
    /// Run number (0-based).
    pub run: usize,
}

/// The runs done so far: by (configuration, delay, index) position, by run number.
pub type Done = BTreeMap<(usize, usize, usize), BTreeMap<usize, RunRecord>>;

/// Assumed cost of evaluating one cache line of one pass in the simulator (for estimates).
const SIM_NS_PER_LINE: f64 = if cfg!(debug_assertions) {
    6000.0
} else {
    300.0
};
/// Assumed duration of one warm-up pass of 16 KiB in a real run (for estimates).
const REAL_WARMUP_NS_PER_16K: u64 = if cfg!(debug_assertions) {
    100_000
} else {
    1_000
};

fn why_unavailable(index: Index, simulated: bool) -> Option<String> {
    if simulated {
        None
    } else {
        unavailable_reason(index)
    }
}

/// Checks the options and makes the plan: loads the machine (and cost model), selects the
/// configurations, drops the index sources this machine lacks (to `skipped`), refuses a
/// timed run of a debug build without `allow_debug`, a run with nothing left to run, and a
/// run estimated longer than `max_duration`.
pub fn plan_run(options: &Options) -> Result<RunPlan, BurstError> {
    options.validate().map_err(BurstError::Options)?;
    let simulated = options.target.is_simulated();
    if !simulated && cfg!(debug_assertions) && !options.allow_debug {
        return Err(BurstError::DebugBuild);
    }
    let machine = load_machine(&options.target)?;
    let model = if simulated {
        Some(CostModel::from_machine(&machine).map_err(BurstError::Model)?)
    } else {
        None
    };
    let configs = select_configs(&machine.topology, options)?;
    let mut skipped = Vec::new();
    let mut indices = Vec::new();
    for &i in &options.indices {
        if indices.contains(&i) {
            continue;
        }
        match why_unavailable(i, simulated) {
            Some(reason) => skipped.push(Skipped {
                index: i.name().to_string(),
                reason,
            }),
            None => indices.push(i),
        }
    }
    if indices.is_empty() {
        return Err(BurstError::NothingToRun { skipped });
    }
    let (machine_record, kernel) = records(&machine, simulated);
    let plan = RunPlan {
        target: options.target.clone(),
        model,
        configs,
        delays: options.delays.clone(),
        indices,
        skipped,
        method: Method {
            item_size: options.item_size,
            stride: 64 * 1024,
            warmup: options.warmup,
            passes: options.passes,
            runs: options.runs,
            seed: options.seed,
        },
        machine_record,
        kernel,
        machine,
        max_duration: options.max_duration,
    };
    plan.check_estimate(&Done::new())?;
    Ok(plan)
}

fn records(machine: &MachineDescription, simulated: bool) -> (Machine, String) {
    if simulated {
        (
            Machine::describe(machine, machine.topology.note().map(str::to_string), true),
            MODELLED_KERNEL.to_string(),
        )
    } else {
        (
            Machine::describe(machine, cpu_model_name(), false),
            kernel_release(),
        )
    }
}

fn refuse(why: impl Into<String>) -> BurstError {
    BurstError::Resume(why.into())
}

/// The plan of a saved report, to continue it (`--resume`), and the runs it holds. Refused
/// (with the reason) when the report is not one this build can continue: schema 1, another
/// version or build profile, another machine or kernel, a changed description, a source no
/// longer available. `options` gives `allow_debug` and `max_duration` only.
pub fn plan_resume(report: &Report, options: &Options) -> Result<(RunPlan, Done), BurstError> {
    let Some(p) = &report.plan else {
        return Err(refuse(format!(
            "the report has no plan (schema {}; only reports written by `run` with schema {SCHEMA} can be resumed)",
            report.schema
        )));
    };
    let this = Generator::this_build();
    match &report.generator {
        Some(g) if g.percid_burst == this.percid_burst && g.build == this.build => {}
        Some(g) => {
            return Err(refuse(format!(
                "written by percid-burst {} ({} build), this is {} ({} build)",
                g.percid_burst, g.build, this.percid_burst, this.build
            )));
        }
        None => return Err(refuse("the report does not say which build wrote it")),
    }
    let target = match &p.target {
        TargetRecord::Real => Target::Real,
        TargetRecord::Preset(n) => Target::Preset(n.clone()),
        TargetRecord::Describe(f) => Target::Describe(f.into()),
    };
    let simulated = target.is_simulated();
    if simulated != (report.mode == Mode::Simulated) {
        return Err(refuse("the plan's target does not match the report's mode"));
    }
    if !simulated && cfg!(debug_assertions) && !options.allow_debug {
        return Err(BurstError::DebugBuild);
    }
    let machine = load_machine(&target)?;
    let model = if simulated {
        Some(CostModel::from_machine(&machine).map_err(BurstError::Model)?)
    } else {
        None
    };
    let (machine_record, kernel) = records(&machine, simulated);
    if let Some(d) = machine_record.difference(&report.machine) {
        return Err(refuse(format!("another machine: {d}")));
    }
    if kernel != report.kernel {
        return Err(refuse(format!(
            "another kernel: {kernel} here, {} in the file",
            report.kernel
        )));
    }
    if report.method.stride != 64 * 1024 {
        return Err(refuse(format!(
            "method.stride {} is not the pool's 65536",
            report.method.stride
        )));
    }
    for &ms in &p.delays_ms {
        if !(ms.is_finite() && ms > 0.0 && ms <= MAX_DELAY.as_secs_f64() * 1e3) {
            return Err(refuse(format!(
                "the plan's delay {ms} ms is not in (0, 1 h]"
            )));
        }
    }
    let mut configs = Vec::new();
    for c in &p.configs {
        let set =
            CpuSet::parse(&c.cpus).map_err(|e| refuse(format!("configuration {}: {e}", c.name)))?;
        if !set.is_subset(machine.topology.allowed()) {
            return Err(refuse(format!(
                "configuration {} needs CPUs {set}, this process may use {}",
                c.name,
                machine.topology.allowed()
            )));
        }
        configs.push(RunConfig {
            name: c.name.clone(),
            cpus: set.iter().collect(),
        });
    }
    let mut indices = Vec::new();
    for name in &p.indices {
        let i = parse_index(name).map_err(refuse)?;
        if let Some(reason) = why_unavailable(i, simulated) {
            return Err(refuse(format!(
                "{name} was run but is not available now: {reason}"
            )));
        }
        indices.push(i);
    }
    let plan = RunPlan {
        target,
        model,
        configs,
        delays: p
            .delays_ms
            .iter()
            .map(|ms| Duration::from_nanos((ms * 1e6).round() as u64))
            .collect(),
        indices,
        skipped: report.skipped.clone(),
        method: report.method.clone(),
        machine_record,
        kernel,
        machine,
        max_duration: options.max_duration,
    };
    let mut done = Done::new();
    for row in &report.results {
        let key = plan
            .position(&row.config, row.delay_ms, &row.index)
            .ok_or_else(|| {
                refuse(format!(
                    "cell {} {} {} is not in the plan",
                    row.config,
                    fmt_ms(row.delay_ms),
                    row.index
                ))
            })?;
        if row.per_run.len() != row.runs.len() {
            return Err(refuse(format!(
                "cell {} {} {} has no per-run records",
                row.config,
                fmt_ms(row.delay_ms),
                row.index
            )));
        }
        // Each saved run must be one this method makes: threads x passes timed passes (a
        // report whose method was edited after the runs is refused, not mixed in).
        let threads = plan.configs[key.0].cpus.len() as u64;
        let expected = threads * plan.method.passes as u64;
        for r in &row.per_run {
            if r.passes != expected || row.cpus as u64 != threads {
                return Err(refuse(format!(
                    "cell {} {} {}: run {} has {} timed passes on {} CPUs, the method (passes {}) on {threads} CPUs gives {expected}: the method or the results were edited",
                    row.config,
                    fmt_ms(row.delay_ms),
                    row.index,
                    r.run,
                    r.passes,
                    row.cpus,
                    plan.method.passes
                )));
            }
            if r.run >= plan.method.runs || r.seed != run_seed(plan.method.seed, r.run) {
                return Err(refuse(format!(
                    "cell {} {} {}: run {} does not belong to this plan",
                    row.config,
                    fmt_ms(row.delay_ms),
                    row.index,
                    r.run
                )));
            }
            done.entry(key).or_default().insert(r.run, r.clone());
        }
    }
    plan.check_estimate(&done)?;
    Ok((plan, done))
}

impl RunPlan {
    /// Whether this is a simulation.
    pub fn simulated(&self) -> bool {
        self.target.is_simulated()
    }

    fn position(&self, config: &str, delay_ms: f64, index: &str) -> Option<(usize, usize, usize)> {
        let c = self.configs.iter().position(|c| c.name == config)?;
        let d = self
            .delays
            .iter()
            .position(|d| (d.as_secs_f64() * 1e3 - delay_ms).abs() < 1e-6)?;
        let i = self.indices.iter().position(|i| i.name() == index)?;
        Some((c, d, i))
    }

    /// Every cell, in run order: configuration, delay, run, index (so the index sources of a
    /// run share its seed and alternate).
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for config in 0..self.configs.len() {
            for delay in 0..self.delays.len() {
                for run in 0..self.method.runs {
                    for index in 0..self.indices.len() {
                        cells.push(Cell {
                            config,
                            delay,
                            index,
                            run,
                        });
                    }
                }
            }
        }
        cells
    }

    /// The cells not in `done`.
    pub fn todo(&self, done: &Done) -> Vec<Cell> {
        self.cells()
            .into_iter()
            .filter(|c| {
                !done
                    .get(&(c.config, c.delay, c.index))
                    .is_some_and(|runs| runs.contains_key(&c.run))
            })
            .collect()
    }

    /// Rough duration of one cell: for real runs the schedule's expected duration (with a
    /// warm-up pass of about 1 µs per 16 KiB in release builds); for simulations the lines
    /// to evaluate at an assumed rate.
    pub fn estimate(&self, cell: Cell) -> Duration {
        let threads = self.configs[cell.config].cpus.len();
        let delay = self.delays[cell.delay];
        let m = &self.method;
        if self.simulated() {
            let lines = m.item_size.div_ceil(64) as f64;
            let work = threads as f64 * (m.passes as f64 + 1.0) * lines;
            Duration::from_secs_f64(work * SIM_NS_PER_LINE * 1e-9)
        } else {
            let warm_ns = (m.warmup as u64)
                .saturating_mul(REAL_WARMUP_NS_PER_16K)
                .saturating_mul(m.item_size as u64)
                / (16 * 1024);
            harness::estimate_with_warmup(threads, delay, m.passes, Duration::from_nanos(warm_ns))
        }
    }

    /// The estimate of the cells not in `done`.
    pub fn estimate_left(&self, done: &Done) -> Duration {
        self.todo(done)
            .into_iter()
            .map(|c| self.estimate(c))
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    fn check_estimate(&self, done: &Done) -> Result<(), BurstError> {
        let estimate = self.estimate_left(done);
        if estimate > self.max_duration {
            return Err(BurstError::TooLong {
                runs: self.todo(done).len(),
                estimate,
                limit: self.max_duration,
            });
        }
        Ok(())
    }

    /// The plan as saved in a report.
    pub fn record(&self) -> PlanRecord {
        PlanRecord {
            target: match &self.target {
                Target::Real => TargetRecord::Real,
                Target::Preset(n) => TargetRecord::Preset(n.clone()),
                Target::Describe(f) => TargetRecord::Describe(
                    std::path::absolute(f)
                        .unwrap_or_else(|_| f.clone())
                        .display()
                        .to_string(),
                ),
            },
            configs: self
                .configs
                .iter()
                .map(|c| ConfigRecord {
                    name: c.name.clone(),
                    cpus: c.cpus.iter().copied().collect::<CpuSet>().to_string(),
                })
                .collect(),
            delays_ms: self.delays.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
            indices: self.indices.iter().map(|i| i.name().to_string()).collect(),
        }
    }

    /// The report of the runs in `done`.
    pub fn report(&self, done: &Done) -> Report {
        let mut results = Vec::new();
        for (c, config) in self.configs.iter().enumerate() {
            for (d, delay) in self.delays.iter().enumerate() {
                for (i, index) in self.indices.iter().enumerate() {
                    let Some(runs) = done.get(&(c, d, i)) else {
                        continue;
                    };
                    if runs.is_empty() {
                        continue;
                    }
                    results.push(ResultRow::from_runs(
                        &config.name,
                        config.cpus.len(),
                        delay.as_secs_f64() * 1e3,
                        index.name(),
                        runs.values().cloned().collect(),
                    ));
                }
            }
        }
        Report {
            schema: SCHEMA,
            generator: Some(Generator::this_build()),
            mode: if self.simulated() {
                Mode::Simulated
            } else {
                Mode::Real
            },
            machine: self.machine_record.clone(),
            kernel: self.kernel.clone(),
            method: self.method.clone(),
            plan: Some(self.record()),
            complete: self.todo(done).is_empty(),
            results,
            skipped: self.skipped.clone(),
        }
    }

    /// One line: what will run and about how long it takes.
    pub fn describe(&self, done: &Done) -> String {
        let todo = self.todo(done).len();
        let total = self.cells().len();
        let left = if todo == total {
            String::new()
        } else {
            format!(", {todo} left to run")
        };
        format!(
            "burst: {} configuration(s) x {} delay(s) x {} index source(s) x {} run(s) = {total} runs{left}, about {}{}",
            self.configs.len(),
            self.delays.len(),
            self.indices.len(),
            self.method.runs,
            fmt_duration(self.estimate_left(done)),
            if self.simulated() { " (simulated)" } else { "" }
        )
    }

    /// Runs one cell and returns its record.
    pub fn run_cell(&self, cell: Cell, interrupt: &Interrupt) -> Result<RunRecord, BurstError> {
        let config = &self.configs[cell.config];
        let index = self.indices[cell.index];
        let seed = run_seed(self.method.seed, cell.run);
        let plan = Plan::new(config.cpus.len(), self.delays[cell.delay], seed);
        let (records, interval, draws) = match &self.model {
            Some(m) => {
                let trace = trace_run(
                    &self.machine.topology,
                    m,
                    &config.cpus,
                    index,
                    &plan,
                    &self.method,
                )?;
                // The same parameter draws for every cell and run (seeded by the base seed),
                // so that cells stay comparable draw by draw.
                let (central, draws) = run_draws(&trace, m, self.method.seed)?;
                let interval = percentile_interval(central, &draws);
                // Kept per run (rounded to 0.1 ns) so that a cell's interval and the
                // speedups' intervals are taken draw by draw, also from a saved report.
                let draws = draws.iter().map(|v| (v * 10.0).round() / 10.0).collect();
                (trace.records, interval, draws)
            }
            None => (
                run_real_with(&config.cpus, index, &plan, &self.method, interrupt)?,
                None,
                Vec::new(),
            ),
        };
        let stats = RunStats::from_records(&records);
        Ok(RunRecord {
            run: cell.run,
            seed,
            ns_per_pass: stats.mean_ns,
            ns_per_pass_low: interval.map(|i| i.0),
            ns_per_pass_high: interval.map(|i| i.1),
            draws,
            passes: stats.passes,
            slot_migrations: stats.slot_migrations,
            slots: stats.slots.iter().copied().collect::<CpuSet>().to_string(),
        })
    }

    /// `2c-1l3 200ms user-legacy run 3/5`.
    pub fn label(&self, cell: Cell) -> String {
        format!(
            "{} {} {} run {}/{}",
            self.configs[cell.config].name,
            fmt_ms(self.delays[cell.delay].as_secs_f64() * 1e3),
            self.indices[cell.index],
            cell.run + 1,
            self.method.runs
        )
    }
}

/// Called with the report after every completed run.
pub type Checkpoint<'a> = &'a mut dyn FnMut(&Report) -> Result<(), BurstError>;

/// What [`execute`] reports to as it goes.
pub struct Hooks<'a> {
    /// Checked before each run (and, in real runs, during their sleeps).
    pub interrupt: &'a Interrupt,
    /// Progress display.
    pub progress: Option<&'a mut Progress>,
    /// Called with the report after every completed run (the JSON checkpoint).
    pub checkpoint: Option<Checkpoint<'a>>,
}

/// Runs the cells of `plan` not in `done`, in order, adding each completed run to `done`
/// and calling the checkpoint with the report so far. Stops at the first error: an
/// interrupt ([`BurstError::Interrupted`]) or a failed run; `done` then holds what was
/// completed.
pub fn execute(plan: &RunPlan, done: &mut Done, hooks: Hooks<'_>) -> Result<(), BurstError> {
    let Hooks {
        interrupt,
        mut progress,
        mut checkpoint,
    } = hooks;
    for cell in plan.todo(done) {
        if let Some(s) = interrupt.signal() {
            return Err(BurstError::Interrupted(s));
        }
        if let Some(p) = progress.as_deref_mut() {
            p.start(&plan.label(cell));
        }
        let record = plan.run_cell(cell, interrupt)?;
        let line = format!(
            "{}: {:.0} ns/pass, {}/{} migrations",
            plan.label(cell),
            record.ns_per_pass,
            record.slot_migrations,
            record.passes
        );
        done.entry((cell.config, cell.delay, cell.index))
            .or_default()
            .insert(cell.run, record);
        if let Some(save) = checkpoint.as_deref_mut() {
            save(&plan.report(done))?;
        }
        if let Some(p) = progress.as_deref_mut() {
            p.done(plan.estimate(cell), &line);
        }
    }
    Ok(())
}

/// Runs the benchmark (real or simulated, per `options.target`) and returns the report: no
/// progress, no files, no signal handling (the command does those).
pub fn run(options: &Options) -> Result<Report, BurstError> {
    let plan = plan_run(options)?;
    let mut done = Done::new();
    execute(
        &plan,
        &mut done,
        Hooks {
            interrupt: &Interrupt::new(),
            progress: None,
            checkpoint: None,
        },
    )?;
    Ok(plan.report(&done))
}

/// The configurations of `topology` as a CPU set list, for messages.
pub fn describe_configs(topology: &Topology) -> Vec<(String, CpuSet)> {
    topology
        .configurations()
        .into_iter()
        .map(|c| (c.name, c.cpus))
        .collect()
}
