//! Text outputs of a report: the tables, the noise marks, the conclusions, and the side by
//! side comparison of two reports.
//!
//! **Noise mark.** A cell whose spread (sample standard deviation of its run means, in
//! percent of their mean) is above [`NOISE_THRESHOLD_PERCENT`] (25%) is marked `~`: its
//! timing is unreliable.
//!
//! **Within the noise or not, in one report** ([`judge`]): the runs of cells A and B are
//! paired by run number (a run runs its index sources one after another on the same start
//! order, so the machine's drift between runs cancels in each pair); with `n` pairs, the mean
//! `m` and sample standard deviation `s` of `ln(A_k / B_k)`, the difference is *larger than
//! the noise* when `|m| > t99(n-1) x s / sqrt(n)` (Student's t, 99% two-sided), otherwise
//! *within the noise*; fewer than 3 pairs are not judged. When either cell has an interval
//! (`ns_per_pass_low` / `_high`, from a model), the intervals are compared instead (a cell
//! without one counts as its mean): apart means *beyond the intervals*, overlapping *within
//! the intervals*. The conclusions judge no ratio where no source moved its slot.
//!
//! **Between two reports** ([`comparison`]): the methods first (a difference is stated and
//! the absolute timings are not judged); then the within-run ratios (Welch's test at 99% on
//! the paired log ratios of each side), matched by configuration name or else by shape; then
//! the absolute ns of the cells in common after the drift (the median `ln(B/A)`): a cell is
//! different when its residual exceeds [`COMPARE_SIGMAS`] times the root of its own variance
//! plus `tau^2`, the spread between invocations estimated robustly from all residuals.

use std::fmt::Write as _;

use crate::fmt_ms;
use crate::report::{Cells, Mode, Report, ResultRow};
use crate::stats::{mean, spread_percent, stddev};
use percid::index::era::CidEra;

/// A spread above this percentage marks a cell `~`.
pub const NOISE_THRESHOLD_PERCENT: f64 = 25.0;

/// Fewer runs than this on either side: the noise is not judged (a spread from one or two
/// run means says little).
pub const MIN_RUNS_TO_JUDGE: usize = 3;

/// The speedups shown: (label, numerator, denominator).
pub const SPEEDUPS: [(&str, &str, &str); 2] = [
    ("legacy/local", "user-legacy", "user-local"),
    ("cpu/mmcid", "cpu", "mmcid"),
];

/// How two timings compare (the rule: see [`judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The difference is larger than twice the combined standard error.
    Larger,
    /// The difference is at most twice the combined standard error.
    Within,
    /// The intervals do not overlap.
    BeyondIntervals,
    /// The intervals overlap.
    WithinIntervals,
    /// Equal means.
    Equal,
    /// One side has fewer than [`MIN_RUNS_TO_JUDGE`] runs.
    Unknown,
}

impl Verdict {
    /// The words used in tables and conclusions.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Larger => "larger than the noise",
            Verdict::Within => "within the noise",
            Verdict::BeyondIntervals => "beyond the intervals",
            Verdict::WithinIntervals => "within the intervals",
            Verdict::Equal => "no difference",
            Verdict::Unknown => "too few runs to judge the noise",
        }
    }

    /// Whether the difference is real by this rule.
    pub fn differs(self) -> bool {
        matches!(self, Verdict::Larger | Verdict::BeyondIntervals)
    }
}

/// The two-sided 99% critical value of Student's t with `df` degrees of freedom (table to
/// 30, then `2.576 + 5/df`, within 0.01 of the exact value).
pub fn t_critical_99(df: usize) -> f64 {
    const T: [f64; 30] = [
        63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012,
        2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779,
        2.771, 2.763, 2.756, 2.750,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => 2.576 + 5.0 / df as f64,
    }
}

/// `ln(a_k / b_k)` for the runs of cells A and B paired by run number (the index sources of
/// a run run one after another on the same start order, so drift between runs cancels in
/// each pair); by position when the cells carry no per-run records.
pub fn paired_log_ratios(a: &ResultRow, b: &ResultRow) -> Vec<f64> {
    let ok = |x: f64, y: f64| x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite();
    if !a.per_run.is_empty() && !b.per_run.is_empty() {
        let by_run: std::collections::HashMap<usize, f64> =
            b.per_run.iter().map(|r| (r.run, r.ns_per_pass)).collect();
        return a
            .per_run
            .iter()
            .filter_map(|r| by_run.get(&r.run).map(|&y| (r.ns_per_pass, y)))
            .filter(|&(x, y)| ok(x, y))
            .map(|(x, y)| (x / y).ln())
            .collect();
    }
    a.runs
        .iter()
        .zip(&b.runs)
        .filter(|&(&x, &y)| ok(x, y))
        .map(|(x, y)| (x / y).ln())
        .collect()
}

/// Compares the timings of two cells A and B of one report (see the
/// `render.rs` module docs): the runs are paired by run number and the mean of `ln(A_k / B_k)`
/// is tested against 0 with Student's t at 99% (two-sided; `n - 1` degrees of freedom).
/// Larger than the noise when `|mean| > t99(n-1) x sd / sqrt(n)`; not judged with fewer
/// than [`MIN_RUNS_TO_JUDGE`] pairs. When either cell has an interval, the intervals are
/// compared instead (a cell without one counts as its mean).
pub fn judge(a: &ResultRow, b: &ResultRow) -> Verdict {
    if a.interval().is_some() || b.interval().is_some() {
        let (al, ah) = a.interval().unwrap_or((a.ns_per_pass, a.ns_per_pass));
        let (bl, bh) = b.interval().unwrap_or((b.ns_per_pass, b.ns_per_pass));
        return if ah < bl || bh < al {
            Verdict::BeyondIntervals
        } else {
            Verdict::WithinIntervals
        };
    }
    if a.runs == b.runs {
        return Verdict::Equal;
    }
    let logs = paired_log_ratios(a, b);
    let n = logs.len();
    if n < MIN_RUNS_TO_JUDGE {
        return Verdict::Unknown;
    }
    let m = mean(logs.iter().copied());
    if m == 0.0 {
        return Verdict::Equal;
    }
    let se = stddev(&logs) / (n as f64).sqrt();
    if m.abs() > t_critical_99(n - 1) * se {
        Verdict::Larger
    } else {
        Verdict::Within
    }
}

/// Whether the cell's spread is above [`NOISE_THRESHOLD_PERCENT`].
pub fn is_noisy(r: &ResultRow) -> bool {
    spread_percent(&r.runs) > NOISE_THRESHOLD_PERCENT
}

/// A cell: `1367 ±4%`, `8863 ±117%~` (noisy), or `1367 [1200-1500]` with an interval.
pub fn cell_text(r: &ResultRow) -> String {
    match r.interval() {
        Some((l, h)) => format!("{:.0} [{l:.0}-{h:.0}]", r.ns_per_pass),
        None => format!(
            "{:.0} ±{:.0}%{}",
            r.ns_per_pass,
            spread_percent(&r.runs),
            if is_noisy(r) { "~" } else { "" }
        ),
    }
}

/// The ratio `a / b`: `13.99x`, with an interval `13.99x [11.20-16.05]` when both have one:
/// the 10th-90th percentile of the per-draw ratios when both carry draws (simulations),
/// otherwise the extreme ratios of the two intervals.
pub fn ratio_text(a: &ResultRow, b: &ResultRow) -> String {
    if b.ns_per_pass <= 0.0 {
        return "-".to_string();
    }
    let r = a.ns_per_pass / b.ns_per_pass;
    // Simulations: the ratio draw by draw (both cells drew the same parameter sets).
    if let (Some(da), Some(db)) = (a.draw_means(), b.draw_means())
        && da.len() == db.len()
        && db.iter().all(|&x| x > 0.0)
    {
        let ratios: Vec<f64> = da.iter().zip(&db).map(|(x, y)| x / y).collect();
        if let Some((l, h)) = crate::percentile_interval(r, &ratios) {
            return format!("{r:.2}x [{l:.2}-{h:.2}]");
        }
    }
    match (a.interval(), b.interval()) {
        (Some((al, ah)), Some((bl, bh))) if bl > 0.0 && bh > 0.0 => {
            format!("{r:.2}x [{:.2}-{:.2}]", al / bh, ah / bl)
        }
        _ => format!("{r:.2}x"),
    }
}

/// The kernel CID era of a real run's kernel release, and so what its `mmcid` measured.
pub fn era_line(release: &str) -> String {
    match CidEra::from_release(release) {
        Some(era) => format!(
            "kernel CID era: {era}: mmcid measures {}",
            era.mmcid_measures()
        ),
        None => format!("kernel CID era: unknown (release {release:?} not parsed)"),
    }
}

/// The header line(s) of a report.
pub fn header(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "burst ({}) on {}\nkernel {}\n{} B item, {} warm-up + {} timed passes, {} run(s), seed {}",
        report.mode,
        report.machine.summary(),
        // A modelled kernel's long description: one clause a line.
        if report.kernel.len() > 90 {
            report.kernel.replace("; ", ";\n  ")
        } else {
            report.kernel.clone()
        },
        report.method.item_size,
        report.method.warmup,
        report.method.passes,
        report.method.runs,
        report.method.seed
    );
    if report.mode == Mode::Real {
        let _ = writeln!(out, "{}", era_line(&report.kernel));
    }
    if let Some(g) = &report.generator {
        let _ = writeln!(
            out,
            "percid-burst {} ({} build), percid {}, report schema {}",
            g.percid_burst, g.build, g.percid, report.schema
        );
        if g.build == "debug" && report.mode == Mode::Real {
            let _ = writeln!(
                out,
                "WARNING: a debug build measured these timings: they are not comparable \
                 (build with --release)"
            );
        }
    }
    if !report.complete {
        let _ = writeln!(
            out,
            "PARTIAL: {} of {} runs (interrupted or failed; --resume continues it)",
            report.runs_done(),
            report.runs_planned()
        );
    }
    out
}

/// Pads every column of `rows` (cells already formatted) to its widest entry: the first
/// column left-aligned, the others right-aligned; `|` cells are separators.
fn align(rows: &[Vec<String>]) -> String {
    align_with(rows, 1)
}

/// [`align`] with the first `left` columns left-aligned.
fn align_with(rows: &[Vec<String>], left: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (k, c) in row.iter().enumerate() {
            widths[k] = widths[k].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (k, c) in row.iter().enumerate() {
            let pad = widths[k] - c.chars().count();
            if k == 0 {
                line.push_str(c);
                line.push_str(&" ".repeat(pad));
            } else if k < left {
                line.push_str("  ");
                line.push_str(c);
                line.push_str(&" ".repeat(pad));
            } else if c == "|" {
                line.push_str(" |");
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(c);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The [`SPEEDUPS`] whose two sources are both among `indices`.
fn speedups_of(indices: &[String]) -> Vec<&'static (&'static str, &'static str, &'static str)> {
    let has = |i: &str| indices.iter().any(|x| x == i);
    SPEEDUPS
        .iter()
        .filter(|(_, a, b)| has(a) && has(b))
        .collect()
}

/// The tables, one line per configuration, delays side by side (`--wide`; 170 columns on 2
/// CPUs, 290 on the EPYC preset): ns per pass (with spreads, marks and speedups) and the
/// locality statistics; then the noise legend and the skipped sources.
pub fn tables_wide(report: &Report) -> String {
    let (configs, delays, indices) = report.axes();
    let cells = report.cells();
    let mut out = String::new();
    let speedups = speedups_of(&indices);
    if !configs.is_empty() {
        let _ = writeln!(
            out,
            "\nns per pass (mean of the run means, ±spread of the run means; [low-high] an interval)"
        );
        let mut head = vec!["config".to_string(), "cpus".to_string()];
        for _ in &delays {
            head.push("|".into());
            head.extend(indices.iter().cloned());
            head.extend(speedups.iter().map(|(name, _, _)| name.to_string()));
        }
        let mut rows = vec![head];
        for (c, n) in &configs {
            let mut row = vec![c.clone(), n.to_string()];
            for d in &delays {
                row.push("|".into());
                for i in &indices {
                    row.push(cells.get(c, *d, i).map_or("-".into(), cell_text));
                }
                for (_, a, b) in &speedups {
                    row.push(match (cells.get(c, *d, a), cells.get(c, *d, b)) {
                        (Some(x), Some(y)) => ratio_text(x, y),
                        _ => "-".into(),
                    });
                }
            }
            rows.push(row);
        }
        let text = align(&rows);
        let _ = writeln!(out, "{}", group_header_line(&text, &delays));
        out.push_str(&text);

        let _ = writeln!(
            out,
            "\nlocality: slot migrations / timed passes, distinct slots (over all runs)"
        );
        let mut head = vec!["config".to_string(), "cpus".to_string()];
        for d in &delays {
            head.push("|".into());
            for i in &indices {
                head.push(format!("{i}@{}", fmt_ms(*d)));
            }
        }
        let mut rows = vec![head];
        for (c, n) in &configs {
            let mut row = vec![c.clone(), n.to_string()];
            for d in &delays {
                row.push("|".into());
                for i in &indices {
                    row.push(cells.get(c, *d, i).map_or("-".into(), |r| {
                        format!("{}/{}, {}", r.slot_migrations, r.passes, r.distinct_slots)
                    }));
                }
            }
            rows.push(row);
        }
        out.push_str(&align(&rows));
        if report.results.iter().any(is_noisy) {
            let _ = writeln!(
                out,
                "\n~ spread above {NOISE_THRESHOLD_PERCENT:.0}% of the mean: that timing is unreliable"
            );
        }
    }
    for s in &report.skipped {
        let _ = writeln!(out, "\nskipped {}: {}", s.index, s.reason);
    }
    out
}

/// The tables in the narrow form (the default; within 100 columns for configuration names
/// up to 12 characters): one line per cell (configuration, delay, index) with its ns per
/// pass and locality, then one line per (configuration, delay) with the speedups; then the
/// noise legend and the skipped sources. See [`conclusions`] for what follows, and
/// [`tables_wide`] for the delays side by side.
pub fn tables(report: &Report) -> String {
    let (configs, delays, indices) = report.axes();
    let cells = report.cells();
    let mut out = String::new();
    let speedups = speedups_of(&indices);
    if !configs.is_empty() {
        let _ = writeln!(
            out,
            "\nns per pass (mean of the run means, ±spread of the run means; [low-high] an \
             interval);\nlocality: slot migrations / timed passes, distinct slots (over all runs)"
        );
        let mut rows = vec![vec![
            "config".to_string(),
            "cpus".into(),
            "delay".into(),
            "index".into(),
            "ns per pass".into(),
            "locality".into(),
        ]];
        for (c, n) in &configs {
            for d in &delays {
                for i in &indices {
                    if let Some(r) = cells.get(c, *d, i) {
                        rows.push(vec![
                            c.clone(),
                            n.to_string(),
                            fmt_ms(*d),
                            i.clone(),
                            cell_text(r),
                            format!("{}/{}, {}", r.slot_migrations, r.passes, r.distinct_slots),
                        ]);
                    }
                }
            }
        }
        out.push_str(&align_with(&rows, 1));
        if !speedups.is_empty() {
            let _ = writeln!(out, "\nspeedups (ratios of ns per pass)");
            let mut head = vec!["config".to_string(), "delay".into()];
            head.extend(speedups.iter().map(|(name, _, _)| name.to_string()));
            let mut rows = vec![head];
            for (c, _) in &configs {
                for d in &delays {
                    let mut row = vec![c.clone(), fmt_ms(*d)];
                    for (_, a, b) in &speedups {
                        row.push(match (cells.get(c, *d, a), cells.get(c, *d, b)) {
                            (Some(x), Some(y)) => ratio_text(x, y),
                            _ => "-".into(),
                        });
                    }
                    rows.push(row);
                }
            }
            out.push_str(&align_with(&rows, 1));
        }
        if report.results.iter().any(is_noisy) {
            let _ = writeln!(
                out,
                "\n~ spread above {NOISE_THRESHOLD_PERCENT:.0}% of the mean: that timing is unreliable"
            );
        }
    }
    for s in &report.skipped {
        let _ = writeln!(out, "\nskipped {}: {}", s.index, s.reason);
    }
    out
}

/// The line above an aligned table: `|  delay 200ms` over each delay's group.
fn group_header_line(table: &str, delays: &[f64]) -> String {
    let head = table.lines().next().unwrap_or_default();
    let mut line = String::new();
    let mut starts = head.match_indices(" |").map(|(k, _)| k + 1);
    for d in delays {
        let Some(at) = starts.next() else { break };
        while line.chars().count() < at {
            line.push(' ');
        }
        let _ = write!(line, "|  delay {}", fmt_ms(*d));
    }
    line.trim_end().to_string()
}

/// One conclusion line per configuration: per delay, whether the locality effect is present
/// (some source moved its slot, another did not), each speedup with its [`Verdict`], whether
/// the effect is visible in the timings, and the noisy cells.
pub fn conclusions(report: &Report) -> String {
    let (configs, delays, indices) = report.axes();
    let cells = report.cells();
    if configs.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nconclusions (ratios judged on runs paired by run number, Student's t at 99%; see \
         README):"
    );
    if !report.complete {
        let _ = writeln!(
            out,
            "(partial report: {} of {} runs)",
            report.runs_done(),
            report.runs_planned()
        );
    }
    for (c, n) in &configs {
        let mut clauses = Vec::new();
        for d in &delays {
            let rows: Vec<&ResultRow> =
                indices.iter().filter_map(|i| cells.get(c, *d, i)).collect();
            if rows.is_empty() {
                continue;
            }
            let at = if clauses.is_empty() { "at" } else { "At" };
            clauses.push(format!(
                "{at} {}, {}",
                fmt_ms(*d),
                delay_clause(&cells, c, *d, &rows)
            ));
        }
        let _ = writeln!(
            out,
            "{c} ({} CPU{}): {}.",
            n,
            if *n == 1 { "" } else { "s" },
            clauses.join(". ")
        );
    }
    out
}

/// The verdict of one speedup of one (configuration, delay) of a report (`report --json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RatioVerdict {
    /// Configuration.
    pub config: String,
    /// Delay, ms.
    pub delay_ms: f64,
    /// `legacy/local` or `cpu/mmcid`.
    pub ratio: String,
    /// The ratio of the means.
    pub value: f64,
    /// Slot migrations of the numerator and the denominator (over all runs).
    pub slot_migrations: [u64; 2],
    /// [`Verdict::words`], or why it is not judged (no slot moved, or both moved alike).
    pub verdict: String,
}

/// Every speedup of `report` with its verdict, in table order (the rules of [`conclusions`]).
pub fn verdicts(report: &Report) -> Vec<RatioVerdict> {
    let (configs, delays, indices) = report.axes();
    let cells = report.cells();
    let mut out = Vec::new();
    for (c, _) in &configs {
        for &d in &delays {
            let moved = indices
                .iter()
                .filter_map(|i| cells.get(c, d, i))
                .any(|r| r.slot_migrations > 0);
            for (label, a, b) in SPEEDUPS {
                let (Some(x), Some(y)) = (cells.get(c, d, a), cells.get(c, d, b)) else {
                    continue;
                };
                let verdict = if !moved {
                    "not judged (no slot moved: not a locality effect)".to_string()
                } else if x.slot_migrations == y.slot_migrations {
                    "not judged (same slot migrations: not a locality comparison)".to_string()
                } else {
                    judge(x, y).words().to_string()
                };
                out.push(RatioVerdict {
                    config: c.clone(),
                    delay_ms: d,
                    ratio: label.to_string(),
                    value: x.ns_per_pass / y.ns_per_pass,
                    slot_migrations: [x.slot_migrations, y.slot_migrations],
                    verdict,
                });
            }
        }
    }
    out
}

/// `X, Y and Z`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn delay_clause(cells: &Cells<'_>, config: &str, delay: f64, rows: &[&ResultRow]) -> String {
    let movers: Vec<&&ResultRow> = rows.iter().filter(|r| r.slot_migrations > 0).collect();
    let stayers: Vec<String> = rows
        .iter()
        .filter(|r| r.slot_migrations == 0)
        .map(|r| r.index.clone())
        .collect();
    let moved = |r: &ResultRow| {
        format!(
            "{} moved its slot on {} of {} timed passes",
            r.index, r.slot_migrations, r.passes
        )
    };
    let mut text = if movers.is_empty() {
        "no locality effect (no source moved its slot)".to_string()
    } else if stayers.is_empty() {
        format!(
            "no locality difference (every source moved its slot: {})",
            join_and(&movers.iter().map(|r| moved(r)).collect::<Vec<_>>())
        )
    } else {
        format!(
            "locality effect present ({}; {} on 0)",
            join_and(&movers.iter().map(|r| moved(r)).collect::<Vec<_>>()),
            join_and(&stayers)
        )
    };
    let mut timings = Vec::new();
    let mut shows: Option<bool> = None;
    for (label, a, b) in SPEEDUPS {
        let (Some(x), Some(y)) = (cells.get(config, delay, a), cells.get(config, delay, b)) else {
            continue;
        };
        if movers.is_empty() {
            timings.push(format!("{label} {}", ratio_text(x, y)));
            continue;
        }
        if x.slot_migrations == y.slot_migrations {
            timings.push(format!(
                "{label} {} (same slot migrations: not a locality comparison)",
                ratio_text(x, y)
            ));
            continue;
        }
        let v = judge(x, y);
        timings.push(format!("{label} {} ({})", ratio_text(x, y), v.words()));
        if x.slot_migrations > 0 && y.slot_migrations == 0 {
            let slower = x.ns_per_pass > y.ns_per_pass;
            shows = Some(shows.unwrap_or(false) || (v.differs() && slower));
        }
    }
    match shows {
        Some(true) => text.push_str(", visible in the timings"),
        Some(false) => text.push_str(", not visible in the timings"),
        None => {}
    }
    if !timings.is_empty() {
        let _ = write!(text, ": {}", timings.join(", "));
        if movers.is_empty() {
            text.push_str(
                " (not judged: with no slot moved, a timing difference is not a locality effect)",
            );
        }
    }
    if rows.iter().any(|r| is_noisy(r)) {
        let noisy: Vec<String> = rows
            .iter()
            .filter(|r| is_noisy(r))
            .map(|r| format!("{} ±{:.0}%", r.index, spread_percent(&r.runs)))
            .collect();
        let _ = write!(text, "; noisy: {}", noisy.join(", "));
    }
    text
}

/// How far a cell of B must be from its cell of A, after the drift is removed, in units of
/// its combined standard deviation, to be called different in `compare`: 3 (a 0.3% two-sided
/// false-positive rate per cell for normal noise; A/A runs measured in the README).
pub const COMPARE_SIGMAS: f64 = 3.0;

/// One compared cell (`compare`, `compare --json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComparedCell {
    /// Configuration.
    pub config: String,
    /// Delay, ms.
    pub delay_ms: f64,
    /// Index source.
    pub index: String,
    /// A's mean ns per pass.
    pub a_ns: f64,
    /// B's mean ns per pass.
    pub b_ns: f64,
    /// B / A.
    pub ratio: f64,
    /// B / A divided by the drift (the median B / A over the common cells).
    pub ratio_after_drift: f64,
    /// `different`, `within the noise` or `not judged` (with the reason).
    pub verdict: String,
    /// Slot migrations / timed passes in A and B.
    pub migrations: [String; 2],
}

/// One compared within-run ratio (legacy/local, cpu/mmcid) of a (configuration, delay).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComparedRatio {
    /// The ratio's label.
    pub ratio: String,
    /// A's configuration.
    pub a_config: String,
    /// B's configuration (another name when matched by shape).
    pub b_config: String,
    /// Delay, ms.
    pub delay_ms: f64,
    /// A's ratio (geometric mean of its paired runs).
    pub a: f64,
    /// B's ratio.
    pub b: f64,
    /// `different`, `within the noise` or `not judged` (with the reason).
    pub verdict: String,
}

/// The comparison of two reports (`compare`; `compare --json` writes it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    /// A's file name.
    pub a: String,
    /// B's file name.
    pub b: String,
    /// Method differences (item size, stride, warm-up, passes), empty when alike.
    pub method_differences: Vec<String>,
    /// Machine difference, if any.
    pub machine_difference: Option<String>,
    /// How the configurations were matched: `by name`, or `by shape` (one L3 domain or
    /// several, with SMT or not; the largest configuration of each shape) when no name is
    /// in common.
    pub matched: String,
    /// The within-run ratios compared (judged first: drift between invocations cancels).
    pub ratios: Vec<ComparedRatio>,
    /// The median B / A over the common cells: the drift between the invocations (or a
    /// change of the whole machine); `None` without common cells.
    pub drift: Option<f64>,
    /// The spread between invocations (in ln units) added to every cell's noise, estimated
    /// from the residuals after the drift (robust: 1.4826 x their median absolute deviation,
    /// less the cells' own median variance).
    pub between_invocations: Option<f64>,
    /// The cells compared by absolute ns (same configuration names only).
    pub cells: Vec<ComparedCell>,
    /// Cells only in A / only in B.
    pub only_a: Vec<String>,
    /// Cells only in B.
    pub only_b: Vec<String>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The variance of `ln(mean)` of a cell's runs (delta method: `(sd / mean)^2 / n`).
fn log_mean_variance(r: &ResultRow) -> f64 {
    let n = r.runs.len().max(1) as f64;
    let m = r.ns_per_pass.max(f64::MIN_POSITIVE);
    (stddev(&r.runs) / m).powi(2) / n
}

/// `(one L3 domain?, SMT?)` from a configuration name such as `8c-1l3` or `384t-24l3`;
/// `cpus:LIST` configurations have no shape.
fn shape(config: &str) -> Option<(bool, bool)> {
    let (threads, l3) = config.split_once('-')?;
    let smt = threads.ends_with('t');
    let l3: usize = l3.strip_suffix("l3")?.parse().ok()?;
    Some((l3 == 1, smt))
}

fn verdict_words(v: Verdict) -> &'static str {
    match v {
        Verdict::Larger | Verdict::BeyondIntervals => "different",
        Verdict::Within | Verdict::WithinIntervals | Verdict::Equal => "within the noise",
        Verdict::Unknown => "not judged (fewer than 3 runs)",
    }
}

/// Compares the within-run ratio `num / den` of A's and B's (configuration, delay): Welch's
/// test on the paired log ratios of each, Student's t at 99% with the smaller side's degrees
/// of freedom; intervals (simulations) are compared when either has one.
fn judge_ratio(a: (&ResultRow, &ResultRow), b: (&ResultRow, &ResultRow)) -> (f64, f64, Verdict) {
    let la = paired_log_ratios(a.0, a.1);
    let lb = paired_log_ratios(b.0, b.1);
    let ra = a.0.ns_per_pass / a.1.ns_per_pass;
    let rb = b.0.ns_per_pass / b.1.ns_per_pass;
    let (na, nb) = (la.len(), lb.len());
    if na < MIN_RUNS_TO_JUDGE || nb < MIN_RUNS_TO_JUDGE {
        return (ra, rb, Verdict::Unknown);
    }
    let d = mean(lb.iter().copied()) - mean(la.iter().copied());
    let se = (stddev(&la).powi(2) / na as f64 + stddev(&lb).powi(2) / nb as f64).sqrt();
    let v = if d == 0.0 {
        Verdict::Equal
    } else if d.abs() > t_critical_99(na.min(nb) - 1) * se {
        Verdict::Larger
    } else {
        Verdict::Within
    };
    (ra, rb, v)
}

/// Compares two reports (see [`Comparison`] and the README, "Comparing reports"): the
/// method and machine differences; the within-run ratios first, by configuration name or,
/// when no name is in common, by configuration shape; then the absolute ns of the cells in
/// common, with the drift between the invocations stated and removed, and the spread
/// between invocations added to each cell's noise.
pub fn comparison(a: &Report, a_name: &str, b: &Report, b_name: &str) -> Comparison {
    let (ma, mb) = (&a.method, &b.method);
    let mut method_differences = Vec::new();
    for (name, x, y) in [
        ("item size (B)", ma.item_size, mb.item_size),
        ("stride (B)", ma.stride, mb.stride),
        ("warm-up passes", ma.warmup, mb.warmup),
        ("timed passes", ma.passes, mb.passes),
    ] {
        if x != y {
            method_differences.push(format!("{name} {x} vs {y}"));
        }
    }
    if a.mode != b.mode {
        method_differences.push(format!("{} vs {}", a.mode, b.mode));
    }
    let machine_difference = a.machine.difference(&b.machine);
    let (a_cells, b_cells) = (a.cells(), b.cells());
    // Configuration pairs: by name, else by shape.
    let (a_axes, b_axes) = (a.axes(), b.axes());
    let by_name: Vec<(String, String)> = a_axes
        .0
        .iter()
        .filter(|(c, _)| b_axes.0.iter().any(|(d, _)| d == c))
        .map(|(c, _)| (c.clone(), c.clone()))
        .collect();
    let (pairs, matched) = if !by_name.is_empty() {
        (by_name, "by name".to_string())
    } else {
        let largest = |axes: &[(String, usize)], s: (bool, bool)| {
            axes.iter()
                .filter(|(c, _)| shape(c) == Some(s))
                .max_by_key(|(_, n)| *n)
                .map(|(c, _)| c.clone())
        };
        let mut pairs = Vec::new();
        for s in [(true, false), (false, false), (true, true), (false, true)] {
            if let (Some(x), Some(y)) = (largest(&a_axes.0, s), largest(&b_axes.0, s)) {
                pairs.push((x, y));
            }
        }
        (
            pairs,
            "by shape (no configuration name in common:\nthe largest configuration with one L3 \
             domain, or several, on each side)"
                .to_string(),
        )
    };
    let mut ratios = Vec::new();
    for (ca, cb) in &pairs {
        for &d in &a_axes.1 {
            for (label, num, den) in SPEEDUPS {
                let ga = (a_cells.get(ca, d, num), a_cells.get(ca, d, den));
                let gb = (b_cells.get(cb, d, num), b_cells.get(cb, d, den));
                if let ((Some(an), Some(ad)), (Some(bn), Some(bd))) = (ga, gb) {
                    let (ra, rb, v) = judge_ratio((an, ad), (bn, bd));
                    let verdict = if method_differences.is_empty() {
                        verdict_words(v).to_string()
                    } else {
                        format!("{} (methods differ)", verdict_words(v))
                    };
                    ratios.push(ComparedRatio {
                        ratio: label.to_string(),
                        a_config: ca.clone(),
                        b_config: cb.clone(),
                        delay_ms: d,
                        a: ra,
                        b: rb,
                        verdict,
                    });
                }
            }
        }
    }
    // Absolute ns of the cells in common: drift, then residuals.
    let common: Vec<(&ResultRow, &ResultRow)> = a
        .results
        .iter()
        .filter_map(|ra| {
            b_cells
                .get(&ra.config, ra.delay_ms, &ra.index)
                .map(|rb| (ra, rb))
        })
        .collect();
    let logs: Vec<f64> = common
        .iter()
        .map(|(x, y)| (y.ns_per_pass / x.ns_per_pass).ln())
        .collect();
    let drift_ln = median(logs.clone());
    let between = drift_ln.and_then(|dl| {
        let mad = median(logs.iter().map(|l| (l - dl).abs()).collect())?;
        let own = median(
            common
                .iter()
                .map(|(x, y)| log_mean_variance(x) + log_mean_variance(y))
                .collect(),
        )?;
        Some(((1.4826 * mad).powi(2) - own).max(0.0).sqrt())
    });
    let not_judged = if !method_differences.is_empty() {
        Some("not judged (methods differ)")
    } else if machine_difference.is_some() {
        Some("not judged (different machines)")
    } else if common.len() < 4 {
        Some("not judged (fewer than 4 cells to measure drift)")
    } else {
        None
    };
    let cells = common
        .iter()
        .zip(&logs)
        .map(|((x, y), l)| {
            let dl = drift_ln.unwrap_or(0.0);
            let tau = between.unwrap_or(0.0);
            let verdict = match not_judged {
                Some(why) => why.to_string(),
                None if x.interval().is_some() || y.interval().is_some() => {
                    verdict_words(judge(y, x)).to_string()
                }
                None if x.runs.len() < MIN_RUNS_TO_JUDGE || y.runs.len() < MIN_RUNS_TO_JUDGE => {
                    verdict_words(Verdict::Unknown).to_string()
                }
                None => {
                    let sd = (log_mean_variance(x) + log_mean_variance(y) + tau * tau).sqrt();
                    if (l - dl).abs() > COMPARE_SIGMAS * sd {
                        "different".to_string()
                    } else {
                        "within the noise".to_string()
                    }
                }
            };
            ComparedCell {
                config: x.config.clone(),
                delay_ms: x.delay_ms,
                index: x.index.clone(),
                a_ns: x.ns_per_pass,
                b_ns: y.ns_per_pass,
                ratio: y.ns_per_pass / x.ns_per_pass,
                ratio_after_drift: (l - dl).exp(),
                verdict,
                migrations: [
                    format!("{}/{}", x.slot_migrations, x.passes),
                    format!("{}/{}", y.slot_migrations, y.passes),
                ],
            }
        })
        .collect();
    let only_a: Vec<&ResultRow> = a
        .results
        .iter()
        .filter(|r| b_cells.get(&r.config, r.delay_ms, &r.index).is_none())
        .collect();
    let only_b: Vec<&ResultRow> = b
        .results
        .iter()
        .filter(|r| a_cells.get(&r.config, r.delay_ms, &r.index).is_none())
        .collect();
    Comparison {
        a: a_name.to_string(),
        b: b_name.to_string(),
        method_differences,
        machine_difference,
        matched,
        ratios,
        drift: drift_ln.map(f64::exp),
        between_invocations: between,
        cells,
        only_a: unmatched(a, &only_a),
        only_b: unmatched(b, &only_b),
    }
}

/// Two reports side by side as text (see [`comparison`]).
pub fn compare(a: &Report, a_name: &str, b: &Report, b_name: &str) -> String {
    let c = comparison(a, a_name, b, b_name);
    let mut out = String::new();
    for (tag, r, name) in [("A", a, a_name), ("B", b, b_name)] {
        let kernel = match r.mode {
            Mode::Real => format!("kernel {}", r.kernel),
            Mode::Simulated => "modelled kernel".to_string(),
        };
        let _ = writeln!(
            out,
            "{tag} = {name}: {} on {}\n    {kernel} | {} B item, {} warm-up + {} timed passes, {} run(s){}",
            r.mode,
            r.machine.summary(),
            r.method.item_size,
            r.method.warmup,
            r.method.passes,
            r.method.runs,
            if r.complete { "" } else { " (partial)" }
        );
    }
    if !c.method_differences.is_empty() {
        let _ = writeln!(
            out,
            "\nMETHODS DIFFER: {}: absolute timings are not compared",
            c.method_differences.join(", ")
        );
    }
    if let Some(d) = &c.machine_difference {
        let _ = writeln!(
            out,
            "\ndifferent machines ({d}): only the within-run ratios are judged"
        );
    }
    if !c.ratios.is_empty() {
        let _ = writeln!(
            out,
            "\nwithin-run ratios (paired runs, 99% Welch test on log ratios), matched {}:",
            c.matched
        );
        let mut rows = vec![vec![
            "config A".to_string(),
            "config B".into(),
            "delay".into(),
            "ratio".into(),
            "A".into(),
            "B".into(),
            "verdict".into(),
        ]];
        for r in &c.ratios {
            rows.push(vec![
                r.a_config.clone(),
                r.b_config.clone(),
                fmt_ms(r.delay_ms),
                r.ratio.clone(),
                format!("{:.2}x", r.a),
                format!("{:.2}x", r.b),
                r.verdict.clone(),
            ]);
        }
        out.push_str(&align_with(&rows, 4));
    }
    if c.cells.is_empty() {
        let _ = writeln!(out, "\nno cell in common (absolute timings not compared)");
    } else {
        let drift = c.drift.unwrap_or(1.0);
        let _ = writeln!(
            out,
            "\ncells in common: drift B/A {drift:.2}x (median over {} cells: the change between \
             the\ninvocations, or of everything); each B/A is judged after it: different beyond \
             {COMPARE_SIGMAS:.0} x\n(its noise + a spread between invocations of {:.1}%):",
            c.cells.len(),
            100.0 * c.between_invocations.unwrap_or(0.0)
        );
        let mut rows = vec![vec![
            "config".to_string(),
            "delay".into(),
            "index".into(),
            "A ns".into(),
            "B ns".into(),
            "B/A".into(),
            "/drift".into(),
            "verdict".into(),
            "migr. A".into(),
            "migr. B".into(),
        ]];
        let (a_cells, b_cells) = (a.cells(), b.cells());
        for x in &c.cells {
            let cell = |cells: &Cells<'_>| {
                cells
                    .get(&x.config, x.delay_ms, &x.index)
                    .map_or("-".to_string(), cell_text)
            };
            rows.push(vec![
                x.config.clone(),
                fmt_ms(x.delay_ms),
                x.index.clone(),
                cell(&a_cells),
                cell(&b_cells),
                format!("{:.2}x", x.ratio),
                format!("{:.2}x", x.ratio_after_drift),
                x.verdict.clone(),
                x.migrations[0].clone(),
                x.migrations[1].clone(),
            ]);
        }
        out.push_str(&align_with(&rows, 3));
        let different = c.cells.iter().filter(|x| x.verdict == "different").count();
        let _ = writeln!(out, "{different} of {} cells different", c.cells.len());
    }
    if !c.only_a.is_empty() {
        let _ = writeln!(out, "\nonly in A: {}", c.only_a.join(", "));
    }
    if !c.only_b.is_empty() {
        let _ = writeln!(out, "\nonly in B: {}", c.only_b.join(", "));
    }
    out
}

/// Unmatched cells of `report`, grouped by configuration and delay: `8c-1l3 10ms` when
/// every index source of the report is among them, else `8c-1l3 10ms [cpu, mmcid]`.
fn unmatched(report: &Report, rows: &[&ResultRow]) -> Vec<String> {
    let (_, _, indices) = report.axes();
    let mut groups: Vec<(String, f64, Vec<String>)> = Vec::new();
    let mut at: std::collections::HashMap<(&str, u64), usize> = std::collections::HashMap::new();
    for r in rows {
        match at.get(&(r.config.as_str(), r.delay_ms.to_bits())) {
            Some(&k) => groups[k].2.push(r.index.clone()),
            None => {
                at.insert((r.config.as_str(), r.delay_ms.to_bits()), groups.len());
                groups.push((r.config.clone(), r.delay_ms, vec![r.index.clone()]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(c, d, list)| {
            if list.len() == indices.len() {
                format!("{c} {}", fmt_ms(d))
            } else {
                format!("{c} {} [{}]", fmt_ms(d), list.join(", "))
            }
        })
        .collect()
}

/// Everything printed for a report: header, tables (narrow), conclusions.
pub fn full_text(report: &Report) -> String {
    full_text_with(report, false)
}

/// [`full_text`] with the wide tables when `wide` ([`tables_wide`]).
pub fn full_text_with(report: &Report, wide: bool) -> String {
    let mut out = header(report);
    out.push_str(&if wide {
        tables_wide(report)
    } else {
        tables(report)
    });
    out.push_str(&conclusions(report));
    out
}
