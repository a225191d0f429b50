//! `List` push+pop against a `Mutex<Vec>` and crossbeam's `SegQueue`, with 1 and 2 threads.
//! Each iteration pushes one element and pops one (from the calling thread's slot for
//! `List`). Nanoseconds per push+pop pair per thread; read ratios within one run.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use crossbeam_queue::SegQueue;
use percid::{Index, List, Policy};
use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

fn run_threads<F: Fn() + Sync>(threads: usize, iters: u64, op: &F) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        op();
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

fn lists(c: &mut Criterion) {
    let mut group = c.benchmark_group("list_push_pop");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        let list = List::new().unwrap();
        group.bench_function(
            BenchmarkId::new(format!("percid-{}", Index::default()), threads),
            |b| {
                b.iter_custom(|iters| {
                    run_threads(threads, iters, &|| {
                        list.push(black_box(1u64));
                        black_box(list.pop());
                    })
                })
            },
        );
        let fallback = List::with_index(Index::User(Policy::CacheLocal)).unwrap();
        group.bench_function(BenchmarkId::new("percid-fallback", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    fallback.push(black_box(1u64));
                    black_box(fallback.pop());
                })
            })
        });
        let vec = Mutex::new(Vec::<u64>::new());
        group.bench_function(BenchmarkId::new("mutex-vec", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    vec.lock().unwrap().push(black_box(1));
                    black_box(vec.lock().unwrap().pop());
                })
            })
        });
        let queue = SegQueue::<u64>::new();
        group.bench_function(BenchmarkId::new("crossbeam-segqueue", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|| {
                    queue.push(black_box(1));
                    black_box(queue.pop());
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lists);
criterion_main!(benches);
