//! Benchmark configurations derived from a topology ([`Configurations::configurations`]).

use std::fmt;

use percid::topology::{CpuSet, Topology};

use super::MachineError;

/// How a [`Configuration`] picks its CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigurationKind {
    /// `Nc-1l3`: the first thread of every usable core of the first usable L3 domain.
    OneL3,
    /// `Nc-Nl3`: the first usable core (its first thread) of every usable L3 domain.
    OnePerL3,
    /// `Cc-Ll3`: the first thread of every usable core.
    AllCores,
    /// `Tt-Ll3`: every usable hardware thread.
    AllThreads,
}

/// A set of CPUs to run a benchmark on, one thread per CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// `8c-1l3`, `24c-24l3`, `192c-24l3`, `384t-24l3`, ...: CPU count, then `c` (one thread
    /// per core) or `t` (every hardware thread), then the number of L3 domains touched.
    pub name: String,
    /// How the CPUs were picked.
    pub kind: ConfigurationKind,
    /// The CPUs.
    pub cpus: CpuSet,
    /// Distinct cores among `cpus`.
    pub cores: usize,
    /// Distinct L3 domains among `cpus`.
    pub l3_domains: usize,
}

impl fmt::Display for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} CPU(s) on {} core(s) in {} L3 domain(s): {}",
            self.name,
            self.cpus.len(),
            self.cores,
            self.l3_domains,
            self.cpus
        )
    }
}

/// The benchmark configurations of a [`Topology`] (implemented for it).
pub trait Configurations {
    /// The benchmark configurations of the reference measurement, derived from this topology
    /// and restricted to its [allowed](Topology::allowed) CPUs, in this order:
    ///
    /// 1. `Nc-1l3`: one thread per core of the first L3 domain (N = its cores);
    /// 2. `Nc-Nl3`: one core per L3 domain, the first of each (N = number of L3 domains);
    /// 3. `Cc-Ll3`: one thread per core, all cores (C cores, L L3 domains);
    /// 4. `Tt-Ll3`: all hardware threads (T threads).
    ///
    /// "One thread per core" is the core's lowest-numbered CPU. With an affinity mask, only
    /// allowed CPUs count: a core is usable if one of its threads is allowed (its lowest allowed
    /// thread then stands for it), an L3 domain if one of its cores is usable, and "first"
    /// means first usable; N, C, T and L count usable ones, so the names describe the sets
    /// actually returned.
    ///
    /// A configuration whose CPU set equals that of an earlier one is dropped (on a machine
    /// without SMT `Tt-Ll3` equals `Cc-Ll3`; with one L3 domain `Nc-1l3` equals `Cc-Ll3`).
    /// Equal names imply equal sets, so the names left are distinct. On a 2-core machine with
    /// one shared L3 and no SMT this leaves `2c-1l3` (both cores) and `1c-1l3` (one core).
    /// Empty when no CPU is allowed.
    fn configurations(&self) -> Vec<Configuration>;

    /// The configuration called `name`. Names dropped by
    /// [`configurations`](Self::configurations) as duplicates still resolve (to the same CPUs
    /// as the one kept), so `2t-1l3` works on a 2-core machine without SMT.
    fn configuration(&self, name: &str) -> Result<Configuration, MachineError>;
}

impl Configurations for Topology {
    fn configurations(&self) -> Vec<Configuration> {
        let mut out: Vec<Configuration> = Vec::new();
        for c in all_configurations(self) {
            if !out.iter().any(|o| o.cpus == c.cpus) {
                out.push(c);
            }
        }
        out
    }

    fn configuration(&self, name: &str) -> Result<Configuration, MachineError> {
        let all = all_configurations(self);
        match all.iter().find(|c| c.name == name) {
            Some(c) => Ok(c.clone()),
            None => Err(MachineError::UnknownConfiguration {
                name: name.to_string(),
                available: self.configurations().into_iter().map(|c| c.name).collect(),
            }),
        }
    }
}

/// Usable cores grouped by L3 domain: for each L3 domain (in order) that has one, the first
/// allowed thread of each of its cores with an allowed thread, and all their allowed threads.
fn usable_by_l3(t: &Topology) -> Vec<Vec<(usize, CpuSet)>> {
    let mut by_l3: Vec<Vec<(usize, CpuSet)>> = vec![Vec::new(); t.l3().len()];
    for core in t.cores() {
        let threads = core.cpus.intersection(t.allowed());
        let Some(first) = threads.first() else {
            continue;
        };
        // A core belongs to the L3 domain of its first thread (first in the core, allowed
        // or not, so that a core's domain does not depend on the mask).
        let l3 = core.cpus.first().and_then(|c| t.l3_of(c)).unwrap_or(0);
        by_l3[l3].push((first, threads));
    }
    by_l3.retain(|cores| !cores.is_empty());
    by_l3
}

/// The four configurations before deduplication (empty if no CPU is allowed).
fn all_configurations(t: &Topology) -> Vec<Configuration> {
    let by_l3 = usable_by_l3(t);
    if by_l3.is_empty() {
        return Vec::new();
    }
    let l = by_l3.len();
    let make = |kind, cpus: CpuSet, cores: usize, l3_domains: usize, unit: char| Configuration {
        name: format!("{}{unit}-{l3_domains}l3", cpus.len()),
        kind,
        cpus,
        cores,
        l3_domains,
    };
    let one_l3: CpuSet = by_l3[0].iter().map(|(first, _)| *first).collect();
    let one_per_l3: CpuSet = by_l3.iter().map(|cores| cores[0].0).collect();
    let all_cores: CpuSet = by_l3.iter().flatten().map(|(first, _)| *first).collect();
    let all_threads = by_l3
        .iter()
        .flatten()
        .fold(CpuSet::new(), |acc, (_, threads)| acc.union(threads));
    let n_cores = all_cores.len();
    vec![
        make(ConfigurationKind::OneL3, one_l3, by_l3[0].len(), 1, 'c'),
        make(ConfigurationKind::OnePerL3, one_per_l3, l, l, 'c'),
        make(ConfigurationKind::AllCores, all_cores, n_cores, l, 'c'),
        make(ConfigurationKind::AllThreads, all_threads, n_cores, l, 't'),
    ]
}
