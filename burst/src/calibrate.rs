//! `percid-burst calibrate`: measures on this machine the cost-model figures a micro-benchmark
//! can reach and writes a machine description (`--describe` format) whose `cost_model` carries
//! them.
//!
//! ```text
//! percid-burst calibrate -o calibrated.json [--quick] [--base epyc-9654]
//! percid-burst --describe calibrated.json
//! ```
//!
//! ## What is measured, and how
//!
//! The measuring thread is pinned to the first allowed CPU (`A`); every figure is the median of
//! a few repetitions, its range the smallest and largest repetition.
//!
//! * `latency_ns.l1`, `l2`, `l3`, `dram_local`: **pointer chasing** over a randomized cyclic
//!   permutation of 64-byte lines (Sattolo's algorithm, so one cycle visits every line and the
//!   prefetchers cannot guess the next), in a buffer sized from sysfs for each level: half the
//!   L1d, half the L2, `clamp(4 x L2, L3 / 2)`, and `4 x L3` for DRAM (at most 2 GiB, 512 MiB
//!   with `--quick`; a DRAM buffer below twice the L3 is reported as partly L3 hits). The
//!   buffers ask for transparent huge pages, so the figure is mostly the cache's, not the
//!   page walk's. One load per step, each address the value of the previous load.
//! * `latency_ns.same_l3_modified` and `cross_l3`: **ping-pong** of one cache line between two
//!   threads pinned to two CPUs of different cores in the same L3 domain (resp. in different
//!   L3 domains of one package): each writes when it sees the other's value; one transfer of
//!   the modified line is half a round trip. A machine with one L3 domain has no pair for
//!   `cross_l3`, one package none for `cross_socket`: those are **not measured** and keep the
//!   base preset's value, marked `NOT MEASURED` in `sources` and in the output.
//! * `lines_in_flight.stream`: DRAM latency over the time per line of a sequential
//!   read-modify-write stream over the DRAM buffer (what the model's `latency / stream` means).
//!   The **MLP** of independent misses (1, 2, 4, 8, 16 chases over the DRAM buffer interleaved;
//!   ratio of the per-load time of one chase to that of k) is reported too; it bounds the
//!   `modified_*` figures from above and is not written into them.
//! * `core_ns_per_line`, `pass_overhead_ns`: the benchmark's pass (`byte += 1` over 16 KiB)
//!   repeated warm, minus the cost of two clock reads, per 64-byte line.
//! * idle: after sleeping 10 ms, 100 ms and 1 s (10 and 100 ms with `--quick`; sleeps that
//!   would overrun the time limit are left out), a compute-only loop (the clock) and the pass
//!   (the caches), each run first after its own sleep, against their warm times. A clock ratio
//!   above 1.15 at the longest sleep is written as `idle.clock_factor = warm / slept`; below,
//!   it is reported as not observable and the base value kept. The first sleep after which the
//!   pass takes more than twice the warm pass is written as `idle.deep_idle_ms` (an upper
//!   bound of when the core's lines left its private caches; on a shared machine other tasks'
//!   evictions look the same to the benchmark).
//!
//! Not reachable by a micro-benchmark here: `l3_flush_ms`, `owner_probe_*`,
//! `modified_*` lines in flight, the fabric bandwidth, `dram_remote` (kept from the base; on
//! one package it is the slowest serial miss, see below).
//!
//! The description is validated ([`CostModel::validate`]) before it is written. The model
//! needs `l1 <= l2 <= l3 <= dram_local <= dram_remote` and no line supplied slower than
//! `dram_remote` (the slowest serial miss): a level measured below the one before it is raised
//! to it, overlapping repetition ranges are split at their midpoint, and `dram_remote` is raised
//! to the slowest serial supply of the figures (on one package it is that figure); each such
//! change is marked `ADJUSTED` in `sources` and printed. The file is written with the suite's
//! [`Output`] helper (checked before any work).
//!
//! Run time: under 30 s by default, under 5 s with `--quick` (the DRAM buffer's construction
//! dominates).

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use percid::topology::{Topology, pin_current_thread_to_cpu};

use crate::machine::MachineDescription;
use crate::output::{Output, say};
use crate::schedule::SplitMix64;
use crate::{BurstError, CostModel};

/// The parameters `calibrate` can measure on a machine with more than one L3 domain and
/// package (on this kind of machine some are not measured; see the module docs).
pub const MEASURABLE: &[&str] = &[
    "pass_overhead_ns",
    "core_ns_per_line",
    "latency_ns.l1",
    "latency_ns.l2",
    "latency_ns.l3",
    "latency_ns.same_l3_modified",
    "latency_ns.cross_l3",
    "latency_ns.cross_socket",
    "latency_ns.dram_local",
    "lines_in_flight.stream",
    "idle.clock_factor",
    "idle.deep_idle_ms",
];

/// How much work a calibration does, and its time limit: repetitions beyond the first three
/// and sleeps that would overrun the limit are left out (and said so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `--quick`: smaller buffers, fewer repetitions and sleeps (under 5 s).
    pub quick: bool,
    /// When the calibration started.
    pub start: Instant,
}

impl Budget {
    /// A budget starting now.
    pub fn new(quick: bool) -> Budget {
        Budget {
            quick,
            start: Instant::now(),
        }
    }

    /// The time limit of the measurements (the command's total stays under 5 s / 30 s on an
    /// idle machine).
    pub fn limit(&self) -> Duration {
        if self.quick {
            Duration::from_secs(4)
        } else {
            Duration::from_secs(25)
        }
    }

    fn left(&self) -> Duration {
        self.limit().saturating_sub(self.start.elapsed())
    }

    /// Whether repetition `i` should run: the first three always, the others in time.
    fn rep(&self, i: usize) -> bool {
        i < 3 || !self.left().is_zero()
    }
    /// Repetitions of each latency measurement: many short ones, so that most run within one
    /// time slice on a shared machine.
    fn reps(&self) -> usize {
        if self.quick { 11 } else { 31 }
    }
    fn loads(&self) -> usize {
        if self.quick { 20_000 } else { 50_000 }
    }
    fn idle_reps(&self) -> usize {
        3
    }
    fn dram_cap(&self) -> usize {
        if self.quick { 512 << 20 } else { 2 << 30 }
    }
    fn sleeps_ms(&self) -> &'static [u64] {
        if self.quick {
            &[10, 100]
        } else {
            &[10, 100, 1000]
        }
    }
    fn round_trips(&self) -> usize {
        if self.quick { 2_000 } else { 5_000 }
    }
}

/// One figure: measured (median and range of the repetitions) or not, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The cost-model parameter (see [`crate::PARAMS`]).
    pub param: &'static str,
    /// Median of the repetitions; `None`: not measured here.
    pub value: Option<f64>,
    /// Interquartile range of the repetitions.
    pub range: Option<[f64; 2]>,
    /// How it was measured, or why it was not.
    pub how: String,
}

impl Figure {
    fn measured(param: &'static str, samples: &[f64], how: String) -> Figure {
        let (median, lo, hi) = summary(samples);
        Figure {
            param,
            value: Some(median),
            range: Some([lo, hi]),
            how,
        }
    }

    fn not_measured(param: &'static str, why: impl Into<String>) -> Figure {
        Figure {
            param,
            value: None,
            range: None,
            how: why.into(),
        }
    }
}

/// What a calibration measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// One entry per parameter of [`MEASURABLE`].
    pub figures: Vec<Figure>,
    /// Other findings, in words (MLP of independent misses, the idle ratios, the ordering of
    /// the latencies).
    pub notes: Vec<String>,
}

impl Measurements {
    /// The figure of `param`.
    pub fn figure(&self, param: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.param == param)
    }
}

/// Median and interquartile range, 25th and 75th percentile (of a non-empty slice; NaN for
/// an empty one).
fn summary(samples: &[f64]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
}

fn measure_error(reason: impl Into<String>) -> BurstError {
    BurstError::Io {
        path: "calibrate".into(),
        reason: reason.into(),
    }
}

/// A zeroed buffer of `u64` words from an anonymous mapping, its start 2 MiB aligned, with
/// transparent huge pages asked for before any page is touched.
struct Buffer {
    map: *mut libc::c_void,
    map_len: usize,
    ptr: *mut u64,
    words: usize,
}

const HUGE: usize = 2 << 20;

impl Buffer {
    fn new(bytes: usize) -> Result<Buffer, BurstError> {
        let bytes = bytes.max(64).next_multiple_of(64);
        // Whole huge pages, so that a buffer below 2 MiB gets one too.
        let advised = bytes.next_multiple_of(HUGE);
        let map_len = advised
            .checked_add(HUGE)
            .ok_or_else(|| measure_error(format!("buffer of {bytes} bytes")))?;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(measure_error(format!(
                "cannot map {bytes} bytes: {}",
                std::io::Error::last_os_error()
            )));
        }
        let skip = (HUGE - (map as usize) % HUGE) % HUGE;
        // SAFETY: `skip < HUGE` and `skip + advised <= map_len`: the pointer stays inside
        // the mapping.
        let ptr = unsafe { (map as *mut u8).add(skip) } as *mut u64;
        // SAFETY: `ptr..ptr + advised` lies inside the mapping just made; madvise only changes
        // the kernel's paging advice for it, and its failure is harmless (small pages).
        unsafe {
            libc::madvise(ptr as *mut libc::c_void, advised, libc::MADV_HUGEPAGE);
        }
        Ok(Buffer {
            map,
            map_len,
            ptr,
            words: bytes / 8,
        })
    }

    fn words(&mut self) -> &mut [u64] {
        // SAFETY: `ptr` points to `words` u64 words inside a live, readable and writable
        // anonymous mapping (zero-filled by the kernel) owned by `self`, 8-byte aligned; the
        // `&mut self` borrow makes the slice the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.words) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Buffer::new`, unmapped once; no slice of it outlives
        // `self`.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

// SAFETY: `Buffer` owns its allocation exclusively (like a `Box<[u64]>`).
unsafe impl Send for Buffer {}

/// A randomized cyclic permutation of the lines of a buffer of `bytes` bytes: word 0 of each
/// line holds the word index of the next line; one cycle visits every line. Returns the buffer
/// and the cycle's order (line numbers).
fn chase_buffer(bytes: usize, seed: u64) -> Result<(Buffer, Vec<u32>), BurstError> {
    let mut buf = Buffer::new(bytes)?;
    let lines = buf.words / 8;
    if lines > u32::MAX as usize {
        return Err(measure_error("chase buffer too large"));
    }
    let mut order: Vec<u32> = (0..lines as u32).collect();
    let mut rng = SplitMix64::new(seed);
    // Sattolo's algorithm: a uniformly random cyclic permutation.
    for i in (1..lines).rev() {
        let j = rng.below(i as u64) as usize;
        order.swap(i, j);
    }
    let w = buf.words();
    for k in 0..lines {
        let next = order[(k + 1) % lines] as u64;
        w[order[k] as usize * 8] = next * 8;
    }
    Ok((buf, order))
}

/// ns per step of `chains` interleaved chases of `steps` loads each, starting at `starts`.
fn chase(buf: &mut Buffer, starts: &[u64], steps: usize) -> f64 {
    let w = buf.words();
    let mut p = [0u64; 16];
    let k = starts.len().min(16);
    p[..k].copy_from_slice(&starts[..k]);
    let t = Instant::now();
    for _ in 0..steps {
        for q in p.iter_mut().take(k) {
            *q = w[*q as usize];
        }
    }
    let ns = t.elapsed().as_nanos() as f64;
    std::hint::black_box(&p);
    ns / steps as f64
}

/// Median-of-reps latency (ns per load) of one chase over `bytes`, and all the reps.
fn chase_latency(bytes: usize, budget: Budget, seed: u64) -> Result<Vec<f64>, BurstError> {
    let (mut buf, order) = chase_buffer(bytes, seed)?;
    let start = [order[0] as u64 * 8];
    // Warm: one full cycle (or the load count) to bring the buffer into the level measured.
    chase(&mut buf, &start, order.len().min(4 << 20));
    Ok((0..budget.reps())
        .take_while(|&i| budget.rep(i))
        .map(|_| chase(&mut buf, &start, budget.loads()))
        .collect())
}

/// The benchmark's pass: `byte += 1` over `bytes`.
#[inline(never)]
fn increment(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        *b = b.wrapping_add(1);
    }
    std::hint::black_box(bytes);
}

/// ns of two clock reads (the timed region's fixed cost).
fn clock_pair_ns() -> f64 {
    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n {
        let a = Instant::now();
        std::hint::black_box(a.elapsed());
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns of `iters` dependent multiply-adds (no memory access): the core clock.
fn spin_ns(iters: u64) -> f64 {
    let t = Instant::now();
    let mut x = std::hint::black_box(1u64);
    for _ in 0..iters {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    std::hint::black_box(x);
    t.elapsed().as_nanos() as f64
}

/// ns of one timed pass over `item`.
fn timed_pass(item: &mut [u8]) -> f64 {
    let t = Instant::now();
    increment(item);
    t.elapsed().as_nanos() as f64
}

/// One-way transfer time (ns) of a modified line between CPUs `a` and `b`: ping-pong, half a
/// round trip; one sample per repetition of `round_trips` exchanges. Repetitions stop at half
/// of `limit` (after the first); an exchange that stalls past `limit` ends the measurement
/// with the samples so far, or an error (with the reason) when there are none or a thread
/// could not be pinned. Both threads spin: on a loaded machine the exchange only progresses
/// while both run.
fn ping_pong(a: usize, b: usize, budget: Budget, limit: Duration) -> Result<Vec<f64>, String> {
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    // `stop`: the pinging side is done (normal end); `abort`: give up (an error or a stall).
    let stop = AtomicBool::new(false);
    let abort = AtomicBool::new(false);
    let barrier = Barrier::new(2);
    let n = budget.round_trips() as u64;
    let reps = budget.reps() as u64;
    let start = Instant::now();
    let deadline = start + limit;
    let soft = start + limit / 2;
    // Spins until the line holds `want`; false on a stop, an abort or the deadline.
    let wait_for = |want: u64| -> bool {
        let mut spins = 0u32;
        while line.0.load(Ordering::Acquire) != want {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096)
                && (stop.load(Ordering::Relaxed)
                    || abort.load(Ordering::Relaxed)
                    || Instant::now() > deadline)
            {
                return false;
            }
        }
        true
    };
    std::thread::scope(|s| {
        let pong = s.spawn(|| -> Result<(), String> {
            let pinned = pin_current_thread_to_cpu(b).map_err(|e| format!("pin to CPU {b}: {e}"));
            if pinned.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            barrier.wait();
            pinned?;
            let mut k = 0u64;
            loop {
                if !wait_for(2 * k + 1) {
                    return Ok(());
                }
                line.0.store(2 * k + 2, Ordering::Release);
                k += 1;
            }
        });
        // The caller's own affinity is left alone: both ends are threads of their own.
        let ping = s.spawn(|| -> Result<Vec<f64>, String> {
            let pinned = pin_current_thread_to_cpu(a).map_err(|e| format!("pin to CPU {a}: {e}"));
            if pinned.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            barrier.wait();
            let result = (|| {
                pinned?;
                let mut samples = Vec::new();
                'reps: for r in 0..reps {
                    if r > 0 && Instant::now() > soft {
                        break;
                    }
                    let t = Instant::now();
                    for i in 0..n {
                        let k = r * n + i;
                        line.0.store(2 * k + 1, Ordering::Release);
                        if !wait_for(2 * k + 2) {
                            break 'reps;
                        }
                    }
                    samples.push(t.elapsed().as_nanos() as f64 / (2 * n) as f64);
                }
                if samples.is_empty() {
                    Err(if abort.load(Ordering::Relaxed) {
                        "the partner thread could not be pinned".to_string()
                    } else {
                        format!(
                            "the exchange stalled for {} s (the two CPUs never ran the threads together)",
                            limit.as_secs()
                        )
                    })
                } else {
                    Ok(samples)
                }
            })();
            stop.store(true, Ordering::Relaxed);
            result
        });
        const PANICKED: &str = "a ping-pong thread panicked";
        let ping = ping.join().unwrap_or_else(|_| Err(PANICKED.into()));
        let pong = pong.join().unwrap_or_else(|_| Err(PANICKED.into()));
        pong.and(ping)
    })
}

/// Two CPUs of different cores: in the same L3 domain (`same == true`) or in different L3
/// domains of one package (`same == false`, `socket == false`), or in different packages
/// (`socket == true`). Only allowed CPUs.
fn pair(t: &Topology, same: bool, socket: bool) -> Option<(usize, usize)> {
    let cpus: Vec<usize> = t.allowed().iter().collect();
    for &a in &cpus {
        for &b in &cpus {
            if a == b || t.core_of(a) == t.core_of(b) {
                continue;
            }
            let same_l3 = t.l3_of(a) == t.l3_of(b);
            let same_pkg = t.package_of(a) == t.package_of(b);
            let ok = if socket {
                !same_pkg
            } else if same {
                same_l3
            } else {
                !same_l3 && same_pkg
            };
            if ok {
                return Some((a, b));
            }
        }
    }
    None
}

fn size_of(d: &[percid::topology::CacheDomain]) -> Option<u64> {
    d.iter().filter_map(|c| c.size).max()
}

fn kib(bytes: usize) -> String {
    percid::topology::human_size(bytes as u64)
}

/// Measures the figures of [`MEASURABLE`] on this machine (see the [module docs](self)).
pub fn measure(t: &Topology, budget: Budget) -> Result<Measurements, BurstError> {
    let cpus: Vec<usize> = t.allowed().iter().collect();
    let &home = cpus
        .first()
        .ok_or_else(|| measure_error("no allowed CPU"))?;
    let l1 = size_of(t.l1d()).unwrap_or(32 << 10) as usize;
    let l2 = size_of(t.l2()).unwrap_or(1 << 20) as usize;
    let l3 = size_of(t.l3()).map(|s| s as usize);
    let mut figures = Vec::new();
    let mut notes = Vec::new();

    // The single-thread figures, on a thread pinned to `home`.
    let single = std::thread::scope(|s| {
        s.spawn(|| -> Result<(Vec<Figure>, Vec<String>), BurstError> {
            pin_current_thread_to_cpu(home).map_err(|e| measure_error(format!("pin: {e}")))?;
            let mut figs = Vec::new();
            let mut notes = Vec::new();
            let reps = budget.reps();
            // Caches.
            let l1_bytes = l1 / 2;
            let l2_bytes = l2 / 2;
            let l3_bytes = l3.map_or(8 * l2, |s| (4 * l2).clamp(l2, s / 2));
            for (param, bytes, what) in [
                ("latency_ns.l1", l1_bytes, "L1d"),
                ("latency_ns.l2", l2_bytes, "L2"),
                ("latency_ns.l3", l3_bytes, "L3"),
            ] {
                let s = chase_latency(bytes, budget, 0x6361_6c69 ^ bytes as u64)?;
                figs.push(Figure::measured(
                    param,
                    &s,
                    format!(
                        "MEASURED by percid-burst calibrate: pointer chase over a random cyclic permutation of {} ({what} from sysfs: L1d {}, L2 {}, L3 {}), median of {} repetitions",
                        kib(bytes),
                        kib(l1),
                        kib(l2),
                        l3.map_or("unknown".to_string(), kib),
                        s.len()
                    ),
                ));
            }
            // DRAM, MLP and the stream.
            let want = l3.map_or(256 << 20, |s| 4 * s).max(64 << 20);
            let dram_bytes = want.min(budget.dram_cap());
            let partial = l3.is_some_and(|s| dram_bytes < 2 * s);
            let (mut buf, order) = chase_buffer(dram_bytes, 0x6472_616d)?;
            let lines = order.len();
            let starts = |k: usize| -> Vec<u64> {
                (0..k).map(|c| order[c * lines / k] as u64 * 8).collect()
            };
            let steps = budget.loads() / 2;
            chase(&mut buf, &starts(1), steps);
            let one: Vec<f64> = (0..reps)
                .take_while(|&i| budget.rep(i))
                .map(|_| chase(&mut buf, &starts(1), steps))
                .collect();
            let (dram, _, _) = summary(&one);
            figs.push(Figure::measured(
                "latency_ns.dram_local",
                &one,
                format!(
                    "MEASURED by percid-burst calibrate: pointer chase over {}{}, median of {} repetitions",
                    kib(dram_bytes),
                    if partial {
                        " (less than twice the L3: partly L3 hits, a lower bound of the DRAM latency)"
                    } else {
                        ""
                    },
                    one.len()
                ),
            ));
            // A "DRAM" chase barely slower than the L3 chase still hits a cache.
            let l3_ns = figs
                .iter()
                .find(|f: &&Figure| f.param == "latency_ns.l3")
                .and_then(|f| f.value)
                .unwrap_or(0.0);
            if dram < 1.5 * l3_ns {
                notes.push(format!(
                    "DRAM NOT REACHED: the chase over {} takes {dram:.1} ns, less than 1.5x the L3 chase ({l3_ns:.1} ns): it still hits a cache, so latency_ns.dram_local is a cache's latency (a lower bound of the DRAM latency)",
                    kib(dram_bytes)
                ));
                if let Some(f) = figs.last_mut() {
                    f.how += "; DRAM NOT REACHED (less than 1.5x the L3 chase: still cache hits, a lower bound)";
                }
            }
            let mut mlp = Vec::new();
            for k in [2usize, 4, 8, 16] {
                let per_load: Vec<f64> = (0..reps)
                    .take_while(|&i| budget.rep(i))
                    .map(|_| chase(&mut buf, &starts(k), steps / k) / k as f64)
                    .collect();
                mlp.push((k, dram / summary(&per_load).0));
            }
            let best = mlp.iter().map(|m| m.1).fold(1.0, f64::max);
            notes.push(format!(
                "MLP of independent misses (1 chase vs k interleaved, DRAM buffer): {}; up to {best:.1} lines in flight (an upper bound for the modified_* lines in flight, not written into them)",
                mlp.iter()
                    .map(|(k, r)| format!("k={k}: {r:.1}x"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            drop(order);
            // Sequential read-modify-write stream over the DRAM buffer: ns per line.
            let words = buf.words();
            let stream_lines = (words.len() / 8).min(budget.loads() * 4);
            let mut per_line = Vec::new();
            for r in 0..reps {
                let region = (r * stream_lines * 8) % (words.len() - stream_lines * 8 + 1);
                let slice = &mut words[region..region + stream_lines * 8];
                let t = Instant::now();
                for x in slice.iter_mut() {
                    *x = x.wrapping_add(1);
                }
                std::hint::black_box(&slice);
                per_line.push(t.elapsed().as_nanos() as f64 / stream_lines as f64);
            }
            let stream: Vec<f64> = per_line.iter().map(|p| (dram / p).max(1.0)).collect();
            figs.push(Figure::measured(
                "lines_in_flight.stream",
                &stream,
                format!(
                    "MEASURED by percid-burst calibrate: DRAM chase latency / ns per line of a sequential read-modify-write stream over {} of the DRAM buffer (median {:.2} ns per line), median of {reps}",
                    kib(stream_lines * 64),
                    summary(&per_line).0
                ),
            ));
            drop(buf);
            // The benchmark's pass, warm, and after sleeping.
            let clock = clock_pair_ns();
            let mut item = vec![0u8; 16 << 10];
            for _ in 0..2000 {
                increment(&mut item);
            }
            let warm: Vec<f64> = (0..200).map(|_| timed_pass(&mut item)).collect();
            let (warm_ns, _, _) = summary(&warm);
            let lines16 = (item.len() / 64) as f64;
            let core: Vec<f64> = (0..reps)
                .map(|r| {
                    let chunk = &warm[r * 200 / reps..(r + 1) * 200 / reps];
                    ((summary(chunk).0 - clock) / lines16).max(0.01)
                })
                .collect();
            figs.push(Figure::measured(
                "core_ns_per_line",
                &core,
                format!(
                    "MEASURED by percid-burst calibrate: the benchmark's pass (byte += 1 over 16 KiB) warm, minus two clock reads ({clock:.1} ns), per 64-byte line; median of {reps} groups of 40 passes"
                ),
            ));
            figs.push(Figure::measured(
                "pass_overhead_ns",
                &[clock * 0.8, clock, clock * 1.25],
                "MEASURED by percid-burst calibrate: two monotonic clock reads (range +-25%)"
                    .to_string(),
            ));
            // Idle: a compute-only loop (the clock) and the pass (the caches), each the first
            // thing run after a sleep.
            let spin = 4000;
            let warm_spin: Vec<f64> = (0..200).map(|_| spin_ns(spin)).collect();
            let (warm_spin_ns, _, _) = summary(&warm_spin);
            let mut clock_ratios = Vec::new();
            let mut pass_ratios = Vec::new();
            let mut skipped = Vec::new();
            for (i, &ms) in budget.sleeps_ms().iter().enumerate() {
                let needs = Duration::from_millis(2 * ms * budget.idle_reps() as u64);
                if i > 0 && budget.left() < needs {
                    skipped.push(ms);
                    continue;
                }
                let mut spun = Vec::new();
                let mut slept = Vec::new();
                for _ in 0..budget.idle_reps() {
                    std::thread::sleep(Duration::from_millis(ms));
                    spun.push(spin_ns(spin));
                    std::thread::sleep(Duration::from_millis(ms));
                    slept.push(timed_pass(&mut item));
                }
                clock_ratios.push((ms, summary(&spun).0 / warm_spin_ns, spun));
                pass_ratios.push((ms, summary(&slept).0 / warm_ns));
            }
            let show = |v: Vec<(u64, f64)>| {
                v.iter()
                    .map(|(ms, r)| format!("{ms} ms: {r:.2}x"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            notes.push(format!(
                "idle, clock: a compute-only loop ({warm_spin_ns:.0} ns warm) first after sleeping: {}",
                show(clock_ratios.iter().map(|c| (c.0, c.1)).collect())
            ));
            notes.push(format!(
                "idle, caches: the 16 KiB pass ({warm_ns:.0} ns warm) first after sleeping: {}",
                show(pass_ratios.clone())
            ));
            // The core's lines left its private caches within the first sleep after which
            // the pass is more than twice the warm one (deep idle, or other tasks' evictions
            // on a shared machine: the model's effect is the same). Where the L3 lines went
            // (l3_flush_ms) cannot be told apart here.
            match pass_ratios.iter().position(|(_, r)| *r > 2.0) {
                Some(k) => {
                    let (ms, r) = pass_ratios[k];
                    let below = if k == 0 { ms as f64 / 10.0 } else { pass_ratios[k - 1].0 as f64 };
                    figs.push(Figure {
                        param: "idle.deep_idle_ms",
                        value: Some(ms as f64),
                        range: Some([below, ms as f64]),
                        how: format!(
                            "MEASURED by percid-burst calibrate (an upper bound): the first 16 KiB pass after sleeping {ms} ms takes {r:.1}x the warm pass, so the core's lines left its private caches within {ms} ms (deep idle, or other tasks' evictions on a shared machine)"
                        ),
                    });
                }
                None => figs.push(Figure::not_measured(
                    "idle.deep_idle_ms",
                    format!(
                        "NOT MEASURED, not observable: the first 16 KiB pass after sleeping up to {} ms stays within 2x the warm pass",
                        pass_ratios.last().map_or(0, |p| p.0)
                    ),
                )),
            }
            if !skipped.is_empty() {
                notes.push(format!(
                    "idle: sleeps of {skipped:?} ms left out to stay within the time limit ({} s)",
                    budget.limit().as_secs()
                ));
            }
            let (longest, ratio, spun) = clock_ratios.last().expect("at least one sleep");
            if *ratio > 1.15 {
                let f: Vec<f64> = spun.iter().map(|s| (warm_spin_ns / s).min(1.0)).collect();
                figs.push(Figure::measured(
                    "idle.clock_factor",
                    &f,
                    format!(
                        "MEASURED by percid-burst calibrate: warm / first run of a compute-only loop after sleeping {longest} ms, median of {}",
                        budget.idle_reps()
                    ),
                ));
            } else {
                figs.push(Figure::not_measured(
                    "idle.clock_factor",
                    format!(
                        "NOT MEASURED, not observable: a compute-only loop run first after sleeping {longest} ms takes {ratio:.2}x its warm time (threshold 1.15)"
                    ),
                ));
            }
            Ok((figs, notes))
        })
        .join()
        .unwrap_or_else(|_| Err(measure_error("the measuring thread panicked")))
    })?;
    figures.extend(single.0);
    notes.extend(single.1);

    // Modified lines between cores.
    let limit = if budget.quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(4)
    };
    for (param, same, socket, what) in [
        (
            "latency_ns.same_l3_modified",
            true,
            false,
            "in the same L3 domain",
        ),
        (
            "latency_ns.cross_l3",
            false,
            false,
            "in different L3 domains of one package",
        ),
        (
            "latency_ns.cross_socket",
            false,
            true,
            "in different packages",
        ),
    ] {
        let fig = match pair(t, same, socket) {
            None => Figure::not_measured(
                param,
                format!(
                    "NOT MEASURED: no two allowed CPUs of different cores {what} on this machine"
                ),
            ),
            Some((a, b)) => match ping_pong(a, b, budget, limit) {
                Ok(s) => Figure::measured(
                    param,
                    &s,
                    format!(
                        "MEASURED by percid-burst calibrate: ping-pong of one modified line between CPUs {a} and {b} ({what}), half a round trip, median of {}",
                        s.len()
                    ),
                ),
                Err(why) => Figure::not_measured(
                    param,
                    format!("NOT MEASURED: ping-pong between CPUs {a} and {b} failed ({why})"),
                ),
            },
        };
        figures.push(fig);
    }
    let noisy: Vec<String> = figures
        .iter()
        // Only the figures whose range is the spread of repetitions.
        .filter(|f| f.param.starts_with("latency_ns.") || f.param.starts_with("lines_in_flight."))
        .filter_map(|f| {
            let [lo, hi] = f.range?;
            (lo > 0.0 && hi / lo > 2.0).then(|| format!("{} [{lo:.1}-{hi:.1}]", f.param))
        })
        .collect();
    if !noisy.is_empty() {
        notes.push(format!(
            "NOISY: the middle half of the repetitions spreads more than 2x for {}: other tasks share the caches and CPUs; run again on an idle machine",
            noisy.join(", ")
        ));
    }
    let order: Vec<String> = [
        "latency_ns.l1",
        "latency_ns.l2",
        "latency_ns.l3",
        "latency_ns.dram_local",
    ]
    .iter()
    .map(|p| {
        figures
            .iter()
            .find(|f| f.param == *p)
            .and_then(|f| f.value)
            .map_or("-".into(), |v| format!("{v:.1}"))
    })
    .collect();
    let values: Vec<f64> = order.iter().filter_map(|s| s.parse().ok()).collect();
    let ordered = values.windows(2).all(|w| w[0] <= w[1]);
    notes.push(format!(
        "latency order L1 < L2 < L3 < DRAM: {} ({} ns)",
        if ordered {
            "holds"
        } else {
            "does NOT hold (noise, or a level smaller than sysfs says)"
        },
        order.join(" < ")
    ));
    Ok(Measurements { figures, notes })
}

/// The cost model of `base` with the measured figures of `m` in place (value, range from the
/// repetitions, `sources` entry), the unmeasured ones kept and marked, then validated. Also
/// returns what was adjusted to keep the physical bounds.
pub fn apply(
    base: &CostModel,
    base_name: &str,
    m: &Measurements,
    packages: usize,
) -> Result<(CostModel, Vec<String>), BurstError> {
    let mut model = base.clone();
    let mut adjusted = Vec::new();
    for f in &m.figures {
        let Some(v) = f.value else {
            let kept = model.param(f.param).unwrap_or(f64::NAN);
            let old = model.sources.get(f.param).cloned().unwrap_or_default();
            model.sources.insert(
                f.param.to_string(),
                format!("{} -- kept from preset {base_name}: {kept} ({old})", f.how),
            );
            continue;
        };
        if let Some(x) = model.param_mut(f.param) {
            *x = v;
        }
        let [lo, hi] = f.range.unwrap_or([v, v]);
        model
            .ranges
            .insert(f.param.to_string(), [lo.min(v), hi.max(v)]);
        model.sources.insert(f.param.to_string(), f.how.clone());
    }
    // Every other parameter: not reachable by a micro-benchmark; say so.
    for p in crate::PARAMS {
        if m.figure(p).is_none() {
            let kept = model.param(p).unwrap_or(f64::NAN);
            let old = model.sources.get(*p).cloned().unwrap_or_default();
            model.sources.insert(
                p.to_string(),
                format!("NOT MEASURED (no micro-benchmark for it here): kept from preset {base_name}: {kept}{}", if old.is_empty() { String::new() } else { format!(" ({old})") }),
            );
        }
    }
    // The latency ranges must not overlap the next level's (validate checks every corner):
    // split overlapping repetition ranges at their midpoint.
    let levels = [
        "latency_ns.l1",
        "latency_ns.l2",
        "latency_ns.l3",
        "latency_ns.dram_local",
    ];
    for w in levels.windows(2) {
        let (a, b) = (
            model.param(w[0]).unwrap_or(0.0),
            model.param(w[1]).unwrap_or(0.0),
        );
        if a > b {
            // Out of order (noise, or a level smaller than sysfs says): the model needs
            // l1 <= l2 <= l3 <= dram, so the later level is raised to the earlier one.
            if let Some(x) = model.param_mut(w[1]) {
                *x = a;
            }
            if let Some(r) = model.ranges.get_mut(w[1]) {
                *r = [a, r[1].max(a)];
            }
            let note = format!(
                "{} raised from {b:.1} to {a:.1} ns, the measured {} (out of order: noise, or a level smaller than sysfs says)",
                w[1], w[0]
            );
            if let Some(src) = model.sources.get_mut(w[1]) {
                *src = format!("{src}; ADJUSTED: {note}");
            }
            adjusted.push(note);
        }
        let (a, b) = (
            model.param(w[0]).unwrap_or(0.0),
            model.param(w[1]).unwrap_or(0.0),
        );
        let hi_a = model.ranges.get(w[0]).map_or(a, |r| r[1]);
        let lo_b = model.ranges.get(w[1]).map_or(b, |r| r[0]);
        if hi_a > lo_b {
            let mid = (a + b) / 2.0;
            if let Some(r) = model.ranges.get_mut(w[0]) {
                r[1] = mid.max(a);
            }
            if let Some(r) = model.ranges.get_mut(w[1]) {
                r[0] = mid.min(b);
            }
        }
    }
    let lo = |m: &CostModel, n: &str| m.ranges.get(n).map_or(m.param(n).unwrap_or(0.0), |r| r[0]);
    let hi = |m: &CostModel, n: &str| m.ranges.get(n).map_or(m.param(n).unwrap_or(0.0), |r| r[1]);
    // `dram_remote` is the slowest serial miss of the machine, which the bounds use: no
    // source may supply a line slower, and it is at least the DRAM range. A kept or measured
    // figure slower than it raises it (a modified line moved between the cores of a virtual
    // machine can take longer than a chase that still hits a large L3).
    let stream = lo(&model, "lines_in_flight.stream");
    let probe = hi(&model, "idle.owner_probe_ns");
    let supplies = [
        hi(&model, "latency_ns.l3") / stream,
        hi(&model, "latency_ns.cross_l3") / stream,
        hi(&model, "latency_ns.cross_socket") / stream,
        (hi(&model, "latency_ns.same_l3_modified") + probe)
            / lo(&model, "lines_in_flight.modified_same_l3"),
        (hi(&model, "latency_ns.cross_l3").max(hi(&model, "latency_ns.cross_socket")) + probe)
            / lo(&model, "lines_in_flight.modified_cross_l3"),
        model.line_bytes as f64 / lo(&model, "bandwidth.fabric_read_gbps"),
    ];
    let slowest = supplies.iter().copied().fold(0.0, f64::max);
    let dram = hi(&model, "latency_ns.dram_local");
    let needed = dram.max(slowest);
    if packages <= 1 {
        // No remote DRAM: only the slowest serial miss.
        model.latency_ns.dram_remote = needed;
        model.ranges.remove("latency_ns.dram_remote");
        let why = if slowest > dram {
            format!(
                "one package, no remote DRAM: the slowest serial miss of the machine, here a line supplied by the other figures in {slowest:.1} ns (slower than the top of the measured DRAM range, {dram:.1} ns)"
            )
        } else {
            "one package, no remote DRAM: the slowest serial miss of the machine, the top of the measured latency_ns.dram_local range".to_string()
        };
        model
            .sources
            .insert("latency_ns.dram_remote".into(), why.clone());
        if slowest > dram {
            adjusted.push(format!("latency_ns.dram_remote = {needed:.1} ns: {why}"));
        }
    } else if lo(&model, "latency_ns.dram_remote") < needed {
        // The kept remote-DRAM figure is below what was measured: raise it (and its range).
        let old = model.latency_ns.dram_remote;
        model.latency_ns.dram_remote = old.max(needed);
        if let Some(r) = model.ranges.get_mut("latency_ns.dram_remote") {
            *r = [r[0].max(needed), r[1].max(needed)];
        }
        let note = format!(
            "latency_ns.dram_remote raised from {old:.1} to at least {needed:.1} ns, the slowest serial miss of the measured figures"
        );
        if let Some(src) = model.sources.get_mut("latency_ns.dram_remote") {
            *src = format!("{src}; ADJUSTED: {note}");
        }
        adjusted.push(note);
    }
    model.validate().map_err(BurstError::Model)?;
    Ok((model, adjusted))
}

/// The figures as printed: measured (median, interquartile range) or not (the kept value).
pub fn figures_text(m: &Measurements, base: &CostModel, base_name: &str) -> String {
    let mut text = String::new();
    for f in &m.figures {
        match (f.value, f.range) {
            (Some(v), Some([lo, hi])) => {
                text += &format!("  {:<28} {v:>9.2}  [{lo:.2}-{hi:.2}]  measured\n", f.param)
            }
            _ => {
                text += &format!(
                    "  {:<28} {:>9.2}  NOT MEASURED, kept from {base_name}: {}\n",
                    f.param,
                    base.param(f.param).unwrap_or(f64::NAN),
                    f.how
                )
            }
        }
    }
    for n in &m.notes {
        text += &format!("  note: {n}\n");
    }
    text
}

/// The command: measures, writes the description, prints the figures.
pub fn run(args: &crate::cli::CalibrateArgs) -> Result<i32, BurstError> {
    // Check the output before any work.
    let out =
        Output::prepare(&args.output).map_err(|e| BurstError::Usage(format!("--output: {e}")))?;
    if cfg!(debug_assertions) && !args.allow_debug {
        return Err(BurstError::DebugBuild);
    }
    let base_machine = MachineDescription::preset(&args.base).map_err(BurstError::Target)?;
    let base = CostModel::from_machine(&base_machine).map_err(BurstError::Model)?;
    if cfg!(debug_assertions) {
        say(
            "calibrate: a debug build (--allow-debug): its loops are unoptimised, its figures not this machine's",
        );
    }
    let started = Instant::now();
    let mut machine = MachineDescription::sysfs().map_err(BurstError::Topology)?;
    let budget = Budget::new(args.quick);
    let m = measure(&machine.topology, budget)?;
    let packages = machine.topology.packages().len();
    let mut report = format!(
        "calibrate: {} in {:.1} s ({}), base preset {} for what is not measured\n",
        machine.topology.name(),
        started.elapsed().as_secs_f64(),
        if args.quick { "--quick" } else { "full" },
        args.base
    );
    report += &figures_text(&m, &base, &args.base);
    let applied = apply(&base, &args.base, &m, packages);
    let (model, adjusted) = match applied {
        Ok(x) => x,
        Err(e) => {
            crate::output::write_stderr(&report);
            return Err(e);
        }
    };
    machine.cost_model =
        Some(serde_json::to_value(&model).map_err(|e| measure_error(e.to_string()))?);
    // The description must load back as `--describe` loads it.
    let text = format!("{}\n", machine.to_json());
    let back = MachineDescription::from_json(&text).map_err(BurstError::Target)?;
    CostModel::from_machine(&back).map_err(BurstError::Model)?;
    out.write(&text)?;
    for a in &adjusted {
        report += &format!("  adjusted: {a}\n");
    }
    report += &format!(
        "  wrote {} (use: percid-burst --describe {})\n",
        out.describe(),
        out.describe()
    );
    if out.is_stdout() {
        crate::output::write_stderr(&report);
    } else {
        crate::write_stdout(&report)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CostModel {
        CostModel::from_machine(&MachineDescription::preset("epyc-9654").unwrap()).unwrap()
    }

    fn fig(param: &'static str, v: f64, lo: f64, hi: f64) -> Figure {
        Figure {
            param,
            value: Some(v),
            range: Some([lo, hi]),
            how: "MEASURED (test)".into(),
        }
    }

    #[test]
    fn measured_figures_replace_the_base_and_the_rest_is_marked() {
        let m = Measurements {
            figures: vec![
                fig("latency_ns.l1", 1.3, 1.3, 1.4),
                fig("latency_ns.l2", 5.5, 5.4, 5.6),
                fig("latency_ns.l3", 20.0, 18.0, 30.0),
                fig("latency_ns.dram_local", 90.0, 85.0, 95.0),
                Figure::not_measured("latency_ns.cross_l3", "NOT MEASURED: one L3"),
            ],
            notes: vec![],
        };
        let (model, _) = apply(&base(), "epyc-9654", &m, 1).unwrap();
        assert_eq!(model.latency_ns.l3, 20.0);
        assert_eq!(model.ranges["latency_ns.l3"], [18.0, 30.0]);
        assert!(model.sources["latency_ns.l3"].starts_with("MEASURED"));
        assert_eq!(model.latency_ns.cross_l3, 110.0);
        assert!(model.sources["latency_ns.cross_l3"].starts_with("NOT MEASURED"));
        assert!(model.sources["idle.deep_idle_ms"].starts_with("NOT MEASURED"));
        // One package: dram_remote is the slowest serial miss, at least the DRAM range's top.
        assert!(model.latency_ns.dram_remote >= 95.0);
        model.validate().unwrap();
    }

    #[test]
    fn out_of_order_and_overlapping_figures_are_adjusted_into_a_valid_model() {
        // A noisy machine: L3 measured above DRAM, ranges overlapping, and on two packages a
        // DRAM latency above the kept remote figure (180-240 ns).
        let m = Measurements {
            figures: vec![
                fig("latency_ns.l1", 1.3, 1.3, 6.0),
                fig("latency_ns.l2", 5.5, 5.0, 30.0),
                fig("latency_ns.l3", 300.0, 20.0, 700.0),
                fig("latency_ns.dram_local", 250.0, 90.0, 690.0),
                fig("latency_ns.same_l3_modified", 400.0, 60.0, 1400.0),
            ],
            notes: vec![],
        };
        for packages in [1, 2] {
            let (model, adjusted) = apply(&base(), "epyc-9654", &m, packages).unwrap();
            model.validate().unwrap();
            assert_eq!(model.latency_ns.dram_local, 300.0);
            assert!(model.sources["latency_ns.dram_local"].contains("ADJUSTED"));
            assert!(
                adjusted.iter().any(|a| a.contains("dram_remote")),
                "{adjusted:?}"
            );
            assert!(model.latency_ns.dram_remote >= 690.0);
        }
    }
}
