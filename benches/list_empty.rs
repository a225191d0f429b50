//! Empty pops against a pop+push pair, side by side in one process (issue 19, item 2).
//!
//! For each index source, one thread times, alternately and `--rounds` times over:
//!
//! * `pair`: `pop_node` + `push_node` of one node on a list that keeps one element;
//! * `empty-fresh`: `pop_node` on a list never pushed to;
//! * `empty-used`: `pop_node` on a list whose slot held elements and was emptied again
//!   (the common case of a per-CPU free list whose misses go to a shared pool).
//!
//! Prints the median nanoseconds per operation of each and the ratio `empty-used / pair`.
//! Timings are noisy: read the ratios of one run, not the absolute figures.
//!
//! `cargo bench -p percid --bench list_empty [-- --ops N --rounds R]`

use percid::{Index, List, Policy};
use std::hint::black_box;
use std::time::Instant;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn time_per_op(ops: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..ops {
        f();
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let ops = arg("--ops", 2_000_000);
    let rounds = arg("--rounds", 7) as usize;
    println!("index       pair ns  empty-fresh ns  empty-used ns  used/pair");
    for index in [Index::CpuId, Index::MmCid, Index::User(Policy::CacheLocal)] {
        let pair: List<u64> = List::with_index(index);
        pair.push(1);
        let fresh: List<u64> = List::with_index(index);
        let used: List<u64> = List::with_index(index);
        for i in 0..64 {
            used.push(i);
        }
        while used.pop().is_some() {}
        let (mut p, mut f, mut u) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            p.push(time_per_op(ops, || {
                if let Some(n) = pair.pop_node() {
                    pair.push_node(black_box(n));
                }
            }));
            f.push(time_per_op(ops, || {
                black_box(fresh.pop_node());
            }));
            u.push(time_per_op(ops, || {
                black_box(used.pop_node());
            }));
        }
        let (p, f, u) = (median(&mut p), median(&mut f), median(&mut u));
        println!(
            "{:<10} {p:>8.2} {f:>15.2} {u:>14.2} {:>10.2}x",
            index.to_string(),
            u / p
        );
    }
}
