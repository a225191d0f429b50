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
use percid::{BatchedCounter, Counter, Index, Limit, Policy};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
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

/// `BatchedCounter::add` and `read` against `Counter::add`/`sum` and a shared atomic.
fn batched(c: &mut Criterion) {
    let mut group = c.benchmark_group("batched_counter");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        let batched = BatchedCounter::new(64).unwrap();
        group.bench_function(BenchmarkId::new("batched-add", threads), |b| {
            b.iter_custom(|iters| run_threads(threads, iters, &|_| batched.add(black_box(1))))
        });
        let exact = Counter::new();
        group.bench_function(BenchmarkId::new("counter-add", threads), |b| {
            b.iter_custom(|iters| run_threads(threads, iters, &|_| exact.add(black_box(1))))
        });
    }
    let batched = BatchedCounter::new(64).unwrap();
    batched.add(1);
    group.bench_function("batched-read", |b| b.iter(|| black_box(batched.read())));
    let exact = Counter::new();
    exact.add(1);
    group.bench_function("counter-sum", |b| b.iter(|| black_box(exact.sum())));
    group.finish();
}

/// A limit counter guarded by a mutex, the simplest alternative.
struct MutexLimit {
    usage: Mutex<u64>,
    limit: u64,
}

impl MutexLimit {
    fn try_charge(&self, n: u64) -> bool {
        let mut u = self.usage.lock().unwrap();
        if *u + n <= self.limit {
            *u += n;
            true
        } else {
            false
        }
    }
    fn uncharge(&self, n: u64) {
        *self.usage.lock().unwrap() -= n;
    }
}

/// A limit counter on one atomic with a compare-exchange loop.
struct AtomicLimit {
    usage: AtomicU64,
    limit: u64,
}

impl AtomicLimit {
    fn try_charge(&self, n: u64) -> bool {
        self.usage
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.limit).then_some(u + n)
            })
            .is_ok()
    }
    fn uncharge(&self, n: u64) {
        self.usage.fetch_sub(n, Ordering::AcqRel);
    }
}

/// `Limit::try_charge` + `uncharge` of one unit against a mutex and an atomic limit.
fn limits(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit_charge_uncharge");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        let limit = Limit::new(1 << 40, 64).unwrap();
        group.bench_function(BenchmarkId::new("percid-limit", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|_| {
                    limit.try_charge(black_box(1)).unwrap();
                    limit.uncharge(black_box(1));
                })
            })
        });
        let mutex = MutexLimit {
            usage: Mutex::new(0),
            limit: 1 << 40,
        };
        group.bench_function(BenchmarkId::new("mutex-limit", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|_| {
                    assert!(mutex.try_charge(black_box(1)));
                    mutex.uncharge(black_box(1));
                })
            })
        });
        let atomic = AtomicLimit {
            usage: AtomicU64::new(0),
            limit: 1 << 40,
        };
        group.bench_function(BenchmarkId::new("atomic-limit", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|_| {
                    assert!(atomic.try_charge(black_box(1)));
                    atomic.uncharge(black_box(1));
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, counters, batched, limits);
criterion_main!(benches);
