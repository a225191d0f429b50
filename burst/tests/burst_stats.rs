//! Locality statistics on hand-made traces, summaries, and the JSON round trip.

use percid_burst::{
    Access, Machine, Method, Mode, PassRecord, Report, ResultRow, RunStats, Skipped, SlotTracker,
    mean, spread_percent, stddev, trace_stats,
};

fn a(cpu: usize, slot: usize, timed: bool) -> Access {
    Access { cpu, slot, timed }
}

#[test]
fn migrations_and_distinct_slots_on_a_hand_made_trace() {
    // Legacy-like: slot 0 travels 0 -> 1 -> 0 -> 1; warm-ups are untimed but count as writes.
    let legacy = [
        a(0, 0, false),
        a(0, 0, true),  // own write: no migration
        a(1, 0, false), // warm-up of CPU 1 moves it (untimed)
        a(1, 0, true),  // CPU 1 wrote it last: no migration
        a(0, 0, true),  // migration
        a(1, 0, true),  // migration
    ];
    assert_eq!(trace_stats(&legacy), (4, 2, 1));
    // Cache-local-like: each CPU its own slot.
    let local = [
        a(0, 0, false),
        a(0, 0, true),
        a(1, 1, false),
        a(1, 1, true),
        a(0, 0, true),
        a(1, 1, true),
    ];
    assert_eq!(trace_stats(&local), (4, 0, 2));
    // First write of a slot is not a migration.
    assert_eq!(trace_stats(&[a(3, 7, true)]), (1, 0, 1));

    let mut t = SlotTracker::new();
    assert!(!t.write(5, 1));
    assert!(t.write(5, 2));
    assert_eq!(t.last_writer(5), Some(2));
    assert_eq!(t.last_writer(6), None);
}

#[test]
fn run_stats_use_timed_records_only() {
    let r = |timed, ns, slot, migrated| PassRecord {
        thread: 0,
        cpu: 0,
        slot,
        timed,
        ns,
        migrated,
    };
    let s = RunStats::from_records(&[
        r(false, 1e9, 9, true),
        r(true, 100.0, 0, false),
        r(true, 300.0, 1, true),
    ]);
    assert_eq!(s.mean_ns, 200.0);
    assert_eq!((s.passes, s.slot_migrations), (2, 1));
    assert_eq!(s.slots.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(mean([]), 0.0);
    assert!((stddev(&[1.0, 3.0]) - std::f64::consts::SQRT_2).abs() < 1e-12);
    assert_eq!(spread_percent(&[5.0]), 0.0);
}

#[test]
fn json_round_trip_and_schema() {
    let report = Report {
        mode: Mode::Simulated,
        machine: Machine {
            name: "m".into(),
            model: None,
            online: "0-7".into(),
            allowed: "0-7".into(),
            cores: 8,
            threads_per_core: 1,
            l3_domains: 1,
            packages: 1,
            cost_model: Some(serde_json::json!({"x": 1})),
            ..Machine::default()
        },
        kernel: "6.18".into(),
        method: Method {
            item_size: 16384,
            stride: 65536,
            warmup: 20000,
            passes: 5,
            runs: 2,
            seed: 1,
        },
        results: vec![ResultRow {
            config: "8c-1l3".into(),
            cpus: 8,
            delay_ms: 200.0,
            index: "user-legacy".into(),
            ns_per_pass: 19000.5,
            runs: vec![19000.0, 19001.0],
            passes: 80,
            slot_migrations: 64,
            distinct_slots: 1,
            ..ResultRow::default()
        }],
        skipped: vec![Skipped {
            index: "mmcid".into(),
            reason: "none".into(),
        }],
        ..Report::default()
    };
    let text = report.to_json();
    assert_eq!(Report::from_json(&text).unwrap(), report);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["mode"], "simulated");
    let r = &v["results"][0];
    for key in [
        "config",
        "cpus",
        "delay_ms",
        "index",
        "ns_per_pass",
        "runs",
        "passes",
        "slot_migrations",
        "distinct_slots",
    ] {
        assert!(!r[key].is_null(), "missing {key}");
    }
    assert!(v["machine"].is_object() && v["kernel"].is_string());
    assert_eq!(v["schema"], 2);
    assert!(v["generator"]["percid_burst"].is_string() && v["generator"]["percid"].is_string());
    // Optional fields are omitted when absent.
    assert!(r.get("ns_per_pass_low").is_none() && r.get("per_run").is_none());
    let table = percid_burst::tables(&report);
    assert!(
        table.contains("8c-1l3") && table.contains("19000"),
        "{table}"
    );
    assert!(table.contains("64/80, 1"), "{table}");
}
