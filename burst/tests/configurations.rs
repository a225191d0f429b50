//! Benchmark configurations derived from captured sysfs trees (the library's
//! tests/fixtures/sysfs) and from this machine.

use std::path::{Path, PathBuf};

use percid::topology::{CpuSet, Topology};
use percid_burst::machine::{Configurations, MachineError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/sysfs")
        .join(name)
}

fn load(name: &str) -> Topology {
    Topology::from_sysfs_root(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn set(s: &str) -> CpuSet {
    s.parse().unwrap()
}

fn config_names(t: &Topology) -> Vec<String> {
    t.configurations().into_iter().map(|c| c.name).collect()
}

#[test]
fn this_machine_fixture() {
    let t = load("this-machine");
    // The configurations meaningful on 2 cores sharing one L3: both cores, and one core.
    assert_eq!(config_names(&t), ["2c-1l3", "1c-1l3"]);
    assert_eq!(t.configuration("2c-1l3").unwrap().cpus, set("0-1"));
    assert_eq!(t.configuration("1c-1l3").unwrap().cpus, set("0"));
    // Names dropped as duplicates still resolve.
    assert_eq!(t.configuration("2t-1l3").unwrap().cpus, set("0-1"));
    match t.configuration("8c-1l3") {
        Err(MachineError::UnknownConfiguration { available, .. }) => {
            assert_eq!(available, ["2c-1l3", "1c-1l3"])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_socket_smt_fixture() {
    let t = load("two-socket-smt");
    assert_eq!(config_names(&t), ["2c-1l3", "2c-2l3", "4c-2l3", "8t-2l3"]);
    assert_eq!(t.configuration("2c-1l3").unwrap().cpus, set("0-1"));
    assert_eq!(t.configuration("2c-2l3").unwrap().cpus, set("0,2"));
    assert_eq!(t.configuration("4c-2l3").unwrap().cpus, set("0-3"));
    assert_eq!(t.configuration("8t-2l3").unwrap().cpus, set("0-7"));
}

#[test]
fn offline_cpus_and_holes() {
    let t = load("offline-holes");
    assert_eq!(config_names(&t), ["3c-1l3", "2c-2l3", "7c-2l3"]);
    assert_eq!(t.configuration("2c-2l3").unwrap().cpus, set("0,8"));
}

#[test]
fn bare_tree_has_one_synthetic_l3() {
    assert_eq!(config_names(&load("bare")), ["3c-1l3", "1c-1l3"]);
}

#[test]
fn this_machine_from_sys() {
    let t = Topology::from_sysfs().unwrap();
    let configs = t.configurations();
    assert!(!configs.is_empty());
    for c in &configs {
        assert!(c.cpus.is_subset(t.allowed()), "{c}");
        assert_eq!(t.configuration(&c.name).unwrap(), *c);
    }
    // The "all threads" configuration covers exactly the allowed CPUs.
    let union = configs
        .iter()
        .fold(CpuSet::new(), |acc, c| acc.union(&c.cpus));
    assert_eq!(&union, t.allowed());
}

#[test]
fn affinity_mask_narrows_configurations() {
    let t = load("two-socket-smt").with_allowed(&set("1,3,5,6"));
    // Usable cores: 1 (1,5), 2 (6), 3 (3); L3 #0 has core 1, L3 #1 has cores 2 and 3.
    let names = config_names(&t);
    assert_eq!(names, ["1c-1l3", "2c-2l3", "3c-2l3", "4t-2l3"]);
    assert_eq!(t.configuration("1c-1l3").unwrap().cpus, set("1"));
    assert_eq!(t.configuration("2c-2l3").unwrap().cpus, set("1,6"));
    assert_eq!(t.configuration("3c-2l3").unwrap().cpus, set("1,3,6"));
    assert_eq!(t.configuration("4t-2l3").unwrap().cpus, set("1,3,5,6"));
    // Nothing allowed, nothing to run on.
    assert!(
        load("two-socket-smt")
            .with_allowed(&set("9"))
            .configurations()
            .is_empty()
    );
}
