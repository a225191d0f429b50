//! Calibrated intervals: the parameter intervals widened by the model-form error measured by
//! leaving one published configuration out.
//!
//! ## Method (conformalized intervals on a log scale)
//!
//! The simulator's `[p10, p90]` comes from the ranges of the parameters alone: it carries no
//! error of the model's form. To add that error:
//!
//! 1. **Leave one configuration out** ([`leave_one_out`]): fit on one published row (starting
//!    from [`PRIOR`](super::fit::PRIOR), as `fit_model` does) and predict the other row's
//!    cells, each with its central value and its raw `[p10, p90]` over the parameter draws (the
//!    ranges of the preset, widened to contain the fitted values); the same for the two
//!    speedups (legacy/local and cpu/local, taken draw by draw).
//! 2. **Score** ([`score`]): how far, on a log scale, the published value lies beyond the raw
//!    interval, `max(ln(low / measured), ln(measured / high))` (negative inside). This is the
//!    score of conformalized quantile regression (Romano, Patterson and Candès, 2019) applied
//!    to `ln(ns)`: it widens the parameter interval by the model-form error it misses.
//! 3. **Quantile** ([`conformal_quantile`]): of `n` scores, the `k`-th smallest with
//!    `k = ceil((n + 1) * nominal)`; if the scores and a new case were exchangeable, the
//!    interval `[low * e^-q, high * e^q]` would contain the new case with probability at least
//!    `k / (n + 1)`. No `k` gives more than `n / (n + 1)`; when `k > n` no finite widening
//!    reaches the nominal rate and there is no calibration ([`Quantile`] is `None`). The
//!    widening is never negative: an interval is only ever widened.
//! 4. **Widen** ([`widen`]): each prediction's raw interval, by the quantile of its kind
//!    (cells: ns per pass; speedups: the two ratios).
//!
//! ## Limits (two configurations)
//!
//! Two published configurations give two folds: 12 cell scores (6 per fold) and 8 speedup
//! scores (4 per fold). At the nominal 80% (the coverage `[p10, p90]` claims) the cell quantile
//! is the 11th of 12 (guarantee 11/13 = 84.6% if exchangeable) and the speedup quantile is the
//! largest of 8 (8/9 = 88.9%). The scores are not exchangeable with the withheld
//! configurations: the six scores of a fold share one fit, so there are really two
//! independent draws of the model-form error, and the withheld configurations (24 L3 domains
//! with one core each, and SMT siblings) are extrapolations neither row covers. The stated
//! rate is therefore nominal. [`LooCalibration::cross_coverage`] measures it honestly on the
//! published rows: the widening is computed from one fold's scores and applied to the other
//! fold's predictions (6 cells and 4 speedups each, quantile the largest of 6 or 4, 85.7% and
//! 80% if exchangeable).

use super::fit::{self, Traces};
use super::{CostModel, percentile_interval};
use crate::BurstError;

/// The coverage the simulator's `[p10, p90]` claims, and the calibration's nominal rate.
pub const NOMINAL: f64 = 0.8;

/// How far, on a log scale, `measured` lies beyond `[low, high]`: positive outside, negative
/// inside, zero on an end. Non-positive or non-finite inputs give `+inf` (never covered).
pub fn score(measured: f64, low: f64, high: f64) -> f64 {
    if !(measured > 0.0 && low > 0.0 && high >= low && high.is_finite()) {
        return f64::INFINITY;
    }
    (low / measured).ln().max((measured / high).ln())
}

/// `[low, high]` widened by `log_widen` on a log scale: `[low * e^-w, high * e^w]`
/// (`w < 0` counts as 0: an interval is never narrowed).
pub fn widen(low: f64, high: f64, log_widen: f64) -> (f64, f64) {
    let w = log_widen.max(0.0).exp();
    (low / w, high * w)
}

/// A conformal quantile of `n` scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantile {
    /// Scores.
    pub n: usize,
    /// Rank used (1-based): `ceil((n + 1) * nominal)`.
    pub k: usize,
    /// The nominal coverage asked for.
    pub nominal: f64,
    /// The widening, `max(0, k-th smallest score)`, on a log scale.
    pub log_widen: f64,
}

impl Quantile {
    /// The coverage guaranteed if the scores and a new case were exchangeable: `k / (n + 1)`.
    pub fn guaranteed(&self) -> f64 {
        self.k as f64 / (self.n + 1) as f64
    }

    /// The most any rank can guarantee with `n` scores: `n / (n + 1)`.
    pub fn best_achievable(&self) -> f64 {
        self.n as f64 / (self.n + 1) as f64
    }

    /// The widening as a factor (`e^log_widen`, at least 1).
    pub fn factor(&self) -> f64 {
        self.log_widen.max(0.0).exp()
    }
}

/// The conformal quantile of `scores` for coverage `nominal` in (0, 1): `None` when there are
/// too few scores for the rate (`ceil((n + 1) * nominal) > n`), a score is NaN, or `nominal`
/// is outside (0, 1).
pub fn conformal_quantile(scores: &[f64], nominal: f64) -> Option<Quantile> {
    if !(nominal > 0.0 && nominal < 1.0) || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let n = scores.len();
    // The small tolerance keeps (n + 1) * 0.8 = 4.000...02 at rank 4.
    let k = (((n + 1) as f64 * nominal) - 1e-9).ceil().max(1.0) as usize;
    if k > n {
        return None;
    }
    let mut s = scores.to_vec();
    s.sort_by(f64::total_cmp);
    Some(Quantile {
        n,
        k,
        nominal,
        log_widen: s[k - 1].max(0.0),
    })
}

/// What a prediction is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// ns per pass of an index source (`cpu`, `user-legacy`, `mmcid`).
    Cell(&'static str),
    /// legacy / cache-local.
    LegacyOverLocal,
    /// cpu / cache-local.
    CpuOverLocal,
    /// per-task (`user-task`, Linux 6.19+) / cache-local: no published value, so it is
    /// never scored; its interval is widened with the speedups' quantile.
    TaskOverLocal,
}

impl Quantity {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Quantity::Cell(i) => i,
            Quantity::LegacyOverLocal => "legacy/local",
            Quantity::CpuOverLocal => "cpu/local",
            Quantity::TaskOverLocal => "task/local",
        }
    }

    /// Whether this is a speedup (calibrated with the speedup quantile).
    pub fn is_speedup(self) -> bool {
        !matches!(self, Quantity::Cell(_))
    }
}

/// A prediction of one quantity of one cell: central value and raw `[p10, p90]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Configuration.
    pub config: &'static str,
    /// Delay, ms.
    pub delay_ms: u64,
    /// What is predicted.
    pub quantity: Quantity,
    /// Central value (the model's central parameters).
    pub central: f64,
    /// 10th percentile over the draws (at most `central`).
    pub low: f64,
    /// 90th percentile over the draws (at least `central`).
    pub high: f64,
}

impl Prediction {
    /// The interval widened by `q` (none: the raw interval).
    pub fn calibrated(&self, q: Option<&Quantile>) -> (f64, f64) {
        match q {
            Some(q) => widen(self.low, self.high, q.log_widen),
            None => (self.low, self.high),
        }
    }
}

/// The predictions of `configs` x `delays` by `model` (cells of the three published index
/// sources and the two speedups), central and raw `[p10, p90]` over `model`'s draws seeded by
/// `seed` (the same draws for every cell; the speedups draw by draw).
pub fn predictions(
    model: &CostModel,
    traces: &Traces,
    configs: &[&'static str],
    delays: &[u64],
    seed: u64,
) -> Result<Vec<Prediction>, BurstError> {
    let mut out = Vec::new();
    for &config in configs {
        for &delay_ms in delays {
            let get = |index: &str| -> Result<(f64, Vec<f64>), BurstError> {
                let central = traces.predict(model, config, delay_ms, index);
                let draws = traces.draw_means(model, config, delay_ms, index, seed);
                match (central, draws) {
                    (Some(c), Some(d)) => Ok((c, d)),
                    _ => Err(BurstError::Usage(format!(
                        "no recorded trace (or a pass out of bounds) for {config} {delay_ms} ms {index}"
                    ))),
                }
            };
            let cpu = get("cpu")?;
            let legacy = get("user-legacy")?;
            let local = get("mmcid")?;
            // `user-task` where the traces have it (it has no published value: predicted,
            // never scored).
            let task = if traces
                .predict(model, config, delay_ms, "user-task")
                .is_some()
            {
                Some(get("user-task")?)
            } else {
                None
            };
            let mut push = |quantity, central: f64, draws: &[f64]| {
                let (low, high) = percentile_interval(central, draws).unwrap_or((central, central));
                out.push(Prediction {
                    config,
                    delay_ms,
                    quantity,
                    central,
                    low,
                    high,
                });
            };
            for (index, (c, d)) in [("cpu", &cpu), ("user-legacy", &legacy), ("mmcid", &local)] {
                push(Quantity::Cell(index), *c, d);
            }
            let ratio = |a: &(f64, Vec<f64>), b: &(f64, Vec<f64>)| {
                let r: Vec<f64> = a.1.iter().zip(&b.1).map(|(x, y)| x / y).collect();
                (a.0 / b.0, r)
            };
            let (c, d) = ratio(&legacy, &local);
            push(Quantity::LegacyOverLocal, c, &d);
            let (c, d) = ratio(&cpu, &local);
            push(Quantity::CpuOverLocal, c, &d);
            if let Some(task) = &task {
                push(Quantity::Cell("user-task"), task.0, &task.1);
                let (c, d) = ratio(task, &local);
                push(Quantity::TaskOverLocal, c, &d);
            }
        }
    }
    Ok(out)
}

/// The published value of a prediction's quantity (`None`: not published).
pub fn measured(p: &Prediction) -> Option<f64> {
    let get = |index: &str| {
        fit::PUBLISHED
            .iter()
            .find(|c| c.config == p.config && c.delay_ms == p.delay_ms && c.index == index)
            .map(|c| c.ns)
    };
    match p.quantity {
        Quantity::Cell(i) => get(i),
        Quantity::LegacyOverLocal => Some(get("user-legacy")? / get("mmcid")?),
        Quantity::CpuOverLocal => Some(get("cpu")? / get("mmcid")?),
        Quantity::TaskOverLocal => None,
    }
}

/// One fold: a fit on one published row, predicting the other.
#[derive(Debug, Clone)]
pub struct Fold {
    /// The row fitted on.
    pub fitted_on: &'static str,
    /// The row predicted.
    pub predicted: &'static str,
    /// The fitted model (ranges: the preset's, widened to contain the fitted values).
    pub model: CostModel,
    /// The predictions of the left-out row, with the published value.
    pub predictions: Vec<(Prediction, f64)>,
}

impl Fold {
    /// The scores of this fold's cells (`speedups == false`) or speedups.
    pub fn scores(&self, speedups: bool) -> Vec<f64> {
        self.predictions
            .iter()
            .filter(|(p, _)| p.quantity.is_speedup() == speedups)
            .map(|(p, m)| score(*m, p.low, p.high))
            .collect()
    }
}

/// The leave-one-configuration-out calibration on the published rows.
#[derive(Debug, Clone)]
pub struct LooCalibration {
    /// The two folds (fit on `8c-1l3` predict `192c-24l3`, and the reverse).
    pub folds: Vec<Fold>,
    /// The cell quantile over both folds' cell scores (`None`: too few scores).
    pub cells: Option<Quantile>,
    /// The speedup quantile over both folds' speedup scores.
    pub speedups: Option<Quantile>,
}

/// Coverage counts: published values inside an interval, and how many were judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// Inside.
    pub inside: usize,
    /// Judged.
    pub total: usize,
}

impl Coverage {
    fn add(&mut self, inside: bool) {
        self.inside += inside as usize;
        self.total += 1;
    }
}

fn inside(m: f64, (low, high): (f64, f64)) -> bool {
    // A relative tolerance for the printing and summing of the same figure.
    m >= low * (1.0 - 1e-9) && m <= high * (1.0 + 1e-9)
}

/// Fits each published row from the prior of `preset` and predicts the other (see the
/// [module docs](self)); `traces` must hold both published rows at both delays for the three
/// index sources; `seed` seeds the draws.
pub fn leave_one_out(
    preset: &CostModel,
    traces: &Traces,
    seed: u64,
) -> Result<LooCalibration, BurstError> {
    let start = fit::prior(preset);
    let rows = ["8c-1l3", "192c-24l3"];
    let mut folds = Vec::new();
    for (on, predicted) in [(rows[0], rows[1]), (rows[1], rows[0])] {
        let model = fit::fit(&start, traces, &fit::row(on), fit::FITTED);
        let delays: Vec<u64> = {
            let mut d: Vec<u64> = fit::row(predicted).iter().map(|c| c.delay_ms).collect();
            d.dedup();
            d
        };
        let predictions = predictions(&model, traces, &[predicted], &delays, seed)?
            .into_iter()
            .filter_map(|p| measured(&p).map(|m| (p, m)))
            .collect();
        folds.push(Fold {
            fitted_on: on,
            predicted,
            model,
            predictions,
        });
    }
    let all =
        |speedups: bool| -> Vec<f64> { folds.iter().flat_map(|f| f.scores(speedups)).collect() };
    Ok(LooCalibration {
        cells: conformal_quantile(&all(false), NOMINAL),
        speedups: conformal_quantile(&all(true), NOMINAL),
        folds,
    })
}

impl LooCalibration {
    /// The quantile for a quantity.
    pub fn quantile(&self, q: Quantity) -> Option<&Quantile> {
        if q.is_speedup() {
            self.speedups.as_ref()
        } else {
            self.cells.as_ref()
        }
    }

    /// A prediction's calibrated interval.
    pub fn interval(&self, p: &Prediction) -> (f64, f64) {
        p.calibrated(self.quantile(p.quantity))
    }

    /// Published values inside the raw `[p10, p90]` of their fold: `(cells, speedups)`.
    pub fn raw_coverage(&self) -> (Coverage, Coverage) {
        let mut c = (Coverage::default(), Coverage::default());
        for f in &self.folds {
            for (p, m) in &f.predictions {
                let slot = if p.quantity.is_speedup() {
                    &mut c.1
                } else {
                    &mut c.0
                };
                slot.add(inside(*m, (p.low, p.high)));
            }
        }
        c
    }

    /// Published values inside the calibrated intervals, the widening computed from all the
    /// scores, these included (in-sample: at least `k` of `n` by construction).
    pub fn in_sample_coverage(&self) -> (Coverage, Coverage) {
        let mut c = (Coverage::default(), Coverage::default());
        for f in &self.folds {
            for (p, m) in &f.predictions {
                let slot = if p.quantity.is_speedup() {
                    &mut c.1
                } else {
                    &mut c.0
                };
                slot.add(inside(*m, self.interval(p)));
            }
        }
        c
    }

    /// Published values inside the calibrated intervals when each fold is widened by the
    /// quantile of the *other* fold's scores only (out of sample; a fold whose partner has too
    /// few scores for the nominal rate keeps its raw interval and counts as such).
    pub fn cross_coverage(&self) -> (Coverage, Coverage) {
        let mut c = (Coverage::default(), Coverage::default());
        for (i, f) in self.folds.iter().enumerate() {
            let other: Vec<&Fold> = self
                .folds
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, g)| g)
                .collect();
            let q = |speedups: bool| {
                let s: Vec<f64> = other.iter().flat_map(|g| g.scores(speedups)).collect();
                conformal_quantile(&s, NOMINAL)
            };
            let (qc, qs) = (q(false), q(true));
            for (p, m) in &f.predictions {
                let (slot, q) = if p.quantity.is_speedup() {
                    (&mut c.1, qs.as_ref())
                } else {
                    (&mut c.0, qc.as_ref())
                };
                slot.add(inside(*m, p.calibrated(q)));
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_zero_on_the_ends_negative_inside_positive_outside() {
        assert_eq!(score(10.0, 10.0, 20.0), 0.0);
        assert_eq!(score(20.0, 10.0, 20.0), 0.0);
        assert!(score(14.0, 10.0, 20.0) < 0.0);
        assert!((score(40.0, 10.0, 20.0) - 2f64.ln()).abs() < 1e-12);
        assert!((score(5.0, 10.0, 20.0) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(score(0.0, 10.0, 20.0), f64::INFINITY);
        assert_eq!(score(5.0, 10.0, f64::NAN), f64::INFINITY);
    }

    #[test]
    fn quantile_rank_and_limits() {
        let s: Vec<f64> = (1..=12).map(|i| i as f64 / 10.0).collect();
        let q = conformal_quantile(&s, 0.8).unwrap();
        assert_eq!((q.n, q.k), (12, 11));
        assert!((q.log_widen - 1.1).abs() < 1e-12);
        assert!((q.guaranteed() - 11.0 / 13.0).abs() < 1e-12);
        assert!((q.best_achievable() - 12.0 / 13.0).abs() < 1e-12);
        // Four scores reach 80% exactly with the largest; three cannot.
        assert_eq!(conformal_quantile(&s[..4], 0.8).unwrap().k, 4);
        assert_eq!(conformal_quantile(&s[..3], 0.8), None);
        assert_eq!(conformal_quantile(&[], 0.8), None);
        assert_eq!(conformal_quantile(&s, 1.0), None);
        assert_eq!(
            conformal_quantile(&[f64::NAN, 1.0, 2.0, 3.0, 4.0], 0.5),
            None
        );
        // Every score inside: no widening, never a narrowing.
        assert_eq!(
            conformal_quantile(&[-1.0, -0.5, -0.2, -0.1], 0.8)
                .unwrap()
                .log_widen,
            0.0
        );
    }

    #[test]
    fn widening_is_monotone_and_contains_the_raw_interval() {
        let s = [
            0.05, -0.1, 0.3, 0.2, 0.6, 0.01, 0.15, 0.4, -0.3, 0.25, 0.5, 0.1,
        ];
        let mut last = (100.0, 200.0);
        for nominal in [0.1, 0.3, 0.5, 0.7, 0.8, 0.9] {
            let q = conformal_quantile(&s, nominal).unwrap();
            let (lo, hi) = widen(100.0, 200.0, q.log_widen);
            assert!(lo <= 100.0 && hi >= 200.0, "{nominal}: narrowed");
            assert!(lo <= last.0 && hi >= last.1, "{nominal}: not monotone");
            last = (lo, hi);
        }
        assert_eq!(widen(100.0, 200.0, -1.0), (100.0, 200.0));
        // Scores measured against an interval are covered once widened by their quantile.
        let (lo, hi) = widen(100.0, 200.0, 0.5);
        for m in [100.0 * (-0.5f64).exp(), 200.0 * 0.5f64.exp()] {
            assert!(score(m, 100.0, 200.0) <= 0.5 + 1e-12);
            assert!(inside(m, (lo, hi)));
        }
    }
}
