//! The SVG chart of a report (`plotters`, feature `svg`): two panels over the same groups
//! (one per configuration and delay), one bar per index source.
//!
//! * Top: ns per pass on a logarithmic axis (labelled as such; ticks `500`, `1k`, `20k`),
//!   with an error bar per bar: the interval when the cell has one, otherwise the mean ± the
//!   sample standard deviation of the run means. A `~` above a bar marks a spread above the
//!   noise threshold.
//! * Bottom: slot migrations in percent of the timed passes, the locality statistic that does
//!   not depend on timing.

use plotters::prelude::*;

use crate::fmt_ms;
use crate::render::{NOISE_THRESHOLD_PERCENT, is_noisy};
use crate::report::{Mode, Report};
use crate::stats::stddev;

/// `950`, `1k`, `1.5k`, `20k`, `1.2M`: short tick labels.
pub fn fmt_tick(v: f64) -> String {
    let (scaled, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = if (scaled - scaled.round()).abs() < 1e-9 {
        format!("{scaled:.0}")
    } else {
        format!("{scaled:.1}")
    };
    format!("{text}{suffix}")
}

/// Ticks 1, 2, 5 x 10^k within `[lo, hi]`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Renders the chart as SVG text.
pub fn render(report: &Report) -> Result<String, String> {
    let (configs, delays, indices) = report.axes();
    let by_cell = report.cells();
    let groups: Vec<(String, f64)> = configs
        .iter()
        .flat_map(|(c, _)| delays.iter().map(move |d| (c.clone(), *d)))
        .filter(|(c, d)| indices.iter().any(|i| by_cell.get(c, *d, i).is_some()))
        .collect();
    if groups.is_empty() {
        return Err("no results to draw".to_string());
    }
    // The extent of bars and error bars.
    let mut max = 1.0f64;
    let mut min = f64::MAX;
    for r in &report.results {
        let (l, h) = r.interval().unwrap_or_else(|| {
            let s = stddev(&r.runs);
            (r.ns_per_pass - s, r.ns_per_pass + s)
        });
        max = max.max(h).max(r.ns_per_pass);
        for v in [l, r.ns_per_pass] {
            if v > 0.0 {
                min = min.min(v);
            }
        }
    }
    if min == f64::MAX {
        min = 1.0;
    }
    let lo = 10f64.powf((min / 1.5).max(1.0).log10().floor());
    let hi = max * 2.0;
    let ticks = log_ticks(lo, hi);
    let ng = groups.len();
    let width = (220 + 130 * ng as u32).max(900);
    let height = 900u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let what = match report.mode {
            Mode::Real => "measured",
            Mode::Simulated => "simulated",
        };
        let title = format!(
            "burst: {} B pass, {what} on {}",
            report.method.item_size,
            report.machine.summary()
        );
        let root = root
            .titled(&title, ("sans-serif", 20))
            .map_err(|e| err(&e))?;
        // The legend: a row under the title, where it covers no data.
        let (legend, root) = root.split_vertically(34);
        let mut x = 96;
        for (k, idx) in indices.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            legend
                .draw(&Rectangle::new([(x, 10), (x + 16, 26)], color.filled()))
                .map_err(|e| err(&e))?;
            legend
                .draw(&Text::new(
                    idx.clone(),
                    (x + 22, 11),
                    ("sans-serif", 15).into_font().color(&BLACK),
                ))
                .map_err(|e| err(&e))?;
            x += 32 + 7 * idx.len() as i32;
        }
        let (top, bottom) = root.split_vertically(540);
        // x in thousandths of a group: group g spans [1000 g, 1000 (g + 1)).
        const UNIT: i32 = 1000;
        let centers: Vec<i32> = (0..ng as i32).map(|g| g * UNIT + UNIT / 2).collect();
        let label_of = |x: &i32| -> String {
            let g = (*x / UNIT) as usize;
            groups
                .get(g)
                .map(|(c, d)| format!("{c}, {}", fmt_ms(*d)))
                .unwrap_or_default()
        };
        let bar_w = (UNIT * 8 / 10) / indices.len() as i32;
        let bar_in = bar_w * 9 / 10;
        let x_of = |g: usize, k: usize| g as i32 * UNIT + UNIT / 10 + k as i32 * bar_w;

        // Top panel: ns per pass.
        let mut chart = ChartBuilder::on(&top)
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (0..ng as i32 * UNIT).with_key_points(centers.clone()),
                (lo..hi).log_scale().with_key_points(ticks),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&label_of)
            .y_label_formatter(&|v| fmt_tick(*v))
            .x_desc("configuration, delay")
            .y_desc("ns per pass (log scale)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (k, idx) in indices.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let cells: Vec<(usize, &crate::ResultRow)> = groups
                .iter()
                .enumerate()
                .filter_map(|(g, (c, d))| by_cell.get(c, *d, idx).map(|r| (g, r)))
                .collect();
            chart
                .draw_series(cells.iter().map(|(g, r)| {
                    let x0 = x_of(*g, k);
                    Rectangle::new(
                        [(x0, lo), (x0 + bar_in, r.ns_per_pass.max(lo))],
                        color.filled(),
                    )
                }))
                .map_err(|e| err(&e))?;
            // Error bars (a vertical line with caps), where there is a spread or an interval.
            let bars: Vec<(i32, f64, f64)> = cells
                .iter()
                .filter_map(|(g, r)| {
                    let (l, h) = r.interval().unwrap_or_else(|| {
                        let s = stddev(&r.runs);
                        (r.ns_per_pass - s, r.ns_per_pass + s)
                    });
                    (h > l).then_some((x_of(*g, k) + bar_in / 2, l.max(lo), h.max(lo)))
                })
                .collect();
            let cap = bar_in / 4;
            chart
                .draw_series(bars.iter().flat_map(|&(x, l, h)| {
                    [
                        PathElement::new(vec![(x, l), (x, h)], BLACK.stroke_width(1)),
                        PathElement::new(vec![(x - cap, l), (x + cap, l)], BLACK.stroke_width(1)),
                        PathElement::new(vec![(x - cap, h), (x + cap, h)], BLACK.stroke_width(1)),
                    ]
                }))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(cells.iter().filter(|(_, r)| is_noisy(r)).map(|(g, r)| {
                    let top = r
                        .interval()
                        .map_or(r.ns_per_pass + stddev(&r.runs), |(_, h)| h);
                    Text::new(
                        "~",
                        (x_of(*g, k) + bar_in / 3, (top * 1.25).min(hi)),
                        ("sans-serif", 24)
                            .into_font()
                            .style(FontStyle::Bold)
                            .color(&BLACK),
                    )
                }))
                .map_err(|e| err(&e))?;
        }
        let mut notes =
            vec!["error bars: ± standard deviation of the run means, or the interval".to_string()];
        if report.results.iter().any(is_noisy) {
            notes.push(format!(
                "~ spread above {NOISE_THRESHOLD_PERCENT:.0}%: timing unreliable"
            ));
        }
        if !report.complete {
            notes.push(format!(
                "partial: {} of {} runs",
                report.runs_done(),
                report.runs_planned()
            ));
        }
        top.draw(&Text::new(
            notes.join("; "),
            (96, 540 - 14),
            ("sans-serif", 13).into_font().color(&RGBColor(80, 80, 80)),
        ))
        .map_err(|e| err(&e))?;

        // Bottom panel: slot migrations.
        let mut chart = ChartBuilder::on(&bottom)
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d((0..ng as i32 * UNIT).with_key_points(centers), 0f64..100f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&label_of)
            .y_labels(6)
            .light_line_style(WHITE)
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .x_desc("configuration, delay")
            .y_desc("slot migrations (% of timed passes)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (k, idx) in indices.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let cells: Vec<(usize, f64)> = groups
                .iter()
                .enumerate()
                .filter_map(|(g, (c, d))| {
                    by_cell.get(c, *d, idx).map(|r| {
                        let pct = if r.passes == 0 {
                            0.0
                        } else {
                            100.0 * r.slot_migrations as f64 / r.passes as f64
                        };
                        (g, pct)
                    })
                })
                .collect();
            chart
                .draw_series(cells.iter().map(|(g, pct)| {
                    let x0 = x_of(*g, k);
                    // A zero gets a hairline so that "0" is visibly a value.
                    Rectangle::new([(x0, 0.0), (x0 + bar_in, pct.max(0.6))], color.filled())
                }))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(cells.iter().map(|(g, pct)| {
                    Text::new(
                        format!("{pct:.0}%"),
                        (x_of(*g, k) + bar_in / 4, (pct + 7.0).min(99.0)),
                        ("sans-serif", 12).into_font().color(&BLACK),
                    )
                }))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
