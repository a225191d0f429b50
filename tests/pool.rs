//! Pool and PerCpu behaviour: allocation, size classes, configuration errors, range growth,
//! init values, robust mode, typed handles.

use percid::Index;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use percid::per_cpu::PerCpu;
use percid::pool::{Pool, PoolConfig, PoolError, Populate};

const PAGE: usize = 4096;

fn page() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn pool(slots: usize, populate: Populate, robust: bool) -> Pool {
    Pool::new(
        PoolConfig::new()
            .slots(slots)
            .populate(populate)
            .robust(robust),
    )
    .unwrap()
}

/// Reads `len` bytes of slot `slot` of `item`.
fn read(pool: &Pool, item: NonNull<u8>, slot: usize, len: usize) -> Vec<u8> {
    let p = pool.slot_ptr(item, slot).unwrap();
    // SAFETY: the item is allocated from `pool` and at least `len` bytes long.
    unsafe { std::slice::from_raw_parts(p.as_ptr(), len).to_vec() }
}

fn write(pool: &Pool, item: NonNull<u8>, slot: usize, bytes: &[u8]) {
    let p = pool.slot_ptr(item, slot).unwrap();
    // SAFETY: the item is allocated (or, in robust tests, deliberately freed but still
    // mapped) and at least `bytes.len()` bytes long; no other access in flight.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr(), bytes.len()) };
}

const MODES: [Populate; 2] = [Populate::CowInit, Populate::CowZero];

#[test]
fn alloc_free_reuse_zeroes_every_slot() {
    for mode in MODES {
        let p = pool(4, mode, false);
        let a = p.alloc(16).unwrap();
        let b = p.alloc(16).unwrap();
        assert_ne!(a, b);
        assert_eq!(p.nr_allocated(), 2);
        for s in 0..4 {
            assert_eq!(read(&p, a, s, 16), vec![0; 16]);
            write(&p, a, s, &[s as u8 + 1; 16]);
        }
        assert_eq!(read(&p, a, 3, 16), vec![4; 16]);
        assert_eq!(read(&p, b, 3, 16), vec![0; 16], "items do not overlap");
        // SAFETY: `a` is allocated and no longer used.
        unsafe { p.free(a).unwrap() };
        assert_eq!(p.nr_allocated(), 1);
        let c = p.alloc(16).unwrap();
        assert_eq!(c, a, "LIFO reuse of the freed item");
        for s in 0..4 {
            assert_eq!(
                read(&p, c, s, 16),
                vec![0; 16],
                "{mode:?} slot {s} re-zeroed"
            );
        }
    }
}

#[test]
fn slot_resolution_is_base_plus_slot_times_stride() {
    let p = pool(8, Populate::CowInit, false);
    let a = p.alloc(8).unwrap();
    for s in 0..8 {
        let q = p.slot_ptr(a, s).unwrap().as_ptr() as usize;
        assert_eq!(q, a.as_ptr() as usize + s * p.stride());
    }
    assert!(p.slot_ptr(a, 8).is_none());
}

#[test]
fn size_classes_round_to_powers_of_two_and_align() {
    let p = pool(2, Populate::CowZero, false);
    assert_eq!(p.size_class(0, 1).unwrap(), 8);
    assert_eq!(p.size_class(1, 1).unwrap(), 8);
    assert_eq!(p.size_class(9, 1).unwrap(), 16);
    assert_eq!(p.size_class(100, 4).unwrap(), 128);
    assert_eq!(p.size_class(8, 256).unwrap(), 256);
    assert_eq!(p.size_class(65536, 1).unwrap(), 65536);
    assert!(matches!(
        p.size_class(65537, 1),
        Err(PoolError::ItemTooLarge { size: 65537, .. })
    ));

    let mut items = Vec::new();
    for size in [1usize, 3, 8, 9, 24, 100, 500, 4000, 3, 70] {
        let it = p.alloc(size).unwrap();
        let class = p.size_class(size, 1).unwrap();
        assert_eq!(
            it.as_ptr() as usize % class,
            0,
            "size {size} aligned to {class}"
        );
        items.push((it.as_ptr() as usize, class));
    }
    items.sort();
    for w in items.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "items overlap: {w:?}");
    }
    let aligned = p.alloc_with(8, 1024, &[]).unwrap();
    assert_eq!(aligned.as_ptr() as usize % 1024, 0);
}

#[test]
fn bad_configurations_are_typed_errors() {
    let e = Pool::new(PoolConfig::new().stride(3 * page())).unwrap_err();
    assert!(matches!(e, PoolError::StrideNotPowerOfTwo { .. }), "{e}");
    let e = Pool::new(PoolConfig::new().stride(page() / 2)).unwrap_err();
    assert!(matches!(e, PoolError::StrideTooSmall { .. }), "{e}");
    let e = Pool::new(PoolConfig::new().stride(0)).unwrap_err();
    assert!(
        matches!(e, PoolError::StrideNotPowerOfTwo { stride: 0 }),
        "{e}"
    );
    let e = Pool::new(PoolConfig::new().slots(0)).unwrap_err();
    assert!(matches!(e, PoolError::ZeroSlots), "{e}");
    let e = Pool::new(PoolConfig::new().slots(usize::MAX / 1024)).unwrap_err();
    assert!(matches!(e, PoolError::TooManySlots { .. }), "{e}");
    let e = Pool::new(
        PoolConfig::new()
            .slots(percid::pool::MAX_SLOTS)
            .stride(1 << 62),
    )
    .unwrap_err();
    assert!(matches!(e, PoolError::ReservationTooLarge { .. }), "{e}");
    let e = Pool::new(PoolConfig::new().max_ranges(0)).unwrap_err();
    assert!(matches!(e, PoolError::ZeroRangeLimit), "{e}");
    let e = Pool::new(PoolConfig::new().poison(0)).unwrap_err();
    assert!(matches!(e, PoolError::ZeroPoison), "{e}");

    let p = Pool::new(PoolConfig::new().stride(PAGE.max(page())).slots(2)).unwrap();
    let e = p.alloc(p.stride() + 1).unwrap_err();
    assert!(matches!(e, PoolError::ItemTooLarge { .. }), "{e}");
    let e = PerCpu::in_pool(&p, Index::default(), [0u8; 1 << 17]).unwrap_err();
    assert!(matches!(e, PoolError::ItemTooLarge { .. }), "{e}");
    assert_eq!(p.nr_ranges(), 0, "failed allocations map nothing");
    // Errors are std errors with a message.
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().contains("does not fit"));
}

#[test]
fn ranges_grow_on_demand_up_to_the_limit() {
    for mode in MODES {
        let stride = page();
        let p = Pool::new(
            PoolConfig::new()
                .stride(stride)
                .slots(4)
                .max_ranges(2)
                .populate(mode),
        )
        .unwrap();
        assert_eq!(p.nr_ranges(), 0);
        let a = p.alloc(stride).unwrap();
        assert_eq!(p.nr_ranges(), 1);
        let b = p.alloc(stride / 2).unwrap();
        let c = p.alloc(stride / 2).unwrap();
        assert_eq!(p.nr_ranges(), 2);
        let e = p.alloc(8).unwrap_err();
        assert!(matches!(e, PoolError::Exhausted { max_ranges: 2 }), "{e}");
        assert_eq!(p.reservations().len(), 2);
        for (_, len) in p.reservations() {
            assert_eq!(len, 4 * stride);
        }
        // SAFETY: `a` is allocated and unused.
        unsafe { p.free(a).unwrap() };
        // The freed full-stride block is split for small items.
        let d = p.alloc(8).unwrap();
        assert_eq!(d, a);
        let e = p.alloc(stride).unwrap_err();
        assert!(matches!(e, PoolError::Exhausted { .. }), "{e}");
        // SAFETY: all allocated and unused.
        unsafe {
            p.free(b).unwrap();
            p.free(c).unwrap();
            p.free(d).unwrap();
        }
        assert_eq!(p.nr_allocated(), 0);
    }
}

#[test]
fn init_values_are_seen_by_every_slot_and_after_reuse() {
    for mode in MODES {
        let p = pool(16, mode, false);
        let init: Vec<u8> = (1..=24).collect();
        let a = p.alloc_init(&init).unwrap();
        for s in 0..16 {
            let mut want = init.clone();
            want.resize(32, 0); // size class padding is zero
            assert_eq!(read(&p, a, s, 32), want, "{mode:?} slot {s}");
        }
        // Touch one slot, free, reallocate with another value: every slot (the touched one
        // included) reads the new value.
        write(&p, a, 5, &[0xee; 32]);
        // SAFETY: allocated and unused.
        unsafe { p.free(a).unwrap() };
        let b = p.alloc_init(&[9; 32]).unwrap();
        assert_eq!(b, a);
        for s in 0..16 {
            assert_eq!(read(&p, b, s, 32), vec![9; 32], "{mode:?} slot {s}");
        }
        // A neighbour with another init value does not disturb it.
        let c = p.alloc_init(&[3; 32]).unwrap();
        for s in 0..16 {
            assert_eq!(read(&p, b, s, 32), vec![9; 32]);
            assert_eq!(read(&p, c, s, 32), vec![3; 32]);
        }
    }
}

#[test]
fn robust_double_free_and_foreign_pointers() {
    for mode in MODES {
        let p = pool(4, mode, true);
        let other = pool(4, mode, true);
        let a = p.alloc(64).unwrap();
        let foreign = other.alloc(64).unwrap();
        let mut boxed = Box::new(0u64);
        let heap = NonNull::from(&mut *boxed).cast::<u8>();
        // SAFETY (all frees below): the pointers are either allocated and unused, or invalid
        // on purpose; the pool checks them and must refuse without touching memory.
        unsafe {
            assert!(matches!(
                p.free(heap),
                Err(PoolError::ForeignPointer { .. })
            ));
            assert!(matches!(
                p.free(foreign),
                Err(PoolError::ForeignPointer { .. })
            ));
            let inside = a.byte_add(8);
            assert!(matches!(
                p.free(inside),
                Err(PoolError::ForeignPointer { .. })
            ));
            let slot1 = p.slot_ptr(a, 1).unwrap();
            assert!(matches!(
                p.free(slot1),
                Err(PoolError::ForeignPointer { .. })
            ));
            p.free(a).unwrap();
            let e = p.free(a).unwrap_err();
            assert!(matches!(e, PoolError::DoubleFree { addr } if addr == a.as_ptr() as usize));
            other.free(foreign).unwrap();
        }
        // Checks also hold outside robust mode: the bookkeeping knows every block.
        let plain = pool(2, mode, false);
        let x = plain.alloc(8).unwrap();
        // SAFETY: as above.
        unsafe {
            plain.free(x).unwrap();
            assert!(matches!(plain.free(x), Err(PoolError::DoubleFree { .. })));
        }
        assert_eq!(*boxed, 0);
    }
}

#[test]
fn robust_poisons_freed_items_and_catches_write_after_free() {
    for mode in MODES {
        let p = pool(8, mode, true);
        let a = p.alloc_init(&[1; 128]).unwrap();
        write(&p, a, 0, &[2; 128]);
        // SAFETY: allocated and unused.
        unsafe { p.free(a).unwrap() };
        // Populated slots (here all: CowZero wrote the init everywhere; CowInit: slot 0 was
        // copied, the others read the poisoned image) read poison.
        for s in 0..8 {
            assert_eq!(read(&p, a, s, 128), vec![0x5a; 128], "{mode:?} slot {s}");
        }
        // Clean reuse works.
        let b = p.alloc(128).unwrap();
        assert_eq!(b, a);
        assert_eq!(read(&p, b, 7, 128), vec![0; 128]);

        // Write after free in slot 6, byte 100.
        // SAFETY: allocated and unused.
        unsafe { p.free(b).unwrap() };
        write(&p, b, 6, &[0xc3]);
        let bad = p.slot_ptr(b, 6).unwrap();
        // SAFETY: byte 100 of the (freed, still mapped) 128-byte item: a deliberate bug.
        unsafe { bad.as_ptr().add(100).write(0x77) };
        let e = p.alloc(128).unwrap_err();
        match e {
            PoolError::WriteAfterFree { addr, slot, byte } => {
                assert_eq!(addr, b.as_ptr() as usize);
                assert_eq!((slot, byte), (6, 0));
            }
            other => panic!("{mode:?}: expected WriteAfterFree, got {other}"),
        }
        // The item is quarantined: never handed out again, freeing it is a double free.
        let c = p.alloc(128).unwrap();
        assert_ne!(c, b);
        // SAFETY: invalid on purpose (quarantined), then a valid free.
        unsafe {
            assert!(matches!(p.free(b), Err(PoolError::DoubleFree { .. })));
            p.free(c).unwrap();
        }
    }
}

#[test]
fn robust_cow_zero_accepts_untouched_slots() {
    // In CowZero, poisoning skips all-zero slots; they must not be reported on reuse.
    let p = pool(8, Populate::CowZero, true);
    let a = p.alloc(32).unwrap();
    write(&p, a, 3, &[4; 32]);
    // SAFETY: allocated and unused.
    unsafe { p.free(a).unwrap() };
    assert_eq!(read(&p, a, 3, 32), vec![0x5a; 32]);
    assert_eq!(read(&p, a, 2, 32), vec![0; 32], "untouched slot left alone");
    // A partial write into an untouched slot is caught.
    write(&p, a, 2, &[0, 0, 1]);
    assert!(matches!(
        p.alloc(32),
        Err(PoolError::WriteAfterFree {
            slot: 2,
            byte: 0,
            ..
        })
    ));
}

#[test]
fn per_cpu_get_iter_and_bounds() {
    let p = pool(6, Populate::CowInit, false);
    let mut v = PerCpu::in_pool(&p, Index::default(), 5u32).unwrap();
    assert_eq!(v.nr_slots(), 6);
    assert_eq!(v.iter().len(), 6);
    assert!(v.iter().all(|&x| x == 5));
    assert_eq!(v.get(6), None);
    assert!(v.raw_slot_ptr(6).is_null());
    *v.get_mut(2).unwrap() = 40;
    // SAFETY: slot 4 exists; &mut-free write while no other reference is live.
    unsafe { *v.raw_slot_ptr(4) = 1 };
    assert_eq!(v.iter().copied().collect::<Vec<_>>(), [5, 5, 40, 5, 1, 5]);
    // Debug shows the configuration, not the slots (which other threads may be writing).
    let debug = format!("{v:?}");
    assert!(debug.contains("init: 5, slots: 6"), "{debug}");
    assert!(!debug.contains("40"), "{debug}");
    assert_eq!(
        v.raw_slot_ptr(1) as usize - v.raw_slot_ptr(0) as usize,
        p.stride()
    );

    let arr = PerCpu::in_pool(&p, Index::default(), [7u16; 3]).unwrap();
    assert!(arr.iter().all(|a| *a == [7, 7, 7]));
    let flag = PerCpu::in_pool(&p, Index::default(), true).unwrap();
    assert!(flag.iter().all(|&b| b));
    assert_eq!(p.nr_allocated(), 3);
    drop((v, arr, flag));
    assert_eq!(p.nr_allocated(), 0, "dropping a handle frees its item");
}

#[test]
fn per_cpu_keeps_its_pool_alive() {
    let v = {
        let p = pool(3, Populate::CowZero, false);
        PerCpu::in_pool(&p, Index::default(), 11i64).unwrap()
    };
    assert_eq!(v.iter().sum::<i64>(), 33);
    assert_eq!(v.pool().unwrap().nr_allocated(), 1);
}

#[test]
fn per_cpu_default_pool_covers_possible_cpus() {
    let v = PerCpu::new(AtomicU64::new(1));
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let highest: usize = possible
        .trim()
        .rsplit(['-', ','])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(v.nr_slots(), highest + 1);
    assert_eq!(v.pool().unwrap().populate(), Populate::CowInit);
    assert_eq!(
        v.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>(),
        v.nr_slots() as u64
    );
}

#[test]
fn per_cpu_is_send_and_sync_for_atomics() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool>();
    assert_send_sync::<PerCpu<AtomicU64>>();
    assert_send_sync::<PerCpu<u64>>();

    let p = pool(4, Populate::CowInit, false);
    let v = Arc::new(PerCpu::in_pool(&p, Index::default(), AtomicU64::new(0)).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let v = Arc::clone(&v);
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    v.get(t).unwrap().fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        v.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>(),
        4000
    );
}

#[test]
fn concurrent_alloc_free_from_threads() {
    let p = pool(2, Populate::CowInit, true);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..200usize {
                    let v = PerCpu::in_pool(&p, Index::default(), (t * 1000 + i) as u64).unwrap();
                    assert!(v.iter().all(|&x| x == (t * 1000 + i) as u64));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(p.nr_allocated(), 0);
}
