//! Fitting the cost model on the published rows, and judging it: per-cell errors,
//! leave-one-configuration-out, one-at-a-time sensitivity. Used by
//! `cargo run --release -p percid-burst --example fit_model` and by the tests.
//!
//! Every replay is recorded once ([`Traces`]) and re-costed per candidate parameter set, so
//! a fit over a few parameters takes seconds.

use std::time::Duration;

use percid::index::Index;

use super::{CostModel, RunTrace, trace_run};
use crate::machine::{Configurations, MachineDescription};
use crate::report::Method;
use crate::schedule::{Plan, run_seed};
use crate::{BurstError, Options};

/// One published cell (reference notes, section 3): ns per 16 KiB pass, mean of 5 runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Configuration.
    pub config: &'static str,
    /// Delay, ms.
    pub delay_ms: u64,
    /// Index source as the simulator names it (`cpu`, `user-legacy`, `mmcid`).
    pub index: &'static str,
    /// Measured ns per pass.
    pub ns: f64,
}

const fn cell(config: &'static str, delay_ms: u64, index: &'static str, ns: f64) -> Cell {
    Cell {
        config,
        delay_ms,
        index,
        ns,
    }
}

/// The published rows of the EPYC 9654 measurement: `8c-1l3` and `192c-24l3`. Columns:
/// cpu_id (`cpu`), legacy mm_cid (`user-legacy`), cache-local mm_cid (`mmcid`).
pub const PUBLISHED: &[Cell] = &[
    cell("8c-1l3", 200, "cpu", 1374.0),
    cell("8c-1l3", 200, "user-legacy", 19289.0),
    cell("8c-1l3", 200, "mmcid", 1336.0),
    cell("8c-1l3", 10, "cpu", 662.0),
    cell("8c-1l3", 10, "user-legacy", 756.0),
    cell("8c-1l3", 10, "mmcid", 686.0),
    cell("192c-24l3", 200, "cpu", 2291.0),
    cell("192c-24l3", 200, "user-legacy", 15826.0),
    cell("192c-24l3", 200, "mmcid", 2153.0),
    cell("192c-24l3", 10, "cpu", 1439.0),
    cell("192c-24l3", 10, "user-legacy", 10833.0),
    cell("192c-24l3", 10, "mmcid", 1482.0),
];

/// The withheld configurations the model predicts.
pub const WITHHELD: &[&str] = &["24c-24l3", "384t-24l3"];

/// The parameters the fit adjusts; every other parameter comes from public figures.
pub const FITTED: &[&str] = &[
    "core_ns_per_line",
    "idle.clock_factor",
    "idle.owner_probe_ns",
    "lines_in_flight.modified_cross_l3",
];

/// Where every fit starts, and what a row that cannot decide a parameter leaves it at: rough
/// values from the mechanisms, before looking at any published cell.
///
/// * `core_ns_per_line` 2.5: ~9 cycles per 64-byte line at 3.7 GHz for a read-modify-write
///   loop (a guess);
/// * `idle.clock_factor` 0.5: a core waking at a low P-state (EPYC 9654: 2.4 GHz base, 3.7 GHz
///   boost, ~1.5 GHz lowest) runs at about half its boosted clock;
/// * `idle.owner_probe_ns` 50: tens of ns to ungate a clock-gated core, far below the ~1 µs C1
///   exit latency;
/// * `lines_in_flight.modified_cross_l3` 2: a few probes overlapped by the I/O die.
pub const PRIOR: &[(&str, f64)] = &[
    ("core_ns_per_line", 2.5),
    ("idle.clock_factor", 0.5),
    ("idle.owner_probe_ns", 50.0),
    ("lines_in_flight.modified_cross_l3", 2.0),
];

/// `model` with the fitted parameters at their [`PRIOR`] values (ranges widened to contain
/// them).
pub fn prior(model: &CostModel) -> CostModel {
    let mut m = model.clone();
    for (p, v) in PRIOR {
        if let Some(x) = m.param_mut(p) {
            *x = *v;
        }
        if let Some(r) = m.ranges.get_mut(*p) {
            r[0] = r[0].min(*v);
            r[1] = r[1].max(*v);
        }
    }
    m
}

/// Recorded replays: per (configuration, delay, index), one trace per run.
pub struct Traces {
    entries: Vec<((String, u64, String), Vec<RunTrace>)>,
}

impl Traces {
    /// Replays `configs` x `delays` x `indices` on `machine` with the default method
    /// (`runs` runs, base seed `seed`), pass durations from `model`.
    pub fn record(
        machine: &MachineDescription,
        model: &CostModel,
        configs: &[&str],
        delays: &[u64],
        indices: &[&str],
        runs: usize,
        seed: u64,
    ) -> Result<Traces, BurstError> {
        let o = Options::default();
        let method = Method {
            item_size: o.item_size,
            stride: 64 * 1024,
            warmup: o.warmup,
            passes: o.passes,
            runs,
            seed,
        };
        let mut entries = Vec::new();
        for &c in configs {
            let config = machine
                .topology
                .configuration(c)
                .map_err(BurstError::Target)?;
            let cpus: Vec<usize> = config.cpus.iter().collect();
            for &d in delays {
                for &i in indices {
                    let index = Index::parse(i)
                        .map_err(|e| BurstError::Usage(format!("index {i}: {e}")))?;
                    let mut traces = Vec::new();
                    for run in 0..runs {
                        let plan =
                            Plan::new(cpus.len(), Duration::from_millis(d), run_seed(seed, run));
                        traces.push(trace_run(
                            &machine.topology,
                            model,
                            &cpus,
                            index,
                            &plan,
                            &method,
                        )?);
                    }
                    entries.push(((c.to_string(), d, i.to_string()), traces));
                }
            }
        }
        Ok(Traces { entries })
    }

    fn runs(&self, config: &str, delay_ms: u64, index: &str) -> Option<&[RunTrace]> {
        self.entries
            .iter()
            .find(|((c, d, i), _)| c == config && *d == delay_ms && i == index)
            .map(|(_, t)| t.as_slice())
    }

    /// Mean ns per pass of a recorded cell under `model` (`None`: not recorded or out of
    /// bounds).
    pub fn predict(
        &self,
        model: &CostModel,
        config: &str,
        delay_ms: u64,
        index: &str,
    ) -> Option<f64> {
        let runs = self.runs(config, delay_ms, index)?;
        let mut sum = 0.0;
        for t in runs {
            sum += t.cost(model).ok()?;
        }
        Some(sum / runs.len() as f64)
    }

    /// The cell's mean over its runs under each parameter draw of `model` (seeded by
    /// `seed`; the same draws for every cell).
    pub fn draw_means(
        &self,
        model: &CostModel,
        config: &str,
        delay_ms: u64,
        index: &str,
        seed: u64,
    ) -> Option<Vec<f64>> {
        let runs = self.runs(config, delay_ms, index)?;
        let mut sums: Vec<f64> = Vec::new();
        for t in runs {
            let (_, draws) = super::run_draws(t, model, seed).ok()?;
            if sums.is_empty() {
                sums = vec![0.0; draws.len()];
            }
            for (s, d) in sums.iter_mut().zip(draws) {
                *s += d;
            }
        }
        let n = runs.len() as f64;
        Some(sums.into_iter().map(|s| s / n).collect())
    }
}

/// Fit error: mean squared log ratio of predicted to measured over `cells`.
pub fn loss(model: &CostModel, traces: &Traces, cells: &[Cell]) -> f64 {
    let mut s = 0.0;
    for c in cells {
        match traces.predict(model, c.config, c.delay_ms, c.index) {
            Some(p) if p > 0.0 => s += (p / c.ns).ln().powi(2),
            _ => return f64::INFINITY,
        }
    }
    s / cells.len().max(1) as f64
}

/// Coordinate search over `params` (multiplicative grid, shrinking), minimising [`loss`] on
/// `cells` plus a weak pull (1% of a squared log ratio) towards the starting values, which
/// keeps parameters the cells cannot decide at their sourced values. Candidates that break a
/// bound ([`CostModel::validate`], ranges ignored) are skipped. The result keeps `base`'s
/// ranges, widened to contain the fitted values.
pub fn fit(base: &CostModel, traces: &Traces, cells: &[Cell], params: &[&str]) -> CostModel {
    let mut m = base.clone();
    m.ranges.clear();
    let start: Vec<f64> = params.iter().map(|p| m.param(p).unwrap_or(1.0)).collect();
    let objective = |m: &CostModel| {
        let prior: f64 = params
            .iter()
            .zip(&start)
            .map(|(p, s)| {
                let v = m.param(p).unwrap_or(*s).max(1e-9);
                (v / s.max(1e-9)).ln().powi(2)
            })
            .sum();
        loss(m, traces, cells) + 0.01 * prior
    };
    let mut best = objective(&m);
    for step in [2.0f64, 1.4, 1.15, 1.05, 1.015] {
        for _round in 0..3 {
            for p in params {
                let current = m.param(p).unwrap_or(0.0);
                for k in -4i32..=4 {
                    let v = if current > 0.0 {
                        current * step.powi(k)
                    } else {
                        (k.max(0) as f64) * 10.0 * (step - 1.0)
                    };
                    let mut cand = m.clone();
                    if let Some(x) = cand.param_mut(p) {
                        *x = v;
                    }
                    if cand.validate().is_err() {
                        continue;
                    }
                    let o = objective(&cand);
                    if o < best {
                        best = o;
                        m = cand;
                    }
                }
            }
        }
    }
    // Keep the sourced ranges, widened where a fitted value left its range.
    m.ranges = base.ranges.clone();
    for p in params {
        if let (Some(v), Some(r)) = (m.param(p), m.ranges.get_mut(*p)) {
            r[0] = r[0].min(v);
            r[1] = r[1].max(v);
        }
    }
    m
}

/// `(cell, predicted, predicted / measured)` for every cell of `cells`.
pub fn errors(model: &CostModel, traces: &Traces, cells: &[Cell]) -> Vec<(Cell, f64, f64)> {
    cells
        .iter()
        .map(|c| {
            let p = traces
                .predict(model, c.config, c.delay_ms, c.index)
                .unwrap_or(f64::NAN);
            (*c, p, p / c.ns)
        })
        .collect()
}

/// The published cells of one configuration.
pub fn row(config: &str) -> Vec<Cell> {
    PUBLISHED
        .iter()
        .filter(|c| c.config == config)
        .copied()
        .collect()
}
