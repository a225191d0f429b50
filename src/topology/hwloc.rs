//! Cross-check of the sysfs reading with libhwloc (feature `hwloc`, needs libhwloc >= 2.8
//! and pkg-config at build time).
//!
//! [`hwloc_view`] asks libhwloc for the L3 caches and cores of this machine;
//! [`compare`] reports every L3 domain or core that the two sources see differently. libhwloc
//! leaves out the CPUs this process may not use, so the comparison is made on the CPUs hwloc
//! covers: sysfs domains are intersected with them first.

use std::fmt;

use hwlocality::object::TopologyObject;
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;

use super::{CpuSet, Topology, TopologyError};

/// One L3 cache as libhwloc sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwlocL3 {
    /// Its CPUs (PUs, by OS index).
    pub cpus: CpuSet,
    /// Its size in bytes, if hwloc knows it.
    pub size: Option<u64>,
}

/// What libhwloc says about this machine's L3 domains and cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwlocView {
    /// Every CPU in hwloc's topology (the allowed ones, by hwloc's default).
    pub cpus: CpuSet,
    /// L3 caches, sorted by first CPU.
    pub l3: Vec<HwlocL3>,
    /// Cores (their hardware threads), sorted by first CPU.
    pub cores: Vec<CpuSet>,
}

/// A disagreement between sysfs and hwloc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// An L3 domain only sysfs has (CPUs restricted to hwloc's).
    L3OnlyInSysfs(CpuSet),
    /// An L3 domain only hwloc has.
    L3OnlyInHwloc(CpuSet),
    /// The same L3 domain with different sizes.
    L3Size {
        /// The domain.
        cpus: CpuSet,
        /// Size per sysfs.
        sysfs: Option<u64>,
        /// Size per hwloc.
        hwloc: Option<u64>,
    },
    /// A core only sysfs has.
    CoreOnlyInSysfs(CpuSet),
    /// A core only hwloc has.
    CoreOnlyInHwloc(CpuSet),
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::L3OnlyInSysfs(c) => write!(f, "L3 domain {c} per sysfs, not per hwloc"),
            Difference::L3OnlyInHwloc(c) => write!(f, "L3 domain {c} per hwloc, not per sysfs"),
            Difference::L3Size { cpus, sysfs, hwloc } => write!(
                f,
                "L3 domain {cpus}: size {sysfs:?} bytes per sysfs, {hwloc:?} per hwloc"
            ),
            Difference::CoreOnlyInSysfs(c) => write!(f, "core {c} per sysfs, not per hwloc"),
            Difference::CoreOnlyInHwloc(c) => write!(f, "core {c} per hwloc, not per sysfs"),
        }
    }
}

/// The CPUs of an hwloc object.
fn object_cpus(obj: &TopologyObject) -> CpuSet {
    obj.cpuset()
        .map(|set| set.iter_set().map(usize::from).collect())
        .unwrap_or_default()
}

/// Loads libhwloc's topology of this machine and extracts L3 caches and cores.
pub fn hwloc_view() -> Result<HwlocView, TopologyError> {
    let topology = hwlocality::Topology::new().map_err(|e| TopologyError::Hwloc {
        message: e.to_string(),
    })?;
    let cpus: CpuSet = topology.cpuset().iter_set().map(usize::from).collect();
    let mut l3: Vec<HwlocL3> = topology
        .objects_with_type(ObjectType::L3Cache)
        .map(|obj| HwlocL3 {
            cpus: object_cpus(obj),
            size: match obj.attributes() {
                Some(ObjectAttributes::Cache(c)) => c.size().map(|s| s.get()),
                _ => None,
            },
        })
        .filter(|d| !d.cpus.is_empty())
        .collect();
    l3.sort_by_key(|d| d.cpus.first());
    let mut cores: Vec<CpuSet> = topology
        .objects_with_type(ObjectType::Core)
        .map(object_cpus)
        .filter(|c| !c.is_empty())
        .collect();
    cores.sort_by_key(|c| c.first());
    Ok(HwlocView { cpus, l3, cores })
}

/// Differences between `topology` (normally [`Topology::from_sysfs`]) and `hwloc` in L3 domains
/// (CPUs and sizes) and cores; empty when they agree. Sysfs domains are restricted to the CPUs
/// hwloc covers, and those left empty are skipped.
pub fn compare(topology: &Topology, hwloc: &HwlocView) -> Vec<Difference> {
    let restrict = |sets: Vec<(CpuSet, Option<u64>)>| -> Vec<(CpuSet, Option<u64>)> {
        sets.into_iter()
            .map(|(c, s)| (c.intersection(&hwloc.cpus), s))
            .filter(|(c, _)| !c.is_empty())
            .collect()
    };
    let sys_l3 = restrict(
        topology
            .l3()
            .iter()
            .map(|d| (d.cpus.clone(), d.size))
            .collect(),
    );
    let sys_cores = restrict(
        topology
            .cores()
            .iter()
            .map(|c| (c.cpus.clone(), None))
            .collect(),
    );
    let mut out = Vec::new();
    for (cpus, size) in &sys_l3 {
        match hwloc.l3.iter().find(|h| &h.cpus == cpus) {
            None => out.push(Difference::L3OnlyInSysfs(cpus.clone())),
            Some(h) if h.size != *size => out.push(Difference::L3Size {
                cpus: cpus.clone(),
                sysfs: *size,
                hwloc: h.size,
            }),
            Some(_) => {}
        }
    }
    for h in &hwloc.l3 {
        if !sys_l3.iter().any(|(c, _)| c == &h.cpus) {
            out.push(Difference::L3OnlyInHwloc(h.cpus.clone()));
        }
    }
    for (cpus, _) in &sys_cores {
        if !hwloc.cores.contains(cpus) {
            out.push(Difference::CoreOnlyInSysfs(cpus.clone()));
        }
    }
    for h in &hwloc.cores {
        if !sys_cores.iter().any(|(c, _)| c == h) {
            out.push(Difference::CoreOnlyInHwloc(h.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> CpuSet {
        s.parse().unwrap()
    }

    /// 8 cores with SMT siblings `k, k + 8`, one 16 MiB L3 (the shape of a Xeon E-2388G).
    fn eight_cores_two_threads() -> Topology {
        use crate::topology::{
            CacheDomain, Core, Domain, DomainOrigin, TopologyParts, TopologySource,
        };
        let online = set("0-15");
        let cores: Vec<Core> = (0..8)
            .map(|k| Core {
                cpus: [k, k + 8].into_iter().collect(),
            })
            .collect();
        let l2 = cores
            .iter()
            .map(|c| CacheDomain {
                size: None,
                cpus: c.cpus.clone(),
                origin: DomainOrigin::Core,
            })
            .collect();
        let parts = TopologyParts {
            name: "test".into(),
            note: None,
            possible: online.clone(),
            online: online.clone(),
            cores,
            l1d: Vec::new(),
            l2,
            l3: vec![CacheDomain {
                size: Some(16 << 20),
                cpus: online.clone(),
                origin: DomainOrigin::Cache,
            }],
            packages: vec![Domain {
                id: 0,
                cpus: online.clone(),
            }],
            nodes: vec![Domain {
                id: 0,
                cpus: online,
            }],
        };
        Topology::from_parts(parts, TopologySource::Description).unwrap()
    }

    #[test]
    fn compare_reports_each_difference() {
        let t = eight_cores_two_threads();
        let mut view = HwlocView {
            cpus: set("0-15"),
            l3: vec![HwlocL3 {
                cpus: set("0-15"),
                size: Some(16 << 20),
            }],
            cores: (0..8).map(|k| [k, k + 8].into_iter().collect()).collect(),
        };
        assert!(compare(&t, &view).is_empty());
        view.l3[0].size = Some(1);
        view.cores[0] = set("0");
        view.cores.push(set("8"));
        let diffs = compare(&t, &view);
        assert!(diffs.contains(&Difference::L3Size {
            cpus: set("0-15"),
            sysfs: Some(16 << 20),
            hwloc: Some(1)
        }));
        assert!(diffs.contains(&Difference::CoreOnlyInSysfs(set("0,8"))));
        assert!(diffs.contains(&Difference::CoreOnlyInHwloc(set("0"))));
        assert!(diffs.contains(&Difference::CoreOnlyInHwloc(set("8"))));
        assert_eq!(diffs.len(), 4);
        // Restricting hwloc's CPUs restricts the comparison.
        let view = HwlocView {
            cpus: set("0-1"),
            l3: vec![HwlocL3 {
                cpus: set("0-1"),
                size: Some(16 << 20),
            }],
            cores: vec![set("0"), set("1")],
        };
        assert!(compare(&t, &view).is_empty());
    }
}
