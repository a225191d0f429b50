//! Reading captured sysfs trees (tests/fixtures/sysfs/*) and this machine's /sys.

use std::path::{Path, PathBuf};

use percid::topology::{CpuSet, DomainOrigin, Topology, TopologyError, TopologySource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
}

fn load(name: &str) -> Topology {
    Topology::from_sysfs_root(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn set(s: &str) -> CpuSet {
    s.parse().unwrap()
}

fn lists<'a>(sets: impl Iterator<Item = &'a CpuSet>) -> Vec<String> {
    sets.map(|s| s.to_string()).collect()
}

#[test]
fn this_machine_fixture() {
    let t = load("this-machine");
    assert_eq!(t.possible(), &set("0-1"));
    assert_eq!(t.online(), &set("0-1"));
    assert_eq!(t.allowed(), &set("0-1"));
    assert_eq!(lists(t.cores().iter().map(|c| &c.cpus)), ["0", "1"]);
    assert_eq!(t.threads_per_core(), 1);
    assert_eq!(lists(t.l3().iter().map(|d| &d.cpus)), ["0-1"]);
    assert_eq!(t.l3()[0].size, Some(307_200 * 1024));
    assert_eq!(t.l3()[0].origin, DomainOrigin::Cache);
    assert_eq!(lists(t.l2().iter().map(|d| &d.cpus)), ["0", "1"]);
    assert_eq!(t.l2()[1].size, Some(2048 * 1024));
    assert_eq!(t.l1d().len(), 2);
    assert_eq!(t.l1d()[0].size, Some(48 * 1024), "L1d, not L1i (32K)");
    assert_eq!(t.packages().len(), 1);
    assert_eq!(t.nodes().len(), 1);
    assert_eq!(t.nodes()[0].id, 0);
    assert_eq!(t.smt_siblings(1), Some(&set("1")));
    assert!(matches!(t.source(), TopologySource::Sysfs { .. }));
}

#[test]
fn two_socket_smt_fixture() {
    let t = load("two-socket-smt");
    assert_eq!(
        lists(t.cores().iter().map(|c| &c.cpus)),
        ["0,4", "1,5", "2,6", "3,7"]
    );
    assert_eq!(t.threads_per_core(), 2);
    assert_eq!(t.smt_siblings(6), Some(&set("2,6")));
    assert_eq!(
        lists(t.l3().iter().map(|d| &d.cpus)),
        ["0-1,4-5", "2-3,6-7"]
    );
    assert!(t.l3().iter().all(|d| d.size == Some(16 << 20)));
    assert_eq!(t.l2().len(), 4);
    assert!(t.l2().iter().all(|d| d.size == Some(1 << 20)));
    assert_eq!(
        t.packages().iter().map(|p| p.id).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(t.packages()[1].cpus, set("2-3,6-7"));
    assert_eq!(
        lists(t.nodes().iter().map(|d| &d.cpus)),
        ["0-1,4-5", "2-3,6-7"]
    );
    assert_eq!(t.l3_of(7), Some(1));
    assert_eq!(t.package_of(4), Some(0));
    assert_eq!(t.node_of(3), Some(1));
}

#[test]
fn offline_cpus_and_holes() {
    let t = load("offline-holes");
    assert_eq!(t.possible(), &set("0-3,8-11"));
    assert_eq!(t.online(), &set("0-2,8-11"));
    assert_eq!(t.cores().len(), 7);
    assert_eq!(t.core_of(3), None, "offline CPU 3 is in no core");
    // The L3 list of CPUs 0-2 names offline CPU 3: intersected with the online CPUs.
    assert_eq!(lists(t.l3().iter().map(|d| &d.cpus)), ["0-2", "8-11"]);
    assert_eq!(t.l3()[0].size, Some(8 << 20));
    assert_eq!(t.l2()[0].size, Some(512 << 10));
    // node2 has no CPU (memory only) and is left out.
    assert_eq!(
        t.nodes()
            .iter()
            .map(|n| (n.id, n.cpus.to_string()))
            .collect::<Vec<_>>(),
        [(0, "0-2".to_string()), (1, "8-11".to_string())]
    );
}

#[test]
fn no_cache_falls_back_to_die() {
    let t = load("no-cache");
    assert_eq!(lists(t.l3().iter().map(|d| &d.cpus)), ["0-1", "2-3"]);
    assert!(
        t.l3()
            .iter()
            .all(|d| d.origin == DomainOrigin::Die && d.size.is_none())
    );
    assert!(t.l2().iter().all(|d| d.origin == DomainOrigin::Core));
    assert_eq!(t.l2().len(), 4);
    assert!(t.l1d().is_empty());
    assert_eq!(t.packages().len(), 1);
    assert_eq!(t.nodes()[0].cpus, set("0-3"));
}

#[test]
fn no_cache_no_die_falls_back_to_package() {
    let t = load("no-cache-no-die");
    assert_eq!(lists(t.l3().iter().map(|d| &d.cpus)), ["0-1", "2-3"]);
    assert!(t.l3().iter().all(|d| d.origin == DomainOrigin::Package));
    assert_eq!(
        t.packages().iter().map(|p| p.id).collect::<Vec<_>>(),
        [3, 7]
    );
    // No node directory: one node 0.
    assert_eq!(t.nodes().len(), 1);
    assert_eq!(t.nodes()[0].cpus, set("0-3"));
}

#[test]
fn bare_tree_uses_per_cpu_online_files_and_a_synthetic_domain() {
    let t = load("bare");
    assert_eq!(t.possible(), &set("0-3"));
    assert_eq!(t.online(), &set("0-2"));
    assert_eq!(lists(t.cores().iter().map(|c| &c.cpus)), ["0", "1", "2"]);
    assert_eq!(t.l3().len(), 1);
    assert_eq!(t.l3()[0].origin, DomainOrigin::Synthetic);
    assert_eq!(t.l3()[0].cpus, set("0-2"));
    assert_eq!(t.packages()[0].cpus, set("0-2"));
}

/// A scratch copy of a fixture, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn copy_of(name: &str, tag: &str) -> Scratch {
        let dst =
            std::env::temp_dir().join(format!("percid-topology-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dst);
        copy_dir(&fixture(name), &dst);
        Scratch(dst)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

#[test]
fn bad_sysfs_content_is_a_typed_error() {
    let s = Scratch::copy_of("two-socket-smt", "bad-list");
    let online = s.0.join("devices/system/cpu/online");
    std::fs::write(&online, "0-7,\n").unwrap();
    match Topology::from_sysfs_root(&s.0) {
        Err(TopologyError::BadCpuList { context, .. }) => assert!(context.ends_with("online")),
        other => panic!("{other:?}"),
    }
    std::fs::write(&online, "0-7\n").unwrap();
    let size = s.0.join("devices/system/cpu/cpu2/cache/index3/size");
    std::fs::write(&size, "lots\n").unwrap();
    match Topology::from_sysfs_root(&s.0) {
        Err(e @ TopologyError::BadValue { .. }) => assert!(e.to_string().contains("lots")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn inconsistent_lists_still_partition() {
    // CPU 4 claims to share its core with CPU 5 only; CPU 0 says 0,4. CPU 4 stays in core 0.
    let s = Scratch::copy_of("two-socket-smt", "inconsistent");
    let f = s.0.join("devices/system/cpu/cpu4/topology/core_cpus_list");
    std::fs::write(f, "4-5\n").unwrap();
    let t = Topology::from_sysfs_root(&s.0).unwrap();
    assert_eq!(
        lists(t.cores().iter().map(|c| &c.cpus)),
        ["0,4", "1,5", "2,6", "3,7"]
    );
}

#[test]
fn missing_root_is_an_io_error() {
    match Topology::from_sysfs_root(fixture("does-not-exist")) {
        Err(e @ TopologyError::Io { .. }) => assert!(e.to_string().contains("does-not-exist")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn this_machine_from_sys() {
    let t = Topology::from_sysfs().unwrap();
    let allowed = percid::topology::allowed_cpus().unwrap();
    assert_eq!(t.allowed(), &allowed.intersection(t.online()));
    assert!(!t.allowed().is_empty());
    assert!(t.online().is_subset(t.possible()));
}

#[test]
fn affinity_mask_narrows_allowed_cpus() {
    let t = load("two-socket-smt").with_allowed(&set("1,3,5,6,99"));
    assert_eq!(
        t.allowed(),
        &set("1,3,5,6"),
        "only online CPUs can be allowed"
    );
    assert!(
        load("two-socket-smt")
            .with_allowed(&set("9"))
            .allowed()
            .is_empty()
    );
}
