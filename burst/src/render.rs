//! Text outputs of a report: the tables, the noise marks, the conclusions, and the side by
//! side comparison of two reports.
//!
//! **Noise mark.** A cell whose spread (sample standard deviation of its run means, in
//! percent of their mean) is above [`NOISE_THRESHOLD_PERCENT`] (25%) is marked `~`: its
//! timing is unreliable.
//!
//! **Within the noise or not** ([`judge`]): two cells A and B with `nA`, `nB` runs, run means
//! of mean `mA`, `mB` and sample standard deviations `sA`, `sB`. Their difference is *larger
//! than the noise* when `|mA - mB| > 2 x sqrt(sA²/nA + sB²/nB)` (twice the combined standard
//! error: roughly a 95% two-sided test), otherwise *within the noise*. With fewer than 3 runs
//! on either side the noise is not judged. When either cell has an interval (`ns_per_pass_low` /
//! `_high`, from a model), the intervals are compared instead (a cell without one counts as
//! its mean): apart means *beyond the intervals*, overlapping *within the intervals*.

use std::fmt::Write as _;

use crate::fmt_ms;
use crate::report::{Mode, Report, ResultRow};
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

/// Compares the timings of two cells A and B with `nA`, `nB` runs, run means of mean `mA`,
/// `mB` and sample standard deviations `sA`, `sB`: the difference is larger than the noise
/// when `|mA - mB| > 2 x sqrt(sA²/nA + sB²/nB)`, within it otherwise; not judged with fewer
/// than [`MIN_RUNS_TO_JUDGE`] runs on either side. When either cell has an interval, the
/// intervals are compared instead (a cell without one counts as its mean).
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
    let ma = mean(a.runs.iter().copied());
    let mb = mean(b.runs.iter().copied());
    let d = (ma - mb).abs();
    if d == 0.0 {
        return Verdict::Equal;
    }
    let (na, nb) = (a.runs.len(), b.runs.len());
    if na < MIN_RUNS_TO_JUDGE || nb < MIN_RUNS_TO_JUDGE {
        return Verdict::Unknown;
    }
    let (sa, sb) = (stddev(&a.runs), stddev(&b.runs));
    let se = (sa * sa / na as f64 + sb * sb / nb as f64).sqrt();
    if d > 2.0 * se {
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
        "burst ({}) on {} | kernel {} | {} B item, {} warm-up + {} timed passes, {} run(s), seed {}",
        report.mode,
        report.machine.summary(),
        report.kernel,
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

/// The tables: ns per pass (with spreads, marks and speedups) and the locality statistics;
/// then the noise legend and the skipped sources. See [`conclusions`] for what follows.
pub fn tables(report: &Report) -> String {
    let (configs, delays, indices) = report.axes();
    let mut out = String::new();
    let has = |i: &str| indices.iter().any(|x| x == i);
    let speedups: Vec<_> = SPEEDUPS
        .iter()
        .filter(|(_, a, b)| has(a) && has(b))
        .collect();
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
                    row.push(report.find(c, *d, i).map_or("-".into(), cell_text));
                }
                for (_, a, b) in &speedups {
                    row.push(match (report.find(c, *d, a), report.find(c, *d, b)) {
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
                    row.push(report.find(c, *d, i).map_or("-".into(), |r| {
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
    if configs.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nconclusions (a timing difference is larger than the noise when the means differ by \
         more than twice their combined standard error; see README, \"The output\"):"
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
            let rows: Vec<&ResultRow> = indices
                .iter()
                .filter_map(|i| report.find(c, *d, i))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let at = if clauses.is_empty() { "at" } else { "At" };
            clauses.push(format!(
                "{at} {}, {}",
                fmt_ms(*d),
                delay_clause(report, c, *d, &rows)
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

/// `X, Y and Z`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn delay_clause(report: &Report, config: &str, delay: f64, rows: &[&ResultRow]) -> String {
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
        let (Some(x), Some(y)) = (report.find(config, delay, a), report.find(config, delay, b))
        else {
            continue;
        };
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

/// Two reports side by side, cell by cell (matched by configuration, delay and index), with
/// the ratio B/A and whether the difference is beyond the noise; unmatched cells are listed.
pub fn compare(a: &Report, a_name: &str, b: &Report, b_name: &str) -> String {
    let mut out = String::new();
    for (tag, r, name) in [("A", a, a_name), ("B", b, b_name)] {
        let kernel = match r.mode {
            Mode::Real => format!("kernel {}", r.kernel),
            Mode::Simulated => "modelled kernel".to_string(),
        };
        let _ = writeln!(
            out,
            "{tag} = {name}: {} on {} | {kernel} | {} warm-up + {} timed passes, {} run(s){}",
            r.mode,
            r.machine.summary(),
            r.method.warmup,
            r.method.passes,
            r.method.runs,
            if r.complete { "" } else { " (partial)" }
        );
    }
    let mut rows = vec![vec![
        "config".to_string(),
        "delay".into(),
        "index".into(),
        "A ns/pass".into(),
        "B ns/pass".into(),
        "B/A".into(),
        "difference".into(),
        "migrations A".into(),
        "migrations B".into(),
    ]];
    let mut only_a = Vec::new();
    for ra in &a.results {
        match b.find(&ra.config, ra.delay_ms, &ra.index) {
            Some(rb) => rows.push(vec![
                ra.config.clone(),
                fmt_ms(ra.delay_ms),
                ra.index.clone(),
                cell_text(ra),
                cell_text(rb),
                ratio_text(rb, ra),
                judge(rb, ra).words().to_string(),
                format!("{}/{}", ra.slot_migrations, ra.passes),
                format!("{}/{}", rb.slot_migrations, rb.passes),
            ]),
            None => only_a.push(ra),
        }
    }
    let only_b: Vec<&ResultRow> = b
        .results
        .iter()
        .filter(|rb| a.find(&rb.config, rb.delay_ms, &rb.index).is_none())
        .collect();
    let (only_a, only_b) = (unmatched(a, &only_a), unmatched(b, &only_b));
    if rows.len() > 1 {
        out.push('\n');
        out.push_str(&align_with(&rows, 3));
    } else {
        let _ = writeln!(out, "\nno cell in common");
    }
    if rows.len() > 1 && (a.results.iter().chain(&b.results)).any(is_noisy) {
        let _ = writeln!(
            out,
            "\n~ spread above {NOISE_THRESHOLD_PERCENT:.0}% of the mean: that timing is unreliable"
        );
    }
    if !only_a.is_empty() {
        let _ = writeln!(out, "\nonly in A: {}", only_a.join(", "));
    }
    if !only_b.is_empty() {
        let _ = writeln!(out, "\nonly in B: {}", only_b.join(", "));
    }
    out
}

/// Unmatched cells of `report`, grouped by configuration and delay: `8c-1l3 10ms` when
/// every index source of the report is among them, else `8c-1l3 10ms [cpu, mmcid]`.
fn unmatched(report: &Report, rows: &[&ResultRow]) -> Vec<String> {
    let (_, _, indices) = report.axes();
    let mut groups: Vec<(String, f64, Vec<String>)> = Vec::new();
    for r in rows {
        match groups
            .iter_mut()
            .find(|(c, d, _)| *c == r.config && *d == r.delay_ms)
        {
            Some((_, _, list)) => list.push(r.index.clone()),
            None => groups.push((r.config.clone(), r.delay_ms, vec![r.index.clone()])),
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

/// Everything printed for a report: header, tables, conclusions.
pub fn full_text(report: &Report) -> String {
    let mut out = header(report);
    out.push_str(&tables(report));
    out.push_str(&conclusions(report));
    out
}
