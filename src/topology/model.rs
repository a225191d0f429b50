//! [`Topology`] and its parts: cores, cache domains, packages, NUMA nodes; the validation every
//! topology passes, whether read from sysfs, loaded from JSON or built in.

use std::fmt;
use std::path::PathBuf;

use super::{CpuSet, TopologyError};

/// One core: the hardware threads (SMT siblings) that share it. The first CPU of `cpus` is the
/// core's *first thread*, the one configurations use when they take one thread per core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Core {
    /// The core's hardware threads (online CPUs).
    pub cpus: CpuSet,
}

/// Where the CPUs of a cache domain come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainOrigin {
    /// A real cache: sysfs `cache/index*/shared_cpu_list`, or a description that says so.
    Cache,
    /// No cache information: the die (`topology/die_cpus_list`) stands in for it.
    Die,
    /// No cache or die information: the package stands in for it.
    Package,
    /// No cache information: the core stands in for it (L2 only).
    Core,
    /// Nothing known: one domain of all online CPUs.
    Synthetic,
}

impl DomainOrigin {
    /// The JSON spelling: `cache`, `die`, `package`, `core`, `synthetic`.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainOrigin::Cache => "cache",
            DomainOrigin::Die => "die",
            DomainOrigin::Package => "package",
            DomainOrigin::Core => "core",
            DomainOrigin::Synthetic => "synthetic",
        }
    }

    /// Inverse of [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            DomainOrigin::Cache,
            DomainOrigin::Die,
            DomainOrigin::Package,
            DomainOrigin::Core,
            DomainOrigin::Synthetic,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

/// The CPUs sharing one cache (an L1d, L2 or L3 instance), or what stands in for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDomain {
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// The online CPUs that share it.
    pub cpus: CpuSet,
    /// Whether it is a real cache or a stand-in.
    pub origin: DomainOrigin,
}

/// A package (socket) or a NUMA node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The kernel's number (`physical_package_id`, the `N` of `nodeN`).
    pub id: usize,
    /// Its online CPUs.
    pub cpus: CpuSet,
}

/// Where a [`Topology`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologySource {
    /// Read from a sysfs tree rooted at `root` (the directory standing for `/sys`).
    Sysfs {
        /// The root.
        root: PathBuf,
    },
    /// Built with [`Topology::from_parts`]: a machine description (JSON, a preset), a test.
    Description,
}

/// The raw material of a [`Topology`], validated by [`Topology::from_parts`]. Domain lists may
/// come in any order; the topology sorts each by its first CPU.
#[derive(Debug, Clone)]
pub struct TopologyParts {
    /// Short name (`epyc-9654`, `sysfs`).
    pub name: String,
    /// Free text: where the figures come from.
    pub note: Option<String>,
    /// Possible CPUs (may have holes; offline ones included).
    pub possible: CpuSet,
    /// Online CPUs, a subset of `possible`.
    pub online: CpuSet,
    /// Cores; must partition `online`.
    pub cores: Vec<Core>,
    /// L1 data caches; empty (unknown) or a partition of `online`.
    pub l1d: Vec<CacheDomain>,
    /// L2 domains; must partition `online`.
    pub l2: Vec<CacheDomain>,
    /// L3 domains; must partition `online`.
    pub l3: Vec<CacheDomain>,
    /// Packages; must partition `online`, ids distinct.
    pub packages: Vec<Domain>,
    /// NUMA nodes with CPUs; must partition `online`, ids distinct.
    pub nodes: Vec<Domain>,
}

/// A machine: its CPUs, cores and SMT siblings, cache domains, packages and NUMA nodes.
///
/// The same type describes the machine the process runs on ([`Topology::from_sysfs`]), a
/// captured sysfs tree ([`Topology::from_sysfs_root`]), or any machine built from its parts
/// ([`Topology::from_parts`]; the `percid-burst` package loads JSON descriptions and presets
/// that way).
///
/// Invariants (checked by [`Topology::from_parts`], through which every constructor goes):
/// `online` is non-empty and a subset of `possible`; `allowed` is a subset of `online`; cores,
/// L2 domains, L3 domains, packages and nodes each partition `online` (every online CPU in
/// exactly one, none empty, no offline CPU); L1d domains are empty or partition `online`; each
/// list is sorted by first CPU. Nesting (a core inside one L3) is not required: a core belongs
/// to the L3 domain of its first thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub(crate) name: String,
    pub(crate) note: Option<String>,
    pub(crate) source: TopologySource,
    pub(crate) possible: CpuSet,
    pub(crate) online: CpuSet,
    pub(crate) allowed: CpuSet,
    pub(crate) cores: Vec<Core>,
    pub(crate) l1d: Vec<CacheDomain>,
    pub(crate) l2: Vec<CacheDomain>,
    pub(crate) l3: Vec<CacheDomain>,
    pub(crate) packages: Vec<Domain>,
    pub(crate) nodes: Vec<Domain>,
}

/// Checks that `lists` (the CPU sets of the domains of one kind) partition `online`.
fn check_partition<'a>(
    kind: &'static str,
    lists: impl Iterator<Item = &'a CpuSet>,
    online: &CpuSet,
) -> Result<(), TopologyError> {
    // owner[cpu] = index of the domain that named it.
    let mut owner: Vec<Option<usize>> = vec![None; online.last().map_or(0, |l| l + 1)];
    for (index, cpus) in lists.enumerate() {
        if cpus.is_empty() {
            return Err(TopologyError::EmptyDomain { kind, index });
        }
        for cpu in cpus {
            if !online.contains(cpu) {
                return Err(TopologyError::CpuNotOnline { cpu, kind, index });
            }
            if let Some(first) = owner[cpu] {
                return Err(TopologyError::CpuListedTwice {
                    cpu,
                    kind,
                    first,
                    second: index,
                });
            }
            owner[cpu] = Some(index);
        }
    }
    match online.iter().find(|&cpu| owner[cpu].is_none()) {
        Some(cpu) => Err(TopologyError::CpuNotCovered { cpu, kind }),
        None => Ok(()),
    }
}

/// Checks that ids are distinct.
fn check_ids(kind: &'static str, domains: &[Domain]) -> Result<(), TopologyError> {
    let mut ids: Vec<usize> = domains.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(TopologyError::DuplicateId { kind, id: w[0] }),
        None => Ok(()),
    }
}

impl Topology {
    /// Validates `parts` (see the invariants on [`Topology`]) and builds a topology of the given
    /// source. The allowed CPUs are all online CPUs; narrow them with
    /// [`with_allowed`](Self::with_allowed).
    pub fn from_parts(
        mut parts: TopologyParts,
        source: TopologySource,
    ) -> Result<Topology, TopologyError> {
        if parts.online.is_empty() {
            return Err(TopologyError::NoCpus {
                context: parts.name,
            });
        }
        if let Some(cpu) = parts.online.difference(&parts.possible).first() {
            return Err(TopologyError::OnlineNotPossible { cpu });
        }
        let online = &parts.online;
        check_partition("cores", parts.cores.iter().map(|c| &c.cpus), online)?;
        if !parts.l1d.is_empty() {
            check_partition("l1d", parts.l1d.iter().map(|d| &d.cpus), online)?;
        }
        check_partition("l2", parts.l2.iter().map(|d| &d.cpus), online)?;
        check_partition("l3", parts.l3.iter().map(|d| &d.cpus), online)?;
        check_partition("packages", parts.packages.iter().map(|d| &d.cpus), online)?;
        check_partition("nodes", parts.nodes.iter().map(|d| &d.cpus), online)?;
        check_ids("packages", &parts.packages)?;
        check_ids("nodes", &parts.nodes)?;
        // Non-empty after the checks above, so `first()` is Some.
        parts.cores.sort_by_key(|c| c.cpus.first());
        for list in [&mut parts.l1d, &mut parts.l2, &mut parts.l3] {
            list.sort_by_key(|d| d.cpus.first());
        }
        for list in [&mut parts.packages, &mut parts.nodes] {
            list.sort_by_key(|d| d.cpus.first());
        }
        Ok(Topology {
            allowed: parts.online.clone(),
            name: parts.name,
            note: parts.note,
            source,
            possible: parts.possible,
            online: parts.online,
            cores: parts.cores,
            l1d: parts.l1d,
            l2: parts.l2,
            l3: parts.l3,
            packages: parts.packages,
            nodes: parts.nodes,
        })
    }

    /// The same topology with the allowed CPUs set to `allowed ∩ online` (configurations only
    /// use allowed CPUs). [`from_sysfs`](Self::from_sysfs) does this with the process's
    /// affinity mask.
    pub fn with_allowed(mut self, allowed: &CpuSet) -> Topology {
        self.allowed = self.online.intersection(allowed);
        self
    }

    /// Short name: a preset's or description's `name`, `sysfs` for `/sys`, `sysfs:ROOT` for
    /// another root.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Free-text note of a description (where its figures come from).
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Where the topology came from.
    pub fn source(&self) -> &TopologySource {
        &self.source
    }

    /// Possible CPUs (`cpu/possible`): every number the kernel may use, offline ones included.
    pub fn possible(&self) -> &CpuSet {
        &self.possible
    }

    /// Online CPUs.
    pub fn online(&self) -> &CpuSet {
        &self.online
    }

    /// Online CPUs this process may use: the affinity mask for [`from_sysfs`](Self::from_sysfs),
    /// all online CPUs otherwise (unless narrowed by [`with_allowed`](Self::with_allowed)).
    pub fn allowed(&self) -> &CpuSet {
        &self.allowed
    }

    /// Cores, sorted by first CPU.
    pub fn cores(&self) -> &[Core] {
        &self.cores
    }

    /// L1 data caches, sorted by first CPU; empty when unknown.
    pub fn l1d(&self) -> &[CacheDomain] {
        &self.l1d
    }

    /// L2 domains, sorted by first CPU.
    pub fn l2(&self) -> &[CacheDomain] {
        &self.l2
    }

    /// L3 domains, sorted by first CPU.
    pub fn l3(&self) -> &[CacheDomain] {
        &self.l3
    }

    /// Packages (sockets), sorted by first CPU.
    pub fn packages(&self) -> &[Domain] {
        &self.packages
    }

    /// NUMA nodes that have CPUs, sorted by first CPU.
    pub fn nodes(&self) -> &[Domain] {
        &self.nodes
    }

    /// Index into [`cores`](Self::cores) of the core of `cpu` (None if not online).
    pub fn core_of(&self, cpu: usize) -> Option<usize> {
        self.cores.iter().position(|c| c.cpus.contains(cpu))
    }

    /// The SMT siblings of `cpu`, itself included (None if not online).
    pub fn smt_siblings(&self, cpu: usize) -> Option<&CpuSet> {
        self.core_of(cpu).map(|i| &self.cores[i].cpus)
    }

    /// Index into [`l2`](Self::l2) of the L2 domain of `cpu`.
    pub fn l2_of(&self, cpu: usize) -> Option<usize> {
        self.l2.iter().position(|d| d.cpus.contains(cpu))
    }

    /// Index into [`l3`](Self::l3) of the L3 domain of `cpu`.
    pub fn l3_of(&self, cpu: usize) -> Option<usize> {
        self.l3.iter().position(|d| d.cpus.contains(cpu))
    }

    /// Index into [`packages`](Self::packages) of the package of `cpu`.
    pub fn package_of(&self, cpu: usize) -> Option<usize> {
        self.packages.iter().position(|d| d.cpus.contains(cpu))
    }

    /// Index into [`nodes`](Self::nodes) of the NUMA node of `cpu`.
    pub fn node_of(&self, cpu: usize) -> Option<usize> {
        self.nodes.iter().position(|d| d.cpus.contains(cpu))
    }

    /// Most hardware threads of any core (1 without SMT).
    pub fn threads_per_core(&self) -> usize {
        self.cores.iter().map(|c| c.cpus.len()).max().unwrap_or(1)
    }
}

/// A byte count for people: `1 MiB`, `32 KiB`, `300 MiB`, or bytes.
pub fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    if bytes >= KIB * KIB && bytes.is_multiple_of(KIB * KIB) {
        format!("{} MiB", bytes / (KIB * KIB))
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// Describes a list of cache domains in one line when they are all alike and per core.
fn cache_summary(
    t: &Topology,
    label: &str,
    list: &[CacheDomain],
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    if list.is_empty() {
        return writeln!(f, "{label}: unknown");
    }
    let sizes: Vec<String> = {
        let mut s: Vec<String> = list
            .iter()
            .map(|d| d.size.map_or("size unknown".into(), human_size))
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let per_core =
        list.len() == t.cores.len() && list.iter().zip(&t.cores).all(|(d, c)| d.cpus == c.cpus);
    let origins: Vec<&str> = {
        let mut o: Vec<&str> = list.iter().map(|d| d.origin.as_str()).collect();
        o.sort_unstable();
        o.dedup();
        o
    };
    write!(
        f,
        "{label}: {} domain(s), {}",
        list.len(),
        sizes.join(" / ")
    )?;
    if per_core {
        write!(f, ", one per core")?;
    }
    if origins != ["cache"] {
        write!(f, " (stand-in: {})", origins.join(", "))?;
    }
    writeln!(f)?;
    if !per_core && label != "L3" {
        for (i, d) in list.iter().enumerate() {
            writeln!(f, "  {label} #{i}: CPUs {}", d.cpus)?;
        }
    }
    Ok(())
}

impl fmt::Display for Topology {
    /// A report for a person: CPUs, packages, nodes, caches, and each L3 domain with its cores
    /// (SMT siblings in brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "topology: {}", self.name)?;
        match &self.source {
            TopologySource::Sysfs { root } => writeln!(f, "source: sysfs at {}", root.display())?,
            TopologySource::Description => writeln!(f, "source: description")?,
        }
        if let Some(note) = &self.note {
            writeln!(f, "note: {note}")?;
        }
        writeln!(
            f,
            "CPUs: possible {} ({}), online {} ({}), allowed {} ({})",
            self.possible,
            self.possible.len(),
            self.online,
            self.online.len(),
            self.allowed,
            self.allowed.len()
        )?;
        writeln!(
            f,
            "cores: {} ({} hardware thread(s) per core at most)",
            self.cores.len(),
            self.threads_per_core()
        )?;
        for p in &self.packages {
            writeln!(f, "package {}: CPUs {}", p.id, p.cpus)?;
        }
        for n in &self.nodes {
            writeln!(f, "NUMA node {}: CPUs {}", n.id, n.cpus)?;
        }
        cache_summary(self, "L1d", &self.l1d, f)?;
        cache_summary(self, "L2", &self.l2, f)?;
        cache_summary(self, "L3", &self.l3, f)?;
        // Each core under the L3 domain of its first CPU: one pass over the domains and one
        // over the cores (linear in the CPUs; a search per core was cubic for 8192 CPUs).
        let mut l3_by_cpu = std::collections::HashMap::new();
        for (i, d) in self.l3.iter().enumerate() {
            for cpu in d.cpus.iter() {
                l3_by_cpu.entry(cpu).or_insert(i);
            }
        }
        let mut cores_by_l3: Vec<Vec<String>> = vec![Vec::new(); self.l3.len()];
        for c in &self.cores {
            if let Some(&i) = c.cpus.first().and_then(|cpu| l3_by_cpu.get(&cpu)) {
                cores_by_l3[i].push(format!("[{}]", c.cpus));
            }
        }
        for (i, (d, cores)) in self.l3.iter().zip(&cores_by_l3).enumerate() {
            let size = d.size.map_or("size unknown".into(), human_size);
            writeln!(
                f,
                "  L3 #{i} ({size}, {}): CPUs {}; {} core(s): {}",
                d.origin.as_str(),
                d.cpus,
                cores.len(),
                cores.join(" ")
            )?;
        }
        Ok(())
    }
}
