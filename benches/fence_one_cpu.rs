//! The rseq fences side by side in one process (issue 19, item 6): the process-wide
//! `membarrier` fence against the one-CPU one (`MEMBARRIER_CMD_FLAG_CPU`) aimed at the calling
//! thread's CPU, and a `cpu_id` `List` push + drain of one slot (which now uses the one-CPU
//! fence). The measuring thread is pinned to the first allowed CPU and a helper thread spins
//! (popping an empty list) pinned to the second, as a busy process's threads do: the
//! process-wide fence interrupts it, the one-CPU fence aimed at the measuring thread's own
//! CPU does not; `one-CPU (helper's)` aims at the helper's CPU.
//!
//! Prints the median microseconds of each and their ratio. Noisy machine: read the ratios.
//!
//! `cargo bench -p percid --bench fence_one_cpu [-- --ops N --rounds R]`

use percid::rseq::membarrier::{fence_rseq, fence_rseq_on, fence_stats, rseq_fence_ready};
use percid::{Index, List};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn time_per_op_us(ops: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..ops {
        f();
    }
    start.elapsed().as_nanos() as f64 / ops as f64 / 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Pins the calling thread to `cpu` (best effort: a bench, not a test).
fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data (zeroed: the empty set); sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `pin`; sched_getaffinity writes at most size_of::<cpu_set_t>() bytes.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        set
    };
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `set` is initialised and `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

fn main() {
    if !rseq_fence_ready() {
        println!("no membarrier rseq fence here: nothing to measure");
        return;
    }
    let ops = arg("--ops", 20_000);
    let rounds = arg("--rounds", 7) as usize;
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        println!("fewer than two allowed CPUs: nothing to compare");
        return;
    }
    let (mine, helper) = (cpus[0], cpus[1]);
    let stop = AtomicBool::new(false);
    let list: List<u64> = List::with_index(Index::CpuId);
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(helper);
            while !stop.load(Ordering::Relaxed) {
                black_box(list.pop());
            }
        });
        pin(mine);
        let (mut wide, mut one, mut other, mut drain) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            wide.push(time_per_op_us(ops, || assert!(fence_rseq())));
            one.push(time_per_op_us(ops, || {
                assert!(fence_rseq_on(mine).is_some())
            }));
            other.push(time_per_op_us(ops, || {
                assert!(fence_rseq_on(helper).is_some())
            }));
            drain.push(time_per_op_us(ops, || {
                list.push(1);
                black_box(list.drain());
            }));
        }
        stop.store(true, Ordering::Relaxed);
        let (w, o, h, d) = (
            median(&mut wide),
            median(&mut one),
            median(&mut other),
            median(&mut drain),
        );
        println!(
            "process-wide fence {w:.2} us, one-CPU (own) {o:.2} us: {:.2}x, one-CPU (helper's) {h:.2} us: {:.2}x",
            w / o,
            w / h
        );
        println!("cpu_id List push + drain of one slot {d:.2} us");
        println!("{:?}", list.stats());
        println!("{:?}", fence_stats());
    });
}
