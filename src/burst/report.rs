//! The report: JSON schema (serde), the text table, the SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::stats::spread_percent;
use crate::topology::Topology;

/// Real run or simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Threads on this machine.
    Real,
    /// The cost model replay.
    Simulated,
}

/// The machine the report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Topology name (`sysfs`, a preset or a description name).
    pub name: String,
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

impl Machine {
    /// Describes `topology` (with its cost model when `with_cost_model`).
    pub fn describe(topology: &Topology, model: Option<String>, with_cost_model: bool) -> Machine {
        Machine {
            name: topology.name().to_string(),
            model,
            online: topology.online().to_string(),
            allowed: topology.allowed().to_string(),
            cores: topology.cores().len(),
            threads_per_core: topology.threads_per_core(),
            l3_domains: topology.l3().len(),
            packages: topology.packages().len(),
            cost_model: if with_cost_model {
                topology.cost_model().cloned()
            } else {
                None
            },
        }
    }
}

/// The method's parameters as run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// One (configuration, delay, index) cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// Configuration name (`8c-1l3`, `cpus:0-3`, ...).
    pub config: String,
    /// Threads (= CPUs) of the configuration.
    pub cpus: usize,
    /// Delay in milliseconds.
    pub delay_ms: f64,
    /// `cpu`, `mmcid`, `user-legacy` or `user-local`.
    pub index: String,
    /// Mean of the run means, ns per pass.
    pub ns_per_pass: f64,
    /// Mean ns per pass of each run.
    pub runs: Vec<f64>,
    /// Timed passes over all runs.
    pub passes: u64,
    /// Timed passes whose slot was last written from another CPU, over all runs.
    pub slot_migrations: u64,
    /// Distinct slots indexed by timed passes, over all runs.
    pub distinct_slots: u64,
}

/// An index source that was not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Index source name.
    pub index: String,
    /// Why.
    pub reason: String,
}

/// The whole report (the JSON document; schema in the [module docs](super#json-schema)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `real` or `simulated`.
    pub mode: Mode,
    /// The machine.
    pub machine: Machine,
    /// Kernel release (`uname -r`) for real runs; for simulations, the kernel behaviour
    /// modelled.
    pub kernel: String,
    /// Method parameters.
    pub method: Method,
    /// One entry per (configuration, delay, index), in run order.
    pub results: Vec<ResultRow>,
    /// Index sources not run.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Parses a report written by [`to_json`](Self::to_json).
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    fn find(&self, config: &str, delay_ms: f64, index: &str) -> Option<&ResultRow> {
        self.results
            .iter()
            .find(|r| r.config == config && r.delay_ms == delay_ms && r.index == index)
    }

    fn axes(&self) -> (Vec<(String, usize)>, Vec<f64>, Vec<String>) {
        let mut configs: Vec<(String, usize)> = Vec::new();
        let mut delays: Vec<f64> = Vec::new();
        let mut indices: Vec<String> = Vec::new();
        for r in &self.results {
            if !configs.iter().any(|(c, _)| *c == r.config) {
                configs.push((r.config.clone(), r.cpus));
            }
            if !delays.contains(&r.delay_ms) {
                delays.push(r.delay_ms);
            }
            if !indices.contains(&r.index) {
                indices.push(r.index.clone());
            }
        }
        (configs, delays, indices)
    }

    /// The text table: one row per configuration; per delay, a column per index source
    /// (mean ns per pass, with the spread of the runs in percent) and the speedups
    /// `user-legacy / user-local` and `cpu / mmcid` where both were run; then the locality
    /// statistics (slot migrations / timed passes, distinct slots) per cell.
    pub fn table(&self) -> String {
        let (configs, delays, indices) = self.axes();
        let mut out = String::new();
        let mode = match self.mode {
            Mode::Real => "real",
            Mode::Simulated => "simulated",
        };
        let _ = writeln!(
            out,
            "burst ({mode}) on {} | kernel {} | {} B item, {} warm-up + {} timed passes, {} run(s), seed {}",
            self.machine.name,
            self.kernel,
            self.method.item_size,
            self.method.warmup,
            self.method.passes,
            self.method.runs,
            self.method.seed
        );
        let has = |i: &str| indices.iter().any(|x| x == i);
        let mut speedups: Vec<(&str, &str, &str)> = Vec::new();
        if has("user-legacy") && has("user-local") {
            speedups.push(("legacy/local", "user-legacy", "user-local"));
        }
        if has("cpu") && has("mmcid") {
            speedups.push(("cpu/mmcid", "cpu", "mmcid"));
        }
        let cell_w = 14usize;
        let sp_w = 13usize;
        let group_w = indices.len() * cell_w + speedups.len() * sp_w;
        let _ = writeln!(out, "\nns per pass (mean of runs, ±spread of run means)");
        let mut h1 = format!("{:<12}{:>5} ", "", "");
        let mut h2 = format!("{:<12}{:>5} ", "config", "cpus");
        for d in &delays {
            let label = format!("delay {}", fmt_ms(*d));
            let _ = write!(h1, "| {label:^w$}", w = group_w);
            let _ = write!(h2, "|");
            for i in &indices {
                let _ = write!(h2, "{i:>cell_w$}");
            }
            for (name, _, _) in &speedups {
                let _ = write!(h2, "{name:>sp_w$}");
            }
            h2.push(' ');
        }
        let _ = writeln!(out, "{h1}\n{h2}");
        for (c, n) in &configs {
            let mut line = format!("{c:<12}{n:>5} ");
            for d in &delays {
                let _ = write!(line, "|");
                for i in &indices {
                    let cell = match self.find(c, *d, i) {
                        Some(r) => format!("{:.0} ±{:.0}%", r.ns_per_pass, spread_percent(&r.runs)),
                        None => "-".to_string(),
                    };
                    let _ = write!(line, "{cell:>cell_w$}");
                }
                for (_, a, b) in &speedups {
                    let cell = match (self.find(c, *d, a), self.find(c, *d, b)) {
                        (Some(x), Some(y)) if y.ns_per_pass > 0.0 => {
                            format!("{:.2}x", x.ns_per_pass / y.ns_per_pass)
                        }
                        _ => "-".to_string(),
                    };
                    let _ = write!(line, "{cell:>sp_w$}");
                }
                line.push(' ');
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(
            out,
            "\nlocality: slot migrations / timed passes, distinct slots (over all runs)"
        );
        let mut h = format!("{:<12}{:>5} ", "config", "cpus");
        for d in &delays {
            let _ = write!(h, "|");
            for i in &indices {
                let label = format!("{i}@{}", fmt_ms(*d));
                let _ = write!(h, "{label:>20}");
            }
            h.push(' ');
        }
        let _ = writeln!(out, "{}", h.trim_end());
        for (c, n) in &configs {
            let mut line = format!("{c:<12}{n:>5} ");
            for d in &delays {
                let _ = write!(line, "|");
                for i in &indices {
                    let cell = match self.find(c, *d, i) {
                        Some(r) => {
                            format!("{}/{}, {}", r.slot_migrations, r.passes, r.distinct_slots)
                        }
                        None => "-".to_string(),
                    };
                    let _ = write!(line, "{cell:>20}");
                }
                line.push(' ');
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for s in &self.skipped {
            let _ = writeln!(out, "\nskipped {}: {}", s.index, s.reason);
        }
        out
    }

    /// Mean ns per pass by (configuration, delay, index), for charts and tests.
    pub fn cells(&self) -> BTreeMap<(String, String, String), f64> {
        self.results
            .iter()
            .map(|r| {
                (
                    (r.config.clone(), fmt_ms(r.delay_ms), r.index.clone()),
                    r.ns_per_pass,
                )
            })
            .collect()
    }

    /// Draws ns per pass by configuration and delay (groups) and index source (bars), on a
    /// logarithmic axis, with `plotters`' SVG backend.
    #[cfg(feature = "svg")]
    pub fn write_svg(&self, path: &std::path::Path) -> Result<(), String> {
        use plotters::prelude::*;

        let (configs, delays, indices) = self.axes();
        let groups: Vec<(String, f64)> = configs
            .iter()
            .flat_map(|(c, _)| delays.iter().map(move |d| (c.clone(), *d)))
            .collect();
        if groups.is_empty() {
            return Err("no results to draw".to_string());
        }
        let max = self
            .results
            .iter()
            .map(|r| r.ns_per_pass)
            .fold(1.0f64, f64::max);
        let min = self
            .results
            .iter()
            .map(|r| r.ns_per_pass)
            .filter(|v| *v > 0.0)
            .fold(max, f64::min);
        let (lo, hi) = ((min / 2.0).max(1.0), max * 2.0);
        let width = (160 + 110 * groups.len() as u32).max(640);
        let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mode = match self.mode {
            Mode::Real => "measured",
            Mode::Simulated => "simulated",
        };
        let title = format!(
            "ns per {} B pass ({mode}, {})",
            self.method.item_size, self.machine.name
        );
        let ng = groups.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..ng as f64, (lo..hi).log_scale())
            .map_err(|e| err(&e))?;
        let labels = groups.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(ng * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-6 && i < labels.len() {
                    format!("{} {}", labels[i].0, fmt_ms(labels[i].1))
                } else {
                    String::new()
                }
            })
            .y_desc("ns per pass")
            .draw()
            .map_err(|e| err(&e))?;
        let palette = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(214, 39, 40),
            RGBColor(44, 160, 44),
        ];
        let bar_w = 0.8 / indices.len() as f64;
        for (k, idx) in indices.iter().enumerate() {
            let color = palette[k % palette.len()];
            let bars: Vec<_> = groups
                .iter()
                .enumerate()
                .filter_map(|(g, (c, d))| {
                    self.find(c, *d, idx).map(|r| {
                        let x0 = g as f64 + 0.1 + k as f64 * bar_w;
                        Rectangle::new(
                            [(x0, lo), (x0 + bar_w * 0.9, r.ns_per_pass.max(lo))],
                            color.filled(),
                        )
                    })
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(|e| err(&e))?
                .label(idx.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

/// `200ms`, `10ms`, `0.5ms`.
pub fn fmt_ms(ms: f64) -> String {
    if ms.fract() == 0.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms}ms")
    }
}
