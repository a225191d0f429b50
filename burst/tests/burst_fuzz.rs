//! A fuzz target for the three parsers of files a user hands the suite: machine
//! descriptions (`--describe`, `topology --describe`), their cost models, and saved reports
//! (`report`, `compare`, `--resume`). No dependency: a seeded structured mutator (SplitMix64)
//! edits valid seeds (the template and the presets' descriptions, a simulated report) as JSON
//! values (numbers replaced by extremes, keys dropped, arrays emptied or repeated, strings
//! replaced, types swapped) and as bytes (flips, truncation), then runs each input through
//! the parser and everything downstream of it (validation, configurations, the simulator for
//! a valid description, the tables, conclusions, comparison and chart for a valid report).
//! Any panic fails the test, naming the seed and the input.
//!
//! It runs for `PERCID_BURST_FUZZ_SECS` seconds (default 3; `.ci/run` gives it 40), from
//! `PERCID_BURST_FUZZ_SEED` (default 1).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use percid::index::Index;
use percid_burst::machine::{Configurations, MachineDescription, PRESETS};
use percid_burst::{CostModel, Method, Plan, Report, SplitMix64, comparison, full_text_with};
use serde_json::Value;

const EXTREMES: [f64; 12] = [
    0.0,
    -1.0,
    1e308,
    -1e308,
    1e18,
    1e-300,
    4294967296.0,
    8192.0,
    0.5,
    65536.0,
    1e9,
    3.0,
];

fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

/// A random path to a node of `v` (objects and arrays), as a list of steps.
fn mutate_value(rng: &mut SplitMix64, v: &mut Value, depth: usize) {
    let descend = depth < 6 && rng.below(3) != 0;
    match v {
        Value::Object(map) if descend && !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = pick(rng, &keys).clone();
            if rng.below(8) == 0 {
                map.remove(&k);
            } else if let Some(child) = map.get_mut(&k) {
                mutate_value(rng, child, depth + 1);
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len() as u64) as usize;
            match rng.below(8) {
                0 => items.clear(),
                1 => {
                    let c = items[i].clone();
                    items.push(c);
                }
                2 => {
                    items.remove(i);
                }
                _ => mutate_value(rng, &mut items[i], depth + 1),
            }
        }
        _ => {
            *v = match rng.below(7) {
                0 | 1 => Value::from(*pick(rng, &EXTREMES)),
                2 => Value::from(rng.next_u64()),
                3 => Value::from(*pick(
                    rng,
                    &[
                        "",
                        "0-8191",
                        "0-4294967295",
                        "7-3",
                        "x",
                        "\u{1b}[31m",
                        "0,,1",
                        "-",
                    ],
                )),
                4 => Value::Null,
                5 => Value::Array(vec![]),
                _ => Value::from(-(rng.below(1000) as i64)),
            }
        }
    }
}

fn mutate_text(rng: &mut SplitMix64, seed: &Value) -> String {
    let mut v = seed.clone();
    for _ in 0..=rng.below(4) {
        mutate_value(rng, &mut v, 0);
    }
    let mut text = v.to_string();
    if rng.below(6) == 0 && !text.is_empty() {
        // Byte-level damage: a flip or a truncation (kept valid UTF-8 by lossy decoding).
        let mut bytes = text.into_bytes();
        let at = rng.below(bytes.len() as u64) as usize;
        if rng.below(2) == 0 {
            bytes[at] ^= 1 << rng.below(8);
        } else {
            bytes.truncate(at);
        }
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

/// The description parser and what follows a valid description: its configurations, its
/// display, its cost model, and one short simulated run of its first configuration.
fn description_target(text: &str) {
    let Ok(machine) = MachineDescription::from_json(text) else {
        return;
    };
    let _ = machine.topology.to_string();
    let configs = machine.topology.configurations();
    let Ok(model) = CostModel::from_machine(&machine) else {
        return;
    };
    let Some(c) = configs.first() else { return };
    let cpus: Vec<usize> = c.cpus.iter().take(16).collect();
    let method = Method {
        item_size: 4096,
        stride: 65536,
        warmup: 2,
        passes: 2,
        runs: 1,
        seed: 1,
    };
    let plan = Plan::new(cpus.len(), Duration::from_millis(200), 1);
    let _ = percid_burst::simulate_run(
        &machine.topology,
        &model,
        &cpus,
        Index::User(percid::index::user_cid::Policy::Legacy),
        &plan,
        &method,
    );
}

/// The report parser and what follows a valid report: tables, conclusions, comparison,
/// verdicts, chart.
fn report_target(text: &str) {
    let Ok(report) = Report::from_json(text) else {
        return;
    };
    if report.validate().is_err() {
        return;
    }
    let _ = full_text_with(&report, false);
    let _ = full_text_with(&report, true);
    let _ = comparison(&report, "a", &report, "b");
    let _ = percid_burst::compare(&report, "a", &report, "b");
    let _ = percid_burst::verdicts(&report);
    let _ = percid_burst::render_svg(&report);
}

fn seeds() -> (Vec<Value>, Value) {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/machine-template.json");
    let mut descriptions =
        vec![serde_json::from_str(&std::fs::read_to_string(template).unwrap()).unwrap()];
    for p in PRESETS {
        descriptions.push(MachineDescription::preset(p).unwrap().to_json_value());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_percid-burst"))
        .args([
            "--simulate",
            "xeon-e-2388g",
            "--runs",
            "3",
            "-q",
            "--json",
            "-",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    (descriptions, serde_json::from_slice(&out.stdout).unwrap())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn parsers_never_panic_on_mutated_inputs() {
    let secs = env_u64("PERCID_BURST_FUZZ_SECS", 3);
    let seed = env_u64("PERCID_BURST_FUZZ_SEED", 1);
    let (descriptions, report) = seeds();
    let mut rng = SplitMix64::new(seed);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut cases = 0u64;
    // Quiet the default panic message: a panic is reported below with its input.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while Instant::now() < end && failure.is_none() {
        for _ in 0..16 {
            let d = pick(&mut rng, &descriptions).clone();
            let text = mutate_text(&mut rng, &d);
            if catch_unwind(AssertUnwindSafe(|| description_target(&text))).is_err() {
                failure = Some(("description", text));
                break;
            }
            let text = mutate_text(&mut rng, &report);
            if catch_unwind(AssertUnwindSafe(|| report_target(&text))).is_err() {
                failure = Some(("report", text));
                break;
            }
            cases += 2;
        }
    }
    std::panic::set_hook(hook);
    if let Some((what, text)) = failure {
        // Re-run it outside catch_unwind for the message and backtrace.
        eprintln!("fuzz: a {what} input panicked (seed {seed}, after {cases} cases): {text}");
        match what {
            "description" => description_target(&text),
            _ => report_target(&text),
        }
        panic!("fuzz: the {what} parser panicked");
    }
    eprintln!("fuzz: {cases} cases in {secs} s from seed {seed}, no panic");
}
