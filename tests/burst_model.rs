//! The simulator: determinism, the published 8c-1l3 row within 25%, the locality it shows.

use std::time::Duration;

use percid::burst::{CostModel, Options, Report, Target, run};
use percid::index::Index;
use percid::topology::Topology;

fn simulate(configs: &[&str], delays: &[u64], seed: u64) -> Report {
    simulate_runs(configs, delays, seed, 5)
}

fn simulate_runs(configs: &[&str], delays: &[u64], seed: u64, runs: usize) -> Report {
    let o = Options {
        configs: configs.iter().map(|s| s.to_string()).collect(),
        delays: delays.iter().map(|&d| Duration::from_millis(d)).collect(),
        seed,
        runs,
        target: Target::Preset("epyc-9654".into()),
        quiet: true,
        ..Options::default()
    };
    run(&o).expect("simulation runs")
}

fn cell<'a>(r: &'a Report, config: &str, delay: f64, index: &str) -> &'a percid::burst::ResultRow {
    r.results
        .iter()
        .find(|x| x.config == config && x.delay_ms == delay && x.index == index)
        .unwrap_or_else(|| panic!("no cell {config} {delay} {index}"))
}

#[test]
fn presets_carry_valid_cost_models() {
    for p in percid::topology::PRESETS {
        let t = Topology::preset(p).unwrap();
        CostModel::from_topology(&t).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
}

#[test]
fn deterministic_for_a_seed() {
    let a = simulate(&["24c-24l3"], &[200, 10], 3);
    let b = simulate(&["24c-24l3"], &[200, 10], 3);
    assert_eq!(a, b);
    assert_eq!(a.mode, percid::burst::Mode::Simulated);
    assert!(a.to_json().contains("\"mode\": \"simulated\""));
}

#[test]
fn reproduces_the_published_8c_1l3_row_within_25_percent() {
    let r = simulate(&["8c-1l3"], &[200, 10], 1);
    // Reference section 3: ns per 16 KiB pass.
    let published = [
        (200.0, "cpu", 1374.0),
        (200.0, "user-legacy", 19289.0),
        (200.0, "user-local", 1336.0),
        (200.0, "mmcid", 1336.0),
        (10.0, "cpu", 662.0),
        (10.0, "user-legacy", 756.0),
        (10.0, "user-local", 686.0),
        (10.0, "mmcid", 686.0),
    ];
    for (delay, index, want) in published {
        let got = cell(&r, "8c-1l3", delay, index).ns_per_pass;
        let err = (got - want) / want;
        assert!(
            err.abs() <= 0.25,
            "{index} at {delay} ms: {got:.0} vs {want} ({:+.1}%)",
            err * 100.0
        );
    }
}

#[test]
fn locality_in_simulation() {
    let r = simulate(&["8c-1l3"], &[200, 10], 1);
    for i in Index::ALL {
        let c = cell(&r, "8c-1l3", 200.0, i.name());
        assert_eq!(c.passes, 8 * 5 * 5);
        if i == Index::User(percid::Policy::Legacy) {
            // Slot 0 travels on every pass but the first of each thread.
            assert_eq!(c.distinct_slots, 1);
            assert_eq!(c.slot_migrations, 8 * 4 * 5);
        } else {
            assert_eq!(c.distinct_slots, 8, "{i}");
            assert_eq!(c.slot_migrations, 0, "{i}");
        }
    }
    // At 10 ms on 8 CPUs a CPU comes back within the 100 ms expiry: legacy keeps its CIDs.
    assert_eq!(cell(&r, "8c-1l3", 10.0, "user-legacy").slot_migrations, 0);
}

#[test]
fn whole_preset_runs() {
    // One run per cell keeps this quick in debug builds.
    let r = simulate_runs(&[], &[200, 10], 1, 1);
    let configs: Vec<&str> = r.results.iter().map(|x| x.config.as_str()).collect();
    for c in ["8c-1l3", "24c-24l3", "192c-24l3", "384t-24l3"] {
        assert!(configs.contains(&c), "{c}");
    }
    assert_eq!(r.results.len(), 4 * 2 * 4);
    assert!(
        r.results
            .iter()
            .all(|x| x.ns_per_pass > 0.0 && x.runs.len() == 1)
    );
}
