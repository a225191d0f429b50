//! The report: the JSON document (schema in the [crate docs](crate#json-schema)), reading
//! saved reports (schema 1 and 2), per-run records, merging. The text outputs are in
//! `render.rs`, the chart in `svg.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::machine::MachineDescription;
use percid::topology::CpuSet;

/// The schema version this build writes. Files without `"schema"` are version 1.
pub const SCHEMA: u32 = 2;

/// Real run or simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Threads on this machine.
    #[default]
    Real,
    /// The cost model replay.
    Simulated,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Real => "real",
            Mode::Simulated => "simulated",
        })
    }
}

/// The machine the report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Machine {
    /// Real runs: the CPU model name (`/proc/cpuinfo`); simulations: the preset or
    /// description name. (Schema 1 wrote `sysfs` for real runs.)
    pub name: String,
    /// Hostname-free summary: `2 x AMD EPYC 9654 96-Core Processor, 192 cores, 384 CPUs,
    /// 24 L3 domains` (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// CPU model (`/proc/cpuinfo` for real runs; the description's note otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Online CPUs (Linux list).
    pub online: String,
    /// CPUs the benchmark may use (Linux list).
    pub allowed: String,
    /// Number of cores.
    pub cores: usize,
    /// Hardware threads per core.
    pub threads_per_core: usize,
    /// Number of L3 domains.
    pub l3_domains: usize,
    /// Number of packages.
    pub packages: usize,
    /// The cost model used (simulations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_model: Option<serde_json::Value>,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Machine {
    /// Describes `machine`: `model` is the CPU model name (real runs) or the description's
    /// note (simulations, which also keep the cost model).
    pub fn describe(
        machine: &MachineDescription,
        model: Option<String>,
        simulated: bool,
    ) -> Machine {
        let topology = &machine.topology;
        let packages = topology.packages().len();
        let counts = format!(
            "{}, {}, {}",
            plural(topology.cores().len(), "core", "cores"),
            plural(topology.online().len(), "CPU", "CPUs"),
            plural(topology.l3().len(), "L3 domain", "L3 domains"),
        );
        let (name, summary) = if simulated {
            // A preset's note starts with the part's name ("AMD EPYC 9654 (Zen 4 ...), ...");
            // another note (the template's "Template for --describe: ...") names no part, so
            // the first words count as one only when they start with a CPU vendor's name.
            const VENDORS: [&str; 10] = [
                "AMD", "Intel", "Ampere", "Arm", "ARM", "Apple", "IBM", "Qualcomm", "Fujitsu",
                "NVIDIA",
            ];
            let part = model
                .as_deref()
                .map(|n| {
                    n.split([',', '(', ':', ';'])
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .filter(|p| {
                    p.split_whitespace()
                        .next()
                        .is_some_and(|w| VENDORS.contains(&w))
                });
            let summary = match part {
                Some(p) => format!("{packages} x {p}, {counts} (modelled: {})", topology.name()),
                None => format!(
                    "{}, {counts} (modelled: {})",
                    plural(packages, "package", "packages"),
                    topology.name()
                ),
            };
            (topology.name().to_string(), summary)
        } else {
            let name = model.clone().unwrap_or_else(|| "unknown CPU".to_string());
            (name.clone(), format!("{packages} x {name}, {counts}"))
        };
        Machine {
            name,
            summary: Some(summary),
            model,
            online: topology.online().to_string(),
            allowed: topology.allowed().to_string(),
            cores: topology.cores().len(),
            threads_per_core: topology.threads_per_core(),
            l3_domains: topology.l3().len(),
            packages,
            cost_model: if simulated {
                machine.cost_model.clone()
            } else {
                None
            },
        }
    }

    /// The summary (schema 1 reports: built from the counts).
    pub fn summary(&self) -> String {
        self.summary.clone().unwrap_or_else(|| {
            format!(
                "{} ({}, {}, {})",
                self.name,
                plural(self.cores, "core", "cores"),
                plural(
                    CpuSet::parse(&self.online).map_or(0, |s| s.len()),
                    "CPU",
                    "CPUs"
                ),
                plural(self.l3_domains, "L3 domain", "L3 domains")
            )
        })
    }

    /// Why `other` is not the same machine as `self`, if it is not (the allowed CPUs may
    /// differ).
    pub fn difference(&self, other: &Machine) -> Option<String> {
        let fields: [(&str, String, String); 8] = [
            ("name", self.name.clone(), other.name.clone()),
            (
                "model",
                format!("{:?}", self.model),
                format!("{:?}", other.model),
            ),
            ("online CPUs", self.online.clone(), other.online.clone()),
            ("cores", self.cores.to_string(), other.cores.to_string()),
            (
                "threads per core",
                self.threads_per_core.to_string(),
                other.threads_per_core.to_string(),
            ),
            (
                "L3 domains",
                self.l3_domains.to_string(),
                other.l3_domains.to_string(),
            ),
            (
                "packages",
                self.packages.to_string(),
                other.packages.to_string(),
            ),
            (
                "cost model",
                format!("{:?}", self.cost_model),
                format!("{:?}", other.cost_model),
            ),
        ];
        fields
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(what, a, b)| {
                if what == "cost model" {
                    "the cost model differs".to_string()
                } else {
                    format!("{what} {a} here, {b} in the file")
                }
            })
    }
}

/// The method's parameters as run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Method {
    /// Bytes incremented per pass.
    pub item_size: usize,
    /// Pool stride (bytes between slots).
    pub stride: usize,
    /// Warm-up passes per thread and run.
    pub warmup: usize,
    /// Timed passes per thread and run.
    pub passes: usize,
    /// Runs per cell.
    pub runs: usize,
    /// Base seed of the start permutations.
    pub seed: u64,
}

/// One run of one cell (schema 2): enough to rebuild the cell's figures exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunRecord {
    /// Run number, 0-based (the seed derives from it).
    pub run: usize,
    /// The run's seed ([`crate::run_seed`] of the base seed and `run`).
    pub seed: u64,
    /// Mean ns per timed pass of the run (simulations: with the central parameters).
    pub ns_per_pass: f64,
    /// Simulations: 10th percentile of the run's mean over the parameter draws.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_per_pass_low: Option<f64>,
    /// Simulations: 90th percentile of the run's mean over the parameter draws.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_per_pass_high: Option<f64>,
    /// Timed passes.
    pub passes: u64,
    /// Timed passes whose slot was last written from another CPU.
    pub slot_migrations: u64,
    /// Slots indexed by timed passes (Linux list syntax).
    pub slots: String,
    /// Simulations: the run's mean ns per pass under each Monte Carlo parameter draw (the
    /// same draws, in the same order, for every cell and run of a report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draws: Vec<f64>,
}

/// One (configuration, delay, index) cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResultRow {
    /// Configuration name (`8c-1l3`, `cpus:0-3`, ...).
    pub config: String,
    /// Threads (= CPUs) of the configuration.
    pub cpus: usize,
    /// Delay in milliseconds.
    pub delay_ms: f64,
    /// `cpu`, `mmcid`, `user-legacy`, `user-local` or `user-task`.
    pub index: String,
    /// Mean of the run means, ns per pass.
    pub ns_per_pass: f64,
    /// Lower end of an uncertainty interval of `ns_per_pass` (set by models that give one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_per_pass_low: Option<f64>,
    /// Upper end of that interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_per_pass_high: Option<f64>,
    /// Mean ns per pass of each run.
    pub runs: Vec<f64>,
    /// Timed passes over all runs.
    pub passes: u64,
    /// Timed passes whose slot was last written from another CPU, over all runs.
    pub slot_migrations: u64,
    /// Distinct slots indexed by timed passes, over all runs.
    pub distinct_slots: u64,
    /// Every run (schema 2), in run order; `runs` holds their `ns_per_pass`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_run: Vec<RunRecord>,
}

/// Per-draw means over `runs` when every run has the same number of draws.
fn draw_means(runs: &[RunRecord]) -> Option<Vec<f64>> {
    let n = runs.first()?.draws.len();
    if n == 0 || runs.iter().any(|r| r.draws.len() != n) {
        return None;
    }
    Some(
        (0..n)
            .map(|k| crate::mean(runs.iter().map(|r| r.draws[k])))
            .collect(),
    )
}

impl ResultRow {
    /// The cell's mean ns per pass under each parameter draw (simulations), when every run
    /// carries the same number of draws.
    pub fn draw_means(&self) -> Option<Vec<f64>> {
        draw_means(&self.per_run)
    }

    /// The interval `(low, high)` when both ends are given.
    pub fn interval(&self) -> Option<(f64, f64)> {
        match (self.ns_per_pass_low, self.ns_per_pass_high) {
            (Some(l), Some(h)) => Some((l, h)),
            _ => None,
        }
    }

    /// Rebuilds a cell's figures from its runs (in run order).
    pub fn from_runs(
        config: &str,
        cpus: usize,
        delay_ms: f64,
        index: &str,
        per_run: Vec<RunRecord>,
    ) -> ResultRow {
        let runs: Vec<f64> = per_run.iter().map(|r| r.ns_per_pass).collect();
        let slots: BTreeSet<usize> = per_run
            .iter()
            .filter_map(|r| CpuSet::parse(&r.slots).ok())
            .flat_map(|s| s.iter().collect::<Vec<_>>())
            .collect();
        // A cell's interval: the percentiles of its per-draw means over the runs (every run
        // drew the same parameter sets); without draws, the mean of the runs' intervals.
        let all = |f: fn(&RunRecord) -> Option<f64>| -> Option<f64> {
            let v: Option<Vec<f64>> = per_run.iter().map(f).collect();
            v.filter(|v| !v.is_empty())
                .map(|v| crate::mean(v.iter().copied()))
        };
        let central = crate::mean(runs.iter().copied());
        let (ns_per_pass_low, ns_per_pass_high) =
            match draw_means(&per_run).and_then(|d| crate::percentile_interval(central, &d)) {
                Some((l, h)) => (Some(l), Some(h)),
                None => (all(|r| r.ns_per_pass_low), all(|r| r.ns_per_pass_high)),
            };
        ResultRow {
            config: config.to_string(),
            cpus,
            delay_ms,
            index: index.to_string(),
            ns_per_pass: crate::mean(runs.iter().copied()),
            ns_per_pass_low,
            ns_per_pass_high,
            runs,
            passes: per_run.iter().map(|r| r.passes).sum(),
            slot_migrations: per_run.iter().map(|r| r.slot_migrations).sum(),
            distinct_slots: slots.len() as u64,
            per_run,
        }
    }
}

/// An index source that was not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Index source name.
    pub index: String,
    /// Why.
    pub reason: String,
}

/// What wrote the report (schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generator {
    /// Version of percid-burst.
    pub percid_burst: String,
    /// Version of the percid library.
    pub percid: String,
    /// `release` or `debug` (a debug build's timings are not comparable).
    pub build: String,
}

impl Generator {
    /// This build.
    pub fn this_build() -> Generator {
        Generator {
            percid_burst: env!("CARGO_PKG_VERSION").to_string(),
            percid: percid::VERSION.to_string(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
        }
    }
}

/// What a run ran on, as saved for `--resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetRecord {
    /// This machine.
    Real,
    /// `--simulate PRESET`.
    Preset(String),
    /// `--describe FILE` (absolute path).
    Describe(String),
}

/// A configuration as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// Name.
    pub name: String,
    /// CPUs (Linux list).
    pub cpus: String,
}

/// Everything the run was asked to do (schema 2): `--resume` continues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// Real run or simulation target.
    pub target: TargetRecord,
    /// Configurations, in run order.
    pub configs: Vec<ConfigRecord>,
    /// Delays in ms, in run order.
    pub delays_ms: Vec<f64>,
    /// Index sources run (the skipped ones are in `skipped`).
    pub indices: Vec<String>,
}

impl PlanRecord {
    /// Runs the plan has: configurations x delays x index sources x runs.
    pub fn runs_planned(&self, runs: usize) -> usize {
        self.configs.len() * self.delays_ms.len() * self.indices.len() * runs
    }
}

/// The whole report (the JSON document; schema in the [crate docs](crate#json-schema)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Schema version: [`SCHEMA`]; 1 when the file has none.
    #[serde(default = "schema_one")]
    pub schema: u32,
    /// What wrote it (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    /// `real` or `simulated`.
    pub mode: Mode,
    /// The machine.
    pub machine: Machine,
    /// Kernel release (`uname -r`) for real runs; for simulations, the kernel behaviour
    /// modelled.
    pub kernel: String,
    /// Method parameters.
    pub method: Method,
    /// What was planned (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRecord>,
    /// Whether every planned run is in the report (false: interrupted or failed part-way;
    /// `--resume` continues it). Schema 1 reports are complete.
    #[serde(default = "yes")]
    pub complete: bool,
    /// One entry per (configuration, delay, index), in run order.
    pub results: Vec<ResultRow>,
    /// Index sources not run.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

impl Default for Report {
    /// An empty, complete report of the current schema, written by this build.
    fn default() -> Report {
        Report {
            schema: SCHEMA,
            generator: Some(Generator::this_build()),
            mode: Mode::Real,
            machine: Machine::default(),
            kernel: String::new(),
            method: Method::default(),
            plan: None,
            complete: true,
            results: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

fn schema_one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// A saved report that cannot be read.
#[derive(Debug)]
pub enum ReportError {
    /// The file could not be read.
    Io(std::io::Error),
    /// Not a report (bad JSON or missing fields).
    Json(serde_json::Error),
    /// Written by a newer version.
    Schema(u32),
    /// A value no run can produce (non-finite, negative, more migrations than passes, a
    /// method outside the options' ranges, a cell twice).
    Invalid(String),
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Io(e) => write!(f, "{e}"),
            ReportError::Json(e) => write!(f, "not a burst report: {e}"),
            ReportError::Schema(n) => write!(
                f,
                "report schema {n} is newer than this build reads ({SCHEMA}); update percid-burst"
            ),
            ReportError::Invalid(why) => write!(f, "impossible report: {why}"),
        }
    }
}

impl std::error::Error for ReportError {}

/// The largest report file read (`report`, `compare`, `--resume`): 1 GiB, room for
/// about 500,000 cells of 5 runs.
pub const MAX_REPORT_BYTES: u64 = 1 << 30;

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Parses a report (schema 1 or 2).
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads a saved report, checking its schema version. A file larger than
    /// [`MAX_REPORT_BYTES`] is refused.
    pub fn read(path: &Path) -> Result<Report, ReportError> {
        let text = crate::output::read_bounded(path, MAX_REPORT_BYTES).map_err(ReportError::Io)?;
        let report = Report::from_json(&text).map_err(ReportError::Json)?;
        if report.schema > SCHEMA {
            return Err(ReportError::Schema(report.schema));
        }
        report.validate().map_err(ReportError::Invalid)?;
        Ok(report)
    }

    /// Checks that every value is one a run can produce: the method within the options'
    /// ranges; per cell a name, 1 to 8192 CPUs, a delay in (0, 1 h], at most `method.runs`
    /// runs, timings finite and in (0, [`MAX_NS_PER_PASS`]], at most as many slot
    /// migrations and distinct slots as timed passes (per run too), and no cell twice.
    /// Linear in the cells.
    pub fn validate(&self) -> Result<(), String> {
        use crate::options::{MAX_DELAY, MAX_ITEM_SIZE, MAX_PASSES, MAX_RUNS, MAX_WARMUP};
        let m = &self.method;
        let ranges = [
            ("item_size", m.item_size, 1, MAX_ITEM_SIZE),
            ("passes", m.passes, 1, MAX_PASSES),
            ("runs", m.runs, 1, MAX_RUNS),
            ("warmup", m.warmup, 0, MAX_WARMUP),
        ];
        for (name, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(format!("method.{name} {v} is outside {lo} to {hi}"));
            }
        }
        if m.stride < m.item_size {
            return Err(format!(
                "method.stride {} is below the item size {}",
                m.stride, m.item_size
            ));
        }
        let time = |what: &str, cell: &str, v: f64| -> Result<(), String> {
            if v.is_finite() && v > 0.0 && v <= MAX_NS_PER_PASS {
                Ok(())
            } else {
                Err(format!(
                    "{cell}: {what} {v} is not a time in (0, {MAX_NS_PER_PASS:e}] ns"
                ))
            }
        };
        let mut seen = HashSet::new();
        let max_delay_ms = MAX_DELAY.as_secs_f64() * 1e3;
        for r in &self.results {
            let cell = format!(
                "cell {} {} {}",
                escape(&r.config),
                crate::fmt_ms(r.delay_ms),
                escape(&r.index)
            );
            if r.config.is_empty() || r.index.is_empty() {
                return Err(format!("{cell}: empty name"));
            }
            if !(1..=crate::machine::MAX_CPUS).contains(&r.cpus) {
                return Err(format!("{cell}: {} CPUs", r.cpus));
            }
            if !(r.delay_ms.is_finite() && r.delay_ms > 0.0 && r.delay_ms <= max_delay_ms) {
                return Err(format!("{cell}: delay {} ms", r.delay_ms));
            }
            if !seen.insert((r.config.as_str(), r.delay_ms.to_bits(), r.index.as_str())) {
                return Err(format!("{cell} appears twice"));
            }
            if r.runs.is_empty() || r.runs.len() > m.runs {
                return Err(format!(
                    "{cell}: {} runs (method.runs is {})",
                    r.runs.len(),
                    m.runs
                ));
            }
            time("ns_per_pass", &cell, r.ns_per_pass)?;
            for &v in &r.runs {
                time("a run's ns_per_pass", &cell, v)?;
            }
            for v in [r.ns_per_pass_low, r.ns_per_pass_high]
                .into_iter()
                .flatten()
            {
                time("interval end", &cell, v)?;
            }
            if r.slot_migrations > r.passes || r.distinct_slots > r.passes.max(1) {
                return Err(format!(
                    "{cell}: {} slot migrations and {} distinct slots in {} timed passes",
                    r.slot_migrations, r.distinct_slots, r.passes
                ));
            }
            if !r.per_run.is_empty() && r.per_run.len() != r.runs.len() {
                return Err(format!("{cell}: per_run and runs differ in length"));
            }
            for run in &r.per_run {
                time("a run's ns_per_pass", &cell, run.ns_per_pass)?;
                for v in [run.ns_per_pass_low, run.ns_per_pass_high]
                    .into_iter()
                    .flatten()
                    .chain(run.draws.iter().copied())
                {
                    time("a run's draw or interval", &cell, v)?;
                }
                if run.slot_migrations > run.passes {
                    return Err(format!(
                        "{cell}: run {} has {} slot migrations in {} timed passes",
                        run.run, run.slot_migrations, run.passes
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every cell by (configuration, delay, index), for lookups in constant time.
    pub fn cells(&self) -> Cells<'_> {
        Cells {
            map: self
                .results
                .iter()
                .map(|r| {
                    (
                        (r.config.as_str(), r.delay_ms.to_bits(), r.index.as_str()),
                        r,
                    )
                })
                .collect(),
        }
    }

    /// The cell of (configuration, delay, index), if run.
    pub fn find(&self, config: &str, delay_ms: f64, index: &str) -> Option<&ResultRow> {
        self.results
            .iter()
            .find(|r| r.config == config && r.delay_ms == delay_ms && r.index == index)
    }

    /// Configurations (with their CPU counts), delays and index sources, in report order.
    /// Linear in the cells.
    pub fn axes(&self) -> (Vec<(String, usize)>, Vec<f64>, Vec<String>) {
        let mut configs: Vec<(String, usize)> = Vec::new();
        let mut delays: Vec<f64> = Vec::new();
        let mut indices: Vec<String> = Vec::new();
        let (mut c_seen, mut d_seen, mut i_seen) = (HashSet::new(), HashSet::new(), HashSet::new());
        for r in &self.results {
            if c_seen.insert(r.config.as_str()) {
                configs.push((r.config.clone(), r.cpus));
            }
            if d_seen.insert(r.delay_ms.to_bits()) {
                delays.push(r.delay_ms);
            }
            if i_seen.insert(r.index.as_str()) {
                indices.push(r.index.clone());
            }
        }
        (configs, delays, indices)
    }

    /// Runs in the report.
    pub fn runs_done(&self) -> usize {
        self.results.iter().map(|r| r.runs.len()).sum()
    }

    /// Runs planned (schema 2; otherwise the runs done).
    pub fn runs_planned(&self) -> usize {
        self.plan
            .as_ref()
            .map_or(self.runs_done(), |p| p.runs_planned(self.method.runs))
    }

    /// Why `other` cannot be merged into `self` (a different machine, kernel, mode or
    /// method, or a cell in both), if it cannot.
    pub fn merge_conflict(&self, other: &Report) -> Option<String> {
        if self.mode != other.mode {
            return Some(format!("{} and {} runs", self.mode, other.mode));
        }
        if let Some(d) = self.machine.difference(&other.machine) {
            return Some(format!("different machines: {d}"));
        }
        if self.kernel != other.kernel {
            return Some(format!("kernels {} and {}", self.kernel, other.kernel));
        }
        let (a, b) = (&self.method, &other.method);
        if (a.item_size, a.stride, a.warmup, a.passes, a.seed)
            != (b.item_size, b.stride, b.warmup, b.passes, b.seed)
        {
            return Some("different methods (item size, warm-up, passes or seed)".to_string());
        }
        let cells = self.cells();
        if let Some(r) = other
            .results
            .iter()
            .find(|r| cells.get(&r.config, r.delay_ms, &r.index).is_some())
        {
            return Some(format!(
                "both have {} {} {}",
                r.config,
                crate::fmt_ms(r.delay_ms),
                r.index
            ));
        }
        None
    }

    /// Merges `other` (see [`merge_conflict`](Self::merge_conflict)): its cells are added;
    /// the plan is dropped (a merged report cannot be resumed), `runs` becomes the largest.
    pub fn merge(&mut self, other: Report) -> Result<(), String> {
        if let Some(why) = self.merge_conflict(&other) {
            return Err(why);
        }
        self.results.extend(other.results);
        for s in other.skipped {
            if !self.skipped.contains(&s) {
                self.skipped.push(s);
            }
        }
        self.method.runs = self.method.runs.max(other.method.runs);
        self.complete &= other.complete;
        self.plan = None;
        Ok(())
    }
}

/// The longest time per pass a report may hold: 1e15 ns (11.6 days), far above any pass,
/// and low enough that sums of millions of them stay exact enough in `f64`.
pub const MAX_NS_PER_PASS: f64 = 1e15;

/// The cells of a report by (configuration, delay, index) ([`Report::cells`]).
#[derive(Debug)]
pub struct Cells<'a> {
    map: HashMap<(&'a str, u64, &'a str), &'a ResultRow>,
}

impl<'a> Cells<'a> {
    /// The cell of (configuration, delay, index), if run.
    pub fn get(&self, config: &str, delay_ms: f64, index: &str) -> Option<&'a ResultRow> {
        self.map.get(&(config, delay_ms.to_bits(), index)).copied()
    }
}

/// `s` with every control character (ANSI escapes, newlines, tabs) shown as `\u{..}`, so a
/// name from a file cannot drive the terminal.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `200ms`, `10ms`, `0.5ms`.
pub fn fmt_ms(ms: f64) -> String {
    if ms.fract() == 0.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms}ms")
    }
}
