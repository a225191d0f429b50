//! `percid-burst calibrate` and the descriptions it writes; the cost model's pass bounds for
//! machines whose increment loop is faster per line than an L1 load.

use std::time::Duration;

use percid::index::Index;
use percid_burst::machine::{Configurations, MachineDescription};
use percid_burst::{CostModel, Method, Plan, simulate_run};

/// A one-L3 description whose streaming increment costs less per line than an L1 load
/// (a vectorised loop: 16 KiB in ~200 ns on this machine while a dependent L1 load takes
/// 1.3 ns), as `calibrate` measures it.
fn fast_loop_machine() -> (MachineDescription, CostModel) {
    let mut machine = MachineDescription::preset("xeon-e-2388g").unwrap();
    let mut value = machine.cost_model.clone().unwrap();
    value["core_ns_per_line"] = serde_json::json!(0.45);
    value["latency_ns"]["l1"] = serde_json::json!(1.3);
    machine.cost_model = Some(value);
    let model = CostModel::from_machine(&machine).expect("valid description");
    (machine, model)
}

#[test]
fn a_loop_faster_than_an_l1_load_per_line_simulates() {
    // Before the fix the low pass bound was `lines x max(core, l1)`: a warm pass of
    // 20 + 256 x max(0.45, 3.1/12) = 135 ns was refused as "outside [352.8, ...]".
    let (machine, model) = fast_loop_machine();
    let cpus: Vec<usize> = machine
        .topology
        .configuration("8c-1l3")
        .unwrap()
        .cpus
        .iter()
        .collect();
    let method = Method {
        item_size: 16384,
        stride: 65536,
        warmup: 100,
        passes: 5,
        runs: 1,
        seed: 1,
    };
    let plan = Plan::new(cpus.len(), Duration::from_millis(10), 1);
    let records = simulate_run(
        &machine.topology,
        &model,
        &cpus,
        Index::CpuId,
        &plan,
        &method,
    )
    .expect("a pass at the loop's speed is within the bounds");
    let (low, _) = model.pass_bounds(256);
    for r in records.iter().filter(|r| r.timed) {
        assert!(r.ns >= low - 1e-6, "{} below the low bound {low}", r.ns);
    }
}

// ---- calibrated intervals (leave one configuration out) ----

mod calibrated {
    use percid_burst::CostModel;
    use percid_burst::conformal::{self, NOMINAL, Quantity};
    use percid_burst::fit::{PUBLISHED, Traces, WITHHELD};
    use percid_burst::machine::MachineDescription;

    const CONFIGS: &[&str] = &["8c-1l3", "192c-24l3", "24c-24l3", "384t-24l3"];

    fn setup() -> (CostModel, Traces) {
        let machine = MachineDescription::preset("epyc-9654").unwrap();
        let preset = CostModel::from_machine(&machine).unwrap();
        let traces = Traces::record(
            &machine,
            &preset,
            CONFIGS,
            &[200, 10],
            &["cpu", "user-legacy", "mmcid"],
            5,
            1,
        )
        .unwrap();
        (preset, traces)
    }

    #[test]
    fn leave_one_out_coverage_rates_and_useful_widths() {
        let (preset, traces) = setup();
        let loo = conformal::leave_one_out(&preset, &traces, 1).unwrap();
        // Two folds, each predicting the other row's 6 cells and 4 speedups.
        assert_eq!(loo.folds.len(), 2);
        let cells = loo.cells.expect("12 cell scores reach 80%");
        let speedups = loo.speedups.expect("8 speedup scores reach 80%");
        assert_eq!((cells.n, cells.k), (PUBLISHED.len(), 11));
        assert_eq!((speedups.n, speedups.k), (8, 8));
        assert!(cells.guaranteed() >= NOMINAL && speedups.guaranteed() >= NOMINAL);

        // The calibrated intervals contain the left-out published values at the stated rate
        // (at least k of n), and contain the raw intervals.
        let (ic, is) = loo.in_sample_coverage();
        assert!(ic.inside >= cells.k && ic.total == cells.n, "{ic:?}");
        assert!(is.inside >= speedups.k && is.total == speedups.n, "{is:?}");
        let (rc, rs) = loo.raw_coverage();
        let (cc, cs) = loo.cross_coverage();
        assert!(cc.inside >= rc.inside && cs.inside >= rs.inside);
        for f in &loo.folds {
            for (p, _) in &f.predictions {
                let (lo, hi) = loo.interval(p);
                assert!(lo <= p.low && hi >= p.high && lo <= p.central && p.central <= hi);
            }
        }

        // Useful: high/low at most 3 for most withheld predictions (cells and speedups).
        let preds = conformal::predictions(&preset, &traces, CONFIGS, &[200, 10], 1).unwrap();
        let withheld: Vec<_> = preds
            .iter()
            .filter(|p| WITHHELD.contains(&p.config))
            .collect();
        assert_eq!(withheld.len(), 2 * 2 * 5);
        let narrow = withheld
            .iter()
            .filter(|p| {
                let (lo, hi) = loo.interval(p);
                hi / lo <= 3.0
            })
            .count();
        assert!(
            narrow * 4 >= withheld.len() * 3,
            "{narrow} of {}",
            withheld.len()
        );
        // Every cell (ns per pass) stays within a factor 3.
        for p in withheld.iter().filter(|p| !p.quantity.is_speedup()) {
            let (lo, hi) = loo.interval(p);
            assert!(hi / lo <= 3.0, "{p:?}: {lo}-{hi}");
        }
        assert!(
            withheld
                .iter()
                .any(|p| p.quantity == Quantity::LegacyOverLocal)
        );
    }

    /// `user-task` is predicted where the traces have it, never scored (no published value),
    /// and leaves the calibration as it was; on the preset one pinned thread per CPU keeps its
    /// own ID, so it moves no slot and matches cache-local.
    #[test]
    fn user_task_is_predicted_and_never_scored() {
        let machine = MachineDescription::preset("epyc-9654").unwrap();
        let preset = CostModel::from_machine(&machine).unwrap();
        let record = |indices: &[&str]| {
            Traces::record(&machine, &preset, CONFIGS, &[200, 10], indices, 5, 1).unwrap()
        };
        let with_task = record(&["cpu", "user-legacy", "mmcid", "user-task"]);
        let (_, without) = setup();
        let a = conformal::leave_one_out(&preset, &with_task, 1).unwrap();
        let b = conformal::leave_one_out(&preset, &without, 1).unwrap();
        assert_eq!(a.cells.map(|c| (c.n, c.k)), b.cells.map(|c| (c.n, c.k)));
        assert_eq!(
            a.speedups.map(|c| (c.n, c.k)),
            b.speedups.map(|c| (c.n, c.k))
        );
        let preds = conformal::predictions(&preset, &with_task, CONFIGS, &[200, 10], 1).unwrap();
        let task: Vec<_> = preds
            .iter()
            .filter(|p| p.quantity == Quantity::TaskOverLocal)
            .collect();
        assert_eq!(task.len(), CONFIGS.len() * 2);
        for p in task {
            assert_eq!(conformal::measured(p), None);
            assert!((p.central - 1.0).abs() < 1e-9, "{p:?}");
            let (lo, hi) = a.interval(p);
            assert!(lo < 1.0 && hi > 1.0, "{p:?}: {lo}-{hi}");
        }
        let without_preds =
            conformal::predictions(&preset, &without, CONFIGS, &[200, 10], 1).unwrap();
        assert!(
            without_preds
                .iter()
                .all(|p| p.quantity != Quantity::TaskOverLocal)
        );
    }
}

// ---- percid-burst calibrate ----

mod command {
    use std::process::Command;

    use percid_burst::machine::{Configurations, MachineDescription};
    use percid_burst::{CostModel, PARAMS};

    fn burst() -> Command {
        Command::new(env!("CARGO_BIN_EXE_percid-burst"))
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("percid-calibrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn quick_writes_a_description_that_loads_and_simulates() {
        let path = temp("calibrated.json");
        let out = burst()
            .args(["calibrate", "--quick", "--allow-debug", "-o"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let machine = MachineDescription::from_json_file(&path).expect("a --describe file");
        let model = CostModel::from_machine(&machine).expect("a valid cost model");
        // Every figure positive and finite, the model within its physical bounds.
        for p in PARAMS {
            let v = model.param(p).unwrap();
            assert!(v.is_finite() && v >= 0.0, "{p} = {v}");
        }
        model.validate().unwrap();
        // Measured figures say so; the others are marked.
        for p in [
            "latency_ns.l1",
            "latency_ns.l2",
            "latency_ns.l3",
            "latency_ns.dram_local",
        ] {
            assert!(model.param(p).unwrap() > 0.0);
            assert!(
                model.sources[p].starts_with("MEASURED"),
                "{p}: {}",
                model.sources[p]
            );
            assert!(stdout.contains(p), "{stdout}");
        }
        for p in ["idle.l3_flush_ms", "idle.owner_probe_ns"] {
            assert!(model.sources[p].starts_with("NOT MEASURED"), "{p}");
        }
        // Observable or not, every figure calibrate looks at says which.
        for p in percid_burst::calibrate::MEASURABLE {
            let src = &model.sources[*p];
            assert!(
                src.starts_with("MEASURED") || src.starts_with("NOT MEASURED"),
                "{p}: {src}"
            );
        }
        let t = &machine.topology;
        if t.l3().len() <= 1 {
            assert!(model.sources["latency_ns.cross_l3"].starts_with("NOT MEASURED"));
            assert!(stdout.contains("latency_ns.cross_l3"));
            assert!(stdout.contains("NOT MEASURED"), "{stdout}");
        }
        // The description runs a simulation.
        let config = t.configurations()[0].name.clone();
        let sim = burst()
            .arg("--describe")
            .arg(&path)
            .args(["--quiet", "--runs", "1", "--config", &config])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&sim.stdout);
        assert!(
            sim.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&sim.stderr)
        );
        assert!(
            text.contains("simulated") && text.contains(&config),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn an_output_that_cannot_be_written_is_refused_before_measuring() {
        let dir = temp("dir");
        std::fs::create_dir_all(&dir).unwrap();
        let out = burst()
            .args(["calibrate", "--quick", "-o"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--output"));
        if cfg!(debug_assertions) {
            // A debug build measures only when told to.
            let debug = burst()
                .args(["calibrate", "--quick", "-o", "-"])
                .output()
                .unwrap();
            assert_eq!(debug.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&debug.stderr).contains("--allow-debug"));
            assert!(debug.stdout.is_empty());
        }
        let bad = burst()
            .args([
                "calibrate",
                "--quick",
                "--base",
                "no-such-preset",
                "-o",
                "-",
            ])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
    }
}
