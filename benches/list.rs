//! `List` push+pop against a `Mutex<Vec>` and crossbeam's `SegQueue`, with 1 and 2 threads.
//! Each iteration pushes one element and pops one (from the calling thread's slot for
//! `List`). Nanoseconds per push+pop pair per thread; read ratios within one run.

mod common;

use common::with_workers;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use crossbeam_queue::SegQueue;
use percid::{Index, List, Policy};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

fn lists(c: &mut Criterion) {
    let mut group = c.benchmark_group("list_push_pop");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        let list = List::new();
        with_workers(
            threads,
            |_| {
                list.push(black_box(1u64));
                black_box(list.pop());
            },
            |run| {
                let id = BenchmarkId::new(format!("percid-{}", Index::default()), threads);
                group.bench_function(id, |b| b.iter_custom(run));
            },
        );
        let fallback = List::with_index(Index::User(Policy::CacheLocal));
        with_workers(
            threads,
            |_| {
                fallback.push(black_box(1u64));
                black_box(fallback.pop());
            },
            |run| {
                group.bench_function(BenchmarkId::new("percid-fallback", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
        let vec = Mutex::new(Vec::<u64>::new());
        with_workers(
            threads,
            |_| {
                vec.lock().unwrap().push(black_box(1));
                black_box(vec.lock().unwrap().pop());
            },
            |run| {
                group.bench_function(BenchmarkId::new("mutex-vec", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
        let queue = SegQueue::<u64>::new();
        with_workers(
            threads,
            |_| {
                queue.push(black_box(1));
                black_box(queue.pop());
            },
            |run| {
                group.bench_function(BenchmarkId::new("crossbeam-segqueue", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, lists);
criterion_main!(benches);
