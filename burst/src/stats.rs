//! Locality statistics and summaries: per-pass records, slot migrations, distinct slots,
//! means and spreads.

use std::collections::{BTreeSet, HashMap};

/// One pass as the harness or the simulator saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassRecord {
    /// Thread number (position of its CPU in the configuration).
    pub thread: usize,
    /// CPU the pass ran on.
    pub cpu: usize,
    /// Slot the pass indexed.
    pub slot: usize,
    /// Whether it was a timed pass (warm-up passes are not).
    pub timed: bool,
    /// Duration in nanoseconds (timed passes; 0 for warm-up records).
    pub ns: f64,
    /// Whether the slot was last written from another CPU (see [`SlotTracker`]).
    pub migrated: bool,
}

/// Keeps, per slot, the CPU that last wrote it: a write from another CPU is a *slot
/// migration*. A slot's first write is not one.
#[derive(Debug, Clone, Default)]
pub struct SlotTracker {
    last_writer: HashMap<usize, usize>,
}

impl SlotTracker {
    /// A tracker with no slot written.
    pub fn new() -> Self {
        SlotTracker::default()
    }

    /// Records that `cpu` wrote `slot`; returns whether the slot was last written from
    /// another CPU.
    pub fn write(&mut self, slot: usize, cpu: usize) -> bool {
        match self.last_writer.insert(slot, cpu) {
            Some(prev) => prev != cpu,
            None => false,
        }
    }

    /// The CPU that last wrote `slot`.
    pub fn last_writer(&self, slot: usize) -> Option<usize> {
        self.last_writer.get(&slot).copied()
    }
}

/// One access of a hand-made or recorded trace: `cpu` writes `slot`, timed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// CPU.
    pub cpu: usize,
    /// Slot.
    pub slot: usize,
    /// Whether it is a timed pass.
    pub timed: bool,
}

/// Replays a trace (in time order) through a [`SlotTracker`]: every access updates the last
/// writer; timed accesses count. Returns `(timed passes, slot migrations, distinct slots)`.
pub fn trace_stats(trace: &[Access]) -> (u64, u64, u64) {
    let mut tracker = SlotTracker::new();
    let mut passes = 0;
    let mut migrations = 0;
    let mut slots = BTreeSet::new();
    for a in trace {
        let migrated = tracker.write(a.slot, a.cpu);
        if a.timed {
            passes += 1;
            migrations += u64::from(migrated);
            slots.insert(a.slot);
        }
    }
    (passes, migrations, slots.len() as u64)
}

/// The outcome of one run of one (configuration, delay, index) cell.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunStats {
    /// Mean ns per timed pass over all threads.
    pub mean_ns: f64,
    /// Timed passes.
    pub passes: u64,
    /// Timed passes whose slot was last written from another CPU.
    pub slot_migrations: u64,
    /// Slots indexed by timed passes.
    pub slots: BTreeSet<usize>,
}

impl RunStats {
    /// Summarises the timed records of a run.
    pub fn from_records(records: &[PassRecord]) -> RunStats {
        let timed: Vec<&PassRecord> = records.iter().filter(|r| r.timed).collect();
        RunStats {
            mean_ns: mean(timed.iter().map(|r| r.ns)),
            passes: timed.len() as u64,
            slot_migrations: timed.iter().filter(|r| r.migrated).count() as u64,
            slots: timed.iter().map(|r| r.slot).collect(),
        }
    }
}

/// The mean (0 for no values).
pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The sample standard deviation (0 for fewer than two values).
pub fn stddev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values.iter().copied());
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() - 1) as f64;
    var.sqrt()
}

/// Spread of run means as a percentage of their mean: the sample standard deviation divided
/// by the mean (0 for one run).
pub fn spread_percent(values: &[f64]) -> f64 {
    let m = mean(values.iter().copied());
    if m == 0.0 {
        0.0
    } else {
        100.0 * stddev(values) / m
    }
}
