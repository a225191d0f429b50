//! `Counter::add` against the alternatives users would pick, with 1 and 2 threads.
//!
//! * `percid-<index>`: `Counter::add` with the default index and each rseq index;
//! * `percid-fallback`: the portable fallback (user-space CID leases, cache-local policy:
//!   what every index resolves to under `PERCID_FORCE_FALLBACK=1`);
//! * `atomic-shared`: one `AtomicU64::fetch_add` shared by all threads;
//! * `atomic-padded-per-thread`: one cache-padded `AtomicU64` per thread, `fetch_add`.
//!
//! Also `BatchedCounter` and `Limit` (against a mutex and an atomic limit counter).
//! Each figure is the slowest worker's time for `iters` operations divided by `iters`:
//! nanoseconds per operation per thread. Read ratios within one run.

mod common;

use common::with_workers;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use percid::{BatchedCounter, Counter, Index, Limit, Policy};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

fn counters(c: &mut Criterion) {
    let mut group = c.benchmark_group("counter_add");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let status = percid::status();
    for threads in [1usize, 2] {
        let mut indexes = vec![("default", Index::default())];
        if status.rseq_in_use {
            indexes.push(("cpu", Index::CpuId));
            if status.mm_cid {
                indexes.push(("mmcid", Index::MmCid));
            }
        }
        indexes.push(("fallback", Index::User(Policy::CacheLocal)));
        for (name, index) in indexes {
            let counter = Counter::with_index(index);
            with_workers(
                threads,
                |_| counter.add(black_box(1)),
                |run| {
                    group
                        .bench_function(BenchmarkId::new(format!("percid-{name}"), threads), |b| {
                            b.iter_custom(run)
                        });
                },
            );
        }
        let shared = AtomicU64::new(0);
        with_workers(
            threads,
            |_| {
                shared.fetch_add(black_box(1), Ordering::Relaxed);
            },
            |run| {
                group.bench_function(BenchmarkId::new("atomic-shared", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
        let padded: Vec<Padded> = (0..threads).map(|_| Padded(AtomicU64::new(0))).collect();
        with_workers(
            threads,
            |t| {
                padded[t].0.fetch_add(black_box(1), Ordering::Relaxed);
            },
            |run| {
                group.bench_function(BenchmarkId::new("atomic-padded-per-thread", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
    }
    group.finish();
}

/// `BatchedCounter::add` and `read` against `Counter::add` and `sum`.
fn batched(c: &mut Criterion) {
    let mut group = c.benchmark_group("batched_counter");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        let batched = BatchedCounter::new(64);
        with_workers(
            threads,
            |_| batched.add(black_box(1)),
            |run| {
                group.bench_function(BenchmarkId::new("batched-add", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
        let exact = Counter::new();
        with_workers(
            threads,
            |_| exact.add(black_box(1)),
            |run| {
                group.bench_function(BenchmarkId::new("counter-add", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
    }
    let batched = BatchedCounter::new(64);
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
        let limit = Limit::new(1 << 40, 64);
        with_workers(
            threads,
            |_| {
                limit.try_charge(black_box(1)).unwrap();
                limit.uncharge(black_box(1));
            },
            |run| {
                group.bench_function(BenchmarkId::new("percid-limit", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
        let mutex = MutexLimit {
            usage: Mutex::new(0),
            limit: 1 << 40,
        };
        with_workers(
            threads,
            |_| {
                assert!(mutex.try_charge(black_box(1)));
                mutex.uncharge(black_box(1));
            },
            |run| {
                group.bench_function(BenchmarkId::new("mutex-limit", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
        let atomic = AtomicLimit {
            usage: AtomicU64::new(0),
            limit: 1 << 40,
        };
        with_workers(
            threads,
            |_| {
                assert!(atomic.try_charge(black_box(1)));
                atomic.uncharge(black_box(1));
            },
            |run| {
                group.bench_function(BenchmarkId::new("atomic-limit", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
    }
    group.finish();
}

/// Sitting at the limit. `refused`: the limit is full and holds no stock, so every charge is
/// refused; the drain hints let it fail without a drain (a mutex, a read of every slot and a
/// membarrier), against an atomic limit's refused compare-and-swap. `near`: a limit just above
/// what the threads' stocks can hold, charged and uncharged one unit at a time, so charges
/// keep meeting stock held in the other thread's slot. The drains and fences per operation
/// are printed after each case.
fn at_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit_at_limit");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in [1usize, 2] {
        let limit = Limit::new(1000, 16);
        while limit.try_charge(1).is_ok() {}
        let ops = Ops::default();
        with_workers(
            threads,
            |t| {
                assert!(limit.try_charge(black_box(1)).is_err());
                ops.count(t);
            },
            |run| {
                group.bench_function(BenchmarkId::new("percid-refused", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
        report("refused", threads, &limit, ops.total());
        let atomic = AtomicLimit {
            usage: AtomicU64::new(1000),
            limit: 1000,
        };
        with_workers(
            threads,
            |_| assert!(!atomic.try_charge(black_box(1))),
            |run| {
                group.bench_function(BenchmarkId::new("atomic-refused", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );

        let limit = Limit::new(threads as u64 * 16 + 4, 16);
        let ops = Ops::default();
        with_workers(
            threads,
            |t| {
                if limit.try_charge(black_box(1)).is_ok() {
                    limit.uncharge(1);
                }
                ops.count(t);
            },
            |run| {
                group.bench_function(BenchmarkId::new("percid-near", threads), |b| {
                    b.iter_custom(run)
                });
            },
        );
        report("near", threads, &limit, ops.total());
    }
    group.finish();
}

/// Operations per worker, each on its own cache line (a plain load and store: no shared
/// read-modify-write in the measured loop).
#[derive(Default)]
struct Ops([Padded; 2]);

impl Ops {
    fn count(&self, t: usize) {
        let c = &self.0[t % 2].0;
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    fn total(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

fn report(case: &str, threads: usize, limit: &Limit, ops: u64) {
    let s = limit.stats();
    let per_m = |n: u64| n as f64 * 1e6 / ops.max(1) as f64;
    eprintln!(
        "limit_at_limit/{case}/{threads}: per million operations: {:.1} drains, {:.1} fences, {:.1} skipped drains, {:.1} refused ({ops} operations)",
        per_m(s.drains),
        per_m(s.fences),
        per_m(s.drains_skipped),
        per_m(s.refused)
    );
}

criterion_group!(benches, counters, batched, limits, at_limit);
criterion_main!(benches);
