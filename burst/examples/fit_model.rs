//! Fits the `epyc-9654` cost model on the published rows and judges it:
//!
//! ```text
//! cargo run --release -p percid-burst --example fit_model
//! ```
//!
//! Prints (as Markdown tables, quoted in the README): the fitted parameters of three fits
//! (both rows, `8c-1l3` only, `192c-24l3` only), the error of every published cell under
//! each, the leave-one-out calibration of the intervals ([`percid_burst::conformal`]: scores,
//! quantiles, coverage), the preset's predictions with raw 10th-90th percentile and calibrated
//! intervals for all four configurations, which parameter known exactly would shrink the widest
//! calibrated interval most (and whether `percid-burst calibrate` measures it), and a
//! one-at-a-time sensitivity table of the speedups.

use percid_burst::calibrate;
use percid_burst::conformal::{self, Quantity};
use percid_burst::fit::{self, Cell, FITTED, PUBLISHED, Traces, WITHHELD};
use percid_burst::machine::MachineDescription;
use percid_burst::{BurstError, CostModel};

const CONFIGS: &[&str] = &["8c-1l3", "192c-24l3", "24c-24l3", "384t-24l3"];
const DELAYS: &[u64] = &[200, 10];
const INDICES: &[&str] = &["cpu", "user-legacy", "mmcid", "user-task"];
const SEED: u64 = 1;

fn errors_table(title: &str, model: &CostModel, traces: &Traces, cells: &[Cell]) {
    println!("\n{title}\n");
    println!("| cell | measured ns | predicted ns | predicted / measured |");
    println!("|---|---:|---:|---:|");
    let mut worst: f64 = 1.0;
    for (c, p, r) in fit::errors(model, traces, cells) {
        worst = worst.max(r.max(1.0 / r));
        println!(
            "| {} {} ms {} | {:.0} | {:.0} | {:.2} |",
            c.config, c.delay_ms, c.index, c.ns, p, r
        );
    }
    println!("\nworst factor: {worst:.2}");
}

/// A value as printed: ns per pass without decimals, speedups with two.
fn fmt_v(p: &conformal::Prediction, v: f64) -> String {
    if p.quantity.is_speedup() {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// The table cells of `quantities` for one (configuration, delay): central [raw] {calibrated}.
fn prediction_cells(
    preds: &[conformal::Prediction],
    loo: &conformal::LooCalibration,
    config: &str,
    delay: u64,
    quantities: &[Quantity],
) -> String {
    let cols: Vec<String> = quantities
        .iter()
        .map(|&q| {
            let p = preds
                .iter()
                .find(|p| p.config == config && p.delay_ms == delay && p.quantity == q)
                .expect("every prediction is computed");
            let (lo, hi) = loo.interval(p);
            format!(
                "{} [{}-{}] {{{}-{}}}",
                fmt_v(p, p.central),
                fmt_v(p, p.low),
                fmt_v(p, p.high),
                fmt_v(p, lo),
                fmt_v(p, hi)
            )
        })
        .collect();
    cols.join(" | ")
}

fn ratio_cells(model: &CostModel, traces: &Traces, config: &str, delay: u64) -> Option<(f64, f64)> {
    let cpu = traces.predict(model, config, delay, "cpu")?;
    let legacy = traces.predict(model, config, delay, "user-legacy")?;
    let local = traces.predict(model, config, delay, "mmcid")?;
    Some((legacy / local, cpu / local))
}

fn main() -> Result<(), BurstError> {
    let started = std::time::Instant::now();
    let machine = MachineDescription::preset("epyc-9654").map_err(BurstError::Target)?;
    let preset = CostModel::from_machine(&machine).map_err(BurstError::Model)?;
    let traces = Traces::record(&machine, &preset, CONFIGS, DELAYS, INDICES, 5, SEED)?;
    let both = PUBLISHED.to_vec();
    let row8 = fit::row("8c-1l3");
    let row192 = fit::row("192c-24l3");

    // Every fit starts from the prior (not from the preset, which was fitted on both rows).
    let start = fit::prior(&preset);
    let fits = [
        ("both rows", fit::fit(&start, &traces, &both, FITTED)),
        ("8c-1l3 only", fit::fit(&start, &traces, &row8, FITTED)),
        ("192c-24l3 only", fit::fit(&start, &traces, &row192, FITTED)),
    ];
    println!("## Fitted parameters (every fit starts from the prior)\n");
    print!("| fit |");
    for p in FITTED {
        print!(" `{p}` |");
    }
    println!("\n|---|{}", "---:|".repeat(FITTED.len()));
    for (name, m) in [("prior", &start), ("preset", &preset)] {
        print!("| {name} |");
        for p in FITTED {
            print!(" {:.3} |", m.param(p).unwrap_or(f64::NAN));
        }
        println!();
    }
    for (name, m) in &fits {
        print!("| {name} |");
        for p in FITTED {
            print!(" {:.3} |", m.param(p).unwrap_or(f64::NAN));
        }
        println!();
    }

    errors_table(
        "## The preset (central values) on both published rows",
        &preset,
        &traces,
        &both,
    );
    errors_table("## Fit on both rows", &fits[0].1, &traces, &both);
    errors_table(
        "## Leave one out: fit on 8c-1l3, predict 192c-24l3",
        &fits[1].1,
        &traces,
        &row192,
    );
    errors_table(
        "## Leave one out: fit on 192c-24l3, predict 8c-1l3",
        &fits[2].1,
        &traces,
        &row8,
    );

    println!(
        "\n## Speedups of the published rows (measured vs the preset, and vs the leave-one-out fit that did not see the row)\n"
    );
    println!("| cell | measured legacy/local | preset | LOO | measured cpu/local | preset | LOO |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (config, loo) in [("8c-1l3", &fits[2].1), ("192c-24l3", &fits[1].1)] {
        for &d in DELAYS {
            let get = |i: &str| {
                PUBLISHED
                    .iter()
                    .find(|c| c.config == config && c.delay_ms == d && c.index == i)
                    .map_or(f64::NAN, |c| c.ns)
            };
            let (pl, pc) = ratio_cells(&preset, &traces, config, d).unwrap_or((f64::NAN, f64::NAN));
            let (ll, lc) = ratio_cells(loo, &traces, config, d).unwrap_or((f64::NAN, f64::NAN));
            println!(
                "| {config} {d} ms | {:.2} | {pl:.2} | {ll:.2} | {:.2} | {pc:.2} | {lc:.2} |",
                get("user-legacy") / get("mmcid"),
                get("cpu") / get("mmcid")
            );
        }
    }

    // Calibrated intervals: leave one configuration out, conformal widening.
    let loo = conformal::leave_one_out(&preset, &traces, SEED)?;
    println!(
        "\n## Calibrated intervals: leave one configuration out (fit on one row from the prior, predict the other)\n"
    );
    println!(
        "Score: how far the published value lies beyond the raw [p10-p90] of the fit that did not see it, ln scale (negative: inside).\n"
    );
    println!(
        "| fold | cell | measured | central | raw [p10-p90] | score | calibrated (other fold) | high/low |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (i, f) in loo.folds.iter().enumerate() {
        let other: Vec<f64> = loo.folds[1 - i].scores(false);
        let other_s: Vec<f64> = loo.folds[1 - i].scores(true);
        let qc = conformal::conformal_quantile(&other, conformal::NOMINAL);
        let qs = conformal::conformal_quantile(&other_s, conformal::NOMINAL);
        for (p, m) in &f.predictions {
            let q = if p.quantity.is_speedup() { qs } else { qc };
            let (lo, hi) = p.calibrated(q.as_ref());
            println!(
                "| {} -> {} | {} ms {} | {} | {} | [{}-{}] | {:+.2} | [{}-{}] | {:.2} |",
                f.fitted_on,
                f.predicted,
                p.delay_ms,
                p.quantity.name(),
                fmt_v(p, *m),
                fmt_v(p, p.central),
                fmt_v(p, p.low),
                fmt_v(p, p.high),
                conformal::score(*m, p.low, p.high),
                fmt_v(p, lo),
                fmt_v(p, hi),
                hi / lo
            );
        }
    }
    let show_q = |name: &str, q: Option<&conformal::Quantile>| match q {
        Some(q) => println!(
            "* {name}: {} leave-one-out scores, quantile = the rank-{} score = {:+.3} (widening x{:.2} each way); nominal {:.0}%, guaranteed {:.1}% if exchangeable (k/(n+1)), at most {:.1}% with {} scores",
            q.n,
            q.k,
            q.log_widen,
            q.factor(),
            q.nominal * 100.0,
            q.guaranteed() * 100.0,
            q.best_achievable() * 100.0,
            q.n
        ),
        None => println!("* {name}: too few scores for the nominal rate: raw intervals kept"),
    };
    println!("\nCalibration from both folds (used for the predictions below):\n");
    show_q("cells (ns per pass)", loo.cells.as_ref());
    show_q("speedups (legacy/local, cpu/local)", loo.speedups.as_ref());
    let (rc, rs) = loo.raw_coverage();
    let (ic, is) = loo.in_sample_coverage();
    let (cc, cs) = loo.cross_coverage();
    println!("\nCoverage of the published values under leave-one-out:\n");
    println!("| intervals | cells inside | speedups inside |");
    println!("|---|---:|---:|");
    println!(
        "| raw [p10-p90] | {}/{} | {}/{} |",
        rc.inside, rc.total, rs.inside, rs.total
    );
    println!(
        "| calibrated, widening from the other fold only (out of sample) | {}/{} | {}/{} |",
        cc.inside, cc.total, cs.inside, cs.total
    );
    println!(
        "| calibrated, widening from both folds (in sample: at least k of n by construction) | {}/{} | {}/{} |",
        ic.inside, ic.total, is.inside, is.total
    );

    println!(
        "\n## Predictions of the preset, central [raw 10th-90th percentile over {} draws, seed {SEED}] {{calibrated}}\n",
        preset.draws
    );
    let preds = conformal::predictions(&preset, &traces, CONFIGS, DELAYS, SEED)?;
    println!("| configuration | delay | cpu | legacy | cache-local | legacy/local | cpu/local |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &config in CONFIGS {
        for &d in DELAYS {
            let mark = if WITHHELD.contains(&config) {
                " (withheld)"
            } else {
                ""
            };
            let cols = prediction_cells(
                &preds,
                &loo,
                config,
                d,
                &[
                    Quantity::Cell("cpu"),
                    Quantity::Cell("user-legacy"),
                    Quantity::Cell("mmcid"),
                    Quantity::LegacyOverLocal,
                    Quantity::CpuOverLocal,
                ],
            );
            println!("| {config}{mark} | {d} ms | {cols} |");
        }
    }
    println!(
        "\n## user-task (Linux 6.19+ per-task ownership) on the preset: no published value, so never scored; widened with the cells' and the speedups' quantiles\n"
    );
    println!("| configuration | delay | user-task | task/local |");
    println!("|---|---:|---:|---:|");
    for &config in CONFIGS {
        for &d in DELAYS {
            let quantities = [Quantity::Cell("user-task"), Quantity::TaskOverLocal];
            let cols = prediction_cells(&preds, &loo, config, d, &quantities);
            println!("| {config} | {d} ms | {cols} |");
        }
    }
    // The widths below are over the quantities with a published counterpart (user-task
    // has none), so that they compare with the coverage tables above.
    let preds: Vec<_> = preds
        .into_iter()
        .filter(|p| {
            !matches!(
                p.quantity,
                Quantity::Cell("user-task") | Quantity::TaskOverLocal
            )
        })
        .collect();
    let ratios: Vec<f64> = preds
        .iter()
        .map(|p| {
            let (lo, hi) = loo.interval(p);
            hi / lo
        })
        .collect();
    let wide = ratios.iter().filter(|r| **r > 3.0).count();
    let widest = preds
        .iter()
        .zip(&ratios)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("predictions");
    println!(
        "\ncalibrated high/low: at most 3 for {} of {} predictions; widest {:.2} ({} {} ms {})",
        ratios.len() - wide,
        ratios.len(),
        widest.1,
        widest.0.config,
        widest.0.delay_ms,
        widest.0.quantity.name()
    );

    // Which figure, measured (range pinned to its central value), shrinks the widest
    // calibrated withheld interval most.
    let widest_withheld = preds
        .iter()
        .filter(|p| WITHHELD.contains(&p.config))
        .max_by(|a, b| {
            let r = |p: &conformal::Prediction| {
                let (lo, hi) = loo.interval(p);
                hi / lo
            };
            r(a).total_cmp(&r(b))
        })
        .expect("withheld predictions");
    let (wlo, whi) = loo.interval(widest_withheld);
    println!(
        "\n## What a measurement would shrink: the widest calibrated withheld interval, {} {} ms {} ({}-{}, high/low {:.2}), with one parameter known exactly (its range pinned to the central value)\n",
        widest_withheld.config,
        widest_withheld.delay_ms,
        widest_withheld.quantity.name(),
        fmt_v(widest_withheld, wlo),
        fmt_v(widest_withheld, whi),
        whi / wlo
    );
    println!("| parameter | `calibrate` measures it | calibrated interval | high/low |");
    println!("|---|---|---:|---:|");
    let mut rows = Vec::new();
    for name in preset.ranges.keys() {
        let mut m = preset.clone();
        let v = m.param(name).unwrap_or(f64::NAN);
        if let Some(r) = m.ranges.get_mut(name) {
            // A degenerate range keeps the draws of every other parameter unchanged.
            *r = [v, v];
        }
        let p = conformal::predictions(
            &m,
            &traces,
            &[widest_withheld.config],
            &[widest_withheld.delay_ms],
            SEED,
        )?
        .into_iter()
        .find(|p| p.quantity == widest_withheld.quantity)
        .expect("the same prediction");
        let (lo, hi) = loo.interval(&p);
        rows.push((hi / lo, name.clone(), lo, hi, p));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (r, name, lo, hi, p) in &rows {
        let measured = if calibrate::MEASURABLE.contains(&name.as_str()) {
            "yes"
        } else {
            "no"
        };
        println!(
            "| `{name}` | {measured} | {}-{} | {r:.2} |",
            fmt_v(p, *lo),
            fmt_v(p, *hi)
        );
    }
    if let Some((r, name, ..)) = rows
        .iter()
        .find(|r| calibrate::MEASURABLE.contains(&r.1.as_str()))
    {
        println!(
            "\nThe measured figure that shrinks it most: `{name}` (high/low {:.2} -> {r:.2}).",
            whi / wlo
        );
    }

    println!(
        "\n## Sensitivity: each ranged parameter at the ends of its range, the others central\n"
    );
    println!("Largest change of a speedup, as a factor (`x1.00` = no effect), over the 8 cells:\n");
    println!(
        "| parameter | range | legacy/local: max factor (cell) | cpu/local: max factor (cell) |"
    );
    println!("|---|---|---:|---:|");
    let base: Vec<_> = CONFIGS
        .iter()
        .flat_map(|c| DELAYS.iter().map(move |d| (*c, *d)))
        .map(|(c, d)| {
            (
                (c, d),
                ratio_cells(&preset, &traces, c, d).unwrap_or((f64::NAN, f64::NAN)),
            )
        })
        .collect();
    // Per cell: (parameter, factor) of the largest move of each speedup.
    let mut per_cell: Vec<[(f64, String); 2]> = vec![Default::default(); base.len()];
    let show = |b: &(f64, String)| {
        if b.1.is_empty() || b.0 < 1.005 {
            "x1.00 (-)".to_string()
        } else {
            format!("x{:.2} ({})", b.0, b.1)
        }
    };
    for (name, [lo, hi]) in &preset.ranges {
        let mut best = [(1.0f64, String::new()), (1.0f64, String::new())];
        for v in [*lo, *hi] {
            let mut m = preset.clone();
            if let Some(x) = m.param_mut(name) {
                *x = v;
            }
            for (cell, ((c, d), (bl, bc))) in base.iter().enumerate() {
                let Some((l, cl)) = ratio_cells(&m, &traces, c, *d) else {
                    continue;
                };
                for (k, (new, old)) in [(l, *bl), (cl, *bc)].into_iter().enumerate() {
                    let f = (new / old).max(old / new);
                    if f > best[k].0 {
                        best[k] = (f, format!("{c} {d} ms"));
                    }
                    if f > per_cell[cell][k].0.max(1.0) {
                        per_cell[cell][k] = (f, format!("`{name}`"));
                    }
                }
            }
        }
        println!(
            "| `{name}` | {lo}-{hi} | {} | {} |",
            show(&best[0]),
            show(&best[1])
        );
    }
    println!("\nThe parameter that moves each cell most:\n");
    println!("| cell | legacy/local | cpu/local |");
    println!("|---|---|---|");
    for (((c, d), _), b) in base.iter().zip(&per_cell) {
        println!("| {c} {d} ms | {} | {} |", show(&b[0]), show(&b[1]));
    }
    eprintln!("fit_model: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
