//! Tables, noise marks and conclusions on hand-made reports with known numbers.

use percid_burst::{
    Machine, Method, Mode, Report, ResultRow, Verdict, cell_text, comparison, conclusions,
    era_line, judge, mean, tables,
};

fn row(
    config: &str,
    cpus: usize,
    delay_ms: f64,
    index: &str,
    runs: &[f64],
    (migrations, passes, slots): (u64, u64, u64),
) -> ResultRow {
    ResultRow {
        config: config.into(),
        cpus,
        delay_ms,
        index: index.into(),
        ns_per_pass: mean(runs.iter().copied()),
        runs: runs.to_vec(),
        passes,
        slot_migrations: migrations,
        distinct_slots: slots,
        ..ResultRow::default()
    }
}

fn report(results: Vec<ResultRow>) -> Report {
    Report {
        mode: Mode::Real,
        machine: Machine {
            name: "Test CPU".into(),
            summary: Some("1 x Test CPU, 8 cores, 8 CPUs, 1 L3 domain".into()),
            online: "0-7".into(),
            allowed: "0-7".into(),
            cores: 8,
            threads_per_core: 1,
            l3_domains: 1,
            packages: 1,
            ..Machine::default()
        },
        kernel: "6.18".into(),
        method: Method {
            item_size: 16384,
            stride: 65536,
            warmup: 20000,
            passes: 5,
            runs: 3,
            seed: 1,
        },
        results,
        ..Report::default()
    }
}

/// 8c-1l3: at 200 ms the legacy policy moves slot 0 and is 14.6x slower; at 10 ms nothing
/// moves, the timings are alike and `cpu` is noisy.
fn hand_made() -> Report {
    let c = "8c-1l3";
    report(vec![
        row(c, 8, 200.0, "cpu", &[1300.0, 1310.0, 1290.0], (0, 200, 8)),
        row(c, 8, 200.0, "mmcid", &[1300.0, 1305.0, 1295.0], (0, 200, 8)),
        row(
            c,
            8,
            200.0,
            "user-legacy",
            &[19000.0, 19100.0, 18900.0],
            (160, 200, 1),
        ),
        row(
            c,
            8,
            200.0,
            "user-local",
            &[1300.0, 1310.0, 1290.0],
            (0, 200, 8),
        ),
        row(c, 8, 10.0, "cpu", &[660.0, 1500.0, 400.0], (0, 200, 8)),
        row(c, 8, 10.0, "mmcid", &[650.0, 670.0, 660.0], (0, 200, 8)),
        row(
            c,
            8,
            10.0,
            "user-legacy",
            &[700.0, 710.0, 690.0],
            (0, 200, 8),
        ),
        row(
            c,
            8,
            10.0,
            "user-local",
            &[680.0, 690.0, 700.0],
            (0, 200, 8),
        ),
        // 2c-1l3: the slot moves, the timings do not show it.
        row(
            "2c-1l3",
            2,
            200.0,
            "user-legacy",
            &[3572.0, 3000.0, 4100.0],
            (40, 50, 1),
        ),
        row(
            "2c-1l3",
            2,
            200.0,
            "user-local",
            &[3436.0, 3100.0, 3800.0],
            (0, 50, 2),
        ),
    ])
}

#[test]
fn conclusions_say_what_the_numbers_mean() {
    let text = conclusions(&hand_made());
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("conclusions"), "{text}");
    assert_eq!(
        lines[1],
        "8c-1l3 (8 CPUs): at 200ms, locality effect present (user-legacy moved its slot on 160 \
         of 200 timed passes; cpu, mmcid and user-local on 0), visible in the timings: \
         legacy/local 14.62x (larger than the noise), cpu/mmcid 1.00x (same slot migrations: \
         not a locality comparison). At 10ms, no locality effect (no source moved its slot): \
         legacy/local 1.01x, cpu/mmcid 1.29x (not judged: with no slot moved, a timing \
         difference is not a locality effect); noisy: cpu ±67%."
    );
    assert_eq!(
        lines[2],
        "2c-1l3 (2 CPUs): at 200ms, locality effect present (user-legacy moved its slot on 40 \
         of 50 timed passes; user-local on 0), not visible in the timings: legacy/local 1.03x \
         (within the noise)."
    );
    assert_eq!(lines.len(), 3, "one line per configuration: {text}");
}

#[test]
fn noisy_cells_are_marked_with_a_legend() {
    let r = hand_made();
    let table = tables(&r);
    assert!(table.contains("853 ±67%~"), "{table}");
    assert!(table.contains("1300 ±1%"), "{table}");
    assert!(!table.contains("1300 ±1%~"), "{table}");
    assert!(
        table.contains("~ spread above 25% of the mean: that timing is unreliable"),
        "{table}"
    );
    assert!(table.contains("160/200, 1"), "{table}");
    assert!(table.contains("14.62x"), "{table}");
    // No mark, no legend when nothing is noisy.
    let quiet = report(
        hand_made()
            .results
            .into_iter()
            .filter(|r| r.delay_ms == 200.0)
            .collect(),
    );
    assert!(!tables(&quiet).contains('~'));
}

#[test]
fn the_noise_rule() {
    let a = row("c", 1, 1.0, "cpu", &[100.0, 102.0, 98.0], (0, 3, 1));
    let b = row("c", 1, 1.0, "mmcid", &[110.0, 112.0, 108.0], (0, 3, 1));
    // Paired by run: ln(100/110), ln(102/112), ln(98/108) have mean -0.0953 and sd 0.0018,
    // so |t| = 0.0953 / (0.0018 / sqrt 3) = 92 > t99(2) = 9.925.
    assert_eq!(judge(&a, &b), Verdict::Larger);
    let wide = row("c", 1, 1.0, "mmcid", &[80.0, 140.0, 110.0], (0, 3, 1));
    // ln(100/80), ln(102/140), ln(98/110): mean -0.070, sd 0.275: |t| = 0.44 < 9.925.
    assert_eq!(judge(&a, &wide), Verdict::Within);
    // A drift between runs that moves both sources alike cancels in the pairs: the same
    // 1.1x ratio on runs whose level drifts by 2x is still larger than the noise, where an
    // unpaired test of the two cells would call it within the noise.
    let drifting_a = row("c", 1, 1.0, "cpu", &[100.0, 150.0, 200.0], (0, 3, 1));
    let drifting_b = row("c", 1, 1.0, "mmcid", &[110.0, 165.5, 219.0], (0, 3, 1));
    assert_eq!(judge(&drifting_b, &drifting_a), Verdict::Larger);
    // Two runs with the same ratio but opposite drift: within the noise at 99%.
    let c1 = row("c", 1, 1.0, "cpu", &[100.0, 100.0, 100.0], (0, 3, 1));
    let c2 = row("c", 1, 1.0, "mmcid", &[95.0, 104.0, 101.0], (0, 3, 1));
    assert_eq!(judge(&c2, &c1), Verdict::Within);
    assert_eq!(judge(&a, &a), Verdict::Equal);
    let two = row("c", 1, 1.0, "mmcid", &[110.0, 112.0], (0, 2, 1));
    assert_eq!(judge(&a, &two), Verdict::Unknown);
}

#[test]
fn intervals_are_shown_and_judged() {
    let mut legacy = row(
        "24c-24l3",
        24,
        200.0,
        "user-legacy",
        &[158000.0],
        (480, 600, 1),
    );
    legacy.ns_per_pass_low = Some(120000.0);
    legacy.ns_per_pass_high = Some(200000.0);
    let mut local = row("24c-24l3", 24, 200.0, "user-local", &[1367.0], (0, 600, 24));
    local.ns_per_pass_low = Some(1200.0);
    local.ns_per_pass_high = Some(1500.0);
    assert_eq!(cell_text(&local), "1367 [1200-1500]");
    assert_eq!(judge(&legacy, &local), Verdict::BeyondIntervals);
    let mut r = report(vec![legacy.clone(), local.clone()]);
    r.mode = Mode::Simulated;
    let table = tables(&r);
    assert!(table.contains("158000 [120000-200000]"), "{table}");
    assert!(table.contains("115.58x [80.00-166.67]"), "{table}");
    let text = conclusions(&r);
    assert!(
        text.contains(
            "visible in the timings: legacy/local 115.58x [80.00-166.67] (beyond the intervals)"
        ),
        "{text}"
    );
    // Overlapping intervals are within them.
    let mut near = local.clone();
    near.index = "user-legacy".into();
    near.ns_per_pass = 1450.0;
    near.ns_per_pass_low = Some(1400.0);
    near.ns_per_pass_high = Some(1600.0);
    assert_eq!(judge(&near, &local), Verdict::WithinIntervals);
    // The fields are omitted from JSON when absent and kept when present.
    let json = r.to_json();
    assert!(json.contains("\"ns_per_pass_low\": 120000.0"), "{json}");
    assert_eq!(Report::from_json(&json).unwrap(), r);
}

#[test]
fn partial_reports_say_so() {
    let mut r = hand_made();
    r.complete = false;
    r.plan = Some(percid_burst::PlanRecord {
        target: percid_burst::TargetRecord::Real,
        configs: ["8c-1l3", "2c-1l3"]
            .iter()
            .map(|n| percid_burst::ConfigRecord {
                name: n.to_string(),
                cpus: "0-7".into(),
            })
            .collect(),
        delays_ms: vec![200.0, 10.0],
        indices: ["cpu", "mmcid", "user-legacy", "user-local"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    });
    let text = percid_burst::full_text(&r);
    assert!(text.contains("PARTIAL: 30 of 48 runs"), "{text}");
    assert!(text.contains("(partial report: 30 of 48 runs)"), "{text}");
}

/// `hand_made()` with every run scaled by `scale` and cell `k` (in report order) by
/// `change` too, the runs jittered by a fixed pattern.
fn rerun(scale: f64, k: usize, change: f64) -> Report {
    let mut r = hand_made();
    for (i, cell) in r.results.iter_mut().enumerate() {
        let f = scale * if i == k { change } else { 1.0 };
        let jitter = [1.0, 1.01, 0.99];
        cell.runs = cell
            .runs
            .iter()
            .zip(jitter.iter().cycle().skip(i % 3))
            .map(|(x, j)| x * f * j)
            .collect();
        cell.ns_per_pass = mean(cell.runs.iter().copied());
    }
    r
}

#[test]
fn compare_states_the_drift_and_judges_cells_after_it() {
    let a = hand_made();
    // The whole machine 30% slower between the invocations: drift, no cell different (the
    // rule before judged absolute ns alone and called most cells larger than the noise).
    let b = rerun(1.3, usize::MAX, 1.0);
    let c = comparison(&a, "a", &b, "b");
    let drift = c.drift.expect("drift measured");
    assert!((drift - 1.3).abs() < 0.02, "{drift}");
    let different: Vec<_> = c
        .cells
        .iter()
        .filter(|x| x.verdict == "different")
        .collect();
    assert!(different.is_empty(), "{different:?}");
    // One cell 2x slower on top of the drift: that cell alone is different.
    let b = rerun(1.3, 1, 2.0);
    let c = comparison(&a, "a", &b, "b");
    let different: Vec<_> = c
        .cells
        .iter()
        .filter(|x| x.verdict == "different")
        .collect();
    assert_eq!(different.len(), 1, "{:?}", c.cells);
    assert_eq!(
        (different[0].delay_ms, different[0].index.as_str()),
        (200.0, "mmcid")
    );
    // The within-run ratios are compared first, and the method is checked.
    assert!(!c.ratios.is_empty());
    let mut other = rerun(1.0, usize::MAX, 1.0);
    other.method.item_size = 1024;
    let c = comparison(&a, "a", &other, "b");
    assert_eq!(
        c.method_differences,
        vec!["item size (B) 16384 vs 1024".to_string()]
    );
    assert!(c.cells.iter().all(|x| x.verdict.contains("methods differ")));
}

#[test]
fn a_real_runs_header_names_the_kernel_cid_era() {
    let line = era_line("6.18.44-fc-v1252");
    assert!(line.contains("cache-local (6.13-6.18)"), "{line}");
    assert!(line.contains("as user-local imitates it"), "{line}");
    let line = era_line("6.19.0-rc1");
    assert!(
        line.contains("per-task (6.19+)") && line.contains("user-task"),
        "{line}"
    );
    assert!(era_line("6.12.9").contains("legacy (6.3-6.12)"));
    assert!(era_line("5.15.0-generic").contains("no mm_cid"));
    assert!(era_line("unknown").contains("unknown"));
}
