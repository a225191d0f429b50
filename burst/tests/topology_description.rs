//! Presets, derived configurations, JSON descriptions: round trip and loader errors.

use std::collections::BTreeSet;

use percid::topology::{CpuSet, CpuSetError, Topology, TopologyError, TopologySource};
use percid_burst::machine::{
    ConfigurationKind, Configurations, MachineDescription, MachineError, PRESETS,
};

/// The topology of a preset.
fn preset(name: &str) -> Topology {
    MachineDescription::preset(name).unwrap().topology
}
use serde_json::{Value, json};

fn set(s: &str) -> CpuSet {
    s.parse().unwrap()
}

#[test]
fn epyc_9654_shape() {
    let t = preset("epyc-9654");
    assert_eq!(t.possible(), &set("0-383"));
    assert_eq!(t.online().len(), 384);
    assert_eq!(t.cores().len(), 192);
    assert_eq!(t.threads_per_core(), 2);
    assert_eq!(t.smt_siblings(5), Some(&set("5,197")));
    assert_eq!(t.smt_siblings(383), Some(&set("191,383")));
    assert_eq!(t.l3().len(), 24);
    for (d, l3) in t.l3().iter().enumerate() {
        assert_eq!(l3.size, Some(32 << 20));
        assert_eq!(l3.cpus.len(), 16);
        let first = 8 * d;
        let expect = format!("{}-{},{}-{}", first, first + 7, first + 192, first + 199);
        assert_eq!(l3.cpus.to_string(), expect);
    }
    assert!(
        t.l2()
            .iter()
            .all(|d| d.size == Some(1 << 20) && d.cpus.len() == 2)
    );
    assert_eq!(t.l2().len(), 192);
    assert!(t.l1d().iter().all(|d| d.size == Some(32 << 10)));
    assert_eq!(t.packages().len(), 2);
    assert_eq!(t.packages()[0].cpus, set("0-95,192-287"));
    assert_eq!(t.packages()[1].cpus, set("96-191,288-383"));
    assert_eq!(t.nodes().len(), 2);
    assert_eq!(t.source(), &TopologySource::Description);
}

#[test]
fn epyc_9654_configurations() {
    let t = preset("epyc-9654");
    let configs = t.configurations();
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["8c-1l3", "24c-24l3", "192c-24l3", "384t-24l3"]);
    let l3s =
        |cpus: &CpuSet| -> BTreeSet<usize> { cpus.iter().map(|c| t.l3_of(c).unwrap()).collect() };
    let cores =
        |cpus: &CpuSet| -> BTreeSet<usize> { cpus.iter().map(|c| t.core_of(c).unwrap()).collect() };

    let c = t.configuration("8c-1l3").unwrap();
    assert_eq!(c.kind, ConfigurationKind::OneL3);
    assert_eq!(c.cpus, set("0-7"));
    assert_eq!(l3s(&c.cpus).len(), 1);
    assert_eq!(cores(&c.cpus).len(), 8);

    let c = t.configuration("24c-24l3").unwrap();
    assert_eq!(c.cpus.len(), 24);
    assert_eq!(
        l3s(&c.cpus).len(),
        24,
        "one CPU in each of 24 distinct L3 domains"
    );
    assert_eq!(c.cpus, (0..24).map(|d| 8 * d).collect());
    assert_eq!((c.cores, c.l3_domains), (24, 24));

    let c = t.configuration("192c-24l3").unwrap();
    assert_eq!(c.cpus, set("0-191"));
    assert_eq!(cores(&c.cpus).len(), 192, "one thread per core");
    assert_eq!(l3s(&c.cpus).len(), 24);

    let c = t.configuration("384t-24l3").unwrap();
    assert_eq!(c.cpus, set("0-383"));
    assert_eq!(cores(&c.cpus).len(), 192);
    assert_eq!(l3s(&c.cpus).len(), 24);
}

#[test]
fn single_l3_preset() {
    let t = preset("xeon-e-2388g");
    assert_eq!(t.online(), &set("0-15"));
    assert_eq!(t.l3().len(), 1);
    assert_eq!(t.l3()[0].size, Some(16 << 20));
    assert_eq!(t.smt_siblings(3), Some(&set("3,11")));
    let names: Vec<String> = t.configurations().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["8c-1l3", "1c-1l3", "16t-1l3"]);
}

#[test]
fn unknown_preset() {
    match MachineDescription::preset("epyc-9999") {
        Err(MachineError::UnknownPreset { available, .. }) => {
            assert_eq!(available, PRESETS)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_round_trip_of_presets_and_fixture() {
    let mut machines: Vec<MachineDescription> = PRESETS
        .iter()
        .map(|p| MachineDescription::preset(p).unwrap())
        .collect();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/sysfs");
    for fixture in ["two-socket-smt", "offline-holes", "no-cache", "bare"] {
        machines.push(MachineDescription {
            topology: Topology::from_sysfs_root(format!("{root}/{fixture}")).unwrap(),
            cost_model: None,
        });
    }
    for m in machines {
        let text = m.to_json();
        let back =
            MachineDescription::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", m.name()));
        assert_eq!(back.to_json(), text, "{}", m.name());
        assert_eq!(back.cost_model, m.cost_model);
        let (back, t) = (back.topology, m.topology);
        assert_eq!(back.possible(), t.possible());
        assert_eq!(back.cores(), t.cores());
        assert_eq!(back.l1d(), t.l1d());
        assert_eq!(back.l2(), t.l2());
        assert_eq!(back.l3(), t.l3());
        assert_eq!(back.packages(), t.packages());
        assert_eq!(back.nodes(), t.nodes());
        assert_eq!(back.configurations(), t.configurations());
    }
}

#[test]
fn cost_model_is_kept_verbatim() {
    let mut t = MachineDescription::preset("xeon-e-2388g").unwrap();
    // Presets carry the burst model's parameters; the topology keeps any object verbatim.
    assert!(t.cost_model.as_ref().is_some_and(|m| m.is_object()));
    let model = json!({"l3_hit_ns": 12.5, "levels": [1, 2, {"x": null}], "name": "draft"});
    t.cost_model = Some(model.clone());
    let back = MachineDescription::from_json(&t.to_json()).unwrap();
    assert_eq!(back.cost_model, Some(model));
    assert_eq!(back, t);
}

/// A small valid description to break in the error tests.
fn small() -> Value {
    json!({
        "format": "percid-topology/1",
        "name": "small",
        "possible": "0-5",
        "cores": ["0,2", "1,3"],
        "l3": [{"cpus": "0-3", "size": 1048576}],
        "packages": [{"id": 0, "cpus": "0-3"}]
    })
}

fn load(v: &Value) -> Result<Topology, MachineError> {
    MachineDescription::from_json(&v.to_string()).map(|m| m.topology)
}

#[test]
fn minimal_description_defaults() {
    let t = load(&small()).unwrap();
    assert_eq!(t.online(), &set("0-3"));
    assert_eq!(t.possible(), &set("0-5"));
    assert_eq!(t.l2().len(), 2, "one L2 per core by default");
    assert!(t.l1d().is_empty());
    assert_eq!(t.nodes().len(), 1);
    assert_eq!(t.nodes()[0].cpus, set("0-3"));
    assert_eq!(t.allowed(), t.online());
    let names: Vec<String> = t.configurations().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["2c-1l3", "1c-1l3", "4t-1l3"]);
}

#[test]
fn loader_errors() {
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut v = small();
        f(v.as_object_mut().unwrap());
        load(&v)
    };
    // Not JSON.
    assert!(matches!(
        MachineDescription::from_json("{\"format\": "),
        Err(MachineError::Json(_))
    ));
    // Missing fields.
    for field in ["format", "name", "cores", "l3", "packages"] {
        match with(&|o| {
            o.remove(field);
        }) {
            Err(MachineError::MissingField { field: f }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    match with(&|o| {
        o.insert("l3".into(), json!([{"size": 1}]));
    }) {
        Err(MachineError::MissingField { field }) => assert_eq!(field, "l3[0].cpus"),
        other => panic!("{other:?}"),
    }
    // Wrong format.
    assert!(matches!(
        with(&|o| {
            o.insert("format".into(), json!("percid-topology/9"));
        }),
        Err(MachineError::UnsupportedFormat { .. })
    ));
    // Unknown domain kind / typo.
    match with(&|o| {
        o.insert("l4".into(), json!([{"cpus": "0-3"}]));
    }) {
        Err(MachineError::UnknownField { field }) => assert_eq!(field, "l4"),
        other => panic!("{other:?}"),
    }
    match with(&|o| {
        o.insert("l3".into(), json!([{"cpus": "0-3", "sise": 1}]));
    }) {
        Err(MachineError::UnknownField { field }) => assert_eq!(field, "l3[0].sise"),
        other => panic!("{other:?}"),
    }
    // Wrong types.
    match with(&|o| {
        o.insert("cores".into(), json!("0-3"));
    }) {
        Err(MachineError::WrongType { field, .. }) => assert_eq!(field, "cores"),
        other => panic!("{other:?}"),
    }
    match with(&|o| {
        o.insert("l3".into(), json!([{"cpus": "0-3", "size": -1}]));
    }) {
        Err(MachineError::WrongType { field, .. }) => assert_eq!(field, "l3[0].size"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        with(&|o| {
            o.insert("cost_model".into(), json!([1, 2]));
        }),
        Err(MachineError::WrongType { .. })
    ));
    // Bad CPU list.
    match with(&|o| {
        o.insert("cores".into(), json!(["0,2", "3-1"]));
    }) {
        Err(MachineError::BadCpuList { context, source }) => {
            assert_eq!(context, "cores[1]");
            assert_eq!(source, CpuSetError::ReversedRange { start: 3, end: 1 });
        }
        other => panic!("{other:?}"),
    }
    // CPU listed twice.
    match with(&|o| {
        o.insert("l3".into(), json!([{"cpus": "0-2"}, {"cpus": "2-3"}]));
    }) {
        Err(MachineError::Topology(TopologyError::CpuListedTwice {
            cpu: 2,
            kind: "l3",
            first: 0,
            second: 1,
        })) => {}
        other => panic!("{other:?}"),
    }
    // Online CPU in no domain.
    assert!(matches!(
        with(&|o| {
            o.insert("packages".into(), json!([{"cpus": "0-2"}]));
        }),
        Err(MachineError::Topology(TopologyError::CpuNotCovered {
            cpu: 3,
            kind: "packages"
        }))
    ));
    // Domain naming a CPU that is not online.
    assert!(matches!(
        with(&|o| {
            o.insert("l3".into(), json!([{"cpus": "0-4"}]));
        }),
        Err(MachineError::Topology(TopologyError::CpuNotOnline {
            cpu: 4,
            kind: "l3",
            index: 0
        }))
    ));
    // Online CPU that is not possible.
    assert!(matches!(
        with(&|o| {
            o.insert("possible".into(), json!("0-2"));
        }),
        Err(MachineError::Topology(TopologyError::OnlineNotPossible {
            cpu: 3
        }))
    ));
    // Empty domain, duplicate ids.
    assert!(matches!(
        with(&|o| {
            o.insert("l3".into(), json!([{"cpus": "0-3"}, {"cpus": ""}]));
        }),
        Err(MachineError::Topology(TopologyError::EmptyDomain {
            kind: "l3",
            index: 1
        }))
    ));
    assert!(matches!(
        with(&|o| {
            o.insert(
                "nodes".into(),
                json!([{"id": 1, "cpus": "0-1"}, {"id": 1, "cpus": "2-3"}]),
            );
        }),
        Err(MachineError::Topology(TopologyError::DuplicateId {
            kind: "nodes",
            id: 1
        }))
    ));
    // Every error reads as a sentence naming the culprit.
    let e = with(&|o| {
        o.insert("l3".into(), json!([{"cpus": "0-2"}, {"cpus": "2-3"}]));
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "CPU 2 is listed in both l3[0] and l3[1]");
}

#[test]
fn json_file_loader() {
    let path = std::env::temp_dir().join(format!("percid-topology-{}.json", std::process::id()));
    std::fs::write(
        &path,
        MachineDescription::preset("epyc-9654").unwrap().to_json(),
    )
    .unwrap();
    let t = MachineDescription::from_json_file(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(t.unwrap().topology.l3().len(), 24);
    assert!(matches!(
        MachineDescription::from_json_file(&path),
        Err(MachineError::Io { .. })
    ));
}

#[test]
fn documented_example_loads() {
    let docs = include_str!("../src/machine/mod.rs");
    let json: String = docs
        .lines()
        .skip_while(|l| !l.starts_with("//! ```json"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| l.trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(json.contains("percid-topology/1"), "example not found");
    let m = MachineDescription::from_json(&json).unwrap();
    assert_eq!(m.name(), "two-cores");
    assert_eq!(m.topology.l3()[0].size, Some(314_572_800));
    assert_eq!(m.cost_model, Some(json!({"anything": "kept as is"})));
}
