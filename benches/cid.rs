//! Cost of one acquire + release of a user-space concurrency ID, per policy, on one thread and
//! on two threads at once (each thread acquiring and releasing in a loop; the figure is the
//! time per operation of one thread).
//!
//! Comparators: reading the kernel's `mm_cid` (`percid::current_mm_cid()`, one rseq field
//! load) and the CPU number (`percid::current_cpu()`), what a kernel-indexed structure pays
//! where the user-space allocator pays a lease.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use percid::index::user_cid::{CidAllocator, Policy};

fn acquire_release(alloc: &CidAllocator, iters: u64) {
    for _ in 0..iters {
        let lease = alloc.acquire();
        black_box(lease.cid());
    }
}

fn bench_cid(c: &mut Criterion) {
    let mut g = c.benchmark_group("user_cid_acquire_release");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for policy in [Policy::CacheLocal, Policy::Legacy] {
        let alloc = CidAllocator::global(policy);
        g.bench_function(format!("{policy:?}/1_thread"), |b| {
            b.iter(|| {
                let lease = alloc.acquire();
                black_box(lease.cid())
            })
        });
        g.bench_function(format!("{policy:?}/2_threads"), |b| {
            b.iter_custom(|iters| {
                let start = Barrier::new(2);
                thread::scope(|s| {
                    let other = s.spawn(|| {
                        start.wait();
                        let t = Instant::now();
                        acquire_release(alloc, iters);
                        t.elapsed()
                    });
                    start.wait();
                    let t = Instant::now();
                    acquire_release(alloc, iters);
                    let mine = t.elapsed();
                    (mine + other.join().unwrap()) / 2
                })
            })
        });
        g.bench_function(format!("{policy:?}/exact_1_thread"), |b| {
            b.iter(|| {
                let lease = alloc.try_acquire_exact(0);
                black_box(lease.map(|l| l.cid()))
            })
        });
    }
    if percid::status().mm_cid {
        g.bench_function("kernel_mm_cid_read/1_thread", |b| {
            b.iter(|| black_box(percid::current_mm_cid()))
        });
    } else {
        eprintln!("kernel_mm_cid_read skipped: the kernel provides no mm_cid to this process");
    }
    g.bench_function("cpu_id_read/1_thread", |b| {
        b.iter(|| black_box(percid::current_cpu()))
    });
    g.finish();
}

criterion_group!(benches, bench_cid);
criterion_main!(benches);
