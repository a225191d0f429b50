//! The sysfs reading agrees with libhwloc on this machine (feature `hwloc`).
#![cfg(feature = "hwloc")]

use percid::topology::Topology;
use percid::topology::hwloc::{compare, hwloc_view};

#[test]
fn sysfs_and_hwloc_agree_on_this_machine() {
    let sysfs = Topology::from_sysfs().unwrap();
    let hwloc = hwloc_view().unwrap();
    assert!(!hwloc.cores.is_empty(), "hwloc found no core");
    // hwloc keeps the CPUs of the process's cpuset (cgroup), which holds its affinity mask.
    assert!(hwloc.cpus.is_subset(sysfs.online()));
    assert!(sysfs.allowed().is_subset(&hwloc.cpus));
    let differences = compare(&sysfs, &hwloc);
    assert!(
        differences.is_empty(),
        "sysfs and hwloc disagree:\n{}",
        differences
            .iter()
            .map(|d| format!("  {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Same numbers of domains on the CPUs both see.
    assert_eq!(
        hwloc.cores.len(),
        sysfs
            .cores()
            .iter()
            .filter(|c| c.cpus.intersects(&hwloc.cpus))
            .count()
    );
    assert_eq!(
        hwloc.l3.len(),
        sysfs
            .l3()
            .iter()
            .filter(|d| d.cpus.intersects(&hwloc.cpus))
            .count()
    );
}
