//! `Counter::add` against the alternatives users would pick, with 1 and 2 threads.
//!
//! * `percid-<index>`: `Counter::add` with the default index and each rseq index;
//! * `percid-fallback`: the portable fallback (user-space CID leases, cache-local policy:
//!   what every index resolves to under `PERCID_FORCE_FALLBACK=1`);
//! * `atomic-shared`: one `AtomicU64::fetch_add` shared by all threads;
//! * `atomic-padded-per-thread`: one cache-padded `AtomicU64` per thread, `fetch_add`.
//!
//! Each measurement is the wall time for every thread to do `iters` adds, divided by
//! `iters`: nanoseconds per add per thread. Read ratios within one run.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use percid::{Counter, Index, Policy};
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[repr(align(128))]
struct Padded(AtomicU64);

/// Runs `op(thread)` `iters` times on each of `threads` threads started together; returns
/// the longest thread's time.
fn run_threads<F: Fn(usize) + Sync>(threads: usize, iters: u64, op: &F) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let op = &op;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        op(t);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn counters(c: &mut Criterion) {
    let mut group = c.benchmark_group("counter_add");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        let mut indexes = vec![("default", Index::default())];
        if percid::status().rseq_in_use {
            indexes.push(("cpu", Index::CpuId));
            if percid::status().mm_cid {
                indexes.push(("mmcid", Index::MmCid));
            }
        }
        for (name, index) in indexes {
            let counter = Counter::with_index(index);
            group.bench_function(BenchmarkId::new(format!("percid-{name}"), threads), |b| {
                b.iter_custom(|iters| run_threads(threads, iters, &|_| counter.add(black_box(1))))
            });
        }
        let fallback = Counter::with_index(Index::User(Policy::CacheLocal));
        group.bench_function(BenchmarkId::new("percid-fallback", threads), |b| {
            b.iter_custom(|iters| run_threads(threads, iters, &|_| fallback.add(black_box(1))))
        });
        let shared = AtomicU64::new(0);
        group.bench_function(BenchmarkId::new("atomic-shared", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|_| {
                    shared.fetch_add(black_box(1), Ordering::Relaxed);
                })
            })
        });
        let padded: Vec<Padded> = (0..threads).map(|_| Padded(AtomicU64::new(0))).collect();
        group.bench_function(BenchmarkId::new("atomic-padded-per-thread", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|t| {
                    padded[t].0.fetch_add(black_box(1), Ordering::Relaxed);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, counters);
criterion_main!(benches);
