//! The schedule replay: one run of a cell in virtual time, recorded as a [`RunTrace`] (per
//! timed pass, where its slot's lines were and the idle times that decide what became of
//! them), then costed for any parameter set ([`RunTrace::cost`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use percid::index::Index;
use percid::index::user_cid::{DeterministicAllocator, DeterministicConfig, Policy};
use percid::topology::Topology;

use super::cost::{CostModel, LineSource, ModelError};
use crate::BurstError;
use crate::report::Method;
use crate::schedule::Plan;
use crate::stats::{PassRecord, SlotTracker};

/// How the last writer of a slot relates to the core reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// Never written: DRAM (first touch by this pass).
    None,
    /// This core (or its SMT sibling).
    OwnCore,
    /// Another core of the same L3 domain.
    SameL3,
    /// A core of another L3 domain of the same package.
    CrossL3,
    /// A core of another package.
    CrossSocket,
}

/// One timed pass as the schedule produced it, independent of the cost parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassTrace {
    /// Lines of the slot.
    pub lines: u32,
    /// Who last wrote the slot.
    pub writer: Writer,
    /// Longest idle stretch of the writer's core between its write and this pass, ns.
    pub writer_core_idle: u64,
    /// Longest stretch between the write and this pass during which every core of the
    /// writer's L3 domain was idle, ns.
    pub writer_l3_idle: u64,
    /// Idle time of the reading core right before this pass, ns (`u64::MAX`: never ran).
    pub reader_idle: u64,
    /// Whether the slot's pages are in another package's DRAM (first touched there).
    pub home_remote: bool,
}

impl PassTrace {
    /// Where the lines are for parameters `m`: the writer's L3 domain powered down
    /// (all idle for `l3_flush_ms`) → DRAM; the writer's core in deep idle since
    /// (`deep_idle_ms`) → its L3; otherwise modified in the writer's private caches.
    pub fn source(&self, m: &CostModel) -> LineSource {
        let dram = if self.home_remote {
            LineSource::DramRemote
        } else {
            LineSource::DramLocal
        };
        if self.writer == Writer::None || self.writer_l3_idle >= m.l3_flush_ns() {
            return dram;
        }
        let flushed = self.writer_core_idle >= m.deep_idle_ns();
        match (self.writer, flushed) {
            (Writer::OwnCore | Writer::SameL3, true) => LineSource::SameL3,
            (Writer::OwnCore, false) => LineSource::Own,
            (Writer::SameL3, false) => LineSource::SameL3Modified,
            (Writer::CrossL3, true) => LineSource::CrossL3,
            (Writer::CrossL3, false) => LineSource::CrossL3Modified,
            (Writer::CrossSocket, true) => LineSource::CrossSocket,
            (Writer::CrossSocket, false) => LineSource::CrossSocketModified,
            (Writer::None, _) => dram,
        }
    }

    /// ns of this pass under `m`.
    pub fn ns(&self, m: &CostModel) -> f64 {
        m.pass_overhead_ns
            + self.lines as f64
                * m.line_ns_at(self.source(m), self.reader_idle, self.writer_core_idle)
    }
}

/// A simulated run: its pass records (central parameters) and the trace of its timed
/// passes, to be costed for other parameter sets.
#[derive(Debug, Clone)]
pub struct RunTrace {
    /// Every pass (the warm-up of a thread as one record), costed with the central model.
    pub records: Vec<PassRecord>,
    /// The timed passes, in the order of `records`' timed entries.
    pub passes: Vec<PassTrace>,
}

impl RunTrace {
    /// Mean ns per timed pass under `m`; an error when a pass leaves the physical bounds
    /// of `m` ([`CostModel::pass_bounds`]).
    pub fn cost(&self, m: &CostModel) -> Result<f64, BurstError> {
        if self.passes.is_empty() {
            return Ok(0.0);
        }
        let mut sum = 0.0;
        for p in &self.passes {
            let ns = p.ns(m);
            let (low, high) = m.pass_bounds(p.lines as usize);
            if !(low - 1e-6..=high + 1e-6).contains(&ns) {
                return Err(BurstError::Model(super::ModelError::Bound {
                    field: "(a simulated pass)".into(),
                    bound: format!(
                        "{ns:.1} ns is outside [{low:.1}, {high:.1}] (every line at its cheapest .. all lines serial DRAM misses)"
                    ),
                }));
            }
            sum += ns;
        }
        Ok(sum / self.passes.len() as f64)
    }

    /// Lines by source under `m`, over all timed passes.
    pub fn sources(&self, m: &CostModel) -> Vec<(LineSource, u64)> {
        let mut counts: HashMap<LineSource, u64> = HashMap::new();
        for p in &self.passes {
            *counts.entry(p.source(m)).or_default() += p.lines as u64;
        }
        LineSource::ALL
            .iter()
            .filter_map(|s| counts.get(s).map(|&n| (*s, n)))
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct Written {
    cpu: usize,
    at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Warmup,
    WarmupEnd { cid: Option<u32> },
    Timed { pass: usize },
    TimedEnd { pass: usize, cid: Option<u32> },
}

/// Longest stretch in `[from, to]` not covered by any of `busy` (intervals `(start, end)`).
fn longest_gap(busy: &mut [(u64, u64)], from: u64, to: u64) -> u64 {
    busy.sort_unstable();
    let mut cursor = from;
    let mut best = 0;
    for &(s, e) in busy.iter() {
        if e <= cursor {
            continue;
        }
        if s >= to {
            break;
        }
        best = best.max(s.saturating_sub(cursor));
        cursor = cursor.max(e);
    }
    best.max(to.saturating_sub(cursor))
}

struct Simulation<'a> {
    model: &'a CostModel,
    cpus: &'a [usize],
    method: &'a Method,
    plan: &'a Plan,
    lines: usize,
    /// Per CPU of the configuration: core, L3 domain, package.
    place: HashMap<usize, (usize, usize, usize)>,
    /// Per core: its busy intervals.
    busy: Vec<Vec<(u64, u64)>>,
    /// Per L3 domain: its cores.
    l3_cores: Vec<Vec<usize>>,
    /// Per slot: last write, and the package whose DRAM holds its pages.
    slots: HashMap<usize, (Written, usize)>,
    dense_cpu: Vec<u32>,
    tracker: SlotTracker,
    allocator: Option<DeterministicAllocator>,
    started: Vec<bool>,
    passes: Vec<PassTrace>,
}

/// The virtual clock is u64 nanoseconds (584 years): a schedule beyond it is an error, never
/// a wrap (which would make time run backwards for the allocator).
fn time_overflow() -> BurstError {
    BurstError::Model(ModelError::Invalid(
        "the schedule's virtual time exceeds 2^64 ns (584 years): fewer passes, threads or a shorter delay".to_string(),
    ))
}

/// `now + ns` on the virtual clock, or the overflow error.
fn later(now: u64, ns: u64) -> Result<u64, BurstError> {
    now.checked_add(ns).ok_or_else(time_overflow)
}

impl<'a> Simulation<'a> {
    fn new(
        topology: &Topology,
        model: &'a CostModel,
        cpus: &'a [usize],
        index: Index,
        plan: &'a Plan,
        method: &'a Method,
    ) -> Simulation<'a> {
        let lines = method.item_size.div_ceil(model.line_bytes);
        // Per CPU of the configuration (the only CPUs that run or write): core, L3, package.
        let mut place = HashMap::new();
        for &cpu in cpus {
            place.insert(
                cpu,
                (
                    topology.core_of(cpu).unwrap_or(0),
                    topology.l3_of(cpu).unwrap_or(0),
                    topology.package_of(cpu).unwrap_or(0),
                ),
            );
        }
        let mut l3_cores = vec![Vec::new(); topology.l3().len().max(1)];
        for (k, core) in topology.cores().iter().enumerate() {
            if let Some(first) = core.cpus.iter().next() {
                l3_cores[topology.l3_of(first).unwrap_or(0)].push(k);
            }
        }
        // The allocator numbers CPUs densely: the rank of each configuration CPU. Only these
        // CPUs run threads, and ranking keeps their order, so the policies behave as with the
        // machine's CPU numbers.
        let mut sorted = cpus.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let dense_cpu: Vec<u32> = cpus
            .iter()
            .map(|c| sorted.binary_search(c).unwrap_or(0) as u32)
            .collect();
        let nr_dense = sorted.len().max(1) as u32;
        let policy = match index {
            Index::CpuId => None,
            // Linux 6.13-6.18 hands out mm_cid with the cache-local policy.
            Index::MmCid => Some(Policy::CacheLocal),
            Index::User(p) => Some(p),
        };
        Simulation {
            model,
            cpus,
            method,
            plan,
            lines,
            place,
            busy: vec![Vec::new(); topology.cores().len()],
            l3_cores,
            slots: HashMap::new(),
            dense_cpu,
            tracker: SlotTracker::new(),
            allocator: policy.map(|p| {
                DeterministicAllocator::new(
                    DeterministicConfig::new(p, nr_dense).with_capacity(nr_dense),
                )
            }),
            started: vec![false; cpus.len()],
            passes: Vec::new(),
        }
    }

    fn core_of(&self, cpu: usize) -> usize {
        self.place.get(&cpu).map_or(0, |p| p.0)
    }

    fn l3_of(&self, cpu: usize) -> usize {
        self.place.get(&cpu).map_or(0, |p| p.1)
    }

    fn package_of(&self, cpu: usize) -> usize {
        self.place.get(&cpu).map_or(0, |p| p.2)
    }

    /// The trace of a pass of `cpu` over `slot` starting at `now`.
    fn trace(&self, cpu: usize, slot: usize, now: u64) -> PassTrace {
        let core = self.core_of(cpu);
        let reader_idle = self.busy[core]
            .iter()
            .map(|&(_, e)| e)
            .filter(|&e| e <= now)
            .max()
            .map_or(u64::MAX, |e| now - e);
        let Some(&(w, home)) = self.slots.get(&slot) else {
            return PassTrace {
                lines: self.lines as u32,
                writer: Writer::None,
                writer_core_idle: u64::MAX,
                writer_l3_idle: u64::MAX,
                reader_idle,
                home_remote: false,
            };
        };
        let wcore = self.core_of(w.cpu);
        let wl3 = self.l3_of(w.cpu);
        let writer = if wcore == core {
            Writer::OwnCore
        } else if wl3 == self.l3_of(cpu) {
            Writer::SameL3
        } else if self.package_of(w.cpu) == self.package_of(cpu) {
            Writer::CrossL3
        } else {
            Writer::CrossSocket
        };
        let writer_core_idle = longest_gap(&mut self.busy[wcore].clone(), w.at, now);
        let mut l3_busy: Vec<(u64, u64)> = self.l3_cores[wl3]
            .iter()
            .flat_map(|&k| self.busy[k].iter().copied())
            .collect();
        let writer_l3_idle = longest_gap(&mut l3_busy, w.at, now);
        PassTrace {
            lines: self.lines as u32,
            writer,
            writer_core_idle,
            writer_l3_idle,
            reader_idle,
            home_remote: home != self.package_of(cpu),
        }
    }

    fn write(&mut self, cpu: usize, slot: usize, start: u64, end: u64) {
        let home = self
            .slots
            .get(&slot)
            .map_or(self.package_of(cpu), |&(_, h)| h);
        self.slots.insert(slot, (Written { cpu, at: end }, home));
        let core = self.core_of(cpu);
        self.busy[core].push((start, end));
    }

    fn acquire(&mut self, thread: usize, now: u64) -> Result<(usize, Option<u32>), BurstError> {
        let cpu = self.cpus[thread];
        match self.allocator.as_mut() {
            None => Ok((cpu, None)),
            Some(a) => {
                let dense = self.dense_cpu[thread];
                if !self.started[thread] {
                    a.thread_start(thread as u32, &[dense]);
                    self.started[thread] = true;
                }
                let cid = a
                    .acquire_at(thread as u32, dense, std::time::Duration::from_nanos(now))
                    .ok_or(BurstError::SlotOutOfRange {
                        slot: usize::MAX,
                        slots: a.capacity() as usize,
                    })?;
                Ok((cid as usize, Some(cid)))
            }
        }
    }

    fn release(&mut self, thread: usize, cid: Option<u32>, now: u64) {
        if let (Some(a), Some(cid)) = (self.allocator.as_mut(), cid) {
            a.release_at(thread as u32, cid, std::time::Duration::from_nanos(now));
        }
    }

    fn run(mut self) -> Result<RunTrace, BurstError> {
        let mut queue: BinaryHeap<Reverse<(u64, u64, usize, Event)>> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |q: &mut BinaryHeap<_>, at: u64, thread: usize, ev: Event| {
            q.push(Reverse((at, seq, thread, ev)));
            seq += 1;
        };
        for &t in &self.plan.order {
            let at =
                u64::try_from(self.plan.start_offset(t).as_nanos()).map_err(|_| time_overflow())?;
            let ev = if self.method.warmup > 0 {
                Event::Warmup
            } else {
                Event::Timed { pass: 0 }
            };
            push(&mut queue, at, t, ev);
        }
        let sleep =
            u64::try_from(self.plan.sleep_between().as_nanos()).map_err(|_| time_overflow())?;
        // A warm pass: own lines in L1, core busy.
        let hot = self.model.pass_overhead_ns
            + self.lines as f64 * self.model.line_ns(LineSource::Own, 0);
        let mut records = Vec::new();
        while let Some(Reverse((now, _, t, ev))) = queue.pop() {
            let cpu = self.cpus[t];
            match ev {
                Event::Warmup => {
                    let (slot, cid) = self.acquire(t, now)?;
                    let first = self.trace(cpu, slot, now).ns(self.model);
                    let ns = first + (self.method.warmup - 1) as f64 * hot;
                    let end = later(now, ns.ceil() as u64)?;
                    let migrated = self.tracker.write(slot, cpu);
                    records.push(PassRecord {
                        thread: t,
                        cpu,
                        slot,
                        timed: false,
                        ns,
                        migrated,
                    });
                    self.write(cpu, slot, now, end);
                    push(&mut queue, end, t, Event::WarmupEnd { cid });
                }
                Event::WarmupEnd { cid } => {
                    self.release(t, cid, now);
                    push(&mut queue, now, t, Event::Timed { pass: 0 });
                }
                Event::Timed { pass } => {
                    let (slot, cid) = self.acquire(t, now)?;
                    let trace = self.trace(cpu, slot, now);
                    let ns = trace.ns(self.model);
                    self.passes.push(trace);
                    let end = later(now, (ns.ceil() as u64).max(1))?;
                    let migrated = self.tracker.write(slot, cpu);
                    records.push(PassRecord {
                        thread: t,
                        cpu,
                        slot,
                        timed: true,
                        ns,
                        migrated,
                    });
                    self.write(cpu, slot, now, end);
                    push(&mut queue, end, t, Event::TimedEnd { pass, cid });
                }
                Event::TimedEnd { pass, cid } => {
                    self.release(t, cid, now);
                    if pass + 1 < self.method.passes {
                        push(
                            &mut queue,
                            later(now, sleep)?,
                            t,
                            Event::Timed { pass: pass + 1 },
                        );
                    }
                }
            }
        }
        Ok(RunTrace {
            records,
            passes: self.passes,
        })
    }
}

/// Replays one run of `index` on the CPUs `cpus` of `topology` following `plan` and records
/// its trace: the same schedule as a real run, in virtual time (pass durations from the
/// central parameters of `model`), with CIDs from a [`DeterministicAllocator`].
pub fn trace_run(
    topology: &Topology,
    model: &CostModel,
    cpus: &[usize],
    index: Index,
    plan: &Plan,
    method: &Method,
) -> Result<RunTrace, BurstError> {
    Simulation::new(topology, model, cpus, index, plan, method).run()
}

/// [`trace_run`], returning every pass costed with `model` (the warm-up of a thread as one
/// record). Fails when a pass leaves the bounds of `model`.
pub fn simulate_run(
    topology: &Topology,
    model: &CostModel,
    cpus: &[usize],
    index: Index,
    plan: &Plan,
    method: &Method,
) -> Result<Vec<PassRecord>, BurstError> {
    let trace = trace_run(topology, model, cpus, index, plan, method)?;
    trace.cost(model)?;
    Ok(trace.records)
}
