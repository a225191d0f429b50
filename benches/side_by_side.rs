//! Side by side with the C reference, librseq's `param_test`: the same loops, whole-process
//! wall time, runs alternating, medians.
//!
//! ```text
//! cargo bench --bench side_by_side -- --librseq /path/to/librseq/tests/.libs
//! cargo bench --bench side_by_side -- --tests i,l,s --modes cpu,mmcid --threads 2 --runs 5
//! ```
//!
//! Each run is a fresh process (this program re-executes itself for the percid side, and
//! runs librseq's `param_test_benchmark` / `param_test_mm_cid_benchmark` for the C side), timed
//! from spawn to exit by this process, so both sides pay process start-up, thread creation
//! and first-use registration the same way. For each test and index mode the runs alternate:
//! percid variant(s), then librseq, `--runs` times; the table gives medians, min and max, and
//! `speed` = librseq median / percid median (above 1: percid is faster).
//!
//! The loops, matching `param_test -T X -t THREADS -r REPS` (benchmark build: no yields, no
//! sleeps, no signals, no verification in the timed loop):
//!
//! * `i`: per-slot increment. librseq: `rseq_load_add_store__ptr` on this CPU's counter,
//!   retried on abort. percid: `Counter::add(1)` (`counter`), `PerCpu::run` with
//!   `Current::add` (`per_cpu`), and the librseq-style free functions `ops::current_index` +
//!   `ops::add` (`ops`).
//! * `l`: per-slot list, 100 elements per slot: pop, then push the popped element back.
//!   librseq: its per-CPU list (caller-owned nodes). percid: `List::pop_node` +
//!   `List::push_node` (no allocation), elements pushed by each worker on its own slot
//!   before the timed loop (one worker pinned per CPU for cpu_id; under mm_cid each worker
//!   fills the slot of its concurrency ID).
//! * `s`: per-slot spinlock: lock this CPU's slot with a compare-and-store section, increment
//!   a plain counter, release-store. percid: `PerCpuLock<u64>`.
//!
//! Without `--librseq` only the percid side runs (the table then has no ratio). The librseq
//! build is not part of this repository (see the README, "Performance").

use std::process::Command;
use std::sync::Barrier;
use std::time::Instant;

use percid::lock::PerCpuLock;
use percid::ops;
use percid::per_cpu::PerCpu;
use percid::rseq::IndexMode;
use percid::{Counter, Index, List};

const USAGE: &str = "\
side_by_side: percid against librseq's param_test, same loops, whole-process time

  --librseq DIR     directory with param_test_benchmark and param_test_mm_cid_benchmark
  --tests LIST      i (increment), l (list pop+push), s (spinlock) (default i,l,s)
  --modes LIST      cpu, mmcid (default cpu,mmcid)
  --threads N       threads (default 2)
  --runs N          alternating runs per cell (default 5)
  --reps-i N        increments per thread (default 50000000)
  --reps-l N        list pop+push pairs per thread (default 10000000)
  --reps-s N        lock+unlock pairs per thread (default 10000000)
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Test {
    Inc,
    List,
    Lock,
}

impl Test {
    fn letter(self) -> &'static str {
        match self {
            Test::Inc => "i",
            Test::List => "l",
            Test::Lock => "s",
        }
    }

    /// The percid variants that do this test's work.
    fn variants(self) -> &'static [&'static str] {
        match self {
            Test::Inc => &[
                "counter",
                "counter_handle",
                "per_cpu",
                "per_cpu_handle",
                "ops",
                "ops_at",
            ],
            Test::List => &["list_nodes", "list_handle"],
            Test::Lock => &["per_cpu_lock", "lock_handle"],
        }
    }
}

struct Options {
    librseq: Option<String>,
    tests: Vec<Test>,
    modes: Vec<IndexMode>,
    threads: usize,
    runs: usize,
    reps: [u64; 3],
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        librseq: std::env::var("LIBRSEQ_TESTS_DIR").ok(),
        tests: vec![Test::Inc, Test::List, Test::Lock],
        modes: vec![IndexMode::CpuId, IndexMode::MmCid],
        threads: 2,
        runs: 5,
        reps: [50_000_000, 10_000_000, 10_000_000],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--bench" => {} // added by `cargo bench`
            "--librseq" => o.librseq = Some(val()?),
            "--tests" => {
                o.tests = val()?
                    .split(',')
                    .map(|t| match t {
                        "i" => Ok(Test::Inc),
                        "l" => Ok(Test::List),
                        "s" => Ok(Test::Lock),
                        _ => Err(format!("unknown test {t:?} (i, l, s)")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--modes" => {
                o.modes = val()?
                    .split(',')
                    .map(|m| match m {
                        "cpu" => Ok(IndexMode::CpuId),
                        "mmcid" => Ok(IndexMode::MmCid),
                        _ => Err(format!("unknown mode {m:?} (cpu, mmcid)")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--threads" => o.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--runs" => o.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--reps-i" => o.reps[0] = val()?.parse().map_err(|e| format!("--reps-i: {e}"))?,
            "--reps-l" => o.reps[1] = val()?.parse().map_err(|e| format!("--reps-l: {e}"))?,
            "--reps-s" => o.reps[2] = val()?.parse().map_err(|e| format!("--reps-s: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.threads == 0 || o.runs == 0 {
        return Err("--threads and --runs must be at least 1".into());
    }
    Ok(o)
}

fn reps(o: &Options, t: Test) -> u64 {
    o.reps[match t {
        Test::Inc => 0,
        Test::List => 1,
        Test::Lock => 2,
    }]
}

fn main() {
    // Child: one percid run, then exit.
    if let Ok(spec) = std::env::var("PERCID_SIDE_BY_SIDE_CHILD") {
        child(&spec);
        return;
    }
    let o = match parse() {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("side_by_side: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("side_by_side: WARNING: a debug build; run it with `cargo bench`");
    }
    let status = percid::status();
    println!(
        "percid {} | registration: {:?} | mm_cid: {} | {} thread(s), {} run(s) per cell, alternating",
        env!("CARGO_PKG_VERSION"),
        status.owner,
        status.mm_cid,
        o.threads,
        o.runs
    );
    if o.librseq.is_none() {
        println!("(no --librseq DIR: percid side only)");
    }
    println!(
        "\n{:<6} {:<6} {:<14} {:>12} {:>9} {:>9} {:>10} {:>8}",
        "test", "mode", "variant", "reps/thread", "median s", "min s", "max s", "speed"
    );
    for &test in &o.tests {
        for &mode in &o.modes {
            let n = reps(&o, test);
            let variants = test.variants();
            let mut ours: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
            let mut theirs: Vec<f64> = Vec::new();
            for _ in 0..o.runs {
                for (k, v) in variants.iter().enumerate() {
                    ours[k].push(run_percid(test, v, mode, o.threads, n));
                }
                if let Some(dir) = &o.librseq {
                    match run_librseq(dir, test, mode, o.threads, n) {
                        Ok(t) => theirs.push(t),
                        Err(e) => {
                            eprintln!("side_by_side: librseq: {e}");
                            std::process::exit(1);
                        }
                    }
                }
            }
            let mode_name = match mode {
                IndexMode::CpuId => "cpu",
                IndexMode::MmCid => "mmcid",
            };
            let c = (!theirs.is_empty()).then(|| median(&theirs));
            for (k, v) in variants.iter().enumerate() {
                let m = median(&ours[k]);
                let speed = c.map_or("-".to_string(), |c| format!("{:.2}x", c / m));
                println!(
                    "{:<6} {:<6} {:<14} {:>12} {:>9.3} {:>9.3} {:>10.3} {:>8}",
                    test.letter(),
                    mode_name,
                    v,
                    n,
                    m,
                    min(&ours[k]),
                    max(&ours[k]),
                    speed
                );
            }
            if let Some(c) = c {
                println!(
                    "{:<6} {:<6} {:<14} {:>12} {:>9.3} {:>9.3} {:>10.3} {:>8}",
                    test.letter(),
                    mode_name,
                    "librseq",
                    n,
                    c,
                    min(&theirs),
                    max(&theirs),
                    "1.00x"
                );
            }
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn timed(mut cmd: Command) -> Result<f64, String> {
    let start = Instant::now();
    let out = cmd.output().map_err(|e| format!("spawn: {e}"))?;
    let t = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}):\n{}{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(t)
}

fn run_percid(test: Test, variant: &str, mode: IndexMode, threads: usize, reps: u64) -> f64 {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    let mode = match mode {
        IndexMode::CpuId => "cpu",
        IndexMode::MmCid => "mmcid",
    };
    cmd.env(
        "PERCID_SIDE_BY_SIDE_CHILD",
        format!("{}:{variant}:{mode}:{threads}:{reps}", test.letter()),
    );
    timed(cmd).unwrap_or_else(|e| {
        eprintln!("side_by_side: percid child: {e}");
        std::process::exit(1)
    })
}

fn run_librseq(
    dir: &str,
    test: Test,
    mode: IndexMode,
    threads: usize,
    reps: u64,
) -> Result<f64, String> {
    let bin = match mode {
        IndexMode::CpuId => "param_test_benchmark",
        IndexMode::MmCid => "param_test_mm_cid_benchmark",
    };
    let path = std::path::Path::new(dir).join(bin);
    let mut cmd = Command::new(&path);
    cmd.args([
        "-T",
        test.letter(),
        "-t",
        &threads.to_string(),
        "-r",
        &reps.to_string(),
    ]);
    // The libtool wrapper layout: the library sits in ../../src/.libs of tests/.libs.
    let lib = std::path::Path::new(dir).join("../../src/.libs");
    if lib.exists() {
        cmd.env("LD_LIBRARY_PATH", lib);
    }
    timed(cmd)
}

/// One percid run in this (child) process: `test:variant:mode:threads:reps`.
fn child(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [test, variant, mode, threads, reps] = parts[..] else {
        panic!("bad child spec {spec:?}");
    };
    let (mode, index) = match mode {
        "cpu" => (IndexMode::CpuId, Index::CpuId),
        _ => (IndexMode::MmCid, Index::MmCid),
    };
    let threads: usize = threads.parse().unwrap();
    let reps: u64 = reps.parse().unwrap();
    match (test, variant) {
        ("i", "counter") => {
            let c = Counter::with_index(index);
            workers(threads, |_| {
                for _ in 0..reps {
                    c.add(1);
                }
            });
            assert_eq!(c.sum(), reps * threads as u64);
        }
        ("i", "counter_handle") => {
            let c = Counter::with_index(index);
            workers(threads, |_| {
                let h = c.handle();
                for _ in 0..reps {
                    h.add(1);
                }
            });
            assert_eq!(c.sum(), reps * threads as u64);
        }
        ("i", "per_cpu_handle") => {
            let p = PerCpu::with_index(index, std::sync::atomic::AtomicU64::new(0));
            workers(threads, |_| {
                let h = p.handle();
                for _ in 0..reps {
                    let _ = h.run(|cur, slot| cur.add(slot, 1).is_committed().then_some(()));
                }
            });
            let sum: u64 = p
                .iter()
                .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            assert_eq!(sum, reps * threads as u64);
        }
        ("i", "per_cpu") => {
            let p = PerCpu::with_index(index, std::sync::atomic::AtomicU64::new(0));
            workers(threads, |_| {
                for _ in 0..reps {
                    let _ = p.run(|cur, slot| cur.add(slot, 1).is_committed().then_some(()));
                }
            });
            let sum: u64 = p
                .iter()
                .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            assert_eq!(sum, reps * threads as u64);
        }
        ("i", "ops") => match mode {
            // The mode is a constant in each arm, as in librseq's separate binaries.
            IndexMode::CpuId => ops_inc::<false, false>(threads, reps),
            IndexMode::MmCid => ops_inc::<true, false>(threads, reps),
        },
        ("i", "ops_at") => match mode {
            IndexMode::CpuId => ops_inc::<false, true>(threads, reps),
            IndexMode::MmCid => ops_inc::<true, true>(threads, reps),
        },
        ("l", v @ ("list_nodes" | "list_handle")) => {
            let list: List<u64> = List::with_index(index);
            let allowed: Vec<usize> = percid::topology::allowed_cpus().unwrap().iter().collect();
            workers(threads, |w| {
                // Fill this worker's slot with 100 elements: pinned to one CPU for cpu_id.
                let mask = percid::topology::current_thread_affinity().unwrap();
                if mode == IndexMode::CpuId {
                    percid::topology::pin_current_thread_to_cpu(allowed[w % allowed.len()])
                        .unwrap();
                }
                for j in 0..100 {
                    list.push(j);
                }
                percid::topology::pin_current_thread(&mask).unwrap();
                barrier_wait(threads);
                if v == "list_handle" {
                    let h = list.handle();
                    for _ in 0..reps {
                        if let Some(node) = h.pop_node() {
                            h.push_node(node);
                        }
                    }
                } else {
                    for _ in 0..reps {
                        if let Some(node) = list.pop_node() {
                            list.push_node(node);
                        }
                    }
                }
            });
            assert_eq!(list.drain().len(), 100 * threads);
        }
        ("s", v @ ("per_cpu_lock" | "lock_handle")) => {
            let lock = PerCpuLock::with_index(index, 0u64);
            workers(threads, |_| {
                if v == "lock_handle" {
                    let h = lock.handle();
                    for _ in 0..reps {
                        *h.lock().expect("a slot") += 1;
                    }
                } else {
                    for _ in 0..reps {
                        *lock.lock().expect("a slot") += 1;
                    }
                }
            });
            let mut sum = 0;
            lock.with_each(|_, v| sum += *v)
                .expect("the membarrier fence works here");
            assert_eq!(sum, reps * threads as u64);
        }
        _ => panic!("unknown test/variant {test}:{variant}"),
    }
}

/// The `ops` variants of the increment test: `current_index` then `add` (a computed
/// pointer) or `add_at` (base + offset), retried on abort, on one counter per possible CPU
/// padded to 128 bytes (as librseq's per-CPU entries).
fn ops_inc<const MM_CID: bool, const AT: bool>(threads: usize, reps: u64) {
    let n = percid::topology::possible_cpu_count();
    let padded: Vec<[std::sync::atomic::AtomicU64; 16]> =
        (0..n).map(|_| Default::default()).collect();
    // Captured by value: the base stays in a register, as librseq's data pointer.
    let base = padded.as_ptr() as usize;
    workers(threads, |_| {
        let base = base as *mut u8;
        // A constant in the loop, as in librseq's separate binaries.
        let mode = if MM_CID {
            IndexMode::MmCid
        } else {
            IndexMode::CpuId
        };
        for _ in 0..reps {
            loop {
                let Some(s) = ops::current_index(mode) else {
                    panic!("no rseq registration")
                };
                let s = s as usize;
                // SAFETY: `s` from current_index on this thread: a CPU number or mm_cid, below
                // the possible CPUs (the kernel's bound), as librseq's loop assumes; the cell is
                // an AtomicU64 only touched by ops::add of this mode.
                let outcome = unsafe {
                    if AT {
                        ops::add_at(mode, s as u32, base, s * 128, 1)
                    } else {
                        ops::add(mode, s as u32, base.add(s * 128).cast(), 1)
                    }
                };
                if outcome.is_committed() {
                    break;
                }
            }
        }
    });
    let sum: u64 = padded
        .iter()
        .map(|p| p[0].load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(sum, reps * threads as u64);
}

static BARRIER: std::sync::OnceLock<Barrier> = std::sync::OnceLock::new();

fn barrier_wait(threads: usize) {
    BARRIER.get_or_init(|| Barrier::new(threads)).wait();
}

/// Runs `f(worker)` on `threads` threads and joins them.
fn workers(threads: usize, f: impl Fn(usize) + Sync) {
    std::thread::scope(|s| {
        for w in 0..threads {
            let f = &f;
            s.spawn(move || f(w));
        }
    });
}
