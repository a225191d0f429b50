//! The command line (`clap`, derive): `percid-burst [run] [OPTIONS]`, `report`, `compare`,
//! `topology`. Exit statuses, the same for every command: 0 success; 1 a failed run or
//! output (including an unwritable stdout); 2 bad usage (options, a bad description, an
//! unknown preset or configuration, an unreadable report, a refused limit); 130 / 143 a run
//! stopped by SIGINT / SIGTERM (its partial report written).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use percid::index::Index;
use percid::topology::CpuSet;

use crate::options::{
    MAX_DELAY, MAX_ITEM_SIZE, MAX_PASSES, MAX_RUNS, MAX_WARMUP, Options, Target, parse_duration,
    parse_index, parse_size, parse_time_limit,
};
use crate::output::{Output, check_distinct, say, write_stderr};
use crate::progress::Progress;
use crate::report::Report;
use crate::runner::{Done, Hooks, execute, plan_resume, plan_run};
use crate::{BurstError, Interrupt, render, signal_name};

const ABOUT: &str = "The intermittent-burst locality benchmark of percid: cpu_id against \
                     concurrency IDs (mm_cid, user-space CIDs) for threads that run in short \
                     bursts far apart";

const AFTER_HELP: &str = "\
With no command, percid-burst runs `run` with the options given: `percid-burst` alone is the \
published method on every configuration of this machine.

Exit status: 0 success; 1 a failed run or output; 2 bad usage (options, description, preset, \
configuration, unreadable report, a refused limit); 130/143 stopped by SIGINT/SIGTERM (the \
partial report is written; --resume continues it).

Expected duration of a real run: about delay x threads x (passes + 1) per run and index \
source. See the README, section \"The burst benchmark\".";

/// `percid-burst`.
#[derive(Debug, Parser)]
#[command(
    name = "percid-burst",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The command; none means `run`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `run`'s options, given without the command name.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the benchmark on this machine or a machine model (the default command)
    Run(Box<RunArgs>),
    /// Render saved JSON reports: tables, conclusions, chart (merged when compatible)
    Report(ReportArgs),
    /// Compare two saved reports cell by cell, with the ratio B/A
    Compare(CompareArgs),
    /// Print a machine's topology and its benchmark configurations
    Topology(TopologyArgs),
    /// Measure this machine's cost-model figures and write a --describe file
    Calibrate(CalibrateArgs),
}

fn count(
    name: &'static str,
    min: usize,
    max: usize,
) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s: &str| {
        let n: usize = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a whole number from {min} to {max}"))?;
        if !(min..=max).contains(&n) {
            return Err(format!("{name} must be from {min} to {max}"));
        }
        Ok(n)
    }
}

fn delay(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be positive".to_string());
    }
    if d > MAX_DELAY {
        return Err("at most 1 hour".to_string());
    }
    Ok(d)
}

fn item_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n == 0 || n > MAX_ITEM_SIZE {
        return Err("must be 1 byte to 64KiB (the pool stride)".to_string());
    }
    Ok(n)
}

fn cpus(s: &str) -> Result<CpuSet, String> {
    let set = CpuSet::parse(s).map_err(|e| e.to_string())?;
    if set.is_empty() {
        return Err("empty CPU set".to_string());
    }
    Ok(set)
}

fn config_name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty configuration name".to_string());
    }
    Ok(t.to_string())
}

fn seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number from 0 to 18446744073709551615".to_string())
}

/// The options of `run` (also accepted without the command name).
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Index sources to compare: cpu, mmcid, user-legacy, user-local, user-task [default: all
    /// five]
    #[arg(short, long, value_name = "LIST", value_delimiter = ',', action = ArgAction::Set,
          value_parser = parse_index, help_heading = "What to run")]
    pub index: Option<Vec<Index>>,
    /// Configurations of the topology, e.g. 8c-1l3,24c-24l3 [default: all]
    #[arg(short, long, value_name = "LIST", value_delimiter = ',', action = ArgAction::Set,
          value_parser = config_name, conflicts_with = "cpus", help_heading = "What to run")]
    pub config: Option<Vec<String>>,
    /// Run on this CPU list instead (Linux list syntax, e.g. 0-3,8)
    #[arg(long, value_name = "LIST", value_parser = cpus, help_heading = "What to run")]
    pub cpus: Option<CpuSet>,
    /// Delays between bursts: ns, us, ms, s; a bare number is ms [default: 200ms,10ms]
    #[arg(short, long, value_name = "LIST", value_delimiter = ',', action = ArgAction::Set,
          value_parser = delay, help_heading = "What to run")]
    pub delay: Option<Vec<Duration>>,
    /// Runs per cell, reported as mean and spread, 1 to 1000 [default: 5]
    #[arg(short, long, value_name = "N", value_parser = count("--runs", 1, MAX_RUNS), allow_negative_numbers = true,
          help_heading = "What to run")]
    pub runs: Option<usize>,
    /// Timed passes per thread and run, 1 to 10000 [default: 5]
    #[arg(short, long, value_name = "N", value_parser = count("--passes", 1, MAX_PASSES), allow_negative_numbers = true,
          help_heading = "What to run")]
    pub passes: Option<usize>,
    /// Warm-up passes per thread and run, 0 to 10000000 [default: 20000]
    #[arg(short, long, value_name = "N", value_parser = count("--warmup", 0, MAX_WARMUP), allow_negative_numbers = true,
          help_heading = "What to run")]
    pub warmup: Option<usize>,
    /// Bytes per slot item, at most 64KiB [default: 16KiB]
    #[arg(long, value_name = "SIZE", value_parser = item_size, help_heading = "What to run")]
    pub item_size: Option<usize>,
    /// Seed of the random start permutations [default: 1]
    #[arg(short, long, value_name = "N", value_parser = seed, allow_negative_numbers = true, help_heading = "What to run")]
    pub seed: Option<u64>,
    /// Replay on a built-in machine model instead (epyc-9654, epyc-7763, xeon-e-2388g)
    #[arg(
        long,
        value_name = "PRESET",
        conflicts_with = "describe",
        help_heading = "What to run"
    )]
    pub simulate: Option<String>,
    /// Replay on a JSON machine description with a cost_model object instead
    #[arg(long, value_name = "FILE", help_heading = "What to run")]
    pub describe: Option<PathBuf>,
    /// Continue the partial report FILE (its plan and method; written back to FILE unless
    /// --json says otherwise)
    #[arg(long, value_name = "FILE",
          conflicts_with_all = ["index", "config", "cpus", "delay", "runs", "passes", "warmup",
                                "item_size", "seed", "simulate", "describe"],
          help_heading = "What to run")]
    pub resume: Option<PathBuf>,
    /// Write the report as JSON, after every run (`-`: stdout, at the end; the tables then go
    /// to stderr)
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub json: Option<PathBuf>,
    /// Draw ns per pass and slot migrations to an SVG chart
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub svg: Option<PathBuf>,
    /// No progress on stderr
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,
    /// Tables with the delays side by side (wider than 100 columns)
    #[arg(long, help_heading = "Output")]
    pub wide: bool,
    /// Refuse runs estimated longer than this: s, min, h [default: 24h]
    #[arg(long, value_name = "TIME", value_parser = parse_time_limit, help_heading = "Limits")]
    pub max_duration: Option<Duration>,
    /// Allow timed runs of a debug build (their timings are not comparable)
    #[arg(long, help_heading = "Limits")]
    pub allow_debug: bool,
}

impl RunArgs {
    /// The options these arguments ask for (defaults for the others).
    pub fn options(&self) -> Options {
        let d = Options::default();
        Options {
            indices: self.index.clone().unwrap_or(d.indices),
            configs: self.config.clone().unwrap_or_default(),
            cpus: self.cpus.clone(),
            delays: self.delay.clone().unwrap_or(d.delays),
            runs: self.runs.unwrap_or(d.runs),
            passes: self.passes.unwrap_or(d.passes),
            warmup: self.warmup.unwrap_or(d.warmup),
            item_size: self.item_size.unwrap_or(d.item_size),
            seed: self.seed.unwrap_or(d.seed),
            json: self.json.clone(),
            svg: self.svg.clone(),
            target: match (&self.simulate, &self.describe) {
                (Some(p), _) => Target::Preset(p.clone()),
                (None, Some(f)) => Target::Describe(f.clone()),
                (None, None) => Target::Real,
            },
            quiet: self.quiet,
            allow_debug: self.allow_debug,
            max_duration: self.max_duration.unwrap_or(d.max_duration),
        }
    }
}

/// `report FILE.json...`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Saved reports (merged into one when they are of the same machine, kernel and method
    /// and share no cell; otherwise rendered one after another)
    #[arg(value_name = "FILE.json", required = true)]
    pub files: Vec<PathBuf>,
    /// Draw the (merged) report to an SVG chart
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write the (merged) report as JSON (`-`: stdout; the tables then go to stderr)
    #[arg(short, long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Tables with the delays side by side (wider than 100 columns)
    #[arg(long)]
    pub wide: bool,
}

/// `compare A.json B.json`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The reference report
    #[arg(value_name = "A.json")]
    pub a: PathBuf,
    /// The report compared with it
    #[arg(value_name = "B.json")]
    pub b: PathBuf,
    /// Write the comparison as JSON, a verdict per ratio and cell (`-`: stdout; the text
    /// then goes to stderr)
    #[arg(short, long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `topology [--preset NAME | --describe FILE] [--json]`.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// A built-in machine description (epyc-9654, xeon-e-2388g) instead of this machine
    #[arg(long, value_name = "NAME", conflicts_with = "describe")]
    pub preset: Option<String>,
    /// A JSON machine description instead of this machine
    #[arg(long, value_name = "FILE")]
    pub describe: Option<PathBuf>,
    /// Print the machine description as JSON
    #[arg(long)]
    pub json: bool,
}

/// `percid-burst calibrate`'s options (see [`crate::calibrate`]).
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The machine description to write (`-` for stdout); an existing file is replaced
    /// atomically
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Smaller buffers, fewer repetitions and sleeps: under 5 s (default: under 30 s)
    #[arg(long)]
    pub quick: bool,
    /// The preset whose figures are kept for what cannot be measured here
    #[arg(long, value_name = "PRESET", default_value = "epyc-9654")]
    pub base: String,
    /// Measure even in a debug build (its figures are not the machine's; for tests)
    #[arg(long)]
    pub allow_debug: bool,
}

/// The command: parses `args` (without the program name), runs the command, and returns the
/// exit status (see the [module docs](self)).
pub fn cli_main<I, S>(args: I) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let argv = std::iter::once(std::ffi::OsString::from("percid-burst"))
        .chain(args.into_iter().map(Into::into));
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            return match e.print() {
                Ok(()) => code,
                Err(io) if io.kind() == std::io::ErrorKind::BrokenPipe => code,
                Err(io) => {
                    say(&format!("burst: writing the help: {io}"));
                    1
                }
            };
        }
    };
    let (name, result) = match &cli.command {
        None => ("burst", run_command(&cli.run)),
        Some(Command::Run(args)) => ("burst", run_command(args)),
        Some(Command::Report(args)) => ("report", report_command(args)),
        Some(Command::Compare(args)) => ("compare", compare_command(args)),
        Some(Command::Topology(args)) => ("topology", crate::topology_cmd::run(args)),
        Some(Command::Calibrate(args)) => ("calibrate", crate::calibrate::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            say(&format!("{name}: {e}"));
            if e.exit_code() == 2 {
                say(&format!("{name}: see percid-burst --help"));
            }
            e.exit_code()
        }
    }
}

/// Checks an output before any work; a path that cannot be written is bad usage.
fn prepare(option: &str, path: &Option<PathBuf>) -> Result<Option<Output>, BurstError> {
    path.as_deref()
        .map(|p| Output::prepare(p).map_err(|e| BurstError::Usage(format!("{option}: {e}"))))
        .transpose()
}

/// The files named by options, for [`check_distinct`]: `(option, path)` for each given.
fn named<'a>(pairs: &[(&'a str, Option<&'a Path>)]) -> Vec<(&'a str, &'a Path)> {
    pairs
        .iter()
        .filter_map(|(o, p)| p.map(|p| (*o, p)))
        .collect()
}

/// Writes the chart of `report` to `out`.
fn write_svg(report: &Report, out: &Output) -> Result<(), BurstError> {
    #[cfg(feature = "svg")]
    {
        let text = crate::svg::render(report).map_err(|reason| BurstError::Io {
            path: PathBuf::from(out.describe()),
            reason,
        })?;
        out.write(&text)
    }
    #[cfg(not(feature = "svg"))]
    {
        let _ = report;
        Err(BurstError::Io {
            path: PathBuf::from(out.describe()),
            reason: "this build has no `svg` feature".to_string(),
        })
    }
}

/// Prints the tables and conclusions of `report` to stdout, or to stderr when stdout
/// carries JSON.
fn print_text(report: &Report, json_on_stdout: bool, wide: bool) -> Result<(), BurstError> {
    let text = render::full_text_with(report, wide);
    if json_on_stdout {
        write_stderr(&text);
        Ok(())
    } else {
        crate::write_stdout(&text)
    }
}

fn run_command(args: &RunArgs) -> Result<i32, BurstError> {
    let options = args.options();
    if cfg!(not(feature = "svg")) && options.svg.is_some() {
        return Err(BurstError::Usage(
            "--svg: this build has no `svg` feature".to_string(),
        ));
    }
    // A partial report is a regular file (never read a FIFO or a device).
    if let Some(path) = &args.resume {
        // (A missing file is reported by the read below.)
        let irregular = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
        if irregular {
            return Err(BurstError::Usage(format!(
                "--resume {}: not a regular file (a partial report is one)",
                path.display()
            )));
        }
    }
    // The plan: checked, estimated and refused where needed, before any output is opened.
    let (plan, mut done, json_path) = match &args.resume {
        Some(path) => {
            let saved = Report::read(path).map_err(|e| BurstError::ReadReport {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let (plan, done) = plan_resume(&saved, &options)?;
            (
                plan,
                done,
                Some(options.json.clone().unwrap_or(path.clone())),
            )
        }
        None => (plan_run(&options)?, Done::new(), options.json.clone()),
    };
    // No two options may name one file (whatever the spelling: links, `./`, hard links).
    check_distinct(&named(&[
        ("--json", options.json.as_deref()),
        ("--svg", options.svg.as_deref()),
        ("--resume", args.resume.as_deref()),
    ]))?;
    if json_path.as_deref() == Some(Path::new("-"))
        && options.svg.as_deref() == Some(Path::new("-"))
    {
        return Err(BurstError::Usage(
            "--json - and --svg - both ask for stdout".to_string(),
        ));
    }
    // Every output is checked before the first run.
    let json = prepare("--json", &json_path)?;
    let svg = prepare("--svg", &options.svg)?;
    let json_on_stdout =
        json.as_ref().is_some_and(Output::is_stdout) || svg.as_ref().is_some_and(Output::is_stdout);

    if !options.quiet {
        for s in &plan.skipped {
            say(&format!("burst: skipping {}: {}", s.index, s.reason));
        }
        say(&plan.describe(&done));
    }
    if let Some(Output::File(f)) = &json
        && f.is_replaced()
        && !options.quiet
    {
        say(&format!(
            "burst: the report is saved to {} after every run",
            f.path().display()
        ));
    }
    let interrupt = Arc::new(Interrupt::new());
    interrupt.install().map_err(|e| BurstError::Io {
        path: PathBuf::from("signal handlers"),
        reason: e.to_string(),
    })?;
    let todo = plan.todo(&done);
    let mut progress = Progress::new(
        options.quiet,
        plan.simulated(),
        todo.len(),
        plan.estimate_left(&done),
    );
    // Real runs save after every run; simulations (many short runs) at most once a second.
    let mut last_save: Option<std::time::Instant> = None;
    let simulated = plan.simulated();
    // Whether the JSON file holds a report (a partial one after an interruption): set by
    // every successful write of a regular file, so a failed write never claims one.
    let saved = std::cell::Cell::new(false);
    let mut checkpoint = |report: &Report| -> Result<(), BurstError> {
        let due = !simulated || last_save.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        match &json {
            // Devices and FIFOs are written once, at the end.
            Some(Output::File(f)) if due && f.is_replaced() => {
                last_save = Some(std::time::Instant::now());
                f.write((report.to_json() + "\n").as_bytes())?;
                saved.set(true);
                Ok(())
            }
            _ => Ok(()),
        }
    };
    let outcome = execute(
        &plan,
        &mut done,
        Hooks {
            interrupt: &interrupt,
            progress: Some(&mut progress),
            checkpoint: Some(&mut checkpoint),
        },
    );
    progress.finish();
    drop(progress);
    let report = plan.report(&done);
    let mut written = Vec::new();
    let mut first_error: Option<BurstError> = None;
    if !report.results.is_empty() || outcome.is_ok() {
        if let Some(out) = &json {
            match out.write(&(report.to_json() + "\n")) {
                Ok(()) => {
                    written.push(out.describe());
                    saved.set(matches!(out, Output::File(f) if f.is_replaced()));
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(out) = &svg
            && !report.results.is_empty()
        {
            match write_svg(&report, out) {
                Ok(()) => written.push(out.describe()),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if !report.results.is_empty()
            && let Err(e) = print_text(&report, json_on_stdout, args.wide)
        {
            first_error = first_error.or(Some(e));
        }
    }
    for w in &written {
        if w != "stdout" {
            say(&format!("burst: wrote {w}"));
        }
    }
    let json_file = match &json {
        Some(Output::File(f)) if saved.get() => Some(f.path().display().to_string()),
        _ => None,
    };
    match outcome {
        Ok(()) => match first_error {
            None => Ok(0),
            Some(e) => Err(e),
        },
        Err(e) => {
            let runs = format!("{} of {} runs", report.runs_done(), report.runs_planned());
            match &e {
                BurstError::Interrupted(s) => say(&format!(
                    "burst: interrupted by {} after {runs}",
                    signal_name(*s)
                )),
                other => say(&format!("burst: {other} (after {runs})")),
            }
            if let Some(f) = json_file {
                say(&format!(
                    "burst: partial report in {f}; continue with: percid-burst run --resume {f}"
                ));
            }
            Err(e)
        }
    }
}

fn read_report(path: &Path) -> Result<Report, BurstError> {
    Report::read(path).map_err(|e| BurstError::ReadReport {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn report_command(args: &ReportArgs) -> Result<i32, BurstError> {
    // The outputs may name neither each other nor an input.
    let mut files = named(&[
        ("--json", args.json.as_deref()),
        ("--svg", args.svg.as_deref()),
    ]);
    files.extend(args.files.iter().map(|f| ("input", f.as_path())));
    check_distinct(&files)?;
    let reports: Vec<Report> = args
        .files
        .iter()
        .map(|f| read_report(f))
        .collect::<Result<_, _>>()?;
    // Merge when every file fits the first.
    let mut merged = reports[0].clone();
    let mut conflict = None;
    for (r, f) in reports.iter().zip(&args.files).skip(1) {
        if let Err(why) = merged.merge(r.clone()) {
            conflict = Some(format!("{} does not merge: {why}", f.display()));
            break;
        }
    }
    let json = prepare("--json", &args.json)?;
    let svg = prepare("--svg", &args.svg)?;
    if let Some(why) = &conflict
        && (json.is_some() || svg.is_some())
    {
        return Err(BurstError::Usage(format!(
            "{why}; --json and --svg need reports that merge into one"
        )));
    }
    let json_on_stdout =
        json.as_ref().is_some_and(Output::is_stdout) || svg.as_ref().is_some_and(Output::is_stdout);
    let mut text = String::new();
    match &conflict {
        None => {
            if reports.len() > 1 {
                text.push_str(&format!("merged {} reports\n", reports.len()));
            }
            text.push_str(&render::full_text_with(&merged, args.wide));
        }
        Some(why) => {
            text.push_str(&format!("not merged: {why}\n"));
            for (r, f) in reports.iter().zip(&args.files) {
                text.push_str(&format!("\n== {} ==\n", f.display()));
                text.push_str(&render::full_text_with(r, args.wide));
            }
        }
    }
    let mut written = Vec::new();
    if let Some(out) = &json {
        // The report, plus the verdict of every ratio (ignored when read back).
        let mut value = serde_json::to_value(&merged).map_err(|e| BurstError::Io {
            path: PathBuf::from(out.describe()),
            reason: e.to_string(),
        })?;
        if let serde_json::Value::Object(obj) = &mut value {
            obj.insert(
                "verdicts".to_string(),
                serde_json::to_value(render::verdicts(&merged)).unwrap_or_default(),
            );
        }
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        out.write(&(text + "\n"))?;
        written.push(out.describe());
    }
    if let Some(out) = &svg {
        write_svg(&merged, out)?;
        written.push(out.describe());
    }
    if json_on_stdout {
        write_stderr(&text);
    } else {
        crate::write_stdout(&text)?;
    }
    for w in written.iter().filter(|w| *w != "stdout") {
        say(&format!("report: wrote {w}"));
    }
    Ok(0)
}

fn compare_command(args: &CompareArgs) -> Result<i32, BurstError> {
    if let Some(j) = &args.json {
        for input in [&args.a, &args.b] {
            check_distinct(&[("--json", j.as_path()), ("input", input.as_path())])?;
        }
    }
    let a = read_report(&args.a)?;
    let b = read_report(&args.b)?;
    let json = prepare("--json", &args.json)?;
    let (an, bn) = (args.a.display().to_string(), args.b.display().to_string());
    let text = render::compare(&a, &an, &b, &bn);
    if let Some(out) = &json {
        let c = render::comparison(&a, &an, &b, &bn);
        let body = serde_json::to_string_pretty(&c).map_err(|e| BurstError::Io {
            path: PathBuf::from(out.describe()),
            reason: e.to_string(),
        })?;
        out.write(&(body + "\n"))?;
    }
    if json.as_ref().is_some_and(Output::is_stdout) {
        write_stderr(&text);
    } else {
        crate::write_stdout(&text)?;
    }
    if let Some(out) = json.as_ref().filter(|o| !o.is_stdout()) {
        say(&format!("compare: wrote {}", out.describe()));
    }
    Ok(0)
}
