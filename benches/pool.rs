//! Pool benchmarks: slot resolution (pointer of slot `s` of an item) against a
//! `Vec` of cache-padded values, and allocation/free pairs.
//!
//! Run: `cargo bench --bench pool`. Kept short (small samples) for a shared machine.

use percid::Index;
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use percid::per_cpu::PerCpu;
use percid::pool::{Pool, PoolConfig, Populate};

/// 64 slots, as a machine with 64 possible CPUs would have.
const SLOTS: usize = 64;

/// The alternative layout: one cache-padded value per slot in a `Vec` (what a per-CPU
/// array without a pool looks like).
#[repr(align(128))]
struct Padded(u64);

fn resolution(c: &mut Criterion) {
    let pool = Pool::new(PoolConfig::new().slots(SLOTS)).unwrap();
    let per_cpu = PerCpu::in_pool(&pool, Index::default(), 1u64).unwrap();
    let item: NonNull<u8> = pool.alloc_init(&1u64.to_ne_bytes()).unwrap();
    let stride = pool.stride();
    let vec: Vec<Padded> = (0..SLOTS).map(|_| Padded(1)).collect();

    let mut g = c.benchmark_group("resolve_64_slots");
    g.throughput(Throughput::Elements(SLOTS as u64));
    g.bench_function("pool_multiply_add", |b| {
        b.iter(|| {
            let base = black_box(item).as_ptr();
            let stride = black_box(stride);
            let mut sum = 0u64;
            for s in 0..SLOTS {
                let s = black_box(s);
                // SAFETY: slot s < SLOTS of a live 8-byte item of `pool`, holding a u64.
                sum += unsafe { base.add(s * stride).cast::<u64>().read() };
            }
            sum
        })
    });
    g.bench_function("per_cpu_get", |b| {
        b.iter(|| {
            let v = black_box(&per_cpu);
            let mut sum = 0u64;
            for s in 0..SLOTS {
                sum += *v.get(black_box(s)).unwrap();
            }
            sum
        })
    });
    g.bench_function("vec_cache_padded", |b| {
        b.iter(|| {
            let v = black_box(&vec);
            let mut sum = 0u64;
            for s in 0..SLOTS {
                sum += v[black_box(s)].0;
            }
            sum
        })
    });
    g.finish();
    // SAFETY: allocated above, no longer used.
    unsafe { pool.free(item).unwrap() };
}

fn alloc_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free_pair");
    for (name, populate, robust) in [
        ("cow_init", Populate::CowInit, false),
        ("cow_zero", Populate::CowZero, false),
        ("cow_init_robust", Populate::CowInit, true),
    ] {
        let pool = Pool::new(
            PoolConfig::new()
                .slots(SLOTS)
                .populate(populate)
                .robust(robust),
        )
        .unwrap();
        // Touch slot 0 of the item, as a user would, so the pair also rewrites one slot.
        g.bench_function(format!("per_cpu_u64_{name}"), |b| {
            b.iter(|| {
                let mut v = PerCpu::in_pool(&pool, Index::default(), black_box(7u64)).unwrap();
                *v.get_mut(0).unwrap() += 1;
                drop(v);
            })
        });
        g.bench_function(format!("raw_64_bytes_{name}"), |b| {
            b.iter(|| {
                let p = pool.alloc(black_box(64)).unwrap();
                // SAFETY: just allocated, unused.
                unsafe { pool.free(p).unwrap() };
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = resolution, alloc_free
}
criterion_main!(benches);
