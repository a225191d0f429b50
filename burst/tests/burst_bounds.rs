//! The cost model's physical bounds: descriptions that break one are refused with a typed
//! error naming the field; every pass of every preset configuration lies between the all-L1
//! and the all-serial-DRAM time; the template and the presets' JSON load.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use percid::index::Index;
use percid_burst::fit::{self, Traces};
use percid_burst::machine::{Configurations, MachineDescription, PRESETS};
use percid_burst::{CostModel, Method, ModelError, Options, Plan, Target, run, trace_run};

fn epyc_model() -> serde_json::Value {
    MachineDescription::preset("epyc-9654")
        .unwrap()
        .cost_model
        .unwrap()
}

fn refused(edit: impl FnOnce(&mut serde_json::Value)) -> ModelError {
    let mut v = epyc_model();
    edit(&mut v);
    CostModel::from_value(&v).expect_err("a tampered model must be refused")
}

fn field_of(e: &ModelError) -> &str {
    match e {
        ModelError::Bound { field, .. } => field,
        other => panic!("expected a bound error, got {other:?}"),
    }
}

#[test]
fn fewer_than_one_line_in_flight_is_refused() {
    let e = refused(|v| v["lines_in_flight"]["modified_same_l3"] = 0.41.into());
    // The range [1, 1.5] no longer contains it: named by the range, then by the bound.
    assert!(
        field_of(&e).contains("lines_in_flight.modified_same_l3"),
        "{e}"
    );
    let e = refused(|v| {
        v["lines_in_flight"]["stream"] = 0.5.into();
        v["ranges"]
            .as_object_mut()
            .unwrap()
            .remove("lines_in_flight.stream");
    });
    assert_eq!(field_of(&e), "lines_in_flight.stream", "{e}");
    assert!(
        e.to_string().contains("fewer than one line in flight"),
        "{e}"
    );
}

#[test]
fn a_line_slower_than_a_serial_dram_miss_is_refused() {
    let e = refused(|v| {
        v["idle"]["owner_probe_ns"] = 400.0.into();
        v["ranges"]
            .as_object_mut()
            .unwrap()
            .remove("idle.owner_probe_ns");
    });
    assert!(e.to_string().contains("slower than a serial miss"), "{e}");
    // A range corner counts too: the central values pass, the slowest corner does not.
    let e =
        refused(|v| v["ranges"]["latency_ns.same_l3_modified"] = serde_json::json!([15.0, 190.0]));
    assert_eq!(field_of(&e), "latency_ns.same_l3_modified", "{e}");
    let e = refused(|v| v["bandwidth"]["fabric_read_gbps"] = 0.1.into());
    assert!(
        field_of(&e).starts_with("ranges.bandwidth")
            || field_of(&e) == "bandwidth.fabric_read_gbps",
        "{e}"
    );
}

#[test]
fn other_bounds_and_formats_are_refused() {
    let e = refused(|v| v["idle"]["clock_factor"] = 1.5.into());
    assert!(field_of(&e).contains("idle.clock_factor"), "{e}");
    let e = refused(|v| v["ranges"]["latency_ns.l3"] = serde_json::json!([20.0, 30.0]));
    assert_eq!(field_of(&e), "ranges.latency_ns.l3", "{e}");
    let e = refused(|v| v["latency_ns"]["l2"] = 50.0.into());
    assert_eq!(field_of(&e), "latency_ns.l2", "{e}");
    let e = refused(|v| v["format"] = "percid-burst-cost/1".into());
    assert_eq!(e, ModelError::OldFormat);
    assert!(e.to_string().contains("percid-burst-cost/2"), "{e}");
    let e = refused(|v| v["remote_modified_overlap"] = 0.41.into());
    assert!(matches!(e, ModelError::Invalid(_)), "{e}");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_percid-burst"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("percid-burst-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn describe_with_a_broken_bound_exits_2_naming_the_field() {
    let mut d: serde_json::Value =
        serde_json::from_str(&MachineDescription::preset("epyc-9654").unwrap().to_json()).unwrap();
    d["cost_model"]["lines_in_flight"]["modified_cross_l3"] = 0.41.into();
    let path = temp("bad.json");
    std::fs::write(&path, d.to_string()).unwrap();
    let out = bin()
        .args(["--describe"])
        .arg(&path)
        .args(["--config", "8c-1l3", "--runs", "1", "-q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lines_in_flight.modified_cross_l3"), "{err}");
}

#[test]
fn preset_json_and_template_round_trip_through_describe() {
    let out = bin()
        .args(["topology", "--preset", "epyc-9654", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = temp("epyc.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/machine-template.json");
    for (file, config) in [(&path, "8c-1l3"), (&template, "2c-1l3")] {
        let m = MachineDescription::from_json_file(file).unwrap();
        CostModel::from_machine(&m).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let out = bin()
            .arg("--describe")
            .arg(file)
            .args(["--config", config, "--runs", "1", "-q", "--delay", "200ms"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_pass_of_every_preset_configuration_is_within_bounds() {
    for p in PRESETS {
        let machine = MachineDescription::preset(p).unwrap();
        let model = CostModel::from_machine(&machine).unwrap();
        let method = Method {
            item_size: 16 * 1024,
            stride: 64 * 1024,
            warmup: 100,
            passes: 5,
            runs: 1,
            seed: 1,
        };
        let lines = 16 * 1024 / model.line_bytes;
        let draws = model.draws(3);
        for config in machine.topology.configurations() {
            let cpus: Vec<usize> = config.cpus.iter().collect();
            for delay in [200, 10] {
                let plan = Plan::new(cpus.len(), Duration::from_millis(delay), 5);
                for index in Index::ALL {
                    let trace =
                        trace_run(&machine.topology, &model, &cpus, index, &plan, &method).unwrap();
                    for m in std::iter::once(&model).chain(draws.iter()) {
                        let (low, high) = m.pass_bounds(lines);
                        for pass in &trace.passes {
                            let ns = pass.ns(m);
                            assert!(
                                low <= ns && ns <= high,
                                "{p} {} {index}: {ns} not in [{low}, {high}]",
                                config.name
                            );
                        }
                        trace.cost(m).unwrap();
                    }
                }
            }
        }
    }
}

#[test]
fn whole_presets_simulate() {
    for p in PRESETS {
        let o = Options {
            delays: vec![Duration::from_millis(200), Duration::from_millis(10)],
            runs: 1,
            target: Target::Preset(p.to_string()),
            quiet: true,
            ..Options::default()
        };
        let r = run(&o).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(r.results.iter().all(|x| x.interval().is_some()), "{p}");
    }
}

#[test]
fn leave_one_configuration_out_has_the_documented_shape() {
    let machine = MachineDescription::preset("epyc-9654").unwrap();
    let model = CostModel::from_machine(&machine).unwrap();
    let traces = Traces::record(
        &machine,
        &model,
        &["8c-1l3", "192c-24l3"],
        &[200, 10],
        &["cpu", "user-legacy", "mmcid"],
        1,
        1,
    )
    .unwrap();
    let row8 = fit::row("8c-1l3");
    let row192 = fit::row("192c-24l3");
    assert_eq!((row8.len(), row192.len(), fit::PUBLISHED.len()), (6, 6, 12));
    for (train, test) in [(&row8, &row192), (&row192, &row8)] {
        let fitted = fit::fit(&model, &traces, train, fit::FITTED);
        fitted.validate().unwrap();
        let errors = fit::errors(&fitted, &traces, test);
        assert_eq!(errors.len(), 6);
        assert!(
            errors
                .iter()
                .all(|(_, p, r)| p.is_finite() && *p > 0.0 && r.is_finite())
        );
        // Fitting does not make the training row worse than the starting point.
        assert!(fit::loss(&fitted, &traces, train) <= fit::loss(&model, &traces, train) + 1e-12);
    }
}
