//! Seeded random alloc/free sequences on robust pools, checked against a model.
//!
//! The model tracks the live items (address, size class, the bytes each slot should hold),
//! freed items, and items written after free. Each step is one of: allocate (any size, random
//! init), write random slot bytes of a live item, free a live item, and the faults robust
//! mode must catch: double free, foreign pointers (inside an item, a slot other than 0), and
//! a write into a freed item, which must be reported when (and only when) that item would be
//! handed out again. Failing seeds are printed; the sequence is a pure function of the seed.

use std::collections::HashMap;
use std::ptr::NonNull;

use percid::pool::{Pool, PoolConfig, PoolError, Populate};

const SLOTS: usize = 8;
const POISON: u8 = 0x5a;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Live {
    class: usize,
    /// Expected contents per slot (class bytes each).
    slots: Vec<Vec<u8>>,
}

fn slot_bytes(pool: &Pool, item: usize, slot: usize, len: usize) -> &[u8] {
    let p = pool
        .slot_ptr(NonNull::new(item as *mut u8).unwrap(), slot)
        .unwrap();
    // SAFETY: `item` is an item of `pool` of at least `len` bytes; its memory stays mapped
    // while the pool lives; no write is in flight.
    unsafe { std::slice::from_raw_parts(p.as_ptr(), len) }
}

/// Runs one sequence; returns how many (allocations, write-after-free reports, exhaustions)
/// it saw, so the caller can check every path was exercised.
fn run(seed: u64, populate: Populate, steps: usize) -> [usize; 3] {
    let stride = 4096;
    let pool = Pool::new(
        PoolConfig::new()
            .stride(stride)
            .slots(SLOTS)
            .max_ranges(3)
            .robust(true)
            .poison(POISON)
            .populate(populate),
    )
    .unwrap();
    let mut rng = Rng(seed | 1);
    let mut live: HashMap<usize, Live> = HashMap::new();
    // Freed items (not reallocated since), and whether they were written after free.
    let mut freed: HashMap<usize, bool> = HashMap::new();
    let mut seen = [0usize; 3];
    let ctx = |step: usize| format!("seed {seed:#x} {populate:?} step {step}");

    for step in 0..steps {
        match rng.below(10) {
            // Allocate.
            0..=3 => {
                let max = if rng.below(8) == 0 { 2048 } else { 96 };
                let size = 1 + rng.below(max);
                let init: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
                match pool.alloc_init(&init) {
                    Ok(p) => {
                        seen[0] += 1;
                        let addr = p.as_ptr() as usize;
                        let class = pool.size_class(size, 1).unwrap();
                        assert_eq!(addr % class, 0, "{}", ctx(step));
                        for (&o, l) in &live {
                            assert!(
                                addr + class <= o || o + l.class <= addr,
                                "{}: {addr:#x}+{class} overlaps {o:#x}+{}",
                                ctx(step),
                                l.class
                            );
                        }
                        if let Some(true) = freed.remove(&addr) {
                            panic!("{}: write after free at {addr:#x} not detected", ctx(step));
                        }
                        let mut want = init.clone();
                        want.resize(class, 0);
                        for s in 0..SLOTS {
                            assert_eq!(slot_bytes(&pool, addr, s, class), want, "{}", ctx(step));
                        }
                        live.insert(
                            addr,
                            Live {
                                class,
                                slots: vec![want; SLOTS],
                            },
                        );
                    }
                    Err(PoolError::WriteAfterFree { addr, .. }) => {
                        seen[1] += 1;
                        assert_eq!(
                            freed.remove(&addr),
                            Some(true),
                            "{}: false write-after-free report at {addr:#x}",
                            ctx(step)
                        );
                        // Quarantined: freeing it again is a double free.
                        let p = NonNull::new(addr as *mut u8).unwrap();
                        // SAFETY: the pool refuses a quarantined item without touching it.
                        let e = unsafe { pool.free(p) }.unwrap_err();
                        assert!(matches!(e, PoolError::DoubleFree { .. }), "{}", ctx(step));
                    }
                    Err(PoolError::Exhausted { max_ranges: 3 }) => {
                        seen[2] += 1;
                        assert_eq!(pool.nr_ranges(), 3, "{}", ctx(step));
                    }
                    Err(e) => panic!("{}: unexpected {e}", ctx(step)),
                }
            }
            // Write slot bytes of a live item.
            4 | 5 if !live.is_empty() => {
                let addrs: Vec<usize> = live.keys().copied().collect();
                let addr = addrs[rng.below(addrs.len())];
                let l = live.get_mut(&addr).unwrap();
                let s = rng.below(SLOTS);
                let at = rng.below(l.class);
                let b = rng.next() as u8;
                l.slots[s][at] = b;
                let p = pool
                    .slot_ptr(NonNull::new(addr as *mut u8).unwrap(), s)
                    .unwrap();
                // SAFETY: byte `at` of slot `s` of a live item of `pool`.
                unsafe { p.as_ptr().add(at).write(b) };
            }
            // Free a live item, after checking every slot still holds what we wrote.
            6 | 7 if !live.is_empty() => {
                let addrs: Vec<usize> = live.keys().copied().collect();
                let addr = addrs[rng.below(addrs.len())];
                let l = live.remove(&addr).unwrap();
                for s in 0..SLOTS {
                    assert_eq!(
                        slot_bytes(&pool, addr, s, l.class),
                        l.slots[s],
                        "{}",
                        ctx(step)
                    );
                }
                // SAFETY: a live item of `pool`, no longer used.
                unsafe { pool.free(NonNull::new(addr as *mut u8).unwrap()).unwrap() };
                freed.insert(addr, false);
            }
            // Faults.
            _ => {
                let fault = rng.below(3);
                if fault == 0 && !freed.is_empty() {
                    // Double free of a freed item.
                    let addrs: Vec<usize> = freed.keys().copied().collect();
                    let addr = addrs[rng.below(addrs.len())];
                    // SAFETY: refused by the pool without touching memory.
                    let e = unsafe { pool.free(NonNull::new(addr as *mut u8).unwrap()) };
                    assert!(
                        matches!(e, Err(PoolError::DoubleFree { .. })),
                        "{}",
                        ctx(step)
                    );
                } else if fault == 1 && !live.is_empty() {
                    // Foreign pointers: an odd address inside an item, slot 1 of an item.
                    let addrs: Vec<usize> = live.keys().copied().collect();
                    let addr = addrs[rng.below(addrs.len())];
                    for bad in [addr + 1, addr + stride] {
                        // SAFETY: refused by the pool without touching memory.
                        let e = unsafe { pool.free(NonNull::new(bad as *mut u8).unwrap()) };
                        assert!(
                            matches!(e, Err(PoolError::ForeignPointer { .. })),
                            "{}",
                            ctx(step)
                        );
                    }
                } else if fault == 2 && !freed.is_empty() {
                    // Write after free: one byte, neither zero nor poison.
                    let addrs: Vec<usize> = freed.keys().copied().collect();
                    let addr = addrs[rng.below(addrs.len())];
                    let s = rng.below(SLOTS);
                    let p = pool
                        .slot_ptr(NonNull::new(addr as *mut u8).unwrap(), s)
                        .unwrap();
                    // SAFETY: byte 0 of a freed (still mapped, not reallocated) item: a
                    // deliberate bug the pool must report.
                    unsafe { p.as_ptr().write(0xc3) };
                    freed.insert(addr, true);
                }
            }
        }
        assert_eq!(pool.nr_allocated(), live.len(), "{}", ctx(step));
    }
    seen
}

fn run_seeds(mul: u64, populate: Populate) {
    let mut total = [0usize; 3];
    for seed in 1..=12u64 {
        let seen = run(seed.wrapping_mul(mul), populate, 1500);
        for (t, s) in total.iter_mut().zip(seen) {
            *t += s;
        }
    }
    eprintln!("{populate:?}: allocations, write-after-free reports, exhaustions: {total:?}");
    assert!(
        total.iter().all(|&n| n > 0),
        "a path was never exercised: {total:?}"
    );
}

#[test]
fn random_sequences_cow_init() {
    run_seeds(0x9e37_79b9_7f4a_7c15, Populate::CowInit);
}

#[test]
fn random_sequences_cow_zero() {
    run_seeds(0xbf58_476d_1ce4_e5b9, Populate::CowZero);
}
