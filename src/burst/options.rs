//! Command-line options of the burst benchmark ([`Options::parse`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::index::Index;
use crate::topology::CpuSet;

/// Largest item: the pool stride (64 KiB), since one item lives in each slot.
pub const MAX_ITEM_SIZE: usize = 64 * 1024;

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
    /// Runs per (configuration, delay, index) (`--runs`).
    pub runs: usize,
    /// Timed passes per thread and run (`--passes`).
    pub passes: usize,
    /// Warm-up passes per thread and run (`--warmup`).
    pub warmup: usize,
    /// Bytes incremented per pass (`--item-size`), at most [`MAX_ITEM_SIZE`].
    pub item_size: usize,
    /// Seed of the start permutations (`--seed`).
    pub seed: u64,
    /// Write the report as JSON to this file (`--json`).
    pub json: Option<PathBuf>,
    /// Draw a chart to this SVG file (`--svg`).
    pub svg: Option<PathBuf>,
    /// Real run or simulation (`--simulate`, `--describe`).
    pub target: Target,
    /// No progress on stderr (`--quiet`).
    pub quiet: bool,
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
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the benchmark with these options.
    Run(Box<Options>),
    /// Print [`USAGE`] and exit successfully.
    Help,
}

/// A bad command line (the command exits with status 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionsError {
    /// An argument that is not an option.
    Unknown(String),
    /// An option without its value.
    MissingValue(&'static str),
    /// An option whose value does not parse or is out of range.
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
    /// An argument that is not valid UTF-8.
    NotUnicode(String),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::Unknown(a) => write!(f, "unknown argument {a:?} (see --help)"),
            OptionsError::MissingValue(o) => write!(f, "option {o} needs a value"),
            OptionsError::BadValue {
                option,
                value,
                reason,
            } => write!(f, "bad value {value:?} for {option}: {reason}"),
            OptionsError::Conflict(a, b) => write!(f, "options {a} and {b} exclude each other"),
            OptionsError::NotUnicode(a) => write!(f, "argument {a:?} is not valid UTF-8"),
        }
    }
}

impl std::error::Error for OptionsError {}

/// The `--help` text.
pub const USAGE: &str = "\
burst: the intermittent-burst locality benchmark of percid

USAGE: burst [OPTIONS]

  --index LIST       index sources: cpu,mmcid,user-legacy,user-local (default: all four)
  --config LIST      configurations of the topology, e.g. 8c-1l3,24c-24l3 (default: all)
  --cpus LIST        run on this CPU list instead (Linux list syntax, e.g. 0-3,8)
  --delay LIST       delays between bursts, e.g. 200ms,10ms (units ns, us, ms, s; default 200ms,10ms)
  --runs N           runs per cell, reported as mean and spread (default 5)
  --passes N         timed passes per thread and run (default 5)
  --warmup N         warm-up passes per thread and run (default 20000)
  --item-size SIZE   bytes per slot item, at most 64KiB (default 16KiB)
  --seed N           seed of the random start permutations (default 1)
  --json FILE        write the report as JSON
  --svg FILE         draw ns per pass by configuration and index source (feature `svg`)
  --simulate PRESET  replay on a built-in machine description through its cost model (epyc-9654, ...)
  --describe FILE    replay on a JSON machine description with a `cost_model` object
  --quiet            no progress on stderr
  -h, --help         this text

Expected duration of a real run: about delay x threads x (passes + 1) per run and index source.
";

fn bad(option: &'static str, value: &str, reason: impl Into<String>) -> OptionsError {
    OptionsError::BadValue {
        option,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses a duration: a number with unit `ns`, `us`, `ms` or `s` (a bare number is ms).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| "expected a number with a unit (ns, us, ms, s)".to_string())?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "" | "ms" => 1e-3,
        "s" => 1.0,
        other => return Err(format!("unknown unit {other:?} (ns, us, ms, s)")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 3600.0 {
        return Err("out of range (at most 1 hour)".to_string());
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
        "K" | "KiB" | "k" | "KB" => 1024,
        "M" | "MiB" | "MB" => 1024 * 1024,
        other => return Err(format!("unknown unit {other:?} (B, KiB, MiB)")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| "too large".to_string())
}

fn parse_count(option: &'static str, value: &str, min: usize) -> Result<usize, OptionsError> {
    let n: usize = value
        .trim()
        .parse()
        .map_err(|_| bad(option, value, "expected a whole number"))?;
    if n < min {
        return Err(bad(option, value, format!("must be at least {min}")));
    }
    Ok(n)
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I, S>(args: I) -> Result<Command, OptionsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let mut o = Options::default();
        let mut simulate: Option<String> = None;
        let mut describe: Option<PathBuf> = None;
        let mut configs_given = false;
        let mut args = args.into_iter().map(Into::into).peekable();
        while let Some(raw) = args.next() {
            let arg = raw
                .into_string()
                .map_err(|a| OptionsError::NotUnicode(a.to_string_lossy().into_owned()))?;
            if arg == "-h" || arg == "--help" {
                return Ok(Command::Help);
            }
            if arg == "--quiet" || arg == "-q" {
                o.quiet = true;
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let option: &'static str = match name.as_str() {
                "--index" => "--index",
                "--config" => "--config",
                "--cpus" => "--cpus",
                "--delay" => "--delay",
                "--runs" => "--runs",
                "--passes" => "--passes",
                "--warmup" => "--warmup",
                "--item-size" => "--item-size",
                "--seed" => "--seed",
                "--json" => "--json",
                "--svg" => "--svg",
                "--simulate" => "--simulate",
                "--describe" => "--describe",
                _ => return Err(OptionsError::Unknown(arg)),
            };
            let value = match inline {
                Some(v) => v,
                None => match args.next() {
                    Some(v) => v
                        .into_string()
                        .map_err(|a| OptionsError::NotUnicode(a.to_string_lossy().into_owned()))?,
                    None => return Err(OptionsError::MissingValue(option)),
                },
            };
            if value.is_empty() {
                return Err(OptionsError::MissingValue(option));
            }
            match option {
                "--index" => {
                    let mut list = Vec::new();
                    for s in split_list(&value) {
                        let i = Index::parse(s).map_err(|e| bad(option, s, e.to_string()))?;
                        if !list.contains(&i) {
                            list.push(i);
                        }
                    }
                    if list.is_empty() {
                        return Err(bad(option, &value, "empty list"));
                    }
                    o.indices = list;
                }
                "--config" => {
                    o.configs = split_list(&value).map(str::to_string).collect();
                    if o.configs.is_empty() {
                        return Err(bad(option, &value, "empty list"));
                    }
                    configs_given = true;
                }
                "--cpus" => {
                    let set =
                        CpuSet::parse(&value).map_err(|e| bad(option, &value, e.to_string()))?;
                    if set.is_empty() {
                        return Err(bad(option, &value, "empty CPU set"));
                    }
                    o.cpus = Some(set);
                }
                "--delay" => {
                    let mut list = Vec::new();
                    for s in split_list(&value) {
                        let d = parse_duration(s).map_err(|r| bad(option, s, r))?;
                        if d.is_zero() {
                            return Err(bad(option, s, "must be positive"));
                        }
                        list.push(d);
                    }
                    if list.is_empty() {
                        return Err(bad(option, &value, "empty list"));
                    }
                    o.delays = list;
                }
                "--runs" => o.runs = parse_count(option, &value, 1)?,
                "--passes" => o.passes = parse_count(option, &value, 1)?,
                "--warmup" => o.warmup = parse_count(option, &value, 0)?,
                "--item-size" => {
                    let n = parse_size(&value).map_err(|r| bad(option, &value, r))?;
                    if n == 0 || n > MAX_ITEM_SIZE {
                        return Err(bad(
                            option,
                            &value,
                            "must be 1 byte to 64KiB (the pool stride)",
                        ));
                    }
                    o.item_size = n;
                }
                "--seed" => {
                    o.seed = value
                        .trim()
                        .parse()
                        .map_err(|_| bad(option, &value, "expected a whole number"))?
                }
                "--json" => o.json = Some(PathBuf::from(value)),
                "--svg" => {
                    if cfg!(not(feature = "svg")) {
                        return Err(bad(option, &value, "this build has no `svg` feature"));
                    }
                    o.svg = Some(PathBuf::from(value))
                }
                "--simulate" => simulate = Some(value),
                "--describe" => describe = Some(PathBuf::from(value)),
                _ => unreachable!("every option name is matched above"),
            }
        }
        if configs_given && o.cpus.is_some() {
            return Err(OptionsError::Conflict("--config", "--cpus"));
        }
        o.target = match (simulate, describe) {
            (Some(_), Some(_)) => return Err(OptionsError::Conflict("--simulate", "--describe")),
            (Some(p), None) => Target::Preset(p),
            (None, Some(f)) => Target::Describe(f),
            (None, None) => Target::Real,
        };
        Ok(Command::Run(Box::new(o)))
    }
}
