//! The simulator: the burst schedule replayed on a machine description through a cache and
//! coherence cost model (see the [module docs](super#the-simulator-and-its-cost-model)).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::BurstError;
use super::report::Method;
use super::schedule::Plan;
use super::stats::{PassRecord, SlotTracker};
use percid::index::Index;
use percid::index::user_cid::{DeterministicAllocator, DeterministicConfig, Policy};
use percid::topology::Topology;

use crate::machine::MachineDescription;

/// The `format` of a cost model object.
pub const COST_MODEL_FORMAT: &str = "percid-burst-cost/1";

/// Load-to-use latencies of one 64-byte line by where it is, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latencies {
    /// Own core's L1d.
    pub l1: f64,
    /// Own core's L2.
    pub l2: f64,
    /// The shared L3 of the core's domain (a line no core holds privately).
    pub l3: f64,
    /// A line modified in the private cache of another core of the same L3 domain.
    pub same_l3_core: f64,
    /// A line held by another L3 domain of the same package (its L3 or one of its cores).
    pub cross_l3: f64,
    /// A line held in the other package.
    pub cross_socket: f64,
    /// A line in no cache (never written, or evicted): local DRAM.
    pub dram: f64,
}

/// The cost model of a machine description (`cost_model` object; see the
/// [module docs](super#the-simulator-and-its-cost-model) for the formula).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    /// Must be [`COST_MODEL_FORMAT`].
    pub format: String,
    /// Cache line size in bytes.
    pub line_bytes: usize,
    /// Fixed cost of a timed pass: the two clock reads and the loop's entry and exit.
    pub pass_overhead_ns: f64,
    /// Core-side cost of incrementing one line whose data is at hand (own L1/L2), at the
    /// core's steady clock.
    pub core_ns_per_line: f64,
    /// Latencies by line location.
    pub latency_ns: Latencies,
    /// Lines a prefetched sequential stream keeps in flight when the lines can be had in
    /// exclusive state (no other cache holds them modified).
    pub stream_overlap: f64,
    /// Coherence transactions to read-modify-write a line modified in another core's cache:
    /// a read (the owner keeps an owned copy) and an ownership upgrade.
    pub remote_modified_transactions: f64,
    /// Effective overlap of those transactions (below 1: they are more serialised than one
    /// latency per line).
    pub remote_modified_overlap: f64,
    /// A core idle at least this long is in a deep idle state: its private caches were flushed
    /// to its L3 when it entered it, and it runs its next pass at a lower clock.
    pub long_idle_ms: f64,
    /// Core clock of the first pass after a long idle relative to the steady clock (0-1].
    pub long_idle_clock_factor: f64,
    /// Where each figure comes from (free text by parameter name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, String>,
}

/// A bad or missing cost model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    /// The machine description has no `cost_model` object.
    Missing {
        /// The description's name.
        machine: String,
    },
    /// The object does not match [`CostModel`].
    Invalid(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Missing { machine } => write!(
                f,
                "machine description {machine:?} has no cost_model object (see the README, section \"The burst benchmark\")"
            ),
            ModelError::Invalid(why) => write!(f, "invalid cost_model: {why}"),
        }
    }
}

impl std::error::Error for ModelError {}

impl CostModel {
    /// The cost model of a machine description.
    pub fn from_machine(machine: &MachineDescription) -> Result<CostModel, ModelError> {
        let value = machine
            .cost_model
            .as_ref()
            .ok_or_else(|| ModelError::Missing {
                machine: machine.name().to_string(),
            })?;
        CostModel::from_value(value)
    }

    /// Parses and validates a `cost_model` object.
    pub fn from_value(value: &serde_json::Value) -> Result<CostModel, ModelError> {
        let m: CostModel = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::Invalid(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks the format and that every figure is in range.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.format != COST_MODEL_FORMAT {
            return Err(ModelError::Invalid(format!(
                "format {:?}, expected {COST_MODEL_FORMAT:?}",
                self.format
            )));
        }
        if self.line_bytes == 0 {
            return Err(ModelError::Invalid("line_bytes must be positive".into()));
        }
        let l = &self.latency_ns;
        let positive = [
            ("core_ns_per_line", self.core_ns_per_line),
            ("latency_ns.l1", l.l1),
            ("latency_ns.l2", l.l2),
            ("latency_ns.l3", l.l3),
            ("latency_ns.same_l3_core", l.same_l3_core),
            ("latency_ns.cross_l3", l.cross_l3),
            ("latency_ns.cross_socket", l.cross_socket),
            ("latency_ns.dram", l.dram),
            ("stream_overlap", self.stream_overlap),
            (
                "remote_modified_transactions",
                self.remote_modified_transactions,
            ),
            ("remote_modified_overlap", self.remote_modified_overlap),
            ("long_idle_ms", self.long_idle_ms),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(ModelError::Invalid(format!(
                    "{name} must be positive, got {v}"
                )));
            }
        }
        if !(self.pass_overhead_ns.is_finite() && self.pass_overhead_ns >= 0.0) {
            return Err(ModelError::Invalid("pass_overhead_ns must be >= 0".into()));
        }
        let f = self.long_idle_clock_factor;
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return Err(ModelError::Invalid(format!(
                "long_idle_clock_factor must be in (0, 1], got {f}"
            )));
        }
        Ok(())
    }

    /// Nanoseconds for the memory side to supply one line from `source`.
    pub fn supply_ns(&self, source: LineSource) -> f64 {
        let l = &self.latency_ns;
        let stream = |lat: f64| lat / self.stream_overlap;
        let modified =
            |lat: f64| lat * self.remote_modified_transactions / self.remote_modified_overlap;
        match source {
            LineSource::OwnL1 => stream(l.l1),
            LineSource::OwnL2 => stream(l.l2),
            LineSource::SameL3 => stream(l.l3),
            LineSource::SameL3Modified => modified(l.same_l3_core),
            LineSource::CrossL3 => stream(l.cross_l3),
            LineSource::CrossL3Modified => modified(l.cross_l3),
            LineSource::CrossSocket => stream(l.cross_socket),
            LineSource::CrossSocketModified => modified(l.cross_socket),
            LineSource::Dram => stream(l.dram),
        }
    }

    /// Cost of one line: the slower of the core (`core_ns` per line) and the memory side.
    pub fn line_ns(&self, source: LineSource, core_ns: f64) -> f64 {
        core_ns.max(self.supply_ns(source))
    }

    fn long_idle_ns(&self) -> u64 {
        (self.long_idle_ms * 1e6) as u64
    }
}

/// Where a line is when a pass starts, relative to the CPU running the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineSource {
    /// Own core (or its SMT sibling) wrote it, in the core's last pass: L1d.
    OwnL1,
    /// Own core wrote it earlier: L2.
    OwnL2,
    /// In the shared L3 of the domain, held by no core (the writer's caches were flushed).
    SameL3,
    /// Modified in another core's L2 in the same L3 domain.
    SameL3Modified,
    /// In another L3 domain of the package (its writer's caches were flushed).
    CrossL3,
    /// Modified in a core's L2 of another L3 domain of the package.
    CrossL3Modified,
    /// In the other package's L3.
    CrossSocket,
    /// Modified in a core's L2 in the other package.
    CrossSocketModified,
    /// In no cache.
    Dram,
}

#[derive(Debug, Clone, Copy)]
struct Written {
    cpu: usize,
    at: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct CoreState {
    /// End of the latest pass on the core (either SMT sibling).
    busy_until: Option<u64>,
    /// Latest time the core entered a deep idle state (flushing its L1/L2).
    last_flush: Option<u64>,
    /// Slot of the core's latest pass.
    last_slot: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Warmup,
    WarmupEnd { slot: usize, cid: Option<u32> },
    Timed { pass: usize },
    TimedEnd { pass: usize, cid: Option<u32> },
}

/// Replays one run of a (configuration, delay, index) cell on `topology`.
struct Simulation<'a> {
    topology: &'a Topology,
    model: &'a CostModel,
    cpus: &'a [usize],
    method: &'a Method,
    plan: &'a Plan,
    lines: usize,
    /// Per 64-byte line of every slot written so far: slot `s`'s lines start at
    /// `slot_base[s]` (dense: sized by the slots actually indexed, not by the highest CPU).
    line_state: Vec<Option<Written>>,
    slot_base: HashMap<usize, usize>,
    /// Dense CPU number (rank among the configuration's CPUs) of each thread, for the
    /// allocator: sized by the CPUs in use, order-preserving so the policies see the same
    /// order of CPUs.
    dense_cpu: Vec<u32>,
    cores: Vec<CoreState>,
    tracker: SlotTracker,
    allocator: Option<DeterministicAllocator>,
    started: Vec<bool>,
}

impl<'a> Simulation<'a> {
    fn new(
        topology: &'a Topology,
        model: &'a CostModel,
        cpus: &'a [usize],
        index: Index,
        plan: &'a Plan,
        method: &'a Method,
    ) -> Simulation<'a> {
        let lines = method.item_size.div_ceil(model.line_bytes);
        // The allocator numbers CPUs densely: the rank of each configuration CPU. Only these
        // CPUs run threads, and ranking keeps their order, so the policies behave as with the
        // machine's CPU numbers; its capacity is the thread count (every CID it hands out is
        // below it anyway: each of the n CPUs keeps at most one).
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
            topology,
            model,
            cpus,
            method,
            plan,
            lines,
            line_state: Vec::new(),
            slot_base: HashMap::new(),
            dense_cpu,
            cores: vec![CoreState::default(); topology.cores().len()],
            tracker: SlotTracker::new(),
            allocator: policy.map(|p| {
                DeterministicAllocator::new(
                    DeterministicConfig::new(p, nr_dense).with_capacity(nr_dense),
                )
            }),
            started: vec![false; cpus.len()],
        }
    }

    fn core(&self, cpu: usize) -> usize {
        self.topology
            .core_of(cpu)
            .expect("configuration CPUs are online")
    }

    /// Whether `core` flushed its private caches after `since` (by `now`).
    fn flushed_after(&self, core: usize, since: u64, now: u64) -> bool {
        let st = &self.cores[core];
        if st.last_flush.is_some_and(|f| f >= since) {
            return true;
        }
        match st.busy_until {
            Some(b) => {
                let f = b.saturating_add(self.model.long_idle_ns());
                now >= f && f >= since
            }
            None => false,
        }
    }

    /// Where a line written as `w` is for a pass of `cpu` on `slot` at `now`.
    fn source(&self, w: Option<Written>, cpu: usize, slot: usize, now: u64) -> LineSource {
        let Some(w) = w else {
            return LineSource::Dram;
        };
        let t = self.topology;
        let (cw, cr) = (self.core(w.cpu), self.core(cpu));
        let flushed = self.flushed_after(cw, w.at, now);
        if cw == cr {
            if flushed {
                LineSource::SameL3
            } else if self.cores[cr].last_slot == Some(slot) {
                LineSource::OwnL1
            } else {
                LineSource::OwnL2
            }
        } else if t.l3_of(w.cpu) == t.l3_of(cpu) {
            if flushed {
                LineSource::SameL3
            } else {
                LineSource::SameL3Modified
            }
        } else if t.package_of(w.cpu) == t.package_of(cpu) {
            if flushed {
                LineSource::CrossL3
            } else {
                LineSource::CrossL3Modified
            }
        } else if flushed {
            LineSource::CrossSocket
        } else {
            LineSource::CrossSocketModified
        }
    }

    /// Cost of one pass of `cpu` over `slot` starting at `now`; marks a deep idle of the core.
    fn pass_cost(&mut self, cpu: usize, slot: usize, now: u64) -> f64 {
        let core = self.core(cpu);
        let long = self.model.long_idle_ns();
        let idle = self.cores[core]
            .busy_until
            .map_or(u64::MAX, |b| now.saturating_sub(b));
        let core_ns = if idle >= long {
            self.model.core_ns_per_line / self.model.long_idle_clock_factor
        } else {
            self.model.core_ns_per_line
        };
        let base = self.slot_base.get(&slot).copied();
        let mut ns = self.model.pass_overhead_ns;
        for l in 0..self.lines {
            let written = base.and_then(|b| self.line_state[b + l]);
            let src = self.source(written, cpu, slot, now);
            ns += self.model.line_ns(src, core_ns);
        }
        if idle >= long
            && let Some(b) = self.cores[core].busy_until
        {
            self.cores[core].last_flush = Some(b + long);
        }
        ns
    }

    /// A warm pass: own lines in L1, core busy.
    fn hot_pass_ns(&self) -> f64 {
        self.model.pass_overhead_ns
            + self.lines as f64
                * self
                    .model
                    .line_ns(LineSource::OwnL1, self.model.core_ns_per_line)
    }

    fn write(&mut self, cpu: usize, slot: usize, end: u64) {
        let base = match self.slot_base.get(&slot) {
            Some(&b) => b,
            None => {
                let b = self.line_state.len();
                self.line_state.resize(b + self.lines, None);
                self.slot_base.insert(slot, b);
                b
            }
        };
        for l in 0..self.lines {
            self.line_state[base + l] = Some(Written { cpu, at: end });
        }
        let core = self.core(cpu);
        let st = &mut self.cores[core];
        st.busy_until = Some(st.busy_until.map_or(end, |b| b.max(end)));
        st.last_slot = Some(slot);
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

    fn run(mut self) -> Result<Vec<PassRecord>, BurstError> {
        let mut queue: BinaryHeap<Reverse<(u64, u64, usize, Event)>> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |q: &mut BinaryHeap<_>, at: u64, thread: usize, ev: Event| {
            q.push(Reverse((at, seq, thread, ev)));
            seq += 1;
        };
        for &t in &self.plan.order {
            let at = self.plan.start_offset(t).as_nanos() as u64;
            let ev = if self.method.warmup > 0 {
                Event::Warmup
            } else {
                Event::Timed { pass: 0 }
            };
            push(&mut queue, at, t, ev);
        }
        let sleep = self.plan.sleep_between().as_nanos() as u64;
        let mut records = Vec::new();
        while let Some(Reverse((now, _, t, ev))) = queue.pop() {
            let cpu = self.cpus[t];
            match ev {
                Event::Warmup => {
                    let (slot, cid) = self.acquire(t, now)?;
                    let first = self.pass_cost(cpu, slot, now);
                    let rest = (self.method.warmup - 1) as f64 * self.hot_pass_ns();
                    let end = now + (first + rest).ceil() as u64;
                    let migrated = self.tracker.write(slot, cpu);
                    records.push(PassRecord {
                        thread: t,
                        cpu,
                        slot,
                        timed: false,
                        ns: first + rest,
                        migrated,
                    });
                    self.write(cpu, slot, end);
                    push(&mut queue, end, t, Event::WarmupEnd { slot, cid });
                }
                Event::WarmupEnd { slot: _, cid } => {
                    self.release(t, cid, now);
                    push(&mut queue, now, t, Event::Timed { pass: 0 });
                }
                Event::Timed { pass } => {
                    let (slot, cid) = self.acquire(t, now)?;
                    let ns = self.pass_cost(cpu, slot, now);
                    let end = now + (ns.ceil() as u64).max(1);
                    let migrated = self.tracker.write(slot, cpu);
                    records.push(PassRecord {
                        thread: t,
                        cpu,
                        slot,
                        timed: true,
                        ns,
                        migrated,
                    });
                    self.write(cpu, slot, end);
                    push(&mut queue, end, t, Event::TimedEnd { pass, cid });
                }
                Event::TimedEnd { pass, cid } => {
                    self.release(t, cid, now);
                    if pass + 1 < self.method.passes {
                        push(&mut queue, now + sleep, t, Event::Timed { pass: pass + 1 });
                    }
                }
            }
        }
        Ok(records)
    }
}

/// Replays one run of `index` on the CPUs `cpus` of `topology` following `plan`: the same
/// schedule as a real run, in virtual time, with CIDs from a [`DeterministicAllocator`] and
/// pass durations from `model`. Returns every pass (the warm-up of a thread as one record).
pub fn simulate_run(
    topology: &Topology,
    model: &CostModel,
    cpus: &[usize],
    index: Index,
    plan: &Plan,
    method: &Method,
) -> Result<Vec<PassRecord>, BurstError> {
    Simulation::new(topology, model, cpus, index, plan, method).run()
}
