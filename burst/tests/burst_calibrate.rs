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
