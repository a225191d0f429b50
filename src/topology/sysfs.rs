//! Reading a topology from a sysfs tree (`ROOT/devices/system/{cpu,node}`), with fallbacks.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::model::{CacheDomain, Core, Domain, DomainOrigin, TopologyParts};
use super::{CpuSet, TopologyError};

/// One cache of one CPU, from `cpuN/cache/indexM`.
struct CacheEntry {
    level: u32,
    /// `Data`, `Instruction` or `Unified`.
    kind: String,
    size: Option<u64>,
    shared: CpuSet,
}

/// What sysfs says about one online CPU.
#[derive(Default)]
struct CpuFacts {
    core: Option<CpuSet>,
    die: Option<CpuSet>,
    package: Option<CpuSet>,
    package_id: Option<usize>,
    caches: Vec<CacheEntry>,
}

/// Reads a file; `Ok(None)` if it does not exist.
fn read_opt(path: &Path) -> Result<Option<String>, TopologyError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TopologyError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a CPU-list file; `Ok(None)` if it does not exist.
fn read_list(path: &Path) -> Result<Option<CpuSet>, TopologyError> {
    read_opt(path)?
        .map(|s| {
            CpuSet::parse(&s).map_err(|source| TopologyError::BadCpuList {
                context: path.display().to_string(),
                source,
            })
        })
        .transpose()
}

/// Reads a file holding one unsigned number; `Ok(None)` if it does not exist.
fn read_number(path: &Path) -> Result<Option<u64>, TopologyError> {
    read_opt(path)?
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| TopologyError::BadValue {
                    path: path.to_path_buf(),
                    value: s.trim().to_string(),
                })
        })
        .transpose()
}

/// Parses a cache `size` file: `48K`, `2048K`, `32M`, or bytes.
fn parse_size(path: &Path, text: &str) -> Result<u64, TopologyError> {
    let t = text.trim();
    let bad = || TopologyError::BadValue {
        path: path.to_path_buf(),
        value: t.to_string(),
    };
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Numbers `N` of the entries `PREFIXN` of a directory; empty if it does not exist.
fn numbered_entries(dir: &Path, prefix: &str) -> Result<Vec<usize>, TopologyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TopologyError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| TopologyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = rest.parse::<usize>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads what sysfs says about `cpu`.
fn read_cpu(cpu_dir: &Path, cpu: usize) -> Result<CpuFacts, TopologyError> {
    let dir = cpu_dir.join(format!("cpu{cpu}"));
    let topo = dir.join("topology");
    let mut facts = CpuFacts {
        core: match read_list(&topo.join("core_cpus_list"))? {
            Some(s) => Some(s),
            None => read_list(&topo.join("thread_siblings_list"))?,
        },
        die: read_list(&topo.join("die_cpus_list"))?,
        package: match read_list(&topo.join("package_cpus_list"))? {
            Some(s) => Some(s),
            None => read_list(&topo.join("core_siblings_list"))?,
        },
        package_id: read_number(&topo.join("physical_package_id"))?.map(|n| n as usize),
        caches: Vec::new(),
    };
    let cache_dir = dir.join("cache");
    for index in numbered_entries(&cache_dir, "index")? {
        let idir = cache_dir.join(format!("index{index}"));
        let (Some(level), Some(kind), Some(shared)) = (
            read_number(&idir.join("level"))?,
            read_opt(&idir.join("type"))?,
            read_list(&idir.join("shared_cpu_list"))?,
        ) else {
            continue;
        };
        let size_path = idir.join("size");
        let size = read_opt(&size_path)?
            .map(|s| parse_size(&size_path, &s))
            .transpose()?;
        facts.caches.push(CacheEntry {
            level: level as u32,
            kind: kind.trim().to_string(),
            size,
            shared,
        });
    }
    Ok(facts)
}

/// Groups `online` by `group_of` when every CPU has a group, `None` otherwise. Groups are
/// intersected with `online`, and a CPU already placed is never placed again, so the result
/// partitions `online` even if sysfs is inconsistent. Groups come in order of first CPU.
fn partition(
    online: &CpuSet,
    mut group_of: impl FnMut(usize) -> Option<CpuSet>,
) -> Option<Vec<(usize, CpuSet)>> {
    let mut placed = CpuSet::new();
    let mut groups = Vec::new();
    for cpu in online {
        if placed.contains(cpu) {
            continue;
        }
        let mut group = group_of(cpu)?.intersection(online).difference(&placed);
        group.insert(cpu);
        placed = placed.union(&group);
        groups.push((cpu, group));
    }
    Some(groups)
}

/// The cache of `facts` at `level` that holds data (Data or Unified).
fn data_cache(facts: &CpuFacts, level: u32) -> Option<&CacheEntry> {
    facts
        .caches
        .iter()
        .find(|c| c.level == level && (c.kind == "Data" || c.kind == "Unified"))
}

/// Cache domains of `level` from sysfs, when every online CPU has such a cache.
fn cache_level(
    online: &CpuSet,
    facts: &BTreeMap<usize, CpuFacts>,
    level: u32,
) -> Option<Vec<CacheDomain>> {
    let groups = partition(online, |cpu| {
        data_cache(&facts[&cpu], level).map(|c| c.shared.clone())
    })?;
    Some(
        groups
            .into_iter()
            .map(|(first, cpus)| CacheDomain {
                size: data_cache(&facts[&first], level).and_then(|c| c.size),
                cpus,
                origin: DomainOrigin::Cache,
            })
            .collect(),
    )
}

/// Stand-in domains without sizes.
fn stand_in(groups: Vec<(usize, CpuSet)>, origin: DomainOrigin) -> Vec<CacheDomain> {
    groups
        .into_iter()
        .map(|(_, cpus)| CacheDomain {
            size: None,
            cpus,
            origin,
        })
        .collect()
}

/// Reads the topology parts under `root` (the directory standing for `/sys`).
pub(crate) fn read(root: &Path, name: String) -> Result<TopologyParts, TopologyError> {
    let cpu_dir: PathBuf = root.join("devices/system/cpu");
    if !cpu_dir.is_dir() {
        return Err(TopologyError::Io {
            path: cpu_dir,
            source: std::io::Error::new(ErrorKind::NotFound, "no such directory"),
        });
    }
    let dirs: CpuSet = numbered_entries(&cpu_dir, "cpu")?.into_iter().collect();
    let possible = read_list(&cpu_dir.join("possible"))?.unwrap_or_else(|| dirs.clone());
    let online = match read_list(&cpu_dir.join("online"))? {
        Some(s) => s,
        None => {
            // Per-CPU `online` files; CPUs without one (often cpu0) cannot go offline.
            let mut online = CpuSet::new();
            for cpu in &dirs {
                let path = cpu_dir.join(format!("cpu{cpu}/online"));
                if read_number(&path)? != Some(0) {
                    online.insert(cpu);
                }
            }
            online
        }
    };
    if online.is_empty() {
        return Err(TopologyError::NoCpus {
            context: cpu_dir.display().to_string(),
        });
    }
    let possible = possible.union(&online);

    let mut facts = BTreeMap::new();
    for cpu in &online {
        facts.insert(cpu, read_cpu(&cpu_dir, cpu)?);
    }

    // Cores: a CPU with no sibling list is a core of its own.
    let cores: Vec<Core> = partition(&online, |cpu| {
        Some(facts[&cpu].core.clone().unwrap_or_default())
    })
    .unwrap_or_default()
    .into_iter()
    .map(|(_, cpus)| Core { cpus })
    .collect();

    // Packages: package_cpus_list, else physical_package_id, else one package.
    let packages: Vec<Domain> =
        if let Some(groups) = partition(&online, |cpu| facts[&cpu].package.clone()) {
            groups
                .into_iter()
                .enumerate()
                .map(|(i, (first, cpus))| Domain {
                    id: facts[&first].package_id.unwrap_or(i),
                    cpus,
                })
                .collect()
        } else if online.iter().all(|cpu| facts[&cpu].package_id.is_some()) {
            let mut by_id: BTreeMap<usize, CpuSet> = BTreeMap::new();
            for cpu in &online {
                by_id
                    .entry(facts[&cpu].package_id.unwrap_or(0))
                    .or_default()
                    .insert(cpu);
            }
            by_id
                .into_iter()
                .map(|(id, cpus)| Domain { id, cpus })
                .collect()
        } else {
            vec![Domain {
                id: 0,
                cpus: online.clone(),
            }]
        };

    let l1d = cache_level(&online, &facts, 1).unwrap_or_default();
    let l2 = cache_level(&online, &facts, 2).unwrap_or_else(|| {
        cores
            .iter()
            .map(|c| CacheDomain {
                size: None,
                cpus: c.cpus.clone(),
                origin: DomainOrigin::Core,
            })
            .collect()
    });
    let l3 = if let Some(l3) = cache_level(&online, &facts, 3) {
        l3
    } else if let Some(groups) = partition(&online, |cpu| facts[&cpu].die.clone()) {
        stand_in(groups, DomainOrigin::Die)
    } else if let Some(groups) = partition(&online, |cpu| facts[&cpu].package.clone()) {
        stand_in(groups, DomainOrigin::Package)
    } else {
        stand_in(vec![(0, online.clone())], DomainOrigin::Synthetic)
    };

    let nodes = read_nodes(root, &online)?;

    Ok(TopologyParts {
        name,
        note: None,
        possible,
        online,
        cores,
        l1d,
        l2,
        l3,
        packages,
        nodes,
    })
}

/// NUMA nodes with online CPUs, from `node/nodeN/cpulist`. Without node information, or if it
/// does not partition the online CPUs, one node 0 holds them all.
fn read_nodes(root: &Path, online: &CpuSet) -> Result<Vec<Domain>, TopologyError> {
    let node_dir = root.join("devices/system/node");
    let mut nodes = Vec::new();
    for id in numbered_entries(&node_dir, "node")? {
        let Some(cpus) = read_list(&node_dir.join(format!("node{id}/cpulist")))? else {
            continue;
        };
        let cpus = cpus.intersection(online);
        if !cpus.is_empty() {
            nodes.push(Domain { id, cpus });
        }
    }
    let covered = nodes.iter().try_fold(CpuSet::new(), |acc, n| {
        (!acc.intersects(&n.cpus)).then(|| acc.union(&n.cpus))
    });
    if covered.as_ref() != Some(online) {
        nodes = vec![Domain {
            id: 0,
            cpus: online.clone(),
        }];
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes() {
        let p = Path::new("size");
        assert_eq!(parse_size(p, "48K\n").unwrap(), 48 << 10);
        assert_eq!(parse_size(p, "307200K").unwrap(), 307_200 << 10);
        assert_eq!(parse_size(p, "32M").unwrap(), 32 << 20);
        assert_eq!(parse_size(p, "512").unwrap(), 512);
        assert!(matches!(
            parse_size(p, "12Q"),
            Err(TopologyError::BadValue { .. })
        ));
        assert!(parse_size(p, "K").is_err());
        assert!(parse_size(p, "99999999999999999999G").is_err());
    }

    #[test]
    fn partition_repairs_inconsistent_groups() {
        let online: CpuSet = "0-3".parse().unwrap();
        // CPU 0 claims 0-1, CPU 1 claims 1-2: CPU 1 stays with 0, CPU 2 gets its own group.
        let groups = partition(&online, |cpu| {
            Some(match cpu {
                0 => "0-1".parse().unwrap(),
                1 | 2 => "1-2".parse().unwrap(),
                _ => "3,9".parse().unwrap(),
            })
        })
        .unwrap();
        let sets: Vec<String> = groups.iter().map(|(_, s)| s.to_string()).collect();
        assert_eq!(sets, ["0-1", "2", "3"]);
        assert!(partition(&online, |cpu| (cpu != 2).then(CpuSet::new)).is_none());
    }
}
