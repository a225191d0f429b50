//! The benchmark's run options ([`Options`]), their limits and value parsers. The command line
//! itself is parsed by `clap` in [`crate::cli`]; the parsers here are shared by both.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use percid::index::Index;
use percid::topology::CpuSet;

/// Largest item: the pool stride (64 KiB), since one item lives in each slot.
pub const MAX_ITEM_SIZE: usize = 64 * 1024;
/// Most runs per cell (`--runs`).
pub const MAX_RUNS: usize = 1000;
/// Most timed passes per thread and run (`--passes`).
pub const MAX_PASSES: usize = 10_000;
/// Most warm-up passes per thread and run (`--warmup`).
pub const MAX_WARMUP: usize = 10_000_000;
/// Longest delay (`--delay`).
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Default of `--max-duration`: a run whose estimate is longer is refused.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// What the benchmark runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Real threads on this machine (topology from sysfs).
    Real,
    /// Replay on a built-in machine description (`--simulate PRESET`).
    Preset(String),
    /// Replay on a JSON machine description (`--describe FILE`).
    Describe(PathBuf),
}

impl Target {
    /// Whether this is a simulation (no threads, no sleeping).
    pub fn is_simulated(&self) -> bool {
        !matches!(self, Target::Real)
    }
}

/// The benchmark's options. [`Options::default`] is what the command runs with no arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Index sources to compare (`--index`), in the order given.
    pub indices: Vec<Index>,
    /// Configuration names (`--config`); empty means every configuration of the topology.
    pub configs: Vec<String>,
    /// An explicit CPU set (`--cpus`), used instead of the configurations.
    pub cpus: Option<CpuSet>,
    /// Delays (`--delay`), in the order given.
    pub delays: Vec<Duration>,
    /// Runs per (configuration, delay, index) (`--runs`), 1 to [`MAX_RUNS`].
    pub runs: usize,
    /// Timed passes per thread and run (`--passes`), 1 to [`MAX_PASSES`].
    pub passes: usize,
    /// Warm-up passes per thread and run (`--warmup`), at most [`MAX_WARMUP`].
    pub warmup: usize,
    /// Bytes incremented per pass (`--item-size`), at most [`MAX_ITEM_SIZE`].
    pub item_size: usize,
    /// Seed of the start permutations (`--seed`).
    pub seed: u64,
    /// Write the report as JSON to this file, `-` for stdout (`--json`).
    pub json: Option<PathBuf>,
    /// Draw a chart to this SVG file (`--svg`).
    pub svg: Option<PathBuf>,
    /// Real run or simulation (`--simulate`, `--describe`).
    pub target: Target,
    /// No progress on stderr (`--quiet`).
    pub quiet: bool,
    /// Allow timed runs of a debug build (`--allow-debug`).
    pub allow_debug: bool,
    /// Refuse a run whose estimated duration is longer (`--max-duration`).
    pub max_duration: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            indices: Index::ALL.to_vec(),
            configs: Vec::new(),
            cpus: None,
            delays: vec![Duration::from_millis(200), Duration::from_millis(10)],
            runs: 5,
            passes: 5,
            warmup: 20_000,
            item_size: 16 * 1024,
            seed: 1,
            json: None,
            svg: None,
            target: Target::Real,
            quiet: false,
            allow_debug: false,
            max_duration: DEFAULT_MAX_DURATION,
        }
    }
}

/// Options out of range or in conflict (the command exits with status 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionsError {
    /// An option whose value is out of range.
    BadValue {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Two options that exclude each other.
    Conflict(&'static str, &'static str),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::BadValue {
                option,
                value,
                reason,
            } => write!(f, "bad value {value:?} for {option}: {reason}"),
            OptionsError::Conflict(a, b) => write!(f, "options {a} and {b} exclude each other"),
        }
    }
}

impl std::error::Error for OptionsError {}

fn bad(option: &'static str, value: impl ToString, reason: impl Into<String>) -> OptionsError {
    OptionsError::BadValue {
        option,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Options {
    /// Checks ranges and conflicts (the command line parser enforces the same; this guards
    /// options built in code).
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.indices.is_empty() {
            return Err(bad("--index", "", "empty list"));
        }
        if self.delays.is_empty() {
            return Err(bad("--delay", "", "empty list"));
        }
        for d in &self.delays {
            if d.is_zero() || *d > MAX_DELAY {
                return Err(bad(
                    "--delay",
                    format!("{d:?}"),
                    "must be above 0 and at most 1 hour",
                ));
            }
        }
        if !(1..=MAX_RUNS).contains(&self.runs) {
            return Err(bad("--runs", self.runs, format!("must be 1 to {MAX_RUNS}")));
        }
        if !(1..=MAX_PASSES).contains(&self.passes) {
            return Err(bad(
                "--passes",
                self.passes,
                format!("must be 1 to {MAX_PASSES}"),
            ));
        }
        if self.warmup > MAX_WARMUP {
            return Err(bad(
                "--warmup",
                self.warmup,
                format!("must be at most {MAX_WARMUP}"),
            ));
        }
        if self.item_size == 0 || self.item_size > MAX_ITEM_SIZE {
            return Err(bad(
                "--item-size",
                self.item_size,
                "must be 1 byte to 64KiB (the pool stride)",
            ));
        }
        if !self.configs.is_empty() && self.cpus.is_some() {
            return Err(OptionsError::Conflict("--config", "--cpus"));
        }
        if self.cpus.as_ref().is_some_and(CpuSet::is_empty) {
            return Err(bad("--cpus", "", "empty CPU set"));
        }
        Ok(())
    }
}

/// Parses a duration: a number with unit `ns`, `us`, `ms` or `s` (a bare number is ms), at
/// most one hour.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration_any(
        text,
        &[
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("", 1e-3),
            ("ms", 1e-3),
            ("s", 1.0),
        ],
    )?;
    if d > MAX_DELAY {
        return Err("out of range (at most 1 hour)".to_string());
    }
    Ok(d)
}

/// Parses a time limit: a number with unit `s`, `min` or `h` (a bare number is seconds).
pub fn parse_time_limit(text: &str) -> Result<Duration, String> {
    let d = parse_duration_any(text, &[("", 1.0), ("s", 1.0), ("min", 60.0), ("h", 3600.0)])?;
    if d.is_zero() {
        return Err("must be positive".to_string());
    }
    Ok(d)
}

fn parse_duration_any(text: &str, units: &[(&str, f64)]) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let names: Vec<&str> = units
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !n.is_empty() && n.is_ascii())
        .collect();
    let value: f64 = num
        .parse()
        .map_err(|_| format!("expected a number with a unit ({})", names.join(", ")))?;
    let scale = units
        .iter()
        .find(|(n, _)| *n == unit.trim())
        .map(|(_, s)| *s)
        .ok_or_else(|| format!("unknown unit {:?} ({})", unit.trim(), names.join(", ")))?;
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e12 {
        return Err("out of range".to_string());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size: bytes, or a number with `K`/`KiB`/`M`/`MiB` (binary multiples), `B` allowed.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: usize = num
        .parse()
        .map_err(|_| "expected a whole number of bytes, KiB or MiB".to_string())?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1024,
        "M" | "MiB" => 1024 * 1024,
        u @ ("KB" | "kB" | "k" | "kb" | "Kb" | "MB" | "mb" | "Mb") => {
            return Err(format!(
                "unit {u:?} is ambiguous (1000 or 1024?): write KiB or MiB (or K, M: 1024-based)"
            ));
        }
        other => return Err(format!("unknown unit {other:?} (B, KiB or K, MiB or M)")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| "too large".to_string())
}

/// Parses an index source by its one spelling: `cpu`, `mmcid`, `user-legacy`, `user-local`
/// or `user-task` ([`Index::name`]); errors list these names.
pub fn parse_index(text: &str) -> Result<Index, String> {
    let t = text.trim();
    Index::ALL
        .into_iter()
        .find(|i| i.name() == t)
        .ok_or_else(|| {
            let names: Vec<&str> = Index::ALL.iter().map(|i| i.name()).collect();
            format!(
                "unknown index source {t:?}: expected one of {}",
                names.join(", ")
            )
        })
}
