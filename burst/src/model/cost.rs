//! The cost model object (`percid-burst-cost/2`): its fields, its physical bounds
//! ([`CostModel::validate`]), the cost of a line by where it is, and the seeded Monte Carlo
//! draws of its uncertain parameters ([`CostModel::draws`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::machine::MachineDescription;
use crate::schedule::SplitMix64;

/// The `format` of a cost model object.
pub const COST_MODEL_FORMAT: &str = "percid-burst-cost/2";

/// The first format, refused since the model was rebuilt (see [`ModelError::OldFormat`]).
pub const COST_MODEL_FORMAT_V1: &str = "percid-burst-cost/1";

/// Load-to-use latencies of one 64-byte line by where it is, in nanoseconds, with the owning
/// core awake (what public latency tests measure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latencies {
    /// Own core's L1d.
    pub l1: f64,
    /// Own core's L2.
    pub l2: f64,
    /// The shared L3 of the core's domain (a line no core holds privately).
    pub l3: f64,
    /// A line modified in the private cache of another core of the same L3 domain
    /// (core-to-core latency within the domain).
    pub same_l3_modified: f64,
    /// A line held by another L3 domain of the same package, or modified in one of its cores
    /// (cross-domain transfer through the package's fabric).
    pub cross_l3: f64,
    /// A line held in the other package (cross-socket transfer).
    pub cross_socket: f64,
    /// A line in no cache, in the DRAM of the reader's package.
    pub dram_local: f64,
    /// A line in no cache, in the DRAM of another package: the slowest serial miss of the
    /// machine (equal to `dram_local` on one package).
    pub dram_remote: f64,
}

/// Lines a core keeps in flight (memory-level parallelism), each at least 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinesInFlight {
    /// A sequential stream of lines no other core holds modified (own L2, an L3, DRAM): the
    /// hardware prefetchers run ahead, bounded by the core's miss buffers.
    pub stream: f64,
    /// Lines modified in an idle core of the same L3 domain: every line needs a probe that
    /// the owner's (clock-gated) core answers.
    pub modified_same_l3: f64,
    /// Lines modified in an idle core of another L3 domain or package: the probes go through
    /// the package fabric's coherence agents.
    pub modified_cross_l3: f64,
}

/// Idle-state behaviour of cores and L3 domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Idle {
    /// A core idle this long has been in its deep idle state (CC6): its L1/L2 were written
    /// back to its L3.
    pub deep_idle_ms: f64,
    /// An L3 domain all of whose cores were idle this long was powered down: its L3 was
    /// written back, so its lines come from DRAM.
    pub l3_flush_ms: f64,
    /// Core clock of a pass after a long idle (at least `clock_low_ms`) relative to the
    /// steady clock, in (0, 1].
    pub clock_factor: f64,
    /// Idle time up to which a core's next pass still runs at the steady clock.
    pub clock_full_ms: f64,
    /// Idle time from which a core's next pass runs at `clock_factor`; in between the clock
    /// falls log-linearly with the idle time (the shape is an assumption).
    pub clock_low_ms: f64,
    /// Added to each line modified in the cache of an idle (not deep-idle) core: the probe
    /// must wait for the owner's clock-gated core to answer.
    pub owner_probe_ns: f64,
    /// The owner's answer slows as it idles longer (it sinks from clock gating into lower
    /// voltage and clock): the probe costs `owner_probe_ns * min(1, idle / owner_probe_full_ms)`
    /// for an owner idle `idle`; 0 makes it constant.
    #[serde(default)]
    pub owner_probe_full_ms: f64,
}

/// Bandwidth limits, GB/s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    /// Read bandwidth of one L3 domain's link to the package fabric: bounds the lines an L3
    /// domain receives from another domain, a package or DRAM.
    pub fabric_read_gbps: f64,
}

/// The cost model of a machine description (`cost_model` object; see the
/// [module docs](super) for the formula and the mechanisms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    /// Must be [`COST_MODEL_FORMAT`].
    pub format: String,
    /// Cache line size in bytes.
    pub line_bytes: usize,
    /// Fixed cost of a timed pass: the two clock reads and the loop's entry and exit.
    pub pass_overhead_ns: f64,
    /// Core-side cost of incrementing one line whose data is at hand, at the steady clock.
    pub core_ns_per_line: f64,
    /// Latencies by line location.
    pub latency_ns: Latencies,
    /// Memory-level parallelism.
    pub lines_in_flight: LinesInFlight,
    /// Bandwidth.
    pub bandwidth: Bandwidth,
    /// Idle states.
    pub idle: Idle,
    /// Monte Carlo draws per run for the intervals (0: no interval).
    #[serde(default = "default_draws")]
    pub draws: usize,
    /// Range `[low, high]` of each uncertain parameter, by parameter name (see [`PARAMS`]);
    /// the central value must lie inside.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ranges: BTreeMap<String, [f64; 2]>,
    /// Where each figure comes from (free text by parameter name); fitted parameters say
    /// "fitted" and name the cells.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, String>,
}

fn default_draws() -> usize {
    100
}

/// The names of the numeric parameters (the keys of `ranges` and `sources`).
pub const PARAMS: &[&str] = &[
    "pass_overhead_ns",
    "core_ns_per_line",
    "latency_ns.l1",
    "latency_ns.l2",
    "latency_ns.l3",
    "latency_ns.same_l3_modified",
    "latency_ns.cross_l3",
    "latency_ns.cross_socket",
    "latency_ns.dram_local",
    "latency_ns.dram_remote",
    "lines_in_flight.stream",
    "lines_in_flight.modified_same_l3",
    "lines_in_flight.modified_cross_l3",
    "bandwidth.fabric_read_gbps",
    "idle.deep_idle_ms",
    "idle.l3_flush_ms",
    "idle.clock_factor",
    "idle.clock_full_ms",
    "idle.clock_low_ms",
    "idle.owner_probe_ns",
    "idle.owner_probe_full_ms",
];

/// The most Monte Carlo draws per run (`draws`): each draw is a full replay of the run.
pub const MAX_DRAWS: usize = 10_000;

/// Line sizes accepted (`line_bytes`): 8 bytes to 4 KiB.
pub const LINE_BYTES_RANGE: (usize, usize) = (8, 4096);

/// The physical upper bound of a parameter (its central value and its range's top), far
/// above any machine: no latency or probe above 100 us (a DRAM miss is ~0.1 us), no per-line
/// cost above 10 us, no pass overhead above 1 ms, no more than 4096 lines in flight, no
/// bandwidth above 100 TB/s, no idle time above 1 hour (the longest delay), and a clock factor
/// of at most 1.
pub fn param_max(name: &str) -> f64 {
    match name {
        "pass_overhead_ns" => 1e6,
        "core_ns_per_line" => 1e4,
        "bandwidth.fabric_read_gbps" => 1e5,
        "idle.clock_factor" => 1.0,
        n if n.starts_with("latency_ns.") || n == "idle.owner_probe_ns" => 1e5,
        n if n.starts_with("lines_in_flight.") => 4096.0,
        n if n.starts_with("idle.") => 3.6e6,
        _ => 0.0,
    }
}

/// A bad or missing cost model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    /// The machine description has no `cost_model` object.
    Missing {
        /// The description's name.
        machine: String,
    },
    /// The object does not match [`CostModel`].
    Invalid(String),
    /// A `percid-burst-cost/1` object: its parameters (an overlap below one line in
    /// flight) have no meaning in the rebuilt model.
    OldFormat,
    /// A parameter is out of its range or breaks a physical bound.
    Bound {
        /// The parameter (or ranged parameter) at fault.
        field: String,
        /// The bound, in words.
        bound: String,
    },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Missing { machine } => write!(
                f,
                "machine description {machine:?} has no cost_model object (see the README, section \"A machine description with a cost model\")"
            ),
            ModelError::Invalid(why) => write!(f, "invalid cost_model: {why}"),
            ModelError::OldFormat => write!(
                f,
                "cost_model format {COST_MODEL_FORMAT_V1:?} is no longer read: rewrite it as {COST_MODEL_FORMAT:?} (see burst/examples/machine-template.json)"
            ),
            ModelError::Bound { field, bound } => {
                write!(f, "cost_model field {field} breaks a bound: {bound}")
            }
        }
    }
}

impl std::error::Error for ModelError {}

fn bound(field: &str, bound: String) -> ModelError {
    ModelError::Bound {
        field: field.to_string(),
        bound,
    }
}

/// Where a line is when a pass starts, relative to the core running the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineSource {
    /// Own core's L1/L2 (the core wrote it and has not been in deep idle since).
    Own,
    /// The shared L3 of the reader's domain, held by no core.
    SameL3,
    /// Modified in an idle core of the same L3 domain.
    SameL3Modified,
    /// In another L3 domain of the package (its writer was in deep idle since).
    CrossL3,
    /// Modified in an idle core of another L3 domain of the package.
    CrossL3Modified,
    /// In an L3 of the other package.
    CrossSocket,
    /// Modified in an idle core of the other package.
    CrossSocketModified,
    /// In no cache: DRAM of the reader's package.
    DramLocal,
    /// In no cache: DRAM of another package.
    DramRemote,
}

impl LineSource {
    /// Every source.
    pub const ALL: [LineSource; 9] = [
        LineSource::Own,
        LineSource::SameL3,
        LineSource::SameL3Modified,
        LineSource::CrossL3,
        LineSource::CrossL3Modified,
        LineSource::CrossSocket,
        LineSource::CrossSocketModified,
        LineSource::DramLocal,
        LineSource::DramRemote,
    ];

    /// Whether the line arrives over the L3 domain's fabric link.
    pub fn over_fabric(self) -> bool {
        !matches!(
            self,
            LineSource::Own | LineSource::SameL3 | LineSource::SameL3Modified
        )
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            LineSource::Own => "own L1/L2",
            LineSource::SameL3 => "same L3",
            LineSource::SameL3Modified => "modified, same L3",
            LineSource::CrossL3 => "other L3",
            LineSource::CrossL3Modified => "modified, other L3",
            LineSource::CrossSocket => "other socket",
            LineSource::CrossSocketModified => "modified, other socket",
            LineSource::DramLocal => "local DRAM",
            LineSource::DramRemote => "remote DRAM",
        }
    }
}

impl CostModel {
    /// The cost model of a machine description.
    pub fn from_machine(machine: &MachineDescription) -> Result<CostModel, ModelError> {
        let value = machine
            .cost_model
            .as_ref()
            .ok_or_else(|| ModelError::Missing {
                machine: machine.name().to_string(),
            })?;
        CostModel::from_value(value)
    }

    /// Parses and validates a `cost_model` object.
    pub fn from_value(value: &serde_json::Value) -> Result<CostModel, ModelError> {
        if value.get("format").and_then(|f| f.as_str()) == Some(COST_MODEL_FORMAT_V1) {
            return Err(ModelError::OldFormat);
        }
        let m: CostModel = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::Invalid(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The parameter `name` (one of [`PARAMS`]).
    pub fn param(&self, name: &str) -> Option<f64> {
        let mut m = self.clone();
        m.param_mut(name).map(|v| *v)
    }

    /// The parameter `name`, to change it.
    pub fn param_mut(&mut self, name: &str) -> Option<&mut f64> {
        let l = &mut self.latency_ns;
        Some(match name {
            "pass_overhead_ns" => &mut self.pass_overhead_ns,
            "core_ns_per_line" => &mut self.core_ns_per_line,
            "latency_ns.l1" => &mut l.l1,
            "latency_ns.l2" => &mut l.l2,
            "latency_ns.l3" => &mut l.l3,
            "latency_ns.same_l3_modified" => &mut l.same_l3_modified,
            "latency_ns.cross_l3" => &mut l.cross_l3,
            "latency_ns.cross_socket" => &mut l.cross_socket,
            "latency_ns.dram_local" => &mut l.dram_local,
            "latency_ns.dram_remote" => &mut l.dram_remote,
            "lines_in_flight.stream" => &mut self.lines_in_flight.stream,
            "lines_in_flight.modified_same_l3" => &mut self.lines_in_flight.modified_same_l3,
            "lines_in_flight.modified_cross_l3" => &mut self.lines_in_flight.modified_cross_l3,
            "bandwidth.fabric_read_gbps" => &mut self.bandwidth.fabric_read_gbps,
            "idle.deep_idle_ms" => &mut self.idle.deep_idle_ms,
            "idle.l3_flush_ms" => &mut self.idle.l3_flush_ms,
            "idle.clock_factor" => &mut self.idle.clock_factor,
            "idle.clock_full_ms" => &mut self.idle.clock_full_ms,
            "idle.clock_low_ms" => &mut self.idle.clock_low_ms,
            "idle.owner_probe_ns" => &mut self.idle.owner_probe_ns,
            "idle.owner_probe_full_ms" => &mut self.idle.owner_probe_full_ms,
            _ => return None,
        })
    }

    /// Checks the format, that every figure is in range, and the physical bounds, for the
    /// central values and for every corner of the ranges that matters (the slowest supply
    /// of each source):
    ///
    /// * every `lines_in_flight` is at least 1 (no stream has less than one line in flight);
    /// * no source supplies a line slower than a serial miss to the machine's slowest DRAM
    ///   (`latency_ns.dram_remote`): `latency / lines_in_flight <= dram_remote`, and
    ///   `line_bytes / fabric_read_gbps <= dram_remote`;
    /// * latencies ordered `l1 <= l2 <= l3 <= dram_local <= dram_remote` (each range's top
    ///   below the next one's bottom);
    /// * `idle.clock_factor` in (0, 1]; times and latencies positive; ranges contain their
    ///   central value.
    ///
    /// With these, every pass lies between the every-line-at-its-cheapest time and the all-lines-serial-DRAM time
    /// ([`CostModel::pass_bounds`]), which the simulator checks for every pass it costs.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.format != COST_MODEL_FORMAT {
            return Err(ModelError::Invalid(format!(
                "format {:?}, expected {COST_MODEL_FORMAT:?}",
                self.format
            )));
        }
        let (lb_lo, lb_hi) = LINE_BYTES_RANGE;
        if !(lb_lo..=lb_hi).contains(&self.line_bytes) {
            return Err(bound(
                "line_bytes",
                format!("{} must be from {lb_lo} to {lb_hi}", self.line_bytes),
            ));
        }
        if self.draws > MAX_DRAWS {
            return Err(bound(
                "draws",
                format!("{} is above the maximum of {MAX_DRAWS}", self.draws),
            ));
        }
        for name in PARAMS {
            let v = self.param(name).unwrap_or(f64::NAN);
            let ok = if matches!(
                *name,
                "pass_overhead_ns" | "idle.owner_probe_ns" | "idle.owner_probe_full_ms"
            ) {
                v.is_finite() && v >= 0.0
            } else {
                v.is_finite() && v > 0.0
            };
            if !ok {
                return Err(bound(
                    name,
                    format!("must be a finite positive number, got {v}"),
                ));
            }
            let max = param_max(name);
            let top = self.ranges.get(*name).map_or(v, |r| r[1].max(v));
            if top > max {
                return Err(bound(
                    name,
                    format!("{top} is above its physical maximum {max}"),
                ));
            }
        }
        for (name, [lo, hi]) in &self.ranges {
            let Some(v) = self.param(name) else {
                return Err(bound(
                    &format!("ranges.{name}"),
                    "names no parameter".to_string(),
                ));
            };
            if !(lo.is_finite() && hi.is_finite() && *lo <= v && v <= *hi) {
                return Err(bound(
                    &format!("ranges.{name}"),
                    format!("[{lo}, {hi}] must contain the central value {v}"),
                ));
            }
        }
        // Every check below holds at every corner of the ranges: test the extremes that
        // make each bound hardest.
        let lo = |n: &str| self.ranges.get(n).map_or(self.param(n).unwrap(), |r| r[0]);
        let hi = |n: &str| self.ranges.get(n).map_or(self.param(n).unwrap(), |r| r[1]);
        if lo("idle.clock_factor") <= 0.0 || hi("idle.clock_factor") > 1.0 {
            return Err(bound(
                "idle.clock_factor",
                "must lie in (0, 1] (a pass after deep idle runs at most at the steady clock)"
                    .into(),
            ));
        }
        if hi("idle.clock_full_ms") > lo("idle.clock_low_ms") {
            return Err(bound(
                "idle.clock_full_ms",
                "must not exceed idle.clock_low_ms (the clock only falls with idle time)".into(),
            ));
        }
        for n in [
            "lines_in_flight.stream",
            "lines_in_flight.modified_same_l3",
            "lines_in_flight.modified_cross_l3",
        ] {
            if lo(n) < 1.0 {
                return Err(bound(
                    n,
                    format!(
                        "{} lines in flight: no stream has fewer than one line in flight",
                        lo(n)
                    ),
                ));
            }
        }
        let order = [
            "latency_ns.l1",
            "latency_ns.l2",
            "latency_ns.l3",
            "latency_ns.dram_local",
            "latency_ns.dram_remote",
        ];
        for w in order.windows(2) {
            if hi(w[0]) > lo(w[1]) {
                return Err(bound(
                    w[0],
                    format!(
                        "must not exceed {} (the next level), at every corner of the ranges",
                        w[1]
                    ),
                ));
            }
        }
        let dram = lo("latency_ns.dram_remote");
        let probe = hi("idle.owner_probe_ns");
        let checks = [
            (
                "latency_ns.l3",
                hi("latency_ns.l3") / lo("lines_in_flight.stream"),
            ),
            (
                "latency_ns.cross_l3",
                hi("latency_ns.cross_l3") / lo("lines_in_flight.stream"),
            ),
            (
                "latency_ns.cross_socket",
                hi("latency_ns.cross_socket") / lo("lines_in_flight.stream"),
            ),
            (
                "latency_ns.dram_local",
                hi("latency_ns.dram_local") / lo("lines_in_flight.stream"),
            ),
            (
                "latency_ns.same_l3_modified",
                (hi("latency_ns.same_l3_modified") + probe)
                    / lo("lines_in_flight.modified_same_l3"),
            ),
            (
                "idle.owner_probe_ns",
                (hi("latency_ns.cross_l3").max(hi("latency_ns.cross_socket")) + probe)
                    / lo("lines_in_flight.modified_cross_l3"),
            ),
            (
                "bandwidth.fabric_read_gbps",
                self.line_bytes as f64 / lo("bandwidth.fabric_read_gbps"),
            ),
        ];
        for (field, per_line) in checks {
            if per_line > dram {
                return Err(bound(
                    field,
                    format!(
                        "supplies a line in {per_line:.1} ns, slower than a serial miss to the slowest DRAM (latency_ns.dram_remote = {dram} ns)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Nanoseconds for the memory side to supply one line from `source`: the slower of
    /// latency over lines in flight and line size over the fabric bandwidth (lines from
    /// outside the L3 domain).
    pub fn supply_ns(&self, source: LineSource) -> f64 {
        self.supply_ns_at(source, u64::MAX)
    }

    /// [`CostModel::supply_ns`] for a line whose owner (if modified in an idle core) has been
    /// idle `owner_idle_ns`.
    pub fn supply_ns_at(&self, source: LineSource, owner_idle_ns: u64) -> f64 {
        let l = &self.latency_ns;
        let f = &self.lines_in_flight;
        let full = self.idle.owner_probe_full_ms;
        let scale = if full > 0.0 {
            (owner_idle_ns as f64 / 1e6 / full).min(1.0)
        } else {
            1.0
        };
        let probe = self.idle.owner_probe_ns * scale;
        let latency_bound = match source {
            LineSource::Own => l.l2 / f.stream,
            LineSource::SameL3 => l.l3 / f.stream,
            LineSource::SameL3Modified => (l.same_l3_modified + probe) / f.modified_same_l3,
            LineSource::CrossL3 => l.cross_l3 / f.stream,
            LineSource::CrossL3Modified => (l.cross_l3 + probe) / f.modified_cross_l3,
            LineSource::CrossSocket => l.cross_socket / f.stream,
            LineSource::CrossSocketModified => (l.cross_socket + probe) / f.modified_cross_l3,
            LineSource::DramLocal => l.dram_local / f.stream,
            LineSource::DramRemote => l.dram_remote / f.stream,
        };
        if source.over_fabric() {
            latency_bound.max(self.line_bytes as f64 / self.bandwidth.fabric_read_gbps)
        } else {
            latency_bound
        }
    }

    /// Clock of a pass after `idle_ns` of idle, relative to the steady clock: 1 up to
    /// `clock_full_ms`, `clock_factor` from `clock_low_ms`, log-linear in the idle time
    /// between.
    pub fn clock_at(&self, idle_ns: u64) -> f64 {
        let t = idle_ns as f64 / 1e6;
        let (a, b) = (self.idle.clock_full_ms, self.idle.clock_low_ms);
        if t <= a {
            1.0
        } else if t >= b {
            self.idle.clock_factor
        } else {
            let x = (t / a).ln() / (b / a).ln();
            self.idle.clock_factor.powf(x)
        }
    }

    /// Core-side ns per line after `idle_ns` of idle (`0`: a busy core).
    pub fn core_ns(&self, idle_ns: u64) -> f64 {
        self.core_ns_per_line / self.clock_at(idle_ns)
    }

    /// Cost of one line: the slower of the core and the memory side.
    pub fn line_ns(&self, source: LineSource, idle_ns: u64) -> f64 {
        self.core_ns(idle_ns).max(self.supply_ns(source))
    }

    /// [`CostModel::line_ns`] with the owner's idle time ([`CostModel::supply_ns_at`]).
    pub fn line_ns_at(&self, source: LineSource, idle_ns: u64, owner_idle_ns: u64) -> f64 {
        self.core_ns(idle_ns)
            .max(self.supply_ns_at(source, owner_idle_ns))
    }

    /// The bounds of a pass of `lines` lines: every line at the cheapest cost any source can
    /// have (the steady clock, an owner idle for no time), and all lines missed one after
    /// another to the slowest DRAM at the slowest clock.
    ///
    /// The low bound is not `lines x l1`: a streaming loop overlaps its L1 hits, so a line can
    /// cost less than one dependent L1 load (a vectorised increment measured by `calibrate`).
    pub fn pass_bounds(&self, lines: usize) -> (f64, f64) {
        let n = lines as f64;
        let cheapest = LineSource::ALL
            .iter()
            .map(|&s| self.line_ns_at(s, 0, 0))
            .fold(f64::INFINITY, f64::min);
        let low = self.pass_overhead_ns + n * cheapest;
        let high = self.pass_overhead_ns
            + n * self
                .core_ns(u64::MAX)
                .max(self.latency_ns.dram_remote)
                .max(self.line_bytes as f64 / self.bandwidth.fabric_read_gbps);
        (low, high)
    }

    /// `self.draws` parameter sets: every ranged parameter drawn uniformly in its range,
    /// the others at their central value; deterministic for `seed`. Draws that break a bound
    /// cannot occur ([`CostModel::validate`] checks the corners).
    pub fn draws(&self, seed: u64) -> Vec<CostModel> {
        let mut rng = SplitMix64::new(seed ^ 0x6d6f_6465_6c5f_6d63);
        (0..self.draws)
            .map(|_| {
                let mut m = self.clone();
                for (name, [lo, hi]) in &self.ranges {
                    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    if let Some(v) = m.param_mut(name) {
                        *v = lo + (hi - lo) * u;
                    }
                }
                m
            })
            .collect()
    }

    pub(crate) fn deep_idle_ns(&self) -> u64 {
        (self.idle.deep_idle_ms * 1e6) as u64
    }

    pub(crate) fn l3_flush_ns(&self) -> u64 {
        (self.idle.l3_flush_ms * 1e6) as u64
    }
}
